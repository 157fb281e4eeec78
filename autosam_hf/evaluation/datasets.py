"""Which datasets an evaluation reads: `NAME[:SPLIT][=FOLDER]` specs, the paper's benchmark groups, and where each
dataset's folder is found under a data root. The facts (benchmark groups, folder names, display names) are the
presets' (`autosam_hf.data.presets`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..data import BENCHMARKS, get_preset, load_preset_dataset
from ..data.masks import MaskClasses
from ..data.presets import DatasetPreset, folder_preset

logger = logging.getLogger(__name__)

DEFAULT_SPLIT = "test"


# ---------------------------------------------------------------------------------------------- dataset specs
@dataclass(frozen=True)
class DatasetSpec:
    """One dataset column: a preset (or, `own_folder`, the `folder_preset` of `data_dir`, named after that folder),
    its split, and the folder it is read from (`data_dir`, once resolved)."""

    name: str
    split: str = DEFAULT_SPLIT
    data_dir: Path | None = None
    own_folder: bool = False

    @classmethod
    def of_folder(cls, folder: str | os.PathLike, split: str = DEFAULT_SPLIT) -> DatasetSpec:
        """A folder of one's own (no preset): `<folder>/<split>/` or a flat `<folder>/{images,masks}`."""
        return cls(folder_preset(folder).name, split, Path(folder), own_folder=True)

    @property
    def preset(self) -> DatasetPreset:
        return folder_preset(self.data_dir) if self.own_folder else get_preset(self.name)

    @property
    def key(self) -> str:
        """Its name in the results: the preset name (a folder's own name), with the split when it is not `test`."""
        return self.name if self.split == DEFAULT_SPLIT else f"{self.name}_{self.split}"

    @property
    def display_name(self) -> str:
        """Its column title: the preset's display name, with the split when it is not `test`."""
        name = self.preset.display_name
        return name if self.split == DEFAULT_SPLIT else f"{name} ({self.split})"

    @property
    def is_video(self) -> bool:
        return self.preset.is_video


def parse_dataset_spec(text: str, default_split: str = DEFAULT_SPLIT) -> DatasetSpec:
    """`NAME[:SPLIT][=FOLDER]` → an unresolved `DatasetSpec` (checked: known preset and split).

    Raises:
        ValueError: unknown preset or split, or an empty part.
    """
    name_and_split, _, folder = text.partition("=")
    name, _, split = name_and_split.partition(":")
    name, split, folder = name.strip(), split.strip() or default_split, folder.strip()
    if "=" in text and not folder:
        raise ValueError(f"Dataset {text!r}: empty folder after '='.")
    preset = get_preset(name)  # unknown preset: ValueError listing the known ones
    if split not in preset.split_dirs:
        raise ValueError(
            f"Dataset {text!r}: preset {name!r} has no split {split!r}; its splits are {list(preset.split_dirs)}."
        )
    return DatasetSpec(name, split, Path(folder) if folder else None)


def _holds_split(folder: Path, preset: DatasetPreset, split: str) -> bool:
    return folder.is_dir() and any((folder / candidate).is_dir() for candidate in preset.split_dirs[split])


def find_data_dir(name: str, split: str, data_root: str | os.PathLike) -> Path | None:
    """The folder under `data_root` holding `split` of preset `name` (the preset's `folder_names`, then
    `data_root` itself, which covers PraNet's `TestDataset/<Name>` layout), or None."""
    data_root = Path(data_root)
    for candidate in (*(data_root / folder for folder in get_preset(name).folder_names), data_root):
        if _holds_split(candidate, get_preset(name), split):
            return candidate
    return None


