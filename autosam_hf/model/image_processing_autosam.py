"""Image processor for AutoSAM.

Builds on transformers' SAM processor (PIL backend, so torchvision is not needed): resize, rescale, normalise **once**
with ImageNet statistics. It makes up to two canvases of the same image, each straight from the original pixels:

- the SAM canvas (`pixel_values`, S×S, S = 1024 for released SAMs), for SAM's image encoder;
- the prompt canvas (`prompt_pixel_values`, P×P, P = g's input size), for the prompt generator g.

Only the canvases a forward pass needs are built (`canvases=`): h(g(I)) needs no SAM canvas, and neither does
training from cached SAM embeddings, so neither pays for a 1024² image it would only shrink again. Masks go to the
low-resolution label canvas (4E × 4E, 256² for released SAMs) with a `valid_mask` that marks the unpadded part, so
the loss never learns the padding. Post-processing crops the padding and resizes back to each original image.

Every canvas (SAM's, g's, the labels') follows one canvas rule (`canvas_rule`), so that g's dense prompt, the image
embedding and the labels cover the same part of the image:

- `"letterbox"` (the default for SAM, MedSAM, SAM-HQ, as `SamImageProcessor`): longest edge to the canvas side, zero
  padding bottom/right;
- `"squash"` (the default for SAM 2, as `Sam2ImageProcessor`): both edges to the canvas side, aspect ratio not kept,
  no padding. A model's config may choose it for any frozen model (`AutoSamConfig.canvas_rule`): the polyp
  presets do, because their training images come squashed to 352² and test images must have the same geometry.

A frozen checkpoint whose own preprocessing differs from SAM's (MedSAM: no ImageNet normalisation, bicubic) gives its
settings as `sam_preprocessing`; they change SAM's canvas only, as g was built for ImageNet statistics.

`device_canvas.preprocess_on_device` builds the same canvases on a torch device from the uint8 pixels, by this
processor's sizes and `canvas_settings`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.models.auto.modeling_auto import MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES
from transformers.models.sam.image_processing_pil_sam import SamImageProcessorKwargs, SamImageProcessorPil

from .frozen_sam import CANVAS_RULES, LETTERBOX, SQUASH, frozen_sam_class
from .segmentation_classes import label_maps_from_logits

ImageLike = PIL.Image.Image | np.ndarray | torch.Tensor
SAM_CANVAS, PROMPT_CANVAS, LABEL_CANVAS = "sam", "prompt", "labels"
CANVAS_OUTPUTS = {SAM_CANVAS: "pixel_values", PROMPT_CANVAS: "prompt_pixel_values"}
# An output name → the canvas it holds (`canvas_side`, `canvas_settings`): the two image canvases and the labels.
OUTPUT_CANVASES = {output: canvas for canvas, output in CANVAS_OUTPUTS.items()} | {"labels": LABEL_CANVAS}
# What makes a canvas's values besides its size: the processor's settings, `sam_preprocessing` over them on SAM's.
CANVAS_SETTINGS = ("do_resize", "resample", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std")


def canvases_for_mode(*modes: str) -> tuple[str, ...]:
    """The canvases forward passes in `modes` read: h(g(I)) ("surrogate") needs only g's; SAM modes need both."""
    if all(mode == "surrogate" for mode in modes):
        return (PROMPT_CANVAS,)
    return (SAM_CANVAS, PROMPT_CANVAS)


def to_rgb_uint8(image: ImageLike, name: str = "image") -> np.ndarray:
    """Any supported image as an (H, W, 3) uint8 RGB array.

    Accepts PIL images (any mode), numpy arrays (H, W) or (H, W, C) and torch tensors (H, W) or (C, H, W), with
    C in {1, 3, 4}; uint8, uint16 (scaled by 1/257), bool, or float in [0, 1]. Alpha is dropped, grey is repeated.
    """
    if isinstance(image, PIL.Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            image = np.asarray(image)
        else:
            return np.asarray(image.convert("RGB"))
    elif isinstance(image, torch.Tensor):
        array = image.detach().cpu().numpy()
        image = np.moveaxis(array, 0, -1) if array.ndim == 3 and array.shape[0] in (1, 3, 4) else array
    elif not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: unsupported type {type(image).__name__}; expected a PIL image, numpy array or tensor")

    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name}: expected (H, W) or (H, W, C) with C in 1, 3, 4; got shape {tuple(image.shape)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name}: empty image of shape {tuple(image.shape)}")
    image = image[..., :3] if image.shape[-1] == 4 else image
    image = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image

    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if image.dtype == np.uint16 or (np.issubdtype(image.dtype, np.integer) and image.max() > 255):
        if image.max() > 65535 or image.min() < 0:
            raise ValueError(f"{name}: integer values outside 0..65535 cannot be read as an image")
        return (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer):
        if image.min() < 0:
            raise ValueError(f"{name}: negative pixel values")
        return image.astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
            raise ValueError(f"{name}: float images must hold values in [0, 1] (got {image.min()}..{image.max()})")
        return (image * 255).round().astype(np.uint8)
    raise ValueError(f"{name}: unsupported dtype {image.dtype}")


