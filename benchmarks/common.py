"""What the benchmarks share: where the data is, random-weight SAM checkpoints of a given size, subprocess runs,
timing (median of repeats after a warm-up), the training script's command line and log, and result files.

Every timing figure here is wall-clock seconds; `timing_summary` turns a list of timed repeats into the figures the
tables show (median seconds per repeat, per image, images per second).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from transformers import SamConfig, SamModel

from autosam_hf.atomic_write import write_atomically
from autosam_hf.runtime import machine_summary
from benchmarks.process_group import run_command

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real data sets (`<set>/<split>/{images,masks}`): ../shared/data beside the repository, or $AUTOSAM_DATA_DIR
# (e.g. a copy of a few Kvasir images on a GPU machine that cannot see ../shared).
DATA_DIR = Path(os.environ.get("AUTOSAM_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")
RESULTS_DIR = Path(os.environ.get("AUTOSAM_BENCHMARK_RESULTS", REPO_ROOT / "benchmarks" / "results"))

# "vit_b": SAM ViT-B as released (transformers' SamConfig defaults). "small": a 4-layer ViT on a 256 canvas, for
# quick runs. "tiny_encoder": released SAM's prompt/mask shapes (C = 256, E = 64, 256² masks) around a 1-layer ViT,
# for runs that never call SAM's encoder (`--stage standalone`): g and h get their real sizes, the folder stays small.
# Random weights: speed does not depend on their values.
SAM_SIZES = {
    "vit_b": {},
    "tiny_encoder": dict(
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=1, global_attn_indexes=[0])
    ),
    "small": dict(
        vision_config=dict(
            hidden_size=192,
            num_hidden_layers=4,
            num_attention_heads=4,
            image_size=256,
            global_attn_indexes=[1, 3],
            window_size=8,
        ),
        prompt_encoder_config=dict(image_size=256),
    ),
}


def sam_checkpoint(size: str, root: Path | None = None) -> Path:
    """A transformers SAM folder with random weights (cached under the system temp dir; built in a temporary
    folder and renamed into place, so a killed build or a concurrent one never leaves a half-written checkpoint)."""
    folder = (root or Path(tempfile.gettempdir())) / f"autosam-bench-sam-{size}"
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        SamModel(SamConfig(**SAM_SIZES[size])).save_pretrained(staging)
        try:
            staging.rename(folder)
        except OSError:  # another process finished first: keep its copy
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def run_python(
    arguments: list[str],
    threads: int | None = None,
    timeout: int = 3600,
    env: Mapping[str, str] | None = None,
    *,
    in_process: bool = False,
) -> subprocess.CompletedProcess:
    """Run `python <arguments>` in a fresh process (isolated accelerate state, honest peak memory), with `env` added
    to this process's environment.

    A smoke run (`--quick`, the GPU path's CPU form) may pass `in_process=True`: `-m <module> ...` then runs here
    as `__main__` with `env` and `threads` set for the call only and its stdout captured (`timeout` bounds a new
    process only). A new process spends 5-8 s importing torch and transformers on a 2-core CPU, most of a smoke
    run, and the test suite runs dozens."""
    if in_process:
        return _run_module_here(arguments, threads, env)
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    if threads:
        environment["OMP_NUM_THREADS"] = str(threads)
    result = run_command([sys.executable, *arguments], env=environment, timeout=timeout, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result


def _run_module_here(
    arguments: Sequence[str], threads: int | None, env: Mapping[str, str] | None
) -> subprocess.CompletedProcess:
    if len(arguments) < 2 or arguments[0] != "-m":
        raise ValueError(f"run_python(in_process=True): {' '.join(arguments[:2])!r} is not `-m <module>`")
    from accelerate.state import AcceleratorState, GradientState

    # accelerate keeps one state per process (precision, device, accumulation): start the run from none, as a new
    # process would — the reset accelerate's own test suite does between cases.
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    saved = {name: os.environ.get(name) for name in (env or {})}
    threads_before, argv_before = torch.get_num_threads(), sys.argv
    os.environ.update(env or {})
    if threads:
        torch.set_num_threads(threads)
    stdout, status = io.StringIO(), 0
    sys.argv = [arguments[1], *arguments[2:]]
    try:
        with contextlib.redirect_stdout(stdout), warnings.catch_warnings():
            # runpy warns when the module was imported before (e.g. by `benchmarks.run_all`); it runs anew anyway.
            warnings.simplefilter("ignore", RuntimeWarning)
            runpy.run_module(arguments[1], run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        if not isinstance(exit.code, int | None):
            print(exit.code, file=sys.stderr)
    finally:
        sys.argv = argv_before
        torch.set_num_threads(threads_before)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    if status:
        raise RuntimeError(f"python {' '.join(arguments)} exited with status {status}:\n{stdout.getvalue()[-2000:]}")
    return subprocess.CompletedProcess([sys.executable, *arguments], 0, stdout.getvalue(), "")


def run_training(
    arguments: Sequence[str],
    *,
    in_process: bool = False,
    threads: int | None = None,
    timeout: int = 3600,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run `python -m autosam_hf.train ...` (`arguments` begin with `-m autosam_hf.train`, as recorded in results),
    in a fresh process or, for a smoke run, here (`run_python`'s `in_process`)."""
    if list(arguments[:2]) != ["-m", "autosam_hf.train"]:
        raise ValueError(f"run_training: {' '.join(arguments[:2])!r} is not the training script")
    run_python(list(arguments), threads=threads, timeout=timeout, env=env, in_process=in_process)


def run_python_json(
    arguments: list[str],
    threads: int | None = None,
    timeout: int = 3600,
    env: Mapping[str, str] | None = None,
    *,
    in_process: bool = False,
) -> dict:
    """`run_python`, for a benchmark step that prints its result as one JSON line last."""
    output = run_python(arguments, threads=threads, timeout=timeout, env=env, in_process=in_process).stdout
    return json.loads(output.strip().splitlines()[-1])


def result_path(name: str, suffix: str = ".json") -> Path:
    """`RESULTS_DIR/<experiment>/<run><suffix>` of a result named `<experiment>/<run>` (e.g. `real_data_224/seed1`:
    the experiment is the benchmark or study, the run one setting, seed or machine of it)."""
    experiment, slash, run = name.partition("/")
    if not slash or not experiment or not run or "/" in run:
        raise ValueError(f"result name {name!r}: expected EXPERIMENT/RUN, e.g. training/latest")
    return RESULTS_DIR / experiment / f"{run}{suffix}"


def default_result_name(experiment: str, quick: bool = False) -> str:
    """What a benchmark writes without `--name`: `<experiment>/quick` for its smoke run, else `<experiment>/latest`
    (the pages in docs/benchmarks read the runs named in tables.py, so a new run replaces none by accident)."""
    return f"{experiment}/{'quick' if quick else 'latest'}"


def write_result(name: str, result: dict) -> Path:
    """`result_path(name)`, written atomically (a killed run never leaves half a file)."""
    path = result_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda temporary: temporary.write_text(json.dumps(result, indent=2)))
    return path


