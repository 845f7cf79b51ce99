/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Telling the fds whose close may wait on a FUSE server (proto/fd-fuse.h), in a mount namespace
 * of the test's own (root, SKIP otherwise): a file of a FUSE mount (ours, one made after the
 * table was read, or one of another namespace), of a mount gone and a Unix socket does; O_PATH
 * fds, device nodes, memfds and files of other mounts do not. Every socket does (any but a Unix
 * one may linger on its peer), and so do pipes and anonymous inodes.
 * Runs in: tests.
 */

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>

#include "fd-fuse.h"
#include "fuse-hold.h"
#include "harness.h"
#include "lingering-tcp.h"

#define HOLD_USEC (10 * 1000000ull)

/* A mount namespace of our own, so that what the test mounts is nobody else's. */
static void own_mount_namespace(void) {
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                SKIP("no mount namespace of our own: %m");
}

/* Mounts fstype on a new directory under /tmp, with a file "f" in it: an fd of it. */
static int mount_with_file(const char *fstype, char dir[static sizeof("/tmp/tsmd-fd-fuse-XXXXXX")]) {
        char path[64];
        int fd;

        strcpy(dir, "/tmp/tsmd-fd-fuse-XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(dir));
        ASSERT_OK(mount(fstype, dir, fstype, 0, NULL));
        snprintf(path, sizeof(path), "%s/f", dir);
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        ASSERT_OK(fd);
        return fd;
}

static void unmount_dir(const char *dir) {
        ASSERT_OK(umount2(dir, MNT_DETACH));
        ASSERT_OK(rmdir(dir));
}

TEST(what_closes_at_once) {
        char tmpfs[sizeof("/tmp/tsmd-fd-fuse-XXXXXX")], ramfs[sizeof(tmpfs)];
        int fds[2], fd;

        own_mount_namespace();
        ASSERT_OK(fd_fuse_start());

        /* SECURITY: a pipe's close takes the pipe's lock, which a writer holds while it faults
         * in a page of a FUSE file it mapped (test-fd-closer, a_pipe_holds_its_closer_...). */
        ASSERT_OK(pipe2(fds, O_CLOEXEC));
        ASSERT_TRUE(fd_may_reach_fuse(fds[0]));
        ASSERT_TRUE(fd_may_reach_fuse(fds[1]));
        close_many(fds, 2);
        /* A Unix socket's queue may hold the last reference to a FUSE file passed to it
         * (test-monitor-dispatch, a_socket_holding_a_file_is_released_off_the_loop). */
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
        ASSERT_TRUE(fd_may_reach_fuse(fds[0]));
        close_many(fds, 2);
        /* SECURITY: any other socket's close may linger (SO_LINGER) on a peer that never reads. */
        ASSERT_OK(fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        ASSERT_TRUE(fd_may_reach_fuse(fd));
        close(fd);
        ASSERT_OK(fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        ASSERT_TRUE(fd_may_reach_fuse(fd));
        close(fd);
        fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 || errno != EAFNOSUPPORT) {
                ASSERT_OK(fd);
                ASSERT_TRUE(fd_may_reach_fuse(fd));
                close(fd);
        }
        ASSERT_OK(fd = open("/dev/null", O_RDWR | O_CLOEXEC));
        ASSERT_FALSE(fd_may_reach_fuse(fd));
        close(fd);
        /* SECURITY: a device node that polls may be watched by an epoll instance, whose
         * epoll_wait() holds the lock its release takes (as an anonymous inode's, below); one
         * that does not (/dev/iommu's iommufd_fops have no poll, nor /dev/null's) cannot. */
        fd = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd >= 0 || errno != ENOENT) {
                ASSERT_OK(fd);
                ASSERT_TRUE(fd_may_reach_fuse(fd));
                close(fd);
        }
        ASSERT_OK(fd = open("/dev/zero", O_RDONLY | O_CLOEXEC));
        ASSERT_FALSE(fd_may_reach_fuse(fd));
        close(fd);
        /* SECURITY: so does an epoll instance's, which watches the file, in the same fault. */
        ASSERT_OK(fd = eventfd(0, EFD_CLOEXEC));
        ASSERT_TRUE(fd_may_reach_fuse(fd));
        close(fd);
        ASSERT_OK(fd = memfd_create("tsmd-fd-fuse", MFD_CLOEXEC));
        ASSERT_FALSE(fd_may_reach_fuse(fd));
        close(fd);
        ASSERT_OK(fd = open("/", O_PATH | O_CLOEXEC));
        ASSERT_FALSE(fd_may_reach_fuse(fd));
        close(fd);
        /* No fd: its close fails at once. */
        ASSERT_FALSE(fd_may_reach_fuse(-EBADF));

        /* Files of mounts made after the table was read: it is read anew. tmpfs has seals,
         * ramfs none: that one is told by its mount's type. */
        fd = mount_with_file("tmpfs", tmpfs);
        ASSERT_FALSE(fd_may_reach_fuse(fd));
        close(fd);
        fd = mount_with_file("ramfs", ramfs);
        ASSERT_FALSE(fd_may_reach_fuse(fd));
        /* A mount gone, its device unknown: maybe a FUSE mount's now. */
        unmount_dir(ramfs);
        ASSERT_TRUE(fd_may_reach_fuse(fd));
        close(fd);
        unmount_dir(tmpfs);
        fd_fuse_stop();
}

TEST(what_may_wait) {
        char ramfs[sizeof("/tmp/tsmd-fd-fuse-XXXXXX")];
        FuseHold ours, theirs;
        int fd, r;

        own_mount_namespace();
        /* A file of another mount, read with the table, which then changes before each look. */
        fd = mount_with_file("ramfs", ramfs);
        ASSERT_OK(fd_fuse_start());
        ASSERT_FALSE(fd_may_reach_fuse(fd));
        close(fd);

        /* A FUSE mount of a namespace not ours: its device is none of ours. */
        r = fuse_hold_start(&theirs, NULL, 0, true, HOLD_USEC);
        if (r < 0)
                SKIP("no FUSE mount here: %s", strerror(-r));
        ASSERT_OK(fd = fuse_hold_open(&theirs, O_RDWR));
        ASSERT_TRUE(fd_may_reach_fuse(fd));
        close(fd);
        /* Opened O_PATH, it has no file operations of FUSE's. */
        ASSERT_OK(fd = fuse_hold_open(&theirs, O_PATH));
        ASSERT_FALSE(fd_may_reach_fuse(fd));
        close(fd);

        /* One of ours, mounted after the table was read: told by its type. */
        ASSERT_OK(fuse_hold_start_here(&ours, NULL, 0, HOLD_USEC));
        ASSERT_OK(fd = fuse_hold_open(&ours, O_RDONLY));
        ASSERT_TRUE(fd_may_reach_fuse(fd));
        close(fd);

        ASSERT_OK(umount2(ours.dir, MNT_DETACH));
        fuse_hold_stop(&ours);
        fuse_hold_stop(&theirs);
        unmount_dir(ramfs);
        fd_fuse_stop();
}

/* SECURITY: a lingering TCP socket (tests/lingering-tcp.h) may wait, and its linger can be
 * dropped; a Unix socket's is left alone, and a file that is no socket is none of its business. */
TEST(a_lingering_socket_may_wait_until_its_linger_is_dropped) {
        struct linger lg;
        socklen_t len = sizeof(lg);
        int fd = -EBADF, listener = -EBADF, pair[2];

        ASSERT_OK(fd_fuse_start());
        if (lingering_tcp(10, &fd, &listener) < 0)
                SKIP("no loopback TCP here");
        ASSERT_TRUE(fd_may_reach_fuse(fd));
        fd_socket_drop_linger(fd);
        ASSERT_OK(getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &len));
        ASSERT_EQ(lg.l_onoff, 1);
        ASSERT_EQ(lg.l_linger, 0);
        close(fd); /* at once: reset */
        close(listener);

        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair));
        fd_socket_drop_linger(pair[0]);
        len = sizeof(lg);
        ASSERT_OK(getsockopt(pair[0], SOL_SOCKET, SO_LINGER, &lg, &len));
        ASSERT_EQ(lg.l_onoff, 0);
        close_many(pair, 2);
        ASSERT_OK(pipe2(pair, O_CLOEXEC));
        fd_socket_drop_linger(pair[0]);
        ASSERT_TRUE(fcntl(pair[0], F_GETFD) >= 0);
        close_many(pair, 2);
        fd_fuse_stop();
}

