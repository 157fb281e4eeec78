"""`autosam-eval`: evaluate a trained AutoSAM the way the paper reports it, one row per method (evaluation mode), one
column group per dataset, metrics computed per image at each image's original resolution.

    autosam-eval --model runs/kvasir --eval polyps --data_root ../shared/data \\
        --mode autosam surrogate sam_mask_prompt sam_gt_point sam_gt_box sam_gt_mask --output_dir eval/kvasir

writes `eval/kvasir/eval_results.json` and `eval/kvasir/eval_results.md` (and prints the Markdown). Datasets are
given as any mix of:

- `--preset NAME[:SPLIT] [--data FOLDER]`, repeatable (each `--data` belongs to the `--preset` before it);
- `--data FOLDER` without a `--preset`: a folder of one's own, its `test/` split or a flat `images/` + `masks/`
  folder (`autosam_hf.data.presets.folder_preset`), reported under the folder's name;
- `--datasets NAME[:SPLIT][=FOLDER] ...`, e.g.
  `--datasets kvasir=../shared/data/kvasir etis=../shared/data/etis_laribpolypdb`;
- `--eval BENCHMARK`: a paper table, e.g. `polyps` = Kvasir-SEG, CVC-ClinicDB, CVC-ColonDB, ETIS
  (`autosam_hf.data.BENCHMARKS`).

A dataset without a folder is looked for under `--data_root` (each preset's `folder_names`: this project's folder
name, then the official ones, then `--data_root` itself, which covers PraNet's `TestDataset/<Name>` layout).
Members of an `--eval` benchmark that are not found there are reported as missing (a "–" column); a dataset named
explicitly must be found. Every argument, dataset folder and the model are checked before any image is evaluated.

Metrics: see `autosam_hf.evaluation.scoring` (binary masks are `logit > config.mask_threshold`, through
`autosam_hf.postprocessing`; multi-class models: per-class Dice/IoU and their macro mean, and on presets with
derived boundary classes, `monuseg_boundary`, AJI and count errors against the instance masks); video datasets
(SUN-SEG presets) leave each case's first and last frame out, as SUN-SEG's toolbox does (`--score_all_frames` keeps
them). The modes and how the ground-truth prompts are derived:
`autosam_hf.evaluation.modes`.

Volumes (`--volumes DIR`, instead of 2D datasets): a Decathlon / nnU-Net folder (`--split test`: imagesTs/ +
labelsTs/, `--split train`: imagesTr/ + labelsTr/) or volumes/ + labels/; each volume predicted slice by slice and
scored in 3D per class (Dice, HD95 and NSD in mm, and the per-slice 2D Dice): `autosam_hf.evaluation.volumes`.

Under `accelerate launch -m autosam_hf.evaluation` each process scores a contiguous share of every dataset (whole
video cases, whole volumes) and writes its own predictions; the scores are gathered once (`autosam_hf.sharding`),
the same as one process's, and the main process writes the report.

Exit status: 0 on success; 2 for bad input (arguments, datasets, folders, a model that cannot be loaded or cannot
run a mode), printed as `autosam-eval: error: <message>` naming the culprit.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ..cli import (
    ArgumentParser,
    add_encoder_arguments,
    add_model_arguments,
    add_output_dir_argument,
    add_runtime_arguments,
    apply_encoder_arguments,
    configure_logging,
    positive_int,
    resolve_runtime,
)
from ..data import BENCHMARKS, PRESETS
from ..hub.loading import load_model_and_processor
from ..metrics.volumes import DEFAULT_NSD_TOLERANCE_MM
from ..model import AutoSamForSegmentation
from ..sharding import is_main_process, is_sharded, process_device
from ..volumes import VolumeInput, parse_window
from .datasets import (
    DEFAULT_SPLIT,
    DatasetSpec,
    load_evaluation_dataset,
    parse_dataset_spec,
    resolve_datasets,
    source_folder,
)
from .modes import (
    CLICK_MODE,
    DEFAULT_MAX_CLICKS,
    EVAL_MODES,
    GT_MASK_LOGIT,
    GT_PROMPT_MODES,
    MODE_DISPLAY_NAMES,
    NOC_MAX_CLICKS,
    check_modes,
)
from .report import RESULTS_STEM, build_report, build_volume_report, write_report
from .scoring import EvaluationSettings, evaluate_dataset
from .volumes import VOLUME_SPLITS, VolumeEvaluationSettings, evaluate_volumes, find_volume_cases

logger = logging.getLogger(__name__)


class _PresetAction(argparse.Action):
    """`--preset NAME[:SPLIT]`: starts a dataset entry; the next `--data` gives its folder."""

    def __call__(self, parser, namespace, value, option_string=None):
        entries = list(getattr(namespace, self.dest) or [])
        entries.append([value, None])
        setattr(namespace, self.dest, entries)


class _DataAction(argparse.Action):
    """`--data FOLDER`: the folder of the `--preset` just before it; without one, a folder of one's own."""

    def __call__(self, parser, namespace, value, option_string=None):
        entries = list(namespace.preset_entries or [])
        if entries and entries[-1][1] is None:
            entries[-1] = [entries[-1][0], value]
        else:
            entries.append([None, value])
        namespace.preset_entries = entries


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="autosam-eval",
        description="Evaluate an AutoSAM checkpoint like the paper's tables: rows = modes, columns = datasets.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="modes: "
        + ", ".join(f"{mode} ({MODE_DISPLAY_NAMES[mode]})" for mode in EVAL_MODES)
        + f"; 'all' = every one of those; {CLICK_MODE} (AutoSAM, then simulated corrective clicks: Dice after k "
        "clicks, NoC@85/90). benchmarks: "
        + "; ".join(f"{name} = {', '.join(members)}" for name, members in BENCHMARKS.items()),
    )
    add_model_arguments(parser)
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
        help="the folder of the --preset before it (default: found under --data_root); without one, a folder of "
        "one's own: its test/ split, or a flat images/ + masks/ folder",
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
        "--data_root",
        default=os.environ.get("AUTOSAM_DATA_ROOT", "data"),
        help="where datasets without a folder are looked for (default: $AUTOSAM_DATA_ROOT or ./data)",
    )
    data.add_argument("--split", default=DEFAULT_SPLIT, help="split of datasets given without one (default: test)")
    data.add_argument(
        "--max_samples",
        type=positive_int,
        help="evaluate only the first N images (frames; --volumes: volumes) of each dataset",
    )
    volumes = parser.add_argument_group("volumes (instead of 2D datasets)")
    volumes.add_argument(
        "--volumes",
        metavar="DIR",
        help="CT/MRI volumes scored in 3D: a Decathlon / nnU-Net folder (--split test: imagesTs/ + labelsTs/, "
        "train: imagesTr/ + labelsTr/) or volumes/ + labels/",
    )
    volumes.add_argument(
        "--nsd_tolerance_mm",
        type=float,
        default=DEFAULT_NSD_TOLERANCE_MM,
        metavar="MM",
        help=f"tolerance of the normalised surface distance, in mm (default {DEFAULT_NSD_TOLERANCE_MM:g})",
    )
    volumes.add_argument(
        "--ct_window",
        metavar="NAME|LOW,HIGH",
        help="CT window: abdomen, lung, bone, brain or LOW,HIGH in HU (default: the model's training window, else "
        "each volume's 0.5th..99.5th percentiles, for MRI)",
    )
    volumes.add_argument(
        "--slice_axis",
        type=int,
        choices=(0, 1, 2),
        help="the axis sliced (default: the model's training axis, else each volume's coarsest)",
    )
    volumes.add_argument(
        "--context_slices",
        action="store_true",
        default=None,
        help="2.5D: slices z-1, z, z+1 as the three channels (default: as the model was trained)",
    )
    run = parser.add_argument_group("evaluation")
    run.add_argument(
        "--mode",
        "--modes",
        dest="modes",
        nargs="+",
        default=None,
        choices=[*EVAL_MODES, CLICK_MODE, "all"],
        metavar="MODE",
        help="table rows (default: the model's own, config.default_mode: surrogate for --stage standalone models, "
        "else autosam)",
    )
    run.add_argument("--batch_size", type=positive_int, default=8, help="images per forward pass (default 8)")
    run.add_argument("--num_workers", type=int, default=0, help="data-loader worker processes")
    add_runtime_arguments(run)
    add_encoder_arguments(run)
    run.add_argument(
        "--max_clicks",
        type=positive_int,
        default=DEFAULT_MAX_CLICKS,
        help=f"{CLICK_MODE}: the most simulated clicks scored (Dice after 0, 1, 3, 5 of them and this many; default "
        f"{DEFAULT_MAX_CLICKS}); NoC follows each image up to {NOC_MAX_CLICKS} clicks whatever this is",
    )
    run.add_argument(
        "--gt_mask_logit",
        type=float,
        default=GT_MASK_LOGIT,
        help=f"logit magnitude L of the sam_gt_mask prompt (±L; default {GT_MASK_LOGIT:g})",
    )
    run.add_argument(
        "--score_all_frames",
        action="store_true",
        help="video: also score each case's first and last frame (SUN-SEG's toolbox leaves them out)",
    )
    output = parser.add_argument_group("output")
    add_output_dir_argument(
        output, default="eval_results", help=f"where {RESULTS_STEM}.json / .md go (default: ./eval_results)"
    )
    output.add_argument(
        "--save_predictions",
        action="store_true",
        help="also write masks (PNG 0/255, or label maps 0..K for multi-class models; original size) and overlays, "
        "per dataset and mode (--volumes: label volumes predictions/<mode>/<case>.nii.gz on each image's grid)",
    )
    output.add_argument("--num_overlays", type=int, default=8, help="images per overlay grid")
    output.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _dataset_specs(args: argparse.Namespace) -> list[DatasetSpec]:
    """The datasets named explicitly (`--preset` [+ `--data`], then `--datasets`), unresolved."""
    if not (args.preset_entries or args.datasets or args.eval):
        raise ValueError(
            "give at least one dataset: --preset NAME [--data FOLDER], --datasets NAME=FOLDER or --eval BENCHMARK "
            "(or --volumes DIR)"
        )
    specs = [
        DatasetSpec.of_folder(folder, args.split)
        if name is None
        else parse_dataset_spec(name if folder is None else f"{name}={folder}", args.split)
        for name, folder in args.preset_entries
    ]
    return specs + [parse_dataset_spec(text, args.split) for text in args.datasets]


