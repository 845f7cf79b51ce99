#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The pkg-config file of libtsm (libtsmd.pc) works: the installed one says what it should, and a program
# built with the uninstalled one (meson-uninstalled/) against <tsm.h> compiles warning-free as
# C11, links and runs. TAP output.
# Usage: test-libtsm-pkgconfig.sh BUILD_ROOT CC [CFLAGS...]  (e.g. the build's -fsanitize=)
set -u

build=${1:?usage: $0 BUILD_ROOT CC [CFLAGS...]}
cc=${2:?usage: $0 BUILD_ROOT CC [CFLAGS...]}
shift 2
n=0
failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $1"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-libtsm-pc-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

pc="$build/meson-private/libtsmd.pc"
if [ -f "$pc" ]; then
        ok "libtsmd.pc was generated"
else
        not_ok "no $pc"
fi
grep -q '^Name: libtsmd$' "$pc" && ok "Name" || not_ok "Name"
grep -q '^Version: ' "$pc" && ok "Version" || not_ok "Version"
grep -q '^Libs: -L${libdir} -ltsmd$' "$pc" && ok "Libs" || not_ok "Libs: $(grep '^Libs:' "$pc")"
grep -q '^Cflags: -I${includedir}/tsmd$' "$pc" && ok "Cflags" || not_ok "Cflags: $(grep '^Cflags:' "$pc")"
# The internal static libraries are inside libtsmd.so: nobody must be asked to link them.
if grep -Eq 'varlink|basic|harness' "$pc"; then
        not_ok "internal libraries named: $(grep -E 'varlink|basic' "$pc")"
else
        ok "no internal library named"
fi

export PKG_CONFIG_PATH="$build/meson-uninstalled"
if flags=$(pkg-config --cflags --libs libtsmd); then
        ok "pkg-config --cflags --libs libtsmd: $flags"
else
        not_ok "pkg-config --cflags --libs libtsmd failed"
        echo "1..$n"
        exit 1
fi
modversion=$(pkg-config --modversion libtsmd)
grep -q "^Version: $modversion\$" "$pc" && ok "modversion $modversion" || not_ok "modversion $modversion"

cat > "$tmp/main.c" <<'EOC'
#include <stdio.h>
#include <string.h>
#include <tsm.h>

int main(void) {
        TsmClient *c = NULL;
        int r = tsm_client_connect("/nonexistent/tsmd/socket", &c);

        if (r != -ENOENT || c)
                return 1;
        if (strcmp(tsm_tdi_state_to_string(TSM_TDI_STATE_CONFIG_LOCKED), "config_locked") != 0)
                return 1;
        tsm_client_free(c);
        puts("ok");
        return 0;
}
EOC
# shellcheck disable=SC2086
if $cc -std=c11 -Wall -Wextra -Werror -pedantic "$@" -o "$tmp/main" "$tmp/main.c" $flags 2> "$tmp/cc.log"; then
        ok "a program using <tsm.h> builds with the uninstalled pkg-config file"
else
        not_ok "build failed: $(cat "$tmp/cc.log")"
fi
libdir=$(pkg-config --libs-only-L libtsmd | sed 's/^-L//; s/ .*//')
if [ -x "$tmp/main" ] && [ "$(LD_LIBRARY_PATH="$libdir" "$tmp/main")" = "ok" ]; then
        ok "and runs against libtsmd.so"
else
        not_ok "the program did not run"
fi
if [ -x "$tmp/main" ] && readelf -d "$tmp/main" | grep -q 'NEEDED.*libtsmd\.so\.0'; then
        ok "it needs libtsmd.so.0"
else
        not_ok "it does not need libtsmd.so.0"
fi

echo "1..$n"
exit $failed
