/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io.tsmd.Guest: contexts, vDevices, binding, guest requests, events. Everything privileged
 * (the iommufd, the TSM operations) is the monitor's: each call that needs it goes through a
 * priv_call_*() call to the monitor, on behalf of the client's slot. Every method runs as an
 * audited call (guest-op.c), told what it touched through guest_op_set_*(). Runs in: worker.
 */

#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "audit-log.h"
#include "backend.h"
#include "config.h"
#include "base64.h"
#include "context-store.h"
#include "fd-fuse.h"
#include "fdstore.h"
#include "guest-internal.h"
#include "guest-op.h"
#include "iommufd-transport.h"
#include "priv-call.h"
#include "json-escape.h"
#include "json-util.h"
#include "log.h"
#include "peer-identity.h"
#include "policy.h"
#include "tdisp.h"
#include "tsm-platform.h"
#include "varlink-errors.h"
#include "varlink-message.h"
#include "varlink-service.h"

typedef struct PendingRequest {
        GuestClient *client;
        VarlinkCall *call;
        PrivRequest *request;
        char *pci_address;
        TsmBackendType backend;
        const char *scope; /* the backend's scope table's */
        uint32_t scope_number;
        size_t response_size; /* offered: the caller's limit, capped by the scope's and its connection's */
        const char *revoked; /* a reload took its grant away, why (static): the monitor is asked to drop it */
        uint64_t context; /* handle */
        uint32_t vdevice;
        uint64_t serial; /* GuestClient.next_serial */
        TAILQ_ENTRY(PendingRequest) entry;
} PendingRequest;

/* A Bind or Unbind the TSM works on: the device answers when it is done (an SPDM exchange). */
typedef struct PendingChange {
        GuestClient *client;
        VarlinkCall *call;
        PrivRequest *request;
        uint64_t context; /* handle */
        uint32_t vdevice;
        bool bind;
        uint64_t serial; /* GuestClient.next_serial */
        const char *revoked; /* as PendingRequest's */
        LIST_ENTRY(PendingChange) entry;
} PendingChange;

/* A GetDeviceState made while a call of its vDevice made before it was unanswered: answered
 * once none is, with the state they left (the monitor asked then). */
typedef struct PendingState {
        VarlinkCall *call;
        uint64_t context; /* handle */
        uint32_t vdevice;
        uint64_t serial; /* GuestClient.next_serial */
        LIST_ENTRY(PendingState) entry;
} PendingState;

static void states_flush(GuestClient *c);


/* ---- helpers --------------------------------------------------------------------------- */

GuestClient *guest_client_of(VarlinkCall *call) {
        return varlink_conn_get_userdata(varlink_call_get_conn(call));
}

static int64_t get_int(json_object *p, const char *key, int64_t def) {
        json_object *v;

        if (!json_object_object_get_ex(p, key, &v) || !json_object_is_type(v, json_type_int))
                return def;
        return json_object_get_int64(v);
}

/* The replies of tsmd's own checks, made before anything was asked of the monitor or changed, say
 * so (guest_op_set_refused()): past its uid's refusal budget such a call is counted, not recorded
 * by itself. Where one follows something passed to the monitor, the call says that too, and is
 * recorded whatever its reply. */
static int reply_no_such_context(VarlinkCall *call, int64_t handle) {
        guest_op_set_refused(call);
        return varlink_call_error_kv(call, GUEST_ERROR("NoSuchContext"),
                                     "context", json_object_new_int64(handle), NULL);
}

static int reply_no_such_vdevice(VarlinkCall *call, int64_t handle, int64_t id) {
        guest_op_set_refused(call);
        return varlink_call_error_kv(call, GUEST_ERROR("NoSuchVDevice"), "context", json_object_new_int64(handle),
                                     "vdeviceId", json_object_new_int64(id), NULL);
}

/* reason: static, tsmd's own; the record says it too. A Denied of the monitor's, or of a call
 * admitted under a grant a reload took away. */
static int send_denied(VarlinkCall *call, const char *reason) {
        guest_op_set_reason(call, reason);
        return varlink_call_error_kv(call, GUEST_ERROR("Denied"), "reason", json_object_new_string(reason), NULL);
}

/* The policy in force refused the call, before anything was done. */
static int reply_denied(VarlinkCall *call, const char *reason) {
        guest_op_set_refused(call);
        return send_denied(call, reason);
}

static int reply_invalid_parameter(VarlinkCall *call, const char *name) {
        guest_op_set_refused(call);
        return varlink_call_error_invalid_parameter(call, name);
}

/* field: "request" or "maxResponseSize". */
static int reply_payload_too_large(VarlinkCall *call, const char *field, size_t limit) {
        guest_op_set_refused(call);
        return varlink_call_error_kv(call, GUEST_ERROR("PayloadTooLarge"), "field", json_object_new_string(field),
                                     "limit", json_object_new_int64((int64_t) limit), NULL);
}

int guest_reply_limit(VarlinkCall *call, const char *limit, unsigned max) {
        guest_op_set_refused(call);
        return varlink_call_error_kv(call, GUEST_ERROR("LimitReached"), "limit", json_object_new_string(limit),
                                     "max", json_object_new_int64(max), NULL);
}

static int reply_backend_errno(VarlinkCall *call, int r) {
        return varlink_call_error_kv(call, GUEST_ERROR("BackendError"),
                                     "name", json_object_new_string(iommufd_tsm_error_name(r)),
                                     "errno", json_object_new_int(-r), NULL);
}

/* Maps what the platform or a backend said to the interface's named errors. -ENOMEM is left
 * unanswered (io.tsmd.System): the worker's own; see reply_tsm_error(). A backend's -EPERM is
 * BackendError PermissionDenied: the kernel says so where its caller, tsmd's monitor, lacks a
 * privilege (the v5 UAPI: DEBUG_WRITE "requires CAP_SYS_RAW_IO"), which no policy rule decides;
 * Denied is the policy's, its reason the grant that was missing. */
static int reply_backend_error(VarlinkCall *call, int r, const char *pci_address) {
        switch (r) {
        case -ENODEV:
                return varlink_call_error_kv(call, GUEST_ERROR("DeviceGone"),
                                             "pciAddress", json_object_new_string(pci_address), NULL);
        case -EBUSY:
                return varlink_call_error_kv(call, GUEST_ERROR("DeviceBusy"),
                                             "pciAddress", json_object_new_string(pci_address), NULL);
        case -ETIMEDOUT:
                return varlink_call_error_kv(call, GUEST_ERROR("Timeout"),
                                             "pciAddress", json_object_new_string(pci_address), NULL);
        case -ENOMEM:
                return r;
        default:
                return reply_backend_errno(call, r);
        }
}

/* The same for how a call passed to the monitor ended. The TSM's answer, through the monitor: an
 * -ENOMEM there is the backend's (the kernel's), BackendError OutOfMemory. One the worker could
 * not send (its channel's -ENOMEM), or the monitor's own (priv_request_monitor_own()), is tsmd's,
 * left unanswered (io.tsmd.System). So is an -EPERM of the monitor's policy gate its refusal,
 * Denied with gate_reason, where the backend's -EPERM is BackendError PermissionDenied. */
static int reply_tsm_error(VarlinkCall *call, const PrivRequest *req, int r, const char *pci_address,
                           const char *gate_reason) {
        /* Not the monitor's word but the worker's failure to carry it (its channel's send errors:
         * -EAGAIN after the send timeout, -ENOBUFS, -EMSGSIZE; the channel's end): tsmd's own, as
         * -ENOMEM is. A detach or close fails what waits here -ENODEV, as the monitor would. */
        if (!priv_request_answered(req) && r != -ENODEV)
                return r;
        if (priv_request_monitor_own(req))
                return r == -EPERM ? send_denied(call, gate_reason) : reply_backend_error(call, r, pci_address);
        if (r == -ENOMEM && priv_request_answered(req))
                return reply_backend_errno(call, r);
        return reply_backend_error(call, r, pci_address);
}

static GuestContext *find_context(GuestClient *c, int64_t handle) {
        for (size_t i = 0; i < c->n_contexts; i++)
                if ((int64_t) c->contexts[i]->handle == handle)
                        return c->contexts[i];
        return NULL;
}

GuestVDevice *guest_find_vdevice(GuestContext *ctx, int64_t id) {
        for (size_t i = 0; i < ctx->n_vdevices; i++)
                if ((int64_t) ctx->vdevices[i].id == id)
                        return &ctx->vdevices[i];
        return NULL;
}

const char *guest_state_dir(const Manager *m) {
        return m->config.context_state_dir;
}

/* SECURITY: where the service manager keeps contexts across restarts of tsmd, the state file is
 * all the next tsmd knows of a context's vDevices: a change it must know of (a vDevice attached,
 * a Bind or Unbind on its way to the TSM) is made only once it is saved, or a TDI could stay
 * locked that nobody unbinds. Every save owed is made first: the file of a context whose detach
 * was not saved still names the device, and after a restart of tsmd both files would claim it
 * (the first restored would win, whoever holds it now). A restart of the worker alone has the
 * monitor's record. */
