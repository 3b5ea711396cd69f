#!/usr/bin/env bash
# tools/fuzz.sh BUILD SECONDS TARGET...: runs each libFuzzer target BUILD/fuzz_TARGET for SECONDS
# (`make fuzz` calls it; CI with FUZZ_SECONDS=30). Each starts from its committed seeds
# (fuzz/corpus/TARGET) and what earlier runs found (BUILD/corpus/TARGET, where new inputs go). A
# crash, a leak, a sanitizer report, a hang (> 10 s on one input), more than 2 GB of memory, or an
# error message that is not one clean line (fuzz/fuzz_input.h) fails the target; the input is
# saved under BUILD/findings/TARGET/ (reproduce: BUILD/fuzz_TARGET FILE). Prints one line per
# target (seconds, executions, coverage) and, last, `N passed, N failed`.
set -uo pipefail
build=$1 seconds=$2
shift 2
passed=0 failed=0
for t in "$@"; do
    work=$build/corpus/$t findings=$build/findings/$t log=$build/fuzz_$t.log
    mkdir -p "$work" "$findings"
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        OMP_NUM_THREADS=1 "./$build/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$findings/" "$work" "fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+')
    inputs=$(find "$work" -type f | wc -l)
    if [ $rc -eq 0 ]; then
        echo "fuzz $t: ${seconds} s, ${runs:-?} executions, ${cov:-?} coverage points, ${inputs} corpus inputs found, no findings"
        passed=$((passed + 1))
    else
        echo "fuzz $t: FAILED (exit $rc) after ${runs:-?} executions; input saved in $findings/, log $log:"
        grep -vE '^#[0-9]+' "$log" | tail -n 40
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
