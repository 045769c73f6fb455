#!/usr/bin/env bash
# Persistence test on a real engine (SPEC §7, guarantees 1 and 4).
#
#   ./test-persistent.sh [--engine k3d|podman|local] [--requests K] [--keep]
#
#   k3d     (default) the app as deployed by deploy/k3d-up.sh, through the Traefik ingress at
#           BASE_URL (default http://localhost:8081); pods are deleted with kubectl, in the
#           context KUBE_CONTEXT (default k3d-k3s-default).
#   podman  plays storage/persistentvolumeclaim.yaml once and each Deployment through its overlay
#           in deploy/podman/ (ports 127.0.0.1:18080 and :18081, LOG_INTERVAL=1s); a pod is
#           deleted with `podman pod rm -f` and its Deployment played again. Builds the images
#           with deploy/build-images.sh if they are missing. Removes its pods at the end (unless
#           --keep); the volume, like a PV, stays.
#   local   runs the three binaries from BIN_DIR (default: target/release, built if needed) on a
#           temporary DATA_DIR and free ports; a pod deletion is kill -9 and a restart.
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
#
# On failure it prints pod states and logs. The last line is `N passed, M failed`; the exit
# status is non-zero if anything failed.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
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
readonly repo engine requests keep
export TAG="${TAG:-0.1.0}"
work="$(mktemp -d "${TMPDIR:-/tmp}/test-persistent.XXXXXX")"
readonly work

passed=0
failed=0
last=-1        # the last number /pingpong acknowledged
writer_id=""   # the UUID in the last entry seen on `/`

# --- reporting --------------------------------------------------------------------------------

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
pass() { passed=$((passed + 1)); printf '  ok     %s\n' "$*"; }

# Records a failure. The first one also prints pod states and logs at once, while the pods that
# failed are still there (a later step replaces them).
diagnosed=false
fail() {
  failed=$((failed + 1))
  printf '  FAILED %s\n' "$*"
  if [[ "$diagnosed" == false ]]; then
    diagnosed=true
    printf '\n==> diagnostics (%s)\n' "$engine"
    "${engine}_diagnostics" 2>&1 | sed 's/^/    /' || true
    printf '==> end of diagnostics\n\n'
  fi
}

# Reports a failure and ends the run (the EXIT trap prints diagnostics and the summary).
die() {
  fail "$*"
  exit 1
}

now_ms() { date +%s%3N; }
readonly nl=$'\n'

# LOG_INTERVAL syntax (250ms, 5s, 1m) to milliseconds.
interval_to_ms() {
  local v="$1"
  case "$v" in
    *ms) echo "${v%ms}" ;;
    *s) echo $((${v%s} * 1000)) ;;
    *m) echo $((${v%m} * 60000)) ;;
    *) echo "unsupported LOG_INTERVAL '$v'" >&2; return 1 ;;
  esac
}

# --- HTTP -------------------------------------------------------------------------------------

# http_get URL: sets code and body (the exact bytes are in $work/body). Never fails.
code=""
body=""
http_get() {
  code="$(curl -sS --max-time 5 -o "$work/body" -w '%{http_code}' "$1" 2>"$work/curl.err")" || code="000"
  body="$(cat "$work/body" 2>/dev/null || true)"
}

# Polls URL until it answers 200 or the deadline (seconds) passes.
wait_http_ok() {
  local url="$1" timeout_s="$2" deadline
  deadline=$(($(now_ms) + timeout_s * 1000))
  while (($(now_ms) < deadline)); do
    http_get "$url"
    [[ "$code" == 200 ]] && return 0
    sleep 0.2
  done
  return 1
}

