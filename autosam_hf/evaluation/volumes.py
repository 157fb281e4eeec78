"""Scoring AutoSAM on CT/MRI volumes: each volume predicted slice by slice by the 2D model, the slices' label maps
stacked back on the volume's grid, then scored in 3D per volume and per class (`autosam_hf.metrics.volumes`: Dice,
HD95 in mm, NSD at a tolerance in mm, through the voxel spacing), with the per-slice 2D Dice beside them.

Folders (`find_volume_cases`):

- Decathlon / nnU-Net (`dataset.json`): split `test` = `imagesTs/` + `labelsTs/` (`<case>_0000<file_ending>`,
  `<case><file_ending>`), split `train` = `imagesTr/` + `labelsTr/`;
- `volumes/` + `labels/` (`volumes/<case>.nii.gz` or a DICOM series folder `volumes/<case>/`, with
  `labels/<case>.nii.gz`): every pair, whatever the split.

Classes: a binary model's foreground is scored against every labelled voxel (a value > 0, as `binarize_mask` reads
2D masks); a K-class model's class k against label value k, so its reference volumes may hold values 0..K only.

Empty classes follow `autosam_hf.metrics.volumes` in 3D and `dice_iou_per_image` in 2D alike: a class absent from
both prediction and reference scores Dice 1 (HD95 0, NSD 1), absent from exactly one Dice 0 (HD95 inf, NSD 0).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..inference.predictor import predict_volume
from ..metrics import class_names_of, dice_iou_per_image
from ..metrics.volumes import DEFAULT_NSD_TOLERANCE_MM, METRIC_NAMES, volume_metrics
from ..model import AutoSamForSegmentation, AutoSamImageProcessor
from ..sharding import gather, is_main_process, shard
from ..volumes import (
    Volume,
    VolumeCase,
    VolumeError,
    check_label_values,
    check_same_grid,
    pair_volumes_and_labels,
    read_decathlon_dataset,
    read_volume,
    slice_axis,
    write_label_volume,
)
from ..volumes.dataset_layout import VolumeDataset, with_labels
from ..volumes.slice_dataset import VolumeInput
from .modes import GROUND_TRUTH_MODES, check_modes

logger = logging.getLogger(__name__)

# --split of a Decathlon / nnU-Net folder -> (image folder, label folder).
VOLUME_SPLITS = {"test": ("imagesTs", "labelsTs"), "train": ("imagesTr", "labelsTr")}
# The per-volume mean over slices of the 2D Dice, beside METRIC_NAMES.
SLICE_DICE = "slice_dice"
VOLUME_METRIC_NAMES = (*METRIC_NAMES, SLICE_DICE)


@dataclass(frozen=True)
class VolumeSource:
    """The labelled volumes of a folder: `layout` ("nnunet" or "volumes+labels"), the `split` read (None for
    volumes/ + labels/), the cases and the classes `dataset.json` names (None without one)."""

    root: Path
    layout: str
    split: str | None
    cases: tuple[VolumeCase, ...]
    id2label: dict[int, str] | None = None


def _labelled_test_cases(root: Path, dataset: VolumeDataset) -> tuple[VolumeCase, ...]:
    """`imagesTs/` cases with their `labelsTs/<case><file_ending>`; every one needs its label and vice versa."""
    images_dir, labels_dir = root / "imagesTs", root / "labelsTs"
    if not dataset.test:
        raise VolumeError(f"{images_dir}: no test volumes (--split train scores imagesTr/ + labelsTr/)")
    if not labels_dir.is_dir():
        raise VolumeError(
            f"{labels_dir}: no such folder, the labels of imagesTs/ (--split train: imagesTr/ + labelsTr/)"
        )
    return with_labels(dataset.test, images_dir, labels_dir, dataset.file_ending)


def find_volume_cases(root: str | os.PathLike, split: str = "test") -> VolumeSource:
    """The labelled volumes under `root` (layouts in the module docstring); raises `VolumeError` naming the folder
    or file that does not fit."""
    root = Path(root)
    if not root.is_dir():
        raise VolumeError(f"{root}: no such folder")
    if (root / "dataset.json").is_file():
        if split not in VOLUME_SPLITS:
            raise VolumeError(
                f"{root}: split {split!r}: a Decathlon / nnU-Net folder has "
                + ", ".join(f"{name} ({images}/ + {labels}/)" for name, (images, labels) in VOLUME_SPLITS.items())
            )
        dataset = read_decathlon_dataset(root)
        cases = dataset.train if split == "train" else _labelled_test_cases(root, dataset)
        return VolumeSource(root, "nnunet", split, cases, dataset.id2label)
    if (root / "volumes").is_dir():
        return VolumeSource(root, "volumes+labels", None, pair_volumes_and_labels(root / "volumes", root / "labels"))
    raise VolumeError(
        f"{root}: neither a Decathlon / nnU-Net folder (dataset.json, imagesTr/, labelsTr/[, imagesTs/, labelsTs/]) "
        "nor volumes/ + labels/"
    )


def _read_case(
    case: VolumeCase, id2label: Mapping[int, str] | None, num_classes: int, label_values: bool = False
) -> tuple[Volume, Volume]:
    """(image, labels) of one case, checked: one channel, the same grid, label values the dataset and model know
    (`label_values`: the model names the value of each class, `VolumeInput.label_values`, the others are
    background)."""
    if len(case.images) > 1:
        raise VolumeError(
            f"{case.images[1]}: case {case.case_id!r} has {len(case.images)} channels; the 2D model reads one"
        )
    image, labels = read_volume(case.images[0]), read_volume(case.label)
    check_same_grid(image, labels)
    if id2label is not None:
        check_label_values(labels.array, id2label, str(case.label))
    if num_classes > 1 and not label_values:
        check_label_values(labels.array, dict.fromkeys(range(num_classes + 1), ""), str(case.label), "the model")
    return image, labels


def reference_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The label volume a `num_classes`-class model is scored against: binary, 1 wherever a class is labelled."""
    return (labels > 0).astype(np.uint8) if num_classes == 1 else labels


