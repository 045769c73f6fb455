#!/usr/bin/env bash
# The whole system on k3d in one command, from the repository root:
#
#   deploy/k3d-up.sh              # images built by Docker (pulls rust:1.95 for the builder)
#   deploy/k3d-up.sh --prebuilt   # images from binaries built by this host's cargo (Linux only)
#   HOST_PORT=9090 deploy/k3d-up.sh
#
# Needs Docker with BuildKit (the buildx plugin), k3d v5, kubectl 1.23 or newer, curl; runs on
# bash 3.2 (macOS) too. Creates the cluster k3s-default (one server, one agent, host port
# HOST_PORT, default 8081 -> the Traefik ingress) unless it exists; an existing one is started
# if stopped and must have that shape. Prepares the PersistentVolume's directory on the agent,
# builds the images, imports them and checks that the agent has them, applies storage/ then
# manifests/, and waits for both Deployments and the ingress. Run it again after changing the
# code: it rebuilds, re-imports and restarts the pods. Tear down with deploy/k3d-down.sh.
#
# IMPORT=ctr streams `docker save` into the agent's `ctr image import` instead of running
# `k3d image import` (a way round k3d-io/k3d#1538; the script says when to use it).
set -euo pipefail
# portable: bash 3.2 and BSD userland (macOS)

readonly CLUSTER=k3s-default   # storage/persistentvolume.yaml pins the PV to this cluster's agent
readonly AGENT="k3d-$CLUSTER-agent-0"
readonly LOADBALANCER="k3d-$CLUSTER-serverlb"
readonly CONTEXT="k3d-$CLUSTER"
readonly PV=shared-files-pv
readonly PVC=shared-files-claim
# Kept in step with test-persistent.sh, whose BASE_URL defaults to http://localhost:$HOST_PORT.
readonly HOST_PORT="${HOST_PORT:-8081}"
readonly IMPORT="${IMPORT:-k3d}"
export TAG=0.1.0
readonly APP_UID=10001
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly repo
# shellcheck source=deploy/lib.sh
. "$repo/deploy/lib.sh"

one_option --prebuilt "${BASH_SOURCE[0]}" "$@"
prebuilt="$option"
if ! [[ "$HOST_PORT" =~ ^[1-9][0-9]{0,4}$ ]] || ((HOST_PORT > 65535)); then
  echo "HOST_PORT must be a TCP port from 1 to 65535, not '$HOST_PORT'" >&2
  exit 2
fi
case "$IMPORT" in
  k3d | ctr) ;;
  *) echo "IMPORT must be k3d or ctr, not '$IMPORT'" >&2; exit 2 ;;
esac

step() { printf '\n==> %s\n' "$*"; }
kc() { kubectl --context "$CONTEXT" "$@"; }
die() {
  printf 'k3d-up.sh: %s\n' "$@" >&2
  exit 1
}

# Cluster state is printed on failure only once there is a cluster to look at.
diagnose=false
on_exit() {
  local status=$?
  if ((status != 0)) && [[ "$diagnose" == true ]]; then
    printf '\n==> failed (exit status %s); cluster state:\n' "$status"
    kc get nodes,pods,pvc,pv,ingress -o wide 2>&1 || true
    kc get events --sort-by=.lastTimestamp 2>&1 | tail -n 20 || true
  fi
}
trap on_exit EXIT
cd "$repo"

# --- 0 -----------------------------------------------------------------------------------------

step "0. prerequisites: docker (BuildKit), k3d v5, kubectl, curl"
for tool in docker k3d kubectl curl; do
  command -v "$tool" >/dev/null || die "$tool is required but not installed"
done
docker info >/dev/null 2>&1 || die "docker cannot reach the Docker engine (docker info failed): start Docker"
k3d_version="$(k3d version | sed -n 1p)"
k3d_major="$(printf '%s\n' "$k3d_version" | sed -n 's/^k3d version v\([0-9][0-9]*\)\..*/\1/p')"
if [[ -z "$k3d_major" ]] || ((k3d_major < 5)); then
  die "k3d v5 is required; \`k3d version\` says: $k3d_version"
fi
echo "$k3d_version"
if [[ "$prebuilt" == true ]]; then
  ENGINE=docker deploy/build-images.sh --check
else
  docker buildx version >/dev/null 2>&1 ||
    die "docker buildx (BuildKit) is required: without it the legacy builder runs every stage of the Dockerfile and fails." \
      "Install the buildx plugin: Docker Desktop has it; on Linux the docker-buildx-plugin package from Docker's repository."
  docker buildx version
fi

# --- 1 -----------------------------------------------------------------------------------------

# A number from the compact JSON of `k3d cluster list NAME -o json`: serversCount, agentsRunning...
json_int() { printf '%s\n' "$2" | sed -n "s/.*\"$1\":\([0-9][0-9]*\).*/\1/p"; }

