/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libevent helpers. Runs in: any process with an event loop. */
#pragma once

#include <event2/buffer.h>
#include <event2/event.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(struct event *, event_free, NULL);
DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(struct evbuffer *, evbuffer_free, NULL);
DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(struct event_base *, event_base_free, NULL);

/* The daemon's loops have three priorities: libevent gives every event the middle one
 * (npriorities / 2), and an event set to EVENT_PRIORITY_LAST runs only once nothing else is
 * ready: batched sends flush there, after everything that could add to the batch. */
#define EVENT_PRIORITIES 3
#define EVENT_PRIORITY_LAST (EVENT_PRIORITIES - 1)

static inline struct event_base *event_base_new_prioritized(void) {
        struct event_base *b = event_base_new();

        if (b && event_base_priority_init(b, EVENT_PRIORITIES) < 0)
                b = (event_base_free(b), NULL);
        return b;
}
