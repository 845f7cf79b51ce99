/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The audit log's files in one directory: audit.log (newest), audit.log.1 ... audit.log.<N-1>
 * (oldest). Finds where the sequence continues after a restart or crash, cuts a torn tail,
 * rotates crash-safely, and hands out consistent snapshots of the file set for queries.
 * Only whoever owns an AuditFiles writes (the sync thread while it runs); the snapshot and
 * the fixed fields may be used from any thread, dir_fd only by the owner or under
 * rotate_lock (a reopen replaces it). Runs in: worker (audit writer), tests.
 */
#pragma once

#include <pthread.h>
#include <stdint.h>

#include "audit-ops.h"
#include "macro.h"

#define AUDIT_FILE_NAME "audit.log"
#define AUDIT_FILES_MAX 1000u
/* How much of a file's end is read to find the last record and check the sequence. */
#define AUDIT_TAIL_WINDOW (64u * 1024u)

typedef struct AuditFiles {
        const AuditFileOps *ops;
        char *directory;
        unsigned n_files;
        uint64_t max_file_size;
        int dir_fd; /* O_DIRECTORY, flock()ed: one writer per directory; replaced under
                     * rotate_lock */

        /* The newest file, open for writing; owned by the writer. */
        int fd;
        uint64_t size;      /* bytes of records in it */
        uint64_t synced;    /* bytes of it a sync of ours covered; < size only between a write
                             * and its sync, or after either failed */
        uint64_t alloc_end; /* preallocated (FALLOC_FL_KEEP_SIZE) up to here; >= size */

        /* Held across the renames of a rotation, so a snapshot never sees one file twice or
         * misses one, and while dir_fd is replaced. */
        pthread_mutex_t rotate_lock;
} AuditFiles;

typedef struct AuditResumeInfo {
        uint64_t last_seq;       /* highest seq of a record in any file's tail; 0 if none */
        uint64_t repaired_bytes; /* bytes cut from torn tails */
        unsigned n_anomalies;    /* sequence gaps/regressions seen in the tails read */
        uint64_t current_size;   /* of audit.log, opened for appending */
} AuditResumeInfo;

/* Opens (creating if missing, mode 0750) the directory and locks it (-EBUSY if another
 * writer holds it). held_fd (borrowed; -EBADF: none), if it is the directory at that path, is
 * used in place of a new open (a duplicate): a lock on it, the monitor's for all its workers, is
 * that open file's and so ours too (tsmd's monitor, worker_dirs_lock()). n_files counts audit.log
 * too and must be 2..AUDIT_FILES_MAX. A directory group or others may write is made writable by
 * its owner only, or refused (-EPERM) if it is not the caller's; so is it at every reopen. */
int audit_files_new(const char *directory, int held_fd, unsigned n_files, uint64_t max_file_size,
                    const AuditFileOps *ops, AuditFiles **ret);
/* Opens the directory again by its path (and locks it) if what is there now is not the
 * directory open already: another file system mounted in place of one that failed. Returns 1
 * if it changed (the current file is closed; audit_files_resume() opens the new one), 0 if the
 * path still names the same directory. */
int audit_files_reopen_directory(AuditFiles *f);
AuditFiles *audit_files_free(AuditFiles *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(AuditFiles *, audit_files_free);

/* Syncs every file (failing on an error: what it reads must be durable), cuts torn tails of
 * the newest file that has a record and of the newer ones (with a warning each; a tail it
 * cannot tell from damage is refused with -EBADMSG), finds the highest seq in the tails of
 * all, reports sequence anomalies, and opens audit.log for appending (creating it if a crash
 * happened mid-rotation). Closes a previously open audit.log first. */
int audit_files_resume(AuditFiles *f, AuditResumeInfo *ret);

/* Cuts the open audit.log back to what our last successful sync covered, after a write or
 * sync failed: the failed bytes may be in the page cache only, where no later sync of them
 * reports the error again. Fails (and the caller must not write to or resume from the file)
 * while the cut fails. */
int audit_files_take_back(AuditFiles *f);

/* Starts a new audit.log: creates the new file (as audit.log.new) and preallocates prealloc_size
 * in it (at least min_size, the room promised in the old one), then shifts every file one up
 * (dropping the oldest), names the new one audit.log and syncs the directory, and only then
 * releases the old file's preallocated tail: 0. Returns 1, changing nothing, if the new file
 * cannot get min_size (or cannot be created for want of room, ENOSPC): the old file stays
 * audit.log, open for appending, its tail holding the room promised, and the log is full once
 * that is used. The caller has synced the old file's data first, so no record in a newer file
 * can exist without the records before it. */
int audit_files_rotate(AuditFiles *f, uint64_t prealloc_size, uint64_t min_size);

/* Extends the preallocation of audit.log to at least `end` bytes. */
int audit_files_preallocate(AuditFiles *f, uint64_t end);

/* Opens every existing file read-only, oldest first, into fds[0..n_files) (-EBADF for a
 * missing one, and for one that is not a regular file: a FIFO, symlink, directory or device
 * node under a file's name is left out with a warning, never opened to block or read). Safe
 * from any thread, also while the loop reopens the directory. */
int audit_files_snapshot(AuditFiles *f, int *fds);

/* "audit.log" for 0, "audit.log.<i>" otherwise. */
void audit_file_name(unsigned i, char buf[static sizeof(AUDIT_FILE_NAME) + 12]);
