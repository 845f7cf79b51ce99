/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * GuestRequest benchmark: the real tsmd on its emulated platform, durable audit (group
 * commit, the default), against two baselines measured in the same run:
 *
 *   raw   one AF_UNIX stream round trip of the same bytes: the GuestRequest call as JSON out,
 *         a reply of the size tsmd sends back, echoed by a trivial server thread;
 *   emu   the same TDISP GET_VERSION request straight into emu_device_request(), in process;
 *   sync  (for orientation) append one audit-sized line and fdatasync() it, in a file next to
 *         tsmd's audit directory: the floor a durable, one-at-a-time request cannot go under.
 *
 * tsmd: GuestRequest (scope "info", TDISP GET_VERSION, 16 bytes) latency p50/p99 with one
 * client, and throughput with 1, 8 and 64 concurrent clients (each with its own connection,
 * context and vDevice on its own emulated device), each one request in flight, driven from
 * one thread through the asynchronous client. Every phase is bounded by a request count and
 * by wall time. Prints a table and ratios against the baselines; never asserts on absolute
 * times. Exits 0 unless something failed functionally (a call errored, tsmd died).
 *
 *   bench-guest-request [--quick] [--audit-sync=group|per-record]
 *
 * --audit-sync=per-record runs the same measurements with one fdatasync per audit record
 * instead of group commit (the default), for comparison.
 *
 * Runs in: benchmarks (and, with --quick, as the bench-smoke test).
 */

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "emu-config.h"
#include "emu-platform.h"
#include "json-util.h"
#include "tdisp.h"
#include "tsmd-fixture.h"

/* libharness's test_main() refers to these; this program has no TEST()s. */
TestCase test_cases[TEST_MAX];
size_t test_n_cases;

#define G "io.tsmd.Guest."
#define MAX_CLIENTS 64u

typedef struct Params {
        unsigned baseline_iters;  /* raw socket and emu round trips */
        unsigned latency_iters;   /* tsmd, one client */
        unsigned tput_requests;   /* per concurrency level, total */
        uint64_t phase_usec;      /* wall-time bound of every phase */
} Params;

static const Params params_full = {
        .baseline_iters = 100000,
        .latency_iters = 20000,
        .tput_requests = 100000,
        .phase_usec = 5 * USEC_PER_SEC,
};
static const Params params_quick = {
        .baseline_iters = 2000,
        .latency_iters = 200,
        .tput_requests = 640,
        .phase_usec = 2 * USEC_PER_SEC,
};

static uint64_t now_nsec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000000) + (uint64_t) ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

typedef struct Stats {
        size_t n;
        double p50_us, p99_us, mean_us;
} Stats;

static Stats stats_of(uint64_t *ns, size_t n) {
        Stats s = { .n = n };
        double sum = 0;

        if (n == 0)
                return s;
        qsort(ns, n, sizeof(*ns), cmp_u64);
        for (size_t i = 0; i < n; i++)
                sum += (double) ns[i];
        s.p50_us = (double) ns[n / 2] / 1e3;
        s.p99_us = (double) ns[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] / 1e3;
        s.mean_us = sum / (double) n / 1e3;
        return s;
}

/* ---- the request ------------------------------------------------------------------------ */

static void device_address(unsigned i, char buf[static EMU_PCI_ADDRESS_STRLEN + 1]) {
        /* One device per bus: 0000:01:00.0 ... 0000:40:00.0. */
        snprintf(buf, EMU_PCI_ADDRESS_STRLEN + 1, "0000:%02x:00.0", i + 1);
}

/* The TDISP GET_VERSION request for device i (16 bytes: header only). */
static size_t build_get_version(unsigned i, uint8_t *msg, size_t size) {
        uint32_t fid;
        size_t len;

        ASSERT_OK(tdisp_function_id_from_pci(0, (uint8_t) (i + 1), 0, &fid));
        ASSERT_OK(tdisp_build_request(TDISP_MSG_GET_VERSION, fid, NULL, 0, msg, size, &len));
        return len;
}

static json_object *guest_request_params(int64_t ctx, const char *b64req) {
        json_object *p = json_object_new_object();

        json_object_add(p, "context", json_object_new_int64(ctx));
        json_object_add(p, "vdeviceId", json_object_new_int(1));
        json_object_add(p, "scope", json_object_new_string("info"));
        json_object_add(p, "request", json_object_new_string(b64req));
        json_object_add(p, "maxResponseSize", json_object_new_int(256));
        return p;
}

