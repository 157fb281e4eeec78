"""The report of an evaluation run: the paper's tables in Markdown (rows = modes, columns = datasets; for multi-class
models Dice and IoU are the macro means over classes, and a table per dataset gives each class and the instance
metrics) and the JSON report, whose `test` / `validation` sections are the schema `autosam-publish --metrics` reads
for model cards."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..atomic_write import write_atomically
from ..data import PRESETS
from ..metrics import metric_display_name
from ..model.configuration_autosam import canonical_mode
from .datasets import DatasetSpec
from .modes import CLICK_MODE, GT_PROMPT_MODES, MODE_DISPLAY_NAMES, NOC_MAX_CLICKS, NOC_THRESHOLDS, noc_key
from .scoring import ModeResult
from .volumes import VOLUME_METRIC_NAMES, VolumeModeResult, VolumeSource

# (metric key of `SegmentationMetrics.compute`, column name) of the paper's tables.
IMAGE_TABLE_METRICS = (("dice", "Dice"), ("iou", "IoU"))
VIDEO_TABLE_METRICS = (
    ("s_alpha", "S-alpha"),
    ("e_phi_mean", "mean E-phi"),
    ("f_beta_weighted", "weighted F"),
    ("f_beta_mean", "mean F"),
    ("dice_threshold_mean", "Dice"),
    ("sensitivity", "Sensitivity"),
)
RESULTS_STEM = "eval_results"
NOT_EVALUATED = "–"


def _format_value(value: float | None) -> str:
    return NOT_EVALUATED if value is None else f"{value:.3f}"


def click_counts(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[int]:
    """The click counts k of the `dice@k` scores of the `autosam_clicks` row, ascending."""
    keys = {key for metrics in results.get(CLICK_MODE, {}).values() for key in metrics}
    return sorted(int(key.partition("@")[2]) for key in keys if key.startswith("dice@"))


def _table_rows(results: Mapping[str, Mapping[str, Mapping[str, float]]]):
    """(row name, dataset → metrics) of the image table: one per mode, `autosam_clicks` one per click count k
    ("AutoSAM + k clicks", its `dice@k` and `iou@k` as Dice and IoU)."""
    for mode, per_dataset in results.items():
        if mode != CLICK_MODE:
            yield MODE_DISPLAY_NAMES.get(mode, mode), per_dataset
            continue
        for clicks in click_counts(results):
            name = f"AutoSAM + {clicks} click{'' if clicks == 1 else 's'}"
            yield (
                name,
                {
                    dataset: {
                        key: metrics[f"{key}@{clicks}"] for key in ("dice", "iou") if f"{key}@{clicks}" in metrics
                    }
                    for dataset, metrics in per_dataset.items()
                },
            )


def format_noc_table(
    results: Mapping[str, Mapping[str, Mapping[str, float]]], datasets: Sequence[str], display_names: Mapping[str, str]
) -> str:
    """The `autosam_clicks` row's NoC@85 and NoC@90 per dataset (empty without that mode)."""
    if CLICK_MODE not in results:
        return ""
    columns = [name for name in datasets if name in results[CLICK_MODE]]
    keys = [noc_key(threshold) for threshold in NOC_THRESHOLDS]
    header = ["Method"] + [
        f"{display_names.get(name, name)} NoC@{key.partition('@')[2]}" for name in columns for key in keys
    ]
    cells = ["AutoSAM + clicks"] + [
        _format_value(results[CLICK_MODE][name].get(key)) for name in columns for key in keys
    ]
    return "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1), "| " + " | ".join(cells) + " |"]
    )


