# shellcheck shell=bash
# What test/rwx/glusterfs.sh and test/rwx/cephfs.sh share: messages, idempotent apt installs,
# the instance's state file, and a teardown that never hangs on a stuck FUSE mount (the
# processes using the mounts are killed first, a mount that will not unmount has its FUSE
# connection aborted through /sys/fs/fuse/connections/N/abort). Sourced, never run. Linux and
# root only: it mounts filesystems.

info() { printf '    %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

now_ms() {
  local t="${EPOCHREALTIME/[.,]/}"
  echo "${t%???}"
}

# Installs the Debian packages that are missing (apt-get waits for another apt's lock instead
# of failing: other engineers install on the same machine). Prints nothing when all are there.
apt_install() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  ((EUID == 0)) || die "missing packages ${missing[*]} and not root"
  info "apt-get install ${missing[*]}"
  local apt=(apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends)
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" "${missing[@]}" </dev/null >/dev/null 2>&1 ||
    { apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null &&
      DEBIAN_FRONTEND=noninteractive "${apt[@]}" "${missing[@]}" </dev/null >/dev/null; } ||
    die "apt-get install ${missing[*]} failed"
}

# The instance's state, KEY=value lines in DIR/rwx.env, read back by `down`.
state_file() { echo "$1/rwx.env"; }
state_set() { echo "$2=$3" >>"$(state_file "$1")"; }
state_get() {
  local file
  file="$(state_file "$1")"
  [[ -f "$file" ]] || return 0
  awk -F= -v k="$2" '$1 == k { v = substr($0, length(k) + 2) } END { if (v != "") print v }' "$file"
}

# A short stable name for DIR, so that several instances coexist: rwx<8 hex digits>.
instance_name() {
  printf 'rwx%08x' "$(realpath -m "$1" | cksum | cut -d' ' -f1)"
}

# The FUSE connection number of the mount at PATH (its device minor), read from mountinfo so
# that nothing stats the mount point (a stat of a stuck FUSE mount never returns).
fuse_conn() {
  awk -v m="$1" '$5 == m { split($3, d, ":"); print d[2]; exit }' /proc/self/mountinfo
}

is_mounted() { awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo; }

