#!/usr/bin/env bash
# Shell completion for kbus and kbusd (packaging/completion): bash's is
# registered for both commands and completes subcommands, options, option
# values and errno names; zsh's loads under compinit, registers itself and
# lists the same subcommands and options. Subcommands and options come from
# the programs' --help, so the expectations below are checked against it.
#
# completion_test.sh SOURCE_DIR KBUS KBUSD
set -euo pipefail
src=$1 kbus=$2 kbusd=$3
fail=0
check() {  # check WHAT GOT WANT
  if [ "$2" != "$3" ]; then
    echo "FAIL: $1: got '$2', want '$3'"
    fail=1
  else
    echo "ok: $1"
  fi
}

bash_complete() {  # bash_complete WORD...: the candidates for the last word
  bash -c '
    source "$1/packaging/completion/kbus.bash"
    shift
    COMP_WORDS=("$@")
    COMP_CWORD=$(($# - 1))
    _kbus_complete
    ((${#COMPREPLY[@]} == 0)) || printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' _ "$src" "$@"
}

check "bash: complete -p kbus" \
  "$(bash -c 'source "$1"; complete -p kbus' _ "$src/packaging/completion/kbus.bash")" \
  "complete -F _kbus_complete kbus"
check "bash: complete -p kbusd" \
  "$(bash -c 'source "$1"; complete -p kbusd' _ "$src/packaging/completion/kbus.bash")" \
  "complete -F _kbus_complete kbusd"
# kbus <TAB>: every word offered is a subcommand (its --help works), and
# the subcommands of kbus(1) are all there.
all=$(bash_complete "$kbus" "")
for w in $all; do
  "$kbus" "$w" --help >/dev/null 2>&1 || { echo "FAIL: bash offers '$w', not a kbus subcommand"; fail=1; }
done
for w in bindings errno limpet listen monitor new-device reply request send stats; do
  check "bash: kbus <TAB> offers $w" "$(tr ' ' '\n' <<<"$all" | grep -x -c -- "$w")" 1
done
check "bash: kbus s<TAB>" "$(bash_complete "$kbus" s)" "send stats "
check "bash: kbus re<TAB>" "$(bash_complete "$kbus" re)" "reply request "
check "bash: kbus send --all<TAB>" "$(bash_complete "$kbus" send --all)" "--all-or-fail --all-or-wait "
check "bash: kbus listen -b 1 --c<TAB>" "$(bash_complete "$kbus" listen -b 1 --c)" "--count "
check "bash: kbus mo<TAB>" "$(bash_complete "$kbus" mo)" "monitor "
check "bash: kbus monitor --t<TAB>" "$(bash_complete "$kbus" monitor --t)" "--timestamps "
check "bash: kbus errno EPI<TAB>" "$(bash_complete "$kbus" errno EPI)" "EPIPE "
check "bash: kbusd --re<TAB>" "$(bash_complete "$kbusd" --re)" "--ready-fd "
check "bash: kbusd --dev<TAB>" "$(bash_complete "$kbusd" --dev)" "--devices "
check "bash: kbusd --ready-fd <TAB> offers nothing" "$(bash_complete "$kbusd" --ready-fd "")" ""
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/busdir"
check "bash: kbusd --dir <TAB> offers directories" "$(bash_complete "$kbusd" --dir "$tmp/bu")" "$tmp/busdir "
check "bash: kbusd --group ro<TAB>" "$(bash_complete "$kbusd" --group roo)" "root "

if command -v zsh >/dev/null; then
  out=$(zsh -fc '
    autoload -Uz compinit && compinit -u -d "$1/zcompdump"
    source "$2/packaging/completion/_kbus"
    print -r -- "$_comps[kbus] $_comps[kbusd] $_comps[kbus-limpet]"
    _kbus_subcommands_of "$3" | cut -d: -f1 | sort | tr "\n" " "; print
    _kbus_options_of "$4" | grep -c -x -e --ready-fd -e --devices -e --dir' _ "$tmp" "$src" "$kbus" "$kbusd")
  check "zsh: registered for kbus, kbusd, kbus-limpet" "$(sed -n 1p <<<"$out")" "_kbus _kbus _kbus"
  check "zsh: the same subcommands as bash" "$(sed -n 2p <<<"$out")" "$all"
  check "zsh: kbusd options" "$(sed -n 3p <<<"$out")" "3"
else
  echo "FAIL: zsh is not installed (apt-get install zsh)"
  fail=1
fi
exit $fail
