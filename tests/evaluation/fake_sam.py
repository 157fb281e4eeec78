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


def fake_band_decoder(label_canvas: int, sam_canvas: int, band_height: int = 8, initial_bands=(1,)):
    """A `model.decode_masks` whose mask is a set of full-width horizontal bands of the label canvas (rows
    [b·band_height, (b + 1)·band_height)): `initial_bands` without clicks, then each click in order turns the band
    under it on (positive) or off (negative). The image features and the dense prompt are ignored."""

    def decode_masks(image_features, dense_prompt_embeddings, input_points=None, input_labels=None, input_boxes=None):
        batch = dense_prompt_embeddings.shape[0]
        logits = torch.full((batch, 1, label_canvas, label_canvas), -GT_MASK_LOGIT)
        for image in range(batch):
            bands = set(initial_bands)
            if input_points is not None:
                for (_, y), label in zip(input_points[image, 0].tolist(), input_labels[image, 0].tolist(), strict=True):
                    band = int(y * label_canvas / sam_canvas) // band_height
                    if label == 1:
                        bands.add(band)
                    elif label == 0:
                        bands.discard(band)
            for band in bands:
                logits[image, 0, band * band_height : (band + 1) * band_height] = GT_MASK_LOGIT
        return logits, torch.ones(batch, 1)

    return decode_masks
