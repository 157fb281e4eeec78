"""One training stage under 🤗 Accelerate: g through the frozen SAM (`prompt`), h on frozen g (`surrogate`), or g and
h together without SAM (`standalone`).

`StageTrainer(...).run()` reads as the stage does: set up (accelerator, trainable parts, loaders, optimizer,
schedule), resume from a checkpoint if asked, then per epoch: train, validate on the validation split, keep the
best epoch's weights (with `--ema_decay`, their moving average), checkpoint. It returns the best validation entry
with those weights loaded into the model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..atomic_write import write_atomically
from ..data import EmbeddingCache
from ..data.device_augmentation import DeviceAugmentation, augments_on_device
from ..data.torch_dataset import AutoSamViewDataset, training_loader
from ..metrics import class_metric_key, class_names_of, per_class_dice_iou
from ..model import AutoSamForSegmentation, AutoSamImageProcessor, mask_to_labels
from ..model.image_processing_autosam import canvases_for_mode
from ..postprocessing import model_predictions
from ..runtime import use_fast_memory_format
from .checkpoints import (
    AVERAGE_FILE,
    TRAINABLE_FILE,
    RunState,
    TrainingLog,
    load_trainable_state_dict,
    read_progress,
    trainable_state_dict,
    training_layout,
)
from .clicks import ClickSimulation
from .ema import WeightAverage
from .inputs import training_augmentation
from .options import STAGE_MODE
from .settings import TrainingSettings

logger = logging.getLogger(__name__)


@dataclass
class StageResult:
    """`best`: the best validation entry ({stage, epoch, step, val_dice, val_iou}, multi-class models adding
    val_dice_<class> and val_iou_<class>); `interrupted`: the stage stopped early on purpose (`--stop_after_steps`)
    after writing a checkpoint to resume from."""

    best: dict | None
    interrupted: bool = False
    history: list[dict] = field(default_factory=list)


def model_inputs(batch: dict[str, torch.Tensor], with_labels: bool = True) -> dict[str, torch.Tensor]:
    """The forward arguments in a batch of `AutoSamViewDataset` items: canvases, cached image features, labels."""
    bookkeeping = {"original_size", "index"} | (set() if with_labels else {"labels", "valid_mask"})
    return {name: value for name, value in batch.items() if name not in bookkeeping}


def build_optimizer(name: str, parameters, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam (the paper's; L2 weight decay) or AdamW (decoupled weight decay)."""
    optimizer_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    return optimizer_class(parameters, lr=learning_rate, weight_decay=weight_decay)


