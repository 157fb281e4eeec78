"""Tests of the dataset loaders, presets and splits (autosam_hf.data), on temporary folders and on ../shared/data."""

import io
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image, ImageFile

from autosam_hf.data import (
    GLAS_AUGMENTATION,
    MONUSEG_AUGMENTATION,
    POLYP_AUGMENTATION,
    PRESETS,
    binarize_mask,
    get_preset,
    load_glas_warwick,
    load_hub_dataset,
    load_image_mask_folder,
    load_monuseg_xml,
    load_preset_dataset,
    load_sunseg,
    rasterize_monuseg_xml,
    train_val_split,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="module")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"Real data not found at {SHARED_DATA} (expected ../shared/data next to the repository).")
    return SHARED_DATA


def write_image(path: Path, size=(12, 8), seed=0) -> Path:
    """Write a random RGB image of size (width, height); format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_mask(path: Path, size=(12, 8), values=(0, 255)) -> np.ndarray:
    """Write a mask whose left half is background and right half foreground; return the expected 0/1 mask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    expected = np.zeros((size[1], size[0]), dtype=np.uint8)
    expected[:, size[0] // 2 :] = 1
    Image.fromarray(np.where(expected == 1, values[1], values[0]).astype(np.uint8)).save(path)
    return expected


def make_pair_folder(root: Path, stems=("1", "2", "10"), size=(12, 8)) -> Path:
    for seed, stem in enumerate(stems):
        write_image(root / "images" / f"{stem}.jpg", size, seed)
        write_mask(root / "masks" / f"{stem}.png", size)
    return root


def mask_array(example) -> np.ndarray:
    return np.array(example["mask"])


# Binarisation rule


def test_binarize_8bit_masks_with_max_above_one_threshold_at_127():
    mask = Image.fromarray(np.array([[0, 30, 127], [128, 200, 255]], dtype=np.uint8))
    np.testing.assert_array_equal(binarize_mask(mask), [[False, False, False], [True, True, True]])


def test_binarize_zero_one_masks_threshold_at_zero():
    mask = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8))
    np.testing.assert_array_equal(binarize_mask(mask), [[False, True], [True, False]])


def test_binarize_16bit_instance_masks_threshold_at_zero():
    mask = Image.fromarray(np.array([[0, 3], [300, 0]], dtype=np.uint16))
    assert mask.mode.startswith("I;16")
    np.testing.assert_array_equal(binarize_mask(mask), [[False, True], [True, False]])


def test_binarize_palette_masks_use_indices_and_instance_labels_use_any_nonzero():
    palette = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8)).convert("P")
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 1 is red, grey level 76 after convert("L")
    np.testing.assert_array_equal(binarize_mask(palette), [[False, True], [True, False]])
    glands = Image.fromarray(np.array([[0, 2], [7, 0]], dtype=np.uint8))
    np.testing.assert_array_equal(binarize_mask(glands, instance_labels=True), [[False, True], [True, False]])
    np.testing.assert_array_equal(binarize_mask(Image.new("1", (2, 1), 1)), [[True, True]])


# Folder of pairs


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


def test_pranet_layouts_through_presets(tmp_path):
    make_pair_folder(tmp_path / "TrainDataset")
    make_pair_folder(tmp_path / "TestDataset" / "CVC-ColonDB", stems=("a", "b"))
    make_pair_folder(tmp_path / "TestDataset" / "Kvasir", stems=("k",))
    assert len(load_preset_dataset("kvasir", "train", tmp_path)) == 3
    assert len(load_preset_dataset("clinicdb", "train", tmp_path)) == 3
    assert load_preset_dataset("colondb", "test", tmp_path)["id"] == ["a", "b"]
    assert load_preset_dataset("kvasir", "test", tmp_path)["id"] == ["k"]


# Bad inputs fail eagerly with the file or argument named


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


def test_unknown_preset_lists_known_names():
    with pytest.raises(ValueError, match=r"'kvasirr'.*kvasir, clinicdb, colondb, etis, cvc300, glas, monuseg"):
        get_preset("kvasirr")
    with pytest.raises(ValueError, match=r"sunseg_hard"):
        load_preset_dataset("nope", "train", ".")


def test_preset_errors_name_split_and_folders(tmp_path):
    with pytest.raises(ValueError, match=r"no split 'val'.*train_val_split"):
        load_preset_dataset("colondb", "val", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"data_dir .*missing"):
        load_preset_dataset("kvasir", "train", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"No 'test' split of preset 'etis'.*TestDataset/ETIS-LaribPolypDB"):
        load_preset_dataset("etis", "test", tmp_path)


# GlaS, MoNuSeg and SUN-SEG layouts


def write_glas_pair(folder: Path, stem: str, size=(16, 10)) -> np.ndarray:
    write_image(folder / f"{stem}.bmp", size)
    labels = np.zeros((size[1], size[0]), dtype=np.uint8)
    labels[1:4, 1:5] = 1  # gland instance ids 1..3: all foreground despite being < 128
    labels[5:9, 8:15] = 2
    labels[6, 2] = 3
    Image.fromarray(labels).save(folder / f"{stem}_anno.bmp")
    return (labels > 0).astype(np.uint8)


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


