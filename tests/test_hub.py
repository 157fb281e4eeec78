"""Publishing: the Hub folder (full and adapter-size), its model card, loading it back in this process, in a fresh
process with remote code, and by repo id from an offline Hub cache; the upload calls."""

import hashlib
import importlib
import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import yaml
from conftest import make_tiny_sam_config, run_command
from huggingface_hub import ModelCard
from safetensors import safe_open
from transformers import SamModel

from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor
from autosam_hf.hub import NOT_MEASURED, available_card_datasets, build_model_card, publish, read_measured_metrics
from autosam_hf.hub.publish import main as publish_main

publish_module = importlib.import_module("autosam_hf.hub.publish")  # the module (the package exports the function)

BASE_SAM_ID = "facebook/sam-vit-base"
FULL_REPO_ID = "test-org/autosam-kvasir"
ADAPTER_REPO_ID = "test-org/autosam-kvasir-adapter"
MEASURED = {
    "test": {"kvasir": {"dice": 0.9012, "iou": 0.8345, "mae": 0.0213}, "etis": {"dice": 0.512}},
    "validation": {"kvasir": {"dice": 0.9321, "iou": 0.8765}},
    "training": {"learning_rate": 0.0003, "num_epochs": 200},
}
CARD_DATASETS = ["clinicdb", "colondb", "cvc300", "etis", "glas", "kvasir", "monuseg", "sunseg"]


def save_base_sam(folder: Path) -> None:
    """A random tiny SAM whose mask logits are scaled up (far from the threshold, so comparisons are decisive)."""
    torch.manual_seed(0)
    sam = SamModel(make_tiny_sam_config())
    with torch.no_grad():
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(1e3)
            mlp.proj_out.bias.mul_(1e3)
    sam.save_pretrained(folder)


def build_trained_folder(folder: Path, base_sam_dir: Path) -> AutoSamForSegmentation:
    """A 'trained' tiny AutoSAM (SAM from `base_sam_dir`, recorded as `facebook/sam-vit-base`) saved with its
    processor and measured metrics, as the training script leaves it."""
    model = AutoSamForSegmentation.from_sam(base_sam_dir, prompt_input_size=32, sam_name_or_path=BASE_SAM_ID)
    with torch.no_grad():
        model.surrogate_decoder.layers[-1].weight.mul_(1e2)  # decisive surrogate masks too
    model.eval()
    model.save_pretrained(folder)
    AutoSamImageProcessor.from_sam_config(model.config.sam_config).save_pretrained(folder)
    (folder / "all_results.json").write_text(json.dumps(MEASURED))
    return model


def add_to_hub_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """Lay `folder` out as the Hub cache's `main` revision of `repo_id` (what `hf_hub_download` leaves)."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    return snapshot


def reference_logits(model: AutoSamForSegmentation, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {mode: model(pixel_values=pixel_values, mode=mode).logits for mode in ("autosam", "surrogate")}


def assert_same_outputs(model, pixel_values, expected):
    for mode, logits in reference_logits(model, pixel_values).items():
        torch.testing.assert_close(logits, expected[mode], rtol=0, atol=1e-5, msg=f"mode {mode}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Trained folder, its full and adapter-size exports (dry runs), an offline Hub cache holding both exports
    and the base SAM, a test image and the trained model's reference outputs on it."""
    root = tmp_path_factory.mktemp("hub")
    base_sam_dir = root / "base_sam"
    save_base_sam(base_sam_dir)
    model = build_trained_folder(root / "trained", base_sam_dir)

    full = publish(root / "trained", "kvasir", FULL_REPO_ID, dry_run=True, output_dir=root / "exports" / "full")
    adapter = publish(
        root / "trained", "kvasir", ADAPTER_REPO_ID, adapter=True, dry_run=True, output_dir=root / "exports" / "adapter"
    )

    cache = root / "hub_cache"
    add_to_hub_cache(cache, BASE_SAM_ID, base_sam_dir)
    add_to_hub_cache(cache, FULL_REPO_ID, full)
    add_to_hub_cache(cache, ADAPTER_REPO_ID, adapter)

    image = np.random.default_rng(0).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    PIL.Image.fromarray(image).save(root / "image.png")
    processor = AutoSamImageProcessor.from_pretrained(full)
    pixel_values = processor(image, return_tensors="pt")["pixel_values"]
    expected = reference_logits(model, pixel_values)
    torch.save({"pixel_values": pixel_values, **expected}, root / "reference.pt")
    return dict(
        root=root,
        trained=root / "trained",
        full=full,
        adapter=adapter,
        cache=cache,
        image=image,
        pixel_values=pixel_values,
        expected=expected,
        model=model,
    )


