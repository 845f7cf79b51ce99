/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker's bounding set is empty up to the last capability of the running kernel, not of
 * the headers tsmd was built with: worker-spawn.c is built here with headers that know fewer
 * (cap-headers-older.h), as on a kernel newer than the build. The worker is a shell that writes
 * its CapBnd line to the channel. And so when neither /proc nor PR_CAPBSET_READ says which is
 * the kernel's last.
 */

#include <endian.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pwd.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "capability.h"
#include "harness.h"
#include "worker-spawn.h"

/* Starts the worker, a shell, and checks its bounding set is empty. */
static void check_worker_bounding_set(const struct passwd *pw) {
        char *argv[] = { (char *) "sh", (char *) "-c", (char *) "grep CapBnd /proc/self/status >&3", NULL };
        _cleanup_close_ int sh = -EBADF;
        char buf[128] = "";
        unsigned long long bnd;
        int pair[2], status;
        ssize_t n;
        pid_t pid;

        sh = open("/bin/sh", O_PATH | O_CLOEXEC);
        ASSERT_TRUE(sh >= 0);
        ASSERT_OK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair));
        ASSERT_OK(worker_spawn(sh, argv, pair[1], -EBADF, pw->pw_uid, pw->pw_gid, &pid));
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

static const struct passwd *worker_user(void) {
        const struct passwd *pw;

        if (geteuid() != 0)
                SKIP("starting a worker as another user needs root");
        pw = getpwnam("nobody");
        if (!pw)
                SKIP("no user 'nobody'");
        return pw;
}

TEST(bounding_set_empty_up_to_the_kernels_last_capability) {
        const struct passwd *pw = worker_user();

        /* The headers here know fewer than the kernel, or this test shows nothing. */
        ASSERT_TRUE(prctl(PR_CAPBSET_READ, CAP_LAST_CAP + 1, 0, 0, 0) >= 0);
        check_worker_bounding_set(pw);
}

/* /proc/sys/kernel/cap_last_cap reads empty from now on in this test's process. */
static void hide_cap_last_cap(void) {
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                SKIP("no mount namespace of our own: %s", strerror(errno));
        ASSERT_OK(mount("/dev/null", "/proc/sys/kernel/cap_last_cap", NULL, MS_BIND, NULL));
}

/* PR_CAPBSET_READ fails with EPERM from now on, as under a seccomp filter that refuses it. */
static void refuse_capbset_read(void) {
        struct sock_filter filter[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_prctl, 0, 3),
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]) +
                                                   (__BYTE_ORDER == __BIG_ENDIAN ? 4 : 0)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PR_CAPBSET_READ, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = { .len = ELEMENTSOF(filter), .filter = filter };

        ASSERT_OK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0));
        ASSERT_TRUE(prctl(PR_CAPBSET_READ, 0, 0, 0, 0) < 0 && errno == EPERM);
}

/* Without /proc, the kernel's last is probed: where PR_CAPBSET_READ says EINVAL. */
TEST(last_capability_probed_without_proc) {
        char buf[16] = "";
        FILE *f;

        f = fopen("/proc/sys/kernel/cap_last_cap", "re");
        if (!f)
                SKIP("no /proc/sys/kernel/cap_last_cap to compare with");
        ASSERT_NOT_NULL(fgets(buf, sizeof(buf), f));
        fclose(f);
        if (geteuid() != 0)
                SKIP("hiding /proc/sys/kernel/cap_last_cap needs root");
        hide_cap_last_cap();
        ASSERT_EQ(capability_last_cap(), (cap_value_t) atoi(buf));
}

/* Neither /proc nor the probe (a seccomp filter refusing it): every capability a set can hold is
 * dropped, not capability 0 only, and those past the kernel's last do not stop the worker. */
TEST(bounding_set_empty_when_the_last_capability_cannot_be_found) {
        const struct passwd *pw = worker_user();

        hide_cap_last_cap();
        refuse_capbset_read();
        ASSERT_EQ(capability_last_cap(), (cap_value_t) CAPABILITY_LAST_POSSIBLE);
        check_worker_bounding_set(pw);
}

TEST_MAIN();
