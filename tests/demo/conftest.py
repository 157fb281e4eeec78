"""The demo tests' shared pieces: the tiny AutoSAM saved as a trained folder (what `autosam-demo --model` reads), a
real Kvasir-SEG test image, and the browser the browser test drives.

The browser test needs Chromium, its chromedriver (Debian: `apt-get install chromium chromium-driver`), selenium
and gradio (both in the `dev` extra); without them it is skipped, saying which is missing, unless
AUTOSAM_REQUIRE_BROWSER=1 (CI), which makes the absence a failure.
"""

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from conftest import make_tiny_model, make_tiny_processor, skip_unless_required

from autosam_hf.inference.cli import main as predict_main

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_binary() -> str | None:
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def missing_browser_parts() -> list[str]:
    """What the browser test needs and this machine lacks."""
    missing = [name for name in ("gradio", "selenium") if importlib.util.find_spec(name) is None]
    if chromium_binary() is None:
        missing.append("chromium")
    if shutil.which("chromedriver") is None:
        missing.append("chromedriver")
    return missing


def require_browser() -> None:
    """Skip (or, with AUTOSAM_REQUIRE_BROWSER=1, fail) without Chromium, chromedriver, selenium or gradio."""
    missing = missing_browser_parts()
    if missing:
        message = (
            f"{', '.join(missing)} not found: the browser test needs headless Chromium and its driver "
            "(apt-get install chromium chromium-driver) and pip install -e '.[dev]' (selenium, gradio)"
        )
        skip_unless_required(message, "AUTOSAM_REQUIRE_BROWSER")


@pytest.fixture(scope="package")
def model_dir(tmp_path_factory) -> Path:
    """The tiny seeded AutoSAM (with h) and its processor, saved."""
    folder = tmp_path_factory.mktemp("demo_model")
    make_tiny_model().save_pretrained(folder)
    make_tiny_processor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="package")
def kvasir_image(shared_data_dir) -> Path:
    """The first Kvasir-SEG test image (352×352 JPEG)."""
    return sorted((shared_data_dir / "kvasir" / "test" / "images").iterdir())[0]


def predicted_mask(model_dir, image, output_dir, *flags) -> np.ndarray:
    """The mask `autosam-predict` writes for `image` (float32 on the CPU, as the demo tests run the demo)."""
    argv = [str(image), "--model", str(model_dir), "--output_dir", str(output_dir), "--device", "cpu"]
    assert predict_main([*argv, "--dtype", "float32", "--no_overlays", "--quiet", *flags]) == 0
    return np.asarray(PIL.Image.open(output_dir / "masks" / f"{image.stem}.png"))
