"""On-disk cache of SAM image embeddings, one per (example, augmentation view).

SAM's image encoder is frozen in AutoSAM, so the embedding of a given augmented view never changes; computing it
once and reading it back every epoch removes the ViT from the training loop. With K views per training image,
epoch ``e`` uses view ``e % K`` (`EmbeddingCache.view_for_epoch`); the training loop gets the matching augmented
image and mask for the prompt generator from the same `JointAugmentation(index, view)` call the cache used.

On-disk layout::

    <cache_dir>/<config fingerprint, 16 hex>/
        config.json                                  # what the fingerprint covers, for humans
        <image sha256, 32 hex>_v<view>.safetensors             # no augmentation: depends on the image only
        <image sha256, 32 hex>_i<index>_v<view>.safetensors    # augmented: the draw also depends on the row
        (each holds one tensor "image_embeddings" (C, E, E) and its full key in the metadata)

The config fingerprint hashes the SAM vision encoder's state dict (names, dtypes, shapes, bytes), the image
processor's configuration (``to_json_string()``), the augmentation (settings + seed), the storage dtype and this
format's version; the file name adds the image bytes, the view and (augmented) the row index. Any change gives
new names, so a stale embedding is never read. Files are written to a temporary name and moved into place with
`os.replace`, so a killed build leaves whole files only; a rerun checks each file's header and computes just the
missing or damaged ones. Several processes (accelerate) each compute a fixed shard, then wait for each other.

Tolerance: float32 storage (the default) keeps the computed values bit for bit; cached values differ from a fresh
``get_image_embeddings`` call only by the encoder's batch-size dependence (max abs difference 2.1e-6 measured on CPU
for unit-scale embeddings, 100 Kvasir images x 2 views, tiny SAM; the tests use ``atol=1e-5, rtol=0``). float16
storage (opt-in, half the disk: real SAM is 4 MiB per view in float32) adds round-to-nearest error of at most
2**-11 (4.9e-4) relative to each value (measured max 4.87e-4; 9.8e-4 absolute on values up to 4).
"""

import contextlib
import hashlib
import json
import os
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

from ..atomic_write import write_atomically
from .augmentation import JointAugmentation

CACHE_FORMAT_VERSION = 1
EMBEDDING_TENSOR_NAME = "image_embeddings"


def _unwrap_sam(model: torch.nn.Module) -> torch.nn.Module:
    """Accept a `SamModel` or a model that holds one as ``.sam`` (``AutoSamForSegmentation``)."""
    sam = getattr(model, "sam", model)
    if not hasattr(sam, "get_image_embeddings") or not hasattr(sam, "vision_encoder"):
        raise TypeError(f"Expected a transformers SamModel (or a model with .sam), got {type(model).__name__}.")
    return sam


def sam_vision_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of the SAM vision encoder's state dict: every tensor's name, dtype, shape and bytes."""
    hasher = hashlib.sha256()
    for name, tensor in sorted(_unwrap_sam(model).vision_encoder.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous().reshape(-1)
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        hasher.update(tensor.view(torch.uint8).numpy())
    return hasher.hexdigest()


def processor_fingerprint(processor: Any) -> str:
    """The image processor's configuration as canonical JSON."""
    if hasattr(processor, "to_dict"):
        return json.dumps(processor.to_dict(), sort_keys=True, default=str)
    raise TypeError(f"Cannot fingerprint {type(processor).__name__}: it has no to_dict() (a transformers processor).")


def _image_bytes(image_cell: dict) -> bytes:
    if image_cell.get("bytes") is not None:
        return image_cell["bytes"]
    with open(image_cell["path"], "rb") as file:
        return file.read()


def _has_embedding(path: Path, key: str) -> bool:
    """Whether ``path`` is a complete cache file for ``key`` (header check: a truncated file fails it)."""
    try:
        with safe_open(path, framework="pt") as file:
            return (file.metadata() or {}).get("key") == key and EMBEDDING_TENSOR_NAME in file.keys()
    except (SafetensorError, OSError):
        return False


