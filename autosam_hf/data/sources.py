"""Readers for the folder layouts of the AutoSAM datasets. Each returns a validated `datasets.Dataset` (columns in
`dataset_builder.py`), in natural file-name order (``2.jpg`` before ``10.jpg``).

* `load_image_mask_folder`: ``<root>/images/<stem>.<ext>`` + ``<root>/masks/<stem>.<ext>``. This covers this
  project's ``<dataset>/<split>/`` folders, Kvasir-SEG's original layout (``Kvasir-SEG/{images,masks}``, JPEG
  masks) and PraNet's ``TrainDataset`` and ``TestDataset/<Name>``.
* `load_glas_warwick`: GlaS's flat ``Warwick QU Dataset`` folder (``train_1.bmp`` + ``train_1_anno.bmp``, ...).
* `load_monuseg_xml`: MoNuSeg's official release, images and XML polygon annotations.
* `load_sunseg`: one SUN-SEG split, ``<root>/Frame/<case>/*.jpg`` + ``<root>/GT/<case>/*.png``.
"""

import os
import re
from pathlib import Path

import datasets

from .dataset_builder import ExampleFiles, build_dataset
from .masks import BINARY, MaskClasses

# File types read as images, by training, evaluation and `autosam-predict` alike (lower case; matched ignoring case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# The folder of 16-bit instance-id masks beside `masks/` (MoNuSeg's test split), read for derived boundary classes.
INSTANCE_MASKS_DIR = "masks_instance"
GLAS_SPLIT_PREFIXES = {"train": ("train",), "test": ("testA", "testB"), "testA": ("testA",), "testB": ("testB",)}


