#!/usr/bin/env bash
# CI: pingpong replicas on two client mounts of one ReadWriteMany volume, on GlusterFS and on
# CephFS stood up from Debian's packages on loopback (test/rwx/), behind HAProxy, under load
# (test/rwx/multinode.py). Scenarios, each on each filesystem:
#   a. 1, 2 and 4 replicas over the two mounts (and on a local directory, for comparison);
#   b. log-writer on m1 while pingpong runs on m2: output.log read on m2 never goes backwards;
#   c. a partition: the FUSE client of the mount whose replica holds the lock is stopped until
#      the filesystem gives the lock away (GlusterFS: its packets are dropped too, see FACTS.md),
#      then resumed: no number twice, no stale value published, failures counted; on GlusterFS
#      also without client.strict-locks (nothing fences the resumed replica's descriptor);
#   d. the hazard: GlusterFS with default options and the previous release's pingpong (rename
#      recipe): passes when it shows duplicates or 5xx.
# Installs what is missing, builds the binaries (cargo; debug, or release with
# RWX_PROFILE=release) unless RWX_BIN names them,
# tears everything down even on failure, and ends with `N passed, M failed`.
#
# Environment: RWX_BIN (directory with pingpong and log-writer), RWX_HAZARD_BIN (pingpong for
# d; default: the previous release's, test_support::PREVIOUS_RELEASE, built as .ci/engine.sh
# builds it), RWX_SECONDS (load per run, default 6), RWX_PORT_BASE (default 19000; HAProxy and the
# replicas use the next 10 ports; CephFS takes 20 ports in 19100-19199), RWX_GLUSTER_OPTIONS
# (`glusterfs.sh up` options for a-c), RWX_ONLY (glusterfs, cephfs or local), RWX_FIGURES (a
# file each scenario's figures are appended to, one JSON object a line: bench/rwx-bench.py).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
# shellcheck source=.ci/test-report.sh
. .ci/test-report.sh
# shellcheck source=test/rwx/lib.sh
. test/rwx/lib.sh
# shellcheck source=.ci/previous-release.sh
. .ci/previous-release.sh

seconds="${RWX_SECONDS:-6}"
port_base="${RWX_PORT_BASE:-19000}"
only="${RWX_ONLY:-}"
# a-c on GlusterFS: the options today's recipe needs (rwx-notes); client.strict-locks, without
# which a descriptor whose lock the brick dropped is silently reopened (FACTS.md, 1); and short
# server-side timeouts so that a partitioned client's lock is given away after 5 s, not 42 s.
read -r -a gluster_options <<<"${RWX_GLUSTER_OPTIONS:---set performance.open-behind off \
--set performance.stat-prefetch off --set client.strict-locks on --set server.keepalive-time 2 \
--set server.keepalive-interval 1 --set server.keepalive-count 3 --set server.tcp-user-timeout 5 \
--set network.ping-timeout 5}"
instances=()
summary=()

