"""The training script end to end, on a few real Kvasir-SEG images with a tiny SAM."""

import itertools
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import yaml
from accelerate import Accelerator
from conftest import free_port, make_tiny_sam_config, run_command
from hub.workspace import record_hub_calls
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file
from transformers import SamModel

from autosam_hf import AutoSamForSegmentation
from autosam_hf.atomic_write import write_atomically
from autosam_hf.evaluation.cli import main as evaluate_main
from autosam_hf.hub import publish
from autosam_hf.inference.cli import main as predict_main
from autosam_hf.model import sam_attention
from autosam_hf.training.checkpoints import checkpoints_after, find_checkpoint, read_progress
from autosam_hf.training.cli import main


@pytest.fixture(scope="module")
def tiny_sam_dir(tmp_path_factory) -> Path:
    """A transformers SAM checkpoint folder (what --sam takes), tiny and random."""
    folder = tmp_path_factory.mktemp("tiny_sam")
    torch.manual_seed(0)
    SamModel(make_tiny_sam_config()).save_pretrained(folder)
    return folder


def quick_args(sam_dir: Path, data_dir: Path, output_dir: Path, *extra: str, **overrides: str) -> list[str]:
    """A few-step run on 6 train / 3 val Kvasir images; `overrides` replace flag values (`preset="nope"`)."""
    flags = {
        "sam": str(sam_dir),
        "preset": "kvasir",
        "data": str(data_dir / "kvasir"),
        "output_dir": str(output_dir),
        "max_train_samples": "6",
        "max_eval_samples": "3",
        "per_device_train_batch_size": "2",
        "surrogate_batch_size": "3",
        "per_device_eval_batch_size": "3",
        "prompt_input_size": "64",
        "num_views": "2",
        "mixed_precision": "no",
        "num_overlays": "2",
        "seed": "3",
    }
    flags.update(overrides)
    return [item for flag, value in flags.items() for item in (f"--{flag}", value)] + list(extra)


def logged(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]


def test_both_stages_on_real_kvasir(tiny_sam_dir, shared_data_dir, tmp_path):
    output_dir = tmp_path / "run"
    main(quick_args(tiny_sam_dir, shared_data_dir, output_dir, "--stage", "all", "--max_train_steps", "3"))

    results = json.loads((output_dir / "all_results.json").read_text())
    assert set(results["stages"]) == {"prompt", "surrogate"}
    assert results["train_examples"] == 6 and results["validation_examples"] == 3
    for metrics in (results["validation"]["kvasir"], results["validation_surrogate"]["kvasir"]):
        assert 0.0 <= metrics["iou"] <= metrics["dice"] <= 1.0
    records = logged(output_dir)
    assert [r["step"] for r in records if r["stage"] == "prompt" and "loss" in r] == [1, 2, 3]
    assert [r["step"] for r in records if r["stage"] == "surrogate" and "loss" in r] == [1, 2, 3]
    assert all(r["images"] == 3 for r in records if "val_dice" in r)
    for picture in ("training_curves.png", "validation_overlays_autosam.png", "validation_overlays_surrogate.png"):
        assert (output_dir / picture).stat().st_size > 0

    # The saved model is the best validation epoch, complete, and reloads frozen.
    model = AutoSamForSegmentation.from_pretrained(output_dir)
    assert results["stages"]["prompt"]["val_dice"] == results["validation"]["kvasir"]["dice"]
    assert not any(p.requires_grad for p in model.sam.parameters())
    sam = SamModel.from_pretrained(tiny_sam_dir)
    for key, value in sam.state_dict().items():
        assert torch.equal(model.sam.state_dict()[key], value), key  # SAM left untouched by training

    # What training writes is what publishing reads: the card carries the measured validation Dice.
    card = ModelCard.load(
        publish(output_dir, preset="kvasir", repo_id="org/autosam-test", dry_run=True, output_dir=tmp_path / "hub")
        / "README.md"
    )
    reported = [r.metric_value for r in card.data.eval_results if r.metric_type == "dice"]
    assert reported == pytest.approx([results["validation"]["kvasir"]["dice"]])
    # ... and the settings it was trained with: the default recipe's, with this run's overrides.
    assert results["training"]["lr_scheduler_type"] == "cosine" and results["training"]["batch_size"] == 2
    for row in ("| `lr_scheduler_type` | `cosine` |", "| `batch_size` | `2` |", "| `max_train_steps` | `3` |"):
        assert row in card.text
    assert "did not record" not in card.text


