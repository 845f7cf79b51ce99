/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io.tsmd.Guest's contexts: OpenContext, AdoptContext and CloseContext, and the release of a
 * context and its vDevices (unbound and detached) when it goes, with the audit records of the
 * releases tsmd makes without a call. Runs in: worker.
 */

#include "audit-log.h"
#include "context-store.h"
#include "fd-fuse.h"
#include "fdstore.h"
#include "guest-internal.h"
#include "guest-op.h"
#include "json-util.h"
#include "log.h"
#include "policy.h"
#include "priv-call.h"
#include "tsm-platform.h"

/* SECURITY: whether fd could be what AdoptContext wants, judged as the monitor does first, the
 * coarse part: anything but a character device or a memfd the monitor would take for the worker's
 * doing (a violation), and it would have to close it: for an fd of a FUSE file system the client
 * serves, a close that waits on the client, with the monitor's closes after it (fd-closer.h). */
static bool fd_may_be_iommufd(int fd) {
        return fd_is_device_or_memfd(fd) > 0;
}

/* Makes a context for the calling client: the monitor opens a fresh iommufd (adopt_fd < 0,
 * its duplicate for the client in *ret_fd) or adopts the client's. ret_token: its reclaim
 * token, for the reply and nothing else (the context keeps its reclaim id). Returns 1 when a
 * context was made, 0 when the client got an error reply. */
static int add_context(VarlinkCall *call, int adopt_fd, GuestContext **ret,
                       char ret_token[static RECLAIM_TOKEN_LEN + 1], int *ret_fd) {
        GuestClient *c = guest_client_of(call);
        Manager *m = c->manager;
        _cleanup_free_ GuestContext *ctx = NULL;
        GuestUsage usage;
        unsigned over;
        char token[RECLAIM_TOKEN_LEN + 1];
        int r;

        /* SECURITY: only clients the policy knows get an iommufd. */
        if (!policy_is_client(m->policy, &c->identity))
                return guest_reply_denied(call, GUEST_REASON_NO_CLIENT_RULE);
        guest_client_usage(c, &usage);
        over = guest_usage_contexts_over(&usage, 1);
        if (over > 0)
                return guest_reply_limit(call, "contexts", over);
        /* SECURITY: MaxContexts= is one pool; without a share per uid, one uid's processes (each
         * within its rule, MaxConnectionsPerUid= of them) could take all of it. Counted as the
         * pool is, its orphans too: a reclaim takes no more of either. */
        if (guest_n_contexts_of_uid(m, c->identity.uid) >= m->config.max_contexts_per_uid)
                return guest_reply_limit(call, "contexts-uid", m->config.max_contexts_per_uid);
        /* Each is an fd the monitor holds: the orphans waiting for their owners count too. */
        if (guest_n_contexts(m) >= guest_max_contexts(m))
                return guest_reply_limit(call, "contexts-total", guest_max_contexts(m));
        if (!GREEDY_REALLOC(c->contexts, c->allocated_contexts, c->n_contexts + 1))
                return -ENOMEM;
        ctx = new0(GuestContext, 1);
        if (!ctx)
                return -ENOMEM;
        ctx->slot = c->slot;
        ctx->uid = varlink_conn_get_peer(c->conn)->uid;
        ctx->gid = varlink_conn_get_peer(c->conn)->gid;
        ctx->pid = varlink_conn_get_peer(c->conn)->pid;
        r = reclaim_token_new(token, ctx->reclaim_id);
        if (r < 0)
                return r;

        /* The monitor keeps the iommufd (and a copy with the service manager, if there is one),
         * so neither a restart of the worker nor of tsmd tears the context down. */
        if (adopt_fd >= 0 && !fd_may_be_iommufd(adopt_fd)) {
                guest_op_set_refused(call); /* the monitor was not asked */
                r = -EBADF;
        } else {
                guest_op_set_forwarded(call);
                r = adopt_fd >= 0 ? priv_call_adopt_context(m->channel, c->slot, ctx->uid, ctx->reclaim_id, adopt_fd,
                                                            &ctx->id)
                                  : priv_call_open_context(m->channel, c->slot, ctx->uid, ctx->reclaim_id, &ctx->id,
                                                           ret_fd);
        }
        /* Only the fd the client passed can be bad: the host's own IOMMU device missing or not
         * one (IommuDevice= naming something else: ENODEV) is the host's fault, io.tsmd.System. */
        if (adopt_fd >= 0 && (r == -EBADF || r == -EACCES))
                return varlink_call_error_kv(call, GUEST_ERROR("BadFileDescriptor"),
                                             "field", json_object_new_string("fileDescriptor"),
                                             "reason",
                                             json_object_new_string(r == -EBADF ? GUEST_REASON_NOT_IOMMUFD :
                                                                                  GUEST_REASON_NOT_RDWR),
                                             NULL);
        if (r == -EMFILE)
                /* The monitor holds one we do not count (one we could not restore, say). */
                return guest_reply_limit(call, "contexts-total", guest_max_contexts(m));
        if (r < 0)
                return log_warning_errno(r, "The monitor could not make a context: %m");
        ctx->handle = ++c->next_handle;
        c->contexts[c->n_contexts++] = ctx;
        guest_client_contexts_changed(c, 1);
        guest_op_set_context(call, ctx->handle);
        *ret = TAKE_PTR(ctx);
        /* Once held: a save that fails is owed, and tried again for as long as it is. */
        (void) guest_context_persist(m, *ret);
        memcpy(ret_token, token, sizeof(token));
        explicit_bzero(token, sizeof(token));
        return 1;
}

