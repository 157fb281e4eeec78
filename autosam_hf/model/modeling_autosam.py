"""PyTorch AutoSAM: a frozen SAM whose prompt encoder is replaced by a trained prompt generator.

Flow of one forward pass (shapes for a real SAM: C = 256, E = 64; P = g's input size, e.g. 352; K = the number of
classes besides the background, `config.num_classes`, 1 for the binary model):

    pixel_values (B, 3, 1024, 1024) ──► SAM image encoder (frozen) ──► image features, e.g. image_embeddings
                                         (or the features from the embedding cache)      │   (B, C, E, E)
    prompt_pixel_values (B, 3, P, P) ──► g ──► K dense prompts (B, K, C, E, E)           │
                                                  │                                      │
                                                  │  SAM mask decoder (frozen), once per class, one batched call
                                                  │  of B·K ◄────────────────────────────┘ ─► logits (B, K, 4E, 4E)
                                                  └─► h (optional, shared by the classes) ─► surrogate_logits
                                                                                            (B, K, 4E, 4E)

The frozen model is SAM (`SamModel`; MedSAM too), SAM-HQ (`SamHQModel`) or SAM 2 (`Sam2Model`): `frozen_sam.py`
says what each one's image features are and how its decoder takes a dense prompt. Optional clicks and boxes
(`input_points`, `input_labels`, `input_boxes`, as `SamModel` takes them, the point-batch axis being the class axis)
go through the frozen model's own prompt encoder and reach the decoder as its sparse prompt, beside g's dense one.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.models.sam.modeling_sam import SamLayerNorm
from transformers.utils import ModelOutput

from .backbones import backbone_features, load_backbone_weights
from .configuration_autosam import AutoSamConfig, canonical_mode
from .frozen_sam import FrozenSam, frozen_sam_for
from .sam_attention import use_contiguous_relative_position_bias
from .sam_loading import load_sam, load_sam_preprocessing
from .segmentation_classes import check_class_activation, one_hot_labels


@dataclass
class AutoSamSegmentationOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*):
        Classification (BCE, or cross-entropy for softmax classes) + per-class soft Dice over the unpadded region,
        when `labels` are given (`masked_segmentation_loss`).
    logits (`torch.FloatTensor` of shape `(batch_size, K, 4E, 4E)`):
        Mask logits of the requested mode, one map per class (K = 1 for the binary model), on the padded canvas
        (256×256 for real SAM).
    iou_scores (`torch.FloatTensor` of shape `(batch_size, K)`, *optional*):
        SAM's predicted IoU of each class's mask (absent in `"surrogate"` mode).
    surrogate_logits (`torch.FloatTensor` of shape `(batch_size, K, 4E, 4E)`, *optional*):
        h(g(I)), in `"surrogate"` mode.
    prompt_embeddings (`torch.FloatTensor` of shape `(batch_size, K, C, E, E)`, or `(batch_size, C, E, E)` when K = 1):
        g's dense prompts, one per class, in [-1, 1] (the binary model's single prompt keeps its shape).
    image_embeddings (`torch.FloatTensor` of shape `(batch_size, C, E, E)`, *optional*):
        The frozen model's image embeddings (computed here or passed in; its other image features are not returned).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    iou_scores: torch.FloatTensor | None = None
    surrogate_logits: torch.FloatTensor | None = None
    prompt_embeddings: torch.FloatTensor | None = None
    image_embeddings: torch.FloatTensor | None = None


class ConvBatchNormLeakyReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.01, inplace=True),
        )


class PromptDecoderUpBlock(nn.Module):
    """Upsample ×2, concatenate the finer skip feature, then two 3×3 conv + BN + leaky ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.convs = nn.Sequential(
            ConvBatchNormLeakyReLU(in_channels + skip_channels, out_channels),
            ConvBatchNormLeakyReLU(out_channels, out_channels),
        )

    def forward(self, hidden_states: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        hidden_states = F.interpolate(hidden_states, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([hidden_states, skip], dim=1))


class AutoSamPromptGenerator(nn.Module):
    """g: image → one SAM dense prompt embedding per class.

    forward: the processor's prompt canvas (B, 3, P, P), P = `prompt_input_size` → (B, K, C, E, E) in [-1, 1], K =
    `config.num_classes`. One network for every class: its last conv (the head) has K·C output channels, split into
    K prompts, so the binary model (K = 1) has exactly the head of the single-prompt g. A canvas of another size
    (SAM's, from a processor without a prompt canvas) is resized to P first. SAM and the ImageNet backbones both
    expect ImageNet-normalised input, so the processor normalises once for both.
    """

    def __init__(self, config: AutoSamConfig):
        super().__init__()
        self.input_size = config.prompt_input_size
        self.num_classes = config.num_classes
        embedding_channels, self.embedding_size = config.prompt_embedding_shape
        self.encoder = backbone_features(config.backbone)
        channels4, channels8, channels16 = self.encoder.feature_channels
        self.up16to8 = PromptDecoderUpBlock(channels16, channels8, channels8)
        self.up8to4 = PromptDecoderUpBlock(channels8, channels4, channels4)
        self.head = nn.Conv2d(channels4, self.num_classes * embedding_channels, kernel_size=3, padding=1)

    def input_memory_format(self) -> torch.memory_format:
        """The layout of g's first conv weights, channels-last or PyTorch's (`forward` gives its input the same: a
        convolution whose input and weights differ in layout converts one of them first). Whoever runs g chooses
        the layout of its weights (`module.to(memory_format=...)`)."""
        stem = next(parameter for parameter in self.encoder.parameters() if parameter.ndim == 4)
        return torch.channels_last if stem.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.shape[-1] != self.input_size or pixel_values.shape[-2] != self.input_size:
            # In float32: antialiased resizing has no bf16 kernel on CPU (a model loaded in bf16).
            pixel_values = F.interpolate(
                pixel_values.float(),
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            ).to(pixel_values.dtype)
        pixel_values = pixel_values.contiguous(memory_format=self.input_memory_format())
        features4, features8, features16 = self.encoder(pixel_values)
        hidden_states = self.up8to4(self.up16to8(features16, features8), features4)
        prompt = torch.tanh(self.head(hidden_states))
        prompt = F.interpolate(
            prompt, size=(self.embedding_size, self.embedding_size), mode="bilinear", align_corners=False
        )
        return prompt.unflatten(1, (self.num_classes, -1))


class AutoSamSurrogateDecoder(nn.Module):
    """h: a light decoder from g's prompt embedding straight to a mask, without SAM.

    forward: K prompts (B, K, C, E, E) → (B, K, 4E, 4E) logits, the same weights for every class; one prompt
    (B, C, E, E) → (B, 1, 4E, 4E) (256×256 for real SAM; 151,809 parameters when C = 256, whatever K).
    """

    def __init__(self, config: AutoSamConfig):
        super().__init__()
        embedding_channels, _ = config.prompt_embedding_shape
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(embedding_channels, 64, kernel_size=3, stride=2, padding=1, output_padding=1),
            SamLayerNorm(64, data_format="channels_first"),
            nn.GELU(),
            nn.ConvTranspose2d(64, 16, kernel_size=2, stride=2),
            SamLayerNorm(16, data_format="channels_first"),
            nn.GELU(),
            nn.Conv2d(16, 1, kernel_size=1),
        )

    def forward(self, prompt_embeddings: torch.Tensor) -> torch.Tensor:
        if prompt_embeddings.ndim == 4:
            return self.layers(prompt_embeddings)
        logits = self.layers(prompt_embeddings.flatten(0, 1))  # (B·K, 1, 4E, 4E): the classes as a batch
        return logits.view(*prompt_embeddings.shape[:2], *logits.shape[-2:])


