"""Sparse prompts (points, boxes) beside g's dense prompt (issue 31).

Parity: with the same points/boxes and the same dense prompt, AutoSAM's decode equals each transformers class's own
forward (SamModel, SamHQModel, Sam2Model), whose prompt encoder is wrapped so that its dense output is g's prompt
and its sparse output its own. Then: classes and images without clicks decode as without prompts (bit for bit), the
processor maps original-image coordinates as SamProcessor does, and bad keywords, shapes and modes are named.
Tiny random configs (tests/model/test_frozen_sam.py).
"""

import functools

import numpy as np
import pytest
import torch
from conftest import make_tiny_processor
from transformers import SamImageProcessorPil, SamProcessor

from .test_frozen_sam import FAMILIES, canvases, make_model


@functools.cache
def tiny_model(family: str, num_classes: int = 1):
    """A seeded tiny AutoSAM per (family, classes), built once for the module (tests only read it)."""
    id2label = {0: "background", **{k: f"class {k}" for k in range(1, num_classes + 1)}}
    return make_model(family, id2label=id2label) if num_classes > 1 else make_model(family)


def sparse_prompts(model, batch_size: int = 2, num_classes: int = 1, seed: int = 5) -> dict[str, torch.Tensor]:
    """Points (3 per class, one of them padding in image 0), their labels and one box per class, on SAM's canvas."""
    side = model.config.frozen_sam_class.canvas_size(model.config.sam_config)
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(batch_size, num_classes, 3, 2, generator=generator) * side
    labels = torch.ones(batch_size, num_classes, 3, dtype=torch.long)
    labels[:, :, 1] = 0
    labels[0, :, 2] = -10
    corner = torch.rand(batch_size, num_classes, 2, generator=generator) * side / 2
    boxes = torch.cat([corner, corner + side / 3], dim=-1)
    return {"input_points": points, "input_labels": labels, "input_boxes": boxes}


def their_forward(model, pixel_values: torch.Tensor, dense: torch.Tensor, **prompts) -> tuple[torch.Tensor, ...]:
    """The transformers class's own forward with `prompts`, its prompt encoder's dense output replaced by `dense`."""
    encoder = model.sam.prompt_encoder
    own_forward = encoder.forward
    encoder.forward = lambda *args, **kwargs: (own_forward(*args, **kwargs)[0], dense)
    try:
        outputs = model.sam(pixel_values=pixel_values, multimask_output=False, **prompts)
    finally:
        encoder.forward = own_forward
    return outputs.pred_masks[:, :, 0], outputs.iou_scores[:, :, 0]  # (B, point batch, 4E, 4E), (B, point batch)


@pytest.mark.parametrize("family", FAMILIES)
def test_decode_with_points_and_boxes_equals_the_class_forward(family):
    model = tiny_model(family)
    pixel_values = canvases(model)["pixel_values"]
    channels, side = model.config.prompt_embedding_shape
    dense = torch.randn(2, channels, side, side, generator=torch.Generator().manual_seed(3))
    prompts = sparse_prompts(model)
    with torch.no_grad():
        features = model.image_features(pixel_values)
        unprompted, _ = model.decode_masks(features, dense)
        for names in (("input_points", "input_labels"), ("input_boxes",), tuple(prompts)):
            given = {name: prompts[name] for name in names}
            theirs = their_forward(model, pixel_values, dense, **given)
            ours = model.decode_masks(features, dense, **given)
            torch.testing.assert_close(ours[0], theirs[0], rtol=0, atol=1e-5)
            torch.testing.assert_close(ours[1], theirs[1], rtol=0, atol=1e-5)
            assert (ours[0] - unprompted).abs().amax() > 1e-3  # the prompt is seen


