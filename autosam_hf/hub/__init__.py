"""The Hugging Face Hub side of AutoSAM: loading a checkpoint with its processor (`loading`), model cards
(`model_card`), publishing a trained folder, full or adapter-size (`publish`), and its command line (`cli`,
`autosam-publish`)."""

from .loading import load_model_and_processor, load_processor
from .model_card import (
    METRIC_NAMES,
    NOT_MEASURED,
    build_model_card,
    metrics_table,
    read_measured_metrics,
    read_template,
)
from .publish import PublishSettings, default_output_dir, publish, upload_hub_folder, write_hub_folder

__all__ = [
    "METRIC_NAMES",
    "NOT_MEASURED",
    "PublishSettings",
    "build_model_card",
    "default_output_dir",
    "load_model_and_processor",
    "load_processor",
    "metrics_table",
    "publish",
    "read_measured_metrics",
    "read_template",
    "upload_hub_folder",
    "write_hub_folder",
]
