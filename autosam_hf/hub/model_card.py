"""Model cards for published AutoSAM checkpoints: the facts of the dataset preset (`DatasetPreset.card`, from
`model_cards/datasets/`) rendered into the shared template (`model_cards/template.md`; both shipped in the package as
`autosam_hf.model_cards`), with the metrics actually measured as a table and as model-index metadata
(`huggingface_hub.ModelCardData` / `EvalResult`).

Measured metrics are read from JSON files of this schema (`all_results.json` in a trained folder, or any file given
to `autosam-publish --metrics`, such as `autosam-eval`'s `eval_results.json`); every key is optional:

    {
      "test":       {"<dataset>": {"dice": 0.912, "iou": 0.857, "s_alpha": ..., "mae": ...}, ...},
      "validation": {"<dataset>": {...}, ...},
      "training":   {"learning_rate": 0.0003, "num_epochs": 200, ...}
    }

`<dataset>` is a preset name (`kvasir`, `clinicdb`, `colondb`, `etis`, `cvc300`, `glas`, `monuseg`,
`monuseg_boundary`, `sunseg_easy`, `sunseg_hard`, or any other name); metric names are those of
`autosam_hf.metrics.SegmentationMetrics.compute()`, and for multi-class models those of
`MulticlassSegmentationMetrics.compute()` (macro `dice`/`iou`, `dice_<class>`, `iou_<class>`, ...) and
`InstanceMetrics.compute()` (`aji`, `count_error`, ...): every one becomes a model-index entry.
Only the `test` and `validation` sections become results, only numeric values are kept, and `training` is shown as
recorded. A dataset of the card without a measurement is shown as "not measured": no number is ever filled in.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..data.presets import CARD_PACKAGE, PRESETS, DatasetPreset, resolve_preset
from ..metrics import class_names_of, metric_display_name
from ..model import AutoSamConfig
from ..training.settings import RECIPES

logger = logging.getLogger(__name__)

# The package that holds `template.md`, beside the dataset card files.
TEMPLATE_PACKAGE = CARD_PACKAGE
TEMPLATE_FILENAME = "template.md"
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")  # files, never Hub ids
METRICS_FILENAME = "all_results.json"
RESULT_SPLITS = ("test", "validation")
NOT_MEASURED = "not measured"

# Display names of `SegmentationMetrics.compute()` keys, in table order; other numeric keys follow, sorted.
METRIC_NAMES = {
    "dice": "Dice",
    "iou": "IoU",
    "s_alpha": "S-measure",
    "e_phi_mean": "mean E-measure",
    "f_beta_weighted": "weighted F-measure",
    "f_beta_mean": "mean F-measure",
    "dice_threshold_mean": "mean Dice over thresholds",
    "sensitivity": "Sensitivity",
    "mae": "MAE",
}
# Always columns of the table, even where nothing was measured.
PRIMARY_METRICS = ("dice", "iou")

Metrics = dict[str, dict[str, dict[str, float]]]  # split → dataset → metric → value


def read_template(template_dir: str | os.PathLike | None = None) -> str:
    """The card template: `<template_dir>/template.md`, by default the one installed with the package.

    Raises:
        FileNotFoundError: `template_dir` has no `template.md`.
    """
    if template_dir is None:
        return importlib.resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_FILENAME).read_text(encoding="utf-8")
    path = Path(template_dir) / TEMPLATE_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"No model card template {TEMPLATE_FILENAME} in --template_dir {template_dir}.")
    return path.read_text(encoding="utf-8")


def read_measured_metrics(paths: Iterable[str | os.PathLike]) -> tuple[Metrics, dict[str, Any], list[str]]:
    """Merge the measured results of JSON files (schema in this module's docstring); later files win.

    Returns:
        (metrics split → dataset → metric → value, training arguments, the file names that were read).
    """
    metrics: Metrics = {}
    training: dict[str, Any] = {}
    sources = []
    for path in paths:
        path = Path(path)
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"Could not read metrics file {path}: {error}") from error
        if not isinstance(content, Mapping):
            raise ValueError(f"Metrics file {path}: expected a JSON object, got {type(content).__name__}")
        sources.append(path.name)
        for split in RESULT_SPLITS:
            for dataset, values in (content.get(split) or {}).items():
                if not isinstance(values, Mapping):
                    raise ValueError(f"Metrics file {path}: {split}.{dataset} must be an object of metric values")
                kept = metrics.setdefault(split, {}).setdefault(dataset, {})
                for name, value in values.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                        kept[name] = float(value)
                    else:
                        logger.warning(
                            "Metrics file %s: ignoring non-numeric %s.%s.%s = %r", path, split, dataset, name, value
                        )
        training.update(content.get("training") or {})
    return metrics, training, sources


def metric_name(name: str) -> str:
    """A metric's display name: the paper's metrics by `METRIC_NAMES`, per-class and instance metrics by
    `autosam_hf.metrics.metric_display_name` ("Dice (interior)", "AJI")."""
    return METRIC_NAMES.get(name) or metric_display_name(name)


def display_name(dataset: str, trained_on: DatasetPreset | None = None) -> str:
    """A dataset's name in the results table: the trained-on dataset's display name, another preset's, or the name
    as measured."""
    if trained_on is not None and dataset == trained_on.name:
        return trained_on.display_name
    return PRESETS[dataset].display_name if dataset in PRESETS else dataset


def _format_value(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{value:.4f}"


def metrics_table(metrics: Metrics, evaluation_datasets: Iterable[str], trained_on: DatasetPreset | None = None) -> str:
    """Markdown table, one row per (split, dataset): `evaluation_datasets` on the test split (measured or
    "not measured"), then every other measured (split, dataset); `trained_on`'s rows under its display name."""
    rows = [("test", dataset) for dataset in evaluation_datasets]
    rows += [
        (split, dataset)
        for split in RESULT_SPLITS
        for dataset in metrics.get(split, {})
        if (split, dataset) not in rows
    ]
    measured = {name for split in metrics.values() for values in split.values() for name in values}
    columns = [name for name in METRIC_NAMES if name in PRIMARY_METRICS or name in measured]
    columns += sorted(measured - set(columns))
    lines = [
        "| Dataset | Split | " + " | ".join(metric_name(name) for name in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for split, dataset in rows:
        values = metrics.get(split, {}).get(dataset, {})
        cells = [_format_value(values.get(name)) for name in columns]
        lines.append(f"| {display_name(dataset, trained_on)} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def eval_results(metrics: Metrics, preset: DatasetPreset) -> list[EvalResult]:
    """model-index entries: one per measured (split, dataset, metric). The trained-on dataset is named by its Hub
    id (`preset.card.hub_id`), other datasets by the name they were measured under."""
    results = []
    for split in RESULT_SPLITS:
        for dataset, values in metrics.get(split, {}).items():
            for name, value in values.items():
                results.append(
                    EvalResult(
                        task_type="image-segmentation",
                        task_name="Image segmentation",
                        dataset_type=preset.card.hub_id if dataset == preset.name else dataset,
                        dataset_name=display_name(dataset, preset),
                        dataset_split=split,
                        metric_type=name,
                        metric_name=metric_name(name),
                        metric_value=value,
                    )
                )
    return results


def _arguments_table(arguments: Mapping[str, Any]) -> str:
    lines = ["| Setting | Value |", "|---|---|"]
    lines += [f"| `{key}` | `{value}` |" for key, value in sorted(arguments.items())]
    return "\n".join(lines)


def _checkpoint_description(adapter: bool, sam_name: str) -> str:
    if adapter:
        return f"adapter: *g* and *h* weights only; SAM is loaded from `{sam_name}` when the model is loaded"
    return "full: SAM, *g* and *h* weights in one `model.safetensors`"


def build_model_card(
    preset: str | DatasetPreset,
    repo_id: str,
    config: AutoSamConfig,
    metrics: Metrics | None = None,
    training_arguments: Mapping[str, Any] | None = None,
    metrics_sources: Iterable[str] = (),
    adapter: bool = False,
    license: str = "apache-2.0",
    template_dir: str | os.PathLike | None = None,
) -> ModelCard:
    """Render the card of a checkpoint trained on `preset`'s dataset.

    Args:
        preset: a dataset preset (`autosam_hf.data.PRESETS`), e.g. `"kvasir"`, or a preset object (a folder's,
            `folder_preset`); its `card` holds the facts.
        repo_id: the Hub repository the card is for (used in the usage snippets and as model-index name).
        config: the checkpoint's `AutoSamConfig` (architecture facts and the base SAM).
        metrics: split → dataset → metric → value, as measured (`read_measured_metrics`); what is missing is
            shown as "not measured".
        training_arguments: the recorded training arguments of this checkpoint, if any.
        metrics_sources: names of the files the metrics came from (named in the card).
        adapter: the checkpoint holds g and h only (SAM is fetched from `config.sam_name_or_path`).
        license: the card's `license` metadata.
        template_dir: a folder with another `template.md` (default: the one installed with the package).

    Raises:
        ValueError: an unknown preset.
    """
    dataset = resolve_preset(preset)
    card = dataset.card
    metrics = metrics or {}
    sam_name = config.sam_name_or_path or "unknown (not recorded in the config)"
    measured_names = {name for split in metrics.values() for values in split.values() for name in values}
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-segmentation",
        license=license,
        tags=["autosam", "segment-anything", "medical-imaging", "custom_code", *card.tags],
        base_model=config.sam_name_or_path if is_hub_repo_id(config.sam_name_or_path) else None,
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results(metrics, dataset) or None,
        metrics=[name for name in METRIC_NAMES if name in measured_names] or None,
    )
    class_names = class_names_of(config.id2label)
    return ModelCard.from_template(
        card_data,
        template_str=read_template(template_dir),
        dataset=dataset.name,
        own_data=dataset.own_card is not None,
        repo_id=repo_id,
        pretty_name=card.title,
        domain=card.domain,
        training_data=card.training_data,
        terms=card.terms,
        terms_checked=card.terms_checked,
        homepage=card.homepage,
        data_citation=card.citation,
        adapter=adapter,
        checkpoint_kind="adapter-size" if adapter else "full",
        checkpoint_description=_checkpoint_description(adapter, sam_name),
        sam_name=sam_name,
        sam_revision=config.sam_revision,
        backbone=config.backbone,
        prompt_input_size=config.prompt_input_size,
        has_surrogate_decoder=bool(config.use_surrogate_decoder),
        default_mode=config.default_mode,
        class_names=class_names,
        class_activation_description=(
            "mutually exclusive (softmax)" if config.class_activation == "softmax" else "independent (sigmoid)"
        ),
        default_recipe=RECIPES["default"].describe(),
        paper_recipe=RECIPES["paper"].describe(),
        training_arguments=_arguments_table(training_arguments) if training_arguments else "",
        metrics_table=metrics_table(metrics, card.evaluation_datasets, dataset),
        metrics_sources=", ".join(f"`{name}`" for name in metrics_sources),
    )


def is_hub_repo_id(name: str | None) -> bool:
    """A Hub model id (`org/name` or `name`), not a local path: not on disk here, not absolute, not a checkpoint
    file's name (`sam_vit_b_01ec64.pth` is valid repo-id syntax, but nobody else could fetch it)."""
    if not name or os.path.exists(name) or os.path.isabs(name) or name.lower().endswith(CHECKPOINT_SUFFIXES):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


__all__ = [
    "METRICS_FILENAME",
    "METRIC_NAMES",
    "NOT_MEASURED",
    "TEMPLATE_PACKAGE",
    "build_model_card",
    "display_name",
    "eval_results",
    "is_hub_repo_id",
    "metric_name",
    "metrics_table",
    "read_measured_metrics",
    "read_template",
]
