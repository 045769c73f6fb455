#!/usr/bin/env bash
# The k3d engine of test-persistent.sh, all nine steps, against a cluster played by local
# processes (test/k3d-stub/kubectl) with HAProxy as the ingress (routing /pingpong to the ready
# pingpong pods, the rest to log-reader; health checks stand in for endpoint updates). No
# Docker or k3d needed. TEST_BASH names the bash that runs test-persistent.sh (default: the one
# on PATH): with a bash 3.2 this checks, by running it, that the k3d path works on the bash
# macOS ships. BIN_DIR: the binaries (default target/release). bash 4 (the stub, not the test).
#
#   test/k3d-stub/run.sh
#   TEST_BASH=/path/to/bash-3.2 BIN_DIR=target/x86_64-unknown-linux-gnu/release test/k3d-stub/run.sh
#
# Its last line is test-persistent.sh's `N passed, M failed`, and so is its exit status.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
stub_dir="$(mktemp -d)"
export STUB_DIR="$stub_dir"
BIN_DIR="$(cd "${BIN_DIR:-$repo/target/release}" && pwd)"
export BIN_DIR
haproxy_pid=""

# Kills every process a stub pod started, and the ingress.
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local pid
  for pid in "$stub_dir"/pods/*/pid "$stub_dir"/pods/*/writer-pid; do
    if [[ -e "$pid" ]]; then kill -KILL "$(cat "$pid")" 2>/dev/null || true; fi
  done
  if [[ -n "$haproxy_pid" ]]; then kill "$haproxy_pid" 2>/dev/null || true; fi
  rm -rf "$stub_dir"
}
trap cleanup EXIT

taken_ports=""
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 12000))
    case " $taken_ports " in *" $port "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
}

command -v haproxy >/dev/null || { echo "haproxy is not installed (apt-get install haproxy)" >&2; exit 1; }
host_port="$(free_port)"
taken_ports="$host_port"
for app in pingpong log-output; do
  for i in 1 2 3 4 5 6; do
    port="$(free_port)"
    taken_ports+=" $port"
    echo "$port" >>"$stub_dir/$app-ports"
  done
done
# servers APP: one HAProxy server line per slot of APP.
servers() {
  local i=0 port
  while read -r port; do
    i=$((i + 1))
    echo "  server r$i 127.0.0.1:$port check"
  done <"$stub_dir/$1-ports"
}
{
  cat <<CFG
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout check 2s
  retries 0
frontend ingress
  bind 127.0.0.1:$host_port
  use_backend pingpong if { path_beg /pingpong }
  default_backend log-output
backend log-output
  option httpchk GET /readyz
  default-server inter 1s fall 2 rise 1
$(servers log-output)
backend pingpong
  balance roundrobin
  option httpchk GET /readyz
  default-server inter 1s fall 2 rise 1
$(servers pingpong)
CFG
} >"$stub_dir/haproxy.cfg"
haproxy -db -f "$stub_dir/haproxy.cfg" >"$stub_dir/haproxy.log" 2>&1 &
haproxy_pid=$!

PATH="$repo/test/k3d-stub:$PATH" kubectl apply -k "$repo/manifests"
echo "k3d stub: ingress on 127.0.0.1:$host_port, bash ${TEST_BASH:-bash}"
status=0
PATH="$repo/test/k3d-stub:$PATH" HOST_PORT="$host_port" READY_TIMEOUT=60 \
  "${TEST_BASH:-bash}" "$repo/test-persistent.sh" --engine k3d || status=$?
exit "$status"
