"""The frozen model AutoSAM prompts: one adapter class per transformers family.

AutoSAM only needs four things from its frozen model, and each family does them differently:

- **image features**: what the mask decoder reads besides the prompt, computed once per image (and cached by the
  embedding cache) — a dict of named, batch-first tensors;
- **decode**: the mask decoder with a *dense* prompt (g's) and, optionally, a *sparse* one (points, boxes) that the
  family's own frozen prompt encoder embeds, one mask per prompt;
- **mask prompt**: the prompt encoder's embedding of a mask (mode `sam_mask_prompt`);
- **canvas rule**: how the family's own processor puts an image on its S×S input canvas.

Per family (`model_type`; C = 256, E = 64 for every released model):

- `sam` (`SamModel`; SAM and MedSAM): image features `image_embeddings` (C, E, E); canvas letterbox (longest edge
  S, zero padding).
- `sam_hq` (`SamHQModel`): the same plus `intermediate_embeddings` (E, E, D), the first global-attention ViT block's
  output, channels-last (D = 768 for vit-b); letterbox.
- `sam2` (`Sam2Model`; `sam2_video` checkpoints load too): `high_resolution_features_0` (C/8, 4E, 4E),
  `high_resolution_features_1` (C/4, 2E, 2E) and `image_embeddings` (C, E, E) with `no_memory_embedding` added;
  canvas squashed to S×S, no padding.

An adapter holds no weights: `FrozenSam(sam)` wraps the transformers model that `AutoSamForSegmentation.sam` owns,
so state-dict keys, saving and loading stay the transformers model's own.
"""

from __future__ import annotations

import torch
from transformers import (
    PreTrainedConfig,
    PreTrainedModel,
    Sam2Config,
    Sam2Model,
    SamConfig,
    SamHQConfig,
    SamHQModel,
    SamModel,
)

LETTERBOX, SQUASH = "letterbox", "squash"
CANVAS_RULES = (LETTERBOX, SQUASH)