# The host ports the load balancer maps to its port 80, one a line (from the container's
# configuration, so a stopped one answers too).
lb_ports_80() {
  # shellcheck disable=SC2016 # a Go template, not a shell expansion
  docker inspect --format '{{range $p, $b := .HostConfig.PortBindings}}{{range $b}}{{$p}} {{.HostPort}}{{"\n"}}{{end}}{{end}}' \
    "$LOADBALANCER" | sed -n 's|^80/tcp ||p'
}

readonly recreate="Delete it with deploy/k3d-down.sh (that deletes the counter on it too) and run deploy/k3d-up.sh again."
step "1. cluster $CLUSTER: one server, one agent, localhost:$HOST_PORT -> ingress port 80"
if k3d cluster list -o json | grep -qF "\"name\":\"$CLUSTER\""; then
  info="$(k3d cluster list "$CLUSTER" -o json)"
  servers="$(json_int serversCount "$info")"
  agents="$(json_int agentsCount "$info")"
  echo "cluster $CLUSTER exists: $servers server(s), $agents agent(s)"
  ((agents >= 1)) ||
    die "cluster $CLUSTER has no agent; storage/persistentvolume.yaml pins the volume to node $AGENT." "$recreate"
  grep -qF '"hasLoadbalancer":true' <<<"$info" ||
    die "cluster $CLUSTER has no load balancer, so nothing maps localhost:$HOST_PORT to the ingress." "$recreate"
  if (($(json_int serversRunning "$info") < servers || $(json_int agentsRunning "$info") < agents)); then
    echo "cluster $CLUSTER is stopped; starting it"
    k3d cluster start "$CLUSTER"
    info="$(k3d cluster list "$CLUSTER" -o json)"
    if (($(json_int serversRunning "$info") < servers || $(json_int agentsRunning "$info") < agents)); then
      die "cluster $CLUSTER did not start: $(json_int serversRunning "$info")/$servers server(s), $(json_int agentsRunning "$info")/$agents agent(s) running"
    fi
  fi
  running="$(docker inspect --format '{{.State.Running}}' "$AGENT" 2>/dev/null || true)"
  [[ "$running" == true ]] ||
    die "cluster $CLUSTER has no running node $AGENT, which storage/persistentvolume.yaml pins the volume to." "$recreate"
  ports="$(lb_ports_80 || true)"
  if ! grep -qxF "$HOST_PORT" <<<"$ports"; then
    if [[ -n "$ports" ]]; then
      first="$(sed -n 1p <<<"$ports")"
      die "cluster $CLUSTER maps localhost:$(tr '\n' ' ' <<<"$ports" | sed 's/ $//; s/ /, localhost:/g') to the ingress, not localhost:$HOST_PORT." \
        "Use that port: HOST_PORT=$first deploy/k3d-up.sh (and HOST_PORT=$first ./test-persistent.sh), or: $recreate"
    fi
    die "cluster $CLUSTER's load balancer maps no host port to the ingress (port 80)." "$recreate"
  fi
  echo "$AGENT is running; $LOADBALANCER maps localhost:$HOST_PORT to port 80"
else
  k3d cluster create "$CLUSTER" --agents 1 -p "$HOST_PORT:80@loadbalancer" --wait
fi
kubectl config get-contexts "$CONTEXT" >/dev/null 2>&1 ||
  die "kubectl has no context $CONTEXT; add it with: k3d kubeconfig merge $CLUSTER --kubeconfig-merge-default"
diagnose=true

# --- 2 -----------------------------------------------------------------------------------------

step "2. kubectl wait --for=condition=Ready node --all"
# The agent's Node object can appear a moment after `k3d cluster create` returns; `wait --all`
# waits only for the nodes that exist.
for _ in $(seq 60); do
  kc get "node/$AGENT" >/dev/null 2>&1 && break
  sleep 2
done
kc wait --for=condition=Ready node --all --timeout=180s

# --- 3 -----------------------------------------------------------------------------------------

step "3. the PersistentVolume's directory /tmp/kube on $AGENT, owned by UID $APP_UID"
# A `local` PV needs the directory to exist; the kubelet does not create it. Created by
# `docker exec` it is root's, and the app runs as $APP_UID.
docker exec "$AGENT" mkdir -p /tmp/kube
docker exec "$AGENT" chown "$APP_UID:$APP_UID" /tmp/kube

# --- 4 -----------------------------------------------------------------------------------------

step "4. images pingpong:$TAG and log-output:$TAG"
if [[ "$prebuilt" == true ]]; then
  ENGINE=docker deploy/build-images.sh
