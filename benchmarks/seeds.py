"""One recipe over several seeds: `benchmarks.bench_real_data` runs gathered as mean ± sd per recipe, with their curves.

A single 1,000-step run's val Dice moves by up to ±0.1 between seeds of the same recipe, so a claim that one recipe
is ahead of another rests on several seeds. Each `--group "LABEL=FILE:MODEL,FILE:MODEL,..."` names the runs of one
recipe: a result `EXPERIMENT/RUN` of `benchmarks/results` and a model in it. Runs are named explicitly because
a model's name in a file records the flags of its day (`pipeline:default` ran the constant rate before the default
annealed): that the named runs ran one recipe is the caller's claim. Checked: the runs of a group share every setting
of their files but the seed (and the threads and device, which move time, not Dice), are models of one runner at
one input size, and repeat no seed. Test scores are whatever each run recorded under `test`.

    python -m benchmarks.seeds --name seeds/224_cpu \\
        --group "pipeline:default=real_data_224/cosine_seed42:pipeline:default+cosine,real_data_224/cosine_seed1:..." \\
        --group "minimal:unet=real_data_224/seed42:minimal:unet,real_data_224/unet_seed1:minimal:unet,..."

A run is its seed on its device: the same seed's arithmetic, and so its run, differs between a CPU and a GPU, so a
group may hold seed 1 from each. `--compare A B` pairs two groups' runs seed for seed (same seed, same device) and
reports the differences A − B: their mean, its standard error, and in how many pairs A is ahead.

Writes `benchmarks/results/<name>.json` and `.png` (val Dice vs steps: each seed thin, the mean bold) and prints its
tables (`render`, `render_comparison`: what the pages in docs/benchmarks show).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from autosam_hf.visualization import save_figure
from benchmarks.common import result_path, write_result
from benchmarks.tables import load

MILESTONES = (100, 300, 500, 1000)  # steps at which the table shows val Dice
TEST_SETS = ("kvasir", "colondb", "etis")
SETTINGS_THAT_MOVE_TIME_ONLY = ("seed", "threads", "device")


def parse_group(text: str) -> tuple[str, list[tuple[str, str]]]:
    """`"LABEL=FILE:MODEL,FILE:MODEL"` → (LABEL, [(FILE, MODEL), ...]); model names may hold colons."""
    label, separator, runs = text.partition("=")
    if not separator or not label.strip() or not runs.strip():
        raise ValueError(f"--group {text!r}: expected LABEL=FILE:MODEL[,FILE:MODEL...]")
    pairs = []
    for run in filter(None, (part.strip() for part in runs.split(","))):
        file_name, colon, model = run.partition(":")
        if not colon or not model:
            raise ValueError(f"--group {label!r}: {run!r} is not FILE:MODEL")
        pairs.append((file_name, model))
    return label.strip(), pairs


def mean_and_sd(values: list[float]) -> dict:
    """Mean, sample standard deviation (None for one value) and the values themselves, in seed order."""
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else None,
        "values": values,
    }


def gather(label: str, runs: list[tuple[str, str]]) -> dict:
    """The group's runs, checked to differ only by seed, and their statistics per milestone and test set."""
    found = []
    for file_name, model in runs:
        result = load(file_name)
        if result is None:
            raise ValueError(f"--group {label!r}: no {result_path(file_name)}")
        if model not in result.get("models", {}):
            raise ValueError(f"--group {label!r}: {file_name}.json has no model {model!r} ({sorted(result['models'])})")
        found.append((file_name, model, result))
    comparable = [
        {key: value for key, value in result["settings"].items() if key not in SETTINGS_THAT_MOVE_TIME_ONLY}
        for _, _, result in found
    ]
    for (file_name, _, _), settings in zip(found, comparable, strict=True):
        if settings != comparable[0]:
            differing = sorted(key for key in settings if settings[key] != comparable[0].get(key))
            raise ValueError(f"--group {label!r}: {file_name}.json differs from {found[0][0]}.json in {differing}")
    # The models must be the same kind too (which flags a pipeline run had is the caller's choice: see above).
    models = [result["models"][model] for _, model, result in found]
    kinds = [(model.get("runner"), model.get("image_size")) for model in models]
    for (file_name, model, _), kind in zip(found, kinds, strict=True):
        if kind != kinds[0]:
            raise ValueError(f"--group {label!r}: {file_name}:{model} is a {kind} model, {found[0][0]}'s a {kinds[0]}")
    draws = [run_key(result) for _, _, result in found]
    if len(set(draws)) != len(draws):
        raise ValueError(f"--group {label!r}: a seed appears twice on one device ({draws}); each run is another draw")

    curves = [{point["step"]: point["val_dice"] for point in model["curve"]} for model in models]
    shared_steps = sorted(set.intersection(*(set(curve) for curve in curves)))
    return {
        "runs": [
            {"file": file_name, "model": model, "seed": seed, "device": device, "machine": result["machine"]}
            for (file_name, model, result), (seed, device) in zip(found, draws, strict=True)
        ],
        "settings": comparable[0],
        "val_dice": {step: mean_and_sd([curve[step] for curve in curves]) for step in shared_steps},
        "best_val_dice": mean_and_sd([model["best_val"]["dice"] for model in models]),
        "test_dice": {name: mean_and_sd([model["test"][name]["dice"] for model in models]) for name in TEST_SETS},
    }


