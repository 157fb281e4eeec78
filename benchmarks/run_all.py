"""Run every benchmark, then print their results as the Markdown tables of the README.

python benchmarks/run_all.py            # full runs: ~10 minutes + 2 × the real-data budget (20 min, side by side)
python benchmarks/run_all.py --quick    # each benchmark in under a minute (what the test suite runs)
python benchmarks/run_all.py --table    # only print the tables from benchmarks/results/*.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import RESULTS_DIR, run_python

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("bench_training.py", "bench_inference.py", "bench_real_data.py")
REFERENCE = {"train_seconds_per_image": 15.1, "inference_seconds_per_image": 10.9}  # reference design, this machine


def load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def render_tables(suffix: str = "") -> str:
    lines = []
    training = load(f"training{suffix}")
    if training:
        lines += [
            f"**Training cost** (prompt stage, batch {training['batch_size']}, g = {training['g']}; "
            f"{training['machine']})",
            "",
            "| SAM | variant | s/step | s/image | speed-up vs no-cache fp32 (same run) "
            "| vs reference loop (15.1 s/image) "
            "| one-off cache build, s/image |",
            "|---|---|---|---|---|---|---|",
        ]
        for size, variants in training["sizes"].items():
            for name, v in variants.items():
                build = f"{v['cache_build_seconds_per_image']:.2f}" if v["cache_build_seconds_per_image"] else "–"
                # The reference loop was measured at ViT-B only.
                versus_reference = (
                    f"{REFERENCE['train_seconds_per_image'] / v['seconds_per_image']:.1f}×" if size == "vit_b" else "–"
                )
                lines.append(
                    f"| {size} | {name} | {v['seconds_per_step']:.2f} | {v['seconds_per_image']:.3f} | "
                    f"{v['speedup_vs_no_cache_fp32']:.1f}× | {versus_reference} | {build} |"
                )
        lines.append("")
    inference = load(f"inference{suffix}")
    if inference:
        lines += [
            f"**Inference cost per image** (SAM {inference['sam']}, batch {inference['batch_size']}, "
            f"{inference['images']} Kvasir test images; {inference['machine']})",
            "",
            "| mode | s/image | images/s | peak RSS (MiB) | speed-up vs full AutoSAM (same precision) "
            "| vs reference inference (10.9 s/image) |",
            "|---|---|---|---|---|---|",
        ]
        for name, v in inference["modes"].items():
            lines.append(
                f"| {name} | {v['seconds_per_image']:.3f} | {v['images_per_second']:.2f} | "
                f"{v['peak_memory_mib']:.0f} | {v['speedup_vs_autosam_same_precision']:.1f}× | "
                f"{REFERENCE['inference_seconds_per_image'] / v['seconds_per_image']:.1f}× |"
            )
        lines += [
            "",
            "**Where one AutoSAM forward spends its time** (batch 1)",
            "",
            "| part | fp32 s | fp32 share | bf16 s | bf16 share |",
            "|---|---|---|---|---|",
        ]
        fp32, bf16 = inference["breakdown"]["fp32"], inference["breakdown"]["bf16"]
        for part in fp32:
            lines.append(
                f"| {part} | {fp32[part]['seconds']:.3f} | {fp32[part]['share_of_autosam_forward']:.1%} | "
                f"{bf16[part]['seconds']:.3f} | {bf16[part]['share_of_autosam_forward']:.1%} |"
            )
        lines.append("")
    real = load(f"real_data{suffix}")
    if real:
        lines += [
            f"**Real data** (Kvasir-SEG, from scratch, {real['minutes_per_model']:g} min × "
            f"{real['threads_per_model']} thread per model, side by side; best epoch on val; {real['machine']})",
            "",
            "| model | epochs | steps | best val Dice | test Dice | test IoU |",
            "|---|---|---|---|---|---|",
        ]
        rows = [
            (real[name], label)
            for name, label in (("autosam_surrogate_h_of_g", "h(g(I)) (ours, no SAM)"), ("unet", "plain U-Net"))
        ]
        alone = load(f"real_data_ours_alone{suffix}")
        if alone:
            rows.append(
                (
                    alone["autosam_surrogate_h_of_g"],
                    f"h(g(I)) alone: {alone['minutes_per_model']:g} min × {alone['threads_per_model']} threads",
                )
            )
        for v, label in rows:
            lines.append(
                f"| {label} | {v['epochs']} | {v['steps']} | {v['validation']['dice']:.3f} | "
                f"{v['test']['dice']:.3f} | {v['test']['iou']:.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if not args.table:
        for script in BENCHMARKS:
            print(f"== {script}", flush=True)
            run_python([str(HERE / script), *(["--quick"] if args.quick else [])], timeout=4 * 3600)
    print(render_tables("_quick" if args.quick else ""))


if __name__ == "__main__":
    sys.exit(main())
