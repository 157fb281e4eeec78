"""Benchmark 4: how fast do the models LEARN on real images? Validation Dice vs optimizer steps and vs minutes.

Every model trains from random weights (none can be fetched here) on Kvasir-SEG `train` for the same number of
optimizer steps at the same batch size and number of threads, one model after the other. The curve is the mean
per-image Dice on `kvasir/val` at each image's original resolution, every `--eval_every` steps. The model kept is
the best one on val; it is scored ONCE, at the end, on `kvasir/test` and, for generalisation, on the CVC-ColonDB
and ETIS-LaribPolypDB test subsets. Nothing is ever selected on those.

Models ("runners"; `--models` picks them):
  - `pipeline:<variant>`: g + h (HarDNet-85 prompt generator + surrogate decoder, no SAM) trained by the project's
    own `python -m autosam_hf.train --stage standalone`, with its data path (the recipe's augmentation, the preset's
    canvas rule — squash for Kvasir —, masked loss) and the variant's extra flags (`VARIANTS`). It validates once
    per epoch (800 images at batch 8: every 100 steps); the curve is read from its `train_log.jsonl`.
  - `minimal:g+h`: the same model in the minimal loop (`benchmarks.baselines.train_minimal`): square resize, random
    horizontal and vertical flips only, fp32, Adam 3e-4 / wd 1e-5 at a constant rate, plain BCE + soft Dice, decoded
    images preloaded.
  - `minimal:unet`: the standard baseline, MONAI's FlexibleUNet with a ResNet-34 encoder (random init, 256² input;
    `pip install monai`), in the same loop.
  - `minimal:g+h/pipeline-draws`: `minimal:g+h` replaying the pipeline's random draws (its batch order and flips,
    `PipelineDraws`): the two loops then see the same batches, and whatever still differs is how they train.

Minutes are training time: the time a loop spends validating is taken off its clock (`summarize_log`).

Probes of the selected model, to tell training from scoring: for the pipeline, `test_letterbox` (or `test_squash`):
the test sets through the canvas rule other than the one the model was saved with; for the minimal loops,
`test_letterboxed` (the test sets fed letterboxed) and, for `minimal:g+h`, `best_val_scored_as_the_pipeline` (val
scored through the pipeline's processor and post-processing).

    python -m benchmarks.bench_real_data                       # 1000 steps, every model, all threads
    python -m benchmarks.bench_real_data --input_size 128 --name real_data_128/seed42
    python -m benchmarks.bench_real_data --models pipeline --variants default,default+light --merge
    python -m benchmarks.bench_real_data --steps 300 --input_size 128 --models pipeline,minimal:g+h/pipeline-draws \
        --variants constant                                     # same draws, same optimizer: step for step
    python -m benchmarks.bench_real_data --quick               # smoke test: 6 steps on 16 images, in this process

Several seeds of one recipe (`--seed S --name <study>/..._seedS`) are gathered by `benchmarks.seeds` as mean ± sd.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import PIL.Image
import torch

from autosam_hf.runtime import describe_machine, resolve_device, use_fast_memory_format
from autosam_hf.visualization import save_figure
from benchmarks.baselines import (
    MinimalModel,
    build_g_h,
    build_unet,
    predict_letterboxed,
    predict_square,
    score,
    square_images,
    train_minimal,
)
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

if TYPE_CHECKING:
    import datasets

# The paper's constant learning rate (the minimal loop's), in place of the default recipe's cosine schedule.
CONSTANT_RATE = ["--lr_scheduler_type", "constant", "--warmup_ratio", "0"]
# Pipeline variants: name → extra `autosam_hf.train` flags. Adding an ablation is one line here, e.g.
# "flips": ["--augmentation", "flips"], "cosine": ["--lr_scheduler_type", "cosine", "--num_warmup_steps", "50"].
VARIANTS: dict[str, list[str]] = {
    "default": [],  # the default recipe (cosine after a 5% warm-up since the 224² runs at 1,000 steps)
    # The default recipe's constant rate before then: the minimal loop's optimizer, for parity runs.
    "constant": CONSTANT_RATE,
    # BatchNorm with small batches, at the constant rate (the 300-step ablation's): the same 8 images per optimizer
    # step, BatchNorm's statistics over 4 or 2 (the seed-42 result file names them default+..., the default then).
    "constant+batch4x2": [*CONSTANT_RATE, "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2"],
    "constant+batch2x4": [*CONSTANT_RATE, "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "4"],
    "paper": ["--recipe", "paper"],  # the paper's settings (at the benchmark's batch)
    # One change at a time from the paper's recipe:
    "paper+light": ["--recipe", "paper", "--augmentation", "light"],
    "paper+flips": ["--recipe", "paper", "--augmentation", "flips"],
    "paper+views8": ["--recipe", "paper", "--num_views", "8"],  # K fixed views, as the SAM cache trains
    "paper+bf16": ["--recipe", "paper", "--mixed_precision", "bf16"],
    "paper+dice": ["--recipe", "paper", "--bce_loss_weight", "0"],  # soft Dice alone
    "paper+cosine": ["--recipe", "paper", "--lr_scheduler_type", "cosine", "--warmup_ratio", "0.05"],
    "paper+adamw1e-3": [
        "--recipe",
        "paper",
        "--optimizer",
        "adamw",
        "--learning_rate",
        "1e-3",
        "--weight_decay",
        "1e-4",
    ],
    # One change at a time from the default recipe (the paper's optimizer with flips only, batch 8):
    "default+light": ["--augmentation", "light"],
    "default+reference": ["--augmentation", "reference"],
    "default+lr1e-3": ["--learning_rate", "1e-3"],  # a higher peak for the cosine schedule
    # The trained weights' exponential moving average validated and kept (its log also scores the weights themselves).
    "default+ema": ["--ema_decay", "0.999"],
    "default+adamw-cosine": [
        "--optimizer",
        "adamw",
        "--weight_decay",
        "1e-4",
        "--lr_scheduler_type",
        "cosine",
        "--warmup_ratio",
        "0.05",
    ],  # fmt: skip
}
PIPELINE_DRAWS = "/pipeline-draws"
MINIMAL_MODELS = ("minimal:g+h", "minimal:unet", "minimal:g+h" + PIPELINE_DRAWS)
# Generalisation sets: name → (preset, folder under the data dir). Their `test` split resolves to `test_subset`.
TEST_SETS = {
    "kvasir": ("kvasir", "kvasir"),
    "colondb": ("colondb", "cvc_colondb"),
    "etis": ("etis", "etis_laribpolypdb"),
}
# `minimal:g+h/pipeline-draws` builds the model of `minimal:g+h`: only its draws differ.
BUILDERS: dict[str, Callable[[Settings], MinimalModel]] = {
    "minimal:g+h": lambda settings: build_g_h(settings.input_size),
    "minimal:unet": lambda settings: build_unet(settings.unet_size),
}

# list of PIL images → list of (H_i, W_i) float foreground probabilities at each image's original size.
Predictor = Callable[[list[PIL.Image.Image]], list[np.ndarray]]


@dataclass(frozen=True)
class Settings:
    """What every model of one run shares (stored in the result file; `--merge` requires equal settings)."""

    steps: int
    batch_size: int
    eval_every: int
    input_size: int  # g's input side (pipeline and minimal:g+h)
    unet_size: int  # the U-Net's input and output side
    threads: int
    seed: int
    minutes: float | None  # wall-clock cap per model (validation included), None = none
    max_train_samples: int | None
    max_eval_samples: int | None  # caps val and every test set
    learning_rate: float = 3e-4
    weight_decay: float = 1e-5
    device: str = "cpu"  # where the minimal loops and the scoring run (the pipeline's accelerate picks its own)
    stage: str = "standalone"  # the pipeline's stage: standalone (h(g(I)), no SAM) or prompt (g through SAM)


# ------------------------------------------------------------------------------------------------ data and scores
def load_split(preset: str, folder: str, split: str, limit: int | None) -> datasets.Dataset:
    """A `datasets.Dataset` with `image` (PIL RGB) and `mask` columns, truncated to its first `limit` rows."""
    from autosam_hf.data import load_preset_dataset

    return load_preset_dataset(preset, split, DATA_DIR / folder, max_samples=limit or None)


def score_test_sets(predict: Predictor, settings: Settings) -> dict[str, dict]:
    """The selected model on kvasir/test, ColonDB and ETIS: scored once, never used for any choice."""
    results = {}
    for name, (preset, folder) in TEST_SETS.items():
        dataset = load_split(preset, folder, "test", settings.max_eval_samples)
        images = [image.convert("RGB") for image in dataset["image"]]
        results[name] = {**score(predict(images), dataset["mask"]), "images": len(dataset)}
    return results


def summarize_log(log: list[dict]) -> dict:
    """Curve, best val point and speed from a training log in `train_log.jsonl`'s schema.

    `log` holds step records `{"step", "loss", "seconds"}` (`seconds`: wall clock since training started) and
    validation records `{"step", "val_dice", "val_iou"}`. Both loops validate between two steps, so the step after
    a validation also paid for it: its duration is replaced by the median step's, and `minutes` is training time.
    """
    steps = [r for r in log if "loss" in r]
    validations = [r for r in log if "val_dice" in r]
    validated = {r["step"] for r in validations}
    durations = np.diff([0.0] + [r["seconds"] for r in steps])
    # Step 1 carries the one-off warm-up (allocations, oneDNN kernel choice): kept in the clock, not in s/step.
    plain = [d for r, d in zip(steps, durations, strict=True) if r["step"] != 1 and r["step"] - 1 not in validated]
    seconds_per_step = statistics.median(plain) if plain else float(np.median(durations))
    training = [seconds_per_step if r["step"] - 1 in validated else d for r, d in zip(steps, durations, strict=True)]
    minutes_at = dict(zip((r["step"] for r in steps), np.cumsum(training) / 60, strict=True))
    curve, previous = [], 0
    for r in validations:
        # Mean training loss since the previous validation: with the val Dice, it tells a model that fits its
        # (augmented) training batches slowly from one that fits them but does not transfer to val.
        losses = [s["loss"] for s in steps if previous < s["step"] <= r["step"]]
        curve.append(
            {
                "step": r["step"],
                "minutes": float(minutes_at[r["step"]]),
                "train_loss": float(np.mean(losses)) if losses else None,
                "val_dice": r["val_dice"],
                "val_iou": r["val_iou"],
                # --ema_decay: the trained weights' own scores beside the average's
                **{key: r[key] for key in ("unaveraged_val_dice", "unaveraged_val_iou") if key in r},
            }
        )
        previous = r["step"]
    best = max(curve, key=lambda point: point["val_dice"])  # the first of equal maxima, as the training script
    return {
        "steps": steps[-1]["step"],
        "seconds_per_step": seconds_per_step,
        "train_minutes": float(minutes_at[steps[-1]["step"]]),
        "curve": curve,
        "best_val": {"dice": best["val_dice"], "iou": best["val_iou"], "step": best["step"]},
    }


# ------------------------------------------------------------------------------------------------ pipeline runner
def run_pipeline(
    variant: str, settings: Settings, workdir: Path, in_process: bool = False
) -> tuple[list[dict], Predictor, dict]:
    """`autosam_hf.train --stage standalone` (or `prompt`: g through a small random SAM, its embeddings cached) +
    the variant's flags; returns its log, its val-selected model as a predictor (h(g(I)), or AutoSAM for the prompt
    stage, with the processor it saved) and what describes the run."""
    from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor
    from autosam_hf.inference import predict_images
    from autosam_hf.model.frozen_sam import LETTERBOX, SQUASH

    output_dir = workdir / f"pipeline-{variant}"
    limits = []
    if settings.max_train_samples:
        limits += ["--max_train_samples", str(settings.max_train_samples)]
    if settings.max_eval_samples:
        limits += ["--max_eval_samples", str(settings.max_eval_samples)]
    arguments = [
        "-m", "autosam_hf.train",
        "--stage", settings.stage,
        "--preset", "kvasir",
        "--data", str(DATA_DIR / "kvasir"),
        # Standalone never runs SAM's encoder; only SAM's config (C = 256, E = 64) shapes g and h. The prompt stage
        # runs a small SAM (4-layer ViT on a 256² canvas) whose embeddings are cached once per view.
        "--sam", str(sam_checkpoint("tiny_encoder" if settings.stage == "standalone" else "small")),
        "--prompt_input_size", str(settings.input_size),
        "--per_device_train_batch_size", str(settings.batch_size),
        "--max_train_steps", str(settings.steps),
        "--mixed_precision", "no",
        "--seed", str(settings.seed),
        "--checkpointing_steps", str(10**9),  # resumable checkpoints would cost time between epochs
        "--num_overlays", "0",
        "--output_dir", str(output_dir),
        *(["--max_train_minutes", str(settings.minutes)] if settings.minutes else []),
        *limits,
        *VARIANTS[variant],
    ]  # fmt: skip
    timeout = 60 * settings.minutes + 3600 if settings.minutes else 14 * 24 * 3600
    run_training(arguments, in_process=in_process, threads=settings.threads, timeout=timeout)
    log = read_train_log(output_dir, steps_only=False)
    # The best epoch on val, saved by the script.
    model = use_fast_memory_format(AutoSamForSegmentation.from_pretrained(output_dir).eval().to(settings.device))
    processor = AutoSamImageProcessor.from_pretrained(output_dir)

    predict_mode = "surrogate" if settings.stage == "standalone" else "autosam"

    def predict(images: list[PIL.Image.Image]) -> list[np.ndarray]:
        return predict_images(model, processor, images, mode=predict_mode, batch_size=settings.batch_size)

    # The same model fed through the other canvas rule: what the rule it was saved with gains on non-square images.
    other_rule = LETTERBOX if processor.canvas_rule == SQUASH else SQUASH
    other_processor = AutoSamImageProcessor.from_model_config(
        model.config, canvases=processor.canvases, canvas_rule=other_rule
    )
    description = {
        "runner": "pipeline",
        "extra_flags": VARIANTS[variant],
        "command": "python " + " ".join(arguments),
        "image_size": settings.input_size,
        "mask_size": 4 * model.config.prompt_embedding_shape[1],  # h's output canvas, 4E
        "trainable_parameters": sum(p.numel() for n, p in model.named_parameters() if not n.startswith("sam.")),
        "canvas_rule": processor.canvas_rule,
        f"test_{other_rule}": score_test_sets(
            lambda images: predict_images(
                model, other_processor, images, mode=predict_mode, batch_size=settings.batch_size
            ),
            settings,
        ),
    }
    return [r for r in log if r.get("stage") == settings.stage], predict, description


# ------------------------------------------------------------------------------------------------ minimal runners
def run_minimal(name: str, settings: Settings) -> tuple[list[dict], Predictor, dict]:
    """Seed, build, train in the minimal loop; returns its log, the val-selected model as a predictor, and what
    describes the run."""
    from accelerate.utils import set_seed

    set_seed(settings.seed)  # what the training script does before building: the same g/h initialisation
    model = BUILDERS[name.removesuffix(PIPELINE_DRAWS)](settings)
    model.module.to(settings.device)
    train = load_split("kvasir", "kvasir", "train", settings.max_train_samples)
    val = load_split("kvasir", "kvasir", "val", settings.max_eval_samples)
    log = train_minimal(model, train, val, settings, name, replay_pipeline_draws=name.endswith(PIPELINE_DRAWS))

    def predict(images: list[PIL.Image.Image]) -> list[np.ndarray]:
        sizes = [(image.height, image.width) for image in images]
        return predict_square(model, square_images(images, model.image_size), sizes, settings.batch_size)

    description = {
        "runner": "minimal",
        "image_size": model.image_size,
        "mask_size": model.mask_size,
        "trainable_parameters": sum(p.numel() for p in model.module.parameters() if p.requires_grad),
        # The same model fed letterboxed: what that canvas costs on non-square images.
        "test_letterboxed": score_test_sets(
            lambda images: predict_letterboxed(model, images, settings.batch_size), settings
        ),
    }
    if name.startswith("minimal:g+h"):
        # The val-selected model scored again as the pipeline validates (its processor's canvases and
        # post-processing): separates how the two loops train from how they score.
        from autosam_hf import AutoSamImageProcessor
        from autosam_hf.inference import predict_images

        processor = AutoSamImageProcessor.from_model_config(model.module.config)
        images = [image.convert("RGB") for image in val["image"]]
        probabilities = predict_images(
            model.module, processor, images, mode="surrogate", batch_size=settings.batch_size
        )
        description["best_val_scored_as_the_pipeline"] = score(probabilities, val["mask"])
    return log, predict, description


# ------------------------------------------------------------------------------------------------ outputs
def plot_curves(models: dict[str, dict], path: Path) -> None:
    """Val Dice vs optimizer steps (left) and vs training minutes (right), one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_step, by_minute) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for name, result in models.items():
        curve = result["curve"]
        by_step.plot([p["step"] for p in curve], [p["val_dice"] for p in curve], marker="o", markersize=3, label=name)
        by_minute.plot([p["minutes"] for p in curve], [p["val_dice"] for p in curve], marker="o", markersize=3)
    by_step.set(xlabel="optimizer steps", ylabel="val Dice (Kvasir-SEG, per image)", ylim=(0, 1))
    by_minute.set(xlabel="training minutes (validation excluded)")
    for axis in (by_step, by_minute):
        axis.grid(alpha=0.3)
    by_step.legend()
    save_figure(figure, path, dpi=120)


