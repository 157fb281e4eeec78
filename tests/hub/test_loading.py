"""autosam_hf.hub.loading and loading published folders back: in this process, in a fresh process with remote code,
by repo id from an offline Hub cache, and through the image-segmentation pipeline (the model's threshold, no
warning)."""

import json
import logging
import os
import sys
import textwrap

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_tiny_model, make_tiny_processor, run_command
from transformers import pipeline
from transformers.models.auto.modeling_auto import MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES

from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor
from autosam_hf.hub import load_model_and_processor
from hub.workspace import assert_same_outputs

UNSUPPORTED_MODEL_ERROR = "is not supported for image-segmentation"


# ------------------------------------------------------------------------------------------- this process
def test_full_folder_loads_with_from_pretrained(workspace):
    model = AutoSamForSegmentation.from_pretrained(workspace["full"])
    assert not any(parameter.requires_grad for parameter in model.sam.parameters())
    assert_same_outputs(model, workspace["pixel_values"], workspace["expected"])


def test_adapter_checkpoint_rebuilds_the_model_from_the_cached_base_sam(workspace):
    model = AutoSamForSegmentation.from_pretrained(
        workspace["adapter"], cache_dir=workspace["cache"], local_files_only=True
    )
    assert model.config.adapter_only is False  # a whole model again: save_pretrained writes a full checkpoint
    assert_same_outputs(model, workspace["pixel_values"], workspace["expected"])


def test_adapter_checkpoint_without_its_base_sam_names_it(workspace, tmp_path):
    with pytest.raises(ValueError, match="facebook/sam-vit-base"):
        AutoSamForSegmentation.from_pretrained(workspace["adapter"], cache_dir=tmp_path, local_files_only=True)


def test_processor_takes_the_models_mask_threshold(workspace, tmp_path):
    # The trained folder's processor was saved with the default threshold 0.0; the model's is another.
    assert AutoSamImageProcessor.from_pretrained(workspace["trained"]).mask_threshold == 0.0
    model, processor = load_model_and_processor(workspace["trained"])
    threshold = workspace["model"].config.mask_threshold
    assert model.config.mask_threshold == processor.mask_threshold == threshold != 0.0
    # A checkpoint saved without its processor gets the one its config describes, with the model's threshold too:
    # the frozen model's canvas, g's input size and the checkpoint's own SAM preprocessing (MedSAM's, say).
    model.config.sam_preprocessing = {"do_normalize": False}
    model.save_pretrained(tmp_path)
    _, rebuilt = load_model_and_processor(tmp_path)
    assert rebuilt.mask_threshold == threshold and rebuilt.size == processor.size
    assert rebuilt.prompt_size == model.config.prompt_input_size
    assert rebuilt.sam_preprocessing == {"do_normalize": False}
    with pytest.raises(ValueError, match="nowhere"):
        load_model_and_processor(tmp_path / "nowhere")


@pytest.fixture
def transformers_log(caplog):
    """caplog that also sees transformers' records (its library logger does not propagate)."""
    library_logger = logging.getLogger("transformers")
    library_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING):
            yield caplog
    finally:
        library_logger.removeHandler(caplog.handler)


def test_pipeline_uses_the_models_threshold_and_logs_no_warning(tmp_path, transformers_log, monkeypatch):
    model, processor = make_tiny_model().eval(), make_tiny_processor()
    image = np.random.default_rng(3).integers(0, 256, (30, 44, 3), dtype=np.uint8)
    inputs = processor(image)
    with torch.no_grad():
        logits = processor.post_process_logits(model(**inputs).logits, inputs["original_sizes"])[0]
    # A threshold that splits this image's logits, so that a pipeline binarising at 0 would differ.
    threshold = float(logits.quantile(0.7))
    expected = (logits > threshold).numpy()
    assert expected.any() and not np.array_equal(expected, (logits > 0).numpy())
    model.config.mask_threshold = threshold
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)  # default threshold 0.0: loading together fixes it
    model, processor = load_model_and_processor(tmp_path)

    segmenter = pipeline("image-segmentation", model=model, image_processor=processor)
    assert UNSUPPORTED_MODEL_ERROR not in transformers_log.text
    segments = {segment["label"]: np.asarray(segment["mask"]) > 0 for segment in segmenter(PIL.Image.fromarray(image))}
    np.testing.assert_array_equal(segments["foreground"], expected)

    # The check above can fail: without the registration, transformers logs its error.
    monkeypatch.delitem(MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES, "autosam")
    pipeline("image-segmentation", model=model, image_processor=processor)
    assert UNSUPPORTED_MODEL_ERROR in transformers_log.text


