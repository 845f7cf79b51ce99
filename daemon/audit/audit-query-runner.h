/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Audit queries off the event loop: each runs in a thread of its own over a snapshot of the
 * files (the sync thread may write and rotate meanwhile), collects up to a limit of records, and
 * is reported back on the loop. A log of Files=100 x MaxFileSize=1T cannot be read in the time
 * the monitor grants the loop ([Worker] WatchdogSec=), and it need not be: the loop never waits
 * for a query, not even to cancel one. At most max_queries run at once; each holds a thread, two
 * 64 KiB buffers and the records it found, as text, until it is reported.
 * Runs in: worker (event loop thread; the query threads touch the loop only through an eventfd).
 */
#pragma once

#include <event2/event.h>
#include <json-c/json.h>

#include "audit-files.h"
#include "audit-query.h"
#include "macro.h"

typedef struct AuditQueryRunner AuditQueryRunner;
typedef struct AuditQuery AuditQuery;

/* Called once, from the event loop, when the query ends: error 0 and records (a JSON array of
 * the matching records, oldest first, at most the limit, held as their text: json-raw.h, whose
 * json_raw_array_parse() gives the tree; a reference the callee owns), or -errno and records
 * NULL. stats is valid during the call only. */
typedef void (*AuditQueryDoneCallback)(int error, json_object *records, const AuditQueryStats *stats,
                                       void *userdata);

/* files is borrowed (it must outlive the runner); ops NULL: the real system calls. */
int audit_query_runner_new(struct event_base *base, AuditFiles *files, const AuditFileOps *ops,
                           unsigned max_queries, AuditQueryRunner **ret);
/* Cancels every query and waits for their threads (each stops within one read); those not
 * cancelled by their owner are reported with -ECANCELED first. */
AuditQueryRunner *audit_query_runner_free(AuditQueryRunner *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(AuditQueryRunner *, audit_query_runner_free);

/* Starts a query for f (copied) that keeps at most limit records, and reads on to the next match
 * to tell whether more match (stats' seq_past_limit): -EBUSY while max_queries run
 * (a cancelled one counts until its thread has stopped). cb is called exactly once, later,
 * unless the query is cancelled first. ret (may be NULL) is valid until then. */
int audit_query_runner_start(AuditQueryRunner *r, const AuditQueryFilter *f, size_t limit,
                             AuditQueryDoneCallback cb, void *userdata, AuditQuery **ret);

/* Queries whose threads have not been reaped yet. */
unsigned audit_query_runner_get_n_running(const AuditQueryRunner *r);

/* Its callback is never called; the thread stops at its next read and the query is freed on
 * the loop after it. Must not be called from the query's own callback. Returns NULL. */
AuditQuery *audit_query_cancel(AuditQuery *q);
DEFINE_TRIVIAL_CLEANUP_FUNC(AuditQuery *, audit_query_cancel);
