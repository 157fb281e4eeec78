"""Stand-ins for SAM's forward in the evaluation tests: SAM given a mask prompt returns a known transformation of
it, so that the scores of the `sam_gt_mask` mode are exact oracles."""

import types

import torch

from autosam_hf.evaluation import GT_MASK_LOGIT


def fake_sam_returning(transform):
    """A SAM forward that returns `transform(input_masks)` as its prediction (B, 1, 1, 4E, 4E)."""

    def forward(image_embeddings=None, input_masks=None, multimask_output=False, **kwargs):
        assert input_masks is not None and not multimask_output
        masks = transform(input_masks.clone())
        return types.SimpleNamespace(pred_masks=masks[:, None], iou_scores=torch.ones(masks.shape[0], 1, 1))

    return forward


def keep_upper_half_of_foreground(masks):
    for mask in masks[:, 0]:
        rows = torch.nonzero((mask > 0).any(dim=1)).flatten()
        mask[(rows.min() + rows.max() + 1) // 2 :] = -GT_MASK_LOGIT
    return masks


def keep_left_half_of_canvas(masks):
    masks[..., masks.shape[-1] // 2 :] = -GT_MASK_LOGIT
    return masks
