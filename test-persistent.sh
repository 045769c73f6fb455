#!/usr/bin/env bash
# portable: bash 3.2 and BSD userland (macOS)
#
# Persistence test on a real engine (SPEC §7, guarantees 1 and 4).
#
#   ./test-persistent.sh [--engine k3d|podman|local] [--requests K] [--keep]
#
#   k3d     (default) the app as deployed by deploy/k3d-up.sh, through the Traefik ingress at
#           BASE_URL (default http://localhost:$HOST_PORT, HOST_PORT 8081); pods are deleted
#           with kubectl, in the context KUBE_CONTEXT (default k3d-k3s-default). Needs only
#           bash (3.2 will do), curl and kubectl.
#   podman  plays storage/persistentvolumeclaim.yaml once and each Deployment through its overlay
#           in deploy/podman/ (log on 127.0.0.1:18081, LOG_INTERVAL=1s), pingpong twice as
#           pingpong-1 and pingpong-2 (:18091, :18092) behind HAProxy on :18080; a pod is
#           deleted with `podman pod rm -f` and its Deployment played again. Builds the images
#           with deploy/build-images.sh if they are missing. Removes its pods at the end (unless
#           --keep); the volume, like a PV, stays.
#   local   runs the binaries from BIN_DIR (default: target/release, built if needed) on a
#           temporary DATA_DIR and free ports, two pingpong processes behind HAProxy; a pod
#           deletion is kill -9 and a restart. SHUTDOWN_DELAY (default 5s, as the manifests).
#   HAProxy (podman, local; Debian package, installed when missing) stands in for the Service:
#           round-robin, GET /readyz every second, no retries (test/haproxy.sh).
#
# Steps (exact equality throughout, never "at least"):
#   0. set up; podman: each container runs as 10001 with a read-only root, no capabilities
#   1. a baseline /pingpong, K more, each exactly one more; `/` shows the count within two
#      log intervals, in the exact entry format; `pingpong counter get` run inside the app
#      (no shell there) prints the same count
#   2. delete the pingpong pod: the next answer is exactly the last acknowledged + 1
#   3. delete the log-output pod: `/` shows the current count again, from a new writer
#   4. delete both: the count continues exactly, and `/` follows
#   5. delete and re-create the whole app (not the storage): the count continues exactly;
#      podman and local: every process exits 0 on SIGTERM
# Zero downtime (SPEC §7 guarantee 5), each under constant load from a client that records every
# answer, through the load balancer (k3d: the Service behind the ingress; podman and local:
# HAProxy over two replicas, test/haproxy.sh). After each: every acknowledged number is
# distinct and the counter is exactly the baseline + the acknowledged answers, except for
# requests that failed after their increment was written (the gap is printed, never a
# duplicate); the next answer is exactly the counter.
#   6. graceful deletion of one pingpong replica: 0 failed requests
#   7. a rolling update of pingpong, replica by replica, new before old: 0 failed requests
#   8. kill -9 of one replica: failed requests are reported, not asserted
#   9. k3d only, when the volume is pinned to one node (storage/'s local PV): kubectl drain of
#      that node, under load, given DRAIN_TIMEOUT seconds (default 30): the PodDisruptionBudget
#      blocks it, one replica keeps answering; then kubectl uncordon, and everything comes back
# k3d, in step 0: only / and /pingpong are public; /metrics, /readyz, /pings... through the
# ingress answer the ingress's own 404.
#
# Each engine's operations live in test/engines/<engine>.sh, the shared checks in
# test/common.sh. On failure it prints pod states and logs. The last line is
# `N passed, M failed`; the exit status is non-zero if anything failed.
set -euo pipefail

usage() {
  sed -n '4,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

engine=k3d
requests=5
keep=false
while (($#)); do
  case "$1" in
    --engine) engine="${2:?--engine needs a value}"; shift 2 ;;
    --engine=*) engine="${1#*=}"; shift ;;
    --requests) requests="${2:?--requests needs a value}"; shift 2 ;;
    --requests=*) requests="${1#*=}"; shift ;;
    --keep) keep=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$engine" in
  k3d | podman | local) ;;
  *) echo "--engine must be k3d, podman or local, not '$engine'" >&2; exit 2 ;;
esac
if ! [[ "$requests" =~ ^[1-9][0-9]*$ ]]; then
  echo "--requests must be a positive integer, not '$requests'" >&2
  exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034 # keep is read by test/engines/podman.sh
readonly repo engine requests keep
export TAG="${TAG:-0.1.0}"
work="$(mktemp -d "${TMPDIR:-/tmp}/test-persistent.XXXXXX")"
readonly work

# shellcheck source=test/common.sh
. "$repo/test/common.sh"
# shellcheck source=test/engines/k3d.sh
. "$repo/test/engines/$engine.sh"

on_exit() {
  local status=$?
  trap - EXIT
  set +e
  if ((status != 0 && failed == 0)); then
    fail "aborted (exit status $status)"
  fi
  load_stop
  engine_cleanup 2>/dev/null
  rm -rf "$work"
  echo
  echo "$passed passed, $failed failed"
  if ((failed > 0)); then
    exit 1
  fi
  exit 0
}
trap on_exit EXIT
trap 'exit 130' INT TERM

ready_timeout="${READY_TIMEOUT:-$engine_ready_timeout}"
interval_ms=5000
pingpong_url=""
log_url=""

step "0. set up ($engine)"
engine_setup
info "pingpong: $pingpong_url   log: $log_url   log interval: ${interval_ms} ms"

step "1. a baseline /pingpong, $requests more, and '/' within two intervals"
ping
last="$got"
pass "baseline: pong $last"
for i in $(seq "$requests"); do
  expect_next_pong "request $i of $requests"
done
expect_log "after $requests requests"
expect_entry_format
expect_counter_get

step "2. delete the pingpong pod"
engine_delete_pingpong
expect_next_pong "after the pingpong pod was deleted"
expect_log "'/' follows"

step "3. delete the log-output pod"
engine_delete_log_output
expect_log "after the log-output pod was deleted" yes

step "4. delete both pods"
engine_delete_both
expect_next_pong "after both pods were deleted"
expect_log "'/' follows" yes

step "5. delete and re-create the whole app (not the storage)"
engine_recreate_app
expect_next_pong "after the app was re-created"
expect_log "'/' follows" yes

step "6. graceful deletion of one pingpong replica, under load"
under_load "graceful deletion" none-fail engine_delete_replica

step "7. rolling update of pingpong, under load"
under_load "rolling update" none-fail engine_roll_pingpong

step "8. kill -9 of one pingpong replica, under load"
under_load "kill -9" report engine_kill_replica

if declare -F engine_drain_volume_node >/dev/null; then
  step "9. kubectl drain of the volume's node, under load, then uncordon"
  engine_drain_volume_node
fi