int guest_context_reply_new(int64_t handle, int64_t fd_index, const char *token, json_object **ret) {
        json_object *reply = json_object_new_object();

        if (!reply || json_object_add(reply, "context", json_object_new_int64(handle)) < 0 ||
            (fd_index >= 0 && json_object_add(reply, "fileDescriptor", json_object_new_int64(fd_index)) < 0) ||
            (token && json_object_add(reply, "reclaimToken", json_object_new_string(token)) < 0)) {
                json_object_put(reply);
                return -ENOMEM;
        }
        *ret = reply;
        return 0;
}

static int reply_context(VarlinkCall *call, const GuestContext *ctx, const char *token, int fd_index) {
        json_object *reply;
        int r;

        r = guest_context_reply_new((int64_t) ctx->handle, fd_index, token, &reply);
        if (r < 0)
                return r;
        return varlink_call_reply(call, reply);
}

int guest_vl_open_context(VarlinkCall *call, json_object *p, void *userdata) {
        GuestContext *ctx;
        char token[RECLAIM_TOKEN_LEN + 1];
        int r, fd = -EBADF, idx;

        r = add_context(call, -EBADF, &ctx, token, &fd);
        if (r <= 0)
                return r;
        idx = varlink_call_push_fd(call, fd); /* takes it */
        if (idx >= 0)
                idx = reply_context(call, ctx, token, idx);
        explicit_bzero(token, sizeof(token));
        return idx;
}

int guest_vl_adopt_context(VarlinkCall *call, json_object *p, void *userdata) {
        char token[RECLAIM_TOKEN_LEN + 1];
        GuestContext *ctx;
        int fd, r;

        /* SECURITY: the monitor checks that it is an iommufd before it keeps it. */
        fd = varlink_call_get_fd_parameter(call, p, "fileDescriptor");
        if (fd == -EMFILE)
                return guest_fd_lost("fileDescriptor");
        if (fd < 0)
                return varlink_call_error_kv(call, GUEST_ERROR("BadFileDescriptor"),
                                             "field", json_object_new_string("fileDescriptor"),
                                             "reason", json_object_new_string(GUEST_REASON_NO_FD), NULL);
        r = add_context(call, fd, &ctx, token, NULL);
        if (r <= 0)
                return r;
        r = reply_context(call, ctx, token, -1);
        explicit_bzero(token, sizeof(token));
        return r;
}

Release *guest_release_free(Release *rel) {
        if (rel)
                free(rel->pci_address);
        return mfree(rel);
}

/* A failed release's record, which a late answer of the kernel names: held for a pending reopen
 * of the log, it is remembered once numbered. */
typedef struct ReleaseOrigin {
        Manager *manager;
        uint32_t priv_cookie;
} ReleaseOrigin;

