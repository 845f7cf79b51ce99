/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io.tsmd.Guest across restarts: the contexts the monitor kept (after a restart of the worker,
 * or of all of tsmd, through the fd store) are rebuilt from their state files as orphans, put
 * right where a restart cut a bind or unbind off, and handed back to their owners by
 * ReclaimContext, or released when nobody reclaims them in time. Runs in: worker.
 */

#include <inttypes.h>

#include "audit-record.h"
#include "guest-internal.h"
#include "log.h"
#include "policy.h"
#include "priv-call.h"
#include "tsm-platform.h"

static void orphans_release(Manager *m) {
        for (size_t i = 0; i < m->n_orphans; i++) {
                if (!m->preserve_contexts)
                        log_info("Context of uid %u was not reclaimed in time, releasing it.", (unsigned) m->orphans[i]->uid);
                guest_audit_context_release(m, m->orphans[i]);
                guest_context_free(m, m->orphans[i]);
        }
        m->n_orphans = 0;
}

static void on_orphan_timeout(evutil_socket_t fd, short what, void *userdata) {
        orphans_release(userdata);
}

/* A restored vDevice whose bind or unbind the previous worker did not see answered. */
typedef struct Settle {
        Manager *manager;
        uint32_t context; /* the monitor's ids: the context may be reclaimed meanwhile */
        uint32_t vdevice;
} Settle;

GuestContext *guest_find_context_by_id(Manager *m, uint32_t id) {
        GuestClient *c;

        for (size_t i = 0; i < m->n_orphans; i++)
                if (m->orphans[i]->id == id)
                        return m->orphans[i];
        LIST_FOREACH(c, &m->guest_clients, entry)
                for (size_t i = 0; i < c->n_contexts; i++)
                        if (c->contexts[i]->id == id)
                                return c->contexts[i];
        return NULL;
}

static void on_settled(int result, const void *response, size_t len, void *userdata) {
        Settle *s = userdata;
        GuestContext *ctx = guest_find_context_by_id(s->manager, s->context);
        GuestVDevice *v = ctx ? guest_find_vdevice(ctx, s->vdevice) : NULL;

        /* Released meanwhile (that waited for it as for any change): nothing to update. */
        if (v && v->changing) {
                v->changing = false;
                if (result >= 0) {
                        v->bound = result > 0;
                        (void) guest_context_persist(s->manager, ctx); /* owed if it fails */
                } else
                        log_warning_errno(result, "Cannot tell whether %s is bound: %m", v->pci_address);
        }
        free(s);
}

/* Busy (as for a Bind of its own) until the monitor says where the change ended. */
static void vdevice_settle(Manager *m, GuestContext *ctx, GuestVDevice *v) {
        Settle *s = new(Settle, 1);
        int r;

        if (!s) {
                log_oom();
                return;
        }
        *s = (Settle){ .manager = m, .context = ctx->id, .vdevice = v->id };
        v->changing = true;
        r = priv_call_settle_vdevice(m->channel, ctx->slot, ctx->id, v->id, on_settled, s, NULL);
        if (r < 0)
                on_settled(r, NULL, 0, s);
}

static void on_restore_unbound(int result, const void *response, size_t len, void *userdata) {
        Release *rel = userdata;
        GuestContext *ctx = guest_find_context_by_id(rel->manager, rel->context_id);
        GuestVDevice *v = ctx ? guest_find_vdevice(ctx, rel->vdevice) : NULL;

        if (result < 0)
                log_warning_errno(result, "Failed to unbind %s after a restart cut its bind or unbind off, "
                                  "it may still be bound: %m", rel->pci_address);
        /* Released meanwhile (that waited for it as for any change): nothing to update. */
        if (v && v->changing) {
                v->changing = false;
                v->bound = false;
                (void) guest_context_persist(rel->manager, ctx); /* owed if it fails */
        }
        guest_audit_release(rel, result);
        if (result >= 0)
                tsm_platform_refresh_binding(rel->manager->platform, rel->pci_address, false);
        guest_release_free(rel);
}

