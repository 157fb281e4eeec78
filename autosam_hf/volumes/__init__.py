"""CT/MRI volumes: NIfTI and DICOM series read with their physical geometry, Decathlon / nnU-Net dataset folders,
2D (or 2.5D) slices with CT windows or per-volume percentiles for the 2D model, label volumes written back on the
input's grid, montage pictures, and the slices of labelled volumes as training rows with what a model trained on
them records (`VolumeInput`). Needs the `volumes` extra (nibabel, SimpleITK), imported when first used."""

from .dataset_layout import (
    VolumeCase,
    VolumeDataset,
    check_label_values,
    is_volume_folder,
    pair_volumes_and_labels,
    read_decathlon_dataset,
    read_id2label,
    read_volume_folder,
    split_cases,
)
from .intensity import CT_WINDOWS, apply_window, ct_window_argument, parse_window, percentile_window
from .io import Volume, VolumeError, check_same_grid, read_dicom_series, read_nifti, read_volume, write_label_volume
from .montage import volume_montage, write_montage
from .slice_dataset import (
    DEFAULT_EMPTY_SLICE_FRACTION,
    VolumeInput,
    read_labelled_case,
    slice_dataset,
    training_ct_window,
    training_volume_input,
    volume_classes,
)
from .slices import VolumeSlice, slice_axis, stack_label_slices, volume_slices

__all__ = [
    "CT_WINDOWS",
    "DEFAULT_EMPTY_SLICE_FRACTION",
    "Volume",
    "VolumeCase",
    "VolumeDataset",
    "VolumeError",
    "VolumeInput",
    "VolumeSlice",
    "apply_window",
    "check_label_values",
    "check_same_grid",
    "ct_window_argument",
    "is_volume_folder",
    "pair_volumes_and_labels",
    "parse_window",
    "percentile_window",
    "read_decathlon_dataset",
    "read_dicom_series",
    "read_id2label",
    "read_labelled_case",
    "read_nifti",
    "read_volume",
    "read_volume_folder",
    "slice_axis",
    "slice_dataset",
    "split_cases",
    "stack_label_slices",
    "training_ct_window",
    "training_volume_input",
    "volume_classes",
    "volume_montage",
    "volume_slices",
    "write_label_volume",
    "write_montage",
]
