/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Which files of the set in force differ on disk from what its load read (daemon/files-on-disk.c):
 * by content, never by stat alone (a touch, the same bytes written again, are no change); a file
 * is read only when its stat changed since a read found it the same, and not at all when its
 * size says it differs; drop-ins added and removed count, hidden, other and masked names do not;
 * what is not a regular file is not opened. Runs in: tests.
 */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files-on-disk.h"
#include "harness.h"
#include "last-good.h"
#include "macro.h"

/* Checks "later" than the files' writes by more than the stat identity needs to settle. */
#define LATER (now_realtime_usec() + 10 * FILES_ON_DISK_STAT_SETTLE_USEC)

static char dir[] = "/tmp/test-files-on-disk-XXXXXX";

static const char *path(const char *name) {
        static char buf[8][256];
        static unsigned i;
        char *p = buf[i++ % ELEMENTSOF(buf)];

        snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
        return p;
}

static void write_text(const char *name, const char *text) {
        FILE *f = fopen(path(name), "we");

        ASSERT_NOT_NULL(f);
        ASSERT_TRUE(fputs(text, f) >= 0);
        ASSERT_OK(fclose(f));
}

/* Written whole under a new inode, as editors do. */
static void replace_text(const char *name, const char *text) {
        write_text(".tmp", text);
        ASSERT_OK(rename(path(".tmp"), path(name)));
}

#define POLICY "[Client:a]\nUsers=root\nDevices=0000:01:00.0\n"
#define DROPIN "[Client:b]\nUsers=65534\nDevices=*\n"

/* tsmd.conf naming policy.conf and policy.d in dir, with one drop-in. */
static void setup(void) {
        char conf[1024];

        if (geteuid() != 0)
                SKIP("the policy files must be root's");
        ASSERT_NOT_NULL(mkdtemp(dir));
        test_remove_at_end(dir);
        snprintf(conf, sizeof(conf), "[Policy]\nFile=%s\nDropInDirectory=%s\n", path("policy.conf"),
                 path("policy.d"));
        write_text("tsmd.conf", conf);
        write_text("policy.conf", POLICY);
        ASSERT_OK(mkdir(path("policy.d"), 0755));
        write_text("policy.d/10-b.conf", DROPIN);
}

/* What a load of them now read, to compare with from now on; given how the load found them
 * (reads: its LastGoodReads, kept, to be freed by the caller) or not (NULL: as a restored set). */
static FilesOnDisk *load_full(bool config_optional, LastGoodReads *reads) {
        static const PolicyFileTrust trust = { .owner = 0, .worker_gid = GID_INVALID };
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *error = NULL;
        FilesOnDisk *f = NULL;
        DaemonConfig c;

        ASSERT_OK(last_good_load(path("tsmd.conf"), config_optional, &trust, &c, &p, &fd, reads, &error, NULL));
        ASSERT_OK(files_on_disk_new(fd, reads, path("tsmd.conf"), c.policy_file, c.policy_dropin_dir, &f));
        daemon_config_done(&c);
        return f;
}

static FilesOnDisk *load(bool config_optional) {
        return load_full(config_optional, NULL);
}

/* The check's result as "a b c" (the names under dir), "" for none. */
static const char *check(FilesOnDisk *f, uint64_t now_usec) {
        static char out[4096];
        _cleanup_free_ char *paths = NULL;
        size_t size = 0, n = 0;
        int r;

        r = files_on_disk_check(f, now_usec, &paths, &size);
        ASSERT_TRUE(r >= 0);
        out[0] = 0;
        for (size_t i = 0; i < size; i += strlen(paths + i) + 1, n++) {
                ASSERT_TRUE(strneq(paths + i, dir, strlen(dir)));
                snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s", n > 0 ? " " : "",
                         paths + i + strlen(dir) + 1);
        }
        ASSERT_EQ((size_t) r, n);
        return out;
}

static void cleanup(FilesOnDisk *f) {
        files_on_disk_free(f);
        unlink(path(".tmp"));
        unlink(path("policy.d/10-b.conf"));
        unlink(path("policy.d/20-c.conf"));
        unlink(path("policy.d/30-masked.conf"));
        unlink(path("policy.d/.hidden.conf"));
        unlink(path("policy.d/notes.txt"));
        rmdir(path("policy.d"));
        unlink(path("policy.conf"));
        unlink(path("tsmd.conf"));
        rmdir(dir);
        strcpy(dir, "/tmp/test-files-on-disk-XXXXXX");
}

