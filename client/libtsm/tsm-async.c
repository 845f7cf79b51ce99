/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The asynchronous calls: guest requests, DescribeConnection (made by tsm-describe.c) and the
 * device calls (tsm-device-async.c), whose replies arrive in the caller's event loop, and the
 * io.tsmd.Guest.WatchEvents stream. Each registration is a TsmOp on the client's list; the
 * Varlink client's reply callback (op_reply) turns replies into the op's callback and, after
 * the last one, its destroy. Documented in tsm.h. Runs in: the VMM process.
 */

#include "json-util.h"
#include "libtsm-internal.h"

void ltsm_error_clear_for(TsmClient *c, int error) {
        if (error == 0 || error == -ENODATA)
                ltsm_error_clear(c);
}

static void request_callback(TsmOp *op, int error, const void *response, size_t len, size_t unconsumed) {
        TsmClient *c = op->client;

        ltsm_error_clear_for(c, error);
        c->request_unconsumed = error < 0 ? 0 : unconsumed;
        c->n_dispatching++;
        op->request_callback(c, error, response, len, op->userdata);
        c->n_dispatching--;
}

static void event_callback(TsmOp *op, int error, const TsmEvent *event) {
        TsmClient *c = op->client;

        ltsm_error_clear_for(c, error);
        c->n_dispatching++;
        op->event_callback(c, error, event, op->userdata);
        c->n_dispatching--;
}

static void describe_callback(TsmOp *op, int error, const TsmConnectionInfo *info) {
        TsmClient *c = op->client;

        ltsm_error_clear_for(c, error);
        c->n_dispatching++;
        op->describe_callback(c, error, info, op->userdata);
        c->n_dispatching--;
}

void ltsm_op_fail(TsmOp *op, int error) {
        switch (op->type) {
        case TSM_OP_GUEST_REQUEST:
                request_callback(op, error, NULL, 0, 0);
                break;
        case TSM_OP_WATCH:
                event_callback(op, error, NULL);
                break;
        case TSM_OP_DESCRIBE:
                describe_callback(op, error, NULL);
                break;
        case TSM_OP_ATTACH:
        case TSM_OP_DETACH:
        case TSM_OP_BIND:
        case TSM_OP_UNBIND:
        case TSM_OP_GET_STATE:
        case TSM_OP_CLOSE:
                ltsm_device_op_fail(op, error);
                break;
        }
}

static void request_reply(TsmOp *op, VarlinkClient *vc, json_object *parameters, const char *error) {
        _cleanup_free_ void *data = NULL;
        size_t len = 0, unconsumed = 0;
        int r;

        if (error) {
                r = ltsm_error_set_varlink(op->client, vc, error, parameters);
                request_callback(op, r, NULL, 0, 0);
                return;
        }
        r = ltsm_reply_get_base64(parameters, "response", op->max_response_size, &data, &len);
        if (r >= 0)
                r = ltsm_guest_request_unconsumed(parameters, op->request_size, &unconsumed);
        if (r < 0) {
                ltsm_error_clear(op->client);
                request_callback(op, r, NULL, 0, 0);
                return;
        }
        /* A zero-length response still gets a non-NULL pointer. */
        request_callback(op, 0, data ?: (const void *) "", len, unconsumed);
}

static void describe_reply(TsmOp *op, VarlinkClient *vc, json_object *parameters, const char *error) {
        _cleanup_(tsm_connection_info_freep) TsmConnectionInfo *info = NULL;
        int r;

        if (error) {
                describe_callback(op, ltsm_error_set_varlink(op->client, vc, error, parameters), NULL);
                return;
        }
        r = ltsm_describe_reply_parse(parameters, op->nonce, &info);
        if (r < 0) {
                ltsm_error_clear(op->client);
                describe_callback(op, r, NULL);
                return;
        }
        describe_callback(op, 0, info);
}

static int event_from_json(json_object *o, TsmEvent *ret) {
        int64_t context, vdevice_id;
        int r;

        r = ltsm_reply_get_string(o, "kind", &ret->kind);
        if (r >= 0)
                r = ltsm_reply_get_int(o, "context", 0, INT64_MAX, &context);
        if (r >= 0)
                r = ltsm_reply_get_int(o, "vdeviceId", 0, UINT32_MAX, &vdevice_id);
        if (r >= 0)
                r = ltsm_reply_get_string(o, "pciAddress", &ret->pci_address);
        if (r < 0)
                return r;
        ret->context = (uint64_t) context;
        ret->vdevice_id = (uint32_t) vdevice_id;
        ret->state = ltsm_reply_get_state(o, "state");
        return 0;
}

