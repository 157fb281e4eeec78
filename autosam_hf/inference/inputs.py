"""The input side of `autosam-predict`: an input path as a stream of named images.

An input is one of `INPUT_KINDS`, tried in order (a DICOM series folder; a folder of images or frames, in natural
order, or else of volumes; a video file; a NIfTI volume), or else a single image file. Each kind checks its path
eagerly (so errors come before the model is loaded) and reads the pixels lazily, as `InputImage`s (or, for CT/MRI,
`InputVolume`s) named for their output files. Another kind of input is one more `InputKind` in `INPUT_KINDS`.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps

from ..data.sources import IMAGE_EXTENSIONS, image_files, natural_sort_key
from ..model import to_rgb_uint8
from ..sharding import is_sharded, processes, shard
from ..volumes.io import NIFTI_SUFFIXES, Volume, VolumeError, is_nifti, nifti_stem, read_volume

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
VIDEO_EXTRA_HINT = "pip install 'autosam-hf[video]' (opencv-python-headless)"


@dataclass
class InputImage:
    """One image to segment: its output name and either the (H, W, 3) uint8 pixels or why it could not be read."""

    name: str
    image: np.ndarray | None = None
    error: str | None = None


@dataclass(eq=False)
class InputVolume:
    """One CT/MRI volume to segment (a NIfTI file or a DICOM series folder): its output name and either the
    `Volume` or why it could not be read."""

    name: str
    volume: Volume | None = None
    error: str | None = None


@dataclass(frozen=True)
class LazyInputs:
    """Inputs known up front (a folder's files, its volumes), each read when iteration reaches it: `read(name,
    path)` of each `(name, path)` of `sources`, in order. Sized, and split across processes without reading
    (`shard`). `volumes`: they are CT/MRI volumes (large: not read ahead)."""

    sources: list[tuple[str, Path]]
    read: Callable[[str, Path], InputImage | InputVolume]
    volumes: bool = False

    def __iter__(self) -> Iterator[InputImage | InputVolume]:
        return map(self.read_source, self.sources)

    def read_source(self, source: tuple[str, Path]) -> InputImage | InputVolume:
        """The input of one `(name, path)` of `sources`, read now."""
        return self.read(*source)

    def __len__(self) -> int:
        return len(self.sources)

    def shard(self) -> LazyInputs:
        """This process's contiguous share (`autosam_hf.sharding.shard`)."""
        return LazyInputs(shard(self.sources), self.read, self.volumes)


# The items of an input: an iterator of `InputImage`s (or `InputVolume`s; `LazyInputs` for folders) and their
# number if known (for the progress bar only).
OpenedInput = tuple[Iterable[InputImage | InputVolume], int | None]


def shard_input(items: Iterable[InputImage | InputVolume]) -> Iterable[InputImage | InputVolume]:
    """This process's share of an input under `accelerate launch` (all of it otherwise): a folder's contiguous
    share, unread files left unread; of a stream (a video's frames) every N-th item, the stream read in each."""
    if not is_sharded():
        return items
    if isinstance(items, LazyInputs):
        return items.shard()
    state = processes()
    return (item for index, item in enumerate(items) if index % state.num_processes == state.process_index)


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


# ---------------------------------------------------------------------------------------------- folders
def _unique_name(stem: str, suffix: str, used: set[str]) -> str:
    name = stem if stem not in used else f"{stem}_{suffix.lstrip('.')}"
    if name != stem:
        logger.warning("Two inputs share the name %r; writing %r for the %s file.", stem, name, suffix)
    used.add(name)
    return name


def _read_folder_image(name: str, path: Path) -> InputImage:
    try:
        return InputImage(name, image=read_image(path))
    except ValueError as error:  # one bad file does not stop a folder: reported and skipped
        return InputImage(name, error=str(error))


def _iter_folder(files: list[Path]) -> LazyInputs:
    used: set[str] = set()
    return LazyInputs([(_unique_name(path.stem, path.suffix, used), path) for path in files], _read_folder_image)


def open_folder(path: Path) -> OpenedInput:
    """The images of a folder (extensions of `IMAGE_EXTENSIONS`) in natural order, `frame2` before `frame10`, as
    training reads it; each named by its stem. A folder without images but with volumes (NIfTI files, DICOM series
    subfolders) is a folder of volumes, each named by its file stem or folder name."""
    files = sorted(image_files(path), key=lambda child: natural_sort_key(child.name))
    volumes = volume_paths(path)
    if not files and volumes:
        return _iter_volumes(volumes), len(volumes)
    if not files:
        raise ValueError(
            f"No images in folder {path} (looked for {', '.join(IMAGE_EXTENSIONS)}, and for volumes: "
            f"{', '.join(NIFTI_SUFFIXES)} files or DICOM series folders)"
        )
    if volumes:
        logger.warning("%s holds images and volumes: segmenting the images only", path)
    return _iter_folder(files), len(files)


# ---------------------------------------------------------------------------------------------- volumes
# DICOM Part 10 files carry "DICM" after a 128-byte preamble, whatever their name.
DICOM_MAGIC_OFFSET, DICOM_MAGIC = 128, b"DICM"


def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    if path.suffix:  # images, NIfTI, notes: only files without a suffix are sniffed
        return False
    with open(path, "rb") as file:
        file.seek(DICOM_MAGIC_OFFSET)
        return file.read(len(DICOM_MAGIC)) == DICOM_MAGIC


def is_dicom_series(path: Path) -> bool:
    """The rule for folders: a folder is a DICOM series when it holds a `.dcm` file or a DICOM file without
    suffix (the "DICM" marker at byte 128); any other folder is a folder of images, or else of volumes."""
    return path.is_dir() and any(
        child.is_file() and not child.name.startswith(".") and _is_dicom_file(child) for child in path.iterdir()
    )


def volume_paths(folder: Path) -> list[Path]:
    """The volumes of a folder in natural order: its NIfTI files and its subfolders that are DICOM series."""
    children = [child for child in folder.iterdir() if not child.name.startswith(".")]
    volumes = [child for child in children if (child.is_file() and is_nifti(child)) or is_dicom_series(child)]
    return sorted(volumes, key=lambda child: natural_sort_key(child.name))


def _volume_name(path: Path) -> str:
    return nifti_stem(path) if is_nifti(path) else path.name


def _read_folder_volume(name: str, path: Path) -> InputVolume:
    try:
        return InputVolume(name, volume=read_volume(path))
    except VolumeError as error:  # as for images: one bad volume of a folder is reported and skipped
        return InputVolume(name, error=str(error))


def _iter_volumes(paths: list[Path]) -> LazyInputs:
    used: set[str] = set()
    names = [_unique_name(_volume_name(path), "dicom" if path.is_dir() else "nii", used) for path in paths]
    return LazyInputs(list(zip(names, paths, strict=True)), _read_folder_volume, volumes=True)


def open_volume(path: Path) -> OpenedInput:
    """One volume (a NIfTI file or a DICOM series folder), read now, so that an unreadable one fails before the
    model is loaded; named by the file's stem or the folder's name."""
    return iter([InputVolume(_volume_name(path), volume=read_volume(path))]), 1


# ---------------------------------------------------------------------------------------------- videos
def _open_capture(path: Path):
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


def open_video(path: Path) -> OpenedInput:
    """The frames of a video file (OpenCV), named `<video stem>_<frame index, 6 digits>`; the first frame is decoded
    here, so an undecodable file fails now."""
    cv2, capture = _open_capture(path)
    ok, first_frame = capture.read()
    if not ok:
        capture.release()
        raise ValueError(f"Cannot decode video {path}: no frame could be read (unsupported codec or empty file)")
    frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # container metadata: for the progress bar only
    return _iter_video(path, cv2, capture, first_frame), frame_count if frame_count > 0 else None


# ---------------------------------------------------------------------------------------------- any input
@dataclass(frozen=True)
class InputKind:
    """A kind of input path: `name` (in messages), the file `extensions` it claims (lower case; none for kinds
    recognised otherwise, through `accepts`), and `open`, path → `OpenedInput`, raising ValueError naming the path."""

    name: str
    open: Callable[[Path], OpenedInput]
    extensions: tuple[str, ...] = ()
    accepts: Callable[[Path], bool] | None = None

    def matches(self, path: Path) -> bool:
        return self.accepts(path) if self.accepts is not None else path.suffix.lower() in self.extensions


INPUT_KINDS: list[InputKind] = [
    InputKind("DICOM series", open_volume, accepts=is_dicom_series),
    InputKind("folder", open_folder, accepts=Path.is_dir),
    InputKind("video", open_video, extensions=VIDEO_EXTENSIONS),
    InputKind("volume", open_volume, extensions=NIFTI_SUFFIXES, accepts=is_nifti),
]


def open_input(path: str | os.PathLike) -> OpenedInput:
    """The images (or volumes) of an input path: the first of `INPUT_KINDS` it matches (a DICOM series folder; a
    folder of images or frames, in natural order, or else of volumes; a video file; a NIfTI file), or else a single
    image file.

    Checks the input eagerly (so errors come before the model is loaded) and reads the pixels lazily.

    Returns:
        (the `InputImage`s or `InputVolume`s, read lazily, number of them if known).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: an empty folder, an unreadable image file or volume, or a video that cannot be decoded (the
            message names the file and, when OpenCV, nibabel or SimpleITK is missing, the extra to install).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Input not found: {path}")
    for kind in INPUT_KINDS:
        if kind.matches(path):
            return kind.open(path)
    try:
        image = read_image(path)
    except ValueError as error:
        others = "; ".join(
            f"{kind.name} extensions {', '.join(kind.extensions)}" for kind in INPUT_KINDS if kind.extensions
        )
        raise ValueError(
            f"{error} (not a readable image, and {path.suffix or 'no extension'} is not one of the {others})"
        ) from error
    return iter([InputImage(path.stem, image=image)]), 1


__all__ = [
    "IMAGE_EXTENSIONS",
    "INPUT_KINDS",
    "VIDEO_EXTENSIONS",
    "InputImage",
    "InputKind",
    "InputVolume",
    "LazyInputs",
    "OpenedInput",
    "is_dicom_series",
    "open_folder",
    "open_input",
    "open_video",
    "open_volume",
    "read_image",
    "shard_input",
    "volume_paths",
]