# One GET /pingpong. Retries while nothing answered 200 (connection refused, or the ingress has no
# ready endpoint yet): pingpong hands out a number only with a 200. Sets `got` to N.
got=-1
ping() {
  local deadline
  deadline=$(($(now_ms) + ready_timeout * 1000))
  while :; do
    http_get "$pingpong_url"
    [[ "$code" == 200 ]] && break
    if (($(now_ms) >= deadline)); then
      die "GET $pingpong_url answered $code: ${body:-$(cat "$work/curl.err")}"
    fi
    sleep 0.2
  done
  if ! [[ "$body" =~ ^pong\ ([0-9]+)$ ]]; then
    die "GET $pingpong_url: body '$body' is not 'pong N'"
  fi
  got="${BASH_REMATCH[1]}"
}

# Asks for the next number and checks it is exactly `last + 1`.
expect_next_pong() {
  local what="$1" want=$((last + 1))
  ping
  if [[ "$got" == "$want" ]]; then
    pass "$what: pong $got (last acknowledged $last + 1)"
  else
    fail "$what: pong $got, expected exactly pong $want (last acknowledged $last + 1)"
  fi
  last="$got"
}

# Polls `/` until its entry counts `last + 1` (the counter file holds the number of answers),
# within two log intervals of now. With new_writer=yes the entry must also come from a writer
# UUID other than the one seen before.
expect_log() {
  local what="$1" new_writer="${2:-no}" want=$((last + 1)) deadline seen_count="" seen_id=""
  local entry_re="^.*: ([0-9a-f-]{36})\\.${nl}Ping / Pongs: ([0-9]+)\$"
  deadline=$(($(now_ms) + 2 * interval_ms))
  while :; do
    http_get "$log_url"
    if [[ "$code" == 200 && "$body" =~ $entry_re ]]; then
      seen_id="${BASH_REMATCH[1]}"
      seen_count="${BASH_REMATCH[2]}"
      if [[ "$seen_count" == "$want" && ("$new_writer" == no || "$seen_id" != "$writer_id") ]]; then
        break
      fi
    fi
    if (($(now_ms) >= deadline)); then
      fail "$what: within $((2 * interval_ms)) ms '/' answered $code '${body//$'\n'/\\n}'," \
        "expected 'Ping / Pongs: $want'$([[ $new_writer == yes ]] && echo " from a writer other than $writer_id")"
      return 0
    fi
    sleep 0.1
  done
  pass "$what: '/' shows Ping / Pongs: $want$([[ $new_writer == yes ]] && echo " from new writer $seen_id")"
  writer_id="$seen_id"
}

# The exact entry format of SPEC §5, on the bytes last read from `/`.
expect_entry_format() {
  local ts='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z'
  local uuid='[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}'
  local lines last_byte
  lines="$(wc -l <"$work/body")"
  last_byte="$(tail -c 1 "$work/body" | od -An -c | tr -d ' ')"
  local format_re="^${ts}: ${uuid}\\.${nl}Ping / Pongs: [0-9]+\$"
  if [[ "$body" =~ $format_re && "$lines" == 1 && "$last_byte" != '\n' ]]; then
    pass "entry format: '<RFC 3339 ms Z>: <uuid v4>.\\nPing / Pongs: N', no trailing newline"
  else
    fail "entry format: got '$(od -c "$work/body" | head -5)'"
  fi
}

# The operator command inside the running app (no shell in the image: exec the binary itself)
# must print the count the counter file holds, `last + 1`.
expect_counter_get() {
  local want=$((last + 1)) out
  out="$("${engine}_counter_get" 2>&1)" || true
  if [[ "$out" == "$want" ]]; then
    pass "pingpong counter get: $out"
  else
    fail "pingpong counter get printed '$out', expected $want"
  fi
}

# --- engine: local ----------------------------------------------------------------------------

declare -A pids=()
declare -A ports=()

