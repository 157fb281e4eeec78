"""autosam_hf.inference.predictor: the Python API (`iter_predictions`, `predict_images`, `predict_volume`): batching,
the model's threshold, reduced precision, the canvases each mode builds (masks are the model's: logits >
config.mask_threshold, through autosam_hf.postprocessing), and volumes segmented slice by slice as images."""

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_tiny_sam_config
from transformers import SamModel

from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor
from autosam_hf.hub import load_model_and_processor
from autosam_hf.inference import InputVolume, iter_predictions, predict_images, predict_volume, segment_input
from autosam_hf.volumes import read_volume, volume_slices
from autosam_hf.volumes.slices import to_display

from .conftest import SIZES, random_images, reference_masks, write_nifti


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


def test_batches_prepared_ahead_by_threads_give_the_same_predictions_in_order(loaded):
    model, processor = loaded
    items = list(enumerate(random_images() * 2))  # six images, batches of 1: several prepared at once
    inline = list(iter_predictions(model, processor, items, batch_size=1))
    ahead = list(iter_predictions(model, processor, items, batch_size=1, num_workers=2))
    assert [key for key, _ in ahead] == list(range(6))
    for (_, expected), (_, prediction) in zip(inline, ahead, strict=True):
        assert torch.equal(prediction.class_logits, expected.class_logits)
        np.testing.assert_array_equal(prediction.label_map, expected.label_map)
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        next(iter_predictions(model, processor, items, num_workers=-1))


@pytest.mark.parametrize("mode", ["autosam", "surrogate"])
def test_canvases_built_on_the_device_give_the_same_predictions(loaded, mode):
    """`device_canvas=True` (the default on accelerators) forced on the CPU: the canvases differ from the processor's
    by at most one grey level, so the logits agree closely and the masks are the same; prompts go along."""
    model, processor = loaded
    items = list(enumerate(random_images()))
    prompts = {"input_points": [[[5.0, 5.0]], None, [[10.0, 20.0]]]} if mode == "autosam" else {}
    kwargs = {"batch_size": 2, "mode": mode, "num_workers": 1, **prompts}
    on_the_cpu = list(iter_predictions(model, processor, items, **kwargs))
    on_the_device = list(iter_predictions(model, processor, items, device_canvas=True, **kwargs))
    assert [key for key, _ in on_the_device] == [0, 1, 2]
    for (_, expected), (_, prediction) in zip(on_the_cpu, on_the_device, strict=True):
        scale = expected.class_logits.abs().max()
        assert (prediction.class_logits - expected.class_logits).abs().max() < 0.02 * scale
        np.testing.assert_array_equal(prediction.label_map, expected.label_map)


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


@pytest.mark.parametrize(
    "axis, window, context_slices", [(None, None, False), (0, (-500.0, 500.0), True)], ids=["default", "axis0-2.5d"]
)
def test_a_volume_is_segmented_slice_by_slice_as_its_slice_images(loaded, tmp_path, axis, window, context_slices):
    model, processor = loaded
    volume = read_volume(write_nifti(tmp_path / "ct.nii.gz", shape=(8, 16, 5)))  # coarsest along k
    labels = predict_volume(
        model,
        processor,
        volume,
        axis=axis,
        window=window,
        context_slices=context_slices,
        batch_size=3,
    )
    assert labels.shape == volume.shape and labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1}
    # Each slice's labels are the masks of its image predicted on its own (the slices are images to the model).
    slices = volume_slices(volume, axis=axis, window=window, context=context_slices)
    expected = reference_masks(loaded, [piece.image for piece in slices])
    np.testing.assert_array_equal(to_display(labels, 2 if axis is None else axis), np.stack(expected))


def test_a_multi_class_models_label_volume_holds_its_class_ids(tmp_path):
    import nibabel as nib

    torch.manual_seed(0)
    id2label = {0: "background", 1: "liver", 2: "spleen"}
    model = AutoSamForSegmentation.from_sam(
        SamModel(make_tiny_sam_config()), prompt_input_size=32, id2label=id2label
    ).eval()  # as autosam-predict runs it
    with torch.no_grad():  # decisive logits
        for mlp in model.sam.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(1e3)
            mlp.proj_out.bias.mul_(1e3)
    processor = AutoSamImageProcessor.from_model_config(model.config)
    volume = read_volume(write_nifti(tmp_path / "ct.nii.gz"))
    summary = segment_input(model, processor, [InputVolume("ct", volume=volume)], tmp_path / "out")
    assert summary.written == summary.volumes == ["ct"]
    labels = np.asarray(nib.load(tmp_path / "out" / "ct.nii.gz").dataobj)

    expected = []
    for piece in volume_slices(volume):
        inputs = processor(piece.image)
        with torch.no_grad():
            outputs = model(**inputs)
        expected.append(processor.post_process_semantic_segmentation(outputs, inputs["original_sizes"].tolist())[0])
    # The values are the class ids of config.id2label; where two class logits nearly tie, rounding may pick another.
    assert set(np.unique(labels)) <= set(id2label) and labels.max() == 2
    assert (to_display(labels, 2) == torch.stack(expected).numpy()).mean() > 0.99
    with PIL.Image.open(tmp_path / "out" / "ct_overlay.png") as montage:
        assert montage.format == "PNG" and montage.mode == "RGB"


def test_files_written_in_the_background_are_the_same_and_a_failed_write_stops_the_run(loaded, image_folder, tmp_path):
    """`background_writes` (the default on accelerators) forced on the CPU: the same files, the same summary; a
    write that fails raises its error out of `segment_input`."""
    from autosam_hf.inference import PredictionSettings, open_input
    from autosam_hf.inference import predictor as predictor_module

    model, processor = loaded
    outputs = {}
    for background in (False, True):
        items, total = open_input(image_folder)
        settings = PredictionSettings(batch_size=2, progress=False, total=total, background_writes=background)
        summary = segment_input(model, processor, items, tmp_path / str(background), settings)
        assert summary.written == ["a", "b", "c"] and summary.skipped == ["broken"]
        folder = tmp_path / str(background)
        outputs[background] = {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*.png")}
    assert len(outputs[True]) == 6 and outputs[True] == outputs[False]

    def full_disk(picture, path):
        raise OSError(f"disk full writing {path.name}")

    items, _ = open_input(image_folder)
    settings = PredictionSettings(batch_size=1, progress=False, background_writes=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predictor_module, "write_png", full_disk)
        with pytest.raises(OSError, match="disk full writing a.png"):
            segment_input(model, processor, items, tmp_path / "failed", settings)
