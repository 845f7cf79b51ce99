#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs inside the container boot-units.sh boots (as tsmd-boot-check.service): checks what a
# host's admin and its VMMs rely on from the units as installed. Writes "ok - WHAT" or
# "not ok - WHAT" lines to OUT/results (the commands' output to OUT/check.log), then "done".
#   boot-check.sh IN OUT     IN: vmm-example, vmm-reclaim.py; OUT: writable, the host's
set -u
in=$1 out=$2
results=$out/results
exec >>"$out/check.log" 2>&1

n=0
# check WHAT COMMAND...: one result line; a program has 60 s (functions here time their own).
# The bounds are for a hang, not for a slow machine: CI runs this beside other suites on two
# cores, where a boot's checks take many times what they take alone. The uptime in each line
# says how long a check took.
check() {
    local what=$1 t=()
    shift
    n=$((n + 1))
    echo "--- $(cut -d' ' -f1 /proc/uptime) $what: $*"
    [ "$(type -t "$1")" = file ] && t=(timeout 60)
    if "${t[@]}" "$@"; then
        echo "ok $n - $what" >>"$results"
    else
        echo "exit $?"
        echo "not ok $n - $what" >>"$results"
    fi
}
# is EXPECTED COMMAND...: the command's output is EXPECTED.
is() {
    local want=$1 got
    shift
    got=$("$@" 2>&1)
    echo "$got"
    [ "$got" = "$want" ] || { echo "expected: $want"; return 1; }
}
# eventually SECONDS COMMAND...: COMMAND succeeds within SECONDS, tried again until then (what
# systemd, journald or a VMM in the background does comes when the scheduler lets it). The
# last try's output is in the log.
eventually() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            "$@"
            return
        fi
        sleep 0.1
    done
}
prop() { systemctl show -P "$2" "$1"; }
main_pid() { prop tsmd.service MainPID; }
# The monitor's child, as ps sees it: its user and effective capabilities.
worker_is_unprivileged() {
    local worker
    worker=$(pgrep -P "$(main_pid)" -x tsmd-worker) || { echo "no tsmd-worker under $(main_pid)"; return 1; }
    is "tsmd" ps -o user= -p "$worker" &&
    is "CapEff:	0000000000000000" grep CapEff "/proc/$worker/status" &&
    is "CapBnd:	0000000000000000" grep CapBnd "/proc/$worker/status"
}
# The monitor's bounding set is within the unit's CapabilityBoundingSet= (CAP_CHOWN, CAP_KILL,
# CAP_SETGID, CAP_SETUID, CAP_SETPCAP, CAP_SYS_RAWIO, CAP_SYS_RESOURCE), and CAP_CHOWN, used at
# start only, is gone from its effective set.
monitor_within_unit_caps() {
    local bnd eff
    bnd=$(sed -n 's/^CapBnd:\t//p' "/proc/$(main_pid)/status")
    eff=$(sed -n 's/^CapEff:\t//p' "/proc/$(main_pid)/status")
    echo "CapBnd $bnd CapEff $eff"
    [ $((0x$bnd & ~0x10201e1)) -eq 0 ] && [ $((0x$eff & 0x1)) -eq 0 ]
}
# ProtectKernelTunables=: in the monitor's mount namespace nothing under /sys or /proc/sys is
# writable (root needs no capability to write kernel.core_pattern or /sys/power/state), but for
# /sys/devices, a mount of its own (ReadWritePaths=), where the PCI devices' tsm/connect is. It is
# as writable as the container's /sys lets it be, every device attribute in it included.
monitor_cannot_tune_the_kernel() {
    local mounts id parent dev root point options rest
    mounts=$(while read -r id parent dev root point options rest; do
        case $point in /sys | /sys/* | /proc/sys | /proc/sys/*) echo "$point ${options%%,*}" ;; esac
    done <"/proc/$(main_pid)/mountinfo")
    echo "$mounts"
    echo "$mounts" | grep -q '^/sys/devices ' || { echo "/sys/devices is no mount of its own"; return 1; }
    ! echo "$mounts" | grep -v '^/sys/devices[/ ]' | grep ' rw$'
}
vmm() { "$in/vmm-example" --socket=/run/tsmd/io.tsmd.Guest "$@"; }
# The VMM is refused the device: by the policy, not for another reason.
vmm_denied() {
    local o
    o=$(vmm "$@" 2>&1)
    echo "$o"
    echo "$o" | grep -q "AttachDevice: io.tsmd.Guest.Denied"
}
# WATCHDOG=1 comes once a second, and may be dropped when systemd is slow to read it; within
# WatchdogSec= (30 s) one must come, or systemd would kill tsmd.
feeds_watchdog() {
    local t
    t=$(prop tsmd.service WatchdogTimestampMonotonic)
    echo "WatchdogTimestampMonotonic $t"
    [ "$t" -gt 0 ] && eventually 25 watchdog_fed_after "$t"
}
watchdog_fed_after() {
    local now
    now=$(prop tsmd.service WatchdogTimestampMonotonic)
    echo "WatchdogTimestampMonotonic $now"
    [ "$now" != "$1" ]
}
# The worker answers its first client once it told the monitor it is ready; the monitor's
# READY=1 reaches systemd a moment later.
active_running() {
    is "active running" sh -c 'echo $(systemctl show -P ActiveState tsmd.service) $(systemctl show -P SubState tsmd.service)'
}
# hold_context TOKEN-FILE: a VMM (pid in $holder) holding a context with a bound vDevice.
hold_context() {
    rm -f "$1"
    python3 "$in/vmm-reclaim.py" hold /run/tsmd/io.tsmd.Guest "$1" &
    holder=$!
    eventually 60 test -s "$1"
}
# hold_shared_contexts TOKEN-FILE: as hold_context, the context's iommufd adopted on a second
# connection, whose context has the vDevice (the first's token in TOKEN-FILE.open).
hold_shared_contexts() {
    rm -f "$1" "$1.open"
    python3 "$in/vmm-reclaim.py" hold-shared /run/tsmd/io.tsmd.Guest "$1" &
    holder=$!
    eventually 60 test -s "$1" -a -s "$1.open"
}
# fd_store_holds N: systemd's fd store holds N fds, once it read tsmd's notifications.
fd_store_holds() { eventually 60 is "$1" prop tsmd.service NFileDescriptorStore; }
# Restart=on-failure: active again, another monitor than $pid (RestartSec=1s).
restarted_after_crash() {
    eventually 60 active_with_another_monitor && return 0
    systemctl status --no-pager tsmd.service
    return 1
}
active_with_another_monitor() { [ "$(systemctl is-active tsmd.service)" = active ] && [ "$(main_pid)" != "$pid" ]; }
reload_fails() { ! systemctl reload tsmd.service; }
audit_has() { grep -q "\"event\":\"$1\"" /var/log/tsmd/audit.log || { tail -5 /var/log/tsmd/audit.log; return 1; }; }
wait_holder() { wait "$holder"; }
# The reclaim with token TOKEN gets no answer: tsmd dies on the way.
reclaim_dies() { ! python3 "$in/vmm-reclaim.py" reclaim /run/tsmd/io.tsmd.Guest "$1"; }
# journald reads tsmd's output when it gets to it, maybe after the command that made tsmd write
# it returned.
journal_has() { eventually 60 journal_mentions "$1"; }
journal_mentions() { journalctl -b -u tsmd.service -o cat --no-pager | grep -q "$1" || { echo "no '$1' in tsmd's journal"; return 1; }; }

# What sysusers.d and tmpfiles.d made at boot.
check "sysusers made the user tsmd" getent passwd tsmd
check "sysusers made the group tsm-admin" getent group tsm-admin
check "tmpfiles made /var/log/tsmd 2750 tsmd:tsm-admin" is "2750 tsmd tsm-admin" stat -c '%a %U %G' /var/log/tsmd
check "tmpfiles made /run/tsmd/contexts 700 tsmd:tsmd" is "700 tsmd tsmd" stat -c '%a %U %G' /run/tsmd/contexts

# Socket activation: both sockets listen, tsmd is not started yet.
check "tsmd.socket is active" is active systemctl is-active tsmd.socket
check "tsmd-admin.socket is active" is active systemctl is-active tsmd-admin.socket
check "the Guest socket is 0666 root:root" is "socket 666 root root" stat -c '%F %a %U %G' /run/tsmd/io.tsmd.Guest
check "the Admin socket is 0660 root:tsm-admin" is "socket 660 root tsm-admin" stat -c '%F %a %U %G' /run/tsmd/io.tsmd.Admin
check "tsmd.service waits for its sockets" is inactive systemctl is-active tsmd.service

# tsmctl over the admin socket starts tsmd; Type=notify: active once READY=1 came.
check "tsmctl status over the admin socket" tsmctl status
check "tsmd.service is active (running)" eventually 60 active_running
check "tsmd feeds the watchdog" feeds_watchdog
check "the worker runs as tsmd without capabilities" worker_is_unprivileged
check "the monitor runs within the unit's capabilities" monitor_within_unit_caps
check "the monitor can write no kernel tunable, only /sys/devices" monitor_cannot_tune_the_kernel

# A VMM's whole guest flow through the Guest socket, on the emulated platform.
check "vmm-example completes its guest flow" vmm 0000:01:00.0
check "the audit log is 0640 tsmd:tsm-admin" is "640 tsmd tsm-admin" stat -c '%a %U %G' /var/log/tsmd/audit.log
check "the audit log records the guest requests" audit_has guest-request
check "the audit log names the VMM's unit" grep -q '"unit":"tsmd-boot-check.service"' /var/log/tsmd/audit.log

# Reload (ExecReload=, SIGHUP): answered, tsmd stays.
pid=$(main_pid)
check "systemctl reload tsmd" systemctl reload tsmd.service
check "tsmd is active after the reload" is active systemctl is-active tsmd.service
check "the reload kept the monitor" is "$pid" main_pid
check "tsmctl status after the reload" tsmctl status
# A reload is done when systemctl returns, and one that fails says so (the old files stay).
echo "[Client:boot-test]
Devices=0000:02:00.0" >/etc/tsmd/policy.d/60-narrow.conf
check "systemctl reload of a narrower policy" systemctl reload tsmd.service
check "the narrower policy is in force once systemctl reload returns" vmm_denied 0000:01:00.0
echo "[Client:boot-test]
Bogus=1" >/etc/tsmd/policy.d/70-broken.conf
rm /etc/tsmd/policy.d/60-narrow.conf
check "systemctl reload of a broken policy fails" reload_fails
check "tsmd is active after the failed reload" is active systemctl is-active tsmd.service
check "the failed reload kept the monitor" is "$pid" main_pid
check "the policy before the failed reload stays in force" vmm_denied 0000:01:00.0
check "the policy before the failed reload still grants its device" vmm 0000:02:00.0
rm /etc/tsmd/policy.d/70-broken.conf
check "systemctl reload of the fixed policy" systemctl reload tsmd.service
check "the fixed policy is in force" vmm 0000:01:00.0

# Restart: a VMM's context stays in the fd store, bound, for it to reclaim; and the configuration
# in force (tsmd-last-good), which the restarted tsmd serves while the policy on disk is broken.
check "a VMM holds a context with a bound vDevice" hold_context "$out/token"
check "tsmd stored the context's iommufd and the configuration in force" fd_store_holds 2
echo "[Client:boot-test]
Bogus=1" >/etc/tsmd/policy.d/70-broken.conf
check "systemctl restart tsmd with a broken policy" systemctl restart tsmd.service
check "the VMM saw its connection end" wait_holder
check "tsmd is active after the restart" is active systemctl is-active tsmd.service
check "the restart changed the monitor" test "$pid" != "$(main_pid)"
check "the restarted tsmd serves the configuration from before the restart" journal_has "serving the configuration that last loaded, from before the restart"
check "the restarted tsmd kept the context" fd_store_holds 2
check "the VMM reclaims its context after the restart" python3 "$in/vmm-reclaim.py" reclaim /run/tsmd/io.tsmd.Guest "$(cat "$out/token")"
check "the worker runs as tsmd without capabilities after the restart" worker_is_unprivileged
rm /etc/tsmd/policy.d/70-broken.conf
check "systemctl reload of the fixed policy after the restart" systemctl reload tsmd.service

# A crash: systemd starts tsmd again with the fd store, and the context is reclaimed.
pid=$(main_pid)
check "a VMM holds a context before a crash" hold_context "$out/token2"
check "systemctl kill -s KILL tsmd" systemctl kill --signal=SIGKILL tsmd.service
check "the VMM saw its connection end at the crash" wait_holder
check "systemd restarts tsmd after the crash" restarted_after_crash
check "the VMM reclaims its context after the crash" python3 "$in/vmm-reclaim.py" reclaim /run/tsmd/io.tsmd.Guest "$(cat "$out/token2")"

# Two contexts of one iommufd (AdoptContext of it on a second connection): systemd keeps one copy
# of a file description, and drops a second FDSTORE=1 of it without an error; each context has an
# entry of its own all the same (the second a carrier), and both come back after a crash.
pid=$(main_pid)
check "a VMM holds two contexts of one iommufd" hold_shared_contexts "$out/token4"
check "tsmd stored both contexts and the configuration in force" fd_store_holds 3
check "systemctl kill -s KILL tsmd with two contexts of one iommufd" systemctl kill --signal=SIGKILL tsmd.service
check "the VMM saw its connections end at that crash" wait_holder
check "systemd restarts tsmd after that crash" restarted_after_crash
check "the VMM reclaims the adopted context" python3 "$in/vmm-reclaim.py" reclaim /run/tsmd/io.tsmd.Guest "$(cat "$out/token4")"
check "the VMM reclaims the opened context" python3 "$in/vmm-reclaim.py" reclaim-empty /run/tsmd/io.tsmd.Guest "$(cat "$out/token4.open")"
check "the fd store holds the configuration in force only" fd_store_holds 1

# A crash inside the fd store rename of a reclaim, killed by a preloaded library after the
# rename's second notification: systemd holds the context's carrier alone (the old name is out,
# the new one not in yet). The restarted tsmd takes the context from the carrier, and the VMM
# reclaims it with the token it has.
mkdir -p /run/systemd/system/tsmd.service.d
cp "$in/crash-preload.conf" /run/systemd/system/tsmd.service.d/
systemctl daemon-reload
check "a VMM holds a context before a crash inside a rename" hold_context "$out/token3"
check "systemctl restart tsmd with the crash preload" systemctl restart tsmd.service
check "the VMM saw its connection end at the restart" wait_holder
pid=$(main_pid)
echo 2 >/run/tsmd/crash-after
check "tsmd dies inside the reclaim's rename" reclaim_dies "$(cat "$out/token3")"
check "systemd restarts tsmd after the crash inside the rename" restarted_after_crash
check "the crash came where it was asked for" is "" cat /run/tsmd/crash-after
check "the fd store holds the context under one name, and the configuration" fd_store_holds 2
check "the VMM reclaims its context after the crash inside the rename" python3 "$in/vmm-reclaim.py" reclaim /run/tsmd/io.tsmd.Guest "$(cat "$out/token3")"
rm /run/systemd/system/tsmd.service.d/crash-preload.conf
systemctl daemon-reload

# Stop: a clean exit, the sockets stay for the next client.
check "systemctl stop tsmd" systemctl stop tsmd.service
check "tsmd.service stopped cleanly" is "inactive success 0" sh -c 'echo $(systemctl show -P ActiveState tsmd.service) $(systemctl show -P Result tsmd.service) $(systemctl show -P ExecMainStatus tsmd.service)'
check "the sockets stay after tsmd stops" is active systemctl is-active tsmd.socket
check "the journal has tsmd's lines" journal_has "running"
check "the journal has tsmd's stop" journal_has "Received SIGTERM"
check "the unit's one automatic restart since systemctl restart was the crash's" is 1 prop tsmd.service NRestarts
check "no tsmd unit failed" is "" sh -c 'systemctl list-units --failed --plain --no-legend "tsmd*"'

# The worker's directories gone (an admin clearing the log, a source install without
# systemd-tmpfiles): tsmd makes them again as tsmd.tmpfiles says, and starts.
rm -rf /var/log/tsmd /run/tsmd/contexts
check "tsmctl status with /var/log/tsmd and /run/tsmd/contexts gone" tsmctl status
check "/var/log/tsmd is 2750 tsmd:tsm-admin again" is "2750 tsmd tsm-admin" stat -c '%a %U %G' /var/log/tsmd
check "/run/tsmd/contexts is 700 tsmd:tsmd again" is "700 tsmd tsmd" stat -c '%a %U %G' /run/tsmd/contexts
check "vmm-example with the directories made again" vmm 0000:01:00.0
check "systemctl stop tsmd again" systemctl stop tsmd.service

# Stopping the sockets removes them (RemoveOnStop=).
check "stopping the sockets" systemctl stop tsmd.socket tsmd-admin.socket
check "the socket files are gone" test ! -e /run/tsmd/io.tsmd.Guest -a ! -e /run/tsmd/io.tsmd.Admin
echo done >>"$results"
