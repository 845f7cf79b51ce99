/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The default audit file operations: thin -errno wrappers around libc. Runs in: worker. */

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "audit-ops.h"
#include "macro.h"

static int default_openat(int dirfd, const char *path, int flags, mode_t mode) {
        return RET_NERRNO(openat(dirfd, path, flags, mode));
}

static ssize_t default_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
        return RET_NERRNO(pwritev(fd, iov, iovcnt, offset));
}

static int default_fdatasync(int fd) {
        return RET_NERRNO(fdatasync(fd));
}

static int default_fsync(int fd) {
        return RET_NERRNO(fsync(fd));
}

static int default_fallocate(int fd, int mode, off_t offset, off_t len) {
        return RET_NERRNO(fallocate(fd, mode, offset, len));
}

static int default_ftruncate(int fd, off_t length) {
        return RET_NERRNO(ftruncate(fd, length));
}

static int default_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
        return RET_NERRNO(renameat(olddirfd, oldpath, newdirfd, newpath));
}

static int default_fstatvfs(int fd, struct statvfs *ret) {
        return RET_NERRNO(fstatvfs(fd, ret));
}

static ssize_t default_pread(int fd, void *buf, size_t n, off_t offset) {
        return RET_NERRNO(pread(fd, buf, n, offset));
}

const AuditFileOps audit_file_ops_default = {
        .openat = default_openat,
        .pwritev = default_pwritev,
        .fdatasync = default_fdatasync,
        .fsync = default_fsync,
        .fallocate = default_fallocate,
        .ftruncate = default_ftruncate,
        .renameat = default_renameat,
        .fstatvfs = default_fstatvfs,
        .pread = default_pread,
};
