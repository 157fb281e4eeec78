"""autosam_hf.volumes.io: NIfTI and DICOM read on their physical grid (checked by the HU inside organs), label
volumes written back on the input's grid, and one clear line naming the file for bad input."""

import gzip
import re
import sys

import nibabel as nib
import numpy as np
import pytest

from autosam_hf.volumes import Volume, VolumeError, check_same_grid, read_volume, write_label_volume
from autosam_hf.volumes.dependencies import MissingDependencyError

from .files import linked_series, write_slice_of_another_series

VERTEBRAE = range(26, 51)  # TotalSegmentator's vertebrae_S1 .. vertebrae_C1
LIVER = 5


def mean_hu(ct: Volume, labels: Volume, values) -> float:
    return float(ct.array[np.isin(labels.array, list(values))].mean())


def test_the_dicom_series_is_read_in_hu_on_the_grid_dcm2niix_writes(dicom_ct, dicom_labels):
    assert dicom_ct.shape == (512, 512, 20) and dicom_ct.array.dtype == np.int16
    assert dicom_ct.spacing == pytest.approx((0.9765625, 0.9765625, 2.0))
    assert dicom_ct.series_uid == "" and dicom_ct.header is None  # the example is anonymised
    # The README's slice positions: z from -804.5 to -766.5 mm, increasing with k.
    assert dicom_ct.origin[2] == pytest.approx(-804.5)
    assert (dicom_ct.affine @ [0, 0, 19, 1])[2] == pytest.approx(-766.5)
    # dcm2niix's orientation: LPS columns (i towards the patient's left), rows reversed (j towards anterior).
    assert nib.aff2axcodes(dicom_ct.affine) == ("L", "A", "S")
    np.testing.assert_allclose(dicom_ct.direction, np.diag([-1.0, 1.0, 1.0]), atol=1e-9)
    check_same_grid(dicom_ct, dicom_labels)  # the label volume converted by dcm2niix lies on it
    # The README's geometry check; flipping or transposing the grid gives other values (e.g. -75 HU liver).
    assert mean_hu(dicom_ct, dicom_labels, [LIVER]) == pytest.approx(89, abs=2)
    assert mean_hu(dicom_ct, dicom_labels, VERTEBRAE) == pytest.approx(274, abs=3)
    assert (
        mean_hu(dicom_ct, Volume(dicom_labels.array[:, :, ::-1], dicom_labels.affine, dicom_labels.path), [LIVER]) < 80
    )


def test_the_nifti_pair_is_read_as_stored_and_its_labels_fit_the_ct(nifti_ct, nifti_labels):
    assert nifti_ct.shape == (122, 101, 30) and nifti_ct.array.dtype == np.int16
    assert nifti_ct.spacing == pytest.approx((3.0, 3.0, 3.0))
    assert nib.aff2axcodes(nifti_ct.affine) == ("R", "A", "S")
    np.testing.assert_allclose(nifti_ct.origin, [-177.9563, 11.319, 94.3018], atol=1e-3)
    assert nifti_labels.array.dtype == np.uint8 and len(np.unique(nifti_labels.array)) == 42  # 41 organs
    check_same_grid(nifti_ct, nifti_labels)
    # This (3 mm) CT's values when aligned; any flip of an axis gives a liver below 0 HU and vertebrae below 100.
    assert 30 < mean_hu(nifti_ct, nifti_labels, [LIVER]) < 70
    assert mean_hu(nifti_ct, nifti_labels, VERTEBRAE) > 150
    for axis in range(3):
        flipped = Volume(np.flip(nifti_labels.array, axis), nifti_labels.affine, nifti_labels.path)
        assert mean_hu(nifti_ct, flipped, [LIVER]) < 0 and mean_hu(nifti_ct, flipped, VERTEBRAE) < 100


def test_label_volumes_written_for_the_dicom_series_and_the_nifti_read_back_on_their_grid(
    tmp_path, dicom_ct, dicom_labels, nifti_ct, nifti_labels
):
    for ct, labels, name in ((dicom_ct, dicom_labels, "dicom.nii.gz"), (nifti_ct, nifti_labels, "nifti.nii")):
        path = write_label_volume(labels.array, ct, tmp_path / "out" / name)
        written = read_volume(path)
        assert written.shape == ct.shape and written.spacing == pytest.approx(ct.spacing)
        np.testing.assert_array_equal(written.affine, ct.affine.astype(np.float32))  # NIfTI stores float32
        np.testing.assert_array_equal(written.array, labels.array)
        assert written.array.dtype == np.uint8 and written.header.get_slope_inter() == (None, None)
        check_same_grid(ct, written)
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["dicom.nii.gz", "nifti.nii"]  # no temporary
    dicom_header = read_volume(tmp_path / "out" / "dicom.nii.gz").header
    assert (int(dicom_header["qform_code"]), int(dicom_header["sform_code"])) == (1, 1)  # scanner, as dcm2niix
    nifti_header = read_volume(tmp_path / "out" / "nifti.nii").header
    assert (int(nifti_header["qform_code"]), int(nifti_header["sform_code"])) == (
        int(nifti_ct.header["qform_code"]),
        int(nifti_ct.header["sform_code"]),
    )
    wide = np.full(nifti_ct.shape, 300, dtype=np.int32)
    assert read_volume(write_label_volume(wide, nifti_ct, tmp_path / "wide.nii.gz")).array.dtype == np.uint16


