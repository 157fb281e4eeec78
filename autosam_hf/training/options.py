"""Every option of `autosam-train`, declared once: a field of `TrainingOptions` whose metadata says how the command
line, a YAML file of option values, a resumed run and a model card see it (the pattern of transformers'
`HfArgumentParser`).

    learning_rate: float | None = option("training", "Default: recipe's.", type=float, card=True)

From the fields derive: the parser (`TrainingArgumentParser`: groups, help, types, choices, defaults, kebab
aliases), the YAML files read as option values (`read_option_values`: recipes, `--config`, a resumed run's
`training_args.yaml`, keyed by flag name), the resolved settings (`settings.TrainingSettings` subclasses
`TrainingOptions`), the checkpoint layout a resume must share (`layout_flags`) and what a model card shows
(`card_settings`).

Metadata of a field (`option`):
- `group`, `help`, `type`, `choices`, `nargs`, `metavar`, `action`, `required`: argparse's.
- `flag`: the command-line name where it differs from the field's (`--per_device_train_batch_size` sets
  `batch_size`); YAML files use the flag's name too.
- `layout`: the checkpoint layout keys the option decides (True: its own name); a resume that changes it is refused.
- `card`: shown on the model card under the setting's name (True: its own; a name: that resolved setting's).
- `carried`: a resumed run takes the option from the run it resumes unless given again (False: this invocation's
  only, such as `--stop_after_steps`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..cli import ATTENTION_KERNEL_HELP, COMPILE_ENCODER_HELP, ArgumentParser, positive_int
from ..data import AUGMENTATION_LEVELS, PRESETS
from ..data.device_augmentation import AUGMENTATION_DEVICES
from ..data.embedding_cache import STORAGE_DTYPES
from ..data.presets import FOLDER_IMAGE_SIZE
from ..model import CANVAS_RULES, CLASS_ACTIVATIONS
from ..model.sam_attention import RELATIVE_POSITION_KERNELS
from ..model.sam_loading import DENSE_PROMPT_SAM_CONFIG_NAME
from ..volumes.intensity import CT_WINDOWS, ct_window_argument
from ..volumes.slice_dataset import DEFAULT_EMPTY_SLICE_FRACTION
from .clicks import DEFAULT_CLICK_ROUNDS

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
RECIPE_DIR = Path(__file__).with_name("recipes")
RECIPE_NAMES = tuple(sorted(path.stem for path in RECIPE_DIR.glob("*.yaml")))
# The layout keys of the training rows (their count and ids), which the data flags decide together.
TRAIN_DATA = ("train_examples", "train_ids_sha256")
ARGS_FILE = "training_args.yaml"  # a run's options, in its output folder: what a resume reads back


def option(
    group: str,
    help: str | None = None,
    *,
    default: Any = None,
    flag: str | None = None,
    type: Callable[[str], Any] | None = None,
    choices: Sequence[str] | None = None,
    nargs: str | None = None,
    metavar: str | None = None,
    action: str | None = None,
    required: bool = False,
    layout: bool | str | tuple[str, ...] = False,
    card: bool | str = False,
    carried: bool = True,
):
    """A `TrainingOptions` field (module docstring). `default` is argparse's: None means "not given" (the recipe's,
    the preset's or a computed value then)."""
    metadata = {
        "group": group, "help": help, "flag": flag, "type": type, "choices": choices, "nargs": nargs,
        "metavar": metavar, "action": action, "required": required, "layout": layout, "card": card,
        "carried": carried,
    }  # fmt: skip
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TrainingOptions:
    """`autosam-train`'s options, in `--help`'s order: what one run was asked to do, before the preset, the recipe
    and the machine fill in what was not given (`settings.resolve_settings`)."""

    # data
    preset: str | None = option(
        "data",
        f"Dataset preset ({', '.join(PRESETS)}): the paper's datasets' folder layout, g's input size and reference "
        "augmentation. Without it, --data is a folder of one's own: DIR/{train,val,test}/{images,masks} or a flat "
        f"DIR/{{images,masks}}, g's input {FOLDER_IMAGE_SIZE}, the frozen model's canvas rule, flips.",
    )
    data: str | None = option(
        "data",
        "Root folder of the dataset (e.g. ../shared/data/kvasir, or without --preset a folder of images/ + masks/, "
        "or of CT/MRI volumes: a Decathlon / nnU-Net folder or volumes/ + labels/, trained slice by slice).",
        layout=TRAIN_DATA,
    )
    dataset_name: str | None = option(
        "data", "A Hub dataset id, read with datasets.load_dataset instead of --data.", layout=TRAIN_DATA
    )
    column_mapping: dict | None = option(
        "data", 'JSON mapping for --dataset_name, e.g. \'{"image": "img"}\'.', type=json.loads
    )
    class_names: list[str] | None = option(
        "data",
        "Classes besides the background, e.g. 'tumour stroma': masks are label maps (one PNG per image, 0 "
        "background, k = the k-th name). Volumes: those classes of dataset.json's labels (the others are "
        "background; default: all of them). Default: the preset's classes (monuseg_boundary: interior, boundary), "
        "else binary (masks 0/255 or 0/1).",
        nargs="+",
        metavar="NAME",
    )
    boundary_width: int | None = option(
        "data",
        "Presets with derived boundary classes (monuseg_boundary): the boundary ring's width in pixels at the "
        "original resolution (default: the preset's, 2).",
        type=positive_int,
    )
    val_fraction: float | None = option(
        "data", "Part of train held out for validation when no val split.", type=float, layout=TRAIN_DATA
    )
    val_split_seed: int | None = option(
        "data",
        "Seed of that held-out part, apart from --seed (default 42; with --init_from, the split its run used, so "
        "that validation never holds images g trained on).",
        type=int,
        layout=TRAIN_DATA,
    )
    max_train_samples: int | None = option(
        "data", "Only the first N train images (quick runs).", type=positive_int, layout=TRAIN_DATA
    )
    max_eval_samples: int | None = option("data", "Only the first N validation images (quick runs).", type=positive_int)
    augmentation: str | None = option(
        "data",
        "Strength of the dataset's augmentation: reference (the paper's), light, flips, none. Default: recipe's.",
        choices=AUGMENTATION_LEVELS,
        layout=True,
        card=True,
    )
    num_views: int | None = option(
        "data",
        "K augmented views per image, epoch e trains on view e mod K. Default: 8 when SAM's embeddings are cached "
        "(each view is encoded once), else a fresh view every epoch.",
        type=positive_int,
        layout=True,
        card=True,
    )
    no_cache: bool = option(
        "data", "Run SAM's encoder every step (slow; reference).", default=False, action="store_true"
    )
    cache_dir: str | None = option("data", "Embedding cache folder (default <output_dir>/embedding_cache).")
    cache_dtype: str = option(
        "data",
        "Storage of cached SAM embeddings: float16 (half the disk; its effect is measured in the README) or float32 "
        "(exact).",
        default="float16",
        choices=sorted(STORAGE_DTYPES),
    )
    dataloader_num_workers: int | None = option(
        "data", "Default: half the cores (up to 8), 0 on 2-core machines.", type=int
    )
    augmentation_device: str = option(
        "data",
        "Where the training views are augmented: cpu (per image in the data-loader workers, at its original size), "
        "accelerator (batched on the training device once the workers made the unaugmented canvases: the same "
        "draws, resampled once on the canvas) or auto (accelerator when training on a GPU or other accelerator, "
        "else cpu). An embedding cache is built from the cpu views either way.",
        default="auto",
        choices=AUGMENTATION_DEVICES,
    )
    # volumes: --data a Decathlon / nnU-Net folder (dataset.json, imagesTr/, labelsTr/) or volumes/ + labels/
    ct_window: str | None = option(
        "volumes",
        f"CT window of the slices: a name ({', '.join(CT_WINDOWS)}) or LOW,HIGH in HU (e.g. -160,240). Default: "
        "for CT (dataset.json's channel 0 named CT) nnU-Net's clipping range, the 0.5th..99.5th percentiles of the "
        "trained classes' voxels in the training volumes; otherwise (MRI) each volume's 0.5th..99.5th percentiles.",
        type=ct_window_argument,
        metavar="WINDOW",
        layout=True,
        card=True,
    )
    slice_axis: int | None = option(
        "volumes",
        "Voxel axis (i, j, k) the volumes are sliced along. Default: each volume's coarsest-spaced (axial for a "
        "typical CT).",
        type=int,
        choices=(0, 1, 2),
        layout=True,
        card=True,
    )
    context_slices: bool = option(
        "volumes",
        "2.5D: slices z-1, z, z+1 as the three channels of each slice's image.",
        default=False,
        action="store_true",
        layout=True,
        card=True,
    )
    empty_slice_fraction: float | None = option(
        "volumes",
        f"Part of the slices without any trained class kept, seeded (default {DEFAULT_EMPTY_SLICE_FRACTION}; every "
        "slice with a class is kept).",
        type=float,
        layout=TRAIN_DATA,
        card=True,
    )
    # model
    sam: str = option(
        "model",
        "SAM: Hub id, transformers folder or segment-anything .pth. --stage standalone reads only its config (the "
        f"dense-prompt shape), and where even that cannot be had, {DENSE_PROMPT_SAM_CONFIG_NAME} (256x64x64, SAM "
        "ViT-B/L/H's).",
        default="facebook/sam-vit-base",
    )
    sam_revision: str | None = option("model")
    backbone: str = option("model", "g's encoder: hardnet85 or a timm model name.", default="hardnet85")
    backbone_weights: str | None = option(
        "model",
        "ImageNet weights for g's encoder: hardnet85.pth; for a timm encoder 'timm' (timm fetches them) or a "
        "checkpoint file of the whole timm model.",
    )
    prompt_input_size: int | None = option(
        "model",
        f"g's input size (default: the preset's; without one {FOLDER_IMAGE_SIZE}, the polyp presets' and g's "
        "HarDNet-MSEG encoder's own, a multiple of 32 between GlaS's 256 and MoNuSeg's 512).",
        type=positive_int,
    )
    canvas_rule: str | None = option(
        "model",
        "How images become canvases, in training and in the saved processor: letterbox (longest edge, zero padding) "
        "or squash (both edges). Default: the preset's (squash for the polyp sets, whose training images come "
        "squashed to 352x352), else the frozen model's own (letterbox for SAM); --init_from: the model's own.",
        choices=CANVAS_RULES,
    )
    init_from: str | None = option("model", "A trained AutoSAM folder to start from (e.g. --stage surrogate on its g).")
    class_activation: str | None = option(
        "model",
        "Several classes: softmax (mutually exclusive, the default for a new model) or sigmoid (independent, may "
        "overlap). Default for --init_from: the model's own.",
        choices=CLASS_ACTIVATIONS,
    )
    bce_loss_weight: float | None = option(
        "model", "Weight of the BCE (softmax classes: cross-entropy) term (default 1).", type=float
    )
    dice_loss_weight: float | None = option(
        "model", "Weight of the soft-Dice term of the loss (default 1).", type=float
    )
    # training
    stage: str = option(
        "training",
        "prompt: g through frozen SAM; surrogate: h on frozen g; all: both; standalone: g and h together, no SAM (a "
        "SAM-free segmenter from scratch).",
        default="all",
        choices=sorted(STAGES),
        card="stages",
    )
    output_dir: str = option("training", "Where the trained model, results and pictures go.", required=True)
    recipe: str = option(
        "training",
        "Named hyper-parameters: default (fast learning, see README) or paper (the paper's exact settings).",
        default="default",
        choices=RECIPE_NAMES,
        card=True,
    )
    optimizer: str | None = option("training", "Default: recipe's.", choices=OPTIMIZERS, card=True)
    learning_rate: float | None = option("training", "Default: recipe's.", type=float, card=True)
    weight_decay: float | None = option("training", "Default: recipe's.", type=float, card=True)
    lr_scheduler_type: str | None = option("training", "Default: recipe's.", choices=SCHEDULERS, card=True)
    warmup_ratio: float | None = option(
        "training", "Warm-up as a share of each stage's steps (recipe's).", type=float, card=True
    )
    num_warmup_steps: int | None = option("training", "Warm-up steps (overrides --warmup_ratio).", type=int, card=True)
    ema_decay: float | None = option(
        "training",
        "Validate and keep an exponential moving average of the trained weights with this decay (e.g. 0.999; warmed "
        "up: min(decay, (1 + n) / (10 + n)) after n steps); validation then also scores the trained weights "
        "themselves, twice the validation time. 0 turns it off. Default: recipe's (none).",
        type=float,
        layout=True,  # the average's state is in the checkpoint only when it was on
        card=True,
    )
    click_training: bool = option(
        "training",
        "Prompt stage: simulate corrective clicks as interactive segmentation trains (RITM, SAM): each image takes "
        "0..--click_rounds rounds (drawn per seed, image and epoch), each a click at the centre of the largest error "
        "region of the current prediction, earlier rounds without gradients; the loss is that of the last round, "
        "decoded with g's prompt and all the clicks. g learns a prompt that clicks can correct (autosam-eval --mode "
        "autosam_clicks); costs a no-gradient g pass and a decoder pass per round (docs/training.md).",
        default=False,
        action="store_true",
        layout=True,
        card=True,
    )
    click_rounds: int | None = option(
        "training",
        f"--click_training: the most simulated clicks per image and step (default {DEFAULT_CLICK_ROUNDS}, RITM's).",
        type=positive_int,
        layout=True,
        card=True,
    )
    batch_size: int | None = option(
        "training", "Default: recipe's.", flag="per_device_train_batch_size", type=positive_int, layout=True, card=True
    )
    surrogate_batch_size: int | None = option(
        "training",
        "Batch of the surrogate stage. Default: recipe's.",
        type=positive_int,
        layout="batch_size",
        card=True,
    )
    eval_batch_size: int = option("training", flag="per_device_eval_batch_size", default=8, type=positive_int)
    num_epochs: int | None = option(
        "training", "Default: recipe's (200).", flag="num_train_epochs", type=positive_int, card=True
    )
    max_train_steps: int | None = option("training", "Overrides epochs, per stage.", type=positive_int, card=True)
    max_train_minutes: float | None = option(
        "training", "Wall-clock budget per stage; the best validated epoch is kept.", type=float, card=True
    )
    gradient_accumulation_steps: int = option("training", default=1, type=positive_int, layout=True, card=True)
    mixed_precision: str | None = option(
        "training",
        "Default: `accelerate launch`'s bf16 or fp16 if it was given one, else auto = the fastest native precision "
        "(bf16 on GPUs that have it and on CPUs with AMX or AVX-512-BF16, fp16 on other GPUs and MPS, no on other "
        "CPUs). accelerate passes 'no' when nothing was chosen (a config file's 'no' too), so to force fp32 pass "
        "--mixed_precision no here. An emulated choice warns once.",
        choices=("auto", "no", "fp16", "bf16"),
        card=True,
    )
    attention_kernel: str = option(
        "training", ATTENTION_KERNEL_HELP + ".", default="dense", choices=RELATIVE_POSITION_KERNELS
    )
    compile_encoder: bool = option("training", COMPILE_ENCODER_HELP + ".", default=False, action="store_true")
    seed: int = option("training", default=42, type=int, layout=True, card=True)
    checkpointing_steps: str = option("training", "'epoch' or a number of steps.", default="epoch")
    checkpoints_total_limit: int = option(
        "training",
        "Checkpoints kept per stage; the oldest goes once a new one is complete (one more on disk meanwhile).",
        default=2,
        type=positive_int,
    )
    resume_from_checkpoint: str | None = option("training", "A checkpoint folder or 'latest'.", carried=False)
    stop_after_steps: int | None = option(
        "training",
        "Checkpoint and stop after this many steps of a stage, as if interrupted.",
        type=positive_int,
        carried=False,
    )
    num_overlays: int = option("training", "Validation overlays drawn at the end.", default=4, type=int)
    report_to: str | None = option("training", "Trackers for accelerate (tensorboard, wandb, all).")
    # hub
    push_to_hub: bool = option("hub", default=False, action="store_true")
    hub_model_id: str | None = option("hub")
    hub_private: bool = option("hub", default=False, action="store_true")
    dataset_display_name: str | None = option(
        "hub", "Without --preset: the data's name on the model card and in results (default: --data's folder name)."
    )
    dataset_license: str | None = option(
        "hub", "Without --preset: the data's licence or terms, for the model card (default: 'not stated')."
    )
    dataset_citation: str | None = option("hub", "Without --preset: the data's BibTeX, for the model card.")


