/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The hostile suites' well-behaved VMM and its latency bound (see good-client.h). */

#include <stdio.h>
#include <stdlib.h>

#include "good-client.h"
#include "guest-calls.h"
#include "tdisp.h"

#define GOOD_WARMUP_REQUESTS 5

void good_connect(Tsmd *t, Good *g, uint64_t latency_usec) {
        uint8_t msg[64];
        size_t len;
        _cleanup_free_ char *enc = NULL;

        /* Until measured: what a first request on an idle tsmd takes, cold caches and all. */
        *g = (Good) { .latency_usec = latency_usec, .bound_usec = latency_usec + TSMD_WAIT_USEC };
        g->c = tsmd_connect_guest(t);
        g->ctx = guest_open_context(g->c);
        CALL_OK(g->c, "io.tsmd.Guest.AttachDevice", guest_attach_params(g->ctx, 1, GOOD_DEV));
        /* Bound, as a VMM's guest requests need (else DeviceNotBound). */
        CALL_OK(g->c, "io.tsmd.Guest.Bind", guest_vdev_params(g->ctx, 1));
        ASSERT_OK(tdisp_build_request(TDISP_MSG_GET_VERSION, guest_function_id(GOOD_DEV), NULL, 0, msg, sizeof(msg), &len));
        enc = b64(msg, len);
        snprintf(g->params, sizeof(g->params),
                 "{\"context\":%" PRIi64 ",\"vdeviceId\":1,\"scope\":\"info\",\"request\":\"%s\",\"maxResponseSize\":4096}",
                 g->ctx, enc);
}

void good_done(Good *g) {
        ASSERT_FALSE(g->running);
        varlink_client_free(g->c);
        g->c = NULL;
        free(g->during);
        g->during = NULL;
}

/* One request; NULL if it got its VERSION response, else what went wrong (static storage of
 * the caller's). */
static const char *good_request(Good *g, uint64_t *ret_usec, char *why, size_t why_size) {
        json_object *params = json_tokener_parse(g->params), *reply = NULL, *response;
        const char *error = NULL;
        uint64_t start = now_usec();
        _cleanup_free_ uint8_t *resp = NULL;
        size_t len = 0;
        int r;

        ASSERT_NOT_NULL(params);
        r = varlink_client_call(g->c, "io.tsmd.Guest.GuestRequest", params, &reply, &error);
        *ret_usec = now_usec() - start;
        if (r < 0)
                snprintf(why, why_size, "no reply: %s", strerror(-r));
        else if (error)
                snprintf(why, why_size, "%s %s", error, reply ? json_object_to_json_string(reply) : "");
        else if (!json_object_object_get_ex(reply, "response", &response) || !json_object_is_type(response, json_type_string))
                snprintf(why, why_size, "no response in %s", json_object_to_json_string(reply));
        else if (!(resp = unb64(json_object_get_string(response), &len)) || len < sizeof(TdispHeader) ||
                 resp[1] != TDISP_MSG_VERSION)
                snprintf(why, why_size, "no VERSION response");
        else
                return NULL;
        return why;
}

