"""`autosam-predict`: segment images, folders of images (or video frames), video files and CT/MRI volumes (NIfTI
files, DICOM series folders, folders of them) with a trained AutoSAM.

    autosam-predict --model my-org/autosam-kvasir images/ --output_dir predictions/ [--fast] [--batch_size 8]
    autosam-predict --backend onnxruntime --model onnx/ images/ --output_dir predictions/  # an autosam-export folder
    autosam-predict --model runs/liver ct.nii.gz --output_dir predictions/ --ct_window abdomen  # or a DICOM folder

For every input image it writes, under `--output_dir`:
    - `masks/<stem>.png`: the binary mask, 0/255, at the image's original size: `logit > config.mask_threshold`
      (`autosam_hf.postprocessing`, as in evaluation and the pipeline; `--mask_threshold` overrides it); for a
      multi-class model the label map instead, one value per pixel: 0 background, k = class k (`config.id2label`);
    - `overlays/<stem>.png`: the image with the mask tinted and its contour drawn (several classes: each in its
      colour, with a legend below the image naming them).
For every input volume (slices along `--slice_axis`, default the coarsest-spaced, each segmented as an image, in
batches of `--batch_size` slices; intensities through `--ct_window`, else the volume's 0.5th..99.5th percentiles;
unless given, the axis, window and `--context_slices` are those a volume-trained model records, config.volume_input):
    - `<name>.nii.gz`: the label volume on the input's exact grid and header (affine, shape, orientation): 0/1, or
      the class ids of `config.id2label` for a multi-class model;
    - `<name>_overlay.png`: a montage of up to 16 slices with the labels drawn (`autosam_hf.volumes.montage`).
A folder holding `.dcm` files (or DICOM files without suffix) is one DICOM series (`inputs.is_dicom_series`); a
folder without images but with NIfTI files or DICOM series subfolders is a folder of volumes.
Video frames are named `<video stem>_<frame index, 6 digits>`. A folder is read in natural order (`frame2` before
`frame10`), so a folder of frames is just a folder; its images are the files with an extension of
`autosam_hf.data.IMAGE_EXTENSIONS` (what training reads too); the input kinds: `autosam_hf.inference.inputs`.
Files are written atomically (temporary file + rename).

Errors: a missing input, an empty folder, an unreadable single image or volume or an undecodable video stops with
a message naming it, before anything is written. Inside a folder an unreadable file (or volume) is reported (a
warning naming it) and skipped.
Exit status: 0 when at least one image was segmented; 2 for bad input (arguments, the input, a model that cannot be
loaded, or no image of the input that could be read), printed as `autosam-predict: error: <message>`.

`python -m autosam_hf.inference` and `python -m autosam_hf.predict` run it too; under `accelerate launch -m
autosam_hf.predict` each process segments its share of the input (`autosam_hf.sharding`) and the main process
reports for all. `--backend auto` runs PyTorch or `--model`'s ONNX export, whichever is faster here
(`autosam_hf.inference.backends`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import torch

from ..cli import (
    ArgumentParser,
    add_encoder_arguments,
    add_model_arguments,
    add_output_dir_argument,
    add_runtime_arguments,
    apply_encoder_arguments,
    configure_logging,
    non_negative_int,
    positive_int,
    resolve_runtime,
)
from ..hub.loading import load_model_and_processor
from ..model import AUTOSAM_MODES, AutoSamImageProcessor
from ..model.configuration_autosam import canonical_mode
from ..runtime import preparation_workers
from ..sharding import gather, is_main_process, is_sharded, process_device
from ..volumes.intensity import CT_WINDOWS, ct_window_argument
from .backends import (
    BACKENDS,
    describe_choice,
    export_folder_of,
    fastest,
    is_export_folder,
    time_backends,
    timing_image,
)
from .inputs import InputImage, open_input, shard_input
from .predictor import PredictionSettings, PredictionSummary, iter_predictions, segment_input
from .protocol import SegmentationModel

logger = logging.getLogger(__name__)

# BACKENDS (autosam_hf.inference.backends): pytorch, a trained folder or Hub id; onnxruntime, an `autosam-export`
# folder (autosam_hf.export), same outputs; auto, the faster of the two.
SUMMARY_FIELDS = ("written", "skipped", "volumes")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="autosam-predict",
        description="Segment an image, a folder of images or video frames, a video, or CT/MRI volumes with AutoSAM; "
        "writes masks (PNG at the original size: 0/255, or label maps 0..K for multi-class models) and overlays; "
        "for a volume, a NIfTI label volume on its grid and a montage.",
    )
    parser.add_argument(
        "input",
        help="image file, folder of images/frames (natural order), video file, NIfTI volume (.nii/.nii.gz), DICOM "
        "series folder, or folder of volumes",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="pytorch",
        help="pytorch (default): --model is a trained folder or Hub id; onnxruntime: --model is an autosam-export "
        "folder, run in float32 (pip install 'autosam-hf[onnx]'); auto: the faster of the two, measured on one image, "
        "where --model has an export (--model/onnx/)",
    )
    add_output_dir_argument(parser, required=True, help="output folder (masks/ and overlays/ are created in it)")
    parser.add_argument(
        "--fast", action="store_true", help="surrogate decoder h only, SAM is not run (same as --mode surrogate)"
    )
    parser.add_argument("--mode", choices=AUTOSAM_MODES, help="forward mode (default: the model's default_mode)")
    parser.add_argument("--batch_size", type=positive_int, default=8, help="images per forward pass (default 8)")
    parser.add_argument(
        "--num_workers",
        type=non_negative_int,
        help="threads preparing the next batches (decode a folder's images, resize, normalise) while the model runs; "
        "default 0 on a CPU, where they would take the model's cores, else 4",
    )
    add_runtime_arguments(parser)
    add_encoder_arguments(parser)
    parser.add_argument(
        "--mask_threshold",
        type=float,
        help="threshold on the mask logits (default: the model's config.mask_threshold, 0.0 = probability 0.5)",
    )
    parser.add_argument("--no_overlays", action="store_true", help="write masks only (volumes: no montage)")
    volumes = parser.add_argument_group("volumes (NIfTI, DICOM series)")
    volumes.add_argument(
        "--ct_window",
        type=ct_window_argument,
        metavar="WINDOW",
        help=f"CT window: a name ({', '.join(CT_WINDOWS)}) or low,high in HU (e.g. -160,240); default: the one the "
        "model was trained with, else each volume's 0.5th..99.5th intensity percentiles (MRI)",
    )
    volumes.add_argument(
        "--slice_axis",
        type=int,
        choices=(0, 1, 2),
        help="voxel axis (i, j, k) to slice along; default: the model's training axis, else the coarsest-spaced "
        "(axial for a typical CT)",
    )
    volumes.add_argument(
        "--context_slices",
        action="store_true",
        default=None,
        help="2.5D: slices z-1, z, z+1 as the three channels (default: as the model was trained)",
    )
    prompts = parser.add_argument_group("clicks and a box on top of g's prompt (a single image; binary models)")
    prompts.add_argument(
        "--points",
        type=points_argument,
        metavar="X,Y[;X,Y...]",
        help="points in the image's pixel coordinates (x right, y down), e.g. '120,80;200,95'",
    )
    prompts.add_argument(
        "--point_labels",
        type=point_labels_argument,
        metavar="L[,L...]",
        help="one label per --points point: 1 positive (part of the object), 0 negative; default all 1",
    )
    prompts.add_argument(
        "--box", type=box_argument, metavar="X0,Y0,X1,Y1", help="a box around the object, in pixel coordinates"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(value) for value in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def points_argument(text: str) -> list[list[float]]:
    """argparse `type` of `--points`: `x,y;x,y;...` → [[x, y], ...]."""
    points = [_numbers(point, "x,y pairs separated by ';'") for point in text.split(";") if point.strip()]
    if not points or any(len(point) != 2 for point in points):
        raise argparse.ArgumentTypeError(f"expected x,y pairs separated by ';' (e.g. 120,80;200,95), got {text!r}")
    return points


def point_labels_argument(text: str) -> list[int]:
    """argparse `type` of `--point_labels`: `1,0,...` → [1, 0, ...]."""
    labels = text.split(",")
    if any(label.strip() not in ("0", "1") for label in labels):
        raise argparse.ArgumentTypeError(f"expected labels 1 (positive) or 0 (negative) separated by ',', got {text!r}")
    return [int(label) for label in labels]


def box_argument(text: str) -> list[float]:
    """argparse `type` of `--box`: `x0,y0,x1,y1` → [x0, y0, x1, y1]."""
    box = _numbers(text, "x0,y0,x1,y1")
    if len(box) != 4 or box[2] < box[0] or box[3] < box[1]:
        raise argparse.ArgumentTypeError(f"expected x0,y0,x1,y1 with x0 <= x1 and y0 <= y1, got {text!r}")
    return box


def image_prompts(args: argparse.Namespace, items: list, num_labels: int) -> dict | None:
    """`iter_predictions`' prompt arguments from `--points`, `--point_labels` and `--box` (None without them);
    ValueError naming the flag unless the input is one image and the model binary."""
    if args.points is None and args.box is None:
        if args.point_labels is not None:
            raise ValueError("--point_labels: given without --points")
        return None
    flag = "--points" if args.points is not None else "--box"
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], InputImage):
        raise ValueError(f"{flag}: clicks and boxes are for a single image input, got {args.input}")
    if num_labels != 2:
        raise ValueError(f"{flag}: this model has {num_labels - 1} classes; give per-class clicks in Python")
    if args.point_labels is not None and len(args.point_labels) != len(args.points or []):
        raise ValueError(
            f"--point_labels: {len(args.point_labels)} labels for {len(args.points or [])} --points point(s)"
        )
    prompts = {}
    if args.points is not None:
        prompts["input_points"] = [args.points]
        prompts["input_labels"] = [args.point_labels or [1] * len(args.points)]
    if args.box is not None:
        prompts["input_boxes"] = [args.box]
    return prompts


def load_predictor(args: argparse.Namespace) -> tuple[SegmentationModel, AutoSamImageProcessor, torch.dtype | None]:
    """The model of `--backend` on `--device` (onnxruntime: an `OnnxRuntimeAutoSam`), its processor, and the
    autocast dtype of `--dtype` (None: float32).

    Raises:
        ValueError / OSError: a model that cannot be loaded, or options the backend cannot honour (each named).
    """
    if args.backend == "onnxruntime" or (args.backend == "auto" and is_export_folder(args.model)):
        from ..export.onnxruntime_model import load_onnxruntime_model_and_processor  # the optional onnx extra

        if args.dtype not in ("auto", "float32"):
            raise ValueError(f"--dtype {args.dtype}: --backend onnxruntime runs the exported float32 graphs")
        if args.revision:
            raise ValueError("--revision: --backend onnxruntime reads a local autosam-export folder (--model)")
        if args.compile_encoder or args.attention_kernel != "dense":
            raise ValueError("--compile_encoder / --attention_kernel: --backend onnxruntime runs the exported graphs")
        model, processor = load_onnxruntime_model_and_processor(args.model, device=args.device)
        return model, processor, None
    device, autocast_dtype = resolve_runtime(args)
    model, processor = load_model_and_processor(args.model, revision=args.revision)
    return apply_encoder_arguments(args, model.to(process_device(device))), processor, autocast_dtype


def fastest_predictor(
    args: argparse.Namespace,
    model: SegmentationModel,
    processor: AutoSamImageProcessor,
    autocast_dtype: torch.dtype | None,
    mode: str,
) -> tuple[SegmentationModel, AutoSamImageProcessor, torch.dtype | None]:
    """`--backend auto`: the PyTorch predictor of `load_predictor` or the onnxruntime one of `--model`'s export,
    whichever segmented one canvas-sized image faster in `mode` (`autosam_hf.inference.backends`); prints
    the choice. Under `accelerate launch` every process takes the main process's choice."""
    folder = export_folder_of(args.model)
    chosen, reason = "pytorch", None
    if is_export_folder(args.model):  # `load_predictor` loaded it: nothing to compare it with
        chosen, reason = "onnxruntime", f"{args.model} is an ONNX export"
    elif folder is None:
        reason = f"no ONNX export in {args.model}/onnx"
    elif args.dtype not in ("auto", "float32"):
        reason = f"--dtype {args.dtype}: onnxruntime runs float32"
    if reason is None:
        from ..export.onnxruntime_model import load_onnxruntime_model_and_processor

        onnx_model, onnx_processor = load_onnxruntime_model_and_processor(folder, device=args.device)
        if not onnx_model.supports(mode):
            reason = f"{folder} has no graphs for mode {mode}"
    if reason is not None:
        if is_main_process():
            print(f"--backend auto: {chosen} ({reason})")
        return model, processor, autocast_dtype
    candidates = {"pytorch": (model, processor, autocast_dtype), "onnxruntime": (onnx_model, onnx_processor, None)}
    image = timing_image(processor)

    def segmenter(candidate):
        return lambda: list(iter_predictions(*candidate[:2], [(0, image)], mode, 1, candidate[2]))

    runs = {name: segmenter(candidate) for name, candidate in candidates.items()}
    timings = time_backends(runs)
    chosen = gather(fastest(timings))[0]
    if is_main_process():
        print(describe_choice(chosen, timings))
    return candidates[chosen]


