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
# engine_cleanup.

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
