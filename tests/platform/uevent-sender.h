/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Sends udev-format ("libudev" header) device events to the udev netlink multicast group, the
 * way systemd-udevd rebroadcasts kernel uevents, so that sd_device_monitor listeners see a
 * hotplug event for a fixture device. Only for tests, and only inside a private network
 * namespace: netlink multicast is per network namespace, so the fake events cannot reach the
 * host's real listeners from there.
 *
 * Runs in: tests only (needs CAP_NET_ADMIN to send to a multicast group).
 */
#pragma once

#include <stdint.h>

/*
 * action: add/remove/change/move/bind/unbind; devpath: "/devices/..." (no /sys prefix);
 * extra: NULL-terminated "KEY=VALUE" strings or NULL; seqnum must be non-zero (sd-device
 * rejects events without one). Returns bytes sent or a negative errno.
 */
int uevent_send(const char *action, const char *devpath, const char *subsystem,
                char *const *extra, uint64_t seqnum);

/* 1 if this process is in a different network namespace than PID 1, 0 if the same, <0 on
 * error. When PID 1's namespace cannot be inspected, a namespace with no interface but "lo"
 * counts as private (what "unshare -n" creates). The CLI refuses the host namespace. */
int uevent_in_private_netns(void);

/* systemd's string_hash32(): MurmurHash2 with seed 0, as used by the monitor's BPF filter. */
uint32_t uevent_murmur_hash2(const void *key, size_t len, uint32_t seed);