static void watch_reply(TsmOp *op, VarlinkClient *vc, json_object *parameters, const char *error,
                        bool continues) {
        json_object *ev = NULL;
        TsmEvent event;

        if (error) {
                event_callback(op, ltsm_error_set_varlink(op->client, vc, error, parameters), NULL);
                return;
        }

        (void) json_object_object_get_ex(parameters, "event", &ev);
        if (!op->subscribed) {
                /* The first reply says the subscription is in place (it carries no event). */
                op->subscribed = true;
                event_callback(op, 0, NULL);
                if (op->client->free_requested)
                        return;
        }
        /* A malformed event cannot end the stream (only tsmd can): it is skipped. */
        if (json_object_is_type(ev, json_type_object) && event_from_json(ev, &event) >= 0) {
                event_callback(op, 0, &event);
                if (op->client->free_requested)
                        return;
        }
        if (!continues)
                event_callback(op, -ENODATA, NULL); /* tsmd ended the stream */
}

/* The Varlink client's callback for every reply of an op's call. */
static int op_reply(VarlinkClient *vc, json_object *parameters, const char *error, bool continues,
                    void *userdata) {
        TsmOp *op = userdata;
        TsmClient *c = op->client;

        /* Freed from a callback: no more callbacks; tsm_client_free()'s deferred part runs the
         * remaining destroys. Failing here makes the Varlink client wind down at once. */
        if (c->free_requested)
                return -ECANCELED;

        switch (op->type) {
        case TSM_OP_GUEST_REQUEST:
                request_reply(op, vc, parameters, error);
                break;
        case TSM_OP_WATCH:
                watch_reply(op, vc, parameters, error, continues);
                break;
        case TSM_OP_DESCRIBE:
                describe_reply(op, vc, parameters, error);
                break;
        case TSM_OP_ATTACH:
        case TSM_OP_DETACH:
        case TSM_OP_BIND:
        case TSM_OP_UNBIND:
        case TSM_OP_GET_STATE:
        case TSM_OP_CLOSE:
                ltsm_device_op_reply(op, vc, parameters, error);
                break;
        }
        /* No asynchronous reply names an fd: none tsmd sent with one stays with the VMM. */
        varlink_client_close_reply_fds(vc);

        if (!continues || error)
                ltsm_op_finish(op);
        return c->free_requested ? -ECANCELED : 0;
}

int ltsm_client_call_async(TsmClient *c, const char *method, json_object *params, unsigned flags, int fd,
                           TsmOp *op) {
        _cleanup_(json_object_putp) json_object *p = params;
        int r;

        r = ltsm_client_check_callable(c, false);
        if (r < 0)
                return r;
        if (fd >= 0) {
                r = ltsm_client_push_fd(c, fd);
                if (r < 0)
                        return r;
        }

        op->client = c;
        r = varlink_client_call_async(c->vc, method, TAKE_PTR(p), flags, op_reply, op);
        if (r < 0)
                return ltsm_error_set_failed(c, r);
        LIST_INSERT_HEAD(&c->ops, op, entry);
        return 0;
}

/* tsm_guest_request_async(): see tsm.h. */
_public_ int tsm_guest_request_async(TsmClient *c, uint64_t context, uint32_t vdevice_id, const char *scope,
                                     const void *req, size_t req_len, size_t max_response_size,
                                     TsmGuestRequestFunc callback, void *userdata, TsmDestroyFunc destroy) {
        json_object *p;
        TsmOp *op;
        int r;

        assert_return(c, -EINVAL);
        assert_return_client(c, callback, -EINVAL);
        /* Before anything is copied or queued: the guest gets a busy status (tsm.h). */
        if (c->n_requests >= c->max_requests)
                return ltsm_error_set_local(c, -EAGAIN);

        r = ltsm_guest_request_params(context, vdevice_id, scope, req, req_len, max_response_size, &p);
        if (r < 0)
                return ltsm_error_set_local(c, r);
        op = ltsm_op_new(&(TsmOp) {
                .type = TSM_OP_GUEST_REQUEST,
                .request_callback = callback,
                .userdata = userdata,
                .destroy = destroy,
                .max_response_size = max_response_size,
                .request_size = req_len,
                .context = context,
                .vdevice_id = vdevice_id,
        });
        if (!op) {
                json_object_put(p);
                return ltsm_error_set_local(c, -ENOMEM);
        }
        r = ltsm_client_call_async(c, "io.tsmd.Guest.GuestRequest", p, 0, -EBADF, op);
        if (r < 0) {
                free(op);
                return r;
        }
        c->n_requests++;
        return 0;
}

