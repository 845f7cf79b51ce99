/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel's late answers (LATE): a call given up on while the kernel ran it, or answered
 * after the worker that asked ended, goes to the worker's audit log. Tagged at the call
 * (dispatch_late_tag()), kept until a worker acknowledges it recorded (LATE_ACK), bounded, the
 * dropped counted (LOST). Apart: it outlives the workers and the calls it speaks of.
 * Runs in: monitor.
 */

#include "log.h"
#include "monitor-dispatch-internal.h"

/* ctx: the context the call is for, which the caller has at hand (NULL: none). */
MonitorLateTag dispatch_late_tag(MonitorDispatch *d, TsmPrivLateOp op, uint32_t cookie,
                                 const MonitorContext *ctx, uint32_t vdevice, const char *pci_address) {
        MonitorLateTag t = { .generation = d->generation, .op = op, .cookie = cookie,
                             .context = ctx ? ctx->id : 0, .vdevice = vdevice,
                             .uid = ctx ? (uint32_t) ctx->uid : TSM_PRIV_LATE_NONE,
                             .backend = TSM_PRIV_LATE_NONE };

        if (pci_address && strlen(pci_address) < sizeof(t.pci_address))
                strcpy(t.pci_address, pci_address);
        return t;
}

/* To the worker served, if any; it stays kept either way. A worker that does not take its
 * messages is ended like one that leaves its replies unread (dispatch_reply_failed()). */
void dispatch_late_send(MonitorDispatch *d, MonitorLate *l) {
        int r;

        if (d->channel < 0 || d->stalled)
                return;
        r = tsm_priv_outbox_add(d->outbox, d->channel, &l->msg, NULL, 0, d);
        if (r < 0) {
                dispatch_reply_failed(d, r);
                return;
        }
        l->sent_generation = d->generation;
        idle_flush_schedule(d->flush);
}

/* The count of late answers dropped goes out as a LOST, once the one before is acknowledged. */
void dispatch_late_lost_flush(MonitorDispatch *d) {
        struct tsm_priv_late *m = &d->late_lost.msg;

        if (m->id != 0 || d->n_late_dropped == 0)
                return;
        tsm_priv_init(m, TSM_PRIV_LATE, 0, 0);
        m->op = TSM_PRIV_LATE_LOST;
        m->uid = m->backend = TSM_PRIV_LATE_NONE;
        m->id = ++d->next_late_id;
        m->count = d->n_late_dropped;
        d->late_lost.sent_generation = 0;
        d->n_late_dropped = 0;
        dispatch_late_send(d, &d->late_lost);
}

/* Kept until a worker acknowledges it recorded, whichever worker that is: the audit log must
 * hear of it, and a worker may end before it took it, or before it wrote its record. */
void dispatch_late_keep(MonitorDispatch *d, const struct tsm_priv_late *late) {
        MonitorLate *l;

        /* SECURITY: bounded: a hung TSM answers as many calls late as it was given, and a worker
         * need not acknowledge. The oldest stay: they may be in the audit log already. */
        if (!d->late_kept)
                d->late_kept = new(MonitorLate, MONITOR_LATE_KEPT_MAX);
        if (!d->late_kept || d->n_late_kept >= MONITOR_LATE_KEPT_MAX) {
                d->n_late_dropped++;
                log_full_ratelimited(&d->late_lost_log, LOG_WARNING,
                                     "A kernel TSM call to %s answered late, and %zu such answers wait to be "
                                     "recorded already: its own audit record is lost, the count of such is recorded.",
                                     late->pci_address, d->n_late_kept);
                dispatch_late_lost_flush(d);
                return;
        }
        l = &d->late_kept[d->n_late_kept++];
        *l = (MonitorLate){ .msg = *late };
        l->msg.id = ++d->next_late_id;
        if (d->channel < 0)
                log_debug("A kernel TSM call to %s answered late while no worker runs: kept for the next one "
                          "(%zu kept).", late->pci_address, d->n_late_kept);
        dispatch_late_send(d, l);
}

/* The LATE of the kernel's answer k to the call tagged t (its request_cookie the worker's, if
 * it is the one served). */
