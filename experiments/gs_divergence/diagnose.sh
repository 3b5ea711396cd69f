#!/usr/bin/env bash
# experiments/gs_divergence/diagnose.sh: the evidence behind docs/global_selection.md, on the GPU
# machine. Usage: diagnose.sh OUT_DIR [SECONDS_PER_RUN]
#
# 1. The issue's command (tiny preset, K4V8-Shuffle at 256x8 and 512x16, vocab 8192, batch 32,
#    lr 1e-3, 20 epochs) without and with global selection, and with each of the authors'
#    settings on its own, every parameter's gradient norm logged (log_grad_norms); each run is cut
#    after SECONDS_PER_RUN seconds (its metrics.jsonl is complete up to there).
# 2. The gradients of the whole model with global selection against tools/torch_reference.py
#    (PyTorch, float64) on the same weights and batch: fresh models with k_long 128 and 512, direct
#    and FFT long conv, on the CPU and the GPU; and the trained checkpoints (steps 400 and 1200).
# 3. `mambagrad probe` at each checkpoint: per layer Δ, the gate silu(g), the decay, the output.
set -uo pipefail
out=${1:?usage: diagnose.sh OUT_DIR [SECONDS_PER_RUN]}
secs=${2:-40}
bin=${BIN:-build/mambagrad}
py=${PYTHON:-python3}
mkdir -p "$out"
runs=${RUNS_DIR:-/tmp/gsdiv}
rm -rf "$runs"; mkdir -p "$runs"

base=(--device cuda --model.preset tiny --task.variant k4v8-shuffle --task.grid '[[256,8],[512,16]]'
      --task.vocab_size 8192 --task.train_examples 10000 --task.test_variants '["k4v8-shuffle"]'
      --epochs 20 --batch_size 32 --lr 1e-3 --eval_every 1000 --log_every 50 --log_grad_norms true
      --checkpoint_every 400 --keep_checkpoints 20)
gs='{"enabled": true, "k_long": 128}'
train() { # name, extra flags...
    local name=$1; shift
    echo "== run $name: $*" | tee -a "$out/runs.log"
    timeout "$secs" "$bin" train "${base[@]}" --run_dir "$runs/$name" "$@" > "$runs/$name.log" 2>&1
    echo "   exit $? after $(grep -c '"kind":"train"' "$runs/$name/metrics.jsonl") logged steps" | tee -a "$out/runs.log"
    grep -E "^(warning|valid|error)" "$runs/$name.log" | head -20 | tee -a "$out/runs.log"
}
train plain
train gs128 --model.global_selection "$gs"
train gs128-k512 --model.global_selection '{"enabled": true, "k_long": 512}'
train gs128-lr8e-4 --model.global_selection "$gs" --lr 8e-4
train gs128-b108 --model.global_selection "$gs" --batch_size 108
train gs128-papercode --model.global_selection "$gs" --model.init paper-code
train gs128-clipnorm --model.global_selection "$gs" --clip_value 0 --clip_norm 1.0
train gs-authors --model.global_selection '{"enabled": true, "k_long": 512}' --lr 8e-4 --batch_size 108 \
      --epochs 30 --model.init paper-code
train plain-papercode --model.init paper-code

# 2 and 3: gradients against PyTorch float64, and what the layers computed
check() { # label, probe args...
    local label=$1; shift
    echo "== gradcheck $label: probe $*" | tee -a "$out/reference.log"
    "$bin" probe "$@" --dtype f64 --out "$runs/probe.safetensors" >> "$out/probes.log" 2>&1 || echo "probe failed" | tee -a "$out/reference.log"
    $py tools/torch_reference.py "$runs/probe.safetensors" --device cuda | tail -1 | tee -a "$out/reference.log"
}
fresh=(--model.preset tiny --task.variant k4v8-shuffle --task.grid '[[512,16]]' --task.vocab_size 8192 --batch 2)
for k in 128 512; do
    for mode in direct fft; do
        for dev in cpu cuda; do
            check "fresh k_long $k $mode $dev" "${fresh[@]}" --device $dev \
                --model.global_selection "{\"enabled\": true, \"k_long\": $k, \"mode\": \"$mode\"}"
        done
    done
done
for step in 400 1200; do
    ck=$(ls "$runs"/gs128/checkpoints/step_*"$step".safetensors 2>/dev/null | head -1)
    [ -n "$ck" ] || continue
    for dev in cpu cuda; do check "gs128 step $step $dev" --checkpoint "$ck" --device $dev --batch 2; done
    check "gs128 step $step cuda fft" --checkpoint "$ck" --device cuda --batch 2 --model.global_selection.mode fft
    # full detail of this checkpoint's comparison
    $py tools/torch_reference.py "$runs/probe.safetensors" --device cuda >> "$out/reference_detail.log" 2>&1
done
for name in plain gs128 gs128-k512 gs-authors; do
    for ck in "$runs/$name"/checkpoints/step_*.safetensors; do
        [ -f "$ck" ] || continue
        "$bin" probe --checkpoint "$ck" --device cuda --batch 8 >> "$out/layers_$name.log" 2>&1
    done
done
(cd "$runs" && tar czf "$out/metrics.tgz" */metrics.jsonl *.log)
