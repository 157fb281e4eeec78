"""Eager validation of image/mask files and their conversion into a `datasets.Dataset`.

Every image and every mask kept is fully decoded when a dataset is loaded (threads, a few seconds for the 800 Kvasir
training pairs; with `max_samples`, only the first N), so an unreadable or truncated file, a mask of the wrong size or
an image without a mask fails before training starts, with the file named in the error. PIL's
``LOAD_TRUNCATED_IMAGES`` is forced off while checking, so a truncated file is never silently padded.

Columns: ``id`` (string), ``image`` (`datasets.Image(mode="RGB")`: the source file, referenced by path and decoded
lazily, so nothing is copied), ``mask`` (`datasets.Image(mode="L")`: PNG bytes of the label map, 0/1 for binary
datasets, 0..K for multi-class ones, see `masks.py`); video datasets add ``case`` (string) and ``frame`` (int32,
0-based position in its case); datasets with derived boundary classes add ``instances`` (16-bit PNG of instance ids).
"""

import contextlib
import functools
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, ImageFile

from ..model import binarize_mask, mask_to_labels
from .boundary import boundary_label_map, instances_from_mask
from .masks import BINARY, MaskClasses, encode_instances_png, encode_mask_png
from .monuseg_xml import rasterize_monuseg_xml

IMAGE_FEATURES = datasets.Features(
    {"id": datasets.Value("string"), "image": datasets.Image(mode="RGB"), "mask": datasets.Image(mode="L")}
)
VIDEO_FEATURES = datasets.Features(
    {**IMAGE_FEATURES, "case": datasets.Value("string"), "frame": datasets.Value("int32")}
)
# Instance ids keep their 16-bit PNG mode (no `mode=`: converting to "L" would clip them).
INSTANCE_FEATURES = datasets.Features({**IMAGE_FEATURES, "instances": datasets.Image()})


@dataclass(frozen=True)
class ExampleFiles:
    """The files of one example, before validation.

    ``mask_format`` says how the mask file is read: ``"auto"`` (the rule in `masks.py`), ``"instance"`` (instance
    ids, ``> 0``) or ``"monuseg_xml"`` (polygons rasterised at the image's size). What it becomes (binary, label
    map, derived boundary classes) is the dataset's `MaskClasses`.
    """

    id: str
    image_path: Path
    mask_path: Path
    mask_format: str = "auto"
    case: str | None = None
    frame: int | None = None


@contextlib.contextmanager
def _strict_pil_decoding() -> Iterator[None]:
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _decode(path: Path, what: str) -> Image.Image:
    image = None
    try:
        image = Image.open(path)
        image.load()  # decodes every pixel (and closes the file), so a truncated file raises here
    except FileNotFoundError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:  # PIL's errors for bad files
        if image is not None:
            image.close()
        raise ValueError(f"Cannot read {what} {path}: {error}") from error
    return image


def _decode_mask(example: ExampleFiles, image_size: tuple[int, int]) -> Image.Image:
    decoded = _decode(example.mask_path, "mask")
    if decoded.size != image_size:
        raise ValueError(
            f"Mask {example.mask_path} is {decoded.size[0]}x{decoded.size[1]} but its image "
            f"{example.image_path} is {image_size[0]}x{image_size[1]} (width x height)."
        )
    return decoded


def _instances(example: ExampleFiles, image_size: tuple[int, int]) -> np.ndarray:
    """Instance ids (H, W) of one example's mask file (XML polygons, instance ids, or a binary mask's components)."""
    if example.mask_format == "monuseg_xml":
        return rasterize_monuseg_xml(example.mask_path, image_size, instance_labels=True).astype(np.int32)
    return instances_from_mask(
        _decode_mask(example, image_size),
        name=f"Mask {example.mask_path}",
        instance_labels=example.mask_format == "instance",
    )


def _read_mask(example: ExampleFiles, classes: MaskClasses = BINARY) -> tuple[bytes, bytes | None]:
    """Decode the image and mask of one example, check them, and return the encoded label map (and, for derived
    boundary classes, the encoded instance ids)."""
    image_size = _decode(example.image_path, "image").size
    name = f"Mask {example.mask_path}"
    if classes.boundary_width is not None:
        instances = _instances(example, image_size)
        label_map = boundary_label_map(instances, classes.boundary_width)
        return encode_mask_png(label_map), encode_instances_png(instances, name=name)
    if example.mask_format == "monuseg_xml":
        if not classes.is_binary:
            raise ValueError(
                f"{name}: XML polygons hold no class ids; a {classes.num_labels}-label dataset needs label maps"
            )
        return encode_mask_png(rasterize_monuseg_xml(example.mask_path, image_size)), None
    decoded = _decode_mask(example, image_size)
    if example.mask_format == "instance" and classes.is_binary:
        return encode_mask_png(binarize_mask(decoded, name=name, instance_labels=True)), None
    return encode_mask_png(mask_to_labels(decoded, classes.num_labels, name=name)), None


def build_dataset(
    examples: Sequence[ExampleFiles],
    source: str,
    num_workers: int | None = None,
    classes: MaskClasses = BINARY,
    max_samples: int | None = None,
) -> datasets.Dataset:
    """Validate every example kept (full decode) and return them as a `datasets.Dataset`, in the given order.

    Args:
        examples: the files, already paired by the caller.
        source: what was read (a folder), for error messages.
        num_workers: decoding threads (PIL releases the GIL while decoding); default ``min(8, cpu count)``.
        classes: what the stored masks hold: binary (default), label maps 0..K, or derived boundary classes.
        max_samples: keep only the first N examples; the others are neither decoded nor checked (quick runs).

    Raises:
        ValueError: no example, max_samples < 1, duplicate ids, an unreadable image or mask, a mask of another size
            than its image, or a label-map value above K (the file is named).
        FileNotFoundError: a listed file does not exist.
    """
    if not examples:
        raise ValueError(f"No image/mask pairs found in {source}.")
    if max_samples is not None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be at least 1, got {max_samples} (reading {source})")
        examples = examples[:max_samples]
    ids = [example.id for example in examples]
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"Duplicate example ids in {source}: {duplicates[:10]}")
    num_workers = num_workers or min(8, os.cpu_count() or 1)
    with _strict_pil_decoding(), ThreadPoolExecutor(max_workers=num_workers) as pool:
        masks, instances = zip(*pool.map(functools.partial(_read_mask, classes=classes), examples), strict=True)

    columns = {
        "id": ids,
        "image": [{"path": str(example.image_path), "bytes": None} for example in examples],
        "mask": [{"path": None, "bytes": mask} for mask in masks],
    }
    features = IMAGE_FEATURES
    if classes.boundary_width is not None:
        columns["instances"] = [{"path": None, "bytes": ids} for ids in instances]
        features = INSTANCE_FEATURES
    if examples[0].case is not None:  # video
        columns["case"] = [example.case for example in examples]
        columns["frame"] = [example.frame for example in examples]
        features = datasets.Features({**features, **VIDEO_FEATURES})
    return datasets.Dataset.from_dict(columns, features=features)