def _save_atomically(tensor: torch.Tensor, path: Path, key: str) -> None:
    tensors = {EMBEDDING_TENSOR_NAME: tensor.contiguous()}
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

    def get(self, index: int, view: int = 0) -> torch.Tensor:
        """The SAM image embedding of view ``view`` of row ``index``: float32 tensor of shape (C, E, E)."""
        with safe_open(self.path(index, view), framework="pt") as file:
            return file.get_tensor(EMBEDDING_TENSOR_NAME).to(torch.float32)

    def get_batch(self, indices: Sequence[int], view: int | Sequence[int] = 0) -> torch.Tensor:
        """Embeddings of several rows (one view for all, or one per row): float32 tensor (B, C, E, E)."""
        views = [view] * len(indices) if isinstance(view, int) else list(view)
        return torch.stack([self.get(index, v) for index, v in zip(indices, views, strict=True)])

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
        storage_dtype: torch.dtype = torch.float32,
        accelerator: Any = None,
        show_progress: bool = True,
    ) -> "EmbeddingCache":
        """Compute the missing embeddings of ``dataset`` × ``num_views`` views and return the reader.

        Call it on every process: each computes its shard (items ``rank::world_size``), then all wait for each
        other and check that the cache is complete.

        Args:
            dataset: rows with an ``image`` column (and ``mask``, passed to the augmentation).
            model: a transformers `SamModel` (``get_image_embeddings(pixel_values) -> (B, C, E, E)``) or a model
                holding one as ``.sam``; used on its current device and dtype.
            processor: SAM image processor; ``processor(images=[uint8 (H, W, 3), ...], return_tensors="pt")
                ["pixel_values"]`` is (B, 3, S, S).
            cache_dir: root folder of the cache (created if needed).
            augmentation: the training augmentation; ``None`` (or an identity one) caches the unaugmented images.
            num_views: K views per row; must be 1 without augmentation.
            batch_size: images per encoder call.
            storage_dtype: ``torch.float32`` (exact) or ``torch.float16`` (see the module docstring).
            accelerator: an `accelerate.Accelerator` or `PartialState` (``process_index``, ``num_processes``,
                ``is_main_process``, ``wait_for_everyone``); default ``PartialState()``.
            show_progress: tqdm bar on the main process.
        """
        augmentation = augmentation or JointAugmentation()
        if num_views < 1 or (augmentation.is_identity and num_views != 1):
            raise ValueError(f"num_views must be >= 1, and 1 without augmentation; got {num_views}.")
        if storage_dtype not in (torch.float32, torch.float16):
            raise ValueError(f"storage_dtype must be torch.float32 or torch.float16, got {storage_dtype}.")
        if accelerator is None:
            from accelerate import PartialState

            accelerator = PartialState()
        sam = _unwrap_sam(model)
        build_start = time.time()

        config = {
            "format_version": CACHE_FORMAT_VERSION,
            "sam_vision_encoder_sha256": sam_vision_fingerprint(sam),
            "processor": processor_fingerprint(processor),
            "augmentation": augmentation.fingerprint(),
            "storage_dtype": str(storage_dtype),
        }
        config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
        directory = Path(cache_dir) / config_hash
        directory.mkdir(parents=True, exist_ok=True)
        if accelerator.is_main_process and not (directory / "config.json").exists():
            config_text = json.dumps(config, indent=2, sort_keys=True)
            write_atomically(directory / "config.json", lambda temporary: temporary.write_text(config_text))

        # Names depend on the image bytes (and, when augmented, the row) so edited or reordered data is recomputed.
        image_cells = dataset.cast_column("image", datasets.Image(decode=False))["image"]
        file_names, keys = [], {}
        for index, cell in enumerate(image_cells):
            image_hash = hashlib.sha256(_image_bytes(cell)).hexdigest()[:32]
            row_part = "" if augmentation.is_identity else f"_i{index}"
            names = [f"{image_hash}{row_part}_v{view}.safetensors" for view in range(num_views)]
            file_names.append(names)
            for name in names:
                keys[name] = f"{config_hash}/{name.removesuffix('.safetensors')}"

        cache = cls(directory, file_names)
        items = [(index, view) for index in range(len(dataset)) for view in range(num_views)]
        shard = items[accelerator.process_index :: accelerator.num_processes]
        missing = [item for item in shard if not _has_embedding(cache.path(*item), keys[cache.path(*item).name])]
        progress = tqdm(
            total=len(shard),
            initial=len(shard) - len(missing),
            desc="Caching SAM image embeddings",
            disable=not (show_progress and accelerator.is_main_process),
        )
        parameter = next(sam.vision_encoder.parameters())
        for start in range(0, len(missing), batch_size):
            batch = missing[start : start + batch_size]
            views = [cache._augmented_image(dataset, augmentation, index, view) for index, view in batch]
            pixel_values = processor(images=views, return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                embeddings = sam.get_image_embeddings(pixel_values.to(parameter.device, parameter.dtype))
            for (index, view), embedding in zip(batch, embeddings.to("cpu", storage_dtype), strict=True):
                path = cache.path(index, view)
                _save_atomically(embedding, path, keys[path.name])
            progress.update(len(batch))
        progress.close()

        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            # Temporary files of killed builds; newer ones could belong to another job building the same cache.
            for leftover in directory.glob("*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    if leftover.stat().st_mtime < build_start:
                        leftover.unlink()
        absent = [item for item in items if not cache.path(*item).exists()]
        if absent:
            raise RuntimeError(
                f"Embedding cache {directory} is incomplete: {len(absent)} (index, view) item(s) missing, "
                f"e.g. {absent[:3]}."
            )
        return cache

    @staticmethod
    def _augmented_image(
        dataset: datasets.Dataset, augmentation: JointAugmentation, index: int, view: int
    ) -> np.ndarray:
        example = dataset[index]
        mask = example.get("mask")
        if mask is None:  # unlabelled rows: the augmentation still needs a mask of the image's size
            mask = np.zeros(example["image"].size[::-1], dtype=np.uint8)
        image, _ = augmentation(example["image"], mask, index=index, view=view)
        return image
