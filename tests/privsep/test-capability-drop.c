/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The monitor's drop to its minimum: it keeps what it has of the minimum and nothing else, and
 * says which of the minimum it lacks and what will fail without it (a container's or a unit's
 * bounding set without CAP_SYS_RESOURCE started tsmd without a word). Each case in a child of
 * its own (the harness's), so the drops end with it.
 */

#include <stdio.h>
#include <sys/prctl.h>

#include "capability.h"
#include "harness.h"
#include "log-capture.h"

static const cap_value_t minimum[] = { CAP_SYS_RAWIO, CAP_SYS_RESOURCE, CAP_SETUID, CAP_SETGID, CAP_SETPCAP, CAP_KILL };

static bool permitted(cap_value_t c) {
        _cleanup_(cap_freep) cap_t now = cap_get_proc();
        cap_flag_value_t v;

        return now && cap_get_flag(now, c, CAP_PERMITTED, &v) >= 0 && v == CAP_SET;
}

static void need_root(void) {
        if (geteuid() != 0 || !permitted(CAP_SETPCAP))
                SKIP("dropping capabilities needs root with CAP_SETPCAP");
}

/* Drops c from the bounding and the permitted set, as a bounding set without it would. */
static void lose(cap_value_t c) {
        _cleanup_(cap_freep) cap_t now = cap_get_proc();

        ASSERT_NOT_NULL(now);
        ASSERT_OK(prctl(PR_CAPBSET_DROP, c, 0, 0, 0));
        ASSERT_OK(cap_set_flag(now, CAP_PERMITTED, 1, &c, CAP_CLEAR));
        ASSERT_OK(cap_set_flag(now, CAP_EFFECTIVE, 1, &c, CAP_CLEAR));
        ASSERT_OK(cap_set_flag(now, CAP_INHERITABLE, 1, &c, CAP_CLEAR));
        ASSERT_OK(cap_set_proc(now));
}

static char *drop_logged(int *ret) {
        int saved = log_capture_begin();

        *ret = capability_drop_to_minimum(false);
        return log_capture_end(saved);
}

TEST(a_capability_of_the_minimum_it_lacks_is_named_with_what_fails) {
        _cleanup_free_ char *log = NULL;
        cap_value_t gone = CAP_KILL;
        int r;

        need_root();
        if (!permitted(gone))
                SKIP("CAP_KILL is not ours to drop");
        lose(gone);
        log = drop_logged(&r);
        ASSERT_OK(r);
        if (!strstr(log, "Capability cap_kill is not ours to keep") ||
            !strstr(log, "stopping a worker, which runs as another user will fail"))
                TEST_FAIL("the missing CAP_KILL is not named with what fails: '%s'", log);
        ASSERT_FALSE(permitted(gone));
}

TEST(the_minimum_is_kept_and_nothing_else) {
        _cleanup_free_ char *log = NULL;
        bool had[ELEMENTSOF(minimum)];
        int r;

        need_root();
        for (size_t i = 0; i < ELEMENTSOF(minimum); i++)
                had[i] = permitted(minimum[i]);
        log = drop_logged(&r);
        ASSERT_OK(r);
        for (size_t i = 0; i < ELEMENTSOF(minimum); i++) {
                ASSERT_EQ(permitted(minimum[i]), had[i]);
                /* Only what the environment withheld is named. */
                if (had[i]) {
                        char *name = cap_to_name(minimum[i]), needle[64];

                        ASSERT_NOT_NULL(name);
                        snprintf(needle, sizeof(needle), "Capability %s is not ours", name);
                        if (strstr(log, needle))
                                TEST_FAIL("%s was there and is named as missing: '%s'", name, log);
                        cap_free(name);
                }
        }
        ASSERT_FALSE(permitted(CAP_DAC_OVERRIDE));
        ASSERT_FALSE(permitted(CAP_SYS_ADMIN));
        ASSERT_EQ(prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0), 0);
}

TEST_MAIN()
