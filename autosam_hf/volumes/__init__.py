"""CT/MRI volumes: NIfTI and DICOM series read with their physical geometry, Decathlon / nnU-Net dataset folders,
2D (or 2.5D) slices with CT windows or per-volume percentiles for the 2D model, label volumes written back on the
input's grid, and montage pictures. Needs the `volumes` extra (nibabel, SimpleITK), imported when first used."""

from .dataset_layout import (
    VolumeCase,
    VolumeDataset,
    check_label_values,
    pair_volumes_and_labels,
    read_decathlon_dataset,
    read_id2label,
    split_cases,
)
from .intensity import CT_WINDOWS, apply_window, parse_window, percentile_window
from .io import Volume, VolumeError, check_same_grid, read_dicom_series, read_nifti, read_volume, write_label_volume
from .montage import volume_montage, write_montage
from .slices import VolumeSlice, slice_axis, stack_label_slices, volume_slices

__all__ = [
    "CT_WINDOWS",
    "Volume",
    "VolumeCase",
    "VolumeDataset",
    "VolumeError",
    "VolumeSlice",
    "apply_window",
    "check_label_values",
    "check_same_grid",
    "pair_volumes_and_labels",
    "parse_window",
    "percentile_window",
    "read_decathlon_dataset",
    "read_dicom_series",
    "read_id2label",
    "read_nifti",
    "read_volume",
    "slice_axis",
    "split_cases",
    "stack_label_slices",
    "volume_montage",
    "volume_slices",
    "write_label_volume",
    "write_montage",
]
