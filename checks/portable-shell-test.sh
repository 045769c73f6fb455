#!/usr/bin/env bash
# Self-test of checks/portable-shell.sh, so that a guard which stops detecting fails CI:
#
#   1. one fixture per rule: a marked snippet using exactly that construct gives exactly one
#      finding, of that rule, and exit status 1
#   2. portable spellings of the same things give no finding and exit status 0
#   3. an unmarked file is skipped; the repository's marked files pass
#
# Last line: `N passed, M failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly MARKER='# portable: bash 3.2 and BSD userland (macOS)'
guard=checks/portable-shell.sh
# shellcheck source=.ci/test-report.sh
. .ci/test-report.sh
n=0

# fixture SNIPPET: a marked script holding the snippet; prints its path.
fixture() {
  n=$((n + 1))
  printf '#!/usr/bin/env bash\n%s\nset -euo pipefail\n%s\n' "$MARKER" "$1" >"$work/f$n.sh"
  echo "$work/f$n.sh"
}

# bad RULE SNIPPET: exactly one finding, naming RULE, on the snippet's last line (the snippet
# starts at line 4).
bad() {
  local rule="$1" snippet="$2" file out status=0 line
  file="$(fixture "$snippet")"
  out="$("$guard" "$file" 2>&1)" || status=$?
  line=$((3 + $(printf '%s\n' "$snippet" | wc -l)))
  local want="$file:$line: $rule: "
  if ((status == 1)) && [[ "$(grep -c '^    instead: ' <<<"$out")" == 1 ]] &&
    [[ "$(sed -n 1p <<<"$out")" == "$want"* ]] &&
    [[ "$(tail -n 1 <<<"$out")" == "portable-shell: 1 files checked, 1 findings" ]]; then
    pass "$rule: ${snippet//$'\n'/; }"
  else
    fail "$rule: '$snippet' gave exit status $status and:$(printf '\n%s' "$out" | sed 's/^/    /')"
  fi
}

# good SNIPPET: no finding, exit status 0.
good() {
  local snippet="$1" file out status=0
  file="$(fixture "$snippet")"
  out="$("$guard" "$file" 2>&1)" || status=$?
  if ((status == 0)) && [[ "$(tail -n 1 <<<"$out")" == "portable-shell: 1 files checked, 0 findings" ]]; then
    pass "portable: ${snippet//$'\n'/; }"
  else
    fail "portable snippet '$snippet' gave exit status $status and:$(printf '\n%s' "$out" | sed 's/^/    /')"
  fi
}

