/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Benchmark helpers (see bench-util.h). Runs in: benchmarks only. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"
#include "harness.h"
#include "macro.h"

uint64_t now_nsec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

Stats stats_of(uint64_t *ns, size_t n) {
        Stats s = { .n = n };
        double sum = 0;

        if (n == 0)
                return s;
        qsort(ns, n, sizeof(*ns), cmp_u64);
        for (size_t i = 0; i < n; i++)
                sum += (double) ns[i];
        /* Nearest rank: the p-th percentile is the ceil(p/100 * n)-th smallest value. */
        s.p50_us = (double) ns[(n - 1) / 2] / 1e3;
        s.p99_us = (double) ns[(n * 99 + 99) / 100 - 1] / 1e3;
        s.mean_us = sum / (double) n / 1e3;
        return s;
}

const char *loadavg(void) {
        static char buf[64];
        FILE *f = fopen("/proc/loadavg", "re");
        double a, b, c;

        if (!f || fscanf(f, "%lf %lf %lf", &a, &b, &c) != 3)
                snprintf(buf, sizeof(buf), "unknown");
        else
                snprintf(buf, sizeof(buf), "%.2f %.2f %.2f", a, b, c);
        if (f)
                fclose(f);
        return buf;
}

/* ---- tsmd as a process tree -------------------------------------------------------------- */

/* The fields after "pid (comm) ", which may itself contain spaces and parentheses. */
static bool read_stat_fields(pid_t pid, char *buf, size_t size, const char **ret_fields) {
        char path[64];
        const char *p;
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        n = read(fd, buf, size - 1);
        close(fd);
        if (n <= 0)
                return false;
        buf[n] = 0;
        p = strrchr(buf, ')');
        if (!p || p[1] != ' ')
                return false;
        *ret_fields = p + 2;
        return true;
}

typedef struct ProcParent {
        pid_t pid, ppid;
} ProcParent;

size_t proc_tree(pid_t root, pid_t *pids, size_t max) {
        ProcParent all[4096];
        size_t n_all = 0, n = 0;
        struct dirent *de;
        DIR *d;

        if (max == 0)
                return 0;
        pids[n++] = root;

        d = opendir("/proc");
        if (!d)
                return n;
        while ((de = readdir(d)) && n_all < ELEMENTSOF(all)) {
                char buf[1024];
                const char *f;
                char *end;
                long pid = strtol(de->d_name, &end, 10);
                int ppid;

                if (*end || pid <= 0 || !read_stat_fields((pid_t) pid, buf, sizeof(buf), &f))
                        continue;
                /* state ppid ... */
                if (sscanf(f, "%*c %d", &ppid) == 1)
                        all[n_all++] = (ProcParent) { (pid_t) pid, (pid_t) ppid };
        }
        closedir(d);

        /* Breadth first: pids[0..n) grows while it is walked. */
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n_all && n < max; j++)
                        if (all[j].ppid == pids[i])
                                pids[n++] = all[j].pid;
        return n;
}

static unsigned long status_kib(const char *path, const char *key) {
        char line[256];
        size_t key_len = strlen(key);
        unsigned long v = 0;
        FILE *f = fopen(path, "re");

        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (strneq(line, key, key_len) && sscanf(line + key_len, "%lu", &v) == 1)
                        break;
        fclose(f);
        return v;
}

static unsigned count_fds(pid_t pid) {
        char path[64];
        unsigned n = 0;
        struct dirent *de;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int) pid);
        d = opendir(path);
        if (!d)
                return 0;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

ProcTreeUsage proc_tree_usage(pid_t root) {
        pid_t pids[PROC_TREE_MAX];
        ProcTreeUsage u = {};
        char path[64];

        if (kill(root, 0) < 0)
                TEST_FAIL("tsmd (pid %d) is gone", (int) root);

        u.n_procs = proc_tree(root, pids, ELEMENTSOF(pids));
        for (size_t i = 0; i < u.n_procs; i++) {
                unsigned long long utime, stime;
                char buf[1024];
                const char *f;

                snprintf(path, sizeof(path), "/proc/%d/status", (int) pids[i]);
                u.rss_kib += status_kib(path, "VmRSS:");
                snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int) pids[i]);
                u.pss_kib += status_kib(path, "Pss:");
                u.n_fds += count_fds(pids[i]);
                /* Fields 14 and 15 of stat; f starts at field 3. */
                if (read_stat_fields(pids[i], buf, sizeof(buf), &f) &&
                    sscanf(f, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) == 2)
                        u.cpu_ticks += utime + stime;
        }
        return u;
}

/* ---- resources --------------------------------------------------------------------------- */

unsigned long raise_nofile(unsigned long n) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                TEST_FAIL("getrlimit: %s", strerror(errno));
        if (rl.rlim_cur >= n)
                return rl.rlim_cur;
        if (rl.rlim_max < n)
                rl.rlim_max = n; /* only with CAP_SYS_RESOURCE */
        rl.rlim_cur = n;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                SKIP("cannot raise RLIMIT_NOFILE to %lu: %s (raise the hard limit, e.g. ulimit -Hn)", n,
                     strerror(errno));
        return n;
}

/* ---- the raw AF_UNIX baseline ------------------------------------------------------------- */

struct EchoServer {
        size_t n;
        int *client_fds;
        int *server_fds;
        int epfd;
        const char *reply;
        size_t reply_len;
        pthread_t thread;
};

