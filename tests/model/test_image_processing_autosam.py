"""Tests for `AutoSamImageProcessor`, `to_rgb_uint8` and `binarize_mask`: every input form, normalisation applied
once, padding and valid region, label binarisation, clear errors, post-processing back to the original size."""

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_tiny_processor

from autosam_hf.model import AutoSamConfig, AutoSamImageProcessor, binarize_mask, read_label_map, to_rgb_uint8

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


@pytest.fixture
def rgb() -> np.ndarray:
    """A 30×40 (height × width) random RGB image: landscape, so SAM's canvas is padded at the bottom."""
    return np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)


def image_forms(rgb: np.ndarray) -> dict[str, object]:
    grey = rgb[..., 0]
    return {
        "pil_rgb": PIL.Image.fromarray(rgb),
        "pil_grey": PIL.Image.fromarray(grey),
        "pil_rgba": PIL.Image.fromarray(np.dstack([rgb, np.full(grey.shape, 128, np.uint8)])),
        "pil_16bit": PIL.Image.fromarray(grey.astype(np.uint16) * 257),
        "numpy_hw_uint8": grey,
        "numpy_hwc_uint8": rgb,
        "numpy_uint16": rgb.astype(np.uint16) * 257,
        "numpy_float": rgb / 255.0,
        "torch_chw_uint8": torch.from_numpy(rgb).permute(2, 0, 1),
        "torch_chw_float": torch.from_numpy(rgb).permute(2, 0, 1).float() / 255,
    }


GREY_FORMS = {"pil_grey", "pil_16bit", "numpy_hw_uint8"}


def test_every_input_form_gives_the_same_pixel_values(tiny_processor, rgb):
    forms = image_forms(rgb)
    assert forms["pil_16bit"].mode == "I;16"
    rgb_reference = tiny_processor(rgb)["pixel_values"]
    grey_reference = tiny_processor(np.repeat(rgb[..., :1], 3, axis=-1))["pixel_values"]
    for name, image in forms.items():
        outputs = tiny_processor(image)
        assert outputs["pixel_values"].shape == (1, 3, 24, 24), name
        assert outputs["original_sizes"].tolist() == [[30, 40]], name
        assert outputs["reshaped_input_sizes"].tolist() == [[18, 24]], name
        expected = grey_reference if name in GREY_FORMS else rgb_reference
        torch.testing.assert_close(outputs["pixel_values"], expected, rtol=0, atol=1e-6, msg=name)


def test_grey_images_become_three_equal_channels(rgb):
    for image in (PIL.Image.fromarray(rgb[..., 0]), rgb[..., 0], rgb[..., :1], torch.from_numpy(rgb[..., 0])[None]):
        converted = to_rgb_uint8(image)
        assert converted.shape == (30, 40, 3) and converted.dtype == np.uint8
        for channel in range(3):
            np.testing.assert_array_equal(converted[..., channel], rgb[..., 0])


def test_sixteen_bit_image_matches_its_eight_bit_version(tiny_processor):
    image16 = np.random.default_rng(1).integers(0, 65536, (30, 40), dtype=np.uint16)
    image8 = np.round(image16 / 257).astype(np.uint8)
    from_pil = tiny_processor(PIL.Image.fromarray(image16))["pixel_values"]
    from_numpy = tiny_processor(image16)["pixel_values"]
    eight_bit = tiny_processor(image8)["pixel_values"]
    one_level = 1 / 255 / STD.min() + 1e-6
    assert (from_pil - eight_bit).abs().max() <= one_level
    assert (from_numpy - eight_bit).abs().max() <= one_level
    # Values that only fill the low byte are not mistaken for 8-bit data.
    np.testing.assert_array_equal(to_rgb_uint8(np.full((2, 2), 300, np.uint16))[..., 0], np.full((2, 2), 1))


