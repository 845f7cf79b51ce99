/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers for the audit tests (see audit-test-util.h). Runs in: tests. */

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "audit-test-util.h"
#include "harness.h"
#include "json-raw.h"
#include "json-util.h"

Faults faults;

static struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned n_called, n_sent;
        bool released;
} slow_journald = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

void slow_journald_reset(void) {
        pthread_mutex_lock(&slow_journald.lock);
        slow_journald.n_called = slow_journald.n_sent = 0;
        slow_journald.released = false;
        pthread_mutex_unlock(&slow_journald.lock);
}

int slow_journald_send(const struct iovec *iov, int n) {
        pthread_mutex_lock(&slow_journald.lock);
        slow_journald.n_called++;
        pthread_cond_broadcast(&slow_journald.cond);
        while (!slow_journald.released)
                pthread_cond_wait(&slow_journald.cond, &slow_journald.lock);
        slow_journald.n_sent++;
        pthread_mutex_unlock(&slow_journald.lock);
        return 0;
}

void slow_journald_wait_called(unsigned n) {
        struct timespec deadline;

        ASSERT_OK(clock_gettime(CLOCK_REALTIME, &deadline));
        deadline.tv_sec += 60;
        pthread_mutex_lock(&slow_journald.lock);
        while (slow_journald.n_called < n)
                if (pthread_cond_timedwait(&slow_journald.cond, &slow_journald.lock, &deadline) == ETIMEDOUT) {
                        pthread_mutex_unlock(&slow_journald.lock);
                        TEST_FAIL("the journal mirror sent %u messages, not %u", slow_journald.n_called, n);
                }
        pthread_mutex_unlock(&slow_journald.lock);
}

void slow_journald_release(void) {
        pthread_mutex_lock(&slow_journald.lock);
        slow_journald.released = true;
        pthread_cond_broadcast(&slow_journald.cond);
        pthread_mutex_unlock(&slow_journald.lock);
}

unsigned slow_journald_sent(void) {
        unsigned n;

        pthread_mutex_lock(&slow_journald.lock);
        n = slow_journald.n_sent;
        pthread_mutex_unlock(&slow_journald.lock);
        return n;
}

void faults_reset(void) {
        memset(&faults, 0, sizeof(faults));
        atomic_store(&faults.fstatvfs_avail, -1);
}

static bool fail_now(atomic_int *err, unsigned n, atomic_uint *from) {
        return atomic_load(err) > 0 && (!from || n >= atomic_load(from));
}

static int f_openat(int dirfd, const char *path, int flags, mode_t mode) {
        atomic_fetch_add(&faults.n_openat, 1);
        return audit_file_ops_default.openat(dirfd, path, flags, mode);
}

/* Whether the file has blocks for every byte up to end (it is written without holes). */
static bool has_blocks_to(int fd, uint64_t end) {
        struct stat st;

        return fstat(fd, &st) >= 0 && (uint64_t) st.st_blocks * 512u >= end;
}

static ssize_t f_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
        uint64_t end = (uint64_t) offset;

        atomic_fetch_add(&faults.n_pwritev, 1);
        if (fail_now(&faults.pwritev_errno, 0, NULL))
                return -atomic_load(&faults.pwritev_errno);
        for (int i = 0; i < iovcnt; i++)
                end += iov[i].iov_len;
        if (atomic_load(&faults.disk_full) && !has_blocks_to(fd, end))
                return -ENOSPC;
        return audit_file_ops_default.pwritev(fd, iov, iovcnt, offset);
}

static int f_fdatasync(int fd) {
        unsigned n = atomic_fetch_add(&faults.n_fdatasync, 1) + 1;
        unsigned delay = atomic_load(&faults.fdatasync_delay_usec);

        if (delay > 0)
                usleep(delay);
        if (atomic_load(&faults.fdatasync_hold)) {
                while (atomic_load(&faults.fdatasync_hold))
                        usleep(100);
                if (atomic_load(&faults.fdatasync_hold_errno) > 0)
                        return -atomic_load(&faults.fdatasync_hold_errno);
        }
        if (fail_now(&faults.fdatasync_errno, n, &faults.fdatasync_fail_from))
                return -atomic_load(&faults.fdatasync_errno);
        return audit_file_ops_default.fdatasync(fd);
}

