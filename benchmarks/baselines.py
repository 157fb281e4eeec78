"""The minimal training loops the learning benchmark (`benchmarks.bench_real_data`) compares the package against.

Written with bare torch on purpose: a baseline must not share the code it checks. Two networks train in the same loop
(`train_minimal`): AutoSAM's g + h exactly as the package builds them (`build_g_h`), and the standard baseline,
MONAI's FlexibleUNet with a ResNet-34 encoder (`build_unet`, random init; `pip install monai`). The loop: square
resize, random horizontal and vertical flips only, fp32, Adam at a constant rate, plain BCE + soft Dice, decoded
images preloaded; with `PipelineDraws` it replays `autosam-train`'s random draws (batch order and flips), so that
the two loops see the same batches and whatever still differs is how they train.

`score` is the one scoring rule of the benchmark, the minimal loops' validation and the test sets alike.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import sam_checkpoint

if TYPE_CHECKING:
    import datasets

    from benchmarks.bench_real_data import Settings

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@dataclass
class MinimalModel:
    """A network for the minimal loop: `forward` maps ImageNet-normalised (B, 3, S, S) to (B, 1, M, M) logits,
    S = `image_size`, M = `mask_size` (the square the masks are resized to)."""

    module: nn.Module
    image_size: int
    mask_size: int
    forward: Callable[[torch.Tensor], torch.Tensor]


def build_g_h(input_size: int) -> MinimalModel:
    """AutoSAM's g + h exactly as the pipeline builds them (same SAM config, input size and seed → same init),
    trained in surrogate mode; SAM stays frozen and is never run."""
    from autosam_hf import AutoSamForSegmentation
    from autosam_hf.runtime import use_fast_memory_format

    model = AutoSamForSegmentation.from_sam(str(sam_checkpoint("tiny_encoder")), prompt_input_size=input_size)
    model.set_trainable(prompt_generator=True, surrogate_decoder=True)
    use_fast_memory_format(model)
    mask_size = 4 * model.config.prompt_embedding_shape[1]  # h's output canvas, 4E = 256

    def forward(pixel_values: torch.Tensor) -> torch.Tensor:
        return model(pixel_values=pixel_values, mode="surrogate").logits

    return MinimalModel(model, input_size, mask_size, forward)


def build_unet(size: int) -> MinimalModel:
    """MONAI FlexibleUNet, ResNet-34 encoder, random init: the standard "resnet34 U-Net" baseline."""
    from monai.networks.nets import FlexibleUNet

    network = FlexibleUNet(in_channels=3, out_channels=1, backbone="resnet34", pretrained=False, spatial_dims=2)
    # Channels-last like g (which converts its own input): s/step then compares the networks, not memory layouts.
    network = network.to(memory_format=torch.channels_last)
    return MinimalModel(network, size, size, network)


def square_images(images: Sequence[PIL.Image.Image], size: int) -> torch.Tensor:
    """RGB images resized (bilinear, PIL) to size × size → uint8 (N, 3, size, size)."""
    arrays = [np.asarray(image.convert("RGB").resize((size, size), PIL.Image.BILINEAR)) for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def square_masks(masks: Sequence, size: int) -> torch.Tensor:
    """Ground-truth masks binarised, then resized (nearest) to size × size → float 0/1 (N, 1, size, size)."""
    from autosam_hf.model import binarize_mask

    arrays = [
        np.asarray(PIL.Image.fromarray(binarize_mask(mask) * 255).resize((size, size), PIL.Image.NEAREST)) > 127
        for mask in masks
    ]
    return torch.from_numpy(np.stack(arrays)).float()[:, None]


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, S, S) → ImageNet-normalised float32, channels-last."""
    pixels = (images.float() / 255 - IMAGENET_MEAN) / IMAGENET_STD
    return pixels.contiguous(memory_format=torch.channels_last)


