/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Telling the fds whose close may wait on a FUSE server (fd-fuse.h). Runs in: monitor and worker. */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fd-fuse.h"
#include "macro.h"

/* A mount table is read whole; one larger than this (a million mounts) is read that far. */
#define MOUNTINFO_MAX (256U * 1024U * 1024U)

typedef struct MountDev {
        dev_t dev;
        bool fuse; /* or another type whose close may wait on a server */
} MountDev;

static struct {
        pthread_mutex_t lock;
        int mountinfo;  /* /proc/self/mountinfo: polls POLLPRI once the mount table changed */
        int poll_probe; /* an epoll instance, to learn which files poll (file_polls()) */
        bool loaded;    /* devs is the table as of the last change polled */
        MountDev *devs; /* sorted by dev */
        size_t n_devs;
        char *buf;
        size_t allocated;
} table = {
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .mountinfo = -EBADF,
        .poll_probe = -EBADF,
};

static int dev_compare(const void *a, const void *b) {
        const MountDev *x = a, *y = b;

        return x->dev < y->dev ? -1 : x->dev > y->dev;
}

/* fuse, fuseblk, and either with a subtype (fuse.sshfs). */
static bool fstype_is_fuse(const char *t, size_t len) {
        if (len < 4 || memcmp(t, "fuse", 4) != 0)
                return false;
        t += 4, len -= 4;
        if (len >= 3 && memcmp(t, "blk", 3) == 0)
                t += 3, len -= 3;
        return len == 0 || *t == '.';
}

/* SECURITY: these write a file's dirty pages back at its close (their flush) and wait for the
 * server, or for a daemon of their own (coda, orangefs; virtiofs is FUSE's): as long as the data
 * takes to go over the network, for ever on a hard mount whose server is gone. A client that
 * writes gigabytes to a file of one and passes it would hold whoever closes it. */
static bool fstype_flushes_to_a_server(const char *t, size_t len) {
        static const char *const types[] = {
                "nfs", "nfs4", "cifs", "smb3", "9p", "ceph", "afs", "coda", "orangefs",
                "virtiofs", "gfs2", "ocfs2", "lustre",
        };

        for (size_t i = 0; i < ELEMENTSOF(types); i++)
                if (strlen(types[i]) == len && memcmp(t, types[i], len) == 0)
                        return true;
        return false;
}

/* One line of mountinfo: "36 35 98:0 /root /mnt opts [optional...] - fstype source superopts".
 * Paths escape their spaces, so " - " ends the optional fields. */
static bool parse_line(const char *line, MountDev *ret) {
        unsigned major, minor;
        const char *sep, *type;
        size_t len;

        if (sscanf(line, "%*u %*u %u:%u", &major, &minor) != 2)
                return false;
        sep = strstr(line, " - ");
        if (!sep)
                return false;
        type = sep + 3;
        len = strcspn(type, " ");
        *ret = (MountDev){
                .dev = makedev(major, minor),
                .fuse = fstype_is_fuse(type, len) || fstype_flushes_to_a_server(type, len),
        };
        return true;
}

/* Reads the table anew. With the lock held. */
static int table_load(void) {
        _cleanup_free_ MountDev *devs = NULL;
        size_t size = 0, n = 0, allocated = 0;
        ssize_t k;

        table.loaded = false;
        table.n_devs = 0;
        if (lseek(table.mountinfo, 0, SEEK_SET) < 0)
                return negative_errno();
        for (;;) {
                if (size + 1 >= table.allocated) { /* room for a NUL after the last line */
                        size_t m = MAX(table.allocated * 2, (size_t) 64 * 1024);
                        char *p;

                        if (m > MOUNTINFO_MAX)
                                break;
                        p = realloc(table.buf, m);
                        if (!p)
                                return -ENOMEM;
                        table.buf = p;
                        table.allocated = m;
                }
                k = read(table.mountinfo, table.buf + size, table.allocated - size - 1);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return negative_errno();
                if (k == 0)
                        break;
                size += (size_t) k;
        }

        table.buf[size] = 0;
        for (char *p = table.buf, *end = table.buf + size; p < end;) {
                char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t len = nl ? (size_t) (nl - p) : (size_t) (end - p);
                MountDev d;

                p[len] = 0;
                if (parse_line(p, &d)) {
                        if (!GREEDY_REALLOC(devs, allocated, n + 1))
                                return -ENOMEM;
                        devs[n++] = d;
                }
                p += len + 1;
        }

        /* One dev may be mounted many times: FUSE if any says so. */
        if (n > 0)
                qsort(devs, n, sizeof(MountDev), dev_compare);
        size_t u = 0;
        for (size_t i = 0; i < n; i++) {
                if (u > 0 && devs[u - 1].dev == devs[i].dev)
                        devs[u - 1].fuse = devs[u - 1].fuse || devs[i].fuse;
                else
                        devs[u++] = devs[i];
        }
        free(table.devs);
        table.devs = TAKE_PTR(devs);
        table.n_devs = u;
        table.loaded = true;
        return 0;
}

int fd_fuse_start(void) {
        int r;

        pthread_mutex_lock(&table.lock);
        if (table.mountinfo < 0) {
                table.mountinfo = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
                r = table.mountinfo < 0 ? negative_errno() : table_load();
        } else
                r = 0;
        if (table.poll_probe < 0) {
                table.poll_probe = epoll_create1(EPOLL_CLOEXEC);
                if (table.poll_probe < 0 && r >= 0)
                        r = negative_errno();
        }
        pthread_mutex_unlock(&table.lock);
        return r;
}

