/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Refusal records per uid and interval, and the summaries of those left out. Runs in: worker. */

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "audit-budget.h"
#include "event-util.h"
#include "log.h"

#define BUDGET_BUCKETS 256u
/* SECURITY: what a flood of refusals can make tsmd keep, and write, in an interval is bounded:
 * uids (past them, tallies of no uid), kinds of refusal per uid and over all uids (past them, a
 * tally of event "refusal" for the uid). One user may have many uids (subordinate uids in a user
 * namespace are uids to SO_PEERCRED): so there are at most BUDGET_UIDS_MAX + BUDGET_TALLIES_MAX
 * + BUDGET_KINDS_MAX + 1 summaries an interval, however many uids refuse. The events and results
 * counted come from fixed tables; the bounds hold whatever they are. Summaries waiting for room
 * in the share of refusals stay in these tallies, which go on counting: the bounds hold then too. */
#define BUDGET_UIDS_MAX 256u
#define BUDGET_KINDS_MAX 16u
#define BUDGET_TALLIES_MAX 256u
#define BUDGET_OTHER_EVENT audit_event_to_string(AUDIT_EVENT_REFUSAL)

typedef struct Tally {
        char *event, *result;
        uint64_t n;
        struct Tally *next;
} Tally;

typedef struct Spender {
        uid_t uid;
        unsigned n_recorded; /* one by one, this interval */
        Tally *tallies;
        unsigned n_tallies;
        uint64_t n_other; /* of kinds past BUDGET_KINDS_MAX, or without memory */
        struct Spender *next;
} Spender;

struct AuditBudget {
        AuditLog *log;
        struct event *timer;
        uint64_t interval_usec;
        bool refusals; /* held to the files' share of refusals */
        unsigned per_uid, total;
        unsigned n_recorded; /* one by one, this interval, over all uids */
        Spender *buckets[BUDGET_BUCKETS];
        unsigned n_spenders;
        unsigned n_tallies; /* over all uids but the overflow entry's */
        Spender overflow; /* uids past BUDGET_UIDS_MAX, or without memory */
        /* Where the last flush ran out of room: the next starts there, so that no uid's
         * summaries wait behind the same others at every end of an interval. */
        size_t cursor;
};

static void on_interval_end(evutil_socket_t fd, short what, void *userdata) {
        audit_budget_flush(userdata);
}

int audit_budget_new(AuditLog *log, struct event_base *base, unsigned per_uid, uint64_t interval_usec,
                     bool refusals, AuditBudget **ret) {
        AuditBudget *b;

        assert_return(log, -EINVAL);
        assert_return(base, -EINVAL);
        assert_return(interval_usec > 0, -EINVAL);
        assert_return(ret, -EINVAL);

        b = new0(AuditBudget, 1);
        if (!b)
                return -ENOMEM;
        b->log = log;
        b->per_uid = per_uid;
        b->total = per_uid * AUDIT_BUDGET_TOTAL_FACTOR;
        b->interval_usec = interval_usec;
        b->refusals = refusals;
        b->overflow.uid = AUDIT_UID_INVALID;
        b->timer = evtimer_new(base, on_interval_end, b);
        if (!b->timer) {
                free(b);
                return -ENOMEM;
        }
        *ret = b;
        return 0;
}

static void flush(AuditBudget *b, bool past_share);

AuditBudget *audit_budget_free(AuditBudget *b) {
        if (!b)
                return NULL;
        flush(b, /* past_share= */ true);
        event_free(b->timer);
        return mfree(b);
}

/* The interval starts with the first refusal after the last one ended: no timer while idle. */
static void interval_start(AuditBudget *b) {
        struct timeval tv = timeval_from_usec(b->interval_usec);

        if (!evtimer_pending(b->timer, NULL))
                (void) evtimer_add(b->timer, &tv);
}

static Spender **find(AuditBudget *b, uid_t uid) {
        Spender **p = &b->buckets[(uid * 2654435761u) % BUDGET_BUCKETS];

        while (*p && (*p)->uid != uid)
                p = &(*p)->next;
        return p;
}

/* uid's entry, made if need be; the overflow entry when there is no room for it. */
static Spender *spender_of(AuditBudget *b, uid_t uid) {
        Spender **p;

        if (uid == AUDIT_UID_INVALID)
                return &b->overflow;
        p = find(b, uid);
        if (*p)
                return *p;
        if (b->n_spenders >= BUDGET_UIDS_MAX)
                return &b->overflow;
        *p = new0(Spender, 1);
        if (!*p)
                return &b->overflow;
        (*p)->uid = uid;
        b->n_spenders++;
        return *p;
}

