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
                       const char *error, void *userdata) {
        Manager *m = userdata;
        GuestClient *c = conn ? varlink_conn_get_userdata(conn) : NULL;
        const PeerIdentity *id = c ? guest_client_get_identity(c) : NULL;
        AuditRecord rec = AUDIT_RECORD_INIT;
        int r;

        if (call) {
                /* Every connection has its client from accept on. */
                if (c)
                        guest_client_refused(c, call);
                return;
        }

        /* Nothing waits for this record: the connection is gone, or never was. The audit
         * log's bounded queue sheds what it cannot take. */
        rec.event = "connection";
        rec.uid = peer->uid;
        rec.gid = peer->gid;
        rec.pid = peer->pid;
        rec.unit = id ? id->unit : NULL;
        rec.result = error;
        r = audit_log_record(m->audit, &rec, on_connection_refusal_recorded, NULL, NULL);
        if (r < 0)
                log_debug_errno(r, "Refused connection of uid %u (%s) not recorded: %m", (unsigned) peer->uid, error);
}

void refusals_setup(Manager *m) {
        varlink_server_set_refusal_callback(m->server, on_refusal);
}
