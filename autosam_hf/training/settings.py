"""What one training run does, resolved once: the dataset preset, a recipe, and the command line's overrides.

A *recipe* is a named set of training hyper-parameters:

- `paper`: the AutoSAM paper's training (Shaharabany et al. 2023, Sec. 4): Adam, lr 3e-4, weight decay 1e-5, a
  constant rate, batch 10 (h: 24), 200 epochs, the reference code's augmentation.
- `default`: the paper's optimizer with the augmentation that learned fastest per step in the ablation (README),
  annealed: Adam, lr 3e-4, weight decay 1e-5, a cosine schedule over each stage's steps after a 5% warm-up, batch 8
  (h: 24), 200 epochs, the dataset's random flips only (the reference augmentation's rotations up to ±90°
  with zero fill and always-on colour jitter slowed learning most; AdamW at 1e-3 learned no faster; the cosine
  schedule was no faster over 300 steps and ahead on val at 1,000).

Every field can still be set on its own (`--learning_rate`, `--augmentation`, ...); `resolve_settings` applies,
in order, the preset's dataset facts, the recipe, then each flag that was given.

Classes: binary unless the preset has its own (`monuseg_boundary`: background, interior, boundary) or
`--class_names` names them (background + those, read from label-map masks with values 0..K).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..data import AUGMENTATION_LEVELS, DatasetPreset, get_preset

# `standalone` trains g and h together on h(g(I)) without SAM: a SAM-free segmenter from scratch.
STAGES = {
    "prompt": ("prompt",),
    "surrogate": ("surrogate",),
    "all": ("prompt", "surrogate"),
    "standalone": ("standalone",),
}
STAGE_MODE = {"prompt": "autosam", "surrogate": "surrogate", "standalone": "surrogate"}
OPTIMIZERS = ("adam", "adamw")
# transformers' schedules that need only the warm-up and total steps; the rest need a metric at each step
# (reduce_lr_on_plateau, greedy) or scheduler arguments this script does not take (the min_lr and WSD schedules).
SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt",
)  # fmt: skip
OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW"}  # as people write them
BINARY_ID2LABEL = {0: "background", 1: "foreground"}


@dataclass(frozen=True)
class Recipe:
    """Training hyper-parameters that do not depend on the dataset."""

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


RECIPES = {
    "paper": Recipe(
        optimizer="adam",
        learning_rate=3e-4,
        weight_decay=1e-5,
        lr_scheduler_type="constant",
        warmup_ratio=0.0,
        batch_size=10,
        surrogate_batch_size=24,
        num_epochs=200,
        augmentation="reference",
        ema_decay=None,
    ),
    "default": Recipe(
        optimizer="adam",
        learning_rate=3e-4,
        weight_decay=1e-5,
        lr_scheduler_type="cosine",
        warmup_ratio=0.05,
        batch_size=8,
        surrogate_batch_size=24,
        num_epochs=200,
        augmentation="flips",
        ema_decay=None,
    ),
}


@dataclass(frozen=True)
class TrainingSettings:
    """Everything a run needs, resolved (no None left where a default exists). Saved as `training_settings.json`."""

    # data
    preset: str
    data: str | None
    dataset_name: str | None
    column_mapping: dict | None
    val_fraction: float
    val_split_seed: int  # the held-out part's seed, apart from --seed: every seed of a recipe validates alike
    max_train_samples: int | None
    max_eval_samples: int | None
    id2label: dict[int, str]  # the classes: 0 background, 1..K (binary: 1 foreground)
    boundary_width: int | None  # boundary presets: the ring's width in pixels (None: the preset's)
    augmentation: str
    num_views: int | None  # None: a fresh augmentation view every epoch (stages that read no cache)
    use_cache: bool
    cache_dir: str
    cache_dtype: str
    dataloader_num_workers: int
    # model
    sam: str
    sam_revision: str | None
    backbone: str
    backbone_weights: str | None
    prompt_input_size: int
    canvas_rule: str | None  # None: the --init_from model's own (a new model: the preset's, else the frozen model's)
    init_from: str | None
    class_activation: str | None  # None: softmax for a new model, the --init_from model's own otherwise
    bce_loss_weight: float | None
    dice_loss_weight: float | None
    # training
    stages: tuple[str, ...]
    output_dir: str
    recipe: str
    optimizer: str
    learning_rate: float
    weight_decay: float
    lr_scheduler_type: str
    warmup_ratio: float
    num_warmup_steps: int | None  # None: warmup_ratio of each stage's steps
    ema_decay: float | None  # None: no weight average (`ema.WeightAverage`)
    batch_size: int
    surrogate_batch_size: int
    eval_batch_size: int
    num_epochs: int
    max_train_steps: int | None
    max_train_minutes: float | None
    gradient_accumulation_steps: int
    mixed_precision: str
    seed: int
    checkpointing_steps: str
    checkpoints_total_limit: int
    resume_from_checkpoint: str | None
    stop_after_steps: int | None
    num_overlays: int
    report_to: str | None
    # hub
    push_to_hub: bool
    hub_model_id: str | None
    hub_private: bool

    def __post_init__(self):
        # JSON keys are strings: settings read back from training_settings.json get their integer labels again.
        object.__setattr__(self, "id2label", {int(index): name for index, name in self.id2label.items()})

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def mask_classes(self):
        """What the run's masks become (binary, label maps 0..K, or the preset's derived boundary classes)."""
        return get_preset(self.preset).mask_classes(self.num_labels, self.boundary_width)

    def batch_size_for(self, stage: str) -> int:
        return self.surrogate_batch_size if stage == "surrogate" else self.batch_size

    def warmup_steps(self, total_steps: int) -> int:
        return self.num_warmup_steps if self.num_warmup_steps is not None else round(self.warmup_ratio * total_steps)

    def state_dir(self, stage: str) -> Path:
        """`<output_dir>/training_state/<stage>/`: accelerate checkpoints and the best epoch's g/h weights."""
        return Path(self.output_dir) / "training_state" / stage

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
        "val_split_seed": recorded.get("val_split_seed", recorded.get("seed")),
    }
    return {key: value for key, value in split.items() if value is not None}  # a seed of 0 is a seed