def predict(args: argparse.Namespace) -> int:
    """Run `autosam-predict` with parsed arguments; bad input raises ValueError / OSError naming it."""
    if args.fast and args.mode not in (None, "surrogate"):
        raise ValueError(f"--fast means --mode surrogate; it conflicts with --mode {args.mode}")
    mode = "surrogate" if args.fast else args.mode
    configure_logging()
    items, total = open_input(args.input)
    if is_sharded():  # under `accelerate launch`: this process's share, its outputs written by it
        items = shard_input(items)
        total = len(items) if hasattr(items, "__len__") else None
    wants_prompts = any(value is not None for value in (args.points, args.point_labels, args.box))
    if wants_prompts and total == 1:
        items = list(items)  # one input: an image, checked by `image_prompts`
    model, processor, autocast_dtype = load_predictor(args)
    run_mode = canonical_mode(mode or model.config.default_mode)
    if run_mode == "surrogate" and model.surrogate_decoder is None:
        raise ValueError(f"--fast / --mode surrogate: {args.model} has no surrogate decoder h")
    prompts = image_prompts(args, items, model.config.num_labels) if wants_prompts else None
    if prompts and run_mode == "surrogate":
        raise ValueError("--points / --box: the surrogate h(g(I)) (--fast, --mode surrogate) takes no prompts")
    if hasattr(model, "check_mode"):  # onnxruntime
        try:
            model.check_mode(run_mode)  # before anything is written
        except ValueError as error:
            raise ValueError(f"--mode {run_mode}: {error}") from error
    if args.backend == "auto" and not prompts:  # sparse prompts run on PyTorch
        model, processor, autocast_dtype = fastest_predictor(args, model, processor, autocast_dtype, run_mode)
    settings = PredictionSettings(
        mode=mode,
        batch_size=args.batch_size,
        num_workers=preparation_workers(model.device) if args.num_workers is None else args.num_workers,
        autocast_dtype=autocast_dtype,
        mask_threshold=args.mask_threshold,
        overlays=not args.no_overlays,
        progress=not args.quiet and is_main_process(),
        total=total,
        window=args.ct_window,
        slice_axis=args.slice_axis,
        context_slices=args.context_slices,
        prompts=prompts,
    )
    summary = segment_input(model, processor, items, args.output_dir, settings)
    if is_sharded():  # what every process wrote, in input order; reported once
        parts = gather(summary)
        joined = ([name for part in parts for name in getattr(part, field)] for field in SUMMARY_FIELDS)
        summary = PredictionSummary(*joined)
        if not is_main_process():  # the main process reports, and fails, for all
            return 0 if summary.written else 2
    if summary.skipped:
        logger.warning("Skipped %d unreadable input(s): %s", len(summary.skipped), ", ".join(summary.skipped))
    if not summary.written:
        raise ValueError(f"no image of {args.input} could be segmented")
    images = len(summary.written) - len(summary.volumes)
    counts = [f"{count} {unit}(s)" for count, unit in ((images, "image"), (len(summary.volumes), "volume")) if count]
    print(f"Segmented {' and '.join(counts)} from {args.input} into {args.output_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`autosam-predict`); exit statuses in the module docstring."""
    return build_parser().run(predict, argv)


if __name__ == "__main__":
    raise SystemExit(main())
