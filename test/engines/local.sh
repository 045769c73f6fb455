# shellcheck shell=bash disable=SC2034,SC2154 # variables shared with the sourcing script
# Engine local for test-persistent.sh: the binaries from BIN_DIR (default target/release, built
# if needed) on a temporary DATA_DIR and free loopback ports: two pingpong processes (replicas)
# behind HAProxy (test/haproxy.sh) in the Service's place, log-writer and log-reader. A pod
# deletion is kill -9 and a restart; a graceful one SIGTERM. SHUTDOWN_DELAY as in the manifests.
# bash 4 (CI only).
#
# Replicas live in slots pingpong-1..3, each with its own port and HAProxy server r1..r3; two
# are live, the third is the spare a rolling update starts the new replica in.
#
# PREVIOUS_BIN_DIR (optional): the previous release's binaries. Then the rolling update goes
# down to that release and back up, replica by replica, under the same load: old and new
# replicas share the volume during both rollouts (.ci/engine.sh sets it).
#
# Interface: see test/engines/k3d.sh.

# shellcheck source=test/haproxy.sh
. "$repo/test/haproxy.sh"

engine_ready_timeout=60
shutdown_delay="${SHUTDOWN_DELAY:-5s}"

declare -A pids=()
declare -A ports=()
live=(pingpong-1 pingpong-2)   # the replicas behind HAProxy now
spare=pingpong-3
bin_dir=""
pingpong_bin=""   # the binary the next replica starts from
data_dir=""

engine_setup() {
  if [[ -n "${BIN_DIR:-}" ]]; then
    bin_dir="$BIN_DIR"
  else
    info "cargo build --release (binaries for the local engine)"
    (cd "$repo" && cargo build --release --quiet --bin pingpong --bin log-writer --bin log-reader)
    bin_dir="$repo/target/release"
  fi
  local bin name
  for bin in pingpong log-writer log-reader; do
    [[ -x "$bin_dir/$bin" ]] || die "no executable $bin_dir/$bin"
  done
  pingpong_bin="$bin_dir/pingpong"
  if [[ -n "${PREVIOUS_BIN_DIR:-}" ]]; then
    [[ -x "$PREVIOUS_BIN_DIR/pingpong" ]] || die "no executable $PREVIOUS_BIN_DIR/pingpong"
  fi
  data_dir="$work/files"
  for name in pingpong-1 pingpong-2 pingpong-3 log-reader haproxy; do
    ports[$name]="$(free_port)"
    taken_ports+=" ${ports[$name]}"
  done
  interval_ms=1000
  pingpong_url="http://127.0.0.1:${ports[haproxy]}/pingpong"
  log_url="http://127.0.0.1:${ports[log-reader]}/"
  info "binaries $bin_dir, DATA_DIR $data_dir, LOG_INTERVAL 1s, SHUTDOWN_DELAY $shutdown_delay"
  haproxy_start "${ports[haproxy]}" "${ports[pingpong-1]}" "${ports[pingpong-2]}" "${ports[pingpong-3]}"
  for name in "${live[@]}" log-writer log-reader; do
    local_start "$name"
  done
  local_wait_ready "${live[@]}" log-reader
  haproxy_wait_state 3 DOWN
}

# The HAProxy server number of a replica slot: pingpong-2 is r2.
slot() { echo "${1#pingpong-}"; }

local_start() {
  local name="$1"
  local -a env=(DATA_DIR="$data_dir" RUST_LOG=info)
  case "$name" in
    log-writer) env+=(LOG_INTERVAL=1s) ;;
    *) env+=(PORT="${ports[$name]}" SHUTDOWN_DELAY="$shutdown_delay") ;;
  esac
  local bin="$bin_dir/${name%-[0-9]}"
  [[ "$name" == pingpong-* ]] && bin="$pingpong_bin"
  env "${env[@]}" "$bin" >>"$work/$name.log" 2>&1 &
  pids[$name]=$!
}

# Waits until each process answers 200 on /readyz, and HAProxy has each replica among them UP.
local_wait_ready() {
  local name
  for name in "$@"; do
    [[ "$name" == log-writer ]] && continue
    wait_http_ok "http://127.0.0.1:${ports[$name]}/readyz" "$ready_timeout" ||
      die "$name not ready within ${ready_timeout}s: $code $body"
    if [[ "$name" == pingpong-* ]]; then
      haproxy_wait_state "$(slot "$name")" UP
    fi
  done
}

# SIGKILL, like a node losing the pod: nothing gets to finish. Then a restart in the same slot.
local_kill9() {
  local name
  for name in "$@"; do
    kill -KILL "${pids[$name]}" 2>/dev/null || true
    wait "${pids[$name]}" 2>/dev/null || true
    info "kill -9 $name (pid ${pids[$name]})"
    local_start "$name"
  done
}

