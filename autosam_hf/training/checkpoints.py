"""Training checkpoints hold what training changes, g and h, never SAM (frozen, and reloaded from `--sam`).

<output_dir>/training_state/<stage>/checkpoints/checkpoint_<n>/   accelerate state + trainable.safetensors
                                                                  + ema.safetensors (the weight average, --ema_decay)
                                                                  + best.safetensors (the best weights so far)
                                                                  + progress.json (stage, steps, best, history),
                                                                    written last: a checkpoint without it is
                                                                    incomplete (a save cut short)
<output_dir>/training_state/<stage>/best.safetensors              g and h of the best validated epoch (its average)
<output_dir>/train_log.jsonl                                      loss per step, validation per epoch
<output_dir>/training_args.yaml                                   the run's options, read back by a resume

`RunState` owns all of it: which checkpoints a resume continues from and whether they can, clearing a previous
run's state for a fresh one, and per stage what a resume drops of the run it replaces, and each save's completion.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from safetensors.torch import load_file

from ..atomic_write import write_atomically
from ..model import AutoSamForSegmentation
from .options import ARGS_FILE, STAGE_MODE, layout_flags

if TYPE_CHECKING:
    from accelerate import PartialState

    from .settings import TrainingSettings

logger = logging.getLogger(__name__)

TRAINABLE_FILE = "trainable.safetensors"
AVERAGE_FILE = "ema.safetensors"  # the weight average's state (`--ema_decay`)
PROGRESS_FILE = "progress.json"
BEST_FILE = "best.safetensors"


def trainable_state_dict(model: AutoSamForSegmentation) -> dict[str, torch.Tensor]:
    """g and h: what training changes. SAM is frozen and comes from --sam, so checkpoints leave it out."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith("sam.")}


def load_trainable_state_dict(model: AutoSamForSegmentation, path: Path) -> None:
    """Load g and h from `path` into `model`, which must have exactly those parameters."""
    result = model.load_state_dict(load_file(path), strict=False)
    missing = [key for key in result.missing_keys if not key.startswith("sam.")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{path} does not fit this model (missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}): "
            "was it written with another --backbone / --prompt_input_size / SAM size?"
        )


def read_progress(checkpoint: Path) -> dict:
    return json.loads((checkpoint / PROGRESS_FILE).read_text())


def is_numbered_checkpoint(path: Path) -> bool:
    """Named by accelerate's automatic numbering, `checkpoint_<n>` (a copy such as `checkpoint_3 copy` is not)."""
    return re.fullmatch(r"checkpoint_\d+", path.name) is not None


def checkpoint_number(checkpoint: Path) -> int:
    """accelerate's automatic numbering: `checkpoint_<n>` → n."""
    return int(checkpoint.name.removeprefix("checkpoint_"))


def numbered_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """accelerate's `checkpoint_<n>` folders, complete or not."""
    return [path for path in checkpoints_dir.glob("checkpoint_*") if is_numbered_checkpoint(path)]


def complete_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """The numbered checkpoints whose save finished (their progress file, written last, is there), oldest first."""
    numbered = [path for path in numbered_checkpoints(checkpoints_dir) if (path / PROGRESS_FILE).is_file()]
    return sorted(numbered, key=checkpoint_number)


def checkpoints_after(checkpoints_dir: Path, number: int) -> list[Path]:
    """The checkpoint folders numbered above `number`, complete or not."""
    return sorted(p for p in numbered_checkpoints(checkpoints_dir) if checkpoint_number(p) > number)


def prune_checkpoints(checkpoints_dir: Path, keep: int) -> list[Path]:
    """Keep the newest `keep` complete checkpoints; remove the older ones and any incomplete one before the newest
    complete one. Returns what was removed. (accelerate's own `total_limit` deletes before it saves: a save cut short
    with a limit of 1 would leave nothing to resume.)"""
    kept = complete_checkpoints(checkpoints_dir)[-keep:]
    if not kept:
        return []
    numbered = numbered_checkpoints(checkpoints_dir)
    removed = [path for path in numbered if path not in kept and checkpoint_number(path) < checkpoint_number(kept[-1])]
    for path in removed:
        shutil.rmtree(path)
    return removed


