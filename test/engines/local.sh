# shellcheck shell=bash disable=SC2034,SC2154 # variables shared with the sourcing script
# Engine local for test-persistent.sh: the three binaries from BIN_DIR (default target/release,
# built if needed) on a temporary DATA_DIR and free ports; a pod deletion is kill -9 and a
# restart. bash 4 (CI only).
#
# Interface: see test/engines/k3d.sh.

engine_ready_timeout=60

declare -A pids=()
declare -A ports=()
bin_dir=""
data_dir=""

free_port() {
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

engine_setup() {
  if [[ -n "${BIN_DIR:-}" ]]; then
    bin_dir="$BIN_DIR"
  else
    info "cargo build --release (binaries for the local engine)"
    (cd "$repo" && cargo build --release --quiet --bin pingpong --bin log-writer --bin log-reader)
    bin_dir="$repo/target/release"
  fi
  local bin
  for bin in pingpong log-writer log-reader; do
    [[ -x "$bin_dir/$bin" ]] || die "no executable $bin_dir/$bin"
  done
  data_dir="$work/files"
  ports[pingpong]="$(free_port)"
  ports[log-reader]="$(free_port)"
  interval_ms=1000
  pingpong_url="http://127.0.0.1:${ports[pingpong]}/pingpong"
  log_url="http://127.0.0.1:${ports[log-reader]}/"
  info "binaries $bin_dir, DATA_DIR $data_dir, LOG_INTERVAL 1s"
  local_start pingpong
  local_start log-writer
  local_start log-reader
  local_wait_ready
}

local_start() {
  local name="$1"
  local -a env=(DATA_DIR="$data_dir" RUST_LOG=info)
  case "$name" in
    log-writer) env+=(LOG_INTERVAL=1s) ;;
    *) env+=(PORT="${ports[$name]}") ;;
  esac
  env "${env[@]}" "$bin_dir/$name" >>"$work/$name.log" 2>&1 &
  pids[$name]=$!
}

# SIGKILL, like a node losing the pod: nothing gets to finish.
local_kill9() {
  local name
  for name in "$@"; do
    kill -KILL "${pids[$name]}" 2>/dev/null || true
    wait "${pids[$name]}" 2>/dev/null || true
    info "kill -9 $name (pid ${pids[$name]})"
    local_start "$name"
  done
}

# SIGTERM, like deleting the app: each process must drain and exit 0 (SPEC §6).
local_stop_all() {
  local name status
  for name in pingpong log-writer log-reader; do
    kill -TERM "${pids[$name]}"
  done
  for name in pingpong log-writer log-reader; do
    status=0
    wait "${pids[$name]}" || status=$?
    if [[ "$status" == 0 ]]; then
      pass "$name exits 0 on SIGTERM"
    else
      fail "$name exited $status on SIGTERM, expected 0"
    fi
  done
}

local_wait_ready() {
  wait_http_ok "http://127.0.0.1:${ports[pingpong]}/readyz" "$ready_timeout" ||
    die "pingpong not ready within ${ready_timeout}s: $code $body"
  wait_http_ok "http://127.0.0.1:${ports[log-reader]}/readyz" "$ready_timeout" ||
    die "log-reader not ready within ${ready_timeout}s: $code $body"
}

engine_delete_pingpong() { local_kill9 pingpong; local_wait_ready; }
engine_delete_log_output() { local_kill9 log-writer log-reader; local_wait_ready; }
engine_delete_both() { local_kill9 pingpong log-writer log-reader; local_wait_ready; }
engine_recreate_app() {
  info "SIGTERM pingpong, log-writer, log-reader; start them again"
  local_stop_all
  local_start pingpong
  local_start log-writer
  local_start log-reader
  local_wait_ready
}

engine_counter_get() { DATA_DIR="$data_dir" "$bin_dir/pingpong" counter get; }

engine_diagnostics() {
  local name
  for name in pingpong log-writer log-reader; do
    echo "--- $name (pid ${pids[$name]:-none}): last 30 lines of its output"
    tail -n 30 "$work/$name.log" 2>/dev/null || true
  done
  echo "--- DATA_DIR"
  ls -la "$data_dir" 2>/dev/null || true
}

engine_cleanup() {
  local name
  for name in "${!pids[@]}"; do
    kill -KILL "${pids[$name]}" 2>/dev/null || true
    wait "${pids[$name]}" 2>/dev/null || true
  done
}
