/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A FUSE file system that keeps chosen processes waiting: a server on /dev/fuse (no libfuse)
 * for one regular file, "f", that never answers the requests of the processes the test names
 * (any of their threads): the FLUSH of a close(), the GETATTR of an fstat(), ... wait until the
 * server dies, when the kernel ends them with ENOTCONN. Everybody else's are answered. Tests
 * hand fds of "f" to tsmd, as a hostile VMM that serves its own file system would. Where the
 * test holds itself (it plays the code under test), it closes its own fds only after
 * fuse_hold_stop().
 *
 * Two processes: a keeper, which mounts the file system in a mount namespace of its own (the
 * mount is nobody else's business; fuse_hold_start_here(): in the test's, which the test made
 * its own) and opens "f" for the test, and its child the server. The
 * server dies with the keeper, at fuse_hold_stop(), and by itself after max_hold_usec, so that
 * a test whose code under test waits on it fails instead of hanging for ever.
 * Needs root and /dev/fuse: fuse_hold_start() returns -errno without them, for a SKIP.
 * Runs in: tests.
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"

typedef struct FuseHold {
        pid_t keeper;
        int sock; /* the test's end of the keeper's socket */
        char dir[sizeof("/tmp/tsmd-fuse-hold-XXXXXX")];
} FuseHold;

#define FUSE_HOLD_NODE_FILE 2

/* The process (thread group) a thread of it belongs to, from /proc: 0 if it is gone. */
static inline pid_t fuse_hold_tgid(pid_t tid) {
        char path[64], buf[1024];
        const char *p;
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%i/status", (int) tid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return 0;
        buf[n] = 0;
        p = strstr(buf, "\nTgid:");
        return p ? (pid_t) atoi(p + strlen("\nTgid:")) : 0;
}

static inline void fuse_hold_reply(int fuse, uint64_t unique, int error, const void *body, size_t len) {
        char buf[sizeof(struct fuse_out_header) + sizeof(struct fuse_entry_out)];
        struct fuse_out_header h = { .len = (uint32_t) (sizeof(h) + len), .error = error, .unique = unique };

        memcpy(buf, &h, sizeof(h));
        if (len > 0)
                memcpy(buf + sizeof(h), body, len);
        (void) !write(fuse, buf, h.len);
}

static inline void fuse_hold_attr(struct fuse_attr *a, uint64_t node) {
        *a = (struct fuse_attr){
                .ino = node,
                .mode = node == FUSE_ROOT_ID ? S_IFDIR | 0755 : S_IFREG | 0666,
                .nlink = 1,
                .blksize = 4096,
        };
}

/* The server: answers whatever anybody but the processes held asks (INIT and RELEASE whoever
 * asks), with attributes valid for no time, so that every fstat() asks again. With writeback,
 * the kernel caches writes (FUSE_WRITEBACK_CACHE) and the server never answers a WRITE or a
 * SETATTR, whoever asks: a page written stays under writeback, and whatever waits for it (a
 * close's FLUSH, the release of the last reference to any file of it) waits until the server
 * dies. */