class StageTrainer:
    """Trains one stage of `model` (see the module docstring)."""

    def __init__(
        self,
        stage: str,
        settings: TrainingSettings,
        model: AutoSamForSegmentation,
        processor: AutoSamImageProcessor,
        train_dataset: datasets.Dataset,
        val_dataset: datasets.Dataset,
        caches: tuple[EmbeddingCache | None, EmbeddingCache | None],
        checkpoint: Path | None = None,
    ):
        """`checkpoint`: the one to resume from, found before any stage ran (`RunState.find_checkpoints`): a stage
        before this one may since have pruned an explicitly named one away."""
        self.stage, self.settings, self.model, self.processor = stage, settings, model, processor
        self.checkpoint = checkpoint
        self.mode = STAGE_MODE[stage]
        self.val_dataset = val_dataset
        self.run_state = RunState.of(settings)
        self.state_dir = self.run_state.state_dir(stage)
        self.best_file = self.run_state.best_file(stage)
        self.clicks = None  # --click_training's simulated rounds, in the prompt stage
        if settings.click_training and self.mode == "autosam":
            self.clicks = ClickSimulation(settings.click_rounds, settings.seed, processor.sam_canvas_side)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator = Accelerator(
            gradient_accumulation_steps=settings.gradient_accumulation_steps,
            mixed_precision=settings.mixed_precision,
            log_with=settings.report_to,
            project_config=ProjectConfiguration(
                project_dir=str(self.state_dir),
                automatic_checkpoint_naming=True,  # pruned by the stage once a save is complete, not by accelerate
            ),
            # Seeded shuffling: an epoch's data order depends only on (--seed, epoch) (a permutation seeded
            # seed + epoch), so a resumed run sees exactly the batches an uninterrupted one would.
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=settings.seed),
        )
        self.log = TrainingLog(self.run_state.log_path, self.accelerator.is_main_process)
        trained = {
            "prompt_generator": stage in ("prompt", "standalone"),
            "surrogate_decoder": stage in ("surrogate", "standalone"),
        }
        model.set_trainable(**trained)
        use_fast_memory_format(model)
        train_loader, val_loader = self._build_loaders(train_dataset, caches)
        optimizer = build_optimizer(
            settings.optimizer,
            [p for p in model.parameters() if p.requires_grad],
            settings.learning_rate,
            settings.weight_decay,
        )
        processes = self.accelerator.num_processes
        self.steps_per_epoch = math.ceil(
            math.ceil(len(train_loader) / processes) / settings.gradient_accumulation_steps
        )
        self.max_steps = settings.max_train_steps or settings.num_epochs * self.steps_per_epoch
        self.num_epochs = math.ceil(self.max_steps / self.steps_per_epoch)
        # accelerate steps a prepared scheduler once per process at every optimizer step (each process's batches
        # are a slice of one global batch), so the schedule is laid out in process-steps.
        scheduler = get_scheduler(
            settings.lr_scheduler_type,
            optimizer,
            num_warmup_steps=settings.warmup_steps(self.max_steps) * processes,
            num_training_steps=self.max_steps * processes,
        )
        self.prepared_model, self.optimizer, self.train_loader, self.val_loader, self.scheduler = (
            self.accelerator.prepare(model, optimizer, train_loader, val_loader, scheduler)
        )
        trained_parts = [part for part, trains in trained.items() if trains]
        self.average = WeightAverage(model, trained_parts, settings.ema_decay) if settings.ema_decay else None
        self._register_checkpoint_hooks()
        layout = training_layout(settings, stage, train_dataset["id"], processes)
        self.progress = {"stage": stage, "completed_steps": 0, "best": None, "history": [], "layout": layout}

    # ------------------------------------------------------------------------------------------------ setup
    def _build_loaders(self, train_dataset, caches) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
        """Training views (augmented, in the workers or by `self.device_augmentation`; with the SAM embedding of the
        same view when cached) and validation images.

        Only the canvases the stage reads are built: g's prompt canvas always, SAM's only when its encoder runs
        (a SAM stage without cache), never the 1024² canvas when embeddings come from the cache."""
        settings = self.settings
        augmentation = training_augmentation(settings)
        train_cache, val_cache = caches if self.mode == "autosam" else (None, None)

        def canvases(cache) -> tuple[str, ...]:
            return ("prompt",) if cache is not None else canvases_for_mode(self.mode)

        # Batched where the batch arrives (`train_epoch`), or per image in the workers.
        on_device = not augmentation.is_identity and augments_on_device(
            settings.augmentation_device, self.accelerator.device
        )
        self.device_augmentation = DeviceAugmentation(augmentation, self.processor) if on_device else None
        train_views = AutoSamViewDataset(
            train_dataset,
            self.processor,
            augmentation,
            cache=train_cache,
            num_views=settings.num_views,
            canvases=canvases(train_cache),
            augment_on_device=on_device,
        )
        val_views = AutoSamViewDataset(self.val_dataset, self.processor, cache=val_cache, canvases=canvases(val_cache))
        workers = settings.dataloader_num_workers
        train_loader = training_loader(train_views, settings.batch_size_for(self.stage), workers)
        val_loader = torch.utils.data.DataLoader(val_views, batch_size=settings.eval_batch_size, num_workers=workers)
        return train_loader, val_loader

    def _register_checkpoint_hooks(self) -> None:
        """Checkpoints hold g and h only (tens of MB, not the whole model); SAM comes back from --sam."""
        accelerator = self.accelerator

        def save_trainable(models, weights, checkpoint_dir):
            if accelerator.is_main_process:
                state = trainable_state_dict(accelerator.unwrap_model(models[0]))
                save_file(state, Path(checkpoint_dir) / TRAINABLE_FILE)
                if self.average is not None:
                    save_file(self.average.state_dict(), Path(checkpoint_dir) / AVERAGE_FILE)
            weights.clear()

        def load_trainable(models, checkpoint_dir):
            load_trainable_state_dict(accelerator.unwrap_model(models.pop()), Path(checkpoint_dir) / TRAINABLE_FILE)
            if self.average is not None:  # `RunState.check_checkpoints` made sure it has one
                self.average.load_state_dict(load_file(Path(checkpoint_dir) / AVERAGE_FILE))

        accelerator.register_save_state_pre_hook(save_trainable)
        accelerator.register_load_state_pre_hook(load_trainable)

    # ------------------------------------------------------------------------------------------------ resume
    def resume(self) -> None:
        """Continue from this stage's checkpoint, if `--resume_from_checkpoint` found one; in a resumed run without
        one, start over, dropping the stage's old state (`RunState.resume_stage`)."""
        checkpoint = self.checkpoint
        if checkpoint is None and self.settings.resume_from_checkpoint is None:
            return
        if checkpoint is not None:
            layout = self.progress["layout"]
            self.progress = {**read_progress(checkpoint), "layout": layout}  # validated up front (`RunState`)
            self.accelerator.load_state(str(checkpoint))
        # accelerate's automatic checkpoint numbering goes on after the loaded checkpoint.
        next_number = self.run_state.resume_stage(self.stage, checkpoint, self.progress, self.accelerator)
        if checkpoint is not None:
            self.accelerator.project_configuration.iteration = next_number
            self.accelerator.print(
                f"[{self.stage}] resumed from {checkpoint} at step {self.progress['completed_steps']}"
            )

    def _validate_the_epoch_the_checkpoint_ended(self) -> None:
        """A checkpoint taken on an epoch's last step (`--checkpointing_steps N`, `--stop_after_steps`) precedes that
        epoch's validation, and the resumed run starts at the next epoch: validate it now, as an uninterrupted run
        did, so that the best epoch is chosen among the same ones."""
        completed, history = self.progress["completed_steps"], self.progress["history"]
        ends_an_epoch = completed % self.steps_per_epoch == 0 or completed >= self.max_steps
        if completed > 0 and ends_an_epoch and not (history and history[-1]["step"] == completed):
            self.validate_and_keep_best((completed - 1) // self.steps_per_epoch)

    def save_checkpoint(self) -> None:
        """accelerate's state, the best weights so far, then the progress file that marks the checkpoint complete;
        only then are the oldest pruned to `--checkpoints_total_limit`."""
        checkpoint_dir = Path(self.accelerator.save_state())
        self.accelerator.wait_for_everyone()  # every process's part (its random states) is written
        if self.accelerator.is_main_process:
            keep = self.settings.checkpoints_total_limit
            self.run_state.complete_checkpoint(self.stage, checkpoint_dir, self.progress, keep)
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------------------------------------ one epoch
    def train_epoch(self, epoch: int, bar: tqdm, started: float) -> str | None:
        """Train one epoch (or what is left of it after a resume). Returns why the stage stops early, if it does:
        "steps" (max steps reached), "time" (--max_train_minutes spent) or "interrupted" (--stop_after_steps)."""
        settings, accelerator = self.settings, self.accelerator
        self.prepared_model.train()
        use_fast_memory_format(self.model)
        self.train_loader.set_epoch(epoch)
        # accelerate's loader passes the epoch on to the dataset only in a single process (with several it stops at
        # the sampler), and the dataset's epoch picks the augmentation view.
        self.train_loader.dataset.set_epoch(epoch)
        batches = self.train_loader
        completed = self.progress["completed_steps"]
        skip = (completed - epoch * self.steps_per_epoch) * settings.gradient_accumulation_steps
        if skip > 0:
            batches = accelerator.skip_first_batches(self.train_loader, skip)
        window_losses = []  # the micro-batches of one optimizer step (gradient accumulation)
        for batch in batches:
            if self.device_augmentation is not None:  # the views the workers left unaugmented (--augmentation_device)
                batch = self.device_augmentation(batch)
            with accelerator.accumulate(self.prepared_model):
                inputs = model_inputs(batch)
                if self.clicks is not None:  # the rounds before this one, without gradients (training/clicks.py)
                    with accelerator.autocast():
                        inputs |= self.clicks.prompts(self.model, batch, epoch)
                outputs = self.prepared_model(**inputs, mode=self.mode)
                accelerator.backward(outputs.loss)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad()
            window_losses.append(outputs.loss.detach())
            if not accelerator.sync_gradients:
                continue
            if self.average is not None:
                self._update_average()
            completed = self.progress["completed_steps"] = self.progress["completed_steps"] + 1
            loss = accelerator.gather(torch.stack(window_losses).mean()).mean().item()
            window_losses = []
            learning_rate = self.scheduler.get_last_lr()[0]
            self.log.write(
                {"stage": self.stage, "epoch": epoch, "step": completed, "loss": loss, "lr": learning_rate,
                 "seconds": time.monotonic() - started}
            )  # fmt: skip
            accelerator.log({"train/loss": loss, "train/lr": learning_rate}, step=completed)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            interrupted = settings.stop_after_steps is not None and completed >= settings.stop_after_steps
            if interrupted or (
                settings.checkpointing_steps.isdigit() and completed % int(settings.checkpointing_steps) == 0
            ):
                self.save_checkpoint()
            if interrupted:
                return "interrupted"
            if self._out_of_time(started):
                return "time"
            if completed >= self.max_steps:
                return "steps"
        return None

    def _update_average(self) -> None:
        """Fold this step's weights into the average; process 0's averaged BatchNorm statistics are everyone's, as
        the checkpoint holds them."""
        self.average.update(self.model)
        if self.accelerator.num_processes > 1:
            self.average.share_main_process_statistics()

    def _out_of_time(self, started: float) -> bool:
        if self.settings.max_train_minutes is None:
            return False
        # Every process must stop at the same step: any process out of time stops them all.
        spent = time.monotonic() - started > 60 * self.settings.max_train_minutes
        flag = torch.tensor(float(spent), device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum") > 0)

    # ------------------------------------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> tuple[dict[str, float], int]:
        """Mean per-image Dice and IoU on the validation split, scored at each image's original resolution; for
        multi-class models per class (`dice_<class>`, `iou_<class>`), with `dice` and `iou` their macro means. Also
        returns how many images were scored (each once, however many processes)."""
        self.prepared_model.eval()
        use_fast_memory_format(self.model)
        masks = self.val_dataset.select_columns("mask")  # row access would decode the images too
        config = self.model.config
        indices, scores = [], []
        for batch in self.val_loader:
            with self.accelerator.autocast():
                outputs = self.prepared_model(**model_inputs(batch, with_labels=False), mode=self.mode)
            predictions = model_predictions(self.model, self.processor, outputs.logits, batch["original_size"])
            for index, prediction in zip(batch["index"].tolist(), predictions, strict=True):
                target = mask_to_labels(masks[index]["mask"], config.num_labels)
                indices.append(index)
                scores.append(per_class_dice_iou(prediction.class_masks, target))  # (K, 2)
        device = self.accelerator.device
        indices = torch.tensor(indices, dtype=torch.long, device=device)
        scores = torch.tensor(np.array(scores), dtype=torch.float32, device=device).reshape(-1, config.num_classes, 2)
        indices, scores = self.accelerator.gather((indices, scores))
        # With several processes the sharded loader evens out the last batches with the first images again: each
        # image counts once.
        _, first = np.unique(indices.cpu().numpy(), return_index=True)
        scores = scores[torch.as_tensor(first, device=scores.device)]
        per_class = scores.mean(dim=0)  # (K, 2): each class's mean over images
        metrics = {"dice": per_class[:, 0].mean().item(), "iou": per_class[:, 1].mean().item()}
        if config.num_classes > 1:
            for name, (dice, iou) in zip(class_names_of(config.id2label), per_class.tolist(), strict=True):
                metrics[class_metric_key("dice", name)], metrics[class_metric_key("iou", name)] = dice, iou
        return metrics, len(first)

    def validate_and_keep_best(self, epoch: int) -> None:
        """Validate, log, and keep g and h of the best epoch so far (by validation Dice, the macro mean over classes
        for multi-class models) in best.safetensors. With `--ema_decay` the weight average is what is validated and
        kept; the trained weights' own scores are logged beside it (`unaveraged_val_dice`, `unaveraged_val_iou`), to
        show what the average gains."""
        unaveraged = {}
        if self.average is not None:
            current, _ = self.validate()
            unaveraged = {"unaveraged_val_dice": current["dice"], "unaveraged_val_iou": current["iou"]}
        with self.average.applied_to(self.model) if self.average is not None else contextlib.nullcontext():
            self._score_and_keep_best(epoch, unaveraged)

    def _score_and_keep_best(self, epoch: int, unaveraged: dict[str, float]) -> None:
        metrics, images = self.validate()
        entry = {
            "stage": self.stage,
            "epoch": epoch,
            "step": self.progress["completed_steps"],
            "images": images,
            **{f"val_{name}": value for name, value in metrics.items()},
            **unaveraged,
        }
        self.progress["history"].append(entry)
        self.log.write(entry)
        tracked = {"val/dice": metrics["dice"], "val/iou": metrics["iou"]}
        if unaveraged:
            tracked |= {"val/unaveraged_dice": unaveraged["unaveraged_val_dice"]}
        self.accelerator.log(tracked, step=entry["step"])
        self.accelerator.print(
            f"[{self.stage}] epoch {epoch}: val Dice {metrics['dice']:.4f}, IoU {metrics['iou']:.4f}"
        )
        if self.progress["best"] is None or metrics["dice"] > self.progress["best"]["val_dice"]:
            self.progress["best"] = entry
            if self.accelerator.is_main_process:
                state = trainable_state_dict(self.accelerator.unwrap_model(self.prepared_model))
                # Renamed into place, never written in place: checkpoints hold hard links to earlier versions.
                write_atomically(self.best_file, lambda path: save_file(state, path))

    # ------------------------------------------------------------------------------------------------ the stage
    def run(self) -> StageResult:
        """Resume if asked, train epoch by epoch with validation after each, and load the best epoch's weights."""
        self.resume()
        self.accelerator.init_trackers(f"autosam-{self.stage}", config=json.loads(self.settings.to_json()))
        self._validate_the_epoch_the_checkpoint_ended()
        completed = self.progress["completed_steps"]
        bar = tqdm(
            total=self.max_steps,
            initial=completed,
            desc=f"{self.stage} stage",
            disable=not self.accelerator.is_main_process,
        )
        started, stop = time.monotonic(), None
        for epoch in range(completed // self.steps_per_epoch, self.num_epochs):
            if stop is not None or self.progress["completed_steps"] >= self.max_steps:
                break
            stop = self.train_epoch(epoch, bar, started)
            if stop == "interrupted":
                self.accelerator.print(f"[{self.stage}] stopping after step {self.progress['completed_steps']}")
                bar.close()
                return StageResult(best=self.progress["best"], interrupted=True, history=self.progress["history"])
            self.validate_and_keep_best(epoch)
            if self.settings.checkpointing_steps == "epoch":
                self.save_checkpoint()
        bar.close()
        self.accelerator.wait_for_everyone()
        for tracker in self.accelerator.trackers:  # not end_training(): it would tear down the process group mid-run
            tracker.finish()
        load_trainable_state_dict(self.model, self.best_file)  # the selected epoch, not the last one
        return StageResult(best=self.progress["best"], history=self.progress["history"])
