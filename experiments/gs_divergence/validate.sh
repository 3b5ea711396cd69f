#!/usr/bin/env bash
# experiments/gs_divergence/validate.sh: the command to the end (20 epochs), without and
# with global selection, several runs side by side on one GPU. Usage: validate.sh OUT_DIR
# [LIMIT_SECONDS] NAME='FLAGS' ...  Each NAME='FLAGS' is one run: the command plus FLAGS.
set -uo pipefail
out=${1:?usage: validate.sh OUT_DIR [LIMIT_SECONDS] NAME=FLAGS ...}; shift
limit=${1:-560}; shift
bin=${BIN:-build/mambagrad}
runs=${RUNS_DIR:-/tmp/gsval}
rm -rf "$runs"; mkdir -p "$runs" "$out"
base=(--device cuda --model.preset tiny --task.variant k4v8-shuffle --task.grid '[[256,8],[512,16]]'
      --task.vocab_size 8192 --task.train_examples 10000 --task.test_variants '["k4v8-shuffle"]'
      --epochs 20 --batch_size 32 --lr 1e-3 --eval_every 1000 --log_every 200 --log_grad_norms true)
for spec in "$@"; do
    name=${spec%%=*}; flags=${spec#*=}
    echo "== $name: $flags" | tee -a "$out/validate.log"
    eval "extra=($flags)"
    timeout "$limit" "$bin" train "${base[@]}" --run_dir "$runs/$name" "${extra[@]}" > "$runs/$name.log" 2>&1 &
done
wait
for spec in "$@"; do
    name=${spec%%=*}
    echo "== $name" >> "$out/validate.log"
    grep -vE "^epoch " "$runs/$name.log" | grep -v "^\s*$" | tail -25 >> "$out/validate.log"
done
(cd "$runs" && tar czf "$out/runs.tgz" */metrics.jsonl */config.json *.log)
