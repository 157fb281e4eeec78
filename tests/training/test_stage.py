"""autosam_hf.training.stage: what one training step computes, and which views each epoch's batches hold."""

import copy
import math

import torch
from conftest import make_tiny_model, make_tiny_processor
from tqdm.auto import tqdm
from transformers import get_scheduler

from autosam_hf.data import load_preset_dataset
from autosam_hf.training.cli import build_parser
from autosam_hf.training.settings import resolve_settings
from autosam_hf.training.stage import StageTrainer
from benchmarks.baselines import PipelineDraws, apply_flips, bce_dice_loss, normalize, square_images, square_masks


def standalone_trainer(shared_data_dir, tmp_path, *flags: str) -> StageTrainer:
    """A standalone-stage trainer (g + h, no SAM) of the tiny model on 16 Kvasir training images (square, so every
    pixel of the label canvas is valid), batch 8, flips only (the default recipe)."""
    data = shared_data_dir / "kvasir"
    args = build_parser().parse_args(
        ["--preset", "kvasir", "--data", str(data), "--output_dir", str(tmp_path), "--stage", "standalone",
         "--per_device_train_batch_size", "8", "--mixed_precision", "no", "--seed", "3", *flags]
    )  # fmt: skip
    settings = resolve_settings(args, "no")
    train = load_preset_dataset("kvasir", "train", data, max_samples=16)
    val = load_preset_dataset("kvasir", "val", data, max_samples=2)
    model = make_tiny_model()
    return StageTrainer("standalone", settings, model, make_tiny_processor(), train, val, (None, None))


def test_a_training_step_is_plain_adam_on_bce_plus_soft_dice(shared_data_dir, tmp_path):
    """Replaying the trainer's own batches through a bare loop (torch Adam 3e-4 / wd 1e-5 under transformers'
    schedule of the recipe, cosine after a 5% warm-up, no accelerate) lands on the same weights, and the loss it
    minimises is the benchmark's minimal loop's plain BCE + soft Dice: the pipeline adds no hidden change to what a
    step computes. (The bare loop backpropagates the model's own loss: Adam's first steps move every weight by about
    ±lr whatever its gradient's size, so a loss summed in another order would already part the runs.)"""
    trainer = standalone_trainer(shared_data_dir, tmp_path)
    bare, initial = copy.deepcopy(trainer.model), copy.deepcopy(trainer.model)
    batches = []
    forward = trainer.prepared_model.forward

    def recording_forward(**inputs):
        batches.append({name: value.clone() for name, value in inputs.items() if torch.is_tensor(value)})
        return forward(**inputs)

    trainer.prepared_model.forward = recording_forward
    for epoch in range(2):
        trainer.train_epoch(epoch, bar=tqdm(disable=True), started=0.0)
    assert len(batches) == 4 and all(batch["valid_mask"].all() for batch in batches)

    bare.train()
    optimizer = torch.optim.Adam([p for p in bare.parameters() if p.requires_grad], lr=3e-4, weight_decay=1e-5)
    total_steps = 200 * 2  # 200 epochs of 16 images at batch 8
    assert trainer.max_steps == total_steps and trainer.settings.lr_scheduler_type == "cosine"
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=20, num_training_steps=total_steps)
    for batch in batches:
        outputs = bare(
            pixel_values=batch["prompt_pixel_values"],
            labels=batch["labels"],
            valid_mask=batch["valid_mask"],
            mode="surrogate",
        )
        expected_loss = bce_dice_loss(outputs.logits.detach(), batch["labels"][:, None].float())
        torch.testing.assert_close(outputs.loss.detach(), expected_loss)
        optimizer.zero_grad()
        outputs.loss.backward()
        optimizer.step()
        scheduler.step()
    trained, before = dict(trainer.model.named_parameters()), dict(initial.named_parameters())
    changed = 0
    for name, parameter in bare.named_parameters():
        torch.testing.assert_close(parameter, trained[name], rtol=0, atol=0)
        changed += not torch.equal(parameter, before[name])
    assert changed > 0.9 * sum(p.requires_grad for p in bare.parameters())  # it did train
    for name, buffer in bare.named_buffers():  # BatchNorm running statistics
        torch.testing.assert_close(buffer, dict(trainer.model.named_buffers())[name], rtol=0, atol=0)


