/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Binding: BIND_VDEVICE and UNBIND_VDEVICE, answered once the TSM has (on the device's lane), and
 * followed to their end after the worker that asked is gone; SETTLE_VDEVICE, which waits for
 * them; GET_VDEVICE_STATE; and a bind cancelled before anything started it. Runs in: monitor.
 */

#include <inttypes.h>

#include "log.h"
#include "monitor-dispatch-internal.h"

MonitorChange *dispatch_change_free(MonitorChange *mc) {
        if (!mc)
                return NULL;
        LIST_REMOVE(mc, entry);
        return mfree(mc);
}

/* The vDevice (NULL: detached) has no bind or unbind on its way any more: answer who waits. */
static void answer_settled(MonitorDispatch *d, uint32_t context, uint32_t vdevice, uint64_t serial,
                           const MonitorVDevice *v) {
        MonitorChange *mc, *next;

        for (mc = LIST_FIRST(&d->changes); mc; mc = next) {
                next = LIST_NEXT(mc, entry);
                if (!mc->settle || mc->context != context || mc->vdevice != vdevice || mc->serial != serial)
                        continue;
                if (mc->cookie != 0 && d->channel >= 0)
                        (void) dispatch_reply_full(d, mc->cookie, v ? 0 : -ENODEV, v && v->bound, NULL, 0, -EBADF);
                dispatch_change_free(mc);
        }
}

static void on_change_done(TsmRequest *req, int result, void *userdata) {
        MonitorChange *mc = userdata;
        MonitorDispatch *d = mc->dispatch;
        MonitorContext *ctx = monitor_contexts_get(d->contexts, mc->context);
        MonitorVDevice *v = ctx ? monitor_context_find_vdevice(ctx, mc->vdevice) : NULL;
        const char *what = mc->bind ? "bind" : "unbind";

        /* Detached meanwhile (its release queued an unbind behind this), or another
         * attachment under the same id by now: nothing here to update. */
        if (v && v->serial != mc->serial)
                v = NULL;
        if (v) {
                assert(v->n_changes > 0);
                v->n_changes--;
                if (result >= 0 && !v->gone)
                        v->bound = mc->bind;
        }
        if (result < 0)
                log_debug_errno(result, "Failed to %s %s (vDevice %" PRIu32 " of context %" PRIu32 "): %m", what,
                                tsm_request_get_pci_address(req), mc->vdevice, mc->context);
        else
                log_info("%s %s (vDevice %" PRIu32 " of context %" PRIu32 ").", mc->bind ? "Bound" : "Unbound",
                         tsm_request_get_pci_address(req), mc->vdevice, mc->context);

        if (mc->cookie != 0 && d->channel >= 0) {
                /* Kept until the worker's record of it is durable: it may end before. */
                const KernelLate k = { .op = mc->bind ? KERNEL_OP_BIND : KERNEL_OP_UNBIND,
                                       .lane = tsm_request_get_pci_address(req), .vdevice_id = mc->vdevice,
                                       .result = result, .latency_usec = now_monotonic_usec() - mc->start_usec };

                (void) dispatch_reply_acted(d, req, mc->cookie, &mc->tag, &k, 0, NULL, 0);
        } else if (mc->cookie == 0)
                /* The worker that asked ended meanwhile, and its record of the call (if it wrote
                 * one: a crash does not) says it failed: the audit log hears how it ended. */
                dispatch_late_orphan(d, req, mc->bind ? KERNEL_OP_BIND : KERNEL_OP_UNBIND,
                                     tsm_request_get_pci_address(req), mc->vdevice, result, mc->start_usec, &mc->tag);
        if (!v || v->n_changes == 0)
                answer_settled(d, mc->context, mc->vdevice, mc->serial, v);
        dispatch_change_free(mc);
}

/* Answered from the platform's callback: a kernel bind is an SPDM exchange, and runs on the
 * device's lane while the monitor serves everyone else. */
static int set_bound(MonitorDispatch *d, const PrivMessage *m, bool bind, const char **ret_reason) {
        const struct tsm_priv_vdevice *q = &m->vdevice;
        TsmDeviceInfo info;
        MonitorChange *mc;
        MonitorContext *ctx;
        MonitorVDevice *v;
        TsmTarget t;
        int r;

        r = dispatch_lookup_vdevice_message(d, q, &ctx, &v, ret_reason);
        if (r < 0)
                return r;

        if (v->gone)
                return dispatch_reply(d, m, -ENODEV, 0, -EBADF);
        r = tsm_platform_get_device(d->platform, v->pci_address, &info);
        /* A device gone since the worker looked is answered, as the platform would. Unbinding
         * gives a device up, which must stay possible whatever the policy says now. */
        if (bind && r < 0)
                return dispatch_reply(d, m, r, 0, -EBADF);
        if (bind && !dispatch_device_listed(d, &info, "bind"))
                return dispatch_reply_own(d, m, -EPERM);
        /* SECURITY: bounded, as guest requests are; a flood of binds and unbinds would hold
         * memory (and fds) while the device takes its time, past the worker's end. Over the
         * bound no correct worker goes, but a refusal is enough: it holds nothing. */
        if (v->n_changes >= MONITOR_CHANGES_PER_VDEVICE_MAX) {
                log_debug("Too many binds and unbinds of vDevice %" PRIu32 " of context %" PRIu32
                          " on their way, refusing another.", v->id, ctx->id);
                return dispatch_reply(d, m, -EBUSY, 0, -EBADF);
        }

        mc = new0(MonitorChange, 1);
        if (!mc)
                return dispatch_reply_own(d, m, -ENOMEM);
        *mc = (MonitorChange){ .dispatch = d, .cookie = q->hdr.cookie, .bind = bind, .context = ctx->id,
                               .vdevice = v->id, .serial = v->serial, .start_usec = now_monotonic_usec(),
                               .tag = dispatch_late_tag(d, bind ? TSM_PRIV_LATE_BIND : TSM_PRIV_LATE_UNBIND,
                                                        q->hdr.cookie, ctx, v->id, v->pci_address) };
        /* For a late answer's record: the device may be gone by then. */
        if (r >= 0)
                mc->tag.backend = info.backend;
        LIST_INSERT_HEAD(&d->changes, mc, entry);

        t = dispatch_target_of(ctx, v);
        r = bind ? tsm_platform_bind(d->platform, &t, on_change_done, mc, &mc->request)
                 : tsm_platform_unbind(d->platform, &t, on_change_done, mc, &mc->request);
        if (r < 0) {
                dispatch_change_free(mc);
                log_debug_errno(r, "Failed to %s %s (vDevice %" PRIu32 " of context %" PRIu32 "): %m",
                                bind ? "bind" : "unbind", v->pci_address, v->id, ctx->id);
                return dispatch_reply_not_started(d, m, r);
        }
        tsm_request_set_late_tag(mc->request, &mc->tag, sizeof(mc->tag));
        v->n_changes++;
        v->bound_next = bind;
        v->unbound_outside = false; /* what the TDI is now is the TSM's answer to this */
        return 0;
}

int dispatch_priv_bind_vdevice(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                               const char **ret_reason) {
        return set_bound(d, m, true, ret_reason);
}

int dispatch_priv_unbind_vdevice(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                 const char **ret_reason) {
        return set_bound(d, m, false, ret_reason);
}

/* A new worker restoring a vDevice whose bind or unbind its predecessor did not see answered
 * learns where it ends: answered when none is on its way any more. */
int dispatch_priv_settle_vdevice(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                 const char **ret_reason) {
        const struct tsm_priv_vdevice *q = &m->vdevice;
        MonitorChange *mc;
        MonitorContext *ctx;
        MonitorVDevice *v;
        int r;

        r = dispatch_lookup_vdevice_message(d, q, &ctx, &v, ret_reason);
        if (r < 0)
                return r;
        if (v->n_changes == 0)
                return dispatch_reply(d, m, 0, v->bound, -EBADF);
        /* SECURITY: one waits per vDevice; more would only pile up (see set_bound()). */
        LIST_FOREACH(mc, &d->changes, entry)
                if (mc->settle && mc->context == ctx->id && mc->vdevice == v->id && mc->serial == v->serial) {
                        log_debug("A SETTLE_VDEVICE of vDevice %" PRIu32 " of context %" PRIu32
                                  " waits already, refusing another.", v->id, ctx->id);
                        return dispatch_reply(d, m, -EBUSY, 0, -EBADF);
                }

        /* Plain, not dispatch_reply_own(): no TSM answers a settle, so its -ENOMEM is the monitor's
         * anyway, and the worker fails every settle alike. */
        mc = new0(MonitorChange, 1);
        if (!mc)
                return dispatch_reply(d, m, -ENOMEM, 0, -EBADF);
        *mc = (MonitorChange){ .dispatch = d, .cookie = q->hdr.cookie, .settle = true, .context = ctx->id,
                               .vdevice = v->id, .serial = v->serial };
        LIST_INSERT_HEAD(&d->changes, mc, entry);
        return 0;
}

int dispatch_priv_get_vdevice_state(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                    const char **ret_reason) {
        const struct tsm_priv_vdevice *q = &m->vdevice;
        MonitorContext *ctx;
        MonitorVDevice *v;
        TsmTarget t;
        int r, state = 0;

        r = dispatch_lookup_vdevice_message(d, q, &ctx, &v, ret_reason);
        if (r < 0)
                return r;

        if (v->gone)
                return dispatch_reply(d, m, -ENODEV, 0, -EBADF);

        t = dispatch_target_of(ctx, v);
        r = tsm_platform_get_state(d->platform, &t, &state);
        return dispatch_reply(d, m, r < 0 ? r : 0, r < 0 ? 0 : (uint32_t) state, -EBADF);
}

/* A bind of slot's with cookie that nothing started yet (waiting for the emulated device's
 * mailbox, or queued on its kernel lane): dropped and answered -ECANCELED, the vDevice as the
 * changes before it leave it. Returns 1 if it was, 0 if there is none such. */
int dispatch_cancel_bind(MonitorDispatch *d, uint32_t slot, uint32_t cookie) {
        MonitorContext *ctx;
        MonitorChange *mc, *o;
        MonitorVDevice *v;
        int r;

        LIST_FOREACH(mc, &d->changes, entry)
                if (mc->cookie == cookie && mc->bind && !mc->settle)
                        break;
        ctx = mc ? monitor_contexts_get(d->contexts, mc->context) : NULL;
        if (!ctx || ctx->slot != slot || !tsm_request_cancel_unstarted(mc->request))
                return 0;
        mc->request = NULL;
        v = monitor_context_find_vdevice(ctx, mc->vdevice);
        if (v && v->serial == mc->serial) {
                assert(v->n_changes > 0);
                v->n_changes--;
                /* What the newest change still on its way will make it (the list's newest first). */
                LIST_FOREACH(o, &d->changes, entry)
                        if (o != mc && !o->settle && o->context == mc->context && o->vdevice == mc->vdevice &&
                            o->serial == mc->serial) {
                                v->bound_next = o->bind;
                                break;
                        }
        } else
                v = NULL;
        r = dispatch_reply_full(d, mc->cookie, -ECANCELED, TSM_PRIV_REPLY_MONITOR_OWN, NULL, 0, -EBADF);
        if (!v || v->n_changes == 0)
                answer_settled(d, mc->context, mc->vdevice, mc->serial, v);
        dispatch_change_free(mc);
        return r < 0 ? r : 1;
}
