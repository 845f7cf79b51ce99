/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The monitor's request table (monitor-dispatch.h) and what every request goes through: the
 * receive loop, the checks of a message's shape and of whether it may come now, before its
 * handler checks what it means, and the lookups of the contexts and vDevices it names; a
 * worker's start (HELLO and what follows it) and its stop. The handlers are in a file each
 * concept: the worker's own messages (monitor-dispatch-worker.c), contexts
 * (monitor-dispatch-context.c), vDevices (monitor-dispatch-attach.c), binding
 * (monitor-dispatch-bind.c), devices and their connections (monitor-dispatch-device.c), guest
 * requests (monitor-dispatch-request.c), the worker's word on the kernel's late answers
 * (monitor-dispatch-late.c); what goes back to the worker is monitor-dispatch-reply.c's.
 * Runs in: monitor.
 */

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "fd-closer.h"
#include "fdstore.h"
#include "log.h"
#include "monitor-dispatch-internal.h"

/* When a request may come, as OpenSSH's monitor has it. */
typedef enum MonitorPermit {
        MON_PERMIT = 1 << 0, /* the worker may send it */
        MON_ONCE = 1 << 1,   /* at most once per worker */
        MON_ANSWERED = 1 << 2, /* answered by a REPLY with its cookie, which is never 0 */
} MonitorPermit;

_Static_assert(_TSM_PRIV_TYPE_MAX <= 32, "seen_once has a bit per type");
_Static_assert(MONITOR_WORKER_FDS_CLOSING_MAX >= TSM_PRIV_BATCH_MAX,
               "with nothing waiting to be closed, every datagram of a batch may carry its fd");

/* A broken rule: returns r with *ret_reason set, as a handler does. */
int dispatch_violation(int r, const char *reason, const char **ret_reason) {
        *ret_reason = reason;
        return r;
}

/* Receives the next batch from the worker, taking its fds (take_fds) only as far as
 * MONITOR_WORKER_FDS_CLOSING_MAX allows: SECURITY, each may be a client's of a FUSE file system
 * it serves, whose close, on the closer's thread, waits on it, holding every fd queued after it
 * open. Past that, one datagram at a time, whose fds are not taken (fds_lost): closed at once,
 * never left to the kernel to drop on this thread (tsm_priv_inbox_receive()); one whose close
 * may wait is no correct worker's, which ends the worker (process_message()). */
int dispatch_inbox_receive(MonitorDispatch *d, bool take_fds) {
        size_t waiting;

        /* What the last batch left goes to be closed first: it counts. */
        tsm_priv_inbox_clear(d->inbox);
        waiting = take_fds ? MIN(fd_closer_n_waiting(FD_CLOSER_PEER_NONE), (size_t) MONITOR_WORKER_FDS_CLOSING_MAX)
                           : MONITOR_WORKER_FDS_CLOSING_MAX;
        tsm_priv_inbox_limit_fds(d->inbox, MONITOR_WORKER_FDS_CLOSING_MAX - waiting);
        d->fds_limited = MONITOR_WORKER_FDS_CLOSING_MAX - waiting < TSM_PRIV_BATCH_MAX;
        return tsm_priv_inbox_receive(d->inbox, d->channel);
}

/* ---- lookups: the worker names only what the monitor gave out, on behalf of its holder ---- */

int dispatch_lookup_context(MonitorDispatch *d, uint32_t slot, uint32_t id, MonitorContext **ret,
                            const char **ret_reason) {
        MonitorContext *ctx = monitor_contexts_get(d->contexts, id);

        /* SECURITY: contexts are named by the ids the monitor handed out, each on behalf of the
         * slot holding it. Slot 0 names the orphans, which the worker reattaches or lets go. */
        if (!ctx)
                return dispatch_violation(-EPERM, "unknown context", ret_reason);
        if (ctx->slot != slot)
                return dispatch_violation(-EPERM, "context held by another slot", ret_reason);
        *ret = ctx;
        return 0;
}

int dispatch_lookup_vdevice(MonitorDispatch *d, uint32_t slot, uint32_t context, uint32_t id,
                            MonitorContext **ret_ctx, MonitorVDevice **ret_vdev, const char **ret_reason) {
        MonitorContext *ctx;
        MonitorVDevice *v;
        int r;

        r = dispatch_lookup_context(d, slot, context, &ctx, ret_reason);
        if (r < 0)
                return r;
        v = monitor_context_find_vdevice(ctx, id);
        if (!v)
                return dispatch_violation(-EPERM, "vDevice not attached to the context", ret_reason);
        *ret_ctx = ctx;
        *ret_vdev = v;
        return 0;
}

