#!/usr/bin/env bash
# CI, engine part (called by .ci/run): the manifests, the images and the persistence test on a
# real engine (podman kube play) and on local processes.
#
#   1. install podman, runc, shellcheck, haproxy, python3-venv (apt) and kubernetes-validate (pip,
#      .venv) when missing
#   2. validate the rendered manifests/, storage/, the podman overlays and deploy/rwx/ for
#      Kubernetes 1.31 and 1.37: any output fails
#   3. check that `kubectl apply -k manifests` and `-f manifests` would create the same objects;
#      checks/manifests.py: the Ingress routes only `/` and `/pingpong` (Exact), every pod carries
#      prometheus.io annotations for the port its server listens on (manifests/, deploy/rwx/)
#   4. shellcheck every *.sh in the repository and the k3d stubs; checks/portable-shell-test.sh (the
#      guard's rules, then every script marked as macOS-portable); checks/k3d-scripts-test.sh
#      (deploy/ on stubs); checks/workflow-check.sh (actionlint and shellcheck on the GitHub
#      workflow); checks/dashboard-check.sh (the Grafana dashboard queries only metrics that live
#      pingpong and log-reader processes expose, and a real Prometheus scraping them through the
#      annotations evaluates each of its queries); checks/metrics-check.sh (promtool check metrics
#      accepts every /metrics: pingpong's, log-reader's, log-writer's); checks/log-json-check.sh
#      (syslog-ng's json-parser() reads every binary's JSON lines with severity, @timestamp and
#      log.level)
#   5. build both images offline (deploy/build-images.sh): at most 10 MB, numeric non-root user,
#      nothing in them but the binaries
#   6. ./test-persistent.sh --engine podman
#   7. ./test-persistent.sh --engine local
#   8. the GitHub workflow's k3d job (.ci/k3d-e2e.sh: deploy/k3d-up.sh, ./test-persistent.sh
#      --engine k3d) against a cluster played by local processes (test/k3d-stub/run.sh; TEST_BASH
#      picks the bash, e.g. a 3.2)
#
# Runs from a fresh clone as root with no stdin. Everything it creates (pods, the volume, the
# images it built) is removed at the end, also on failure; what existed before is left alone.
# Last line: `engine: N passed, M failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export TAG=0.1.0
readonly MAX_IMAGE_BYTES=$((10 * 1000 * 1000))
readonly VALIDATE_VERSIONS=(1.31 1.37)
readonly claim=shared-files-claim
export CONTAINERS_CONF="$PWD/deploy/podman/containers.conf"
export DEBIAN_FRONTEND=noninteractive

# shellcheck source=.ci/test-report.sh
. .ci/test-report.sh
# shellcheck disable=SC2034 # read by on_exit (test-report.sh)
report_label=engine
step() { printf '\n==== engine %s\n' "$*"; }


# --- cleanup: only what this run created --------------------------------------------------------

# Until the snapshot below is taken, assume everything existed: remove nothing.
volume_existed=true
declare -A image_existed=()

cleanup() {
  local status=$?
  trap - EXIT
  set +e
  if command -v podman >/dev/null; then
    local pod image
    for pod in pingpong-pod-0 pingpong-1-pod-0 pingpong-2-pod-0 pingpong-3-pod-0 log-output-pod-0; do
      if podman pod exists "$pod"; then
        podman pod rm -f "$pod" >/dev/null 2>&1
      fi
    done
    if [[ "$volume_existed" == false ]] && podman volume exists "$claim"; then
      podman volume rm -f "$claim" >/dev/null
      echo "removed volume $claim"
    fi
    for image in pingpong log-output podman-pause; do
      if [[ "${image_existed[$image]:-true}" == false ]]; then
        podman image rm -f "$(image_ref "$image")" >/dev/null 2>&1 &&
          echo "removed image $(image_ref "$image")"
      fi
    done
  fi
  (exit "$status")
  on_exit
  exit 0
}
trap cleanup EXIT

image_ref() {
  case "$1" in
    podman-pause) echo "localhost/podman-pause:$(podman version --format '{{.Client.Version}}')-0" ;;
    *) echo "localhost/$1:$TAG" ;;
  esac
}