typedef struct CancelMatch {
        bool all;
        uint64_t context;
        uint32_t vdevice_id;
} CancelMatch;

static bool cancel_match(void *userdata, void *arg) {
        const TsmOp *op = userdata;
        const CancelMatch *m = arg;

        return op->type == TSM_OP_GUEST_REQUEST &&
               (m->all || (op->context == m->context && op->vdevice_id == m->vdevice_id));
}

/* Takes back the guest requests m matches that are still held in libtsm, then tells each. */
static int cancel_requests(TsmClient *c, const CancelMatch *m) {
        _cleanup_free_ void **ops = NULL;
        size_t n = 0;
        int r;

        /* A lost connection failed its calls already; from a destroy tsm_client_free() runs, no
         * call is left to take back. */
        if (!c->vc || c->free_requested)
                return 0;
        r = varlink_client_cancel_held(c->vc, cancel_match, (void *) m, &ops, &n);
        if (r < 0)
                return ltsm_error_set_local(c, r);

        /* Taken back, they are the client's alone: the callbacks below may make requests (not
         * taken back by this call), cancel again or free the client, as after a reconnect. */
        ltsm_error_clear(c);
        c->n_busy++;
        for (size_t i = 0; i < n; i++) {
                TsmOp *op = ops[i];

                if (!c->free_requested)
                        ltsm_op_fail(op, -ECANCELED);
                ltsm_op_finish(op);
        }
        if (ltsm_client_leave(c))
                return -ECANCELED;
        ltsm_error_clear(c);
        return (int) MIN(n, (size_t) INT_MAX);
}

/* tsm_device_cancel_requests(): see tsm.h. */
_public_ int tsm_device_cancel_requests(TsmClient *c, uint64_t context, uint32_t vdevice_id) {
        assert_return(c, -EINVAL);

        return cancel_requests(c, &(const CancelMatch) { .context = context, .vdevice_id = vdevice_id });
}

/* tsm_client_cancel_requests(): see tsm.h. */
_public_ int tsm_client_cancel_requests(TsmClient *c) {
        assert_return(c, -EINVAL);

        return cancel_requests(c, &(const CancelMatch) { .all = true });
}

/* tsm_client_watch_events(): see tsm.h. */
_public_ int tsm_client_watch_events(TsmClient *c, TsmEventFunc callback, void *userdata, TsmDestroyFunc destroy) {
        TsmOp *op;
        int r;

        assert_return(c, -EINVAL);
        assert_return_client(c, callback, -EINVAL);

        op = ltsm_op_new(&(TsmOp) {
                .type = TSM_OP_WATCH,
                .event_callback = callback,
                .userdata = userdata,
                .destroy = destroy,
        });
        if (!op)
                return ltsm_error_set_local(c, -ENOMEM);
        r = ltsm_client_call_async(c, "io.tsmd.Guest.WatchEvents", NULL, VARLINK_CALL_MORE, -EBADF, op);
        if (r < 0) {
                free(op);
                return r;
        }
        c->watch = op;
        return 0;
}

/* tsm_event_get_kind(): see tsm.h. */
_public_ TsmEventKind tsm_event_get_kind(const TsmEvent *e) {
        return e ? tsm_event_kind_from_string(e->kind) : _TSM_EVENT_KIND_INVALID;
}

/* tsm_event_get_kind_string(): see tsm.h. */
_public_ const char *tsm_event_get_kind_string(const TsmEvent *e) {
        return e ? e->kind : NULL;
}

/* tsm_event_get_context(): see tsm.h. */
_public_ uint64_t tsm_event_get_context(const TsmEvent *e) {
        return e ? e->context : 0;
}

/* tsm_event_get_vdevice_id(): see tsm.h. */
_public_ uint32_t tsm_event_get_vdevice_id(const TsmEvent *e) {
        return e ? e->vdevice_id : 0;
}

/* tsm_event_get_pci_address(): see tsm.h. */
_public_ const char *tsm_event_get_pci_address(const TsmEvent *e) {
        return e ? e->pci_address : NULL;
}

/* tsm_event_get_state(): see tsm.h. */
_public_ TsmTdiState tsm_event_get_state(const TsmEvent *e) {
        return e ? e->state : _TSM_TDI_STATE_INVALID;
}
