"""`autosam-predict`: segment images, folders of images (or video frames) and video files with a trained AutoSAM.

    autosam-predict --model my-org/autosam-kvasir images/ --output_dir predictions/ [--fast] [--batch_size 8]
    autosam-predict --backend onnxruntime --model onnx/ images/ --output_dir predictions/  # an autosam-export folder

For every input image it writes, under `--output_dir`:
    - `masks/<stem>.png`: the binary mask, 0/255, at the image's original size: `logit > config.mask_threshold`
      (`autosam_hf.postprocessing`, as in evaluation and the pipeline; `--mask_threshold` overrides it); for a
      multi-class model the label map instead, one value per pixel: 0 background, k = class k (`config.id2label`);
    - `overlays/<stem>.png`: the image with the mask tinted and its contour drawn (several classes: each in its
      colour, with a legend below the image naming them).
Video frames are named `<video stem>_<frame index, 6 digits>`. A folder is read in natural order (`frame2` before
`frame10`), so a folder of frames is just a folder; its images are the files with an extension of
`autosam_hf.data.IMAGE_EXTENSIONS` (what training reads too). Files are written atomically (temporary file + rename).

Errors: a missing input, an empty folder, an unreadable single image or an undecodable video stops with a message
naming it. Inside a folder an unreadable file is reported (a warning naming it) and skipped.
Exit status: 0 when at least one image was segmented; 2 for bad input (arguments, the input, a model that cannot be
loaded, or no image of the input that could be read), printed as `autosam-predict: error: <message>`.

Python API: `iter_predictions` (streaming, keyed, for large inputs; yields `ImagePrediction`s with the label map,
the mask and the logits) and `predict_images` (probabilities for a list of images) share the batching, device/dtype
handling and post-processing; `autosam_hf.visualization.prediction_pictures` draws what is written.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from tqdm.auto import tqdm

from .cli import (
    ArgumentParser,
    add_model_arguments,
    add_output_dir_argument,
    add_runtime_arguments,
    configure_logging,
    positive_int,
    resolve_runtime,
)
from .data.sources import IMAGE_EXTENSIONS, image_files, natural_sort_key
from .hub.loading import load_model_and_processor
from .model import AUTOSAM_MODES, AutoSamForSegmentation, AutoSamImageProcessor, to_rgb_uint8
from .model.configuration_autosam import canonical_mode
from .model.image_processing_autosam import canvases_for_mode
from .postprocessing import ImagePrediction, model_predictions
from .runtime import inference_autocast, model_inputs_for
from .visualization import prediction_pictures, write_png

if TYPE_CHECKING:  # the onnx extra is optional: imported when --backend onnxruntime asks for it
    from .export.onnxruntime_model import OnnxRuntimeAutoSam

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
VIDEO_EXTRA_HINT = "pip install 'autosam-hf[video]' (opencv-python-headless)"
# pytorch: a trained folder or Hub id; onnxruntime: an `autosam-export` folder (autosam_hf.export), same outputs.
BACKENDS = ("pytorch", "onnxruntime")

Key = TypeVar("Key")


# ---------------------------------------------------------------------------------------------- prediction
def _batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def iter_predictions(
    model: AutoSamForSegmentation | OnnxRuntimeAutoSam,
    processor: AutoSamImageProcessor,
    items: Iterable[tuple[Key, PIL.Image.Image | np.ndarray | torch.Tensor]],
    mode: str | None = None,
    batch_size: int = 8,
    autocast_dtype: torch.dtype | None = None,
    mask_threshold: float | None = None,
) -> Iterator[tuple[Key, ImagePrediction]]:
    """Segment `(key, image)` pairs in batches, lazily; yields `(key, prediction)` in input order.

    Args:
        model: AutoSAM in eval mode, on the device to run on, or an `OnnxRuntimeAutoSam` (an ONNX export).
        processor: its image processor.
        items: any iterable of (key, image); images are what the processor accepts (PIL, (H, W[, C]) arrays, ...).
        mode: `"autosam"`, `"surrogate"` (h only, SAM is not run) or `"sam_mask_prompt"`; default `config.default_mode`.
        batch_size: images per forward pass.
        autocast_dtype: run under `torch.autocast` in this dtype (see `resolve_autocast_dtype`); None = float32.
        mask_threshold: threshold on the logits; default the model's `config.mask_threshold`.

    Yields:
        (key, `ImagePrediction`: the (K, H, W) logits and (H, W) label map at the image's original size).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = model.device
    mode = canonical_mode(mode or model.config.default_mode)
    # Only the canvases the mode reads: h(g(I)) never pays for SAM's 1024² canvas (processors saved before the
    # prompt canvas existed build SAM's, which g then resizes).
    canvases = canvases_for_mode(mode) if processor.prompt_size else None
    for batch in _batched(items, batch_size):
        keys = [key for key, _ in batch]
        inputs = processor([image for _, image in batch], canvases=canvases, return_tensors="pt")
        model_inputs = model_inputs_for(model, inputs, processor.model_input_names)
        with inference_autocast(device, autocast_dtype):
            logits = model(**model_inputs, mode=mode).logits
        predictions = model_predictions(model, processor, logits, inputs["original_sizes"], mask_threshold)
        yield from zip(keys, predictions, strict=True)


def predict_images(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    images: Sequence[PIL.Image.Image | np.ndarray | torch.Tensor],
    mode: str | None = None,
    batch_size: int = 8,
    autocast_dtype: torch.dtype | None = None,
) -> list[np.ndarray]:
    """Foreground probabilities, (H_i, W_i) float32 at each image's original size, for a list of images (for
    multi-class models the probability of any class; per class: `iter_predictions`' `class_probabilities`).

    The masks the model predicts are `iter_predictions`' `ImagePrediction.mask` (logits > `config.mask_threshold`;
    probability 0.5 for the default threshold of 0). See `iter_predictions` for the arguments.
    """
    items = enumerate(images)
    return [
        prediction.probabilities
        for _, prediction in iter_predictions(model, processor, items, mode, batch_size, autocast_dtype)
    ]


# ---------------------------------------------------------------------------------------------- inputs
@dataclass
class InputImage:
    """One image to segment: its output name and either the (H, W, 3) uint8 pixels or why it could not be read."""

    name: str
    image: np.ndarray | None = None
    error: str | None = None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, turned upright by its EXIF orientation as viewers (and the transformers
    pipeline's `load_image`) show it; its mask is written at that size. Raises ValueError naming the file when it
    cannot be decoded."""
    try:
        with PIL.Image.open(path) as image:
            image.load()
            return to_rgb_uint8(PIL.ImageOps.exif_transpose(image), name=str(path))
    except (OSError, ValueError, TypeError, PIL.Image.DecompressionBombError) as error:
        raise ValueError(f"Cannot read image {path}: {error}") from error


def _unique_name(stem: str, suffix: str, used: set[str]) -> str:
    name = stem if stem not in used else f"{stem}_{suffix.lstrip('.')}"
    if name != stem:
        logger.warning("Two inputs share the name %r; writing %r for the %s file.", stem, name, suffix)
    used.add(name)
    return name


def _iter_folder(files: list[Path]) -> Iterator[InputImage]:
    used: set[str] = set()
    for path in files:
        name = _unique_name(path.stem, path.suffix, used)
        try:
            yield InputImage(name, image=read_image(path))
        except ValueError as error:
            yield InputImage(name, error=str(error))


def _open_video(path: Path):
    try:
        import cv2
    except ImportError as error:
        raise ValueError(f"Cannot read video {path}: OpenCV is not installed; {VIDEO_EXTRA_HINT}") from error
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise ValueError(f"Cannot decode video {path}: OpenCV could not open it (unsupported container or codec)")
    return cv2, capture


def _iter_video(path: Path, cv2, capture, first_frame: np.ndarray) -> Iterator[InputImage]:
    try:
        frame = first_frame
        for index in itertools.count():
            yield InputImage(f"{path.stem}_{index:06d}", image=cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            ok, frame = capture.read()
            if not ok:
                return
    finally:
        capture.release()


def open_input(path: str | os.PathLike) -> tuple[Iterator[InputImage], int | None]:
    """The images of an input path: an image file, a folder of images or frames (natural order) or a video file.

    Checks the input eagerly (so errors come before the model is loaded) and reads the pixels lazily.

    Returns:
        (iterator of `InputImage`, number of images if known).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: an empty folder, an unreadable image file, or a video that cannot be decoded (the message
            names the file and, when OpenCV is missing, the extra to install).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Input not found: {path}")
    if path.is_dir():
        files = sorted(image_files(path), key=lambda child: natural_sort_key(child.name))  # as training reads it
        if not files:
            raise ValueError(f"No images in folder {path} (looked for {', '.join(IMAGE_EXTENSIONS)})")
        return _iter_folder(files), len(files)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        cv2, capture = _open_video(path)
        ok, first_frame = capture.read()
        if not ok:
            capture.release()
            raise ValueError(f"Cannot decode video {path}: no frame could be read (unsupported codec or empty file)")
        frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # container metadata: for the progress bar only
        return _iter_video(path, cv2, capture, first_frame), frame_count if frame_count > 0 else None
    try:
        image = read_image(path)
    except ValueError as error:
        raise ValueError(
            f"{error} (not a readable image, and {path.suffix or 'no extension'} is not one of the "
            f"video extensions {', '.join(VIDEO_EXTENSIONS)})"
        ) from error
    return iter([InputImage(path.stem, image=image)]), 1


# ---------------------------------------------------------------------------------------------- outputs
@dataclass
class PredictionSummary:
    written: list[str]
    skipped: list[str]


@dataclass(frozen=True)
class PredictionSettings:
    """How `segment_input` runs: the forward `mode` (default `config.default_mode`), images per forward pass,
    autocast dtype (None: float32), the logit threshold (None: `config.mask_threshold`), whether overlays are
    written, and the progress bar (`total` images expected, if known)."""

    mode: str | None = None
    batch_size: int = 8
    autocast_dtype: torch.dtype | None = None
    mask_threshold: float | None = None
    overlays: bool = True
    progress: bool = True
    total: int | None = None


def segment_input(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    images: Iterable[InputImage],
    output_dir: str | os.PathLike,
    settings: PredictionSettings | None = None,
) -> PredictionSummary:
    """Segment `images` (from `open_input`) and write `output_dir/masks/<name>.png` (0/255; multi-class models: the
    label map, 0..K) and, with `settings.overlays`, `output_dir/overlays/<name>.png` (multi-class: a colour per class
    and a legend). Unreadable images are logged (naming them) and skipped."""
    settings = settings or PredictionSettings()
    output_dir = Path(output_dir)
    mask_dir, overlay_dir = output_dir / "masks", output_dir / "overlays"
    mask_dir.mkdir(parents=True, exist_ok=True)
    if settings.overlays:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    summary = PredictionSummary(written=[], skipped=[])
    progress_bar = tqdm(total=settings.total, unit="image", desc="Segmenting", disable=not settings.progress)

    def readable(items: Iterable[InputImage]) -> Iterator[tuple[InputImage, np.ndarray]]:
        for item in items:
            if item.error is not None:
                logger.warning("Skipping unreadable input: %s", item.error)
                summary.skipped.append(item.name)
                progress_bar.update(1)
            else:
                yield item, item.image

    predictions = iter_predictions(
        model,
        processor,
        readable(images),
        mode=settings.mode,
        batch_size=settings.batch_size,
        autocast_dtype=settings.autocast_dtype,
        mask_threshold=settings.mask_threshold,
    )
    with progress_bar:
        for item, prediction in predictions:
            mask, overlay = prediction_pictures(prediction.label_map, item.image, model.config.id2label)
            write_png(mask, mask_dir / f"{item.name}.png")
            if settings.overlays:
                write_png(overlay, overlay_dir / f"{item.name}.png")
            summary.written.append(item.name)
            progress_bar.update(1)
    return summary


# ---------------------------------------------------------------------------------------------- command line
def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="autosam-predict",
        description="Segment an image, a folder of images or video frames, or a video with AutoSAM; writes masks "
        "(PNG at the original size: 0/255, or label maps 0..K for multi-class models) and overlays.",
    )
    parser.add_argument("input", help="image file, folder of images/frames (natural order) or video file")
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
    parser.add_argument("--no_overlays", action="store_true", help="write masks only")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def load_predictor(
    args: argparse.Namespace,
) -> tuple[AutoSamForSegmentation | OnnxRuntimeAutoSam, AutoSamImageProcessor, torch.dtype | None]:
    """The model of `--backend` on `--device` (onnxruntime: an `OnnxRuntimeAutoSam`, which `iter_predictions` takes
    like the PyTorch model), its processor, and the autocast dtype of `--dtype` (None: float32).

    Raises:
        ValueError / OSError: a model that cannot be loaded, or options the backend cannot honour (each named).
    """
    if args.backend == "onnxruntime":
        from .export.onnxruntime_model import load_onnxruntime_model_and_processor

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
    images, total = open_input(args.input)
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
    )
    summary = segment_input(model, processor, images, args.output_dir, settings)
    if summary.skipped:
        logger.warning("Skipped %d unreadable input(s): %s", len(summary.skipped), ", ".join(summary.skipped))
    if not summary.written:
        raise ValueError(f"no image of {args.input} could be segmented")
    print(f"Segmented {len(summary.written)} image(s) from {args.input} into {args.output_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`autosam-predict`); exit statuses in the module docstring."""
    return build_parser().run(predict, argv)


if __name__ == "__main__":
    raise SystemExit(main())
