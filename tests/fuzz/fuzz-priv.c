/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the monitor's request table: arbitrary datagrams from a worker, fed
 * through a SOCK_SEQPACKET socketpair into monitor_dispatch_process() over an emulated
 * platform. A worker that breaks a rule is replaced, as the process model does, so a run goes
 * on with the state the monitor kept. Checks the invariants of every answer, not only the
 * absence of crashes. Runs in: tests (fuzzing builds only).
 *
 * Input: a list of records, each a flags byte, a u16 length (little-endian) and that many
 * bytes, sent as one datagram (which the monitor unpacks: it may carry several messages, seed
 * "packed"). Flags:
 *   bit 0  attach an fd: the last fd the monitor handed out, else a pipe
 *   bit 1  frame it: size and payload_len in the header made to fit the type and the length,
 *          flags and __reserved cleared (so inputs get past the shape checks)
 *   bit 2  run the event loop afterwards (guest requests complete)
 *   bit 3  the worker dies before this record; a new one starts
 */

#include <endian.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "fuzz.h"
#include "monitor-dispatch.h"
#include "monitor-open-gates.h" /* what is fuzzed is the path behind them */
#include "priv-datagram.h"
#include "priv-reader.h"
#include "tsm-platform.h"


typedef struct Worker {
        MonitorDispatch *dispatch;
        int monitor, worker;
        int held_fd; /* the last fd the monitor handed out */
        uint8_t buf[TSM_PRIV_DATAGRAM_MAX];
        TsmPrivReader reader; /* what the monitor sent, a message at a time */
} Worker;

/* Reads what the monitor sent; everything must be a well-formed message of its own. */
static void drain(Worker *w) {
        for (;;) {
                _Alignas(8) uint8_t msg[TSM_PRIV_FIXED_MAX];
                const struct tsm_priv_hdr *h = (const struct tsm_priv_hdr *) msg;
                const TsmPrivTypeDesc *d;
                const char *reason = NULL;
                size_t n_fds;
                int fds[1];
                ssize_t n;

                n = priv_reader_receive(&w->reader, w->worker, w->buf, fds, 1, &n_fds);
                if (n <= 0)
                        return;
                CHECK((size_t) n >= sizeof(struct tsm_priv_hdr));
                memcpy(msg, w->buf, sizeof(struct tsm_priv_hdr));
                d = tsm_priv_type_desc(h->type);
                CHECK(d);
                CHECK(tsm_priv_check(w->buf, (size_t) n, n_fds, TSM_PRIV_FROM_MONITOR, msg, d->size, NULL,
                                     &reason) >= 0);
                if (h->type == TSM_PRIV_REPLY) {
                        const struct tsm_priv_reply *r = (const struct tsm_priv_reply *) msg;
                        /* Failures carry neither fds nor payloads. */
                        CHECK(r->result <= 0);
                        CHECK(r->result == 0 || (n_fds == 0 && h->payload_len == 0));
                }
                if (n_fds > 0) {
                        if (w->held_fd >= 0)
                                close(w->held_fd);
                        w->held_fd = fds[0];
                }
        }
}

static void worker_start(Worker *w) {
        int sv[2];

        /* Non-blocking, so a full buffer fails a send rather than hanging the fuzzer. */
        CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) >= 0);
        w->monitor = sv[0];
        w->worker = sv[1];
        CHECK(monitor_dispatch_start(w->dispatch, w->monitor, NULL, 0) >= 0);
        drain(w);
}

static void worker_stop(Worker *w) {
        monitor_dispatch_stop(w->dispatch);
        w->monitor = safe_close(w->monitor);
        w->worker = safe_close(w->worker);
}

static void send_datagram(Worker *w, const uint8_t *dgram, size_t len, bool with_fd) {
        int p[2] = { -1, -1 }, fd = w->held_fd;

        if (with_fd && fd < 0) {
                CHECK(pipe2(p, O_CLOEXEC) >= 0);
                fd = p[0];
        }
        priv_datagram_send(w->worker, dgram, len, &fd, with_fd);
        safe_close(p[0]);
        safe_close(p[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_EMULATED,
                .iommu_device = (char *) "/nonexistent/tsmd-fuzz-iommu",
                /* The corpus's debug-read and debug-write requests reach the device's debug
                 * protocol, as before the TSM refused the debug scopes by default. */
                .emulated_debug_scopes = true,
        };
        static Worker w;
        struct event_base *base;
        TsmPlatform *platform = NULL;
        MonitorContexts *contexts = NULL;
        uint8_t *dgram;

        if (size > 256 * 1024)
                return 0;

        unsetenv("NOTIFY_SOCKET");
        dgram = malloc(UINT16_MAX + 1);
        base = event_base_new();
        CHECK(dgram && base);
        CHECK(tsm_platform_new(base, &config, &platform) >= 0);
        CHECK(monitor_contexts_new(&contexts) >= 0);
        w = (Worker){ .monitor = -EBADF, .worker = -EBADF, .held_fd = -EBADF };
        CHECK(monitor_dispatch_new(base, platform, contexts, &open_gates, NULL, &w.dispatch) >= 0);
        worker_start(&w);

        while (size >= 3) {
                uint8_t flags = data[0];
                size_t len = MIN((size_t) (data[1] | data[2] << 8), size - 3);
                const char *reason = NULL;
                int r;

                memcpy(dgram, data + 3, len);
                data += 3 + len;
                size -= 3 + len;

                if (flags & 8) {
                        worker_stop(&w);
                        worker_start(&w);
                }
                if (flags & 2)
                        priv_datagram_frame(dgram, len);
                send_datagram(&w, dgram, len, flags & 1);

                r = monitor_dispatch_process(w.dispatch, &reason);
                /* Drained, gone, a violation with its reason, or a failed send (the buffer). */
                CHECK(r == 0 || r == 1 || r == -EPIPE || reason || r == -EAGAIN);
                CHECK(monitor_dispatch_n_requests(w.dispatch) <= MONITOR_REQUESTS_MAX);
                if (reason)
                        CHECK(monitor_dispatch_get_violation_type(w.dispatch));
                drain(&w);
                if (r < 0) {
                        worker_stop(&w);
                        worker_start(&w);
                }
                if (flags & 4) {
                        (void) event_base_loop(base, EVLOOP_NONBLOCK);
                        drain(&w);
                }
        }

        /* Whatever the worker did, the table stays consistent: unique ids and reclaim ids. */
        MonitorContext *a;

        MONITOR_CONTEXTS_FOREACH(a, contexts) {
                CHECK(a->id > 0 && a->fd >= 0);
                CHECK(monitor_contexts_get(contexts, a->id) == a);
                CHECK(monitor_contexts_find_reclaim_id(contexts, a->reclaim_id) == a);
                for (size_t i = 0; i < a->n_vdevices; i++) {
                        MonitorContext *holder = NULL;
                        CHECK(a->vdevices[i].id != 0);
                        CHECK(monitor_contexts_find_device(contexts, a->vdevices[i].pci_address, &holder) ==
                              &a->vdevices[i]);
                }
        }

        worker_stop(&w);
        safe_close(w.held_fd);
        monitor_dispatch_free(w.dispatch);
        monitor_contexts_free(contexts, false);
        tsm_platform_free(platform);
        (void) event_base_loop(base, EVLOOP_NONBLOCK);
        event_base_free(base);
        free(dgram);
        return 0;
}