def machine_info(threads: int) -> dict:
    """The CPU the timings belong to: compare s/step and minutes only between equal `cpu` + `cpu_capability`."""
    return {**describe_machine(), "threads": threads, "description": machine()}


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Settings, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="Optimizer steps per model.")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument(
        "--eval_every", type=int, default=None, help="Minimal loops: steps between validations (default one epoch, "
        "100 for Kvasir at batch 8: the pipeline validates once per epoch)."
    )  # fmt: skip
    parser.add_argument("--input_size", type=int, default=352, help="g's input side (the preset's is 352).")
    parser.add_argument("--unet_size", type=int, default=256, help="The U-Net's input side.")
    parser.add_argument("--threads", type=int, default=None, help="Torch threads per run (default: all).")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: the minimal loops and scoring run there.")
    parser.add_argument(
        "--stage", choices=("standalone", "prompt"), default="standalone",
        help="The pipeline's stage: standalone (g + h, no SAM) or prompt (g through a small random SAM, cached).",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--minutes", type=float, default=None, help="Wall-clock cap per model; keeps what it reached.")
    parser.add_argument(
        "--models", default="pipeline,minimal:g+h,minimal:unet",
        help=f"Comma list of: pipeline (every --variants), pipeline:<variant>, {', '.join(MINIMAL_MODELS)}.",
    )  # fmt: skip
    parser.add_argument("--variants", default="default", help=f"Pipeline variants, comma list of {sorted(VARIANTS)}.")
    parser.add_argument("--max_train_samples", type=int, default=None, help="Train on the first N images only.")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="Cap val and each test set at N images.")
    parser.add_argument(
        "--name", help="Result EXPERIMENT/RUN, e.g. real_data_224/seed1 (default real_data/latest; real_data/quick)."
    )
    parser.add_argument("--merge", action="store_true", help="Keep the other models of an existing result file.")
    parser.add_argument("--quick", action="store_true", help="Smoke test: 6 steps on 16 images at 64², 4 val/test.")
    args = parser.parse_args(argv)
    try:
        result_path(args.name or "real_data/latest")
    except ValueError as error:
        parser.error(str(error))
    if args.quick:
        args.steps, args.input_size, args.unet_size = 6, 64, 64
        args.max_train_samples, args.max_eval_samples = 16, 4
    train_size = min(args.max_train_samples or 800, 800)  # kvasir/train holds 800 images
    models = []
    for entry in filter(None, args.models.split(",")):
        if entry == "pipeline":
            models += [f"pipeline:{variant}" for variant in filter(None, args.variants.split(","))]
        else:
            models.append(entry)
    for entry in models:
        if entry not in MINIMAL_MODELS and entry.removeprefix("pipeline:") not in VARIANTS:
            parser.error(
                f"unknown model {entry!r}: use pipeline, pipeline:<{'|'.join(VARIANTS)}>, {', '.join(MINIMAL_MODELS)}"
            )
    if "minimal:unet" in models:
        try:
            import monai  # noqa: F401
        except ImportError:
            parser.error("minimal:unet needs MONAI: `pip install monai` (torch + numpy only)")
    settings = Settings(
        steps=args.steps,
        batch_size=args.batch_size,
        eval_every=args.eval_every or math.ceil(train_size / args.batch_size),
        input_size=args.input_size,
        unet_size=args.unet_size,
        threads=args.threads or torch.get_num_threads(),
        seed=args.seed,
        minutes=args.minutes,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
        device=str(resolve_device(args.device)),
        stage=args.stage,
    )
    return args, settings, list(dict.fromkeys(models))


