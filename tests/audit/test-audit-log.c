/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The audit log end to end on a real directory: sequence continuity across rotation and
 * reopen, group commit, torn-tail repair, fail-closed behaviour under injected faults,
 * limits, queries, listeners and counters. Runs in: tests.
 */

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "audit-budget.h"
#include "audit-defaults.h"
#include "audit-test-util.h"
#include "event-util.h"
#include "harness.h"
#include "json-util.h"
#include "log-capture.h"

/* json-c's json_object_new_object(), interposed (exported in spite of -fvisibility=hidden; the
 * real one is the next definition): the one numbered fail_new_object_at since new_object_calls
 * was last set to 0 fails, as out of memory (0: none). Reading a record makes one. */
static atomic_uint new_object_calls, fail_new_object_at;

_public_ json_object *json_object_new_object(void);
json_object *json_object_new_object(void) {
        static json_object *(*real)(void);
        unsigned at = atomic_load(&fail_new_object_at);

        if (!real)
                real = dlsym(RTLD_NEXT, "json_object_new_object");
        if (!real)
                abort();
        if (atomic_fetch_add(&new_object_calls, 1) + 1 == at && at > 0)
                return NULL;
        return real();
}

typedef struct Fixture {
        char *dir;
        struct event_base *base;
        AuditConfig config;
        AuditLog *log;
        Acks acks;
} Fixture;

static void fixture_init(Fixture *f) {
        *f = (Fixture){};
        f->dir = test_dir_new();
        f->base = event_base_new();
        ASSERT_NOT_NULL(f->base);
        test_config(&f->config, f->dir);
}

static void fixture_open(Fixture *f) {
        ASSERT_OK(audit_log_open(f->base, &f->config, &f->log));
}

static void fixture_close(Fixture *f) {
        f->log = audit_log_free(f->log);
}

static void fixture_done(Fixture *f) {
        fixture_close(f);
        event_base_free(f->base);
        acks_done(&f->acks);
        test_dir_remove(f->dir);
}

static uint64_t commit_one(Fixture *f, const AuditRecord *r) {
        AuditReservation *res;
        uint64_t seq;

        ASSERT_OK(audit_log_reserve(f->log, &res));
        ASSERT_OK(audit_log_commit(res, r, ack_callback, &f->acks, &seq));
        return seq;
}

static void commit_n(Fixture *f, size_t n) {
        AuditRecord r = sample_record();

        for (size_t i = 0; i < n; i++)
                (void) commit_one(f, &r);
}

/* Reserves n first, then commits them: a failure of the first write cannot refuse the
 * reservations of the later ones. */
static void reserve_then_commit(Fixture *f, size_t n) {
        AuditReservation *res[16];
        AuditRecord r = sample_record();

        assert(n <= ELEMENTSOF(res));
        for (size_t i = 0; i < n; i++)
                ASSERT_OK(audit_log_reserve(f->log, &res[i]));
        for (size_t i = 0; i < n; i++)
                ASSERT_OK(audit_log_commit(res[i], &r, ack_callback, &f->acks, NULL));
}

static void wait_acks(Fixture *f, size_t n) {
        run_until(f->base, &f->acks.n, n);
}

/* A closed log of n records: to query its file directly, or to damage it before the next open. */
static void fixture_with_records(Fixture *f, size_t n) {
        fixture_init(f);
        fixture_open(f);
        commit_n(f, n);
        wait_acks(f, n);
        fixture_close(f);
}

/* One round of the loop, at most 10 ms. */
static void run_once(Fixture *f) {
        struct timeval tv = { 0, 10000 };

        event_base_loopexit(f->base, &tv);
        event_base_loop(f->base, EVLOOP_ONCE);
}

/* audit_log_reopen_full() is carried out by the sync thread: runs the loop until the log is
 * healthy again (a failed one refuses reservations until then). */
static void wait_healthy(Fixture *f) {
        AuditLogStatus st;

        for (unsigned i = 0;; i++) {
                ASSERT_OK(audit_log_get_status(f->log, &st));
                if (st.failed == 0)
                        return;
                if (i > 6000)
                        TEST_FAIL("the log did not become healthy: %s", strerror(-st.failed));
                run_once(f);
        }
}

/* Runs the loop until the pending reopen finished. */
static void wait_reopened(Fixture *f) {
        AuditLogStatus st;

        for (unsigned i = 0;; i++) {
                ASSERT_OK(audit_log_get_status(f->log, &st));
                if (!st.reopen_pending)
                        return;
                if (i > 6000)
                        TEST_FAIL("the reopen did not finish");
                run_once(f);
        }
}

/* All acks so far succeeded, in order, with seqs first..first+n-1. */
static void assert_acks_ok(const Fixture *f, uint64_t first) {
        ASSERT_FALSE(f->acks.out_of_order);
        for (size_t i = 0; i < f->acks.n; i++) {
                ASSERT_EQ(f->acks.errors[i], 0);
                ASSERT_EQ(f->acks.seqs[i], first + i);
        }
}

/* The files hold exactly seqs first..last, in order. */
static void assert_files(const Fixture *f, uint64_t first, uint64_t last) {
        _cleanup_free_ uint64_t *seqs = NULL;
        size_t n;

        read_all_seqs(f->dir, f->config.n_files, &seqs, &n);
        ASSERT_EQ(n, last - first + 1);
        for (size_t i = 0; i < n; i++)
                ASSERT_EQ(seqs[i], first + i);
}

/* Opens the log of f, whose resume cut repaired bytes of torn tail and continues at next_seq,
 * and writes n more records after those: they follow on in the files, acknowledged in order. */
static void expect_resumed(Fixture *f, uint64_t repaired, uint64_t next_seq, size_t n) {
        AuditLogStatus st;

        fixture_open(f);
        ASSERT_OK(audit_log_get_status(f->log, &st));
        ASSERT_EQ(st.repaired_bytes, repaired);
        ASSERT_EQ(st.next_seq, next_seq);
        commit_n(f, n);
        wait_acks(f, next_seq - 1 + n);
        assert_acks_ok(f, 1);
        assert_files(f, 1, next_seq - 1 + n);
}

static bool file_exists(const Fixture *f, const char *name) {
        char path[4096];

        snprintf(path, sizeof(path), "%s/%s", f->dir, name);
        return access(path, F_OK) == 0;
}

static uint64_t file_size(const Fixture *f, const char *name) {
        char path[4096];
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s", f->dir, name);
        if (stat(path, &st) < 0)
                return UINT64_MAX;
        return (uint64_t) st.st_size;
}

TEST(sequence_no_gaps_in_order) {
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        for (unsigned round = 0; round < 20; round++) {
                commit_n(&f, 10);
                wait_acks(&f, (round + 1) * 10);
        }
        ASSERT_EQ(f.acks.n, 200);
        assert_acks_ok(&f, 1);
        assert_files(&f, 1, 200);
        fixture_done(&f);
}

TEST(rotation_keeps_sequence) {
        Fixture f;

        fixture_init(&f);
        f.config.max_file_size = AUDIT_RECORD_MAX; /* ~9 records per file */
        f.config.n_files = 100;
        fixture_open(&f);
        commit_n(&f, 150);
        wait_acks(&f, 150);
        commit_n(&f, 150);
        wait_acks(&f, 300);
        assert_acks_ok(&f, 1);
        assert_files(&f, 1, 300);
        ASSERT_TRUE(file_exists(&f, "audit.log.20"));
        for (unsigned i = 0; i < f.config.n_files; i++) {
                char name[64];
                audit_file_name(i, name);
                if (file_exists(&f, name))
                        ASSERT_LE(file_size(&f, name), f.config.max_file_size);
        }
        fixture_done(&f);
}

/* A batch larger than the writer's iovec array (256 records) is written in parts; each part
 * counts once towards the file's size, so a file rotates when it is full, not early (before,
 * the bytes written were counted again as queued: files of ~344 where 600 records fit). */
TEST(rotation_fills_files_in_large_batches) {
        uint64_t len;
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        commit_n(&f, 1);
        wait_acks(&f, 1);
        len = file_size(&f, "audit.log");
        fixture_close(&f);

        f.config.max_file_size = 600 * len;
        f.config.n_files = 10;
        fixture_open(&f);
        commit_n(&f, 2000); /* one loop round: one batch */
        wait_acks(&f, 2001);
        assert_acks_ok(&f, 1);
        assert_files(&f, 1, 2001);
        ASSERT_TRUE(file_exists(&f, "audit.log.2"));
        for (unsigned i = 1; i < f.config.n_files; i++) {
                char name[64];

                audit_file_name(i, name);
                if (!file_exists(&f, name))
                        continue;
                /* Full: another record (a few digits longer than the first) did not fit. */
                ASSERT_LE(file_size(&f, name), f.config.max_file_size);
                ASSERT_TRUE(file_size(&f, name) + 2 * len > f.config.max_file_size);
        }
        fixture_done(&f);
}

/* A file takes records up to MaxFileSize= exactly, never a byte more: n records of a file that
 * size stay together, the next starts the next file; one byte less and the n-th does. */
TEST(rotation_at_the_exact_size) {
        uint64_t sizes[64], full;
        size_t n = 0;
        Fixture f;

        /* The size of the first n records, the least past the smallest MaxFileSize=. */
        fixture_init(&f);
        fixture_open(&f);
        do {
                ASSERT_TRUE(n < ELEMENTSOF(sizes));
                commit_n(&f, 1);
                wait_acks(&f, n + 1);
                sizes[n++] = file_size(&f, "audit.log");
        } while (sizes[n - 1] <= AUDIT_RECORD_MAX);
        full = sizes[n - 1];
        fixture_done(&f);

        fixture_init(&f);
        f.config.max_file_size = full;
        f.config.n_files = 10;
        fixture_open(&f);
        commit_n(&f, n);
        wait_acks(&f, n);
        ASSERT_FALSE(file_exists(&f, "audit.log.1"));
        ASSERT_EQ(file_size(&f, "audit.log"), full);
        commit_n(&f, 1);
        wait_acks(&f, n + 1);
        ASSERT_EQ(file_size(&f, "audit.log.1"), full);
        assert_acks_ok(&f, 1);
        assert_files(&f, 1, n + 1);
        fixture_done(&f);

        fixture_init(&f);
        f.config.max_file_size = full - 1;
        f.config.n_files = 10;
        fixture_open(&f);
        commit_n(&f, n);
        wait_acks(&f, n);
        ASSERT_EQ(file_size(&f, "audit.log.1"), sizes[n - 2]);
        ASSERT_EQ(file_size(&f, "audit.log"), full - sizes[n - 2]);
        assert_acks_ok(&f, 1);
        assert_files(&f, 1, n);
        fixture_done(&f);
}

/* Bytes of audit.log that have blocks (preallocated or written). */
static uint64_t file_allocated(const Fixture *f) {
        char path[4096];
        struct stat st;

        snprintf(path, sizeof(path), "%s/audit.log", f->dir);
        ASSERT_OK(stat(path, &st));
        return (uint64_t) st.st_blocks * 512u;
}

/* Reservations past the preallocated tail (the file system's free space let them through) have
 * the thread preallocate room for all of them, even while more than half of the tail is left:
 * a disk that fills after they were granted fails none of their records. */
#define BURST_RECORDS 24U

TEST(burst_past_the_tail_gets_its_room) {
        AuditReservation *res[BURST_RECORDS];
        AuditRecord r = sample_record();
        Fixture f;

        fixture_init(&f);
        f.config.prealloc_size = AUDIT_RECORD_MAX; /* the smallest tail: a burst outgrows it */
        f.config.max_file_size = 1024 * AUDIT_RECORD_MAX;
        fixture_open(&f);
        commit_n(&f, 1);
        wait_acks(&f, 1);
        if (file_allocated(&f) < AUDIT_RECORD_MAX)
                SKIP("no fallocate() in %s", f.dir);

        for (size_t i = 0; i < BURST_RECORDS; i++)
                ASSERT_OK(audit_log_reserve(f.log, &res[i]));
        /* Room for the reserved, each at the maximum size (bounded: without it the commits
         * below fail). */
        for (unsigned i = 0; i < 2000 && file_allocated(&f) < BURST_RECORDS * AUDIT_RECORD_MAX; i++)
                usleep(1000);

        /* Another writer takes every free block: the records go where their room was taken. */
        atomic_store(&faults.disk_full, true);
        for (size_t i = 0; i < BURST_RECORDS; i++)
                ASSERT_OK(audit_log_commit(res[i], &r, ack_callback, &f.acks, NULL));
        wait_acks(&f, 1 + BURST_RECORDS);
        assert_acks_ok(&f, 1);
        assert_files(&f, 1, 1 + BURST_RECORDS);
        fixture_done(&f);
}

TEST(rotation_drops_oldest) {
        _cleanup_free_ uint64_t *seqs = NULL;
        Fixture f;
        size_t n;

        fixture_init(&f);
        f.config.max_file_size = AUDIT_RECORD_MAX;
        f.config.n_files = 3;
        fixture_open(&f);
        commit_n(&f, 100);
        wait_acks(&f, 100);
        assert_acks_ok(&f, 1);
        ASSERT_TRUE(file_exists(&f, "audit.log.2"));
        ASSERT_FALSE(file_exists(&f, "audit.log.3"));
        read_all_seqs(f.dir, f.config.n_files, &seqs, &n);
        ASSERT_TRUE(n > 0 && n < 100);
        for (size_t i = 0; i < n; i++)
                ASSERT_EQ(seqs[i], 100 - n + 1 + i);
        fixture_done(&f);
}

TEST(reopen_resumes_sequence) {
        AuditLogStatus st;
        Fixture f;

        fixture_init(&f);
        f.config.max_file_size = AUDIT_RECORD_MAX;
        f.config.n_files = 50;
        fixture_open(&f);
        commit_n(&f, 25);
        wait_acks(&f, 25);
        fixture_close(&f);

        fixture_open(&f);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.next_seq, 26);
        ASSERT_EQ(st.last_committed_seq, 25);
        ASSERT_EQ(st.repaired_bytes, 0);
        commit_n(&f, 25);
        wait_acks(&f, 50);
        assert_acks_ok(&f, 1);

        /* audit_log_reopen_full() on a healthy log continues too. */
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        commit_n(&f, 5);
        wait_acks(&f, 55);
        assert_acks_ok(&f, 1);
        assert_files(&f, 1, 55);
        fixture_done(&f);
}

/* ---- reopen with a stuck disk ------------------------------------------------------------ */

/* Makes the disk stick: n records are committed and the sync thread is inside their
 * fdatasync, which does not return until faults.fdatasync_hold is cleared. */
static void stick_disk(Fixture *f, size_t n) {
        unsigned before = atomic_load(&faults.n_fdatasync);

        atomic_store(&faults.fdatasync_hold, true);
        commit_n(f, n);
        for (unsigned i = 0; atomic_load(&faults.n_fdatasync) == before; i++) {
                if (i > 6000)
                        TEST_FAIL("the sync thread did not reach fdatasync");
                run_once(f);
        }
}

/* Lets the disk go after 2 s, or when told to stop: a loop thread that waits for the disk
 * shows up as a failed assertion, not as a hang. */
static atomic_bool releaser_stop;

static void *releaser(void *userdata) {
        for (unsigned i = 0; i < 200 && !atomic_load(&releaser_stop); i++)
                usleep(10000);
        atomic_store(&faults.fdatasync_hold, false);
        return NULL;
}

