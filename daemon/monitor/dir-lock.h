/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One tsmd per directory: the monitor holds an exclusive flock(2) on the worker's context state
 * directory for its life. A second tsmd named the same directory (by mistake, or a quick start
 * beside a running service) would otherwise have its worker remove the first one's context state
 * at start (guest_restore_done()'s sweep). Held by the monitor, not the worker: the lock is gone
 * when the monitor has exited, as a restart by hand or by systemd waits for. So is the audit
 * directory's, which each worker takes through the monitor's fd (audit-files.h): a worker still
 * exiting (the monitor's death is killing it, or the kernel holds it) holds that one longer.
 * Runs in: monitor.
 */
#pragma once

#include <sys/types.h>

/* Locks the directory dir, opened as the user uid (the worker, its owner: root may not read it
 * without CAP_DAC_OVERRIDE, which tsmd.service does not give; setting the file system uid takes
 * CAP_SETUID, which the monitor keeps). The lock is held as long as *ret_fd is open. -EBUSY if
 * another process holds it. Never follows a symlink in the last component (-ELOOP, -ENOTDIR). */
int dir_lock_as(const char *dir, uid_t uid, int *ret_fd);
