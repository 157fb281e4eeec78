"""Loading a segmentation dataset from the Hugging Face Hub (or any `datasets.load_dataset` path) into the
columns and mask format of the folder loaders."""

import datasets

from ..model import binarize_mask, read_label_map
from .dataset_builder import IMAGE_FEATURES, VIDEO_FEATURES
from .masks import encode_mask_png


def _encode_example_mask(example: dict, instance_labels: bool, num_labels: int) -> dict:
    image, mask = example["image"], example["mask"]
    if image.size != mask.size:
        raise ValueError(
            f"Example {example['id']!r}: mask is {mask.size[0]}x{mask.size[1]} but its image is "
            f"{image.size[0]}x{image.size[1]} (width x height)."
        )
    name = f"mask of {example['id']!r}"
    if num_labels == 2:
        mask = binarize_mask(mask, name=name, instance_labels=instance_labels)
    else:
        mask = read_label_map(mask, num_labels, name=name)
    return {"mask": {"path": None, "bytes": encode_mask_png(mask)}}


def load_hub_dataset(
    path: str,
    split: str = "train",
    column_mapping: dict[str, str] | None = None,
    instance_labels: bool = False,
    num_proc: int | None = None,
    num_labels: int = 2,
    **load_dataset_kwargs,
) -> datasets.Dataset:
    """Load a dataset with `datasets.load_dataset` and bring it to this package's columns.

    Every example is decoded once here (same eager policy as the folder loaders): masks are binarised
    (`autosam_hf.model.binarize_mask`) and re-encoded as 0/1 PNGs — or, with `num_labels` > 2, checked as label
    maps of class ids 0..K (`read_label_map`) — and an image/mask size mismatch raises.

    Args:
        path: a Hub dataset id (``"user/polyps"``) or a local path `datasets.load_dataset` accepts.
        split: the split to load.
        column_mapping: our column name → the dataset's column name, e.g. ``{"image": "pixel_values",
            "mask": "label", "id": "file_name"}``. ``image`` and ``mask`` default to themselves; ``id`` defaults to the
            row number; ``case``/``frame`` may be mapped for video data.
        instance_labels: masks hold instance ids, binarised ``> 0``.
        num_proc: processes for the binarisation pass.
        num_labels: 2 for binary masks; K + 1 for label-map masks of K classes.
        **load_dataset_kwargs: passed to `datasets.load_dataset` (``revision``, ``cache_dir``, ``token``, ...).

    Returns:
        `datasets.Dataset` with columns ``id``, ``image``, ``mask`` (0/1) [, ``case``, ``frame``].
    """
    dataset = datasets.load_dataset(path, split=split, **load_dataset_kwargs)
    mapping = {"image": "image", "mask": "mask", **(column_mapping or {})}
    unknown = sorted(set(mapping) - set(VIDEO_FEATURES))
    if unknown:
        raise ValueError(f"column_mapping keys must be among {list(VIDEO_FEATURES)}; got {unknown}.")
    missing = [source for source in mapping.values() if source not in dataset.column_names]
    if missing:
        raise ValueError(
            f"Columns {missing} are not in {path!r} (split {split!r}); it has {dataset.column_names}. "
            "Pass column_mapping={our name: their name}."
        )
    dataset = dataset.select_columns(list(mapping.values()))
    dataset = dataset.rename_columns({source: ours for ours, source in mapping.items() if source != ours})
    if "id" not in dataset.column_names:
        dataset = dataset.add_column("id", [str(row) for row in range(len(dataset))])
    all_features = VIDEO_FEATURES if "case" in dataset.column_names else IMAGE_FEATURES
    features = datasets.Features({name: all_features[name] for name in all_features if name in dataset.column_names})
    # Masks are decoded in their own mode for binarisation: converting to L first would clip 16-bit labels and
    # replace palette indices by grey levels.
    raw_mask_features = datasets.Features({**features, "mask": datasets.Image()})
    dataset = dataset.cast(raw_mask_features)
    dataset = dataset.map(
        _encode_example_mask,
        fn_kwargs={"instance_labels": instance_labels, "num_labels": num_labels},
        features=raw_mask_features,
        num_proc=num_proc,
        desc="Reading masks",
    )
    return dataset.select_columns(list(features)).cast(features)
