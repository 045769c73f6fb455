#!/usr/bin/env bash
# A CephFS 16 cluster on loopback, mounted twice with ceph-fuse (two "nodes" of one
# ReadWriteMany volume), from Debian's packages. Each DIR is a cluster of its own: its own fsid,
# config (DIR/ceph/ceph.conf), data, sockets and a block of 20 ports in 19100-19199, so several
# instances coexist and none touches /etc/ceph or the default ports. One monitor, one OSD on
# memstore (in memory: for lock and cache tests, not for crash tests), one MDS, auth off, no mgr
# (`ceph fs status` needs one: use `ceph mds stat`).
#
#   cephfs.sh up DIR [options]   mounts DIR/m1 (client.m1) and DIR/m2 (client.m2)
#   cephfs.sh down DIR           the apps using the mounts, the mounts, the daemons
#   cephfs.sh cut DIR m1|m2   drop every packet of that mount's client (a partition)
#   cephfs.sh heal DIR m1|m2  and let them through again
#   cephfs.sh info DIR           what `up` made (KEY=value lines)
#   cephfs.sh tick DIR S         set the running MDS's mds_tick_interval to S seconds
#
# Options of `up`:
#   --evict-after S       the MDS evicts (and blocklists) a client that has not given back a
#                         capability another client waits for after S s
#                         (mds_cap_revoke_eviction_timeout, default 0: never), and a silent
#                         client after max(S, 30) s (fs session_timeout and session_autoclose,
#                         defaults 60 and 300; 30 is their minimum)
#   --fs-set KEY VALUE    any `ceph fs set` setting
#   --mds-tick S          mds_tick_interval (Ceph's default 5): how often the MDS completes
#                         what waits on a capability another client gave back (FACTS.md, 8-9);
#                         unset: the default, as a user's cluster has it
#   --conf KEY VALUE      a [global] line of ceph.conf (e.g. --conf client_reconnect_stale true)
#   --port-base N         the first of the 20 ports (default: the first free block)
# Root only.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=test/rwx/lib.sh
. "$here/lib.sh"

ports_per_instance=20
port_claims=/run/rwx-cephfs-ports

# The ceph CLI against DIR's cluster; never waits more than 30 s (no mgr: some commands hang).
ceph_cli() {
  local dir="$1"
  shift
  timeout 30 ceph -c "$dir/ceph/ceph.conf" --connect-timeout 10 "$@"
}

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

# Claims a block of ports (a directory under /run, made atomically) whose ports are all free.
claim_ports() {
  local dir="$1" base="${2:-}" p ok
  mkdir -p "$port_claims"
  local -a bases=()
  if [[ -n "$base" ]]; then bases=("$base"); else mapfile -t bases < <(seq 19100 "$ports_per_instance" 19180); fi
  for base in "${bases[@]}"; do
    ok=true
    for ((p = base; p < base + ports_per_instance; p++)); do
      port_free "$p" || { ok=false; break; }
    done
    [[ "$ok" == true ]] || continue
    # A claim whose instance is gone (its DIR has no state file: torn down by hand, or the
    # machine's /run outlived it) is stale: taken over.
    local owner
    owner="$(cat "$port_claims/$base/owner" 2>/dev/null || true)"
    if [[ -n "$owner" && ! -f "$(state_file "$owner")" ]]; then
      rm -rf "${port_claims:?}/$base"
    fi
    if mkdir "$port_claims/$base" 2>/dev/null; then
      echo "$dir" >"$port_claims/$base/owner"
      echo "$base"
      return 0
    fi
  done
  die "no free block of $ports_per_instance ports in ${bases[*]} (claims in $port_claims)"
}

wait_for() {
  local what="$1" seconds="$2" deadline
  shift 2
  deadline=$(($(now_ms) + seconds * 1000))
  until "$@" >/dev/null 2>&1; do
    (($(now_ms) < deadline)) || die "$what: not within ${seconds}s"
    sleep 0.2
  done
}

# A setting of the running MDS, through its admin socket: `mds_config DIR KEY` prints the value.
mds_config() {
  local asok
  asok="$(find "$1/ceph/run" -maxdepth 1 -name 'mds.a.*.asok' -print -quit)"
  [[ -n "$asok" ]] || return 0
  timeout 10 ceph --admin-daemon "$asok" config get "$2" 2>/dev/null |
    sed -n 's/.*"'"$2"'": "\(.*\)".*/\1/p'
}

