"""autosam_hf.evaluation.scoring: metrics at the original resolution (exact oracles through the GT-mask pathway),
empty ground truths, one SAM encoder pass per batch, and SUN-SEG's per-case averaging."""

import datasets
import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_tiny_model, make_tiny_processor

from autosam_hf.data import BOUNDARY_ID2LABEL, INSTANCE_FEATURES, boundary_label_map, load_preset_dataset
from autosam_hf.evaluation import EvaluationSettings, evaluate_dataset, evaluate_model
from autosam_hf.metrics import aggregated_jaccard_index, instances_from_label_map, per_class_dice_iou
from autosam_hf.model.image_processing_autosam import canvases_for_mode
from autosam_hf.postprocessing import model_predictions
from evaluation.fake_sam import (
    fake_band_decoder,
    fake_sam_returning,
    keep_left_half_of_canvas,
    keep_upper_half_of_foreground,
)
from evaluation.sample_data import make_dataset, write_sunseg_split


@pytest.fixture
def band_dataset():
    """Non-square and square images whose masks are horizontal bands on boundaries that survive the resampling
    chain (original → 4E canvas → SAM input size → original) exactly: a canvas-perfect prediction is pixel-perfect
    at the original size."""
    rng = np.random.default_rng(0)
    shapes_and_bands = [((96, 192), (32, 64)), ((96, 96), (40, 72))]
    images, masks = [], []
    for (height, width), (top, bottom) in shapes_and_bands:
        images.append(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[top:bottom] = 1
        masks.append(mask)
    return make_dataset(images, masks)


def test_oracle_perfect_prediction_scores_one_at_original_resolution(band_dataset, monkeypatch):
    model, processor = make_tiny_model(), make_tiny_processor()
    monkeypatch.setattr(model.sam, "forward", fake_sam_returning(lambda masks: masks))
    settings = EvaluationSettings(modes=["sam_gt_mask"], batch_size=2, progress=False)
    scores = evaluate_dataset(model, processor, band_dataset, settings)["sam_gt_mask"]
    assert scores.per_image == {"0": {"dice": 1.0, "iou": 1.0}, "1": {"dice": 1.0, "iou": 1.0}}
    assert scores.metrics["dice"] == 1.0 and scores.metrics["iou"] == 1.0


def test_oracle_half_prediction_gives_exact_dice_and_iou(band_dataset, monkeypatch):
    model, processor = make_tiny_model(), make_tiny_processor()
    monkeypatch.setattr(model.sam, "forward", fake_sam_returning(keep_upper_half_of_foreground))
    settings = EvaluationSettings(modes=["sam_gt_mask"], batch_size=1, progress=False)
    metrics = evaluate_model(model, processor, band_dataset, settings)
    # Prediction = upper half of the target band: Dice = 2·(1/2)/(1/2 + 1) = 2/3, IoU = 1/2, for both images.
    assert metrics["sam_gt_mask"]["dice"] == pytest.approx(2 / 3, abs=1e-12)
    assert metrics["sam_gt_mask"]["iou"] == pytest.approx(1 / 2, abs=1e-12)


def test_empty_ground_truth_gives_empty_prediction_for_gt_prompt_modes():
    model, processor = make_tiny_model(), make_tiny_processor()
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size=(40, 30, 3), dtype=np.uint8) for _ in range(2)]
    masks = [np.zeros((40, 30)), np.pad(np.ones((10, 10)), ((5, 25), (10, 10)))]
    modes = ["sam_gt_point", "sam_gt_box", "sam_gt_mask"]
    settings = EvaluationSettings(modes=modes, batch_size=2, progress=False)
    results = evaluate_dataset(model, processor, make_dataset(images, masks), settings)
    for mode in modes:
        # Empty target, empty prediction: Dice = IoU = 1 by the metrics' rule; the other image is scored normally.
        assert results[mode].per_image["0"] == {"dice": 1.0, "iou": 1.0}
        assert 0.0 <= results[mode].per_image["1"]["dice"] <= 1.0


