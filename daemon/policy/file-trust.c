/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who may have written a file root acts on (file-trust.h). Runs in: monitor and worker. */

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>

#include "file-acl.h"
#include "file-settle.h"
#include "file-trust.h"
#include "ini.h"
#include "log.h"
#include "path-trust.h"

_printf_(2, 3) static int reason_set(char **ret_reason, const char *format, ...) {
        va_list ap;
        int k;

        va_start(ap, format);
        k = vasprintf(ret_reason, format, ap);
        va_end(ap);
        if (k < 0)
                *ret_reason = NULL;
        return 0;
}

int file_trust_check_writers(int fd, const struct stat *st, const PolicyFileTrust *trust, char **ret_reason) {
        _cleanup_(file_acl_freep) FileAcl *acl = NULL;
        bool group_writes;
        int r;

        assert(st);
        assert(trust);
        assert(ret_reason);

        if (st->st_uid != 0 && st->st_uid != trust->owner)
                return reason_set(ret_reason,
                                  "owned by uid %u, which is neither root nor the daemon's user; refusing to use it",
                                  (unsigned) st->st_uid), -EPERM;

        r = file_acl_read(fd, &acl);
        if (r == -EPROTONOSUPPORT)
                return reason_set(ret_reason, "has a POSIX ACL of an unknown version; refusing to use it"), -EPERM;
        if (r == -EBADMSG)
                return reason_set(ret_reason, "has a malformed POSIX ACL; refusing to use it"), -EPERM;
        if (r < 0)
                return reason_set(ret_reason, "cannot read its POSIX ACL: %s", strerror(-r)), r;

        if ((st->st_mode & S_IWOTH) || (acl && (acl->other & FILE_ACL_WRITE)))
                return reason_set(ret_reason, "writable by every user; refusing to use it"), -EPERM;

        group_writes = acl ? file_acl_masked(acl, acl->group_obj) & FILE_ACL_WRITE : st->st_mode & S_IWGRP;
        if (group_writes && trust->worker_gid != GID_INVALID && st->st_gid == trust->worker_gid)
                return reason_set(ret_reason, "writable by group %u, the unprivileged worker's; refusing to use it",
                                  (unsigned) st->st_gid), -EPERM;

        /* A group an ACL names is judged as the owning group is (chmod g+w and setfacl g:G:rw
         * give G the same), a user as any user other than the owner. */
        for (size_t i = 0; acl && i < acl->n_named; i++) {
                const FileAclEntry *e = &acl->named[i];

                if (!(file_acl_masked(acl, e->perm) & FILE_ACL_WRITE))
                        continue;
                if (e->tag == FILE_ACL_USER) {
                        if (e->id == 0 || e->id == trust->owner)
                                continue;
                        return reason_set(ret_reason, "writable by uid %u through an ACL; refusing to use it",
                                          (unsigned) e->id), -EPERM;
                }
                if (trust->worker_gid != GID_INVALID && e->id == trust->worker_gid)
                        return reason_set(ret_reason,
                                          "writable by gid %u, the unprivileged worker's, through an ACL; "
                                          "refusing to use it",
                                          (unsigned) e->id), -EPERM;
        }
        return 0;
}

/* One open and read of path: its fd in *ret_fd, and the fstat()s of it before and after the read
 * in *ret_before and *ret_after. */
static int read_once(const char *path, const PolicyFileTrust *trust, size_t max_size, int *ret_fd, char **ret_text,
                     struct stat *ret_before, struct stat *ret_after, char **ret_error) {
        _cleanup_free_ char *reason = NULL;
        _cleanup_close_ int fd = -EBADF;
        int r;

        /* SECURITY: a file is only as safe as the directories that hold its name. */
        r = path_trust_open(AT_FDCWD, NULL, path, trust->owner, 0, &fd, &reason);
        if (r < 0) {
                if (reason && asprintf(ret_error, "%s: %s%s", path, reason, r == -EPERM ? "; refusing to use it" : "") < 0)
                        *ret_error = NULL;
                return r;
        }
        if (fstat(fd, ret_before) < 0)
                return negative_errno();
        r = file_trust_check_writers(fd, ret_before, trust, &reason);
        if (r < 0) {
                if (reason && asprintf(ret_error, "%s: %s", path, reason) < 0)
                        *ret_error = NULL;
                return r;
        }
        /* Which refuses what is not a regular file (-EISDIR, -EBADFD), opened without blocking. */
        r = ini_read_fd(fd, max_size, ret_text);
        if (r < 0)
                return r;
        if (fstat(fd, ret_after) < 0)
                return negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int file_trust_read(const char *path, const PolicyFileTrust *trust, size_t max_size, char **ret_text,
                    struct stat *ret_st, char **ret_error) {
        FileSettle settle = {};
        int r;

        assert(path);
        assert(trust);
        assert(ret_text);
        assert(ret_error);

        *ret_error = NULL;
        for (;;) {
                _cleanup_free_ char *text = NULL;
                struct stat before, after;

                _cleanup_close_ int fd = -EBADF;

                r = read_once(path, trust, max_size, &fd, &text, &before, &after, ret_error);
                if (r < 0)
                        return r;
                r = trust->wait_settled ? file_settle_read(&settle, fd, &before, &after) : 1;
                if (r == -EBUSY) {
                        if (asprintf(ret_error, "%s: %s", path, FILE_SETTLE_ERROR) < 0)
                                *ret_error = NULL;
                        return r;
                }
                if (r > 0) {
                        if (ret_st)
                                *ret_st = before;
                        *ret_text = TAKE_PTR(text);
                        return 0;
                }
        }
}
