# Copyright 2025 The autosam-hf Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Segmentation metrics reported in the AutoSAM paper (arXiv 2306.06370).

All metrics are computed per image, at the resolution the caller passes (the image's ORIGINAL resolution), then
averaged over images (or over videos, see [`VideoSegmentationMetrics`]).

Two kinds of prediction are used:

- the **binary mask** (`pred_prob > 0.5`): foreground Dice and IoU, computed here by [`dice_iou_per_image`];
- the **probability map** (sigmoid of the logits, in [0, 1]): the salient-object metrics S-alpha, mean E-phi, weighted
  F-beta, mean F-beta, threshold-averaged Dice, Sensitivity and MAE, all computed by pysodmetrics (`py_sod_metrics`),
  not re-derived. pysodmetrics reads the map as uint8 0-255 (`round(prob * 255)`) and min-max normalises each map,
  as the MATLAB/PraNet/SUN-SEG toolboxes do with saved PNG maps.

Empty masks: when prediction and target are both empty, Dice = IoU = 1.0 (perfect agreement); when exactly one is
empty, Dice = IoU = 0.0. pysodmetrics' own binary Dice/IoU give 0.0 when both are empty; they agree otherwise.
"""

from collections.abc import Iterable, Mapping

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor

# A pixel is foreground when its probability is strictly above this value (i.e. logit > 0).
DEFAULT_THRESHOLD = 0.5

# pysodmetrics' F-measure weight beta^2 = 0.3, the value used throughout the salient/camouflaged/polyp literature.
F_BETA_SQUARED = 0.3


def _to_2d_numpy(array: ArrayLike, name: str) -> np.ndarray:
    """Returns `array` as a numpy array, checking that it is one (H, W) image."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        # numpy has no bfloat16; float32 holds every half-precision value exactly.
        array = array.float().numpy() if array.is_floating_point() else array.numpy()
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be one (H, W) image, got shape {tuple(array.shape)}.")
    return array


def _as_binary_mask(mask: ArrayLike, name: str) -> np.ndarray:
    """Returns `mask` (H, W), holding only 0/1 or False/True, as a bool array."""
    mask = _to_2d_numpy(mask, name)
    if mask.dtype != bool:
        # Reject 0/255 masks and probability maps rather than silently guessing a threshold.
        if not np.all((mask == 0) | (mask == 1)):
            raise ValueError(
                f"`{name}` must hold only 0/1 or False/True; binarise it first (e.g. `mask > 127` for a 0-255 mask, "
                f"`prob > {DEFAULT_THRESHOLD}` for a probability map)."
            )
        mask = mask.astype(bool)
    return mask


def _as_probability_map(prob: ArrayLike, name: str) -> np.ndarray:
    """Returns `prob` (H, W), holding values in [0, 1], as a float64 array."""
    prob = _to_2d_numpy(prob, name).astype(np.float64)
    # Written so that NaN fails too.
    if not np.all((prob >= 0) & (prob <= 1)):
        raise ValueError(f"`{name}` must hold probabilities in [0, 1] (apply a sigmoid to logits first).")
    return prob


def _check_same_shape(pred: np.ndarray, target: np.ndarray, pred_name: str = "pred") -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"`{pred_name}` has shape {tuple(pred.shape)} but `target` has shape {tuple(target.shape)}; "
            "resize the prediction to the target's (original) resolution first."
        )


def dice_iou_per_image(pred: ArrayLike, target: ArrayLike) -> tuple[float, float]:
    """
    Foreground Dice and IoU of one image.

    Args:
        pred (`np.ndarray` or `torch.Tensor` of shape `(H, W)`):
            Binary predicted mask, bool or 0/1.
        target (`np.ndarray` or `torch.Tensor` of shape `(H, W)`):
            Binary ground-truth mask, bool or 0/1, at the resolution the metric should be computed at.

    Returns:
        `tuple[float, float]`: `(dice, iou)`, with `dice = 2|P∩T| / (|P| + |T|)` and `iou = |P∩T| / |P∪T|`.
        Both are 1.0 when `pred` and `target` are both empty, 0.0 when exactly one of them is.

    Raises:
        ValueError: if the shapes differ, an input is not 2-D, or an input is not binary.
    """
    pred = _as_binary_mask(pred, "pred")
    target = _as_binary_mask(target, "target")
    _check_same_shape(pred, target)

    intersection = np.count_nonzero(pred & target)
    total = np.count_nonzero(pred) + np.count_nonzero(target)
    if total == 0:
        return 1.0, 1.0
    # When exactly one mask is empty the intersection is 0, so both scores are 0.0 without a special case.
    return 2 * intersection / total, intersection / (total - intersection)