def test_normalisation_applied_exactly_once(tiny_processor):
    constant = np.full((30, 40, 3), round(0.485 * 255), np.uint8)
    pixel_values = tiny_processor(constant)["pixel_values"][0]
    assert pixel_values[0, :18, :24].abs().max() < 0.01  # (124/255 - 0.485) / 0.229 = 0.0055

    image = np.random.default_rng(2).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    pixel_values = tiny_processor(image)["pixel_values"][0].numpy()
    resized = np.asarray(PIL.Image.fromarray(image).resize((24, 18), PIL.Image.BILINEAR)).astype(np.float64)
    expected = ((resized / 255 - MEAN) / STD).transpose(2, 0, 1)
    np.testing.assert_allclose(pixel_values[:, :18, :24], expected, atol=1 / 255 / STD.min() + 1e-5)
    assert np.abs(pixel_values[:, :18, :24] - expected).mean() < 0.01


@pytest.mark.parametrize("shape", [(3, 8), (1, 4), (1, 1), (4, 3)])
def test_images_one_or_three_pixels_high_are_read_channels_last(tiny_processor, shape):
    """SAM's processor guesses the channel axis from the shape; a 3-pixel-high image is still (H, W, 3)."""
    image = np.random.default_rng(4).integers(0, 256, (*shape, 3), dtype=np.uint8)
    outputs = tiny_processor(image, segmentation_maps=np.ones(shape, np.uint8))
    height, width = tiny_processor.reshaped_size(shape)
    assert outputs["original_sizes"].tolist() == [list(shape)]
    assert outputs["reshaped_input_sizes"].tolist() == [[height, width]]
    assert outputs["pixel_values"].shape == (1, 3, 24, 24)
    mask_height, mask_width = tiny_processor._get_preprocess_shape(shape, 48)
    assert int(outputs["valid_mask"].sum()) == int(outputs["labels"].sum()) == mask_height * mask_width
    resized = np.asarray(PIL.Image.fromarray(image).resize((width, height), PIL.Image.BILINEAR)) / 255
    expected = ((resized - MEAN) / STD).transpose(2, 0, 1)
    np.testing.assert_allclose(
        outputs["pixel_values"][0, :, :height, :width].numpy(), expected, atol=1 / 255 / STD.min() + 1e-5
    )
    assert tiny_processor.post_process_logits(torch.zeros(1, 1, 48, 48), outputs["original_sizes"])[0].shape == shape


def test_too_elongated_image_raises_naming_it(tiny_processor, rgb):
    with pytest.raises(ValueError, match=r"images\[1\] is 1x100.*too elongated"):
        tiny_processor([rgb, np.zeros((1, 100, 3), np.uint8)])
    # SAM's default canvases: 1x600 fits the 1024 image canvas (2 rows) but not the 256 label canvas.
    processor = AutoSamImageProcessor()
    assert processor(np.zeros((1, 600, 3), np.uint8))["reshaped_input_sizes"].tolist() == [[2, 1024]]
    with pytest.raises(ValueError, match=r"images\[0\] is 1x600.*longest edge of 256"):
        processor(np.zeros((1, 600, 3), np.uint8), segmentation_maps=np.zeros((1, 600), np.uint8))


def test_padding_labels_and_valid_mask(tiny_processor):
    images = [np.full((30, 40, 3), 200, np.uint8), np.full((40, 30, 3), 200, np.uint8)]
    masks = [np.zeros((30, 40), np.uint8), np.zeros((40, 30), bool)]
    masks[0][:, :20] = 255
    masks[1][10:20, 5:15] = True
    outputs = tiny_processor(images, segmentation_maps=masks)

    pixel_values = outputs["pixel_values"]
    assert pixel_values.shape == (2, 3, 24, 24)
    assert (pixel_values[0, :, 18:, :] == 0).all() and (pixel_values[0, :, :18, :] != 0).all()
    assert (pixel_values[1, :, :, 18:] == 0).all() and (pixel_values[1, :, :, :18] != 0).all()

    labels, valid = outputs["labels"], outputs["valid_mask"]
    assert labels.shape == valid.shape == (2, 48, 48)
    assert labels.dtype == torch.float32 and valid.dtype == torch.bool
    assert set(labels.unique().tolist()) == {0.0, 1.0}
    for i, image in enumerate(images):
        height, width = tiny_processor._get_preprocess_shape(image.shape[:2], 48)
        assert int(valid[i].sum()) == height * width
        assert valid[i, :height, :width].all()
    assert tiny_processor._get_preprocess_shape((30, 40), 48) == (36, 48)
    # Left half of the 30×40 mask → left half (24 of 48 columns) of the 36-row valid canvas; nothing in the padding.
    assert labels[0, :36, :24].all() and not labels[0, :, 24:].any() and not labels[0, 36:].any()
    assert not labels[1][~valid[1]].any()
    assert int(labels[1].sum()) == round(10 * 10 * (48 / 40) ** 2)


