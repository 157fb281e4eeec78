"""Multi-class AutoSAM (K classes besides the background): shapes for K = 1, 2, 3, one batched SAM decoder call per
pass, a frozen SAM, the loss of both background rules, save/load and the pipeline's one segment per present class."""

import math

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_model, make_tiny_processor
from transformers import pipeline

from autosam_hf import AUTOSAM_MODES, AutoSamConfig, AutoSamForSegmentation
from autosam_hf.model.modeling_autosam import masked_segmentation_loss

ID2LABEL = {1: {0: "background", 1: "foreground"}, 2: {0: "background", 1: "a", 2: "b"}}
ID2LABEL[3] = {**ID2LABEL[2], 3: "c"}


def make_model(num_classes: int, **overrides) -> AutoSamForSegmentation:
    return make_tiny_model(id2label=ID2LABEL[num_classes], **overrides).eval()


def label_maps(batch_size: int, num_classes: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Random images (30×40) with label maps of horizontal bands of classes 0..K."""
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (30, 40, 3), dtype=np.uint8) for _ in range(batch_size)]
    maps = []
    for _ in range(batch_size):
        label_map = np.zeros((30, 40), np.uint8)
        for k in range(1, num_classes + 1):
            label_map[4 + 7 * (k - 1) : 9 + 7 * (k - 1), 5:35] = k
        maps.append(label_map)
    return images, maps


@pytest.fixture(scope="module")
def three_class_model() -> AutoSamForSegmentation:
    return make_model(3)


# ----------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("num_classes", [1, 2, 3])
@pytest.mark.parametrize("mode", AUTOSAM_MODES)
def test_shapes_for_one_two_and_three_classes(num_classes, mode):
    model = make_model(num_classes)
    processor = make_tiny_processor()
    processor.num_labels = num_classes + 1
    images, maps = label_maps(2, num_classes)
    inputs = processor(images, segmentation_maps=maps)
    with torch.no_grad():
        outputs = model(**inputs, mode=mode)
    assert outputs.logits.shape == (2, num_classes, 48, 48)
    assert outputs.loss.ndim == 0 and torch.isfinite(outputs.loss)
    prompt_shape = (2, 32, 12, 12) if num_classes == 1 else (2, num_classes, 32, 12, 12)
    assert outputs.prompt_embeddings.shape == prompt_shape
    if mode == "surrogate":
        assert outputs.iou_scores is None and torch.equal(outputs.surrogate_logits, outputs.logits)
    else:
        assert outputs.iou_scores.shape == (2, num_classes)
    # One head for every class: K·C output channels; h has the same weights whatever K.
    assert model.prompt_generator.head.out_channels == num_classes * 32
    assert sum(p.numel() for p in model.surrogate_decoder.parameters()) == sum(
        p.numel() for p in make_tiny_model().surrogate_decoder.parameters()
    )


# ----------------------------------------------------------------------------------------------- SAM, once per pass
@pytest.mark.parametrize("mode, passes", [("autosam", 1), ("sam_mask_prompt", 2)])
def test_sams_decoder_runs_once_per_pass_on_a_batch_of_b_times_k(three_class_model, mode, passes):
    model, calls = three_class_model, []
    handle = model.sam.mask_decoder.register_forward_hook(
        lambda module, args, kwargs, output: calls.append(kwargs["image_embeddings"].shape[0]), with_kwargs=True
    )
    try:
        with torch.no_grad():
            model(torch.randn(2, 3, 24, 24), mode=mode)
    finally:
        handle.remove()
    assert calls == [2 * 3] * passes


def test_the_batched_call_decodes_each_class_as_its_own_call_would(three_class_model):
    model = three_class_model
    pixel_values = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        outputs = model(pixel_values, mode="autosam")
        for k in range(3):
            logits, iou_scores = model.decode_masks(outputs.image_embeddings, outputs.prompt_embeddings[:, k])
            torch.testing.assert_close(logits[:, 0], outputs.logits[:, k], rtol=0, atol=1e-5)
            torch.testing.assert_close(iou_scores[:, 0], outputs.iou_scores[:, k], rtol=0, atol=1e-5)
        surrogate = model(pixel_values, mode="surrogate")
        for k in range(3):  # h: the same weights on each class's prompt
            alone = model.surrogate_decoder(outputs.prompt_embeddings[:, k])
            torch.testing.assert_close(alone[:, 0], surrogate.logits[:, k], rtol=0, atol=1e-5)


def test_an_optimizer_step_leaves_sam_byte_identical_and_trains_every_class_head():
    model = make_model(3).train()
    processor = make_tiny_processor()
    processor.num_labels = 4
    images, maps = label_maps(2, 3)
    inputs = processor(images, segmentation_maps=maps)
    sam_before = {name: tensor.clone() for name, tensor in model.sam.state_dict().items()}
    head_before = model.prompt_generator.head.weight.detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)  # every parameter, SAM's included
    for mode in ("autosam", "sam_mask_prompt", "surrogate"):
        optimizer.zero_grad()
        model(**inputs, mode=mode).loss.backward()
        assert all(parameter.grad is None for parameter in model.sam.parameters())
        optimizer.step()
    for name, tensor in sam_before.items():
        assert torch.equal(model.sam.state_dict()[name], tensor), name
    changed = (model.prompt_generator.head.weight != head_before).flatten(1).any(dim=1).view(3, 32)
    assert changed.any(dim=1).all()  # each class's part of the head learned


# ----------------------------------------------------------------------------------------------- loss
def binary_loss_before_multiclass(logits, labels, valid_mask=None, bce_weight=1.0, dice_weight=1.0, smooth=1.0):
    """`masked_segmentation_loss` as it was before multi-class support (commit c73fa42), for K = 1."""
    logits = logits.reshape(logits.shape[0], -1).float()
    labels = labels.reshape(logits.shape).to(logits.dtype)
    valid = torch.ones_like(logits) if valid_mask is None else valid_mask.reshape(logits.shape).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    bce = (bce * valid).sum() / valid.sum().clamp(min=1.0)
    probabilities = torch.sigmoid(logits) * valid
    intersection = (probabilities * labels * valid).sum(dim=1)
    denominator = probabilities.sum(dim=1) + (labels * valid).sum(dim=1)
    dice = (2.0 * intersection + smooth) / (denominator + smooth)
    return bce_weight * bce + dice_weight * (1.0 - dice).mean()


@pytest.mark.parametrize("class_activation", ["softmax", "sigmoid"])
def test_one_class_loss_is_the_binary_loss_of_before_bit_for_bit(class_activation):
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(3, 1, 48, 48, generator=generator)
    labels = (torch.rand(3, 48, 48, generator=generator) > 0.6).float()
    valid = torch.rand(3, 48, 48, generator=generator) > 0.2
    for args in ((logits, labels, valid, 0.5, 2.0), (logits[:, 0], labels), (logits, labels, None, 1.0, 0.0)):
        expected = binary_loss_before_multiclass(*args)
        assert torch.equal(masked_segmentation_loss(*args, class_activation=class_activation), expected)


def dice_loss_by_hand(probabilities, targets, valid):
    """1 − soft Dice per (image, class), averaged: probabilities and targets lists [image][class][pixel]."""
    losses = []
    for image_p, image_t, image_v in zip(probabilities, targets, valid, strict=True):
        for p, t in zip(image_p, image_t, strict=True):
            intersection = sum(pi * ti * vi for pi, ti, vi in zip(p, t, image_v, strict=True))
            denominator = sum(pi * vi for pi, vi in zip(p, image_v, strict=True)) + sum(
                ti * vi for ti, vi in zip(t, image_v, strict=True)
            )
            losses.append(1 - (2 * intersection + 1) / (denominator + 1))
    return sum(losses) / len(losses)


def test_softmax_loss_is_cross_entropy_with_a_zero_background_logit_plus_class_dice():
    logits = torch.tensor([[[[2.0, -1.0, 0.5]], [[0.0, 1.5, -2.0]]]])  # (B=1, K=2, 1, 3)
    labels = torch.tensor([[[1, 2, 0]]])
    valid = torch.tensor([[[True, True, False]]])
    z = logits[0, :, 0].T.tolist()  # per pixel [z1, z2]
    probabilities, cross_entropy = [], []
    for pixel, (z1, z2) in enumerate(z):
        total = 1 + math.exp(z1) + math.exp(z2)
        p = [1 / total, math.exp(z1) / total, math.exp(z2) / total]
        probabilities.append(p[1:])
        if valid[0, 0, pixel]:
            cross_entropy.append(-math.log(p[int(labels[0, 0, pixel])]))
    targets = [[[1, 0, 0], [0, 1, 0]]]
    per_class = [[[p[k] for p in probabilities] for k in range(2)]]
    expected = 0.7 * sum(cross_entropy) / 2 + 1.3 * dice_loss_by_hand(per_class, targets, [[1, 1, 0]])
    loss = masked_segmentation_loss(logits, labels, valid, 0.7, 1.3, class_activation="softmax")
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_sigmoid_loss_is_per_class_bce_against_one_hot_plus_class_dice():
    logits = torch.tensor([[[[2.0, -1.0, 0.5]], [[0.0, 1.5, -2.0]]]])
    labels = torch.tensor([[[1, 2, 0]]])
    valid = torch.tensor([[[True, True, False]]])
    targets = [[[1, 0, 0], [0, 1, 0]]]
    probabilities, bce = [[[], []]], []
    for k in range(2):
        for pixel in range(3):
            p = 1 / (1 + math.exp(-logits[0, k, 0, pixel].item()))
            probabilities[0][k].append(p)
            if valid[0, 0, pixel]:
                y = targets[0][k][pixel]
                bce.append(-(y * math.log(p) + (1 - y) * math.log(1 - p)))
    expected = sum(bce) / len(bce) + dice_loss_by_hand(probabilities, targets, [[1, 1, 0]])
    loss = masked_segmentation_loss(logits, labels, valid, class_activation="sigmoid")
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_model_loss_follows_the_configs_background_rule():
    processor = make_tiny_processor()
    processor.num_labels = 3
    images, maps = label_maps(2, 2)
    inputs = processor(images, segmentation_maps=maps)
    for rule in ("softmax", "sigmoid"):
        model = make_model(2, class_activation=rule)
        with torch.no_grad():
            outputs = model(**inputs, mode="surrogate")
        expected = masked_segmentation_loss(
            outputs.logits, inputs["labels"], inputs["valid_mask"], class_activation=rule
        )
        assert torch.equal(outputs.loss, expected)


# ----------------------------------------------------------------------------------------------- config
def test_config_classes_and_background_rule(tiny_sam_config):
    binary = AutoSamConfig(sam_config=tiny_sam_config)
    assert (binary.num_labels, binary.num_classes, binary.class_activation) == (2, 1, "softmax")
    config = AutoSamConfig(sam_config=tiny_sam_config, id2label=ID2LABEL[3], class_activation="sigmoid")
    assert config.num_classes == 3 and config.label2id == {"background": 0, "a": 1, "b": 2, "c": 3}
    with pytest.raises(ValueError, match="class_activation"):
        AutoSamConfig(sam_config=tiny_sam_config, class_activation="tanh")
    with pytest.raises(ValueError, match="num_labels must be >= 2"):
        AutoSamConfig(sam_config=tiny_sam_config, id2label={0: "background"})


# ----------------------------------------------------------------------------------------------- save, load, pipeline
def test_save_load_round_trip_and_pipeline_segments_per_present_class(three_class_model, tmp_path):
    model = three_class_model
    processor = make_tiny_processor()
    processor.num_labels = 4
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoSamForSegmentation.from_pretrained(tmp_path).eval()
    assert loaded.config.id2label == ID2LABEL[3] and loaded.prompt_generator.head.out_channels == 96
    image = PIL.Image.fromarray(np.random.default_rng(5).integers(0, 256, (30, 44, 3), dtype=np.uint8))
    inputs = processor(image)
    with torch.no_grad():
        expected, actual = model(**inputs), loaded(**inputs)
    assert torch.equal(actual.logits, expected.logits)

    segmenter = pipeline("image-segmentation", model=str(tmp_path), trust_remote_code=False)
    annotations = segmenter(image)
    label_map = processor.post_process_semantic_segmentation(expected, inputs["original_sizes"].tolist())[0].numpy()
    present = sorted(np.unique(label_map).tolist())
    assert [annotation["label"] for annotation in annotations] == [ID2LABEL[3][k] for k in present]
    for annotation, k in zip(annotations, present, strict=True):
        np.testing.assert_array_equal(np.asarray(annotation["mask"]) > 0, label_map == k)
