#!/usr/bin/env bash
# CI: pingpong replicas on two client mounts of one ReadWriteMany volume, on GlusterFS and on
# CephFS stood up from Debian's packages on loopback (test/rwx/), behind HAProxy, under load
# (test/rwx/multinode.py). Two sets of scenarios, each on each filesystem.
#
# Turns at the lock (no ADVERTISE_ADDR: how this release's replicas without leader mode, a
# replica of the previous release and `counter set` behave); CephFS with mds_tick_interval 1:
#   a. 1, 2 and 4 replicas over the two mounts (and on a local directory, for comparison);
#   b. log-writer on m1 while pingpong runs on m2: output.log read on m2 never goes backwards;
#   c. a partition: the FUSE client of the mount whose replica holds the lock is stopped until
#      the filesystem gives the lock away (GlusterFS: its packets are dropped too, see FACTS.md),
#      then resumed: no number twice, no stale value published, failures counted; on GlusterFS
#      also without client.strict-locks (nothing fences the resumed replica's descriptor);
#   d. the hazard: GlusterFS with default options and the previous release's pingpong (rename
#      recipe): passes when it shows duplicates or 5xx.
# Leader mode (SPEC §3 "The leader"; multinode.py --leader), CephFS at Ceph's default
# mds_tick_interval (5 s; RWX_CEPH_LEADER_TICK below) but for L7:
#   L1. 1, 2 and 4 replicas over the two mounts (and on a local directory): requests/s;
#   L2. kill -9 of the leader under load: no number twice, answers again (the gap is a figure
#       against the 1 s target; the check is 5 s, a request's timeout);
#   L3. SIGTERM of the leader (SHUTDOWN_DELAY RWX_TERM_DELAY, 3s), HAProxy checking /readyz:
#       0 failed;
#   L4. the leader stopped (SIGSTOP) 6 s: no number twice, the followers unready meanwhile
#       (once a forward has gone unanswered for 3 s, 1 s later);
#   L5. a follower cut off from the leader's internal port 5 s (nftables): it turns unready
#       with a reason, failures within twice the load's connections;
#   L6. hostile requests to the leader's internal port: each refused, the count unmoved;
#   L7. rolling update from RWX_ROLLING_FROM's replicas to leader-mode ones under load: every
#       number once, 0 failed (CephFS: at mds_tick_interval 1 for this one, the tick the
#       turns of the release rolled from need);
#   L8. c, the partition, with the leader's mount stopped.
# Installs what is missing, builds the binaries (cargo; debug, or release with
# RWX_PROFILE=release) unless RWX_BIN names them,
# tears everything down even on failure, and ends with `N passed, M failed`.
#
# Environment: RWX_BIN (directory with pingpong and log-writer), RWX_HAZARD_BIN (pingpong for
# d; default: the previous release's, test_support::PREVIOUS_RELEASE, built as .ci/engine.sh
# builds it), RWX_SECONDS (load per run, default 6), RWX_LEADER_SECONDS (load per leader-mode
# run, default 5), RWX_PORT_BASE (default 19000; HAProxy, the replicas and their internal ports
# use the next 30 ports; CephFS takes 20 ports in 19100-19199), RWX_GLUSTER_OPTIONS
# (`glusterfs.sh up` options for a-c and L), RWX_ONLY (glusterfs, cephfs or local), RWX_MODES
# (words: `leader` L1-L8; `turns` a-d on the local directory and GlusterFS; `turns-cephfs` a-c
# on CephFS; `all`; default `leader turns`: CephFS's turns need a tick users do not have, and
# the whole script stays near 8 minutes), RWX_CEPH_TICK (mds_tick_interval of turns-cephfs,
# default 1), RWX_CEPH_LEADER_TICK (the leader scenarios' CephFS: Ceph's default, 5 s,
# unless set), RWX_TERM_DELAY (L3's SHUTDOWN_DELAY, default 3s), RWX_ROLLING_FROM (the commit
# whose replicas L7 rolls from, default fe02056; RWX_ROLLING_BIN: its pingpong's directory
# instead), RWX_FIGURES (a file each scenario's figures are appended to, one JSON object a line:
# bench/rwx-bench.py), RWX_KEEP_FAILED (a directory a failed scenario's logs are copied to).
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
lseconds="${RWX_LEADER_SECONDS:-5}"
modes="${RWX_MODES:-leader turns}"
[[ " $modes " == *" all "* ]] && modes="leader turns turns-cephfs"
ceph_tick="${RWX_CEPH_TICK:-1}"
# Ceph's default by default, as users' clusters have it: a leader's publication of the count
# (a rename, which waits for a tick whenever another mount reads the file) runs on a thread of
# its own and the hand-over waits for none (shared-fs publisher.rs), so nothing a request
# waits for moves between the clients while one replica leads.
ceph_leader_tick="${RWX_CEPH_LEADER_TICK:-}"
[[ "$ceph_leader_tick" == default ]] && ceph_leader_tick=""
# L3's SHUTDOWN_DELAY: HAProxy takes a replica out after 2 failed checks 1 s apart, up to 2 s
# after its /readyz turned 503; a shorter delay ends with HAProxy still sending it requests,
# refused once it drains (1s: 565 of 9 764 requests refused on a local directory, every one
# `SC--` at the terminated leader, none at the followers). Kubernetes is the same with its
# readinessProbe's periodSeconds x failureThreshold.
term_delay="${RWX_TERM_DELAY:-3s}"
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
    printf '\n==> figures (failed-in, failed-after: requests failed during the partition or fault and after
    the partition; gap: the longest time in seconds without one answered request, from the fault
    on where there is one)
