"""Run every benchmark, then print their results as Markdown tables (`benchmarks.tables`).

python -m benchmarks.run_all                      # full runs: tens of minutes on a CPU + the real-data runs (hours)
python -m benchmarks.run_all --reference_dir /tmp/autosam_reference --reference_pythonpath /tmp/refdeps
                                                  # ... with the official AutoSAM code timed in the same run
python -m benchmarks.run_all --quick              # each benchmark at tiny sizes (what the test suite runs)
python -m benchmarks.run_all --device cuda --quick-gpu   # the GPU path in one command (< 8 minutes on one H100)
python -m benchmarks.run_all --device cpu --quick-gpu    # the same steps at tiny sizes on a CPU (~1-2 minutes)
                                                  # (--quick-gpu then also runs benchmarks.bench_throughput)
python -m benchmarks.run_all --table [--quick | --device cuda --quick-gpu]   # only print the tables

`--device` is where inference and the loader benchmark run (`auto`: CUDA if there is one); the training script
picks CUDA by itself when there is one. Results go to benchmarks/results/<benchmark>/latest.json (quick.json with
--quick; the folder: $AUTOSAM_BENCHMARK_RESULTS); the pages in docs/benchmarks read the runs named in their templates.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from benchmarks.bench_encoder import markdown as encoder_table
from benchmarks.bench_encoder import result_name as encoder_result
from benchmarks.bench_gpu_path import result_name as gpu_path_result
from benchmarks.bench_throughput import markdown as throughput_table
from benchmarks.bench_throughput import result_name as throughput_result
from benchmarks.common import RESULTS_DIR, result_path, run_python
from benchmarks.tables import render_tables

# Benchmark module → whether it takes --device and the reference options.
BENCHMARKS = {
    "benchmarks.bench_training": {"device": False, "reference": True},
    "benchmarks.bench_inference": {"device": True, "reference": True},
    "benchmarks.bench_loader": {"device": True, "reference": False},
    "benchmarks.bench_cache_precision": {"device": False, "reference": False},
    "benchmarks.bench_real_data": {"device": True, "reference": False},
}


def benchmark_arguments(script: str, args: argparse.Namespace) -> list[str]:
    takes = BENCHMARKS[script]
    arguments = ["-m", script, *(["--quick"] if args.quick else [])]
    if takes["device"]:
        arguments += ["--device", args.device]
    if takes["reference"] and args.reference_dir:
        arguments += ["--reference_dir", args.reference_dir]
        if args.reference_pythonpath:
            arguments += ["--reference_pythonpath", *args.reference_pythonpath]
    return arguments


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
            print(f"== benchmarks.bench_gpu_path --device {device}", flush=True)
            # On a CPU the GPU path is a smoke run at tiny sizes: in this process, as --quick runs are.
            run_python(
                ["-m", "benchmarks.bench_gpu_path", "--device", device], timeout=3600, in_process=device == "cpu"
            )
            # The batched paths' throughput, FLOPs against the bf16 peak and stage shares (issue 32).
            print(f"== benchmarks.bench_throughput --device {device}", flush=True)
            run_python(
                ["-m", "benchmarks.bench_throughput", "--device", device], timeout=1800, in_process=device == "cpu"
            )
            # SAM's encoder by attention kernel, with and without torch.compile.
            print(f"== benchmarks.bench_encoder --device {device}", flush=True)
            run_python(["-m", "benchmarks.bench_encoder", "--device", device], timeout=1200, in_process=device == "cpu")
        print(render_tables(gpu_path=gpu_path_result(device)))
        throughput = result_path(throughput_result(device))
        if throughput.is_file():
            print(throughput_table(json.loads(throughput.read_text())))
        encoder = result_path(encoder_result(device))
        if encoder.is_file():
            print(encoder_table(json.loads(encoder.read_text())))
        return
    if not args.table:
        for script in BENCHMARKS:
            started = time.perf_counter()
            run_python(benchmark_arguments(script, args), timeout=8 * 3600, in_process=args.quick)
            print(f"== {script}: {time.perf_counter() - started:.0f} s", flush=True)
    print(f"<!-- from {RESULTS_DIR} -->")
    print(render_tables("quick" if args.quick else "latest"))


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