uint64_t good_check_at(const char *file, int line, Good *g) {
        char why[512];
        uint64_t took;

        if (g->running)
                TEST_FAIL("%s:%d: test bug: good_check() while the good client's thread runs", file, line);
        if (good_request(g, &took, why, sizeof(why)))
                TEST_FAIL("%s:%d: the good client's GuestRequest failed: %s", file, line, why);
        if (took > g->bound_usec)
                TEST_FAIL("%s:%d: the good client's GuestRequest took %llu ms, bound %llu ms", file, line,
                          (unsigned long long) (took / USEC_PER_MSEC), (unsigned long long) (g->bound_usec / USEC_PER_MSEC));
        g->max_usec = MAX(g->max_usec, took);
        g->n_ok++;
        return took;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static uint64_t floor_usec(void) {
        if (tsmd_under_valgrind())
                return GOOD_FLOOR_VALGRIND_USEC;
        return TSMD_SANITIZED ? GOOD_FLOOR_SANITIZED_USEC : GOOD_FLOOR_USEC;
}

void good_measure_baseline(Good *g) {
        uint64_t took[GOOD_BASELINE_REQUESTS], slowest, end;
        unsigned n = 0;

        for (unsigned i = 0; i < GOOD_WARMUP_REQUESTS; i++)
                good_check(g);
        end = now_usec() + GOOD_BASELINE_MAX_USEC;
        while (n < GOOD_BASELINE_REQUESTS && (n < GOOD_BASELINE_MIN_REQUESTS || now_usec() < end))
                took[n++] = good_check(g);
        qsort(took, n, sizeof(took[0]), cmp_u64);
        /* Of so few, the slowest is the 99th percentile: what the machine's load adds shows there. */
        slowest = took[n - 1] - MIN(took[n - 1], g->latency_usec);
        g->base_bound_usec = g->bound_usec = g->latency_usec + MAX(GOOD_LATENCY_FACTOR * slowest, floor_usec());
        g->max_usec = 0;
        fprintf(stderr, "# good client's baseline: median %llu us, slowest %llu us of %u; bound %llu ms\n",
                (unsigned long long) took[n / 2], (unsigned long long) took[n - 1], n,
                (unsigned long long) (g->bound_usec / USEC_PER_MSEC));
}

static void *good_thread(void *userdata) {
        Good *g = userdata;
        size_t size = 0;

        /* One request at least, however short the attack. */
        while (!atomic_load(&g->stop) || g->n_during == 0) {
                uint64_t took;

                if (good_request(g, &took, g->failure, sizeof(g->failure)))
                        break;
                if (g->n_during == size) {
                        size = MAX(size * 2, (size_t) 256);
                        g->during = realloc(g->during, size * sizeof(g->during[0]));
                        ASSERT_NOT_NULL(g->during);
                }
                g->during[g->n_during++] = took;
                sleep_usec(GOOD_PACE_USEC);
        }
        return NULL;
}

void good_during_start(Good *g) {
        ASSERT_FALSE(g->running);
        ASSERT_TRUE(g->base_bound_usec > 0); /* measured */
        atomic_store(&g->stop, false);
        g->n_during = 0;
        g->failure[0] = 0;
        ASSERT_EQ(pthread_create(&g->thread, NULL, good_thread, g), 0);
        g->running = true;
}

void good_during_stop_at(const char *file, int line, Good *g, const char *what) {
        uint64_t slowest = 0;
        size_t over = 0;

        ASSERT_TRUE(g->running);
        atomic_store(&g->stop, true);
        ASSERT_EQ(pthread_join(g->thread, NULL), 0);
        g->running = false;
        if (g->failure[0])
                TEST_FAIL("%s:%d: during %s, the good client's GuestRequest failed: %s", file, line, what, g->failure);
        for (size_t i = 0; i < g->n_during; i++) {
                slowest = MAX(slowest, g->during[i]);
                over += g->during[i] > g->bound_usec;
        }
        qsort(g->during, g->n_during, sizeof(g->during[0]), cmp_u64);
        fprintf(stderr, "# during %s: the good client's %zu requests, median %llu us, slowest %llu us (bound %llu ms)\n", what,
                g->n_during, (unsigned long long) g->during[g->n_during / 2], (unsigned long long) slowest,
                (unsigned long long) (g->bound_usec / USEC_PER_MSEC));
        if (over > 0)
                TEST_FAIL("%s:%d: during %s, %zu of the good client's requests took longer than %llu ms (slowest %llu ms)",
                          file, line, what, over, (unsigned long long) (g->bound_usec / USEC_PER_MSEC),
                          (unsigned long long) (slowest / USEC_PER_MSEC));
        g->n_ok += (unsigned) g->n_during;
        g->max_usec = MAX(g->max_usec, slowest);
}