/* Whether a file of a mount of type fstype (the one line of a mount table of the test's, bound
 * over /proc/self/mountinfo) may wait. */
static bool may_wait_as(int fd, const char *fstype) {
        char table[] = "/tmp/tsmd-fd-fuse-mountinfo-XXXXXX", proc[64];
        struct stat st;
        bool may_wait;
        FILE *f;
        int t;

        ASSERT_OK(fstat(fd, &st));
        ASSERT_OK(t = mkstemp(table));
        ASSERT_NOT_NULL(f = fdopen(t, "w"));
        fprintf(f, "1 0 %u:%u / /x rw shared:1 - %s server:/export rw\n", major(st.st_dev), minor(st.st_dev), fstype);
        ASSERT_OK(fclose(f));
        snprintf(proc, sizeof(proc), "/proc/%i/mountinfo", (int) getpid());
        if (mount(table, proc, NULL, MS_BIND, NULL) < 0)
                SKIP("cannot bind a mount table of ours over %s: %m", proc);
        ASSERT_OK(fd_fuse_start());
        may_wait = fd_may_reach_fuse(fd);
        fd_fuse_stop();
        ASSERT_OK(umount2(proc, MNT_DETACH));
        ASSERT_OK(unlink(table));
        return may_wait;
}

/* SECURITY: a network file system writes a file's dirty pages back to its server at close, and
 * waits for it: as long as the data takes, or for ever on a hard mount whose server is gone. */