/* ---- baseline (b): emu_device_request() in process --------------------------------------- */

static Stats bench_emu(const Params *P, uint64_t *ns) {
        _cleanup_(emu_platform_freep) EmuPlatform *p = NULL;
        uint8_t req[64], resp[EMU_RESPONSE_MAX];
        size_t req_len = build_get_version(0, req, sizeof(req)), resp_len, n = 0;
        uint64_t deadline = now_usec() + P->phase_usec;
        EmuDevice *d;

        ASSERT_OK(emu_platform_new_from_config("0000:01:00.0", &p));
        ASSERT_NOT_NULL(d = emu_platform_find_device(p, "0000:01:00.0"));
        for (unsigned i = 0; i < P->baseline_iters; i++) {
                uint64_t t0 = now_nsec();
                ASSERT_OK(emu_device_request(d, EMU_SCOPE_INFO, req, req_len, resp, sizeof(resp), &resp_len));
                ns[n++] = now_nsec() - t0;
                if ((i & 1023) == 0 && now_usec() > deadline)
                        break;
        }
        ASSERT_TRUE(resp_len >= 2 && resp[1] == TDISP_MSG_VERSION);
        return stats_of(ns, n);
}

/* ---- baseline (a): raw AF_UNIX round trip of the same bytes ------------------------------ */

typedef struct Echo {
        int fd;
        const char *reply;
        size_t reply_len; /* including the NUL */
} Echo;

/* Reads NUL-terminated messages, answers each with the fixed reply; ends at EOF. */
static void *echo_thread(void *arg) {
        Echo *e = arg;
        char buf[8192];

        for (;;) {
                ssize_t n = read(e->fd, buf, sizeof(buf));
                if (n <= 0)
                        break;
                for (ssize_t i = 0; i < n; i++)
                        if (buf[i] == 0 && write(e->fd, e->reply, e->reply_len) != (ssize_t) e->reply_len)
                                return NULL;
        }
        return NULL;
}

static Stats bench_raw(const Params *P, uint64_t *ns, const char *call, const char *reply) {
        int sv[2];
        pthread_t th;
        Echo e;
        size_t call_len = strlen(call) + 1, n = 0;
        uint64_t deadline = now_usec() + P->phase_usec;
        char buf[8192];

        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        e = (Echo) { .fd = sv[1], .reply = reply, .reply_len = strlen(reply) + 1 };
        ASSERT_TRUE(pthread_create(&th, NULL, echo_thread, &e) == 0);
        for (unsigned i = 0; i < P->baseline_iters; i++) {
                uint64_t t0 = now_nsec();
                bool got = false;

                ASSERT_TRUE(write(sv[0], call, call_len) == (ssize_t) call_len);
                while (!got) {
                        ssize_t k = read(sv[0], buf, sizeof(buf));
                        ASSERT_TRUE(k > 0);
                        got = buf[k - 1] == 0; /* one message in flight: it ends the read */
                }
                ns[n++] = now_nsec() - t0;
                if ((i & 1023) == 0 && now_usec() > deadline)
                        break;
        }
        shutdown(sv[0], SHUT_WR);
        pthread_join(th, NULL);
        close(sv[0]);
        close(sv[1]);
        return stats_of(ns, n);
}

/* ---- baseline (c): append + fdatasync on the audit's filesystem ---------------------------- */

static Stats bench_fdatasync(const Params *P, uint64_t *ns, const char *dir) {
        char line[400];
        const char *path = strf("%s/bench-fdatasync", dir);
        unsigned iters = P->latency_iters < 2000 ? P->latency_iters : 2000;
        uint64_t deadline = now_usec() + P->phase_usec;
        size_t n = 0;
        int fd;

        /* About the size of one audit record. */
        memset(line, 'x', sizeof(line) - 1);
        line[sizeof(line) - 1] = '\n';
        ASSERT_OK(fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
        for (unsigned i = 0; i < iters; i++) {
                uint64_t t0 = now_nsec();
                ASSERT_TRUE(write(fd, line, sizeof(line)) == (ssize_t) sizeof(line));
                ASSERT_OK(fdatasync(fd));
                ns[n++] = now_nsec() - t0;
                if ((i & 63) == 0 && now_usec() > deadline)
                        break;
        }
        close(fd);
        unlink(path);
        return stats_of(ns, n);
}

/* ---- tsmd --------------------------------------------------------------------------------- */

typedef struct Client {
        VarlinkClient *c;
        int64_t ctx;
        char *b64req;
        bool in_flight;
        unsigned *completed;
        unsigned *failed;
} Client;

static void client_setup(Tsmd *t, Client *cl, unsigned i) {
        char addr[EMU_PCI_ADDRESS_STRLEN + 1];
        uint8_t msg[64];
        size_t len = build_get_version(i, msg, sizeof(msg));
        json_object *r;
        int fd;

        device_address(i, addr);
        cl->c = tsmd_connect_guest(t);
        r = CALL_OK(cl->c, G "OpenContext", NULL);
        cl->ctx = JINT(r, "context");
        fd = varlink_client_take_fd(cl->c, (size_t) JINT(r, "fileDescriptor"));
        if (fd >= 0)
                close(fd);
        CALL_OK(cl->c, G "AttachDevice",
                strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1,\"pciAddress\":\"%s\"}", cl->ctx, addr));
        cl->b64req = b64(msg, len);
}

