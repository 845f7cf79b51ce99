/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The monitor's table of iommufd contexts. Runs in: monitor. */

#include <inttypes.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "monitor-contexts.h"
#include "tsm-platform.h"

/* A rename's carrier the fd store handed back (fdstore.h): a tsmd died inside the rename. */
typedef struct Carrier {
        int fd;
        uid_t uid;
        char new_id[RECLAIM_ID_LEN + 1], old_id[RECLAIM_ID_LEN + 1];
} Carrier;

struct MonitorContexts {
        TAILQ_HEAD(, MonitorContext) contexts;
        size_t n_contexts, max_contexts;
        uint32_t next_id;
        /* Carriers, until monitor_contexts_restore_done() settles them. */
        Carrier *carriers;
        size_t n_carriers, allocated_carriers;
};

size_t monitor_contexts_max_for_nofile(uint64_t nofile, size_t configured) {
        if (nofile <= MONITOR_FDS_RESERVED)
                return 0;
        return (size_t) MIN((uint64_t) configured, nofile - MONITOR_FDS_RESERVED);
}

int monitor_contexts_new(MonitorContexts **ret) {
        MonitorContexts *c;

        assert(ret);

        c = new0(MonitorContexts, 1);
        if (!c)
                return -ENOMEM;
        TAILQ_INIT(&c->contexts);
        c->max_contexts = SIZE_MAX;
        c->next_id = 1;
        *ret = c;
        return 0;
}

/* Takes ctx's entry out of the fd store, under the name it is stored under: the old-style one
 * if the rename failed, its rename's carrier if the new name failed, its carrier's if it is
 * shared. */
static int context_unstore(MonitorContext *ctx) {
        if (ctx->legacy_name)
                return fdstore_remove_name(ctx->legacy_name);
        if (!isempty(ctx->carried_from))
                return fdstore_remove_moving(ctx->uid, ctx->reclaim_id, ctx->carried_from);
        if (ctx->shared)
                return fdstore_remove_shared(ctx->uid, ctx->reclaim_id, ctx->shared_from);
        return fdstore_remove(ctx->uid, ctx->reclaim_id);
}

static void context_free(MonitorContexts *c, MonitorContext *ctx, bool preserve) {
        TAILQ_REMOVE(&c->contexts, ctx, entry);
        c->n_contexts--;
        if (ctx->stored && !preserve) {
                int r = context_unstore(ctx);
                if (r < 0)
                        log_warning_errno(r, "Failed to remove context %" PRIu32
                                          " from the fd store, ignoring: %m", ctx->id);
        }
        safe_close(ctx->fd);
        free(ctx->legacy_name);
        free(ctx->vdevices);
        free(ctx);
}

MonitorContexts *monitor_contexts_free(MonitorContexts *c, bool preserve) {
        MonitorContext *ctx;

        if (!c)
                return NULL;
        while ((ctx = TAILQ_FIRST(&c->contexts)))
                context_free(c, ctx, preserve);
        for (size_t i = 0; i < c->n_carriers; i++)
                safe_close(c->carriers[i].fd);
        free(c->carriers);
        return mfree(c);
}

void monitor_contexts_set_max(MonitorContexts *c, size_t max) {
        c->max_contexts = max;
}

size_t monitor_contexts_get_max(const MonitorContexts *c) {
        return c->max_contexts;
}

bool monitor_contexts_is_full(const MonitorContexts *c) {
        return c->n_contexts >= c->max_contexts;
}