mds_active() { ceph_cli "$1" mds stat 2>/dev/null | grep -q 'up:active'; }
osd_up() { ceph_cli "$1" osd stat 2>/dev/null | grep -q '1 up'; }

up() {
  local dir="$1" base="" evict_after=""
  shift
  local -a fs_sets=() confs=()
  while (($#)); do
    case "$1" in
      --evict-after) evict_after="$2"; shift 2 ;;
      --fs-set) fs_sets+=("$2" "$3"); shift 3 ;;
      --conf) confs+=("$2" "$3"); shift 3 ;;
      --mds-tick) confs+=(mds_tick_interval "$2"); shift 2 ;;
      --port-base) base="$2"; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  dir="$(instance_dir "$dir")"
  # 1. Packages (a failed `up` leaves nothing behind).
  up_begin cephfs "$dir" ceph-mon ceph-osd ceph-mds ceph-fuse ceph-common

  # 2. The cluster's identity, ports and config, all under DIR/ceph.
  local c="$dir/ceph" fsid name
  fsid="$(cat /proc/sys/kernel/random/uuid)"
  name="$(instance_name "$dir")"
  base="$(claim_ports "$dir" "$base")"
  state_set "$dir" PORT_BASE "$base"
  state_set "$dir" FSID "$fsid"
  state_set "$dir" CONF "$c/ceph.conf"
  state_set "$dir" FS_NAME "$name"
  rm -rf "$c" # a previous instance's data: this one is new
  mkdir -p "$c/run" "$c/log" "$c/mon-a" "$c/osd-0" "$c/mds-a" "$dir/m1" "$dir/m2"
  {
    cat <<CONF
# Made by test/rwx/cephfs.sh for $dir: one monitor, one memstore OSD, one MDS, on loopback.
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$base,v1:127.0.0.1:$((base + 1))]
public addr = 127.0.0.1
ms bind port min = $((base + 2))
ms bind port max = $((base + ports_per_instance - 1))
auth cluster required = none
auth service required = none
auth client required = none
run dir = $c/run
admin socket = $c/run/\$name.\$pid.asok
log file = $c/log/\$name.log
pid file = $c/run/\$name.pid
mon data = $c/mon-\$id
osd data = $c/osd-\$id
mds data = $c/mds-\$id
osd objectstore = memstore
memstore device bytes = 536870912
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
mon warn on pool no redundancy = false
# A test cluster on a shared machine's disk: refusing to start below 5 % free (the default)
# failed CI on a 252 GB disk with 12 GB free; memstore keeps the data in memory anyway.
mon data avail crit = 1
CONF
    local i
    for ((i = 0; i < ${#confs[@]}; i += 2)); do
      echo "${confs[i]} = ${confs[i + 1]}"
    done
  } >"$c/ceph.conf"

  # 3. Monitor.
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$base,v1:127.0.0.1:$((base + 1))]" \
    "$c/monmap" >/dev/null
  ceph-mon -c "$c/ceph.conf" --mkfs -i a --monmap "$c/monmap" >"$c/log/mkfs.log" 2>&1 ||
    die "ceph-mon --mkfs: $(tail -n 3 "$c/log/mkfs.log")"
  ceph-mon -c "$c/ceph.conf" -i a >>"$c/log/start.log" 2>&1 || die "ceph-mon did not start (log: $c/log/mon.a.log)"
  wait_for "monitor answers" 30 ceph_cli "$dir" mon stat
  state_set "$dir" MON_READY_MS $(($(now_ms) - up_t_installed))

  # 4. OSD (memstore) and the two pools.
  local osd_id
  osd_id="$(ceph_cli "$dir" osd create)"
  [[ "$osd_id" == 0 ]] || die "osd create gave id '$osd_id', expected 0"
  ceph-osd -c "$c/ceph.conf" -i 0 --mkfs >>"$c/log/mkfs.log" 2>&1 ||
    die "ceph-osd --mkfs: $(tail -n 3 "$c/log/mkfs.log")"
  ceph-osd -c "$c/ceph.conf" -i 0 >>"$c/log/start.log" 2>&1 || die "ceph-osd did not start (log: $c/log/osd.0.log)"
  wait_for "OSD up" 60 osd_up "$dir"
  state_set "$dir" OSD_UP_MS $(($(now_ms) - up_t_installed))
  ceph_cli "$dir" osd pool create "${name}_meta" 8 >/dev/null 2>&1
  ceph_cli "$dir" osd pool create "${name}_data" 8 >/dev/null 2>&1
  ceph_cli "$dir" fs new "$name" "${name}_meta" "${name}_data" >/dev/null 2>&1

  # 5. MDS, then the fs settings.
  ceph-mds -c "$c/ceph.conf" -i a >>"$c/log/start.log" 2>&1 || die "ceph-mds did not start (log: $c/log/mds.a.log)"
  wait_for "MDS active" 60 mds_active "$dir"
  state_set "$dir" MDS_ACTIVE_MS $(($(now_ms) - up_t_installed))
  # What the MDS runs with, asked of it (its admin socket), not what the config file says.
  state_set "$dir" MDS_TICK_INTERVAL "$(mds_config "$dir" mds_tick_interval)"
  if [[ -n "$evict_after" ]]; then
    local floor=$((evict_after < 30 ? 30 : evict_after))
    fs_sets+=(session_timeout "$floor" session_autoclose "$floor")
    ceph_cli "$dir" config set mds mds_cap_revoke_eviction_timeout "$evict_after" >/dev/null
    state_set "$dir" SET "mds_cap_revoke_eviction_timeout=$evict_after"
  fi
  for ((i = 0; i < ${#fs_sets[@]}; i += 2)); do
    ceph_cli "$dir" fs set "$name" "${fs_sets[i]}" "${fs_sets[i + 1]}" >/dev/null ||
      die "fs set $name ${fs_sets[i]} ${fs_sets[i + 1]} failed"
    state_set "$dir" SET "${fs_sets[i]}=${fs_sets[i + 1]}"
  done

  # 6. Two ceph-fuse mounts, distinct client names (one host, two "nodes").
  local m
  for m in m1 m2; do
    ceph-fuse -c "$c/ceph.conf" --id "$m" --client_fs "$name" "$dir/$m" >"$c/log/fuse-$m.out" 2>&1 ||
      die "ceph-fuse $dir/$m failed: $(tail -n 3 "$c/log/fuse-$m.out")"
    up_client "$dir" "$m" ceph-fuse
  done
  up_end "$dir"
}

down() {
  local dir c base pidfile
  dir="$(realpath -m "$1")"
  c="$dir/ceph"
  instance_exists "$dir" || return 0
  down_mounts "$dir"
  # 3. Daemons, by the PIDs in their pid files (this cluster's only). Killed outright: the OSD
  # is in memory, nothing is worth a clean shutdown, and the monitor takes seconds to stop.
  for pidfile in "$c/run/mds.a.pid" "$c/run/osd.0.pid" "$c/run/mon.a.pid"; do
    [[ -f "$pidfile" ]] && { kill -KILL "$(cat "$pidfile")" 2>/dev/null || true; }
  done
  base="$(state_get "$dir" PORT_BASE)"
  [[ -n "$base" ]] && rm -rf "${port_claims:?}/$base"
  down_end "$dir" "cephfs instance in $dir is down"
}

# `tick DIR S`: the running MDS's mds_tick_interval, through its admin socket (taken at its
# next tick).
if [[ "${1:-}" == tick ]]; then
  (($# == 3)) || die "usage: cephfs.sh tick DIR S"
  asok="$(find "$(realpath -m "$2")/ceph/run" -maxdepth 1 -name 'mds.a.*.asok' -print -quit)"
  [[ -n "$asok" ]] || die "no MDS admin socket in $2/ceph/run"
  timeout 10 ceph --admin-daemon "$asok" config set mds_tick_interval "$3" >/dev/null
  [[ "$(mds_config "$(realpath -m "$2")" mds_tick_interval)" == "$3"* ]] ||
    die "mds_tick_interval is $(mds_config "$(realpath -m "$2")" mds_tick_interval), not $3"
  exit 0
fi
instance_command cephfs.sh "[options]" "$@"
