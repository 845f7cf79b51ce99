/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The tsmd audit log: durable, append-only, sequence-numbered JSON lines in
 * <directory>/audit.log (rotated to audit.log.1 ... by size). Every guest request and every
 * lifecycle call produces one record, and a request is answered only after its record is on
 * disk.
 *
 * Fail closed in two steps: audit_log_reserve() before the request is forwarded (cheap; fails
 * if the log is broken, overloaded, or cannot guarantee room for one more record; for a call
 * that acts, made while a reopen is pending, it waits for the reopen, as room in the files it
 * opens cannot be known before: audit_log_reserve_to_act()), then
 * audit_log_commit() with the outcome (assigns the sequence number; the callback reports
 * durability later, from the event loop, in sequence order). Writes and fdatasync happen in
 * a sync thread that groups concurrent records into one fdatasync. After any write or sync
 * error the log is failed: every reserve returns that error until audit_log_reopen_full() worked.
 * The loop never waits for the disk, a reopen included.
 *
 * Runs in: worker (event loop thread; all functions here must be called from it).
 */
#pragma once

#include <event2/event.h>
#include <stdint.h>

#include "audit-counters.h"
#include "audit-defaults.h"
#include "audit-journal.h"
#include "audit-ops.h"
#include "audit-query-runner.h"
#include "audit-query.h"
#include "audit-record.h"
#include "audit-shares.h"
#include "audit-sync.h"
#include "macro.h"

#define AUDIT_PREALLOC_SIZE_DEFAULT (1024u * 1024u)
/* How often kept records (audit_log_record_owed_kept()) look for room on a file system that had none. */
#define AUDIT_KEPT_RETRY_USEC (500u * 1000u)

typedef struct AuditConfig {
        const char *directory;   /* borrowed; copied by audit_log_open() */
        int directory_fd;        /* borrowed: directory, locked by the caller's parent (audit_files_new()); -EBADF: none */
        uint64_t max_file_size;  /* rotate before a record would make audit.log larger */
        unsigned n_files;        /* files kept, audit.log included: 2..AUDIT_FILES_MAX */
        AuditSyncMode sync_mode; /* group commit, or one fdatasync per record (benchmarks) */
        bool journal;            /* mirror committed records to journald */
        unsigned journal_max_queued; /* records waiting for journald; beyond: dropped, counted */
        AuditJournalSendFn journal_send; /* NULL: sd_journal_sendv(), if journald's socket is there; tests
                                          * give one (the mirror then starts whatever is there) */
        unsigned max_in_flight;  /* reserved + queued records of named callers; beyond: -ENOBUFS */
        unsigned max_in_flight_per_uid; /* of one uid, in either pool */
        unsigned max_in_flight_unnamed; /* of the unnamed pool, apart from max_in_flight */
        uint64_t prealloc_size;  /* preallocated tail kept ahead of the write position */
        unsigned max_queries;    /* queries running at once; beyond: -EBUSY */
        unsigned max_kept;       /* owed records kept while the log cannot take them; beyond: lost, counted */
        /* Of each file, what refusals (AuditRecord.refusal) may take: audit_log_refusal_room(). 1..100 */
        unsigned refusal_share_percent;
        const AuditFileOps *ops; /* NULL: the real system calls; tests inject faults */
} AuditConfig;

/* Defaults, with directory NULL (must be set). */
void audit_config_init(AuditConfig *c);

typedef struct AuditLog AuditLog;
typedef struct AuditReservation AuditReservation;
typedef struct AuditListener AuditListener;

/* Called once per committed record, from the event loop, in sequence order: error 0 when the
 * record is durable, else -errno (the record may or may not be in the file). */
typedef void (*AuditCommitCallback)(AuditLog *a, uint64_t seq, int error, void *userdata);

/* Called for a record committed while a reopen is pending, or kept (audit_log_record_owed_kept()),
 * its ret_seq 0, from the event loop when it was numbered (after the reopen, or once the log took
 * it): before it is handed to the sync thread, so before it can be on the disk (a caller that must
 * say where its record goes before it may be there). Not called for a record numbered at its
 * commit, nor for one that could not be numbered (its commit callback gets the error). Must not
 * call into the log: the records held after it are being numbered. */
typedef void (*AuditNumberedCallback)(AuditLog *a, uint64_t seq, void *userdata);

/* Called once a reopen finished, from the event loop: error 0 if the log takes records
 * again, else the error it stays failed with. */
typedef void (*AuditReopenCallback)(AuditLog *a, int error, void *userdata);

/* Called once per durable record, after counters were updated and before the commit
 * callback. record and line (with its '\n', len bytes) are valid during the call only. */
