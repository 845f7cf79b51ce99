/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io.tsmd.Guest: the method table, a client's lifetime, and what the methods share: their
 * replies, the lookup of the context and vDevice a call names, the limits that count what a
 * client holds. The methods are in a file each concept: contexts (guest-context.c), vDevices
 * (guest-attach.c), binding and device state (guest-bind.c), guest requests (guest-request.c),
 * events (guest-events.c), what a connection holds (guest-describe.c); what a reload of the
 * policy does to clients is guest-policy.c's.
 * Everything privileged (the iommufd, the TSM operations) is the monitor's: each call that needs
 * it goes through a priv_call_*() call to the monitor, on behalf of the client's slot. Every
 * method runs as an audited call (guest-op.c), told what it touched through guest_op_set_*().
 * Runs in: worker.
 */

#include <limits.h>
#include <sys/queue.h>

#include "guest-internal.h"
#include "guest-op.h"
#include "iommufd-transport.h"
#include "json-util.h"
#include "log.h"
#include "peer-identity.h"
#include "policy.h"
#include "priv-call.h"
#include "tsm-platform.h"
#include "varlink-service.h"

/* ---- replies and lookups ------------------------------------------------------------------- */

GuestClient *guest_client_of(VarlinkCall *call) {
        return varlink_conn_get_userdata(varlink_call_get_conn(call));
}

int64_t guest_get_int(json_object *p, const char *key, int64_t def) {
        json_object *v;

        if (!json_object_object_get_ex(p, key, &v) || !json_object_is_type(v, json_type_int))
                return def;
        return json_object_get_int64(v);
}

/* The replies of tsmd's own checks, made before anything was asked of the monitor or changed, say
 * so (guest_op_set_refused()): past its uid's refusal budget such a call is counted, not recorded
 * by itself. Where one follows something passed to the monitor, the call says that too, and is
 * recorded whatever its reply. */
int guest_reply_no_such_context(VarlinkCall *call, int64_t handle) {
        guest_op_set_refused(call);
        return varlink_call_error_kv(call, GUEST_ERROR("NoSuchContext"),
                                     "context", json_object_new_int64(handle), NULL);
}

int guest_reply_no_such_vdevice(VarlinkCall *call, int64_t handle, int64_t id) {
        guest_op_set_refused(call);
        return varlink_call_error_kv(call, GUEST_ERROR("NoSuchVDevice"), "context", json_object_new_int64(handle),
                                     "vdeviceId", json_object_new_int64(id), NULL);
}

/* reason: static, tsmd's own; the record says it too. A Denied of the monitor's, or of a call
 * admitted under a grant a reload took away. */
int guest_send_denied(VarlinkCall *call, const char *reason) {
        guest_op_set_reason(call, reason);
        return varlink_call_error_kv(call, GUEST_ERROR("Denied"), "reason", json_object_new_string(reason), NULL);
}

/* The policy in force refused the call, before anything was done. */
int guest_reply_denied(VarlinkCall *call, const char *reason) {
        guest_op_set_refused(call);
        return guest_send_denied(call, reason);
}

