"""The GPU path in one command: train (cached and `--no_cache`), resume, evaluate, infer and load data, timed.

    python -m benchmarks.run_all --device cuda --quick-gpu   # one GPU, within 8 minutes (bare machine, see below)
    python -m benchmarks.run_all --device cpu --quick-gpu    # the same steps at tiny sizes: ~1-2 minutes, tested

Parts (each in a fresh process, as a user runs them; figures from the programs' own logs or a timer around them):
  - `training`: `autosam_hf.train --stage prompt` with SAM's embeddings cached and with `--no_cache`, same images,
    batch and steps; images/s = batch / median step time after the first step (the training script's
    `train_log.jsonl`, loading included), and `cached_to_no_cache`, the ratio of the two (goal on one H100: 30).
  - `resume`: the cached run again, stopped after half its steps (`--stop_after_steps`), then resumed
    (`--resume_from_checkpoint latest`); its losses must equal the uninterrupted run's at every step, within
    `LOSS_TOLERANCE` (relative; GPU kernels are not bit-reproducible across processes).
  - `evaluation`: `python -m autosam_hf.evaluation` (autosam-eval) on the trained folder, a few Kvasir test
    images, modes autosam and surrogate: its Dice/IoU (random SAM weights: only that it runs) and wall seconds.
  - `inference`: `bench_inference.py`'s per-mode measurement (autosam, surrogate, sam_point; batch 1; median of 3
    images after a warm-up), images/s, in the training precision.
  - `loader`: `bench_loader.py`: cache build images/s (SAM's encoder at this size), the DataLoader's images/s
    (0/1/2/default workers) and the cached step's images/s, and their ratio (target >= 2).
Sizes: on CUDA the released shapes (SAM vit_b, g = HarDNet-85 at 352, batch 8, bf16); on CPU tiny ones (the small
SAM, g at 64, batch 2, fp32) so that the same code path is tested in a minute or two.

On a bare GPU machine: install this package's dependencies (`pip install -e .` or wheels), copy a few Kvasir
images as `<root>/kvasir/{train,val,test}/{images,masks}` and set `AUTOSAM_DATA_DIR=<root>` (train needs 80, val 8,
test 4, for the CUDA sizes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import transformers

from autosam_hf.runtime import describe_machine
from benchmarks.common import (
    DATA_DIR,
    machine,
    read_train_log,
    run_python,
    run_python_json,
    sam_checkpoint,
    training_command,
    training_figures,
    write_result,
)

LOSS_TOLERANCE = {"cuda": 5e-3, "cpu": 1e-5}  # relative difference of a resumed run's losses


@dataclass(frozen=True)
class Sizes:
    """What one GPU-path run trains and measures."""

    sam: str
    prompt_size: int
    batch_size: int
    steps: int
    eval_images: int
    test_images: int
    loader_images: int
    mixed_precision: str
    inference_precision: str

    @property
    def train_images(self) -> int:
        return self.batch_size * self.steps  # one epoch


SIZES = {
    "cuda": Sizes("vit_b", 352, 8, 10, 8, 4, 128, "bf16", "bf16"),
    "cpu": Sizes("small", 64, 2, 4, 2, 2, 8, "no", "fp32"),
}


class Workspace:
    """Runs of the training script under one folder, sharing one embedding cache folder (keyed by SAM's weights,
    the processor and the augmentation, so every cached run reuses what the first built)."""

    def __init__(self, root: Path, sizes: Sizes, environment: dict[str, str], in_process: bool = False):
        self.root, self.sizes, self.environment = root, sizes, environment
        self.in_process = in_process  # the CPU form, a smoke run: every step in this process (`run_python`)
        self.sam_dir = sam_checkpoint(sizes.sam)

    def train(self, name: str, *flags: str) -> Path:
        """One run of the training script (the prompt stage, one epoch) into `<root>/<name>`; returns that folder."""
        output_dir = self.root / name
        sizes = self.sizes
        cache = [] if "--no_cache" in flags else ["--cache_dir", str(self.root / "embedding_cache")]
        command = training_command(
            self.sam_dir,
            output_dir,
            train_images=sizes.train_images,
            eval_images=sizes.eval_images,
            steps=sizes.steps,
            batch_size=sizes.batch_size,
            prompt_size=sizes.prompt_size,
            flags=["--mixed_precision", sizes.mixed_precision, *cache, *flags],
        )
        run_python(command, env=self.environment, timeout=1800, in_process=self.in_process)
        return output_dir


def measure_training(workspace: Workspace) -> dict:
    """Cached and `--no_cache` training runs: images/s of each and cached / no-cache."""
    batch_size = workspace.sizes.batch_size
    cached = training_figures(workspace.train("cached"), batch_size)
    no_cache = training_figures(workspace.train("no_cache", "--no_cache"), batch_size)
    return {
        "cached": cached,
        "no_cache": no_cache,
        "cached_to_no_cache": cached["images_per_second"] / no_cache["images_per_second"],
    }


def measure_resume(workspace: Workspace, device: str) -> dict:
    """Stop the cached run half-way, resume it, and compare its losses with the uninterrupted run's."""
    stop = workspace.sizes.steps // 2
    workspace.train("resumed", "--stop_after_steps", str(stop))
    resumed_dir = workspace.train("resumed", "--resume_from_checkpoint", "latest")
    uninterrupted = {r["step"]: r["loss"] for r in read_train_log(workspace.root / "cached")}
    resumed = {r["step"]: r["loss"] for r in read_train_log(resumed_dir)}
    if sorted(resumed) != sorted(uninterrupted):
        raise AssertionError(f"the resumed run logged steps {sorted(resumed)}, not {sorted(uninterrupted)}")
    differences = [abs(resumed[step] - loss) / max(abs(loss), 1e-12) for step, loss in uninterrupted.items()]
    tolerance = LOSS_TOLERANCE[device]
    return {
        "stopped_after_step": stop,
        "steps": len(uninterrupted),
        "max_relative_loss_difference": max(differences),
        "tolerance": tolerance,
        "losses_match": max(differences) <= tolerance,
    }


