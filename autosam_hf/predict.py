"""Segment images, folders of images (or video frames) and video files with a trained AutoSAM.

    autosam-predict --model my-org/autosam-kvasir images/ --out predictions/ [--fast] [--batch-size 8]

For every input image it writes, under `--out`:
    - `masks/<stem>.png`: the binary mask, 0/255, at the image's original size;
    - `overlays/<stem>.png`: the image with the mask tinted and its contour drawn.
Video frames are named `<video stem>_<frame index, 6 digits>`. A folder is read in natural order (`frame2` before
`frame10`), so a folder of frames is just a folder. Files are written atomically (temporary file + rename).

Errors: a missing input, an empty folder, an unreadable single image or an undecodable video stops with a message
naming it. Inside a folder an unreadable file is reported (a warning naming it) and skipped. Exit status: 0 when
at least one image was segmented, 1 when nothing could be (or the model could not be loaded), 2 for bad arguments.

Python API: `predict_images` (probabilities for a list of images) and `iter_predictions` (streaming, keyed, for
large inputs) share the batching, device/dtype handling and post-processing; `overlay_mask` draws an overlay.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import PIL.Image
import torch
from tqdm.auto import tqdm

from .data.sources import natural_sort_key
from .hub.loading import load_model_and_processor
from .model import AUTOSAM_MODES, AutoSamForSegmentation, AutoSamImageProcessor, to_rgb_uint8
from .runtime import DTYPES, resolve_autocast_dtype, resolve_device
from .visualization import overlay_mask, write_png

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
VIDEO_EXTRA_HINT = "pip install 'autosam-hf[video]' (opencv-python-headless)"

Key = TypeVar("Key")


# ---------------------------------------------------------------------------------------------- prediction
def _batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def iter_predictions(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    items: Iterable[tuple[Key, PIL.Image.Image | np.ndarray | torch.Tensor]],
    mode: str | None = None,
    batch_size: int = 8,
    autocast_dtype: torch.dtype | None = None,
) -> Iterator[tuple[Key, np.ndarray]]:
    """Segment `(key, image)` pairs in batches, lazily; yields `(key, probabilities)` in input order.

    Args:
        model: AutoSAM in eval mode, on the device to run on.
        processor: its image processor.
        items: any iterable of (key, image); images are what the processor accepts (PIL, (H, W[, C]) arrays, ...).
        mode: `"autosam"`, `"surrogate"` (h only, SAM is not run) or `"sam_mask_prompt"`; default `config.default_mode`.
        batch_size: images per forward pass.
        autocast_dtype: run under `torch.autocast` in this dtype (see `resolve_autocast_dtype`); None = float32.

    Yields:
        (key, (H, W) float32 foreground probabilities at the image's original size).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(model.parameters()).device
    for batch in _batched(items, batch_size):
        keys = [key for key, _ in batch]
        inputs = processor([image for _, image in batch], return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(device)
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None),
        ):
            logits = model(pixel_values=pixel_values, mode=mode).logits
        per_image_logits = processor.post_process_logits(logits.float(), inputs["original_sizes"])
        for key, image_logits in zip(keys, per_image_logits, strict=True):
            yield key, torch.sigmoid(image_logits).cpu().numpy().astype(np.float32)


def predict_images(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    images: Sequence[PIL.Image.Image | np.ndarray | torch.Tensor],
    mode: str | None = None,
    batch_size: int = 8,
    autocast_dtype: torch.dtype | None = None,
) -> list[np.ndarray]:
    """Foreground probabilities, (H_i, W_i) float32 at each image's original size, for a list of images.

    Threshold them with `probability_threshold(model.config)` (0.5 for the default `mask_threshold` of 0 on
    logits) to get the masks the model predicts. See `iter_predictions` for the arguments.
    """
    return [
        probabilities
        for _, probabilities in iter_predictions(model, processor, enumerate(images), mode, batch_size, autocast_dtype)
    ]


def probability_threshold(config) -> float:
    """`config.mask_threshold` (on logits) as a probability threshold."""
    return 1.0 / (1.0 + math.exp(-config.mask_threshold))


