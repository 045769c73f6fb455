#!/usr/bin/env bash
# deploy/k3d-up.sh, k3d-down.sh and build-images.sh --check against stub docker, k3d, kubectl,
# curl, uname and cargo that print canned output (k3d v5's formats: `k3d cluster list NAME -o
# json` is compact JSON with serversRunning/serversCount/agentsRunning/agentsCount and
# hasLoadbalancer only when true). No engine or cluster runs: this checks the scripts'
# decisions, messages and exit statuses, and the commands they run, in order.
#
#   1. refusals before anything is touched: HOST_PORT, no buildx, k3d v4, Docker down
#   2. a fresh cluster, the default and HOST_PORT=9090: the exact create command, every step
#   3. an existing cluster: stopped (started, or refused if it stays stopped), no agent, no
#      agent-0, no load balancer, another host port, no port 80 mapping, no kubectl context
#   4. the import: lost by `k3d image import` (also with a previous build still on the node),
#      IMPORT=ctr; a Released PV is re-bound
#   5. --prebuilt: Darwin, riscv64, no cargo, an engine of another architecture; aarch64
#   6. k3d-down.sh
#
# The PATH holds only the stubs and the few system tools the scripts use, so a script that
# calls anything else fails here. TEST_BASH names the bash that runs the scripts (default: the
# one on PATH); with a bash 3.2 this is the macOS check CI cannot make. Last line:
# `N passed, M failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
readonly repo

# shellcheck source=.ci/test-report.sh
. .ci/test-report.sh

# --- the stubs ----------------------------------------------------------------------------------

mkdir -p "$work/bin" "$work/sys"
for tool in env sed grep seq sleep cat tr dirname tail head; do
  ln -s "$(command -v "$tool")" "$work/sys/$tool"
