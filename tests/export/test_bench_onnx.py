"""benchmarks/bench_onnx.py must not rot: its --quick form (small SAM, g at 64) exports, times both backends side by
side, measures parity, records the CPU and prints the README's table (run_all.py does not run it: it needs the onnx
extra)."""

import json
import os
import sys
from pathlib import Path

from conftest import run_command

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_onnx_benchmark_runs_quick(tmp_path, shared_data_dir):
    environment = {**os.environ, "AUTOSAM_BENCHMARK_RESULTS": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_onnx.py"), "--quick", "--images", "1"]
    result = run_command([*command, "--note", "a test run"], env=environment, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    onnx = json.loads((tmp_path / "onnx_cpu_quick.json").read_text())
    assert onnx["machine"] and onnx["machine_details"]["cpu"] and onnx["machine_details"]["cpu_capability"]
    assert onnx["machine_details"]["cpuinfo"].get("vendor_id") or not Path("/proc/cpuinfo").exists()
    assert (onnx["sam"], onnx["batch_size"], onnx["images"]) == ("small", 1, 1) and onnx["threads"] >= 1
    assert {graph["exporter"] for graph in onnx["export"].values()} <= {"dynamo", "torchscript"}
    for mode in ("surrogate", "autosam"):
        timings = onnx["modes"][mode]
        assert timings["pytorch"]["seconds_per_image"] > 0 and timings["onnxruntime"]["seconds_per_image"] > 0
        assert onnx["parity"][mode]["max_abs_diff_logits"] <= 1e-4
        assert onnx["parity"][mode]["mask_agreement"] > 0.99
    assert "PyTorch vs onnxruntime per image" in result.stdout and onnx["machine"] in result.stdout
    assert "a test run" in result.stdout
    table_command = [*command[:2], "--table", str(tmp_path / "onnx_cpu_quick.json")]
    table = run_command(table_command, env=environment, timeout=300)
    assert table.returncode == 0 and table.stdout.strip() in result.stdout  # the table again, from the file alone
