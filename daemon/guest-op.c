/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Audited io.tsmd.Guest calls: reserve, run, intercept the answer, record, answer. Runs in: worker. */

#include <stdlib.h>

#include "audit-log.h"
#include "guest-op.h"
#include "guest.h"
#include "json-util.h"
#include "log.h"
#include "priv-call.h"
#include "varlink-errors.h"
#include "varlink-message.h"

#define AUDIT_FAILED "io.tsmd.Guest.AuditFailed"
/* The event of a call naming a method tsmd does not declare: its name is the client's choice,
 * recorded only cut to UNKNOWN_METHOD_MAX bytes (in the record's "method"), and never a key of
 * the refusal summaries. */
#define UNKNOWN_METHOD_EVENT audit_event_to_string(AUDIT_EVENT_UNKNOWN_METHOD)
#define UNKNOWN_METHOD_MAX 64u
/* A scope name no backend of the device declares: the client's too, recorded cut as short. */
#define UNKNOWN_SCOPE_MAX 64u

struct GuestOp {
        Manager *manager;
        GuestOps *ops; /* the client's; NULL once it went away */
        VarlinkCall *call;
        AuditReservation *reservation;
        const char *event;
        char *method; /* UNKNOWN_METHOD_EVENT's, cut short */
        uint64_t start_usec;
        /* Who: the client's identity; once the client went with the record still being
         * written, a copy of what the record needs (its failure is logged with it). */
        const PeerIdentity *identity;
        PeerIdentity left;
        uint64_t context_id, vdevice_id;
        char *pci_address;
        const char *backend;
        const char *scope;
        char *unknown_scope; /* the client's text, cut short; scope points to it */
        int64_t scope_number;
        uint64_t request_size, response_size;
        uint64_t request_unconsumed; /* 0: all taken */
        uint32_t priv_cookie; /* 0: none */
        uint32_t kept_cookie; /* the monitor keeps its answer until this record is durable; 0: none */
        Policy *rule_policy;  /* holds rule */
        const char *rule;
        const char *reason;   /* a Denied's: tsmd's own, static */
        bool refused;   /* by tsmd's own checks, before anything was done (guest_op_set_refused()) */
        bool forwarded; /* something was asked of the monitor for it */
        /* Its refusals count against the refusal budget once they are made: its caller is one
         * the policy names (root and administrators too: a VMM may run as root, confined); the
         * calls of a caller it does not name took from the budget before they ran. */
        bool budgeted;
        /* Its record is a refusal's, taken from the budget (AuditRecord.refusal). */
        bool refusal;
        VarlinkMethodFunc func; /* of a call that acts: run once its room is granted */
        json_object *answer; /* the intercepted final message, until the record is durable */
        TAILQ_ENTRY(GuestOp) entry; /* in ops->unanswered while the client exists */
};

void guest_ops_init(GuestOps *ops, const PeerIdentity *identity) {
        *ops = (GuestOps){ .identity = identity };
        TAILQ_INIT(&ops->unanswered);
}

static GuestOp *op_of(VarlinkCall *call) {
        return varlink_call_get_userdata(call);
}

static void op_free(GuestOp *op) {
        if (!op)
                return;
        /* Answered and recorded (or abandoned): a draining daemon may exit after the last. Its
         * record is durable (or failed the log, which says so), or never was to be (a refusal
         * counted): the monitor may forget the answer. */
        priv_answer_recorded(op->manager->channel, op->kept_cookie, false);
        op->manager->n_pending_requests--;
        manager_request_finished(op->manager);
        if (op->ops)
                TAILQ_REMOVE(&op->ops->unanswered, op, entry);
        audit_log_cancel(op->reservation);
        varlink_call_set_userdata(op->call, NULL);
        varlink_call_unref(op->call);
        json_object_put(op->answer);
        free(op->pci_address);
        free(op->method);
        free(op->unknown_scope);
        free(op->left.unit);
        policy_unref(op->rule_policy);
        free(op);
}

