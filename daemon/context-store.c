/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Context state files for restarts. Runs in: worker. */

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "context-store.h"
#include "fdstore.h"
#include "ini.h"
#include "inventory.h"

DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(DIR *, closedir, NULL);

static int state_path(const char *dir, const char *reclaim_id, char *buf, size_t size) {
        if ((size_t) snprintf(buf, size, "%s/%s.state", dir, reclaim_id) >= size)
                return -ENAMETOOLONG;
        return 0;
}

static int dir_open(const char *dir, struct stat *ret_st) {
        _cleanup_close_ int fd = -EBADF;

        fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, ret_st) < 0)
                return negative_errno();
        return TAKE_FD(fd);
}

int context_store_prepare(const char *dir, mode_t *ret_old_mode) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        /* A restore to come reads the directory afresh. */
        context_store_forget_legacy();
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return negative_errno();
        fd = dir_open(dir, &st);
        if (fd < 0)
                return fd;
        if (st.st_uid != geteuid())
                return -EPERM;
        if ((st.st_mode & 07777) != 0700) {
                r = fd_chmod(fd, 0700);
                if (r < 0)
                        return r;
        }
        if (ret_old_mode)
                *ret_old_mode = st.st_mode & 07777;
        return 0;
}

int context_store_save(const char *dir, const char *reclaim_id, const StoredOwner *owner, const StoredVDevice *v,
                       size_t n) {
        char name[NAME_MAX + 1], tmp[NAME_MAX + 1];
        _cleanup_close_ int dfd = -EBADF, fd = -EBADF;
        struct stat st;
        FILE *f;
        int r;

        if ((size_t) snprintf(name, sizeof(name), "%s.state", reclaim_id) >= sizeof(name) ||
            (size_t) snprintf(tmp, sizeof(tmp), "%s.state.tmp", reclaim_id) >= sizeof(tmp))
                return -ENAMETOOLONG;
        (void) mkdir(dir, 0700);
        dfd = dir_open(dir, &st);
        if (dfd < 0)
                return dfd;
        /* SECURITY: not in a directory others may list: reclaim ids are no secret, but files an
         * older tsmd left here are named by reclaim tokens until they are adopted. */
        if (st.st_uid != geteuid() || (st.st_mode & 0077))
                return -EPERM;

        /* A new file, so that it is 0600 whatever a leftover of a failed save was. */
        if (unlinkat(dfd, tmp, 0) < 0 && errno != ENOENT)
                return negative_errno();
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return negative_errno();
        f = fdopen(fd, "w");
        if (!f) {
                r = negative_errno();
                (void) unlinkat(dfd, tmp, 0);
                return r;
        }
        TAKE_FD(fd); /* the FILE has it */

        fprintf(f, "[Context]\nVersion=%u\nUid=%u\n", CONTEXT_STORE_VERSION, (unsigned) owner->uid);
        if (owner->gid != (gid_t) -1)
                fprintf(f, "Gid=%u\n", (unsigned) owner->gid);
        if (owner->pid > 0)
                fprintf(f, "Pid=%i\n", (int) owner->pid);
        if (!isempty(owner->previous_reclaim_id))
                fprintf(f, "PreviousReclaimId=%s\n", owner->previous_reclaim_id);
        for (size_t i = 0; i < n; i++)
                fprintf(f, "VDevice=%u %s %s\n", v[i].id, v[i].pci_address,
                        v[i].changing ? "changing" : v[i].bound ? "bound" : "unbound");
        fprintf(f, "End=%zu\n", n);
        if (fflush(f) != 0 || ferror(f)) {
                r = negative_errno();
                fclose(f);
                (void) unlinkat(dfd, tmp, 0);
                return r;
        }
        fclose(f);

        /* Readers see the old file or the new one, never half of one. No fsync(): the files
         * matter only to a restart of tsmd within this boot, across which the page cache keeps
         * them (a power loss ends the contexts, the fd store with them, and the next start
         * sweeps the files), and a sync on a disk would hold the worker's loop for a flush on
         * every change of every context. */
        if (renameat(dfd, tmp, dfd, name) < 0) {
                r = negative_errno();
                (void) unlinkat(dfd, tmp, 0);
                return r;
        }
        return 0;
}

