"""autosam_hf.volumes.slice_dataset: labelled volumes as 2D training rows (split by volume, the classes chosen among
dataset.json's, the empty slices subsampled) and the `VolumeInput` a model records."""

import nibabel as nib
import numpy as np
import pytest
import torch

from autosam_hf import AutoSamConfig
from autosam_hf.volumes import (
    VolumeError,
    VolumeInput,
    read_volume,
    read_volume_folder,
    slice_dataset,
    split_cases,
    training_ct_window,
    training_volume_input,
    volume_classes,
    volume_slices,
)

from .files import SYNTHETIC_LABELS, write_decathlon_dataset


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return read_volume_folder(write_decathlon_dataset(tmp_path_factory.mktemp("synthetic")))


def test_slices_of_a_volume_split_lie_on_one_side_only_and_are_the_volumes_own(synthetic):
    """5 cases, 2 held out by volume: each side's rows come from its own cases only, every slice with a class is
    there (slices 1..3 of each case; no empty one with --empty_slice_fraction 0), ids name case and slice."""
    train_cases, val_cases = split_cases(synthetic.train, val_fraction=0.4, seed=1)
    assert len(val_cases) == 2 and not {c.case_id for c in train_cases} & {c.case_id for c in val_cases}
    id2label, volume_input = training_volume_input(synthetic, train_cases)
    sides = [
        slice_dataset(cases, synthetic.id2label, volume_input, 2, empty_slice_fraction=0.0)
        for cases in (train_cases, val_cases)
    ]
    for cases, rows in zip((train_cases, val_cases), sides, strict=True):
        expected = [(case.case_id, index) for case in cases for index in (1, 2, 3)]
        assert list(zip(rows["case"], rows["frame"], strict=True)) == expected
        assert rows["id"] == [f"{case}/slice{index:04d}" for case, index in expected]
    assert not set(sides[0]["case"]) & set(sides[1]["case"])

    # A row is the slice of volume_slices, and its mask the class ids (kidney 3 -> 1, tumour 7 -> 2).
    case = val_cases[0]
    image, labels = read_volume(case.images[0]), read_volume(case.label)
    reference = volume_slices(image, volume_input.class_labels(labels.array, 2))[2]
    row = sides[1][1]
    mask = np.asarray(row["mask"])
    assert row["frame"] == 2 and sorted(np.unique(mask)) == [0, 1, 2]
    np.testing.assert_array_equal(np.asarray(row["image"]), reference.image)
    np.testing.assert_array_equal(mask, reference.label)
    assert id2label == {0: "background", 1: "kidney", 2: "tumour"} and volume_input.label_values == (3, 7)


def test_empty_slices_are_kept_in_the_fraction_asked(synthetic):
    cases = synthetic.train[:1]
    _, volume_input = training_volume_input(synthetic, cases)
    every = slice_dataset(cases, synthetic.id2label, volume_input, 2, empty_slice_fraction=1.0)
    half = slice_dataset(cases, synthetic.id2label, volume_input, 2, empty_slice_fraction=0.5, seed=3)
    assert every["frame"] == [0, 1, 2, 3, 4, 5]
    assert len(half) == 3 + round(0.5 * 3) and {1, 2, 3} <= set(half["frame"])
    assert len(slice_dataset(cases, synthetic.id2label, volume_input, 2, max_slices=2)) == 2


def test_a_subset_of_classes_keeps_their_values_and_makes_the_others_background(synthetic):
    id2label, values = volume_classes(synthetic.id2label, ["tumour"], "dataset.json")
    assert id2label == {0: "background", 1: "tumour"} and values == (7,)
    labels = np.array([0, 3, 7, 7, 3])
    np.testing.assert_array_equal(VolumeInput(label_values=values).class_labels(labels, 1), [0, 0, 1, 1, 0])
    np.testing.assert_array_equal(VolumeInput(label_values=(7, 3)).class_labels(labels, 2), [0, 2, 1, 1, 2])
    # No dataset.json (volumes/ + labels/): binary unless named; named classes are the values 1..K.
    assert volume_classes(None, None, "x") == ({0: "background", 1: "foreground"}, None)
    np.testing.assert_array_equal(VolumeInput().class_labels(labels, 1), [0, 1, 1, 1, 1])
    assert volume_classes(None, ["a", "b"], "x") == ({0: "background", 1: "a", 2: "b"}, None)
    with pytest.raises(VolumeError, match=r"^folder/dataset.json: --class_names liver: not a class of its labels"):
        volume_classes(synthetic.id2label, ["tumour", "liver"], "folder/dataset.json")


