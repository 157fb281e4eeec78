"""autosam_hf.atomic_write: a file is either its old whole self or its new whole self, never half-written."""

import pytest

from autosam_hf.atomic_write import write_atomically


def test_replaces_the_file_in_one_step(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    write_atomically(path, lambda temporary: temporary.write_text("new"))
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")

    def write_half_then_fail(temporary):
        temporary.write_text("ha")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, write_half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_interruption_is_cleaned_up_too(tmp_path):
    def interrupted(temporary):
        temporary.write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "new.txt", interrupted)
    assert list(tmp_path.iterdir()) == []
