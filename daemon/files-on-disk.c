/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Whether the files of the set in force differ on disk from what its load read (files-on-disk.h).
 * Runs in: monitor. */

#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "files-on-disk.h"
#include "last-good.h"
#include "macro.h"
#include "policy.h"
#include "sha256.h"

typedef struct FileIdentity {
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtime, ctime;
} FileIdentity;

typedef struct KnownFile {
        char *path;
        bool loaded; /* the load read it; else there was none (missing, or masked) */
        bool dropin;
        uint64_t size;
        uint8_t digest[SHA256_DIGEST_SIZE];
        bool settled;          /* identity is that of a read that found the loaded bytes */
        FileIdentity identity;
} KnownFile;

struct FilesOnDisk {
        KnownFile *files; /* tsmd.conf, the policy file, the loaded drop-ins in their order */
        size_t n_files, allocated_files;
        char *config_path, *policy_file, *dropin_dir;
        char *link_dirs[FILES_ON_DISK_LINK_DIRS_MAX]; /* the symlink targets' directories */
        size_t n_link_dirs;
        bool links_unwatched;
        uint64_t n_read;
};

/* A path's state now: NONE (no such file, or masked), a regular file (st), or anything else. */
typedef enum FileNow {
        FILE_NOW_NONE,
        FILE_NOW_REGULAR,
        FILE_NOW_OTHER,
} FileNow;

static FileNow file_now(const char *path, struct stat *ret_st) {
        if (stat(path, ret_st) < 0)
                return errno == ENOENT || errno == ENOTDIR ? FILE_NOW_NONE : FILE_NOW_OTHER;
        /* A symlink to /dev/null masks a drop-in, as the load takes it (policy-parse.c). */
        if (S_ISCHR(ret_st->st_mode) && ret_st->st_rdev == makedev(1, 3))
                return FILE_NOW_NONE;
        return S_ISREG(ret_st->st_mode) ? FILE_NOW_REGULAR : FILE_NOW_OTHER;
}

static FileIdentity identity_of(const struct stat *st) {
        return (FileIdentity) { .dev = st->st_dev, .ino = st->st_ino, .size = st->st_size,
                                .mtime = st->st_mtim, .ctime = st->st_ctim };
}

static bool identity_equal(const FileIdentity *a, const FileIdentity *b) {
        return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
               a->mtime.tv_nsec == b->mtime.tv_nsec && a->ctime.tv_sec == b->ctime.tv_sec &&
               a->ctime.tv_nsec == b->ctime.tv_nsec;
}

static int add_file(FilesOnDisk *f, const char *path, bool dropin, const char *text, size_t size) {
        KnownFile *k;

        if (!GREEDY_REALLOC(f->files, f->allocated_files, f->n_files + 1))
                return -ENOMEM;
        k = &f->files[f->n_files];
        *k = (KnownFile) { .path = strdup(path), .loaded = text != NULL, .dropin = dropin, .size = size };
        if (!k->path)
                return -ENOMEM;
        if (text)
                sha256(text, size, k->digest);
        f->n_files++;
        return 0;
}

static KnownFile *find_file(FilesOnDisk *f, const char *path) {
        for (size_t i = 0; i < f->n_files; i++)
                if (streq(f->files[i].path, path))
                        return &f->files[i];
        return NULL;
}

/* The load's read of k, as a check's that found the loaded bytes: its stat, taken of the fd the
 * bytes kept were read from before they were, trusted if no write in the same tick can share
 * it (its ctime settled before the load began), and if it is of those bytes (the size). */
static void settle_from_load(KnownFile *k, const LastGoodReads *reads) {
        if (!reads)
                return;
        for (size_t i = 0; i < reads->n_files; i++) {
                const struct stat *st = &reads->files[i].st;

                if (!streq(reads->files[i].name, k->path))
                        continue;
                if (S_ISREG(st->st_mode) && (uint64_t) st->st_size == k->size &&
                    file_settle_timespec_usec(&st->st_ctim) + FILES_ON_DISK_STAT_SETTLE_USEC <= reads->start_usec) {
                        k->identity = identity_of(st);
                        k->settled = true;
                }
                return;
        }
}

