"""Inference: `autosam-predict` on folders, frame folders, videos and bad input; the Python API it is built on
(masks are the model's: logits > config.mask_threshold, through autosam_hf.postprocessing)."""

import logging
import re
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_tiny_sam_config
from transformers import SamModel

from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor
from autosam_hf.hub import load_model_and_processor
from autosam_hf.predict import (
    iter_predictions,
    main,
    natural_sort_key,
    open_input,
    predict_images,
    read_image,
)

SIZES = [(30, 40), (17, 23), (40, 26)]  # (height, width)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A saved tiny AutoSAM + processor whose mask logits are scaled far from the threshold (decisive masks)."""
    folder = tmp_path_factory.mktemp("predict_model")
    torch.manual_seed(0)
    sam = SamModel(make_tiny_sam_config())
    model = AutoSamForSegmentation.from_sam(sam, prompt_input_size=32)
    with torch.no_grad():
        for mlp in model.sam.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(1e3)
            mlp.proj_out.bias.mul_(1e3)
        model.surrogate_decoder.layers[-1].weight.mul_(1e2)
    model.save_pretrained(folder)
    AutoSamImageProcessor.from_sam_config(model.config.sam_config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def loaded(model_dir):
    return load_model_and_processor(model_dir)


def random_images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8) for height, width in SIZES]


@pytest.fixture
def image_folder(tmp_path):
    """Three images (RGB PNG, grey JPEG, RGBA PNG) and one corrupt file."""
    folder = tmp_path / "images"
    folder.mkdir()
    rgb, grey, rgba = random_images()
    PIL.Image.fromarray(rgb).save(folder / "a.png")
    PIL.Image.fromarray(grey[..., 0]).save(folder / "b.jpg")
    PIL.Image.fromarray(np.dstack([rgba, np.full(rgba.shape[:2], 255, np.uint8)])).save(folder / "c.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image; ignored")
    (folder / "._a.png").write_bytes(b"\x00\x05\x16\x07 macOS metadata")  # hidden: not read, as training does not
    return folder


def reference_masks(loaded, images, mode="autosam") -> list[np.ndarray]:
    """What the model itself predicts: logits > mask_threshold at the original size, image by image."""
    model, processor = loaded
    masks = []
    for image in images:
        inputs = processor(image, return_tensors="pt")
        with torch.no_grad():
            logits = model(pixel_values=inputs["pixel_values"], mode=mode).logits
        masks.append((processor.post_process_logits(logits, inputs["original_sizes"])[0] > 0).numpy())
    return masks


def read_png(path) -> np.ndarray:
    with PIL.Image.open(path) as image:
        return np.asarray(image)


# ------------------------------------------------------------------------------------------- the command line
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


def test_cli_masks_are_the_models_masks(model_dir, loaded, image_folder, tmp_path):
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


def test_an_image_is_read_upright_by_its_exif_orientation_as_the_pipeline_reads_it(tmp_path):
    from transformers.image_utils import load_image

    path = tmp_path / "rotated.jpg"
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it 90° clockwise
    PIL.Image.fromarray(random_images()[0]).save(path, exif=exif)  # stored 30 x 40 (H x W)
    assert read_image(path).shape == (40, 30, 3)
    np.testing.assert_array_equal(read_image(path), np.asarray(load_image(str(path))))


def test_frame_folder_is_read_in_natural_order(model_dir, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in (10, 2, 1):
        PIL.Image.fromarray(np.full((20, 24, 3), 10 * index, np.uint8)).save(frames / f"frame{index}.jpg")
    images, total = open_input(frames)
    assert total == 3 and [image.name for image in images] == ["frame1", "frame2", "frame10"]
    assert sorted(["f10.png", "F9.png", "f1.png"], key=natural_sort_key) == ["f1.png", "F9.png", "f10.png"]
    out = tmp_path / "out"
    assert main(["--model", str(model_dir), str(frames), "--output_dir", str(out), "--no-overlays", "--quiet"]) == 0
    assert sorted(path.name for path in (out / "masks").iterdir()) == ["frame1.png", "frame10.png", "frame2.png"]
    assert not (out / "overlays").exists()


def test_video_file_is_segmented_frame_by_frame(model_dir, tmp_path):
    import cv2  # opencv-python-headless: a dependency of pysodmetrics, so installed with autosam-hf

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (24, 20))
    for value in (0, 120, 240):
        writer.write(np.full((20, 24, 3), value, np.uint8))
    writer.release()
    out = tmp_path / "out"
    assert main(["--model", str(model_dir), str(video), "--output_dir", str(out), "--quiet"]) == 0
    names = sorted(path.name for path in (out / "masks").iterdir())
    assert names == ["clip_000000.png", "clip_000001.png", "clip_000002.png"]
    assert read_png(out / "masks" / names[0]).shape == (20, 24)


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


