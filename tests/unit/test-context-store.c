/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The context state kept for restarts (daemon/context-store.c): the owner (uid, and gid and pid
 * where known) and vDevices bound, unbound and changing round-trip; a damaged file is refused
 * as a whole, a missing one is -ENOENT; what earlier versions wrote still loads, and a file an
 * earlier version named by its reclaim token is found by the reclaim id and renamed; state
 * goes only into a directory nobody else may list, each file 0600; a restore hashes each of
 * those names once, however many contexts it looks up; the state of contexts that are gone is
 * swept, a damaged file set aside, boundedly.
 */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "context-store.h"
#include "fdstore.h"
#include "harness.h"

#define ID "0123456789abcdef0123456789abcdef" /* a reclaim id */
/* Reclaim tokens, and the reclaim id of the first: SHA-256(TOKEN_L), its first 128 bits. */
#define TOKEN_L "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
#define ID_L "8b4ed76aac5ba5c555bbf28f7295c6b8"
#define TOKEN_M "11111111111111111111111111111111"

static char dir[] = "/tmp/test-context-store-XXXXXX";

static void write_state(const char *text) {
        char path[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/" ID ".state", dir);
        f = fopen(path, "we");
        ASSERT_NOT_NULL(f);
        fputs(text, f);
        ASSERT_EQ(fclose(f), 0);
}

TEST(round_trip) {
        const StoredVDevice saved[] = {
                { .id = 1, .pci_address = "0000:01:00.0", .bound = true },
                { .id = 2, .pci_address = "0000:02:00.0" },
                /* Bound when a change set off: stored as changing, which is all a restart knows. */
                { .id = 3, .pci_address = "0000:03:00.0", .bound = true, .changing = true },
        };
        StoredVDevice *v = NULL;
        StoredOwner owner = {};
        size_t n = 0;

        ASSERT_NOT_NULL(mkdtemp(dir));
        ASSERT_OK(context_store_save(dir, ID, &(StoredOwner){ .uid = 1000, .gid = 1001, .pid = 4242 }, saved,
                                     ELEMENTSOF(saved)));
        ASSERT_OK(context_store_load(dir, ID, &owner, &v, &n));
        ASSERT_EQ(owner.uid, 1000U);
        ASSERT_EQ(owner.gid, 1001U);
        ASSERT_EQ(owner.pid, 4242);
        ASSERT_EQ(n, ELEMENTSOF(saved));
        for (size_t i = 0; i < n; i++) {
                ASSERT_EQ(v[i].id, saved[i].id);
                ASSERT_STREQ(v[i].pci_address, saved[i].pci_address);
                ASSERT_EQ(v[i].changing, saved[i].changing);
                ASSERT_EQ(v[i].bound, saved[i].bound && !saved[i].changing);
        }
        free(v);

        /* A gid and pid not known (a context restored from an older file) stay unknown. */
        ASSERT_OK(context_store_save(dir, ID, &(StoredOwner){ .uid = 0, .gid = (gid_t) -1 }, NULL, 0));
        ASSERT_OK(context_store_load(dir, ID, &owner, &v, &n));
        ASSERT_EQ(owner.uid, 0U);
        ASSERT_EQ(owner.gid, (gid_t) -1);
        ASSERT_EQ(owner.pid, 0);
        ASSERT_EQ(n, 0U);
        free(v);

        /* A reclaim whose answer may not have reached the VMM keeps the id it reclaimed with;
         * without one, none comes back. */
        {
                StoredOwner pending = { .uid = 7, .gid = (gid_t) -1, .previous_reclaim_id = ID_L };

                ASSERT_OK(context_store_save(dir, ID, &pending, NULL, 0));
                ASSERT_OK(context_store_load(dir, ID, &owner, &v, &n));
                ASSERT_STREQ(owner.previous_reclaim_id, ID_L);
                free(v);
                pending.previous_reclaim_id[0] = 0;
                ASSERT_OK(context_store_save(dir, ID, &pending, NULL, 0));
                ASSERT_OK(context_store_load(dir, ID, &owner, &v, &n));
                ASSERT_STREQ(owner.previous_reclaim_id, "");
                free(v);
        }

        ASSERT_OK(context_store_remove(dir, ID));
        ASSERT_ERRNO(context_store_load(dir, ID, &owner, &v, &n), ENOENT);
        ASSERT_OK(context_store_remove(dir, ID));
        ASSERT_OK(rmdir(dir));
}

TEST(damaged_files_are_refused) {
        static const char *const damaged[] = {
                "[Context]\nUid=5\nVDevice=1 0000:01:00.0 maybe\n",
                "[Context]\nUid=5\nVDevice=1 0000:01:00.0\n",
                "[Context]\nVDevice=1 0000:01:00.0 bound\n", /* whose? */
                "[Context]\nUid=5\nColour=blue\n",
                "[Other]\nUid=5\n",
                /* What the monitor would take as a violation when the worker attaches it again. */
                "[Context]\nUid=5\nVDevice=0 0000:01:00.0 bound\n",
                "[Context]\nUid=5\nVDevice=3 0000:01:00.0 bound\nVDevice=3 0000:02:00.0 unbound\n",
                /* An id whole and in range, an address a device can have, three words: sscanf()
                 * took the first as vDevice 1, the next two as vDevice 10000 at ":00:01.0", and
                 * the rest whatever. */
                "[Context]\nUid=5\nVDevice=4294967297 0000:01:00.0 bound\n",
                "[Context]\nUid=5\nVDevice=000000000010000:00:01.0 bound\n",
                "[Context]\nUid=5\nVDevice=-1 0000:01:00.0 bound\n",
                "[Context]\nUid=5\nVDevice=+1 0000:01:00.0 bound\n",
                "[Context]\nUid=5\nVDevice=1 ../../etc/passwd bound\n",
                "[Context]\nUid=5\nVDevice=1 0000:01:00.0 bound and more\n",
                "[Context]\nUid=5\nGid=staff\n",
                "[Context]\nUid=5\nGid=4294967295\n", /* the "none" gid, which is never written */
                "[Context]\nUid=5\nPid=0\n",
                "[Context]\nUid=5\nPid=-7\n",
                /* Numbers whole, in range, and once. */
                "[Context]\nUid=5\nGid=-2\n",
                "[Context]\nUid=5\nGid=4294967296\n",
                "[Context]\nUid=5\nPid=4294967297\n",
                "[Context]\nUid=5\nPid=12abc\n",
                "[Context]\nUid=5\nPid=+12\n",
                "[Context]\nUid=5\nGid=7\nGid=8\n",
                "[Context]\nUid=5\nUid=6\n",
                "[Context]\nUid=4294967295\n",
                "[Context]\nUid=5x\n",
                /* A reclaim id: 32 lowercase hex digits, once. */
                "[Context]\nUid=5\nPreviousReclaimId=8B4ED76AAC5BA5C555BBF28F7295C6B8\n",
                "[Context]\nUid=5\nPreviousReclaimId=8b4ed76aac5ba5c555bbf28f7295c6b\n",
                "[Context]\nUid=5\nPreviousReclaimId=\n",
                "[Context]\nUid=5\nPreviousReclaimId=" ID_L "\nPreviousReclaimId=" ID_L "\n",
                /* A file of this version ends in End=, naming its vDevices: cut at a line's end, it
                 * lacks it or has too few; nothing follows it; a version not known is no file. */
                "[Context]\nVersion=2\nUid=5\nVDevice=1 0000:01:00.0 bound\n",
                "[Context]\nVersion=2\nUid=5\nVDevice=1 0000:01:00.0 bound\nEnd=2\n",
                "[Context]\nVersion=2\nUid=5\nVDevice=1 0000:01:00.0 bound\nEnd=0\n",
                "[Context]\nVersion=2\nUid=5\nEnd=0\nVDevice=1 0000:01:00.0 bound\n",
                "[Context]\nVersion=2\nUid=5\nEnd=0\nEnd=0\n",
                "[Context]\nVersion=2\nUid=5\nEnd=x\n",
                "[Context]\nVersion=3\nUid=5\nEnd=0\n",
                "[Context]\nVersion=2\nVersion=2\nUid=5\nEnd=0\n",
                "[Context]\nUid=5\nEnd=0\n", /* an end without a version is no file either */
        };
        StoredVDevice *v = NULL;
        StoredOwner owner;
        size_t n = 0;

        ASSERT_NOT_NULL(mkdtemp(dir));
        for (size_t i = 0; i < ELEMENTSOF(damaged); i++) {
                write_state(damaged[i]);
                ASSERT_ERRNO(context_store_load(dir, ID, &owner, &v, &n), EBADMSG);
                ASSERT_NULL(v);
        }
        /* What the previous versions wrote still loads (no changing, no gid or pid: not known). */
        write_state("[Context]\nUid=5\nVDevice=7 0000:01:00.0 bound\nVDevice=8 0000:02:00.0 unbound\n");
        ASSERT_OK(context_store_load(dir, ID, &owner, &v, &n));
        ASSERT_EQ(owner.uid, 5U);
        ASSERT_EQ(owner.gid, (gid_t) -1);
        ASSERT_EQ(owner.pid, 0);
        ASSERT_EQ(n, 2U);
        ASSERT_TRUE(v[0].bound && !v[0].changing);
        ASSERT_TRUE(!v[1].bound && !v[1].changing);
        free(v);
        /* This version's, whole. */
        write_state("[Context]\nVersion=2\nUid=5\nVDevice=7 0000:01:00.0 bound\nEnd=1\n");
        ASSERT_OK(context_store_load(dir, ID, &owner, &v, &n));
        ASSERT_EQ(n, 1U);
        free(v);
        ASSERT_OK(context_store_remove(dir, ID));
        ASSERT_OK(rmdir(dir));
}


static bool exists(const char *path) {
        return access(path, F_OK) == 0;
}

static mode_t mode_of(const char *path) {
        struct stat st;

        ASSERT_OK(lstat(path, &st));
        return st.st_mode & 07777;
}

/* State is kept only in a directory of the caller's that nobody else may list, which
 * context_store_prepare() makes so (files an earlier version left there are named by reclaim
 * tokens), and each file is 0600. */
TEST(state_is_private) {
        const StoredOwner owner = { .uid = 1000, .gid = (gid_t) -1 };
        char path[256], tmp[256 + 4], sub[256];
        StoredVDevice *v = NULL;
        StoredOwner got;
        mode_t old = 0, mask;
        size_t n = 0;
        int fd;

        ASSERT_NOT_NULL(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/" ID ".state", dir);
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);

        /* Readable by others: nothing written until it is made private. */
        ASSERT_OK(chmod(dir, 0755));
        ASSERT_ERRNO(context_store_save(dir, ID, &owner, NULL, 0), EPERM);
        ASSERT_FALSE(exists(path));
        ASSERT_FALSE(exists(tmp));
        ASSERT_OK(chmod(dir, 0710));
        ASSERT_ERRNO(context_store_save(dir, ID, &owner, NULL, 0), EPERM);
        ASSERT_OK(context_store_prepare(dir, &old));
        ASSERT_EQ(old, 0710U);
        ASSERT_EQ(mode_of(dir), 0700U);
        ASSERT_OK(context_store_prepare(dir, &old));
        ASSERT_EQ(old, 0700U);
        /* Also one whose owner had taken its own read bit. */
        ASSERT_OK(chmod(dir, 0300));
        ASSERT_OK(context_store_prepare(dir, NULL));
        ASSERT_EQ(mode_of(dir), 0700U);

        /* 0600 whatever the umask, and whatever a failed save left behind. */
        mask = umask(0);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(close(fd));
        ASSERT_EQ(mode_of(tmp), 0666U);
        ASSERT_OK(context_store_save(dir, ID, &owner, NULL, 0));
        umask(mask);
        ASSERT_EQ(mode_of(path), 0600U);
        ASSERT_FALSE(exists(tmp));
        ASSERT_OK(context_store_load(dir, ID, &got, &v, &n));
        ASSERT_EQ(got.uid, 1000U);
        free(v);
        ASSERT_OK(context_store_remove(dir, ID));

        /* A missing one is made private. */
        snprintf(sub, sizeof(sub), "%s/sub", dir);
        mask = umask(0);
        ASSERT_OK(context_store_prepare(sub, NULL));
        umask(mask);
        ASSERT_EQ(mode_of(sub), 0700U);

        /* Someone else's is not ours to keep state in (root only: chown). */
        if (geteuid() == 0) {
                ASSERT_OK(chown(sub, 65534, 65534));
                ASSERT_ERRNO(context_store_prepare(sub, NULL), EPERM);
                ASSERT_ERRNO(context_store_save(sub, ID, &owner, NULL, 0), EPERM);
                ASSERT_EQ(mode_of(sub), 0700U);
        }
        ASSERT_OK(rmdir(sub));
        ASSERT_OK(rmdir(dir));
}

static void write_file(const char *name, const char *text) {
        char path[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "we");
        ASSERT_NOT_NULL(f);
        fputs(text, f);
        ASSERT_EQ(fclose(f), 0);
}

static bool exists_in_dir(const char *name) {
        char path[256];

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        return exists(path);
}

/* A file an earlier version named <token>.state is found by its token's reclaim id and renamed
 * <reclaim id>.state, the token no name in the directory any more; no other file is touched. */
TEST(legacy_file_adopted) {
        StoredVDevice *v = NULL;
        StoredOwner owner;
        size_t n = 0;

        ASSERT_NOT_NULL(mkdtemp(dir));
        write_file(TOKEN_L ".state", "[Context]\nUid=1000\nVDevice=5 0000:01:00.0 bound\n");
        write_file(TOKEN_M ".state", "[Context]\nUid=1001\n");
        /* Near misses: a leftover of a failed save, another name, the id itself as a token. */
        write_file(TOKEN_L ".state.tmp", "[Context]\nUid=1000\n");
        write_file("5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A.state", "[Context]\nUid=1000\n");

        ASSERT_ERRNO(context_store_load(dir, ID_L, &owner, &v, &n), ENOENT);
        ASSERT_ERRNO(context_store_adopt_legacy(dir, TOKEN_L), ENOENT);
        ASSERT_OK(context_store_adopt_legacy(dir, ID_L));
        ASSERT_FALSE(exists_in_dir(TOKEN_L ".state"));
        ASSERT_TRUE(exists_in_dir(ID_L ".state"));
        ASSERT_OK(context_store_load(dir, ID_L, &owner, &v, &n));
        ASSERT_EQ(owner.uid, 1000U);
        ASSERT_EQ(n, 1U);
        ASSERT_EQ(v[0].id, 5U);
        ASSERT_TRUE(v[0].bound);
        free(v);

        /* Once: the file is under its id now. */
        ASSERT_ERRNO(context_store_adopt_legacy(dir, ID_L), ENOENT);
        ASSERT_ERRNO(context_store_adopt_legacy(dir, "not-an-id"), EINVAL);
        ASSERT_TRUE(exists_in_dir(TOKEN_M ".state"));
        ASSERT_TRUE(exists_in_dir(TOKEN_L ".state.tmp"));

        ASSERT_OK(context_store_remove(dir, ID_L));
        {
                static const char *const names[] = { TOKEN_M ".state", TOKEN_L ".state.tmp",
                                                     "5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A.state" };
                char path[256];

                for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
                        ASSERT_OK(unlink(path));
                }
        }
        ASSERT_OK(rmdir(dir));
        context_store_forget_legacy();
}

