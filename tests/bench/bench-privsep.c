/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What privilege separation costs a guest request: the round trip across the monitor/worker
 * channel, measured here with the real monitor dispatch (a child process running
 * monitor_dispatch_process() on the emulated platform, as tsmd does) and this process in the
 * worker's seat. Printed as ratios against baselines measured in the same run:
 *   raw    a SOCK_SEQPACKET round trip of the same datagram to an echoing process;
 *   direct the same request to the same emulated device in-process (tsm_platform_request()
 *          and one turn of the event loop), i.e. tsmd before the split.
 * Never asserts a time. Usage: bench-privsep [--quick]. Runs in: tests (benchmark).
 */

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include <event2/event.h>

#include "bench-util.h"
#include "emu-platform.h"
#include "log.h"
#include "monitor-contexts.h"
#include "monitor-dispatch.h"
#include "monitor-open-gates.h" /* what is measured is the path behind them */
#include "priv-reader.h"
#include "tdisp.h"
#include "tsm-platform.h"
#include "tsm-priv.h"

#define DEVICE "0000:01:00.0"

static unsigned n_rounds = 20000;
static uint8_t buf[TSM_PRIV_DATAGRAM_MAX];
static TsmPrivReader reader;

static void die(const char *what, int r) {
        fprintf(stderr, "bench-privsep: %s: %s\n", what, strerror(r < 0 ? -r : r));
        exit(EXIT_FAILURE);
}

static TsmPlatform *emulated_platform(struct event_base *base) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_EMULATED,
                .iommu_device = (char *) "/nonexistent/bench-iommu", /* the emulated stand-in */
                .emulated_latency_usec = 0,
        };
        TsmPlatform *p;
        int r;

        r = tsm_platform_new(base, &config, &p);
        if (r < 0)
                die("emulated platform", r);
        return p;
}

/* A TDISP GET_VERSION for DEVICE, as a guest sends it. */
static size_t get_version(TsmPlatform *p, uint8_t *req, size_t size) {
        EmuDevice *d = emu_platform_find_device(tsm_platform_get_emulated(p), DEVICE);
        size_t len;
        int r;

        r = tdisp_build_request(TDISP_MSG_GET_VERSION, emu_device_get_function_id(d), NULL, 0, req, size, &len);
        if (r < 0)
                die("build request", r);
        return len;
}

/* ---- the monitor, in a child ----------------------------------------------------------- */

static void on_channel(evutil_socket_t fd, short what, void *userdata) {
        const char *reason = NULL;
        int r;

        /* 1: messages read and not handled yet (a round's bound); the monitor comes back for
         * them after its next round, this bench at once. */
        do
                r = monitor_dispatch_process(userdata, &reason);
        while (r > 0);
        if (r < 0) {
                if (reason)
                        fprintf(stderr, "bench-privsep: monitor: violation: %s\n", reason);
                _exit(r == -EPIPE ? 0 : 1);
        }
}

static pid_t monitor_start(int channel, int other) {
        pid_t pid = fork();

        if (pid < 0)
                die("fork", -errno);
        if (pid == 0) {
                struct event_base *base;
                MonitorContexts *contexts;
                MonitorDispatch *d;
                TsmPlatform *p;
                struct event *ev;
                int listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                MonitorListenSocket sockets[] = { { listen_fd, TSM_PRIV_SOCKET_GUEST } };

                close(other);
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                base = event_base_new();
                p = emulated_platform(base);
                if (!base || monitor_contexts_new(&contexts) < 0 ||
                    monitor_dispatch_new(base, p, contexts, &open_gates, NULL, &d) < 0 ||
                    monitor_dispatch_start(d, channel, sockets, ELEMENTSOF(sockets)) < 0)
                        _exit(1);
                ev = event_new(base, channel, EV_READ | EV_PERSIST, on_channel, d);
                if (!ev || event_add(ev, NULL) < 0)
                        _exit(1);
                (void) event_base_dispatch(base);
                _exit(0);
        }
        return pid;
}

/* ---- the worker's seat ------------------------------------------------------------------ */

static ssize_t receive_wait(int fd, int *ret_fd) {
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int fds[1];
                size_t n_fds;
                ssize_t n;

                n = priv_reader_receive(&reader, fd, buf, fds, 1, &n_fds);
                if (n != -EAGAIN) {
                        if (n_fds > 0) {
                                if (ret_fd)
                                        *ret_fd = fds[0];
                                else
                                        close(fds[0]);
                        }
                        return n;
                }
                (void) poll(&p, 1, -1);
        }
}

