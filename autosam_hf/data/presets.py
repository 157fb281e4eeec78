"""Dataset presets: where each AutoSAM dataset's splits live, its prompt-generator input size, its augmentation,
and the paper's training hyper-parameters (defaults for the training script).

A split is found by trying the preset's candidate folders under ``data_dir`` in order. A candidate holding
``images/`` + ``masks/`` is read with `load_image_mask_folder` (this project's ``../shared/data`` layout, PraNet's
``TrainDataset``/``TestDataset/<Name>``, Kvasir-SEG's original folder); otherwise the preset's native layout is
tried (GlaS's flat Warwick folder, MoNuSeg's XML release, SUN-SEG's ``Frame``/``GT`` folders).
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import datasets

from .augmentation import GLAS_AUGMENTATION, MONUSEG_AUGMENTATION, POLYP_AUGMENTATION, AugmentationConfig
from .sources import load_glas_warwick, load_image_mask_folder, load_monuseg_xml, load_sunseg


@dataclass(frozen=True)
class TrainingDefaults:
    """The paper's training hyper-parameters (Shaharabany et al. 2023, Sec. 4); the training script's defaults.

    ``surrogate_batch_size`` is the batch of the surrogate decoder h; ``val_fraction`` is what `train_val_split`
    holds out of ``train`` for sets without a validation split.
    """

    learning_rate: float = 3e-4
    weight_decay: float = 1e-5
    batch_size: int = 10
    num_epochs: int = 200
    surrogate_batch_size: int = 24
    val_fraction: float = 0.1


@dataclass(frozen=True)
class DatasetPreset:
    """Everything the loaders and the training script need to know about one dataset.

    Attributes:
        name: the preset's name (`get_preset` key).
        description: one line on the data and the protocol.
        layout: how a split folder without ``images/`` + ``masks/`` is read: ``"pairs"`` (it must have them),
            ``"glas"`` (Warwick flat folder), ``"monuseg"`` (images + XML) or ``"sunseg"`` (``Frame``/``GT``).
        split_dirs: split name → candidate folders relative to ``data_dir``, tried in order.
        image_size: the prompt generator's input size (Idim: 352 polyps, 256 GlaS, 512 MoNuSeg).
        augmentation: the training augmentation (the reference code's settings).
        is_video: examples carry ``case``/``frame`` columns (split train/val by case).
        training: the paper's hyper-parameters.
    """

    name: str
    description: str
    layout: str
    split_dirs: Mapping[str, tuple[str, ...]]
    image_size: int
    augmentation: AugmentationConfig
    is_video: bool = False
    training: TrainingDefaults = field(default_factory=TrainingDefaults)

    def __post_init__(self):
        # Read-only, like the rest of the frozen preset (the PRESETS entries are shared by every caller).
        object.__setattr__(self, "split_dirs", MappingProxyType(dict(self.split_dirs)))

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.split_dirs)

    @property
    def has_val_split(self) -> bool:
        return "val" in self.split_dirs


def _polyp_test_preset(name: str, pranet_name: str, description: str) -> DatasetPreset:
    return DatasetPreset(
        name=name,
        description=description,
        layout="pairs",
        split_dirs={"test": ("test", "test_subset", f"TestDataset/{pranet_name}")},
        image_size=352,
        augmentation=POLYP_AUGMENTATION,
    )


def _sunseg_preset(name: str, test_root: str) -> DatasetPreset:
    return DatasetPreset(
        name=name,
        description=f"SUN-SEG video polyps; test = {test_root}/Unseen (also test_seen), train = TrainDataset.",
        layout="sunseg",
        split_dirs={
            "train": ("TrainDataset", "train"),
            "test": (f"{test_root}/Unseen", test_root, "test"),
            "test_seen": (f"{test_root}/Seen",),
        },
        image_size=352,
        augmentation=POLYP_AUGMENTATION,
        is_video=True,
    )


PRESETS: dict[str, DatasetPreset] = {
    preset.name: preset
    for preset in [
        DatasetPreset(
            name="kvasir",
            description=(
                "Kvasir-SEG polyps. This project's copy: train/val/test 800/100/100; PraNet protocol: train = "
                "TrainDataset (900 Kvasir + 550 ClinicDB), test = TestDataset/Kvasir; 'all' = Kvasir-SEG's own folder."
            ),
            layout="pairs",
            split_dirs={
                "train": ("train", "TrainDataset"),
                "val": ("val",),
                "test": ("test", "TestDataset/Kvasir"),
                "original_resolution_samples": ("original_resolution_samples",),
                "all": ("Kvasir-SEG", "."),
            },
            image_size=352,
            augmentation=POLYP_AUGMENTATION,
        ),
        DatasetPreset(
            name="clinicdb",
            description="CVC-ClinicDB polyps, PraNet protocol: train = TrainDataset, test = TestDataset/CVC-ClinicDB.",
            layout="pairs",
            split_dirs={
                "train": ("train", "TrainDataset"),
                "test": ("test", "test_subset", "TestDataset/CVC-ClinicDB"),
            },
            image_size=352,
            augmentation=POLYP_AUGMENTATION,
        ),
        _polyp_test_preset("colondb", "CVC-ColonDB", "CVC-ColonDB polyps (test only; trained on kvasir/clinicdb)."),
        _polyp_test_preset("etis", "ETIS-LaribPolypDB", "ETIS-LaribPolypDB polyps (test only)."),
        _polyp_test_preset("cvc300", "CVC-300", "CVC-300 (EndoScene test) polyps (test only)."),
        DatasetPreset(
            name="glas",
            description="GlaS colon glands: train 85, test = testA + testB (80); Warwick flat folder or images/masks.",
            layout="glas",
            split_dirs={
                "train": ("train", "."),
                "test": ("test", "test_subset", "."),
                "testA": ("testA", "."),
                "testB": ("testB", "."),
            },
            image_size=256,
            augmentation=GLAS_AUGMENTATION,
        ),
        DatasetPreset(
            name="monuseg",
            description="MoNuSeg nuclei: train 30 (official 37), test 14; images/masks or the XML release.",
            layout="monuseg",
            split_dirs={
                "train": ("train", "MoNuSegTrainingData", "MoNuSeg 2018 Training Data"),
                "test": ("test", "MoNuSegTestData"),
            },
            image_size=512,
            augmentation=MONUSEG_AUGMENTATION,
        ),
        _sunseg_preset("sunseg_easy", "TestEasyDataset"),
        _sunseg_preset("sunseg_hard", "TestHardDataset"),
    ]
}


def get_preset(name: str) -> DatasetPreset:
    """Return the preset called ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown dataset preset {name!r}. Known presets: {', '.join(PRESETS)}.")
    return PRESETS[name]


def _read_native_layout(preset: DatasetPreset, folder: Path, split: str, num_workers: int | None):
    """Read ``folder`` with the preset's own layout, or return None if it does not look like one."""
    if preset.layout == "glas" and any(folder.glob("*_anno.bmp")):
        return load_glas_warwick(folder, split, num_workers=num_workers)
    if preset.layout == "monuseg" and (any(folder.glob("*.xml")) or (folder / "Annotations").is_dir()):
        return load_monuseg_xml(folder, num_workers=num_workers)
    if preset.layout == "sunseg" and (folder / "Frame").is_dir():
        return load_sunseg(folder, num_workers=num_workers)
    return None


def load_preset_dataset(
    name: str, split: str, data_dir: str | os.PathLike, num_workers: int | None = None
) -> datasets.Dataset:
    """Load one split of a preset's dataset, e.g. ``load_preset_dataset("kvasir", "train", "../shared/data/kvasir")``.

    Args:
        name: a preset name (`PRESETS`).
        split: one of the preset's ``split_dirs`` keys. Sets without ``"val"`` use `train_val_split` on ``"train"``.
        data_dir: the dataset's root folder.
        num_workers: decoding threads for validation.

    Returns:
        `datasets.Dataset` with columns ``id``, ``image``, ``mask`` (0/1) [, ``case``, ``frame`` for SUN-SEG].

    Raises:
        ValueError: unknown preset or split, or invalid data (see `dataset_builder.build_dataset`).
        FileNotFoundError: ``data_dir`` or every candidate folder of the split is missing.
    """
    preset = get_preset(name)
    if split not in preset.split_dirs:
        hint = " Use train_val_split() on 'train' for a validation set." if split in ("val", "validation") else ""
        raise ValueError(f"Preset {name!r} has no split {split!r}; its splits are {list(preset.split_dirs)}.{hint}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data_dir {data_dir} does not exist or is not a folder.")
    for candidate in preset.split_dirs[split]:
        folder = data_dir / candidate
        if not folder.is_dir():
            continue
        if (folder / "images").is_dir() and (folder / "masks").is_dir():
            return load_image_mask_folder(folder, num_workers=num_workers)
        dataset = _read_native_layout(preset, folder, split, num_workers)
        if dataset is not None:
            return dataset
    tried = ", ".join(str(data_dir / candidate) for candidate in preset.split_dirs[split])
    raise FileNotFoundError(f"No {split!r} split of preset {name!r} under {data_dir}; looked for: {tried}.")