static void releaser_start(pthread_t *ret) {
        atomic_store(&releaser_stop, false);
        ASSERT_OK(-pthread_create(ret, NULL, releaser, NULL));
}

static void releaser_join(pthread_t t) {
        atomic_store(&releaser_stop, true);
        ASSERT_OK(-pthread_join(t, NULL));
}

static void on_timer(evutil_socket_t fd, short what, void *userdata) {
        (*(size_t *) userdata)++;
}

/* A reload (audit_log_reopen_full()) while the disk under the log is stuck in fdatasync: the loop
 * thread does not wait for it. Meanwhile timers fire and records are taken; once the disk
 * comes back, the records before the reopen are reported, then those after it, numbered on
 * without a gap, in the directory now at the path (an administrator's new file system). */
TEST(reopen_does_not_wait_for_a_stuck_disk) {
        _cleanup_free_ uint64_t *old_seqs = NULL;
        char *moved = NULL;
        struct timeval tv = { 0, 20000 };
        struct event *timer;
        size_t n_fired = 0, n_old;
        pthread_t t;
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        commit_n(&f, 3);
        wait_acks(&f, 3);

        stick_disk(&f, 2); /* seqs 4 and 5 */
        releaser_start(&t);
        ASSERT_OK(asprintf(&moved, "%s.old", f.dir));
        ASSERT_OK(rename(f.dir, moved));
        ASSERT_OK(mkdir(f.dir, 0750));

        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        /* Returned with the disk still stuck ... */
        ASSERT_TRUE(atomic_load(&faults.fdatasync_hold));
        /* ... and the loop goes on: a timer fires, records are taken. */
        timer = evtimer_new(f.base, on_timer, &n_fired);
        ASSERT_NOT_NULL(timer);
        ASSERT_OK(evtimer_add(timer, &tv));
        run_until(f.base, &n_fired, 1);
        commit_n(&f, 2);
        run_once(&f);
        ASSERT_TRUE(atomic_load(&faults.fdatasync_hold));
        ASSERT_EQ(f.acks.n, 3U);

        atomic_store(&faults.fdatasync_hold, false);
        wait_acks(&f, 7);
        releaser_join(t);
        assert_acks_ok(&f, 1);
        /* The reopen took effect: what was before it in the old directory, the rest in the
         * new one. */
        read_all_seqs(moved, f.config.n_files, &old_seqs, &n_old);
        ASSERT_EQ(n_old, 5U);
        ASSERT_EQ(old_seqs[4], 5U);
        assert_files(&f, 6, 7);

        event_free(timer);
        fixture_done(&f);
        test_dir_remove(moved);
}

/* Records queued before a reopen fail on the old files (the stuck fdatasync ends in EIO); that
 * does not fail the files reopened after them, and the sequence goes on after the last
 * record acknowledged. */
TEST(reopen_old_failures_do_not_fail_the_new_files) {
        AuditLogStatus st;
        pthread_t t;
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        commit_n(&f, 2);
        wait_acks(&f, 2);

        atomic_store(&faults.fdatasync_hold_errno, EIO);
        stick_disk(&f, 2); /* seqs 3 and 4, to fail */
        releaser_start(&t);
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        ASSERT_TRUE(atomic_load(&faults.fdatasync_hold));
        commit_n(&f, 1);

        atomic_store(&faults.fdatasync_hold, false);
        wait_acks(&f, 5);
        releaser_join(t);
        ASSERT_EQ(f.acks.errors[2], -EIO);
        ASSERT_EQ(f.acks.errors[3], -EIO);
        ASSERT_EQ(f.acks.errors[4], 0);
        ASSERT_EQ(f.acks.seqs[4], 3U);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.failed, 0);
        assert_files(&f, 1, 3);
        fixture_done(&f);
}

/* Reloads while a reopen is pending: one more reopen after it, not one each. */
TEST(reopen_requests_while_pending_coalesce) {
        unsigned fsyncs;
        pthread_t t;
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        commit_n(&f, 1);
        wait_acks(&f, 1);

        stick_disk(&f, 1);
        releaser_start(&t);
        /* Each reopen syncs the directory once (audit.log may be new), nothing else here. */
        fsyncs = atomic_load(&faults.n_fsync);
        for (unsigned i = 0; i < 3; i++)
                ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        ASSERT_TRUE(atomic_load(&faults.fdatasync_hold));
        commit_n(&f, 2);

        atomic_store(&faults.fdatasync_hold, false);
        wait_acks(&f, 4);
        releaser_join(t);
        assert_acks_ok(&f, 1);
        assert_files(&f, 1, 4);
        ASSERT_EQ(atomic_load(&faults.n_fsync) - fsyncs, 2U);
        fixture_done(&f);
}

/* Freeing the log while a reopen waits for a stuck disk: done once the disk comes back, as
 * before, with every record written and reported. */
TEST(free_while_reopen_pending) {
        pthread_t t;
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        commit_n(&f, 2);
        wait_acks(&f, 2);

        stick_disk(&f, 1);
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        commit_n(&f, 2);
        releaser_start(&t); /* the disk comes back while the log is being freed */
        fixture_close(&f);
        releaser_join(t);
        ASSERT_EQ(f.acks.n, 5U);
        assert_acks_ok(&f, 1);
        assert_files(&f, 1, 5);
        fixture_done(&f);
}

TEST(free_reports_everything_queued) {
        Fixture f;

        fixture_init(&f);
        atomic_store(&faults.fdatasync_delay_usec, 20000);
        fixture_open(&f);
        commit_n(&f, 30);
        ASSERT_EQ(f.acks.n, 0);
        fixture_close(&f);
        ASSERT_EQ(f.acks.n, 30);
        assert_acks_ok(&f, 1);
        assert_files(&f, 1, 30);
        fixture_done(&f);
}

TEST(group_commit_groups) {
        AuditLogStatus st;
        unsigned syncs;
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        syncs = atomic_load(&faults.n_fdatasync);
        /* 1000 records from one loop iteration, while the disk is busy (so that the result
         * does not depend on how fast this machine serializes records compared to its
         * disk): whatever the thread took first syncs alone, the rest must share. */
        atomic_store(&faults.fdatasync_hold, true);
        commit_n(&f, 1000);
        atomic_store(&faults.fdatasync_hold, false);
        wait_acks(&f, 1000);
        assert_acks_ok(&f, 1);
        syncs = atomic_load(&faults.n_fdatasync) - syncs;
        fprintf(stderr, "group commit: 1000 records, %u fdatasync\n", syncs);
        ASSERT_GE(syncs, 1);
        ASSERT_LE(syncs, 10);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.sync.n_records, 1000);
        ASSERT_EQ(st.sync.n_syncs, syncs);
        assert_files(&f, 1, 1000);
        fixture_done(&f);
}

TEST(one_round_shares_one_sync) {
        unsigned syncs;
        Fixture f;

        /* Records committed in one round of the loop go to the thread together when the round
         * ends, however long it took: the first does not start a sync of its own while the
         * rest wait a whole sync behind it. */
        fixture_init(&f);
        fixture_open(&f);
        syncs = atomic_load(&faults.n_fdatasync);
        commit_n(&f, 1);
        usleep(20000); /* long enough for the thread to have synced it alone */
        commit_n(&f, 9);
        ASSERT_EQ(atomic_load(&faults.n_fdatasync), syncs);
        wait_acks(&f, 10);
        assert_acks_ok(&f, 1);
        ASSERT_EQ(atomic_load(&faults.n_fdatasync) - syncs, 1u);
        assert_files(&f, 1, 10);
        fixture_done(&f);
}

TEST(group_commit_groups_on_slow_disk) {
        unsigned syncs;
        Fixture f;

        fixture_init(&f);
        atomic_store(&faults.fdatasync_delay_usec, 5000);
        fixture_open(&f);
        syncs = atomic_load(&faults.n_fdatasync);
        commit_n(&f, 1000);
        wait_acks(&f, 1000);
        assert_acks_ok(&f, 1);
        syncs = atomic_load(&faults.n_fdatasync) - syncs;
        fprintf(stderr, "group commit, 5 ms disk: 1000 records, %u fdatasync\n", syncs);
        /* Far fewer syncs than records even though the thread runs during the burst. */
        ASSERT_LE(syncs, 100);
        fixture_done(&f);
}

TEST(pipeline_accumulates_while_syncing) {
        unsigned syncs;
        Fixture f;

        /* Records arriving one per loop iteration while a slow sync runs still share syncs:
         * batch N+1 accumulates during batch N's fdatasync. */
        fixture_init(&f);
        atomic_store(&faults.fdatasync_delay_usec, 20000);
        fixture_open(&f);
        syncs = atomic_load(&faults.n_fdatasync);
        for (unsigned i = 0; i < 200; i++) {
                commit_n(&f, 1);
                event_base_loop(f.base, EVLOOP_NONBLOCK);
                usleep(500);
        }
        wait_acks(&f, 200);
        assert_acks_ok(&f, 1);
        syncs = atomic_load(&faults.n_fdatasync) - syncs;
        fprintf(stderr, "pipeline: 200 records over ~100 ms, %u fdatasync\n", syncs);
        ASSERT_LE(syncs, 40);
        fixture_done(&f);
}

TEST(per_record_mode_syncs_each) {
        unsigned syncs;
        Fixture f;

        fixture_init(&f);
        f.config.sync_mode = AUDIT_SYNC_PER_RECORD;
        fixture_open(&f);
        syncs = atomic_load(&faults.n_fdatasync);
        commit_n(&f, 300);
        wait_acks(&f, 300);
        assert_acks_ok(&f, 1);
        ASSERT_EQ(atomic_load(&faults.n_fdatasync) - syncs, 300);
        assert_files(&f, 1, 300);
        fixture_done(&f);
}

static void check_first_record_repaired(Fixture *f, uint64_t seq, uint64_t repaired) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_free_ char *data = malloc(1 << 20);
        char path[4096];
        ssize_t n;
        int fd;
        bool seen = false;

        ASSERT_OK(json_tokener_new_strict(1, &tok));
        snprintf(path, sizeof(path), "%s/audit.log", f->dir);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        ASSERT_GE(fd, 0);
        n = read(fd, data, 1 << 20);
        close(fd);
        ASSERT_GE(n, 1);
        for (char *p = data; p < data + n;) {
                char *nl = memchr(p, '\n', (size_t) (data + n - p));
                _cleanup_json_ json_object *o = NULL;
                json_object *v;
                uint64_t s;

                ASSERT_NOT_NULL(nl);
                ASSERT_OK(audit_line_parse(tok, p, (size_t) (nl - p), &o, &s));
                if (s == seq) {
                        ASSERT_TRUE(json_object_object_get_ex(o, "repairedBytes", &v));
                        ASSERT_EQ(json_object_get_int64(v), (int64_t) repaired);
                        seen = true;
                } else
                        ASSERT_FALSE(json_object_object_get_ex(o, "repairedBytes", &v));
                p = nl + 1;
        }
        ASSERT_TRUE(seen);
}

TEST(torn_tail_partial_line) {
        static const char torn[] = "{\"seq\":6,\"time\":\"20";
        Fixture f;

        fixture_with_records(&f, 5);
        append_bytes(f.dir, "audit.log", torn, strlen(torn));

        expect_resumed(&f, strlen(torn), 6, 5);
        check_first_record_repaired(&f, 6, strlen(torn));
        fixture_done(&f);
}

/* Lines after the last record that hold NULs are torn: a record holds none. */
TEST(torn_tail_unparsable_lines) {
        static const char torn[] = "{\"seq\":6,\"ti\x00\x00me\":}\n\x00\x00\x00garbage\n";
        Fixture f;

        fixture_with_records(&f, 5);
        append_bytes(f.dir, "audit.log", torn, sizeof(torn) - 1);

        expect_resumed(&f, sizeof(torn) - 1, 6, 1);
        fixture_done(&f);
}

/* A crash can leave a batch's blocks as zeros inside the file's size, longer than the window
 * resume scans: they are torn, with the partial record before them. */
TEST(torn_tail_long_zero_run) {
        static const char torn[] = "{\"seq\":6,\"ti";
        const size_t zeros = 3 * AUDIT_TAIL_WINDOW + 123;
        _cleanup_free_ char *nuls = calloc(1, zeros);
        Fixture f;

        ASSERT_NOT_NULL(nuls);
        fixture_with_records(&f, 5);
        append_bytes(f.dir, "audit.log", torn, strlen(torn));
        append_bytes(f.dir, "audit.log", nuls, zeros);

        expect_resumed(&f, strlen(torn) + zeros, 6, 2);
        fixture_done(&f);
}

/* The zeros a crash leaves need not end the file: blocks of the same batch after them may have
 * reached the disk, a line end or part of a line. Resume steps back across a zero run longer
 * than its window and cuts from the line it began in (it refused to start). */
TEST(torn_tail_zero_run_before_later_blocks) {
        static const char torn[] = "{\"seq\":6,\"ti";
        static const char *const after[] = { "me\":\"x\"}\n", "{\"seq\":9,\"ti" };
        const size_t zeros = 69632;
        _cleanup_free_ char *nuls = calloc(1, zeros);

        ASSERT_NOT_NULL(nuls);
        for (size_t k = 0; k < ELEMENTSOF(after); k++) {
                Fixture f;

                fixture_with_records(&f, 5);
                append_bytes(f.dir, "audit.log", torn, strlen(torn));
                append_bytes(f.dir, "audit.log", nuls, zeros);
                append_bytes(f.dir, "audit.log", after[k], strlen(after[k]));

                expect_resumed(&f, strlen(torn) + zeros + strlen(after[k]), 6, 2);
                fixture_done(&f);
        }
}

/* A record after the zeros (a later block of the batch that reached the disk) is kept, as
 * queries return it: resume cuts nothing a query answers. Zeros before the last record are
 * damage queries skip. */
TEST(torn_tail_keeps_a_record_after_zeros) {
        static const char torn[] = "{\"seq\":6,\"ti", after[] = "me\":1}\n{\"seq\":9}\n";
        const size_t zeros = 69632;
        _cleanup_free_ char *nuls = calloc(1, zeros);
        AuditLogStatus st;
        Fixture f;

        ASSERT_NOT_NULL(nuls);
        fixture_with_records(&f, 5);
        append_bytes(f.dir, "audit.log", torn, strlen(torn));
        append_bytes(f.dir, "audit.log", nuls, zeros);
        append_bytes(f.dir, "audit.log", after, strlen(after));

        fixture_open(&f);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.repaired_bytes, 0);
        ASSERT_EQ(st.next_seq, 10);
        fixture_done(&f);
}

/* A complete line without a NUL is not what a crash leaves (a record of another tsmd version
 * may look so): after the last record, after zeros, or in a file with none, it is refused, not
 * cut. */
