"""What one training run does, resolved once: the dataset preset, a recipe, and the options given.

A *recipe* is a named set of training hyper-parameters, a YAML file of option values in `recipes/`:

- `paper`: the AutoSAM paper's training (Shaharabany et al. 2023, Sec. 4): Adam, lr 3e-4, weight decay 1e-5, a
  constant rate, batch 10 (h: 24), 200 epochs, the reference code's augmentation.
- `default`: the paper's optimizer with the augmentation that learned fastest per step in the ablation (README),
  annealed: Adam, lr 3e-4, weight decay 1e-5, a cosine schedule over each stage's steps after a 5% warm-up, batch 8
  (h: 24), 200 epochs, the dataset's random flips only.

Every option can still be set on its own (`--learning_rate`, `--augmentation`, ..., or a `--config` file);
`resolve_settings` applies, in order, the preset's dataset facts, the recipe, then each option that was given.

Without `--preset`, `--data` is a folder of one's own (`data.presets.folder_preset`: g's input 352, the frozen
model's canvas rule, flips), and the run records its display name, licence and citation for the model card.

Classes: binary unless the preset has its own (`monuseg_boundary`: background, interior, boundary) or
`--class_names` names them (background + those, read from label-map masks with values 0..K).

Volumes: `--data` a folder of CT/MRI volumes (`volumes.is_volume_folder`: a Decathlon / nnU-Net dataset or
volumes/ + labels/) trains on their slices. Its classes are dataset.json's (or the `--class_names` among them), and
how the slices are made (`volume_input`: the `--ct_window`, else for CT nnU-Net's range of the training volumes,
else each volume's percentiles; `--slice_axis`; `--context_slices`; each class's label value) is resolved here, once,
and recorded in the model's config.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..data import AUGMENTATION_LEVELS, DatasetPreset
from ..data.presets import resolve_preset
from ..volumes import (
    DEFAULT_EMPTY_SLICE_FRACTION,
    is_volume_folder,
    read_volume_folder,
    split_cases,
    training_volume_input,
)
from .clicks import DEFAULT_CLICK_ROUNDS
from .options import (
    RECIPE_DIR,
    STAGE_MODE,
    STAGES,
    TrainingOptions,
    options,
    read_option_values,
)

OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW"}  # as people write them
BINARY_ID2LABEL = {0: "background", 1: "foreground"}


@dataclass(frozen=True)
class Recipe:
    """Training hyper-parameters that do not depend on the dataset (each the value of the option of that name)."""

    optimizer: str
    learning_rate: float
    weight_decay: float
    lr_scheduler_type: str
    warmup_ratio: float
    batch_size: int
    surrogate_batch_size: int
    num_epochs: int
    augmentation: str
    ema_decay: float | None  # None: the last step's weights are validated and kept, no average

    @classmethod
    def from_file(cls, path: Path) -> Recipe:
        """A recipe file: a YAML file of option values (`options.read_option_values`) giving every field."""
        values = read_option_values(path)
        names = {field.name for field in dataclasses.fields(cls)}
        if values.keys() != names:
            raise ValueError(f"{path}: a recipe sets exactly {sorted(names)}, got {sorted(values)}")
        return cls(**values)

    def describe(self) -> str:
        """One line for people (model cards): "Adam, learning rate 0.0003, ..."."""
        schedule = "a constant rate" if self.lr_scheduler_type == "constant" else f"a {self.lr_scheduler_type} schedule"
        if self.warmup_ratio:
            schedule += f" after a {self.warmup_ratio:.0%} warm-up"
        averaged = f", weights averaged (EMA, decay {self.ema_decay:g})" if self.ema_decay else ""
        return (
            f"{OPTIMIZER_NAMES[self.optimizer]}, learning rate "
            f"{self.learning_rate:g}, weight decay {self.weight_decay:g}, {schedule}, batch {self.batch_size} (h: "
            f"{self.surrogate_batch_size}), {self.num_epochs} epochs, augmentation `{self.augmentation}`{averaged}"
        )


RECIPES = {path.stem: Recipe.from_file(path) for path in sorted(RECIPE_DIR.glob("*.yaml"))}


@dataclass(frozen=True, kw_only=True)
class TrainingSettings(TrainingOptions):
    """Everything a run needs, resolved: every option (no None left where the preset, the recipe or the machine
    gives a value) and what follows from them. Saved as `training_settings.json`."""

    id2label: dict[int, str]  # the classes: 0 background, 1..K (binary: 1 foreground)
    stages: tuple[str, ...]  # --stage's stages, in order
    use_cache: bool  # SAM's embeddings cached: a stage through SAM, without --no_cache
    # A run on volumes: how its slices are made (`volumes.VolumeInput.to_dict`), saved in the model's config.
    volume_input: dict | None = None

    def __post_init__(self):
        # JSON keys are strings: settings read back from training_settings.json get their integer labels again.
        object.__setattr__(self, "id2label", {int(index): name for index, name in self.id2label.items()})
        object.__setattr__(self, "stages", tuple(self.stages))

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def mask_classes(self):
        """What the run's masks become (binary, label maps 0..K, or the preset's derived boundary classes)."""
        return self.dataset_preset().mask_classes(self.num_labels, self.boundary_width)

    def dataset_preset(self) -> DatasetPreset:
        """`--preset`'s preset, or without one the `folder_preset` of `--data` (or `--dataset_name`), with the card
        facts the run was given."""
        return preset_of(self)

    def batch_size_for(self, stage: str) -> int:
        return self.surrogate_batch_size if stage == "surrogate" else self.batch_size

    def warmup_steps(self, total_steps: int) -> int:
        return self.num_warmup_steps if self.num_warmup_steps is not None else round(self.warmup_ratio * total_steps)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def default_num_workers() -> int:
    """Data-loader workers: half the cores (up to 8), none on machines of two cores or fewer, where a worker
    would take a core from the model's own arithmetic."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 0 if cores <= 2 else min(8, cores // 2)


