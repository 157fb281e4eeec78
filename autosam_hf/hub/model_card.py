"""Model cards for published AutoSAM checkpoints: per-dataset facts (`model_cards/<dataset>.yaml`) rendered into the
shared template (`model_cards/template.md`), with the metrics actually measured as a table and as model-index
metadata (`huggingface_hub.ModelCardData` / `EvalResult`).

Measured metrics are read from JSON files of this schema (`all_results.json` in a trained folder, or any file given
to `autosam-publish --metrics`); every key is optional:

    {
      "test":       {"<dataset>": {"dice": 0.912, "iou": 0.857, "s_alpha": ..., "mae": ...}, ...},
      "validation": {"<dataset>": {...}, ...},
      "training":   {"learning_rate": 0.0003, "num_epochs": 200, ...}
    }

`<dataset>` is a preset name (`kvasir`, `clinicdb`, `colondb`, `etis`, `cvc300`, `glas`, `monuseg`, `sunseg_easy`,
`sunseg_hard`, or any other name); metric names are those of `autosam_hf.metrics.SegmentationMetrics.compute()`.
Only the `test` and `validation` sections become results, only numeric values are kept, and `training` is shown as
recorded. A dataset of the card without a measurement is shown as "not measured": no number is ever filled in.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..model import AutoSamConfig

logger = logging.getLogger(__name__)

# `model_cards/` at the repository root (next to the package in a source checkout or an editable install).
DEFAULT_TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "model_cards"
TEMPLATE_FILENAME = "template.md"
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
# Dataset presets (`autosam_hf.data.get_preset`) that share a card: both SUN-SEG presets train on SUN-SEG's train set.
CARD_ALIASES = {"sunseg_easy": "sunseg", "sunseg_hard": "sunseg"}

Metrics = dict[str, dict[str, dict[str, float]]]  # split → dataset → metric → value


def resolve_template_dir(template_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding `template.md` and the per-dataset `<name>.yaml` files."""
    folder = Path(template_dir) if template_dir is not None else DEFAULT_TEMPLATE_DIR
    if not (folder / TEMPLATE_FILENAME).is_file():
        raise FileNotFoundError(
            f"No model card template at {folder / TEMPLATE_FILENAME}. Pass template_dir (--template-dir) pointing "
            "at the repository's model_cards/ folder."
        )
    return folder


def available_card_datasets(template_dir: str | os.PathLike | None = None) -> list[str]:
    """Names of the datasets that have a card (`model_cards/<name>.yaml`)."""
    return sorted(path.stem for path in resolve_template_dir(template_dir).glob("*.yaml"))


