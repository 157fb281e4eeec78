#!/bin/bash
# Several `benchmarks.bench_real_data` runs side by side on one GPU, each its own process: a 1,000-step run at batch
# 8 keeps an H200 mostly idle, so seven at once finish in about the time of two in a row. Seconds per step measured
# this way are shared, not one run's speed; the learning curves and test scores are unaffected.
#
#   bash benchmarks/side_by_side.sh <<'JOBS'
#   224 42 pipeline:default real_data_224_gpu/default_seed42
#   224 42 minimal:unet real_data_224_gpu/unet_seed42
#   JOBS
#
# One job per line: g's input side, seed, model (bench_real_data --models), result name (EXPERIMENT/RUN). PARALLEL
# (default 7) runs at once; a job that would start within 90 s of BUDGET seconds (default: none) is skipped, and a
# running one is stopped at it. Logs go to $RESULTS/logs/<EXPERIMENT>_<RUN>.log (RESULTS: AUTOSAM_BENCHMARK_RESULTS or
# benchmarks/results). Run from anywhere: it starts in the repository root, as `python -m benchmarks...` needs.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${AUTOSAM_BENCHMARK_RESULTS:-benchmarks/results}
mkdir -p "$RESULTS/logs"
export RESULTS DEADLINE=$(( $(date +%s) + ${BUDGET:-1000000000} ))
job() {
  local remaining=$(( DEADLINE - $(date +%s) )) started=$(date +%s) status=0
  if (( remaining < 90 )); then echo "$4: skipped (budget)"; return; fi
  timeout "$remaining" python -m benchmarks.bench_real_data --device cuda --steps 1000 --threads 2 \
    --input_size "$1" --seed "$2" --models "$3" --name "$4" > "$RESULTS/logs/${4//\//_}.log" 2>&1 || status=$?
  echo "$4: exit $status after $(( $(date +%s) - started )) s"
}
export -f job
xargs -P "${PARALLEL:-7}" -L 1 bash -c 'job "$@"' _
