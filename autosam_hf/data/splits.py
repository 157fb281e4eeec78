"""Deterministic train/validation split for datasets that ship without a validation split."""

import datasets
import numpy as np


def train_val_split(dataset: datasets.Dataset, val_fraction: float = 0.1, seed: int = 0) -> datasets.DatasetDict:
    """Hold out a seeded fraction of ``dataset`` for validation (model selection), never touching ``test``.

    Video datasets (a ``case`` column) are split by case, so frames of one case never land on both sides. The
    result depends only on ``(dataset order, val_fraction, seed)``; rows keep their original order on each side.

    Args:
        dataset: a loaded ``train`` split.
        val_fraction: fraction of examples (or cases) in ``"val"``, in (0, 1); at least one goes to each side.
        seed: the split's seed.

    Returns:
        `datasets.DatasetDict` with ``"train"`` and ``"val"``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    groups = dataset["case"] if "case" in dataset.column_names else list(range(len(dataset)))
    unique_groups = list(dict.fromkeys(groups))  # first-appearance order
    if len(unique_groups) < 2:
        raise ValueError(f"Cannot split {len(unique_groups)} example(s)/case(s) into train and val.")
    num_val = min(max(1, round(val_fraction * len(unique_groups))), len(unique_groups) - 1)
    permutation = np.random.default_rng(seed).permutation(len(unique_groups))
    val_groups = {unique_groups[i] for i in permutation[:num_val]}
    val_rows = [row for row, group in enumerate(groups) if group in val_groups]
    train_rows = [row for row, group in enumerate(groups) if group not in val_groups]
    return datasets.DatasetDict({"train": dataset.select(train_rows), "val": dataset.select(val_rows)})