static uint32_t cookie;

static struct tsm_priv_reply call(int channel, void *msg, const void *payload, size_t len) {
        struct tsm_priv_reply reply;
        const char *reason = NULL;
        ssize_t n;
        int fd = -EBADF, r;

        ((struct tsm_priv_hdr *) msg)->cookie = ++cookie;
        r = tsm_priv_send(channel, msg, payload, len, -EBADF);
        if (r < 0)
                die("send", r);
        n = receive_wait(channel, &fd);
        if (n <= 0)
                die("receive", n < 0 ? (int) n : -ECONNRESET);
        safe_close(fd);
        r = tsm_priv_check(buf, (size_t) n, 0, TSM_PRIV_FROM_MONITOR, &reply, sizeof(reply), NULL, &reason);
        if (r < 0 || reply.hdr.cookie != cookie || reply.result < 0)
                die(reason ?: "reply", reply.result ?: r);
        return reply;
}

/* Reads the start (HELLO, the socket); opens a context, attaches DEVICE as vDevice 1, binds. */
static uint32_t worker_setup(int channel) {
        struct tsm_priv_new_context open;
        struct tsm_priv_attach_vdevice attach;
        struct tsm_priv_vdevice bind;
        struct tsm_priv_reply reply;

        for (unsigned i = 0; i < 2; i++)
                if (receive_wait(channel, NULL) <= 0)
                        die("monitor start", -EPROTO);
        tsm_priv_init(&open, TSM_PRIV_OPEN_CONTEXT, 0, 0);
        open.slot = 1;
        memcpy(open.reclaim_id, "0123456789abcdef0123456789abcdef", 32);
        reply = call(channel, &open, NULL, 0);
        tsm_priv_init(&attach, TSM_PRIV_ATTACH_VDEVICE, 0, 0);
        attach.slot = 1;
        attach.context = reply.value;
        attach.vdevice = 1;
        strcpy(attach.pci_address, DEVICE);
        (void) call(channel, &attach, NULL, 0);
        tsm_priv_init(&bind, TSM_PRIV_BIND_VDEVICE, 0, 0);
        bind.slot = 1;
        bind.context = reply.value;
        bind.vdevice = 1;
        (void) call(channel, &bind, NULL, 0);
        return reply.value;
}

static Stats bench_state(int channel, uint32_t context, uint64_t *ns) {
        struct tsm_priv_vdevice m;

        tsm_priv_init(&m, TSM_PRIV_GET_VDEVICE_STATE, 0, 0);
        m.slot = 1;
        m.context = context;
        m.vdevice = 1;
        for (unsigned i = 0; i < n_rounds; i++) {
                uint64_t t0 = now_nsec();
                (void) call(channel, &m, NULL, 0);
                ns[i] = now_nsec() - t0;
        }
        return stats_of(ns, n_rounds);
}

static Stats bench_request(int channel, uint32_t context, const uint8_t *req, size_t len, uint64_t *ns) {
        struct tsm_priv_guest_request m;

        tsm_priv_init(&m, TSM_PRIV_GUEST_REQUEST, 0, (uint32_t) len);
        m.slot = 1;
        m.context = context;
        m.vdevice = 1;
        m.max_response = 4096;
        m.backend = TSM_BACKEND_EMULATED;
        strcpy(m.scope, "info");
        for (unsigned i = 0; i < n_rounds; i++) {
                uint64_t t0 = now_nsec();
                (void) call(channel, &m, req, len);
                ns[i] = now_nsec() - t0;
        }
        return stats_of(ns, n_rounds);
}

/* ---- baselines -------------------------------------------------------------------------- */

static Stats bench_raw(size_t len, uint64_t *ns) {
        int sv[2];
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                die("socketpair", -errno);
        pid = fork();
        if (pid < 0)
                die("fork", -errno);
        if (pid == 0) {
                static uint8_t echo[TSM_PRIV_DATAGRAM_MAX];
                ssize_t n;

                close(sv[0]);
                while ((n = recv(sv[1], echo, sizeof(echo), 0)) > 0)
                        if (send(sv[1], echo, (size_t) n, MSG_NOSIGNAL) != n)
                                break;
                _exit(0);
        }
        close(sv[1]);
        memset(buf, 0x5a, len);
        for (unsigned i = 0; i < n_rounds; i++) {
                uint64_t t0 = now_nsec();
                if (send(sv[0], buf, len, MSG_NOSIGNAL) != (ssize_t) len || recv(sv[0], buf, sizeof(buf), 0) != (ssize_t) len)
                        die("raw round trip", -errno);
                ns[i] = now_nsec() - t0;
        }
        close(sv[0]);
        (void) waitpid(pid, NULL, 0);
        return stats_of(ns, n_rounds);
}