done
# TEST_BASH=/path/to/bash-3.2 runs the scripts (and the stubs) with that bash, as on macOS.
ln -s "${TEST_BASH:-$(command -v bash)}" "$work/sys/bash"
cat >"$work/bin/stub" <<'STUB'
#!/usr/bin/env bash
# One stub for every tool; the scenario is in S_* variables, the cluster's state in $S_STATE.
set -euo pipefail
PATH=/usr/bin:/bin
name="${0##*/}"
printf '%s %s\n' "$name" "$*" >>"$S_STATE/log"
has() { [[ -e "$S_STATE/$1" ]]; }
cluster_json() {
  local sr=0 ar=0 lb=''
  if has started; then sr=1; ar=$S_AGENTS; fi
  [[ "${S_LB:-true}" == true ]] && lb=',"hasLoadbalancer":true'
  printf '[{"name":"k3s-default","network":{"name":"k3d-k3s-default","ID":"1"},"nodes":[{"name":"k3d-k3s-default-server-0","role":"server"}],"serversRunning":%s,"serversCount":1,"agentsRunning":%s,"agentsCount":%s%s}]\n' \
    "$sr" "$ar" "$S_AGENTS" "$lb"
}
case "$name $*" in
  "uname -s") echo "${S_UNAME_S:-Linux}" ;;
  "uname -m") echo "${S_UNAME_M:-x86_64}" ;;
  "cargo "*) ;;
  "curl "*) ;;
  "docker info --format {{.Architecture}}") echo "${S_DOCKER_ARCH:-x86_64}" ;;
  "docker info") [[ "${S_DOCKER_DOWN:-}" != 1 ]] || { echo "Cannot connect to the Docker daemon" >&2; exit 1; } ;;
  "docker buildx version")
    [[ "${S_BUILDX:-yes}" == yes ]] || { echo "docker: 'buildx' is not a docker command." >&2; exit 1; }
    echo "github.com/docker/buildx v0.17.1 257815a" ;;
  "docker buildx build "*) ;;
  "docker image ls "*) echo "REPOSITORY   TAG   IMAGE ID   CREATED   SIZE" ;;
  "docker image inspect "*) echo sha256:1 ;;
  "docker inspect --format {{.State.Running}} k3d-k3s-default-agent-0")
    [[ "${S_AGENT0:-yes}" == yes ]] || { echo "Error: No such object: k3d-k3s-default-agent-0" >&2; exit 1; }
    if has started; then echo true; else echo false; fi ;;
  "docker inspect --format "*" k3d-k3s-default-serverlb")
    echo "6443/tcp 53211"
    for p in $(cat "$S_STATE/lb_ports"); do echo "80/tcp $p"; done ;;
  "docker exec k3d-k3s-default-agent-0 ctr image ls -q")
    echo "docker.io/rancher/mirrored-pause:3.6"
    if has imported; then
      echo "docker.io/library/log-output:0.1.0"
      echo "docker.io/library/pingpong:0.1.0"
    fi
    echo "sha256:9f2a6b1c" ;;
  "docker exec k3d-k3s-default-agent-0 ctr image rm "*) rm -f "$S_STATE/imported" ;;
  "docker exec -i k3d-k3s-default-agent-0 ctr image import -") cat >/dev/null; touch "$S_STATE/imported" ;;
  "docker exec k3d-k3s-default-agent-0 "*) ;;
  "docker save "*) echo "tar stream" ;;
  "k3d version") printf '%s\nk3s version v1.30.4-k3s1 (default)\n' "${S_K3D_VERSION:-k3d version v5.7.4}" ;;
  "k3d cluster list -o json") if has exists; then cluster_json; else echo '[]'; fi ;;
  "k3d cluster list k3s-default -o json") cluster_json ;;
  "k3d cluster start k3s-default")
    echo "INFO[0000] Starting cluster 'k3s-default'"
    [[ "${S_START:-ok}" != ok ]] || touch "$S_STATE/started" ;;
  "k3d cluster create k3s-default --agents 1 -p "*"--wait")
    touch "$S_STATE/exists" "$S_STATE/started"
    echo "${7%%:*}" >"$S_STATE/lb_ports"
    echo "INFO[0021] Cluster 'k3s-default' created successfully!"
    echo "INFO[0021] You can now use it like this:"
    echo "kubectl cluster-info" ;;
  "k3d image import "*)
    echo "INFO[0000] Importing image(s) into cluster 'k3s-default'"
    if [[ "${S_IMPORT:-ok}" == ok ]]; then
      touch "$S_STATE/imported"
    else
      echo "ERRO[0003] failed to import images in node 'k3d-k3s-default-agent-0': content digest not found"
    fi
    echo "INFO[0004] Successfully imported 2 image(s) into 1 cluster(s)" ;;
  "k3d cluster delete k3s-default") echo "INFO[0000] Deleting cluster 'k3s-default'" ;;
  "kubectl config get-contexts k3d-k3s-default") [[ "${S_CONTEXT:-yes}" == yes ]] ;;
  "kubectl --context k3d-k3s-default get pv shared-files-pv -o jsonpath={.status.phase}") echo "${S_PV:-Bound}" ;;
  "kubectl --context k3d-k3s-default get deployment pingpong log-output") [[ "${S_DEPLOYED:-no}" == yes ]] ;;
  "kubectl "*) ;;
  *) echo "stub: unexpected call: $name $*" >&2; exit 97 ;;
esac
STUB
chmod +x "$work/bin/stub"
for tool in docker k3d kubectl curl uname cargo; do
  ln -s stub "$work/bin/$tool"
done

# run SCRIPT ARGS...: runs it on the stubs in a fresh state; sets status and out (stdout and
# stderr); the calls made are in $work/state/log. S_* and HOST_PORT/IMPORT come from the caller.
status=0
out=""
run() {
  rm -rf "$work/state"
  mkdir -p "$work/state"
  : >"$work/state/log"
  echo "${S_LB_PORTS-8081}" >"$work/state/lb_ports"
  [[ "${S_EXISTS:-no}" == no ]] || touch "$work/state/exists"
  [[ "${S_EXISTS:-no}" != running ]] || touch "$work/state/started"
  [[ "${S_PREIMPORTED:-no}" == no ]] || touch "$work/state/imported"
  status=0
  out="$(PATH="$work/bin:$work/sys" S_STATE="$work/state" S_AGENTS="${S_AGENTS:-1}" \
    "$repo/$1" "${@:2}" 2>&1 </dev/null)" || status=$?
}
calls() { cat "$work/state/log"; }