/* Takes fd (closed on failure too). */
static int context_insert(MonitorContexts *c, int fd, uint32_t slot, uid_t uid, const char *reclaim_id,
                          MonitorContext **ret) {
        _cleanup_close_ int fd_close = fd;
        MonitorContext *ctx;

        /* (uid_t) -1 means "no change" to chown() and friends: never an owner. */
        if (!reclaim_hex_is_valid(reclaim_id) || uid == (uid_t) -1)
                return -EINVAL;
        /* Two fds under one name would leave the fd store together. */
        if (monitor_contexts_find_reclaim_id(c, reclaim_id))
                return -EEXIST;
        /* SECURITY: every context holds an fd; past the cap they would eat the monitor's
         * reserve (MONITOR_FDS_RESERVED), and it could not start a worker any more. */
        if (monitor_contexts_is_full(c))
                return -EMFILE;
        /* Ids are never reused while the monitor runs: a stale id must not reach a new context. */
        if (c->next_id == 0)
                return -ENOSPC;

        ctx = new0(MonitorContext, 1);
        if (!ctx)
                return -ENOMEM;
        ctx->id = c->next_id++;
        ctx->fd = TAKE_FD(fd_close);
        ctx->slot = slot;
        ctx->uid = uid;
        memcpy(ctx->reclaim_id, reclaim_id, sizeof(ctx->reclaim_id));
        TAILQ_INSERT_TAIL(&c->contexts, ctx, entry);
        c->n_contexts++;
        *ret = ctx;
        return 0;
}

/* The context but except whose fd is fd's file description, as the kernel tells (kcmp()): 1 and
 * *ret if one is, 0 if none is, -errno if the kernel cannot tell. */
static int find_same_file(MonitorContexts *c, int fd, const MonitorContext *except, MonitorContext **ret) {
        MonitorContext *ctx;

        TAILQ_FOREACH(ctx, &c->contexts, entry) {
                long r;

                if (ctx == except)
                        continue;
                r = syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, ctx->fd, fd);
                if (r < 0)
                        return negative_errno();
                if (r == 0) {
                        *ret = ctx;
                        return 1;
                }
        }
        return 0;
}

/* Whether ctx's entry in the fd store is to be a carrier of its own (fdstore.h, Shared): another
 * context holds its file description, whose entry may be that file description itself, which
 * systemd keeps one copy of. Not knowing, it is: systemd takes every carrier. */
static bool context_needs_carrier(MonitorContexts *c, MonitorContext *ctx) {
        MonitorContext *other;
        int r;

        r = find_same_file(c, ctx->fd, ctx, &other);
        if (r < 0)
                log_debug_errno(r, "Cannot tell whether context %" PRIu32 " shares its file with another, "
                                "storing it in a carrier: %m", ctx->id);
        return r != 0;
}

int monitor_contexts_add(MonitorContexts *c, int fd, uint32_t slot, uid_t uid, const char *reclaim_id,
                         uint32_t *ret_id) {
        MonitorContext *ctx;
        int r;

        assert(c);
        assert(fd >= 0);

        r = context_insert(c, fd, slot, uid, reclaim_id, &ctx);
        if (r < 0)
                return r;

        if (fdstore_available()) {
                /* SECURITY: an AdoptContext of an iommufd another context holds (the VM's one
                 * iommufd on several connections) must not leave this one out of the store
                 * without a word, to be forgotten at a restart with what it has bound. */
                bool shared = context_needs_carrier(c, ctx);

                r = shared ? fdstore_put_shared(ctx->fd, uid, reclaim_id, NULL) : fdstore_put(ctx->fd, uid, reclaim_id);
                if (r < 0)
                        log_warning_errno(r, "Failed to store context %" PRIu32 " with the service manager, "
                                          "it will not survive a restart of tsmd: %m", ctx->id);
                else {
                        ctx->stored = true;
                        ctx->shared = shared;
                }
        }

        if (ret_id)
                *ret_id = ctx->id;
        return 0;
}

/* Keeps fd if fdname is a carrier's (-EINVAL, fd not taken, if not; closed on other failures). */
static int carrier_keep(MonitorContexts *c, int fd, const char *fdname, uint32_t *ret_id) {
        Carrier k;
        int r;

        r = fdstore_parse_moving_name(fdname, &k.uid, k.new_id, k.old_id);
        if (r < 0)
                return r;
        if (!GREEDY_REALLOC(c->carriers, c->allocated_carriers, c->n_carriers + 1)) {
                safe_close(fd);
                return -ENOMEM;
        }
        k.fd = fd;
        c->carriers[c->n_carriers++] = k;
        if (ret_id)
                *ret_id = 0;
        return 1;
}

