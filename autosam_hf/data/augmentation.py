"""Joint image + mask augmentation with kornia, with the AutoSAM reference code's settings.

The reference code (``dataset/tfs.py`` + ``dataset/transforms_shir.py`` of talshaharabany/AutoSAM) applies, in
this order: ``ColorJitter`` (always; brightness/contrast/saturation factors drawn from [1 - x, 1 + x], hue shift
from [-h, h], the four steps in random order), ``RandomVerticalFlip`` (polyps only) and ``RandomHorizontalFlip``
(p = 0.5 each), then ``RandomAffine`` (always; rotation uniform in [-d, d], scale uniform in the range, no
translation or shear, zero fill; bilinear for the image, nearest for the mask). kornia's `ColorJitter` uses
torchvision's formulas, so the same settings give the same distribution.

Strength levels (`augmentation_for_level`): `reference` is the reference code's setting above (the paper's recipe);
`light` keeps the flips and applies a milder jitter (no hue shift) and a milder affine (±15°, scale 0.9–1.1) to
half the views each; `flips` keeps only the flips; `none` is the identity.

A view is a fixed random draw: view ``v`` of example ``i`` draws its parameters (jitter factors and order, flips,
angle, scale) under a torch seed derived from ``(seed, i, v)``, so the same triple always gives the same pixels (on
CPU, where the data pipeline runs) and an embedding cached for it stays valid. `JointAugmentation.parameters` hands
the same draw to `device_augmentation.DeviceAugmentation`, which applies it batched on the accelerator.
"""

import dataclasses
import json
from dataclasses import dataclass

import kornia.augmentation as K
import numpy as np
import torch
from PIL import Image

from ..model.image_processing_autosam import binarize_mask
from ..runtime import single_thread


@dataclass(frozen=True)
class AugmentationConfig:
    """Settings of a joint augmentation. The defaults are the identity (no augmentation).

    Attributes:
        brightness, contrast, saturation: jitter strength x; factor drawn from [max(0, 1 - x), 1 + x].
        hue: hue shift drawn from [-hue, hue], in turns (at most 0.5).
        horizontal_flip, vertical_flip: flip with probability 0.5.
        rotation_degrees: rotation drawn from [-rotation_degrees, rotation_degrees].
        scale_range: isotropic scale drawn from this (min, max) range.
        jitter_probability, affine_probability: how often the colour jitter and the affine are applied (the
            reference code: always).
    """

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    rotation_degrees: float = 0.0
    scale_range: tuple[float, float] = (1.0, 1.0)
    jitter_probability: float = 1.0
    affine_probability: float = 1.0

    @property
    def is_identity(self) -> bool:
        return self == AugmentationConfig()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


NO_AUGMENTATION = AugmentationConfig()
POLYP_AUGMENTATION = AugmentationConfig(
    brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1,
    horizontal_flip=True, vertical_flip=True, rotation_degrees=90.0, scale_range=(0.75, 1.25),
)  # fmt: skip
GLAS_AUGMENTATION = AugmentationConfig(
    brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1,
    horizontal_flip=True, rotation_degrees=5.0, scale_range=(0.75, 1.25),
)  # fmt: skip
MONUSEG_AUGMENTATION = AugmentationConfig(
    brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1,
    horizontal_flip=True, rotation_degrees=22.0, scale_range=(0.75, 1.25),
)  # fmt: skip


AUGMENTATION_LEVELS = ("reference", "light", "flips", "none")


def augmentation_for_level(reference: AugmentationConfig, level: str) -> AugmentationConfig:
    """The dataset's `reference` augmentation at strength `level` (see the module docstring); flips as the
    reference has them."""
    flips = {"horizontal_flip": reference.horizontal_flip, "vertical_flip": reference.vertical_flip}
    if level == "reference":
        return reference
    if level == "light":
        return AugmentationConfig(
            brightness=min(reference.brightness, 0.2),
            contrast=min(reference.contrast, 0.2),
            saturation=min(reference.saturation, 0.2),
            rotation_degrees=min(reference.rotation_degrees, 15.0),
            scale_range=(max(reference.scale_range[0], 0.9), min(reference.scale_range[1], 1.1)),
            jitter_probability=0.5,
            affine_probability=0.5,
            **flips,
        )
    if level == "flips":
        return AugmentationConfig(**flips)
    if level == "none":
        return NO_AUGMENTATION
    raise ValueError(f"augmentation level must be one of {AUGMENTATION_LEVELS}, got {level!r}")


def _build_pipeline(config: AugmentationConfig) -> K.AugmentationSequential:
    steps = []
    if any((config.brightness, config.contrast, config.saturation, config.hue)):
        jitter = (config.brightness, config.contrast, config.saturation, config.hue)
        steps.append(K.ColorJitter(*jitter, p=config.jitter_probability))
    if config.vertical_flip:
        steps.append(K.RandomVerticalFlip(p=0.5))
    if config.horizontal_flip:
        steps.append(K.RandomHorizontalFlip(p=0.5))
    if config.rotation_degrees or config.scale_range != (1.0, 1.0):
        steps.append(
            K.RandomAffine(degrees=config.rotation_degrees, scale=config.scale_range, p=config.affine_probability)
        )
    # "mask" inputs are resampled with nearest interpolation (kornia's default for that data key).
    return K.AugmentationSequential(*steps, data_keys=["input", "mask"])


NEUTRAL_JITTER = (1.0, 1.0, 1.0, 0.0)  # brightness, contrast, saturation factors and hue shift that change nothing


