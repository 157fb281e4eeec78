"""`autosam-predict` (autosam_hf.inference.cli): masks and overlays written for folders, the model's masks, --fast
without SAM, multi-class label maps, bad input ending in one `autosam-predict: error:` line, exit status 2, and
volumes: label volumes on the input's grid and header (the real NIfTI CT and DICOM series), montages, folders of
volumes, class ids, unreadable volumes."""

import logging
import math
import re
import runpy
import sys

import numpy as np
import pytest
import torch
from conftest import make_tiny_sam_config
from transformers import SamModel

from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor
from autosam_hf.hub import load_model_and_processor
from autosam_hf.inference.cli import main
from autosam_hf.volumes import check_same_grid, read_volume, volume_slices
from autosam_hf.volumes.slices import to_display

from .conftest import SIZES, read_png, reference_masks, write_nifti


def test_cli_writes_masks_and_overlays_and_skips_the_bad_file(model_dir, image_folder, tmp_path, caplog, capsys):
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        code = main(
            ["--model", str(model_dir), str(image_folder), "--output_dir", str(out), "--batch-size", "2", "--quiet"]
        )
    assert code == 0
    assert "broken.png" in caplog.text and "._a.png" not in caplog.text  # named, skipped; hidden files unread
    assert "Segmented 3 image(s)" in capsys.readouterr().out
    assert sorted(path.name for path in (out / "masks").iterdir()) == ["a.png", "b.png", "c.png"]
    assert sorted(path.name for path in (out / "overlays").iterdir()) == ["a.png", "b.png", "c.png"]
    for name, (height, width) in zip("abc", SIZES, strict=True):
        mask = read_png(out / "masks" / f"{name}.png")
        assert mask.shape == (height, width) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        assert read_png(out / "overlays" / f"{name}.png").shape == (height, width, 3)


# The folded attention kernel gives the dense one's logits up to float32 rounding: the same masks.
@pytest.mark.parametrize("encoder_flags", [[], ["--attention_kernel", "folded"]], ids=["default", "folded_kernel"])
def test_cli_masks_are_the_models_masks(model_dir, loaded, image_folder, tmp_path, encoder_flags):
    out = tmp_path / "out"
    assert (
        main(
            [
                "--model",
                str(model_dir),
                str(image_folder / "a.png"),
                "--output-dir",
                str(out),
                "--dtype",
                "float32",
                "--quiet",
                *encoder_flags,
            ]
        )
        == 0
    )
    (expected,) = reference_masks(loaded, [read_png(image_folder / "a.png")])
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(read_png(out / "masks" / "a.png") == 255, expected)


def test_fast_runs_the_surrogate_decoder_without_sam(model_dir, loaded, image_folder, tmp_path, monkeypatch):
    def sam_must_not_run(*args, **kwargs):
        raise AssertionError("SAM ran in --fast mode")

    monkeypatch.setattr(AutoSamForSegmentation, "get_image_embeddings", sam_must_not_run)
    monkeypatch.setattr(AutoSamForSegmentation, "decode_masks", sam_must_not_run)
    monkeypatch.setattr(SamModel, "forward", sam_must_not_run)
    out = tmp_path / "out"
    assert (
        main(
            [
                "--model",
                str(model_dir),
                str(image_folder / "a.png"),
                "--output_dir",
                str(out),
                "--fast",
                "--dtype",
                "float32",
                "--quiet",
            ]
        )
        == 0
    )
    monkeypatch.undo()
    (expected,) = reference_masks(loaded, [read_png(image_folder / "a.png")], mode="surrogate")
    np.testing.assert_array_equal(read_png(out / "masks" / "a.png") == 255, expected)