/* Restores the context a shared context's carrier holds (fdstore.h, Shared), taking carrier. */
static int shared_restore(MonitorContexts *c, int carrier, const char *fdname, uid_t uid, const char *reclaim_id,
                          const char *from, uint32_t *ret_id) {
        MonitorContext *ctx;
        int fd, r;

        /* A copy: systemd keeps the carrier, and the fd in it, for the next start. */
        r = fdstore_carried_fd(carrier, &fd);
        safe_close(carrier);
        if (r < 0)
                log_warning_errno(r, "Dropping a context of uid %u the fd store kept in a carrier that holds no fd: %m",
                                  (unsigned) uid);
        else
                r = context_insert(c, fd, TSM_PRIV_SLOT_WORKER, uid, reclaim_id, &ctx);
        if (r < 0 && r != -EEXIST && r != -ENOMEM) {
                /* Holding nothing, or past the maximum: it would come back at every start, and
                 * never be reclaimed. */
                int k = fdstore_remove_name(fdname);
                if (k < 0 && k != -EOPNOTSUPP)
                        log_warning_errno(k, "Failed to remove context of uid %u from the fd store, ignoring: %m",
                                          (unsigned) uid);
        }
        if (r < 0)
                return r;
        ctx->partial = true;
        /* Not stored again: the service manager has it already. */
        ctx->stored = ctx->shared = true;
        strcpy(ctx->shared_from, from);
        log_info("Restored context %" PRIu32 " of uid %u from the fd store (one of several of its file).", ctx->id,
                 (unsigned) uid);
        if (ret_id)
                *ret_id = ctx->id;
        return 0;
}

int monitor_contexts_restore(MonitorContexts *c, int fd, const char *fdname, uint32_t *ret_id) {
        _cleanup_free_ char *legacy_name = NULL;
        char reclaim_id[RECLAIM_ID_LEN + 1], from[RECLAIM_ID_LEN + 1];
        MonitorContext *ctx;
        bool legacy;
        uid_t uid;
        int r;

        assert(c);
        assert(fd >= 0);

        r = carrier_keep(c, fd, fdname, ret_id);
        if (r != -EINVAL)
                return r;
        if (fdstore_parse_shared_name(fdname, &uid, reclaim_id, from) >= 0)
                return shared_restore(c, fd, fdname, uid, reclaim_id, from, ret_id);
        r = fdstore_parse_name(fdname, &uid, reclaim_id, &legacy);
        if (r < 0) {
                safe_close(fd);
                return r;
        }
        if (legacy && fdstore_available()) {
                /* Before the context is made: kept if the rename fails, and no failure after. */
                legacy_name = strdup(fdname);
                if (!legacy_name) {
                        safe_close(fd);
                        return -ENOMEM;
                }
        }
        r = context_insert(c, fd, TSM_PRIV_SLOT_WORKER, uid, reclaim_id, &ctx);
        if (r == -EMFILE || (r == -EEXIST && legacy_name)) {
                /* Kept by the service manager, it would come back at every start, and never be
                 * reclaimed: the VMM keeps its own fd, only tsmd forgets the context. An old-style
                 * name of a context restored already (under its new name) would come back too,
                 * the token in it listable, unless the context known is the one stored under
                 * this very name (its rename failed): that one stays. */
                MonitorContext *known = r == -EEXIST ? monitor_contexts_find_reclaim_id(c, reclaim_id) : NULL;

                if (!known || !known->legacy_name || !streq(known->legacy_name, fdname)) {
                        int k = fdstore_remove_name(fdname);
                        if (k < 0 && k != -EOPNOTSUPP)
                                log_warning_errno(k, "Failed to remove context of uid %u from the fd store, ignoring: %m",
                                                  (unsigned) uid);
                }
        }
        if (r < 0)
                return r;
        ctx->partial = true;
        /* Not stored again: the service manager has it already. */
        ctx->stored = true;

        if (legacy_name) {
                /* SECURITY: named by its reclaim token by a tsmd before this one, a name any local
                 * user may list: renamed to its reclaim id. Removed first, as systemd keeps no
                 * second copy of an fd it has (it would drop the new one and keep the old), and
                 * stored under the new name only once the old is gone. A crash between the two
                 * loses the context to tsmd, not to its VMM, which holds its fd. */
                r = fdstore_remove_name(fdname);
                if (r < 0) {
                        /* Still stored, under the old name: removed by that name when the context
                         * ends, renamed at the next start if it is still there. */
                        log_warning_errno(r, "Failed to remove the old-style fd store entry of context %" PRIu32
                                          ", keeping it under that name: %m", ctx->id);
                        ctx->legacy_name = TAKE_PTR(legacy_name);
                } else {
                        r = fdstore_put(ctx->fd, uid, ctx->reclaim_id);
                        if (r < 0) {
                                log_warning_errno(r, "Failed to store context %" PRIu32 " under its new name, "
                                                  "it will not survive a restart of tsmd: %m", ctx->id);
                                ctx->stored = false;
                        }
                }
        }

        log_info("Restored context %" PRIu32 " of uid %u from the fd store%s.", ctx->id, (unsigned) uid,
                 legacy ? " (under an old-style name)" : "");
        if (ret_id)
                *ret_id = ctx->id;
        return 0;
}