_WIDE_INTEGER_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def mask_array(mask: ImageLike, name: str = "mask") -> np.ndarray:
    """A mask as its (H, W) array of stored values: PIL masks keep their indices (palette, 16-bit, bilevel as 0/1);
    colour masks, PIL or array alike, read as their brightest colour channel (a red or green annotation on black is
    foreground, which grey conversion would make dark); one-channel arrays and tensors as that channel."""
    if isinstance(mask, PIL.Image.Image):
        if mask.mode == "1":
            return np.asarray(mask, dtype=np.uint8)
        # Palette masks keep their indices: converting them to grey would turn label 1 into its colour's grey.
        keep = mask.mode in _WIDE_INTEGER_MODES or mask.mode in ("L", "P")
        mask = np.asarray(mask if keep else mask.convert("RGB"))
    elif isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    elif not isinstance(mask, np.ndarray):
        raise TypeError(f"{name}: unsupported type {type(mask).__name__}; expected a PIL image, numpy array or tensor")
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim == 3 and mask.shape[-1] in (3, 4):
        mask = mask[..., :3].max(axis=-1)  # alpha left out
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"{name}: expected a single-channel (H, W) mask, got shape {tuple(mask.shape)}")
    return mask


def binarize_mask(mask: ImageLike, name: str = "mask", instance_labels: bool = False) -> np.ndarray:
    """A ground-truth mask as an (H, W) uint8 array of 0/1. The one binarisation rule of this package:

    - bool and bilevel (PIL "1") masks as they are;
    - 16/32-bit integer masks (instance label maps such as MoNuSeg's) → > 0;
    - 8-bit masks (grey, palette indices; colour masks through their brightest channel, `mask_array`) whose
      maximum exceeds 1 → > 127 (0/255 masks, JPEG noise included); 8-bit 0/1 masks → > 0;
    - `instance_labels=True` (e.g. GlaS `*_anno.bmp`: 0 background, 1..N glands) → > 0 whatever the depth;
    - float masks → > 0.5.
    """
    mask = mask_array(mask, name)
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if np.issubdtype(mask.dtype, np.floating):
        return (mask > 0.5).astype(np.uint8)
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"{name}: unsupported dtype {mask.dtype}")
    if instance_labels or mask.dtype != np.uint8:
        return (mask > 0).astype(np.uint8)
    return (mask > (127 if mask.max() > 1 else 0)).astype(np.uint8)


def read_label_map(mask: ImageLike, num_labels: int, name: str = "mask") -> np.ndarray:
    """A label-map mask (one value per pixel: 0 background, 1..K the classes, K = `num_labels` - 1) as an (H, W)
    uint8 array, checked. Raises ValueError naming `name` when a value is not an integer in 0..K (e.g. a 0/255
    binary mask given to a model of fewer than 255 classes)."""
    array = mask_array(mask, name)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating) and np.isfinite(array).all() and np.array_equal(array, array.round()):
        array = array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name}: a label map holds integer class ids 0..{num_labels - 1}, got dtype {array.dtype}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > num_labels - 1:
        bad = high if high > num_labels - 1 else low
        raise ValueError(
            f"{name}: value {bad} is not a class id of this {num_labels}-label model (label maps hold 0..."
            f"{num_labels - 1}: 0 background, 1..{num_labels - 1} the classes)"
        )
    return array.astype(np.uint8)


def mask_to_labels(mask: ImageLike, num_labels: int = 2, name: str = "mask") -> np.ndarray:
    """A ground-truth mask as the (H, W) uint8 label map a model of `num_labels` labels trains on: binary models
    (`num_labels=2`) binarise it (`binarize_mask`: 0/255, 0/1, instance ids, ...); multi-class models read it as a
    label map with values 0..K (`read_label_map`)."""
    return binarize_mask(mask, name=name) if num_labels == 2 else read_label_map(mask, num_labels, name=name)


