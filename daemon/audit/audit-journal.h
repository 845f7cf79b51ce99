/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Mirror of committed audit records into the systemd journal, as structured fields, for
 * operators (journalctl MESSAGE_ID=... / TSMD_SCOPE=...). The journal is not the durable
 * store: journald may be absent (sd_journal_send() then silently succeeds), rate-limits and
 * deletes archives. So the mirror never blocks the event loop (a thread with a bounded queue
 * sends) and never fails a request: a full queue drops the message and counts the drop.
 * Runs in: worker (event loop thread submits; the mirror thread sends).
 */
#pragma once

#include <stdint.h>

#include "audit-record.h"
#include "macro.h"

/* MESSAGE_ID of the "tsmd audit record" message (systemd-id128 new). */
#define AUDIT_JOURNAL_MESSAGE_ID "eb46eb1598c44b50aff7013330f6dad1"
/* Messages waiting for the mirror thread at most. */
#define AUDIT_JOURNAL_QUEUE_MAX 4096u

typedef struct AuditJournal AuditJournal;

int audit_journal_new(AuditJournal **ret);
/* Sends what is queued, then stops the thread. */
AuditJournal *audit_journal_free(AuditJournal *j);
DEFINE_TRIVIAL_CLEANUP_FUNC(AuditJournal *, audit_journal_free);

/* Formats r (a committed, bounded record) and queues it. Never blocks; a full queue or an
 * allocation failure drops the message. */
void audit_journal_submit(AuditJournal *j, const AuditRecord *r);

/* The journal fields for r, as "NAME=value" strings (exposed for tests). *ret_n fields are
 * returned in *ret, an array of strings that is freed with one free() each plus the array. */
int audit_journal_format(const AuditRecord *r, char ***ret, size_t *ret_n);
