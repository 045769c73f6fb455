#!/usr/bin/env bash
# Failed requests during the zero-downtime steps of test-persistent.sh (6 graceful deletion,
# 7 rolling update, 8 kill -9), median of several runs per engine.
#
#   bench/downtime-bench.sh [--runs 3] [--out FILE] ENGINE...      e.g. bench/downtime-bench.sh local
#
# Passes the environment on (BIN_DIR, CONTAINERS_CONF, SHUTDOWN_DELAY for the local engine;
# podman takes the delay from the manifests). Prints one Markdown row per engine and step:
# requests, failed, gap (written but unanswered), as medians, and every run's failed count.
# Writes every run's figures to a data file (default bench/data/downtime-<UTC stamp>.json),
# which bench/plots.py reads.
set -euo pipefail

runs=3
out=""
while (($#)); do
  case "$1" in
    --runs) runs="${2:?--runs needs a value}"; shift 2 ;;
    --out) out="${2:?--out needs a value}"; shift 2 ;;
    *) break ;;
  esac
done
(($#)) || { echo "usage: $0 [--runs N] [--out FILE] ENGINE..." >&2; exit 2; }
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="${out:-$repo/bench/data/downtime-$stamp.json}"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
load1() { cut -d ' ' -f 1 /proc/loadavg; }
commit="$(git -C "$repo" rev-parse --short=12 HEAD)"
if [[ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]]; then commit+="-dirty"; fi
steps=("graceful deletion" "rolling update" "kill -9")

# One JSON object a line in $logs/results, joined into the data file at the end.
: >"$logs/results"
loads=()
for engine in "$@"; do
  for run in $(seq "$runs"); do
    loads+=("$(load1)")
    "$repo/test-persistent.sh" --engine "$engine" >"$logs/$engine.$run.log" 2>&1 || true
    grep "^  FAILED" "$logs/$engine.$run.log" | cut -c 1-160 >&2 || true
    echo "$engine run $run: $(tail -n 1 "$logs/$engine.$run.log")" >&2
    for what in "${steps[@]}"; do
      # `    <what>: T requests, A acknowledged, F failed ...; counter B -> C`
      sed -n "s/^    $what: \([0-9]*\) requests, \([0-9]*\) acknowledged, \([0-9]*\) failed.*counter \([0-9]*\) -> \([0-9]*\)\$/\1 \2 \3 \4 \5/p" \
        "$logs/$engine.$run.log" | head -n 1 |
        while read -r total acked failed before after; do
          printf '{"engine": "%s", "run": %d, "step": "%s", "requests": %d, "acknowledged": %d, "failed": %d, "counter_before": %d, "counter_after": %d}\n' \
            "$engine" "$run" "$what" "$total" "$acked" "$failed" "$before" "$after"
        done >>"$logs/results"
    done
  done
done
loads+=("$(load1)")

mkdir -p "$(dirname "$out")"
{
  printf '{\n "bench": "downtime",\n "date": "%s",\n "commit": "%s",\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$commit"
  printf ' "command": "%s",\n' "${SHUTDOWN_DELAY:+SHUTDOWN_DELAY=$SHUTDOWN_DELAY }bench/downtime-bench.sh --runs $runs $*"
  # What the local engine ran with; podman (and k3d) run with the manifests' delay, 5s.
  printf ' "shutdown_delay": "%s",\n "runs": %d,\n' "${SHUTDOWN_DELAY:-5s}" "$runs"
  printf ' "load_average": [%s],\n' "$(IFS=,; echo "${loads[*]}")"
  printf ' "results": [\n'
  sed '$!s/$/,/; s/^/  /' "$logs/results"
  printf ' ]\n}\n'
} >"$out"

echo "| engine | step | requests | failed | gap | failed in each run |"
echo "|---|---|---:|---:|---:|---|"
for engine in "$@"; do
  for what in "${steps[@]}"; do
    grep -F "\"engine\": \"$engine\"" "$logs/results" | grep -F "\"step\": \"$what\"" |
      sed 's/.*"requests": \([0-9]*\), "acknowledged": \([0-9]*\), "failed": \([0-9]*\), "counter_before": \([0-9]*\), "counter_after": \([0-9]*\)}/\1 \2 \3 \4 \5/' \
      >"$logs/rows" || true
    [[ -s "$logs/rows" ]] || { echo "| $engine | $what | no result | | | |"; continue; }
    echo "| $engine | $what | $(awk '{ print $1 }' "$logs/rows" | median) | $(awk '{ print $3 }' "$logs/rows" | median)" \
      "| $(awk '{ print $5 - $4 - $2 }' "$logs/rows" | median) | $(awk '{ print $3 }' "$logs/rows" | tr '\n' ' ')|"
  done
done
echo
echo "load average (1 min) at each run's start: ${loads[*]}"
echo "data: ${out#"$repo"/}"
