/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The well-behaved VMM of the hostile suites: a context with DEV2 attached and bound, asking TDISP
 * GET_VERSION in scope "info". Its latency bound is relative to its own baseline, measured in
 * the same run before the attack (good_measure_baseline()): GOOD_LATENCY_FACTOR times the
 * slowest of up to GOOD_BASELINE_REQUESTS requests, but never less than GOOD_FLOOR_USEC, which a
 * loaded machine (CI's two cores, two suites at once) stays under: each request waits for its
 * audit record's fdatasync, which took up to 560 ms on a shared disk during the refusal floods
 * (another process's fdatasync on that file system waited as long), where the median is 0.2 ms.
 * Its requests are checked one at a time between attack steps (good_check()) or by a thread of
 * its own every GOOD_PACE_USEC while the attack runs (good_during_start()/good_during_stop()),
 * which must have started at least one of them before the attack ended. Where no audited call
 * can succeed (an audit disk full, failed or stuck: tsmd fails closed), the thread asks what
 * tsmd promises to answer all the same, on a connection of its own: Ping and GetStatus, which
 * are not audited, the latter telling the audit log's state (good_during_start_unaudited()).
 * There a second thread measures the machine meanwhile: it writes and fdatasyncs a byte of a
 * file next to tsmd's audit log every GOOD_PACE_USEC, and what its rounds took past that is the
 * machine's stall (a disk that stalls every fdatasync on it, a CPU that runs neither thread).
 * A request past its bound is held to it less the longest stall it overlapped: one that waited
 * on tsmd while the machine kept pace still fails, one that waited behind the machine as
 * everyone did (1086 ms against the floor of 1000, once) does not.
 *
 * Runs in: tests.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>

#include "tsmd-fixture.h"

#define GOOD_DEV "0000:02:00.0"

/* The baseline: as many requests as fit into GOOD_BASELINE_MAX_USEC (a device's latency,
 * valgrind), within these. */
#define GOOD_BASELINE_REQUESTS 40
#define GOOD_BASELINE_MIN_REQUESTS 8
#define GOOD_BASELINE_MAX_USEC (500 * USEC_PER_MSEC)
#define GOOD_LATENCY_FACTOR 50
/* ASan makes tsmd a few times slower, valgrind some thirty. */
#define GOOD_FLOOR_USEC (1000 * USEC_PER_MSEC)
#define GOOD_FLOOR_SANITIZED_USEC (2000 * USEC_PER_MSEC)
#define GOOD_FLOOR_VALGRIND_USEC (2000 * USEC_PER_MSEC)
/* The background client's pace: a VMM's, not a flood of its own. */
#define GOOD_PACE_USEC (5 * USEC_PER_MSEC)

typedef struct Good {
        Tsmd *t;
        VarlinkClient *c;
        int64_t ctx;
        char params[512];
        /* The emulated device's latency, part of each request and of no bound's factor. */
        uint64_t latency_usec;
        /* What one request may take: the measured one (base_bound_usec) unless a case sets
         * its own for a while. */
        uint64_t bound_usec, base_bound_usec;
        unsigned n_ok;
        uint64_t max_usec;

        /* The background client (good_during_start()). */
        pthread_t thread;
        bool running;
        atomic_bool stop;
        /* Requests it began, and of those how many before good_during_stop() was called. */
        atomic_size_t n_started;
        size_t n_started_during;
        /* With good_during_start_unaudited(): its own connection, and the audit log state
         * GetStatus must tell. */
        VarlinkClient *unaudited;
        const char *audit_state;
        uint64_t *during;       /* every request's time */
        uint64_t *during_start; /* ... and when it began (now_usec()) */
        size_t n_during;
        char failure[512];      /* the first failed request, "" if none */

        /* The machine's stall meanwhile: when each round of the probe began, the last one's end
         * included. */
        char probe_path[300];
        pthread_t probe_thread;
        uint64_t *probe_at;
        size_t n_probe;
} Good;

void good_connect(Tsmd *t, Good *g, uint64_t latency_usec);
void good_done(Good *g);

/* A few requests to warm up, then the timed ones: sets the bound. */
void good_measure_baseline(Good *g);

/* One request: must succeed, within the bound, with a VERSION response. Returns its time. */
#define good_check(g) good_check_at(__FILE__, __LINE__, (g))
uint64_t good_check_at(const char *file, int line, Good *g);

/* The good client's requests from a thread of its own until good_during_stop(), which fails
 * the test if any failed or took longer than the bound, and prints how long they took. No
 * good_check() meanwhile: the thread has the connection. */
void good_during_start(Good *g);
/* The same with Ping and GetStatus in turn, on a connection of its own, within the same bound;
 * each GetStatus must tell audit state audit_state ("ok", "full", "failed"; NULL: any, while it
 * changes). The good client's own connection stays the test's meanwhile. */
void good_during_start_unaudited(Good *g, const char *audit_state);
#define good_during_stop(g, what) good_during_stop_at(__FILE__, __LINE__, (g), (what))
void good_during_stop_at(const char *file, int line, Good *g, const char *what);