@dataclass(frozen=True)
class VolumeEvaluationSettings:
    """How `evaluate_volumes` predicts and scores.

    Attributes:
        modes: evaluation modes without ground-truth prompts (`autosam`, `surrogate`, `sam_mask_prompt`).
        batch_size: slices per forward pass.
        window: CT window (`parse_window` text or (low, high) HU); None: the model's (`config.volume_input`), else
            each volume's 0.5th..99.5th percentiles.
        axis: the slicing axis; None: the model's, else each volume's coarsest (`slice_axis`).
        context_slices: 2.5D input; None: as the model was trained (else False).
        nsd_tolerance_mm: the NSD tolerance.
        autocast_dtype: run under `torch.autocast` in this dtype; None = float32.
        predictions_dir: when given, write `<mode>/<case>.nii.gz` there, on each image's grid.
        progress: show a progress bar (one step per volume and mode).
        sharded: split the volumes across the processes of `accelerate launch`, each writing its own predictions,
            and gather the scores: every process returns those of one process (`autosam_hf.sharding`).
    """

    modes: Sequence[str] = ("autosam",)
    batch_size: int = 8
    window: str | tuple[float, float] | None = None
    axis: int | None = None
    context_slices: bool | None = None
    nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM
    autocast_dtype: torch.dtype | None = None
    predictions_dir: str | os.PathLike | None = None
    progress: bool = True
    sharded: bool = False


@dataclass
class VolumeModeResult:
    """What one mode scored: `metrics` class → the means over volumes of `VOLUME_METRIC_NAMES`; `per_volume` case →
    class → those scores; `per_slice` case → class → the 2D Dice of each slice along the volume's slicing axis."""

    metrics: dict[str, dict[str, float]]
    per_volume: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    per_slice: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def predict_label_volume(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    volume: Volume,
    mode: str,
    settings: VolumeEvaluationSettings,
) -> np.ndarray:
    """The (I, J, K) label volume `model` predicts for `volume` in `mode` (`predict_volume`, as `autosam-predict`)."""
    return predict_volume(
        model,
        processor,
        volume,
        axis=settings.axis,
        window=settings.window,
        context_slices=settings.context_slices,
        mode=mode,
        batch_size=settings.batch_size,
        autocast_dtype=settings.autocast_dtype,
    )


def score_volume(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing: Sequence[float],
    axis: int,
    class_names: Sequence[str],
    nsd_tolerance_mm: float,
) -> tuple[dict[str, dict[str, float]], dict[str, list[float]]]:
    """(class → 3D scores + `slice_dice`, class → per-slice 2D Dice along `axis`) of label volumes of classes
    1..len(class_names)."""
    labels = range(1, len(class_names) + 1)
    scores = volume_metrics(prediction, reference, spacing, labels=labels, nsd_tolerance_mm=nsd_tolerance_mm)
    per_volume, per_slice = {}, {}
    for label, name in zip(labels, class_names, strict=True):
        dice = [
            dice_iou_per_image(np.take(prediction, index, axis) == label, np.take(reference, index, axis) == label)[0]
            for index in range(prediction.shape[axis])
        ]
        per_slice[name] = dice
        per_volume[name] = scores[label] | {SLICE_DICE: float(np.mean(dice))}
    return per_volume, per_slice


