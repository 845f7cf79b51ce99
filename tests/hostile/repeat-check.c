/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The hostile suites' leak check by repetition (see repeat-check.h). */

#include <stdio.h>

#include "repeat-check.h"

unsigned expect_no_growth_at(const char *file, int line, Tsmd *t, const char *what, unsigned n_clients,
                         unsigned refusals_per_run, RepeatAttack attack, void *userdata, Good *g) {
        bool memory = !TSMD_SANITIZED && !tsmd_under_valgrind();
        unsigned runs = (REPEAT_MIN_REFUSALS + refusals_per_run - 1) / refusals_per_run, warmup, fds0, fds;
        unsigned long anon0, anon;
        uint64_t start;

        ASSERT_TRUE(refusals_per_run > 0);
        if (!memory)
                runs = MIN(runs, REPEAT_RUNS_SANITIZED);
        /* Enough for the allocator to reach its steady state (heap top pad, arenas' high-water
         * marks): a single run leaves some 100 KiB to come, whatever the number of runs after. */
        warmup = MAX(1U, runs / REPEAT_WARMUP_DIVISOR);
        /* Every connection the test closed before is gone (an admin's counts towards its uid's
         * limit), then the warm-up. */
        (void) tsmd_settled_fds(t, n_clients);
        for (unsigned i = 0; i < warmup; i++)
                attack(t, userdata);
        fds0 = tsmd_settled_fds(t, n_clients);
        anon0 = tsmd_anon_kib(t);

        start = now_usec();
        if (g)
                good_during_start(g);
        for (unsigned i = 0; i < runs; i++)
                attack(t, userdata);
        if (g)
                good_during_stop_at(file, line, g, what);
        fds = tsmd_settled_fds(t, n_clients);
        /* The worker trims its heap after connections that buffered much, at most once a second
         * (varlink-server-conn.c): what is not trimmed by then is kept. */
        anon = tsmd_anon_kib(t);
        for (uint64_t deadline = now_usec() + REPEAT_SETTLE_USEC; memory && anon > anon0 + REPEAT_SLACK_KIB && now_usec() < deadline;
             anon = tsmd_anon_kib(t))
                sleep_usec(20 * USEC_PER_MSEC);
        fprintf(stderr, "# %s, %u more times (%u refusals) in %llu ms: fds %u -> %u, anonymous RSS %lu -> %lu KiB\n", what,
                runs, runs * refusals_per_run, (unsigned long long) ((now_usec() - start) / USEC_PER_MSEC), fds0, fds,
                anon0, anon);
        if (fds != fds0)
                TEST_FAIL("%s:%d: %s, %u more times: tsmd holds %u fds, %u after the first", file, line, what, runs, fds,
                          fds0);
        if (memory && anon > anon0 + REPEAT_SLACK_KIB)
                TEST_FAIL("%s:%d: %s, %u more times (%u refusals): tsmd's anonymous memory grew by %lu KiB, about %lu bytes a refusal",
                          file, line, what, runs, runs * refusals_per_run, anon - anon0,
                          (anon - anon0) * 1024 / (runs * refusals_per_run));
        return warmup + runs;
}
