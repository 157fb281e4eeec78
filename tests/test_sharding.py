"""`autosam_hf.sharding`: accumulators fed shares of the inputs merge into the one fed everything, bit for bit; and
`autosam-predict` / `autosam-eval` under `accelerate launch` with two CPU (gloo) processes write the masks and the
scores of one process."""

import json
import os
import sys

import numpy as np
import PIL.Image
import pytest
from conftest import free_port, make_tiny_model, make_tiny_processor, run_command
from evaluation.sample_data import write_sunseg_split

from autosam_hf.evaluation.cli import main as evaluate_main
from autosam_hf.inference.cli import main as predict_main
from autosam_hf.metrics import MulticlassSegmentationMetrics, SegmentationMetrics, VideoSegmentationMetrics
from autosam_hf.sharding import merge_accumulators, shard


def random_maps(count, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(12 + index, 9 + 2 * index) for index in range(count)]
    probabilities = [rng.random(shape) for shape in shapes]
    targets = [rng.random(shape) > 0.6 for shape in shapes]
    return probabilities, targets


def test_merged_accumulators_compute_what_one_fed_everything_computes():
    probabilities, targets = random_maps(5)
    whole, first, second = SegmentationMetrics(), SegmentationMetrics(), SegmentationMetrics()
    for index, (probability, target) in enumerate(zip(probabilities, targets, strict=True)):
        whole.update_from_probabilities(probability, target)
        (first if index < 3 else second).update_from_probabilities(probability, target)
    merged = merge_accumulators([first, second])
    assert merged.compute() == whole.compute()  # exactly: the per-image lists are joined in order
    assert len(merged) == 5 and len(first) == 3  # the parts are left as they were

    # Video: whole cases in each part (first and last frames held back per case).
    whole, first, second = VideoSegmentationMetrics(), VideoSegmentationMetrics(), VideoSegmentationMetrics()
    for index, (probability, target) in enumerate(zip(probabilities, targets, strict=True)):
        case = "a" if index < 3 else "b"
        whole.update_from_probabilities(case, probability, target)
        (first if case == "a" else second).update_from_probabilities(case, probability, target)
    second.update_from_probabilities("b", probabilities[0], targets[0])
    whole.update_from_probabilities("b", probabilities[0], targets[0])
    merged = merge_accumulators([first, second])
    assert merged.compute_per_case() == whole.compute_per_case() and merged.compute() == whole.compute()

    # Multi-class: the class names are configuration, kept once.
    whole, first, second = (MulticlassSegmentationMetrics(["x", "y"]) for _ in range(3))
    for index, target in enumerate(targets):
        masks = np.stack([target, ~target]) if index % 2 else np.stack([~target, target])
        labels = target.astype(np.uint8) + 1
        whole.update(masks, labels)
        (first if index < 2 else second).update(masks, labels)
    merged = merge_accumulators([first, second])
    assert merged.class_names == ["x", "y"] and merged.compute() == whole.compute()


def test_shard_is_the_whole_input_in_one_process():
    assert shard([[0, 1], [2]], grouped=True) == [0, 1, 2]
    assert shard(["a", "b"]) == ["a", "b"]


# Runs autosam-predict, autosam-eval on images and video, and autosam-eval --volumes, one after the other (one launch,
# one torch import per process): the arguments are a JSON list of argument lists.
LAUNCHED = """
import json, sys
from autosam_hf.evaluation.cli import main as evaluate
from autosam_hf.inference.cli import main as predict
for command, argv in json.loads(sys.argv[1]):
    status = (predict if command == "predict" else evaluate)(argv)
    assert status == 0, (command, status)
"""


def commands(model_dir, images, data, volumes, output):
    eval_data = ["--datasets", f"kvasir={data / 'kvasir'}", "--preset", "sunseg_easy", "--data", str(data / "sunseg")]
    return [
        ("predict", [str(images), "--model", str(model_dir), "--output_dir", str(output / "predict"), "--quiet"]),
        (
            "eval",
            [*("--model", str(model_dir), *eval_data, "--max_samples", "3", "--batch_size", "2")]
            + ["--output_dir", str(output / "eval"), "--save_predictions", "--num_overlays", "2", "--quiet"],
        ),
        ("eval", ["--model", str(model_dir), "--volumes", str(volumes), "--output_dir", str(output / "volumes")]),
    ]


def files_of(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*.png"))}


@pytest.mark.slow
def test_two_processes_predict_and_evaluate_as_one(shared_data_dir, tmp_path):
    model_dir = tmp_path / "model"
    make_tiny_model(prompt_input_size=32).save_pretrained(model_dir)
    make_tiny_processor(prompt_size=32).save_pretrained(model_dir)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("a", (30, 40)), ("b", (17, 23)), ("c", (40, 26))):
        PIL.Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(images / f"{name}.png")
    (images / "broken.png").write_bytes(b"not a png")  # skipped, and reported once
    data = tmp_path / "data"
    data.mkdir()
    (data / "kvasir").symlink_to(shared_data_dir / "kvasir", target_is_directory=True)
    # Three cases of 3, 4 and 3 frames: uneven shares, each case whole in one process.
    sides = {"a": ["left"] * 3, "b": ["right", "left", "right", "left"], "c": ["right"] * 3}
    write_sunseg_split(data / "sunseg", {case: len(frames) for case, frames in sides.items()}, sides)
    volumes = tmp_path / "volumes"
    for case in ("p", "q", "r"):
        import nibabel as nib

        labels = np.zeros((6, 10, 9), np.uint8)
        labels[1:4, 2:7, 3:8] = 1
        for folder, array in (("volumes", rng.normal(size=labels.shape).astype(np.float32)), ("labels", labels)):
            (volumes / folder).mkdir(parents=True, exist_ok=True)
            nib.Nifti1Image(array, np.diag([2.0, 1.0, 1.0, 1.0])).to_filename(volumes / folder / f"{case}.nii.gz")

    one, two = tmp_path / "one", tmp_path / "two"
    for command, argv in commands(model_dir, images, data, volumes, one):
        assert (predict_main if command == "predict" else evaluate_main)(argv) == 0
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
    ]  # fmt: skip
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    argv = json.dumps(commands(model_dir, images, data, volumes, two))
    result = run_command([*launch, str(script), argv], env=environment, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-8000:]

    # Every mask, overlay and overlay grid, byte for byte; the broken file reported once, by the main process.
    for folder in ("predict", "eval"):
        assert files_of(two / folder) == files_of(one / folder) != {}
    assert result.stdout.count("Segmented 3 image(s)") == 1
    assert result.stderr.count("Skipping unreadable input") == result.stderr.count("Skipped 1 unreadable") == 1
    # The reports, every score in them, exactly.
    for folder in ("eval", "volumes"):
        reports = [json.loads((run / folder / "eval_results.json").read_text()) for run in (one, two)]
        assert reports[0] == reports[1]
        assert (one / folder / "eval_results.md").read_text() == (two / folder / "eval_results.md").read_text()
    assert set(reports[0]["per_volume"]["autosam"]) == {"p", "q", "r"}
