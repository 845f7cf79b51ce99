/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * GuestRequest benchmark: the real tsmd on its emulated platform, durable audit (group commit,
 * the default), for several payloads and numbers of concurrent clients, each measured against
 * two baselines in the same run:
 *
 *   emu   the same TDISP request straight into emu_device_request(), in process: the backend
 *         without any IPC;
 *   raw   AF_UNIX stream round trips of the same bytes (the GuestRequest call as the client
 *         library writes it, tsmd's reply as tsmd wrote it: both taken off the wire) to an echo
 *         server, one thread on epoll like tsmd's one event loop, with the same number of
 *         clients and the same closed-loop driver;
 *   sync  (for orientation) append one audit-sized line and fdatasync() it, in a file next to
 *         tsmd's audit directory: what a durable, one-at-a-time request appending to a log
 *         cannot go under; and the same line written over a file written and synced before,
 *         the cheapest durable record measured on that disk; measured again for every payload,
 *         because other load on the disk moves it a lot.
 *
 * Payloads are TDISP messages of the emulated device (daemon/emu/emu-device.h):
 *   version      GET_TDISP_VERSION in scope info: 16-byte request, 18-byte response;
 *   write N      debug-write MEM_WRITE of device memory: an N-byte request, 36-byte response;
 *   read N       debug-read MEM_READ of the memory just written: 36-byte request, N-byte
 *                response whose data is checked;
 * for N = 64 B, 4 KiB and 64 KiB (N counts the whole TDISP message, so 64 KiB is the largest
 * the debug scopes take: TSM_PRIV_PAYLOAD_MAX).
 *
 * Clients: 1, 8, 64, 256 and 512 at once, each with its own connection, iommufd context and
 * vDevice on its own emulated device, each keeping exactly one request in flight (closed loop),
 * all driven from one thread through the asynchronous client. A level needs as many emulated
 * devices (one device belongs to one guest); levels the platform cannot hold are reported as
 * skipped. Every phase is bounded by a request count and by wall time. Per phase: latency
 * p50/p99 of every round trip, requests/s, tsmd's CPU time per request (tsmd and its
 * children, utime+stime) and this process's. Responses are checked: every client's first
 * reply in a phase (its warm-up, untimed) decoded and compared in full, a read's data byte for
 * byte; the timed replies only by the length of their base64 (a TDISP ERROR has another), not
 * decoded, so that the client's CPU holds no decoding. Prints tables and ratios; never asserts
 * on times. Exits 0 unless something failed functionally (a call errored, a response was
 * wrong, tsmd died).
 *
 *   bench-guest-request [--quick] [--audit-sync=group|per-record|both] [--journal]
 *                       [--workload=NAME] [--clients=N] [--depth=N] [--seconds=S] [--state-dir=DIR]
 *                       [--kill-worker]
 *
 * --quick: the same code with small counts (the bench-smoke test), numbers meaningless.
 * --audit-sync=per-record: one fdatasync per audit record instead of group commit.
 * --audit-sync=both: two tsmd side by side, group commit and per-record, each with devices and
 * clients of its own; every phase runs on the one, then on the other, and the ratios of the
 * two are printed: the comparison without a machine's drift between two runs.
 * --journal: Journal=yes, tsmd's default: audit records mirrored to the journal (tsmd starts
 * the mirror only where journald's socket is; the header says whether it ran). Without it,
 * Journal=no, as in the other tests: results compare across machines with and without a
 * journald.
 * --depth=N: every client keeps N requests in flight (pipelined on its connection, as a VMM
 * with several guests' requests outstanding does), the raw baseline as many; default 1.
 * --state-dir=DIR: tsmd's directory, and so its audit log, in DIR instead of /tmp. With DIR on
 * tmpfs, where fdatasync() costs nothing, what is left is tsmd's own latency: not a durable
 * configuration, a way to take the disk out of the measurement.
 * --kill-worker: SIGKILLs tsmd's first worker once, before any client connects, and measures
 * its successor: the monitor as it runs after a worker's crash or restart (its channel to the
 * first worker closed on the closer's thread, fd-closer.h). The header says how many threads
 * the monitor and the worker run.
 * --workload=, --clients=, --seconds=: one workload (version, write-64, read-4096, ...), one
 * number of clients, phases of S seconds without a request bound: for profiling one case
 * (perf record -a while it runs). A read workload runs after its write, which fills the memory
 * it reads back.
 *
 * Runs in: benchmarks (and, with --quick, as a bench-smoke test).
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"
#include "emu-config.h"
#include "emu-device.h"
#include "emu-platform.h"
#include "ini.h"
#include "json-escape.h"
#include "json-util.h"
#include "tdisp.h"
#include "tsm-priv.h"
#include "tsmd-fixture.h"

/* libharness's test_main() refers to these; this program has no TEST()s. */
TestCase test_cases[TEST_MAX];
size_t test_n_cases;

#define G "io.tsmd.Guest."

/* Where sd_journal_sendv() sends; tsmd mirrors audit records only if it is there (audit-log.c). */
#define JOURNALD_SOCKET "/run/systemd/journal/socket"

static unsigned levels[] = { 1, 8, 64, 256, 512 };
#define MAX_CLIENTS 512u
/* The replies in flight when a phase ends: 512 clients' last ones wait behind the audit log's
 * fdatasync()s, which take seconds on a disk busy with other work (CI's parallel tests, ASan). */
#define REPLIES_AFTER_PHASE_MAX_USEC (6 * TSMD_WAIT_USEC)

/* One device per client, and the device list is one tsmd.conf line: "EmulatedDevices=" and
 * n addresses separated by commas. */
#define DEVICES_PER_LINE ((INI_LINE_MAX - (sizeof("EmulatedDevices=") - 1) + 1) / (EMU_PCI_ADDRESS_STRLEN + 1))
#define MAX_DEVICES MIN(MIN(MAX_CLIENTS, EMU_DEVICES_MAX), DEVICES_PER_LINE)

typedef struct Params {
        unsigned baseline_iters; /* in-process calls */
        unsigned max_requests;   /* per phase */
        uint64_t phase_usec;     /* wall-time bound of every phase */
} Params;

static const Params params_full = {
        .baseline_iters = 100000,
        .max_requests = 50000,
        .phase_usec = 3 * USEC_PER_SEC,
};
static Params params_custom;

static const Params params_quick = {
        .baseline_iters = 1000,
        .max_requests = 600,
        .phase_usec = USEC_PER_SEC / 5,
};

/* ---- workloads ------------------------------------------------------------------------------ */

typedef enum Kind {
        KIND_VERSION,
        KIND_WRITE,
        KIND_READ,
} Kind;

typedef struct Workload {
        Kind kind;
        size_t size; /* of the TDISP message carrying the payload: request (write), response (read) */
} Workload;

/* Each read follows the write of the same size, so it reads back what was written. */
static const Workload workloads[] = {
        { KIND_VERSION, 16 },
        { KIND_WRITE, 64 },
        { KIND_READ, 64 },
        { KIND_WRITE, 4096 },
        { KIND_READ, 4096 },
        { KIND_WRITE, 65536 },
        { KIND_READ, 65536 },
};

_Static_assert(EMU_DEBUG_MSG_MAX <= TSM_PRIV_PAYLOAD_MAX, "the largest payload crosses the channel");

static const char *kind_scope(Kind k) {
        return k == KIND_VERSION ? "info" : k == KIND_WRITE ? "debug-write" : "debug-read";
}

static EmuScope kind_emu_scope(Kind k) {
        return k == KIND_VERSION ? EMU_SCOPE_INFO : k == KIND_WRITE ? EMU_SCOPE_DEBUG_WRITE : EMU_SCOPE_DEBUG_READ;
}

static size_t data_len(const Workload *w) {
        return w->kind == KIND_VERSION ? 0 : w->size - sizeof(EmuDebugMessage);
}

static size_t request_len(const Workload *w) {
        return w->kind == KIND_READ ? sizeof(EmuDebugMessage) : w->size;
}

static size_t response_len(const Workload *w) {
        return w->kind == KIND_VERSION ? sizeof(TdispVersionResponse) + 1 :
               w->kind == KIND_WRITE   ? sizeof(EmuDebugMessage) :
                                         w->size;
}

/* "version", "write-64", "read-4096", ...: for --workload=. */
static bool workload_matches(const Workload *w, const char *name) {
        char buf[32];

        if (w->kind == KIND_VERSION)
                return streq(name, "version");
        snprintf(buf, sizeof(buf), "%s-%zu", w->kind == KIND_WRITE ? "write" : "read", w->size);
        return streq(name, buf);
}

static const char *workload_name(const Workload *w) {
        static char buf[32];

        if (w->kind == KIND_VERSION)
                return "version 16 B";
        snprintf(buf, sizeof(buf), "%s %zu B", w->kind == KIND_WRITE ? "write" : "read", w->size);
        return buf;
}

static const char *workload_what(const Workload *w) {
        return w->kind == KIND_VERSION ? "scope info, GET_TDISP_VERSION" :
               w->kind == KIND_WRITE   ? "scope debug-write, MEM_WRITE of device memory" :
                                         "scope debug-read, MEM_READ of the bytes just written";
}

/* What device i's memory holds after a write: differs per device and per byte. */
static void pattern(unsigned device, uint8_t *buf, size_t n) {
        for (size_t i = 0; i < n; i++)
                buf[i] = (uint8_t) (i * 131 + device * 29 + (i >> 9));
}

static void device_address(unsigned i, char buf[static EMU_PCI_ADDRESS_STRLEN + 1]) {
        /* 32 devices per bus from bus 1: 0000:01:00.0, 0000:01:01.0, ... */
        snprintf(buf, EMU_PCI_ADDRESS_STRLEN + 1, "0000:%02x:%02x.0", 1 + i / 32, i % 32);
}

static uint32_t device_function_id(unsigned i) {
        uint32_t fid;

        ASSERT_OK(tdisp_function_id_from_pci(0, (uint8_t) (1 + i / 32), (uint8_t) ((i % 32) << 3), &fid));
        return fid;
}

/* The workload's TDISP request for device i (malloc'd). */
static uint8_t *build_request(const Workload *w, unsigned i, size_t *ret_len) {
        size_t len = request_len(w), n;
        uint8_t *msg = malloc(len), *data = NULL;

        ASSERT_NOT_NULL(msg);
        switch (w->kind) {
        case KIND_VERSION:
                ASSERT_OK(tdisp_build_request(TDISP_MSG_GET_VERSION, device_function_id(i), NULL, 0, msg, len, &n));
                break;
        case KIND_WRITE:
                ASSERT_NOT_NULL(data = malloc(data_len(w)));
                pattern(i, data, data_len(w));
                ASSERT_OK(emu_debug_build_mem_request(device_function_id(i), EMU_VENDOR_ID_DEFAULT,
                                                      EMU_DEBUG_OP_MEM_WRITE, 0, (uint32_t) data_len(w), data,
                                                      msg, len, &n));
                free(data);
                break;
        case KIND_READ:
                ASSERT_OK(emu_debug_build_mem_request(device_function_id(i), EMU_VENDOR_ID_DEFAULT,
                                                      EMU_DEBUG_OP_MEM_READ, 0, (uint32_t) data_len(w), NULL,
                                                      msg, len, &n));
                break;
        }
        ASSERT_EQ(n, len);
        *ret_len = len;
        return msg;
}

/* Checks a response of device i to the workload's request: the right message, and for a read
 * the bytes the preceding write stored. */
static void check_response(const Workload *w, unsigned i, const uint8_t *resp, size_t len) {
        _cleanup_free_ uint8_t *expected = NULL;

        if (len != response_len(w))
                TEST_FAIL("%s: device %u answered %zu bytes (message type 0x%02x), expected %zu", workload_name(w),
                          i, len, len > 1 ? resp[1] : 0, response_len(w));
        if (resp[1] != (w->kind == KIND_VERSION ? TDISP_MSG_VERSION : TDISP_MSG_VDM_RSP))
                TEST_FAIL("%s: device %u answered message type 0x%02x", workload_name(w), i, resp[1]);
        if (w->kind != KIND_READ)
                return;
        ASSERT_NOT_NULL(expected = malloc(data_len(w)));
        pattern(i, expected, data_len(w));
        if (memcmp(resp + sizeof(EmuDebugMessage), expected, data_len(w)) != 0)
                TEST_FAIL("%s: device %u returned other bytes than were written", workload_name(w), i);
}

/* ---- baseline: emu_device_request() in process --------------------------------------------- */

typedef struct Emu {
        Stats lat;
        double rps; /* 1 / mean */
} Emu;

static Emu bench_emu(const Params *P, const Workload *w, uint64_t *ns) {
        _cleanup_(emu_platform_freep) EmuPlatform *p = NULL;
        _cleanup_free_ uint8_t *resp = malloc(EMU_RESPONSE_MAX), *req = NULL, *prime = NULL;
        char addr[EMU_PCI_ADDRESS_STRLEN + 1];
        uint64_t deadline = now_usec() + P->phase_usec;
        size_t req_len, resp_len = 0, n = 0;
        Emu e;
        EmuDevice *d;

        ASSERT_NOT_NULL(resp);
        device_address(0, addr);
        ASSERT_OK(emu_platform_new_from_config(addr, &p));
        ASSERT_NOT_NULL(d = emu_platform_find_device(p, addr));
        if (w->kind == KIND_READ) {
                /* What the write of the same size leaves in the device's memory. */
                Workload wr = { KIND_WRITE, w->size };
                size_t len;

                prime = build_request(&wr, 0, &len);
                ASSERT_OK(emu_device_request(d, EMU_SCOPE_DEBUG_WRITE, prime, len, resp, EMU_RESPONSE_MAX, &resp_len));
                check_response(&wr, 0, resp, resp_len);
        }

        req = build_request(w, 0, &req_len);
        for (unsigned i = 0; i < P->baseline_iters; i++) {
                uint64_t t0 = now_nsec();
                ASSERT_OK(emu_device_request(d, kind_emu_scope(w->kind), req, req_len, resp, EMU_RESPONSE_MAX,
                                             &resp_len));
                ns[n++] = now_nsec() - t0;
                if ((i & 255) == 0 && now_usec() > deadline)
                        break;
        }
        check_response(w, 0, resp, resp_len);
        e.lat = stats_of(ns, n);
        e.rps = 1e6 / e.lat.mean_us;
        return e;
}

/* ---- baselines: append + fdatasync, and overwrite + fdatasync, on the audit's filesystem ----- */

/* Appending, as the audit log does: each fdatasync also writes the grown size before the cache
 * flush. Overwriting lines of a file written and synced beforehand needs only the data and the
 * flush: the cheapest durable record measured, whatever the file layout. The first write of
 * each (the new file's own metadata) is not timed. */
static Stats bench_fdatasync(const Params *P, uint64_t *ns, const char *dir, bool overwrite) {
        char line[400];
        const char *path = strf("%s/bench-fdatasync", dir);
        unsigned max = MIN(P->max_requests, 1000u) + 1;
        uint64_t deadline;
        size_t n = 0;
        int fd;

        /* About the size of one audit record. */
        memset(line, 'x', sizeof(line) - 1);
        line[sizeof(line) - 1] = '\n';
        ASSERT_OK(fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        if (overwrite) {
                for (unsigned i = 0; i < max; i++)
                        ASSERT_TRUE(write(fd, line, sizeof(line)) == (ssize_t) sizeof(line));
                ASSERT_OK(fsync(fd));
        }
        deadline = now_usec() + P->phase_usec / 2;
        for (unsigned i = 0; i < max; i++) {
                uint64_t t0 = now_nsec();
                ASSERT_TRUE(pwrite(fd, line, sizeof(line), (off_t) i * sizeof(line)) == (ssize_t) sizeof(line));
                ASSERT_OK(fdatasync(fd));
                if (i > 0)
                        ns[n++] = now_nsec() - t0;
                if ((i & 63) == 0 && now_usec() > deadline)
                        break;
        }
        close(fd);
        unlink(path);
        return stats_of(ns, n);
}

/* ---- tsmd ----------------------------------------------------------------------------------- */

typedef struct Client {
        unsigned index; /* which device */
        VarlinkClient *c;
        int64_t ctx;
        char *b64req;
        size_t b64resp_len; /* what a correct answer's base64 is long */
        size_t max_response;
        const char *scope;
        InFlight f;
        struct Phase *phase;
} Client;

typedef struct Phase {
        size_t completed, failed;
        uint64_t *ns;
} Phase;

static void client_setup(Tsmd *t, Client *cl, unsigned i) {
        char addr[EMU_PCI_ADDRESS_STRLEN + 1];
        json_object *r;
        int fd;

        device_address(i, addr);
        cl->index = i;
        cl->c = tsmd_connect_guest(t);
        r = CALL_OK(cl->c, G "OpenContext", NULL);
        cl->ctx = JINT(r, "context");
        fd = varlink_client_take_fd(cl->c, (size_t) JINT(r, "fileDescriptor"));
        if (fd >= 0)
                close(fd);
        CALL_OK(cl->c, G "AttachDevice",
                strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1,\"pciAddress\":\"%s\"}", cl->ctx, addr));
        /* Bound, as guest requests need. */
        CALL_OK(cl->c, G "Bind", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1}", cl->ctx));
}

static void client_set_workload(Client *cl, const Workload *w) {
        _cleanup_free_ uint8_t *req = NULL;
        size_t len;

        req = build_request(w, cl->index, &len);
        free(cl->b64req);
        /* Once per workload: every call of the phase sends this text (libtsm would encode each). */
        cl->b64req = b64(req, len);
        cl->b64resp_len = DIV_ROUND_UP(response_len(w), 3) * 4;
        cl->max_response = response_len(w);
        cl->scope = kind_scope(w->kind);
}

static void client_done(Client *cl) {
        varlink_client_free(cl->c);
        free(cl->b64req);
        *cl = (Client) {};
}

static json_object *guest_request_params(const Client *cl) {
        json_object *p = json_object_new_object();

        /* A value that cannot be made fails the run, not leaves the call without it. */
        ASSERT_NOT_NULL(p);
        ASSERT_OK(json_object_add(p, "context", json_object_new_int64(cl->ctx)));
        ASSERT_OK(json_object_add(p, "vdeviceId", json_object_new_int(1)));
        ASSERT_OK(json_object_add(p, "scope", json_object_new_string(cl->scope)));
        ASSERT_OK(json_object_add(p, "request",
                                  json_object_new_string_fast(cl->b64req, strlen(cl->b64req)))); /* as libtsm */
        ASSERT_OK(json_object_add(p, "maxResponseSize", json_object_new_int64((int64_t) cl->max_response)));
        return p;
}

/* One blocking GuestRequest; returns the decoded response (malloc'd). */
static uint8_t *guest_request_sync(Client *cl, size_t *ret_len) {
        json_object *reply;
        const char *error = NULL, *resp;

        ASSERT_OK(varlink_client_call(cl->c, G "GuestRequest", guest_request_params(cl), &reply, &error));
        if (error)
                TEST_FAIL("GuestRequest: %s %s", error, json_object_to_json_string(reply));
        ASSERT_NOT_NULL(resp = json_get_string(reply, "response"));
        return unb64(resp, ret_len);
}

static int on_reply(VarlinkClient *c, json_object *parameters, const char *error, bool continues, void *userdata) {
        Client *cl = userdata;
        const char *resp = error ? NULL : json_get_string(parameters, "response");

        uint64_t t0 = in_flight_pop(&cl->f);

        (void) c;
        (void) continues;
        /* Timed: checked by length only, not decoded (the warm-up checked the bytes). A TDISP
         * ERROR would be another length: the device did not do what was asked. */
        if (!resp || strlen(resp) != cl->b64resp_len) {
                cl->phase->failed++;
                fprintf(stderr, "GuestRequest failed: %s %s\n", error ?: "(unexpected response)",
                        json_object_to_json_string(parameters));
        } else
                cl->phase->ns[cl->phase->completed++] = now_nsec() - t0;
        return 0;
}

typedef struct Run {
        Stats lat;
        size_t completed;
        double seconds;
        double rps;
        double cpu_us_per_req;        /* tsmd's own CPU time (all its processes) per request */
        double client_cpu_us_per_req; /* this process's: the client library's JSON and system calls (no base64) */
        double monitor_loop_us_per_req, worker_loop_us_per_req; /* their main threads' CPU time; < 0: unknown */
} Run;

/* The CPU time of pid's main thread (its event loop), in ns: /proc/PID/schedstat, which is the
 * thread's, not its process's (a kernel without CONFIG_SCHED_INFO has none: -1). */
static double main_thread_cpu_nsec(pid_t pid) {
        _cleanup_free_ char *s = read_file(strf("/proc/%d/schedstat", (int) pid));
        unsigned long long ns;

        return s && sscanf(s, "%llu", &ns) == 1 ? (double) ns : -1;
}

/* Per request, in us, from two readings of main_thread_cpu_nsec(): < 0 if unknown. */
static double loop_us_per_req(double ns0, double ns1, size_t n) {
        return ns0 < 0 || ns1 < 0 || n == 0 ? -1 : (ns1 - ns0) / 1e3 / (double) n;
}

static uint64_t self_cpu_nsec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

/* Closed loop: every client keeps exactly depth GuestRequests in flight until max_requests
 * were sent or the phase's time is up; all from this thread. */
static Run bench_tsmd(const Params *P, const Workload *w, Tsmd *t, Client *cls, unsigned n_clients, unsigned depth,
                      uint64_t *ns) {
        _cleanup_free_ struct pollfd *pfd = new0(struct pollfd, n_clients);
        Phase ph = { .ns = ns };
        size_t sent = 0;
        uint64_t t0, deadline, wait_deadline, self0;
        double monitor0, worker0;
        pid_t worker = tsmd_worker_pid(t);
        unsigned long long cpu0;
        long hz = sysconf(_SC_CLK_TCK);
        Run run = {};

        ASSERT_NOT_NULL(pfd);
        for (unsigned i = 0; i < n_clients; i++) {
                _cleanup_free_ uint8_t *resp = NULL;
                size_t len;

                cls[i].phase = &ph;
                /* Warm up every connection; also checks every device's answer once. */
                resp = guest_request_sync(&cls[i], &len);
                check_response(w, cls[i].index, resp, len);
        }

        cpu0 = proc_tree_usage(t->pid).cpu_ticks;
        self0 = self_cpu_nsec();
        monitor0 = main_thread_cpu_nsec(t->pid);
        worker0 = main_thread_cpu_nsec(worker);
        t0 = now_nsec();
        deadline = now_usec() + P->phase_usec;
        for (;;) {
                bool stop = sent >= P->max_requests || now_usec() > deadline;
                unsigned busy = 0;

                for (unsigned i = 0; i < n_clients; i++) {
                        while (cls[i].f.n < depth && !stop) {
                                in_flight_push(&cls[i].f, now_nsec());
                                ASSERT_OK(varlink_client_call_async(cls[i].c, G "GuestRequest",
                                                                    guest_request_params(&cls[i]), 0, on_reply,
                                                                    &cls[i]));
                                stop = ++sent >= P->max_requests;
                        }
                        /* The call went out at once (or waits for POLLOUT below); like the raw
                         * driver, a client is only touched again when poll says so. */
                        busy += cls[i].f.n;
                }
                if (stop && busy == 0)
                        break;
                if (now_usec() > deadline + REPLIES_AFTER_PHASE_MAX_USEC)
                        TEST_FAIL("%u GuestRequest replies did not arrive within %" PRIu64 " s of the phase's end",
                                  busy, REPLIES_AFTER_PHASE_MAX_USEC / USEC_PER_SEC);
                for (unsigned i = 0; i < n_clients; i++)
                        pfd[i] = (struct pollfd) { .fd = varlink_client_get_fd(cls[i].c),
                                                   .events = varlink_client_get_events(cls[i].c) };
                ASSERT_OK(poll(pfd, n_clients, 1000));
                for (unsigned i = 0; i < n_clients; i++)
                        if (pfd[i].revents)
                                ASSERT_OK(varlink_client_process(cls[i].c));
                if (ph.failed > 0)
                        TEST_FAIL("%zu GuestRequest calls failed", ph.failed);
        }
        run.seconds = (double) (now_nsec() - t0) / 1e9;
        run.completed = ph.completed;
        run.rps = (double) ph.completed / run.seconds;
        run.cpu_us_per_req = ph.completed ? (double) (proc_tree_usage(t->pid).cpu_ticks - cpu0) * 1e6 / (double) hz /
                                                    (double) ph.completed :
                                            0;
        run.client_cpu_us_per_req = ph.completed ? (double) (self_cpu_nsec() - self0) / 1e3 / (double) ph.completed : 0;
        run.monitor_loop_us_per_req = loop_us_per_req(monitor0, main_thread_cpu_nsec(t->pid), ph.completed);
        run.worker_loop_us_per_req = loop_us_per_req(worker0, main_thread_cpu_nsec(worker), ph.completed);
        run.lat = stats_of(ns, ph.completed);

        /* Nothing may be left pending. */
        wait_deadline = now_usec() + TSMD_WAIT_USEC;
        for (unsigned i = 0; i < n_clients; i++)
                while (varlink_client_get_n_pending(cls[i].c) > 0) {
                        if (now_usec() > wait_deadline)
                                TEST_FAIL("replies still pending");
                        tsmd_pump(cls[i].c, 10 * USEC_PER_MSEC);
                }
        return run;
}

/* One NUL-terminated message from fd, waited for (bounded); malloc'd, *ret_len with the NUL.
 * Nothing may follow it. */
static char *read_message(int fd, size_t *ret_len) {
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;
        size_t len = 0, size = 0;
        char *buf = NULL;

        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t k;

                if (size - len < 65536) {
                        size = size * 2 + 65536;
                        ASSERT_NOT_NULL(buf = realloc(buf, size));
                }
                if (now_usec() > deadline)
                        TEST_FAIL("no whole message within %" PRIu64 " us (%zu bytes)", TSMD_WAIT_USEC, len);
                ASSERT_OK(poll(&p, 1, 1000));
                if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
                        continue;
                k = read(fd, buf + len, size - len);
                if (k < 0 && errno == EAGAIN)
                        continue;
                if (k <= 0)
                        TEST_FAIL("reading a message: %s", k < 0 ? strerror(errno) : "EOF");
                len += (size_t) k;
                if (memchr(buf + len - k, 0, (size_t) k)) {
                        if (buf[len - 1] != 0 || strlen(buf) + 1 != len)
                                TEST_FAIL("more than one message read");
                        *ret_len = len;
                        return buf;
                }
        }
}