int context_store_sweep(const char *dir, bool (*keep)(const char *reclaim_id, void *userdata), void *userdata) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        int removed = 0;

        d = opendir(dir);
        if (!d)
                return negative_errno();
        while ((errno = 0, de = readdir(d))) {
                char id[RECLAIM_ID_LEN + 1];
                const char *suffix = de->d_name + RECLAIM_ID_LEN;

                /* <32 hex>.state or .state.tmp: reclaim ids, and the tokens older tsmds used. */
                if (strlen(de->d_name) < RECLAIM_ID_LEN || (!streq(suffix, ".state") && !streq(suffix, ".state.tmp")))
                        continue;
                memcpy(id, de->d_name, RECLAIM_ID_LEN);
                id[RECLAIM_ID_LEN] = 0;
                if (!reclaim_hex_is_valid(id) || (streq(suffix, ".state") && keep(id, userdata)))
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) < 0)
                        return negative_errno();
                removed++;
        }
        if (errno > 0)
                return -errno;
        return removed;
}

typedef struct LoadState {
        StoredOwner owner;
        bool have_uid, have_gid, have_pid, have_previous, have_version, have_end;
        unsigned long end; /* End='s count of vDevices */
        StoredVDevice *v;
        size_t n, allocated;
} LoadState;

/* A decimal number in [min, max], all of value, given once (have: whether it was already). */
static int parse_id(const char *value, unsigned long min, unsigned long max, bool *have, unsigned long *ret) {
        unsigned long v;
        char *end;

        if (*have || !value[0] || value[0] < '0' || value[0] > '9')
                return -EBADMSG;
        errno = 0;
        v = strtoul(value, &end, 10);
        if (errno != 0 || *end || v < min || v > max)
                return -EBADMSG;
        *have = true;
        *ret = v;
        return 0;
}

/* The next word of *p, which must fit buf with its NUL. */
static int next_word(const char **p, char *buf, size_t size) {
        size_t n;

        *p += strspn(*p, " \t");
        n = strcspn(*p, " \t");
        if (n == 0 || n >= size)
                return -EBADMSG;
        memcpy(buf, *p, n);
        buf[n] = 0;
        *p += n;
        return 0;
}

/* "<id> <PCI address> bound|unbound|changing", as context_store_save() writes it: three whole
 * words, the id a decimal number as Uid= is. */
static int parse_vdevice(const char *value, StoredVDevice *ret) {
        char id[16], state[16];
        bool have_id = false;
        unsigned long v;

        if (next_word(&value, id, sizeof(id)) < 0 ||
            next_word(&value, ret->pci_address, sizeof(ret->pci_address)) < 0 ||
            next_word(&value, state, sizeof(state)) < 0 || value[strspn(value, " \t")] != 0)
                return -EBADMSG;
        /* A restored worker attaches each in the monitor, which takes an id 0 or a second
         * attach of one id as a violation; an address it could not have attached is damage. */
        if (parse_id(id, 1, UINT32_MAX, &have_id, &v) < 0 || !pci_address_is_valid(ret->pci_address))
                return -EBADMSG;
        if (!streq(state, "bound") && !streq(state, "unbound") && !streq(state, "changing"))
                return -EBADMSG;
        ret->id = (uint32_t) v;
        ret->bound = streq(state, "bound");
        ret->changing = streq(state, "changing");
        return 0;
}

static int on_assignment(const char *section, const char *key, const char *value, unsigned line, void *userdata) {
        LoadState *st = userdata;
        unsigned long v;

        /* Nothing after the end: a file that goes on is no file context_store_save() wrote. */
        if (!streq(section, "Context") || st->have_end)
                return -EBADMSG;
        if (streq(key, "Version"))
                return parse_id(value, CONTEXT_STORE_VERSION, CONTEXT_STORE_VERSION, &st->have_version, &v);
        if (streq(key, "End"))
                return parse_id(value, 0, CONTEXT_STORE_MAX_VDEVICES, &st->have_end, &st->end);
        /* (uid_t) -1 and (gid_t) -1 mean "none" everywhere, never an owner. */
        if (streq(key, "Uid")) {
                if (parse_id(value, 0, (uid_t) -1 - 1, &st->have_uid, &v) < 0)
                        return -EBADMSG;
                st->owner.uid = (uid_t) v;
                return 0;
        }
        /* Optional (added later): what the records made on the owner's behalf name. */
        if (streq(key, "Gid")) {
                if (parse_id(value, 0, (gid_t) -1 - 1, &st->have_gid, &v) < 0)
                        return -EBADMSG;
                st->owner.gid = (gid_t) v;
                return 0;
        }
        if (streq(key, "Pid")) {
                if (parse_id(value, 1, INT_MAX, &st->have_pid, &v) < 0)
                        return -EBADMSG;
                st->owner.pid = (pid_t) v;
                return 0;
        }
        /* Optional (added later): a reclaim whose answer may not have reached the VMM. */
        if (streq(key, "PreviousReclaimId")) {
                if (st->have_previous || !reclaim_hex_is_valid(value))
                        return -EBADMSG;
                st->have_previous = true;
                memcpy(st->owner.previous_reclaim_id, value, sizeof(st->owner.previous_reclaim_id));
                return 0;
        }
        if (streq(key, "VDevice")) {
                StoredVDevice d = {};

                if (st->n >= CONTEXT_STORE_MAX_VDEVICES || parse_vdevice(value, &d) < 0)
                        return -EBADMSG;
                for (size_t i = 0; i < st->n; i++)
                        if (st->v[i].id == d.id)
                                return -EBADMSG;
                if (!GREEDY_REALLOC(st->v, st->allocated, st->n + 1))
                        return -ENOMEM;
                st->v[st->n++] = d;
                return 0;
        }
        return -EBADMSG;
}

