"""benchmarks.bench_onnx must not rot: on a trained folder and its export (the shared tiny export, so nothing is
traced again) it times both backends side by side, measures parity, records the CPU and prints its table
(benchmarks.run_all does not run it: it needs the onnx extra). Its own export step is `export_onnx`, tested in
test_onnx.py."""

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import run_command

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCHMARK = ["-m", "benchmarks.bench_onnx"]


@pytest.mark.slow
def test_onnx_benchmark_times_a_trained_folder_and_its_export(model_dir, exported, tmp_path, shared_data_dir):
    onnx_dir = exported[2]
    environment = {**os.environ, "AUTOSAM_BENCHMARK_RESULTS": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, *BENCHMARK, "--model", str(model_dir), "--onnx", str(onnx_dir), "--images", "1"]
    result = run_command([*command, "--note", "a test run"], env=environment, timeout=900, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

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
    assert "PyTorch vs onnxruntime per image" in result.stdout and onnx["machine"] in result.stdout
    assert "a test run" in result.stdout and f"not timed in this run ({onnx_dir})" in result.stdout
    table_command = [sys.executable, *BENCHMARK, "--table", str(tmp_path / "onnx" / "model.json")]
    table = run_command(table_command, env=environment, timeout=300, cwd=REPO_ROOT)
    assert table.returncode == 0 and table.stdout.strip() in result.stdout  # the table again, from the file alone

    # A run that exported (the --quick and ViT-B runs) names each graph's exporter and export time instead.
    from benchmarks.bench_onnx import render_table

    graphs = exported[3]["graphs"]
    onnx["export"] = {
        name: {"exporter": graph["exporter"], "export_seconds": graph["export_seconds"]}
        for name, graph in graphs.items()
    }
    expected = ", ".join(f"{name} dynamo {graph['export_seconds']:.0f} s" for name, graph in graphs.items())
    assert f"Export (opset {onnx['opset']}): {expected}. Max abs Δ of SAM's encoder" in render_table(onnx)


def test_an_export_without_its_model_is_refused_naming_the_option(tmp_path):
    result = run_command([sys.executable, *BENCHMARK, "--onnx", str(tmp_path)], timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 2 and "--onnx needs the --model" in result.stderr
