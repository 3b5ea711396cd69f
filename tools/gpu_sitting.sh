#!/usr/bin/env bash
# tools/gpu_sitting.sh OUT_DIR STEP...: the GPU machine's work of one sitting, in as few device
# calls as possible (the device tool runs one command over a copy of the tree and returns only
# what is under $OUT). Binaries come prebuilt (BIN, TESTS; see the closing notes for packing).
# Steps, run in the order given, each logging under OUT_DIR:
#   tests             the whole suite (CUDA cases included)            -> tests.log
#   tests-bg          the same, started in the background (nice) so that the steps after it run
#                     beside it (a short sitting: the suite and gs-inputs in one call); the
#                     script waits for it before it ends                   -> tests.log
#   gpu-check         tools/gpu_check.sh: the CUDA suite under compute-sanitizer's four tools
#                                                                      -> gpu-check/*.log
#   concurrency       tools/sweep_concurrency.sh (sets the experiments' jobs)
#                                                                      -> concurrency/
#   bench-attention   bench/bench_attention.py (ours beside PyTorch's SDPA)  -> bench_attention.log/.jsonl
#   bench-transformer bench/bench_train.py --config zoology --arch transformer (60 s a side)
#                                                                      -> bench_transformer.log
#   bench-tf32:SECS   bench/bench_train.py --config large --precision fp32,tf32 --skip-torch, SECS a
#                     side (issue 19: the GEMM-bound config, ours in fp32 and in TF32)
#                                                                      -> bench_tf32.log
#   bench-train:CONFIG:PRECISIONS:SECS   bench/bench_train.py --config CONFIG (zoology, tiny,
#                     130m, large) --precision PRECISIONS (e.g. fp32,tf32), SECS a side, both sides
#                     (issue 19's workloads)                           -> bench_train_CONFIG.log
#   trace:SECS        experiments/gs_divergence/trace.sh with the sigmoid gate (issue 22)
#                                                                      -> trace/
#   gs-inputs:SECS    experiments/gs_divergence/validate.sh, side by side: plain, and the sigmoid
#                     gate with gate_input normalized, detached, and both normalized + silu
#                     (issue 22, docs/global_selection.md §6)          -> gs-inputs/
#   sweep:NAME:SECS   mambagrad sweep experiments/NAME.json for at most SECS seconds; then SIGTERM
#                     (the sweep passes it on; runs in flight checkpoint, but the checkpoints stay
#                     on the GPU machine and are lost with it: size SECS so that runs finish). The
#                     rows of finished runs come back in results/NAME.jsonl: append them to
#                     experiments/results/NAME.jsonl here and commit them at once.
# Example: tools/gpu_sitting.sh "$OUT" tests concurrency sweep:positional:420
#          tools/gpu_sitting.sh "$OUT" tests-bg gs-inputs:300 bench-attention   (a short sitting)
set -uo pipefail
out=${1:?usage: gpu_sitting.sh OUT_DIR STEP...}
shift
bin=${BIN:-build/mambagrad}
tests=${TESTS:-build/mg_tests}
mkdir -p "$out"
bg_pids=()
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
for step in "$@"; do
    echo "== $step ($(date -u +%H:%M:%S))" | tee -a "$out/steps.log"
    case $step in
        tests)
            "$tests" > "$out/tests.log" 2>&1
            tail -n 1 "$out/tests.log" | tee -a "$out/steps.log" ;;
        tests-bg)
            (nice -n 10 "$tests" > "$out/tests.log" 2>&1
             echo "tests (background, ended $(date -u +%H:%M:%S)): $(tail -n 1 "$out/tests.log")" >> "$out/steps.log") &
            bg_pids+=($!) ;;
        gpu-check)
            tools/gpu_check.sh "$tests" "$out/gpu-check" | tee -a "$out/steps.log" ;;
        concurrency)
            BIN=$bin tools/sweep_concurrency.sh "$out/concurrency" | tee -a "$out/steps.log" ;;
        bench-attention)
            python3 bench/bench_attention.py --bin "${BENCH:-build/bench_ops}" --json "$out/bench_attention.jsonl" \
                > "$out/bench_attention.log" 2>&1
            tail -n 12 "$out/bench_attention.log" | tee -a "$out/steps.log" ;;
        bench-transformer)
            python3 bench/bench_train.py --config zoology --arch transformer --bin "$bin" --time-limit 60 \
                > "$out/bench_transformer.log" 2>&1
            tail -n 4 "$out/bench_transformer.log" | tee -a "$out/steps.log" ;;
        bench-tf32:*)
            secs=${step#bench-tf32:}
            python3 bench/bench_train.py --config large --precision fp32,tf32 --skip-torch --bin "$bin" \
                --time-limit "$secs" > "$out/bench_tf32.log" 2>&1
            tail -n 5 "$out/bench_tf32.log" | tee -a "$out/steps.log" ;;
        bench-train:*:*:*)
            IFS=: read -r _ config precisions secs <<< "$step"
            python3 bench/bench_train.py --config "$config" --precision "$precisions" --bin "$bin" \
                --time-limit "$secs" > "$out/bench_train_$config.log" 2>&1
            tail -n 6 "$out/bench_train_$config.log" | tee -a "$out/steps.log" ;;
        trace:*)
            secs=${step#trace:}
            BIN=$bin bash experiments/gs_divergence/trace.sh "$out/trace" "$secs" \
                gs-sigmoid='--model.global_selection "{\"enabled\": true, \"k_long\": 128, \"gate\": \"sigmoid\"}"' \
                | tee -a "$out/steps.log" ;;
        gs-inputs:*)
            secs=${step#gs-inputs:}
            G='"enabled": true, "k_long": 128'
            BIN=$bin bash experiments/gs_divergence/validate.sh "$out/gs-inputs" "$secs" plain='' \
                gs-normalized="--model.global_selection '{$G, \"gate\": \"sigmoid\", \"gate_input\": \"normalized\"}'" \
                gs-detached="--model.global_selection '{$G, \"gate\": \"sigmoid\", \"gate_input\": \"detached\"}'" \
                gs-normalized-silu="--model.global_selection '{$G, \"gate\": \"silu\", \"gate_input\": \"normalized\"}'" \
                | tail -n 4 | tee -a "$out/steps.log" ;;
        sweep:*:*)
            IFS=: read -r _ name secs <<< "$step"
            # the sweep sees the committed rows (and skips their runs); only this sitting's new
            # rows come back, in results/NAME.jsonl
            scratch=$(mktemp -d)
            touch "$scratch/$name.jsonl"
            [ -f "experiments/results/$name.jsonl" ] && cp "experiments/results/$name.jsonl" "$scratch/"
            before=$(wc -l < "$scratch/$name.jsonl")
            timeout -s TERM "$secs" "$bin" sweep "experiments/$name.json" --results "$scratch" \
                > "$out/sweep_$name.log" 2>&1
            rc=$?
            mkdir -p "$out/results"
            tail -n +$((before + 1)) "$scratch/$name.jsonl" >> "$out/results/$name.jsonl"
            echo "exit $rc; $(wc -l < "$out/results/$name.jsonl") new rows" | tee -a "$out/steps.log" ;;
        *)
            echo "gpu_sitting: unknown step '$step'" | tee -a "$out/steps.log" ;;
    esac
done
for pid in "${bg_pids[@]}"; do wait "$pid"; done
