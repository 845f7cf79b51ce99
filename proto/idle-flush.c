/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A flush when the loop is idle, within a bound (see idle-flush.h). Runs in: monitor and worker. */

#include "idle-flush.h"

struct IdleFlush {
        struct event *idle;     /* lowest priority, activated */
        struct event *deadline; /* a timer at the normal priority */
        IdleFlushFunc func;
        void *userdata;
        bool scheduled;
};

struct event_base *event_base_new_prioritized(void) {
        struct event_base *b = event_base_new();

        if (b && event_base_priority_init(b, EVENT_PRIORITIES) < 0) {
                event_base_free(b);
                return NULL;
        }
        return b;
}

static void run(evutil_socket_t fd, short what, void *userdata) {
        IdleFlush *f = userdata;

        /* Whichever came first: the other is not wanted any more. */
        (void) event_del(f->idle);
        (void) event_del(f->deadline);
        f->scheduled = false;
        f->func(f->userdata);
}

int idle_flush_new(struct event_base *base, IdleFlushFunc func, void *userdata, IdleFlush **ret) {
        IdleFlush *f;

        assert(base);
        assert(func);
        assert(ret);

        f = new0(IdleFlush, 1);
        if (!f)
                return -ENOMEM;
        f->func = func;
        f->userdata = userdata;
        f->idle = event_new(base, -1, 0, run, f);
        f->deadline = evtimer_new(base, run, f);
        /* A loop with one priority has no idle one: the flush then runs at the end of the
         * round it was scheduled in, which is still correct, only batches less. */
        if (!f->idle || !f->deadline ||
            event_priority_set(f->idle, event_base_get_npriorities(base) - 1) < 0) {
                idle_flush_free(f);
                return -ENOMEM;
        }
        *ret = f;
        return 0;
}

IdleFlush *idle_flush_free(IdleFlush *f) {
        if (!f)
                return NULL;
        if (f->idle)
                event_free(f->idle);
        if (f->deadline)
                event_free(f->deadline);
        return mfree(f);
}

void idle_flush_schedule(IdleFlush *f) {
        static const struct timeval max_delay = { .tv_usec = IDLE_FLUSH_MAX_DELAY_USEC };

        assert(f);

        if (f->scheduled)
                return;
        f->scheduled = true;
        event_active(f->idle, EV_TIMEOUT, 0);
        (void) evtimer_add(f->deadline, &max_delay);
}
