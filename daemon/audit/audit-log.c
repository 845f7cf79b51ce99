/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The audit log: reservations, sequence numbers, the failed state, dispatch of completions,
 * listeners. Runs in: worker (event loop thread; the disk is touched by audit-sync.c).
 *
 * Reservation accounting. Bytes are counted in one stream across files since the last
 * (re)open: planned_total is what was committed, the sync thread publishes alloc_total, the
 * end of the space it has preallocated. A reservation stands for one maximum-size record, so
 * reserve succeeds if
 *     planned_total + (reserved + 1) * AUDIT_RECORD_MAX <= alloc_total,
 * which is a pure comparison in the common case. When the tail is short, the thread is asked
 * to extend it and the file system's free space (fstatvfs) decides instead; if the thread
 * could not even preallocate the minimum, reserve fails with its error (-ENOSPC). Committing
 * replaces the reserved maximum with the record's real size.
 *
 * Reopen. The loop never waits for the disk, not even to reopen the log: audit_log_reopen_full()
 * queues a reopen to the sync thread behind the records committed before it, and records
 * committed until it comes back are held unnumbered, since their numbers continue from what
 * it finds in the files. Its completion comes through the same path as records', in order,
 * so every record before it was reported (and counted in last_committed_seq) when the
 * sequence is resumed. Meanwhile a failed log refuses reservations as before (fail closed
 * until the repair worked), and a healthy one cannot tell whether a record will have room: the
 * thread's numbers are about the old files, and the reopen may move to a file system with none.
 * So a reservation for a call that acts (audit_log_reserve_to_act()) waits for the reopen, in
 * the waiting list, and is granted against the new files once it finished (their space checked
 * as any reservation's) or refused with the reason there is no room, or at its deadline; nothing
 * of its call happens before. Others (a refusal's record, one of what happened already, a read
 * that answers only once its record is durable) are taken within max_in_flight unchecked, as
 * holding their answer back is all that is at stake, unless kept records wait (audit-kept.c).
 *
 * Room in flight (reserved or queued records) is bounded three ways: max_in_flight over the
 * callers the policy names, max_in_flight_unnamed over all others (a pool of their own, so that
 * they cannot take the named callers' room), and max_in_flight_per_uid for any one uid
 * (audit-shares.c), so that one uid cannot take all of either.
 *
 * Health. What an administrator is told of the log (AuditHealth) follows what refuses records:
 * the failed state (FAILED, until a reopen works), else the last space check (FULL, until one
 * finds room: a reservation's, a kept record's, or while FULL the health timer's, so that room
 * made by hand shows without a call). Calls refused for it are counted, as they are in no record.
 */

#include <inttypes.h>
#include <poll.h>
#include <time.h>

#include "audit-log-internal.h"
#include "event-util.h"
#include "log.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

struct AuditListener {
        AuditLog *log; /* NULL once detached */
        AuditListener *prev, *next;
        AuditListenerCallback callback;
        void *userdata;
        AuditDestroyCallback destroy;
        bool floating;
        bool dead;
};

static const char *const audit_health_state_table[_AUDIT_HEALTH_STATE_MAX] = {
        [AUDIT_HEALTH_OK] = "ok",
        [AUDIT_HEALTH_FULL] = "full",
        [AUDIT_HEALTH_FAILED] = "failed",
};
DEFINE_STRING_TABLE_LOOKUP(audit_health_state, AuditHealthState);

/* Takes the state (error: why, for one other than OK), tells the owner if that is a change, and
 * while FULL, looks for room again later. */
static void health_set(AuditLog *a, AuditHealthState state, int error) {
        struct timeval tv = timeval_from_usec(AUDIT_HEALTH_RETRY_USEC);

        if (state == AUDIT_HEALTH_OK)
                error = 0;
        if (a->health_timer) {
                if (state != AUDIT_HEALTH_FULL)
                        (void) evtimer_del(a->health_timer);
                else if (!evtimer_pending(a->health_timer, NULL))
                        (void) evtimer_add(a->health_timer, &tv);
        }
        if (state == a->health.state && error == a->health.error)
                return;
        if (state != a->health.state)
                a->health.since_usec = now_realtime_usec();
        a->health.state = state;
        a->health.error = error;
        if (a->health_callback)
                a->health_callback(a, &a->health, a->health_userdata);
}

/* A space check's outcome, unless the failed state says more. */
static int health_space(AuditLog *a, int r) {
        if (a->failed == 0)
                health_set(a, r < 0 ? AUDIT_HEALTH_FULL : AUDIT_HEALTH_OK, r);
        return r;
}

static void on_health_timer(evutil_socket_t fd, short what, void *userdata) {
        AuditLog *a = userdata;

        /* A reopen pending decides once it finished (reopen_finished()); the failed state, at one. */
        if (a->failed < 0 || a->reopen_pending || a->health.state != AUDIT_HEALTH_FULL)
                return;
        (void) audit_log_check_space(a); /* FULL again: rearmed */
}

/* A call's reservation refused (error) because the log cannot take its record: counted. */
static int refused(AuditLog *a, bool call, int error) {
        if (call)
                a->n_refused_unrecorded++;
        return error;
}

void audit_config_init(AuditConfig *c) {
        assert(c);

        *c = (AuditConfig){
                .directory_fd = -EBADF,
                .max_file_size = AUDIT_MAX_FILE_SIZE_DEFAULT,
                .n_files = AUDIT_N_FILES_DEFAULT,
                .sync_mode = AUDIT_SYNC_GROUP,
                .journal = true,
                .journal_max_queued = AUDIT_JOURNAL_BACKLOG_DEFAULT,
                .max_in_flight = AUDIT_MAX_IN_FLIGHT_DEFAULT,
                .max_in_flight_per_uid = AUDIT_MAX_IN_FLIGHT_PER_UID_DEFAULT,
                .max_in_flight_unnamed = AUDIT_MAX_IN_FLIGHT_UNNAMED_DEFAULT,
                .prealloc_size = AUDIT_PREALLOC_SIZE_DEFAULT,
                .max_queries = AUDIT_MAX_QUERIES_DEFAULT,
                .max_kept = AUDIT_MAX_KEPT_DEFAULT,
                .refusal_share_percent = AUDIT_REFUSAL_SHARE_PERCENT_DEFAULT,
        };
}

AuditReservation *audit_reservation_free(AuditReservation *r) {
        if (!r)
                return NULL;
        free(r->line);
        free(r->storage);
        return mfree(r);
}

/* Gives back the room r took of its uid's share. */
static void reservation_uncharge(AuditLog *a, AuditReservation *r) {
        if (r->charged)
                audit_shares_give(a->shares, r->uid, r->pool);
        r->charged = false;
}

void audit_reservation_unlink(AuditLog *a, AuditReservation *r) {
        if (r->prev)
                r->prev->next = r->next;
        else
                a->reservations = r->next;
        if (r->next)
                r->next->prev = r->prev;
        r->prev = r->next = NULL;
        a->n_reserved--;
}

void audit_reservation_link(AuditLog *a, AuditReservation *r) {
        r->prev = NULL;
        r->next = a->reservations;
        if (r->next)
                r->next->prev = r;
        a->reservations = r;
        a->n_reserved++;
}

static void waiting_unlink(AuditLog *a, AuditReservation *r) {
        if (r->prev)
                r->prev->next = r->next;
        else
                a->waiting_head = r->next;
        if (r->next)
                r->next->prev = r->prev;
        else
                a->waiting_tail = r->prev;
        r->prev = r->next = NULL;
        r->waiting = false;
        a->n_waiting--;
}

/* Sets the timer to the earliest deadline of those waiting, if any. */
static void waiting_arm(AuditLog *a) {
        uint64_t next = UINT64_MAX, now, left;
        struct timeval tv;

        for (AuditReservation *r = a->waiting_head; r; r = r->next)
                next = MIN(next, r->deadline);
        if (next == UINT64_MAX) {
                (void) event_del(a->wait_timer);
                return;
        }
        now = now_monotonic_usec();
        left = next > now ? next - now : 0;
        tv = timeval_from_usec(left);
        (void) event_add(a->wait_timer, &tv);
}

/* Tells a waiting reservation's owner the outcome: granted (error 0), or refused, and stale then. */
static void waiting_answer(AuditLog *a, AuditReservation *r, int error) {
        waiting_unlink(a, r);
        if (error < 0) {
                /* Not when tsmd stops: the log could have taken it. */
                (void) refused(a, r->call && error != -ESHUTDOWN, error);
                reservation_uncharge(a, r);
                r->log = NULL;
        } else
                audit_reservation_link(a, r);
        r->reserved(a, r, error, r->reserved_userdata);
}

static void on_wait_timer(evutil_socket_t fd, short what, void *userdata) {
        AuditLog *a = userdata;

        /* One at a time, from the head again: a callback may cancel others. */
        for (;;) {
                uint64_t now = now_monotonic_usec();
                AuditReservation *r = a->waiting_head;

                while (r && r->deadline > now)
                        r = r->next;
                if (!r)
                        break;
                waiting_answer(a, r, -ETIMEDOUT);
        }
        waiting_arm(a);
}

/* The reopen they waited for finished, and no other is pending: each, in the order they asked,
 * gets room in the files it opened, or the reason there is none. */
static void waiting_grant(AuditLog *a) {
        /* One at a time: a callback may cancel others, or ask for a reopen they then wait for. */
        while (a->waiting_head && !a->reopen_pending) {
                AuditReservation *r = a->waiting_head;

                waiting_answer(a, r, a->failed < 0 ? a->failed : audit_log_check_space(a));
        }
        waiting_arm(a);
}

static void listeners_sweep(AuditLog *a) {
        AuditListener *l = a->listeners;

        if (a->listener_walks > 0 || !a->listeners_dead)
                return;
        while (l) {
                AuditListener *next = l->next;

                if (l->dead) {
                        if (l->prev)
                                l->prev->next = l->next;
                        else
                                a->listeners = l->next;
                        if (l->next)
                                l->next->prev = l->prev;
                        l->prev = l->next = NULL;
                        l->log = NULL;
                        if (l->floating)
                                free(l);
                }
                l = next;
        }
        a->listeners_dead = false;
}

/* Reports one completed record: counters, journal, listeners, then its own callback. */
static void dispatch_one(AuditLog *a, AuditReservation *res) {
        int error = res->item.error;

        a->n_in_flight--;
        reservation_uncharge(a, res);
        if (error < 0) {
                /* Its call ran, and is answered AuditFailed: refused, unrecorded. */
                (void) refused(a, res->call, error);
                if (a->failed == 0 && res->generation == a->generation) {
                        a->failed = error;
                        health_set(a, AUDIT_HEALTH_FAILED, error);
                        log_error_errno(error,
                                        "Audit log '%s' failed, refusing requests until it is "
                                        "reopened: %m",
                                        a->directory);
                }
        } else {
                a->last_committed_seq = MAX(a->last_committed_seq, res->seq);
                if (audit_counters_add(a->counters, &res->record) < 0)
                        log_oom();
                if (a->journal)
                        audit_journal_submit(a->journal, &res->record);

                a->listener_walks++;
                for (AuditListener *l = a->listeners; l; l = l->next)
                        if (!l->dead)
                                l->callback(a, &res->record, res->line, res->item.len, l->userdata);
                a->listener_walks--;
                listeners_sweep(a);
        }

        if (res->callback)
                res->callback(a, res->seq, error, res->userdata);
        audit_reservation_free(res);
}

static void dispatch_append(AuditLog *a, AuditSyncItem *list) {
        if (!list)
                return;
        *a->dispatch_tail = list;
        while (list->next)
                list = list->next;
        a->dispatch_tail = &list->next;
}

static void reopen_finished(AuditLog *a);

static void dispatch_completed(AuditLog *a) {
        dispatch_append(a, audit_sync_take_completed(a->sync));

        while (a->dispatch_head) {
                AuditSyncItem *i = a->dispatch_head;

                a->dispatch_head = i->next;
                if (!a->dispatch_head)
                        a->dispatch_tail = &a->dispatch_head;
                i->next = NULL;
                if (i->reopen)
                        reopen_finished(a);
                else
                        dispatch_one(a, (AuditReservation *) i);
        }
}

static void on_completion(evutil_socket_t fd, short what, void *userdata) {
        dispatch_completed(userdata);
}

static void submit_outbox(AuditLog *a) {
        AuditSyncItem *list = a->outbox_head;

        a->outbox_head = NULL;
        a->outbox_tail = &a->outbox_head;
        if (list)
                audit_sync_submit(a->sync, list);
}

static void on_submit(evutil_socket_t fd, short what, void *userdata) {
        submit_outbox(userdata);
}

static int config_check(const AuditConfig *c) {
        if (isempty(c->directory) || c->n_files < 2 || c->n_files > AUDIT_FILES_MAX ||
            c->max_file_size < AUDIT_RECORD_MAX || c->max_in_flight == 0 || c->max_in_flight_per_uid == 0 ||
            c->max_queries == 0 || c->max_kept == 0 || (c->journal && c->journal_max_queued == 0) ||
            c->refusal_share_percent == 0 || c->refusal_share_percent > 100 ||
            c->sync_mode < 0 || c->sync_mode >= _AUDIT_SYNC_MODE_MAX)
                return -EINVAL;
        return 0;
}

static uint64_t refusal_share(const AuditLog *a) {
        return a->config.max_file_size / 100u * a->config.refusal_share_percent +
               a->config.max_file_size % 100u * a->config.refusal_share_percent / 100u;
}

bool audit_log_refusal_room(AuditLog *a) {
        assert(a);

        return a->file_refusal_bytes < refusal_share(a);
}

/* The sequence goes on from what the files say, never below what was acknowledged; what they say
 * is durable (audit_files_resume() synced it), so it counts as committed. Files that end
 * before it in the directory tsmd had open were cut outside tsmd; in another one at its path (an
 * administrator's repair: a new file system mounted over it) the records before are in the old
 * one, which is no loss. */
static void resume(AuditLog *a, const AuditResumeInfo *info, bool directory_changed) {
        if (info->last_seq < a->last_committed_seq && directory_changed)
                log_notice("Audit log '%s' is another directory now (a file system mounted over it?), whose records "
                           "end at seq %" PRIu64 "; those up to seq %" PRIu64 " are in the one it replaced. "
                           "Continuing at seq %" PRIu64 ".",
                           a->directory, info->last_seq, a->last_committed_seq, a->last_committed_seq + 1);
        else if (directory_changed)
                log_notice("Audit log directory '%s' is another one now, continuing there.", a->directory);
        else if (info->last_seq < a->last_committed_seq)
                log_error("Audit log '%s' ends at seq %" PRIu64 " but seq %" PRIu64
                          " was acknowledged: records were lost outside tsmd.",
                          a->directory, info->last_seq, a->last_committed_seq);
        a->next_seq = MAX(info->last_seq, a->last_committed_seq) + 1;
        a->last_committed_seq = MAX(a->last_committed_seq, info->last_seq);
        a->pending_repaired = info->repaired_bytes;
        a->repaired_bytes = info->repaired_bytes;
        a->n_anomalies = info->n_anomalies;
        a->planned_total = 0;
        /* The refusals in audit.log are known if it is the file the records numbered went to (a
         * reopen of the same files, every record before it written); else, as far as the share
         * goes, all it holds may be refusals. */
        if (directory_changed || info->current_size != a->file_size)
                a->file_refusal_bytes = MIN(info->current_size, refusal_share(a));
        a->file_size = info->current_size;
}

/* A record's time is when it takes its place in the sequence: times follow the sequence. */
static void record_stamp(AuditReservation *r) {
        r->record.realtime_usec = now_realtime_usec();
        r->record.monotonic_usec = now_monotonic_usec();
}

/* Numbers a committed record and queues it for the sync thread. On failure nothing changed. */
static int number_record(AuditLog *a, AuditReservation *r) {
        size_t len;
        int k;

        r->record.seq = a->next_seq;
        r->record.repaired_bytes = a->pending_repaired;
        k = audit_record_serialize(&r->record, &r->line, &len);
        if (k < 0)
                return k;

        r->generation = a->generation;
        r->seq = r->record.seq;
        r->item.line = r->line;
        r->item.len = len;
        a->next_seq++;
        a->pending_repaired = 0;
        a->planned_total += len;
        /* A new file once it does not fit, as the thread writes it (unless that file system
         * has no room for a new one: then audit.log grows past max_file_size, which this
         * does not follow until a reopen, a full file system's repair). */
        if (a->file_size > 0 && a->file_size + len > a->config.max_file_size)
                a->file_size = a->file_refusal_bytes = 0;
        a->file_size += len;
        if (r->record.refusal)
                a->file_refusal_bytes += len;
        r->item.next = NULL;
        if (!a->outbox_head)
                event_active(a->submit_event, EV_TIMEOUT, 0);
        *a->outbox_tail = &r->item;
        a->outbox_tail = &r->item.next;
        return 0;
}

static void reopen_start(AuditLog *a) {
        /* Queued records are written (or failed) by the old generation and reported as
         * usual; their failures no longer count. */
        submit_outbox(a);
        a->generation++;
        a->reopen = (AuditSyncReopen) { .item.reopen = true };
        a->reopen_pending = true;
        audit_sync_submit(a->sync, &a->reopen.item);
}

/* A record held for the reopen that just finished: 1 if it waits on the kept queue (then it is
 * no longer committed, its room in flight given back, as a kept record takes none), 0 if it is to
 * be numbered now. SECURITY: it waits behind records kept before it, owed before it, unless the
 * reopen failed and it is a call's (failed then, as any record of a failed log); one of
 * audit_log_record_owed_kept() also when the log cannot take it (failed, no room): it happened. */
static int held_keep(AuditLog *a, AuditReservation *res) {
        int error = 0;

        if (!res->owed_kept && a->failed < 0)
                return 0;
        if (!a->kept_head && res->owed_kept)
                error = audit_kept_can_take(a);
        if (!a->kept_head && error >= 0)
                return 0;

        a->n_in_flight--;
        reservation_uncharge(a, res);
        res->committed = false;
        if (res->owed_kept) {
                res->record.owed_since_usec = res->record.realtime_usec; /* its commit */
                log_warning_errno(error < 0 ? error : a->kept_error,
                                  "Audit log '%s' cannot take the record of %s now, keeping it until it does: %m",
                                  a->directory, res->record.event);
        } else
                log_debug("Audit log '%s': the record of %s, held for the reopen, waits behind kept records.",
                          a->directory, res->record.event);
        if (error < 0)
                a->kept_error = error;
        audit_kept_append(a, res);
        a->kept_lost = NULL; /* a loss after it is counted after it */
        return 1;
}

static void reopen_finished(AuditLog *a) {
        ReopenWaiter *waiters = TAKE_PTR(a->waiters);
        int r = a->reopen.item.error;

        a->reopen_pending = false;
        a->waiters_tail = &a->waiters;
        if (r < 0) {
                a->failed = r;
                health_set(a, AUDIT_HEALTH_FAILED, r);
                log_error_errno(r, "Failed to reopen audit log '%s': %m", a->directory);
        } else {
                resume(a, &a->reopen.resume, a->reopen.directory_changed);
                if (a->failed < 0)
                        log_notice("Audit log '%s' reopened, continuing at seq %" PRIu64 ".",
                                   a->directory, a->next_seq);
                a->failed = 0;
        }

        if (a->reopen_again) {
                /* Asked for after this one was queued: the disk may have been repaired since
                 * it started. What is held waits for that one. */
                a->reopen_again = false;
                a->waiters = TAKE_PTR(a->waiters_again);
                a->waiters_tail = a->waiters ? a->waiters_again_tail : &a->waiters;
                a->waiters_again_tail = &a->waiters_again;
                reopen_start(a);
        } else {
                /* Numbered now, in the order they were committed; written to the new files (or
                 * failed with the error the reopen left the thread in). */
                AuditSyncItem *held = TAKE_PTR(a->held_head);

                a->held_tail = &a->held_head;
                /* Kept before the reopen, owed before these: first, if the new files have room. */
                (void) audit_kept_flush(a);
                while (held) {
                        AuditReservation *res = (AuditReservation *) held;
                        int k;

                        held = held->next;
                        if (held_keep(a, res))
                                continue;
                        /* Stamped now: after the kept records just written. */
                        record_stamp(res);
                        k = number_record(a, res);
                        if (k < 0) {
                                /* Reported unnumbered through the usual path: never lost
                                 * without its callback. */
                                res->item.error = k;
                                res->item.next = NULL;
                                dispatch_append(a, &res->item);
                        } else if (res->numbered)
                                /* Before this round of the loop hands it to the thread. */
                                res->numbered(a, res->seq, res->userdata);
                }
                audit_kept_arm(a);
                /* After them: the room they take in the new files is no one else's. */
                waiting_grant(a);
                /* Whether the files it opened have room, whether anything asked or not. */
                if (a->failed == 0)
                        (void) audit_log_check_space(a);
        }

        while (waiters) {
                ReopenWaiter *w = waiters;

                waiters = w->next;
                w->callback(a, r, w->userdata);
                free(w);
        }
}

int audit_log_open(struct event_base *base, const AuditConfig *c, AuditLog **ret) {
        _cleanup_(audit_log_freep) AuditLog *a = NULL;
        AuditResumeInfo info;
        int r;

        assert_return(base, -EINVAL);
        assert_return(c, -EINVAL);
        assert_return(ret, -EINVAL);
        r = config_check(c);
        if (r < 0)
                return r;

        a = new0(AuditLog, 1);
        if (!a)
                return -ENOMEM;
        a->config = *c;
        a->config.ops = c->ops ?: &audit_file_ops_default;
        a->base = base;
        a->generation = 1;
        a->dispatch_tail = &a->dispatch_head;
        a->outbox_tail = &a->outbox_head;
        a->held_tail = &a->held_head;
        a->waiters_tail = &a->waiters;
        a->waiters_again_tail = &a->waiters_again;
        a->directory = strdup(c->directory);
        if (!a->directory)
                return -ENOMEM;
        a->config.directory = a->directory;

        r = audit_files_new(a->directory, c->directory_fd, c->n_files, c->max_file_size, a->config.ops, &a->files);
        if (r == -EBUSY)
                return log_error_errno(r, "Audit log '%s' is in use by another process.", a->directory);
        if (r < 0)
                return log_error_errno(r, "Failed to open audit log directory '%s': %m", a->directory);
        r = audit_files_resume(a->files, &info);
        if (r < 0)
                return r;
        resume(a, &info, /* directory_changed= */ false);

        r = audit_counters_new(&a->counters);
        if (r < 0)
                return r;
        r = audit_shares_new(c->max_in_flight_per_uid, c->max_in_flight_unnamed, &a->shares);
        if (r < 0)
                return r;
        r = audit_query_runner_new(base, a->files, a->config.ops, c->max_queries, &a->queries);
        if (r < 0)
                return r;
        r = audit_sync_new(a->files, c->sync_mode, c->prealloc_size, &a->sync);
        if (r < 0)
                return r;
        a->completion_event = event_new(base, audit_sync_get_fd(a->sync), EV_READ | EV_PERSIST,
                                        on_completion, a);
        if (!a->completion_event || event_add(a->completion_event, NULL) < 0)
                return -ENOMEM;
        /* Activated, never added: it runs at the end of the round that committed. */
        a->submit_event = event_new(base, -1, 0, on_submit, a);
        if (!a->submit_event)
                return -ENOMEM;
        a->wait_timer = evtimer_new(base, on_wait_timer, a);
        if (!a->wait_timer)
                return -ENOMEM;
        a->kept_timer = evtimer_new(base, audit_kept_on_timer, a);
        if (!a->kept_timer)
                return -ENOMEM;
        a->health_timer = evtimer_new(base, on_health_timer, a);
        if (!a->health_timer)
                return -ENOMEM;

        if (c->journal) {
                if (!c->journal_send && access(JOURNAL_SOCKET, W_OK) < 0)
                        log_debug("No journald socket, not mirroring audit records to the journal.");
                else {
                        r = audit_journal_new(c->journal_max_queued, c->journal_send, &a->journal);
                        if (r < 0)
                                log_warning_errno(r, "Failed to start audit journal mirror, ignoring: %m");
                }
        }

        r = audit_sync_start(a->sync, 0);
        if (r < 0)
                return r;
        a->health = (AuditHealth) { .state = AUDIT_HEALTH_OK, .since_usec = now_realtime_usec() };
        (void) audit_log_check_space(a); /* FULL from the start, if so */

        log_debug("Audit log '%s' continues at seq %" PRIu64 ".", a->directory, a->next_seq);
        *ret = TAKE_PTR(a);
        return 0;
}

void audit_log_stop(AuditLog *a) {
        if (!a)
                return;

        /* No call that waits to act may act now. */
        while (a->waiting_head)
                waiting_answer(a, a->waiting_head, -ESHUTDOWN);

        if (!a->sync)
                return;
        /* A reopen still pending is carried out (as it would have been in the reload), and
         * what is held for it numbered after it: everything committed gets written and
         * reported, no callback is lost. No second one: its waiters get the first one's
         * answer. */
        a->reopen_again = false;
        if (a->waiters_again) {
                *a->waiters_tail = TAKE_PTR(a->waiters_again);
                a->waiters_tail = a->waiters_again_tail;
                a->waiters_again_tail = &a->waiters_again;
        }
        while (a->reopen_pending) {
                submit_outbox(a);
                (void) poll(&(struct pollfd) { .fd = audit_sync_get_fd(a->sync), .events = POLLIN }, 1, -1);
                dispatch_completed(a);
        }
        /* Kept records get a last chance, or their callbacks the reason they had none. */
        audit_kept_drain(a);
}

AuditLog *audit_log_free(AuditLog *a) {
        if (!a)
                return NULL;

        assert(a->listener_walks == 0);

        /* The owner goes: what its last records come to is no news to it. */
        a->health_callback = NULL;
        /* If the owner did not already. */
        audit_log_stop(a);
        /* First: their threads read a->files, and their callbacks may still look at the log. */
        a->queries = audit_query_runner_free(a->queries);
        if (a->sync) {
                submit_outbox(a);
                audit_sync_stop(a->sync);
                dispatch_completed(a);
        }
        if (a->completion_event)
                event_free(a->completion_event); /* not NULL-safe */
        if (a->submit_event)
                event_free(a->submit_event);
        if (a->wait_timer)
                event_free(a->wait_timer);
        if (a->kept_timer)
                event_free(a->kept_timer);
        if (a->health_timer)
                event_free(a->health_timer);
        audit_journal_free(a->journal);

        while (a->listeners) {
                AuditListener *l = a->listeners;

                a->listeners = l->next;
                l->prev = l->next = NULL;
                l->log = NULL;
                if (l->destroy && !l->dead)
                        l->destroy(l->userdata);
                l->destroy = NULL;
                if (l->floating)
                        free(l);
        }
        while (a->reservations) {
                AuditReservation *r = a->reservations;

                a->reservations = r->next;
                r->prev = r->next = NULL;
                r->log = NULL;
        }

        audit_sync_free(a->sync);
        audit_files_free(a->files);
        audit_counters_free(a->counters);
        audit_shares_free(a->shares);
        free(a->directory);
        return mfree(a);
}

int audit_log_reopen_full(AuditLog *a, AuditReopenCallback cb, void *userdata) {
        ReopenWaiter *w = NULL;

        assert_return(a, -EINVAL);

        if (cb) {
                w = new(ReopenWaiter, 1);
                if (!w)
                        return -ENOMEM;
                *w = (ReopenWaiter) { .callback = cb, .userdata = userdata };
        }

        if (a->reopen_pending) {
                /* The one pending may have looked at the disk already, before what this
                 * caller repaired: one more after it, for every request made meanwhile. */
                a->reopen_again = true;
                if (w) {
                        *a->waiters_again_tail = w;
                        a->waiters_again_tail = &w->next;
                }
                return 0;
        }

        if (w) {
                *a->waiters_tail = w;
                a->waiters_tail = &w->next;
        }
        reopen_start(a);
        return 0;
}

static int check_space(AuditLog *a) {
        uint64_t need = a->planned_total + (uint64_t) (a->n_reserved + 1) * AUDIT_RECORD_MAX;
        AuditSyncSpace space;
        struct statvfs sv;
        uint64_t avail;
        int r;

        audit_sync_get_space(a->sync, &space);
        if (space.failed < 0)
                /* The thread saw the failure; its completions may not have reached us yet. */
                return space.failed;
        if (need <= space.alloc_total)
                return 0;

        audit_sync_want_space(a->sync, need);
        if (space.space_error < 0)
                return space.space_error;

        /* The tail is short (a burst, or no fallocate here): is there room on the disk? */
        r = a->config.ops->fstatvfs(a->files->dir_fd, &sv);
        if (r < 0)
                return r;
        if (sv.f_flag & ST_RDONLY)
                return -EROFS;
        avail = (uint64_t) sv.f_bavail * (uint64_t) sv.f_frsize;
        if (avail < need - space.alloc_total)
                return -ENOSPC;
        return 0;
}

int audit_log_check_space(AuditLog *a) {
        AuditSyncSpace space;
        int r;

        r = check_space(a);
        /* A failure the thread saw fails the log once its completion is dispatched: not FULL. */
        audit_sync_get_space(a->sync, &space);
        if (r < 0 && space.failed < 0)
                return r;
        return health_space(a, r);
}

/* pool _AUDIT_POOL_INVALID: charged to no uid (owed records, and tests of the total). With cb
 * (a call that acts), waits for a pending reopen: returns 1 then. */
int audit_log_reserve_full(AuditLog *a, bool bounded, bool call, uid_t uid, AuditPool pool, uint64_t timeout_usec,
                           AuditReservedCallback cb, void *userdata, AuditReservation **ret) {
        AuditReservation *res;
        bool wait;
        int r;

        assert_return(a, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(pool == _AUDIT_POOL_INVALID || (pool >= 0 && pool < _AUDIT_POOL_MAX), -EINVAL);

        if (a->failed < 0)
                return refused(a, call, a->failed);
        /* SECURITY: records kept while the log could not take them go before anything reserved
         * after them; while they wait, so does everything else, during a reopen too (they are
         * tried once it finished, reopen_finished(), with the reason they waited until then). */
        if (a->kept_head) {
                r = a->reopen_pending ? a->kept_error : audit_kept_flush(a);
                if (r < 0)
                        return refused(a, call, r);
        }
        /* SECURITY: a bounded queue; past it the daemon sheds load instead of growing. The
         * unnamed pool's records are bounded by that pool alone: they cannot fill this one. */
        if (bounded && pool != AUDIT_POOL_UNNAMED &&
            a->n_reserved + a->n_waiting + a->n_in_flight - audit_shares_n_unnamed(a->shares) >=
                    a->config.max_in_flight)
                return -ENOBUFS;
        /* While a reopen is pending the thread's space is the old files' (see the top).
         * SECURITY: a call that acts must know its record has room before it does: it waits. */
        wait = cb && a->reopen_pending;
        if (!a->reopen_pending) {
                r = audit_log_check_space(a);
                if (r < 0)
                        return refused(a, call, r);
        }

        res = new0(AuditReservation, 1);
        if (!res)
                return -ENOMEM;
        if (pool >= 0) {
                /* SECURITY: no one uid takes all the room, nor those the policy does not name. */
                r = audit_shares_take(a->shares, uid, pool);
                if (r < 0) {
                        free(res);
                        return r;
                }
                res->charged = true;
                res->uid = uid;
                res->pool = pool;
        }
        res->log = a;
        res->call = call;
        if (wait) {
                res->waiting = true;
                res->deadline = timeout_usec > 0 ? usec_add(now_monotonic_usec(), timeout_usec) : UINT64_MAX;
                res->reserved = cb;
                res->reserved_userdata = userdata;
                res->prev = a->waiting_tail;
                if (res->prev)
                        res->prev->next = res;
                else
                        a->waiting_head = res;
                a->waiting_tail = res;
                a->n_waiting++;
                waiting_arm(a);
                *ret = res;
                return 1;
        }
        audit_reservation_link(a, res);

        *ret = res;
        return 0;
}

int audit_log_reserve(AuditLog *a, AuditReservation **ret) {
        return audit_log_reserve_full(a, true, /* call= */ false, AUDIT_UID_INVALID, _AUDIT_POOL_INVALID, 0, NULL, NULL,
                                      ret);
}

int audit_log_reserve_for(AuditLog *a, uid_t uid, AuditPool pool, AuditReservation **ret) {
        assert_return(pool >= 0 && pool < _AUDIT_POOL_MAX, -EINVAL);
        return audit_log_reserve_full(a, true, /* call= */ true, uid, pool, 0, NULL, NULL, ret);
}

int audit_log_reserve_to_act(AuditLog *a, uid_t uid, AuditPool pool, uint64_t timeout_usec, AuditReservedCallback cb,
                             void *userdata, AuditReservation **ret) {
        assert_return(pool >= 0 && pool < _AUDIT_POOL_MAX, -EINVAL);
        assert_return(cb, -EINVAL);
        return audit_log_reserve_full(a, true, /* call= */ true, uid, pool, timeout_usec, cb, userdata, ret);
}

int audit_log_reserve_owed_to_act(AuditLog *a, uint64_t timeout_usec, AuditReservedCallback cb, void *userdata,
                                  AuditReservation **ret) {
        assert_return(cb, -EINVAL);
        return audit_log_reserve_full(a, false, /* call= */ true, AUDIT_UID_INVALID, _AUDIT_POOL_INVALID, timeout_usec,
                                      cb, userdata, ret);
}

bool audit_reservation_is_waiting(const AuditReservation *r) {
        return r && r->waiting;
}

AuditReservation *audit_log_cancel(AuditReservation *r) {
        if (!r)
                return NULL;
        assert(!r->committed);
        if (r->log) {
                reservation_uncharge(r->log, r);
                if (r->waiting) {
                        waiting_unlink(r->log, r);
                        waiting_arm(r->log);
                } else
                        audit_reservation_unlink(r->log, r);
        }
        return audit_reservation_free(r);
}

/* Numbers r (or holds it for a pending reopen) and counts it in flight: r is reserved, its record
 * copied. On failure nothing changed. */
int audit_log_commit_copied(AuditLog *a, AuditReservation *r) {
        int k;

        record_stamp(r);
        if (a->reopen_pending) {
                r->item.next = NULL;
                *a->held_tail = &r->item;
                a->held_tail = &r->item.next;
        } else {
                k = number_record(a, r);
                if (k < 0)
                        return k;
        }

        audit_reservation_unlink(a, r);
        r->committed = true;
        a->n_in_flight++;
        return 0;
}

static int commit(AuditReservation *res, const AuditRecord *record, AuditCommitCallback cb,
                  AuditNumberedCallback numbered, void *userdata, uint64_t *ret_seq) {
        _cleanup_(audit_log_cancelp) AuditReservation *r = NULL;
        AuditLog *a;
        int k;

        assert_return(res, -EINVAL);
        assert_return(!res->committed, -EINVAL);

        /* From here on the reservation is ours: any failure below gives it back. */
        r = res;
        a = r->log;
        if (!a)
                return -ESTALE;
        if (r->waiting)
                return -EBUSY; /* no room yet */
        if (!record || !record->event)
                return -EINVAL;

        k = audit_record_copy_bounded(record, &r->record, &r->storage);
        if (k < 0)
                return k;
        r->callback = cb;
        r->numbered = numbered;
        r->userdata = userdata;
        k = audit_log_commit_copied(a, r);
        if (k < 0)
                return k;
        if (ret_seq)
                *ret_seq = r->seq;
        TAKE_PTR(r);
        return 0;
}

int audit_log_commit(AuditReservation *res, const AuditRecord *record, AuditCommitCallback cb,
                     void *userdata, uint64_t *ret_seq) {
        return commit(res, record, cb, NULL, userdata, ret_seq);
}

int audit_log_commit_full(AuditReservation *res, const AuditRecord *record, AuditCommitCallback cb,
                          AuditNumberedCallback numbered, void *userdata, uint64_t *ret_seq) {
        return commit(res, record, cb, numbered, userdata, ret_seq);
}

static int record(AuditLog *a, bool bounded, AuditPool pool, const AuditRecord *rec, AuditCommitCallback cb,
                  AuditNumberedCallback numbered, void *userdata, uint64_t *ret_seq) {
        AuditReservation *res;
        int r;

        assert_return(a, -EINVAL);
        assert_return(rec, -EINVAL);

        /* A refusal's record, or one of what happened: no call refused for want of it. */
        r = audit_log_reserve_full(a, bounded, /* call= */ false, rec->uid, pool, 0, NULL, NULL, &res);
        if (r < 0)
                return r;
        return commit(res, rec, cb, numbered, userdata, ret_seq);
}

int audit_log_record(AuditLog *a, const AuditRecord *rec, AuditCommitCallback cb, void *userdata,
                     uint64_t *ret_seq) {
        return record(a, true, _AUDIT_POOL_INVALID, rec, cb, NULL, userdata, ret_seq);
}

int audit_log_record_for(AuditLog *a, AuditPool pool, const AuditRecord *rec, AuditCommitCallback cb,
                         void *userdata, uint64_t *ret_seq) {
        assert_return(pool >= 0 && pool < _AUDIT_POOL_MAX, -EINVAL);
        return record(a, true, pool, rec, cb, NULL, userdata, ret_seq);
}

int audit_log_record_owed(AuditLog *a, const AuditRecord *rec, AuditCommitCallback cb, void *userdata,
                          uint64_t *ret_seq) {
        return record(a, false, _AUDIT_POOL_INVALID, rec, cb, NULL, userdata, ret_seq);
}

int audit_log_record_owed_full(AuditLog *a, const AuditRecord *rec, AuditCommitCallback cb,
                               AuditNumberedCallback numbered, void *userdata, uint64_t *ret_seq) {
        return record(a, false, _AUDIT_POOL_INVALID, rec, cb, numbered, userdata, ret_seq);
}

int audit_log_add_listener(AuditLog *a, AuditListenerCallback cb, void *userdata,
                           AuditDestroyCallback destroy, AuditListener **ret) {
        AuditListener *l;

        assert_return(a, -EINVAL);
        assert_return(cb, -EINVAL);

        l = new0(AuditListener, 1);
        if (!l)
                return -ENOMEM;
        *l = (AuditListener){
                .log = a,
                .callback = cb,
                .userdata = userdata,
                .destroy = destroy,
                .floating = !ret,
                .next = a->listeners,
        };
        if (l->next)
                l->next->prev = l;
        a->listeners = l;

        if (ret)
                *ret = l;
        return 0;
}

AuditListener *audit_listener_free(AuditListener *l) {
        AuditDestroyCallback destroy;
        void *userdata;

        if (!l)
                return NULL;

        destroy = TAKE_PTR(l->destroy);
        userdata = l->userdata;
        if (!l->log)
                free(l); /* detached when the log was freed */
        else if (!l->dead) {
                /* Unlinked and freed by the sweep, once no walk over the list is running: a
                 * listener may free itself from its own callback. */
                l->dead = true;
                l->floating = true;
                l->log->listeners_dead = true;
                listeners_sweep(l->log);
        }
        if (destroy)
                destroy(userdata);
        return NULL;
}

int audit_log_query(AuditLog *a, const AuditQueryFilter *f, size_t limit, AuditQueryDoneCallback cb,
                    void *userdata, AuditQuery **ret) {
        AuditQueryFilter g;

        assert_return(a, -EINVAL);
        assert_return(f, -EINVAL);
        assert_return(cb, -EINVAL);

        /* Records after the last acknowledged one may still fail: not part of the log yet. Any
         * but the next ones being written is damage. */
        g = *f;
        g.seq_to = MIN(g.seq_to, a->last_committed_seq);
        g.seq_last = a->last_committed_seq;
        return audit_query_runner_start(a->queries, &g, limit, cb, userdata, ret);
}

void audit_log_set_health_callback(AuditLog *a, AuditHealthCallback cb, void *userdata) {
        assert(a);

        a->health_callback = cb;
        a->health_userdata = userdata;
}

AuditCounters *audit_log_get_counters(AuditLog *a) {
        return a ? a->counters : NULL;
}

int audit_log_get_status(AuditLog *a, AuditLogStatus *ret) {
        assert_return(a, -EINVAL);
        assert_return(ret, -EINVAL);

        *ret = (AuditLogStatus){
                .failed = a->failed,
                .health = a->health,
                .n_refused_unrecorded = a->n_refused_unrecorded,
                .next_seq = a->next_seq,
                .last_committed_seq = a->last_committed_seq,
                .n_reserved = a->n_reserved,
                .n_waiting = a->n_waiting,
                .n_in_flight = a->n_in_flight,
                .n_unnamed = audit_shares_n_unnamed(a->shares),
                .n_queries = audit_query_runner_get_n_running(a->queries),
                .n_kept = a->n_kept,
                .repaired_bytes = a->repaired_bytes,
                .n_anomalies = a->n_anomalies,
                .reopen_pending = a->reopen_pending,
                .journal = !!a->journal,
                .n_journal_dropped = a->journal ? audit_journal_get_dropped(a->journal) : 0,
        };
        for (AuditReservation *r = a->kept_head; r; r = r->kept_next)
                if (streq(r->record.event, KEPT_LOST_EVENT))
                        ret->n_kept_lost += r->record.count;
        audit_sync_get_stats(a->sync, &ret->sync);
        return 0;
}
