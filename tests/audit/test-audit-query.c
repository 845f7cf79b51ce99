/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Audit queries as the worker runs them: in threads, off the event loop (which goes on while
 * one is held mid-scan), bounded in number, cancelled cleanly, reading nothing before fromSeq
 * that a few probes can rule out (whole files, and the part of a file bisection skips), and
 * leaving out what is not a regular file among the log's files; results that cannot be made, and
 * records that cannot be read (out of memory), end the query with -ENOMEM and leave nothing
 * behind.
 * Runs in: tests.
 */

#include <dlfcn.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>

#include "audit-test-util.h"
#include "harness.h"

/* json-c's json_object_new_array_ext(), interposed (exported in spite of -fvisibility=hidden;
 * the real one is the next definition): once fail_new_array is set, it fails, as out of memory,
 * once. The query thread makes its results' array with it, after it has found the records. */
static atomic_bool fail_new_array;

_public_ json_object *json_object_new_array_ext(int initial_size);
json_object *json_object_new_array_ext(int initial_size) {
        static json_object *(*real)(int);

        if (!real)
                real = dlsym(RTLD_NEXT, "json_object_new_array_ext");
        if (!real)
                abort();
        if (atomic_exchange(&fail_new_array, false))
                return NULL;
        return real(initial_size);
}

/* And json_object_new_object(): once fail_new_object is set, it fails, as out of memory, once.
 * The query thread makes one for each record it reads. */
static atomic_bool fail_new_object;