# check WHAT: the last run's exit status is $want_status, its output has every line in
# $want_lines (exact lines), and the calls include, in this order, every line of $want_calls
# (exact) and none that starts with a line of $unwanted.
want_status=0
want_lines=""
want_calls=""
unwanted=""
check() {
  local what="$1" problems="" line rest
  ((status == want_status)) || problems+="exit status $status, expected $want_status; "
  while IFS= read -r line; do
    [[ -z "$line" ]] || grep -qxF -- "$line" <<<"$out" || problems+="no output line '$line'; "
  done <<<"$want_lines"
  rest="$(calls)"
  while IFS= read -r line; do
    [[ -n "$line" ]] || continue
    if grep -qxF -- "$line" <<<"$rest"; then
      rest="$(sed "0,/^$(printf '%s' "$line" | sed 's/[][\/.*^$]/\\&/g')\$/d" <<<"$rest")"
    else
      problems+="no call '$line' (in that order); "
    fi
  done <<<"$want_calls"
  while IFS= read -r line; do
    [[ -z "$line" ]] || ! calls | cut -c "1-${#line}" | grep -qxF -- "$line" ||
      problems+="unwanted call '$line'; "
  done <<<"$unwanted"
  if [[ -z "$problems" ]]; then
    pass "$what"
  else
    fail "$what: $problems"
    printf '%s\n' "$out" | sed 's/^/      | /'
    calls | sed 's/^/      > /'
  fi
  want_status=0 want_lines="" want_calls="" unwanted=""
}

readonly ctx='kubectl --context k3d-k3s-default'
readonly agent=k3d-k3s-default-agent-0

# --- 1 ------------------------------------------------------------------------------------------

step "1. refusals before anything is touched"
HOST_PORT=abc run deploy/k3d-up.sh
want_status=2 want_lines="HOST_PORT must be a TCP port from 1 to 65535, not 'abc'"
check "HOST_PORT=abc: exit 2"
HOST_PORT=65536 run deploy/k3d-up.sh
want_status=2 want_lines="HOST_PORT must be a TCP port from 1 to 65535, not '65536'"
check "HOST_PORT=65536: exit 2"
HOST_PORT=08081 run deploy/k3d-up.sh
want_status=2 want_lines="HOST_PORT must be a TCP port from 1 to 65535, not '08081'"
check "HOST_PORT=08081 (not octal): exit 2"
IMPORT=kind run deploy/k3d-up.sh
want_status=2 want_lines="IMPORT must be k3d or ctr, not 'kind'"
check "IMPORT=kind: exit 2"
S_BUILDX=no run deploy/k3d-up.sh
want_status=1 want_lines="k3d-up.sh: docker buildx (BuildKit) is required: without it the legacy builder runs every stage of the Dockerfile and fails.
k3d-up.sh: Install the buildx plugin: Docker Desktop has it; on Linux the docker-buildx-plugin package from Docker's repository."
unwanted="k3d cluster"
check "no buildx: stops, naming what to install, before any cluster command"
S_K3D_VERSION="k3d version v4.4.8" run deploy/k3d-up.sh
want_status=1 want_lines="k3d-up.sh: k3d v5 is required; \`k3d version\` says: k3d version v4.4.8"
unwanted="k3d cluster"
check "k3d v4: stops"
S_DOCKER_DOWN=1 run deploy/k3d-up.sh
want_status=1 want_lines="k3d-up.sh: docker cannot reach the Docker engine (docker info failed): start Docker"
unwanted="k3d cluster"
check "Docker not running: stops"

# --- 2 ------------------------------------------------------------------------------------------

