"""The optional packages of export and onnxruntime inference (`pip install 'autosam-hf[onnx]'`)."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
ONNX_EXTRA_HINT = f"pip install 'autosam-hf[onnx]' ({', '.join(ONNX_PACKAGES)})"


class MissingDependencyError(ImportError, ValueError):
    """An optional package is not installed. A ValueError too, so commands report it as bad input (one line naming
    the extra to install, exit status 2) rather than with a traceback."""


def require(module: str, purpose: str) -> ModuleType:
    """Import `module`, or raise `MissingDependencyError` saying what needs it (`purpose`) and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(f"{purpose} needs the package {module!r}: {ONNX_EXTRA_HINT}") from error


def missing_onnx_packages() -> list[str]:
    """The packages of the onnx extra that are not installed."""
    return [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]


__all__ = ["MissingDependencyError", "ONNX_EXTRA_HINT", "ONNX_PACKAGES", "missing_onnx_packages", "require"]
