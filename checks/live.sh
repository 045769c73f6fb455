# shellcheck shell=bash disable=SC2034,SC2154 # variables shared with the sourcing script
# What the checks of live processes share (sourced by checks/dashboard-check.sh,
# checks/metrics-check.sh and checks/log-json-check.sh from the repository's root): `repo`;
# .ci/test-report.sh; the services they start (`pids`, `port_of`, `stop_services`), stopped at
# exit after `diagnose` (the script's own, if it defines one) on failure; the binaries
# (`build_services`); free ports from a base (`next_port`); waiting for an answer
# (`wait_http`); Prometheus's binaries unpacked from Debian's package (`prometheus_binary`).

repo="$PWD"
readonly repo
# shellcheck source=.ci/test-report.sh
. .ci/test-report.sh

pids=()
declare -A port_of=()
stop_services() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
diagnose() { :; }
# on_exit (test-report.sh) reads the exit status from $?: handed on past stop_services.
trap 'status=$?; ((status == 0 && failed == 0)) || diagnose; stop_services; (exit "$status"); on_exit' EXIT

# build_services BIN...: sets BIN_DIR to the checkout's debug build of BINs (built if needed),
# unless BIN_DIR is set already.
build_services() {
  local bin args=()
  [[ -z "${BIN_DIR:-}" ]] || return 0
  for bin in "$@"; do args+=(--bin "$bin"); done
  cargo build --locked --quiet "${args[@]}"
  BIN_DIR="${CARGO_TARGET_DIR:-$repo/target}/debug"
}

# next_port: the first port from `port` (set it to the base first) up that nothing listens on.
next_port() {
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
  port=$((port + 1))
}

# wait_http FAILURE CURL_ARGUMENT...: runs `curl -sS CURL_ARGUMENT...` every 0.2 s until it
# succeeds; after 30 s fails with FAILURE and exits (the script's diagnose then shows the logs).
wait_http() {
  local failure="$1" deadline=$((SECONDS + 30))
  shift
  until curl -sS "$@" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      fail "$failure"
      exit 1
    fi
    sleep 0.2
  done
}

# prometheus_binary NAME: the path of Prometheus's NAME (prometheus, promtool), unpacked from
# Debian's package into .venv/prometheus the first time: installing it would start a system
# service.
prometheus_binary() {
  local path=".venv/prometheus/usr/bin/$1"
  if [[ ! -x "$path" ]]; then
    (cd "$work" && { apt-get download prometheus >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get download prometheus >/dev/null 2>&1; }; })
    mkdir -p .venv/prometheus
    dpkg-deb -x "$work"/prometheus_*.deb .venv/prometheus
  fi
  echo "$path"
}