/* The carrier whose context is here under either of its ids is done: its rename had got as far
 * as storing the fd under its new name, or not as far as taking the old one out. One alone stands
 * for its context: the fd goes in under the new id, as the rename would have put it, then the
 * carrier goes. Either way the store ends with the fd under one name. */
static void carrier_settle(MonitorContexts *c, Carrier *k) {
        MonitorContext *known = monitor_contexts_find_reclaim_id(c, k->new_id) ?: monitor_contexts_find_reclaim_id(c, k->old_id);
        MonitorContext *ctx;
        int fd, r;

        if (known && known->uid == k->uid) {
                log_info("Kept context %" PRIu32 " of uid %u under the name it had, a rename a restart cut off undone.",
                         known->id, (unsigned) k->uid);
                goto drop;
        }
        r = fdstore_carried_fd(k->fd, &fd);
        if (r < 0) {
                log_warning_errno(r, "Dropping a renamed context of uid %u the fd store kept in a carrier that "
                                  "holds no fd: %m", (unsigned) k->uid);
                goto drop;
        }
        /* SECURITY: a carrier left behind (its removal failed) by a rename done long ago, the
         * context renamed since: restored under its id, a second context of the fd would come
         * back reclaimable by a token that is void. */
        r = find_same_file(c, fd, NULL, &known);
        if (r < 0) {
                /* Not knowing, it stays where it is, for a start that can tell. */
                log_warning_errno(r, "Cannot tell whether a renamed context of uid %u in the fd store is one "
                                  "restored already, keeping it there unused: %m", (unsigned) k->uid);
                safe_close(fd);
                goto keep;
        }
        if (r > 0) {
                log_warning("Dropping a stale rename's carrier of context %" PRIu32 " of uid %u.", known->id,
                            (unsigned) k->uid);
                safe_close(fd);
                goto drop;
        }
        r = context_insert(c, fd, TSM_PRIV_SLOT_WORKER, k->uid, k->new_id, &ctx);
        if (r == -ENOMEM) {
                /* The context is still good: the next start may have the memory. */
                log_warning_errno(r, "Cannot restore a renamed context of uid %u from the fd store now, "
                                  "keeping it there for the next start: %m", (unsigned) k->uid);
                goto keep;
        }
        if (r < 0) {
                log_warning_errno(r, "Dropping a renamed context of uid %u the fd store kept in a carrier: %m",
                                  (unsigned) k->uid);
                goto drop;
        }
        ctx->partial = true;
        ctx->stored = true;
        log_info("Restored context %" PRIu32 " of uid %u from the fd store, from a rename a restart cut off.", ctx->id,
                 (unsigned) ctx->uid);
        r = fdstore_put(ctx->fd, ctx->uid, ctx->reclaim_id);
        if (r < 0) {
                /* The carrier stays, as after the rename's own put failed (monitor_contexts_rename()). */
                log_warning_errno(r, "Failed to store context %" PRIu32 " under its new name, keeping "
                                  "it in the fd store in its rename's carrier: %m", ctx->id);
                memcpy(ctx->carried_from, k->old_id, sizeof(ctx->carried_from));
                goto keep;
        }
        goto drop;
keep:
        safe_close(k->fd);
        return;
drop:
        r = fdstore_remove_moving(k->uid, k->new_id, k->old_id);
        if (r < 0 && r != -EOPNOTSUPP)
                log_warning_errno(r, "Failed to remove a rename's carrier from the fd store, ignoring: %m");
        safe_close(k->fd);
}

