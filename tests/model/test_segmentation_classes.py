"""autosam_hf.model.segmentation_classes: one rule from class logits to label maps, probabilities and class masks,
which for K = 1 is the binary model's under both background rules."""

import pytest
import torch

from autosam_hf.model.segmentation_classes import (
    class_masks_from_logits,
    class_probabilities,
    label_maps_from_logits,
    one_hot_labels,
)

# Three pixels of a 2-class image: (z_a, z_b) = (2, 1), (-1, -3), (0.5, 3).
LOGITS = torch.tensor([[[2.0, -1.0, 0.5]], [[1.0, -3.0, 3.0]]])  # (K=2, H=1, W=3)


def test_label_map_is_the_argmax_over_the_threshold_and_the_class_logits():
    assert label_maps_from_logits(LOGITS).tolist() == [[1, 0, 2]]
    # The threshold is the background's logit: at 2.5 only the third pixel's class b (3.0) beats it.
    assert label_maps_from_logits(LOGITS, threshold=2.5).tolist() == [[0, 0, 2]]
    assert label_maps_from_logits(torch.zeros(2, 1, 2)).tolist() == [[0, 0]]  # ties go to the background
    batch = torch.stack([LOGITS, -LOGITS])  # (B, K, H, W) → (B, H, W)
    assert label_maps_from_logits(batch).shape == (2, 1, 3)


@pytest.mark.parametrize("class_activation", ["softmax", "sigmoid"])
def test_one_class_is_the_binary_rule_under_both_activations(class_activation):
    logits = torch.tensor([[[0.3, -0.2, 0.0]]])  # (K=1, 1, 3)
    assert torch.equal(label_maps_from_logits(logits, 0.1), (logits[0] > 0.1).long())
    assert torch.equal(class_probabilities(logits, class_activation), torch.sigmoid(logits))
    assert torch.equal(class_masks_from_logits(logits, 0.1, class_activation), logits > 0.1)


def test_softmax_probabilities_include_a_background_of_logit_zero():
    probabilities = class_probabilities(LOGITS, "softmax")
    expected = torch.softmax(torch.cat([torch.zeros(1, 1, 3), LOGITS]), dim=0)[1:]
    torch.testing.assert_close(probabilities, expected)
    assert (probabilities.sum(dim=0) < 1).all()  # the rest is the background's


def test_softmax_masks_are_exclusive_and_sigmoid_masks_may_overlap():
    exclusive = class_masks_from_logits(LOGITS, class_activation="softmax")
    assert exclusive.tolist() == [[[True, False, False]], [[False, False, True]]]
    overlapping = class_masks_from_logits(LOGITS, class_activation="sigmoid")
    assert overlapping.tolist() == [[[True, False, True]], [[True, False, True]]]
    with pytest.raises(ValueError, match="class_activation"):
        class_probabilities(LOGITS, "relu")


def test_one_hot_labels_drop_the_background():
    labels = torch.tensor([[0, 1, 2, 2]])
    assert one_hot_labels(labels, 2).tolist() == [[[0, 1, 0, 0], [0, 0, 1, 1]]]
    assert one_hot_labels(torch.tensor([[0.0, 1.0]]), 1).tolist() == [[[0.0, 1.0]]]