static void op_fill_record(const GuestOp *op, const char *result, AuditRecord *rec) {
        *rec = AUDIT_RECORD_INIT;
        rec->event = op->event;
        rec->method = op->method;
        rec->uid = op->identity->uid;
        rec->gid = op->identity->gid;
        rec->pid = op->identity->pid;
        rec->unit = op->identity->unit;
        rec->context_id = op->context_id;
        rec->vdevice_id = op->vdevice_id;
        rec->pci = op->pci_address;
        rec->backend = op->backend;
        rec->scope = op->scope;
        rec->scope_unknown = op->scope && op->scope == op->unknown_scope;
        rec->refusal = op->refusal;
        rec->scope_number = op->scope_number;
        rec->request_size = op->request_size;
        rec->response_size = op->response_size;
        rec->request_unconsumed = op->request_unconsumed;
        rec->rule = op->rule;
        rec->reason = op->reason;
        rec->result = result;
        rec->latency_usec = now_monotonic_usec() - op->start_usec;
}

/* The outcome a record gives for a final message: its error name, or "ok". */
static const char *result_of(json_object *message) {
        json_object *error;

        return json_object_object_get_ex(message, "error", &error) ? json_object_get_string(error) : "ok";
}

/* A call not recorded by itself: counted in its uid's refusal summary instead. */
static void count_unrecorded(Manager *m, const PeerIdentity *id, const char *event, const char *result) {
        audit_budget_count(m->refusal_budget, id->uid, event, result);
}

static void on_abandoned_recorded(AuditLog *a, uint64_t seq, int error, void *userdata) {
        if (error < 0)
                log_error_errno(error, "Audit record of an abandoned call failed: %m");
}

void guest_ops_abandon(GuestOps *ops) {
        GuestOp *op;

        while ((op = TAILQ_FIRST(&ops->unanswered))) {
                TAILQ_REMOVE(&ops->unanswered, op, entry);
                op->ops = NULL;
                if (audit_reservation_is_waiting(op->reservation)) {
                        /* It waited for room and never ran: nothing happened but the call. */
                        count_unrecorded(op->manager, op->identity, op->event, VARLINK_ERROR_DISCONNECTED);
                        op_free(op);
                        continue;
                }
                if (op->reservation) {
                        AuditReservation *res = TAKE_PTR(op->reservation);
                        AuditRecord rec;
                        uint64_t seq = 0;

                        /* Its call may be on its way in the monitor: what the device does is
                         * recorded late, naming this record (priv_request_take_kept()). */
                        op_fill_record(op, VARLINK_ERROR_DISCONNECTED, &rec);
                        if (audit_log_commit(res, &rec, on_abandoned_recorded, NULL, &seq) >= 0)
                                guest_late_remember(op->manager, op->priv_cookie, seq); /* 0 if held */
                        op_free(op);
                        continue;
                }
                /* Its record is being written, and the commit callback frees it: it outlives the
                 * client's identity. Without memory for the unit, a failure's log line lacks it. */
                op->left = (PeerIdentity){ .uid = op->identity->uid, .gid = op->identity->gid,
                                           .pid = op->identity->pid,
                                           .unit = op->identity->unit ? strdup(op->identity->unit) : NULL };
                op->identity = &op->left;
        }
}

/* NULL without memory. */
static json_object *audit_failed_message(int error) {
        json_object *m = NULL;

        (void) varlink_message_new_error_errno("io.tsmd.Guest.AuditFailed", error, &m);
        return m;
}

static void on_record_committed(AuditLog *a, uint64_t seq, int error, void *userdata) {
        GuestOp *op = userdata;
        json_object *answer = TAKE_PTR(op->answer), *params;

        if (error < 0) {
                /* SECURITY: an answer whose record is not durable is not given. The call had
                 * room reserved and ran; the record of what it did goes to the journal at
                 * critical priority (journald writes those at once), and the log stays failed,
                 * refusing everything, until an administrator repairs it and reloads. */
                _cleanup_free_ char *line = NULL;
                AuditRecord rec;
                size_t len;

                op_fill_record(op, result_of(answer), &rec);
                rec.realtime_usec = now_realtime_usec(); /* when it was lost; it has no seq */
                rec.monotonic_usec = now_monotonic_usec();
                if (audit_record_serialize(&rec, &line, &len) >= 0 && len > 0)
                        line[len - 1] = 0; /* the newline */
                log_full_errno(LOG_CRIT, error, "Audit log failed after %s ran, %s; unrecorded: %s (%m)", op->event,
                               op->ops ? "answering AuditFailed" : "its client is gone", strna(line));
                json_object_put(answer);
                answer = audit_failed_message(error);
        } else if (streq(op->event, audit_event_to_string(AUDIT_EVENT_GUEST_REQUEST)) &&
                   !json_object_object_get_ex(answer, "error", NULL) &&
                   json_object_object_get_ex(answer, "parameters", &params))
                (void) json_object_add_literal(params, "auditSequence", json_object_new_int64((int64_t) seq));

        /* NULL (no memory for AuditFailed) drops the connection: its client must not wait. */
        (void) varlink_call_release(op->call, answer);
        if (op->ops)
                op->ops->n_answered++;
        op_free(op);
}