step "2. a fresh cluster"
run deploy/k3d-up.sh
want_lines="==> 0. prerequisites: docker (BuildKit), k3d v5, kubectl, curl
==> 1. cluster k3s-default: one server, one agent, localhost:8081 -> ingress port 80
==> 2. kubectl wait --for=condition=Ready node --all
$agent has docker.io/library/pingpong:0.1.0
$agent has docker.io/library/log-output:0.1.0
  http://localhost:8081/pingpong   pong N (increments the counter)
  ./test-persistent.sh   # the persistence test against this cluster"
want_calls="k3d cluster create k3s-default --agents 1 -p 8081:80@loadbalancer --wait
kubectl config get-contexts k3d-k3s-default
$ctx wait --for=condition=Ready node --all --timeout=180s
docker exec $agent mkdir -p /tmp/kube
docker exec $agent chown 10001:10001 /tmp/kube
docker buildx build --load --target pingpong --build-arg BINARIES=builder --build-arg VERSION=0.1.0 -t pingpong:0.1.0 .
docker buildx build --load --target log-output --build-arg BINARIES=builder --build-arg VERSION=0.1.0 -t log-output:0.1.0 .
docker exec $agent ctr image rm docker.io/library/pingpong:0.1.0
k3d image import pingpong:0.1.0 log-output:0.1.0 --cluster k3s-default
docker exec $agent ctr image ls -q
$ctx apply -f storage/
$ctx wait --for=jsonpath={.status.phase}=Bound pvc/shared-files-claim --timeout=60s
$ctx apply -k manifests/
$ctx rollout status deployment/pingpong --timeout=180s
$ctx rollout status deployment/log-output --timeout=180s
curl -fsS -o /dev/null http://localhost:8081/"
unwanted="k3d cluster start
$ctx patch
$ctx rollout restart
docker save"
check "no cluster: created with the agent and 8081, every step in order, exit 0"
HOST_PORT=9090 run deploy/k3d-up.sh
want_lines="  http://localhost:9090/pingpong   pong N (increments the counter)
  HOST_PORT=9090 ./test-persistent.sh   # the persistence test against this cluster"
want_calls="k3d cluster create k3s-default --agents 1 -p 9090:80@loadbalancer --wait
curl -fsS -o /dev/null http://localhost:9090/"
check "HOST_PORT=9090: the cluster maps 9090, the script waits on 9090 and says how to test"
S_EXISTS=running S_DEPLOYED=yes run deploy/k3d-up.sh
want_lines="cluster k3s-default exists: 1 server(s), 1 agent(s)
$agent is running; k3d-k3s-default-serverlb maps localhost:8081 to port 80"
want_calls="$ctx apply -k manifests/
$ctx rollout restart deployment/pingpong deployment/log-output"
unwanted="k3d cluster create
k3d cluster start"
check "a running cluster of the right shape is reused; the pods restart on the new images"

# --- 3 ------------------------------------------------------------------------------------------

