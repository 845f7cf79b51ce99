/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Discovery: fills an Inventory from sysfs with sd-device (listing the "tsm" class and the "pci"
 * bus itself, opening each entry with sd-device) and keeps it current from udev's hotplug events (sd_device_monitor on the udev
 * netlink group, filtered on tsm and pci), driven from a libevent loop. sd-event is only used
 * as the monitor's dispatcher; it is never run as a loop (see SYSFS.md).
 *
 * The kernel announces neither tsm/connect changes nor the tsm/ directories that appear when a
 * TSM registers (SYSFS.md), so every tsm add/change/remove triggers a re-read of all PCI
 * devices, and code that writes tsm/connect must call discovery_refresh_device() afterwards.
 *
 * Runs in: monitor and worker (the worker's platform view, tsm-platform.h). Reads sysfs only;
 * never writes it.
 */
#pragma once

#include "inventory.h"

struct event_base;

typedef struct Discovery Discovery;

/*
 * Make "root" appear as /sys for this process, so sd-device (which only accepts syspaths
 * under /sys) reads a fixture tree. With root NULL or "/sys" this does nothing. Otherwise:
 * unshare(CLONE_NEWNS), make "/" private recursively, bind-mount root over /sys and set
 * SYSTEMD_DEVICE_VERIFY_SYSFS=0 (the tree is not sysfs). Needs CAP_SYS_ADMIN and must run
 * before any thread is created (unshare of the mount namespace requires an unshared fs).
 * -EPERM without privilege, -ENOTDIR/-ENOENT if root is not a directory.
 */
int discovery_enter_sysfs_root(const char *root);

/*
 * base may be NULL for scan-only use (no monitor). The inventory is borrowed and must outlive
 * the Discovery object.
 */
int discovery_new(Inventory *inv, struct event_base *base, Discovery **ret);
Discovery *discovery_free(Discovery *d);

/*
 * Full enumeration of /sys/class/tsm and /sys/bus/pci/devices; reconciles the inventory (adds,
 * changes, and removes what vanished). A device listed that cannot be opened or read this time
 * (other than ENOENT/ENODEV, which mean gone) is kept as it was. When a list cannot be read
 * (opendir() or readdir() failing: EMFILE, ENOMEM, ...) the error is returned and nothing is
 * removed.
 */
int discovery_scan(Discovery *d);

/*
 * Start following changes: subscribe to udev events for tsm and pci, attached to the libevent
 * base, and rescan periodically. Events that arrive are applied to the inventory from the
 * event loop. A full rescan also runs DISCOVERY_STORM_QUIET_USEC after a storm of uevents
 * (more than one wakeup takes): events it lost to a full receive buffer (sd-device drops them
 * without telling) show then; and every DISCOVERY_RESYNC_USEC, for connects and disconnects by
 * other tools (which send no uevent). A rescan blocks the loop for ~0.2 ms per PCI function
 * (BENCHMARKS.md), ~200 ms on a 1,000-device host: hence the long period. Where uevents cannot
 * be received (no netlink in a container, RestrictAddressFamilies=, ...), or will not come (no
 * udevd running to rebroadcast them, which sd-device listens for), this logs so once and
 * follows changes by rescans alone, every DISCOVERY_RESYNC_NO_UEVENTS_USEC: not an error.
 * Changes made after a scan and before the monitor listened sent their uevents to nobody: when a
 * scan came first, it rescans once listening (start it first to save that scan).
 * -EINVAL without an event base, -EBUSY if already started, -ENOMEM/-EIO if the rescan timer
 * cannot be set.
 */
int discovery_start_monitor(Discovery *d);
#define DISCOVERY_RESYNC_USEC (600ULL * 1000 * 1000)
/* Without uevents even hotplug waits for a rescan: 1 min, ~0.3% of the loop at 1,000 devices. */
#define DISCOVERY_RESYNC_NO_UEVENTS_USEC (60ULL * 1000 * 1000)
#define DISCOVERY_STORM_QUIET_USEC (1000ULL * 1000)
/* Another interval than the default (tests). */
void discovery_set_resync_interval(Discovery *d, uint64_t usec);
/* The period of the full rescan in effect; 0 before discovery_start_monitor(). */
uint64_t discovery_get_resync_interval(const Discovery *d);

/* Re-read one PCI device (after tsmd wrote its tsm/connect, which the kernel does not
 * announce). Removes it from the inventory if it vanished. When it is, or was, a DSM, also
 * re-reads the functions it speaks for and the other functions of its slot (SYSFS.md), which
 * hear nothing of its change either. -EINVAL on a malformed address. */
int discovery_refresh_device(Discovery *d, const char *address);

/* Number of udev events received and applied so far (for tests and metrics). */
uint64_t discovery_n_events(const Discovery *d);
