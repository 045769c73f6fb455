#!/usr/bin/env bash
# Tears down what deploy/k3d-up.sh set up.
#
#   deploy/k3d-down.sh          # delete the k3d cluster k3s-default: nodes, volume data and all
#   deploy/k3d-down.sh --app    # delete only manifests/ (Deployments, Services, Ingress); the
#                               # cluster, storage/ and the counter on the volume stay, and
#                               # `kubectl apply -k manifests` brings the app back where it was
set -euo pipefail
# portable: bash 3.2 and BSD userland (macOS)

readonly CLUSTER=k3s-default
readonly CONTEXT="k3d-$CLUSTER"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly repo
# shellcheck source=deploy/lib.sh
. "$repo/deploy/lib.sh"

case "${1:-}" in
  "")
    command -v k3d >/dev/null || { echo "k3d is required but not installed" >&2; exit 1; }
    echo "==> 1. k3d cluster delete $CLUSTER"
    k3d cluster delete "$CLUSTER"
    ;;
  --app)
    command -v kubectl >/dev/null || { echo "kubectl is required but not installed" >&2; exit 1; }
    echo "==> 1. kubectl delete -k manifests/ (storage/ stays)"
    kubectl --context "$CONTEXT" delete -k "$repo/manifests" --ignore-not-found --wait=true
    ;;
  -h | --help) usage "${BASH_SOURCE[0]}" ;;
  *) unknown_argument "$1" ;;
esac