void fd_fuse_stop(void) {
        pthread_mutex_lock(&table.lock);
        table.mountinfo = safe_close(table.mountinfo);
        table.poll_probe = safe_close(table.poll_probe);
        table.devs = mfree(table.devs);
        table.n_devs = 0;
        table.buf = mfree(table.buf);
        table.allocated = 0;
        table.loaded = false;
        pthread_mutex_unlock(&table.lock);
}

/* SECURITY: device numbers of mounts gone are given to new ones (a client's FUSE mount may get
 * the number of a tmpfs unmounted): the table is read anew whenever the kernel says it changed,
 * before any look-up, and a file that came from a mount of ours was mounted before we looked.
 * That bounds the reading too: once per change of the mount table, not per fd. */
static bool dev_may_be_fuse(dev_t dev) {
        struct pollfd p = { .events = POLLPRI };
        const MountDev *d;
        bool fuse = true;

        pthread_mutex_lock(&table.lock);
        p.fd = table.mountinfo;
        if (p.fd >= 0 && ((poll(&p, 1, 0) > 0 && (p.revents & (POLLPRI | POLLERR))) || !table.loaded))
                (void) table_load();
        if (table.loaded) {
                d = bsearch(&(MountDev){ .dev = dev }, table.devs, table.n_devs, sizeof(MountDev), dev_compare);
                /* None of ours: a mount namespace of the client's own may have FUSE mounts. */
                fuse = !d || d->fuse;
        }
        pthread_mutex_unlock(&table.lock);
        return fuse;
}

int fd_is_device_or_memfd(int fd) {
        struct stat st;
        int r;

        r = fstat_cached(fd, &st);
        if (r < 0)
                return r;
        return S_ISCHR(st.st_mode) || (S_ISREG(st.st_mode) && fcntl(fd, F_GET_SEALS) >= 0);
}

void fd_socket_drop_linger(int fd) {
        socklen_t len = sizeof(int);
        int domain;

        /* ENOTSOCK for any other file. Errors of setsockopt() ignored: not every family takes
         * SO_LINGER (one that does not, does not linger either). */
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 || domain == AF_UNIX)
                return;
        (void) setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){ .l_onoff = 1, .l_linger = 0 },
                          sizeof(struct linger));
}

/* Whether fd's file has a poll method: epoll takes only files that do (EPERM for the rest), and
 * neither adding nor removing one waits on any other instance watching it. Unsure (no instance,
 * no memory, the user's limit of watches): it does. The instance is the process's own, for the
 * probes alone, under the table's lock; before fd_fuse_start(), one for this probe. */
static bool file_polls(int fd) {
        _cleanup_close_ int own = -EBADF;
        struct epoll_event ev = {};
        bool polls = true;
        int probe;

        pthread_mutex_lock(&table.lock);
        probe = table.poll_probe >= 0 ? table.poll_probe : (own = epoll_create1(EPOLL_CLOEXEC));
        if (probe >= 0) {
                if (epoll_ctl(probe, EPOLL_CTL_ADD, fd, &ev) >= 0)
                        (void) epoll_ctl(probe, EPOLL_CTL_DEL, fd, NULL);
                else
                        polls = errno != EPERM;
        }
        pthread_mutex_unlock(&table.lock);
        return polls;
}

bool fd_may_reach_fuse(int fd) {
        struct stat st;
        int flags;

        /* Neither asks the file system. An O_PATH fd has no file operations to call. */
        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return false; /* no fd: its close fails at once */
        if (flags & O_PATH)
                return false;
        if (fstat_cached(fd, &st) < 0)
                return true;
        /* SECURITY: every socket may wait. A Unix socket's queue may hold files passed to it,
         * the last references to them among them, released with it where it is closed. Any
         * other's close may linger (SO_LINGER, which TCP, SCTP, vsock and Bluetooth honour: a TCP
         * socket with unsent data to a peer that never reads waits as long as its owner set). */
        if (S_ISSOCK(st.st_mode))
                return true;
        /* SECURITY: the last close of a pipe's end takes the pipe's lock, which a write() at the
         * other end holds while it copies from the writer's memory: a mapping of a file of a
         * FUSE file system the writer serves faults in when the server answers, if ever. */
        if (S_ISFIFO(st.st_mode))
                return true;
        /* SECURITY: the release of a file an epoll instance watches takes that instance's lock,
         * which epoll_wait() holds while it writes events to the waiter's memory, as long as the
         * same fault. Anonymous inodes (no type: eventfd, timerfd, signalfd, epoll, pidfd, ...)
         * can all be watched, and no client passes tsmd one for its use. (So can a device node
         * that polls: below.) */
        if ((st.st_mode & S_IFMT) == 0)
                return true;
        /* A device node opened from a FUSE mount gets the driver's file operations: FUSE's flush
         * is not among them. SECURITY: but one that polls (a tty, /dev/ptmx) may be watched by
         * an epoll instance as an anonymous inode may, and a serial tty's close waits for output
         * flow control holds: those may wait. The nodes tsmd takes (/dev/iommu, VFIO devices, the
         * emulated platform's /dev/null) do not poll, and close at once. */
        if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
                return file_polls(fd);
        /* Seals are had by shmem (memfd, tmpfs) and hugetlbfs files only, whatever mount they are
         * of: no flush reaches a server. */
        if (fcntl(fd, F_GET_SEALS) >= 0)
                return false;
        return dev_may_be_fuse(st.st_dev);
}
