"""`autosam-eval --volumes` (autosam_hf.evaluation.volumes): the report on the real CT equals the 3D metrics of the
label volume it writes out; a known prediction (the reference shifted by one voxel) scores MONAI's and the closed
forms; bad input stops with one line naming the file."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import command_error_line, make_tiny_model, make_tiny_processor
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

from autosam_hf.evaluation import volumes as evaluation_volumes
from autosam_hf.evaluation.cli import main
from autosam_hf.evaluation.volumes import find_volume_cases
from autosam_hf.metrics.volumes import volume_metrics
from autosam_hf.volumes import VolumeError, read_volume

SPACING = (2.0, 0.5, 1.0)  # mm along i, j, k: axis 0 is the coarsest, the slicing axis
SHAPE, SIDE = (12, 16, 14), 6
ID2LABEL = {0: "background", 1: "liver", 2: "spleen"}


@pytest.fixture(scope="module")
def binary_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("volume_model")
    # g at 32² (one HarDNet feature cell): half the work of the default tiny model on 30 slices.
    make_tiny_model(prompt_input_size=32).save_pretrained(folder)
    make_tiny_processor(prompt_size=32).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def multiclass_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("volume_model_3")
    make_tiny_model(id2label=ID2LABEL).save_pretrained(folder)
    make_tiny_processor().save_pretrained(folder)
    return folder


def write_nifti(array, path, spacing=SPACING, origin=(0.0, 0.0, 0.0)):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(array, affine).to_filename(path)
    return path


def synthetic_cases(root):
    """volumes/ + labels/: case a holds both classes, case b only the liver (the spleen empty in both)."""
    labels = {"a": np.zeros(SHAPE, np.uint8), "b": np.zeros(SHAPE, np.uint8)}
    labels["a"][2 : 2 + SIDE, 2 : 2 + SIDE, 2 : 2 + SIDE] = 1
    labels["a"][3:6, 10:14, 9:12] = 2
    labels["b"][4 : 4 + SIDE, 5 : 5 + SIDE, 4 : 4 + SIDE] = 1
    rng = np.random.default_rng(0)
    for case, label in labels.items():
        write_nifti(rng.normal(size=SHAPE).astype(np.float32), root / "volumes" / f"{case}.nii.gz")
        write_nifti(label, root / "labels" / f"{case}.nii.gz")
    return labels


def shifted_by_one_voxel(labels):
    prediction = np.zeros_like(labels)
    prediction[1:] = labels[:-1]
    return prediction


def read_report(output_dir):
    return json.loads((output_dir / "eval_results.json").read_text()), (output_dir / "eval_results.md").read_text()


def test_on_the_real_ct_the_scores_are_those_of_the_label_volume_written_out(
    binary_model_dir, shared_data_dir, tmp_path
):
    root = shared_data_dir / "ct_example" / "nifti"
    output_dir = tmp_path / "eval"
    argv = ["--model", str(binary_model_dir), "--volumes", str(root), "--split", "train", "--ct-window", "abdomen"]
    argv += ["--nsd_tolerance_mm", "3", "--batch_size", "32", "--output_dir", str(output_dir)]
    # h(g(I)), SAM not run: the same stacking and scoring as any mode, for less work.
    assert main([*argv, "--mode", "surrogate", "--save-predictions", "--quiet"]) == 0
    report, markdown = read_report(output_dir)

    assert report["data"] == {"root": str(root), "layout": "nnunet", "split": "train", "num_volumes": 1}
    assert report["volumes"]["ct_001"]["shape"] == [122, 101, 30]
    assert report["volumes"]["ct_001"]["spacing_mm"] == pytest.approx([3.0, 3.0, 3.0])
    axis = report["volumes"]["ct_001"]["slice_axis"]
    # One code path: the report's scores are metrics/volumes.py's on the prediction written on the CT's grid,
    # against the labelled voxels (a binary model's foreground is every organ).
    ct = read_volume(root / "imagesTr" / "ct_001_0000.nii.gz")
    predicted = read_volume(output_dir / "predictions" / "surrogate" / "ct_001.nii.gz")
    np.testing.assert_allclose(predicted.affine, ct.affine, atol=1e-5)
    reference = read_volume(root / "labelsTr" / "ct_001.nii.gz").array > 0
    expected = volume_metrics(predicted.array, reference.astype(np.uint8), ct.spacing, labels=[1], nsd_tolerance_mm=3.0)
    scores = report["per_volume"]["surrogate"]["ct_001"]["foreground"]
    assert {key: scores[key] for key in ("dice", "hd95", "nsd")} == pytest.approx(expected[1])
    per_slice = report["per_slice"]["surrogate"]["ct_001"]["foreground"]
    assert len(per_slice) == ct.shape[axis] == 30
    assert scores["slice_dice"] == pytest.approx(np.mean(per_slice))
    assert report["results"]["surrogate"]["foreground"] == scores  # the mean over one volume
    assert "| Volume | foreground Dice | foreground HD95 mm | foreground NSD | foreground 2D Dice |" in markdown
    assert "| ct_001 |" in markdown and "NSD at 3 mm" in markdown


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")  # MONAI's own call, made directly
@pytest.mark.filterwarnings("ignore:the (ground truth|prediction) of class:UserWarning")  # case b's empty spleen
def test_a_prediction_shifted_by_one_voxel_scores_monais_and_the_closed_forms(
    multiclass_model_dir, tmp_path, monkeypatch
):
    labels = synthetic_cases(tmp_path / "data")

    def known_prediction(model, processor, volume, mode, settings):
        return shifted_by_one_voxel(labels[volume.path.name.split(".")[0]])

    monkeypatch.setattr(evaluation_volumes, "predict_label_volume", known_prediction)
    output_dir = tmp_path / "eval"
    argv = ["--model", str(multiclass_model_dir), "--volumes", str(tmp_path / "data"), "--output_dir", str(output_dir)]
    assert main([*argv, "--nsd_tolerance_mm", "2", "--mode", "all", "--quiet"]) == 0
    report, markdown = read_report(output_dir)

    assert report["modes"] == ["surrogate", "sam_mask_prompt", "autosam"]  # "all" without the GT-prompted ones
    assert report["per_volume"]["surrogate"] == report["per_volume"]["autosam"]  # one known prediction for all

    assert report["data"]["layout"] == "volumes+labels" and report["data"]["split"] is None
    per_volume = report["per_volume"]["autosam"]
    assert list(per_volume) == ["a", "b"] and list(per_volume["a"]) == ["liver", "spleen"]
    for case, label in labels.items():
        assert report["volumes"][case]["slice_axis"] == 0
        one_hot = [
            torch.from_numpy(np.stack([v == c for c in (1, 2)]))[None] for v in (shifted_by_one_voxel(label), label)
        ]
        dice = compute_dice(*one_hot, include_background=True)[0]
        hd95 = compute_hausdorff_distance(*one_hot, include_background=True, percentile=95, spacing=list(SPACING))[0]
        nsd = compute_surface_dice(
            *one_hot, class_thresholds=[2.0, 2.0], include_background=True, spacing=list(SPACING)
        )[0]
        for index, name in enumerate(["liver", "spleen"]):
            if not (label == index + 1).any():
                continue  # MONAI gives NaN for an empty class; the rule is checked below
            assert per_volume[case][name]["dice"] == pytest.approx(dice[index].item())
            assert per_volume[case][name]["hd95"] == pytest.approx(hd95[index].item())
            assert per_volume[case][name]["nsd"] == pytest.approx(nsd[index].item())
    # Closed forms for the liver cube: overlap 5 of 6 slices; every surface voxel within one voxel (2 mm) of the
    # other surface; along the slicing axis the cube's first slice and the slice after it disagree, the other
    # ten of the twelve agree (both empty ones score 1).
    liver = per_volume["a"]["liver"]
    assert liver["dice"] == pytest.approx((SIDE - 1) / SIDE)
    assert liver["hd95"] == pytest.approx(2.0) and liver["nsd"] == pytest.approx(1.0)
    assert liver["slice_dice"] == pytest.approx(10 / 12)
    assert report["per_slice"]["autosam"]["a"]["liver"][1:4] == [1.0, 0.0, 1.0]
    # The spleen, absent from case b's reference and prediction, counts as perfect in 3D and in 2D.
    assert per_volume["b"]["spleen"] == {"dice": 1.0, "hd95": 0.0, "nsd": 1.0, "slice_dice": 1.0}
    assert report["results"]["autosam"]["spleen"]["dice"] == pytest.approx(
        (per_volume["a"]["spleen"]["dice"] + 1.0) / 2
    )
    assert report["summary"]["autosam"]["dice"] == pytest.approx(
        np.mean([report["results"]["autosam"][name]["dice"] for name in ("liver", "spleen")])
    )
    assert "| Method | liver Dice | liver HD95 mm | liver NSD | liver 2D Dice | spleen Dice |" in markdown


def test_bad_volume_input_stops_with_one_line_naming_it(binary_model_dir, tmp_path, capsys):
    synthetic_cases(tmp_path / "data")
    moved = tmp_path / "data" / "labels" / "b.nii.gz"
    write_nifti(np.zeros(SHAPE, np.uint8), moved, origin=(0.0, 5.0, 0.0))
    argv = ["--model", str(binary_model_dir), "--output_dir", str(tmp_path / "eval"), "--quiet"]

    line = command_error_line(main, [*argv, "--volumes", str(tmp_path / "data")], capsys, "autosam-eval")
    assert line.startswith(f"autosam-eval: error: {moved}: label volume is not on the grid of ")
    assert not (tmp_path / "eval" / "eval_results.json").exists()
    line = command_error_line(main, [*argv, "--volumes", str(tmp_path)], capsys, "autosam-eval")
    assert line == f"autosam-eval: error: {tmp_path}: neither a Decathlon / nnU-Net folder " + (
        "(dataset.json, imagesTr/, labelsTr/[, imagesTs/, labelsTs/]) nor volumes/ + labels/"
    )
    line = command_error_line(
        main, [*argv, "--volumes", str(tmp_path / "data"), "--ct_window", "liver"], capsys, "autosam-eval"
    )
    assert line.startswith("autosam-eval: error: --ct_window: 'liver' is neither a window name")
    line = command_error_line(
        main, [*argv, "--volumes", str(tmp_path / "data"), "--eval", "polyps"], capsys, "autosam-eval"
    )
    assert line.startswith("autosam-eval: error: --volumes: give either --volumes DIR or 2D datasets")
    line = command_error_line(
        main, [*argv, "--volumes", str(tmp_path / "data"), "--mode", "sam_gt_box"], capsys, "autosam-eval"
    )
    assert line.startswith("autosam-eval: error: --mode sam_gt_box: volumes are evaluated in the modes without")


def test_a_decathlon_test_split_needs_labels_ts(shared_data_dir, tmp_path):
    root = shared_data_dir / "ct_example" / "nifti"
    with pytest.raises(VolumeError, match=r"imagesTs: no test volumes \(--split train scores imagesTr/ \+ labelsTr/\)"):
        find_volume_cases(root, "test")
    with pytest.raises(
        VolumeError, match=r"split 'val': a Decathlon / nnU-Net folder has test \(imagesTs/ \+ labelsTs/\)"
    ):
        find_volume_cases(root, "val")
    # imagesTs/ + labelsTs/ pair by case id, the image's channel suffix left out.
    copy = tmp_path / "dataset"
    (copy / "imagesTr").mkdir(parents=True)
    (copy / "labelsTr").mkdir()
    (copy / "dataset.json").write_text((root / "dataset.json").read_text())
    image, label = root / "imagesTr" / "ct_001_0000.nii.gz", root / "labelsTr" / "ct_001.nii.gz"
    for folder, source in (("imagesTs", image), ("labelsTs", label)):
        (copy / folder).mkdir()
        (copy / folder / source.name).write_bytes(source.read_bytes())
    source = find_volume_cases(copy, "test")
    assert [(case.case_id, case.images, case.label) for case in source.cases] == [
        ("ct_001", (copy / "imagesTs" / image.name,), copy / "labelsTs" / label.name)
    ]
    (copy / "labelsTs" / label.name).rename(copy / "labelsTs" / "ct_002.nii.gz")
    with pytest.raises(VolumeError, match=r"ct_001_0000.nii.gz: no label volume .*labelsTs/ct_001.nii.gz"):
        find_volume_cases(copy, "test")


def test_volumes_refuse_the_modes_that_read_the_ground_truth():
    model = make_tiny_model()
    for mode in ("sam_gt_box", "autosam_clicks"):
        with pytest.raises(ValueError, match=mode):
            evaluation_volumes.check_volume_modes(["autosam", mode], model)