# shellcheck disable=SC2016 # the snippets are shell code, not to be expanded here
{
  step "1. each bash-4-only or GNU-only construct is found"
  bad 'declare -A (bash 4)' 'declare -A seen'
  bad 'declare -A (bash 4)' '  local -rA seen=([a]=1)'
  bad 'declare -n (bash 4.3)' 'local -n ref=$1'
  bad 'declare -g (bash 4.2)' 'declare -g x=1'
  bad 'declare -l/-u case attribute (bash 4)' 'declare -l lower=$1'
  bad 'negative substring length ${x:1:-1} (bash 4.2)' 'echo "${name:1:-1}"'
  bad 'brace sequence with a step or zero padding (bash 4)' 'for i in {1..10..2}; do :; done'
  bad 'brace sequence with a step or zero padding (bash 4)' 'for i in {01..10}; do :; done'
  bad 'read -t with a fraction (bash 4)' 'read -r -t 0.5 line'
  bad 'mapfile/readarray (bash 4)' 'mapfile -t lines < <(ls)'
  bad 'mapfile/readarray (bash 4)' 'ls | readarray lines'
  bad '${x,,} ${x^^} case change (bash 4)' 'echo "${name,,}"'
  bad '${x,,} ${x^^} case change (bash 4)' 'echo "${name^^}"'
  bad '${x@Q} transformation (bash 4.4)' 'echo "${name@Q}"'
  bad 'negative subscript (bash 4.3)' 'echo "${arr[-1]}"'
  bad 'coproc (bash 4)' 'coproc cat'
  bad '|& (bash 4)' 'make |& tee log'
  bad '&>> (bash 4)' 'make &>> log'
  bad 'case ;& or ;;& (bash 4)' 'case $x in a) echo a ;;& *) echo b ;; esac'
  bad '{fd}> named descriptor (bash 4.1)' 'exec {fd}>lock'
  bad '[[ -v ]] (bash 4.2)' 'if [[ -v HOME ]]; then :; fi'
  bad 'wait -n/-f/-p (bash 4.3+)' 'wait -n'
  bad 'EPOCHREALTIME/EPOCHSECONDS/BASHPID (bash 4+)' 'start=$EPOCHREALTIME'
  bad 'EPOCHREALTIME/EPOCHSECONDS/BASHPID (bash 4+)' 't="${EPOCHREALTIME/[.,]/}"'
  bad 'EPOCHREALTIME/EPOCHSECONDS/BASHPID (bash 4+)' 'echo "${BASHPID}"'
  bad "printf '%(...)T' (bash 4.2)" "printf '%(%s)T' -1"
  bad 'shopt option newer than bash 3.2' 'shopt -s inherit_errexit'
  bad 'date %N (GNU date)' 'now=$(date +%s%3N)'
  bad 'date %N (GNU date)' 'now=$(date +%s%N)'
  bad 'date -d/--date (GNU date)' 'date -d @0'
  bad 'sed -i without an attached suffix (GNU and BSD differ)' "sed -i 's/a/b/' file"
  bad 'sed -i without an attached suffix (GNU and BSD differ)' "sed -i '' 's/a/b/' file"
  bad 'sed -i without an attached suffix (GNU and BSD differ)' "sed -E -i 's/a/b/' file"
  bad 'readlink -f/-e/-m (GNU readlink)' 'dir=$(readlink -f "$0")'
  bad 'timeout (GNU coreutils)' 'out=$(timeout 5 curl -s x)'
  bad 'grep -P (GNU grep)' "grep -P '\\d' file"
  bad 'stat -c/--format (GNU stat)' 'stat -c %s file'
  bad 'find -printf (GNU find)' "find . -type f -printf '%p'"
  bad 'mapfile/readarray (bash 4)' 'mask=$(( 1 << bits ))
mapfile -t lines < <(ls)'
  bad 'mapfile/readarray (bash 4)' 'cat <<EOF
text
EOF
mapfile -t lines < <(ls)'
  bad '"${layers[@]}" of an array that can be empty (unbound under set -u before bash 4.4)' \
    "layers=()
docker build \"\${layers[@]}\" ."
  bad '"${out[@]}" of an array that can be empty (unbound under set -u before bash 4.4)' \
    'out=($(ls))
printf "%s\n" "${out[@]}"'
  bad '"${args[@]}" of an array that can be empty (unbound under set -u before bash 4.4)' \
    'args=("$@")
run ${args[*]}'
  bad '"${parts[@]}" of an array that can be empty (unbound under set -u before bash 4.4)' \
    'read -ra parts <<<"$line"
for p in "${parts[@]}"; do :; done'

  step "2. portable spellings pass"
  good 'layers=()
docker build ${layers[@]+"${layers[@]}"} .
echo "${#layers[@]}"'
  good 'tools=(docker k3d kubectl)
for t in "${tools[@]}"; do command -v "$t"; done'
  good "sed -i.bak 's/a/b/' file && rm file.bak"
  good 'kubectl wait --timeout=180s node --all'
  good 'now=$(date +%s)'
  good 'echo "${name:-x}" "${name:1}" "${name:1:2}" "${name: -1}" {1..10} {a..c}; read -r -t 1 line'
  good 'if [[ -n "${EPOCHREALTIME:-}" || -n "${EPOCHSECONDS+set}" ]]; then :; fi'
  good 'lower=$(printf %s "$x" | tr "[:upper:]" "[:lower:]")'
  good 'echo "${x:-a,b}" "${x#*,}" "${#x}" 2>&1 | cat'
  good '# mapfile and declare -A in a comment; date +%s%3N too
echo done # and |& after code'
  good 'cat <<EOF
mapfile, declare -A, |& and sed -i inside a here-document are text
EOF
echo after'
  good 'now=$(date +%s%3N) # portable-ok: only after checking for GNU date'
  good 'repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"'

  step "3. unmarked files are skipped; the repository's marked files pass"
  printf '#!/usr/bin/env bash\ndeclare -A x\n' >"$work/unmarked.sh"
  status=0
  out="$("$guard" "$work/unmarked.sh" 2>&1)" || status=$?
  if ((status == 0)) && [[ "$out" == "portable-shell: $work/unmarked.sh skipped (no marker line)
portable-shell: 0 files checked, 0 findings" ]]; then
    pass "a file without the marker line is skipped"
  else
    fail "unmarked file: exit status $status, output: $out"
  fi
  printf '#!/usr/bin/env bash\n %s\ndeclare -A x\n' "$MARKER" >"$work/near.sh"
  status=0
  out="$("$guard" "$work/near.sh" 2>&1)" || status=$?
  if ((status == 0)) && [[ "$out" == *"skipped (no marker line)"* ]]; then
    pass "only the exact marker line is a claim"
  else
    fail "near-miss marker: exit status $status, output: $out"
  fi
  status=0
  out="$("$guard" 2>&1)" || status=$?
  if ((status == 0)) && [[ "$(tail -n 1 <<<"$out")" =~ ^portable-shell:\ [1-9][0-9]*\ files\ checked,\ 0\ findings$ ]]; then
    pass "the repository's marked files: $(grep '^ok ' <<<"$out" | sed 's/^ok //' | tr '\n' ' ')"
  else
    fail "the repository's marked files (exit status $status):$(printf '\n%s' "$out" | sed 's/^/    /')"
  fi
}
