/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Whether closing an fd may wait on a FUSE server, or another party. close() of a file of a FUSE
 * file system sends FLUSH and waits for the server's answer, uninterruptibly; a client that serves
 * one itself holds whoever closes such an fd for as long as it likes (fd-closer.h). A socket's
 * close may linger on its peer (SO_LINGER) or release files queued on it; a file of a network
 * file system is written back to its server first; a pipe's or an anonymous inode's takes a lock
 * a process may hold in a page fault a FUSE server never answers. Only these need the closer's
 * thread: every socket, pipe and anonymous inode, and a file of a mount whose type is fuse,
 * fuseblk, fuse.* or a network one, told without asking any file system, from the attributes
 * the kernel has cached (statx AT_STATX_DONT_SYNC: its device) and /proc/self/mountinfo (which
 * device numbers are such mounts). What cannot be told so, a file whose device no mount of ours
 * has (a mount namespace of the client's own) or one statx cannot read, counts as FUSE.
 * Runs in: monitor and worker.
 */
#pragma once

#include <stdbool.h>

/* Reads the mount table, keeping /proc/self/mountinfo open to learn of changes to it, and opens
 * an epoll instance to learn which device nodes poll. Without them (-errno), every file whose
 * kind is not told otherwise counts as FUSE, every device node as one that polls. */
int fd_fuse_start(void);
void fd_fuse_stop(void);

/* Whether a close() of fd may wait on a FUSE server, or on any other party: true for every
 * socket (an AF_UNIX one's queue may hold files passed and never received, released with it; any
 * other's close may linger, SO_LINGER, on a peer that never reads), a pipe or FIFO and an
 * anonymous inode (their release takes a lock another process may hold while it faults in a page
 * of a FUSE file it mapped: a write() to the pipe, an epoll_wait() on an instance that watches
 * the file), and a device node that polls (a tty, /dev/ptmx: an epoll instance may watch it as
 * it may an anonymous inode, and a serial tty's close waits up to its closing_wait for output
 * flow control holds); false for an O_PATH fd, a character or block device that does not poll
 * (its close goes to the driver, wherever the node is: /dev/iommu, VFIO devices), a memfd or
 * tmpfs file, and a file of a mount the table has whose type is neither FUSE nor one that writes
 * back to a server at close (NFS, CIFS, 9p, ...: fd-fuse.c); true for everything else.
 * Thread-safe. */
bool fd_may_reach_fuse(int fd);

/* If fd is a socket of a family other than AF_UNIX, makes its close abortive (SO_LINGER {1, 0}:
 * TCP resets the connection rather than wait for the peer to take what is unsent). For a peer's
 * socket about to be closed on the closer's thread: tsmd takes no sockets but its clients'
 * connections from anybody, so the data of one passed to it is nobody's business, and a close
 * that lingered would hold the thread and every fd queued behind it. Errors ignored. */
void fd_socket_drop_linger(int fd);

/* Whether fd is of the kinds an iommufd or its emulated stand-in can be, a character device or a
 * memfd (seals are had by shmem files only), whose close goes to the driver or to shmem, never
 * to a file system: what the worker passes the monitor to adopt, and the monitor takes no other.
 * Asks no file system. Returns 1 if so, 0 if not, -errno if fd cannot be told. */
int fd_is_device_or_memfd(int fd);