static void client_done(Client *cl) {
        varlink_client_free(cl->c);
        free(cl->b64req);
        *cl = (Client) {};
}

/* One blocking GuestRequest; checks the answer is a TDISP VERSION. */
static void guest_request_sync(Client *cl) {
        json_object *reply;
        const char *error = NULL;
        const char *resp;

        ASSERT_OK(varlink_client_call(cl->c, G "GuestRequest", guest_request_params(cl->ctx, cl->b64req),
                                      &reply, &error));
        if (error)
                TEST_FAIL("GuestRequest: %s %s", error, json_object_to_json_string(reply));
        resp = json_get_string(reply, "response");
        ASSERT_NOT_NULL(resp);
}

static Stats bench_tsmd_latency(const Params *P, Client *cl, uint64_t *ns) {
        uint64_t deadline = now_usec() + P->phase_usec;
        size_t n = 0;

        for (unsigned i = 0; i < 100; i++) /* warm up */
                guest_request_sync(cl);
        for (unsigned i = 0; i < P->latency_iters; i++) {
                uint64_t t0 = now_nsec();
                guest_request_sync(cl);
                ns[n++] = now_nsec() - t0;
                if ((i & 255) == 0 && now_usec() > deadline)
                        break;
        }
        return stats_of(ns, n);
}

static int on_reply(VarlinkClient *c, json_object *parameters, const char *error, bool continues, void *userdata) {
        Client *cl = userdata;

        (void) c;
        (void) continues;
        cl->in_flight = false;
        if (error || !json_object_object_get(parameters, "response")) {
                (*cl->failed)++;
                fprintf(stderr, "GuestRequest failed: %s %s\n", error ?: "(no response)",
                        json_object_to_json_string(parameters));
        } else
                (*cl->completed)++;
        return 0;
}

typedef struct Throughput {
        unsigned clients;
        unsigned completed;
        double seconds;
        double rps;
        double cpu_us_per_req; /* tsmd's own CPU time per request */
} Throughput;

/* Closed loop: every client keeps exactly one GuestRequest in flight until total requests
 * were sent or the phase's time is up; all from this thread. */
static Throughput bench_tsmd_throughput(const Params *P, Tsmd *t, Client *cls, unsigned n_clients) {
        struct pollfd pfd[MAX_CLIENTS];
        unsigned completed = 0, failed = 0, sent = 0;
        uint64_t t0, deadline, wait_deadline;
        unsigned long long cpu0;
        long hz = sysconf(_SC_CLK_TCK);
        Throughput tp = { .clients = n_clients };

        for (unsigned i = 0; i < n_clients; i++) {
                cls[i].completed = &completed;
                cls[i].failed = &failed;
                guest_request_sync(&cls[i]); /* warm up every connection */
        }

        cpu0 = tsmd_cpu_ticks(t);
        t0 = now_nsec();
        deadline = now_usec() + P->phase_usec;
        for (;;) {
                bool stop = sent >= P->tput_requests || now_usec() > deadline;
                unsigned busy = 0;

                for (unsigned i = 0; i < n_clients; i++) {
                        if (!cls[i].in_flight && !stop) {
                                ASSERT_OK(varlink_client_call_async(cls[i].c, G "GuestRequest",
                                                                    guest_request_params(cls[i].ctx, cls[i].b64req),
                                                                    0, on_reply, &cls[i]));
                                cls[i].in_flight = true;
                                sent++;
                                stop = sent >= P->tput_requests;
                        }
                        /* Flush what was queued (and take whatever already arrived). */
                        ASSERT_OK(varlink_client_process(cls[i].c));
                        busy += cls[i].in_flight;
                }
                if (stop && busy == 0)
                        break;
                if (now_usec() > deadline + TSMD_WAIT_USEC)
                        TEST_FAIL("%u GuestRequest replies did not arrive in time", busy);
                for (unsigned i = 0; i < n_clients; i++)
                        pfd[i] = (struct pollfd) { .fd = varlink_client_get_fd(cls[i].c),
                                                   .events = varlink_client_get_events(cls[i].c) };
                ASSERT_OK(poll(pfd, n_clients, 1000));
                for (unsigned i = 0; i < n_clients; i++)
                        if (pfd[i].revents)
                                ASSERT_OK(varlink_client_process(cls[i].c));
                if (failed > 0)
                        TEST_FAIL("%u GuestRequest calls failed", failed);
        }
        tp.seconds = (double) (now_nsec() - t0) / 1e9;
        tp.completed = completed;
        tp.rps = completed / tp.seconds;
        tp.cpu_us_per_req = completed ? (double) (tsmd_cpu_ticks(t) - cpu0) * 1e6 / (double) hz / completed : 0;

        /* Nothing may be left pending. */
        wait_deadline = now_usec() + TSMD_WAIT_USEC;
        for (unsigned i = 0; i < n_clients; i++)
                while (varlink_client_get_n_pending(cls[i].c) > 0) {
                        if (now_usec() > wait_deadline)
                                TEST_FAIL("replies still pending");
                        tsmd_pump(cls[i].c, 10 * USEC_PER_MSEC);
                }
        return tp;
}

