/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Shared by the audit tests: a temporary log directory, a fault-injecting AuditFileOps that
 * counts calls, fails chosen ones and adds latency, an event loop driver, and a reader that
 * returns every record in the files. Runs in: tests.
 */
#pragma once

#include <event2/event.h>
#include <stdatomic.h>

#include "audit-log.h"

typedef struct Faults {
        atomic_uint n_openat, n_pwritev, n_fdatasync, n_fsync, n_fallocate, n_ftruncate,
                n_renameat, n_fstatvfs, n_pread;
        /* Bytes the queries read. */
        atomic_ullong pread_bytes;
        /* While set, pread waits (a query held mid-scan); pread_waiting says one does. */
        atomic_bool pread_hold, pread_waiting;
        /* Fail the call with this errno (> 0) from the n-th call on (1-based; 0: from now). */
        atomic_int fdatasync_errno;
        atomic_uint fdatasync_fail_from;
        atomic_int pwritev_errno;
        atomic_int fallocate_errno;
        atomic_int renameat_errno;
        atomic_int ftruncate_errno;
        /* Another writer of the file system takes every block the log gives back: from the
         * first ftruncate on, fallocate fails with ENOSPC. */
        atomic_bool fallocate_enospc_after_ftruncate;
        /* A file system another writer keeps full: fallocate fails with ENOSPC, and so does a
         * write that needs a block its file does not have (past what it preallocated). */
        atomic_bool disk_full;
        /* Report this many bytes free (>= 0), or the truth (< 0). */
        atomic_llong fstatvfs_avail;
        /* Slow disk: sleep this long in every fdatasync. */
        atomic_uint fdatasync_delay_usec;
        /* While set, fdatasync waits (a disk that is busy for as long as the test wants). */
        atomic_bool fdatasync_hold;
        /* A fdatasync that waited returns this errno (> 0) when let go: a disk that hung, then
         * failed. */
        atomic_int fdatasync_hold_errno;
} Faults;

extern Faults faults;
extern const AuditFileOps fault_ops;
void faults_reset(void);

/* A journald that takes no message until let go: slow_journald_send() (an AuditJournalSendFn)
 * waits in each call while held. */
void slow_journald_reset(void);
int slow_journald_send(const struct iovec *iov, int n);
/* Waits (60 s at most, then fails the test) until n calls have come in. */
void slow_journald_wait_called(unsigned n);
/* Lets every call go, those to come too. */
void slow_journald_release(void);
/* Messages it took (calls that returned). */
unsigned slow_journald_sent(void);

/* A fresh directory under /tmp; removed (recursively) with test_dir_remove(). */
char *test_dir_new(void);
void test_dir_remove(char *dir);

/* Config for tests: no journal, the fault ops. */
void test_config(AuditConfig *c, const char *dir);

/* Commit results, appended by ack_callback (userdata: Acks*). */
typedef struct Acks {
        uint64_t *seqs;
        int *errors;
        size_t n, allocated;
        bool out_of_order;
} Acks;
void ack_callback(AuditLog *a, uint64_t seq, int error, void *userdata);
void acks_done(Acks *acks);

/* Runs the loop until *n >= want (with a 60 s wall-clock limit, then fails the test). */
void run_until(struct event_base *base, const size_t *n, size_t want);

/* Every line of audit.log.<n-1> ... audit.log parsed: seqs in file order. Fails the test on
 * a line that does not parse or a partial last line. */
void read_all_seqs(const char *dir, unsigned n_files, uint64_t **ret, size_t *ret_n);

/* Appends raw bytes to <dir>/<name>. */
void append_bytes(const char *dir, const char *name, const void *data, size_t n);

/* A typical guest-request record. */
AuditRecord sample_record(void);

/* What an audit query reported (query_done_callback(), userdata: QueryResult*). */
typedef struct QueryResult {
        size_t n_done; /* callbacks so far: 1 at most */
        int error;
        json_object *records; /* owned */
        AuditQueryStats stats;
} QueryResult;
void query_done_callback(int error, json_object *records, const AuditQueryStats *stats, void *userdata);
void query_result_done(QueryResult *r);
/* Starts a query and runs the loop until it is reported (bounded). */
void query_wait(struct event_base *base, AuditLog *log, const AuditQueryFilter *q, size_t limit,
                QueryResult *ret);
/* The seq of its i-th record / how many records it has. */
uint64_t query_result_seq(const QueryResult *r, size_t i);
size_t query_result_n(const QueryResult *r);