/* The record a late answer names was held for a reopen of the log, and is numbered now (op lives
 * until it is durable). */
static void on_record_numbered(AuditLog *a, uint64_t seq, void *userdata) {
        GuestOp *op = userdata;

        guest_late_remember(op->manager, op->priv_cookie, seq);
}

/* Whether the answer is a refusal tsmd's own checks gave past its uid's refusal budget (then
 * counted in the uid's summary), guest_op_set_refused(). */
static bool op_counted_as_refusal(GuestOp *op, json_object *message) {
        const char *result = result_of(message);

        if (!op->budgeted || !op->refused || op->forwarded || streq(result, "ok"))
                return false;
        if (audit_budget_take(op->manager->refusal_budget, op->identity->uid)) {
                op->refusal = true;
                return false;
        }
        count_unrecorded(op->manager, op->identity, op->event, result);
        return true;
}

/* The method answered: record the outcome, answer once it is on disk. */
static void on_answer(VarlinkCall *call, json_object *message, void *userdata) {
        GuestOp *op = userdata;
        AuditReservation *res;
        AuditRecord rec;
        uint64_t seq = 0;
        bool may_answer_late;
        int r;

        if (op_counted_as_refusal(op, message)) {
                /* Nothing happened: its answer goes out now, as a refusal the Varlink layer counts. */
                (void) varlink_call_release(op->call, message);
                if (op->ops)
                        op->ops->n_answered++;
                op_free(op); /* gives its room back */
                return;
        }
        res = TAKE_PTR(op->reservation);
        op->answer = message;
        op_fill_record(op, result_of(message), &rec);
        /* It failed (Timeout, DeviceGone, ...) while the kernel may have it: a late answer names
         * this record, numbered now or, held for a pending reopen of the log, once the reopen
         * finished; either way before anything after it can come. */
        may_answer_late = op->priv_cookie != 0 && audit_record_is_error(&rec);
        r = audit_log_commit_full(res, &rec, on_record_committed, may_answer_late ? on_record_numbered : NULL, op,
                                  &seq);
        if (r < 0) {
                on_record_committed(op->manager->audit, 0, r, op);
                return;
        }
        if (may_answer_late)
                guest_late_remember(op->manager, op->priv_cookie, seq); /* 0 if held: on_record_numbered() */
}

static void on_watch_recorded(AuditLog *a, uint64_t seq, int error, void *userdata) {
        op_free(userdata);
}

static void op_reserved(AuditLog *a, AuditReservation *res, int error, void *userdata);

/* A call of ops' client, with room for its record reserved in pool; one that acts (func set)
 * may get a reservation that waits for it (audit_log_reserve_to_act()). */
static int op_new(Manager *m, GuestOps *ops, const char *event, VarlinkCall *call, AuditPool pool,
                  VarlinkMethodFunc func, GuestOp **ret) {
        GuestOp *op;
        int r;

        op = new0(GuestOp, 1);
        if (!op)
                return -ENOMEM;
        m->n_pending_requests++;
        *op = (GuestOp){
                .manager = m,
                .ops = ops,
                .call = varlink_call_ref(call),
                .event = event,
                .start_usec = now_monotonic_usec(),
                .identity = ops->identity,
                .context_id = AUDIT_U64_NONE,
                .vdevice_id = AUDIT_U64_NONE,
                .scope_number = AUDIT_SCOPE_NUMBER_NONE,
                .request_size = AUDIT_U64_NONE,
                .response_size = AUDIT_U64_NONE,
        };
        TAILQ_INSERT_TAIL(&ops->unanswered, op, entry);

        /* A caller the policy names no rule for is refused by any method: nothing it calls acts. */
        if (func && pool == AUDIT_POOL_NAMED) {
                op->func = func;
                r = audit_log_reserve_to_act(m->audit, ops->identity->uid, pool, manager_audit_wait_usec(m),
                                             op_reserved, op, &op->reservation);
        } else
                r = audit_log_reserve_for(m->audit, ops->identity->uid, pool, &op->reservation);
        if (r < 0) {
                op_free(op);
                return r;
        }
        *ret = op;
        return 0;
}