_noreturn_ static inline void fuse_hold_serve(int fuse, const pid_t *held, size_t n_held, bool writeback) {
        /* The kernel wants room for its largest write (max_write before INIT is not ours). */
        static uint8_t buf[1 << 20];

        for (;;) {
                const struct fuse_in_header *h = (const void *) buf;
                const void *in = buf + sizeof(*h);
                ssize_t n = read(fuse, buf, sizeof(buf));

                if (n < 0 && (errno == EINTR || errno == ENOENT))
                        continue;
                if (n < (ssize_t) sizeof(*h))
                        _exit(n < 0 && errno == ENODEV ? 0 : 1); /* ENODEV: unmounted */
                /* Never answered: the kernel's writeback of the page waits, and so does that of
                 * the inode's times it cached (SETATTR). */
                if (writeback && (h->opcode == FUSE_WRITE || h->opcode == FUSE_SETATTR))
                        continue;
                if (h->opcode != FUSE_INIT && h->opcode != FUSE_RELEASE) {
                        pid_t tgid = fuse_hold_tgid((pid_t) h->pid);
                        bool hold = false;

                        for (size_t i = 0; i < n_held; i++)
                                hold = hold || tgid == held[i];
                        if (hold)
                                continue; /* never answered */
                }

                switch (h->opcode) {
                case FUSE_INIT: {
                        const struct fuse_init_in *i = in;
                        struct fuse_init_out o = {
                                .major = FUSE_KERNEL_VERSION,
                                .minor = 31,
                                .max_readahead = i->max_readahead,
                                .max_write = 4096,
                                .flags = writeback ? i->flags & FUSE_WRITEBACK_CACHE : 0,
                        };
                        fuse_hold_reply(fuse, h->unique, 0, &o, sizeof(o));
                        break;
                }
                case FUSE_LOOKUP: {
                        struct fuse_entry_out o = { .nodeid = FUSE_HOLD_NODE_FILE, .generation = 1 };

                        if (h->nodeid != FUSE_ROOT_ID || !streq((const char *) in, "f")) {
                                fuse_hold_reply(fuse, h->unique, -ENOENT, NULL, 0);
                                break;
                        }
                        fuse_hold_attr(&o.attr, FUSE_HOLD_NODE_FILE);
                        fuse_hold_reply(fuse, h->unique, 0, &o, sizeof(o));
                        break;
                }
                case FUSE_GETATTR: {
                        struct fuse_attr_out o = {};

                        fuse_hold_attr(&o.attr, h->nodeid);
                        fuse_hold_reply(fuse, h->unique, 0, &o, sizeof(o));
                        break;
                }
                case FUSE_OPEN:
                case FUSE_OPENDIR: {
                        struct fuse_open_out o = { .fh = 1 };

                        fuse_hold_reply(fuse, h->unique, 0, &o, sizeof(o));
                        break;
                }
                case FUSE_FLUSH:
                case FUSE_RELEASE:
                case FUSE_RELEASEDIR:
                        fuse_hold_reply(fuse, h->unique, 0, NULL, 0);
                        break;
                case FUSE_FORGET:
                case FUSE_BATCH_FORGET:
                case FUSE_INTERRUPT:
                        break; /* no answer is expected */
                default:
                        fuse_hold_reply(fuse, h->unique, -ENOSYS, NULL, 0);
                }
        }
}

