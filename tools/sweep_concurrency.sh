#!/usr/bin/env bash
# tools/sweep_concurrency.sh OUT_DIR [JOBS...]: how many runs at once give the most runs per hour
# on this GPU (issue "Reproduce", the sweep runner's default `jobs`). Runs the eight identical
# short runs of experiments/concurrency/probe.json with `mambagrad sweep --jobs J` for each J
# (default 1 2 4 8; PROBE=FILE another experiment), each into a scratch folder, and prints one line per J: the wall time of the
# eight, runs per hour, and the speedup over J = 1. Logs and rows under OUT_DIR.
set -uo pipefail
out=${1:?usage: sweep_concurrency.sh OUT_DIR [JOBS...]}
shift
bin=${BIN:-build/mambagrad}
probe=${PROBE:-experiments/concurrency/probe.json}
jobs_list=("$@")
[ ${#jobs_list[@]} -eq 0 ] && jobs_list=(1 2 4 8)
mkdir -p "$out"
base=""
for j in "${jobs_list[@]}"; do
    scratch=$(mktemp -d)
    start=$(date +%s.%N)
    "$bin" sweep "$probe" --jobs "$j" --runs "$scratch/runs" --results "$out/rows_j$j" \
        > "$out/sweep_j$j.log" 2>&1
    rc=$?
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    rows=$(cat "$out/rows_j$j"/*.jsonl 2>/dev/null | wc -l)
    per_hour=$(awk -v r="$rows" -v s="$secs" 'BEGIN { printf "%.1f", r * 3600 / s }')
    [ -z "$base" ] && base=$per_hour
    speedup=$(awk -v p="$per_hour" -v b="$base" 'BEGIN { printf "%.2f", (b > 0 ? p / b : 0) }')
    echo "jobs $j: $rows runs in $secs s (exit $rc), $per_hour runs/hour, ${speedup}x jobs ${jobs_list[0]}" | tee -a "$out/concurrency.txt"
    rm -rf "$scratch"
done