static void on_direct_done(TsmRequest *r, int result, void *userdata) {
        *(int *) userdata = result < 0 ? result : 1;
}

static Stats bench_direct(uint64_t *ns) {
        struct event_base *base = event_base_new();
        TsmPlatform *p = emulated_platform(base);
        uint8_t req[256];
        size_t len = get_version(p, req, sizeof(req));
        int fd = memfd_create("bench-iommufd", MFD_CLOEXEC);
        TsmTarget t = { .pci_address = DEVICE, .iommufd = fd, .vdevice_id = 1 };
        int r, bound = 0;

        r = tsm_platform_bind(p, &t, on_direct_done, &bound, NULL);
        if (r < 0)
                die("bind", r);
        while (!bound)
                (void) event_base_loop(base, EVLOOP_ONCE);
        if (bound < 0)
                die("bind", bound);
        for (unsigned i = 0; i < n_rounds; i++) {
                uint64_t t0 = now_nsec();
                int done = 0;

                r = tsm_platform_request(p, &t, "info", req, len, 4096, on_direct_done, &done, NULL);
                if (r < 0)
                        die("request", r);
                while (!done)
                        (void) event_base_loop(base, EVLOOP_ONCE);
                if (done < 0)
                        die("request", done);
                ns[i] = now_nsec() - t0;
        }
        tsm_platform_free(p);
        event_base_free(base);
        close(fd);
        return stats_of(ns, n_rounds);
}

int main(int argc, char *argv[]) {
        _cleanup_free_ uint64_t *ns = NULL;
        Stats raw, state, request, direct;
        struct event_base *base;
        TsmPlatform *p;
        uint8_t req[256];
        size_t req_len, datagram;
        uint32_t context;
        int sv[2];
        pid_t monitor;

        if (argc > 1 && streq(argv[1], "--quick"))
                n_rounds = 2000;
        log_set_max_level(LOG_WARNING);
        ns = new(uint64_t, n_rounds);
        if (!ns)
                die("malloc", -ENOMEM);

        /* The request a guest sends, and the datagram it becomes on the channel. */
        base = event_base_new();
        p = emulated_platform(base);
        req_len = get_version(p, req, sizeof(req));
        tsm_platform_free(p);
        event_base_free(base);
        datagram = sizeof(struct tsm_priv_guest_request) + req_len;

        raw = bench_raw(datagram, ns);
        direct = bench_direct(ns);

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                die("socketpair", -errno);
        monitor = monitor_start(sv[0], sv[1]);
        close(sv[0]);
        context = worker_setup(sv[1]);
        state = bench_state(sv[1], context, ns);
        request = bench_request(sv[1], context, req, req_len, ns);
        close(sv[1]);
        (void) waitpid(monitor, NULL, 0);

        printf("privilege separation: one monitor round trip, %u rounds, %zu-byte request datagram\n", n_rounds,
               datagram);
        printf("  %-44s p50 %8.2f us  p99 %8.2f us\n", "raw SOCK_SEQPACKET round trip (baseline)", raw.p50_us, raw.p99_us);
        printf("  %-44s p50 %8.2f us  p99 %8.2f us\n", "direct in-process request (before the split)", direct.p50_us,
               direct.p99_us);
        printf("  %-44s p50 %8.2f us  p99 %8.2f us\n", "monitor: GET_VDEVICE_STATE", state.p50_us, state.p99_us);
        printf("  %-44s p50 %8.2f us  p99 %8.2f us\n", "monitor: GUEST_REQUEST (info, GET_VERSION)", request.p50_us,
               request.p99_us);
        printf("ratios (p50):\n");
        printf("  monitor state query / raw round trip     %6.2fx\n", state.p50_us / raw.p50_us);
        printf("  monitor guest request / raw round trip   %6.2fx\n", request.p50_us / raw.p50_us);
        printf("  monitor guest request / direct call      %6.2fx\n", request.p50_us / direct.p50_us);
        printf("  added by the split / raw round trip      %6.2fx\n", (request.p50_us - direct.p50_us) / raw.p50_us);
        return EXIT_SUCCESS;
}
