#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tsmctl's bash completion, without a terminal: COMP_WORDS as bash splits the line (with '=' in
# COMP_WORDBREAKS, as by default, "--socket=/x" is three words; without it, one), the function
# called, COMPREPLY checked, and whether it asked for no trailing space. TAP output.
# Usage: test-tsmctl-completion.sh COMPLETION_FILE TSMCTL
set -u

completion=${1:?usage: $0 COMPLETION_FILE TSMCTL}
tsmctl_path=${2:?usage: $0 COMPLETION_FILE TSMCTL}
n=0
failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $1"; }

# The completion runs "tsmctl --list-verbs": the one built here.
PATH="$(dirname "$tsmctl_path"):$PATH"
# shellcheck source=/dev/null
source "$completion"

# compopt works only while bash completes a line: record what is asked for instead.
compopt_args=
compopt() { compopt_args+="$* "; }

if [[ $(complete -p tsmctl) == 'complete -F _tsmctl tsmctl' ]]; then
        ok "registered without -o nospace (verbs get their space)"
else
        not_ok "registered as: $(complete -p tsmctl)"
fi

# check EXPECTED NOSPACE WORD...: completes the last word of the line WORD...; EXPECTED is
# COMPREPLY joined by spaces, NOSPACE yes or no.
check() {
        local expected=$1 nospace=$2 got got_nospace=no
        shift 2
        COMP_WORDS=("$@")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        COMPREPLY=()
        compopt_args=
        _tsmctl
        got="${COMPREPLY[*]}"
        [[ $compopt_args == *"-o nospace"* ]] && got_nospace=yes
        if [[ $got == "$expected" && $got_nospace == "$nospace" ]]; then
                ok "[$*] -> [$got], nospace $got_nospace"
        else
                not_ok "[$*] -> [$got], nospace $got_nospace; expected [$expected], nospace $nospace"
        fi
}

COMP_WORDBREAKS=$' \t\n"\'><=;|&(:'
check "status" no tsmctl st
check "status" no tsmctl --socket = /tmp/x st
check "status" no tsmctl --socket /tmp/x st
check "status" no tsmctl --timeout = 5 --json st
check "--socket=" yes tsmctl --so
check "--socket=" yes tsmctl --json --so
check "--from=" yes tsmctl --socket = /tmp/x audit --fr
check "io.tsmd.Guest" no tsmctl --socket = /tmp/x introspect io.tsmd.G
check "" no tsmctl --timeout =
# tsmctl(8): the global options may follow the command too, up to a "--".
check "--json" no tsmctl status --js
check "--socket=" yes tsmctl devices --so
check "--timeout=" yes tsmctl --json status --ti
check "--help" no tsmctl metrics --he
check "--help --socket= --json --timeout=" no tsmctl status -
check "--from= --to= --uid= --device= --scope= --result= --event= --since= --until= --limit= --help --socket= --json --timeout=" no tsmctl audit --
check "--event=" yes tsmctl audit --ev
# The events records can have, as tsmctl lists them; the times that have names.
check "guest-request guest-request-late" no tsmctl audit --event = guest-r
check "io.tsmd.Admin.QueryAudit" no tsmctl audit --event = io.tsmd.Admin.Q
check "reclaim-context records-lost" no tsmctl --json audit --event rec
check "today tomorrow" no tsmctl audit --since = to
check "yesterday" no tsmctl audit --from = 3 --until = y
check "" no tsmctl audit --since = -15
check "" no tsmctl audit --event = bogus
check "--json" no tsmctl audit --from = 3 --js
check "" no tsmctl audit --from =
check "" no tsmctl call -- --js
check "" no tsmctl status --timeout =

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
touch "$dir/tsmd.sock"
cd "$dir" || exit 1
check "tsmd.sock" no tsmctl --socket =
check "$dir/tsmd.sock" no tsmctl --socket = "$dir/ts"
check "$dir/tsmd.sock" no tsmctl --socket "$dir/ts"
check "tsmd.sock" no tsmctl status --socket =
check "$dir/tsmd.sock" no tsmctl devices --socket "$dir/ts"
[[ $compopt_args == *"-o filenames"* ]] && ok "socket paths complete as file names" ||
        not_ok "socket paths do not complete as file names"

COMP_WORDBREAKS=$' \t\n"\'><;|&(:'
check "status" no tsmctl --socket=/tmp/x st
check "status" no tsmctl --timeout=5 --json st
check "--socket=" yes tsmctl --so
check "--json" no tsmctl status --socket=/tmp/x --js
check "--socket=" yes tsmctl status --so
check "--event=guest-request --event=guest-request-late" no tsmctl audit --event=guest-r
check "--since=yesterday" no tsmctl audit --since=y
check "" no tsmctl audit --until=-2h

echo "1..$n"
exit $failed