/* The vDevice a DETACH/BIND/UNBIND/GET_VDEVICE_STATE message names, with its shape checked. */
int dispatch_lookup_vdevice_message(MonitorDispatch *d, const struct tsm_priv_vdevice *q,
                                    MonitorContext **ret_ctx, MonitorVDevice **ret_vdev, const char **ret_reason) {
        if (q->__reserved != 0)
                return dispatch_violation(-EBADMSG, "reserved field not zero", ret_reason);
        return dispatch_lookup_vdevice(d, q->slot, q->context, q->vdevice, ret_ctx, ret_vdev, ret_reason);
}

TsmTarget dispatch_target_of(const MonitorContext *ctx, const MonitorVDevice *v) {
        return (TsmTarget){ .pci_address = v->pci_address, .iommufd = ctx->fd, .vdevice_id = v->id };
}

/* ---- the table --------------------------------------------------------------------------- */

/* HELLO, LISTEN_SOCKET, RESTORED_CONTEXT, RESTORED_VDEVICE, LAST_GOOD, LATE and REPLY go the other
 * way: no entry, never permitted. */
static const struct {
        PrivHandler handler;
        unsigned flags; /* MonitorPermit */
} priv_table[_TSM_PRIV_TYPE_MAX] = {
        [TSM_PRIV_READY] = { dispatch_priv_ready, MON_PERMIT | MON_ONCE },
        [TSM_PRIV_STATUS] = { dispatch_priv_status, MON_PERMIT },
        [TSM_PRIV_OPEN_CONTEXT] = { dispatch_priv_open_context, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_ADOPT_CONTEXT] = { dispatch_priv_adopt_context, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_RECLAIM_CONTEXT] = { dispatch_priv_reclaim_context, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_CLOSE_CONTEXT] = { dispatch_priv_close_context, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_ATTACH_VDEVICE] = { dispatch_priv_attach_vdevice, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_DETACH_VDEVICE] = { dispatch_priv_detach_vdevice, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_BIND_VDEVICE] = { dispatch_priv_bind_vdevice, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_UNBIND_VDEVICE] = { dispatch_priv_unbind_vdevice, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_GET_VDEVICE_STATE] = { dispatch_priv_get_vdevice_state, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_GET_DEVICE_STATE] = { dispatch_priv_get_device_state, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_GUEST_REQUEST] = { dispatch_priv_guest_request, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_CONNECT_DEVICE] = { dispatch_priv_connect_device, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_DISCONNECT_DEVICE] = { dispatch_priv_disconnect_device, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_RELOAD] = { dispatch_priv_reload, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_SETTLE_VDEVICE] = { dispatch_priv_settle_vdevice, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_LATE_ACK] = { dispatch_priv_late_ack, MON_PERMIT },
        [TSM_PRIV_RESTORED_PREVIOUS] = { dispatch_priv_restored_previous, MON_PERMIT },
        [TSM_PRIV_CANCEL_REQUEST] = { dispatch_priv_cancel_request, MON_PERMIT },
        [TSM_PRIV_RECORDED] = { dispatch_priv_recorded, MON_PERMIT },
};