static inline int fuse_hold_send_fd(int sock, int fd, int error) {
        union {
                struct cmsghdr c;
                uint8_t b[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct iovec iov = { .iov_base = &error, .iov_len = sizeof(error) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

        if (fd >= 0) {
                mh.msg_control = &control;
                mh.msg_controllen = sizeof(control.b);
                control.c.cmsg_level = SOL_SOCKET;
                control.c.cmsg_type = SCM_RIGHTS;
                control.c.cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(&control.c), &fd, sizeof(int));
        }
        return sendmsg(sock, &mh, MSG_NOSIGNAL) == sizeof(error) ? 0 : -errno;
}

/* The keeper: mounts, says how that went, then opens "f" with the flags the test asks for
 * until the test hangs up; then kills the server and waits for it. */
_noreturn_ static inline void fuse_hold_keep(int sock, const char *dir, const pid_t *held, size_t n_held,
                                             bool allow_other, uint64_t max_hold_usec, bool own_namespace,
                                             bool writeback) {
        char opts[128], path[sizeof(((FuseHold *) NULL)->dir) + 2];
        int fuse, flags, r = 0;
        pid_t server;

        if (own_namespace && (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0))
                r = -errno;
        fuse = r < 0 ? -1 : open("/dev/fuse", O_RDWR | O_CLOEXEC);
        if (r == 0 && fuse < 0)
                r = -errno;
        if (r < 0) {
                (void) fuse_hold_send_fd(sock, -1, r);
                _exit(0);
        }

        /* The mount does not wait for the server, which can read nothing before it (EPERM). */
        snprintf(opts, sizeof(opts), "fd=%i,rootmode=40000,user_id=0,group_id=0%s", fuse,
                 allow_other ? ",allow_other" : "");
        if (mount("tsmd-fuse-hold", dir, "fuse", MS_NODEV | MS_NOSUID, opts) < 0) {
                (void) fuse_hold_send_fd(sock, -1, -errno);
                _exit(0);
        }
        server = fork();
        if (server < 0)
                _exit(1);
        if (server == 0) {
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                (void) alarm((unsigned) ((max_hold_usec + 999999) / 1000000));
                fuse_hold_serve(fuse, held, n_held, writeback);
        }
        close(fuse); /* the server's is the last: its death ends the connection */
        (void) fuse_hold_send_fd(sock, -1, r);
        snprintf(path, sizeof(path), "%s/f", dir);
        while (r == 0 && read(sock, &flags, sizeof(flags)) == sizeof(flags)) {
                int fd = open(path, flags | O_CLOEXEC);

                if (fuse_hold_send_fd(sock, fd, fd < 0 ? -errno : 0) < 0)
                        break;
                if (fd >= 0)
                        close(fd); /* our own FLUSH: answered */
        }
        (void) kill(server, SIGKILL);
        (void) waitpid(server, NULL, 0);
        _exit(0);
}

static inline int fuse_hold_recv(FuseHold *h, int *ret_fd) {
        union {
                struct cmsghdr c;
                uint8_t b[CMSG_SPACE(sizeof(int))];
        } control = {};
        int error = -EIO;
        struct iovec iov = { .iov_base = &error, .iov_len = sizeof(error) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof(control.b) };
        struct cmsghdr *c;

        if (recvmsg(h->sock, &mh, MSG_CMSG_CLOEXEC) != sizeof(error))
                return -EIO;
        c = CMSG_FIRSTHDR(&mh);
        if (c && c->cmsg_type == SCM_RIGHTS)
                memcpy(ret_fd, CMSG_DATA(c), sizeof(int));
        return error;
}

static inline void fuse_hold_stop(FuseHold *h);

/* Mounts the file system, whose server holds the requests of the n_held processes held. Without allow_other, only root may use it (the kernel refuses tsmd's
 * worker even a cached stat of "f"). 0, or -errno (no /dev/fuse, no right to mount: SKIP). */
static inline int fuse_hold_start_full(FuseHold *h, const pid_t *held, size_t n_held, bool allow_other,
                                       uint64_t max_hold_usec, bool own_namespace, bool writeback) {
        int pair[2], r;

        *h = (FuseHold){ .keeper = -1, .sock = -1 };
        strcpy(h->dir, "/tmp/tsmd-fuse-hold-XXXXXX");
        if (!mkdtemp(h->dir))
                return -errno;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
                r = -errno;
                (void) rmdir(h->dir);
                return r;
        }
        fflush(NULL);
        h->keeper = fork();
        if (h->keeper == 0) {
                /* Nothing of the test's: a client socket held here would outlive the test's. */
                if (dup2(pair[1], 3) < 0)
                        _exit(1);
                (void) syscall(SYS_close_range, 4U, ~0U, 0U);
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                fuse_hold_keep(3, h->dir, held, n_held, allow_other, max_hold_usec, own_namespace, writeback);
        }
        close(pair[1]);
        h->sock = pair[0];
        if (h->keeper < 0) {
                r = -errno;
                fuse_hold_stop(h);
                return r;
        }
        r = fuse_hold_recv(h, &(int){ -1 });
        if (r < 0)
                fuse_hold_stop(h);
        return r;
}

static inline int fuse_hold_start(FuseHold *h, const pid_t *held, size_t n_held, bool allow_other,
                                  uint64_t max_hold_usec) {
        return fuse_hold_start_full(h, held, n_held, allow_other, max_hold_usec, true, false);
}

/* A file system with the kernel's writeback cache whose server holds every WRITE, and nothing
 * else: see fuse_hold_serve(). Pages written to "f" (through any fd of it) stay dirty or under
 * writeback; the close() of such an fd waits (FLUSH writes them back first), and so does the
 * release of the last reference to any file of "f" (fuse_release() writes the inode back when
 * the connection caches writes), wherever that comes: an fd the kernel drops from an SCM_RIGHTS
 * message unreceived, say (the kernel has cached writes since 3.15). */
static inline int fuse_hold_start_writeback(FuseHold *h, uint64_t max_hold_usec) {
        return fuse_hold_start_full(h, NULL, 0, true, max_hold_usec, true, true);
}

/* The same, mounted in the test's mount namespace, which it must have made its own (private):
 * the test unmounts it (MNT_DETACH) before fuse_hold_stop(). */
static inline int fuse_hold_start_here(FuseHold *h, const pid_t *held, size_t n_held, uint64_t max_hold_usec) {
        return fuse_hold_start_full(h, held, n_held, true, max_hold_usec, false, false);
}

/* An fd of "f", opened with flags (O_RDWR, say): the fd, or -errno. */
static inline int fuse_hold_open(FuseHold *h, int flags) {
        int fd = -1, r;

        if (send(h->sock, &flags, sizeof(flags), MSG_NOSIGNAL) != sizeof(flags))
                return -errno;
        r = fuse_hold_recv(h, &fd);
        return r < 0 ? r : fd;
}

/* Kills the server: every request it holds ends (ENOTCONN), and so do the calls waiting on
 * them. Then the test may close its own fds of "f". */
static inline void fuse_hold_stop(FuseHold *h) {
        if (h->sock >= 0)
                close(h->sock);
        h->sock = -1;
        if (h->keeper > 0)
                (void) waitpid(h->keeper, NULL, 0);
        h->keeper = -1;
        if (h->dir[0])
                (void) rmdir(h->dir);
        h->dir[0] = 0;
}

/* A watchdog for a call the server may hold: after timeout_usec it kills the server (which ends
 * every request it holds, and so the call) and says so (fired), for the test to fail on it rather
 * than hang until the server's own max_hold_usec. */
typedef struct FuseHoldWatch {
        pid_t keeper;
        uint64_t timeout_usec;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        pthread_t thread;
        bool done, fired;
} FuseHoldWatch;

static inline void *fuse_hold_watch_thread(void *userdata) {
        FuseHoldWatch *w = userdata;
        struct timespec ts;
        int r = 0;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t) (w->timeout_usec / 1000000U);
        ts.tv_nsec += (long) (w->timeout_usec % 1000000U) * 1000L;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&w->lock);
        while (!w->done && r == 0)
                r = pthread_cond_timedwait(&w->cond, &w->lock, &ts);
        if (!w->done) {
                w->fired = true;
                (void) kill(w->keeper, SIGKILL); /* the server dies with its keeper */
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

static inline void fuse_hold_watch_start(FuseHoldWatch *w, const FuseHold *h, uint64_t timeout_usec) {
        *w = (FuseHoldWatch){ .keeper = h->keeper, .timeout_usec = timeout_usec };
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        if (pthread_create(&w->thread, NULL, fuse_hold_watch_thread, w) != 0)
                abort();
}

/* Ends the watch: whether it had to kill the server. */
static inline bool fuse_hold_watch_end(FuseHoldWatch *w) {
        pthread_mutex_lock(&w->lock);
        w->done = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        (void) pthread_join(w->thread, NULL);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        return w->fired;
}

/* Sends on sock a datagram of len bytes of data with an fd of "f" of a writeback file system
 * (fuse_hold_start_writeback()) whose one reference is that in flight (after first_fd, if >= 0),
 * then writes a page of "f", which the server holds, through *dirty (opened here if < 0; it stays
 * open: its close would wait, so the test closes it after fuse_hold_stop()). Whoever drops that
 * reference last runs fuse_release(), which waits on the server. Once per file system: from then
 * on every close of "f" waits. 0 or -errno. */
static inline int fuse_hold_send_dirty(FuseHold *h, int sock, const void *data, size_t len, int first_fd,
                                       int *dirty) {
        static const uint8_t page[4096] = { 1 };
        union {
                struct cmsghdr c;
                uint8_t b[CMSG_SPACE(sizeof(int) * 2)];
        } control = {};
        int fds[2] = { first_fd }, n = first_fd >= 0 ? 1 : 0;
        struct iovec iov = { .iov_base = (void *) data, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control };
        int fd, r = 0;

        fd = fuse_hold_open(h, O_RDWR);
        if (fd < 0)
                return fd;
        if (*dirty < 0)
                *dirty = fuse_hold_open(h, O_RDWR);
        if (*dirty < 0) {
                close(fd);
                return *dirty;
        }
        control.c.cmsg_level = SOL_SOCKET;
        control.c.cmsg_type = SCM_RIGHTS;
        fds[n++] = fd;
        control.c.cmsg_len = CMSG_LEN(sizeof(int) * (size_t) n);
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t) n);
        memcpy(CMSG_DATA(&control.c), fds, sizeof(int) * (size_t) n);
        if (sendmsg(sock, &mh, MSG_NOSIGNAL) != (ssize_t) len)
                r = -errno;
        /* Nothing written yet: this close's FLUSH is answered. */
        close(fd);
        if (r == 0 && pwrite(*dirty, page, sizeof(page), 0) != (ssize_t) sizeof(page))
                r = -EIO;
        return r;
}
