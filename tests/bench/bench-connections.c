/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Connection scale: what idle client connections cost tsmd, and what they do to the latency of
 * an active client. The real tsmd on its emulated platform with durable audit (group commit):
 *
 *   1. one active client (context, vDevice, GuestRequest GET_TDISP_VERSION in scope info, one
 *      at a time, blocking) measures its latency with no other client connected; and the
 *      latency of io.tsmd.Service.Ping on the same connection, which touches neither device
 *      nor audit disk: tsmd's event loop alone, which the fdatasync of every GuestRequest
 *      (and other load on the disk) would otherwise hide;
 *   2. N idle clients connect to the guest socket, each makes one call (io.tsmd.Service.Ping,
 *      so tsmd has accepted it and set up everything a connection has: peer identity, client
 *      state) and then stays connected, doing nothing;
 *   3. tsmd's memory and fds with them, minus before, per idle connection: RSS and PSS summed
 *      over tsmd and all its descendants (after privilege separation the connections live in
 *      the worker, a child of tsmd), and its fds likewise;
 *   4. the active client's latency again while the N idle, as a ratio to step 1;
 *   5. the idle clients disconnect; memory and latency once more (how much tsmd gives back,
 *      and how much the latency drifts anyway: compare 1 and 5 before reading 4).
 *
 * RLIMIT_NOFILE is raised for this process and thereby for tsmd, which inherits it; tsmd's
 * MaxConnections and MaxConnectionsPerUid are set above N. Prints; never asserts on sizes or
 * times. Exits 0 unless something failed functionally.
 *
 *   bench-connections [--quick] [--idle=N]      (N: 10000, --quick 1000)
 *
 * Runs in: benchmarks (and, with --quick, as a bench-smoke test).
 */

#include <poll.h>
#include <unistd.h>

#include "bench-util.h"
#include "emu-config.h"
#include "json-util.h"
#include "tdisp.h"
#include "tsmd-fixture.h"

/* libharness's test_main() refers to these; this program has no TEST()s. */
TestCase test_cases[TEST_MAX];
size_t test_n_cases;

#define G "io.tsmd.Guest."
#define DEVICE "0000:01:00.0"
#define PING "{\"method\":\"io.tsmd.Service.Ping\"}"

typedef struct Params {
        unsigned n_idle;
        unsigned latency_iters;
        uint64_t phase_usec;
} Params;

static const Params params_full = {
        .n_idle = 10000,
        .latency_iters = 20000,
        .phase_usec = 5 * USEC_PER_SEC,
};
static const Params params_quick = {
        .n_idle = 1000,
        .latency_iters = 200,
        .phase_usec = USEC_PER_SEC / 2,
};

typedef struct Active {
        VarlinkClient *c;
        int64_t ctx;
        char *b64req;
} Active;

static void active_setup(Tsmd *t, Active *a) {
        uint8_t msg[sizeof(TdispHeader)];
        uint32_t fid;
        size_t len;
        json_object *r;
        int fd;

        a->c = tsmd_connect_guest(t);
        r = CALL_OK(a->c, G "OpenContext", NULL);
        a->ctx = JINT(r, "context");
        fd = varlink_client_take_fd(a->c, (size_t) JINT(r, "fileDescriptor"));
        if (fd >= 0)
                close(fd);
        CALL_OK(a->c, G "AttachDevice",
                strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1,\"pciAddress\":\"" DEVICE "\"}", a->ctx));
        /* Bound, as guest requests need. */
        CALL_OK(a->c, G "Bind", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1}", a->ctx));
        ASSERT_OK(tdisp_function_id_from_pci(0, 1, 0, &fid));
        ASSERT_OK(tdisp_build_request(TDISP_MSG_GET_VERSION, fid, NULL, 0, msg, sizeof(msg), &len));
        a->b64req = b64(msg, len);
}

static void active_request(Active *a) {
        json_object *p = json_object_new_object(), *reply;
        _cleanup_free_ uint8_t *resp = NULL;
        const char *error = NULL;
        size_t len;

        /* A value that cannot be made fails the run, not leaves the call without it. */
        ASSERT_NOT_NULL(p);
        ASSERT_OK(json_object_add(p, "context", json_object_new_int64(a->ctx)));
        ASSERT_OK(json_object_add(p, "vdeviceId", json_object_new_int(1)));
        ASSERT_OK(json_object_add(p, "scope", json_object_new_string("info")));
        ASSERT_OK(json_object_add(p, "request", json_object_new_string(a->b64req)));
        ASSERT_OK(json_object_add(p, "maxResponseSize", json_object_new_int(256)));
        ASSERT_OK(varlink_client_call(a->c, G "GuestRequest", p, &reply, &error));
        if (error)
                TEST_FAIL("GuestRequest: %s %s", error, json_object_to_json_string(reply));
        resp = unb64(json_get_string(reply, "response"), &len);
        ASSERT_TRUE(len == sizeof(TdispVersionResponse) + 1 && resp[1] == TDISP_MSG_VERSION);
}

