"""autosam_hf.volumes.dataset_layout: Decathlon / nnU-Net folders and volumes/ + labels/ pairs, listed per volume
and split by volume; dataset.json labels in both spellings, checked against the label values found."""

import json
import shutil

import numpy as np
import pytest

from autosam_hf.volumes import (
    VolumeCase,
    VolumeError,
    check_label_values,
    pair_volumes_and_labels,
    read_decathlon_dataset,
    read_id2label,
    split_cases,
)


def write_json(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def touch(*paths):
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_the_example_nnunet_v2_dataset_is_one_labelled_case_with_its_117_classes(ct_example, nifti_labels):
    dataset = read_decathlon_dataset(ct_example / "nifti")
    root = ct_example / "nifti"
    assert dataset.train == (
        VolumeCase("ct_001", (root / "imagesTr" / "ct_001_0000.nii.gz",), root / "labelsTr" / "ct_001.nii.gz"),
    )
    assert dataset.test == ()
    assert len(dataset.id2label) == 118 and dataset.id2label[0] == "background" and dataset.id2label[5] == "liver"
    check_label_values(nifti_labels.array, dataset.id2label, str(nifti_labels.path))


def test_dataset_json_labels_in_both_spellings_give_one_id2label(tmp_path):
    nnunet = write_json(tmp_path / "v2.json", {"labels": {"background": 0, "liver": 2, "tumour": 1}})
    decathlon = write_json(tmp_path / "msd.json", {"labels": {"0": "background", "2": "liver", "1": "tumour"}})
    assert read_id2label(nnunet) == read_id2label(decathlon) == {0: "background", 1: "tumour", 2: "liver"}
    assert list(read_id2label(nnunet)) == [0, 1, 2]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"background": 0, "whole tumour": [1, 2]}, r"label 'whole tumour': \[1, 2\] is not an integer label value"),
        ({"background": 0, "liver": 1, "again": 1}, "label value 1 is given twice"),
        ({"liver": 1}, r"\"labels\" has no background \(value 0\)"),
        ([], 'no "labels" mapping'),
    ],
)
def test_bad_dataset_json_labels_are_named(tmp_path, labels, message):
    path = write_json(tmp_path / "dataset.json", {"labels": labels})
    with pytest.raises(VolumeError, match=f"dataset.json: {message}"):
        read_id2label(path)


def test_a_dataset_json_missing_a_label_found_in_the_labels_is_named(tmp_path, ct_example, nifti_labels):
    description = json.loads((ct_example / "nifti" / "dataset.json").read_text())
    del description["labels"]["liver"]
    id2label = read_id2label(write_json(tmp_path / "dataset.json", description))
    with pytest.raises(VolumeError) as error:
        check_label_values(nifti_labels.array, id2label, "labelsTr/ct_001.nii.gz")
    assert str(error.value).startswith("labelsTr/ct_001.nii.gz: label values [5] are not in dataset.json's labels")


def test_channels_test_cases_and_the_file_ending_of_an_nnunet_folder(tmp_path):
    write_json(tmp_path / "dataset.json", {"labels": {"background": 0, "prostate": 1}, "file_ending": ".nii"})
    touch(
        *(tmp_path / "imagesTr" / f"{case}_{channel:04d}.nii" for case in ("p_2", "p_10") for channel in (1, 0)),
        *(tmp_path / "labelsTr" / f"{case}.nii" for case in ("p_2", "p_10")),
        tmp_path / "imagesTs" / "p_7_0000.nii",
        tmp_path / "imagesTr" / "p_2_0000.nii.gz",  # another file ending: not a case
    )
    dataset = read_decathlon_dataset(tmp_path)
    assert [case.case_id for case in dataset.train] == ["p_10", "p_2"]
    assert [path.name for path in dataset.train[1].images] == ["p_2_0000.nii", "p_2_0001.nii"]
    assert dataset.train[1].label == tmp_path / "labelsTr" / "p_2.nii"
    assert dataset.test == (VolumeCase("p_7", (tmp_path / "imagesTs" / "p_7_0000.nii",)),)


