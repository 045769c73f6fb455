#!/usr/bin/env bash
# Guard: scripts that claim to run on stock macOS use no bash-4-only construct and no GNU-only
# option. A script claims it with this exact line (anywhere in the file):
#
#   # portable: bash 3.2 and BSD userland (macOS)
#
#   checks/portable-shell.sh            # every git-tracked file carrying the line; fails if none does
#   checks/portable-shell.sh FILE...    # these files (those without the line are skipped)
#
# No bash 3.2 runs here, so this reads the text: one finding per line that matches a rule below,
# as `path:line: rule: the line`. Comments and here-document bodies are skipped. A line that is
# portable despite matching (say, a GNU option used only after checking for GNU) can say so
# with a trailing `# portable-ok: <why>`. Heuristics, not a parser: they can miss a construct
# hidden in an unusual spelling; checks/portable-shell-test.sh proves each rule still fires.
# Last line: `portable-shell: N files checked, M findings`; exit status 1 on any finding.
set -euo pipefail

readonly MARKER='# portable: bash 3.2 and BSD userland (macOS)'

# rule NAME ERE HINT: an extended regular expression (POSIX awk) matched against each line of
# code. $cmd stands for "at a command position" (after ; & | ( ! { or a keyword).
# shellcheck disable=SC2016 # the patterns and hints are shell code, never expanded here
rules() {
  local cmd='(^|[;&|(!{]|(^|[[:space:]])(then|do|else|if|elif|while|until|time|exec|command|builtin))[[:space:]]*'
  local end='([[:space:]]|;|\)|$)'
  local decl='(^|[^A-Za-z0-9_-])(declare|typeset|local|readonly)[[:space:]]+(-[a-zA-Z]+[[:space:]]+)*-[a-zA-Z]*'
  rule 'declare -A (bash 4)' "${decl}A" 'an indexed array or a case statement'
  rule 'declare -n (bash 4.3)' "${decl}n" 'pass the name and use eval or printf -v'
  rule 'declare -g (bash 4.2)' "${decl}g" 'assign without declare at the top level'
  rule 'declare -l/-u case attribute (bash 4)' "${decl}[lu]" "tr '[:upper:]' '[:lower:]'"
  rule 'mapfile/readarray (bash 4)' "${cmd}(mapfile|readarray)${end}" 'while IFS= read -r line; do arr+=("$line"); done'
  rule '${x,,} ${x^^} case change (bash 4)' '\$\{[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?(\^|,)' "tr '[:upper:]' '[:lower:]'"
  rule '${x@Q} transformation (bash 4.4)' '\$\{[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?@[QEPAaKkULu]\}' 'printf %q'
  rule 'negative substring length ${x:1:-1} (bash 4.2)' '\$\{[A-Za-z_][A-Za-z0-9_]*:[^}:-][^}:]*:[[:space:]]*-' '${x:1:${#x}-2}'
  rule 'brace sequence with a step or zero padding (bash 4)' '\{-?[0-9]+\.\.-?[0-9]+\.\.|\{-?0[0-9]+\.\.' 'seq, or printf %02d'
  rule 'read -t with a fraction (bash 4)' '(^|[^A-Za-z0-9_-])read[[:space:]]([^|;&]*[[:space:]])?-t[[:space:]]*[0-9]*\.' 'read -t 1'
  rule 'negative subscript (bash 4.3)' '\$\{[A-Za-z_][A-Za-z0-9_]*\[-[0-9]' '${arr[${#arr[@]}-1]}'
  rule 'coproc (bash 4)' "${cmd}coproc${end}" 'a named pipe (mkfifo)'
  rule '|& (bash 4)' '\|&' '2>&1 |'
  rule '&>> (bash 4)' '&>>' '>>file 2>&1'
  rule 'case ;& or ;;& (bash 4)' ';;?&' 'repeat the commands'
  rule '{fd}> named descriptor (bash 4.1)' '(^|[^$])\{[A-Za-z_][A-Za-z0-9_]*\}[<>]' 'a fixed descriptor number'
  rule '[[ -v ]] (bash 4.2)' '(\[\[|\[|test)[[:space:]]+(![[:space:]]+)?-v[[:space:]]' '[[ -n "${x+set}" ]]'
  rule 'wait -n/-f/-p (bash 4.3+)' "${cmd}wait[[:space:]]+-" 'wait PID'
  # Testing whether one is set (${EPOCHREALTIME:-}, ${EPOCHREALTIME+x}) is the portable way to
  # detect it, so only the other expansions count.
  rule 'EPOCHREALTIME/EPOCHSECONDS/BASHPID (bash 4+)' '\$(EPOCHREALTIME|EPOCHSECONDS|BASHPID)|\$\{(EPOCHREALTIME|EPOCHSECONDS|BASHPID)([^-:+]|:[^-+]|$)' 'date +%s, $$'
  rule "printf '%(...)T' (bash 4.2)" '%\([^)]*\)T' 'date'
  rule 'shopt option newer than bash 3.2' 'shopt[[:space:]]+-[a-z]*[[:space:]]+.*(globstar|lastpipe|autocd|checkjobs|direxpand|globasciiranges|inherit_errexit|localvar_inherit|assoc_expand_once|compat3|progcomp_alias)' 'do without it'
  rule 'date %N (GNU date)' '(^|[^A-Za-z0-9_-])date[[:space:]][^;|&]*%[0-9]*N' 'a millisecond clock that does not need GNU date'
  rule 'date -d/--date (GNU date)' '(^|[^A-Za-z0-9_-])date[[:space:]]+(-[a-zA-Z]*d|--date)' 'arithmetic on date +%s'
  rule 'sed -i without an attached suffix (GNU and BSD differ)' '(^|[^A-Za-z0-9_-])sed[[:space:]]([^|;&]*[[:space:]])?(-[a-zA-Z]*i([[:space:]]|$)|--in-place)' 'sed -i.bak ... && rm file.bak'
  rule 'readlink -f/-e/-m (GNU readlink)' '(^|[^A-Za-z0-9_-])readlink[[:space:]]+(-[a-zA-Z]*[fem]|--canonicalize)' 'cd "$(dirname "$f")" && pwd'
  rule 'timeout (GNU coreutils)' "${cmd}timeout${end}" 'a polling loop with a deadline'
  rule 'grep -P (GNU grep)' '(^|[^A-Za-z0-9_-])grep[[:space:]]+(-[a-zA-Z]*P|--perl)' 'grep -E'
  rule 'stat -c/--format (GNU stat)' '(^|[^A-Za-z0-9_-])stat[[:space:]]+(-[a-zA-Z]*c|--format|--printf)' 'ls -ln, or wc -c < file'
  rule 'find -printf (GNU find)' '(^|[^A-Za-z0-9_-])find[[:space:]].*[[:space:]]-printf' 'find ... -exec'
}
rule() { printf '%s\t%s\t%s\n' "$1" "$2" "$3"; }