def load_card_facts(dataset: str, template_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The per-dataset facts of `model_cards/<dataset>.yaml` (pretty name, training data, terms, citation, ...).
    `dataset` may also be a preset name that shares a card (`CARD_ALIASES`)."""
    folder = resolve_template_dir(template_dir)
    dataset = CARD_ALIASES.get(dataset, dataset)
    path = folder / f"{dataset}.yaml"
    if not path.is_file():
        known = ", ".join(available_card_datasets(folder))
        raise ValueError(f"No model card for dataset {dataset!r} ({path} is missing). Known datasets: {known}.")
    facts = yaml.safe_load(path.read_text(encoding="utf-8"))
    required = (
        "name",
        "pretty_name",
        "dataset_id",
        "domain",
        "training_data",
        "evaluation_datasets",
        "terms",
        "terms_checked",
        "citation",
    )
    missing = [key for key in required if key not in facts]
    if missing:
        raise ValueError(f"{path}: missing fields {missing}")
    return facts


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


def _dataset_display_name(name: str, facts: Mapping[str, Any], template_dir: Path) -> str:
    if name in (facts.get("evaluation_names") or {}):
        return facts["evaluation_names"][name]
    path = template_dir / f"{name}.yaml"
    if path.is_file():
        return yaml.safe_load(path.read_text(encoding="utf-8")).get("pretty_name", name)
    return name


def _format_value(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{value:.4f}"


def metrics_table(metrics: Metrics, evaluation_datasets: Iterable[str], dataset_names: Mapping[str, str]) -> str:
    """Markdown table, one row per (split, dataset): `evaluation_datasets` on the test split (measured or
    "not measured"), then every other measured (split, dataset). `dataset_names` maps names to display names."""
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
        "| Dataset | Split | " + " | ".join(METRIC_NAMES.get(name, name) for name in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for split, dataset in rows:
        values = metrics.get(split, {}).get(dataset, {})
        cells = [_format_value(values.get(name)) for name in columns]
        lines.append(f"| {dataset_names.get(dataset, dataset)} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def eval_results(metrics: Metrics, dataset_names: Mapping[str, str], facts: Mapping[str, Any]) -> list[EvalResult]:
    """model-index entries: one per measured (split, dataset, metric)."""
    results = []
    for split in RESULT_SPLITS:
        for dataset, values in metrics.get(split, {}).items():
            dataset_type = facts["dataset_id"] if dataset == facts["name"] else dataset
            for name, value in values.items():
                results.append(
                    EvalResult(
                        task_type="image-segmentation",
                        task_name="Image segmentation",
                        dataset_type=dataset_type,
                        dataset_name=dataset_names.get(dataset, dataset),
                        dataset_split=split,
                        metric_type=name,
                        metric_name=METRIC_NAMES.get(name, name),
                        metric_value=value,
                    )
                )
    return results


def _arguments_table(arguments: Mapping[str, Any]) -> str:
    lines = ["| Argument | Value |", "|---|---|"]
    lines += [f"| `{key}` | `{value}` |" for key, value in sorted(arguments.items())]
    return "\n".join(lines)


def build_model_card(
    dataset: str,
    repo_id: str,
    config: AutoSamConfig,
    metrics: Metrics | None = None,
    training_arguments: Mapping[str, Any] | None = None,
    metrics_sources: Iterable[str] = (),
    adapter: bool = False,
    license: str = "apache-2.0",
    template_dir: str | os.PathLike | None = None,
) -> ModelCard:
    """Render the card of a checkpoint trained for `dataset`.

    Args:
        dataset: a card name (`available_card_datasets()`), e.g. `"kvasir"`.
        repo_id: the Hub repository the card is for (used in the usage snippets and as model-index name).
        config: the checkpoint's `AutoSamConfig` (architecture facts and the base SAM).
        metrics: split → dataset → metric → value, as measured (`read_measured_metrics`); what is missing is
            shown as "not measured".
        training_arguments: the recorded training arguments of this checkpoint, if any.
        metrics_sources: names of the files the metrics came from (named in the card).
        adapter: the checkpoint holds g and h only (SAM is fetched from `config.sam_name_or_path`).
        license: the card's `license` metadata.
        template_dir: folder with `template.md` and `<dataset>.yaml` (default: the repository's `model_cards/`).
    """
    from ..data.presets import TrainingDefaults  # the paper's recipe, the training script's defaults

    folder = resolve_template_dir(template_dir)
    facts = load_card_facts(dataset, folder)
    dataset = facts["name"]
    metrics = metrics or {}
    names = [*facts["evaluation_datasets"], *(d for split in metrics.values() for d in split)]
    dataset_names = {name: _dataset_display_name(name, facts, folder) for name in dict.fromkeys(names)}

    sam_name = config.sam_name_or_path or "unknown (not recorded in the config)"
    base_model = config.sam_name_or_path if is_hub_repo_id(config.sam_name_or_path) else None
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-segmentation",
        license=license,
        tags=["autosam", "segment-anything", "medical-imaging", "custom_code", *facts.get("tags", [])],
        base_model=base_model,
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results(metrics, dataset_names, facts) or None,
        metrics=[name for name in METRIC_NAMES if any(name in v for s in metrics.values() for v in s.values())] or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(folder / TEMPLATE_FILENAME),
        dataset=dataset,
        repo_id=repo_id,
        pretty_name=facts["pretty_name"],
        domain=facts["domain"],
        training_data=facts["training_data"],
        terms=facts["terms"],
        terms_checked=bool(facts["terms_checked"]),
        homepage=facts.get("homepage"),
        data_citation=facts["citation"],
        adapter=adapter,
        checkpoint_kind="adapter-size" if adapter else "full",
        checkpoint_description=(
            f"adapter: *g* and *h* weights only; SAM is loaded from `{sam_name}` when the model is loaded"
            if adapter
            else "full: SAM, *g* and *h* weights in one `model.safetensors`"
        ),
        sam_name=sam_name,
        sam_revision=config.sam_revision,
        backbone=config.backbone,
        prompt_input_size=config.prompt_input_size,
        has_surrogate_decoder=bool(config.use_surrogate_decoder),
        default_mode=config.default_mode,
        recipe=asdict(TrainingDefaults()),
        training_arguments=_arguments_table(training_arguments) if training_arguments else "",
        metrics_table=metrics_table(metrics, facts["evaluation_datasets"], dataset_names),
        metrics_sources=", ".join(f"`{name}`" for name in metrics_sources),
    )


def is_hub_repo_id(name: str | None) -> bool:
    """A Hub model id (`org/name` or `name`), not a local path."""
    return bool(name) and not os.path.exists(name) and not os.path.isabs(name) and name.count("/") <= 1


__all__ = [
    "CARD_ALIASES",
    "DEFAULT_TEMPLATE_DIR",
    "is_hub_repo_id",
    "METRICS_FILENAME",
    "METRIC_NAMES",
    "NOT_MEASURED",
    "available_card_datasets",
    "build_model_card",
    "eval_results",
    "load_card_facts",
    "metrics_table",
    "read_measured_metrics",
    "resolve_template_dir",
]
