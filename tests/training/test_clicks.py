"""autosam_hf.training.clicks (`--click_training`): the rounds drawn per (seed, image, epoch), the simulated clicks of
a step, and runs with and without the embedding cache that resume exactly."""

import numpy as np
import pytest
import torch
from conftest import make_tiny_model, make_tiny_processor
from test_train import logged, quick_args, tiny_sam_dir  # noqa: F401 (a fixture)
from tqdm.auto import tqdm

from autosam_hf.clicks import PADDING_LABEL, next_clicks
from autosam_hf.data import load_preset_dataset
from autosam_hf.training.cli import build_parser, main
from autosam_hf.training.clicks import ClickSimulation
from autosam_hf.training.settings import resolve_settings
from autosam_hf.training.stage import StageTrainer


def test_rounds_are_a_pure_function_of_seed_image_and_epoch():
    simulation = ClickSimulation(rounds=3, seed=7, sam_canvas_side=24)
    draws = [simulation.rounds_for(index, epoch) for index in range(50) for epoch in range(4)]
    assert draws == [ClickSimulation(3, 7, 24).rounds_for(i, e) for i in range(50) for e in range(4)]
    assert set(draws) == {0, 1, 2, 3}
    assert draws != [ClickSimulation(3, 8, 24).rounds_for(i, e) for i in range(50) for e in range(4)]
    with pytest.raises(ValueError, match="--click_rounds"):
        ClickSimulation(0, 7, 24)


def test_a_steps_clicks_correct_its_own_prediction_and_leave_batchnorm_alone(monkeypatch):
    model, processor = make_tiny_model(), make_tiny_processor()
    model.set_trainable(prompt_generator=True)
    model.train()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(3)]
    masks = [np.pad(np.ones((20, 20), np.uint8), ((4, 24), (14, 14))) for _ in range(3)]
    inputs = dict(processor(images, segmentation_maps=masks, return_tensors="pt"))
    inputs["index"] = torch.tensor([0, 1, 2])
    simulation = ClickSimulation(rounds=2, seed=0, sam_canvas_side=24)
    monkeypatch.setattr(simulation, "rounds_for", lambda index, epoch: [0, 1, 2][index])
    statistics = {name: buffer.clone() for name, buffer in model.prompt_generator.named_buffers()}
    prompts = simulation.prompts(model, inputs, epoch=0)
    for name, buffer in model.prompt_generator.named_buffers():
        assert torch.equal(buffer, statistics[name]), name
    # No cache: the step's image features come back with the clicks, so that its forward runs no encoder again.
    assert set(prompts) == {"input_points", "input_labels", "image_embeddings"}
    points, labels = prompts["input_points"], prompts["input_labels"]
    assert points.shape == (3, 1, 2, 2) and labels.shape == (3, 1, 2)
    # Image 0 takes no round (all padding: decoded as without clicks), image 1 one click, image 2 two.
    assert labels[0].tolist() == [[PADDING_LABEL] * 2] and labels[1, 0, 1] == PADDING_LABEL
    assert (labels[2] >= 0).all()
    # The first click is the simulated user's on the step's own prediction (label canvas 48 → SAM canvas 24).
    with torch.no_grad():
        logits = model(pixel_values=inputs["pixel_values"], prompt_pixel_values=inputs["prompt_pixel_values"]).logits
    first = next_clicks((logits[1] > 0).numpy(), (inputs["labels"][1:2] > 0).numpy())[0]
    assert points[1, 0, 0].tolist() == [first.x / 2, first.y / 2] and labels[1, 0, 0] == first.label
    assert torch.equal(simulation.prompts(model, inputs, epoch=0)["input_points"], points)  # deterministic


def test_without_the_cache_each_step_runs_the_encoder_once_and_trains_with_its_clicks(shared_data_dir, tmp_path):
    data = shared_data_dir / "kvasir"
    args = build_parser().parse_args(
        ["--preset", "kvasir", "--data", str(data), "--output_dir", str(tmp_path), "--stage", "prompt", "--no_cache",
         "--per_device_train_batch_size", "2", "--mixed_precision", "no", "--click_training", "--seed", "1"]
    )  # fmt: skip
    train = load_preset_dataset("kvasir", "train", data, max_samples=4)
    val = load_preset_dataset("kvasir", "val", data, max_samples=1)
    trainer = StageTrainer("prompt", resolve_settings(args, "no"), make_tiny_model(), make_tiny_processor(), train, val,
                           (None, None))  # fmt: skip
    assert trainer.clicks.rounds == 3  # the default --click_rounds
    steps, encodings = [], []
    forward, encoder = trainer.prepared_model.forward, trainer.model.sam.vision_encoder.forward
    # The training forwards (with labels); the simulation's own forward has none.
    trainer.prepared_model.forward = lambda **inputs: ("labels" in inputs and steps.append(inputs)) or forward(**inputs)
    trainer.model.sam.vision_encoder.forward = lambda *a, **k: encodings.append(1) or encoder(*a, **k)
    indices, prompts = [], trainer.clicks.prompts
    trainer.clicks.prompts = lambda model, batch, epoch: (
        indices.append(batch["index"].tolist()) or prompts(model, batch, epoch)
    )
    trainer.train_epoch(0, bar=tqdm(disable=True), started=0.0)
    assert len(steps) == len(encodings) == 2  # the clicks' rounds reuse the step's encoder pass
    rounds = [[trainer.clicks.rounds_for(index, 0) for index in batch] for batch in indices]
    assert ["input_points" in step for step in steps] == [max(batch) > 0 for batch in rounds]
    assert any("input_points" in step for step in steps)  # seed 1 does draw rounds
    assert all("image_embeddings" in step for step in steps if "input_points" in step)


def test_click_options_are_checked_and_resolved(tmp_path):
    def settings(*flags):
        return resolve_settings(build_parser().parse_args(["--preset", "kvasir", "--output_dir", "o", *flags]), "no")

    assert (settings().click_training, settings().click_rounds) == (None, None)  # off: no row of the model card
    assert (settings("--click_training").click_training, settings("--click_training").click_rounds) == (True, 3)
    assert settings("--click_training", "--click_rounds", "5").click_rounds == 5
    with pytest.raises(ValueError, match="--click_training trains the prompt stage"):
        settings("--click_training", "--stage", "surrogate")
    with pytest.raises(ValueError, match="--click_rounds: only with --click_training"):
        settings("--click_rounds", "2")


@pytest.mark.slow
def test_click_training_resumes_exactly(tiny_sam_dir, shared_data_dir, tmp_path):  # noqa: F811
    """With the embedding cache: an interrupted and resumed run logs the losses of an uninterrupted one."""
    args = ["--stage", "prompt", "--max_train_steps", "3", "--click_training", "--click_rounds", "2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    small = {"num_overlays": "0", "max_train_samples": "4", "max_eval_samples": "1", "num_views": "1"}
    main(quick_args(tiny_sam_dir, shared_data_dir, straight, *args, **small))
    main(quick_args(tiny_sam_dir, shared_data_dir, resumed, *args, "--stop_after_steps", "2", **small))
    main(["--output_dir", str(resumed), "--resume_from_checkpoint", "latest"])
    straight_losses = [r["loss"] for r in logged(straight) if "loss" in r]
    assert len(straight_losses) == 3
    assert [r["loss"] for r in logged(resumed) if "loss" in r] == straight_losses
    # Seed 3 draws rounds for images of both epochs: the resumed steps did simulate clicks.
    assert all(any(ClickSimulation(2, 3, 24).rounds_for(i, epoch) for i in range(4)) for epoch in (0, 1))
