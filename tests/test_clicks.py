"""autosam_hf.clicks: the simulated user's next click on hand-worked masks, and the point-prompt layout."""

import numpy as np
import pytest
import torch

from autosam_hf.clicks import PADDING_LABEL, Click, click_prompts, largest_error_region, next_click, next_clicks


def squares(shape, *boxes):
    """A mask with the (row0, row1, col0, col1) boxes set, ends included."""
    mask = np.zeros(shape, dtype=bool)
    for row0, row1, col0, col1 in boxes:
        mask[row0 : row1 + 1, col0 : col1 + 1] = True
    return mask


def test_the_click_goes_to_the_centre_of_the_largest_error_region():
    small, missed, spurious = (0, 2, 0, 2), (10, 14, 20, 24), (30, 36, 30, 36)  # 9, 25 and 49 pixels
    target = squares((40, 40), small, missed)
    # A missed 5x5 square: a positive click at its centre.
    assert next_click(squares((40, 40), small), target) == Click(22, 12, True)
    # Add a spurious 7x7 square (larger): a negative click at its centre; the missed square waits.
    assert next_click(squares((40, 40), small, spurious), target) == Click(33, 33, False)
    region, is_false_negative = largest_error_region(squares((40, 40), small, spurious), target)
    assert not is_false_negative and region.sum() == 49
    # The largest region, not the largest error: two 4x4 false-negative squares (32 pixels) lose to one 5x5 square.
    target = squares((40, 40), (0, 3, 0, 3), (0, 3, 10, 13), missed)
    assert next_click(np.zeros((40, 40), bool), target) == Click(22, 12, True)
    assert next_click(target, target) is None


def test_ties_and_the_image_border():
    # Equal false-negative and false-positive regions: the false negatives first.
    target, prediction = squares((9, 9), (0, 2, 0, 2)), squares((9, 9), (6, 8, 6, 8))
    assert next_click(prediction, target) == Click(1, 1, True)
    # The border counts as boundary: a fully missed image is clicked at its centre, not at a corner.
    assert next_click(np.zeros((5, 5), bool), np.ones((5, 5), bool)) == Click(2, 2, True)
    with pytest.raises(ValueError, match="two"):
        next_click(np.zeros((4, 4)), np.zeros((4, 5)))


def test_clicks_per_class_and_their_prompt_tensors():
    targets = np.stack([squares((9, 9), (0, 2, 0, 2)), squares((9, 9), (4, 8, 4, 8))])
    predictions = np.stack([targets[0], np.zeros((9, 9), bool)])
    assert next_clicks(predictions, targets) == [None, Click(6, 6, True)]
    # Image 0: class 0 without clicks, class 1 two; image 1: one click on class 0.
    clicks = [[[], [Click(6, 6, True), Click(1, 7, False)]], [[Click(3, 4, True)], []]]
    points, labels = click_prompts(clicks)
    assert points.shape == (2, 2, 2, 2) and labels.dtype == torch.long
    assert points[0, 1].tolist() == [[6.0, 6.0], [1.0, 7.0]] and points[1, 0, 0].tolist() == [3.0, 4.0]
    assert labels.tolist() == [[[PADDING_LABEL] * 2, [1, 0]], [[1, PADDING_LABEL], [PADDING_LABEL] * 2]]
    with pytest.raises(ValueError, match="image 1"):
        click_prompts([[[], []], [[]]])
