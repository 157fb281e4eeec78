"""The rows of the AutoSAM paper's Table 1 as evaluation modes: AutoSAM's own outputs, and plain SAM prompted with a
point, a box or a mask derived from the ground truth.

Every mode turns one processed batch into mask logits on SAM's low-resolution canvas, (B, K, 4E, 4E) (256×256 for
a real SAM; K = 1 for binary models and the GT-prompted modes), which the evaluation then post-processes to each
image's original size (`autosam_hf.postprocessing.post_process_predictions`).

Modes (the first three are `AutoSamForSegmentation`'s own modes, `AUTOSAM_MODES`, under the same names):

- `autosam`: AutoSAM, g's dense prompt through SAM's frozen mask decoder.
- `surrogate`: the surrogate decoder, h(g(I)); SAM is not run.
- `sam_mask_prompt`: AutoSAM's output mask fed back to SAM as a mask prompt.
- `sam_gt_point`, `sam_gt_box`, `sam_gt_mask`: the frozen SAM (`model.sam`, g unused) given one prompt derived from
  the ground truth, `multimask_output=False`. How each prompt is derived (`point_prompt_from_mask`,
  `box_prompt_from_mask`, `mask_prompt_from_labels`):

  * **point**: one positive point at the foreground pixel farthest from the mask's boundary: the maximum of the
    Euclidean distance transform (`scipy.ndimage.distance_transform_edt`) of the mask padded by one background
    pixel, so the image border counts as boundary; ties go to the first pixel in row-major order. Its (column, row)
    index is scaled to SAM's resized canvas as `SamProcessor` and segment-anything's `ResizeLongestSide` scale
    points: `x · w'/W`, `y · h'/H`, with (h', w') the image's size after resizing its longest side to SAM's input
    size (SAM then adds 0.5 to reach the pixel centre).
  * **box**: the tight bounding box of all foreground pixels, `(x_min, y_min, x_max, y_max)` as inclusive pixel
    indices (the convention of MedSAM and SAM's own box demos), scaled to the canvas like the point.
  * **mask**: the ground truth resized to the label canvas with the processor's own mask resizing (nearest, longest
    side to 4E, zero padding bottom/right: the processor's `labels`), written as logits `+L` on foreground and `-L`
    elsewhere, padding included. SAM's mask prompt expects low-resolution mask *logits* (a previous prediction's),
    not a 0/1 mask; `L = 10` (`GT_MASK_LOGIT`) is the value SAM 2 uses to turn a binary mask into logits
    (`sigmoid(±10)` = 0.99995 / 0.00005), and the order of magnitude of SAM's own confident low-resolution logits.

  A ground truth with no foreground pixel gives no prompt: SAM is not asked, the prediction is empty (every logit
  `EMPTY_LOGIT`), and the metrics' empty/empty rule then scores that image Dice = IoU = 1.

One interactive mode, `autosam_clicks` (`CLICK_MODE`, `click_session`): AutoSAM's automatic mask (click 0), then the
simulated user of `autosam_hf.clicks` corrects it one click at a time, at the original resolution: each click goes
to the centre of the largest error region of the current prediction (positive in a missed region, negative in a
spurious one), is mapped to SAM's canvas (`processor.canvas_coordinates`) and decoded with all the clicks so far
and g's dense prompt (`model.decode_masks`; g and SAM's encoder run once). Several classes: one click per class
and round, on that class's prompt. Scored after 0, 1, 3, 5 clicks (those up to `max_clicks`, and `max_clicks`
itself), and NoC@85 / NoC@90: the clicks needed to reach IoU 0.85 / 0.90 (0 when the automatic mask already does),
followed up to `NOC_MAX_CLICKS` = 20 clicks; an image that never reaches it counts as 20, as in RITM. An image
whose prediction is exact gets no more clicks and keeps its mask. For a ground truth of one region, the first click
on an empty prediction is the `sam_gt_point` point, so "SAM + 1 click" is that row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..clicks import click_prompts, next_clicks, region_centre
from ..metrics import per_class_dice_iou
from ..model import AUTOSAM_MODES, AutoSamForSegmentation, AutoSamImageProcessor
from ..postprocessing import ImagePrediction, model_predictions

GT_PROMPT_MODES = ("sam_gt_point", "sam_gt_box", "sam_gt_mask")
# Paper-table order: SAM baselines first, AutoSAM's rows last.
EVAL_MODES = (*GT_PROMPT_MODES, "surrogate", "sam_mask_prompt", "autosam")
MODE_DISPLAY_NAMES = {
    "autosam": "AutoSAM",
    "surrogate": "AutoSAM surrogate h(g(I))",
    "sam_mask_prompt": "SAM + AutoSAM mask prompt",
    "sam_gt_point": "SAM + 1 click (GT point)",
    "sam_gt_box": "SAM, GT box",
    "sam_gt_mask": "SAM, GT mask",
}

# The interactive mode (not in EVAL_MODES, the paper's table, nor in `--mode all`: it costs up to 20 decodes per image).
CLICK_MODE = "autosam_clicks"
# The modes that read the ground truth while predicting.
GROUND_TRUTH_MODES = (*GT_PROMPT_MODES, CLICK_MODE)
REPORTED_CLICKS = (0, 1, 3, 5)
DEFAULT_MAX_CLICKS = 5
NOC_THRESHOLDS = (0.85, 0.90)
NOC_MAX_CLICKS = 20

GT_MASK_LOGIT = 10.0
# Logit of an empty prediction: sigmoid gives 0 in float32, and it stays finite through bilinear resizing.
EMPTY_LOGIT = -1e4


def check_modes(modes: Sequence[str], model: AutoSamForSegmentation | None = None) -> list[str]:
    """Validate evaluation modes (and, given a model, that it can run them); returns them without duplicates.

    Raises:
        ValueError: an unknown mode, no mode, `surrogate` for a model without a surrogate decoder, or a GT-prompted
            SAM mode (binary) for a multi-class model.
    """
    unknown = [mode for mode in modes if mode not in (*EVAL_MODES, CLICK_MODE)]
    if unknown:
        raise ValueError(f"Unknown evaluation mode(s) {unknown}; choose from {', '.join((*EVAL_MODES, CLICK_MODE))}.")
    modes = list(dict.fromkeys(modes))
    if not modes:
        raise ValueError("No evaluation mode given.")
    if model is not None and "surrogate" in modes and model.surrogate_decoder is None:
        raise ValueError("Mode 'surrogate' needs a model with a surrogate decoder h (config.use_surrogate_decoder).")
    gt_modes = [mode for mode in modes if mode in GT_PROMPT_MODES]
    if model is not None and model.config.num_classes > 1 and gt_modes:
        raise ValueError(
            f"Mode(s) {gt_modes}: SAM with one ground-truth prompt predicts one binary mask; a "
            f"{model.config.num_classes}-class model is evaluated in {', '.join(AUTOSAM_MODES)}."
        )
    return modes


def clicks_to_reach(ious: Sequence[float], threshold: float, cap: int = NOC_MAX_CLICKS) -> int:
    """NoC: the clicks after which the IoU first reaches `threshold` (`ious[k]`: after k clicks, 0 = the automatic
    mask), or `cap` when it never does within the IoUs given."""
    return next((clicks for clicks, iou in enumerate(ious[: cap + 1]) if iou >= threshold), cap)


def reported_clicks(max_clicks: int) -> tuple[int, ...]:
    """The click counts scored: `REPORTED_CLICKS` up to `max_clicks`, and `max_clicks`."""
    if max_clicks < 0:
        raise ValueError(f"max_clicks must be >= 0, got {max_clicks}")
    return tuple(sorted({clicks for clicks in REPORTED_CLICKS if clicks <= max_clicks} | {max_clicks}))


def noc_key(threshold: float) -> str:
    """The result key of NoC at `threshold`: 0.85 → "noc@85"."""
    return f"noc@{round(threshold * 100)}"


# ---------------------------------------------------------------------------------------------- GT prompts
def _canvas_scale(original_size: tuple[int, int], reshaped_size: tuple[int, int]) -> tuple[float, float]:
    """(x scale, y scale) from original pixel indices to SAM's resized canvas."""
    (height, width), (new_height, new_width) = original_size, reshaped_size
    return new_width / width, new_height / height


