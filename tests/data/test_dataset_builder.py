"""autosam_hf.data.dataset_builder: unreadable, truncated, missing and mis-sized files are named."""

import pytest
from PIL import ImageFile

from autosam_hf.data import (
    load_image_mask_folder,
)
from data.files import make_pair_folder, write_image, write_mask


def test_unreadable_image_is_named(tmp_path):
    root = make_pair_folder(tmp_path / "set")
    (root / "images" / "2.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(ValueError, match=r"2\.jpg"):
        load_image_mask_folder(root)


def test_truncated_image_is_caught(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # another library's global setting is overridden
    root = make_pair_folder(tmp_path / "set", size=(64, 48))
    path = root / "images" / "10.jpg"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"10\.jpg.*truncated"):
        load_image_mask_folder(root)


def test_truncated_mask_is_caught(tmp_path):
    root = make_pair_folder(tmp_path / "set", size=(64, 48))
    path = root / "masks" / "1.png"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ValueError, match=r"mask .*1\.png"):
        load_image_mask_folder(root)


def test_image_without_mask_is_named(tmp_path):
    root = make_pair_folder(tmp_path / "set")
    write_image(root / "images" / "orphan.png")
    with pytest.raises(ValueError, match=r"no mask.*orphan\.png"):
        load_image_mask_folder(root)


def test_mask_without_image_is_named(tmp_path):
    root = make_pair_folder(tmp_path / "set")
    write_mask(root / "masks" / "lonely.png")
    with pytest.raises(ValueError, match=r"no image.*lonely\.png"):
        load_image_mask_folder(root)


def test_mask_of_other_size_is_named(tmp_path):
    root = make_pair_folder(tmp_path / "set")
    write_mask(root / "masks" / "2.png", size=(13, 8))
    with pytest.raises(ValueError, match=r"2\.png is 13x8 but its image .*2\.jpg is 12x8"):
        load_image_mask_folder(root)
