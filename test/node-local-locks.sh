#!/usr/bin/env bash
# A volume whose locks are local to each mount, and the start-up guard that refuses it
# (SPEC §7.7, shared-fs/src/mounts.rs): one directory mounted twice with sshfs, served by an
# sshd on 127.0.0.1 with keys made for this run.
#
#   1. the hazard: an flock taken through mount 1 and one taken through mount 2 are granted at
#      the same time (SFTP has no locks; FUSE keeps them per mount), while two flocks through
#      one mount do exclude each other
#   2. pingpong (serving, `counter set`, `counter get`) and log-writer with DATA_DIR on the
#      sshfs mount exit with status 2 and one line naming the filesystem, the mount point and
#      the fix, before they create anything on the volume
#
# Needs root (sshd, mount) and /dev/fuse; installs sshfs and openssh-server with apt-get when
# missing (nothing under /etc is edited: sshd runs from a config in a temp directory). Skips
# when that is impossible, unless RWX_REQUIRED=1 (CI), where a skip is a failure.
#
#   RWX_REQUIRED=1 test/node-local-locks.sh
#
# Env: SSHD_PORT (default 19522); CARGO_TARGET_DIR as for cargo. Last line: `N passed, M failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=.ci/test-report.sh
. .ci/test-report.sh

readonly port="${SSHD_PORT:-19522}"
readonly share="$work/share" m1="$work/m1" m2="$work/m2"
sshd_pid=""
sshfs_pids=()

# --- teardown and diagnostics -----------------------------------------------------------------

# Unmounts whatever is mounted under $work (from the kernel's list: a signal may have come
# between a mount and its bookkeeping), deepest first, then stops sshd.
teardown() {
  local m
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "  (could not unmount $m)"
  done < <(awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  for m in "${sshfs_pids[@]+"${sshfs_pids[@]}"}"; do
    kill "$m" 2>/dev/null || true
    wait "$m" 2>/dev/null || true
  done
  if [[ -n "$sshd_pid" ]]; then
    # Its sessions end with the unmounts; stopped before them, they would be left to init.
    local deadline=$((SECONDS + 5))
    while pgrep -P "$sshd_pid" >/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill "$sshd_pid" 2>/dev/null || true
    wait "$sshd_pid" 2>/dev/null || true
  fi
}

diagnostics() {
  echo "==> diagnostics"
  echo "    mounts under $work:"
  grep -F " $work" /proc/self/mountinfo | sed 's/^/      /' || true
  echo "    sshd log:"
  sed 's/^/      /' "$work/sshd.log" 2>/dev/null || true
}

# test-report.sh's on_exit prints the summary and removes $work: unmount and stop sshd first,
# and hand it the exit status (errexit off, or `(exit 1)` would end the trap there).
trap 'status=$?; set +e; ((status == 0 && failed == 0)) || [[ -z "$sshd_pid" ]] || diagnostics
teardown; (exit "$status"); on_exit' EXIT
# A signal ends the run through the EXIT trap too, so the mounts and sshd never outlive it.
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints why and ends the run: a pass with nothing run, or a failure when RWX_REQUIRED=1.
skip() {
  if [[ "${RWX_REQUIRED:-}" == 1 ]]; then
    fail "RWX_REQUIRED=1 but the sshfs test cannot run: $*"
    exit 1
  fi
  echo "skipped: $*"
  exit 0
}

# --- 0. prerequisites -------------------------------------------------------------------------

step "0. prerequisites: root, /dev/fuse, sshfs and sshd (apt-get when missing), the binaries"
[[ "$(id -u)" == 0 ]] || skip "needs root (sshd and mount)"
[[ -c /dev/fuse ]] || skip "needs /dev/fuse"
if ! command -v sshfs >/dev/null || [[ ! -x /usr/sbin/sshd ]] || ! command -v ssh-keygen >/dev/null; then
  command -v apt-get >/dev/null || skip "sshfs or openssh-server missing and no apt-get"
  echo "    installing sshfs and openssh-server"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    sshfs openssh-server >"$work/apt.log" 2>&1; then
    apt-get update -qq >>"$work/apt.log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      sshfs openssh-server >>"$work/apt.log" 2>&1 || {
      tail -n 5 "$work/apt.log"
      skip "apt-get could not install sshfs and openssh-server"
    }
  fi
fi
cargo build --quiet --locked --bin pingpong --bin log-writer
readonly bin="${CARGO_TARGET_DIR:-target}/debug"
pass "root, /dev/fuse, $(sshfs --version 2>&1 | head -n 1), $(/usr/sbin/sshd -V 2>&1 | head -n 1)"

# --- 1. sshd and two sshfs mounts of one directory --------------------------------------------

step "1. sshd on 127.0.0.1:$port (keys in a temp dir), and $share mounted twice with sshfs"
ssh-keygen -q -t ed25519 -N '' -C host -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -C root -f "$work/user_key"
cp "$work/user_key.pub" "$work/authorized_keys"
cat >"$work/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
EOF
# sshd refuses to start without its privilege-separation directory (systemd makes it at boot).
mkdir -p /run/sshd
/usr/sbin/sshd -t -f "$work/sshd_config"
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
sshd_pid=$!
readonly ssh_opts=(-p "$port" -o "IdentityFile=$work/user_key" -o BatchMode=yes
  -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
  -o ConnectTimeout=2)
