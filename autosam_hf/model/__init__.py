"""AutoSAM as a transformers model: configuration, modeling and image processing, registered with the Auto
classes both in this process (`AutoModel.from_pretrained` after `import autosam_hf`) and as remote code
(`trust_remote_code=True` in a Python that never imported `autosam_hf`)."""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForSemanticSegmentation,
)

from .configuration_autosam import AUTOSAM_MODES, AutoSamConfig
from .frozen_sam import CANVAS_RULES
from .image_processing_autosam import (
    AutoSamImageProcessor,
    binarize_mask,
    mask_to_labels,
    read_label_map,
    to_rgb_uint8,
)
from .modeling_autosam import (
    AutoSamForSegmentation,
    AutoSamPreTrainedModel,
    AutoSamSegmentationOutput,
    masked_segmentation_loss,
)
from .sam_loading import convert_original_sam_state_dict, load_original_sam_checkpoint, load_sam
from .segmentation_classes import CLASS_ACTIVATIONS

AutoConfig.register(AutoSamConfig.model_type, AutoSamConfig, exist_ok=True)
AutoModel.register(AutoSamConfig, AutoSamForSegmentation, exist_ok=True)
AutoModelForSemanticSegmentation.register(AutoSamConfig, AutoSamForSegmentation, exist_ok=True)
AutoImageProcessor.register(AutoSamConfig, slow_image_processor_class=AutoSamImageProcessor, exist_ok=True)

# save_pretrained then copies these modules next to the weights and writes `auto_map`.
AutoSamConfig.register_for_auto_class()
AutoSamForSegmentation.register_for_auto_class("AutoModel")
AutoSamForSegmentation.register_for_auto_class("AutoModelForSemanticSegmentation")
AutoSamImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "AUTOSAM_MODES",
    "CANVAS_RULES",
    "CLASS_ACTIVATIONS",
    "AutoSamConfig",
    "AutoSamForSegmentation",
    "AutoSamImageProcessor",
    "AutoSamPreTrainedModel",
    "AutoSamSegmentationOutput",
    "binarize_mask",
    "convert_original_sam_state_dict",
    "load_original_sam_checkpoint",
    "load_sam",
    "mask_to_labels",
    "masked_segmentation_loss",
    "read_label_map",
    "to_rgb_uint8",
]
