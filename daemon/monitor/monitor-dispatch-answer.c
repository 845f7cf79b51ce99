/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The answers of calls that acted, kept until the worker's record of them is durable: a bind,
 * unbind or guest request the device ran is answered with TSM_PRIV_REPLY_KEPT, and kept until
 * the worker names its cookie in a RECORDED. A worker that ends first (a crash, an OOM kill, a
 * kill for not reading) leaves each to the next one as a LATE, so the audit log hears what the
 * device did even when the call's own record never reached the disk; one the worker says
 * nobody records (its caller left before the answer) goes as a LATE at once. Apart from the
 * handlers, which answer through it, and from the late answers, which it only feeds.
 * Runs in: monitor.
 */

#include "log.h"
#include "monitor-dispatch-internal.h"

struct MonitorAnswer {
        uint32_t cookie;
        struct tsm_priv_late late; /* the LATE it becomes */
        TAILQ_ENTRY(MonitorAnswer) entry;
};

/* Past MONITOR_ANSWERS_KEPT_MAX the answer goes out unkept: its record rests on the worker alone. */
static bool answer_keep(MonitorDispatch *d, uint32_t cookie, const MonitorLateTag *tag, const KernelLate *k) {
        MonitorAnswer *a;

        /* SECURITY: bounded: a worker need not say what it recorded. A correct one has no more
         * records in flight than its audit log takes (MaxRecordsInFlight=, 4096 by default). */
        if (d->n_answers >= MONITOR_ANSWERS_KEPT_MAX) {
                log_full_ratelimited(&d->answers_full_log, LOG_WARNING,
                                     "%zu answers of calls that acted wait for the worker to record them: the "
                                     "answer of a call to %s is not kept, and its record rests on the worker alone.",
                                     d->n_answers, tag->pci_address);
                return false;
        }
        a = new(MonitorAnswer, 1);
        if (!a)
                return false;
        a->cookie = cookie;
        dispatch_late_make(d, tag, k, &a->late);
        TAILQ_INSERT_TAIL(&d->answers, a, entry);
        d->n_answers++;
        return true;
}

static void answer_free(MonitorDispatch *d, MonitorAnswer *a) {
        TAILQ_REMOVE(&d->answers, a, entry);
        d->n_answers--;
        free(a);
}

int dispatch_reply_acted(MonitorDispatch *d, TsmRequest *req, uint32_t cookie, const MonitorLateTag *tag,
                         const KernelLate *k, uint32_t value, const void *payload, size_t payload_len) {
        bool kept;

        if (d->channel < 0)
                return -EPIPE;
        /* Not one the kernel answers late by itself: the LATE of that tells what it did. Also
         * for a worker that stopped reading (its answer goes nowhere): the next one records it. */
        kept = tag->op != 0 && !tsm_request_answers_late(req) && answer_keep(d, cookie, tag, k);
        return dispatch_reply_flags(d, cookie, kept ? TSM_PRIV_REPLY_KEPT : 0, k->result < 0 ? k->result : 0, value,
                                    payload, payload_len);
}

/* Oldest first: records are made durable in about the order their answers came. */
static MonitorAnswer *answer_find(MonitorDispatch *d, uint32_t cookie) {
        MonitorAnswer *a;

        TAILQ_FOREACH(a, &d->answers, entry)
                if (a->cookie == cookie)
                        return a;
        return NULL;
}

int dispatch_priv_recorded(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                           const char **ret_reason) {
        const struct tsm_priv_recorded *rec = &m->recorded;
        size_t n = rec->hdr.payload_len / sizeof(uint32_t);

        if (rec->__reserved != 0)
                return dispatch_violation(-EBADMSG, "reserved field not zero", ret_reason);
        if (rec->late > 1)
                return dispatch_violation(-EBADMSG, "late neither 0 nor 1", ret_reason);
        if (n == 0 || rec->hdr.payload_len % sizeof(uint32_t) != 0)
                return dispatch_violation(-EBADMSG, "payload not a list of cookies", ret_reason);
        /* SECURITY: only what was kept for this worker, once. Every cookie is checked to be kept
         * before any is taken; one named twice is found as its second is taken (the worker ends
         * as a violation either way, and those taken before were recorded). PERFORMANCE: a
         * search from the oldest, which is where a durable record's answer mostly is; a hostile
         * list of the newest costs n x MONITOR_ANSWERS_KEPT_MAX compares at most. */
        for (size_t i = 0; i < n; i++) {
                uint32_t cookie;

                memcpy(&cookie, (const uint8_t *) payload + i * sizeof(cookie), sizeof(cookie));
                if (!answer_find(d, cookie))
                        return dispatch_violation(-EPERM, "no such kept answer sent to this worker", ret_reason);
        }
        for (size_t i = 0; i < n; i++) {
                MonitorAnswer *a;
                uint32_t cookie;

                memcpy(&cookie, (const uint8_t *) payload + i * sizeof(cookie), sizeof(cookie));
                a = answer_find(d, cookie);
                if (!a) /* named twice */
                        return dispatch_violation(-EPERM, "kept answer named twice", ret_reason);
                if (rec->late)
                        dispatch_late_keep(d, &a->late);
                answer_free(d, a);
        }
        return 0;
}

/* Those whose records a worker that is ending said are durable (not those it gave up on: they
 * go to the next worker with the rest), among messages received and not handled. */
bool dispatch_answers_take_recorded(MonitorDispatch *d, const void *buf, size_t len, size_t n_fds) {
        const char *reason = NULL;
        const void *payload = NULL;
        PrivMessage m;

        if (tsm_priv_check(buf, len, n_fds, TSM_PRIV_FROM_WORKER, &m, sizeof(m.recorded), &payload, &reason) < 0 ||
            m.hdr.cookie != 0)
                return false;
        if (m.recorded.late)
                return true;
        return dispatch_priv_recorded(d, &m, payload, NULL, &reason) >= 0;
}

/* The worker ended: what it did not say it recorded goes to the next one as LATEs. */
void dispatch_answers_orphan(MonitorDispatch *d) {
        MonitorAnswer *a;

        assert(d->channel < 0);
        while ((a = TAILQ_FIRST(&d->answers))) {
                a->late.request_cookie = 0;
                dispatch_late_keep(d, &a->late);
                answer_free(d, a);
        }
}

size_t monitor_dispatch_n_answers_kept(const MonitorDispatch *d) {
        return d->n_answers;
}
