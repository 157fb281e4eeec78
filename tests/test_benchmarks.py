"""The benchmarks must not rot: every one runs in its --quick form and its numbers land in the tables."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_command

from autosam_hf.runtime import cpu_has_native_bfloat16

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_all_benchmarks_run_quick(tmp_path, shared_data_dir):
    environment = {**os.environ, "AUTOSAM_BENCHMARK_RESULTS": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = run_command(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "run_all.py"), "--quick"], env=environment, timeout=900
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    training = json.loads((tmp_path / "training_quick.json").read_text())["sizes"]["small"]
    # bf16 rows only where the CPU computes bf16 natively (emulated bf16 takes minutes and says nothing).
    native_bf16 = cpu_has_native_bfloat16()
    assert set(training) == {"no_cache fp32", "cache fp32"} | ({"cache bf16"} if native_bf16 else set())
    assert all(v["seconds_per_step"] > 0 for v in training.values())
    assert (
        training["cache fp32"]["cache_build_seconds"] > 0 and training["no_cache fp32"]["cache_build_seconds"] is None
    )

    inference = json.loads((tmp_path / "inference_quick.json").read_text())
    assert {"autosam fp32", "surrogate fp32", "sam_point fp32"} <= set(inference["modes"])
    assert ("autosam bf16" in inference["modes"]) == native_bf16
    assert set(inference["breakdown"]["fp32"]) == {
        "sam_image_encoder",
        "prompt_generator_g",
        "sam_mask_decoder",
        "surrogate_decoder_h",
    }

    real = json.loads((tmp_path / "real_data_quick.json").read_text())
    assert set(real["models"]) == {"pipeline:default", "minimal:g+h", "minimal:unet"}
    assert real["machine"]["cpu"] and "cpu_native_bfloat16" in real["machine"]
    for model in real["models"].values():
        assert model["steps"] == 6 and [point["step"] for point in model["curve"]][-1] == 6
        assert all(0.0 <= model["test"][name]["dice"] <= 1.0 for name in ("kvasir", "colondb", "etis"))
    assert (tmp_path / "learning_curves_quick.png").stat().st_size > 0

    # The printed tables carry every benchmark.
    for heading in ("Training cost", "Inference cost per image", "Where one AutoSAM forward", "Real data"):
        assert heading in result.stdout


def test_a_timed_out_command_leaves_no_process_behind(tmp_path):
    """run_command kills the whole process group: a grandchild (as a launcher's worker would be) goes too."""
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        run_command([sys.executable, "-c", script], timeout=5)
    grandchild = int(pid_file.read_text())
    for _ in range(50):
        if not is_running(grandchild):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"process {grandchild} is still running after the time-out")


def is_running(pid: int) -> bool:
    """Alive and not a zombie (a killed process whose parent has not reaped it yet runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