int monitor_dispatch_new(struct event_base *base, TsmPlatform *platform, MonitorContexts *contexts,
                         const MonitorDispatchCallbacks *cb, void *userdata, MonitorDispatch **ret) {
        MonitorDispatch *d;

        assert(base);
        assert(platform);
        assert(contexts);
        assert(ret);

        d = new0(MonitorDispatch, 1);
        if (!d)
                return -ENOMEM;
        d->base = base;
        d->platform = platform;
        d->contexts = contexts;
        d->started_usec = now_monotonic_usec(); /* made as the monitor starts */
        d->scope_refusal_log = RATELIMIT(MONITOR_LOG_RATELIMIT_INTERVAL_USEC, MONITOR_LOG_RATELIMIT_BURST);
        d->device_refusal_log = RATELIMIT(MONITOR_LOG_RATELIMIT_INTERVAL_USEC, MONITOR_LOG_RATELIMIT_BURST);
        d->contexts_full_log = RATELIMIT(MONITOR_LOG_RATELIMIT_INTERVAL_USEC, MONITOR_LOG_RATELIMIT_BURST);
        d->fd_lost_log = RATELIMIT(MONITOR_LOG_RATELIMIT_INTERVAL_USEC, MONITOR_LOG_RATELIMIT_BURST);
        if (cb)
                d->cb = *cb;
        d->userdata = userdata;
        d->channel = d->last_good_fd = -EBADF;
        LIST_INIT(&d->requests);
        LIST_INIT(&d->changes);
        LIST_INIT(&d->connects);
        TAILQ_INIT(&d->answers);
        d->answers_full_log = RATELIMIT(MONITOR_LOG_RATELIMIT_INTERVAL_USEC, MONITOR_LOG_RATELIMIT_BURST);
        if (idle_flush_new(base, dispatch_on_flush, d, &d->flush) < 0 ||
            tsm_priv_outbox_new(dispatch_on_reply_failed, &d->outbox) < 0 || tsm_priv_inbox_new(&d->inbox) < 0) {
                monitor_dispatch_free(d);
                return -ENOMEM;
        }
        d->late_lost_log = RATELIMIT(MONITOR_LOG_RATELIMIT_INTERVAL_USEC, MONITOR_LOG_RATELIMIT_BURST);
        tsm_platform_set_device_gone_callback(platform, dispatch_on_device_gone, d);
        tsm_platform_set_device_unbound_callback(platform, dispatch_on_device_unbound, d);
        tsm_platform_set_late_callback(platform, dispatch_on_platform_late, d);
        *ret = d;
        return 0;
}

MonitorDispatch *monitor_dispatch_free(MonitorDispatch *d) {
        MonitorConnect *mcon;
        MonitorChange *mc;

        if (!d)
                return NULL;
        monitor_dispatch_stop(d);
        /* The monitor is exiting: its contexts, and with them the bindings, end with it. */
        while ((mc = LIST_FIRST(&d->changes))) {
                tsm_request_cancel(mc->request);
                dispatch_change_free(mc);
        }
        /* A write the kernel runs finishes on its lane, unanswered (kernel-lanes.h). */
        while ((mcon = LIST_FIRST(&d->connects))) {
                tsm_request_cancel(mcon->request);
                dispatch_connect_free(mcon);
        }
        tsm_platform_set_device_gone_callback(d->platform, NULL, NULL);
        tsm_platform_set_device_unbound_callback(d->platform, NULL, NULL);
        tsm_platform_set_late_callback(d->platform, NULL, NULL);
        free(d->late_kept);
        idle_flush_free(d->flush);
        tsm_priv_outbox_free(d->outbox);
        tsm_priv_inbox_free(d->inbox);
        return mfree(d);
}

void monitor_dispatch_set_previous_worker(MonitorDispatch *d, TsmPrivWorkerEnd end, uint32_t status) {
        d->previous_end = end;
        d->previous_status = status;
}

void monitor_dispatch_set_last_good(MonitorDispatch *d, int fd, bool stale, const char *reason) {
        d->last_good_fd = fd;
        d->last_good_stale = fd >= 0 && stale;
        d->last_good_reason_len = d->last_good_stale ? tsm_priv_reason_make(reason, d->last_good_reason) : 0;
}

int monitor_dispatch_set_start_settings(MonitorDispatch *d, const char *text) {
        if (text && strlen(text) + 1 > TSM_PRIV_PAYLOAD_MAX)
                return -E2BIG;
        d->start_settings = text;
        return 0;
}