def test_multi_class_points_are_each_class_prompt():
    # Class k's dense prompt with class k's points: the class's forward with that prompt and those points alone.
    model = tiny_model("sam", num_classes=2)
    inputs = canvases(model)
    prompts = sparse_prompts(model, num_classes=2)
    with torch.no_grad():
        outputs = model(**inputs, **prompts)
        dense = model.prompt_generator(inputs["prompt_pixel_values"])  # (B, K, C, E, E)
        for k in range(2):
            per_class = {name: tensor[:, k : k + 1] for name, tensor in prompts.items()}
            theirs = their_forward(model, inputs["pixel_values"], dense[:, k], **per_class)
            torch.testing.assert_close(outputs.logits[:, k], theirs[0][:, 0], rtol=0, atol=1e-5)
            torch.testing.assert_close(outputs.iou_scores[:, k], theirs[1][:, 0], rtol=0, atol=1e-5)
    assert (outputs.logits[:, 0] - outputs.logits[:, 1]).abs().amax() > 1e-3


@pytest.mark.parametrize("family", ["sam", "sam2"])
def test_classes_and_images_without_clicks_decode_as_without_prompts(family):
    model = tiny_model(family, num_classes=2)
    inputs = canvases(model)
    prompts = sparse_prompts(model, num_classes=2)
    points, labels = prompts["input_points"], prompts["input_labels"].clone()
    labels[0] = -10  # image 0: no clicks at all
    labels[1, 1] = -1  # image 1, class 1: only not-a-point (SAM's ONNX convention for "none")
    with torch.no_grad():
        features = model.image_features(inputs["pixel_values"])
        dense = model.prompt_generator(inputs["prompt_pixel_values"])
        plain = model.decode_masks(features, dense)
        clicked = model.decode_masks(features, dense, input_points=points, input_labels=labels)
        all_clicked = model.decode_masks(features, dense, input_points=points, input_labels=prompts["input_labels"])
        none_clicked = model.decode_masks(features, dense, points, torch.full_like(labels, -10))
    assert torch.equal(clicked[0][0], plain[0][0]) and torch.equal(clicked[0][1, 1], plain[0][1, 1])
    torch.testing.assert_close(clicked[0][1, 0], all_clicked[0][1, 0], rtol=0, atol=1e-6)
    assert (clicked[0][1, 0] - plain[0][1, 0]).abs().amax() > 1e-3
    assert torch.equal(none_clicked[0], plain[0]) and torch.equal(none_clicked[1], plain[1])


def test_sam_mask_prompt_mode_applies_the_points_in_both_decodes():
    model = tiny_model("sam")
    inputs = canvases(model)
    prompts = sparse_prompts(model)
    with torch.no_grad():
        outputs = model(**inputs, **prompts, mode="sam_mask_prompt")
        features = model.image_features(inputs["pixel_values"])
        first, _ = model.decode_masks(features, model.prompt_generator(inputs["prompt_pixel_values"]), **prompts)
        mask_prompts = model.frozen_sam.mask_prompt_embeddings(first.flatten(0, 1).unsqueeze(1)).unflatten(0, (2, 1))
        expected, _ = model.decode_masks(features, mask_prompts, **prompts)
    torch.testing.assert_close(outputs.logits, expected, rtol=0, atol=1e-6)


def test_bad_keywords_modes_and_shapes_are_named():
    model = tiny_model("sam")
    inputs = canvases(model)
    prompts = sparse_prompts(model)
    with pytest.raises(TypeError, match=r"'lables' \(did you mean 'labels'\?\)"):
        model(**inputs, lables=torch.zeros(2, 48, 48))
    with pytest.raises(ValueError, match="mode='surrogate'.*takes no points or boxes, got input_points"):
        model(**inputs, input_points=prompts["input_points"], mode="surrogate")
    # Shapes are checked where forward decodes (`decode_masks`), before SAM's decoder runs.
    channels, side = model.config.prompt_embedding_shape
    features, dense = torch.zeros(2, channels, side, side), torch.zeros(2, channels, side, side)
    with pytest.raises(ValueError, match=r"input_points: expected shape \(batch 2, classes 1, points, 2\)"):
        model.decode_masks(features, dense, input_points=prompts["input_points"][:, 0])
    with pytest.raises(ValueError, match=r"input_labels: expected shape \(2, 1, 3\)"):
        model.decode_masks(features, dense, prompts["input_points"], prompts["input_labels"][..., :2])
    with pytest.raises(ValueError, match=r"input_boxes: expected shape \(batch 2, classes 1, 4\)"):
        model.decode_masks(features, dense, input_boxes=prompts["input_boxes"][:, 0])
    with pytest.raises(ValueError, match="input_labels: given without input_points"):
        model.decode_masks(features, dense, input_labels=prompts["input_labels"])
    # The processor's own extra outputs are taken (model(**processor(images)), the pipeline).
    sizes = torch.tensor([[24, 24]] * 2)
    model(**inputs, original_sizes=sizes, reshaped_input_sizes=sizes, mode="surrogate")


