/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Runs in: monitor and worker (the monitor parses the same configuration file as the worker). */

#include "audit-sync-mode.h"
#include "macro.h"

static const char *const audit_sync_mode_table[_AUDIT_SYNC_MODE_MAX] = {
        [AUDIT_SYNC_GROUP] = "group",
        [AUDIT_SYNC_PER_RECORD] = "per-record",
};
DEFINE_STRING_TABLE_LOOKUP(audit_sync_mode, AuditSyncMode);
