"""Reading CT/MRI volumes with their physical geometry (NIfTI, DICOM series) and writing label volumes back.

Every volume is held the NIfTI way: `Volume.array` is indexed (i, j, k), and `Volume.affine` maps a voxel index
(i, j, k, 1) to RAS+ millimetres (x grows towards the patient's Right, y Anterior, z Superior), as nibabel reads
and dcm2niix writes it.

- NIfTI (`.nii`, `.nii.gz`) is read with nibabel: the voxel order and affine are the file's own (its sform, else
  its qform), so a label volume written for it lands on exactly its grid.
- A DICOM series (a folder) is read with SimpleITK, not pydicom: GDCM's series reader groups the files by
  SeriesInstanceUID and sorts them by ImagePositionPatient along the slice normal, SimpleITK applies
  HU = stored value x RescaleSlope + RescaleIntercept, and its wheel carries JPEG 2000 / JPEG-LS codecs
  (pydicom needs a separate plugin per compressed transfer syntax). The voxel grid is then laid out as dcm2niix
  converts the series, so that a label volume made from the dcm2niix NIfTI is on the same grid: columns (i) as
  stored, rows (j) reversed (dcm2niix flips rows so that j grows towards the top of the image), slices (k) in
  increasing position along the normal, and DICOM's LPS coordinates turned into RAS (x and y negated).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic_write import write_atomically
from .dependencies import require

NIFTI_SUFFIXES = (".nii.gz", ".nii")
# Grids whose affines differ by less than this (mm, per affine entry) are the same grid: NIfTI stores its affine in
# float32, about 1e-5 mm of rounding at 500 mm from the origin.
GRID_TOLERANCE_MM = 1e-3
# LPS (DICOM) <-> RAS (NIfTI): x and y change sign.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class VolumeError(ValueError):
    """A volume, label volume or dataset description that cannot be used; the message names the file."""


@dataclass(eq=False)  # arrays have no single truth value
class Volume:
    """One 3D volume on its physical grid.

    Attributes:
        array (`np.ndarray` of shape `(I, J, K)`): the voxels, indexed (i, j, k) as `affine` maps them; DICOM CT
            in HU (int16, or float when the rescale slope or intercept is not an integer), NIfTI as stored (float
            when its header scales the values).
        affine (`np.ndarray` of shape `(4, 4)`): voxel index (i, j, k, 1) -> RAS+ position in mm.
        path (`Path`): the file (NIfTI) or folder (DICOM series) it was read from.
        header: the nibabel NIfTI header of a NIfTI file (written back with a label volume), None for DICOM.
        series_uid: the SeriesInstanceUID of a DICOM series ("" when anonymised away), None for NIfTI.
    """

    array: np.ndarray
    affine: np.ndarray
    path: Path
    header: object | None = None
    series_uid: str | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """The voxel size along i, j, k in mm."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def direction(self) -> np.ndarray:
        """(3, 3): column c is the unit RAS+ direction in which index c grows."""
        return self.affine[:3, :3] / np.asarray(self.spacing)

    @property
    def origin(self) -> np.ndarray:
        """(3,): the RAS+ position in mm of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()


def is_nifti(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike) -> str:
    """The file name without `.nii` / `.nii.gz`."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_volume(path: str | os.PathLike) -> Volume:
    """A NIfTI file or a folder holding one DICOM series, as a `Volume`."""
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path)
    if not path.is_file():
        raise VolumeError(f"{path}: no such file or folder")
    if not is_nifti(path):
        raise VolumeError(f"{path}: not a volume (expected a .nii / .nii.gz file or a folder of one DICOM series)")
    return read_nifti(path)


def read_nifti(path: str | os.PathLike) -> Volume:
    """A 3D NIfTI file (a 4D one only with a single volume), voxels as stored (scaled when the header says so)."""
    nib = require("nibabel", "reading NIfTI volumes")
    path = Path(path)
    try:
        image = nib.load(path)
        array = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel raises many kinds (EOFError, zlib.error, ImageFileError, OSError)
        raise VolumeError(f"{path}: cannot read as NIfTI: {_one_line(error)}") from error
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise VolumeError(
            f"{path}: a volume must be 3D, got shape {array.shape} (one channel per file, as nnU-Net's _0000, _0001)"
        )
    return Volume(array=array, affine=np.asarray(image.affine, dtype=np.float64), path=path, header=image.header)


