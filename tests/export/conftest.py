"""The export tests' shared export: the tiny AutoSAM exported once (all three graphs) for every module here, and a
few real Kvasir-SEG test images.

The tests need onnx, onnxscript and onnxruntime (the `onnx` extra, in `dev` too); without them they are skipped,
saying so, unless AUTOSAM_REQUIRE_ONNX=1 (CI), which makes the absence a failure.
"""

import os

import PIL.Image
import pytest
import torch
from conftest import make_tiny_model, make_tiny_processor

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
    """(tiny model in eval mode, its processor, export folder, manifest): every graph, default settings."""
    require_onnx_packages()
    from autosam_hf.export import export_onnx

    model = make_tiny_model().eval()
    processor = make_tiny_processor()
    folder = tmp_path_factory.mktemp("onnx") / "export"
    manifest = export_onnx(model, processor, folder)
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
