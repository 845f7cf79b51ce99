/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The idle flush (proto/idle-flush.h): it waits while other events are ready, runs once however
 * often it was scheduled, and a loop that is never idle cannot hold it back (its deadline timer
 * runs it). Runs in: tests.
 */

#include <fcntl.h>
#include <unistd.h>

#include "harness.h"
#include "idle-flush.h"

typedef struct Counts {
        unsigned busy_runs;          /* of the busy event, so far */
        unsigned busy_runs_at_flush; /* when the flush ran */
        unsigned busy_until;         /* the busy event re-activates itself this many times */
        unsigned flushes;
        struct event *busy;
} Counts;

static void on_busy(evutil_socket_t fd, short what, void *userdata) {
        Counts *c = userdata;

        if (++c->busy_runs < c->busy_until)
                event_active(c->busy, EV_TIMEOUT, 0);
}

static void on_flush(void *userdata) {
        Counts *c = userdata;

        c->flushes++;
        c->busy_runs_at_flush = c->busy_runs;
}

static struct event_base *base_new(IdleFlush **f, Counts *c) {
        struct event_base *b = event_base_new_prioritized();

        ASSERT_NOT_NULL(b);
        ASSERT_EQ(event_base_get_npriorities(b), EVENT_PRIORITIES);
        ASSERT_NOT_NULL(c->busy = event_new(b, -1, 0, on_busy, c));
        ASSERT_OK(idle_flush_new(b, on_flush, c, f));
        return b;
}

TEST(waits_for_idle_runs_once) {
        Counts c = { .busy_until = 100 };
        IdleFlush *f;
        struct event_base *b = base_new(&f, &c);
        unsigned tries = 0;

        /* Scheduled before and amid other work, several times: one run, after all of it. The
         * work takes microseconds, but the deadline runs on libevent's coarse clock (a few ms
         * of resolution) and may pass in the middle of it, or the test be descheduled past it:
         * the flush then rightly runs early, and that try is done again (the deadline has its
         * own test below). A flush that did not wait for idle never gets it right. */
        for (;; tries++) {
                c.busy_runs = c.flushes = 0;
                idle_flush_schedule(f);
                event_active(c.busy, EV_TIMEOUT, 0);
                idle_flush_schedule(f);
                ASSERT_OK(event_base_loop(b, EVLOOP_NONBLOCK));
                ASSERT_EQ(c.flushes, 1);
                if (c.busy_runs_at_flush == 100)
                        break;
                ASSERT_LE(tries, 100u);
                /* Let the busy event finish before the next try. */
                ASSERT_OK(event_base_loop(b, EVLOOP_NONBLOCK));
        }

        /* And again, once per schedule after it ran. */
        idle_flush_schedule(f);
        ASSERT_OK(event_base_loop(b, EVLOOP_NONBLOCK));
        ASSERT_EQ(c.flushes, 2);

        /* Its deadline timer went with the run: nothing fires later. */
        usleep(2 * IDLE_FLUSH_MAX_DELAY_USEC);
        ASSERT_OK(event_base_loop(b, EVLOOP_NONBLOCK));
        ASSERT_EQ(c.flushes, 2);

        idle_flush_free(f);
        event_free(c.busy);
        event_base_free(b);
}

static void on_readable(evutil_socket_t fd, short what, void *userdata) {
        Counts *c = userdata;

        c->busy_runs++; /* never reads: the fd stays readable, every poll reports it */
}

TEST(busy_loop_cannot_hold_it_back) {
        Counts c = {};
        IdleFlush *f;
        struct event_base *b = base_new(&f, &c);
        struct event *ev;
        uint64_t start;
        int p[2];

        /* A socket that is always readable (a client keeping the loop busy): no round of the
         * loop is ever idle, and the flush runs by its deadline anyway. */
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        ASSERT_EQ(write(p[1], "x", 1), 1);
        ASSERT_NOT_NULL(ev = event_new(b, p[0], EV_READ | EV_PERSIST, on_readable, &c));
        ASSERT_OK(event_add(ev, NULL));

        /* It runs (where without the deadline it never would), while the loop is busy every
         * round. (No lower bound on when: libevent's timers run on the coarse monotonic
         * clock, a few milliseconds of resolution.) A round slower than the deadline (a
         * sanitized build on a loaded machine) lets it run at the first busy round, which says
         * nothing of the loop having been busy: that try is done again. */
        for (unsigned tries = 0;; tries++) {
                c.busy_runs = c.flushes = 0;
                start = now_monotonic_usec();
                idle_flush_schedule(f);
                while (c.flushes == 0 && now_monotonic_usec() - start < 10000000u)
                        ASSERT_OK(event_base_loop(b, EVLOOP_ONCE));
                ASSERT_EQ(c.flushes, 1);
                if (c.busy_runs_at_flush >= 2)
                        break;
                ASSERT_LE(tries, 100u);
        }

        event_free(ev);
        close(p[0]);
        close(p[1]);
        idle_flush_free(f);
        event_free(c.busy);
        event_base_free(b);
}

TEST_MAIN();
