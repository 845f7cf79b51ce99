/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The hostile suites' well-behaved VMM and its latency bound (see good-client.h). */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "good-client.h"
#include "guest-calls.h"
#include "tdisp.h"

#define GOOD_WARMUP_REQUESTS 5

void good_connect(Tsmd *t, Good *g, uint64_t latency_usec) {
        uint8_t msg[64];
        size_t len;
        _cleanup_free_ char *enc = NULL;

        /* Until measured: what a first request on an idle tsmd takes, cold caches and all. */
        *g = (Good) { .t = t, .latency_usec = latency_usec, .bound_usec = latency_usec + TSMD_WAIT_USEC };
        /* On the audit log's file system, whose fdatasync each request waits for. */
        snprintf(g->probe_path, sizeof(g->probe_path), "%s/good-client-probe", t->dir);
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
        free(g->during_start);
        free(g->probe_at);
        g->during = g->during_start = g->probe_at = NULL;
        (void) unlink(g->probe_path);
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

/* One unaudited call, Ping or (odd i) GetStatus, on the thread's own connection; NULL if it was
 * answered (GetStatus with the audit state expected), else what went wrong. */
static const char *unaudited_request(Good *g, size_t i, uint64_t *ret_usec, char *why, size_t why_size) {
        const char *method = i % 2 ? "io.tsmd.Service.GetStatus" : "io.tsmd.Service.Ping";
        json_object *reply = NULL, *audit, *state;
        const char *error = NULL;
        uint64_t start = now_usec();
        int r;

        r = varlink_client_call(g->unaudited, method, NULL, &reply, &error);
        *ret_usec = now_usec() - start;
        if (r < 0)
                snprintf(why, why_size, "%s: no reply: %s", method, strerror(-r));
        else if (error)
                snprintf(why, why_size, "%s: %s %s", method, error, reply ? json_object_to_json_string(reply) : "");
        else if (i % 2 == 0)
                return NULL;
        else if (!json_object_object_get_ex(reply, "audit", &audit) || !json_object_object_get_ex(audit, "state", &state) ||
                 !json_object_is_type(state, json_type_string) ||
                 (g->audit_state && !streq(json_object_get_string(state), g->audit_state)))
                snprintf(why, why_size, "%s: audit state not %s: %s", method, g->audit_state ?: "told",
                         json_object_to_json_string(reply));
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
                uint64_t took, start = now_usec();
                const char *failed;

                atomic_fetch_add(&g->n_started, 1);
                failed = g->unaudited ? unaudited_request(g, g->n_during, &took, g->failure, sizeof(g->failure))
                                      : good_request(g, &took, g->failure, sizeof(g->failure));
                if (failed)
                        break;
                if (g->n_during == size) {
                        size = MAX(size * 2, (size_t) 256);
                        g->during = realloc(g->during, size * sizeof(g->during[0]));
                        g->during_start = realloc(g->during_start, size * sizeof(g->during_start[0]));
                        ASSERT_NOT_NULL(g->during);
                        ASSERT_NOT_NULL(g->during_start);
                }
                g->during_start[g->n_during] = start;
                g->during[g->n_during++] = took;
                sleep_usec(GOOD_PACE_USEC);
        }
        return NULL;
}

static void probe_note(Good *g, size_t *size) {
        if (g->n_probe == *size) {
                *size = MAX(*size * 2, (size_t) 256);
                g->probe_at = realloc(g->probe_at, *size * sizeof(g->probe_at[0]));
                ASSERT_NOT_NULL(g->probe_at);
        }
        g->probe_at[g->n_probe++] = now_usec();
}

