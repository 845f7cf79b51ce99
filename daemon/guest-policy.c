/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io.tsmd.Guest after a reload of the policy: each client's groups read again as the new policy
 * asks about them, and what a client asked for under a grant the new policy no longer gives
 * dropped and answered Denied. Runs in: worker.
 */

#include <sys/queue.h>

#include "guest-internal.h"
#include "guest-op.h"
#include "log.h"
#include "peer-identity.h"
#include "policy.h"
#include "priv-call.h"
#include "tsm-platform.h"

/* A call of c's admitted under a grant the policy in force no longer gives: Denied, with its
 * reason, and recorded so, without the rule that let it in. */
static void answer_revoked(VarlinkCall *call, const char *reason) {
        int r;

        guest_op_set_rule(call, NULL, NULL);
        r = guest_send_denied(call, reason);
        if (r < 0 && !varlink_call_is_answered(call))
                (void) varlink_call_error_errno(call, r);
}

/* SECURITY: what c asked for and is not carried out yet needs the grant of the policy in force,
 * as a call made now would. A GuestRequest or Bind no longer granted that still waits in the
 * worker is dropped and answered Denied now. One the monitor has is dropped there if nothing
 * started it yet (waiting for its device, or on its kernel lane): its answer comes back
 * -ECANCELED, and is Denied then (on_request_done(), on_bound()). One started runs to its end,
 * answered and recorded as it ends. */
/* A request whose grant a reload took: cancelled here if it still waits to go to the monitor
 * (true: the caller answers it); if the monitor has it, the monitor is asked to drop it and
 * *revoked says why (a cancel that cannot be sent leaves it to run as admitted). */
static bool cancel_revoked(PrivRequest *request, const char **revoked, const char *reason) {
        if (!priv_request_is_waiting(request)) {
                if (priv_request_cancel_sent(request) >= 0)
                        *revoked = reason;
                return false;
        }
        priv_request_cancel(request);
        return true;
}

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
                if (!cancel_revoked(pr->request, &pr->revoked, reason))
                        continue;
                answer_revoked(pr->call, reason);
                guest_pending_free(pr);
        }
        for (pc = LIST_FIRST(&c->changes); pc; pc = pc_next) {
                GuestContext *ctx = guest_find_context(c, (int64_t) pc->context);
                GuestVDevice *v = ctx ? guest_find_vdevice(ctx, pc->vdevice) : NULL;
                TsmDeviceInfo info;

                pc_next = LIST_NEXT(pc, entry);
                /* Unbinding gives the device up, which needs no grant. */
                if (!pc->bind || pc->revoked || !v || tsm_platform_get_device(m->platform, v->pci_address, &info) < 0 ||
                    policy_check_device(m->policy, &c->identity, v->pci_address, info.backend, &reason) >= 0)
                        continue;
                if (!cancel_revoked(pc->request, &pc->revoked, reason))
                        continue;
                v->changing = false;
                (void) guest_context_persist(m, ctx); /* owed if it fails: stored as changing meanwhile */
                answer_revoked(pc->call, reason);
                guest_change_free(pc);
        }
        guest_states_flush(c);
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
