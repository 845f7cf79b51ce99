/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What an administrator is told of the audit log (AuditHealth, io.tsmd.Service.GetStatus): full
 * while it has no room and ok again by itself once it has, failed until a reopen works, the
 * owner told of each change; the calls refused for it counted, as no record has them; and what
 * a reopen says of a sequence that ends early: a notice for another directory at the path, an
 * error for files cut in place. Runs in: tests.
 */

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit-test-util.h"
#include "harness.h"
#include "log-capture.h"

/* The changes the owner was told of. */
typedef struct Told {
        size_t n;
        AuditHealth last;
} Told;

static void on_health(AuditLog *a, const AuditHealth *h, void *userdata) {
        Told *t = userdata;

        t->n++;
        t->last = *h;
}

static AuditHealth health_of(AuditLog *a) {
        AuditLogStatus st;

        ASSERT_OK(audit_log_get_status(a, &st));
        return st.health;
}

static uint64_t refused_of(AuditLog *a) {
        AuditLogStatus st;

        ASSERT_OK(audit_log_get_status(a, &st));
        return st.n_refused_unrecorded;
}

static void on_reopened(AuditLog *a, int error, void *userdata) {
        size_t *n = userdata;

        ASSERT_EQ(error, 0);
        (*n)++;
}

static void reopen_and_wait(struct event_base *base, AuditLog *a) {
        size_t n = 0;

        ASSERT_OK(audit_log_reopen_full(a, on_reopened, &n));
        run_until(base, &n, 1);
}

/* A file system without room: FULL from the open, the calls refused counted (not what tsmd owes
 * nor a refusal's record: no call was refused for those); ok again without a call once there is
 * room, the owner told. */
TEST(full_until_there_is_room_again) {
        _cleanup_free_ char *dir = test_dir_new();
        struct event_base *base = event_base_new();
        AuditRecord rec = sample_record();
        AuditReservation *res;
        Told told = {};
        AuditConfig c;
        AuditHealth h;
        AuditLog *a;

        ASSERT_NOT_NULL(base);
        test_config(&c, dir);
        atomic_store(&faults.fallocate_errno, ENOSPC);
        atomic_store(&faults.fstatvfs_avail, 0);
        ASSERT_OK(audit_log_open(base, &c, &a));
        audit_log_set_health_callback(a, on_health, &told);
        h = health_of(a);
        ASSERT_EQ(h.state, AUDIT_HEALTH_FULL);
        ASSERT_EQ(h.error, -ENOSPC);
        ASSERT_TRUE(h.since_usec > 0);
        ASSERT_STREQ(audit_health_state_to_string(h.state), "full");
        ASSERT_EQ(refused_of(a), 0u);

        ASSERT_ERRNO(audit_log_reserve_for(a, 1000, AUDIT_POOL_NAMED, &res), ENOSPC);
        ASSERT_ERRNO(audit_log_reserve_for(a, 1000, AUDIT_POOL_UNNAMED, &res), ENOSPC);
        ASSERT_EQ(refused_of(a), 2u);
        ASSERT_ERRNO(audit_log_record_owed(a, &rec, NULL, NULL, NULL), ENOSPC);
        ASSERT_ERRNO(audit_log_record_for(a, AUDIT_POOL_NAMED, &rec, NULL, NULL, NULL), ENOSPC);
        ASSERT_EQ(refused_of(a), 2u);
        ASSERT_EQ(told.n, 0u); /* full all along */

        /* Room again: the log finds it by itself. */
        atomic_store(&faults.fallocate_errno, 0);
        atomic_store(&faults.fstatvfs_avail, -1);
        run_until(base, &told.n, 1);
        ASSERT_EQ(told.last.state, AUDIT_HEALTH_OK);
        ASSERT_EQ(told.last.error, 0);
        ASSERT_TRUE(told.last.since_usec >= h.since_usec);
        ASSERT_EQ(health_of(a).state, AUDIT_HEALTH_OK);
        ASSERT_OK(audit_log_reserve_for(a, 1000, AUDIT_POOL_NAMED, &res));
        audit_log_cancel(res);
        ASSERT_EQ(refused_of(a), 2u);

        a = audit_log_free(a);
        event_base_free(base);
        test_dir_remove(TAKE_PTR(dir));
}

/* A write that fails: FAILED with its error, the call whose record it was and every call after it
 * counted, until a reopen works. */