/* The exact bytes of one GuestRequest call and of tsmd's reply to it, for the raw baseline. */
static void capture_wire_bytes(Client *cl, char **ret_call, char **ret_reply) {
        json_object *call = json_object_new_object(), *reply;
        const char *error = NULL;
        json_object *wrap = json_object_new_object();

        json_object_add(call, "method", json_object_new_string(G "GuestRequest"));
        json_object_add(call, "parameters", guest_request_params(cl->ctx, cl->b64req));
        *ret_call = strdup(json_object_to_json_string_ext(call, JSON_C_TO_STRING_PLAIN));
        json_object_put(call);

        ASSERT_OK(varlink_client_call(cl->c, G "GuestRequest", guest_request_params(cl->ctx, cl->b64req),
                                      &reply, &error));
        ASSERT_NULL(error);
        json_object_add(wrap, "parameters", json_object_get(reply));
        *ret_reply = strdup(json_object_to_json_string_ext(wrap, JSON_C_TO_STRING_PLAIN));
        json_object_put(wrap);
        ASSERT_TRUE(*ret_call && *ret_reply);
}

static char *config_text(const char *sync_mode) {
        static char buf[8192];
        size_t o;

        o = (size_t) snprintf(buf, sizeof(buf), "[Platform]\nMode=emulated\nIommuDevice=/dev/zero\nEmulatedDevices=");
        for (unsigned i = 0; i < MAX_CLIENTS; i++) {
                char addr[EMU_PCI_ADDRESS_STRLEN + 1];
                device_address(i, addr);
                o += (size_t) snprintf(buf + o, sizeof(buf) - o, "%s%s", i ? "," : "", addr);
        }
        snprintf(buf + o, sizeof(buf) - o,
                 "\n[Varlink]\nMaxConnectionsPerUid=1024\n"
                 "[Guest]\nMaxContextsPerClient=4096\nMaxVDevicesPerClient=4096\n"
                 "[Audit]\nSyncMode=%s\n", sync_mode);
        return buf;
}