def resolve_dataset_spec(spec: DatasetSpec, data_root: str | os.PathLike | None) -> DatasetSpec:
    """`spec` with its `data_dir` found and checked to hold the split.

    Raises:
        FileNotFoundError: the folder (given, or looked for under `data_root`) does not exist or lacks the split;
            the message names the folders tried.
    """
    if spec.own_folder and not spec.data_dir.is_dir():
        raise FileNotFoundError(f"--data {spec.data_dir}: no such folder")
    preset = spec.preset
    if spec.own_folder and spec.split not in preset.split_dirs:
        raise ValueError(
            f"{spec.data_dir}: a folder of one's own has no split {spec.split!r} ({list(preset.split_dirs)})"
        )
    split_folders = ", ".join(preset.split_dirs[spec.split])
    if spec.data_dir is not None:
        if not spec.data_dir.is_dir():
            raise FileNotFoundError(f"Data folder of {spec.name!r} not found: {spec.data_dir}")
        if not _holds_split(spec.data_dir, preset, spec.split):
            raise FileNotFoundError(
                f"{spec.data_dir} holds no {spec.split!r} split of {spec.name!r} (looked for: {split_folders})."
            )
        return spec
    if data_root is None or not Path(data_root).is_dir():
        raise FileNotFoundError(
            f"No folder for {spec.name!r}: give one (NAME=FOLDER or --data), or an existing --data_root "
            f"(got {data_root})."
        )
    found = find_data_dir(spec.name, spec.split, data_root)
    if found is None:
        tried = ", ".join([*preset.folder_names, "."])
        raise FileNotFoundError(
            f"No {spec.split!r} split of {spec.name!r} under --data_root {data_root} (tried the folders {tried}, each "
            f"holding one of: {split_folders}). Give its folder with NAME=FOLDER or --data."
        )
    return DatasetSpec(spec.name, spec.split, found)


def resolve_datasets(
    specs: Sequence[DatasetSpec] = (),
    benchmarks: Sequence[str] = (),
    data_root: str | os.PathLike | None = None,
    split: str = DEFAULT_SPLIT,
) -> list[DatasetSpec]:
    """Resolve the datasets (table columns) of a run, in order: `specs` first, then each benchmark's members.

    Args:
        specs: datasets named explicitly (`parse_dataset_spec`); each must be found.
        benchmarks: names of `BENCHMARKS`; a member without the split under `data_root` stays in the list with
            `data_dir=None` (a column shown as not evaluated).
        data_root: where datasets without a folder are looked for.
        split: the split of benchmark members.

    Raises:
        ValueError: unknown benchmark, or one dataset given twice with different folders.
        FileNotFoundError: an explicit dataset's folder is missing (see `resolve_dataset_spec`), or no dataset at all
            was found.
    """
    columns: dict[str, DatasetSpec] = {}
    for spec in specs:
        spec = resolve_dataset_spec(spec, data_root)
        known = columns.setdefault(spec.key, spec)
        if known.data_dir.resolve() != spec.data_dir.resolve():
            raise ValueError(
                f"Dataset {spec.key!r} given twice, with different folders: {known.data_dir}, {spec.data_dir}"
            )
    for benchmark in benchmarks:
        if benchmark not in BENCHMARKS:
            raise ValueError(f"Unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}.")
        for name in BENCHMARKS[benchmark]:
            if DatasetSpec(name, split).key in columns:
                continue
            has_split = split in get_preset(name).split_dirs
            found = find_data_dir(name, split, data_root) if has_split and data_root is not None else None
            if found is None:
                logger.warning(
                    "%s: no %r split of %r under %s; its column stays empty.", benchmark, split, name, data_root
                )
            columns[DatasetSpec(name, split).key] = DatasetSpec(name, split, found)
    if not any(spec.data_dir for spec in columns.values()):
        raise FileNotFoundError(f"No dataset to evaluate: none of {', '.join(benchmarks)} was found under {data_root}.")
    return list(columns.values())


def load_evaluation_dataset(spec: DatasetSpec, max_samples: int | None = None, num_labels: int = 2):
    """The `datasets.Dataset` of a resolved spec (columns id, image, mask [, case, frame, instances]) with masks as a
    `num_labels`-label model reads them (`DatasetPreset.mask_classes`), truncated to the first `max_samples` rows
    (frames stay in order; the rest are not read)."""
    preset = spec.preset
    classes: MaskClasses = preset.mask_classes(num_labels)
    return load_preset_dataset(preset, spec.split, spec.data_dir, classes=classes, max_samples=max_samples)


def source_folder(dataset) -> str | None:
    """The folder the images were read from (for the report), when the dataset references files."""
    import datasets

    try:
        paths = [row["path"] for row in dataset.cast_column("image", datasets.Image(decode=False))["image"]]
    except (KeyError, TypeError, ValueError):
        return None
    paths = [path for path in paths if path]
    return os.path.commonpath([str(Path(path).parent) for path in paths]) if paths else None
