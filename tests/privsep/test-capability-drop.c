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
        cap_value_t last = capability_last_cap();
        _cleanup_free_ char *log = NULL;
        bool had[CAPABILITY_LAST_POSSIBLE + 1];
        size_t n_minimum = 0;
        int r;

        need_root();
        for (cap_value_t c = 0; c <= last; c++) {
                had[c] = permitted(c);
                n_minimum += capability_is_minimum(c);
        }
        ASSERT_EQ(n_minimum, 6u); /* tsmd.8's list: CAP_SYS_RAWIO ... CAP_KILL */
        log = drop_logged(&r);
        ASSERT_OK(r);
        for (cap_value_t c = 0; c <= last; c++) {
                _cleanup_(cap_name_freep) char *name = cap_to_name(c);
                char needle[64];

                /* What it had of the minimum it keeps; nothing else, in any set. */
                if (permitted(c) != (had[c] && capability_is_minimum(c)))
                        TEST_FAIL("%s: permitted %d after the drop, had it %d", name, permitted(c), had[c]);
                if (!capability_is_minimum(c))
                        ASSERT_EQ(prctl(PR_CAPBSET_READ, c, 0, 0, 0), 0);
                /* Only what the environment withheld is named. */
                snprintf(needle, sizeof(needle), "Capability %s is not ours", name);
                if (had[c] && strstr(log, needle))
                        TEST_FAIL("%s was there and is named as missing: '%s'", name, log);
        }
}

TEST_MAIN()