# Kills (SIGKILL) every process whose working directory, root or an open file is under PATH.
# Reads only /proc symlinks (find -lname does not follow them): nothing touches the mount.
kill_users_of() {
  local path="$1" victims
  # find fails on the processes that exit while it reads /proc: not an error here.
  victims="$({ find /proc/[0-9]*/cwd /proc/[0-9]*/root /proc/[0-9]*/fd/ -maxdepth 1 \
    \( -lname "$path" -o -lname "$path/*" \) -printf '%p\n' 2>/dev/null || true; } |
    awk -F/ -v self=$$ '$3 != self { print $3 }' | sort -un | tr '\n' ' ')"
  [[ -n "${victims// /}" ]] || return 0
  info "kill -9 $victims(using $path)"
  # shellcheck disable=SC2086 # a list of PIDs
  kill -KILL $victims 2>/dev/null || true
}

# Unmounts PATH whatever state its FUSE daemon is in (CLIENT_PID: the daemon, resumed first in
# case a test left it stopped). A plain umount gets 5 s; then the FUSE connection is aborted,
# which fails every pending request at once (processes stuck in the mount wake up with
# ENOTCONN), and the mount is lazily detached. `umount -c`: no canonicalisation, which would
# stat the mount point and hang with it; `timeout -k`: a umount stuck in a FUSE request only
# dies of SIGKILL.
fuse_unmount() {
  local path="$1" client_pid="${2:-}" conn
  [[ -n "$client_pid" ]] && kill -CONT "$client_pid" 2>/dev/null
  is_mounted "$path" || return 0
  kill_users_of "$path"
  timeout -k 1 5 umount -c "$path" 2>/dev/null && return 0
  conn="$(fuse_conn "$path")"
  # The abort files live in the fusectl filesystem, which a fresh machine may not have mounted.
  grep -q '^fusectl ' /proc/mounts || mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null || true
  if [[ -n "$conn" && -e "/sys/fs/fuse/connections/$conn/abort" ]]; then
    info "umount $path hangs: aborting FUSE connection $conn"
    echo 1 >"/sys/fs/fuse/connections/$conn/abort" || true
  fi
  timeout -k 1 5 umount -c "$path" 2>/dev/null || timeout -k 1 5 umount -c -l "$path" 2>/dev/null || true
  ! is_mounted "$path" || die "could not unmount $path"
}

# SIGTERM to each PID (resumed first), SIGKILL to those still there after 10 s.
stop_pids() {
  local pid deadline alive
  for pid in "$@"; do
    [[ -n "$pid" ]] || continue
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done
  deadline=$(($(now_ms) + 10000))
  while (($(now_ms) < deadline)); do
    alive=false
    for pid in "$@"; do
      [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && [[ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]] && alive=true
    done
    [[ "$alive" == true ]] || return 0
    sleep 0.1
  done
  for pid in "$@"; do
    [[ -n "$pid" ]] && { kill -KILL "$pid" 2>/dev/null || true; }
  done
  return 0
}

# The PID of the FUSE daemon serving PATH: a process whose command line ends with PATH (both
# glusterfs and ceph-fuse take the mount point as their last argument) with /dev/fuse open.
fuse_daemon_pid() {
  local path="$1" pid fd
  for pid in $(pgrep -f -- " $path\$"); do
    for fd in "/proc/$pid"/fd/*; do
      if [[ "$(readlink "$fd" 2>/dev/null)" == /dev/fuse ]]; then
        echo "$pid"
        return 0
      fi
    done
  done
}

# The PIDs of live (not zombie) processes named exactly NAME, oldest first.
live_pids() {
  local pid
  for pid in $(pgrep -x "$1"); do
    [[ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" =~ ^[RSDT]$ ]] && echo "$pid"
  done
  return 0
}

# The EXIT trap of `up`: a failed `up` runs `down` (defined by the sourcing script), so that it
# leaves nothing behind.
undo_failed_up() {
  local status=$?
  ((status == 0)) || down "$1" >/dev/null 2>&1 || true
  exit "$status"
}

# --- the skeleton of both scripts' `up` and `down` ----------------------------------------------
#
#   up() {                              down() {
#     dir="$(instance_dir "$dir")"        dir="$(realpath -m "$1")"
#     up_begin FS "$dir" PACKAGE...       instance_exists "$dir" || return 0
#     ... the filesystem's own steps      down_mounts "$dir"
#     up_client "$dir" m1 NAME            ... the filesystem's own steps
#     up_client "$dir" m2 NAME            down_end "$dir" MESSAGE
#     up_end "$dir"                     }
#   }

# DIR, made if missing, as a real path.
instance_dir() {
  mkdir -p "$1"
  realpath "$1"
}

# Opens FS's instance in DIR (refused where one is already): arms the EXIT trap that tears a
# failed `up` down, installs PACKAGES and starts the state file. Times the install for `up_end`.
up_begin() {
  local fs="$1" dir="$2"
  shift 2
  up_t0=$(now_ms)
  [[ ! -f "$(state_file "$dir")" ]] || die "$dir already holds an instance: $fs.sh down $dir first"
  # shellcheck disable=SC2064 # DIR as it is now
  trap "undo_failed_up $(printf '%q' "$dir")" EXIT
  apt_install "$@"
  up_t_installed=$(now_ms)
  : >"$(state_file "$dir")"
  state_set "$dir" FS "$fs"
}

# Records the FUSE daemon (a NAME process) serving DIR/MOUNT as MOUNT_PID (M1_PID, M2_PID).
up_client() {
  local dir="$1" m="$2" pid
  pid="$(fuse_daemon_pid "$dir/$m")"
  [[ -n "$pid" ]] || die "no $3 process for $dir/$m"
  state_set "$dir" "${m^^}_PID" "$pid"
}

# Closes a successful `up`: the install and stand-up times, the trap disarmed, the state printed.
up_end() {
  local dir="$1"
  state_set "$dir" INSTALL_MS $((up_t_installed - up_t0))
  state_set "$dir" UP_MS $(($(now_ms) - up_t_installed))
  trap - EXIT
  cat "$(state_file "$dir")"
}

# Whether DIR holds an instance; says so when it does not.
instance_exists() {
  [[ -f "$(state_file "$1")" ]] && return 0
  info "nothing to tear down in $1"
  return 1
}

# The first steps of `down`: 1. the apps using the mounts, 2. the mounts (each client resumed
# first: a test may have left it stopped), then the clients.
down_mounts() {
  local dir="$1" name
  name="$(instance_name "$dir")"
  net_heal "${name}m1"
  net_heal "${name}m2"
  fuse_unmount "$dir/m1" "$(state_get "$dir" M1_PID)"
  fuse_unmount "$dir/m2" "$(state_get "$dir" M2_PID)"
  stop_pids "$(state_get "$dir" M1_PID)" "$(state_get "$dir" M2_PID)"
}

# The last step of `down`: the state file goes, MESSAGE is said.
down_end() {
  rm -f "$(state_file "$1")"
  info "$2"
}

# A network partition of one FUSE client on loopback: every TCP packet to or from the local
# ports of PID's connections is dropped (an nftables table of its own, named TABLE), so that
# the servers' keepalives and timeouts fire as they would for a node cut off. SIGSTOP alone
# cannot do that: the kernel keeps acknowledging a stopped process's connections.
net_cut() {
  local pid="$1" table="$2" ports
  apt_install nftables
  ports="$(ss -tnpH state established 2>/dev/null |
    awk -v p="pid=$pid," 'index($0, p) { n = split($3, a, ":"); print a[n] }' | sort -un | paste -sd, -)"
  [[ -n "$ports" ]] || die "no TCP connection of pid $pid to cut"
  nft add table inet "$table"
  nft add chain inet "$table" in '{ type filter hook input priority 0; policy accept; }'
  nft add rule inet "$table" in tcp sport "{ $ports }" drop
  nft add rule inet "$table" in tcp dport "{ $ports }" drop
  info "cut pid $pid's TCP ports $ports (nft table inet $table)"
}

net_heal() {
  nft delete table inet "$1" 2>/dev/null || true
}

# The subcommands both scripts share: up, down, cut, heal, info. SCRIPT is the caller's name
# for the usage lines, UP_OPTIONS what its `up` takes after DIR; `up` and `down` are the
# caller's.
instance_command() {
  local script="$1" up_options="$2" dir
  shift 2
  dir="$(realpath -m "${2:-.}")"
  case "${1:-}" in
    up)
      (($# >= 2)) || die "usage: $script up DIR $up_options"
      shift
      up "$@"
      ;;
    down)
      (($# == 2)) || die "usage: $script down DIR"
      down "$dir"
      ;;
    cut | heal)
      [[ $# == 3 && ("$3" == m1 || "$3" == m2) ]] || die "usage: $script cut|heal DIR m1|m2"
      if [[ "$1" == cut ]]; then
        net_cut "$(state_get "$dir" "${3^^}_PID")" "$(instance_name "$dir")$3"
      else
        net_heal "$(instance_name "$dir")$3"
      fi
      ;;
    info)
      (($# == 2)) || die "usage: $script info DIR"
      cat "$(state_file "$dir")"
      ;;
    *) die "usage: $script up DIR $up_options | down DIR | cut|heal DIR m1|m2 | info DIR" ;;
  esac
}
