"""autosam_hf.training.settings: recipes, and how preset, recipe and flags resolve into one run's settings."""

import dataclasses
import json

import pytest
import torch
from transformers import get_scheduler

from autosam_hf.training import settings as settings_module
from autosam_hf.training.cli import build_parser
from autosam_hf.training.options import SCHEDULERS
from autosam_hf.training.settings import resolve_settings


def resolve(*flags: str, mixed_precision: str = "no"):
    args = build_parser().parse_args(["--preset", "kvasir", "--data", "/data", "--output_dir", "/out", *flags])
    return resolve_settings(args, mixed_precision)


def test_paper_recipe_is_the_papers_training():
    """Shaharabany et al. 2023: Adam, lr 3e-4, weight decay 1e-5, constant rate, batch 10 (h: 24), 200 epochs,
    the reference code's augmentation; g at the preset's input size (352 for polyps)."""
    settings = resolve("--recipe", "paper")
    assert (settings.optimizer, settings.learning_rate, settings.weight_decay) == ("adam", 3e-4, 1e-5)
    assert (settings.lr_scheduler_type, settings.warmup_steps(1000)) == ("constant", 0)
    assert (settings.batch_size, settings.surrogate_batch_size, settings.num_epochs) == (10, 24, 200)
    assert settings.augmentation == "reference" and settings.prompt_input_size == 352
    assert settings.stages == ("prompt", "surrogate") and settings.use_cache and settings.num_views == 8
    assert settings.cache_dtype == "float16" and resolve("--cache_dtype", "float32").cache_dtype == "float32"
    assert settings.ema_decay is None  # the last step's weights, no average


def test_default_recipe_is_the_papers_optimizer_annealed_with_flips():
    """The ablation's choice: the paper's Adam 3e-4 / wd 1e-5, cosine after a 5% warm-up, batch 8, flips only."""
    settings, paper = resolve(), resolve("--recipe", "paper")
    assert settings.recipe == "default"
    for field in ("optimizer", "learning_rate", "weight_decay", "num_epochs"):
        assert getattr(settings, field) == getattr(paper, field), field
    assert settings.lr_scheduler_type == "cosine" and settings.warmup_steps(1000) == 50
    assert settings.augmentation == "flips" and (settings.batch_size, settings.surrogate_batch_size) == (8, 24)
    assert settings.ema_decay is None
    constant = resolve("--lr_scheduler_type", "constant", "--warmup_ratio", "0")  # the default before, one flag away
    assert (constant.lr_scheduler_type, constant.warmup_steps(1000)) == ("constant", 0)


def test_every_flag_overrides_the_recipe():
    settings = resolve(
        "--recipe", "paper", "--learning_rate", "1e-3", "--optimizer", "adamw", "--lr_scheduler_type", "cosine",
        "--num_warmup_steps", "7", "--per_device_train_batch_size", "4", "--augmentation", "flips",
        "--prompt_input_size", "128", "--weight_decay", "0", "--num_train_epochs", "3", "--ema_decay", "0.999",
    )  # fmt: skip
    assert (settings.learning_rate, settings.optimizer, settings.lr_scheduler_type) == (1e-3, "adamw", "cosine")
    assert settings.warmup_steps(1000) == 7 and settings.batch_size == 4 and settings.augmentation == "flips"
    assert (settings.prompt_input_size, settings.weight_decay, settings.num_epochs) == (128, 0.0, 3)
    assert settings.surrogate_batch_size == 24  # not overridden: the recipe's
    assert settings.ema_decay == 0.999 and resolve("--ema_decay", "0").ema_decay is None  # 0: no average


@pytest.mark.parametrize(
    "flags, use_cache, num_views",
    [
        ((), True, 8),  # the prompt stage caches SAM's embedding of 8 views per image
        (("--num_views", "3"), True, 3),
        (("--no_cache",), False, None),  # SAM runs every step: a fresh view every epoch
        (("--stage", "standalone"), False, None),
        (("--stage", "standalone", "--num_views", "2"), False, 2),  # fixed views without a cache (ablation)
        (("--stage", "surrogate"), False, None),
        (("--augmentation", "none"), True, 1),  # every view is the image itself
    ],
)
def test_views_follow_the_cache(flags, use_cache, num_views):
    settings = resolve(*flags)
    assert (settings.use_cache, settings.num_views) == (use_cache, num_views)


