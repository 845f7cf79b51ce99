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

/* What the drop cannot take (here: without CAP_SETPCAP, the bounding set stays) is found when it
 * checks afterwards, each capability named up to the kernel's last: -EPERM, or a warning and 0 when
 * more is allowed. */
TEST(what_could_not_be_dropped_is_found) {
        cap_value_t last = capability_last_cap();
        _cleanup_(cap_name_freep) char *last_name = cap_to_name(last);
        char needle[96];

        need_root();
        if (prctl(PR_CAPBSET_READ, last, 0, 0, 0) != 1)
                SKIP("the last capability is not in the bounding set here");
        lose(CAP_SETPCAP);
        snprintf(needle, sizeof(needle), "Capability %s could not be dropped.", last_name);
        for (int allow_more = 1; allow_more >= 0; allow_more--) {
                _cleanup_free_ char *log = NULL;
                int saved = log_capture_begin(), r;

                r = capability_drop_to_minimum(allow_more);
                log = log_capture_end(saved);
                if (allow_more)
                        ASSERT_OK(r);
                else
                        ASSERT_ERRNO(r, EPERM);
                if (!strstr(log, needle))
                        TEST_FAIL("'%s' not said: '%s'", needle, log);
        }
}

static int verify_none_quietly(void) {
        _cleanup_free_ char *log = NULL;
        int saved = log_capture_begin(), r;

        r = capability_verify_none();
        log = log_capture_end(saved);
        return r;
}

/* Clears the effective, permitted and inheritable sets. */
static void clear_sets(void) {
        _cleanup_(cap_freep) cap_t none = cap_init();

        ASSERT_NOT_NULL(none);
        ASSERT_OK(cap_set_proc(none));
}

/* The worker's check finds each thing left: a permitted capability alone, the last capability
 * alone in the bounding set, no-new-privileges off; and nothing when nothing is left. */
TEST(verify_none_finds_each_remainder) {
        cap_value_t last = capability_last_cap();

        need_root();

        /* Bounding set empty, no-new-privileges on, the permitted set as it was. */
        for (cap_value_t c = 0; c <= last; c++)
                ASSERT_OK(prctl(PR_CAPBSET_DROP, c, 0, 0, 0));
        ASSERT_OK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
        ASSERT_TRUE(permitted(CAP_SETPCAP));
        ASSERT_ERRNO(verify_none_quietly(), EPERM);
        clear_sets();
        ASSERT_OK(verify_none_quietly());
}

TEST(verify_none_finds_the_last_capability_bounded) {
        cap_value_t last = capability_last_cap();

        need_root();
        if (prctl(PR_CAPBSET_READ, last, 0, 0, 0) != 1)
                SKIP("the last capability is not in the bounding set here");
        for (cap_value_t c = 0; c < last; c++)
                ASSERT_OK(prctl(PR_CAPBSET_DROP, c, 0, 0, 0));
        ASSERT_OK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
        clear_sets();
        ASSERT_ERRNO(verify_none_quietly(), EPERM);
}

TEST(verify_none_wants_no_new_privileges) {
        cap_value_t last = capability_last_cap();

        need_root();
        if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 0)
                SKIP("no-new-privileges is on already");
        for (cap_value_t c = 0; c <= last; c++)
                ASSERT_OK(prctl(PR_CAPBSET_DROP, c, 0, 0, 0));
        clear_sets();
        ASSERT_ERRNO(verify_none_quietly(), EPERM);
        ASSERT_OK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
        ASSERT_OK(verify_none_quietly());
}

TEST_MAIN()
