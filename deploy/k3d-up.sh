#!/usr/bin/env bash
# The whole system on k3d in one command, from the repository root:
#
#   deploy/k3d-up.sh              # images built by `docker build` (pulls rust:1.95 for the builder)
#   deploy/k3d-up.sh --prebuilt   # images from binaries built by this host's cargo (no rust image)
#
# Needs docker, k3d (v5) and kubectl. Creates the cluster k3s-default (one server, one agent,
# host port 8081 -> the Traefik ingress) unless it exists, prepares the PersistentVolume's
# directory on the agent, builds and imports the images, applies storage/ then manifests/, and
# waits for both Deployments. Run it again after changing the code: it rebuilds, re-imports and
# restarts the pods. Tear down with deploy/k3d-down.sh.
set -euo pipefail

readonly CLUSTER=k3s-default   # storage/persistentvolume.yaml pins the PV to this cluster's agent
readonly AGENT="k3d-$CLUSTER-agent-0"
readonly CONTEXT="k3d-$CLUSTER"
readonly HOST_PORT=8081
export TAG=0.1.0
readonly APP_UID=10001
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly repo

prebuilt=false
case "${1:-}" in
  "") ;;
  --prebuilt) prebuilt=true ;;
  -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
esac

step() { printf '\n==> %s\n' "$*"; }
kc() { kubectl --context "$CONTEXT" "$@"; }

on_exit() {
  local status=$?
  if ((status != 0)); then
    printf '\n==> failed (exit status %s); cluster state:\n' "$status"
    kc get nodes,pods,pvc,pv,ingress -o wide 2>&1 || true
    kc get events --sort-by=.lastTimestamp 2>&1 | tail -n 20 || true
  fi
}

for tool in docker k3d kubectl curl; do
  command -v "$tool" >/dev/null || { echo "$tool is required but not installed" >&2; exit 1; }
done
trap on_exit EXIT
cd "$repo"

step "1. cluster $CLUSTER: one server, one agent, localhost:$HOST_PORT -> ingress port 80"
if k3d cluster list --no-headers | awk '{print $1}' | grep -qxF "$CLUSTER"; then
  echo "cluster $CLUSTER exists; using it (if it is stopped: k3d cluster start $CLUSTER)"
else
  k3d cluster create "$CLUSTER" --agents 1 -p "$HOST_PORT:80@loadbalancer" --wait
fi
# The agent's Node object can appear a moment after `k3d cluster create` returns.
for _ in $(seq 60); do
  kc get "node/$AGENT" >/dev/null 2>&1 && break
  sleep 2
done
kc wait --for=condition=Ready "node/$AGENT" --timeout=180s

step "2. the PersistentVolume's directory /tmp/kube on $AGENT, owned by UID $APP_UID"
# A `local` PV needs the directory to exist; the kubelet does not create it. Created by
# `docker exec` it is root's, and the app runs as $APP_UID.
docker exec "$AGENT" mkdir -p /tmp/kube
docker exec "$AGENT" chown "$APP_UID:$APP_UID" /tmp/kube

step "3. images pingpong:$TAG and log-output:$TAG"
if [[ "$prebuilt" == true ]]; then
  ENGINE=docker deploy/build-images.sh
else
  # BINARIES=builder is the default; spelled out so the same lines work with podman's buildah.
  docker build --target pingpong --build-arg BINARIES=builder --build-arg VERSION="$TAG" \
    -t "pingpong:$TAG" .
  docker build --target log-output --build-arg BINARIES=builder --build-arg VERSION="$TAG" \
    -t "log-output:$TAG" .
fi
docker image ls --filter "reference=pingpong:$TAG" --filter "reference=log-output:$TAG"

step "4. k3d image import (no registry needed)"
k3d image import "pingpong:$TAG" "log-output:$TAG" --cluster "$CLUSTER"

step "5. kubectl apply -f storage/ (the PV and its claim)"
kc apply -f storage/

step "6. kubectl apply -k manifests/"
existed=false
if kc get deployment pingpong log-output >/dev/null 2>&1; then
  existed=true
fi
kc apply -k manifests/
if [[ "$existed" == true ]]; then
  # Same tag, new image: the pod template did not change, so restart to pick it up.
  kc rollout restart deployment/pingpong deployment/log-output
fi

step "7. waiting for the rollouts"
kc rollout status deployment/pingpong --timeout=180s
kc rollout status deployment/log-output --timeout=180s
kc get pods,svc,ingress,pvc -o wide

step "8. waiting for the ingress (GET / through Traefik; /pingpong is left untouched)"
ingress_ok=false
for _ in $(seq 60); do
  if curl -fsS -o /dev/null "http://localhost:$HOST_PORT/" 2>/dev/null; then
    ingress_ok=true
    break
  fi
  sleep 2
done
if [[ "$ingress_ok" == false ]]; then
  echo "http://localhost:$HOST_PORT/ did not answer 200 within 120 s" >&2
  exit 1
fi

cat <<EOF

Ready:
  http://localhost:$HOST_PORT/pingpong   pong N (increments the counter)
  http://localhost:$HOST_PORT/           the latest log entry with the count

  curl http://localhost:$HOST_PORT/pingpong
  ./test-persistent.sh                  # the persistence test against this cluster
  deploy/k3d-down.sh                    # delete the cluster (and the data on it)
EOF
