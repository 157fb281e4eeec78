"""On-disk cache of SAM image embeddings, one entry per (example, augmentation view).

SAM's image encoder is frozen in AutoSAM, so what it computes for a given augmented view never changes; computing it
once and reading it back every epoch removes the ViT from the training loop. With K views per training image,
epoch ``e`` uses view ``e % K`` (`EmbeddingCache.view_for_epoch`); the training loop gets the matching augmented
image and mask for the prompt generator from the same `JointAugmentation(index, view)` call the cache used.

An entry holds the named tensors the frozen mask decoder needs besides the prompt (`image_features` of the model): for
`SamModel` (SAM, MedSAM), `image_embeddings` (C, E, E); SAM-HQ adds `intermediate_embeddings` (E, E, D), the early ViT
features of its HQ token; SAM 2 stores its multi-level features, `high_resolution_features_0` (C/8, 4E, 4E),
`high_resolution_features_1` (C/4, 2E, 2E) and `image_embeddings` (`model/frozen_sam.py`).

On-disk layout::

    <cache_dir>/<config fingerprint, 16 hex>/
        config.json                                  # what the fingerprint covers, for humans
        <image sha256, 32 hex>_v<view>.safetensors             # no augmentation: depends on the image only
        <image sha256, 32 hex>_i<index>_v<view>.safetensors    # augmented: the draw also depends on the row
        (each holds the entry's tensors and its full key in the metadata)

The config fingerprint hashes the frozen encoder's state dict (names, dtypes, shapes, bytes; for SAM 2 also the
decoder's conv_s0/conv_s1 and `no_memory_embedding`, which its image features go through), the image
processor's SAM-canvas settings, the augmentation (settings + seed), the storage dtype and this format's version;
the file name adds the image bytes, the view and (augmented) the row index. Any change gives new names, so a stale
embedding is never read. Files are written to a temporary name and moved into place with `os.replace`, so a killed
build leaves whole files only; a rerun checks each file's header and computes just the missing or damaged ones.
Several processes (accelerate) each compute a fixed shard, then wait for each other. Before computing anything, the
build logs the size the missing entries will take and fails if the disk lacks room for them.

With a device canvas (by default when the encoder is on an accelerator, `device_canvas`), the data-loader workers
return each view's uint8 image and SAM's canvas is built on the encoder's device (`autosam_hf.model.device_canvas`);
its values differ from the processor's by resampling rounding (one uint8 level in a few pixels), so the fingerprint
records it (`"sam_canvas": "device"`) and such entries never mix with those of the processor's canvas, whose
fingerprint (and so every cache built before) is unchanged.

Storage: float16 by default, half of float32 (released SAM: 2 MiB instead of 4 MiB per view; 1,000 images × 1 view
= 2.0 GiB instead of 3.9 GiB). It rounds each value to 11 significant bits (relative error at most 2**-11 = 4.9e-4;
the effect on the mask decoder's logits and on Dice is measured in `benchmarks/bench_cache_precision.py` and
the README). float32 storage keeps the computed values bit for bit: they then differ from a fresh
``get_image_embeddings`` call only by the encoder's batch-size dependence (max abs difference 2.1e-6 measured on
CPU for unit-scale embeddings, tiny SAM; the tests use ``atol=1e-5, rtol=0``).
"""

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..atomic_write import BackgroundWriter, write_atomically
from ..model import AutoSamImageProcessor, to_rgb_uint8
from ..model.device_canvas import preprocess_on_device
from .augmentation import JointAugmentation

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 2
STORAGE_DTYPES = {"float16": torch.float16, "float32": torch.float32}
_SAFETENSORS_OVERHEAD_BYTES = 256  # header with the key, per file


def _unwrap_sam(model: torch.nn.Module) -> torch.nn.Module:
    """Accept a `SamModel` or a model that holds one as ``.sam`` (``AutoSamForSegmentation``)."""
    sam = getattr(model, "sam", model)
    if not hasattr(sam, "get_image_embeddings") or not hasattr(sam, "vision_encoder"):
        raise TypeError(f"Expected a transformers SamModel (or a model with .sam), got {type(model).__name__}.")
    return sam