def keep_best_weights(best_file: Path, checkpoint_dir: Path) -> None:
    """Put the best weights so far into a checkpoint, for a resume to restore: a hard link where the file system
    allows (no space: `best_file` is only ever replaced by a rename, never written in place, so the link keeps this
    version), else a copy."""
    if not best_file.is_file():
        raise FileNotFoundError(f"{best_file}: the best weights so far are missing (removed by hand?)")
    kept = checkpoint_dir / BEST_FILE
    kept.unlink(missing_ok=True)
    try:
        os.link(best_file, kept)
    except OSError:  # no hard links here (another file system, some network shares)
        shutil.copyfile(best_file, kept)


def restore_best_weights(checkpoint_dir: Path, best_file: Path) -> bool:
    """Make the checkpoint's best weights the stage's best again (the run a resume replaces may have written later
    ones). False for a checkpoint that holds none (saved before any validation, or by an older version)."""
    kept = checkpoint_dir / BEST_FILE
    if not kept.is_file():
        return False
    if not (best_file.is_file() and os.path.samefile(kept, best_file)):  # still linked: nothing to restore
        write_atomically(best_file, lambda path: shutil.copyfile(kept, path))
    return True


def find_checkpoint(checkpoints_dir: Path, resume_from: str | None, stage: str) -> Path | None:
    """The checkpoint to resume `stage` from: with 'latest', the newest in `checkpoints_dir`; with a path, that
    checkpoint if it belongs to `stage` (its progress file says which)."""
    if resume_from is None:
        return None
    if resume_from != "latest":
        path = Path(resume_from).resolve()  # `.` names the folder too
        if not (path / PROGRESS_FILE).is_file():
            raise ValueError(
                f"--resume_from_checkpoint {path}: not a checkpoint folder of this script (no {PROGRESS_FILE})"
            )
        if not is_numbered_checkpoint(path):  # its number orders it among the stage's checkpoints
            raise ValueError(
                f"--resume_from_checkpoint {path}: a checkpoint folder keeps the name it was saved with, checkpoint_<n>"
            )
        return path if read_progress(path).get("stage") == stage else None
    complete = complete_checkpoints(checkpoints_dir)
    return complete[-1] if complete else None


# What decides which batches a stage sees and how its schedule is laid out: a resumed run must share them, or it
# starts at the wrong epoch and offset with the schedule at another point (`training_layout`). The options marked
# `layout` (options.py), and the launch's process count.
LAYOUT_FLAGS = {"num_processes": "accelerate launch --num_processes", **layout_flags()}


def training_layout(settings: TrainingSettings, stage: str, train_ids: Sequence[str], num_processes: int) -> dict:
    """A stage's `LAYOUT_FLAGS` values, recorded in every checkpoint's progress (`train_ids`: the training rows' ids,
    in order)."""
    computed = {
        "num_processes": num_processes,
        "batch_size": settings.batch_size_for(stage),
        "train_examples": len(train_ids),
        "train_ids_sha256": hashlib.sha256("\n".join(map(str, train_ids)).encode()).hexdigest()[:16],
    }
    return {key: computed[key] if key in computed else getattr(settings, key) for key in LAYOUT_FLAGS}


def check_layout(path: Path, layout: dict) -> None:
    """Refuse to resume a checkpoint written with another `training_layout`, or with none recorded."""
    saved = read_progress(path).get("layout")
    if saved is None:
        raise ValueError(
            f"--resume_from_checkpoint {path} records no training layout: it was not written by autosam-train"
        )
    changed = [key for key in LAYOUT_FLAGS if key in saved and saved[key] != layout[key]]  # keys added later pass
    if changed:
        details = "; ".join(f"{key} {saved.get(key)} then, {layout[key]} now ({LAYOUT_FLAGS[key]})" for key in changed)
        raise ValueError(f"--resume_from_checkpoint {path} was written by a run laid out differently: {details}")


def validate_checkpoint(path: Path, model: AutoSamForSegmentation) -> dict:
    """Fail before training if a checkpoint (of the right stage, see `find_checkpoint`) cannot continue this run;
    return its progress."""
    weights = path / TRAINABLE_FILE
    if not weights.is_file():
        raise ValueError(f"{path}: missing {TRAINABLE_FILE}")
    expected = trainable_state_dict(model)
    saved = load_file(weights)
    mismatched = [k for k in expected if k not in saved or saved[k].shape != expected[k].shape]
    mismatched += sorted(set(saved) - set(expected))
    if mismatched:
        raise ValueError(f"{path} was written for a different model (e.g. {mismatched[:3]})")
    return read_progress(path)