bool audit_budget_take(AuditBudget *b, uid_t uid) {
        Spender *s;

        assert(b);

        interval_start(b);
        if (b->refusals && !audit_log_refusal_room(b->log))
                return false;
        s = spender_of(b, uid);
        if (s == &b->overflow || s->n_recorded >= b->per_uid || b->n_recorded >= b->total)
                return false;
        s->n_recorded++;
        b->n_recorded++;
        return true;
}

void audit_budget_count(AuditBudget *b, uid_t uid, const char *event, const char *result) {
        Spender *s;
        Tally *t;

        assert(b);
        assert(event);

        interval_start(b);
        s = spender_of(b, uid);
        for (t = s->tallies; t; t = t->next)
                if (streq(t->event, event) && (t->result && result ? streq(t->result, result) : t->result == result)) {
                        t->n++;
                        return;
                }
        if (s->n_tallies < BUDGET_KINDS_MAX && (s == &b->overflow || b->n_tallies < BUDGET_TALLIES_MAX)) {
                t = new0(Tally, 1);
                if (t) {
                        t->event = strdup(event);
                        t->result = result ? strdup(result) : NULL;
                        if (t->event && (!result || t->result)) {
                                t->n = 1;
                                t->next = s->tallies;
                                s->tallies = t;
                                s->n_tallies++;
                                if (s != &b->overflow)
                                        b->n_tallies++;
                                return;
                        }
                        free(t->event);
                        free(t->result);
                        free(t);
                }
        }
        s->n_other++;
}

static void on_summary_recorded(AuditLog *a, uint64_t seq, int error, void *userdata) {
        if (error < 0)
                log_error_errno(error, "Audit record of a refusal summary failed: %m");
}

static void summarize(AuditBudget *b, uid_t uid, const char *event, const char *result, uint64_t n) {
        AuditRecord rec = AUDIT_RECORD_INIT;
        int r;

        rec.event = event;
        rec.uid = uid;
        rec.result = result;
        rec.count = n;
        rec.refusal = b->refusals;
        /* Owed: the calls it stands for were answered. Bounded by the table above. */
        r = audit_log_record_owed(b->log, &rec, on_summary_recorded, NULL, NULL);
        if (r < 0)
                log_error_errno(r, "Audit record of %" PRIu64 " refusals of uid %u (%s, %s) failed: %m", n,
                                (unsigned) uid, event, strna(result));
}

static bool summary_room(AuditBudget *b, bool past_share) {
        return past_share || !b->refusals || audit_log_refusal_room(b->log);
}

/* Writes s's summaries while there is room for them (true once it is empty), and starts its new
 * interval. */
static bool spender_flush(AuditBudget *b, Spender *s, bool past_share) {
        s->n_recorded = 0;
        while (s->tallies) {
                Tally *t = s->tallies;

                if (!summary_room(b, past_share))
                        return false;
                s->tallies = t->next;
                summarize(b, s->uid, t->event, t->result, t->n);
                free(t->event);
                free(t->result);
                free(t);
                s->n_tallies--;
                if (s != &b->overflow)
                        b->n_tallies--;
        }
        if (s->n_other > 0) {
                if (!summary_room(b, past_share))
                        return false;
                summarize(b, s->uid, BUDGET_OTHER_EVENT, NULL, s->n_other);
                s->n_other = 0;
        }
        return true;
}

static void flush(AuditBudget *b, bool past_share) {
        bool room = true;

        assert(b);

        for (size_t k = 0; k < BUDGET_BUCKETS; k++) {
                size_t i = (b->cursor + k) % BUDGET_BUCKETS;
                Spender **p = &b->buckets[i];

                while (*p) {
                        Spender *s = *p;

                        if (spender_flush(b, s, past_share)) {
                                *p = s->next;
                                free(s);
                                b->n_spenders--;
                                continue;
                        }
                        if (room) {
                                room = false;
                                b->cursor = i;
                        }
                        p = &s->next;
                }
        }
        if (!spender_flush(b, &b->overflow, past_share))
                room = false;
        b->n_recorded = 0;
        if (evtimer_pending(b->timer, NULL))
                (void) evtimer_del(b->timer);
        /* What waits for room is tried again at the next interval's end. */
        if (!room)
                interval_start(b);
}

void audit_budget_flush(AuditBudget *b) {
        flush(b, /* past_share= */ false);
}

uint64_t audit_budget_n_unwritten(const AuditBudget *b) {
        uint64_t n = 0;

        assert(b);

        for (size_t i = 0; i < BUDGET_BUCKETS; i++)
                for (const Spender *s = b->buckets[i]; s; s = s->next) {
                        n += s->n_other;
                        for (const Tally *t = s->tallies; t; t = t->next)
                                n += t->n;
                }
        n += b->overflow.n_other;
        for (const Tally *t = b->overflow.tallies; t; t = t->next)
                n += t->n;
        return n;
}
