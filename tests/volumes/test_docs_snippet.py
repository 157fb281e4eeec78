"""docs/volumes.md's example runs as written, on the real CT example, and its round trip holds."""

import re

import numpy as np
from conftest import REPO_ROOT

from autosam_hf.volumes import read_volume


def docs_snippet() -> str:
    return re.search(r"```python\n(.*?)```", (REPO_ROOT / "docs" / "volumes.md").read_text(), re.DOTALL).group(1)


def test_the_volumes_page_example_runs(tmp_path, monkeypatch, ct_example, capsys):
    (tmp_path / "ct_example").symlink_to(ct_example)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(docs_snippet(), namespace)
    assert capsys.readouterr().out == "{'dice': 1.0, 'hd95': 0.0, 'nsd': 1.0}\n"
    written = read_volume(tmp_path / "predictions" / "ct_001.nii.gz")
    np.testing.assert_array_equal(written.array, namespace["labels"].array)
    assert (tmp_path / "predictions" / "ct_001.png").stat().st_size > 0
    assert namespace["image"].shape == (101, 122, 3) and namespace["label_map"].shape == (101, 122)