def resolve_classes(class_names: list[str] | None, preset: DatasetPreset) -> dict[int, str]:
    """id2label of a run: background + `--class_names`, else the preset's classes, else binary."""
    if class_names:
        if preset.id2label is not None:
            raise ValueError(f"--class_names: preset {preset.name!r} has its own classes {dict(preset.id2label)}")
        if "background" in class_names or len(set(class_names)) != len(class_names):
            raise ValueError(f"--class_names must name K distinct classes besides the background, got {class_names}")
        return {0: "background", **dict(enumerate(class_names, start=1))}
    return dict(preset.id2label) if preset.id2label is not None else dict(BINARY_ID2LABEL)


DEFAULT_VAL_SPLIT_SEED = 42
DATASET_CARD_FLAGS = ("dataset_display_name", "dataset_license", "dataset_citation")
VOLUME_FLAGS = ("ct_window", "slice_axis", "context_slices", "empty_slice_fraction")


def resolve_volume_run(values: dict) -> tuple[dict[int, str], dict]:
    """(id2label, `VolumeInput` as a dict) of a run on a folder of volumes, from the option `values` with the
    validation split resolved; the CT window of a CT dataset without `--ct_window` is read from its training cases
    (never its validation cases)."""
    if values["preset"] is not None:
        raise ValueError(f"--preset {values['preset']}: --data {values['data']} is a folder of volumes (no preset)")
    dataset = read_volume_folder(values["data"])
    train_cases, _ = split_cases(dataset.train, values["val_fraction"], values["val_split_seed"])
    id2label, volume_input = training_volume_input(
        dataset,
        train_cases,
        class_names=values["class_names"],
        window=values["ct_window"],
        slice_axis=values["slice_axis"],
        context_slices=bool(values["context_slices"]),
        seed=values["seed"],
    )
    return id2label, volume_input.to_dict()


