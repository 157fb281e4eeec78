"""`export_onnx`: an AutoSAM as ONNX graphs with a dynamic batch, its processor and `autosam_onnx.json`.

    output_dir/
        image_encoder.onnx     pixel_values → image_embeddings (every named tensor of model.image_features)
        prompt_decoder.onnx    prompt_pixel_values + input_points, input_labels (clicks; one not-a-point per class
                               without) + image_embeddings → logits, iou_scores (g + SAM's mask decoder)
        surrogate.onnx         prompt_pixel_values → logits (h(g(I)); only for a model with h)
        preprocessor_config.json, config.json (the processor and config, for Python clients), autosam_onnx.json

This module checks the arguments and writes the folder; each graph is written and checked by
`exporters.export_graph`: `torch.onnx.export`'s dynamo exporter (torch.export), with an example batch of 2 and the
batch declared dynamic, then ONNX's checker, a symbolic batch on every input and output, and onnxruntime agreeing
with PyTorch at a batch of 1 (`verification.verify_graph`). Where the export or a check fails, the graph is exported
again with the TorchScript exporter (`dynamic_axes`); the manifest records which exporter made each graph, why it
fell back, and the differences the check measured.
The folder is written to a temporary sibling and renamed into place when complete (`write_folder_atomically`).
"""

from __future__ import annotations

import copy
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..atomic_write import write_folder_atomically
from ..model import AutoSamForSegmentation, AutoSamImageProcessor
from .dependencies import require
from .exporters import EXPORTERS, ExportError, export_graph
from .graphs import build_graph, check_graph_names, default_graph_names
from .manifest import MANIFEST_NAME, build_manifest, write_manifest

logger = logging.getLogger(__name__)

# torch 2.13's default opset for both of its exporters; onnxruntime >= 1.17 runs it.
DEFAULT_OPSET = 20
# 18: the dynamo exporter's own opset (older ones go through ONNX's version converter); 20: the newest the
# TorchScript fallback writes.
MIN_OPSET, MAX_OPSET = 18, 20


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool) -> Path:
    """`output_dir` as a Path; an existing non-empty folder is replaced only with `overwrite`."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output_dir {output_dir} exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise ValueError(f"--output_dir {output_dir} exists and is not empty (pass --overwrite to replace it)")
    return output_dir


def check_opset(opset: int | None) -> int:
    """`opset`, or `DEFAULT_OPSET` for None; raises ValueError outside `MIN_OPSET`..`MAX_OPSET`."""
    opset = DEFAULT_OPSET if opset is None else opset
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")
    return opset


def require_export_dependencies(exporter: str = "auto") -> None:
    """Fail early, naming the extra to install, when a package the export needs is missing: onnx, onnxruntime (the
    verification) and, for the dynamo exporter, onnxscript."""
    require("onnx", "ONNX export")
    require("onnxruntime", "Verifying an ONNX export")
    if exporter != "torchscript":
        require("onnxscript", "The dynamo ONNX exporter")


def export_processor(model: AutoSamForSegmentation, processor: AutoSamImageProcessor) -> AutoSamImageProcessor:
    """A copy of `processor` that builds both canvases and thresholds at the model's `mask_threshold`.

    The graphs read g's own canvas (`prompt_pixel_values`); a processor saved without one (g then resized SAM's
    canvas itself) gets a prompt canvas at g's input size, which is close to but not exactly what g saw in PyTorch.
    """
    processor = copy.deepcopy(processor)
    if not processor.prompt_size:
        logger.warning(
            "The processor has no prompt canvas; the export adds one at g's input size (%d). Predictions may differ "
            "slightly from PyTorch with the original processor, where g resized SAM's canvas itself.",
            model.config.prompt_input_size,
        )
        processor.prompt_size = model.config.prompt_input_size
    processor.canvases = None  # both canvases by default
    processor.mask_threshold = model.config.mask_threshold
    return processor


@contextmanager
def _eval_mode(model: AutoSamForSegmentation):
    """The model in eval mode (BatchNorm statistics, no dropout) for the export, its own mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def export_onnx(
    model: AutoSamForSegmentation,
    processor: AutoSamImageProcessor | None = None,
    output_dir: str | os.PathLike = "onnx",
    opset: int | None = None,
    graphs: list[str] | tuple[str, ...] | None = None,
    exporter: str = "auto",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export `model` to ONNX in `output_dir`: the graphs, `preprocessor_config.json` and `autosam_onnx.json`.

    Args:
        model: a float32 AutoSAM (any device; exported in eval mode, its own mode restored after).
        processor: its image processor (default `AutoSamImageProcessor.from_model_config(model.config)`).
        output_dir: the folder to write; written whole (temporary folder, then renamed).
        opset: ONNX opset, `MIN_OPSET`..`MAX_OPSET` (default `DEFAULT_OPSET`).
        graphs: any of "encoder", "prompt_decoder", "surrogate" (default: all the model has).
        exporter: "auto" (dynamo, falling back to TorchScript per graph), "dynamo" or "torchscript".
        overwrite: replace an existing non-empty `output_dir`.

    Returns:
        The manifest written to `output_dir/autosam_onnx.json`.

    Raises:
        ValueError: bad arguments (each names it), a non-float32 model, or a missing optional package
            (`MissingDependencyError`, `pip install 'autosam-hf[onnx]'`).
        ExportError: a graph that no exporter could export and check.
    """
    opset = check_opset(opset)
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    graph_names = check_graph_names(tuple(graphs) if graphs else default_graph_names(model), model)
    dtypes = {parameter.dtype for parameter in model.parameters()}
    if dtypes != {torch.float32}:
        raise ValueError(f"export_onnx exports float32 models; this one has {sorted(map(str, dtypes))} parameters")
    output_dir = check_output_dir(output_dir, overwrite)
    require_export_dependencies(exporter)
    processor = export_processor(model, processor or AutoSamImageProcessor.from_model_config(model.config))
    manifest: dict[str, Any] = {}

    def write(staging: Path) -> None:
        descriptions = {}
        for name in graph_names:
            spec = build_graph(name, model, processor)
            spec.module.eval()  # the wrapper itself; the model is in eval mode already
            descriptions[name] = export_graph(spec, staging / spec.file, opset, exporter)
        processor.save_pretrained(staging)
        model.config.save_pretrained(staging)  # for Python clients (OnnxRuntimeAutoSam); the manifest has the rest
        manifest.update(build_manifest(model, processor, descriptions, opset))
        write_manifest(staging, manifest)

    with _eval_mode(model), torch.no_grad():
        write_folder_atomically(output_dir, write)
    logger.info("Wrote %s and %d graph(s) to %s", MANIFEST_NAME, len(graph_names), output_dir)
    return manifest


__all__ = [
    "DEFAULT_OPSET",
    "EXPORTERS",
    "ExportError",
    "MAX_OPSET",
    "MIN_OPSET",
    "check_opset",
    "check_output_dir",
    "export_onnx",
    "export_processor",
    "require_export_dependencies",
]