def machine() -> str:
    """The machine every figure must name: CPU model, vector ISA, native bf16 or not, threads, torch (and GPU)."""
    return machine_summary()


# ---------------------------------------------------------------------------------------------- Kvasir-SEG
def kvasir_test_images(count: int) -> list:
    """The first `count` Kvasir-SEG test images (PIL RGB, file-name order): what the timed benchmarks feed."""
    from PIL import Image

    paths = sorted((DATA_DIR / "kvasir" / "test" / "images").iterdir())[:count]
    return [Image.open(path).convert("RGB") for path in paths]


def kvasir_split(split: str, count: int):
    """The first `count` rows of a Kvasir-SEG split (`datasets.Dataset`; only those are read), all of them there."""
    from autosam_hf.data import load_preset_dataset

    rows = load_preset_dataset("kvasir", split, DATA_DIR / "kvasir", max_samples=count)
    if len(rows) < count:
        raise ValueError(f"{count} images asked for; the Kvasir {split} split holds {len(rows)}")
    return rows


# ---------------------------------------------------------------------------------------------- timing
def synchronizer(device: str | torch.device) -> Callable[[], None]:
    """What makes a wall-clock reading include the queued GPU work: `torch.cuda.synchronize` on CUDA, else nothing."""
    if torch.device(device).type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def time_repeats(
    run: Callable[[], object], repeats: int = 3, warmup: int = 1, device: str | torch.device = "cpu"
) -> list[float]:
    """Seconds of each of `repeats` calls of `run`, after `warmup` untimed calls (first-call allocations, kernel
    selection, cuDNN autotuning)."""
    synchronize = synchronizer(device)
    for _ in range(warmup):
        run()
    synchronize()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        synchronize()
        seconds.append(time.perf_counter() - started)
    return seconds


def timing_summary(seconds: Sequence[float], images_per_repeat: int) -> dict:
    """The figures of a list of timed repeats, each of which handled `images_per_repeat` images:
    `seconds` (every repeat), `seconds_per_repeat` (their median), `seconds_per_image` and `images_per_second`
    (from the median)."""
    median = statistics.median(seconds)
    return {
        "seconds": list(seconds),
        "seconds_per_repeat": median,
        "seconds_per_image": median / images_per_repeat,
        "images_per_second": images_per_repeat / median,
    }


# ---------------------------------------------------------------------------------------------- training script
def training_command(
    sam_dir: Path,
    output_dir: Path,
    *,
    train_images: int,
    eval_images: int,
    steps: int,
    batch_size: int,
    prompt_size: int,
    flags: Sequence[str] = (),
) -> list[str]:
    """`python -m autosam_hf.train` arguments: the prompt stage on the first Kvasir train images, one augmentation
    view, no overlays and no checkpoint unless `flags` ask for one."""
    return [
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
        str(train_images),
        "--max_eval_samples",
        str(eval_images),
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


def read_train_log(output_dir: Path, steps_only: bool = True) -> list[dict]:
    """The records of a run's `train_log.jsonl`: the optimizer steps' (loss, lr, seconds since the stage started),
    or with `steps_only=False` the validation records between them too."""
    lines = (Path(output_dir) / "train_log.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if not steps_only or "loss" in record]


def step_seconds(output_dir: Path) -> list[float]:
    """Seconds of each optimizer step but the first (its time includes the warm-up and the first batch's loading),
    from the training script's own log."""
    seconds = [record["seconds"] for record in read_train_log(output_dir)]
    return [later - earlier for earlier, later in itertools.pairwise(seconds)]


def training_figures(output_dir: Path, batch_size: int) -> dict:
    """A training run's speed from its own log: the median step after the first (`step_seconds`), per step, per
    image and as images/s, and the embedding cache build time from `all_results.json` (None without a cache)."""
    step = statistics.median(step_seconds(output_dir))
    results = json.loads((Path(output_dir) / "all_results.json").read_text())
    return {
        "seconds_per_step": step,
        "seconds_per_image": step / batch_size,
        "images_per_second": batch_size / step,
        "cache_build_seconds": results.get("embedding_cache_seconds"),
    }
