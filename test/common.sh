# shellcheck shell=bash disable=SC2034,SC2154 # variables shared with the sourcing script
# portable: bash 3.2 and BSD userland (macOS)
#
# What test-persistent.sh shares across engines: reporting (step, pass, fail, die), a
# millisecond clock, HTTP helpers built on curl, the checks of the persistence steps, and the
# load client of the zero-downtime steps. Sourced, never run. Needs bash, curl and the POSIX
# tools every macOS has (sed, awk, sort, od); nothing from GNU.
#
# The sourcing script sets `work` (a temp directory) and `engine`; the engine file sets
# `pingpong_url`, `log_url`, `interval_ms` and `ready_timeout` in engine_setup, and defines
# engine_diagnostics (called once, at the first failure) and engine_counter_get.

passed=0
failed=0
last=-1        # the last number /pingpong acknowledged
writer_id=""   # the UUID in the last entry seen on `/`
nl=$'\n'

# --- reporting --------------------------------------------------------------------------------

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
pass() { passed=$((passed + 1)); printf '  ok     %s\n' "$*"; }

# Records a failure. The first one also prints the engine's diagnostics at once, while what
# failed is still there (a later step replaces it).
diagnosed=false
fail() {
  failed=$((failed + 1))
  printf '  FAILED %s\n' "$*"
  if [[ "$diagnosed" == false ]]; then
    diagnosed=true
    printf '\n==> diagnostics (%s)\n' "$engine"
    engine_diagnostics 2>&1 | sed 's/^/    /' || true
    printf '==> end of diagnostics\n\n'
  fi
}

# Reports a failure and ends the run (the EXIT trap cleans up and prints the summary).
die() {
  fail "$*"
  exit 1
}

# --- clock ------------------------------------------------------------------------------------

# Milliseconds since the epoch. `date +%s%3N` is GNU only (BSD date prints "%3N" literally), so:
# bash 5's EPOCHREALTIME, else perl (every macOS has it), else whole seconds.
if [[ -n "${EPOCHREALTIME:-}" ]]; then
  now_ms() {
    local t="${EPOCHREALTIME/[.,]/}" # portable-ok: reached only where EPOCHREALTIME is set (bash 5)
    echo "${t%???}"
  }
elif command -v perl >/dev/null 2>&1; then
  now_ms() { perl -MTime::HiRes=time -e 'printf "%d\n", time * 1000'; }
else
  now_ms() { echo "$(($(date +%s) * 1000))"; }
fi

# LOG_INTERVAL / SHUTDOWN_DELAY syntax (250ms, 5s, 1m) to milliseconds.
interval_to_ms() {
  local v="$1"
  case "$v" in
    *ms) echo "${v%ms}" ;;
    *s) echo $((${v%s} * 1000)) ;;
    *m) echo $((${v%m} * 60000)) ;;
    *) echo "unsupported interval '$v'" >&2; return 1 ;;
  esac
}

# free_port and taken_ports: test/ports.sh.
# shellcheck source=test/ports.sh
. "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

# --- HTTP -------------------------------------------------------------------------------------

# http_get URL: sets code and body (the exact bytes are in $work/body). Never fails.
code=""
body=""
http_get() {
  rm -f "$work/body"
  code="$(curl -sS --max-time 5 -o "$work/body" -w '%{http_code}' "$1" 2>"$work/curl.err")" || code="000"
  body="$(cat "$work/body" 2>/dev/null || true)"
}

# Polls URL until it answers 200 or the deadline (seconds) passes.
wait_http_ok() {
  local url="$1" timeout_s="$2" deadline
  deadline=$(($(now_ms) + timeout_s * 1000))
  while (($(now_ms) < deadline)); do
    http_get "$url"
    [[ "$code" == 200 ]] && return 0
    sleep 0.2
  done
  return 1
}

# One GET /pingpong. Retries while nothing answered 200 (connection refused, or the load
# balancer has no ready endpoint yet): pingpong hands out a number only with a 200. Sets `got`.
got=-1
ping() {
  local deadline
  deadline=$(($(now_ms) + ready_timeout * 1000))
  while :; do
    http_get "$pingpong_url"
    [[ "$code" == 200 ]] && break
    if (($(now_ms) >= deadline)); then
      die "GET $pingpong_url answered $code: ${body:-$(cat "$work/curl.err")}"
    fi
    sleep 0.2
  done
  if ! [[ "$body" =~ ^pong\ ([0-9]+)$ ]]; then
    die "GET $pingpong_url: body '$body' is not 'pong N'"
  fi
  got="${BASH_REMATCH[1]}"
}

