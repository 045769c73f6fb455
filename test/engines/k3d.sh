# shellcheck shell=bash disable=SC2034,SC2154 # variables shared with the sourcing script
# portable: bash 3.2 and BSD userland (macOS)
#
# Engine k3d for test-persistent.sh: the app as deploy/k3d-up.sh deployed it, reached through
# the Traefik ingress at BASE_URL (default http://localhost:$HOST_PORT, HOST_PORT 8081); pods
# are deleted with kubectl in the context KUBE_CONTEXT (default k3d-k3s-default). Needs only
# bash, curl and kubectl. The Service is the load balancer: nothing to start.
#
# Interface (the same in every engine file): engine_setup, engine_counter_get,
# engine_delete_pingpong, engine_delete_log_output, engine_delete_both, engine_recreate_app,
# engine_delete_replica, engine_roll_pingpong, engine_kill_replica, engine_diagnostics,
# engine_cleanup; and, on k3d only, engine_drain_volume_node (step 9).

engine_ready_timeout=180

# The k3d cluster's context (k3d names it k3d-<cluster>), whatever the current context is.
kube_context="${KUBE_CONTEXT:-k3d-k3s-default}"
kc() { kubectl --context "$kube_context" "$@"; }

# The names of the app's pods, one a line.
k3d_pods() {
  kc get pods -l "app.kubernetes.io/name=$1" \
    -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'
}

