"""autosam-hf: AutoSAM (a frozen SAM driven by a learned prompt generator) for the Hugging Face ecosystem."""

from .model import (
    AUTOSAM_MODES,
    AutoSamConfig,
    AutoSamForSegmentation,
    AutoSamImageProcessor,
    AutoSamSegmentationOutput,
    load_sam,
)

__version__ = "0.1.0"

__all__ = [
    "AUTOSAM_MODES",
    "AutoSamConfig",
    "AutoSamForSegmentation",
    "AutoSamImageProcessor",
    "AutoSamSegmentationOutput",
    "load_sam",
]
