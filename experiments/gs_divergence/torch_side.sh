#!/usr/bin/env bash
# experiments/gs_divergence/torch_side.sh: the independent PyTorch implementation
# (tools/torch_train.py) trained on the issue's task from our initial weights, with global
# selection (k_long 128, the authors' silu gate). Usage: torch_side.sh OUT_DIR LIMIT_SECONDS
set -uo pipefail
out=${1:?usage: torch_side.sh OUT_DIR LIMIT_SECONDS}; limit=${2:-500}
bin=${BIN:-build/mambagrad}
task=(--task.variant k4v8-shuffle --task.grid '[[256,8],[512,16]]' --task.vocab_size 8192)
"$bin" data --out /tmp/k4v8_train.jsonl --variant k4v8-shuffle --grid '[[256,8],[512,16]]' --vocab_size 8192 \
    --examples 10000 > /dev/null
"$bin" probe --model.preset tiny "${task[@]}" --model.global_selection '{"enabled": true, "k_long": 128, "gate": "silu"}' \
    --device cuda --batch 1 --out /tmp/init_gs128.safetensors > /dev/null
PYTHONUNBUFFERED=1 timeout "$limit" python3 tools/torch_train.py /tmp/init_gs128.safetensors /tmp/k4v8_train.jsonl \
    --steps 12520 --total_steps 12520 --batch 32 --lr 1e-3 --device cuda --log_every 50 \
    --log "$out/torch_gs128.jsonl" > "$out/torch_gs128.log" 2>&1
echo "torch side: exit $? after $(wc -l < "$out/torch_gs128.jsonl") logged rows"
