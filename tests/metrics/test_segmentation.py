"""autosam_hf.metrics.segmentation: per-image Dice/IoU, the polyp metrics and SUN-SEG's per-case video metrics,
against hand-computed values and pysodmetrics."""

import numpy as np
import py_sod_metrics
import pytest
import torch

from autosam_hf.metrics import (
    SegmentationMetrics,
    VideoSegmentationMetrics,
    compute_video_metrics,
    dice_iou_per_image,
)

EXPECTED_KEYS = {
    "dice",
    "iou",
    "s_alpha",
    "e_phi_mean",
    "f_beta_weighted",
    "f_beta_mean",
    "dice_threshold_mean",
    "sensitivity",
    "mae",
}


def mask(rows: list[str]) -> np.ndarray:
    """A bool mask drawn with '#' for foreground and '.' for background."""
    return np.array([[char == "#" for char in row] for row in rows])


# 4x4 target with its left half (8 pixels) foreground.
LEFT_HALF = mask(["##..", "##..", "##..", "##.."])
TOP_HALF = mask(["####", "####", "....", "...."])
EMPTY = np.zeros((4, 4), dtype=bool)


def random_binary_masks(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        height, width = rng.integers(8, 40, size=2)
        # Blobs of varying density so that Dice spans a useful range; every target is non-empty.
        target = rng.random((height, width)) < rng.uniform(0.1, 0.6)
        target[0, 0] = True
        pred = rng.random((height, width)) < rng.uniform(0.1, 0.6)
        yield pred, target


class TestDiceIouPerImage:
    def test_perfect(self):
        assert dice_iou_per_image(LEFT_HALF, LEFT_HALF) == (1.0, 1.0)

    def test_both_empty_is_perfect_agreement(self):
        assert dice_iou_per_image(EMPTY, EMPTY) == (1.0, 1.0)

    def test_empty_prediction_of_non_empty_target(self):
        assert dice_iou_per_image(EMPTY, LEFT_HALF) == (0.0, 0.0)

    def test_non_empty_prediction_of_empty_target(self):
        assert dice_iou_per_image(LEFT_HALF, EMPTY) == (0.0, 0.0)

    def test_disjoint(self):
        right_half = ~LEFT_HALF
        assert dice_iou_per_image(right_half, LEFT_HALF) == (0.0, 0.0)

    def test_half_overlap(self):
        # |P| = |T| = 8, |P∩T| = 4 (top-left quadrant), |P∪T| = 12.
        dice, iou = dice_iou_per_image(TOP_HALF, LEFT_HALF)
        assert dice == pytest.approx(2 * 4 / (8 + 8))  # 0.5
        assert iou == pytest.approx(4 / 12)

    def test_prediction_is_half_of_target(self):
        # |P| = 4 (first column), |T| = 8, P inside T: Dice = 2*4/12 = 2/3, IoU = 4/8 = 1/2.
        first_column = mask(["#...", "#...", "#...", "#..."])
        dice, iou = dice_iou_per_image(first_column, LEFT_HALF)
        assert dice == pytest.approx(2 / 3)
        assert iou == pytest.approx(1 / 2)

    def test_accepts_torch_and_0_1_integers(self):
        dice, iou = dice_iou_per_image(torch.from_numpy(TOP_HALF.astype(np.int64)), LEFT_HALF.astype(np.uint8))
        assert (dice, iou) == pytest.approx((0.5, 1 / 3))

    def test_shape_mismatch_names_both_shapes(self):
        with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
            dice_iou_per_image(EMPTY, np.zeros((4, 5), dtype=bool))

    def test_rejects_non_binary_mask(self):
        with pytest.raises(ValueError, match="0/1"):
            dice_iou_per_image(LEFT_HALF.astype(np.uint8) * 255, LEFT_HALF)

    def test_rejects_batched_input(self):
        with pytest.raises(ValueError, match=r"\(H, W\)"):
            dice_iou_per_image(LEFT_HALF[None], LEFT_HALF[None])

    def test_matches_pysodmetrics_binary_sample_based(self):
        dices, sod_dices, ious, sod_ious = [], [], [], []
        for pred, target in random_binary_masks(seed=0, count=20):
            dice, iou = dice_iou_per_image(pred, target)
            dices.append(dice)
            ious.append(iou)
            # One evaluator per image, so that its sample-based mean is this image's score.
            sod = py_sod_metrics.FmeasureV2(
                metric_handlers={
                    "dice": py_sod_metrics.DICEHandler(False, False, with_binary=True, sample_based=True),
                    "iou": py_sod_metrics.IOUHandler(False, False, with_binary=True, sample_based=True),
                }
            )
            sod.step(pred=pred.astype(np.uint8) * 255, gt=target.astype(np.uint8) * 255)
            sod_results = sod.get_results()
            sod_dices.append(sod_results["dice"]["binary"])
            sod_ious.append(sod_results["iou"]["binary"])

        np.testing.assert_allclose(dices, sod_dices, rtol=0, atol=1e-12)
        np.testing.assert_allclose(ious, sod_ious, rtol=0, atol=1e-12)
        # The scores really vary, so the comparison is not between constants.
        assert 0.1 < min(dices) < max(dices) < 0.9


class TestSegmentationMetrics:
    def test_mean_over_images_of_different_sizes(self):
        metrics = SegmentationMetrics()
        # Image A, 2x2: perfect (Dice 1, IoU 1).
        target_a = mask(["#.", "#."])
        metrics.update(target_a, target_a)
        # Image B, 4x4: Dice 2/3, IoU 1/2.
        metrics.update(mask(["#...", "#...", "#...", "#..."]), LEFT_HALF)

        results = metrics.compute()
        assert set(results) == EXPECTED_KEYS
        assert results["dice"] == pytest.approx((1 + 2 / 3) / 2)  # 5/6, not the pooled 2*6/(6+10) = 0.75
        assert results["iou"] == pytest.approx((1 + 1 / 2) / 2)
        assert len(metrics) == 2

    def test_perfect_prediction(self):
        metrics = SegmentationMetrics()
        target = np.zeros((32, 32), dtype=bool)
        target[8:20, 10:24] = True
        metrics.update(target, target)
        results = metrics.compute()
        assert results["s_alpha"] == pytest.approx(1.0, abs=1e-9)
        assert results["f_beta_weighted"] == pytest.approx(1.0, abs=1e-9)
        assert results["mae"] == 0.0
        assert results["dice"] == results["iou"] == 1.0

    def test_map_metrics_match_pysodmetrics(self):
        rng = np.random.default_rng(1)
        metrics = SegmentationMetrics()
        s_measure, e_measure = py_sod_metrics.Smeasure(), py_sod_metrics.Emeasure()
        weighted_f, mae = py_sod_metrics.WeightedFmeasure(), py_sod_metrics.MAE()
        curves = py_sod_metrics.FmeasureV2(
            metric_handlers={
                "f": py_sod_metrics.FmeasureHandler(True, False, beta=0.3),
                "dice": py_sod_metrics.DICEHandler(True, False),
                "sen": py_sod_metrics.SensitivityHandler(True, False),
            }
        )
        dices = []
        for height, width in [(24, 30), (17, 41), (33, 33)]:
            target = np.zeros((height, width), dtype=bool)
            target[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] = True
            # A noisy map correlated with the target.
            prob = np.clip(0.6 * target + 0.5 * rng.random((height, width)), 0, 1)
            dices.append(metrics.update_from_probabilities(prob, target)[0])
            for measure in (s_measure, e_measure, weighted_f, mae, curves):
                measure.step(pred=np.round(prob * 255).astype(np.uint8), gt=target.astype(np.uint8) * 255)

        results = metrics.compute()
        curve_results = curves.get_results()
        assert results["s_alpha"] == pytest.approx(s_measure.get_results()["sm"])
        assert results["e_phi_mean"] == pytest.approx(e_measure.get_results()["em"]["curve"].mean())
        assert results["f_beta_weighted"] == pytest.approx(weighted_f.get_results()["wfm"])
        assert results["mae"] == pytest.approx(mae.get_results()["mae"])
        assert results["f_beta_mean"] == pytest.approx(curve_results["f"]["dynamic"].mean())
        assert results["dice_threshold_mean"] == pytest.approx(curve_results["dice"]["dynamic"].mean())
        assert results["sensitivity"] == pytest.approx(curve_results["sen"]["dynamic"].mean())
        assert results["dice"] == pytest.approx(np.mean(dices))
        assert 0.3 < results["s_alpha"] < 0.99

    def test_update_from_probabilities_thresholds_strictly_above_half(self):
        metrics = SegmentationMetrics()
        target = mask(["##", ".."])
        # 0.5 is background, 0.51 foreground: predicted mask "#." / "..", Dice 2*1/3, IoU 1/2.
        dice, iou = metrics.update_from_probabilities(np.array([[0.51, 0.5], [0.0, 0.2]]), target)
        assert (dice, iou) == pytest.approx((2 / 3, 1 / 2))

    def test_rejects_logits_as_probabilities(self):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            SegmentationMetrics().update_from_probabilities(np.array([[2.0, -1.0]]), np.array([[1, 0]]))

    def test_shape_mismatch_raises(self):
        with pytest.raises(ValueError, match=r"\(4, 4\).*\(2, 2\)"):
            SegmentationMetrics().update(EMPTY, np.zeros((2, 2), dtype=bool))

    def test_compute_without_images_raises(self):
        with pytest.raises(ValueError, match="No image"):
            SegmentationMetrics().compute()


class TestVideoMetrics:
    # Frames as (pred_prob, target): a perfect frame, a Dice 2/3 frame and a disjoint (Dice 0) frame.
    PERFECT = (LEFT_HALF.astype(float), LEFT_HALF)
    TWO_THIRDS = (mask(["#...", "#...", "#...", "#..."]).astype(float), LEFT_HALF)
    DISJOINT = ((~LEFT_HALF).astype(float), LEFT_HALF)

    def test_mean_over_cases_skipping_first_and_last_frame(self):
        per_case = {
            # Scored frames: the two middle ones -> case Dice 1.
            "case1": [self.DISJOINT, self.PERFECT, self.PERFECT, self.DISJOINT],
            # Scored frame: the middle one -> case Dice 2/3.
            "case2": [self.DISJOINT, self.TWO_THIRDS, self.DISJOINT],
        }
        results = compute_video_metrics(per_case)
        # Mean over cases, (1 + 2/3) / 2; the mean over the three scored frames would be 8/9.
        assert results["dice"] == pytest.approx(5 / 6)
        assert results["iou"] == pytest.approx((1 + 1 / 2) / 2)
        assert set(results) == EXPECTED_KEYS

    def test_mean_over_cases_with_every_frame(self):
        per_case = {
            "case1": [self.PERFECT, self.DISJOINT],  # case Dice 1/2
            "case2": [self.TWO_THIRDS],  # case Dice 2/3
        }
        results = compute_video_metrics(per_case, skip_first_and_last_frame=False)
        assert results["dice"] == pytest.approx((1 / 2 + 2 / 3) / 2)

    def test_interleaved_cases_and_per_case_results(self):
        metrics = VideoSegmentationMetrics()
        frames = {
            "a": [self.DISJOINT, self.PERFECT, self.DISJOINT],
            "b": [self.PERFECT, self.TWO_THIRDS, self.PERFECT],
        }
        for index in range(3):
            for case in ("a", "b"):
                pred_prob, target = frames[case][index]
                metrics.update(case, pred_prob.astype(bool), target, pred_prob=pred_prob)
        per_case = metrics.compute_per_case()
        assert per_case["a"]["dice"] == pytest.approx(1.0)
        assert per_case["b"]["dice"] == pytest.approx(2 / 3)

    def test_case_too_short_to_score_raises(self):
        with pytest.raises(ValueError, match="case2"):
            compute_video_metrics({"case1": [self.PERFECT] * 3, "case2": [self.PERFECT] * 2})