/* A restore after an upgrade looks up every context: each name in the directory is hashed once
 * for all of them (N files, N lookups and N misses: one SHA-256 a file, not one a file and
 * lookup), and each lookup finds its own file, as one scan each did. */
TEST(legacy_lookups_hash_each_file_once) {
        enum { N = 200, M = 10 };
        static char tokens[N + M][RECLAIM_TOKEN_LEN + 1], ids[N + M][RECLAIM_ID_LEN + 1];
        char name[64], path[128], text[64], absent[RECLAIM_ID_LEN + 1];
        StoredVDevice *v = NULL;
        StoredOwner owner;
        uint64_t before;
        size_t n = 0;

        ASSERT_NOT_NULL(mkdtemp(dir));
        context_store_forget_legacy();
        for (size_t i = 0; i < N + M; i++) {
                snprintf(tokens[i], sizeof(tokens[i]), "%032zx", i * 7919 + 1);
                reclaim_id_from_token(tokens[i], ids[i]);
                snprintf(text, sizeof(text), "[Context]\nUid=%zu\n", 1000 + i);
                /* N old-style names, M new-style ones (hashed all the same: they look alike). */
                snprintf(name, sizeof(name), "%.32s.state", i < N ? tokens[i] : ids[i]);
                write_file(name, text);
        }
        write_file(TOKEN_L ".state.tmp", "[Context]\nUid=1\n");

        before = context_store_legacy_hashes();
        for (size_t i = 0; i < N; i++) {
                ASSERT_OK(context_store_adopt_legacy(dir, ids[i]));
                /* A context with no old-style file. */
                snprintf(text, sizeof(text), "%032zx", i * 7919 + 2);
                reclaim_id_from_token(text, absent);
                ASSERT_ERRNO(context_store_adopt_legacy(dir, absent), ENOENT);
        }
        for (size_t i = N; i < N + M; i++)
                ASSERT_ERRNO(context_store_adopt_legacy(dir, ids[i]), ENOENT);
        ASSERT_EQ(context_store_legacy_hashes() - before, (uint64_t) (N + M));

        for (size_t i = 0; i < N + M; i++) {
                snprintf(name, sizeof(name), "%.32s.state", tokens[i]);
                ASSERT_FALSE(exists_in_dir(name));
                ASSERT_OK(context_store_load(dir, ids[i], &owner, &v, &n));
                ASSERT_EQ(owner.uid, (uid_t) (1000 + i));
                v = mfree(v);
        }
        /* Once each: under its id now. */
        ASSERT_ERRNO(context_store_adopt_legacy(dir, ids[0]), ENOENT);

        /* What is kept goes with the restore: the next reads the directory afresh. */
        context_store_forget_legacy();
        write_file(TOKEN_L ".state", "[Context]\nUid=7\n");
        ASSERT_OK(context_store_adopt_legacy(dir, ID_L));
        ASSERT_TRUE(exists_in_dir(ID_L ".state"));
        context_store_forget_legacy();

        for (size_t i = 0; i < N + M; i++)
                ASSERT_OK(context_store_remove(dir, ids[i]));
        ASSERT_OK(context_store_remove(dir, ID_L));
        snprintf(path, sizeof(path), "%s/" TOKEN_L ".state.tmp", dir);
        ASSERT_OK(unlink(path));
        ASSERT_OK(rmdir(dir));
}