/* Nothing changed: each file is read once, then its stat says it is the same. */
TEST(unchanged_files_are_read_once) {
        FilesOnDisk *f;

        setup();
        f = load(false);
        ASSERT_STREQ(check(f, LATER), "");
        ASSERT_EQ(files_on_disk_n_read(f), 3U);
        ASSERT_STREQ(check(f, LATER), "");
        ASSERT_STREQ(check(f, LATER), "");
        ASSERT_EQ(files_on_disk_n_read(f), 3U);
        cleanup(f);
}

/* The load's read is the first: a file whose stat is still the one the load read its bytes
 * under, settled before the load began, is not read again, at the first check or after. */
TEST(a_load_is_not_read_again) {
        _cleanup_(last_good_reads_done) LastGoodReads reads = {};
        FilesOnDisk *f;

        setup();
        /* The files' ctime settled before the load begins. */
        ASSERT_OK(usleep(FILES_ON_DISK_STAT_SETTLE_USEC + 100 * 1000));
        f = load_full(false, &reads);
        ASSERT_EQ(reads.n_files, 3U);
        ASSERT_STREQ(check(f, LATER), "");
        ASSERT_STREQ(check(f, LATER), "");
        ASSERT_EQ(files_on_disk_n_read(f), 0U);
        /* An edit of the same size changes the stat: read, and told. */
        write_text("policy.conf", "[Client:a]\nUsers=root\nDevices=0000:01:00.1\n");
        ASSERT_STREQ(check(f, LATER), "policy.conf");
        ASSERT_EQ(files_on_disk_n_read(f), 1U);
        cleanup(f);
}

/* A file whose ctime is as recent as the load may have been written again in the same clock
 * tick after the load read it: the first check reads it. */
TEST(a_load_of_files_just_written_is_read_again) {
        _cleanup_(last_good_reads_done) LastGoodReads reads = {};
        uint64_t recent = 0;
        FilesOnDisk *f;

        setup();
        f = load_full(false, &reads);
        ASSERT_EQ(reads.n_files, 3U);
        for (size_t i = 0; i < reads.n_files; i++) {
                const struct timespec *c = &reads.files[i].st.st_ctim;

                recent += (uint64_t) c->tv_sec * 1000000u + (uint64_t) c->tv_nsec / 1000u +
                                  FILES_ON_DISK_STAT_SETTLE_USEC > reads.start_usec;
        }
        /* Just written: all of them (unless this test stalled for a second since). */
        ASSERT_STREQ(check(f, LATER), "");
        ASSERT_EQ(files_on_disk_n_read(f), recent);
        cleanup(f);
}

/* A touch, and the same bytes under a new inode, change the stat, not the contents: read once
 * more each, and no change. */
TEST(a_touch_or_the_same_bytes_are_no_change) {
        FilesOnDisk *f;

        setup();
        f = load(false);
        ASSERT_STREQ(check(f, LATER), "");
        ASSERT_OK(utimensat(AT_FDCWD, path("policy.conf"), NULL, 0));
        ASSERT_STREQ(check(f, LATER), "");
        ASSERT_EQ(files_on_disk_n_read(f), 4U);
        replace_text("policy.d/10-b.conf", DROPIN);
        ASSERT_STREQ(check(f, LATER), "");
        ASSERT_EQ(files_on_disk_n_read(f), 5U);
        ASSERT_STREQ(check(f, LATER), "");
        ASSERT_EQ(files_on_disk_n_read(f), 5U);
        cleanup(f);
}

/* An edit of the same size is told by its bytes; one of another size without reading; put back
 * as loaded, it is no change again. */
TEST(an_edit_is_told_by_content) {
        FilesOnDisk *f;

        setup();
        f = load(false);
        ASSERT_STREQ(check(f, LATER), "");
        write_text("policy.conf", "[Client:a]\nUsers=root\nDevices=0000:01:00.1\n");
        ASSERT_STREQ(check(f, LATER), "policy.conf");
        ASSERT_EQ(files_on_disk_n_read(f), 4U);
        /* Not settled on a change: read again, and still changed. */
        ASSERT_STREQ(check(f, LATER), "policy.conf");
        ASSERT_EQ(files_on_disk_n_read(f), 5U);
        write_text("policy.conf", POLICY "# longer\n");
        ASSERT_STREQ(check(f, LATER), "policy.conf");
        ASSERT_EQ(files_on_disk_n_read(f), 5U);
        write_text("policy.conf", POLICY);
        ASSERT_STREQ(check(f, LATER), "");
        cleanup(f);
}