/* A shared context's rename cut off (fdstore.h, Shared): the context came back under the id it
 * was renamed from too. The rename had not taken the old name out, so its answer never left: the
 * VMM has the old token, and the worker the old id's state. The new entry goes. */
static void shared_renames_settle(MonitorContexts *c) {
        MonitorContext *ctx, *next, *old;

        for (ctx = TAILQ_FIRST(&c->contexts); ctx; ctx = next) {
                next = TAILQ_NEXT(ctx, entry);
                if (!ctx->shared || isempty(ctx->shared_from))
                        continue;
                old = monitor_contexts_find_reclaim_id(c, ctx->shared_from);
                if (!old || old == ctx || old->uid != ctx->uid)
                        continue;
                log_info("Kept context %" PRIu32 " of uid %u under the name it had, a rename a restart cut off "
                         "undone.", old->id, (unsigned) old->uid);
                context_free(c, ctx, false);
        }
}

void monitor_contexts_restore_done(MonitorContexts *c) {
        shared_renames_settle(c);
        for (size_t i = 0; i < c->n_carriers; i++)
                carrier_settle(c, &c->carriers[i]);
        c->carriers = mfree(c->carriers);
        c->n_carriers = c->allocated_carriers = 0;
}

/* The shared context's rename (fdstore.h, Shared): the new entry in first, a carrier naming the
 * old id, then the old name out. */
static int rename_shared(MonitorContext *ctx, const char *reclaim_id) {
        int r;

        r = fdstore_put_shared(ctx->fd, ctx->uid, reclaim_id, ctx->reclaim_id);
        if (r < 0)
                return log_warning_errno(r, "Failed to store context %" PRIu32 " under its new name, keeping its "
                                         "name: %m", ctx->id);
        /* SECURITY: the old name goes, and for good, as below. */
        r = context_unstore(ctx);
        if (r < 0) {
                /* Should the new entry stay too, a start keeps the old name, as here. */
                (void) fdstore_remove_shared(ctx->uid, reclaim_id, ctx->reclaim_id);
                return log_warning_errno(r, "Failed to take context %" PRIu32 " out of the fd store to rename it, "
                                         "keeping its name: %m", ctx->id);
        }
        ctx->legacy_name = mfree(ctx->legacy_name);
        ctx->carried_from[0] = 0;
        ctx->shared = true;
        memcpy(ctx->shared_from, ctx->reclaim_id, sizeof(ctx->shared_from));
        return 0;
}

int monitor_contexts_rename(MonitorContexts *c, MonitorContext *ctx, const char *reclaim_id) {
        int r;

        if (!reclaim_hex_is_valid(reclaim_id))
                return -EINVAL;
        if (monitor_contexts_find_reclaim_id(c, reclaim_id))
                return -EEXIST;

        if (ctx->stored && context_needs_carrier(c, ctx)) {
                /* Not the way below: dying with the fd in the rename's carrier alone, the context
                 * would come back as a stale carrier of another context's file, dropped. */
                r = rename_shared(ctx, reclaim_id);
                if (r < 0)
                        return r;
        } else if (ctx->stored) {
                /* The fd stays in the store, under one name or the other, whenever tsmd dies: a
                 * carrier holds it in the store while it changes names (fdstore.h). */
                r = fdstore_put_moving(ctx->fd, ctx->uid, reclaim_id, ctx->reclaim_id);
                if (r < 0)
                        return log_warning_errno(r, "Failed to store context %" PRIu32 " for its rename, "
                                                 "keeping its name: %m", ctx->id);
                /* SECURITY: the old name goes, and for good: under it, the next tsmd would
                 * restore the context by the old token's id, which the VMM is done with. */
                r = context_unstore(ctx);
                if (r < 0) {
                        (void) fdstore_remove_moving(ctx->uid, reclaim_id, ctx->reclaim_id);
                        return log_warning_errno(r, "Failed to take context %" PRIu32 " out of the fd store "
                                                 "to rename it, keeping its name: %m", ctx->id);
                }
                ctx->legacy_name = mfree(ctx->legacy_name);
                /* Its file its own now (its siblings ended): under its name, as any. */
                ctx->shared = false;
                ctx->shared_from[0] = 0;
                r = fdstore_put(ctx->fd, ctx->uid, reclaim_id);
                if (r < 0) {
                        /* The carrier stays, the one entry that holds the fd: a start restores the
                         * context from it under its new name (carrier_settle()), its end takes it
                         * out. */
                        log_warning_errno(r, "Failed to store context %" PRIu32 " under its new name, keeping "
                                          "it in the fd store in its rename's carrier: %m", ctx->id);
                        memcpy(ctx->carried_from, ctx->reclaim_id, sizeof(ctx->carried_from));
                } else {
                        ctx->carried_from[0] = 0;
                        r = fdstore_remove_moving(ctx->uid, reclaim_id, ctx->reclaim_id);
                        if (r < 0)
                                /* The next start finds the context under its name, and drops the
                                 * carrier; one of a context that ended by then comes back, unreclaimed. */
                                log_warning_errno(r, "Failed to take the carrier of context %" PRIu32
                                                  " out of the fd store, ignoring: %m", ctx->id);
                }
        }
        memcpy(ctx->reclaim_id, reclaim_id, sizeof(ctx->reclaim_id));
        return 0;
}