def sam_vision_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of every tensor the image features depend on (AutoSAM: `frozen_sam.encoder_state_dict()`; a plain
    `SamModel`: its vision encoder's state dict): each tensor's name, dtype, shape and bytes."""
    if hasattr(model, "frozen_sam"):
        state_dict = model.frozen_sam.encoder_state_dict()
    else:
        state_dict = _unwrap_sam(model).vision_encoder.state_dict()
    hasher = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        tensor = tensor.detach().to("cpu").contiguous().reshape(-1)
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        hasher.update(tensor.view(torch.uint8).numpy())
    return hasher.hexdigest()


# Settings that do not change SAM's canvas (g's canvas, the label canvas and its classes): left out of the
# fingerprint, so changing them reuses the embeddings.
_NOT_SAM_CANVAS_SETTINGS = ("prompt_size", "canvases", "num_labels", "mask_size", "mask_pad_size", "mask_threshold")


def processor_fingerprint(processor: Any) -> str:
    """The image processor's configuration of SAM's canvas, as canonical JSON."""
    if not hasattr(processor, "to_dict"):
        raise TypeError(
            f"Cannot fingerprint {type(processor).__name__}: it has no to_dict() (a transformers processor)."
        )
    settings = {key: value for key, value in processor.to_dict().items() if key not in _NOT_SAM_CANVAS_SETTINGS}
    return json.dumps(settings, sort_keys=True, default=str)


def _sam_canvas(processor: Any, images: list[np.ndarray]) -> torch.Tensor:
    """SAM's canvas (B, 3, S, S) of `images`; an AutoSAM processor builds only that canvas."""
    only_sam = {"canvases": ["sam"]} if "canvases" in getattr(processor, "valid_kwargs", {}).__annotations__ else {}
    return processor(images=images, return_tensors="pt", **only_sam)["pixel_values"]


def uses_device_canvas(processor: Any, device: torch.device, device_canvas: bool | None) -> bool:
    """`EmbeddingCache.build`'s `device_canvas` resolved: None is on when the encoder is on an accelerator and the
    processor is an `AutoSamImageProcessor` (whose settings the device canvas reads); True needs one."""
    supported = isinstance(processor, AutoSamImageProcessor)
    if device_canvas is None:
        return supported and device.type != "cpu"
    if device_canvas and not supported:
        name = type(processor).__name__
        raise ValueError(f"device_canvas: SAM's canvas on the device needs an AutoSamImageProcessor, got {name}")
    return bool(device_canvas)


def image_features(model: torch.nn.Module, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the cache stores for a batch of SAM canvases: the model's `image_features` (AutoSAM), or a plain
    `SamModel`'s image embeddings — named tensors of batch size B."""
    if hasattr(model, "image_features"):
        return model.image_features(pixel_values)
    return {"image_embeddings": _unwrap_sam(model).get_image_embeddings(pixel_values)}


def image_feature_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Shape of each stored tensor of one entry (without the batch), read from the configuration."""
    if hasattr(model, "image_feature_shapes"):
        return model.image_feature_shapes()
    vision = _unwrap_sam(model).config.vision_config
    side = vision.image_size // vision.patch_size
    return {"image_embeddings": (vision.output_channels, side, side)}


def entry_bytes(shapes: dict[str, tuple[int, ...]], storage_dtype: torch.dtype) -> int:
    """Bytes of one cache file: its tensors in `storage_dtype`, plus the safetensors header."""
    element = torch.empty((), dtype=storage_dtype).element_size()
    return sum(int(np.prod(shape)) * element for shape in shapes.values()) + _SAFETENSORS_OVERHEAD_BYTES


def ensure_free_space(directory: Path, needed_bytes: int) -> None:
    """Fail before computing anything when `directory`'s disk cannot hold `needed_bytes` more."""
    free = shutil.disk_usage(directory).free
    if needed_bytes > free:
        raise OSError(
            f"the embedding cache at {directory} needs {needed_bytes / 2**30:.2f} GiB more but its disk has only "
            f"{free / 2**30:.2f} GiB free: free some space, point --cache_dir at a larger disk, store float16 "
            "(--cache_dtype float16), or cache fewer views (--num_views)."
        )


def _image_bytes(image_cell: dict) -> bytes:
    if image_cell.get("bytes") is not None:
        return image_cell["bytes"]
    with open(image_cell["path"], "rb") as file:
        return file.read()


def _is_complete_entry(path: Path, key: str) -> bool:
    """Whether ``path`` is a complete cache file for ``key`` (header check: a truncated file fails it)."""
    try:
        with safe_open(path, framework="pt") as file:
            return (file.metadata() or {}).get("key") == key and len(file.keys()) > 0
    except (SafetensorError, OSError):
        return False


def _save_atomically(tensors: dict[str, torch.Tensor], path: Path, key: str) -> None:
    tensors = {name: tensor.contiguous() for name, tensor in tensors.items()}
    write_atomically(path, lambda temporary: save_file(tensors, temporary, metadata={"key": key}))


class EmbeddingCache:
    """Reader of a built cache (see the module docstring); create it with `EmbeddingCache.build`.

    Files are opened with `safetensors.safe_open` (memory-mapped) on each read, so the object is cheap to pickle
    into DataLoader workers.
    """

    def __init__(self, directory: str | os.PathLike, file_names: Sequence[Sequence[str]]):
        self.directory = Path(directory)
        self._file_names = [list(names) for names in file_names]
        self.num_views = len(self._file_names[0]) if self._file_names else 0

    def __len__(self) -> int:
        return len(self._file_names)

    def view_for_epoch(self, epoch: int) -> int:
        """The view epoch ``epoch`` trains on: ``epoch % num_views``."""
        return epoch % self.num_views

    def path(self, index: int, view: int = 0) -> Path:
        if not 0 <= view < self.num_views:
            raise IndexError(f"view {view} out of range: this cache has {self.num_views} view(s).")
        return self.directory / self._file_names[index][view]

    def get(self, index: int, view: int = 0) -> dict[str, torch.Tensor]:
        """The stored tensors of view ``view`` of row ``index`` (e.g. ``image_embeddings`` (C, E, E)), float32."""
        with safe_open(self.path(index, view), framework="pt") as file:
            return {name: file.get_tensor(name).to(torch.float32) for name in file.keys()}

    def get_batch(self, indices: Sequence[int], view: int | Sequence[int] = 0) -> dict[str, torch.Tensor]:
        """Entries of several rows (one view for all, or one per row), stacked: e.g. (B, C, E, E), float32."""
        views = [view] * len(indices) if isinstance(view, int) else list(view)
        entries = [self.get(index, v) for index, v in zip(indices, views, strict=True)]
        return {name: torch.stack([entry[name] for entry in entries]) for name in entries[0]}

    @classmethod
    def build(
        cls,
        dataset: datasets.Dataset,
        model: torch.nn.Module,
        processor: Any,
        cache_dir: str | os.PathLike,
        augmentation: JointAugmentation | None = None,
        num_views: int = 1,
        batch_size: int = 8,
        storage_dtype: torch.dtype = torch.float16,
        accelerator: Any = None,
        show_progress: bool = True,
        num_workers: int = 0,
        background_writes: bool | None = None,
        device_canvas: bool | None = None,
    ) -> "EmbeddingCache":
        """Compute the missing entries of ``dataset`` × ``num_views`` views and return the reader.

        Call it on every process: each computes its shard (items ``rank::world_size``), then all wait for each
        other and check that the cache is complete.

        Args:
            dataset: rows with an ``image`` column (and ``mask``, passed to the augmentation).
            model: an `AutoSamForSegmentation` (its ``image_features``) or a transformers `SamModel`
                (``get_image_embeddings(pixel_values) -> (B, C, E, E)``); used on its current device and dtype.
            processor: SAM image processor; its SAM canvas ``pixel_values`` (B, 3, S, S) is what the encoder reads.
            cache_dir: root folder of the cache (created if needed).
            augmentation: the training augmentation; ``None`` (or an identity one) caches the unaugmented images.
            num_views: K views per row; must be 1 without augmentation.
            batch_size: images per encoder call.
            storage_dtype: ``torch.float16`` (default, half the disk) or ``torch.float32`` (exact).
            accelerator: an `accelerate.Accelerator` or `PartialState` (``process_index``, ``num_processes``,
                ``is_main_process``, ``wait_for_everyone``); default ``PartialState()``.
            show_progress: tqdm bar on the main process.
            num_workers: data-loader workers that decode, augment and process the views while the encoder runs.
            background_writes: write each batch's files in a thread while the encoder runs the next batch (one
                batch in flight; a failed write stops the build at the next batch); None: on an accelerator, where
                the encoder is fast enough for the writes to matter, not on a CPU. The files are the same.
            device_canvas: workers return the augmented uint8 views and SAM's canvas is built on the encoder's
                device (`uses_device_canvas`; None: on an accelerator with an `AutoSamImageProcessor`, not on a
                CPU). A cache of its own (the module docstring).
        """
        augmentation = augmentation or JointAugmentation()
        if num_views < 1 or (augmentation.is_identity and num_views != 1):
            raise ValueError(f"num_views must be >= 1, and 1 without augmentation; got {num_views}.")
        if storage_dtype not in STORAGE_DTYPES.values():
            raise ValueError(f"storage_dtype must be torch.float16 or torch.float32, got {storage_dtype}.")
        if accelerator is None:
            from accelerate import PartialState

            accelerator = PartialState()
        build_start = time.time()
        parameter = next(_unwrap_sam(model).vision_encoder.parameters())
        device_canvas = uses_device_canvas(processor, parameter.device, device_canvas)
        config = cls._config(model, processor, augmentation, storage_dtype, device_canvas)
        cache, keys = cls._layout(dataset, config, cache_dir, augmentation, num_views)
        if accelerator.is_main_process:
            cache._write_config(config)
        items = [(index, view) for index in range(len(dataset)) for view in range(num_views)]
        shard = items[accelerator.process_index :: accelerator.num_processes]
        missing = [item for item in shard if not _is_complete_entry(cache.path(*item), keys[item])]
        cache._check_room(model, storage_dtype, len(items), len(missing))
        progress = tqdm(
            total=len(shard),
            initial=len(shard) - len(missing),
            desc="Caching SAM image embeddings",
            disable=not (show_progress and accelerator.is_main_process),
        )
        canvases = torch.utils.data.DataLoader(
            _SamCanvases(dataset, processor, augmentation, missing, device_canvas),
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=_collate_images if device_canvas else None,  # images of any size, as a list
        )
        if background_writes is None:
            background_writes = parameter.device.type != "cpu"
        with progress, BackgroundWriter(background_writes, name="embedding-cache-writer") as writer:
            for positions, pixel_values in canvases:
                batch = [missing[position] for position in positions.tolist()]
                if device_canvas:
                    device_inputs = preprocess_on_device(processor, pixel_values, parameter.device, canvases=["sam"])
                    pixel_values = device_inputs["pixel_values"]
                features = cache._encode(pixel_values, model, storage_dtype)
                writer.submit(cache._write, batch, features, keys)
                progress.update(len(batch))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            cache._remove_leftovers(older_than=build_start)
        absent = [item for item in items if not cache.path(*item).exists()]
        if absent:
            raise RuntimeError(
                f"Embedding cache {cache.directory} is incomplete: {len(absent)} (index, view) item(s) missing, "
                f"e.g. {absent[:3]}."
            )
        return cache

    # ------------------------------------------------------------------------------------------------ build steps
    @classmethod
    def _layout(cls, dataset, config, cache_dir, augmentation, num_views):
        """The cache folder (named by the fingerprint of `config`, `_config`) and every entry's file name and key.

        Names depend on the image bytes (and, when augmented, the row) so edited or reordered data is recomputed."""
        config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
        directory = Path(cache_dir) / config_hash
        directory.mkdir(parents=True, exist_ok=True)
        image_cells = dataset.cast_column("image", datasets.Image(decode=False))["image"]
        file_names, keys = [], {}
        for index, cell in enumerate(image_cells):
            image_hash = hashlib.sha256(_image_bytes(cell)).hexdigest()[:32]
            row_part = "" if augmentation.is_identity else f"_i{index}"
            names = [f"{image_hash}{row_part}_v{view}" for view in range(num_views)]
            file_names.append([f"{name}.safetensors" for name in names])
            keys.update({(index, view): f"{config_hash}/{name}" for view, name in enumerate(names)})
        return cls(directory, file_names), keys

    @staticmethod
    def _config(model, processor, augmentation, storage_dtype, device_canvas: bool = False) -> dict:
        config = {
            "format_version": CACHE_FORMAT_VERSION,
            "sam_vision_encoder_sha256": sam_vision_fingerprint(model),
            "processor": processor_fingerprint(processor),
            "augmentation": augmentation.fingerprint(),
            "storage_dtype": str(storage_dtype),
        }
        if device_canvas:  # only then: the processor's canvas keeps the fingerprint of the caches built before
            config["sam_canvas"] = "device"
        return config

    def _write_config(self, config: dict) -> None:
        if not (self.directory / "config.json").exists():
            text = json.dumps(config, indent=2, sort_keys=True)
            write_atomically(self.directory / "config.json", lambda temporary: temporary.write_text(text))

    def _check_room(self, model, storage_dtype: torch.dtype, total: int, missing: int) -> None:
        """Log what the cache takes, and fail now if the disk cannot hold the missing entries."""
        per_entry = entry_bytes(image_feature_shapes(model), storage_dtype)
        logger.info(
            "Embedding cache %s: %d entries (%d images x %d views), %.2f GiB in %s (%.2f GiB per 1,000 images per "
            "view); %d to compute.",
            self.directory, total, len(self), self.num_views, total * per_entry / 2**30,
            str(storage_dtype).removeprefix("torch."), 1000 * per_entry / 2**30, missing,
        )  # fmt: skip
        ensure_free_space(self.directory, missing * per_entry)

    @staticmethod
    def _encode(pixel_values, model, storage_dtype) -> dict[str, torch.Tensor]:
        """The features of one batch of SAM canvases (B, 3, S, S), on the CPU in the storage dtype."""
        parameter = next(_unwrap_sam(model).vision_encoder.parameters())
        with torch.no_grad():
            features = image_features(model, pixel_values.to(parameter.device, parameter.dtype))
        return {name: tensor.to("cpu", storage_dtype) for name, tensor in features.items()}

    def _write(self, batch, features, keys) -> None:
        """Write the entry of each (index, view) item of `batch` from the batch's `features`."""
        for position, item in enumerate(batch):
            entry = {name: tensor[position] for name, tensor in features.items()}
            _save_atomically(entry, self.path(*item), keys[item])

    def _remove_leftovers(self, older_than: float) -> None:
        """Temporary files of killed builds; newer ones could belong to another job building the same cache."""
        for leftover in self.directory.glob("*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if leftover.stat().st_mtime < older_than:
                    leftover.unlink()


def _collate_images(items: list[tuple[int, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Device-canvas items (position, (3, H, W) uint8 view) → (positions (B,), the views as a list)."""
    return torch.tensor([position for position, _ in items]), [image for _, image in items]


class _SamCanvases(torch.utils.data.Dataset):
    """Item `position` of the build's missing (index, view) list: (position, SAM canvas (3, S, S) of that view), or
    with `device_canvas` (position, the augmented view as a (3, H, W) uint8 tensor).

    The items come ordered (index, view): a row's decoded image and mask are kept for its next views (one entry),
    so K views decode it once."""

    def __init__(
        self,
        dataset: datasets.Dataset,
        processor: Any,
        augmentation: JointAugmentation,
        items: list,
        device_canvas: bool = False,
    ):
        self.dataset, self.processor, self.augmentation, self.items = dataset, processor, augmentation, items
        self.device_canvas = device_canvas
        self._decoded: tuple[int, Any, Any] | None = None  # (index, image, mask) of the last row read

    def __len__(self) -> int:
        return len(self.items)

    def _example(self, index: int) -> tuple[Any, Any]:
        if self._decoded is None or self._decoded[0] != index:
            example = self.dataset[index]
            mask = example.get("mask")
            if mask is None:  # unlabelled rows: the augmentation still needs a mask of the image's size
                mask = np.zeros(example["image"].size[::-1], dtype=np.uint8)
            self._decoded = (index, example["image"], mask)
        return self._decoded[1:]

    def __getitem__(self, position: int) -> tuple[int, torch.Tensor]:
        index, view = self.items[position]
        image, mask = self._example(index)
        image, _ = self.augmentation(image, mask, index=index, view=view)
        if self.device_canvas:
            # (3, H, W), the layout `to_rgb_uint8` reads tensors in whatever the height; its own copy, sent by a worker
            return position, torch.from_numpy(np.array(to_rgb_uint8(image))).permute(2, 0, 1)
        return position, _sam_canvas(self.processor, [image])[0]