static void on_restore_rebound(int result, const void *response, size_t len, void *userdata) {
        Release *rel = userdata;
        GuestContext *ctx = guest_find_context_by_id(rel->manager, rel->context_id);
        GuestVDevice *v = ctx ? guest_find_vdevice(ctx, rel->vdevice) : NULL;

        if (result < 0)
                log_warning_errno(result, "Failed to bind %s again after a restart, it is left unbound: %m",
                                  rel->pci_address);
        /* Released meanwhile (that waited for it as for any change): nothing to update. */
        if (v && v->changing) {
                v->changing = false;
                v->bound = result >= 0 && !v->gone;
                (void) guest_context_persist(rel->manager, ctx); /* owed if it fails */
        }
        guest_audit_release(rel, result);
        if (result >= 0)
                tsm_platform_refresh_binding(rel->manager->platform, rel->pci_address, true);
        guest_release_free(rel);
}

/* Binds or unbinds a restored vDevice on its owner's behalf, recorded as event once the TSM has
 * answered. Busy until then, as for a Bind of its own; bound only once a bind succeeded. */
static void vdevice_restore_change(Manager *m, GuestContext *ctx, GuestVDevice *v, bool bind, const char *event,
                                   PrivRequestCallback cb) {
        Release *rel = new0(Release, 1);
        PrivRequest *req = NULL;
        int r;

        v->bound = false;
        if (!rel || !(rel->pci_address = strdup(v->pci_address))) {
                guest_release_free(rel);
                log_oom();
                return;
        }
        rel->manager = m;
        rel->event = event;
        rel->uid = ctx->uid;
        rel->gid = ctx->gid;
        rel->pid = ctx->pid;
        rel->context_id = ctx->id;
        rel->vdevice = v->id;
        r = priv_call_set_bound(m->channel, ctx->slot, ctx->id, v->id, bind, cb, rel, &req);
        if (r < 0) {
                cb(r, NULL, 0, rel);
                return;
        }
        rel->priv_cookie = priv_request_get_cookie(req);
        v->changing = true;
}

/* A kernel vDevice stored as changing: the bind or unbind on its way when tsmd stopped may or
 * may not have happened, in a kernel that kept the iommufd alive. Unbinding brings it to a
 * state tsmd knows; the VMM reclaiming it sees it unbound and binds it again. */
static void vdevice_unbind_unknown(Manager *m, GuestContext *ctx, GuestVDevice *v) {
        log_notice("A restart cut off a bind or unbind of %s (vDevice %u of uid %u), unbinding it.", v->pci_address,
                   v->id, (unsigned) ctx->uid);
        vdevice_restore_change(m, ctx, v, false, audit_event_to_string(AUDIT_EVENT_RESTORE_UNBIND), on_restore_unbound);
}

/* A vDevice the monitor has (RESTORED_VDEVICE), as it has it. One whose bind or unbind the
 * worker before did not see answered is busy until the monitor says where it ended. */
static int vdevice_restore_kept(Manager *m, GuestContext *ctx, const struct tsm_priv_restored_vdevice *rv) {
        GuestVDevice *v = &ctx->vdevices[ctx->n_vdevices];

        *v = (GuestVDevice){ .id = rv->vdevice, .bound = rv->state & TSM_PRIV_VDEVICE_BOUND,
                             .gone = rv->state & TSM_PRIV_VDEVICE_GONE };
        v->pci_address = strdup(rv->pci_address);
        if (!v->pci_address)
                return -ENOMEM;
        ctx->n_vdevices++;
        if (rv->state & TSM_PRIV_VDEVICE_CHANGING)
                vdevice_settle(m, ctx, v);
        return 0;
}

/* The restored context that holds the device at address, or NULL. */
static GuestContext *orphan_holding(Manager *m, const char *pci_address) {
        for (size_t i = 0; i < m->n_orphans; i++)
                for (size_t j = 0; j < m->orphans[i]->n_vdevices; j++) {
                        const GuestVDevice *v = &m->orphans[i]->vdevices[j];

                        if (!v->gone && streq(v->pci_address, pci_address))
                                return m->orphans[i];
                }
        return NULL;
}

/* A stored vDevice that is not attached again: gone for its VMM, which may have bound it; the
 * log says which context and why, for whoever looks for its TDI. Two files naming one device
 * (-EBUSY) is the state of a context gone stale: the context restored first keeps it, as the
 * monitor has no other word on which of them the kernel has it in. */
