"""The benchmarks' results as the README's Markdown tables: one renderer per result file.

Every table is captioned with the machine its figures came from (`common.machine()`: CPU model, vector ISA, native
bf16 or not, threads, torch, GPU) and the run's settings. Ratios are only ever taken between figures of one result
file, i.e. one run on one machine; the reference column appears only when the reference was timed in that run.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from common import RESULTS_DIR

REAL_DATA_MILESTONES = (100, 300, 1000)  # steps at which the real-data table shows val Dice
PARTS_OF_GPU_PATH = ("training", "resume", "evaluation", "inference", "loader")


def load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def precision_name(mixed_precision: str) -> str:
    """accelerate's `mixed_precision` as the tables name it: no → fp32."""
    return "fp32" if mixed_precision == "no" else mixed_precision


def ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}×"


def reference_note(reference: dict | None) -> list[str]:
    """Why the reference column is missing, or which reference was timed (commit, patches)."""
    if reference is None:
        return []
    if "error" in reference:
        return [f"Reference not measured in this run: {reference['error']}", ""]
    commit = (reference.get("reference_commit") or "")[:7] or "commit unknown: not a git checkout"
    patches = "; ".join(reference.get("patches", []))
    return [f"Reference: talshaharabany/AutoSAM ({commit}), run unedited; patched at run time: {patches}.", ""]


def kept_reference(result: dict) -> dict | None:
    """The reference timed again with the autosam-* commands' allocator setting (`keep_freed_cpu_memory`), if it
    was, in this run, at the same sizes."""
    kept = result.get("reference_keep_freed_cpu_memory")
    return kept if kept is not None and "error" not in kept else None


def reference_rows(reference: dict, kept: dict | None) -> list[tuple[dict, str, str]]:
    """The reference's rows: as published and, if timed, with our allocator setting. Each: its figures, its label
    suffix, and its ratio cells (" a× | b× |") against each of those reference runs."""
    runs = [(reference, "")] + ([(kept, ", freed memory kept")] if kept else [])
    rows = []
    for timed, label in runs:
        cells = [ratio(base["seconds_per_image"] / timed["seconds_per_image"]) for base, _ in runs]
        rows.append((timed, label, "".join(f" {cell} |" for cell in cells)))
    return rows


def render_training(training: dict) -> list[str]:
    reference = training.get("reference")
    measured = reference is not None and "error" not in reference
    kept = kept_reference(training) if measured else None
    lines = [
        f"**Training cost** (prompt stage, batch {training['batch_size']}, g = {training['g']}; median of 3 steps "
        f"after a warm-up; {training['machine']})",
        "",
        "| SAM | variant | s/step | s/image | images/s | speed-up vs no-cache fp32 (same run) | "
        + ("vs reference loop (same run) | " if measured else "")
        + ("vs reference loop with our allocator setting | " if kept else "")
        + "one-off cache build, s/image |",
        "|---|---|---|---|---|---|" + ("---|" if measured else "") + ("---|" if kept else "") + "---|",
    ]
    if measured:
        for timed, label, versus in reference_rows(reference, kept):
            lines.append(
                f"| {timed['sam']} | reference loop fp32{label} | {timed['seconds_per_repeat']:.2f} | "
                f"{timed['seconds_per_image']:.3f} | {timed['images_per_second']:.2f} | – |{versus} – |"
            )
    for size, variants in training["sizes"].items():
        for name, v in variants.items():
            build = f"{v['cache_build_seconds_per_image']:.2f}" if v["cache_build_seconds_per_image"] else "–"
            versus = f"{ratio(v.get('speedup_vs_reference'))} | " if measured else ""
            versus += f"{ratio(v.get('speedup_vs_reference_keep_freed_cpu_memory'))} | " if kept else ""
            lines.append(
                f"| {size} | {name} | {v['seconds_per_step']:.2f} | {v['seconds_per_image']:.3f} | "
                f"{1 / v['seconds_per_image']:.2f} | {ratio(v['speedup_vs_no_cache_fp32'])} | {versus}{build} |"
            )
    floor = training.get("arithmetic_floor")
    if floor:
        lines += [
            "",
            "Arithmetic floor of the cached step: g's forward + backward is "
            f"{floor['g_forward_backward_gflop_per_image']:.0f} GFLOP per image; this machine's fp32 GEMM runs "
            f"{floor['gemm_gflop_per_second']:.0f} GFLOP/s on "
            f"{floor['threads']} thread(s) → {floor['floor_seconds_per_image']:.2f} s/image.",
        ]
    return lines + [""] + reference_note(reference)


