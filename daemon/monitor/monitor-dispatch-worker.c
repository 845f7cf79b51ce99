/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker's messages about itself: READY, STATUS, and RELOAD, which loads and then applies
 * the files; and what the monitor tells it unasked: the SIGHUP it gets, passed on
 * (SIGNAL_RELOAD), and which files of the set in force changed on disk (FILES_CHANGED).
 * Runs in: monitor.
 */

#include "log.h"
#include "monitor-dispatch-internal.h"

int monitor_dispatch_signal_reload(MonitorDispatch *d, pid_t pid, uid_t uid, const char *unit) {
        struct tsm_priv_signal_reload m;
        int r;

        if (d->channel < 0 || d->stalled)
                return -ENOTCONN;
        tsm_priv_init(&m, TSM_PRIV_SIGNAL_RELOAD, 0, 0);
        m.pid = pid > 0 ? (uint32_t) pid : 0;
        m.uid = uid == (uid_t) -1 ? TSM_PRIV_LATE_NONE : (uint32_t) uid;
        /* A name too long for the field is none: cut, it would name another unit. */
        if (m.pid > 0 && unit && strlen(unit) < sizeof(m.unit))
                strcpy(m.unit, unit);
        r = tsm_priv_outbox_add(d->outbox, d->channel, &m, NULL, 0, d);
        if (r < 0) {
                dispatch_reply_failed(d, r);
                return r;
        }
        idle_flush_schedule(d->flush);
        return 0;
}

int monitor_dispatch_files_changed(MonitorDispatch *d, uint32_t n_changed, const char *paths, size_t size) {
        _cleanup_free_ char *named = NULL;
        struct tsm_priv_files_changed m;
        size_t n = 0;
        int r;

        if (d->channel < 0 || d->stalled)
                return -ENOTCONN;
        /* Whole paths, as many as fit, none longer than a path may be (a drop-in's name after a
         * long directory's): n_changed says how many differ. */
        if (size > 0) {
                named = malloc(MIN(size, (size_t) TSM_PRIV_PAYLOAD_MAX));
                if (!named)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < size;) {
                size_t len = strnlen(paths + i, size - i) + 1;

                if (i + len > size)
                        break;
                if (len <= TSM_PRIV_PATH_MAX) {
                        if (n + len > TSM_PRIV_PAYLOAD_MAX)
                                break;
                        memcpy(named + n, paths + i, len);
                        n += len;
                }
                i += len;
        }
        tsm_priv_init(&m, TSM_PRIV_FILES_CHANGED, 0, (uint32_t) n);
        m.n_changed = MIN(n_changed, TSM_PRIV_FILES_MAX);
        r = tsm_priv_outbox_add(d->outbox, d->channel, &m, n > 0 ? named : NULL, n, d);
        if (r < 0) {
                dispatch_reply_failed(d, r);
                return r;
        }
        idle_flush_schedule(d->flush);
        return 0;
}

int dispatch_priv_ready(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                        const char **ret_reason) {
        MonitorContext *ctx;

        /* It restored every context before it said so: what the state files had to add, it has
         * attached. From now on the monitor's record is all a context has (tsm-priv.h). */
        MONITOR_CONTEXTS_FOREACH(ctx, d->contexts)
                ctx->partial = false;
        /* Emulated devices that came back with their state at the start (emu-state.h) are held
         * again by the vDevices restored, or released now. */
        tsm_platform_emulated_restored(d->platform, monitor_contexts_holds_device, d->contexts);
        log_debug("Worker is ready.");
        if (d->cb.ready)
                d->cb.ready(d->userdata);
        return 0;
}

int dispatch_priv_status(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                         const char **ret_reason) {
        const struct tsm_priv_status *s = &m->status;

        if (s->draining > 1)
                return dispatch_violation(-EBADMSG, "draining neither 0 nor 1", ret_reason);
        if (s->audit >= _TSM_PRIV_AUDIT_MAX)
                return dispatch_violation(-EBADMSG, "audit state unknown", ret_reason);
        if (d->cb.status)
                d->cb.status(s, d->userdata);
        return 0;
}

/* A load answers with the sealed memfd of the files loaded; a commit applies them (tsm-priv.h). */
int dispatch_priv_reload(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                         const char **ret_reason) {
        const struct tsm_priv_reload *rl = &m->reload;
        _cleanup_free_ char *why = NULL;
        bool policy_failed = false;
        int loaded = -EBADF, r;

        if (rl->__reserved != 0)
                return dispatch_violation(-EBADMSG, "reserved field not zero", ret_reason);
        if (rl->commit > 1)
                return dispatch_violation(-EBADMSG, "commit neither 0 nor 1", ret_reason);
        if (rl->commit) {
                /* SECURITY: only a set the monitor loaded and handed this worker, and once. */
                if (!d->reload_loaded)
                        return dispatch_violation(-EPROTO, "commit without a load", ret_reason);
                d->reload_loaded = false;
                r = d->cb.reload(d->userdata, true, NULL, NULL, NULL);
                return dispatch_reply(d, m, r < 0 ? r : 0, 0, -EBADF);
        }

        d->reload_loaded = false;
        r = d->cb.reload ? d->cb.reload(d->userdata, false, &loaded, &why, &policy_failed) : -EOPNOTSUPP;
        if (r >= 0 && loaded < 0)
                r = -ENODATA;
        if (r < 0) {
                /* Why, in our words: the worker may not be able to find out itself. */
                char text[TSM_PRIV_REASON_MAX + 1];
                size_t len = tsm_priv_reason_make(why, text);

                return dispatch_reply_full(d, m->hdr.cookie, r, policy_failed, len > 0 ? text : NULL, len, -EBADF);
        }
        d->reload_loaded = true;
        return dispatch_reply(d, m, 0, 0, loaded);
}
