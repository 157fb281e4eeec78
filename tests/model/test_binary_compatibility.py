"""Binary checkpoints saved before multi-class support load unchanged and give the outputs they gave then.

`fixtures/binary_reference/` was written by the code of commit c73fa42 (`fixtures/make_binary_reference.py`): the
config and processor files as it saved them, the SHA-256 of the tiny model's state dict (names, dtypes, shapes,
bytes), two images with masks, and every output that code computed from them. Outputs are compared at 1 thread
(the fixture's setting; other thread counts change float rounding): equal to 1e-6, which on the machine that made
the fixture is bit for bit.
"""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_model
from safetensors.torch import load_file

from autosam_hf import AUTOSAM_MODES, AutoSamConfig, AutoSamForSegmentation, AutoSamImageProcessor
from autosam_hf.postprocessing import post_process_predictions

FIXTURE = Path(__file__).parent / "fixtures" / "binary_reference"


def state_dict_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """The digest the fixture recorded, computed by the fixture script's own function."""
    spec = importlib.util.spec_from_file_location("make_binary_reference", FIXTURE.parent / "make_binary_reference.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.state_dict_digest(state_dict)


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "reference.safetensors")


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def old_folder(tmp_path_factory) -> Path:
    """A folder as the old code saved it: its config.json and preprocessor_config.json, and weights whose state
    dict is byte for byte the old one (checked against the recorded digest)."""
    folder = tmp_path_factory.mktemp("binary_reference")
    model = make_tiny_model(seed=0)
    recorded = json.loads((FIXTURE / "state_dict.json").read_text())["state_dict_sha256"]
    assert state_dict_digest(model.state_dict()) == recorded, "the binary model's weights changed name/shape/bytes"
    model.save_pretrained(folder)
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(FIXTURE / name, folder / name)
    return folder


def test_old_config_and_processor_files_load_as_the_binary_model(old_folder):
    config = AutoSamConfig.from_pretrained(old_folder)
    assert "class_activation" not in json.loads((FIXTURE / "config.json").read_text())
    assert config.num_labels == 2 and config.num_classes == 1 and config.id2label == {0: "background", 1: "foreground"}
    assert config.class_activation == "softmax"
    processor = AutoSamImageProcessor.from_pretrained(old_folder)
    assert processor.num_labels == 2
    model, info = AutoSamForSegmentation.from_pretrained(old_folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.prompt_generator.head.out_channels == 32  # K·C with K = 1: the single-prompt head


def test_old_checkpoint_gives_the_outputs_it_gave_before(old_folder, reference, one_thread):
    model = AutoSamForSegmentation.from_pretrained(old_folder).eval()
    processor = AutoSamImageProcessor.from_pretrained(old_folder)
    images = [reference[f"image_{i}"].numpy() for i in range(2)]
    masks = [reference[f"mask_{i}"].numpy() for i in range(2)]
    inputs = processor(images, segmentation_maps=masks)
    sizes = inputs["original_sizes"]
    with torch.no_grad():
        for mode in AUTOSAM_MODES:
            outputs = model(**inputs, mode=mode)
            for name in ("logits", "loss", "iou_scores"):
                if f"{mode}.{name}" in reference:
                    expected = reference[f"{mode}.{name}"]
                    assert getattr(outputs, name).shape == expected.shape, (mode, name)
                    torch.testing.assert_close(getattr(outputs, name), expected, rtol=0, atol=1e-6)
            torch.testing.assert_close(outputs.prompt_embeddings, reference["prompt_embeddings"], rtol=0, atol=1e-6)
            predictions = post_process_predictions(processor, outputs.logits, sizes, model.config.mask_threshold)
            semantic = processor.post_process_semantic_segmentation(outputs, sizes.tolist())
            for i, prediction in enumerate(predictions):
                np.testing.assert_array_equal(prediction.mask, reference[f"{mode}.mask_{i}"].numpy().astype(bool))
                np.testing.assert_allclose(
                    prediction.probabilities, reference[f"{mode}.probabilities_{i}"].numpy(), rtol=0, atol=1e-6
                )
                assert torch.equal(semantic[i], reference[f"{mode}.semantic_{i}"])
