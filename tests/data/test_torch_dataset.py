"""autosam_hf.data.torch_dataset: which augmentation view an epoch reads, and that image, mask and cached embedding
come from that same view."""

import numpy as np
import pytest
import torch
from conftest import make_tiny_processor, make_tiny_sam_config
from PIL import Image
from transformers import SamModel

from autosam_hf.data import POLYP_AUGMENTATION, EmbeddingCache, JointAugmentation, load_image_mask_folder
from autosam_hf.data.torch_dataset import AutoSamViewDataset

SIZES = [(30, 20), (16, 24), (20, 20)]  # (width, height)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for stem, (width, height) in enumerate(SIZES):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(root / "images" / f"{stem}.png")
        mask = np.zeros((height, width), np.uint8)
        mask[: height // 2, : width // 3] = 255
        Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
    return load_image_mask_folder(root)


def test_items_hold_the_processed_row_and_where_it_came_from(dataset):
    processor = make_tiny_processor()
    views = AutoSamViewDataset(dataset, processor)
    item = views[1]
    assert item["pixel_values"].shape == (3, 24, 24)
    assert item["labels"].shape == item["valid_mask"].shape == (48, 48)
    assert item["original_size"].tolist() == [24, 16] and item["index"].item() == 1
    expected = processor(images=dataset[1]["image"], segmentation_maps=dataset[1]["mask"], return_tensors="pt")
    torch.testing.assert_close(item["pixel_values"], expected["pixel_values"][0], rtol=0, atol=0)
    torch.testing.assert_close(item["labels"], expected["labels"][0], rtol=0, atol=0)
    assert "image_embeddings" not in item


def test_without_a_cache_every_epoch_draws_a_new_view_deterministically(dataset):
    views = AutoSamViewDataset(dataset, make_tiny_processor(), JointAugmentation(POLYP_AUGMENTATION, seed=5))
    first = views[0]["pixel_values"]
    views.set_epoch(1)
    second = views[0]["pixel_values"]
    assert views.view() == 1 and not torch.equal(first, second)
    views.set_epoch(0)
    torch.testing.assert_close(views[0]["pixel_values"], first, rtol=0, atol=0)


def test_with_a_cache_epoch_e_reads_view_e_mod_k_for_image_and_embedding(dataset, tmp_path):
    torch.manual_seed(0)
    sam = SamModel(make_tiny_sam_config()).eval()
    processor = make_tiny_processor()
    augmentation = JointAugmentation(POLYP_AUGMENTATION, seed=5)
    cache = EmbeddingCache.build(
        dataset, sam, processor, tmp_path, augmentation=augmentation, num_views=2, show_progress=False
    )
    views = AutoSamViewDataset(dataset, processor, augmentation, cache=cache)
    views.set_epoch(3)
    assert views.view() == 1
    item = views[2]
    torch.testing.assert_close(item["image_embeddings"], cache.get(2, 1)["image_embeddings"], rtol=0, atol=0)
    image, mask = augmentation(dataset[2]["image"], dataset[2]["mask"], index=2, view=1)
    expected = processor(images=image, segmentation_maps=mask, return_tensors="pt")
    torch.testing.assert_close(item["pixel_values"], expected["pixel_values"][0], rtol=0, atol=0)
    torch.testing.assert_close(item["labels"], expected["labels"][0], rtol=0, atol=0)


def test_a_cache_of_another_dataset_is_rejected(dataset, tmp_path):
    torch.manual_seed(0)
    sam = SamModel(make_tiny_sam_config()).eval()
    cache = EmbeddingCache.build(dataset.select([0, 1]), sam, make_tiny_processor(), tmp_path, show_progress=False)
    with pytest.raises(ValueError, match="the embedding cache has 2 rows but the dataset has 3"):
        AutoSamViewDataset(dataset, make_tiny_processor(), cache=cache)


def test_views_left_to_the_device_are_the_unaugmented_canvases_with_their_draw(dataset):
    """`augment_on_device`: every view of an image has the same uint8 canvases (the processor's, before rescaling),
    and its own draw, the augmentation's `parameters`, with each canvas's valid size."""
    processor = make_tiny_processor()
    augmentation = JointAugmentation(POLYP_AUGMENTATION, seed=5)
    views = AutoSamViewDataset(dataset, processor, augmentation, augment_on_device=True)
    first = views[0]
    views.set_epoch(1)
    second = views[0]
    expected = processor(images=dataset[0]["image"], segmentation_maps=dataset[0]["mask"], do_normalize=False,
                         do_rescale=False)  # fmt: skip
    for item in (first, second):
        assert item["pixel_values"].dtype == item["prompt_pixel_values"].dtype == torch.uint8
        torch.testing.assert_close(item["prompt_pixel_values"], expected["prompt_pixel_values"][0], rtol=0, atol=0)
        torch.testing.assert_close(item["labels"], expected["labels"][0], rtol=0, atol=0)
    assert first["augmentation"]["sizes"]["labels"].tolist() == [32, 48]  # 20x30 (height x width) on 48²
    assert first["augmentation"]["sizes"]["prompt_pixel_values"].tolist() == [43, 64]
    torch.testing.assert_close(second["augmentation"]["angle"], augmentation.parameters(0, 1, (20, 30))["angle"])
    assert not torch.equal(first["augmentation"]["angle"], second["augmentation"]["angle"])
    assert "augmentation" not in AutoSamViewDataset(dataset, processor, augment_on_device=True)[0]  # nothing to do