deadline=$((SECONDS + 10))
until ssh "${ssh_opts[@]}" root@127.0.0.1 true 2>/dev/null; do
  kill -0 "$sshd_pid" 2>/dev/null || {
    fail "sshd exited: $(tail -n 3 "$work/sshd.log")"
    exit 1
  }
  ((SECONDS < deadline)) || {
    fail "sshd on 127.0.0.1:$port did not accept root's key within 10 s"
    exit 1
  }
  sleep 0.1
done
mkdir -p "$share" "$m1" "$m2"
echo "written before mounting" >"$share/probe"
for m in "$m1" "$m2"; do
  # In the foreground (-f) as this script's child, so that teardown reaps it.
  sshfs -f -p "$port" -o "IdentityFile=$work/user_key,BatchMode=yes,StrictHostKeyChecking=no" \
    -o UserKnownHostsFile=/dev/null "root@127.0.0.1:$share" "$m" 2>>"$work/sshfs.log" &
  sshfs_pids+=($!)
done
deadline=$((SECONDS + 10))
until (($(awk -v w="$work/" 'index($5, w) == 1' /proc/self/mountinfo | wc -l) == 2)); do
  ((SECONDS < deadline)) || {
    fail "sshfs did not mount within 10 s: $(tail -n 3 "$work/sshfs.log")"
    exit 1
  }
  sleep 0.1
done
for m in "$m1" "$m2"; do
  line="$(awk -v m="$m" '$5 == m' /proc/self/mountinfo)"
  if [[ "$line" == *" - fuse.sshfs "* && "$(cat "$m/probe")" == "written before mounting" ]]; then
    pass "$m shows $share: $line"
  else
    fail "$m is not an sshfs mount of $share: '$line'"
  fi
done

# --- 2. the hazard ----------------------------------------------------------------------------

step "2. the hazard: flocks through the two mounts are granted at once"
# second_flock FIRST SECOND WANT WHAT: while a flock of FIRST is held (`flock -n FIRST CMD` holds
# it while CMD runs), a non-blocking flock of SECOND exits WANT: 1 refused, 0 granted. (3: FIRST
# itself was taken.)
second_flock() {
  local first="$1" second="$2" want="$3" what="$4" status=0
  flock -n -E 3 "$first" flock -n "$second" true || status=$?
  if ((status == want)); then
    pass "$what (status $status)"
  else
    fail "$what: status $status, expected $want"
  fi
}
second_flock "$m1/c.lock" "$m1/c.lock" 1 \
  "through one mount, a second flock of a held lock is refused"
second_flock "$m1/c.lock" "$m2/c.lock" 0 \
  "through mount 1 and mount 2, both flocks of one file are granted at the same time (the hazard)"

# --- 3. the guard -----------------------------------------------------------------------------

step "3. pingpong and log-writer refuse DATA_DIR on the sshfs mount: exit 2, one line"
fix='SFTP has no locks, so flock would be local to this mount and two replicas would hand out the same numbers; put DATA_DIR on a filesystem from the README'"'"'s "Several nodes" table'
ln -s "$m1" "$work/link"

# refused WHAT DATA_DIR MOUNT_POINT CMD...: CMD, run with DATA_DIR, exits 2 within 10 s with
# exactly one line on stderr, nothing on stdout, and creates nothing on the volume.
refused() {
  local what="$1" data_dir="$2" mount_point="$3"
  shift 3
  local name="${1##*/}" status=0 before after
  before="$(ls -A "$m1")"
  DATA_DIR="$data_dir" PORT=0 LOG_INTERVAL=100ms timeout 10 "$@" \
    >"$work/out" 2>"$work/err" </dev/null || status=$?
  after="$(ls -A "$m1")"
  local want="$name: DATA_DIR $data_dir is on the fuse.sshfs mount at $mount_point: $fix"
  if ((status == 2)) && [[ "$(cat "$work/err")" == "$want" && ! -s "$work/out" ]] &&
    [[ "$after" == "$before" ]]; then
    pass "$what: exit 2, '$want'"
  else
    fail "$what: exit status $status (124: still running after 10 s), stdout '$(head -n 2 "$work/out")', files on the volume before '${before//$'\n'/ }' after '${after//$'\n'/ }', stderr:$(sed 's/^/    /' "$work/err" | head -n 5 | sed '1s/^/\n/')"
    echo "    expected stderr: $want"
  fi
}

refused "pingpong serving" "$m1/files" "$m1" "$bin/pingpong"
refused "pingpong counter set" "$m1/files" "$m1" "$bin/pingpong" counter set 7
refused "pingpong counter get" "$m1/files" "$m1" "$bin/pingpong" counter get
refused "log-writer" "$m1/files" "$m1" "$bin/log-writer"
refused "pingpong with DATA_DIR the mount point itself" "$m1" "$m1" "$bin/pingpong"
refused "log-writer with DATA_DIR reached through a symlink" "$work/link/files" "$m1" "$bin/log-writer"