static int ignore_reply(VarlinkClient *c, json_object *parameters, const char *error, bool continues, void *userdata) {
        (void) c, (void) parameters, (void) error, (void) continues, (void) userdata;
        return 0;
}

/* The exact bytes of one GuestRequest call and of tsmd's reply to it, for the raw baseline:
 * the call as the client library writes it (to one end of a socketpair, read from the
 * other), sent on cl's connection as is, and tsmd's reply read off it (the library has no
 * call pending there, so its stream stays in step). Also checks that reply. */
static void capture_wire_bytes(const Workload *w, Client *cl, char **ret_call, size_t *ret_call_len,
                               char **ret_reply, size_t *ret_reply_len) {
        _cleanup_(varlink_client_freep) VarlinkClient *writer = NULL;
        _cleanup_free_ uint8_t *resp = NULL;
        json_object *reply, *params;
        int sv[2], fd = varlink_client_get_fd(cl->c);
        size_t len;

        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        ASSERT_OK(varlink_client_new_from_fd(sv[0], &writer));
        ASSERT_OK(varlink_client_call_async(writer, G "GuestRequest", guest_request_params(cl), 0, ignore_reply, NULL));
        *ret_call = read_message(sv[1], ret_call_len);
        close(sv[1]);

        ASSERT_TRUE(varlink_client_get_n_pending(cl->c) == 0);
        ASSERT_OK(fd);
        ASSERT_OK(socket_write_all(fd, *ret_call, *ret_call_len));
        *ret_reply = read_message(fd, ret_reply_len);
        ASSERT_NOT_NULL(reply = json_tokener_parse(*ret_reply));
        if (json_object_object_get_ex(reply, "error", NULL))
                TEST_FAIL("GuestRequest: %s", *ret_reply);
        ASSERT_TRUE(json_object_object_get_ex(reply, "parameters", &params));
        resp = unb64(json_get_string(params, "response"), &len);
        check_response(w, cl->index, resp, len);
        json_object_put(reply);
}