step "3. an existing cluster of the wrong shape"
S_EXISTS=stopped run deploy/k3d-up.sh
want_lines="cluster k3s-default is stopped; starting it"
want_calls="k3d cluster start k3s-default
k3d image import pingpong:0.1.0 log-output:0.1.0 --cluster k3s-default"
check "stopped: started, then everything else; exit 0"
S_EXISTS=stopped S_START=noop run deploy/k3d-up.sh
want_status=1 want_lines="k3d-up.sh: cluster k3s-default did not start: 0/1 server(s), 0/1 agent(s) running"
unwanted="docker buildx build"
check "stopped and it stays stopped: stops at once"
S_EXISTS=running S_AGENTS=0 run deploy/k3d-up.sh
want_status=1 want_lines="k3d-up.sh: cluster k3s-default has no agent; storage/persistentvolume.yaml pins the volume to node $agent.
k3d-up.sh: Delete it with deploy/k3d-down.sh (that deletes the counter on it too) and run deploy/k3d-up.sh again."
unwanted="k3d cluster start
docker buildx build
$ctx"
check "no agent: stops at once, saying what to do, without cluster diagnostics"
S_EXISTS=stopped S_AGENTS=0 run deploy/k3d-up.sh
want_status=1 want_lines="k3d-up.sh: cluster k3s-default has no agent; storage/persistentvolume.yaml pins the volume to node $agent."
unwanted="k3d cluster start"
check "stopped and no agent: refused before starting it"
S_EXISTS=running S_AGENT0=no run deploy/k3d-up.sh
want_status=1 want_lines="k3d-up.sh: cluster k3s-default has no running node $agent, which storage/persistentvolume.yaml pins the volume to."
unwanted="docker buildx build"
check "an agent, but not $agent: stops"
S_EXISTS=running S_LB=false run deploy/k3d-up.sh
want_status=1 want_lines="k3d-up.sh: cluster k3s-default has no load balancer, so nothing maps localhost:8081 to the ingress."
unwanted="docker buildx build"
check "no load balancer: stops"
S_EXISTS=running S_LB_PORTS=8080 run deploy/k3d-up.sh
want_status=1 want_lines="k3d-up.sh: cluster k3s-default maps localhost:8080 to the ingress, not localhost:8081.
k3d-up.sh: Use that port: HOST_PORT=8080 deploy/k3d-up.sh (and HOST_PORT=8080 ./test-persistent.sh), or: Delete it with deploy/k3d-down.sh (that deletes the counter on it too) and run deploy/k3d-up.sh again."
unwanted="docker buildx build"
check "another host port: stops, naming the port it maps and HOST_PORT"
S_EXISTS=running S_LB_PORTS=8080 HOST_PORT=8080 run deploy/k3d-up.sh
want_lines="k3d-k3s-default-agent-0 is running; k3d-k3s-default-serverlb maps localhost:8080 to port 80"
check "HOST_PORT=8080 on that cluster: accepted"
S_EXISTS=running S_LB_PORTS="" run deploy/k3d-up.sh
want_status=1 want_lines="k3d-up.sh: cluster k3s-default's load balancer maps no host port to the ingress (port 80)."
check "no port 80 mapping: stops"
S_EXISTS=running S_CONTEXT=no run deploy/k3d-up.sh
want_status=1 want_lines="k3d-up.sh: kubectl has no context k3d-k3s-default; add it with: k3d kubeconfig merge k3s-default --kubeconfig-merge-default"
unwanted="docker buildx build"
check "no kubectl context: stops, saying how to add it"

# --- 4 ------------------------------------------------------------------------------------------