class TrainingLog:
    """`train_log.jsonl`: one line per optimizer step and one per validation, written by the main process only."""

    def __init__(self, path: Path, is_main_process: bool):
        self.path, self.is_main_process = path, is_main_process

    def write(self, record: dict) -> None:
        if self.is_main_process:
            with open(self.path, "a") as log_file:
                log_file.write(json.dumps(record) + "\n")


class RunState:
    """A run's state in its output folder (module docstring). Methods that change files take the run's processes
    (an `Accelerator` or `PartialState`): the main process changes them, the others wait for it."""

    def __init__(self, output_dir: str | Path, stages: Sequence[str], resume_from: str | None = None):
        self.output_dir, self.stages, self.resume_from = Path(output_dir), tuple(stages), resume_from
        self.log_path = self.output_dir / "train_log.jsonl"

    @classmethod
    def of(cls, settings: TrainingSettings) -> RunState:
        return cls(settings.output_dir, settings.stages, settings.resume_from_checkpoint)

    def state_dir(self, stage: str) -> Path:
        """`<output_dir>/training_state/<stage>/`: accelerate checkpoints and the best epoch's g/h weights."""
        return self.output_dir / "training_state" / stage

    def checkpoints_dir(self, stage: str) -> Path:
        return self.state_dir(stage) / "checkpoints"

    def best_file(self, stage: str) -> Path:
        return self.state_dir(stage) / BEST_FILE

    # ------------------------------------------------------------------------------------------------ a run's start
    def find_checkpoints(self, init_from: str | None = None) -> list[Path | None]:
        """Each stage's checkpoint to resume from (None: the stage starts fresh), checked against the stages before
        anything is loaded: a checkpoint no stage of the run owns, one of a stage the run reaches only after
        training the stages before it again, or a surrogate stage with neither a checkpoint nor `init_from` (h on
        a random g)."""
        resume, stages = self.resume_from, self.stages
        checkpoints = [find_checkpoint(self.checkpoints_dir(stage), resume, stage) for stage in stages]
        if resume not in (None, "latest") and not any(checkpoints):
            raise ValueError(f"--resume_from_checkpoint {resume} is not a checkpoint of --stage {'/'.join(stages)}")
        if stages == ("surrogate",) and not init_from and not any(checkpoints):
            found_none = "" if resume is None else f" (--resume_from_checkpoint {resume} found no checkpoint)"
            raise ValueError(
                "--stage surrogate trains h on a trained g: give --init_from <a model trained with --stage prompt or "
                "all>" + found_none
            )
        if resume is not None and checkpoints[0] is None and any(checkpoints):
            # The stages before the checkpoint's would train again from scratch, and its g would then replace theirs.
            stage = next(stage for stage, checkpoint in zip(stages, checkpoints, strict=True) if checkpoint)
            joined = "/".join(stages)
            if resume == "latest":
                raise ValueError(
                    f"--resume_from_checkpoint latest found a checkpoint of the {stage} stage but none of the "
                    f"{stages[0]} stage, which --stage {joined} trains first (its g would then be lost to the "
                    f"checkpoint's): run --stage {stage} to resume it, or start afresh without --resume_from_checkpoint"
                )
            raise ValueError(
                f"--resume_from_checkpoint {resume} is a checkpoint of the {stage} stage, which --stage "
                f"{joined} reaches after training the stages before it again: resume with "
                f"--resume_from_checkpoint latest (each stage goes on where it stopped) or run --stage {stage}"
            )
        return checkpoints

    def check_checkpoints(
        self,
        checkpoints: Sequence[Path | None],
        model: AutoSamForSegmentation,
        layouts: Sequence[dict],
        ema_decay: float | None,
    ) -> None:
        """Fail before training if a found checkpoint cannot continue this run: another model, another
        `training_layout` (`layouts`: each stage's now), or no weight average where `ema_decay` needs one."""
        for checkpoint, layout in zip(checkpoints, layouts, strict=True):
            if checkpoint is None:
                continue
            validate_checkpoint(checkpoint, model)
            check_layout(checkpoint, layout)
            if ema_decay and not (checkpoint / AVERAGE_FILE).is_file():  # from before layouts named it
                raise ValueError(f"--resume_from_checkpoint {checkpoint} holds no weight average (--ema_decay)")

    def clear_previous_run(self, processes: PartialState) -> None:
        """A fresh run into a used output folder starts clean: old curves would mislead, and old checkpoints would
        outlive the new ones (numbered from 0 again, and the lowest numbers are pruned first), so
        `--resume_from_checkpoint latest` would later resume the old run (or, for a stage this run skips, a stage
        trained on another g)."""
        if processes.is_main_process:
            self.log_path.unlink(missing_ok=True)
            for stage in STAGE_MODE:  # every stage's: a later `--resume_from_checkpoint latest` must not find old ones
                checkpoints = self.checkpoints_dir(stage)
                if checkpoints.exists():
                    logger.info("fresh run: removing the previous run's checkpoints in %s", checkpoints)
                    shutil.rmtree(checkpoints)
        processes.wait_for_everyone()

    def save_options(self, values: dict[str, Any]) -> None:
        """`training_args.yaml`: the run's options by flag name (`options.option_values`), which a resume reads
        back (`options.TrainingArgumentParser`). Main process only."""
        text = yaml.safe_dump(values, sort_keys=False, allow_unicode=True)
        write_atomically(self.output_dir / ARGS_FILE, lambda path: path.write_text(text))

    # ------------------------------------------------------------------------------------------------ per stage
    def resume_stage(self, stage: str, checkpoint: Path | None, progress: dict, processes: PartialState) -> int:
        """Before `stage` trains on (its state loaded from `checkpoint`, whose `progress` it is) or, with no
        checkpoint, starts over in a resumed run: drop what the run being replaced did after that point (its later
        checkpoints, which the next save would collide with, and its log lines, which the resumed run logs again),
        and make the checkpoint's best weights the stage's again. Returns the number of the stage's next
        checkpoint."""
        number = -1 if checkpoint is None else checkpoint_number(checkpoint)
        if processes.is_main_process:
            if checkpoint is not None and progress["best"] is not None:
                if not restore_best_weights(checkpoint, self.best_file(stage)):
                    logger.warning(
                        "[%s] %s holds no best weights (saved by an older version): %s stays as it is",
                        stage, checkpoint, self.best_file(stage),
                    )  # fmt: skip
            for later in checkpoints_after(self.checkpoints_dir(stage), number):
                logger.info("[%s] removing %s, of the run this one replaces", stage, later)
                shutil.rmtree(later)
            self.rewind_log(stage, progress)
        processes.wait_for_everyone()
        return number + 1

    def rewind_log(self, stage: str, progress: dict) -> None:
        """Drop what the replaced run logged of `stage` after the point it resumes from (`progress`: its
        checkpoint's, or step 0 without one) — steps after it, validations it does not hold. Other stages' lines
        stay: each stage rewinds its own when it resumes."""
        if not self.log_path.exists():
            return
        validated = {entry["step"] for entry in progress["history"]}

        def kept(record: dict) -> bool:
            if record["stage"] != stage:
                return True
            return record["step"] <= progress["completed_steps"] if "loss" in record else record["step"] in validated

        lines = [line for line in self.log_path.read_text().splitlines() if kept(json.loads(line))]
        write_atomically(self.log_path, lambda path: path.write_text("".join(line + "\n" for line in lines)))

    def complete_checkpoint(self, stage: str, checkpoint_dir: Path, progress: dict, keep: int) -> None:
        """Finish a save accelerate wrote: the best weights so far, then the progress file that marks the checkpoint
        complete; only then are the oldest pruned to `keep`. Main process only."""
        if progress["best"] is not None:
            keep_best_weights(self.best_file(stage), checkpoint_dir)
        progress_json = json.dumps(progress, indent=2)
        write_atomically(checkpoint_dir / PROGRESS_FILE, lambda path: path.write_text(progress_json))
        prune_checkpoints(checkpoint_dir.parent, keep)