# k3d_wait_new_pod APP OLD: waits until the Deployment has a Ready pod whose name is not a line
# of OLD (the deleted pods).
k3d_wait_new_pod() {
  local app="$1" old="$2" deadline name ready
  deadline=$(($(now_ms) + ready_timeout * 1000))
  while (($(now_ms) < deadline)); do
    while read -r name ready; do
      [[ -n "$name" && "$ready" == True ]] || continue
      if ! printf '%s\n' "$old" | grep -qxF "$name"; then
        info "$app: pod $name is Ready"
        return 0
      fi
    done < <(kc get pods -l "app.kubernetes.io/name=$app" \
      -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')
    sleep 1
  done
  die "$app: no new Ready pod within ${ready_timeout}s"
}

k3d_rollout_status() {
  kc rollout status "deployment/$1" --timeout="${ready_timeout}s" >/dev/null ||
    die "deployment/$1 did not roll out within ${ready_timeout}s"
}

k3d_reachable() { kc get --raw /readyz --request-timeout=5s >/dev/null 2>&1; }

engine_setup() {
  k3d_reachable ||
    die "kubectl cannot reach the cluster of context '$kube_context' (KUBE_CONTEXT); create it with deploy/k3d-up.sh"
  info "kubectl context: $kube_context"
  local base="${BASE_URL:-http://localhost:${HOST_PORT:-8081}}"
  pingpong_url="$base/pingpong"
  log_url="$base/"
  kc rollout status deployment/pingpong --timeout="${ready_timeout}s" ||
    die "deployment/pingpong is not rolled out (deploy it with deploy/k3d-up.sh)"
  kc rollout status deployment/log-output --timeout="${ready_timeout}s" ||
    die "deployment/log-output is not rolled out (deploy it with deploy/k3d-up.sh)"
  interval_ms="$(interval_to_ms "$(kc get deployment log-output -o \
    jsonpath='{.spec.template.spec.containers[?(@.name=="log-writer")].env[?(@.name=="LOG_INTERVAL")].value}')")"
  wait_http_ok "$log_url" "$ready_timeout" || die "GET $log_url through the ingress: $code $body"
  k3d_expect_private "$base"
}

# Only `/` and `/pingpong` are public (manifests/ingress.yaml, pathType Exact): every other path,
# probes and /metrics included, gets the ingress's own `404 page not found` (Traefik's body, not
# an app's 404, which names its reason), because nothing routes it to a pod.
k3d_expect_private() {
  local base="$1" path
  for path in /metrics /healthz /readyz /pings /pingpong/ /pingpongs; do
    http_get "$base$path"
    if [[ "$code" == 404 && "$body" == "404 page not found" ]]; then
      pass "through the ingress $path: the ingress's 404 (only / and /pingpong are public)"
    else
      fail "through the ingress $path answered $code '${body//$nl/\\n}', expected the ingress's own" \
        "404 '404 page not found': only / and /pingpong are public"
    fi
  done
}

# The first pingpong pod (by name) that is Ready and not terminating: after a rollout, pods
# still serving out their SHUTDOWN_DELAY are listed too, and one of those must not be the
# replica a step deletes, nor where `counter get` runs (it exits under the exec).
k3d_ready_pingpong_pod() {
  local name ready deleting pod=""
  while read -r name ready deleting; do
    if [[ -n "$name" && "$ready" == True && -z "$deleting" ]]; then
      pod="$name"
      break
    fi
  done < <(kc get pods -l app.kubernetes.io/name=pingpong -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.metadata.deletionTimestamp}{"\n"}{end}' | sort)
  if [[ -z "$pod" ]]; then
    echo "no Ready pingpong pod" >&2
    return 1
  fi
  echo "$pod"
}

engine_counter_get() {
  local pod
  pod="$(k3d_ready_pingpong_pod 2>&1)" || { echo "$pod"; return 1; }
  kc exec "$pod" -c pingpong -- pingpong counter get
}

# Deletes every pod of each app given (as `kubectl delete pod -l`), then waits for a new Ready
# pod of each.
k3d_delete_pods() {
  local app old
  for app in "$@"; do
    old="$(k3d_pods "$app")"
    info "kubectl delete pod -l app.kubernetes.io/name=$app ($(echo "$old" | tr '\n' ' '))"
    kc delete pod -l "app.kubernetes.io/name=$app" --wait=true >/dev/null
    k3d_wait_new_pod "$app" "$old"
  done
}

engine_delete_pingpong() { k3d_delete_pods pingpong; }
engine_delete_log_output() {
  k3d_delete_pods log-output
  wait_http_ok "$log_url" "$ready_timeout" || die "GET $log_url: $code $body"
}
engine_delete_both() {
  local old_pp old_lo
  old_pp="$(k3d_pods pingpong)"
  old_lo="$(k3d_pods log-output)"
  info "kubectl delete pod -l 'app.kubernetes.io/name in (pingpong,log-output)'"
  kc delete pod -l 'app.kubernetes.io/name in (pingpong,log-output)' --wait=true >/dev/null
  k3d_wait_new_pod pingpong "$old_pp"
  k3d_wait_new_pod log-output "$old_lo"
  wait_http_ok "$log_url" "$ready_timeout" || die "GET $log_url: $code $body"
}
engine_recreate_app() {
  info "kubectl delete -k manifests (storage/ stays)"
  kc delete -k "$repo/manifests" --cascade=foreground --wait=true >/dev/null
  kc wait --for=delete pod -l app.kubernetes.io/part-of=log-pingpong --timeout="${ready_timeout}s" \
    >/dev/null 2>&1 || true
  info "kubectl apply -k manifests"
  kc apply -k "$repo/manifests" >/dev/null
  k3d_rollout_status pingpong
  k3d_rollout_status log-output
  wait_http_ok "$log_url" "$ready_timeout" || die "GET $log_url: $code $body"
}

# Graceful deletion of one replica: SIGTERM, the endpoint goes, the pod serves out its
# SHUTDOWN_DELAY and drains; the Deployment starts a replacement.
engine_delete_replica() {
  local pod old
  old="$(k3d_pods pingpong)"
  pod="$(k3d_ready_pingpong_pod)" || die "no Ready pingpong pod to delete"
  info "kubectl delete pod $pod (waits until it is gone)"
  kc delete pod "$pod" --wait=true >/dev/null
  k3d_wait_new_pod pingpong "$old"
  k3d_rollout_status pingpong
}

engine_roll_pingpong() {
  info "kubectl rollout restart deployment/pingpong; kubectl rollout status deployment/pingpong"
  kc rollout restart deployment/pingpong >/dev/null
  k3d_rollout_status pingpong
}

# kubectl cannot send SIGKILL into a container without a shell; the nearest it has is a forced
# deletion: the pod object and its endpoint go at once, and the kubelet kills the container
# after at most a couple of seconds, without waiting for SHUTDOWN_DELAY or the drain.
engine_kill_replica() {
  local pod old
  old="$(k3d_pods pingpong)"
  pod="$(k3d_ready_pingpong_pod)" || die "no Ready pingpong pod to delete"
  info "kubectl delete pod $pod --grace-period=0 --force (kubectl's nearest to kill -9)"
  kc delete pod "$pod" --grace-period=0 --force >/dev/null 2>&1
  k3d_wait_new_pod pingpong "$old"
  k3d_rollout_status pingpong
}

# The node the claim's PersistentVolume is pinned to (a `local` volume), or nothing when it is
# not pinned to exactly one.
k3d_volume_node() {
  local pv nodes
  pv="$(kc get pvc shared-files-claim -o jsonpath='{.spec.volumeName}' 2>/dev/null)" || return 0
  nodes="$(kc get pv "$pv" -o jsonpath='{.spec.nodeAffinity.required.nodeSelectorTerms[*].matchExpressions[*].values[*]}' 2>/dev/null)" || return 0
  case "$nodes" in
    "" | *" "*) ;;
    *) echo "$nodes" ;;
  esac
}

