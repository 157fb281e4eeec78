"""The export tests' shared export: the tiny AutoSAM exported once (all three graphs) for every module here, and a
few real Kvasir-SEG test images.

The tests need onnx, onnxscript and onnxruntime (the `onnx` extra, in `dev` too); without them they are skipped,
saying so, unless AUTOSAM_REQUIRE_ONNX=1 (CI), which makes the absence a failure.
"""

import json
import os

import PIL.Image
import pytest
import torch
from conftest import make_tiny_model, make_tiny_processor
from filelock import FileLock

from autosam_hf.export.dependencies import missing_onnx_packages


def require_onnx_packages() -> None:
    """Skip (or, with AUTOSAM_REQUIRE_ONNX=1, fail) when a package of the onnx extra is missing."""
    missing = missing_onnx_packages()
    if missing:
        message = f"{', '.join(missing)} not installed: pip install 'autosam-hf[onnx]' to run the ONNX export tests"
        if os.environ.get("AUTOSAM_REQUIRE_ONNX") == "1":
            pytest.fail(message + " (AUTOSAM_REQUIRE_ONNX=1 requires them)")
        pytest.skip(message)


@pytest.fixture(autouse=True)
def _onnx_packages():
    require_onnx_packages()


@pytest.fixture(scope="package")
def exported(tmp_path_factory):
    """(tiny model in eval mode, its processor, export folder, manifest): every graph, default settings.

    Exported once per test session, not once per pytest-xdist worker (it takes the better part of a minute): the
    workers share the session's base folder, and the first to take the lock exports; the others read its folder.
    The model is seeded, so each worker's copy is the exported one. Tests only read the folder.
    """
    require_onnx_packages()
    from autosam_hf.export import MANIFEST_NAME, export_onnx

    model = make_tiny_model().eval()
    processor = make_tiny_processor()
    # Under xdist each worker's base folder lies in the session's; without xdist the base folder is the session's.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    shared = tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.getbasetemp()
    folder = shared / "onnx_export"
    with FileLock(shared / "onnx_export.lock"):
        if not (folder / MANIFEST_NAME).exists():  # written last, then the folder renamed: complete if present
            export_onnx(model, processor, folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    return model, processor, folder, manifest


@pytest.fixture(scope="package")
def model_dir(exported, tmp_path_factory):
    """The exported tiny model and processor saved as a trained folder (what `autosam-export --model` reads)."""
    model, processor, _, _ = exported
    folder = tmp_path_factory.mktemp("trained")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="package")
def kvasir_images(shared_data_dir) -> list[PIL.Image.Image]:
    """Three real Kvasir-SEG images: two test images (352×352) and a full-resolution original (not square, so the
    canvases are padded)."""
    kvasir = shared_data_dir / "kvasir"
    paths = sorted((kvasir / "test" / "images").iterdir())[:2]
    paths += sorted((kvasir / "original_resolution_samples" / "images").iterdir())[:1]
    return [PIL.Image.open(path).convert("RGB") for path in paths]


def max_difference(actual, expected) -> float:
    """max |actual − expected| of two arrays or tensors."""
    return float((torch.as_tensor(actual).float() - torch.as_tensor(expected).float()).abs().max())