static void vdevice_log_unrestored(Manager *m, const GuestContext *ctx, const GuestVDevice *v, int error) {
        const GuestContext *holder = error == -EBUSY ? orphan_holding(m, v->pci_address) : NULL;

        if (holder)
                log_warning("State files of two contexts name %s: vDevice %u of the context of uid %u "
                            "(reclaim id %s) is gone, the context of uid %u (reclaim id %s) restored first "
                            "keeps the device.", v->pci_address, v->id, (unsigned) ctx->uid, ctx->reclaim_id,
                            (unsigned) holder->uid, holder->reclaim_id);
        else
                log_warning_errno(error, "Cannot attach %s again as vDevice %u of the context of uid %u "
                                  "(reclaim id %s), taking it for gone: %m", v->pci_address, v->id,
                                  (unsigned) ctx->uid, ctx->reclaim_id);
}

/* A vDevice only the state file knows of, in a context the fd store handed back to a new tsmd:
 * attached in the monitor again. */
static int vdevice_restore_stored(Manager *m, GuestContext *ctx, const StoredVDevice *stored) {
        GuestVDevice *v = &ctx->vdevices[ctx->n_vdevices];
        TsmDeviceInfo info;
        int r;

        *v = (GuestVDevice){ .id = stored->id };
        v->pci_address = strdup(stored->pci_address);
        if (!v->pci_address)
                return -ENOMEM;
        ctx->n_vdevices++;
        /* The kernel kept the binding alive with the fd, and the new monitor must know it, or
         * nobody would unbind it when the vDevice goes; but the emulated TSM lived in the old
         * monitor: it is brought back to where the guest left it. A change cut off on its way
         * left the kernel's state unknown, and the new emulated TSM's unbound. */
        v->bound = stored->bound && !stored->changing;
        r = tsm_platform_get_device(m->platform, v->pci_address, &info);
        if (r >= 0)
                r = priv_call_attach_vdevice(m->channel, ctx->slot, ctx->id, v->id, v->pci_address,
                                             v->bound && !info.emulated);
        if (r < 0) {
                vdevice_log_unrestored(m, ctx, v, r);
                v->bound = false;
                v->gone = v->unattached = true;
                return 0;
        }
        if (stored->changing && !info.emulated)
                vdevice_unbind_unknown(m, ctx, v);
        else if (v->bound && info.emulated)
                vdevice_restore_change(m, ctx, v, true, audit_event_to_string(AUDIT_EVENT_RESTORE_BIND),
                                       on_restore_rebound);
        return 0;
}

/* The state file of ctx did not load: renamed aside before the restore writes it anew (with the
 * vDevices the monitor has, none after a restart of tsmd), so that what it said, a TDI it had
 * bound among it, is still there for an admin to read; and the log names it. */
static void state_set_aside(Manager *m, const GuestContext *ctx, int error) {
        int r = error == -ENOMEM ? error : context_store_set_aside(guest_state_dir(m), ctx->reclaim_id);

        if (r >= 0)
                log_warning_errno(error, "State of the context of uid %u (reclaim id %s) is unreadable, restoring "
                                  "it with the vDevices the monitor has only; kept as '%s/%s.state"
                                  CONTEXT_STORE_DAMAGED_SUFFIX "': %m", (unsigned) ctx->uid, ctx->reclaim_id,
                                  guest_state_dir(m), ctx->reclaim_id);
        else
                log_warning_errno(error, "State of the context of uid %u (reclaim id %s) in '%s' is unreadable, "
                                  "restoring it with the vDevices the monitor has only, and it cannot be kept "
                                  "aside (%s): %m", (unsigned) ctx->uid, ctx->reclaim_id, guest_state_dir(m),
                                  r == -ENOSPC ? "too many are" : strerror(-r));
}

/* A reclaim's answer may not have reached the VMM before the restart: it reclaims with the token
 * it had before, or with the one answered (reclaim_rename()). SECURITY: after a restart of the
 * worker alone, the previous id is the monitor's, which a reclaim set, and only while the file
 * names it too (the worker drops it there once the answer is out): a worker made to write
 * another into the file cannot make a token valid for the workers after it. Only a context the
 * fd store handed back has the file's, which the monitor keeps from now on. */