def render_inference(inference: dict) -> list[str]:
    reference = inference.get("reference")
    measured = reference is not None and "error" not in reference
    kept = kept_reference(inference) if measured else None
    statistic = "median" if "seconds" in next(iter(inference["modes"].values())) else "mean"  # older files: mean
    lines = [
        f"**Inference cost per image** (SAM {inference['sam']}, g = {inference.get('g', 'HarDNet-85 at 352')}, "
        f"batch {inference['batch_size']}, {statistic} of {inference['images']} Kvasir test images after a warm-up; "
        f"{inference['machine']})",
        "",
        "| mode | s/image | images/s | peak memory (MiB) | speed-up vs full AutoSAM (same precision) |"
        + (" vs reference inference (same run) |" if measured else "")
        + (" vs reference with our allocator setting |" if kept else ""),
        "|---|---|---|---|---|" + ("---|" if measured else "") + ("---|" if kept else ""),
    ]
    if measured:
        for timed, label, versus in reference_rows(reference, kept):
            lines.append(
                f"| reference inference fp32 ({timed['sam']}){label} | {timed['seconds_per_image']:.3f} | "
                f"{timed['images_per_second']:.2f} | – | – |{versus}"
            )
    for name, v in inference["modes"].items():
        versus = f" {ratio(v.get('speedup_vs_reference'))} |" if measured else ""
        versus += f" {ratio(v.get('speedup_vs_reference_keep_freed_cpu_memory'))} |" if kept else ""
        lines.append(
            f"| {name} | {v['seconds_per_image']:.3f} | {v['images_per_second']:.2f} | {v['peak_memory_mib']:.0f} | "
            f"{ratio(v['speedup_vs_autosam_same_precision'])} |{versus}"
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
    if "bf16" not in inference["breakdown"]:
        lines += ["", "bf16 rows left out: no native bf16 here (emulated: several times slower)."]
    return lines + [""] + reference_note(reference)


def loader_rows(loader: dict) -> list[str]:
    """The loader benchmark's rows (shared by its own table and the GPU path's)."""
    rows = [
        f"| cache build (SAM {loader['sam']}, per image) | {loader['cache_build']['images_per_second']:.1f} | – |",
    ]
    for workers, figures in loader["loader"].items():
        default = " (default)" if int(workers) == loader["default_workers"] else ""
        rows.append(
            f"| loader, {workers} workers{default} | {figures['images_per_second']:.1f} | "
            f"{figures['images_per_second'] / loader['step']['images_per_second']:.1f}× |"
        )
    step = loader["step"]["images_per_second"]
    rows.append(f"| cached training step ({precision_name(loader['mixed_precision'])}) | {step:.1f} | 1.0× |")
    return rows


def render_loader(loader: dict) -> list[str]:
    return [
        f"**Does the data path keep up?** (cached prompt stage: SAM {loader['sam']}, g = {loader['g']}, batch "
        f"{loader['batch_size']}, {loader['images']} Kvasir train images, {loader['augmentation']} augmentation, "
        f"{loader['device']}; {loader['machine']})",
        "",
        "| what | images/s | vs cached step |",
        "|---|---|---|",
        *loader_rows(loader),
        "",
        f"Loader (default workers) / cached step: {loader['loader_to_step']:.1f}× (target ≥ 2×).",
        "",
    ]


def render_cache_precision(precision: dict) -> list[str]:
    lines = [
        f"**float16 embedding cache vs float32** (same decoder and prompt; {precision['machine']})",
        "",
        "| SAM | images | max abs Δ logit | relative | changed pixels | mean Δ Dice | max abs Δ Dice |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, v in precision["sizes"].items():
        lines.append(
            f"| {size} | {v['images']} | {v['max_abs_logit_difference']:.2e} | {v['relative_difference']:.2e} | "
            f"{v['changed_pixel_share']:.2e} | {v['mean_dice_change']:+.2e} | {v['max_abs_dice_change']:.2e} |"
        )
    return lines + [""]


def render_gpu_path(gpu: dict) -> list[str]:
    failed = [f"{name}: {gpu[name]['error']}" for name in PARTS_OF_GPU_PATH if "error" in gpu.get(name, {})]
    if failed:
        return [f"**The GPU path** ({gpu['device']}; {gpu['machine']}) failed:", "", *failed, ""]
    training, resume, evaluation = gpu["training"], gpu["resume"], gpu["evaluation"]
    cached, no_cache = training["cached"], training["no_cache"]
    dice = {mode: results["kvasir"]["dice"] for mode, results in evaluation["results"].items()}
    inference = gpu["inference"]
    lines = [
        f"**The GPU path in one command** ({gpu['device']}: SAM {gpu['sam']}, g = HarDNet-85 at "
        f"{gpu['prompt_size']}, batch {gpu['batch_size']}, {precision_name(gpu['mixed_precision'])}; "
        f"{gpu['wall_seconds']:.0f} s in all; {gpu['machine']}, transformers {gpu.get('transformers', '?')})",
        "",
        "| what | images/s | ratio (same run) |",
        "|---|---|---|",
        f"| training step, cached embeddings | {cached['images_per_second']:.1f} | "
        f"{ratio(training['cached_to_no_cache'])} vs no cache |",
        f"| training step, `--no_cache` | {no_cache['images_per_second']:.1f} | 1.0× |",
        *[
            f"| inference {mode} ({inference['precision']}, batch 1) | {v['images_per_second']:.1f} | – |"
            for mode, v in inference["modes"].items()
        ],
        *loader_rows(gpu["loader"]),
        "",
        f"Resume: stopped after step {resume['stopped_after_step']} of {resume['steps']} and resumed; largest relative "
        f"loss difference vs the uninterrupted run {resume['max_relative_loss_difference']:.1e} "
        f"({'matches' if resume['losses_match'] else 'DOES NOT match'}, tolerance {resume['tolerance']:g}). "
        f"Evaluation (autosam-eval, {evaluation['images']} Kvasir test images, random SAM weights): "
        + ", ".join(f"{mode} Dice {value:.3f}" for mode, value in dice.items())
        + f", {evaluation['seconds']:.0f} s.",
        "",
    ]
    return lines


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


RENDERERS: dict[str, Callable[[dict], list[str]]] = {
    "training": render_training,
    "inference": render_inference,
    "loader": render_loader,
    "cache_precision": render_cache_precision,
}


def render_tables(suffix: str = "", gpu_path: str | None = None) -> str:
    """Every result file of a run (`suffix` "_quick" for the --quick ones), or the GPU path's result `gpu_path`."""
    if gpu_path is not None:
        gpu = load(gpu_path)
        return "\n".join(render_gpu_path(gpu)) if gpu else f"no {gpu_path}.json in {RESULTS_DIR}"
    lines: list[str] = []
    for name, render in RENDERERS.items():
        result = load(f"{name}{suffix}")
        if result:
            lines += render(result)
    real = load(f"real_data{suffix}")
    if real:
        lines += render_real_data(real, f"real_data{suffix}.json")
    return "\n".join(lines)