int context_store_load(const char *dir, const char *reclaim_id, StoredOwner *ret_owner, StoredVDevice **ret,
                       size_t *ret_n) {
        char path[PATH_MAX];
        LoadState st = { .owner.gid = (gid_t) -1 };
        int r;

        r = state_path(dir, reclaim_id, path, sizeof(path));
        if (r < 0)
                return r;
        r = ini_parse_file(path, 1024 * 1024, on_assignment, &st, NULL);
        if (r >= 0 && !st.have_uid)
                r = -EBADMSG;
        /* A file of this version ends in End=, naming as many vDevices as it had: one cut off
         * (a crash of the file system, a disk full in a copy) is damaged, also where it was cut
         * at a line's end. One without Version= is of a tsmd before, which wrote no end. */
        if (r >= 0 && st.have_version && (!st.have_end || st.end != st.n))
                r = -EBADMSG;
        if (r >= 0 && st.have_end && !st.have_version)
                r = -EBADMSG;
        if (r < 0) {
                free(st.v);
                return r;
        }
        *ret_owner = st.owner;
        *ret = st.v;
        *ret_n = st.n;
        return 0;
}

static bool is_damaged_name(const char *name) {
        size_t n = strlen(name), k = strlen(CONTEXT_STORE_DAMAGED_SUFFIX);

        return n > k && streq(name + n - k, CONTEXT_STORE_DAMAGED_SUFFIX);
}

/* The damaged files in dir. */
static int damaged_count(int dfd, size_t *ret) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        size_t n = 0;
        int fd;

        fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        d = fdopendir(fd);
        if (!d) {
                int r = negative_errno();

                safe_close(fd);
                return r;
        }
        while ((errno = 0, de = readdir(d)))
                n += is_damaged_name(de->d_name);
        if (errno > 0)
                return -errno;
        *ret = n;
        return 0;
}

int context_store_set_aside(const char *dir, const char *reclaim_id) {
        char name[NAME_MAX + 1], aside[NAME_MAX + 1];
        _cleanup_close_ int dfd = -EBADF;
        struct stat st;
        size_t n = 0;
        int r;

        if ((size_t) snprintf(name, sizeof(name), "%s.state", reclaim_id) >= sizeof(name) ||
            (size_t) snprintf(aside, sizeof(aside), "%s.state" CONTEXT_STORE_DAMAGED_SUFFIX, reclaim_id) >=
                    sizeof(aside))
                return -ENAMETOOLONG;
        dfd = dir_open(dir, &st);
        if (dfd < 0)
                return dfd;
        /* One of the id's replaces the one before: a context's file damaged twice is kept once. */
        if (faccessat(dfd, aside, F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno != ENOENT)
                        return negative_errno();
                r = damaged_count(dfd, &n);
                if (r < 0)
                        return r;
                if (n >= CONTEXT_STORE_DAMAGED_MAX)
                        return -ENOSPC;
        }
        return RET_NERRNO(renameat(dfd, name, dfd, aside));
}

int context_store_remove(const char *dir, const char *reclaim_id) {
        char path[PATH_MAX];
        int r;

        r = state_path(dir, reclaim_id, path, sizeof(path));
        if (r < 0)
                return r;
        return unlink(path) < 0 && errno != ENOENT ? negative_errno() : 0;
}

