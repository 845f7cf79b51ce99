/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libtsm's asynchronous API in a caller's poll() loop: several guest requests in flight,
 * callbacks in call order, destroy exactly once (also when the client is freed with calls
 * pending, or from a callback), what may be called from a callback, callbacks running during
 * a blocking call, WatchEvents, and tsm_client_reconnect() cancelling pending calls.
 * Runs in: tests.
 */

#include <poll.h>

#include "libtsm-test-util.h"
#include "tdisp.h"
#include "tsmd-instance.h"

#define WAIT_USEC (10 * 1000000ULL)
#define N_REQUESTS 8

/* What happened to one asynchronous call. */
typedef struct Record {
        unsigned index;
        uint8_t type; /* the TDISP request sent */
        int error;
        int response_type;
        char error_name[128];
        unsigned n_callbacks;
        unsigned n_destroys;
        unsigned callback_seq; /* order in which the callback ran, from 1 */
        bool destroyed_after_callback;
        struct Log *log;
} Record;

typedef struct Log {
        unsigned seq;     /* callbacks run so far */
        unsigned destroys;
        TsmClient *free_in_callback; /* free this client from the first callback */
        bool chain;                  /* queue another request from the first callback */
        Record chained;
} Log;

static void on_response(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        Record *r = userdata;

        r->n_callbacks++;
        r->callback_seq = ++r->log->seq;
        r->error = error;
        r->response_type = error < 0 ? -1 : tdisp_response_type(response, len);
        snprintf(r->error_name, sizeof(r->error_name), "%s", tsm_client_get_error_name(c) ?: "");
        if (error < 0)
                ASSERT_NULL(response);
        else
                ASSERT_NOT_NULL(response);

        if (r->log->free_in_callback) {
                TsmClient *f = r->log->free_in_callback;

                r->log->free_in_callback = NULL;
                ASSERT_NULL(tsm_client_free(f));
        }
}

static void on_destroy(void *userdata) {
        Record *r = userdata;

        r->n_destroys++;
        r->destroyed_after_callback = r->n_callbacks > 0;
        r->log->destroys++;
}

static void submit(TsmClient *c, uint64_t ctx, Record *r, unsigned index, uint8_t type, const char *scope, Log *log) {
        uint8_t req[64];
        size_t len = tdisp_request(DEV0, type, NULL, 0, req, sizeof(req));

        *r = (Record){ .index = index, .type = type, .log = log };
        ASSERT_OK(tsm_guest_request_async(c, ctx, 1, scope, req, len, 4096, on_response, r, on_destroy));
}

static const uint8_t request_types[] = {
        TDISP_MSG_GET_VERSION,
        TDISP_MSG_GET_DEVICE_INTERFACE_STATE,
};

TEST(requests_in_flight) {
        Record records[N_REQUESTS];
        TsmdInstance t;
        TsmClient *c;
        Log log = {};
        uint64_t ctx, start, elapsed;

        /* Each request takes 200 ms in the emulated backend. */
        tsmd_instance_start(&t, "EmulatedLatencyUSec=200000\n");
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ctx = setup_device(c, DEV0, 1, NULL);

        ASSERT_EQ(tsm_client_get_events(c), 0);
        for (unsigned i = 0; i < N_REQUESTS; i++)
                submit(c, ctx, &records[i], i, request_types[i % 2], "info", &log);
        /* Sent at once (the socket takes them all), answered later: no callback ran from
         * submit(), and the loop is asked to wait for the replies only. */
        ASSERT_EQ(tsm_client_get_events(c), POLLIN);
        ASSERT_EQ(log.seq, 0);

        start = test_now_usec();
        ASSERT_TRUE(pump_until(c, &log.destroys, N_REQUESTS, WAIT_USEC, NULL));
        elapsed = test_now_usec() - start;
        fprintf(stderr, "%u requests of 200 ms each took %" PRIu64 " ms\n", N_REQUESTS, elapsed / 1000);

        for (unsigned i = 0; i < N_REQUESTS; i++) {
                Record *r = &records[i];

                ASSERT_EQ(r->n_callbacks, 1);
                ASSERT_EQ(r->n_destroys, 1);
                ASSERT_TRUE(r->destroyed_after_callback);
                ASSERT_EQ(r->callback_seq, i + 1); /* in call order */
                ASSERT_OK(r->error);
                ASSERT_EQ(r->response_type, r->type & 0x7f);
        }
        ASSERT_EQ(tsm_client_get_events(c), 0);

        tsm_client_free(c);
        tsmd_instance_done(&t);
}