MONUSEG_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Annotations MicronsPerPixel="0.252">
  <Annotation Id="1">
    <Regions>
      <Region Id="1"><Vertices>
        <Vertex X="2" Y="2" Z="0"/><Vertex X="5" Y="2" Z="0"/><Vertex X="5" Y="5" Z="0"/><Vertex X="2" Y="5" Z="0"/>
      </Vertices></Region>
      <Region Id="2"><Vertices>
        <Vertex X="8.4" Y="1.2" Z="0"/><Vertex X="10.6" Y="1.2" Z="0"/><Vertex X="10.6" Y="3.4" Z="0"/>
      </Vertices></Region>
    </Regions>
  </Annotation>
</Annotations>
"""


def test_monuseg_xml_rasterisation_includes_the_boundary(tmp_path):
    xml_path = tmp_path / "tile.xml"
    xml_path.write_text(MONUSEG_XML)
    labels = rasterize_monuseg_xml(xml_path, size=(12, 8), instance_labels=True)
    assert labels.shape == (8, 12) and labels.dtype == np.uint16
    square = np.zeros((8, 12), dtype=bool)
    square[2:6, 2:6] = True  # vertices 2..5 inclusive
    np.testing.assert_array_equal(labels == 1, square)
    assert (labels == 2).sum() > 0 and not ((labels == 2) & square).any()
    np.testing.assert_array_equal(rasterize_monuseg_xml(xml_path, size=(12, 8)), labels > 0)


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


def make_sunseg_split(root: Path, frames_per_case: dict[str, list[str]]) -> Path:
    for case, frames in frames_per_case.items():
        for seed, frame in enumerate(frames):
            write_image(root / "Frame" / case / f"{frame}.jpg", seed=seed)
            write_mask(root / "GT" / case / f"{frame}.png")
    return root


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

    (root / "GT" / "case2" / "image1.png").unlink()
    with pytest.raises(ValueError, match=r"no mask.*image1\.jpg"):
        load_sunseg(root)


# Splits, Hub loading and presets


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


def test_presets_carry_paper_settings():
    assert list(PRESETS) == [
        "kvasir", "clinicdb", "colondb", "etis", "cvc300", "glas", "monuseg", "sunseg_easy", "sunseg_hard",
    ]  # fmt: skip
    sizes = {name: preset.image_size for name, preset in PRESETS.items()}
    assert sizes == {
        "kvasir": 352, "clinicdb": 352, "colondb": 352, "etis": 352, "cvc300": 352,
        "glas": 256, "monuseg": 512, "sunseg_easy": 352, "sunseg_hard": 352,
    }  # fmt: skip
    assert get_preset("kvasir").augmentation == POLYP_AUGMENTATION
    assert get_preset("glas").augmentation == GLAS_AUGMENTATION
    assert get_preset("monuseg").augmentation == MONUSEG_AUGMENTATION
    training = get_preset("glas").training
    assert (training.learning_rate, training.weight_decay) == (3e-4, 1e-5)
    assert (training.batch_size, training.num_epochs) == (10, 200)
    assert training.surrogate_batch_size == 24
    assert get_preset("kvasir").has_val_split and not get_preset("monuseg").has_val_split
    assert get_preset("sunseg_hard").is_video
    with pytest.raises(AttributeError):
        get_preset("kvasir").image_size = 1024  # frozen
    with pytest.raises(TypeError):
        get_preset("kvasir").split_dirs["train"] = ("elsewhere",)


# The real data in ../shared/data


@pytest.mark.slow
@pytest.mark.parametrize(
    "preset, folder, split, count",
    [
        ("kvasir", "kvasir", "train", 800),
        ("kvasir", "kvasir", "val", 100),
        ("kvasir", "kvasir", "test", 100),
        ("kvasir", "kvasir", "original_resolution_samples", 5),
        ("monuseg", "monuseg", "train", 30),
        ("monuseg", "monuseg", "test", 14),
        ("glas", "glas", "test", 22),
        ("colondb", "cvc_colondb", "test", 19),
        ("etis", "etis_laribpolypdb", "test", 20),
    ],
)
def test_real_data_loads(shared_data, preset, folder, split, count):
    dataset = load_preset_dataset(preset, split, shared_data / folder)
    assert len(dataset) == count
    assert len(set(dataset["id"])) == count
    for row in (0, count - 1):
        example = dataset[row]
        mask = mask_array(example)
        assert example["image"].mode == "RGB"
        assert mask.shape == example["image"].size[::-1]
        assert set(np.unique(mask)) <= {0, 1} and mask.any()


@pytest.mark.slow
def test_real_monuseg_instance_masks_binarise_like_the_binary_masks(shared_data):
    test_folder = shared_data / "monuseg" / "test"
    instance = load_image_mask_folder(test_folder, masks_dir="masks_instance")
    binary = load_image_mask_folder(test_folder)
    assert instance["id"] == binary["id"]
    for row in (0, 13):
        a, b = mask_array(instance[row]).astype(bool), mask_array(binary[row]).astype(bool)
        dice = 2 * (a & b).sum() / (a.sum() + b.sum())
        assert dice > 0.9  # README: the UCTransNet masks and the XML fill agree at Dice 0.93-0.95