int monitor_dispatch_start(MonitorDispatch *d, int channel, const MonitorListenSocket *sockets,
                           size_t n_sockets) {
        struct timeval send_timeout = { .tv_sec = MONITOR_SEND_TIMEOUT_USEC / 1000000,
                                        .tv_usec = MONITOR_SEND_TIMEOUT_USEC % 1000000 };
        struct tsm_priv_hello hello;
        MonitorContext *ctx;
        TsmUapiVersion v;
        int r;

        assert(d);
        assert(channel >= 0);
        assert(sockets || n_sockets == 0);

        if (d->channel >= 0)
                return -EBUSY;
        if (n_sockets > UINT32_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n_sockets; i++)
                if (sockets[i].fd < 0 ||
                    (sockets[i].kind != TSM_PRIV_SOCKET_ALL && sockets[i].kind != TSM_PRIV_SOCKET_GUEST))
                        return -EINVAL;

        /* No send waits on this worker longer than this (dispatch_reply_failed()). */
        if (setsockopt(channel, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout)) < 0)
                return negative_errno();
        d->stalled = false;

        /* Whatever an earlier worker held is nobody's now: the new one starts from orphans. */
        monitor_contexts_orphan_all(d->contexts);

        tsm_priv_init(&hello, TSM_PRIV_HELLO, 0, d->start_settings ? (uint32_t) strlen(d->start_settings) + 1 : 0);
        hello.version = TSM_PRIV_VERSION;
        r = tsm_platform_get_uapi(d->platform, &v);
        hello.uapi = r < 0 ? r : (int32_t) v;
        hello.emulated = tsm_platform_is_emulated(d->platform);
        hello.fdstore = fdstore_available();
        hello.n_sockets = (uint32_t) n_sockets;
        hello.n_restored = (uint32_t) monitor_contexts_size(d->contexts);
        hello.previous_end = d->previous_end;
        hello.previous_status = d->previous_status;
        hello.max_contexts = (uint32_t) MIN(monitor_contexts_get_max(d->contexts), (size_t) UINT32_MAX);
        hello.last_good = d->last_good_fd >= 0;
        hello.started_usec = d->started_usec;
        r = tsm_priv_send(channel, &hello, d->start_settings, hello.hdr.payload_len, -EBADF);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n_sockets; i++) {
                struct tsm_priv_listen_socket ls;

                tsm_priv_init(&ls, TSM_PRIV_LISTEN_SOCKET, 0, 0);
                ls.kind = sockets[i].kind;
                r = tsm_priv_send(channel, &ls, NULL, 0, sockets[i].fd);
                if (r < 0)
                        return r;
        }

        if (d->last_good_fd >= 0) {
                struct tsm_priv_last_good lg;

                tsm_priv_init(&lg, TSM_PRIV_LAST_GOOD, 0, (uint32_t) d->last_good_reason_len);
                lg.stale = d->last_good_stale;
                r = tsm_priv_send(channel, &lg, d->last_good_reason_len > 0 ? d->last_good_reason : NULL,
                                  d->last_good_reason_len, d->last_good_fd);
                if (r < 0)
                        return r;
        }

        MONITOR_CONTEXTS_FOREACH(ctx, d->contexts) {
                struct tsm_priv_restored_context rc;

                if (ctx->n_vdevices > UINT32_MAX)
                        return -E2BIG;
                tsm_priv_init(&rc, TSM_PRIV_RESTORED_CONTEXT, 0, 0);
                rc.context = ctx->id;
                rc.uid = (uint32_t) ctx->uid;
                memcpy(rc.reclaim_id, ctx->reclaim_id, sizeof(ctx->reclaim_id));
                rc.n_vdevices = (uint32_t) ctx->n_vdevices;
                rc.partial = ctx->partial;
                memcpy(rc.previous_reclaim_id, ctx->previous_reclaim_id, sizeof(ctx->previous_reclaim_id));
                r = tsm_priv_send(channel, &rc, NULL, 0, -EBADF);
                if (r < 0)
                        return r;

                for (size_t i = 0; i < ctx->n_vdevices; i++) {
                        const MonitorVDevice *vd = &ctx->vdevices[i];
                        struct tsm_priv_restored_vdevice rv;

                        tsm_priv_init(&rv, TSM_PRIV_RESTORED_VDEVICE, 0, 0);
                        rv.context = ctx->id;
                        rv.vdevice = vd->id;
                        rv.state = (vd->bound ? TSM_PRIV_VDEVICE_BOUND : 0) |
                                   (vd->n_changes > 0 ? TSM_PRIV_VDEVICE_CHANGING : 0) |
                                   (vd->gone ? TSM_PRIV_VDEVICE_GONE : 0);
                        assert(strlen(vd->pci_address) < sizeof(rv.pci_address));
                        strcpy(rv.pci_address, vd->pci_address);
                        r = tsm_priv_send(channel, &rv, NULL, 0, -EBADF);
                        if (r < 0)
                                return r;
                }
        }

        d->channel = channel;
        d->seen_once = 0;
        d->reload_loaded = false;
        d->generation++;
        d->compromised = false;
        /* What the kernel answered late meanwhile, and what the worker before did not say it
         * recorded: no cookie of this worker's. */
        for (size_t i = 0; i < d->n_late_kept; i++) {
                d->late_kept[i].msg.request_cookie = 0;
                dispatch_late_send(d, &d->late_kept[i]);
        }
        if (d->late_lost.msg.id != 0)
                dispatch_late_send(d, &d->late_lost);
        dispatch_late_lost_flush(d);
        log_debug("Worker started with %zu sockets and %zu contexts to reclaim.", n_sockets,
                  monitor_contexts_size(d->contexts));
        return 0;
}

