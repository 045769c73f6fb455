#!/usr/bin/env bash
# Every /metrics passes `promtool check metrics` (Prometheus's own linter, from Debian's
# prometheus package): names, help texts, types, units, histogram and counter conventions.
#
#   checks/metrics-check.sh            # builds the debug binaries of this checkout if needed
#   BIN_DIR=target/debug checks/metrics-check.sh
#
#   1. promtool: Debian's prometheus package, unpacked into .venv/prometheus (as
#      checks/dashboard-check.sh does), never installed or started as a service
#   2. pingpong, log-reader and log-writer (with PORT set, which makes it serve /metrics) from
#      BIN_DIR on free loopback ports and one temporary DATA_DIR; each route of pingpong and
#      log-reader asked once, so that every family has samples
#   3. each /metrics as curl gets it (Prometheus text 0.0.4) through `promtool check metrics`:
#      any problem it reports fails the step, naming the service and the problem
#   4. each /metrics as Prometheus asks for it (OpenMetrics): the same series
#   5. build_info names this checkout's commit (`git rev-parse HEAD`), or `unknown` outside git
#   6. the same sources from `git archive` (no .git) build a build_info with commit `unknown`,
#      and with the commit BUILD_COMMIT names when it is set at build time
#
# Ports: the first free ones from PORT_BASE (default 19700) up. Last line: `N passed, M failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=checks/live.sh
. checks/live.sh
# On failure, what the services logged; on_exit (test-report.sh) reads the status from $?.
diagnose() {
  local service
  for service in "${!port_of[@]}"; do
    echo "--- $service stderr (last 20 lines)"
    tail -n 20 "$work/$service.log" 2>/dev/null || true
  done
}

step "1. promtool"
promtool="$(prometheus_binary promtool)"
pass "$("$promtool" --version 2>&1 | sed -n 1p)"

step "2. pingpong, log-reader and log-writer serving /metrics"
build_services pingpong log-reader log-writer
port="${PORT_BASE:-19700}"
mkdir -p "$work/files"
for service in pingpong log-reader log-writer; do
  service_port="$(next_port)"
  DATA_DIR="$work/files" PORT="$service_port" LISTEN_ADDRESS=127.0.0.1 LOG_INTERVAL=100ms \
    RUST_LOG=warn "$BIN_DIR/$service" >/dev/null 2>"$work/$service.log" </dev/null &
  pids+=("$!")
  port_of[$service]="$service_port"
  wait_http "$service: no /healthz on port $service_port within 30 s" \
    -f -o /dev/null "http://127.0.0.1:$service_port/healthz"
  pass "$service on port $service_port"
done
curl -fsS -o /dev/null "http://127.0.0.1:${port_of[pingpong]}/pingpong"
curl -sS -o /dev/null "http://127.0.0.1:${port_of[pingpong]}/nowhere"
wait_http "log-reader: no entry on / within 30 s" -f -o /dev/null "http://127.0.0.1:${port_of[log-reader]}/"
for service in pingpong log-reader log-writer; do
  curl -fsS -o /dev/null "http://127.0.0.1:${port_of[$service]}/readyz"
done

step "3. promtool check metrics, on what curl gets"
for service in pingpong log-reader log-writer; do
  url="http://127.0.0.1:${port_of[$service]}/metrics"
  curl -fsS -D "$work/$service.headers" -o "$work/$service.prom" "$url"
  families="$(grep -c '^# TYPE' "$work/$service.prom" || true)"
  if out="$("$promtool" check metrics <"$work/$service.prom" 2>&1)"; then
    pass "$service: promtool accepts its $families families"
  else
    fail "$service: promtool check metrics: $out"
  fi
done

step "4. the same samples in OpenMetrics, as Prometheus asks"
accept='application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'
for service in pingpong log-reader log-writer; do
  url="http://127.0.0.1:${port_of[$service]}/metrics"
  curl -fsS -H "Accept: $accept" -o "$work/$service.om" "$url"
  if [[ "$(tail -n 1 "$work/$service.om")" != "# EOF" ]]; then
    fail "$service: OpenMetrics text does not end with # EOF"
    continue
  fi
  # The series, without their values (counts, times and sizes move between the two scrapes)
  # and without /metrics' own, which the first scrape added.
  samples() { grep -v -e '^#' -e 'route="/metrics"' "$1" | sed 's/ [^ ]*$//' | sort; }
  if diff <(samples "$work/$service.prom") <(samples "$work/$service.om") >"$work/$service.diff"; then
    pass "$service: $(samples "$work/$service.om" | wc -l) samples, the same in both formats"
  else
    fail "$service: the formats differ: $(cat "$work/$service.diff")"
  fi
done

step "5. build_info names the commit"
expected="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
for service in pingpong log-reader log-writer; do
  line="$(grep '^build_info{' "$work/$service.prom" || true)"
  if [[ "$line" == *"commit=\"$expected\""* ]]; then
    pass "$service: $line"
  else
    fail "$service: expected commit $expected, got: ${line:-no build_info}"
  fi
done

step "6. from a source archive, without .git: build_info says commit unknown, or BUILD_COMMIT"
if ! git rev-parse HEAD >/dev/null 2>&1; then
  pass "not a git checkout: step 5 already saw unknown"
  exit 0
fi
stop_services
mkdir -p "$work/archive"
git archive HEAD | tar -x -C "$work/archive"
# The checkout's target directory, where the dependencies are built already (the checkout's
# next build of the example rebuilds it from its own sources).
target="${CARGO_TARGET_DIR:-$repo/target}"
for commit in "" 0123456789abcdef0123456789abcdef01234567; do
  (cd "$work/archive" && BUILD_COMMIT="$commit" CARGO_TARGET_DIR="$target" \
    cargo build --locked --quiet -p yardsticks --example ceiling)
  cp "$target/debug/examples/ceiling" "$work/ceiling"
  archive_port="$(next_port)"
  PORT="$archive_port" RUST_LOG=warn "$work/ceiling" >/dev/null 2>"$work/ceiling.log" </dev/null &
  pids+=("$!")
  port_of[ceiling]="$archive_port"
  deadline=$((SECONDS + 30))
  until line="$(curl -fsS "http://127.0.0.1:$archive_port/metrics" 2>/dev/null | grep '^build_info{')"; do
    ((SECONDS < deadline)) || { fail "ceiling from the archive: no /metrics within 30 s"; exit 1; }
    sleep 0.2
  done
  stop_services
  expected="${commit:-unknown}"
  if [[ "$line" == "build_info{version=\"$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml)\",commit=\"$expected\"} 1" ]]; then
    pass "BUILD_COMMIT=${commit:-(unset)}: $line"
  else
    fail "BUILD_COMMIT=${commit:-(unset)}: expected commit $expected, got: $line"
  fi
done