# --- checks of the persistence steps ----------------------------------------------------------

# Asks for the next number and checks it is exactly `last + 1`.
expect_next_pong() {
  local what="$1" want=$((last + 1))
  ping
  if [[ "$got" == "$want" ]]; then
    pass "$what: pong $got (last acknowledged $last + 1)"
  else
    fail "$what: pong $got, expected exactly pong $want (last acknowledged $last + 1)"
  fi
  last="$got"
}

# Polls `/` until its entry counts `last + 1` (the counter file holds the number of answers),
# within two log intervals of now. With new_writer=yes the entry must also come from a writer
# UUID other than the one seen before.
expect_log() {
  local what="$1" new_writer="${2:-no}" want=$((last + 1)) deadline seen_count="" seen_id=""
  local entry_re="^.*: ([0-9a-f-]{36})\\.${nl}Ping / Pongs: ([0-9]+)\$" other=""
  if [[ "$new_writer" == yes ]]; then
    other=" from a writer other than $writer_id"
  fi
  deadline=$(($(now_ms) + 2 * interval_ms))
  while :; do
    http_get "$log_url"
    if [[ "$code" == 200 && "$body" =~ $entry_re ]]; then
      seen_id="${BASH_REMATCH[1]}"
      seen_count="${BASH_REMATCH[2]}"
      if [[ "$seen_count" == "$want" && ("$new_writer" == no || "$seen_id" != "$writer_id") ]]; then
        break
      fi
    fi
    if (($(now_ms) >= deadline)); then
      fail "$what: within $((2 * interval_ms)) ms '/' answered $code '${body//$nl/\\n}'," \
        "expected 'Ping / Pongs: $want'$other"
      return 0
    fi
    sleep 0.1
  done
  if [[ "$new_writer" == yes ]]; then
    pass "$what: '/' shows Ping / Pongs: $want from new writer $seen_id"
  else
    pass "$what: '/' shows Ping / Pongs: $want"
  fi
  writer_id="$seen_id"
}

# The exact entry format of SPEC §5, on the bytes last read from `/`.
expect_entry_format() {
  local ts='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z'
  local uuid='[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}'
  local lines last_byte
  # BSD wc pads its count with spaces: arithmetic strips them.
  lines=$(($(wc -l <"$work/body")))
  last_byte="$(tail -c 1 "$work/body" | od -An -c | tr -d ' ')"
  local format_re="^${ts}: ${uuid}\\.${nl}Ping / Pongs: [0-9]+\$"
  if [[ "$body" =~ $format_re && "$lines" == 1 && "$last_byte" != '\n' ]]; then
    pass "entry format: '<RFC 3339 ms Z>: <uuid v4>.\\nPing / Pongs: N', no trailing newline"
  else
    fail "entry format: got '$(od -c "$work/body" | head -5)'"
  fi
}

# The count in the counter file, read by the operator command inside the running app (no shell
# in the image: the engine execs the binary itself). Sets `count`; dies if it is not a number.
count=""
counter_get() {
  count="$(engine_counter_get 2>&1)" || true
  [[ "$count" =~ ^[0-9]+$ ]] || die "pingpong counter get printed '$count', expected a number"
}

# The operator command must print the count the counter file holds, `last + 1`.
expect_counter_get() {
  local want=$((last + 1)) out
  out="$(engine_counter_get 2>&1)" || true
  if [[ "$out" == "$want" ]]; then
    pass "pingpong counter get: $out"
  else
    fail "pingpong counter get printed '$out', expected $want"
  fi
}

# --- load: the zero-downtime steps ------------------------------------------------------------

# A client that sends GET /pingpong one request at a time, each on a new connection (as many
# clients would), until load_stop, and records every answer as one line of $load_log:
# `<status> <body on one line>`; status 000 when nothing answered (refused, reset, timeout).
load_log=""
load_pid=""
load_start() {
  load_log="$work/load.$1.log"
  : >"$load_log"
  rm -f "$work/load.stop"
  (
    local out status
    while [[ -d "$work" && ! -e "$work/load.stop" ]]; do
      out="$(curl -s --max-time 10 -w "${nl}%{http_code}" "$pingpong_url" 2>/dev/null)" || true
      status="${out##*"$nl"}"
      out="${out%"$nl"*}"
      printf '%s %s\n' "${status:-000}" "${out//$nl/ }" >>"$load_log"
    done
  ) &
  load_pid=$!
}