# ---------------------------------------------------------------------------------------------- inputs
@dataclass
class InputImage:
    """One image to segment: its output name and either the (H, W, 3) uint8 pixels or why it could not be read."""

    name: str
    image: np.ndarray | None = None
    error: str | None = None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB. Raises ValueError naming the file when it cannot be decoded."""
    try:
        with PIL.Image.open(path) as image:
            image.load()
            return to_rgb_uint8(image, name=str(path))
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
        files = sorted(
            (child for child in path.iterdir() if child.is_file() and child.suffix.lower() in IMAGE_EXTENSIONS),
            key=lambda child: natural_sort_key(child.name),
        )
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


def segment_input(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    images: Iterable[InputImage],
    out_dir: str | os.PathLike,
    mode: str | None = None,
    batch_size: int = 8,
    autocast_dtype: torch.dtype | None = None,
    threshold: float | None = None,
    overlays: bool = True,
    total: int | None = None,
    progress: bool = True,
) -> PredictionSummary:
    """Segment `images` (from `open_input`) and write `out_dir/masks/<name>.png` (0/255) and, with `overlays`,
    `out_dir/overlays/<name>.png`. Unreadable images are logged (naming them) and skipped.

    `threshold` is a probability (default `probability_threshold(model.config)`).
    """
    out_dir = Path(out_dir)
    mask_dir, overlay_dir = out_dir / "masks", out_dir / "overlays"
    mask_dir.mkdir(parents=True, exist_ok=True)
    if overlays:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    threshold = probability_threshold(model.config) if threshold is None else threshold
    summary = PredictionSummary(written=[], skipped=[])
    progress_bar = tqdm(total=total, unit="image", desc="Segmenting", disable=not progress)

    def readable(items: Iterable[InputImage]) -> Iterator[tuple[InputImage, np.ndarray]]:
        for item in items:
            if item.error is not None:
                logger.warning("Skipping unreadable input: %s", item.error)
                summary.skipped.append(item.name)
                progress_bar.update(1)
            else:
                yield item, item.image

    with progress_bar:
        for item, probabilities in iter_predictions(
            model, processor, readable(images), mode=mode, batch_size=batch_size, autocast_dtype=autocast_dtype
        ):
            mask = probabilities > threshold
            write_png(mask.astype(np.uint8) * 255, mask_dir / f"{item.name}.png")
            if overlays:
                write_png(overlay_mask(item.image, mask), overlay_dir / f"{item.name}.png")
            summary.written.append(item.name)
            progress_bar.update(1)
    return summary


# ---------------------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autosam-predict",
        description="Segment an image, a folder of images or video frames, or a video with AutoSAM; writes binary "
        "masks (PNG 0/255, original size) and overlays.",
    )
    parser.add_argument("input", help="image file, folder of images/frames (natural order) or video file")
    parser.add_argument("--model", required=True, help="Hub id or folder of an AutoSAM checkpoint (full or adapter)")
    parser.add_argument("--out", required=True, help="output folder (masks/ and overlays/ are created in it)")
    parser.add_argument("--revision", help="Hub revision of --model")
    parser.add_argument(
        "--fast", action="store_true", help="surrogate decoder h only, SAM is not run (same as --mode surrogate)"
    )
    parser.add_argument("--mode", choices=AUTOSAM_MODES, help="forward mode (default: the model's default_mode)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", *DTYPES),
        help="compute dtype: auto = the fastest native one (bfloat16/float16 autocast on GPUs, bfloat16 on CPUs with "
        "AMX or AVX-512-BF16, else float32)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        help="foreground probability threshold (default: the model's mask_threshold, 0.5 unless configured)",
    )
    parser.add_argument("--no-overlays", action="store_true", help="write masks only")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point. Returns 0 if at least one image was segmented, 1 if none could be (errors are printed,
    naming the input or model at fault)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.fast and args.mode not in (None, "surrogate"):
        parser.error(f"--fast means --mode surrogate; it conflicts with --mode {args.mode}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        parser.error(f"--threshold is a probability in (0, 1), got {args.threshold}")
    mode = "surrogate" if args.fast else args.mode
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        images, total = open_input(args.input)
        device = resolve_device(args.device)
        autocast_dtype = resolve_autocast_dtype(args.dtype, device)
        model, processor = load_model_and_processor(args.model, revision=args.revision)
        if (mode or model.config.default_mode) == "surrogate" and model.surrogate_decoder is None:
            raise ValueError(f"--fast / --mode surrogate: {args.model} has no surrogate decoder h")
        model.to(device)
        summary = segment_input(
            model,
            processor,
            images,
            args.out,
            mode=mode,
            batch_size=args.batch_size,
            autocast_dtype=autocast_dtype,
            threshold=args.threshold,
            overlays=not args.no_overlays,
            total=total,
            progress=not args.quiet,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"autosam-predict: error: {error}", file=sys.stderr)
        return 1

    if summary.skipped:
        logger.warning("Skipped %d unreadable input(s): %s", len(summary.skipped), ", ".join(summary.skipped))
    if not summary.written:
        print(f"autosam-predict: error: no image of {args.input} could be segmented", file=sys.stderr)
        return 1
    print(f"Segmented {len(summary.written)} image(s) from {args.input} into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
