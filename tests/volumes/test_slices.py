"""autosam_hf.volumes.slices: slices along the coarsest axis as (H, W, 3) uint8 images the image processor takes,
2.5D context, seeded subsampling of empty slices, and per-slice label maps stacked back onto the volume's grid."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import make_tiny_processor

from autosam_hf.volumes import (
    Volume,
    VolumeError,
    apply_window,
    parse_window,
    slice_axis,
    stack_label_slices,
    volume_slices,
)


def synthetic(shape=(6, 5, 4), spacing=(1.0, 1.0, 1.0)) -> Volume:
    array = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume(array, np.diag([*spacing, 1.0]), path="synthetic.nii.gz")


def test_the_default_axis_is_the_coarsest_and_among_equals_the_axial_one(dicom_ct, nifti_ct):
    assert slice_axis(dicom_ct) == 2 and slice_axis(nifti_ct) == 2  # 0.98 x 0.98 x 2 mm; 3 mm isotropic
    assert slice_axis(synthetic(spacing=(1.0, 5.0, 1.0))) == 1
    # Isotropic, with index 0 running head to foot: axial slices are along axis 0.
    rotated = Volume(np.zeros((3, 3, 3)), np.array([[0, 1, 0, 0], [0, 0, 1, 0], [-1, 0, 0, 0], [0, 0, 0, 1.0]]), "r")
    assert slice_axis(rotated) == 0


def test_axial_slices_of_the_dicom_series_are_its_images_as_stored(dicom_ct, ct_example):
    path = sorted((ct_example / "dicom" / "series").iterdir())[0]
    stored = sitk.ReadImage(str(path))
    k = round((stored.GetOrigin()[2] - dicom_ct.origin[2]) / dicom_ct.spacing[2])
    slices = volume_slices(dicom_ct, window="abdomen")
    assert [s.index for s in slices] == list(range(20)) and slices[k].label is None
    image = slices[k].image
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    expected = apply_window(sitk.GetArrayFromImage(stored)[0], parse_window("abdomen"))  # rows as stored
    np.testing.assert_array_equal(image[..., 0], expected)
    np.testing.assert_array_equal(image[..., 1], expected)
    processed = make_tiny_processor()(images=[image])
    assert processed["pixel_values"].shape == (1, 3, 24, 24) and processed["pixel_values"].dtype == torch.float32


def test_context_slices_are_the_neighbours_with_the_edges_repeated():
    volume = synthetic()
    plain = volume_slices(volume, window=(0, 119), axis=2)
    context = volume_slices(volume, window=(0, 119), axis=2, context=True)
    grey = [s.image[..., 0] for s in plain]
    for k, piece in enumerate(context):
        below, above = max(k - 1, 0), min(k + 1, 3)
        np.testing.assert_array_equal(piece.image, np.stack([grey[below], grey[k], grey[above]], axis=-1))
    # Display orientation: rows = j reversed, columns = i.
    np.testing.assert_array_equal(grey[0], apply_window(volume.array[:, ::-1, 0].T, (0, 119)))


def test_without_a_window_each_volume_uses_its_own_percentiles():
    volume = synthetic()
    image = volume_slices(volume)[0].image
    low, high = np.percentile(volume.array, (0.5, 99.5))
    np.testing.assert_array_equal(image[..., 0], apply_window(volume.array[:, ::-1, 0].T, (low, high)))


def test_empty_slices_are_subsampled_by_a_seeded_fraction_slices_with_foreground_all_kept():
    volume = synthetic(shape=(4, 4, 40))
    labels = np.zeros(volume.shape, dtype=np.uint8)
    labels[1, 2, 10:15] = 3
    kept = [s.index for s in volume_slices(volume, labels, empty_slice_fraction=0.25, seed=3)]
    assert set(range(10, 15)) <= set(kept) and len(kept) == 5 + round(0.25 * 35) and kept == sorted(kept)
    assert kept == [s.index for s in volume_slices(volume, labels, empty_slice_fraction=0.25, seed=3)]
    assert kept != [s.index for s in volume_slices(volume, labels, empty_slice_fraction=0.25, seed=4)]
    assert [s.index for s in volume_slices(volume, labels, empty_slice_fraction=0.0)] == list(range(10, 15))
    assert len(volume_slices(volume, labels)) == 40
    piece = volume_slices(volume, labels, empty_slice_fraction=0.0)[0]
    assert piece.label.dtype == np.uint8 and piece.label[4 - 1 - 2, 1] == 3 and piece.label.sum() == 3
    with pytest.raises(ValueError, match="empty_slice_fraction must be in"):
        volume_slices(volume, labels, empty_slice_fraction=1.5)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_label_maps_of_the_slices_stack_back_to_the_label_volume(nifti_ct, nifti_labels, axis):
    slices = volume_slices(nifti_ct, nifti_labels, axis=axis, window="abdomen")
    assert len({s.image.shape for s in slices}) == 1
    stacked = stack_label_slices([s.label for s in slices], nifti_ct, axis=axis)
    np.testing.assert_array_equal(stacked, nifti_labels.array)


def test_labels_off_the_grid_above_255_or_of_the_wrong_count_are_refused(nifti_ct, nifti_labels):
    moved = Volume(nifti_labels.array, nifti_labels.affine + 0.5, nifti_labels.path)
    with pytest.raises(VolumeError, match="is not on the grid of"):
        volume_slices(nifti_ct, moved)
    with pytest.raises(VolumeError, match="above 255"):
        volume_slices(nifti_ct, np.full(nifti_ct.shape, 256))
    with pytest.raises(VolumeError, match=r"shape \(2, 2, 2\) is not the shape of"):
        volume_slices(nifti_ct, np.zeros((2, 2, 2)))
    with pytest.raises(VolumeError, match="29 label maps for 30 slices along axis 2"):
        stack_label_slices([np.zeros((101, 122))] * 29, nifti_ct)
    with pytest.raises(VolumeError, match=r"label map 0 has shape \(122, 101\), expected \(101, 122\) \(H, W\)"):
        stack_label_slices([np.zeros((122, 101))] * 30, nifti_ct)