int guest_reply_invalid_parameter(VarlinkCall *call, const char *name) {
        guest_op_set_refused(call);
        return varlink_call_error_invalid_parameter(call, name);
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
 * unanswered (io.tsmd.System): the worker's own; see guest_reply_tsm_error(). A backend's -EPERM is
 * BackendError PermissionDenied: the kernel says so where its caller, tsmd's monitor, lacks a
 * privilege (the v5 UAPI: DEBUG_WRITE "requires CAP_SYS_RAW_IO"), which no policy rule decides;
 * Denied is the policy's, its reason the grant that was missing. */
int guest_reply_backend_error(VarlinkCall *call, int r, const char *pci_address) {
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
int guest_reply_tsm_error(VarlinkCall *call, const PrivRequest *req, int r, const char *pci_address,
                           const char *gate_reason) {
        /* Not the monitor's word but the worker's failure to carry it (its channel's send errors:
         * -EAGAIN after the send timeout, -ENOBUFS, -EMSGSIZE; the channel's end): tsmd's own, as
         * -ENOMEM is. A detach or close fails what waits here -ENODEV, as the monitor would. */
        if (!priv_request_answered(req) && r != -ENODEV)
                return r;
        if (priv_request_monitor_own(req))
                return r == -EPERM ? guest_send_denied(call, gate_reason) : guest_reply_backend_error(call, r, pci_address);
        if (r == -ENOMEM && priv_request_answered(req))
                return reply_backend_errno(call, r);
        return guest_reply_backend_error(call, r, pci_address);
}

/* tsmd's own check: the device is another's, or its vDevice changes (a backend's EBUSY is not this). */
int guest_reply_device_busy(VarlinkCall *call, const char *pci_address) {
        guest_op_set_refused(call);
        return varlink_call_error_kv(call, GUEST_ERROR("DeviceBusy"),
                                     "pciAddress", json_object_new_string(pci_address), NULL);
}

/* A fd the client passed that the worker had no room to receive (its RLIMIT_NOFILE is reached,
 * or it takes none while fds wait to be closed behind a close a file system holds: fd-closer.h):
 * our failure, answered io.tsmd.System EMFILE, not the client's BadFileDescriptor. Rate limited:
 * a client that holds such a close can make every call with an fd come here. */
int guest_fd_lost(const char *field) {
        static RateLimit log_limit = RATELIMIT(UNRECORDED_REFUSAL_LOG_INTERVAL_USEC, UNRECORDED_REFUSAL_LOG_BURST);

        log_full_ratelimited(&log_limit, LOG_WARNING,
                             "No fd left to receive the %s a client passed (RLIMIT_NOFILE reached, or fds waiting "
                             "to be closed behind a close some file system holds), failing its call with EMFILE.",
                             field);
        return -EMFILE;
}

GuestContext *guest_find_context(GuestClient *c, int64_t handle) {
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
int guest_persist_before_change(Manager *m, GuestContext *ctx) {
        int r = 0;

        if (m->hello.fdstore)
                r = guest_pay_owed_saves(m, ctx);
        if (r >= 0)
                r = guest_context_persist(m, ctx);
        return m->hello.fdstore ? r : 0;
}

/* Nothing was done. Out of memory is tsmd's own (io.tsmd.System), as everywhere. */
int guest_reply_state_not_saved(VarlinkCall *call, int error) {
        if (error == -ENOMEM)
                return error;
        return varlink_call_error_kv(call, GUEST_ERROR("StateNotSaved"), "errno", json_object_new_int(-error), NULL);
}

/* Looks up context and vDevice named in the parameters: 1 if both are there, else the right
 * error is the answer (0, or < 0 if it could not be given: the caller returns it, and the
 * call gets io.tsmd.System). ret_info (optional) describes the vDevice's device; its backend is
 * _TSM_BACKEND_TYPE_INVALID if the platform serves it no more. */
int guest_lookup_full(VarlinkCall *call, json_object *p, GuestContext **ret_ctx, GuestVDevice **ret_vdev,
                       TsmDeviceInfo *ret_info) {
        GuestClient *c = guest_client_of(call);
        int64_t handle = guest_get_int(p, "context", -1), id = guest_get_int(p, "vdeviceId", -1);
        TsmDeviceInfo info = { .backend = _TSM_BACKEND_TYPE_INVALID };
        GuestContext *ctx;
        GuestVDevice *v;
        int r;

        ctx = guest_find_context(c, handle);
        /* Also when there is none: a record of what was probed (another client's, a guess). */
        if (handle > 0)
                guest_op_set_context(call, (uint64_t) handle);
        if (!ctx) {
                r = guest_reply_no_such_context(call, handle);
                return MIN(r, 0);
        }
        if (!ret_vdev) {
                *ret_ctx = ctx;
                return 1;
        }
        v = guest_find_vdevice(ctx, id);
        if (!v) {
                r = guest_reply_no_such_vdevice(call, handle, id);
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

int guest_lookup(VarlinkCall *call, json_object *p, GuestContext **ret_ctx, GuestVDevice **ret_vdev) {
        return guest_lookup_full(call, p, ret_ctx, ret_vdev, NULL);
}

/* ---- limits -------------------------------------------------------------------------------- */

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

/* ---- lifecycle ----------------------------------------------------------------------------- */

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
                guest_pending_free(pr);
        }
        while ((pc = LIST_FIRST(&c->changes))) {
                if (priv_request_is_waiting(pc->request)) {
                        GuestContext *ctx = guest_find_context(c, (int64_t) pc->context);
                        GuestVDevice *v = ctx ? guest_find_vdevice(ctx, pc->vdevice) : NULL;

                        if (v)
                                v->changing = false;
                }
                priv_request_cancel(pc->request);
                guest_change_free(pc);
        }
        while ((ps = LIST_FIRST(&c->states)))
                guest_state_free(ps);
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

/* ---- methods ------------------------------------------------------------------------------- */

typedef struct GuestMethod {
        const char *name;
        AuditEvent event;  /* the audit record's */
        VarlinkMethodFunc func;
        bool reads_only;   /* changes nothing, forwards nothing to a backend */
} GuestMethod;

static const GuestMethod guest_methods[] = {
        { "io.tsmd.Guest.OpenContext", AUDIT_EVENT_OPEN_CONTEXT, guest_vl_open_context },
        { "io.tsmd.Guest.AdoptContext", AUDIT_EVENT_ADOPT_CONTEXT, guest_vl_adopt_context },
        { "io.tsmd.Guest.ReclaimContext", AUDIT_EVENT_RECLAIM_CONTEXT, guest_vl_reclaim_context },
        { "io.tsmd.Guest.CloseContext", AUDIT_EVENT_CLOSE_CONTEXT, guest_vl_close_context },
        { "io.tsmd.Guest.AttachDevice", AUDIT_EVENT_ATTACH, guest_vl_attach_device },
        { "io.tsmd.Guest.DetachDevice", AUDIT_EVENT_DETACH, guest_vl_detach_device },
        { "io.tsmd.Guest.Bind", AUDIT_EVENT_BIND, guest_vl_bind },
        { "io.tsmd.Guest.Unbind", AUDIT_EVENT_UNBIND, guest_vl_unbind },
        { "io.tsmd.Guest.GetDeviceState", AUDIT_EVENT_GET_STATE, guest_vl_get_device_state, .reads_only = true },
        { "io.tsmd.Guest.GuestRequest", AUDIT_EVENT_GUEST_REQUEST, guest_vl_guest_request },
        { "io.tsmd.Guest.WatchEvents", AUDIT_EVENT_WATCH_EVENTS, guest_vl_watch_events, .reads_only = true },
        { "io.tsmd.Guest.DescribeConnection", AUDIT_EVENT_DESCRIBE_CONNECTION, guest_vl_describe_connection,
          .reads_only = true },
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
