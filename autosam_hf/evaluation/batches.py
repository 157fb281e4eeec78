"""The batches an evaluation runs on: a dataset's rows in evaluation order (a video's frames in time order), decoded
and run through the image processor, in the data loader's worker processes when there are any."""

from __future__ import annotations

import numpy as np
import torch

from ..model import AutoSamImageProcessor, mask_to_labels, to_rgb_uint8
from ..sharding import shard


def evaluation_groups(dataset, is_video: bool) -> list[list[int]]:
    """The rows in evaluation order, in the groups scored together: for images one row each, as stored; for video
    one group per case, its frames in `frame` order, the cases in the order they first appear."""
    if not is_video:
        return [[index] for index in range(len(dataset))]
    if hasattr(dataset, "column_names"):
        cases, frames = list(dataset["case"]), list(dataset["frame"])
    else:
        cases, frames = [row["case"] for row in dataset], [row["frame"] for row in dataset]
    groups: dict = {}
    for index, case in enumerate(cases):
        groups.setdefault(case, []).append(index)
    return [sorted(indices, key=lambda index: frames[index]) for indices in groups.values()]


def evaluation_order(dataset, is_video: bool) -> list[int]:
    """Row order: as stored for images; for video, each case's frames consecutive and in `frame` order."""
    return [index for group in evaluation_groups(dataset, is_video) for index in group]


class EvaluationRows(torch.utils.data.Dataset):
    """Rows of a dataset in a given order, decoded: {id, case, image (H, W, 3) uint8, target (H, W) uint8 label map
    (0/1 for `num_labels=2`, else class ids 0..K), instances (H, W) instance ids, or None without an `instances`
    column}."""

    def __init__(self, dataset, order: list[int], num_labels: int = 2):
        self.dataset, self.order, self.num_labels = dataset, order, num_labels

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, position: int) -> dict:
        row = self.dataset[self.order[position]]
        instances = row.get("instances")
        return {
            "id": str(row.get("id", self.order[position])),
            "case": row.get("case"),
            "image": to_rgb_uint8(row["image"], name=f"image {row.get('id')}"),
            "target": mask_to_labels(row["mask"], self.num_labels, name=f"mask {row.get('id')}"),
            "instances": None if instances is None else np.asarray(instances),
        }


class ProcessRows:
    """`collate_fn`: a list of rows → {"rows": the rows, **the processor's outputs} (`pixel_values`, ...,
    `original_sizes`, and with `with_labels` the ground truth on the label canvas, `labels` (B, 4E, 4E)). `canvases`:
    the ones to build (None: the processor's own)."""

    def __init__(self, processor: AutoSamImageProcessor, with_labels: bool, canvases: tuple[str, ...] | None = None):
        self.processor, self.with_labels, self.canvases = processor, with_labels, canvases

    def __call__(self, rows: list[dict]) -> dict:
        images, targets = [row["image"] for row in rows], [row["target"] for row in rows]
        labels = targets if self.with_labels else None
        inputs = self.processor(images, segmentation_maps=labels, canvases=self.canvases, return_tensors="pt")
        return {"rows": rows, **inputs}


def evaluation_loader(
    dataset,
    processor: AutoSamImageProcessor,
    is_video: bool,
    batch_size: int,
    num_workers: int,
    with_labels: bool,
    num_labels: int = 2,
    canvases: tuple[str, ...] | None = None,
    sharded: bool = False,
) -> torch.utils.data.DataLoader:
    """Batches of `dataset` in evaluation order (see `ProcessRows` for what a batch holds, on which `canvases`);
    masks read as the label maps of a `num_labels`-label model. `sharded`: only this process's contiguous share of
    the rows (`autosam_hf.sharding.shard`), whole video cases."""
    groups = evaluation_groups(dataset, is_video)
    order = shard(groups, grouped=True) if sharded else [index for group in groups for index in group]
    return torch.utils.data.DataLoader(
        EvaluationRows(dataset, order, num_labels),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=ProcessRows(processor, with_labels, canvases),
    )


__all__ = ["EvaluationRows", "ProcessRows", "evaluation_groups", "evaluation_loader", "evaluation_order"]
