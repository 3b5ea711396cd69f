#!/usr/bin/env bash
# experiments/gs_divergence/trace.sh: one run of the issue's command (plus FLAGS) with a checkpoint
# every 200 steps, cut after SECONDS; then `mambagrad probe` on each checkpoint (per layer: dt,
# the gate, Δ, the slowest decay, the output), to see which layer and quantity grows first.
# Usage: trace.sh OUT_DIR SECONDS NAME='FLAGS'
set -uo pipefail
out=${1:?usage: trace.sh OUT_DIR SECONDS NAME=FLAGS}; secs=${2:?}; spec=${3:?}
bin=${BIN:-build/mambagrad}
runs=${RUNS_DIR:-/tmp/gstrace}
name=${spec%%=*}; flags=${spec#*=}
rm -rf "$runs/$name"; mkdir -p "$runs" "$out"
eval "extra=($flags)"
timeout "$secs" "$bin" train --device cuda --model.preset tiny --task.variant k4v8-shuffle \
    --task.grid '[[256,8],[512,16]]' --task.vocab_size 8192 --task.train_examples 10000 \
    --task.test_variants '["k4v8-shuffle"]' --epochs 20 --batch_size 32 --lr 1e-3 --eval_every 1000 \
    --log_every 50 --log_grad_norms true --checkpoint_every 200 --keep_checkpoints 100 \
    --run_dir "$runs/$name" "${extra[@]}" > "$runs/$name.log" 2>&1
echo "$name: exit $? after $(grep -c '"kind":"train"' "$runs/$name/metrics.jsonl") logged steps" | tee "$out/trace_$name.log"
for ck in "$runs/$name"/checkpoints/step_*.safetensors; do
    [ -f "$ck" ] || continue
    echo "== $ck" >> "$out/trace_$name.log"
    "$bin" probe --checkpoint "$ck" --device cuda --batch 8 >> "$out/trace_$name.log" 2>&1
done
(cd "$runs" && tar czf "$out/trace_$name.tgz" "$name/metrics.jsonl" "$name.log")