def _modes(requested: Sequence[str], model: AutoSamForSegmentation) -> list[str]:
    """The modes to run: `all` is every mode the model can run (no `surrogate` without h; a multi-class model runs
    its own modes only, not the binary GT-prompted SAM)."""
    if "all" in requested:
        own_modes_only = model.config.num_classes > 1
        return [
            mode
            for mode in EVAL_MODES
            if (mode != "surrogate" or model.surrogate_decoder is not None)
            and not (own_modes_only and mode in GT_PROMPT_MODES)
        ]
    return check_modes(requested, model)


def _settings(
    args: argparse.Namespace, spec: DatasetSpec, modes: list[str], autocast_dtype: torch.dtype | None
) -> EvaluationSettings:
    return EvaluationSettings(
        modes=modes,
        batch_size=args.batch_size,
        is_video=spec.is_video,
        skip_first_and_last_frame=not args.score_all_frames,
        gt_mask_logit=args.gt_mask_logit,
        max_clicks=args.max_clicks,
        autocast_dtype=autocast_dtype,
        num_workers=args.num_workers,
        predictions_dir=Path(args.output_dir) / "predictions" / spec.key if args.save_predictions else None,
        num_overlays=args.num_overlays,
        progress=not args.quiet,
        description=f"{spec.display_name} ({len(modes)} mode{'s' if len(modes) > 1 else ''})",
        sharded=is_sharded(),
    )


