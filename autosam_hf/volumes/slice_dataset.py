"""Labelled volumes as the 2D rows `autosam-train` reads, and what a model trained on them records (`VolumeInput`).

A training run on a folder of volumes (`dataset_layout.read_volume_folder`) splits its cases by volume
(`split_cases`), turns each case into the slices of `volume_slices` (every slice with a class, a seeded part of the
others) and stores them as the rows of a `datasets.Dataset` of the 2D columns (`id` "<case>/slice<index>", `image`
PNG, `mask` the class ids 0..K, `case`, `frame` = the slice index), so that the embedding cache, augmentation and
validation work on slices as on images.

Its `VolumeInput` (the intensity window, slicing axis, 2.5D context and the dataset label value of each class) is
saved in the model's config (`config.volume_input`), so that `predict_volume` and `autosam-eval --volumes` slice
new volumes the same way unless told otherwise.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image

from .dataset_layout import VolumeCase, VolumeDataset, check_label_values
from .intensity import PERCENTILES, parse_window
from .io import Volume, VolumeError, check_same_grid, read_volume
from .slices import volume_slices

# Slices without any class kept for training: enough for g to see what "nothing here" looks like (prediction runs
# on every slice of a volume), few enough that the many empty slices of a CT do not swamp the organs.
DEFAULT_EMPTY_SLICE_FRACTION = 0.25
# Labelled voxels sampled per case for the CT window: percentiles of 10^5 values are within ~1 HU of all voxels'.
WINDOW_SAMPLES_PER_CASE = 100_000


@dataclass(frozen=True)
class VolumeInput:
    """How a model's 2D inputs are made from a volume, and which label values its classes are.

    Attributes:
        window: CT window (lowest, highest) HU; None: each volume's 0.5th..99.5th percentiles (MRI).
        slice_axis: the axis sliced; None: each volume's coarsest-spaced (`slice_axis`).
        context_slices: 2.5D input (slices z-1, z, z+1 as the three channels).
        label_values: the label value (in the dataset's label volumes) of each class 1..K; None: class k is value k
            (a binary model: every value > 0).
    """

    window: tuple[float, float] | None = None
    slice_axis: int | None = None
    context_slices: bool = False
    label_values: tuple[int, ...] | None = None

    def to_dict(self) -> dict:
        """As `config.volume_input` holds it (JSON)."""
        return {
            "window": None if self.window is None else [float(v) for v in self.window],
            "slice_axis": self.slice_axis,
            "context_slices": self.context_slices,
            "label_values": None if self.label_values is None else [int(v) for v in self.label_values],
        }

    @classmethod
    def from_dict(cls, values: Mapping | None) -> VolumeInput:
        values = values or {}
        window, label_values = values.get("window"), values.get("label_values")
        return cls(
            window=None if window is None else (float(window[0]), float(window[1])),
            slice_axis=values.get("slice_axis"),
            context_slices=bool(values.get("context_slices", False)),
            label_values=None if label_values is None else tuple(int(v) for v in label_values),
        )

    @classmethod
    def of(cls, model_or_config) -> VolumeInput:
        """What a model (or its config) recorded; a model not trained on volumes: the defaults (percentiles, the
        coarsest axis, no context, class k = value k)."""
        config = getattr(model_or_config, "config", model_or_config)
        return cls.from_dict(getattr(config, "volume_input", None))

    def with_given(
        self,
        window: str | tuple[float, float] | None = None,
        slice_axis: int | None = None,
        context_slices: bool | None = None,
    ) -> VolumeInput:
        """These settings with the ones given (not None) instead: explicit flags win over what a model recorded."""
        if isinstance(window, str):
            window = parse_window(window)
        return VolumeInput(
            window=self.window if window is None else (float(window[0]), float(window[1])),
            slice_axis=self.slice_axis if slice_axis is None else slice_axis,
            context_slices=self.context_slices if context_slices is None else bool(context_slices),
            label_values=self.label_values,
        )

    def class_labels(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """A label volume of the dataset's values as the class ids 0..K of the model (uint8): `label_values[k-1]`
        -> k and every other value -> 0; without `label_values`, value k is class k (binary: every value > 0)."""
        labels = np.asarray(labels)
        if self.label_values is None:
            return (labels > 0).astype(np.uint8) if num_classes == 1 else labels.astype(np.uint8)
        lookup = np.zeros(max(int(labels.max(initial=0)), *self.label_values) + 1, dtype=np.uint8)
        lookup[list(self.label_values)] = np.arange(1, len(self.label_values) + 1)
        return lookup[labels.astype(np.intp)]


def volume_classes(
    dataset_id2label: Mapping[int, str] | None, class_names: Sequence[str] | None, source: str
) -> tuple[dict[int, str], tuple[int, ...] | None]:
    """(id2label of the model, the label value of each of its classes 1..K) for a folder of volumes whose label
    volumes `dataset_id2label` (dataset.json's "labels"; None without one) names.

    With `class_names` (`--class_names liver spleen`): those classes of dataset.json, in that order (the others are
    background); without dataset.json they name the values 1..K. Without `class_names`: every class of dataset.json,
    else binary (every labelled voxel is foreground)."""
    if dataset_id2label is None:
        if not class_names:
            return {0: "background", 1: "foreground"}, None
        return {0: "background", **dict(enumerate(class_names, start=1))}, None  # value k is class k, no other
    if not class_names:
        values = [value for value in sorted(dataset_id2label) if value != 0]
        return {0: "background", **{k: dataset_id2label[v] for k, v in enumerate(values, start=1)}}, tuple(values)
    by_name = {name: value for value, name in dataset_id2label.items() if value != 0}
    unknown = [name for name in class_names if name not in by_name]
    if unknown:
        raise VolumeError(
            f"{source}: --class_names {' '.join(unknown)}: not a class of its labels ({', '.join(list(by_name)[:8])}"
            f"{', ...' if len(by_name) > 8 else ''})"
        )
    return {0: "background", **dict(enumerate(class_names, start=1))}, tuple(by_name[name] for name in class_names)


def read_labelled_case(case: VolumeCase, dataset_id2label: Mapping[int, str] | None) -> tuple[Volume, Volume]:
    """(image, label volume) of one case, checked: one channel (the 2D model reads one), the label volume on the
    image's grid, its values among dataset.json's labels."""
    if len(case.images) > 1:
        raise VolumeError(
            f"{case.images[1]}: case {case.case_id!r} has {len(case.images)} channels; the 2D model reads one"
        )
    if case.label is None:
        raise VolumeError(f"{case.images[0]}: case {case.case_id!r} has no label volume")
    image, labels = read_volume(case.images[0]), read_volume(case.label)
    check_same_grid(image, labels)
    if dataset_id2label is not None:
        check_label_values(labels.array, dataset_id2label, str(case.label))
    return image, labels


def _class_labels_of(labels: Volume, volume_input: VolumeInput, num_classes: int) -> np.ndarray:
    if volume_input.label_values is None and num_classes > 1:  # class k = value k: no other value may occur
        check_label_values(labels.array, dict.fromkeys(range(num_classes + 1), ""), str(labels.path), "--class_names")
    return volume_input.class_labels(labels.array, num_classes)


def training_ct_window(
    cases: Iterable[VolumeCase],
    dataset_id2label: Mapping[int, str] | None,
    volume_input: VolumeInput,
    num_classes: int,
    seed: int = 0,
) -> tuple[float, float]:
    """nnU-Net's CT intensity range: the 0.5th..99.5th percentiles of the intensities of the voxels of the trained
    classes over the training volumes (nnU-Net clips CT there before its z-scoring), as a CT window in HU."""
    generator = np.random.default_rng(seed)
    samples = []
    for case in cases:
        image, labels = read_labelled_case(case, dataset_id2label)
        values = np.asarray(image.array)[_class_labels_of(labels, volume_input, num_classes) > 0]
        if values.size > WINDOW_SAMPLES_PER_CASE:
            values = generator.choice(values, WINDOW_SAMPLES_PER_CASE, replace=False)
        samples.append(values.astype(np.float64))
    samples = np.concatenate(samples) if samples else np.zeros(0)
    if not samples.size:
        raise VolumeError("no voxel of the trained classes in the training volumes to derive a CT window from")
    low, high = np.percentile(samples, PERCENTILES)
    return float(low), float(max(high, low + 1.0))


def training_volume_input(
    dataset: VolumeDataset,
    train_cases: Sequence[VolumeCase],
    class_names: Sequence[str] | None = None,
    window: str | None = None,
    slice_axis: int | None = None,
    context_slices: bool = False,
    seed: int = 0,
) -> tuple[dict[int, str], VolumeInput]:
    """(id2label, `VolumeInput`) of a training run on `dataset`: the classes (`volume_classes`), and the window
    given, else for CT (dataset.json's channel 0 "CT") `training_ct_window` of `train_cases`, else none (each
    volume's percentiles)."""
    id2label, label_values = volume_classes(dataset.id2label, class_names, str(dataset.root))
    volume_input = VolumeInput(None, slice_axis, bool(context_slices), label_values)
    if window is not None:
        return id2label, volume_input.with_given(window=window)
    if dataset.is_ct:
        ct_window = training_ct_window(train_cases, dataset.id2label, volume_input, len(id2label) - 1, seed)
        return id2label, volume_input.with_given(window=ct_window)
    return id2label, volume_input


def slice_rows(
    cases: Sequence[VolumeCase],
    dataset_id2label: Mapping[int, str] | None,
    volume_input: VolumeInput,
    num_classes: int,
    empty_slice_fraction: float = DEFAULT_EMPTY_SLICE_FRACTION,
    seed: int = 0,
) -> list[dict]:
    """The training rows of `cases`: {"id", "case", "frame", "image" (H, W, 3) uint8, "mask" (H, W) class ids} per
    slice kept (every slice with a class, a seeded `empty_slice_fraction` of the others), case by case."""
    rows = []
    for case in cases:
        image, labels = read_labelled_case(case, dataset_id2label)
        pieces = volume_slices(
            image,
            _class_labels_of(labels, volume_input, num_classes),
            axis=volume_input.slice_axis,
            window=volume_input.window,
            context=volume_input.context_slices,
            empty_slice_fraction=empty_slice_fraction,
            seed=seed,
        )
        for piece in pieces:
            rows.append(
                {
                    "id": f"{case.case_id}/slice{piece.index:04d}",
                    "case": case.case_id,
                    "frame": piece.index,
                    "image": piece.image,
                    "mask": piece.label,
                }
            )
    return rows


def slice_dataset(
    cases: Sequence[VolumeCase],
    dataset_id2label: Mapping[int, str] | None,
    volume_input: VolumeInput,
    num_classes: int,
    empty_slice_fraction: float = DEFAULT_EMPTY_SLICE_FRACTION,
    seed: int = 0,
    max_slices: int | None = None,
):
    """`slice_rows` as a `datasets.Dataset` of the 2D video columns (`VIDEO_FEATURES`: a slice's case is its
    "case", its index its "frame"), images and masks held as PNG bytes; `max_slices`: only the first N."""
    # Imported here: `datasets` is heavy and only training needs it.
    import datasets

    from ..data.dataset_builder import VIDEO_FEATURES

    rows = slice_rows(cases, dataset_id2label, volume_input, num_classes, empty_slice_fraction, seed)
    if not rows:
        names = ", ".join(case.case_id for case in cases)
        raise VolumeError(f"no slice kept of the volumes {names} (none has a labelled voxel of the trained classes)")
    rows = rows[:max_slices] if max_slices else rows
    columns = {
        "id": [row["id"] for row in rows],
        "image": [{"path": None, "bytes": _png(row["image"])} for row in rows],
        "mask": [{"path": None, "bytes": _png(row["mask"])} for row in rows],
        "case": [row["case"] for row in rows],
        "frame": [row["frame"] for row in rows],
    }
    return datasets.Dataset.from_dict(columns, features=VIDEO_FEATURES)


def _png(array: np.ndarray) -> bytes:
    """An (H, W, 3) image or (H, W) label map, uint8, as PNG bytes (lossless: the cache hashes these bytes)."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


__all__ = [
    "DEFAULT_EMPTY_SLICE_FRACTION",
    "VolumeInput",
    "read_labelled_case",
    "slice_dataset",
    "slice_rows",
    "training_ct_window",
    "training_volume_input",
    "volume_classes",
]