MonitorContext *monitor_contexts_get(MonitorContexts *c, uint32_t id) {
        MonitorContext *ctx;

        TAILQ_FOREACH(ctx, &c->contexts, entry)
                if (ctx->id == id)
                        return ctx;
        return NULL;
}

MonitorContext *monitor_contexts_find_reclaim_id(MonitorContexts *c, const char *reclaim_id) {
        MonitorContext *ctx;

        TAILQ_FOREACH(ctx, &c->contexts, entry)
                if (streq(ctx->reclaim_id, reclaim_id))
                        return ctx;
        return NULL;
}

MonitorVDevice *monitor_contexts_find_device(MonitorContexts *c, const char *pci_address,
                                             MonitorContext **ret_ctx) {
        MonitorContext *ctx;

        TAILQ_FOREACH(ctx, &c->contexts, entry)
                for (size_t i = 0; i < ctx->n_vdevices; i++)
                        if (!ctx->vdevices[i].gone && streq(ctx->vdevices[i].pci_address, pci_address)) {
                                if (ret_ctx)
                                        *ret_ctx = ctx;
                                return &ctx->vdevices[i];
                        }
        return NULL;
}

bool monitor_vdevice_bound_eventually(const MonitorVDevice *v) {
        return !v->gone && (v->n_changes > 0 ? v->bound_next : v->bound);
}

static void log_release_unbind(const char *address, uint32_t context, int result) {
        if (result == -ENODEV)
                log_info("Device %s of context %" PRIu32 " is gone, nothing to unbind.", address, context);
        else if (result < 0)
                log_warning_errno(result, "Failed to unbind %s of context %" PRIu32 " while releasing it, ignoring: %m",
                                  address, context);
        else
                log_info("Unbound %s of context %" PRIu32 " while releasing it.", address, context);
}

static void on_release_unbound(TsmRequest *req, int result, void *userdata) {
        log_release_unbind(tsm_request_get_pci_address(req), (uint32_t) (uintptr_t) userdata, result);
}

static void vdevice_unbind(MonitorContext *ctx, TsmPlatform *p, MonitorVDevice *v) {
        TsmTarget t = { .pci_address = v->pci_address, .iommufd = ctx->fd, .vdevice_id = v->id };
        int r;

        /* SECURITY: a gone vDevice's address may name another device by now. A bind still on
         * its way is undone too: the device must not stay locked for a guest that let it go.
         * Nor may what its guest did itself stay for the next: an emulated TDI it locked or
         * started (scope state-change), data it left in the device's memory or registers. */
        if (v->gone)
                return;
        if (!monitor_vdevice_bound_eventually(v) && !tsm_platform_needs_release(p, v->pci_address))
                return;
        r = tsm_platform_release(p, &t, on_release_unbound, (void *) (uintptr_t) ctx->id, NULL);
        if (r < 0)
                log_release_unbind(v->pci_address, ctx->id, r);
        v->bound = v->bound_next = false;
}