int socket_write_all(int fd, const char *buf, size_t len) {
        while (len > 0) {
                ssize_t k = write(fd, buf, len);

                if (k < 0 && errno == EAGAIN) {
                        struct pollfd p = { .fd = fd, .events = POLLOUT };
                        if (poll(&p, 1, 10000) <= 0)
                                return -ETIMEDOUT;
                        continue;
                }
                if (k <= 0)
                        return k < 0 ? -errno : -EPIPE;
                buf += k;
                len -= (size_t) k;
        }
        return 0;
}

static void *echo_thread(void *arg) {
        EchoServer *e = arg;
        size_t open = e->n;
        char buf[65536];

        while (open > 0) {
                struct epoll_event ev[64];
                int k = epoll_wait(e->epfd, ev, ELEMENTSOF(ev), -1);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        break;
                for (int i = 0; i < k; i++) {
                        int fd = ev[i].data.fd;
                        ssize_t n = read(fd, buf, sizeof(buf));

                        if (n < 0 && errno == EAGAIN)
                                continue;
                        if (n <= 0) {
                                epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL);
                                open--;
                                continue;
                        }
                        for (ssize_t j = 0; j < n; j++)
                                if (buf[j] == 0 && socket_write_all(fd, e->reply, e->reply_len) < 0)
                                        return NULL;
                }
        }
        return NULL;
}

EchoServer *echo_server_new(size_t n_conns, const char *reply, size_t reply_len) {
        EchoServer *e = new0(EchoServer, 1);

        ASSERT_NOT_NULL(e);
        *e = (EchoServer) {
                .n = n_conns,
                .client_fds = new0(int, n_conns),
                .server_fds = new0(int, n_conns),
                .reply = reply,
                .reply_len = reply_len,
        };
        ASSERT_TRUE(e->client_fds && e->server_fds);
        ASSERT_OK(e->epfd = epoll_create1(EPOLL_CLOEXEC));
        for (size_t i = 0; i < n_conns; i++) {
                int sv[2];

                ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv));
                e->client_fds[i] = sv[0];
                e->server_fds[i] = sv[1];
                ASSERT_OK(epoll_ctl(e->epfd, EPOLL_CTL_ADD, sv[1],
                                    &(struct epoll_event) { .events = EPOLLIN, .data.fd = sv[1] }));
        }
        ASSERT_TRUE(pthread_create(&e->thread, NULL, echo_thread, e) == 0);
        return e;
}

int echo_server_fd(EchoServer *e, size_t i) {
        assert(i < e->n);
        return e->client_fds[i];
}

void echo_server_free(EchoServer *e) {
        if (!e)
                return;
        for (size_t i = 0; i < e->n; i++)
                close(e->client_fds[i]);
        pthread_join(e->thread, NULL);
        for (size_t i = 0; i < e->n; i++)
                close(e->server_fds[i]);
        close(e->epfd);
        free(e->client_fds);
        free(e->server_fds);
        free(e);
}

typedef struct RawClient {
        InFlight f;
        size_t received; /* bytes of the reply being read */
} RawClient;

RawRun echo_server_run(EchoServer *e, size_t n_clients, unsigned depth, const char *call, size_t call_len,
                       size_t reply_len, size_t max_requests, uint64_t max_usec, uint64_t *ns) {
        _cleanup_free_ struct pollfd *pfd = new0(struct pollfd, n_clients);
        _cleanup_free_ RawClient *cl = new0(RawClient, n_clients);
        uint64_t start = now_nsec(), deadline = start + max_usec * NSEC_PER_USEC;
        size_t sent = 0, done = 0;
        RawRun run = {};
        char buf[65536];

        ASSERT_TRUE(pfd && cl && n_clients <= e->n && depth >= 1 && depth <= BENCH_DEPTH_MAX);
        for (;;) {
                bool stop = sent >= max_requests || now_nsec() > deadline;
                size_t busy = 0;

                for (size_t i = 0; i < n_clients; i++) {
                        while (cl[i].f.n < depth && !stop) {
                                in_flight_push(&cl[i].f, now_nsec());
                                ASSERT_OK(socket_write_all(e->client_fds[i], call, call_len));
                                stop = ++sent >= max_requests;
                        }
                        busy += cl[i].f.n;
                        pfd[i] = (struct pollfd) { .fd = e->client_fds[i], .events = POLLIN };
                }
                if (stop && busy == 0)
                        break;
                if (now_nsec() > deadline + 10 * NSEC_PER_SEC)
                        TEST_FAIL("%zu raw replies did not arrive in time", busy);

                ASSERT_OK(poll(pfd, n_clients, 1000));
                for (size_t i = 0; i < n_clients; i++) {
                        ssize_t k;

                        if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        k = read(e->client_fds[i], buf, sizeof(buf));
                        if (k < 0 && errno == EAGAIN)
                                continue;
                        if (k <= 0)
                                TEST_FAIL("raw echo connection %zu: %s", i, k < 0 ? strerror(errno) : "EOF");
                        for (ssize_t j = 0; j < k; j++) {
                                if (cl[i].f.n == 0)
                                        TEST_FAIL("raw echo connection %zu: more replies than calls", i);
                                if (++cl[i].received < reply_len)
                                        continue;
                                if (buf[j] != 0)
                                        TEST_FAIL("raw echo connection %zu: reply not NUL-terminated", i);
                                cl[i].received = 0;
                                ns[done++] = now_nsec() - in_flight_pop(&cl[i].f);
                        }
                }
        }
        run.seconds = (double) (now_nsec() - start) / 1e9;
        run.completed = done;
        run.rps = (double) done / run.seconds;
        run.lat = stats_of(ns, done);
        return run;
}
