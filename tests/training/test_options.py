"""autosam_hf.training.options: one field per option, and what derives from the fields (the parser, YAML option
files, the checkpoint layout, the model card's settings)."""

import dataclasses

import pytest
import yaml

from autosam_hf.training.checkpoints import LAYOUT_FLAGS, RunState
from autosam_hf.training.cli import build_parser
from autosam_hf.training.options import ARGS_FILE, TrainingOptions, option_values, read_option_values
from autosam_hf.training.outputs import CARD_SETTINGS
from autosam_hf.training.settings import Recipe, resolve_settings

REQUIRED = ["--preset", "kvasir", "--data", "/data", "--output_dir", "/out"]


def test_every_field_is_a_flag_with_the_fields_default():
    args = build_parser().parse_args(REQUIRED)
    names = {field.name for field in dataclasses.fields(TrainingOptions)}
    assert set(vars(args)) == names | {"config"}
    for field in dataclasses.fields(TrainingOptions):
        if field.name not in ("preset", "data", "output_dir"):
            assert getattr(args, field.name) == field.default, field.name
    # A field named apart from its flag: the flag's metavar, the field's name in the settings.
    assert build_parser().parse_args([*REQUIRED, "--per-device-train-batch-size", "3"]).batch_size == 3
    assert "--per_device_train_batch_size PER_DEVICE_TRAIN_BATCH_SIZE" in build_parser().format_help()


def test_layout_and_card_settings_are_the_marked_fields():
    """The keys a resume must share and a model card shows, as they were when each was a hand-kept list."""
    data = "--data / --dataset_name / --val_fraction / --val_split_seed / --max_train_samples / --empty_slice_fraction"
    assert LAYOUT_FLAGS == {
        "num_processes": "accelerate launch --num_processes",
        "batch_size": "--per_device_train_batch_size / --surrogate_batch_size",
        "gradient_accumulation_steps": "--gradient_accumulation_steps",
        "train_examples": data,
        "train_ids_sha256": data,
        "seed": "--seed",
        "augmentation": "--augmentation",
        "num_views": "--num_views",
        "ema_decay": "--ema_decay",
        "click_training": "--click_training",
        "click_rounds": "--click_rounds",
        "ct_window": "--ct_window",
        "slice_axis": "--slice_axis",
        "context_slices": "--context_slices",
    }
    assert sorted(CARD_SETTINGS) == sorted([
        "recipe", "stages", "optimizer", "learning_rate", "weight_decay", "lr_scheduler_type", "warmup_ratio",
        "num_warmup_steps", "ema_decay", "click_training", "click_rounds", "batch_size", "surrogate_batch_size",
        "gradient_accumulation_steps", "num_epochs", "max_train_steps", "max_train_minutes", "augmentation",
        "num_views", "mixed_precision", "seed",
        "ct_window", "slice_axis", "context_slices", "empty_slice_fraction",
    ])  # fmt: skip


def test_a_config_file_gives_defaults_and_flags_win(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text(
        "preset: glas\noutput_dir: /runs/glas\ndata: /data/glas\nrecipe: paper\nlearning_rate: 1e-3\n"
        "per_device_train_batch_size: 4\nclass_names: [gland]\nno_cache: true\nema_decay: null\n"
    )
    args = build_parser().parse_args(["--config", str(config), "--learning-rate", "2e-3"])
    settings = resolve_settings(args, "no")
    assert (settings.preset, settings.output_dir, settings.recipe) == ("glas", "/runs/glas", "paper")
    assert (settings.learning_rate, settings.batch_size) == (2e-3, 4)  # the flag, then the file
    assert settings.lr_scheduler_type == "constant" and settings.surrogate_batch_size == 24  # the file's recipe
    assert settings.id2label == {0: "background", 1: "gland"} and not settings.use_cache
    assert settings.ema_decay is None  # null: not given


@pytest.mark.parametrize(
    "content, message",
    [
        ("lr: 1e-3\n", "unknown option 'lr'"),
        ("learning_rate: fast\n", "learning_rate: invalid value 'fast'"),
        ("per_device_train_batch_size: 0\n", "per_device_train_batch_size: invalid value 0 (must be >= 1, got 0)"),
        ("optimizer: sgd\n", "optimizer: invalid choice 'sgd' (choose from adam, adamw)"),
        ("no_cache: 1\n", "no_cache: expected true or false, got 1"),
        ("class_names: gland\n", "class_names: expected a list of values"),
        ("- learning_rate\n", "expected option names and values"),
        ("learning_rate: [1\n", "not a YAML file"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_file_and_key(tmp_path, capsys, content, message):
    config = tmp_path / "mine.yaml"
    config.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*REQUIRED, "--config", str(config)])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"autosam-train: error: {config}: ") and message in line


def test_a_missing_config_file_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([*REQUIRED, "--config", str(tmp_path / "none.yaml")])
    assert "none.yaml" in capsys.readouterr().err


def test_a_resume_reads_the_runs_options_back_and_flags_given_again_win(tmp_path):
    first = build_parser().parse_args(
        ["--preset", "glas", "--data", "/data/glas", "--output_dir", str(tmp_path), "--seed", "7",
         "--class_names", "gland", "--column_mapping", '{"image": "img"}', "--stop_after_steps", "2", "--no_cache"]
    )  # fmt: skip
    saved = option_values(first)
    assert "stop_after_steps" not in saved and "resume_from_checkpoint" not in saved  # this invocation's only
    RunState(tmp_path, stages=("prompt",)).save_options(saved)
    assert yaml.safe_load((tmp_path / ARGS_FILE).read_text()) == saved
    resumed = build_parser().parse_args(["--output_dir", str(tmp_path), "--resume_from_checkpoint", "latest"])
    for name in ("preset", "data", "seed", "class_names", "column_mapping", "no_cache"):
        assert getattr(resumed, name) == getattr(first, name), name
    assert resumed.stop_after_steps is None
    again = build_parser().parse_args(
        ["--output-dir", str(tmp_path), "--resume_from_checkpoint", "latest", "--seed", "8"]
    )
    assert again.seed == 8
    # A fresh run into the folder reads nothing back.
    fresh = build_parser().parse_args(["--output_dir", str(tmp_path)])
    assert (fresh.preset, fresh.data, fresh.seed, fresh.class_names, fresh.no_cache) == (None, None, 42, None, False)


def test_a_recipe_file_must_set_exactly_the_recipe_fields(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("optimizer: adamw\nlearning_rate: 1e-3\n")
    with pytest.raises(ValueError, match="mine.yaml: a recipe sets exactly"):
        Recipe.from_file(recipe)
    assert read_option_values(recipe) == {"optimizer": "adamw", "learning_rate": 1e-3}