int main(int argc, char *argv[]) {
        const Params *P = &params_full;
        const char *sync_mode = "group";
        static const unsigned levels[] = { 1, 8, 64 };
        Throughput tp[ELEMENTSOF(levels)];
        Client cls[MAX_CLIENTS] = {};
        Stats raw, emu, lat, sync;
        char *call = NULL, *reply = NULL, policy[512];
        uint64_t *ns;
        size_t ns_n;
        Tsmd t;

        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--quick"))
                        P = &params_quick;
                else if (strneq(argv[i], "--audit-sync=", 13) &&
                         (streq(argv[i] + 13, "group") || streq(argv[i] + 13, "per-record")))
                        sync_mode = argv[i] + 13;
                else {
                        fprintf(stderr, "usage: %s [--quick] [--audit-sync=group|per-record]\n", argv[0]);
                        return 2;
                }
        }
        ns_n = P->baseline_iters > P->latency_iters ? P->baseline_iters : P->latency_iters;
        ASSERT_NOT_NULL(ns = calloc(ns_n, sizeof(*ns)));

        /* One policy rule for this uid with room for 64 contexts and vDevices. */
        snprintf(policy, sizeof(policy),
                 "[Defaults]\nMaxContexts=256\nMaxVDevices=256\n"
                 "[Client:bench]\nUsers=%u\nDevices=*\nScopes=info\nMaxContexts=256\nMaxVDevices=256\n",
                 (unsigned) getuid());
        tsmd_start(&t, &(TsmdOptions) {
                .config = config_text(sync_mode),
                .files = (const TsmdFile[]) { { "policy.conf", policy } },
                .n_files = 1,
                .log_level = "warning", /* debug logging per request would be what we measure */
        });
        for (unsigned i = 0; i < MAX_CLIENTS; i++)
                client_setup(&t, &cls[i], i);

        /* Baselines, on the bytes tsmd actually exchanges. */
        capture_wire_bytes(&cls[0], &call, &reply);
        emu = bench_emu(P, ns);
        raw = bench_raw(P, ns, call, reply);
        sync = bench_fdatasync(P, ns, t.dir);

        lat = bench_tsmd_latency(P, &cls[0], ns);
        for (size_t i = 0; i < ELEMENTSOF(levels); i++)
                tp[i] = bench_tsmd_throughput(P, &t, cls, levels[i]);

        if (!tsmd_is_running(&t))
                TEST_FAIL("tsmd exited during the benchmark");
        for (unsigned i = 0; i < MAX_CLIENTS; i++)
                client_done(&cls[i]);
        tsmd_teardown(&t);

        printf("# bench-guest-request%s: GuestRequest scope=info, TDISP GET_VERSION (16 bytes),\n"
               "# emulated platform, audit SyncMode=%s (durable, fdatasync before reply)\n"
               "# wire: call %zu bytes, reply %zu bytes\n\n",
               P == &params_quick ? " --quick (numbers not meaningful)" : "", sync_mode, strlen(call) + 1,
               strlen(reply) + 1);
        printf("%-34s %9s %10s %10s %10s\n", "latency (one at a time)", "n", "p50 us", "p99 us", "mean us");
        printf("%-34s %9zu %10.3f %10.3f %10.3f\n", "emu_device_request() in process", emu.n, emu.p50_us, emu.p99_us, emu.mean_us);
        printf("%-34s %9zu %10.3f %10.3f %10.3f\n", "raw AF_UNIX echo, same bytes", raw.n, raw.p50_us, raw.p99_us, raw.mean_us);
        printf("%-34s %9zu %10.3f %10.3f %10.3f\n", "append 400 B + fdatasync (audit fs)", sync.n, sync.p50_us, sync.p99_us, sync.mean_us);
        printf("%-34s %9zu %10.3f %10.3f %10.3f\n", "tsmd GuestRequest, 1 client", lat.n, lat.p50_us, lat.p99_us, lat.mean_us);
        printf("\n%-34s %9s %10s %12s %14s\n", "throughput (1 in flight/client)", "requests", "seconds", "req/s", "tsmd CPU us/req");
        for (size_t i = 0; i < ELEMENTSOF(levels); i++)
                printf("tsmd GuestRequest, %2u client(s)    %9u %10.3f %12.0f %14.1f\n", tp[i].clients, tp[i].completed,
                       tp[i].seconds, tp[i].rps, tp[i].cpu_us_per_req);
        printf("\nratios\n");
        printf("  tsmd p50 / raw socket p50          %10.1f x\n", lat.p50_us / raw.p50_us);
        printf("  tsmd p99 / raw socket p99          %10.1f x\n", lat.p99_us / raw.p99_us);
        printf("  tsmd p50 / emu_device_request p50  %10.1f x\n", lat.p50_us / emu.p50_us);
        printf("  tsmd p50 - raw p50 (tsmd's share)  %10.3f us\n", lat.p50_us - raw.p50_us);
        printf("  tsmd p50 / (raw p50 + fdatasync p50) %8.2f x\n", lat.p50_us / (raw.p50_us + sync.p50_us));
        printf("  raw socket req/s (1/p50) / tsmd 1-client req/s  %6.1f x\n", (1e6 / raw.p50_us) / tp[0].rps);
        for (size_t i = 1; i < ELEMENTSOF(levels); i++)
                printf("  tsmd %2u clients / 1 client req/s   %10.2f x\n", tp[i].clients, tp[i].rps / tp[0].rps);

        free(call);
        free(reply);
        free(ns);
        return EXIT_SUCCESS;
}