static void active_ping(Active *a) {
        CALL_OK(a->c, "io.tsmd.Service.Ping", NULL);
}

typedef struct Latency {
        Stats request, ping;
} Latency;

static Stats measure(const Params *P, Active *a, void (*call)(Active *a), uint64_t *ns) {
        uint64_t deadline = now_usec() + P->phase_usec;
        size_t n = 0;

        for (unsigned i = 0; i < 100; i++) /* warm up */
                call(a);
        for (unsigned i = 0; i < P->latency_iters; i++) {
                uint64_t t0 = now_nsec();
                call(a);
                ns[n++] = now_nsec() - t0;
                if ((i & 255) == 0 && now_usec() > deadline)
                        break;
        }
        return stats_of(ns, n);
}

static Latency active_latency(const Params *P, Active *a, uint64_t *ns) {
        return (Latency) {
                .request = measure(P, a, active_request, ns),
                .ping = measure(P, a, active_ping, ns),
        };
}

/* Waits (bounded) until tsmd counts n connections, status included. */
static void wait_connections(VarlinkClient *status, int64_t n) {
        uint64_t deadline = now_usec() + 6 * TSMD_WAIT_USEC;

        for (;;) {
                json_object *r = CALL_OK(status, "io.tsmd.Service.GetStatus", NULL);

                if (JINT(r, "connections") == n)
                        return;
                if (now_usec() > deadline)
                        TEST_FAIL("tsmd counts %" PRIi64 " connections, expected %" PRIi64, JINT(r, "connections"), n);
                sleep_usec(10 * USEC_PER_MSEC);
        }
}

/* Reads one NUL-terminated reply from a blocking socket (the Ping reply is tiny). */
static void read_reply(int fd) {
        char buf[256];
        size_t n = 0;

        for (;;) {
                ssize_t k = read(fd, buf + n, sizeof(buf) - n);

                if (k <= 0)
                        TEST_FAIL("idle connection: %s", k < 0 ? strerror(errno) : "closed by tsmd");
                n += (size_t) k;
                if (buf[n - 1] == 0)
                        break;
                if (n == sizeof(buf))
                        TEST_FAIL("idle connection: reply too long");
        }
        if (strstr(buf, "\"error\""))
                TEST_FAIL("idle connection: Ping failed: %s", buf);
}

static void print_usage(const char *what, const ProcTreeUsage *u) {
        printf("  %-42s %3zu proc %8lu KiB RSS %8lu KiB PSS %6u fds\n", what, u->n_procs, u->rss_kib, u->pss_kib,
               u->n_fds);
}

static void print_latency(const char *what, const Stats *s) {
        printf("  %-42s n %6zu  p50 %8.1f us  p99 %8.1f us  mean %8.1f us\n", what, s->n, s->p50_us, s->p99_us,
               s->mean_us);
}

