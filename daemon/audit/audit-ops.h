/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The file-system seam of the audit log: every system call that can lose or refuse an audit
 * record (create, write, sync, preallocate, truncate, rename, free-space check) goes through
 * one table, so a test can fail the n-th fdatasync with EIO, make fallocate report ENOSPC or
 * put a slow disk under the sync thread without touching the real file system. Queries read
 * through it too, so a test can count what they read or hold one mid-scan.
 * Runs in: worker (audit writer and its sync thread), tests.
 */
#pragma once

#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>

/* All entries return a negative errno on failure (not -1 + errno), so a replacement is a
 * one-liner: `static int fail(int fd) { return -EIO; }`. They are called from the sync thread
 * and the query threads as well as from the loop thread, so replacements must be thread-safe. */
typedef struct AuditFileOps {
        int (*openat)(int dirfd, const char *path, int flags, mode_t mode);
        ssize_t (*pwritev)(int fd, const struct iovec *iov, int iovcnt, off_t offset);
        int (*fdatasync)(int fd);
        int (*fsync)(int fd);
        int (*fallocate)(int fd, int mode, off_t offset, off_t len);
        int (*ftruncate)(int fd, off_t length);
        int (*renameat)(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
        int (*fstatvfs)(int fd, struct statvfs *ret);
        ssize_t (*pread)(int fd, void *buf, size_t n, off_t offset);
} AuditFileOps;

/* The real system calls. */
extern const AuditFileOps audit_file_ops_default;