static char *config_text(const char *sync_mode, bool journal, unsigned n_devices) {
        static char buf[INI_LINE_MAX + 1024];
        size_t o;

        /* The emulated TSM serves the debug scopes only when told to, as no mainline kernel does. */
        o = (size_t) snprintf(buf, sizeof(buf),
                              "[Platform]\nMode=emulated\nIommuDevice=/dev/zero\nEmulatedDebugScopes=yes\nEmulatedDevices=");
        for (unsigned i = 0; i < n_devices; i++) {
                char addr[EMU_PCI_ADDRESS_STRLEN + 1];
                device_address(i, addr);
                o += (size_t) snprintf(buf + o, sizeof(buf) - o, "%s%s", i ? "," : "", addr);
        }
        snprintf(buf + o, sizeof(buf) - o,
                 "\n[Varlink]\nMaxConnections=4096\nMaxConnectionsPerUid=4096\n"
                 "[Guest]\nMaxContextsPerClient=4096\nMaxVDevicesPerClient=4096\n"
                 "[Audit]\nSyncMode=%s\nJournal=%s\n", sync_mode, journal ? "yes" : "no");
        return buf;
}

/* ---- the daemons ---------------------------------------------------------------------------- */

/* --audit-sync=both runs two. */
#define MODES_MAX 2u

