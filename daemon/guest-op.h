/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Audited io.tsmd.Guest calls. The audit space is reserved before the method runs, so a call
 * the log cannot record is refused before anything happens (fail closed); while a reload
 * reopens the log, a call that acts waits for the reopen before it runs (its room cannot be
 * known before), postponed in the Varlink server, up to RequestTimeoutUSec=; the method fills in
 * what it touched as it goes (guest_op_set_*()); its final answer is intercepted, recorded,
 * and released to the client only once the record is durable (but for a refusal of tsmd's own
 * checks past its uid's refusal budget: counted, and released at once, guest_op_set_refused()).
 * A subscription (WatchEvents)
 * has no final answer and is recorded when made. Runs in: worker.
 */
#pragma once

#include <stdint.h>
#include <sys/queue.h>

#include "manager.h"
#include "peer-identity.h"
#include "policy.h"
#include "tsm-types.h"
#include "varlink-server.h"

typedef struct GuestOp GuestOp;

/* A client's audited calls: whose they are, those not answered yet, how many were. */
typedef struct GuestOps {
        const PeerIdentity *identity;
        TAILQ_HEAD(, GuestOp) unanswered;
        uint64_t n_answered; /* answered and recorded */
} GuestOps;

void guest_ops_init(GuestOps *ops, const PeerIdentity *identity);
/* The client went away with calls unanswered: each still gets its record, saying so. */
void guest_ops_abandon(GuestOps *ops);

/* Runs func(call, parameters, m) as one audited call of the event named event (the record's
 * "event"), on behalf of ops' client; acts: the method may change something (forward anything
 * to a backend, make or drop a context, a vDevice), not only read. Returns what func returns, or
 * an error reply's (0 for a call postponed until its record has room). */
int guest_op_run(Manager *m, GuestOps *ops, const char *event, bool acts, VarlinkMethodFunc func, VarlinkCall *call,
                 json_object *parameters);

/* A call the Varlink server refuses (error) before any method runs (unknown interface or
 * method, parameters the IDL does not allow, ...), called before the refusal is sent: within the
 * uid's refusal budget it is recorded as an audited call is, the refusal its result, and held
 * back until the record is durable, so a client's refusals in flight are bounded by
 * MaxPendingCalls as its other calls are; past it, or without room in the audit log, it is
 * counted in the uid's refusal summary (audit-budget.h) and goes out at once. A method no
 * interface declares is recorded as event "unknown-method", its name cut short. */
void guest_op_refused(Manager *m, GuestOps *ops, VarlinkCall *call, const char *error);

/* What the call touched, for its record. No-ops for a call that is not audited. */
void guest_op_set_context(VarlinkCall *call, uint64_t context);
void guest_op_set_vdevice(VarlinkCall *call, uint64_t vdevice);
void guest_op_set_device(VarlinkCall *call, const char *pci_address, TsmBackendType backend);
/* scope must outlive the call (a backend's scope table entry); number AUDIT_SCOPE_NUMBER_NONE
 * where the UAPI in use has none for it. */
void guest_op_set_scope(VarlinkCall *call, const char *scope, int64_t number);
/* A scope name as the client sent it, which the device's backend does not declare: copied, cut
 * short (as an unknown method's name), with no number; not a key of the audit counters. */
void guest_op_set_unknown_scope(VarlinkCall *call, const char *scope);
void guest_op_set_request_size(VarlinkCall *call, uint64_t size);
void guest_op_set_response_size(VarlinkCall *call, uint64_t size);
/* The request bytes a TSM offered no response buffer did not consume (0: all). */
void guest_op_set_request_unconsumed(VarlinkCall *call, uint64_t size);
/* The NAME of the [Client:NAME] rule of policy that allowed the call (NULL: none): the call holds
 * a reference on policy until it is recorded, as a reload may replace it meanwhile. */
void guest_op_set_rule(VarlinkCall *call, Policy *policy, const char *rule);
/* Why the policy refused the call (Denied's reason, for its record): one of tsmd's own static
 * texts (policy.h, guest-internal.h), never a client's. */
void guest_op_set_reason(VarlinkCall *call, const char *reason);
/* The cookie the call went to the monitor with: should it fail, a late answer of the kernel to it
 * names its record (guest_late_remember()). Implies guest_op_set_forwarded(). */
void guest_op_set_priv_cookie(VarlinkCall *call, uint32_t cookie);
/* In the callback of its call to the monitor, before the answer: the monitor keeps that call's
 * answer (priv_request_take_kept()) until the call's record is durable, which then says so. */
typedef struct PrivRequest PrivRequest;
void guest_op_take_kept(VarlinkCall *call, PrivRequest *request);

/* SECURITY: a caller the policy names could otherwise write records as fast as it can make calls
 * fail (a CloseContext of a context that does not exist), until rotation deleted every earlier
 * one. A call about to be answered with an error that tsmd's own checks gave, before anything was
 * asked of the monitor or a backend and nothing changed (no such context, vDevice, device or
 * scope; denied by the policy; a limit; a bad parameter), says so with guest_op_set_refused():
 * of a caller the policy names (an administrator, root, too: a VMM may run as root), within its
 * uid's refusal budget it is recorded as every call, past it counted in the uid's
 * refusal summary (audit-budget.h) and answered at once, as the Varlink layer's refusals are.
 * Never a call that was passed to the monitor (guest_op_set_forwarded(), before it is: what comes
 * back may be a backend's word), nor one that succeeded. */
void guest_op_set_refused(VarlinkCall *call);
void guest_op_set_forwarded(VarlinkCall *call);
