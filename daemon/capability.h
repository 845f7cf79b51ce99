/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The capabilities tsmd keeps. The monitor runs as root because /dev/iommu and the PCI TSM
 * sysfs files belong to root, and needs on top of that ownership: CAP_SYS_RAWIO (the kernel
 * requires it of the debug-write scope), CAP_SYS_RESOURCE (iommufd's RLIMIT_MEMLOCK
 * accounting mode), and what starting and stopping a worker as another user takes
 * (CAP_SETUID, CAP_SETGID, CAP_SETPCAP, CAP_KILL). Everything else is dropped at start, from
 * the bounding set too, and the result is verified. The worker keeps nothing at all.
 * Runs in: monitor and worker.
 */
#pragma once

#include <sys/capability.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(cap_t, cap_free, NULL);
/* cap_to_name()'s string, which cap_free() frees. */
static inline void cap_name_freep(char **p) {
        if (*p)
                cap_free(*p);
}

/* Whether c is of the minimum the monitor keeps (each is logged at start if it is missing). */
bool capability_is_minimum(cap_value_t c);

/* The last capability a capability set can hold (64 bits). */
#define CAPABILITY_LAST_POSSIBLE 63

/* The last capability the running kernel knows (/proc/sys/kernel/cap_last_cap, else probed with
 * PR_CAPBSET_READ), as systemd's cap_last_cap() finds it: the headers' CAP_LAST_CAP is the
 * build's, and a newer kernel knows more, which a bounding set must lose too. If neither
 * tells (a seccomp filter refusing the probe), CAPABILITY_LAST_POSSIBLE: a loop up to it meets
 * capabilities the kernel does not know, which no set holds and no drop takes (EINVAL). */
cap_value_t capability_last_cap(void);

/* Drops every capability not in the minimum from the effective, permitted, inheritable,
 * ambient and bounding sets, then re-reads and checks. -EPERM if more than the minimum
 * remains afterwards (unless allow_more), which means something outside tsmd holds it. */
int capability_drop_to_minimum(bool allow_more);

/* The worker's check after its start: every set empty (bounding and ambient too) and
 * no-new-privileges on; -EPERM (and a log line per finding) otherwise. */
int capability_verify_none(void);

/* Logs the effective set ("Effective capabilities: cap_sys_rawio,cap_sys_resource"). */
void capability_log_effective(void);
