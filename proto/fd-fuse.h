/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Whether closing an fd may wait on a FUSE server. close() of a file of a FUSE file system sends
 * FLUSH and waits for the server's answer, uninterruptibly; a client that serves one itself
 * holds whoever closes such an fd for as long as it likes (fd-closer.h). Nothing else a local
 * user passes does that, so only these need the closer's thread: a file of a mount whose type is
 * fuse, fuseblk or fuse.*, told without asking any file system, from the attributes the kernel
 * has cached (statx AT_STATX_DONT_SYNC: its device) and /proc/self/mountinfo (which device
 * numbers are FUSE mounts). What cannot be told so, a file whose device no mount of ours has
 * (a mount namespace of the client's own) or one statx cannot read, counts as FUSE.
 * Runs in: monitor and worker.
 */
#pragma once

#include <stdbool.h>

/* Reads the mount table, keeping /proc/self/mountinfo open to learn of changes to it. Without
 * it (-errno), every file whose kind is not told otherwise counts as FUSE. */
int fd_fuse_start(void);
void fd_fuse_stop(void);

/* Whether a close() of fd may wait on a FUSE server: true for an AF_UNIX socket (the files
 * queued on it, passed and never received, are released with it); false for an O_PATH fd, any
 * other socket, a pipe or FIFO, a character or block device (their close goes to the driver, wherever the node
 * is), an anonymous inode, a memfd or tmpfs file, and a file of a mount the table has whose type
 * is no FUSE; true for everything else. Thread-safe. */
bool fd_may_reach_fuse(int fd);

/* Whether fd is of the kinds an iommufd or its emulated stand-in can be, a character device or a
 * memfd (seals are had by shmem files only), whose close goes to the driver or to shmem, never
 * to a file system: what the worker passes the monitor to adopt, and the monitor takes no other.
 * Asks no file system. Returns 1 if so, 0 if not, -errno if fd cannot be told. */
int fd_is_device_or_memfd(int fd);