typedef struct AddLoaded {
        FilesOnDisk *f;
        const LastGoodReads *reads;
} AddLoaded;

/* A LastGoodFileFunc: the files of the policy, after tsmd.conf's and the policy file's places. */
static int add_loaded(size_t index, const char *name, const char *text, size_t size, void *userdata) {
        AddLoaded *a = userdata;
        FilesOnDisk *f = a->f;
        KnownFile *k;
        int r;

        if (index == 0) {
                /* tsmd.conf: "" if there was none (built-in defaults). */
                if (!f->config_path || isempty(name))
                        return 0;
                k = find_file(f, f->config_path);
        } else
                k = find_file(f, name);
        if (k && !k->loaded) {
                k->loaded = true;
                k->size = size;
                sha256(text, size, k->digest);
                settle_from_load(k, a->reads);
                return 0;
        }
        /* Any other is a drop-in (a name twice is not: the load reads each once). */
        if (k)
                return 0;
        r = add_file(f, name, /* dropin= */ true, text, size);
        if (r >= 0)
                settle_from_load(&f->files[f->n_files - 1], a->reads);
        return r;
}

/* Whether dir (st: its stat()) is one files_on_disk_foreach_dir() names already: the files' own
 * directories, and the targets' found so far. */
static bool dir_named(const FilesOnDisk *f, const struct stat *st) {
        const char *own[] = { f->config_path, f->policy_file, f->dropin_dir };
        struct stat o;

        for (size_t i = 0; i < ELEMENTSOF(own); i++) {
                _cleanup_free_ char *copy = own[i] ? strdup(own[i]) : NULL;

                if (copy && stat(dirname(copy), &o) >= 0 && o.st_dev == st->st_dev && o.st_ino == st->st_ino)
                        return true;
        }
        if (f->dropin_dir && stat(f->dropin_dir, &o) >= 0 && o.st_dev == st->st_dev && o.st_ino == st->st_ino)
                return true;
        for (size_t i = 0; i < f->n_link_dirs; i++)
                if (stat(f->link_dirs[i], &o) >= 0 && o.st_dev == st->st_dev && o.st_ino == st->st_ino)
                        return true;
        return false;
}

/* The directory of a symlink's target (dir, as the kernel resolves it, if it is there), to be
 * watched, up to FILES_ON_DISK_LINK_DIRS_MAX. SECURITY: only one of root's that neither its
 * group nor others may write: the load's path trust (path-trust.h) takes a sticky directory on
 * the way (/tmp), where every user's change would start a check. */
static int add_link_dir(FilesOnDisk *f, const char *dir) {
        struct stat st;
        char *copy;

        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
                return 0; /* not there: a file the link would lead to is none either way */
        if (dir_named(f, &st))
                return 0;
        if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) || f->n_link_dirs >= FILES_ON_DISK_LINK_DIRS_MAX) {
                f->links_unwatched = true;
                return 0;
        }
        copy = strdup(dir);
        if (!copy)
                return -ENOMEM;
        f->link_dirs[f->n_link_dirs++] = copy;
        return 0;
}

/* The directories of the links path leads through, as the kernel follows them: a relative
 * target from the link's directory (as the path names it, so ".." goes where the kernel's would). */
static int add_link_dirs(FilesOnDisk *f, const char *path) {
        _cleanup_free_ char *p = strdup(path);
        char target[PATH_MAX];

        if (!p)
                return -ENOMEM;
        for (unsigned hop = 0;; hop++) {
                _cleanup_free_ char *link_dir = NULL, *target_dir = NULL;
                bool absolute;
                struct stat st;
                char *next;
                ssize_t n;
                int r;

                if (lstat(p, &st) < 0 || !S_ISLNK(st.st_mode))
                        return 0;
                if (hop >= FILES_ON_DISK_LINK_HOPS_MAX) {
                        f->links_unwatched = true;
                        return 0;
                }
                n = readlink(p, target, sizeof(target) - 1);
                if (n <= 0)
                        return 0;
                target[n] = 0;
                absolute = target[0] == '/';
                link_dir = strdup(p);
                if (!link_dir || asprintf(&next, "%s%s%s", absolute ? "" : dirname(link_dir), absolute ? "" : "/",
                                          target) < 0)
                        return -ENOMEM;
                free(p);
                p = next;
                target_dir = strdup(p);
                if (!target_dir)
                        return -ENOMEM;
                r = add_link_dir(f, dirname(target_dir));
                if (r < 0)
                        return r;
        }
}

