/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * For tests that count allocated bytes with glibc's mallinfo2(): it counts a chunk freed into
 * the thread cache as in use, so a free would not show. Included once by such a test, this
 * starts the program again without the cache (a constructor gets main()'s arguments from glibc).
 * Not under AddressSanitizer, which owns malloc().
 * Runs in: tests.
 */
#pragma once

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#ifndef HAVE_ASAN
static const char TCACHE_OFF[] = "glibc.malloc.tcache_count=0";

__attribute__((constructor)) static void without_tcache(int argc, char **argv) {
        const char *t = getenv("GLIBC_TUNABLES");
        char *v;

        if (t && strstr(t, TCACHE_OFF))
                return;
        if (asprintf(&v, "%s%s%s", t ?: "", t ? ":" : "", TCACHE_OFF) < 0 ||
            setenv("GLIBC_TUNABLES", v, 1) < 0)
                abort();
        (void) argc;
        execv("/proc/self/exe", argv);
        abort();
}
#endif
