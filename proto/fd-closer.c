/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Closing peers' fds on a thread of their own (fd-closer.h). Runs in: monitor and worker. */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "fd-closer.h"
#include "fd-fuse.h"
#include "log.h"
#include "macro.h"

/* The most fds a queue takes room for, whatever RLIMIT_NOFILE says (the kernel's nr_open
 * default). */
#define FD_CLOSER_QUEUE_MAX (1U << 20)

typedef struct Entry {
        int fd;
        uid_t peer;
} Entry;

/* How many of a peer's fds are queued or being closed. */
typedef struct PeerCount {
        uid_t peer;
        unsigned n;
} PeerCount;

typedef struct FdCloser {
        pthread_mutex_t lock;
        pthread_cond_t wake; /* the thread: there is work */
        pthread_cond_t idle; /* fd_closer_wait_idle(): a close finished */
        Entry *queue;        /* a ring of fds to close */
        size_t size, head, n;
        size_t closing;      /* taken off the queue, its close() not returned yet */
        size_t left_open;    /* not queued (no thread, no room) and never to be closed */
        PeerCount *peers;    /* sorted by peer; room for size (each has an fd queued) */
        size_t n_peers;
        pthread_t thread;
        bool ready;          /* fd_closer_start() made the queue: fds that may wait go to it */
        bool counts_fds;     /* /proc/self/fdinfo tells how many fds a socket's queue holds */
        bool running;        /* the thread runs: started by the first such fd */
        bool stop;           /* the thread is to end once the queue is empty */
        bool ended;
} FdCloser;

static FdCloser closer = {
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .wake = PTHREAD_COND_INITIALIZER,
};

static int peer_compare(const void *a, const void *b) {
        const PeerCount *x = a, *y = b;

        return x->peer < y->peer ? -1 : x->peer > y->peer;
}

static PeerCount *peer_find(uid_t peer) {
        return bsearch(&(PeerCount){ .peer = peer }, closer.peers, closer.n_peers, sizeof(PeerCount), peer_compare);
}

/* Counts one more fd of peer's. With the lock held; there is room, as for the fd in the queue. */
static void peer_add(uid_t peer) {
        PeerCount *p = peer_find(peer);
        size_t i = 0;

        if (p) {
                p->n++;
                return;
        }
        while (i < closer.n_peers && closer.peers[i].peer < peer)
                i++;
        memmove(closer.peers + i + 1, closer.peers + i, (closer.n_peers - i) * sizeof(PeerCount));
        closer.peers[i] = (PeerCount){ .peer = peer, .n = 1 };
        closer.n_peers++;
}

static void peer_remove(uid_t peer) {
        PeerCount *p = peer_find(peer);

        assert(p);
        if (--p->n > 0)
                return;
        memmove(p, p + 1, (size_t) (closer.peers + closer.n_peers - (p + 1)) * sizeof(PeerCount));
        closer.n_peers--;
}

static void *closer_thread(void *userdata) {
        pthread_mutex_lock(&closer.lock);
        for (;;) {
                Entry e;

                while (closer.n == 0 && !closer.stop)
                        pthread_cond_wait(&closer.wake, &closer.lock);
                if (closer.n == 0)
                        break;
                e = closer.queue[closer.head];
                closer.head = (closer.head + 1) % closer.size;
                closer.n--;
                closer.closing++;
                pthread_mutex_unlock(&closer.lock);

                /* May wait on the peer's file system for as long as it likes: only this thread
                 * (and the fds queued behind it) waits. A socket's lingering it may not choose. */
                fd_socket_drop_linger(e.fd);
                (void) close(e.fd);

                pthread_mutex_lock(&closer.lock);
                closer.closing--;
                peer_remove(e.peer);
                pthread_cond_broadcast(&closer.idle);
        }
        closer.ended = true;
        pthread_cond_broadcast(&closer.idle);
        pthread_mutex_unlock(&closer.lock);
        return NULL;
}

