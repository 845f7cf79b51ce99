/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker's bounding set is empty up to the last capability of the running kernel, not of
 * the headers tsmd was built with: worker-spawn.c is built here with headers that know fewer
 * (cap-headers-older.h), as on a kernel newer than the build. The worker is a shell that writes
 * its CapBnd line to the channel.
 */

#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "harness.h"
#include "worker-spawn.h"

TEST(bounding_set_empty_up_to_the_kernels_last_capability) {
        char *argv[] = { (char *) "sh", (char *) "-c", (char *) "grep CapBnd /proc/self/status >&3", NULL };
        _cleanup_close_ int sh = -EBADF;
        char buf[128] = "";
        unsigned long long bnd;
        const struct passwd *pw;
        int pair[2], status;
        ssize_t n;
        pid_t pid;

        if (geteuid() != 0)
                SKIP("starting a worker as another user needs root");
        pw = getpwnam("nobody");
        if (!pw)
                SKIP("no user 'nobody'");
        /* The headers here know fewer than the kernel, or this test shows nothing. */
        ASSERT_TRUE(prctl(PR_CAPBSET_READ, CAP_LAST_CAP + 1, 0, 0, 0) >= 0);

        sh = open("/bin/sh", O_PATH | O_CLOEXEC);
        ASSERT_TRUE(sh >= 0);
        ASSERT_OK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair));
        ASSERT_OK(worker_spawn(sh, argv, pair[1], pw->pw_uid, pw->pw_gid, &pid));
        safe_close(pair[1]);
        n = recv(pair[0], buf, sizeof(buf) - 1, 0);
        safe_close(pair[0]);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(n > 0);
        buf[strcspn(buf, "\n")] = 0;
        ASSERT_EQ(sscanf(buf, "CapBnd: %llx", &bnd), 1);
        if (bnd != 0)
                TEST_FAIL("the worker's bounding set is not empty: %s", buf);
}

TEST_MAIN();
