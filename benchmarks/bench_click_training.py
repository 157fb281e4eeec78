"""Benchmark: the cost per step of `--click_training` (autosam_hf.training.clicks) in the prompt stage.

One prompt-stage training step as the embedding cache runs it (SAM's image embeddings given, g trained through SAM's
frozen prompt encoder and mask decoder: forward, backward, Adam), at released SAM's decoder sizes (C = 256, E = 64,
256² label canvas; `SAM_SIZES["tiny_encoder"]`, whose encoder never runs here) and g (HarDNet-85) at Kvasir's 352,
on Kvasir training images. Timed: the plain step, and the step with r = 1, 2, 3 simulated rounds for every image
(each round: the simulated user's click per image on the label canvas, then a decoder pass; plus one no-gradient g
pass per step). With `--click_rounds K` a step draws r uniformly from 0..K, so its expected cost is the mean of the
plain step and the r = 1..K steps (`expected_k3`). Median of `--repeats` steps after one warm-up, the variants
interleaved, this process's threads.

    python -m benchmarks.bench_click_training --name click_training/xeon_avx512_2threads   # batch 4, 3 repeats
    python -m benchmarks.bench_click_training --quick    # batch 2, 2 repeats, g at 64 px
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import SamConfig

from autosam_hf import AutoSamForSegmentation, AutoSamImageProcessor
from autosam_hf.clicks import next_clicks
from autosam_hf.runtime import cpu_model_name
from autosam_hf.training.clicks import ClickSimulation
from benchmarks.common import SAM_SIZES, default_result_name, kvasir_split, machine, write_result


def one_step(model, optimizer, inputs, simulation, rounds: int) -> float:
    """Seconds of one training step with `rounds` simulated rounds for every image (0: the plain step)."""
    simulation.rounds_for = lambda index, epoch: rounds
    started = time.perf_counter()
    step_inputs = {name: value for name, value in inputs.items() if name != "index"}
    if rounds:
        step_inputs |= simulation.prompts(model, inputs, epoch=0)
    model(**step_inputs, mode="autosam").loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return time.perf_counter() - started


def step_seconds(model, inputs, simulation, repeats: int, max_rounds: int = 3) -> dict[int, float]:
    """Median seconds per step for r = 0..max_rounds, the variants interleaved (each repeat times one step of each)
    so that a machine shared with other work slows them alike; one warm-up step of each first."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times: dict[int, list[float]] = {rounds: [] for rounds in range(max_rounds + 1)}
    for repeat in range(repeats + 1):
        for rounds in times:
            seconds = one_step(model, optimizer, inputs, simulation, rounds)
            if repeat:
                times[rounds].append(seconds)
    return {rounds: statistics.median(values) for rounds, values in times.items()}


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@torch.no_grad()
def component_seconds(model, inputs, repeats: int) -> dict[str, float]:
    """What a round adds, each timed alone: g's forward without gradients (once per step with r > 0), one decoder
    pass with the clicks, the simulated user's clicks of the batch on the label canvas."""
    features = {"image_embeddings": inputs["image_embeddings"]}
    dense = model.prompt_generator(inputs["prompt_pixel_values"])
    batch = len(dense)
    points, point_labels = torch.rand(batch, 1, 2, 2) * 1024, torch.ones(batch, 1, 2, dtype=torch.long)
    predicted = (torch.rand(batch, 1, *inputs["labels"].shape[-2:]) > 0.5).numpy()
    targets = (inputs["labels"][:, None] > 0).numpy()
    pixels = inputs["prompt_pixel_values"]

    def clicks():
        return [next_clicks(prediction, target) for prediction, target in zip(predicted, targets, strict=True)]

    return {
        "g_forward_without_gradients": median_seconds(lambda: model.prompt_generator(pixels), repeats),
        "decoder_pass_with_clicks": median_seconds(
            lambda: model.decode_masks(features, dense, points, point_labels), repeats
        ),
        "clicks_of_the_batch": median_seconds(clicks, repeats),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="batch 2, 2 repeats, g at 64 px")
    parser.add_argument("--name", help="result name (default click_training/latest, or /quick)")
    args = parser.parse_args(argv)
    batch_size, repeats, size = (2, 2, 64) if args.quick else (args.batch_size, args.repeats, 352)

    torch.manual_seed(0)
    sam_config = SamConfig(**SAM_SIZES["tiny_encoder"])
    model = AutoSamForSegmentation.from_sam(sam_config, prompt_input_size=size)
    model.set_trainable(prompt_generator=True)
    model.train()
    processor = AutoSamImageProcessor.from_sam_config(sam_config, prompt_size=size, canvases=["prompt"])
    rows = kvasir_split("train", batch_size)
    processed = processor([row["image"] for row in rows], segmentation_maps=[row["mask"] for row in rows],
                          canvases=["prompt"], return_tensors="pt")  # fmt: skip
    inputs = {name: processed[name] for name in ("prompt_pixel_values", "labels", "valid_mask")}
    inputs["image_embeddings"] = torch.randn(batch_size, *model.image_feature_shapes()["image_embeddings"])
    inputs["index"] = torch.arange(batch_size)
    simulation = ClickSimulation(rounds=3, seed=0, sam_canvas_side=processor.sam_canvas_side)

    seconds = step_seconds(model, inputs, simulation, repeats)
    components = component_seconds(model, inputs, repeats)
    result = {
        "machine": machine(),
        "cpu": cpu_model_name(),
        "batch_size": batch_size,
        "prompt_input_size": size,
        "label_canvas": int(inputs["labels"].shape[-1]),
        "repeats": repeats,
        "step_seconds": {f"rounds_{rounds}": value for rounds, value in seconds.items()},
        "relative_to_plain": {f"rounds_{rounds}": value / seconds[0] for rounds, value in seconds.items()},
        "expected_k3": statistics.mean(seconds.values()) / seconds[0],
        "component_seconds": components,
    }
    print(result["machine"])
    for rounds, value in seconds.items():
        print(f"r = {rounds}: {value:.3f} s/step ({value / seconds[0]:.2f}x the plain step)")
    print(f"--click_rounds 3 (r uniform in 0..3): {result['expected_k3']:.2f}x the plain step on average")
    print(", ".join(f"{name} {value:.3f} s" for name, value in components.items()))
    path = write_result(args.name or default_result_name("click_training", args.quick), result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