static int persist_before_change(Manager *m, GuestContext *ctx) {
        int r = 0;

        if (m->hello.fdstore)
                r = guest_pay_owed_saves(m, ctx);
        if (r >= 0)
                r = guest_context_persist(m, ctx);
        return m->hello.fdstore ? r : 0;
}

/* Nothing was done. Out of memory is tsmd's own (io.tsmd.System), as everywhere. */
static int reply_state_not_saved(VarlinkCall *call, int error) {
        if (error == -ENOMEM)
                return error;
        return varlink_call_error_kv(call, GUEST_ERROR("StateNotSaved"), "errno", json_object_new_int(-error), NULL);
}

/* Looks up context and vDevice named in the parameters: 1 if both are there, else the right
 * error is the answer (0, or < 0 if it could not be given: the caller returns it, and the
 * call gets io.tsmd.System). ret_info (optional) describes the vDevice's device; its backend is
 * _TSM_BACKEND_TYPE_INVALID if the platform serves it no more. */
static int lookup_full(VarlinkCall *call, json_object *p, GuestContext **ret_ctx, GuestVDevice **ret_vdev,
                       TsmDeviceInfo *ret_info) {
        GuestClient *c = guest_client_of(call);
        int64_t handle = get_int(p, "context", -1), id = get_int(p, "vdeviceId", -1);
        TsmDeviceInfo info = { .backend = _TSM_BACKEND_TYPE_INVALID };
        GuestContext *ctx;
        GuestVDevice *v;
        int r;

        ctx = find_context(c, handle);
        /* Also when there is none: a record of what was probed (another client's, a guess). */
        if (handle > 0)
                guest_op_set_context(call, (uint64_t) handle);
        if (!ctx) {
                r = reply_no_such_context(call, handle);
                return MIN(r, 0);
        }
        if (!ret_vdev) {
                *ret_ctx = ctx;
                return 1;
        }
        v = guest_find_vdevice(ctx, id);
        if (!v) {
                r = reply_no_such_vdevice(call, handle, id);
                return MIN(r, 0);
        }
        guest_op_set_vdevice(call, (uint64_t) id);
        if (tsm_platform_get_device(c->manager->platform, v->pci_address, &info) < 0)
                info = (TsmDeviceInfo){ .backend = _TSM_BACKEND_TYPE_INVALID };
        guest_op_set_device(call, v->pci_address, info.backend);
        *ret_ctx = ctx;
        *ret_vdev = v;
        if (ret_info)
                *ret_info = info;
        return 1;
}

static int lookup(VarlinkCall *call, json_object *p, GuestContext **ret_ctx, GuestVDevice **ret_vdev) {
        return lookup_full(call, p, ret_ctx, ret_vdev, NULL);
}


/* The IDL's TdiState: the TDISP names in lower case, as Varlink enums are. */
static const char *const tdi_state_table[_TDISP_STATE_MAX + 1] = {
        [TDISP_STATE_CONFIG_UNLOCKED] = "config_unlocked",
        [TDISP_STATE_CONFIG_LOCKED] = "config_locked",
        [TDISP_STATE_RUN] = "run",
        [TDISP_STATE_ERROR] = "error",
};

const char *const *guest_tdi_states(void) {
        return tdi_state_table;
}

const char *guest_tdi_state_to_string(int state) {
        return state >= 0 && state < _TDISP_STATE_MAX ? tdi_state_table[state] : NULL;
}

/* NULL where the state is unknown (the kernel's TSMs keep it from the host): a null "state". */
static const char *vdevice_state_name(Manager *m, const GuestContext *ctx, const GuestVDevice *v) {
        int state;

        if (priv_call_get_vdevice_state(m->channel, ctx->slot, ctx->id, v->id, &state) < 0)
                return NULL;
        return guest_tdi_state_to_string(state);
}

/* ---- contexts -------------------------------------------------------------------------- */

static size_t client_vdevices(const GuestClient *c) {
        size_t n = 0;

        for (size_t i = 0; i < c->n_contexts; i++)
                n += c->contexts[i]->n_vdevices;
        return n;
}

void guest_client_usage(GuestClient *c, GuestUsage *ret) {
        Manager *m = c->manager;
        unsigned pc = UINT_MAX, pv = UINT_MAX;
        GuestUsage u = {
                .contexts = c->n_contexts,
                .vdevices = client_vdevices(c),
                .max_contexts = m->config.max_contexts_per_client,
                .max_vdevices = m->config.max_vdevices_per_client,
        };
        const GuestClient *o;

        policy_get_limits(m->policy, &c->identity, &pc, &pv);
        u.rule_contexts = pc ?: UINT_MAX;
        u.rule_vdevices = pv ?: UINT_MAX;

        /* SECURITY: the rule bounds a VMM, not one of its connections: a second connection of
         * the process (or of one that cannot be told from it) is no room for more. As
         * guest_n_contexts(), one pass over the connections. */
        LIST_FOREACH(o, &m->guest_clients, entry)
                if (o == c || peer_identity_may_be_same_process(&o->identity, &c->identity)) {
                        u.process_contexts += o->n_contexts;
                        u.process_vdevices += o == c ? u.vdevices : client_vdevices(o);
                }
        *ret = u;
}

static unsigned limit_over(size_t held, size_t n, unsigned max, size_t process_held, unsigned rule_max) {
        unsigned over = 0;

        if (held + n > max)
                over = max;
        if (process_held + n > rule_max && (over == 0 || rule_max < over))
                over = rule_max;
        return over;
}

unsigned guest_usage_contexts_over(const GuestUsage *u, size_t n) {
        return limit_over(u->contexts, n, u->max_contexts, u->process_contexts, u->rule_contexts);
}

unsigned guest_usage_vdevices_over(const GuestUsage *u, size_t n) {
        return limit_over(u->vdevices, n, u->max_vdevices, u->process_vdevices, u->rule_vdevices);
}

size_t guest_n_contexts(const Manager *m) {
        const GuestClient *c;
        size_t n = m->n_orphans;

        LIST_FOREACH(c, &m->guest_clients, entry)
                n += c->n_contexts;
        return n;
}

unsigned guest_max_contexts(const Manager *m) {
        return MIN(m->config.max_contexts, m->hello.max_contexts);
}

size_t guest_n_contexts_of_uid(const Manager *m, uid_t uid) {
        const GuestClient *c;
        size_t n = 0;

        for (size_t i = 0; i < m->n_orphans; i++)
                n += m->orphans[i]->uid == uid;
        LIST_FOREACH(c, &m->guest_clients, entry)
                if (c->identity.uid == uid)
                        n += c->n_contexts;
        return n;
}

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
                return reply_denied(call, GUEST_REASON_NO_CLIENT_RULE);
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

