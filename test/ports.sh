# shellcheck shell=bash
# portable: bash 3.2 and BSD userland (macOS)
#
# Free loopback ports for the end-to-end parts: sourced by test/common.sh (test-persistent.sh on
# every engine) and test/k3d-stub/run.sh (the ingress and the stub pods). Sourced, never run.

# A TCP port on 127.0.0.1 that nothing listens on now (bash's /dev/tcp: no other tool) and
# that is not in `taken_ports` (space-separated: ports handed out before, maybe not yet bound).
# Below 32000: outgoing connections (HAProxy's health checks, curl) take their local ports from
# the ephemeral range (Linux 32768-60999, macOS 49152-65535) and could take ours before it is
# bound.
taken_ports=""
free_port() {
  local port i
  for i in $(seq 100); do
    port=$((20000 + RANDOM % 12000))
    case " $taken_ports " in *" $port "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "no free port found after $i tries" >&2
  return 1
}
