# shellcheck shell=bash disable=SC2034,SC2154 # variables shared with the sourcing script
# Engine podman for test-persistent.sh: plays storage/persistentvolumeclaim.yaml once and each
# Deployment through its overlay in deploy/podman/ (ports 127.0.0.1:18080 and :18081,
# LOG_INTERVAL=1s); a pod is deleted with `podman pod rm -f` and its Deployment played again.
# Builds the images with deploy/build-images.sh if they are missing. Removes its pods at the end
# (unless --keep); the volume, like a PV, stays. bash 4 (CI only).
#
# Interface: see test/engines/k3d.sh.

engine_ready_timeout=60
claim=shared-files-claim

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

engine_counter_get() { podman exec pingpong-pod-0-pingpong pingpong counter get; }

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

engine_delete_pingpong() { podman_delete_pod pingpong; }
engine_delete_log_output() { podman_delete_pod log-output; }
engine_delete_both() { podman_delete_pod pingpong log-output; }
engine_recreate_app() {
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

engine_diagnostics() {
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

engine_cleanup() {
  if [[ "$keep" == true ]]; then
    info "--keep: pods left running (127.0.0.1:18080, 127.0.0.1:18081)"
    return 0
  fi
  podman_down pingpong
  podman_down log-output
}
