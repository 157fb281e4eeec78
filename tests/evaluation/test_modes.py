"""autosam_hf.evaluation.modes: the mode names (the model's own, plus the GT-prompted SAM rows) and how the
ground-truth point, box and mask prompts are derived."""

import numpy as np
import pytest
import torch
from conftest import make_tiny_processor

from autosam_hf import AUTOSAM_MODES
from autosam_hf.evaluation.modes import (
    EVAL_MODES,
    GT_MASK_LOGIT,
    GT_PROMPT_MODES,
    MODE_DISPLAY_NAMES,
    box_prompt_from_mask,
    check_modes,
    clicks_to_reach,
    mask_prompt_from_labels,
    noc_key,
    point_prompt_from_mask,
    reported_clicks,
)


def test_evaluation_modes_are_the_models_modes_plus_gt_prompted_sam():
    assert set(EVAL_MODES) == set(AUTOSAM_MODES) | set(GT_PROMPT_MODES)
    assert GT_PROMPT_MODES == ("sam_gt_point", "sam_gt_box", "sam_gt_mask")
    assert set(MODE_DISPLAY_NAMES) == set(EVAL_MODES)
    assert check_modes(["autosam", "sam_gt_box", "autosam"]) == ["autosam", "sam_gt_box"]
    with pytest.raises(ValueError, match="'sam'"):
        check_modes(["sam"])  # the model's legacy name of autosam is not an evaluation mode


def test_gt_point_is_the_interior_maximum_scaled_to_the_canvas():
    processor = make_tiny_processor()
    height, width = 31, 60  # longest edge 60 → 24: canvas (12, 24); x scale 24/60, y scale 12/31
    rows, columns = np.ogrid[:height, :width]
    mask = (rows - 15) ** 2 + (columns - 40) ** 2 <= 8**2  # a disk centred at row 15, column 40
    mask[14:17, 0:30] = True  # and a thin bar: far from the disk's centre in distance-transform terms
    reshaped = processor.reshaped_size((height, width))
    assert reshaped == (12, 24)
    assert point_prompt_from_mask(mask, reshaped) == pytest.approx((40 * 24 / 60, 15 * 12 / 31))
    # The image border counts as boundary: a full mask's point is its centre, not a corner.
    assert point_prompt_from_mask(np.ones((5, 5), bool), (5, 5)) == (2.0, 2.0)
    assert point_prompt_from_mask(np.zeros((5, 7), bool), (5, 7)) is None


def test_gt_box_is_the_tight_bound_scaled_to_the_canvas():
    processor = make_tiny_processor()
    mask = np.zeros((31, 60), dtype=bool)
    mask[7:24, 12:49] = True
    mask[28, 55] = True  # a stray pixel widens the box
    box = box_prompt_from_mask(mask, processor.reshaped_size(mask.shape))
    assert box == pytest.approx((12 * 0.4, 7 * 12 / 31, 55 * 0.4, 28 * 12 / 31))
    assert box_prompt_from_mask(np.zeros((4, 4)), (4, 4)) is None


def test_gt_mask_prompt_is_plus_minus_logit_on_the_label_canvas():
    labels = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    prompt = mask_prompt_from_labels(labels)
    assert prompt.shape == (1, 1, 2, 2)
    assert prompt[0, 0].tolist() == [[-GT_MASK_LOGIT, GT_MASK_LOGIT], [GT_MASK_LOGIT, -GT_MASK_LOGIT]]


def test_noc_counts_clicks_from_the_automatic_mask_and_caps_at_20():
    ious = [0.5, 0.8, 0.86, 0.95]  # after 0, 1, 2, 3 clicks
    assert clicks_to_reach(ious, 0.85) == 2 and clicks_to_reach(ious, 0.90) == 3
    assert clicks_to_reach([0.9], 0.85) == 0  # the automatic mask is good enough: no click needed
    assert clicks_to_reach([0.1] * 30, 0.85) == 20  # never reached: the cap, as RITM counts it
    assert clicks_to_reach([0.1] * 21 + [1.0], 0.85) == 20  # reached only after the cap: not counted
    assert noc_key(0.85) == "noc@85" and noc_key(0.9) == "noc@90"
    assert reported_clicks(5) == (0, 1, 3, 5) and reported_clicks(2) == (0, 1, 2) and reported_clicks(8)[-1] == 8
    assert check_modes(["autosam_clicks", "autosam"]) == ["autosam_clicks", "autosam"]
    assert "autosam_clicks" not in EVAL_MODES  # not a row of the paper's table, nor of --mode all