TEST(resume_refuses_a_complete_line_that_is_no_record) {
        static const struct {
                size_t records, zeros;
                const char *before, *after;
        } cases[] = {
                { 5, 0, "{\"seq\":6,\"time\":}\n", "" },
                { 5, 0, "{\"seq\":6,\"time\":}\n{\"se", "" },
                { 5, 69632, "{\"seq\":6,\"ti", "me\":1}\nnot a record\n{\"se" },
                { 0, 0, "not a record\n", "" },
        };

        for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
                _cleanup_free_ char *nuls = calloc(1, cases[k].zeros + 1);
                struct stat before, after;
                char path[PATH_MAX];
                AuditLog *a = NULL;
                Fixture f;

                ASSERT_NOT_NULL(nuls);
                fixture_init(&f);
                if (cases[k].records > 0) {
                        fixture_open(&f);
                        commit_n(&f, cases[k].records);
                        wait_acks(&f, cases[k].records);
                        fixture_close(&f);
                }
                append_bytes(f.dir, "audit.log", cases[k].before, strlen(cases[k].before));
                append_bytes(f.dir, "audit.log", nuls, cases[k].zeros);
                append_bytes(f.dir, "audit.log", cases[k].after, strlen(cases[k].after));
                snprintf(path, sizeof(path), "%s/audit.log", f.dir);
                ASSERT_OK(stat(path, &before));

                ASSERT_ERRNO(audit_log_open(f.base, &f.config, &a), EBADMSG);
                ASSERT_NULL(a);
                ASSERT_OK(stat(path, &after));
                ASSERT_EQ(after.st_size, before.st_size);
                fixture_done(&f);
        }
}

/* A record resume cannot read for lack of memory fails the open -ENOMEM, and cuts nothing: not
 * an unparsable line and a sequence gap (one before the last), nor a complete line after the
 * last record that is no record (the last), which would refuse a good log as damaged. */
TEST(resume_out_of_memory_is_no_damage) {
        for (unsigned k = 1; k <= 5; k++) {
                struct stat before, after;
                char path[PATH_MAX];
                AuditLogStatus st;
                AuditLog *a = NULL;
                Fixture f;

                fixture_with_records(&f, 5);
                snprintf(path, sizeof(path), "%s/audit.log", f.dir);
                ASSERT_OK(stat(path, &before));

                atomic_store(&new_object_calls, 0);
                atomic_store(&fail_new_object_at, k); /* record k's */
                ASSERT_ERRNO(audit_log_open(f.base, &f.config, &a), ENOMEM);
                atomic_store(&fail_new_object_at, 0);
                ASSERT_NULL(a);
                ASSERT_OK(stat(path, &after));
                ASSERT_EQ(after.st_size, before.st_size);

                expect_resumed(&f, 0, 6, 1);
                ASSERT_OK(audit_log_get_status(f.log, &st));
                ASSERT_EQ(st.n_anomalies, 0u);
                fixture_done(&f);
        }
}

TEST(torn_tail_whole_file_garbage) {
        Fixture f;

        fixture_init(&f);
        append_bytes(f.dir, "audit.log", "{\"se", 4);
        expect_resumed(&f, 4, 1, 2);
        fixture_done(&f);
}

/* Past a torn write, a whole window of lines that are no records (bytes a torn write does not
 * leave: not zeros) is damage resume cannot judge: the log is not opened, and not cut, rather
 * than lose records it cannot see. Likewise a log that is not a regular file. */
TEST(resume_refuses_a_window_of_garbage_and_a_log_not_a_file) {
        const size_t n = AUDIT_TAIL_WINDOW + 100;
        _cleanup_free_ char *garbage = malloc(n);
        struct stat before, after;
        char path[PATH_MAX];
        AuditLog *a = NULL;
        Fixture f;

        ASSERT_NOT_NULL(garbage);
        for (size_t i = 0; i < n; i++)
                garbage[i] = i % 64 == 63 ? '\n' : 'x';
        fixture_with_records(&f, 5);
        append_bytes(f.dir, "audit.log", garbage, n);
        snprintf(path, sizeof(path), "%s/audit.log", f.dir);
        ASSERT_OK(stat(path, &before));

        ASSERT_ERRNO(audit_log_open(f.base, &f.config, &a), EBADMSG);
        ASSERT_NULL(a);
        ASSERT_OK(stat(path, &after));
        ASSERT_EQ(after.st_size, before.st_size);

        ASSERT_OK(unlink(path));
        ASSERT_OK(mkfifo(path, 0600));
        ASSERT_ERRNO(audit_log_open(f.base, &f.config, &a), EBADFD);
        ASSERT_NULL(a);
        ASSERT_OK(unlink(path));
        fixture_done(&f);
}

TEST(crash_mid_rotation_states) {
        AuditLogStatus st;
        Fixture f;

        fixture_init(&f);
        f.config.n_files = 10;
        f.config.max_file_size = AUDIT_RECORD_MAX;
        fixture_open(&f);
        commit_n(&f, 5);
        wait_acks(&f, 5);
        fixture_close(&f);

        /* Crash after "audit.log → audit.log.1", before the new audit.log was created. */
        {
                char a[4096], b[4096];
                snprintf(a, sizeof(a), "%s/audit.log", f.dir);
                snprintf(b, sizeof(b), "%s/audit.log.1", f.dir);
                ASSERT_EQ(rename(a, b), 0);
        }
        fixture_open(&f);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.next_seq, 6);
        ASSERT_TRUE(file_exists(&f, "audit.log"));
        fixture_close(&f);

        /* Crash after creating the new, empty audit.log: audit.log.1 has the last record, with
         * a torn tail. */
        append_bytes(f.dir, "audit.log.1", "{\"seq\":6", 8);
        fixture_open(&f);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.next_seq, 6);
        ASSERT_EQ(st.repaired_bytes, 8);
        commit_n(&f, 40);
        wait_acks(&f, 45);
        assert_acks_ok(&f, 1);
        assert_files(&f, 1, 45);
        fixture_close(&f);

        /* Crash between two renames: a hole in the numbering. */
        {
                char a[4096];
                snprintf(a, sizeof(a), "%s/audit.log.2", f.dir);
                ASSERT_TRUE(file_exists(&f, "audit.log.3"));
                ASSERT_EQ(unlink(a), 0);
        }
        fixture_open(&f);
        commit_n(&f, 20);
        wait_acks(&f, 65);
        assert_acks_ok(&f, 1);
        fixture_close(&f);
        {
                /* The hole moved up but everything after it is contiguous and complete. */
                _cleanup_free_ uint64_t *seqs = NULL;
                size_t n, gaps = 0;

                read_all_seqs(f.dir, f.config.n_files, &seqs, &n);
                ASSERT_EQ(seqs[n - 1], 65);
                for (size_t i = 1; i < n; i++) {
                        ASSERT_TRUE(seqs[i] > seqs[i - 1]);
                        gaps += seqs[i] != seqs[i - 1] + 1;
                }
                ASSERT_LE(gaps, 1);
        }
        fixture_done(&f);
}

TEST(sequence_gap_detected) {
        static const char lines[] = "{\"seq\":1}\n{\"seq\":2}\n{\"seq\":5}\n{\"seq\":4}\n";
        AuditLogStatus st;
        Fixture f;

        fixture_init(&f);
        append_bytes(f.dir, "audit.log", lines, strlen(lines));
        fixture_open(&f);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.n_anomalies, 2); /* the gap 2→5 and the regression 5→4 */
        ASSERT_EQ(st.next_seq, 6); /* after the highest: 5 is written once */
        ASSERT_EQ(st.repaired_bytes, 0);
        fixture_done(&f);
}

/* An older file may hold higher seqs than the newest one (a reload moved the log, a restart
 * finds the old directory again): resume continues after the highest of every file's tail. */
TEST(resume_continues_after_the_highest_seq_of_every_file) {
        static const char older[] = "{\"seq\":10}\n{\"seq\":11}\n";
        static const char newer[] = "{\"seq\":1}\n{\"seq\":2}\n";
        AuditLogStatus st;
        Fixture f;

        fixture_init(&f);
        append_bytes(f.dir, "audit.log.2", older, strlen(older));
        append_bytes(f.dir, "audit.log", newer, strlen(newer));
        fixture_open(&f);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.next_seq, 12);
        ASSERT_EQ(st.last_committed_seq, 11);
        fixture_done(&f);
}

/* What resume trusts is durable: it syncs the files it reads (a predecessor killed in its
 * fdatasync, or one that crashed, may have left records in the page cache only), and does not
 * open the log when that fails. */
TEST(resume_syncs_what_it_trusts) {
        static const char unsynced[] = "{\"seq\":6}\n";
        AuditLog *a = NULL;
        AuditLogStatus st;
        unsigned syncs;
        Fixture f;

        fixture_with_records(&f, 5);
        append_bytes(f.dir, "audit.log", unsynced, strlen(unsynced));

        atomic_store(&faults.fdatasync_errno, EIO);
        ASSERT_ERRNO(audit_log_open(f.base, &f.config, &a), EIO);
        ASSERT_NULL(a);

        atomic_store(&faults.fdatasync_errno, 0);
        syncs = atomic_load(&faults.n_fdatasync);
        fixture_open(&f);
        ASSERT_GE(atomic_load(&faults.n_fdatasync) - syncs, 1);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.last_committed_seq, 6);
        ASSERT_EQ(st.next_seq, 7);

        /* A reopen resumes the same way. */
        atomic_store(&faults.fdatasync_errno, EIO);
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        wait_reopened(&f);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.failed, -EIO);
        fixture_done(&f);
}

/* A failed write's bytes may stay in the page cache (clean, their error reported once) and never
 * reach the disk: a reopen must not resume from them, or the records appended after them sit
 * behind bytes a power loss turns into zeros. It cuts the file back to the last good sync first,
 * and fails while it cannot. */
TEST(reopen_takes_back_failed_records_first) {
        AuditLogStatus st;
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        commit_n(&f, 5);
        wait_acks(&f, 5);

        atomic_store(&faults.fdatasync_errno, EIO);
        atomic_store(&faults.ftruncate_errno, EIO);
        reserve_then_commit(&f, 3);
        wait_acks(&f, 8);
        for (size_t i = 5; i < 8; i++)
                ASSERT_EQ(f.acks.errors[i], -EIO);

        atomic_store(&faults.fdatasync_errno, 0);
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        wait_reopened(&f);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.failed, -EIO);
        ASSERT_EQ(st.last_committed_seq, 5);

        atomic_store(&faults.ftruncate_errno, 0);
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        wait_healthy(&f);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.last_committed_seq, 5);
        ASSERT_EQ(st.next_seq, 6);
        commit_n(&f, 2);
        wait_acks(&f, 10);
        ASSERT_EQ(f.acks.errors[8], 0);
        ASSERT_EQ(f.acks.seqs[8], 6);
        assert_files(&f, 1, 7);
        fixture_done(&f);
}

TEST(fdatasync_eio_fails_closed) {
        AuditReservation *res;
        AuditLogStatus st;
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        commit_n(&f, 5);
        wait_acks(&f, 5);

        atomic_store(&faults.fdatasync_errno, EIO);
        reserve_then_commit(&f, 3);
        wait_acks(&f, 8);
        for (size_t i = 5; i < 8; i++)
                ASSERT_EQ(f.acks.errors[i], -EIO);
        ASSERT_ERRNO(audit_log_reserve(f.log, &res), EIO);
        ASSERT_ERRNO(audit_log_record(f.log, &(AuditRecord){ .event = "x" }, NULL, NULL, NULL), EIO);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.failed, -EIO);

        /* Still failing: reopen fails over to the same state only if the disk still fails;
         * here the disk recovered. */
        atomic_store(&faults.fdatasync_errno, 0);
        ASSERT_ERRNO(audit_log_reserve(f.log, &res), EIO);
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        wait_healthy(&f);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.failed, 0);
        ASSERT_EQ(st.next_seq, 6); /* the failed records were taken back out of the file */
        commit_n(&f, 2);
        wait_acks(&f, 10);
        ASSERT_EQ(f.acks.errors[8], 0);
        ASSERT_EQ(f.acks.seqs[8], 6);
        assert_files(&f, 1, 7);
        fixture_done(&f);
}

TEST(reservation_made_before_failure_completes_with_error) {
        AuditReservation *res;
        AuditRecord r = sample_record();
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        ASSERT_OK(audit_log_reserve(f.log, &res));
        atomic_store(&faults.fdatasync_errno, EIO);
        commit_n(&f, 1);
        wait_acks(&f, 1);
        ASSERT_EQ(f.acks.errors[0], -EIO);
        /* The log failed after this reservation was made: the record is refused, reported
         * through its callback like any write failure. */
        ASSERT_OK(audit_log_commit(res, &r, ack_callback, &f.acks, NULL));
        wait_acks(&f, 2);
        ASSERT_EQ(f.acks.errors[1], -EIO);
        fixture_done(&f);
}

TEST(write_enospc_fails_closed) {
        AuditReservation *res;
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        commit_n(&f, 3);
        wait_acks(&f, 3);
        atomic_store(&faults.pwritev_errno, ENOSPC);
        reserve_then_commit(&f, 2);
        wait_acks(&f, 5);
        ASSERT_EQ(f.acks.errors[3], -ENOSPC);
        ASSERT_EQ(f.acks.errors[4], -ENOSPC);
        ASSERT_ERRNO(audit_log_reserve(f.log, &res), ENOSPC);
        atomic_store(&faults.pwritev_errno, 0);
        ASSERT_ERRNO(audit_log_reserve(f.log, &res), ENOSPC);
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        wait_healthy(&f);
        commit_n(&f, 1);
        wait_acks(&f, 6);
        ASSERT_EQ(f.acks.errors[5], 0);
        ASSERT_EQ(f.acks.seqs[5], 4);
        assert_files(&f, 1, 4);
        fixture_done(&f);
}

TEST(rename_failure_fails_closed) {
        AuditReservation *res;
        Fixture f;

        fixture_init(&f);
        f.config.max_file_size = AUDIT_RECORD_MAX;
        f.config.n_files = 20;
        atomic_store(&faults.renameat_errno, EROFS);
        fixture_open(&f);
        reserve_then_commit(&f, 15);
        reserve_then_commit(&f, 15);
        wait_acks(&f, 30);
        /* The records that fit the first file were synced before the rotation failed, and
         * stay there: acknowledged means on disk. */
        ASSERT_EQ(f.acks.errors[0], 0);
        ASSERT_EQ(f.acks.errors[29], -EROFS);
        ASSERT_ERRNO(audit_log_reserve(f.log, &res), EROFS);
        {
                size_t n_ok = 0;

                while (n_ok < f.acks.n && f.acks.errors[n_ok] == 0)
                        n_ok++;
                ASSERT_GE(n_ok, 1U);
                assert_files(&f, 1, n_ok);
        }
        fixture_done(&f);
}

/* A batch that fills the file: the records before the boundary are synced before the rotation
 * makes a newer file (after a crash, resume trusts that the newest file holding a record holds
 * the last one written), the rest at the end of the batch: two syncs for the one batch. */
TEST(rotation_mid_batch_syncs_before_rotating) {
        AuditLogStatus st;
        unsigned syncs;
        Fixture f;

        fixture_init(&f);
        f.config.max_file_size = AUDIT_RECORD_MAX;
        f.config.n_files = 10;
        fixture_open(&f);
        commit_n(&f, 1);
        wait_acks(&f, 1);

        syncs = atomic_load(&faults.n_fdatasync);
        reserve_then_commit(&f, 12); /* one batch, past the ~9 records a file takes */
        wait_acks(&f, 13);
        assert_acks_ok(&f, 1);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.sync.n_rotations, 1U);
        ASSERT_EQ(atomic_load(&faults.n_fdatasync) - syncs, 2U);
        ASSERT_TRUE(file_exists(&f, "audit.log.1"));
        assert_files(&f, 1, 13);
        fixture_done(&f);
}

