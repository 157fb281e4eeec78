"""The demo in a real browser: headless Chromium, driven by Selenium, on the page `autosam-demo` serves (built and
loaded as the command does, here in this process on a free port). One upload of a Kvasir-SEG image, the automatic
overlay, one click on it: the mask changes, and the PNG the page downloads is the one `autosam-predict` writes
with the same click.

AUTOSAM_DEMO_SCREENSHOT=docs/images/demo.png also saves the page after the click (the picture in docs/demo.md).
"""

import io
import os
import re
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from conftest import free_port

from autosam_hf.demo.app import ELEMENT_IDS, build_app
from autosam_hf.demo.cli import LOCALHOST, build_parser, load_demo

from .conftest import chromium_binary, predicted_mask, require_browser

TIMEOUT_S = 60


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium (a 1280×900 window) whose downloads go to `tmp_path / "downloads"`."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium_binary()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,900")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    driver = webdriver.Chrome(service=Service(), options=options)
    driver.downloads = downloads
    yield driver
    driver.quit()


@pytest.fixture
def served(model_dir, tmp_path):
    """The URL of the demo page of the tiny model, served on 127.0.0.1 by Gradio in this process."""
    require_browser()
    args = build_parser().parse_args(["--model", str(model_dir), "--device", "cpu", "--dtype", "float32"])
    app = build_app(load_demo(args, root=tmp_path / "sessions"))
    port = free_port()
    app.launch(server_name=LOCALHOST, server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://{LOCALHOST}:{port}/"
    app.close()


def downloaded(browser, before: set[Path]) -> Path:
    """The file Chromium downloads next, once complete: Chromium writes a hidden `.org.chromium.*` file first, then
    `<name>.crdownload`, then renames it to `<name>`."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        new = set(browser.downloads.iterdir()) - before
        in_progress = any(path.name.startswith(".") or path.suffix == ".crdownload" for path in new)
        if new and not in_progress:
            (path,) = new
            return path
        time.sleep(0.1)
    raise AssertionError("no download")


def test_upload_click_and_download_in_chromium(browser, served, model_dir, kvasir_image, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, TIMEOUT_S)

    def element(name: str, inside: str = ""):
        return wait.until(lambda driver: driver.find_element(By.CSS_SELECTOR, f"#{ELEMENT_IDS[name]} {inside}"))

    def status() -> str:
        return browser.find_element(By.ID, ELEMENT_IDS["status"]).text

    browser.get(served)
    element("image", "input[type=file]").send_keys(str(kvasir_image))
    wait.until(lambda _: "the automatic mask" in status())
    overlay = element("overlay", "img")
    automatic_source = overlay.get_attribute("src")
    element("download").click()
    automatic = np.asarray(PIL.Image.open(downloaded(browser, set())))

    ActionChains(browser).move_to_element(overlay).click().perform()  # the picture's centre
    wait.until(lambda _: "clicks +" in status())
    wait.until(lambda driver: element("overlay", "img").get_attribute("src") != automatic_source)
    x, y = re.search(r"clicks \+(\d+),(\d+)", status()).groups()
    assert abs(int(x) - 176) <= 2 and abs(int(y) - 176) <= 2  # the centre of the 352×352 image
    if screenshot := os.environ.get("AUTOSAM_DEMO_SCREENSHOT"):  # 256 colours keep the PNG small (< 200 KB)
        picture = PIL.Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
        picture.quantize(colors=256, method=PIL.Image.Quantize.FASTOCTREE).save(screenshot, optimize=True)
    before = set(browser.downloads.iterdir())  # taken before the click: a fast download may land before the call
    element("download").click()
    clicked_file = downloaded(browser, before)
    clicked = np.asarray(PIL.Image.open(clicked_file))

    assert (clicked != automatic).any()
    expected = predicted_mask(
        model_dir, kvasir_image, tmp_path / "predict", "--points", f"{x},{y}", "--point_labels", "1"
    )
    np.testing.assert_array_equal(clicked, expected)
    assert clicked_file.read_bytes() == (tmp_path / "predict" / "masks" / f"{kvasir_image.stem}.png").read_bytes()
