/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A token bucket for log messages (see ratelimit.h). Runs in: monitor and worker. */

#include "macro.h"
#include "ratelimit.h"

bool ratelimit_below_at(RateLimit *r, uint64_t now) {
        assert(r);

        if (r->begin == 0 || now < r->begin || now - r->begin >= r->interval_usec) {
                r->begin = MAX(now, (uint64_t) 1);
                r->num = 0;
        }
        if (r->num < r->burst) {
                r->num++;
                return true;
        }
        r->dropped++;
        return false;
}

bool ratelimit_below(RateLimit *r) {
        return ratelimit_below_at(r, now_monotonic_usec());
}

unsigned ratelimit_take_dropped(RateLimit *r) {
        unsigned n;

        assert(r);
        n = r->dropped;
        r->dropped = 0;
        return n;
}
