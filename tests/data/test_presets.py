"""autosam_hf.data.presets: layouts, paper settings, card files, errors, and every real data set in
../shared/data."""

import dataclasses
import importlib.resources

import numpy as np
import pytest
import yaml

from autosam_hf.data import (
    BENCHMARKS,
    GLAS_AUGMENTATION,
    MONUSEG_AUGMENTATION,
    POLYP_AUGMENTATION,
    PRESETS,
    get_preset,
    load_image_mask_folder,
    load_preset_dataset,
    read_dataset_card,
)
from autosam_hf.data.presets import CARD_PACKAGE, DATASET_CARDS_FOLDER
from data.files import make_pair_folder, mask_array


def test_pranet_layouts_through_presets(tmp_path):
    make_pair_folder(tmp_path / "TrainDataset")
    make_pair_folder(tmp_path / "TestDataset" / "CVC-ColonDB", stems=("a", "b"))
    make_pair_folder(tmp_path / "TestDataset" / "Kvasir", stems=("k",))
    assert len(load_preset_dataset("kvasir", "train", tmp_path)) == 3
    assert len(load_preset_dataset("clinicdb", "train", tmp_path)) == 3
    assert load_preset_dataset("colondb", "test", tmp_path)["id"] == ["a", "b"]
    assert load_preset_dataset("kvasir", "test", tmp_path)["id"] == ["k"]


