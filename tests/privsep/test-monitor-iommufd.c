/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Which fds the monitor hands out as iommufds and which it accepts back: the IOMMU device
 * (played by /dev/null, a character device anyone may open), the emulated platform's sealed
 * memfd when there is none, and everything else refused. Runs in: tests.
 */

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>

#include <event2/event.h>

#include "harness.h"
#include "monitor-iommufd.h"
#include "tsm-platform.h"

typedef struct Platform {
        struct event_base *base;
        TsmPlatform *p;
} Platform;

static int platform_new(TsmPlatformMode mode, const char *iommu_device, Platform *ret) {
        TsmPlatformConfig config = { .mode = mode, .iommu_device = (char *) iommu_device };
        int r;

        ret->base = event_base_new();
        ASSERT_NOT_NULL(ret->base);
        r = tsm_platform_new(ret->base, &config, &ret->p);
        if (r < 0)
                event_base_free(ret->base);
        return r;
}

static void platform_done(Platform *p) {
        tsm_platform_free(p->p);
        event_base_free(p->base);
}

/* Fds that are never iommufds. */
static void refuses_junk(TsmPlatform *p, int expected) {
        int fds[2], fd;

        ASSERT_OK(pipe2(fds, O_CLOEXEC));
        ASSERT_ERRNO(monitor_iommufd_verify(p, fds[0]), expected);
        close(fds[0]);
        close(fds[1]);

        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
        ASSERT_ERRNO(monitor_iommufd_verify(p, fds[0]), expected);
        close(fds[0]);
        close(fds[1]);

        fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_OK(fd);
        ASSERT_ERRNO(monitor_iommufd_verify(p, fd), expected);
        close(fd);

        /* A memfd of the right name without the seals, and one with them but another name. */
        fd = memfd_create("tsmd-emulated-iommufd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        ASSERT_OK(fd);
        ASSERT_ERRNO(monitor_iommufd_verify(p, fd), expected);
        close(fd);
        fd = memfd_create("something-else", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        ASSERT_OK(fd);
        ASSERT_OK(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL));
        ASSERT_ERRNO(monitor_iommufd_verify(p, fd), expected);
        close(fd);

        ASSERT_ERRNO(monitor_iommufd_verify(p, -1), EBADF);
}

TEST(emulated_stand_in) {
        Platform p;
        int fd;

        ASSERT_OK(platform_new(TSM_PLATFORM_EMULATED, "/nonexistent/tsmd-test-iommu", &p));
        ASSERT_OK(monitor_iommufd_open(p.p, &fd));
        ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        ASSERT_EQ(fcntl(fd, F_GET_SEALS), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
        ASSERT_ERRNO(write(fd, "x", 1) < 0 ? -errno : 0, EPERM); /* inert */
        ASSERT_OK(monitor_iommufd_verify(p.p, fd));
        close(fd);
        refuses_junk(p.p, EBADF);
        platform_done(&p);
}

TEST(iommu_device) {
        Platform p;
        int fd, other;

        /* Whatever the platform, an IOMMU device that exists is what is handed out. */
        ASSERT_OK(platform_new(TSM_PLATFORM_EMULATED, "/dev/null", &p));
        ASSERT_OK(monitor_iommufd_open(p.p, &fd));
        ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        ASSERT_OK(monitor_iommufd_verify(p.p, fd));
        other = open("/dev/null", O_RDWR | O_CLOEXEC);
        ASSERT_OK(monitor_iommufd_verify(p.p, other)); /* the same device, opened elsewhere */
        close(other);
        /* SECURITY: the same device, but not open for reading and writing: an O_PATH fd passes
         * fstat() as the device, yet is no iommufd. */
        other = open("/dev/null", O_PATH | O_CLOEXEC);
        ASSERT_ERRNO(monitor_iommufd_verify(p.p, other), EACCES);
        close(other);
        other = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ASSERT_ERRNO(monitor_iommufd_verify(p.p, other), EACCES);
        close(other);
        other = open("/dev/null", O_WRONLY | O_CLOEXEC);
        ASSERT_ERRNO(monitor_iommufd_verify(p.p, other), EACCES);
        close(other);
        close(fd);

        /* The stand-in is not accepted where there is a real device. */
        fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
        ASSERT_ERRNO(monitor_iommufd_verify(p.p, fd), EBADF); /* another character device */
        close(fd);
        platform_done(&p);

        ASSERT_OK(platform_new(TSM_PLATFORM_EMULATED, "/nonexistent/tsmd-test-iommu", &p));
        ASSERT_OK(monitor_iommufd_open(p.p, &fd));
        platform_done(&p);
        ASSERT_OK(platform_new(TSM_PLATFORM_EMULATED, "/dev/null", &p));
        ASSERT_ERRNO(monitor_iommufd_verify(p.p, fd), EBADF);
        close(fd);
        refuses_junk(p.p, EBADF);
        platform_done(&p);
}

/* SECURITY: root opens IommuDevice= read-write and hands what it opened to every VMM: a path
 * that names anything but the IOMMU's device (or the inert null and zero devices) is refused
 * (-ENODEV), never opened for writing: a regular file (/etc/shadow by mistake), a directory, a
 * FIFO, a socket, another character device. */
TEST(iommu_device_must_be_the_iommu) {
        char dir[] = "/tmp/test-monitor-iommufd-XXXXXX";
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char file[64], fifo[64], socket_path[64], block[64];
        const char *paths[6];
        struct stat before, after;
        int fd, sock;

        ASSERT_NOT_NULL(mkdtemp(dir));
        snprintf(file, sizeof(file), "%s/file", dir);
        snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
        snprintf(socket_path, sizeof(socket_path), "%s/socket", dir);
        paths[0] = file;
        paths[1] = dir;
        paths[2] = fifo;
        paths[3] = socket_path;
        paths[4] = "/dev/urandom";
        /* A block device with /dev/null's numbers (a RAM disk's): the numbers are a character
         * device's only. */
        snprintf(block, sizeof(block), "%s/block", dir);
        paths[5] = block;
        fd = open(paths[0], O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        ASSERT_OK(fd);
        ASSERT_EQ(write(fd, "root:secret\n", 12), 12);
        close(fd);
        ASSERT_OK(mkfifo(paths[2], 0600));
        if (mknod(paths[5], S_IFBLK | 0600, makedev(1, 3)) < 0) {
                ASSERT_TRUE(errno == EPERM); /* no CAP_MKNOD here: a regular file stands in */
                fd = open(paths[5], O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                ASSERT_OK(fd);
                close(fd);
        }
        sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_OK(sock);
        strcpy(sa.sun_path, paths[3]);
        ASSERT_OK(bind(sock, (struct sockaddr *) &sa, sizeof(sa)));
        ASSERT_OK(stat(paths[0], &before));

        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                for (int mode = 0; mode < 2; mode++) {
                        Platform p;

                        if (platform_new(mode ? TSM_PLATFORM_KERNEL : TSM_PLATFORM_EMULATED, paths[i], &p) < 0)
                                continue; /* no kernel platform here */
                        fd = -EBADF;
                        ASSERT_ERRNO(monitor_iommufd_open(p.p, &fd), ENODEV);
                        ASSERT_EQ(fd, -EBADF);
                        platform_done(&p);
                }
        ASSERT_OK(stat(paths[0], &after));
        ASSERT_EQ(after.st_size, before.st_size);

        /* The stand-ins still are. */
        {
                Platform p;

                ASSERT_OK(platform_new(TSM_PLATFORM_EMULATED, "/dev/zero", &p));
                ASSERT_OK(monitor_iommufd_open(p.p, &fd));
                close(fd);
                platform_done(&p);
        }
        close(sock);
        unlink(paths[5]);
        unlink(paths[3]);
        unlink(paths[2]);
        unlink(paths[0]);
        rmdir(dir);
}

TEST(no_iommu_not_emulated) {
        Platform p;
        int fd;

        /* The kernel platform scans sysfs; where that fails here, there is nothing to test. */
        if (platform_new(TSM_PLATFORM_KERNEL, "/nonexistent/tsmd-test-iommu", &p) < 0)
                SKIP("no kernel platform here");
        if (tsm_platform_is_emulated(p.p)) {
                platform_done(&p);
                SKIP("kernel mode served the emulated platform");
        }
        ASSERT_ERRNO(monitor_iommufd_open(p.p, &fd), ENOENT);
        fd = memfd_create("tsmd-emulated-iommufd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        ASSERT_OK(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL));
        ASSERT_ERRNO(monitor_iommufd_verify(p.p, fd), ENODEV);
        close(fd);
        refuses_junk(p.p, ENODEV);
        platform_done(&p);
}

TEST_MAIN();
