# shellcheck shell=bash
# What the deploy/ scripts share: their --help (each script's header comment) and the refusal of
# an argument they do not take. Sourced, never run.
# portable: bash 3.2 and BSD userland (macOS)

# usage SCRIPT: SCRIPT's header comment, from its second line up to `set -euo pipefail`.
usage() {
  sed -n '2,/^set -euo/p' "$1" | sed '$d; s/^# \{0,1\}//'
}

# unknown_argument ARG: refuses ARG with exit status 2.
unknown_argument() {
  echo "unknown argument: $1 (try --help)" >&2
  exit 2
}

# one_option OPTION SCRIPT [ARG]: for a script whose only argument is OPTION. Sets `option` to
# true when ARG is OPTION, false when there is no ARG; --help prints SCRIPT's usage and exits 0.
# shellcheck disable=SC2034 # `option` is read by the sourcing script
one_option() {
  option=false
  case "${3:-}" in
    "") ;;
    "$1") option=true ;;
    -h | --help) usage "$2"; exit 0 ;;
    *) unknown_argument "$3" ;;
  esac
}
