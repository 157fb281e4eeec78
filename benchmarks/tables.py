"""The benchmarks' results as Markdown: one renderer per kind of result, and the pages of docs/benchmarks.

Every table is captioned with the machine its figures came from (`common.machine()`: CPU model, vector ISA, native
bf16 or not, threads, torch, GPU) and the run's settings. Ratios are only ever taken between figures of one result
file, i.e. one run on one machine; the reference column appears only when the reference was timed in that run.

The pages are templates (`benchmarks/pages/*.md`: the prose) whose figures are `{{ expression }}` or
`{{ expression | format }}` placeholders over the result files (`PageContext`: `r("training/epyc_avx2_1thread")`
is a result, `training(...)` its table, `machine(...)` the machine it records), so no figure is copied by hand:

    python -m benchmarks.tables --write    # docs/benchmarks/*.md and benchmarks/results/README.md from the results
    python -m benchmarks.tables --check    # exit status 1 if a committed page differs from what the results give
"""

from __future__ import annotations

import argparse
import builtins
import json
import os
import re
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from autosam_hf.atomic_write import write_atomically
from benchmarks import common
from benchmarks.bench_encoder import markdown as encoder_markdown
from benchmarks.common import REPO_ROOT, result_path

REAL_DATA_MILESTONES = (100, 300, 1000)  # steps at which the real-data table shows val Dice
PARTS_OF_GPU_PATH = ("training", "resume", "evaluation", "inference", "loader")


def load(name: str) -> dict | None:
    """The result `<experiment>/<run>`, or None if there is none."""
    path = result_path(name)
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
    """The learning benchmark (`benchmarks.bench_real_data`): one row per model, val milestones and test scores."""
    if "models" not in real:
        return [f"**Real data**: {file_name} is in an older format; rerun benchmarks.bench_real_data.", ""]
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


def render_tables(run: str = "latest", gpu_path: str | None = None) -> str:
    """The tables of one run of every benchmark (`run`: `quick` for the --quick ones, `latest` for the others'
    default), or the GPU path's result `gpu_path` (`gpu_path/cuda`, ...)."""
    if gpu_path is not None:
        gpu = load(gpu_path)
        return "\n".join(render_gpu_path(gpu)) if gpu else f"no {result_path(gpu_path)}"
    lines: list[str] = []
    for experiment, render in RENDERERS.items():
        result = load(f"{experiment}/{run}")
        if result:
            lines += render(result)
    real = load(f"real_data/{run}")
    if real:
        lines += render_real_data(real, f"real_data/{run}.json")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- learning tables
def curve_value(model: dict, step: int, key: str = "val_dice") -> float | None:
    """`key` of a model's validation at `step` (None if it did not validate there)."""
    return next((point.get(key) for point in model["curve"] if point["step"] == step), None)


def other_canvas(model: dict) -> tuple[str, dict] | None:
    """The test scores of a model fed through the other canvas rule, if its run scored them: (rule, scores)."""
    for key, rule in (
        ("test_letterbox", "letterboxed"),
        ("test_letterboxed", "letterboxed"),
        ("test_squash", "squashed"),
    ):
        if key in model:
            return rule, model[key]
    return None


def learning_cell(model: dict, column: str, digits: int) -> str:
    """One cell of `render_runs`: `val@N`, `uval@N` (`--ema_decay` runs: the trained weights' own val Dice),
    `loss@N` (mean training loss up to the validation at N), `best`
    ("Dice (step)"), `best_dice`, a test set's Dice (`kvasir`, `colondb`, `etis`), `etis_other` (ETIS with the
    other canvas rule's score in brackets), `s/step`."""
    name, _, step = column.partition("@")

    def number(value: float | None, places: int = 3) -> str:
        return "–" if value is None else f"{value:.{places}f}"

    if name == "val":
        return number(curve_value(model, int(step)), digits)
    if name == "uval":
        return number(curve_value(model, int(step), "unaveraged_val_dice"), digits)
    if name == "loss":
        return number(curve_value(model, int(step), "train_loss"), 2)
    if column == "best":
        return f"{model['best_val']['dice']:.3f} ({model['best_val']['step']})"
    if column == "best_dice":
        return number(model["best_val"]["dice"])
    if column in ("kvasir", "colondb", "etis"):
        return number(model["test"][column]["dice"])
    if column == "etis_other":
        other = other_canvas(model)
        extra = f" ({other[0]} {other[1]['etis']['dice']:.3f})" if other else ""
        return number(model["test"]["etis"]["dice"]) + extra
    if column == "s/step":
        return f"{model['seconds_per_step']:.3g}"
    raise ValueError(f"unknown column {column!r}")


