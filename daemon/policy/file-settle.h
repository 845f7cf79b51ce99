/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Whether a read of a file saw it whole, not in the middle of an edit made in place ("cat >",
 * an editor that rewrites the file where it is): a prefix of a policy is often a valid policy,
 * and one with fewer restrictions (a rule without its last line, Backends=, allows more).
 *
 * A read is settled when the file did not change while it was read (its fstat() before and after
 * the same: device, inode, size, mtime, ctime) and either
 *  - its ctime is FILE_SETTLE_USEC old (git's "racily clean" rule, as files-on-disk.h's): no
 *    write came for that long;
 *  - its ctime is later than its mtime: its last change was no write but one after the writing,
 *    a rename into place (which writing a new file and renaming it over the old ends with), or a
 *    chmod or utime as cp -p and install do last;
 *  - nobody has it open for writing (a read lease, fcntl(2), is granted, and given back at once):
 *    a file renamed in the clock tick of its last write (its ctime and mtime equal), or an edit
 *    in place that is done. Where we cannot tell (a file not root's, leases off), it waits;
 *  - or a read FILE_SETTLE_USEC ago (CLOCK_MONOTONIC) found the same (a clock set back).
 * Else the file is read again once it may have settled, until FILE_SETTLE_WAIT_USEC after the
 * first read, and then the load fails: the set in force stays.
 *
 * The wait blocks the caller (the monitor's loop: a reload is one), only while a file changed in
 * the last FILE_SETTLE_USEC is open for writing, or where we cannot tell.
 *
 * Not caught: an edit in place that closes the file between its writes (echo >, then echo >>),
 * or whose writer holds it open and pauses longer than FILE_SETTLE_USEC. Edits are safe when
 * atomic: write a new file, rename it over the old.
 *
 * Runs in: monitor and worker, wherever the files are loaded.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

/* A file whose ctime is younger than this may be in the middle of a write. */
#define FILE_SETTLE_USEC (1000 * 1000ULL)
/* How long a load waits for a file to settle, at most. */
#define FILE_SETTLE_WAIT_USEC (2 * FILE_SETTLE_USEC)

typedef struct FileSettle {
        uint64_t first_usec; /* CLOCK_MONOTONIC of the first read; 0: none yet */
        uint64_t seen_usec;  /* CLOCK_MONOTONIC of the first read that found seen */
        struct stat seen;    /* what the last unsettled read found */
} FileSettle;

/* Why a load that gave up waiting failed, after "path: ". */
#define FILE_SETTLE_ERROR                                                                          \
        "changing still, in the middle of a write (edit files atomically: write a new file, then rename it " \
        "over the old)"

uint64_t file_settle_timespec_usec(const struct timespec *ts);

/* Whether two fstat()s say the same file with the same contents, as far as stat tells. */
bool file_settle_same_stat(const struct stat *a, const struct stat *b);

/*
 * After a read of a file (s: zeroed before the first; fd: open read-only, still; before, after:
 * the fstat()s of fd around the read): 1 if the read saw it whole; 0 if it may not have, having slept until it may
 * be settled (read it again); -EBUSY if not and FILE_SETTLE_WAIT_USEC passed since the first.
 */
int file_settle_read(FileSettle *s, int fd, const struct stat *before, const struct stat *after);
