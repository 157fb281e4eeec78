"""AutoSamForSegmentation: shapes per mode, frozen SAM, masked loss, round trips, Auto classes, pipeline, inputs."""

import math

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_tiny_model
from transformers import (
    AutoImageProcessor,
    AutoModel,
    AutoModelForSemanticSegmentation,
    SamConfig,
    pipeline,
)

import autosam_hf
from autosam_hf import AUTOSAM_MODES, AutoSamConfig, AutoSamForSegmentation, AutoSamImageProcessor
from autosam_hf.model.modeling_autosam import (
    AutoSamPromptGenerator,
    AutoSamSurrogateDecoder,
    masked_segmentation_loss,
)

IMAGE_SIZES = [(30, 40), (40, 30), (24, 24)]  # (height, width): landscape, portrait, square


def make_images_and_masks(batch_size: int, seed: int = 0):
    """Random uint8 RGB images of mixed (non-square) sizes, each with a rectangular 0/255 mask."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for i in range(batch_size):
        height, width = IMAGE_SIZES[i % len(IMAGE_SIZES)]
        images.append(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[height // 4 : height // 2, width // 5 : (3 * width) // 4] = 255
        masks.append(mask)
    return images, masks


@pytest.fixture(scope="module")
def eval_model() -> AutoSamForSegmentation:
    """The tiny model in eval mode, shared by tests that only run it (tests may monkeypatch, never mutate)."""
    return make_tiny_model().eval()


def sam_state(model: AutoSamForSegmentation) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.sam.state_dict().items()}


# ----------------------------------------------------------------------------------------------- forward shapes
@pytest.mark.parametrize("mode", AUTOSAM_MODES)
@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_forward_shapes(eval_model, tiny_processor, mode, batch_size):
    images, masks = make_images_and_masks(batch_size)
    inputs = tiny_processor(images, segmentation_maps=masks)
    with torch.no_grad():
        outputs = eval_model(**inputs, mode=mode)

    assert outputs.logits.shape == (batch_size, 1, 48, 48)
    assert outputs.loss.ndim == 0 and torch.isfinite(outputs.loss)
    prompt = outputs.prompt_embeddings
    assert prompt.shape == (batch_size, 32, 12, 12)
    assert prompt.min() >= -1 and prompt.max() <= 1
    if mode == "surrogate":
        assert outputs.iou_scores is None and outputs.image_embeddings is None
        assert torch.equal(outputs.surrogate_logits, outputs.logits)
    else:
        assert outputs.iou_scores.shape == (batch_size, 1)
        assert outputs.image_embeddings.shape == (batch_size, 32, 12, 12)
        assert outputs.surrogate_logits is None


def test_default_mode_and_mode_errors(tiny_sam_config, tiny_model):
    pixel_values = torch.randn(1, 3, 24, 24)
    tiny_model.eval()
    with torch.no_grad():
        assert tiny_model(pixel_values).iou_scores is not None  # default_mode "autosam"
        as_tuple = tiny_model(pixel_values, mode="surrogate", return_dict=False)
        assert isinstance(as_tuple, tuple) and as_tuple[0].shape == (1, 1, 48, 48)  # (logits, surrogate, prompt)
        tiny_model.config.default_mode = "surrogate"
        assert tiny_model(pixel_values).iou_scores is None
        with pytest.raises(ValueError, match="mode"):
            tiny_model(pixel_values, mode="points")
        with pytest.raises(ValueError, match="pixel_values"):
            tiny_model(image_embeddings=torch.randn(1, 32, 12, 12), mode="autosam")
    without_h = AutoSamForSegmentation.from_sam(tiny_sam_config, prompt_input_size=64, use_surrogate_decoder=False)
    assert without_h.surrogate_decoder is None
    with pytest.raises(ValueError, match="surrogate"):
        without_h(pixel_values, mode="surrogate")


@pytest.mark.parametrize("mode", ["autosam", "sam_mask_prompt"])
def test_precomputed_image_embeddings_skip_sam_encoder(eval_model, monkeypatch, mode):
    tiny_model = eval_model
    pixel_values = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        reference = tiny_model(pixel_values, mode=mode)
        image_embeddings = tiny_model.get_image_embeddings(pixel_values)

    def forbidden(*args, **kwargs):
        raise AssertionError("SAM's image encoder ran although image_embeddings were given")

    monkeypatch.setattr(tiny_model.sam.vision_encoder, "forward", forbidden)
    with torch.no_grad():
        outputs = tiny_model(pixel_values, image_embeddings=image_embeddings, mode=mode)
    assert torch.equal(outputs.image_embeddings, image_embeddings)
    torch.testing.assert_close(outputs.logits, reference.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(outputs.iou_scores, reference.iou_scores, rtol=0, atol=1e-6)
    # The logits really depend on the embeddings (a wrong cache would show).
    with torch.no_grad():
        shuffled = tiny_model(pixel_values, image_embeddings=image_embeddings.flip(0), mode=mode)
    assert not torch.allclose(shuffled.logits, reference.logits, atol=1e-3)


def test_surrogate_mode_never_runs_sam(eval_model, monkeypatch):
    tiny_model = eval_model

    def forbidden(*args, **kwargs):
        raise AssertionError("SAM ran in surrogate mode")

    for module in (tiny_model.sam.vision_encoder, tiny_model.sam.mask_decoder, tiny_model.sam.prompt_encoder):
        monkeypatch.setattr(module, "forward", forbidden)
    outputs = tiny_model(torch.randn(2, 3, 24, 24), mode="surrogate")
    assert outputs.logits.shape == (2, 1, 48, 48)


# ----------------------------------------------------------------------------------------------- frozen SAM, gradients
@pytest.mark.parametrize("mode", AUTOSAM_MODES)
def test_gradients_reach_only_prompt_generator_and_surrogate(tiny_model, tiny_processor, mode):
    images, masks = make_images_and_masks(2)
    tiny_model.train()
    tiny_model(**tiny_processor(images, segmentation_maps=masks), mode=mode).loss.backward()

    assert all(parameter.grad is None for parameter in tiny_model.sam.parameters())
    assert all(not parameter.requires_grad for parameter in tiny_model.sam.parameters())
    generator_grads = [parameter.grad for parameter in tiny_model.prompt_generator.parameters()]
    assert all(grad is not None for grad in generator_grads)
    assert any(grad.abs().sum() > 0 for grad in generator_grads)
    surrogate_grads = [parameter.grad for parameter in tiny_model.surrogate_decoder.parameters()]
    if mode == "surrogate":
        assert all(grad is not None and grad.abs().sum() > 0 for grad in surrogate_grads)
    else:
        assert all(grad is None for grad in surrogate_grads)


def test_optimizer_step_leaves_sam_byte_identical(tiny_model, tiny_processor):
    images, masks = make_images_and_masks(1)
    inputs = tiny_processor(images, segmentation_maps=masks)
    sam_before = sam_state(tiny_model)
    generator_before = {k: v.clone() for k, v in tiny_model.prompt_generator.state_dict().items()}
    surrogate_before = {k: v.clone() for k, v in tiny_model.surrogate_decoder.state_dict().items()}
    # A careless optimizer over every parameter, with weight decay (which would move SAM if it had grads),
    # then one over the trainable ones only.
    all_parameters = torch.optim.Adam(tiny_model.parameters(), lr=3e-4, weight_decay=1e-5)
    trainable = torch.optim.Adam([p for p in tiny_model.parameters() if p.requires_grad], lr=3e-4, weight_decay=1e-5)

    tiny_model.train()
    for optimizer, mode in ((all_parameters, "sam_mask_prompt"), (trainable, "surrogate")):
        optimizer.zero_grad()
        tiny_model(**inputs, mode=mode).loss.backward()
        optimizer.step()

    sam_after = tiny_model.sam.state_dict()
    assert sam_after.keys() == sam_before.keys()
    for name, tensor in sam_before.items():
        assert torch.equal(sam_after[name], tensor), name
    generator_after = tiny_model.prompt_generator.state_dict()
    changed = [name for name, tensor in generator_before.items() if not torch.equal(generator_after[name], tensor)]
    assert "head.weight" in changed and "encoder.base.0.conv.weight" in changed
    surrogate_after = tiny_model.surrogate_decoder.state_dict()
    assert not torch.equal(surrogate_after["layers.0.weight"], surrogate_before["layers.0.weight"])


def test_train_keeps_sam_in_eval_mode(tiny_model, tmp_path):
    tiny_model.train()
    assert tiny_model.training and tiny_model.prompt_generator.training and tiny_model.surrogate_decoder.training
    assert not tiny_model.sam.training
    assert not any(module.training for module in tiny_model.sam.modules())
    tiny_model.eval()
    assert not tiny_model.prompt_generator.training

    tiny_model.save_pretrained(tmp_path)
    loaded, loading_info = AutoSamForSegmentation.from_pretrained(tmp_path, output_loading_info=True)
    assert not loading_info["missing_keys"] and not loading_info["unexpected_keys"]
    assert not any(parameter.requires_grad for parameter in loaded.sam.parameters())
    assert all(parameter.requires_grad for parameter in loaded.prompt_generator.parameters())
    loaded.train()
    assert not loaded.sam.training


# ----------------------------------------------------------------------------------------------- loss
def test_masked_segmentation_loss_matches_hand_computation():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, 3.0]]], [[[-2.0, 0.0], [1.0, -0.5]]]])  # (2, 1, 2, 2)
    labels = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [0.0, 0.0]]])
    valid = torch.tensor([[[True, True], [True, False]], [[True, True], [False, False]]])

    def bce(x, y):
        p = 1 / (1 + math.exp(-x))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    pixels = [
        (logits[b, 0, i, j].item(), labels[b, i, j].item(), b)
        for b in range(2)
        for i in range(2)
        for j in range(2)
        if valid[b, i, j]
    ]
    expected_bce = sum(bce(x, y) for x, y, _ in pixels) / len(pixels)
    dice_losses = []
    for b in range(2):
        own = [(1 / (1 + math.exp(-x)), y) for x, y, image in pixels if image == b]
        intersection = sum(p * y for p, y in own)
        dice = (2 * intersection + 1) / (sum(p for p, _ in own) + sum(y for _, y in own) + 1)
        dice_losses.append(1 - dice)
    expected_dice = sum(dice_losses) / 2

    loss = masked_segmentation_loss(logits, labels, valid, bce_weight=0.5, dice_weight=2.0)
    assert loss.item() == pytest.approx(0.5 * expected_bce + 2.0 * expected_dice, rel=1e-6)
    # (B, H, W) logits and no valid mask: every pixel counts.
    everything = masked_segmentation_loss(logits[:, 0], labels)
    assert everything.item() == pytest.approx(
        masked_segmentation_loss(logits, labels, torch.ones_like(valid)).item(), rel=1e-6
    )


def test_loss_ignores_padding(eval_model, tiny_processor):
    images, masks = make_images_and_masks(2)  # 30x40 and 40x30: both padded
    inputs = tiny_processor(images, segmentation_maps=masks)
    labels, valid = inputs["labels"], inputs["valid_mask"]
    assert not valid.all() and valid.any()
    outside = labels.clone()
    outside[~valid] = 1 - outside[~valid]
    inside = labels.clone()
    row, col = [int(index) for index in valid[0].nonzero()[0]]
    inside[0, row, col] = 1 - inside[0, row, col]
    config = eval_model.config
    with torch.no_grad():
        for mode in ("autosam", "surrogate"):
            outputs = eval_model(**inputs, mode=mode)
            # The model's loss is masked_segmentation_loss of its logits with the processor's valid_mask ...
            assert torch.equal(
                outputs.loss,
                masked_segmentation_loss(
                    outputs.logits, labels, valid, config.bce_loss_weight, config.dice_loss_weight
                ),
            )
            # ... which does not see labels on the padding (exactly), but does see every label on the image.

            def loss_with(new_labels, logits=outputs.logits):
                return masked_segmentation_loss(
                    logits, new_labels, valid, config.bce_loss_weight, config.dice_loss_weight
                )

            assert torch.equal(eval_model(**{**inputs, "labels": outside}, mode=mode).loss, outputs.loss)
            assert torch.equal(loss_with(outside), outputs.loss)
            assert not torch.equal(loss_with(inside), outputs.loss)


# ----------------------------------------------------------------------------------------------- save / load
def test_save_pretrained_round_trip(tiny_model, tiny_processor, tmp_path):
    images, _ = make_images_and_masks(2)
    inputs = tiny_processor(images)
    tiny_model.config.default_mode = "sam_mask_prompt"
    tiny_model.eval()
    tiny_model.save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)

    saved = {path.name for path in tmp_path.iterdir()}
    assert "model.safetensors" in saved and "config.json" in saved
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in saved)

    loaded = AutoSamForSegmentation.from_pretrained(tmp_path)
    assert not loaded.training and loaded.config.default_mode == "sam_mask_prompt"
    for name, tensor in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    with torch.no_grad():
        for mode in AUTOSAM_MODES:
            expected, actual = tiny_model(**inputs, mode=mode), loaded(**inputs, mode=mode)
            assert torch.equal(actual.logits, expected.logits), mode
            assert torch.equal(actual.prompt_embeddings, expected.prompt_embeddings), mode

    processor = AutoSamImageProcessor.from_pretrained(tmp_path)
    assert processor.to_dict() == tiny_processor.to_dict()
    reloaded_inputs = processor(images)
    assert torch.equal(reloaded_inputs["pixel_values"], inputs["pixel_values"])


def test_auto_classes_in_process(tiny_model, tiny_processor, tmp_path):
    assert autosam_hf.AutoSamForSegmentation is AutoSamForSegmentation
    tiny_model.save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)
    for auto_class in (AutoModel, AutoModelForSemanticSegmentation):
        model = auto_class.from_pretrained(tmp_path)
        assert type(model) is AutoSamForSegmentation
        assert not any(parameter.requires_grad for parameter in model.sam.parameters())
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is AutoSamImageProcessor


def test_pipeline_in_process(eval_model, tiny_processor, tmp_path):
    tiny_model = eval_model
    tiny_model.save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)
    image = PIL.Image.fromarray(np.random.default_rng(3).integers(0, 256, (30, 44, 3), dtype=np.uint8))

    # trust_remote_code=False: use the classes `import autosam_hf` registered, not the folder's copy. (Left unset,
    # the pipeline's optional video-processor look-up finds the folder's remote code and asks on stdin.)
    segmenter = pipeline("image-segmentation", model=str(tmp_path), trust_remote_code=False)
    assert type(segmenter.model) is AutoSamForSegmentation
    annotations = segmenter(image)

    with torch.no_grad():
        inputs = tiny_processor(image)
        logits = tiny_model(**inputs).logits
    expected = (tiny_processor.post_process_logits(logits, inputs["original_sizes"])[0] > 0).numpy()
    assert_pipeline_output(annotations, image, expected, tiny_model.config.id2label)


def assert_pipeline_output(annotations, image, expected_foreground, id2label):
    """Pipeline masks: labels from id2label, masks the size of the image, partitioning it, foreground as expected."""
    assert annotations and all(annotation["label"] in id2label.values() for annotation in annotations)
    coverage = np.zeros((image.height, image.width), dtype=int)
    foreground = np.zeros((image.height, image.width), dtype=bool)
    for annotation in annotations:
        assert annotation["mask"].size == image.size
        mask = np.asarray(annotation["mask"]) > 0
        coverage += mask
        if annotation["label"] == id2label[1]:
            foreground = mask
    assert (coverage == 1).all()
    np.testing.assert_array_equal(foreground, expected_foreground)


# ----------------------------------------------------------------------------------------------- prompt generator, h
def test_prompt_generator_for_real_sam_shape():
    """g at the paper's polyp resolution, producing real SAM's (256, 64, 64) prompt from a 1024² SAM input."""
    config = AutoSamConfig(sam_config=SamConfig().to_dict(), prompt_input_size=352)
    torch.manual_seed(0)
    generator = AutoSamPromptGenerator(config).eval()
    features = {}
    generator.encoder.register_forward_hook(lambda module, args, output: features.update(shapes=output))
    with torch.no_grad():
        prompt = generator(torch.randn(1, 3, 1024, 1024))
    assert prompt.shape == (1, 1, 256, 64, 64)  # (B, K, C, E, E), K = 1
    assert prompt.abs().max() <= 1
    # g resized the 1024² input to 352² before its encoder: HarDNet-85 features at strides 4, 8, 16.
    assert [tuple(f.shape) for f in features["shapes"]] == [(1, 192, 88, 88), (1, 320, 44, 44), (1, 720, 22, 22)]


def test_surrogate_decoder_matches_paper_size():
    config = AutoSamConfig(sam_config=SamConfig().to_dict())
    decoder = AutoSamSurrogateDecoder(config)
    assert sum(parameter.numel() for parameter in decoder.parameters()) == 151_809
    assert decoder(torch.zeros(1, 256, 64, 64)).shape == (1, 1, 256, 256)


# ----------------------------------------------------------------------------------------------- inputs
def test_g_reads_the_prompt_canvas_and_sam_the_sam_canvas(eval_model, tiny_processor):
    images, _ = make_images_and_masks(2)
    inputs = tiny_processor(images)
    with torch.no_grad():
        outputs = eval_model(**inputs, mode="autosam")
        expected_prompt = eval_model.prompt_generator(inputs["prompt_pixel_values"])[:, 0]  # K = 1
        expected_embeddings = eval_model.get_image_embeddings(inputs["pixel_values"])
        surrogate_only = eval_model(prompt_pixel_values=inputs["prompt_pixel_values"], mode="surrogate")
        cached = eval_model(
            prompt_pixel_values=inputs["prompt_pixel_values"], image_embeddings=expected_embeddings, mode="autosam"
        )
    torch.testing.assert_close(outputs.prompt_embeddings, expected_prompt, rtol=0, atol=0)
    torch.testing.assert_close(outputs.image_embeddings, expected_embeddings, rtol=0, atol=0)
    torch.testing.assert_close(cached.logits, outputs.logits, rtol=0, atol=0)
    assert surrogate_only.logits.shape == (2, 1, 48, 48)
    with pytest.raises(ValueError, match="runs SAM: pass pixel_values"):
        eval_model(prompt_pixel_values=inputs["prompt_pixel_values"], mode="autosam")
    with pytest.raises(ValueError, match="prompt_pixel_values \\(or pixel_values\\) is required"):
        eval_model(image_embeddings=expected_embeddings, mode="autosam")


def test_without_a_prompt_canvas_g_resizes_sams(eval_model):
    """Processors saved before the prompt canvas give only pixel_values: g resizes them to its input size."""
    pixel_values = torch.randn(1, 3, 24, 24)
    resized = torch.nn.functional.interpolate(pixel_values, size=(64, 64), mode="bilinear", antialias=True)
    with torch.no_grad():
        legacy = eval_model(pixel_values=pixel_values, mode="surrogate").logits
        explicit = eval_model(prompt_pixel_values=resized, mode="surrogate").logits
    torch.testing.assert_close(legacy, explicit, rtol=0, atol=0)
