"""Data loading for AutoSAM: folder/Hub loaders returning `datasets.Dataset` (``id``, ``image``, ``mask`` 0/1 or
class ids 0..K [, ``case``, ``frame``, ``instances``]), dataset presets, derived nucleus boundary classes,
deterministic joint augmentation, and the SAM image-embedding cache."""

from .augmentation import (
    AUGMENTATION_LEVELS,
    GLAS_AUGMENTATION,
    MONUSEG_AUGMENTATION,
    NO_AUGMENTATION,
    POLYP_AUGMENTATION,
    AugmentationConfig,
    JointAugmentation,
    augmentation_for_level,
    to_arrays,
)
from .boundary import BOUNDARY_ID2LABEL, DEFAULT_BOUNDARY_WIDTH, boundary_label_map, instances_from_mask
from .dataset_builder import IMAGE_FEATURES, INSTANCE_FEATURES, VIDEO_FEATURES
from .embedding_cache import EmbeddingCache, processor_fingerprint, sam_vision_fingerprint
from .hub import load_hub_dataset
from .masks import BINARY, MaskClasses
from .monuseg_xml import rasterize_monuseg_xml
from .presets import (
    BENCHMARKS,
    PRESETS,
    DatasetCard,
    DatasetPreset,
    get_preset,
    load_preset_dataset,
    read_dataset_card,
)
from .sources import IMAGE_EXTENSIONS, load_glas_warwick, load_image_mask_folder, load_monuseg_xml, load_sunseg
from .splits import train_val_split

__all__ = [
    "AUGMENTATION_LEVELS",
    "augmentation_for_level",
    "AugmentationConfig",
    "BENCHMARKS",
    "BINARY",
    "BOUNDARY_ID2LABEL",
    "boundary_label_map",
    "DEFAULT_BOUNDARY_WIDTH",
    "DatasetCard",
    "DatasetPreset",
    "EmbeddingCache",
    "GLAS_AUGMENTATION",
    "IMAGE_EXTENSIONS",
    "IMAGE_FEATURES",
    "INSTANCE_FEATURES",
    "instances_from_mask",
    "JointAugmentation",
    "MaskClasses",
    "MONUSEG_AUGMENTATION",
    "NO_AUGMENTATION",
    "POLYP_AUGMENTATION",
    "PRESETS",
    "VIDEO_FEATURES",
    "get_preset",
    "load_glas_warwick",
    "load_hub_dataset",
    "load_image_mask_folder",
    "load_monuseg_xml",
    "load_preset_dataset",
    "load_sunseg",
    "processor_fingerprint",
    "rasterize_monuseg_xml",
    "read_dataset_card",
    "sam_vision_fingerprint",
    "to_arrays",
    "train_val_split",
]
