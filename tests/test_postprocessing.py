"""autosam_hf.postprocessing, the one path from mask logits to masks at the original size, and the processor's
`mask_threshold`, which makes the pipeline's `post_process_semantic_segmentation` binarise the same way."""

import numpy as np
import pytest
import torch
from conftest import make_tiny_processor

from autosam_hf import AutoSamConfig, AutoSamImageProcessor
from autosam_hf.postprocessing import post_process_predictions

SIZES = [(30, 40), (17, 23)]  # (height, width)


def random_logits(seed=0) -> torch.Tensor:
    return torch.randn(len(SIZES), 1, 48, 48, generator=torch.Generator().manual_seed(seed))


def test_predictions_are_logits_at_the_original_size_above_the_threshold():
    processor, logits = make_tiny_processor(), random_logits()
    predictions = post_process_predictions(processor, logits.to(torch.bfloat16), torch.tensor(SIZES), 0.3)
    expected_logits = processor.post_process_logits(logits.to(torch.bfloat16).float(), SIZES)
    for prediction, expected, size in zip(predictions, expected_logits, SIZES, strict=True):
        assert prediction.logits.shape == size and prediction.logits.dtype == torch.float32
        torch.testing.assert_close(prediction.logits, expected)
        assert prediction.mask.dtype == bool
        np.testing.assert_array_equal(prediction.mask, (expected > 0.3).numpy())
        assert 0 < prediction.mask.mean() < 1
        np.testing.assert_allclose(prediction.probabilities, torch.sigmoid(expected).numpy())


def test_semantic_segmentation_thresholds_at_the_processors_mask_threshold():
    processor, logits = make_tiny_processor(), random_logits(1)
    assert processor.mask_threshold == 0.0
    outputs = {"logits": logits}

    def label_maps(**kwargs):
        return [
            label_map.numpy() for label_map in processor.post_process_semantic_segmentation(outputs, SIZES, **kwargs)
        ]

    masks_at = {t: [p.mask for p in post_process_predictions(processor, logits, SIZES, t)] for t in (0.0, 0.5)}
    for label_map, mask in zip(label_maps(), masks_at[0.0], strict=True):
        np.testing.assert_array_equal(label_map, mask.astype(np.int64))
    processor.mask_threshold = 0.5
    for label_map, mask in zip(label_maps(), masks_at[0.5], strict=True):
        np.testing.assert_array_equal(label_map, mask.astype(np.int64))
    # An explicit threshold still wins (the signature transformers' pipelines know).
    for label_map, mask in zip(label_maps(mask_threshold=0.0), masks_at[0.0], strict=True):
        np.testing.assert_array_equal(label_map, mask.astype(np.int64))


def test_processor_mask_threshold_is_saved_and_taken_from_the_model_config(tmp_path, tiny_sam_config):
    processor = make_tiny_processor()
    processor.mask_threshold = -1.5
    processor.save_pretrained(tmp_path)
    assert AutoSamImageProcessor.from_pretrained(tmp_path).mask_threshold == -1.5
    config = AutoSamConfig(sam_config=tiny_sam_config, mask_threshold=0.75)
    assert AutoSamImageProcessor.from_model_config(config).mask_threshold == 0.75


def test_multi_class_predictions_hold_label_maps_probabilities_and_class_masks():
    processor = make_tiny_processor()
    logits = torch.randn(len(SIZES), 3, 48, 48, generator=torch.Generator().manual_seed(2))
    softmax = post_process_predictions(processor, logits, SIZES, 0.0)
    sigmoid = post_process_predictions(processor, logits, SIZES, 0.0, class_activation="sigmoid")
    for exclusive, independent, class_logits, size in zip(
        softmax, sigmoid, processor.post_process_class_logits(logits, SIZES), SIZES, strict=True
    ):
        assert exclusive.class_logits.shape == (3, *size) and exclusive.label_map.dtype == np.uint8
        expected = torch.cat([torch.zeros(1, *size), class_logits]).argmax(dim=0).numpy()
        np.testing.assert_array_equal(exclusive.label_map, expected)
        np.testing.assert_array_equal(independent.label_map, expected)  # one label map rule for both
        np.testing.assert_array_equal(exclusive.mask, expected > 0)
        np.testing.assert_array_equal(exclusive.class_masks, expected[None] == np.arange(1, 4)[:, None, None])
        np.testing.assert_array_equal(independent.class_masks, (class_logits > 0).numpy())  # may overlap
        full = torch.softmax(torch.cat([torch.zeros(1, *size), class_logits]), dim=0)
        np.testing.assert_allclose(exclusive.class_probabilities, full[1:].numpy(), atol=1e-6)
        np.testing.assert_allclose(exclusive.probabilities, 1 - full[0].numpy(), atol=1e-6)
        np.testing.assert_allclose(
            independent.probabilities, 1 - torch.prod(1 - torch.sigmoid(class_logits), dim=0).numpy(), atol=1e-6
        )
        with pytest.raises(ValueError, match="class_logits"):
            exclusive.logits  # noqa: B018