def test_write_label_volume_refuses_another_shape_negative_values_and_other_suffixes(tmp_path, nifti_ct):
    with pytest.raises(VolumeError, match=r"out\.nii\.gz: label volume of shape \(2, 2, 2\)"):
        write_label_volume(np.zeros((2, 2, 2)), nifti_ct, tmp_path / "out.nii.gz")
    with pytest.raises(VolumeError, match="integers >= 0"):
        write_label_volume(np.full(nifti_ct.shape, -1), nifti_ct, tmp_path / "out.nii.gz")
    with pytest.raises(VolumeError, match=r"out\.png: a label volume is written as \.nii\.gz or \.nii"):
        write_label_volume(np.zeros(nifti_ct.shape), nifti_ct, tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_truncated_nifti_is_named(tmp_path, ct_example):
    source = (ct_example / "nifti" / "labelsTr" / "ct_001.nii.gz").read_bytes()
    truncated = tmp_path / "cut.nii.gz"
    truncated.write_bytes(source[: len(source) // 2])
    with pytest.raises(VolumeError) as error:
        read_volume(truncated)
    assert one_line(error).startswith(f"{truncated}: cannot read as NIfTI: ")
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(gzip.compress(b"not a nifti header"))
    with pytest.raises(VolumeError, match=f"^{re.escape(str(broken))}: cannot read as NIfTI"):
        read_volume(broken)


def test_other_files_and_4d_volumes_are_named(tmp_path, nifti_ct):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(VolumeError, match=r"notes\.txt: not a volume"):
        read_volume(tmp_path / "notes.txt")
    with pytest.raises(VolumeError, match=r"absent\.nii\.gz: no such file or folder"):
        read_volume(tmp_path / "absent.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.int16), np.eye(4)), tmp_path / "two.nii.gz")
    with pytest.raises(VolumeError, match=r"two\.nii\.gz: a volume must be 3D, got shape \(4, 4, 4, 2\)"):
        read_volume(tmp_path / "two.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 1), np.int16), np.eye(4)), tmp_path / "one.nii.gz")
    assert read_volume(tmp_path / "one.nii.gz").shape == (4, 4, 4)


def test_a_label_volume_with_a_changed_affine_or_shape_is_not_on_the_grid(tmp_path, nifti_ct, nifti_labels):
    shifted_affine = nifti_labels.affine.copy()
    shifted_affine[0, 3] += 3.0  # one voxel
    nib.save(nib.Nifti1Image(nifti_labels.array, shifted_affine), tmp_path / "shifted.nii.gz")
    with pytest.raises(VolumeError) as error:
        check_same_grid(nifti_ct, read_volume(tmp_path / "shifted.nii.gz"))
    assert one_line(error) == (
        f"{tmp_path / 'shifted.nii.gz'}: label volume is not on the grid of {nifti_ct.path}: their affines differ by "
        "up to 3 (mm) (shifted, flipped or resampled)"
    )
    cropped = Volume(nifti_labels.array[:, :, 1:], nifti_labels.affine, tmp_path / "cropped.nii.gz")
    with pytest.raises(VolumeError, match=r"cropped\.nii\.gz: label volume of shape \(122, 101, 29\) is not on"):
        check_same_grid(nifti_ct, cropped)
    check_same_grid(nifti_ct, Volume(nifti_labels.array, nifti_labels.affine + 1e-4, nifti_labels.path))


def test_a_dicom_folder_missing_a_slice_is_named(tmp_path, ct_example):
    linked_series(ct_example, tmp_path / "gap", skip=7)
    with pytest.raises(VolumeError) as error:
        read_volume(tmp_path / "gap")
    assert one_line(error) == (
        f"{tmp_path / 'gap'}: missing slices or non-uniform slice spacing: a gap of 4 mm between the slices at "
        "-782.5 and -778.5 mm along the normal (the series' spacing is 2 mm)"
    )


def test_a_dicom_folder_of_two_series_names_both(tmp_path, ct_example):
    files = linked_series(ct_example, tmp_path / "two")
    write_slice_of_another_series(files[0], tmp_path / "two" / "other.dcm", "1.2.826.0.1.3680043.8.498.1")
    with pytest.raises(VolumeError) as error:
        read_volume(tmp_path / "two")
    assert one_line(error) == (
        f"{tmp_path / 'two'}: 2 DICOM series in one folder (SeriesInstanceUID '' (empty), "
        "'1.2.826.0.1.3680043.8.498.1'); give a folder of one series"
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(VolumeError, match="empty: no DICOM series found"):
        read_volume(tmp_path / "empty")


def test_without_nibabel_or_simpleitk_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nibabel", None)
    monkeypatch.setitem(sys.modules, "SimpleITK", None)
    (tmp_path / "ct.nii.gz").write_bytes(b"")
    with pytest.raises(MissingDependencyError, match=r"reading NIfTI volumes needs the package 'nibabel': pip inst"):
        read_volume(tmp_path / "ct.nii.gz")
    with pytest.raises(
        MissingDependencyError, match=r"reading DICOM series needs the package 'SimpleITK'.*\[volumes\]"
    ):
        read_volume(tmp_path)
