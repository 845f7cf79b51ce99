/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Starting the worker: fork() + execv() for a fresh address space, its end of the channel on
 * fd 3 (TSM_PRIV_CHANNEL_FD) and nothing else inherited, running as its own user with every
 * capability set empty (the bounding set too) and no-new-privileges. The worker verifies all
 * of that again itself before it touches a socket. Runs in: monitor.
 */
#pragma once

#include <sys/types.h>

#include "macro.h"

/* The worker's user and primary group, by name. -ESRCH if there is no such user. */
int worker_user_lookup(const char *name, uid_t *ret_uid, gid_t *ret_gid);

/* Makes dir (if missing, mode 0750) the worker's: owned by uid (uid:gid if it was not yet; the
 * group of a directory that was the worker's already stays), with owner rwx. SECURITY: only a
 * directory made here, or an empty one, is taken over: one that is somebody else's and holds
 * anything (a shared /var/log named by mistake) is refused with -ENOTEMPTY (-EACCES if root may
 * not list it), and nothing is changed. Nor is a mode changed without CAP_CHOWN in the
 * effective set to give the directory afterwards (-EPERM: the monitor after its start).
 * A private_dir (the context state, whose file names are reclaim tokens) is made
 * (if missing) 0700 and, if it is not the worker's yet, made exactly 0700 before it is given; one that is
 * the worker's already is left to the worker (context_store_prepare()), as changing its mode
 * would take CAP_FOWNER. Needs CAP_CHOWN only for a directory that is not the worker's yet,
 * and nothing for one tsmd.tmpfiles made: no CAP_DAC_OVERRIDE, which tsmd.service does not
 * give. Never follows symlinks (-ENOTDIR). */
int worker_dir_prepare(const char *dir, bool private_dir, uid_t uid, gid_t gid);

/* Opens the worker's binary (O_PATH), refusing one that anybody but root could have written:
 * root runs it as the worker's user. The worker is later executed from this fd, so neither a
 * rename in between nor directories the worker's user cannot search get in the way. */
int worker_binary_open(const char *path, int *ret_fd);

/* Where a worker finds the audit directory's fd, by which the monitor holds its lock for every
 * worker (--audit-directory-fd=): TSM_PRIV_CHANNEL_FD + 2. */
#define WORKER_AUDIT_DIR_FD 5

/* Starts the binary (from worker_binary_open()) with argv, channel as its fd 3 and audit_dir (if
 * not negative) as its WORKER_AUDIT_DIR_FD, as uid:gid. */
int worker_spawn(int binary, char *const argv[], int channel, int audit_dir, uid_t uid, gid_t gid, pid_t *ret_pid);
