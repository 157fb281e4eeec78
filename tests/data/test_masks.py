"""The binarisation rules for every kind of mask file the loaders read (the package's one `binarize_mask`, in
autosam_hf.model, returning 0/1), and autosam_hf.data.masks' storage format."""

import io

import numpy as np
from PIL import Image

from autosam_hf.data.masks import encode_mask_png
from autosam_hf.model import binarize_mask


def test_binarize_8bit_masks_with_max_above_one_threshold_at_127():
    mask = Image.fromarray(np.array([[0, 30, 127], [128, 200, 255]], dtype=np.uint8))
    np.testing.assert_array_equal(binarize_mask(mask), [[False, False, False], [True, True, True]])


def test_binarize_zero_one_masks_threshold_at_zero():
    mask = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8))
    np.testing.assert_array_equal(binarize_mask(mask), [[False, True], [True, False]])


def test_binarize_16bit_instance_masks_threshold_at_zero():
    mask = Image.fromarray(np.array([[0, 3], [300, 0]], dtype=np.uint16))
    assert mask.mode.startswith("I;16")
    np.testing.assert_array_equal(binarize_mask(mask), [[False, True], [True, False]])


def test_binarize_palette_masks_use_indices_and_instance_labels_use_any_nonzero():
    palette = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8)).convert("P")
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 1 is red, grey level 76 after convert("L")
    np.testing.assert_array_equal(binarize_mask(palette), [[False, True], [True, False]])
    glands = Image.fromarray(np.array([[0, 2], [7, 0]], dtype=np.uint8))
    np.testing.assert_array_equal(binarize_mask(glands, instance_labels=True), [[False, True], [True, False]])
    np.testing.assert_array_equal(binarize_mask(Image.new("1", (2, 1), 1)), [[True, True]])


def test_masks_are_stored_as_zero_one_png():
    mask = np.array([[0, 1], [1, 1]], dtype=np.uint8)
    stored = Image.open(io.BytesIO(encode_mask_png(mask.astype(bool))))
    assert stored.format == "PNG" and stored.mode == "L"
    np.testing.assert_array_equal(np.asarray(stored), mask)
