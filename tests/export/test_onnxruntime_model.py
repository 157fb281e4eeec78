"""autosam_hf.export.OnnxRuntimeAutoSam: an export folder answers like the PyTorch model (it is an
autosam_hf.inference.SegmentationModel, and gives the same masks through the predictor's batching and
post-processing), loads only the graphs a mode runs, and names bad input."""

import json
import sys

import numpy as np
import pytest
import torch

from autosam_hf.export import MANIFEST_NAME, MissingDependencyError, OnnxRuntimeAutoSam
from autosam_hf.export import load_onnxruntime_model_and_processor as load_exported
from autosam_hf.export.onnxruntime_model import execution_providers
from autosam_hf.inference import SegmentationConfig, SegmentationModel, iter_predictions

from .conftest import max_difference


@pytest.fixture(scope="module")
def onnx_model(exported):
    _, _, folder, _ = exported
    return load_exported(folder)


@pytest.mark.parametrize("mode", ["autosam", "surrogate"])
def test_same_masks_as_pytorch_through_the_prediction_api(exported, onnx_model, kvasir_images, mode):
    model, processor, _, _ = exported
    ort_model, ort_processor = onnx_model
    # Both have the surface the predictor is typed against (autosam_hf.inference.protocol).
    for backend in (model, ort_model):
        assert isinstance(backend, SegmentationModel) and isinstance(backend.config, SegmentationConfig)
    items = list(enumerate(kvasir_images))
    # The random tiny model's logits may all sit below its threshold (0): the median splits the images instead.
    reference = dict(iter_predictions(model, processor, items, mode=mode, batch_size=2))
    threshold = float(torch.cat([p.logits.flatten() for p in reference.values()]).median())
    expected = dict(iter_predictions(model, processor, items, mode=mode, batch_size=2, mask_threshold=threshold))
    actual = dict(iter_predictions(ort_model, ort_processor, items, mode=mode, batch_size=2, mask_threshold=threshold))
    for index, image in items:
        assert actual[index].mask.shape == (image.height, image.width)
        assert max_difference(actual[index].logits, reference[index].logits) <= 1e-4
        # Equal masks wherever the logit is further from the threshold than the parity tolerance.
        decided = ((expected[index].logits - threshold).abs() > 1e-4).numpy()
        assert decided.mean() > 0.9  # the tiny random model's logits crowd around their median
        np.testing.assert_array_equal(actual[index].mask[decided], expected[index].mask[decided])
    assert 0.05 < np.mean([prediction.mask.mean() for prediction in expected.values()]) < 0.95


def test_outputs_are_the_forwards(exported, onnx_model, kvasir_images):
    model, processor, _, _ = exported
    ort_model, _ = onnx_model
    inputs = processor(kvasir_images)
    with torch.no_grad():
        expected = model(**inputs, mode="autosam")
    actual = ort_model(**inputs, mode="autosam")
    assert actual.logits.dtype == torch.float32 and actual.logits.shape == expected.logits.shape
    assert max_difference(actual.iou_scores, expected.iou_scores) <= 1e-4
    # Precomputed embeddings (the embedding cache's) skip SAM's encoder, as in PyTorch.
    cached = ort_model(
        prompt_pixel_values=inputs["prompt_pixel_values"], image_embeddings=expected.image_embeddings, mode="autosam"
    )
    assert max_difference(cached.logits, expected.logits) <= 1e-4
    assert ort_model.config.mask_threshold == model.config.mask_threshold
    assert ort_model.config.id2label == model.config.id2label


def test_clicks_give_the_pytorch_masks_and_no_clicks_the_unprompted_ones(exported, onnx_model, kvasir_images):
    # One graph for both: image 0 with two clicks, image 1 without (padded to not-a-point/-10), as in PyTorch.
    model, processor, _, _ = exported
    ort_model, _ = onnx_model
    prompts = {"input_points": [[[100, 120], [30, 40]], None], "input_labels": [[1, 0], None]}
    inputs = processor(kvasir_images[:2], **prompts)
    plain = {name: value for name, value in inputs.items() if not name.startswith("input_")}
    with torch.no_grad():
        expected, unprompted = model(**inputs), model(**plain)
    actual, actual_unprompted = ort_model(**inputs), ort_model(**plain)
    assert max_difference(actual.logits, expected.logits) <= 1e-4
    assert max_difference(actual.iou_scores, expected.iou_scores) <= 1e-4
    assert max_difference(actual_unprompted.logits, unprompted.logits) <= 1e-4
    assert max_difference(actual.logits[1], actual_unprompted.logits[1]) <= 1e-6  # no clicks: no prompt
    assert max_difference(expected.logits[0], unprompted.logits[0]) > 1e-3  # the clicks are seen
    # Through the predictor, prompts per image, on both backends alike.
    items = list(enumerate(kvasir_images[:2]))
    ours = dict(iter_predictions(model, processor, items, batch_size=2, **prompts))
    theirs = dict(iter_predictions(ort_model, processor, items, batch_size=2, **prompts))
    assert max(max_difference(ours[i].logits, theirs[i].logits) for i in ours) <= 1e-4
    with pytest.raises(ValueError, match="input_boxes: the exported prompt decoder takes points only"):
        ort_model(**plain, input_boxes=torch.zeros(2, 1, 4))
    with pytest.raises(ValueError, match="mode='surrogate'.*takes no points"):
        ort_model(**inputs, mode="surrogate")
    with pytest.raises(TypeError, match="unexpected keyword argument.*'lables'"):
        ort_model(**plain, lables=torch.zeros(2))