def run_key(result: dict) -> tuple[int, str]:
    """(seed, device) of a result file: what makes a run another draw."""
    return result["settings"]["seed"], result["settings"].get("device", "cpu")


def compare(first: dict, second: dict) -> dict:
    """Seed-for-seed differences first − second (best val Dice and each test set's Dice) over the (seed, device) runs
    the two groups share: mean, standard error of the mean (None for one pair), sample sd and how often first is
    ahead. The standard error is the paired one, sd(differences) / √pairs. Runs pair up as they were launched, by seed
    and device; the two models draw their own batches and weights, so a pair shares no randomness: the mean
    difference is that of the two groups over the same runs, while which pairs A "wins" depends on the pairing.
    Runs without a partner are left out and listed."""
    keys = [[(run["seed"], run["device"]) for run in group["runs"]] for group in (first, second)]
    shared = [key for key in keys[0] if key in keys[1]]
    unpaired = [key for key in keys[0] + keys[1] if key not in shared]
    if not shared:
        raise ValueError(f"--compare: the groups share no (seed, device) run ({keys[0]} against {keys[1]})")
    table = {}
    for metric in ("best val", *TEST_SETS):
        values = [
            group["best_val_dice"] if metric == "best val" else group["test_dice"][metric] for group in (first, second)
        ]
        differences = [
            values[0]["values"][keys[0].index(key)] - values[1]["values"][keys[1].index(key)] for key in shared
        ]
        spread = statistics.stdev(differences) if len(differences) > 1 else None
        table[metric] = {
            "pairs": len(differences),
            "mean_difference": statistics.fmean(differences),
            "standard_error": None if spread is None else spread / math.sqrt(len(differences)),
            "sd": spread,
            "first_ahead": sum(difference > 0 for difference in differences),
        }
    return {"pairs": [list(key) for key in shared], "unpaired": [list(key) for key in unpaired], "differences": table}


def render_comparison(first: str, second: str, comparison: dict) -> list[str]:
    """One Markdown row per metric: the paired difference first − second."""
    lines = [f"| {first} − {second} | pairs | mean difference ± s.e. | sd | first ahead |", "|---|---|---|---|---|"]
    for metric, row in comparison["differences"].items():
        error = "" if row["standard_error"] is None else f" ± {row['standard_error']:.4f}"
        sd = "–" if row["sd"] is None else f"{row['sd']:.4f}"
        lines.append(
            f"| {metric} | {row['pairs']} | {row['mean_difference']:+.4f}{error} | {sd} | "
            f"{row['first_ahead']} of {row['pairs']} |"
        )
    if comparison["unpaired"]:
        lines.append(
            f"(left out, without a partner: {', '.join(f'seed {s} ({d})' for s, d in comparison['unpaired'])})"
        )
    return lines


def cell(statistic: dict | None) -> str:
    if statistic is None:
        return "–"
    spread = "" if statistic["sd"] is None else f" ± {statistic['sd']:.3f}"
    return f"{statistic['mean']:.3f}{spread}"


