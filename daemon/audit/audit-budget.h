/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * How many refusals each uid gets recorded one by one: at most `per_uid` in an interval (and
 * AUDIT_BUDGET_TOTAL_FACTOR times that over all uids); the rest are counted by uid, event and
 * result and written at the end of the interval as summary records, one for each, whose
 * "count" says how many calls it stands for. A refusal is never dropped: it is either a record
 * of its own or counted in one. Any local user may send calls to be refused: without this, one
 * could write records until rotation deleted every earlier one. The kernel's late answers
 * (guest-late.c) have a budget of their own, the same way: a hung TSM answers every call late.
 * Runs in: worker.
 */
#pragma once

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit-log.h"

/* Records one by one over all uids in an interval: this many uids' worth. */
#define AUDIT_BUDGET_TOTAL_FACTOR 16u

typedef struct AuditBudget AuditBudget;

int audit_budget_new(AuditLog *log, struct event_base *base, unsigned per_uid, uint64_t interval_usec,
                     AuditBudget **ret);
/* Writes the summaries still due, then frees b. */
AuditBudget *audit_budget_free(AuditBudget *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(AuditBudget *, audit_budget_free);

/* Whether one more refusal of uid may be recorded by itself in this interval (and counts it if
 * so). When false, or when its record cannot be taken after all, the caller counts the refusal
 * with audit_budget_count() instead. */
bool audit_budget_take(AuditBudget *b, uid_t uid);

/* Counts a refusal of uid not recorded by itself, for the interval's summary. event and result
 * are copied (result NULL: not known). Cannot fail: without memory it is counted under the
 * event "refusal" (and, past the uids it has room for, under no uid). */
void audit_budget_count(AuditBudget *b, uid_t uid, const char *event, const char *result);

/* Writes the summaries due and starts a new interval (the timer does it at each interval's end). */
void audit_budget_flush(AuditBudget *b);