/* Records what tsmd does on a client's behalf without a call. */
static void on_release_recorded(AuditLog *a, uint64_t seq, int error, void *userdata) {
        free(userdata); /* the ReleaseOrigin, if any */
        if (error < 0)
                log_error_errno(error, "Audit record of a release failed: %m");
}

static void on_release_numbered(AuditLog *a, uint64_t seq, void *userdata) {
        ReleaseOrigin *o = userdata;

        guest_late_remember(o->manager, o->priv_cookie, seq);
}

void guest_audit_release(const Release *rel, int result) {
        AuditRecord rec = AUDIT_RECORD_INIT;
        ReleaseOrigin *origin = NULL;
        TsmDeviceInfo info;
        bool gate_refused;
        uint64_t seq = 0;
        int r;

        rec.event = rel->event;
        rec.uid = rel->uid;
        rec.gid = rel->gid;
        rec.pid = rel->pid;
        rec.context_id = rel->context > 0 ? rel->context : AUDIT_U64_NONE; /* handles start at 1 */
        rec.vdevice_id = rel->vdevice;
        rec.pci = rel->pci_address;
        if (tsm_platform_get_device(rel->manager->platform, rel->pci_address, &info) >= 0)
                rec.backend = tsm_backend_type_to_string(info.backend);
        /* Timeout: the TSM gave up, or had not answered when the worker exited; either way
         * nobody knows what the device did. DeviceGone: the device went while the TSM had it,
         * recorded not done as a Bind or Unbind is. Denied: the monitor's gate refused a
         * restore-bind (of a device no policy rule lists any more), as it would a Bind; an
         * unbind (release, restore-unbind) passes no gate, its EPERM is the kernel's. */
        gate_refused = result == -EPERM && streq(rel->event, audit_event_to_string(AUDIT_EVENT_RESTORE_BIND));
        rec.result = result >= 0            ? "ok" :
                     result == -ETIMEDOUT   ? GUEST_ERROR("Timeout") :
                     result == -ENODEV      ? GUEST_ERROR("DeviceGone") :
                     gate_refused           ? GUEST_ERROR("Denied") :
                                              GUEST_ERROR("BackendError");
        /* It failed while the kernel may have it: a late answer names this record, numbered now
         * or, held for a pending reopen of the log, once the reopen finished. Without memory for
         * the link, a late answer during a reopen lacks its originalSeq. */
        if (result < 0 && rel->priv_cookie != 0) {
                origin = new(ReleaseOrigin, 1);
                if (origin)
                        *origin = (ReleaseOrigin){ .manager = rel->manager, .priv_cookie = rel->priv_cookie };
        }
        /* SECURITY: it happened, so it is owed even while the log cannot take it (full, failed):
         * kept then, and written once it can, else the log would show the device bound still. */
        r = audit_log_record_owed_kept(rel->manager->audit, &rec, on_release_recorded,
                                       origin ? on_release_numbered : NULL, origin, &seq);
        if (r < 0) {
                on_release_recorded(rel->manager->audit, 0, r, origin);
                return;
        }
        if (result < 0)
                guest_late_remember(rel->manager, rel->priv_cookie, seq); /* 0 if held or kept: on_release_numbered() */
}

static void on_context_release_recorded(AuditLog *a, uint64_t seq, int error, void *userdata) {
        if (error < 0)
                log_error_errno(error, "Audit record of a context's release failed: %m");
}

void guest_audit_context_release(Manager *m, const GuestContext *ctx) {
        AuditRecord rec = AUDIT_RECORD_INIT;
        int r;

        if (m->preserve_contexts)
                return;
        rec.event = audit_event_to_string(AUDIT_EVENT_RELEASE_CONTEXT);
        rec.uid = ctx->uid;
        rec.gid = ctx->gid;
        rec.pid = ctx->pid;
        rec.context_id = ctx->handle > 0 ? ctx->handle : AUDIT_U64_NONE;
        rec.result = "ok";
        /* SECURITY: it happened: kept while the log cannot take it, as a release is. */
        r = audit_log_record_owed_kept(m->audit, &rec, on_context_release_recorded, NULL, NULL, NULL);
        if (r < 0)
                on_context_release_recorded(m->audit, 0, r, NULL);
}

