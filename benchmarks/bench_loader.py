"""Benchmark: does the training data path keep up with the model? Loader images/s alone vs the cached step's.

With SAM's embeddings cached, a training step of the prompt stage reads, per image: a Kvasir train row (decoded),
its augmentation view (`JointAugmentation`, the polyp augmentation at the default recipe's level), g's canvas only
(the processor with `canvases=["prompt"]`, at g's input size) and the cached SAM embedding of the same view —
`AutoSamViewDataset` through a torch DataLoader, as `autosam-train` builds it. Measured, in one process, at the
same sizes:

  - `cache_build`: `EmbeddingCache.build` of those images (SAM's encoder, batch 8, float16 storage). Its
    `images_per_second` counts the per-image work only: (first build − a rebuild that finds every entry) / images;
    the rebuild's time (fingerprinting SAM's weights, checking files) is `fixed_seconds`.
  - `loader[<workers>]`: images/s of iterating the DataLoader alone (batch B), with 0, 1, 2 workers and
    the training script's default (`default_num_workers()`): whole epochs, median of 3 after a warm-up epoch
    (persistent workers, so worker start-up is left out).
  - `loader_device_augmentation`: the same with `--augmentation_device accelerator`, at the default workers: the
    workers make the unaugmented uint8 canvases (`AutoSamViewDataset(augment_on_device=True)`), each batch goes to
    the device and `DeviceAugmentation` augments, rescales and normalises it there, as `autosam-train` does.
  - `step`: images/s of the cached training step alone — g forward, SAM's mask decoder, loss, backward, optimizer
    step — on one batch already on the device (median of 3 after a warm-up); bf16 autocast where native.
  - `loader_to_step`: loader images/s (default workers) / step images/s. Target: >= 2 (the loader then hides behind
    the model instead of being the cost of training); `loader_device_augmentation_to_step` the same with the
    augmentation on the device.

    python -m benchmarks.bench_loader                  # SAM vit_b, g at 352, batch 3, 24 images (CPU: ~10 min)
    python -m benchmarks.bench_loader --quick          # small SAM, g at 64, 8 images (< 1 minute)
    python -m benchmarks.bench_loader --device cuda --batch_size 8 --images 128
    python -m benchmarks.bench_loader --sam tiny_encoder   # vit_b's embedding and mask-decoder shapes around a
                                                          # 1-layer ViT: the same loader and step figures in a
                                                          # minute on a CPU (its cache build is not vit_b's)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from accelerate.utils import send_to_device

from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor
from autosam_hf.data import (
    POLYP_AUGMENTATION,
    EmbeddingCache,
    JointAugmentation,
    augmentation_for_level,
)
from autosam_hf.data.device_augmentation import DeviceAugmentation
from autosam_hf.data.torch_dataset import AutoSamViewDataset, training_loader
from autosam_hf.runtime import MIXED_PRECISION_DTYPES, resolve_device, resolve_mixed_precision, use_fast_memory_format
from autosam_hf.training.settings import RECIPES, default_num_workers
from benchmarks.common import (
    default_result_name,
    kvasir_split,
    machine,
    sam_checkpoint,
    time_repeats,
    timing_summary,
    write_result,
)

CACHE_BATCH_SIZE = 8


def time_cache_build(dataset, model, processor, augmentation, cache_dir: Path, dtype: torch.dtype | None) -> dict:
    """Build the cache, then rebuild it complete: the difference is the per-image work (see the module docstring)."""

    def build() -> tuple[EmbeddingCache, float]:
        started = time.perf_counter()
        with torch.autocast(model.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            cache = EmbeddingCache.build(
                dataset, model, processor, cache_dir, augmentation, batch_size=CACHE_BATCH_SIZE, show_progress=False
            )
        return cache, time.perf_counter() - started

    cache, first = build()
    _, fixed = build()
    per_image = max(first - fixed, 1e-9) / len(dataset)
    return cache, {
        "images": len(dataset),
        "seconds": first,
        "fixed_seconds": fixed,
        "seconds_per_image": per_image,
        "images_per_second": 1 / per_image,
    }


def time_loader(views: AutoSamViewDataset, batch_size: int, workers: int) -> dict:
    """Images/s of the training script's DataLoader alone: whole epochs (prefetching included), median of 3 after a
    warm-up epoch (which starts the persistent workers)."""
    loader = training_loader(views, batch_size, workers)

    def epoch() -> None:
        for _ in loader:
            pass

    return {"workers": workers, **timing_summary(time_repeats(epoch), len(views))}


def time_device_augmented_loader(
    views: AutoSamViewDataset, augmentation: DeviceAugmentation, batch_size: int, workers: int, device: torch.device
) -> dict:
    """`time_loader` with the augmentation on the device: every batch sent there and augmented (`train_epoch`'s
    first two steps)."""
    loader = training_loader(views, batch_size, workers)

    def epoch() -> None:
        for batch in loader:
            augmentation(send_to_device(batch, device))

    return {"workers": workers, **timing_summary(time_repeats(epoch, device=device), len(views))}


def time_cached_step(model, batch: dict, dtype: torch.dtype | None, device: torch.device) -> dict:
    """The prompt stage's step on a batch already on the device: forward (g, SAM's mask decoder, loss), backward,
    AdamW step."""
    model.set_trainable(prompt_generator=True)
    use_fast_memory_format(model.train())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    inputs = {name: batch[name].to(device) for name in ("prompt_pixel_values", "image_embeddings", "labels")}
    inputs["valid_mask"] = batch["valid_mask"].to(device)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(**inputs, mode="autosam").loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return timing_summary(time_repeats(step, device=device), len(batch["index"]))


def measure(
    sam: str, prompt_size: int, batch_size: int, images: int, device: torch.device, mixed_precision: str
) -> dict:
    """Every figure of the module docstring, in this process."""
    dtype = MIXED_PRECISION_DTYPES[mixed_precision]
    torch.manual_seed(0)
    model = AutoSamForSegmentation.from_sam(str(sam_checkpoint(sam)), prompt_input_size=prompt_size).to(device)
    processor = AutoSamImageProcessor.from_model_config(model.config)
    dataset = kvasir_split("train", images)
    level = RECIPES["default"].augmentation
    augmentation = JointAugmentation(augmentation_for_level(POLYP_AUGMENTATION, level), seed=0)
    default_workers = default_num_workers()
    with tempfile.TemporaryDirectory() as cache_dir:
        cache, cache_build = time_cache_build(dataset, model, processor, augmentation, Path(cache_dir), dtype)
        views = AutoSamViewDataset(dataset, processor, augmentation, cache=cache, num_views=1, canvases=("prompt",))
        loader = {
            str(workers): time_loader(views, batch_size, workers) for workers in sorted({0, 1, 2, default_workers})
        }
        deferred = AutoSamViewDataset(
            dataset, processor, augmentation, cache=cache, num_views=1, canvases=("prompt",), augment_on_device=True
        )
        on_device = DeviceAugmentation(augmentation, processor)
        loader_device_augmentation = time_device_augmented_loader(
            deferred, on_device, batch_size, default_workers, device
        )
        batch = next(iter(torch.utils.data.DataLoader(views, batch_size=batch_size)))
    step = time_cached_step(model, batch, dtype, device)
    loader_rate = loader[str(default_workers)]["images_per_second"]
    return {
        "machine": machine(),
        "device": str(device),
        "sam": sam,
        "g": f"HarDNet-85 at {prompt_size}",
        "batch_size": batch_size,
        "images": images,
        "mixed_precision": mixed_precision,
        "augmentation": f"{level} (polyps)",
        "default_workers": default_workers,
        "cache_build": cache_build,
        "loader": loader,
        "step": step,
        "loader_to_step": loader_rate / step["images_per_second"],
        "loader_device_augmentation": loader_device_augmentation,
        "loader_device_augmentation_to_step": (
            loader_device_augmentation["images_per_second"] / step["images_per_second"]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--name",
        help="Result EXPERIMENT/RUN (default loader/latest, or quick).",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--mixed_precision", default="auto", help="auto (bf16 where native), no, bf16, fp16")
    parser.add_argument("--sam", help="vit_b (default) or small (--quick)")
    parser.add_argument("--prompt_size", type=int, help="g's input size: 352 (default) or 64 (--quick)")
    parser.add_argument("--batch_size", type=int, help="3 (default) or 2 (--quick)")
    parser.add_argument("--images", type=int, help="Kvasir train images: 24 (default) or 8 (--quick)")
    parser.add_argument("--print_only", action="store_true", help="Print the JSON result; write no result file.")
    args = parser.parse_args()
    device = resolve_device(args.device)
    result = measure(
        args.sam or ("small" if args.quick else "vit_b"),
        args.prompt_size or (64 if args.quick else 352),
        args.batch_size or (2 if args.quick else 3),
        args.images or (8 if args.quick else 24),
        device,
        resolve_mixed_precision(args.mixed_precision, device),
    )
    if not args.print_only:
        write_result(args.name or default_result_name("loader", args.quick), result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