def _evaluate_volumes(args: argparse.Namespace) -> int:
    """`autosam-eval --volumes DIR`: every volume predicted slice by slice and scored in 3D."""
    if args.preset_entries or args.datasets or args.eval:
        raise ValueError("--volumes: give either --volumes DIR or 2D datasets (--preset, --data, --datasets, --eval)")
    if not args.nsd_tolerance_mm > 0:
        raise ValueError(f"--nsd_tolerance_mm must be above 0 mm, got {args.nsd_tolerance_mm:g}")
    window = parse_window(args.ct_window, "--ct_window") if args.ct_window else None
    if args.split not in VOLUME_SPLITS:
        raise ValueError(f"--split {args.split}: volumes have the splits {', '.join(VOLUME_SPLITS)}")
    source = find_volume_cases(args.volumes, args.split)
    if args.max_samples:
        source = dataclasses.replace(source, cases=source.cases[: args.max_samples])
    device, autocast_dtype = resolve_runtime(args)
    device = process_device(device)
    model, processor = load_model_and_processor(args.model, revision=args.revision)
    modes = list(dict.fromkeys(args.modes or [model.config.default_mode]))
    if "all" in modes:  # every mode the model runs without ground-truth prompts
        modes = [mode for mode in _modes(["all"], model) if mode not in GT_PROMPT_MODES]
    apply_encoder_arguments(args, model.to(device))
    settings = VolumeEvaluationSettings(
        modes=modes,
        batch_size=args.batch_size,
        window=window,
        axis=args.slice_axis,
        context_slices=args.context_slices,
        nsd_tolerance_mm=args.nsd_tolerance_mm,
        autocast_dtype=autocast_dtype,
        predictions_dir=Path(args.output_dir) / "predictions" if args.save_predictions else None,
        progress=not args.quiet,
        sharded=is_sharded(),
    )
    results, volume_info = evaluate_volumes(model, processor, source, settings)
    if not is_main_process():
        return 0
    # What slicing was used: the flags given, else what the model was trained with (config.volume_input).
    used = VolumeInput.of(model).with_given(window, args.slice_axis, args.context_slices)
    report_settings = {
        "batch_size": args.batch_size,
        "device": str(device),
        "dtype": args.dtype,
        "max_samples": args.max_samples,
        "mask_threshold": model.config.mask_threshold,
        "nsd_tolerance_mm": args.nsd_tolerance_mm,
        "window": args.ct_window or (used.window and "{:g},{:g} HU".format(*used.window)),
        "slice_axis": used.slice_axis,
        "context_slices": used.context_slices,
    }
    report = build_volume_report(args.model, modes, source, results, volume_info, report_settings)
    print(write_report(report, args.output_dir))
    logger.info("wrote %s.json and %s.md in %s", RESULTS_STEM, RESULTS_STEM, args.output_dir)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Run `autosam-eval` with parsed arguments; bad input raises ValueError / OSError naming it."""
    configure_logging()
    if args.volumes is not None:
        return _evaluate_volumes(args)
    # Everything that can be wrong is checked before the first image is evaluated: datasets, device, model, modes.
    specs = resolve_datasets(_dataset_specs(args), args.eval, args.data_root, args.split)
    device, autocast_dtype = resolve_runtime(args)
    device = process_device(device)  # under `accelerate launch`: this process's GPU
    model, processor = load_model_and_processor(args.model, revision=args.revision)
    modes = _modes(args.modes or [model.config.default_mode], model)
    apply_encoder_arguments(args, model.to(device))
    evaluated = [spec for spec in specs if spec.data_dir is not None]
    num_labels = model.config.num_labels
    loaded = {spec.key: load_evaluation_dataset(spec, args.max_samples, num_labels) for spec in evaluated}

    dataset_results, dataset_info = {}, {}
    for spec in evaluated:
        dataset = loaded[spec.key]
        dataset_results[spec.key] = evaluate_dataset(
            model, processor, dataset, _settings(args, spec, modes, autocast_dtype)
        )
        dataset_info[spec.key] = {
            "num_images": len(dataset),
            "num_cases": len(set(dataset["case"])) if spec.is_video else None,
            "source": source_folder(dataset),
        }
    settings = {
        "batch_size": args.batch_size,
        "device": str(device),
        "dtype": args.dtype,
        "data_root": args.data_root,
        "max_samples": args.max_samples,
        "mask_threshold": model.config.mask_threshold,
        "gt_mask_logit": args.gt_mask_logit,
        "max_clicks": args.max_clicks,
        "skip_first_and_last_frame": not args.score_all_frames,
    }
    if not is_main_process():  # the scores are gathered on every process; the report is written once
        return 0
    report = build_report(
        args.model, modes, specs, dataset_results, dataset_info, settings, default_mode=model.config.default_mode
    )
    print(write_report(report, args.output_dir))
    logger.info("wrote %s.json and %s.md in %s", RESULTS_STEM, RESULTS_STEM, args.output_dir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`autosam-eval`); exit statuses in the module docstring."""
    return build_parser().run(evaluate, argv)


__all__ = ["build_parser", "evaluate", "main"]


if __name__ == "__main__":
    raise SystemExit(main())