def test_loader_workers_give_every_epoch_its_own_view(shared_data_dir, tmp_path):
    """With data-loader workers, epoch e's batches hold view e of each image, as without them (persistent workers
    would keep the dataset they started with, and repeat view 0 every epoch)."""
    trainer = standalone_trainer(shared_data_dir, tmp_path, "--dataloader_num_workers", "2")
    views = copy.deepcopy(trainer.train_loader.dataset)
    differs_from_view_0 = 0
    for epoch in range(3):
        trainer.train_loader.set_epoch(epoch)
        views.set_epoch(epoch)
        for batch in trainer.train_loader:
            for index, pixels in zip(batch["index"].tolist(), batch["prompt_pixel_values"], strict=True):
                torch.testing.assert_close(pixels, views[index]["prompt_pixel_values"], rtol=0, atol=0)
                if epoch > 0:
                    views.set_epoch(0)
                    differs_from_view_0 += not torch.equal(pixels, views[index]["prompt_pixel_values"])
                    views.set_epoch(epoch)
    assert differs_from_view_0 > 8  # of 32: flips drawn afresh (each of 4 flip pairs is as likely as view 0's)


def test_the_batches_follow_from_the_seed_as_the_benchmark_replays_them(shared_data_dir, tmp_path):
    """Epoch e's batch order is a permutation seeded `seed + e` and image i's flips are view e of the augmentation:
    `bench_real_data.PipelineDraws` rebuilds every batch from the seed alone (its parity runs rely on it)."""
    trainer = standalone_trainer(shared_data_dir, tmp_path)
    dataset = trainer.train_loader.dataset.dataset
    images, masks = square_images(dataset["image"], 64), square_masks(dataset["mask"], 48)
    draws = PipelineDraws(seed=3)
    flipped = 0
    for epoch in range(3):
        trainer.train_loader.set_epoch(epoch)
        batches = list(trainer.train_loader)
        expected_order = draws.order(epoch, len(dataset)).split(8)
        assert [batch["index"].tolist() for batch in batches] == [indices.tolist() for indices in expected_order]
        for batch, indices in zip(batches, expected_order, strict=True):
            left_right, up_down = draws.flips(indices, epoch)
            flipped += int(left_right.sum() + up_down.sum())
            batch_images, _ = apply_flips(images[indices], masks[indices], left_right, up_down)
            # g's canvas is a plain resize of these square images: the pixels pin each flip down.
            torch.testing.assert_close(batch["prompt_pixel_values"], normalize(batch_images), rtol=0, atol=1e-6)
    assert 24 <= flipped <= 72  # of 96 coins, p = 0.5


def test_each_epoch_reaches_the_dataset_whatever_the_loader_passes_on(shared_data_dir, tmp_path, monkeypatch):
    """With several processes accelerate's loader hands `set_epoch` to its sampler only, never to the dataset (whose
    epoch picks the augmentation view): the trainer must tell the dataset itself."""
    trainer = standalone_trainer(shared_data_dir, tmp_path)
    loader = trainer.train_loader
    monkeypatch.setattr(loader, "set_epoch", lambda epoch: loader.batch_sampler.sampler.set_epoch(epoch))
    trainer.train_epoch(1, bar=tqdm(disable=True), started=0.0)
    assert loader.dataset.epoch == 1 and loader.dataset.view() == 1


def test_views_augmented_on_the_device_train_and_match_the_workers_views(shared_data_dir, tmp_path):
    """`--augmentation_device accelerator` on a CPU run: the reference augmentation applied batched in the main
    process trains (finite losses), and its batches hold the images and labels of the CPU path's batches of the same
    seed (same order, same draws; the labels within resampling: pooled Dice >= 0.95 on the tiny 48² label canvas).
    `auto` on a CPU keeps the CPU path."""
    assert standalone_trainer(shared_data_dir, tmp_path / "auto").device_augmentation is None
    flags = ("--augmentation", "reference", "--max_train_steps", "1")
    batches, losses = {}, []
    for where in ("accelerator", "cpu"):
        trainer = standalone_trainer(shared_data_dir, tmp_path / where, *flags, "--augmentation_device", where)
        assert (trainer.device_augmentation is not None) == (where == "accelerator")
        forward = trainer.prepared_model.forward

        def recording_forward(forward=forward, where=where, **inputs):
            batches[where] = {name: value for name, value in inputs.items() if torch.is_tensor(value)}
            outputs = forward(**inputs)
            losses.append(outputs.loss.item())
            return outputs

        trainer.prepared_model.forward = recording_forward
        assert trainer.train_epoch(0, bar=tqdm(disable=True), started=0.0) == "steps"
    device, cpu = batches["accelerator"], batches["cpu"]
    assert device.keys() == cpu.keys() and all(math.isfinite(loss) for loss in losses)
    for name, value in cpu.items():
        assert device[name].dtype == value.dtype and device[name].shape == value.shape, name
    overlap = (device["labels"] * cpu["labels"]).sum() * 2 / (device["labels"].sum() + cpu["labels"].sum())
    assert overlap >= 0.95
    assert (device["prompt_pixel_values"] - cpu["prompt_pixel_values"]).abs().mean() < 0.05