def natural_sort_key(name: str) -> list:
    """Sort key that orders embedded numbers by value: ``image2`` before ``image10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {path} does not exist or is not a folder.")
    return path


def image_files(folder: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """The files of ``folder`` with one of ``extensions``, hidden files skipped (macOS writes "._x.jpg" beside
    x.jpg), in directory order: what training and prediction read from a folder."""
    return [
        path
        for path in folder.iterdir()
        if not path.name.startswith(".") and path.is_file() and path.suffix.lower() in extensions
    ]


def _files_by_stem(folder: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> dict[str, Path]:
    """Map file stem → path for the image files of ``folder`` (`image_files`)."""
    by_stem: dict[str, Path] = {}
    for path in image_files(folder, extensions):
        if path.stem in by_stem:
            raise ValueError(f"Two files with stem {path.stem!r} in {folder}: {by_stem[path.stem].name}, {path.name}")
        by_stem[path.stem] = path
    return by_stem


def _pair_by_stem(
    images: dict[str, Path], masks: dict[str, Path], images_dir: Path, masks_dir: Path
) -> list[tuple[str, Path, Path]]:
    """Pair images and masks by stem; any image without a mask (or mask without an image) is an error."""
    if not images:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in {images_dir}.")
    images_without_mask = sorted(set(images) - set(masks), key=natural_sort_key)
    if images_without_mask:
        names = [images[stem].name for stem in images_without_mask[:5]]
        raise ValueError(f"{len(images_without_mask)} image(s) in {images_dir} have no mask in {masks_dir}: {names}")
    masks_without_image = sorted(set(masks) - set(images), key=natural_sort_key)
    if masks_without_image:
        names = [masks[stem].name for stem in masks_without_image[:5]]
        raise ValueError(f"{len(masks_without_image)} mask(s) in {masks_dir} have no image in {images_dir}: {names}")
    return [(stem, images[stem], masks[stem]) for stem in sorted(images, key=natural_sort_key)]


def load_image_mask_folder(
    root: str | os.PathLike,
    images_dir: str = "images",
    masks_dir: str = "masks",
    num_workers: int | None = None,
    classes: MaskClasses = BINARY,
    max_samples: int | None = None,
) -> datasets.Dataset:
    """Load ``<root>/<images_dir>/<stem>.*`` paired with ``<root>/<masks_dir>/<stem>.*``.

    Args:
        root: the folder holding the two sub-folders.
        images_dir, masks_dir: their names (e.g. ``masks_dir="masks_instance"`` for MoNuSeg's 16-bit labels).
        num_workers: decoding threads for validation.
        classes: what the masks become: binary (default: 0/255 or 0/1 masks binarised), label maps 0..K (one PNG
            of class ids per image), or derived boundary classes (`MaskClasses`).
        max_samples: read only the first N pairs (natural order of the stems); the rest are not decoded.

    Returns:
        `datasets.Dataset` with columns ``id`` (the stem), ``image``, ``mask`` (0/1, or 0..K) [, ``instances``].
    """
    root = _require_dir(Path(root), "Dataset folder")
    images_path = _require_dir(root / images_dir, "Image folder")
    masks_path = _require_dir(root / masks_dir, "Mask folder")
    pairs = _pair_by_stem(_files_by_stem(images_path), _files_by_stem(masks_path), images_path, masks_path)
    examples = [ExampleFiles(stem, image, mask) for stem, image, mask in pairs]
    return build_dataset(examples, str(root), num_workers, classes, max_samples)


def load_glas_warwick(
    root: str | os.PathLike,
    split: str,
    num_workers: int | None = None,
    classes: MaskClasses = BINARY,
    max_samples: int | None = None,
) -> datasets.Dataset:
    """Load GlaS from the flat ``Warwick QU Dataset (Released 2016_07_08)`` folder.

    Images are ``<prefix>_<n>.bmp`` and annotations ``<prefix>_<n>_anno.bmp`` (gland instance ids, so masks are
    binarised ``> 0``); ``Grade.csv`` and other files are ignored.

    Args:
        split: ``"train"`` (85 images), ``"test"`` (testA + testB, 80), ``"testA"`` (60) or ``"testB"`` (20).
    """
    if split not in GLAS_SPLIT_PREFIXES:
        raise ValueError(f"Unknown GlaS split {split!r}; expected one of {sorted(GLAS_SPLIT_PREFIXES)}.")
    root = _require_dir(Path(root), "GlaS folder")
    prefixes = GLAS_SPLIT_PREFIXES[split]
    files = {stem: path for stem, path in _files_by_stem(root).items() if stem.split("_")[0] in prefixes}
    images = {stem: path for stem, path in files.items() if not stem.endswith("_anno")}
    masks = {stem.removesuffix("_anno"): path for stem, path in files.items() if stem.endswith("_anno")}
    if not images:
        raise ValueError(f"No GlaS {split} images ({'_*.bmp, '.join(prefixes)}_*.bmp) in {root}.")
    pairs = _pair_by_stem(images, masks, root, root)
    examples = [ExampleFiles(stem, image, mask, mask_format="instance") for stem, image, mask in pairs]
    return build_dataset(examples, f"{root} ({split})", num_workers, classes, max_samples)


def _first_existing_dir(root: Path, names: tuple[str, ...]) -> Path:
    return next((root / name for name in names if (root / name).is_dir()), root)


def load_monuseg_xml(
    root: str | os.PathLike,
    num_workers: int | None = None,
    classes: MaskClasses = BINARY,
    max_samples: int | None = None,
) -> datasets.Dataset:
    """Load MoNuSeg from its official release: tissue images + XML nucleus polygons, rasterised to binary masks.

    Accepted layouts: ``<root>/Tissue Images/*.tif`` + ``<root>/Annotations/*.xml`` (training data), or images and
    XML files side by side in ``<root>`` (test data). Polygons are filled with PIL, boundary included
    (`monuseg_xml.rasterize_monuseg_xml`).
    """
    root = _require_dir(Path(root), "MoNuSeg folder")
    images_dir = _first_existing_dir(root, ("Tissue Images", "images"))
    annotations_dir = _first_existing_dir(root, ("Annotations", "annotations"))
    annotations = _files_by_stem(annotations_dir, extensions=(".xml",))
    pairs = _pair_by_stem(_files_by_stem(images_dir), annotations, images_dir, annotations_dir)
    examples = [ExampleFiles(stem, image, xml, mask_format="monuseg_xml") for stem, image, xml in pairs]
    return build_dataset(examples, str(root), num_workers, classes, max_samples)


def load_sunseg(
    root: str | os.PathLike,
    num_workers: int | None = None,
    classes: MaskClasses = BINARY,
    max_samples: int | None = None,
) -> datasets.Dataset:
    """Load one SUN-SEG split folder (e.g. ``SUN-SEG/TestEasyDataset/Unseen``): ``Frame/<case>/*.jpg`` with
    ``GT/<case>/*.png`` of the same stems.

    Cases and the frames within a case are in natural order, so a case's frames are consecutive rows in time order.

    Returns:
        `datasets.Dataset` with columns ``id`` (``"<case>/<stem>"``), ``image``, ``mask`` (0/1), ``case`` and
        ``frame`` (0-based position within its case).
    """
    root = _require_dir(Path(root), "SUN-SEG folder")
    frames_root = _require_dir(root / "Frame", "SUN-SEG frame folder")
    masks_root = _require_dir(root / "GT", "SUN-SEG ground-truth folder")
    cases = sorted((path.name for path in frames_root.iterdir() if path.is_dir()), key=natural_sort_key)
    if not cases:
        raise ValueError(f"No case folders in {frames_root}.")
    examples = []
    for case in cases:
        frames_dir = frames_root / case
        masks_dir = _require_dir(masks_root / case, f"Ground-truth folder of case {case!r}:")
        pairs = _pair_by_stem(_files_by_stem(frames_dir), _files_by_stem(masks_dir), frames_dir, masks_dir)
        for position, (stem, frame, mask) in enumerate(pairs):
            examples.append(ExampleFiles(f"{case}/{stem}", frame, mask, case=case, frame=position))
    return build_dataset(examples, str(root), num_workers, classes, max_samples)