%-28s %8s %8s %5s %6s %7s %9s %9s %6s\n' scenario requests answered dups 5xx "req/s" "failed-in" "failed-aft" gap
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
  grep -E '^(partition:|fault:|rolling:|hostile:|problem:|ok |FAILED)' "$work/$name.out" | sed 's/^/      /' || true
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
h = lambda *ks: next((f[k] for k in ks if k in f), "-")
print("%-28s %8s %8s %5s %6s %7s %9s %9s %6s" % (sys.argv[2], g("requests"), g("answered"),
      g("duplicates"), g("5xx"), g("req_per_s"), h("failed_during_partition", "failed_during_fault"),
      g("failed_after_partition"), h("gap_after_fault_s", "longest_gap_s")))
PY
)")
  if ((status == 0)); then
    pass "$name"
  else
    fail "$name (exit $status; output $work/$name.out)"
    grep -v '^figure ' "$work/$name.out" | tail -n 25 | sed 's/^/      /'
    if [[ -n "${RWX_KEEP_FAILED:-}" ]]; then
      mkdir -p "$RWX_KEEP_FAILED"
      cp -r "$work/$name" "$work/$name.out" "$RWX_KEEP_FAILED/" 2>/dev/null || true
    fi
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

has_mode() { [[ " $modes " == *" $1 "* ]]; }