def point_prompt_from_mask(mask: np.ndarray, reshaped_size: tuple[int, int]) -> tuple[float, float] | None:
    """The GT point prompt: the foreground pixel farthest from the mask boundary, in canvas coordinates.

    Args:
        mask: (H, W) binary ground truth at the original resolution.
        reshaped_size: (h', w'), the image's size on SAM's canvas (`AutoSamImageProcessor.reshaped_size`).

    Returns:
        `(x, y)` on the canvas (SAM's `input_points` convention), or None when `mask` is empty.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    column, row = region_centre(mask)
    x_scale, y_scale = _canvas_scale(mask.shape, reshaped_size)
    return column * x_scale, row * y_scale


def box_prompt_from_mask(mask: np.ndarray, reshaped_size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """The GT box prompt: the tight bounding box of the foreground, in canvas coordinates.

    Args:
        mask: (H, W) binary ground truth at the original resolution.
        reshaped_size: (h', w'), the image's size on SAM's canvas.

    Returns:
        `(x_min, y_min, x_max, y_max)` (inclusive pixel indices, scaled to the canvas), or None when `mask` is empty.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    rows, columns = np.nonzero(mask)
    x_scale, y_scale = _canvas_scale(mask.shape, reshaped_size)
    return columns.min() * x_scale, rows.min() * y_scale, columns.max() * x_scale, rows.max() * y_scale


