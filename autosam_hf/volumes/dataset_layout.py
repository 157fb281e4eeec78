"""Folders of volumes: the Medical Segmentation Decathlon / nnU-Net layout and a plain `volumes/` + `labels/` pairing.

Decathlon / nnU-Net (https://github.com/MIC-DKFZ/nnUNet/blob/master/documentation/dataset_format.md):

    dataset.json   "labels": nnU-Net v2 writes {"background": 0, "liver": 1, ...}, the Decathlon {"0": "background",
                   "1": "liver", ...}; both are read. Optional "file_ending" (nnU-Net v2; default ".nii.gz") and
                   "channel_names" (the Decathlon's "modality"), {"0": "CT"}: CT or not decides a training run's
                   intensities, as in nnU-Net.
    imagesTr/      <case>_0000<file_ending>, <case>_0001... (one file per channel; the Decathlon's own files have
                   no channel suffix and are one case each)
    labelsTr/      <case><file_ending>
    imagesTs/      optional, unlabelled

Plain pairing: `volumes/<case>.nii.gz` (or `volumes/<case>/`, a folder of one DICOM series) with
`labels/<case>.nii.gz`.

Cases are listed per volume, and `split_cases` splits them by volume, so that slices of one volume never land on
both sides of a split.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import VolumeError, is_nifti, nifti_stem

DEFAULT_FILE_ENDING = ".nii.gz"
_CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class VolumeCase:
    """One case: its channel volumes (NIfTI files or DICOM series folders, channel 0 first) and its label volume
    (None for unlabelled cases)."""

    case_id: str
    images: tuple[Path, ...]
    label: Path | None = None


@dataclass(frozen=True)
class VolumeDataset:
    """A folder of cases: `train` (labelled) and `test` (unlabelled, `imagesTs/`), with the classes `id2label`
    (0 = background) and the imaging modality of each channel (`channel_names`, e.g. `("CT",)`) when the layout
    names them."""

    root: Path
    train: tuple[VolumeCase, ...]
    test: tuple[VolumeCase, ...] = ()
    id2label: dict[int, str] | None = None
    file_ending: str = DEFAULT_FILE_ENDING
    channel_names: tuple[str, ...] | None = None

    @property
    def is_ct(self) -> bool | None:
        """Whether channel 0 is CT (nnU-Net's rule: its channel name is "CT", in any case); None when unnamed."""
        return None if not self.channel_names else self.channel_names[0].casefold() == "ct"


def read_id2label(dataset_json: str | os.PathLike) -> dict[int, str]:
    """`dataset.json`'s "labels" as {value: name}, from nnU-Net v2's {name: value} or the Decathlon's {value: name}."""
    path = Path(dataset_json)
    try:
        description = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise VolumeError(f"{path}: cannot read as JSON: {error}") from error
    labels = description.get("labels") if isinstance(description, dict) else None
    if not isinstance(labels, dict) or not labels:
        raise VolumeError(f'{path}: no "labels" mapping')
    if all(_is_integer_text(key) for key in labels):  # the Decathlon: {"0": "background", ...}
        pairs = [(int(key), value) for key, value in labels.items()]
    else:  # nnU-Net v2: {"background": 0, ...}
        pairs = [(value, key) for key, value in labels.items()]
    id2label = {}
    for value, name in pairs:
        if not isinstance(value, int) or isinstance(value, bool) or not isinstance(name, str):
            raise VolumeError(
                f"{path}: label {name!r}: {value!r} is not an integer label value (nnU-Net's region labels, lists of "
                "values, are not supported)"
            )
        if value in id2label:
            raise VolumeError(f"{path}: label value {value} is given twice ({id2label[value]!r}, {name!r})")
        id2label[value] = name
    if 0 not in id2label:
        raise VolumeError(f'{path}: "labels" has no background (value 0)')
    return dict(sorted(id2label.items()))


def check_label_values(
    labels: np.ndarray, id2label: Mapping[int, str], name: str, source: str = "dataset.json"
) -> None:
    """Raise unless every value of the label volume `labels` (named `name`) is a class of `id2label`."""
    unknown = sorted(set(np.unique(labels).tolist()) - set(id2label))
    if unknown:
        raise VolumeError(f"{name}: label values {unknown} are not in {source}'s labels (values {sorted(id2label)})")


def read_decathlon_dataset(root: str | os.PathLike) -> VolumeDataset:
    """The cases of a Decathlon / nnU-Net dataset folder (see the module docstring)."""
    root = Path(root)
    dataset_json = root / "dataset.json"
    if not dataset_json.is_file():
        raise VolumeError(f"{root}: no dataset.json (a Decathlon / nnU-Net dataset folder has one)")
    id2label = read_id2label(dataset_json)
    description = json.loads(dataset_json.read_text())
    file_ending = description.get("file_ending", DEFAULT_FILE_ENDING)
    if not isinstance(file_ending, str) or not file_ending.startswith("."):
        raise VolumeError(f'{dataset_json}: "file_ending" must be a suffix such as ".nii.gz", got {file_ending!r}')
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise VolumeError(f"{folder}: no such folder (a Decathlon / nnU-Net dataset has imagesTr/ and labelsTr/)")
    train = [VolumeCase(case_id, images) for case_id, images in _cases_of(images_dir, file_ending).items()]
    test_dir = root / "imagesTs"
    test = [VolumeCase(case_id, images) for case_id, images in _cases_of(test_dir, file_ending).items()]
    return VolumeDataset(
        root,
        with_labels(train, images_dir, labels_dir, file_ending),
        tuple(test) if test_dir.is_dir() else (),
        id2label,
        file_ending,
        _channel_names(description, dataset_json),
    )


def _channel_names(description: dict, dataset_json: Path) -> tuple[str, ...] | None:
    """nnU-Net v2's "channel_names" (or the Decathlon's "modality"), {"0": "CT", ...}, as names in channel order."""
    names = description.get("channel_names", description.get("modality"))
    if names is None:
        return None
    if not isinstance(names, dict) or not all(_is_integer_text(key) and isinstance(v, str) for key, v in names.items()):
        raise VolumeError(f'{dataset_json}: "channel_names" must map channel numbers to names, e.g. {{"0": "CT"}}')
    return tuple(names[key] for key in sorted(names, key=int))


def is_volume_folder(root: str | os.PathLike) -> bool:
    """Whether `root` is a folder of volumes: a Decathlon / nnU-Net dataset (dataset.json) or volumes/ + labels/."""
    root = Path(root)
    return (root / "dataset.json").is_file() or ((root / "volumes").is_dir() and (root / "labels").is_dir())


def read_volume_folder(root: str | os.PathLike) -> VolumeDataset:
    """The labelled cases of a folder of volumes (`is_volume_folder`): `read_decathlon_dataset`, else the pairs of
    volumes/ + labels/ (`pair_volumes_and_labels`; no class names, no modality)."""
    root = Path(root)
    if (root / "dataset.json").is_file():
        return read_decathlon_dataset(root)
    return VolumeDataset(root, pair_volumes_and_labels(root / "volumes", root / "labels"))


def with_labels(
    cases: Sequence[VolumeCase], images_dir: Path, labels_dir: Path, file_ending: str
) -> tuple[VolumeCase, ...]:
    """`cases` (of `images_dir`) with their label volumes `labels_dir/<case><file_ending>`: every case needs its
    label volume and every label volume its case (imagesTr/ + labelsTr/, or imagesTs/ + labelsTs/)."""
    labels = {_strip(path.name, file_ending): path for path in _files(labels_dir, file_ending)}
    labelled = []
    for case in cases:
        if case.case_id not in labels:
            raise VolumeError(f"{case.images[0]}: no label volume {labels_dir / (case.case_id + file_ending)}")
        labelled.append(VolumeCase(case.case_id, case.images, labels.pop(case.case_id)))
    if labels:
        stray = sorted(labels)[0]
        raise VolumeError(f"{labels[stray]}: no image volume in {images_dir} for this label volume")
    return tuple(labelled)


def pair_volumes_and_labels(volumes_dir: str | os.PathLike, labels_dir: str | os.PathLike) -> tuple[VolumeCase, ...]:
    """Cases from `volumes_dir` (NIfTI files, or sub-folders each holding one DICOM series) and `labels_dir` (NIfTI
    label volumes), paired by name without `.nii` / `.nii.gz`; every volume needs its label volume and vice versa."""
    volumes_dir, labels_dir = Path(volumes_dir), Path(labels_dir)
    for folder in (volumes_dir, labels_dir):
        if not folder.is_dir():
            raise VolumeError(f"{folder}: no such folder")
    volumes = {nifti_stem(path): path for path in sorted(volumes_dir.iterdir()) if path.is_dir() or is_nifti(path)}
    labels = {nifti_stem(path): path for path in sorted(labels_dir.iterdir()) if is_nifti(path)}
    for stem in sorted(set(volumes) ^ set(labels)):
        path = volumes.get(stem) or labels[stem]
        other = labels_dir if stem in volumes else volumes_dir
        raise VolumeError(f"{path}: nothing named {stem!r} in {other} to pair it with")
    if not volumes:
        raise VolumeError(f"{volumes_dir}: no volumes (.nii, .nii.gz or DICOM series folders)")
    return tuple(VolumeCase(stem, (volumes[stem],), labels[stem]) for stem in sorted(volumes))


def split_cases(
    cases: Sequence[VolumeCase], val_fraction: float = 0.1, seed: int = 0
) -> tuple[tuple[VolumeCase, ...], tuple[VolumeCase, ...]]:
    """(train, val): a seeded fraction of the VOLUMES held out, by the rule of `autosam_hf.data.splits`."""
    # Imported here: `datasets` is heavy and only this function needs it.
    import datasets

    from ..data.splits import train_val_split

    ids = [case.case_id for case in cases]
    if len(set(ids)) != len(ids):
        raise VolumeError(f"case ids are not unique: {sorted({i for i in ids if ids.count(i) > 1})}")
    split = train_val_split(datasets.Dataset.from_dict({"case": ids}), val_fraction=val_fraction, seed=seed)
    val_ids = set(split["val"]["case"])
    return (
        tuple(case for case in cases if case.case_id not in val_ids),
        tuple(case for case in cases if case.case_id in val_ids),
    )


def _is_integer_text(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def _strip(name: str, file_ending: str) -> str:
    return name[: -len(file_ending)]


def _files(folder: Path, file_ending: str) -> list[Path]:
    return sorted(
        path for path in folder.iterdir() if path.name.endswith(file_ending) and not path.name.startswith(".")
    )


def _cases_of(folder: Path, file_ending: str) -> dict[str, tuple[Path, ...]]:
    """{case id: channel files, channel 0 first} of an imagesTr/imagesTs folder (none when it does not exist)."""
    if not folder.is_dir():
        return {}
    channels: dict[str, dict[int, Path]] = {}
    for path in _files(folder, file_ending):
        stem = _strip(path.name, file_ending)
        match = _CHANNEL_SUFFIX.match(stem)
        case_id, channel = (match["case"], int(match["channel"])) if match else (stem, 0)
        channels.setdefault(case_id, {})[channel] = path
    cases = {}
    for case_id, files in sorted(channels.items()):
        if sorted(files) != list(range(len(files))):
            raise VolumeError(f"{folder}: case {case_id!r} has channels {sorted(files)}, expected 0..{len(files) - 1}")
        cases[case_id] = tuple(files[channel] for channel in sorted(files))
    return cases


__all__ = [
    "DEFAULT_FILE_ENDING",
    "VolumeCase",
    "VolumeDataset",
    "check_label_values",
    "is_volume_folder",
    "pair_volumes_and_labels",
    "read_decathlon_dataset",
    "read_id2label",
    "read_volume_folder",
    "split_cases",
    "with_labels",
]