/* Whether the worker shut its end of the channel (closed it, or exited): no more comes. */
static bool channel_hung_up(int channel) {
        struct pollfd p = { .fd = channel, .events = POLLRDHUP };

        return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP));
}

/* One message from the worker (or the error of its datagram): its shape, whether it may come
 * now, what it means. */
static int process_message(MonitorDispatch *d, TsmPrivReceived *dg, const char **ret_reason) {
        /* SECURITY: may be a client's, of a file system it serves, whose close waits on it. */
        _cleanup_close_peer_ int fd = -EBADF;
        const TsmPrivTypeDesc *desc;
        const char *reason = NULL;
        const void *payload = NULL;
        struct tsm_priv_hdr h = {};
        size_t n_fds = dg->n_fds;
        ssize_t n = dg->len;
        PrivMessage m;
        int r;

        if (n >= 0 && n_fds > 0) {
                fd = TAKE_FD(dg->fds[0]); /* closed on every path, unless a handler takes it */
                dg->n_fds = 0;
        }
        /* One came, at least, and was not taken: the shape is checked as if it had been (a type
         * that carries none is the worker's fault all the same), the handler answers the rest. */
        if (n >= 0 && dg->fds_lost)
                n_fds = 1;
        /* SECURITY: on SOCK_SEQPACKET a read of no bytes is end of file, or a record of no bytes,
         * which no worker sends: a worker that sent one and stays is no worker of ours. Only end
         * of file leaves the worker's side shut. (With an fd it is a record: too short, below.) */
        d->violation_type = 0;
        if (n == 0 && n_fds == 0)
                return channel_hung_up(d->channel) ? -EPIPE
                                                   : dispatch_violation(-EBADMSG, "empty datagram", ret_reason);
        if (n == -ECONNRESET)
                return -EPIPE;
        if (n == -EMSGSIZE)
                return dispatch_violation(-EMSGSIZE, "datagram longer than any message", ret_reason);
        if (n == -EPROTO)
                return dispatch_violation(-EPROTO, "more file descriptors than any message carries", ret_reason);
        if (n < 0)
                return (int) n;

        if ((size_t) n >= sizeof(h))
                memcpy(&h, dg->buf, sizeof(h));
        desc = tsm_priv_type_desc(h.type);
        if (desc)
                d->violation_type = h.type;
        /* SECURITY: a correct worker passes only character devices and memfds (ADOPT_CONTEXT);
         * each fd of another kind that comes while the monitor takes none would wait on the
         * closer's thread past MONITOR_WORKER_FDS_CLOSING_MAX. */
        if (dg->fds_refused_may_wait)
                return dispatch_violation(-EBADF, "file descriptor whose close may wait on a file system", ret_reason);

        /* The shape first, with the rules both ends share... */
        r = tsm_priv_check(dg->buf, (size_t) n, n_fds, TSM_PRIV_FROM_WORKER, &m,
                           desc && desc->size <= sizeof(m) ? desc->size : sizeof(m), &payload, &reason);
        if (r < 0)
                return dispatch_violation(r, reason, ret_reason);

        /* ... then whether it may come now ... */
        if (!priv_table[h.type].handler || !(priv_table[h.type].flags & MON_PERMIT))
                return dispatch_violation(-EPROTO, "message type not permitted", ret_reason);
        if ((priv_table[h.type].flags & MON_ONCE) && (d->seen_once & (UINT32_C(1) << h.type)))
                return dispatch_violation(-EPROTO, "permitted once per worker, sent again", ret_reason);
        d->seen_once |= UINT32_C(1) << h.type;
        /* SECURITY: cookie 0 is what the monitor marks a call whose worker ended with, and makes a
         * late answer of when the kernel is done: a worker may not have it made for calls it
         * makes (it would fill the late answers kept with its own). Nor may it name a reply to
         * what is not answered. */
        if ((priv_table[h.type].flags & MON_ANSWERED) && h.cookie == 0)
                return dispatch_violation(-EPROTO, "cookie 0 on a message that is answered", ret_reason);
        if (!(priv_table[h.type].flags & MON_ANSWERED) && h.cookie != 0)
                return dispatch_violation(-EPROTO, "cookie on a message that is not answered", ret_reason);

        /* ... then what it means, against the monitor's own state. */
        r = priv_table[h.type].handler(d, &m, payload, &fd, &reason);
        if (r < 0)
                return reason ? dispatch_violation(r, reason, ret_reason) : r;
        return 0;
}

