/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * malloc(), calloc() and realloc() replaced, for the libraries too (exported: the build hides
 * symbols), by ones that count their calls and fail a chosen one: glibc's allocator underneath,
 * so not where AddressSanitizer owns them (HAVE_ASAN: tests SKIP). Included once by such a test.
 * Runs in: tests.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "harness.h"
#include "macro.h"

/* Calls so far (set it to 0 to count from there); the one numbered alloc_fail_at fails
 * (0: none). One thread's: a test that counts allocates from no other. */
static unsigned alloc_calls, alloc_fail_at;

#ifndef HAVE_ASAN /* harness.h */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);

static bool alloc_fails(void) {
        if (++alloc_calls != alloc_fail_at || alloc_fail_at == 0)
                return false;
        errno = ENOMEM;
        return true;
}

_public_ void *malloc(size_t size) {
        return alloc_fails() ? NULL : __libc_malloc(size);
}

_public_ void *calloc(size_t n, size_t size) {
        return alloc_fails() ? NULL : __libc_calloc(n, size);
}

_public_ void *realloc(void *p, size_t size) {
        return alloc_fails() ? NULL : __libc_realloc(p, size);
}
#endif
