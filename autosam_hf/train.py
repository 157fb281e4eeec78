"""Train AutoSAM with 🤗 Accelerate.

Stage `prompt` trains the prompt generator g through the frozen SAM; stage `surrogate` then trains the surrogate
decoder h on g(I) with g frozen; `all` runs both, in order; `standalone` trains g and h together without SAM. The
best epoch of each stage is chosen on a validation split (the dataset's own, or a seeded part of train) — never on
test — and the output folder holds a model ready for `AutoSamForSegmentation.from_pretrained` and the Hub.

    accelerate launch -m autosam_hf.train \\
        --sam facebook/sam-vit-base --preset kvasir --data ../shared/data/kvasir --output_dir runs/kvasir

Several classes: a preset with its own (`--preset monuseg_boundary`: background, nucleus interior, nucleus
boundary), or `--class_names A B ...` for label-map masks (0 background, k = the k-th name); validation then scores
each class and keeps the epoch of best macro-mean Dice.

The story of a run (`main`): arguments → resolved settings (preset, recipe, overrides) → data → model and
processor → per stage: SAM embedding cache, then `StageTrainer` → saved model, results, curves and overlays.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path

from accelerate import PartialState
from accelerate.utils import set_seed

from .cli import ArgumentParser, add_output_dir_argument, configure_logging, positive_int
from .data import AUGMENTATION_LEVELS, PRESETS
from .data.embedding_cache import STORAGE_DTYPES
from .model import CANVAS_RULES, CLASS_ACTIVATIONS
from .runtime import MIXED_PRECISION_DTYPES, resolve_device, resolve_mixed_precision
from .training.checkpoints import (
    AVERAGE_FILE,
    check_layout,
    find_checkpoint,
    training_layout,
    validate_checkpoint,
)
from .training.inputs import build_caches, build_model, build_processor, load_train_val, run_processes
from .training.outputs import results_summary, write_outputs
from .training.settings import (
    OPTIMIZERS,
    RECIPES,
    SCHEDULERS,
    STAGE_MODE,
    STAGES,
    TrainingSettings,
    resolve_settings,
)
from .training.stage import StageTrainer

logger = logging.getLogger("autosam_hf.train")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="autosam-train", description="Train AutoSAM (frozen SAM + prompt generator g, then surrogate h)."
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--preset",
        required=True,
        help=f"Dataset preset ({', '.join(PRESETS)}): sets the folder layout, g's input size and the dataset's "
        "reference augmentation.",
    )
    data.add_argument("--data", help="Root folder of the dataset (e.g. ../shared/data/kvasir).")
    data.add_argument("--dataset_name", help="A Hub dataset id, read with datasets.load_dataset instead of --data.")
    data.add_argument(
        "--column_mapping", type=json.loads, help='JSON mapping for --dataset_name, e.g. \'{"image": "img"}\'.'
    )
    data.add_argument(
        "--class_names",
        nargs="+",
        metavar="NAME",
        help="Classes besides the background, e.g. 'tumour stroma': masks are label maps (one PNG per image, 0 "
        "background, k = the k-th name). Default: the preset's classes (monuseg_boundary: interior, boundary), else "
        "binary (masks 0/255 or 0/1).",
    )
    data.add_argument(
        "--boundary_width",
        type=positive_int,
        help="Presets with derived boundary classes (monuseg_boundary): the boundary ring's width in pixels at the "
        "original resolution (default: the preset's, 2).",
    )
    data.add_argument("--val_fraction", type=float, help="Part of train held out for validation when no val split.")
    data.add_argument(
        "--val_split_seed",
        type=int,
        help="Seed of that held-out part, apart from --seed (default 42; with --init_from, the split its run used, "
        "so that validation never holds images g trained on).",
    )
    data.add_argument("--max_train_samples", type=positive_int, help="Only the first N train images (quick runs).")
    data.add_argument("--max_eval_samples", type=positive_int, help="Only the first N validation images (quick runs).")
    data.add_argument(
        "--augmentation",
        choices=AUGMENTATION_LEVELS,
        help="Strength of the dataset's augmentation: reference (the paper's), light, flips, none. Default: recipe's.",
    )
    data.add_argument(
        "--num_views",
        type=positive_int,
        help="K augmented views per image, epoch e trains on view e mod K. Default: 8 when SAM's embeddings are "
        "cached (each view is encoded once), else a fresh view every epoch.",
    )
    data.add_argument("--no_cache", action="store_true", help="Run SAM's encoder every step (slow; reference).")
    data.add_argument("--cache_dir", help="Embedding cache folder (default <output_dir>/embedding_cache).")
    data.add_argument(
        "--cache_dtype",
        choices=sorted(STORAGE_DTYPES),
        default="float16",
        help="Storage of cached SAM embeddings: float16 (half the disk; its effect is measured in the README) or "
        "float32 (exact).",
    )
    data.add_argument(
        "--dataloader_num_workers", type=int, help="Default: half the cores (up to 8), 0 on 2-core machines."
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--sam", default="facebook/sam-vit-base", help="SAM: Hub id, transformers folder or segment-anything .pth."
    )
    model.add_argument("--sam_revision")
    model.add_argument("--backbone", default="hardnet85", help="g's encoder: hardnet85 or a timm model name.")
    model.add_argument(
        "--backbone_weights",
        help="ImageNet weights for g's encoder: hardnet85.pth; for a timm encoder 'timm' (timm fetches them) or a "
        "checkpoint file of the whole timm model.",
    )
    model.add_argument("--prompt_input_size", type=positive_int, help="g's input size (default: the preset's).")
    model.add_argument(
        "--canvas_rule",
        choices=CANVAS_RULES,
        help="How images become canvases, in training and in the saved processor: letterbox (longest edge, zero "
        "padding) or squash (both edges). Default: the preset's (squash for the polyp sets, whose training images "
        "come squashed to 352x352), else the frozen model's own (letterbox for SAM); --init_from: the model's own.",
    )
    model.add_argument("--init_from", help="A trained AutoSAM folder to start from (e.g. --stage surrogate on its g).")
    model.add_argument(
        "--class_activation",
        choices=CLASS_ACTIVATIONS,
        help="Several classes: softmax (mutually exclusive, the default for a new model) or sigmoid (independent, "
        "may overlap). Default for --init_from: the model's own.",
    )
    model.add_argument(
        "--bce_loss_weight", type=float, help="Weight of the BCE (softmax classes: cross-entropy) term (default 1)."
    )
    model.add_argument("--dice_loss_weight", type=float, help="Weight of the soft-Dice term of the loss (default 1).")

    training = parser.add_argument_group("training")
    training.add_argument(
        "--stage",
        choices=sorted(STAGES),
        default="all",
        help="prompt: g through frozen SAM; surrogate: h on frozen g; all: both; "
        "standalone: g and h together, no SAM (a SAM-free segmenter from scratch).",
    )
    add_output_dir_argument(training, required=True, help="Where the trained model, results and pictures go.")
    training.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="default",
        help="Named hyper-parameters: default (fast learning, see README) or paper (the paper's exact settings).",
    )
    training.add_argument("--optimizer", choices=OPTIMIZERS, help="Default: recipe's.")
    training.add_argument("--learning_rate", type=float, help="Default: recipe's.")
    training.add_argument("--weight_decay", type=float, help="Default: recipe's.")
    training.add_argument("--lr_scheduler_type", choices=SCHEDULERS, help="Default: recipe's.")
    training.add_argument("--warmup_ratio", type=float, help="Warm-up as a share of each stage's steps (recipe's).")
    training.add_argument("--num_warmup_steps", type=int, help="Warm-up steps (overrides --warmup_ratio).")
    training.add_argument(
        "--ema_decay",
        type=float,
        help="Validate and keep an exponential moving average of the trained weights with this decay (e.g. 0.999; "
        "warmed up: min(decay, (1 + n) / (10 + n)) after n steps); validation then also scores the trained weights "
        "themselves, twice the validation time. 0 turns it off. Default: recipe's (none).",
    )
    training.add_argument("--per_device_train_batch_size", type=positive_int, help="Default: recipe's.")
    training.add_argument(
        "--surrogate_batch_size", type=positive_int, help="Batch of the surrogate stage. Default: recipe's."
    )
    training.add_argument("--per_device_eval_batch_size", type=positive_int, default=8)
    training.add_argument("--num_train_epochs", type=positive_int, help="Default: recipe's (200).")
    training.add_argument("--max_train_steps", type=positive_int, help="Overrides epochs, per stage.")
    training.add_argument(
        "--max_train_minutes", type=float, help="Wall-clock budget per stage; the best validated epoch is kept."
    )
    training.add_argument("--gradient_accumulation_steps", type=positive_int, default=1)
    training.add_argument(
        "--mixed_precision",
        choices=["auto", "no", "fp16", "bf16"],
        help="Default: `accelerate launch`'s bf16 or fp16 if it was given one, else auto = the fastest native "
        "precision (bf16 on GPUs that have it and on CPUs with AMX or AVX-512-BF16, fp16 on other GPUs and MPS, "
        "no on other CPUs). accelerate passes 'no' when nothing was chosen (a config file's 'no' too), so to force "
        "fp32 pass --mixed_precision no here. An emulated choice warns once.",
    )
    training.add_argument("--seed", type=int, default=42)
    training.add_argument("--checkpointing_steps", default="epoch", help="'epoch' or a number of steps.")
    training.add_argument(
        "--checkpoints_total_limit",
        type=positive_int,
        default=2,
        help="Checkpoints kept per stage; the oldest goes once a new one is complete (one more on disk meanwhile).",
    )
    training.add_argument("--resume_from_checkpoint", help="A checkpoint folder or 'latest'.")
    training.add_argument(
        "--stop_after_steps",
        type=positive_int,
        help="Checkpoint and stop after this many steps of a stage, as if interrupted.",
    )
    training.add_argument("--num_overlays", type=int, default=4, help="Validation overlays drawn at the end.")
    training.add_argument("--report_to", help="Trackers for accelerate (tensorboard, wandb, all).")

    hub = parser.add_argument_group("hub")
    hub.add_argument("--push_to_hub", action="store_true")
    hub.add_argument("--hub_model_id")
    hub.add_argument("--hub_private", action="store_true")
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """Argument combinations argparse cannot check; raises ValueError naming the argument."""
    every = args.checkpointing_steps
    if every != "epoch" and not (every.isdigit() and int(every) >= 1):
        raise ValueError(f"--checkpointing_steps must be 'epoch' or a number >= 1, got {args.checkpointing_steps!r}")
    if args.init_from:  # the model comes whole from there: its g's size and weights cannot change
        for flag in ("prompt_input_size", "backbone_weights"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag} does not apply with --init_from (its model keeps its own)")
    if args.ema_decay is not None and not 0.0 <= args.ema_decay < 1.0:
        raise ValueError(f"--ema_decay must be in [0, 1) (0: no average), got {args.ema_decay}")
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id")
    if (args.data is None) == (args.dataset_name is None):
        raise ValueError("give exactly one of --data (a folder) and --dataset_name (a Hub dataset)")


def resolve_precision(requested: str | None) -> str:
    """accelerate's mixed precision: --mixed_precision, else `accelerate launch`'s bf16 or fp16, else the fastest
    native one. `accelerate launch` sets "no" both when asked and when nothing was chosen (its default, and what
    `accelerate config` writes by default), so its "no" cannot mean a choice: fp32 is forced with the script's own
    `--mixed_precision no`.

    The device is read without creating accelerate's state: that must wait for the first Accelerator."""
    launched_with = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if requested is None and launched_with not in (None, "no"):
        if launched_with not in MIXED_PRECISION_DTYPES:
            raise ValueError(
                f"accelerate launch's mixed precision {launched_with!r} is not one autosam-train trains in; launch "
                "with bf16, fp16 or none, or pass --mixed_precision auto|no|bf16|fp16 after the script's name"
            )
        requested = launched_with
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return resolve_mixed_precision(requested, resolve_device("cpu" if use_cpu else "auto"))


