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
  - `minimal:g+h`: the same model in the minimal loop below (`train_minimal`): square resize, random horizontal and
    vertical flips only, fp32, Adam 3e-4 / wd 1e-5 at a constant rate, plain BCE + soft Dice, decoded images preloaded.
  - `minimal:unet`: the standard baseline, MONAI's FlexibleUNet with a ResNet-34 encoder (random init, 256² input;
    `pip install monai`), in the same loop.
  - `minimal:g+h/pipeline-draws`: `minimal:g+h` replaying the pipeline's random draws (its batch order and flips,
    `PipelineDraws`): the two loops then see the same batches, and whatever still differs is how they train.

Minutes are training time: the time a loop spends validating is taken off its clock (`summarize_log`).

Probes of the selected model, to tell training from scoring: for the pipeline, `test_letterbox` (or `test_squash`):
the test sets through the canvas rule other than the one the model was saved with; for the minimal loops,
`test_letterboxed` (the test sets fed letterboxed) and, for `minimal:g+h`, `best_val_scored_as_the_pipeline` (val
scored through the pipeline's processor and post-processing).

    python benchmarks/bench_real_data.py                       # 1000 steps, every model, all threads
    python benchmarks/bench_real_data.py --input_size 128 --name real_data_128
    python benchmarks/bench_real_data.py --models pipeline --variants default,default+light --merge
    python benchmarks/bench_real_data.py --steps 300 --input_size 128 --models pipeline,minimal:g+h/pipeline-draws \
        --variants constant                                     # same draws, same optimizer: step for step
    python benchmarks/bench_real_data.py --quick               # smoke test: 6 steps on 16 images, in this process

Several seeds of one recipe (`--seed S --name ..._seedS`) are gathered by `benchmarks/seeds.py` as mean ± sd.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from common import DATA_DIR, RESULTS_DIR, machine, read_train_log, run_training, sam_checkpoint, write_result
from torch import nn

from autosam_hf.runtime import describe_machine, resolve_device
from autosam_hf.visualization import save_figure

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
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

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


def score(probabilities: Sequence[np.ndarray], masks: Sequence) -> dict[str, float]:
    """Mean per-image Dice and IoU of `probabilities > 0.5` ((H, W) each, original size) against the masks.

    The one scoring rule of this benchmark; the training script's validation applies the same (`logits > 0`,
    `dice_iou_per_image` at the original size).
    """
    from autosam_hf.metrics import dice_iou_per_image
    from autosam_hf.model import binarize_mask

    scores = np.array(
        [dice_iou_per_image(p > 0.5, binarize_mask(m)) for p, m in zip(probabilities, masks, strict=True)]
    )
    return {"dice": float(scores[:, 0].mean()), "iou": float(scores[:, 1].mean())}


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
    from autosam_hf.model.frozen_sam import LETTERBOX, SQUASH
    from autosam_hf.predict import predict_images

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
    model = AutoSamForSegmentation.from_pretrained(output_dir).eval().to(settings.device)
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
@dataclass
class MinimalModel:
    """A network for the minimal loop: `forward` maps ImageNet-normalised (B, 3, S, S) to (B, 1, M, M) logits,
    S = `image_size`, M = `mask_size` (the square the masks are resized to)."""

    module: nn.Module
    image_size: int
    mask_size: int
    forward: Callable[[torch.Tensor], torch.Tensor]


def build_g_h(settings: Settings) -> MinimalModel:
    """AutoSAM's g + h exactly as the pipeline builds them (same SAM config, input size and seed → same init),
    trained in surrogate mode; SAM stays frozen and is never run."""
    from autosam_hf import AutoSamForSegmentation

    model = AutoSamForSegmentation.from_sam(str(sam_checkpoint("tiny_encoder")), prompt_input_size=settings.input_size)
    model.set_trainable(prompt_generator=True, surrogate_decoder=True)
    mask_size = 4 * model.config.prompt_embedding_shape[1]  # h's output canvas, 4E = 256

    def forward(pixel_values: torch.Tensor) -> torch.Tensor:
        return model(pixel_values=pixel_values, mode="surrogate").logits

    return MinimalModel(model, settings.input_size, mask_size, forward)


def build_unet(settings: Settings) -> MinimalModel:
    """MONAI FlexibleUNet, ResNet-34 encoder, random init: the standard "resnet34 U-Net" baseline."""
    from monai.networks.nets import FlexibleUNet

    network = FlexibleUNet(in_channels=3, out_channels=1, backbone="resnet34", pretrained=False, spatial_dims=2)
    # Channels-last like g (which converts its own input): s/step then compares the networks, not memory layouts.
    network = network.to(memory_format=torch.channels_last)
    return MinimalModel(network, settings.unet_size, settings.unet_size, network)


# `minimal:g+h/pipeline-draws` builds the model of `minimal:g+h`: only its draws differ.
BUILDERS: dict[str, Callable[[Settings], MinimalModel]] = {"minimal:g+h": build_g_h, "minimal:unet": build_unet}


def square_images(images: Sequence[PIL.Image.Image], size: int) -> torch.Tensor:
    """RGB images resized (bilinear, PIL) to size × size → uint8 (N, 3, size, size)."""
    arrays = [np.asarray(image.convert("RGB").resize((size, size), PIL.Image.BILINEAR)) for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def square_masks(masks: Sequence, size: int) -> torch.Tensor:
    """Ground-truth masks binarised, then resized (nearest) to size × size → float 0/1 (N, 1, size, size)."""
    from autosam_hf.model import binarize_mask

    arrays = [
        np.asarray(PIL.Image.fromarray(binarize_mask(mask) * 255).resize((size, size), PIL.Image.NEAREST)) > 127
        for mask in masks
    ]
    return torch.from_numpy(np.stack(arrays)).float()[:, None]


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, S, S) → ImageNet-normalised float32, channels-last."""
    pixels = (images.float() / 255 - IMAGENET_MEAN) / IMAGENET_STD
    return pixels.contiguous(memory_format=torch.channels_last)


def apply_flips(
    images: torch.Tensor, masks: torch.Tensor, left_right: torch.Tensor, up_down: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip the (image (3, S, S), mask (1, M, M)) pairs where `left_right` / `up_down` (bool (B,)) say so."""
    for dim, flip in ((-1, left_right), (-2, up_down)):
        flip = flip[:, None, None, None]
        images = torch.where(flip, images.flip(dim), images)
        masks = torch.where(flip, masks.flip(dim), masks)
    return images, masks


def random_flips(
    images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each pair left-right, and independently up-down, with p = 0.5."""
    left_right = torch.rand(len(images), generator=generator) < 0.5
    up_down = torch.rand(len(images), generator=generator) < 0.5
    return apply_flips(images, masks, left_right, up_down)


class PipelineDraws:
    """The random draws `autosam-train` makes, for the minimal loop to replay (`minimal:g+h/pipeline-draws`): with
    them the two loops see the same batches, so whatever still differs is how they train, not which draws they got.

    - batch order: accelerate's seedable sampler, a permutation from a generator seeded `seed + epoch`;
    - flips: view `epoch` of image `index` under the package's flips-only augmentation, read off a probe image (the
      flips draw one coin per image whatever its size).
    """

    def __init__(self, seed: int):
        from autosam_hf.data import JointAugmentation, augmentation_for_level, get_preset

        self.seed = seed
        reference = get_preset("kvasir").augmentation
        self.augmentation = JointAugmentation(augmentation_for_level(reference, "flips"), seed=seed)
        self.probe = probe = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)  # no two flips of it alike
        # (left-right, up-down) → the probe flipped so
        self.flipped = {
            (h, v): probe[:: -1 if v else 1, :: -1 if h else 1] for h in (False, True) for v in (False, True)
        }

    def order(self, epoch: int, size: int) -> torch.Tensor:
        return torch.randperm(size, generator=torch.Generator().manual_seed(self.seed + epoch))

    def flips(self, indices: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """bool (B,) left-right and up-down flips of view `epoch` of the images `indices`."""
        drawn = []
        for index in indices.tolist():
            view, _ = self.augmentation(self.probe, self.probe[..., 0], index, epoch)
            drawn.append(next(flips for flips, image in self.flipped.items() if np.array_equal(image, view)))
        left_right, up_down = zip(*drawn, strict=True)
        return torch.tensor(left_right), torch.tensor(up_down)


def bce_dice_loss(logits: torch.Tensor, masks: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Mean BCE-with-logits + mean over images of (1 − soft Dice); logits and masks (B, 1, M, M).

    Written here rather than imported: the reference loop must not share the code under test.
    """
    bce = F.binary_cross_entropy_with_logits(logits, masks)
    probabilities = torch.sigmoid(logits).flatten(1)
    targets = masks.flatten(1)
    dice = (2 * (probabilities * targets).sum(1) + smooth) / (probabilities.sum(1) + targets.sum(1) + smooth)
    return bce + (1 - dice).mean()


@torch.no_grad()
def predict_square(
    model: MinimalModel, images: torch.Tensor, sizes: Sequence[tuple[int, int]], batch_size: int
) -> list[np.ndarray]:
    """uint8 (N, 3, S, S) → list of (H_i, W_i) float32 probabilities, logits resized bilinearly to `sizes`."""
    model.module.eval()
    probabilities = []
    for start in range(0, len(images), batch_size):
        device = next(model.module.parameters()).device
        logits = model.forward(normalize(images[start : start + batch_size]).to(device)).float().cpu()
        for image_logits, size in zip(logits, sizes[start : start + batch_size], strict=True):
            resized = F.interpolate(image_logits[None], size=tuple(size), mode="bilinear", align_corners=False)
            probabilities.append(torch.sigmoid(resized)[0, 0].numpy())
    return probabilities


@torch.no_grad()
def predict_letterboxed(model: MinimalModel, images: Sequence[PIL.Image.Image], batch_size: int) -> list[np.ndarray]:
    """As a letterboxing processor feeds g (SAM's rule; the pipeline's for Kvasir until the polyp presets squashed):
    longest edge to S, normalised, zero padding bottom/right; the logits' padded part is cropped and the rest resized
    to the original size. A probe of what letterboxing a non-square test image costs a model trained on square ones
    (Kvasir's here all are)."""
    model.module.eval()
    device = next(model.module.parameters()).device
    side, mask_side = model.image_size, model.mask_size
    probabilities = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        canvases = torch.zeros(len(batch), 3, side, side)
        valid = []
        for row, image in enumerate(batch):
            scale = side / max(image.height, image.width)
            height, width = round(image.height * scale), round(image.width * scale)
            pixels = torch.from_numpy(np.array(image.convert("RGB").resize((width, height), PIL.Image.BILINEAR)))
            canvases[row, :, :height, :width] = normalize(pixels.permute(2, 0, 1)[None])[0]
            valid.append((round(height * mask_side / side), round(width * mask_side / side)))
        logits = model.forward(canvases.contiguous(memory_format=torch.channels_last).to(device)).float().cpu()
        for image_logits, image, (height, width) in zip(logits, batch, valid, strict=True):
            cropped = image_logits[None, :, :height, :width]
            resized = F.interpolate(cropped, size=(image.height, image.width), mode="bilinear", align_corners=False)
            probabilities.append(torch.sigmoid(resized)[0, 0].numpy())
    return probabilities


def train_minimal(model: MinimalModel, settings: Settings, name: str) -> list[dict]:
    """The minimal loop: fixed steps, batches of preloaded square tensors shuffled each epoch by a seeded generator,
    flips only, fp32 Adam, BCE + soft Dice; validates every `eval_every` steps and keeps the best weights on val
    (loaded into `model.module` on return). Returns a log in `train_log.jsonl`'s schema."""
    train = load_split("kvasir", "kvasir", "train", settings.max_train_samples)
    val = load_split("kvasir", "kvasir", "val", settings.max_eval_samples)
    images, masks = square_images(train["image"], model.image_size), square_masks(train["mask"], model.mask_size)
    val_images = square_images(val["image"], model.image_size)
    val_sizes = [(image.height, image.width) for image in val["image"]]
    val_masks = val["mask"]
    generator = torch.Generator().manual_seed(settings.seed)
    draws = PipelineDraws(settings.seed) if name.endswith(PIPELINE_DRAWS) else None
    parameters = [p for p in model.module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    log, best, best_state = [], -1.0, None
    step, epoch, out_of_time = 0, 0, False
    started = time.monotonic()
    while step < settings.steps and not out_of_time:
        order = draws.order(epoch, len(images)) if draws else torch.randperm(len(images), generator=generator)
        for batch in order.split(settings.batch_size):
            model.module.train()
            if draws:
                batch_images, batch_masks = apply_flips(images[batch], masks[batch], *draws.flips(batch, epoch))
            else:
                batch_images, batch_masks = random_flips(images[batch], masks[batch], generator)
            device = settings.device
            loss = bce_dice_loss(model.forward(normalize(batch_images).to(device)), batch_masks.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            seconds = time.monotonic() - started
            log.append({"epoch": epoch, "step": step, "loss": loss.item(), "seconds": seconds})
            out_of_time = settings.minutes is not None and seconds > 60 * settings.minutes
            if step % settings.eval_every == 0 or step == settings.steps or out_of_time:
                scores = score(predict_square(model, val_images, val_sizes, settings.batch_size), val_masks)
                log.append({"epoch": epoch, "step": step, "val_dice": scores["dice"], "val_iou": scores["iou"]})
                print(f"[{name}] step {step}: val Dice {scores['dice']:.4f} ({seconds / 60:.1f} min)", flush=True)
                if scores["dice"] > best:
                    best, best_state = scores["dice"], copy.deepcopy(model.module.state_dict())
            if step >= settings.steps or out_of_time:
                break
        epoch += 1
    model.module.load_state_dict(best_state)
    return log


def run_minimal(name: str, settings: Settings) -> tuple[list[dict], Predictor, dict]:
    """Seed, build, train in the minimal loop; returns its log, the val-selected model as a predictor, and what
    describes the run."""
    from accelerate.utils import set_seed

    set_seed(settings.seed)  # what the training script does before building: the same g/h initialisation
    model = BUILDERS[name.removesuffix(PIPELINE_DRAWS)](settings)
    model.module.to(settings.device)
    log = train_minimal(model, settings, name)

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
        from autosam_hf.predict import predict_images

        processor = AutoSamImageProcessor.from_model_config(model.module.config)
        val = load_split("kvasir", "kvasir", "val", settings.max_eval_samples)
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
    parser.add_argument("--name", default=None, help="Result file name (default real_data, or real_data_quick).")
    parser.add_argument("--merge", action="store_true", help="Keep the other models of an existing result file.")
    parser.add_argument("--quick", action="store_true", help="Smoke test: 6 steps on 16 images at 64², 4 val/test.")
    args = parser.parse_args(argv)
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
    name = args.name or ("real_data_quick" if args.quick else "real_data")
    result = {
        "machine": machine_info(settings.threads),
        "settings": dataclasses.asdict(settings),
        "selection": "best val Dice on kvasir/val; the test sets are scored once, on that model",
        "models": {},
    }
    existing = RESULTS_DIR / f"{name}.json"
    if args.merge and existing.exists():
        previous = json.loads(existing.read_text())
        # Curves and s/step only compare under the same settings on the same kind of CPU.
        if previous.get("settings") != result["settings"] or any(
            previous.get("machine", {}).get(key) != result["machine"][key] for key in ("cpu", "cpu_capability")
        ):
            sys.exit(f"--merge: {existing} was measured with other settings or on another CPU; use another --name")
        result["models"] = previous["models"]
    print(f"{name}: {models} on {result['machine']['description']}; {settings}", flush=True)
    plot_path = RESULTS_DIR / f"{name.replace('real_data', 'learning_curves', 1)}.png"
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
    print(f"wrote {RESULTS_DIR / name}.json and {plot_path}")


if __name__ == "__main__":
    sys.exit(main())