def mean_over_volumes(per_volume: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """class → metric → the mean over volumes (an HD95 of inf, a class missed in some volume, stays inf)."""
    first = next(iter(per_volume.values()))
    return {
        name: {metric: float(np.mean([scores[name][metric] for scores in per_volume.values()])) for metric in metrics}
        for name, metrics in first.items()
    }


def check_volume_modes(modes: Sequence[str], model: AutoSamForSegmentation) -> list[str]:
    """`check_modes`, and none of the ground-truth-prompted modes: a volume's slices are scored without prompts."""
    modes = check_modes(modes, model)
    prompted = [mode for mode in modes if mode in GROUND_TRUTH_MODES]
    if prompted:
        raise ValueError(
            f"--mode {' '.join(prompted)}: volumes are evaluated in the modes without ground-truth prompts (autosam, "
            "surrogate, sam_mask_prompt)"
        )
    return modes


def evaluate_volumes(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    source: VolumeSource,
    settings: VolumeEvaluationSettings = VolumeEvaluationSettings(),
) -> tuple[dict[str, VolumeModeResult], dict[str, dict]]:
    """Predict and score every volume of `source` in every mode of `settings`.

    Every case is read and checked (one channel, label volume on its image's grid, label values known to
    `dataset.json` and to the model) before the first slice is predicted.

    Returns:
        (mode → `VolumeModeResult`, case → facts: image, label, shape, spacing, slicing axis).

    Raises:
        ValueError: a GT-prompted mode, `surrogate` without h, a batch size below 1, no volume;
            `VolumeError` (a ValueError) naming the file that cannot be read or does not fit.
    """
    modes = check_volume_modes(settings.modes, model)
    if settings.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {settings.batch_size}")
    if not source.cases:
        raise VolumeError(f"{source.root}: no volumes")
    num_classes = model.config.num_classes
    class_names = class_names_of(model.config.id2label)
    # What the model was trained with (config.volume_input) where the settings do not say.
    given = VolumeInput.of(model).with_given(settings.window, settings.axis, settings.context_slices)
    settings = dataclasses.replace(
        settings, window=given.window, axis=given.slice_axis, context_slices=given.context_slices
    )
    values = given.label_values or range(1, num_classes + 1)
    if source.id2label is not None and num_classes > 1:
        renamed = [
            f"{value}: {source.id2label.get(value)!r} / {name!r}"
            for value, name in zip(values, class_names, strict=True)
            if source.id2label.get(value) != name
        ]
        if renamed:
            # Classes are matched by label value, not by name: a model may name its classes its own way.
            logger.warning("dataset.json / the model name label values differently: %s", "; ".join(renamed))
    for case in source.cases:
        _read_case(case, source.id2label, num_classes, given.label_values is not None)

    per_volume = {mode: {} for mode in modes}
    per_slice = {mode: {} for mode in modes}
    info = {}
    model.eval()
    cases = shard(source.cases) if settings.sharded else source.cases
    show = settings.progress and is_main_process()
    with tqdm(total=len(cases) * len(modes), unit="volume", disable=not show) as bar:
        for case in cases:
            image, labels = _read_case(case, source.id2label, num_classes, given.label_values is not None)
            axis = slice_axis(image) if settings.axis is None else settings.axis
            reference = reference_labels(given.class_labels(labels.array, num_classes), num_classes)
            info[case.case_id] = {
                "image": str(case.images[0]),
                "label": str(case.label),
                "shape": list(image.shape),
                "spacing_mm": list(image.spacing),
                "slice_axis": axis,
            }
            for mode in modes:
                prediction = predict_label_volume(model, processor, image, mode, settings)
                if settings.predictions_dir is not None:
                    write_label_volume(
                        prediction, image, Path(settings.predictions_dir) / mode / f"{case.case_id}.nii.gz"
                    )
                per_volume[mode][case.case_id], per_slice[mode][case.case_id] = score_volume(
                    prediction, reference, image.spacing, axis, class_names, settings.nsd_tolerance_mm
                )
                bar.update(1)
    if settings.sharded:  # joined in process order, the cases' order: the means are those of one process
        parts = gather((per_volume, per_slice, info))
        per_volume = {mode: {k: v for part in parts for k, v in part[0][mode].items()} for mode in modes}
        per_slice = {mode: {k: v for part in parts for k, v in part[1][mode].items()} for mode in modes}
        info = {k: v for part in parts for k, v in part[2].items()}
    results = {
        mode: VolumeModeResult(mean_over_volumes(per_volume[mode]), per_volume[mode], per_slice[mode]) for mode in modes
    }
    return results, info


__all__ = [
    "SLICE_DICE",
    "VOLUME_METRIC_NAMES",
    "VOLUME_SPLITS",
    "VolumeEvaluationSettings",
    "VolumeModeResult",
    "VolumeSource",
    "check_volume_modes",
    "evaluate_volumes",
    "find_volume_cases",
    "mean_over_volumes",
    "predict_label_volume",
    "reference_labels",
    "score_volume",
]
