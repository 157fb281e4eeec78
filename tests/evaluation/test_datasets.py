"""autosam_hf.evaluation.datasets: dataset specs, and where a data root holds each preset (the presets' folder
names)."""

from pathlib import Path

import pytest

from autosam_hf.evaluation import DatasetSpec, parse_dataset_spec, resolve_dataset_spec, resolve_datasets
from evaluation.sample_data import polyp_root_without_clinicdb


def test_dataset_specs_resolve_and_reject_bad_names(shared_data_dir, tmp_path):
    assert parse_dataset_spec("glas:testA=/x") == DatasetSpec("glas", "testA", Path("/x"))
    with pytest.raises(ValueError, match="kvasirr.*Known presets"):
        parse_dataset_spec("kvasirr=/x")
    with pytest.raises(ValueError, match="no split 'dev'"):
        parse_dataset_spec("kvasir:dev")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        resolve_dataset_spec(parse_dataset_spec(f"etis={tmp_path / 'nowhere'}"), None)
    with pytest.raises(FileNotFoundError, match="holds no 'test' split"):
        resolve_dataset_spec(parse_dataset_spec(f"etis={tmp_path}"), None)
    with pytest.raises(FileNotFoundError, match="tried the folders etis, etis_laribpolypdb"):
        resolve_dataset_spec(parse_dataset_spec("etis"), tmp_path)
    data_root = polyp_root_without_clinicdb(shared_data_dir, tmp_path)
    specs = resolve_datasets([parse_dataset_spec("etis")], ["polyps"], data_root)
    assert [(spec.key, spec.data_dir and spec.data_dir.name) for spec in specs] == [
        ("etis", "etis_laribpolypdb"),
        ("kvasir", "kvasir"),
        ("clinicdb", None),
        ("colondb", "cvc_colondb"),
    ]
