"""The benchmarks must not rot: every one runs in its --quick form and its numbers land in the tables."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_all_benchmarks_run_quick(tmp_path, shared_data_dir):
    environment = {**os.environ, "AUTOSAM_BENCHMARK_RESULTS": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "run_all.py"), "--quick"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    training = json.loads((tmp_path / "training_quick.json").read_text())["sizes"]["small"]
    assert set(training) == {"no_cache fp32", "cache fp32", "cache bf16"}
    assert all(v["seconds_per_step"] > 0 for v in training.values())
    assert (
        training["cache fp32"]["cache_build_seconds"] > 0 and training["no_cache fp32"]["cache_build_seconds"] is None
    )

    inference = json.loads((tmp_path / "inference_quick.json").read_text())
    assert {"autosam fp32", "surrogate fp32", "sam_point fp32", "autosam bf16"} <= set(inference["modes"])
    assert set(inference["breakdown"]["fp32"]) == {
        "sam_image_encoder",
        "prompt_generator_g",
        "sam_mask_decoder",
        "surrogate_decoder_h",
    }

    real = json.loads((tmp_path / "real_data_quick.json").read_text())
    for model in ("autosam_surrogate_h_of_g", "unet"):
        assert 0.0 <= real[model]["test"]["dice"] <= 1.0 and real[model]["steps"] > 0

    # The printed tables carry every benchmark.
    for heading in ("Training cost", "Inference cost per image", "Where one AutoSAM forward", "Real data"):
        assert heading in result.stdout