TEST(errors_in_order) {
        Record records[4];
        TsmdInstance t;
        TsmClient *c;
        Log log = {};
        uint64_t ctx;

        tsmd_instance_start(&t, NULL);
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ctx = setup_device(c, DEV0, 1, NULL);

        submit(c, ctx, &records[0], 0, TDISP_MSG_GET_VERSION, "info", &log);
        submit(c, ctx, &records[1], 1, TDISP_MSG_GET_VERSION, "no-such-scope", &log);
        submit(c, ctx, &records[2], 2, TDISP_MSG_GET_VERSION, "debug-write", &log);
        submit(c, ctx, &records[3], 3, TDISP_MSG_GET_VERSION, "info", &log);
        ASSERT_TRUE(pump_until(c, &log.destroys, 4, WAIT_USEC, NULL));

        for (unsigned i = 0; i < 4; i++) {
                ASSERT_EQ(records[i].callback_seq, i + 1);
                ASSERT_EQ(records[i].n_destroys, 1);
        }
        ASSERT_OK(records[0].error);
        ASSERT_ERRNO(records[1].error, EOPNOTSUPP);
        ASSERT_STREQ(records[1].error_name, "io.tsmd.Guest.NoSuchScope");
        ASSERT_ERRNO(records[2].error, EACCES);
        ASSERT_STREQ(records[2].error_name, "io.tsmd.Guest.Denied");
        ASSERT_OK(records[3].error);
        ASSERT_EQ(records[3].response_type, TDISP_MSG_VERSION);

        tsm_client_free(c);
        tsmd_instance_done(&t);
}

TEST(free_with_calls_pending) {
        Record records[3];
        TsmdInstance t;
        TsmClient *c;
        Log log = {};
        uint64_t ctx;

        tsmd_instance_start(&t, "EmulatedLatencyUSec=300000\n");
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ctx = setup_device(c, DEV0, 1, NULL);

        for (unsigned i = 0; i < 3; i++)
                submit(c, ctx, &records[i], i, TDISP_MSG_GET_VERSION, "info", &log);
        ASSERT_OK(tsm_client_process(c)); /* sent; the answers take 300 ms */
        ASSERT_NULL(tsm_client_free(c));

        for (unsigned i = 0; i < 3; i++) {
                ASSERT_EQ(records[i].n_callbacks, 0);
                ASSERT_EQ(records[i].n_destroys, 1);
        }
        tsmd_instance_done(&t);
}

TEST(free_from_callback) {
        Record records[3];
        TsmdInstance t;
        TsmClient *c;
        Log log = {};
        uint64_t ctx;
        unsigned n = 0;
        int r;

        tsmd_instance_start(&t, NULL);
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ctx = setup_device(c, DEV0, 1, NULL);

        for (unsigned i = 0; i < 3; i++)
                submit(c, ctx, &records[i], i, TDISP_MSG_GET_VERSION, "info", &log);
        log.free_in_callback = c;

        /* Drive it by hand: c is gone once a callback freed it. */
        while (log.seq == 0 && n++ < 1000) {
                struct pollfd p = { .fd = tsm_client_get_fd(c), .events = (short) tsm_client_get_events(c) };

                ASSERT_TRUE(poll(&p, 1, 10000) > 0);
                r = tsm_client_process(c);
                ASSERT_TRUE(r >= 0);
        }

        ASSERT_EQ(records[0].n_callbacks, 1);
        ASSERT_EQ(records[0].n_destroys, 1);
        ASSERT_TRUE(records[0].destroyed_after_callback);
        for (unsigned i = 1; i < 3; i++) {
                ASSERT_EQ(records[i].n_callbacks, 0);
                ASSERT_EQ(records[i].n_destroys, 1);
        }
        tsmd_instance_done(&t);
}

/* From a callback: blocking calls and process are refused, asynchronous calls work. */
typedef struct Reentry {
        Log log;
        Record chained;
        uint64_t ctx;
        int sync_result, process_result, reconnect_result, async_result;
        unsigned n;
} Reentry;

static void on_reentry(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        Reentry *e = userdata;
        uint8_t req[64];
        size_t l = tdisp_request(DEV0, TDISP_MSG_GET_VERSION, NULL, 0, req, sizeof(req));

        e->n++;
        e->sync_result = tsm_device_get_state(c, e->ctx, 1, NULL, NULL);
        e->process_result = tsm_client_process(c);
        e->reconnect_result = tsm_client_reconnect(c);
        e->chained = (Record){ .log = &e->log };
        e->async_result = tsm_guest_request_async(c, e->ctx, 1, "info", req, l, 4096, on_response, &e->chained,
                                                  on_destroy);
}