COLUMN_TITLES = {
    "val": "val Dice @{}",
    "uval": "trained weights' val Dice @{}",
    "loss": "train loss @{}",
    "best": "best val (step)",
    "best_dice": "best val",
    "kvasir": "Kvasir test",
    "colondb": "ColonDB",
    "etis": "ETIS",
    "etis_other": "ETIS",
    "s/step": "s/step",
}


def render_runs(rows: Sequence[tuple], columns: Sequence[str], digits: int = 3) -> list[str]:
    """A table of learning runs, one row per (label, result, model[, shared]) (`shared`: the run shared its machine
    with others, its s/step is not its own), a column per `learning_cell` key."""
    titles = [COLUMN_TITLES[column.partition("@")[0]].format(column.partition("@")[2]) for column in columns]
    lines = ["| model | " + " | ".join(titles) + " |", "|---|" + "---|" * len(columns)]
    for label, name, model_name, *shared in rows:
        model = result(name)["models"][model_name]
        cells = [
            "shared" if column == "s/step" and shared and shared[0] else learning_cell(model, column, digits)
            for column in columns
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def render_mean_runs(rows: Sequence[tuple], steps: Sequence[int]) -> list[str]:
    """Mean ± sample sd over seeds: one row per (label, curve runs, test runs), each runs a list of (result, model):
    val Dice at `steps` over the curve runs, the test sets' mean Dice over the test runs."""
    lines = [
        "| model | "
        + " | ".join(f"val Dice @{step} (mean ± sd)" for step in steps)
        + " | Kvasir test | ColonDB | ETIS |",
        "|---|" + "---|" * (len(steps) + 3),
    ]
    for label, curve_runs, test_runs in rows:
        curves = [result(name)["models"][model] for name, model in curve_runs]
        tests = [result(name)["models"][model]["test"] for name, model in test_runs]
        cells = []
        for step in steps:
            values = [curve_value(model, step) for model in curves]
            cells.append(f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}")
        cells += [
            f"{statistics.fmean(test[name]['dice'] for test in tests):.3f}" for name in ("kvasir", "colondb", "etis")
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def render_seeds(name: str, milestones: Sequence[int] = (100, 300, 500, 1000)) -> list[str]:
    """The recipe table of a `benchmarks.seeds` result (mean ± sd over each group's seeds)."""
    from benchmarks.seeds import render

    groups = {
        label: {**group, "val_dice": {int(step): value for step, value in group["val_dice"].items()}}
        for label, group in result(name)["groups"].items()
    }
    return render(groups, milestones)


def render_comparisons(rows: Sequence[tuple[str, str]], comparison: str) -> list[str]:
    """Seed-for-seed differences of one comparison (`A − B`) across `benchmarks.seeds` results: a row per
    (label, result), each cell the mean difference ± its standard error and the pairs A wins."""
    metrics = ("best val", "kvasir", "colondb", "etis")
    lines = ["| pairs | best val | Kvasir test | ColonDB | ETIS |", "|---|---|---|---|---|"]
    for label, name in rows:
        differences = result(name)["comparisons"][comparison]["differences"]
        cells = []
        for metric in metrics:
            row = differences[metric]
            places = 4 if abs(row["mean_difference"]) < 0.001 else 3
            error = "" if row["standard_error"] is None else f" ± {row['standard_error']:.{places}f}"
            mean = f"{row['mean_difference']:+.{places}f}".replace("-", "−")
            cells.append(f"{mean}{error} ({row['first_ahead']} of {row['pairs']})")
        pairs = differences[metrics[0]]["pairs"]
        lines.append(f"| {label}, {pairs} ({link(name)}) | " + " | ".join(cells) + " |")
    return lines


def render_onnx(onnx: dict) -> list[str]:
    from benchmarks.bench_onnx import render_table  # imported when asked: it imports the ONNX export

    return render_table(onnx).splitlines()


def render_monuseg(monuseg: dict) -> list[str]:
    from benchmarks.bench_monuseg import markdown_table

    return markdown_table(monuseg["models"]).splitlines()


# ---------------------------------------------------------------------------------------------- pages
PAGES_DIR = REPO_ROOT / "docs" / "benchmarks"
TEMPLATES_DIR = Path(__file__).resolve().parent / "pages"
PLACEHOLDER = re.compile(r"\{\{(.+?)\}\}", re.DOTALL)
FORMAT_SPEC = re.compile(r"^[-+ ]?\d*(?:\.\d+)?[a-z%]?$")
_read: list[str] = []  # the results the page being rendered has read, in order


def result(name: str) -> dict:
    """The result `<experiment>/<run>` a page reads: recorded as one of its inputs; a missing file is an error."""
    found = load(name)
    if found is None:
        raise FileNotFoundError(f"no {result_path(name)}")
    if name not in _read:
        _read.append(name)
    return found


def relative(path: Path) -> str:
    """`path` as a link from a page in docs/benchmarks."""
    return Path(os.path.relpath(path, PAGES_DIR)).as_posix()


def link(name: str, suffix: str = ".json") -> str:
    """A Markdown link to a result's file (`.png`: its figure)."""
    result(name)
    return f"[`{name}{suffix}`]({relative(result_path(name, suffix))})"


def figure(name: str, caption: str) -> str:
    result(name)
    return f"![{caption}]({relative(result_path(name, '.png'))})"


def machine(name: str) -> str:
    """The machine a result records (its `machine` text, or the `description` of its machine record)."""
    recorded = result(name)["machine"]
    return recorded if isinstance(recorded, str) else recorded["description"]


def model(name: str, model_name: str) -> dict:
    return result(name)["models"][model_name]


def test(name: str, model_name: str, test_set: str = "kvasir") -> float:
    return model(name, model_name)["test"][test_set]["dice"]


def val(name: str, model_name: str, step: int, key: str = "val_dice") -> float:
    value = curve_value(model(name, model_name), step, key)
    if value is None:
        raise KeyError(f"{name}: {model_name} did not validate at step {step}")
    return value


def group(name: str, label: str) -> dict:
    """A `benchmarks.seeds` group of a result."""
    return result(name)["groups"][label]


def difference(name: str, comparison: str, metric: str) -> dict:
    """One metric of a `benchmarks.seeds` comparison: mean_difference, standard_error, sd, pairs, first_ahead."""
    return result(name)["comparisons"][comparison]["differences"][metric]


def listed(values: Sequence[float], spec: str = ".3f", separator: str = " / ") -> str:
    """Values in order, e.g. per seed: "0.830 / 0.794 / 0.834"."""
    return separator.join(format(value, spec).replace("-", "−", 1) for value in values)


CONTEXT = {
    "r": result,
    "link": link,
    "figure": figure,
    "machine": machine,
    "model": model,
    "test": test,
    "val": val,
    "group": group,
    "difference": difference,
    "listed": listed,
    "mean": statistics.fmean,
    "sd": statistics.stdev,
    "training": lambda name: render_training(result(name)),
    "inference": lambda name: render_inference(result(name)),
    "loader": lambda name: render_loader(result(name)),
    "cache_precision": lambda name: render_cache_precision(result(name)),
    "gpu_path": lambda name: render_gpu_path(result(name)),
    "encoder": lambda name: encoder_markdown(result(name)).splitlines(),
    "onnx": lambda name: render_onnx(result(name)),
    "monuseg": lambda name: render_monuseg(result(name)),
    "runs": render_runs,
    "mean_runs": render_mean_runs,
    "seeds": render_seeds,
    "comparisons": render_comparisons,
    **{name: getattr(builtins, name) for name in ("min", "max", "len", "abs", "round", "sorted", "str", "int")},
}


def fill(match: re.Match) -> str:
    """One placeholder: a table (a list of lines) or a value, formatted by its `| spec` (minus signs as "−")."""
    expression, spec = match.group(1).strip(), ""
    head, bar, tail = expression.rpartition(" | ")
    if bar and FORMAT_SPEC.match(tail.strip()):
        expression, spec = head, tail.strip()
    try:
        value = eval(expression, {"__builtins__": {}, **CONTEXT})  # the templates are this repository's own files
    except Exception as error:
        raise ValueError(f"{{{{ {expression} }}}}: {type(error).__name__}: {error}") from error
    if isinstance(value, list):
        return "\n".join(value).rstrip("\n")
    text = format(value, spec)
    return "−" + text[1:] if isinstance(value, (int, float)) and text.startswith("-") else text


def render_page(template: str) -> tuple[str, list[str]]:
    """A page from its template text, and the results it read."""
    _read.clear()
    return PLACEHOLDER.sub(fill, template), list(_read)


def render_pages() -> dict[Path, str]:
    """Every page of docs/benchmarks from its template, and the results' index: path → text."""
    pages, readers = {}, {}
    for template in sorted(TEMPLATES_DIR.glob("*.md")):
        try:
            body, inputs = render_page(template.read_text())
        except ValueError as error:
            raise ValueError(f"benchmarks/pages/{template.name}: {error}") from error
        footer = [
            "",
            "---",
            f"Generated by `python -m benchmarks.tables --write` from `benchmarks/pages/{template.name}` and these "
            "result files (edit those, not this page):",
            "",
            *[f"- {link(name)}" for name in inputs],
            "",
        ]
        pages[PAGES_DIR / template.name] = body.rstrip("\n") + "\n" + "\n".join(footer)
        for name in inputs:
            readers.setdefault(name, []).append(template.name)
    pages[common.RESULTS_DIR / "README.md"] = render_index(readers)
    return pages


def render_index(readers: dict[str, list[str]]) -> str:
    """`benchmarks/results/README.md`: every result file by experiment, with the pages and the `benchmarks.seeds`
    results that read it."""
    lines = [
        "# Benchmark results",
        "",
        "`<experiment>/<run>.json` (and the run's figure, `<run>.png`): the experiment is the benchmark or study, the "
        "run one setting, seed or machine of it. Each file records its machine and settings. Generated by "
        "`python -m benchmarks.tables --write`, like the pages in [docs/benchmarks](../../docs/benchmarks/README.md) "
        "that read them.",
        "",
    ]
    gathered: dict[str, list[str]] = {}  # run → the `benchmarks.seeds` results gathering it
    for path in sorted(common.RESULTS_DIR.glob("*/*.json")):
        for group in json.loads(path.read_text()).get("groups", {}).values():
            for run in group.get("runs", []):
                gathered.setdefault(run["file"], []).append(f"{path.parent.name}/{path.stem}")
    for experiment in sorted(path for path in common.RESULTS_DIR.iterdir() if path.is_dir()):
        lines += [f"## {experiment.name}", "", "| run | read by |", "|---|---|"]
        for path in sorted(experiment.glob("*.json")):
            name = f"{experiment.name}/{path.stem}"
            pages = [f"[{page}](../../docs/benchmarks/{page})" for page in readers.get(name, [])]
            pages += [f"[`{seeds}`]({seeds}.json)" for seeds in dict.fromkeys(gathered.get(name, []))]
            lines.append(f"| [`{path.stem}`]({experiment.name}/{path.name}) | {', '.join(pages) or '–'} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="Write the pages and the results' index.")
    action.add_argument("--check", action="store_true", help="Exit 1 if a written page is not what the results give.")
    args = parser.parse_args(argv)
    try:
        pages = render_pages()
    except (OSError, KeyError, ValueError) as error:
        parser.error(str(error))
    if args.check:
        stale = [path for path, text in pages.items() if not path.exists() or path.read_text() != text]
        for path in stale:
            print(f"{path.relative_to(REPO_ROOT)} differs from what the results give", file=sys.stderr)
        return 1 if stale else 0
    PAGES_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in pages.items():
        write_atomically(path, lambda temporary, text=text: temporary.write_text(text))
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