class FrozenSam:
    """SAM (`SamModel`; MedSAM is a `SamModel` checkpoint): the family every other one extends.

    Args:
        sam: the frozen transformers model of this family.
        hq_token_only: SAM-HQ only (see `FrozenSamHQ`); ignored by the other families.
    """

    model_type = "sam"
    config_class: type[PreTrainedConfig] = SamConfig
    model_class: type[PreTrainedModel] = SamModel
    canvas_rule = LETTERBOX
    # Names of `image_features`, which are also `AutoSamForSegmentation.forward`'s argument names.
    feature_names: tuple[str, ...] = ("image_embeddings",)

    def __init__(self, sam: PreTrainedModel, hq_token_only: bool = False):
        self.sam = sam

    # ------------------------------------------------------------------ from the configuration alone
    @staticmethod
    def canvas_size(config: PreTrainedConfig) -> int:
        """S: side of the square canvas the image encoder reads (1024 for every released model)."""
        return config.vision_config.image_size

    @staticmethod
    def prompt_embedding_shape(config: PreTrainedConfig) -> tuple[int, int]:
        """(C, E): channels and side of the dense prompt embedding, which is also the image embedding's shape."""
        prompt_config = config.prompt_encoder_config
        return prompt_config.hidden_size, prompt_config.image_embedding_size

    @classmethod
    def feature_shapes(cls, config: PreTrainedConfig) -> dict[str, tuple[int, ...]]:
        """Shape of each tensor of `image_features`, without the batch."""
        channels, side = cls.prompt_embedding_shape(config)
        return {"image_embeddings": (channels, side, side)}

    # ------------------------------------------------------------------ around the model
    def freeze(self) -> None:
        """No gradients and eval mode: the frozen model never trains."""
        self.sam.requires_grad_(False)
        self.sam.eval()

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor `image_features` depends on (the embedding cache's fingerprint hashes them)."""
        return self.sam.vision_encoder.state_dict()

    def image_features(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """The frozen image encoder: canvases (B, 3, S, S) → {"image_embeddings": (B, C, E, E)}."""
        return {"image_embeddings": self.sam.get_image_embeddings(pixel_values)}

    def check_features(self, features: dict[str, torch.Tensor]) -> None:
        """Raise ValueError naming the features this family needs but `features` lacks, or does not take."""
        missing = [name for name in self.feature_names if features.get(name) is None]
        foreign = sorted(set(features) - set(self.feature_names))
        if missing or foreign:
            raise ValueError(
                f"the frozen {self.model_type} model's decoder reads the image features {list(self.feature_names)} "
                f"(model.image_features(pixel_values)); missing {missing}, not taken {foreign}"
            )

    def decode(
        self,
        features: dict[str, torch.Tensor],
        dense_prompt_embeddings: torch.Tensor,
        input_points: torch.Tensor | None = None,
        input_labels: torch.Tensor | None = None,
        input_boxes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask decoder with one dense prompt per item and, when given, its sparse prompt.

        Args:
            features: `image_features` of N items (a batch of N (image, prompt) pairs), e.g. (N, C, E, E).
            dense_prompt_embeddings: (N, C, E, E).
            input_points: (N, n, 2) (x, y) in canvas pixels (side S), with `input_labels` (N, n): 1 positive,
                0 negative, -1 not-a-point, -10 padding (as transformers' prompt encoders read them).
            input_boxes: (N, 4) (x0, y0, x1, y1) in canvas pixels.
        Returns:
            (masks (N, 1, 4E, 4E), iou_scores (N, 1)): output token 0, the single-mask output.
        """
        self.check_features(features)
        image_embeddings = features["image_embeddings"]
        if input_points is None and input_boxes is None:
            sparse = self.empty_sparse_prompt(image_embeddings)
        else:
            sparse = self.sparse_prompt_embeddings(input_points, input_labels, input_boxes).to(image_embeddings.dtype)
        positional = self.sam.get_image_wide_positional_embeddings().repeat(image_embeddings.shape[0], 1, 1, 1)
        masks, iou_scores = self.sam.mask_decoder(
            image_embeddings=image_embeddings,
            image_positional_embeddings=positional.to(image_embeddings.dtype),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense_prompt_embeddings.to(image_embeddings.dtype),
            multimask_output=False,
            **self.decoder_kwargs(features),
        )[:2]
        # masks (N, point batch 1, 1, 4E, 4E), iou_scores (N, 1, 1)
        return masks[:, 0], iou_scores[:, 0]

    def sparse_prompt_embeddings(
        self, input_points: torch.Tensor | None, input_labels: torch.Tensor | None, input_boxes: torch.Tensor | None
    ) -> torch.Tensor:
        """The family's frozen prompt encoder on one point set and/or box per item (shapes as in `decode`) →
        sparse embeddings (N, 1, T, C), T tokens.

        The encoder's own rules apply, as in the family's forward: SAM and SAM-HQ append a not-a-point (label -1)
        when there are points and no box; SAM 2 does the same, and also gives a box a third, not-a-point token.
        Points labelled -10 are padding (zero embeddings, still tokens).
        """
        points = None if input_points is None else input_points[:, None]
        labels = None if input_labels is None else input_labels[:, None]
        boxes = None if input_boxes is None else input_boxes[:, None]
        sparse, _ = self.sam.prompt_encoder(
            input_points=points, input_labels=labels, input_boxes=boxes, input_masks=None
        )
        return sparse

    def empty_sparse_prompt(self, image_embeddings: torch.Tensor) -> torch.Tensor | None:
        """AutoSAM's empty set of points and boxes: SAM's decoder takes None."""
        return None

    def decoder_kwargs(self, features: dict[str, torch.Tensor]) -> dict:
        """The mask decoder's family-specific arguments."""
        return {}

    def mask_prompt_embeddings(self, masks: torch.Tensor) -> torch.Tensor:
        """The prompt encoder's dense embedding of mask logits: (N, 1, 4E, 4E) → (N, C, E, E)."""
        return self.sam.prompt_encoder.mask_embed(masks)

    def prompted_masks(self, features: dict[str, torch.Tensor], **prompt: torch.Tensor) -> torch.Tensor:
        """The model's own forward (its prompt encoder) on `input_points`/`input_labels`, `input_boxes` or
        `input_masks`, one prompt per image: single-mask logits (B, 1, 4E, 4E) (the `sam_gt_*` evaluation rows)."""
        self.check_features(features)
        outputs = self.sam(multimask_output=False, **self.forward_image_inputs(features), **prompt)
        return outputs.pred_masks[:, 0]  # (B, point batch 1, 1, 4E, 4E) → (B, 1, 4E, 4E)

    def forward_image_inputs(self, features: dict[str, torch.Tensor]) -> dict:
        """`features` as the model's own forward takes precomputed image features."""
        return {"image_embeddings": features["image_embeddings"]}


class FrozenSamHQ(FrozenSam):
    """SAM-HQ (`SamHQModel`): SAM plus a high-quality output token whose mask also reads early ViT features.

    Its decoder reads only the first of the encoder's `intermediate_embeddings` (the output of the first
    global-attention ViT block, channels-last (B, E, E, D)), so that is the one stored. `SamHQMaskDecoder` silently
    skips the fusion when it is missing, so `decode` refuses to run without it. The mask is SAM's token 0 plus the HQ
    token's mask (`hq_token_only=False`, the transformers and SAM-HQ default) or the HQ mask alone
    (`hq_token_only=True`, what SAM-HQ's authors suggest for single objects); the IoU is SAM token 0's.
    """

    model_type = "sam_hq"
    config_class = SamHQConfig
    model_class = SamHQModel
    feature_names = ("image_embeddings", "intermediate_embeddings")

    def __init__(self, sam: PreTrainedModel, hq_token_only: bool = False):
        super().__init__(sam)
        self.hq_token_only = hq_token_only

    @classmethod
    def feature_shapes(cls, config: PreTrainedConfig) -> dict[str, tuple[int, ...]]:
        vision = config.vision_config
        if not any(index < vision.num_hidden_layers for index in vision.global_attn_indexes):
            raise ValueError(
                f"sam_config: this SAM-HQ ViT has no global-attention block (global_attn_indexes "
                f"{list(vision.global_attn_indexes)}, {vision.num_hidden_layers} layers), so no intermediate "
                "embedding for the HQ decoder"
            )
        grid = vision.image_size // vision.patch_size
        return {**super().feature_shapes(config), "intermediate_embeddings": (grid, grid, vision.hidden_size)}

    def image_features(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"image_embeddings": (B, C, E, E), "intermediate_embeddings": (B, E, E, D)}."""
        image_embeddings, intermediate_embeddings = self.sam.get_image_embeddings(pixel_values)
        return {"image_embeddings": image_embeddings, "intermediate_embeddings": intermediate_embeddings[0]}

    def decoder_kwargs(self, features: dict[str, torch.Tensor]) -> dict:
        return {
            "hq_token_only": self.hq_token_only,
            "intermediate_embeddings": [features["intermediate_embeddings"]],
        }

    def forward_image_inputs(self, features: dict[str, torch.Tensor]) -> dict:
        return {**super().forward_image_inputs(features), **self.decoder_kwargs(features)}


class FrozenSam2(FrozenSam):
    """SAM 2 (`Sam2Model`, image path): a Hiera encoder whose FPN gives the decoder two high-resolution maps besides
    the image embedding.

    - Sparse prompt, without points or boxes: an empty (N, 1, 0, C) tensor, as SAM2's own image predictor passes
      for mask-only prompts; `Sam2MaskDecoder` cannot take None. (`Sam2Model.forward` without points adds two
      "not-a-point" tokens, a point of label -1 and its padding, so its masks differ slightly from this path by
      design.) With points or boxes, its prompt encoder's tokens, as in its forward.
    - Token 0, always: `freeze` turns off the decoder's `dynamic_multimask_via_stability`. That fallback is active
      in eval mode — and the frozen model is always in eval mode — and replaces, per sample, token 0's mask by the
      best of tokens 1-3 whenever token 0's logits are "unstable" (likely while g is young and logits are near 0):
      the output token would switch from sample to sample and step to step, and with it the gradient path into g.
    - Masks are never gated by the object score (SAM2's image predictor does not gate either; gating would cut the
      gradient).
    """

    model_type = "sam2"
    config_class = Sam2Config
    model_class = Sam2Model
    canvas_rule = SQUASH
    feature_names = ("high_resolution_features_0", "high_resolution_features_1", "image_embeddings")

    @staticmethod
    def canvas_size(config: PreTrainedConfig) -> int:
        return config.prompt_encoder_config.image_size

    @staticmethod
    def prompt_embedding_shape(config: PreTrainedConfig) -> tuple[int, int]:
        prompt_config = config.prompt_encoder_config
        return prompt_config.hidden_size, prompt_config.image_size // prompt_config.patch_size

    @classmethod
    def feature_shapes(cls, config: PreTrainedConfig) -> dict[str, tuple[int, ...]]:
        channels = config.mask_decoder_config.hidden_size
        (side0, _), (side1, _), (side, _) = config.vision_config.backbone_feature_sizes
        return {
            "high_resolution_features_0": (channels // 8, side0, side0),  # after the decoder's conv_s0
            "high_resolution_features_1": (channels // 4, side1, side1),  # after conv_s1
            "image_embeddings": (config.vision_config.fpn_hidden_size, side, side),
        }

    def freeze(self) -> None:
        super().freeze()
        self.sam.mask_decoder.dynamic_multimask_via_stability = False
        self.sam.config.mask_decoder_config.dynamic_multimask_via_stability = False  # saved as it runs

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        # `get_image_embeddings` also runs the decoder's conv_s0/conv_s1 and adds `no_memory_embedding`.
        decoder = self.sam.mask_decoder
        return {
            **{f"vision_encoder.{name}": tensor for name, tensor in self.sam.vision_encoder.state_dict().items()},
            **{f"mask_decoder.conv_s0.{name}": tensor for name, tensor in decoder.conv_s0.state_dict().items()},
            **{f"mask_decoder.conv_s1.{name}": tensor for name, tensor in decoder.conv_s1.state_dict().items()},
            "no_memory_embedding": self.sam.no_memory_embedding.detach(),
        }

    def image_features(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three maps of `Sam2Model.get_image_embeddings`, by name (shapes in `feature_shapes`)."""
        return dict(zip(self.feature_names, self.sam.get_image_embeddings(pixel_values), strict=True))

    def empty_sparse_prompt(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        return image_embeddings.new_zeros(image_embeddings.shape[0], 1, 0, image_embeddings.shape[1])

    def decoder_kwargs(self, features: dict[str, torch.Tensor]) -> dict:
        return {"high_resolution_features": [features[name] for name in self.feature_names[:2]]}

    def forward_image_inputs(self, features: dict[str, torch.Tensor]) -> dict:
        return {"image_embeddings": [features[name] for name in self.feature_names]}


FROZEN_SAM_FAMILIES: dict[str, type[FrozenSam]] = {
    family.model_type: family for family in (FrozenSam, FrozenSamHQ, FrozenSam2)
}
# Checkpoint `model_type`s that load into a family's class: SAM2 video checkpoints hold the image model too
# (`Sam2Model` ignores their memory modules).
CHECKPOINT_MODEL_TYPES = {**{name: name for name in FROZEN_SAM_FAMILIES}, "sam2_video": "sam2"}


def frozen_sam_class(config_or_model_type: PreTrainedConfig | str, argument: str = "sam") -> type[FrozenSam]:
    """The family of a frozen model's configuration (or `model_type`, checkpoint types such as `sam2_video`
    included); raises ValueError naming `argument` and the supported types."""
    model_type = getattr(config_or_model_type, "model_type", config_or_model_type)
    family = FROZEN_SAM_FAMILIES.get(CHECKPOINT_MODEL_TYPES.get(model_type))
    if family is None:
        raise ValueError(
            f"{argument}: model_type {model_type!r} is not a supported frozen model; supported: "
            f"{', '.join(CHECKPOINT_MODEL_TYPES)} (SamModel, SamHQModel, Sam2Model)"
        )
    return family


def frozen_sam_for(sam: PreTrainedModel, hq_token_only: bool = False) -> FrozenSam:
    """The adapter around a transformers `SamModel`, `SamHQModel` or `Sam2Model`."""
    family = frozen_sam_class(sam.config)
    if not isinstance(sam, family.model_class):
        raise TypeError(f"sam: expected a {family.model_class.__name__} for its config, got {type(sam).__name__}")
    return family(sam, hq_token_only=hq_token_only)


__all__ = [
    "CANVAS_RULES",
    "CHECKPOINT_MODEL_TYPES",
    "FROZEN_SAM_FAMILIES",
    "FrozenSam",
    "FrozenSam2",
    "FrozenSamHQ",
    "LETTERBOX",
    "SQUASH",
    "frozen_sam_class",
    "frozen_sam_for",
]