def test_image_embeddings_are_computed_once_per_batch(band_dataset):
    model, processor = make_tiny_model(), make_tiny_processor()
    calls = []
    encoder_forward = model.sam.vision_encoder.forward
    model.sam.vision_encoder.forward = lambda *args, **kwargs: calls.append(1) or encoder_forward(*args, **kwargs)
    modes = ["autosam", "sam_mask_prompt", "sam_gt_point", "sam_gt_box", "sam_gt_mask", "surrogate"]
    evaluate_dataset(model, processor, band_dataset, EvaluationSettings(modes=modes, batch_size=2, progress=False))
    assert len(calls) == 1


def test_every_mode_scores_a_bfloat16_model(band_dataset):
    model, processor = make_tiny_model(), make_tiny_processor()
    modes = ["autosam", "sam_mask_prompt", "sam_gt_point", "sam_gt_box", "sam_gt_mask", "surrogate"]
    settings = EvaluationSettings(modes=modes, batch_size=2, progress=False)
    full = evaluate_model(model, processor, band_dataset, settings)
    reduced = evaluate_model(model.to(torch.bfloat16), processor, band_dataset, settings)
    for mode in modes:
        assert reduced[mode]["dice"] == pytest.approx(full[mode]["dice"], abs=0.1), mode


def test_masks_are_logits_above_the_models_mask_threshold(band_dataset, monkeypatch):
    # The GT-mask oracle returns ±10 logits: a threshold above 10 leaves every prediction empty (Dice 0 against the
    # non-empty bands), one below -10 fills the image.
    model, processor = make_tiny_model(), make_tiny_processor()
    monkeypatch.setattr(model.sam, "forward", fake_sam_returning(lambda masks: masks))
    settings = EvaluationSettings(modes=["sam_gt_mask"], batch_size=2, progress=False)
    model.config.mask_threshold = 10.5
    assert evaluate_model(model, processor, band_dataset, settings)["sam_gt_mask"]["dice"] == 0.0
    model.config.mask_threshold = -10.5
    band_fractions = [32 / 96, 32 / 96]  # each band covers a third of its image
    expected = np.mean([2 * fraction / (fraction + 1) for fraction in band_fractions])
    assert evaluate_model(model, processor, band_dataset, settings)["sam_gt_mask"]["dice"] == pytest.approx(expected)


def test_video_metrics_are_per_case_then_averaged(tmp_path, monkeypatch):
    # Case "a": 4 frames, all scored 1. Case "b": 6 frames; its middle frames score 1, 1, 0, 0; its first and last
    # frames (left out, as in SUN-SEG's toolbox) would score 1.
    sides = {"a": ["left"] * 4, "b": ["left", "left", "left", "right", "right", "left"]}
    root = write_sunseg_split(tmp_path / "SUN-SEG", {"a": 4, "b": 6}, sides)
    dataset = load_preset_dataset("sunseg_easy", "test", root)
    model, processor = make_tiny_model(), make_tiny_processor()
    monkeypatch.setattr(model.sam, "forward", fake_sam_returning(keep_left_half_of_canvas))

    settings = EvaluationSettings(modes=["sam_gt_mask"], batch_size=3, progress=False)
    result = evaluate_dataset(model, processor, dataset, settings)["sam_gt_mask"]
    assert result.per_case["a"]["dice"] == pytest.approx(1.0)
    assert result.per_case["b"]["dice"] == pytest.approx(0.5)
    # Per case, then over cases: (1 + 0.5) / 2, not the frame-pooled (2 + 2) / 6.
    assert result.metrics["dice"] == pytest.approx(0.75)
    assert result.metrics["iou"] == pytest.approx(0.75)
    # Frames are put in time order whatever the row order.
    shuffled = dataset.select([5, 0, 9, 1, 3, 8, 2, 7, 4, 6])
    settings = EvaluationSettings(modes=["sam_gt_mask"], batch_size=4, progress=False)
    again = evaluate_dataset(model, processor, shuffled, settings)["sam_gt_mask"]
    assert again.metrics == pytest.approx(result.metrics)

    settings = EvaluationSettings(modes=["sam_gt_mask"], skip_first_and_last_frame=False, progress=False)
    every_frame = evaluate_dataset(model, processor, dataset, settings)["sam_gt_mask"]
    assert every_frame.per_case["b"]["dice"] == pytest.approx(4 / 6)


