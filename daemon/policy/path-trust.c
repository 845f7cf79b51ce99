/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The lookup of path-trust.h: like the kernel's, one name at a time, but from O_PATH fds of
 * directories already checked, with symlinks read and followed here (readlinkat() on the link's
 * own fd), so nothing is looked up twice and no directory is checked by name.
 *
 * Runs in: monitor and worker, wherever the policy is loaded.
 */

#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "file-acl.h"
#include "macro.h"
#include "path-trust.h"

#define SYMLINKS_MAX 40 /* the kernel's limit for one lookup */

/* Where the lookup stands: a checked directory, as an O_PATH fd, with its path for messages. */
typedef struct Walk {
        uid_t owner;
        int fd;
        char *path;          /* "" for "/"; relative if the caller's directory was named so */
        bool sticky_guarded; /* others may write here, but the sticky bit keeps them off what
                              * they do not own */
        char *reason;        /* why the lookup failed, if there is more to say than an errno */
} Walk;

static void walk_done(Walk *w) {
        w->fd = safe_close(w->fd);
        w->path = mfree(w->path);
        w->reason = mfree(w->reason);
}

static const char *display(const char *path) {
        return isempty(path) ? "/" : path;
}

_printf_(3, 4) static int walk_fail(Walk *w, int r, const char *format, ...) {
        va_list ap;

        free(w->reason);
        va_start(ap, format);
        if (vasprintf(&w->reason, format, ap) < 0)
                w->reason = NULL;
        va_end(ap);
        return r;
}

/* The directory's access ACL, also when we may search it but not read it (0711): an O_PATH fd
 * takes no fgetxattr(), but its /proc link takes getxattr(). */
static int read_dir_acl(int fd, FileAcl **ret) {
        _cleanup_close_ int rfd = -EBADF;
        char proc[sizeof("/proc/self/fd/") + 12];

        rfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rfd >= 0)
                return file_acl_read(rfd, ret);
        if (errno != EACCES)
                return negative_errno();
        (void) snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        return file_acl_read_path(proc, ret);
}

/*
 * SECURITY: may anybody but root and the trusted owner add, remove or rename entries of this
 * directory? Returns 0 if not; 1 if others may but the sticky bit confines them to their own
 * entries (only if sticky_ok); -EPERM if others may; another -errno if we cannot tell. The same
 * writers count as for a policy file (policy-parse.c), and more: here the owning group is
 * refused whoever it is, as OpenSSH refuses it, because nobody chose to delegate a directory
 * above the policy, nor the target directory (a drop-in directory), where a group could only
 * add symlinks to root's files, take files away or plant entries that fail every load.
 */
static int check_dir(Walk *w, int fd, const struct stat *st, const char *path, bool sticky_ok) {
        _cleanup_(file_acl_freep) FileAcl *acl = NULL;
        char what[64] = "";
        int r;

        if (st->st_uid != 0 && st->st_uid != w->owner)
                return walk_fail(w, -EPERM,
                                 "directory %s is owned by uid %u, which is neither root nor the daemon's user",
                                 display(path), (unsigned) st->st_uid);

        r = read_dir_acl(fd, &acl);
        if (r == -EPROTONOSUPPORT)
                return walk_fail(w, -EPERM, "directory %s has a POSIX ACL of an unknown version", display(path));
        if (r == -EBADMSG)
                return walk_fail(w, -EPERM, "directory %s has a malformed POSIX ACL", display(path));
        if (r < 0) {
                errno = -r;
                return walk_fail(w, r, "cannot read the POSIX ACL of directory %s: %m", display(path));
        }

        if ((st->st_mode & S_IWOTH) || (acl && (acl->other & FILE_ACL_WRITE)))
                (void) snprintf(what, sizeof(what), "writable by every user");
        else if (acl ? file_acl_masked(acl, acl->group_obj) & FILE_ACL_WRITE : st->st_mode & S_IWGRP)
                (void) snprintf(what, sizeof(what), "writable by group %u", (unsigned) st->st_gid);
        else
                for (size_t i = 0; acl && i < acl->n_named; i++) {
                        const FileAclEntry *e = &acl->named[i];

                        if (!(file_acl_masked(acl, e->perm) & FILE_ACL_WRITE))
                                continue;
                        if (e->tag == FILE_ACL_USER && (e->id == 0 || e->id == w->owner))
                                continue;
                        (void) snprintf(what, sizeof(what), "writable by %s %u through an ACL",
                                        e->tag == FILE_ACL_USER ? "uid" : "gid", (unsigned) e->id);
                        break;
                }
        if (!what[0])
                return 0;
        if (sticky_ok && (st->st_mode & S_ISVTX))
                return 1;
        return walk_fail(w, -EPERM, "directory %s is %s", display(path), what);
}