free_port() {
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

local_setup() {
  if [[ -n "${BIN_DIR:-}" ]]; then
    bin_dir="$BIN_DIR"
  else
    info "cargo build --release (binaries for the local engine)"
    (cd "$repo" && cargo build --release --quiet --bin pingpong --bin log-writer --bin log-reader)
    bin_dir="$repo/target/release"
  fi
  for bin in pingpong log-writer log-reader; do
    [[ -x "$bin_dir/$bin" ]] || die "no executable $bin_dir/$bin"
  done
  data_dir="$work/files"
  ports[pingpong]="$(free_port)"
  ports[log-reader]="$(free_port)"
  interval_ms=1000
  pingpong_url="http://127.0.0.1:${ports[pingpong]}/pingpong"
  log_url="http://127.0.0.1:${ports[log-reader]}/"
  info "binaries $bin_dir, DATA_DIR $data_dir, LOG_INTERVAL 1s"
  local_start pingpong
  local_start log-writer
  local_start log-reader
}

local_start() {
  local name="$1"
  local -a env=(DATA_DIR="$data_dir" RUST_LOG=info)
  case "$name" in
    log-writer) env+=(LOG_INTERVAL=1s) ;;
    *) env+=(PORT="${ports[$name]}") ;;
  esac
  env "${env[@]}" "$bin_dir/$name" >>"$work/$name.log" 2>&1 &
  pids[$name]=$!
}

# SIGKILL, like a node losing the pod: nothing gets to finish.
local_kill9() {
  local name
  for name in "$@"; do
    kill -KILL "${pids[$name]}" 2>/dev/null || true
    wait "${pids[$name]}" 2>/dev/null || true
    info "kill -9 $name (pid ${pids[$name]})"
    local_start "$name"
  done
}

# SIGTERM, like deleting the app: each process must drain and exit 0 (SPEC §6).
local_stop_all() {
  local name status
  for name in pingpong log-writer log-reader; do
    kill -TERM "${pids[$name]}"
  done
  for name in pingpong log-writer log-reader; do
    status=0
    wait "${pids[$name]}" || status=$?
    if [[ "$status" == 0 ]]; then
      pass "$name exits 0 on SIGTERM"
    else
      fail "$name exited $status on SIGTERM, expected 0"
    fi
  done
}

local_wait_ready() {
  wait_http_ok "http://127.0.0.1:${ports[pingpong]}/readyz" "$ready_timeout" ||
    die "pingpong not ready within ${ready_timeout}s: $code $body"
  wait_http_ok "http://127.0.0.1:${ports[log-reader]}/readyz" "$ready_timeout" ||
    die "log-reader not ready within ${ready_timeout}s: $code $body"
}

local_delete_pingpong() { local_kill9 pingpong; local_wait_ready; }
local_delete_log_output() { local_kill9 log-writer log-reader; local_wait_ready; }
local_delete_both() { local_kill9 pingpong log-writer log-reader; local_wait_ready; }
local_recreate_app() {
  info "SIGTERM pingpong, log-writer, log-reader; start them again"
  local_stop_all
  local_start pingpong
  local_start log-writer
  local_start log-reader
  local_wait_ready
}

local_counter_get() { DATA_DIR="$data_dir" "$bin_dir/pingpong" counter get; }

local_diagnostics() {
  local name
  for name in pingpong log-writer log-reader; do
    echo "--- $name (pid ${pids[$name]:-none}): last 30 lines of its output"
    tail -n 30 "$work/$name.log" 2>/dev/null || true
  done
  echo "--- DATA_DIR"
  ls -la "$data_dir" 2>/dev/null || true
}

local_cleanup() {
  local name
  for name in "${!pids[@]}"; do
    kill -KILL "${pids[$name]}" 2>/dev/null || true
    wait "${pids[$name]}" 2>/dev/null || true
  done
}

# --- engine: podman ---------------------------------------------------------------------------

readonly claim=shared-files-claim

podman_overlay() {
  kubectl kustomize --load-restrictor LoadRestrictionsNone "$repo/deploy/podman/$1"
}

# podman prints harmless systemd/healthcheck errors on stderr here; keep them for diagnostics.
podman_play() {
  podman_overlay "$1" | podman kube play - >>"$work/podman.log" 2>&1 ||
    die "podman kube play $1 failed: $(tail -n 5 "$work/podman.log")"
  info "played Deployment $1"
}

