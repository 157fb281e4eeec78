"""`autosam-train --data DIR` on a folder of CT/MRI volumes: slices split by volume, the classes and intensity
handling resolved from dataset.json and recorded in the model, which `autosam-predict` and `autosam-eval --volumes`
then use; on the real CT (cut into two cases), a tiny SAM and one step."""

import json
import re

import nibabel as nib
import numpy as np
import pytest
import yaml
from conftest import command_error_line, make_tiny_model
from volumes.files import write_ct_halves, write_decathlon_dataset

from autosam_hf import AutoSamConfig
from autosam_hf.evaluation import volumes as evaluation_volumes
from autosam_hf.evaluation.cli import main as evaluate_main
from autosam_hf.inference import predictor
from autosam_hf.inference.cli import main as predict_main
from autosam_hf.training.cli import build_parser, main
from autosam_hf.training.inputs import load_train_val
from autosam_hf.training.settings import resolve_settings
from autosam_hf.volumes import VolumeInput, read_volume, read_volume_folder, split_cases, training_ct_window

LIVER, SPLEEN = 5, 1  # the example's label values (dataset.json)


def settings_of(*argv: str):
    args = build_parser().parse_args(["--output_dir", "unused", *argv])
    return resolve_settings(args, "no")


def test_the_slices_are_split_by_volume_and_classed_by_dataset_json(tmp_path):
    data = write_decathlon_dataset(tmp_path / "mri", num_cases=5)
    settings = settings_of("--data", str(data), "--val_fraction", "0.4", "--val_split_seed", "7")
    assert settings.id2label == {0: "background", 1: "kidney", 2: "tumour"}
    recorded = {"window": None, "slice_axis": None, "context_slices": False, "label_values": [3, 7]}
    assert settings.volume_input == recorded  # MRI: no CT window, each volume's percentiles
    assert settings.empty_slice_fraction == 0.25 and settings.context_slices is False
    train, val = load_train_val(settings)
    expected_train, expected_val = split_cases(read_volume_folder(data).train, 0.4, 7)
    assert sorted(set(val["case"])) == [case.case_id for case in expected_val] and len(expected_val) == 2
    assert sorted(set(train["case"])) == [case.case_id for case in expected_train]
    assert not set(train["case"]) & set(val["case"])  # no volume on both sides
    rows = zip(train["case"], train["frame"], strict=True)
    assert train["id"] == [f"{case}/slice{index:04d}" for case, index in rows]
    # Every slice with a class (1..3 of each case) and round(0.25 x 3) = 1 of the 3 empty ones, per case.
    assert len(train) == 3 * (3 + 1) and {1, 2, 3} <= set(train["frame"])


def test_a_plain_volumes_and_labels_folder_trains_binary_unless_classes_are_named(tmp_path):
    source = write_decathlon_dataset(tmp_path / "source", num_cases=2)
    for kind, folder in (("volumes", "imagesTr"), ("labels", "labelsTr")):
        (tmp_path / "plain" / kind).mkdir(parents=True)
        for path in (source / folder).iterdir():
            (tmp_path / "plain" / kind / path.name.replace("_0000", "")).write_bytes(path.read_bytes())
    settings = settings_of("--data", str(tmp_path / "plain"), "--val_fraction", "0.5")
    assert settings.id2label == {0: "background", 1: "foreground"} and settings.volume_input["label_values"] is None
    train, val = load_train_val(settings)
    assert len(set(train["case"]) | set(val["case"])) == 2 and not set(train["case"]) & set(val["case"])
    assert {value for mask in train["mask"] for value in np.unique(np.asarray(mask)).tolist()} == {0, 1}
    # Named classes are the values 1..K: this data's 3 and 7 are not among them.
    named = settings_of("--data", str(tmp_path / "plain"), "--val_fraction", "0.5", "--class_names", "a", "b")
    with pytest.raises(ValueError, match=r"case\d.nii.gz: label values \[3, 7\] are not in --class_names's labels"):
        load_train_val(named)


@pytest.mark.parametrize(
    ("damage", "flags", "message"),
    [
        ("grid", [], r"labelsTr/case1.nii.gz: label volume is not on the grid of .*case1_0000.nii.gz"),
        ("labels", [], r"labelsTr/case\d.nii.gz: label values \[7\] are not in dataset.json's labels"),
        (None, ["--class_names", "liver"], r"mri: --class_names liver: not a class of its labels \(kidney, tumour\)"),
        (None, ["--preset", "kvasir"], r"--preset kvasir: --data .*mri is a folder of volumes \(no preset\)"),
        (None, ["--empty_slice_fraction", "1.5"], r"--empty_slice_fraction must be in \[0, 1\], got 1.5"),
        ("2d", ["--ct_window", "abdomen"], r"--ct_window: only for --data a folder of volumes"),
    ],
)
def test_bad_volume_input_is_one_line_naming_it(tmp_path, capsys, damage, flags, message):
    data = write_decathlon_dataset(tmp_path / "mri", num_cases=3)
    if damage == "grid":
        labels = nib.load(data / "labelsTr" / "case1.nii.gz")
        nib.save(nib.Nifti1Image(np.asanyarray(labels.dataobj), np.diag([1.0, 1.0, 2.0, 1.0])), labels.get_filename())
    elif damage == "labels":
        (data / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "kidney": 3}}))
    elif damage == "2d":
        data = tmp_path / "images"
        (data / "images").mkdir(parents=True)
    argv = ["--data", str(data), "--output_dir", str(tmp_path / "run"), "--sam", str(tmp_path / "no-sam"), *flags]
    line = command_error_line(main, argv, capsys, "autosam-train")
    assert len(line.splitlines()) == 1
    assert re.search(message, line), line