TEST(calls_from_callbacks) {
        TsmdInstance t;
        TsmClient *c;
        Reentry e = {};
        uint8_t req[64];
        size_t len;

        tsmd_instance_start(&t, NULL);
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        e.ctx = setup_device(c, DEV0, 1, NULL);
        len = tdisp_request(DEV0, TDISP_MSG_GET_VERSION, NULL, 0, req, sizeof(req));
        ASSERT_OK(tsm_guest_request_async(c, e.ctx, 1, "info", req, len, 4096, on_reentry, &e, NULL));

        ASSERT_TRUE(pump_until(c, &e.log.destroys, 1, WAIT_USEC, NULL));
        ASSERT_EQ(e.n, 1);
        ASSERT_ERRNO(e.sync_result, EDEADLK);
        ASSERT_ERRNO(e.process_result, EDEADLK);
        ASSERT_ERRNO(e.reconnect_result, EDEADLK);
        ASSERT_OK(e.async_result);
        ASSERT_EQ(e.chained.n_callbacks, 1);
        ASSERT_OK(e.chained.error);

        /* The client is fine afterwards. */
        ASSERT_OK(tsm_device_get_state(c, e.ctx, 1, NULL, NULL));
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

TEST(callbacks_during_blocking_call) {
        Record records[2];
        TsmdInstance t;
        TsmClient *c;
        Log log = {};
        uint64_t ctx;
        bool bound;

        tsmd_instance_start(&t, "EmulatedLatencyUSec=100000\n");
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ctx = setup_device(c, DEV0, 1, NULL);

        submit(c, ctx, &records[0], 0, TDISP_MSG_GET_VERSION, "info", &log);
        submit(c, ctx, &records[1], 1, TDISP_MSG_GET_VERSION, "info", &log);
        /* Replies come in call order: both callbacks ran before this returns. */
        ASSERT_OK(tsm_device_get_state(c, ctx, 1, NULL, &bound));
        ASSERT_EQ(log.seq, 2);
        ASSERT_EQ(log.destroys, 2);
        ASSERT_EQ(records[0].callback_seq, 1);
        ASSERT_EQ(records[1].callback_seq, 2);
        ASSERT_EQ(tsm_client_process(c), 0);

        tsm_client_free(c);
        tsmd_instance_done(&t);
}

/* A callback running during a blocking call queues another request. tsmd answers that one at
 * once but must hold the answer behind the blocking call's reply, so both arrive together: the
 * second callback must not wait for the fd to become readable again (it never would). */
typedef struct Chain {
        Log log;
        Record first, second;
        uint64_t ctx;
} Chain;

static void on_first(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        Chain *ch = userdata;
        uint8_t req[64];
        size_t l = tdisp_request(DEV0, TDISP_MSG_GET_VERSION, NULL, 0, req, sizeof(req));

        on_response(c, error, response, len, &ch->first);
        ch->second = (Record){ .index = 1, .log = &ch->log };
        ASSERT_OK(tsm_guest_request_async(c, ch->ctx, 1, "no-such-scope", req, l, 64, on_response,
                                          &ch->second, on_destroy));
}

TEST(replies_read_with_blocking_reply) {
        TsmdInstance t;
        TsmClient *c;
        Chain ch = {};
        uint8_t req[64], resp[256];
        size_t len;

        tsmd_instance_start(&t, "EmulatedLatencyUSec=300000\n");
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ch.ctx = setup_device(c, DEV0, 1, NULL);
        ch.first = (Record){ .log = &ch.log };
        len = tdisp_request(DEV0, TDISP_MSG_GET_VERSION, NULL, 0, req, sizeof(req));

        /* Answered at once (unknown scope), while the blocking request below takes 300 ms. */
        ASSERT_OK(tsm_guest_request_async(c, ch.ctx, 1, "no-such-scope", req, len, 64, on_first, &ch, NULL));
        ASSERT_OK(tsm_guest_request(c, ch.ctx, 1, "info", req, len, resp, sizeof(resp), NULL));
        ASSERT_EQ(ch.first.n_callbacks, 1);

        /* Whether the second reply came in the same read or not, the loop gets it. */
        ASSERT_TRUE(pump_until(c, &ch.second.n_destroys, 1, 2 * 1000000ULL, NULL));
        ASSERT_EQ(ch.second.n_callbacks, 1);
        ASSERT_ERRNO(ch.second.error, EOPNOTSUPP);

        tsm_client_free(c);
        tsmd_instance_done(&t);
}

/* ---- WatchEvents ------------------------------------------------------------------------ */

typedef struct Watch {
        unsigned n_subscribed, n_events, n_ended, n_destroys;
        int end_error;
        char kind[64], pci_address[32];
        TsmEventKind kind_enum;
        uint64_t context;
        uint32_t vdevice_id;
        TsmTdiState state;
        bool callback_after_destroy;
} Watch;

static void on_event(TsmClient *c, int error, const TsmEvent *event, void *userdata) {
        Watch *w = userdata;

        if (w->n_destroys > 0)
                w->callback_after_destroy = true;
        if (error < 0) {
                ASSERT_NULL(event);
                w->n_ended++;
                w->end_error = error;
                return;
        }
        if (!event) {
                w->n_subscribed++;
                return;
        }
        w->n_events++;
        snprintf(w->kind, sizeof(w->kind), "%s", tsm_event_get_kind_string(event));
        snprintf(w->pci_address, sizeof(w->pci_address), "%s", tsm_event_get_pci_address(event));
        w->kind_enum = tsm_event_get_kind(event);
        w->context = tsm_event_get_context(event);
        w->vdevice_id = tsm_event_get_vdevice_id(event);
        w->state = tsm_event_get_state(event);
}

static void on_watch_destroy(void *userdata) {
        Watch *w = userdata;

        w->n_destroys++;
}

TEST(watch_events) {
        TsmdInstance t;
        TsmClient *c, *wc;
        Watch w = {};
        uint64_t ctx;
        uint8_t buf[64] = {};

        tsmd_instance_start(&t, "EmulatedDevices=" DEV0 "," DEV1 "\n");
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ctx = setup_device(c, DEV1, 7, NULL);

        /* The watch on a connection of its own: it sees the process's devices on any. */
        ASSERT_OK(tsm_client_connect(t.guest_socket, &wc));
        ASSERT_OK(tsm_client_watch_events(wc, on_event, &w, on_watch_destroy));
        ASSERT_TRUE(pump_until(wc, &w.n_subscribed, 1, WAIT_USEC, NULL));
        ASSERT_EQ(w.n_events, 0);

        /* Nothing after a WatchEvents call on that connection could be answered. */
        ASSERT_ERRNO(tsm_context_open(wc, &ctx, NULL), EDEADLK);
        ASSERT_NO_ERROR_NAME(wc);
        ASSERT_ERRNO(tsm_guest_request_async(wc, ctx, 7, "info", buf, 1, 64, on_response, NULL, NULL), EDEADLK);
        ASSERT_ERRNO(tsm_client_watch_events(wc, on_event, &w, on_watch_destroy), EDEADLK);

        /* The other connection works as before. */
        ASSERT_OK(tsm_device_get_state(c, ctx, 7, NULL, NULL));

        /* The emulated device goes away with a configuration that no longer lists it. */
        tsmd_instance_reload(&t, "EmulatedDevices=" DEV0 "\n");
        ASSERT_TRUE(pump_until(wc, &w.n_events, 1, WAIT_USEC, NULL));
        ASSERT_STREQ(w.kind, "device-removed");
        ASSERT_EQ(w.kind_enum, TSM_EVENT_DEVICE_REMOVED);
        ASSERT_STREQ(w.pci_address, DEV1);
        ASSERT_EQ(w.context, ctx);
        ASSERT_EQ(w.vdevice_id, 7);
        ASSERT_EQ(w.state, _TSM_TDI_STATE_INVALID); /* device-removed carries no state (tsm.h) */
        ASSERT_EQ(w.n_ended, 0);
        ASSERT_EQ(w.n_destroys, 0);
        ASSERT_ERRNO(tsm_device_get_state(c, ctx, 7, NULL, NULL), ENODEV);
        ASSERT_ERROR_NAME(c, "io.tsmd.Guest.DeviceGone");

        /* Freed with the stream open: destroy, no further callback. */
        tsm_client_free(wc);
        ASSERT_EQ(w.n_ended, 0);
        ASSERT_EQ(w.n_destroys, 1);
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

TEST(reconnect_cancels_pending) {
        Record records[2];
        TsmdInstance t;
        TsmClient *c;
        Watch w = {};
        Log log = {};
        uint64_t ctx;
        int old_fd;

        tsmd_instance_start(&t, "EmulatedLatencyUSec=300000\n");
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ctx = setup_device(c, DEV0, 1, NULL);
        submit(c, ctx, &records[0], 0, TDISP_MSG_GET_VERSION, "info", &log);
        submit(c, ctx, &records[1], 1, TDISP_MSG_GET_VERSION, "info", &log);
        ASSERT_OK(tsm_client_watch_events(c, on_event, &w, on_watch_destroy));
        ASSERT_OK(tsm_client_process(c));
        old_fd = tsm_client_get_fd(c);
        ASSERT_TRUE(old_fd >= 0);

        ASSERT_OK(tsm_client_reconnect(c));
        for (unsigned i = 0; i < 2; i++) {
                ASSERT_EQ(records[i].n_callbacks, 1);
                ASSERT_ERRNO(records[i].error, ECANCELED);
                ASSERT_EQ(records[i].n_destroys, 1);
                ASSERT_EQ(records[i].callback_seq, i + 1);
        }
        ASSERT_EQ(w.n_ended, 1);
        ASSERT_ERRNO(w.end_error, ECANCELED);
        ASSERT_EQ(w.n_destroys, 1);
        ASSERT_FALSE(w.callback_after_destroy);

        /* A new connection: the old context is gone, new calls work (the watch is over).
         * (DEV1: tsmd may not have seen the old connection close yet, so DEV0 could still be
         * busy for a moment.) */
        ASSERT_ERRNO(tsm_device_get_state(c, ctx, 1, NULL, NULL), ENOENT);
        ASSERT_ERROR_NAME(c, "io.tsmd.Guest.NoSuchContext");
        ctx = setup_device(c, DEV1, 1, NULL);
        ASSERT_OK(tsm_device_get_state(c, ctx, 1, NULL, NULL));

        tsm_client_free(c);
        tsmd_instance_done(&t);
}

/* Hot-unplug behind a guest's queue (the VMM forwards what the guest drives): 50 requests queued
 * to vDevice 1, exchanges of 100 ms. tsm_device_cancel_requests() takes back all but those libtsm
 * sent (8), each callback once with -ECANCELED: the Unbind is answered behind those 8 only (it
 * waited behind all 50, and a VMM's timeout of a few seconds ran out), and the Detach at once. */
TEST(unplug_cancels_the_guests_requests) {
        const unsigned n = 50, sent = 8;
        Record records[50];
        TsmdInstance t;
        TsmClient *c;
        Log log = {};
        uint64_t ctx;
        int k;

        tsmd_instance_start(&t, "EmulatedLatencyUSec=100000\n");
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ctx = setup_device(c, DEV0, 1, NULL);

        for (unsigned i = 0; i < n; i++)
                submit(c, ctx, &records[i], i, request_types[i % 2], "info", &log);
        k = tsm_device_cancel_requests(c, ctx, 1);
        ASSERT_EQ(k, (int) (n - sent));
        ASSERT_EQ(log.seq, n - sent); /* the callbacks ran from the cancel */
        ASSERT_EQ(tsm_device_cancel_requests(c, ctx, 1), 0);

        ASSERT_OK(tsm_client_set_timeout(c, WAIT_USEC));
        ASSERT_OK(tsm_device_unbind(c, ctx, 1, NULL));
        ASSERT_EQ(log.seq, n); /* the 8 sent were answered before it */
        ASSERT_OK(tsm_device_detach(c, ctx, 1));
        for (unsigned i = 0; i < n; i++) {
                Record *r = &records[i];

                ASSERT_EQ(r->n_callbacks, 1);
                ASSERT_EQ(r->n_destroys, 1);
                ASSERT_TRUE(r->destroyed_after_callback);
                if (i < sent) {
                        ASSERT_OK(r->error);
                        ASSERT_EQ(r->callback_seq, n - sent + i + 1); /* after the cancelled ones */
                } else {
                        ASSERT_EQ(r->error, -ECANCELED);
                        ASSERT_STREQ(r->error_name, ""); /* a local failure: no error name */
                        ASSERT_EQ(r->callback_seq, i - sent + 1); /* in call order */
                }
        }
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

/* ---- the device calls of a hot-plug and unplug, from the loop ------------------------------ */

/* What one asynchronous device call got. */
typedef struct DevRecord {
        unsigned n_callbacks, n_destroys;
        unsigned callback_seq;
        int error;
        char error_name[128];
        char backend[32];
        TsmTdiState state;
        bool bound;
        bool callback_after_destroy;
        Log *log;
} DevRecord;

static void dev_record(TsmClient *c, DevRecord *d, int error) {
        if (d->n_destroys > 0)
                d->callback_after_destroy = true;
        d->n_callbacks++;
        d->callback_seq = ++d->log->seq;
        d->error = error;
        snprintf(d->error_name, sizeof(d->error_name), "%s", tsm_client_get_error_name(c) ?: "");
        if (d->log->free_in_callback) {
                TsmClient *f = d->log->free_in_callback;

                d->log->free_in_callback = NULL;
                ASSERT_NULL(tsm_client_free(f));
        }
}

static void on_dev_attached(TsmClient *c, int error, TsmDeviceInfo *info, void *userdata) {
        DevRecord *d = userdata;

        ASSERT_EQ(!info, error < 0);
        if (info)
                snprintf(d->backend, sizeof(d->backend), "%s", tsm_device_info_get_backend(info));
        tsm_device_info_free(info);
        dev_record(c, d, error);
}

static void on_dev_done(TsmClient *c, int error, void *userdata) {
        dev_record(c, userdata, error);
}

static void on_dev_state(TsmClient *c, int error, TsmTdiState state, bool bound, void *userdata) {
        DevRecord *d = userdata;

        d->state = state;
        d->bound = bound;
        dev_record(c, d, error);
}

static void on_dev_destroy(void *userdata) {
        DevRecord *d = userdata;

        d->n_destroys++;
        d->log->destroys++;
}

/* The unplug's next steps, made from the Unbind's callback: tsmd refuses a Detach while an
 * Unbind of the vDevice is being answered (-EBUSY), so the VMM makes it once that came. */
typedef struct Unplug {
        DevRecord unbind, state, detach;
        uint64_t ctx;
        int state_result, detach_result;
} Unplug;

static void on_unbound_then_detach(TsmClient *c, int error, TsmTdiState state, bool bound, void *userdata) {
        Unplug *u = userdata;

        on_dev_state(c, error, state, bound, &u->unbind);
        u->state_result = tsm_device_get_state_async(c, u->ctx, 1, on_dev_state, &u->state, on_dev_destroy);
        u->detach_result = tsm_device_detach_async(c, u->ctx, 1, on_dev_done, &u->detach, on_dev_destroy);
}

static void on_unplug_destroy(void *userdata) {
        Unplug *u = userdata;

        on_dev_destroy(&u->unbind);
}

/* A hot-plug and an unplug from the loop alone: attach, bind and the guest's request made at
 * once (none blocks, nothing answered from the registration), answered in call order, each
 * callback with its blocking form's outputs; then unbind, and detach made from its callback;
 * tsmd's errors mapped and named. */
TEST(device_calls_from_the_loop) {
        DevRecord attach, bind, state_bound;
        Unplug u;
        Record request;
        TsmdInstance t;
        TsmClient *c;
        Log log = {};
        uint64_t ctx;
        int fd;

        tsmd_instance_start(&t, "EmulatedLatencyUSec=100000\n");
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ASSERT_OK(tsm_context_open(c, &ctx, &fd));
        close(fd);

        attach = bind = state_bound = (DevRecord) { .log = &log };
        ASSERT_OK(tsm_device_attach_async(c, ctx, 1, DEV0, -1, on_dev_attached, &attach, on_dev_destroy));
        ASSERT_OK(tsm_device_bind_async(c, ctx, 1, on_dev_state, &bind, on_dev_destroy));
        ASSERT_OK(tsm_device_get_state_async(c, ctx, 1, on_dev_state, &state_bound, on_dev_destroy));
        submit(c, ctx, &request, 0, TDISP_MSG_GET_VERSION, "info", &log);
        ASSERT_EQ(log.seq, 0);
        ASSERT_TRUE(tsm_client_get_events(c) & POLLIN);
        ASSERT_TRUE(pump_until(c, &log.destroys, 4, WAIT_USEC, NULL));

        u = (Unplug) { .ctx = ctx, .unbind.log = &log, .state.log = &log, .detach.log = &log };
        ASSERT_OK(tsm_device_unbind_async(c, ctx, 1, on_unbound_then_detach, &u, on_unplug_destroy));
        ASSERT_TRUE(pump_until(c, &log.destroys, 7, WAIT_USEC, NULL));

        ASSERT_EQ(attach.callback_seq, 1);
        ASSERT_OK(attach.error);
        ASSERT_STREQ(attach.backend, "emulated");
        ASSERT_EQ(bind.callback_seq, 2);
        ASSERT_OK(bind.error);
        ASSERT_TRUE(bind.bound);
        ASSERT_EQ(state_bound.callback_seq, 3);
        ASSERT_OK(state_bound.error);
        ASSERT_TRUE(state_bound.bound);
        ASSERT_EQ(state_bound.state, bind.state);
        ASSERT_EQ(request.callback_seq, 4);
        ASSERT_OK(request.error);
        ASSERT_EQ(request.response_type, TDISP_MSG_VERSION);
        ASSERT_EQ(u.unbind.callback_seq, 5);
        ASSERT_OK(u.unbind.error);
        ASSERT_FALSE(u.unbind.bound);
        ASSERT_OK(u.state_result);
        ASSERT_OK(u.detach_result);
        ASSERT_EQ(u.state.callback_seq, 6);
        ASSERT_OK(u.state.error);
        ASSERT_FALSE(u.state.bound);
        ASSERT_EQ(u.detach.callback_seq, 7);
        ASSERT_OK(u.detach.error);
        ASSERT_EQ(u.detach.n_destroys, 1);
        ASSERT_FALSE(u.detach.callback_after_destroy);
        ASSERT_ERRNO(tsm_device_get_state(c, ctx, 1, NULL, NULL), ENOENT); /* detached */

        /* tsmd's errors: each mapped, named, in the callback. */
        {
                DevRecord no_device, exists, no_vdevice, no_context, no_context_close, close;
                char *token = NULL;

                no_device = exists = no_vdevice = no_context = no_context_close = close =
                        (DevRecord) { .log = &log };
                log = (Log) {};
                ASSERT_OK(tsm_device_attach(c, ctx, 2, DEV1, -1, NULL));
                ASSERT_OK(tsm_device_attach_async(c, ctx, 3, "0000:0f:00.0", -1, on_dev_attached, &no_device,
                                                  on_dev_destroy));
                ASSERT_OK(tsm_device_attach_async(c, ctx, 2, DEV0, -1, on_dev_attached, &exists, on_dev_destroy));
                ASSERT_OK(tsm_device_bind_async(c, ctx, 9, on_dev_state, &no_vdevice, on_dev_destroy));
                ASSERT_OK(tsm_device_detach_async(c, ctx + 1000, 2, on_dev_done, &no_context, on_dev_destroy));
                ASSERT_OK(tsm_context_close_async(c, ctx + 1000, on_dev_done, &no_context_close, on_dev_destroy));
                ASSERT_TRUE(pump_until(c, &log.destroys, 5, WAIT_USEC, NULL));
                ASSERT_ERRNO(no_device.error, ENOENT);
                ASSERT_STREQ(no_device.error_name, "io.tsmd.Guest.NoSuchDevice");
                ASSERT_ERRNO(exists.error, EEXIST);
                ASSERT_STREQ(exists.error_name, "io.tsmd.Guest.VDeviceExists");
                ASSERT_ERRNO(no_vdevice.error, ENOENT);
                ASSERT_STREQ(no_vdevice.error_name, "io.tsmd.Guest.NoSuchVDevice");
                ASSERT_EQ(no_vdevice.state, _TSM_TDI_STATE_INVALID);
                ASSERT_ERRNO(no_context.error, ENOENT);
                ASSERT_STREQ(no_context.error_name, "io.tsmd.Guest.NoSuchContext");
                ASSERT_ERRNO(no_context_close.error, ENOENT);
                ASSERT_STREQ(no_context_close.error_name, "io.tsmd.Guest.NoSuchContext");

                /* The teardown: the context closed from the loop, its token forgotten. */
                ASSERT_OK(tsm_context_get_reclaim_token(c, ctx, &token));
                free(token);
                ASSERT_OK(tsm_context_close_async(c, ctx, on_dev_done, &close, on_dev_destroy));
                ASSERT_TRUE(pump_until(c, &log.destroys, 6, WAIT_USEC, NULL));
                ASSERT_OK(close.error);
                ASSERT_ERRNO(tsm_context_get_reclaim_token(c, ctx, &token), ENOENT);
                ASSERT_ERRNO(tsm_device_get_state(c, ctx, 2, NULL, NULL), ENOENT);
                ASSERT_ERROR_NAME(c, "io.tsmd.Guest.NoSuchContext");
        }

        tsm_client_free(c);
        tsmd_instance_done(&t);
}

/* The connection lost with an Unbind and a Detach waiting behind a guest's request: each
 * callback once, -ECONNRESET; a reconnect: -ECANCELED; a client freed from the first callback:
 * the others get their destroy only. */
TEST(device_calls_lost_cancelled_or_freed) {
        DevRecord unbind, detach, bind, state;
        Record request;
        TsmdInstance t;
        TsmClient *c;
        Log log = {};
        uint64_t ctx;
        int process = 0;

        tsmd_instance_start(&t, "EmulatedLatencyUSec=500000\n");
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ctx = setup_device(c, DEV0, 1, NULL);

        /* Lost. */
        unbind = detach = (DevRecord) { .log = &log };
        submit(c, ctx, &request, 0, TDISP_MSG_GET_VERSION, "info", &log);
        ASSERT_OK(tsm_device_unbind_async(c, ctx, 1, on_dev_state, &unbind, on_dev_destroy));
        ASSERT_OK(tsm_device_detach_async(c, ctx, 1, on_dev_done, &detach, on_dev_destroy));
        ASSERT_OK(tsm_client_process(c));
        tsmd_instance_kill(&t, SIGKILL);
        ASSERT_TRUE(pump_until(c, &log.destroys, 3, WAIT_USEC, &process));
        ASSERT_ERRNO(process, ECONNRESET);
        ASSERT_ERRNO(request.error, ECONNRESET);
        ASSERT_ERRNO(unbind.error, ECONNRESET);
        ASSERT_STREQ(unbind.error_name, "io.tsmd.Disconnected");
        ASSERT_ERRNO(detach.error, ECONNRESET);
        ASSERT_EQ(unbind.callback_seq, 2);
        ASSERT_EQ(detach.callback_seq, 3);
        ASSERT_EQ(unbind.n_callbacks + detach.n_callbacks, 2);
        ASSERT_ERRNO(tsm_device_unbind_async(c, ctx, 1, on_dev_state, &unbind, on_dev_destroy), ENOTCONN);

        /* A reconnect ends those pending with -ECANCELED. */
        tsmd_instance_restart(&t);
        ASSERT_OK(tsm_client_reconnect(c));
        ASSERT_OK(tsm_context_open(c, &ctx, NULL));
        log = (Log) {};
        bind = state = (DevRecord) { .log = &log };
        ASSERT_OK(tsm_device_attach(c, ctx, 1, DEV1, -1, NULL));
        ASSERT_OK(tsm_device_bind_async(c, ctx, 1, on_dev_state, &bind, on_dev_destroy));
        ASSERT_OK(tsm_device_get_state_async(c, ctx, 1, on_dev_state, &state, on_dev_destroy));
        ASSERT_OK(tsm_client_reconnect(c));
        ASSERT_EQ(log.destroys, 2);
        ASSERT_ERRNO(bind.error, ECANCELED);
        ASSERT_ERRNO(state.error, ECANCELED);
        ASSERT_EQ(bind.callback_seq, 1);
        ASSERT_EQ(state.callback_seq, 2);
        ASSERT_FALSE(bind.callback_after_destroy);

        /* Freed from the first callback: the next, answered with it, sees nothing but destroy.
         * (No device: the last connection's may still be busy at tsmd for a moment.) */
        ASSERT_OK(tsm_context_open(c, &ctx, NULL));
        log = (Log) { .free_in_callback = c };
        bind = state = (DevRecord) { .log = &log };
        ASSERT_OK(tsm_device_detach_async(c, ctx, 5, on_dev_done, &bind, on_dev_destroy));
        ASSERT_OK(tsm_device_get_state_async(c, ctx, 5, on_dev_state, &state, on_dev_destroy));
        for (unsigned n = 0; log.seq == 0 && n < 1000; n++) {
                struct pollfd p = { .fd = tsm_client_get_fd(c), .events = (short) tsm_client_get_events(c) };

                ASSERT_TRUE(poll(&p, 1, 10000) > 0);
                ASSERT_TRUE(tsm_client_process(c) >= 0);
        }
        ASSERT_EQ(bind.n_callbacks, 1);
        ASSERT_ERRNO(bind.error, ENOENT);
        ASSERT_EQ(bind.n_destroys, 1);
        ASSERT_EQ(state.n_callbacks, 0);
        ASSERT_EQ(state.n_destroys, 1);
        tsmd_instance_done(&t);
}

/* The window the VMM sets bounds what tsmd has of the client's calls: with 2 at a time, an
 * Unbind made behind a guest's 6 requests (exchanges of 200 ms) and their cancel waits behind 2,
 * not 8; the others are taken back. Counted in calls, not time: how many answers came before
 * the Unbind's. */
TEST(window_bounds_what_an_unbind_waits_behind) {
        Record records[6];
        DevRecord unbind;
        TsmdInstance t;
        TsmClient *c;
        Log log = {};
        uint64_t ctx;

        tsmd_instance_start(&t, "EmulatedLatencyUSec=200000\n");
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ctx = setup_device(c, DEV0, 1, NULL);
        ASSERT_OK(tsm_client_set_max_calls_in_flight(c, 2));

        unbind = (DevRecord) { .log = &log };
        for (unsigned i = 0; i < ELEMENTSOF(records); i++)
                submit(c, ctx, &records[i], i, TDISP_MSG_GET_VERSION, "info", &log);
        ASSERT_EQ(tsm_device_cancel_requests(c, ctx, 1), 4);
        ASSERT_OK(tsm_device_unbind_async(c, ctx, 1, on_dev_state, &unbind, on_dev_destroy));
        ASSERT_TRUE(pump_until(c, &unbind.n_destroys, 1, WAIT_USEC, NULL));
        ASSERT_OK(unbind.error);
        ASSERT_EQ(unbind.callback_seq, 4 + 2 + 1); /* after the 4 cancelled and the 2 sent */
        for (unsigned i = 0; i < ELEMENTSOF(records); i++)
                ASSERT_EQ(records[i].error, i < 2 ? 0 : -ECANCELED);

        tsm_client_free(c);
        tsmd_instance_done(&t);
}

TEST_MAIN();