def seeds_by_device(runs: list[dict]) -> str:
    """ "42, 1, 2", or "42, 1 (cpu); 42, 1, 2 (cuda)" for a group whose runs ran on more than one device."""
    devices = list(dict.fromkeys(run["device"] for run in runs))
    by_device = {device: ", ".join(str(run["seed"]) for run in runs if run["device"] == device) for device in devices}
    return by_device[devices[0]] if len(devices) == 1 else "; ".join(f"{seeds} ({d})" for d, seeds in by_device.items())


def render(groups: dict[str, dict], milestones: Sequence[int] = MILESTONES) -> list[str]:
    """One Markdown row per recipe: mean ± sd over its seeds (sample sd; n in the row), val Dice at `milestones`."""
    lines = [
        "| recipe | seeds | "
        + " | ".join(f"val Dice @{step}" for step in milestones)
        + " | best val | Kvasir test | ColonDB | ETIS |",
        "|---|---|" + "---|" * len(milestones) + "---|---|---|---|",
    ]
    for label, group in groups.items():
        seeds = seeds_by_device(group["runs"])
        at_milestones = [cell(group["val_dice"].get(step)) for step in milestones]
        tests = [cell(group["test_dice"][name]) for name in TEST_SETS]
        lines.append(
            f"| {label} | {seeds} | " + " | ".join(at_milestones) + f" | {cell(group['best_val_dice'])} | "
            + " | ".join(tests) + " |"
        )  # fmt: skip
    return lines


def plot(groups: dict[str, dict], path: Path) -> None:
    """Val Dice vs optimizer steps: each seed a thin line, the group's mean a bold one in the same colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for index, (label, group) in enumerate(groups.items()):
        colour = f"C{index}"
        steps = list(group["val_dice"])
        for seed_index in range(len(group["runs"])):
            values = [group["val_dice"][step]["values"][seed_index] for step in steps]
            axis.plot(steps, values, color=colour, alpha=0.35, linewidth=1)
        means = [group["val_dice"][step]["mean"] for step in steps]
        axis.plot(steps, means, color=colour, linewidth=2.5, marker="o", markersize=3,
                  label=f"{label} (mean of {len(group['runs'])} seeds)")  # fmt: skip
    axis.set(xlabel="optimizer steps", ylabel="val Dice (Kvasir-SEG, per image)", ylim=(0, 1))
    axis.grid(alpha=0.3)
    axis.legend()
    save_figure(figure, path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", action="append", required=True, help="LABEL=FILE:MODEL[,FILE:MODEL...]")
    parser.add_argument(
        "--compare", nargs=2, action="append", default=[], metavar=("A", "B"),
        help="Two groups' labels: their seed-for-seed differences A − B (repeatable).",
    )  # fmt: skip
    parser.add_argument("--name", default="seeds/latest", help="Result EXPERIMENT/RUN, e.g. seeds/224_cpu.")
    args = parser.parse_args(argv)
    try:
        result_path(args.name)
        parsed = [parse_group(text) for text in args.group]
        labels = [label for label, _ in parsed]
        if len(set(labels)) != len(labels):
            raise ValueError(f"--group: a label appears twice ({labels})")
        for pair in args.compare:
            if unknown := [label for label in pair if label not in labels]:
                raise ValueError(f"--compare: no group labelled {unknown[0]!r} ({labels})")
        if len({tuple(pair) for pair in args.compare}) != len(args.compare):
            raise ValueError(f"--compare: a pair appears twice ({args.compare})")
        groups = {label: gather(label, runs) for label, runs in parsed}
        comparisons = {f"{first} − {second}": compare(groups[first], groups[second]) for first, second in args.compare}
    except ValueError as error:
        parser.error(str(error))
    # JSON keys are strings: the steps are written as such.
    result = {"groups": {label: {**group, "val_dice": {str(k): v for k, v in group["val_dice"].items()}}
                         for label, group in groups.items()}}  # fmt: skip
    if comparisons:
        result["comparisons"] = comparisons
    path = write_result(args.name, result)
    plot(groups, result_path(args.name, ".png"))
    print("\n".join(render(groups)))
    for (first, second), comparison in zip(args.compare, comparisons.values(), strict=True):  # one per pair (checked)
        print("\n" + "\n".join(render_comparison(first, second, comparison)))
    print(f"wrote {path} and {result_path(args.name, '.png')}")


if __name__ == "__main__":
    sys.exit(main())
