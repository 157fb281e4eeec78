"""Training checkpoints hold what training changes, g and h, never SAM (frozen, and reloaded from `--sam`).

<output_dir>/training_state/<stage>/checkpoints/checkpoint_<n>/   accelerate state + trainable.safetensors
                                                                  + ema.safetensors (the weight average, --ema_decay)
                                                                  + best.safetensors (the best weights so far)
                                                                  + progress.json (stage, steps, best, history),
                                                                    written last: a checkpoint without it is
                                                                    incomplete (a save cut short)
<output_dir>/training_state/<stage>/best.safetensors              g and h of the best validated epoch (its average)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file

from ..atomic_write import write_atomically
from ..model import AutoSamForSegmentation

if TYPE_CHECKING:
    from .settings import TrainingSettings

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
# starts at the wrong epoch and offset with the schedule at another point (`training_layout`).
LAYOUT_FLAGS = {
    "num_processes": "accelerate launch --num_processes",
    "batch_size": "--per_device_train_batch_size / --surrogate_batch_size",
    "gradient_accumulation_steps": "--gradient_accumulation_steps",
    "train_examples": "--data / --dataset_name / --max_train_samples / --val_fraction / --val_split_seed",
    "train_ids_sha256": "--data / --dataset_name / --max_train_samples / --val_fraction / --val_split_seed",
    "seed": "--seed",
    "augmentation": "--augmentation",
    "num_views": "--num_views",
    "ema_decay": "--ema_decay",  # the average's state is in the checkpoint only when it was on
}


def training_layout(settings: TrainingSettings, stage: str, train_ids: Sequence[str], num_processes: int) -> dict:
    """A stage's `LAYOUT_FLAGS` values, recorded in every checkpoint's progress (`train_ids`: the training rows' ids,
    in order)."""
    return {
        "num_processes": num_processes,
        "batch_size": settings.batch_size_for(stage),
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "train_examples": len(train_ids),
        "train_ids_sha256": hashlib.sha256("\n".join(map(str, train_ids)).encode()).hexdigest()[:16],
        "seed": settings.seed,
        "augmentation": settings.augmentation,
        "num_views": settings.num_views,
        "ema_decay": settings.ema_decay,
    }


def check_layout(path: Path, layout: dict) -> None:
    """Refuse to resume a checkpoint written with another `training_layout` (checkpoints from before it was
    recorded pass)."""
    saved = read_progress(path).get("layout")
    if saved is None:
        return
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