def test_max_samples_reads_only_the_first_examples(tmp_path):
    """The first N examples in natural order; the others are not even decoded: a broken image after them does not
    fail the load that stops before it, while the whole split's load names it."""
    root = make_pair_folder(tmp_path / "TrainDataset", stems=("1", "2", "10"))
    (root / "images" / "10.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"10\.jpg"):
        load_preset_dataset("kvasir", "train", tmp_path)
    assert load_preset_dataset("kvasir", "train", tmp_path, max_samples=2)["id"] == ["1", "2"]
    with pytest.raises(ValueError, match=r"max_samples must be at least 1, got 0 \(reading .*TrainDataset"):
        load_preset_dataset("kvasir", "train", tmp_path, max_samples=0)


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


def test_presets_carry_paper_settings():
    assert list(PRESETS) == [
        "kvasir", "clinicdb", "colondb", "etis", "cvc300", "glas", "monuseg", "monuseg_boundary", "sunseg_easy",
        "sunseg_hard",
    ]  # fmt: skip
    sizes = {name: preset.image_size for name, preset in PRESETS.items()}
    assert sizes == {
        "kvasir": 352, "clinicdb": 352, "colondb": 352, "etis": 352, "cvc300": 352,
        "glas": 256, "monuseg": 512, "monuseg_boundary": 512, "sunseg_easy": 352, "sunseg_hard": 352,
    }  # fmt: skip
    assert get_preset("kvasir").augmentation == POLYP_AUGMENTATION
    assert get_preset("glas").augmentation == GLAS_AUGMENTATION
    assert get_preset("monuseg").augmentation == MONUSEG_AUGMENTATION
    # The paper's hyper-parameters are a recipe (`--recipe paper`, tests/training/test_settings.py), not a dataset fact.
    assert get_preset("glas").val_fraction == 0.1 and not hasattr(get_preset("glas"), "training")
    assert get_preset("kvasir").has_val_split and not get_preset("monuseg").has_val_split
    assert get_preset("sunseg_hard").is_video
    with pytest.raises(AttributeError):
        get_preset("kvasir").image_size = 1024  # frozen
    with pytest.raises(TypeError):
        get_preset("kvasir").split_dirs["train"] = ("elsewhere",)


def test_presets_hold_every_dataset_fact_in_one_place():
    names = {name: preset.display_name for name, preset in PRESETS.items()}
    assert names == {
        "kvasir": "Kvasir-SEG", "clinicdb": "CVC-ClinicDB", "colondb": "CVC-ColonDB", "etis": "ETIS-LaribPolypDB",
        "cvc300": "CVC-300", "glas": "GlaS", "monuseg": "MoNuSeg", "monuseg_boundary": "MoNuSeg boundary",
        "sunseg_easy": "SUN-SEG Easy", "sunseg_hard": "SUN-SEG Hard",
    }  # fmt: skip
    assert BENCHMARKS == {
        "polyps": ("kvasir", "clinicdb", "colondb", "etis"),
        "histology": ("glas", "monuseg"),
        "sunseg": ("sunseg_easy", "sunseg_hard"),
    }
    # This project's folder name first (../shared/data), then the official ones.
    assert get_preset("etis").folder_names == ("etis", "etis_laribpolypdb", "ETIS-LaribPolypDB")
    assert get_preset("colondb").folder_names[:2] == ("colondb", "cvc_colondb")
    for preset in PRESETS.values():
        # (a preset of derived classes reads its dataset's folder: monuseg_boundary reads monuseg)
        assert preset.folder_names and preset.folder_names[0] in (preset.name.removesuffix("_boundary"), "sunseg")
        card = preset.card
        assert card.title.startswith(preset.display_name.split(" ")[0]) and card.citation.startswith("@")
        assert set(card.evaluation_datasets) <= set(PRESETS) and card.hub_id and card.terms
    assert get_preset("sunseg_easy").card is get_preset("sunseg_hard").card  # both train on SUN-SEG's train set
    assert get_preset("kvasir").card.evaluation_datasets[0] == "kvasir"  # its own test set first


def test_every_card_file_belongs_to_a_preset_and_every_preset_has_one():
    folder = importlib.resources.files(CARD_PACKAGE) / DATASET_CARDS_FOLDER
    assert {entry.name for entry in folder.iterdir()} == {f"{preset.card_name}.yaml" for preset in PRESETS.values()}
    # monuseg_boundary's file extends monuseg's: the same data, terms and citation, its own classes' text.
    nuclei, boundary = get_preset("monuseg").card, get_preset("monuseg_boundary").card
    assert (boundary.hub_id, boundary.terms, boundary.citation) == (nuclei.hub_id, nuclei.terms, nuclei.citation)
    assert boundary.title != nuclei.title and "boundary" in boundary.training_data


def test_card_files_are_read_strictly(tmp_path):
    fields = dataclasses.asdict(get_preset("glas").card)
    (tmp_path / "full.yaml").write_text(
        yaml.safe_dump({**fields, "tags": list(fields["tags"]), "evaluation_datasets": ["glas"]})
    )
    assert read_dataset_card("full", tmp_path) == get_preset("glas").card
    (tmp_path / "child.yaml").write_text("extends: full\ntitle: Other\ntags: [a]\n")
    child = read_dataset_card("child", tmp_path)
    assert (child.title, child.tags, child.citation) == ("Other", ("a",), fields["citation"])
    for name, text, error in [
        ("bad", "title: [unclosed\n", r"bad\.yaml: not valid YAML"),
        ("list", "- title\n", r"list\.yaml: expected a mapping of DatasetCard fields, got list"),
        ("short", "extends: full\nlicence: x\n", r"short\.yaml: unknown fields licence$"),
        ("typed", "extends: full\nterms_checked: maybe\ntags: a\n", r"typed\.yaml: wrong type of tags, terms_checked"),
    ]:
        (tmp_path / f"{name}.yaml").write_text(text)
        with pytest.raises(ValueError, match=error):
            read_dataset_card(name, tmp_path)
    (tmp_path / "half.yaml").write_text("title: x\n")
    with pytest.raises(ValueError, match=r"half\.yaml: missing fields hub_id, domain, .*, citation$"):
        read_dataset_card("half", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"absent\.yaml"):
        read_dataset_card("absent", tmp_path)


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
def test_real_data_loads(shared_data_dir, preset, folder, split, count):
    dataset = load_preset_dataset(preset, split, shared_data_dir / folder)
    assert len(dataset) == count
    assert len(set(dataset["id"])) == count
    for row in (0, count - 1):
        example = dataset[row]
        mask = mask_array(example)
        assert example["image"].mode == "RGB"
        assert mask.shape == example["image"].size[::-1]
        assert set(np.unique(mask)) <= {0, 1} and mask.any()


@pytest.mark.slow
def test_real_monuseg_instance_masks_binarise_like_the_binary_masks(shared_data_dir):
    test_folder = shared_data_dir / "monuseg" / "test"
    instance = load_image_mask_folder(test_folder, masks_dir="masks_instance")
    binary = load_image_mask_folder(test_folder)
    assert instance["id"] == binary["id"]
    for row in (0, 13):
        a, b = mask_array(instance[row]).astype(bool), mask_array(binary[row]).astype(bool)
        dice = 2 * (a & b).sum() / (a.sum() + b.sum())
        assert dice > 0.9  # README: the UCTransNet masks and the XML fill agree at Dice 0.93-0.95
