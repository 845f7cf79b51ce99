/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Whether a read of a file saw it whole (daemon/policy/file-settle.c): a file renamed into place
 * or closed by its writer is taken at once, one a writer still holds open is read again and in
 * the end refused, as is one that changed while read. Runs in: tests.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file-settle.h"
#include "harness.h"
#include "macro.h"

static char dir[] = "/tmp/test-file-settle-XXXXXX";

static const char *path(const char *name) {
        static char buf[2][256];
        static unsigned i;
        char *p = buf[i++ % ELEMENTSOF(buf)];

        snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
        return p;
}

static void setup(void) {
        ASSERT_NOT_NULL(mkdtemp(dir));
        test_remove_at_end(dir);
}

/* A read of name: its fd (open still) in *ret_fd, its fstat() in *ret_st (the same before and
 * after: nothing writes in between). */
static void read_of(const char *name, int *ret_fd, struct stat *ret_st) {
        char buf[64];

        *ret_fd = open(path(name), O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(*ret_fd >= 0);
        ASSERT_TRUE(read(*ret_fd, buf, sizeof(buf)) >= 0);
        ASSERT_OK(fstat(*ret_fd, ret_st));
}

static int write_file(const char *name, const char *text) {
        int fd = open(path(name), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        return fd;
}

/* Written and closed, then renamed into place, in the clock tick of the write or not: whole. */
TEST(a_file_nobody_writes_is_taken_at_once) {
        FileSettle s = {};
        struct stat st;
        int fd;

        setup();
        safe_close(write_file(".new", "[Client:a]\nUsers=root\n"));
        ASSERT_OK(rename(path(".new"), path("policy.conf")));
        read_of("policy.conf", &fd, &st);
        ASSERT_EQ(file_settle_read(&s, fd, &st, &st), 1);
        safe_close(fd);
}

/* Its ctime past its mtime (cp -p, a rename after the write): whole, whatever holds it open. */
TEST(a_change_after_the_last_write_says_the_writing_is_done) {
        const struct timespec times[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_sec = 1000000000 } };
        FileSettle s = {};
        struct stat st;
        int fd, writer;

        setup();
        writer = write_file("policy.conf", "[Client:a]\nUsers=root\n");
        ASSERT_OK(futimens(writer, times));
        read_of("policy.conf", &fd, &st);
        ASSERT_EQ(file_settle_read(&s, fd, &st, &st), 1);
        safe_close(fd);
        safe_close(writer);
}

/* A writer holds it open, its last write just now: read again, and refused once the wait is
 * over (first_usec as if the first read were that long ago). */
TEST(a_file_open_for_writing_is_read_again_then_refused) {
        FileSettle s = {};
        struct stat st;
        uint64_t start;
        int fd, writer;

        setup();
        writer = write_file("policy.conf", "[Client:a]\nUsers=root\n");
        read_of("policy.conf", &fd, &st);
        start = now_monotonic_usec();
        ASSERT_EQ(file_settle_read(&s, fd, &st, &st), 0);
        /* It waited for the ctime to settle, not at once. */
        ASSERT_TRUE(now_monotonic_usec() > start + 10 * 1000);
        /* Written again meanwhile, and the wait over. */
        ASSERT_EQ(write(writer, "#\n", 2), 2);
        safe_close(fd);
        read_of("policy.conf", &fd, &st);
        s.first_usec = now_monotonic_usec() - FILE_SETTLE_WAIT_USEC;
        ASSERT_EQ(file_settle_read(&s, fd, &st, &st), -EBUSY);
        safe_close(fd);
        safe_close(writer);
}

/* Changed while read: read again, though nobody holds it open after. */
TEST(a_file_changed_while_read_is_read_again) {
        FileSettle s = {};
        struct stat before, after;
        int fd;

        setup();
        safe_close(write_file("policy.conf", "[Client:a]\n"));
        read_of("policy.conf", &fd, &before);
        after = before;
        after.st_size++;
        ASSERT_EQ(file_settle_read(&s, fd, &before, &after), 0);
        safe_close(fd);
}

TEST_MAIN()