# ------------------------------------------------------------------------------------------------ the processor
IMAGES = [np.zeros((30, 50, 3), np.uint8), np.zeros((40, 20, 3), np.uint8)]  # landscape and portrait


def test_processor_maps_points_and_boxes_as_sam_processor_does():
    points = [[[10, 5], [40, 25]], [[3, 3], [19, 39]]]
    labels = [[1, 0], [1, 1]]
    boxes = [[[0, 0, 50, 30]], [[1, 2, 19, 39]]]
    ours = make_tiny_processor()(IMAGES, input_points=points, input_labels=labels, input_boxes=boxes)
    sam_processor = SamProcessor(SamImageProcessorPil(size={"longest_edge": 24}, pad_size={"height": 24, "width": 24}))
    theirs = sam_processor(IMAGES, input_points=points, input_labels=labels, input_boxes=boxes, return_tensors="pt")
    for name in ("input_points", "input_boxes"):
        assert ours[name].dtype == torch.float32 and ours[name].shape == theirs[name].shape
        torch.testing.assert_close(ours[name], theirs[name].float(), rtol=0, atol=1e-5)
    assert torch.equal(ours["input_labels"], theirs["input_labels"])
    assert ours["input_points"][0, 0, 1].tolist() == pytest.approx([40 * 24 / 50, 25 * 14 / 30])  # 50×30 → 24×14


def test_processor_pads_ragged_and_missing_clicks_and_maps_the_squash_rule():
    processor = make_tiny_processor()
    processor.num_labels = 3  # two classes
    processor.canvas_rule = "squash"
    processor.size = {"height": 24, "width": 24}
    out = processor(IMAGES, input_points=[[[[10, 5]], [[40, 25], [1, 1]]], None])
    assert out["input_points"].shape == (2, 2, 2, 2)
    assert out["input_labels"].tolist() == [[[1, -10], [1, 1]], [[-10, -10], [-10, -10]]]
    assert out["input_points"][0, 1, 0].tolist() == pytest.approx([40 * 24 / 50, 25 * 24 / 30])
    assert out["input_points"][0, 0, 1].tolist() == [-10, -10]
    mapped = processor.canvas_coordinates(torch.tensor([[10.0, 20.0, 30.0, 40.0]]), (40, 20))
    assert isinstance(mapped, torch.Tensor) and mapped.tolist() == [[12.0, 12.0, 36.0, 24.0]]


@pytest.mark.parametrize(
    "prompts,message",
    [
        ({"input_points": [[[1, 2]]]}, r"input_points: expected one entry per image \(2\), got 1"),
        ({"input_points": [[[[1, 2]], [[3, 4]]], None]}, r"input_points\[0\]: 2 entries for this model's 1 class"),
        ({"input_points": [[[1, 2]], [[1, 2]]], "input_labels": [[1, 0], [1]]}, r"input_labels\[0\]: 2 labels"),
        ({"input_points": [[[1, 2]], [[1, 2]]], "input_labels": [[2], [1]]}, r"input_labels\[0\]: label 2 is not"),
        ({"input_points": [[[1, 2, 3]], None]}, r"input_points\[0\]: class 0 has shape \(1, 3\)"),
        ({"input_boxes": [[0, 0, 5, 5], None]}, r"input_boxes\[1\]: class 0 has no box"),
        ({"input_labels": [[1], [1]]}, "input_labels: given without input_points"),
    ],
)
def test_processor_names_bad_prompts(prompts, message):
    with pytest.raises(ValueError, match=message):
        make_tiny_processor()(IMAGES, **prompts)
