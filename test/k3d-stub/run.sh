#!/usr/bin/env bash
# The GitHub workflow's k3d job (.ci/k3d-e2e.sh: deploy/k3d-up.sh, then ./test-persistent.sh
# --engine k3d, diagnostics on failure), the same commands, against a cluster played by local
# processes: stub docker, k3d and kubectl from this folder (see each for what it models), and
# HAProxy in Traefik's place. What the stub does comes from the manifests, rendered once by
# checks/manifests.py facts: HAProxy routes exactly the Ingress's paths, as Traefik does (Exact ->
# Path, the whole path; Prefix -> PathPrefix, a string prefix; longer rules first; anything else
# answers Traefik's `404 page not found`), and sends a path only to the Ready pods of its service
# (health checks on /readyz stand in for endpoint updates); the replicas, the
# PodDisruptionBudget and the PersistentVolume's node drive the stub kubectl. No Docker or k3d
# needed. Then .ci/k3d-diagnostics.sh runs against the stub cluster, to prove the workflow's
# failure artifact has every file.
#
#   test/k3d-stub/run.sh
#   TEST_BASH=/path/to/bash-3.2 BIN_DIR=target/x86_64-unknown-linux-gnu/release test/k3d-stub/run.sh
#
# TEST_BASH names the bash that runs the scripts (deploy/k3d-up.sh, test-persistent.sh; default:
# the one on PATH): with a bash 3.2 this checks, by running them, that the k3d path works on the
# bash macOS ships. BIN_DIR: the binaries (default target/release). The stubs need bash 4.
# STUB_KEEP_LOGS=DIR keeps the logs (every pod's, HAProxy's with every request) in DIR. Its last
# line is `N passed, M failed` (test-persistent.sh's checks and this script's), and so is its
# exit status.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
stub_dir="$(mktemp -d)"
export STUB_DIR="$stub_dir"
BIN_DIR="$(cd "${BIN_DIR:-$repo/target/release}" && pwd)"
export BIN_DIR
haproxy_pid=""
# shellcheck source=.ci/test-report.sh
. "$repo/.ci/test-report.sh"

# Kills every process a stub pod started, and the ingress; prints the closing line.
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local status=$? pid
  for pid in "$stub_dir"/pods/*/pid "$stub_dir"/pods/*/writer-pid; do
    if [[ -e "$pid" ]]; then kill -KILL "$(cat "$pid")" 2>/dev/null || true; fi
  done
  if [[ -n "$haproxy_pid" ]]; then kill "$haproxy_pid" 2>/dev/null || true; fi
  if ((status != 0 || failed > 0)) && [[ -s "$stub_dir/haproxy.log" ]]; then
    echo "--- the ingress's (HAProxy's) log, last 20 requests"
    tail -n 20 "$stub_dir/haproxy.log"
  fi
  if [[ -n "${STUB_KEEP_LOGS:-}" ]]; then cp "$stub_dir"/*.log "$STUB_KEEP_LOGS"/ 2>/dev/null || true; fi
  rm -rf "$stub_dir"
  (exit "$status")
  on_exit
}
trap cleanup EXIT

# shellcheck source=test/ports.sh
. "$repo/test/ports.sh"
# shellcheck source=test/haproxy.sh
. "$repo/test/haproxy.sh"

echo "==> k3d stub 1. the cluster, from the rendered manifests"
command -v haproxy >/dev/null || { echo "haproxy is not installed (apt-get install haproxy)" >&2; exit 1; }
{
  python3 "$repo/checks/manifests.py" facts "$repo/manifests"
  python3 "$repo/checks/manifests.py" facts "$repo/storage"
} >"$stub_dir/facts"
sed 's/^/    /' "$stub_dir/facts"
host_port="$(free_port)"
taken_ports="$host_port"
for app in pingpong log-output; do
  for _ in 1 2 3 4 5 6; do
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
# The Ingress's routes as HAProxy rules, ordered as Traefik orders its routers: by the length of
# the rule's text, longest first.
routing() {
  local path type service port rule
  while read -r path type service port; do
    case "$service" in pingpong | log-output) ;; *) echo "k3d stub: no backend for service $service" >&2; return 1 ;; esac
    case "$type" in
      Exact) rule="Path(\`$path\`)"; echo "${#rule} use_backend $service if { path $path }" ;;
      Prefix) rule="PathPrefix(\`$path\`)"; echo "${#rule} use_backend $service if { path_beg $path }" ;;
      *) echo "k3d stub: pathType $type of $path is not modelled" >&2; return 1 ;;
    esac
  done < <(sed -n 's/^route //p' "$stub_dir/facts") | sort -rn | cut -d ' ' -f 2- | sed 's/^/  /'
}
rules="$(routing)"
{
  haproxy_defaults
  cat <<CFG
frontend ingress
  bind 127.0.0.1:$host_port
$rules
  default_backend not-found
backend not-found
  http-request return status 404 content-type text/plain string "404 page not found"
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
echo "    HAProxy on 127.0.0.1:$host_port in Traefik's place:"
printf '%s\n' "$rules" | sed 's/^ */      /'
haproxy -db -f "$stub_dir/haproxy.cfg" >"$stub_dir/haproxy.log" 2>&1 &
haproxy_pid=$!

# TEST_BASH runs every script (their shebang is `env bash`), the stubs keep /bin/bash.
mkdir -p "$stub_dir/bash"
ln -s "${TEST_BASH:-$(command -v bash)}" "$stub_dir/bash/bash"
stub_path="$stub_dir/bash:$repo/test/k3d-stub:$PATH"

echo "==> k3d stub 2. .ci/k3d-e2e.sh (the workflow's k3d job), bash ${TEST_BASH:-bash}"
status=0
PATH="$stub_path" STUB_HOST_PORT="$host_port" HOST_PORT="$host_port" READY_TIMEOUT=60 \
  "$repo/.ci/k3d-e2e.sh" "$stub_dir/diagnostics" 2>&1 | tee "$stub_dir/e2e.log" || status=$?
summary="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$stub_dir/e2e.log" | tail -n 1 || true)"
count_run "$summary" ".ci/k3d-e2e.sh exited $status without test-persistent.sh's closing line"
if ((status == 0)) && [[ -e "$stub_dir/diagnostics" ]]; then
  fail ".ci/k3d-e2e.sh wrote diagnostics although it succeeded"
fi

echo
echo "==> k3d stub 3. .ci/k3d-diagnostics.sh against the stub cluster (the workflow's failure artifact)"
diag="$stub_dir/diagnostics-check"
PATH="$stub_path" "$repo/.ci/k3d-diagnostics.sh" "$diag"
for file in cluster.txt events.txt describe-pods.txt docker.txt; do
  if [[ -s "$diag/$file" ]]; then pass "diagnostics: $file"; else fail "diagnostics: $file is missing or empty"; fi
done
pods_running="$(PATH="$stub_path" kubectl --context k3d-k3s-default get pods -A -o jsonpath='{}' | wc -l)"
logs="$(find "$diag/logs" -name 'default_*.txt' -size +0 | wc -l)"
if ((logs == pods_running && logs > 0)); then
  pass "diagnostics: the logs of all $logs pods"
else
  fail "diagnostics: logs of $logs pods, expected $pods_running"
fi