def main(argv: list[str] | None = None) -> None:
    args, settings, models = parse_args(argv)
    torch.set_num_threads(settings.threads)
    name = args.name or default_result_name("real_data", args.quick)
    result = {
        "machine": machine_info(settings.threads),
        "settings": dataclasses.asdict(settings),
        "selection": "best val Dice on kvasir/val; the test sets are scored once, on that model",
        "models": {},
    }
    existing = result_path(name)
    if args.merge and existing.exists():
        previous = json.loads(existing.read_text())
        # Curves and s/step only compare under the same settings on the same kind of CPU.
        if previous.get("settings") != result["settings"] or any(
            previous.get("machine", {}).get(key) != result["machine"][key] for key in ("cpu", "cpu_capability")
        ):
            sys.exit(f"--merge: {existing} was measured with other settings or on another CPU; use another --name")
        result["models"] = previous["models"]
    print(f"{name}: {models} on {result['machine']['description']}; {settings}", flush=True)
    plot_path = result_path(name, ".png")
    with tempfile.TemporaryDirectory() as workdir:
        for model in models:
            if model.startswith("pipeline:"):
                # --quick trains in this process (a smoke test: the new process's imports would be most of it).
                variant = model.removeprefix("pipeline:")
                log, predict, description = run_pipeline(variant, settings, Path(workdir), in_process=args.quick)
            else:
                log, predict, description = run_minimal(model, settings)
            summary = summarize_log(log)
            result["models"][model] = {**description, **summary, "test": score_test_sets(predict, settings)}
            print(json.dumps({model: {k: v for k, v in result["models"][model].items() if k != "curve"}}), flush=True)
            write_result(name, result)  # after every model: a long run keeps what it finished
            plot_curves(result["models"], plot_path)
    print(f"wrote {existing} and {plot_path}")


if __name__ == "__main__":
    sys.exit(main())
