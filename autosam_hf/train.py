"""Train AutoSAM with 🤗 Accelerate.

Stage `prompt` trains the prompt generator g through the frozen SAM; stage `surrogate` then trains the surrogate
decoder h on g(I) with g frozen; `all` runs both, in order. The best epoch of each stage is chosen on a validation
split (the dataset's own, or a seeded part of train) — never on test — and the output folder holds a model ready
for `AutoSamForSegmentation.from_pretrained` and the Hub.

    accelerate launch -m autosam_hf.train \\
        --sam facebook/sam-vit-base --preset kvasir --data ../shared/data/kvasir --output_dir runs/kvasir
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import SchedulerType, get_scheduler

from .atomic_write import write_atomically
from .data import (
    EmbeddingCache,
    JointAugmentation,
    get_preset,
    load_hub_dataset,
    load_preset_dataset,
    train_val_split,
)
from .data.torch_dataset import AutoSamViewDataset
from .metrics import dice_iou_per_image
from .model import AutoSamForSegmentation, AutoSamImageProcessor, binarize_mask
from .runtime import resolve_device, resolve_mixed_precision
from .visualization import plot_training_curves, save_overlay_grid

logger = logging.getLogger("autosam_hf.train")

# `standalone` trains g and h together on h(g(I)) without SAM: a SAM-free segmenter from scratch.
STAGES = {
    "prompt": ("prompt",),
    "surrogate": ("surrogate",),
    "all": ("prompt", "surrogate"),
    "standalone": ("standalone",),
}
STAGE_MODE = {"prompt": "autosam", "surrogate": "surrogate", "standalone": "surrogate"}
TRAINABLE_FILE = "trainable.safetensors"
PROGRESS_FILE = "progress.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train AutoSAM (frozen SAM + prompt generator, then surrogate h).")
    data = parser.add_argument_group("data")
    data.add_argument(
        "--preset",
        required=True,
        help="Dataset preset: kvasir, clinicdb, colondb, etis, cvc300, "
        "glas, monuseg, sunseg_easy, sunseg_hard. Sets the layout, g's input size, the augmentation "
        "and the paper's hyper-parameters.",
    )
    data.add_argument("--data", help="Root folder of the dataset (e.g. ../shared/data/kvasir).")
    data.add_argument("--dataset_name", help="A Hub dataset id, read with datasets.load_dataset instead of --data.")
    data.add_argument(
        "--column_mapping",
        type=json.loads,
        default=None,
        help='JSON mapping for --dataset_name, e.g. \'{"image": "img", "mask": "label"}\'.',
    )
    data.add_argument(
        "--val_fraction",
        type=float,
        default=None,
        help="Part of train held out for validation when the dataset has no val split.",
    )
    data.add_argument("--max_train_samples", type=int, default=None, help="Truncate train (quick runs).")
    data.add_argument("--max_eval_samples", type=int, default=None, help="Truncate validation (quick runs).")
    data.add_argument(
        "--num_views",
        type=int,
        default=8,
        help="Augmented views cached per training image; epoch e trains on view e mod K.",
    )
    data.add_argument(
        "--no_cache", action="store_true", help="Recompute SAM's encoder every step (the reference behaviour; slow)."
    )
    data.add_argument(
        "--cache_dir", default=None, help="Embedding cache folder (default <output_dir>/embedding_cache)."
    )
    data.add_argument("--dataloader_num_workers", type=int, default=0)

    model = parser.add_argument_group("model")
    model.add_argument(
        "--sam",
        default="facebook/sam-vit-base",
        help="SAM weights: Hub id, transformers folder, or original segment-anything .pth.",
    )
    model.add_argument("--sam_revision", default=None)
    model.add_argument("--backbone", default="hardnet85", help="g's encoder: hardnet85 or a timm model name.")
    model.add_argument(
        "--backbone_weights",
        default=None,
        help="ImageNet weights for g's encoder: path to hardnet85.pth, or 'timm' to let timm fetch them.",
    )
    model.add_argument("--prompt_input_size", type=int, default=None, help="g's input size (default: preset's).")
    model.add_argument(
        "--init_from",
        default=None,
        help="A trained AutoSAM folder to start from (e.g. to run only --stage surrogate on its g).",
    )

    training = parser.add_argument_group("training")
    training.add_argument(
        "--stage",
        choices=sorted(STAGES),
        default="all",
        help="prompt: g through frozen SAM; surrogate: h on frozen g; all: both; "
        "standalone: g and h together, no SAM (a SAM-free segmenter from scratch).",
    )
    training.add_argument("--output_dir", required=True)
    training.add_argument("--per_device_train_batch_size", type=int, default=None, help="Default: preset (10).")
    training.add_argument("--surrogate_batch_size", type=int, default=None, help="Default: preset (24).")
    training.add_argument("--per_device_eval_batch_size", type=int, default=8)
    training.add_argument("--learning_rate", type=float, default=None, help="Default: preset (3e-4, Adam).")
    training.add_argument("--weight_decay", type=float, default=None, help="Default: preset (1e-5).")
    training.add_argument("--num_train_epochs", type=int, default=None, help="Default: preset (200).")
    training.add_argument("--max_train_steps", type=int, default=None, help="Overrides epochs, per stage.")
    training.add_argument(
        "--max_train_minutes",
        type=float,
        default=None,
        help="Wall-clock budget per stage: stop, validate and keep the best epoch when spent.",
    )
    training.add_argument(
        "--lr_scheduler_type",
        type=SchedulerType,
        default="constant",
        choices=list(SchedulerType),
        help="The paper uses a constant rate.",
    )
    training.add_argument("--num_warmup_steps", type=int, default=0)
    training.add_argument("--gradient_accumulation_steps", type=int, default=1)
    training.add_argument(
        "--mixed_precision",
        choices=["auto", "no", "fp16", "bf16"],
        default=None,
        help="Default: `accelerate launch`'s setting if it made one, else auto = the fastest native precision "
        "(bf16 on recent GPUs and on CPUs with AMX or AVX-512-BF16, else no). An emulated choice warns once.",
    )
    training.add_argument("--seed", type=int, default=42)
    training.add_argument("--checkpointing_steps", default="epoch", help="'epoch' or a number of steps.")
    training.add_argument("--checkpoints_total_limit", type=int, default=2)
    training.add_argument("--resume_from_checkpoint", default=None, help="A checkpoint folder or 'latest'.")
    training.add_argument(
        "--stop_after_steps",
        type=int,
        default=None,
        help="Checkpoint and exit after this many steps of a stage, as if interrupted (resume tests).",
    )
    training.add_argument("--num_overlays", type=int, default=4, help="Validation overlays drawn at the end.")
    training.add_argument("--report_to", default=None, help="Trackers for accelerate (tensorboard, wandb, all).")

    hub = parser.add_argument_group("hub")
    hub.add_argument("--push_to_hub", action="store_true")
    hub.add_argument("--hub_model_id", default=None)
    hub.add_argument("--hub_private", action="store_true")

    args = parser.parse_args(argv)
    if args.checkpointing_steps != "epoch" and not args.checkpointing_steps.isdigit():
        parser.error(f"--checkpointing_steps must be 'epoch' or a number, got {args.checkpointing_steps!r}")
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id")
    if (args.data is None) == (args.dataset_name is None):
        parser.error("give exactly one of --data (a folder) and --dataset_name (a Hub dataset)")
    if args.num_views < 1:
        parser.error("--num_views must be >= 1")
    return args


# ------------------------------------------------------------------------------------------------ data
def load_train_val(args: argparse.Namespace, preset) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Train and validation splits. Test splits are never read here."""
    if args.dataset_name:
        train = load_hub_dataset(args.dataset_name, split="train", column_mapping=args.column_mapping)
        try:
            val = load_hub_dataset(args.dataset_name, split="validation", column_mapping=args.column_mapping)
        except ValueError:
            val = None
    else:
        if not Path(args.data).is_dir():
            raise FileNotFoundError(f"--data {args.data}: no such folder")
        train = load_preset_dataset(preset.name, "train", args.data)
        val = load_preset_dataset(preset.name, "val", args.data) if preset.has_val_split else None
    if val is None:
        fraction = args.val_fraction if args.val_fraction is not None else preset.training.val_fraction
        split = train_val_split(train, val_fraction=fraction, seed=args.seed)
        train, val = split["train"], split["val"]
    if args.max_train_samples:
        train = train.select(range(min(args.max_train_samples, len(train))))
    if args.max_eval_samples:
        val = val.select(range(min(args.max_eval_samples, len(val))))
    return train, val


