"""autosam_hf.hub.model_card: cards rendered from the presets' facts with the measured metrics, and the template and
the dataset card files installed with the package (a wheel built from the repository publishes without
--template_dir)."""

import copy
import json
import os
import shutil
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run_command
from huggingface_hub import ModelCard

from autosam_hf.data import BOUNDARY_ID2LABEL, PRESETS, get_preset
from autosam_hf.hub import NOT_MEASURED, build_model_card, read_measured_metrics
from autosam_hf.training.settings import RECIPES
from hub.workspace import FULL_REPO_ID, MEASURED


def test_card_metadata_parses_with_the_measured_numbers(workspace):
    card = ModelCard.load(workspace["full"] / "README.md")
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "image-segmentation" and data["library_name"] == "transformers"
    assert data["base_model"] == "facebook/sam-vit-base" and data["license"] == "apache-2.0"
    (entry,) = data["model-index"]
    found = {
        (result["dataset"]["type"], result["dataset"]["split"], metric["type"]): metric["value"]
        for result in entry["results"]
        for metric in result["metrics"]
    }
    expected = {
        ("kvasir-seg" if dataset == "kvasir" else dataset, split, name): value
        for split in ("test", "validation")
        for dataset, values in MEASURED[split].items()
        for name, value in values.items()
    }
    assert found == expected
    assert all(result["task"]["type"] == "image-segmentation" for result in entry["results"])


def test_card_text_has_measured_table_and_not_measured_rows(workspace):
    text = (workspace["full"] / "README.md").read_text()
    assert "| Kvasir-SEG | test | 0.9012 | 0.8345 | 0.0213 |" in text
    assert f"| CVC-ClinicDB | test | {NOT_MEASURED} | {NOT_MEASURED} | {NOT_MEASURED} |" in text
    assert f"| ETIS-LaribPolypDB | test | 0.5120 | {NOT_MEASURED} | {NOT_MEASURED} |" in text
    assert "| `num_epochs` | `200` |" in text
    assert f'from_pretrained("{FULL_REPO_ID}")' in text and "trust_remote_code=True" in text
    assert "autosam-predict" in text and "--output_dir" in text


def test_card_without_measurements_invents_no_numbers(workspace):
    card = build_model_card("glas", "org/autosam-glas", workspace["model"].config, metrics={})
    assert "model-index" not in card.data.to_dict()
    assert "# AutoSAM for GlaS (MICCAI 2015 gland segmentation)" in card.text
    results = card.text.split("## Results")[1].split("\n\n")[1]
    assert results.splitlines()[2] == f"| GlaS | test | {NOT_MEASURED} | {NOT_MEASURED} |"
    assert not any(character.isdigit() for character in results)
    # No settings recorded: the card says so and names autosam-train's recipes as they are, not as a guess.
    recipe = card.text.split("## Training recipe")[1].split("## Results")[0]
    assert "did not record its settings" in recipe
    assert RECIPES["default"].describe() in recipe and RECIPES["paper"].describe() in recipe
    assert "cosine schedule after a 5% warm-up, batch 8" in recipe and "a constant rate, batch 10" in recipe


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_card_renders_its_facts(preset, workspace):
    card = build_model_card(preset, f"org/autosam-{preset}", workspace["model"].config, adapter=True)
    text = card.text
    for required in (
        "Research use only",
        "arXiv:2306.06370",
        "Segment Anything",
        "Kirillov",
        "Apache License 2.0",
        "Terms of the data",
        RECIPES["paper"].describe(),  # no settings recorded for this one: the recipes for reference
        "adapter checkpoint",
        "embedding cache",
    ):
        assert required in text, required
    facts = get_preset(preset).card
    assert f"# AutoSAM for {facts.title}" in text and facts.citation in text and facts.training_data in text
    assert ("These terms must be checked before use." in text) is (not facts.terms_checked)
    assert set(card.data.tags) >= set(facts.tags)
    # Every dataset of the card's results table is a preset, shown under its display name.
    for name in facts.evaluation_datasets:
        assert f"| {get_preset(name).display_name} | test | {NOT_MEASURED} |" in text


def test_sunseg_presets_share_the_sunseg_card(workspace):
    metrics = {"test": {"sunseg_hard": {"dice": 0.61}}}
    config = workspace["model"].config
    card = build_model_card("sunseg_hard", "org/autosam-sunseg", config, metrics=metrics)
    assert "# AutoSAM for SUN-SEG (video polyp segmentation)" in card.text
    assert "| SUN-SEG Hard | test | 0.6100 | not measured |" in card.text
    assert "| SUN-SEG Easy | test | not measured | not measured |" in card.text
    assert get_preset("sunseg_easy").card is get_preset("sunseg_hard").card


def test_read_measured_metrics_merges_files_and_drops_non_numbers(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"test": {"kvasir": {"dice": 0.5, "note": "x", "iou": float("nan")}}}))
    second.write_text(json.dumps({"test": {"kvasir": {"dice": 0.7}}, "validation": {"kvasir": {"iou": 0.6}}}))
    metrics, training, sources = read_measured_metrics([first, second])
    assert metrics == {"test": {"kvasir": {"dice": 0.7}}, "validation": {"kvasir": {"iou": 0.6}}}
    assert training == {} and sources == ["a.json", "b.json"]
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json"):
        read_measured_metrics([tmp_path / "bad.json"])