def mask_prompt_from_labels(labels: torch.Tensor, logit: float = GT_MASK_LOGIT) -> torch.Tensor:
    """The GT mask prompt: the processor's `labels` (B, 4E, 4E), 0/1 → SAM's `input_masks` (B, 1, 4E, 4E), ±logit."""
    return (labels.float() * 2 - 1).mul(logit).unsqueeze(1)


@dataclass
class GroundTruthPrompts:
    """The GT-derived prompts of one batch, on SAM's canvas (tensors on the model's device).

    points (B, 1, 1, 2), point_labels (B, 1, 1), boxes (B, 1, 4), masks (B, 1, 4E, 4E) (each None when its mode is
    not evaluated), has_foreground (B,) bool: False for an empty ground truth, whose prompt is a placeholder.
    """

    has_foreground: torch.Tensor
    points: torch.Tensor | None = None
    point_labels: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    masks: torch.Tensor | None = None


def ground_truth_prompts(
    targets: Sequence[np.ndarray],
    processor: AutoSamImageProcessor,
    modes: Sequence[str],
    labels: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    mask_logit: float = GT_MASK_LOGIT,
) -> GroundTruthPrompts:
    """Derive the prompts of the requested `sam_gt_*` modes for a batch.

    Args:
        targets: (H_i, W_i) binary ground truths at the original resolution.
        processor: the processor that made the batch (its longest edge defines the canvas).
        modes: evaluation modes; prompts are built only for the `sam_gt_*` ones among them.
        labels: the processor's `labels` (B, 4E, 4E), required for `sam_gt_mask`.
        device: where the prompt tensors go.
        mask_logit: L of the mask prompt (see `mask_prompt_from_labels`).
    """
    reshaped_sizes = [processor.reshaped_size(target.shape) for target in targets]
    prompts = GroundTruthPrompts(
        has_foreground=torch.tensor([bool(np.any(target)) for target in targets], device=device)
    )
    if "sam_gt_point" in modes:
        points = [
            point_prompt_from_mask(t, size) or (0.0, 0.0) for t, size in zip(targets, reshaped_sizes, strict=True)
        ]
        prompts.points = torch.tensor(points, dtype=torch.float32, device=device).reshape(-1, 1, 1, 2)
        prompts.point_labels = torch.ones(len(targets), 1, 1, dtype=torch.long, device=device)
    if "sam_gt_box" in modes:
        boxes = [
            box_prompt_from_mask(t, size) or (0.0, 0.0, 0.0, 0.0)
            for t, size in zip(targets, reshaped_sizes, strict=True)
        ]
        prompts.boxes = torch.tensor(boxes, dtype=torch.float32, device=device).reshape(-1, 1, 4)
    if "sam_gt_mask" in modes:
        if labels is None:
            raise ValueError("sam_gt_mask needs the processor's `labels` (call it with segmentation_maps=targets).")
        prompts.masks = mask_prompt_from_labels(labels, mask_logit).to(device)
    return prompts