int files_on_disk_new(int last_good_fd, const LastGoodReads *reads, const char *config_path, const char *policy_file,
                      const char *dropin_dir, FilesOnDisk **ret) {
        FilesOnDisk *f;
        int r;

        assert(last_good_fd >= 0);
        assert(ret);

        f = new0(FilesOnDisk, 1);
        if (!f)
                return -ENOMEM;
        if ((config_path && !(f->config_path = strdup(config_path))) ||
            (policy_file && !(f->policy_file = strdup(policy_file))) ||
            (dropin_dir && !(f->dropin_dir = strdup(dropin_dir)))) {
                files_on_disk_free(f);
                return -ENOMEM;
        }
        /* Their places first, loaded or not: a file there was none of may come. */
        r = 0;
        if (config_path)
                r = add_file(f, config_path, false, NULL, 0);
        if (r >= 0 && policy_file && (!config_path || !streq(policy_file, config_path)))
                r = add_file(f, policy_file, false, NULL, 0);
        if (r >= 0)
                r = last_good_foreach_file(last_good_fd, add_loaded, &(AddLoaded) { .f = f, .reads = reads });
        for (size_t i = 0; r >= 0 && i < f->n_files; i++)
                r = add_link_dirs(f, f->files[i].path);
        if (r < 0) {
                files_on_disk_free(f);
                return r;
        }
        *ret = f;
        return 0;
}

FilesOnDisk *files_on_disk_free(FilesOnDisk *f) {
        if (!f)
                return NULL;
        for (size_t i = 0; i < f->n_files; i++)
                free(f->files[i].path);
        free(f->files);
        for (size_t i = 0; i < f->n_link_dirs; i++)
                free(f->link_dirs[i]);
        free(f->config_path);
        free(f->policy_file);
        free(f->dropin_dir);
        return mfree(f);
}

/* Whether the regular file at k->path (st: its stat()) has the loaded bytes: read and hashed,
 * with the fd checked to be what was stat()ed. */
static bool same_bytes(FilesOnDisk *f, const KnownFile *k, const struct stat *st, struct stat *ret_st) {
        _cleanup_close_ int fd = -EBADF;
        uint8_t buf[16384], digest[SHA256_DIGEST_SIZE];
        uint64_t n = 0;
        Sha256 s;

        f->n_read++;
        fd = open(k->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0 || fstat(fd, ret_st) < 0 || !S_ISREG(ret_st->st_mode) || ret_st->st_dev != st->st_dev ||
            ret_st->st_ino != st->st_ino)
                return false;
        sha256_init(&s);
        for (;;) {
                ssize_t l = read(fd, buf, sizeof(buf));

                if (l < 0 && errno == EINTR)
                        continue;
                if (l < 0)
                        return false;
                if (l == 0)
                        break;
                n += (uint64_t) l;
                if (n > k->size)
                        return false; /* it grows as we read */
                sha256_update(&s, buf, (size_t) l);
        }
        sha256_finish(&s, digest);
        return n == k->size && memcmp(digest, k->digest, sizeof(digest)) == 0;
}

static bool known_file_differs(FilesOnDisk *f, KnownFile *k, uint64_t now_usec) {
        struct stat st, opened;
        FileIdentity id, before;
        bool same;

        switch (file_now(k->path, &st)) {
        case FILE_NOW_NONE:
                k->settled = false;
                return k->loaded;
        case FILE_NOW_OTHER:
                k->settled = false;
                return true;
        case FILE_NOW_REGULAR:
                break;
        }
        if (!k->loaded)
                return true;
        /* Another size: other bytes, nothing to read. */
        if ((uint64_t) st.st_size != k->size) {
                k->settled = false;
                return true;
        }
        id = identity_of(&st);
        if (k->settled && identity_equal(&k->identity, &id))
                return false;
        same = same_bytes(f, k, &st, &opened);
        /* Only the identity of a read that found the loaded bytes, and that no write in the same
         * tick as the read could share (its ctime settled): else read again next time. */
        id = identity_of(&opened);
        before = identity_of(&st);
        k->settled = same && identity_equal(&id, &before) &&
                     file_settle_timespec_usec(&opened.st_ctim) + FILES_ON_DISK_STAT_SETTLE_USEC <= now_usec;
        if (k->settled)
                k->identity = id;
        return !same;
}