/* The sync before a rotation fails: the records before the boundary are not acknowledged (nor
 * those after it), and no newer file is made while they may sit in the page cache only. */
TEST(rotation_mid_batch_sync_failure_makes_no_new_file) {
        AuditReservation *res;
        Fixture f;

        fixture_init(&f);
        f.config.max_file_size = AUDIT_RECORD_MAX;
        f.config.n_files = 10;
        fixture_open(&f);
        commit_n(&f, 1);
        wait_acks(&f, 1);

        /* The batch's first fdatasync and every one after it. */
        atomic_store(&faults.fdatasync_fail_from, atomic_load(&faults.n_fdatasync) + 1);
        atomic_store(&faults.fdatasync_errno, EIO);
        reserve_then_commit(&f, 12);
        wait_acks(&f, 13);
        for (size_t i = 1; i < 13; i++)
                ASSERT_EQ(f.acks.errors[i], -EIO);
        ASSERT_ERRNO(audit_log_reserve(f.log, &res), EIO);
        ASSERT_FALSE(file_exists(&f, "audit.log.1"));
        ASSERT_FALSE(file_exists(&f, "audit.log.new"));
        assert_files(&f, 1, 1); /* the failed records taken back out */
        fixture_done(&f);
}

TEST(fallocate_enospc_refuses_reserve) {
        AuditReservation *res;
        Fixture f;

        fixture_init(&f);
        atomic_store(&faults.fallocate_errno, ENOSPC);
        atomic_store(&faults.fstatvfs_avail, 0);
        fixture_open(&f);
        ASSERT_ERRNO(audit_log_reserve(f.log, &res), ENOSPC);
        ASSERT_ERRNO(audit_log_record(f.log, &(AuditRecord){ .event = "x" }, NULL, NULL, NULL), ENOSPC);

        /* Not the failed state: once space is back, reservations work again by themselves. */
        atomic_store(&faults.fallocate_errno, 0);
        atomic_store(&faults.fstatvfs_avail, -1);
        for (unsigned i = 0; i < 1000; i++) {
                int r = audit_log_reserve(f.log, &res);
                if (r >= 0)
                        break;
                ASSERT_ERRNO(r, ENOSPC);
                usleep(1000);
        }
        ASSERT_OK(audit_log_commit(res, &(AuditRecord){ .event = "x" }, ack_callback, &f.acks, NULL));
        wait_acks(&f, 1);
        assert_acks_ok(&f, 1);
        fixture_done(&f);
}

/* Records reserved against the old file's preallocated tail are written to the new one after a
 * rotation: the new file takes that room before the old tail is given back, where another writer
 * of a nearly full file system could take it (here, every block given back is taken). */
TEST(rotation_takes_new_room_before_giving_back_the_old) {
        AuditReservation *res;
        AuditLogStatus st;
        Fixture f;

        fixture_init(&f);
        f.config.max_file_size = AUDIT_RECORD_MAX;
        f.config.n_files = 10;
        fixture_open(&f);
        commit_n(&f, 1);
        wait_acks(&f, 1);

        atomic_store(&faults.n_ftruncate, 0);
        atomic_store(&faults.fallocate_enospc_after_ftruncate, true);
        atomic_store(&faults.fstatvfs_avail, 0);
        reserve_then_commit(&f, 12); /* past the ~9 records a file takes: one rotation */
        wait_acks(&f, 13);
        assert_acks_ok(&f, 1);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.sync.n_rotations, 1);
        ASSERT_GE(atomic_load(&faults.n_ftruncate), 1);
        ASSERT_OK(audit_log_reserve(f.log, &res));
        audit_log_cancel(res);
        fixture_done(&f);
}

/* A disk so full that the new file of a rotation cannot get the room reserved against the old
 * file's tail (another writer takes every block given back): it ends as a full disk does without
 * a rotation. The log does not rotate, the records reserved go into the old tail, which has their
 * room, and once that is used the log is full (reservations refused with ENOSPC, an owed record
 * kept), not failed: everything reserved is acknowledged and in the files, and once there is room
 * again the log takes the kept record, rotates and goes on by itself. */
TEST(rotation_without_room_for_the_new_file_ends_full_not_failed) {
        AuditRecord r = sample_record();
        AuditReservation *res;
        AuditLogStatus st;
        uint64_t seq = 99;
        size_t n = 1;
        int k;
        Fixture f;

        fixture_init(&f);
        f.config.max_file_size = AUDIT_RECORD_MAX;
        f.config.n_files = 10;
        f.config.prealloc_size = 16 * AUDIT_RECORD_MAX;
        fixture_open(&f);
        commit_n(&f, 1);
        wait_acks(&f, 1);

        atomic_store(&faults.disk_full, true);
        atomic_store(&faults.fstatvfs_avail, 0);
        reserve_then_commit(&f, 12); /* past the ~9 records a file takes */
        n += 12;
        wait_acks(&f, n);
        assert_acks_ok(&f, 1);
        /* Then one at a time, until the old tail is used. */
        for (;;) {
                ASSERT_LE(n, 1000U);
                k = audit_log_reserve(f.log, &res);
                if (k < 0)
                        break;
                ASSERT_OK(audit_log_commit(res, &r, ack_callback, &f.acks, NULL));
                wait_acks(&f, ++n);
        }
        ASSERT_ERRNO(k, ENOSPC);
        assert_acks_ok(&f, 1);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.failed, 0);
        ASSERT_EQ(st.health.state, AUDIT_HEALTH_FULL);
        ASSERT_EQ(st.health.error, -ENOSPC);
        ASSERT_EQ(st.sync.n_rotations, 0U);
        ASSERT_TRUE(file_size(&f, "audit.log") > AUDIT_RECORD_MAX); /* past max_file_size */
        ASSERT_FALSE(file_exists(&f, "audit.log.new"));
        r.event = "release";
        ASSERT_EQ(audit_log_record_owed_kept(f.log, &r, ack_callback, NULL, &f.acks, &seq), 1);
        ASSERT_EQ(seq, 0U);
        assert_files(&f, 1, n);

        atomic_store(&faults.disk_full, false);
        atomic_store(&faults.fstatvfs_avail, -1);
        for (unsigned i = 0;; i++) {
                k = audit_log_reserve(f.log, &res);
                if (k >= 0)
                        break;
                ASSERT_ERRNO(k, ENOSPC);
                ASSERT_LE(i, 1000U);
                usleep(1000);
        }
        ASSERT_OK(audit_log_commit(res, &r, ack_callback, &f.acks, NULL));
        n += 2; /* the kept record, then this one */
        wait_acks(&f, n);
        assert_acks_ok(&f, 1);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.failed, 0);
        ASSERT_EQ(st.health.state, AUDIT_HEALTH_OK);
        ASSERT_EQ(st.sync.n_rotations, 1U);
        ASSERT_FALSE(file_exists(&f, "audit.log.new"));
        assert_files(&f, 1, n);
        fixture_done(&f);
}

/* A rotation makes its new file, and takes its room, as audit.log.new before the first rename: one
 * a crash left there holds no record, and goes at the next open (its room given back). */
TEST(new_file_a_crash_left_goes_at_open) {
        Fixture f;

        fixture_with_records(&f, 3);
        append_bytes(f.dir, "audit.log.new", "", 0);
        fixture_open(&f);
        ASSERT_FALSE(file_exists(&f, "audit.log.new"));
        commit_n(&f, 1);
        wait_acks(&f, 4);
        assert_acks_ok(&f, 1);
        assert_files(&f, 1, 4);
        fixture_done(&f);
}

TEST(no_fallocate_falls_back_to_statvfs) {
        AuditReservation *res;
        Fixture f;

        fixture_init(&f);
        atomic_store(&faults.fallocate_errno, EOPNOTSUPP);
        fixture_open(&f);
        commit_n(&f, 10);
        wait_acks(&f, 10);
        assert_acks_ok(&f, 1);
        ASSERT_GE(atomic_load(&faults.n_fstatvfs), 1);

        atomic_store(&faults.fstatvfs_avail, AUDIT_RECORD_MAX - 1);
        ASSERT_ERRNO(audit_log_reserve(f.log, &res), ENOSPC);
        atomic_store(&faults.fstatvfs_avail, AUDIT_RECORD_MAX);
        ASSERT_OK(audit_log_reserve(f.log, &res));
        /* Room for one, not two. */
        {
                AuditReservation *res2;
                ASSERT_ERRNO(audit_log_reserve(f.log, &res2), ENOSPC);
        }
        audit_log_cancel(res);
        fixture_done(&f);
}

TEST(max_in_flight_enobufs) {
        AuditReservation *res[9];
        AuditRecord r = sample_record();
        Fixture f;

        fixture_init(&f);
        f.config.max_in_flight = 8;
        fixture_open(&f);
        for (unsigned i = 0; i < 8; i++)
                ASSERT_OK(audit_log_reserve(f.log, &res[i]));
        ASSERT_ERRNO(audit_log_reserve(f.log, &res[8]), ENOBUFS);
        audit_log_cancel(res[0]);
        ASSERT_OK(audit_log_reserve(f.log, &res[0]));
        /* Committed but not yet durable still counts. */
        for (unsigned i = 0; i < 8; i++)
                ASSERT_OK(audit_log_commit(res[i], &r, ack_callback, &f.acks, NULL));
        ASSERT_ERRNO(audit_log_reserve(f.log, &res[8]), ENOBUFS);
        ASSERT_ERRNO(audit_log_record(f.log, &r, ack_callback, &f.acks, NULL), ENOBUFS);
        /* What tsmd owes for what it did on its own goes in all the same. */
        ASSERT_OK(audit_log_record_owed(f.log, &r, ack_callback, &f.acks, NULL));
        wait_acks(&f, 9);
        assert_acks_ok(&f, 1);
        ASSERT_OK(audit_log_reserve(f.log, &res[8]));
        audit_log_cancel(res[8]);
        fixture_done(&f);
}

/* The records a listener saw: event, count, and whether the line has "owedSince" (n_owed). */
typedef struct Seen {
        size_t n, n_owed;
        char event[16][32];
        uint64_t count[16], seq[16], realtime[16];
} Seen;

static void on_seen(AuditLog *a, const AuditRecord *rec, const char *line, size_t len, void *userdata) {
        Seen *seen = userdata;

        ASSERT_LE(seen->n, ELEMENTSOF(seen->event) - 1);
        snprintf(seen->event[seen->n], sizeof(seen->event[0]), "%s", rec->event);
        seen->count[seen->n] = rec->count;
        seen->seq[seen->n] = rec->seq;
        seen->realtime[seen->n] = rec->realtime_usec;
        if (strstr(line, "\"owedSince\":\"")) {
                /* When it was owed, before it was written. */
                ASSERT_TRUE(rec->owed_since_usec > 0);
                ASSERT_LE(rec->owed_since_usec, rec->realtime_usec);
                seen->n_owed++;
        }
        seen->n++;
}

static void on_numbered_seq(AuditLog *a, uint64_t seq, void *userdata) {
        *(uint64_t *) userdata = seq;
}

/* A record tsmd owes for what it did on its own, owed while the file system is full: kept, not
 * lost, and written once there is room again, with no call needed, in the order owed and before
 * any record reserved after it; past max_kept the loss is on record as a summary. A call is still
 * refused while they wait. */
TEST(owed_records_kept_while_full_are_written_when_room_returns) {
        const char *events[] = { "release", "reload", "worker-restart" };
        uint64_t numbered = 0;
        AuditReservation *res;
        AuditRecord r = AUDIT_RECORD_INIT;
        AuditLogStatus st;
        Seen seen = {};
        uint64_t seq = 99;
        Fixture f;

        fixture_init(&f);
        f.config.max_kept = 3;
        atomic_store(&faults.fallocate_errno, ENOSPC);
        atomic_store(&faults.fstatvfs_avail, 0);
        fixture_open(&f);
        ASSERT_OK(audit_log_add_listener(f.log, on_seen, &seen, NULL, NULL));
        ASSERT_ERRNO(audit_log_reserve(f.log, &res), ENOSPC);

        for (size_t i = 0; i < ELEMENTSOF(events); i++) {
                r.event = events[i];
                /* The first one tells its seq once it has one (as a failed release does). */
                ASSERT_EQ(i == 0 ? audit_log_record_owed_kept(f.log, &r, NULL, on_numbered_seq, &numbered, &seq)
                                 : audit_log_record_owed_kept(f.log, &r, ack_callback, NULL, &f.acks, &seq),
                          1);
                ASSERT_EQ(seq, 0U);
        }
        /* Past max_kept: lost, and counted. */
        r.event = "lost-one";
        ASSERT_ERRNO(audit_log_record_owed_kept(f.log, &r, ack_callback, NULL, &f.acks, NULL), ENOBUFS);
        ASSERT_ERRNO(audit_log_record_owed_kept(f.log, &r, ack_callback, NULL, &f.acks, NULL), ENOBUFS);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.n_kept, 4U);
        ASSERT_EQ(st.n_kept_lost, 2U);
        ASSERT_ERRNO(audit_log_reserve(f.log, &res), ENOSPC);
        run_once(&f);
        ASSERT_EQ(seen.n, 0U);

        /* Room again: no call comes, they are written all the same, in order. */
        atomic_store(&faults.fallocate_errno, 0);
        atomic_store(&faults.fstatvfs_avail, -1);
        run_until(f.base, &seen.n, 4);
        ASSERT_EQ(seen.n, 4U);
        ASSERT_EQ(seen.n_owed, 4U);
        for (size_t i = 0; i < ELEMENTSOF(events); i++)
                ASSERT_STREQ(seen.event[i], events[i]);
        ASSERT_STREQ(seen.event[3], "records-lost");
        ASSERT_EQ(seen.count[3], 2U);
        ASSERT_EQ(numbered, seen.seq[0]);
        ASSERT_EQ(seen.seq[3], seen.seq[0] + 3);
        wait_acks(&f, 2);
        ASSERT_EQ(f.acks.errors[0], 0);
        ASSERT_EQ(f.acks.seqs[1], seen.seq[2]);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.n_kept, 0U);
        ASSERT_EQ(st.n_kept_lost, 0U);

        /* The log takes records as before, after them. */
        ASSERT_TRUE(commit_one(&f, &(AuditRecord){ .event = "x" }) > seen.seq[3]);
        run_until(f.base, &seen.n, 5);
        ASSERT_EQ(seen.n_owed, 4U);
        fixture_done(&f);
}

/* Kept while the log has failed: a call's reservation still refused, the kept records written
 * first once a reopen worked, before the records of the calls after it. And those a log never
 * took when it goes have their callback told why. */