def test_the_ct_window_of_a_ct_dataset_is_nnunets_percentiles_of_the_trained_voxels(tmp_path):
    dataset = read_volume_folder(write_decathlon_dataset(tmp_path, num_cases=2, channel="ct"))
    assert dataset.is_ct
    voxels = []
    for case in dataset.train:
        image, labels = read_volume(case.images[0]), read_volume(case.label)
        voxels.append(image.array[labels.array == 3])  # kidney only: the tumour is not trained
    low, high = np.percentile(np.concatenate(voxels), (0.5, 99.5))
    id2label, volume_input = training_volume_input(dataset, dataset.train, class_names=["kidney"], context_slices=True)
    assert volume_input.window == pytest.approx((low, high)) and id2label == {0: "background", 1: "kidney"}
    assert volume_input.context_slices and volume_input.slice_axis is None
    # A window given wins; an MRI dataset (channel "MRI") has none: each volume's own percentiles.
    assert training_volume_input(dataset, dataset.train, window="abdomen")[1].window == (-160.0, 240.0)
    mri = read_volume_folder(write_decathlon_dataset(tmp_path / "mri", num_cases=2))
    assert not mri.is_ct and training_volume_input(mri, mri.train)[1].window is None
    with pytest.raises(VolumeError, match="no voxel of the trained classes"):
        training_ct_window(dataset.train[:1], dataset.id2label, VolumeInput(label_values=(99,)), 1)


def test_the_volume_input_a_config_records_round_trips_and_flags_given_win(tmp_path):
    recorded = VolumeInput(window=(-30.0, 74.0), slice_axis=1, context_slices=True, label_values=(5, 1))
    config = AutoSamConfig(volume_input=recorded.to_dict())
    config.save_pretrained(tmp_path)
    assert VolumeInput.of(AutoSamConfig.from_pretrained(tmp_path)) == recorded
    assert VolumeInput.of(AutoSamConfig()) == VolumeInput()  # not trained on volumes: the old defaults
    given = recorded.with_given(window="lung", slice_axis=2, context_slices=False)
    assert given == VolumeInput((-1350.0, 150.0), 2, False, (5, 1))
    assert recorded.with_given() == recorded


def test_a_training_case_that_does_not_fit_is_named(tmp_path, synthetic):
    from autosam_hf.volumes import read_labelled_case

    case = synthetic.train[0]
    labels = nib.load(case.label)
    affine = labels.affine.copy()
    affine[0, 3] += 3.0  # one voxel along i
    nib.save(nib.Nifti1Image(np.asanyarray(labels.dataobj), affine), tmp_path / "moved.nii.gz")
    bad = type(case)(case.case_id, case.images, tmp_path / "moved.nii.gz")
    with pytest.raises(VolumeError, match=r"moved.nii.gz: label volume is not on the grid of .*case0_0000.nii.gz"):
        read_labelled_case(bad, synthetic.id2label)
    unknown = {value: name for name, value in SYNTHETIC_LABELS.items() if name != "tumour"}
    with pytest.raises(VolumeError, match=r"case0.nii.gz: label values \[7\] are not in dataset.json's labels"):
        read_labelled_case(case, unknown)
    two_channels = type(case)(case.case_id, (case.images[0], case.images[0]), case.label)
    with pytest.raises(VolumeError, match="has 2 channels; the 2D model reads one"):
        read_labelled_case(two_channels, synthetic.id2label)


def test_the_embedding_cache_holds_each_slice_as_it_holds_an_image(synthetic, tiny_model, tiny_processor, tmp_path):
    """Rows of slices are images to the cache: one entry per slice, SAM's features of that very slice."""
    from autosam_hf.data import EmbeddingCache
    from autosam_hf.data.embedding_cache import STORAGE_DTYPES

    _, volume_input = training_volume_input(synthetic, synthetic.train[:1], context_slices=True)
    rows = slice_dataset(synthetic.train[:1], synthetic.id2label, volume_input, 2, empty_slice_fraction=0.0)
    cache = EmbeddingCache.build(rows, tiny_model, tiny_processor, tmp_path, storage_dtype=STORAGE_DTYPES["float32"])
    assert len(cache) == len(rows) == 3
    for index in range(len(rows)):
        pixel_values = tiny_processor(images=[np.asarray(rows[index]["image"])], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            expected = tiny_model.image_features(pixel_values)["image_embeddings"][0]
        torch.testing.assert_close(cache.get(index)["image_embeddings"], expected, atol=1e-5, rtol=0)
