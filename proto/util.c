/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers declared in macro.h that need a body. */

#include <time.h>

#include "macro.h"

uint64_t now_monotonic_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
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
