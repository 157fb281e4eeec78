"""autosam_hf.data.sources: folder layouts (pairs, Kvasir, GlaS Warwick, MoNuSeg XML, SUN-SEG) and their errors."""

import datasets
import numpy as np
import pytest

from autosam_hf.data import (
    IMAGE_EXTENSIONS,
    load_glas_warwick,
    load_image_mask_folder,
    load_monuseg_xml,
    load_preset_dataset,
    load_sunseg,
    rasterize_monuseg_xml,
)
from autosam_hf.inference.inputs import IMAGE_EXTENSIONS as PREDICT_IMAGE_EXTENSIONS
from data.files import (
    MONUSEG_XML,
    make_pair_folder,
    make_sunseg_split,
    mask_array,
    write_glas_pair,
    write_image,
    write_mask,
)


def test_training_reads_every_image_type_prediction_reads(tmp_path):
    assert PREDICT_IMAGE_EXTENSIONS is IMAGE_EXTENSIONS  # one list for training, evaluation and autosam-predict
    assert {".webp", ".ppm", ".pgm", ".png", ".jpg", ".tif"} <= set(IMAGE_EXTENSIONS)
    root = tmp_path / "set"
    write_image(root / "images" / "a.webp")
    write_image(root / "images" / "b.PPM")
    write_mask(root / "masks" / "a.png")
    write_mask(root / "masks" / "b.png")
    assert load_image_mask_folder(root)["id"] == ["a", "b"]


def test_image_mask_folder_pairs_by_stem_in_natural_order(tmp_path):
    root = make_pair_folder(tmp_path / "set")
    write_mask(root / "masks" / "2.png", values=(0, 1))  # 0/1 masks are read with > 0
    (root / "images" / ".DS_Store").write_bytes(b"junk")  # hidden and non-image files are ignored
    (root / "masks" / "notes.txt").write_text("not a mask")
    dataset = load_image_mask_folder(root)
    assert dataset.column_names == ["id", "image", "mask"]
    assert dataset["id"] == ["1", "2", "10"]
    assert isinstance(dataset.features["image"], datasets.Image)
    assert isinstance(dataset.features["mask"], datasets.Image)
    for example in dataset:
        assert example["image"].mode == "RGB" and example["image"].size == (12, 8)
        assert example["mask"].mode == "L"
        np.testing.assert_array_equal(mask_array(example)[:, :6], 0)
        np.testing.assert_array_equal(mask_array(example)[:, 6:], 1)


def test_kvasir_original_layout_with_jpeg_masks(tmp_path):
    root = tmp_path / "Kvasir-SEG"
    write_image(root / "images" / "cju0qkwl35piu0993l0dewei2.jpg", (40, 32))
    expected = write_mask(root / "masks" / "cju0qkwl35piu0993l0dewei2.jpg", (40, 32))  # JPEG: noisy edges
    dataset = load_image_mask_folder(root)
    assert dataset["id"] == ["cju0qkwl35piu0993l0dewei2"]
    mask = mask_array(dataset[0])
    assert set(np.unique(mask)) <= {0, 1}
    assert (mask == expected).mean() > 0.97
    assert load_preset_dataset("kvasir", "all", tmp_path)["id"] == dataset["id"]


def test_duplicate_stems_are_rejected(tmp_path):
    root = make_pair_folder(tmp_path / "set")
    write_image(root / "images" / "1.png")
    with pytest.raises(ValueError, match=r"Two files with stem '1'"):
        load_image_mask_folder(root)


def test_empty_folder(tmp_path):
    (tmp_path / "set" / "images").mkdir(parents=True)
    (tmp_path / "set" / "masks").mkdir()
    with pytest.raises(ValueError, match=r"No images .*images"):
        load_image_mask_folder(tmp_path / "set")