def preset_of(args: argparse.Namespace | TrainingOptions) -> DatasetPreset:
    """The run's dataset preset (`TrainingSettings.dataset_preset`); the `DATASET_CARD_FLAGS` apply without
    `--preset` only."""
    if args.preset is not None:
        given = [f"--{name}" for name in DATASET_CARD_FLAGS if getattr(args, name) is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: only without --preset (preset {args.preset!r} has its own card)")
    card = {
        "display_name": args.dataset_display_name,
        "license": args.dataset_license,
        "citation": args.dataset_citation,
        "hub_id": None if args.data else args.dataset_name,
    }
    return resolve_preset(args.preset, args.data or args.dataset_name, **card)


def recorded_validation_split(init_from: str | None) -> dict:
    """How the `--init_from` model's run held out its validation images (`val_fraction`, `val_split_seed`), from
    its `training_settings.json` when it is a local folder that has one; runs from before `--val_split_seed` split
    with their `--seed`. An `--init_from` run continuing that model validates on the same images by default."""
    path = Path(init_from) / "training_settings.json" if init_from else None
    if path is None or not path.is_file():
        return {}
    recorded = json.loads(path.read_text())
    split = {
        "val_fraction": recorded.get("val_fraction"),
        "val_split_seed": recorded.get("val_split_seed"),
    }
    return {key: value for key, value in split.items() if value is not None}  # a seed of 0 is a seed


def resolve_settings(args: argparse.Namespace | TrainingOptions, mixed_precision: str) -> TrainingSettings:
    """Preset facts, then the recipe (or the `--init_from` model's validation split), then every option that was
    given (None = not given); `mixed_precision`: the resolved `--mixed_precision`."""
    preset = preset_of(args)
    recipe = dataclasses.asdict(RECIPES[args.recipe])
    recorded_split = recorded_validation_split(args.init_from)
    values = {}
    for option in options():
        given = getattr(args, option.name)
        values[option.name] = recipe.get(option.name) if given is None else given

    def chosen(name: str, default):
        return default if values[name] is None else values[name]

    stages = STAGES[values["stage"]]
    cached = not values["no_cache"] and any(STAGE_MODE[stage] == "autosam" for stage in stages)
    if values["click_rounds"] is not None and not values["click_training"]:
        raise ValueError("--click_rounds: only with --click_training")
    if values["click_training"] and "prompt" not in stages:
        raise ValueError(f"--click_training trains the prompt stage; --stage {values['stage']} has none")
    augmentation = values["augmentation"]
    if augmentation not in AUGMENTATION_LEVELS:
        raise ValueError(f"--augmentation must be one of {AUGMENTATION_LEVELS}, got {augmentation!r}")
    num_views = chosen("num_views", 8 if cached else None)
    if augmentation == "none":  # every view is the image itself
        num_views = 1 if cached else None
    resolved = {
        "preset": args.preset and preset.name,  # None: a folder of one's own (`folder_preset`)
        "dataset_display_name": None if args.preset else preset.display_name,
        "val_fraction": chosen("val_fraction", recorded_split.get("val_fraction", preset.val_fraction)),
        "val_split_seed": chosen("val_split_seed", recorded_split.get("val_split_seed", DEFAULT_VAL_SPLIT_SEED)),
        "num_views": num_views,
        "cache_dir": chosen("cache_dir", str(Path(values["output_dir"]) / "embedding_cache")),
        "dataloader_num_workers": chosen("dataloader_num_workers", default_num_workers()),
        "prompt_input_size": chosen("prompt_input_size", preset.image_size),
        "canvas_rule": chosen("canvas_rule", None if values["init_from"] else preset.canvas_rule),
        "ema_decay": values["ema_decay"] or None,  # 0: none
        # On, with its rounds (the default's too: the model card shows both), or None (no row of the card).
        "click_training": values["click_training"] or None,
        "click_rounds": (values["click_rounds"] or DEFAULT_CLICK_ROUNDS) if values["click_training"] else None,
        "mixed_precision": mixed_precision,
    }
    volumes = bool(values["data"]) and is_volume_folder(values["data"])
    if volumes:
        fraction = chosen("empty_slice_fraction", DEFAULT_EMPTY_SLICE_FRACTION)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"--empty_slice_fraction must be in [0, 1], got {fraction:g}")
        resolved |= {"empty_slice_fraction": fraction, "context_slices": bool(values["context_slices"])}
        id2label, volume_input = resolve_volume_run(values | resolved)
    else:
        given = [f"--{name}" for name in VOLUME_FLAGS if values[name] not in (None, False)]  # False: a flag not given
        if given:
            raise ValueError(
                f"{', '.join(given)}: only for --data a folder of volumes (a Decathlon / nnU-Net folder with "
                "dataset.json, or volumes/ + labels/)"
            )
        resolved["context_slices"] = None  # no setting of a 2D run (nor a row of its model card)
        id2label, volume_input = resolve_classes(values["class_names"], preset), None
    return TrainingSettings(
        **(values | resolved),
        id2label=id2label,
        stages=stages,
        use_cache=cached,
        volume_input=volume_input,
    )
