"""`autosam-publish` (autosam_hf.hub.cli): a dry run uploads nothing and prints the folder, a failed upload is one
`autosam-publish: error:` line with exit status 1, and an existing folder is replaced only with --overwrite."""

import types

import pytest
from huggingface_hub.errors import HfHubHTTPError

from autosam_hf.hub.cli import main as publish_main
from hub.workspace import record_hub_calls


def test_dry_run_uploads_nothing(workspace, tmp_path, monkeypatch, capsys):
    recording_api = record_hub_calls(monkeypatch)
    argv = ["--model", str(workspace["trained"]), "--preset", "glas", "--hub_model_id", "me/glas"]
    code = publish_main([*argv, "--dry-run", "--output-dir", str(tmp_path / "out")])
    assert code == 0 and recording_api.calls == []
    assert capsys.readouterr().out.strip() == str(tmp_path / "out")
    assert "GlaS" in (tmp_path / "out" / "README.md").read_text()


def test_cli_names_the_hub_error_and_exits_1_when_the_upload_fails(workspace, tmp_path, monkeypatch, capsys):
    recording_api = record_hub_calls(monkeypatch)
    response = types.SimpleNamespace(headers={}, request=None)  # what HfHubHTTPError reads of an HTTP response
    recording_api.error = HfHubHTTPError(
        "401 Client Error: Unauthorized for url\nInvalid credentials", response=response
    )
    argv = ["--model", str(workspace["trained"]), "--preset", "kvasir", "--repo-id", "me/model"]
    with pytest.raises(SystemExit) as exit_info:
        publish_main([*argv, "--output_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert error.endswith("autosam-publish: error: 401 Client Error: Unauthorized for url Invalid credentials\n")
    assert "Traceback" not in error


def test_publish_never_overwrites_without_being_asked(workspace, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    argv = ["--model", str(workspace["trained"]), "--preset", "kvasir", "--hub_model_id", "me/model", "--dry_run"]
    argv += ["--output_dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        publish_main(argv)
    assert exit_info.value.code == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert publish_main([*argv, "--overwrite"]) == 0
    assert not (tmp_path / "out" / "keep.txt").exists() and (tmp_path / "out" / "model.safetensors").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]