/* One tsmd and its clients, one per emulated device. */
typedef struct Daemon {
        const char *sync_mode;
        Tsmd t;
        Client *cls;
} Daemon;

static void daemon_start(Daemon *d, const char *sync_mode, bool journal, unsigned n_devices, const char *policy,
                         bool kill_worker) {
        d->sync_mode = sync_mode;
        ASSERT_NOT_NULL(d->cls = new0(Client, n_devices));
        tsmd_start(&d->t, &(TsmdOptions) {
                .config = config_text(sync_mode, journal, n_devices),
                .files = (const TsmdFile[]) { { "policy.conf", policy } },
                .n_files = 1,
                /* Not debug: its logging per request would be what we measure. Not warning: the
                 * fixture waits for tsmd's "running." (info). */
                .log_level = "info",
        });
        if (kill_worker)
                tsmd_kill_worker(&d->t);
        for (unsigned i = 0; i < n_devices; i++)
                client_setup(&d->t, &d->cls[i], i);
}

static void daemon_stop(Daemon *d, unsigned n_devices) {
        for (unsigned i = 0; i < n_devices; i++)
                client_done(&d->cls[i]);
        d->cls = mfree(d->cls);
        tsmd_teardown(&d->t);
}

/* ---- output --------------------------------------------------------------------------------- */