/* The thread, at the first fd that needs it. With the lock held: the thread takes it first. */
static int thread_start_locked(void) {
        sigset_t all, saved;
        int r;

        /* Signals belong to the event loop thread. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        closer.stop = closer.ended = false;
        r = -pthread_create(&closer.thread, NULL, closer_thread, NULL);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0)
                return r;
        closer.running = true;
        return 0;
}

/* How many fds the receive queue of fd, an AF_UNIX socket, holds: "scm_fds:" in its fdinfo
 * (Linux >= 5.6), or -errno (no /proc, no fd left to read it with, no such line: not AF_UNIX, an
 * older kernel). */
static int socket_n_fds_queued(int fd) {
        char path[sizeof("/proc/self/fdinfo/") + 12], buf[512];
        const char *p;
        unsigned long n;
        ssize_t k;
        int info;

        snprintf(path, sizeof(path), "/proc/self/fdinfo/%i", fd);
        info = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (info < 0)
                return negative_errno();
        k = read(info, buf, sizeof(buf) - 1);
        safe_close(info);
        if (k < 0)
                return negative_errno();
        buf[k] = 0;
        p = strstr(buf, "\nscm_fds:");
        if (!p)
                return -ENODATA;
        errno = 0;
        n = strtoul(p + strlen("\nscm_fds:"), NULL, 10);
        if (errno != 0 || n > INT_MAX)
                return -ERANGE;
        return (int) n;
}

/* SECURITY: whether socket_n_fds_queued() can be trusted here, asked of the kernel once: the count
 * is shown for a connected stream socket only (TCP_ESTABLISHED), and kernels have differed in what
 * a shutdown does to that state (5.15's sockmap work set TCP_CLOSE on one side or the other for a
 * while), where the count would read 0 with fds queued. So a socket is set up as the worst a peer
 * can make one: an fd queued on it, the peer's end shut down both ways, then ours (as
 * fd_closer_close_socket_for() does); the count must say 1. Also tells whether this process may
 * read its fdinfo at all (the worker runs as its own user, dumpable, so it may). */
static bool fdinfo_counts_fds(void) {
        struct iovec iov = { .iov_base = (char[]) { 0 }, .iov_len = 1 };
        union {
                struct cmsghdr c;
                uint8_t b[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof(control.b) };
        int pair[2], n = -EIO;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
                return false;
        control.c.cmsg_level = SOL_SOCKET;
        control.c.cmsg_type = SCM_RIGHTS;
        control.c.cmsg_len = CMSG_LEN(sizeof(int));
        /* The sending end itself: nothing to open, and no cycle (only pair[1] holds it). */
        memcpy(CMSG_DATA(&control.c), &pair[0], sizeof(int));
        if (sendmsg(pair[0], &mh, MSG_NOSIGNAL) == 1 && shutdown(pair[0], SHUT_RDWR) >= 0 &&
            shutdown(pair[1], SHUT_RDWR) >= 0)
                n = socket_n_fds_queued(pair[1]);
        safe_close(pair[0]);
        safe_close(pair[1]);
        if (n != 1)
                log_debug("The kernel does not tell how many fds a socket holds (%i): every client's socket with "
                          "bytes left unread is closed on the closer's thread.", n);
        return n == 1;
}

int fd_closer_start(void) {
        pthread_condattr_t attr;
        struct rlimit rl;
        int r;

        if (closer.ready)
                return 0;

        /* Every fd queued is open, so room for as many as the process may have open never runs
         * out (unless the limit is raised later: fd_closer_close() says what happens then). */
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return negative_errno();
        closer.size = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > FD_CLOSER_QUEUE_MAX ? FD_CLOSER_QUEUE_MAX
                                                                                        : MAX((size_t) rl.rlim_cur, 1U);
        closer.queue = new(Entry, closer.size);
        closer.peers = new(PeerCount, closer.size);
        if (!closer.queue || !closer.peers) {
                closer.queue = mfree(closer.queue);
                closer.peers = mfree(closer.peers);
                return -ENOMEM;
        }
        closer.n_peers = 0;

        /* fd_closer_wait_idle() counts its timeout on CLOCK_MONOTONIC. */
        r = -pthread_condattr_init(&attr);
        if (r >= 0)
                r = -pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (r >= 0)
                r = -pthread_cond_init(&closer.idle, &attr);
        (void) pthread_condattr_destroy(&attr);
        if (r < 0) {
                closer.queue = mfree(closer.queue);
                closer.peers = mfree(closer.peers);
                return r;
        }

        /* Without the mount table, every file not told otherwise goes to the thread, as
         * everything did before there was one. */
        r = fd_fuse_start();
        if (r < 0)
                log_debug_errno(r, "Cannot read the mount table, closing every file on the closer's thread: %m");

        closer.counts_fds = fdinfo_counts_fds();
        closer.ready = true;
        return 0;
}

/* Waits until done(), by the deadline: 0 or -ETIMEDOUT. With the lock held. */
static int wait_locked(bool (*done)(void), uint64_t timeout_usec) {
        uint64_t deadline = usec_add(now_monotonic_usec(), timeout_usec);
        struct timespec ts = {
                .tv_sec = (time_t) (deadline / 1000000U),
                .tv_nsec = (long) (deadline % 1000000U) * 1000L,
        };
        int r = 0;

        while (!done() && r == 0)
                r = -pthread_cond_timedwait(&closer.idle, &closer.lock, &ts);
        return done() ? 0 : r;
}

static bool closer_ended(void) {
        return closer.ended;
}

static bool closer_idle(void) {
        return closer.n == 0 && closer.closing == 0;
}

void fd_closer_stop(uint64_t timeout_usec) {
        int r = 0;

        if (!closer.ready)
                return;

        pthread_mutex_lock(&closer.lock);
        if (closer.running) {
                closer.stop = true;
                pthread_cond_signal(&closer.wake);
                r = wait_locked(closer_ended, timeout_usec);
                /* One stuck in a close stays, and goes on taking fds: the process cannot end
                 * before that close anyway. */
                if (r < 0)
                        closer.stop = false;
        }
        pthread_mutex_unlock(&closer.lock);
        if (r < 0)
                return;

        if (closer.running)
                (void) pthread_join(closer.thread, NULL);
        (void) pthread_cond_destroy(&closer.idle);
        closer.queue = mfree(closer.queue);
        closer.peers = mfree(closer.peers);
        closer.size = closer.head = 0;
        closer.running = closer.ready = false;
        fd_fuse_stop();
}

/* Hands fd to the thread (or leaves it open, if it cannot take it). */
static int queue_close(int fd, uid_t peer) {
        pthread_mutex_lock(&closer.lock);
        /* PERFORMANCE: the thread comes with the first fd that needs it. A process that gets
         * none stays single-threaded (an idle second thread once measured 10-20 us a request at
         * one client, the fourteenth session; not found again in the twenty-eighth: glibc's
         * multi-threaded syscall path, ~250 instructions, BENCHMARKS.md). If it cannot start,
         * the fd stays open, as when the queue is full (below). */
        if (!closer.running && thread_start_locked() < 0) {
                log_warning("Cannot start the thread that closes fds a peer's file system may hold, leaving fd %i open.",
                            fd);
                closer.left_open++;
        } else if (closer.n >= closer.size) {
                log_debug("No room to close fd %i without waiting on it, leaving it open.", fd);
                closer.left_open++;
        } else {
                closer.queue[(closer.head + closer.n) % closer.size] = (Entry){ .fd = fd, .peer = peer };
                closer.n++;
                peer_add(peer);
                pthread_cond_signal(&closer.wake);
                fd = -EBADF;
        }
        pthread_mutex_unlock(&closer.lock);

        /* Not queued (no thread, or no room: RLIMIT_NOFILE was raised past what the queue was
         * made for): closing here could hang the loop on the peer's file system, so the fd stays
         * open: a leak, bounded by that limit, is the lesser harm. */
        return -EBADF;
}

int fd_closer_close_for(int fd, uid_t peer) {
        if (fd < 0)
                return -EBADF;
        /* SECURITY: only a close that may wait (on a FUSE server, a socket's peer: fd-fuse.h)
         * goes to the thread, so that what waits behind one held is such fds only, counted
         * under their peers. */
        if (!closer.ready || !fd_may_reach_fuse(fd))
                return safe_close(fd);
        return queue_close(fd, peer);
}

int fd_closer_close_socket(int fd) {
        if (fd < 0)
                return -EBADF;
        if (!closer.ready)
                return safe_close(fd);
        return queue_close(fd, FD_CLOSER_PEER_NONE);
}

/* The kernel's SCM_MAX_FD: the most fds one message carries, and so one read of a stream socket
 * (which ends with the message that brought fds). */
#define SCM_MAX_FD 253U

/* SECURITY: what socket_drain() does for one socket at most, all on the caller's thread: that many
 * fds received (one read's worth held at once, each closed or handed on before the next read),
 * that many reads of DRAIN_CHUNK bytes. Past either, the socket goes to the thread with what is
 * left on it, counted as one fd. The bytes the reads take (DRAIN_MAX_READS times DRAIN_CHUNK,
 * 2 MiB) are more than a Unix stream socket's peer can queue with the default net.core.wmem_max
 * (twice 208 KiB, 26 reads), and every other read brings a message's fds: a peer needs some
 * hundred fds in flight or more for each socket it sends past the bounds, which the kernel bounds
 * by the sender's RLIMIT_NOFILE (nr_open at most, 1048576 by default). One uid so makes at most
 * some 10000 sockets wait whole, fewer than the closer's share at tsmd's LimitNOFILE=65536
 * (16384). */
#define DRAIN_MAX_FDS (2U * SCM_MAX_FD)
#define DRAIN_MAX_READS 128U
#define DRAIN_CHUNK (16U * 1024U)

/* Receives what is queued on fd, a client's socket shut down both ways (nothing more can come):
 * each fd it brings is closed as the peer's (fd_closer_close_for(): at once unless its close may
 * wait, then on the thread, counted under peer). n_fds: how many fds are queued (negative: not
 * known).
 * True once no fd is left queued, so that closing the socket releases nothing of the peer's;
 * false where that is not sure (a bound reached, a read failed or was cut short), and the
 * socket must go to the thread. */
static bool socket_drain(int fd, uid_t peer, int n_fds) {
        union {
                struct cmsghdr c;
                /* Room for every fd a message can carry: the kernel would drop, so release on
                 * this thread, one for which there is none. And for credentials, should the
                 * socket pass them (a listener set up so by whoever made it). */
                uint8_t b[CMSG_SPACE(sizeof(int) * SCM_MAX_FD) + CMSG_SPACE(sizeof(struct ucred))];
        } control;
        char buf[DRAIN_CHUNK];
        size_t n_taken = 0;

        if (n_fds > (int) DRAIN_MAX_FDS)
                return false;
        for (unsigned i = 0; i < DRAIN_MAX_READS; i++) {
                struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                                     .msg_controllen = sizeof(control.b) };
                ssize_t n;

                /* Unknown how many come: the next read may bring a full message's. */
                if (n_fds < 0 && n_taken + SCM_MAX_FD > DRAIN_MAX_FDS)
                        return false;
                /* SECURITY: never waits: the read side is shut (an empty queue reads as its
                 * end), and MSG_DONTWAIT besides. */
                n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n < 0)
                        return false;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                                continue;
                        for (size_t k = 0; k < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++) {
                                int received;

                                memcpy(&received, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
                                (void) fd_closer_close_for(received, peer);
                                n_taken++;
                        }
                }
                /* Cut short: our fd table is full, and the kernel dropped the rest of the
                 * message's fds (it does so only then, with room for SCM_MAX_FD). What may
                 * follow stays on the socket. */
                if (mh.msg_flags & MSG_CTRUNC)
                        return false;
                if (n == 0 || (n_fds >= 0 && n_taken >= (size_t) n_fds))
                        return true;
        }
        return false;
}