def resolve_settings(args: argparse.Namespace, mixed_precision: str) -> TrainingSettings:
    """Preset facts, then the recipe (or the `--init_from` model's validation split), then every flag that was
    given (None = not given)."""
    preset = get_preset(args.preset)
    recipe = RECIPES[args.recipe]
    recorded_split = recorded_validation_split(args.init_from)

    def chosen(flag: str, default):
        value = getattr(args, flag)
        return default if value is None else value

    stages = STAGES[args.stage]
    cached = not args.no_cache and any(STAGE_MODE[stage] == "autosam" for stage in stages)
    augmentation = chosen("augmentation", recipe.augmentation)
    if augmentation not in AUGMENTATION_LEVELS:
        raise ValueError(f"--augmentation must be one of {AUGMENTATION_LEVELS}, got {augmentation!r}")
    num_views = args.num_views if args.num_views is not None else (8 if cached else None)
    if augmentation == "none":  # every view is the image itself
        num_views = 1 if cached else None
    return TrainingSettings(
        preset=preset.name,
        data=args.data,
        dataset_name=args.dataset_name,
        column_mapping=args.column_mapping,
        val_fraction=chosen("val_fraction", recorded_split.get("val_fraction", preset.val_fraction)),
        val_split_seed=chosen("val_split_seed", recorded_split.get("val_split_seed", DEFAULT_VAL_SPLIT_SEED)),
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
        id2label=resolve_classes(args.class_names, preset),
        boundary_width=args.boundary_width,
        augmentation=augmentation,
        num_views=num_views,
        use_cache=cached,
        cache_dir=args.cache_dir or str(Path(args.output_dir) / "embedding_cache"),
        cache_dtype=args.cache_dtype,
        dataloader_num_workers=chosen("dataloader_num_workers", default_num_workers()),
        sam=args.sam,
        sam_revision=args.sam_revision,
        backbone=args.backbone,
        backbone_weights=args.backbone_weights,
        prompt_input_size=chosen("prompt_input_size", preset.image_size),
        canvas_rule=chosen("canvas_rule", None if args.init_from else preset.canvas_rule),
        init_from=args.init_from,
        class_activation=args.class_activation,
        bce_loss_weight=args.bce_loss_weight,
        dice_loss_weight=args.dice_loss_weight,
        stages=stages,
        output_dir=args.output_dir,
        recipe=args.recipe,
        optimizer=chosen("optimizer", recipe.optimizer),
        learning_rate=chosen("learning_rate", recipe.learning_rate),
        weight_decay=chosen("weight_decay", recipe.weight_decay),
        lr_scheduler_type=chosen("lr_scheduler_type", recipe.lr_scheduler_type),
        warmup_ratio=chosen("warmup_ratio", recipe.warmup_ratio),
        num_warmup_steps=args.num_warmup_steps,
        ema_decay=chosen("ema_decay", recipe.ema_decay) or None,  # 0: none
        batch_size=chosen("per_device_train_batch_size", recipe.batch_size),
        surrogate_batch_size=chosen("surrogate_batch_size", recipe.surrogate_batch_size),
        eval_batch_size=args.per_device_eval_batch_size,
        num_epochs=chosen("num_train_epochs", recipe.num_epochs),
        max_train_steps=args.max_train_steps,
        max_train_minutes=args.max_train_minutes,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        seed=args.seed,
        checkpointing_steps=args.checkpointing_steps,
        checkpoints_total_limit=args.checkpoints_total_limit,
        resume_from_checkpoint=args.resume_from_checkpoint,
        stop_after_steps=args.stop_after_steps,
        num_overlays=args.num_overlays,
        report_to=args.report_to,
        push_to_hub=args.push_to_hub,
        hub_model_id=args.hub_model_id,
        hub_private=args.hub_private,
    )
