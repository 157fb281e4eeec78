"""Inference's Python API: images → predictions at their original size, for any `SegmentationModel` (the PyTorch
model or an onnxruntime export).

`iter_predictions` (streaming, keyed, for large inputs; yields `ImagePrediction`s with the label map, the mask and
the logits) and `predict_images` (probabilities for a list of images) share the batching, device/dtype handling and
post-processing (`autosam_hf.postprocessing`: masks are `logit > config.mask_threshold`, as in evaluation and the
pipeline). `segment_input` writes what `autosam-predict` writes for the images of `inputs.open_input`: masks (0/255,
or label maps 0..K for multi-class models) and overlays, drawn by `autosam_hf.visualization.prediction_pictures`.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import PIL.Image
import torch
from tqdm.auto import tqdm

from ..model import AutoSamImageProcessor
from ..model.configuration_autosam import canonical_mode
from ..model.image_processing_autosam import canvases_for_mode
from ..postprocessing import ImagePrediction, model_predictions
from ..runtime import inference_autocast, model_inputs_for
from ..visualization import prediction_pictures, write_png
from .inputs import InputImage
from .protocol import SegmentationModel

logger = logging.getLogger(__name__)

Key = TypeVar("Key")


def _batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def iter_predictions(
    model: SegmentationModel,
    processor: AutoSamImageProcessor,
    items: Iterable[tuple[Key, PIL.Image.Image | np.ndarray | torch.Tensor]],
    mode: str | None = None,
    batch_size: int = 8,
    autocast_dtype: torch.dtype | None = None,
    mask_threshold: float | None = None,
) -> Iterator[tuple[Key, ImagePrediction]]:
    """Segment `(key, image)` pairs in batches, lazily; yields `(key, prediction)` in input order.

    Args:
        model: AutoSAM in eval mode, on the device to run on, or an `OnnxRuntimeAutoSam` (an ONNX export).
        processor: its image processor.
        items: any iterable of (key, image); images are what the processor accepts (PIL, (H, W[, C]) arrays, ...).
        mode: `"autosam"`, `"surrogate"` (h only, SAM is not run) or `"sam_mask_prompt"`; default `config.default_mode`.
        batch_size: images per forward pass.
        autocast_dtype: run under `torch.autocast` in this dtype (see `resolve_autocast_dtype`); None = float32.
        mask_threshold: threshold on the logits; default the model's `config.mask_threshold`.

    Yields:
        (key, `ImagePrediction`: the (K, H, W) logits and (H, W) label map at the image's original size).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = model.device
    mode = canonical_mode(mode or model.config.default_mode)
    # Only the canvases the mode reads: h(g(I)) never pays for SAM's 1024² canvas (processors saved before the
    # prompt canvas existed build SAM's, which g then resizes).
    canvases = canvases_for_mode(mode) if processor.prompt_size else None
    for batch in _batched(items, batch_size):
        keys = [key for key, _ in batch]
        inputs = processor([image for _, image in batch], canvases=canvases, return_tensors="pt")
        model_inputs = model_inputs_for(model, inputs, processor.model_input_names)
        with inference_autocast(device, autocast_dtype):
            logits = model(**model_inputs, mode=mode).logits
        predictions = model_predictions(model, processor, logits, inputs["original_sizes"], mask_threshold)
        yield from zip(keys, predictions, strict=True)


def predict_images(
    model: SegmentationModel,
    processor: AutoSamImageProcessor,
    images: Sequence[PIL.Image.Image | np.ndarray | torch.Tensor],
    mode: str | None = None,
    batch_size: int = 8,
    autocast_dtype: torch.dtype | None = None,
) -> list[np.ndarray]:
    """Foreground probabilities, (H_i, W_i) float32 at each image's original size, for a list of images (for
    multi-class models the probability of any class; per class: `iter_predictions`' `class_probabilities`).

    The masks the model predicts are `iter_predictions`' `ImagePrediction.mask` (logits > `config.mask_threshold`;
    probability 0.5 for the default threshold of 0). See `iter_predictions` for the arguments.
    """
    items = enumerate(images)
    return [
        prediction.probabilities
        for _, prediction in iter_predictions(model, processor, items, mode, batch_size, autocast_dtype)
    ]


# ---------------------------------------------------------------------------------------------- written outputs
@dataclass
class PredictionSummary:
    written: list[str]
    skipped: list[str]


@dataclass(frozen=True)
class PredictionSettings:
    """How `segment_input` runs: the forward `mode` (default `config.default_mode`), images per forward pass,
    autocast dtype (None: float32), the logit threshold (None: `config.mask_threshold`), whether overlays are
    written, and the progress bar (`total` images expected, if known)."""

    mode: str | None = None
    batch_size: int = 8
    autocast_dtype: torch.dtype | None = None
    mask_threshold: float | None = None
    overlays: bool = True
    progress: bool = True
    total: int | None = None


def segment_input(
    model: SegmentationModel,
    processor: AutoSamImageProcessor,
    images: Iterable[InputImage],
    output_dir: str | os.PathLike,
    settings: PredictionSettings | None = None,
) -> PredictionSummary:
    """Segment `images` (from `open_input`) and write `output_dir/masks/<name>.png` (0/255; multi-class models: the
    label map, 0..K) and, with `settings.overlays`, `output_dir/overlays/<name>.png` (multi-class: a colour per class
    and a legend), each atomically. Unreadable images are logged (naming them) and skipped."""
    settings = settings or PredictionSettings()
    output_dir = Path(output_dir)
    mask_dir, overlay_dir = output_dir / "masks", output_dir / "overlays"
    mask_dir.mkdir(parents=True, exist_ok=True)
    if settings.overlays:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    summary = PredictionSummary(written=[], skipped=[])
    progress_bar = tqdm(total=settings.total, unit="image", desc="Segmenting", disable=not settings.progress)

    def readable(items: Iterable[InputImage]) -> Iterator[tuple[InputImage, np.ndarray]]:
        for item in items:
            if item.error is not None:
                logger.warning("Skipping unreadable input: %s", item.error)
                summary.skipped.append(item.name)
                progress_bar.update(1)
            else:
                yield item, item.image

    predictions = iter_predictions(
        model,
        processor,
        readable(images),
        mode=settings.mode,
        batch_size=settings.batch_size,
        autocast_dtype=settings.autocast_dtype,
        mask_threshold=settings.mask_threshold,
    )
    with progress_bar:
        for item, prediction in predictions:
            mask, overlay = prediction_pictures(prediction.label_map, item.image, model.config.id2label)
            write_png(mask, mask_dir / f"{item.name}.png")
            if settings.overlays:
                write_png(overlay, overlay_dir / f"{item.name}.png")
            summary.written.append(item.name)
            progress_bar.update(1)
    return summary


__all__ = ["PredictionSettings", "PredictionSummary", "iter_predictions", "predict_images", "segment_input"]