/* What the good client's requests do to the disk, without tsmd: a write and its fdatasync. */
static void *probe_thread(void *userdata) {
        Good *g = userdata;
        size_t size = 0;
        int fd = open(g->probe_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        ASSERT_OK(fd);
        while (!atomic_load(&g->stop)) {
                probe_note(g, &size);
                ASSERT_EQ(pwrite(fd, "x", 1, 0), 1);
                ASSERT_OK(fdatasync(fd));
                sleep_usec(GOOD_PACE_USEC);
        }
        probe_note(g, &size);
        close(fd);
        return NULL;
}

/* How long the machine stalled during [start, end): its longest probe round there past its pace
 * (the part within). The longest, not a sum: every round's few ms of fdatasync and wake-up would
 * add up to most of a long request, whatever held it. */
static uint64_t machine_stall(const Good *g, uint64_t start, uint64_t end) {
        uint64_t stall = 0;

        for (size_t i = 0; i + 1 < g->n_probe; i++) {
                uint64_t a = MAX(start, g->probe_at[i]), b = MIN(end, g->probe_at[i + 1]);
                uint64_t round = g->probe_at[i + 1] - g->probe_at[i];

                if (a < b && round > GOOD_PACE_USEC)
                        stall = MAX(stall, MIN(b - a, round - GOOD_PACE_USEC));
        }
        return stall;
}

void good_during_start(Good *g) {
        ASSERT_FALSE(g->running);
        ASSERT_TRUE(g->base_bound_usec > 0); /* measured */
        atomic_store(&g->stop, false);
        atomic_store(&g->n_started, 0);
        g->n_during = 0;
        g->n_probe = 0;
        g->failure[0] = 0;
        ASSERT_EQ(pthread_create(&g->probe_thread, NULL, probe_thread, g), 0);
        ASSERT_EQ(pthread_create(&g->thread, NULL, good_thread, g), 0);
        g->running = true;
}

void good_during_start_unaudited(Good *g, const char *audit_state) {
        ASSERT_NULL(g->unaudited);
        g->unaudited = tsmd_connect_guest(g->t);
        g->audit_state = audit_state;
        good_during_start(g);
}

void good_during_stop_at(const char *file, int line, Good *g, const char *what) {
        bool unaudited = g->unaudited;
        const char *calls = unaudited ? "unaudited calls" : "requests";
        uint64_t slowest = 0, worst = 0, worst_stall = 0;
        size_t over = 0, stalled = 0;

        ASSERT_TRUE(g->running);
        /* The attack is over: what the thread began before now was made during it, and one at
         * least must have been (a thread not yet running saw none of the attack). */
        while (atomic_load(&g->n_started) == 0)
                sleep_usec(USEC_PER_MSEC);
        g->n_started_during = atomic_load(&g->n_started);
        atomic_store(&g->stop, true);
        ASSERT_EQ(pthread_join(g->thread, NULL), 0);
        ASSERT_EQ(pthread_join(g->probe_thread, NULL), 0);
        g->running = false;
        if (g->unaudited) {
                varlink_client_free(g->unaudited);
                g->unaudited = NULL;
        }
        if (g->failure[0])
                TEST_FAIL("%s:%d: during %s, the good client's %s failed: %s", file, line, what,
                          unaudited ? "unaudited call" : "GuestRequest", g->failure);
        for (size_t i = 0; i < g->n_during; i++) {
                uint64_t stall, own;

                slowest = MAX(slowest, g->during[i]);
                if (g->during[i] <= g->bound_usec)
                        continue;
                /* Past the bound: by what tsmd did, or by a stall of the machine, which the
                 * probe saw too. */
                stall = machine_stall(g, g->during_start[i], g->during_start[i] + g->during[i]);
                own = g->during[i] - MIN(g->during[i], stall);
                if (own > g->bound_usec) {
                        over++;
                        if (own > worst) {
                                worst = own;
                                worst_stall = stall;
                        }
                } else
                        stalled++;
        }
        qsort(g->during, g->n_during, sizeof(g->during[0]), cmp_u64);
        fprintf(stderr, "# during %s: the good client's %zu %s (%zu begun before the attack ended), median %llu us, "
                "slowest %llu us (bound %llu ms)\n",
                what, g->n_during, calls, g->n_started_during, (unsigned long long) g->during[g->n_during / 2],
                (unsigned long long) slowest, (unsigned long long) (g->bound_usec / USEC_PER_MSEC));
        if (stalled > 0)
                fprintf(stderr, "# during %s: %zu of them past the bound only by the machine's stall meanwhile\n", what, stalled);
        if (over > 0)
                TEST_FAIL("%s:%d: during %s, %zu of the good client's %s took longer than %llu ms, the machine's stall "
                          "aside (the worst %llu ms, and %llu ms of stall)",
                          file, line, what, over, calls, (unsigned long long) (g->bound_usec / USEC_PER_MSEC),
                          (unsigned long long) (worst / USEC_PER_MSEC), (unsigned long long) (worst_stall / USEC_PER_MSEC));
        /* Only its GuestRequests count as the good client's requests (and have records). */
        if (!unaudited) {
                g->n_ok += (unsigned) g->n_during;
                g->max_usec = MAX(g->max_usec, slowest);
        }
}
