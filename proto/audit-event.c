/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Audit record events. Runs in: worker, clients. */

#include "audit-event.h"
#include "macro.h"
#include "varlink-idl.h"
#include "varlink-service.h"

static const char *const audit_event_table[_AUDIT_EVENT_MAX] = {
        [AUDIT_EVENT_OPEN_CONTEXT] = "open-context",
        [AUDIT_EVENT_ADOPT_CONTEXT] = "adopt-context",
        [AUDIT_EVENT_RECLAIM_CONTEXT] = "reclaim-context",
        [AUDIT_EVENT_CLOSE_CONTEXT] = "close-context",
        [AUDIT_EVENT_ATTACH] = "attach",
        [AUDIT_EVENT_DETACH] = "detach",
        [AUDIT_EVENT_BIND] = "bind",
        [AUDIT_EVENT_UNBIND] = "unbind",
        [AUDIT_EVENT_GET_STATE] = "get-state",
        [AUDIT_EVENT_GUEST_REQUEST] = "guest-request",
        [AUDIT_EVENT_WATCH_EVENTS] = "watch-events",
        [AUDIT_EVENT_DESCRIBE_CONNECTION] = "describe-connection",
        [AUDIT_EVENT_CALL] = "call",
        [AUDIT_EVENT_UNKNOWN_METHOD] = "unknown-method",
        [AUDIT_EVENT_CONNECTION] = "connection",
        [AUDIT_EVENT_REFUSAL] = "refusal",
        [AUDIT_EVENT_RELEASE_CONTEXT] = "release-context",
        [AUDIT_EVENT_RELEASE] = "release",
        [AUDIT_EVENT_RESTORE_UNBIND] = "restore-unbind",
        [AUDIT_EVENT_RESTORE_BIND] = "restore-bind",
        [AUDIT_EVENT_WORKER_RESTART] = "worker-restart",
        [AUDIT_EVENT_RELOAD] = "reload",
        [AUDIT_EVENT_RECORDS_LOST] = "records-lost",
        [AUDIT_EVENT_UNBOUND_OUTSIDE] = "unbound-outside",
        [AUDIT_EVENT_GUEST_REQUEST_LATE] = "guest-request-late",
        [AUDIT_EVENT_BIND_LATE] = "bind-late",
        [AUDIT_EVENT_UNBIND_LATE] = "unbind-late",
        [AUDIT_EVENT_BIND_UNDO] = "bind-undo",
        [AUDIT_EVENT_CONNECT_DEVICE_LATE] = "connect-device-late",
        [AUDIT_EVENT_DISCONNECT_DEVICE_LATE] = "disconnect-device-late",
        [AUDIT_EVENT_LATE_LOST] = "late-lost",
};
DEFINE_STRING_TABLE_LOOKUP(audit_event, AuditEvent);

int audit_event_is_known(const char *name) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *iface = NULL;
        const char *method;
        int r;

        if (!name)
                return 0;
        if (!strchr(name, '.'))
                return audit_event_from_string(name) >= 0;
        r = varlink_builtin_interface_of(name, &iface, &method);
        if (r <= 0)
                return r;
        return !!varlink_interface_find_method(iface, method);
}