int main(int argc, char *argv[]) {
        Params p;
        const Params *P = &p;
        unsigned n_idle = 0;
        _cleanup_free_ uint64_t *ns = NULL;
        _cleanup_free_ int *idle = NULL;
        _cleanup_(varlink_client_freep) VarlinkClient *status = NULL;
        _cleanup_free_ char *load_start = NULL, *load_end = NULL;
        ProcTreeUsage u0, u1, u2;
        Latency before, with, after;
        Active a = {};
        char config[512], policy[256];
        unsigned long nofile;
        uint64_t t0, t_connect;
        bool quick = false;
        Tsmd t;

        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--quick"))
                        quick = true;
                else if (strneq(argv[i], "--idle=", 7) && atoi(argv[i] + 7) > 0)
                        n_idle = (unsigned) atoi(argv[i] + 7);
                else {
                        fprintf(stderr, "usage: %s [--quick] [--idle=N]\n", argv[0]);
                        return 2;
                }
        }
        p = quick ? params_quick : params_full;
        if (n_idle > 0)
                p.n_idle = n_idle;
        setvbuf(stdout, NULL, _IOLBF, 0);
        ASSERT_NOT_NULL(ns = new0(uint64_t, P->latency_iters));
        ASSERT_NOT_NULL(idle = new0(int, P->n_idle));

        /* This process holds every idle connection; tsmd (which inherits the limit) holds their
         * other ends plus its own. */
        nofile = raise_nofile(P->n_idle + 1024);
        load_start = strdup(loadavg());

        snprintf(config, sizeof(config),
                 "[Platform]\nMode=emulated\nIommuDevice=/dev/zero\nEmulatedDevices=" DEVICE "\n"
                 "[Varlink]\nMaxConnections=%u\nMaxConnectionsPerUid=%u\n",
                 P->n_idle + 64, P->n_idle + 64);
        snprintf(policy, sizeof(policy), "[Client:bench]\nUsers=%u\nDevices=*\nScopes=info\n", (unsigned) getuid());
        tsmd_start(&t, &(TsmdOptions) {
                .config = config,
                .files = (const TsmdFile[]) { { "policy.conf", policy } },
                .n_files = 1,
                /* Not debug: its logging per connection would be what we measure. Not warning: the
                 * fixture waits for tsmd's "running." (info). */
                .log_level = "info",
        });
        status = tsmd_connect(&t);
        active_setup(&t, &a);

        /* 1. Alone. */
        before = active_latency(P, &a, ns);
        wait_connections(status, 2);
        u0 = proc_tree_usage(t.pid);

        /* 2. N idle clients, one after the other: connect, Ping, answered. */
        t0 = now_nsec();
        for (unsigned i = 0; i < P->n_idle; i++) {
                idle[i] = tsmd_raw_connect(t.guest_socket);
                if (idle[i] < 0)
                        TEST_FAIL("idle connection %u: %s", i, strerror(-idle[i]));
                ASSERT_TRUE(write(idle[i], PING, sizeof(PING)) == (ssize_t) sizeof(PING));
                read_reply(idle[i]);
        }
        t_connect = now_nsec() - t0;
        wait_connections(status, P->n_idle + 2);

        /* 3. What they cost. */
        u1 = proc_tree_usage(t.pid);

        /* 4. The active client among them. */
        with = active_latency(P, &a, ns);
        wait_connections(status, P->n_idle + 2); /* none of them went away meanwhile */

        /* 5. They go. */
        for (unsigned i = 0; i < P->n_idle; i++)
                close(idle[i]);
        wait_connections(status, 2);
        u2 = proc_tree_usage(t.pid);
        after = active_latency(P, &a, ns);
        load_end = strdup(loadavg());

        if (!tsmd_is_running(&t))
                TEST_FAIL("tsmd exited during the benchmark");
        varlink_client_free(a.c);
        free(a.b64req);
        status = varlink_client_free(status);
        tsmd_teardown(&t);

        printf("# bench-connections%s: %u idle clients (connected, one Ping answered, then silent), one active\n"
               "# client (GuestRequest GET_TDISP_VERSION, blocking, one at a time). tsmd = tsmd and its children.\n"
               "# RLIMIT_NOFILE %lu. Memory: VmRSS (shared pages count once per process) and Pss, summed.\n"
               "# %ld CPUs online, load average %s at the start, %s at the end.\n",
               quick ? " --quick (numbers not meaningful)" : "", P->n_idle, nofile, sysconf(_SC_NPROCESSORS_ONLN),
               load_start, strna(load_end));
        printf("\nmemory and fds of tsmd\n");
        print_usage("active client only", &u0);
        print_usage(strf("with %u idle connections", P->n_idle), &u1);
        print_usage("after they disconnected", &u2);
        printf("  per idle connection: %.2f KiB RSS, %.2f KiB PSS, %.3f fds (target: <= 16 KiB RSS: %s)\n",
               ((double) u1.rss_kib - (double) u0.rss_kib) / P->n_idle,
               ((double) u1.pss_kib - (double) u0.pss_kib) / P->n_idle,
               ((double) u1.n_fds - (double) u0.n_fds) / P->n_idle,
               ((double) u1.rss_kib - (double) u0.rss_kib) / P->n_idle <= 16 ? "met" : "NOT met");
        printf("  kept after they disconnected: %.2f KiB RSS per connection that was\n",
               ((double) u2.rss_kib - (double) u0.rss_kib) / P->n_idle);
        printf("  connecting them (connect + Ping + reply, one at a time): %.3f s, %.0f connections/s\n",
               (double) t_connect / 1e9, P->n_idle / ((double) t_connect / 1e9));

        for (unsigned k = 0; k < 2; k++) {
                const Stats *b = k ? &before.ping : &before.request, *w = k ? &with.ping : &with.request,
                            *f = k ? &after.ping : &after.request;

                printf("\nlatency of the active client: %s\n",
                       k ? "io.tsmd.Service.Ping (no device, no audit)" : "GuestRequest (durable audit)");
                print_latency("alone", b);
                print_latency(strf("with %u idle connections", P->n_idle), w);
                print_latency("alone again, after they disconnected", f);
                printf("  ratio with idle / alone:        p50 %.2fx  p99 %.2fx\n", w->p50_us / b->p50_us,
                       w->p99_us / b->p99_us);
                printf("  ratio alone again / alone:      p50 %.2fx  p99 %.2fx  (the run's own drift)\n",
                       f->p50_us / b->p50_us, f->p99_us / b->p99_us);
        }
        return EXIT_SUCCESS;
}