def test_the_decathlons_own_file_names_have_no_channel_suffix(tmp_path):
    write_json(tmp_path / "dataset.json", {"labels": {"0": "background", "1": "spleen"}})
    touch(tmp_path / "imagesTr" / "spleen_2.nii.gz", tmp_path / "labelsTr" / "spleen_2.nii.gz")
    (case,) = read_decathlon_dataset(tmp_path).train
    assert case == VolumeCase(
        "spleen_2", (tmp_path / "imagesTr" / "spleen_2.nii.gz",), tmp_path / "labelsTr" / "spleen_2.nii.gz"
    )


def test_unpaired_files_and_missing_channels_are_named(tmp_path):
    write_json(tmp_path / "dataset.json", {"labels": {"background": 0, "liver": 1}})
    touch(
        tmp_path / "imagesTr" / "a_0000.nii.gz", tmp_path / "labelsTr" / "a.nii.gz", tmp_path / "labelsTr" / "b.nii.gz"
    )
    with pytest.raises(VolumeError, match=r"labelsTr/b\.nii\.gz: no image volume in .*imagesTr for this label volume"):
        read_decathlon_dataset(tmp_path)
    touch(tmp_path / "imagesTr" / "b_0001.nii.gz")
    with pytest.raises(VolumeError, match=r"imagesTr: case 'b' has channels \[1\], expected 0\.\.0"):
        read_decathlon_dataset(tmp_path)
    shutil.rmtree(tmp_path / "labelsTr")
    with pytest.raises(VolumeError, match=r"labelsTr: no such folder"):
        read_decathlon_dataset(tmp_path)
    write_json(tmp_path / "dataset.json", {"labels": {"background": 0}, "file_ending": "nii"})
    with pytest.raises(
        VolumeError, match=r"dataset\.json: \"file_ending\" must be a suffix such as \"\.nii\.gz\", got 'nii'"
    ):
        read_decathlon_dataset(tmp_path)
    with pytest.raises(VolumeError, match=r"empty: no dataset\.json"):
        read_decathlon_dataset(tmp_path / "empty")


def test_volumes_pair_with_labels_by_name_dicom_folders_included(tmp_path):
    touch(tmp_path / "volumes" / "b.nii", tmp_path / "volumes" / "a" / "1.dcm", tmp_path / "volumes" / "readme.txt")
    touch(tmp_path / "labels" / "a.nii.gz", tmp_path / "labels" / "b.nii.gz")
    assert pair_volumes_and_labels(tmp_path / "volumes", tmp_path / "labels") == (
        VolumeCase("a", (tmp_path / "volumes" / "a",), tmp_path / "labels" / "a.nii.gz"),
        VolumeCase("b", (tmp_path / "volumes" / "b.nii",), tmp_path / "labels" / "b.nii.gz"),
    )
    touch(tmp_path / "labels" / "c.nii.gz")
    with pytest.raises(VolumeError, match=r"labels/c\.nii\.gz: nothing named 'c' in .*volumes to pair it with"):
        pair_volumes_and_labels(tmp_path / "volumes", tmp_path / "labels")


def test_the_split_is_by_volume_seeded_and_keeps_the_order(tmp_path):
    cases = [VolumeCase(f"case_{i}", (tmp_path / f"case_{i}.nii.gz",), tmp_path / f"l{i}.nii.gz") for i in range(10)]
    train, val = split_cases(cases, val_fraction=0.3, seed=1)
    assert len(val) == 3 and len(train) == 7 and set(train).isdisjoint(val) and set(train) | set(val) == set(cases)
    assert list(train) == [case for case in cases if case in train]  # original order on each side
    assert split_cases(cases, val_fraction=0.3, seed=1) == (train, val)
    assert split_cases(cases, val_fraction=0.3, seed=2) != (train, val)
    with pytest.raises(ValueError, match="Cannot split 1"):
        split_cases(cases[:1])
    with pytest.raises(VolumeError, match=r"case ids are not unique: \['case_0'\]"):
        split_cases([cases[0], cases[0]])


def test_check_label_values_accepts_classes_absent_from_a_volume():
    check_label_values(np.array([[[0, 2]]]), {0: "background", 1: "a", 2: "b"}, "x.nii.gz")