void dispatch_late_make(MonitorDispatch *d, const MonitorLateTag *t, const KernelLate *k, struct tsm_priv_late *ret) {
        struct tsm_priv_late late;

        tsm_priv_init(&late, TSM_PRIV_LATE, 0, 0);
        late.op = t->op;
        late.request_cookie = t->generation == d->generation && d->channel >= 0 ? t->cookie : 0;
        late.context = t->context;
        late.vdevice = t->vdevice;
        late.uid = t->uid;
        late.backend = t->backend;
        late.result = k->result < 0 ? MAX(k->result, -4095) : 0;
        late.response_size = (uint32_t) MIN(k->response_len, (size_t) TSM_PRIV_PAYLOAD_MAX);
        late.scope_number = t->op == TSM_PRIV_LATE_GUEST_REQUEST ? k->scope_number : 0;
        /* What a request on time says in its reply's value (on_request_done()): at most its
         * request's length, itself at most a payload's, and only offered no response buffer
         * (the transport's residue counts one or the other), as the worker checks. */
        if (t->op == TSM_PRIV_LATE_GUEST_REQUEST && late.result == 0 && late.response_size == 0)
                late.request_unconsumed = (uint32_t) MIN(k->request_unconsumed, (size_t) TSM_PRIV_PAYLOAD_MAX);
        late.latency_usec = k->latency_usec;
        memcpy(late.pci_address, t->pci_address, sizeof(late.pci_address));
        memcpy(late.scope, t->scope, sizeof(late.scope));
        memcpy(late.tsm, t->tsm, sizeof(late.tsm));
        if (!late.pci_address[0] && k->lane && strlen(k->lane) < sizeof(late.pci_address))
                strcpy(late.pci_address, k->lane);
        *ret = late;
}

void dispatch_on_platform_late(TsmPlatform *p, const KernelLate *k, void *userdata) {
        static const TsmPrivLateOp ops[_KERNEL_OP_MAX] = {
                [KERNEL_OP_REQUEST] = TSM_PRIV_LATE_GUEST_REQUEST,
                [KERNEL_OP_BIND] = TSM_PRIV_LATE_BIND,
                [KERNEL_OP_UNBIND] = TSM_PRIV_LATE_UNBIND,
                [KERNEL_OP_WRITE] = TSM_PRIV_LATE_CONNECT, /* untagged: it wrote, to which file unknown */
        };
        MonitorDispatch *d = userdata;
        MonitorLateTag t;
        struct tsm_priv_late late;

        /* Every call the monitor makes is tagged; without memory for the copy, what the lanes
         * know. */
        if (k->tag && k->tag_size == sizeof(t))
                memcpy(&t, k->tag, sizeof(t));
        else
                t = dispatch_late_tag(d, ops[k->op], 0, NULL, k->vdevice_id, k->lane);
        if (k->undo)
                t.op = TSM_PRIV_LATE_BIND_UNDO;
        dispatch_late_make(d, &t, k, &late);
        dispatch_late_keep(d, &late);
}

/* The kernel answered a call whose worker ended meanwhile (at_usec: when the call was made),
 * unless it answers late by itself (the call was given up on in the kernel: its device went). */
void dispatch_late_orphan(MonitorDispatch *d, TsmRequest *req, KernelOp op, const char *pci_address,
                          uint32_t vdevice, int result, uint64_t at_usec, const MonitorLateTag *tag) {
        const KernelLate k = { .op = op, .lane = pci_address, .vdevice_id = vdevice, .result = result,
                               .latency_usec = now_monotonic_usec() - at_usec, .tag = tag, .tag_size = sizeof(*tag) };

        if (!tsm_request_answers_late(req))
                dispatch_on_platform_late(d->platform, &k, d);
}

static MonitorLate *late_find(MonitorDispatch *d, uint64_t id) {
        if (id == 0)
                return NULL;
        if (d->late_lost.msg.id == id)
                return &d->late_lost;
        for (size_t i = 0; i < d->n_late_kept; i++)
                if (d->late_kept[i].msg.id == id)
                        return &d->late_kept[i];
        return NULL;
}