int fd_closer_close_socket_for(int fd, uid_t peer) {
        int queued = 0, n_fds;

        if (fd < 0)
                return -EBADF;
        if (!closer.ready)
                return safe_close(fd);
        /* SECURITY: with the read side shut, the peer's sends fail (EPIPE): what the queue holds
         * now is all it ever will. (AF_UNIX: unix_shutdown() sets our RCV_SHUTDOWN under our
         * unix_state_lock(), and unix_stream_sendmsg() checks it, and queues the skb with its
         * fds, under that same lock.) Both sides shut: the peer sees the hang-up now, not when a
         * close held before this one is done. */
        if (shutdown(fd, SHUT_RDWR) < 0 || ioctl(fd, SIOCINQ, &queued) < 0)
                return queue_close(fd, peer);
        /* Nothing queued: no fds either (a stream socket passes none without a byte). Bytes but
         * no fds (a client that sent and left, a flood of refused connections that each sent
         * one): nothing of the peer's is released with it, it closes at once too, and neither
         * takes room in the queue nor an fd while a close is held. PERFORMANCE: the fdinfo is
         * read only for a socket closed with input unread, never for one read to its end. */
        if (queued == 0)
                return safe_close(fd);
        n_fds = closer.counts_fds ? socket_n_fds_queued(fd) : -1;
        if (n_fds == 0)
                return safe_close(fd);
        /* The count not read where the kernel tells it: no fd left to read it with, likely, and
         * then none to receive into either (the kernel would drop, so release here, what it
         * cannot install). */
        if (closer.counts_fds && n_fds < 0)
                return queue_close(fd, peer);
        /* SECURITY: fds queued (or unknown): received here, and only those whose close may wait
         * go to the thread, under peer; the socket, empty of fds then, closes at once. A flood
         * of connections that each carry an ordinary fd (/dev/null, a memfd) behind one close a
         * FUSE server holds neither fills the queue nor, past its share, stops the listeners
         * (varlink-listen.c) for everybody: only fds that may wait count there. The socket goes
         * to the thread whole only past the drain's bounds. */
        if (socket_drain(fd, peer, n_fds))
                return safe_close(fd);
        return queue_close(fd, peer);
}