typedef struct Result {
        const Workload *w;
        size_t call_len, reply_len;
        Emu emu;
        Stats sync, overwrite;
        RawRun raw[ELEMENTSOF(levels)];
        Run tsmd[MODES_MAX][ELEMENTSOF(levels)]; /* per daemon, in the order of Daemon d[] */
} Result;

/* Ratios a / b, in the table's columns. */
static void print_ratios_header(const char *title) {
        printf("%-26s %7s %9s %10s %10s %11s\n", title, "clients", "", "p50", "p99", "req/s");
}

static void print_ratios(unsigned clients, const Stats *a, double a_rps, const Stats *b, double b_rps) {
        printf("%-26s %7u %9s %9.1fx %9.1fx %10.2fx\n", "", clients, "", a->p50_us / b->p50_us, a->p99_us / b->p99_us,
               a_rps / b_rps);
}

static void print_result(const Result *r, unsigned n_levels, const Daemon *d, unsigned n_modes) {
        const Run *tsmd = r->tsmd[0];

        printf("\n== %s (%s): request %zu B, response %zu B; on the wire: call %zu B, reply %zu B\n",
               workload_name(r->w), workload_what(r->w), request_len(r->w), response_len(r->w), r->call_len,
               r->reply_len);
        printf("%-26s %7s %9s %10s %10s %11s %10s %10s\n", "", "clients", "n", "p50 us", "p99 us", "req/s",
               "tsmd CPU", "client CPU");
        printf("%-26s %7s %9zu %10.3f %10.3f %11.0f\n", "emu_device_request()", "-", r->emu.lat.n,
               r->emu.lat.p50_us, r->emu.lat.p99_us, r->emu.rps);
        printf("%-26s %7s %9zu %10.1f %10.1f\n", "append 400 B + fdatasync", "-", r->sync.n, r->sync.p50_us,
               r->sync.p99_us);
        printf("%-26s %7s %9zu %10.1f %10.1f\n", "rewrite 400 B + fdatasync", "-", r->overwrite.n,
               r->overwrite.p50_us, r->overwrite.p99_us);
        for (unsigned i = 0; i < n_levels; i++)
                printf("%-26s %7u %9zu %10.1f %10.1f %11.0f\n", "raw AF_UNIX echo", levels[i], r->raw[i].completed,
                       r->raw[i].lat.p50_us, r->raw[i].lat.p99_us, r->raw[i].rps);
        for (unsigned m = 0; m < n_modes; m++)
                for (unsigned i = 0; i < n_levels && r->tsmd[m][i].monitor_loop_us_per_req >= 0 &&
                                     r->tsmd[m][i].worker_loop_us_per_req >= 0; i++)
                        printf("%-26s %7u %9zu %10.1f %10.1f %11.0f %10.1f %10.1f\n",
                               n_modes == 1 ? "tsmd GuestRequest" : strf("tsmd, SyncMode=%s", d[m].sync_mode),
                               levels[i], r->tsmd[m][i].completed, r->tsmd[m][i].lat.p50_us,
                               r->tsmd[m][i].lat.p99_us, r->tsmd[m][i].rps, r->tsmd[m][i].cpu_us_per_req,
                               r->tsmd[m][i].client_cpu_us_per_req);
        for (unsigned m = 0; m < n_modes; m++)
                for (unsigned i = 0; i < n_levels; i++)
                        printf("  of tsmd's CPU, %u client%s%s: monitor's loop %.1f us/req, worker's loop %.1f us/req\n",
                               levels[i], levels[i] == 1 ? "" : "s",
                               n_modes == 1 ? "" : strf(", SyncMode=%s", d[m].sync_mode),
                               r->tsmd[m][i].monitor_loop_us_per_req, r->tsmd[m][i].worker_loop_us_per_req);
        print_ratios_header(n_modes == 1 ? "ratios tsmd / raw" : strf("ratios %s / raw", d[0].sync_mode));
        for (unsigned i = 0; i < n_levels; i++)
                print_ratios(levels[i], &tsmd[i].lat, tsmd[i].rps, &r->raw[i].lat, r->raw[i].rps);
        if (n_modes > 1) {
                /* The same requests, the same clients, one phase right after the other. */
                print_ratios_header(strf("ratios %s / %s", d[0].sync_mode, d[1].sync_mode));
                for (unsigned i = 0; i < n_levels; i++)
                        print_ratios(levels[i], &tsmd[i].lat, tsmd[i].rps, &r->tsmd[1][i].lat, r->tsmd[1][i].rps);
        }
        if (levels[0] != 1)
                return; /* --clients= without the 1-client level to compare with */
        printf("1 client: tsmd p50 / emu p50 %.0fx, tsmd p50 / (raw p50 + fdatasync p50) %.2fx\n",
               tsmd[0].lat.p50_us / r->emu.lat.p50_us, tsmd[0].lat.p50_us / (r->raw[0].lat.p50_us + r->sync.p50_us));
        if (n_levels < 2)
                return;
        printf("tsmd N clients / 1 client req/s:");
        for (unsigned i = 1; i < n_levels; i++)
                printf(" %u: %.2fx", levels[i], tsmd[i].rps / tsmd[0].rps);
        printf("\n");
}

