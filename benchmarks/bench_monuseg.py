"""Benchmark: multi-class AutoSAM on real MoNuSeg nuclei. Does a nucleus boundary class let a SAM-free model
(h(g(I)), `--stage standalone`) separate touching nuclei, and what does it cost the nucleus mask?

Two models, trained the same way by the project's own `python -m autosam_hf.train --stage standalone` (same recipe,
g's input size, batch, seed and threads, side by side, each for the same wall-clock budget `--minutes` or the same
number of steps `--steps`), differ only in their classes:

  - `three_class`: `--preset monuseg_boundary`: background, nucleus interior, nucleus boundary (a ring of
    `--boundary_width` pixels at the original resolution; on train from the binary masks' connected components);
  - `binary`: `--preset monuseg`: nucleus vs background.

Each keeps its best epoch on the same seeded part of monuseg/train (the training script's validation: macro-mean
Dice for the 3-class model, Dice for the binary one) and is scored ONCE on monuseg/test (14 images, original
resolution):

  - per-class Dice/IoU (3-class), against the label maps derived from `monuseg/test/masks_instance` (each nucleus's
    own ring);
  - binary nucleus Dice/IoU: the predicted nucleus (3-class: interior ∪ boundary) against `monuseg/test/masks`;
  - AJI and the count error against `monuseg/test/masks_instance`, predicted instances being the connected
    components of the predicted interior grown back into the predicted boundary (binary: of the predicted mask),
    `autosam_hf.metrics.instances`.

Writes `benchmarks/results/monuseg/<run>.json` and `<run>.png` (image | ground truth | 3-class | binary; run `latest`,
`quick`, or `--name monuseg/<run>`) and prints a Markdown table.

    python -m benchmarks.bench_monuseg                 # 20 minutes per model, side by side, half the cores each
    python -m benchmarks.bench_monuseg --steps 400     # a fixed number of optimizer steps instead
    python -m benchmarks.bench_monuseg --quick         # smoke test (< 1 min): 2 steps at g 64 px on 3 images
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from autosam_hf.data import DEFAULT_BOUNDARY_WIDTH, MaskClasses, get_preset, load_preset_dataset
from autosam_hf.hub import load_model_and_processor
from autosam_hf.inference import iter_predictions
from autosam_hf.metrics import (
    InstanceMetrics,
    MulticlassSegmentationMetrics,
    class_names_of,
    dice_iou_per_image,
    instances_from_label_map,
)
from autosam_hf.runtime import describe_machine
from autosam_hf.visualization import add_legend, class_colors, overlay_label_map, overlay_mask, write_png
from benchmarks.common import (
    DATA_DIR,
    default_result_name,
    machine,
    read_train_log,
    result_path,
    run_training,
    sam_checkpoint,
    write_result,
)

MODELS = {"three_class": "monuseg_boundary", "binary": "monuseg"}
BINARY_COLOR = (255, 200, 0)  # the binary model's nuclei, apart from the 3-class colours


@dataclasses.dataclass(frozen=True)
class Settings:
    """What both models share (stored in the result file)."""

    minutes: float | None  # wall-clock budget per model (the training script's --max_train_minutes)
    steps: int | None  # or a number of optimizer steps
    input_size: int  # g's input side (the preset's: 512)
    batch_size: int
    boundary_width: int
    threads: int  # torch threads per model
    seed: int
    max_train_samples: int | None
    max_eval_samples: int | None  # validation images (a seeded part of train)
    max_test_samples: int | None


# ------------------------------------------------------------------------------------------------ training
def training_arguments(name: str, settings: Settings, output_dir: Path) -> list[str]:
    """`python -m autosam_hf.train` arguments of one model: the same flags for both, but the preset."""
    arguments = [
        "-m", "autosam_hf.train",
        "--stage", "standalone",
        "--preset", MODELS[name],
        "--data", str(DATA_DIR / "monuseg"),
        # Standalone never runs SAM's encoder; SAM's config (C = 256, E = 64, 256² masks) only shapes g and h.
        "--sam", str(sam_checkpoint("tiny_encoder")),
        "--prompt_input_size", str(settings.input_size),
        "--per_device_train_batch_size", str(settings.batch_size),
        "--mixed_precision", "no",
        "--seed", str(settings.seed),
        "--checkpointing_steps", str(10**9),  # resumable checkpoints would cost time between epochs
        "--num_overlays", "0",
        "--output_dir", str(output_dir),
    ]  # fmt: skip
    if settings.minutes is not None:
        arguments += ["--max_train_minutes", str(settings.minutes)]
    if settings.steps is not None:
        arguments += ["--max_train_steps", str(settings.steps)]
    for flag in ("max_train_samples", "max_eval_samples"):
        if getattr(settings, flag):
            arguments += [f"--{flag}", str(getattr(settings, flag))]
    if name == "three_class":
        arguments += ["--boundary_width", str(settings.boundary_width)]
    return arguments


def train(name: str, settings: Settings, workdir: Path, in_process: bool = False) -> dict:
    """Train one model in its own process group (here with `in_process`: --quick, a smoke run); returns what
    describes the run (command, steps, best val)."""
    output_dir = workdir / name
    arguments = training_arguments(name, settings, output_dir)
    timeout = 60 * (settings.minutes or 0) + 3 * 3600
    run_training(arguments, threads=settings.threads, timeout=timeout, in_process=in_process)
    steps = read_train_log(output_dir)
    best = json.loads((output_dir / "all_results.json").read_text())["stages"]["standalone"]
    return {
        "output_dir": str(output_dir),
        "command": "python " + " ".join(arguments),
        "steps": steps[-1]["step"],
        "epochs": steps[-1]["epoch"] + 1,
        "train_minutes": steps[-1]["seconds"] / 60,
        "best_val": {key.removeprefix("val_"): value for key, value in best.items() if key.startswith("val_")},
        "best_epoch": best["epoch"],
    }


# ------------------------------------------------------------------------------------------------ scoring
def load_test(settings: Settings):
    """monuseg/test twice: as 3-class label maps with instance ids (from masks_instance), and as binary masks."""
    classes = MaskClasses.boundary(settings.boundary_width)
    boundary = load_preset_dataset("monuseg_boundary", "test", DATA_DIR / "monuseg", classes=classes)
    binary = load_preset_dataset("monuseg", "test", DATA_DIR / "monuseg")
    if settings.max_test_samples:
        keep = range(min(settings.max_test_samples, len(binary)))
        boundary, binary = boundary.select(keep), binary.select(keep)
    assert boundary["id"] == binary["id"]
    return boundary, binary


def score(output_dir: str, boundary, binary) -> tuple[dict, list[np.ndarray]]:
    """The selected model on monuseg/test (module docstring); returns its scores and its label maps."""
    model, processor = load_model_and_processor(output_dir)
    images = ((row["id"], row["image"]) for row in boundary)
    class_metrics = MulticlassSegmentationMetrics(class_names_of(model.config.id2label))
    instance_metrics = InstanceMetrics()
    nucleus, label_maps = [], []
    for (image_id, prediction), truth, mask in zip(
        iter_predictions(model, processor, images, mode="surrogate", batch_size=2), boundary, binary, strict=True
    ):
        assert image_id == truth["id"]
        nucleus.append(dice_iou_per_image(prediction.mask, np.asarray(mask["mask"])))
        if model.config.num_classes > 1:
            class_metrics.update(prediction.class_masks, np.asarray(truth["mask"]))
        instance_metrics.update(instances_from_label_map(prediction.label_map), np.asarray(truth["instances"]))
        label_maps.append(prediction.label_map)
    scores = {"nucleus_dice": float(np.mean([d for d, _ in nucleus])), "nucleus_iou": float(np.mean(nucleus, 0)[1])}
    scores |= instance_metrics.compute()
    if len(class_metrics):
        scores |= {key: value for key, value in class_metrics.compute().items() if not key.startswith("foreground")}
    return scores, label_maps


def overlays(boundary, predictions: dict[str, list[np.ndarray]], path: Path, count: int = 3, tile: int = 320) -> None:
    """Image | ground truth (3 classes) | 3-class prediction | binary prediction, for the first `count` images."""
    colors = class_colors(get_preset("monuseg_boundary").id2label)
    rows = []
    for index in range(min(count, len(boundary))):
        image = np.asarray(boundary[index]["image"].convert("RGB"))
        tiles = [
            image,
            overlay_label_map(image, np.asarray(boundary[index]["mask"]), list(colors.values())),
            overlay_label_map(image, predictions["three_class"][index], list(colors.values())),
            overlay_mask(image, predictions["binary"][index] > 0, BINARY_COLOR, contour_color=None),
        ]
        resized = [np.asarray(PIL.Image.fromarray(t).resize((tile, tile), PIL.Image.BILINEAR)) for t in tiles]
        rows.append(np.concatenate(resized, axis=1))
    write_png(add_legend(np.concatenate(rows, axis=0), {**colors, "nucleus (binary model)": BINARY_COLOR}), path)


# ------------------------------------------------------------------------------------------------ report
def markdown_table(models: dict[str, dict]) -> str:
    columns = [
        ("epochs", "epochs", "{}"),
        ("steps", "steps", "{}"),
        ("val", "best val Dice", "{:.3f}"),
        ("nucleus_dice", "test nucleus Dice", "{:.3f}"),
        ("dice_interior", "interior Dice", "{:.3f}"),
        ("dice_boundary", "boundary Dice", "{:.3f}"),
        ("aji", "AJI", "{:.3f}"),
        ("count_error", "count error (nuclei/image)", "{:.1f}"),
    ]
    lines = ["| model | " + " | ".join(title for _, title, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, model in models.items():
        values = {**model["test"], "epochs": model["epochs"], "steps": model["steps"], "val": model["best_val"]["dice"]}
        cells = [form.format(values[key]) if key in values else "–" for key, _, form in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="Wall-clock budget per model (default 20).")
    parser.add_argument("--steps", type=int, help="Optimizer steps per model instead of --minutes.")
    parser.add_argument("--input_size", type=int, default=get_preset("monuseg").image_size, help="g's input side.")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--boundary_width", type=int, default=DEFAULT_BOUNDARY_WIDTH, help="Ring width, pixels.")
    parser.add_argument("--threads", type=int, help="Torch threads per model (default: half the cores).")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="Smoke test: 2 steps at g 64 px, 3 train/2 test images.")
    parser.add_argument("--name", help="Result EXPERIMENT/RUN (default monuseg/latest; monuseg/quick with --quick).")
    args = parser.parse_args(argv)
    minutes = None if args.steps else args.minutes
    settings = Settings(
        minutes=minutes,
        steps=args.steps,
        input_size=args.input_size,
        batch_size=args.batch_size,
        boundary_width=args.boundary_width,
        threads=args.threads or max(1, (os.cpu_count() or 2) // 2),
        seed=args.seed,
        max_train_samples=None,
        max_eval_samples=None,
        max_test_samples=None,
    )
    if args.quick:
        quick = {"minutes": None, "steps": 2, "input_size": 64, "batch_size": 1, "threads": 1}
        quick |= {"max_train_samples": 3, "max_eval_samples": 1, "max_test_samples": 2}
        settings = dataclasses.replace(settings, **quick)
    return args, settings


def main(argv: list[str] | None = None) -> None:
    args, settings = parse_args(argv)
    name = args.name or default_result_name("monuseg", args.quick)
    print(f"{name}: {settings} on {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="autosam-bench-monuseg-") as workdir:
        if args.quick:  # a smoke run: one after the other in this process (one accelerate state per process)
            runs = {model: train(model, settings, Path(workdir), in_process=True) for model in MODELS}
        else:
            with ThreadPoolExecutor(max_workers=len(MODELS)) as pool:  # side by side: the same load for both
                trained = pool.map(lambda model: train(model, settings, Path(workdir)), MODELS)
                runs = dict(zip(MODELS, trained, strict=True))
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        boundary, binary = load_test(settings)
        predictions = {}
        for model, run in runs.items():
            run["test"], predictions[model] = score(run.pop("output_dir"), boundary, binary)
    figure = result_path(name, ".png")
    figure.parent.mkdir(parents=True, exist_ok=True)
    overlays(boundary, predictions, figure)
    result = {
        "machine": {**describe_machine(), "threads_per_model": settings.threads, "description": machine()},
        "settings": dataclasses.asdict(settings),
        "selection": "best val Dice (3-class: macro mean of interior and boundary) on a seeded part of monuseg/train; "
        "monuseg/test is scored once, on that model",
        "instances": "connected components of the predicted interior, grown back into the predicted boundary "
        "(binary model: of the predicted mask); ground truth monuseg/test/masks_instance",
        "models": runs,
        "test_images": len(boundary),
    }
    print(f"wrote {write_result(name, result)}")
    print(f"\n**MoNuSeg test, SAM-free h(g(I)), 3-class vs binary** ({machine()})\n\n{markdown_table(runs)}")


if __name__ == "__main__":
    main()
