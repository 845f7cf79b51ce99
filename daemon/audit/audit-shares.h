/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who holds the audit log's room for records in flight: a count per uid and one for the callers
 * the policy names no rule for, so that no one uid, and none of those callers together, can take
 * all of it (audit-log.c checks these besides its total). Runs in: worker (event loop thread).
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <sys/types.h>

#include "macro.h"

/* Whose room a record takes. */
typedef enum AuditPool {
        AUDIT_POOL_NAMED,    /* a caller the policy names (a client rule or [Admin]) */
        AUDIT_POOL_UNNAMED,  /* anyone else: a small pool of its own, apart from MaxRecordsInFlight= */
        _AUDIT_POOL_MAX,
        _AUDIT_POOL_INVALID = -EINVAL,
} AuditPool;

typedef struct AuditShares AuditShares;

/* per_uid: records one uid may have in flight; unnamed: those of the unnamed pool together. */
int audit_shares_new(unsigned per_uid, unsigned unnamed, AuditShares **ret);
AuditShares *audit_shares_free(AuditShares *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(AuditShares *, audit_shares_free);

/* Takes room for one record of uid in pool: -ENOBUFS past uid's share or the unnamed pool,
 * -ENOMEM. Give it back with audit_shares_give() with the same uid and pool. */
int audit_shares_take(AuditShares *s, uid_t uid, AuditPool pool);
void audit_shares_give(AuditShares *s, uid_t uid, AuditPool pool);

/* Records in flight of the unnamed pool (audit-log.c leaves them out of its total). */
unsigned audit_shares_n_unnamed(const AuditShares *s);
/* Records in flight of uid. */
unsigned audit_shares_n_of(const AuditShares *s, uid_t uid);
