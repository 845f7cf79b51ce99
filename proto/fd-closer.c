/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Closing peers' fds on a thread of their own (fd-closer.h). Runs in: monitor, worker. */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "fd-closer.h"
#include "fd-fuse.h"
#include "log.h"
#include "macro.h"

/* The most fds a queue takes room for, whatever RLIMIT_NOFILE says (the kernel's nr_open
 * default). */
#define FD_CLOSER_QUEUE_MAX (1U << 20)

typedef struct FdCloser {
        pthread_mutex_t lock;
        pthread_cond_t wake; /* the thread: there is work */
        pthread_cond_t idle; /* fd_closer_wait_idle(): a close finished */
        int *queue;          /* a ring of fds to close */
        size_t size, head, n;
        size_t closing;      /* taken off the queue, its close() not returned yet */
        pthread_t thread;
        bool running;
        bool stop;           /* the thread is to end once the queue is empty */
        bool ended;
} FdCloser;

static FdCloser closer = {
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .wake = PTHREAD_COND_INITIALIZER,
};

static void *closer_thread(void *userdata) {
        pthread_mutex_lock(&closer.lock);
        for (;;) {
                int fd;

                while (closer.n == 0 && !closer.stop)
                        pthread_cond_wait(&closer.wake, &closer.lock);
                if (closer.n == 0)
                        break;
                fd = closer.queue[closer.head];
                closer.head = (closer.head + 1) % closer.size;
                closer.n--;
                closer.closing++;
                pthread_mutex_unlock(&closer.lock);

                /* May wait on the peer's file system for as long as it likes: only this thread
                 * (and the fds queued behind it) waits. */
                (void) close(fd);

                pthread_mutex_lock(&closer.lock);
                closer.closing--;
                pthread_cond_broadcast(&closer.idle);
        }
        closer.ended = true;
        pthread_cond_broadcast(&closer.idle);
        pthread_mutex_unlock(&closer.lock);
        return NULL;
}

int fd_closer_start(void) {
        pthread_condattr_t attr;
        sigset_t all, saved;
        struct rlimit rl;
        int r;

        if (closer.running)
                return 0;

        /* Every fd queued is open, so room for as many as the process may have open never runs
         * out (unless the limit is raised later: fd_closer_close() says what happens then). */
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return negative_errno();
        closer.size = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > FD_CLOSER_QUEUE_MAX ? FD_CLOSER_QUEUE_MAX
                                                                                        : MAX((size_t) rl.rlim_cur, 1U);
        closer.queue = new(int, closer.size);
        if (!closer.queue)
                return -ENOMEM;

        /* fd_closer_wait_idle() counts its timeout on CLOCK_MONOTONIC. */
        r = -pthread_condattr_init(&attr);
        if (r >= 0)
                r = -pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (r >= 0)
                r = -pthread_cond_init(&closer.idle, &attr);
        (void) pthread_condattr_destroy(&attr);
        if (r < 0) {
                closer.queue = mfree(closer.queue);
                return r;
        }

        /* Without the mount table, every file not told otherwise goes to the thread, as
         * everything did before there was one. */
        r = fd_fuse_start();
        if (r < 0)
                log_debug_errno(r, "Cannot read the mount table, closing every file on the closer's thread: %m");

        /* Signals belong to the event loop thread. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        closer.stop = closer.ended = false;
        r = -pthread_create(&closer.thread, NULL, closer_thread, NULL);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0) {
                fd_fuse_stop();
                (void) pthread_cond_destroy(&closer.idle);
                closer.queue = mfree(closer.queue);
                return r;
        }
        closer.running = true;
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
        int r;

        if (!closer.running)
                return;

        pthread_mutex_lock(&closer.lock);
        closer.stop = true;
        pthread_cond_signal(&closer.wake);
        r = wait_locked(closer_ended, timeout_usec);
        /* One stuck in a close stays, and goes on taking fds: the process cannot end before
         * that close anyway. */
        if (r < 0)
                closer.stop = false;
        pthread_mutex_unlock(&closer.lock);
        if (r < 0)
                return;

        (void) pthread_join(closer.thread, NULL);
        (void) pthread_cond_destroy(&closer.idle);
        closer.queue = mfree(closer.queue);
        closer.size = closer.head = 0;
        closer.running = false;
        fd_fuse_stop();
}

int fd_closer_close(int fd) {
        if (fd < 0)
                return -EBADF;
        /* SECURITY: only a close that may wait on a FUSE server goes to the thread, so that
         * what waits behind one held is such fds only. */
        if (!closer.running || !fd_may_reach_fuse(fd))
                return safe_close(fd);

        pthread_mutex_lock(&closer.lock);
        if (closer.n < closer.size) {
                closer.queue[(closer.head + closer.n) % closer.size] = fd;
                closer.n++;
                pthread_cond_signal(&closer.wake);
                fd = -EBADF;
        }
        pthread_mutex_unlock(&closer.lock);

        /* No room: RLIMIT_NOFILE was raised past what the queue was made for. Closing here could
         * hang the loop on the peer's file system, so the fd stays open: a leak, bounded by that
         * limit, is the lesser harm. */
        if (fd >= 0)
                log_debug("No room to close fd %i without waiting on it, leaving it open.", fd);
        return -EBADF;
}

void fd_closer_close_many(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                fds[i] = fd_closer_close(fds[i]);
}

bool fd_closer_congested(void) {
        bool congested;

        if (!closer.running)
                return false;
        pthread_mutex_lock(&closer.lock);
        congested = closer.n + closer.closing > closer.size / 4;
        pthread_mutex_unlock(&closer.lock);
        return congested;
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
