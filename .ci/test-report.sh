# shellcheck shell=bash
# What the CI's own shell tests share (sourced by checks/portable-shell-test.sh and
# checks/k3d-scripts-test.sh): a scratch directory `work`, removed at exit; `step`, `pass`,
# `fail`; and at exit the closing `N passed, M failed` line, with a non-zero status if anything
# failed or the script aborted.

work="$(mktemp -d)"
readonly work
passed=0
failed=0

step() { printf '\n==> %s\n' "$*"; }
pass() { passed=$((passed + 1)); printf '  ok     %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf '  FAILED %s\n' "$*"; }

on_exit() {
  local status=$?
  rm -rf "$work"
  if ((status != 0 && failed == 0)); then
    failed=$((failed + 1))
    echo "  FAILED aborted (exit status $status)"
  fi
  echo
  echo "$passed passed, $failed failed"
  ((failed == 0)) || exit 1
}
trap on_exit EXIT
