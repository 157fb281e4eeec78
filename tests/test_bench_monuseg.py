"""benchmarks.bench_monuseg in its --quick form: both models train, are scored on real MoNuSeg test images with
per-class Dice, nucleus Dice, AJI and count error, and the overlay picture is written."""

import json
import os
import sys
from pathlib import Path

import PIL.Image
import pytest
from conftest import run_command

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_monuseg_benchmark_runs_quick(tmp_path, shared_data_dir):
    environment = {**os.environ, "AUTOSAM_BENCHMARK_RESULTS": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "benchmarks.bench_monuseg", "--quick"]
    result = run_command(command, env=environment, timeout=600, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    report = json.loads((tmp_path / "monuseg" / "quick.json").read_text())
    assert set(report["models"]) == {"three_class", "binary"} and report["test_images"] == 2
    for model in report["models"].values():
        assert model["steps"] == 2 and "--stage standalone" in model["command"]
        test = model["test"]
        assert 0.0 <= test["nucleus_dice"] <= 1.0 and 0.0 <= test["aji"] <= 1.0 and test["count_error"] >= 0
        assert test["true_instances"] > 200  # MoNuSeg test tiles hold 249-818 nuclei
    three_class = report["models"]["three_class"]
    assert "--preset monuseg_boundary" in three_class["command"]
    assert {"dice_interior", "dice_boundary", "iou_boundary"} <= set(three_class["test"])
    assert {"dice_interior", "dice_boundary"} <= set(three_class["best_val"])
    assert "dice_interior" not in report["models"]["binary"]["test"]
    width, height = PIL.Image.open(tmp_path / "monuseg" / "quick.png").size
    assert width == 4 * 320 and height > 2 * 320  # two test images, four tiles each, and the legend
    assert "| three_class |" in result.stdout and "| binary |" in result.stdout
