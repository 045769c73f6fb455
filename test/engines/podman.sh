# shellcheck shell=bash disable=SC2034,SC2154 # variables shared with the sourcing script
# Engine podman for test-persistent.sh: plays storage/persistentvolumeclaim.yaml once, the
# log-output Deployment through its overlay in deploy/podman/ (127.0.0.1:18081,
# LOG_INTERVAL=1s), and the pingpong Deployment through its overlay twice, as the replicas
# pingpong-1 and pingpong-2 (127.0.0.1:18091, :18092; podman breaks replicas > 1 with a
# hostPort), with HAProxy (test/haproxy.sh) on 127.0.0.1:18080 in the Service's place. A pod is
# deleted with `podman pod rm -f` and its Deployment played again; a graceful deletion is
# `podman stop` of its containers (SIGTERM) then `podman pod rm`. Builds the images with
# deploy/build-images.sh if they are missing. Removes its pods at the end (unless --keep); the
# volume, like a PV, stays. bash 4 (CI only).
#
# Replicas live in slots pingpong-1..3 (Deployment pingpong-N, pod pingpong-N-pod-0, port
# 1809N, HAProxy server rN); two are live, the third is the spare a new replica starts in.
#
# Interface: see test/engines/k3d.sh.

# shellcheck source=test/haproxy.sh
. "$repo/test/haproxy.sh"

engine_ready_timeout=60
claim=shared-files-claim
live=(pingpong-1 pingpong-2)   # the replicas behind HAProxy now
spare=pingpong-3

podman_overlay() {
  kubectl kustomize --load-restrictor LoadRestrictionsNone "$repo/deploy/podman/$1"
}

# The YAML of app `log-output`, or of replica slot pingpong-N: the pingpong overlay renamed to
# pingpong-N, its hostPort 1809N.
podman_yaml() {
  local app="$1" dir
  if [[ "$app" == log-output ]]; then
    podman_overlay log-output
    return
  fi
  dir="$work/$app"
  mkdir -p "$dir"
  cat >"$dir/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$dir" "$repo/deploy/podman/pingpong")
nameSuffix: "-${app#pingpong-}"
patches:
  - target:
      kind: Deployment
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/ports/0/hostPort
        value: $(podman_port "$app")
YAML
  kubectl kustomize --load-restrictor LoadRestrictionsNone "$dir"
}

podman_port() { echo "$((18090 + ${1#pingpong-}))"; }
slot() { echo "${1#pingpong-}"; }

# podman prints harmless systemd/healthcheck errors on stderr here; keep them for diagnostics.
podman_play() {
  local app
  for app in "$@"; do
    podman_yaml "$app" | podman kube play - >>"$work/podman.log" 2>&1 ||
      die "podman kube play $app failed: $(tail -n 5 "$work/podman.log")"
    info "played Deployment $app"
  done
}

podman_down() {
  local app
  for app in "$@"; do
    if podman pod exists "$app-pod-0"; then
      podman pod rm -f "$app-pod-0" >>"$work/podman.log" 2>&1 || true
    fi
  done
}

# The containers of the apps given.
podman_containers() {
  local app
  for app in "$@"; do
    case "$app" in
      log-output) echo log-output-pod-0-log-writer log-output-pod-0-log-reader ;;
      *) echo "$app-pod-0-pingpong" ;;
    esac
  done
}

engine_setup() {
  export CONTAINERS_CONF="${CONTAINERS_CONF:-$repo/deploy/podman/containers.conf}"
  local image
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
  podman_down pingpong pingpong-1 pingpong-2 pingpong-3 log-output
  haproxy_start 18080 "$(podman_port pingpong-1)" "$(podman_port pingpong-2)" "$(podman_port pingpong-3)"
  podman_play "${live[@]}" log-output
  podman_wait_ready "${live[@]}" log-output
  haproxy_wait_state "$(slot "$spare")" DOWN
  podman_expect_hardening
}

