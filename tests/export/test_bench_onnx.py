"""benchmarks.bench_onnx must not rot: on a trained folder and its export (the shared tiny export, so nothing is
traced again) it times both backends side by side, measures parity, records the CPU and prints its table
(benchmarks.run_all does not run it: it needs the onnx extra). Its own export step is `export_onnx`, tested in
test_onnx.py."""

import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCHMARK = ["-m", "benchmarks.bench_onnx"]


@pytest.mark.slow
def test_onnx_benchmark_times_a_trained_folder_and_its_export(
    model_dir, exported, tmp_path, shared_data_dir, monkeypatch, capsys
):
    import benchmarks.common
    from benchmarks.bench_onnx import main

    monkeypatch.setattr(benchmarks.common, "RESULTS_DIR", tmp_path)
    onnx_dir = exported[2]
    capsys.readouterr()
    main(["--model", str(model_dir), "--onnx", str(onnx_dir), "--images", "1", "--note", "a test run"])
    stdout = capsys.readouterr().out

    onnx = json.loads((tmp_path / "onnx" / "model.json").read_text())
    assert onnx["machine"] and onnx["machine_details"]["cpu"] and onnx["machine_details"]["cpu_capability"]
    assert onnx["machine_details"]["cpuinfo"].get("vendor_id") or not Path("/proc/cpuinfo").exists()
    assert (onnx["batch_size"], onnx["images"], onnx["g"]) == (1, 1, "HarDNet-85 at 64") and onnx["threads"] >= 1
    # The export was given, not made here: its times are not this run's.
    assert onnx["export"] is None and onnx["onnx_dir"] == str(onnx_dir)
    for mode in ("surrogate", "autosam"):
        timings = onnx["modes"][mode]
        assert timings["pytorch"]["seconds_per_image"] > 0 and timings["onnxruntime"]["seconds_per_image"] > 0
        assert onnx["parity"][mode]["max_abs_diff_logits"] <= 1e-4
        assert onnx["parity"][mode]["mask_agreement"] > 0.99
    assert "PyTorch vs onnxruntime per image" in stdout and onnx["machine"] in stdout
    assert "a test run" in stdout and f"not timed in this run ({onnx_dir})" in stdout
    main(["--table", str(tmp_path / "onnx" / "model.json")])
    table = capsys.readouterr().out
    assert table.strip() and table.strip() in stdout  # the table again, from the file alone

    # A run that exported (the --quick and ViT-B runs) names each graph's exporter and export time instead.
    from benchmarks.bench_onnx import render_table

    graphs = exported[3]["graphs"]
    onnx["export"] = {
        name: {"exporter": graph["exporter"], "export_seconds": graph["export_seconds"]}
        for name, graph in graphs.items()
    }
    expected = ", ".join(f"{name} dynamo {graph['export_seconds']:.0f} s" for name, graph in graphs.items())
    assert f"Export (opset {onnx['opset']}): {expected}. Max abs Δ of SAM's encoder" in render_table(onnx)


def test_an_export_without_its_model_is_refused_naming_the_option(tmp_path, capsys):
    from benchmarks.bench_onnx import main

    with pytest.raises(SystemExit) as exit_status:
        main(["--onnx", str(tmp_path)])
    assert exit_status.value.code == 2 and "--onnx needs the --model" in capsys.readouterr().err