def options() -> tuple:
    """`TrainingOptions`' fields (dataclasses.Field), in `--help`'s order."""
    return fields(TrainingOptions)


def flag_of(option_field) -> str:
    """The command-line (and YAML) name of an option: `batch_size` → `per_device_train_batch_size`."""
    return option_field.metadata["flag"] or option_field.name


def layout_flags() -> dict[str, str]:
    """Layout key → the flags that decide it ("--per_device_train_batch_size / --surrogate_batch_size"), from the
    options marked `layout`; `checkpoints.LAYOUT_FLAGS` adds what no option sets."""
    flags: dict[str, list[str]] = {}
    for option_field in options():
        keys = option_field.metadata["layout"]
        keys = (option_field.name,) if keys is True else (keys,) if isinstance(keys, str) else keys or ()
        for key in keys:
            flags.setdefault(key, []).append(f"--{flag_of(option_field)}")
    return {key: " / ".join(names) for key, names in flags.items()}


def card_settings() -> tuple[str, ...]:
    """The resolved settings a model card shows, from the options marked `card`."""
    names = []
    for option_field in options():
        card = option_field.metadata["card"]
        if card:
            names.append(option_field.name if card is True else card)
    return tuple(names)


def _add_option(group: argparse._ArgumentGroup, option_field) -> None:
    meta, flag = option_field.metadata, flag_of(option_field)
    kwargs = {"dest": option_field.name, "default": option_field.default, "help": meta["help"]}
    if meta["action"]:
        kwargs["action"] = meta["action"]
    else:
        kwargs["metavar"] = meta["metavar"] or (flag.upper() if flag != option_field.name else None)
        for name in ("type", "choices", "nargs"):
            if meta[name] is not None:
                kwargs[name] = meta[name]
    if meta["required"]:
        kwargs["required"] = True
    group.add_argument(f"--{flag}", **{key: value for key, value in kwargs.items() if value is not None})


