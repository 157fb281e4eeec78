"""Classes of an AutoSAM segmentation: the background rule, and logits → label maps, class probabilities and
class masks. Shared by the model (loss), the image processor (`post_process_semantic_segmentation`) and the
package's post-processing, so that every path turns logits into classes the same way.

A model with `num_labels = K + 1` (background + K classes) outputs K logit maps per image, (B, K, H, W); the
background has no logit of its own. `config.class_activation` says how the K logits relate:

- `"softmax"` (default): the classes are mutually exclusive. Class probabilities are the softmax over
  [background logit fixed at 0, z_1, ..., z_K]; the label map is the argmax.
- `"sigmoid"`: the classes are independent, each its own sigmoid(z_k); they may overlap (a pixel may be in several
  classes' masks). A label map, which holds one class per pixel, takes the class of largest logit among those above
  the threshold.

With K = 1 both rules are the binary model: p = sigmoid(z), foreground where z > threshold.

Label maps of both rules are argmax over [t, z_1, ..., z_K] with t = the mask threshold (ties go to the lower
label, so to the background): with t = 0 this is the softmax argmax, and for the sigmoid rule it is "the largest
logit above t, else background". The threshold moves the background logit, so K = 1 gives `z > t` exactly.
"""

from __future__ import annotations

import torch

CLASS_ACTIVATIONS = ("softmax", "sigmoid")


def check_class_activation(class_activation: str) -> str:
    """`class_activation`, checked; raises ValueError naming it."""
    if class_activation not in CLASS_ACTIVATIONS:
        raise ValueError(f"class_activation must be one of {CLASS_ACTIVATIONS}, got {class_activation!r}")
    return class_activation


def label_maps_from_logits(logits: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Label maps (0 background, k = class k) from class logits (..., K, H, W) → (..., H, W) int64.

    K = 1: `logits > threshold` (the binary rule, unchanged); K > 1: argmax over [threshold, z_1, ..., z_K].
    """
    if logits.shape[-3] == 1:
        return (logits[..., 0, :, :] > threshold).long()
    background = torch.full_like(logits[..., :1, :, :], threshold)
    return torch.cat([background, logits], dim=-3).argmax(dim=-3)


def class_probabilities(logits: torch.Tensor, class_activation: str = "softmax") -> torch.Tensor:
    """Per-class probabilities (..., K, H, W) from class logits of the same shape (see the module docstring).

    K = 1 is sigmoid(z) under both rules."""
    check_class_activation(class_activation)
    logits = logits.float()
    if logits.shape[-3] == 1 or class_activation == "sigmoid":
        return torch.sigmoid(logits)
    background = torch.zeros_like(logits[..., :1, :, :])
    return torch.softmax(torch.cat([background, logits], dim=-3), dim=-3)[..., 1:, :, :]


def class_masks_from_logits(
    logits: torch.Tensor, threshold: float = 0.0, class_activation: str = "softmax"
) -> torch.Tensor:
    """Per-class binary masks (..., K, H, W) bool from class logits of the same shape.

    Softmax: class k where the label map is k (exclusive). Sigmoid: class k where z_k > threshold (may overlap).
    K = 1: `logits > threshold` under both rules."""
    check_class_activation(class_activation)
    if logits.shape[-3] == 1 or class_activation == "sigmoid":
        return logits > threshold
    label_map = label_maps_from_logits(logits, threshold)
    classes = torch.arange(1, logits.shape[-3] + 1, device=logits.device).view(-1, 1, 1)
    return label_map.unsqueeze(-3) == classes


def one_hot_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label maps (B, N) with values 0..K → per-class targets (B, K, N) float (background dropped).

    K = 1: the labels themselves, as floats (the binary loss's targets, unchanged)."""
    if num_classes == 1:
        return labels.float().unsqueeze(1)
    classes = torch.arange(1, num_classes + 1, device=labels.device).view(1, -1, 1)
    return (labels.long().unsqueeze(1) == classes).float()


__all__ = [
    "CLASS_ACTIVATIONS",
    "check_class_activation",
    "class_masks_from_logits",
    "class_probabilities",
    "label_maps_from_logits",
    "one_hot_labels",
]
