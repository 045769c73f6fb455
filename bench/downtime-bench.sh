#!/usr/bin/env bash
# Failed requests during the zero-downtime steps of test-persistent.sh (6 graceful deletion,
# 7 rolling update, 8 kill -9), median of several runs per engine.
#
#   bench/downtime-bench.sh [--runs 3] ENGINE...      e.g. bench/downtime-bench.sh podman local
#
# Passes the environment on (BIN_DIR, CONTAINERS_CONF, SHUTDOWN_DELAY for the local engine).
# Prints one Markdown row per engine and step: requests, failed, gap (written but unanswered),
# as medians, and every run's failed count.
set -euo pipefail

runs=3
if [[ "${1:-}" == --runs ]]; then
  runs="${2:?--runs needs a value}"
  shift 2
fi
(($#)) || { echo "usage: $0 [--runs N] ENGINE..." >&2; exit 2; }
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "| engine | step | requests | failed | gap | failed in each run |"
echo "|---|---|---:|---:|---:|---|"
for engine in "$@"; do
  for run in $(seq "$runs"); do
    "$repo/test-persistent.sh" --engine "$engine" >"$out/$engine.$run.log" 2>&1 || true
    grep "^  FAILED" "$out/$engine.$run.log" | cut -c 1-160 >&2 || true
    tail -n 1 "$out/$engine.$run.log" >&2
  done
  for what in "graceful deletion" "rolling update" "kill -9"; do
    # `    <what>: T requests, A acknowledged, F failed ...; counter B -> C`
    cat "$out/$engine".*.log | sed -n "s/^    $what: \([0-9]*\) requests, \([0-9]*\) acknowledged, \([0-9]*\) failed.*counter \([0-9]*\) -> \([0-9]*\)\$/\1 \2 \3 \4 \5/p" \
      >"$out/rows"
    [[ -s "$out/rows" ]] || { echo "| $engine | $what | no result | | | |"; continue; }
    echo "| $engine | $what | $(awk '{ print $1 }' "$out/rows" | median) | $(awk '{ print $3 }' "$out/rows" | median)" \
      "| $(awk '{ print $5 - $4 - $2 }' "$out/rows" | median) | $(awk '{ print $3 }' "$out/rows" | tr '\n' ' ')|"
  done
done
