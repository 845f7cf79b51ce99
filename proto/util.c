/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers declared in macro.h that need a body. */

#include <time.h>

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