TEST(failed_until_reopened) {
        _cleanup_free_ char *dir = test_dir_new();
        struct event_base *base = event_base_new();
        AuditRecord rec = sample_record();
        AuditReservation *res;
        Told told = {};
        Acks acks = {};
        AuditConfig c;
        AuditLog *a;

        ASSERT_NOT_NULL(base);
        test_config(&c, dir);
        ASSERT_OK(audit_log_open(base, &c, &a));
        audit_log_set_health_callback(a, on_health, &told);
        ASSERT_EQ(health_of(a).state, AUDIT_HEALTH_OK);

        atomic_store(&faults.fdatasync_errno, EIO);
        ASSERT_OK(audit_log_reserve_for(a, 1000, AUDIT_POOL_NAMED, &res));
        ASSERT_OK(audit_log_commit(res, &rec, ack_callback, &acks, NULL));
        run_until(base, &acks.n, 1);
        ASSERT_EQ(acks.errors[0], -EIO);
        ASSERT_EQ(told.n, 1u);
        ASSERT_EQ(told.last.state, AUDIT_HEALTH_FAILED);
        ASSERT_EQ(told.last.error, -EIO);
        ASSERT_EQ(refused_of(a), 1u); /* ran, answered AuditFailed */
        /* What tsmd owes failing is no refused call. */
        ASSERT_ERRNO(audit_log_record_owed(a, &rec, NULL, NULL, NULL), EIO);
        ASSERT_ERRNO(audit_log_reserve_for(a, 1000, AUDIT_POOL_NAMED, &res), EIO);
        ASSERT_EQ(refused_of(a), 2u);
        ASSERT_EQ(health_of(a).state, AUDIT_HEALTH_FAILED);

        atomic_store(&faults.fdatasync_errno, 0);
        reopen_and_wait(base, a);
        ASSERT_EQ(told.n, 2u);
        ASSERT_EQ(told.last.state, AUDIT_HEALTH_OK);
        ASSERT_EQ(told.last.error, 0);
        ASSERT_OK(audit_log_reserve_for(a, 1000, AUDIT_POOL_NAMED, &res));
        audit_log_cancel(res);
        ASSERT_EQ(refused_of(a), 2u);

        a = audit_log_free(a);
        event_base_free(base);
        acks_done(&acks);
        test_dir_remove(TAKE_PTR(dir));
}

static void commit_n(struct event_base *base, AuditLog *a, Acks *acks, size_t n) {
        AuditRecord rec = sample_record();
        size_t want = acks->n + n;

        for (size_t i = 0; i < n; i++)
                ASSERT_OK(audit_log_record(a, &rec, ack_callback, acks, NULL));
        run_until(base, &acks->n, want);
}

/* The documented repair, another file system mounted over the directory, leaves a log whose
 * records end before those acknowledged: no loss, they are in the old one, and the sequence goes
 * on. Before, that was logged as an error, "records were lost outside tsmd"; which is still what
 * a log cut in place is. */
TEST(a_reopen_into_another_directory_is_no_loss_a_log_cut_in_place_is) {
        _cleanup_free_ char *dir = test_dir_new(), *moved = NULL, *log = NULL;
        struct event_base *base = event_base_new();
        Acks acks = {};
        AuditConfig c;
        AuditLog *a;
        int saved;

        ASSERT_NOT_NULL(base);
        test_config(&c, dir);
        ASSERT_OK(audit_log_open(base, &c, &a));
        commit_n(base, a, &acks, 3);

        ASSERT_OK(asprintf(&moved, "%s.old", dir));
        ASSERT_OK(rename(dir, moved));
        ASSERT_OK(mkdir(dir, 0750));
        saved = log_capture_begin();
        reopen_and_wait(base, a);
        log = log_capture_end(saved);
        ASSERT_EQ(count_occurrences(log, "is another directory now"), 1u);
        ASSERT_EQ(count_occurrences(log, "those up to seq 3 are in the one it replaced. Continuing at seq 4."), 1u);
        ASSERT_EQ(count_occurrences(log, "lost outside tsmd"), 0u);
        log = mfree(log);
        commit_n(base, a, &acks, 1);
        ASSERT_EQ(acks.seqs[3], 4u);

        /* Cut in place: an error. */
        {
                _cleanup_free_ char *path = NULL;

                ASSERT_OK(asprintf(&path, "%s/audit.log", dir));
                ASSERT_OK(truncate(path, 0));
        }
        saved = log_capture_begin();
        reopen_and_wait(base, a);
        log = log_capture_end(saved);
        ASSERT_EQ(count_occurrences(log, "ends at seq 0 but seq 4 was acknowledged: records were lost outside tsmd"),
                  1u);
        ASSERT_EQ(count_occurrences(log, "another directory"), 0u);

        a = audit_log_free(a);
        event_base_free(base);
        acks_done(&acks);
        test_dir_remove(TAKE_PTR(moved));
        test_dir_remove(TAKE_PTR(dir));
}

TEST_MAIN();