TEST(a_file_of_a_network_file_system_may_wait) {
        char ramfs[sizeof("/tmp/tsmd-fd-fuse-XXXXXX")];
        int fd;

        own_mount_namespace();
        fd = mount_with_file("ramfs", ramfs);
        ASSERT_FALSE(may_wait_as(fd, "ramfs"));
        ASSERT_FALSE(may_wait_as(fd, "ext4"));
        ASSERT_FALSE(may_wait_as(fd, "nfsd")); /* the server's own, not a network file system */
        ASSERT_TRUE(may_wait_as(fd, "fuse.sshfs"));
        ASSERT_TRUE(may_wait_as(fd, "nfs"));
        ASSERT_TRUE(may_wait_as(fd, "nfs4"));
        ASSERT_TRUE(may_wait_as(fd, "cifs"));
        ASSERT_TRUE(may_wait_as(fd, "smb3"));
        ASSERT_TRUE(may_wait_as(fd, "9p"));
        ASSERT_TRUE(may_wait_as(fd, "ceph"));
        ASSERT_TRUE(may_wait_as(fd, "virtiofs"));
        close(fd);
        unmount_dir(ramfs);
}

/* Without the mount table (no /proc here), every file is taken for one of FUSE's. */
TEST(without_the_mount_table) {
        char ramfs[sizeof("/tmp/tsmd-fd-fuse-XXXXXX")];
        int fd, devnull;

        own_mount_namespace();
        fd = mount_with_file("ramfs", ramfs);
        ASSERT_OK(mount("none", "/proc", "tmpfs", 0, NULL));
        ASSERT_ERRNO(fd_fuse_start(), ENOENT);
        ASSERT_TRUE(fd_may_reach_fuse(fd));
        ASSERT_OK(devnull = open("/dev/null", O_RDONLY | O_CLOEXEC));
        ASSERT_FALSE(fd_may_reach_fuse(devnull));
        close(devnull);
        close(fd);
        fd_fuse_stop();
        ASSERT_OK(umount2("/proc", MNT_DETACH));
        unmount_dir(ramfs);
}

TEST_MAIN();