def masked_segmentation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    valid_mask: torch.Tensor | None = None,
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
    smooth: float = 1.0,
    class_activation: str = "softmax",
) -> torch.Tensor:
    """Classification + per-class soft Dice, counting only pixels where `valid_mask` is true.

    Args:
        logits: (B, K, H, W) class logits, or (B, H, W) for K = 1.
        labels: (B, H, W) label maps: 0 background, 1..K the classes (binary: 0/1).
        valid_mask: (B, H, W); false on the processor's zero padding, which must not be learned.
        class_activation: the background rule (`segmentation_classes`). `"sigmoid"`: BCE-with-logits of each class
            against its one-hot map, averaged over valid pixels and classes. `"softmax"`: cross-entropy over
            [background logit 0, z_1..z_K] against the label map, averaged over valid pixels. K = 1: both are the
            binary BCE.
    Returns:
        Scalar: `bce_weight` × that classification term + `dice_weight` × mean over images and classes of
        (1 − soft Dice of the class's probability against its one-hot map), the background not counted.
    """
    check_class_activation(class_activation)
    logits = logits if logits.ndim == 4 else logits.unsqueeze(1)
    batch_size, num_classes = logits.shape[:2]
    logits = logits.reshape(batch_size, num_classes, -1).float()  # (B, K, N)
    labels = labels.reshape(batch_size, -1)
    targets = one_hot_labels(labels, num_classes)  # (B, K, N)
    valid = torch.ones_like(labels, dtype=logits.dtype) if valid_mask is None else valid_mask.reshape(labels.shape)
    valid = valid.to(logits.dtype).unsqueeze(1)  # (B, 1, N)
    if num_classes == 1 or class_activation == "sigmoid":
        classification = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        classification = (classification * valid).sum() / (valid.sum() * num_classes).clamp(min=1.0)
        probabilities = torch.sigmoid(logits)
    else:
        log_probabilities = F.log_softmax(torch.cat([torch.zeros_like(logits[:, :1]), logits], dim=1), dim=1)
        negative_log_likelihood = -log_probabilities.gather(1, labels.long().unsqueeze(1))  # (B, 1, N)
        classification = (negative_log_likelihood * valid).sum() / valid.sum().clamp(min=1.0)
        probabilities = log_probabilities[:, 1:].exp()
    probabilities = probabilities * valid
    intersection = (probabilities * targets * valid).sum(dim=-1)
    denominator = probabilities.sum(dim=-1) + (targets * valid).sum(dim=-1)
    dice = (2.0 * intersection + smooth) / (denominator + smooth)  # (B, K)
    return bce_weight * classification + dice_weight * (1.0 - dice).mean()


