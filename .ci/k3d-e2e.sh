#!/usr/bin/env bash
# The k3d path end to end, exactly as the GitHub workflow's k3d job runs it once Docker, k3d and
# kubectl are there (.github/workflows/ci.yml), and as test/k3d-stub/run.sh runs it here against
# a cluster played by local processes:
#
#   .ci/k3d-e2e.sh DIAGNOSTICS_DIR
#
#   1. deploy/k3d-up.sh: a fresh cluster, the images, storage/, manifests/, the ingress
#   2. ./test-persistent.sh --engine k3d
#   on failure: .ci/k3d-diagnostics.sh DIAGNOSTICS_DIR (every pod's logs, describe, events),
#   which the workflow uploads as an artifact
#
# HOST_PORT and READY_TIMEOUT pass through to both scripts. Exit status: non-zero on failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

diagnostics="${1:?usage: .ci/k3d-e2e.sh DIAGNOSTICS_DIR}"
on_exit() {
  local status=$?
  if ((status != 0)); then
    .ci/k3d-diagnostics.sh "$diagnostics" || true
  fi
  exit "$status"
}
trap on_exit EXIT

echo "==> k3d-e2e 1. deploy/k3d-up.sh"
deploy/k3d-up.sh
echo "==> k3d-e2e 2. ./test-persistent.sh --engine k3d"
./test-persistent.sh --engine k3d
