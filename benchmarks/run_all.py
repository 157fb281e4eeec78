"""Run every benchmark, then print their results as the Markdown tables of the README (`tables.py`).

python benchmarks/run_all.py                      # full runs: tens of minutes on a CPU + the real-data runs (hours)
python benchmarks/run_all.py --reference_dir /tmp/autosam_reference --reference_pythonpath /tmp/refdeps
                                                  # ... with the official AutoSAM code timed in the same run
python benchmarks/run_all.py --quick              # each benchmark at tiny sizes (what the test suite runs)
python benchmarks/run_all.py --device cuda --quick-gpu   # the GPU path in one command (< 8 minutes on one H100)
python benchmarks/run_all.py --device cpu --quick-gpu    # the same steps at tiny sizes on a CPU (~1-2 minutes)
python benchmarks/run_all.py --table [--quick | --device cuda --quick-gpu]   # only print the tables

`--device` is where inference and the loader benchmark run (`auto`: CUDA if there is one); the training script
picks CUDA by itself when there is one. Results go to benchmarks/results/ ($AUTOSAM_BENCHMARK_RESULTS).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import RESULTS_DIR, run_python
from tables import render_tables

HERE = Path(__file__).resolve().parent
# Benchmark → whether it takes --device and the reference options.
BENCHMARKS = {
    "bench_training.py": {"device": False, "reference": True},
    "bench_inference.py": {"device": True, "reference": True},
    "bench_loader.py": {"device": True, "reference": False},
    "bench_cache_precision.py": {"device": False, "reference": False},
    "bench_real_data.py": {"device": True, "reference": False},
}


def benchmark_arguments(script: str, args: argparse.Namespace) -> list[str]:
    takes = BENCHMARKS[script]
    arguments = [str(HERE / script), *(["--quick"] if args.quick else [])]
    if takes["device"]:
        arguments += ["--device", args.device]
    if takes["reference"] and args.reference_dir:
        arguments += ["--reference_dir", args.reference_dir]
        if args.reference_pythonpath:
            arguments += ["--reference_pythonpath", *args.reference_pythonpath]
    return arguments


def gpu_path_result(device: str) -> str:
    """The result file name `bench_gpu_path.py` writes for `device`."""
    return f"gpu_path_{device}" + ("_quick" if device == "cpu" else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--quick-gpu", "--quick_gpu", dest="quick_gpu", action="store_true")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--table", action="store_true", help="Only print the tables of existing results.")
    parser.add_argument("--reference_dir", help="A checkout of talshaharabany/AutoSAM, timed in the same run.")
    parser.add_argument("--reference_pythonpath", nargs="*", default=[], help="Folders only the reference imports.")
    args = parser.parse_args()
    if args.quick_gpu:
        device = args.device if args.device != "auto" else ("cuda" if _has_cuda() else "cpu")
        if not args.table:
            print(f"== bench_gpu_path.py --device {device}", flush=True)
            run_python([str(HERE / "bench_gpu_path.py"), "--device", device], timeout=3600)
        print(render_tables(gpu_path=gpu_path_result(device)))
        return
    if not args.table:
        for script in BENCHMARKS:
            started = time.perf_counter()
            run_python(benchmark_arguments(script, args), timeout=8 * 3600)
            print(f"== {script}: {time.perf_counter() - started:.0f} s", flush=True)
    print(f"<!-- from {RESULTS_DIR} -->")
    print(render_tables("_quick" if args.quick else ""))


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
