"""What the benchmarks share: random-weight SAM checkpoints of a given size, subprocess runs, result files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from process_group import run_command
from transformers import SamConfig, SamModel

from autosam_hf.atomic_write import write_atomically
from autosam_hf.runtime import machine_summary

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
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


def run_python(arguments: list[str], threads: int | None = None, timeout: int = 3600) -> subprocess.CompletedProcess:
    """Run `python <arguments>` in a fresh process (isolated accelerate state, honest peak memory)."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if threads:
        environment["OMP_NUM_THREADS"] = str(threads)
    result = run_command([sys.executable, *arguments], env=environment, timeout=timeout, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result


def write_result(name: str, result: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    write_atomically(path, lambda temporary: temporary.write_text(json.dumps(result, indent=2)))
    return path


def machine() -> str:
    """The machine every figure must name: CPU model, vector ISA, native bf16 or not, threads, torch (and GPU)."""
    return machine_summary()
