#!/usr/bin/env bash
# Runs the whole system on this machine as the pod does: pingpong, log-writer and log-reader
# sharing ./files as DATA_DIR. Ctrl-C stops all three. See --help.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ./run-local.sh [--release]

Builds the workspace (debug; --release for the optimised build, which compiles much longer),
starts pingpong, log-writer and log-reader sharing ./files as DATA_DIR, prints their URLs and
their logs (each line prefixed with its name). Ctrl-C or SIGTERM stops all three and exits 0;
if one of them stops by itself, the others are stopped too and the exit status is 1.

Environment:
  PINGPONG_PORT     pingpong's port                                    [default: 3000]
  LOG_READER_PORT   log-reader's port                                  [default: 3001]
  LOG_INTERVAL      log-writer's time between entries: 250ms, 5s, 1m   [default: 5s]
  RUST_LOG          log filter of all three                            [default: info]
  LOG_FORMAT        text or json: how all three log                    [default: text]
  LISTEN_ADDRESS    where pingpong and log-reader listen: 127.0.0.1 serves this machine
                    only; :: (or 0.0.0.0) also the local network        [default: 127.0.0.1]
EOF
}

profile=debug
cargo_flags=()
case "${1-}" in
  "") ;;
  --release)
    profile=release
    cargo_flags=(--release)
    ;;
  -h | --help) usage && exit 0 ;;
  *) usage >&2 && exit 2 ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")"
pingpong_port=${PINGPONG_PORT:-3000}
reader_port=${LOG_READER_PORT:-3001}
# Loopback unless told otherwise: the counter is not the local network's to increment.
listen_address=${LISTEN_ADDRESS:-127.0.0.1}
# Where this script checks the ports and the URLs it prints point: the address itself, or
# loopback when it is every address.
case "$listen_address" in
  0.0.0.0 | :: | "[::]") local_address=127.0.0.1 ;;
  *) local_address=$listen_address ;;
esac
local_address=${local_address#[}
local_address=${local_address%]}
case "$local_address" in
  127.0.0.1) url_host=localhost ;;
  *:*) url_host="[$local_address]" ;;
  *) url_host=$local_address ;;
esac
data_dir="$PWD/files"
bin="${CARGO_TARGET_DIR:-$PWD/target}/$profile"

names=()
pids=()
sleeper=

# Stops whatever was started and waits for it: SPEC §6 promises each service exits within 10 s
# of SIGTERM.
stop_all() {
  trap - INT TERM
  for pid in ${pids[@]+"${pids[@]}"} $sleeper; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait
}
trap stop_all EXIT
trap 'echo; echo "stopping pingpong, log-writer and log-reader"; exit 0' INT TERM

# start NAME VAR=VALUE... BINARY: runs it in the background with its output prefixed by NAME.
start() {
  local name=$1
  shift
  # The prefixing loop ignores Ctrl-C so the service's last lines still get through while it
  # drains; it ends when the service closes its output. (awk would buffer a pipe's input.)
  env "$@" > >(
    trap '' INT TERM
    while IFS= read -r line; do printf '[%s] %s\n' "$name" "$line"; done
  ) 2>&1 &
  names+=("$name")
  pids+=("$!")
}

# Exits 1 naming the first service that has stopped, if any.
check_running() {
  local i status
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      status=0
      wait "${pids[$i]}" || status=$?
      echo "error: ${names[$i]} stopped (exit status $status); its log is above" >&2
      exit 1
    fi
  done
}

# Whether something accepts connections on the listen address's PORT (bash's /dev/tcp: no curl
# needed).
listening() {
  (exec 3<>"/dev/tcp/$local_address/$1") 2>/dev/null
}

echo "1/3 building the workspace ($profile)"
command -v cargo >/dev/null || {
  echo "error: cargo not found; install Rust from https://rustup.rs" >&2
  exit 1
}
cargo build --workspace ${cargo_flags[@]+"${cargo_flags[@]}"}

echo "2/3 starting pingpong, log-writer and log-reader with DATA_DIR=$data_dir"
for port in "$pingpong_port" "$reader_port"; do
  if listening "$port"; then
    echo "error: port $port is already in use (set PINGPONG_PORT / LOG_READER_PORT)" >&2
    exit 1
  fi
done
start pingpong PORT="$pingpong_port" LISTEN_ADDRESS="$listen_address" DATA_DIR="$data_dir" \
  "$bin/pingpong"
start log-writer DATA_DIR="$data_dir" "$bin/log-writer"
start log-reader PORT="$reader_port" LISTEN_ADDRESS="$listen_address" DATA_DIR="$data_dir" \
  "$bin/log-reader"

waited=0
until listening "$pingpong_port" && listening "$reader_port"; do
  check_running
  if ((waited++ >= 100)); then
    echo "error: ports $pingpong_port and $reader_port not both listening after 10 s" >&2
    exit 1
  fi
  sleep 0.1
done

echo "3/3 running; Ctrl-C stops all three"
echo "  pingpong:   http://$url_host:$pingpong_port/pingpong"
echo "  log-reader: http://$url_host:$reader_port/"

# `wait` returns as soon as a trapped signal arrives, where a bare `sleep` would delay the trap.
while true; do
  check_running
  sleep 1 &
  sleeper=$!
  wait "$sleeper" || true
done