void fd_closer_close_many_for(int *fds, size_t n, uid_t peer) {
        for (size_t i = 0; i < n; i++)
                fds[i] = fd_closer_close_for(fds[i], peer);
}

/* Everybody's share of the queue: a quarter of its room. With the lock held. */
static bool over_share_locked(void) {
        return closer.n + closer.closing > fd_closer_share();
}

static bool peer_over_share_locked(uid_t peer, unsigned max_per_peer) {
        const PeerCount *p = peer_find(peer);

        return p && p->n > max_per_peer;
}

bool fd_closer_congested(uid_t peer, unsigned max_per_peer) {
        bool congested;

        if (!closer.running)
                return false;
        pthread_mutex_lock(&closer.lock);
        congested = over_share_locked() || peer_over_share_locked(peer, max_per_peer);
        pthread_mutex_unlock(&closer.lock);
        return congested;
}

bool fd_closer_peer_congested(uid_t peer, unsigned max_per_peer) {
        bool congested;

        pthread_mutex_lock(&closer.lock);
        congested = closer.running && peer_over_share_locked(peer, max_per_peer);
        pthread_mutex_unlock(&closer.lock);
        return congested;
}

size_t fd_closer_share(void) {
        return closer.size / 4;
}

size_t fd_closer_n_waiting_all(void) {
        size_t n;

        pthread_mutex_lock(&closer.lock);
        n = closer.running ? closer.n + closer.closing : 0;
        pthread_mutex_unlock(&closer.lock);
        return n;
}

uid_t fd_closer_top_peer(size_t *ret_n) {
        uid_t top = FD_CLOSER_PEER_NONE;
        size_t n = 0;

        pthread_mutex_lock(&closer.lock);
        for (size_t i = 0; closer.running && i < closer.n_peers; i++)
                if (closer.peers[i].n > n) {
                        top = closer.peers[i].peer;
                        n = closer.peers[i].n;
                }
        pthread_mutex_unlock(&closer.lock);
        if (ret_n)
                *ret_n = n;
        return top;
}

size_t fd_closer_n_waiting(uid_t peer) {
        const PeerCount *p;
        size_t n;

        pthread_mutex_lock(&closer.lock);
        p = closer.running ? peer_find(peer) : NULL;
        /* Those left open count against every peer: whose they were is not kept, and they stay. */
        n = (p ? p->n : 0) + closer.left_open;
        pthread_mutex_unlock(&closer.lock);
        return n;
}

int fd_closer_wait_idle(uint64_t timeout_usec) {
        int r;

        if (!closer.running)
                return 0;

        pthread_mutex_lock(&closer.lock);
        r = wait_locked(closer_idle, timeout_usec);
        pthread_mutex_unlock(&closer.lock);
        return r;
}