typedef void (*AuditListenerCallback)(AuditLog *a, const AuditRecord *record, const char *line,
                                      size_t len, void *userdata);
typedef void (*AuditDestroyCallback)(void *userdata);

/* Whether the log takes records, as an administrator is told (io.tsmd.Service.GetStatus). */
typedef enum AuditHealthState {
        AUDIT_HEALTH_OK,
        /* Its last space check (a reservation's, or the retry's while in this state) found no room
         * for one more record (-ENOSPC, -EDQUOT) or the file system read-only (-EROFS): it takes
         * records again by itself once there is room. */
        AUDIT_HEALTH_FULL,
        /* A write or sync failed, or the reopen that was to repair it: refuses every record until a
         * reopen works. */
        AUDIT_HEALTH_FAILED,
        _AUDIT_HEALTH_STATE_MAX,
        _AUDIT_HEALTH_STATE_INVALID = -EINVAL,
} AuditHealthState;

const char *audit_health_state_to_string(AuditHealthState s);
AuditHealthState audit_health_state_from_string(const char *s);

typedef struct AuditHealth {
        AuditHealthState state;
        int error;           /* -errno with state FULL or FAILED (the latest), else 0 */
        uint64_t since_usec; /* CLOCK_REALTIME when it came to state (at the open, for OK) */
} AuditHealth;

/* While the log is FULL, how often it looks for room though nothing asks it to. */
#define AUDIT_HEALTH_RETRY_USEC (1000u * 1000u)

typedef struct AuditLogStatus {
        int failed;                  /* 0, or the error every reserve returns */
        AuditHealth health;
        /* Reservations of calls (audit_log_reserve_for(), _to_act(), _owed_to_act()) the log
         * refused failed or full, waiting ones refused so after a reopen or at their deadline, and
         * those whose record failed once committed: since the open, kept in memory alone. */
        uint64_t n_refused_unrecorded;
        uint64_t next_seq;
        uint64_t last_committed_seq; /* last seq known durable (from the files at open) */
        unsigned n_reserved;
        unsigned n_waiting;          /* reservations of calls that act, waiting for a reopen */
        unsigned n_in_flight;        /* committed, not yet reported */
        unsigned n_unnamed;          /* of those and the reserved: the unnamed pool's */
        unsigned n_queries;          /* running, or cancelled and not stopped yet */
        unsigned n_kept;             /* owed records waiting for the log to take them, and those held
                                      * for a reopen behind them */
        uint64_t n_kept_lost;        /* of those, lost past max_kept, not written in a summary yet */
        uint64_t repaired_bytes;     /* cut from torn tails at the last (re)open */
        unsigned n_anomalies;        /* sequence gaps/regressions seen at the last (re)open */
        bool reopen_pending;         /* audit_log_reopen_full() asked, not finished */
        bool journal;                /* mirror active */
        uint64_t n_journal_dropped;  /* records the mirror dropped since the open (audit-journal.h) */
        AuditSyncStats sync;
} AuditLogStatus;

/* Opens the log in c->directory (created if missing), resumes the sequence after the last
 * complete record and repairs a torn tail, starts the sync thread and registers its
 * completion event with base. -EBUSY if another process has the directory open. Blocks on
 * the disk (reading the tail): call it before the loop runs. */
int audit_log_open(struct event_base *base, const AuditConfig *c, AuditLog **ret);

/* The start of audit_log_free(), for an owner whose callbacks touch what it frees before the
 * log: refuses the calls waiting to act (-ESHUTDOWN), and carries out a pending reopen, waiting
 * for the disk: its callbacks run now, and the records held for it are numbered (written by
 * audit_log_free()). The log goes on taking records. Must not be called from one of the log's
 * own callbacks. */
void audit_log_stop(AuditLog *a);

/* Carries out a pending reopen (waiting for the disk, as writing does), writes and syncs
 * every committed record, runs their callbacks and the reopen's, calls every listener's
 * destroy, and frees the log. Reservations still held become stale (commit → -ESTALE). Must
 * not be called from one of the log's own callbacks. */
