/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The audit log against real failures: a writer SIGKILLed at random points must never have
 * acknowledged a record that is missing afterwards, and a real, full file system must make
 * reserve fail with -ENOSPC before any committed record is lost. Runs in: tests.
 */

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mount.h>
#include <time.h>

#include "audit-test-util.h"
#include "harness.h"

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static int ack_fd = -1;

/* Small files, so that rotations come often, and no more records than they keep: the check
 * reads every record back, and one rotated away would look lost (a fast machine had 25,570
 * records written into the ~24,000 that 1,000 files of 8 KiB held). 1,000 files of 16 KiB keep
 * ~48,000, twelve writers of at most 2,000 each write 24,000 at most. */
#define CRASH_FILE_SIZE (4 * AUDIT_RECORD_MAX)
#define CRASH_RECORDS_PER_WRITER 2000u

static void child_ack(AuditLog *a, uint64_t seq, int error, void *userdata) {
        if (error < 0)
                _exit(2);
        /* Written only after the record was reported durable. */
        if (write(ack_fd, &seq, sizeof(seq)) != sizeof(seq))
                _exit(3);
}

static void _noreturn_ crash_child(const char *dir, unsigned iteration) {
        struct event_base *base = event_base_new();
        AuditRecord r = sample_record();
        AuditConfig c;
        AuditLog *a;

        audit_config_init(&c);
        c.directory = dir;
        c.journal = false;
        c.max_file_size = CRASH_FILE_SIZE;
        c.n_files = AUDIT_FILES_MAX;
        c.sync_mode = iteration % 3 == 2 ? AUDIT_SYNC_PER_RECORD : AUDIT_SYNC_GROUP;
        if (!base || audit_log_open(base, &c, &a) < 0)
                _exit(4);
        for (unsigned round = 0, n = 0;; round++) {
                /* Bursts of varying size, so batches and rotations land everywhere. */
                for (unsigned i = 0; i < 1 + round % 17 && n < CRASH_RECORDS_PER_WRITER; i++, n++)
                        if (audit_log_record(a, &r, child_ack, NULL, NULL) < 0)
                                break; /* -ENOBUFS: let the loop drain */
                /* Done writing: wait for the acknowledgements, then for the kill. */
                event_base_loop(base, EVLOOP_ONCE | (n < CRASH_RECORDS_PER_WRITER ? EVLOOP_NONBLOCK : 0));
        }
}

static void read_acks(int fd, uint64_t *max_acked, size_t *n_acked, uint64_t deadline_ms) {
        static uint8_t carry[8];
        static size_t n_carry;

        for (;;) {
                uint8_t buf[4096 + 8];
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int timeout = -1;
                ssize_t n;
                size_t have;

                if (deadline_ms != UINT64_MAX) {
                        uint64_t now = now_ms();
                        if (now >= deadline_ms)
                                return;
                        timeout = (int) (deadline_ms - now);
                }
                if (poll(&p, 1, timeout) <= 0)
                        return;
                memcpy(buf, carry, n_carry);
                n = read(fd, buf + n_carry, 4096);
                if (n <= 0)
                        return; /* EOF: the child is gone */
                have = n_carry + (size_t) n;
                for (size_t i = 0; i + 8 <= have; i += 8) {
                        uint64_t seq;
                        memcpy(&seq, buf + i, 8);
                        /* Acknowledgements come in sequence order. */
                        ASSERT_TRUE(seq > *max_acked);
                        *max_acked = seq;
                        (*n_acked)++;
                }
                n_carry = have % 8;
                memcpy(carry, buf + have - n_carry, n_carry);
        }
}

TEST(sigkill_loses_no_acknowledged_record) {
        _cleanup_free_ uint64_t *seqs = NULL;
        char *dir = test_dir_new();
        uint64_t max_acked = 0;
        size_t n_acked = 0, n;
        unsigned seed = (unsigned) getpid() ^ (unsigned) now_ms();

        fprintf(stderr, "seed %u\n", seed);
        srand(seed);
        for (unsigned it = 0; it < 12; it++) {
                size_t before = n_acked;
                int p[2];
                pid_t pid;

                ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
                pid = fork();
                ASSERT_GE(pid, 0);
                if (pid == 0) {
                        close(p[0]);
                        ack_fd = p[1];
                        crash_child(dir, it);
                }
                close(p[1]);

                /* Let it run for a random while, at least until it acknowledged something. */
                read_acks(p[0], &max_acked, &n_acked, now_ms() + 5 + (uint64_t) (rand() % 150));
                while (n_acked == before)
                        read_acks(p[0], &max_acked, &n_acked, now_ms() + 10);
                ASSERT_EQ(kill(pid, SIGKILL), 0);
                read_acks(p[0], &max_acked, &n_acked, UINT64_MAX);
                close(p[0]);
                {
                        int status;
                        ASSERT_EQ(waitpid(pid, &status, 0), pid);
                        /* Killed by us, not exited on an error of its own. */
                        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
                }

                /* Sometimes leave a torn write behind, as a crash in the middle of one would. */
                if (rand() % 2) {
                        static const char torn[] = "{\"seq\":999999,\"time\":\"2024-";
                        append_bytes(dir, "audit.log", torn, 1 + (size_t) rand() % (sizeof(torn) - 1));
                }
        }
        fprintf(stderr, "%zu records acknowledged, last seq %" PRIu64 "\n", n_acked, max_acked);
        ASSERT_GE(n_acked, 12);

        /* Reopen: repairs any torn tail, and the files are contiguous from 1. */
        {
                struct event_base *base = event_base_new();
                AuditLogStatus st;
                AuditConfig c;
                AuditLog *a;

                test_config(&c, dir);
                c.n_files = AUDIT_FILES_MAX;
                c.max_file_size = CRASH_FILE_SIZE;
                ASSERT_OK(audit_log_open(base, &c, &a));
                ASSERT_OK(audit_log_get_status(a, &st));
                ASSERT_GE(st.last_committed_seq, max_acked);
                ASSERT_EQ(st.n_anomalies, 0);
                audit_log_free(a);
                event_base_free(base);
        }
        read_all_seqs(dir, AUDIT_FILES_MAX, &seqs, &n);
        ASSERT_GE(n, max_acked);
        for (size_t i = 0; i < n; i++)
                ASSERT_EQ(seqs[i], i + 1);
        test_dir_remove(dir);
}