/* A call refused for want of room for its record (nothing ran): counted, and logged in its
 * record's place. */
static void note_unrecorded_refusal(Manager *m, const PeerIdentity *id, const char *event, int error) {
        count_unrecorded(m, id, event, AUDIT_FAILED);
        log_full_ratelimited(&m->unrecorded_refusal_log, LOG_WARNING,
                             "Refusing %s, the audit log cannot take a record: %s", event, strerror(-error));
}

/* The room a postponed call that acts waited for (a reload reopened the log): it runs now, or
 * is refused as it would have been had the log been in that state when it came. */
static void op_reserved(AuditLog *a, AuditReservation *res, int error, void *userdata) {
        GuestOp *op = userdata;
        Manager *m = op->manager;
        _cleanup_(varlink_call_unrefp) VarlinkCall *call = varlink_call_ref(op->call);

        if (error < 0) {
                note_unrecorded_refusal(m, op->identity, op->event, error);
                op_free(op);
                (void) varlink_call_release(call, audit_failed_message(error));
                return;
        }

        varlink_call_set_interceptor(call, on_answer, op);
        /* Not run for a client being dropped: its record, that it left, comes with the others'. */
        (void) varlink_call_run(call, op->func, m);
}

int guest_op_run(Manager *m, GuestOps *ops, const char *event, bool acts, VarlinkMethodFunc func, VarlinkCall *call,
                 json_object *parameters) {
        AuditPool pool = manager_audit_pool(m, ops->identity);
        GuestOp *op;
        int r;

        /* SECURITY: a caller the policy names no rule for is refused whatever it calls, and
         * anyone may connect: its calls are recorded one by one within its refusal budget, past
         * it refused at once (nothing runs) and counted in its summary, so that it cannot write
         * records until rotation deletes every earlier one. */
        if (pool == AUDIT_POOL_UNNAMED && !audit_budget_take(m->refusal_budget, ops->identity->uid)) {
                count_unrecorded(m, ops->identity, event, AUDIT_FAILED);
                return varlink_call_release(call, audit_failed_message(-ENOBUFS));
        }

        /* SECURITY: fail closed: no room for the record, nothing happens. */
        r = op_new(m, ops, event, call, pool, acts ? func : NULL, &op);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                note_unrecorded_refusal(m, ops->identity, event, r);
                return varlink_call_release(call, audit_failed_message(r));
        }
        op->budgeted = pool == AUDIT_POOL_NAMED;
        op->refusal = pool == AUDIT_POOL_UNNAMED; /* taken from the budget above */
        varlink_call_set_userdata(call, op);

        /* SECURITY: a reload reopens the log, maybe on another file system: a call that acts
         * runs once its record has room there (op_reserved()), never before. */
        if (audit_reservation_is_waiting(op->reservation))
                return varlink_call_postpone(call);

        /* A subscription has no final answer to wait for: it is recorded when made. */
        if (streq(event, audit_event_to_string(AUDIT_EVENT_WATCH_EVENTS))) {
                AuditReservation *res = TAKE_PTR(op->reservation);
                AuditRecord rec;

                r = func(call, parameters, m);
                op_fill_record(op, r < 0 ? "io.tsmd.System" : "ok", &rec);
                if (audit_log_commit(res, &rec, on_watch_recorded, op, NULL) < 0)
                        op_free(op);
                return r;
        }

        varlink_call_set_interceptor(call, on_answer, op);
        return func(call, parameters, m);
}

