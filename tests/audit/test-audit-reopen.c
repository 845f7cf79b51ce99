/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * audit_log_reopen_full(): what its callback is told, the failed state while a reopen is
 * pending, and the reservations of calls that act, which wait for it (the stuck-disk cases of
 * records are in test-audit-log.c). Runs in: tests.
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

/* What a reservation that waited for a reopen was told. */
typedef struct Reserved {
        size_t n;
        int error;
        AuditReservation *res;
} Reserved;

static void on_reserved(AuditLog *a, AuditReservation *r, int error, void *userdata) {
        Reserved *w = userdata;

        ASSERT_TRUE(r == w->res);
        ASSERT_FALSE(audit_reservation_is_waiting(r));
        w->n++;
        w->error = error;
}

/* A reservation of a call that acts, made while a reopen is pending: it waits. */
static void reserve_waiting(AuditLog *a, uint64_t timeout_usec, Reserved *w) {
        *w = (Reserved) {};
        ASSERT_EQ(audit_log_reserve_to_act(a, 1000, AUDIT_POOL_NAMED, timeout_usec, on_reserved, w, &w->res), 1);
        ASSERT_TRUE(audit_reservation_is_waiting(w->res));
        ASSERT_EQ(w->n, 0u);
}

/* Makes another directory the one at dir's path (an administrator mounting another file system
 * there); the old one is at the returned path. */
