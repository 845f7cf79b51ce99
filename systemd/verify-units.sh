#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs systemd-analyze verify on the units as they would be installed: ExecStart= and
# ExecReload= point at the freshly built tsmd and tsmctl. Also lints the sysusers and tmpfiles snippets.
set -eu
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sbin=$(cd "$build/../daemon" && pwd)
bin=$(cd "$build/../client" && pwd)
sed -e "s|^ExecStart=.*|ExecStart=$sbin/tsmd|" -e "s|^ExecReload=[^ ]*/tsmctl |ExecReload=$bin/tsmctl |" \
    "$build/tsmd.service" >"$tmp/tsmd.service"
cp "$src/tsmd.socket" "$src/tsmd-admin.socket" "$tmp/"
# Documentation=man:... must name a page tsmd ships: the source tree's, where man(1) can look.
man=no
if command -v man >/dev/null; then
    man=yes
    mkdir -p "$tmp/man/man5" "$tmp/man/man8"
    cp "$src/../daemon/tsmd.8" "$src/../client/tsmctl.8" "$tmp/man/man8/"
    cp "$src/../daemon/tsmd.conf.5" "$src/../daemon/policy/tsmd-policy.conf.5" "$tmp/man/man5/"
fi
cd "$tmp"
out=$(MANPATH="$tmp/man" SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=$man ./tsmd.socket ./tsmd-admin.socket ./tsmd.service 2>&1) || { echo "$out"; exit 1; }
# Warnings about units we do not ship (sockets.target) are not ours; anything else fails.
if echo "$out" | grep -v '^$' | grep -qv 'sockets.target'; then
    echo "$out"
    exit 1
fi
if command -v systemd-sysusers >/dev/null; then
    systemd-sysusers --dry-run "$src/tsmd.sysusers" >/dev/null 2>&1 || systemd-sysusers --root="$tmp" "$src/tsmd.sysusers"
fi
if command -v systemd-tmpfiles >/dev/null; then
    systemd-tmpfiles --root="$tmp" --create "$src/tsmd.tmpfiles" 2>&1 | grep -v 'Failed to resolve' || true
fi
echo "units verified"
