"""Scoring AutoSAM on one dataset: every evaluation mode (`autosam_hf.evaluation.modes`) on each batch, each
prediction post-processed to its image's original resolution, where the metrics (`autosam_hf.metrics`) are computed.

Image datasets: per-image Dice and IoU (and the polyp metrics), averaged over images. Video datasets (SUN-SEG): per
case, then averaged over cases (`VideoSegmentationMetrics`). Multi-class models: per-class Dice and IoU per image,
averaged over images, and their macro mean (`MulticlassSegmentationMetrics`); on datasets with instance ids (derived
boundary classes, e.g. `monuseg_boundary`) also AJI and the count error of the instances the predicted interior
and boundary give (`InstanceMetrics`). SAM's image encoder runs once per batch and its embeddings serve every mode
that uses SAM; the ground-truth prompts are derived once per batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..metrics import (
    InstanceMetrics,
    MulticlassSegmentationMetrics,
    SegmentationMetrics,
    VideoSegmentationMetrics,
    class_names_of,
    instances_from_label_map,
)
from ..model import AutoSamForSegmentation, AutoSamImageProcessor
from ..model.image_processing_autosam import canvases_for_mode
from ..postprocessing import ImagePrediction, model_predictions
from ..runtime import inference_autocast, model_inputs_for, use_fast_memory_format
from .batches import evaluation_loader
from .modes import GT_MASK_LOGIT, GT_PROMPT_MODES, check_modes, ground_truth_prompts, predict_logits
from .predictions import PredictionWriter


@dataclass(frozen=True)
class EvaluationSettings:
    """How `evaluate_dataset` scores a dataset.

    Attributes:
        modes: evaluation modes (`EVAL_MODES`), the table's rows.
        batch_size: images per forward pass.
        is_video: score per case (SUN-SEG); None: whether rows have a `case` column.
        skip_first_and_last_frame: video only, as SUN-SEG's toolbox (see `VideoSegmentationMetrics`).
        gt_mask_logit: L of the `sam_gt_mask` prompt (±L logits).
        autocast_dtype: run under `torch.autocast` in this dtype; None = float32.
        num_workers: data-loader worker processes (decoding and preprocessing).
        predictions_dir: when given, write each mode's masks and overlays there (`PredictionWriter`).
        num_overlays: images in each mode's overlay grid.
        progress: show a progress bar, labelled `description`.
    """

    modes: Sequence[str] = ("autosam",)
    batch_size: int = 8
    is_video: bool | None = None
    skip_first_and_last_frame: bool = True
    gt_mask_logit: float = GT_MASK_LOGIT
    autocast_dtype: torch.dtype | None = None
    num_workers: int = 0
    predictions_dir: str | os.PathLike | None = None
    num_overlays: int = 8
    progress: bool = True
    description: str | None = None


@dataclass
class ModeResult:
    """What one mode scored on one dataset.

    metrics: `SegmentationMetrics.compute()` keys (averaged over images, or over cases for video); for multi-class
    models `MulticlassSegmentationMetrics.compute()` keys [+ `InstanceMetrics.compute()` keys];
    per_image: image id → {"dice", "iou"} (image datasets; multi-class: every per-image score); per_case: case →
    metrics (video datasets).
    """

    metrics: dict[str, float]
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)
    per_case: dict[str, dict[str, float]] | None = None


class _Scoreboard:
    """Each mode's metric accumulator over one dataset (per image, or per video case) for a binary model."""

    def __init__(self, modes: Sequence[str], is_video: bool, skip_first_and_last_frame: bool):
        self.is_video = is_video
        if is_video:
            self.metrics = {mode: VideoSegmentationMetrics(skip_first_and_last_frame) for mode in modes}
        else:
            self.metrics = {mode: SegmentationMetrics() for mode in modes}
        self.per_image: dict[str, dict[str, dict[str, float]]] = {mode: {} for mode in modes}

    def add(self, mode: str, row: dict, prediction: ImagePrediction) -> None:
        probabilities = prediction.probabilities
        if self.is_video:
            self.metrics[mode].update(row["case"], prediction.mask, row["target"], pred_prob=probabilities)
        else:
            dice, iou = self.metrics[mode].update(prediction.mask, row["target"], pred_prob=probabilities)
            self.per_image[mode][row["id"]] = {"dice": dice, "iou": iou}

    def results(self) -> dict[str, ModeResult]:
        if self.is_video:
            return {
                mode: ModeResult(metrics=metrics.compute(), per_case=metrics.compute_per_case())
                for mode, metrics in self.metrics.items()
            }
        return {
            mode: ModeResult(metrics=metrics.compute(), per_image=self.per_image[mode])
            for mode, metrics in self.metrics.items()
        }


class _ClassScoreboard:
    """Each mode's per-class accumulator (and instance accumulator, for rows with instance ids) for a multi-class
    model; images only."""

    def __init__(self, modes: Sequence[str], class_names: Sequence[str]):
        self.classes = {mode: MulticlassSegmentationMetrics(class_names) for mode in modes}
        self.instances = {mode: InstanceMetrics() for mode in modes}
        self.per_image: dict[str, dict[str, dict[str, float]]] = {mode: {} for mode in modes}

    def add(self, mode: str, row: dict, prediction: ImagePrediction) -> None:
        scores = self.classes[mode].update(prediction.class_masks, row["target"])
        if row.get("instances") is not None:
            predicted = instances_from_label_map(prediction.label_map)
            scores |= self.instances[mode].update(predicted, row["instances"])
        self.per_image[mode][row["id"]] = scores

    def results(self) -> dict[str, ModeResult]:
        results = {}
        for mode, metrics in self.classes.items():
            instances = self.instances[mode].compute() if len(self.instances[mode]) else {}
            results[mode] = ModeResult(metrics=metrics.compute() | instances, per_image=self.per_image[mode])
        return results