teardown() {
  local dir
  for dir in "${instances[@]}"; do
    case "$(state_get "$dir" FS)" in
      glusterfs) bash test/rwx/glusterfs.sh down "$dir" || true ;;
      cephfs) bash test/rwx/cephfs.sh down "$dir" || true ;;
    esac
  done
  instances=()
}
rwx_exit() {
  local status=$?
  teardown
  if ((${#summary[@]})); then
    printf '\n==> figures (failed-in, failed-after: requests failed during the partition and after it; gap:
    the longest time in seconds without one answered request)
%-26s %8s %8s %5s %6s %7s %9s %9s %6s\n' scenario requests answered dups 5xx "req/s" "failed-in" "failed-aft" gap
    printf '%s\n' "${summary[@]}"
  fi
  (exit "$status")
  on_exit
}
trap rwx_exit EXIT

# Runs one multinode.py scenario; NAME, then its options. Passes when it exits 0.
scenario() {
  local name="$1" status=0
  shift
  info "multinode.py $name: $*"
  python3 test/rwx/multinode.py --work "$work/$name" --label "$name" --port-base "$port_base" "$@" \
    >"$work/$name.out" 2>&1 || status=$?
  grep -E '^(partition:|problem:|ok |FAILED)' "$work/$name.out" | sed 's/^/      /' || true
  if [[ -n "${RWX_FIGURES:-}" ]]; then
    sed -n 's/^FIGURES //p' "$work/$name.out" >>"$RWX_FIGURES"
  fi
  summary+=("$(python3 - "$work/$name.out" "$name" <<'PY'
import json, sys
f = {}
for line in open(sys.argv[1]):
    if line.startswith("FIGURES "):
        f = json.loads(line[8:])
g = lambda k: f.get(k, "-")
print("%-26s %8s %8s %5s %6s %7s %9s %9s %6s" % (sys.argv[2], g("requests"), g("answered"),
      g("duplicates"), g("5xx"), g("req_per_s"), g("failed_during_partition"),
      g("failed_after_partition"), g("longest_gap_s")))
PY
)")
  if ((status == 0)); then
    pass "$name"
  else
    fail "$name (exit $status; output $work/$name.out)"
    tail -n 25 "$work/$name.out" | sed 's/^/      /'
  fi
}

fuse_pids() { echo "$(state_get "$1" M1_PID),$(state_get "$1" M2_PID)"; }

# Stands up an instance (torn down at exit): SCRIPT (glusterfs.sh or cephfs.sh), DIR, options.
fs_up() {
  local script="$1" dir="$2" t0
  shift 2
  instances+=("$dir")
  t0=$(now_ms)
  bash "test/rwx/$script" up "$dir" "$@" >"$dir.up.out" 2>&1 ||
    { cat "$dir.up.out"; die "$script up $dir failed"; }
  info "$script up in $(($(now_ms) - t0)) ms"
}

step "1. packages (haproxy, glusterfs, ceph, nftables, python3, procps, iproute2)"
t0=$(now_ms)
apt_install haproxy glusterfs-server glusterfs-client ceph-mon ceph-osd ceph-mds ceph-fuse procps iproute2 \
  ceph-common nftables python3
info "$(($(now_ms) - t0)) ms"

step "2. binaries"
if [[ -n "${RWX_BIN:-}" ]]; then
  bin="$RWX_BIN"
elif [[ "${RWX_PROFILE:-debug}" == release ]]; then
  cargo build --release --locked --quiet --bin pingpong --bin log-writer
  bin="${CARGO_TARGET_DIR:-$repo/target}/release"
else
  # Debug by default: .ci/run's cargo test has built it already, and the filesystems, not
  # the binary, set the pace here.
  cargo build --locked --quiet --bin pingpong --bin log-writer
  bin="${CARGO_TARGET_DIR:-$repo/target}/debug"
fi
# d is about the previous release's recipe (rename under the flock): its binary, unless given.
hazard_bin="${RWX_HAZARD_BIN:-$(previous_release_bin_dir)}"
for b in "$bin/pingpong" "$bin/log-writer" "$hazard_bin/pingpong"; do
  [[ -x "$b" ]] || die "no executable $b"
done
info "binaries $bin, hazard binary $hazard_bin"

if [[ -z "$only" || "$only" == local ]]; then
  step "3. a. a local directory (two 'mounts' that are one directory), 1, 2, 4 replicas"
  mkdir -p "$work/local"
  for n in 1 2 4; do
    scenario "local-$n" --bin "$bin" --mounts "$work/local" "$work/local" --replicas "$n" \
      --duration "$seconds"
  done
fi

if [[ -z "$only" || "$only" == glusterfs ]]; then
  step "4. GlusterFS, ${gluster_options[*]}"
  g="$work/gluster"
  fs_up glusterfs.sh "$g" "${gluster_options[@]}"
  for n in 1 2 4; do
    scenario "glusterfs-$n" --bin "$bin" --mounts "$g/m1" "$g/m2" --replicas "$n" --duration "$seconds"
  done
  scenario glusterfs-log-writer --bin "$bin" --mounts "$g/m1" "$g/m2" --pingpong-on 1 \
    --replicas 2 --log-writer --duration "$seconds"
  scenario glusterfs-partition --bin "$bin" --mounts "$g/m1" "$g/m2" --replicas 2 \
    --duration $((seconds + 18)) --fuse-pids "$(fuse_pids "$g")" --stop-seconds 12 \
    --cut-cmd "bash test/rwx/glusterfs.sh cut $g {mount}" \
    --heal-cmd "bash test/rwx/glusterfs.sh heal $g {mount}" \
    --holder-cmd "bash test/rwx/glusterfs.sh lock-holder $g pingpong_counter.txt.lock"
  teardown

  step "5. c without client.strict-locks: the resumed replica's descriptor is reopened, not fenced"
  g="$work/gluster-loose"
  loose=()
  for ((i = 0; i < ${#gluster_options[@]}; i++)); do
    if [[ "${gluster_options[i]}" == --set && "${gluster_options[i + 1]:-}" == client.strict-locks ]]; then
      i=$((i + 2))
    else
      loose+=("${gluster_options[i]}")
    fi
  done
  fs_up glusterfs.sh "$g" "${loose[@]}"
  scenario glusterfs-partition-loose --bin "$bin" --mounts "$g/m1" "$g/m2" --replicas 2 \
    --duration $((seconds + 18)) --fuse-pids "$(fuse_pids "$g")" --stop-seconds 12 \
    --cut-cmd "bash test/rwx/glusterfs.sh cut $g {mount}" \
    --heal-cmd "bash test/rwx/glusterfs.sh heal $g {mount}" \
    --holder-cmd "bash test/rwx/glusterfs.sh lock-holder $g pingpong_counter.txt.lock"
  teardown

  step "6. d. GlusterFS with default options: the hazard of the previous release's recipe"
  g="$work/gluster-defaults"
  fs_up glusterfs.sh "$g"
  scenario glusterfs-defaults-hazard --bin "$hazard_bin" --mounts "$g/m1" "$g/m2" --replicas 4 \
    --duration "$seconds" --expect-hazard
  teardown
fi

if [[ -z "$only" || "$only" == cephfs ]]; then
  # mds_tick_interval 1: replicas on two mounts hand the lock and the published file's
  # capabilities back and forth, and the MDS grants what a client gives back at its tick (5 s
  # by default: renames and flocks then waited 5 s, a request's whole timeout); FACTS.md §8-9.
  step "7. CephFS (mds_tick_interval 1), a silent client evicted after 5 s"
  c="$work/ceph"
  fs_up cephfs.sh "$c" --evict-after 5 --conf mds_tick_interval 1
  for n in 1 2 4; do
    scenario "cephfs-$n" --bin "$bin" --mounts "$c/m1" "$c/m2" --replicas "$n" --duration "$seconds"
  done
  scenario cephfs-log-writer --bin "$bin" --mounts "$c/m1" "$c/m2" --pingpong-on 1 \
    --replicas 2 --log-writer --duration "$seconds"
  # Last: the evicted mount stays dead until remounted. 40 s: a flock alone is not a
  # capability the MDS revokes, so a stopped holder keeps it until its session is closed
  # (session_autoclose, 30 s here: cephfs.sh --evict-after); stopped for 18 s, nobody answered.
  scenario cephfs-partition --bin "$bin" --mounts "$c/m1" "$c/m2" --replicas 2 \
    --duration $((seconds + 48)) --fuse-pids "$(fuse_pids "$c")" --stop-seconds 40
  teardown
fi