step "4. the import is verified"
S_IMPORT=lost run deploy/k3d-up.sh
want_status=1 want_lines="k3d-up.sh: pingpong:0.1.0 is not on $agent (\`docker exec $agent ctr image ls -q\` does not list docker.io/library/pingpong:0.1.0),
k3d-up.sh: as it does with Docker's containerd image store (k3d-io/k3d#1538). Import without k3d: IMPORT=ctr deploy/k3d-up.sh"
want_calls="k3d image import pingpong:0.1.0 log-output:0.1.0 --cluster k3s-default
docker exec $agent ctr image ls -q"
unwanted="$ctx apply"
check "k3d image import says success but the agent has nothing: stops before applying"
S_IMPORT=lost S_PREIMPORTED=yes S_EXISTS=running run deploy/k3d-up.sh
want_status=1 want_lines="k3d-up.sh: pingpong:0.1.0 is not on $agent (\`docker exec $agent ctr image ls -q\` does not list docker.io/library/pingpong:0.1.0),"
unwanted="$ctx apply"
check "a previous build on the node does not pass for the new one"
S_IMPORT=lost IMPORT=ctr run deploy/k3d-up.sh
want_lines="$agent has docker.io/library/pingpong:0.1.0"
want_calls="docker exec -i $agent ctr image import -
docker exec $agent ctr image ls -q
$ctx apply -k manifests/"
unwanted="k3d image import"
check "IMPORT=ctr: the agent's ctr imports, the images are verified, exit 0"
want_calls="docker save pingpong:0.1.0 log-output:0.1.0"   # the pipe's two ends log in any order
check "IMPORT=ctr: from docker save"
S_PV=Released run deploy/k3d-up.sh
want_lines="shared-files-pv is Released (its claim was deleted; the data is kept): clearing its claimRef to re-bind it"
want_calls="$ctx apply -f storage/
$ctx patch pv shared-files-pv -p {\"spec\":{\"claimRef\":null}}
$ctx wait --for=jsonpath={.status.phase}=Bound pvc/shared-files-claim --timeout=60s"
check "a Released PV is re-bound"

# --- 5 ------------------------------------------------------------------------------------------

step "5. --prebuilt follows the host architecture"
S_UNAME_S=Darwin S_UNAME_M=arm64 run deploy/k3d-up.sh --prebuilt
want_status=1 want_lines="build-images.sh: the images pack Linux binaries built by this host's cargo, so this needs a Linux host, not Darwin. On macOS use deploy/k3d-up.sh without --prebuilt: the binaries are then compiled inside Docker"
unwanted="k3d cluster
cargo"
check "macOS: refused before the cluster is touched"
S_UNAME_M=riscv64 run deploy/k3d-up.sh --prebuilt
want_status=1 want_lines="build-images.sh: no prebuilt images for this host's architecture riscv64 (x86_64 and aarch64 only). Use deploy/k3d-up.sh without --prebuilt"
unwanted="k3d cluster"
check "riscv64: refused"
rm "$work/bin/cargo"
run deploy/k3d-up.sh --prebuilt
want_status=1 want_lines="build-images.sh: cargo is required: it builds the binaries this script packs (install Rust 1.89 or newer, https://rustup.rs)"
unwanted="k3d cluster"
check "no cargo: refused before it is used"
ln -s stub "$work/bin/cargo"
S_UNAME_M=aarch64 run deploy/k3d-up.sh --prebuilt
want_status=1 want_lines="build-images.sh: the docker engine runs x86_64 containers, but the binaries are built for aarch64-unknown-linux-gnu (linux/arm64)"
check "an aarch64 host with an x86_64 engine: refused"
S_UNAME_M=aarch64 S_DOCKER_ARCH=aarch64 run deploy/k3d-up.sh --prebuilt
want_lines="build-images.sh: can build linux/arm64 images (aarch64-unknown-linux-gnu) with docker"
want_calls="cargo build --release --locked --target aarch64-unknown-linux-gnu --bin pingpong --bin log-writer --bin log-reader
docker buildx build --load --platform linux/arm64 --build-arg BINARIES=prebuilt --build-arg PREBUILT_DIR=target/aarch64-unknown-linux-gnu/release --build-arg VERSION=0.1.0 --target pingpong --tag pingpong:0.1.0 --file $repo/Dockerfile --quiet $repo
k3d image import pingpong:0.1.0 log-output:0.1.0 --cluster k3s-default"
check "aarch64 Linux: aarch64 target, linux/arm64 images, exit 0"
run deploy/k3d-up.sh --prebuilt
want_calls="cargo build --release --locked --target x86_64-unknown-linux-gnu --bin pingpong --bin log-writer --bin log-reader
docker buildx build --load --platform linux/amd64 --build-arg BINARIES=prebuilt --build-arg PREBUILT_DIR=target/x86_64-unknown-linux-gnu/release --build-arg VERSION=0.1.0 --target log-output --tag log-output:0.1.0 --file $repo/Dockerfile --quiet $repo"
check "x86_64 Linux: x86_64 target, linux/amd64 images, exit 0"

# --- 6 ------------------------------------------------------------------------------------------

step "6. k3d-down.sh"
run deploy/k3d-down.sh
want_calls="k3d cluster delete k3s-default"
check "no argument: deletes the cluster"
run deploy/k3d-down.sh --app
want_calls="$ctx delete -k $repo/manifests --ignore-not-found --wait=true"
unwanted="k3d "
check "--app: deletes only manifests/"
run deploy/k3d-down.sh --cluster
want_status=2 want_lines="unknown argument: --cluster (try --help)"
check "an unknown argument: exit 2"
