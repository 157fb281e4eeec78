"""Dataset presets: every fact about an AutoSAM dataset, in one place. Training, evaluation and the Hub model cards
read them from here:

- where its splits live (``split_dirs``, ``layout``) and under which folder names a data root holds it
  (``folder_names``);
- its name in tables (``display_name``) and the paper's benchmark groups it belongs to (`BENCHMARKS`);
- its prompt-generator input size, its augmentation (the reference code's, which `--recipe paper` trains with) and
  the share of ``train`` held out for validation where it has no validation split;
- its classes (``id2label``; binary unless set) and, for presets whose classes are derived from instance or binary
  masks (``boundary_width``, e.g. ``monuseg_boundary``), how;
- what a model card says about it (``card``: title, data, terms, citation), read from its text file
  ``model_cards/datasets/<card_name>.yaml`` (`read_dataset_card`).

A split is found by trying the preset's candidate folders under ``data_dir`` in order. A candidate holding
``images/`` + ``masks/`` is read with `load_image_mask_folder` (this project's ``../shared/data`` layout, PraNet's
``TrainDataset``/``TestDataset/<Name>``, Kvasir-SEG's original folder); otherwise the preset's native layout is
tried (GlaS's flat Warwick folder, MoNuSeg's XML release, SUN-SEG's ``Frame``/``GT`` folders). Presets with derived
boundary classes read a split's ``masks_instance/`` (instance ids) when it has one, else its ``masks/``.

A folder of one's own needs no named preset: `folder_preset` makes one from it (``<dir>/{train,val,test}/`` or a flat
``<dir>/`` of ``images/`` + ``masks/``), with generic defaults and a card that names the folder and nothing else.
"""

import dataclasses
import functools
import importlib.resources
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType

import datasets
import yaml

from .augmentation import (
    GLAS_AUGMENTATION,
    MONUSEG_AUGMENTATION,
    POLYP_AUGMENTATION,
    AugmentationConfig,
)
from .boundary import BOUNDARY_ID2LABEL, DEFAULT_BOUNDARY_WIDTH
from .masks import BINARY, MaskClasses
from .sources import INSTANCE_MASKS_DIR, load_glas_warwick, load_image_mask_folder, load_monuseg_xml, load_sunseg

# The package of the card template (the repository's top-level model_cards/, mapped by setup.cfg) and its folder of
# dataset card files.
CARD_PACKAGE = "autosam_hf.model_cards"
DATASET_CARDS_FOLDER = "datasets"


@dataclass(frozen=True)
class DatasetCard:
    """What the model card of a checkpoint trained on a dataset says about it (rendered into
    ``model_cards/template.md`` by `autosam_hf.hub.model_card`), as `read_dataset_card` reads it from
    ``model_cards/datasets/<name>.yaml``.

    Attributes:
        title: the card's heading, e.g. ``"GlaS (MICCAI 2015 gland segmentation)"``.
        hub_id: the dataset's type in the card's model-index metadata.
        domain: the task, in words ("polyp segmentation in colonoscopy frames").
        tags: Hub tags of the card.
        training_data: what the model was trained on.
        evaluation_datasets: presets whose test results the card lists (measured or "not measured"), in order.
        terms: the data's terms of use as we know them.
        terms_checked: whether ``terms`` were verified at the source (the card warns when not).
        homepage: the dataset's page, if any.
        citation: BibTeX of the dataset.
    """

    title: str
    hub_id: str
    domain: str
    tags: tuple[str, ...]
    training_data: str
    evaluation_datasets: tuple[str, ...]
    terms: str
    terms_checked: bool
    homepage: str | None
    citation: str


def _card_field_is_valid(name: str, value) -> bool:
    if name in ("tags", "evaluation_datasets"):
        return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)
    if name == "terms_checked":
        return isinstance(value, bool)
    return isinstance(value, str) or (name == "homepage" and value is None)