def test_bad_settings_and_empty_datasets_are_rejected(band_dataset):
    model, processor = make_tiny_model(), make_tiny_processor()
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        evaluate_dataset(model, processor, band_dataset, EvaluationSettings(batch_size=0, progress=False))
    with pytest.raises(ValueError, match="empty"):
        evaluate_dataset(model, processor, band_dataset.select([]), EvaluationSettings(progress=False))
    with pytest.raises(ValueError, match="sam_gt_scribble"):
        evaluate_dataset(model, processor, band_dataset, EvaluationSettings(modes=["sam_gt_scribble"]))


def boundary_dataset() -> datasets.Dataset:
    """Two images with {background, interior, boundary} label maps and the instance ids they come from."""
    rng = np.random.default_rng(2)
    rows = {"id": [], "image": [], "mask": [], "instances": []}
    for index, (height, width) in enumerate(((40, 56), (48, 48))):
        instances = np.zeros((height, width), np.uint16)
        instances[5:20, 5:20], instances[5:20, 20:35], instances[25:40, 10:30] = 1, 2, 3
        rows["id"].append(str(index))
        rows["image"].append(PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)))
        rows["mask"].append(PIL.Image.fromarray(boundary_label_map(instances.astype(np.int32), 2)))
        rows["instances"].append(PIL.Image.fromarray(instances))
    return datasets.Dataset.from_dict(rows, features=INSTANCE_FEATURES)


def test_multi_class_models_are_scored_per_class_with_instance_metrics():
    model = make_tiny_model(id2label=BOUNDARY_ID2LABEL).eval()
    processor = make_tiny_processor()
    processor.num_labels = 3
    dataset = boundary_dataset()
    settings = EvaluationSettings(modes=["autosam", "surrogate"], batch_size=2, progress=False)
    results = evaluate_dataset(model, processor, dataset, settings)
    for mode, result in results.items():
        expected_keys = {"dice", "iou", "dice_interior", "iou_interior", "dice_boundary", "iou_boundary"}
        expected_keys |= {"foreground_dice", "foreground_iou", "aji", "count_error", "count_relative_error"}
        assert expected_keys <= set(result.metrics)
        assert result.metrics["dice"] == pytest.approx(
            (result.metrics["dice_interior"] + result.metrics["dice_boundary"]) / 2
        )
        assert result.per_image["0"]["true_instances"] == 3
        # Each image's scores are its own prediction's, through the one post-processing path. The reference runs
        # the same batch of two: a random model's logits sit near 0, where batch-size-dependent kernels can flip a
        # pixel.
        row = dataset[0]
        images = [np.asarray(image) for image in dataset["image"]]
        inputs = processor(images, canvases=canvases_for_mode(mode))
        with torch.no_grad():
            logits = model(**{k: v for k, v in inputs.items() if k.endswith("pixel_values")}, mode=mode).logits
        prediction = model_predictions(model, processor, logits, inputs["original_sizes"])[0]
        scores = per_class_dice_iou(prediction.class_masks, np.asarray(row["mask"]))
        assert result.per_image["0"]["dice_interior"] == pytest.approx(scores[0, 0])
        predicted = instances_from_label_map(prediction.label_map)
        assert result.per_image["0"]["aji"] == pytest.approx(aggregated_jaccard_index(row["instances"], predicted))
    with pytest.raises(ValueError, match="2-class model is evaluated in"):
        evaluate_dataset(model, processor, dataset, EvaluationSettings(modes=["sam_gt_box"], progress=False))


