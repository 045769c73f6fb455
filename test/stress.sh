#!/usr/bin/env bash
# Runs one test binary again and again beside CPU hogs and counts the runs that fail: the way a
# test that passes alone but fails in a loaded `cargo test --workspace` shows itself.
#
#   test/stress.sh BINARY RUNS SECONDS [ARGS...]
#
# BINARY is a built test binary (`cargo test --no-run` prints its path), ARGS go to each run
# (e.g. --test-threads=8). Two `yes >/dev/null` loops load the CPU while it runs; it stops after
# RUNS runs or SECONDS seconds, whichever comes first, and prints `N runs, M failed` and the
# failing assertions of the first failures. Exit status 1 if any run failed.
set -euo pipefail

if [[ $# -lt 3 ]]; then
    echo "usage: $0 BINARY RUNS SECONDS [ARGS...]" >&2
    exit 2
fi
binary=$1 runs=$2 seconds=$3
shift 3

hogs=()
log=$(mktemp)
cleanup() {
    for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -f "$log"
}
trap cleanup EXIT
for _ in 1 2; do
    yes >/dev/null &
    hogs+=($!)
done

deadline=$((SECONDS + seconds))
done_runs=0 failed=0
while ((done_runs < runs && SECONDS < deadline)); do
    done_runs=$((done_runs + 1))
    if ! "$binary" "$@" >"$log" 2>&1; then
        failed=$((failed + 1))
        if ((failed <= 3)); then
            echo "--- run $done_runs failed:"
            grep -E "^test .* FAILED|panicked|left:|right:" "$log" | head -20 || true
        fi
    fi
done
echo "$done_runs runs, $failed failed"
((failed == 0))