def resume_checkpoints(settings: TrainingSettings) -> list[Path | None]:
    """Each stage's checkpoint to resume from (None: the stage starts fresh), checked against the stages before
    anything is loaded: a checkpoint no stage of the run owns, one of a stage the run reaches only after training
    the stages before it again, or a surrogate stage with neither a checkpoint nor `--init_from` (h on a random g)."""
    resume = settings.resume_from_checkpoint
    checkpoints = [find_checkpoint(settings.state_dir(s) / "checkpoints", resume, s) for s in settings.stages]
    if resume not in (None, "latest") and not any(checkpoints):
        raise ValueError(
            f"--resume_from_checkpoint {resume} is not a checkpoint of --stage {'/'.join(settings.stages)}"
        )
    if settings.stages == ("surrogate",) and not settings.init_from and not any(checkpoints):
        found_none = "" if resume is None else f" (--resume_from_checkpoint {resume} found no checkpoint)"
        raise ValueError(
            "--stage surrogate trains h on a trained g: give --init_from <a model trained with --stage prompt or all>"
            + found_none
        )
    if resume is not None and checkpoints[0] is None and any(checkpoints):
        # The stages before the checkpoint's would train again from scratch, and its g would then replace theirs.
        stage = next(stage for stage, checkpoint in zip(settings.stages, checkpoints, strict=True) if checkpoint)
        stages = "/".join(settings.stages)
        if resume == "latest":
            raise ValueError(
                f"--resume_from_checkpoint latest found a checkpoint of the {stage} stage but none of the "
                f"{settings.stages[0]} stage, which --stage {stages} trains first (its g would then be lost to the "
                f"checkpoint's): run --stage {stage} to resume it, or start afresh without --resume_from_checkpoint"
            )
        raise ValueError(
            f"--resume_from_checkpoint {resume} is a checkpoint of the {stage} stage, which --stage "
            f"{stages} reaches after training the stages before it again: resume with "
            f"--resume_from_checkpoint latest (each stage goes on where it stopped) or run --stage {stage}"
        )
    return checkpoints