static void on_release_unbound(int result, const void *response, size_t len, void *userdata) {
        Release *rel = userdata;

        if (result < 0)
                log_warning_errno(result, "Failed to unbind %s while releasing it: %m", rel->pci_address);
        guest_audit_release(rel, result);
        if (result >= 0)
                tsm_platform_refresh_binding(rel->manager->platform, rel->pci_address, false);
        guest_release_free(rel);
}

/* Unbinds one vDevice if it is (or is being) bound, and forgets it. The unbind completes later,
 * on its device's lane in the monitor, and is recorded then; the detach sent right after it
 * cannot overtake it, and what the next guest of the device sends queues behind it. */
void guest_vdevice_release(Manager *m, GuestContext *ctx, GuestVDevice *v) {
        int r;

        if ((v->bound || v->changing) && !v->gone) {
                Release *rel = new0(Release, 1);

                if (rel)
                        *rel = (Release){ .manager = m, .event = audit_event_to_string(AUDIT_EVENT_RELEASE),
                                          .uid = ctx->uid, .gid = ctx->gid, .pid = ctx->pid,
                                          .context = ctx->handle, .context_id = ctx->id, .vdevice = v->id,
                                          .pci_address = strdup(v->pci_address) };
                if (!rel || !rel->pci_address) {
                        /* The monitor unbinds it at the detach below all the same, unrecorded. */
                        log_oom();
                        guest_release_free(rel);
                } else {
                        PrivRequest *req = NULL;

                        r = priv_call_set_bound(m->channel, ctx->slot, ctx->id, v->id, false, on_release_unbound,
                                                rel, &req);
                        if (r < 0)
                                on_release_unbound(r, NULL, 0, rel);
                        else
                                rel->priv_cookie = priv_request_get_cookie(req);
                }
        }
        r = v->unattached ? 0 : priv_call_detach_vdevice(m->channel, ctx->slot, ctx->id, v->id);
        if (r < 0 && r != -ECONNRESET)
                log_warning_errno(r, "The monitor could not detach %s: %m", v->pci_address);
        v->bound = v->changing = false;
        free(v->pci_address);
        v->pci_address = NULL;
}

void guest_context_free(Manager *m, GuestContext *ctx) {
        /* Exiting to be restarted: the monitor (or the fd store) keeps the kernel's objects
         * alive, so leave bindings and stored state as they are for the next worker (a save
         * owed gets its last try). */
        bool preserve = m->preserve_contexts;

        /* First: no retry of a save may write the file the release removes, or use ctx. */
        guest_context_save_end(m, ctx, preserve);
        for (size_t i = 0; i < ctx->n_vdevices; i++) {
                if (preserve) {
                        free(ctx->vdevices[i].pci_address);
                        continue;
                }
                guest_vdevice_release(m, ctx, &ctx->vdevices[i]);
        }
        free(ctx->vdevices);
        if (!preserve) {
                int r = priv_call_close_context(m->channel, ctx->slot, ctx->id);
                if (r < 0 && r != -ECONNRESET)
                        log_warning_errno(r, "The monitor could not close a context: %m");
                (void) context_store_remove(guest_state_dir(m), ctx->reclaim_id);
        }
        free(ctx);
}

int guest_vl_close_context(VarlinkCall *call, json_object *p, void *userdata) {
        GuestClient *c = guest_client_of(call);
        GuestContext *ctx;
        int r;

        r = guest_lookup(call, p, &ctx, NULL);
        if (r <= 0)
                return r;
        /* The answer of a Bind or Unbind in flight is due first (see set_bound()). */
        for (size_t i = 0; i < ctx->n_vdevices; i++)
                if (ctx->vdevices[i].changing)
                        return guest_reply_device_busy(call, ctx->vdevices[i].pci_address);
        for (size_t i = 0; i < c->n_contexts; i++)
                if (c->contexts[i] == ctx) {
                        c->contexts[i] = c->contexts[--c->n_contexts];
                        guest_client_contexts_changed(c, -1);
                        break;
                }
        guest_context_free(userdata, ctx);
        guest_states_flush(c); /* one made before, waiting for its requests */
        return varlink_call_reply(call, NULL);
}
