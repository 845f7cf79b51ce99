#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Boots the units as installed under a real systemd: "meson install" into a temporary DESTDIR,
# then systemd-nspawn boots this machine's own OS (--volatile=yes: a tmpfs root, this /usr
# read-only, an empty /etc) with the installed /usr laid over its /usr, the installed /etc/*
# bound in, and tsmd.service enabled as "systemctl enable" does. tsmd-boot-check.service runs
# boot-check.sh in there and powers the container off; this script fails on any "not ok".
# Skips (77) only when no container can boot here: not root, no systemd-nspawn, or nspawn
# ending before systemd ran.
#   boot-units.sh MESON BUILD-ROOT SANITIZE VMM-EXAMPLE NOTIFY-CRASH-PRELOAD
set -u
meson=$1 build=$2 sanitize=$3 vmm_example=$4 crash_preload=$5
here=$(cd "$(dirname "$0")" && pwd)
umask 022

skip() {
    echo "SKIP: $*"
    exit 77
}
[ "$(id -u)" -eq 0 ] || skip "booting a container needs root"
command -v systemd-nspawn >/dev/null || skip "no systemd-nspawn (Debian: apt-get install systemd-container)"

tmp=$(mktemp -d /tmp/tsmd-boot.XXXXXX)
cgroups=() # the container's (below)
remove_cgroups() {
    local d
    for d in "${cgroups[@]}"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
}
# TSMD_BOOT_TEST_KEEP=1 keeps it (the container's journal is in journal/: journalctl -D).
if [ -n "${TSMD_BOOT_TEST_KEEP:-}" ]; then
    trap 'remove_cgroups; echo "kept $tmp"' EXIT
else
    trap 'remove_cgroups; rm -rf "$tmp"' EXIT
fi
root=$tmp/root
mkdir -p "$tmp/in" "$tmp/out" "$tmp/journal" "$tmp/system/multi-user.target.wants"

out=$("$meson" install -C "$build" --destdir "$root" --no-rebuild --quiet 2>&1) || { echo "$out"; echo "meson install failed"; exit 1; }
# The container's /lib, /bin, /sbin are /usr's (merged /usr): what was installed there is
# laid over /usr with the rest. Anything elsewhere would not be in the container: fail.
for d in "$root"/*; do
    case ${d##*/} in
    usr | etc) ;;
    bin | sbin | lib | lib64)
        mkdir -p "$root/usr/${d##*/}"
        cp -a "$d/." "$root/usr/${d##*/}/" ;;
    *)
        echo "installed outside /usr and /etc, which the test does not put in the container: $d"
        exit 1 ;;
    esac
done

# Enabled as a package's postinst would: [Install] and Also= decide what is linked.
out=$(systemctl --root="$root" enable tsmd.service 2>&1) || { echo "$out"; echo "systemctl enable tsmd.service failed"; exit 1; }
cp -a "$root/etc/systemd/system/." "$tmp/system/" || exit 1
rm -rf "$root/etc/systemd"

# The VMM is the check unit's process: a rule naming its unit proves tsmd learnt it.
mkdir -p "$root/etc/tsmd/policy.d"
cat >"$root/etc/tsmd/policy.d/50-boot-test.conf" <<EOC
[Client:boot-test]
Users=root
Units=tsmd-boot-check.service
Devices=*
Scopes=info state-change
EOC

cat >"$tmp/system/tsmd-boot-check.service" <<EOU
[Unit]
Description=tsmd's units, checked as booted
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=oneshot
ExecStart=/tsmd-boot-test/in/boot-check.sh /tsmd-boot-test/in /tsmd-boot-test/out
# For a hang: the checks take 20 s to 40 s on two idle cores, several times that on loaded ones.
TimeoutStartSec=360
EOU
ln -s ../tsmd-boot-check.service "$tmp/system/multi-user.target.wants/"

# LeakSanitizer's check at exit needs ptrace(), which the unit's filter refuses (@debug); the
# sanitizers' other checks run, and stop tsmd at the first error.
if [ "$sanitize" != none ]; then
    mkdir -p "$tmp/system/tsmd.service.d"
    cat >"$tmp/system/tsmd.service.d/sanitizer.conf" <<EOU
[Service]
Environment=ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
EOU
fi

cp "$here/boot-check.sh" "$here/vmm-reclaim.py" "$vmm_example" "$tmp/in/" || exit 1
# A drop-in boot-check.sh puts in place for one check: tests/restart's preload kills tsmd between
# two of its fd store notifications, where /run/tsmd/crash-after says.
cp "$crash_preload" "$tmp/in/notify-crash-preload.so" || exit 1
asan=
[ "$sanitize" != none ] && asan=" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:verify_asan_link_order=0"
cat >"$tmp/in/crash-preload.conf" <<EOU
[Service]
Environment=LD_PRELOAD=/tsmd-boot-test/in/notify-crash-preload.so TSMD_TEST_CRASH_FILE=/run/tsmd/crash-after$asan
EOU

