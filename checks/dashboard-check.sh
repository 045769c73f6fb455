#!/usr/bin/env bash
# The Grafana dashboard cannot rot: every metric name deploy/grafana/dashboard.json queries must
# be one that real pingpong and log-reader processes expose on /metrics.
#
#   checks/dashboard-check.sh            # builds the debug binaries of this checkout if needed
#   BIN_DIR=target/debug checks/dashboard-check.sh
#
#   1. checks/dashboard.py selftest: the name extraction and matching rules
#   2. pingpong and log-reader (BIN_DIR, default the checkout's debug build) on free ports and a
#      temporary DATA_DIR; one GET /pingpong; their /metrics saved
#   3. checks/dashboard.py check: the dashboard's names against both expositions; the failure
#      lists exactly the names no service exposes
#   4. a real Prometheus (Debian's package, unpacked into .venv/prometheus, never installed or
#      started as a service) runs deploy/prometheus/kubernetes-pods.yml, with file_sd fed the
#      rendered manifests' prometheus.io annotations in kubernetes_sd's place: both processes
#      are scraped (up) at the annotated path and port (pingpong at an IPv6 pod IP, log-output
#      at an IPv4 one), and every panel query of the dashboard
#      is valid PromQL that returns data whenever its metrics are exposed
#
# Ports: the first free ones from PORT_BASE (default 19600) up. Last line: `N passed, M failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly dashboard=deploy/grafana/dashboard.json
# shellcheck source=checks/live.sh
. checks/live.sh

step "1. checks/dashboard.py selftest"
if python3 checks/dashboard.py selftest >"$work/selftest" 2>&1; then
  pass "the name extraction and matching rules ($(grep -c '^  ok' "$work/selftest") cases)"
else
  cat "$work/selftest"
  fail "checks/dashboard.py selftest"
fi

step "2. live /metrics of pingpong and log-reader"
build_services pingpong log-reader
port="${PORT_BASE:-19600}"
mkdir -p "$work/files"
for service in pingpong log-reader; do
  service_port="$(next_port)"
  DATA_DIR="$work/files" PORT="$service_port" RUST_LOG=warn "$BIN_DIR/$service" \
    >"$work/$service.log" 2>&1 </dev/null &
  pids+=("$!")
  port_of[$service]="$service_port"
  deadline=$((SECONDS + 30))
  until curl -fsS -o "$work/$service.metrics" "http://127.0.0.1:$service_port/metrics" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      cat "$work/$service.log"
      fail "$service: no /metrics on port $service_port within 30 s"
      exit 1
    fi
    sleep 0.2
  done
  if [[ "$service" == pingpong ]]; then
    curl -fsS -o /dev/null "http://127.0.0.1:$service_port/pingpong"
  fi
  curl -fsS -o "$work/$service.metrics" "http://127.0.0.1:$service_port/metrics"
  pass "$service on port $service_port: $(grep -c '^# TYPE' "$work/$service.metrics") metric families"
done

step "3. every metric the dashboard queries is exposed"
if out="$(python3 checks/dashboard.py check "$dashboard" "$work/pingpong.metrics" "$work/log-reader.metrics")"; then
  pass "$out"
else
  fail "$out"
fi

step "4. a real Prometheus scrapes them through the annotations and evaluates every panel query"
prom="$(prometheus_binary prometheus)"
pass "$("$prom" --version 2>&1 | sed -n 1p)"
# The job users paste, with file_sd in kubernetes_sd's place. Each target carries what
# kubernetes_sd would: a pod address on a port that is not the annotated one (9), and the
# pod's annotations from the rendered manifests, the port being where the local process listens
# (the manifests' port is the container's: checks/manifests.py check-scrape checks that one).
python3 - "$work" "${port_of[pingpong]}" "${port_of[log-reader]}" <<'PY'
import json, subprocess, sys
work, ports = sys.argv[1], {"pingpong": sys.argv[2], "log-output": sys.argv[3]}
facts = subprocess.run(["python3", "checks/manifests.py", "facts", "manifests"], check=True, capture_output=True, text=True).stdout
targets = []
for line in facts.splitlines():
    kind, *rest = line.split()
    if kind != "scrape":
        continue
    deployment, scrape, _port, path = rest
    meta = "__meta_kubernetes_pod_annotation_prometheus_io_"
    # pingpong as on an IPv6 cluster (its pod IP ::1, which it serves listening on [::] by
    # default), log-output as on an IPv4 one.
    ip = "::1" if deployment == "pingpong" else "127.0.0.1"
    address = f"[{ip}]:9" if ":" in ip else f"{ip}:9"
    targets.append({"targets": [address], "labels": {
        meta + "scrape": scrape, meta + "port": ports[deployment], meta + "path": path,
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_namespace": "default", "__meta_kubernetes_pod_name": deployment + "-local"}})
json.dump(targets, open(f"{work}/targets.json", "w"))
job = open("deploy/prometheus/kubernetes-pods.yml").read()
sd = "  kubernetes_sd_configs:\n    - role: pod\n"
assert sd in job, "deploy/prometheus/kubernetes-pods.yml has no kubernetes_sd_configs role: pod"
job = job.replace(sd, f"  file_sd_configs:\n    - files: [{work}/targets.json]\n")
open(f"{work}/prometheus.yml", "w").write(
    "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\nscrape_configs:\n" + job)
PY
prom_port="$(next_port)"
"$prom" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 </dev/null &
pids+=("$!")
prom_url="http://127.0.0.1:$prom_port"
# up{job="kubernetes-pods"} of both pods, each labelled with its namespace and pod.
up=""
deadline=$((SECONDS + 30))
while ((SECONDS < deadline)); do
  up="$(curl -fsS --get "$prom_url/api/v1/query" --data-urlencode 'query=up{job="kubernetes-pods"} == 1' 2>/dev/null |
    python3 -c 'import json,sys; print(" ".join(sorted(r["metric"]["namespace"] + "/" + r["metric"]["pod"] + "@" + r["metric"]["instance"] for r in json.load(sys.stdin)["data"]["result"])))' 2>/dev/null || true)"
  [[ "$(wc -w <<<"$up")" == 2 ]] && break
  sleep 0.5
done
want_up="default/log-output-local@127.0.0.1:${port_of[log-reader]} default/pingpong-local@[::1]:${port_of[pingpong]}"
if [[ "$up" == "$want_up" ]]; then
  pass "both pods scraped through their annotations: $up"
else
  sed 's/^/    /' "$work/prometheus.log"
  fail "up targets '$up', expected '$want_up'"
fi
if out="$(python3 checks/dashboard.py evaluate "$dashboard" "$prom_url" "$work/pingpong.metrics" "$work/log-reader.metrics")"; then
  pass "$out"
else
  fail "$(tr '\n' '|' <<<"$out")"
fi