# podman ignores readinessProbe: poll /readyz on the published ports instead, and for a
# replica wait until HAProxy has it UP.
podman_wait_ready() {
  local app
  for app in "$@"; do
    if [[ "$app" == log-output ]]; then
      wait_http_ok "http://127.0.0.1:18081/readyz" "$ready_timeout" ||
        die "log-reader not ready within ${ready_timeout}s: $code $body"
    else
      wait_http_ok "http://127.0.0.1:$(podman_port "$app")/readyz" "$ready_timeout" ||
        die "$app not ready within ${ready_timeout}s: $code $body"
      haproxy_wait_state "$(slot "$app")" UP
    fi
  done
}

engine_counter_get() { podman exec "${live[0]}-pod-0-pingpong" pingpong counter get; }

# What the manifests ask of each container, as podman applied it.
podman_expect_hardening() {
  local container got want='10001:10001 true [] [no-new-privileges]'
  for container in $(podman_containers "${live[@]}" log-output); do
    got="$(podman inspect "$container" \
      --format '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.EffectiveCaps}} {{.HostConfig.SecurityOpt}}')"
    if [[ "$got" == "$want" ]]; then
      pass "$container: user 10001:10001, read-only root, no capabilities, no-new-privileges"
    else
      fail "$container: user, read-only root, capabilities, security options are '$got', expected '$want'"
    fi
  done
}

# podman_stop APP...: the kubelet's way: SIGTERM to the app containers (`podman stop`, SIGKILL
# after 20 s like the manifests' terminationGracePeriodSeconds) while the pod's infra container
# keeps its network up, then the pod goes. Not `podman pod stop`: podman 4.3 tears the pod's
# published port down at once, so the SHUTDOWN_DELAY the app still serves is unreachable
# (measured: /readyz answered 000 from the first request after `pod stop`, while the process
# logged 5 s more of serving). As PID 1 each container must exit 0 (SPEC §6): 137 would mean
# podman had to kill it.
#
# The containers of one pod are stopped one after the other: stopping log-writer and log-reader
# together (in one `podman stop` or two at once) makes podman 4.3 send log-reader a second
# SIGTERM about 50 ms after the first (seen in its log), and a second signal means "exit now"
# (exit 1). Pods are stopped in parallel.
podman_stop() {
  local app container stoppers=() status=0 pid
  for app in "$@"; do
    (
      for container in $(podman_containers "$app"); do
        podman stop -t 20 "$container" >>"$work/podman.log" 2>&1 || exit 1
      done
    ) &
    stoppers+=("$!")
  done
  for pid in "${stoppers[@]}"; do
    wait "$pid" || status=1
  done
  ((status == 0)) || die "podman stop $(podman_containers "$@") failed"
  info "podman stop (SIGTERM) $(podman_containers "$@")"
  podman_reap "$@"
}

# Checks the exit status of each container of the (stopped) apps, then removes their pods.
podman_reap() {
  local container status
  for container in $(podman_containers "$@"); do
    status="$(podman inspect "$container" --format '{{.State.ExitCode}}')"
    if [[ "$status" == 0 ]]; then
      pass "$container exits 0 on SIGTERM"
    else
      fail "$container exited $status on SIGTERM, expected 0"
    fi
  done
  podman_down "$@"
}

# Like `kubectl delete pod`, then the Deployment's replacement: force-remove, play again.
podman_delete_pod() {
  local app
  for app in "$@"; do
    podman pod rm -f "$app-pod-0" >>"$work/podman.log" 2>&1 || die "podman pod rm -f $app-pod-0 failed"
    info "podman pod rm -f $app-pod-0"
  done
  podman_play "$@"
  podman_wait_ready "$@"
}

