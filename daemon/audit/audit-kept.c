/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Kept records. A record tsmd owes for what it did on its own (a release, a reload by signal, a
 * worker's end) cannot be refused as a call is: what it records happened. If the log cannot take
 * it (failed, or no room), audit_log_record_owed_kept() keeps it, bounded by max_kept (past it the
 * loss is counted into a summary that takes its place in the queue), and writes it as soon as the
 * log takes records: when a reopen worked, on a retry timer while the file system is full, or when
 * a reservation finds room, which they go before (a reservation is refused while any are left,
 * during a reopen too). One owed while a reopen is pending is held as any record, and kept when it
 * finished if the log cannot take it then; records held behind a kept one wait behind it, on the
 * same queue (unless the reopen failed: a call's record fails then, as ever).
 *
 * Runs in: worker (event loop thread).
 */

#include <inttypes.h>

#include "audit-log-internal.h"
#include "event-util.h"
#include "log.h"
#include "ratelimit.h"

/* While records are kept and only room is missing, looks for it again later; a failed log takes
 * them once a reopen worked (reopen_finished()). */
void audit_kept_arm(AuditLog *a) {
        struct timeval tv = timeval_from_usec(AUDIT_KEPT_RETRY_USEC);

        if (!a->kept_timer) /* an open that failed */
                return;
        if (!a->kept_head || a->failed < 0)
                (void) evtimer_del(a->kept_timer);
        else if (!evtimer_pending(a->kept_timer, NULL))
                (void) evtimer_add(a->kept_timer, &tv);
}

/* Whether the log takes one more record now: 0, or why not (-EAGAIN: a reopen is pending, after
 * which it may). */
int audit_kept_can_take(AuditLog *a) {
        if (a->failed < 0)
                return a->failed;
        if (a->reopen_pending)
                return -EAGAIN;
        return audit_log_check_space(a);
}

static AuditReservation *kept_pop(AuditLog *a) {
        AuditReservation *r = a->kept_head;

        a->kept_head = r->kept_next;
        if (!a->kept_head)
                a->kept_tail = NULL;
        if (a->kept_lost == r)
                a->kept_lost = NULL;
        r->kept_next = NULL;
        a->n_kept--;
        return r;
}

void audit_kept_append(AuditLog *a, AuditReservation *r) {
        r->kept_next = NULL;
        if (a->kept_tail)
                a->kept_tail->kept_next = r;
        else
                a->kept_head = r;
        a->kept_tail = r;
        a->n_kept++;
}

/* Commits the kept records, oldest first, as long as the log takes them: 0 once none is left,
 * else why the one at the head must wait. */
int audit_kept_flush(AuditLog *a) {
        unsigned n = 0;
        int r = 0;

        while (a->kept_head) {
                AuditReservation *res = a->kept_head;

                r = audit_kept_can_take(a);
                if (r < 0)
                        break;
                audit_reservation_link(a, res);
                r = audit_log_commit_copied(a, res);
                if (r < 0) {
                        audit_reservation_unlink(a, res);
                        break;
                }
                (void) kept_pop(a);
                n++;
                if (res->numbered)
                        res->numbered(a, res->seq, res->userdata);
        }
        if (r < 0 && r != -EAGAIN)
                a->kept_error = r;
        if (n > 0)
                log_notice("Audit log '%s' takes records again: wrote %u record(s) kept while it could not%s.",
                           a->directory, n, a->kept_head ? ", more wait" : "");
        audit_kept_arm(a);
        return r;
}

void audit_kept_on_timer(evutil_socket_t fd, short what, void *userdata) {
        (void) audit_kept_flush(userdata);
}

/* Keeps what rec says for later (error: why the log did not take it now). Past max_kept, counts
 * it lost instead, in the summary at the tail. */
static int kept_add(AuditLog *a, const AuditRecord *rec, AuditCommitCallback cb, AuditNumberedCallback numbered,
                    void *userdata, int error) {
        static RateLimit lost_log = RATELIMIT(10u * 1000000u, 10u);
        AuditRecord summary = AUDIT_RECORD_INIT;
        const char *event = rec->event;
        AuditReservation *res;
        int r;

        if (a->n_kept >= a->config.max_kept && a->kept_lost) {
                a->kept_lost->record.count++;
                goto lost;
        }
        res = new0(AuditReservation, 1);
        if (!res)
                return -ENOMEM;
        res->log = a;
        if (a->n_kept >= a->config.max_kept) {
                /* SECURITY: bounded, and never silent: the loss is on record in its place. */
                summary.event = KEPT_LOST_EVENT;
                summary.count = 1;
                rec = &summary;
        } else {
                res->callback = cb;
                res->numbered = numbered;
                res->userdata = userdata;
        }
        r = audit_record_copy_bounded(rec, &res->record, &res->storage);
        if (r < 0) {
                audit_reservation_free(res);
                return r;
        }
        res->record.owed_since_usec = now_realtime_usec();
        audit_kept_append(a, res);
        if (error != -EAGAIN)
                a->kept_error = error;
        if (rec != &summary) {
                a->kept_lost = NULL;
                log_warning_errno(error, "Audit log '%s' cannot take the record of %s now, keeping it until it "
                                  "does (%u kept): %m", a->directory, rec->event, a->n_kept);
                audit_kept_arm(a);
                return 1;
        }
        a->kept_lost = res;
        audit_kept_arm(a);
lost:
        log_full_ratelimited(&lost_log, LOG_ERR,
                             "Audit log '%s' cannot take the record of %s (%s), and %u owed records are kept already: "
                             "lost, counted in a %s record.",
                             a->directory, event, strerror(-error), a->config.max_kept, KEPT_LOST_EVENT);
        return -ENOBUFS;
}

/* The log goes: the kept records it takes are written, the others reported failed. */
void audit_kept_drain(AuditLog *a) {
        uint64_t n_lost = 0;
        int error;

        error = audit_kept_flush(a);
        while (a->kept_head) {
                AuditReservation *res = kept_pop(a);

                n_lost += MAX(res->record.count, (uint64_t) 1);
                res->log = NULL;
                if (res->callback)
                        res->callback(a, 0, error, res->userdata);
                audit_reservation_free(res);
        }
        if (n_lost > 0)
                log_error_errno(error, "Audit log '%s' never took %" PRIu64 " owed record(s) it kept: lost: %m",
                                a->directory, n_lost);
        audit_kept_arm(a);
}

int audit_log_record_owed_kept(AuditLog *a, const AuditRecord *rec, AuditCommitCallback cb,
                               AuditNumberedCallback numbered, void *userdata, uint64_t *ret_seq) {
        int r;

        assert_return(a, -EINVAL);
        assert_return(rec && rec->event, -EINVAL);

        /* Behind those kept before, if they still wait. */
        r = audit_kept_flush(a);
        if (r >= 0) {
                AuditReservation *res;

                r = audit_log_reserve_full(a, false, /* call= */ false, AUDIT_UID_INVALID, _AUDIT_POOL_INVALID, 0, NULL, NULL, &res);
                if (r >= 0) {
                        /* Held, if a reopen is pending: kept after it if the log cannot take it then. */
                        res->owed_kept = true;
                        r = audit_log_commit_full(res, rec, cb, numbered, userdata, ret_seq);
                }
                if (r >= 0 || r == -ENOMEM || r == -EINVAL)
                        return r;
        }
        if (ret_seq)
                *ret_seq = 0;
        return kept_add(a, rec, cb, numbered, userdata, r);
}