started=$SECONDS

# --- 1 -----------------------------------------------------------------------------------------

step "1. install what is missing"
missing=()
# catatonit: the pause binary podman kube play needs; only a Recommends of podman, so a podman
# installed without recommends (a shared machine, a slim image) lacks it.
for tool in podman runc catatonit shellcheck curl haproxy; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "apt-get install ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" </dev/null >/dev/null
fi
# Debian's kubernetes-client collides with the preinstalled kubectl: never install it.
command -v kubectl >/dev/null || { fail "kubectl (with kustomize) is not installed"; exit 1; }
# Debian's python3 makes a venv only with python3-venv (ensurepip).
if ! python3 -c 'import ensurepip' 2>/dev/null; then
  echo "apt-get install python3-venv"
  apt-get update -qq
  apt-get install -y -qq python3-venv </dev/null >/dev/null
fi
if [[ ! -x .venv/bin/kubernetes-validate ]]; then
  [[ -x .venv/bin/pip ]] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check kubernetes-validate </dev/null
fi
podman --version
runc --version | sed -n 1p
shellcheck --version | sed -n 2p
haproxy -v | sed -n 1p
kubectl version --client | sed -n 1p
.venv/bin/kubernetes-validate --version

# Snapshot what exists before this run, so cleanup removes only what the run made.
if podman volume exists "$claim"; then volume_existed=true; else volume_existed=false; fi
for image in pingpong log-output podman-pause; do
  if podman image exists "$(image_ref "$image")"; then
    image_existed[$image]=true
  else
    image_existed[$image]=false
  fi
done

# --- 2 -----------------------------------------------------------------------------------------

step "2. kubernetes-validate --strict on manifests/ and storage/"
kubectl kustomize manifests | validate "kubectl kustomize manifests"
for file in storage/*.yaml; do
  validate "$file" < "./$file"
done
for overlay in deploy/podman/pingpong deploy/podman/log-output; do
  kubectl kustomize --load-restrictor LoadRestrictionsNone "$overlay" | validate "$overlay (podman overlay)"
done
kubectl kustomize deploy/rwx | validate "kubectl kustomize deploy/rwx (several nodes)"

# --- 3 -----------------------------------------------------------------------------------------

step "3. apply -k and apply -f see the same objects; one image tag everywhere"
# `annotate --local` reads a directory exactly as `apply -f` does, without a cluster.
from_k="$(kubectl kustomize manifests | kubectl annotate --local -f - ci=1 -o name | sort)"
from_f="$(kubectl annotate --local -f manifests ci=1 -o name | sort)"
if [[ "$from_k" == "$from_f" ]]; then
  pass "-k and -f: $(echo "$from_f" | tr '\n' ' ')"
else
  fail "-k gives '$(echo "$from_k" | tr '\n' ' ')', -f gives '$(echo "$from_f" | tr '\n' ' ')'"
fi
images="$(kubectl kustomize manifests | sed -n 's/^ *image: *//p' | sort -u | tr '\n' ' ')"
if [[ "$images" == "log-output:$TAG pingpong:$TAG " ]]; then
  pass "manifests use pinned images: $images"
else
  fail "manifests use '$images', expected log-output:$TAG and pingpong:$TAG"
fi
if ! kubectl kustomize manifests | grep -q 'imagePullPolicy: Always' &&
  [[ "$(kubectl kustomize manifests | grep -c 'imagePullPolicy: IfNotPresent')" == 3 ]]; then
  pass "every container has imagePullPolicy: IfNotPresent"
else
  fail "imagePullPolicy must be IfNotPresent for all three containers"
fi
expect_ok "checks/manifests.py selftest: each check refuses what it must" python3 checks/manifests.py selftest
for dir in manifests deploy/rwx; do
  expect_ok "$dir: the Ingress routes exactly / and /pingpong (Exact), nothing else" \
    python3 checks/manifests.py check-ingress "$dir"
  expect_ok "$dir: every pod carries prometheus.io annotations for its server's port" \
    python3 checks/manifests.py check-scrape "$dir"
done

# --- 4 -----------------------------------------------------------------------------------------

