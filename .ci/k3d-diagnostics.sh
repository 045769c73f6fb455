#!/usr/bin/env bash
# What it takes to see why the k3d path failed, written into DIR, one file each (the GitHub
# workflow uploads DIR as an artifact when its k3d job fails; .ci/k3d-e2e.sh calls this):
#
#   .ci/k3d-diagnostics.sh DIR
#
#   cluster.txt          kubectl get nodes,pods,svc,ingress,pvc,pv,pdb -A -o wide
#   events.txt           kubectl get events -A --sort-by=.lastTimestamp
#   describe-pods.txt    kubectl describe pods -A
#   logs/NS_POD.txt      kubectl logs --all-containers --prefix of every pod, then the same
#                        with --previous (the containers that restarted)
#   docker.txt           docker ps -a (the k3d nodes)
#
# In the context KUBE_CONTEXT (default k3d-k3s-default). Never fails on what it cannot get: the
# error goes into the file instead.
set -euo pipefail

dir="${1:?usage: .ci/k3d-diagnostics.sh DIR}"
context="${KUBE_CONTEXT:-k3d-k3s-default}"
kc() { kubectl --context "$context" "$@"; }
mkdir -p "$dir/logs"

kc get nodes,pods,svc,ingress,pvc,pv,pdb -A -o wide >"$dir/cluster.txt" 2>&1 || true
kc get events -A --sort-by=.lastTimestamp >"$dir/events.txt" 2>&1 || true
kc describe pods -A >"$dir/describe-pods.txt" 2>&1 || true
docker ps -a >"$dir/docker.txt" 2>&1 || true
pods=0
while read -r namespace pod; do
  [[ -n "$pod" ]] || continue
  pods=$((pods + 1))
  {
    kc logs -n "$namespace" "$pod" --all-containers --prefix 2>&1 || true
    echo "--- --previous"
    kc logs -n "$namespace" "$pod" --all-containers --prefix --previous 2>&1 || true
  } >"$dir/logs/${namespace}_$pod.txt"
done < <(kc get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace}{" "}{.metadata.name}{"\n"}{end}' 2>/dev/null || true)
echo "k3d-diagnostics: cluster state, events, descriptions and the logs of $pods pod(s) in $dir"
