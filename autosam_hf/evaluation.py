"""Evaluate a trained AutoSAM the way the paper reports it: one row per method (evaluation mode), one column group
per dataset, metrics computed per image at each image's original resolution.

    autosam-eval --model runs/kvasir --eval polyps --data-root ../shared/data \\
        --mode autosam surrogate sam_mask_prompt sam_gt_point sam_gt_box sam_gt_mask --output-dir eval/kvasir

writes `eval/kvasir/eval_results.json` and `eval/kvasir/eval_results.md` (and prints the Markdown). Datasets are
given as any mix of:

- `--preset NAME [--data FOLDER]`, repeatable (each `--data` belongs to the `--preset` before it);
- `--datasets NAME[:SPLIT][=FOLDER] ...`, e.g.
  `--datasets kvasir=../shared/data/kvasir etis=../shared/data/etis_laribpolypdb`;
- `--eval BENCHMARK`: a paper table, e.g. `polyps` = Kvasir, ClinicDB, ColonDB, ETIS (`BENCHMARKS`).

A dataset without a folder is looked for under `--data-root` (`DATA_FOLDER_NAMES`: this project's folder names,
then the official ones, then `--data-root` itself, which covers PraNet's `TestDataset/<Name>` layout). Members of
a `--eval` benchmark that are not found there are reported as missing (a "–" column); a dataset named explicitly
must be found. Every argument, dataset folder and the model are checked before any image is evaluated.

Metrics (`autosam_hf.metrics`): logits are post-processed to each image's original size
(`AutoSamImageProcessor.post_process_logits`); the binary mask is `logit > config.mask_threshold` and the
probability map is their sigmoid. Image datasets: per-image Dice and IoU averaged over images. Video datasets
(SUN-SEG presets): frames in order, S-alpha, mean E-phi, weighted F, mean F, Dice and Sensitivity (the last two
averaged over 256 thresholds, SUN-SEG's meanDic/meanSen) per case, then averaged over cases; each case's first and
last frame are left out as SUN-SEG's toolbox does (`--score-all-frames` keeps them). The modes and how the
ground-truth prompts are derived are documented in `autosam_hf.evaluation_modes`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import PIL.Image
import torch
from tqdm.auto import tqdm

from .atomic_write import write_atomically
from .data import PRESETS
from .evaluation_datasets import (
    BENCHMARKS,
    DATA_FOLDER_NAMES,
    DATASET_DISPLAY_NAMES,
    DEFAULT_SPLIT,
    DatasetSpec,
    find_data_dir,
    load_evaluation_dataset,
    parse_dataset_spec,
    resolve_dataset_spec,
    resolve_datasets,
    source_folder,
)
from .evaluation_modes import (
    EVAL_MODES,
    GT_MASK_LOGIT,
    GT_PROMPT_MODES,
    MODE_DISPLAY_NAMES,
    check_modes,
    eval_mode_for_model_mode,
    ground_truth_prompts,
    predict_logits,
)
from .metrics import SegmentationMetrics, VideoSegmentationMetrics
from .model import AutoSamForSegmentation, AutoSamImageProcessor, binarize_mask, to_rgb_uint8
from .visualization import GROUND_TRUTH_COLOR, overlay_mask, save_overlay_grid, write_png

logger = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------------------------------- evaluation
@dataclass
class ModeResult:
    """What one mode scored on one dataset.

    metrics: `SegmentationMetrics.compute()` keys (averaged over images, or over cases for video);
    per_image: image id → {"dice", "iou"} (image datasets); per_case: case → metrics (video datasets).
    """

    metrics: dict[str, float]
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)
    per_case: dict[str, dict[str, float]] | None = None


class _EvaluationRows(torch.utils.data.Dataset):
    """Rows of a dataset in evaluation order, decoded: {id, case, image (H, W, 3) uint8, target (H, W) 0/1}."""

    def __init__(self, dataset, order: list[int]):
        self.dataset, self.order = dataset, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, position: int) -> dict:
        row = self.dataset[self.order[position]]
        return {
            "id": str(row.get("id", self.order[position])),
            "case": row.get("case"),
            "image": to_rgb_uint8(row["image"], name=f"image {row.get('id')}"),
            "target": binarize_mask(row["mask"], name=f"mask {row.get('id')}"),
        }


class _Collate:
    """Batches rows and runs the processor (in the data loader's workers when there are any)."""

    def __init__(self, processor: AutoSamImageProcessor, with_labels: bool):
        self.processor, self.with_labels = processor, with_labels

    def __call__(self, rows: list[dict]) -> dict:
        images, targets = [row["image"] for row in rows], [row["target"] for row in rows]
        inputs = self.processor(images, segmentation_maps=targets if self.with_labels else None, return_tensors="pt")
        return {"rows": rows, **inputs}


def _evaluation_order(dataset, is_video: bool) -> list[int]:
    """Row order: as stored for images; for video, each case's frames consecutive and in `frame` order."""
    if not is_video:
        return list(range(len(dataset)))
    if hasattr(dataset, "column_names"):
        cases, frames = list(dataset["case"]), list(dataset["frame"])
    else:
        cases, frames = [row["case"] for row in dataset], [row["frame"] for row in dataset]
    first_seen = {case: position for position, case in reversed(list(enumerate(cases)))}
    return sorted(range(len(dataset)), key=lambda index: (first_seen[cases[index]], frames[index]))


def _file_part(text: str) -> Path:
    """An image id as a relative path (video ids are `case/stem`); never escapes its folder."""
    parts = [part if part not in ("", ".", "..") else "_" for part in PurePosixPath(text.replace("\\", "/")).parts]
    return Path(*parts) if parts else Path("_")


class _PredictionWriter:
    """Writes `<dir>/<mode>/masks/<id>.png` (0/255, original size), `<dir>/<mode>/overlays/<id>.png` (ground truth
    contour in green, prediction in red) and `<dir>/<mode>/overlay_grid.png` (the first `num_overlays` images:
    image | ground truth | prediction)."""

    def __init__(self, directory: Path, num_overlays: int):
        self.directory, self.num_overlays = directory, num_overlays
        self.grid: dict[str, list[tuple]] = {}

    def add(self, mode: str, image_id: str, image: np.ndarray, target: np.ndarray, prediction: np.ndarray) -> None:
        name = _file_part(image_id)
        # The prediction tinted, then the ground truth's boundary on top (alpha 0: boundary only).
        overlay = overlay_mask(
            overlay_mask(image, prediction), target, GROUND_TRUTH_COLOR, alpha=0.0, contour_color=None
        )
        for kind, array in (("masks", prediction.astype(np.uint8) * 255), ("overlays", np.asarray(overlay))):
            path = self.directory / mode / kind / name.with_name(name.name + ".png")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_png(array, path)
        examples = self.grid.setdefault(mode, [])
        if len(examples) < self.num_overlays:
            examples.append((PIL.Image.fromarray(image), target, prediction))

    def close(self) -> None:
        for mode, examples in self.grid.items():
            if examples:
                images, targets, predictions = zip(*examples, strict=True)
                grid_path = self.directory / mode / "overlay_grid.png"
                save_overlay_grid(list(images), list(targets), list(predictions), grid_path)


def evaluate_dataset(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    dataset,
    modes: Sequence[str] = ("autosam",),
    batch_size: int = 8,
    *,
    is_video: bool | None = None,
    autocast_dtype: torch.dtype | None = None,
    skip_first_and_last_frame: bool = True,
    gt_mask_logit: float = GT_MASK_LOGIT,
    predictions_dir: str | os.PathLike | None = None,
    num_overlays: int = 8,
    num_workers: int = 0,
    progress: bool = True,
    description: str | None = None,
) -> dict[str, ModeResult]:
    """Score every mode on `dataset`, at each image's original resolution.

    SAM's image encoder runs once per batch and its embeddings serve every mode that uses SAM; the GT prompts are
    derived once per batch.

    Args:
        model: AutoSAM in eval mode, on the device to run on.
        processor: its image processor.
        dataset: rows with `image` and `mask` (any binary mask `binarize_mask` reads), optional `id`; video rows
            add `case` and `frame` (a `datasets.Dataset` from `autosam_hf.data`, or any indexable sequence of dicts).
        modes: evaluation modes (`EVAL_MODES`).
        batch_size: images per forward pass.
        is_video: score per case (SUN-SEG); default: whether rows have a `case` column.
        autocast_dtype: run under `torch.autocast` in this dtype; None = float32.
        skip_first_and_last_frame: video only, as SUN-SEG's toolbox (see `VideoSegmentationMetrics`).
        gt_mask_logit: L of the `sam_gt_mask` prompt (±L logits).
        predictions_dir: when given, write `<predictions_dir>/<mode>/masks/<id>.png` (0/255 at the original size),
            `<mode>/overlays/<id>.png` (ground-truth contour in green, prediction in red) and `<mode>/overlay_grid.png`.
        num_overlays: images in each mode's overlay grid.
        num_workers: data-loader worker processes (decoding and preprocessing).
        progress: show a progress bar.
        description: the progress bar's label.

    Returns:
        mode → `ModeResult`.
    """
    modes = check_modes(modes, model)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(dataset) == 0:
        raise ValueError("The dataset is empty.")
    column_names = getattr(dataset, "column_names", None) or list(dataset[0].keys())
    is_video = "case" in column_names if is_video is None else is_video
    device = next(model.parameters()).device
    threshold = model.config.mask_threshold
    gt_modes = [mode for mode in modes if mode in GT_PROMPT_MODES]
    uses_sam = any(mode != "surrogate" for mode in modes)

    loader = torch.utils.data.DataLoader(
        _EvaluationRows(dataset, _evaluation_order(dataset, is_video)),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_Collate(processor, with_labels="sam_gt_mask" in modes),
    )
    if is_video:
        accumulators = {mode: VideoSegmentationMetrics(skip_first_and_last_frame) for mode in modes}
    else:
        accumulators = {mode: SegmentationMetrics() for mode in modes}
    per_image: dict[str, dict[str, dict[str, float]]] = {mode: {} for mode in modes}
    writer = _PredictionWriter(Path(predictions_dir), num_overlays) if predictions_dir is not None else None

    model.eval()
    with tqdm(total=len(dataset), unit="image", desc=description or "Evaluating", disable=not progress) as bar:
        for batch in loader:
            rows = batch["rows"]
            pixel_values = batch["pixel_values"].to(device)
            with (
                torch.inference_mode(),
                torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None),
            ):
                image_embeddings = model.get_image_embeddings(pixel_values) if uses_sam else None
                prompts = None
                if gt_modes:
                    prompts = ground_truth_prompts(
                        [row["target"] for row in rows],
                        processor,
                        gt_modes,
                        labels=batch.get("labels"),
                        device=device,
                        mask_logit=gt_mask_logit,
                    )
                logits_per_mode = {
                    mode: predict_logits(model, mode, pixel_values, image_embeddings, prompts) for mode in modes
                }
            for mode, logits in logits_per_mode.items():
                # Back to each image's original size: every metric is computed there.
                per_image_logits = processor.post_process_logits(logits.float(), batch["original_sizes"])
                for row, image_logits in zip(rows, per_image_logits, strict=True):
                    probabilities = torch.sigmoid(image_logits).cpu().numpy()
                    prediction = (image_logits > threshold).cpu().numpy()
                    if is_video:
                        accumulators[mode].update(row["case"], prediction, row["target"], pred_prob=probabilities)
                    else:
                        dice, iou = accumulators[mode].update(prediction, row["target"], pred_prob=probabilities)
                        per_image[mode][row["id"]] = {"dice": dice, "iou": iou}
                    if writer is not None:
                        writer.add(mode, row["id"], row["image"], row["target"], prediction)
            bar.update(len(rows))
    if writer is not None:
        writer.close()

    results = {}
    for mode, accumulator in accumulators.items():
        if is_video:
            per_case = accumulator.compute_per_case()
            results[mode] = ModeResult(metrics=accumulator.compute(), per_case=per_case)
        else:
            results[mode] = ModeResult(metrics=accumulator.compute(), per_image=per_image[mode])
    return results


