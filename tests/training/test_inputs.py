"""autosam_hf.training.inputs: which validation set a run gets, from a folder or a Hub dataset."""

import io
import shutil

import datasets
import numpy as np
import pytest
from PIL import Image

from autosam_hf.training.cli import build_parser
from autosam_hf.training.inputs import load_train_val
from autosam_hf.training.settings import resolve_settings


def settings_for(*flags: str):
    return resolve_settings(build_parser().parse_args(["--preset", "kvasir", "--output_dir", "/out", *flags]), "no")


def png(array: np.ndarray) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def write_parquet_split(repo, split: str, count: int, mask_side: int = 8) -> None:
    rng = np.random.default_rng(len(split))
    images = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(count)]
    masks = [png(np.pad(np.full((2, 2), 255, np.uint8), (0, mask_side - 2))) for _ in range(count)]
    features = datasets.Features({"image": datasets.Image(), "mask": datasets.Image()})
    dataset = datasets.Dataset.from_dict({"image": images, "mask": masks}, features=features)
    (repo / "data").mkdir(parents=True, exist_ok=True)
    dataset.to_parquet(repo / "data" / f"{split}-00000-of-00001.parquet")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")


@pytest.mark.parametrize("name", ["validation", "val", "valid"])
def test_a_hub_datasets_validation_split_is_used(tmp_path, hub_cache, name):
    repo = tmp_path / "repo"
    write_parquet_split(repo, "train", 6)
    write_parquet_split(repo, name, 3)
    train, val = load_train_val(settings_for("--dataset_name", str(repo)))
    assert (len(train), len(val)) == (6, 3)


def test_a_hub_dataset_without_one_holds_out_part_of_train(tmp_path, hub_cache):
    repo = tmp_path / "repo"
    write_parquet_split(repo, "train", 10)
    train, val = load_train_val(settings_for("--dataset_name", str(repo), "--val_fraction", "0.2"))
    assert (len(train), len(val)) == (8, 2)


def test_a_broken_hub_validation_split_fails_instead_of_being_replaced(tmp_path, hub_cache):
    repo = tmp_path / "repo"
    write_parquet_split(repo, "train", 6)
    write_parquet_split(repo, "validation", 3, mask_side=5)  # 5×5 masks for 8×8 images
    with pytest.raises(ValueError, match="mask is 5x5 but its image is 8x8"):
        load_train_val(settings_for("--dataset_name", str(repo)))


def test_a_pranet_layout_without_a_val_folder_holds_out_part_of_train(shared_data_dir, tmp_path):
    """The kvasir preset reads PraNet's TrainDataset, which has no val folder beside it."""
    source = shared_data_dir / "kvasir" / "train"
    for kind in ("images", "masks"):
        (tmp_path / "TrainDataset" / kind).mkdir(parents=True)
        for path in sorted((source / kind).iterdir())[:10]:
            shutil.copy(path, tmp_path / "TrainDataset" / kind / path.name)
    train, val = load_train_val(settings_for("--data", str(tmp_path), "--val_fraction", "0.2"))
    assert (len(train), len(val)) == (8, 2)
    assert not set(train["id"]) & set(val["id"])


def test_the_held_out_part_follows_its_own_seed_not_the_training_seed(tmp_path, hub_cache):
    """An --init_from run with another --seed must validate on the images the first run held out."""
    repo = tmp_path / "repo"
    write_parquet_split(repo, "train", 20)

    def held_out(*flags: str) -> list[str]:
        return load_train_val(settings_for("--dataset_name", str(repo), "--val_fraction", "0.25", *flags))[1]["id"]

    assert held_out("--seed", "1") == held_out("--seed", "2")
    assert held_out("--val_split_seed", "1") != held_out("--val_split_seed", "2")
