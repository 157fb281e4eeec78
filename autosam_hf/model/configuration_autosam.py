"""AutoSAM configuration."""

from __future__ import annotations

from transformers import PreTrainedConfig, SamConfig

from .frozen_sam import CANVAS_RULES, FROZEN_SAM_FAMILIES, frozen_sam_class
from .segmentation_classes import check_class_activation

AUTOSAM_MODES = ("autosam", "surrogate", "sam_mask_prompt")


def frozen_sam_config(sam_config: dict | PreTrainedConfig | None) -> PreTrainedConfig:
    """`sam_config` as the configuration of its family: a config object of SAM, SAM-HQ or SAM2 as it is; a dict
    (a loaded `config.json`) by its `model_type` (`"sam"` when it names none); None → the default `SamConfig`.
    Raises ValueError naming `sam_config` for anything else."""
    if isinstance(sam_config, PreTrainedConfig):
        family = frozen_sam_class(sam_config, argument="sam_config")
        if isinstance(sam_config, family.config_class):
            return sam_config
        raise ValueError(f"sam_config: a {type(sam_config).__name__} is not a {family.config_class.__name__}")
    sam_config = sam_config or {}
    model_type = sam_config.get("model_type", SamConfig.model_type)
    if model_type not in FROZEN_SAM_FAMILIES:
        raise ValueError(
            f"sam_config: model_type {model_type!r} is not one of {sorted(FROZEN_SAM_FAMILIES)} (sam2_video "
            "checkpoints load through from_sam / load_sam, which read them as sam2)"
        )
    return FROZEN_SAM_FAMILIES[model_type].config_class(**sam_config)


def canonical_mode(mode: str) -> str:
    """`mode`, checked: raises ValueError naming it unless it is one of `AUTOSAM_MODES`."""
    if mode not in AUTOSAM_MODES:
        raise ValueError(f"mode must be one of {AUTOSAM_MODES}, got {mode!r}")
    return mode