# ------------------------------------------------------------------------------------------- fresh process
FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from transformers import AutoImageProcessor, AutoModel, AutoModelForSemanticSegmentation, pipeline

    full, image_path, reference_path, out_path = sys.argv[1:5]
    reference = torch.load(reference_path)
    results = {}

    def max_difference(model):
        with torch.no_grad():
            return max(
                (model(pixel_values=reference["pixel_values"], mode=mode).logits - reference[mode]).abs().max().item()
                for mode in ("autosam", "surrogate")
            )

    model = AutoModelForSemanticSegmentation.from_pretrained(full, trust_remote_code=True)
    results["folder"] = {"module": type(model).__module__, "difference": max_difference(model)}
    model = AutoModel.from_pretrained("test-org/autosam-kvasir", trust_remote_code=True)
    results["repo_id"] = {"module": type(model).__module__, "difference": max_difference(model)}
    model = AutoModel.from_pretrained("test-org/autosam-kvasir-adapter", trust_remote_code=True)
    results["adapter_repo_id"] = {"module": type(model).__module__, "difference": max_difference(model)}

    processor = AutoImageProcessor.from_pretrained(full, trust_remote_code=True)
    results["processor_module"] = type(processor).__module__
    results["processor_mask_threshold"] = processor.mask_threshold
    segmenter = pipeline("image-segmentation", model=full, trust_remote_code=True)
    segments = segmenter(image_path)
    results["pipeline"] = [
        {"label": segment["label"], "size": list(segment["mask"].size)} for segment in segments
    ]
    foreground = [s["mask"] for s in segments if s["label"] == "foreground"]
    if foreground:
        np.save(out_path + ".npy", np.asarray(foreground[0]))
    results["autosam_hf_imported"] = any(name.split(".")[0] == "autosam_hf" for name in sys.modules)
    with open(out_path, "w") as f:
        json.dump(results, f)
    """
)


@pytest.fixture(scope="module")
def fresh_process_results(workspace):
    """One fresh Python (cwd outside the repository, Hub offline, the test cache as Hub cache) that loads the
    exports through remote code only; returns (its results, the path of its foreground mask's stem, its stderr)."""
    root = workspace["root"]
    script, out = root / "fresh.py", root / "fresh.json"
    script.write_text(FRESH_PROCESS_SCRIPT)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "PYTHONPATH"))}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HUB_CACHE=str(workspace["cache"]),
        HF_HOME=str(root / "hf_home"),
        HF_MODULES_CACHE=str(root / "hf_modules"),
    )
    arguments = [str(workspace["full"]), str(root / "image.png"), str(root / "reference.pt"), str(out)]
    completed = run_command([sys.executable, str(script), *arguments], cwd=root, env=env, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(out.read_text()), out, completed.stderr


def test_remote_code_loads_the_folder_in_a_fresh_process(fresh_process_results):
    results, _, _ = fresh_process_results
    assert results["autosam_hf_imported"] is False
    assert results["folder"]["module"].startswith("transformers_modules.")
    assert results["folder"]["difference"] <= 1e-5
    assert results["processor_module"].startswith("transformers_modules.")


def test_repo_id_loads_from_the_offline_hub_cache(fresh_process_results):
    results, _, _ = fresh_process_results
    assert results["repo_id"]["module"].startswith("transformers_modules.")
    assert results["repo_id"]["difference"] <= 1e-5


def test_adapter_repo_id_rebuilds_the_model_through_remote_code(fresh_process_results):
    results, _, _ = fresh_process_results
    assert results["adapter_repo_id"]["module"].startswith("transformers_modules.")
    assert results["adapter_repo_id"]["difference"] <= 1e-5


def test_pipeline_segments_with_the_published_folder(fresh_process_results, workspace):
    results, out, stderr = fresh_process_results
    height, width = workspace["image"].shape[:2]
    assert {segment["label"] for segment in results["pipeline"]} <= {"background", "foreground"}
    assert all(segment["size"] == [width, height] for segment in results["pipeline"])
    # The remote-code model registers itself where the pipeline looks: no "not supported" error.
    assert UNSUPPORTED_MODEL_ERROR not in stderr
    # Its foreground is the model's own mask: logits > config.mask_threshold at the original size (which differs
    # from logits > 0 here).
    threshold = workspace["model"].config.mask_threshold
    assert results["processor_mask_threshold"] == threshold
    processor = AutoSamImageProcessor.from_pretrained(workspace["full"])
    logits = processor.post_process_logits(workspace["expected"]["autosam"], [(height, width)])[0]
    expected = (logits > threshold).numpy()
    assert expected.any() and not expected.all() and not np.array_equal(expected, (logits > 0).numpy())
    np.testing.assert_array_equal(np.load(str(out) + ".npy") > 0, expected)
