/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The audit sync thread: writes queued records to the audit files and makes them durable
 * with fdatasync, off the event loop. In group mode it takes everything queued as one batch
 * (one pwritev run, one fdatasync), so while batch N syncs, batch N+1 accumulates; in
 * per-record mode it syncs every record on its own. Finished items come back in queue order
 * through a completion list and an eventfd the loop watches. It also keeps a preallocated
 * tail ahead of the write position, which is what makes reservations possible, and reopens
 * the files when asked, in queue order, so that the loop never waits for the disk.
 * Runs in: worker (one extra thread next to the event loop).
 */
#pragma once

#include <stdint.h>

#include "audit-files.h"
#include "audit-sync-mode.h"
#include "macro.h"

/* One queued record. Embedded as first member by the owner; the thread only reads line/len
 * and writes error. */
typedef struct AuditSyncItem {
        struct AuditSyncItem *next;
        const char *line;
        size_t len;
        bool reopen; /* an AuditSyncReopen, not a record */
        int error;   /* 0: written and synced; <0: failed (record may or may not be on disk) */
} AuditSyncItem;

/* A reopen, queued like a record and carried out in its place: after every item before it
 * was written or failed, the thread opens the directory again if another one is at its path
 * now (audit_files_reopen_directory()), else cuts what failed back out of the file
 * (audit_files_take_back()), resumes from the files (audit_files_resume()) and
 * starts a new stream there, failed with the error if that did not work, healthy otherwise.
 * Items after it go to the new stream: a failure of the old files does not fail them. */
typedef struct AuditSyncReopen {
        AuditSyncItem item;        /* first; item.reopen set; item.error: the new state */
        bool directory_changed;    /* on success: another directory is at the path now */
        AuditResumeInfo resume;    /* on success: what the files say */
} AuditSyncReopen;

typedef struct AuditSyncStats {
        uint64_t n_records;
        uint64_t n_batches;
        uint64_t n_syncs;
        uint64_t n_rotations;
} AuditSyncStats;

/* Space as the loop sees it, in bytes of the record stream since the last (re)start:
 * everything up to alloc_total has a home on disk. */
typedef struct AuditSyncSpace {
        uint64_t written_total;
        uint64_t alloc_total;
        int space_error;      /* last preallocation of the minimum needed failed (-ENOSPC, ...) */
        bool prealloc_unsupported;
        int failed;           /* sticky write/sync error, 0 if healthy */
} AuditSyncSpace;

typedef struct AuditSync AuditSync;

/* Creates the completion eventfd; the thread is started with audit_sync_start(). files is
 * borrowed and, while the thread runs, written by it only. */
int audit_sync_new(AuditFiles *files, AuditSyncMode mode, uint64_t prealloc_size, AuditSync **ret);
/* Stops the thread (after it wrote everything queued). Items not taken are lost: take them
 * with audit_sync_take_completed() after audit_sync_stop() first. */
AuditSync *audit_sync_free(AuditSync *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(AuditSync *, audit_sync_free);

/* Starts the thread; resets the stream counters and sets the failed state to `failed` (0,
 * or an error every queued item then completes with). When healthy, preallocates the first
 * tail synchronously so that the first reservations do not have to wait. */
int audit_sync_start(AuditSync *s, int failed);
/* Lets the thread write and sync everything queued (carrying out a queued reopen), then
 * joins it. Idempotent. */
void audit_sync_stop(AuditSync *s);

/* The fd becomes readable when completed items are waiting. */
int audit_sync_get_fd(AuditSync *s);

/* Queues items linked through next, in that order, with one lock and one wake-up. If the
 * thread is in the failed state records complete with that error without touching the disk;
 * a reopen is carried out whatever the state. Without a thread (it could not be started)
 * every item completes at once with the failed state's error, or -ESHUTDOWN. */
void audit_sync_submit(AuditSync *s, AuditSyncItem *list);

/* Takes every completed item, in queue order (NULL if none), and clears the eventfd. */
AuditSyncItem *audit_sync_take_completed(AuditSync *s);

/* Asks the thread to make sure everything up to need_total has a home (and prealloc_size
 * more if possible). Does not wait. */
void audit_sync_want_space(AuditSync *s, uint64_t need_total);

void audit_sync_get_space(AuditSync *s, AuditSyncSpace *ret);
void audit_sync_get_stats(AuditSync *s, AuditSyncStats *ret);
