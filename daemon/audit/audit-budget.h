/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * How many refusals each uid gets recorded one by one: at most `per_uid` in an interval (and
 * AUDIT_BUDGET_TOTAL_FACTOR times that over all uids); the rest are counted by uid, event and
 * result and written at the end of the interval as summary records, one for each, whose
 * "count" says how many calls it stands for. A refusal is never dropped: it is either a record
 * of its own or counted in one. Any local user may send calls to be refused: without this, one
 * could write records until rotation deleted every earlier one. The kernel's late answers
 * (guest-late.c) have a budget of their own, the same way: a hung TSM answers every call late.
 *
 * That bounds the rate, but the files are a ring of a fixed size: a steady flood would still
 * rotate every other record away in time. So a budget of refusals also holds them to their share
 * of each file (audit_log_refusal_room()): past it, every refusal is counted, and the summaries
 * written only while the share of the file has room, the rest kept counted (in the same bounded
 * tallies, adding up) for the next interval's end, once a file rotated by other records has room.
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

/* refusals: its records and summaries are refusals (AuditRecord.refusal), held to the files'
 * share of them; else (the kernel's late answers, of calls the policy authorised) only to the rate. */
int audit_budget_new(AuditLog *log, struct event_base *base, unsigned per_uid, uint64_t interval_usec,
                     bool refusals, AuditBudget **ret);
/* Writes every summary still due, past the share too (tsmd stops: once), then frees b. */
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

/* Writes the summaries due (of a budget of refusals, while the file's share has room; the rest
 * wait for the next interval's end) and starts a new interval (the timer does it at each
 * interval's end). */
void audit_budget_flush(AuditBudget *b);

/* Calls counted and not in a summary on the disk yet: counted this interval, or waiting for
 * room in the share. */
uint64_t audit_budget_n_unwritten(const AuditBudget *b);
