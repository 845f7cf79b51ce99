/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The events of audit records: the one list tsmd's writers take their names from, QueryAudit
 * checks an event filter against, and tsmctl offers for completion. A record's event is one of
 * these, or the full name of a method an interface tsmd serves declares ("io.tsmd.Admin.
 * ListDevices": an administrator's call, or a call the Varlink layer refused). Runs in: worker,
 * clients.
 */
#pragma once

#include <errno.h>

typedef enum AuditEvent {
        /* A VMM's calls (io.tsmd.Guest), each under its own event. */
        AUDIT_EVENT_OPEN_CONTEXT,
        AUDIT_EVENT_ADOPT_CONTEXT,
        AUDIT_EVENT_RECLAIM_CONTEXT,
        AUDIT_EVENT_CLOSE_CONTEXT,
        AUDIT_EVENT_ATTACH,
        AUDIT_EVENT_DETACH,
        AUDIT_EVENT_BIND,
        AUDIT_EVENT_UNBIND,
        AUDIT_EVENT_GET_STATE,
        AUDIT_EVENT_GUEST_REQUEST,
        AUDIT_EVENT_WATCH_EVENTS,
        AUDIT_EVENT_DESCRIBE_CONNECTION,
        /* Refusals: not a call at all, a method no interface declares, a connection ended, and
         * the summary of kinds past a uid's budget. */
        AUDIT_EVENT_CALL,
        AUDIT_EVENT_UNKNOWN_METHOD,
        AUDIT_EVENT_CONNECTION,
        AUDIT_EVENT_REFUSAL,
        /* What tsmd does on its own. */
        AUDIT_EVENT_RELEASE_CONTEXT,
        AUDIT_EVENT_RELEASE,
        AUDIT_EVENT_RESTORE_UNBIND,
        AUDIT_EVENT_RESTORE_BIND,
        AUDIT_EVENT_WORKER_RESTART,
        AUDIT_EVENT_RELOAD,
        AUDIT_EVENT_RECORDS_LOST,
        /* What the kernel did without tsmd: a binding it ended (a disconnect by another tool). */
        AUDIT_EVENT_UNBOUND_OUTSIDE,
        /* The kernel's late answers. */
        AUDIT_EVENT_GUEST_REQUEST_LATE,
        AUDIT_EVENT_BIND_LATE,
        AUDIT_EVENT_UNBIND_LATE,
        AUDIT_EVENT_BIND_UNDO,
        AUDIT_EVENT_CONNECT_DEVICE_LATE,
        AUDIT_EVENT_DISCONNECT_DEVICE_LATE,
        AUDIT_EVENT_LATE_LOST,
        _AUDIT_EVENT_MAX,
        _AUDIT_EVENT_INVALID = -EINVAL,
} AuditEvent;

const char *audit_event_to_string(AuditEvent e);
AuditEvent audit_event_from_string(const char *s);

/* Whether a record can have this event: one of the list, or "INTERFACE.Method" for a method one
 * of the interfaces built in (proto/\*.varlink, all of which tsmd serves) declares. Returns 1 if
 * so, 0 if not, -ENOMEM. */
int audit_event_is_known(const char *name);
