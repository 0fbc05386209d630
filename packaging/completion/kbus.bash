# bash completion for kbus(1), kbusd(8) and kbus-limpet(1).
#
# Subcommands and options are read from the program's own --help (the one
# being completed, e.g. ./build/kbus), so they always match its version.
# Installed as bash-completion/completions/{kbus,kbusd,kbus-limpet}; to try
# it by hand: source packaging/completion/kbus.bash

# The options listed by `$@ --help` (CLI11's "-b,--bus INT" lines and the
# limpet's "-s, -server" lines), one per line.
_kbus_options_of() {
    "$@" --help 2>/dev/null | awk '
        /^ +-/ {
            for (i = 1; i <= NF; i++) {
                if ($i !~ /^-/) break
                n = split($i, parts, ",")
                for (j = 1; j <= n; j++) if (parts[j] ~ /^-/) print parts[j]
            }
        }'
}

# The subcommands listed by `$1 --help` ("Subcommands:" section), one per line.
_kbus_subcommands_of() {
    "$1" --help 2>/dev/null | awk '
        /^Subcommands:/ { on = 1; next }
        on && /^$/ { exit }
        on && /^ +[a-z]/ { print $1 }'
}

# Completes the value of option $1 of $2 (kbus, kbusd, kbus-limpet);
# returns 1 if $1 takes no value that can be completed here.
_kbus_option_value() {
    local cur=$3
    case $1 in
        -d|--dir)
            COMPREPLY=($(compgen -d -- "$cur")); return 0 ;;
        --user|--owner)
            COMPREPLY=($(compgen -u -- "$cur")); return 0 ;;
        --group)
            COMPREPLY=($(compgen -g -- "$cur")); return 0 ;;
        --exec)
            COMPREPLY=($(compgen -c -- "$cur")); return 0 ;;
        -b|--bus|-k|-kbus|-n|--devices|--count|--timeout|--to|--ready-fd|--mode|-id|-m|-message|\
        -v|-verbose|-t|--max-*|--abs-max-msg-size|--stall-timeout-ms|--hello-timeout-ms|--reconnect-max-ms)
            [[ $2 == kbusd && $1 == -v ]] && return 1   # kbusd -v is a flag
            COMPREPLY=(); return 0 ;;
    esac
    return 1
}

_kbus_complete() {
    local cur prev cmd words_before i sub=""
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=""
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    cmd=${COMP_WORDS[0]}
    local base=${cmd##*/}

    if [[ $base == kbus ]]; then
        # The subcommand: the first word after `kbus` not starting with '-'.
        for ((i = 1; i < COMP_CWORD; i++)); do
            if [[ ${COMP_WORDS[i]} != -* ]]; then
                sub=${COMP_WORDS[i]}
                break
            fi
        done
        if [[ -z $sub ]]; then
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$(_kbus_options_of "$cmd")" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "$(_kbus_subcommands_of "$cmd")" -- "$cur"))
            fi
            return 0
        fi
        _kbus_option_value "$prev" "$base" "$cur" && return 0
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$(_kbus_options_of "$cmd" "$sub")" -- "$cur"))
        elif [[ $sub == errno ]]; then
            COMPREPLY=($(compgen -W "$("$cmd" errno --list 2>/dev/null | awk '{print $2}')" -- "$cur"))
        fi
        return 0
    fi

    # kbusd, kbus-limpet: options only.
    _kbus_option_value "$prev" "$base" "$cur" && return 0
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_kbus_options_of "$cmd")" -- "$cur"))
    elif [[ $base == kbus-limpet ]]; then
        COMPREPLY=($(compgen -f -- "$cur"))   # a Unix socket path (or host:port)
    fi
    return 0
}

complete -F _kbus_complete kbus kbusd kbus-limpet
