"""The pieces of `autosam-train` (the script itself is `autosam_hf/train.py`): resolved settings and recipes, the
data and model a run reads, one stage under accelerate, checkpoints of g and h, and the files a run leaves."""

from .checkpoints import find_checkpoint, load_trainable_state_dict, trainable_state_dict, validate_checkpoint
from .settings import RECIPES, STAGE_MODE, STAGES, Recipe, TrainingSettings, resolve_settings
from .stage import StageResult, StageTrainer

__all__ = [
    "RECIPES",
    "STAGES",
    "STAGE_MODE",
    "Recipe",
    "StageResult",
    "StageTrainer",
    "TrainingSettings",
    "find_checkpoint",
    "load_trainable_state_dict",
    "resolve_settings",
    "trainable_state_dict",
    "validate_checkpoint",
]
