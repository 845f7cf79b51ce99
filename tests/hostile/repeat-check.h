/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A leak check by repetition, for attacks cheap to repeat: one run warms tsmd up (allocator
 * arenas, caches, first-touched pages), then enough more runs that their refusals number
 * REPEAT_MIN_REFUSALS; tsmd must then hold exactly the fds it held after the warm-up, and its
 * anonymous memory may have grown by REPEAT_SLACK_KIB at most, the allocator's noise (up to some
 * 120 KiB whatever the number of runs: a heap top pad, a 64 KiB buffer not yet trimmed). A leak
 * of REPEAT_LEAK_BYTES a refusal is twice that, whether the memory stays reachable or not (valgrind
 * reports only what is lost). Under sanitizers and valgrind their RSS says nothing: fewer runs,
 * the fds checked (valgrind's leak check speaks for the memory, ASan's cannot see the worker's).
 *
 * Runs in: tests.
 */
#pragma once

#include "good-client.h"
#include "tsmd-fixture.h"

#define REPEAT_SLACK_KIB 160UL
#define REPEAT_LEAK_BYTES 100UL
#define REPEAT_MIN_REFUSALS ((unsigned) (2 * REPEAT_SLACK_KIB * 1024 / REPEAT_LEAK_BYTES))
#define REPEAT_RUNS_SANITIZED 5U
#define REPEAT_WARMUP_DIVISOR 4U
#define REPEAT_SETTLE_USEC (1500 * USEC_PER_MSEC)

typedef void (*RepeatAttack)(Tsmd *t, void *userdata);

/* n_clients: the test's connections open (and idle) around it. With g non-NULL the good client
 * runs throughout the repetitions, within its bound (good_during_start()). Returns how many
 * times the attack ran, the warm-up included. */
#define expect_no_growth(t, what, n_clients, refusals_per_run, attack, userdata, g) \
        expect_no_growth_at(__FILE__, __LINE__, (t), (what), (n_clients), (refusals_per_run), (attack), (userdata), (g))
unsigned expect_no_growth_at(const char *file, int line, Tsmd *t, const char *what, unsigned n_clients,
                         unsigned refusals_per_run, RepeatAttack attack, void *userdata, Good *g);
