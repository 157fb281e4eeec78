"""A 'trained' tiny AutoSAM folder as the training script leaves it, and an offline Hub cache: what the hub tests
publish, load and render cards from."""

import hashlib
import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from conftest import make_tiny_sam_config
from transformers import SamModel

from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor

BASE_SAM_ID = "facebook/sam-vit-base"
FULL_REPO_ID = "test-org/autosam-kvasir"
ADAPTER_REPO_ID = "test-org/autosam-kvasir-adapter"
MEASURED = {
    "test": {"kvasir": {"dice": 0.9012, "iou": 0.8345, "mae": 0.0213}, "etis": {"dice": 0.512}},
    "validation": {"kvasir": {"dice": 0.9321, "iou": 0.8765}},
    "training": {"learning_rate": 0.0003, "num_epochs": 200},
}


def save_base_sam(folder: Path) -> None:
    """A random tiny SAM whose mask logits are scaled up (far from the threshold, so comparisons are decisive)."""
    torch.manual_seed(0)
    sam = SamModel(make_tiny_sam_config())
    with torch.no_grad():
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(1e3)
            mlp.proj_out.bias.mul_(1e3)
    sam.save_pretrained(folder)


def build_trained_folder(folder: Path, base_sam_dir: Path, image: np.ndarray) -> AutoSamForSegmentation:
    """A 'trained' tiny AutoSAM (SAM from `base_sam_dir`, recorded as `facebook/sam-vit-base`) saved with a processor
    and measured metrics.

    Its `config.mask_threshold` is the median of its logits on `image` (at the original size): not the default 0.0,
    and a threshold that decides which half of `image` is foreground, so that a consumer binarising at another
    threshold shows. The processor is saved with the default threshold, as a processor built apart from the model.
    """
    model = AutoSamForSegmentation.from_sam(base_sam_dir, prompt_input_size=32, sam_name_or_path=BASE_SAM_ID)
    with torch.no_grad():
        model.surrogate_decoder.layers[-1].weight.mul_(1e2)  # decisive surrogate masks too
    model.eval()
    processor = AutoSamImageProcessor.from_sam_config(model.config.sam_config)
    inputs = processor(image)
    with torch.no_grad():
        logits = processor.post_process_logits(model(**inputs).logits, inputs["original_sizes"])[0]
    model.config.mask_threshold = float(logits.median())
    assert model.config.mask_threshold != 0.0
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "all_results.json").write_text(json.dumps(MEASURED))
    return model


def add_to_hub_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """Lay `folder` out as the Hub cache's `main` revision of `repo_id` (what `hf_hub_download` leaves)."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    return snapshot


def reference_logits(model: AutoSamForSegmentation, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {mode: model(pixel_values=pixel_values, mode=mode).logits for mode in ("autosam", "surrogate")}


def assert_same_outputs(model, pixel_values, expected):
    for mode, logits in reference_logits(model, pixel_values).items():
        torch.testing.assert_close(logits, expected[mode], rtol=0, atol=1e-5, msg=f"mode {mode}")


class RecordingHfApi:
    """`HfApi` as `autosam_hf.hub.publish` uses it, recording its calls (the Hub cannot be reached here)."""

    calls: list = []
    error: Exception | None = None

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        if self.error is not None:
            raise self.error
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        files = sorted(path.name for path in Path(kwargs["folder_path"]).iterdir())
        self.calls.append(("upload_folder", kwargs, files))


def record_hub_calls(monkeypatch) -> type[RecordingHfApi]:
    """Publishing talks to `RecordingHfApi` (calls cleared) for the rest of the test."""
    RecordingHfApi.calls, RecordingHfApi.error = [], None
    # The module: the package exports the function of the same name.
    monkeypatch.setattr(importlib.import_module("autosam_hf.hub.publish"), "HfApi", RecordingHfApi)
    return RecordingHfApi
