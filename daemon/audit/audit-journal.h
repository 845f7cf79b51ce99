/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Mirror of committed audit records into the systemd journal, as structured fields, for
 * operators (journalctl MESSAGE_ID=... / TSMD_SCOPE=...). The journal is not the durable
 * store: journald may be absent (sd_journal_send() then silently succeeds), rate-limits and
 * deletes archives. So the mirror never blocks the event loop (a thread with a bounded queue
 * sends) and never fails a request: a full queue drops the message (journald fell behind, as it
 * does in the flood that clients can cause at will), and so does a record that cannot be formatted
 * (no memory). A drop is never silent: counted (audit_journal_get_dropped(), the metric
 * tsmd_audit_journal_dropped_total) and logged, rate-limited, with the count since the last line.
 * Runs in: worker (event loop thread submits; the mirror thread sends).
 */
#pragma once

#include <stdint.h>
#include <sys/uio.h>

#include "audit-record.h"
#include "macro.h"

/* MESSAGE_ID of the "tsmd audit record" message (systemd-id128 new). */
#define AUDIT_JOURNAL_MESSAGE_ID "eb46eb1598c44b50aff7013330f6dad1"
/* How often a drop is logged at most: one line per interval, counting those since the last. */
#define AUDIT_JOURNAL_DROP_LOG_INTERVAL_USEC (10u * 1000000u)

typedef struct AuditJournal AuditJournal;

/* Sends one message's fields, as sd_journal_sendv() does (the default): a test's stands in for a
 * journald that is slow. */
typedef int (*AuditJournalSendFn)(const struct iovec *iov, int n);

/* Starts the mirror thread. At most max_queued messages wait for it ([Audit] MaxJournalBacklog=,
 * >= 1); send NULL: sd_journal_sendv(). */
int audit_journal_new(unsigned max_queued, AuditJournalSendFn send, AuditJournal **ret);
/* Sends what is queued, then stops the thread. */
AuditJournal *audit_journal_free(AuditJournal *j);
DEFINE_TRIVIAL_CLEANUP_FUNC(AuditJournal *, audit_journal_free);

/* Formats r (a committed, bounded record) and queues it. Never blocks; a full queue or an
 * allocation failure drops the message, counted and logged. Event loop thread only. */
void audit_journal_submit(AuditJournal *j, const AuditRecord *r);

/* Messages dropped since the mirror started (full queue or no memory). Event loop thread only. */
uint64_t audit_journal_get_dropped(const AuditJournal *j);

/* The journal fields for r, as "NAME=value" strings (exposed for tests). *ret_n fields are
 * returned in *ret, an array of strings that is freed with one free() each plus the array. */
int audit_journal_format(const AuditRecord *r, char ***ret, size_t *ret_n);
