/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A token bucket for log messages a peer can cause at will: at most `burst` per `interval`,
 * then silence until the interval ends, with a count of what was dropped for the next one
 * that passes. As systemd's RateLimit. Runs in: monitor and worker.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "log.h"

typedef struct RateLimit {
        uint64_t interval_usec;
        unsigned burst;
        unsigned num;      /* passed in the current interval */
        unsigned dropped;  /* refused since the last one that passed */
        uint64_t begin;    /* of the current interval; 0: none yet */
} RateLimit;

#define RATELIMIT(interval, b) ((RateLimit){ .interval_usec = (interval), .burst = (b) })

/* Whether one more may pass at time now (CLOCK_MONOTONIC, µs). */
bool ratelimit_below_at(RateLimit *r, uint64_t now);
bool ratelimit_below(RateLimit *r);

/* How many were refused before the one that just passed; resets the count. */
unsigned ratelimit_take_dropped(RateLimit *r);

/* log_full() as far as rl lets it, after a line counting what it held back since. */
#define log_full_ratelimited(rl, level, ...)                                                       \
        do {                                                                                       \
                RateLimit *_rl_ = (rl);                                                            \
                if (ratelimit_below(_rl_)) {                                                       \
                        unsigned _dropped_ = ratelimit_take_dropped(_rl_);                         \
                        if (_dropped_ > 0)                                                         \
                                log_full((level), "(%u similar messages were not logged.)", _dropped_); \
                        log_full((level), __VA_ARGS__);                                            \
                }                                                                                  \
        } while (false)