/* No state file at all (a context restored whose state was never saved, as after a crash right
 * after it opened): not found, and no sort or search of an index of none, whose names are NULL
 * (undefined for qsort() and bsearch(): UBSan's nonnull). */
TEST(legacy_lookup_in_an_empty_directory) {
        ASSERT_NOT_NULL(mkdtemp(dir));
        ASSERT_ERRNO(context_store_adopt_legacy(dir, ID_L), ENOENT);
        context_store_forget_legacy();
        ASSERT_OK(rmdir(dir));
}

static bool keep_id(const char *reclaim_id, void *userdata) {
        return streq(reclaim_id, userdata);
}

/* What a restore leaves of contexts that are gone goes: state under other ids, under tokens, a
 * save's leftover (even the kept context's); what is kept, and names that are not tsmd's, stay. */
TEST(sweep_removes_the_state_of_contexts_that_are_gone) {
        static const char *const stay[] = { ID ".state", "README", "5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A.state",
                                            "0123.state", ID ".statex" };
        static const char *const go[] = { ID_L ".state", TOKEN_M ".state", ID ".state.tmp", TOKEN_L ".state.tmp" };

        ASSERT_NOT_NULL(mkdtemp(dir));
        for (size_t i = 0; i < ELEMENTSOF(stay); i++)
                write_file(stay[i], "[Context]\nUid=1\n");
        for (size_t i = 0; i < ELEMENTSOF(go); i++)
                write_file(go[i], "[Context]\nUid=1\n");

        ASSERT_EQ(context_store_sweep(dir, keep_id, (void *) ID), (int) ELEMENTSOF(go));
        for (size_t i = 0; i < ELEMENTSOF(go); i++)
                ASSERT_FALSE(exists_in_dir(go[i]));
        for (size_t i = 0; i < ELEMENTSOF(stay); i++)
                ASSERT_TRUE(exists_in_dir(stay[i]));
        ASSERT_EQ(context_store_sweep(dir, keep_id, (void *) ID), 0);

        for (size_t i = 0; i < ELEMENTSOF(stay); i++) {
                char path[256];

                snprintf(path, sizeof(path), "%s/%s", dir, stay[i]);
                ASSERT_OK(unlink(path));
        }
        ASSERT_OK(rmdir(dir));
        ASSERT_ERRNO(context_store_sweep(dir, keep_id, (void *) ID), ENOENT);
}

