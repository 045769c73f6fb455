#!/usr/bin/env bash
# A GlusterFS 10 volume on loopback, mounted twice (two "nodes" of one ReadWriteMany volume),
# from Debian's packages. Several instances coexist: each DIR gets its own volume (named after
# DIR) under the machine's one glusterd, which is started if not running and stopped again
# only by the instance that started it, once no volume is left.
#
#   glusterfs.sh up DIR [--set KEY VALUE]... [--client-option OPT]...
#                                              brick DIR/brick, mounts DIR/m1 and DIR/m2
#   glusterfs.sh down DIR                      the apps using the mounts, the mounts, the volume
#   glusterfs.sh cut DIR m1|m2                 drop every packet of that mount's client (a partition)
#   glusterfs.sh heal DIR m1|m2                and let them through again
#   glusterfs.sh lock-holder DIR NAME          who holds a lock on .../NAME: "CLIENT_PID APP_PID"
#   glusterfs.sh info DIR                      what `up` made (KEY=value lines)
#
# `--set` is any `gluster volume set` option, applied before the volume starts, e.g.
#   --set performance.open-behind off --set performance.stat-prefetch off
#   --set performance.quick-read off --set network.ping-timeout 5 --set client.strict-locks on
# and `--client-option` any option of the glusterfs client for both mounts, e.g.
#   --client-option --fopen-keep-cache=off --client-option --attribute-timeout=0
# Everything listens on 127.0.0.1 (glusterd's bind address is passed on to the bricks); the
# brick is named by the host name, which must resolve to a loopback address (gluster refuses
# "localhost"). Root only.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=test/rwx/lib.sh
. "$here/lib.sh"

# The gluster CLI, retried for up to 60 s while glusterd is busy with another instance's
# transaction (it refuses concurrent ones: "Another transaction is in progress").
gluster_cli() {
  local out status deadline=$(($(now_ms) + 60000))
  while :; do
    status=0
    out="$(timeout 60 gluster --mode=script "$@" 2>&1)" || status=$?
    if ((status != 0)) && grep -qE 'Another transaction|Locking failed|try again' <<<"$out" &&
      (($(now_ms) < deadline)); then
      sleep 0.5
      continue
    fi
    printf '%s\n' "$out"
    return "$status"
  done
}

glusterd_running() { [[ -n "$(live_pids glusterd)" ]]; }