/*
 * The old-style names in the directory, each with its token's reclaim id, sorted by id: built
 * by the first context_store_adopt_legacy() of a worker's restore, so that the restore hashes
 * every name once (one SHA-256 a file), not once a context (contexts × files right after an
 * upgrade, seconds before READY with thousands of contexts). Its stems are tokens: wiped when
 * it goes (context_store_forget_legacy()), or when their file is adopted.
 */
typedef struct LegacyName {
        char reclaim_id[RECLAIM_ID_LEN + 1];
        char stem[RECLAIM_TOKEN_LEN + 1]; /* the token; "" once adopted */
} LegacyName;

static struct {
        char *dir; /* NULL: not built */
        LegacyName *names;
        size_t n, allocated;
} legacy_index;

static uint64_t legacy_hashes;

uint64_t context_store_legacy_hashes(void) {
        return legacy_hashes;
}

void context_store_forget_legacy(void) {
        if (legacy_index.names)
                explicit_bzero(legacy_index.names, legacy_index.allocated * sizeof(LegacyName));
        legacy_index.names = mfree(legacy_index.names);
        legacy_index.dir = mfree(legacy_index.dir);
        legacy_index.n = legacy_index.allocated = 0;
}

static int legacy_name_compare(const void *a, const void *b) {
        return strcmp(((const LegacyName *) a)->reclaim_id, ((const LegacyName *) b)->reclaim_id);
}

static int legacy_index_build(const char *dir) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;

        context_store_forget_legacy();
        legacy_index.dir = strdup(dir);
        if (!legacy_index.dir)
                return -ENOMEM;
        d = opendir(dir);
        if (!d) {
                int r = negative_errno();

                context_store_forget_legacy();
                return r;
        }
        while ((errno = 0, de = readdir(d))) {
                LegacyName *l;

                /* Exactly <32 lowercase hex>.state: the only name a token ever had here. Names
                 * of reclaim ids look the same, and are hashed too. */
                if (strlen(de->d_name) != RECLAIM_TOKEN_LEN + strlen(".state") ||
                    !streq(de->d_name + RECLAIM_TOKEN_LEN, ".state"))
                        continue;
                if (!GREEDY_REALLOC(legacy_index.names, legacy_index.allocated, legacy_index.n + 1)) {
                        context_store_forget_legacy();
                        return -ENOMEM;
                }
                l = &legacy_index.names[legacy_index.n];
                memcpy(l->stem, de->d_name, RECLAIM_TOKEN_LEN);
                l->stem[RECLAIM_TOKEN_LEN] = 0;
                if (!reclaim_hex_is_valid(l->stem)) {
                        explicit_bzero(l->stem, sizeof(l->stem));
                        continue;
                }
                reclaim_id_from_token(l->stem, l->reclaim_id);
                legacy_hashes++;
                legacy_index.n++;
        }
        if (errno > 0) {
                int r = -errno;

                context_store_forget_legacy();
                return r;
        }
        /* Not of none: names is NULL then, which qsort() and bsearch() may not be given. */
        if (legacy_index.n > 0)
                qsort(legacy_index.names, legacy_index.n, sizeof(LegacyName), legacy_name_compare);
        return 0;
}

int context_store_adopt_legacy(const char *dir, const char *reclaim_id) {
        char from[PATH_MAX], to[PATH_MAX];
        LegacyName key = {}, *l;
        int r;

        if (!reclaim_hex_is_valid(reclaim_id))
                return -EINVAL;
        r = state_path(dir, reclaim_id, to, sizeof(to));
        if (r < 0)
                return r;
        if (!legacy_index.dir || !streq(legacy_index.dir, dir)) {
                r = legacy_index_build(dir);
                if (r < 0)
                        return r;
        }
        memcpy(key.reclaim_id, reclaim_id, sizeof(key.reclaim_id));
        l = legacy_index.n > 0 ?
                bsearch(&key, legacy_index.names, legacy_index.n, sizeof(LegacyName), legacy_name_compare) : NULL;
        if (!l || isempty(l->stem))
                return -ENOENT;
        r = state_path(dir, l->stem, from, sizeof(from));
        if (r < 0)
                return r;
        /* Atomic: the state is under one name or the other, never lost in between. */
        r = RET_NERRNO(rename(from, to));
        explicit_bzero(from, sizeof(from));
        if (r < 0)
                return r;
        explicit_bzero(l->stem, sizeof(l->stem));
        return 0;
}
