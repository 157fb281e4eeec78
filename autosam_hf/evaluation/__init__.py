"""The paper's evaluation (`autosam-eval`): which datasets (`datasets`), the methods as evaluation modes (`modes`),
batches in evaluation order (`batches`), scoring at the original resolution (`scoring`), saved predictions
(`predictions`), the Markdown/JSON report (`report`) and the command line (`cli`)."""

from .datasets import (
    DEFAULT_SPLIT,
    DatasetSpec,
    find_data_dir,
    load_evaluation_dataset,
    parse_dataset_spec,
    resolve_dataset_spec,
    resolve_datasets,
)
from .modes import EVAL_MODES, GT_MASK_LOGIT, GT_PROMPT_MODES, MODE_DISPLAY_NAMES, check_modes
from .report import build_report, format_markdown_report, format_markdown_table, write_report
from .scoring import EvaluationSettings, ModeResult, evaluate_dataset, evaluate_model

__all__ = [
    "DEFAULT_SPLIT",
    "EVAL_MODES",
    "GT_MASK_LOGIT",
    "GT_PROMPT_MODES",
    "MODE_DISPLAY_NAMES",
    "DatasetSpec",
    "EvaluationSettings",
    "ModeResult",
    "build_report",
    "check_modes",
    "evaluate_dataset",
    "evaluate_model",
    "find_data_dir",
    "format_markdown_report",
    "format_markdown_table",
    "load_evaluation_dataset",
    "parse_dataset_spec",
    "resolve_dataset_spec",
    "resolve_datasets",
    "write_report",
]
