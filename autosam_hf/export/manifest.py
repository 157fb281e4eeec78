"""`autosam_onnx.json`: what a non-Python client needs to run an exported AutoSAM.

    {
      "format": "autosam-onnx", "format_version": 3,
      "graphs": {"encoder": {"file", "exporter", "opset", "inputs": [{"name", "dtype", "shape", "source"}],
                             "outputs": [{"name", "dtype", "shape"}]}, "prompt_decoder": {...}, "surrogate": {...}},
      "modes": {"autosam": ["encoder", "prompt_decoder"], "surrogate": ["surrogate"]},
      "preprocessing": {"canvases": {"sam" | "prompt": {"input", "side", "resample", "rescale_factor", "image_mean",
                        "image_std", "steps"}}, "canvas_rule", "pad_value", ...: how each canvas is made},
      "postprocessing": {how logits become a mask at the image's original size},
      "model": {"mask_threshold", "default_mode", "id2label", ...}, "opset", "versions": {...}
    }

Shapes are read from the written graphs (a symbolic batch is the string "batch"), never assumed here. An input's
"source" is a processor canvas (`{"canvas": "sam" | "prompt"}`), another graph's output (`{"graph", "output"}`) or
the user's clicks (`{"prompt": what to pass, and what without clicks}`: the prompt decoder's `input_points` and
`input_labels`, whose point axis is the symbolic "points").
"""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from transformers.image_utils import PILImageResampling

from ..atomic_write import write_atomically
from ..model import AutoSamForSegmentation, AutoSamImageProcessor
from ..model.frozen_sam import SQUASH
from ..model.image_processing_autosam import CANVAS_OUTPUTS
from .dependencies import require
from .graphs import GRAPH_NAMES, MODE_GRAPHS, GraphSpec, canvas_side

MANIFEST_NAME = "autosam_onnx.json"
# 2: each canvas carries its own resampling and normalisation (SAM's canvas may follow the checkpoint's own).
# 3: the prompt decoder takes clicks (`input_points`, `input_labels`; a "prompt" source). Version 2 exports still
# load (`OnnxRuntimeAutoSam` runs them without clicks).
FORMAT, FORMAT_VERSION = "autosam-onnx", 3


def tensor_description(value_info) -> dict[str, Any]:
    """{"name", "dtype" (numpy name, e.g. "float32"), "shape" (ints, and strings for symbolic dims)} of an ONNX
    graph input or output."""
    onnx = require("onnx", "Describing an ONNX graph")
    tensor_type = value_info.type.tensor_type
    shape = [dim.dim_param if dim.HasField("dim_param") else dim.dim_value for dim in tensor_type.shape.dim]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
    return {"name": value_info.name, "dtype": dtype, "shape": shape}


def graph_description(path: Path, spec: GraphSpec, exporter: str, fallback_reason: str | None) -> dict[str, Any]:
    """A written graph's entry: its file(s), exporter, opset, and inputs (with their source) and outputs as the ONNX
    file declares them."""
    onnx = require("onnx", "Describing an ONNX graph")
    model = onnx.load(str(path), load_external_data=False)
    opset = next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    inputs = [{**tensor_description(value), "source": spec.input_sources[value.name]} for value in model.graph.input]
    external = sorted(child.name for child in path.parent.iterdir() if child.name.startswith(f"{path.name}."))
    description = {
        "file": path.name,
        "external_data": external,  # weights stored beside the graph (> 2 GB); keep them in the same folder
        "exporter": exporter,
        "opset": opset,
        "inputs": inputs,
        "outputs": [tensor_description(value) for value in model.graph.output],
    }
    if fallback_reason:
        description["fallback_reason"] = fallback_reason
    return description


def canvas_preprocessing(processor: AutoSamImageProcessor, canvas: str) -> dict[str, Any]:
    """The settings one canvas is made with: the processor's own, and on SAM's canvas the frozen checkpoint's
    `sam_preprocessing` over them (MedSAM: no ImageNet normalisation, bicubic), as the processor applies them."""
    overrides = (processor.sam_preprocessing or {}) if canvas == "sam" else {}

    def setting(name: str) -> Any:
        return overrides.get(name, getattr(processor, name))

    normalize = setting("do_normalize")
    return {
        "resample": PILImageResampling(setting("resample")).name.lower(),
        "rescale_factor": setting("rescale_factor") if setting("do_rescale") else 1.0,
        "image_mean": list(setting("image_mean")) if normalize else None,
        "image_std": list(setting("image_std")) if normalize else None,
    }


