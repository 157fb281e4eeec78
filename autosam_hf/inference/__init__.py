"""Inference with a trained AutoSAM (`autosam-predict`): what a model must offer (`protocol`: the PyTorch model and
an onnxruntime export alike), the input side (`inputs`: image files, folders, frames, videos), the Python API
(`predictor`: `iter_predictions`, `predict_images`, `segment_input`) and the command line (`cli`)."""

from .inputs import INPUT_KINDS, VIDEO_EXTENSIONS, InputImage, InputKind, open_input, read_image
from .predictor import PredictionSettings, PredictionSummary, iter_predictions, predict_images, segment_input
from .protocol import SegmentationConfig, SegmentationModel

__all__ = [
    "INPUT_KINDS",
    "VIDEO_EXTENSIONS",
    "InputImage",
    "InputKind",
    "PredictionSettings",
    "PredictionSummary",
    "SegmentationConfig",
    "SegmentationModel",
    "iter_predictions",
    "open_input",
    "predict_images",
    "read_image",
    "segment_input",
]