# ------------------------------------------------------------------------------------------------ model
def build_model(args: argparse.Namespace, preset) -> AutoSamForSegmentation:
    if args.init_from:
        return AutoSamForSegmentation.from_pretrained(args.init_from)
    backbone_weights = True if args.backbone_weights == "timm" else args.backbone_weights
    return AutoSamForSegmentation.from_sam(
        args.sam,
        revision=args.sam_revision,
        backbone=args.backbone,
        backbone_weights=backbone_weights,
        prompt_input_size=args.prompt_input_size or preset.image_size,
    )


def trainable_state_dict(model: AutoSamForSegmentation) -> dict[str, torch.Tensor]:
    """g and h: what training changes. SAM is frozen and comes from --sam, so checkpoints leave it out."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith("sam.")}


def load_trainable_state_dict(model: AutoSamForSegmentation, path: Path) -> None:
    state_dict = load_file(path)
    result = model.load_state_dict(state_dict, strict=False)
    missing = [key for key in result.missing_keys if not key.startswith("sam.")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{path} does not fit this model (missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}): "
            "was it written with another --backbone / --prompt_input_size / SAM size?"
        )


# ------------------------------------------------------------------------------------------------ checkpoints
def state_dir(args: argparse.Namespace, stage: str) -> Path:
    """<output_dir>/training_state/<stage>/: accelerate checkpoints (in checkpoints/) and the best epoch's g/h."""
    return Path(args.output_dir) / "training_state" / stage