def clear_previous_run(settings: TrainingSettings) -> None:
    """A fresh run into a used `--output_dir` starts clean: old curves would mislead, and old checkpoints would
    outlive the new ones (numbered from 0 again, and the lowest numbers are pruned first), so
    `--resume_from_checkpoint latest` would later resume the old run (or, for a stage this run skips, a stage trained
    on another g)."""
    state = run_processes(settings)
    if state.is_main_process:
        (Path(settings.output_dir) / "train_log.jsonl").unlink(missing_ok=True)
        for stage in STAGE_MODE:  # every stage's: a later `--resume_from_checkpoint latest` must not find old ones
            checkpoints = settings.state_dir(stage) / "checkpoints"
            if checkpoints.exists():
                logger.info("fresh run: removing the previous run's checkpoints in %s", checkpoints)
                shutil.rmtree(checkpoints)
    state.wait_for_everyone()


def train(settings: TrainingSettings) -> dict | None:
    """Run every stage of `settings`; return all_results (None when `--stop_after_steps` interrupted a stage)."""
    set_seed(settings.seed)
    checkpoints = resume_checkpoints(settings)
    train_dataset, val_dataset = load_train_val(settings)
    model = build_model(settings)
    processor = build_processor(settings, model)
    if "surrogate" in settings.stages and model.surrogate_decoder is None:
        raise ValueError("--stage surrogate needs a model with a surrogate decoder")
    # An unusable checkpoint fails now, before the embedding cache is built.
    num_processes = run_processes(settings).num_processes if any(checkpoints) else 1
    for stage, checkpoint in zip(settings.stages, checkpoints, strict=True):
        if checkpoint is not None:
            validate_checkpoint(checkpoint, model)
            check_layout(checkpoint, training_layout(settings, stage, train_dataset["id"], num_processes))
            if settings.ema_decay and not (checkpoint / AVERAGE_FILE).is_file():  # from before layouts named it
                raise ValueError(f"--resume_from_checkpoint {checkpoint} holds no weight average (--ema_decay)")
    output_dir = Path(settings.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if settings.resume_from_checkpoint is None:
        clear_previous_run(settings)

    best, cache_seconds = {}, None
    for stage, checkpoint in zip(settings.stages, checkpoints, strict=True):
        caches = (None, None)
        if STAGE_MODE[stage] == "autosam" and settings.use_cache:
            started = time.monotonic()
            caches = build_caches(settings, model, processor, train_dataset, val_dataset)
            cache_seconds = time.monotonic() - started
        trainer = StageTrainer(stage, settings, model, processor, train_dataset, val_dataset, caches, checkpoint)
        result = trainer.run()
        if result.interrupted:
            return None
        best[stage] = result.best

    results = results_summary(settings, model, best, len(train_dataset), len(val_dataset))
    if cache_seconds is not None:
        results["embedding_cache_seconds"] = cache_seconds
    state = PartialState()
    if state.is_main_process:
        write_outputs(settings, model, processor, val_dataset, results)
        logger.info("saved %s (validation: %s)", output_dir, results["validation"])
        if settings.push_to_hub:
            from .hub import publish

            # The Hub folder inside output_dir is this run's own: one left by an earlier run there is replaced.
            publish(
                output_dir,
                preset=settings.preset,
                repo_id=settings.hub_model_id,
                private=settings.hub_private,
                overwrite=True,
            )
    state.wait_for_everyone()
    return results


def run(args: argparse.Namespace) -> int:
    configure_logging()
    check_arguments(args)
    settings = resolve_settings(args, resolve_precision(args.mixed_precision))
    try:
        train(settings)
    finally:
        PartialState().destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`autosam-train`: bad arguments or data end with `autosam-train: error: <one line>` and exit status 2."""
    return build_parser().run(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
