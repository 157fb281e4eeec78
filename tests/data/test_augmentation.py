"""Tests of the deterministic joint augmentation (autosam_hf.data.augmentation)."""

import numpy as np
import pytest
import torch
from PIL import Image

from autosam_hf.data import (
    GLAS_AUGMENTATION,
    MONUSEG_AUGMENTATION,
    NO_AUGMENTATION,
    POLYP_AUGMENTATION,
    AugmentationConfig,
    JointAugmentation,
    augmentation_for_level,
)


def make_example(width=64, height=40, seed=0) -> tuple[Image.Image, Image.Image]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[5:25, 10:40] = 1
    return Image.fromarray(image), Image.fromarray(mask)


def test_reference_settings():
    # talshaharabany/AutoSAM dataset/tfs.py: ColorJitter(0.4, 0.4, 0.4, hue=0.1), v+h flips, RandomAffine(90, scale)
    assert POLYP_AUGMENTATION == AugmentationConfig(0.4, 0.4, 0.4, 0.1, True, True, 90.0, (0.75, 1.25))
    assert GLAS_AUGMENTATION == AugmentationConfig(0.2, 0.2, 0.2, 0.1, True, False, 5.0, (0.75, 1.25))
    assert MONUSEG_AUGMENTATION == AugmentationConfig(0.4, 0.4, 0.4, 0.1, True, False, 22.0, (0.75, 1.25))
    assert NO_AUGMENTATION.is_identity and not POLYP_AUGMENTATION.is_identity


@pytest.mark.parametrize("config", [POLYP_AUGMENTATION, GLAS_AUGMENTATION, MONUSEG_AUGMENTATION])
def test_output_types_shapes_and_binary_mask(config):
    image, mask = make_example()
    augmented_image, augmented_mask = JointAugmentation(config)(image, mask, index=3, view=1)
    assert augmented_image.shape == (40, 64, 3) and augmented_image.dtype == np.uint8
    assert augmented_mask.shape == (40, 64) and augmented_mask.dtype == np.uint8
    assert set(np.unique(augmented_mask)) <= {0, 1}


def test_a_jpeg_like_0_255_mask_is_binarised_as_everywhere_else():
    """Faint JPEG noise around a 0/255 mask stays background (`binarize_mask`: > 127), in every view."""
    image, _ = make_example()
    mask = np.zeros((40, 64), dtype=np.uint8)
    mask[5:25, 10:40] = 255
    mask[30:35, 45:50] = 3  # compression noise
    for config in (NO_AUGMENTATION, POLYP_AUGMENTATION):
        augmented_mask = JointAugmentation(config)(image, Image.fromarray(mask), index=0, view=0)[1]
        assert set(np.unique(augmented_mask)) <= {0, 1}
    identity = JointAugmentation(NO_AUGMENTATION)(image, Image.fromarray(mask), index=0, view=0)[1]
    np.testing.assert_array_equal(identity, (mask > 127).astype(np.uint8))


def test_same_seed_index_view_gives_the_same_view():
    image, mask = make_example()
    augment = JointAugmentation(POLYP_AUGMENTATION, seed=7)
    first = augment(image, mask, index=5, view=2)
    augment(image, mask, index=5, view=3)  # other draws in between change nothing
    torch.manual_seed(1234)
    again = JointAugmentation(POLYP_AUGMENTATION, seed=7)(image, mask, index=5, view=2)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])


def test_views_indices_and_seeds_differ():
    image, mask = make_example()
    augment = JointAugmentation(POLYP_AUGMENTATION, seed=0)
    reference = augment(image, mask, index=0, view=0)[0]
    for other in [
        augment(image, mask, index=0, view=1)[0],
        augment(image, mask, index=1, view=0)[0],
        JointAugmentation(POLYP_AUGMENTATION, seed=1)(image, mask, index=0, view=0)[0],
    ]:
        assert (other != reference).mean() > 0.5


def test_global_torch_rng_is_untouched():
    image, mask = make_example()
    state = torch.random.get_rng_state()
    JointAugmentation(POLYP_AUGMENTATION)(image, mask, index=0, view=0)
    assert torch.equal(state, torch.random.get_rng_state())


def test_identity_view_returns_the_input():
    image, mask = make_example()
    mask_255 = Image.fromarray(np.array(mask) * 255)
    augment = JointAugmentation(NO_AUGMENTATION)
    assert augment.is_identity and augment.fingerprint() == "identity"
    augmented_image, augmented_mask = augment(image, mask_255, index=4, view=9)
    np.testing.assert_array_equal(augmented_image, np.array(image))
    np.testing.assert_array_equal(augmented_mask, np.array(mask))