up() {
  local dir="$1" vol host key
  local -a client_opts=()
  shift
  local -a sets=()
  while (($#)); do
    case "$1" in
      --set)
        (($# >= 3)) || die "--set needs KEY VALUE"
        sets+=("$2" "$3")
        shift 3
        ;;
      --client-option)
        (($# >= 2)) || die "--client-option needs OPTION"
        client_opts+=("$2")
        shift 2
        ;;
      *) die "unknown option $1 (expected --set KEY VALUE or --client-option OPTION)" ;;
    esac
  done
  dir="$(instance_dir "$dir")"
  # 1. Packages (a failed `up` leaves nothing behind).
  up_begin glusterfs "$dir" glusterfs-server glusterfs-client

  # 2. glusterd, on loopback, unless one already runs (then it is left as it is).
  host="$(hostname)"
  case "$(getent ahostsv4 "$host" | awk 'NR == 1 { print $1 }')" in
    127.*) ;;
    *) die "host name $host does not resolve to a loopback address" ;;
  esac
  if ! glusterd_running; then
    glusterd -l "$dir/glusterd.log" --xlator-option management.transport.socket.bind-address=127.0.0.1
    state_set "$dir" GLUSTERD_STARTED "$(live_pids glusterd | head -n 1)"
  fi
  local deadline=$(($(now_ms) + 20000))
  until gluster_cli pool list >/dev/null 2>&1; do
    (($(now_ms) < deadline)) || die "glusterd does not answer (log: $dir/glusterd.log)"
    sleep 0.1
  done

  # 3. The volume: one brick, the options, started.
  vol="$(instance_name "$dir")"
  state_set "$dir" VOLUME "$vol"
  mkdir -p "$dir/brick" "$dir/m1" "$dir/m2"
  gluster_cli volume create "$vol" "$host:$dir/brick" force >"$dir/create.out" ||
    die "volume create $vol: $(cat "$dir/create.out")"
  local i
  for ((i = 0; i < ${#sets[@]}; i += 2)); do
    key="${sets[i]}"
    gluster_cli volume set "$vol" "$key" "${sets[i + 1]}" >/dev/null ||
      die "volume set $vol $key ${sets[i + 1]} failed"
    state_set "$dir" "SET" "$key=${sets[i + 1]}"
  done
  gluster_cli volume start "$vol" >/dev/null || die "volume start $vol failed"

  # 4. Two client mounts, each its own glusterfs process.
  local m
  for m in m1 m2; do
    # The client itself rather than mount.glusterfs, whose parsing of fopen-keep-cache=off is
    # broken in 10.3 (it passes --fopen-keep-cache==off).
    glusterfs --process-name fuse --volfile-server="$host" --volfile-id="/$vol" \
      --log-file="$dir/$m.log" "${client_opts[@]}" "$dir/$m" ||
      die "glusterfs client for $dir/$m failed (log: $dir/$m.log)"
    deadline=$(($(now_ms) + 10000))
    until is_mounted "$dir/$m"; do
      (($(now_ms) < deadline)) || die "$dir/$m not mounted within 10 s (log: $dir/$m.log)"
      sleep 0.05
    done
    up_client "$dir" "$m" glusterfs
  done
  ((${#client_opts[@]} == 0)) || state_set "$dir" CLIENT_OPTIONS "${client_opts[*]}"
  state_set "$dir" BRICK_PID "$(brick_pid "$dir")"
  up_end "$dir"
}

# The brick process (glusterfsd) serving DIR/brick.
brick_pid() {
  local pid
  for pid in $(live_pids glusterfsd); do
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--brick-name $1/brick " && echo "$pid"
  done
  return 0
}

# Which client holds a lock on a file whose name ends with NAME, from a statedump of the
# brick (/proc/locks does not show locks a FUSE daemon handles): "CLIENT_PID APP_PID" per
# granted lock, CLIENT_PID being the glusterfs process of the mount, APP_PID the process that
# took it. Takes about a second.
lock_holder() {
  local dir="$1" name="$2" vol brick dumpdir dump
  vol="$(state_get "$dir" VOLUME)"
  brick="$(brick_pid "$dir")"
  [[ -n "$brick" ]] || die "no brick process for $dir"
  dumpdir="$(gluster --print-statedumpdir)"
  gluster_cli volume statedump "$vol" >/dev/null || die "statedump of $vol failed"
  dump="$(find "$dumpdir" -maxdepth 1 -name "*.$brick.dump.*" -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2)"
  [[ -n "$dump" ]] || die "no statedump of brick $brick in $dumpdir"
  awk -v name="$name" '
    /^path=/ { hit = (substr($0, length($0) - length(name) + 1) == name) }
    hit && /\(ACTIVE\)=type=WRITE/ {
      app = $0; sub(/.*pid = /, "", app); sub(/,.*/, "", app)
      client = $0; sub(/.*-PID:/, "", client); sub(/-.*/, "", client)
      print client, app
    }' "$dump"
  rm -f "$dump"
}

down() {
  local dir vol started
  dir="$(realpath -m "$1")"
  instance_exists "$dir" || return 0
  vol="$(state_get "$dir" VOLUME)"
  down_mounts "$dir"
  # 3. The volume, then glusterd if this instance started it and no volume is left.
  local leftover=""
  if [[ -n "$vol" ]] && glusterd_running &&
    gluster_cli volume info "$vol" >/dev/null 2>&1; then
    gluster_cli volume stop "$vol" force >/dev/null || true
    gluster_cli volume delete "$vol" >/dev/null || leftover="$vol"
  fi
  stop_pids "$(brick_pid "$dir")"
  started="$(state_get "$dir" GLUSTERD_STARTED)"
  if [[ -n "$started" ]] && [[ "$(live_pids glusterd | head -n 1)" == "$started" ]] &&
    gluster_cli volume list 2>&1 | grep -q '^No volumes present'; then
    stop_pids "$started"
  fi
  [[ -z "$leftover" ]] || die "volume $leftover could not be deleted: left in $(state_file "$dir")"
  down_end "$dir" "glusterfs instance $vol in $dir is down"
}

if [[ "${1:-}" == lock-holder ]]; then
  (($# == 3)) || die "usage: glusterfs.sh lock-holder DIR NAME"
  lock_holder "$(realpath -m "$2")" "$3"
else
  instance_command glusterfs.sh "[--set KEY VALUE]... [--client-option OPT]..." "$@"
fi
