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
batches of `--batch_size` slices; intensities through `--ct_window`, else the volume's 0.5th..99.5th percentiles):
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

`python -m autosam_hf.inference` and `python -m autosam_hf.predict` (for `accelerate launch -m`) run it too.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import torch

from ..cli import (
    ArgumentParser,
    add_model_arguments,
    add_output_dir_argument,
    add_runtime_arguments,
    configure_logging,
    positive_int,
    resolve_runtime,
)
from ..hub.loading import load_model_and_processor
from ..model import AUTOSAM_MODES, AutoSamImageProcessor
from ..model.configuration_autosam import canonical_mode
from ..volumes.intensity import CT_WINDOWS, parse_window
from .inputs import open_input
from .predictor import PredictionSettings, segment_input
from .protocol import SegmentationModel

logger = logging.getLogger(__name__)

# pytorch: a trained folder or Hub id; onnxruntime: an `autosam-export` folder (autosam_hf.export), same outputs.
BACKENDS = ("pytorch", "onnxruntime")


def ct_window(text: str) -> tuple[float, float]:
    """argparse `type` of `--ct_window`: a name of `CT_WINDOWS` or `low,high` in HU."""
    try:
        return parse_window(text, "--ct_window")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--ct_window: ")) from None


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
        "folder, run in float32 (pip install 'autosam-hf[onnx]')",
    )
    add_output_dir_argument(parser, required=True, help="output folder (masks/ and overlays/ are created in it)")
    parser.add_argument(
        "--fast", action="store_true", help="surrogate decoder h only, SAM is not run (same as --mode surrogate)"
    )
    parser.add_argument("--mode", choices=AUTOSAM_MODES, help="forward mode (default: the model's default_mode)")
    parser.add_argument("--batch_size", type=positive_int, default=8, help="images per forward pass (default 8)")
    add_runtime_arguments(parser)
    parser.add_argument(
        "--mask_threshold",
        type=float,
        help="threshold on the mask logits (default: the model's config.mask_threshold, 0.0 = probability 0.5)",
    )
    parser.add_argument("--no_overlays", action="store_true", help="write masks only (volumes: no montage)")
    volumes = parser.add_argument_group("volumes (NIfTI, DICOM series)")
    volumes.add_argument(
        "--ct_window",
        type=ct_window,
        metavar="WINDOW",
        help=f"CT window: a name ({', '.join(CT_WINDOWS)}) or low,high in HU (e.g. -160,240); default: each "
        "volume's 0.5th..99.5th intensity percentiles (MRI)",
    )
    volumes.add_argument(
        "--slice_axis",
        type=int,
        choices=(0, 1, 2),
        help="voxel axis (i, j, k) to slice along; default the coarsest-spaced (axial for a typical CT)",
    )
    volumes.add_argument(
        "--context_slices",
        action="store_true",
        help="2.5D: slices z-1, z, z+1 as the three channels (for a model trained on such slices)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def load_predictor(args: argparse.Namespace) -> tuple[SegmentationModel, AutoSamImageProcessor, torch.dtype | None]:
    """The model of `--backend` on `--device` (onnxruntime: an `OnnxRuntimeAutoSam`), its processor, and the
    autocast dtype of `--dtype` (None: float32).

    Raises:
        ValueError / OSError: a model that cannot be loaded, or options the backend cannot honour (each named).
    """
    if args.backend == "onnxruntime":
        from ..export.onnxruntime_model import load_onnxruntime_model_and_processor  # the optional onnx extra

        if args.dtype not in ("auto", "float32"):
            raise ValueError(f"--dtype {args.dtype}: --backend onnxruntime runs the exported float32 graphs")
        if args.revision:
            raise ValueError("--revision: --backend onnxruntime reads a local autosam-export folder (--model)")
        model, processor = load_onnxruntime_model_and_processor(args.model, device=args.device)
        return model, processor, None
    device, autocast_dtype = resolve_runtime(args)
    model, processor = load_model_and_processor(args.model, revision=args.revision)
    return model.to(device), processor, autocast_dtype


def predict(args: argparse.Namespace) -> int:
    """Run `autosam-predict` with parsed arguments; bad input raises ValueError / OSError naming it."""
    if args.fast and args.mode not in (None, "surrogate"):
        raise ValueError(f"--fast means --mode surrogate; it conflicts with --mode {args.mode}")
    mode = "surrogate" if args.fast else args.mode
    configure_logging()
    items, total = open_input(args.input)
    model, processor, autocast_dtype = load_predictor(args)
    run_mode = canonical_mode(mode or model.config.default_mode)
    if run_mode == "surrogate" and model.surrogate_decoder is None:
        raise ValueError(f"--fast / --mode surrogate: {args.model} has no surrogate decoder h")
    if args.backend == "onnxruntime":
        try:
            model.check_mode(run_mode)  # before anything is written
        except ValueError as error:
            raise ValueError(f"--mode {run_mode}: {error}") from error
    settings = PredictionSettings(
        mode=mode,
        batch_size=args.batch_size,
        autocast_dtype=autocast_dtype,
        mask_threshold=args.mask_threshold,
        overlays=not args.no_overlays,
        progress=not args.quiet,
        total=total,
        window=args.ct_window,
        slice_axis=args.slice_axis,
        context_slices=args.context_slices,
    )
    summary = segment_input(model, processor, items, args.output_dir, settings)
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
