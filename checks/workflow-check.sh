#!/usr/bin/env bash
# The GitHub workflow, checked here where it cannot run: actionlint (syntax, expressions, action
# inputs) with shellcheck on every `run:` block, and the k3d job running what the k3d stub runs.
#
#   checks/workflow-check.sh
#
#   1. actionlint (.ci/actionlint-requirements.txt, pinned by hash) in the checkout's .venv
#   2. actionlint really runs shellcheck: a fixture workflow with an unquoted $HOME in a run:
#      block must be reported as SC2086 (actionlint skips shellcheck silently when it finds none)
#   3. actionlint -shellcheck $(command -v shellcheck) on .github/workflows/*.yml: no finding
#   4. the workflow runs `bash .ci/run` and the k3d job runs .ci/k3d-e2e.sh, the script
#      test/k3d-stub/run.sh runs against the stub cluster, and uploads its diagnostics on failure
#
# Last line: `N passed, M failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=.ci/test-report.sh
. .ci/test-report.sh

readonly workflow=.github/workflows/ci.yml

step "1. actionlint"
if [[ ! -x .venv/bin/actionlint ]]; then
  [[ -x .venv/bin/pip ]] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check --require-hashes \
    -r .ci/actionlint-requirements.txt </dev/null
fi
shellcheck_bin="$(command -v shellcheck)" || { fail "shellcheck is not installed (apt-get install shellcheck)"; exit 1; }
pass "$(.venv/bin/actionlint -version | sed -n 1p), $("$shellcheck_bin" --version | sed -n 2p)"
actionlint="$PWD/.venv/bin/actionlint"
lint() { "$actionlint" -shellcheck "$shellcheck_bin" -pyflakes= "$@"; }

step "2. actionlint runs shellcheck on run: blocks"
mkdir -p "$work/.github/workflows"
cat >"$work/.github/workflows/fixture.yml" <<'YAML'
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: ls $HOME/x
YAML
out="$(cd "$work" && lint .github/workflows/fixture.yml 2>&1)" && status=0 || status=$?
if ((status == 1)) && grep -qF 'SC2086' <<<"$out"; then
  pass "an unquoted \$HOME in a run: block is reported as SC2086"
else
  fail "actionlint did not report SC2086 on the fixture (exit $status): $out"
fi

step "3. actionlint on $workflow"
if out="$(lint .github/workflows/*.yml 2>&1)" && [[ -z "$out" ]]; then
  pass "actionlint: no finding in $(echo .github/workflows/*.yml)"
else
  printf '%s\n' "$out"
  fail "actionlint found problems in .github/workflows"
fi

step "4. the workflow runs what CI here runs"
# want WHAT LINE: LINE is a line of the workflow, exactly.
want() {
  if grep -qxF -- "$2" "$workflow"; then pass "$1"; else fail "$1: no line '$2' in $workflow"; fi
}
# shellcheck disable=SC2016 # the workflow's own text, expansions and all
{
  want "job ci: bash .ci/run as root" '        run: sudo --preserve-env=CARGO_HOME,RUSTUP_HOME,CI env "PATH=$PATH" bash .ci/run'
  want "job k3d: .ci/k3d-e2e.sh" '        run: .ci/k3d-e2e.sh "$RUNNER_TEMP/k3d-diagnostics"'
  want "job k3d: diagnostics uploaded on failure" '          path: ${{ runner.temp }}/k3d-diagnostics'
}
# shellcheck disable=SC2016 # run.sh's own text
if grep -qF '"$repo/.ci/k3d-e2e.sh"' test/k3d-stub/run.sh; then
  pass "test/k3d-stub/run.sh runs .ci/k3d-e2e.sh too"
else
  fail "test/k3d-stub/run.sh does not run .ci/k3d-e2e.sh: the stub no longer exercises the workflow's steps"
fi