static void previous_restore(Manager *m, GuestContext *ctx, const struct tsm_priv_restored_context *rc,
                             const char *stored) {
        int r;

        if (isempty(stored))
                return;
        if (!rc->partial) {
                if (streq(rc->previous_reclaim_id, stored))
                        memcpy(ctx->previous_reclaim_id, stored, sizeof(ctx->previous_reclaim_id));
                else
                        log_warning("State of the context of uid %u (reclaim id %s) names a previous reclaim "
                                    "id the monitor does not have; dropping it.", (unsigned) ctx->uid,
                                    ctx->reclaim_id);
                return;
        }
        /* Not kept unless the monitor has it: it takes a reclaim with an id it does not know for
         * a violation. */
        r = priv_send_restored_previous(m->channel, ctx->id, stored);
        if (r < 0) {
                log_warning_errno(r, "Cannot tell the monitor the previous reclaim id of the context of uid %u, "
                                  "dropping it: %m", (unsigned) ctx->uid);
                return;
        }
        memcpy(ctx->previous_reclaim_id, stored, sizeof(ctx->previous_reclaim_id));
}

/* A kept context this worker cannot take is closed in the monitor too: nobody could reclaim it,
 * and no orphan timer would ever release it (guest_context_free() does that for one taken). */
static int drop_kept(Manager *m, const struct tsm_priv_restored_context *rc, int error) {
        (void) priv_call_close_context(m->channel, TSM_PRIV_SLOT_WORKER, rc->context);
        return error;
}

int guest_restore_context(Manager *m, const struct tsm_priv_restored_context *rc,
                          const struct tsm_priv_restored_vdevice *kept) {
        _cleanup_free_ StoredVDevice *stored = NULL;
        struct timeval tv = { .tv_sec = (time_t) m->config.reclaim_timeout_sec };
        GuestContext *ctx;
        StoredOwner owner;
        size_t n = 0;
        int r;

        if (!reclaim_hex_is_valid(rc->reclaim_id))
                return drop_kept(m, rc, log_warning_errno(-EINVAL, "Dropping a kept context with a malformed reclaim id."));
        ctx = new0(GuestContext, 1);
        if (!ctx)
                return drop_kept(m, rc, log_oom());
        ctx->id = rc->context;
        ctx->slot = TSM_PRIV_SLOT_WORKER;
        ctx->uid = (uid_t) rc->uid;
        ctx->gid = AUDIT_GID_INVALID; /* unless the state file says */
        memcpy(ctx->reclaim_id, rc->reclaim_id, RECLAIM_ID_LEN + 1);

        r = context_store_load(guest_state_dir(m), ctx->reclaim_id, &owner, &stored, &n);
        if (r == -ENOENT) {
                /* Kept by a tsmd that named the file by the token (fdstore.h): renamed, the
                 * token is not left a name in the directory either. */
                r = context_store_adopt_legacy(guest_state_dir(m), ctx->reclaim_id);
                if (r >= 0) {
                        log_info("Renamed the old-style state file of a context of uid %u.", (unsigned) ctx->uid);
                        r = context_store_load(guest_state_dir(m), ctx->reclaim_id, &owner, &stored, &n);
                } else if (r != -ENOENT) {
                        log_warning_errno(r, "Failed to look for an old-style state file of a context, ignoring: %m");
                        r = -ENOENT;
                }
        }
        if (r < 0 && r != -ENOENT)
                state_set_aside(m, ctx, r);
        else if (r >= 0 && owner.uid != ctx->uid) {
                /* SECURITY: the fd name and the state must agree on the owner. */
                log_warning("Stored context state names uid %u, the fd uid %u; dropping it.", (unsigned) owner.uid,
                            (unsigned) ctx->uid);
                n = 0;
        } else if (r >= 0) {
                ctx->gid = owner.gid;
                ctx->pid = owner.pid;
                previous_restore(m, ctx, rc, owner.previous_reclaim_id);
        }

        ctx->vdevices = new0(GuestVDevice, MAX(rc->n_vdevices + n, (size_t) 1));
        if (!ctx->vdevices) {
                guest_context_free(m, ctx);
                return -ENOMEM;
        }
        ctx->allocated_vdevices = MAX(rc->n_vdevices + n, (size_t) 1);

        /* SECURITY: the monitor's record first, and it wins: the state file is the worker's, and
         * the worker before may have been made to write anything into it, or have died before
         * it wrote the last change (tsm-priv.h). */
        for (size_t i = 0; i < rc->n_vdevices; i++)
                if (vdevice_restore_kept(m, ctx, &kept[i]) < 0)
                        break;
        for (size_t i = 0; i < n; i++) {
                const GuestVDevice *known = guest_find_vdevice(ctx, stored[i].id);

                if (known && !streq(known->pci_address, stored[i].pci_address))
                        log_warning("State of a context of uid %u has vDevice %u at '%s', the monitor at %s; "
                                    "keeping the monitor's.", (unsigned) ctx->uid, stored[i].id,
                                    stored[i].pci_address, known->pci_address);
                else if (!known && !rc->partial)
                        log_warning("State of a context of uid %u has vDevice %u at '%s', which the monitor does "
                                    "not have; dropping it.", (unsigned) ctx->uid, stored[i].id, stored[i].pci_address);
                if (known || !rc->partial)
                        continue;
                if (vdevice_restore_stored(m, ctx, &stored[i]) < 0)
                        break;
        }
        /* Whatever the file said, it says now what the context has (or once the save owed is
         * made): the next worker, or tsmd, finds no stale vDevice in it. */
        (void) guest_context_persist(m, ctx);

        if (!GREEDY_REALLOC(m->orphans, m->allocated_orphans, m->n_orphans + 1)) {
                guest_context_free(m, ctx);
                return -ENOMEM;
        }
        m->orphans[m->n_orphans++] = ctx;
        (void) evtimer_add(m->orphan_timeout, &tv);
        log_info("Restored a context of uid %u with %zu vDevices; waiting %" PRIu64 "s for it to be reclaimed.",
                 (unsigned) ctx->uid, ctx->n_vdevices, m->config.reclaim_timeout_sec);
        return 0;
}

