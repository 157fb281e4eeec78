"""Which backend runs `autosam-predict`: PyTorch, onnxruntime on an `autosam-export` folder, or (`--backend auto`)
the faster of the two as measured on this machine.

`auto` looks for the export of `--model` in `--model/onnx/` (where `autosam-export --output_dir <model>/onnx` puts
it; `--model` itself when it is an export folder: onnxruntime, nothing to compare). Without one, or when the export
lacks the mode's graphs, or `--dtype` asks for a precision onnxruntime does not run (it runs the float32 graphs),
PyTorch runs. Otherwise each backend segments one image of SAM's canvas size twice, a warm-up (onnxruntime builds
its sessions, oneDNN its kernels) and a timed pass, and the faster runs the input; the choice and both times are
printed on one line. That costs four forward passes before the first input: worth it for a folder, not for one
image.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ..export.manifest import MANIFEST_NAME

BACKENDS = ("pytorch", "onnxruntime", "auto")
# Where `--backend auto` looks for the export of a trained folder.
ONNX_SUBFOLDER = "onnx"


def is_export_folder(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST_NAME).is_file()


def export_folder_of(model: str) -> Path | None:
    """The `autosam-export` folder that goes with `--model`: itself if it is one, else `<model>/onnx`, else None
    (a Hub id has none)."""
    for folder in (Path(model), Path(model) / ONNX_SUBFOLDER):
        if is_export_folder(folder):
            return folder
    return None


def timing_image(processor) -> np.ndarray:
    """A (S, S, 3) uint8 image at SAM's canvas side S (g's when the processor builds no SAM canvas): the size the
    encoders run at, whatever an input's size."""
    size = processor.size or {}
    side = size.get("longest_edge") or size.get("height") or processor.prompt_size or 1024
    return np.random.default_rng(0).integers(0, 256, size=(side, side, 3), dtype=np.uint8)


def time_backends(
    runs: Mapping[str, Callable[[], object]], clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Seconds of one call of each `run` after a first, untimed call (the warm-up)."""
    timings = {}
    for name, run in runs.items():
        run()
        started = clock()
        run()
        timings[name] = clock() - started
    return timings


def fastest(timings: Mapping[str, float]) -> str:
    """The backend with the shortest time (the first named on a tie)."""
    return min(timings, key=timings.__getitem__)


def describe_choice(chosen: str, timings: Mapping[str, float]) -> str:
    """One line: the backend chosen and every measured time, e.g. `--backend auto: onnxruntime (0.41 s/image;
    pytorch 0.85 s/image)`."""
    others = "; ".join(f"{name} {seconds:.3g} s/image" for name, seconds in timings.items() if name != chosen)
    return f"--backend auto: {chosen} ({timings[chosen]:.3g} s/image; {others}, measured on one image)"


__all__ = [
    "BACKENDS",
    "ONNX_SUBFOLDER",
    "describe_choice",
    "export_folder_of",
    "fastest",
    "is_export_folder",
    "time_backends",
    "timing_image",
]