class AutoSamConfig(PreTrainedConfig):
    r"""
    Configuration of [`AutoSamForSegmentation`]: a frozen SAM, a prompt generator g that turns the image into SAM's
    dense prompt embedding, and an optional surrogate decoder h that segments from g's output without SAM
    (Shaharabany et al., "AutoSAM: Adapting SAM to Medical Images by Overloading the Prompt Encoder", 2023).

    Classes: `num_labels = K + 1` (`id2label[0]` is the background, 1..K the classes); the default is the binary
    model, K = 1 (`{0: "background", 1: "foreground"}`). g emits one dense prompt per class, SAM's mask decoder runs
    once per class (one batched call), h decodes each class's prompt with shared weights, and the model outputs K
    logit maps, (B, K, 4E, 4E). How they become classes is `class_activation` (`segmentation_classes`).

    Args:
        sam_config (`SamConfig`, `SamHQConfig`, `Sam2Config` or `dict`, *optional*):
            The frozen model: SAM (MedSAM is a SAM checkpoint), SAM-HQ or SAM 2 (`frozen_sam.py`); a dict is read by
            its `model_type` ("sam" when absent). Its prompt encoder's channels (C) and embedding side (E) fix the
            shape of each of g's K prompts, (C, E, E): (256, 64, 64) for every released model of the three.
        backbone (`str`, *optional*, defaults to `"hardnet85"`):
            Encoder of g. `"hardnet85"` is the paper's HarDNet-85; any other name is a timm model created with
            `features_only=True` and tapped at strides 4, 8 and 16.
        prompt_input_size (`int`, *optional*, defaults to 352):
            Side of the square image g sees (paper: 352 polyps, 256 GlaS, 512 MoNuSeg): the processor's own canvas of
            the image at this size (`prompt_pixel_values`); given SAM's `pixel_values` only, g resizes those.
        use_surrogate_decoder (`bool`, *optional*, defaults to `True`):
            Whether to build h, the light SAM-free decoder trained on g's output.
        class_activation (`str`, *optional*, defaults to `"softmax"`):
            The background rule for K > 1. `"softmax"`: mutually exclusive classes, softmax over [background logit
            fixed at 0, the K class logits], cross-entropy loss. `"sigmoid"`: independent classes (overlaps
            allowed), a sigmoid per class, a BCE loss per class. With K = 1 both are the binary model.
        bce_loss_weight / dice_loss_weight (`float`, *optional*, defaults to 1.0):
            Weights of the classification term (BCE-with-logits; cross-entropy for `"softmax"` with K > 1) and the
            per-class soft-Dice term of the loss.
        mask_threshold (`float`, *optional*, defaults to 0.0):
            Threshold on the logits when binarising masks; for K > 1 it is the background's logit in the label
            map's argmax (`segmentation_classes.label_maps_from_logits`).
        default_mode (`str`, *optional*, defaults to `"autosam"`):
            Mode used when `forward` is called without one (e.g. by the `image-segmentation` pipeline): `"autosam"`
            (AutoSAM), `"surrogate"` (h(g(I)), SAM not run) or `"sam_mask_prompt"`.
        sam_name_or_path / sam_revision (`str`, *optional*):
            Where the SAM weights came from; adapter-size checkpoints refetch SAM from here.
        sam_preprocessing (`dict`, *optional*):
            The frozen checkpoint's own SAM-canvas settings where they differ from SAM's defaults (rescaling,
            normalisation, resampling; read from its `preprocessor_config.json` by `from_sam`), e.g. MedSAM's copy
            `{"do_normalize": False, "resample": 3}`. The processor applies them to SAM's canvas only; g's canvas
            keeps ImageNet statistics.
        canvas_rule (`str`, *optional*):
            How the processor makes every canvas (SAM's, g's, the labels'): `"letterbox"` (longest edge to the side,
            zero padding) or `"squash"` (both edges to the side). None: the frozen model's own rule (letterbox for
            SAM, MedSAM and SAM-HQ; squash for SAM 2). Training and inference must share it: a model trained on
            images squashed to a square (the polyp benchmarks' copies are) sees its polyps' shapes distorted when
            a non-square image is letterboxed at inference.
        hq_token_only (`bool`, *optional*, defaults to `False`):
            SAM-HQ only: the mask is the HQ token's alone (True) or SAM's token 0 plus the HQ token's (False, the
            transformers and SAM-HQ default).
        adapter_only (`bool`, *optional*, defaults to `False`):
            Set in the `config.json` of an adapter-size checkpoint (`AutoSamForSegmentation.save_adapter`): its
            weights hold g and h only, and `from_pretrained` loads SAM from `sam_name_or_path` at `sam_revision`.
        volume_input (`dict`, *optional*):
            Set for a model trained on CT/MRI volumes slice by slice: how its slices were made (`"window"`: the CT
            window [low, high] in HU, or None for each volume's percentiles; `"slice_axis"`; `"context_slices"`)
            and `"label_values"`, the dataset's label value of each class 1..K. Volume prediction and evaluation
            slice the same way by default (`autosam_hf.volumes.VolumeInput`); the model itself never reads it.
    """

    model_type = "autosam"
    sub_configs_defaults = {"sam_config": SamConfig}

    sam_config: dict | SamConfig | None = None
    backbone: str = "hardnet85"
    prompt_input_size: int = 352
    use_surrogate_decoder: bool = True
    class_activation: str = "softmax"
    bce_loss_weight: float = 1.0
    dice_loss_weight: float = 1.0
    mask_threshold: float = 0.0
    default_mode: str = "autosam"
    sam_name_or_path: str | None = None
    sam_revision: str | None = None
    sam_preprocessing: dict | None = None
    canvas_rule: str | None = None
    hq_token_only: bool = False
    adapter_only: bool = False
    volume_input: dict | None = None

    def __post_init__(self, **kwargs):
        if self.id2label is None and "num_labels" not in kwargs:
            self.id2label = {0: "background", 1: "foreground"}
            self.label2id = {"background": 0, "foreground": 1}
        # Before transformers builds sub-configs: `sub_configs_defaults` would read any dict as a SamConfig (and
        # releases without it leave a plain dict).
        self.sam_config = frozen_sam_config(self.sam_config)
        super().__post_init__(**kwargs)
        if self.num_labels < 2:
            raise ValueError(f"num_labels must be >= 2 (background + at least one class), got {self.num_labels}")
        if self.label2id is None:  # transformers leaves it unset when only id2label is given
            self.label2id = {name: index for index, name in self.id2label.items()}
        check_class_activation(self.class_activation)
        self.default_mode = canonical_mode(self.default_mode)
        if self.canvas_rule is not None and self.canvas_rule not in CANVAS_RULES:
            raise ValueError(f"canvas_rule must be one of {list(CANVAS_RULES)} or None, got {self.canvas_rule!r}")
        if self.prompt_input_size < 32 or self.prompt_input_size % 16:
            raise ValueError(f"prompt_input_size must be a multiple of 16 and >= 32, got {self.prompt_input_size}")

    @property
    def num_classes(self) -> int:
        """K: the classes besides the background, one prompt and one logit map each."""
        return self.num_labels - 1

    @property
    def frozen_sam_class(self):
        """The adapter class of the frozen model's family (`frozen_sam.FrozenSam` and subclasses)."""
        return frozen_sam_class(self.sam_config)

    @property
    def prompt_embedding_shape(self) -> tuple[int, int]:
        """(C, E): channels and side of the dense prompt embedding g must produce."""
        return self.frozen_sam_class.prompt_embedding_shape(self.sam_config)


__all__ = ["AutoSamConfig", "AUTOSAM_MODES", "canonical_mode", "frozen_sam_config"]