def measure_evaluation(workspace: Workspace, device: str) -> dict:
    """autosam-eval on the cached run's folder: its metrics per mode and its wall seconds."""
    output_dir = workspace.root / "eval"
    started = time.perf_counter()
    run_python(
        [
            "-m",
            "autosam_hf.evaluation",  # autosam-eval
            "--model",
            str(workspace.root / "cached"),
            "--preset",
            "kvasir",
            "--data",
            str(DATA_DIR / "kvasir"),
            "--max_samples",
            str(workspace.sizes.test_images),
            "--mode",
            "autosam",
            "surrogate",
            "--device",
            device,
            "--output_dir",
            str(output_dir),
            "--quiet",
        ],
        env=workspace.environment,
        timeout=900,
        in_process=workspace.in_process,
    )
    seconds = time.perf_counter() - started
    report = json.loads((output_dir / "eval_results.json").read_text())
    return {"images": workspace.sizes.test_images, "seconds": seconds, "results": report["results"]}


def measure_inference(workspace: Workspace, device: str) -> dict:
    """Per-mode inference images/s (bench_inference.py's measurement, batch 1) in the inference precision."""
    precision = workspace.sizes.inference_precision
    command = [
        "-m",
        "benchmarks.bench_inference",
        "--device",
        device,
        "--prompt_size",
        str(workspace.sizes.prompt_size),
    ]
    command += ["--measure", str(workspace.sam_dir), precision]
    return {
        "precision": precision,
        "modes": run_python_json(command, env=workspace.environment, timeout=900, in_process=workspace.in_process),
    }


def measure_loader(workspace: Workspace, device: str) -> dict:
    """bench_loader.py at these sizes: cache build, loader and cached-step images/s."""
    sizes = workspace.sizes
    command = [
        "-m",
        "benchmarks.bench_loader",
        "--device",
        device,
        "--mixed_precision",
        sizes.mixed_precision,
        "--sam",
        sizes.sam,
        "--prompt_size",
        str(sizes.prompt_size),
        "--batch_size",
        str(sizes.batch_size),
        "--images",
        str(sizes.loader_images),
        "--print_only",
    ]
    return run_python_json(command, env=workspace.environment, timeout=900, in_process=workspace.in_process)


def result_name(device: str) -> str:
    """What a run on `device` writes: on a CPU the steps run at their tiny sizes, a smoke run."""
    return "gpu_path/quick" if device == "cpu" else f"gpu_path/{device}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=sorted(SIZES), default="cuda")
    parser.add_argument("--name", help="Result EXPERIMENT/RUN (default gpu_path/cuda; gpu_path/quick on a CPU).")
    args = parser.parse_args()
    sizes = SIZES[args.device]
    # The training script picks CUDA by itself when there is one; ACCELERATE_USE_CPU keeps the CPU form on the CPU.
    environment = {"ACCELERATE_USE_CPU": "1"} if args.device == "cpu" else {}
    result = {
        "machine": machine(),
        "machine_details": describe_machine(),
        "transformers": transformers.__version__,
        "device": args.device,
        **asdict(sizes),
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        workspace = Workspace(Path(root), sizes, environment, in_process=args.device == "cpu")
        parts = {
            "training": lambda: measure_training(workspace),
            "resume": lambda: measure_resume(workspace, args.device),
            "evaluation": lambda: measure_evaluation(workspace, args.device),
            "inference": lambda: measure_inference(workspace, args.device),
            "loader": lambda: measure_loader(workspace, args.device),
        }
        for name, measure in parts.items():
            part_started = time.perf_counter()
            try:
                result[name] = measure()
            except Exception as error:  # one broken part must not hide the figures of the others
                result[name] = {"error": f"{type(error).__name__}: {str(error)[-3000:]}"}
            result[name]["wall_seconds"] = time.perf_counter() - part_started
            print(f"{name}: {json.dumps(result[name])}", flush=True)
    result["wall_seconds"] = time.perf_counter() - started
    write_result(args.name or result_name(args.device), result)
    failed = [name for name in parts if "error" in result[name]]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
