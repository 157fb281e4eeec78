"""autosam_hf.data.splits: seeded train/validation splits (video cases kept whole)."""

import pytest

from autosam_hf.data import (
    load_image_mask_folder,
    load_sunseg,
    train_val_split,
)
from data.files import make_pair_folder, make_sunseg_split


def test_train_val_split_is_deterministic_and_disjoint(tmp_path):
    dataset = load_image_mask_folder(make_pair_folder(tmp_path / "set", stems=[str(i) for i in range(20)]))
    first, again = train_val_split(dataset, 0.2, seed=3), train_val_split(dataset, 0.2, seed=3)
    assert first["val"]["id"] == again["val"]["id"]
    assert len(first["train"]) == 16 and len(first["val"]) == 4
    assert set(first["train"]["id"]).isdisjoint(first["val"]["id"])
    assert set(first["train"]["id"]) | set(first["val"]["id"]) == set(dataset["id"])
    assert train_val_split(dataset, 0.2, seed=4)["val"]["id"] != first["val"]["id"]
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(dataset, 1.0)


def test_train_val_split_keeps_video_cases_whole(tmp_path):
    frames = {f"case{c}": [f"image{f}" for f in range(3)] for c in range(5)}
    dataset = load_sunseg(make_sunseg_split(tmp_path / "TrainDataset", frames))
    split = train_val_split(dataset, 0.4, seed=0)
    assert len(set(split["val"]["case"])) == 2
    assert set(split["train"]["case"]).isdisjoint(split["val"]["case"])
    assert split["val"]["frame"] == [0, 1, 2, 0, 1, 2]
