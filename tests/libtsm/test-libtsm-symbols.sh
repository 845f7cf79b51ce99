#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# libtsm (libtsmd.so) exports tsm_* and nothing else: no symbol of the internal Varlink code, json-c or
# libevent may leak from it. TAP output. Usage: test-libtsm-symbols.sh LIBTSM_SO
set -u

lib=${1:?usage: $0 LIBTSM_SO}
n=0
failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $1"; }

if ! syms=$(nm -D --defined-only "$lib"); then
        echo "Bail out! nm failed on $lib"
        exit 1
fi

# Columns: value, type, name[@[@]version]. The version script's node (LIBTSM_0.1) shows up as
# an absolute symbol of type A; that is the version definition, not an exported function.
names=$(echo "$syms" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }')
count=$(echo "$names" | grep -c . || true)
if [ "$count" -gt 0 ]; then
        ok "libtsmd.so defines $count dynamic symbols"
else
        not_ok "libtsmd.so defines no dynamic symbols"
fi

bad=$(echo "$names" | grep -v '^tsm_' | grep . || true)
if [ -z "$bad" ]; then
        ok "every dynamic symbol is tsm_*"
else
        not_ok "symbols outside tsm_*: $(echo $bad)"
fi

for s in json_object_new_object event_base_new varlink_client_connect base64_encode log_set_ident; do
        if echo "$names" | grep -qx "$s"; then
                not_ok "$s leaks from libtsmd.so"
        else
                ok "$s does not leak"
        fi
done

# The API tsm.h declares is exported, the asynchronous device calls and the window's setter among
# them (LIBTSM_0.1: no release yet, so they join the first node).
for s in tsm_client_connect tsm_guest_request_async tsm_client_describe_async \
        tsm_device_attach_async tsm_device_detach_async tsm_device_bind_async tsm_device_unbind_async \
        tsm_device_get_state_async tsm_context_close_async tsm_client_set_max_calls_in_flight; do
        if echo "$syms" | awk '$2 == "T" { print $3 }' | grep -qx "$s@@LIBTSM_0.1"; then
                ok "$s is exported as $s@@LIBTSM_0.1"
        else
                not_ok "$s is not exported as $s@@LIBTSM_0.1"
        fi
done

# Every exported symbol carries the version node.
unversioned=$(echo "$syms" | awk '$2 != "A" && $3 !~ /@@LIBTSM_0\.1$/ { print $3 }')
if [ -z "$unversioned" ]; then
        ok "every symbol is versioned LIBTSM_0.1"
else
        not_ok "unversioned symbols: $(echo $unversioned)"
fi

soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
if [ "$soname" = "libtsmd.so.0" ]; then
        ok "soname is libtsmd.so.0"
else
        not_ok "soname is '$soname', expected libtsmd.so.0"
fi

echo "1..$n"
exit $failed
