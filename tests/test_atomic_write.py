"""autosam_hf.atomic_write: a file is either its old whole self or its new whole self, never half-written."""

import pytest

from autosam_hf.atomic_write import write_atomically, write_folder_atomically


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


def test_a_folder_appears_whole_and_replaces_the_old_one_only_when_complete(tmp_path):
    folder = tmp_path / "export"
    write_folder_atomically(folder, lambda staging: (staging / "a.txt").write_text("first"))
    assert [p.name for p in folder.iterdir()] == ["a.txt"]

    def write_half_then_fail(staging):
        (staging / "b.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_folder_atomically(folder, write_half_then_fail)
    assert [p.name for p in folder.iterdir()] == ["a.txt"] and [p.name for p in tmp_path.iterdir()] == ["export"]
    write_folder_atomically(folder, lambda staging: (staging / "b.txt").write_text("second"))
    assert [p.name for p in folder.iterdir()] == ["b.txt"] and [p.name for p in tmp_path.iterdir()] == ["export"]
