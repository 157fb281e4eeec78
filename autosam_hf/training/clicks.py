"""Click training (`--click_training`): the prompt stage simulates a user's corrective clicks, as interactive
segmentation methods train (RITM's iterative training, SimpleClick, SAM's own), so that g learns a dense prompt that
clicks decoded beside it can correct.

For each image of a step, a number of rounds r is drawn uniformly from 0..`--click_rounds` (K), seeded by (--seed,
the image's row, the epoch): the same run draws the same rounds, whatever the batch, the process or a resume. Then,
without gradients, g as it trains (batch statistics: the clicks correct the prediction this step makes; its
BatchNorm running statistics are put back afterwards, so that the simulation does not count the batch twice):

    prediction 0 = AutoSAM's mask from g's dense prompt
    for t in 1..r: click t = the simulated user's click on prediction t-1 (`autosam_hf.clicks`: the centre of the
                   largest error region on the low-resolution label canvas, padding excluded; one per class)
                   prediction t = SAM's decoder with the dense prompt and clicks 1..t   (not needed for t = r)

The step's forward then decodes with gradients as always, g's prompt beside clicks 1..r (`input_points`,
`input_labels` in SAM-canvas pixels: label-canvas pixels × S / 4E), and its loss trains g through that last round. An
image with r = 0 (or whose prediction is already exact) has no clicks and trains as without click training. No
round runs SAM's image encoder: its features come from the embedding cache, or from the step's one encoder pass,
which the step's forward then reuses.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ..clicks import click_prompts, next_clicks
from ..model import AutoSamForSegmentation
from ..model.segmentation_classes import class_masks_from_logits

# RITM's `max_num_next_clicks`.
DEFAULT_CLICK_ROUNDS = 3
# Keeps the click draws apart from any other stream seeded by (seed, row, epoch or view).
_CLICK_STREAM = 0x636C69636B  # "click"


class ClickSimulation:
    """The simulated rounds of one training step (module docstring).

    Args:
        rounds: K, the most rounds (clicks per class) an image takes.
        seed: the run's --seed.
        sam_canvas_side: S, the side of SAM's canvas (`processor.sam_canvas_side`), where the clicks are given.
    """

    def __init__(self, rounds: int, seed: int, sam_canvas_side: int):
        if rounds < 1:
            raise ValueError(f"--click_rounds must be >= 1, got {rounds}")
        self.rounds, self.seed, self.sam_canvas_side = rounds, seed, sam_canvas_side

    def rounds_for(self, index: int, epoch: int) -> int:
        """r of row `index` in epoch `epoch`: uniform in 0..K, a pure function of (seed, index, epoch)."""
        sequence = np.random.SeedSequence([self.seed, _CLICK_STREAM, index, epoch])
        return int(np.random.default_rng(sequence).integers(0, self.rounds + 1))

    @torch.no_grad()
    def prompts(
        self, model: AutoSamForSegmentation, inputs: Mapping[str, torch.Tensor], epoch: int
    ) -> dict[str, torch.Tensor]:
        """The extra forward arguments of a step: `input_points` (B, K, N, 2) and `input_labels` (B, K, N) of the
        simulated clicks, and the image features when this step computed them (no cache); {} when no image of the
        batch takes a round.

        Args:
            model: the unwrapped AutoSAM being trained (its BatchNorm statistics are left as they were).
            inputs: the step's forward arguments (canvases or cached image features, `labels`, `valid_mask`, and
                `index`, each image's row).
            epoch: the epoch being trained.
        """
        rounds = [self.rounds_for(index, epoch) for index in inputs["index"].tolist()]
        if max(rounds) == 0:
            return {}
        names = model.image_feature_shapes()
        features = {name: inputs[name] for name in names if name in inputs}
        computed = {} if features else model.image_features(inputs["pixel_values"])
        features = features or computed
        images = {name: inputs[name] for name in ("pixel_values", "prompt_pixel_values") if name in inputs}
        config = model.config
        labels, valid = inputs["labels"], inputs["valid_mask"].bool()
        classes = torch.arange(1, config.num_classes + 1, device=labels.device).view(1, -1, 1, 1)
        # (B, K, 4E, 4E): each class's target inside the image (the binary model's labels are 0/1: class 1).
        targets = ((labels.unsqueeze(1) == classes) & valid.unsqueeze(1)).cpu().numpy()
        valid = valid.unsqueeze(1).cpu().numpy()
        statistics = {name: buffer.clone() for name, buffer in model.prompt_generator.named_buffers()}
        try:
            outputs = model(**images, **features, mode="autosam")
            dense, logits = outputs.prompt_embeddings, outputs.logits
            clicks = [[[] for _ in range(config.num_classes)] for _ in rounds]
            for round_ in range(1, max(rounds) + 1):
                predicted = class_masks_from_logits(logits.float(), config.mask_threshold, config.class_activation)
                predicted = predicted.cpu().numpy() & valid
                for image, image_rounds in enumerate(rounds):
                    if image_rounds >= round_:
                        new = next_clicks(predicted[image], targets[image])
                        for per_class, click in zip(clicks[image], new, strict=True):
                            if click is not None:
                                per_class.append(click)
                points, point_labels = click_prompts(clicks, device=dense.device)
                points = points * (self.sam_canvas_side / labels.shape[-1])  # label canvas (4E) → SAM's (S)
                if round_ < max(rounds):
                    logits, _ = model.decode_masks(features, dense, points, point_labels)
        finally:
            for name, buffer in model.prompt_generator.named_buffers():
                buffer.copy_(statistics[name])
        return {"input_points": points, "input_labels": point_labels, **computed}


__all__ = ["ClickSimulation", "DEFAULT_CLICK_ROUNDS"]
