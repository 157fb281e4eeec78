"""autosam_hf.model.device_canvas: the processor's canvases built on the model's device from uint8 images equal the
processor's own (PIL) canvases up to one grey level, for either canvas rule and a frozen checkpoint's own settings,
with the same sizes and prompts."""

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import SamConfig

from autosam_hf import AutoSamImageProcessor
from autosam_hf.model.device_canvas import normalise_on_device, preprocess_on_device


@pytest.fixture(scope="module")
def kvasir_images(shared_data_dir) -> list[np.ndarray]:
    """Three Kvasir test images, cropped to a landscape, a portrait and a small shape: the canvases pad and resize
    each differently."""
    paths = sorted((shared_data_dir / "kvasir" / "test" / "images").iterdir())[:3]
    images = [np.asarray(PIL.Image.open(path).convert("RGB")) for path in paths]
    return [images[0][:300, :500], images[1][:420, :260], images[2][:90, :120]]


@pytest.mark.parametrize(
    ("canvas_rule", "sam_preprocessing"),
    [("letterbox", None), ("squash", None), ("letterbox", {"do_normalize": False, "resample": 3})],
    ids=["letterbox", "squash", "medsam_like"],  # MedSAM's own: no normalisation, bicubic, on SAM's canvas only
)
def test_device_canvases_equal_the_processors_to_one_grey_level(kvasir_images, canvas_rule, sam_preprocessing):
    processor = AutoSamImageProcessor.from_sam_config(
        SamConfig(), prompt_size=352, canvas_rule=canvas_rule, sam_preprocessing=sam_preprocessing
    )
    points = [[[40.0, 30.0]], None, [[10.0, 80.0], [5.0, 5.0]]]
    expected = processor(kvasir_images, return_tensors="pt", input_points=points)
    actual = preprocess_on_device(processor, kvasir_images, "cpu", input_points=points)
    assert set(actual) == set(expected)
    for name in ("original_sizes", "reshaped_input_sizes", "input_points", "input_labels"):
        assert torch.equal(actual[name], expected[name]), name
    for name in ("pixel_values", "prompt_pixel_values"):
        assert actual[name].shape == expected[name].shape and actual[name].dtype == torch.float32
        # PIL rounds each resize pass with fixed-point weights, torch's are exact: values near a rounding tie land
        # on neighbouring uint8 levels, one level over the std after normalising.
        std = 1.0 if sam_preprocessing and name == "pixel_values" else min(processor.image_std)
        difference = (actual[name] - expected[name]).abs()
        assert difference.max() <= 1 / 255 / std + 1e-5, name
        assert difference.mean() < 0.25 / 255 / std, name  # most pixels agree exactly
        assert (difference > 1e-5).float().mean() < 0.03, name  # 2% at most on these shrinking and enlarging
    # The padding stays zero after normalising, as the processor pads.
    height, width = expected["reshaped_input_sizes"][0].tolist()
    assert not actual["pixel_values"][0, :, height:, :].any() and not actual["pixel_values"][0, :, :, width:].any()


def test_only_the_canvases_asked_for_are_built(kvasir_images):
    processor = AutoSamImageProcessor.from_sam_config(SamConfig(), prompt_size=352)
    inputs = preprocess_on_device(processor, kvasir_images[:1], torch.device("cpu"), canvases=["prompt"])
    assert "pixel_values" not in inputs and inputs["prompt_pixel_values"].shape == (1, 3, 352, 352)
    assert inputs["reshaped_input_sizes"].tolist() == [list(processor.reshaped_size(kvasir_images[0].shape[:2]))]


def test_images_of_any_form_and_a_reduced_dtype(kvasir_images):
    processor = AutoSamImageProcessor.from_sam_config(SamConfig(), prompt_size=352)
    forms = [torch.from_numpy(kvasir_images[0].copy()).permute(2, 0, 1), PIL.Image.fromarray(kvasir_images[1]),
             kvasir_images[2]]  # fmt: skip
    expected = preprocess_on_device(processor, kvasir_images, "cpu", canvases=["prompt"])
    reduced = preprocess_on_device(processor, forms, "cpu", canvases=["prompt"], dtype=torch.bfloat16)
    assert reduced["prompt_pixel_values"].dtype == torch.bfloat16
    torch.testing.assert_close(
        reduced["prompt_pixel_values"].float(), expected["prompt_pixel_values"], atol=0.02, rtol=0.01
    )


def test_normalising_never_changes_its_input():
    image = torch.full((1, 3, 2, 2), 255.0)
    settings = {"do_rescale": False, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [1, 2, 3],
                "image_std": [2, 2, 2]}  # fmt: skip
    assert normalise_on_device(image, settings)[0, :, 0, 0].tolist() == [127.0, 126.5, 126.0]
    assert (image == 255).all()


def test_settings_the_device_cannot_apply_are_named(kvasir_images):
    def processor(**settings):
        return AutoSamImageProcessor(size={"longest_edge": 24}, pad_size={"height": 24, "width": 24}, **settings)

    image = kvasir_images[2]
    with pytest.raises(ValueError, match="resample: canvases on the device resample nearest, bilinear, bicubic, got l"):
        preprocess_on_device(processor(resample=PIL.Image.LANCZOS), [image], "cpu")
    with pytest.raises(ValueError, match="do_resize"):
        preprocess_on_device(processor(do_resize=False), [image], "cpu")
    with pytest.raises(ValueError, match="sam_preprocessing: 'do_pad' is not one of"):
        preprocess_on_device(processor(sam_preprocessing={"do_pad": False}), [image], "cpu")
    with pytest.raises(ValueError, match=r"images\[1\] is 1x100.*too elongated"):
        preprocess_on_device(processor(), [image, np.zeros((1, 100, 3), np.uint8)], "cpu")
    with pytest.raises(ValueError, match="images: got an empty list"):
        preprocess_on_device(processor(), [], "cpu")
