"""Run every benchmark, then print their results as the Markdown tables of the README.

python benchmarks/run_all.py            # full runs: ~10 minutes + the real-data learning runs (hours)
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


REAL_DATA_MILESTONES = (100, 300, 1000)  # steps at which the real-data table shows val Dice


def render_real_data(real: dict, file_name: str) -> list[str]:
    """The learning benchmark (bench_real_data.py): one row per model, val curve milestones and test scores."""
    if "models" not in real:
        return [f"**Real data**: {file_name} is in an older format; rerun benchmarks/bench_real_data.py.", ""]
    settings, machine = real["settings"], real["machine"]
    lines = [
        f"**Real data: learning from scratch on Kvasir-SEG** ({settings['steps']} optimizer steps at batch "
        f"{settings['batch_size']}; g at {settings['input_size']}², U-Net at {settings['unet_size']}²; "
        f"{settings['threads']} threads, one model at a time; best step on val, test sets scored once on it; "
        f"{machine['description']})",
        "",
        "| model | steps | best val Dice (step) | "
        + " | ".join(f"val Dice @{step}" for step in REAL_DATA_MILESTONES)
        + " | Kvasir test Dice | ColonDB Dice | ETIS Dice | s/step |",
        "|---|---|---|" + "---|" * len(REAL_DATA_MILESTONES) + "---|---|---|---|",
    ]
    for name, model in real["models"].items():
        at_step = {point["step"]: point["val_dice"] for point in model["curve"]}
        milestones = [f"{at_step[step]:.3f}" if step in at_step else "–" for step in REAL_DATA_MILESTONES]
        test = model["test"]
        lines.append(
            f"| {name} | {model['steps']} | {model['best_val']['dice']:.3f} ({model['best_val']['step']}) | "
            + " | ".join(milestones)
            + f" | {test['kvasir']['dice']:.3f} | {test['colondb']['dice']:.3f} | {test['etis']['dice']:.3f} | "
            f"{model['seconds_per_step']:.2f} |"
        )
    return lines + [""]


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
            "| part | " + " | ".join(f"{p} s | {p} share" for p in inference["breakdown"]) + " |",
            "|---|" + "---|---|" * len(inference["breakdown"]),
        ]
        breakdowns = list(inference["breakdown"].values())
        for part in breakdowns[0]:
            cells = [f"{b[part]['seconds']:.3f} | {b[part]['share_of_autosam_forward']:.1%}" for b in breakdowns]
            lines.append(f"| {part} | " + " | ".join(cells) + " |")
        if not inference.get("native_bf16", True):
            lines += [
                "",
                "bf16 rows left out: this CPU has no native bf16 (emulated: several times slower).",
            ]
        lines.append("")
    real = load(f"real_data{suffix}")
    if real:
        lines += render_real_data(real, f"real_data{suffix}.json")
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