# Label (and coordinate) of padding points, as SamProcessor pads ragged point lists: transformers' prompt encoders give
# them zero embeddings.
PROMPT_PAD_VALUE = -10


def _as_nested_list(value: Any) -> Any:
    return value.tolist() if isinstance(value, (torch.Tensor, np.ndarray)) else value


def _per_image_per_class(
    value: Any, name: str, batch_size: int, num_classes: int, leaf: int | None, single: bool = False
) -> list[list[np.ndarray]]:
    """A nested prompt argument → [image][class] arrays: (n, leaf) coordinates (`leaf` 2 or 4) or (n,) labels
    (`leaf` None). `single`: one item per class (boxes). An image's entry lists its classes' items, or (K = 1) the
    items themselves; None or [] is no items."""
    value = _as_nested_list(value)
    if not isinstance(value, (list, tuple)) or len(value) != batch_size:
        given = f"{len(value)} entries" if isinstance(value, (list, tuple)) else type(value).__name__
        raise ValueError(f"{name}: expected one entry per image ({batch_size}), got {given}")
    leaf_depth = 1 if leaf is None else 2  # nesting of one class's items: labels [l, ...], points [[x, y], ...]
    if single:
        leaf_depth -= 1  # one box per class: [x0, y0, x1, y1]
    result = []
    for i, entry in enumerate(value):
        entry = _as_nested_list(entry)
        if _is_empty(entry):  # None, [], or only empty classes: nothing for this image
            result.append([np.zeros((0,) if leaf is None else (0, leaf))] * num_classes)
            continue
        depth = _nesting_depth(entry)
        if depth == leaf_depth + 1:
            classes = list(entry)
        elif depth == leaf_depth and num_classes == 1:
            classes = [entry]
        else:
            raise ValueError(
                f"{name}[{i}]: expected one {'box' if single else 'list'} per class for this model's {num_classes} "
                f"class(es), nested as SamProcessor's prompts; got lists nested {depth} deep"
            )
        if len(classes) != num_classes:
            raise ValueError(f"{name}[{i}]: {len(classes)} entries for this model's {num_classes} class(es)")
        arrays = []
        for k, items in enumerate(classes):
            items = [] if _is_empty(items) else items
            items = [items] if single and _nesting_depth(items) == 1 else items
            try:
                array = np.asarray(items, dtype=np.int64 if leaf is None else np.float64)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{name}[{i}]: class {k} is not a regular list of numbers ({error})") from error
            shape_ok = array.ndim == 1 if leaf is None else (array.ndim == 2 and array.shape[-1] == leaf)
            if array.size and not shape_ok:
                what = "labels" if leaf is None else f"{leaf} coordinates each"
                raise ValueError(f"{name}[{i}]: class {k} has shape {array.shape}, expected a list of {what}")
            if leaf is not None and not np.isfinite(array).all():
                raise ValueError(f"{name}[{i}]: class {k} has a coordinate that is not finite")
            arrays.append(array.reshape((-1,) if leaf is None else (-1, leaf)))
        result.append(arrays)
    return result


def _nesting_depth(value: Any) -> int:
    """How deep lists nest: 0 for a number, 1 for [1, 2], 2 for [[1, 2]] and for [[], [1, 2]] (the deepest item)."""
    if not isinstance(value, (list, tuple)):
        return 0
    return 1 + max((_nesting_depth(item) for item in value), default=0)


def _is_empty(value: Any) -> bool:
    """None, [], or lists of those only."""
    return value is None or (isinstance(value, (list, tuple)) and all(_is_empty(item) for item in value))


class AutoSamImageProcessorKwargs(SamImageProcessorKwargs, total=False):
    r"""
    prompt_size (`int`, *optional*):
        Side P of the prompt canvas (g's input size). None: no prompt canvas (g then resizes SAM's canvas itself,
        as processors saved before the prompt canvas existed did).
    canvases (`list[str]`, *optional*):
        Canvases built by default: `"sam"` and/or `"prompt"` (default both, or `["sam"]` without `prompt_size`).
    mask_threshold (`float`, *optional*, defaults to 0.0):
        Threshold on the logits of `post_process_semantic_segmentation` (what the `image-segmentation` pipeline
        calls): the model's `config.mask_threshold`, set when the processor is loaded or saved with its model.
    num_labels (`int`, *optional*, defaults to 2):
        The model's `num_labels` (background + K classes). 2: `segmentation_maps` are binary masks, binarised
        (`binarize_mask`); more: they are label maps with values 0..K (`read_label_map`), kept as they are
        (nearest resizing keeps labels).
    canvas_rule (`str`, *optional*, defaults to `"letterbox"`):
        How every canvas is made: `"letterbox"` (longest edge, zero padding; SAM, MedSAM, SAM-HQ) or `"squash"`
        (resized to the square, no padding; SAM 2). `size` / `mask_size` hold `longest_edge` for the first and
        `height` / `width` for the second.
    sam_preprocessing (`dict`, *optional*):
        Settings that replace the processor's for SAM's canvas only (`do_rescale`, `rescale_factor`, `do_normalize`,
        `image_mean`, `image_std`, `resample`): the frozen checkpoint's own, e.g. MedSAM's
        `{"do_normalize": False, "resample": 3}`.
    """

    prompt_size: int
    canvases: list[str]
    mask_threshold: float
    num_labels: int
    canvas_rule: str
    sam_preprocessing: dict


