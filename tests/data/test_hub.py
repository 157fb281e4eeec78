"""autosam_hf.data.hub: Hub datasets with a column mapping."""

import io

import datasets
import numpy as np
import pytest
from PIL import Image

from autosam_hf.data import (
    load_hub_dataset,
)
from data.files import mask_array


def test_hub_dataset_with_column_mapping(tmp_path):
    buffers = []
    for labels in (np.array([[0, 255], [255, 0]], np.uint8), np.array([[0, 1], [0, 1]], np.uint8)):
        buffer = io.BytesIO()
        Image.fromarray(labels).save(buffer, format="PNG")
        buffers.append({"bytes": buffer.getvalue(), "path": None})
    images = [Image.fromarray(np.full((2, 2, 3), value, np.uint8)) for value in (10, 200)]
    source = datasets.Dataset.from_dict(
        {"pixel_values": images, "label": buffers, "name": ["x", "y"], "extra": [1, 2]},
        features=datasets.Features(
            {"pixel_values": datasets.Image(), "label": datasets.Image(), "name": datasets.Value("string"),
             "extra": datasets.Value("int32")}
        ),
    )  # fmt: skip
    (tmp_path / "repo" / "data").mkdir(parents=True)
    source.to_parquet(tmp_path / "repo" / "data" / "train-00000-of-00001.parquet")

    mapping = {"image": "pixel_values", "mask": "label", "id": "name"}
    dataset = load_hub_dataset(str(tmp_path / "repo"), column_mapping=mapping, cache_dir=str(tmp_path / "cache"))
    assert dataset.column_names == ["id", "image", "mask"]
    assert dataset["id"] == ["x", "y"]
    np.testing.assert_array_equal(mask_array(dataset[0]), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(mask_array(dataset[1]), [[0, 1], [0, 1]])
    assert dataset[1]["image"].mode == "RGB"
    with pytest.raises(ValueError, match=r"\['segmentation'\] are not in .*it has \['pixel_values', 'label'"):
        bad_mapping = {**mapping, "mask": "segmentation"}
        load_hub_dataset(str(tmp_path / "repo"), column_mapping=bad_mapping, cache_dir=str(tmp_path / "cache"))
