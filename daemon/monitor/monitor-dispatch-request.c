/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Guest requests: GUEST_REQUEST, with the monitor's own gate on its scope, answered from the
 * platform's callback when the device has; CANCEL_REQUEST; and those of a vDevice or context
 * that goes, failed. Bounded (MONITOR_REQUESTS_MAX). Runs in: monitor.
 */

#include <inttypes.h>

#include "backend.h"
#include "log.h"
#include "monitor-dispatch-internal.h"

MonitorRequest *dispatch_request_free(MonitorRequest *mr) {
        if (!mr)
                return NULL;
        LIST_REMOVE(mr, entry);
        mr->dispatch->n_requests--;
        return mfree(mr);
}

/* The vDevice (0: every vDevice of the context) is going: its guest requests in flight are
 * answered -ENODEV now. One the kernel runs finishes unanswered; one still waiting for its
 * device never reaches it, nor holds up the unbind of the release or the device's next guest. */
void dispatch_fail_requests_of(MonitorDispatch *d, uint32_t context, uint32_t vdevice) {
        MonitorRequest *mr, *next;

        for (mr = LIST_FIRST(&d->requests); mr; mr = next) {
                next = LIST_NEXT(mr, entry);
                if (mr->context != context || (vdevice != 0 && mr->vdevice != vdevice))
                        continue;
                /* The answer first: a late answer the cancel hands over at once (the kernel's,
                 * not yet delivered) names the worker's record of it. */
                (void) dispatch_reply_full(d, mr->cookie, -ENODEV, 0, NULL, 0, -EBADF);
                tsm_request_cancel(TAKE_PTR(mr->request));
                dispatch_request_free(mr);
        }
}

static void on_request_done(TsmRequest *req, int result, void *userdata) {
        MonitorRequest *mr = userdata;
        MonitorDispatch *d = mr->dispatch;
        const void *response = NULL;
        size_t len = 0, unconsumed = 0;
        KernelLate k;

        if (result >= 0) {
                response = tsm_request_get_response(req, &len);
                unconsumed = tsm_request_get_request_unconsumed(req);
                /* max_response was capped, and a request is at most TSM_PRIV_PAYLOAD_MAX: never
                 * happens. */
                if (len > TSM_PRIV_PAYLOAD_MAX || unconsumed > TSM_PRIV_PAYLOAD_MAX) {
                        result = -ENOBUFS;
                        response = NULL;
                        len = unconsumed = 0;
                }
        }
        /* The value: the request bytes the TSM did not consume (tsm-priv.h). Kept until the
         * worker's record of it is durable: it may end before. */
        k = (KernelLate){ .op = KERNEL_OP_REQUEST, .vdevice_id = mr->vdevice, .scope_number = mr->scope_number,
                          .result = result, .response_len = len, .request_unconsumed = unconsumed,
                          .latency_usec = now_monotonic_usec() - mr->start_usec };
        (void) dispatch_reply_acted(d, req, mr->cookie, &mr->tag, &k, (uint32_t) unconsumed, response, len);
        dispatch_request_free(mr);
}