# Waits until the client has recorded N more answers than it had when called (so the load runs
# before and after an operation, not only during it).
load_wait_answers() {
  local more="$1" target deadline
  target=$(($(load_answers) + more))
  deadline=$(($(now_ms) + ready_timeout * 1000))
  while (($(load_answers) < target)); do
    (($(now_ms) < deadline)) || die "the load client recorded no $more more answers within ${ready_timeout}s"
    sleep 0.1
  done
}
load_answers() { echo $(($(wc -l <"$load_log"))); }

load_stop() {
  [[ -n "$load_pid" ]] || return 0
  : >"$work/load.stop"
  wait "$load_pid" 2>/dev/null || true
  load_pid=""
}

# load_check WHAT BASELINE MODE: the answers recorded since the counter held BASELINE, against
# the counter now. Every acknowledged number is distinct and in [BASELINE, count); the counter
# is exactly BASELINE + acknowledged answers, except that a request that failed after its
# increment was written leaves a gap (never more gaps than failures). MODE `none-fail` also
# requires 0 failed requests (graceful deletion, rolling update); `report` only reports them.
# Sets load_failed. Leaves `last` at count - 1, so the next answer must be exactly `count`.
load_failed=0
load_check() {
  local what="$1" baseline="$2" mode="$3" total acked dups outside gap statuses
  counter_get
  total=$(($(wc -l <"$load_log")))
  acked="$(awk '$1 == 200 && $2 == "pong" && $3 ~ /^[0-9]+$/ && NF == 3 { print $3 }' "$load_log")"
  printf '%s\n' "$acked" | sed '/^$/d' >"$work/acked"
  local n_acked
  n_acked=$(($(wc -l <"$work/acked")))
  load_failed=$((total - n_acked))
  dups="$(sort -n "$work/acked" | uniq -d | head -5 | tr '\n' ' ')"
  outside="$(awk -v lo="$baseline" -v hi="$count" '$1 < lo || $1 >= hi' "$work/acked" | head -5 | tr '\n' ' ')"
  gap=$((count - baseline - n_acked))
  statuses="$(awk '!($1 == 200 && $2 == "pong" && NF == 3) { print $1 }' "$load_log" |
    sort | uniq -c | awk '{ printf "%s%s x %s", sep, $2, $1; sep = ", " }')"
  info "$what: $total requests, $n_acked acknowledged, $load_failed failed${statuses:+ ($statuses)};" \
    "counter $baseline -> $count"
  if [[ "$mode" == none-fail ]]; then
    if ((load_failed == 0)); then
      pass "$what: 0 failed requests out of $total"
    else
      fail "$what: $load_failed of $total requests failed ($statuses), expected 0;" \
        "first: $(awk '!($1 == 200 && $2 == "pong" && NF == 3)' "$load_log" | head -3 | cut -c 1-120 | tr '\n' '|')"
    fi
  else
    pass "$what: $load_failed of $total requests failed (reported, not asserted)"
  fi
  if [[ -z "$dups" ]]; then
    pass "$what: all $n_acked acknowledged numbers are distinct"
  else
    fail "$what: numbers acknowledged twice: $dups"
  fi
  if [[ -z "$outside" ]]; then
    pass "$what: every acknowledged number is in [$baseline, $count)"
  else
    fail "$what: acknowledged numbers outside [$baseline, $count): $outside"
  fi
  if ((gap == 0)); then
    pass "$what: counter $count = baseline $baseline + $n_acked acknowledged, exactly"
  elif ((gap > 0 && gap <= load_failed)) && [[ "$mode" != none-fail ]]; then
    pass "$what: counter $count = baseline $baseline + $n_acked acknowledged + $gap written" \
      "but never answered (gap $gap, at most the $load_failed failed)"
  else
    fail "$what: counter $count, expected baseline $baseline + $n_acked acknowledged" \
      "(difference $gap, $load_failed failed)"
  fi
  last=$((count - 1))
}

# under_load NAME MODE OPERATION...: runs OPERATION while the load client runs, with at least 20
# answers before it and 20 after it, then checks the answers (load_check NAME BASELINE MODE) and
# that the next answer is exactly the counter.
under_load() {
  local name="$1" mode="$2" baseline
  shift 2
  counter_get
  baseline="$count"
  load_start "$(echo "$name" | tr -c 'a-z0-9\n' '-')"
  load_wait_answers 20
  "$@"
  load_wait_answers 20
  load_stop
  load_check "$name" "$baseline" "$mode"
  expect_next_pong "after the load"
}