def test_binarize_mask_rules():
    np.testing.assert_array_equal(binarize_mask(np.array([[0, 1], [1, 0]], np.uint8)), [[0, 1], [1, 0]])
    # 8-bit 0..255 masks (JPEG noise included) split at 127.
    np.testing.assert_array_equal(binarize_mask(np.array([[3, 126], [128, 250]], np.uint8)), [[0, 0], [1, 1]])
    np.testing.assert_array_equal(binarize_mask(np.array([[0, 2], [700, 0]], np.uint16)), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(binarize_mask(np.array([[0.2, 0.6]])), [[0, 1]])
    np.testing.assert_array_equal(binarize_mask(np.array([[[0, 0, 0], [255, 0, 0]]] * 2, np.uint8)), [[0, 1]] * 2)
    np.testing.assert_array_equal(binarize_mask(torch.tensor([[[True, False]]])), [[1, 0]])
    np.testing.assert_array_equal(binarize_mask(PIL.Image.fromarray(np.array([[0, 255]], np.uint8))), [[0, 1]])


@pytest.mark.parametrize("colour", [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)])
def test_a_colour_mask_reads_the_same_as_a_pil_image_and_as_an_array(colour):
    """Training decodes masks with PIL, a user may pass np.asarray(Image.open(path)): one rule for both."""
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[:, 1] = colour
    expected = [[0, 1, 0]] * 2
    np.testing.assert_array_equal(binarize_mask(PIL.Image.fromarray(rgb)), expected)
    np.testing.assert_array_equal(binarize_mask(rgb), expected)
    rgba = np.concatenate([rgb, np.full((2, 3, 1), 255, np.uint8)], axis=-1)  # opaque alpha is not foreground
    np.testing.assert_array_equal(binarize_mask(PIL.Image.fromarray(rgba)), expected)
    np.testing.assert_array_equal(binarize_mask(rgba), expected)


def test_mask_size_mismatch_names_the_mask(tiny_processor, rgb):
    with pytest.raises(ValueError, match=r"segmentation_maps\[1\].*10x12.*images\[1\].*30x40"):
        tiny_processor([rgb, rgb], segmentation_maps=[np.zeros((30, 40), np.uint8), np.zeros((10, 12), np.uint8)])


@pytest.mark.parametrize(
    "bad_image, error, message",
    [
        ("image.png", TypeError, "str"),
        (np.zeros((2, 5, 5, 3), np.uint8), ValueError, r"shape \(2, 5, 5, 3\)"),
        (np.zeros((5, 5, 2), np.uint8), ValueError, r"shape \(5, 5, 2\)"),
        (-np.ones((5, 5), np.int64), ValueError, "negative"),
        (np.full((5, 5), 1.5), ValueError, r"\[0, 1\]"),
        (np.full((5, 5), np.nan, np.float32), ValueError, r"\[0, 1\]"),
        (np.zeros((0, 5), np.uint8), ValueError, "empty"),
    ],
    ids=["string", "4d", "two_channels", "negative", "float_above_1", "nan", "empty"],
)
def test_bad_images_raise_naming_the_argument(tiny_processor, rgb, bad_image, error, message):
    with pytest.raises(error, match=r"images\[1\]") as raised:
        tiny_processor([rgb, bad_image])
    assert raised.match(message)