/* A stat whose ctime is as recent as the check may be shared by a write right after the read
 * (the same clock tick): not trusted until it is older. */
TEST(a_recent_stat_is_not_trusted) {
        uint64_t now = now_realtime_usec();
        FilesOnDisk *f;

        setup();
        f = load(false);
        ASSERT_STREQ(check(f, now), "");
        ASSERT_STREQ(check(f, now), "");
        ASSERT_EQ(files_on_disk_n_read(f), 6U);
        ASSERT_STREQ(check(f, LATER), "");
        ASSERT_STREQ(check(f, LATER), "");
        ASSERT_EQ(files_on_disk_n_read(f), 9U);
        cleanup(f);
}

/* Drop-ins added and removed count; hidden names, other names and masked ones (a symlink to
 * /dev/null) do not, but a loaded one masked since does. Loaded ones first, in their order,
 * then the added ones, sorted. */
TEST(dropins_added_removed_and_masked) {
        FilesOnDisk *f;

        setup();
        f = load(false);
        write_text("policy.d/.hidden.conf", DROPIN);
        write_text("policy.d/notes.txt", DROPIN);
        ASSERT_OK(symlink("/dev/null", path("policy.d/30-masked.conf")));
        ASSERT_STREQ(check(f, LATER), "");
        write_text("policy.d/20-c.conf", DROPIN);
        write_text("tsmd.conf", "# edited\n");
        ASSERT_STREQ(check(f, LATER), "tsmd.conf policy.d/20-c.conf");
        ASSERT_OK(unlink(path("policy.d/10-b.conf")));
        ASSERT_STREQ(check(f, LATER), "tsmd.conf policy.d/10-b.conf policy.d/20-c.conf");
        ASSERT_OK(symlink("/dev/null", path("policy.d/10-b.conf")));
        ASSERT_STREQ(check(f, LATER), "tsmd.conf policy.d/10-b.conf policy.d/20-c.conf");
        ASSERT_OK(unlink(path("policy.d/10-b.conf")));
        write_text("policy.d/10-b.conf", DROPIN);
        ASSERT_OK(unlink(path("policy.d/20-c.conf")));
        ASSERT_STREQ(check(f, LATER), "tsmd.conf");
        cleanup(f);
}

/* A policy file that is a FIFO now is a change, and is not opened (that would block); the
 * directory gone, every drop-in it had is. */
TEST(what_is_not_a_regular_file_differs_unopened) {
        FilesOnDisk *f;

        setup();
        f = load(false);
        ASSERT_OK(unlink(path("policy.conf")));
        ASSERT_OK(mkfifo(path("policy.conf"), 0600));
        ASSERT_STREQ(check(f, LATER), "policy.conf");
        ASSERT_EQ(files_on_disk_n_read(f), 2U);
        ASSERT_OK(unlink(path("policy.conf")));
        ASSERT_OK(unlink(path("policy.d/10-b.conf")));
        ASSERT_OK(rmdir(path("policy.d")));
        ASSERT_STREQ(check(f, LATER), "policy.conf policy.d/10-b.conf");
        cleanup(f);
}

/* Files there were none of at the load (a missing optional tsmd.conf, a missing policy file):
 * their coming is a change. */
TEST(a_file_that_comes_is_a_change) {
        FilesOnDisk *f;

        setup();
        ASSERT_OK(unlink(path("tsmd.conf")));
        f = load(/* config_optional= */ true);
        ASSERT_STREQ(check(f, LATER), "");
        write_text("tsmd.conf", "");
        ASSERT_STREQ(check(f, LATER), "tsmd.conf");
        cleanup(f);
}

/* Whether files_on_disk_foreach_dir() names the directory name (under dir), by identity. */
typedef struct DirSearch {
        struct stat want;
        unsigned found, n;
} DirSearch;

static void count_dir(const char *d, void *userdata) {
        DirSearch *s = userdata;
        struct stat st;

        s->n++;
        if (stat(d, &st) >= 0 && st.st_dev == s->want.st_dev && st.st_ino == s->want.st_ino)
                s->found++;
}

static bool watched(const FilesOnDisk *f, const char *name) {
        DirSearch s = {};

        ASSERT_OK(stat(path(name), &s.want));
        files_on_disk_foreach_dir(f, count_dir, &s);
        return s.found > 0;
}

static unsigned n_watched(const FilesOnDisk *f) {
        DirSearch s = { .want.st_ino = 0 };

        files_on_disk_foreach_dir(f, count_dir, &s);
        return s.n;
}

/* The files' own directories: tsmd.conf's and policy.conf's (dir, twice), policy.d's (dir) and
 * policy.d. */