def find_checkpoint(checkpoints_dir: Path, resume_from: str | None, stage: str) -> Path | None:
    """The checkpoint to resume `stage` from: with 'latest', the newest in `checkpoints_dir`; with a path, that
    checkpoint if it belongs to `stage` (its progress file says which)."""
    if resume_from is None:
        return None
    if resume_from != "latest":
        path = Path(resume_from)
        if not (path / PROGRESS_FILE).is_file():
            raise ValueError(
                f"--resume_from_checkpoint {path}: not a checkpoint folder of this script (no {PROGRESS_FILE})"
            )
        return path if json.loads((path / PROGRESS_FILE).read_text()).get("stage") == stage else None
    candidates = [p for p in checkpoints_dir.glob("checkpoint_*") if (p / PROGRESS_FILE).is_file()]
    return max(candidates, key=lambda p: int(p.name.split("_")[-1]), default=None)


def validate_checkpoint(path: Path, model: AutoSamForSegmentation) -> dict:
    """Fail before training if a checkpoint (of the right stage, see `find_checkpoint`) cannot continue this run."""
    progress = json.loads((path / PROGRESS_FILE).read_text())
    weights = path / TRAINABLE_FILE
    if not weights.is_file():
        raise ValueError(f"{path}: missing {TRAINABLE_FILE}")
    expected = trainable_state_dict(model)
    saved = load_file(weights)
    mismatched = [k for k in expected if k not in saved or saved[k].shape != expected[k].shape]
    if mismatched or set(saved) - set(expected):
        raise ValueError(f"{path} was written for a different model (e.g. {(mismatched or list(saved))[:3]})")
    return progress


# ------------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate(accelerator, model, loader, val_dataset, processor, mode: str) -> dict[str, float]:
    """Mean per-image Dice and IoU on the validation split, scored at each image's original resolution."""
    model.eval()
    masks = val_dataset.select_columns("mask")  # row access would decode the images too
    scores = []
    for batch in loader:
        with accelerator.autocast():
            outputs = model(
                pixel_values=batch["pixel_values"], image_embeddings=batch.get("image_embeddings"), mode=mode
            )
        logits = processor.post_process_logits(outputs.logits, batch["original_size"])
        for index, mask_logits in zip(batch["index"].tolist(), logits, strict=True):
            target = binarize_mask(masks[index]["mask"])
            dice, iou = dice_iou_per_image((mask_logits > 0).cpu().numpy(), target)
            scores.append([dice, iou])
    scores = accelerator.gather_for_metrics(torch.tensor(scores, device=accelerator.device).reshape(-1, 2))
    return {"dice": scores[:, 0].mean().item(), "iou": scores[:, 1].mean().item()}