# ------------------------------------------------------------------------------------------- the written folder
def test_full_folder_has_weights_configs_remote_code_and_card(workspace):
    full = workspace["full"]
    names = {path.name for path in full.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "README.md",
        "all_results.json",
        "modeling_autosam.py",
        "configuration_autosam.py",
        "image_processing_autosam.py",
    } <= names
    config = json.loads((full / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_autosam.AutoSamConfig",
        "AutoModel": "modeling_autosam.AutoSamForSegmentation",
        "AutoModelForSemanticSegmentation": "modeling_autosam.AutoSamForSegmentation",
    }
    assert config["adapter_only"] is False and config["sam_name_or_path"] == BASE_SAM_ID
    processor_config = json.loads((full / "preprocessor_config.json").read_text())
    assert processor_config["auto_map"] == {"AutoImageProcessor": "image_processing_autosam.AutoSamImageProcessor"}
    # Written through a temporary folder renamed into place: nothing else is left next to it.
    assert sorted(path.name for path in full.parent.iterdir()) == ["adapter", "full"]


def test_full_folder_loads_with_from_pretrained(workspace):
    model = AutoSamForSegmentation.from_pretrained(workspace["full"])
    assert not any(parameter.requires_grad for parameter in model.sam.parameters())
    assert_same_outputs(model, workspace["pixel_values"], workspace["expected"])


def test_adapter_checkpoint_holds_only_g_and_h(workspace):
    full_weights, adapter_weights = workspace["full"] / "model.safetensors", workspace["adapter"] / "model.safetensors"
    with safe_open(adapter_weights, "pt") as adapter, safe_open(full_weights, "pt") as full:
        adapter_keys, full_keys = set(adapter.keys()), set(full.keys())
    # SAM's one tied matrix stays so transformers sees a side of the tie; every other SAM weight is dropped.
    tied = "sam.shared_image_embedding.positional_embedding"
    assert {key for key in adapter_keys if key.startswith("sam.")} == {tied}
    assert adapter_keys == {key for key in full_keys if not key.startswith("sam.")} | {tied}
    sam_bytes = sum(p.numel() * p.element_size() for p in workspace["model"].sam.parameters())
    saved = os.path.getsize(full_weights) - os.path.getsize(adapter_weights)
    assert saved >= 0.95 * sam_bytes  # with a real ViT-B SAM: ~375 MB fewer
    assert json.loads((workspace["adapter"] / "config.json").read_text())["adapter_only"] is True


def test_adapter_checkpoint_rebuilds_the_model_from_the_cached_base_sam(workspace):
    model = AutoSamForSegmentation.from_pretrained(
        workspace["adapter"], cache_dir=workspace["cache"], local_files_only=True
    )
    assert model.config.adapter_only is False  # a whole model again: save_pretrained writes a full checkpoint
    assert_same_outputs(model, workspace["pixel_values"], workspace["expected"])


def test_adapter_checkpoint_without_its_base_sam_names_it(workspace, tmp_path):
    with pytest.raises(ValueError, match="facebook/sam-vit-base"):
        AutoSamForSegmentation.from_pretrained(workspace["adapter"], cache_dir=tmp_path, local_files_only=True)


# ------------------------------------------------------------------------------------------- fresh process
FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from transformers import AutoImageProcessor, AutoModel, AutoModelForSemanticSegmentation, pipeline

    full, image_path, reference_path, out_path = sys.argv[1:5]
    reference = torch.load(reference_path)
    results = {}

    def max_difference(model):
        with torch.no_grad():
            return max(
                (model(pixel_values=reference["pixel_values"], mode=mode).logits - reference[mode]).abs().max().item()
                for mode in ("autosam", "surrogate")
            )

    model = AutoModelForSemanticSegmentation.from_pretrained(full, trust_remote_code=True)
    results["folder"] = {"module": type(model).__module__, "difference": max_difference(model)}
    model = AutoModel.from_pretrained("test-org/autosam-kvasir", trust_remote_code=True)
    results["repo_id"] = {"module": type(model).__module__, "difference": max_difference(model)}
    model = AutoModel.from_pretrained("test-org/autosam-kvasir-adapter", trust_remote_code=True)
    results["adapter_repo_id"] = {"module": type(model).__module__, "difference": max_difference(model)}

    processor = AutoImageProcessor.from_pretrained(full, trust_remote_code=True)
    results["processor_module"] = type(processor).__module__
    segmenter = pipeline("image-segmentation", model=full, trust_remote_code=True)
    segments = segmenter(image_path)
    results["pipeline"] = [
        {"label": segment["label"], "size": list(segment["mask"].size)} for segment in segments
    ]
    foreground = [s["mask"] for s in segments if s["label"] == "foreground"]
    if foreground:
        np.save(out_path + ".npy", np.asarray(foreground[0]))
    results["autosam_hf_imported"] = any(name.split(".")[0] == "autosam_hf" for name in sys.modules)
    with open(out_path, "w") as f:
        json.dump(results, f)
    """
)


@pytest.fixture(scope="module")
def fresh_process_results(workspace):
    """One fresh Python (cwd outside the repository, Hub offline, the test cache as Hub cache) that loads the
    exports through remote code only."""
    root = workspace["root"]
    script, out = root / "fresh.py", root / "fresh.json"
    script.write_text(FRESH_PROCESS_SCRIPT)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "PYTHONPATH"))}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HUB_CACHE=str(workspace["cache"]),
        HF_HOME=str(root / "hf_home"),
        HF_MODULES_CACHE=str(root / "hf_modules"),
    )
    completed = run_command(
        [
            sys.executable,
            str(script),
            str(workspace["full"]),
            str(root / "image.png"),
            str(root / "reference.pt"),
            str(out),
        ],
        cwd=root,
        env=env,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(out.read_text()), out


def test_remote_code_loads_the_folder_in_a_fresh_process(fresh_process_results):
    results, _ = fresh_process_results
    assert results["autosam_hf_imported"] is False
    assert results["folder"]["module"].startswith("transformers_modules.")
    assert results["folder"]["difference"] <= 1e-5
    assert results["processor_module"].startswith("transformers_modules.")


def test_repo_id_loads_from_the_offline_hub_cache(fresh_process_results):
    results, _ = fresh_process_results
    assert results["repo_id"]["module"].startswith("transformers_modules.")
    assert results["repo_id"]["difference"] <= 1e-5


def test_adapter_repo_id_rebuilds_the_model_through_remote_code(fresh_process_results):
    results, _ = fresh_process_results
    assert results["adapter_repo_id"]["module"].startswith("transformers_modules.")
    assert results["adapter_repo_id"]["difference"] <= 1e-5


def test_pipeline_segments_with_the_published_folder(fresh_process_results, workspace):
    results, out = fresh_process_results
    height, width = workspace["image"].shape[:2]
    assert {segment["label"] for segment in results["pipeline"]} <= {"background", "foreground"}
    assert all(segment["size"] == [width, height] for segment in results["pipeline"])
    # Its foreground is the model's own mask: logits > 0 at the original size.
    processor = AutoSamImageProcessor.from_pretrained(workspace["full"])
    logits = processor.post_process_logits(workspace["expected"]["autosam"], [(height, width)])[0]
    expected = (logits > 0).numpy()
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(np.load(str(out) + ".npy") > 0, expected)


# ------------------------------------------------------------------------------------------- model card
def test_card_metadata_parses_with_the_measured_numbers(workspace):
    card = ModelCard.load(workspace["full"] / "README.md")
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "image-segmentation" and data["library_name"] == "transformers"
    assert data["base_model"] == BASE_SAM_ID and data["license"] == "apache-2.0"
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
    assert "autosam-predict" in text


def test_card_without_measurements_invents_no_numbers(workspace):
    card = build_model_card("glas", "org/autosam-glas", workspace["model"].config, metrics={})
    assert "model-index" not in card.data.to_dict()
    results = card.text.split("## Results")[1].split("\n\n")[1]
    row = f"| GlaS (MICCAI 2015 gland segmentation) | test | {NOT_MEASURED} | {NOT_MEASURED} |"
    assert results.splitlines()[2] == row
    assert not any(character.isdigit() for character in results.replace("2015", ""))


@pytest.mark.parametrize("dataset", CARD_DATASETS)
def test_every_dataset_card_renders_its_facts(dataset, workspace):
    assert available_card_datasets() == CARD_DATASETS
    card = build_model_card(dataset, f"org/autosam-{dataset}", workspace["model"].config, adapter=True)
    text = card.text
    for required in (
        "Research use only",
        "arXiv:2306.06370",
        "Segment Anything",
        "Kirillov",
        "Apache License 2.0",
        "Terms of the data",
        "Adam, learning rate 0.0003, weight decay 1e-05, batch 10",
        "200 epochs",
        "adapter checkpoint",
        "embedding cache",
    ):
        assert required in text, required
    facts = yaml.safe_load((Path(__file__).parents[1] / "model_cards" / f"{dataset}.yaml").read_text())
    assert facts["pretty_name"] in text and facts["citation"].splitlines()[0] in text
    assert ("These terms must be checked before use." in text) is (not facts["terms_checked"])


def test_sunseg_presets_share_the_sunseg_card(workspace):
    metrics = {"test": {"sunseg_hard": {"dice": 0.61}}}
    card = build_model_card("sunseg_hard", "org/autosam-sunseg", workspace["model"].config, metrics=metrics)
    assert "# AutoSAM for SUN-SEG (video polyp segmentation)" in card.text
    assert "| SUN-SEG TestHard (unseen) | test | 0.6100 | not measured |" in card.text
    assert "| SUN-SEG TestEasy (unseen) | test | not measured | not measured |" in card.text


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


# ------------------------------------------------------------------------------------------- publish: upload, errors
class RecordingHfApi:
    calls: list = []

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        files = sorted(path.name for path in Path(kwargs["folder_path"]).iterdir())
        self.calls.append(("upload_folder", kwargs, files))


def test_publish_creates_the_repo_and_uploads_the_folder(workspace, tmp_path, monkeypatch):
    RecordingHfApi.calls = []
    monkeypatch.setattr(publish_module, "HfApi", RecordingHfApi)
    folder = publish(
        workspace["trained"],
        "kvasir",
        "me/model",
        output_dir=tmp_path / "out",
        private=True,
        revision="v1",
        commit_message="first",
        token="hf_x",
    )
    kinds = [call[0] for call in RecordingHfApi.calls]
    assert kinds == ["init", "create_repo", "create_branch", "upload_folder"]
    assert RecordingHfApi.calls[1][1:] == ("me/model", {"repo_type": "model", "private": True, "exist_ok": True})
    _, upload, uploaded_files = RecordingHfApi.calls[3]
    assert upload["repo_id"] == "me/model" and upload["revision"] == "v1" and upload["commit_message"] == "first"
    assert Path(upload["folder_path"]) == folder == tmp_path / "out"
    assert "model.safetensors" in uploaded_files and "README.md" in uploaded_files


def test_dry_run_uploads_nothing(workspace, tmp_path, monkeypatch, capsys):
    RecordingHfApi.calls = []
    monkeypatch.setattr(publish_module, "HfApi", RecordingHfApi)
    code = publish_main(
        [
            str(workspace["trained"]),
            "--dataset",
            "glas",
            "--repo-id",
            "me/glas",
            "--dry-run",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0 and RecordingHfApi.calls == []
    assert capsys.readouterr().out.strip() == str(tmp_path / "out")
    assert "GlaS" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(dataset="kvasir-v2"), "Known datasets: clinicdb, colondb"),
        (dict(repo_id="not a repo id"), "Invalid --repo-id"),
        (dict(adapter=True, base_sam="/some/local/folder"), "must name its base SAM by Hub id"),
    ],
)
def test_publish_rejects_bad_arguments_naming_them(workspace, tmp_path, arguments, message):
    call = dict(dataset="kvasir", repo_id="me/model", dry_run=True, output_dir=tmp_path / "out") | arguments
    with pytest.raises(ValueError, match=message):
        publish(workspace["trained"], **call)
    assert not (tmp_path / "out").exists()


def test_publish_never_overwrites_without_being_asked(workspace, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    argv = [
        str(workspace["trained"]),
        "--dataset",
        "kvasir",
        "--repo-id",
        "me/model",
        "--dry-run",
        "--output-dir",
        str(tmp_path / "out"),
    ]
    assert publish_main(argv) == 1
    assert "exists and is not empty" in capsys.readouterr().err
    assert publish_main([*argv, "--overwrite"]) == 0
    assert not (tmp_path / "out" / "keep.txt").exists() and (tmp_path / "out" / "model.safetensors").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]