int dispatch_priv_guest_request(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                const char **ret_reason) {
        const struct tsm_priv_guest_request *g = &m->guest_request;
        const TsmScopeDesc *desc;
        MonitorRequest *mr;
        MonitorContext *ctx;
        MonitorVDevice *v;
        TsmDeviceInfo info;
        TsmTarget t;
        uint32_t number;
        int r;

        r = dispatch_lookup_vdevice(d, g->slot, g->context, g->vdevice, &ctx, &v, ret_reason);
        if (r < 0)
                return r;
        if (!tsm_priv_check_string(g->scope, sizeof(g->scope)))
                return dispatch_violation(-EBADMSG, "scope not a NUL-terminated string", ret_reason);
        if (g->backend >= _TSM_BACKEND_TYPE_MAX)
                return dispatch_violation(-EBADMSG, "backend not a known type", ret_reason);
        if (g->__reserved != 0)
                return dispatch_violation(-EBADMSG, "reserved field not zero", ret_reason);

        /* Gone or disconnected since the worker looked: an answer, not a violation. So is a
         * device another backend serves now: the worker and the monitor follow uevents each on
         * its own, and the worker's is still on its way; it will find the vDevice gone. */
        if (v->gone)
                return dispatch_reply(d, m, -ENODEV, 0, -EBADF);
        r = tsm_platform_get_device(d->platform, v->pci_address, &info);
        if (r < 0)
                return dispatch_reply(d, m, r, 0, -EBADF);
        if (info.backend != (TsmBackendType) g->backend)
                return dispatch_reply(d, m, -ENODEV, 0, -EBADF);
        /* Its binding ended outside tsmd: the kernel would refuse it (pci_tsm_guest_req()'s
         * ENXIO), and so does the monitor, as it has it unbound. */
        if (v->unbound_outside)
                return dispatch_reply(d, m, -ENXIO, 0, -EBADF);

        /* SECURITY: the scope is looked up by name in the table of the backend serving this
         * device, in the UAPI in use; the worker knows both, so anything else is not a slip. */
        r = tsm_platform_scope_number(d->platform, &info, g->scope, &number);
        if (r == -ENOENT)
                return dispatch_violation(-EPERM, "no such scope for the device's backend", ret_reason);
        if (r == -EOPNOTSUPP)
                return dispatch_violation(-EPERM, "scope not available in the UAPI in use", ret_reason);
        if (r < 0)
                return dispatch_reply(d, m, r, 0, -EBADF);
        desc = tsm_backend_find_scope(tsm_backend_desc(info.backend), g->scope);
        if (!desc)
                return dispatch_reply(d, m, -ENOENT, 0, -EBADF);
        /* SECURITY: the worker checked the client against the policy; the monitor checks the
         * scope against it too, as far as it can without trusting the worker's word on who the
         * client is: any scope, a default one included, only where some rule grants it for the
         * device (MonitorDispatchCallbacks). */
        if (!(d->cb.scope_granted && d->cb.scope_granted(info.pci_address, info.backend, desc->name, d->userdata))) {
                log_full_ratelimited(&d->scope_refusal_log, LOG_WARNING,
                                     "Refusing a guest request in scope %s to %s: no policy rule grants it for the device.",
                                     desc->name, info.pci_address);
                return dispatch_reply_own(d, m, -EPERM);
        }
        if (g->hdr.payload_len > desc->max_request)
                return dispatch_violation(-EMSGSIZE, "request larger than the scope allows", ret_reason);

        if (d->n_requests >= MONITOR_REQUESTS_MAX) {
                log_debug("Too many guest requests in flight, refusing another.");
                return dispatch_reply(d, m, -EBUSY, 0, -EBADF);
        }
        mr = new0(MonitorRequest, 1);
        if (!mr)
                return dispatch_reply_own(d, m, -ENOMEM);
        *mr = (MonitorRequest){ .dispatch = d, .cookie = g->hdr.cookie, .slot = g->slot, .context = ctx->id,
                                .vdevice = v->id, .scope_number = number, .start_usec = now_monotonic_usec(),
                                .tag = dispatch_late_tag(d, TSM_PRIV_LATE_GUEST_REQUEST, g->hdr.cookie, ctx,
                                                         v->id, info.pci_address) };
        /* For its kept answer (dispatch_reply_acted()), and a kernel call's late one. */
        mr->tag.backend = info.backend;
        memcpy(mr->tag.scope, g->scope, sizeof(mr->tag.scope));
        LIST_INSERT_HEAD(&d->requests, mr, entry);
        d->n_requests++;

        t = dispatch_target_of(ctx, v);
        /* The response buffer: the worker's limit, capped by what crosses the channel here and
         * by the scope's own limit in the platform. */
        r = tsm_platform_request(d->platform, &t, g->scope, payload ?: (const void *) "", g->hdr.payload_len,
                                 MIN((size_t) g->max_response, (size_t) TSM_PRIV_PAYLOAD_MAX),
                                 on_request_done, mr, &mr->request);
        if (r < 0) {
                dispatch_request_free(mr);
                return dispatch_reply_not_started(d, m, r);
        }
        if (!info.emulated)
                tsm_request_set_late_tag(mr->request, &mr->tag, sizeof(mr->tag));
        log_debug("Guest request (scope %s, %" PRIu32 " bytes) to %s for context %" PRIu32 ".", desc->name,
                  g->hdr.payload_len, v->pci_address, ctx->id);
        return 0;
}

/* The worker no longer wants a guest request or bind it sent (tsm-priv.h): dropped and answered
 * -ECANCELED if the device (or the kernel) has not started it, else left to run to its end. */
int dispatch_priv_cancel_request(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                 const char **ret_reason) {
        const struct tsm_priv_cancel_request *q = &m->cancel_request;
        MonitorRequest *mr;
        int r;

        if (q->request_cookie == 0)
                return dispatch_violation(-EBADMSG, "cancel of cookie 0", ret_reason);
        if (q->__reserved[0] != 0 || q->__reserved[1] != 0)
                return dispatch_violation(-EBADMSG, "reserved field not zero", ret_reason);
        LIST_FOREACH(mr, &d->requests, entry)
                if (mr->cookie == q->request_cookie && mr->slot == q->slot)
                        break;
        if (!mr) {
                r = dispatch_cancel_bind(d, q->slot, q->request_cookie);
                return MIN(r, 0);
        }
        /* Answered already (the messages crossed), or started: its answer is its own. */
        if (!tsm_request_cancel_unstarted(mr->request))
                return 0;
        mr->request = NULL;
        r = dispatch_reply_full(d, mr->cookie, -ECANCELED, TSM_PRIV_REPLY_MONITOR_OWN, NULL, 0, -EBADF);
        dispatch_request_free(mr);
        return r;
}

size_t monitor_dispatch_n_requests(const MonitorDispatch *d) {
        return d->n_requests;
}