podman_down() {
  if podman pod exists "$1-pod-0"; then
    podman_overlay "$1" | podman kube down - >>"$work/podman.log" 2>&1 || true
  fi
}

podman_setup() {
  export CONTAINERS_CONF="${CONTAINERS_CONF:-$repo/deploy/podman/containers.conf}"
  for image in pingpong log-output; do
    if ! podman image exists "$image:$TAG"; then
      info "image $image:$TAG missing: deploy/build-images.sh"
      "$repo/deploy/build-images.sh"
      break
    fi
  done
  # The claim is played once: replaying a file with a PVC fails ("volume already exists").
  if ! podman volume exists "$claim"; then
    podman kube play "$repo/storage/persistentvolumeclaim.yaml" >>"$work/podman.log" 2>&1 ||
      die "podman kube play storage/persistentvolumeclaim.yaml failed"
    info "created volume $claim from storage/persistentvolumeclaim.yaml"
  fi
  # podman ignores fsGroup: the volume root must belong to the app's UID.
  local mountpoint
  mountpoint="$(podman volume inspect "$claim" --format '{{.Mountpoint}}')"
  chown 10001:10001 "$mountpoint"
  interval_ms="$(interval_to_ms "$(podman_overlay log-output |
    sed -n '/name: LOG_INTERVAL/{n;s/.*value: *//p}')")"
  pingpong_url="http://127.0.0.1:18080/pingpong"
  log_url="http://127.0.0.1:18081/"
  podman_down pingpong
  podman_down log-output
  podman_play pingpong
  podman_play log-output
  podman_wait_ready
  podman_expect_hardening
}

# podman ignores readinessProbe: poll /readyz on the published ports instead.
podman_wait_ready() {
  wait_http_ok "http://127.0.0.1:18080/readyz" "$ready_timeout" ||
    die "pingpong not ready within ${ready_timeout}s: $code $body"
  wait_http_ok "http://127.0.0.1:18081/readyz" "$ready_timeout" ||
    die "log-reader not ready within ${ready_timeout}s: $code $body"
}

podman_counter_get() { podman exec pingpong-pod-0-pingpong pingpong counter get; }

# What the manifests ask of each container, as podman applied it.
podman_expect_hardening() {
  local container got want='10001:10001 true [] [no-new-privileges]'
  for container in pingpong-pod-0-pingpong log-output-pod-0-log-writer log-output-pod-0-log-reader; do
    got="$(podman inspect "$container" \
      --format '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.EffectiveCaps}} {{.HostConfig.SecurityOpt}}')"
    if [[ "$got" == "$want" ]]; then
      pass "$container: user 10001:10001, read-only root, no capabilities, no-new-privileges"
    else
      fail "$container: user, read-only root, capabilities, security options are '$got', expected '$want'"
    fi
  done
}

podman_delete_pod() {
  local app
  for app in "$@"; do
    podman pod rm -f "$app-pod-0" >>"$work/podman.log" 2>&1 || die "podman pod rm -f $app-pod-0 failed"
    info "podman pod rm -f $app-pod-0"
  done
  for app in "$@"; do
    podman_play "$app"
  done
  podman_wait_ready
}

podman_delete_pingpong() { podman_delete_pod pingpong; }
podman_delete_log_output() { podman_delete_pod log-output; }
podman_delete_both() { podman_delete_pod pingpong log-output; }
podman_recreate_app() {
  # Stop first, to see how each container ended: as PID 1 it must exit 0 on SIGTERM (SPEC §6);
  # 137 would mean podman had to kill it after the 10 s grace period.
  podman pod stop -t 10 pingpong-pod-0 log-output-pod-0 >>"$work/podman.log" 2>&1 ||
    die "podman pod stop failed"
  info "podman pod stop (SIGTERM) pingpong-pod-0, log-output-pod-0"
  local container status
  for container in pingpong-pod-0-pingpong log-output-pod-0-log-writer log-output-pod-0-log-reader; do
    status="$(podman inspect "$container" --format '{{.State.ExitCode}}')"
    if [[ "$status" == 0 ]]; then
      pass "$container exits 0 on SIGTERM"
    else
      fail "$container exited $status on SIGTERM, expected 0"
    fi
  done
  podman_down pingpong
  podman_down log-output
  info "podman kube down pingpong, log-output (the volume stays)"
  podman_play pingpong
  podman_play log-output
  podman_wait_ready
}