@functools.cache
def read_dataset_card(name: str, folder: Traversable | None = None) -> DatasetCard:
    """The card facts of `<folder>/<name>.yaml` (default folder: ``datasets/`` of the package `CARD_PACKAGE`, installed
    with autosam_hf): one key per `DatasetCard` field, or ``extends: <other name>`` and the fields that differ from
    that card's. Read once per name (presets that share a card share one object).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not YAML, or misses a field, has an unknown one or one of the wrong type.
    """
    path = (folder or importlib.resources.files(CARD_PACKAGE) / DATASET_CARDS_FOLDER) / f"{name}.yaml"
    try:
        facts = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"Dataset card {path}: not valid YAML ({' '.join(str(error).split())})") from error
    if not isinstance(facts, dict):
        raise ValueError(f"Dataset card {path}: expected a mapping of DatasetCard fields, got {type(facts).__name__}")
    if "extends" in facts:
        facts = {**dataclasses.asdict(read_dataset_card(facts.pop("extends"), folder)), **facts}
    fields = [field.name for field in dataclasses.fields(DatasetCard)]
    missing, unknown = [key for key in fields if key not in facts], [key for key in facts if key not in fields]
    if missing or unknown:
        problems = [
            f"{kind} fields {', '.join(keys)}" for kind, keys in (("missing", missing), ("unknown", unknown)) if keys
        ]
        raise ValueError(f"Dataset card {path}: {'; '.join(problems)}")
    wrong = [key for key in fields if not _card_field_is_valid(key, facts[key])]
    if wrong:
        raise ValueError(f"Dataset card {path}: wrong type of {', '.join(wrong)}")
    return DatasetCard(
        **{**facts, "tags": tuple(facts["tags"]), "evaluation_datasets": tuple(facts["evaluation_datasets"])}
    )


@dataclass(frozen=True)
class DatasetPreset:
    """Everything the loaders, the training script, the evaluation and the model cards need to know about one
    dataset.

    Attributes:
        name: the preset's name (`get_preset` key).
        display_name: its name in tables (evaluation reports, model cards), e.g. ``"Kvasir-SEG"``.
        description: one line on the data and the protocol.
        layout: how a split folder without ``images/`` + ``masks/`` is read: ``"pairs"`` (it must have them),
            ``"glas"`` (Warwick flat folder), ``"monuseg"`` (images + XML) or ``"sunseg"`` (``Frame``/``GT``).
        split_dirs: split name → candidate folders relative to ``data_dir``, tried in order.
        folder_names: the dataset's folder under a data root, tried in order: this project's name, then the
            official ones.
        image_size: the prompt generator's input size (Idim: 352 polyps, 256 GlaS, 512 MoNuSeg).
        canvas_rule: how a model trained on it makes its canvases (`AutoSamConfig.canvas_rule`): ``"squash"``
            for the polyp sets, None (the frozen model's own rule, letterbox for SAM) for the others.
        augmentation: the training augmentation (the reference code's settings).
        card_name: its model card facts' file, ``model_cards/datasets/<card_name>.yaml`` (`card`).
        own_card: the card facts of a preset made from a folder (`folder_preset`), which has no card file.
        is_video: examples carry ``case``/``frame`` columns (split train/val by case; scored per case).
        val_fraction: the share of ``train`` held out as validation where the dataset has no validation split
            (`train_val_split`).
        id2label: the classes a model trained on it predicts (0 = background); None: binary.
        boundary_width: derive {background, interior, boundary} from instance or binary masks, with a ring of this
            many pixels at the original resolution (`autosam_hf.data.boundary`); None: masks are read as they are.
    """

    name: str
    display_name: str
    description: str
    layout: str
    split_dirs: Mapping[str, tuple[str, ...]]
    folder_names: tuple[str, ...]
    image_size: int
    augmentation: AugmentationConfig
    card_name: str
    is_video: bool = False
    val_fraction: float = 0.1
    id2label: Mapping[int, str] | None = None
    boundary_width: int | None = None
    canvas_rule: str | None = None
    own_card: DatasetCard | None = None

    def __post_init__(self):
        # Read-only, like the rest of the frozen preset (the PRESETS entries are shared by every caller).
        object.__setattr__(self, "split_dirs", MappingProxyType(dict(self.split_dirs)))
        if self.id2label is not None:
            object.__setattr__(self, "id2label", MappingProxyType(dict(self.id2label)))

    def mask_classes(self, num_labels: int | None = None, boundary_width: int | None = None) -> MaskClasses:
        """What its masks become: derived boundary classes (ring `boundary_width`, default the preset's) for
        boundary presets; else label maps of `num_labels` labels, binary when None or 2."""
        if self.boundary_width is not None:
            if num_labels not in (None, len(BOUNDARY_ID2LABEL)):
                raise ValueError(f"preset {self.name!r} has {len(BOUNDARY_ID2LABEL)} labels, not {num_labels}")
            return MaskClasses.boundary(boundary_width or self.boundary_width)
        if boundary_width is not None:
            raise ValueError(f"boundary_width: preset {self.name!r} derives no boundary classes")
        return MaskClasses(num_labels) if num_labels else BINARY

    @property
    def card(self) -> DatasetCard:
        """What a model card says about it (`own_card`, else `read_dataset_card` of `card_name`)."""
        return self.own_card or read_dataset_card(self.card_name)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.split_dirs)

    @property
    def has_val_split(self) -> bool:
        return "val" in self.split_dirs


