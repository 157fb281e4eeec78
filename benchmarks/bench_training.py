"""Benchmark 1: training cost with the embedding cache vs recomputing SAM's encoder every step, and the official
AutoSAM training loop side by side.

Runs the real training script (`python -m autosam_hf.train --stage prompt`) on the same Kvasir images, model and
batch, side by side in one run:
  - `no_cache fp32`: SAM's ViT encoder every step in float32 — what the reference code does;
  - `cache fp32` and `cache bf16`: embeddings computed once, read back memory-mapped (bf16 = autocast; only where
    the CPU computes bf16 natively, or with `--include_emulated_bf16`).
Step times come from the script's own `train_log.jsonl`: the median of the steps after the first (warm-up) one,
loading included (its DataLoader, default workers); the one-off cost of building the cache from
`all_results.json` (train and validation images).

With `--reference_dir`, the official training loop (`reference.py`: its g, its SAM vit_b, its loss and Adam, batch
3, fp32) is timed in the same run, and `speedup_vs_reference` is its s/image / ours at the same sizes; then once
more with the allocator setting the `autosam-*` commands apply (`speedup_vs_reference_keep_freed_cpu_memory`).

`arithmetic_floor`: g's forward + backward FLOPs per image (torch's FlopCounterMode) over this machine's float32
GEMM rate, in this process with its threads: no code runs the cached step (g's own arithmetic) much below it.

    python -m benchmarks.bench_training            # ViT-B and small SAM
    python -m benchmarks.bench_training --reference_dir /tmp/autosam_reference --reference_pythonpath /tmp/refdeps
    python -m benchmarks.bench_training --quick    # small SAM, g at 64 px, a few steps, in this process: it runs
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from autosam_hf.runtime import cpu_has_native_bfloat16, use_fast_memory_format
from benchmarks.common import (
    default_result_name,
    machine,
    read_train_log,
    run_training,
    sam_checkpoint,
    training_command,
    training_figures,
    write_result,
)
from benchmarks.reference import add_reference_arguments, measure_reference_runs

VARIANTS = {  # name → extra training flags
    "no_cache fp32": ["--no_cache", "--mixed_precision", "no"],
    "cache fp32": ["--mixed_precision", "no"],
    "cache bf16": ["--mixed_precision", "bf16"],
}
EVAL_IMAGES = 2


def time_variant(
    sam_dir: Path,
    flags: list[str],
    images: int,
    steps: int,
    batch_size: int,
    prompt_size: int,
    workdir: Path,
    in_process: bool = False,
) -> dict:
    """One training run (in a fresh process unless `in_process`: --quick); its median step time after the first
    step, and its cache build time."""
    output_dir = Path(tempfile.mkdtemp(dir=workdir))
    run_training(
        training_command(
            sam_dir,
            output_dir,
            train_images=images,
            eval_images=EVAL_IMAGES,
            steps=steps,
            batch_size=batch_size,
            prompt_size=prompt_size,
            flags=flags,
        ),
        in_process=in_process,
    )
    assert len(read_train_log(output_dir)) == steps
    figures = training_figures(output_dir, batch_size)
    cache_seconds = figures["cache_build_seconds"]
    return {
        **figures,
        "seconds_per_epoch_800_images": figures["seconds_per_image"] * 800,
        "cache_build_seconds_per_image": cache_seconds / (images + EVAL_IMAGES) if cache_seconds else None,
    }


def arithmetic_floor(prompt_size: int) -> dict:
    """g's forward + backward FLOPs per image at `prompt_size` and the float32 GEMM rate of this machine (a ViT-B
    MLP matmul, 4096×768 @ 768×3072, best of 5), with this process's threads: FLOPs / rate is a floor for the
    cached step, which is g's arithmetic."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import SamConfig

    from autosam_hf import AutoSamConfig
    from autosam_hf.model.modeling_autosam import AutoSamPromptGenerator

    config = AutoSamConfig(sam_config=SamConfig().to_dict(), prompt_input_size=prompt_size)
    prompt_generator = use_fast_memory_format(AutoSamPromptGenerator(config).train())
    with FlopCounterMode(display=False) as counter:
        prompt_generator(torch.randn(1, 3, prompt_size, prompt_size)).pow(2).mean().backward()
    flops = counter.get_total_flops()
    activations, weight, bias = torch.randn(4096, 768), torch.randn(3072, 768), torch.randn(3072)
    seconds = []
    for _ in range(6):
        start = time.perf_counter()
        torch.nn.functional.linear(activations, weight, bias)
        seconds.append(time.perf_counter() - start)
    gemm_flops_per_second = 2 * 4096 * 768 * 3072 / min(seconds[1:])
    return {
        "g_forward_backward_gflop_per_image": flops / 1e9,
        "gemm_gflop_per_second": gemm_flops_per_second / 1e9,
        "threads": torch.get_num_threads(),
        "floor_seconds_per_image": flops / gemm_flops_per_second,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--name",
        help="Result EXPERIMENT/RUN (default training/latest, or quick).",
    )
    parser.add_argument("--batch_size", type=int, default=3)
    parser.add_argument(
        "--include_emulated_bf16", action="store_true", help="Also time bf16 on CPUs without native bf16 (slow)."
    )
    add_reference_arguments(parser)
    args = parser.parse_args()
    # Emulated bf16 costs minutes per step and says nothing: only where the CPU has it natively (or if asked).
    variants = {
        name: flags
        for name, flags in VARIANTS.items()
        if "bf16" not in name or cpu_has_native_bfloat16() or args.include_emulated_bf16
    }
    sizes = ["small"] if args.quick else ["vit_b", "small"]
    steps = 4  # the first is the warm-up: the median of 3 timed steps
    # --quick only proves the benchmark still runs: g at 64 px costs a fraction of its real 352.
    prompt_size = 64 if args.quick else 352
    result = {
        "machine": machine(),
        "native_bf16": cpu_has_native_bfloat16(),
        "batch_size": args.batch_size,
        "g": f"HarDNet-85 at {prompt_size}",
        "sizes": {},
    }
    result["arithmetic_floor"] = arithmetic_floor(prompt_size)
    with tempfile.TemporaryDirectory() as workdir:
        for size in sizes:
            sam_dir = sam_checkpoint(size)
            images = args.batch_size * steps
            timings = {
                name: time_variant(
                    sam_dir, flags, images, steps, args.batch_size, prompt_size, Path(workdir), in_process=args.quick
                )
                for name, flags in variants.items()
            }
            no_cache = timings["no_cache fp32"]["seconds_per_image"]
            for timing in timings.values():
                timing["speedup_vs_no_cache_fp32"] = no_cache / timing["seconds_per_image"]
            result["sizes"][size] = timings
            print(json.dumps({size: timings}, indent=2), flush=True)
    if args.reference_dir:
        references = measure_reference_runs(
            args.reference_dir,
            "train",
            prompt_size=prompt_size,
            batch_size=args.batch_size,
            tiny_sam=args.quick,
            pythonpath=args.reference_pythonpath,
        )
        for key, reference in references.items():
            result[key] = reference
            if "error" not in reference and reference["sam"] in result["sizes"]:  # same sizes, same run: fair
                for timing in result["sizes"][reference["sam"]].values():
                    timing[f"speedup_vs_{key}"] = reference["seconds_per_image"] / timing["seconds_per_image"]
            print(json.dumps({key: reference}, indent=2), flush=True)
    write_result(args.name or default_result_name("training", args.quick), result)


if __name__ == "__main__":
    main()