podman_diagnostics() {
  echo "--- podman pod ps"
  podman pod ps || true
  echo "--- podman ps -a"
  podman ps -a --format '{{.Names}}  {{.Status}}  {{.Ports}}' || true
  local container
  for container in pingpong-pod-0-pingpong log-output-pod-0-log-writer log-output-pod-0-log-reader; do
    echo "--- podman logs --tail 30 $container"
    podman logs --tail 30 "$container" 2>&1 || true
  done
  echo "--- volume $claim"
  ls -la "$(podman volume inspect "$claim" --format '{{.Mountpoint}}' 2>/dev/null)" 2>/dev/null || true
  echo "--- podman's own messages (last 20)"
  tail -n 20 "$work/podman.log" 2>/dev/null || true
}

podman_cleanup() {
  if [[ "$keep" == true ]]; then
    info "--keep: pods left running (127.0.0.1:18080, 127.0.0.1:18081)"
    return 0
  fi
  podman_down pingpong
  podman_down log-output
}

# --- engine: k3d ------------------------------------------------------------------------------

# The k3d cluster's context (k3d names it k3d-<cluster>), whatever the current context is.
readonly kube_context="${KUBE_CONTEXT:-k3d-k3s-default}"
kc() { kubectl --context "$kube_context" "$@"; }

k3d_pods() {
  kc get pods -l "app.kubernetes.io/name=$1" \
    -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'
}