TEST(owed_records_kept_while_failed_are_written_after_the_reopen) {
        AuditRecord r = sample_record();
        AuditReservation *res;
        Seen seen = {};
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        ASSERT_OK(audit_log_add_listener(f.log, on_seen, &seen, NULL, NULL));
        atomic_store(&faults.pwritev_errno, EIO);
        (void) commit_one(&f, &r);
        wait_acks(&f, 1);
        ASSERT_EQ(f.acks.errors[0], -EIO);
        ASSERT_ERRNO(audit_log_reserve(f.log, &res), EIO);

        r = (AuditRecord) AUDIT_RECORD_INIT;
        r.event = "release";
        ASSERT_EQ(audit_log_record_owed_kept(f.log, &r, ack_callback, NULL, &f.acks, NULL), 1);
        ASSERT_ERRNO(audit_log_reserve(f.log, &res), EIO);

        atomic_store(&faults.pwritev_errno, 0);
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        wait_healthy(&f);
        ASSERT_OK(audit_log_reserve(f.log, &res));
        ASSERT_OK(audit_log_commit(res, &(AuditRecord){ .event = "after" }, ack_callback, &f.acks, NULL));
        run_until(f.base, &seen.n, 2);
        ASSERT_STREQ(seen.event[0], "release");
        ASSERT_STREQ(seen.event[1], "after");
        ASSERT_EQ(seen.n_owed, 1U);
        wait_acks(&f, 3);
        ASSERT_EQ(f.acks.errors[1], 0);
        ASSERT_EQ(f.acks.errors[2], 0);

        /* Failed again, and freed before any reopen: the kept record's callback hears why. */
        atomic_store(&faults.pwritev_errno, EIO);
        (void) commit_one(&f, &(AuditRecord){ .event = "y" });
        wait_acks(&f, 4);
        ASSERT_EQ(audit_log_record_owed_kept(f.log, &r, ack_callback, NULL, &f.acks, NULL), 1);
        fixture_close(&f);
        ASSERT_EQ(f.acks.n, 5U);
        ASSERT_EQ(f.acks.errors[4], -EIO);
        atomic_store(&faults.pwritev_errno, 0);
        fixture_done(&f);
}

/* Kept while the file system is full when a reload reopens the log: they still go first. A
 * reservation made during the reopen is refused while they wait, as at any other time (it was
 * taken unchecked, and its record numbered after the reopen before them, even when they could not
 * be written); the record of a call that reserved room before they were kept, held for the reopen,
 * waits behind them rather than go to files without room. Whether room came back before the reopen
 * finished or after, times follow the sequence. */
TEST(owed_records_kept_go_first_across_a_reopen) {
        for (int room_at_reopen = 0; room_at_reopen <= 1; room_at_reopen++) {
                AuditReservation *before, *res;
                AuditRecord r = AUDIT_RECORD_INIT;
                AuditLogStatus st;
                Seen seen = {};
                Fixture f;

                fixture_init(&f);
                atomic_store(&faults.fallocate_errno, EOPNOTSUPP); /* the room is what fstatvfs says */
                atomic_store(&faults.fstatvfs_avail, AUDIT_RECORD_MAX);
                fixture_open(&f);
                ASSERT_OK(audit_log_add_listener(f.log, on_seen, &seen, NULL, NULL));
                ASSERT_OK(audit_log_reserve(f.log, &before)); /* the last room, a call's acting */
                r.event = "release";
                ASSERT_EQ(audit_log_record_owed_kept(f.log, &r, ack_callback, NULL, &f.acks, NULL), 1);

                atomic_store(&faults.fstatvfs_avail, 0);
                ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL)); /* a reload by SIGHUP */
                ASSERT_ERRNO(audit_log_reserve(f.log, &res), ENOSPC);
                ASSERT_OK(audit_log_commit(before, &(AuditRecord){ .event = "bind" }, ack_callback, &f.acks, NULL));
                if (room_at_reopen)
                        atomic_store(&faults.fstatvfs_avail, -1);
                wait_reopened(&f);
                ASSERT_OK(audit_log_get_status(f.log, &st));
                if (!room_at_reopen) {
                        ASSERT_EQ(st.n_kept, 2U);
                        ASSERT_ERRNO(audit_log_reserve(f.log, &res), ENOSPC);
                        ASSERT_EQ(seen.n, 0U);
                        atomic_store(&faults.fstatvfs_avail, -1);
                } else
                        ASSERT_EQ(st.n_kept, 0U);

                run_until(f.base, &seen.n, 2);
                ASSERT_STREQ(seen.event[0], "release");
                ASSERT_STREQ(seen.event[1], "bind");
                ASSERT_EQ(seen.n_owed, 1U);
                ASSERT_LE(seen.realtime[0], seen.realtime[1]);
                wait_acks(&f, 2);
                assert_acks_ok(&f, seen.seq[0]);
                fixture_done(&f);
        }
}

/* An owed record made while a reopen is pending is held, as any record, until it finished: if the
 * reopen failed, or the files it opened have no room, it is kept (what it records happened), where
 * it was failed and lost; the records held after it wait behind it. */
TEST(owed_record_made_during_a_reopen_is_kept_if_the_log_cannot_take_it_then) {
        _cleanup_free_ char *moved = NULL;
        AuditReservation *res[2];
        AuditRecord r = AUDIT_RECORD_INIT;
        AuditLogStatus st;
        uint64_t seq = 99;
        Seen seen = {};
        Fixture f;

        /* The directory is gone: the reopen fails. */
        fixture_init(&f);
        fixture_open(&f);
        ASSERT_OK(audit_log_add_listener(f.log, on_seen, &seen, NULL, NULL));
        commit_n(&f, 1);
        wait_acks(&f, 1);
        ASSERT_OK(asprintf(&moved, "%s.old", f.dir));
        ASSERT_OK(rename(f.dir, moved));
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        r.event = "release";
        ASSERT_OK(audit_log_record_owed_kept(f.log, &r, ack_callback, NULL, &f.acks, &seq));
        ASSERT_EQ(seq, 0U);
        wait_reopened(&f);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_ERRNO(st.failed, ENOENT);
        ASSERT_EQ(st.n_kept, 1U);
        ASSERT_EQ(f.acks.n, 1U);

        ASSERT_OK(rename(moved, f.dir));
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        wait_healthy(&f);
        run_until(f.base, &seen.n, 2);
        ASSERT_STREQ(seen.event[1], "release");
        ASSERT_EQ(seen.n_owed, 1U);
        wait_acks(&f, 2);
        assert_acks_ok(&f, 1);
        fixture_done(&f);

        /* The files it opened have no room: a call's record held before it is written as ever, it
         * and a record held after it wait for room. */
        seen = (Seen) {};
        fixture_init(&f);
        atomic_store(&faults.fallocate_errno, EOPNOTSUPP);
        fixture_open(&f);
        ASSERT_OK(audit_log_add_listener(f.log, on_seen, &seen, NULL, NULL));
        atomic_store(&faults.fstatvfs_avail, 0);
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        ASSERT_OK(audit_log_reserve(f.log, &res[0]));
        ASSERT_OK(audit_log_commit(res[0], &(AuditRecord){ .event = "before" }, ack_callback, &f.acks, NULL));
        ASSERT_OK(audit_log_record_owed_kept(f.log, &r, ack_callback, NULL, &f.acks, NULL));
        ASSERT_OK(audit_log_reserve(f.log, &res[1]));
        ASSERT_OK(audit_log_commit(res[1], &(AuditRecord){ .event = "after" }, ack_callback, &f.acks, NULL));
        wait_reopened(&f);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.n_kept, 2U);
        run_until(f.base, &seen.n, 1);
        ASSERT_STREQ(seen.event[0], "before");

        atomic_store(&faults.fstatvfs_avail, -1);
        run_until(f.base, &seen.n, 3);
        ASSERT_STREQ(seen.event[1], "release");
        ASSERT_STREQ(seen.event[2], "after");
        ASSERT_EQ(seen.n_owed, 1U);
        wait_acks(&f, 3);
        assert_acks_ok(&f, 1);
        fixture_done(&f);
}

/* No one uid takes all the room in flight (max_in_flight_per_uid), and the callers the policy
 * does not name have a pool of their own (max_in_flight_unnamed) that takes none of the named
 * callers' room; each reservation's room comes back when it is cancelled or reported. */
TEST(max_in_flight_per_uid_and_unnamed_pool) {
        AuditReservation *a[3], *b, *u[3], *res[8];
        AuditRecord r = sample_record();
        AuditLogStatus st;
        Fixture f;

        fixture_init(&f);
        f.config.max_in_flight = 4;
        f.config.max_in_flight_per_uid = 2;
        f.config.max_in_flight_unnamed = 2;
        fixture_open(&f);

        /* uid 1000's share: two, then ENOBUFS; uid 1001 still gets room. */
        ASSERT_OK(audit_log_reserve_for(f.log, 1000, AUDIT_POOL_NAMED, &a[0]));
        ASSERT_OK(audit_log_reserve_for(f.log, 1000, AUDIT_POOL_NAMED, &a[1]));
        ASSERT_ERRNO(audit_log_reserve_for(f.log, 1000, AUDIT_POOL_NAMED, &a[2]), ENOBUFS);
        ASSERT_OK(audit_log_reserve_for(f.log, 1001, AUDIT_POOL_NAMED, &b));

        /* The unnamed pool: two over all its uids, whatever their shares; the named callers'
         * room (one left of four) is untouched by it. */
        ASSERT_OK(audit_log_reserve_for(f.log, 2000, AUDIT_POOL_UNNAMED, &u[0]));
        ASSERT_OK(audit_log_reserve_for(f.log, 2001, AUDIT_POOL_UNNAMED, &u[1]));
        ASSERT_ERRNO(audit_log_reserve_for(f.log, 2002, AUDIT_POOL_UNNAMED, &u[2]), ENOBUFS);
        r.uid = 2002;
        ASSERT_ERRNO(audit_log_record_for(f.log, AUDIT_POOL_UNNAMED, &r, ack_callback, &f.acks, NULL), ENOBUFS);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.n_reserved, 5);
        ASSERT_EQ(st.n_unnamed, 2);
        ASSERT_OK(audit_log_reserve_for(f.log, 1002, AUDIT_POOL_NAMED, &res[0]));
        ASSERT_ERRNO(audit_log_reserve_for(f.log, 1003, AUDIT_POOL_NAMED, &res[1]), ENOBUFS);
        ASSERT_ERRNO(audit_log_reserve(f.log, &res[1]), ENOBUFS);

        /* Room comes back: by cancelling, and once a committed record is reported. */
        audit_log_cancel(a[1]);
        ASSERT_OK(audit_log_reserve_for(f.log, 1000, AUDIT_POOL_NAMED, &a[1]));
        r.uid = 2000;
        ASSERT_OK(audit_log_commit(u[0], &r, ack_callback, &f.acks, NULL));
        ASSERT_ERRNO(audit_log_reserve_for(f.log, 2002, AUDIT_POOL_UNNAMED, &u[2]), ENOBUFS);
        wait_acks(&f, 1);
        assert_acks_ok(&f, 1);
        ASSERT_OK(audit_log_reserve_for(f.log, 2002, AUDIT_POOL_UNNAMED, &u[2]));

        audit_log_cancel(a[0]);
        audit_log_cancel(a[1]);
        audit_log_cancel(b);
        audit_log_cancel(u[1]);
        audit_log_cancel(u[2]);
        audit_log_cancel(res[0]);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.n_reserved, 0);
        ASSERT_EQ(st.n_unnamed, 0);
        /* Everything given back: a uid's whole share again. */
        for (unsigned i = 0; i < 2; i++)
                ASSERT_OK(audit_log_reserve_for(f.log, 1000, AUDIT_POOL_UNNAMED, &res[i]));
        for (unsigned i = 0; i < 2; i++)
                audit_log_cancel(res[i]);
        fixture_done(&f);
}

/* The summaries a refusal budget writes, as the listener sees them. */
typedef struct Summaries {
        size_t n;
        struct {
                char event[64], result[64];
                uid_t uid;
                uint64_t count;
        } s[32];
} Summaries;

static void on_summary(AuditLog *a, const AuditRecord *rec, const char *line, size_t len, void *userdata) {
        Summaries *sum = userdata;

        ASSERT_GE(rec->count, 1);
        ASSERT_LE(sum->n, ELEMENTSOF(sum->s) - 1);
        snprintf(sum->s[sum->n].event, sizeof(sum->s[0].event), "%s", rec->event);
        snprintf(sum->s[sum->n].result, sizeof(sum->s[0].result), "%s", strna(rec->result));
        sum->s[sum->n].uid = rec->uid;
        sum->s[sum->n].count = rec->count;
        {
                char key[48];

                snprintf(key, sizeof(key), "\"count\":%" PRIu64, rec->count);
                ASSERT_NOT_NULL(strstr(line, key));
        }
        sum->n++;
}

static uint64_t summary_count(const Summaries *sum, uid_t uid, const char *event, const char *result) {
        for (size_t i = 0; i < sum->n; i++)
                if (sum->s[i].uid == uid && streq(sum->s[i].event, event) && streq(sum->s[i].result, result))
                        return sum->s[i].count;
        return 0;
}

/* An open log, a listener on it (cb NULL: none), and a refusal budget of per_uid records each
 * interval_usec over it. */
static void budget_start(Fixture *f, unsigned per_uid, uint64_t interval_usec, AuditListenerCallback cb,
                         void *userdata, AuditBudget **b) {
        fixture_init(f);
        fixture_open(f);
        if (cb)
                ASSERT_OK(audit_log_add_listener(f->log, cb, userdata, NULL, NULL));
        ASSERT_OK(audit_budget_new(f->log, f->base, per_uid, interval_usec, /* refusals= */ true, b));
}

/* Each uid records `per_uid` refusals by itself per interval; the rest are counted by uid, event
 * and result, and written as one summary each when the interval ends (or the budget is freed),
 * after which the uid's budget is whole again. */
TEST(refusal_budget_summarizes_past_the_limit) {
        _cleanup_(audit_budget_freep) AuditBudget *b = NULL;
        Summaries sum = {};
        Fixture f;

        budget_start(&f, 2, 50 * 1000, on_summary, &sum, &b);

        ASSERT_TRUE(audit_budget_take(b, 1000));
        ASSERT_TRUE(audit_budget_take(b, 1000));
        ASSERT_FALSE(audit_budget_take(b, 1000));
        ASSERT_TRUE(audit_budget_take(b, 1001)); /* a budget per uid */
        for (unsigned i = 0; i < 5; i++)
                audit_budget_count(b, 1000, "unknown-method", "org.varlink.service.MethodNotFound");
        audit_budget_count(b, 1000, "connection", "io.tsmd.TooManyConnectionsPerUid");
        audit_budget_count(b, 1001, "unknown-method", "org.varlink.service.MethodNotFound");

        /* The interval ends: three summaries, the counts exact. */
        run_until(f.base, &sum.n, 3);
        ASSERT_EQ(sum.n, 3U);
        ASSERT_EQ(summary_count(&sum, 1000, "unknown-method", "org.varlink.service.MethodNotFound"), 5U);
        ASSERT_EQ(summary_count(&sum, 1000, "connection", "io.tsmd.TooManyConnectionsPerUid"), 1U);
        ASSERT_EQ(summary_count(&sum, 1001, "unknown-method", "org.varlink.service.MethodNotFound"), 1U);

        /* A new interval: the budget is whole again; what is counted is written at free too. */
        ASSERT_TRUE(audit_budget_take(b, 1000));
        audit_budget_count(b, 1000, "call", "org.varlink.service.InvalidParameter");
        b = audit_budget_free(b);
        run_until(f.base, &sum.n, 4);
        ASSERT_EQ(summary_count(&sum, 1000, "call", "org.varlink.service.InvalidParameter"), 1U);
        fixture_done(&f);
}

static void on_summary_only(AuditLog *a, const AuditRecord *rec, const char *line, size_t len, void *userdata) {
        if (rec->count > 0)
                on_summary(a, rec, line, len, userdata);
}