class TrainingArgumentParser(ArgumentParser):
    """`autosam-train`'s parser: the `TrainingOptions` fields, and `--config FILE`, whose values stand in for flags
    not given. A `--resume_from_checkpoint` run reads its `--output_dir`'s `training_args.yaml` the same way, below
    `--config`: explicit flags > `--config` > the resumed run's options > the recipe > the preset."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_argument(
            "--config",
            metavar="FILE",
            help="A YAML file of option values (flag names without the dashes, e.g. 'learning_rate: 1e-3'); flags "
            "given on the command line win.",
        )
        groups = {}
        for option_field in options():
            name = option_field.metadata["group"]
            if name not in groups:
                groups[name] = self.add_argument_group(name)
            _add_option(groups[name], option_field)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        args = list(sys.argv[1:] if args is None else args)
        early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        for name in ("config", "output_dir", "resume_from_checkpoint"):
            early.add_argument(*dict.fromkeys((f"--{name}", f"--{name.replace('_', '-')}")))
        known, _ = early.parse_known_args(args)
        values = {}
        saved = Path(known.output_dir) / ARGS_FILE if known.output_dir else None
        try:
            if known.resume_from_checkpoint is not None and saved is not None and saved.is_file():
                values.update(read_option_values(saved, carried_only=True))
            if known.config is not None:
                values.update(read_option_values(known.config))
        except (ValueError, OSError) as error:
            self.fail(error)
        # Values already in the namespace are kept by argparse; options they give are no longer required.
        namespace = namespace or argparse.Namespace()
        for name, value in values.items():
            if value is not None and not hasattr(namespace, name):
                setattr(namespace, name, value)
        relaxed = [a for a in self._actions if a.required and getattr(namespace, a.dest, None) is not None]
        for action in relaxed:
            action.required = False
        try:
            return super().parse_known_args(args, namespace)
        finally:
            for action in relaxed:
                action.required = True


def _convert(option_field, value: Any) -> Any:
    """A YAML value of an option, as the command line would have given it; ValueError says what is wrong."""
    meta = option_field.metadata
    if value is None:
        return None
    if meta["action"] == "store_true":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if meta["nargs"]:
        if not isinstance(value, list) or not value or any(isinstance(item, (dict, list)) for item in value):
            raise ValueError(f"expected a list of values, got {value!r}")
        return [str(item) for item in value]
    if meta["type"] is json.loads and isinstance(value, dict):
        return value
    if isinstance(value, (dict, list, bool)):
        raise ValueError(f"expected a single value, got {value!r}")
    convert = meta["type"] or str
    try:
        converted = convert(str(value))
    except (ValueError, TypeError, argparse.ArgumentTypeError) as error:
        raise ValueError(f"invalid value {value!r} ({error})") from None
    if meta["choices"] is not None and converted not in meta["choices"]:
        raise ValueError(f"invalid choice {converted!r} (choose from {', '.join(map(str, meta['choices']))})")
    return converted


def read_option_values(path: str | Path, carried_only: bool = False) -> dict[str, Any]:
    """{field name: value} of a YAML file of option values keyed by flag name (a recipe, `--config`, a run's
    `training_args.yaml`), each checked as the command line checks it. `carried_only`: leave out the options a
    resumed run does not take over (`--resume_from_checkpoint`, `--stop_after_steps`).

    Raises:
        ValueError: not YAML, not a mapping, an unknown key or a bad value (naming the file and the key).
        OSError: the file cannot be read.
    """
    try:
        content = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not a YAML file ({error})") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected option names and values (e.g. 'learning_rate: 1e-3')")
    by_flag = {flag_of(option_field): option_field for option_field in options()}
    values = {}
    for key, value in content.items():
        if key not in by_flag:
            raise ValueError(f"{path}: unknown option {key!r} (the names are autosam-train's flags without the dashes)")
        option_field = by_flag[key]
        try:
            values[option_field.name] = _convert(option_field, value)
        except ValueError as error:
            raise ValueError(f"{path}: {key}: {error}") from None
        if carried_only and not option_field.metadata["carried"]:
            del values[option_field.name]
    return values


def option_values(options_or_args) -> dict[str, Any]:
    """{flag: value} of the options given (a value other than the field's default), for `training_args.yaml`."""
    values = {}
    for option_field in options():
        value = getattr(options_or_args, option_field.name)
        if value is not None and value != option_field.default and option_field.metadata["carried"]:
            values[flag_of(option_field)] = list(value) if isinstance(value, tuple) else value
    return values
