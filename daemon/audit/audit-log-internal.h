/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The audit log's insides that audit-log.c and audit-kept.c share: the log's and a reservation's
 * state. Internal to daemon/audit/. Runs in: worker (event loop thread). */
#pragma once

#include "audit-journal.h"
#include "audit-log.h"

/* The event of the summary that stands for the kept records lost past max_kept. */
#define KEPT_LOST_EVENT audit_event_to_string(AUDIT_EVENT_RECORDS_LOST)

struct AuditReservation {
        AuditSyncItem item; /* first: the sync queue links it */
        AuditLog *log;      /* NULL once the log is gone */
        AuditReservation *prev, *next; /* in log->reservations while uncommitted */
        bool committed;
        bool charged; /* to uid's share in pool */
        bool call;    /* a call's, before it runs: its refusal is counted (n_refused_unrecorded) */
        uid_t uid;
        AuditPool pool;
        unsigned generation; /* 0: never queued (then a failure is not the files') */
        uint64_t seq;
        char *line;
        AuditRecord record; /* bounded copy; strings in storage */
        char *storage;
        AuditCommitCallback callback;
        AuditNumberedCallback numbered; /* if held for a reopen */
        void *userdata;
        /* In log->waiting_head (prev, next), not log->reservations, until granted or refused:
         * see audit_log_reserve_to_act(). deadline: CLOCK_MONOTONIC, UINT64_MAX for none. */
        bool waiting;
        uint64_t deadline;
        AuditReservedCallback reserved;
        void *reserved_userdata;
        /* Kept (audit_log_record_owed_kept()): its record copied, the next in log->kept_head. */
        AuditReservation *kept_next;
        /* Of audit_log_record_owed_kept(), held for a reopen: kept, not failed, if the files it
         * opened cannot take it. */
        bool owed_kept;
};

typedef struct ReopenWaiter ReopenWaiter;
struct ReopenWaiter {
        AuditReopenCallback callback;
        void *userdata;
        ReopenWaiter *next;
};

struct AuditLog {
        AuditConfig config;
        char *directory;
        struct event_base *base;
        AuditFiles *files;
        AuditSync *sync;
        struct event *completion_event;
        /* Committed, not yet handed to the sync thread: they go once per round of the loop,
         * after what the round's events committed, so records that arrive together share one
         * fdatasync (the thread would otherwise start one for the first alone while the rest
         * waited a whole sync for the next) and the thread is woken once. */
        AuditSyncItem *outbox_head, **outbox_tail;
        struct event *submit_event;
        AuditCounters *counters;
        AuditJournal *journal;
        AuditShares *shares;
        AuditQueryRunner *queries;

        uint64_t next_seq;
        uint64_t last_committed_seq;
        /* audit.log as the sync thread will have it once it wrote every record numbered (its
         * rotation, write_batch(), done the same way here), and the bytes of refusals in it:
         * audit_log_refusal_room(). */
        uint64_t file_size, file_refusal_bytes;
        uint64_t pending_repaired; /* reported in the next record */
        uint64_t repaired_bytes;
        unsigned n_anomalies;
        unsigned generation; /* bumped by reopen: old failures do not fail the new files; from 1 */
        int failed;

        /* What an administrator is told (audit_log_get_status()), and the owner on a change;
         * while FULL, the timer looks for room. */
        AuditHealth health;
        AuditHealthCallback health_callback;
        void *health_userdata;
        struct event *health_timer;
        uint64_t n_refused_unrecorded;

        uint64_t planned_total;
        unsigned n_reserved, n_in_flight;
        AuditReservation *reservations;
        /* Reservations of calls that act, waiting for the pending reopen, oldest first; the
         * timer fires at the earliest deadline. */
        AuditReservation *waiting_head, *waiting_tail;
        unsigned n_waiting;
        struct event *wait_timer;

        /* Completed, not yet reported; popped one at a time so nested dispatch keeps order. */
        AuditSyncItem *dispatch_head, **dispatch_tail;

        /* The reopen with the sync thread, if reopen_pending; asked for again meanwhile
         * (reopen_again), it is done once more after it, for waiters_again. Records committed
         * until the last one finished are held, unnumbered, linked through item.next. */
        AuditSyncReopen reopen;
        bool reopen_pending, reopen_again;
        ReopenWaiter *waiters, **waiters_tail, *waiters_again, **waiters_again_tail;
        AuditSyncItem *held_head, **held_tail;

        /* Owed records the log could not take, oldest first (see the top); a summary of those lost
         * past max_kept is one of them (kept_lost: the tail's, while it counts). */
        AuditReservation *kept_head, *kept_tail, *kept_lost;
        unsigned n_kept;
        int kept_error; /* why the head waited, last it was tried: a reservation's refusal during a reopen */
        struct event *kept_timer;

        AuditListener *listeners;
        unsigned listener_walks;
        bool listeners_dead;
};

/* audit-log.c */
AuditReservation *audit_reservation_free(AuditReservation *r);
void audit_reservation_unlink(AuditLog *a, AuditReservation *r);
void audit_reservation_link(AuditLog *a, AuditReservation *r);
int audit_log_check_space(AuditLog *a);
int audit_log_reserve_full(AuditLog *a, bool bounded, bool call, uid_t uid, AuditPool pool, uint64_t timeout_usec,
                           AuditReservedCallback cb, void *userdata, AuditReservation **ret);
int audit_log_commit_copied(AuditLog *a, AuditReservation *r);

/* audit-kept.c */
void audit_kept_arm(AuditLog *a);
int audit_kept_can_take(AuditLog *a);
void audit_kept_append(AuditLog *a, AuditReservation *r);
int audit_kept_flush(AuditLog *a);
void audit_kept_on_timer(evutil_socket_t fd, short what, void *userdata);
void audit_kept_drain(AuditLog *a);
