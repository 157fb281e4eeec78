"""Inference with a trained AutoSAM (`autosam-predict`): what a model must offer (`protocol`: the PyTorch model and
an onnxruntime export alike), the input side (`inputs`: image files, folders, frames, videos, CT/MRI volumes), the
Python API (`predictor`: `iter_predictions`, `predict_images`, `predict_volume`, `segment_input`) and the command
line (`cli`)."""

from .inputs import INPUT_KINDS, VIDEO_EXTENSIONS, InputImage, InputKind, InputVolume, open_input, read_image
from .predictor import (
    PredictionSettings,
    PredictionSummary,
    iter_predictions,
    predict_images,
    predict_volume,
    segment_input,
)
from .protocol import SegmentationConfig, SegmentationModel

__all__ = [
    "INPUT_KINDS",
    "VIDEO_EXTENSIONS",
    "InputImage",
    "InputKind",
    "InputVolume",
    "PredictionSettings",
    "PredictionSummary",
    "SegmentationConfig",
    "SegmentationModel",
    "iter_predictions",
    "open_input",
    "predict_images",
    "predict_volume",
    "read_image",
    "segment_input",
]
