#!/usr/bin/env bash
# LOG_FORMAT=json lines are what log pipelines read without configuration: a real log
# processor, syslog-ng's json-parser() (Debian's syslog-ng-core), parses the binaries' real
# lines and finds in each the fields Google Cloud Logging (`severity`) and Elastic's ECS
# (`@timestamp`, `log.level`) take the level and time from.
#
#   checks/log-json-check.sh            # builds the debug binaries of this checkout if needed
#   BIN_DIR=target/debug checks/log-json-check.sh
#
#   1. syslog-ng: installed with apt-get if missing (syslog-ng-core, no recommends); run here
#      in the foreground on a configuration of its own, never as the system's service
#   2. real lines: pingpong (RUST_LOG=debug, a corrupt counter file for ERROR lines, then
#      repaired), log-reader and log-writer, each with LOG_FORMAT=json; pingpong is stopped
#      with SIGTERM during SHUTDOWN_DELAY while /readyz is asked (its expected 503s)
#   3. every line through json-parser(): each comes out parsed, with `severity` one of
#      DEBUG, INFO, WARNING, ERROR matching its `level`, `log.level` its level and
#      `@timestamp` its timestamp; DEBUG, INFO, WARNING and ERROR lines are all among them
#   4. the graceful shutdown's /readyz 503s come out at severity INFO with reason "draining",
#      and no line of that shutdown is an ERROR
#
# Ports: the first free ones from PORT_BASE (default 19800) up. Last line: `N passed, M failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=checks/live.sh
. checks/live.sh
diagnose() {
  local file
  for file in "$work"/*.log "$work/parsed"; do
    [[ -f "$file" ]] || continue
    echo "--- $file (last 10 lines)"
    tail -n 10 "$file"
  done
}

step "1. syslog-ng"
if ! command -v syslog-ng >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends syslog-ng-core >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends syslog-ng-core >/dev/null; }
fi
pass "$(syslog-ng --version | sed -n 1p)"

step "2. real JSON lines of the three binaries"
build_services pingpong log-reader log-writer
port="${PORT_BASE:-19800}"
wait_for() { wait_http "no answer from $1 within 30 s" -o /dev/null "$1"; } # URL: any answer
mkdir -p "$work/files"
printf 'abc' >"$work/files/pingpong_counter.txt"
pingpong_port="$(next_port)"
DATA_DIR="$work/files" PORT="$pingpong_port" LISTEN_ADDRESS=127.0.0.1 RUST_LOG=debug \
  LOG_FORMAT=json SHUTDOWN_DELAY=1s "$BIN_DIR/pingpong" >/dev/null 2>"$work/pingpong.log" </dev/null &
pingpong_pid=$!
pids+=("$pingpong_pid")
wait_for "http://127.0.0.1:$pingpong_port/healthz"
curl -sS -o /dev/null "http://127.0.0.1:$pingpong_port/pingpong" # 503: the file is corrupt
DATA_DIR="$work/files" "$BIN_DIR/pingpong" counter set 0 2>/dev/null
curl -fsS -o /dev/null "http://127.0.0.1:$pingpong_port/pingpong"
curl -sS -o /dev/null "http://127.0.0.1:$pingpong_port/nowhere"
reader_port="$(next_port)"
DATA_DIR="$work/files" PORT="$reader_port" LISTEN_ADDRESS=127.0.0.1 LOG_FORMAT=json \
  "$BIN_DIR/log-reader" >/dev/null 2>"$work/log-reader.log" </dev/null &
pids+=("$!")
DATA_DIR="$work/files" LOG_INTERVAL=100ms LOG_FORMAT=json \
  "$BIN_DIR/log-writer" >/dev/null 2>"$work/log-writer.log" </dev/null &
pids+=("$!")
wait_for "http://127.0.0.1:$reader_port/healthz"
deadline=$((SECONDS + 30))
until curl -fsS -o /dev/null "http://127.0.0.1:$reader_port/"; do
  ((SECONDS < deadline)) || { fail "log-reader: no entry within 30 s"; exit 1; }
  sleep 0.1
done
# The graceful shutdown: SIGTERM, then /readyz during the delay answers 503 "draining".
shutdown_from="$(wc -l <"$work/pingpong.log")"
kill -TERM "$pingpong_pid"
deadline=$((SECONDS + 30))
until [[ "$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$pingpong_port/readyz")" == 503 ]]; do
  ((SECONDS < deadline)) || { fail "pingpong: /readyz never 503 after SIGTERM"; exit 1; }
  sleep 0.05
done
stop_services
for service in pingpong log-reader log-writer; do
  pass "$service: $(wc -l <"$work/$service.log") lines"
done

step "3. syslog-ng's json-parser() on every line"
cat >"$work/syslog-ng.conf" <<CONF
@version: 3.38
source s_lines { stdin(flags(no-parse)); };
parser p_json { json-parser(prefix(".json.")); };
destination d_parsed {
  file("$work/parsed" template("\${.json.level}|\${.json.severity}|\${.json.log.level}|\${.json.timestamp}|\${.json.@timestamp}|\${.json.reason}|\${.json.message}\n"));
};
log { source(s_lines); parser(p_json); destination(d_parsed); };
CONF
check_lines() { # NAME FILE: every line of FILE through syslog-ng; the fields as described
  local name="$1" file="$2" lines parsed bad
  rm -f "$work/parsed"
  # stdin() reads a pipe: syslog-ng cannot poll a regular file handed to it as stdin.
  timeout 60 syslog-ng -F --no-caps -f "$work/syslog-ng.conf" -R "$work/persist" \
    -p "$work/syslog-ng.pid" -c "$work/syslog-ng.ctl" < <(cat "$file") >"$work/syslog-ng.out" 2>&1 ||
    { fail "$name: syslog-ng exited $?: $(cat "$work/syslog-ng.out")"; return; }
  lines="$(wc -l <"$file")"
  parsed="$(wc -l <"$work/parsed" 2>/dev/null || echo 0)"
  if ((lines == 0 || parsed != lines)); then
    fail "$name: $parsed of $lines lines parsed: $(cat "$work/syslog-ng.out")"
    return
  fi
  bad="$(awk -F'|' '
    { want = $1; if (want == "TRACE") want = "DEBUG"; if (want == "WARN") want = "WARNING" }
    $2 != want || $3 != $1 || $5 != $4 || $4 !~ /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9:.]+Z$/ { print; exit }
  ' "$work/parsed")"
  if [[ -n "$bad" ]]; then
    fail "$name: level|severity|log.level|timestamp|@timestamp do not agree: $bad"
  else
    pass "$name: $parsed lines, severities $(cut -d'|' -f2 "$work/parsed" | sort -u | paste -sd, -)"
  fi
}
check_lines pingpong "$work/pingpong.log"
for severity in DEBUG INFO WARNING ERROR; do
  if cut -d'|' -f2 "$work/parsed" | grep -qx "$severity"; then
    pass "pingpong: a line at severity $severity"
  else
    fail "pingpong: no line at severity $severity"
  fi
done
check_lines log-reader "$work/log-reader.log"
check_lines log-writer "$work/log-writer.log"

step "4. a graceful shutdown logs no ERROR; /readyz's 503s are INFO, reason draining"
tail -n +"$((shutdown_from + 1))" "$work/pingpong.log" >"$work/shutdown.lines"
check_lines "pingpong's shutdown" "$work/shutdown.lines"
if grep -q -e '^ERROR|' -e '^[^|]*|ERROR|' "$work/parsed"; then
  fail "an ERROR during the graceful shutdown: $(grep -e '^ERROR|' -e '^[^|]*|ERROR|' "$work/parsed" | head -n 3)"
else
  pass "no ERROR among $(wc -l <"$work/parsed") lines after SIGTERM"
fi
if grep -q '^INFO|INFO|INFO|[^|]*|[^|]*|draining|finished processing request$' "$work/parsed"; then
  pass "/readyz 503: INFO, reason draining"
else
  fail "no INFO line with reason draining"
fi