/* Moves the walk to fd (O_PATH, a directory) after checking it; takes fd. */
static int walk_enter(Walk *w, int fd, char *path) {
        struct stat st;
        int r;

        if (fstat(fd, &st) < 0) {
                r = negative_errno();
                safe_close(fd);
                free(path);
                return r;
        }
        r = check_dir(w, fd, &st, path, /* sticky_ok= */ true);
        if (r < 0) {
                safe_close(fd);
                free(path);
                return r;
        }
        safe_close(w->fd);
        free(w->path);
        w->fd = fd;
        w->path = path;
        w->sticky_guarded = r > 0;
        return 0;
}

static int walk_to_root(Walk *w) {
        char *path;
        int fd;

        fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        path = strdup("");
        if (!path) {
                safe_close(fd);
                return -ENOMEM;
        }
        return walk_enter(w, fd, path);
}

static int walk_to_parent(Walk *w) {
        const char *slash;
        char *path;
        int fd;

        if (streq(w->path, ""))
                return 0; /* "/.." is "/" */

        fd = openat(w->fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        /* Every symlink was resolved, so the name's last component is the directory we leave,
         * unless the caller's relative name already ended in "..". */
        slash = strrchr(w->path, '/');
        if (slash && !streq(slash + 1, ".."))
                path = strndup(w->path, (size_t) (slash - w->path));
        else if (asprintf(&path, "%s/..", w->path) < 0)
                path = NULL;
        if (!path) {
                safe_close(fd);
                return -ENOMEM;
        }
        return walk_enter(w, fd, path);
}

/* Reopens the target, the entry name of the walk's directory whose O_PATH fstat() is st. */
static int open_target(Walk *w, const char *name, const struct stat *st, PathTrustFlags flags, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st2;

        /* SECURITY: only what opening does nothing to. Opening a device can act (a watchdog
         * reboots the host at a close without its magic character), as root; and whoever may
         * add a symlink to a drop-in directory chooses what it names. */
        if (flags & PATH_TRUST_DIRECTORY) {
                if (!S_ISDIR(st->st_mode))
                        return -ENOTDIR;
        } else if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode) &&
                   !(S_ISCHR(st->st_mode) && st->st_rdev == makedev(1, 3)))
                return -EBADFD;

        fd = openat(w->fd, name,
                    O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW |
                            (flags & PATH_TRUST_DIRECTORY ? O_DIRECTORY : 0));
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st2) < 0)
                return negative_errno();
        /* Swapped since the lookup (by root or the owner, the only ones who can): not what was
         * looked at, so not opened; the next load looks again. */
        if (st2.st_dev != st->st_dev || st2.st_ino != st->st_ino)
                return -ESTALE;
        /* SECURITY: a directory whose entries are the files (a drop-in directory): whoever may
         * add, remove or rename them chooses the policy, sticky bit or not. */
        if (flags & PATH_TRUST_DIRECTORY) {
                _cleanup_free_ char *path = NULL;
                int r;

                if (streq(name, "."))
                        path = strdup(w->path);
                else if (asprintf(&path, "%s/%s", w->path, name) < 0)
                        path = NULL;
                if (!path)
                        return -ENOMEM;
                r = check_dir(w, fd, &st2, path, /* sticky_ok= */ false);
                if (r < 0)
                        return r;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int open_current(Walk *w, PathTrustFlags flags, int *ret_fd) {
        struct stat st;

        if (fstat(w->fd, &st) < 0)
                return negative_errno();
        return open_target(w, ".", &st, flags, ret_fd);
}

static int walk(Walk *w, char *todo, PathTrustFlags flags, int *ret_fd) {
        _cleanup_free_ char *buf = todo;
        unsigned n_symlinks = 0;
        char *p = buf;
        int r;

        for (;;) {
                _cleanup_close_ int fd = -EBADF;
                _cleanup_free_ char *name = NULL;
                struct stat st;
                size_t len;
                bool last;

                p += strspn(p, "/");
                len = strcspn(p, "/");
                if (len == 0) /* "/" or "": the directory we are in */
                        return open_current(w, flags, ret_fd);
                name = strndup(p, len);
                if (!name)
                        return -ENOMEM;
                p += len;
                last = p[strspn(p, "/")] == 0;

                if (streq(name, ".") || streq(name, "..")) {
                        if (streq(name, "..")) {
                                r = walk_to_parent(w);
                                if (r < 0)
                                        return r;
                        }
                        if (last)
                                return open_current(w, flags, ret_fd);
                        continue;
                }

                fd = openat(w->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return negative_errno();
                if (fstat(fd, &st) < 0)
                        return negative_errno();

                /* SECURITY: in /tmp, whoever made an entry can replace it. */
                if (w->sticky_guarded && st.st_uid != 0 && st.st_uid != w->owner)
                        return walk_fail(w, -EPERM,
                                         "%s/%s is owned by uid %u in directory %s, which others may write to",
                                         w->path, name, (unsigned) st.st_uid, display(w->path));

                if (S_ISLNK(st.st_mode)) {
                        char target[PATH_MAX];
                        ssize_t n;
                        char *next;

                        if (++n_symlinks > SYMLINKS_MAX)
                                return -ELOOP;
                        n = readlinkat(fd, "", target, sizeof(target));
                        if (n < 0)
                                return negative_errno();
                        if ((size_t) n >= sizeof(target))
                                return -ENAMETOOLONG;
                        if (n == 0)
                                return -ENOENT;
                        target[n] = 0;

                        /* The target, then what was left: resolved from the link's directory. */
                        if (asprintf(&next, "%s/%s", target, p) < 0)
                                return -ENOMEM;
                        free(buf);
                        buf = p = next;
                        if (target[0] == '/') {
                                r = walk_to_root(w);
                                if (r < 0)
                                        return r;
                        }
                        continue;
                }

                if (last)
                        return open_target(w, name, &st, flags, ret_fd);

                if (!S_ISDIR(st.st_mode))
                        return -ENOTDIR;
                {
                        char *path;

                        if (asprintf(&path, "%s/%s", w->path, name) < 0)
                                return -ENOMEM;
                        if (strlen(path) >= PATH_MAX) {
                                free(path);
                                return -ENAMETOOLONG;
                        }
                        r = walk_enter(w, TAKE_FD(fd), path);
                        if (r < 0)
                                return r;
                }
        }
}

int path_trust_open(int dir_fd, const char *dir_path, const char *path, uid_t owner, PathTrustFlags flags,
                    int *ret_fd, char **ret_reason) {
        _cleanup_(walk_done) Walk w = { .owner = owner, .fd = -EBADF };
        _cleanup_free_ char *cwd = NULL;
        char *todo;
        int fd = -EBADF, r;

        assert_return(dir_fd >= 0 || dir_fd == AT_FDCWD, -EBADF);
        assert_return(path, -EINVAL);
        assert_return(ret_fd, -EINVAL);

        if (path[0] == '/' || dir_fd == AT_FDCWD) {
                /* A relative name is as safe as the directories above the working one. */
                if (path[0] != '/') {
                        cwd = getcwd(NULL, 0);
                        if (!cwd)
                                return negative_errno();
                        if (cwd[0] != '/') /* "(unreachable)/...": outside our root */
                                return -ENOENT;
                }
                if (asprintf(&todo, "%s/%s", strempty(cwd), path) < 0)
                        return -ENOMEM;
                r = walk_to_root(&w);
        } else {
                /* The caller's directory, which the caller checked. */
                w.fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
                if (w.fd < 0)
                        return negative_errno();
                w.path = strdup(dir_path ?: ".");
                todo = strdup(path);
                if (!w.path || !todo) {
                        free(todo);
                        return -ENOMEM;
                }
                r = 0;
        }
        if (r >= 0)
                r = walk(&w, todo, flags, &fd);
        else
                free(todo);
        if (r < 0) {
                if (ret_reason && w.reason)
                        *ret_reason = TAKE_PTR(w.reason);
                return r;
        }
        *ret_fd = fd;
        return 0;
}