def to_arrays(
    image: Image.Image | np.ndarray, mask: Image.Image | np.ndarray, label_map: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The identity view: ``(image uint8 (H, W, 3), mask uint8 (H, W))``: in {0, 1} by the package's one
    binarisation rule (`binarize_mask`: a 0/255 JPEG mask's noise stays background), or with ``label_map=True`` the
    class ids as they are."""
    if isinstance(image, Image.Image):
        image = image.convert("RGB")
    image = np.asarray(image, dtype=np.uint8)
    mask = np.asarray(mask).astype(np.uint8) if label_map else binarize_mask(mask)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected an RGB image of shape (H, W, 3), got {image.shape}.")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"Mask shape {mask.shape} does not match image shape {image.shape[:2]}.")
    return image, mask


class JointAugmentation:
    """Deterministic joint augmentation: ``augment(image, mask, index, view)`` always returns the same view.

    Args:
        config: the settings (`POLYP_AUGMENTATION`, `GLAS_AUGMENTATION`, `MONUSEG_AUGMENTATION`, or
            `NO_AUGMENTATION` for evaluation, which returns the inputs unchanged).
        seed: the run's augmentation seed; part of every view's draw.
    """

    def __init__(self, config: AugmentationConfig = NO_AUGMENTATION, seed: int = 0):
        self.config = config
        self.seed = seed
        self._pipeline = None if config.is_identity else _build_pipeline(config)

    @property
    def is_identity(self) -> bool:
        return self.config.is_identity

    def fingerprint(self) -> str:
        """A string that changes whenever the augmentation's output could change (settings, seed)."""
        if self.is_identity:
            return "identity"
        return json.dumps({"config": self.config.to_dict(), "seed": self.seed}, sort_keys=True)

    def view_seed(self, index: int, view: int) -> int:
        """The torch seed of view ``view`` of example ``index``."""
        if index < 0 or view < 0:
            raise ValueError(f"index and view must be >= 0, got index={index}, view={view}.")
        return int(np.random.SeedSequence([self.seed, index, view]).generate_state(1, dtype=np.uint64)[0] >> 1)

    def _draw(self, index: int, view: int, size: tuple[int, int]) -> list:
        """kornia's parameters of view ``view`` of example ``index`` on an image of ``size`` (height, width): the one
        place a view is drawn, on the CPU under its own seed, whichever path then applies it."""
        seed = self.view_seed(index, view)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._pipeline.forward_parameters(torch.Size((1, 3, *size)))

    def parameters(self, index: int, view: int, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The draw of view ``view`` of example ``index`` (an image of ``size`` (height, width)) as plain tensors, the
        neutral value for each step not configured or not applied (p < 1):

            - `jitter_factors` (4,) float32: brightness, contrast, saturation factors and the hue shift (in turns);
            - `jitter_order` (4,) int64: the order of those four steps;
            - `flips` (2,) bool: vertical, horizontal (the vertical flip first);
            - `angle` () float32 degrees, `scale` () float32, `affine` () bool: the rotation and isotropic scale
              about the image centre, applied after the flips.
        """
        drawn = {
            "jitter_factors": torch.tensor(NEUTRAL_JITTER),
            "jitter_order": torch.arange(4),
            "flips": torch.zeros(2, dtype=torch.bool),
            "angle": torch.zeros(()),
            "scale": torch.ones(()),
            "affine": torch.zeros((), dtype=torch.bool),
        }
        if self._pipeline is None:
            return drawn
        for step, item in zip(self._pipeline.children(), self._draw(index, view, size), strict=True):
            params = item.data
            applied = bool(params["batch_prob"][0] > 0.5)
            if isinstance(step, K.ColorJitter) and applied:
                names = ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor")
                drawn["jitter_factors"] = torch.stack([params[name][0] for name in names]).float()
                drawn["jitter_order"] = params["order"].clone()
            elif isinstance(step, K.RandomVerticalFlip):
                drawn["flips"][0] = applied
            elif isinstance(step, K.RandomHorizontalFlip):
                drawn["flips"][1] = applied
            elif isinstance(step, K.RandomAffine) and applied:
                drawn |= {"angle": params["angle"][0].float(), "scale": params["scale"][0, 0].float()}
                drawn["affine"] = torch.ones((), dtype=torch.bool)
        return drawn

    def __call__(
        self,
        image: Image.Image | np.ndarray,
        mask: Image.Image | np.ndarray,
        index: int,
        view: int,
        label_map: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return view ``view`` of example ``index``.

        Args:
            image: RGB PIL image, or uint8 array (H, W, 3).
            mask: PIL image or array (H, W); non-zero is foreground, or class ids with ``label_map``.
            index: the example's row in its dataset.
            view: which fixed random draw (epoch ``e`` of a K-view cache uses ``e % K``).
            label_map: keep the mask's class ids (nearest resampling moves labels without mixing them).

        Returns:
            ``(image, mask)``: uint8 arrays (H, W, 3) and (H, W) with values {0, 1} (or the class ids), the input's
            size.
        """
        image, mask = to_arrays(image, mask, label_map)
        if self._pipeline is None:
            return image, mask
        image_tensor = torch.tensor(image).permute(2, 0, 1)[None].float() / 255  # (1, 3, H, W)
        mask_tensor = torch.tensor(mask)[None, None].float()  # (1, 1, H, W)
        params = self._draw(index, view, image.shape[:2])
        # One thread, whatever process runs it: the same pixels in a data-loader worker and in the main process, and
        # several times faster than splitting one image's ops across threads.
        with single_thread():
            image_tensor, mask_tensor = self._pipeline(image_tensor, mask_tensor, params=params)
        augmented_image = (image_tensor[0].permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8)
        mask_tensor = mask_tensor[0, 0]
        augmented_mask = (mask_tensor.round() if label_map else mask_tensor > 0.5).to(torch.uint8)
        return augmented_image.numpy(), augmented_mask.numpy()