# ------------------------------------------------------------------------------------------------ one stage
def train_stage(stage, args, preset, model, processor, train_dataset, val_dataset, caches, log_path) -> dict:
    """Train g (`prompt`) or h (`surrogate`); return the best validation metrics, with the best weights loaded."""
    stage_dir = state_dir(args, stage)
    stage_dir.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(stage_dir), automatic_checkpoint_naming=True, total_limit=args.checkpoints_total_limit
        ),
        # Seeded shuffling: the data order of an epoch depends only on (seed, epoch), so a resumed run sees
        # exactly the batches an uninterrupted one would.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    mode = STAGE_MODE[stage]
    model.set_trainable(
        prompt_generator=stage in ("prompt", "standalone"), surrogate_decoder=stage in ("surrogate", "standalone")
    )
    training = preset.training
    batch_size = (
        args.surrogate_batch_size or training.surrogate_batch_size
        if stage == "surrogate"
        else args.per_device_train_batch_size or training.batch_size
    )
    augmentation = JointAugmentation(preset.augmentation, seed=args.seed)
    train_cache, val_cache = caches if mode == "autosam" else (None, None)
    train_loader = torch.utils.data.DataLoader(
        AutoSamViewDataset(train_dataset, processor, augmentation, cache=train_cache),
        batch_size=batch_size,
        shuffle=True,
        num_workers=args.dataloader_num_workers,
    )
    val_loader = torch.utils.data.DataLoader(
        AutoSamViewDataset(val_dataset, processor, cache=val_cache),
        batch_size=args.per_device_eval_batch_size,
        num_workers=args.dataloader_num_workers,
    )
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad],
        lr=args.learning_rate or training.learning_rate,
        weight_decay=training.weight_decay if args.weight_decay is None else args.weight_decay,
    )
    num_epochs = args.num_train_epochs or training.num_epochs
    steps_per_epoch = math.ceil(
        math.ceil(len(train_loader) / accelerator.num_processes) / args.gradient_accumulation_steps
    )
    max_steps = args.max_train_steps or num_epochs * steps_per_epoch
    num_epochs = math.ceil(max_steps / steps_per_epoch)
    scheduler = get_scheduler(
        args.lr_scheduler_type, optimizer, num_warmup_steps=args.num_warmup_steps, num_training_steps=max_steps
    )
    prepared_model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler
    )

    # Checkpoints hold g and h only (SAM is frozen and reloaded from --sam): tens of MB, not the whole model.
    def save_trainable_hook(models, weights, checkpoint_dir):
        if accelerator.is_main_process:
            save_file(trainable_state_dict(accelerator.unwrap_model(models[0])), Path(checkpoint_dir) / TRAINABLE_FILE)
        weights.clear()

    def load_trainable_hook(models, checkpoint_dir):
        load_trainable_state_dict(accelerator.unwrap_model(models.pop()), Path(checkpoint_dir) / TRAINABLE_FILE)

    accelerator.register_save_state_pre_hook(save_trainable_hook)
    accelerator.register_load_state_pre_hook(load_trainable_hook)

    progress = {"stage": stage, "completed_steps": 0, "best": None, "history": []}
    checkpoint = find_checkpoint(stage_dir / "checkpoints", args.resume_from_checkpoint, stage)
    if checkpoint is not None:
        progress = validate_checkpoint(checkpoint, model)
        accelerator.load_state(str(checkpoint))
        # Continue the automatic checkpoint numbering after the loaded one.
        accelerator.project_configuration.iteration = int(checkpoint.name.split("_")[-1]) + 1
        accelerator.print(f"[{stage}] resumed from {checkpoint} at step {progress['completed_steps']}")
    best_weights = stage_dir / "best.safetensors"

    def save_checkpoint() -> None:
        checkpoint_dir = Path(accelerator.save_state())
        if accelerator.is_main_process:
            write_atomically(checkpoint_dir / PROGRESS_FILE, lambda p: p.write_text(json.dumps(progress, indent=2)))
        accelerator.wait_for_everyone()

    completed_steps = progress["completed_steps"]
    starting_epoch = completed_steps // steps_per_epoch
    resume_batches = (completed_steps % steps_per_epoch) * args.gradient_accumulation_steps
    accelerator.init_trackers(f"autosam-{stage}", config={k: str(v) for k, v in vars(args).items()})
    bar = tqdm(total=max_steps, initial=completed_steps, desc=f"{stage} stage", disable=not accelerator.is_main_process)
    started, out_of_time = time.monotonic(), False
    for epoch in range(starting_epoch, num_epochs):
        if completed_steps >= max_steps or out_of_time:
            break
        prepared_model.train()
        train_loader.set_epoch(epoch)
        batches = train_loader
        if epoch == starting_epoch and resume_batches:
            batches = accelerator.skip_first_batches(train_loader, resume_batches)
        for batch in batches:
            with accelerator.accumulate(prepared_model):
                outputs = prepared_model(
                    pixel_values=batch["pixel_values"],
                    image_embeddings=batch.get("image_embeddings"),
                    labels=batch["labels"],
                    valid_mask=batch["valid_mask"],
                    mode=mode,
                )
                accelerator.backward(outputs.loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            completed_steps += 1
            progress["completed_steps"] = completed_steps
            loss = accelerator.gather(outputs.loss.detach()).mean().item()
            record = {
                "stage": stage,
                "epoch": epoch,
                "step": completed_steps,
                "loss": loss,
                "lr": scheduler.get_last_lr()[0],
                "seconds": time.monotonic() - started,
            }
            accelerator.log({"train/loss": loss, "train/lr": record["lr"]}, step=completed_steps)
            if accelerator.is_main_process:
                with open(log_path, "a") as log_file:
                    log_file.write(json.dumps(record) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            interrupted = args.stop_after_steps is not None and completed_steps >= args.stop_after_steps
            if (args.checkpointing_steps.isdigit() and completed_steps % int(args.checkpointing_steps) == 0) or (
                interrupted
            ):
                save_checkpoint()
            if interrupted:
                accelerator.print(f"[{stage}] stopping after step {completed_steps} (--stop_after_steps)")
                accelerator.end_training()
                sys.exit(0)
            if args.max_train_minutes is not None:  # every process must stop at the same step
                spent = torch.tensor(
                    time.monotonic() - started > 60 * args.max_train_minutes, device=accelerator.device
                )
                out_of_time = bool(accelerator.reduce(spent.float(), reduction="sum") > 0)
            if completed_steps >= max_steps or out_of_time:
                break

        metrics = evaluate(accelerator, prepared_model, val_loader, val_dataset, processor, mode)
        entry = {"stage": stage, "epoch": epoch, "step": completed_steps, **{f"val_{k}": v for k, v in metrics.items()}}
        progress["history"].append(entry)
        accelerator.log({"val/dice": metrics["dice"], "val/iou": metrics["iou"]}, step=completed_steps)
        accelerator.print(f"[{stage}] epoch {epoch}: val Dice {metrics['dice']:.4f}, IoU {metrics['iou']:.4f}")
        if accelerator.is_main_process:
            with open(log_path, "a") as log_file:
                log_file.write(json.dumps(entry) + "\n")
        if progress["best"] is None or metrics["dice"] > progress["best"]["val_dice"]:
            progress["best"] = entry
            if accelerator.is_main_process:
                state = trainable_state_dict(accelerator.unwrap_model(prepared_model))
                write_atomically(best_weights, lambda p, state=state: save_file(state, p))
        if args.checkpointing_steps == "epoch":
            save_checkpoint()
    bar.close()
    accelerator.wait_for_everyone()
    for tracker in accelerator.trackers:  # not end_training(): it would tear down the process group mid-run
        tracker.finish()
    load_trainable_state_dict(model, best_weights)  # the selected epoch, not the last one
    return progress


# ------------------------------------------------------------------------------------------------ outputs
def save_model(model, processor, output_dir: Path) -> None:
    """save_pretrained into a temporary folder, then move each file into `output_dir`: never half-written."""
    staging = output_dir / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    for path in staging.iterdir():
        os.replace(path, output_dir / path.name)
    staging.rmdir()


def draw_overlays(model, processor, val_dataset, output_dir: Path, count: int, mode: str) -> None:
    rows = [val_dataset[i] for i in range(min(count, len(val_dataset)))]
    if not rows:
        return
    images = [row["image"].convert("RGB") for row in rows]
    model.eval()
    with torch.no_grad():
        inputs = processor(images=images, return_tensors="pt")
        outputs = model(pixel_values=inputs["pixel_values"].to(model.device), mode=mode)
    predictions = [
        (m > 0).cpu().numpy() for m in processor.post_process_logits(outputs.logits, inputs["original_sizes"])
    ]
    targets = [binarize_mask(row["mask"]) for row in rows]
    save_overlay_grid(images, targets, predictions, output_dir / f"validation_overlays_{mode}.png")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    # Everything that can be wrong with the arguments fails here, before any training.
    requested_precision = args.mixed_precision or os.environ.get("ACCELERATE_MIXED_PRECISION")
    # The device accelerate will pick, read without creating its state yet (that must wait for the Accelerator).
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    args.mixed_precision = resolve_mixed_precision(requested_precision, resolve_device("cpu" if use_cpu else "auto"))
    preset = get_preset(args.preset)
    set_seed(args.seed)
    train_dataset, val_dataset = load_train_val(args, preset)
    model = build_model(args, preset)
    stages = STAGES[args.stage]
    # Without SAM, g is all that reads the image: process it at g's input size rather than SAM's 1024 canvas.
    canvas = model.config.prompt_input_size if stages == ("standalone",) else None
    processor = AutoSamImageProcessor.from_sam_config(model.config.sam_config, image_size=canvas)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if "surrogate" in stages and model.surrogate_decoder is None:
        raise ValueError("--stage surrogate needs a model with a surrogate decoder")
    # An unusable checkpoint must fail now, not after the embedding cache is built.
    checkpoints = [find_checkpoint(state_dir(args, s) / "checkpoints", args.resume_from_checkpoint, s) for s in stages]
    for checkpoint in filter(None, checkpoints):
        validate_checkpoint(checkpoint, model)
    if args.resume_from_checkpoint not in (None, "latest") and not any(checkpoints):
        raise ValueError(
            f"--resume_from_checkpoint {args.resume_from_checkpoint} is not a checkpoint of --stage {args.stage}"
        )
    log_path = output_dir / "train_log.jsonl"
    if args.resume_from_checkpoint is None and log_path.exists():
        log_path.unlink()  # a fresh run: old curves would be misleading

    results = {
        "preset": preset.name,
        "sam": args.sam,
        "train_examples": len(train_dataset),
        "validation_examples": len(val_dataset),
        "stages": {},
    }
    for stage in stages:
        caches = (None, None)
        if STAGE_MODE[stage] == "autosam" and not args.no_cache:
            cache_started = time.monotonic()
            caches = build_caches(args, preset, model, processor, train_dataset, val_dataset)
            results["embedding_cache_seconds"] = time.monotonic() - cache_started
        progress = train_stage(stage, args, preset, model, processor, train_dataset, val_dataset, caches, log_path)
        results["stages"][stage] = progress["best"]

    state = PartialState()
    if state.is_main_process:
        # {"validation": {<preset>: {"dice", "iou"}}} (the schema model cards read): AutoSAM's best when the prompt
        # stage ran, else the last stage's; "validation_surrogate": h(g(I))'s best when a surrogate stage ran.
        best = results["stages"]
        main_stage = "prompt" if "prompt" in best else stages[-1]
        results["validation"] = {
            preset.name: {"dice": best[main_stage]["val_dice"], "iou": best[main_stage]["val_iou"]}
        }
        if STAGE_MODE[stages[-1]] == "surrogate":
            last = best[stages[-1]]
            results["validation_surrogate"] = {preset.name: {"dice": last["val_dice"], "iou": last["val_iou"]}}
        model.config.default_mode = "surrogate" if stages == ("standalone",) else "autosam"
        save_model(model, processor, output_dir)
        write_atomically(output_dir / "all_results.json", lambda p: p.write_text(json.dumps(results, indent=2)))
        plot_training_curves(log_path, output_dir / "training_curves.png")
        for stage in stages:
            draw_overlays(model, processor, val_dataset, output_dir, args.num_overlays, STAGE_MODE[stage])
        logger.info("saved %s (validation: %s)", output_dir, results["validation"])
        if args.push_to_hub:
            from .hub import publish

            publish(output_dir, dataset=preset.name, repo_id=args.hub_model_id, private=args.hub_private)
    state.wait_for_everyone()
    state.destroy_process_group()


def build_caches(args, preset, model, processor, train_dataset, val_dataset) -> tuple[EmbeddingCache, EmbeddingCache]:
    """SAM embeddings of every training view and of the validation images, computed once (sharded across
    processes) and read back memory-mapped every epoch."""
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    model.to(accelerator.device)
    # Embeddings computed in reduced precision differ from fp32 ones: keep them apart.
    cache_dir = (
        Path(args.cache_dir or Path(args.output_dir) / "embedding_cache") / f"precision-{accelerator.mixed_precision}"
    )
    augmentation = JointAugmentation(preset.augmentation, seed=args.seed)
    with accelerator.autocast():
        train_cache = EmbeddingCache.build(
            train_dataset,
            model,
            processor,
            cache_dir,
            augmentation=augmentation,
            num_views=args.num_views,
            batch_size=args.per_device_eval_batch_size,
            accelerator=accelerator,
        )
        val_cache = EmbeddingCache.build(
            val_dataset,
            model,
            processor,
            cache_dir,
            batch_size=args.per_device_eval_batch_size,
            accelerator=accelerator,
        )
    return train_cache, val_cache


if __name__ == "__main__":
    main()
