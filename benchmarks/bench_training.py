"""Benchmark 1: training cost with the embedding cache vs recomputing SAM's encoder every step.

Runs the real training script (`python -m autosam_hf.train --stage prompt`) on the same Kvasir images, model and
batch, side by side in one run:
  - `no_cache fp32`: SAM's ViT encoder every step in float32 — what the reference code does;
  - `cache fp32` and `cache bf16`: embeddings computed once, read back memory-mapped (bf16 = autocast).
Step times come from the script's own `train_log.jsonl` (the first, warm-up step is left out); the one-off cost
of building the cache from `all_results.json`.

    python benchmarks/bench_training.py            # ViT-B and small SAM
    python benchmarks/bench_training.py --quick    # small SAM, g at 64 px, a few steps: only checks it runs
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
from pathlib import Path

from common import DATA_DIR, machine, run_python, sam_checkpoint, write_result

from autosam_hf.runtime import cpu_has_native_bfloat16

VARIANTS = {  # name → extra training flags
    "no_cache fp32": ["--no_cache", "--mixed_precision", "no"],
    "cache fp32": ["--mixed_precision", "no"],
    "cache bf16": ["--mixed_precision", "bf16"],
}


def time_variant(
    sam_dir: Path, flags: list[str], images: int, steps: int, batch_size: int, prompt_size: int, workdir: Path
) -> dict:
    output_dir = Path(tempfile.mkdtemp(dir=workdir))
    run_python(
        [
            "-m",
            "autosam_hf.train",
            "--sam",
            str(sam_dir),
            "--preset",
            "kvasir",
            "--data",
            str(DATA_DIR / "kvasir"),
            "--output_dir",
            str(output_dir),
            "--stage",
            "prompt",
            "--max_train_samples",
            str(images),
            "--max_eval_samples",
            "2",
            "--per_device_train_batch_size",
            str(batch_size),
            "--num_views",
            "1",
            "--max_train_steps",
            str(steps),
            "--checkpointing_steps",
            "1000000",
            "--num_overlays",
            "0",
            "--prompt_input_size",
            str(prompt_size),
            *flags,
        ]
    )
    records = [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]
    seconds = [r["seconds"] for r in records if "loss" in r]
    step_times = [b - a for a, b in itertools.pairwise(seconds)]
    results = json.loads((output_dir / "all_results.json").read_text())
    step = statistics.median(step_times)
    return {
        "seconds_per_step": step,
        "seconds_per_image": step / batch_size,
        "seconds_per_epoch_800_images": step / batch_size * 800,
        "cache_build_seconds": results.get("embedding_cache_seconds"),
        "cache_build_seconds_per_image": (
            results["embedding_cache_seconds"] / (images + 2) if "embedding_cache_seconds" in results else None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch_size", type=int, default=3)
    parser.add_argument(
        "--include_emulated_bf16", action="store_true", help="Also time bf16 on CPUs without native bf16 (slow)."
    )
    args = parser.parse_args()
    # Emulated bf16 costs minutes per step and says nothing: only where the CPU has it natively (or if asked).
    variants = {
        name: flags
        for name, flags in VARIANTS.items()
        if "bf16" not in name or cpu_has_native_bfloat16() or args.include_emulated_bf16
    }
    sizes = ["small"] if args.quick else ["vit_b", "small"]
    steps = 3 if args.quick else 4
    # --quick only proves the benchmark still runs: g at 64 px costs a fraction of its real 352.
    prompt_size = 64 if args.quick else 352
    result = {
        "machine": machine(),
        "native_bf16": cpu_has_native_bfloat16(),
        "batch_size": args.batch_size,
        "g": f"HarDNet-85 at {prompt_size}",
        "sizes": {},
    }
    with tempfile.TemporaryDirectory() as workdir:
        for size in sizes:
            sam_dir = sam_checkpoint(size)
            images = args.batch_size * steps
            timings = {
                name: time_variant(sam_dir, flags, images, steps, args.batch_size, prompt_size, Path(workdir))
                for name, flags in variants.items()
            }
            reference = timings["no_cache fp32"]["seconds_per_image"]
            for timing in timings.values():
                timing["speedup_vs_no_cache_fp32"] = reference / timing["seconds_per_image"]
            result["sizes"][size] = timings
            print(json.dumps({size: timings}, indent=2), flush=True)
    write_result("training_quick" if args.quick else "training", result)


if __name__ == "__main__":
    main()
