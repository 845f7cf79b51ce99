/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Refusals of the Varlink server, audited. Runs in: worker. */

#include "audit-log.h"
#include "guest.h"
#include "log.h"
#include "peer-identity.h"
#include "refusals.h"

static void on_connection_refusal_recorded(AuditLog *a, uint64_t seq, int error, void *userdata) {
        if (error < 0)
                log_error_errno(error, "Audit record of a refused connection failed: %m");
}

static void on_refusal(VarlinkServer *s, const struct ucred *peer, VarlinkConn *conn, VarlinkCall *call,
                       const char *error, const char *reason, void *userdata) {
        Manager *m = userdata;
        GuestClient *c = conn ? varlink_conn_get_userdata(conn) : NULL;
        const PeerIdentity *id = c ? guest_client_get_identity(c) : NULL;
        AuditRecord rec = AUDIT_RECORD_INIT;
        int r;

        if (call) {
                /* Every connection has its client from accept on. */
                if (c)
                        guest_client_refused(c, call, error);
                return;
        }

        /* SECURITY: anyone may make connections to be refused: past its budget, a uid's are
         * counted in its refusal summary (audit-budget.h), as are those the audit log has no
         * room for. Nothing waits for this record: the connection is gone, or never was. */
        if (!audit_budget_take(m->refusal_budget, peer->uid)) {
                audit_budget_count(m->refusal_budget, peer->uid, audit_event_to_string(AUDIT_EVENT_CONNECTION), error);
                return;
        }
        rec.event = audit_event_to_string(AUDIT_EVENT_CONNECTION);
        rec.uid = peer->uid;
        rec.gid = peer->gid;
        rec.pid = peer->pid;
        rec.unit = id ? id->unit : NULL;
        rec.result = error;
        rec.reason = reason;
        rec.refusal = true;
        r = audit_log_record_for(m->audit, manager_audit_pool(m, id), &rec, on_connection_refusal_recorded, NULL, NULL);
        if (r < 0) {
                log_debug_errno(r, "Refused connection of uid %u (%s) not recorded by itself: %m", (unsigned) peer->uid,
                                error);
                audit_budget_count(m->refusal_budget, peer->uid, audit_event_to_string(AUDIT_EVENT_CONNECTION), error);
        }
}

void refusals_setup(Manager *m) {
        varlink_server_set_refusal_callback(m->server, on_refusal);
}
