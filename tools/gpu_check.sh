#!/usr/bin/env bash
# tools/gpu_check.sh TEST_BIN [LOG_DIR]: the CUDA suite under each of compute-sanitizer's tools
# (`make gpu-check`, GPU machine only; issue "Reliability"):
#   memcheck   out-of-bounds and misaligned device accesses, bad frees, device-side leaks
#   racecheck  shared-memory hazards between threads of a block
#   initcheck  reads of device memory that nothing wrote
#   synccheck  __syncthreads / warp-sync misuse
# The suite is every test tagged [cuda] or with "cuda" in its name (Catch2 names match without
# case), run once per tool with --error-exitcode so that a report fails it. Logs go to LOG_DIR
# (default build/gpu-check). Prints one line per tool and, last, `N passed, N failed`.
set -uo pipefail
bin=$1 logs=${2:-build/gpu-check}
spec=${GPU_CHECK_TESTS:-"[cuda],*cuda*"}
command -v compute-sanitizer >/dev/null || { echo "gpu-check: compute-sanitizer is not on PATH (the CUDA toolkit's)"; exit 2; }
mkdir -p "$logs"
passed=0 failed=0
for tool in memcheck racecheck initcheck synccheck; do
    extra=()
    case $tool in
        memcheck) extra=(--leak-check full) ;;
        racecheck) extra=(--racecheck-report all) ;;
        # (initcheck: no options; its unused-memory tracking is off by default. Given as
        # "--track-unused-memory no", CUDA 13's sanitizer took "no" for the program to run.)
    esac
    log=$logs/$tool.log
    start=$(date +%s)
    compute-sanitizer --tool "$tool" "${extra[@]}" --error-exitcode 99 --print-limit 50 "$bin" "$spec" >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    summary=$(grep -E '^========= (ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY)' "$log" | tail -n 2 | tr '\n' ' ')
    tests=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    if [ $rc -eq 0 ]; then
        echo "gpu-check $tool: clean in ${secs} s (suite: ${tests:-?}; ${summary:-no summary})"
        passed=$((passed + 1))
    else
        echo "gpu-check $tool: FAILED (exit $rc) in ${secs} s (suite: ${tests:-?}; ${summary:-no summary}); see $log:"
        grep -E '^=========' "$log" | head -n 30
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