def _validate_image(
    pred_binary: ArrayLike, target: ArrayLike, pred_prob: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns one image's inputs as (bool, bool, float64) arrays of one shape; a missing map is the binary mask."""
    pred_binary = _as_binary_mask(pred_binary, "pred_binary")
    target = _as_binary_mask(target, "target")
    _check_same_shape(pred_binary, target, "pred_binary")
    if pred_prob is None:
        return pred_binary, target, pred_binary.astype(np.float64)
    pred_prob = _as_probability_map(pred_prob, "pred_prob")
    _check_same_shape(pred_prob, target, "pred_prob")
    return pred_binary, target, pred_prob


class SegmentationMetrics:
    """
    Accumulates the AutoSAM paper's metrics over images; each image may have its own size.

    Call [`~SegmentationMetrics.update`] once per image, then [`~SegmentationMetrics.compute`]. Every metric is
    computed per image and then averaged over images.

    Example:

    ```python
    >>> metrics = SegmentationMetrics()
    >>> for prob, target in zip(probability_maps, targets):  # (H_i, W_i) each, at original resolution
    ...     metrics.update_from_probabilities(prob, target)
    >>> metrics.compute()["dice"]
    ```
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forgets every image seen so far."""
        self.dices: list[float] = []
        self.ious: list[float] = []
        # Imported on first use: it loads scikit-learn and scikit-image (~0.5 s), which training never needs.
        import py_sod_metrics

        self.s_measure = py_sod_metrics.Smeasure()
        self.e_measure = py_sod_metrics.Emeasure()
        self.weighted_f_measure = py_sod_metrics.WeightedFmeasure()
        self.mae = py_sod_metrics.MAE()
        # Curves over the 256 thresholds of the uint8 map, averaged per image (`sample_based`).
        self.threshold_curves = py_sod_metrics.FmeasureV2(
            metric_handlers={
                "f_beta": py_sod_metrics.FmeasureHandler(with_dynamic=True, with_adaptive=False, beta=F_BETA_SQUARED),
                "dice": py_sod_metrics.DICEHandler(with_dynamic=True, with_adaptive=False),
                "sensitivity": py_sod_metrics.SensitivityHandler(with_dynamic=True, with_adaptive=False),
            }
        )

    def __len__(self) -> int:
        return len(self.dices)

    def update(
        self, pred_binary: ArrayLike, target: ArrayLike, pred_prob: ArrayLike | None = None
    ) -> tuple[float, float]:
        """
        Adds one image.

        Args:
            pred_binary (`np.ndarray` or `torch.Tensor` of shape `(H, W)`):
                Binary predicted mask (bool or 0/1), used for Dice and IoU.
            target (`np.ndarray` or `torch.Tensor` of shape `(H, W)`):
                Binary ground-truth mask (bool or 0/1) at the image's original resolution.
            pred_prob (`np.ndarray` or `torch.Tensor` of shape `(H, W)`, *optional*):
                Foreground probabilities in [0, 1], used for the pysodmetrics metrics. When omitted, `pred_binary`
                is used as the map, so those metrics then describe the binary mask.

        Returns:
            `tuple[float, float]`: this image's `(dice, iou)`, e.g. for a per-image report.
        """
        pred_binary, target, pred_prob = _validate_image(pred_binary, target, pred_prob)
        dice, iou = dice_iou_per_image(pred_binary, target)
        self.dices.append(dice)
        self.ious.append(iou)

        pred_uint8 = np.round(pred_prob * 255).astype(np.uint8)
        target_uint8 = target.astype(np.uint8) * 255
        for measure in (self.s_measure, self.e_measure, self.weighted_f_measure, self.mae, self.threshold_curves):
            measure.step(pred=pred_uint8, gt=target_uint8)
        return dice, iou

    def update_from_probabilities(
        self, pred_prob: ArrayLike, target: ArrayLike, threshold: float = DEFAULT_THRESHOLD
    ) -> tuple[float, float]:
        """
        Adds one image given only its probability map; the binary mask is `pred_prob > threshold`.

        Args:
            pred_prob (`np.ndarray` or `torch.Tensor` of shape `(H, W)`): foreground probabilities in [0, 1].
            target (`np.ndarray` or `torch.Tensor` of shape `(H, W)`): binary ground-truth mask (bool or 0/1).
            threshold (`float`, *optional*, defaults to 0.5): probability above which a pixel is foreground.

        Returns:
            `tuple[float, float]`: this image's `(dice, iou)`.
        """
        pred_prob = _as_probability_map(pred_prob, "pred_prob")
        return self.update(pred_prob > threshold, target, pred_prob=pred_prob)

    def compute(self) -> dict[str, float]:
        """
        Averages every metric over the images added so far.

        Returns:
            `dict[str, float]` with keys:

            - `"dice"`, `"iou"`: mean foreground Dice / IoU of the binary masks (the paper's Dice and IoU);
            - `"s_alpha"`: structure measure S-alpha (alpha = 0.5);
            - `"e_phi_mean"`: mean enhanced-alignment measure (E-phi averaged over the 256 thresholds);
            - `"f_beta_weighted"`: weighted F-beta (beta = 1, Margolin et al.);
            - `"f_beta_mean"`: F-beta (beta^2 = 0.3) averaged over the 256 thresholds;
            - `"dice_threshold_mean"`, `"sensitivity"`: Dice and sensitivity (recall) averaged over the 256
              thresholds, the "meanDic" and "meanSen" of the SUN-SEG toolbox;
            - `"mae"`: mean absolute error between the normalised map and the target.

            All but `"dice"` and `"iou"` are computed by pysodmetrics on the probability map.
        """
        if not self.dices:
            raise ValueError("No image was added: call `update` at least once before `compute`.")
        curves = self.threshold_curves.get_results()
        return {
            "dice": float(np.mean(self.dices)),
            "iou": float(np.mean(self.ious)),
            "s_alpha": float(self.s_measure.get_results()["sm"]),
            "e_phi_mean": float(self.e_measure.get_results()["em"]["curve"].mean()),
            "f_beta_weighted": float(self.weighted_f_measure.get_results()["wfm"]),
            "f_beta_mean": float(curves["f_beta"]["dynamic"].mean()),
            "dice_threshold_mean": float(curves["dice"]["dynamic"].mean()),
            "sensitivity": float(curves["sensitivity"]["dynamic"].mean()),
            "mae": float(self.mae.get_results()["mae"]),
        }


class VideoSegmentationMetrics:
    """
    Accumulates metrics per video ("case") and averages them over videos, as the SUN-SEG benchmark does.

    This follows the SUN-SEG evaluation toolbox (`eval/vps_evaluator.py` of GewelsJI/VPS): each case's frames are
    averaged into one score per metric, then the case scores are averaged with equal weight per case, so a long
    video counts as much as a short one. By default the first and last frame of every case are left out, as that
    toolbox does (after the DAVSOD convention); frames must therefore be added in temporal order. Set
    `skip_first_and_last_frame=False` to score every frame.

    Args:
        skip_first_and_last_frame (`bool`, *optional*, defaults to `True`):
            Whether to leave out each case's first and last frame, to match published SUN-SEG numbers.
    """

    def __init__(self, skip_first_and_last_frame: bool = True):
        self.skip_first_and_last_frame = skip_first_and_last_frame
        self.reset()

    def reset(self) -> None:
        """Forgets every frame seen so far."""
        self.metrics_per_case: dict[str, SegmentationMetrics] = {}
        # When skipping the last frame we cannot know a frame is the last one until the next arrives, so each
        # case holds back its latest frame; it is scored once a later frame of that case comes in.
        self._held_back_frame: dict[str, tuple] = {}
        self._num_frames_seen: dict[str, int] = {}

    def update(self, case: str, pred_binary: ArrayLike, target: ArrayLike, pred_prob: ArrayLike | None = None) -> None:
        """
        Adds the next frame of video `case`; arguments as in [`SegmentationMetrics.update`].
        """
        metrics = self.metrics_per_case.setdefault(case, SegmentationMetrics())
        frame = _validate_image(pred_binary, target, pred_prob)
        frame_index = self._num_frames_seen.get(case, 0)
        self._num_frames_seen[case] = frame_index + 1
        if not self.skip_first_and_last_frame:
            metrics.update(*frame)
            return
        if case in self._held_back_frame:
            metrics.update(*self._held_back_frame.pop(case))
        if frame_index > 0:
            # A copy, so that a caller reusing its buffers cannot alter the held-back frame.
            self._held_back_frame[case] = tuple(np.array(array) for array in frame)

    def update_from_probabilities(
        self, case: str, pred_prob: ArrayLike, target: ArrayLike, threshold: float = DEFAULT_THRESHOLD
    ) -> None:
        """
        Adds the next frame of video `case` given its probability map; as in
        [`SegmentationMetrics.update_from_probabilities`].
        """
        pred_prob = _as_probability_map(pred_prob, "pred_prob")
        self.update(case, pred_prob > threshold, target, pred_prob=pred_prob)

    def compute_per_case(self) -> dict[str, dict[str, float]]:
        """
        Returns:
            `dict[str, dict[str, float]]`: for each case, its metrics averaged over its scored frames (keys as in
            [`SegmentationMetrics.compute`]).
        """
        empty_cases = [case for case, metrics in self.metrics_per_case.items() if len(metrics) == 0]
        if empty_cases:
            raise ValueError(
                f"Cases {empty_cases} have no frame left to score (a case needs at least 3 frames when "
                "`skip_first_and_last_frame=True`)."
            )
        return {case: metrics.compute() for case, metrics in self.metrics_per_case.items()}

    def compute(self) -> dict[str, float]:
        """
        Returns:
            `dict[str, float]`: each metric of [`SegmentationMetrics.compute`] averaged over cases.
        """
        per_case = self.compute_per_case()
        if not per_case:
            raise ValueError("No frame was added: call `update` at least once before `compute`.")
        return _mean_over_cases(per_case.values())


def _mean_over_cases(per_case: Iterable[dict[str, float]]) -> dict[str, float]:
    per_case = list(per_case)
    return {key: float(np.mean([scores[key] for scores in per_case])) for key in per_case[0]}


def compute_video_metrics(
    per_case: Mapping[str, Iterable[tuple[ArrayLike, ArrayLike]]],
    threshold: float = DEFAULT_THRESHOLD,
    skip_first_and_last_frame: bool = True,
) -> dict[str, float]:
    """
    SUN-SEG-style metrics: per video, then averaged over videos (see [`VideoSegmentationMetrics`]).

    Args:
        per_case (`Mapping[str, Iterable[tuple]]`):
            For each case (video) id, its frames in temporal order as `(pred_prob, target)` pairs: the probability
            map (H, W) in [0, 1] and the binary target (H, W), at the frame's original resolution.
        threshold (`float`, *optional*, defaults to 0.5): probability above which a pixel is foreground.
        skip_first_and_last_frame (`bool`, *optional*, defaults to `True`): as in [`VideoSegmentationMetrics`].

    Returns:
        `dict[str, float]`: keys as in [`SegmentationMetrics.compute`].
    """
    metrics = VideoSegmentationMetrics(skip_first_and_last_frame=skip_first_and_last_frame)
    for case, frames in per_case.items():
        for pred_prob, target in frames:
            metrics.update_from_probabilities(case, pred_prob, target, threshold=threshold)
    return metrics.compute()
