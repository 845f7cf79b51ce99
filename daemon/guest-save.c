/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A context's state file (context-store.h): each save of it, and the save a context owes when
 * one failed. A change that must be known before it is made is refused if it cannot be saved
 * (guest.c, guest_persist_before_change()); others are saved after they are made, and cannot be
 * undone when the save fails: a detach (giving a device up must work), the end of a bind or
 * unbind, a restore's settling, the token a reclaim voided. Their file stays behind the
 * context's memory, and a restart of tsmd (or of the worker) would take it for what the context
 * has: a detached vDevice attached again, a void token that reclaims. So a failed save is not
 * forgotten: the context owes one, tried again on a timer until a save succeeds (that one, or
 * one of a later change) or the context goes; and a change that must be saved first waits for
 * every save owed (guest_pay_owed_saves()), as a stale file may name the device it takes.
 * Runs in: worker.
 */

#include "event-util.h"
#include "guest-internal.h"
#include "log.h"

/* The first retry soon, for a failure that passes at once (a full /run someone makes room in),
 * then doubling up to a bound: a lasting failure (a read-only /run, a full one nobody clears)
 * costs one small write per context owing every SAVE_RETRY_MAX_USEC, a few per second with
 * thousands owing, and once the disk takes writes again each file is at most that long behind,
 * the window in which a restart of tsmd still finds it stale. */
#define SAVE_RETRY_FIRST_USEC (100U * 1000U)
#define SAVE_RETRY_MAX_USEC (30U * 1000U * 1000U)

struct GuestSaveRetry {
        Manager *manager;
        GuestContext *context; /* which owns this: it goes before the context does */
        struct event *timer;
        uint64_t delay_usec; /* until the next try */
        unsigned n_failed;   /* saves failed since it owes one */
};

static int context_save(Manager *m, const GuestContext *ctx) {
        StoredOwner owner = { .uid = ctx->uid, .gid = ctx->gid, .pid = ctx->pid };
        _cleanup_free_ StoredVDevice *v = NULL;

        v = new0(StoredVDevice, ctx->n_vdevices);
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < ctx->n_vdevices; i++) {
                v[i].id = ctx->vdevices[i].id;
                snprintf(v[i].pci_address, sizeof(v[i].pci_address), "%s", ctx->vdevices[i].pci_address);
                v[i].bound = ctx->vdevices[i].bound;
                v[i].changing = ctx->vdevices[i].changing;
        }
        memcpy(owner.previous_reclaim_id, ctx->previous_reclaim_id, sizeof(owner.previous_reclaim_id));
        return context_store_save(guest_state_dir(m), ctx->reclaim_id, &owner, v, ctx->n_vdevices);
}

static GuestSaveRetry *save_retry_free(GuestSaveRetry *s) {
        if (!s)
                return NULL;
        if (s->timer)
                event_free(s->timer);
        return mfree(s);
}

static void save_retry_arm(GuestSaveRetry *s) {
        struct timeval tv = timeval_from_usec(s->delay_usec);

        if (evtimer_add(s->timer, &tv) < 0)
                log_warning("Cannot arm the timer that saves the state of a context of uid %u again: its next "
                            "change saves it.", (unsigned) s->context->uid);
}

/* The file says what the context has again. */
static void save_paid(Manager *m, GuestContext *ctx) {
        if (!ctx->save_retry)
                return;
        log_info("Saved the state of a context of uid %u, which %u saves before had failed to.", (unsigned) ctx->uid,
                 ctx->save_retry->n_failed);
        ctx->save_retry = save_retry_free(ctx->save_retry);
        service_status_changed_for_admins(m);
}

static void on_save_retry(evutil_socket_t fd, short what, void *userdata) {
        GuestSaveRetry *s = userdata;
        int r;

        r = context_save(s->manager, s->context);
        if (r >= 0) {
                save_paid(s->manager, s->context); /* frees s */
                return;
        }
        s->n_failed++;
        log_debug_errno(r, "Failed again to save the state of a context of uid %u: %m", (unsigned) s->context->uid);
        s->delay_usec = MIN(s->delay_usec * 2, (uint64_t) SAVE_RETRY_MAX_USEC);
        save_retry_arm(s);
}

/* Logged once, when the context starts owing; the failures after it until it is paid, of the
 * retries or of later changes, only at debug level. */
static void save_owed(Manager *m, GuestContext *ctx, int error) {
        GuestSaveRetry *s;

        if (ctx->save_retry) {
                ctx->save_retry->n_failed++;
                log_debug_errno(error, "Failed again to save the state of a context of uid %u: %m",
                                (unsigned) ctx->uid);
                return;
        }
        log_warning_errno(error, "Failed to save the state of a context of uid %u, trying again until it is "
                                 "saved (a restart of tsmd meanwhile finds it as it was saved last): %m",
                          (unsigned) ctx->uid);
        s = new0(GuestSaveRetry, 1);
        if (s) {
                *s = (GuestSaveRetry){ .manager = m, .context = ctx, .delay_usec = SAVE_RETRY_FIRST_USEC,
                                       .n_failed = 1 };
                s->timer = evtimer_new(m->base, on_save_retry, s);
        }
        if (!s || !s->timer) {
                /* Nothing to try it again with: the context's next change saves it all. */
                save_retry_free(s);
                log_oom();
                return;
        }
        ctx->save_retry = s;
        save_retry_arm(s);
        service_status_changed_for_admins(m);
}

int guest_context_persist(Manager *m, GuestContext *ctx) {
        int r;

        r = context_save(m, ctx);
        if (r < 0) {
                save_owed(m, ctx, r);
                return r;
        }
        save_paid(m, ctx);
        return 0;
}

static int pay_owed(Manager *m, GuestContext *ctx) {
        return ctx->save_retry ? guest_context_persist(m, ctx) : 0;
}

int guest_pay_owed_saves(Manager *m, const GuestContext *except) {
        GuestClient *c;
        int r;

        /* The first failure ends it: one write a call while the directory takes none. */
        LIST_FOREACH(c, &m->guest_clients, entry)
                for (size_t i = 0; i < c->n_contexts; i++)
                        if (c->contexts[i] != except) {
                                r = pay_owed(m, c->contexts[i]);
                                if (r < 0)
                                        return r;
                        }
        for (size_t i = 0; i < m->n_orphans; i++)
                if (m->orphans[i] != except) {
                        r = pay_owed(m, m->orphans[i]);
                        if (r < 0)
                                return r;
                }
        return 0;
}

void guest_context_save_end(Manager *m, GuestContext *ctx, bool preserve) {
        if (!ctx->save_retry)
                return;
        if (preserve && context_save(m, ctx) >= 0) {
                save_paid(m, ctx);
                return;
        }
        if (preserve)
                log_warning("The state of a context of uid %u is left as it was saved last: the next worker, or "
                            "tsmd, takes that for what the context has.", (unsigned) ctx->uid);
        ctx->save_retry = save_retry_free(ctx->save_retry);
        service_status_changed_for_admins(m);
}

size_t guest_n_contexts_owing_save(const Manager *m) {
        const GuestClient *c;
        size_t n = 0;

        LIST_FOREACH(c, &m->guest_clients, entry)
                for (size_t i = 0; i < c->n_contexts; i++)
                        n += !!c->contexts[i]->save_retry;
        for (size_t i = 0; i < m->n_orphans; i++)
                n += !!m->orphans[i]->save_retry;
        return n;
}
