"""autosam_hf.atomic_write: a file is either its old whole self or its new whole self, never half-written; the
background writer runs its calls in order, a bounded queue ahead, and its errors stop the loop that feeds it."""

import threading
import time

import pytest

from autosam_hf.atomic_write import BackgroundWriter, write_atomically, write_folder_atomically


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


@pytest.mark.parametrize("background", [False, True], ids=["inline", "background"])
def test_the_writer_runs_the_calls_in_order_with_a_bounded_queue(background):
    ran, largest_queue = [], []
    with BackgroundWriter(background, in_flight=2) as writer:
        for value in range(6):
            writer.submit(ran.append, value)
            largest_queue.append(len(writer.pending))
    assert ran == list(range(6)) and max(largest_queue) <= (2 if background else 0)
    with pytest.raises(ValueError, match="in_flight must be >= 1"):
        BackgroundWriter(True, in_flight=0)


def test_a_failed_background_call_stops_the_writer_with_its_error():
    started = threading.Event()

    def fail():
        started.set()
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), BackgroundWriter(True, in_flight=4) as writer:
        writer.submit(fail)
        started.wait()
        time.sleep(0.05)  # the call has failed by now: the next submit raises its error
        writer.submit(pytest.fail, "a call after the failure ran")
    ran = []
    with pytest.raises(OSError, match="disk full"), BackgroundWriter(True) as writer:
        writer.submit(fail)  # raised on leaving the block, after the calls before it
    with BackgroundWriter(True) as writer:
        writer.submit(ran.append, 1)
    assert ran == [1]
