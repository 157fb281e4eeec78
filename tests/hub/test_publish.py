"""autosam_hf.hub.publish: the Hub folder (full and adapter-size), the upload calls and the errors of bad arguments
(`autosam-publish` itself: tests/hub/test_cli.py)."""

import json
import os
from pathlib import Path

import pytest
from safetensors import safe_open

from autosam_hf.data import get_preset
from autosam_hf.hub import PublishSettings, publish
from autosam_hf.hub.publish import trained_dataset
from hub.workspace import BASE_SAM_ID, record_hub_calls


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
    # The trained folder's processor kept the default threshold; the published one carries the model's, which is
    # what the image-segmentation pipeline binarises with.
    assert processor_config["mask_threshold"] == config["mask_threshold"] == workspace["model"].config.mask_threshold
    assert config["mask_threshold"] != 0.0
    # Written through a temporary folder renamed into place: nothing else is left next to it.
    assert sorted(path.name for path in full.parent.iterdir()) == ["adapter", "full"]


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


# ------------------------------------------------------------------------------------------- upload
@pytest.fixture
def recording_api(monkeypatch):
    return record_hub_calls(monkeypatch)


def test_publish_creates_the_repo_and_uploads_the_folder(workspace, tmp_path, recording_api):
    settings = PublishSettings(
        output_dir=tmp_path / "out", private=True, revision="v1", commit_message="first", token="hf_x"
    )
    folder = publish(workspace["trained"], "kvasir", "me/model", settings)
    kinds = [call[0] for call in recording_api.calls]
    assert kinds == ["init", "create_repo", "create_branch", "upload_folder"]
    assert recording_api.calls[0] == ("init", "hf_x")
    assert recording_api.calls[1][1:] == ("me/model", {"repo_type": "model", "private": True, "exist_ok": True})
    _, upload, uploaded_files = recording_api.calls[3]
    assert upload["repo_id"] == "me/model" and upload["revision"] == "v1" and upload["commit_message"] == "first"
    assert Path(upload["folder_path"]) == folder == tmp_path / "out"
    assert "model.safetensors" in uploaded_files and "README.md" in uploaded_files


def test_an_option_publish_does_not_have_is_refused_by_name(workspace, tmp_path):
    with pytest.raises(TypeError, match="dataset"):
        publish(workspace["trained"], "glas", "me/glas", dataset="glas", dry_run=True, output_dir=tmp_path)


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(preset="kvasir-v2"), "Known presets: kvasir, clinicdb, colondb"),
        (dict(repo_id="not a repo id"), "Invalid --hub_model_id"),
        (dict(adapter=True, base_sam="/some/local/folder"), "must name its base SAM by Hub id"),
        (dict(adapter=True, base_sam="sam_vit_b_01ec64.pth"), "must name its base SAM by Hub id"),
        (dict(adapter=True, base_sam="not/a/repo"), "must name its base SAM by Hub id"),
    ],
)
def test_publish_rejects_bad_arguments_naming_them(workspace, tmp_path, arguments, message):
    call = dict(preset="kvasir", repo_id="me/model", dry_run=True, output_dir=tmp_path / "out") | arguments
    with pytest.raises(ValueError, match=message):
        publish(workspace["trained"], **call)
    assert not (tmp_path / "out").exists()


def test_publish_refuses_metrics_files_the_folder_cannot_hold_under_their_names(workspace, tmp_path):
    """The card cites each metrics file by name: two `eval_results.json`, or one named like a model file, would
    leave the folder without the file the card cites."""
    for split in ("val", "test"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "eval_results.json").write_text(json.dumps({"test": {"kvasir": {"dice": 0.5}}}))
    (tmp_path / "config.json").write_text(json.dumps({"test": {"kvasir": {"dice": 0.5}}}))
    same_name = [tmp_path / "val" / "eval_results.json", tmp_path / "test" / "eval_results.json"]
    for metrics_files, name in ((same_name, "eval_results.json"), ([tmp_path / "config.json"], "config.json")):
        with pytest.raises(ValueError, match=f"already holds a {name}"):
            publish(
                workspace["trained"], preset="kvasir", repo_id="me/model", dry_run=True,
                output_dir=tmp_path / "out", metrics_files=metrics_files,
            )  # fmt: skip
        assert not (tmp_path / "out").exists()


def test_the_trained_dataset_is_the_preset_the_recording_or_the_named_folder(tmp_path):
    assert trained_dataset(tmp_path, "glas").display_name == get_preset("glas").display_name
    with pytest.raises(ValueError, match="--dataset_license: only without --preset"):
        trained_dataset(tmp_path, "glas", license="CC BY 4.0")
    with pytest.raises(ValueError, match="does not record what it was trained on"):
        trained_dataset(tmp_path)
    (tmp_path / "training_settings.json").write_text(json.dumps({"preset": "kvasir"}))
    assert trained_dataset(tmp_path).name == "kvasir"
    with pytest.raises(ValueError, match="trained on preset 'kvasir', which has its own card"):
        trained_dataset(tmp_path, display_name="Mine")
    recorded = {"preset": None, "data": "/data/mydata", "dataset_license": "CC0"}
    (tmp_path / "training_settings.json").write_text(json.dumps(recorded))
    own = trained_dataset(tmp_path, citation="@misc{x}")
    assert (own.name, own.display_name) == ("mydata", "mydata")
    assert own.card.terms == "As stated by the trainer: CC0" and own.card.citation == "@misc{x}"
