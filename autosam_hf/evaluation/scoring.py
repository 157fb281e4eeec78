"""Scoring AutoSAM on one dataset: every evaluation mode (`autosam_hf.evaluation.modes`) on each batch, each
prediction post-processed to its image's original resolution, where the metrics (`autosam_hf.metrics`) are computed.

Image datasets: per-image Dice and IoU (and the polyp metrics), averaged over images. Video datasets (SUN-SEG): per
case, then averaged over cases (`VideoSegmentationMetrics`). Multi-class models: per-class Dice and IoU per image,
averaged over images, and their macro mean (`MulticlassSegmentationMetrics`); on datasets with instance ids (derived
boundary classes, e.g. `monuseg_boundary`) also AJI and the count error of the instances the predicted interior
and boundary give (`InstanceMetrics`). SAM's image encoder runs once per batch and its embeddings serve every mode
that uses SAM; the ground-truth prompts are derived once per batch. The interactive mode (`autosam_clicks`,
`modes.click_session`) adds the Dice and IoU after k clicks (`dice@k`, `iou@k`) and the mean NoC (`noc@85`,
`noc@90`) to its own metrics, which are those after `max_clicks` clicks.
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
from ..sharding import gather, is_main_process, merge_accumulators
from .batches import evaluation_loader
from .modes import (
    CLICK_MODE,
    DEFAULT_MAX_CLICKS,
    GT_MASK_LOGIT,
    GT_PROMPT_MODES,
    check_modes,
    click_session,
    ground_truth_prompts,
    predict_logits,
    reported_clicks,
)
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
        sharded: split the rows across the processes of `accelerate launch` (whole video cases), each writing its
            own predictions, and gather the scores: every process returns those of one process (`autosam_hf.sharding`).
        max_clicks: `autosam_clicks`: the most simulated clicks scored (`modes.click_session`).
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
    sharded: bool = False
    max_clicks: int = DEFAULT_MAX_CLICKS


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
        self.noc: dict[str, dict[str, float]] = {}  # autosam_clicks: image id → {"noc@85": ..., "noc@90": ...}

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
        self.noc: dict[str, dict[str, float]] = {}  # as `_Scoreboard.noc`

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


def _click_rows(modes: Sequence[str], max_clicks: int) -> list[str]:
    """The scoreboard's extra rows of `autosam_clicks`: the predictions after k clicks, `autosam_clicks@k`."""
    return [f"{CLICK_MODE}@{clicks}" for clicks in reported_clicks(max_clicks)] if CLICK_MODE in modes else []


def _fold_click_rows(results: dict[str, ModeResult], noc: dict[str, dict[str, float]], max_clicks: int) -> None:
    """Fold the `autosam_clicks@k` rows and the per-image NoC into the `autosam_clicks` result: `dice@k`, `iou@k`,
    `noc@85`, `noc@90` in its metrics (means over images) and in each image's scores."""
    rows = {clicks: results.pop(f"{CLICK_MODE}@{clicks}") for clicks in reported_clicks(max_clicks)}
    if CLICK_MODE not in results:
        return
    result = results[CLICK_MODE]
    for clicks, row in rows.items():
        result.metrics |= {f"dice@{clicks}": row.metrics["dice"], f"iou@{clicks}": row.metrics["iou"]}
        for image, scores in row.per_image.items():
            result.per_image[image] |= {f"dice@{clicks}": scores["dice"], f"iou@{clicks}": scores["iou"]}
    for key in next(iter(noc.values())):
        result.metrics[key] = float(sum(scores[key] for scores in noc.values()) / len(noc))
    for image, scores in noc.items():
        result.per_image[image] |= scores


def _check_dataset(dataset, is_video: bool | None) -> bool:
    """Whether `dataset` is scored as video; raises ValueError when it is empty."""
    if len(dataset) == 0:
        raise ValueError("The dataset is empty.")
    column_names = getattr(dataset, "column_names", None) or list(dataset[0].keys())
    return "case" in column_names if is_video is None else is_video


def _predictions_per_row(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    batch: dict,
    modes: Sequence[str],
    settings: EvaluationSettings,
    noc: dict[str, dict[str, float]],
) -> dict[str, list[ImagePrediction]]:
    """Each scoreboard row's predictions for one batch (every mode, and `autosam_clicks@k`, whose NoC go into
    `noc`); SAM's image encoder runs once for all of them."""
    logits, session = _logits_per_mode(model, processor, batch, modes, settings)
    sizes = batch["original_sizes"]
    rows = {mode: model_predictions(model, processor, mode_logits, sizes) for mode, mode_logits in logits.items()}
    if session is not None:
        rows[CLICK_MODE] = session.predictions[settings.max_clicks]
        rows |= {f"{CLICK_MODE}@{clicks}": predictions for clicks, predictions in session.predictions.items()}
        noc |= {row["id"]: scores for row, scores in zip(batch["rows"], session.noc, strict=True)}
    return {row: rows[row] for row in [*modes, *_click_rows(modes, settings.max_clicks)]}


def _logits_per_mode(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    batch: dict,
    modes: Sequence[str],
    settings: EvaluationSettings,
):
    """Mask logits (B, K, 4E, 4E) of every mode but `autosam_clicks` for one batch, and that mode's
    `ClickSession` (or None); SAM's image encoder runs once for all of them."""
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
        logits = {
            mode: predict_logits(model, mode, model_inputs, image_features, prompts)
            for mode in modes
            if mode != CLICK_MODE
        }
        session = None
        if CLICK_MODE in modes:
            targets = [row["target"] for row in batch["rows"]]
            session = click_session(
                model, processor, model_inputs, image_features, targets, batch["original_sizes"], settings.max_clicks
            )
        return logits, session


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
    if is_video and CLICK_MODE in modes:
        raise ValueError(f"mode {CLICK_MODE!r} scores image datasets, not video cases")
    scoreboard = _scoreboard(model, [*modes, *_click_rows(modes, settings.max_clicks)], is_video, settings)
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
        sharded=settings.sharded,
    )
    writer = None
    if settings.predictions_dir:
        writer = PredictionWriter(settings.predictions_dir, settings.num_overlays, model.config.id2label)

    use_fast_memory_format(model.eval())
    description = settings.description or "Evaluating"
    show = settings.progress and is_main_process()
    with tqdm(total=len(loader.dataset), unit="image", desc=description, disable=not show) as bar:
        for batch in loader:
            per_row = _predictions_per_row(model, processor, batch, modes, settings, scoreboard.noc)
            for mode, predictions in per_row.items():
                for row, prediction in zip(batch["rows"], predictions, strict=True):
                    scoreboard.add(mode, row, prediction)
                    if writer is not None and mode in modes:
                        writer.add(mode, row["id"], row["image"], row["target"], prediction.label_map)
            bar.update(len(batch["rows"]))
    if settings.sharded:
        scoreboard = merge_accumulators(gather(scoreboard))
    if writer is not None:
        if settings.sharded:  # the overlay grid of the first images, written once
            grids = gather(writer.grid)
            first = {mode: [example for grid in grids for example in grid.get(mode, [])] for mode in modes}
            writer.grid = {mode: examples[: writer.num_overlays] for mode, examples in first.items()}
            writer.grid = writer.grid if is_main_process() else {}
        writer.close()
    results = scoreboard.results()
    if CLICK_MODE in modes:
        _fold_click_rows(results, scoreboard.noc, settings.max_clicks)
    return results


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