def test_video_without_opencv_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "clip.mp4").write_bytes(b"junk")
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    with pytest.raises(ValueError, match=r"clip\.mp4.*autosam-hf\[video\]"):
        open_input(tmp_path / "clip.mp4")


def test_unloadable_model_fails_naming_it(image_folder, tmp_path, capsys):
    argv = ["--model", str(tmp_path / "nope"), str(image_folder), "--output_dir", str(tmp_path / "out"), "--quiet"]
    assert str(tmp_path / "nope") in bad_input_error(argv, capsys)


def test_fast_conflicts_with_another_mode(model_dir, image_folder, tmp_path, capsys):
    argv = ["--model", str(model_dir), str(image_folder), "--output_dir", str(tmp_path), "--fast", "--mode", "autosam"]
    assert "--fast means --mode surrogate" in bad_input_error(argv, capsys)


# ------------------------------------------------------------------------------------------- the Python API
def test_batching_does_not_change_predictions(loaded):
    model, processor = loaded
    images = random_images()[:2]  # two sizes in one batch: padding must not leak between images
    one_by_one = predict_images(model, processor, images, batch_size=1)
    batched = predict_images(model, processor, images, batch_size=2)
    for single, together, (height, width) in zip(one_by_one, batched, SIZES[:2], strict=True):
        assert single.shape == (height, width) and single.dtype == np.float32
        np.testing.assert_allclose(single, together, atol=1e-5)
    for probabilities, expected in zip(one_by_one, reference_masks(loaded, images), strict=True):
        np.testing.assert_array_equal(probabilities > 0.5, expected)


def test_masks_are_logits_above_the_models_threshold_unless_overridden(loaded):
    model, processor = loaded
    image = random_images()[0]
    ((_, prediction),) = iter_predictions(model, processor, [("a", image)], mode="surrogate")
    inputs = processor(image)
    with torch.no_grad():
        logits = processor.post_process_logits(model(**inputs, mode="surrogate").logits, inputs["original_sizes"])[0]
    torch.testing.assert_close(prediction.logits, logits)
    np.testing.assert_array_equal(prediction.mask, (logits > model.config.mask_threshold).numpy())
    np.testing.assert_allclose(prediction.probabilities, torch.sigmoid(logits).numpy(), rtol=1e-6)
    threshold = float(logits.median())  # splits the image: a different mask than the model's
    ((_, overridden),) = iter_predictions(model, processor, [("a", image)], mode="surrogate", mask_threshold=threshold)
    np.testing.assert_array_equal(overridden.mask, (logits > threshold).numpy())
    assert not np.array_equal(overridden.mask, prediction.mask)


def test_bfloat16_autocast_runs_and_stays_close(loaded):
    model, processor = loaded
    images = random_images()[:1]
    (full,) = predict_images(model, processor, images, mode="surrogate")
    (reduced,) = predict_images(model, processor, images, mode="surrogate", autocast_dtype=torch.bfloat16)
    assert reduced.dtype == np.float32 and np.isfinite(reduced).all()
    assert np.mean((full > 0.5) == (reduced > 0.5)) > 0.9


@pytest.mark.parametrize("mode", ["surrogate", "autosam"])
def test_a_model_loaded_in_bfloat16_takes_the_processors_float32_pixels(model_dir, loaded, mode):
    model, processor = load_model_and_processor(model_dir, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    images = random_images()
    reduced = predict_images(model, processor, images, mode=mode)
    full = predict_images(*loaded, images, mode=mode)
    for low, high in zip(reduced, full, strict=True):
        assert low.dtype == np.float32 and low.shape == high.shape
        assert np.mean((low > 0.5) == (high > 0.5)) > 0.95


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


def test_each_mode_builds_only_the_canvases_it_reads(monkeypatch):
    from conftest import make_tiny_model, make_tiny_processor

    model, processor = make_tiny_model().eval(), make_tiny_processor()
    built = []
    preprocess = type(processor).preprocess

    def recording(self, images, *args, **kwargs):
        outputs = preprocess(self, images, *args, **kwargs)
        built.append(sorted(name for name in outputs if name.endswith("pixel_values")))
        return outputs

    monkeypatch.setattr(type(processor), "preprocess", recording)
    images = random_images()[:2]
    fast = predict_images(model, processor, images, mode="surrogate")
    full = predict_images(model, processor, images, mode="autosam")
    assert built == [["prompt_pixel_values"], ["pixel_values", "prompt_pixel_values"]]
    assert all(f.shape == a.shape for f, a in zip(fast, full, strict=True))