class AutoSamPreTrainedModel(PreTrainedModel):
    config: AutoSamConfig
    config_class = AutoSamConfig
    base_model_prefix = "sam"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["SamVisionLayer", "SamHQVisionLayer", "Sam2MultiScaleBlock"]
    _supports_sdpa = True  # SAM's attention; g and h have none

    def _init_weights(self, module: nn.Module) -> None:
        # g and h are conv nets trained from scratch (or from a backbone's own weights): keep PyTorch's default
        # Kaiming-uniform conv init rather than the N(0, 0.02) transformers uses for transformers.
        # SAM (a PreTrainedModel child) is initialised by its own `_init_weights`.
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                # PyTorch's rule (fan-in from weight dim 1, for convs and transposed convs alike).
                fan_in = module.weight.shape[1] * module.weight[0, 0].numel()
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(module.bias, -bound, bound)
        else:
            super()._init_weights(module)


# `from_pretrained` arguments that also apply to fetching an adapter checkpoint's base SAM (not `revision`: the
# base SAM's revision is `config.sam_revision`).
_BASE_SAM_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "proxies")
_SAM_TIED_POSITIONAL_EMBEDDING = "sam.shared_image_embedding.positional_embedding"


class AutoSamForSegmentation(AutoSamPreTrainedModel):
    """AutoSAM: frozen SAM (`self.sam`), prompt generator g (`self.prompt_generator`) and, when configured, the
    surrogate decoder h (`self.surrogate_decoder`). Only g and h ever receive gradients."""

    def __init__(self, config: AutoSamConfig, sam: PreTrainedModel | None = None):
        super().__init__(config)
        if sam is not None:
            frozen_sam_for(sam)  # a supported family, or a TypeError / ValueError naming it
            config.sam_config = sam.config  # one SAM config object, already resolved by the model (attention, ...)
        self.sam = sam if sam is not None else config.frozen_sam_class.model_class(config.sam_config)
        # The same SAM, without a wasted copy of its attention bias in every ViT block (`sam_attention`); a SAM
        # passed in is changed in place.
        use_contiguous_relative_position_bias(self.sam)
        self.prompt_generator = AutoSamPromptGenerator(config)
        self.surrogate_decoder = AutoSamSurrogateDecoder(config) if config.use_surrogate_decoder else None
        self.post_init()
        if config.adapter_only:
            # An adapter checkpoint holds no SAM weights: `from_pretrained` loads them from the base SAM instead.
            self._keys_to_ignore_on_load_missing.add(r"^sam\.")
        self.freeze_sam()

    # ---------------------------------------------------------------- construction and freezing
    @classmethod
    def from_sam(
        cls,
        sam: str | os.PathLike | PreTrainedConfig | PreTrainedModel,
        revision: str | None = None,
        backbone_weights: str | os.PathLike | bool | None = None,
        **config_overrides,
    ) -> AutoSamForSegmentation:
        """Build AutoSAM around a frozen model's weights, with a fresh g (and h).

        Args:
            sam: a Hub id or folder of a transformers SAM, SAM-HQ or SAM 2 checkpoint (`facebook/sam-vit-base`,
                `wanglab/medsam-vit-base`, `syscv-community/sam-hq-vit-base`, `facebook/sam2.1-hiera-tiny`, ...; the
                family is read from its config.json), an original segment-anything `.pth` file (vit_b/l/h, detected
                from the weights), a `SamConfig` / `SamHQConfig` / `Sam2Config` (random weights) or a `SamModel` /
                `SamHQModel` / `Sam2Model` (used in place: frozen, its ViT attention given `sam_attention`'s bias).
            revision: Hub revision of `sam`.
            backbone_weights: ImageNet weights for g's encoder: a path to the authors' `hardnet85.pth` for
                HarDNet-85, or `True` to let timm fetch a timm backbone's weights.
            config_overrides: any `AutoSamConfig` field (`prompt_input_size`, `backbone`, `hq_token_only`, ...).
                From a folder or Hub id, `sam_preprocessing` defaults to the checkpoint's own SAM-canvas settings
                where they differ from SAM's (`load_sam_preprocessing`: MedSAM's copies skip ImageNet normalisation).
        """
        sam_model = load_sam(sam, revision=revision)
        if isinstance(sam, (str, os.PathLike)):
            config_overrides.setdefault("sam_name_or_path", str(sam))
            config_overrides.setdefault("sam_revision", revision)
            if not os.path.isfile(sam):
                config_overrides.setdefault("sam_preprocessing", load_sam_preprocessing(sam, revision=revision))
        # A copy: building a config resets the attention setting of the sub-configs it is handed.
        config = AutoSamConfig(sam_config=sam_model.config.to_dict(), **config_overrides)
        model = cls(config, sam=sam_model)
        if backbone_weights:
            model.load_backbone_weights(backbone_weights)
        return model

    def load_backbone_weights(self, weights: str | os.PathLike | bool) -> None:
        """Load ImageNet weights into g's encoder (see `from_sam`; `backbones.load_backbone_weights`)."""
        load_backbone_weights(self.prompt_generator.encoder, self.config.backbone, weights)

    @property
    def frozen_sam(self) -> FrozenSam:
        """The adapter of the frozen model's family around `self.sam` (`frozen_sam.py`); it holds no weights."""
        return self.config.frozen_sam_class(self.sam, hq_token_only=self.config.hq_token_only)

    def freeze_sam(self) -> None:
        """SAM never trains: no gradients, and eval mode (re-applied by `train()` and after loading); SAM 2 also
        always answers with its token 0 (`FrozenSam2`)."""
        self.frozen_sam.freeze()

    def set_trainable(self, prompt_generator: bool, surrogate_decoder: bool = False) -> None:
        """Choose which of g and h train (SAM never does). Frozen parts stay in eval mode, so their BatchNorm
        statistics do not drift while the other part trains."""
        self.prompt_generator.requires_grad_(prompt_generator)
        if self.surrogate_decoder is not None:
            self.surrogate_decoder.requires_grad_(surrogate_decoder)
        self.train(self.training)

    def train(self, mode: bool = True) -> AutoSamForSegmentation:
        super().train(mode)
        for part in (self.sam, self.prompt_generator, self.surrogate_decoder):
            if part is not None and not any(parameter.requires_grad for parameter in part.parameters()):
                part.eval()
        return self

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, loading_info) with output_loading_info
        if model.config.adapter_only:
            hub_kwargs = {key: kwargs[key] for key in _BASE_SAM_HUB_KWARGS if key in kwargs}
            model.load_base_sam_weights(**hub_kwargs)
        model.freeze_sam()
        return loaded

    # ---------------------------------------------------------------- adapter-size checkpoints
    def save_adapter(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """Save an adapter-size checkpoint: g and h weights, the config (with `adapter_only=True`) and the remote
        code, but no SAM weights; `from_pretrained` rebuilds the whole model by loading SAM from
        `config.sam_name_or_path` at `config.sam_revision`. `kwargs` go to `save_pretrained`."""
        if not self.config.sam_name_or_path:
            raise ValueError(
                "save_adapter needs config.sam_name_or_path (the base SAM's Hub id, e.g. 'facebook/sam-vit-base', "
                "and config.sam_revision) to refetch SAM when loading."
            )
        # SAM's one tied parameter (a small Gaussian matrix) stays in, so that transformers finds a side of the tie
        # when loading; `load_base_sam_weights` overwrites it with the base SAM's own.
        adapter_state_dict = {
            name: tensor
            for name, tensor in self.state_dict().items()
            if not name.startswith("sam.") or name == _SAM_TIED_POSITIONAL_EMBEDDING
        }
        self.config.adapter_only = True
        try:
            self.save_pretrained(save_directory, state_dict=adapter_state_dict, **kwargs)
        finally:
            self.config.adapter_only = False

    def load_base_sam_weights(self, **from_pretrained_kwargs) -> None:
        """Fill `self.sam` from `config.sam_name_or_path` at `config.sam_revision` (what loading an adapter
        checkpoint does), keeping SAM's current dtype and device. The model is then a whole model again
        (`config.adapter_only = False`). `from_pretrained_kwargs` (`cache_dir`, `local_files_only`, `token`, ...)
        go to the family's `from_pretrained`, which honours the Hub cache and `HF_HUB_OFFLINE`."""
        name, revision = self.config.sam_name_or_path, self.config.sam_revision
        if not name:
            raise ValueError("Adapter checkpoint without config.sam_name_or_path: the base SAM is unknown.")
        try:
            base_sam = load_sam(name, revision=revision, **from_pretrained_kwargs)
            self.sam.load_state_dict(base_sam.state_dict())
        except (OSError, ValueError, RuntimeError) as error:
            raise ValueError(
                f"This adapter checkpoint needs its base SAM {name!r} (revision {revision or 'main'}), which could "
                f"not be loaded into the model: {error}"
            ) from error
        self.config.adapter_only = False

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        if self._auto_class is not None:
            # `register_for_auto_class` records a single Auto class; remote code should resolve through
            # `AutoModel` as well as `AutoModelForSemanticSegmentation` (what the pipeline uses).
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map["AutoModel"] = f"modeling_autosam.{type(self).__name__}"
            self.config.auto_map = auto_map
        super().save_pretrained(save_directory, *args, **kwargs)

    # ---------------------------------------------------------------- pieces of the forward pass
    @torch.no_grad()
    def get_image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The frozen image encoder's main output: (B, 3, S, S) → image_embeddings (B, C, E, E) (SAM-HQ and SAM 2
        decoders need more: `image_features`)."""
        return self.image_features(pixel_values)["image_embeddings"]

    @torch.no_grad()
    def image_features(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the frozen encoder gives the mask decoder, by `forward` argument name — what the embedding cache
        stores: SAM {"image_embeddings": (B, C, E, E)}; SAM-HQ adds "intermediate_embeddings" (B, E, E, D); SAM 2
        "high_resolution_features_0" (B, C/8, 4E, 4E) and "_1" (B, C/4, 2E, 2E) (`frozen_sam.py`)."""
        return self.frozen_sam.image_features(pixel_values)

    def image_feature_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes (without the batch) of `image_features`, from the configuration alone."""
        return self.config.frozen_sam_class.feature_shapes(self.config.sam_config)

    def decode_masks(
        self,
        image_features: dict[str, torch.Tensor] | torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        input_points: torch.Tensor | None = None,
        input_labels: torch.Tensor | None = None,
        input_boxes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen mask decoder with dense prompts and, when given, sparse prompts (points, boxes), once per class
        in one batched call.

        Args:
            image_features: `image_features` of B images, e.g. {"image_embeddings": (B, C, E, E)}; for SAM the
                image embeddings tensor itself is accepted.
            dense_prompt_embeddings: K prompts per image (B, K, C, E, E), or one (B, C, E, E).
            input_points: (B, K, N, 2) (x, y) in SAM-canvas pixels (side S; the processor maps an image's own
                coordinates there), N points per class; `SamModel`'s point-batch axis is the class axis.
            input_labels: (B, K, N): 1 positive, 0 negative, -10 padding (-1 not-a-point); default all 1.
            input_boxes: (B, K, 4) (x0, y0, x1, y1) in SAM-canvas pixels, one box per class.
        Returns:
            (logits (B, K, 4E, 4E), iou_scores (B, K)); K = 1 for a single prompt. Without sparse prompts the
            decoder sees g's prompt alone, as it always has; a class whose points are all padding or not-a-point
            (and which has no box) is decoded the same way, so images or classes without clicks can share a batch
            with ones that have them.
        """
        if isinstance(image_features, torch.Tensor):
            image_features = {"image_embeddings": image_features}
        if dense_prompt_embeddings.ndim == 4:
            dense_prompt_embeddings = dense_prompt_embeddings.unsqueeze(1)
        batch_size, num_classes = dense_prompt_embeddings.shape[:2]
        # Image b's features serve each of its K prompts: the decoder sees a batch of B·K (image, prompt) pairs.
        features = {name: tensor.repeat_interleave(num_classes, dim=0) for name, tensor in image_features.items()}
        dense = dense_prompt_embeddings.flatten(0, 1)
        sparse = self._flat_sparse_prompts(input_points, input_labels, input_boxes, batch_size, num_classes)
        if sparse is None:
            masks, iou_scores = self.frozen_sam.decode(features, dense)
        else:
            masks, iou_scores = self._decode_with_sparse_prompts(features, dense, *sparse)
        # masks (B·K, 1, 4E, 4E), iou_scores (B·K, 1): one mask per (image, prompt) pair.
        return masks.view(batch_size, num_classes, *masks.shape[-2:]), iou_scores.view(batch_size, num_classes)

    @staticmethod
    def _flat_sparse_prompts(
        input_points: torch.Tensor | None,
        input_labels: torch.Tensor | None,
        input_boxes: torch.Tensor | None,
        batch_size: int,
        num_classes: int,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None] | None:
        """The sparse prompts checked and flattened to one item per (image, class): points (B·K, N, 2), labels
        (B·K, N), boxes (B·K, 4); None without any."""
        if input_points is None and input_boxes is None:
            if input_labels is not None:
                raise ValueError("input_labels: given without input_points")
            return None
        expected = f"(batch {batch_size}, classes {num_classes}"
        if input_points is not None:
            if (
                input_points.ndim != 4
                or tuple(input_points.shape[:2]) != (batch_size, num_classes)
                or (input_points.shape[-1] != 2)
            ):
                raise ValueError(
                    f"input_points: expected shape {expected}, points, 2), got {tuple(input_points.shape)}"
                )
            if input_labels is None:  # SamModel's default: every point positive
                input_labels = torch.ones(input_points.shape[:3], dtype=torch.long, device=input_points.device)
            if tuple(input_labels.shape) != tuple(input_points.shape[:3]):
                raise ValueError(
                    f"input_labels: expected shape {tuple(input_points.shape[:3])} (one per point of input_points), "
                    f"got {tuple(input_labels.shape)}"
                )
            input_points, input_labels = input_points.flatten(0, 1), input_labels.flatten(0, 1)
        elif input_labels is not None:
            raise ValueError("input_labels: given without input_points")
        if input_boxes is not None:
            if tuple(input_boxes.shape) != (batch_size, num_classes, 4):
                raise ValueError(f"input_boxes: expected shape {expected}, 4), got {tuple(input_boxes.shape)}")
            input_boxes = input_boxes.flatten(0, 1)
        return input_points, input_labels, input_boxes

    def _decode_with_sparse_prompts(
        self,
        features: dict[str, torch.Tensor],
        dense: torch.Tensor,
        input_points: torch.Tensor | None,
        input_labels: torch.Tensor | None,
        input_boxes: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`frozen_sam.decode` of B·K items with their sparse prompts, except that items without a real prompt (no
        box, no point labelled 0 or 1) get the plain dense-prompt decode."""
        if input_boxes is not None:
            return self.frozen_sam.decode(features, dense, input_points, input_labels, input_boxes)
        unprompted = (input_labels < 0).all(dim=-1)  # (B·K,)
        # Traced (torch.export, TorchScript) there is no data-dependent branch: both decodes, then a per-item select.
        # Eager runs only the decodes the batch needs.
        exporting = torch.compiler.is_exporting() or torch.jit.is_tracing()
        if not exporting and not bool(unprompted.any()):
            return self.frozen_sam.decode(features, dense, input_points, input_labels)
        plain = self.frozen_sam.decode(features, dense)
        if not exporting and bool(unprompted.all()):
            return plain
        prompted = self.frozen_sam.decode(features, dense, input_points, input_labels)
        return tuple(
            torch.where(unprompted.view(-1, *[1] * (a.ndim - 1)), a, b) for a, b in zip(plain, prompted, strict=True)
        )

    def _image_features_for_forward(
        self, pixel_values: torch.Tensor | None, given: dict[str, torch.Tensor | None]
    ) -> dict[str, torch.Tensor]:
        """The image features a SAM mode decodes with: the ones passed to `forward` (all of the family's, checked),
        else computed from `pixel_values`."""
        given = {name: tensor for name, tensor in given.items() if tensor is not None}
        if not given:
            return self.image_features(pixel_values)
        for name, tensor in given.items():
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(f"{name} must be a tensor (batch first), got {type(tensor).__name__}")
        self.frozen_sam.check_features(given)
        return given

    def forward(
        self,
        pixel_values: torch.FloatTensor | None = None,
        prompt_pixel_values: torch.FloatTensor | None = None,
        image_embeddings: torch.FloatTensor | None = None,
        labels: torch.Tensor | None = None,
        valid_mask: torch.Tensor | None = None,
        mode: str | None = None,
        return_dict: bool | None = None,
        *,
        intermediate_embeddings: torch.FloatTensor | None = None,
        high_resolution_features_0: torch.FloatTensor | None = None,
        high_resolution_features_1: torch.FloatTensor | None = None,
        input_points: torch.FloatTensor | None = None,
        input_labels: torch.LongTensor | None = None,
        input_boxes: torch.FloatTensor | None = None,
        original_sizes: torch.Tensor | None = None,
        reshaped_input_sizes: torch.Tensor | None = None,
        **unexpected,
    ) -> AutoSamSegmentationOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, S, S)`, *optional*):
            The processor's SAM canvas: normalised, padded to SAM's input size S (1024). Needed when SAM's encoder
            runs (a SAM mode without `image_embeddings`), or as g's input when `prompt_pixel_values` is absent.
        prompt_pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, P, P)`, *optional*):
            The processor's prompt canvas at g's input size P, made from the original image; g reads it. Without
            it, g resizes `pixel_values` (what processors without a prompt canvas give).
        image_embeddings (`torch.FloatTensor` of shape `(batch_size, C, E, E)`, *optional*):
            Precomputed image embeddings (e.g. from the embedding cache); SAM's encoder is then skipped. Precomputed
            features are all of `image_features`' or none: SAM-HQ's decoder also needs `intermediate_embeddings`,
            SAM 2's the two `high_resolution_features_*`.
        labels (`torch.Tensor` of shape `(batch_size, 4E, 4E)`, *optional*):
            Label maps on the padded low-resolution canvas (the processor's `labels`): 0/1 for the binary model,
            class ids 0..K otherwise.
        valid_mask (`torch.Tensor` of shape `(batch_size, 4E, 4E)`, *optional*):
            True where the canvas is image rather than padding; the loss only counts these pixels.
        mode (`str`, *optional*):
            `"autosam"` (g's prompt through SAM), `"surrogate"` (h(g(I)), SAM not run) or `"sam_mask_prompt"`
            (AutoSAM's mask of each class fed back through SAM's mask prompt encoder). Defaults to
            `config.default_mode`; `"sam"` is accepted for `"autosam"`.
        intermediate_embeddings (`torch.FloatTensor` of shape `(batch_size, E, E, D)`, *optional*):
            SAM-HQ: the first global-attention ViT block's output (the first of `SamHQModel`'s
            `intermediate_embeddings`, the only one its decoder reads), channels-last, D = 768 for vit-b.
        high_resolution_features_0 / high_resolution_features_1 (`torch.FloatTensor`, *optional*):
            SAM 2: the first two maps of `Sam2Model.get_image_embeddings` (after the decoder's conv_s0 / conv_s1), of
            shapes `(batch_size, C/8, 4E, 4E)` and `(batch_size, C/4, 2E, 2E)`.
        input_points (`torch.FloatTensor` of shape `(batch_size, K, N, 2)`, *optional*):
            Clicks, (x, y) in SAM-canvas pixels (the processor maps the image's own coordinates there, as
            `SamProcessor` does), N per class: `SamModel`'s point-batch axis is the class axis. SAM's frozen prompt
            encoder embeds them as sparse tokens beside g's dense prompt (modes `"autosam"` and, in both of its
            decodes, `"sam_mask_prompt"`; `"surrogate"` refuses them). A class whose points are all padding has no
            sparse prompt (`decode_masks`).
        input_labels (`torch.LongTensor` of shape `(batch_size, K, N)`, *optional*):
            1 positive, 0 negative, -10 padding (ragged point lists), -1 not-a-point; default all 1.
        input_boxes (`torch.FloatTensor` of shape `(batch_size, K, 4)`, *optional*):
            One box per class, (x0, y0, x1, y1) in SAM-canvas pixels.
        original_sizes / reshaped_input_sizes (`torch.Tensor` of shape `(batch_size, 2)`, *optional*):
            The processor's bookkeeping, accepted and ignored so that `model(**processor(images))` and the
            `image-segmentation` pipeline work. Any other keyword raises TypeError.
        """
        if unexpected:
            raise TypeError(_unexpected_keywords_message(unexpected, type(self).forward))
        mode = canonical_mode(mode or self.config.default_mode)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        sparse_prompts = {"input_points": input_points, "input_labels": input_labels, "input_boxes": input_boxes}
        if mode == "surrogate" and any(value is not None for value in sparse_prompts.values()):
            given = ", ".join(name for name, value in sparse_prompts.items() if value is not None)
            raise ValueError(f"mode='surrogate' (h(g(I))) takes no points or boxes, got {given}; use mode='autosam'")
        if prompt_pixel_values is None and pixel_values is None:
            raise ValueError("prompt_pixel_values (or pixel_values) is required: the prompt generator reads the image.")
        if mode == "surrogate" and self.surrogate_decoder is None:
            raise ValueError("mode='surrogate' needs a surrogate decoder (config.use_surrogate_decoder=True).")
        given_features = {
            "image_embeddings": image_embeddings,
            "intermediate_embeddings": intermediate_embeddings,
            "high_resolution_features_0": high_resolution_features_0,
            "high_resolution_features_1": high_resolution_features_1,
        }
        if mode != "surrogate" and pixel_values is None and all(value is None for value in given_features.values()):
            raise ValueError(
                f"mode={mode!r} runs SAM: pass pixel_values (SAM's canvas) or image_embeddings (with the frozen "
                "model's other image features, model.image_features)."
            )

        prompt_input = prompt_pixel_values if prompt_pixel_values is not None else pixel_values
        prompt_embeddings = self.prompt_generator(prompt_input)
        logits = iou_scores = surrogate_logits = None
        if mode == "surrogate":
            logits = surrogate_logits = self.surrogate_decoder(prompt_embeddings)
        else:
            features = self._image_features_for_forward(pixel_values, given_features)
            image_embeddings = features["image_embeddings"]
            logits, iou_scores = self.decode_masks(features, prompt_embeddings, **sparse_prompts)
            if mode == "sam_mask_prompt":
                # Each class's mask (B·K, 1, 4E, 4E) through SAM's mask prompt encoder → K prompts per image again.
                class_masks = logits.flatten(0, 1).unsqueeze(1).to(image_embeddings.dtype)
                mask_prompts = self.frozen_sam.mask_prompt_embeddings(class_masks).unflatten(0, logits.shape[:2])
                logits, iou_scores = self.decode_masks(features, mask_prompts, **sparse_prompts)

        loss = None
        if labels is not None:
            loss = masked_segmentation_loss(
                logits,
                labels,
                valid_mask,
                self.config.bce_loss_weight,
                self.config.dice_loss_weight,
                class_activation=self.config.class_activation,
            )
        if prompt_embeddings.shape[1] == 1:  # the binary model's one prompt keeps its (B, C, E, E) shape
            prompt_embeddings = prompt_embeddings[:, 0]

        output = AutoSamSegmentationOutput(
            loss=loss,
            logits=logits,
            iou_scores=iou_scores,
            surrogate_logits=surrogate_logits,
            prompt_embeddings=prompt_embeddings,
            image_embeddings=image_embeddings,
        )
        return output if return_dict else output.to_tuple()


def _unexpected_keywords_message(unexpected: dict, forward) -> str:
    """One line naming the keywords `forward` does not take, with the nearest accepted name of each."""
    accepted = [name for name in inspect.signature(forward).parameters if name not in ("self", "unexpected")]
    parts = []
    for name in unexpected:
        close = difflib.get_close_matches(name, accepted, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"AutoSamForSegmentation.forward() got unexpected keyword argument(s) {', '.join(parts)}"


__all__ = [
    "AutoSamForSegmentation",
    "AutoSamPreTrainedModel",
    "AutoSamPromptGenerator",
    "AutoSamSegmentationOutput",
    "AutoSamSurrogateDecoder",
    "masked_segmentation_loss",
]