def test_resume_continues_with_the_same_losses(tiny_sam_dir, shared_data_dir, tmp_path):
    args = ["--stage", "prompt", "--max_train_steps", "5", "--checkpointing_steps", "2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    main(quick_args(tiny_sam_dir, shared_data_dir, straight, *args))
    # Stopped as if interrupted: a checkpoint to resume from, no model yet.
    main(quick_args(tiny_sam_dir, shared_data_dir, resumed, *args, "--stop_after_steps", "2"))
    assert not (resumed / "model.safetensors").exists()
    assert [r["step"] for r in logged(resumed) if "loss" in r] == [1, 2]
    # The run's options are kept for the resume, which needs only the folder (and would take any flag given again).
    saved = yaml.safe_load((resumed / "training_args.yaml").read_text())
    assert saved["preset"] == "kvasir" and saved["max_train_steps"] == 5 and "stop_after_steps" not in saved
    main(["--output_dir", str(resumed), "--resume_from_checkpoint", "latest"])

    straight_losses = [r["loss"] for r in logged(straight) if "loss" in r]
    resumed_losses = [r["loss"] for r in logged(resumed) if "loss" in r]
    assert len(straight_losses) == 5
    assert resumed_losses == pytest.approx(straight_losses, rel=1e-5, abs=1e-6)
    straight_val = [r["val_dice"] for r in logged(straight) if "val_dice" in r]
    assert [r["val_dice"] for r in logged(resumed) if "val_dice" in r] == pytest.approx(straight_val, abs=1e-6)
    # Checkpoints hold g and h only, never SAM's weights.
    checkpoint = max((resumed / "training_state" / "prompt" / "checkpoints").iterdir())
    names = {p.name for p in checkpoint.iterdir()}
    assert "trainable.safetensors" in names and "model.safetensors" not in names


def trained_weights(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """g's and h's tensors in a safetensors file, keys without `prefix`."""
    return {k.removeprefix(prefix): v for k, v in load_file(path).items() if k.startswith(prefix) and "sam." not in k}


def test_the_weight_average_is_validated_kept_and_resumed(tiny_sam_dir, shared_data_dir, tmp_path):
    """--ema_decay: each validation scores the average (and logs the trained weights' own scores), the saved model is
    the best epoch's average, and a resumed run carries the average on exactly as an uninterrupted one."""
    args = ["--stage", "standalone", "--max_train_steps", "6", "--ema_decay", "0.5", "--num_overlays", "0"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    main(quick_args(tiny_sam_dir, shared_data_dir, straight, *args))
    validations = [r for r in logged(straight) if "val_dice" in r]
    assert [r["step"] for r in validations] == [3, 6]
    assert all({"unaveraged_val_dice", "unaveraged_val_iou"} <= r.keys() for r in validations)

    # Epoch checkpoints (steps 3 and 6) hold the average beside the trained weights; the model is the best epoch's
    # average, not its trained weights.
    best_epoch = max(validations, key=lambda r: r["val_dice"])["epoch"]
    checkpoint = straight / "training_state" / "standalone" / "checkpoints" / f"checkpoint_{best_epoch}"
    average = trained_weights(checkpoint / "ema.safetensors", prefix="module.")
    saved = trained_weights(straight / "model.safetensors")
    assert average.keys() == saved.keys()
    for key, value in average.items():
        assert torch.equal(saved[key], value), key
    raw = trained_weights(checkpoint / "trainable.safetensors")
    assert not torch.equal(raw["surrogate_decoder.layers.6.weight"], saved["surrogate_decoder.layers.6.weight"])

    main(quick_args(tiny_sam_dir, shared_data_dir, resumed, *args, "--stop_after_steps", "4"))
    main(quick_args(tiny_sam_dir, shared_data_dir, resumed, *args, "--resume_from_checkpoint", "latest"))
    for before, after in zip(validations, [r for r in logged(resumed) if "val_dice" in r], strict=True):
        for key in ("val_dice", "unaveraged_val_dice"):
            assert after[key] == pytest.approx(before[key], abs=1e-6), key
    for key, value in trained_weights(resumed / "model.safetensors").items():
        torch.testing.assert_close(value, saved[key], rtol=1e-5, atol=1e-6)


def without_times(records: list[dict]) -> list[dict]:
    return [{key: value for key, value in record.items() if key != "seconds"} for record in records]


def test_resume_on_an_epochs_last_step_validates_that_epoch_and_logs_each_step_once(
    tiny_sam_dir, shared_data_dir, tmp_path
):
    """6 images at batch 2: 3 steps per epoch. The checkpoint of step 3 is taken before epoch 0 is validated; a run
    resumed from it (after the interrupted one went on to step 5) validates epoch 0 and leaves the log an
    uninterrupted run leaves."""
    output_dir = tmp_path / "run"
    args = quick_args(tiny_sam_dir, shared_data_dir, output_dir, "--stage", "prompt", "--max_train_steps", "5")
    args += ["--checkpointing_steps", "3", "--num_overlays", "0"]
    main(args)
    uninterrupted = without_times(logged(output_dir))
    assert [r["step"] for r in uninterrupted if "val_dice" in r] == [3, 5]
    checkpoint = output_dir / "training_state" / "prompt" / "checkpoints" / "checkpoint_0"
    assert read_progress(checkpoint)["completed_steps"] == 3 and read_progress(checkpoint)["history"] == []

    main([*args, "--resume_from_checkpoint", str(checkpoint)])
    resumed = without_times(logged(output_dir))
    assert [(r["step"], "val_dice" in r) for r in resumed] == [(r["step"], "val_dice" in r) for r in uninterrupted]
    for before, after in zip(uninterrupted, resumed, strict=True):
        assert after.keys() == before.keys()
        for key, value in before.items():
            assert after[key] == (pytest.approx(value, abs=1e-6) if isinstance(value, float) else value), key
    # The best epoch is chosen among both validations, as in the uninterrupted run.
    best = json.loads((output_dir / "all_results.json").read_text())["stages"]["prompt"]["val_dice"]
    assert best == pytest.approx(max(r["val_dice"] for r in uninterrupted if "val_dice" in r), abs=1e-6)


def test_resume_from_an_earlier_checkpoint_replaces_the_later_ones(tiny_sam_dir, shared_data_dir, tmp_path):
    """Checkpoints of steps 2, 3 and 4 (checkpoint_1.._3); resuming from step 2's retrains steps 3 and 4 into fresh
    checkpoints (the old checkpoint_2 would have stopped the first save) and logs what an uninterrupted run logs."""
    output_dir = tmp_path / "run"
    flags = ["--stage", "standalone", "--max_train_steps", "4", "--checkpointing_steps", "1"]
    args = quick_args(tiny_sam_dir, shared_data_dir, output_dir, *flags, "--checkpoints_total_limit", "3")
    main([*args, "--num_overlays", "0"])
    uninterrupted = without_times(logged(output_dir))
    checkpoints = output_dir / "training_state" / "standalone" / "checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir()) == ["checkpoint_1", "checkpoint_2", "checkpoint_3"]

    main([*args, "--num_overlays", "0", "--resume_from_checkpoint", str(checkpoints / "checkpoint_1")])
    resumed = without_times(logged(output_dir))
    assert [r["step"] for r in resumed] == [r["step"] for r in uninterrupted]
    assert [r.get("loss") for r in resumed] == pytest.approx([r.get("loss") for r in uninterrupted], abs=1e-6)
    assert sorted(read_progress(path)["completed_steps"] for path in checkpoints.iterdir()) == [2, 3, 4]


def test_a_stage_that_starts_over_on_resume_replaces_its_old_checkpoints(tiny_sam_dir, shared_data_dir, tmp_path):
    """Resuming the prompt stage from its first step retrains g, so the surrogate stage starts over: its checkpoints
    from h on the old g go (they would have stopped its first save, and `latest` could find them later). The
    prompt stage's saves prune the named checkpoint away before the surrogate stage starts, which must not matter."""
    output_dir = tmp_path / "run"
    flags = ["--stage", "all", "--max_train_steps", "3", "--checkpointing_steps", "1", "--num_overlays", "0"]
    args = quick_args(tiny_sam_dir, shared_data_dir, output_dir, *flags)
    main([*args, "--checkpoints_total_limit", "3"])
    state = output_dir / "training_state"
    # A resume takes the run's options (training_args.yaml) unless given again: the limit goes back to 2.
    resume = ["--resume_from_checkpoint", str(state / "prompt" / "checkpoints" / "checkpoint_0")]
    main([*args, *resume, "--checkpoints_total_limit", "2"])
    assert not (state / "prompt" / "checkpoints" / "checkpoint_0").exists()
    surrogate = state / "surrogate" / "checkpoints"
    assert sorted(read_progress(path)["completed_steps"] for path in surrogate.iterdir()) == [2, 3]
    steps = [(r["stage"], r["step"]) for r in logged(output_dir) if "loss" in r]
    assert steps == [("prompt", step) for step in (1, 2, 3)] + [("surrogate", step) for step in (1, 2, 3)]
    # A user's copy beside the checkpoints is not one of them.
    (surrogate / "checkpoint_2 copy").mkdir()
    assert [path.name for path in checkpoints_after(surrogate, -1)] == ["checkpoint_1", "checkpoint_2"]


def test_a_fresh_run_into_a_used_output_dir_leaves_no_old_checkpoint(tiny_sam_dir, shared_data_dir, tmp_path):
    """Without --resume_from_checkpoint the run starts clean: `latest` must never find the previous run's state."""
    output_dir = tmp_path / "run"
    flags = ["--stage", "standalone", "--checkpointing_steps", "1", "--checkpoints_total_limit", "2"]
    main(quick_args(tiny_sam_dir, shared_data_dir, output_dir, *flags, "--max_train_steps", "4", num_overlays="0"))
    main(quick_args(tiny_sam_dir, shared_data_dir, output_dir, *flags, "--max_train_steps", "2", num_overlays="0"))
    checkpoints = output_dir / "training_state" / "standalone" / "checkpoints"
    assert sorted(read_progress(path)["completed_steps"] for path in checkpoints.iterdir()) == [1, 2]
    assert read_progress(find_checkpoint(checkpoints, "latest", "standalone"))["completed_steps"] == 2
    assert [r["step"] for r in logged(output_dir) if "loss" in r] == [1, 2]


class Killed(Exception):
    """A job killed mid-save (by a scheduler's time limit, say)."""


def test_a_save_cut_short_leaves_the_last_complete_checkpoint(tiny_sam_dir, shared_data_dir, tmp_path, monkeypatch):
    """With --checkpoints_total_limit 1 the older checkpoint goes only once the new one is complete (its progress
    file written): a job killed while saving resumes from the one before."""
    output_dir = tmp_path / "run"
    flags = ["--stage", "standalone", "--max_train_steps", "3", "--checkpointing_steps", "1", "--num_overlays", "0"]
    args = quick_args(tiny_sam_dir, shared_data_dir, output_dir, *flags, "--checkpoints_total_limit", "1")
    save_state, saves = Accelerator.save_state, []

    def killed_in_the_second_save(self, *args, **kwargs):
        saves.append(save_state(self, *args, **kwargs))
        if len(saves) == 2:
            raise Killed  # accelerate's state is written, the progress file is not
        return saves[-1]

    monkeypatch.setattr(Accelerator, "save_state", killed_in_the_second_save)
    with pytest.raises(Killed):
        main(args)
    monkeypatch.undo()
    checkpoints = output_dir / "training_state" / "standalone" / "checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir()) == ["checkpoint_0", "checkpoint_1"]
    assert find_checkpoint(checkpoints, "latest", "standalone") == checkpoints / "checkpoint_0"
    main([*args, "--resume_from_checkpoint", "latest"])
    assert [read_progress(path)["completed_steps"] for path in checkpoints.iterdir()] == [3]  # the limit holds
    assert [r["step"] for r in logged(output_dir) if "loss" in r] == [1, 2, 3]


def test_a_resume_ends_on_the_best_weights_of_its_checkpoint(tiny_sam_dir, shared_data_dir, tmp_path):
    """The run a resume replaces may have written later best weights (an epoch validated after the checkpoint, or a
    whole run after an earlier checkpoint): each checkpoint carries the best weights as of its step, and the resumed
    run selects among its own epochs with them."""
    output_dir = tmp_path / "run"
    args = ["--stage", "standalone", "--max_train_steps", "6", "--num_overlays", "0"]
    args = quick_args(tiny_sam_dir, shared_data_dir, output_dir, *args)
    main(args)
    saved = trained_weights(output_dir / "model.safetensors")
    state = output_dir / "training_state" / "standalone"
    last = state / "checkpoints" / "checkpoint_1"
    assert read_progress(last)["completed_steps"] == 6
    # Another run's best weights, written as the trainer writes them (a new file renamed over the old).
    other = {key: value + 1 for key, value in load_file(state / "best.safetensors").items()}
    write_atomically(state / "best.safetensors", lambda path: save_file(other, path))
    main([*args, "--resume_from_checkpoint", str(last)])  # nothing left to train: the best epoch is the checkpoint's
    resumed = trained_weights(output_dir / "model.safetensors")
    assert resumed.keys() == saved.keys()
    for key, value in saved.items():
        assert torch.equal(resumed[key], value), key


def test_push_to_hub_publishes_every_run_into_the_same_output_dir(tiny_sam_dir, shared_data_dir, tmp_path, monkeypatch):
    """--push_to_hub writes <output_dir>/hub/<org>--<name> and uploads it; a second run there replaces that folder
    (it is the run's own) instead of stopping on it after training."""
    hub = record_hub_calls(monkeypatch)
    output_dir = tmp_path / "run"
    args = quick_args(tiny_sam_dir, shared_data_dir, output_dir, "--stage", "standalone", "--max_train_steps", "1")
    args += ["--push_to_hub", "--hub_model_id", "me/autosam-kvasir", "--num_overlays", "0"]
    main(args)
    main(args)
    uploads = [(call[1]["repo_id"], call[2]) for call in hub.calls if call[0] == "upload_folder"]
    assert [repo_id for repo_id, _ in uploads] == ["me/autosam-kvasir"] * 2
    assert {"README.md", "config.json", "model.safetensors"} <= set(uploads[1][1])
    assert (output_dir / "hub" / "me--autosam-kvasir" / "README.md").is_file()


def test_surrogate_stage_trains_h_on_the_g_of_an_init_from_model(tiny_sam_dir, shared_data_dir, tmp_path, capsys):
    first, second = tmp_path / "prompt_stage", tmp_path / "surrogate_stage"
    main(quick_args(tiny_sam_dir, shared_data_dir, first, "--stage", "prompt", "--max_train_steps", "1"))
    args = quick_args(tiny_sam_dir, shared_data_dir, second, "--stage", "surrogate", "--init_from", str(first))
    # g's input size and weights come with the --init_from model: flags that would change them are refused.
    assert "--prompt_input_size does not apply with --init_from" in bad_input_error(capsys, args)
    position = args.index("--prompt_input_size")
    main(args[:position] + args[position + 2 :] + ["--max_train_steps", "2"])

    trained, started_from = (AutoSamForSegmentation.from_pretrained(folder) for folder in (second, first))
    g_after, g_before = (model.prompt_generator.state_dict() for model in (trained, started_from))
    assert all(torch.equal(g_after[key], g_before[key]) for key in g_before)  # g frozen, h trained on its output
    h_after, h_before = (model.surrogate_decoder.state_dict() for model in (trained, started_from))
    assert any(not torch.equal(h_after[key], h_before[key]) for key in h_before)
    results = json.loads((second / "all_results.json").read_text())
    assert results["sam"] == started_from.config.sam_name_or_path and "init_from" not in results["training"]
    saved = json.loads((second / "training_settings.json").read_text())
    assert saved["init_from"] == str(first)  # recorded, but not for the public card (a local path)
    assert set(results["stages"]) == {"surrogate"} and "validation_surrogate" in results


def test_cache_is_used_and_no_cache_gives_the_reference_path(tiny_sam_dir, shared_data_dir, tmp_path, monkeypatch):
    calls = []
    original = SamModel.get_image_embeddings

    def counting(self, pixel_values, **kwargs):
        calls.append(pixel_values.shape[0])
        return original(self, pixel_values, **kwargs)

    monkeypatch.setattr(SamModel, "get_image_embeddings", counting)
    base = ["--stage", "prompt", "--max_train_steps", "3"]
    main(quick_args(tiny_sam_dir, shared_data_dir, tmp_path / "cached", *base, num_overlays="0"))
    cached_calls = sum(calls)
    # 6 images x 2 views + 3 validation images, once each; then training reads them back.
    assert cached_calls == 6 * 2 + 3
    calls.clear()
    main(quick_args(tiny_sam_dir, shared_data_dir, tmp_path / "uncached", *base, "--no_cache", num_overlays="0"))
    assert sum(calls) >= 3 * 2  # every training step ran the encoder

    # --attention_kernel folded: the encoder runs the folded kernel, and the run's losses are the dense run's.
    folded_calls = []
    original_folded = sam_attention.folded_bias_attention

    def counting_folded(*args, **kwargs):
        folded_calls.append(1)
        return original_folded(*args, **kwargs)

    monkeypatch.setattr(sam_attention, "folded_bias_attention", counting_folded)
    folded = tmp_path / "uncached_folded"
    main(
        quick_args(
            tiny_sam_dir, shared_data_dir, folded, *base, "--no_cache", "--attention_kernel", "folded", num_overlays="0"
        )
    )
    assert folded_calls
    dense_losses = [record["loss"] for record in logged(tmp_path / "uncached") if "loss" in record]
    folded_losses = [record["loss"] for record in logged(folded) if "loss" in record]
    assert len(folded_losses) == len(dense_losses) == 3
    np.testing.assert_allclose(folded_losses, dense_losses, rtol=1e-4)


def bad_input_error(capsys, argv: list[str]) -> str:
    """Run autosam-train expecting bad input: exit status 2, one `autosam-train: error:` line, no traceback."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("autosam-train: error: ")]
    return line


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("preset", "nope", "Unknown dataset preset 'nope'"),
        ("data", "/nonexistent/kvasir", "/nonexistent/kvasir"),
        ("sam", "{tmp}/broken.pth", "broken.pth"),
        ("resume_from_checkpoint", "{tmp}/missing", "missing"),
        ("checkpointing_steps", "often", "--checkpointing_steps must be 'epoch' or a number >= 1"),
        ("checkpointing_steps", "0", "--checkpointing_steps must be 'epoch' or a number >= 1, got '0'"),
        ("max_train_steps", "0", "argument --max_train_steps/--max-train-steps: must be >= 1, got 0"),
        ("gradient_accumulation_steps", "0", "--gradient_accumulation_steps/--gradient-accumulation-steps: must be"),
        ("stage", "surrogate", "--stage surrogate trains h on a trained g: give --init_from"),
        ("num_views", "0", "argument --num_views/--num-views: must be >= 1, got 0"),
        ("ema_decay", "1", "--ema_decay must be in [0, 1) (0: no average), got 1.0"),
    ],
)
def test_bad_arguments_fail_before_training(tiny_sam_dir, shared_data_dir, tmp_path, capsys, flag, value, message):
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    args = quick_args(
        tiny_sam_dir, shared_data_dir, tmp_path / "run", "--max_train_steps", "1", **{flag: value.format(tmp=tmp_path)}
    )
    assert message in bad_input_error(capsys, args)
    assert not (tmp_path / "run" / "train_log.jsonl").exists()


def kvasir_copy(shared_data_dir: Path, root: Path) -> Path:
    """A small Kvasir-like folder (train: 4 pairs, val: 2 pairs) of real images that a test may break."""
    for split, count in (("train", 4), ("val", 2)):
        for kind in ("images", "masks"):
            (root / split / kind).mkdir(parents=True)
        source = shared_data_dir / "kvasir" / split
        for image in sorted((source / "images").iterdir())[:count]:
            shutil.copy(image, root / split / "images" / image.name)
            shutil.copy(source / "masks" / f"{image.stem}.png", root / split / "masks" / f"{image.stem}.png")
    return root


@pytest.mark.parametrize("damage", ["corrupt image", "missing mask", "mask of the wrong size"])
def test_bad_data_is_named_before_training(tiny_sam_dir, shared_data_dir, tmp_path, capsys, damage):
    data = kvasir_copy(shared_data_dir, tmp_path / "kvasir")
    image = sorted((data / "train" / "images").iterdir())[1]
    mask = data / "train" / "masks" / f"{image.stem}.png"
    if damage == "corrupt image":
        image.write_bytes(image.read_bytes()[:200])
        named = image.name
    elif damage == "missing mask":
        mask.unlink()
        named = image.name
    else:
        PIL.Image.new("L", (7, 5)).save(mask)
        named = mask.name
    line = bad_input_error(capsys, quick_args(tiny_sam_dir, shared_data_dir, tmp_path / "run", data=str(data)))
    assert named in line
    assert not (tmp_path / "run" / "train_log.jsonl").exists()


def test_resume_from_an_incompatible_checkpoint_fails_before_training(tiny_sam_dir, shared_data_dir, tmp_path, capsys):
    first = tmp_path / "first"
    main(quick_args(tiny_sam_dir, shared_data_dir, first, "--stage", "all", "--max_train_steps", "1"))
    checkpoint = max((first / "training_state" / "prompt" / "checkpoints").iterdir())
    # A surrogate checkpoint resumed by --stage all: the prompt stage would train g again, then lose it to the
    # checkpoint's g.
    later = max((first / "training_state" / "surrogate" / "checkpoints").iterdir())
    both_stages = quick_args(tiny_sam_dir, shared_data_dir, first, "--resume_from_checkpoint", str(later))
    assert "is a checkpoint of the surrogate stage" in bad_input_error(capsys, both_stages)
    # --stage surrogate resuming 'latest' where there is none would train h on a random g.
    nothing = quick_args(tiny_sam_dir, shared_data_dir, tmp_path / "empty", "--stage", "surrogate")
    assert "found no checkpoint" in bad_input_error(capsys, [*nothing, "--resume_from_checkpoint", "latest"])
    # A checkpoint of another stage, or of a model whose g has other shapes, is refused up front.
    resume = ["--resume_from_checkpoint", str(checkpoint)]
    other_stage = quick_args(tiny_sam_dir, shared_data_dir, tmp_path / "second", "--stage", "surrogate", *resume)
    assert "not a checkpoint of --stage surrogate" in bad_input_error(capsys, other_stage)
    # A checkpoint of a run laid out otherwise (batch, processes, data, seed, augmentation) would resume at the wrong
    # epoch and offset with its schedule elsewhere: refused, the flag named.
    other_batch = quick_args(tiny_sam_dir, shared_data_dir, first, "--stage", "all", *resume)
    other_batch += ["--per_device_train_batch_size", "3"]
    assert "batch_size 2 then, 3 now (--per_device_train_batch_size" in bad_input_error(capsys, other_batch)
    # A weight average switched on mid-run would start from the checkpoint's weights as if they were step 0's.
    averaged = quick_args(tiny_sam_dir, shared_data_dir, first, "--stage", "all", *resume, "--ema_decay", "0.9")
    assert "ema_decay None then, 0.9 now (--ema_decay)" in bad_input_error(capsys, averaged)
    # ... and one from before layouts recorded --ema_decay has no average to resume.
    progress = read_progress(checkpoint)
    del progress["layout"]["ema_decay"]
    (checkpoint / "progress.json").write_text(json.dumps(progress))
    assert "holds no weight average (--ema_decay)" in bad_input_error(capsys, averaged)
    bigger_sam = tmp_path / "bigger_sam"
    config = make_tiny_sam_config()
    config.prompt_encoder_config.hidden_size = config.mask_decoder_config.hidden_size = 64
    config.vision_config.output_channels, config.vision_config.num_pos_feats = 64, 32
    SamModel(config).save_pretrained(bigger_sam)
    other_model = quick_args(bigger_sam, shared_data_dir, tmp_path / "third", "--stage", "prompt", *resume)
    assert "different model" in bad_input_error(capsys, other_model)
    # A checkpoint folder renamed: its number, which orders the stage's checkpoints, is gone.
    renamed = checkpoint.parent / "backup"
    shutil.copytree(checkpoint, renamed)
    resume_renamed = quick_args(tiny_sam_dir, shared_data_dir, first, "--stage", "prompt")
    resume_renamed += ["--resume_from_checkpoint", str(renamed)]
    assert "keeps the name it was saved with, checkpoint_<n>" in bad_input_error(capsys, resume_renamed)
    # 'latest' finding the surrogate stage's checkpoint but none of the prompt stage's: as with the named one above.
    shutil.rmtree(checkpoint.parent)
    latest = quick_args(tiny_sam_dir, shared_data_dir, first, "--resume_from_checkpoint", "latest")
    assert "latest found a checkpoint of the surrogate stage but none of the prompt" in bad_input_error(capsys, latest)


@pytest.mark.parametrize(
    "flag, launcher, requested",
    [
        (None, None, None),  # plain `python -m autosam_hf.train`: the machine decides (auto)
        (None, "no", None),  # `accelerate launch` without a choice exports "no": still the machine
        (None, "bf16", "bf16"),
        (None, "fp16", "fp16"),
        ("no", "bf16", "no"),  # the script's own flag wins
        ("bf16", None, "bf16"),
    ],
)
def test_precision_is_the_flag_else_the_launchers_half_precision_else_auto(monkeypatch, flag, launcher, requested):
    from autosam_hf.training import cli as train

    seen = []
    monkeypatch.setattr(train, "resolve_mixed_precision", lambda precision, device: seen.append(precision) or "x")
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    if launcher is None:
        monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    else:
        monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", launcher)
    assert train.resolve_precision(flag) == "x" and seen == [requested]


def test_a_launcher_precision_the_script_cannot_train_in_is_named_as_the_launchers(monkeypatch):
    from autosam_hf.training import cli as train

    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp8")
    with pytest.raises(ValueError, match="accelerate launch's mixed precision 'fp8'.*--mixed_precision"):
        train.resolve_precision(None)
    assert train.resolve_precision("no") == "no"  # the script's own flag still decides


@pytest.mark.slow
def test_two_processes_with_accelerate_launch(tiny_sam_dir, shared_data_dir, tmp_path):
    output_dir = tmp_path / "ddp"
    # accelerate's `--cpu` flag (1.15, 1.16) always takes its single-process launcher; two gloo processes on a CPU
    # machine come from the torchrun launcher (`--multi_gpu`) with ACCELERATE_USE_CPU=1.
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        "autosam_hf.train",
        # 3 val images at 2 per process: the sharded loader evens the second batch out with the first image again.
        *quick_args(
            tiny_sam_dir, shared_data_dir, output_dir, "--stage", "all", "--max_train_steps", "3",
            per_device_eval_batch_size="2",
        ),
        *("--lr_scheduler_type", "cosine", "--num_warmup_steps", "2"),
        *("--ema_decay", "0.9"),  # the average across processes: test_ema.py asserts that they agree
    ]  # fmt: skip
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    result = run_command(command, env=environment, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-8000:]
    results = json.loads((output_dir / "all_results.json").read_text())
    assert set(results["stages"]) == {"prompt", "surrogate"}
    # Two processes, batch 2 each: 6 images make 2 steps per epoch; one log line per step, written once.
    prompt_steps = [r for r in logged(output_dir) if r["stage"] == "prompt" and "loss" in r]
    assert [r["step"] for r in prompt_steps] == [1, 2, 3]
    # Validation scores each of the 3 images once, not the padding's repeat.
    validations = [r for r in logged(output_dir) if "val_dice" in r]
    assert validations and all(r["images"] == 3 for r in validations)
    # The schedule counts optimizer steps as one process does (accelerate steps it once per process): warm-up
    # over 2 steps, then cosine down to 0 at the last.
    peak = json.loads((output_dir / "training_settings.json").read_text())["learning_rate"]
    assert [r["lr"] for r in prompt_steps] == pytest.approx([peak / 2, peak, 0])
    # Each process cached its shard; together they cover every (image, view) once.
    cached = list((output_dir / "embedding_cache").rglob("*.safetensors"))
    assert len(cached) == 6 * 2 + 3
    AutoSamForSegmentation.from_pretrained(output_dir)


def test_logged_loss_is_the_mean_over_the_accumulated_micro_batches(
    tiny_sam_dir, shared_data_dir, tmp_path, monkeypatch
):
    losses = []
    forward = AutoSamForSegmentation.forward

    def recording_forward(self, *args, **kwargs):
        outputs = forward(self, *args, **kwargs)
        if outputs.loss is not None:  # training batches (validation passes no labels)
            losses.append(outputs.loss.item())
        return outputs

    monkeypatch.setattr(AutoSamForSegmentation, "forward", recording_forward)
    output_dir = tmp_path / "run"
    flags = ["--stage", "standalone", "--max_train_steps", "2", "--gradient_accumulation_steps", "2"]
    main(quick_args(tiny_sam_dir, shared_data_dir, output_dir, *flags, per_device_train_batch_size="1"))
    assert len(losses) == 4  # 2 optimizer steps of 2 micro-batches
    logged_losses = [r["loss"] for r in logged(output_dir) if "loss" in r]
    assert logged_losses == pytest.approx([(losses[0] + losses[1]) / 2, (losses[2] + losses[3]) / 2])


def test_recipe_schedule_warms_up_then_decays_and_settings_are_saved(tiny_sam_dir, shared_data_dir, tmp_path):
    output_dir = tmp_path / "run"
    # Options from a --config file, the command line winning (max_train_steps).
    config = tmp_path / "schedule.yaml"
    config.write_text("lr_scheduler_type: cosine\nnum_warmup_steps: 2\nmax_train_steps: 100\n")
    flags = ["--stage", "standalone", "--max_train_steps", "6", "--config", str(config)]
    main(quick_args(tiny_sam_dir, shared_data_dir, output_dir, *flags, num_overlays="0"))
    rates = [r["lr"] for r in logged(output_dir) if "loss" in r]
    settings = json.loads((output_dir / "training_settings.json").read_text())
    peak = settings["learning_rate"]
    assert settings["recipe"] == "default" and settings["optimizer"] == "adam" and settings["stages"] == ["standalone"]
    assert rates[:2] == pytest.approx([peak / 2, peak])  # linear warm-up
    assert all(later < earlier for earlier, later in itertools.pairwise(rates[1:])) and rates[-1] == pytest.approx(0)
    processor = json.loads((output_dir / "preprocessor_config.json").read_text())
    assert processor["prompt_size"] == 64 and processor["canvases"] == ["prompt"]  # a SAM-free model: g's canvas
    # The kvasir preset's canvas rule (its images come squashed), kept by the model so inference squashes too.
    assert processor["canvas_rule"] == "squash"
    assert AutoSamForSegmentation.from_pretrained(output_dir).config.canvas_rule == "squash"


def write_label_map_dataset(root: Path) -> Path:
    """A kvasir-layout folder (train 6, val 3, test 3) of label-map masks: 0 background, 1 "ring", 2 "core"."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 3), ("test", 3)):
        for kind in ("images", "masks"):
            (root / split / kind).mkdir(parents=True)
        for index in range(count):
            image = rng.integers(0, 80, (40, 48, 3), dtype=np.uint8)
            label_map = np.zeros((40, 48), np.uint8)
            top, left = rng.integers(2, 14, size=2)
            label_map[top : top + 24, left : left + 28] = 1
            label_map[top + 6 : top + 18, left + 7 : left + 21] = 2
            image[label_map == 1] += 90
            image[label_map == 2] += 170
            PIL.Image.fromarray(image).save(root / split / "images" / f"{index}.png")
            PIL.Image.fromarray(label_map).save(root / split / "masks" / f"{index}.png")
    return root


def test_multi_class_model_trains_reloads_evaluates_predicts_and_publishes(tiny_sam_dir, shared_data_dir, tmp_path):
    data = write_label_map_dataset(tmp_path / "data")
    output_dir = tmp_path / "run"
    flags = ["--stage", "prompt", "--max_train_steps", "3", "--class_names", "ring", "core"]
    main(quick_args(tiny_sam_dir, shared_data_dir, output_dir, *flags, data=str(data), max_train_samples="6"))

    results = json.loads((output_dir / "all_results.json").read_text())
    validation = results["validation"]["kvasir"]
    assert {"dice", "iou", "dice_ring", "iou_ring", "dice_core", "iou_core"} == set(validation)
    assert validation["dice"] == pytest.approx((validation["dice_ring"] + validation["dice_core"]) / 2)
    assert results["classes"] == {"0": "background", "1": "ring", "2": "core"}
    assert all("val_dice_core" in r for r in logged(output_dir) if "val_dice" in r)

    model = AutoSamForSegmentation.from_pretrained(output_dir)
    assert model.config.id2label == {0: "background", 1: "ring", 2: "core"} and model.config.num_classes == 2
    assert json.loads((output_dir / "preprocessor_config.json").read_text())["num_labels"] == 3

    eval_dir = tmp_path / "eval"
    evaluate_args = ["--model", str(output_dir), "--preset", "kvasir", "--data", str(data), "--mode", "all"]
    assert evaluate_main([*evaluate_args, "--output_dir", str(eval_dir), "--save_predictions", "--quiet"]) == 0
    report = json.loads((eval_dir / "eval_results.json").read_text())
    assert report["modes"] == ["surrogate", "sam_mask_prompt", "autosam"]  # no binary GT-prompted SAM rows
    assert {"dice_ring", "iou_core", "foreground_dice"} <= set(report["test"]["kvasir"])
    assert "Kvasir-SEG, per class:" in (eval_dir / "eval_results.md").read_text()
    saved = np.asarray(PIL.Image.open(eval_dir / "predictions" / "kvasir" / "autosam" / "masks" / "0.png"))
    assert saved.max() <= 2

    predictions = tmp_path / "predictions"
    assert (
        predict_main(["--model", str(output_dir), str(data / "test" / "images"), "--output_dir", str(predictions)]) == 0
    )
    assert np.asarray(PIL.Image.open(predictions / "masks" / "1.png")).max() <= 2

    hub_folder = publish(
        output_dir,
        preset="kvasir",
        repo_id="org/autosam-rings",
        dry_run=True,
        output_dir=tmp_path / "hub",
        metrics_files=[eval_dir / "eval_results.json"],
    )
    card = ModelCard.load(hub_folder / "README.md")
    assert {"dice_ring", "dice_core", "iou_ring"} <= {r.metric_type for r in card.data.eval_results}
    assert AutoSamForSegmentation.from_pretrained(hub_folder).config.num_classes == 2


# ---------------------------------------------------------------------------------------------- a folder of one's own
def own_folder(root: Path, splits: dict[str, int]) -> Path:
    """A folder of one's own of small images (48x40, a bright square on noise) and their 0/255 masks: `{"": 4}` a
    flat images/ + masks/ of 4 pairs; `{"train": 4, "val": 2}` one sub-folder per split."""
    generator = np.random.default_rng(0)
    for split, count in splits.items():
        for kind in ("images", "masks"):
            (root / split / kind).mkdir(parents=True)
        for index in range(count):
            image = generator.integers(0, 120, (40, 48, 3), dtype=np.uint8)
            mask = np.zeros((40, 48), dtype=np.uint8)
            top, left = generator.integers(0, 20, 2)
            mask[top : top + 16, left : left + 20] = 255
            image[mask > 0] += 120
            PIL.Image.fromarray(image).save(root / split / "images" / f"{split or 'img'}{index}.png")
            PIL.Image.fromarray(mask).save(root / split / "masks" / f"{split or 'img'}{index}.png")
    return root


def without_preset(args: list[str]) -> list[str]:
    index = args.index("--preset")
    return args[:index] + args[index + 2 :]


def test_a_flat_folder_trains_evaluates_and_publishes_without_a_preset(tiny_sam_dir, tmp_path, capsys):
    """No --preset: --data is a folder of one's own; the run, its evaluation and its card are named after it and
    carry the licence and citation it was given, never another dataset's facts."""
    data, output_dir = own_folder(tmp_path / "mydata", {"": 4}), tmp_path / "run"
    citation = "@misc{mine2026, title={My data}}"
    args = quick_args(tiny_sam_dir, data, output_dir, "--stage", "prompt", "--max_train_steps", "1", data=str(data))
    args = without_preset(args) + ["--dataset_license", "CC-BY-4.0"]
    main(args + ["--dataset_citation", citation, "--num_overlays", "0", "--val_fraction", "0.5"])
    results = json.loads((output_dir / "all_results.json").read_text())
    assert results["preset"] is None and list(results["validation"]) == ["mydata"]
    assert (results["train_examples"], results["validation_examples"]) == (2, 2)
    settings = json.loads((output_dir / "training_settings.json").read_text())
    assert (settings["dataset_display_name"], settings["dataset_license"]) == ("mydata", "CC-BY-4.0")
    assert settings["canvas_rule"] is None and settings["augmentation"] == "flips"

    from autosam_hf.hub.cli import main as publish_main

    publish_main(["--model", str(output_dir), "--hub_model_id", "me/autosam-mydata", "--dry_run"])
    card = ModelCard.load(output_dir / "hub" / "me--autosam-mydata" / "README.md")
    assert "# AutoSAM for mydata" in card.text and "CC-BY-4.0" in card.text and citation in card.text
    assert "| mydata | test | not measured | not measured |" in card.text
    assert "| mydata | validation | " in card.text
    for other in ("GlaS", "Kvasir", "Sirinukunwattana", "Jha", "colonoscopy", "gland", "nuclei"):
        assert other not in card.content, other

    eval_args = ["--model", str(output_dir), "--data", str(data), "--max_samples", "2", "--quiet"]
    assert evaluate_main(eval_args + ["--output_dir", str(tmp_path / "eval")]) == 0
    assert {"dice", "iou"} <= set(json.loads((tmp_path / "eval" / "eval_results.json").read_text())["test"]["mydata"])


def test_a_split_folder_trains_on_its_train_and_validates_on_its_val(tiny_sam_dir, tmp_path):
    """DIR/{train,val,test}: train from train/, validation from val/, test never read; standalone h(g(I)) needs no
    SAM weights, and a SAM that cannot be fetched (offline) gives way to the dense-prompt default config."""
    data = own_folder(tmp_path / "split", {"train": 4, "val": 2, "test": 1})
    (data / "test" / "masks" / next((data / "test" / "masks").iterdir()).name).write_bytes(b"never read")
    output_dir = tmp_path / "run"
    args = quick_args(tiny_sam_dir, data, output_dir, "--stage", "standalone", "--max_train_steps", "1", data=str(data))
    main(without_preset(args) + ["--sam", "nobody/no-such-sam", "--num_overlays", "0"])
    results = json.loads((output_dir / "all_results.json").read_text())
    assert (results["train_examples"], results["validation_examples"]) == (4, 2)
    assert list(results["validation"]) == ["split"]
    model = AutoSamForSegmentation.from_pretrained(output_dir)
    assert model.config.prompt_embedding_shape == (256, 64) and model.config.default_mode == "surrogate"


def test_a_folder_without_images_is_named(tiny_sam_dir, tmp_path, capsys):
    (tmp_path / "empty" / "masks").mkdir(parents=True)
    args = without_preset(quick_args(tiny_sam_dir, tmp_path, tmp_path / "run", data=str(tmp_path / "empty")))
    line = bad_input_error(capsys, args)
    assert f"{tmp_path / 'empty'}: no images/ + masks/ folders" in line
    assert "--preset" not in line
