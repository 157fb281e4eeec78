"""The real CT example (../shared/data/ct_example: a DICOM series and a NIfTI CT, each with its label volume), read
once per session."""

from pathlib import Path

import pytest

from autosam_hf.volumes import read_volume


@pytest.fixture(scope="session")
def ct_example(shared_data_dir) -> Path:
    return shared_data_dir / "ct_example"


@pytest.fixture(scope="session")
def dicom_ct(ct_example):
    return read_volume(ct_example / "dicom" / "series")


@pytest.fixture(scope="session")
def dicom_labels(ct_example):
    return read_volume(ct_example / "dicom" / "labels.nii.gz")


@pytest.fixture(scope="session")
def nifti_ct(ct_example):
    return read_volume(ct_example / "nifti" / "imagesTr" / "ct_001_0000.nii.gz")


@pytest.fixture(scope="session")
def nifti_labels(ct_example):
    return read_volume(ct_example / "nifti" / "labelsTr" / "ct_001.nii.gz")
