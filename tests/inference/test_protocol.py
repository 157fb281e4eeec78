"""autosam_hf.inference.protocol: the PyTorch model and the onnxruntime model both have the surface inference uses
(the onnxruntime instance is checked in tests/export/test_onnxruntime_model.py, which has an export; that the two
give the same masks through the predictor is tested there too)."""

import inspect
import types

import torch
from conftest import make_tiny_model, make_tiny_processor

from autosam_hf import AutoSamForSegmentation
from autosam_hf.export import OnnxRuntimeAutoSam
from autosam_hf.inference import SegmentationConfig, SegmentationModel


def test_the_pytorch_model_and_its_config_satisfy_the_protocols():
    model = make_tiny_model()
    assert isinstance(model, SegmentationModel) and isinstance(model.config, SegmentationConfig)
    model.surrogate_decoder = None  # a model without h, as with config.use_surrogate_decoder=False
    assert isinstance(model, SegmentationModel)


def test_something_without_a_member_of_the_surface_does_not():
    config = types.SimpleNamespace(default_mode="autosam", mask_threshold=0.0, class_activation="softmax")
    assert not isinstance(config, SegmentationConfig)  # no id2label
    model = types.SimpleNamespace(config=config, device=torch.device("cpu"), surrogate_decoder=None)
    assert not isinstance(model, SegmentationModel)  # no dtype, not callable


def test_both_forwards_take_the_processors_inputs_and_a_mode_by_keyword():
    """The call inference makes, `model(**processor_outputs, mode=mode)`, binds to either signature."""
    names = make_tiny_processor().model_input_names
    inputs = {name: torch.zeros(1) for name in names} | {"mode": "surrogate"}
    for forward in (AutoSamForSegmentation.forward, OnnxRuntimeAutoSam.__call__):
        inspect.signature(forward).bind(None, **inputs)  # raises TypeError when an argument has no parameter