else
  # --load: with a builder whose driver is not `docker` (docker-container, kubernetes) the image
  # otherwise stays in the builder and `k3d image import` finds nothing. BINARIES=builder is
  # the default; spelled out so the same lines work with podman's buildah.
  for image in pingpong log-output; do
    docker buildx build --load --target "$image" --build-arg BINARIES=builder \
      --build-arg VERSION="$TAG" -t "$image:$TAG" .
  done
fi
docker image ls --filter "reference=pingpong:$TAG" --filter "reference=log-output:$TAG"

# --- 5 -----------------------------------------------------------------------------------------

step "5. import the images into the cluster (no registry), then check them on $AGENT"
# The agent's containerd names an imported pingpong:$TAG docker.io/library/pingpong:$TAG, the
# name the kubelet looks for. Old copies are removed first, so that an import which fails
# cannot pass the check below with the previous build.
for image in pingpong log-output; do
  docker exec "$AGENT" ctr image rm "docker.io/library/$image:$TAG" >/dev/null 2>&1 || true
done
if [[ "$IMPORT" == k3d ]]; then
  k3d image import "pingpong:$TAG" "log-output:$TAG" --cluster "$CLUSTER"
else
  docker save "pingpong:$TAG" "log-output:$TAG" | docker exec -i "$AGENT" ctr image import -
fi
present="$(docker exec "$AGENT" ctr image ls -q)" ||
  die "could not list the images on $AGENT (docker exec $AGENT ctr image ls -q failed)"
for image in pingpong log-output; do
  if grep -qxF "docker.io/library/$image:$TAG" <<<"$present"; then
    echo "$AGENT has docker.io/library/$image:$TAG"
  elif [[ "$IMPORT" == k3d ]]; then
    die "$image:$TAG is not on $AGENT (\`docker exec $AGENT ctr image ls -q\` does not list docker.io/library/$image:$TAG)," \
      "although \`k3d image import\` exited 0: it logs a failed import on a node (the ERRO lines above) and still reports success," \
      "as it does with Docker's containerd image store (k3d-io/k3d#1538). Import without k3d: IMPORT=ctr deploy/k3d-up.sh"
  else
    die "$image:$TAG is not on $AGENT (\`docker exec $AGENT ctr image ls -q\` does not list docker.io/library/$image:$TAG) after \`docker save | ctr image import -\`"
  fi
done

# --- 6 -----------------------------------------------------------------------------------------

step "6. kubectl apply -f storage/ (the PV and its claim)"
kc apply -f storage/
# Retain keeps the data when the claim is deleted, and leaves the PV Released, still reserved
# for the deleted claim: a new claim would stay Pending. Clearing claimRef makes it Available.
if [[ "$(kc get pv "$PV" -o jsonpath='{.status.phase}')" == Released ]]; then
  echo "$PV is Released (its claim was deleted; the data is kept): clearing its claimRef to re-bind it"
  kc patch pv "$PV" -p '{"spec":{"claimRef":null}}'
fi
kc wait --for=jsonpath='{.status.phase}'=Bound "pvc/$PVC" --timeout=60s

# --- 7 -----------------------------------------------------------------------------------------

step "7. kubectl apply -k manifests/"
existed=false
if kc get deployment pingpong log-output >/dev/null 2>&1; then
  existed=true
fi
kc apply -k manifests/
if [[ "$existed" == true ]]; then
  # Same tag, new image: the pod template did not change, so restart to pick it up.
  kc rollout restart deployment/pingpong deployment/log-output
fi

# --- 8 -----------------------------------------------------------------------------------------

step "8. waiting for the rollouts"
kc rollout status deployment/pingpong --timeout=180s
kc rollout status deployment/log-output --timeout=180s
kc get pods,svc,ingress,pvc -o wide

# --- 9 -----------------------------------------------------------------------------------------

# Traefik picks up the Ingress and its endpoints a moment after the rollout: until then it
# answers 404 or 502.
step "9. waiting for the ingress (GET / through Traefik answers 200; /pingpong is left untouched)"
ingress_ok=false
for _ in $(seq 60); do
  if curl -fsS -o /dev/null "http://localhost:$HOST_PORT/" 2>/dev/null; then
    ingress_ok=true
    break
  fi
  sleep 2
done
if [[ "$ingress_ok" == false ]]; then
  die "http://localhost:$HOST_PORT/ did not answer 200 within 120 s"
fi

if [[ "$HOST_PORT" == 8081 ]]; then
  test_cmd=./test-persistent.sh
else
  test_cmd="HOST_PORT=$HOST_PORT ./test-persistent.sh"
fi
cat <<EOF

Ready:
  http://localhost:$HOST_PORT/pingpong   pong N (increments the counter)
  http://localhost:$HOST_PORT/           the latest log entry with the count

  curl http://localhost:$HOST_PORT/pingpong
  $test_cmd   # the persistence test against this cluster
  deploy/k3d-down.sh   # delete the cluster (and the data on it)
EOF
