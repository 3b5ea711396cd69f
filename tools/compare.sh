#!/usr/bin/env bash
# tools/compare.sh (make compare): the paper's contrast on our engine. Trains the Mamba and the
# Transformer (GPT-NeoX) of the same width and depth (d_model 64, 2 layers) on Standard MQAR, then
# prints the mean query accuracy of each on the test split of Standard, Last and Shuffle, side by
# side. Each model at the learning rate it trains well at (Mamba 1e-2, Transformer 1e-3); both stop
# at 99% validation accuracy. The GPU when one is visible, else the CPU (about 20 s on 2 cores).
# Extra train flags for both runs: COMPARE_ARGS='--task.grid 64x4 --epochs 8' make compare
set -euo pipefail
bin=${BIN:-build/mambagrad}
out=${COMPARE_DIR:-runs/compare}
mkdir -p "$out"
common=(--task.grid 16x2 --task.vocab_size 32 --task.train_examples 8192 --task.valid_examples 100
        --task.test_examples 200 --task.test_variants '["standard","last","shuffle"]' --batch_size 32 --epochs 4
        --eval_every 32 --target_accuracy 0.99 --log_every 64 --model.d_model 64 --model.n_layer 2)
# shellcheck disable=SC2206
extra=(${COMPARE_ARGS:-})
"$bin" train --run_dir "$out/mamba" --lr 1e-2 "${common[@]}" "${extra[@]}" > "$out/mamba.log" 2>&1
"$bin" train --run_dir "$out/transformer" --model.arch transformer --lr 1e-3 "${common[@]}" "${extra[@]}" \
    > "$out/transformer.log" 2>&1
printf '\nquery accuracy (%%), test split, mean over cells (logs: %s/*.log)\n' "$out"
printf '%-13s %9s %9s %9s   %s\n' model standard last shuffle "trained"
for m in mamba transformer; do
    mean=$(grep -E '^mean ' "$out/$m.log" | tail -1 | awk '{print $2, $3, $4}')
    steps=$(grep -E '^trained ' "$out/$m.log" | tail -1 | sed -E 's/^trained ([0-9]+) steps.* in ([0-9.]+ s).*/\1 steps, \2/')
    read -r s l h <<< "$mean"
    printf '%-13s %9s %9s %9s   %s\n' "$m" "$s" "$l" "$h" "$steps"
done