def apply_flips(
    images: torch.Tensor, masks: torch.Tensor, left_right: torch.Tensor, up_down: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip the (image (3, S, S), mask (1, M, M)) pairs where `left_right` / `up_down` (bool (B,)) say so."""
    for dim, flip in ((-1, left_right), (-2, up_down)):
        flip = flip[:, None, None, None]
        images = torch.where(flip, images.flip(dim), images)
        masks = torch.where(flip, masks.flip(dim), masks)
    return images, masks


def random_flips(
    images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each pair left-right, and independently up-down, with p = 0.5."""
    left_right = torch.rand(len(images), generator=generator) < 0.5
    up_down = torch.rand(len(images), generator=generator) < 0.5
    return apply_flips(images, masks, left_right, up_down)


class PipelineDraws:
    """The random draws `autosam-train` makes, for the minimal loop to replay (`minimal:g+h/pipeline-draws`): with
    them the two loops see the same batches, so whatever still differs is how they train, not which draws they got.

    - batch order: accelerate's seedable sampler, a permutation from a generator seeded `seed + epoch`;
    - flips: view `epoch` of image `index` under the package's flips-only augmentation, read off a probe image (the
      flips draw one coin per image whatever its size).
    """

    def __init__(self, seed: int):
        from autosam_hf.data import JointAugmentation, augmentation_for_level, get_preset

        self.seed = seed
        reference = get_preset("kvasir").augmentation
        self.augmentation = JointAugmentation(augmentation_for_level(reference, "flips"), seed=seed)
        self.probe = probe = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)  # no two flips of it alike
        # (left-right, up-down) → the probe flipped so
        self.flipped = {
            (h, v): probe[:: -1 if v else 1, :: -1 if h else 1] for h in (False, True) for v in (False, True)
        }

    def order(self, epoch: int, size: int) -> torch.Tensor:
        return torch.randperm(size, generator=torch.Generator().manual_seed(self.seed + epoch))

    def flips(self, indices: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """bool (B,) left-right and up-down flips of view `epoch` of the images `indices`."""
        drawn = []
        for index in indices.tolist():
            view, _ = self.augmentation(self.probe, self.probe[..., 0], index, epoch)
            drawn.append(next(flips for flips, image in self.flipped.items() if np.array_equal(image, view)))
        left_right, up_down = zip(*drawn, strict=True)
        return torch.tensor(left_right), torch.tensor(up_down)


def bce_dice_loss(logits: torch.Tensor, masks: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Mean BCE-with-logits + mean over images of (1 − soft Dice); logits and masks (B, 1, M, M).

    Written here rather than imported: the reference loop must not share the code under test.
    """
    bce = F.binary_cross_entropy_with_logits(logits, masks)
    probabilities = torch.sigmoid(logits).flatten(1)
    targets = masks.flatten(1)
    dice = (2 * (probabilities * targets).sum(1) + smooth) / (probabilities.sum(1) + targets.sum(1) + smooth)
    return bce + (1 - dice).mean()


@torch.no_grad()
def predict_square(
    model: MinimalModel, images: torch.Tensor, sizes: Sequence[tuple[int, int]], batch_size: int
) -> list[np.ndarray]:
    """uint8 (N, 3, S, S) → list of (H_i, W_i) float32 probabilities, logits resized bilinearly to `sizes`."""
    from autosam_hf.runtime import use_fast_memory_format  # g's layout follows its mode; a U-Net keeps its own

    use_fast_memory_format(model.module.eval())
    probabilities = []
    for start in range(0, len(images), batch_size):
        device = next(model.module.parameters()).device
        logits = model.forward(normalize(images[start : start + batch_size]).to(device)).float().cpu()
        for image_logits, size in zip(logits, sizes[start : start + batch_size], strict=True):
            resized = F.interpolate(image_logits[None], size=tuple(size), mode="bilinear", align_corners=False)
            probabilities.append(torch.sigmoid(resized)[0, 0].numpy())
    return probabilities


@torch.no_grad()
def predict_letterboxed(model: MinimalModel, images: Sequence[PIL.Image.Image], batch_size: int) -> list[np.ndarray]:
    """As a letterboxing processor feeds g (SAM's rule; the pipeline's for Kvasir until the polyp presets squashed):
    longest edge to S, normalised, zero padding bottom/right; the logits' padded part is cropped and the rest resized
    to the original size. A probe of what letterboxing a non-square test image costs a model trained on square ones
    (Kvasir's here all are)."""
    from autosam_hf.runtime import use_fast_memory_format  # g's layout follows its mode; a U-Net keeps its own

    use_fast_memory_format(model.module.eval())
    device = next(model.module.parameters()).device
    side, mask_side = model.image_size, model.mask_size
    probabilities = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        canvases = torch.zeros(len(batch), 3, side, side)
        valid = []
        for row, image in enumerate(batch):
            scale = side / max(image.height, image.width)
            height, width = round(image.height * scale), round(image.width * scale)
            pixels = torch.from_numpy(np.array(image.convert("RGB").resize((width, height), PIL.Image.BILINEAR)))
            canvases[row, :, :height, :width] = normalize(pixels.permute(2, 0, 1)[None])[0]
            valid.append((round(height * mask_side / side), round(width * mask_side / side)))
        logits = model.forward(canvases.contiguous(memory_format=torch.channels_last).to(device)).float().cpu()
        for image_logits, image, (height, width) in zip(logits, batch, valid, strict=True):
            cropped = image_logits[None, :, :height, :width]
            resized = F.interpolate(cropped, size=(image.height, image.width), mode="bilinear", align_corners=False)
            probabilities.append(torch.sigmoid(resized)[0, 0].numpy())
    return probabilities


def train_minimal(
    model: MinimalModel,
    train: datasets.Dataset,
    val: datasets.Dataset,
    settings: Settings,
    name: str,
    replay_pipeline_draws: bool = False,
) -> list[dict]:
    """The minimal loop: fixed steps, batches of preloaded square tensors shuffled each epoch by a seeded generator
    (or, with `replay_pipeline_draws`, the pipeline's order and flips: `PipelineDraws`), flips only, fp32 Adam, BCE +
    soft Dice; validates every `eval_every` steps and keeps the best weights on val (loaded into `model.module` on
    return). `train` and `val` hold `image` (PIL) and `mask` columns; of `settings` it reads steps, batch_size,
    eval_every, seed, learning_rate, weight_decay, minutes (a wall-clock cap, or None) and device. Returns a log in
    `train_log.jsonl`'s schema, `name` labels its progress lines."""
    from autosam_hf.runtime import use_fast_memory_format  # g's layout follows its mode; a U-Net keeps its own

    images, masks = square_images(train["image"], model.image_size), square_masks(train["mask"], model.mask_size)
    val_images = square_images(val["image"], model.image_size)
    val_sizes = [(image.height, image.width) for image in val["image"]]
    val_masks = val["mask"]
    generator = torch.Generator().manual_seed(settings.seed)
    draws = PipelineDraws(settings.seed) if replay_pipeline_draws else None
    parameters = [p for p in model.module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    log, best, best_state = [], -1.0, None
    step, epoch, out_of_time = 0, 0, False
    started = time.monotonic()
    while step < settings.steps and not out_of_time:
        order = draws.order(epoch, len(images)) if draws else torch.randperm(len(images), generator=generator)
        for batch in order.split(settings.batch_size):
            use_fast_memory_format(model.module.train())
            if draws:
                batch_images, batch_masks = apply_flips(images[batch], masks[batch], *draws.flips(batch, epoch))
            else:
                batch_images, batch_masks = random_flips(images[batch], masks[batch], generator)
            device = settings.device
            loss = bce_dice_loss(model.forward(normalize(batch_images).to(device)), batch_masks.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            seconds = time.monotonic() - started
            log.append({"epoch": epoch, "step": step, "loss": loss.item(), "seconds": seconds})
            out_of_time = settings.minutes is not None and seconds > 60 * settings.minutes
            if step % settings.eval_every == 0 or step == settings.steps or out_of_time:
                scores = score(predict_square(model, val_images, val_sizes, settings.batch_size), val_masks)
                log.append({"epoch": epoch, "step": step, "val_dice": scores["dice"], "val_iou": scores["iou"]})
                print(f"[{name}] step {step}: val Dice {scores['dice']:.4f} ({seconds / 60:.1f} min)", flush=True)
                if scores["dice"] > best:
                    best, best_state = scores["dice"], copy.deepcopy(model.module.state_dict())
            if step >= settings.steps or out_of_time:
                break
        epoch += 1
    model.module.load_state_dict(best_state)
    return log


def score(probabilities: Sequence[np.ndarray], masks: Sequence) -> dict[str, float]:
    """Mean per-image Dice and IoU of `probabilities > 0.5` ((H, W) each, original size) against the masks.

    The one scoring rule of this benchmark; the training script's validation applies the same (`logits > 0`,
    `dice_iou_per_image` at the original size).
    """
    from autosam_hf.metrics import dice_iou_per_image
    from autosam_hf.model import binarize_mask

    scores = np.array(
        [dice_iou_per_image(p > 0.5, binarize_mask(m)) for p, m in zip(probabilities, masks, strict=True)]
    )
    return {"dice": float(scores[:, 0].mean()), "iou": float(scores[:, 1].mean())}