static int vl_open_context(VarlinkCall *call, json_object *p, void *userdata) {
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

/* A fd the client passed that the worker had no room to receive (its RLIMIT_NOFILE is reached,
 * or it takes none while fds wait to be closed behind a close a file system holds: fd-closer.h):
 * our failure, answered io.tsmd.System EMFILE, not the client's BadFileDescriptor. Rate limited:
 * a client that holds such a close can make every call with an fd come here. */
static int fd_lost(const char *field) {
        static RateLimit log_limit = RATELIMIT(UNRECORDED_REFUSAL_LOG_INTERVAL_USEC, UNRECORDED_REFUSAL_LOG_BURST);

        log_full_ratelimited(&log_limit, LOG_WARNING,
                             "No fd left to receive the %s a client passed (RLIMIT_NOFILE reached, or fds waiting "
                             "to be closed behind a close some file system holds), failing its call with EMFILE.",
                             field);
        return -EMFILE;
}

static int vl_adopt_context(VarlinkCall *call, json_object *p, void *userdata) {
        char token[RECLAIM_TOKEN_LEN + 1];
        GuestContext *ctx;
        int fd, r;

        /* SECURITY: the monitor checks that it is an iommufd before it keeps it. */
        fd = varlink_call_get_fd_parameter(call, p, "fileDescriptor");
        if (fd == -EMFILE)
                return fd_lost("fileDescriptor");
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
static void vdevice_release(Manager *m, GuestContext *ctx, GuestVDevice *v) {
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
                vdevice_release(m, ctx, &ctx->vdevices[i]);
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

/* tsmd's own check: the device is another's, or its vDevice changes (a backend's EBUSY is not this). */
static int reply_device_busy(VarlinkCall *call, const char *pci_address) {
        guest_op_set_refused(call);
        return varlink_call_error_kv(call, GUEST_ERROR("DeviceBusy"),
                                     "pciAddress", json_object_new_string(pci_address), NULL);
}

static int vl_close_context(VarlinkCall *call, json_object *p, void *userdata) {
        GuestClient *c = guest_client_of(call);
        GuestContext *ctx;
        int r;

        r = lookup(call, p, &ctx, NULL);
        if (r <= 0)
                return r;
        /* The answer of a Bind or Unbind in flight is due first (see set_bound()). */
        for (size_t i = 0; i < ctx->n_vdevices; i++)
                if (ctx->vdevices[i].changing)
                        return reply_device_busy(call, ctx->vdevices[i].pci_address);
        for (size_t i = 0; i < c->n_contexts; i++)
                if (c->contexts[i] == ctx) {
                        c->contexts[i] = c->contexts[--c->n_contexts];
                        guest_client_contexts_changed(c, -1);
                        break;
                }
        guest_context_free(userdata, ctx);
        states_flush(c); /* one made before, waiting for its requests */
        return varlink_call_reply(call, NULL);
}

/* ---- devices --------------------------------------------------------------------------- */

static bool device_attached_anywhere(Manager *m, const char *pci_address) {
        GuestClient *c;

        LIST_FOREACH(c, &m->guest_clients, entry)
                for (size_t i = 0; i < c->n_contexts; i++)
                        for (size_t j = 0; j < c->contexts[i]->n_vdevices; j++) {
                                const GuestVDevice *v = &c->contexts[i]->vdevices[j];

                                /* A vDevice whose device vanished no longer holds the device that
                                 * came back under the same address. */
                                if (!v->gone && streq(v->pci_address, pci_address))
                                        return true;
                        }
        return false;
}

/* The last component of a sysfs link, or NULL if it is none. */
static const char *link_name(const char *path, char *buf, size_t size) {
        const char *base;
        ssize_t n;

        n = readlink(path, buf, size - 1);
        if (n < 0)
                return NULL;
        buf[n] = 0;
        base = strrchr(buf, '/');
        return base ? base + 1 : buf;
}

/* SECURITY: a VFIO device fd proves which physical device the VMM holds: its character device
 * must be a VFIO device cdev (subsystem vfio-dev), and its sysfs node one under the vfio-dev/
 * directory of the device at pci_address. Any other character device of that function (a DRM
 * render node, say) names the function too, but proves no VFIO ownership of it; nor does an
 * O_PATH fd of the right one, which anybody who can see the node may open. Nothing here calls
 * into the fd's file system, which the client may serve (FUSE) and answer never. */
static int verify_vfio_fd(int fd, const char *pci_address, const char **ret_reason) {
        char path[128], buf[PATH_MAX], vfio_dir[PATH_MAX];
        _cleanup_free_ char *node = NULL, *device = NULL;
        const char *name, *base;
        struct stat st;
        int flags, r;

        /* What cannot be looked at proves nothing either (a FUSE mount without allow_other
         * refuses us its attributes). */
        *ret_reason = GUEST_REASON_NOT_VFIO;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return negative_errno();
        if (flags & O_PATH)
                return -EBADF;
        r = fstat_cached(fd, &st);
        if (r < 0)
                return r;
        *ret_reason = NULL;
        if (!S_ISCHR(st.st_mode)) {
                *ret_reason = GUEST_REASON_NOT_CHAR;
                return -EBADF;
        }
        snprintf(path, sizeof(path), "/sys/dev/char/%u:%u", major(st.st_rdev), minor(st.st_rdev));
        node = realpath(path, NULL);
        snprintf(path, sizeof(path), "/sys/dev/char/%u:%u/subsystem", major(st.st_rdev), minor(st.st_rdev));
        name = link_name(path, buf, sizeof(buf));
        snprintf(path, sizeof(path), "/sys/dev/char/%u:%u/device", major(st.st_rdev), minor(st.st_rdev));
        device = realpath(path, NULL);
        /* node is <device>/vfio-dev/<name>, nothing deeper. */
        if (!node || !device || !name || !streq(name, "vfio-dev") ||
            (size_t) snprintf(vfio_dir, sizeof(vfio_dir), "%s/vfio-dev/", device) >= sizeof(vfio_dir) ||
            !strneq(node, vfio_dir, strlen(vfio_dir)) || !node[strlen(vfio_dir)] ||
            strchr(node + strlen(vfio_dir), '/')) {
                *ret_reason = GUEST_REASON_NOT_VFIO;
                return -EBADF;
        }
        base = strrchr(device, '/');
        if (!streq(base ? base + 1 : device, pci_address)) {
                *ret_reason = GUEST_REASON_OTHER_DEVICE;
                return -EBADF;
        }
        return 0;
}

int guest_scope_json_new(const TsmScopeDesc *s, int64_t number, bool allowed, json_object **ret) {
        json_object *o = json_object_new_object();

        if (!o || json_object_add(o, "name", json_object_new_string(s->name)) < 0 ||
            json_object_add(o, "description", json_object_new_string(s->description)) < 0 ||
            json_object_add(o, "number", json_object_new_int64(number)) < 0 ||
            json_object_add(o, "maxRequestSize", json_object_new_int64(s->max_request)) < 0 ||
            json_object_add(o, "maxResponseSize", json_object_new_int64(s->max_response)) < 0 ||
            json_object_add(o, "allowed", json_object_new_boolean(allowed)) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        *ret = o;
        return 0;
}

int guest_attach_reply_new(const char *backend, const char *tsm, const char *uapi, json_object *scopes,
                           json_object **ret) {
        json_object *reply = json_object_new_object();

        if (!reply || json_object_add(reply, "backend", json_object_new_string(backend)) < 0 ||
            json_object_add(reply, "tsm", json_object_new_string(tsm)) < 0 ||
            json_object_add(reply, "uapi", json_object_new_string(uapi)) < 0 ||
            json_object_add(reply, "scopes", TAKE_PTR(scopes)) < 0) {
                json_object_put(scopes);
                json_object_put(reply);
                return -ENOMEM;
        }
        *ret = reply;
        return 0;
}

static int build_scopes(Manager *m, GuestClient *c, const TsmDeviceInfo *info, json_object **ret) {
        const TsmBackendDesc *b = tsm_backend_desc(info->backend);
        _cleanup_(json_object_putp) json_object *a = json_object_new_array();

        if (!a || !b)
                return -ENOMEM;
        for (size_t i = 0; i < b->n_scopes; i++) {
                const TsmScopeDesc *s = &b->scopes[i];
                json_object *o;
                uint32_t number;
                int r;

                if (tsm_platform_scope_number(m->platform, info, s->name, &number) < 0)
                        continue; /* not reachable through this UAPI: not offered */
                if (!tsm_platform_serves_scope(m->platform, info, s->name))
                        continue; /* its TSM here refuses it, whatever the policy: not offered either */
                r = guest_scope_json_new(s, number,
                                         policy_check_scope(m->policy, &c->identity, info->pci_address,
                                                            info->backend, s->name, NULL) >= 0,
                                         &o);
                if (r < 0)
                        return r;
                if (json_object_array_add(a, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(a);
        return 0;
}

/* SECURITY: the record of an AttachDevice for a device tsmd does not know names it only when the
 * client's text is a PCI address (bounded, hex digits and separators), in the lower case sysfs
 * writes and QueryAudit's filter takes, as the admin's device calls do (admin.c): what was probed
 * is found by its address, and no other text of the client's gets into the record. */
static void set_unknown_device(VarlinkCall *call, const char *address) {
        char lower[PCI_ADDRESS_LEN_MAX + 1];
        size_t n;

        if (!address || !policy_pci_address_is_valid(address))
                return;
        n = strlen(address);
        if (n >= sizeof(lower))
                return;
        for (size_t i = 0; i <= n; i++)
                lower[i] = (char) tolower((unsigned char) address[i]);
        guest_op_set_device(call, lower, _TSM_BACKEND_TYPE_INVALID);
}

static int vl_attach_device(VarlinkCall *call, json_object *p, void *userdata) {
        Manager *m = userdata;
        GuestClient *c = guest_client_of(call);
        const char *address = json_get_string(p, "pciAddress"), *reason = NULL, *rule;
        _cleanup_free_ char *pci_address = NULL;
        int64_t id = get_int(p, "vdeviceId", -1);
        json_object *reply = NULL, *scopes = NULL, *vfio;
        TsmDeviceInfo info;
        GuestContext *ctx;
        GuestUsage usage;
        unsigned over;
        int r;

        r = lookup(call, p, &ctx, NULL);
        if (r <= 0)
                return r;
        guest_op_set_vdevice(call, (uint64_t) id);
        if (id <= 0 || id > UINT32_MAX) /* iommufd object ids start at 1 */
                return reply_invalid_parameter(call, "vdeviceId");
        if (guest_find_vdevice(ctx, id)) {
                guest_op_set_refused(call);
                return varlink_call_error_kv(call, GUEST_ERROR("VDeviceExists"),
                                             "context", json_object_new_int64((int64_t) ctx->handle),
                                             "vdeviceId", json_object_new_int64(id), NULL);
        }

        r = tsm_platform_get_device(m->platform, address, &info);
        if (r < 0) {
                set_unknown_device(call, address);
                guest_op_set_refused(call);
                return varlink_call_error_kv(call, GUEST_ERROR("NoSuchDevice"),
                                             "pciAddress", json_object_new_string(address), NULL);
        }
        /* Before any refusal: the record names the device it was for. */
        guest_op_set_device(call, info.pci_address, info.backend);

        if (json_object_object_get_ex(p, "vfioFileDescriptor", &vfio) && vfio) {
                int fd = varlink_call_get_fd_parameter(call, p, "vfioFileDescriptor");

                if (fd == -EMFILE)
                        return fd_lost("vfioFileDescriptor");
                if (fd < 0)
                        reason = GUEST_REASON_NO_FD;
                else
                        (void) verify_vfio_fd(fd, info.pci_address, &reason);
        } else if (!info.emulated && m->config.require_vfio_fd)
                /* SECURITY: the address is the client's word, and the device lock below is
                 * taken under it: without the proof, a VMM of a pool rule could attach a device
                 * another VMM holds, and keep it from that VMM (DeviceBusy). The emulated
                 * platform has no VFIO device to prove it with. */
                reason = GUEST_REASON_MISSING;
        if (reason) {
                guest_op_set_refused(call);
                return varlink_call_error_kv(call, GUEST_ERROR("BadFileDescriptor"),
                                             "field", json_object_new_string("vfioFileDescriptor"),
                                             "reason", json_object_new_string(reason), NULL);
        }

        r = policy_check_device_full(m->policy, &c->identity, info.pci_address, info.backend, &reason, &rule);
        guest_op_set_rule(call, m->policy, rule); /* allowed, or whose grant was missing */
        if (r < 0)
                return reply_denied(call, reason);

        /* SECURITY: one physical device belongs to one guest at a time. */
        if (device_attached_anywhere(m, info.pci_address))
                return reply_device_busy(call, info.pci_address);

        guest_client_usage(c, &usage);
        over = guest_usage_vdevices_over(&usage, 1);
        if (over > 0)
                return guest_reply_limit(call, "vdevices", over);

        r = build_scopes(m, c, &info, &scopes);
        if (r < 0)
                return r;

        /* Everything that can fail for want of memory comes first: once the monitor attached
         * it, a vDevice the worker cannot record would stay attached there alone. */
        pci_address = strdup(info.pci_address);
        if (!pci_address || !GREEDY_REALLOC(ctx->vdevices, ctx->allocated_vdevices, ctx->n_vdevices + 1)) {
                json_object_put(scopes);
                return -ENOMEM;
        }
        guest_op_set_forwarded(call);
        r = priv_call_attach_vdevice(m->channel, ctx->slot, ctx->id, (uint32_t) id, info.pci_address, false);
        if (r < 0) {
                json_object_put(scopes);
                if (r == -ENODEV || r == -ENXIO) /* gone since we looked */
                        return varlink_call_error_kv(call, GUEST_ERROR("NoSuchDevice"),
                                                     "pciAddress", json_object_new_string(address), NULL);
                if (r == -EPERM) /* the monitor's gate: its policy lists the device in no rule */
                        return send_denied(call, GUEST_REASON_DEVICE_NOT_LISTED);
                return reply_backend_error(call, r, info.pci_address);
        }
        ctx->vdevices[ctx->n_vdevices++] = (GuestVDevice){ .id = (uint32_t) id, .pci_address = TAKE_PTR(pci_address) };
        r = persist_before_change(m, ctx);
        if (r < 0) {
                /* Detached again (it is not bound): the file, unchanged, says what the context
                 * has, as does the monitor. Saved first, the file could name a vDevice the
                 * monitor then refused, and the next tsmd would attach it. */
                json_object_put(scopes);
                vdevice_release(m, ctx, &ctx->vdevices[--ctx->n_vdevices]);
                return reply_state_not_saved(call, r);
        }

        r = guest_attach_reply_new(tsm_backend_type_to_string(info.backend), info.tsm,
                                   info.emulated ? "emulated" : tsm_uapi_version_to_string(info.uapi) ?: "none",
                                   scopes, &reply);
        if (r < 0)
                return r;
        return varlink_call_reply(call, reply);
}

static int vl_detach_device(VarlinkCall *call, json_object *p, void *userdata) {
        GuestContext *ctx;
        GuestVDevice *v;
        int r;

        r = lookup(call, p, &ctx, &v);
        if (r <= 0)
                return r;
        if (v->changing)
                return reply_device_busy(call, v->pci_address);
        vdevice_release(userdata, ctx, v);
        *v = ctx->vdevices[--ctx->n_vdevices];
        /* Giving a device up must work: a save that fails is owed (guest-save.c). Until it is
         * made, a restart of tsmd would attach the vDevice again. */
        (void) guest_context_persist(userdata, ctx);
        states_flush(guest_client_of(call)); /* one made before, waiting for its requests */
        return varlink_call_reply(call, NULL);
}

static int reply_state(VarlinkCall *call, Manager *m, GuestContext *ctx, GuestVDevice *v, bool with_bound) {
        json_object *reply = json_object_new_object();

        if (!reply || json_object_add_string_or_null(reply, "state", vdevice_state_name(m, ctx, v)) < 0 ||
            (with_bound && json_object_add(reply, "bound", json_object_new_boolean(v->bound)) < 0)) {
                json_object_put(reply);
                return -ENOMEM;
        }
        return varlink_call_reply(call, reply);
}

static PendingChange *change_free(PendingChange *pc) {
        if (!pc)
                return NULL;
        LIST_REMOVE(pc, entry);
        varlink_call_unref(pc->call);
        return mfree(pc);
}

/* Whether a GuestRequest, Bind or Unbind of c on vDevice v of ctx made before serial is
 * unanswered. Not a restore's change, which no call of c's made (and a kernel's bind may take
 * long): GetDeviceState answers meanwhile, bound false until it settles. */
static bool vdevice_has_earlier(GuestClient *c, const GuestContext *ctx, const GuestVDevice *v, uint64_t serial) {
        const PendingRequest *pr;
        const PendingChange *pc;

        TAILQ_FOREACH(pr, &c->pending, entry)
                if (pr->serial < serial && pr->context == ctx->handle && pr->vdevice == v->id)
                        return true;
        LIST_FOREACH(pc, &c->changes, entry)
                if (pc->serial < serial && pc->context == ctx->handle && pc->vdevice == v->id)
                        return true;
        return false;
}

static int answer_state(VarlinkCall *call, Manager *m, GuestContext *ctx, GuestVDevice *v) {
        TsmDeviceInfo info;

        if (v->gone || tsm_platform_get_device(m->platform, v->pci_address, &info) < 0)
                return reply_backend_error(call, -ENODEV, v->pci_address);
        return reply_state(call, m, ctx, v, true);
}

static PendingState *state_free(PendingState *ps) {
        LIST_REMOVE(ps, entry);
        varlink_call_unref(ps->call);
        return mfree(ps);
}

/* Answers the GetDeviceState calls of c that wait for nothing any more: one whose vDevice went
 * meanwhile (a DetachDevice or CloseContext after it) as a call made now would be. */
static void states_flush(GuestClient *c) {
        PendingState *ps, *next;

        for (ps = LIST_FIRST(&c->states); ps; ps = next) {
                _cleanup_(varlink_call_unrefp) VarlinkCall *call = NULL;
                int64_t handle = (int64_t) ps->context, id = ps->vdevice;
                GuestContext *ctx = find_context(c, handle);
                GuestVDevice *v = ctx ? guest_find_vdevice(ctx, id) : NULL;
                int r;

                next = LIST_NEXT(ps, entry);
                if (v && vdevice_has_earlier(c, ctx, v, ps->serial))
                        continue;
                call = varlink_call_ref(ps->call);
                state_free(ps);
                r = !ctx ? reply_no_such_context(call, handle) :
                    !v   ? reply_no_such_vdevice(call, handle, id) :
                           answer_state(call, c->manager, ctx, v);
                if (r < 0 && !varlink_call_is_answered(call))
                        (void) varlink_call_error_errno(call, r);
        }
}

static void on_bound(int result, const void *response, size_t len, void *userdata) {
        PendingChange *pc = userdata;
        GuestClient *c = pc->client;
        VarlinkCall *call = pc->call;
        Manager *m = c->manager;
        GuestContext *ctx = find_context(c, (int64_t) pc->context);
        GuestVDevice *v = ctx ? guest_find_vdevice(ctx, pc->vdevice) : NULL;
        char address[PCI_ADDRESS_LEN_MAX + 1];
        bool bind = pc->bind;
        const char *state;
        int r;

        /* Neither can go while it changes: Detach and CloseContext wait, a disconnect cancels. */
        if (!v) {
                log_error("Bind or Unbind answered for a vDevice that is gone from its client, dropping it.");
                (void) varlink_call_error_errno(call, -ENODEV);
                change_free(pc);
                states_flush(c);
                return;
        }
        v->changing = false;
        if (result >= 0 && v->gone) /* unplugged as the answer came: it holds no TDI now */
                result = -ENODEV;
        if (result >= 0)
                v->bound = pc->bind;
        /* Before the answer: a restart after it must not find the change still on its way. Not
         * saved (owed until it is, guest-save.c), it is stored as changing, which the next tsmd
         * takes for a change cut off: it unbinds a kernel TSM's vDevice, an emulated one comes
         * back unbound, and the VMM sees it unbound either way (guest_restore_context()). */
        if (guest_context_persist(m, ctx) < 0)
                log_notice("The end of a %s of %s is not saved yet: a restart of tsmd before it is unbinds it.",
                           pc->bind ? "Bind" : "Unbind", v->pci_address);
        /* InvalidState only where the state is known (the emulated platform): the kernel's TSMs
         * keep it from the host (-EOPNOTSUPP), and their error is the VMM's only clue. */
        state = pc->bind && (result == -EIO || result == -EINVAL || result == -EALREADY) ?
                vdevice_state_name(m, ctx, v) : NULL;
        if (pc->revoked && result == -ECANCELED && priv_request_monitor_own(pc->request)) {
                /* Dropped by the monitor before the TSM had it, as a reload asked. */
                guest_op_set_rule(call, NULL, NULL);
                r = send_denied(call, pc->revoked);
        } else if (state)
                r = varlink_call_error_kv(call, GUEST_ERROR("InvalidState"),
                                          "state", json_object_new_string(state), NULL);
        else if (result < 0) {
                /* The monitor's gate refused it: no rule let it through. */
                if (result == -EPERM && priv_request_monitor_own(pc->request))
                        guest_op_set_rule(call, NULL, NULL);
                /* Only a bind passes the monitor's gate, which looks at the device. */
                r = reply_tsm_error(call, pc->request, result, v->pci_address, GUEST_REASON_DEVICE_NOT_LISTED);
        }
        else
                r = reply_state(call, m, ctx, v, false);
        if (r < 0 && !varlink_call_is_answered(call))
                (void) varlink_call_error_errno(call, r);
        snprintf(address, sizeof(address), "%s", v->pci_address);
        change_free(pc);
        states_flush(c);
        /* After the answer: should the look find the binding ended already, the VMM hears
         * device-unbound after its Bind's answer. */
        if (result >= 0)
                tsm_platform_refresh_binding(m->platform, address, bind);
}

/* Bind (TDISP lock) or unbind (stop) the TDI of a vDevice. The TSM answers when the device has
 * (an SPDM exchange): meanwhile the vDevice is busy for another Bind, Unbind or Detach, and
 * its context for CloseContext, which answer DeviceBusy. */
static int set_bound(VarlinkCall *call, json_object *p, Manager *m, bool bind) {
        GuestClient *c = guest_client_of(call);
        const char *reason, *rule;
        TsmDeviceInfo info;
        PendingChange *pc;
        GuestContext *ctx;
        GuestVDevice *v;
        int r;

        r = lookup_full(call, p, &ctx, &v, &info);
        if (r <= 0)
                return r;
        if (v->gone || (bind && info.backend == _TSM_BACKEND_TYPE_INVALID))
                return reply_backend_error(call, -ENODEV, v->pci_address);
        /* SECURITY: binding uses the device, which the policy in force must still let the client
         * do: a reload may have taken the grant away since AttachDevice. Unbinding gives it up,
         * which a client whose grant went must be able to do. */
        if (bind) {
                r = policy_check_device_full(m->policy, &c->identity, v->pci_address, info.backend, &reason, &rule);
                guest_op_set_rule(call, m->policy, rule);
                if (r < 0)
                        return reply_denied(call, reason);
        }
        if (v->changing)
                return reply_device_busy(call, v->pci_address);

        pc = new0(PendingChange, 1);
        if (!pc)
                return -ENOMEM;
        *pc = (PendingChange){ .client = c, .call = varlink_call_ref(call), .context = ctx->handle,
                               .vdevice = v->id, .bind = bind, .serial = c->next_serial++ };
        LIST_INSERT_HEAD(&c->changes, pc, entry);
        /* Stored as changing before the TSM hears of it: if tsmd stops before the answer, the
         * next one cannot know where the change ended, and unbinds (guest_restore_context()).
         * Refused if it cannot be stored: the next one would not know of the change at all. */
        v->changing = true;
        r = persist_before_change(m, ctx);
        if (r < 0) {
                change_free(pc);
                v->changing = false;
                return reply_state_not_saved(call, r);
        }
        guest_op_set_forwarded(call);
        r = priv_call_set_bound(m->channel, ctx->slot, ctx->id, v->id, bind, on_bound, pc, &pc->request);
        if (r < 0) {
                change_free(pc);
                v->changing = false;
                (void) guest_context_persist(m, ctx); /* owed if it fails: stored as changing meanwhile */
                return reply_backend_error(call, r, v->pci_address);
        }
        guest_op_set_priv_cookie(call, priv_request_get_cookie(pc->request));
        return 0;
}

static int vl_bind(VarlinkCall *call, json_object *p, void *userdata) {
        return set_bound(call, p, userdata, true);
}

static int vl_unbind(VarlinkCall *call, json_object *p, void *userdata) {
        return set_bound(call, p, userdata, false);
}

static int vl_get_device_state(VarlinkCall *call, json_object *p, void *userdata) {
        Manager *m = userdata;
        GuestClient *c = guest_client_of(call);
        const char *reason, *rule;
        TsmDeviceInfo info;
        PendingState *ps;
        GuestContext *ctx;
        GuestVDevice *v;
        int r;

        r = lookup_full(call, p, &ctx, &v, &info);
        if (r <= 0)
                return r;
        if (v->gone || info.backend == _TSM_BACKEND_TYPE_INVALID)
                return reply_backend_error(call, -ENODEV, v->pci_address);
        /* SECURITY: the state is the device's, told only to a client the policy in force lets
         * use it (as for Bind). */
        r = policy_check_device_full(m->policy, &c->identity, v->pci_address, info.backend, &reason, &rule);
        guest_op_set_rule(call, m->policy, rule); /* allowed, or whose grant was missing */
        if (r < 0)
                return reply_denied(call, reason);
        /* The state the client's calls before it left: answered now, its answer would go out
         * after theirs but tell the state from before them (a Bind's lock, a request's). */
        if (!vdevice_has_earlier(c, ctx, v, c->next_serial))
                return reply_state(call, m, ctx, v, true);
        ps = new(PendingState, 1);
        if (!ps)
                return -ENOMEM;
        *ps = (PendingState){ .call = varlink_call_ref(call), .context = ctx->handle, .vdevice = v->id,
                              .serial = c->next_serial++ };
        LIST_INSERT_HEAD(&c->states, ps, entry);
        return 0;
}

/* ---- guest requests -------------------------------------------------------------------- */

static void pending_free(PendingRequest *pr) {
        TAILQ_REMOVE(&pr->client->pending, pr, entry);
        varlink_call_unref(pr->call);
        free(pr->pci_address);
        free(pr);
}

static void on_request_done(int result, const void *resp, size_t len, void *userdata) {
        PendingRequest *pr = userdata;
        GuestClient *c = pr->client;
        VarlinkCall *call = pr->call;
        _cleanup_free_ char *b64 = NULL;
        json_object *reply;
        int r;

        if (result < 0) {
                /* Dropped by the monitor before it started, as a reload asked: what the policy
                 * in force says, recorded so, the rule that let it in no longer one. */
                if (pr->revoked && result == -ECANCELED && priv_request_monitor_own(pr->request)) {
                        guest_op_set_rule(call, NULL, NULL);
                        r = send_denied(call, pr->revoked);
                        goto finish;
                }
                /* The monitor's gate refused it: no rule let it through. */
                if (result == -EPERM && priv_request_monitor_own(pr->request))
                        guest_op_set_rule(call, NULL, NULL);
                if (result == -ENOBUFS && priv_request_answered(pr->request))
                        /* The response did not fit what the caller (or the scope) allows. */
                        r = reply_payload_too_large(call, "maxResponseSize", pr->response_size);
                else
                        r = reply_tsm_error(call, pr->request, result, pr->pci_address,
                                            GUEST_REASON_SCOPE_NOT_GRANTED);
                goto finish;
        }

        /* A TSM offered no response buffer may take part of the request: result is the bytes it
         * left (the kernel's residue), said in the record and the reply, not dropped as if all
         * were taken. */
        guest_op_set_response_size(call, len);
        guest_op_set_request_unconsumed(call, (uint64_t) result);
        r = base64_encode(resp, len, &b64);
        if (r < 0)
                goto finish;
        reply = json_object_new_object();
        if (!reply || json_object_add_literal(reply, "response", json_object_new_string_fast(b64, strlen(b64))) < 0 ||
            json_object_add_literal(reply, "scopeNumber", json_object_new_int64(pr->scope_number)) < 0 ||
            (result > 0 && json_object_add_literal(reply, "requestUnconsumed", json_object_new_int64(result)) < 0)) {
                json_object_put(reply);
                r = -ENOMEM;
                goto finish;
        }
        r = varlink_call_reply(call, reply);

finish:
        if (r < 0 && !varlink_call_is_answered(call))
                (void) varlink_call_error_errno(call, r);
        pending_free(pr);
        states_flush(c);
}

/* The largest response whose reply still fits the caller's MaxMessageSize=, which the server
 * measures as the plain JSON plus its NUL (call_send() in varlink-server-call.c). The reply is
 * {"parameters":{"response":"<base64>","scopeNumber":N,"auditSequence":S}}: the base64 of n bytes
 * takes 4 * ceil(n / 3) characters, and S, added once the record is committed (guest-op.c), counts
 * as the longest int64 as it is not known yet. -ENOBUFS if not even an empty response fits. */
static int reply_max_response(size_t max_message_size, uint32_t scope_number, size_t *ret) {
        char number[DECIMAL_U64_MAX];
        size_t envelope;

        /* sizeof() counts the NUL too. */
        envelope = sizeof("{\"parameters\":{\"response\":\"\",\"scopeNumber\":,\"auditSequence\":}}") +
                   strlen(format_u64(scope_number, number)) + strlen("-9223372036854775808");
        if (envelope > max_message_size)
                return -ENOBUFS;
        *ret = (max_message_size - envelope) / 4 * 3;
        return 0;
}

static int vl_guest_request(VarlinkCall *call, json_object *p, void *userdata) {
        Manager *m = userdata;
        GuestClient *c = guest_client_of(call);
        const char *scope = json_get_string(p, "scope"), *b64 = json_get_string(p, "request"), *reason = NULL, *rule;
        size_t b64_len = strlen(b64); /* up to 88 KB: once */
        int64_t max_response = get_int(p, "maxResponseSize", -1);
        _cleanup_(priv_payload_freep) PrivPayload *req = NULL;
        const TsmScopeDesc *desc;
        TsmDeviceInfo info;
        PendingRequest *pr;
        GuestContext *ctx;
        GuestVDevice *v;
        size_t req_len, max_request, claimed, response_size, fits;
        uint32_t number;
        int r, claimed_r;

        r = lookup_full(call, p, &ctx, &v, &info);
        if (r <= 0)
                return r;
        if (v->gone || info.backend == _TSM_BACKEND_TYPE_INVALID)
                return reply_backend_error(call, -ENODEV, v->pci_address);

        /* The scope, by name, for the backend serving this device; numbers are never taken. A
         * refusal from here on records the scope as asked for: a name the backend does not
         * declare as the client's text. */
        desc = tsm_backend_find_scope(tsm_backend_desc(info.backend), scope);
        if (desc)
                guest_op_set_scope(call, desc->name, AUDIT_SCOPE_NUMBER_NONE);
        else
                guest_op_set_unknown_scope(call, scope);
        if (max_response < 0)
                return reply_invalid_parameter(call, "maxResponseSize");
        if (!desc) {
                guest_op_set_refused(call);
                return varlink_call_error_kv(call, GUEST_ERROR("NoSuchScope"), "scope", json_object_new_string(scope),
                                             "backend",
                                             json_object_new_string(tsm_backend_type_to_string(info.backend)), NULL);
        }
        r = tsm_platform_scope_number(m->platform, &info, scope, &number);
        /* The record names the scope asked for, also when the UAPI cannot carry it. */
        guest_op_set_scope(call, desc->name, r < 0 ? AUDIT_SCOPE_NUMBER_NONE : (int64_t) number);
        if (r < 0) {
                guest_op_set_refused(call);
                return varlink_call_error_kv(call, GUEST_ERROR("ScopeUnavailable"),
                                             "scope", json_object_new_string(scope),
                                             "uapi",
                                             json_object_new_string(tsm_uapi_version_to_string(info.uapi) ?: "none"),
                                             NULL);
        }
        /* The size the request claims, so that a refusal records it too: the payload is
         * decoded only for a client the policy lets through. */
        claimed_r = base64_decoded_size(b64, b64_len, &claimed);
        if (claimed_r >= 0)
                guest_op_set_request_size(call, claimed);
        /* SECURITY: per scope, per device, per client; debug scopes only where granted. */
        r = policy_check_scope_full(m->policy, &c->identity, v->pci_address, info.backend, scope, &reason, &rule);
        guest_op_set_rule(call, m->policy, rule); /* allowed, or whose grant was missing */
        if (r < 0)
                return reply_denied(call, reason);

        /* The smaller of the backend's limit for the scope and the configured cap. */
        max_request = MIN((size_t) desc->max_request, m->config.max_request_size);
        if (b64_len > DIV_ROUND_UP(max_request, 3) * 4)
                return reply_payload_too_large(call, "request", max_request);
        if (claimed_r < 0)
                return reply_invalid_parameter(call, "request");
        /* Decoded straight into the block that carries it to the monitor. */
        req = priv_payload_new(claimed);
        if (!req)
                return -ENOMEM;
        r = base64_decode_to(b64, b64_len, priv_payload_data(req), claimed, &req_len);
        if (r == -EINVAL)
                return reply_invalid_parameter(call, "request");
        if (r < 0)
                return r;
        guest_op_set_request_size(call, req_len);
        if (req_len > max_request)
                return reply_payload_too_large(call, "request", max_request);
        response_size = MIN((size_t) MIN(max_response, (int64_t) m->config.max_response_size),
                            (size_t) desc->max_response);

        /* A reply too large for the caller's connection would be replaced by ReplyTooLarge after
         * the device acted: the backend is offered no more than the reply can carry, so that a
         * larger response is refused (PayloadTooLarge, with the limit the caller can have)
         * instead of being produced and lost. A oneway caller gets no reply to fit. */
        if (!(varlink_call_get_flags(call) & VARLINK_CALL_ONEWAY)) {
                if (reply_max_response(varlink_call_reserve_reply_room(call), number, &fits) < 0)
                        fits = 0;
                response_size = MIN(response_size, fits);
        }
        /* SECURITY: a kernel TSM offered no response buffer takes the request for one that wants
         * no response, and acts on it. A caller that wants one but may have none (MaxResponseSize=0;
         * not a byte of room in its reply, unreachable while a request is longer than its reply's
         * envelope) is refused instead. */
        if (response_size == 0 && max_response > 0)
                return reply_payload_too_large(call, "maxResponseSize", 0);

        pr = new0(PendingRequest, 1);
        if (!pr)
                return -ENOMEM;
        pr->client = c;
        pr->call = varlink_call_ref(call);
        pr->backend = info.backend;
        pr->scope = desc->name;
        pr->scope_number = number;
        pr->response_size = response_size;
        pr->pci_address = strdup(v->pci_address);
        pr->context = ctx->handle;
        pr->vdevice = v->id;
        pr->serial = c->next_serial++;
        TAILQ_INSERT_TAIL(&c->pending, pr, entry);
        if (!pr->pci_address) {
                pending_free(pr);
                return -ENOMEM;
        }

        guest_op_set_forwarded(call);
        r = priv_call_guest_request(m->channel, ctx->slot, ctx->id, v->id, info.backend, scope, TAKE_PTR(req),
                                    req_len, pr->response_size, on_request_done, pr, &pr->request);
        if (r < 0) {
                pending_free(pr);
                if (r == -E2BIG)
                        return reply_payload_too_large(call, "request", max_request);
                return reply_backend_error(call, r, v->pci_address);
        }
        guest_op_set_priv_cookie(call, priv_request_get_cookie(pr->request));
        return 0;
}

/* ---- events ---------------------------------------------------------------------------- */

/* Events go to every subscription of the process that owns the device: a VMM watches on a
 * connection of its own, since a "more" call keeps its connection busy until the end.
 * SECURITY: only to a process provably the owner's; where nothing proves it (a peer in a PID
 * namespace we cannot see, which SO_PEERCRED gives pid 0, on a kernel without pidfs), the
 * owner's own connection only, not every process of its uid. */
static bool same_process(const GuestClient *a, const GuestClient *b) {
        return a == b || peer_identity_same_process(&a->identity, &b->identity);
}

/* Each watch keeps the count of its process's contexts, moved here as they come and go, rather
 * than counted when asked: guest_client_holds_state() is asked of every idle connection when
 * tsmd is full, and a pass over all clients for each would be a newcomer's to multiply. */
void guest_client_contexts_changed(GuestClient *c, long delta) {
        GuestClient *w;

        LIST_FOREACH(w, &c->manager->guest_clients, entry)
                if (w->watch && same_process(w, c))
                        w->watched_contexts += delta;
}

static int vl_watch_events(VarlinkCall *call, json_object *p, void *userdata) {
        GuestClient *c = guest_client_of(call), *o;
        json_object *first = json_object_new_object();
        int r;

        if (!first || json_object_add_null(first, "event") < 0) {
                json_object_put(first);
                return -ENOMEM;
        }
        varlink_call_unref(c->watch);
        c->watch = varlink_call_ref(call);
        c->watched_contexts = 0;
        LIST_FOREACH(o, &c->manager->guest_clients, entry)
                if (same_process(c, o))
                        c->watched_contexts += o->n_contexts;
        r = varlink_call_notify(call, first);
        if (r < 0)
                c->watch = varlink_call_unref(c->watch);
        return r;
}

static int event_reply_new(const char *kind, const GuestContext *ctx, const GuestVDevice *v, json_object **ret) {
        _cleanup_(json_object_putp) json_object *ev = json_object_new_object(), *reply = NULL;

        if (!ev || json_object_add(ev, "kind", json_object_new_string(kind)) < 0 ||
            json_object_add(ev, "context", json_object_new_int64((int64_t) ctx->handle)) < 0 ||
            json_object_add(ev, "vdeviceId", json_object_new_int64(v->id)) < 0 ||
            json_object_add(ev, "pciAddress", json_object_new_string(v->pci_address)) < 0 ||
            json_object_add_null(ev, "state") < 0)
                return -ENOMEM;
        reply = json_object_new_object();
        if (!reply || json_object_add(reply, "event", TAKE_PTR(ev)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(reply);
        return 0;
}

static void notify_event(Manager *m, GuestClient *owner, const char *kind, const GuestContext *ctx,
                         const GuestVDevice *v) {
        GuestClient *w;

        LIST_FOREACH(w, &m->guest_clients, entry) {
                json_object *reply;
                int r;

                if (!w->watch || !same_process(w, owner))
                        continue;
                r = event_reply_new(kind, ctx, v, &reply);
                if (r < 0)
                        /* A watcher that would miss an event is told instead: its call ends. */
                        (void) varlink_call_error_errno(w->watch, r);
                else if (varlink_call_notify(w->watch, reply) >= 0)
                        continue;
                w->watch = varlink_call_unref(w->watch); /* its call is over */
        }
}

/* What happened to a vDevice on pci_address; true if it changed it. */
typedef bool (*VDeviceChange)(Manager *m, GuestContext *ctx, GuestVDevice *v, const char *pci_address);

/* change on every vDevice of every context: a connected client's, whose watchers hear kind of
 * it, and one waiting to be reclaimed, whose VMM finds it so once it reclaims it. */
static void change_vdevices(Manager *m, const char *pci_address, VDeviceChange change, const char *kind) {
        GuestClient *c;

        LIST_FOREACH(c, &m->guest_clients, entry)
                for (size_t i = 0; i < c->n_contexts; i++)
                        for (size_t j = 0; j < c->contexts[i]->n_vdevices; j++)
                                if (change(m, c->contexts[i], &c->contexts[i]->vdevices[j], pci_address))
                                        notify_event(m, c, kind, c->contexts[i], &c->contexts[i]->vdevices[j]);
        for (size_t i = 0; i < m->n_orphans; i++)
                for (size_t j = 0; j < m->orphans[i]->n_vdevices; j++)
                        (void) change(m, m->orphans[i], &m->orphans[i]->vdevices[j], pci_address);
}

/* A vDevice whose device went: it holds nothing now, only a detach is left to it (DeviceGone). */
static bool vdevice_gone(Manager *m, GuestContext *ctx, GuestVDevice *v, const char *pci_address) {
        if (v->gone || !streq(v->pci_address, pci_address))
                return false;
        v->gone = true;
        v->bound = false;
        return true;
}

void guest_device_gone(Manager *m, const char *pci_address) {
        change_vdevices(m, pci_address, vdevice_gone, "device-removed");
}

static void on_unbound_recorded(AuditLog *a, uint64_t seq, int error, void *userdata) {
        if (error < 0)
                log_error_errno(error, "Audit record of a binding ended outside tsmd failed: %m");
}

/* A bound vDevice whose binding the kernel ended, tsmd not asked (SYSFS.md, tsm/bound): unbound
 * now, as the kernel has it, and recorded ("unbound-outside"). Not one with a Bind or Unbind on
 * its way, whose answer says what it is: the scan may have seen that change. */
static bool vdevice_unbound(Manager *m, GuestContext *ctx, GuestVDevice *v, const char *pci_address) {
        AuditRecord rec = AUDIT_RECORD_INIT;
        TsmDeviceInfo info;
        int r;

        if (v->gone || !v->bound || v->changing || !streq(v->pci_address, pci_address))
                return false;
        v->bound = false;
        /* Else a restart would take it for bound, and its VMM would see it so. */
        (void) guest_context_persist(m, ctx); /* owed if it fails */

        rec.event = audit_event_to_string(AUDIT_EVENT_UNBOUND_OUTSIDE);
        rec.uid = ctx->uid;
        rec.gid = ctx->gid;
        rec.pid = ctx->pid;
        rec.context_id = ctx->handle > 0 ? ctx->handle : AUDIT_U64_NONE;
        rec.vdevice_id = v->id;
        rec.pci = v->pci_address;
        if (tsm_platform_get_device(m->platform, v->pci_address, &info) >= 0)
                rec.backend = tsm_backend_type_to_string(info.backend);
        rec.result = "ok";
        /* SECURITY: it happened: kept while the log cannot take it, as a release is, else the log
         * would show the device bound still. */
        r = audit_log_record_owed_kept(m->audit, &rec, on_unbound_recorded, NULL, NULL, NULL);
        if (r < 0)
                on_unbound_recorded(m->audit, 0, r, NULL);
        return true;
}

void guest_device_unbound(Manager *m, const char *pci_address) {
        change_vdevices(m, pci_address, vdevice_unbound, "device-unbound");
}

/* ---- lifecycle ------------------------------------------------------------------------- */

/* A PrivSlotInUse: a connected client's, or one whose requests the monitor still holds. */
static bool slot_in_use(uint32_t slot, void *userdata) {
        Manager *m = userdata;
        GuestClient *c;

        LIST_FOREACH(c, &m->guest_clients, entry)
                if (c->slot == slot)
                        return true;
        return priv_call_slot_busy(m->channel, slot);
}

int guest_client_new(Manager *m, VarlinkConn *conn, GuestClient **ret) {
        GuestClient *c = new0(GuestClient, 1);
        int r;

        if (!c)
                return -ENOMEM;
        c->manager = m;
        c->conn = conn;
        c->slot = priv_slot_counter_next(&m->slots, slot_in_use, m);
        TAILQ_INIT(&c->pending);
        LIST_INIT(&c->changes);
        LIST_INIT(&c->states);
        guest_ops_init(&c->ops, &c->identity);

        /* Who it is, once: SO_PEERCRED at connect time, the groups the policy asks about, and the
         * unit (pidfd-checked). */
        r = peer_identity_from_socket(varlink_conn_get_fd(conn), policy_groups_of_interest(m->policy), &c->identity);
        if (r < 0) {
                free(c);
                return log_warning_errno(r, "Cannot identify a client, refusing it: %m");
        }
        LIST_INSERT_HEAD(&m->guest_clients, c, entry);
        *ret = c;
        return 0;
}

/* A call of c's admitted under a grant the policy in force no longer gives: Denied, with its
 * reason, and recorded so, without the rule that let it in. */
static void answer_revoked(VarlinkCall *call, const char *reason) {
        int r;

        guest_op_set_rule(call, NULL, NULL);
        r = send_denied(call, reason);
        if (r < 0 && !varlink_call_is_answered(call))
                (void) varlink_call_error_errno(call, r);
}

/* SECURITY: what c asked for and is not carried out yet needs the grant of the policy in force,
 * as a call made now would. A GuestRequest or Bind no longer granted that still waits in the
 * worker is dropped and answered Denied now. One the monitor has is dropped there if nothing
 * started it yet (waiting for its device, or on its kernel lane): its answer comes back
 * -ECANCELED, and is Denied then (on_request_done(), on_bound()). One started runs to its end,
 * answered and recorded as it ends. */
static void revoke_ungranted(GuestClient *c) {
        Manager *m = c->manager;
        PendingRequest *pr, *pr_next;
        PendingChange *pc, *pc_next;
        const char *reason;

        for (pr = TAILQ_FIRST(&c->pending); pr; pr = pr_next) {
                pr_next = TAILQ_NEXT(pr, entry);
                if (pr->revoked || policy_check_scope(m->policy, &c->identity, pr->pci_address, pr->backend,
                                                      pr->scope, &reason) >= 0)
                        continue;
                if (!priv_request_is_waiting(pr->request)) {
                        /* The monitor has it: asked to drop it. A cancel that cannot be sent
                         * leaves it to run as admitted. */
                        if (priv_request_cancel_sent(pr->request) >= 0)
                                pr->revoked = reason;
                        continue;
                }
                priv_request_cancel(pr->request);
                answer_revoked(pr->call, reason);
                pending_free(pr);
        }
        for (pc = LIST_FIRST(&c->changes); pc; pc = pc_next) {
                GuestContext *ctx = find_context(c, (int64_t) pc->context);
                GuestVDevice *v = ctx ? guest_find_vdevice(ctx, pc->vdevice) : NULL;
                TsmDeviceInfo info;

                pc_next = LIST_NEXT(pc, entry);
                /* Unbinding gives the device up, which needs no grant. */
                if (!pc->bind || pc->revoked || !v || tsm_platform_get_device(m->platform, v->pci_address, &info) < 0 ||
                    policy_check_device(m->policy, &c->identity, v->pci_address, info.backend, &reason) >= 0)
                        continue;
                if (!priv_request_is_waiting(pc->request)) {
                        if (priv_request_cancel_sent(pc->request) >= 0)
                                pc->revoked = reason;
                        continue;
                }
                priv_request_cancel(pc->request);
                v->changing = false;
                (void) guest_context_persist(m, ctx); /* owed if it fails: stored as changing meanwhile */
                answer_revoked(pc->call, reason);
                change_free(pc);
        }
        states_flush(c);
}

void guest_policy_changed(Manager *m, const Policy *old) {
        const GidSet *now = policy_groups_of_interest(m->policy);
        bool narrowing = gid_set_is_subset(now, policy_groups_of_interest(old));
        GuestClient *c;
        int r;

        LIST_FOREACH(c, &m->guest_clients, entry) {
                int fd = varlink_conn_get_fd(c->conn);

                /* What it has covers what the policy asks; or it is gone, past asking. */
                if (narrowing || fd < 0) {
                        peer_identity_narrow_groups(&c->identity, now);
                        continue;
                }
                r = peer_identity_reread_groups(&c->identity, fd, now);
                if (r >= 0)
                        continue;
                /* SECURITY: groups not known as the policy asks about them could miss a rule, or
                 * match one of other limits: the client goes, as one that cannot be identified at
                 * connect time does. */
                log_warning_errno(r, "Cannot read the groups of a client of uid %u again for the reloaded "
                                     "policy, disconnecting it: %m",
                                  (unsigned) c->identity.uid);
                peer_identity_narrow_groups(&c->identity, now);
                varlink_conn_close(c->conn);
        }
        /* With every client's groups as the new policy asks about them. */
        LIST_FOREACH(c, &m->guest_clients, entry)
                revoke_ungranted(c);
}

static void foreach_vdevice_of(const GuestContext *ctx, const GuestClient *c, GuestVDeviceFunc f, void *userdata) {
        for (size_t j = 0; j < ctx->n_vdevices; j++) {
                const GuestVDevice *v = &ctx->vdevices[j];

                f(&(GuestVDeviceInfo){ .client = c,
                                       .uid = c ? c->identity.uid : ctx->uid,
                                       .context = c ? ctx->handle : 0,
                                       .vdevice_id = v->id,
                                       .pci_address = v->pci_address,
                                       .bound = v->bound,
                                       .changing = v->changing,
                                       .gone = v->gone },
                  userdata);
        }
}

void guest_foreach_vdevice(Manager *m, GuestVDeviceFunc f, void *userdata) {
        GuestClient *c;

        LIST_FOREACH(c, &m->guest_clients, entry)
                for (size_t i = 0; i < c->n_contexts; i++)
                        foreach_vdevice_of(c->contexts[i], c, f, userdata);
        for (size_t i = 0; i < m->n_orphans; i++)
                foreach_vdevice_of(m->orphans[i], NULL, f, userdata);
}

GuestClient *guest_client_next(Manager *m, GuestClient *prev) {
        return prev ? LIST_NEXT(prev, entry) : LIST_FIRST(&m->guest_clients);
}

void guest_client_get_stats(const GuestClient *c, unsigned *ret_contexts, unsigned *ret_vdevices,
                            uint64_t *ret_calls) {
        *ret_contexts = (unsigned) c->n_contexts;
        *ret_vdevices = (unsigned) client_vdevices(c);
        *ret_calls = c->ops.n_answered;
}

/* SECURITY: a watch is worth keeping only while its process holds contexts: one that can hear
 * of nothing (every watch of a caller the policy names no rule for) would keep the connection
 * of anyone who may connect from being closed for a newcomer, or for an administrator. */
bool guest_client_holds_state(const GuestClient *c) {
        return c->n_contexts > 0 || (c->watch && c->watched_contexts > 0) || !TAILQ_EMPTY(&c->pending) ||
               !LIST_EMPTY(&c->changes);
}

const PeerIdentity *guest_client_get_identity(const GuestClient *c) {
        return &c->identity;
}

void guest_client_refused(GuestClient *c, VarlinkCall *call, const char *error) {
        guest_op_refused(c->manager, &c->ops, call, error);
}

GuestClient *guest_client_free(GuestClient *c) {
        PendingState *ps;
        PendingChange *pc;
        PendingRequest *pr;

        if (!c)
                return NULL;

        /* Requests first (nobody is left to answer), then bindings and contexts. A vDevice
         * whose Bind is still on its way stays "changing": its release unbinds it after it. One
         * whose Bind or Unbind still waits in the worker (behind requests of the vDevice) is as
         * it was: that never goes. */
        while ((pr = TAILQ_FIRST(&c->pending))) {
                priv_request_cancel(pr->request);
                pending_free(pr);
        }
        while ((pc = LIST_FIRST(&c->changes))) {
                if (priv_request_is_waiting(pc->request)) {
                        GuestContext *ctx = find_context(c, (int64_t) pc->context);
                        GuestVDevice *v = ctx ? guest_find_vdevice(ctx, pc->vdevice) : NULL;

                        if (v)
                                v->changing = false;
                }
                priv_request_cancel(pc->request);
                change_free(pc);
        }
        while ((ps = LIST_FIRST(&c->states)))
                state_free(ps);
        guest_ops_abandon(&c->ops);
        guest_client_contexts_changed(c, -(long) c->n_contexts);
        for (size_t i = 0; i < c->n_contexts; i++) {
                guest_audit_context_release(c->manager, c->contexts[i]);
                guest_context_free(c->manager, c->contexts[i]);
        }
        free(c->contexts);
        varlink_call_unref(c->watch);
        LIST_REMOVE(c, entry);
        peer_identity_done(&c->identity);
        return mfree(c);
}

/* ---- methods --------------------------------------------------------------------------- */

typedef struct GuestMethod {
        const char *name;
        AuditEvent event;  /* the audit record's */
        VarlinkMethodFunc func;
        bool reads_only;   /* changes nothing, forwards nothing to a backend */
} GuestMethod;

static const GuestMethod guest_methods[] = {
        { "io.tsmd.Guest.OpenContext", AUDIT_EVENT_OPEN_CONTEXT, vl_open_context },
        { "io.tsmd.Guest.AdoptContext", AUDIT_EVENT_ADOPT_CONTEXT, vl_adopt_context },
        { "io.tsmd.Guest.ReclaimContext", AUDIT_EVENT_RECLAIM_CONTEXT, guest_vl_reclaim_context },
        { "io.tsmd.Guest.CloseContext", AUDIT_EVENT_CLOSE_CONTEXT, vl_close_context },
        { "io.tsmd.Guest.AttachDevice", AUDIT_EVENT_ATTACH, vl_attach_device },
        { "io.tsmd.Guest.DetachDevice", AUDIT_EVENT_DETACH, vl_detach_device },
        { "io.tsmd.Guest.Bind", AUDIT_EVENT_BIND, vl_bind },
        { "io.tsmd.Guest.Unbind", AUDIT_EVENT_UNBIND, vl_unbind },
        { "io.tsmd.Guest.GetDeviceState", AUDIT_EVENT_GET_STATE, vl_get_device_state, .reads_only = true },
        { "io.tsmd.Guest.GuestRequest", AUDIT_EVENT_GUEST_REQUEST, vl_guest_request },
        { "io.tsmd.Guest.WatchEvents", AUDIT_EVENT_WATCH_EVENTS, vl_watch_events, .reads_only = true },
};

static int guest_dispatch(VarlinkCall *call, json_object *p, void *userdata) {
        const GuestMethod *method = NULL;

        for (size_t i = 0; i < ELEMENTSOF(guest_methods); i++)
                if (streq(guest_methods[i].name, varlink_call_get_method(call)))
                        method = &guest_methods[i];
        assert(method);
        return guest_op_run(userdata, &guest_client_of(call)->ops, audit_event_to_string(method->event),
                            !method->reads_only, method->func, call, p);
}

int guest_methods_register(Manager *m) {
        int r;

        r = varlink_server_add_interface(m->server, varlink_builtin_idl_find("io.tsmd.Guest"));
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(guest_methods); i++) {
                size_t size;
                unsigned fds;

                r = varlink_server_bind_method(m->server, guest_methods[i].name, guest_dispatch);
                if (r < 0)
                        return r;
                r = guest_reply_bound(guest_methods[i].name, &size, &fds);
                if (r == -ENOENT)
                        continue; /* reads only */
                if (r >= 0)
                        r = varlink_server_set_reply_bound(m->server, guest_methods[i].name, size, fds);
                if (r < 0)
                        return r;
        }
        return 0;
}
