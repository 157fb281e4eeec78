"""README.md's "Use a trained model" snippet runs as written, on a tiny saved model instead of runs/kvasir."""

import re

import numpy as np
import PIL.Image
import torch
from conftest import REPO_ROOT, make_tiny_model, make_tiny_processor


def readme_snippet(heading: str) -> str:
    """The first ```python block under `heading`."""
    section = (REPO_ROOT / "README.md").read_text().split(f"\n{heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_use_a_trained_model_snippet_runs(tmp_path, monkeypatch):
    model_dir = tmp_path / "runs" / "kvasir"
    make_tiny_model(class_activation="sigmoid").save_pretrained(model_dir)  # not post-processing's default
    make_tiny_processor().save_pretrained(model_dir)
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(
        tmp_path / "polyp.jpg"
    )
    monkeypatch.chdir(tmp_path)
    namespace = {}
    with torch.no_grad():
        exec(readme_snippet("## Use a trained model"), namespace)
    mask, prediction, model = namespace["mask"], namespace["prediction"], namespace["model"]
    assert mask.shape == (30, 40) and mask.dtype == bool  # at the image's original size
    assert np.array_equal(mask, prediction.label_map == 1)
    assert prediction.class_activation == model.config.class_activation