def describe_preprocessing(processor: AutoSamImageProcessor) -> dict[str, Any]:
    """How the processor turns an RGB image into each canvas, from its settings: under "canvases", each canvas's
    input name, side, resampling, rescale factor, mean and std (None: not normalised) and its steps in words."""
    squash = processor.canvas_rule == SQUASH
    resize = (
        "resize to side x side (aspect ratio not kept)"
        if squash
        else "resize so that the longest edge equals the canvas side: new_height = int(height * side / max(height, "
        "width) + 0.5), likewise the width"
    )
    padding = (
        []
        if squash
        else ["pad with zeros at the bottom and right to side x side (after normalisation, so padding is 0.0)"]
    )
    canvases = {}
    for canvas, input_name in CANVAS_OUTPUTS.items():
        settings = canvas_preprocessing(processor, canvas)
        steps = [
            f"{resize}; {settings['resample']} resampling as PIL.Image.resize does it (antialiased when shrinking), "
            "on the uint8 image",
            f"multiply by rescale_factor ({settings['rescale_factor']})",
            "subtract image_mean and divide by image_std, per channel"
            if settings["image_mean"] is not None
            else "no normalisation",
            *padding,
        ]
        canvases[canvas] = {"input": input_name, "side": canvas_side(processor, canvas), **settings, "steps": steps}
    return {
        "canvases": canvases,
        "canvas_rule": processor.canvas_rule,
        "color": "RGB (grey repeated to 3 channels, alpha dropped)",
        "layout": "NCHW float32",
        "pad_value": None if squash else 0.0,
    }


def describe_postprocessing(processor: AutoSamImageProcessor, mask_threshold: float) -> dict[str, Any]:
    """How a graph's `logits` become a mask at the image's original size (`AutoSamImageProcessor.post_process_logits`
    followed by the threshold), for every mode: the logits canvas always covers SAM's canvas."""
    side = canvas_side(processor, "sam")
    if processor.canvas_rule == SQUASH:
        to_original = [
            "resize the logits bilinearly (align_corners=False, no antialiasing) to the original (height, width)"
        ]
    else:
        to_original = [
            f"resize the logits bilinearly (align_corners=False, no antialiasing) to {side} x {side}",
            f"crop the top-left (h, w): the image's size on the SAM canvas (preprocessing's resize rule, side {side})",
            "resize bilinearly (align_corners=False) to the original (height, width)",
        ]
    return {
        "logits": "output 'logits' (batch, K, L, L): mask logits on a canvas that covers the whole SAM canvas "
        f"(side {side}, padding included), whichever graph produced them",
        "steps": [
            *to_original,
            "label map: K = 1: foreground where logits > mask_threshold; K > 1: argmax over [mask_threshold, "
            "z_1, ..., z_K] (0 = background, k = id2label[k]; ties go to the lower label)",
        ],
        "canvas_rule": processor.canvas_rule,
        "sam_canvas_side": side,
        "mask_threshold": mask_threshold,
    }


def package_versions() -> dict[str, str | None]:
    """Versions of what made the export (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("onnx", "onnxscript", "onnxruntime", "transformers", "autosam-hf"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def build_manifest(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor,
    graphs: dict[str, dict[str, Any]],
    opset: int,
) -> dict[str, Any]:
    """The whole `autosam_onnx.json` of an export whose graph entries (`graph_description`) are `graphs`."""
    config = model.config
    modes = {mode: list(names) for mode, names in MODE_GRAPHS.items() if all(name in graphs for name in names)}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "graphs": {name: graphs[name] for name in GRAPH_NAMES if name in graphs},
        "modes": modes,
        "preprocessing": describe_preprocessing(processor),
        "postprocessing": describe_postprocessing(processor, config.mask_threshold),
        "model": {
            "model_type": config.model_type,
            "default_mode": config.default_mode,
            "mask_threshold": config.mask_threshold,
            "class_activation": config.class_activation,  # how K > 1 logit maps relate
            "id2label": {str(key): value for key, value in config.id2label.items()},
            "prompt_input_size": config.prompt_input_size,
            "sam_name_or_path": config.sam_name_or_path,
        },
        "opset": opset,
        "versions": package_versions(),
    }


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    """`folder/autosam_onnx.json`, written atomically."""
    path = folder / MANIFEST_NAME
    text = json.dumps(manifest, indent=2) + "\n"
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    return path


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an export folder, checked for its format and for every graph file it names.

    Raises:
        FileNotFoundError: `folder` does not exist.
        ValueError: no manifest (not an `autosam-export` folder), an unreadable or foreign manifest, or a missing
            graph file (each message names the file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"ONNX export folder not found: {folder}")
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ValueError(
            f"{folder} is not an ONNX export (no {MANIFEST_NAME}); make one with "
            "`autosam-export --model <trained folder> --output_dir <folder>`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"Cannot read {path}: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not an {FORMAT} manifest")
    if not isinstance(manifest.get("format_version"), int):
        raise ValueError(f"{path} has no format_version")
    if manifest["format_version"] > FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {manifest['format_version']}; this autosam_hf reads up to {FORMAT_VERSION}"
        )
    for name, graph in manifest["graphs"].items():
        for file in (graph["file"], *graph.get("external_data", [])):
            if not (folder / file).is_file():
                raise ValueError(f"{path} names {file} for graph {name!r}, but {folder / file} is missing")
    return manifest


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "build_manifest",
    "describe_postprocessing",
    "describe_preprocessing",
    "graph_description",
    "package_versions",
    "read_manifest",
    "tensor_description",
    "write_manifest",
]
