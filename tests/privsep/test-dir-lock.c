/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dir_lock_as(): one holder of a directory at a time, opened as another user, and the caller's
 * parent-death signal kept across the file system uid it borrows. Runs in: tests.
 */

#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dir-lock.h"
#include "harness.h"
#include "macro.h"
#include "tsmd-fixture.h"

#define OTHER_UID 65534

static const char *other_users_dir(void) {
        const char *dir = scratch_dir(), *path = strf("%s/locked", dir);

        ASSERT_OK(chmod(dir, 0755));
        ASSERT_OK(mkdir(path, 0700));
        ASSERT_OK(chown(path, OTHER_UID, OTHER_UID));
        return strdup(path);
}

/* Locked once; a second try (another open of it, as a second tsmd's would be) is -EBUSY until
 * the first is closed. */
TEST(one_holder_at_a_time) {
        _cleanup_free_ char *path = NULL;
        int fd, fd2;

        if (geteuid() != 0)
                SKIP("needs root to open a directory as another user");
        path = (char *) other_users_dir();
        ASSERT_OK(dir_lock_as(path, OTHER_UID, &fd));
        ASSERT_ERRNO(dir_lock_as(path, OTHER_UID, &fd2), EBUSY);
        close(fd);
        ASSERT_OK(dir_lock_as(path, OTHER_UID, &fd2));
        close(fd2);
        /* Not a symlink's target. */
        ASSERT_OK(symlink(path, strf("%s.link", path)));
        ASSERT_ERRNO(dir_lock_as(strf("%s.link", path), OTHER_UID, &fd), ENOTDIR);
}

/* A fixture or supervisor that started us with a parent-death signal keeps it: the kernel clears
 * it when the file system uid changes. */
TEST(parent_death_signal_survives) {
        _cleanup_free_ char *path = NULL;
        int fd, sig = 0;

        if (geteuid() != 0)
                SKIP("needs root to open a directory as another user");
        path = (char *) other_users_dir();
        ASSERT_OK(prctl(PR_SET_PDEATHSIG, SIGTERM));
        ASSERT_OK(dir_lock_as(path, OTHER_UID, &fd));
        ASSERT_OK(prctl(PR_GET_PDEATHSIG, &sig));
        ASSERT_EQ(sig, SIGTERM);
        close(fd);
        /* And none set, none made. */
        ASSERT_OK(prctl(PR_SET_PDEATHSIG, 0));
        ASSERT_OK(dir_lock_as(path, OTHER_UID, &fd));
        ASSERT_OK(prctl(PR_GET_PDEATHSIG, &sig));
        ASSERT_EQ(sig, 0);
        close(fd);
}

TEST_MAIN();