# SIGTERM to each, then each must serve out SHUTDOWN_DELAY, drain and exit 0 (local_reap).
local_term() {
  local name
  for name in "$@"; do
    kill -TERM "${pids[$name]}"
  done
  local_reap "$@"
}

# Waits for each process that was sent SIGTERM: it must exit 0 within the delay + 10 s (SPEC
# §6); after the delay + 15 s it is killed and fails.
local_reap() {
  local name status deadline
  deadline=$(($(now_ms) + $(interval_to_ms "$shutdown_delay") + 15000))
  for name in "$@"; do
    while kill -0 "${pids[$name]}" 2>/dev/null && (($(now_ms) < deadline)); do
      sleep 0.1
    done
    kill -KILL "${pids[$name]}" 2>/dev/null || true
    status=0
    wait "${pids[$name]}" || status=$?
    if [[ "$status" == 0 ]]; then
      pass "$name exits 0 on SIGTERM"
    else
      fail "$name exited $status on SIGTERM, expected 0"
    fi
  done
}

engine_delete_pingpong() { local_kill9 "${live[@]}"; local_wait_ready "${live[@]}"; }
engine_delete_log_output() { local_kill9 log-writer log-reader; local_wait_ready log-reader; }
engine_delete_both() {
  local_kill9 "${live[@]}" log-writer log-reader
  local_wait_ready "${live[@]}" log-reader
}
engine_recreate_app() {
  info "SIGTERM ${live[*]}, log-writer, log-reader; start them again"
  local_term "${live[@]}" log-writer log-reader
  local name
  for name in "${live[@]}" log-writer log-reader; do
    local_start "$name"
  done
  local_wait_ready "${live[@]}" log-reader
}

# Graceful deletion of one replica, as Kubernetes does it: SIGTERM, and at the same moment the
# ReplicaSet's replacement starts in the spare slot (a new pod is a new endpoint). HAProxy sees
# /readyz turn 503 within its checks while the old process keeps serving for SHUTDOWN_DELAY.
engine_delete_replica() {
  local victim="${live[0]}" new="$spare"
  info "SIGTERM $victim (pid ${pids[$victim]}); its replacement starts in $new"
  kill -TERM "${pids[$victim]}"
  local_start "$new"
  local_wait_ready "$new"
  local_reap "$victim"
  live[0]="$new"
  spare="$victim"
}

# maxSurge 1, maxUnavailable 0, replica by replica: the new one in the spare slot, ready and UP
# in HAProxy, then SIGTERM to an old one, whose slot becomes the spare. With PREVIOUS_BIN_DIR,
# down to the previous release and back up to this one.
engine_roll_pingpong() {
  if [[ -n "${PREVIOUS_BIN_DIR:-}" ]]; then
    info "rolling down to the previous release ($PREVIOUS_BIN_DIR/pingpong)"
    local_roll "$PREVIOUS_BIN_DIR/pingpong"
    info "rolling up to this release ($bin_dir/pingpong)"
  fi
  local_roll "$bin_dir/pingpong"
}

local_roll() {
  local old new i
  pingpong_bin="$1"
  for i in "${!live[@]}"; do
    old="${live[$i]}"
    new="$spare"
    info "rolling: start $new, wait until HAProxy has it UP, then SIGTERM $old"
    local_start "$new"
    local_wait_ready "$new"
    local_term "$old"
    live[i]="$new"
    spare="$old"
  done
}

engine_kill_replica() {
  local victim="${live[0]}"
  kill -KILL "${pids[$victim]}" 2>/dev/null || true
  wait "${pids[$victim]}" 2>/dev/null || true
  info "kill -9 $victim (pid ${pids[$victim]}); HAProxy routes to it until its checks fail"
  haproxy_wait_state "$(slot "$victim")" DOWN
  local_start "$victim"
  local_wait_ready "$victim"
}

engine_counter_get() { DATA_DIR="$data_dir" "$bin_dir/pingpong" counter get; }

engine_diagnostics() {
  local name
  for name in pingpong-1 pingpong-2 pingpong-3 log-writer log-reader; do
    [[ -e "$work/$name.log" ]] || continue
    echo "--- $name (pid ${pids[$name]:-none}): last 30 lines of its output"
    tail -n 30 "$work/$name.log" 2>/dev/null || true
  done
  echo "--- DATA_DIR"
  ls -la "$data_dir" 2>/dev/null || true
  haproxy_diagnostics
}

engine_cleanup() {
  local name
  for name in "${!pids[@]}"; do
    kill -KILL "${pids[$name]}" 2>/dev/null || true
    wait "${pids[$name]}" 2>/dev/null || true
  done
  haproxy_stop
}