_public_ json_object *json_object_new_object(void);
json_object *json_object_new_object(void) {
        static json_object *(*real)(void);

        if (!real)
                real = dlsym(RTLD_NEXT, "json_object_new_object");
        if (!real)
                abort();
        if (atomic_exchange(&fail_new_object, false))
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

static void fixture_init(Fixture *f, uint64_t max_file_size, unsigned n_files) {
        *f = (Fixture){};
        f->dir = test_dir_new();
        f->base = event_base_new();
        ASSERT_NOT_NULL(f->base);
        test_config(&f->config, f->dir);
        f->config.max_file_size = max_file_size;
        f->config.n_files = n_files;
        ASSERT_OK(audit_log_open(f->base, &f->config, &f->log));
}

static void fixture_done(Fixture *f) {
        f->log = audit_log_free(f->log);
        event_base_free(f->base);
        acks_done(&f->acks);
        test_dir_remove(f->dir);
}

/* Commits n records and waits until they are durable (in rounds below MaxRecordsInFlight=). */
static void commit_n(Fixture *f, size_t n) {
        AuditRecord r = sample_record();

        while (n > 0) {
                size_t k = MIN(n, (size_t) 1000), before = f->acks.n;

                for (size_t i = 0; i < k; i++)
                        ASSERT_OK(audit_log_record(f->log, &r, ack_callback, &f->acks, NULL));
                run_until(f->base, &f->acks.n, before + k);
                n -= k;
        }
}

static uint64_t dir_bytes(const Fixture *f) {
        uint64_t total = 0;

        for (unsigned i = 0; i < f->config.n_files; i++) {
                char path[4096], name[64];
                struct stat st;

                audit_file_name(i, name);
                snprintf(path, sizeof(path), "%s/%s", f->dir, name);
                if (stat(path, &st) >= 0 && S_ISREG(st.st_mode))
                        total += (uint64_t) st.st_size;
        }
        return total;
}

static unsigned n_queries(const Fixture *f) {
        AuditLogStatus st;

        ASSERT_OK(audit_log_get_status(f->log, &st));
        return st.n_queries;
}

/* Records seq from..to exactly, in order. */
static void assert_range(const QueryResult *r, uint64_t from, uint64_t to) {
        ASSERT_OK(r->error);
        ASSERT_EQ(query_result_n(r), to - from + 1);
        for (size_t i = 0; i < query_result_n(r); i++)
                ASSERT_EQ(query_result_seq(r, i), from + i);
}

static void on_tick(evutil_socket_t fd, short what, void *userdata) {
        (*(size_t *) userdata)++;
}

/* The loop serves while a query is stuck on the disk: its timers fire, and the query is reported
 * once the disk answers. */
TEST(query_runs_off_the_loop) {
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        struct timeval tv = { 0, 1000 };
        QueryResult r = {};
        size_t ticks = 0;
        struct event *tick;
        Fixture f;

        fixture_init(&f, 1024 * 1024, 4);
        commit_n(&f, 50);

        atomic_store(&faults.pread_hold, true);
        ASSERT_OK(audit_log_query(f.log, &q, SIZE_MAX, query_done_callback, &r, NULL));
        tick = event_new(f.base, -1, EV_PERSIST, on_tick, &ticks);
        ASSERT_NOT_NULL(tick);
        ASSERT_OK(event_add(tick, &tv));
        run_until(f.base, &ticks, 20);
        ASSERT_TRUE(atomic_load(&faults.pread_waiting));
        ASSERT_EQ(r.n_done, 0);
        ASSERT_EQ(n_queries(&f), 1);

        atomic_store(&faults.pread_hold, false);
        run_until(f.base, &r.n_done, 1);
        event_free(tick);
        assert_range(&r, 1, 50);
        ASSERT_EQ(n_queries(&f), 0);
        query_result_done(&r);
        fixture_done(&f);
}

/* fromSeq near the end reads the newest file and probes of the others, not the log. */
TEST(query_from_seq_skips_older_files) {
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        uint64_t total;
        QueryResult r;
        Fixture f;

        fixture_init(&f, 16384, 40);
        commit_n(&f, 1500);
        total = dir_bytes(&f);
        ASSERT_GE(total, 20 * 16384 / 2);

        atomic_store(&faults.pread_bytes, 0);
        q.seq_from = 1495;
        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        assert_range(&r, 1495, 1500);
        ASSERT_GE(r.stats.n_files_skipped, 20);
        /* The newest file or two, and one 64 KiB probe window per file at most (each smaller). */
        ASSERT_LE(atomic_load(&faults.pread_bytes), 3 * 16384 + 40 * 16384);
        ASSERT_LE(r.stats.n_scanned, 200);
        query_result_done(&r);

        /* Whatever fromSeq, exactly the records from it: the first and last of a file, its
         * neighbours, the first and last of the log, and past the end. */
        for (uint64_t from = 1; from <= 1502; from += from < 40 ? 1 : 37) {
                q.seq_from = from;
                query_wait(f.base, f.log, &q, SIZE_MAX, &r);
                if (from > 1500)
                        assert_range(&r, 1, 0); /* none */
                else
                        assert_range(&r, from, 1500);
                query_result_done(&r);
        }
        fixture_done(&f);
}

/* In one large file the start is found by bisection, not by reading up to it. */
TEST(query_from_seq_bisects_a_file) {
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        uint64_t total;
        QueryResult r;
        Fixture f;

        fixture_init(&f, 64 * 1024 * 1024, 2);
        commit_n(&f, 5000);
        total = dir_bytes(&f);
        ASSERT_GE(total, 5000 * 100);

        atomic_store(&faults.pread_bytes, 0);
        q.seq_from = 4990;
        q.seq_to = 4995;
        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        assert_range(&r, 4990, 4995);
        ASSERT_LE(atomic_load(&faults.pread_bytes), total / 2);
        query_result_done(&r);

        for (uint64_t from = 1; from <= 5000; from += 211) {
                q.seq_from = from;
                q.seq_to = from + 2;
                query_wait(f.base, f.log, &q, SIZE_MAX, &r);
                assert_range(&r, from, MIN(from + 2, (uint64_t) 5000));
                query_result_done(&r);
        }
        fixture_done(&f);
}

/* At most max_queries run; a cancelled one counts until its thread stopped. */
TEST(query_number_is_bounded) {
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        QueryResult r[3] = {};
        AuditQuery *first;
        Fixture f;

        fixture_init(&f, 1024 * 1024, 4);
        f.log = audit_log_free(f.log);
        f.config.max_queries = 2;
        ASSERT_OK(audit_log_open(f.base, &f.config, &f.log));
        commit_n(&f, 10);

        atomic_store(&faults.pread_hold, true);
        ASSERT_OK(audit_log_query(f.log, &q, SIZE_MAX, query_done_callback, &r[0], &first));
        ASSERT_OK(audit_log_query(f.log, &q, SIZE_MAX, query_done_callback, &r[1], NULL));
        ASSERT_ERRNO(audit_log_query(f.log, &q, SIZE_MAX, query_done_callback, &r[2], NULL), EBUSY);
        first = audit_query_cancel(first);
        ASSERT_ERRNO(audit_log_query(f.log, &q, SIZE_MAX, query_done_callback, &r[2], NULL), EBUSY);

        atomic_store(&faults.pread_hold, false);
        run_until(f.base, &r[1].n_done, 1);
        while (n_queries(&f) > 0)
                event_base_loop(f.base, EVLOOP_ONCE);
        ASSERT_EQ(r[0].n_done, 0);
        assert_range(&r[1], 1, 10);
        query_wait(f.base, f.log, &q, 3, &r[2]);
        assert_range(&r[2], 1, 3);
        for (size_t i = 0; i < ELEMENTSOF(r); i++)
                query_result_done(&r[i]);
        fixture_done(&f);
}

/* A query cancelled mid-scan (its client hung up) is never reported and leaves nothing behind
 * (ASan builds check the leak); one still running when the log goes is reported cancelled. */
TEST(query_cancelled_mid_scan) {
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        QueryResult r = {}, s = {};
        AuditQuery *query;
        Fixture f;

        fixture_init(&f, 1024 * 1024, 4);
        commit_n(&f, 100);

        atomic_store(&faults.pread_hold, true);
        ASSERT_OK(audit_log_query(f.log, &q, SIZE_MAX, query_done_callback, &r, &query));
        while (!atomic_load(&faults.pread_waiting))
                usleep(100);
        query = audit_query_cancel(query);
        atomic_store(&faults.pread_hold, false);
        while (n_queries(&f) > 0)
                event_base_loop(f.base, EVLOOP_ONCE);
        ASSERT_EQ(r.n_done, 0);

        atomic_store(&faults.pread_hold, true);
        ASSERT_OK(audit_log_query(f.log, &q, SIZE_MAX, query_done_callback, &s, NULL));
        atomic_store(&faults.pread_hold, false);
        f.log = audit_log_free(f.log);
        ASSERT_EQ(s.n_done, 1);
        ASSERT_ERRNO(s.error, ECANCELED);
        ASSERT_NULL(s.records);
        fixture_done(&f);
}

/* Whoever can write the directory may put anything under a rotated file's name: a FIFO (opening
 * it would block the query for good), a symlink, a directory. Each is left out, the query
 * answers from the rest. */
TEST(query_skips_what_is_not_a_regular_file) {
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        char path[4096];
        QueryResult r;
        Fixture f;

        fixture_init(&f, 16384, 10);
        commit_n(&f, 200); /* audit.log ... audit.log.3 or so */

        snprintf(path, sizeof(path), "%s/audit.log.7", f.dir);
        ASSERT_TRUE(mkfifo(path, 0600) >= 0);
        snprintf(path, sizeof(path), "%s/audit.log.8", f.dir);
        ASSERT_TRUE(symlink("audit.log", path) >= 0);
        snprintf(path, sizeof(path), "%s/audit.log.9", f.dir);
        ASSERT_TRUE(mkdir(path, 0700) >= 0);

        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        assert_range(&r, 1, 200);
        query_result_done(&r);
        fixture_done(&f);
}

/* The results' array cannot be made (out of memory) once the records are found: the query ends
 * -ENOMEM, and their text goes with it (a leak shows under ASan and valgrind). The next query
 * finds them all. */
TEST(query_whose_results_cannot_be_made_ends_enomem) {
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        QueryResult r;
        Fixture f;

        fixture_init(&f, 1024 * 1024, 4);
        commit_n(&f, 5);

        atomic_store(&fail_new_array, true);
        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        ASSERT_FALSE(atomic_load(&fail_new_array)); /* it was tried, and failed */
        ASSERT_ERRNO(r.error, ENOMEM);
        ASSERT_NULL(r.records);

        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        assert_range(&r, 1, 5);
        query_result_done(&r);
        fixture_done(&f);
}

/* A record the query cannot read for lack of memory ends it -ENOMEM: not skipped as damage,
 * which would answer without it and say nothing. The next query finds them all. */
TEST(query_whose_record_cannot_be_read_ends_enomem) {
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        QueryResult r;
        Fixture f;

        fixture_init(&f, 1024 * 1024, 4);
        commit_n(&f, 5);

        atomic_store(&fail_new_object, true);
        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        ASSERT_FALSE(atomic_load(&fail_new_object)); /* it was tried, and failed */
        ASSERT_ERRNO(r.error, ENOMEM);
        ASSERT_NULL(r.records);

        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        assert_range(&r, 1, 5);
        query_result_done(&r);
        fixture_done(&f);
}

/* Records seq from..to in order but for the one of seq skip (0: none), which is not there. */
static void assert_range_without(const QueryResult *r, uint64_t from, uint64_t to, uint64_t skip) {
        size_t i = 0;

        ASSERT_OK(r->error);
        ASSERT_EQ(query_result_n(r), to - from + 1 - (skip >= from && skip <= to));
        for (uint64_t seq = from; seq <= to; seq++)
                if (seq != skip)
                        ASSERT_EQ(query_result_seq(r, i++), seq);
}

/* The whole of <dir>/<name>, NUL-terminated; its size in *ret_size. */
static char *read_file(const char *dir, const char *name, size_t *ret_size) {
        char path[4096], *data;
        struct stat st;
        FILE *file;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        file = fopen(path, "re");
        ASSERT_NOT_NULL(file);
        ASSERT_TRUE(fstat(fileno(file), &st) >= 0);
        data = malloc((size_t) st.st_size + 1);
        ASSERT_NOT_NULL(data);
        ASSERT_EQ(fread(data, 1, (size_t) st.st_size, file), (size_t) st.st_size);
        data[st.st_size] = 0;
        fclose(file);
        *ret_size = (size_t) st.st_size;
        return data;
}

/* The seq of the record at offset of <dir>/<name> becomes seq (as many digits: a bit flipped in
 * place, the line parsing as before). Returns the seq it had. */
static uint64_t damage_seq_at(const char *dir, const char *name, size_t offset, uint64_t seq) {
        char path[4096], digits[32], *data;
        size_t size, n;
        uint64_t old;
        int fd;

        data = read_file(dir, name, &size);
        ASSERT_TRUE(offset < size);
        ASSERT_TRUE(strneq(data + offset, "{\"seq\":", 7));
        old = strtoull(data + offset + 7, NULL, 10);
        n = strspn(data + offset + 7, "0123456789");
        ASSERT_EQ((size_t) snprintf(digits, sizeof(digits), "%" PRIu64, seq), n);
        free(data);

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(pwrite(fd, digits, n, (off_t) (offset + 7)), (ssize_t) n);
        close(fd);
        return old;
}

/* The offset of the record of that seq in <dir>/audit.log. */
static size_t offset_of_seq(const char *dir, uint64_t seq) {
        char want[64], *data, *p;
        size_t size, offset;

        snprintf(want, sizeof(want), "{\"seq\":%" PRIu64 ",", seq);
        data = read_file(dir, "audit.log", &size);
        p = strstr(data, want);
        ASSERT_NOT_NULL(p);
        ASSERT_TRUE(p == data || p[-1] == '\n');
        offset = (size_t) (p - data);
        free(data);
        return offset;
}

/* A line whose seq is damaged but still parses is damage, skipped and counted, and does not end
 * the query: a seq above what the log committed ("seq":20 read as 90 in a log of 58), one that
 * jumps ahead of the records after it (20 read as 90 in a log of 1000, where 90 is past toSeq),
 * one not above the record before it (40 read as 10, before fromSeq too). It left every record
 * after it out of the answer, and said nothing. */
TEST(query_skips_a_record_whose_seq_is_damaged) {
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        QueryResult r;
        Fixture f;

        fixture_init(&f, 1024 * 1024, 4);
        commit_n(&f, 58);
        ASSERT_EQ(damage_seq_at(f.dir, "audit.log", offset_of_seq(f.dir, 20), 90), 20u);
        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        assert_range_without(&r, 1, 58, 20);
        ASSERT_EQ(r.stats.n_damaged, 1u);
        query_result_done(&r);
        q.seq_from = 30;
        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        assert_range(&r, 30, 58);
        ASSERT_EQ(r.stats.n_damaged, 1u);
        query_result_done(&r);
        fixture_done(&f);

        fixture_init(&f, 1024 * 1024, 4);
        commit_n(&f, 1000);
        damage_seq_at(f.dir, "audit.log", offset_of_seq(f.dir, 20), 90);
        damage_seq_at(f.dir, "audit.log", offset_of_seq(f.dir, 40), 10);
        q = AUDIT_QUERY_FILTER_INIT;
        q.seq_to = 50;
        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        ASSERT_EQ(query_result_n(&r), 48u);
        ASSERT_EQ(query_result_seq(&r, 18), 19u);
        ASSERT_EQ(query_result_seq(&r, 19), 21u);
        ASSERT_EQ(query_result_seq(&r, 37), 39u);
        ASSERT_EQ(query_result_seq(&r, 38), 41u);
        ASSERT_EQ(query_result_seq(&r, 47), 50u);
        ASSERT_EQ(r.stats.n_damaged, 2u);
        query_result_done(&r);
        q.seq_from = 30;
        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        assert_range_without(&r, 30, 50, 40);
        ASSERT_EQ(r.stats.n_damaged, 2u); /* 90 as well: read, since it is not before fromSeq */
        query_result_done(&r);
        q = AUDIT_QUERY_FILTER_INIT;
        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        ASSERT_EQ(query_result_n(&r), 998u);
        ASSERT_EQ(r.stats.n_damaged, 2u);
        query_result_done(&r);
        fixture_done(&f);
}

/* A seq damaged to read lower, where a probe for fromSeq looks, does not make the probe skip the
 * records it is in front of: the line after it contradicts it. In one file bisected (its first
 * probe is the line at its middle), and at the start of a file (where the file to start in is
 * chosen). Both left the range's records before that line out. */
TEST(query_probe_of_a_damaged_seq_is_checked) {
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        size_t size, offset;
        uint64_t seq;
        QueryResult r;
        char *data;
        Fixture f;

        fixture_init(&f, 64 * 1024 * 1024, 2);
        commit_n(&f, 5000);
        data = read_file(f.dir, "audit.log", &size);
        offset = (size_t) (strchr(data + size / 2 - 1, '\n') - data) + 1;
        free(data);
        seq = damage_seq_at(f.dir, "audit.log", offset, 1000);
        ASSERT_GE(seq, 2000u);
        q.seq_from = seq - 500;
        q.seq_to = seq + 100;
        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        assert_range_without(&r, seq - 500, seq + 100, seq);
        ASSERT_EQ(r.stats.n_damaged, 1u);
        query_result_done(&r);
        fixture_done(&f);

        /* The line after it damaged alike (not above it): it confirms nothing either. */
        fixture_init(&f, 64 * 1024 * 1024, 2);
        commit_n(&f, 5000);
        data = read_file(f.dir, "audit.log", &size);
        offset = (size_t) (strchr(data + size / 2 - 1, '\n') - data) + 1;
        free(data);
        seq = damage_seq_at(f.dir, "audit.log", offset, 1000);
        ASSERT_EQ(damage_seq_at(f.dir, "audit.log", offset_of_seq(f.dir, seq + 1), 1000), seq + 1);
        q.seq_from = seq - 500;
        q.seq_to = seq - 1;
        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        assert_range(&r, seq - 500, seq - 1);
        query_result_done(&r);
        fixture_done(&f);

        fixture_init(&f, 16384, 40);
        commit_n(&f, 1500);
        seq = damage_seq_at(f.dir, "audit.log.1", 0, 1000);
        ASSERT_GE(seq, 1100u);
        q.seq_from = seq - 50;
        q.seq_to = seq + 10;
        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        assert_range_without(&r, seq - 50, seq + 10, seq);
        ASSERT_EQ(r.stats.n_damaged, 1u);
        query_result_done(&r);
        fixture_done(&f);
}

/* The monotonicUsec of the record with that seq in <dir>/audit.log, as written. */
static int64_t monotonic_of_seq(const char *dir, uint64_t seq) {
        char *data, *p;
        size_t size;
        int64_t v;

        data = read_file(dir, "audit.log", &size);
        p = strstr(data + offset_of_seq(dir, seq), "\"monotonicUsec\":");
        ASSERT_NOT_NULL(p);
        v = strtoll(p + strlen("\"monotonicUsec\":"), NULL, 10);
        free(data);
        return v;
}

/* A seq damaged into the next one's (20 read as 21: one bit) leaves two records of seq 21 in a
 * row. The first jumped over the gap it leaves, so it is the damaged one: the real 21 is
 * answered, where the damaged 20 was, in its place, and the real one passed over. */
TEST(query_keeps_the_real_record_where_a_seq_is_damaged_into_the_next) {
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        int64_t real;
        QueryResult r;
        Fixture f;

        fixture_init(&f, 1024 * 1024, 4);
        commit_n(&f, 20);
        usleep(2000); /* records 20 and 21 told apart by their monotonicUsec */
        commit_n(&f, 38);
        real = monotonic_of_seq(f.dir, 21);
        ASSERT_TRUE(real > monotonic_of_seq(f.dir, 20));
        ASSERT_EQ(damage_seq_at(f.dir, "audit.log", offset_of_seq(f.dir, 20), 21), 20u);
        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        assert_range_without(&r, 1, 58, 20);
        ASSERT_EQ(r.stats.n_damaged, 1u);
        ASSERT_EQ(query_result_seq(&r, 19), 21u);
        ASSERT_EQ(json_object_get_int64(json_object_object_get(json_object_array_get_idx(r.records, 19),
                                                               "monotonicUsec")),
                  real);
        query_result_done(&r);
        fixture_done(&f);
}

/* A query stops once it has read max_scan_bytes, at a read's end, and names the seq it goes on
 * from: the same query from there, again and again, finds every record once and in order, each
 * call reading about its budget, and the last call says nothing more (next_seq 0). A filter
 * that matches nothing takes as many calls, each answering none; toSeq bounds where it stops. */
TEST(query_stops_at_its_scan_budget_and_goes_on) {
        AuditQueryFilter q = AUDIT_QUERY_FILTER_INIT;
        uint64_t next = 1, budget = 65536;
        unsigned calls = 0;
        QueryResult r;
        Fixture f;

        fixture_init(&f, 1024 * 1024, 4);
        commit_n(&f, 3000);

        q.max_scan_bytes = budget;
        do {
                q.seq_from = next;
                query_wait(f.base, f.log, &q, SIZE_MAX, &r);
                ASSERT_OK(r.error);
                ASSERT_GE(query_result_n(&r), 1);
                ASSERT_EQ(query_result_seq(&r, 0), next);
                next += query_result_n(&r);
                if (r.stats.next_seq != 0) {
                        ASSERT_EQ(r.stats.next_seq, next);
                        /* Its budget, the read that crossed it, and the probes for fromSeq. */
                        ASSERT_LE(r.stats.n_bytes_read, budget + 20 * 65536);
                } else
                        ASSERT_EQ(next, 3001);
                query_result_done(&r);
                ASSERT_LE(++calls, 100);
        } while (r.stats.next_seq != 0);
        ASSERT_GE(calls, 5); /* ~900 KB of records, 64 KiB a call */

        /* Matching nothing: none in each answer, and still on to the end. */
        q.uid = 12345;
        next = 1;
        calls = 0;
        do {
                q.seq_from = next;
                query_wait(f.base, f.log, &q, SIZE_MAX, &r);
                ASSERT_OK(r.error);
                ASSERT_EQ(query_result_n(&r), 0);
                ASSERT_TRUE(r.stats.next_seq == 0 || r.stats.next_seq > next);
                next = r.stats.next_seq;
                query_result_done(&r);
                ASSERT_LE(++calls, 100);
        } while (next != 0);
        ASSERT_GE(calls, 5);

        /* Within toSeq: a call goes on only where the range does. */
        q.uid = AUDIT_UID_INVALID;
        q.seq_from = 1;
        q.seq_to = 500;
        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        ASSERT_OK(r.error);
        ASSERT_TRUE(r.stats.next_seq > 1 && r.stats.next_seq <= 500);
        assert_range(&r, 1, r.stats.next_seq - 1);
        query_result_done(&r);
        /* Unbounded, as the worker's own read-back of a record queries: all at once. */
        q.max_scan_bytes = UINT64_MAX;
        query_wait(f.base, f.log, &q, SIZE_MAX, &r);
        assert_range(&r, 1, 500);
        ASSERT_EQ(r.stats.next_seq, 0u);
        query_result_done(&r);
        fixture_done(&f);
}

TEST_MAIN();