class AutoSamImageProcessor(SamImageProcessorPil):
    r"""
    Constructs an AutoSAM image processor: SAM's preprocessing (defaults: longest edge 1024, ImageNet mean/std,
    zero padding to 1024×1024; masks to 256×256) for SAM's canvas and, at g's input size, for the prompt canvas,
    plus the valid-region mask and semantic post-processing. SAM 2's processors squash instead of padding
    (`canvas_rule`); MedSAM's change SAM's canvas values (`sam_preprocessing`).

    `__call__(images, segmentation_maps=None, canvases=None, return_tensors="pt")` returns:
        - `pixel_values` (B, 3, S, S) when the `"sam"` canvas is built: normalised once, padded bottom/right
          (letterbox) or squashed;
        - `prompt_pixel_values` (B, 3, P, P) when the `"prompt"` canvas is built: the same, at g's input size;
        - `original_sizes` (B, 2), `reshaped_input_sizes` (B, 2): (height, width) before and after resizing to
          SAM's canvas (post-processing maps logits back through it);
        - with `segmentation_maps`: `labels` (B, 4E, 4E) float, 0/1 for binary processors and the class ids 0..K
          of label maps for multi-class ones (`num_labels` > 2), and `valid_mask` (B, 4E, 4E) bool, true on the
          part of the canvas covered by the image;
        - with `input_points` (and `input_labels`) / `input_boxes` in the original images' pixel coordinates,
          nested as `SamProcessor` takes them: the same names as SAM-canvas tensors, (B, K, N, 2), (B, K, N) and
          (B, K, 4) (`sparse_prompts`, `canvas_coordinates`).
    """

    model_input_names = ["pixel_values", "prompt_pixel_values"]
    valid_kwargs = AutoSamImageProcessorKwargs
    prompt_size = None
    canvases = None
    mask_threshold = 0.0
    num_labels = 2
    canvas_rule = LETTERBOX
    sam_preprocessing = None

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        if self.canvas_rule not in CANVAS_RULES:
            raise ValueError(f"canvas_rule must be one of {list(CANVAS_RULES)}, got {self.canvas_rule!r}")

    @classmethod
    def from_sam_config(
        cls,
        sam_config,
        prompt_size: int | None = None,
        canvases: list[str] | None = None,
        canvas_rule: str | None = None,
        **kwargs: Any,
    ) -> AutoSamImageProcessor:
        """The processor matching a frozen model's config (`SamConfig`, `SamHQConfig`, `Sam2Config`): SAM canvas
        S = the model's input size, label canvas 4E (its mask size), a prompt canvas of side `prompt_size` (g's input
        size) when given, and `canvas_rule` (None: the frozen model's own).

        `canvases` sets what a plain call builds: `["prompt"]` for models used without SAM (h(g(I))).
        """
        family = frozen_sam_class(sam_config, argument="sam_config")
        image_size = family.canvas_size(sam_config)
        mask_size = 4 * family.prompt_embedding_shape(sam_config)[1]
        canvas_rule = canvas_rule or family.canvas_rule
        if canvas_rule == SQUASH:
            sizes = {
                "size": {"height": image_size, "width": image_size},
                "mask_size": {"height": mask_size, "width": mask_size},
                "do_pad": False,
            }
        else:
            sizes = {
                "size": {"longest_edge": image_size},
                "pad_size": {"height": image_size, "width": image_size},
                "mask_size": {"longest_edge": mask_size},
                "mask_pad_size": {"height": mask_size, "width": mask_size},
            }
        return cls(**sizes, canvas_rule=canvas_rule, prompt_size=prompt_size, canvases=canvases, **kwargs)

    @classmethod
    def from_model_config(cls, config, canvases: list[str] | None = None, **kwargs: Any) -> AutoSamImageProcessor:
        """The processor of an `AutoSamConfig`: its frozen model's canvases under its `canvas_rule`, g's
        `prompt_input_size`, the model's `mask_threshold`, `num_labels` and `sam_preprocessing`."""
        kwargs.setdefault("mask_threshold", config.mask_threshold)
        kwargs.setdefault("num_labels", config.num_labels)
        kwargs.setdefault("sam_preprocessing", config.sam_preprocessing)
        kwargs.setdefault("canvas_rule", config.canvas_rule)
        return cls.from_sam_config(config.sam_config, prompt_size=config.prompt_input_size, canvases=canvases, **kwargs)

    @property
    def sam_canvas_side(self) -> int:
        """S: the side of SAM's square canvas, which post-processing maps logits back through: the padded square
        (`pad_size`, letterbox) or the squashed one (`size`, squash)."""
        name = "size" if self.canvas_rule == SQUASH else "pad_size"
        canvas = getattr(self, name)
        if canvas["height"] != canvas["width"]:
            raise ValueError(
                f"processor.{name} must be square for SAM's canvas, got {canvas['height']}x{canvas['width']}"
            )
        return canvas["height"]

    @staticmethod
    def _side(size: dict) -> int:
        """The side of a square canvas from its `size`: `longest_edge` (letterbox) or `height` (squash)."""
        return size["longest_edge"] if size.get("longest_edge") else size["height"]

    def _canvas_kwargs(self, side: int) -> dict:
        """`size` and padding of an image canvas of side `side` under the canvas rule."""
        if self.canvas_rule == SQUASH:
            return {"size": {"height": side, "width": side}, "do_pad": False}
        return {"size": {"longest_edge": side}, "pad_size": {"height": side, "width": side}, "do_pad": True}

    def resize(self, image: np.ndarray, size, resample=None, **kwargs) -> np.ndarray:
        """Letterbox sizes (`longest_edge`) resize as SAM's processor does; squash sizes (`height`, `width`) go
        straight to that size (the PIL backend's own resize, which SAM's processor overrides)."""
        if size.longest_edge:
            return super().resize(image, size=size, resample=resample, **kwargs)
        return PilBackend.resize(self, image, size=size, resample=resample, **kwargs)

    def _resolve_canvases(self, canvases: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
        canvases = tuple(
            canvases or self.canvases or ((SAM_CANVAS, PROMPT_CANVAS) if self.prompt_size else (SAM_CANVAS,))
        )
        unknown = set(canvases) - set(CANVAS_OUTPUTS)
        if unknown or not canvases:
            raise ValueError(f"canvases must be a non-empty subset of {sorted(CANVAS_OUTPUTS)}, got {list(canvases)}")
        if PROMPT_CANVAS in canvases and not self.prompt_size:
            raise ValueError("canvases: the 'prompt' canvas needs a processor with a prompt_size (g's input size)")
        # SAM's canvas first: the first canvas gives `reshaped_input_sizes`, which are SAM's.
        return tuple(sorted(dict.fromkeys(canvases), key=lambda canvas: canvas != SAM_CANVAS))

    def __call__(self, images: ImageLike | list[ImageLike], segmentation_maps=None, **kwargs) -> BatchFeature:
        return self.preprocess(images, segmentation_maps=segmentation_maps, **kwargs)

    def preprocess(
        self,
        images: ImageLike | list[ImageLike],
        segmentation_maps: ImageLike | list[ImageLike] | None = None,
        canvases: list[str] | tuple[str, ...] | None = None,
        return_tensors: str | None = "pt",
        input_points: Any = None,
        input_labels: Any = None,
        input_boxes: Any = None,
        **kwargs: Any,
    ) -> BatchFeature:
        canvases = self._resolve_canvases(canvases)
        images = images if isinstance(images, (list, tuple)) else [images]
        if len(images) == 0:
            raise ValueError("images: got an empty list")
        images = [to_rgb_uint8(image, name=f"images[{i}]") for i, image in enumerate(images)]
        prompts = self.sparse_prompts([image.shape[:2] for image in images], input_points, input_labels, input_boxes)
        masks = None
        if segmentation_maps is not None:
            masks = segmentation_maps if isinstance(segmentation_maps, (list, tuple)) else [segmentation_maps]
            if len(masks) != len(images):
                raise ValueError(f"segmentation_maps: got {len(masks)} masks for {len(images)} images")
            masks = [
                mask_to_labels(mask, self.num_labels, name=f"segmentation_maps[{i}]") for i, mask in enumerate(masks)
            ]
            for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
                if image.shape[:2] != mask.shape:
                    raise ValueError(
                        f"segmentation_maps[{i}] is {mask.shape[0]}x{mask.shape[1]} but images[{i}] is "
                        f"{image.shape[0]}x{image.shape[1]} (height x width)"
                    )
        canvas_sides = {SAM_CANVAS: self._side(kwargs.get("size") or self.size), PROMPT_CANVAS: self.prompt_size}
        mask_side = self._side(kwargs.get("mask_size") or self.mask_size)
        sides = [canvas_sides[canvas] for canvas in canvases] + ([mask_side] if masks is not None else [])
        self._check_resizable([image.shape[:2] for image in images], min(sides))
        # Images are (H, W, 3) now; said explicitly, because SAM's processor guesses the channel axis from the
        # shape and takes an image 1 or 3 pixels high for channels-first.
        kwargs["input_data_format"] = "channels_last"
        outputs = None
        for canvas in canvases:
            # The frozen checkpoint's own settings apply to its canvas only; the caller's kwargs still win.
            overrides = self._canvas_overrides(canvas)
            canvas_kwargs = {**overrides, **kwargs, **self._canvas_kwargs(canvas_sides[canvas])}
            # Labels come with the first canvas; they live on their own 4E canvas whatever the image canvas.
            processed = super().preprocess(
                images, segmentation_maps=masks if outputs is None else None, return_tensors=return_tensors,
                **canvas_kwargs,
            )  # fmt: skip
            if outputs is None:
                outputs = processed
                outputs[CANVAS_OUTPUTS[canvas]] = outputs.pop("pixel_values")
            else:
                outputs[CANVAS_OUTPUTS[canvas]] = processed["pixel_values"]
        if SAM_CANVAS not in canvases:  # post-processing maps logits back through SAM's canvas
            reshaped = [self.reshaped_size(image.shape[:2]) for image in images]
            outputs["reshaped_input_sizes"] = torch.tensor(reshaped) if return_tensors == "pt" else reshaped
        if masks is not None:
            canvas = outputs["labels"].shape[-2:]
            valid = np.zeros((len(images), *canvas), dtype=bool)
            for i, image in enumerate(images):
                height, width = self._reshaped_size(image.shape[:2], mask_side)
                valid[i, :height, :width] = True
            outputs["labels"] = outputs["labels"].float() if return_tensors == "pt" else outputs["labels"]
            outputs["valid_mask"] = torch.from_numpy(valid) if return_tensors == "pt" else valid
        for name, array in prompts.items():
            outputs[name] = torch.from_numpy(array) if return_tensors == "pt" else array
        return outputs

    def _check_resizable(self, sizes: list[tuple[int, int]], smallest: int) -> None:
        """Letterbox: every image keeps at least a pixel across on the smallest canvas it is resized to."""
        if self.canvas_rule != LETTERBOX:
            return
        for i, (height, width) in enumerate(sizes):
            if min(self._get_preprocess_shape((height, width), smallest)) == 0:
                raise ValueError(
                    f"images[{i}] is {height}x{width}: too elongated to resize to a longest edge of {smallest} (its "
                    "short side would become 0 pixels)"
                )

    def _canvas_overrides(self, canvas: str) -> dict:
        """The frozen checkpoint's own settings (`sam_preprocessing`), which apply to SAM's canvas only."""
        return (self.sam_preprocessing or {}) if canvas == SAM_CANVAS else {}

    def canvas_side(self, canvas: str) -> int:
        """The side of a square canvas at the processor's settings: "sam" (S), "prompt" (P, g's input) or "labels"
        (4E, the label canvas)."""
        if canvas == PROMPT_CANVAS:
            return self.prompt_size
        sizes = {SAM_CANVAS: self.size, LABEL_CANVAS: self.mask_size}
        if canvas not in sizes:
            raise ValueError(f"canvas must be one of {[SAM_CANVAS, PROMPT_CANVAS, LABEL_CANVAS]}, got {canvas!r}")
        return self._side(sizes[canvas])

    def canvas_settings(self, canvas: str) -> dict[str, Any]:
        """The settings of `CANVAS_SETTINGS` that canvas `canvas` ("sam" or "prompt") is made with: the
        processor's own, with `sam_preprocessing` over them on SAM's canvas (MedSAM: no normalisation, bicubic)."""
        overrides = self._canvas_overrides(canvas)
        return {name: overrides.get(name, getattr(self, name)) for name in CANVAS_SETTINGS}

    def canvas_coordinates(self, coordinates: Any, original_size: tuple[int, int]) -> np.ndarray | torch.Tensor:
        """Pixel coordinates on an image of `original_size` (height, width) → the same on SAM's canvas (side S), as
        `SamProcessor` (letterbox) and `Sam2Processor` (squash) map them: x by the resized width over the original
        width, y likewise.

        Args:
            coordinates: (..., 2) points (x, y) or (..., 4) boxes (x0, y0, x1, y1); array-like or tensor.
        Returns:
            float32, the input's shape: a tensor for a tensor, else a numpy array. Canvas coordinates are what
            `model.decode_masks` takes; coordinates on the low-resolution label canvas (4E) are these × 4E / S.
        """
        is_tensor = isinstance(coordinates, torch.Tensor)
        array = coordinates.detach().cpu().numpy() if is_tensor else np.asarray(coordinates)
        array = array.astype(np.float64)
        if array.ndim == 0 or array.shape[-1] not in (2, 4):
            raise ValueError(f"coordinates: expected (..., 2) points or (..., 4) boxes, got shape {array.shape}")
        height, width = (int(side) for side in original_size)
        new_height, new_width = self.reshaped_size((height, width))
        scale = np.array([new_width / width, new_height / height])
        mapped = (array.reshape(*array.shape[:-1], -1, 2) * scale).reshape(array.shape).astype(np.float32)
        return torch.from_numpy(mapped).to(coordinates.device) if is_tensor else mapped

    def sparse_prompts(
        self, original_sizes: list[tuple[int, int]], input_points: Any, input_labels: Any, input_boxes: Any
    ) -> dict[str, np.ndarray]:
        """Points and boxes in original-image coordinates, nested as `SamProcessor` takes them, → the model's
        canvas-coordinate arrays (`canvas_coordinates`): `input_points` (B, K, N, 2) float32, `input_labels`
        (B, K, N) int64, `input_boxes` (B, K, 4) float32; an empty dict without prompts.

        K is the model's number of classes (`num_labels` - 1). Per image: `input_points[i]` is a list of K point
        lists (`[[x, y], ...]` per class) or, for K = 1, the point list itself; `input_labels[i]` likewise (1
        positive, 0 negative; default all 1); `input_boxes[i]` K boxes `[x0, y0, x1, y1]` (or the box itself for
        K = 1). An image or class without points (None or []) is padded: points and labels -10, N the batch's
        largest count, and the model decodes it as without prompts. Nested lists, numpy arrays and tensors alike.
        """
        prompts: dict[str, np.ndarray] = {}
        num_classes = self.num_labels - 1
        if input_points is None:
            if input_labels is not None:
                raise ValueError("input_labels: given without input_points")
        else:
            points = _per_image_per_class(input_points, "input_points", len(original_sizes), num_classes, 2)
            if input_labels is None:
                labels = [[np.ones(len(class_points), dtype=np.int64) for class_points in p] for p in points]
            else:
                labels = _per_image_per_class(input_labels, "input_labels", len(original_sizes), num_classes, None)
            count = max(len(class_points) for image_points in points for class_points in image_points)
            if count > 0:
                canvas_points = np.full((len(original_sizes), num_classes, count, 2), PROMPT_PAD_VALUE, np.float32)
                canvas_labels = np.full((len(original_sizes), num_classes, count), PROMPT_PAD_VALUE, np.int64)
                for i, size in enumerate(original_sizes):
                    for k in range(num_classes):
                        class_points, class_labels = points[i][k], labels[i][k]
                        if len(class_labels) != len(class_points):
                            raise ValueError(
                                f"input_labels[{i}]: {len(class_labels)} labels for the {len(class_points)} points "
                                f"of input_points[{i}] (class {k})"
                            )
                        bad = sorted(set(class_labels.tolist()) - {0, 1, -1, PROMPT_PAD_VALUE})
                        if bad:
                            raise ValueError(
                                f"input_labels[{i}]: label {bad[0]} is not 1 (positive), 0 (negative), -1 "
                                f"(not-a-point) or {PROMPT_PAD_VALUE} (padding)"
                            )
                        if len(class_points):
                            canvas_points[i, k, : len(class_points)] = self.canvas_coordinates(class_points, size)
                            canvas_labels[i, k, : len(class_labels)] = class_labels
                prompts["input_points"], prompts["input_labels"] = canvas_points, canvas_labels
        if input_boxes is not None:
            boxes = _per_image_per_class(input_boxes, "input_boxes", len(original_sizes), num_classes, 4, single=True)
            canvas_boxes = np.zeros((len(original_sizes), num_classes, 4), np.float32)
            for i, size in enumerate(original_sizes):
                for k in range(num_classes):
                    if len(boxes[i][k]) != 1:
                        raise ValueError(
                            f"input_boxes[{i}]: class {k} has no box; a batch with boxes needs one per image and class"
                        )
                    canvas_boxes[i, k] = self.canvas_coordinates(boxes[i][k][0], size)
            prompts["input_boxes"] = canvas_boxes
        return prompts

    def reshaped_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """(height, width) an image of `original_size` takes on SAM's canvas (all of it when squashed)."""
        return self._reshaped_size(original_size, self._side(self.size))

    def _reshaped_size(self, original_size: tuple[int, int], side: int) -> tuple[int, int]:
        if self.canvas_rule == SQUASH:
            return side, side
        return self._get_preprocess_shape(tuple(original_size), side)

    def post_process_class_logits(
        self, logits: torch.Tensor, original_sizes: list[tuple[int, int]] | torch.Tensor
    ) -> list[torch.Tensor]:
        """Low-resolution class logits (B, K, h, w) → list of (K, H_i, W_i) float logits at each original size.

        Letterbox: the canvas is upsampled to SAM's padded input size, the padding is cropped, then the image is
        resized to its original size (SAM's own `post_process_masks`, without binarising). Squash: the canvas is
        resized straight to the original size (SAM 2's own `post_process_masks`). Every class channel alike.
        """
        if isinstance(original_sizes, torch.Tensor):
            original_sizes = original_sizes.tolist()
        if self.canvas_rule == SQUASH:
            return [
                F.interpolate(logits[i : i + 1].float(), tuple(size), mode="bilinear", align_corners=False)[0]
                for i, size in enumerate(original_sizes)
            ]
        reshaped = [self.reshaped_size(size) for size in original_sizes]
        masks = [logits[i : i + 1].float() for i in range(logits.shape[0])]
        processed = self.post_process_masks(masks, original_sizes, reshaped, binarize=False)
        return [mask[0] for mask in processed]

    def post_process_logits(
        self, logits: torch.Tensor, original_sizes: list[tuple[int, int]] | torch.Tensor
    ) -> list[torch.Tensor]:
        """Binary models' low-resolution logits (B, 1, h, w) → list of (H_i, W_i) float logits at each original size
        (`post_process_class_logits` without the class axis; multi-class logits go there)."""
        if logits.shape[1] != 1:
            raise ValueError(
                f"post_process_logits takes one logit map per image (B, 1, h, w), got {tuple(logits.shape)}; use "
                "post_process_class_logits for K > 1 classes"
            )
        return [class_logits[0] for class_logits in self.post_process_class_logits(logits, original_sizes)]

    def post_process_semantic_segmentation(
        self, outputs, target_sizes: list[tuple[int, int]] | None = None, mask_threshold: float | None = None
    ) -> list[torch.Tensor]:
        """Label maps (0 background, 1..K the classes; binary models: 1 foreground) at each `target_sizes` entry (the
        original image sizes), from the logits (B, K, h, w): `logits > mask_threshold` for K = 1, argmax over
        [mask_threshold, z_1..z_K] for K > 1 (`segmentation_classes.label_maps_from_logits`), by default at the
        processor's `mask_threshold` (the model's).

        Used by the `image-segmentation` pipeline, which makes one segment per class present. Without
        `target_sizes`, the maps stay on the logits' canvas.
        """
        mask_threshold = self.mask_threshold if mask_threshold is None else mask_threshold
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        if target_sizes is None:
            return [label_maps_from_logits(class_logits, mask_threshold) for class_logits in logits]
        if len(target_sizes) != logits.shape[0]:
            raise ValueError(f"target_sizes has {len(target_sizes)} entries for a batch of {logits.shape[0]}")
        return [
            label_maps_from_logits(class_logits, mask_threshold)
            for class_logits in self.post_process_class_logits(logits, target_sizes)
        ]


# The image-segmentation pipeline accepts the model types of transformers' segmentation mappings and logs "The model
# 'AutoSamForSegmentation' is not supported" for any other. Registered here because the pipeline loads this module
# with the model, in-process and as remote code (`trust_remote_code=True`, where `autosam_hf` is never imported).
MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES.setdefault("autosam", "AutoSamForSegmentation")

__all__ = [
    "AutoSamImageProcessor",
    "binarize_mask",
    "canvases_for_mode",
    "mask_array",
    "mask_to_labels",
    "read_label_map",
    "to_rgb_uint8",
]
