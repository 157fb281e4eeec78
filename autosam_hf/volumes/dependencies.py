"""The optional packages of medical volumes (`pip install 'autosam-hf[volumes]'`), imported only when used."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..export.dependencies import MissingDependencyError

VOLUMES_EXTRA_HINT = "pip install 'autosam-hf[volumes]' (nibabel, SimpleITK, monai)"


def require(module: str, purpose: str) -> ModuleType:
    """Import `module`, or raise `MissingDependencyError` saying what needs it (`purpose`) and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(f"{purpose} needs the package {module!r}: {VOLUMES_EXTRA_HINT}") from error


__all__ = ["VOLUMES_EXTRA_HINT", "MissingDependencyError", "require"]
