"""The benchmarks, run from the repository root as `python -m benchmarks.<script>` (e.g. `benchmarks.run_all`).

Results go to `benchmarks/results/<experiment>/<run>.json`; `python -m benchmarks.tables --write` turns them into
the pages under `docs/benchmarks/`.
"""
