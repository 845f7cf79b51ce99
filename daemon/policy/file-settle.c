/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Whether a read of a file saw it whole (file-settle.h). Runs in: monitor and worker. */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "file-settle.h"
#include "macro.h"

/* How long to wait at least before a read again, when the file changed while it was read. */
#define FILE_SETTLE_RETRY_USEC (20 * 1000ULL)

uint64_t file_settle_timespec_usec(const struct timespec *ts) {
        return (uint64_t) ts->tv_sec * 1000000ULL + (uint64_t) ts->tv_nsec / 1000;
}

static bool timespec_equal(const struct timespec *a, const struct timespec *b) {
        return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static bool timespec_later(const struct timespec *a, const struct timespec *b) {
        return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec > b->tv_nsec);
}

bool file_settle_same_stat(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
               timespec_equal(&a->st_mtim, &b->st_mtim) && timespec_equal(&a->st_ctim, &b->st_ctim);
}

/* Whether anybody has fd's file open for writing: 1 yes, 0 no, < 0 we cannot tell (not its
 * owner, leases off, a file system without them). A read lease is granted only on a file nobody
 * has open for writing (fcntl(2)), and given back at once. */
static int open_for_writing(int fd) {
        struct sigaction ignore = { .sa_handler = SIG_IGN }, old;
        int r;

        /* A writer's open() in between breaks the lease, which signals SIGIO, by default fatal:
         * ignored meanwhile (tsmd has no other use for it). The open waits until the lease is
         * given back. */
        if (sigaction(SIGIO, &ignore, &old) < 0)
                return negative_errno();
        r = fcntl(fd, F_SETLEASE, F_RDLCK);
        if (r >= 0)
                (void) fcntl(fd, F_SETLEASE, F_UNLCK);
        else
                r = errno == EAGAIN ? 1 : negative_errno();
        (void) sigaction(SIGIO, &old, NULL);
        return r;
}

int file_settle_read(FileSettle *s, int fd, const struct stat *before, const struct stat *after) {
        uint64_t now = now_monotonic_usec(), ctime_usec, wait_usec, real_now;

        if (s->first_usec == 0)
                s->first_usec = now;

        if (!file_settle_same_stat(before, after))
                wait_usec = FILE_SETTLE_RETRY_USEC; /* a write ran while we read */
        else {
                ctime_usec = file_settle_timespec_usec(&after->st_ctim);
                real_now = now_realtime_usec();
                if (ctime_usec + FILE_SETTLE_USEC <= real_now)
                        return 1;
                /* A rename (or chmod, utime) after the last write: the writing was done. */
                if (timespec_later(&after->st_ctim, &after->st_mtim))
                        return 1;
                /* Written and closed: a rename in the tick of the last write, or an edit done. */
                if (open_for_writing(fd) == 0)
                        return 1;
                if (s->seen_usec != 0 && file_settle_same_stat(&s->seen, after)) {
                        if (s->seen_usec + FILE_SETTLE_USEC <= now)
                                return 1;
                } else {
                        s->seen = *after;
                        s->seen_usec = now;
                }
                /* Until its ctime is old enough, or (a ctime ahead of the clock) a while. */
                wait_usec = ctime_usec + FILE_SETTLE_USEC - real_now;
                wait_usec = MIN(wait_usec, s->seen_usec + FILE_SETTLE_USEC - now);
                wait_usec = MAX(wait_usec, FILE_SETTLE_RETRY_USEC);
        }
        if (now >= s->first_usec + FILE_SETTLE_WAIT_USEC)
                return -EBUSY;
        wait_usec = MIN(wait_usec, s->first_usec + FILE_SETTLE_WAIT_USEC - now);
        (void) usleep(wait_usec);
        return 0;
}