/* SECURITY: a context taken back brings its vDevices, bound ones included, with its iommufd:
 * the policy in force must let the reclaimer use each of their devices, as AttachDevice would.
 * The uid and token do not say so: rules tell apart clients of one uid (by group, by unit), and
 * a reload may have taken a grant away since the context was made. A gone vDevice holds no
 * device, only a detach is left to it. Returns the first vDevice refused, with its device's
 * backend (_TSM_BACKEND_TYPE_INVALID if none serves it) and why, or NULL. */
static GuestVDevice *vdevice_refused(Manager *m, GuestClient *c, GuestContext *ctx, TsmBackendType *ret_backend,
                                     const char **ret_reason) {
        for (size_t i = 0; i < ctx->n_vdevices; i++) {
                GuestVDevice *v = &ctx->vdevices[i];
                const char *reason = "not served by this host";
                TsmDeviceInfo info = { .backend = _TSM_BACKEND_TYPE_INVALID };

                if (v->gone)
                        continue;
                /* Served no more, not known gone yet: no backend for the policy to judge. */
                if (tsm_platform_get_device(m->platform, v->pci_address, &info) >= 0 &&
                    policy_check_device(m->policy, &c->identity, v->pci_address, info.backend, &reason) >= 0)
                        continue;
                *ret_backend = info.backend;
                *ret_reason = reason;
                return v;
        }
        return NULL;
}

/* The reclaim answer with the renewed token on its way to the VMM (on_token_sent()). */
typedef struct TokenSent {
        Manager *manager;
        uint32_t context; /* the monitor's id: the context may be released meanwhile */
        char reclaim_id[RECLAIM_ID_LEN + 1]; /* the renewed token's */
} TokenSent;

/* The answer is in the VMM's socket, the renewed token with it: the VMM reads it even if tsmd
 * dies now, so the token it reclaimed with is void from now on. Any other outcome leaves that
 * one valid too (an error went out in place of the answer, or it did not go out entirely):
 * should tsmd restart, the VMM reclaims with whichever it has, and that voids the other. */