int dispatch_priv_late_ack(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                           const char **ret_reason) {
        const struct tsm_priv_late_ack *a = &m->late_ack;
        MonitorLate *l;

        if (a->__reserved != 0)
                return dispatch_violation(-EBADMSG, "reserved field not zero", ret_reason);
        if (a->durable > 1)
                return dispatch_violation(-EBADMSG, "durable neither 0 nor 1", ret_reason);
        if (!a->durable && a->seq == 0)
                return dispatch_violation(-EBADMSG, "being recorded under no seq", ret_reason);
        /* SECURITY: only what went to this worker, once: it cannot make the monitor forget what
         * it was never told. (What it was told it can lie about, as it can about any record.) */
        l = late_find(d, a->id);
        if (!l || l->sent_generation != d->generation)
                return dispatch_violation(-EPERM, "no such LATE sent to this worker", ret_reason);
        if (!a->durable) {
                l->msg.recorded_seq = a->seq;
                return 0;
        }
        if (l == &d->late_lost) {
                d->late_lost = (MonitorLate){};
                dispatch_late_lost_flush(d);
                return 0;
        }
        memmove(l, l + 1, (size_t) (d->late_kept + d->n_late_kept - (l + 1)) * sizeof(*l));
        d->n_late_kept--;
        return 0;
}

/* The LATE_ACKs (and RECORDEDs) among the messages of the inbox from index from on, taken as the worker is
 * ending: false once one breaks a rule, which ends the taking, as it would the worker. */
bool dispatch_late_take_acks_in(MonitorDispatch *d, size_t from, size_t k) {
        for (size_t i = from; i < k; i++) {
                TsmPrivReceived *dg = tsm_priv_inbox_get(d->inbox, i);
                const char *reason = NULL;
                struct tsm_priv_hdr h;
                PrivMessage m;

                if (dg->len < (ssize_t) sizeof(h))
                        continue;
                memcpy(&h, dg->buf, sizeof(h));
                if (h.type == TSM_PRIV_RECORDED) {
                        if (!dispatch_answers_take_recorded(d, dg->buf, (size_t) dg->len, dg->n_fds))
                                return false;
                        continue;
                }
                if (h.type != TSM_PRIV_LATE_ACK)
                        continue;
                if (tsm_priv_check(dg->buf, (size_t) dg->len, dg->n_fds, TSM_PRIV_FROM_WORKER, &m,
                                   sizeof(m.late_ack), NULL, &reason) < 0 ||
                    h.cookie != 0 || dispatch_priv_late_ack(d, &m, NULL, NULL, &reason) < 0)
                        return false;
        }
        return true;
}

/* The LATE_ACKs an ended worker sent that are still unread: what it acknowledged counts, or the
 * next worker would record again what this one did. Bounded: a worker being killed may still be
 * writing. */
void dispatch_late_take_acks(MonitorDispatch *d) {
        bool broken = false;

        /* One datagram per receive (no fds taken): as many as 64 batches were. */
        for (unsigned b = 0; b < 64 * TSM_PRIV_BATCH_MAX && !broken; b++) {
                int k = dispatch_inbox_receive(d, false);

                if (k < 0)
                        break;
                broken = !dispatch_late_take_acks_in(d, 0, (size_t) k);
                /* SECURITY: no correct worker's: what follows goes with the channel, off the loop
                 * (monitor.c), rather than more such fds waiting on the closer's thread. */
                for (size_t i = 0; i < (size_t) k && !broken; i++)
                        broken = tsm_priv_inbox_get(d->inbox, i)->fds_refused_may_wait;
                tsm_priv_inbox_clear(d->inbox);
                if (!tsm_priv_inbox_more(d->inbox))
                        break;
        }
}

size_t monitor_dispatch_n_late_kept(const MonitorDispatch *d) {
        return d->n_late_kept;
}

uint64_t monitor_dispatch_n_late_lost(const MonitorDispatch *d) {
        return d->n_late_dropped + d->late_lost.msg.count;
}