# ---------------------------------------------------------------------------------------------- one mode
def predict_logits(
    model: AutoSamForSegmentation,
    mode: str,
    model_inputs: Mapping[str, torch.Tensor],
    image_features: Mapping[str, torch.Tensor] | None = None,
    prompts: GroundTruthPrompts | None = None,
) -> torch.Tensor:
    """Mask logits (B, K, 4E, 4E) of one evaluation mode for a processed batch (K = 1 for the GT-prompted modes).

    Args:
        model: AutoSAM in eval mode.
        mode: one of `EVAL_MODES`.
        model_inputs: the processor's image inputs (`processor.model_input_names`: `pixel_values` (B, 3, S, S),
            SAM's canvas, and with processors that make one, g's canvas), on the model's device.
        image_features: the frozen model's image features of `pixel_values` (`model.image_features`: SAM's
            `image_embeddings` (B, C, E, E), and SAM-HQ's / SAM 2's other maps), computed once and shared by every
            mode (the encoder runs here only when they are missing and the mode needs them).
        prompts: the batch's GT prompts, for the `sam_gt_*` modes (`ground_truth_prompts`).
    """
    if mode in AUTOSAM_MODES:
        return model(**model_inputs, **(image_features or {}), mode=mode).logits
    if mode not in GT_PROMPT_MODES:
        raise ValueError(f"Unknown evaluation mode {mode!r}; choose from {', '.join(EVAL_MODES)}.")
    if prompts is None:
        raise ValueError(f"Mode {mode!r} needs the batch's ground-truth prompts.")
    if image_features is None:
        image_features = model.image_features(model_inputs["pixel_values"])
    prompt = {
        "sam_gt_point": {"input_points": prompts.points, "input_labels": prompts.point_labels},
        "sam_gt_box": {"input_boxes": prompts.boxes},
        "sam_gt_mask": {"input_masks": prompts.masks},
    }[mode]
    if any(value is None for value in prompt.values()):
        raise ValueError(f"The ground-truth prompts were built without mode {mode!r}.")
    if "input_masks" in prompt:
        prompt["input_masks"] = prompt["input_masks"].to(image_features["image_embeddings"].dtype)
    logits = model.frozen_sam.prompted_masks(dict(image_features), **prompt)  # (B, 1, 4E, 4E)
    # No prompt can be derived from an empty ground truth: predict an empty mask there.
    empty = ~prompts.has_foreground.to(logits.device)
    return torch.where(empty[:, None, None, None], torch.full_like(logits, EMPTY_LOGIT), logits)


# ---------------------------------------------------------------------------------------------- clicks
@dataclass
class ClickSession:
    """One batch through `click_session`: `predictions` (clicks → each image's prediction after that many clicks,
    for the `reported_clicks`), `ious` (each image's IoU after 0, 1, ... clicks, as far as it was followed) and `noc`
    (each image's {"noc@85": ..., "noc@90": ...})."""

    predictions: dict[int, list[ImagePrediction]]
    ious: list[list[float]]

    @property
    def noc(self) -> list[dict[str, float]]:
        return [{noc_key(t): float(clicks_to_reach(ious, t)) for t in NOC_THRESHOLDS} for ious in self.ious]


