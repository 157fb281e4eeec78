"""`autosam-train`: train AutoSAM with 🤗 Accelerate.

Stage `prompt` trains the prompt generator g through the frozen SAM; stage `surrogate` then trains the surrogate
decoder h on g(I) with g frozen; `all` runs both, in order; `standalone` trains g and h together without SAM. The
best epoch of each stage is chosen on a validation split (the dataset's own, or a seeded part of train) — never on
test — and the output folder holds a model ready for `AutoSamForSegmentation.from_pretrained` and the Hub.

    accelerate launch -m autosam_hf.train \\
        --sam facebook/sam-vit-base --preset kvasir --data ../shared/data/kvasir --output_dir runs/kvasir

Several classes: a preset with its own (`--preset monuseg_boundary`: background, nucleus interior, nucleus
boundary), or `--class_names A B ...` for label-map masks (0 background, k = the k-th name); validation then scores
each class and keeps the epoch of best macro-mean Dice. Options may also come from a YAML file (`--config FILE`,
flags win); every option is declared once, in `options.py`.

The story of a run (`main`): arguments → resolved settings (preset, recipe, options given) → the run's state
(checkpoints to resume, or a clean folder) → data → model and processor → per stage: SAM embedding cache, then
`StageTrainer` → saved model, results, curves and overlays.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from accelerate import PartialState
from accelerate.utils import set_seed

from ..cli import configure_logging
from ..runtime import MIXED_PRECISION_DTYPES, resolve_device, resolve_mixed_precision, speed_up_image_encoder
from .checkpoints import RunState, training_layout
from .inputs import build_caches, build_model, build_processor, load_train_val, run_processes
from .options import STAGE_MODE, TrainingArgumentParser, option_values
from .outputs import results_summary, write_outputs
from .settings import TrainingSettings, resolve_settings
from .stage import StageTrainer

logger = logging.getLogger("autosam_hf.train")


def build_parser() -> TrainingArgumentParser:
    """Every `TrainingOptions` field as a flag, and `--config`."""
    return TrainingArgumentParser(
        prog="autosam-train", description="Train AutoSAM (frozen SAM + prompt generator g, then surrogate h)."
    )


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


def train(settings: TrainingSettings, options: dict | None = None) -> dict | None:
    """Run every stage of `settings`; return all_results (None when `--stop_after_steps` interrupted a stage).
    `options`: the run's options by flag name, saved for a resume to read back (`training_args.yaml`)."""
    set_seed(settings.seed)
    run_state = RunState.of(settings)
    checkpoints = run_state.find_checkpoints(settings.init_from)
    train_dataset, val_dataset = load_train_val(settings)
    model = speed_up_image_encoder(build_model(settings), settings.attention_kernel, settings.compile_encoder)
    processor = build_processor(settings, model)
    if "surrogate" in settings.stages and model.surrogate_decoder is None:
        raise ValueError("--stage surrogate needs a model with a surrogate decoder")
    # An unusable checkpoint fails now, before the embedding cache is built.
    num_processes = run_processes(settings).num_processes if any(checkpoints) else 1
    layouts = [training_layout(settings, stage, train_dataset["id"], num_processes) for stage in settings.stages]
    run_state.check_checkpoints(checkpoints, model, layouts, settings.ema_decay)
    output_dir = Path(settings.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    processes = run_processes(settings)
    if settings.resume_from_checkpoint is None:
        run_state.clear_previous_run(processes)
    if options is not None and processes.is_main_process:
        run_state.save_options(options)

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
            from ..hub import publish

            # The Hub folder inside output_dir is this run's own: one left by an earlier run there is replaced.
            publish(
                output_dir,
                preset=settings.dataset_preset(),
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
        train(settings, option_values(args))
    finally:
        PartialState().destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`autosam-train`: bad arguments or data end with `autosam-train: error: <one line>` and exit status 2."""
    return build_parser().run(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