def test_settings_round_trip_through_json(tmp_path):
    settings = resolve("--mixed_precision", "bf16", mixed_precision="bf16")
    restored = settings_module.TrainingSettings(**__import__("json").loads(settings.to_json()))
    assert dataclasses.replace(restored, stages=tuple(restored.stages)) == settings


@pytest.mark.parametrize("cores, workers", [(1, 0), (2, 0), (4, 2), (16, 8), (64, 8)])
def test_data_loader_workers_leave_small_machines_alone(monkeypatch, cores, workers):
    monkeypatch.setattr(settings_module.os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert settings_module.default_num_workers() == workers
    assert resolve().dataloader_num_workers == workers
    assert resolve("--dataloader_num_workers", "3").dataloader_num_workers == 3


@pytest.mark.parametrize(
    "flags, canvas_rule",
    [
        ((), "squash"),  # polyp presets: their training images come squashed to 352²
        (("--preset", "glas"), None),  # others: the frozen model's own rule
        (("--canvas_rule", "letterbox"), "letterbox"),
        (("--preset", "glas", "--canvas_rule", "squash"), "squash"),
        (("--init_from", "/runs/kvasir"), None),  # the trained model keeps its own
        (("--init_from", "/runs/kvasir", "--canvas_rule", "letterbox"), "letterbox"),
    ],
)
def test_canvas_rule_comes_from_the_flag_then_the_preset(flags, canvas_rule):
    assert resolve(*flags).canvas_rule == canvas_rule


def test_an_unknown_canvas_rule_is_refused_naming_the_flag(capsys):
    with pytest.raises(SystemExit):
        resolve("--canvas_rule", "crop")
    assert "--canvas_rule" in capsys.readouterr().err


def test_an_init_from_run_holds_out_the_validation_images_its_model_held_out(tmp_path):
    """Otherwise h would be chosen, and its Dice reported, on images g was trained on."""
    new_model, seed_0_model = tmp_path / "new", tmp_path / "seed_0"
    for folder, recorded in (
        (new_model, {"seed": 1, "val_split_seed": 5, "val_fraction": 0.2}),
        (seed_0_model, {"seed": 1, "val_split_seed": 0, "val_fraction": 0.2}),
    ):
        folder.mkdir()
        (folder / "training_settings.json").write_text(json.dumps(recorded))
    continued = resolve("--stage", "surrogate", "--init_from", str(new_model), "--seed", "3")
    assert (continued.val_split_seed, continued.val_fraction) == (5, 0.2)
    assert resolve("--stage", "surrogate", "--init_from", str(seed_0_model)).val_split_seed == 0  # not the default
    chosen = resolve("--init_from", str(new_model), "--val_split_seed", "9", "--val_fraction", "0.3")
    assert (chosen.val_split_seed, chosen.val_fraction) == (9, 0.3)
    assert resolve().val_split_seed == 42


def test_a_recipe_describes_itself_for_model_cards():
    assert settings_module.RECIPES["paper"].describe() == (
        "Adam, learning rate 0.0003, weight decay 1e-05, a constant rate, batch 10 (h: 24), 200 epochs, "
        "augmentation `reference`"
    )
    averaged = dataclasses.replace(settings_module.RECIPES["default"], ema_decay=0.999).describe()
    assert averaged.startswith("Adam, learning rate 0.0003, weight decay 1e-05, a cosine schedule after a 5% warm-up")
    assert averaged.endswith("augmentation `flips`, weights averaged (EMA, decay 0.999)")


@pytest.mark.parametrize("schedule", SCHEDULERS)
def test_every_offered_schedule_builds_and_steps_from_the_steps_alone(schedule):
    """The stage gives transformers' get_scheduler only the warm-up and total steps and steps it without a metric."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
    scheduler = get_scheduler(resolve("--lr_scheduler_type", schedule).lr_scheduler_type, optimizer, 2, 10)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert 0 < scheduler.get_last_lr()[0] <= 3e-4


def test_a_schedule_that_needs_a_metric_or_arguments_is_refused_by_name(capsys):
    for schedule in ("reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay"):
        with pytest.raises(SystemExit):
            resolve("--lr_scheduler_type", schedule)
        assert "argument --lr_scheduler_type/--lr-scheduler-type: invalid choice" in capsys.readouterr().err