static int f_fsync(int fd) {
        atomic_fetch_add(&faults.n_fsync, 1);
        return audit_file_ops_default.fsync(fd);
}

static int f_fallocate(int fd, int mode, off_t offset, off_t len) {
        atomic_fetch_add(&faults.n_fallocate, 1);
        if (fail_now(&faults.fallocate_errno, 0, NULL))
                return -atomic_load(&faults.fallocate_errno);
        if (atomic_load(&faults.fallocate_enospc_after_ftruncate) && atomic_load(&faults.n_ftruncate) > 0)
                return -ENOSPC;
        if (atomic_load(&faults.disk_full))
                return -ENOSPC;
        return audit_file_ops_default.fallocate(fd, mode, offset, len);
}

static int f_ftruncate(int fd, off_t length) {
        atomic_fetch_add(&faults.n_ftruncate, 1);
        if (fail_now(&faults.ftruncate_errno, 0, NULL))
                return -atomic_load(&faults.ftruncate_errno);
        return audit_file_ops_default.ftruncate(fd, length);
}

static int f_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
        atomic_fetch_add(&faults.n_renameat, 1);
        if (fail_now(&faults.renameat_errno, 0, NULL))
                return -atomic_load(&faults.renameat_errno);
        return audit_file_ops_default.renameat(olddirfd, oldpath, newdirfd, newpath);
}

static int f_fstatvfs(int fd, struct statvfs *ret) {
        long long avail = atomic_load(&faults.fstatvfs_avail);
        int r;

        atomic_fetch_add(&faults.n_fstatvfs, 1);
        r = audit_file_ops_default.fstatvfs(fd, ret);
        if (r >= 0 && avail >= 0)
                ret->f_bavail = (fsblkcnt_t) avail / ret->f_frsize;
        return r;
}

static ssize_t f_pread(int fd, void *buf, size_t n, off_t offset) {
        ssize_t k;

        atomic_fetch_add(&faults.n_pread, 1);
        atomic_store(&faults.pread_waiting, true);
        while (atomic_load(&faults.pread_hold))
                usleep(100);
        atomic_store(&faults.pread_waiting, false);
        k = audit_file_ops_default.pread(fd, buf, n, offset);
        if (k > 0)
                atomic_fetch_add(&faults.pread_bytes, (unsigned long long) k);
        return k;
}

const AuditFileOps fault_ops = {
        .openat = f_openat,
        .pwritev = f_pwritev,
        .fdatasync = f_fdatasync,
        .fsync = f_fsync,
        .fallocate = f_fallocate,
        .ftruncate = f_ftruncate,
        .renameat = f_renameat,
        .fstatvfs = f_fstatvfs,
        .pread = f_pread,
};