#define N_OWN_DIRS 4U

/* A file that is a symlink is edited in its target's directory, not the link's: the directory of
 * each link of the chain is watched too (a relative target from the link's directory), once,
 * and the edit is told with the link's path. */
TEST(symlink_targets_directories_are_watched) {
        FilesOnDisk *f;

        setup();
        ASSERT_OK(mkdir(path("elsewhere"), 0755));
        ASSERT_OK(mkdir(path("chain"), 0755));
        ASSERT_OK(mkdir(path("target"), 0755));
        ASSERT_OK(rename(path("policy.conf"), path("elsewhere/policy.conf")));
        ASSERT_OK(symlink("elsewhere/policy.conf", path("policy.conf")));
        ASSERT_OK(rename(path("policy.d/10-b.conf"), path("target/10-b.conf")));
        ASSERT_OK(symlink(path("chain/10-b.conf"), path("policy.d/10-b.conf")));
        ASSERT_OK(symlink("../target/10-b.conf", path("chain/10-b.conf")));
        f = load(false);
        ASSERT_TRUE(watched(f, "elsewhere"));
        ASSERT_TRUE(watched(f, "chain"));
        ASSERT_TRUE(watched(f, "target"));
        ASSERT_EQ(n_watched(f), N_OWN_DIRS + 3);
        ASSERT_FALSE(files_on_disk_links_unwatched(f));
        ASSERT_STREQ(check(f, LATER), "");
        replace_text("elsewhere/policy.conf", "[Client:a]\nUsers=root\nDevices=0000:01:00.1\n");
        write_text("target/10-b.conf", DROPIN "# edited\n");
        ASSERT_STREQ(check(f, LATER), "policy.conf policy.d/10-b.conf");
        unlink(path("policy.d/10-b.conf"));
        unlink(path("chain/10-b.conf"));
        unlink(path("target/10-b.conf"));
        unlink(path("elsewhere/policy.conf"));
        unlink(path("elsewhere/.tmp"));
        rmdir(path("elsewhere"));
        rmdir(path("chain"));
        rmdir(path("target"));
        cleanup(f);
}

/* Bounded: no more than FILES_ON_DISK_LINK_DIRS_MAX directories more, and none that others may
 * write (every user's change in it would start a check); past them the files are checked every
 * so often instead (files_on_disk_links_unwatched()). */
TEST(symlink_targets_past_the_bound_or_others_may_write_are_not_watched) {
        char name[64], target[64];
        FilesOnDisk *f;

        setup();
        ASSERT_OK(mkdir(path("sticky"), 01777));
        ASSERT_OK(chmod(path("sticky"), 01777));
        ASSERT_OK(rename(path("policy.conf"), path("sticky/policy.conf")));
        ASSERT_OK(symlink("sticky/policy.conf", path("policy.conf")));
        f = load(false);
        ASSERT_FALSE(watched(f, "sticky"));
        ASSERT_EQ(n_watched(f), N_OWN_DIRS);
        ASSERT_TRUE(files_on_disk_links_unwatched(f));
        f = files_on_disk_free(f);
        ASSERT_OK(unlink(path("policy.conf")));
        ASSERT_OK(rename(path("sticky/policy.conf"), path("policy.conf")));

        for (unsigned i = 0; i <= FILES_ON_DISK_LINK_DIRS_MAX; i++) {
                snprintf(name, sizeof(name), "d%u", i);
                ASSERT_OK(mkdir(path(name), 0755));
                snprintf(target, sizeof(target), "d%u/%u.conf", i, i);
                write_text(target, DROPIN);
                snprintf(name, sizeof(name), "policy.d/%u.conf", i);
                snprintf(target, sizeof(target), "../d%u/%u.conf", i, i);
                ASSERT_OK(symlink(target, path(name)));
        }
        f = load(false);
        ASSERT_EQ(n_watched(f), N_OWN_DIRS + FILES_ON_DISK_LINK_DIRS_MAX);
        ASSERT_TRUE(files_on_disk_links_unwatched(f));
        for (unsigned i = 0; i <= FILES_ON_DISK_LINK_DIRS_MAX; i++) {
                snprintf(name, sizeof(name), "policy.d/%u.conf", i);
                unlink(path(name));
                snprintf(name, sizeof(name), "d%u/%u.conf", i, i);
                unlink(path(name));
                snprintf(name, sizeof(name), "d%u", i);
                rmdir(path(name));
        }
        rmdir(path("sticky"));
        cleanup(f);
}

TEST_MAIN();