static void on_token_sent(int result, void *userdata) {
        TokenSent *ts = userdata;
        GuestContext *ctx;

        if (result >= 0) {
                ctx = guest_find_context_by_id(ts->manager, ts->context);
                if (ctx && streq(ctx->reclaim_id, ts->reclaim_id) && !isempty(ctx->previous_reclaim_id)) {
                        /* Dropped in memory whether or not it is saved now: a context held is
                         * matched by no token, so what it has in memory counts only for the
                         * saves, and the next that succeeds, the retry of this one (guest-save.c)
                         * or of any change, drops it there too. Kept in memory, every later save
                         * would write it again. */
                        ctx->previous_reclaim_id[0] = 0;
                        if (guest_context_persist(ts->manager, ctx) < 0)
                                log_warning("The reclaim token a context of uid %u was reclaimed with stays valid "
                                            "for a reclaim after a restart, until its state is saved again.",
                                            (unsigned) ctx->uid);
                }
        }
        free(ts);
}

/* SECURITY: which token is valid when. A token is a bearer secret a VMM may leak (a log, a
 * core dump), so each reclaim answers a new one and voids the one it was made with. The VMM
 * must never be left without a valid one, whenever tsmd dies:
 *   1. the state file goes under the new token's reclaim id, naming the token reclaimed with
 *      as previous (PreviousReclaimId=; the old file stays): a restart now finds the monitor's
 *      or the fd store's old name, and the old file: the old token only, which the VMM has;
 *   2. the monitor renames the context (RECLAIM_CONTEXT, in the fd store too), then the old
 *      file goes: a restart now finds the new name, and the new file with both ids: either
 *      token reclaims (the VMM may or may not have read the answer);
 *   3. once the answer is written to the VMM's socket entirely (on_token_sent()), previous is
 *      dropped from the file: the new token only, which the VMM reads even if tsmd dies now.
 * Each step replaces a file atomically, or is one message to the monitor, whose rename keeps
 * the fd in the fd store under one name or the other whenever tsmd dies (a carrier holds it
 * there meanwhile: fdstore.h, monitor_contexts_rename()). A reclaim with either id of step 2 is
 * a reclaim like any other: it renews again and voids both. */
static int reclaim_rename(Manager *m, GuestClient *c, GuestContext *ctx, const char *presented_id,
                          char ret_token[static RECLAIM_TOKEN_LEN + 1], bool *ret_renewed, int *ret_fd) {
        char old_id[RECLAIM_ID_LEN + 1], old_previous[RECLAIM_ID_LEN + 1], new_token[RECLAIM_TOKEN_LEN + 1];
        gid_t old_gid = ctx->gid;
        pid_t old_pid = ctx->pid;
        bool renewed = true;
        int r;

        memcpy(old_id, ctx->reclaim_id, sizeof(old_id));
        memcpy(old_previous, ctx->previous_reclaim_id, sizeof(old_previous));
        r = reclaim_token_new(new_token, ctx->reclaim_id);
        if (r < 0)
                return r;
        memcpy(ctx->previous_reclaim_id, presented_id, sizeof(ctx->previous_reclaim_id));
        /* What tsmd does with it from now on (releases) is on behalf of whoever took it back,
         * also after the next restart. */
        ctx->gid = varlink_conn_get_peer(c->conn)->gid;
        ctx->pid = varlink_conn_get_peer(c->conn)->pid;
        if (guest_context_persist(m, ctx) < 0) {
                /* Step 1 is not on disk: renamed now, a restart would find the new name alone,
                 * whose token the VMM may never get. The token stays this time (the monitor
                 * keeps a context's name given its own), as it did before renewal. */
                (void) context_store_remove(guest_state_dir(m), ctx->reclaim_id);
                memcpy(ctx->reclaim_id, old_id, sizeof(old_id));
                memcpy(ctx->previous_reclaim_id, old_previous, sizeof(old_previous));
                renewed = false;
        }

        r = priv_call_reclaim_context(m->channel, c->slot, ctx->id, ctx->reclaim_id, presented_id, ret_fd);
        if (r < 0) {
                /* Lost with the channel, the monitor may have renamed it or not: both files
                 * stay, and the next worker keeps the one of the name the monitor has. */
                if (renewed && !priv_channel_is_gone(m->channel))
                        (void) context_store_remove(guest_state_dir(m), ctx->reclaim_id);
                memcpy(ctx->reclaim_id, old_id, sizeof(old_id));
                memcpy(ctx->previous_reclaim_id, old_previous, sizeof(old_previous));
                ctx->gid = old_gid;
                ctx->pid = old_pid;
                explicit_bzero(new_token, sizeof(new_token));
                return r;
        }
        if (renewed) {
                (void) context_store_remove(guest_state_dir(m), old_id);
                memcpy(ret_token, new_token, sizeof(new_token));
        }
        explicit_bzero(new_token, sizeof(new_token));
        *ret_renewed = renewed;
        return 0;
}