# ---------------------------------------------------------------------------------------------- presets
# The polyp benchmarks' training copies (PraNet's TrainDataset, this project's Kvasir-SEG) come squashed to 352², so a
# model trained on them learns squashed polyps: a non-square test image must be squashed the same way, not
# letterboxed (the field's protocol, PraNet's TestDataset, squashes too).
POLYP_CANVAS_RULE = "squash"


def _polyp_test_preset(
    name: str, display_name: str, pranet_name: str, folder_names: tuple[str, ...], description: str
) -> DatasetPreset:
    return DatasetPreset(
        name=name,
        display_name=display_name,
        description=description,
        layout="pairs",
        split_dirs={"test": ("test", "test_subset", f"TestDataset/{pranet_name}")},
        folder_names=folder_names,
        image_size=352,
        augmentation=POLYP_AUGMENTATION,
        canvas_rule=POLYP_CANVAS_RULE,
        card_name=name,
    )


def _sunseg_preset(name: str, display_name: str, test_root: str) -> DatasetPreset:
    return DatasetPreset(
        name=name,
        display_name=display_name,
        description=f"SUN-SEG video polyps; test = {test_root}/Unseen (also test_seen), train = TrainDataset.",
        layout="sunseg",
        split_dirs={
            "train": ("TrainDataset", "train"),
            "test": (f"{test_root}/Unseen", test_root, "test"),
            "test_seen": (f"{test_root}/Seen",),
        },
        folder_names=("sunseg", "SUN-SEG"),
        image_size=352,
        augmentation=POLYP_AUGMENTATION,
        canvas_rule=POLYP_CANVAS_RULE,
        card_name="sunseg",  # both SUN-SEG presets train on its TrainDataset: one card
        is_video=True,
    )


MONUSEG = DatasetPreset(
    name="monuseg",
    display_name="MoNuSeg",
    description="MoNuSeg nuclei: train 30 (official 37), test 14; images/masks or the XML release.",
    layout="monuseg",
    split_dirs={
        "train": ("train", "MoNuSegTrainingData", "MoNuSeg 2018 Training Data"),
        "test": ("test", "MoNuSegTestData"),
    },
    folder_names=("monuseg", "MoNuSeg"),
    image_size=512,
    augmentation=MONUSEG_AUGMENTATION,
    card_name="monuseg",
)

PRESETS: dict[str, DatasetPreset] = {
    preset.name: preset
    for preset in [
        DatasetPreset(
            name="kvasir",
            display_name="Kvasir-SEG",
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
            folder_names=("kvasir", "Kvasir-SEG", "Kvasir"),
            image_size=352,
            augmentation=POLYP_AUGMENTATION,
            canvas_rule=POLYP_CANVAS_RULE,
            card_name="kvasir",
        ),
        DatasetPreset(
            name="clinicdb",
            display_name="CVC-ClinicDB",
            description="CVC-ClinicDB polyps, PraNet protocol: train = TrainDataset, test = TestDataset/CVC-ClinicDB.",
            layout="pairs",
            split_dirs={
                "train": ("train", "TrainDataset"),
                "test": ("test", "test_subset", "TestDataset/CVC-ClinicDB"),
            },
            folder_names=("clinicdb", "cvc_clinicdb", "CVC-ClinicDB"),
            image_size=352,
            augmentation=POLYP_AUGMENTATION,
            canvas_rule=POLYP_CANVAS_RULE,
            card_name="clinicdb",
        ),
        _polyp_test_preset(
            "colondb",
            "CVC-ColonDB",
            "CVC-ColonDB",
            ("colondb", "cvc_colondb", "CVC-ColonDB"),
            "CVC-ColonDB polyps (test only; trained on kvasir/clinicdb).",
        ),
        _polyp_test_preset(
            "etis",
            "ETIS-LaribPolypDB",
            "ETIS-LaribPolypDB",
            ("etis", "etis_laribpolypdb", "ETIS-LaribPolypDB"),
            "ETIS-LaribPolypDB polyps (test only).",
        ),
        _polyp_test_preset(
            "cvc300",
            "CVC-300",
            "CVC-300",
            ("cvc300", "cvc_300", "CVC-300"),
            "CVC-300 (EndoScene test) polyps (test only).",
        ),
        DatasetPreset(
            name="glas",
            display_name="GlaS",
            description="GlaS colon glands: train 85, test = testA + testB (80); Warwick flat folder or images/masks.",
            layout="glas",
            split_dirs={
                "train": ("train", "."),
                "test": ("test", "test_subset", "."),
                "testA": ("testA", "."),
                "testB": ("testB", "."),
            },
            folder_names=("glas", "GlaS", "Warwick QU Dataset (Released 2016_07_08)"),
            image_size=256,
            augmentation=GLAS_AUGMENTATION,
            card_name="glas",
        ),
        MONUSEG,
        # The same data and folders, with classes derived from the nuclei: background, interior, boundary.
        dataclasses.replace(
            MONUSEG,
            name="monuseg_boundary",
            display_name="MoNuSeg boundary",
            description=(
                "MoNuSeg nuclei as 3 classes (background, interior, boundary ring): train from the binary masks' "
                "connected components, test from masks_instance (touching nuclei separated)."
            ),
            card_name="monuseg_boundary",
            id2label=BOUNDARY_ID2LABEL,
            boundary_width=DEFAULT_BOUNDARY_WIDTH,
        ),
        _sunseg_preset("sunseg_easy", "SUN-SEG Easy", "TestEasyDataset"),
        _sunseg_preset("sunseg_hard", "SUN-SEG Hard", "TestHardDataset"),
    ]
}