# The leader-mode scenarios L1-L7 on the mounts M1 and M2 of one volume, named FS-...; L8 (the
# partition) is the caller's: it must come last on CephFS, whose stopped mount stays dead.
leader_scenarios() {
  local fs="$1" m1="$2" m2="$3" n
  local -a common=(--bin "$bin" --mounts "$m1" "$m2" --leader)
  for n in 1 2 4; do
    scenario "$fs-leader-$n" "${common[@]}" --replicas "$n" --duration "$lseconds"
  done
  scenario "$fs-kill-leader" "${common[@]}" --replicas 3 --scenario kill-leader --fault-after 2 \
    --duration $((lseconds + 1))
  scenario "$fs-term-leader" "${common[@]}" --replicas 3 --scenario term-leader --fault-after 2 \
    --shutdown-delay "$term_delay" --duration $((lseconds + 3))
  scenario "$fs-freeze-leader" "${common[@]}" --replicas 3 --scenario freeze-leader --fault-after 2 \
    --fault-seconds 6 --duration $((lseconds + 6))
  scenario "$fs-cut-follower" "${common[@]}" --replicas 3 --scenario cut-follower --fault-after 2 \
    --fault-seconds 5 --duration $((lseconds + 5))
  scenario "$fs-hostile" "${common[@]}" --replicas 2 --scenario hostile
  # The release rolled from takes turns at the lock, which on CephFS needs mds_tick_interval 1
  # (its README): a cluster that ran it has that tick while its replicas are about.
  [[ "$fs" == cephfs ]] && bash test/rwx/cephfs.sh tick "$(dirname "$m1")" 1
  scenario "$fs-rolling" "${common[@]}" --old-bin "$rolling_bin" --replicas 2 --scenario rolling \
    --fault-after 2 --fault-seconds 2 --shutdown-delay 1s --duration 2
  [[ "$fs" == cephfs ]] && bash test/rwx/cephfs.sh tick "$(dirname "$m1")" "${ceph_leader_tick:-5}"
  return 0
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
# shellcheck disable=SC2119 # no COMMIT: test_support::PREVIOUS_RELEASE
hazard_bin="${RWX_HAZARD_BIN:-$(previous_release_bin_dir)}"
# L7 rolls from this release's predecessor in leader terms: replicas taking turns at the lock.
rolling_bin=""
if has_mode leader; then
  rolling_bin="${RWX_ROLLING_BIN:-$(previous_release_bin_dir "${RWX_ROLLING_FROM:-fe02056}")}"
fi
for b in "$bin/pingpong" "$bin/log-writer" "$hazard_bin/pingpong" ${rolling_bin:+"$rolling_bin/pingpong"}; do
  [[ -x "$b" ]] || die "no executable $b"
done
info "binaries $bin, hazard binary $hazard_bin${rolling_bin:+, rolling update from $rolling_bin}; modes: $modes"

if [[ -z "$only" || "$only" == local ]]; then
  step "3. a, L1. a local directory (two 'mounts' that are one directory), 1, 2, 4 replicas"
  mkdir -p "$work/local"
  for n in 1 2 4; do
    if has_mode turns; then
      scenario "local-$n" --bin "$bin" --mounts "$work/local" "$work/local" --replicas "$n" \
        --duration "$seconds"
    fi
    if has_mode leader; then
      scenario "local-leader-$n" --bin "$bin" --mounts "$work/local" "$work/local" --leader \
        --replicas "$n" --duration "$lseconds"
    fi
  done
fi

if [[ -z "$only" || "$only" == glusterfs ]]; then
  step "4. GlusterFS, ${gluster_options[*]}"
  g="$work/gluster"
  fs_up glusterfs.sh "$g" "${gluster_options[@]}"
  if has_mode turns; then
    for n in 1 2 4; do
      scenario "glusterfs-$n" --bin "$bin" --mounts "$g/m1" "$g/m2" --replicas "$n" --duration "$seconds"
    done
    scenario glusterfs-log-writer --bin "$bin" --mounts "$g/m1" "$g/m2" --pingpong-on 1 \
      --replicas 2 --log-writer --duration "$seconds"
  fi
  if has_mode leader; then
    leader_scenarios glusterfs "$g/m1" "$g/m2"
  fi
  # The partitions last: the stopped mount recovers by itself, but takes seconds.
  if has_mode turns; then
    scenario glusterfs-partition --bin "$bin" --mounts "$g/m1" "$g/m2" --replicas 2 \
      --duration $((seconds + 18)) --fuse-pids "$(fuse_pids "$g")" --stop-seconds 12 \
      --cut-cmd "bash test/rwx/glusterfs.sh cut $g {mount}" \
      --heal-cmd "bash test/rwx/glusterfs.sh heal $g {mount}" \
      --holder-cmd "bash test/rwx/glusterfs.sh lock-holder $g pingpong_counter.txt.lock"
  fi
  if has_mode leader; then
    scenario glusterfs-leader-partition --bin "$bin" --mounts "$g/m1" "$g/m2" --leader \
      --replicas 3 --duration $((lseconds + 18)) --fuse-pids "$(fuse_pids "$g")" --stop-seconds 12 \
      --cut-cmd "bash test/rwx/glusterfs.sh cut $g {mount}" \
      --heal-cmd "bash test/rwx/glusterfs.sh heal $g {mount}"
  fi
  teardown
fi

if [[ -z "$only" || "$only" == glusterfs ]] && has_mode turns; then
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

if [[ -z "$only" || "$only" == cephfs ]] && has_mode leader; then
  # Ceph's default MDS tick (5 s), as a user's cluster has it: the leader alone holds the lock
  # and the published file, so nothing moves between the clients at every turn.
  step "7. L. CephFS (mds_tick_interval ${ceph_leader_tick:-default}), a silent client evicted after 5 s"
  c="$work/ceph-leader"
  fs_up cephfs.sh "$c" --evict-after 5 ${ceph_leader_tick:+--mds-tick "$ceph_leader_tick"}
  info "the MDS runs with mds_tick_interval $(state_get "$c" MDS_TICK_INTERVAL)"
  leader_scenarios cephfs "$c/m1" "$c/m2"
  # Last: the evicted mount stays dead until remounted (c's 40 s, for the same reason).
  scenario cephfs-leader-partition --bin "$bin" --mounts "$c/m1" "$c/m2" --leader --replicas 3 \
    --duration $((lseconds + 48)) --fuse-pids "$(fuse_pids "$c")" --stop-seconds 40
  teardown
fi

if [[ -z "$only" || "$only" == cephfs ]] && has_mode turns-cephfs; then
  # mds_tick_interval 1: replicas on two mounts hand the lock and the published file's
  # capabilities back and forth, and the MDS grants what a client gives back at its tick (5 s
  # by default: renames and flocks then waited 5 s, a request's whole timeout); FACTS.md §8-9.
  step "8. CephFS (mds_tick_interval $ceph_tick), a silent client evicted after 5 s"
  c="$work/ceph"
  fs_up cephfs.sh "$c" --evict-after 5 --mds-tick "$ceph_tick"
  info "the MDS runs with mds_tick_interval $(state_get "$c" MDS_TICK_INTERVAL)"
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