def _image_iou(prediction: ImagePrediction, target: np.ndarray) -> float:
    """IoU of one image as the evaluation scores it (several classes: the mean over classes)."""
    return float(per_class_dice_iou(prediction.class_masks, target)[:, 1].mean())


def click_session(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    model_inputs: Mapping[str, torch.Tensor],
    image_features: Mapping[str, torch.Tensor],
    targets: Sequence[np.ndarray],
    original_sizes: torch.Tensor,
    max_clicks: int = DEFAULT_MAX_CLICKS,
) -> ClickSession:
    """The `autosam_clicks` mode on one batch (module docstring): click 0 is AutoSAM's mask, each further click
    comes from the simulated user on the prediction at the original resolution.

    Args:
        model, model_inputs, image_features: as for `predict_logits` (the features are required).
        targets: (H_i, W_i) ground-truth label maps (0/1, or class ids 0..K).
        original_sizes: (B, 2) the processor's `original_sizes`.
        max_clicks: the most clicks scored for Dice; NoC follows each image on up to `NOC_MAX_CLICKS` clicks until
            it reaches the largest of `NOC_THRESHOLDS`.
    """
    scored = reported_clicks(max_clicks)
    last_round = max(max_clicks, NOC_MAX_CLICKS)
    num_classes = model.config.num_classes
    class_targets = [np.stack([target == k for k in range(1, num_classes + 1)]) for target in targets]
    outputs = model(**model_inputs, **image_features, mode="autosam")
    dense = outputs.prompt_embeddings  # g's prompt, (B, [K,] C, E, E): decoded again with each round's clicks
    clicks = [[[] for _ in range(num_classes)] for _ in targets]
    current: list[ImagePrediction | None] = [None] * len(targets)
    ious: list[list[float]] = [[] for _ in targets]
    predictions: dict[int, list[ImagePrediction]] = {}
    active, logits = list(range(len(targets))), outputs.logits
    for round_ in range(last_round + 1):
        if round_ > 0:  # decode the images still clicked, with every click so far
            points, labels = click_prompts([clicks[i] for i in active], device=dense.device)
            points = torch.stack(
                [processor.canvas_coordinates(p, size) for p, size in zip(points, original_sizes[active], strict=True)]
            )
            features = {name: tensor[active] for name, tensor in image_features.items()}
            logits, _ = model.decode_masks(features, dense[active], points, labels)
        still_active = []
        round_predictions = model_predictions(model, processor, logits, original_sizes[active])
        for i, prediction in zip(active, round_predictions, strict=True):
            current[i] = prediction
            ious[i].append(_image_iou(prediction, targets[i]))
            new = next_clicks(prediction.class_masks, class_targets[i])
            done = all(click is None for click in new) or round_ == last_round
            done = done or (round_ >= max_clicks and ious[i][-1] >= max(NOC_THRESHOLDS))
            if not done:
                for per_class, click in zip(clicks[i], new, strict=True):
                    if click is not None:
                        per_class.append(click)
                still_active.append(i)
        if round_ in scored:  # images no longer clicked keep their last mask
            predictions[round_] = list(current)
        active = still_active
        if not active:
            break
    for clicks_scored in scored:  # every image stopped before these counts: their masks stay
        predictions.setdefault(clicks_scored, list(current))
    return ClickSession(predictions=predictions, ious=ious)


__all__ = [
    "CLICK_MODE",
    "ClickSession",
    "DEFAULT_MAX_CLICKS",
    "GROUND_TRUTH_MODES",
    "NOC_MAX_CLICKS",
    "NOC_THRESHOLDS",
    "REPORTED_CLICKS",
    "click_session",
    "clicks_to_reach",
    "noc_key",
    "reported_clicks",
    "EMPTY_LOGIT",
    "EVAL_MODES",
    "GT_MASK_LOGIT",
    "GT_PROMPT_MODES",
    "GroundTruthPrompts",
    "MODE_DISPLAY_NAMES",
    "box_prompt_from_mask",
    "check_modes",
    "ground_truth_prompts",
    "mask_prompt_from_labels",
    "point_prompt_from_mask",
    "predict_logits",
]
