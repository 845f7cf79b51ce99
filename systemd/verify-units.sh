#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs systemd-analyze verify on the units as they would be installed: ExecStart= and
# ExecReload= point at the freshly built tsmd and tsmctl. Also applies the sysusers.d file and the
# configured tmpfiles.d file to an empty root, failing on any error.
set -eu
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sbin=$(cd "$build/../daemon" && pwd)
bin=$(cd "$build/../client" && pwd)
sed -e "s|^ExecStart=.*|ExecStart=$sbin/tsmd|" -e "s|^ExecReload=[^ ]*/tsmctl |ExecReload=$bin/tsmctl |" \
    "$build/tsmd.service" >"$tmp/tsmd.service"
cp "$src/tsmd.socket" "$src/tsmd-admin.socket" "$tmp/"
# Documentation=man:... must name a page tsmd ships: the pages as built, where man(1) can look.
man=no
if command -v man >/dev/null; then
    man=yes
    mkdir -p "$tmp/man/man5" "$tmp/man/man8"
    cp "$build/../daemon/tsmd.8" "$src/../client/tsmctl.8" "$tmp/man/man8/"
    cp "$build/../daemon/tsmd.conf.5" "$build/../daemon/policy/tsmd-policy.conf.5" "$tmp/man/man5/"
fi
cd "$tmp"
out=$(MANPATH="$tmp/man" SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=$man ./tsmd.socket ./tsmd-admin.socket ./tsmd.service 2>&1) || { echo "$out"; exit 1; }
# Warnings about units we do not ship (sockets.target) are not ours; anything else fails.
if echo "$out" | grep -v '^$' | grep -qv 'sockets.target'; then
    echo "$out"
    exit 1
fi
# A security review's list: what "systemd-analyze security" finds open in tsmd.service must be
# here, with the reason it stays open (tsmd.service.in says more). A setting dropped or loosened
# without a reason given here fails.
accepted='
User=/DynamicUser=                             /dev/iommu, sysfs and the fd store are root'"'"'s: the worker drops to tsmd
RootDirectory=/RootImage=                      the host'"'"'s /sys and /dev/iommu are what tsmd serves
PrivateDevices=                                /dev/iommu: DevicePolicy=closed with DeviceAllow= instead
DeviceAllow=                                   /dev/iommu (and the rtc ProtectClock= allows to read)
PrivateNetwork=                                udevd rebroadcasts uevents in the host'"'"'s network namespace
PrivateUsers=                                  root on the host is what /dev/iommu and sysfs require
PrivateMounts=                                 implied: ProtectSystem= and the rest give the unit a mount namespace
ProtectProc=                                   the worker reads /proc/PID/cgroup of its clients, another user'"'"'s
ProcSubset=                                    not tried without the rest of /proc (what libsystemd, libcap, sanitizers read)
RestrictAddressFamilies=~AF_UNIX               the Varlink sockets and the worker'"'"'s channel
RestrictAddressFamilies=~AF_NETLINK            hotplug: sd-device'"'"'s uevent monitor
SystemCallFilter=~@privileged                  starting the worker (setgroups, setresuid, setresgid, capset), fchown
CapabilityBoundingSet=~CAP_SET(UID|GID|PCAP)   starting the worker as tsmd with an empty bounding set
CapabilityBoundingSet=~CAP_KILL                stopping the worker, which runs as another user
CapabilityBoundingSet=~CAP_(CHOWN|FSETID|SETFCAP) CAP_CHOWN, at start, for the worker'"'"'s directories
CapabilityBoundingSet=~CAP_SYS_RAWIO           the kernel requires it for the debug-write scope
CapabilityBoundingSet=~CAP_SYS_(NICE|RESOURCE) CAP_SYS_RESOURCE: iommufd'"'"'s RLIMIT_MEMLOCK accounting
'
if json=$(systemd-analyze security --offline=yes --json=short ./tsmd.service 2>/dev/null); then
    open=$(echo "$json" | python3 -c 'import json, sys; print("\n".join(x["name"] for x in json.load(sys.stdin) if x.get("set") is False))')
    bad=0
    while IFS= read -r setting; do
        [ -n "$setting" ] || continue
        if ! echo "$accepted" | awk '{ print $1 }' | grep -qxF -- "$setting"; then
            echo "tsmd.service leaves $setting open, with no reason given in verify-units.sh"
            bad=1
        fi
    done <<<"$open"
    [ "$bad" -eq 0 ] || exit 1
else
    echo "systemd-analyze security --offline=yes --json=short unsupported here: not reviewed"
fi
# The sysusers.d and tmpfiles.d files, applied to an empty root: the users first (tmpfiles resolves
# the names in the root's /etc), then the tmpfiles.d file as meson configured it (the source's
# @localstatedir@ is no path). Any error fails, but that without root the chowns are refused: then only
# those refusals pass, the syntax, the paths and the names still checked, and it says so.
root="$tmp/root"
mkdir -p "$root/etc"
if ! command -v systemd-sysusers >/dev/null || ! command -v systemd-tmpfiles >/dev/null; then
    echo "SKIP: no systemd-sysusers or systemd-tmpfiles here: tsmd.sysusers and tsmd.tmpfiles not checked"
else
    if ! out=$(systemd-sysusers --root="$root" "$src/tsmd.sysusers" 2>&1); then
        echo "systemd-sysusers refuses tsmd.sysusers:"
        echo "$out"
        exit 1
    fi
    rc=0
    out=$(systemd-tmpfiles --root="$root" --create "$build/tsmd.tmpfiles" 2>&1) || rc=$?
    if [ "$(id -u)" -ne 0 ]; then
        echo "SKIP (partly): not root, so the ownerships of tsmd.tmpfiles are not applied; its syntax, paths and user names are checked"
        out=$(echo "$out" | grep -v '^fchownat() of .* failed: Operation not permitted$' || true)
        # EX_CANTCREAT (73): what the refused chowns make of it.
        [ "$rc" -ne 73 ] || rc=0
    fi
    if [ "$rc" -ne 0 ] || [ -n "$(echo "$out" | grep -v '^$' || true)" ]; then
        echo "systemd-tmpfiles refuses $build/tsmd.tmpfiles (exit $rc):"
        echo "$out"
        exit 1
    fi
    # Made as tsmd wants them (as root: without, the set-group-ID bit of a group not ours is dropped).
    if [ "$(id -u)" -eq 0 ]; then
        while read -r type path mode _; do
            [ "$type" = d ] || continue
            got=$(stat -c %a "$root$path")
            if [ "$got" != "${mode#0}" ]; then
                echo "tsmd.tmpfiles: $path is mode $got, not $mode"
                exit 1
            fi
        done <"$build/tsmd.tmpfiles"
    fi
fi
echo "units verified"
