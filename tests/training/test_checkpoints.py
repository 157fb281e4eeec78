"""autosam_hf.training.checkpoints: pruning after a complete save, the best weights a checkpoint carries, what a
resume drops of the run it replaces."""

import json
import os

import pytest

from autosam_hf.atomic_write import write_atomically
from autosam_hf.training.checkpoints import (
    BEST_FILE,
    PROGRESS_FILE,
    RunState,
    TrainingLog,
    check_layout,
    find_checkpoint,
    keep_best_weights,
    prune_checkpoints,
    restore_best_weights,
)


def make_checkpoints(folder, complete: list[int], incomplete: list[int]) -> None:
    for number in complete + incomplete:
        (folder / f"checkpoint_{number}").mkdir(parents=True)
    for number in complete:
        (folder / f"checkpoint_{number}" / PROGRESS_FILE).write_text("{}")


def test_pruning_keeps_the_newest_complete_checkpoints_and_the_save_in_progress(tmp_path):
    make_checkpoints(tmp_path, complete=[0, 1, 3], incomplete=[2, 4])
    (tmp_path / "checkpoint_1 copy").mkdir()  # a user's copy is not one of them
    removed = prune_checkpoints(tmp_path, keep=2)
    assert sorted(path.name for path in removed) == ["checkpoint_0", "checkpoint_2"]
    # checkpoint_4 is newer than the newest complete one: a save cut short, which a resume replaces.
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "checkpoint_1", "checkpoint_1 copy", "checkpoint_3", "checkpoint_4",
    ]  # fmt: skip
    assert prune_checkpoints(tmp_path / "none", keep=1) == []


def test_a_checkpoint_without_a_recorded_layout_or_with_another_is_refused(tmp_path):
    make_checkpoints(tmp_path, complete=[1], incomplete=[])
    checkpoint = tmp_path / "checkpoint_1"
    with pytest.raises(ValueError, match="checkpoint_1 records no training layout"):
        check_layout(checkpoint, {"num_processes": 1})
    (checkpoint / PROGRESS_FILE).write_text(json.dumps({"layout": {"num_processes": 2}}))
    with pytest.raises(ValueError, match="laid out differently: num_processes 2 then, 1 now"):
        check_layout(checkpoint, {"num_processes": 1})


def test_a_checkpoint_keeps_the_best_weights_of_its_time(tmp_path):
    best, checkpoint = tmp_path / BEST_FILE, tmp_path / "checkpoint_0"
    checkpoint.mkdir()
    best.write_bytes(b"epoch 1")
    keep_best_weights(best, checkpoint)
    assert os.path.samefile(best, checkpoint / BEST_FILE)  # a hard link: no space
    write_atomically(best, lambda path: path.write_bytes(b"epoch 2"))  # as the trainer replaces it
    assert (checkpoint / BEST_FILE).read_bytes() == b"epoch 1"
    assert restore_best_weights(checkpoint, best) and best.read_bytes() == b"epoch 1"
    assert not restore_best_weights(tmp_path / "checkpoint_9", best)  # saved before any validation: none


def test_without_hard_links_the_best_weights_are_copied(tmp_path, monkeypatch):
    best, checkpoint = tmp_path / BEST_FILE, tmp_path / "checkpoint_0"
    checkpoint.mkdir()
    best.write_bytes(b"epoch 1")

    def no_links(source, target):
        raise OSError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    keep_best_weights(best, checkpoint)
    assert not os.path.samefile(best, checkpoint / BEST_FILE)
    assert (checkpoint / BEST_FILE).read_bytes() == b"epoch 1"
    best.unlink()
    with pytest.raises(FileNotFoundError, match=BEST_FILE):  # before anything is half-written into the checkpoint
        keep_best_weights(best, tmp_path / "checkpoint_1")


def test_a_checkpoint_named_as_the_current_folder_is_found(tmp_path, monkeypatch):
    make_checkpoints(tmp_path, complete=[3], incomplete=[])
    (tmp_path / "checkpoint_3" / PROGRESS_FILE).write_text('{"stage": "prompt"}')
    monkeypatch.chdir(tmp_path / "checkpoint_3")
    assert find_checkpoint(tmp_path, ".", "prompt") == tmp_path.resolve() / "checkpoint_3"
    renamed = tmp_path / "backup"
    (tmp_path / "checkpoint_3").rename(renamed)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="--resume_from_checkpoint .*backup: a checkpoint folder keeps the name"):
        find_checkpoint(tmp_path, str(renamed), "prompt")


def test_a_resumed_stage_rewinds_its_own_log_lines_only(tmp_path):
    """`--stage all` resumed: each stage drops what the interrupted run logged of it after its resume point; the
    other stage's lines stay (each rewinds its own when it resumes)."""
    run = RunState(tmp_path, stages=("prompt", "surrogate"), resume_from="latest")
    log = TrainingLog(run.log_path, is_main_process=True)
    for step in (1, 2, 3):
        log.write({"stage": "prompt", "step": step, "loss": 1.0})
    log.write({"stage": "prompt", "step": 3, "val_dice": 0.5})
    for step in (1, 2):
        log.write({"stage": "surrogate", "step": step, "loss": 1.0})

    def lines():
        return [(r["stage"], r["step"], "loss" in r) for r in map(json.loads, log.path.read_text().splitlines())]

    run.rewind_log("prompt", {"completed_steps": 3, "history": [{"step": 3}]})  # its final checkpoint: nothing to drop
    assert len(lines()) == 6
    run.rewind_log("surrogate", {"completed_steps": 1, "history": []})
    assert lines() == [("prompt", 1, True), ("prompt", 2, True), ("prompt", 3, True), ("prompt", 3, False),
                       ("surrogate", 1, True)]  # fmt: skip
    run.rewind_log("prompt", {"completed_steps": 2, "history": []})  # a checkpoint before epoch 0's validation
    assert lines() == [("prompt", 1, True), ("prompt", 2, True), ("surrogate", 1, True)]