def test_template_dir_replaces_the_installed_template(workspace, tmp_path):
    (tmp_path / "template.md").write_text("---\n{{ card_data }}\n---\n\nCard of {{ pretty_name }} for {{ repo_id }}.\n")
    card = build_model_card("etis", "org/x", workspace["model"].config, template_dir=tmp_path)
    assert card.text.strip() == "Card of ETIS-LaribPolypDB for org/x."
    with pytest.raises(FileNotFoundError, match="template.md"):
        build_model_card("etis", "org/x", workspace["model"].config, template_dir=tmp_path / "missing")


# ------------------------------------------------------------------------------------------- installed from a wheel
PUBLISH_THROUGH_ENTRY_POINT = textwrap.dedent(
    """
    import json, sys
    from importlib.metadata import entry_points

    import autosam_hf

    (entry_point,) = {ep.value: ep for ep in entry_points(group="console_scripts", name="autosam-publish")}.values()
    try:
        status = entry_point.load()(sys.argv[2:])
    finally:
        with open(sys.argv[1], "w") as report:
            json.dump({"autosam_hf": autosam_hf.__file__, "modules": sorted(sys.modules)}, report)
    sys.exit(status)
    """
)


@pytest.mark.slow
def test_wheel_installs_every_package_and_publishes_without_template_dir(workspace, tmp_path):
    # Build from a copy of what setuptools reads, so that the build leaves nothing in the working tree.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in ("autosam_hf", "model_cards"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = run_command(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], cwd=elsewhere, timeout=300
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-4000:]
    (wheel,) = wheels.glob("autosam_hf-*.whl")

    # Every package of the source tree is in the wheel, and the card template and every preset's card file with the
    # model_cards package.
    packaged = set(zipfile.ZipFile(wheel).namelist())
    source_packages = {path.relative_to(source).as_posix() for path in (source / "autosam_hf").rglob("__init__.py")}
    assert source_packages and source_packages <= packaged
    assert {"autosam_hf/model_cards/__init__.py", "autosam_hf/model_cards/template.md"} <= packaged
    card_files = {f"autosam_hf/model_cards/datasets/{preset.card_name}.yaml" for preset in PRESETS.values()}
    assert card_files <= packaged, sorted(card_files - packaged)

    installed = run_command([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], timeout=300)
    assert installed.returncode == 0, installed.stderr[-4000:]

    out, report = tmp_path / "published", tmp_path / "report.json"
    arguments = ["--model", str(workspace["trained"]), "--preset", "kvasir", "--hub_model_id", "me/model"]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1")
    published = run_command(
        [
            sys.executable,
            "-c",
            PUBLISH_THROUGH_ENTRY_POINT,
            str(report),
            *arguments,
            "--dry_run",
            "--output_dir",
            str(out),
        ],
        cwd=elsewhere,
        env=env,
        timeout=300,
    )
    assert published.returncode == 0, published.stderr[-4000:]
    imported = json.loads(report.read_text())
    assert Path(imported["autosam_hf"]).is_relative_to(site)  # the wheel's copy, not the source tree
    assert "autosam_hf.model_cards" in imported["modules"]
    card = (out / "README.md").read_text()
    assert "# AutoSAM for Kvasir-SEG" in card and "| Kvasir-SEG | test | 0.9012 |" in card


def test_multi_class_card_lists_every_class_and_instance_metric_in_the_model_index(workspace):
    config = copy.deepcopy(workspace["model"].config)
    config.id2label = dict(BOUNDARY_ID2LABEL)
    measured = {"dice": 0.61, "iou": 0.5, "dice_interior": 0.8, "dice_boundary": 0.42, "aji": 0.55, "count_error": 7.0}
    card = build_model_card(
        "monuseg_boundary", "org/autosam-nuclei", config, metrics={"test": {"monuseg_boundary": measured}}
    )
    (entry,) = card.data.to_dict()["model-index"]
    found = {
        metric["type"]: (metric["name"], metric["value"]) for result in entry["results"] for metric in result["metrics"]
    }
    assert found["dice_boundary"] == ("Dice (boundary)", 0.42) and found["aji"] == ("AJI", 0.55)
    assert found.keys() == measured.keys()
    assert {result["dataset"]["type"] for result in entry["results"]} == {"monuseg"}
    assert "2 classes (interior, boundary) besides\n  the background, mutually exclusive (softmax)" in card.text
    assert "0 background, 1 interior, 2 boundary" in card.text
    assert "| AJI |" in card.text.split("## Results")[1]


def test_a_sam_free_models_card_says_how_it_was_trained(workspace):
    """A `--stage standalone` model (default mode surrogate) learned without SAM: no decoder, no embedding cache."""
    config = copy.deepcopy(workspace["model"].config)
    config.default_mode = "surrogate"
    recipe = build_model_card("kvasir", "org/autosam-kvasir", config).text.split("## Training recipe")[1]
    recipe = recipe.split("## Results")[0]
    assert "A SAM-free segmenter: *g* and *h* learn together on h(g(I)), without SAM" in recipe
    assert "mask decoder" not in recipe and "embedding cache" not in recipe
