/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Contexts: OPEN_CONTEXT (the monitor opens the iommufd), ADOPT_CONTEXT (a client's, verified),
 * RECLAIM_CONTEXT (an orphan changes hands, by its token), RESTORED_PREVIOUS and CLOSE_CONTEXT;
 * and the cap on how many the monitor holds. Runs in: monitor.
 */

#include <fcntl.h>
#include <inttypes.h>

#include "fd-fuse.h"
#include "log.h"
#include "monitor-dispatch-internal.h"
#include "monitor-iommufd.h"

static int check_new_context(MonitorDispatch *d, const struct tsm_priv_new_context *n,
                             const char **ret_reason) {
        /* SECURITY: slot 0 is the worker itself; a new context is always some client's. */
        if (n->slot == TSM_PRIV_SLOT_WORKER)
                return dispatch_violation(-EPERM, "new context for slot 0", ret_reason);
        if (n->uid == UINT32_MAX)
                return dispatch_violation(-EBADMSG, "invalid uid", ret_reason);
        if (!tsm_priv_check_string(n->reclaim_id, sizeof(n->reclaim_id)) || !reclaim_hex_is_valid(n->reclaim_id))
                return dispatch_violation(-EBADMSG, "reclaim id not 32 lowercase hex digits", ret_reason);
        /* The worker derives ids from tokens of 128 random bits: a repeat is no accident. Two
         * fds under one name would leave the fd store together. */
        if (monitor_contexts_find_reclaim_id(d->contexts, n->reclaim_id))
                return dispatch_violation(-EPERM, "reclaim id names another context", ret_reason);
        return 0;
}

/* SECURITY: the monitor holds no more contexts than its cap (monitor-contexts.h): each is an fd,
 * and past it the monitor could not start the next worker. An answer, not a violation: the
 * worker counts the same contexts and refuses first, but an honest one may still get here (a
 * context it could not restore, its MaxContexts= changed since the monitor started). */
static bool contexts_full(MonitorDispatch *d) {
        if (!monitor_contexts_is_full(d->contexts))
                return false;
        log_full_ratelimited(&d->contexts_full_log, LOG_WARNING,
                             "Refusing a new context: the monitor holds its maximum of %zu.",
                             monitor_contexts_get_max(d->contexts));
        return true;
}

int dispatch_priv_open_context(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                               const char **ret_reason) {
        const struct tsm_priv_new_context *n = &m->new_context;
        _cleanup_close_ int iommufd = -EBADF, copy = -EBADF;
        uint32_t id;
        int r;

        r = check_new_context(d, n, ret_reason);
        if (r < 0)
                return r;
        if (contexts_full(d))
                return dispatch_reply(d, m, -EMFILE, 0, -EBADF);

        r = monitor_iommufd_open(d->platform, &iommufd);
        if (r < 0) {
                log_warning_errno(r, "Failed to open '%s': %m", tsm_platform_get_iommu_device(d->platform));
                return dispatch_reply(d, m, r, 0, -EBADF);
        }
        /* The worker passes its copy on to the client; the monitor keeps its own reference. */
        copy = fcntl(iommufd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                return dispatch_reply(d, m, negative_errno(), 0, -EBADF);
        r = monitor_contexts_add(d->contexts, TAKE_FD(iommufd), n->slot, n->uid, n->reclaim_id, &id);
        if (r < 0)
                return dispatch_reply(d, m, r, 0, -EBADF);

        log_info("Opened context %" PRIu32 " for uid %" PRIu32 " (slot %" PRIu32 ").", id, n->uid, n->slot);
        return dispatch_reply(d, m, 0, id, copy);
}

int dispatch_priv_adopt_context(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                const char **ret_reason) {
        const struct tsm_priv_new_context *n = &m->new_context;
        uint32_t id;
        int r;

        r = check_new_context(d, n, ret_reason);
        if (r < 0)
                return r;
        if (*fd < 0)
                return dispatch_reply_fd_lost(d, m);
        /* SECURITY: a correct worker passes only these (its fd_may_be_iommufd(), guest-context.c): any
         * other is no client's junk let through but the worker's doing, a file of some file system,
         * maybe a FUSE one a client serves and never answers, whose close would hold the closer
         * and every fd after it. An fd the monitor cannot tell is its own failure. */
        r = fd_is_device_or_memfd(*fd);
        if (r < 0)
                return dispatch_reply_own(d, m, r);
        if (r == 0)
                return dispatch_violation(-EBADF, "adopted fd neither a character device nor a memfd", ret_reason);
        if (contexts_full(d))
                return dispatch_reply(d, m, -EMFILE, 0, -EBADF);

        /* Not a violation: the fd comes from a client, and clients pass junk (of the kinds
         * above: /dev/null, a memfd of their own). */
        r = monitor_iommufd_verify(d->platform, *fd);
        if (r < 0) {
                log_debug_errno(r, "Refusing to adopt an fd of uid %" PRIu32 ": %m", n->uid);
                return dispatch_reply(d, m, r, 0, -EBADF);
        }
        r = monitor_contexts_add(d->contexts, TAKE_FD(*fd), n->slot, n->uid, n->reclaim_id, &id);
        if (r < 0)
                return dispatch_reply(d, m, r, 0, -EBADF);

        log_info("Adopted context %" PRIu32 " of uid %" PRIu32 " (slot %" PRIu32 ").", id, n->uid, n->slot);
        return dispatch_reply(d, m, 0, id, -EBADF);
}

int dispatch_priv_reclaim_context(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                  const char **ret_reason) {
        const struct tsm_priv_reclaim_context *c = &m->reclaim_context;
        char previous[RECLAIM_ID_LEN + 1];
        _cleanup_close_ int copy = -EBADF;
        MonitorContext *ctx, *named;
        const char *presented;
        int r;

        if (c->slot == TSM_PRIV_SLOT_WORKER)
                return dispatch_violation(-EPERM, "reclaim for slot 0", ret_reason);
        if (!tsm_priv_check_string(c->reclaim_id, sizeof(c->reclaim_id)) || !reclaim_hex_is_valid(c->reclaim_id))
                return dispatch_violation(-EBADMSG, "reclaim id not 32 lowercase hex digits", ret_reason);
        /* SECURITY: only an orphan can change hands; one held by a client stays with it. The
         * worker checked uid and token, from what RESTORED_CONTEXT told it. */
        r = dispatch_lookup_context(d, TSM_PRIV_SLOT_WORKER, c->context, &ctx, ret_reason);
        if (r < 0)
                return r;
        /* The new token's id: from 128 fresh random bits, so naming another context is no
         * accident. Its own name keeps it: the worker could not save the state a renewal needs
         * (the VMM keeps its token then). */
        named = monitor_contexts_find_reclaim_id(d->contexts, c->reclaim_id);
        if (named && named != ctx)
                return dispatch_violation(-EPERM, "reclaim id names another context", ret_reason);
        /* SECURITY: the token reclaimed with is the context's or its previous one, as the
         * monitor told the worker (RESTORED_CONTEXT): kept as the previous one, it must be one
         * the VMM had, never one a worker made up. */
        if (!tsm_priv_check_string(c->previous_reclaim_id, sizeof(c->previous_reclaim_id)))
                return dispatch_violation(-EBADMSG, "previous reclaim id not a NUL-terminated string", ret_reason);
        presented = isempty(c->previous_reclaim_id) ? ctx->reclaim_id : c->previous_reclaim_id;
        if (!streq(presented, ctx->reclaim_id) &&
            (isempty(ctx->previous_reclaim_id) || !streq(presented, ctx->previous_reclaim_id)))
                return dispatch_violation(-EPERM, "reclaim with an id the context does not have", ret_reason);

        copy = fcntl(ctx->fd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                return dispatch_reply(d, m, negative_errno(), 0, -EBADF);
        if (!named) {
                memcpy(previous, presented, sizeof(previous));
                r = monitor_contexts_rename(d->contexts, ctx, c->reclaim_id);
                if (r < 0)
                        return dispatch_reply(d, m, r, 0, -EBADF);
                memcpy(ctx->previous_reclaim_id, previous, sizeof(previous));
        }
        ctx->slot = c->slot;

        log_info("Context %" PRIu32 " of uid %u reclaimed (slot %" PRIu32 ").", ctx->id, (unsigned) ctx->uid,
                 c->slot);
        return dispatch_reply(d, m, 0, 0, copy);
}

int dispatch_priv_restored_previous(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                    const char **ret_reason) {
        const struct tsm_priv_restored_previous *p = &m->restored_previous;
        MonitorContext *ctx;
        int r;

        if (p->__reserved != 0)
                return dispatch_violation(-EBADMSG, "reserved field set", ret_reason);
        if (!tsm_priv_check_string(p->previous_reclaim_id, sizeof(p->previous_reclaim_id)) ||
            !reclaim_hex_is_valid(p->previous_reclaim_id))
                return dispatch_violation(-EBADMSG, "reclaim id not 32 lowercase hex digits", ret_reason);
        r = dispatch_lookup_context(d, TSM_PRIV_SLOT_WORKER, p->context, &ctx, ret_reason);
        if (r < 0)
                return r;
        /* SECURITY: the state file's word, as for its vDevices (ATTACH_VDEVICE): only where the
         * monitor has none, and only before READY. */
        if (!ctx->partial)
                return dispatch_violation(-EPERM, "previous reclaim id of a context the monitor knows whole",
                                          ret_reason);
        memcpy(ctx->previous_reclaim_id, p->previous_reclaim_id, sizeof(ctx->previous_reclaim_id));
        return 0;
}

int dispatch_priv_close_context(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                const char **ret_reason) {
        const struct tsm_priv_context *c = &m->context;
        MonitorContext *ctx;
        uid_t uid;
        int r;

        r = dispatch_lookup_context(d, c->slot, c->context, &ctx, ret_reason);
        if (r < 0)
                return r;

        uid = ctx->uid;
        dispatch_fail_requests_of(d, c->context, 0);
        r = monitor_contexts_remove(d->contexts, d->platform, c->context);
        if (r >= 0)
                log_info("Closed context %" PRIu32 " of uid %u.", c->context, (unsigned) uid);
        return dispatch_reply(d, m, r < 0 ? r : 0, 0, -EBADF);
}
