"""The bridge from a `datasets.Dataset` of (image, mask) rows to AutoSAM's model inputs."""

from __future__ import annotations

import datasets
import torch

from .augmentation import JointAugmentation, to_arrays
from .device_augmentation import canvas_valid_sizes
from .embedding_cache import EmbeddingCache


class AutoSamViewDataset(torch.utils.data.Dataset):
    """Row `i` of `dataset`, as the augmentation view of the current epoch, processed for AutoSAM.

    With a K-view embedding cache, epoch `e` reads view `e mod K` (image and cached SAM embedding of the same
    view); without one, `num_views=K` does the same and `num_views=None` draws a new view `e` every epoch. Without
    augmentation, images are used as they are.

    Items (`canvases` says which image canvases are built; see `AutoSamImageProcessor`):
        - `prompt_pixel_values` (3, P, P) and/or `pixel_values` (3, S, S);
        - `labels` (4E, 4E) float: 0/1, or the class ids 0..K of a multi-class processor (`num_labels` > 2);
          `valid_mask` (4E, 4E) bool;
        - `original_size` (2,) and `index` (), to score predictions at the original resolution;
        - the cached tensors of the same view when a cache is given (`image_embeddings` (C, E, E) for SAM).

    With `augment_on_device` (and an augmentation that is not the identity) the view is left to
    `device_augmentation.DeviceAugmentation`, batched where the batch arrives: the canvases are those of the
    unaugmented image, uint8 (3, ·, ·) before rescaling and normalisation, its labels and `valid_mask`, and
    `augmentation` holds the view's draw (`JointAugmentation.parameters`) with `sizes`: each canvas's valid
    (height, width). An image's canvases are then the same for all its views.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        processor,
        augmentation: JointAugmentation | None = None,
        cache: EmbeddingCache | None = None,
        num_views: int | None = None,
        canvases: tuple[str, ...] | None = None,
        augment_on_device: bool = False,
    ):
        if cache is not None and len(cache) != len(dataset):
            raise ValueError(f"the embedding cache has {len(cache)} rows but the dataset has {len(dataset)}")
        if num_views is not None and num_views < 1:
            raise ValueError(f"num_views must be >= 1 (or None for a fresh view every epoch), got {num_views}")
        self.dataset = dataset
        self.processor = processor
        self.augmentation = augmentation if augmentation is not None and not augmentation.is_identity else None
        self.cache = cache
        self.num_views = num_views
        self.canvases = canvases
        self.augment_on_device = augment_on_device and self.augmentation is not None
        # In shared memory: DataLoader workers hold copies of this dataset, and persistent ones keep them across
        # epochs, so a plain attribute set by `set_epoch` in the main process would never reach them.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Called by accelerate's data loader at the start of every epoch (before its workers fetch the epoch's
        first batch)."""
        self._epoch.fill_(epoch)

    def view(self) -> int:
        if self.cache is not None:
            return self.cache.view_for_epoch(self.epoch)
        if self.augmentation is None:
            return 0
        return self.epoch if self.num_views is None else self.epoch % self.num_views

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.dataset[index]
        view = self.view()
        # Class ids must survive the augmentation as they are.
        label_map = getattr(self.processor, "num_labels", 2) > 2
        if self.augmentation is not None and not self.augment_on_device:
            image, mask = self.augmentation(row["image"], row["mask"], index, view, label_map=label_map)
        else:
            image, mask = to_arrays(row["image"], row["mask"], label_map=label_map)
        options = {"canvases": self.canvases} if self.canvases else {}
        if self.augment_on_device:  # the device rescales and normalises after augmenting
            options |= {"do_rescale": False, "do_normalize": False}
        processed = self.processor(images=image, segmentation_maps=mask, return_tensors="pt", **options)
        item = {name: processed[name][0] for name in ("pixel_values", "prompt_pixel_values") if name in processed}
        item |= {
            "labels": processed["labels"][0],
            "valid_mask": processed["valid_mask"][0],
            "original_size": processed["original_sizes"][0],
            "index": torch.tensor(index),
        }
        if self.augment_on_device:
            names = [name for name in ("pixel_values", "prompt_pixel_values", "labels") if name in item]
            sizes = canvas_valid_sizes(self.processor, image.shape[:2], names)
            item["augmentation"] = self.augmentation.parameters(index, view, image.shape[:2]) | {"sizes": sizes}
        if self.cache is not None:
            item |= self.cache.get(index, view)  # e.g. image_embeddings (C, E, E)
        return item


def training_loader(views: AutoSamViewDataset, batch_size: int, num_workers: int) -> torch.utils.data.DataLoader:
    """Shuffled batches of `views`, the epoch's view of every row; workers persist across epochs (the epoch
    reaches them through shared memory, see `AutoSamViewDataset`)."""
    return torch.utils.data.DataLoader(
        views, batch_size=batch_size, shuffle=True, num_workers=num_workers, persistent_workers=num_workers > 0
    )