int guest_vl_reclaim_context(VarlinkCall *call, json_object *p, void *userdata) {
        Manager *m = userdata;
        GuestClient *c = guest_client_of(call);
        const char *token = json_get_string(p, "reclaimToken"), *why = NULL;
        uid_t uid = varlink_conn_get_peer(c->conn)->uid;
        bool token_len_ok = token && strlen(token) == RECLAIM_TOKEN_LEN;
        char reclaim_id[RECLAIM_ID_LEN + 1] = {}, new_token[RECLAIM_TOKEN_LEN + 1];
        GuestUsage usage;
        unsigned over_contexts, over_vdevices;
        TokenSent *ts;
        bool renewed;
        GuestContext *ctx = NULL;
        GuestVDevice *refused;
        TsmBackendType backend;
        json_object *reply;
        int idx, fd = -EBADF, r;

        /* Orphans are kept by the reclaim id of their token, never the token (fdstore.h). */
        if (token_len_ok)
                reclaim_id_from_token(token, reclaim_id);
        for (size_t i = 0; i < m->n_orphans; i++) {
                GuestContext *o = m->orphans[i];
                bool current, previous;

                /* SECURITY: the token alone is not enough; it must be the owner asking. The uid
                 * first, so that no other user's guess is compared with a token at all, then the
                 * token's reclaim id, in constant time. The answer does not tell a foreign token
                 * from an unknown one, nor from one void since a reclaim renewed it. The token
                 * before that reclaim counts while its answer may not have reached the VMM
                 * (reclaim_rename()). */
                if (o->uid != uid || !token_len_ok)
                        continue;
                current = memeq_consttime(o->reclaim_id, reclaim_id, RECLAIM_ID_LEN);
                previous = !isempty(o->previous_reclaim_id) &&
                           memeq_consttime(o->previous_reclaim_id, reclaim_id, RECLAIM_ID_LEN);
                if (current || previous) {
                        ctx = o;
                        m->orphans[i] = m->orphans[--m->n_orphans];
                        break;
                }
        }
        if (!ctx) {
                guest_op_set_refused(call);
                return varlink_call_error_kv(call, GUEST_ERROR("ReclaimRefused"),
                                             "reason", json_object_new_string(GUEST_REASON_NO_RECLAIM), NULL);
        }

        /* Taking a context back is taking one: the same rules as for a new one, the policy's
         * of today included, and its devices as for attaching them. Refused, it stays
         * reclaimable (by a less busy client, or by one the policy lets have it). The
         * device is named only to a caller of the owner's uid holding the token: the owner, or
         * whom it told the token. The owner's gid need not match: a VMM may come back under
         * another one (its unit's Group= changed), and what a group tells apart is the
         * policy's to judge, device by device, as it does here. */
        guest_client_usage(c, &usage);
        over_contexts = guest_usage_contexts_over(&usage, 1);
        over_vdevices = guest_usage_vdevices_over(&usage, ctx->n_vdevices);
        if (!policy_is_client(m->policy, &c->identity)) {
                guest_op_set_refused(call);
                guest_op_set_reason(call, GUEST_REASON_NO_CLIENT_RULE);
                r = varlink_call_error_kv(call, GUEST_ERROR("Denied"),
                                          "reason", json_object_new_string(GUEST_REASON_NO_CLIENT_RULE), NULL);
        } else if ((refused = vdevice_refused(m, c, ctx, &backend, &why))) {
                char reason[GUEST_RECLAIM_REASON_MAX + 1];

                guest_op_set_refused(call);
                guest_op_set_device(call, refused->pci_address, backend);
                (void) snprintf(reason, sizeof(reason), "%s (vDevice %" PRIu32 "): %s", refused->pci_address,
                                refused->id, why);
                r = varlink_call_error_kv(call, GUEST_ERROR("ReclaimRefused"),
                                          "reason", json_object_new_string(reason), NULL);
        } else if (over_contexts > 0)
                r = guest_reply_limit(call, "contexts", over_contexts);
        else if (over_vdevices > 0)
                r = guest_reply_limit(call, "vdevices", over_vdevices);
        else if (!GREEDY_REALLOC(c->contexts, c->allocated_contexts, c->n_contexts + 1))
                r = -ENOMEM;
        else
                r = 1;
        if (r <= 0) {
                m->orphans[m->n_orphans++] = ctx;
                return r;
        }
        ts = new0(TokenSent, 1);
        if (!ts) {
                m->orphans[m->n_orphans++] = ctx;
                return -ENOMEM;
        }
        r = reclaim_rename(m, c, ctx, reclaim_id, new_token, &renewed, &fd);
        if (r < 0) {
                free(ts);
                m->orphans[m->n_orphans++] = ctx;
                return log_warning_errno(r, "The monitor could not hand back a context: %m");
        }
        ctx->slot = c->slot;
        ctx->handle = ++c->next_handle;
        c->contexts[c->n_contexts++] = ctx;
        guest_client_contexts_changed(c, 1);
        guest_op_set_context(call, ctx->handle);
        if (renewed) {
                *ts = (TokenSent){ .manager = m, .context = ctx->id };
                memcpy(ts->reclaim_id, ctx->reclaim_id, sizeof(ts->reclaim_id));
                varlink_call_set_sent_callback(call, on_token_sent, ts);
        } else {
                free(ts);
                memcpy(new_token, token, sizeof(new_token)); /* the one it came with stays */
        }

        idx = varlink_call_push_fd(call, fd); /* takes it */
        if (idx < 0) {
                explicit_bzero(new_token, sizeof(new_token));
                return idx;
        }
        log_info("Context of uid %u reclaimed, its reclaim token %s.", (unsigned) uid,
                 renewed ? "renewed" : "kept (its state could not be saved)");

        r = guest_context_reply_new((int64_t) ctx->handle, idx, new_token, &reply);
        explicit_bzero(new_token, sizeof(new_token));
        if (r < 0)
                return r;
        return varlink_call_reply(call, reply);
}