AuditLog *audit_log_free(AuditLog *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(AuditLog *, audit_log_free);

/* Leaves the failed state (admin request, SIGHUP), or moves to a file system mounted in the
 * place of the directory, without waiting for the disk: the sync thread, once it wrote what
 * was committed before, reopens the newest file and resumes the sequence from the files
 * (never below the last acknowledged seq). Failures of records committed before do not fail
 * the log any more; on failure of the reopen it stays (or becomes) failed with its error.
 * Until it finished: a failed log refuses reservations as before; a healthy one takes them,
 * within max_in_flight (unless owed records are kept: see audit_log_record_owed_kept()), but those
 * of calls that act (audit_log_reserve_to_act()) only once it
 * finished and the files it opened have room; records committed are held and numbered after
 * it, in order. Asked
 * for while one is pending, one more is done after it, however often it was asked.
 * cb (may be NULL) is called exactly once, later, from the event loop (or audit_log_free()),
 * when the reopen that covers this request finished. -ENOMEM (cb never called), or 0. */
int audit_log_reopen_full(AuditLog *a, AuditReopenCallback cb, void *userdata);

/* Guarantees room for one record, or fails: the failed state's error (-EIO, -ENOSPC,
 * -EROFS, ...), -ENOSPC if the file system cannot hold one more maximum-size record, -ENOBUFS
 * if max_in_flight records are reserved or queued. Does not block. */
int audit_log_reserve(AuditLog *a, AuditReservation **ret);

/* The same for a record of uid's call, charged to uid's share of pool's room: -ENOBUFS also
 * past max_in_flight_per_uid records of uid, or, for AUDIT_POOL_UNNAMED, past
 * max_in_flight_unnamed records of that pool (whose records max_in_flight does not count). */
int audit_log_reserve_for(AuditLog *a, uid_t uid, AuditPool pool, AuditReservation **ret);

/* Called once for a reservation that waited (audit_log_reserve_to_act()), from the event loop
 * (or audit_log_free()): error 0 when it was granted (commit or cancel it as any other), else
 * why it was refused; then it is stale (a commit fails with -ESTALE) and only
 * audit_log_cancel() is left to do with it. */
typedef void (*AuditReservedCallback)(AuditLog *a, AuditReservation *r, int error, void *userdata);

/* audit_log_reserve_for(), for a call that acts, which must know its record has room before it
 * does anything. While a reopen is pending that cannot be known (it may move the log to a file
 * system without room), so the reservation waits for it: returns 1 and a reservation that is
 * granted, in the order asked for, once the last reopen asked for finished and the files it
 * opened have room, or refused: with the error the reopen left the log failed with, the space
 * check's (-ENOSPC, -EROFS, ...), -ETIMEDOUT after timeout_usec (0: no limit), -ESHUTDOWN when
 * the log is freed first. cb is called then, once (never from here). A waiting reservation
 * counts against max_in_flight and uid's share; cancelling it withdraws it (cb is not called).
 * Returns 0 when granted at once (cb is never called), or < 0 as audit_log_reserve_for(). */
int audit_log_reserve_to_act(AuditLog *a, uid_t uid, AuditPool pool, uint64_t timeout_usec, AuditReservedCallback cb,
                             void *userdata, AuditReservation **ret);
/* The same past max_in_flight, for records owed whatever the load (an administrator's action,
 * see audit_log_record_owed()): only a failed log or a full file system refuse it. */
int audit_log_reserve_owed_to_act(AuditLog *a, uint64_t timeout_usec, AuditReservedCallback cb, void *userdata,
                                  AuditReservation **ret);
/* Whether r still waits for a reopen (a commit is refused with -EBUSY until it is granted). */
bool audit_reservation_is_waiting(const AuditReservation *r);

/* Gives a reservation back without using a sequence number. Returns NULL. */
AuditReservation *audit_log_cancel(AuditReservation *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(AuditReservation *, audit_log_cancel);

/* Consumes the reservation (also on failure): assigns the next seq and the timestamps,
 * queues the record. Returns < 0 only for invalid arguments (no event), -ENOMEM, -ESTALE if
 * the log is gone (or refused a waiting reservation), or -EBUSY if it still waits; then cb is
 * never called. Otherwise cb (may be NULL) is called
 * exactly once, later, from the event loop. ret_seq may be NULL; it is 0 for a record
 * committed while a reopen is pending (numbered, and its time taken, when it finished; cb gets the
 * number). */
int audit_log_commit(AuditReservation *r, const AuditRecord *record, AuditCommitCallback cb,
                     void *userdata, uint64_t *ret_seq);
/* The same, and numbered (may be NULL) is told the seq of a record held for a pending reopen once
 * it has one (see audit_log_record_owed_full()). */
int audit_log_commit_full(AuditReservation *r, const AuditRecord *record, AuditCommitCallback cb,
                          AuditNumberedCallback numbered, void *userdata, uint64_t *ret_seq);

/* Reserve + commit, for lifecycle events that have nothing to refuse. */
int audit_log_record(AuditLog *a, const AuditRecord *record, AuditCommitCallback cb,
                     void *userdata, uint64_t *ret_seq);
/* Reserve (audit_log_reserve_for(), for record->uid) + commit: a refusal's record. */
int audit_log_record_for(AuditLog *a, AuditPool pool, const AuditRecord *record, AuditCommitCallback cb,
                         void *userdata, uint64_t *ret_seq);
/* The same for a record tsmd owes for what it did on its own, on a client's behalf (unbinding at
 * a release): taken past max_in_flight, so that a full queue cannot lose it. Callers bound
 * these by what they track (a release per vDevice a client held). */
int audit_log_record_owed(AuditLog *a, const AuditRecord *record, AuditCommitCallback cb,
                          void *userdata, uint64_t *ret_seq);
/* The same, and numbered (may be NULL) is told the seq of a record held for a pending reopen once
 * it has one: ret_seq or numbered, one of them gives it before the record can be on the disk. */
int audit_log_record_owed_full(AuditLog *a, const AuditRecord *record, AuditCommitCallback cb,
                               AuditNumberedCallback numbered, void *userdata, uint64_t *ret_seq);

/* The same for a record owed even while the log cannot take it (it has failed, or its file system
 * is full): then it is kept and written as soon as the log takes records again (a reopen that
 * worked, room found on a retry every AUDIT_KEPT_RETRY_USEC or by a reservation), before any
 * record reserved after it, kept ones in the order owed. It keeps the time it was owed
 * ("owedSince"); "time" is when it was written, as every record's, so that time follows the
 * sequence. At most max_kept are kept: past them a record is lost, counted (-ENOBUFS, cb never
 * called), and the count written in its place, as a summary of event "records-lost" whose "count"
 * says how many, so that no loss is silent. Returns 0 when committed (as
 * audit_log_record_owed_full()), 1 when kept (ret_seq 0; numbered gets the seq once it has one,
 * cb is called once written, or with the error that kept it when the log is freed first), else
 * < 0 (cb never called). One committed while a reopen is pending is kept when it finished if the
 * log cannot take it then (the reopen failed, the files it opened have no room); the records held
 * for the reopen behind a kept one wait behind it (those of calls fail if the reopen failed). */
int audit_log_record_owed_kept(AuditLog *a, const AuditRecord *record, AuditCommitCallback cb,
                               AuditNumberedCallback numbered, void *userdata, uint64_t *ret_seq);

/* SECURITY: whether audit.log has room for one more refusal (a record with AuditRecord.refusal
 * set: of a call refused, or a summary of such calls, audit-budget.h). Refusals may take at most
 * refusal_share_percent of each file (and the record that crosses it): anyone may make calls to
 * be refused, and without this a steady flood of them, however rate-limited, would rotate every
 * other record out of the ring in time. With the share at half, a file fills, and the ring
 * rotates, only by the records of what was done (calls the policy authorised, tsmd's own
 * events), at no more than twice their own rate. Where the share of audit.log is not known (after
 * a (re)open found records there this log did not write) they are taken to be refusals. Past it,
 * the caller counts refusals instead (audit_budget_count()) until a new file starts. */
bool audit_log_refusal_room(AuditLog *a);

/* Follows the log: cb sees every durable record once (streamed Varlink "more" calls).
 * destroy(userdata) runs exactly once, when the listener is freed or the log is. With ret
 * NULL the listener belongs to the log; otherwise free it with audit_listener_free() (also
 * after the log is gone). Safe to free from inside its own callback. */
int audit_log_add_listener(AuditLog *a, AuditListenerCallback cb, void *userdata,
                           AuditDestroyCallback destroy, AuditListener **ret);
AuditListener *audit_listener_free(AuditListener *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(AuditListener *, audit_listener_free);

/* Starts reading the durable records matching f, at most limit of them, oldest first, in a
 * thread (see audit-query-runner.h): cb gets them later, from the event loop. Records committed
 * but not durable yet are not part of the log. -EBUSY while max_queries run. A query still
 * running when the log is freed is reported with -ECANCELED. */
int audit_log_query(AuditLog *a, const AuditQueryFilter *f, size_t limit, AuditQueryDoneCallback cb,
                    void *userdata, AuditQuery **ret);

/* Called from the event loop when the log's health (its state, or the error of a state other
 * than OK) changed, with the new one. Must not call into the log. */
typedef void (*AuditHealthCallback)(AuditLog *a, const AuditHealth *health, void *userdata);
/* cb NULL: none. */
void audit_log_set_health_callback(AuditLog *a, AuditHealthCallback cb, void *userdata);

/* Counters over the records committed since open (borrowed). */
AuditCounters *audit_log_get_counters(AuditLog *a);

int audit_log_get_status(AuditLog *a, AuditLogStatus *ret);
