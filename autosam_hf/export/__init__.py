"""Deployment: AutoSAM as ONNX graphs (`export_onnx`, `autosam-export`) and inference on them with onnxruntime
(`OnnxRuntimeAutoSam`). onnx, onnxscript and onnxruntime are an optional extra: `pip install 'autosam-hf[onnx]'`;
without them the imports here work and the functions raise `MissingDependencyError` naming the extra."""

from .dependencies import ONNX_EXTRA_HINT, MissingDependencyError
from .graphs import GRAPH_FILES, GRAPH_NAMES, MODE_GRAPHS
from .manifest import MANIFEST_NAME, read_manifest
from .onnx_export import DEFAULT_OPSET, export_onnx
from .onnxruntime_model import OnnxRuntimeAutoSam, load_onnxruntime_model_and_processor

__all__ = [
    "DEFAULT_OPSET",
    "GRAPH_FILES",
    "GRAPH_NAMES",
    "MANIFEST_NAME",
    "MODE_GRAPHS",
    "ONNX_EXTRA_HINT",
    "MissingDependencyError",
    "OnnxRuntimeAutoSam",
    "export_onnx",
    "load_onnxruntime_model_and_processor",
    "read_manifest",
]