step "4. shellcheck; the portable-shell guard; the k3d scripts on stubs; the workflow; the dashboard"
mapfile -t scripts < <(git ls-files '*.sh')
if ((${#scripts[@]} == 0)); then
  fail "no *.sh files tracked by git"
elif shellcheck "${scripts[@]}" test/k3d-stub/kubectl test/k3d-stub/docker test/k3d-stub/k3d; then
  pass "shellcheck: ${scripts[*]} test/k3d-stub/kubectl test/k3d-stub/docker test/k3d-stub/k3d"
else
  fail "shellcheck found problems"
fi
# Scripts marked as running on macOS use no bash-4-only construct and no GNU-only option; the
# guard's self-test first proves that each of its rules still fires.
check_log="$(mktemp)"
for check in checks/portable-shell-test.sh checks/k3d-scripts-test.sh checks/workflow-check.sh \
  checks/dashboard-check.sh checks/metrics-check.sh checks/log-json-check.sh; do
  status=0
  "$check" >"$check_log" 2>&1 || status=$?
  grep -v '^  ok ' "$check_log" || true
  count_run "$(tail -n 1 "$check_log")" "$check: no closing 'N passed, M failed' line"
  ((status == 0)) || echo "  ($check exited $status)"
done
rm -f "$check_log"

# --- 5 -----------------------------------------------------------------------------------------

step "5. images, built offline"
deploy/build-images.sh
for image in pingpong log-output; do
  ref="$image:$TAG"
  size="$(podman image inspect "$ref" --format '{{.Size}}')"
  if ((size <= MAX_IMAGE_BYTES)); then
    pass "$ref is $size bytes (at most $MAX_IMAGE_BYTES)"
  else
    fail "$ref is $size bytes, more than $MAX_IMAGE_BYTES"
  fi
  user="$(podman image inspect "$ref" --format '{{.Config.User}}')"
  if [[ "$user" =~ ^[1-9][0-9]*:[1-9][0-9]*$ ]]; then
    pass "$ref runs as numeric non-root $user"
  else
    fail "$ref runs as '$user', expected a numeric non-root UID:GID"
  fi
  # Every regular file in the image: the binaries and nothing else (no shell, no libc).
  mnt="$(podman image mount "$ref")"
  files="$(cd "$mnt" && find . -type f -o -type l | sort | tr '\n' ' ')"
  podman image unmount "$ref" >/dev/null
  case "$image" in
    pingpong) want="./usr/local/bin/pingpong " ;;
    log-output) want="./usr/local/bin/log-reader ./usr/local/bin/log-writer " ;;
  esac
  if [[ "$files" == "$want" ]]; then
    pass "$ref holds only $want"
  else
    fail "$ref holds '$files', expected '$want'"
  fi
done

# --- 6, 7 --------------------------------------------------------------------------------------

# shellcheck source=.ci/previous-release.sh
. .ci/previous-release.sh

run_log="$(mktemp)"
# run_persistent NAME ARGS...: runs the test, shows its output, adds its counts to the totals.
run_persistent() {
  local name="$1" status=0
  shift
  "$@" 2>&1 | tee "$run_log" || status=$?
  count_run "$(tail -n 1 "$run_log")" "$name: no closing 'N passed, M failed' line"
  ((status == 0)) || echo "  ($name exited $status)"
}

step "6. ./test-persistent.sh --engine podman"
run_persistent "test-persistent.sh --engine podman" ./test-persistent.sh --engine podman

step "7. ./test-persistent.sh --engine local (the same static binaries)"
# shellcheck disable=SC2119 # no COMMIT: test_support::PREVIOUS_RELEASE
run_persistent "test-persistent.sh --engine local" \
  env BIN_DIR="$PWD/target/x86_64-unknown-linux-gnu/release" \
    PREVIOUS_BIN_DIR="$(previous_release_bin_dir)" ./test-persistent.sh --engine local

step "8. the workflow's k3d job (.ci/k3d-e2e.sh) against the stub cluster (test/k3d-stub)"
run_persistent "test/k3d-stub/run.sh" \
  env BIN_DIR="$PWD/target/x86_64-unknown-linux-gnu/release" test/k3d-stub/run.sh
rm -f "$run_log"

echo
echo "engine: $((SECONDS - started)) s"
