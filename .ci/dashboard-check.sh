#!/usr/bin/env bash
# The Grafana dashboard cannot rot: every metric name deploy/grafana/dashboard.json queries must
# be one that real pingpong and log-reader processes expose on /metrics.
#
#   .ci/dashboard-check.sh            # builds the debug binaries of this checkout if needed
#   BIN_DIR=target/debug .ci/dashboard-check.sh
#
#   1. .ci/dashboard.py selftest: the name extraction and matching rules
#   2. pingpong and log-reader (BIN_DIR, default the checkout's debug build) on free ports and a
#      temporary DATA_DIR; one GET /pingpong; their /metrics saved
#   3. .ci/dashboard.py check: the dashboard's names against both expositions; the failure
#      lists exactly the names no service exposes
#
# Ports: the first free ones from PORT_BASE (default 19600) up. Last line: `N passed, M failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
readonly repo

# shellcheck source=.ci/test-report.sh
. .ci/test-report.sh

readonly dashboard=deploy/grafana/dashboard.json
pids=()
stop_services() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
# on_exit (test-report.sh) reads the exit status from $?: handed on past stop_services.
trap 'status=$?; stop_services; (exit "$status"); on_exit' EXIT

step "1. .ci/dashboard.py selftest"
if python3 .ci/dashboard.py selftest >"$work/selftest" 2>&1; then
  pass "the name extraction and matching rules ($(grep -c '^  ok' "$work/selftest") cases)"
else
  cat "$work/selftest"
  fail ".ci/dashboard.py selftest"
fi

step "2. live /metrics of pingpong and log-reader"
if [[ -z "${BIN_DIR:-}" ]]; then
  cargo build --locked --quiet --bin pingpong --bin log-reader
  BIN_DIR="${CARGO_TARGET_DIR:-$repo/target}/debug"
fi
port="${PORT_BASE:-19600}"
next_port() {
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
  port=$((port + 1))
}
mkdir -p "$work/files"
for service in pingpong log-reader; do
  service_port="$(next_port)"
  DATA_DIR="$work/files" PORT="$service_port" RUST_LOG=warn "$BIN_DIR/$service" \
    >"$work/$service.log" 2>&1 </dev/null &
  pids+=("$!")
  deadline=$((SECONDS + 30))
  until curl -fsS -o "$work/$service.metrics" "http://127.0.0.1:$service_port/metrics" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      cat "$work/$service.log"
      fail "$service: no /metrics on port $service_port within 30 s"
      exit 1
    fi
    sleep 0.2
  done
  if [[ "$service" == pingpong ]]; then
    curl -fsS -o /dev/null "http://127.0.0.1:$service_port/pingpong"
  fi
  curl -fsS -o "$work/$service.metrics" "http://127.0.0.1:$service_port/metrics"
  pass "$service on port $service_port: $(grep -c '^# TYPE' "$work/$service.metrics") metric families"
done
stop_services

step "3. every metric the dashboard queries is exposed"
if out="$(python3 .ci/dashboard.py check "$dashboard" "$work/pingpong.metrics" "$work/log-reader.metrics")"; then
  pass "$out"
else
  fail "$out"
fi
