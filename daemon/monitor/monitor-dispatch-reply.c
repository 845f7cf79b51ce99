/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The monitor's replies to the worker: batched until the end of a batch of requests (or the
 * loop's idle, idle-flush.h), one with an fd sent at once; the monitor's own failures said so
 * (TSM_PRIV_REPLY_MONITOR_OWN); and a worker that does not take them, which is ended. Apart
 * from the handlers, as every one of them answers through these. Runs in: monitor.
 */

#include "fd-closer.h"
#include "log.h"
#include "monitor-dispatch-internal.h"

/*
 * SECURITY: the monitor never waits on the worker for long. Its sends block at most
 * MONITOR_SEND_TIMEOUT_USEC (the socket's SO_SNDTIMEO); a reply the worker does not take in that
 * time, or one that fails otherwise, ends this worker: nothing more is sent to it (each further
 * send could block as long again, and the kernel lanes deliver many replies in one callback),
 * and the caller kills it. A worker that leaves its replies unread is wedged or compromised;
 * a reply dropped silently would leave it out of step anyway.
 */
void dispatch_reply_failed(MonitorDispatch *d, int error) {
        if (error == -EPIPE || error == -ECONNRESET) {
                /* The worker is gone; the end of file on the channel tells the monitor so. */
                log_debug_errno(error, "Failed to send a reply to the worker: %m");
                return;
        }
        if (d->stalled)
                return;
        d->stalled = true;
        if (d->cb.stalled)
                d->cb.stalled(error, d->userdata);
}

void dispatch_on_reply_failed(int error, void *userdata) {
        dispatch_reply_failed(userdata, error);
}

static int reply_send(MonitorDispatch *d, uint32_t cookie, uint32_t flags, int result, uint32_t value,
                      const void *payload, size_t payload_len, int fd) {
        struct tsm_priv_reply rep;
        int r;

        if (d->stalled)
                return -EPIPE;
        tsm_priv_init(&rep, TSM_PRIV_REPLY, cookie, (uint32_t) payload_len);
        rep.hdr.flags = flags;
        rep.result = result;
        rep.value = value;
        if (fd < 0) {
                r = tsm_priv_outbox_add(d->outbox, d->channel, &rep, payload, payload_len, d);
                if (r >= 0)
                        idle_flush_schedule(d->flush);
        } else {
                /* In order: what waits goes first. */
                tsm_priv_outbox_flush(d->outbox, d->channel);
                r = d->stalled ? -EPIPE : tsm_priv_send(d->channel, &rep, payload, payload_len, fd);
        }
        if (r < 0) {
                dispatch_reply_failed(d, r);
                /* A stalled worker is gone as far as the dispatch is concerned. */
                return d->stalled ? -EPIPE : r;
        }
        return 0;
}

int dispatch_reply_full(MonitorDispatch *d, uint32_t cookie, int result, uint32_t value, const void *payload,
                        size_t payload_len, int fd) {
        return reply_send(d, cookie, 0, result, value, payload, payload_len, fd);
}

/* TSM_PRIV_REPLY_KEPT: dispatch_reply_acted()'s. */
int dispatch_reply_flags(MonitorDispatch *d, uint32_t cookie, uint32_t flags, int result, uint32_t value,
                         const void *payload, size_t payload_len) {
        return reply_send(d, cookie, flags, result, value, payload, payload_len, -EBADF);
}

void dispatch_on_flush(void *userdata) {
        MonitorDispatch *d = userdata;

        if (d->channel >= 0 && !d->stalled)
                tsm_priv_outbox_flush(d->outbox, d->channel);
}

int dispatch_reply(MonitorDispatch *d, const PrivMessage *m, int result, uint32_t value, int fd) {
        return dispatch_reply_full(d, m->hdr.cookie, result, value, NULL, 0, fd);
}

/* A failure of the monitor's own, the backend not asked (its policy gate's -EPERM, its own
 * -ENOMEM): said so, as a kernel TSM may answer the same errno (TSM_PRIV_REPLY_MONITOR_OWN). */
int dispatch_reply_own(MonitorDispatch *d, const PrivMessage *m, int result) {
        assert(result < 0);
        return dispatch_reply(d, m, result, TSM_PRIV_REPLY_MONITOR_OWN, -EBADF);
}

/* The platform's failure to start a call: its -ENOMEM is the monitor's own memory, as the TSM
 * answers only later, from the callback. */
int dispatch_reply_not_started(MonitorDispatch *d, const PrivMessage *m, int result) {
        return result == -ENOMEM ? dispatch_reply_own(d, m, result) : dispatch_reply(d, m, result, 0, -EBADF);
}

/* The fd that came with m was not taken: the monitor had no fd left, or took none while fds a
 * worker passed wait to be closed (MONITOR_WORKER_FDS_CLOSING_MAX). Its own failure, not the
 * worker's: a correct worker sends such messages too. */
int dispatch_reply_fd_lost(MonitorDispatch *d, const PrivMessage *m) {
        if (d->fds_limited)
                log_full_ratelimited(&d->fd_lost_log, LOG_WARNING,
                                     "Not taking the fd the worker passed with %s: %zu fds a worker passed wait to be "
                                     "closed behind a close some file system holds. Failing it with ENOBUFS.",
                                     tsm_priv_type_to_string(m->hdr.type), fd_closer_n_waiting(FD_CLOSER_PEER_NONE));
        else
                log_full_ratelimited(&d->fd_lost_log, LOG_WARNING,
                                     "No fd left to receive the one the worker passed with %s (RLIMIT_NOFILE "
                                     "reached), failing it with ENOBUFS.",
                                     tsm_priv_type_to_string(m->hdr.type));
        return dispatch_reply_own(d, m, -ENOBUFS);
}