# Waits until the Deployment has a Ready pod that is none of the ones given (the deleted pods),
# then until the ingress answers for it.
k3d_wait_new_pod() {
  local app="$1" deadline name ready
  shift
  deadline=$(($(now_ms) + ready_timeout * 1000))
  while (($(now_ms) < deadline)); do
    while read -r name ready; do
      [[ -n "$name" && "$ready" == True ]] || continue
      if ! printf '%s\n' "$@" | grep -qxF "$name"; then
        info "$app: pod $name is Ready"
        return 0
      fi
    done < <(kc get pods -l "app.kubernetes.io/name=$app" \
      -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')
    sleep 1
  done
  die "$app: no new Ready pod within ${ready_timeout}s"
}

k3d_reachable() { kc get --raw /readyz --request-timeout=5s >/dev/null 2>&1; }

k3d_setup() {
  k3d_reachable ||
    die "kubectl cannot reach the cluster of context '$kube_context' (KUBE_CONTEXT); create it with deploy/k3d-up.sh"
  info "kubectl context: $kube_context"
  pingpong_url="${BASE_URL:-http://localhost:8081}/pingpong"
  log_url="${BASE_URL:-http://localhost:8081}/"
  kc rollout status deployment/pingpong --timeout="${ready_timeout}s" ||
    die "deployment/pingpong is not rolled out (deploy it with deploy/k3d-up.sh)"
  kc rollout status deployment/log-output --timeout="${ready_timeout}s" ||
    die "deployment/log-output is not rolled out (deploy it with deploy/k3d-up.sh)"
  interval_ms="$(interval_to_ms "$(kc get deployment log-output -o \
    jsonpath='{.spec.template.spec.containers[?(@.name=="log-writer")].env[?(@.name=="LOG_INTERVAL")].value}')")"
  wait_http_ok "$log_url" "$ready_timeout" || die "GET $log_url through the ingress: $code $body"
}

k3d_counter_get() { kc exec deploy/pingpong -c pingpong -- pingpong counter get; }

k3d_delete_pods() {
  local app old
  for app in "$@"; do
    mapfile -t old < <(k3d_pods "$app")
    info "kc delete pod -l app.kubernetes.io/name=$app (${old[*]})"
    kc delete pod -l "app.kubernetes.io/name=$app" --wait=true >/dev/null
    k3d_wait_new_pod "$app" "${old[@]}"
  done
}

k3d_delete_pingpong() { k3d_delete_pods pingpong; }
k3d_delete_log_output() {
  k3d_delete_pods log-output
  wait_http_ok "$log_url" "$ready_timeout" || die "GET $log_url: $code $body"
}
k3d_delete_both() {
  local old_pp old_lo
  mapfile -t old_pp < <(k3d_pods pingpong)
  mapfile -t old_lo < <(k3d_pods log-output)
  info "kc delete pod -l 'app.kubernetes.io/name in (pingpong,log-output)'"
  kc delete pod -l 'app.kubernetes.io/name in (pingpong,log-output)' --wait=true >/dev/null
  k3d_wait_new_pod pingpong "${old_pp[@]}"
  k3d_wait_new_pod log-output "${old_lo[@]}"
  wait_http_ok "$log_url" "$ready_timeout" || die "GET $log_url: $code $body"
}
k3d_recreate_app() {
  info "kc delete -k manifests (storage/ stays)"
  kc delete -k "$repo/manifests" --cascade=foreground --wait=true >/dev/null
  kc wait --for=delete pod -l app.kubernetes.io/part-of=log-pingpong --timeout="${ready_timeout}s" \
    >/dev/null 2>&1 || true
  info "kc apply -k manifests"
  kc apply -k "$repo/manifests" >/dev/null
  kc rollout status deployment/pingpong --timeout="${ready_timeout}s" >/dev/null ||
    die "deployment/pingpong did not roll out again"
  kc rollout status deployment/log-output --timeout="${ready_timeout}s" >/dev/null ||
    die "deployment/log-output did not roll out again"
  wait_http_ok "$log_url" "$ready_timeout" || die "GET $log_url: $code $body"
}

k3d_diagnostics() {
  if ! k3d_reachable; then
    echo "--- no cluster reachable: nothing to show"
    return 0
  fi
  echo "--- kc get pods,pvc,pv,ingress -o wide"
  kc get pods,pvc,pv,ingress -o wide 2>&1 || true
  echo "--- kc describe pods (events)"
  kc describe pods -l 'app.kubernetes.io/name in (pingpong,log-output)' 2>&1 |
    sed -n '/^Name:/p; /^Events:/,/^$/p' || true
  local app
  for app in pingpong log-output; do
    echo "--- kc logs -l app.kubernetes.io/name=$app --all-containers --tail=30"
    kc logs -l "app.kubernetes.io/name=$app" --all-containers --prefix --tail=30 2>&1 || true
  done
}

k3d_cleanup() { :; }

# --- run ----------------------------------------------------------------------------------------

on_exit() {
  local status=$?
  trap - EXIT
  set +e
  if ((status != 0 && failed == 0)); then
    fail "aborted (exit status $status)"
  fi
  "${engine}_cleanup" 2>/dev/null
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

if [[ "$engine" == k3d ]]; then
  ready_timeout="${READY_TIMEOUT:-180}"
else
  ready_timeout="${READY_TIMEOUT:-60}"
fi
interval_ms=5000
pingpong_url=""
log_url=""
bin_dir=""
data_dir=""

step "0. set up ($engine)"
"${engine}_setup"
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
"${engine}_delete_pingpong"
expect_next_pong "after the pingpong pod was deleted"
expect_log "'/' follows"

step "3. delete the log-output pod"
"${engine}_delete_log_output"
expect_log "after the log-output pod was deleted" yes

step "4. delete both pods"
"${engine}_delete_both"
expect_next_pong "after both pods were deleted"
expect_log "'/' follows" yes

step "5. delete and re-create the whole app (not the storage)"
"${engine}_recreate_app"
expect_next_pong "after the app was re-created"
expect_log "'/' follows" yes