/* A damaged file is set aside as <reclaim id>.state.damaged, which the sweep leaves; one of the
 * same id replaces the one before, and past CONTEXT_STORE_DAMAGED_MAX of them none is added. */
TEST(damaged_files_are_set_aside_boundedly) {
        char name[64], path[256];
        struct stat st;

        ASSERT_NOT_NULL(mkdtemp(dir));
        ASSERT_ERRNO(context_store_set_aside(dir, ID), ENOENT);
        write_state("[Context]\nUid=5\nVDevice=1 0000:01:00.0 bou");
        ASSERT_OK(context_store_set_aside(dir, ID));
        ASSERT_FALSE(exists_in_dir(ID ".state"));
        ASSERT_TRUE(exists_in_dir(ID ".state.damaged"));
        ASSERT_EQ(context_store_sweep(dir, keep_id, (void *) ID_L), 0);
        ASSERT_TRUE(exists_in_dir(ID ".state.damaged"));

        /* Its own replaces it, even with the others at the bound. */
        for (unsigned i = 1; i < CONTEXT_STORE_DAMAGED_MAX; i++) {
                snprintf(name, sizeof(name), "%032x.state.damaged", i);
                write_file(name, "x");
        }
        write_state("[Context]\nUid=6\n");
        ASSERT_OK(context_store_set_aside(dir, ID));
        snprintf(path, sizeof(path), "%s/" ID ".state.damaged", dir);
        ASSERT_OK(stat(path, &st));
        ASSERT_EQ(st.st_size, (off_t) strlen("[Context]\nUid=6\n"));

        /* Another id's is not kept past the bound: its file stays where it is. */
        write_file(ID_L ".state", "damaged");
        ASSERT_ERRNO(context_store_set_aside(dir, ID_L), ENOSPC);
        ASSERT_TRUE(exists_in_dir(ID_L ".state"));
        ASSERT_FALSE(exists_in_dir(ID_L ".state.damaged"));

        for (unsigned i = 1; i < CONTEXT_STORE_DAMAGED_MAX; i++) {
                snprintf(path, sizeof(path), "%s/%032x.state.damaged", dir, i);
                ASSERT_OK(unlink(path));
        }
        snprintf(path, sizeof(path), "%s/" ID ".state.damaged", dir);
        ASSERT_OK(unlink(path));
        ASSERT_OK(context_store_remove(dir, ID_L));
        ASSERT_OK(rmdir(dir));
}

TEST_MAIN();