def bad_input_error(argv, capsys) -> str:
    """The one-line error of a command that must stop with exit status 2 and no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    last_line = re.split(r"[\r\n]", error.rstrip("\n"))[-1]  # after any progress bar of the model's loading
    assert last_line.startswith("autosam-predict: error: ")
    return last_line


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda tmp: tmp / "missing.png", "Input not found"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "No images in folder"),
        (lambda tmp: (tmp / "bad.png").write_bytes(b"junk") and tmp / "bad.png", "Cannot read image"),
        (lambda tmp: (tmp / "bad.mp4").write_bytes(b"junk" * 20) and tmp / "bad.mp4", "Cannot decode video"),
    ],
    ids=["missing", "empty-folder", "unreadable-image", "undecodable-video"],
)
def test_bad_input_fails_naming_it(model_dir, tmp_path, capsys, make_input, message):
    path = make_input(tmp_path)
    error = bad_input_error(
        ["--model", str(model_dir), str(path), "--output_dir", str(tmp_path / "out"), "--quiet"], capsys
    )
    assert message in error and str(path) in error


def test_folder_of_only_bad_files_is_bad_input(model_dir, tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "x.jpg").write_bytes(b"junk")
    argv = ["--model", str(model_dir), str(folder), "--output_dir", str(tmp_path / "out"), "--quiet"]
    assert "could be segmented" in bad_input_error(argv, capsys)


def test_unloadable_model_fails_naming_it(image_folder, tmp_path, capsys):
    argv = ["--model", str(tmp_path / "nope"), str(image_folder), "--output_dir", str(tmp_path / "out"), "--quiet"]
    assert str(tmp_path / "nope") in bad_input_error(argv, capsys)


def test_fast_conflicts_with_another_mode(model_dir, image_folder, tmp_path, capsys):
    argv = ["--model", str(model_dir), str(image_folder), "--output_dir", str(tmp_path), "--fast", "--mode", "autosam"]
    assert "--fast means --mode surrogate" in bad_input_error(argv, capsys)


def test_multi_class_models_write_label_maps_and_overlays_with_a_legend(image_folder, tmp_path):
    folder = tmp_path / "model"
    id2label = {0: "background", 1: "interior", 2: "boundary"}
    image = read_png(image_folder / "a.png")

    def label_map_of(model: AutoSamForSegmentation, processor: AutoSamImageProcessor) -> torch.Tensor:
        inputs = processor(image)
        with torch.no_grad():
            outputs = model(**inputs, mode="surrogate")
        return processor.post_process_semantic_segmentation(outputs, inputs["original_sizes"].tolist())[0]

    # A random model whose map shows both classes on this machine's kernels (which class wins where depends on the
    # CPU's instruction set): the first seed that does.
    for seed in range(20):
        torch.manual_seed(seed)
        model = AutoSamForSegmentation.from_sam(
            SamModel(make_tiny_sam_config()), prompt_input_size=32, id2label=id2label
        ).eval()  # as predict runs it (a forward in train mode would move g's BatchNorm statistics)
        with torch.no_grad():  # decisive logits
            model.surrogate_decoder.layers[-1].weight.mul_(1e2)
        processor = AutoSamImageProcessor.from_model_config(model.config)
        if {1, 2} <= set(label_map_of(model, processor).unique().tolist()):
            break
    else:
        pytest.fail("no seed in 0..19 gives a random model with both classes")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    out = tmp_path / "out"
    assert (
        main(["--model", str(folder), str(image_folder / "a.png"), "--output_dir", str(out), "--fast", "--quiet"]) == 0
    )

    expected = label_map_of(*load_model_and_processor(folder))
    label_map = read_png(out / "masks" / "a.png")
    # Values 0..K, not 0/255; where two class logits nearly tie, float rounding may pick the other class.
    assert set(np.unique(label_map)) == {1, 2} and (label_map == expected.numpy()).mean() > 0.99
    overlay = read_png(out / "overlays" / "a.png")
    assert overlay.shape[1:] == (40, 3) and overlay.shape[0] > 30  # the legend below the image


@pytest.mark.parametrize("module", ["autosam_hf.predict", "autosam_hf.inference"])
def test_python_m_runs_the_command(module, monkeypatch, capsys):
    """`python -m autosam_hf.predict` (what `accelerate launch -m` starts) and `python -m autosam_hf.inference`."""
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: autosam-predict ")


# ---------------------------------------------------------------------------------------------- volumes
def segment_volume(model_dir, path, out, *flags: str) -> None:
    argv = ["--model", str(model_dir), str(path), "--output_dir", str(out), "--batch_size", "32", "--quiet", *flags]
    assert main(argv) == 0


def test_a_nifti_ct_gets_a_label_volume_on_its_grid_and_header_and_a_montage(model_dir, loaded, ct_example, tmp_path):
    import nibabel as nib

    path = ct_example / "nifti" / "imagesTr" / "ct_001_0000.nii.gz"  # 122 x 101 x 30, 3 mm
    segment_volume(model_dir, path, tmp_path, "--ct_window", "abdomen")
    written, source = nib.load(tmp_path / "ct_001_0000.nii.gz"), nib.load(path)
    np.testing.assert_array_equal(written.affine, source.affine)
    assert written.shape == source.shape and written.header.get_zooms() == source.header.get_zooms()
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(source.affine)
    assert written.header.get_sform(coded=True)[1] == source.header.get_sform(coded=True)[1]
    assert written.header.get_qform(coded=True)[1] == source.header.get_qform(coded=True)[1]
    assert written.header.get_xyzt_units() == source.header.get_xyzt_units()
    labels = np.asarray(written.dataobj)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1}  # binary: 0/1, not 0/255
    slices = volume_slices(read_volume(path), window="abdomen")[::10]  # axial: k, the coarsest (first of equals)
    expected = reference_masks(loaded, [piece.image for piece in slices])
    np.testing.assert_array_equal(to_display(labels, 2)[::10], np.stack(expected))

    # The montage: up to 16 slices with foreground, tiles 256 px wide (the slices are 366 x 303 mm), a legend below.
    montage = read_png(tmp_path / "ct_001_0000_overlay.png")
    shown = min(16, int(np.any(labels > 0, axis=(0, 1)).sum()))
    columns = math.ceil(math.sqrt(shown))
    assert montage.shape[1:] == (columns * 256, 3) and montage.shape[0] > math.ceil(shown / columns) * 212


def test_a_dicom_series_gets_a_label_volume_on_its_grid_with_fast_without_sam(
    model_dir, loaded, ct_example, tmp_path, monkeypatch
):
    import nibabel as nib

    def sam_must_not_run(*args, **kwargs):
        raise AssertionError("SAM ran in --fast mode")

    series = ct_example / "dicom" / "series"  # 512 x 512 x 20, JPEG 2000
    monkeypatch.setattr(AutoSamForSegmentation, "get_image_embeddings", sam_must_not_run)
    monkeypatch.setattr(SamModel, "forward", sam_must_not_run)
    segment_volume(model_dir, series, tmp_path, "--fast", "--ct_window=-160,240", "--no_overlays")
    monkeypatch.undo()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["series.nii.gz"]  # no montage asked for
    volume = read_volume(series)
    written = read_volume(tmp_path / "series.nii.gz")
    check_same_grid(volume, written)  # shape, and the affine within NIfTI's float32 rounding
    # On the grid of the label volume dcm2niix-converted for this series: a viewer overlays them without resampling.
    check_same_grid(read_volume(ct_example / "dicom" / "labels.nii.gz"), written)
    header = nib.load(tmp_path / "series.nii.gz").header
    assert nib.aff2axcodes(written.affine) == ("L", "A", "S") and header.get_xyzt_units()[0] == "mm"
    np.testing.assert_allclose(header.get_zooms(), volume.spacing, atol=1e-5)
    # The slices of --fast are h(g(I)) of each slice image: the model's surrogate masks.
    slices = volume_slices(volume, window=(-160.0, 240.0))
    expected = reference_masks(loaded, [piece.image for piece in slices[::7]], mode="surrogate")
    np.testing.assert_array_equal(to_display(written.array, 2)[::7], np.stack(expected))


def test_a_folder_of_volumes_gets_one_label_volume_and_montage_each(model_dir, tmp_path, caplog, capsys):
    folder = tmp_path / "volumes"
    folder.mkdir()
    write_nifti(folder / "a.nii.gz", seed=1)
    write_nifti(folder / "b.nii", shape=(12, 18, 4), seed=2)
    (folder / "broken.nii.gz").write_bytes(b"not a volume")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        segment_volume(model_dir, folder, out)
    assert "broken.nii.gz: cannot read as NIfTI" in caplog.text  # named and skipped, as a bad image in a folder
    assert "Segmented 2 volume(s)" in capsys.readouterr().out
    assert sorted(path.name for path in out.iterdir()) == ["a.nii.gz", "a_overlay.png", "b.nii.gz", "b_overlay.png"]
    for name in "ab":
        volume = read_volume(next(folder.glob(f"{name}.nii*")))
        check_same_grid(volume, read_volume(out / f"{name}.nii.gz"), atol=0)


@pytest.mark.parametrize(
    "make_input, message",
    [
        (
            lambda tmp: (tmp / "ct.nii.gz").write_bytes(b"\x1f\x8b truncated") and tmp / "ct.nii.gz",
            "cannot read as NIfTI",
        ),
        (
            lambda tmp: (tmp / "s").mkdir() or (tmp / "s" / "1.dcm").write_bytes(b"junk") and tmp / "s",
            "no DICOM series",
        ),
    ],
    ids=["nifti", "dicom-series"],
)
def test_an_unreadable_volume_fails_naming_it_and_writes_nothing(model_dir, tmp_path, capsys, make_input, message):
    path = make_input(tmp_path)
    out = tmp_path / "out"
    error = bad_input_error(["--model", str(model_dir), str(path), "--output_dir", str(out), "--quiet"], capsys)
    assert error.startswith(f"autosam-predict: error: {path}: {message}")
    assert not out.exists()


def test_a_bad_ct_window_is_a_usage_error(model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(model_dir), str(tmp_path), "--output_dir", str(tmp_path), "--ct_window", "liver"])
    assert exit_info.value.code == 2
    assert "--ct_window" in capsys.readouterr().err


def test_points_and_a_box_give_the_models_mask_with_those_prompts(model_dir, loaded, image_folder, tmp_path):
    # a.png is 30x40 (height x width); the click and box are in its pixel coordinates.
    out = tmp_path / "out"
    argv = ["--model", str(model_dir), str(image_folder / "a.png"), "--output_dir", str(out), "--quiet"]
    assert main([*argv, "--points", "30,5;8,20", "--point_labels", "1,0", "--box", "2,3,35,25"]) == 0
    model, processor = loaded
    image = read_png(image_folder / "a.png")
    prompts = {"input_points": [[[30, 5], [8, 20]]], "input_labels": [[1, 0]], "input_boxes": [[2, 3, 35, 25]]}
    inputs = processor(image, **prompts)
    with torch.no_grad():
        logits = model(**inputs).logits
    expected = (processor.post_process_logits(logits, inputs["original_sizes"])[0] > 0).numpy()
    np.testing.assert_array_equal(read_png(out / "masks" / "a.png") == 255, expected)
    (unprompted,) = reference_masks(loaded, [image])
    assert (expected != unprompted).any()  # the prompts reached SAM's decoder


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--points", "1,2;3"], "argument --points: expected x,y pairs"),
        (["--point_labels", "1,2", "--points", "1,2;3,4"], "argument --point_labels/--point-labels: expected labels 1"),
        (["--box", "5,5,1,1"], "argument --box: expected x0,y0,x1,y1 with x0 <= x1"),
        (["--points", "1,2", "--point_labels", "1,0"], "--point_labels: 2 labels for 1 --points point"),
        (["--points", "1,2", "--fast"], "--points / --box: the surrogate h(g(I))"),
        (["--point_labels", "1"], "--point_labels: given without --points"),
    ],
)
def test_bad_prompts_fail_naming_the_flag(model_dir, image_folder, tmp_path, capsys, extra, message):
    argv = ["--model", str(model_dir), str(image_folder / "a.png"), "--output_dir", str(tmp_path / "o"), "--quiet"]
    assert message in bad_input_error([*argv, *extra], capsys)


def test_prompts_need_a_single_image_input(model_dir, image_folder, tmp_path, capsys):
    argv = ["--model", str(model_dir), str(image_folder), "--output_dir", str(tmp_path / "o"), "--quiet"]
    error = bad_input_error([*argv, "--box", "1,1,5,5"], capsys)
    assert "--box: clicks and boxes are for a single image input" in error
