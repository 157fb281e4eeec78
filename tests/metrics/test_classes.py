"""autosam_hf.metrics.classes: per-class Dice/IoU per image, averaged over images, and their macro mean."""

import numpy as np
import pytest

from autosam_hf.metrics import MulticlassSegmentationMetrics, class_metric_key, metric_display_name


def test_per_class_scores_their_macro_mean_and_any_class():
    target = np.array([[0, 1, 1, 2], [0, 1, 1, 2]])
    predicted = np.stack([target == 1, np.zeros_like(target, dtype=bool)])  # class 1 exact, class 2 missed
    predicted[1, 0, 0] = True  # class 2 predicted on one background pixel
    metrics = MulticlassSegmentationMetrics(["interior", "nucleus boundary"])
    scores = metrics.update(predicted, target)
    assert scores["dice_interior"] == 1.0 and scores["dice_nucleus_boundary"] == 0.0
    assert scores["dice"] == 0.5 and scores["iou"] == 0.5
    # Any class: predicted 5 px, true 6 px, 4 shared.
    assert scores["foreground_dice"] == pytest.approx(8 / 11) and scores["foreground_iou"] == pytest.approx(4 / 7)
    # A second image where class 2 is absent and not predicted: both empty count as 1.
    metrics.update(np.stack([target == 1, np.zeros_like(predicted[1])]), np.where(target == 2, 0, target))
    result = metrics.compute()
    assert result["dice_interior"] == 1.0 and result["dice_nucleus_boundary"] == 0.5
    assert result["dice"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="K = 2"):
        metrics.update(predicted[:1], target)


def test_metric_keys_and_names():
    assert class_metric_key("dice", "Nucleus Boundary!") == "dice_nucleus_boundary"
    assert metric_display_name("iou_interior") == "IoU (interior)" and metric_display_name("aji") == "AJI"
    assert metric_display_name("mae") == "mae"