static void print_targets(const Result *res, size_t n_res, unsigned n_levels, const char *sync_mode) {
        unsigned i64 = 0;

        printf("\n== issue 8 targets (this run, SyncMode=%s)\n", sync_mode);
        for (size_t i = 0; i < n_res; i++)
                if (res[i].w->size == 4096) {
                        double x = res[i].tsmd[0][0].lat.p50_us / res[i].raw[0].lat.p50_us;
                        printf("  p50 <= 1.5x raw p50 at 4 KiB, 1 client, %-14s %8.1fx  %s\n", workload_name(res[i].w), x,
                               x <= 1.5 ? "met" : "NOT met");
                        /* Whether any design that answers after a durable record could: the round
                         * trip plus the cheapest write and flush on this disk. */
                        printf("    (floor: raw p50 + rewrite 400 B + fdatasync p50 = %.1f us = %.1fx raw)\n",
                               res[i].raw[0].lat.p50_us + res[i].overwrite.p50_us,
                               (res[i].raw[0].lat.p50_us + res[i].overwrite.p50_us) / res[i].raw[0].lat.p50_us);
                }
        for (unsigned i = 0; i < n_levels; i++)
                if (levels[i] == 64)
                        i64 = i;
        for (size_t i = 0; i < n_res; i++) {
                double rps = res[i].tsmd[0][i64].rps;
                printf("  >= 50000 audited req/s, 64 clients, %-14s %8.0f   %s\n", workload_name(res[i].w), rps,
                       rps >= 50000 ? "met" : "NOT met");
        }
        printf("  (<= 16 KiB RSS per idle connection: see bench-connections)\n");
}