def test_a_mode_loads_only_its_graphs(exported, kvasir_images):
    _, processor, folder, _ = exported
    ort_model = OnnxRuntimeAutoSam(folder, num_threads=1)
    ort_model(**processor(kvasir_images[:1], canvases=["prompt"]), mode="surrogate")
    assert set(ort_model._sessions) == {"surrogate"}  # h(g(I)) never loads SAM's encoder
    assert ort_model.supports("autosam") and ort_model.supports("surrogate")
    assert not ort_model.supports("sam_mask_prompt") and ort_model.surrogate_decoder is not None


def partial_export(folder, tmp_path, graphs):
    """A folder with `graphs` of the export only (links to its files)."""
    partial = tmp_path / "partial"
    partial.mkdir()
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["graphs"] = {name: manifest["graphs"][name] for name in graphs}
    (partial / MANIFEST_NAME).write_text(json.dumps(manifest))
    kept = {manifest["graphs"][name]["file"] for name in graphs}
    for path in folder.iterdir():
        if path.name != MANIFEST_NAME and (path.suffix != ".onnx" or path.name in kept):
            (partial / path.name).symlink_to(path)
    return partial


def test_bad_input_is_named(exported, onnx_model, kvasir_images, tmp_path):
    _, processor, folder, _ = exported
    ort_model, _ = onnx_model
    inputs = processor(kvasir_images[:1])
    with pytest.raises(ValueError, match=r"prompt_pixel_values: expected shape \(batch, 3, 64, 64\).*\(1, 3, 24, 24\)"):
        ort_model(prompt_pixel_values=inputs["pixel_values"], mode="surrogate")
    with pytest.raises(ValueError, match="prompt_pixel_values is required.*'prompt' canvas"):
        ort_model(pixel_values=inputs["pixel_values"], mode="autosam")
    with pytest.raises(ValueError, match="runs SAM: pass pixel_values"):
        ort_model(prompt_pixel_values=inputs["prompt_pixel_values"], mode="autosam")
    with pytest.raises(ValueError, match="mode='sam_mask_prompt' is not in the export.*autosam, surrogate"):
        ort_model(**inputs, mode="sam_mask_prompt")
    with pytest.raises(FileNotFoundError, match="ONNX export folder not found"):
        OnnxRuntimeAutoSam(tmp_path / "missing")
    with pytest.raises(ValueError, match=f"not an ONNX export \\(no {MANIFEST_NAME}\\).*autosam-export"):
        OnnxRuntimeAutoSam(tmp_path)
    with pytest.raises(ValueError, match="--device cuda: onnxruntime here has no CUDAExecutionProvider"):
        execution_providers("cuda")
    with pytest.raises(ValueError, match="--device must be auto, cpu, cuda"):
        execution_providers("tpu")


def test_an_export_without_h_has_no_surrogate_mode(exported, kvasir_images, tmp_path):
    _, processor, folder, _ = exported
    ort_model = OnnxRuntimeAutoSam(partial_export(folder, tmp_path, ["encoder", "prompt_decoder"]))
    assert ort_model.surrogate_decoder is None and not ort_model.supports("surrogate")
    with pytest.raises(ValueError, match="mode='surrogate' is not in the export.*modes exported: autosam"):
        ort_model(**processor(kvasir_images[:1]), mode="surrogate")
    (tmp_path / "partial" / "image_encoder.onnx").unlink()
    with pytest.raises(ValueError, match="names image_encoder.onnx for graph 'encoder'.*missing"):
        OnnxRuntimeAutoSam(tmp_path / "partial")


def test_without_onnxruntime_the_error_names_the_extra(exported, monkeypatch):
    _, _, folder, _ = exported
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"onnxruntime.*autosam-hf\[onnx\]") as error:
        OnnxRuntimeAutoSam(folder)
    assert isinstance(error.value, ValueError)  # so commands report it as bad input
