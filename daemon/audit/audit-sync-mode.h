/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How the audit log makes records durable (a configuration value). Runs in: monitor and worker. */
#pragma once

#include <errno.h>

typedef enum AuditSyncMode {
        AUDIT_SYNC_GROUP,      /* one fdatasync per batch of records */
        AUDIT_SYNC_PER_RECORD, /* one fdatasync per record */
        _AUDIT_SYNC_MODE_MAX,
        _AUDIT_SYNC_MODE_INVALID = -EINVAL,
} AuditSyncMode;

const char *audit_sync_mode_to_string(AuditSyncMode m);
AuditSyncMode audit_sync_mode_from_string(const char *s);
