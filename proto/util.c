/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers declared in macro.h that need a body. */

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "escape.h"
#include "macro.h"

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

uint64_t now_monotonic_usec(void) {
        return now_usec(CLOCK_MONOTONIC);
}

uint64_t now_realtime_usec(void) {
        return now_usec(CLOCK_REALTIME);
}

int fstat_cached(int fd, struct stat *ret) {
        struct statx sx;

        assert(ret);

        if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE | STATX_MODE | STATX_INO, &sx) < 0)
                return negative_errno();
        if ((sx.stx_mask & (STATX_TYPE | STATX_MODE)) != (STATX_TYPE | STATX_MODE))
                return -EIO;
        *ret = (struct stat){
                .st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor),
                .st_ino = sx.stx_ino,
                .st_mode = sx.stx_mode,
                .st_rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor),
        };
        return 0;
}

int fd_chmod(int fd, mode_t mode) {
        char path[sizeof("/proc/self/fd/") + DECIMAL_U64_MAX];

        snprintf(path, sizeof(path), "/proc/self/fd/%i", fd);
        return RET_NERRNO(chmod(path, mode));
}

int write_all(int fd, const void *buf, size_t n) {
        const uint8_t *p = buf;

        while (n > 0) {
                ssize_t k = write(fd, p, n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return negative_errno();
                if (k == 0)
                        return -EIO;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

int cmp_gid(const void *a, const void *b) {
        gid_t x = *(const gid_t *) a, y = *(const gid_t *) b;

        return x < y ? -1 : x > y;
}

bool memeq_consttime(const void *a, const void *b, size_t n) {
        const uint8_t *x = a, *y = b;
        uint8_t diff = 0;

        /* No early exit, and out of line so the caller's compiler cannot make one. */
        for (size_t i = 0; i < n; i++)
                diff |= x[i] ^ y[i];
        return diff == 0;
}

void *greedy_realloc(void **p, size_t *allocated, size_t need, size_t size) {
        size_t n;
        void *q;

        if (*allocated >= need)
                return *p;

        n = MAX(need * 2, (size_t) 8);
        if (size_multiply_overflow(size, n))
                return NULL;

        q = realloc(*p, n * size);
        if (!q)
                return NULL;

        *p = q;
        *allocated = n;
        return q;
}

void string_shorten_printable(char *s, size_t max) {
        size_t n;

        /* One '?' for each byte that does not begin a valid UTF-8 sequence, as for a control:
         * the text goes into JSON strings, which must be UTF-8, and a peer that checks refuses
         * the whole message. The length stays, and the cut below then only steps back over the
         * continuation bytes of one valid character. */
        for (unsigned char *c = (unsigned char *) s; *c;) {
                size_t k = utf8_sequence_len(c);

                if (k == 0 || (k == 1 && (*c < 0x20 || *c == 0x7f))) {
                        *c++ = '?';
                        continue;
                }
                c += k;
        }

        n = strlen(s);
        if (n > max) {
                n = max - 3;
                while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80)
                        n--; /* not inside a UTF-8 sequence */
                memcpy(s + n, "...", 4);
        }
}
