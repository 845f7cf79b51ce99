/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Sandbox and fixture setup for the platform tests (see platform-test-util.h). Runs in: tests. */

#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "discovery.h"
#include "harness.h"
#include "macro.h"
#include "platform-test-util.h"
#include "sysfs-fixture.h"

static struct stat original_netns;

void platform_test_sandbox(bool with_net) {
        if (stat("/proc/self/ns/net", &original_netns) < 0)
                TEST_FAIL("stat /proc/self/ns/net: %s", strerror(errno));
        if (geteuid() != 0)
                SKIP("needs root (mount and network namespaces, bind mount over /sys)");

        if (unshare(CLONE_NEWNS | (with_net ? CLONE_NEWNET : 0)) < 0) {
                if (errno == EPERM || errno == EINVAL || errno == ENOSYS)
                        SKIP("cannot create private namespaces: %s", strerror(errno));
                TEST_FAIL("unshare: %s", strerror(errno));
        }
        /* Nothing mounted from here on may propagate to the host. */
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                TEST_FAIL("making / private: %s", strerror(errno));
}

bool platform_test_udev_monitor_possible(void) {
        _cleanup_free_ char *line = NULL;
        size_t allocated = 0;
        bool found = false;
        FILE *f;

        if (access("/run/udev/control", F_OK) >= 0)
                return true;
        f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return false;
        while (!found && getline(&line, &allocated, f) >= 0) {
                char mountpoint[256], fstype[64];
                const char *sep = strstr(line, " - ");

                if (sep && sscanf(line, "%*s %*s %*s %*s %255s", mountpoint) == 1 &&
                    sscanf(sep, " - %63s", fstype) == 1)
                        found = streq(mountpoint, "/dev") && streq(fstype, "devtmpfs");
        }
        fclose(f);
        return found;
}

void platform_test_fake_udevd(bool running) {
        if (mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
                TEST_FAIL("mount tmpfs on /run: %s", strerror(errno));
        if (!running)
                return;
        if (mkdir("/run/udev", 0755) < 0)
                TEST_FAIL("mkdir /run/udev: %s", strerror(errno));
        int fd = open("/run/udev/control", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

        if (fd < 0)
                TEST_FAIL("create /run/udev/control: %s", strerror(errno));
        close(fd);
}

void platform_test_deny_netlink(void) {
        /* Test-only, so no architecture check: the test makes no foreign system calls. The
         * domain is an int, the low word of the first argument. */
        static const struct sock_filter filter[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 3),
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                         offsetof(struct seccomp_data, args[0]) + (__BYTE_ORDER == __BIG_ENDIAN ? 4 : 0)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_NETLINK, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAFNOSUPPORT),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        const struct sock_fprog prog = {
                .len = ELEMENTSOF(filter),
                .filter = (struct sock_filter *) filter,
        };

        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                TEST_FAIL("PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
                if (errno == ENOSYS || errno == EINVAL)
                        SKIP("no seccomp filters: %s", strerror(errno));
                TEST_FAIL("seccomp: %s", strerror(errno));
        }
}

bool platform_test_netns_is_private(void) {
        struct stat now;

        if (stat("/proc/self/ns/net", &now) < 0)
                TEST_FAIL("stat /proc/self/ns/net: %s", strerror(errno));
        return now.st_dev != original_netns.st_dev || now.st_ino != original_netns.st_ino;
}

const char *platform_test_fixture(const char *name, const char *text) {
        static char root[] = "/tmp/tsmd-sysfs-XXXXXX";
        char path[PATH_MAX];
        int r;

        if (!mkdtemp(root))
                TEST_FAIL("mkdtemp: %s", strerror(errno));
        /* Empty again outside this mount namespace, where the runner removes it. */
        test_remove_at_end(root);
        /* A private tmpfs on the fixture directory only: the tree vanishes with the mount
         * namespace, and the source tree (which may itself live under /tmp) stays visible. */
        if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
                TEST_FAIL("tmpfs on %s: %s", root, strerror(errno));

        if (name) {
                snprintf(path, sizeof(path), "%s/%s.sysfs", PLATFORM_FIXTURE_DIR, name);
                r = sysfs_fixture_apply_file(root, path);
        } else
                r = sysfs_fixture_apply_text(root, text);
        if (r < 0)
                TEST_FAIL("building fixture %s: %s", name ?: "(text)", strerror(-r));

        r = discovery_enter_sysfs_root(root);
        if (r == -EPERM)
                SKIP("cannot bind a fixture over /sys: %s", strerror(-r));
        if (r <= 0)
                TEST_FAIL("discovery_enter_sysfs_root: %s", r < 0 ? strerror(-r) : "did nothing");

        return root;
}
