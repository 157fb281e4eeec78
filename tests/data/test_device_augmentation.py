"""autosam_hf.data.device_augmentation: the views applied batched on the device are the CPU path's views of the same
draws, up to resampling once on the canvas instead of at the original size; identity draws and flips exactly."""

import datasets
import numpy as np
import pytest
import torch

from autosam_hf.data import POLYP_AUGMENTATION, AugmentationConfig, JointAugmentation, load_preset_dataset
from autosam_hf.data.device_augmentation import DeviceAugmentation, augments_on_device
from autosam_hf.data.torch_dataset import AutoSamViewDataset
from autosam_hf.model import AutoSamImageProcessor

# Crops of Kvasir training images (which come squashed to 352²): landscape, portrait, near square, so that the
# canvases resize and (letterbox) pad them.
CROPS = [(0, 0, 352, 240), (40, 0, 300, 352), (0, 50, 352, 330)]
FLIPS = AugmentationConfig(horizontal_flip=True, vertical_flip=True)


@pytest.fixture(scope="module")
def images(shared_data_dir) -> datasets.Dataset:
    kvasir = load_preset_dataset("kvasir", "train", shared_data_dir / "kvasir", max_samples=len(CROPS))
    rows = [kvasir[i] for i in range(len(CROPS))]
    return datasets.Dataset.from_dict(
        {
            "image": [row["image"].crop(box) for row, box in zip(rows, CROPS, strict=True)],
            "mask": [row["mask"].crop(box) for row, box in zip(rows, CROPS, strict=True)],
        }
    )


def processor(rule: str, **kwargs) -> AutoSamImageProcessor:
    """SAM canvas 96², g's canvas 176², labels 128²: small, and fine enough for a Dice of label canvases."""
    if rule == "squash":
        sizes = {"size": {"height": 96, "width": 96}, "mask_size": {"height": 128, "width": 128}, "do_pad": False}
    else:
        sizes = {
            "size": {"longest_edge": 96},
            "pad_size": {"height": 96, "width": 96},
            "mask_size": {"longest_edge": 128},
            "mask_pad_size": {"height": 128, "width": 128},
        }
    return AutoSamImageProcessor(**sizes, canvas_rule=rule, prompt_size=176, **kwargs)


def both_paths(images, processor, augmentation, epoch, indices=None, canvases=("sam", "prompt")):
    """The batch of `indices` (default all) at `epoch`: (device path, CPU path)."""
    indices = range(len(images)) if indices is None else indices
    batches = []
    for on_device in (True, False):
        views = AutoSamViewDataset(images, processor, augmentation, canvases=canvases, augment_on_device=on_device)
        views.set_epoch(epoch)
        batches.append(torch.utils.data.default_collate([views[index] for index in indices]))
    deferred, cpu = batches
    return DeviceAugmentation(augmentation, processor)(deferred), cpu


def dice(a: torch.Tensor, b: torch.Tensor, dims=(-2, -1)) -> torch.Tensor:
    return 2 * (a * b).sum(dims) / (a.sum(dims) + b.sum(dims))


@pytest.mark.parametrize("rule", ["letterbox", "squash"])
def test_the_reference_augmentation_on_the_device_matches_the_cpu_views(images, rule):
    """The polyp reference augmentation (jitter, flips, ±90°, scale 0.75–1.25), two views of each image: the same
    keys, shapes and dtypes; labels with a Dice >= 0.97 pooled over the views and >= 0.95 each (the masks' edges
    are resampled on the 128² canvas instead of at the original size: about a pixel); images within 0.035 of the
    CPU path's on average (normalised units, about 2 grey levels: a second bilinear resampling, jitter before rather
    than after the resize)."""
    augmentation = JointAugmentation(POLYP_AUGMENTATION, seed=3)
    overlaps, areas = [], []
    for epoch in range(2):
        device, cpu = both_paths(images, processor(rule), augmentation, epoch)
        assert device.keys() == cpu.keys()
        for name, value in cpu.items():
            assert device[name].dtype == value.dtype and device[name].shape == value.shape, name
        torch.testing.assert_close(device["valid_mask"], cpu["valid_mask"], rtol=0, atol=0)
        assert dice(device["labels"], cpu["labels"]).min() >= 0.95
        overlaps.append((device["labels"] * cpu["labels"]).sum())
        areas.append(device["labels"].sum() + cpu["labels"].sum())
        for name in ("prompt_pixel_values", "pixel_values"):
            assert (device[name] - cpu[name]).abs().mean() < 0.035, name
    assert 2 * sum(overlaps) / sum(areas) >= 0.97