# The container in a cgroup of its own. With --keep-unit, systemd-nspawn puts the container in
# the cgroup it runs in: on a host without systemd to give each test a scope, every units-boot
# runs in the same one, and two at once (other build trees' suites on the machine) shared
# system.slice/tsmd.service. Each container's systemd then met the other's tsmd in its unit,
# pids of another namespace, read as 0: systemd 252 failed "systemctl kill" with EIO, and once
# kept tsmd.service stopping until TimeoutStopSec=. Where systemd keeps its cgroups (the
# name=systemd hierarchy, the unified one), a child of ours, removed at the end.
while IFS=: read -r _ controllers path; do
    case $controllers in
    name=systemd) mount=/sys/fs/cgroup/systemd ;;
    "")
        mount=/sys/fs/cgroup
        [ "$(stat -fc %T "$mount")" = cgroup2fs ] || mount=/sys/fs/cgroup/unified
        [ "$(stat -fc %T "$mount" 2>/dev/null)" = cgroup2fs ] || continue ;;
    *) continue ;;
    esac
    [ -d "$mount$path" ] && cgroups+=("$mount${path%/}/tsmd-boot-$$")
done </proc/self/cgroup
# None found (a cgroup path that is not where this mount namespace has it): as before, with a
# note, for that host may boot a container all the same.
[ ${#cgroups[@]} -gt 0 ] || echo "NOTE: no cgroup of ours in a hierarchy of systemd's found: the container shares ours"
# Each etc/X installed is bound to /etc/X (writable: the check edits the policy); the rest of
# /etc is the container's, empty at boot.
binds=()
for d in "$root"/etc/*; do
    binds+=("--bind=$d:/etc/${d##*/}")
done
# A cgroup file system this host does not let us write (a container's, read-only): as before,
# with a note; only two boots at once would then share one.
made=()
for d in "${cgroups[@]}"; do
    if mkdir "$d" 2>/dev/null; then
        made+=("$d")
    else
        echo "NOTE: cannot make $d: the container shares our cgroup"
    fi
done
cgroups=("${made[@]}")
# in_own_cgroup COMMAND...: COMMAND in the cgroups made above, run from a subshell that moves there.
in_own_cgroup() {
    local d
    for d in "${cgroups[@]}"; do
        echo "$BASHPID" >"$d/cgroup.procs" 2>/dev/null || echo "NOTE: cannot move into $d: the container shares our cgroup"
    done
    exec "$@"
}
# The boot, the checks (TimeoutStartSec= above) and the power-off, within meson's timeout.
(in_own_cgroup timeout -k 10 420 systemd-nspawn --quiet -D / --volatile=yes --register=no --keep-unit \
    -M "tsmd-boot-$$" -b --console=pipe --capability=CAP_SYS_RAWIO \
    --overlay-ro="/usr:$root/usr:/usr" "${binds[@]}" \
    --bind-ro="$tmp/system:/etc/systemd/system" \
    --bind-ro="$tmp/in:/tsmd-boot-test/in" --bind="$tmp/out:/tsmd-boot-test/out" \
    --bind="$tmp/journal:/var/log/journal") \
    </dev/null >"$tmp/console" 2>&1
status=$?

if [ -f "$tmp/out/results" ] && ! grep -q "^not ok" "$tmp/out/results" && grep -qx done "$tmp/out/results"; then
    exit 0
fi
# No journal (journald writes it early in the boot) and no check: systemd never ran. Unless
# the container was still running at the timeout: a boot that hangs is a failure.
if [ -z "$(find "$tmp/journal" -name '*.journal')" ] && [ ! -e "$tmp/out/check.log" ] && [ "$status" -ne 124 ]; then
    tail -20 "$tmp/console"
    skip "systemd-nspawn (exit $status) booted no container: systemd never ran"
fi

journal() {
    journalctl -D "$tmp/journal" --no-pager -o short-monotonic "$@" 2>&1
}
echo "=== results"
cat "$tmp/out/results" 2>/dev/null || echo "(none: the check unit did not run)"
echo "=== boot-check.sh's output"
cat "$tmp/out/check.log" 2>/dev/null
echo "=== the container's journal: tsmd's units"
journal -u tsmd.service -u tsmd.socket -u tsmd-admin.socket -u tsmd-boot-check.service
echo "=== the console (systemd-nspawn exited $status)"
tail -40 "$tmp/console"
exit 1