TEST(real_full_filesystem) {
        _cleanup_free_ uint64_t *seqs = NULL;
        _cleanup_free_ char *unit = malloc(AUDIT_FIELD_MAX + 1);
        struct event_base *base;
        char *mnt, logdir[4096];
        AuditRecord r = sample_record();
        AuditLogStatus st;
        AuditConfig c;
        AuditLog *a;
        Acks acks = {};
        size_t n, committed = 0;
        int k = 0;

        if (geteuid() != 0)
                SKIP("needs root to mount a private tmpfs");
        if (unshare(CLONE_NEWNS) < 0)
                SKIP("unshare(CLONE_NEWNS): %m");
        /* The type is ignored for a propagation change; "none" rather than NULL keeps
         * valgrind from reading it. */
        if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0)
                SKIP("making mounts private: %m");
        mnt = test_dir_new();
        /* Room for files to rotate before it is full: a new file takes the room reserved in the
         * old one (up to eight near-maximum records here) while the old one still holds it. */
        if (mount("tmpfs", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=256k,mode=0700") < 0)
                SKIP("mounting tmpfs: %m");
        snprintf(logdir, sizeof(logdir), "%s/log", mnt);

        /* Near-maximum records: a reservation that promised too little would show. */
        memset(unit, 'u', AUDIT_FIELD_MAX);
        unit[AUDIT_FIELD_MAX] = 0;
        r.unit = r.pci = r.scope = unit;

        base = event_base_new();
        test_config(&c, logdir);
        c.ops = NULL; /* the real thing */
        c.max_file_size = 16 * 1024;
        c.n_files = 20;
        ASSERT_OK(audit_log_open(base, &c, &a));

        while (k == 0) {
                AuditReservation *res[8];
                size_t got = 0;

                /* Hold several reservations at once, then commit them all. */
                for (; got < ELEMENTSOF(res); got++) {
                        k = audit_log_reserve(a, &res[got]);
                        if (k < 0)
                                break;
                }
                if (k < 0)
                        ASSERT_ERRNO(k, ENOSPC);
                for (size_t i = 0; i < got; i++)
                        ASSERT_OK(audit_log_commit(res[i], &r, ack_callback, &acks, NULL));
                committed += got;
                run_until(base, &acks.n, committed);
        }
        /* With fewer reservations held, one more may fit; and a refusal can be conservative
         * (the thread may still find room inside an allocated page when asked). Fill up one
         * at a time until the refusal is stable. */
        for (unsigned refusals = 0; refusals < 3;) {
                AuditReservation *res;

                ASSERT_LE(committed, 1000);
                k = audit_log_reserve(a, &res);
                if (k < 0) {
                        ASSERT_ERRNO(k, ENOSPC);
                        refusals++;
                        usleep(20000);
                        continue;
                }
                refusals = 0;
                ASSERT_OK(audit_log_commit(res, &r, ack_callback, &acks, NULL));
                committed++;
                run_until(base, &acks.n, committed);
        }
        fprintf(stderr, "tmpfs full after %zu records\n", committed);
        ASSERT_GE(committed, 20);
        /* Every record that got a reservation made it. */
        ASSERT_FALSE(acks.out_of_order);
        for (size_t i = 0; i < acks.n; i++)
                ASSERT_EQ(acks.errors[i], 0);
        ASSERT_OK(audit_log_get_status(a, &st));
        ASSERT_EQ(st.failed, 0); /* full, not broken */
        ASSERT_EQ(st.sync.n_rotations > 0, 1);

        /* Still refusing, still healthy. */
        ASSERT_ERRNO(audit_log_record(a, &r, NULL, NULL, NULL), ENOSPC);
        audit_log_free(a);
        event_base_free(base);

        read_all_seqs(logdir, c.n_files, &seqs, &n);
        ASSERT_EQ(seqs[n - 1], committed);
        for (size_t i = 1; i < n; i++)
                ASSERT_EQ(seqs[i], seqs[i - 1] + 1);
        acks_done(&acks);
        (void) umount2(mnt, MNT_DETACH);
        test_dir_remove(mnt);
}

TEST_MAIN();
