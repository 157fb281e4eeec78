"""Writing one graph: torch.onnx's dynamo exporter (torch.export) with a dynamic batch, the TorchScript exporter as
the fallback, and the checks every written graph must pass (`export_graph`).

The checks: ONNX's checker, a symbolic batch on every input and output, and onnxruntime agreeing with PyTorch at a
batch other than the example's (`verification.verify_graph`). Where an exporter fails any of them, "auto" tries the
next one and records why.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ..cli import one_line
from .dependencies import require
from .graphs import GraphSpec
from .manifest import graph_description
from .verification import VERIFY_BATCH, GraphMismatchError, verify_graph

logger = logging.getLogger(__name__)

EXPORTERS = ("auto", "dynamo", "torchscript")
MAX_REASON_CHARACTERS = 500


class ExportError(RuntimeError):
    """No exporter could export a graph that passes the checks (the model, not the arguments, is at fault)."""


def _fixed_batch_tensors(path: Path) -> list[str]:
    """The inputs and outputs of the written graph whose first dimension is not symbolic."""
    onnx = require("onnx", "ONNX export")
    graph = onnx.load(str(path), load_external_data=False).graph
    return [
        value.name
        for value in (*graph.input, *graph.output)
        if not value.type.tensor_type.shape.dim or not value.type.tensor_type.shape.dim[0].HasField("dim_param")
    ]


def _batch_dynamic_shapes(spec: GraphSpec, batch: torch.export.Dim) -> tuple:
    """torch.export's `dynamic_shapes` declaring dim 0 of every input dynamic (and `spec.dynamic_axes`), shaped like
    the forward's signature (a `*args` parameter takes a nested tuple: the prompt decoder's image features)."""
    axes = {name: torch.export.Dim(name, min=1) for dims in spec.dynamic_axes.values() for name in dims.values()}
    shapes: list = []
    remaining = len(spec.example_inputs)
    for parameter in inspect.signature(spec.module.forward).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            shapes.append(tuple({0: batch} for _ in range(remaining)))
            break
        other = spec.dynamic_axes.get(parameter.name, {})
        shapes.append({0: batch, **{axis: axes[name] for axis, name in other.items()}})
        remaining -= 1
    return tuple(shapes)


def _export_dynamo(spec: GraphSpec, path: Path, opset: int) -> None:
    """`spec` to `path` through torch.export (`dynamo=True`), dim 0 of every input declared dynamic."""
    require("onnxscript", "The dynamo ONNX exporter")
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        spec.module,
        spec.example_inputs,
        dynamo=True,
        opset_version=opset,
        input_names=list(spec.input_names),
        output_names=list(spec.output_names),
        dynamic_shapes=_batch_dynamic_shapes(spec, batch),
        verbose=False,
    )
    program.save(str(path))  # weights inside the file, or beside it (<file>.data) above protobuf's 2 GB limit


def _export_torchscript(spec: GraphSpec, path: Path, opset: int) -> None:
    """`spec` to `path` through the TorchScript tracer, dim 0 of every input and output named "batch"."""
    with warnings.catch_warnings():
        # Deprecated in favour of dynamo, which is tried first; here it is the documented fallback.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            spec.module,
            spec.example_inputs,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(spec.input_names),
            output_names=list(spec.output_names),
            dynamic_axes={
                name: {0: "batch", **spec.dynamic_axes.get(name, {})}
                for name in (*spec.input_names, *spec.output_names)
            },
        )


# Exporter name → function writing one graph; looked up at call time (tests replace an entry to force a fallback).
EXPORT_FUNCTIONS = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}


def summarize_export_error(error: BaseException) -> str:
    """The informative part of an exporter's error on one line: torch.onnx wraps torch.export's own message in
    generic advice, colour codes included."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    text = text.split("## Exception summary", 1)[-1]
    return one_line(text)[:MAX_REASON_CHARACTERS]


def export_graph(spec: GraphSpec, path: Path, opset: int, exporter: str = "auto") -> dict[str, Any]:
    """Write `spec` to `path` and check it: the ONNX checker, a symbolic batch on every input and output, and
    onnxruntime agreeing with PyTorch at another batch size (`verify_graph`).

    `exporter`: "dynamo", "torchscript", or "auto" (dynamo, then TorchScript if dynamo fails any of this).
    Returns the graph's manifest entry (`graph_description`, with the verification's differences).
    """
    onnx = require("onnx", "ONNX export")
    attempts = ("dynamo", "torchscript") if exporter == "auto" else (exporter,)
    fallback_reason = None
    for attempt in attempts:
        started = time.perf_counter()
        try:
            EXPORT_FUNCTIONS[attempt](spec, path, opset)
            onnx.checker.check_model(str(path))
            fixed = _fixed_batch_tensors(path)
            if fixed:
                raise GraphMismatchError(f"fixed batch size on {', '.join(fixed)}")
            differences = verify_graph(spec, path)
        except Exception as error:  # torch.export and the exporters raise many types; the reason is recorded
            for stale in path.parent.glob(f"{path.name}*"):
                stale.unlink()
            reason = f"{attempt}: {summarize_export_error(error)}"
            if attempt == attempts[-1]:
                raise ExportError(f"Exporting graph {spec.name!r} failed ({reason})") from error
            logger.warning("Graph %s: %s; trying the next exporter.", spec.name, reason)
            fallback_reason = reason
            continue
        seconds = time.perf_counter() - started
        logger.info("Exported %s with the %s exporter in %.1f s", path.name, attempt, seconds)
        description = graph_description(path, spec, attempt, fallback_reason)
        description["verification"] = {"batch": VERIFY_BATCH, "max_abs_diff": differences}
        description["export_seconds"] = round(seconds, 2)  # export and checks, the successful exporter only
        return description
    raise AssertionError("unreachable: the last attempt returns or raises")


__all__ = [
    "EXPORTERS",
    "EXPORT_FUNCTIONS",
    "ExportError",
    "export_graph",
    "summarize_export_error",
]