def test_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere"):
        load_image_mask_folder(tmp_path / "nowhere")
    write_image(tmp_path / "set" / "images" / "1.jpg")
    with pytest.raises(FileNotFoundError, match=r"Mask folder .*masks"):
        load_image_mask_folder(tmp_path / "set")


def test_glas_warwick_flat_layout(tmp_path):
    folder = tmp_path / "Warwick QU Dataset (Released 2016_07_08)"
    folder.mkdir()
    stems = ["train_2", "train_10", "train_1", "testA_1", "testB_3"]
    expected = {stem: write_glas_pair(folder, stem) for stem in stems}
    (folder / "Grade.csv").write_text("name,grade\n")
    train = load_glas_warwick(folder, "train")
    assert train["id"] == ["train_1", "train_2", "train_10"]
    for example in train:
        np.testing.assert_array_equal(mask_array(example), expected[example["id"]])
    assert load_glas_warwick(folder, "test")["id"] == ["testA_1", "testB_3"]
    assert load_glas_warwick(folder, "testB")["id"] == ["testB_3"]
    assert load_preset_dataset("glas", "test", folder)["id"] == ["testA_1", "testB_3"]
    (folder / "train_2_anno.bmp").unlink()
    with pytest.raises(ValueError, match=r"no mask.*train_2\.bmp"):
        load_glas_warwick(folder, "train")
    with pytest.raises(ValueError, match=r"Unknown GlaS split 'val'"):
        load_glas_warwick(folder, "val")


def test_monuseg_official_layouts(tmp_path):
    training = tmp_path / "MoNuSeg 2018 Training Data"
    write_image(training / "Tissue Images" / "TCGA-A.tif", (12, 8))
    (training / "Annotations").mkdir()
    (training / "Annotations" / "TCGA-A.xml").write_text(MONUSEG_XML)
    test = tmp_path / "MoNuSegTestData"
    write_image(test / "TCGA-B.tif", (12, 8))
    (test / "TCGA-B.xml").write_text(MONUSEG_XML)

    train_set = load_monuseg_xml(training)
    assert train_set["id"] == ["TCGA-A"]
    np.testing.assert_array_equal(mask_array(train_set[0]), rasterize_monuseg_xml(test / "TCGA-B.xml", (12, 8)))
    assert load_preset_dataset("monuseg", "train", tmp_path)["id"] == ["TCGA-A"]
    assert load_preset_dataset("monuseg", "test", tmp_path)["id"] == ["TCGA-B"]

    (test / "TCGA-B.xml").write_text("<Annotations><Region>")
    with pytest.raises(ValueError, match=r"TCGA-B\.xml"):
        load_monuseg_xml(test)


def test_sunseg_layout_keeps_case_and_frame_order(tmp_path):
    root = make_sunseg_split(
        tmp_path / "SUN-SEG" / "TestEasyDataset" / "Unseen",
        {"case10": ["image10", "image2"], "case2": ["image1"], "case1_3": ["image3", "image1", "image20"]},
    )
    dataset = load_sunseg(root)
    assert dataset.column_names == ["id", "image", "mask", "case", "frame"]
    assert dataset["id"] == [
        "case1_3/image1", "case1_3/image3", "case1_3/image20", "case2/image1", "case10/image2", "case10/image10",
    ]  # fmt: skip
    assert dataset["case"] == ["case1_3"] * 3 + ["case2"] + ["case10"] * 2
    assert dataset["frame"] == [0, 1, 2, 0, 0, 1]
    assert load_preset_dataset("sunseg_easy", "test", tmp_path / "SUN-SEG")["id"] == dataset["id"]
    # Truncated: the first frames in the same order, as `select` of the whole split gives them.
    first = load_preset_dataset("sunseg_easy", "test", tmp_path / "SUN-SEG", max_samples=4)
    assert first.to_dict() == dataset.select(range(4)).to_dict()

    (root / "GT" / "case2" / "image1.png").unlink()
    with pytest.raises(ValueError, match=r"no mask.*image1\.jpg"):
        load_sunseg(root)
