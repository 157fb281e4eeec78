"""The pieces of `autosam-train` (the command itself is `training/cli.py`): its options, declared once
(`options.py`), resolved settings and recipes, the data and model a run reads, one stage under accelerate, a run's
state (checkpoints of g and h, the log, resuming), and the files a run leaves."""

from .checkpoints import (
    RunState,
    find_checkpoint,
    load_trainable_state_dict,
    trainable_state_dict,
    validate_checkpoint,
)
from .options import STAGE_MODE, STAGES, TrainingOptions
from .settings import RECIPES, Recipe, TrainingSettings, resolve_settings
from .stage import StageResult, StageTrainer

__all__ = [
    "RECIPES",
    "STAGES",
    "STAGE_MODE",
    "Recipe",
    "RunState",
    "StageResult",
    "StageTrainer",
    "TrainingOptions",
    "TrainingSettings",
    "find_checkpoint",
    "load_trainable_state_dict",
    "resolve_settings",
    "trainable_state_dict",
    "validate_checkpoint",
]