def _scoreboard(model: AutoSamForSegmentation, modes: Sequence[str], is_video: bool, settings: EvaluationSettings):
    """The accumulator for `model`'s predictions: binary (images or video cases) or per class (images)."""
    if model.config.num_classes == 1:
        return _Scoreboard(modes, is_video, settings.skip_first_and_last_frame)
    if is_video:
        raise ValueError(
            f"video datasets are scored for binary models; this model has {model.config.num_classes} classes"
        )
    return _ClassScoreboard(modes, class_names_of(model.config.id2label))


def _check_dataset(dataset, is_video: bool | None) -> bool:
    """Whether `dataset` is scored as video; raises ValueError when it is empty."""
    if len(dataset) == 0:
        raise ValueError("The dataset is empty.")
    column_names = getattr(dataset, "column_names", None) or list(dataset[0].keys())
    return "case" in column_names if is_video is None else is_video


def _logits_per_mode(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    batch: dict,
    modes: Sequence[str],
    settings: EvaluationSettings,
) -> dict[str, torch.Tensor]:
    """Mask logits (B, K, 4E, 4E) of every mode for one batch; SAM's image encoder runs once for all of them."""
    device = model.device
    model_inputs = model_inputs_for(model, batch, processor.model_input_names)
    gt_modes = [mode for mode in modes if mode in GT_PROMPT_MODES]
    with inference_autocast(device, settings.autocast_dtype):
        uses_sam = any(mode != "surrogate" for mode in modes)
        image_features = model.image_features(model_inputs["pixel_values"]) if uses_sam else None
        prompts = None
        if gt_modes:
            prompts = ground_truth_prompts(
                [row["target"] for row in batch["rows"]],
                processor,
                gt_modes,
                labels=batch.get("labels"),
                device=device,
                mask_logit=settings.gt_mask_logit,
            )
        return {mode: predict_logits(model, mode, model_inputs, image_features, prompts) for mode in modes}


def evaluate_dataset(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    dataset,
    settings: EvaluationSettings = EvaluationSettings(),
) -> dict[str, ModeResult]:
    """Score every mode of `settings` on `dataset`, at each image's original resolution.

    Args:
        model: AutoSAM in eval mode, on the device to run on; its `config.mask_threshold` binarises the logits.
        processor: its image processor.
        dataset: rows with `image` and `mask` (any binary mask `binarize_mask` reads; for a multi-class model a label
            map of class ids 0..K), optional `id` and `instances` (instance ids, for AJI); video rows add `case` and
            `frame` (a `datasets.Dataset` from `autosam_hf.data`, or any indexable sequence of dicts).
        settings: modes, batching, precision and outputs (`EvaluationSettings`).

    Returns:
        mode → `ModeResult`.

    Raises:
        ValueError: an unknown mode, `surrogate` for a model without h, a GT-prompted mode for a multi-class model, a
            batch size below 1, an empty dataset, a video dataset for a multi-class model.
    """
    modes = check_modes(settings.modes, model)
    if settings.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {settings.batch_size}")
    is_video = _check_dataset(dataset, settings.is_video)
    scoreboard = _scoreboard(model, modes, is_video, settings)
    loader = evaluation_loader(
        dataset,
        processor,
        is_video,
        settings.batch_size,
        settings.num_workers,
        with_labels="sam_gt_mask" in modes,
        num_labels=model.config.num_labels,
        # What the modes read, whatever the processor builds by default: a SAM-free model's processor saves
        # ["prompt"], and surrogate-only runs skip SAM's 1024² canvas.
        canvases=canvases_for_mode(*modes) if processor.prompt_size else None,
    )
    writer = None
    if settings.predictions_dir:
        writer = PredictionWriter(settings.predictions_dir, settings.num_overlays, model.config.id2label)

    use_fast_memory_format(model.eval())
    description = settings.description or "Evaluating"
    with tqdm(total=len(dataset), unit="image", desc=description, disable=not settings.progress) as bar:
        for batch in loader:
            for mode, logits in _logits_per_mode(model, processor, batch, modes, settings).items():
                predictions = model_predictions(model, processor, logits, batch["original_sizes"])
                for row, prediction in zip(batch["rows"], predictions, strict=True):
                    scoreboard.add(mode, row, prediction)
                    if writer is not None:
                        writer.add(mode, row["id"], row["image"], row["target"], prediction.label_map)
            bar.update(len(batch["rows"]))
    if writer is not None:
        writer.close()
    return scoreboard.results()


def evaluate_model(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    dataset,
    settings: EvaluationSettings = EvaluationSettings(),
) -> dict[str, dict[str, float]]:
    """mode → metrics (`SegmentationMetrics.compute()` keys) on `dataset`: `evaluate_dataset` without the
    per-image and per-case details."""
    return {mode: result.metrics for mode, result in evaluate_dataset(model, processor, dataset, settings).items()}


__all__ = ["EvaluationSettings", "ModeResult", "evaluate_dataset", "evaluate_model"]