static char *replace_dir(const char *dir) {
        char *moved = NULL;

        ASSERT_OK(asprintf(&moved, "%s.old", dir));
        ASSERT_OK(rename(dir, moved));
        ASSERT_OK(mkdir(dir, 0750));
        return moved;
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

/* A reopen that fails leaves the log failed with its error, and says so. A call that acts and
 * asked for room while it was pending is refused with that error, before it did anything;
 * records committed meanwhile of what happened anyway (a healthy log took their reservations,
 * as it does for refusals and for what tsmd did on its own) fail with it, reported. The next
 * one, once the directory is back, continues the sequence. */
TEST(failing_reopen_reports_its_error) {
        _cleanup_free_ char *dir = test_dir_new(), *moved = NULL;
        struct event_base *base = event_base_new();
        Reopened reopened = {};
        Reserved waited;
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
        /* SECURITY: not granted on the strength of files not opened yet. */
        reserve_waiting(a, 0, &waited);
        ASSERT_OK(audit_log_get_status(a, &st));
        ASSERT_EQ(st.n_waiting, 1u);
        ASSERT_EQ(st.n_reserved, 0u);
        run_until(base, &acks.n, 2);
        ASSERT_EQ(reopened.n, 1u);
        ASSERT_EQ(reopened.error, -ENOTDIR);
        ASSERT_EQ(acks.errors[1], -ENOTDIR);
        ASSERT_EQ(waited.n, 1u);
        ASSERT_EQ(waited.error, -ENOTDIR);
        ASSERT_ERRNO(audit_log_commit(waited.res, &(AuditRecord) { .event = "bind" }, NULL, NULL, NULL), ESTALE);
        ASSERT_OK(audit_log_get_status(a, &st));
        ASSERT_EQ(st.failed, -ENOTDIR);
        ASSERT_EQ(st.n_waiting, 0u);
        ASSERT_EQ(st.n_reserved, 0u);
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

/* SECURITY: a directory at the path that is not the worker's (someone who could write the parent
 * put it there, with an audit.log of theirs) is refused at a reopen, and the log fails closed;
 * once it is the worker's, the reopen takes it. */
TEST(reopen_refuses_a_directory_not_ours) {
        _cleanup_free_ char *dir = test_dir_new(), *moved = NULL;
        struct event_base *base = event_base_new();
        Reopened reopened = {};
        AuditLogStatus st;
        AuditConfig c;
        AuditLog *a;
        Acks acks = {};

        if (geteuid() != 0)
                SKIP("chown() to another uid needs root");
        ASSERT_NOT_NULL(base);
        test_config(&c, dir);
        ASSERT_OK(audit_log_open(base, &c, &a));
        commit_one(a, &acks);
        run_until(base, &acks.n, 1);

        moved = replace_dir(dir);
        ASSERT_OK(chown(dir, 65534, 65534));
        ASSERT_OK(audit_log_reopen_full(a, on_reopened, &reopened));
        run_until(base, &reopened.n, 1);
        ASSERT_EQ(reopened.error, -EPERM);
        ASSERT_OK(audit_log_get_status(a, &st));
        ASSERT_EQ(st.failed, -EPERM);

        ASSERT_OK(chown(dir, geteuid(), getegid()));
        reopened = (Reopened) {};
        ASSERT_OK(audit_log_reopen_full(a, on_reopened, &reopened));
        run_until(base, &reopened.n, 1);
        ASSERT_EQ(reopened.error, 0);
        commit_one(a, &acks);
        run_until(base, &acks.n, 2);
        ASSERT_EQ(acks.errors[1], 0);

        a = audit_log_free(a);
        event_base_free(base);
        acks_done(&acks);
        test_dir_remove(TAKE_PTR(moved));
        test_dir_remove(TAKE_PTR(dir));
}

/* The scenario of an administrator who mounts a nearly full file system over the audit directory
 * and reloads: a call that acts asks for room while the reopen is pending. It waits, and is
 * refused with ENOSPC once the reopen found no room in the new files, before it did anything;
 * nothing is lost that it would have owed. A reservation that does not act (a refusal's, a
 * read's) is taken meanwhile as before. Once there is room, calls that act are granted at once. */
TEST(reserve_to_act_during_a_reopen_into_a_full_directory_is_refused) {
        _cleanup_free_ char *dir = test_dir_new(), *moved = NULL;
        struct event_base *base = event_base_new();
        Reopened reopened = {};
        AuditReservation *res;
        Reserved waited;
        AuditLogStatus st;
        AuditConfig c;
        AuditLog *a;
        Acks acks = {};
        uint64_t seq;

        ASSERT_NOT_NULL(base);
        test_config(&c, dir);
        ASSERT_OK(audit_log_open(base, &c, &a));
        commit_one(a, &acks);
        run_until(base, &acks.n, 1);

        moved = replace_dir(dir);
        atomic_store(&faults.fallocate_errno, ENOSPC);
        atomic_store(&faults.fstatvfs_avail, 0);
        ASSERT_OK(audit_log_reopen_full(a, on_reopened, &reopened));
        reserve_waiting(a, 0, &waited);
        /* Not a call that acts: taken unchecked, as before. */
        ASSERT_OK(audit_log_reserve_for(a, 1000, AUDIT_POOL_NAMED, &res));
        res = audit_log_cancel(res);

        run_until(base, &waited.n, 1);
        ASSERT_EQ(waited.error, -ENOSPC);
        ASSERT_EQ(reopened.n, 1u);
        ASSERT_EQ(reopened.error, 0); /* the files are open; they have no room */
        ASSERT_ERRNO(audit_log_commit(waited.res, &(AuditRecord) { .event = "bind" }, NULL, NULL, NULL), ESTALE);
        ASSERT_OK(audit_log_get_status(a, &st));
        ASSERT_EQ(st.failed, 0);
        ASSERT_EQ(st.n_waiting, 0u);
        ASSERT_EQ(st.n_reserved, 0u);
        ASSERT_EQ(st.n_in_flight, 0u);
        /* Still no room, no reopen pending: refused at once, as before. */
        ASSERT_ERRNO(audit_log_reserve_to_act(a, 1000, AUDIT_POOL_NAMED, 0, on_reserved, &waited, &res), ENOSPC);

        /* Room again: granted at once (once the sync thread, asked for room by the refusal
         * before, saw it), and the sequence goes on in the new directory. */
        atomic_store(&faults.fallocate_errno, 0);
        atomic_store(&faults.fstatvfs_avail, -1);
        for (unsigned i = 0;; i++) {
                int r = audit_log_reserve_to_act(a, 1000, AUDIT_POOL_NAMED, 0, on_reserved, &waited, &res);

                if (r != -ENOSPC || i > 2000) {
                        ASSERT_EQ(r, 0);
                        break;
                }
                usleep(1000);
        }
        ASSERT_OK(audit_log_commit(res, &(AuditRecord) { .event = "bind", .uid = 1000 }, ack_callback, &acks, &seq));
        ASSERT_EQ(seq, 2u);
        run_until(base, &acks.n, 2);
        ASSERT_EQ(acks.errors[1], 0);
        ASSERT_EQ(waited.n, 1u); /* granted at once: not called */

        a = audit_log_free(a);
        event_base_free(base);
        acks_done(&acks);
        test_dir_remove(TAKE_PTR(moved));
        test_dir_remove(TAKE_PTR(dir));
}

/* The same into a directory with room: the call that acts waits for the reopen, no longer, and
 * its record goes to the new files, after the records held for the reopen. */
TEST(reserve_to_act_during_a_reopen_into_a_good_directory_is_granted_after_it) {
        _cleanup_free_ uint64_t *seqs = NULL;
        _cleanup_free_ char *dir = test_dir_new(), *moved = NULL;
        struct event_base *base = event_base_new();
        Reopened reopened = {};
        Reserved waited;
        AuditLogStatus st;
        AuditConfig c;
        AuditLog *a;
        Acks acks = {};
        size_t n;

        ASSERT_NOT_NULL(base);
        test_config(&c, dir);
        ASSERT_OK(audit_log_open(base, &c, &a));
        commit_one(a, &acks);
        run_until(base, &acks.n, 1);

        moved = replace_dir(dir);
        ASSERT_OK(audit_log_reopen_full(a, on_reopened, &reopened));
        commit_one(a, &acks); /* held for the reopen */
        reserve_waiting(a, 0, &waited);

        run_until(base, &waited.n, 1);
        ASSERT_EQ(waited.error, 0);
        ASSERT_EQ(reopened.n, 1u);
        ASSERT_EQ(reopened.error, 0);
        ASSERT_OK(audit_log_get_status(a, &st));
        ASSERT_FALSE(st.reopen_pending);
        ASSERT_EQ(st.n_waiting, 0u);
        ASSERT_EQ(st.n_reserved, 1u);
        ASSERT_OK(audit_log_commit(waited.res, &(AuditRecord) { .event = "bind", .uid = 1000 }, ack_callback, &acks, NULL));
        run_until(base, &acks.n, 3);
        ASSERT_FALSE(acks.out_of_order);
        ASSERT_EQ(acks.errors[1], 0);
        ASSERT_EQ(acks.seqs[1], 2u);
        ASSERT_EQ(acks.errors[2], 0);
        ASSERT_EQ(acks.seqs[2], 3u);
        read_all_seqs(dir, c.n_files, &seqs, &n);
        ASSERT_EQ(n, 2u);
        ASSERT_EQ(seqs[0], 2u);
        ASSERT_EQ(seqs[1], 3u);

        a = audit_log_free(a);
        event_base_free(base);
        acks_done(&acks);
        test_dir_remove(TAKE_PTR(moved));
        test_dir_remove(TAKE_PTR(dir));
}

/* A reopen stuck behind a disk that does not come back: a call that acts waits at most its
 * timeout, and the loop does not wait at all. One withdrawn is not told; one still waiting when
 * the log is freed is refused. */
TEST(reserve_to_act_gives_up_on_a_stuck_reopen) {
        _cleanup_free_ char *dir = test_dir_new();
        struct event_base *base = event_base_new();
        Reserved timed, withdrawn, last;
        Reopened reopened = {};
        AuditLogStatus st;
        AuditConfig c;
        AuditLog *a;
        Acks acks = {};
        unsigned before;

        ASSERT_NOT_NULL(base);
        test_config(&c, dir);
        ASSERT_OK(audit_log_open(base, &c, &a));
        before = atomic_load(&faults.n_fdatasync);
        atomic_store(&faults.fdatasync_hold, true);
        commit_one(a, &acks);
        for (unsigned i = 0; atomic_load(&faults.n_fdatasync) == before; i++) {
                if (i > 6000)
                        TEST_FAIL("the sync thread did not reach fdatasync");
                event_base_loop(base, EVLOOP_NONBLOCK);
                usleep(1000);
        }
        ASSERT_OK(audit_log_reopen_full(a, on_reopened, &reopened));

        reserve_waiting(a, 50 * 1000, &timed);
        reserve_waiting(a, 0, &withdrawn);
        run_until(base, &timed.n, 1);
        ASSERT_EQ(timed.error, -ETIMEDOUT);
        ASSERT_TRUE(atomic_load(&faults.fdatasync_hold));
        timed.res = audit_log_cancel(timed.res);
        withdrawn.res = audit_log_cancel(withdrawn.res);
        ASSERT_OK(audit_log_get_status(a, &st));
        ASSERT_TRUE(st.reopen_pending);
        ASSERT_EQ(st.n_waiting, 0u);

        reserve_waiting(a, 0, &last);
        atomic_store(&faults.fdatasync_hold, false);
        a = audit_log_free(a);
        ASSERT_EQ(last.n, 1u);
        ASSERT_EQ(last.error, -ESHUTDOWN);
        audit_log_cancel(last.res);
        ASSERT_EQ(withdrawn.n, 0u);
        ASSERT_EQ(timed.n, 1u);
        ASSERT_EQ(reopened.n, 1u);
        ASSERT_EQ(acks.n, 1u);

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

/* What a record held for a reopen was told when it was numbered. */
typedef struct Numbered {
        size_t n;
        uint64_t seq;
        const char *dir;
        unsigned n_files;
        size_t on_disk; /* records in the files then */
        Acks *acks;
        size_t acked;   /* commit callbacks run then */
} Numbered;

static void on_numbered(AuditLog *a, uint64_t seq, void *userdata) {
        _cleanup_free_ uint64_t *seqs = NULL;
        Numbered *nb = userdata;

        read_all_seqs(nb->dir, nb->n_files, &seqs, &nb->on_disk);
        nb->n++;
        nb->seq = seq;
        nb->acked = nb->acks->n;
}

static void on_numbered_committed(AuditLog *a, uint64_t seq, int error, void *userdata) {
        Numbered *nb = userdata;

        ack_callback(a, seq, error, nb->acks);
}

/* A record committed while a reopen is pending has no seq at its commit: its caller is told the
 * one it gets after the reopen, before it can be on the disk (guest-late.c tells the monitor
 * then). One numbered at its commit is not told again. */
TEST(record_held_for_a_reopen_reports_its_seq_once_numbered) {
        _cleanup_free_ uint64_t *seqs = NULL;
        _cleanup_free_ char *dir = test_dir_new();
        struct event_base *base = event_base_new();
        Reopened reopened = {};
        AuditConfig c;
        AuditLog *a;
        Acks acks = {};
        Numbered at_once = { .dir = dir, .acks = &acks }, held;
        AuditRecord r = sample_record();
        uint64_t seq;
        size_t n;

        ASSERT_NOT_NULL(base);
        test_config(&c, dir);
        at_once.n_files = c.n_files;
        held = at_once;
        ASSERT_OK(audit_log_open(base, &c, &a));
        ASSERT_OK(audit_log_record_owed_full(a, &r, on_numbered_committed, on_numbered, &at_once, &seq));
        ASSERT_EQ(seq, 1u);
        run_until(base, &acks.n, 1);
        ASSERT_EQ(at_once.n, 0u);

        ASSERT_OK(audit_log_reopen_full(a, on_reopened, &reopened));
        commit_one(a, &acks); /* held too, numbered first */
        ASSERT_OK(audit_log_record_owed_full(a, &r, on_numbered_committed, on_numbered, &held, &seq));
        ASSERT_EQ(seq, 0u);
        ASSERT_EQ(held.n, 0u);

        run_until(base, &acks.n, 3);
        ASSERT_EQ(reopened.n, 1u);
        ASSERT_EQ(reopened.error, 0);
        ASSERT_EQ(held.n, 1u);
        ASSERT_EQ(held.seq, 3u);
        ASSERT_EQ(held.on_disk, 1u); /* neither held record written yet */
        ASSERT_EQ(held.acked, 1u);
        ASSERT_EQ(at_once.n, 0u);
        ASSERT_FALSE(acks.out_of_order);
        ASSERT_EQ(acks.errors[2], 0);
        ASSERT_EQ(acks.seqs[2], 3u);
        read_all_seqs(dir, c.n_files, &seqs, &n);
        ASSERT_EQ(n, 3u);
        ASSERT_EQ(seqs[2], 3u);

        a = audit_log_free(a);
        ASSERT_EQ(held.n, 1u);
        event_base_free(base);
        acks_done(&acks);
        test_dir_remove(TAKE_PTR(dir));
}

TEST_MAIN();
