# shellcheck shell=bash
# What the CI's own shell tests share (sourced by .ci/engine.sh, .ci/dist-check.sh, .ci/rwx.sh,
# the shell checks in checks/, test/node-local-locks.sh and test/k3d-stub/run.sh): a scratch
# directory `work`, removed at exit; `step`, `pass`, `fail`, `count_run`, `expect_ok` and
# `validate`; and at exit the closing `N passed, M failed` line (after `$report_label: ` when
# the script sets one), with a non-zero status if anything failed or the script aborted.

work="$(mktemp -d)"
readonly work
passed=0
failed=0

step() { printf '\n==> %s\n' "$*"; }
pass() { passed=$((passed + 1)); printf '  ok     %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf '  FAILED %s\n' "$*"; }

# count_run LINE MESSAGE: adds a run's closing `N passed, M failed` LINE to the totals; fails
# with MESSAGE when LINE is not one.
count_run() {
  if [[ "$1" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    passed=$((passed + BASH_REMATCH[1]))
    failed=$((failed + BASH_REMATCH[2]))
  else
    fail "$2"
  fi
}

# expect_ok NAME COMMAND...: passes when COMMAND exits 0, else fails with its output.
expect_ok() {
  local name="$1" output
  shift
  if output="$("$@" 2>&1)"; then
    pass "$name"
  else
    fail "$name: $(printf '%s\n' "$output" | tr '\n' '|')"
  fi
}

# validate NAME: the YAML on stdin must validate for every Kubernetes version in
# VALIDATE_VERSIONS with no output at all (unknown apiVersions are only warnings), through the
# checkout's .venv/bin/kubernetes-validate.
validate() {
  local name="$1" input output version
  input="$(cat)"
  for version in "${VALIDATE_VERSIONS[@]}"; do
    if output="$(.venv/bin/kubernetes-validate --strict -k "$version" --quiet - <<<"$input" 2>&1)" &&
      [[ -z "$output" ]]; then
      pass "$name valid for Kubernetes $version"
    else
      fail "$name for Kubernetes $version: ${output:-non-zero exit}"
    fi
  done
}

on_exit() {
  local status=$?
  rm -rf "$work"
  if ((status != 0 && failed == 0)); then
    failed=$((failed + 1))
    echo "  FAILED aborted (exit status $status)"
  fi
  echo
  echo "${report_label:+$report_label: }$passed passed, $failed failed"
  ((failed == 0)) || exit 1
}
trap on_exit EXIT