def format_markdown_table(
    results: Mapping[str, Mapping[str, Mapping[str, float]]],
    datasets: Sequence[str] | None = None,
    video_datasets: Sequence[str] | None = None,
    display_names: Mapping[str, str] | None = None,
) -> str:
    """The paper's table(s) in Markdown: one row per mode, a Dice and an IoU column per image dataset; video
    datasets (SUN-SEG) get a second table with S-alpha, mean E-phi, weighted F, mean F, Dice and Sensitivity.

    Args:
        results: mode → dataset → metrics (`SegmentationMetrics.compute()` keys).
        datasets: column order; datasets absent from `results` (not found) are shown as "–". Default: as they come.
        video_datasets: which datasets are videos; default: the SUN-SEG presets among them.
        display_names: column titles; default: the presets' display names, else the dataset key.
    """
    if datasets is None:
        datasets = list(dict.fromkeys(name for per_dataset in results.values() for name in per_dataset))
    if video_datasets is None:
        video_datasets = [name for name in datasets if name in PRESETS and PRESETS[name].is_video]
    display_names = {**{name: preset.display_name for name, preset in PRESETS.items()}, **(display_names or {})}
    tables = []
    for columns, metrics in (
        ([name for name in datasets if name not in video_datasets], IMAGE_TABLE_METRICS),
        ([name for name in datasets if name in video_datasets], VIDEO_TABLE_METRICS),
    ):
        if not columns:
            continue
        header = ["Method"] + [f"{display_names.get(name, name)} {title}" for name in columns for _, title in metrics]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
        for row_name, per_dataset in _table_rows(results):
            cells = [row_name]
            cells += [_format_value((per_dataset.get(name) or {}).get(key)) for name in columns for key, _ in metrics]
            lines.append("| " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def format_detail_tables(
    results: Mapping[str, Mapping[str, Mapping[str, float]]], datasets: Sequence[str], display_names: Mapping[str, str]
) -> str:
    """Multi-class results: for each dataset scored per class (`MulticlassSegmentationMetrics`, whose results carry
    `foreground_dice`), a table with one row per mode and a column per score besides the macro Dice and IoU (each
    class's Dice and IoU, Dice/IoU of any class, AJI, count errors), in their order."""
    macro = {key for key, _ in IMAGE_TABLE_METRICS}
    tables = []
    for name in datasets:
        per_mode = {mode: per_dataset[name] for mode, per_dataset in results.items() if name in per_dataset}
        if not any("foreground_dice" in metrics for metrics in per_mode.values()):
            continue
        # The click scores (`dice@k`, `noc@85`) are the main table's and the NoC table's.
        keys = [key for metrics in per_mode.values() for key in metrics if key not in macro and "@" not in key]
        keys = list(dict.fromkeys(keys))
        header = ["Method"] + [metric_display_name(key) for key in keys]
        lines = [f"{display_names.get(name, name)}, per class:", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" + "---:|" * len(keys))
        for mode, metrics in per_mode.items():
            row = f"AutoSAM + {click_counts(results)[-1]} clicks" if mode == CLICK_MODE else None
            cells = [row or MODE_DISPLAY_NAMES.get(mode, mode)] + [_format_value(metrics.get(key)) for key in keys]
            lines.append("| " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def format_markdown_report(report: Mapping) -> str:
    """The Markdown file of a run: the table(s) of `format_markdown_table` and notes on data and protocol."""
    datasets = report["datasets"]
    video = [entry["key"] for entry in datasets if entry["video"]]
    keys = [entry["key"] for entry in datasets]
    display_names = {entry["key"]: entry["display_name"] for entry in datasets}
    details = format_detail_tables(report["results"], keys, display_names)
    noc = format_noc_table(report["results"], keys, display_names)
    lines = [
        f"# AutoSAM evaluation: `{report['model']}`",
        "",
        format_markdown_table(report["results"], keys, video, display_names),
        "",
        *([noc, ""] if noc else []),
        *([details, ""] if details else []),
        "Metrics per image at its original resolution, then averaged over images"
        + (
            " (video: per case, then averaged over cases; Dice and Sensitivity are means over 256 thresholds, as in "
            "SUN-SEG's toolbox)"
            if video
            else ""
        )
        + f". Binary masks: logit > {report['settings']['mask_threshold']}"
        + (
            " (several classes: the argmax over [that threshold, the class logits]; Dice and IoU of the main "
            "table are the macro means over the classes, background not counted)"
            if details
            else ""
        )
        + ".",
        *(
            [
                "",
                "AJI (Aggregated Jaccard Index, Kumar et al. 2017) and count errors: predicted instances are the "
                "connected components of the predicted interior, grown back into the predicted boundary; ground "
                "truth: the dataset's instance masks.",
            ]
            if any("aji" in metrics for per_dataset in report["results"].values() for metrics in per_dataset.values())
            else []
        ),
        "",
        "Data:",
    ]
    for entry in datasets:
        if not entry["evaluated"]:
            lines.append(
                f"- {entry['display_name']}: not evaluated (no `{entry['split']}` split found under "
                f"`{report['settings']['data_root']}`)"
            )
            continue
        extent = f"{entry['num_images']} images" + (f" in {entry['num_cases']} cases" if entry["video"] else "")
        lines.append(
            f"- {entry['display_name']}: split `{entry['split']}`, {extent}, from "
            f"`{entry['source'] or entry['data_dir']}`"
        )
    if any(mode in GT_PROMPT_MODES for mode in report["modes"]):
        lines += [
            "",
            "SAM with ground-truth prompts (frozen SAM, one prompt, single-mask output): point = the foreground pixel "
            "farthest from the mask boundary; box = the tight bounding box of the foreground; mask = the ground truth "
            f"on SAM's low-resolution canvas as ±{report['settings']['gt_mask_logit']:g} logits. An empty ground truth "
            "gives an empty prediction.",
        ]
    if CLICK_MODE in report["modes"]:
        lines += [
            "",
            "AutoSAM + k clicks: AutoSAM's automatic mask (0 clicks), then a simulated user's clicks, each at the "
            "centre of the largest error region of the current prediction (positive in a missed region, negative in "
            "a spurious one), decoded by the frozen SAM with all clicks so far and g's dense prompt. NoC@85 / NoC@90: "
            f"the clicks needed to reach IoU 0.85 / 0.90 (0 if the automatic mask does), at most {NOC_MAX_CLICKS}; an "
            f"image that never reaches it counts as {NOC_MAX_CLICKS} (as in RITM). SAM + 1 click is SAM given the "
            "first click of the same user on an empty mask (for a ground truth of one region).",
        ]
    return "\n".join(lines) + "\n"


def build_report(
    model_name: str,
    modes: Sequence[str],
    specs: Sequence[DatasetSpec],
    dataset_results: Mapping[str, Mapping[str, ModeResult]],
    dataset_info: Mapping[str, Mapping],
    settings: Mapping,
    default_mode: str | None = None,
) -> dict:
    """The JSON report of a run.

    Args:
        specs: the table's datasets in column order; those with `data_dir=None` were not found (not evaluated).
        dataset_results: dataset key → mode → `ModeResult`, for the evaluated datasets.
        dataset_info: dataset key → extra facts (`num_images`, `num_cases`, `source`).
        default_mode: the model's `config.default_mode`, whose row also fills the `test` / `validation` sections.

    Returns:
        `model`, `modes`, `datasets` (column order: key, name, split, folders, `evaluated`, counts), `settings`,
        `results` (mode → dataset → metrics: the table), `per_image` (image datasets) and `per_case` (video
        datasets), dataset → mode → id → scores, and `test` / `validation` (preset name → metrics of the model's
        own mode), the schema `autosam-publish --metrics` reads for the model card.
    """
    evaluated = [spec for spec in specs if spec.key in dataset_results]
    report = {
        "model": model_name,
        "modes": list(modes),
        "datasets": [
            {
                "key": spec.key,
                "name": spec.name,
                "display_name": spec.display_name,
                "split": spec.split,
                "data_dir": str(spec.data_dir) if spec.data_dir else None,
                "video": spec.is_video,
                "evaluated": spec.key in dataset_results,
                **dataset_info.get(spec.key, {}),
            }
            for spec in specs
        ],
        "settings": dict(settings),
        "results": {mode: {spec.key: dataset_results[spec.key][mode].metrics for spec in evaluated} for mode in modes},
        "per_image": {
            spec.key: {mode: dataset_results[spec.key][mode].per_image for mode in modes}
            for spec in evaluated
            if not spec.is_video
        },
        "per_case": {
            spec.key: {mode: dataset_results[spec.key][mode].per_case for mode in modes}
            for spec in evaluated
            if spec.is_video
        },
    }
    own_mode = canonical_mode(default_mode) if default_mode else None
    if own_mode in modes:
        for spec in evaluated:
            section = {"test": "test", "val": "validation"}.get(spec.split)
            if section:
                report.setdefault(section, {})[spec.name] = dataset_results[spec.key][own_mode].metrics
    return report


# ---------------------------------------------------------------------------------------------- volumes
# (metric key of `autosam_hf.evaluation.volumes`, column title) of the volume tables.
VOLUME_TABLE_METRICS = tuple(zip(VOLUME_METRIC_NAMES, ("Dice", "HD95 mm", "NSD", "2D Dice"), strict=True))


def build_volume_report(
    model_name: str,
    modes: Sequence[str],
    source: VolumeSource,
    results: Mapping[str, VolumeModeResult],
    volume_info: Mapping[str, Mapping],
    settings: Mapping,
) -> dict:
    """The JSON report of a volume run.

    Returns:
        `model`, `modes`, `data` (root, layout, split, classes scored), `settings`, `volumes` (case → image, label,
        shape, spacing, slicing axis), `results` (mode → class → the means over volumes), `summary` (mode → metric
        → the mean over classes of those), `per_volume` (mode → case → class → scores) and `per_slice` (mode →
        case → class → the 2D Dice of each slice).
    """
    return {
        "model": model_name,
        "modes": list(modes),
        "data": {
            "root": str(source.root),
            "layout": source.layout,
            "split": source.split,
            "num_volumes": len(source.cases),
        },
        "settings": dict(settings),
        "volumes": {case: dict(facts) for case, facts in volume_info.items()},
        "results": {mode: results[mode].metrics for mode in modes},
        "summary": {
            mode: {
                key: float(np.mean([scores[key] for scores in results[mode].metrics.values()]))
                for key, _ in VOLUME_TABLE_METRICS
            }
            for mode in modes
        },
        "per_volume": {mode: results[mode].per_volume for mode in modes},
        "per_slice": {mode: results[mode].per_slice for mode in modes},
    }


def _volume_table(first_column: str, rows: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[str]:
    """One row per key of `rows` (row → class → metric), a column per class and metric."""
    class_names = list(next(iter(rows.values())))
    header = [first_column] + [f"{name} {title}" for name in class_names for _, title in VOLUME_TABLE_METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for row, per_class in rows.items():
        cells = [row] + [_format_value(per_class[name][key]) for name in class_names for key, _ in VOLUME_TABLE_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def format_volume_markdown_report(report: Mapping) -> str:
    """The Markdown file of a volume run: the summary (rows = modes, per class the means over volumes), a table per
    mode with one row per volume, and notes on the protocol."""
    data, settings = report["data"], report["settings"]
    summary = {MODE_DISPLAY_NAMES.get(mode, mode): per_class for mode, per_class in report["results"].items()}
    lines = [f"# AutoSAM evaluation on volumes: `{report['model']}`", "", *_volume_table("Method", summary), ""]
    for mode, per_volume in report["per_volume"].items():
        lines += [f"{MODE_DISPLAY_NAMES.get(mode, mode)}, per volume:", "", *_volume_table("Volume", per_volume), ""]
    window = settings["window"] or "each volume's 0.5th..99.5th percentiles"
    split = f", split `{data['split']}`" if data["split"] else ""
    lines += [
        f"Each volume predicted slice by slice (intensities: {window}; along each volume's "
        + ("coarsest axis" if settings["slice_axis"] is None else f"axis {settings['slice_axis']}")
        + f"; binary masks: logit > {settings['mask_threshold']}), then scored in 3D on its voxel grid (MONAI): "
        f"Dice, HD95 in mm and NSD at {settings['nsd_tolerance_mm']:g} mm; 2D Dice is the mean over the volume's "
        "slices. Per class, then averaged over volumes. A class absent from both prediction and reference scores "
        "Dice 1, HD95 0, NSD 1 (nnU-Net would report NaN); absent from exactly one, Dice 0, HD95 inf, NSD 0, so "
        "a class missed in any volume has a mean HD95 of inf.",
        "",
        f"Data: {data['num_volumes']} volumes from `{data['root']}` ({data['layout']}{split}).",
    ]
    return "\n".join(lines) + "\n"


def write_report(report: Mapping, output_dir: str | os.PathLike) -> str:
    """Write `<output_dir>/eval_results.json` and `<output_dir>/eval_results.md` (atomically, creating the folder);
    returns the Markdown (of `format_volume_markdown_report` for a volume run's report)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    format_markdown = format_volume_markdown_report if "per_volume" in report else format_markdown_report
    report_text, markdown = json.dumps(report, indent=2) + "\n", format_markdown(report)
    write_atomically(output_dir / f"{RESULTS_STEM}.json", lambda path: path.write_text(report_text, encoding="utf-8"))
    write_atomically(output_dir / f"{RESULTS_STEM}.md", lambda path: path.write_text(markdown, encoding="utf-8"))
    return markdown


__all__ = [
    "IMAGE_TABLE_METRICS",
    "NOT_EVALUATED",
    "RESULTS_STEM",
    "VIDEO_TABLE_METRICS",
    "VOLUME_TABLE_METRICS",
    "build_report",
    "build_volume_report",
    "click_counts",
    "format_detail_tables",
    "format_noc_table",
    "format_markdown_report",
    "format_markdown_table",
    "format_volume_markdown_report",
    "write_report",
]