# kubectl drain of the volume's node, given DRAIN_TIMEOUT seconds (default 30): it cannot finish.
# The budget (minAvailable 1) lets one pingpong pod go; its replacement can run only on the
# cordoned node (the volume's node affinity), so it stays Pending, and the budget refuses the
# second eviction for as long as the drain retries. Checks that the drain gave up on the budget,
# and that one pingpong replica is still Ready while the other's replacement is Pending.
k3d_drain_blocked() {
  local node="$1" out status=0 name phase ready deleting running=0 pending=0
  info "kubectl drain $node --ignore-daemonsets --delete-emptydir-data --timeout=${drain_timeout}s"
  out="$(kc drain "$node" --ignore-daemonsets --delete-emptydir-data --timeout="${drain_timeout}s" 2>&1)" || status=$?
  if ((status != 0)) && grep -qF "would violate the pod's disruption budget" <<<"$out"; then
    pass "drain of $node: still blocked by the PodDisruptionBudget after ${drain_timeout}s (exit $status)"
  else
    fail "drain of $node exited $status, expected it blocked by the PodDisruptionBudget:" \
      "$(tail -n 4 <<<"$out" | tr '\n' '|')"
  fi
  while read -r name phase ready deleting; do
    [[ -n "$name" ]] || continue
    if [[ "$phase" == Running && "$ready" == True && -z "$deleting" ]]; then running=$((running + 1)); fi
    if [[ "$phase" == Pending ]]; then pending=$((pending + 1)); fi
  done < <(kc get pods -l app.kubernetes.io/name=pingpong -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.phase}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.metadata.deletionTimestamp}{"\n"}{end}')
  if ((running == 1 && pending == 1)); then
    pass "while $node drains: 1 pingpong replica Ready, its evicted peer's replacement Pending"
  else
    fail "while $node drains: $running pingpong replica(s) Ready, $pending Pending; expected 1 and 1"
  fi
  http_get "$log_url"
  info "'/' answered $code while $node was cordoned: log-output's replacement cannot run anywhere else"
}

drain_timeout="${DRAIN_TIMEOUT:-30}"
engine_drain_volume_node() {
  local node
  node="$(k3d_volume_node)"
  if [[ -z "$node" ]]; then
    info "the claim's volume is not pinned to one node: a drain moves the pods elsewhere; nothing to show"
    return 0
  fi
  under_load "drain of $node" report k3d_drain_blocked "$node"
  info "kubectl uncordon $node"
  kc uncordon "$node" >/dev/null
  k3d_rollout_status pingpong
  k3d_rollout_status log-output
  expect_log "after kubectl uncordon $node" yes
}

engine_diagnostics() {
  if ! k3d_reachable; then
    echo "--- no cluster reachable: nothing to show"
    return 0
  fi
  echo "--- kubectl get pods,pvc,pv,ingress,pdb -o wide"
  kc get pods,pvc,pv,ingress,pdb -o wide 2>&1 || true
  echo "--- kubectl describe pods (events)"
  kc describe pods -l 'app.kubernetes.io/name in (pingpong,log-output)' 2>&1 |
    sed -n '/^Name:/p; /^Events:/,/^$/p' || true
  local app
  for app in pingpong log-output; do
    echo "--- kubectl logs -l app.kubernetes.io/name=$app --all-containers --tail=30"
    kc logs -l "app.kubernetes.io/name=$app" --all-containers --prefix --tail=30 2>&1 || true
  done
}

engine_cleanup() { :; }