char *test_dir_new(void) {
        char *d = strdup("/tmp/test-audit-XXXXXX");

        if (!d || !mkdtemp(d))
                TEST_FAIL("mkdtemp: %m");
        return d;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

void test_dir_remove(char *dir) {
        if (!dir)
                return;
        (void) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        free(dir);
}

void test_config(AuditConfig *c, const char *dir) {
        faults_reset();
        audit_config_init(c);
        c->directory = dir;
        c->journal = false;
        c->ops = &fault_ops;
}

void ack_callback(AuditLog *a, uint64_t seq, int error, void *userdata) {
        Acks *acks = userdata;

        if (!GREEDY_REALLOC(acks->seqs, acks->allocated, acks->n + 1))
                TEST_FAIL("oom");
        acks->errors = realloc(acks->errors, acks->allocated * sizeof(int));
        if (!acks->errors)
                TEST_FAIL("oom");
        if (acks->n > 0 && seq <= acks->seqs[acks->n - 1])
                acks->out_of_order = true;
        acks->seqs[acks->n] = seq;
        acks->errors[acks->n] = error;
        acks->n++;
}

void acks_done(Acks *acks) {
        free(acks->seqs);
        free(acks->errors);
        *acks = (Acks){};
}

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

void run_until(struct event_base *base, const size_t *n, size_t want) {
        uint64_t deadline = now_ms() + 60000;

        while (*n < want) {
                struct timeval tv = { 0, 10000 };

                if (now_ms() > deadline)
                        TEST_FAIL("timeout waiting for %zu events, have %zu", want, *n);
                /* A timeout so that a lost wakeup shows up as a failure, not a hang. */
                event_base_loopexit(base, &tv);
                event_base_loop(base, EVLOOP_ONCE);
        }
}

void read_all_seqs(const char *dir, unsigned n_files, uint64_t **ret, size_t *ret_n) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        uint64_t *seqs = NULL;
        size_t n = 0, allocated = 0;

        ASSERT_OK(json_tokener_new_strict(1, &tok));
        for (unsigned i = n_files; i-- > 0;) {
                char path[4096], name[64];
                _cleanup_free_ char *data = NULL;
                size_t size = 0;
                struct stat st;
                FILE *f;

                audit_file_name(i, name);
                snprintf(path, sizeof(path), "%s/%s", dir, name);
                f = fopen(path, "re");
                if (!f)
                        continue;
                /* As large as the file, not a fixed 64 MiB: with MALLOC_PERTURB_ (which meson
                 * sets) every byte of it is written, a thousand files took minutes. */
                ASSERT_OK(fstat(fileno(f), &st));
                data = malloc((size_t) st.st_size + 1);
                ASSERT_NOT_NULL(data);
                size = fread(data, 1, (size_t) st.st_size, f);
                fclose(f);
                if (size > 0 && data[size - 1] != '\n')
                        TEST_FAIL("%s: partial last line", path);
                for (size_t pos = 0; pos < size;) {
                        char *nl = memchr(data + pos, '\n', size - pos);
                        uint64_t seq;

                        ASSERT_NOT_NULL(nl);
                        if (audit_line_parse(tok, data + pos, (size_t) (nl - data - pos), NULL, &seq) < 0)
                                TEST_FAIL("%s: line at offset %zu does not parse", path, pos);
                        if (!GREEDY_REALLOC(seqs, allocated, n + 1))
                                TEST_FAIL("oom");
                        seqs[n++] = seq;
                        pos = (size_t) (nl - data) + 1;
                }
        }
        *ret = seqs;
        *ret_n = n;
}

void append_bytes(const char *dir, const char *name, const void *data, size_t n) {
        char path[4096];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0)
                TEST_FAIL("open %s: %m", path);
        if (write(fd, data, n) != (ssize_t) n)
                TEST_FAIL("write %s: %m", path);
        close(fd);
}

AuditRecord sample_record(void) {
        AuditRecord r = AUDIT_RECORD_INIT;

        r.event = "guest-request";
        r.uid = 107;
        r.gid = 107;
        r.pid = 4242;
        r.unit = "qemu-vm1.scope";
        r.context_id = 3;
        r.vdevice_id = 17;
        r.pci = "0000:01:00.0";
        r.backend = "emulated";
        r.scope = "info";
        r.scope_number = 0;
        r.request_size = 16;
        r.response_size = 32;
        r.result = "ok";
        r.latency_usec = 120;
        return r;
}

void query_done_callback(int error, json_object *records, const AuditQueryStats *stats, void *userdata) {
        QueryResult *r = userdata;

        r->n_done++;
        r->error = error;
        r->stats = *stats;
        json_object_put(r->records);
        r->records = NULL;
        /* Held as text (json-raw.h): the tree, to look inside. */
        if (records)
                ASSERT_OK(json_raw_array_parse(records, &r->records));
        json_object_put(records);
}

void query_result_done(QueryResult *r) {
        json_object_put(r->records);
        r->records = NULL;
}

void query_wait(struct event_base *base, AuditLog *log, const AuditQueryFilter *q, size_t limit,
                QueryResult *ret) {
        *ret = (QueryResult){};
        ASSERT_OK(audit_log_query(log, q, limit, query_done_callback, ret, NULL));
        run_until(base, &ret->n_done, 1);
        ASSERT_EQ(ret->n_done, 1);
}

uint64_t query_result_seq(const QueryResult *r, size_t i) {
        json_object *o = json_object_array_get_idx(r->records, i), *seq;

        ASSERT_NOT_NULL(o);
        ASSERT_TRUE(json_object_object_get_ex(o, "seq", &seq));
        return json_object_get_uint64(seq);
}

size_t query_result_n(const QueryResult *r) {
        return r->records ? json_object_array_length(r->records) : 0;
}