void guest_op_refused(Manager *m, GuestOps *ops, VarlinkCall *call, const char *error) {
        const char *method = varlink_call_get_method(call), *event;
        _cleanup_free_ char *cut = NULL;
        GuestOp *op;
        int r;

        /* Not a call at all (an invalid call object): the record says "call". A method no
         * interface declares is the client's string: under a fixed event, cut short. */
        if (isempty(method))
                event = audit_event_to_string(AUDIT_EVENT_CALL);
        else if (!varlink_call_method_is_declared(call)) {
                event = UNKNOWN_METHOD_EVENT;
                if (audit_string_bound(method, UNKNOWN_METHOD_MAX, &cut) < 0)
                        cut = NULL; /* recorded without it */
        } else
                event = method;

        /* SECURITY: anyone may connect and send calls to be refused: past its budget, a uid's
         * are counted in its summary. Nothing happens either way, and the refusal goes out. */
        if (!audit_budget_take(m->refusal_budget, ops->identity->uid)) {
                count_unrecorded(m, ops->identity, event, error);
                return;
        }
        r = op_new(m, ops, event, call, manager_audit_pool(m, ops->identity), NULL, &op);
        if (r < 0) {
                log_debug_errno(r, "Refusal of %s not recorded by itself, the audit log cannot take it: %m", event);
                count_unrecorded(m, ops->identity, event, error);
                return;
        }
        op->method = TAKE_PTR(cut);
        op->refusal = true;
        varlink_call_set_userdata(call, op);
        varlink_call_set_interceptor(call, on_answer, op);
}

void guest_op_set_context(VarlinkCall *call, uint64_t context) {
        GuestOp *op = op_of(call);

        if (op)
                op->context_id = context;
}

void guest_op_set_vdevice(VarlinkCall *call, uint64_t vdevice) {
        GuestOp *op = op_of(call);

        if (op)
                op->vdevice_id = vdevice;
}

void guest_op_set_device(VarlinkCall *call, const char *pci_address, TsmBackendType backend) {
        GuestOp *op = op_of(call);

        if (!op || !pci_address)
                return;
        free(op->pci_address);
        op->pci_address = strdup(pci_address); /* NULL: recorded without it */
        if (backend >= 0)
                op->backend = tsm_backend_type_to_string(backend);
}

void guest_op_set_scope(VarlinkCall *call, const char *scope, int64_t number) {
        GuestOp *op = op_of(call);

        if (op) {
                op->scope = scope;
                op->scope_number = number;
        }
}

void guest_op_set_unknown_scope(VarlinkCall *call, const char *scope) {
        GuestOp *op = op_of(call);
        char *cut;

        if (!op || !scope || audit_string_bound(scope, UNKNOWN_SCOPE_MAX, &cut) < 0)
                return; /* recorded without it */
        free(op->unknown_scope);
        op->unknown_scope = cut;
        op->scope = cut;
        op->scope_number = AUDIT_SCOPE_NUMBER_NONE;
}

void guest_op_set_request_size(VarlinkCall *call, uint64_t size) {
        GuestOp *op = op_of(call);

        if (op)
                op->request_size = size;
}

void guest_op_set_priv_cookie(VarlinkCall *call, uint32_t cookie) {
        GuestOp *op = op_of(call);

        if (op) {
                op->priv_cookie = cookie;
                op->forwarded = true;
        }
}

void guest_op_take_kept(VarlinkCall *call, PrivRequest *request) {
        GuestOp *op = op_of(call);

        if (op)
                op->kept_cookie = priv_request_take_kept(request);
}

void guest_op_set_refused(VarlinkCall *call) {
        GuestOp *op = op_of(call);

        if (op)
                op->refused = true;
}

void guest_op_set_forwarded(VarlinkCall *call) {
        GuestOp *op = op_of(call);

        if (op)
                op->forwarded = true;
}

void guest_op_set_response_size(VarlinkCall *call, uint64_t size) {
        GuestOp *op = op_of(call);

        if (op)
                op->response_size = size;
}

void guest_op_set_request_unconsumed(VarlinkCall *call, uint64_t size) {
        GuestOp *op = op_of(call);

        if (op)
                op->request_unconsumed = size;
}

void guest_op_set_rule(VarlinkCall *call, Policy *policy, const char *rule) {
        GuestOp *op = op_of(call);

        if (!op)
                return;
        policy_unref(op->rule_policy);
        op->rule_policy = rule ? policy_ref(policy) : NULL;
        op->rule = rule;
}

void guest_op_set_reason(VarlinkCall *call, const char *reason) {
        GuestOp *op = op_of(call);

        if (op)
                op->reason = reason;
}