# The paper's tables, as groups of presets (table column order).
BENCHMARKS: dict[str, tuple[str, ...]] = {
    "polyps": ("kvasir", "clinicdb", "colondb", "etis"),
    "histology": ("glas", "monuseg"),
    "sunseg": ("sunseg_easy", "sunseg_hard"),
}


def get_preset(name: str) -> DatasetPreset:
    """Return the preset called ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown dataset preset {name!r}. Known presets: {', '.join(PRESETS)}.")
    return PRESETS[name]


# A folder without a preset: g's input size of the polyp presets and of HarDNet-MSEG, whose encoder g uses (a multiple
# of 32, as the encoder's strides need), between GlaS's 256 and MoNuSeg's 512; flips only, which suit most images
# (the reference augmentations' rotations and colour changes are the paper datasets' own choices).
FOLDER_IMAGE_SIZE = 352
FOLDER_AUGMENTATION = AugmentationConfig(horizontal_flip=True, vertical_flip=True)
FOLDER_LAYOUT = "folder"
FOLDER_SPLIT_DIRS = {"train": ("train", "."), "val": ("val",), "test": ("test", ".")}


def folder_preset(
    data: str | os.PathLike,
    display_name: str | None = None,
    license: str | None = None,
    citation: str | None = None,
    hub_id: str | None = None,
) -> DatasetPreset:
    """The preset of a dataset of one's own: ``<data>/{train,val,test}/{images,masks}`` or a flat
    ``<data>/{images,masks}`` (train, with validation held out by `train_val_split`; test, when evaluated), binary
    masks unless the run names classes, g's input `FOLDER_IMAGE_SIZE`, the frozen model's own canvas rule, flips.

    Args:
        data: the folder (or, with `hub_id`, the Hub dataset id); its last part names the preset and its results.
        display_name: its name on cards and in tables (default: that name).
        license, citation: the data's terms and BibTeX, as the person who trains states them (None: "not stated").
        hub_id: the Hub dataset id it came from, if any (the card's model-index dataset type; default its name).
    """
    name = Path(data).name or Path(data).resolve().name or "data"
    display_name = display_name or name
    card = DatasetCard(
        title=display_name,
        hub_id=hub_id or name,
        domain=f"segmentation of {display_name} images",
        tags=(),
        training_data=(
            f"{display_name}: images and masks of the trainer's own (`{name}`), not one of the datasets this project "
            "describes; their source, size and selection are not recorded here."
        ),
        terms=f"As stated by the trainer: {license}" if license else "Not stated by the trainer.",
        terms_checked=bool(license),
        homepage=None,
        citation=citation or "",
        evaluation_datasets=(name,),
    )
    return DatasetPreset(
        name=name,
        display_name=display_name,
        description=f"A folder of one's own: {os.fspath(data)}.",
        layout=FOLDER_LAYOUT,
        split_dirs=FOLDER_SPLIT_DIRS,
        folder_names=(name,),
        image_size=FOLDER_IMAGE_SIZE,
        augmentation=FOLDER_AUGMENTATION,
        card_name="",
        own_card=card,
    )


def resolve_preset(name: str | DatasetPreset | None, data: str | os.PathLike | None = None, **card) -> DatasetPreset:
    """A named preset (`get_preset`), a preset as it is, or without a name the `folder_preset` of `data` (`card`: its
    display name, licence, citation, hub id)."""
    if isinstance(name, DatasetPreset):
        return name
    if name is not None:
        return get_preset(name)
    if data is None:
        raise ValueError("give --preset or --data (a folder of images/ + masks/)")
    return folder_preset(data, **card)


def _read_native_layout(
    preset: DatasetPreset,
    folder: Path,
    split: str,
    num_workers: int | None,
    classes: MaskClasses,
    max_samples: int | None,
) -> datasets.Dataset | None:
    """Read ``folder`` with the preset's own layout, or return None if it does not look like one."""
    options = {"num_workers": num_workers, "classes": classes, "max_samples": max_samples}
    if preset.layout == "glas" and any(folder.glob("*_anno.bmp")):
        return load_glas_warwick(folder, split, **options)
    if preset.layout == "monuseg" and (any(folder.glob("*.xml")) or (folder / "Annotations").is_dir()):
        return load_monuseg_xml(folder, **options)
    if preset.layout == "sunseg" and (folder / "Frame").is_dir():
        return load_sunseg(folder, **options)
    return None


def load_preset_dataset(
    name: str | DatasetPreset,
    split: str,
    data_dir: str | os.PathLike,
    num_workers: int | None = None,
    classes: MaskClasses | None = None,
    max_samples: int | None = None,
) -> datasets.Dataset:
    """Load one split of a preset's dataset, e.g. ``load_preset_dataset("kvasir", "train", "../shared/data/kvasir")``.

    Args:
        name: a preset name (`PRESETS`), or a preset (`folder_preset`).
        split: one of the preset's ``split_dirs`` keys. Sets without ``"val"`` use `train_val_split` on ``"train"``.
        data_dir: the dataset's root folder.
        num_workers: decoding threads for validation.
        classes: what the masks become (`DatasetPreset.mask_classes`); default the preset's own (binary, or its
            derived boundary classes).
        max_samples: only the first N examples of the split (in its order; video frames stay in order), the others
            not even decoded: `dataset.select(range(min(N, len(dataset))))` of the whole split, without reading it all.

    Returns:
        `datasets.Dataset` with columns ``id``, ``image``, ``mask`` (0/1, or 0..K) [, ``case``, ``frame`` for
        SUN-SEG; ``instances`` for derived boundary classes].

    Raises:
        ValueError: unknown preset or split, or invalid data (see `dataset_builder.build_dataset`).
        FileNotFoundError: ``data_dir`` or every candidate folder of the split is missing.
    """
    preset = resolve_preset(name)
    name = preset.name
    if split not in preset.split_dirs:
        hint = " Use train_val_split() on 'train' for a validation set." if split in ("val", "validation") else ""
        raise ValueError(f"Preset {name!r} has no split {split!r}; its splits are {list(preset.split_dirs)}.{hint}")
    classes = classes or preset.mask_classes()
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data_dir {data_dir} does not exist or is not a folder.")
    for candidate in preset.split_dirs[split]:
        folder = data_dir / candidate
        if not folder.is_dir():
            continue
        if (folder / "images").is_dir() and (folder / "masks").is_dir():
            # Derived boundary classes separate touching nuclei only where each nucleus has its own id.
            instance_masks = classes.boundary_width is not None and (folder / INSTANCE_MASKS_DIR).is_dir()
            masks_dir = INSTANCE_MASKS_DIR if instance_masks else "masks"
            return load_image_mask_folder(
                folder, masks_dir=masks_dir, num_workers=num_workers, classes=classes, max_samples=max_samples
            )
        dataset = _read_native_layout(preset, folder, split, num_workers, classes, max_samples)
        if dataset is not None:
            return dataset
    tried = ", ".join(str(data_dir / candidate) for candidate in preset.split_dirs[split])
    if preset.layout == FOLDER_LAYOUT:
        raise FileNotFoundError(
            f"{data_dir}: no images/ + masks/ folders for its {split!r} split (looked in {tried}); a folder of one's "
            "own holds images/ and masks/, or train/, val/, test/ each holding them"
        )
    raise FileNotFoundError(f"No {split!r} split of preset {name!r} under {data_dir}; looked for: {tried}.")