/* Refusals take at most their share of each file (audit_log_refusal_room()): past it the budget
 * records none by itself, and its summaries wait, counting on, until other records start a new
 * file; then they are written, the counts exact; at free, whatever the share. */
TEST(refusal_budget_held_to_the_file_share) {
        _cleanup_(audit_budget_freep) AuditBudget *b = NULL;
        const char *nf = "org.varlink.service.MethodNotFound";
        AuditRecord refused = AUDIT_RECORD_INIT, done = AUDIT_RECORD_INIT;
        Summaries sum = {};
        unsigned n = 0;
        Fixture f;

        fixture_init(&f);
        f.config.max_file_size = 16384;
        f.config.refusal_share_percent = 10;
        fixture_open(&f);
        ASSERT_OK(audit_log_add_listener(f.log, on_summary_only, &sum, NULL, NULL));
        ASSERT_OK(audit_budget_new(f.log, f.base, 1000, 60 * 1000000ULL, /* refusals= */ true, &b));
        refused.event = "unknown-method";
        refused.uid = 1000;
        refused.result = nf;
        refused.refusal = true;
        done.event = "open-context";
        done.uid = 0;
        done.result = "ok";

        /* 1638 bytes: a few records, far below the budget. */
        while (audit_budget_take(b, 1000)) {
                ASSERT_OK(audit_log_record_for(f.log, AUDIT_POOL_UNNAMED, &refused, NULL, NULL, NULL));
                n++;
        }
        ASSERT_GE(n, 1U);
        ASSERT_LE(n, 16U);
        ASSERT_FALSE(audit_log_refusal_room(f.log));
        for (unsigned i = 0; i < 3; i++)
                audit_budget_count(b, 1000, "unknown-method", nf);
        audit_budget_flush(b);
        ASSERT_EQ(audit_budget_n_unwritten(b), 3U);
        audit_budget_count(b, 1000, "unknown-method", nf);
        audit_budget_flush(b);
        ASSERT_EQ(audit_budget_n_unwritten(b), 4U);

        /* Other records fill the file and start a new one, with room. */
        while (!audit_log_refusal_room(f.log))
                ASSERT_OK(audit_log_record(f.log, &done, NULL, NULL, NULL));
        audit_budget_flush(b);
        ASSERT_EQ(audit_budget_n_unwritten(b), 0U);
        run_until(f.base, &sum.n, 1);
        ASSERT_EQ(summary_count(&sum, 1000, "unknown-method", nf), 4U);

        /* Spent again; what is counted then is written when the budget goes. */
        while (audit_budget_take(b, 1000))
                ASSERT_OK(audit_log_record_for(f.log, AUDIT_POOL_UNNAMED, &refused, NULL, NULL, NULL));
        audit_budget_count(b, 1001, "call", nf);
        audit_budget_flush(b);
        ASSERT_EQ(audit_budget_n_unwritten(b), 1U);
        b = audit_budget_free(b);
        run_until(f.base, &sum.n, 2);
        ASSERT_EQ(summary_count(&sum, 1001, "call", nf), 1U);
        fixture_done(&f);
}

/* What refusals took of audit.log is not known to a log that opens it (tsmd's start, a worker's
 * restart): all it holds counts, up to the share, so that restarts do not renew it. A reopen of
 * the same files (a reload) keeps what was counted; a new file has the whole share. */
TEST(refusal_share_at_open_and_reopen) {
        AuditRecord refused = AUDIT_RECORD_INIT, done = AUDIT_RECORD_INIT;
        Fixture f;

        fixture_init(&f);
        f.config.max_file_size = 16384;
        f.config.refusal_share_percent = 10;
        fixture_open(&f);
        refused.event = "unknown-method";
        refused.uid = 1000;
        refused.refusal = true;
        done.event = "open-context";
        done.uid = 0;
        done.result = "ok";

        /* Other records alone, past the share: a new log takes them for refusals. */
        ASSERT_TRUE(audit_log_refusal_room(f.log));
        for (unsigned i = 0; i < 16; i++)
                ASSERT_OK(audit_log_record(f.log, &done, NULL, NULL, NULL));
        ASSERT_TRUE(audit_log_refusal_room(f.log));
        fixture_close(&f);
        fixture_open(&f);
        ASSERT_FALSE(audit_log_refusal_room(f.log));

        /* Until other records start a new file, which has the whole share. */
        while (!audit_log_refusal_room(f.log))
                ASSERT_OK(audit_log_record(f.log, &done, NULL, NULL, NULL));
        ASSERT_OK(audit_log_record_for(f.log, AUDIT_POOL_UNNAMED, &refused, NULL, NULL, NULL));
        for (unsigned i = 0; i < 16; i++)
                ASSERT_OK(audit_log_record(f.log, &done, NULL, NULL, NULL));
        ASSERT_TRUE(audit_log_refusal_room(f.log));

        /* A reopen of the same files keeps the count (the file holds more than the share, of
         * other records): room still, and none once it is used. */
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        wait_reopened(&f);
        ASSERT_TRUE(audit_log_refusal_room(f.log));
        while (audit_log_refusal_room(f.log))
                ASSERT_OK(audit_log_record_for(f.log, AUDIT_POOL_UNNAMED, &refused, NULL, NULL, NULL));
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        wait_reopened(&f);
        ASSERT_FALSE(audit_log_refusal_room(f.log));
        fixture_done(&f);
}

/* Tallies are kept apart by event and by result, a missing result being one of its own; a uid's
 * kinds past BUDGET_KINDS_MAX are counted as event "refusal", be it only one. */
TEST(refusal_budget_tallies_kinds_apart) {
        _cleanup_(audit_budget_freep) AuditBudget *b = NULL;
        Summaries sum = {};
        Fixture f;

        budget_start(&f, 0, 60 * 1000000ULL, on_summary, &sum, &b);
        audit_budget_count(b, 1000, "call", NULL);
        audit_budget_count(b, 1000, "call", "org.varlink.service.InvalidParameter");
        audit_budget_count(b, 1000, "call", NULL);
        for (unsigned k = 0; k < 15; k++) { /* 17 kinds in all */
                char event[16];

                snprintf(event, sizeof(event), "kind-%u", k);
                audit_budget_count(b, 1000, event, NULL);
        }
        audit_budget_flush(b);
        run_until(f.base, &sum.n, 2 + 14 + 1);
        ASSERT_EQ(summary_count(&sum, 1000, "call", "n/a"), 2U);
        ASSERT_EQ(summary_count(&sum, 1000, "call", "org.varlink.service.InvalidParameter"), 1U);
        ASSERT_EQ(summary_count(&sum, 1000, "kind-13", "n/a"), 1U);
        ASSERT_EQ(summary_count(&sum, 1000, "kind-14", "n/a"), 0U);
        ASSERT_EQ(summary_count(&sum, 1000, "refusal", "n/a"), 1U);
        fixture_done(&f);
}

/* Over all uids, an interval records AUDIT_BUDGET_TOTAL_FACTOR times the per-uid budget, and a
 * new interval starts with all of it, and with room for as many uids, again. No uid, or one past
 * the uids kept, records nothing by itself. */
TEST(refusal_budget_total_and_uids_renewed) {
        _cleanup_(audit_budget_freep) AuditBudget *b = NULL;
        Fixture f;

        budget_start(&f, 1, 60 * 1000000ULL, NULL, NULL, &b);
        ASSERT_FALSE(audit_budget_take(b, AUDIT_UID_INVALID));
        for (uid_t uid = 1; uid <= AUDIT_BUDGET_TOTAL_FACTOR; uid++)
                ASSERT_TRUE(audit_budget_take(b, uid));
        ASSERT_FALSE(audit_budget_take(b, AUDIT_BUDGET_TOTAL_FACTOR + 1));
        audit_budget_flush(b);
        ASSERT_TRUE(audit_budget_take(b, AUDIT_BUDGET_TOTAL_FACTOR + 1));
        audit_budget_flush(b);

        /* 256 uids kept, each refused without a record of its own: the next uid has none. */
        for (uid_t uid = 1000; uid < 1000 + 256; uid++)
                audit_budget_count(b, uid, "call", NULL);
        ASSERT_FALSE(audit_budget_take(b, 2000));
        audit_budget_flush(b);
        for (uid_t uid = 3000; uid < 3000 + 256; uid++)
                audit_budget_count(b, uid, "call", NULL);
        audit_budget_flush(b);
        ASSERT_TRUE(audit_budget_take(b, 2000));
        fixture_done(&f);
}

/* The interval starts with the first refusal and ends on time, however many follow. */
TEST(refusal_budget_interval_not_extended) {
        _cleanup_(audit_budget_freep) AuditBudget *b = NULL;
        Summaries sum = {};
        struct timespec start, now;
        Fixture f;

        budget_start(&f, 0, 100 * 1000, on_summary, &sum, &b);
        ASSERT_OK(clock_gettime(CLOCK_MONOTONIC, &start));
        do {
                struct timeval tv = { 0, 10000 };

                audit_budget_count(b, 1000, "call", NULL);
                event_base_loopexit(f.base, &tv);
                event_base_loop(f.base, EVLOOP_ONCE);
                ASSERT_OK(clock_gettime(CLOCK_MONOTONIC, &now));
        } while (sum.n == 0 && now.tv_sec - start.tv_sec < 30);
        ASSERT_GE(sum.n, 1U);
        b = audit_budget_free(b); /* its last counts go to the log: before the log goes */
        fixture_done(&f);
}

typedef struct SummaryTotals {
        size_t n, n_no_uid, n_kinds_of_uids;
        uint64_t count, count_no_uid;
} SummaryTotals;

static void on_summary_total(AuditLog *a, const AuditRecord *rec, const char *line, size_t len, void *userdata) {
        SummaryTotals *t = userdata;

        t->n++;
        t->n_no_uid += rec->uid == AUDIT_UID_INVALID;
        t->n_kinds_of_uids += rec->uid != AUDIT_UID_INVALID && !streq(rec->event, "refusal");
        t->count += rec->count;
        if (rec->uid == AUDIT_UID_INVALID)
                t->count_no_uid += rec->count;
}

/* One user may have many uids: however many refuse, an interval's summaries are bounded, those
 * of uids past the bound counted under no uid, and every refusal still counted. */
TEST(refusal_budget_is_bounded_over_many_uids) {
        _cleanup_(audit_budget_freep) AuditBudget *b = NULL;
        SummaryTotals t = {};
        Fixture f;

        budget_start(&f, 0, 60 * 1000000ULL, on_summary_total, &t, &b);
        /* Refusals of no uid first: their tallies take none of the uids' room. */
        for (unsigned k = 0; k < 16; k++) {
                char event[16];

                snprintf(event, sizeof(event), "kind-%u", k);
                audit_budget_count(b, AUDIT_UID_INVALID, event, "org.varlink.service.MethodNotFound");
        }
        for (uid_t uid = 100000; uid < 102000; uid++)
                for (unsigned k = 0; k < 20; k++) {
                        char event[16];

                        snprintf(event, sizeof(event), "kind-%u", k);
                        ASSERT_FALSE(audit_budget_take(b, uid));
                        audit_budget_count(b, uid, event, "org.varlink.service.MethodNotFound");
                }
        audit_budget_flush(b);
        /* 256 tallies (16 kinds of the first 16 uids), a catch-all for each of the 256 uids
         * kept, and the 16 kinds and catch-all of the uids past them. */
        run_until(f.base, &t.n, 256 + 256 + 16 + 1);
        ASSERT_EQ(t.count, 2000U * 20U + 16U);
        ASSERT_EQ(t.n_no_uid, 16U + 1U);
        ASSERT_EQ(t.n_kinds_of_uids, 256U);
        ASSERT_EQ(t.count_no_uid, (2000U - 256U) * 20U + 16U);
        fixture_done(&f);
}

TEST(cancel_uses_no_sequence_number) {
        _cleanup_(audit_log_cancelp) AuditReservation *scoped = NULL;
        AuditReservation *a, *b;
        AuditRecord r = sample_record();
        AuditLogStatus st;
        uint64_t seq;
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        ASSERT_OK(audit_log_reserve(f.log, &a));
        ASSERT_OK(audit_log_reserve(f.log, &b));
        ASSERT_OK(audit_log_reserve(f.log, &scoped));
        ASSERT_NULL(audit_log_cancel(a));
        ASSERT_OK(audit_log_commit(b, &r, ack_callback, &f.acks, &seq));
        ASSERT_EQ(seq, 1);
        wait_acks(&f, 1);
        scoped = audit_log_cancel(scoped);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.n_reserved, 0);
        ASSERT_EQ(st.next_seq, 2);
        /* Invalid record: the reservation is consumed, no callback, no seq. */
        ASSERT_OK(audit_log_reserve(f.log, &a));
        ASSERT_ERRNO(audit_log_commit(a, &(AuditRecord){}, ack_callback, &f.acks, NULL), EINVAL);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.n_reserved, 0);
        ASSERT_EQ(st.next_seq, 2);
        fixture_done(&f);
}

TEST(commit_after_free_is_stale) {
        AuditReservation *res;
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        ASSERT_OK(audit_log_reserve(f.log, &res));
        fixture_close(&f);
        ASSERT_ERRNO(audit_log_commit(res, &(AuditRecord){ .event = "x" }, NULL, NULL, NULL), ESTALE);
        fixture_done(&f);
}

TEST(directory_is_locked) {
        AuditLog *second;
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        ASSERT_ERRNO(audit_log_open(f.base, &f.config, &second), EBUSY);
        fixture_done(&f);
}

/* tsmd's monitor holds the directory locked for all its workers, each taking the lock through
 * the monitor's fd (directory_fd): a lock that open file holds is the log's too, and outlives the
 * log; one another open file holds (another tsmd's) keeps the log out, and an fd of another
 * directory is no key to this one. */