int monitor_contexts_remove(MonitorContexts *c, TsmPlatform *p, uint32_t id) {
        MonitorContext *ctx = monitor_contexts_get(c, id);

        assert(p);

        if (!ctx)
                return -ENOENT;
        for (size_t i = 0; i < ctx->n_vdevices; i++)
                vdevice_unbind(ctx, p, &ctx->vdevices[i]);
        context_free(c, ctx, false);
        return 0;
}

void monitor_contexts_device_gone(MonitorContexts *c, const char *pci_address) {
        MonitorContext *ctx;

        TAILQ_FOREACH(ctx, &c->contexts, entry)
                for (size_t i = 0; i < ctx->n_vdevices; i++) {
                        MonitorVDevice *v = &ctx->vdevices[i];

                        if (v->gone || !streq(v->pci_address, pci_address))
                                continue;
                        /* The TDI went with the device: nothing is bound any more. */
                        v->gone = true;
                        v->bound = false;
                        log_info("vDevice %" PRIu32 " of context %" PRIu32 " lost its device %s.", v->id,
                                 ctx->id, pci_address);
                }
}

void monitor_contexts_device_unbound(MonitorContexts *c, const char *pci_address) {
        MonitorContext *ctx;

        TAILQ_FOREACH(ctx, &c->contexts, entry)
                for (size_t i = 0; i < ctx->n_vdevices; i++) {
                        MonitorVDevice *v = &ctx->vdevices[i];

                        /* One with a change on its way: what the scan saw may be that change. */
                        if (v->gone || !v->bound || v->n_changes > 0 || !streq(v->pci_address, pci_address))
                                continue;
                        v->bound = v->bound_next = false;
                        v->unbound_outside = true;
                        log_notice("vDevice %" PRIu32 " of context %" PRIu32 " lost its binding of %s outside tsmd "
                                   "(tsm/bound is empty): unbound.",
                                   v->id, ctx->id, pci_address);
                }
}

void monitor_contexts_orphan_all(MonitorContexts *c) {
        MonitorContext *ctx;

        TAILQ_FOREACH(ctx, &c->contexts, entry)
                ctx->slot = TSM_PRIV_SLOT_WORKER;
}

size_t monitor_contexts_size(const MonitorContexts *c) {
        return c->n_contexts;
}

MonitorContext *monitor_contexts_next(MonitorContexts *c, MonitorContext *prev) {
        return prev ? TAILQ_NEXT(prev, entry) : TAILQ_FIRST(&c->contexts);
}

MonitorVDevice *monitor_context_find_vdevice(MonitorContext *ctx, uint32_t id) {
        for (size_t i = 0; i < ctx->n_vdevices; i++)
                if (ctx->vdevices[i].id == id)
                        return &ctx->vdevices[i];
        return NULL;
}

int monitor_context_add_vdevice(MonitorContext *ctx, uint32_t id, const char *pci_address,
                                MonitorVDevice **ret) {
        MonitorVDevice *v;

        if (id == 0 || !pci_address || strlen(pci_address) >= sizeof(v->pci_address))
                return -EINVAL;
        if (monitor_context_find_vdevice(ctx, id))
                return -EEXIST;
        if (!GREEDY_REALLOC(ctx->vdevices, ctx->allocated_vdevices, ctx->n_vdevices + 1))
                return -ENOMEM;

        v = &ctx->vdevices[ctx->n_vdevices++];
        *v = (MonitorVDevice){ .id = id, .serial = ++ctx->next_serial };
        strcpy(v->pci_address, pci_address);
        if (ret)
                *ret = v;
        return 0;
}

void monitor_context_remove_vdevice(MonitorContext *ctx, TsmPlatform *p, MonitorVDevice *v) {
        assert(v >= ctx->vdevices && v < ctx->vdevices + ctx->n_vdevices);

        vdevice_unbind(ctx, p, v);
        *v = ctx->vdevices[--ctx->n_vdevices];
}

bool monitor_contexts_holds_device(const char *pci_address, bool *ret_bound, void *userdata) {
        MonitorVDevice *v = monitor_contexts_find_device(userdata, pci_address, NULL);

        if (!v)
                return false;
        *ret_bound = v->bound && v->n_changes == 0;
        return true;
}