def test_bad_masks_raise_naming_the_argument(tiny_processor, rgb):
    with pytest.raises(ValueError, match=r"segmentation_maps.*1 masks for 2 images"):
        tiny_processor([rgb, rgb], segmentation_maps=[np.zeros((30, 40), np.uint8)])
    with pytest.raises(TypeError, match=r"segmentation_maps\[1\]"):
        tiny_processor([rgb, rgb], segmentation_maps=[np.zeros((30, 40), np.uint8), "mask.png"])
    with pytest.raises(ValueError, match=r"segmentation_maps\[0\].*single-channel"):
        tiny_processor(rgb, segmentation_maps=np.zeros((2, 30, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="images"):
        tiny_processor([])


def test_post_process_logits_returns_original_coordinates(tiny_processor):
    # Two images: 30×40 (canvas 36×48 of 48×48) and 40×30 (canvas 48×36).
    sizes = [(30, 40), (40, 30)]
    logits = torch.full((2, 1, 48, 48), -5.0)
    logits[0, 0, :36, :24] = 5.0  # left half of the first image's valid canvas
    logits[1, 0, :24, :36] = 5.0  # top half of the second image's valid canvas
    logits[0, 0, 36:, :] = 5.0  # padding: must be cropped away
    logits[1, 0, :, 36:] = 5.0

    maps = tiny_processor.post_process_logits(logits, torch.tensor(sizes))
    assert [tuple(m.shape) for m in maps] == sizes
    foreground = [(m > 0).numpy() for m in maps]
    # Foreground exactly on the drawn half, up to one pixel either side of its border (bilinear resampling).
    assert foreground[0][:, :19].all() and not foreground[0][:, 21:].any()
    assert foreground[1][:19, :].all() and not foreground[1][21:, :].any()

    labels = tiny_processor.post_process_semantic_segmentation({"logits": logits}, target_sizes=sizes)
    assert [tuple(label.shape) for label in labels] == sizes
    assert labels[0].dtype == torch.long
    np.testing.assert_array_equal(labels[0].numpy(), foreground[0].astype(np.int64))
    canvas = tiny_processor.post_process_semantic_segmentation({"logits": logits})
    assert canvas[0].shape == (48, 48)
    with pytest.raises(ValueError, match="target_sizes"):
        tiny_processor.post_process_semantic_segmentation({"logits": logits}, target_sizes=sizes[:1])


def test_processor_round_trip(tiny_processor, rgb, tmp_path):
    tiny_processor.save_pretrained(tmp_path)
    loaded = AutoSamImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == tiny_processor.to_dict()
    mask = np.zeros((30, 40), np.uint8)
    mask[5:9, 3:30] = 1
    for key, value in tiny_processor(rgb, segmentation_maps=mask).items():
        assert torch.equal(loaded(rgb, segmentation_maps=mask)[key], value), key


def test_default_processor_matches_sam_sizes():
    processor = AutoSamImageProcessor()
    assert processor.size == {"longest_edge": 1024}
    assert processor.pad_size == {"height": 1024, "width": 1024}
    assert processor.mask_pad_size == {"height": 256, "width": 256}
    outputs = processor(np.zeros((30, 40, 3), np.uint8), segmentation_maps=np.zeros((30, 40), np.uint8))
    assert outputs["pixel_values"].shape == (1, 3, 1024, 1024)
    assert outputs["labels"].shape == outputs["valid_mask"].shape == (1, 256, 256)
    assert outputs["reshaped_input_sizes"].tolist() == [[768, 1024]]
    assert int(outputs["valid_mask"].sum()) == 192 * 256


# ----------------------------------------------------------------------------------------------- canvases
def test_prompt_canvas_is_sams_preprocessing_at_gs_size(rgb):
    """The prompt canvas comes from the original pixels, exactly as SAM's own preprocessing at side P would."""
    processor = AutoSamImageProcessor(size={"longest_edge": 24}, pad_size={"height": 24, "width": 24}, prompt_size=16)
    at_prompt_size = AutoSamImageProcessor(size={"longest_edge": 16}, pad_size={"height": 16, "width": 16})
    outputs = processor(rgb)
    assert outputs["pixel_values"].shape == (1, 3, 24, 24) and outputs["prompt_pixel_values"].shape == (1, 3, 16, 16)
    torch.testing.assert_close(outputs["prompt_pixel_values"], at_prompt_size(rgb)["pixel_values"], rtol=0, atol=0)
    torch.testing.assert_close(
        outputs["pixel_values"],
        AutoSamImageProcessor(size={"longest_edge": 24}, pad_size={"height": 24, "width": 24})(rgb)["pixel_values"],
        rtol=0,
        atol=0,
    )


def test_only_the_requested_canvases_are_built(tiny_processor, rgb):
    mask = (rgb[..., 0] > 128).astype(np.uint8)
    both = tiny_processor(rgb, segmentation_maps=mask)
    prompt_only = tiny_processor(rgb, segmentation_maps=mask, canvases=["prompt"])
    sam_only = tiny_processor(rgb, segmentation_maps=mask, canvases=["sam"])
    prompt_first = tiny_processor(rgb, segmentation_maps=mask, canvases=["prompt", "sam"])
    assert "pixel_values" not in prompt_only and "prompt_pixel_values" not in sam_only
    torch.testing.assert_close(prompt_only["prompt_pixel_values"], both["prompt_pixel_values"], rtol=0, atol=0)
    torch.testing.assert_close(sam_only["pixel_values"], both["pixel_values"], rtol=0, atol=0)
    # labels, valid region and SAM-canvas sizes whatever the canvases, in whatever order they are named
    for outputs in (prompt_only, sam_only, prompt_first):
        for key in ("labels", "valid_mask", "original_sizes", "reshaped_input_sizes"):
            torch.testing.assert_close(outputs[key], both[key], rtol=0, atol=0)


def test_canvas_errors_name_the_argument(rgb):
    without_prompt = AutoSamImageProcessor(size={"longest_edge": 24}, pad_size={"height": 24, "width": 24})
    assert "prompt_pixel_values" not in without_prompt(rgb)  # processors saved before the prompt canvas
    with pytest.raises(ValueError, match="'prompt' canvas needs a processor with a prompt_size"):
        without_prompt(rgb, canvases=["prompt"])
    with pytest.raises(ValueError, match="canvases must be a non-empty subset"):
        without_prompt(rgb, canvases=["sam", "thumbnail"])


def test_default_canvases_and_prompt_size_survive_saving(tmp_path, rgb):
    processor = AutoSamImageProcessor(prompt_size=32, canvases=["prompt"])
    processor.save_pretrained(tmp_path)
    loaded = AutoSamImageProcessor.from_pretrained(tmp_path)
    assert loaded.prompt_size == 32 and list(loaded.canvases) == ["prompt"]
    assert set(loaded(rgb)) == {"prompt_pixel_values", "original_sizes", "reshaped_input_sizes"}


# ----------------------------------------------------------------------------------------------- label maps
def test_label_maps_keep_their_classes_through_nearest_resizing():
    processor = processor_with_labels(4)
    image = np.zeros((24, 24, 3), np.uint8)
    label_map = np.zeros((24, 24), np.uint8)
    label_map[:, 8:16], label_map[:, 16:] = 2, 3
    labels = processor(image, segmentation_maps=label_map)["labels"][0]
    assert set(labels.unique().tolist()) == {0.0, 2.0, 3.0}  # nearest: no mixed values
    assert (labels[:, 16:32] == 2).all() and (labels[:, 32:] == 3).all()
    # A binary processor still binarises (a 0/255 mask stays 0/1).
    binary = processor_with_labels(2)(image, segmentation_maps=(label_map > 0).astype(np.uint8) * 255)["labels"]
    assert set(binary.unique().tolist()) == {0.0, 1.0}


def processor_with_labels(num_labels: int) -> AutoSamImageProcessor:
    """The tiny processor (SAM canvas 24², label canvas 48²) for a model of `num_labels` labels."""
    processor = make_tiny_processor(prompt_size=None)
    processor.num_labels = num_labels
    return processor


def test_label_map_value_above_k_names_the_map():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"segmentation_maps\[1\]: value 255 is not a class id of this 3-label"):
        processor_with_labels(3)([image, image], segmentation_maps=[np.zeros((8, 8), np.uint8), np.full((8, 8), 255)])

    with pytest.raises(ValueError, match="integer class ids"):
        read_label_map(np.full((2, 2), 0.5), 3, name="m.png")
    np.testing.assert_array_equal(read_label_map(np.array([[0, 2], [1, 0]], np.uint16), 3), [[0, 2], [1, 0]])


def test_num_labels_is_saved_and_taken_from_the_model_config(tmp_path, tiny_sam_config):
    processor = processor_with_labels(4)
    processor.save_pretrained(tmp_path)
    assert AutoSamImageProcessor.from_pretrained(tmp_path).num_labels == 4
    config = AutoSamConfig(sam_config=tiny_sam_config, id2label={0: "background", 1: "a", 2: "b"})
    assert AutoSamImageProcessor.from_model_config(config).num_labels == 3


def test_multi_class_post_processing_gives_label_maps_at_the_original_size(tiny_processor):
    logits = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    sizes = [(30, 40), (17, 23)]
    per_class = tiny_processor.post_process_class_logits(logits, sizes)
    label_maps = tiny_processor.post_process_semantic_segmentation({"logits": logits}, sizes)
    for class_logits, label_map, size in zip(per_class, label_maps, sizes, strict=True):
        assert class_logits.shape == (3, *size) and label_map.shape == size
        expected = torch.cat([torch.zeros(1, *size), class_logits]).argmax(dim=0)
        assert torch.equal(label_map, expected)
    with pytest.raises(ValueError, match="post_process_class_logits"):
        tiny_processor.post_process_logits(logits, sizes)


def test_a_config_canvas_rule_squashes_sams_canvases_too(tiny_sam_config, rgb, tmp_path):
    """`AutoSamConfig.canvas_rule="squash"` for a SAM (letterbox by default): every canvas is the whole image
    resized to the square, the labels have no padding, and logits go straight back to the original size."""
    config = AutoSamConfig(sam_config=tiny_sam_config, prompt_input_size=64, canvas_rule="squash")
    processor = AutoSamImageProcessor.from_model_config(config)
    assert AutoSamImageProcessor.from_model_config(AutoSamConfig(sam_config=tiny_sam_config)).canvas_rule == "letterbox"
    processor.save_pretrained(tmp_path)
    assert AutoSamImageProcessor.from_pretrained(tmp_path).to_dict() == processor.to_dict()
    mask = np.zeros(rgb.shape[:2], np.uint8)
    mask[:, 20:] = 1  # the right half of a 30×40 image
    outputs = processor(rgb, segmentation_maps=mask)
    side = processor.sam_canvas_side
    for name, canvas in (("pixel_values", side), ("prompt_pixel_values", 64)):
        expected = np.asarray(PIL.Image.fromarray(rgb).resize((canvas, canvas), PIL.Image.BILINEAR)) / 255
        np.testing.assert_allclose(outputs[name][0].permute(1, 2, 0).numpy(), (expected - MEAN) / STD, atol=1e-4)
    assert outputs["reshaped_input_sizes"].tolist() == [[side, side]] and bool(outputs["valid_mask"].all())
    labels = outputs["labels"][0]
    half = labels.shape[1] // 2
    assert labels[:, :half].sum() == 0 and labels[:, half:].all()  # squashed: the right half stays the right half
    logits = torch.where(torch.arange(labels.shape[1]) < half, -5.0, 5.0).expand(1, 1, *labels.shape)
    (back,) = processor.post_process_logits(logits, outputs["original_sizes"])
    assert back.shape == (30, 40) and not (back[:, :20] > 0).any() and (back[:, 20:] > 0).all()


def test_canvas_settings_are_the_processors_with_sam_preprocessing_on_sams_canvas():
    processor = AutoSamImageProcessor(prompt_size=32, sam_preprocessing={"do_normalize": False, "resample": 3})
    assert processor.canvas_settings("prompt")["do_normalize"] and processor.canvas_settings("prompt")["resample"] == 2
    assert not processor.canvas_settings("sam")["do_normalize"] and processor.canvas_settings("sam")["resample"] == 3
    assert processor.canvas_settings("sam")["image_mean"] == processor.image_mean