TEST(directory_locked_through_the_callers_fd) {
        _cleanup_close_ int held = -EBADF, other = -EBADF;
        char *elsewhere = test_dir_new();
        AuditLog *second;
        Fixture f;

        fixture_init(&f);
        ASSERT_OK(held = open(f.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        ASSERT_OK(flock(held, LOCK_EX | LOCK_NB));
        ASSERT_ERRNO(audit_log_open(f.base, &f.config, &second), EBUSY);
        ASSERT_OK(other = open(elsewhere, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        f.config.directory_fd = other;
        ASSERT_ERRNO(audit_log_open(f.base, &f.config, &second), EBUSY);

        f.config.directory_fd = held;
        fixture_open(&f);
        commit_n(&f, 3);
        fixture_close(&f);
        f.config.directory_fd = -EBADF;
        ASSERT_ERRNO(audit_log_open(f.base, &f.config, &second), EBUSY);
        f.config.directory_fd = held;
        fixture_open(&f);
        ASSERT_EQ(commit_one(&f, &(AuditRecord){ .event = "x" }), 4u);
        fixture_done(&f);
        test_dir_remove(elsewhere);
}

static mode_t dir_mode(const char *dir) {
        struct stat st;

        ASSERT_OK(stat(dir, &st));
        return st.st_mode & 07777;
}

/* Whoever may write the directory may delete or replace records: group and others lose write
 * access when the log opens it and when a reopen does; someone else's is refused. */
TEST(directory_writable_by_others_is_made_private) {
        Fixture f;

        fixture_init(&f);
        ASSERT_OK(chmod(f.dir, 02777));
        fixture_open(&f);
        ASSERT_EQ(dir_mode(f.dir), 02755U);
        commit_n(&f, 2);
        wait_acks(&f, 2);

        /* The record after it is written once the reopen is done. */
        ASSERT_OK(chmod(f.dir, 0770));
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        commit_n(&f, 1);
        wait_acks(&f, 3);
        ASSERT_EQ(dir_mode(f.dir), 0750U);
        assert_acks_ok(&f, 1);
        fixture_close(&f);

        /* Write access by others alone, or by the group alone, is as bad as by both. */
        static const mode_t modes[] = { 0757, 0772, 0703 };
        for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
                ASSERT_OK(chmod(f.dir, modes[i]));
                fixture_open(&f);
                ASSERT_EQ(dir_mode(f.dir), modes[i] & 07755);
                fixture_close(&f);
        }

        if (geteuid() == 0) {
                ASSERT_OK(chown(f.dir, 65534, 65534));
                ASSERT_OK(chmod(f.dir, 0777));
                ASSERT_ERRNO(audit_log_open(f.base, &f.config, &f.log), EPERM);
                ASSERT_EQ(dir_mode(f.dir), 0777U);
                ASSERT_OK(chown(f.dir, 0, 0));
        }
        fixture_done(&f);
}

/* The log's status (GetCounters' auditJournalDropped, tsmd_audit_journal_dropped_total) counts the
 * records its journal mirror dropped past MaxJournalBacklog=; the log itself has every one. */
TEST(journal_drops_reach_the_status) {
        _cleanup_free_ char *log = NULL;
        AuditLogStatus st;
        Fixture f;
        int saved;

        fixture_init(&f);
        slow_journald_reset();
        f.config.journal = true;
        f.config.journal_max_queued = 3;
        f.config.journal_send = slow_journald_send;
        fixture_open(&f);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_TRUE(st.journal);
        ASSERT_EQ(st.n_journal_dropped, 0u);

        commit_n(&f, 1);
        wait_acks(&f, 1);
        slow_journald_wait_called(1);
        saved = log_capture_begin();
        commit_n(&f, 3 + 7);
        wait_acks(&f, 11);
        log = log_capture_end(saved);
        ASSERT_OK(audit_log_get_status(f.log, &st));
        ASSERT_EQ(st.n_journal_dropped, 7u);
        ASSERT_EQ(count_occurrences(log, "Audit journal mirror dropped 1 records"), 1u);
        assert_acks_ok(&f, 1);
        assert_files(&f, 1, 11);

        slow_journald_release();
        fixture_done(&f);
        ASSERT_EQ(slow_journald_sent(), 4u);
}

TEST(bad_config) {
        AuditConfig c;
        AuditLog *a;
        struct event_base *base = event_base_new();

        test_config(&c, "/tmp");
        c.n_files = 1;
        ASSERT_ERRNO(audit_log_open(base, &c, &a), EINVAL);
        test_config(&c, NULL);
        ASSERT_ERRNO(audit_log_open(base, &c, &a), EINVAL);
        test_config(&c, "/tmp");
        c.max_in_flight = 0;
        ASSERT_ERRNO(audit_log_open(base, &c, &a), EINVAL);
        test_config(&c, "/tmp");
        c.max_in_flight_per_uid = 0;
        ASSERT_ERRNO(audit_log_open(base, &c, &a), EINVAL);
        test_config(&c, "/tmp");
        c.journal = true;
        c.journal_max_queued = 0;
        ASSERT_ERRNO(audit_log_open(base, &c, &a), EINVAL);
        event_base_free(base);
}

typedef struct Collected {
        uint64_t seqs[1000];
        size_t n;
        unsigned limit;
} Collected;

static int collect(json_object *record, uint64_t seq, void *userdata) {
        Collected *c = userdata;

        c->seqs[c->n++] = seq;
        return c->limit > 0 && c->n >= c->limit ? 1 : 0;
}

/* Runs q through the log's query threads, appending to *c (at most c->limit, if set). */
static void query_log(Fixture *f, const AuditQueryFilter *q, Collected *c) {
        QueryResult r;

        query_wait(f->base, f->log, q, c->limit > 0 ? c->limit : SIZE_MAX, &r);
        ASSERT_OK(r.error);
        for (size_t i = 0; i < query_result_n(&r); i++)
                c->seqs[c->n++] = query_result_seq(&r, i);
        query_result_done(&r);
}

TEST(query_by_range_and_filters) {
        static const char *const pcis[] = { "0000:01:00.0", "0000:02:00.0" };
        static const char *const results[] = { "ok", "io.tsmd.PermissionDenied" };
        AuditQueryFilter q;
        Collected c = {};
        Fixture f;

        fixture_init(&f);
        f.config.max_file_size = AUDIT_RECORD_MAX;
        f.config.n_files = 100;
        fixture_open(&f);
        for (unsigned i = 0; i < 120; i++) {
                AuditRecord r = sample_record();

                r.uid = 1000 + i % 3;
                r.pci = pcis[i % 2];
                r.scope = i % 4 == 0 ? "state-change" : "info";
                r.result = results[i % 5 == 0];
                (void) commit_one(&f, &r);
        }
        wait_acks(&f, 120);

        q = AUDIT_QUERY_FILTER_INIT;
        query_log(&f, &q, &c);
        ASSERT_EQ(c.n, 120);
        for (size_t i = 0; i < c.n; i++)
                ASSERT_EQ(c.seqs[i], i + 1);

        c = (Collected){};
        q.seq_from = 50;
        q.seq_to = 59;
        query_log(&f, &q, &c);
        ASSERT_EQ(c.n, 10);
        ASSERT_EQ(c.seqs[0], 50);
        ASSERT_EQ(c.seqs[9], 59);

        /* seq i+1 has uid 1000 + i%3, pci i%2, scope state-change iff i%4 == 0, denied iff i%5 == 0. */
        c = (Collected){};
        q = AUDIT_QUERY_FILTER_INIT;
        q.uid = 1001;
        query_log(&f, &q, &c);
        ASSERT_EQ(c.n, 40);
        for (size_t i = 0; i < c.n; i++)
                ASSERT_EQ((c.seqs[i] - 1) % 3, 1);

        c = (Collected){};
        q = AUDIT_QUERY_FILTER_INIT;
        q.pci = "0000:02:00.0";
        q.scope = "info";
        query_log(&f, &q, &c);
        ASSERT_EQ(c.n, 60);
        c = (Collected){};
        q = AUDIT_QUERY_FILTER_INIT;
        q.result = "io.tsmd.PermissionDenied";
        q.scope = "state-change";
        query_log(&f, &q, &c);
        ASSERT_EQ(c.n, 6); /* i % 20 == 0 */

        /* The callback can stop the walk. */
        c = (Collected){ .limit = 7 };
        q = AUDIT_QUERY_FILTER_INIT;
        query_log(&f, &q, &c);
        ASSERT_EQ(c.n, 7);
        fixture_done(&f);
}

/* Runs q over the log's current file, collecting into *c (reset first). */
static void query_file(const Fixture *f, const AuditQueryFilter *q, Collected *c, AuditQueryStats *stats) {
        char path[4096];
        int fd;

        snprintf(path, sizeof(path), "%s/audit.log", f->dir);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        *c = (Collected){};
        ASSERT_OK(audit_query_fds(&fd, 1, q, NULL, NULL, collect, c, stats));
        close(fd);
}

/* A query for a range reads the records before it without parsing them and stops after it. */
TEST(query_reads_only_its_range) {
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        AuditQueryStats stats;
        Collected c;
        Fixture f;

        fixture_with_records(&f, 300);
        q.seq_from = 100;
        q.seq_to = 105;
        query_file(&f, &q, &c, &stats);
        ASSERT_EQ(c.n, 6);
        ASSERT_EQ(c.seqs[0], 100);
        ASSERT_EQ(stats.n_parsed, 7); /* the 6, and the one that ends it */
        ASSERT_EQ(stats.n_scanned, 106); /* and the 99 before, unparsed */

        /* A damaged line does not end it, whatever seq it starts with. */
        append_bytes(f.dir, "audit.log", "{\"seq\":999,\"brok\n{\"seq\":301}\n", 29);
        q.seq_from = 299;
        q.seq_to = 400;
        query_file(&f, &q, &c, &stats);
        ASSERT_EQ(c.n, 3); /* 299, 300, 301 */
        ASSERT_EQ(c.seqs[2], 301);
        ASSERT_EQ(stats.n_damaged, 1);
        fixture_done(&f);
}

/* A record whose seq repeats the one before it is damage, answered once; the one after the last
 * the log committed (seq_last) is a record being written and stands, one past it is damage. */
TEST(query_takes_seq_last_plus_one_and_skips_a_repeated_seq) {
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        AuditQueryStats stats;
        Collected c;
        Fixture f;

        fixture_with_records(&f, 3);
        append_bytes(f.dir, "audit.log", "{\"seq\":3}\n{\"seq\":4}\n{\"seq\":5}\n", 30);
        q.seq_last = 4;
        query_file(&f, &q, &c, &stats);
        ASSERT_EQ(c.n, 5);
        for (size_t i = 0; i < c.n; i++)
                ASSERT_EQ(c.seqs[i], i + 1);
        ASSERT_EQ(stats.n_damaged, 1);

        q.seq_last = 3;
        query_file(&f, &q, &c, &stats);
        ASSERT_EQ(c.n, 4);
        ASSERT_EQ(c.seqs[3], 4);
        ASSERT_EQ(stats.n_damaged, 2);
        fixture_done(&f);
}

TEST(query_skips_damage) {
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        AuditQueryStats stats;
        Collected c;
        Fixture f;

        fixture_with_records(&f, 3);
        append_bytes(f.dir, "audit.log", "not json\n", 9);
        {
                char *big = malloc(200000);
                memset(big, 'x', 200000);
                append_bytes(f.dir, "audit.log", big, 200000);
                free(big);
        }
        append_bytes(f.dir, "audit.log", "\n{\"seq\":4}\n", 11);
        query_file(&f, &q, &c, &stats);
        ASSERT_EQ(c.n, 4);
        ASSERT_EQ(stats.n_damaged, 2);
        fixture_done(&f);
}

/* Appends a record of seq, event and time to dir's audit.log, as the log writes it. */
static void append_record(const char *dir, uint64_t seq, const char *event, uint64_t realtime_usec) {
        AuditRecord r = sample_record();
        _cleanup_free_ char *line = NULL;
        size_t len;

        r.seq = seq;
        r.event = event;
        r.realtime_usec = realtime_usec;
        ASSERT_OK(audit_record_serialize(&r, &line, &len));
        append_bytes(dir, "audit.log", line, len);
}

/* Runs q over the file, expecting exactly the seqs want[0..n). */
static void expect_seqs(const Fixture *f, const AuditQueryFilter *q, const uint64_t *want, size_t n) {
        Collected c;

        query_file(f, q, &c, NULL);
        if (c.n != n)
                TEST_FAIL("%zu records matched, expected %zu", c.n, n);
        for (size_t i = 0; i < n; i++)
                ASSERT_EQ(c.seqs[i], want[i]);
}

/* The event filter and the time window: time is judged record by record, seq order being no
 * time order once the clock was set back (seq 4 is older than all before it). */
TEST(query_by_event_and_time_window) {
        const uint64_t t0 = UINT64_C(1700000000000000); /* 2023-11-14T22:13:20Z */
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        Fixture f = { .dir = test_dir_new() };

        append_record(f.dir, 1, "open-context", t0);
        append_record(f.dir, 2, "bind", t0 + 1000000);
        append_record(f.dir, 3, "bind", t0 + 2000000);
        append_record(f.dir, 4, "bind", t0 - 10000000); /* the clock stepped back */
        append_record(f.dir, 5, "guest-request", t0 + 3000000);
        append_record(f.dir, 6, "bind", t0 + 3000001);
        /* A record whose time does not read is in no window, but found without one. */
        {
                static const char line[] = "{\"seq\":7,\"time\":\"yesterday\",\"event\":\"bind\"}\n";

                append_bytes(f.dir, "audit.log", line, strlen(line));
        }

        q.event = "bind";
        expect_seqs(&f, &q, (const uint64_t[]){ 2, 3, 4, 6, 7 }, 5);
        q.event = "close-context";
        expect_seqs(&f, &q, NULL, 0);

        /* since inclusive, until exclusive, to the microsecond. */
        q = AUDIT_QUERY_FILTER_INIT;
        q.since_usec = t0 + 1000000;
        q.until_usec = t0 + 3000000;
        expect_seqs(&f, &q, (const uint64_t[]){ 2, 3 }, 2);
        q.until_usec = t0 + 3000001;
        expect_seqs(&f, &q, (const uint64_t[]){ 2, 3, 5 }, 3);
        /* Past a record after the window (seq 5, 6), one inside it still comes (seq 4). */
        q.since_usec = t0 - 10000000;
        q.until_usec = t0;
        expect_seqs(&f, &q, (const uint64_t[]){ 4 }, 1);
        q.until_usec = UINT64_MAX;
        q.since_usec = t0 + 3000000;
        expect_seqs(&f, &q, (const uint64_t[]){ 5, 6 }, 2);
        q = AUDIT_QUERY_FILTER_INIT;
        q.until_usec = t0 + 1;
        expect_seqs(&f, &q, (const uint64_t[]){ 1, 4 }, 2);
        q.until_usec = t0;
        q.since_usec = t0;
        expect_seqs(&f, &q, NULL, 0);

        /* With the seq range and the event. */
        q = AUDIT_QUERY_FILTER_INIT;
        q.seq_from = 3;
        q.event = "bind";
        q.since_usec = t0 - 20000000;
        q.until_usec = t0 + 2500000;
        expect_seqs(&f, &q, (const uint64_t[]){ 3, 4 }, 2);
        test_dir_remove(f.dir);
}

/* QueryAudit's parameters: an event no record can have, a negative time or an until before since
 * is refused by name (InvalidParameter), where it matched nothing. */
TEST(query_params_refuse_what_no_record_has) {
        static const struct {
                const char *params, *invalid;
        } bad[] = {
                { "{\"event\":\"bogus\"}", "event" },
                { "{\"event\":\"\"}", "event" },
                { "{\"event\":\"Bind\"}", "event" },
                { "{\"event\":\"io.tsmd.Admin.Bogus\"}", "event" },
                { "{\"event\":\"io.tsmd.Nothing.ListDevices\"}", "event" },
                { "{\"event\":\"ListDevices\"}", "event" },
                { "{\"sinceUsec\":-1}", "sinceUsec" },
                { "{\"untilUsec\":-1}", "untilUsec" },
                { "{\"sinceUsec\":2,\"untilUsec\":1}", "untilUsec" },
                { "{\"uid\":-1}", "uid" },
        };
        static const char *const good[] = {
                "{\"event\":\"guest-request\"}", "{\"event\":\"records-lost\"}",
                "{\"event\":\"io.tsmd.Admin.ListDevices\"}", "{\"event\":\"io.tsmd.Guest.OpenContext\"}",
                "{\"event\":\"org.varlink.service.GetInfo\"}", "{\"sinceUsec\":0,\"untilUsec\":0}",
                "{\"sinceUsec\":5,\"untilUsec\":5}", "{\"sinceUsec\":null,\"untilUsec\":null,\"event\":null}",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_json_ json_object *p = json_tokener_parse(bad[i].params);
                const char *invalid = NULL;
                AuditQueryFilter q;
                size_t limit;

                ASSERT_NOT_NULL(p);
                ASSERT_ERRNO(audit_query_params_parse(p, AUDIT_MAX_QUERY_RECORDS_DEFAULT, &q, &limit, NULL, &invalid),
                             EINVAL);
                ASSERT_STREQ(invalid, bad[i].invalid);
        }
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_json_ json_object *p = json_tokener_parse(good[i]);
                const char *invalid = NULL;
                AuditQueryFilter q;
                size_t limit;

                ASSERT_NOT_NULL(p);
                if (audit_query_params_parse(p, AUDIT_MAX_QUERY_RECORDS_DEFAULT, &q, &limit, NULL, &invalid) < 0)
                        TEST_FAIL("%s refused (%s)", good[i], strna(invalid));
        }

        {
                _cleanup_json_ json_object *p =
                        json_tokener_parse("{\"event\":\"bind\",\"sinceUsec\":3,\"untilUsec\":9}");
                const char *invalid = NULL;
                AuditQueryFilter q;
                size_t limit;

                ASSERT_OK(audit_query_params_parse(p, AUDIT_MAX_QUERY_RECORDS_DEFAULT, &q, &limit, NULL, &invalid));
                ASSERT_STREQ(q.event, "bind");
                ASSERT_EQ(q.since_usec, 3u);
                ASSERT_EQ(q.until_usec, 9u);
        }
        {
                _cleanup_json_ json_object *p = json_tokener_parse("{}");
                const char *invalid = NULL;
                AuditQueryFilter q;
                size_t limit;

                ASSERT_OK(audit_query_params_parse(p, AUDIT_MAX_QUERY_RECORDS_DEFAULT, &q, &limit, NULL, &invalid));
                ASSERT_NULL(q.event);
                ASSERT_EQ(q.since_usec, 0u);
                ASSERT_EQ(q.until_usec, UINT64_MAX);
        }
}

/* QueryAudit's limit is at most [Audit] MaxQueryRecords= (here 3), and that when none is given;
 * where it is tsmd's rather than the caller's, the caller is to be told where to go on. Below 1
 * is refused by name. */
TEST(query_params_limit_is_at_most_max_query_records) {
        static const struct {
                const char *params;
                size_t limit;
                bool capped;
        } cases[] = {
                { "{}", 3, true },
                { "{\"limit\":null}", 3, true },
                { "{\"limit\":1}", 1, false },
                { "{\"limit\":3}", 3, false },
                { "{\"limit\":4}", 3, true },
                { "{\"limit\":9223372036854775807}", 3, true },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_json_ json_object *p = json_tokener_parse(cases[i].params);
                const char *invalid = NULL;
                AuditQueryFilter q;
                size_t limit = 0;
                bool capped = !cases[i].capped;

                ASSERT_NOT_NULL(p);
                ASSERT_OK(audit_query_params_parse(p, 3, &q, &limit, &capped, &invalid));
                if (limit != cases[i].limit || capped != cases[i].capped)
                        TEST_FAIL("%s: limit %zu%s, expected %zu%s", cases[i].params, limit, capped ? " (capped)" : "",
                                  cases[i].limit, cases[i].capped ? " (capped)" : "");
        }
        for (size_t i = 0; i < 2; i++) {
                _cleanup_json_ json_object *p = json_tokener_parse(i == 0 ? "{\"limit\":0}" : "{\"limit\":-1}");
                const char *invalid = NULL;
                AuditQueryFilter q;
                size_t limit;

                ASSERT_ERRNO(audit_query_params_parse(p, 3, &q, &limit, NULL, &invalid), EINVAL);
                ASSERT_STREQ(invalid, "limit");
        }
}

typedef struct ListenerState {
        uint64_t seqs[200];
        size_t n;
        unsigned destroyed;
        AuditListener *self; /* freed from its own callback when n reaches stop_at */
        size_t stop_at;
} ListenerState;

static void on_record(AuditLog *a, const AuditRecord *record, const char *line, size_t len,
                      void *userdata) {
        ListenerState *s = userdata;

        ASSERT_TRUE(len > 0 && line[len - 1] == '\n');
        ASSERT_EQ(record->seq, strtoull(line + strlen("{\"seq\":"), NULL, 10));
        s->seqs[s->n++] = record->seq;
        if (s->self && s->n == s->stop_at)
                s->self = audit_listener_free(s->self);
}

static void on_destroy(void *userdata) {
        ListenerState *s = userdata;
        s->destroyed++;
}

TEST(listeners_see_every_record_once) {
        ListenerState all = {}, floating = {}, once = { .stop_at = 10 };
        AuditListener *l;
        Fixture f;

        fixture_init(&f);
        f.config.max_file_size = AUDIT_RECORD_MAX;
        f.config.n_files = 100;
        fixture_open(&f);
        ASSERT_OK(audit_log_add_listener(f.log, on_record, &all, on_destroy, &l));
        ASSERT_OK(audit_log_add_listener(f.log, on_record, &floating, on_destroy, NULL));
        ASSERT_OK(audit_log_add_listener(f.log, on_record, &once, on_destroy, &once.self));

        /* A failed record is not seen. */
        commit_n(&f, 50);
        wait_acks(&f, 50);
        atomic_store(&faults.fdatasync_errno, EIO);
        commit_n(&f, 1);
        wait_acks(&f, 51);
        atomic_store(&faults.fdatasync_errno, 0);
        ASSERT_OK(audit_log_reopen_full(f.log, NULL, NULL));
        wait_healthy(&f);
        commit_n(&f, 50);
        wait_acks(&f, 101);

        ASSERT_EQ(all.n, 100);
        for (size_t i = 0; i < all.n; i++)
                ASSERT_EQ(all.seqs[i], i + 1);
        ASSERT_EQ(floating.n, 100);
        ASSERT_EQ(once.n, 10);
        ASSERT_EQ(once.destroyed, 1);
        ASSERT_NULL(once.self);

        l = audit_listener_free(l);
        ASSERT_EQ(all.destroyed, 1);
        ASSERT_EQ(floating.destroyed, 0);
        fixture_close(&f);
        ASSERT_EQ(floating.destroyed, 1);
        ASSERT_EQ(all.destroyed, 1);
        ASSERT_EQ(once.destroyed, 1);
        fixture_done(&f);
}

TEST(listener_outlives_log) {
        ListenerState s = {};
        AuditListener *l;
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        ASSERT_OK(audit_log_add_listener(f.log, on_record, &s, on_destroy, &l));
        commit_n(&f, 3);
        fixture_close(&f);
        ASSERT_EQ(s.n, 3);
        ASSERT_EQ(s.destroyed, 1);
        l = audit_listener_free(l);
        ASSERT_EQ(s.destroyed, 1);
        fixture_done(&f);
}

typedef struct Totals {
        uint64_t requests, errors, latency;
        size_t keys;
        char first_key[32];
} Totals;

static int sum_counters(AuditCounterDimension d, const char *key, const AuditCounterStats *s,
                        void *userdata) {
        Totals *t = userdata;
        uint64_t bucket_total = 0;

        for (unsigned i = 0; i < AUDIT_LATENCY_BUCKETS; i++)
                bucket_total += s->latency_buckets[i];
        ASSERT_EQ(bucket_total, s->n_latency);
        if (t->keys++ == 0)
                snprintf(t->first_key, sizeof(t->first_key), "%s", key);
        t->requests += s->n_requests;
        t->errors += s->n_errors;
        t->latency += s->latency_usec_sum;
        return 0;
}

TEST(counters_add_up) {
        AuditCounterStats st;
        AuditCounters *c;
        uint64_t latency_total = 0;
        Fixture f;

        fixture_init(&f);
        fixture_open(&f);
        for (unsigned i = 0; i < 90; i++) {
                AuditRecord r = sample_record();

                r.uid = i % 3 == 0 ? 10 : 9;
                r.backend = i % 2 ? "emulated" : "sev-tio";
                r.result = i % 10 == 0 ? "io.tsmd.NoSuchDevice" : "ok";
                r.latency_usec = i * 7;
                latency_total += i * 7;
                if (i == 89) {
                        r.latency_usec = AUDIT_U64_NONE;
                        latency_total -= 89 * 7;
                        r.scope = NULL;
                }
                (void) commit_one(&f, &r);
        }
        wait_acks(&f, 90);
        c = audit_log_get_counters(f.log);

        for (AuditCounterDimension d = 0; d < _AUDIT_COUNTER_DIMENSION_MAX; d++) {
                Totals t = {};
                ASSERT_OK(audit_counters_foreach(c, d, sum_counters, &t));
                ASSERT_EQ(t.requests, 90);
                ASSERT_EQ(t.errors, 9);
                ASSERT_EQ(t.latency, latency_total);
                if (d == AUDIT_COUNTER_UID) {
                        ASSERT_EQ(t.keys, 2);
                        ASSERT_STREQ(t.first_key, "9"); /* numeric order: 9 before 10 */
                }
        }
        ASSERT_OK(audit_counters_get(c, AUDIT_COUNTER_UID, "10", &st));
        ASSERT_EQ(st.n_requests, 30);
        ASSERT_EQ(st.n_errors, 3); /* i % 10 == 0 and i % 3 == 0: i = 0, 30, 60 */
        fixture_done(&f);
}

TEST(counters_bound_keys) {
        _cleanup_(audit_counters_freep) AuditCounters *c = NULL;
        AuditCounterStats st;

        ASSERT_OK(audit_counters_new(&c));
        for (unsigned i = 0; i < 3 * AUDIT_COUNTERS_KEYS_MAX; i++) {
                AuditRecord r = sample_record();
                char scope[32];

                snprintf(scope, sizeof(scope), "scope-%u", i);
                r.scope = scope;
                ASSERT_OK(audit_counters_add(c, &r));
        }
        ASSERT_OK(audit_counters_get(c, AUDIT_COUNTER_SCOPE, AUDIT_COUNTERS_OTHER, &st));
        ASSERT_EQ(st.n_requests, 2 * AUDIT_COUNTERS_KEYS_MAX + 1);
        ASSERT_ERRNO(audit_counters_get(c, AUDIT_COUNTER_SCOPE, "scope-3000", &st), ENOENT);
}

/* A summary of refusals stands for its count of calls, errors all, none of them timed. A dimension
 * that does not exist is refused. */
TEST(counters_count_a_summary_as_its_calls) {
        _cleanup_(audit_counters_freep) AuditCounters *c = NULL;
        AuditCounterStats st;
        AuditRecord r = sample_record();

        ASSERT_OK(audit_counters_new(&c));
        r.uid = 7;
        r.result = "org.varlink.service.MethodNotFound";
        r.count = 5;
        r.latency_usec = AUDIT_U64_NONE;
        ASSERT_OK(audit_counters_add(c, &r));
        ASSERT_OK(audit_counters_get(c, AUDIT_COUNTER_UID, "7", &st));
        ASSERT_EQ(st.n_requests, 5u);
        ASSERT_EQ(st.n_errors, 5u);
        ASSERT_EQ(st.n_latency, 0u);

        ASSERT_ERRNO(audit_counters_get(c, _AUDIT_COUNTER_DIMENSION_MAX, "7", &st), EINVAL);
        ASSERT_ERRNO(audit_counters_get(c, (AuditCounterDimension) -1, "7", &st), EINVAL);
        ASSERT_ERRNO(audit_counters_foreach(c, _AUDIT_COUNTER_DIMENSION_MAX, sum_counters, &(Totals) {}), EINVAL);
        ASSERT_ERRNO(audit_counters_foreach(c, (AuditCounterDimension) -1, sum_counters, &(Totals) {}), EINVAL);
}

/* A scope name no backend declares is a client's text: recorded, but no key of the counters,
 * which it would fill with whatever a client sends, the real scopes pushed to "other". */
TEST(counters_take_no_unknown_scope_as_key) {
        _cleanup_(audit_counters_freep) AuditCounters *c = NULL;
        AuditCounterStats st;

        ASSERT_OK(audit_counters_new(&c));
        for (unsigned i = 0; i < 2 * AUDIT_COUNTERS_KEYS_MAX; i++) {
                AuditRecord r = sample_record();
                char scope[32];

                snprintf(scope, sizeof(scope), "bogus-%u", i);
                r.scope = scope;
                r.scope_unknown = true;
                ASSERT_OK(audit_counters_add(c, &r));
        }
        ASSERT_OK(audit_counters_get(c, AUDIT_COUNTER_SCOPE, AUDIT_COUNTERS_NULL, &st));
        ASSERT_EQ(st.n_requests, 2 * AUDIT_COUNTERS_KEYS_MAX);
        ASSERT_ERRNO(audit_counters_get(c, AUDIT_COUNTER_SCOPE, "bogus-0", &st), ENOENT);

        /* A scope a backend declares still has its key. */
        AuditRecord r = sample_record();
        r.scope = "info";
        ASSERT_OK(audit_counters_add(c, &r));
        ASSERT_OK(audit_counters_get(c, AUDIT_COUNTER_SCOPE, "info", &st));
        ASSERT_EQ(st.n_requests, 1u);
}

/* The uids' keys: those the filter admits (the ones the policy names), everyone else "other",
 * however many uids call; a key once made stays. */
static bool admit_low_uids(uid_t uid, void *userdata) {
        return uid < *(uid_t *) userdata;
}

TEST(counters_give_keys_to_uids_the_filter_admits) {
        _cleanup_(audit_counters_freep) AuditCounters *c = NULL;
        uid_t below = 100;
        AuditCounterStats st;
        AuditRecord r;

        ASSERT_OK(audit_counters_new(&c));
        /* Made before the filter: it stays. */
        r = sample_record();
        r.uid = 5000;
        ASSERT_OK(audit_counters_add(c, &r));
        audit_counters_set_uid_filter(c, admit_low_uids, &below);
        for (unsigned i = 0; i < 2 * AUDIT_COUNTERS_KEYS_MAX; i++) {
                r = sample_record();
                r.uid = 200000 + i;
                ASSERT_OK(audit_counters_add(c, &r));
        }
        r = sample_record();
        r.uid = 42;
        ASSERT_OK(audit_counters_add(c, &r));
        r.uid = 5000;
        ASSERT_OK(audit_counters_add(c, &r));

        ASSERT_OK(audit_counters_get(c, AUDIT_COUNTER_UID, AUDIT_COUNTERS_OTHER, &st));
        ASSERT_EQ(st.n_requests, 2 * AUDIT_COUNTERS_KEYS_MAX);
        ASSERT_ERRNO(audit_counters_get(c, AUDIT_COUNTER_UID, "200000", &st), ENOENT);
        ASSERT_OK(audit_counters_get(c, AUDIT_COUNTER_UID, "42", &st));
        ASSERT_EQ(st.n_requests, 1u);
        ASSERT_OK(audit_counters_get(c, AUDIT_COUNTER_UID, "5000", &st));
        ASSERT_EQ(st.n_requests, 2u);
        /* A record of no client is "none", whatever the filter. */
        r = sample_record();
        r.uid = AUDIT_UID_INVALID;
        ASSERT_OK(audit_counters_add(c, &r));
        ASSERT_OK(audit_counters_get(c, AUDIT_COUNTER_UID, AUDIT_COUNTERS_NULL, &st));
        ASSERT_EQ(st.n_requests, 1u);
}

TEST_MAIN();