def test_mask_moves_with_the_image():
    # Geometry only, on an image whose red channel is the mask: after the warp they must still coincide.
    geometry = AugmentationConfig(
        horizontal_flip=True, vertical_flip=True, rotation_degrees=90, scale_range=(0.75, 1.25)
    )
    _, mask = make_example(96, 80)
    image = Image.fromarray(np.stack([np.array(mask) * 255] * 3, axis=-1))
    augment = JointAugmentation(geometry)
    for view in range(4):
        augmented_image, augmented_mask = augment(image, mask, index=0, view=view)
        assert augmented_mask.any()
        assert ((augmented_image[..., 0] > 127) == augmented_mask).mean() > 0.98


def test_flip_probability_is_about_one_half():
    flip_only = AugmentationConfig(horizontal_flip=True)
    image, mask = make_example()
    augment = JointAugmentation(flip_only)
    flipped = []
    for view in range(40):
        augmented_image, augmented_mask = augment(image, mask, 0, view)
        is_flipped = not np.array_equal(augmented_mask, np.array(mask))
        expected_image = np.array(image)[:, ::-1] if is_flipped else np.array(image)
        np.testing.assert_array_equal(augmented_image, expected_image)  # an exact flip, no resampling
        flipped.append(is_flipped)
    assert 10 <= sum(flipped) <= 30


def test_negative_index_or_view_is_rejected():
    image, mask = make_example()
    with pytest.raises(ValueError, match="index and view must be >= 0"):
        JointAugmentation(POLYP_AUGMENTATION)(image, mask, index=-1, view=0)


# ----------------------------------------------------------------------------------------------- strength levels
def test_levels_of_the_polyp_augmentation():
    assert augmentation_for_level(POLYP_AUGMENTATION, "reference") == POLYP_AUGMENTATION
    assert augmentation_for_level(POLYP_AUGMENTATION, "flips") == AugmentationConfig(
        horizontal_flip=True, vertical_flip=True
    )
    assert augmentation_for_level(GLAS_AUGMENTATION, "flips") == AugmentationConfig(horizontal_flip=True)
    assert augmentation_for_level(POLYP_AUGMENTATION, "none").is_identity
    light = augmentation_for_level(POLYP_AUGMENTATION, "light")
    assert (light.brightness, light.hue, light.rotation_degrees, light.scale_range) == (0.2, 0.0, 15.0, (0.9, 1.1))
    assert (light.jitter_probability, light.affine_probability) == (0.5, 0.5)
    assert light.horizontal_flip and light.vertical_flip
    # Never stronger than the dataset's own: GlaS rotates by at most 5 degrees.
    assert augmentation_for_level(GLAS_AUGMENTATION, "light").rotation_degrees == 5.0
    with pytest.raises(ValueError, match="augmentation level must be one of"):
        augmentation_for_level(POLYP_AUGMENTATION, "heavy")


def test_light_views_are_deterministic_and_half_keep_their_colours():
    image, mask = make_example(width=32, height=32)
    augmentation = JointAugmentation(augmentation_for_level(POLYP_AUGMENTATION, "light"), seed=3)
    first = augmentation(image, mask, index=4, view=2)
    again = augmentation(image, mask, index=4, view=2)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    # No jitter and no affine: the view is the image up to flips. With p = 0.5 each, about a quarter of views.
    original = np.asarray(image)
    flips = [original, original[::-1], original[:, ::-1], original[::-1, ::-1]]
    untouched = sum(
        any(np.array_equal(augmentation(image, mask, index=0, view=view)[0], flipped) for flipped in flips)
        for view in range(200)
    )
    assert 25 <= untouched <= 80


def test_label_maps_keep_their_class_ids_and_move_like_binary_masks():
    image, mask = make_example()
    label_map = np.array(mask) * 2
    label_map[30:35, 45:60] = 3
    augment = JointAugmentation(POLYP_AUGMENTATION)
    for view in range(3):
        _, augmented = augment(image, Image.fromarray(label_map), index=1, view=view, label_map=True)
        _, binary = augment(image, mask, index=1, view=view)
        assert set(np.unique(augmented)) <= {0, 2, 3}  # nearest resampling: no class is mixed into another
        np.testing.assert_array_equal(augmented == 2, binary == 1)  # the same geometry as the binary view