void guest_orphans_free(Manager *m) {
        orphans_release(m);
        free(m->orphans);
        m->orphans = NULL;
        m->allocated_orphans = 0;
}

int guest_setup(Manager *m) {
        m->orphan_timeout = evtimer_new(m->base, on_orphan_timeout, m);
        return m->orphan_timeout ? 0 : -ENOMEM;
}

typedef char ReclaimId[RECLAIM_ID_LEN + 1];

typedef struct RestoredIds {
        ReclaimId *ids; /* sorted */
        size_t n;
} RestoredIds;

static int reclaim_id_compare(const void *a, const void *b) {
        return strcmp(a, b);
}

static bool is_restored(const char *reclaim_id, void *userdata) {
        const RestoredIds *r = userdata;

        return bsearch(reclaim_id, r->ids, r->n, sizeof(ReclaimId), reclaim_id_compare);
}

void guest_restore_done(Manager *m) {
        _cleanup_free_ ReclaimId *ids = NULL;
        int r;

        /* The old-style state file names the restore looked up, tokens among them: not kept. */
        context_store_forget_legacy();

        /* Every context this worker holds is an orphan now: any other state file is of one that
         * is gone, and would stay forever (an old-style one naming its reclaim token). Sorted,
         * as a restore may hold thousands. */
        ids = new(ReclaimId, m->n_orphans);
        if (!ids && m->n_orphans > 0) {
                log_oom();
                return;
        }
        for (size_t i = 0; i < m->n_orphans; i++)
                memcpy(ids[i], m->orphans[i]->reclaim_id, sizeof(ReclaimId));
        if (m->n_orphans > 0)
                qsort(ids, m->n_orphans, sizeof(ReclaimId), reclaim_id_compare);

        r = context_store_sweep(guest_state_dir(m), is_restored, &(RestoredIds) { ids, m->n_orphans });
        if (r == -ENOENT)
                return;
        if (r < 0)
                log_warning_errno(r, "Cannot remove the state of contexts that are gone from '%s': %m",
                                  guest_state_dir(m));
        else if (r > 0)
                log_notice("Removed %d state files of contexts that are gone from '%s'.", r, guest_state_dir(m));
}
