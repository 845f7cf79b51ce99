/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * audit_log_reopen_full(): what its callback is told, and the failed state while a reopen is
 * pending (the stuck-disk cases are in test-audit-log.c). Runs in: tests.
 */

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "audit-test-util.h"
#include "harness.h"

typedef struct Reopened {
        size_t n;
        int error;
} Reopened;

static void on_reopened(AuditLog *a, int error, void *userdata) {
        Reopened *r = userdata;

        r->n++;
        r->error = error;
}

static void commit_one(AuditLog *a, Acks *acks) {
        AuditRecord r = sample_record();

        ASSERT_OK(audit_log_record(a, &r, ack_callback, acks, NULL));
}

/* A failed log refuses reservations until the reopen that repairs it has finished; reopens
 * asked for meanwhile are done once more, and every caller is told. */
TEST(failed_log_refuses_until_reopened) {
        _cleanup_free_ char *dir = test_dir_new();
        struct event_base *base = event_base_new();
        Reopened first = {}, second = {}, third = {};
        AuditReservation *res;
        AuditLogStatus st;
        AuditConfig c;
        AuditLog *a;
        Acks acks = {};
        unsigned fsyncs;

        ASSERT_NOT_NULL(base);
        test_config(&c, dir);
        ASSERT_OK(audit_log_open(base, &c, &a));
        commit_one(a, &acks);
        run_until(base, &acks.n, 1);
        atomic_store(&faults.fdatasync_errno, EIO);
        commit_one(a, &acks);
        run_until(base, &acks.n, 2);
        ASSERT_EQ(acks.errors[1], -EIO);
        atomic_store(&faults.fdatasync_errno, 0);

        fsyncs = atomic_load(&faults.n_fsync);
        ASSERT_OK(audit_log_reopen_full(a, on_reopened, &first));
        ASSERT_OK(audit_log_reopen_full(a, on_reopened, &second));
        ASSERT_OK(audit_log_reopen_full(a, on_reopened, &third));
        ASSERT_OK(audit_log_get_status(a, &st));
        ASSERT_TRUE(st.reopen_pending);
        /* SECURITY: nothing is let through on the strength of a repair not yet made. */
        ASSERT_ERRNO(audit_log_reserve(a, &res), EIO);
        ASSERT_EQ(first.n, 0u);

        run_until(base, &third.n, 1);
        ASSERT_EQ(first.n, 1u);
        ASSERT_EQ(first.error, 0);
        ASSERT_EQ(second.n, 1u);
        ASSERT_EQ(second.error, 0);
        ASSERT_EQ(third.error, 0);
        ASSERT_EQ(atomic_load(&faults.n_fsync) - fsyncs, 2u);
        ASSERT_OK(audit_log_get_status(a, &st));
        ASSERT_FALSE(st.reopen_pending);
        ASSERT_EQ(st.failed, 0);
        ASSERT_EQ(st.next_seq, 2u); /* the failed record was taken back out of the file */
        commit_one(a, &acks);
        run_until(base, &acks.n, 3);
        ASSERT_EQ(acks.errors[2], 0);
        ASSERT_EQ(acks.seqs[2], 2u);

        a = audit_log_free(a);
        ASSERT_EQ(first.n + second.n + third.n, 3u);
        event_base_free(base);
        acks_done(&acks);
        test_dir_remove(TAKE_PTR(dir));
}

/* A reopen that fails leaves the log failed with its error, and says so; records committed
 * while it was pending (a healthy log took their reservations) fail with it, reported. The
 * next one, once the directory is back, continues the sequence. */
TEST(failing_reopen_reports_its_error) {
        _cleanup_free_ char *dir = test_dir_new(), *moved = NULL;
        struct event_base *base = event_base_new();
        Reopened reopened = {};
        AuditReservation *res;
        AuditLogStatus st;
        AuditConfig c;
        AuditLog *a;
        Acks acks = {};
        int fd;

        ASSERT_NOT_NULL(base);
        test_config(&c, dir);
        ASSERT_OK(audit_log_open(base, &c, &a));
        commit_one(a, &acks);
        run_until(base, &acks.n, 1);

        /* Not a directory at the path any more. */
        ASSERT_OK(asprintf(&moved, "%s.old", dir));
        ASSERT_OK(rename(dir, moved));
        fd = open(dir, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ASSERT_OK(fd);
        close(fd);

        ASSERT_OK(audit_log_reopen_full(a, on_reopened, &reopened));
        commit_one(a, &acks); /* held for the reopen */
        ASSERT_EQ(acks.n, 1u);
        run_until(base, &acks.n, 2);
        ASSERT_EQ(reopened.n, 1u);
        ASSERT_EQ(reopened.error, -ENOTDIR);
        ASSERT_EQ(acks.errors[1], -ENOTDIR);
        ASSERT_OK(audit_log_get_status(a, &st));
        ASSERT_EQ(st.failed, -ENOTDIR);
        ASSERT_ERRNO(audit_log_reserve(a, &res), ENOTDIR);

        ASSERT_OK(unlink(dir));
        ASSERT_OK(rename(moved, dir));
        reopened = (Reopened) {};
        ASSERT_OK(audit_log_reopen_full(a, on_reopened, &reopened));
        run_until(base, &reopened.n, 1);
        ASSERT_EQ(reopened.error, 0);
        commit_one(a, &acks);
        run_until(base, &acks.n, 3);
        ASSERT_EQ(acks.errors[2], 0);
        ASSERT_EQ(acks.seqs[2], 2u);

        a = audit_log_free(a);
        event_base_free(base);
        acks_done(&acks);
        test_dir_remove(TAKE_PTR(dir));
}

/* Freed with a reopen pending and another asked for after it: the first is carried out, the
 * record held for it written after it, and both callers told (the second one's is not done). */
TEST(free_with_reopens_pending_tells_every_caller) {
        _cleanup_free_ uint64_t *seqs = NULL;
        _cleanup_free_ char *dir = test_dir_new();
        struct event_base *base = event_base_new();
        Reopened first = {}, second = {};
        AuditConfig c;
        AuditLog *a;
        Acks acks = {};
        unsigned fsyncs;
        size_t n;

        ASSERT_NOT_NULL(base);
        test_config(&c, dir);
        ASSERT_OK(audit_log_open(base, &c, &a));
        commit_one(a, &acks);
        fsyncs = atomic_load(&faults.n_fsync);
        ASSERT_OK(audit_log_reopen_full(a, on_reopened, &first));
        ASSERT_OK(audit_log_reopen_full(a, on_reopened, &second));
        commit_one(a, &acks);

        a = audit_log_free(a);
        ASSERT_EQ(first.n, 1u);
        ASSERT_EQ(first.error, 0);
        ASSERT_EQ(second.n, 1u);
        ASSERT_EQ(second.error, 0);
        ASSERT_EQ(atomic_load(&faults.n_fsync) - fsyncs, 1u);
        ASSERT_EQ(acks.n, 2u);
        ASSERT_FALSE(acks.out_of_order);
        ASSERT_EQ(acks.errors[1], 0);
        ASSERT_EQ(acks.seqs[1], 2u);
        read_all_seqs(dir, c.n_files, &seqs, &n);
        ASSERT_EQ(n, 2u);

        event_base_free(base);
        acks_done(&acks);
        test_dir_remove(TAKE_PTR(dir));
}

TEST_MAIN();