engine_delete_pingpong() { podman_delete_pod "${live[@]}"; }
engine_delete_log_output() { podman_delete_pod log-output; }
engine_delete_both() { podman_delete_pod "${live[@]}" log-output; }
engine_recreate_app() {
  podman_stop "${live[@]}" log-output
  info "removed the pods (the volume stays)"
  podman_play "${live[@]}" log-output
  podman_wait_ready "${live[@]}" log-output
}

# Graceful deletion of one replica, as Kubernetes does it: SIGTERM (podman stop, see
# podman_stop), and the replacement played in the spare slot (a new pod is a new endpoint) once
# HAProxy has taken the stopping replica out. Not at the same moment: with podman 4.3 and
# netavark, playing a pod while another pod's container stops has dropped a connection to
# the stopping pod's published port during its SHUTDOWN_DELAY (HAProxy's log: `sC--`, a 2 s
# connect timeout; 1 request in about 400, in 2 runs of 10); the kubelet starts a replacement
# independently anyway.
engine_delete_replica() {
  local victim="${live[0]}" new="$spare" stopper status=0
  podman stop -t 20 "$victim-pod-0-pingpong" >>"$work/podman.log" 2>&1 &
  stopper=$!
  info "podman stop $victim-pod-0-pingpong (SIGTERM); once HAProxy has it DOWN its replacement is played as $new"
  haproxy_wait_state "$(slot "$victim")" DOWN
  podman_play "$new"
  podman_wait_ready "$new"
  wait "$stopper" || status=$?
  ((status == 0)) || die "podman stop $victim-pod-0-pingpong failed"
  podman_reap "$victim"
  live[0]="$new"
  spare="$victim"
}

# maxSurge 1, maxUnavailable 0, replica by replica: the new one in the spare slot, ready and UP
# in HAProxy, then `podman stop` of an old one, whose slot becomes the spare.
engine_roll_pingpong() {
  local old new i
  for i in "${!live[@]}"; do
    old="${live[$i]}"
    new="$spare"
    info "rolling: play $new, wait until HAProxy has it UP, then stop $old"
    podman_play "$new"
    podman_wait_ready "$new"
    podman_stop "$old"
    live[i]="$new"
    spare="$old"
  done
}

# SIGKILL to one replica's process; HAProxy keeps routing to it until two checks fail. Then
# the pod is replaced, as the kubelet would restart the container.
engine_kill_replica() {
  local victim="${live[0]}"
  podman kill -s KILL "$victim-pod-0-pingpong" >>"$work/podman.log" 2>&1 ||
    die "podman kill -s KILL $victim-pod-0-pingpong failed"
  info "podman kill -s KILL $victim-pod-0-pingpong; HAProxy routes to it until its checks fail"
  haproxy_wait_state "$(slot "$victim")" DOWN
  podman_delete_pod "$victim"
}

engine_diagnostics() {
  echo "--- podman pod ps"
  podman pod ps || true
  echo "--- podman ps -a"
  podman ps -a --format '{{.Names}}  {{.Status}}  {{.Ports}}' || true
  local container
  for container in $(podman_containers pingpong-1 pingpong-2 pingpong-3 log-output); do
    podman container exists "$container" || continue
    echo "--- podman logs --tail 30 $container"
    podman logs --tail 30 "$container" 2>&1 || true
  done
  echo "--- volume $claim"
  ls -la "$(podman volume inspect "$claim" --format '{{.Mountpoint}}' 2>/dev/null)" 2>/dev/null || true
  echo "--- podman's own messages (last 20)"
  tail -n 20 "$work/podman.log" 2>/dev/null || true
  haproxy_diagnostics
}

engine_cleanup() {
  haproxy_stop
  if [[ "$keep" == true ]]; then
    info "--keep: pods left running (${live[*]} on 127.0.0.1:$(podman_port "${live[0]}") and" \
      ":$(podman_port "${live[1]}"), log-output on :18081); HAProxy stopped"
    return 0
  fi
  podman_down pingpong-1 pingpong-2 pingpong-3 log-output
}
