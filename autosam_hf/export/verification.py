"""Does an exported graph compute what its module computes, at a batch size other than the example's?

A graph can carry the example batch as a constant deep inside (a traced `repeat(batch)`, a reshape) while its
inputs and outputs still declare a symbolic batch, so the only reliable check is to run it: onnxruntime against
PyTorch on fresh inputs of batch `VERIFY_BATCH`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .dependencies import require
from .graphs import EXAMPLE_BATCH, GraphSpec

VERIFY_BATCH = 1 if EXAMPLE_BATCH != 1 else 3  # cheapest batch that differs from the example's
# Largest |ONNX - PyTorch| accepted, relative to max(1, max |PyTorch|): float32 kernels differ by far less (~1e-6);
# a wrong graph differs by O(1).
RELATIVE_TOLERANCE = 1e-3


class GraphMismatchError(RuntimeError):
    """The exported graph fails, or disagrees with PyTorch, on a batch other than the example's."""


def verify_graph(spec: GraphSpec, path: Path, batch: int = VERIFY_BATCH) -> dict[str, float]:
    """Run the graph at `path` with onnxruntime (CPU) and `spec.module` with PyTorch on the same random inputs of
    batch `batch` (other sizes as the example's).

    Returns:
        {output name: max |ONNX - PyTorch|}.
    Raises:
        GraphMismatchError: onnxruntime fails, an output shape differs, or a difference exceeds the tolerance.
    """
    ort = require("onnxruntime", "Verifying an ONNX export")
    generator = torch.Generator().manual_seed(1)
    inputs = tuple(
        torch.randn(batch, *example.shape[1:], generator=generator).to(example.device)
        if example.is_floating_point()
        # Integer inputs (the prompt decoder's point labels) take values of the example's own.
        else example.flatten()[torch.randint(example.numel(), (batch, *example.shape[1:]), generator=generator)]
        for example in spec.example_inputs
    )
    with torch.no_grad():
        expected = spec.module(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {name: tensor.cpu().numpy() for name, tensor in zip(spec.input_names, inputs, strict=True)}
        actual = session.run(list(spec.output_names), feeds)
    except Exception as error:  # onnxruntime's errors derive from Exception only
        raise GraphMismatchError(f"onnxruntime fails on batch {batch}: {error}") from error
    differences = {}
    for name, reference, value in zip(spec.output_names, expected, actual, strict=True):
        reference = reference.float().cpu().numpy()
        if value.shape != reference.shape:
            raise GraphMismatchError(
                f"output {name} has shape {value.shape} at batch {batch}, PyTorch {reference.shape}"
            )
        difference = float(np.abs(value - reference).max()) if value.size else 0.0
        scale = max(1.0, float(np.abs(reference).max()) if reference.size else 0.0)
        if not difference <= RELATIVE_TOLERANCE * scale:  # also catches NaN
            raise GraphMismatchError(f"output {name} differs from PyTorch by {difference:.3g} at batch {batch}")
        differences[name] = difference
    return differences


__all__ = ["GraphMismatchError", "RELATIVE_TOLERANCE", "VERIFY_BATCH", "verify_graph"]