def test_slice_training_on_the_real_ct_records_its_slicing_for_predict_and_eval(shared_data_dir, tmp_path, monkeypatch):
    """One step of h on slices of the real CT (a tiny g + SAM to start from: a step of HarDNet-85's g costs ten
    times more on a slow CPU, and the data path is the same for every stage)."""
    ct_example = shared_data_dir / "ct_example"
    data = write_ct_halves(ct_example, tmp_path / "ct")  # two cases: slices 0..14 and 15..29
    start, run = tmp_path / "start", tmp_path / "run"
    make_tiny_model(id2label={0: "background", 1: "liver", 2: "spleen"}).save_pretrained(start)
    flags = {
        "init_from": start, "data": data, "output_dir": run, "stage": "surrogate", "max_train_steps": 1,
        "max_train_samples": 3, "max_eval_samples": 2, "surrogate_batch_size": 3, "per_device_eval_batch_size": 2,
        "mixed_precision": "no", "num_overlays": 0, "val_fraction": 0.5, "empty_slice_fraction": 0.1,
    }  # fmt: skip
    argv = [item for flag, value in flags.items() for item in (f"--{flag}", str(value))]
    main([*argv, "--class_names", "liver", "spleen", "--context_slices"])

    results = json.loads((run / "all_results.json").read_text())
    assert (results["train_examples"], results["validation_examples"]) == (3, 2)
    assert yaml.safe_load((run / "training_args.yaml").read_text())["context_slices"] is True
    config = AutoSamConfig.from_pretrained(run)  # what the saved model carries (its weights are not needed here)
    assert config.id2label == {0: "background", 1: "liver", 2: "spleen"}
    recorded = config.volume_input
    # The CT window is nnU-Net's range of the liver and spleen voxels of the training case (never the validation's).
    train_cases, _ = split_cases(read_volume_folder(data).train, 0.5, 42)
    ct_id2label = read_volume_folder(data).id2label
    window = training_ct_window(train_cases, ct_id2label, VolumeInput(label_values=(LIVER, SPLEEN)), 2)
    assert recorded == {"window": list(window), "slice_axis": None, "context_slices": True, "label_values": [5, 1]}
    assert -200 < window[0] < window[1] < 300  # soft tissue, not the 117 classes' bones and lungs

    # autosam-predict slices a CT as the model was trained and writes a label volume with the input's header.
    used = []

    def spy(volume, **kwargs):
        used.append(kwargs)
        return original_slices(volume, **kwargs)

    original_slices = predictor.volume_slices
    monkeypatch.setattr(predictor, "volume_slices", spy)
    source = data / "imagesTr" / "ct_b_0000.nii.gz"  # 15 of the example's slices, its header with another origin
    predict = ["--model", str(run), str(source), "--batch_size", "32", "--quiet"]
    assert predict_main([*predict, "--output_dir", str(tmp_path / "predictions")]) == 0
    assert used == [{"axis": 2, "window": tuple(window), "context": True}]
    written, original = nib.load(tmp_path / "predictions" / "ct_b_0000.nii.gz"), nib.load(source)
    np.testing.assert_array_equal(written.affine, original.affine)
    assert written.shape == original.shape and written.header.get_zooms() == original.header.get_zooms()
    assert written.header.get_sform(coded=True)[1] == original.header.get_sform(coded=True)[1]
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2}
    assert (tmp_path / "predictions" / "ct_b_0000_overlay.png").is_file()

    # autosam-eval --volumes scores class 1 against the liver (value 5) and class 2 against the spleen (value 1):
    # a prediction that is the reference so mapped scores 1. A flag given wins over what the model recorded.
    seen = []

    def reference_as_prediction(model, processor, volume, mode, settings):
        seen.append((settings.window, settings.context_slices))
        labels = read_volume(data / "labelsTr" / volume.path.name.replace("_0000", "")).array
        return np.select([labels == LIVER, labels == SPLEEN], [1, 2], 0).astype(np.uint8)

    monkeypatch.setattr(evaluation_volumes, "predict_label_volume", reference_as_prediction)
    eval_dir = tmp_path / "eval"
    evaluate = ["--model", str(run), "--volumes", str(data), "--split", "train", "--max_samples", "1", "--quiet"]
    assert evaluate_main([*evaluate, "--output_dir", str(eval_dir)]) == 0
    report = json.loads((eval_dir / "eval_results.json").read_text())
    assert seen == [(window, True)]
    assert report["settings"]["window"] == "{:g},{:g} HU".format(*window) and report["settings"]["context_slices"]
    assert {organ: scores["dice"] for organ, scores in report["per_volume"]["autosam"]["ct_a"].items()} == {
        "liver": 1.0,
        "spleen": 1.0,
    }

    class Stop(Exception):
        pass

    def stop(model, processor, volume, mode, settings):
        seen.append((settings.window, settings.context_slices))
        raise Stop  # the settings are what this run checks: no need to score again

    monkeypatch.setattr(evaluation_volumes, "predict_label_volume", stop)
    with pytest.raises(Stop):
        evaluate_main([*evaluate, "--output_dir", str(tmp_path / "lung"), "--ct_window", "lung"])
    assert seen[1] == ((-1350.0, 150.0), True)