typedef struct PathList {
        char *buf;
        size_t size, allocated;
        int n;
} PathList;

static int path_list_add(PathList *l, const char *path) {
        size_t len = strlen(path) + 1;

        if (!GREEDY_REALLOC(l->buf, l->allocated, l->size + len))
                return -ENOMEM;
        memcpy(l->buf + l->size, path, len);
        l->size += len;
        l->n++;
        return 0;
}

static int cmp_strp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The drop-ins of the directory that the load did not read and would now
 * (policy_dropin_name_is_valid()), sorted, into l. As the load, no more than
 * POLICY_DROPINS_MAX names are looked at, and one more: a load would refuse that many. */
static int added_dropins(FilesOnDisk *f, PathList *l) {
        _cleanup_free_ char **added = NULL;
        size_t n = 0, allocated = 0, seen = 0;
        struct dirent *de;
        DIR *d;
        int r = 0;

        if (!f->dropin_dir)
                return 0;
        d = opendir(f->dropin_dir);
        if (!d)
                return 0; /* gone, or unreadable: its loaded drop-ins say it */
        while ((de = readdir(d)) && seen <= POLICY_DROPINS_MAX) {
                char *path;
                struct stat st;

                if (!policy_dropin_name_is_valid(de->d_name))
                        continue;
                seen++;
                if (asprintf(&path, "%s/%s", f->dropin_dir, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                if (find_file(f, path) || file_now(path, &st) == FILE_NOW_NONE) {
                        free(path);
                        continue;
                }
                if (!GREEDY_REALLOC(added, allocated, n + 1)) {
                        free(path);
                        r = -ENOMEM;
                        break;
                }
                added[n++] = path;
        }
        closedir(d);
        if (r >= 0 && n > 0) {
                qsort(added, n, sizeof(char *), cmp_strp);
                for (size_t i = 0; i < n && r >= 0; i++)
                        r = path_list_add(l, added[i]);
        }
        for (size_t i = 0; i < n; i++)
                free(added[i]);
        return r;
}

int files_on_disk_check(FilesOnDisk *f, uint64_t now_usec, char **ret_paths, size_t *ret_size) {
        PathList l = {};
        int r = 0;

        assert(f);
        assert(ret_paths);
        assert(ret_size);

        for (size_t i = 0; i < f->n_files && r >= 0; i++)
                if (known_file_differs(f, &f->files[i], now_usec))
                        r = path_list_add(&l, f->files[i].path);
        if (r >= 0)
                r = added_dropins(f, &l);
        if (r < 0) {
                free(l.buf);
                return r;
        }
        *ret_paths = l.buf;
        *ret_size = l.size;
        return l.n;
}

static void foreach_parent(const char *path, void (*func)(const char *dir, void *userdata), void *userdata) {
        _cleanup_free_ char *copy = strdup(path);

        if (copy)
                func(dirname(copy), userdata);
}

void files_on_disk_foreach_dir(const FilesOnDisk *f, void (*func)(const char *dir, void *userdata), void *userdata) {
        assert(f);
        assert(func);

        if (f->config_path)
                foreach_parent(f->config_path, func, userdata);
        if (f->policy_file)
                foreach_parent(f->policy_file, func, userdata);
        if (f->dropin_dir) {
                foreach_parent(f->dropin_dir, func, userdata);
                func(f->dropin_dir, userdata);
        }
        for (size_t i = 0; i < f->n_link_dirs; i++)
                func(f->link_dirs[i], userdata);
}

bool files_on_disk_links_unwatched(const FilesOnDisk *f) {
        return f->links_unwatched;
}

uint64_t files_on_disk_n_read(const FilesOnDisk *f) {
        return f->n_read;
}
