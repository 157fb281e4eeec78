"""autosam_hf.export.manifest.read_manifest refuses what it cannot read: no format version, a newer one, a graph
file missing (no ONNX package needed)."""

import json

import pytest

from autosam_hf.export.manifest import FORMAT, FORMAT_VERSION, MANIFEST_NAME, read_manifest


def write_manifest(folder, **fields):
    folder.mkdir(exist_ok=True)
    (folder / MANIFEST_NAME).write_text(json.dumps({"format": FORMAT, "graphs": {}, **fields}))
    return folder


def test_a_manifest_without_a_format_version_or_with_a_newer_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match=f"{MANIFEST_NAME} has no format_version"):
        read_manifest(write_manifest(tmp_path / "none"))
    with pytest.raises(ValueError, match=f"format_version {FORMAT_VERSION + 1}; this autosam_hf reads up to"):
        read_manifest(write_manifest(tmp_path / "newer", format_version=FORMAT_VERSION + 1))
    assert read_manifest(write_manifest(tmp_path / "current", format_version=FORMAT_VERSION))["graphs"] == {}


def test_a_missing_graph_file_is_named(tmp_path):
    folder = write_manifest(tmp_path, format_version=FORMAT_VERSION, graphs={"encoder": {"file": "encoder.onnx"}})
    with pytest.raises(ValueError, match="names encoder.onnx for graph 'encoder', but .*encoder.onnx is missing"):
        read_manifest(folder)
