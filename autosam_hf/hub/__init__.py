"""Publishing AutoSAM checkpoints to the Hugging Face Hub (model cards, full and adapter-size folders, upload) and
loading them back."""

from .loading import load_model_and_processor, load_processor
from .model_card import (
    METRIC_NAMES,
    NOT_MEASURED,
    available_card_datasets,
    build_model_card,
    load_card_facts,
    metrics_table,
    read_measured_metrics,
)
from .publish import default_output_dir, publish, write_hub_folder

__all__ = [
    "METRIC_NAMES",
    "NOT_MEASURED",
    "available_card_datasets",
    "build_model_card",
    "default_output_dir",
    "load_card_facts",
    "load_model_and_processor",
    "load_processor",
    "metrics_table",
    "publish",
    "read_measured_metrics",
    "write_hub_folder",
]
