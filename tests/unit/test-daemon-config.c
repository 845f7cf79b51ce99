/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tsmd.conf loading when memory runs out (daemon/daemon-config.c): the defaults are all there or
 * none is, and a load that fails frees all it allocated and leaves the configuration in force as
 * it was. strdup() is replaced
 * here, for the code linked into this binary, by one that fails at a chosen call.
 * Runs in: tests.
 */

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon-config.h"
#include "harness.h"
#include "macro.h"
#include "without-tcache.h"

#ifdef HAVE_ASAN /* harness.h */
#include <sanitizer/allocator_interface.h>
#endif

static unsigned strdup_calls, strdup_fail_at; /* 0: never fail */

char *strdup(const char *s) {
        size_t n = strlen(s) + 1;
        char *d;

        if (strdup_fail_at > 0 && ++strdup_calls == strdup_fail_at) {
                errno = ENOMEM;
                return NULL;
        }
        d = malloc(n);
        return d ? memcpy(d, s, n) : NULL;
}

/* Bytes the allocator has handed out and not got back. */
static size_t allocated_bytes(void) {
#ifdef HAVE_ASAN
        return __sanitizer_get_current_allocated_bytes();
#else
        return mallinfo2().uordblks;
#endif
}

/* A free must show in allocated_bytes(), or a leak would not. */
TEST(allocated_bytes_sees_a_free) {
        size_t before = allocated_bytes();
        char *p = strdup("a string of some length");

        ASSERT_NOT_NULL(p);
        /* The compiler may not drop an allocation it could prove unused. */
        __asm__ volatile("" : : "r"(p) : "memory");
        ASSERT_TRUE(allocated_bytes() > before);
        free(p);
        ASSERT_EQ(allocated_bytes(), before);
}

/* The defaults' paths are copies: one that cannot be made fails the whole, with nothing left
 * allocated, never a configuration with a path missing (it would name no file). */
TEST(init_out_of_memory_fails_whole) {
        unsigned failures = 0;

        for (unsigned k = 1;; k++) {
                DaemonConfig c;
                size_t before = allocated_bytes();
                int r;

                strdup_calls = 0;
                strdup_fail_at = k;
                r = daemon_config_init(&c);
                strdup_fail_at = 0;
                if (r >= 0) {
                        /* k is past the last strdup() of the defaults: all failures seen. */
                        ASSERT_NOT_NULL(c.context_state_dir);
                        ASSERT_NOT_NULL(c.policy_file);
                        ASSERT_NOT_NULL(c.policy_dropin_dir);
                        ASSERT_NOT_NULL(c.audit_dir);
                        ASSERT_NOT_NULL(c.platform.iommu_device);
                        daemon_config_done(&c);
                        break;
                }
                ASSERT_ERRNO(r, ENOMEM);
                if (allocated_bytes() != before)
                        TEST_FAIL("strdup() #%u failing leaked %zd bytes", k, (ssize_t) (allocated_bytes() - before));
                daemon_config_done(&c); /* harmless after a failure */
                failures++;
        }
        ASSERT_EQ(failures, 5u); /* one per default path */
}

TEST(load_out_of_memory_frees_its_copy) {
        static const char text[] = "[Varlink]\nMaxConnections=5\n[Platform]\nIommuDevice=/dev/iommu\n";
        unsigned failures = 0;

        for (unsigned k = 1;; k++) {
                DaemonConfig c;
                const char *message = NULL;
                unsigned line = 0;
                size_t before;
                int r;

                ASSERT_OK(daemon_config_init(&c));
                /* Every string the copy takes: the paths have their defaults. */
                c.platform.emulated_devices = strdup("0000:01:00.0");
                free(c.platform.iommu_device); /* a path: its default's copy */
                c.platform.iommu_device = strdup("/dev/iommu0");
                ASSERT_NOT_NULL(c.platform.emulated_devices);
                ASSERT_NOT_NULL(c.platform.iommu_device);

                before = allocated_bytes();
                strdup_calls = 0;
                strdup_fail_at = k;
                r = daemon_config_load_text(&c, text, &line, &message);
                strdup_fail_at = 0;
                if (r >= 0) {
                        /* k is past the last strdup() of a load: all failures seen. */
                        ASSERT_EQ(c.limits.max_connections, 5u);
                        ASSERT_STREQ(c.platform.iommu_device, "/dev/iommu");
                        daemon_config_done(&c);
                        break;
                }
                ASSERT_ERRNO(r, ENOMEM);
                if (allocated_bytes() != before)
                        TEST_FAIL("strdup() #%u failing leaked %zd bytes", k,
                                  (ssize_t) (allocated_bytes() - before));
                /* The configuration in force is untouched. */
                ASSERT_STREQ(c.platform.emulated_devices, "0000:01:00.0");
                ASSERT_STREQ(c.platform.iommu_device, "/dev/iommu0");
                ASSERT_EQ(c.limits.max_connections, (unsigned) VARLINK_LIMITS_DEFAULT.max_connections);
                daemon_config_done(&c);
                failures++;
        }
        /* The copy's six strings and the load's own (a section name, a value). */
        ASSERT_GE(failures, 6u);
}

TEST_MAIN();