def _dicom_geometry(reader, file_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(ImageOrientationPatient (6,), ImagePositionPatient (3,)) of one DICOM file, from its header only."""
    reader.SetFileName(file_name)
    reader.ReadImageInformation()
    try:
        orientation = np.array(reader.GetMetaData("0020|0037").split("\\"), dtype=np.float64)
        position = np.array(reader.GetMetaData("0020|0032").split("\\"), dtype=np.float64)
    except (RuntimeError, ValueError) as error:
        raise VolumeError(f"{file_name}: no usable ImagePositionPatient / ImageOrientationPatient") from error
    return orientation, position


def _check_slice_positions(folder: Path, file_names: list[str], sitk) -> None:
    """Raise unless the series' slices share one orientation and lie evenly spaced along its normal."""
    reader = sitk.ImageFileReader()
    geometry = [_dicom_geometry(reader, name) for name in file_names]
    orientations = np.stack([orientation for orientation, _ in geometry])
    if not np.allclose(orientations, orientations[0], atol=1e-4):
        raise VolumeError(f"{folder}: the slices of the series have different ImageOrientationPatient")
    if len(file_names) < 2:
        return
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    positions = np.sort([position @ normal for _, position in geometry])
    gaps = np.diff(positions)
    step = float(np.median(gaps))
    if np.min(gaps) < GRID_TOLERANCE_MM:
        raise VolumeError(
            f"{folder}: two slices of the series are at the same position ({positions[np.argmin(gaps)]} mm)"
        )
    # 1% of a slice: rounding in ImagePositionPatient, never a missing slice.
    uneven = np.abs(gaps - step) > max(GRID_TOLERANCE_MM, 0.01 * step)
    if uneven.any():
        where = int(np.argmax(uneven))
        raise VolumeError(
            f"{folder}: missing slices or non-uniform slice spacing: a gap of {gaps[where]:g} mm between the slices "
            f"at {positions[where]:g} and {positions[where + 1]:g} mm along the normal (the series' spacing is "
            f"{step:g} mm)"
        )


def read_dicom_series(folder: str | os.PathLike) -> Volume:
    """The one DICOM series in `folder`, in HU, on the grid dcm2niix would write (see the module docstring)."""
    sitk = require("SimpleITK", "reading DICOM series")
    folder = Path(folder)
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise VolumeError(f"{folder}: no DICOM series found")
    if len(series_ids) > 1:
        names = ", ".join(repr(uid) if uid else "'' (empty)" for uid in sorted(series_ids))
        raise VolumeError(
            f"{folder}: {len(series_ids)} DICOM series in one folder (SeriesInstanceUID {names}); "
            "give a folder of one series"
        )
    file_names = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0]))
    _check_slice_positions(folder, file_names, sitk)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(file_names)
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise VolumeError(f"{folder}: cannot read the DICOM series: {_one_line(error)}") from error
    if image.GetDimension() != 3:
        raise VolumeError(f"{folder}: expected a 3D series, got {image.GetDimension()} dimensions")
    # SimpleITK's array is (k, j, i); its geometry maps (i, j, k) to LPS.
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    lps = np.eye(4)
    lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    # dcm2niix's row flip: j' = (J - 1) - j.
    flip_rows = np.eye(4)
    flip_rows[1, 1] = -1
    flip_rows[1, 3] = array.shape[1] - 1
    return Volume(
        array=np.ascontiguousarray(array[:, ::-1, :]),
        affine=LPS_TO_RAS @ lps @ flip_rows,
        path=folder,
        series_uid=series_ids[0],
    )


def check_same_grid(image: Volume, labels: Volume, atol: float = GRID_TOLERANCE_MM) -> None:
    """Raise unless `labels` lies on `image`'s grid: the same shape and affines equal within `atol` mm."""
    if labels.shape != image.shape:
        raise VolumeError(
            f"{labels.path}: label volume of shape {labels.shape} is not on the grid of {image.path} {image.shape}"
        )
    difference = float(np.max(np.abs(labels.affine - image.affine)))
    if difference > atol:
        raise VolumeError(
            f"{labels.path}: label volume is not on the grid of {image.path}: their affines differ by up to "
            f"{difference:g} (mm) (shifted, flipped or resampled)"
        )


def label_dtype(labels: np.ndarray, name: str) -> np.dtype:
    """The smallest unsigned type holding the label values of `labels`, checked to be integers >= 0."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or not np.array_equal(labels, np.round(labels))):
        raise VolumeError(f"{name}: label values must be integers >= 0")
    maximum = int(labels.max()) if labels.size else 0
    if maximum > np.iinfo(np.uint16).max:
        raise VolumeError(f"{name}: label value {maximum} is beyond uint16")
    return np.dtype(np.uint8 if maximum <= np.iinfo(np.uint8).max else np.uint16)


def write_label_volume(labels: np.ndarray, reference: Volume, path: str | os.PathLike) -> Path:
    """Write the (I, J, K) label volume `labels` of `reference`'s grid as NIfTI (`.nii.gz` or `.nii`), atomically.

    The affine is `reference`'s; a NIfTI reference's header (units, qform/sform codes, orientation) is kept, with
    the intensity scaling and display range of the image removed; a DICOM reference gets the scanner-coordinate
    qform and sform that dcm2niix writes.
    """
    nib = require("nibabel", "writing NIfTI volumes")
    path = Path(path)
    if not is_nifti(path):
        raise VolumeError(f"{path}: a label volume is written as .nii.gz or .nii")
    labels = np.asarray(labels)
    if labels.shape != reference.shape:
        raise VolumeError(
            f"{path}: label volume of shape {labels.shape} for {reference.path} of shape {reference.shape}"
        )
    labels = labels.astype(label_dtype(labels, str(path)))
    if reference.header is not None:
        header = reference.header.copy()
        header["cal_min"] = header["cal_max"] = 0
        image = nib.Nifti1Image(labels, reference.affine, header)
    else:
        image = nib.Nifti1Image(labels, reference.affine)
        image.header.set_qform(reference.affine, code=1)
        image.header.set_sform(reference.affine, code=1)
        image.header.set_xyzt_units("mm", "sec")
    image.set_data_dtype(labels.dtype)
    image.header.set_slope_inter(1, 0)
    data = image.to_bytes()
    if path.name.lower().endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda temporary: temporary.write_bytes(data))
    return path


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


__all__ = [
    "GRID_TOLERANCE_MM",
    "NIFTI_SUFFIXES",
    "Volume",
    "VolumeError",
    "check_same_grid",
    "is_nifti",
    "label_dtype",
    "nifti_stem",
    "read_dicom_series",
    "read_nifti",
    "read_volume",
    "write_label_volume",
]
