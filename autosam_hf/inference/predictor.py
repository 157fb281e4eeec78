"""Inference's Python API: images → predictions at their original size, for any `SegmentationModel` (the PyTorch
model or an onnxruntime export).

`iter_predictions` (streaming, keyed, for large inputs; yields `ImagePrediction`s with the label map, the mask and
the logits) and `predict_images` (probabilities for a list of images) share the batching, device/dtype handling and
post-processing (`autosam_hf.postprocessing`: masks are `logit > config.mask_threshold`, as in evaluation and the
pipeline). `predict_volume` segments a CT/MRI `Volume` slice by slice through `iter_predictions` (the slices are
images to it) and stacks the label maps on the volume's grid. `segment_input` writes what `autosam-predict` writes
for the items of `inputs.open_input`: for images, masks (0/255, or label maps 0..K for multi-class models) and
overlays, drawn by `autosam_hf.visualization.prediction_pictures`; for volumes, a NIfTI label volume on the input's
grid and a montage picture (`autosam_hf.volumes`); on an accelerator the images' files are written by a background
thread while the device runs on (`autosam_hf.atomic_write.BackgroundWriter`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import PIL.Image
import torch
from tqdm.auto import tqdm
from transformers import BatchFeature

from ..atomic_write import BackgroundWriter
from ..model import AutoSamImageProcessor
from ..model.configuration_autosam import canonical_mode
from ..model.device_canvas import preprocess_on_device
from ..model.image_processing_autosam import canvases_for_mode, to_rgb_uint8
from ..postprocessing import ImagePrediction, model_predictions
from ..runtime import inference_autocast, model_inputs_for
from ..visualization import prediction_pictures, write_png
from ..volumes.io import Volume, write_label_volume
from ..volumes.montage import write_montage
from ..volumes.slice_dataset import VolumeInput
from ..volumes.slices import slice_axis, stack_label_slices, volume_slices
from .inputs import InputImage, InputVolume, LazyInputs
from .protocol import SegmentationModel

logger = logging.getLogger(__name__)

Key = TypeVar("Key")
WRITES_IN_FLIGHT = 4  # images whose files `segment_input` writes in the background while the device runs on


def _batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _in_order(function: Callable, iterable: Iterable, workers: int) -> Iterator:
    """`map(function, iterable)`, with `workers` threads computing up to `workers + 1` results ahead (0: inline),
    so that batches are prepared on the CPU while the device runs the one before; results come in input order.
    PIL's decoding and resizing and numpy's arithmetic release the GIL."""
    if workers == 0:
        yield from map(function, iterable)
        return
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="autosam-prepare") as pool:
        pending: collections.deque = collections.deque()
        for value in iterable:
            pending.append(pool.submit(function, value))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def iter_predictions(
    model: SegmentationModel,
    processor: AutoSamImageProcessor,
    items: Iterable[tuple[Key, PIL.Image.Image | np.ndarray | torch.Tensor]],
    mode: str | None = None,
    batch_size: int = 8,
    autocast_dtype: torch.dtype | None = None,
    mask_threshold: float | None = None,
    input_points: Sequence | None = None,
    input_labels: Sequence | None = None,
    input_boxes: Sequence | None = None,
    num_workers: int = 0,
    device_canvas: bool | None = None,
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
        input_points, input_labels, input_boxes: clicks and boxes on top of g's prompt, one entry per item in
            `items`' order (None: none for that image), in the image's own pixel coordinates and nested as the
            processor takes them (`AutoSamImageProcessor.sparse_prompts`: points `[[x, y], ...]`, labels 1 / 0,
            box `[x0, y0, x1, y1]`; per class for multi-class models). Not in mode "surrogate". Boxes: for every
            image of a batch or none.
        num_workers: threads running the processor on the next batches while the model runs (0: one after the
            other, in this thread); the predictions are the same.
        device_canvas: build the canvases on the model's device from uint8 images (`autosam_hf.model.device_canvas`; the
            threads then only convert the images); None: on accelerators for PyTorch models, off on CPUs and for
            onnxruntime models. The canvases equal the processor's up to one grey level, so the logits agree to
            that precision.

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
    prompts = {"input_points": input_points, "input_labels": input_labels, "input_boxes": input_boxes}
    prompts = {name: value for name, value in prompts.items() if value is not None}
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if device_canvas is None:
        device_canvas = isinstance(model, torch.nn.Module) and device.type != "cpu"

    def prepare(start_and_batch: tuple[int, list]) -> tuple[list, dict, BatchFeature | list[np.ndarray]]:
        start, batch = start_and_batch
        batch_prompts = {name: list(value[start : start + len(batch)]) for name, value in prompts.items()}
        images = [image for _, image in batch]
        if device_canvas:  # the canvases are built on the device, in this generator's thread
            inputs = [to_rgb_uint8(image, name=f"images[{start + i}]") for i, image in enumerate(images)]
        else:
            inputs = processor(images, canvases=canvases, return_tensors="pt", **batch_prompts)
        return [key for key, _ in batch], batch_prompts, inputs

    batches = zip(itertools.count(0, batch_size), _batched(items, batch_size), strict=False)
    for keys, batch_prompts, inputs in _in_order(prepare, batches, num_workers):
        if device_canvas:
            inputs = preprocess_on_device(processor, inputs, device, canvases, **batch_prompts)
        model_inputs = model_inputs_for(model, inputs, [*processor.model_input_names, *batch_prompts])
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
    input_points: Sequence | None = None,
    input_labels: Sequence | None = None,
    input_boxes: Sequence | None = None,
) -> list[np.ndarray]:
    """Foreground probabilities, (H_i, W_i) float32 at each image's original size, for a list of images (for
    multi-class models the probability of any class; per class: `iter_predictions`' `class_probabilities`).

    The masks the model predicts are `iter_predictions`' `ImagePrediction.mask` (logits > `config.mask_threshold`;
    probability 0.5 for the default threshold of 0). See `iter_predictions` for the arguments (the prompts: one
    entry per image).
    """
    items = enumerate(images)
    prompts = {"input_points": input_points, "input_labels": input_labels, "input_boxes": input_boxes}
    return [
        prediction.probabilities
        for _, prediction in iter_predictions(model, processor, items, mode, batch_size, autocast_dtype, **prompts)
    ]


def predict_volume(
    model: SegmentationModel,
    processor: AutoSamImageProcessor,
    volume: Volume,
    axis: int | None = None,
    window: str | tuple[float, float] | None = None,
    context_slices: bool | None = None,
    mode: str | None = None,
    batch_size: int = 8,
    autocast_dtype: torch.dtype | None = None,
    mask_threshold: float | None = None,
    num_workers: int = 0,
    device_canvas: bool | None = None,
) -> np.ndarray:
    """Segment a CT/MRI volume slice by slice: the slices of `autosam_hf.volumes.volume_slices` are segmented by
    `iter_predictions` and their label maps stacked back onto the volume's grid.

    `axis`, `window` and `context_slices` not given (None) are those the model was trained with
    (`config.volume_input`, `autosam_hf.volumes.VolumeInput`), else the defaults below.

    Args:
        volume: the `Volume` (`autosam_hf.volumes.read_volume`).
        axis: the slicing axis, 0, 1 or 2; default `slice_axis(volume)`, the coarsest-spaced.
        window: CT window, `(low, high)` HU or a name / `"low,high"` text (`parse_window`); default: this volume's
            0.5th..99.5th percentiles.
        context_slices: 2.5D input (slices z-1, z, z+1 as the three channels), for a model trained so; default
            False.
        mode, batch_size, autocast_dtype, mask_threshold, num_workers, device_canvas: as for `iter_predictions`
            (`batch_size` slices per pass).

    Returns:
        `np.ndarray` of shape `(I, J, K)` (the volume's), uint8: 0 background, k = class k (`config.id2label`;
        binary: 1 = foreground).
    """
    given = VolumeInput.of(model).with_given(window, axis, context_slices)
    axis = slice_axis(volume) if given.slice_axis is None else given.slice_axis
    slices = volume_slices(volume, axis=axis, window=given.window, context=given.context_slices)
    predictions = iter_predictions(
        model,
        processor,
        ((piece.index, piece.image) for piece in slices),
        mode,
        batch_size,
        autocast_dtype,
        mask_threshold,
        num_workers=num_workers,
        device_canvas=device_canvas,
    )
    return stack_label_slices([prediction.label_map for _, prediction in predictions], volume, axis)


# ---------------------------------------------------------------------------------------------- written outputs
@dataclass
class PredictionSummary:
    """The names of the images (and volumes) written and of the unreadable inputs skipped."""

    written: list[str]
    skipped: list[str]
    volumes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PredictionSettings:
    """How `segment_input` runs: the forward `mode` (default `config.default_mode`), images (or slices) per forward
    pass, autocast dtype (None: float32), the logit threshold (None: `config.mask_threshold`), whether overlays
    (for volumes: montages) are written, the progress bar (`total` inputs expected, if known), and for volumes the
    `predict_volume` arguments `window`, `slice_axis` and `context_slices`; `prompts`: `iter_predictions`' keyword
    arguments `input_points` / `input_labels` / `input_boxes` for the images, one entry per readable image
    (`autosam-predict --points/--box`, a single image); `num_workers` and `device_canvas`: `iter_predictions`'
    preparing threads and where the canvases are built (None: on an accelerator); `background_writes`: the images'
    masks and overlays drawn and written by a thread, at most `WRITES_IN_FLIGHT` images behind, while the model
    runs on (the same files; None: on an accelerator, which would wait for them, not on a CPU)."""

    mode: str | None = None
    batch_size: int = 8
    autocast_dtype: torch.dtype | None = None
    mask_threshold: float | None = None
    overlays: bool = True
    progress: bool = True
    total: int | None = None
    window: str | tuple[float, float] | None = None
    slice_axis: int | None = None
    context_slices: bool | None = None
    prompts: dict | None = None
    num_workers: int = 0
    device_canvas: bool | None = None
    background_writes: bool | None = None


def segment_input(
    model: SegmentationModel,
    processor: AutoSamImageProcessor,
    items: Iterable[InputImage | InputVolume],
    output_dir: str | os.PathLike,
    settings: PredictionSettings | None = None,
) -> PredictionSummary:
    """Segment `items` (from `open_input`) and write, each atomically:

    - for an image, `output_dir/masks/<name>.png` (0/255; multi-class models: the label map, 0..K) and, with
      `settings.overlays`, `output_dir/overlays/<name>.png` (multi-class: a colour per class and a legend);
    - for a volume, `output_dir/<name>.nii.gz`, the label volume on the input's grid and header (0/1, or class ids
      0..K; `write_label_volume`), and with `settings.overlays` the montage `output_dir/<name>_overlay.png`.

    Unreadable inputs are logged (naming them) and skipped."""
    settings = settings or PredictionSettings()
    if settings.num_workers and isinstance(items, LazyInputs) and not items.volumes:  # images decoded ahead too
        items = _in_order(items.read_source, items.sources, settings.num_workers)
    output_dir = Path(output_dir)
    summary = PredictionSummary(written=[], skipped=[])
    with tqdm(total=settings.total, unit="input", desc="Segmenting", disable=not settings.progress) as progress_bar:
        # Images are batched across files; a volume is batched across its own slices.
        for is_volume, group in itertools.groupby(items, key=lambda item: isinstance(item, InputVolume)):
            segment = _segment_volumes if is_volume else _segment_images
            segment(model, processor, group, output_dir, settings, summary, progress_bar)
    return summary


def _skipped(item: InputImage | InputVolume, summary: PredictionSummary, progress_bar) -> bool:
    if item.error is None:
        return False
    logger.warning("Skipping unreadable input: %s", item.error)
    summary.skipped.append(item.name)
    progress_bar.update(1)
    return True


def _segment_images(model, processor, images: Iterable[InputImage], output_dir: Path, settings, summary, progress_bar):
    mask_dir, overlay_dir = output_dir / "masks", output_dir / "overlays"
    mask_dir.mkdir(parents=True, exist_ok=True)
    if settings.overlays:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    readable = ((item, item.image) for item in images if not _skipped(item, summary, progress_bar))
    predictions = iter_predictions(
        model,
        processor,
        readable,
        mode=settings.mode,
        batch_size=settings.batch_size,
        autocast_dtype=settings.autocast_dtype,
        mask_threshold=settings.mask_threshold,
        **(settings.prompts or {}),
        num_workers=settings.num_workers,
        device_canvas=settings.device_canvas,
    )
    background = model.device.type != "cpu" if settings.background_writes is None else settings.background_writes

    def write(item: InputImage, label_map: np.ndarray) -> None:
        mask, overlay = prediction_pictures(label_map, item.image, model.config.id2label)
        write_png(mask, mask_dir / f"{item.name}.png")
        if settings.overlays:
            write_png(overlay, overlay_dir / f"{item.name}.png")

    with BackgroundWriter(background, WRITES_IN_FLIGHT, name="autosam-predict-writer") as writer:
        for item, prediction in predictions:
            writer.submit(write, item, prediction.label_map)
            summary.written.append(item.name)
            progress_bar.update(1)


def _segment_volumes(
    model, processor, volumes: Iterable[InputVolume], output_dir: Path, settings, summary, progress_bar
):
    output_dir.mkdir(parents=True, exist_ok=True)
    for item in volumes:
        if _skipped(item, summary, progress_bar):
            continue
        given = VolumeInput.of(model).with_given(settings.window, settings.slice_axis, settings.context_slices)
        labels = predict_volume(
            model,
            processor,
            item.volume,
            axis=settings.slice_axis,
            window=settings.window,
            context_slices=settings.context_slices,
            mode=settings.mode,
            batch_size=settings.batch_size,
            autocast_dtype=settings.autocast_dtype,
            mask_threshold=settings.mask_threshold,
            num_workers=settings.num_workers,
            device_canvas=settings.device_canvas,
        )
        write_label_volume(labels, item.volume, output_dir / f"{item.name}.nii.gz")
        if settings.overlays:
            write_montage(
                output_dir / f"{item.name}_overlay.png",
                item.volume,
                labels,
                axis=given.slice_axis,
                window=given.window,
                id2label=model.config.id2label,
            )
        summary.written.append(item.name)
        summary.volumes.append(item.name)
        progress_bar.update(1)


__all__ = [
    "PredictionSettings",
    "PredictionSummary",
    "iter_predictions",
    "predict_images",
    "predict_volume",
    "segment_input",
]
