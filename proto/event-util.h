/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libevent cleanup helpers. Runs in: monitor and worker. */
#pragma once

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdint.h>
#include <sys/time.h>

#include "macro.h"

/* A delay for event_add(), in microseconds; its seconds capped at INT32_MAX. */
static inline struct timeval timeval_from_usec(uint64_t usec) {
        return (struct timeval) { .tv_sec = (time_t) MIN(usec / 1000000U, (uint64_t) INT32_MAX),
                                  .tv_usec = (suseconds_t) (usec % 1000000U) };
}

DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(struct event *, event_free, NULL);
DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(struct evbuffer *, evbuffer_free, NULL);
DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(struct event_base *, event_base_free, NULL);
