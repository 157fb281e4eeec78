"""autosam_hf.inference.predictor: the Python API (`iter_predictions`, `predict_images`): batching, the model's
threshold, reduced precision and the canvases each mode builds (masks are the model's: logits > config.mask_threshold,
through autosam_hf.postprocessing)."""

import numpy as np
import pytest
import torch

from autosam_hf.hub import load_model_and_processor
from autosam_hf.inference import iter_predictions, predict_images

from .conftest import SIZES, random_images, reference_masks


def test_batching_does_not_change_predictions(loaded):
    model, processor = loaded
    images = random_images()[:2]  # two sizes in one batch: padding must not leak between images
    one_by_one = predict_images(model, processor, images, batch_size=1)
    batched = predict_images(model, processor, images, batch_size=2)
    for single, together, (height, width) in zip(one_by_one, batched, SIZES[:2], strict=True):
        assert single.shape == (height, width) and single.dtype == np.float32
        np.testing.assert_allclose(single, together, atol=1e-5)
    for probabilities, expected in zip(one_by_one, reference_masks(loaded, images), strict=True):
        np.testing.assert_array_equal(probabilities > 0.5, expected)


def test_masks_are_logits_above_the_models_threshold_unless_overridden(loaded):
    model, processor = loaded
    image = random_images()[0]
    ((_, prediction),) = iter_predictions(model, processor, [("a", image)], mode="surrogate")
    inputs = processor(image)
    with torch.no_grad():
        logits = processor.post_process_logits(model(**inputs, mode="surrogate").logits, inputs["original_sizes"])[0]
    torch.testing.assert_close(prediction.logits, logits)
    np.testing.assert_array_equal(prediction.mask, (logits > model.config.mask_threshold).numpy())
    np.testing.assert_allclose(prediction.probabilities, torch.sigmoid(logits).numpy(), rtol=1e-6)
    threshold = float(logits.median())  # splits the image: a different mask than the model's
    ((_, overridden),) = iter_predictions(model, processor, [("a", image)], mode="surrogate", mask_threshold=threshold)
    np.testing.assert_array_equal(overridden.mask, (logits > threshold).numpy())
    assert not np.array_equal(overridden.mask, prediction.mask)


def test_bfloat16_autocast_runs_and_stays_close(loaded):
    model, processor = loaded
    images = random_images()[:1]
    (full,) = predict_images(model, processor, images, mode="surrogate")
    (reduced,) = predict_images(model, processor, images, mode="surrogate", autocast_dtype=torch.bfloat16)
    assert reduced.dtype == np.float32 and np.isfinite(reduced).all()
    assert np.mean((full > 0.5) == (reduced > 0.5)) > 0.9


@pytest.mark.parametrize("mode", ["surrogate", "autosam"])
def test_a_model_loaded_in_bfloat16_takes_the_processors_float32_pixels(model_dir, loaded, mode):
    model, processor = load_model_and_processor(model_dir, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    images = random_images()
    reduced = predict_images(model, processor, images, mode=mode)
    full = predict_images(*loaded, images, mode=mode)
    for low, high in zip(reduced, full, strict=True):
        assert low.dtype == np.float32 and low.shape == high.shape
        assert np.mean((low > 0.5) == (high > 0.5)) > 0.95


def test_each_mode_builds_only_the_canvases_it_reads(monkeypatch):
    from conftest import make_tiny_model, make_tiny_processor

    model, processor = make_tiny_model().eval(), make_tiny_processor()
    built = []
    preprocess = type(processor).preprocess

    def recording(self, images, *args, **kwargs):
        outputs = preprocess(self, images, *args, **kwargs)
        built.append(sorted(name for name in outputs if name.endswith("pixel_values")))
        return outputs

    monkeypatch.setattr(type(processor), "preprocess", recording)
    images = random_images()[:2]
    fast = predict_images(model, processor, images, mode="surrogate")
    full = predict_images(model, processor, images, mode="autosam")
    assert built == [["prompt_pixel_values"], ["pixel_values", "prompt_pixel_values"]]
    assert all(f.shape == a.shape for f, a in zip(fast, full, strict=True))