int main(int argc, char *argv[]) {
        const Params *P = &params_full;
        const char *sync_modes[MODES_MAX] = { "group" }, *only_workload = NULL;
        unsigned only_clients = 0, depth = 1, n_modes = 1;
        bool journal = false, kill_worker = false;
        Result res[ELEMENTSOF(workloads)] = {};
        _cleanup_free_ uint64_t *ns = NULL;
        unsigned n_devices = MAX_DEVICES, n_levels = 0;
        char policy[512];
        Daemon d[MODES_MAX] = {};

        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--quick"))
                        P = &params_quick;
                else if (strneq(argv[i], "--audit-sync=", 13) &&
                         (streq(argv[i] + 13, "group") || streq(argv[i] + 13, "per-record"))) {
                        sync_modes[0] = argv[i] + 13;
                        n_modes = 1;
                } else if (streq(argv[i], "--audit-sync=both")) {
                        sync_modes[0] = "group";
                        sync_modes[1] = "per-record";
                        n_modes = 2;
                } else if (streq(argv[i], "--journal"))
                        journal = true;
                else if (streq(argv[i], "--kill-worker"))
                        kill_worker = true;
                else if (strneq(argv[i], "--state-dir=", 12))
                        /* The fixture makes tsmd's directory (audit log included) there. */
                        ASSERT_OK(setenv("TSMD_TEST_TMPDIR", argv[i] + 12, 1));
                else if (strneq(argv[i], "--workload=", 11))
                        only_workload = argv[i] + 11;
                else if (strneq(argv[i], "--depth=", 8) && atoi(argv[i] + 8) > 0 &&
                         atoi(argv[i] + 8) <= (int) BENCH_DEPTH_MAX)
                        depth = (unsigned) atoi(argv[i] + 8);
                else if (strneq(argv[i], "--clients=", 10) && atoi(argv[i] + 10) > 0)
                        only_clients = (unsigned) atoi(argv[i] + 10);
                else if (strneq(argv[i], "--seconds=", 10) && atoi(argv[i] + 10) > 0) {
                        params_custom = *P;
                        params_custom.max_requests = 4000000; /* only bounds the latency array */
                        params_custom.phase_usec = (uint64_t) atoi(argv[i] + 10) * USEC_PER_SEC;
                        P = &params_custom;
                } else {
                        fprintf(stderr, "usage: %s [--quick] [--audit-sync=group|per-record|both] [--journal] "
                                "[--workload=NAME] [--clients=N] [--depth=N] [--seconds=S] [--state-dir=DIR] [--kill-worker]\n",
                                argv[0]);
                        return 2;
                }
        }
        if (only_workload) {
                bool known = false;
                for (size_t k = 0; k < ELEMENTSOF(workloads); k++)
                        known = known || workload_matches(&workloads[k], only_workload);
                if (!known) {
                        fprintf(stderr, "--workload: version, write-N or read-N with N = 64, 4096, 65536\n");
                        return 2;
                }
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        ASSERT_NOT_NULL(ns = new0(uint64_t, MAX(P->baseline_iters, P->max_requests)));
        while (n_levels < ELEMENTSOF(levels) && levels[n_levels] <= n_devices)
                n_levels++;
        if (only_clients > 0) {
                if (only_clients > n_devices) {
                        fprintf(stderr, "--clients: at most %u here\n", n_devices);
                        return 2;
                }
                levels[0] = only_clients;
                n_levels = 1;
        }
        /* Per daemon two fds per client here (connection, iommufd copy closed at once) and in
         * tsmd; and the raw baseline's socketpairs. */
        raise_nofile((2 * n_modes + 2) * MAX_DEVICES + 256);

        /* One policy rule for this uid: every device, the debug scopes named (they are never
         * granted by default), room for a context and vDevice per device. */
        snprintf(policy, sizeof(policy),
                 "[Defaults]\nMaxContexts=1024\nMaxVDevices=1024\n"
                 "[Client:bench]\nUsers=%u\nDevices=*\nScopes=info debug-read debug-write\n"
                 "MaxContexts=1024\nMaxVDevices=1024\n",
                 (unsigned) getuid());
        /* With --audit-sync=both, two daemons side by side, each with its own directory, devices
         * and clients, driven one after the other phase by phase: the other is idle meanwhile. */
        for (unsigned m = 0; m < n_modes; m++)
                daemon_start(&d[m], sync_modes[m], journal, n_devices, policy, kill_worker);

        printf("# bench-guest-request%s: tsmd on its emulated platform, audit SyncMode=%s (durable: fdatasync\n"
               "# before each reply), %u emulated devices, one client per device, %u request%s in flight per client.\n",
               P == &params_quick ? " --quick (numbers not meaningful)" : "", sync_modes[0], n_devices, depth,
               depth == 1 ? "" : "s");
        if (n_modes > 1)
                printf("# And a second tsmd, SyncMode=%s, with devices and clients of its own: each phase runs on\n"
                       "# the first, then on the second (the other idle meanwhile); ratios %s / %s compare them.\n",
                       sync_modes[1], sync_modes[0], sync_modes[1]);
        /* Off unless asked for (tsmd's default is on): tsmd mirrors only where journald's socket
         * is, so runs on machines with and without a journald compare only with it off. */
        if (!journal)
                printf("# Journal mirror of the audit records: off (Journal=no; tsmd's default is yes: --journal).\n");
        else if (access(JOURNALD_SOCKET, W_OK) >= 0)
                printf("# Journal mirror of the audit records: on (Journal=yes, as tsmd's default).\n");
        else
                printf("# Journal mirror of the audit records: off although Journal=yes: there is no %s,\n"
                       "# and without it tsmd does not start the mirror.\n", JOURNALD_SOCKET);
        printf("# Latency = every round trip of the phase. CPU us/req: tsmd = tsmd and its children (utime+stime),\n"
               "# client = this process: the client library's JSON for each call (built, serialized, sent) and reply\n"
               "# (read, parsed), and poll; no base64 (the request's is made once per workload; timed replies are\n"
               "# checked by their base64's length, not decoded). The raw baseline does none of that JSON.\n"
               "# %ld CPUs online, load average %s at the start.\n",
               sysconf(_SC_NPROCESSORS_ONLN), loadavg());
        for (unsigned m = 0; m < n_modes; m++)
                printf("# tsmd%s: monitor %u thread(s), worker %u thread(s) at the start%s.\n",
                       n_modes > 1 ? (m == 0 ? " (first)" : " (second)") : "", tsmd_threads_of(d[m].t.pid),
                       tsmd_threads_of(tsmd_worker_pid(&d[m].t)),
                       kill_worker ? ", its first worker killed before any client connected" : "");
        for (size_t i = n_levels; only_clients == 0 && i < ELEMENTSOF(levels); i++)
                printf("# %u clients: skipped, the emulated platform holds at most %u devices here (EMU_DEVICES_MAX %u,\n"
                       "# %zu addresses fit the one EmulatedDevices= line of INI_LINE_MAX %u) and each client needs one.\n",
                       levels[i], n_devices, EMU_DEVICES_MAX, (size_t) DEVICES_PER_LINE, INI_LINE_MAX);

        for (size_t k = 0; k < ELEMENTSOF(workloads); k++) {
                const Workload *w = &workloads[k];
                Result *r = &res[k];
                _cleanup_free_ char *call = NULL, *reply = NULL;
                EchoServer *echo;

                if (only_workload && !workload_matches(w, only_workload) &&
                    !(k + 1 < ELEMENTSOF(workloads) && workloads[k + 1].kind == KIND_READ &&
                      workload_matches(&workloads[k + 1], only_workload)))
                        continue;
                r->w = w;
                for (unsigned m = 0; m < n_modes; m++)
                        for (unsigned i = 0; i < n_devices; i++)
                                client_set_workload(&d[m].cls[i], w);
                /* A read finds what the write workload before stored: its phases sent the write
                 * to every device at least once, as warm-up. */
                capture_wire_bytes(w, &d[0].cls[0], &call, &r->call_len, &reply, &r->reply_len);

                r->emu = bench_emu(P, w, ns);
                r->sync = bench_fdatasync(P, ns, d[0].t.dir, false);
                r->overwrite = bench_fdatasync(P, ns, d[0].t.dir, true);
                echo = echo_server_new(levels[n_levels - 1], reply, r->reply_len);
                for (unsigned i = 0; i < n_levels; i++)
                        r->raw[i] = echo_server_run(echo, levels[i], depth, call, r->call_len, r->reply_len,
                                                    P->max_requests, P->phase_usec, ns);
                echo_server_free(echo);
                for (unsigned i = 0; i < n_levels; i++)
                        for (unsigned m = 0; m < n_modes; m++)
                                r->tsmd[m][i] = bench_tsmd(P, w, &d[m].t, d[m].cls, levels[i], depth, ns);
                print_result(r, n_levels, d, n_modes);
                for (unsigned m = 0; m < n_modes; m++)
                        if (!tsmd_is_running(&d[m].t))
                                TEST_FAIL("tsmd (SyncMode=%s) exited during the benchmark", d[m].sync_mode);
        }
        if (!only_workload && only_clients == 0)
                print_targets(res, ELEMENTSOF(workloads), n_levels, sync_modes[0]);
        printf("\n# load average %s at the end\n", loadavg());
        for (unsigned m = 0; m < n_modes; m++)
                printf("# tsmd%s: monitor %u thread(s), worker %u thread(s) at the end.\n",
                       n_modes > 1 ? (m == 0 ? " (first)" : " (second)") : "", tsmd_threads_of(d[m].t.pid),
                       tsmd_threads_of(tsmd_worker_pid(&d[m].t)));

        for (unsigned m = 0; m < n_modes; m++)
                daemon_stop(&d[m], n_devices);
        return EXIT_SUCCESS;
}