int monitor_dispatch_process(MonitorDispatch *d, const char **ret_reason) {
        unsigned handled = 0;
        int k;

        assert(d);
        assert(ret_reason);

        *ret_reason = NULL;
        if (d->channel < 0)
                return -ENOTCONN;
        /* Not another message from a worker that does not take its replies: it is being killed. */
        if (d->stalled)
                return -EPIPE;

        for (;;) {
                size_t i;
                int r;

                if (d->inbox_next == d->inbox_n) {
                        /* Slots to spare in the last receive: the socket was empty. */
                        bool drained = d->inbox_n > 0 && !tsm_priv_inbox_more(d->inbox);

                        d->inbox_n = d->inbox_next = 0;
                        if (drained || handled >= MONITOR_MESSAGES_PER_WAKEUP)
                                break;
                        k = dispatch_inbox_receive(d, true);
                        if (k == -EAGAIN)
                                break;
                        if (k == -ECONNRESET)
                                return -EPIPE;
                        if (k < 0)
                                return k;
                        d->inbox_n = (size_t) k;
                }
                if (handled >= MONITOR_MESSAGES_PER_WAKEUP)
                        break; /* the rest of what was received: the caller comes back */

                i = d->inbox_next++;
                handled++;
                r = process_message(d, tsm_priv_inbox_get(d->inbox, i), ret_reason);
                /* A reply could not be sent: the worker is being killed, nothing more of it
                 * starts (its LATE_ACKs among the rest count: monitor_dispatch_stop()). */
                if (r >= 0 && d->stalled)
                        return -EPIPE;
                if (r < 0) {
                        d->compromised = *ret_reason != NULL;
                        /* A worker that is gone (not a violation: it stalled, hung up) still
                         * acknowledged what it acknowledged after this: the next would record
                         * again what this one did. */
                        if (!d->compromised)
                                (void) dispatch_late_take_acks_in(d, i + 1, d->inbox_n);
                        tsm_priv_inbox_clear(d->inbox);
                        d->inbox_n = d->inbox_next = 0;
                        return r;
                }
        }

        /* The answers to this round leave together; those of guest requests come later. */
        tsm_priv_outbox_flush(d->outbox, d->channel);
        return d->stalled ? -EPIPE : d->inbox_next < d->inbox_n;
}

const char *monitor_dispatch_get_violation_type(const MonitorDispatch *d) {
        return tsm_priv_type_to_string(d->violation_type) ?: "unknown";
}

void monitor_dispatch_stop(MonitorDispatch *d) {
        MonitorChange *mc, *next;
        MonitorConnect *mcon;
        MonitorRequest *mr;

        assert(d);

        while ((mr = LIST_FIRST(&d->requests))) {
                tsm_request_cancel(mr->request);
                dispatch_request_free(mr);
        }
        /* Binds and unbinds go on: the TSM changes the TDI whether or not anyone listens.
         * Who waited for them to settle was the worker that is gone. */
        for (mc = LIST_FIRST(&d->changes); mc; mc = next) {
                next = LIST_NEXT(mc, entry);
                mc->cookie = 0;
                if (mc->settle)
                        dispatch_change_free(mc);
        }
        /* So do connects and disconnects: the platform must see where they end. */
        LIST_FOREACH(mcon, &d->connects, entry)
                mcon->cookie = 0;
        /* The LATEs it did not acknowledge go to the next worker, and so do the answers it did
         * not say it recorded (dispatch_answers_orphan()); those it did, not again: among the
         * messages received and not handled yet too. */
        if (d->channel >= 0 && !d->compromised && dispatch_late_take_acks_in(d, d->inbox_next, d->inbox_n))
                dispatch_late_take_acks(d);
        d->inbox_n = d->inbox_next = 0;
        d->compromised = false;
        /* Nothing meant for the old worker may reach the next one (the LATEs stay kept). */
        tsm_priv_outbox_clear(d->outbox);
        tsm_priv_inbox_clear(d->inbox);
        d->channel = -EBADF;
        d->seen_once = 0;
        d->reload_loaded = false;
        d->stalled = false;
        dispatch_answers_orphan(d);
        monitor_contexts_orphan_all(d->contexts);
}