# One file: prints findings, one per line. Two passes: the first collects the arrays that can be
# empty (`x=()`, `x=($(...))`, `x=("$@")`, `local -a x`, `read -a x`), the second reports every
# expansion of one of them that is not guarded as ${x[@]+"${x[@]}"}: bash < 4.4 treats
# "${x[@]}" of an empty array as unbound under `set -u`.
check_file() {
  awk -v rules_file="$rules_file" '
    BEGIN {
      FS = "\t"; n = 0
      while ((getline line < rules_file) > 0) {
        split(line, f, "\t"); n++; name[n] = f[1]; re[n] = f[2]; hint[n] = f[3]
      }
      FS = " "
    }
    FNR == 1 { pass++; heredoc = ""; dash = 0 }
    {
      raw = $0
      if (heredoc != "") {
        t = raw
        if (dash) sub(/^\t+/, "", t)
        if (t == heredoc) heredoc = ""
        next
      }
      ok = index(raw, "# portable-ok:") > 0
      code = raw
      if (code ~ /^[[:space:]]*#/) next
      sub(/[[:space:]]#.*$/, "", code)
      # A here-document starts: skip its body from the next line on. (Not a shift in $(( )).)
      if (code !~ /\(\(/ && match(code, /<<-?[[:space:]]*["\047]?[A-Za-z_][A-Za-z0-9_]*/) && substr(code, RSTART, 3) != "<<<") {
        d = substr(code, RSTART, RLENGTH)
        dash = (substr(d, 3, 1) == "-")
        sub(/^<<-?[[:space:]]*["\047]?/, "", d)
        heredoc = d
      }
      if (pass == 1) { collect(code); next }
      if (ok) next
      for (i = 1; i <= n; i++) {
        if (code ~ re[i]) report(name[i], hint[i])
      }
      for (a in empty) {
        c = code
        gsub("\\$\\{" a "\\[[@*]\\]:?\\+\"?\\$\\{" a "\\[[@*]\\]\\}\"?\\}", "", c)
        if (c ~ ("\\$\\{!?" a "\\[[@*]\\]")) {
          report("\"${" a "[@]}\" of an array that can be empty (unbound under set -u before bash 4.4)", \
            "${" a "[@]+\"${" a "[@]}\"}")
        }
      }
    }
    function collect(code,   s, m) {
      s = code
      while (match(s, /[A-Za-z_][A-Za-z0-9_]*=\([[:space:]]*(\)|\$|"\$@"|"\$\{[A-Za-z_][A-Za-z0-9_]*\[@\])/)) {
        m = substr(s, RSTART, RLENGTH); sub(/=.*/, "", m); empty[m] = 1
        s = substr(s, RSTART + RLENGTH)
      }
      s = code
      if (match(s, /(local|declare|typeset)[[:space:]]+-[a-zA-Z]*a[a-zA-Z]*[[:space:]]+[A-Za-z_][A-Za-z0-9_]*([[:space:]]|;|$)/)) {
        m = substr(s, RSTART, RLENGTH); sub(/[[:space:];]*$/, "", m); sub(/.*[[:space:]]/, "", m); empty[m] = 1
      }
      if (match(s, /(^|[^A-Za-z0-9_-])read[[:space:]].*-[a-zA-Z]*a[[:space:]]*[A-Za-z_][A-Za-z0-9_]*/)) {
        m = substr(s, RSTART, RLENGTH); sub(/.*-[a-zA-Z]*a[[:space:]]*/, "", m); empty[m] = 1
      }
    }
    function report(what, fix,   t) {
      t = raw; sub(/^[[:space:]]+/, "", t)
      printf "%s:%d: %s: %s\n    instead: %s\n", FILENAME, FNR, what, t, fix
    }
  ' "$1" "$1"
}

rules_file="$(mktemp)"
trap 'rm -f "$rules_file"' EXIT
rules >"$rules_file"

files=()
if (($# == 0)); then
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  while IFS= read -r f; do
    [[ -f "$f" ]] && grep -qxF "$MARKER" "$f" && files+=("$f")
  done < <(git ls-files)
  if ((${#files[@]} == 0)); then
    echo "portable-shell: no tracked file carries the line '$MARKER'" >&2
    echo "portable-shell: 0 files checked, 1 findings"
    exit 1
  fi
else
  for f in "$@"; do
    if grep -qxF "$MARKER" "$f"; then
      files+=("$f")
    else
      echo "portable-shell: $f skipped (no marker line)"
    fi
  done
fi

findings=0
for f in ${files[@]+"${files[@]}"}; do
  out="$(check_file "$f")"
  if [[ -n "$out" ]]; then
    printf '%s\n' "$out"
    findings=$((findings + $(grep -c '^    instead: ' <<<"$out")))
  else
    echo "ok $f"
  fi
done
echo "portable-shell: ${#files[@]} files checked, $findings findings"
((findings == 0))