def test_identity_draws_give_the_unaugmented_canvases_exactly(images):
    """A draw with nothing applied (no jitter, flips nor affine) leaves the processor's canvases bit for bit; SAM's
    canvas with the frozen checkpoint's own settings (here MedSAM's: no normalisation)."""
    letterbox = processor("letterbox", sam_preprocessing={"do_normalize": False})
    augmentation = JointAugmentation(POLYP_AUGMENTATION, seed=3)
    views = AutoSamViewDataset(images, letterbox, augmentation, canvases=("sam", "prompt"), augment_on_device=True)
    batch = torch.utils.data.default_collate([views[index] for index in range(len(images))])
    draws = batch["augmentation"]
    draws["jitter_factors"][:] = torch.tensor([1.0, 1.0, 1.0, 0.0])
    draws["flips"][:], draws["affine"][:] = False, False
    augmented = DeviceAugmentation(augmentation, letterbox)(batch)
    for index in range(len(images)):
        row = images[index]
        expected = letterbox(images=row["image"], segmentation_maps=row["mask"], canvases=["sam", "prompt"])
        for name in ("pixel_values", "prompt_pixel_values", "labels"):
            torch.testing.assert_close(augmented[name][index], expected[name][0], rtol=0, atol=0)
    assert augmented["pixel_values"].min() >= 0  # not normalised


def test_flips_are_exact(images):
    """The default recipe's augmentation (flips only): the device path's canvases are the CPU path's."""
    augmentation = JointAugmentation(FLIPS, seed=1)
    flipped = 0
    for epoch in range(3):
        device, cpu = both_paths(images, processor("squash"), augmentation, epoch, canvases=("prompt",))
        torch.testing.assert_close(device["prompt_pixel_values"], cpu["prompt_pixel_values"], rtol=0, atol=0)
        torch.testing.assert_close(device["labels"], cpu["labels"], rtol=0, atol=0)
        flipped += sum(bool(augmentation.parameters(i, epoch, (1, 1))["flips"].any()) for i in range(len(images)))
    assert flipped >= 3  # of 9 views


def test_a_view_is_the_same_whatever_batch_it_is_in(images):
    """Each view depends on (seed, index, view) only: the same pixels in another batch, in another order."""
    augmentation = JointAugmentation(POLYP_AUGMENTATION, seed=3)
    letterbox = processor("letterbox")
    whole, _ = both_paths(images, letterbox, augmentation, epoch=1, canvases=("prompt",))
    views = AutoSamViewDataset(images, letterbox, augmentation, canvases=("prompt",), augment_on_device=True)
    views.set_epoch(1)
    part = DeviceAugmentation(augmentation, letterbox)(torch.utils.data.default_collate([views[2], views[0]]))
    for position, index in enumerate((2, 0)):
        for name in ("prompt_pixel_values", "labels"):
            torch.testing.assert_close(part[name][position], whole[name][index], rtol=0, atol=1e-6)


def test_parameters_are_the_draw_the_cpu_path_applies(images):
    """`JointAugmentation.parameters` is the view's draw: for flips, the CPU view is the image flipped as it says;
    the draw does not depend on the global torch seed."""
    augmentation = JointAugmentation(FLIPS, seed=2)
    row = images[0]
    image = torch.from_numpy(np.array(row["image"]))
    for view in range(4):
        torch.manual_seed(view)
        drawn = augmentation.parameters(index=0, view=view, size=tuple(image.shape[:2]))
        vertical, horizontal = drawn["flips"].tolist()
        expected = image.flip(0) if vertical else image
        expected = expected.flip(1) if horizontal else expected
        cpu_view, _ = augmentation(row["image"], row["mask"], index=0, view=view)
        torch.testing.assert_close(torch.from_numpy(cpu_view), expected, rtol=0, atol=0)
        assert not drawn["affine"] and drawn["jitter_factors"].tolist() == [1.0, 1.0, 1.0, 0.0]


def test_where_the_views_are_augmented():
    assert augments_on_device("auto", "cuda") and not augments_on_device("auto", "cpu")
    assert augments_on_device("accelerator", "cpu") and not augments_on_device("cpu", "cuda")
    with pytest.raises(ValueError, match="augmentation_device must be one of"):
        augments_on_device("gpu", "cuda")