def evaluate_model(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    dataset,
    modes: Sequence[str] = ("autosam",),
    batch_size: int = 8,
    **kwargs,
) -> dict[str, dict[str, float]]:
    """mode → metrics (`SegmentationMetrics.compute()` keys) on `dataset`; `evaluate_dataset` without the
    per-image and per-case details. `kwargs` go to `evaluate_dataset`."""
    results = evaluate_dataset(model, processor, dataset, modes, batch_size, **kwargs)
    return {mode: result.metrics for mode, result in results.items()}


# ---------------------------------------------------------------------------------------------- tables
def _format_value(value: float | None) -> str:
    return NOT_EVALUATED if value is None else f"{value:.3f}"


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
        display_names: column titles; default `DATASET_DISPLAY_NAMES`, else the dataset key.
    """
    if datasets is None:
        datasets = list(dict.fromkeys(name for per_dataset in results.values() for name in per_dataset))
    if video_datasets is None:
        video_datasets = [name for name in datasets if name in PRESETS and PRESETS[name].is_video]
    display_names = {**DATASET_DISPLAY_NAMES, **(display_names or {})}
    tables = []
    for columns, metrics in (
        ([name for name in datasets if name not in video_datasets], IMAGE_TABLE_METRICS),
        ([name for name in datasets if name in video_datasets], VIDEO_TABLE_METRICS),
    ):
        if not columns:
            continue
        header = ["Method"] + [f"{display_names.get(name, name)} {title}" for name in columns for _, title in metrics]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
        for mode, per_dataset in results.items():
            cells = [MODE_DISPLAY_NAMES.get(mode, mode)]
            cells += [_format_value((per_dataset.get(name) or {}).get(key)) for name in columns for key, _ in metrics]
            lines.append("| " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def format_markdown_report(report: Mapping) -> str:
    """The Markdown file of a run: the table(s) of `format_markdown_table` and notes on data and protocol."""
    datasets = report["datasets"]
    video = [entry["key"] for entry in datasets if entry["video"]]
    lines = [
        f"# AutoSAM evaluation: `{report['model']}`",
        "",
        format_markdown_table(
            report["results"],
            [entry["key"] for entry in datasets],
            video,
            {entry["key"]: entry["display_name"] for entry in datasets},
        ),
        "",
        "Metrics per image at its original resolution, then averaged over images"
        + (
            " (video: per case, then averaged over cases; Dice and Sensitivity are means over 256 thresholds, as in "
            "SUN-SEG's toolbox)"
            if video
            else ""
        )
        + f". Binary masks: logit > {report['settings']['mask_threshold']}.",
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
    own_mode = eval_mode_for_model_mode(default_mode) if default_mode else None
    if own_mode in modes:
        for spec in evaluated:
            section = {"test": "test", "val": "validation"}.get(spec.split)
            if section:
                report.setdefault(section, {})[spec.name] = dataset_results[spec.key][own_mode].metrics
    return report


# ---------------------------------------------------------------------------------------------- command line
class _PresetAction(argparse.Action):
    """`--preset NAME[:SPLIT]`: starts a dataset entry; the next `--data` gives its folder."""

    def __call__(self, parser, namespace, value, option_string=None):
        entries = list(getattr(namespace, self.dest) or [])
        entries.append([value, None])
        setattr(namespace, self.dest, entries)


class _DataAction(argparse.Action):
    """`--data FOLDER`: the folder of the `--preset` just before it."""

    def __call__(self, parser, namespace, value, option_string=None):
        entries = list(namespace.preset_entries or [])
        if not entries or entries[-1][1] is not None:
            parser.error(f"--data {value}: every --data must follow the --preset it belongs to")
        entries[-1] = [entries[-1][0], value]
        namespace.preset_entries = entries


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autosam-eval",
        description="Evaluate an AutoSAM checkpoint like the paper's tables: rows = modes, columns = datasets.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="modes: "
        + ", ".join(f"{mode} ({MODE_DISPLAY_NAMES[mode]})" for mode in EVAL_MODES)
        + "; 'all' = every mode. benchmarks: "
        + "; ".join(f"{name} = {', '.join(members)}" for name, members in BENCHMARKS.items()),
    )
    parser.add_argument("--model", required=True, help="folder or Hub id of an AutoSAM checkpoint (full or adapter)")
    parser.add_argument("--revision", help="Hub revision of --model")
    data = parser.add_argument_group("datasets (any mix; at least one)")
    data.add_argument(
        "--preset",
        dest="preset_entries",
        action=_PresetAction,
        default=[],
        metavar="NAME[:SPLIT]",
        help="a dataset preset (" + ", ".join(PRESETS) + "); repeatable",
    )
    data.add_argument(
        "--data",
        action=_DataAction,
        metavar="FOLDER",
        help="the folder of the --preset before it (default: found under --data-root)",
    )
    data.add_argument(
        "--datasets",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME[:SPLIT][=FOLDER]",
        help="datasets, e.g. kvasir=../shared/data/kvasir etis=../shared/data/etis_laribpolypdb",
    )
    data.add_argument(
        "--eval",
        nargs="+",
        action="extend",
        default=[],
        choices=sorted(BENCHMARKS),
        metavar="BENCHMARK",
        help=f"a paper table's datasets: {', '.join(BENCHMARKS)}",
    )
    data.add_argument(
        "--data-root",
        "--data_root",
        default=os.environ.get("AUTOSAM_DATA_ROOT", "data"),
        help="where datasets without a folder are looked for (default: $AUTOSAM_DATA_ROOT or ./data)",
    )
    data.add_argument("--split", default=DEFAULT_SPLIT, help="split of datasets given without one (default: test)")
    data.add_argument(
        "--max-samples",
        "--max_samples",
        type=int,
        default=None,
        help="evaluate only the first N images (frames) of each dataset",
    )
    run = parser.add_argument_group("evaluation")
    run.add_argument(
        "--mode",
        "--modes",
        dest="modes",
        nargs="+",
        default=["autosam"],
        choices=[*EVAL_MODES, "all"],
        metavar="MODE",
        help="table rows (default: autosam)",
    )
    run.add_argument("--batch-size", "--batch_size", type=int, default=8, help="images per forward pass (default 8)")
    run.add_argument("--num-workers", "--num_workers", type=int, default=0, help="data-loader worker processes")
    run.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, ...")
    run.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="compute dtype: auto = the fastest native one (bfloat16/float16 autocast on GPUs, bfloat16 on CPUs with "
        "AMX or AVX-512-BF16, else float32)",
    )
    run.add_argument(
        "--gt-mask-logit",
        "--gt_mask_logit",
        type=float,
        default=GT_MASK_LOGIT,
        help=f"logit magnitude L of the sam_gt_mask prompt (±L; default {GT_MASK_LOGIT:g})",
    )
    run.add_argument(
        "--score-all-frames",
        "--score_all_frames",
        action="store_true",
        help="video: also score each case's first and last frame (SUN-SEG's toolbox leaves them out)",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--output-dir",
        "--output_dir",
        default="eval_results",
        help=f"where {RESULTS_STEM}.json / .md go (default: ./eval_results)",
    )
    output.add_argument(
        "--save-predictions",
        "--save_predictions",
        action="store_true",
        help="also write masks (PNG 0/255, original size) and overlays, per dataset and mode",
    )
    output.add_argument("--num-overlays", "--num_overlays", type=int, default=8, help="images per overlay grid")
    output.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _dataset_specs_from_args(args: argparse.Namespace) -> list[DatasetSpec]:
    specs = []
    for name, folder in args.preset_entries:
        specs.append(parse_dataset_spec(name if folder is None else f"{name}={folder}", args.split))
    specs += [parse_dataset_spec(text, args.split) for text in args.datasets]
    return specs


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point. Returns 0 on success and 1 when the run cannot be done (the message names the argument,
    folder or model at fault); argument errors exit with status 2."""
    from .hub.loading import load_model_and_processor
    from .runtime import resolve_autocast_dtype, resolve_device

    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.preset_entries or args.datasets or args.eval):
        parser.error(
            "give at least one dataset: --preset NAME [--data FOLDER], --datasets NAME=FOLDER or --eval BENCHMARK"
        )
    for option, value in (("--batch-size", args.batch_size), ("--max-samples", args.max_samples)):
        if value is not None and value < 1:
            parser.error(f"{option} must be >= 1, got {value}")
    modes = list(EVAL_MODES) if "all" in args.modes else list(dict.fromkeys(args.modes))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        # Everything that can be wrong is checked before the first image is evaluated: datasets, device, model.
        specs = resolve_datasets(_dataset_specs_from_args(args), args.eval, args.data_root, args.split)
        evaluated = [spec for spec in specs if spec.data_dir is not None]
        device = resolve_device(args.device)
        autocast_dtype = resolve_autocast_dtype(args.dtype, device)
        model, processor = load_model_and_processor(args.model, revision=args.revision)
        if "all" in args.modes and model.surrogate_decoder is None:
            modes.remove("surrogate")
        modes = check_modes(modes, model)
        model.to(device)
        loaded = {spec.key: load_evaluation_dataset(spec, args.max_samples) for spec in evaluated}

        output_dir = Path(args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        dataset_results, dataset_info = {}, {}
        for spec in evaluated:
            dataset = loaded[spec.key]
            dataset_results[spec.key] = evaluate_dataset(
                model,
                processor,
                dataset,
                modes,
                args.batch_size,
                is_video=spec.is_video,
                autocast_dtype=autocast_dtype,
                skip_first_and_last_frame=not args.score_all_frames,
                gt_mask_logit=args.gt_mask_logit,
                predictions_dir=output_dir / "predictions" / spec.key if args.save_predictions else None,
                num_overlays=args.num_overlays,
                num_workers=args.num_workers,
                progress=not args.quiet,
                description=f"{spec.display_name} ({len(modes)} mode{'s' if len(modes) > 1 else ''})",
            )
            dataset_info[spec.key] = {
                "num_images": len(dataset),
                "num_cases": len(set(dataset["case"])) if spec.is_video else None,
                "source": source_folder(dataset),
            }
    except (FileNotFoundError, ValueError) as error:
        print(f"autosam-eval: error: {error}", file=sys.stderr)
        return 1

    settings = {
        "batch_size": args.batch_size,
        "device": str(device),
        "dtype": args.dtype,
        "data_root": args.data_root,
        "max_samples": args.max_samples,
        "mask_threshold": model.config.mask_threshold,
        "gt_mask_logit": args.gt_mask_logit,
        "skip_first_and_last_frame": not args.score_all_frames,
    }
    report = build_report(
        args.model, modes, specs, dataset_results, dataset_info, settings, default_mode=model.config.default_mode
    )
    markdown = format_markdown_report(report)
    report_text = json.dumps(report, indent=2) + "\n"
    write_atomically(output_dir / f"{RESULTS_STEM}.json", lambda p: p.write_text(report_text, encoding="utf-8"))
    write_atomically(output_dir / f"{RESULTS_STEM}.md", lambda p: p.write_text(markdown, encoding="utf-8"))
    print(markdown)
    logger.info("wrote %s and %s", output_dir / f"{RESULTS_STEM}.json", output_dir / f"{RESULTS_STEM}.md")
    return 0


__all__ = [
    "BENCHMARKS",
    "DATASET_DISPLAY_NAMES",
    "DATA_FOLDER_NAMES",
    "DatasetSpec",
    "ModeResult",
    "build_report",
    "evaluate_dataset",
    "evaluate_model",
    "find_data_dir",
    "format_markdown_report",
    "format_markdown_table",
    "load_evaluation_dataset",
    "main",
    "parse_dataset_spec",
    "resolve_dataset_spec",
    "resolve_datasets",
]


if __name__ == "__main__":
    sys.exit(main())