def test_clicks_mode_scores_a_hand_worked_correction(monkeypatch):
    """96x96 images (label canvas 48, SAM canvas 24); the fake decoder's mask is label-canvas bands of 8 rows, the
    automatic one band 1 (original rows 16-31), each click turning the band under it on or off."""
    model, processor = make_tiny_model(), make_tiny_processor()
    monkeypatch.setattr(model, "decode_masks", fake_band_decoder(label_canvas=48, sam_canvas=24))
    # g's prompt is ignored by the fake decoder: skip its (CPU-costly) forward.
    monkeypatch.setattr(model.prompt_generator, "forward", lambda pixels: torch.zeros(len(pixels), 1, 32, 12, 12))
    images = [np.zeros((96, 96, 3), dtype=np.uint8)] * 2
    fixed, never = np.zeros((96, 96), np.uint8), np.zeros((96, 96), np.uint8)
    fixed[16:32], fixed[48:64] = 1, 1  # band 1 found automatically, band 3 missed: the first click adds it
    never[16:32, :48] = 1  # the left half of band 1: clicks toggle the whole band, off then on again
    dataset = make_dataset(images, [fixed, never], ids=["fixed", "never"])
    settings = EvaluationSettings(modes=["autosam_clicks"], batch_size=2, max_clicks=5, progress=False)
    result = evaluate_dataset(model, processor, dataset, settings)["autosam_clicks"]

    # "fixed": IoU 1/2 (Dice 2/3) automatically, exact after one click, then no more clicks: NoC 1 at both IoUs.
    # "never": the whole band (IoU 1/2) → a negative click empties it (0) → a positive click restores it → ...
    # never above IoU 1/2 in 20 clicks: NoC = the cap, 20.
    assert {key: result.per_image["fixed"][key] for key in ("dice@0", "dice@1", "dice@3", "dice@5")} == {
        "dice@0": pytest.approx(2 / 3), "dice@1": 1.0, "dice@3": 1.0, "dice@5": 1.0
    }  # fmt: skip
    assert [result.per_image["never"][f"dice@{k}"] for k in (0, 1, 3, 5)] == pytest.approx([2 / 3, 0, 0, 0])
    assert result.per_image["fixed"]["noc@85"] == result.per_image["fixed"]["noc@90"] == 1.0
    assert result.per_image["never"]["noc@85"] == result.per_image["never"]["noc@90"] == 20.0
    assert result.metrics["noc@85"] == result.metrics["noc@90"] == 10.5
    assert result.metrics["dice@0"] == pytest.approx(2 / 3) and result.metrics["dice@1"] == pytest.approx(0.5)
    # The mode's own Dice and IoU are those after max_clicks; the per-click rows are folded away.
    assert result.metrics["dice"] == result.metrics["dice@5"] == pytest.approx(0.5)
    assert result.metrics["iou@0"] == pytest.approx(0.5)
    # Two clicks, one image per batch: "never" is back to its automatic mask; click 0 is the autosam row.
    settings = EvaluationSettings(modes=["autosam", "autosam_clicks"], batch_size=1, max_clicks=2, progress=False)
    results = evaluate_dataset(model, processor, dataset, settings)
    assert set(results) == {"autosam", "autosam_clicks"}
    assert results["autosam_clicks"].per_image["never"]["dice@2"] == pytest.approx(2 / 3)
    assert results["autosam_clicks"].metrics["dice@0"] == results["autosam"].metrics["dice"]
    assert "dice@3" not in results["autosam_clicks"].metrics
    assert results["autosam_clicks"].metrics["noc@85"] == 10.5  # NoC follows up to 20 clicks whatever max_clicks
