/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Shared by the benchmark programs: timing and percentiles, what tsmd costs as a process tree
 * (tsmd and every descendant, so that the numbers stay right once tsmd is a monitor with a
 * worker child), the RLIMIT_NOFILE raise, and the raw AF_UNIX echo server that is the baseline
 * every tsmd round trip is compared with.
 *
 * Runs in: benchmarks only.
 */
#pragma once

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NSEC_PER_USEC UINT64_C(1000)
#define NSEC_PER_SEC UINT64_C(1000000000)

uint64_t now_nsec(void);

typedef struct Stats {
        size_t n;
        double p50_us, p99_us, mean_us;
} Stats;

/* Sorts ns[0..n) in place. p50 and p99 by nearest rank: the values at ranks ceil(n/2) and
 * ceil(0.99 n), counted from 1 (the lower median; with fewer than 100 values p99 is the
 * largest). */
Stats stats_of(uint64_t *ns, size_t n);

/* "0.52 0.61 0.70" from /proc/loadavg (static storage): printed with every run, because on a
 * busy machine the absolute numbers mean little. */
const char *loadavg(void);

/* ---- tsmd as a process tree -------------------------------------------------------------- */

#define PROC_TREE_MAX 64

/* root and its descendants (root first), found through the ppid of every /proc entry, which
 * needs no CONFIG_PROC_CHILDREN. Returns how many, at most max. */
size_t proc_tree(pid_t root, pid_t *pids, size_t max);

typedef struct ProcTreeUsage {
        size_t n_procs;
        unsigned long rss_kib;   /* sum of VmRSS: pages shared by the processes count twice */
        unsigned long pss_kib;   /* sum of Pss (smaps_rollup): shared pages split; 0 if unknown */
        unsigned long long cpu_ticks; /* utime + stime, all threads */
        unsigned n_fds;
} ProcTreeUsage;

/* Fails the test if root is gone. */
ProcTreeUsage proc_tree_usage(pid_t root);

/* ---- resources --------------------------------------------------------------------------- */

/* Raises this process's RLIMIT_NOFILE soft limit to at least n (and the hard one if it must and
 * may: CAP_SYS_RESOURCE). Children started afterwards (tsmd) inherit it. Returns the soft limit
 * in force; SKIPs if n cannot be had. */
unsigned long raise_nofile(unsigned long n);

/* ---- the raw AF_UNIX baseline ------------------------------------------------------------- */

/* Writes all of buf to a socket, blocking or not, waiting (poll, 10 s at most each time) for
 * room as needed; negative errno. */
int socket_write_all(int fd, const char *buf, size_t len);

typedef struct EchoServer EchoServer;

/* n_conns socketpairs served by one thread (epoll, like tsmd's one event loop): every
 * NUL-terminated message read is answered with reply (reply_len bytes, its NUL included).
 * Client ends are in echo_server_fd(). */
EchoServer *echo_server_new(size_t n_conns, const char *reply, size_t reply_len);
int echo_server_fd(EchoServer *e, size_t i);
/* Closes the client ends, waits for the thread, frees. */
void echo_server_free(EchoServer *e);

typedef struct RawRun {
        Stats lat;
        size_t completed;
        double seconds;
        double rps;
} RawRun;

/* Closed loop on the first n_clients connections of e from this thread: each keeps depth
 * calls (call_len bytes, NUL included; at most BENCH_DEPTH_MAX) in flight until max_requests
 * were sent or max_usec passed; records every round trip in ns (room for max_requests). */
RawRun echo_server_run(EchoServer *e, size_t n_clients, unsigned depth, const char *call, size_t call_len,
                       size_t reply_len, size_t max_requests, uint64_t max_usec, uint64_t *ns);

/* Calls one client keeps in flight at most (--depth=). */
#define BENCH_DEPTH_MAX 64u

/* Send times of one client's calls in flight, oldest first: replies come in call order. */
typedef struct InFlight {
        uint64_t t0[BENCH_DEPTH_MAX];
        unsigned head, n;
} InFlight;

static inline void in_flight_push(InFlight *f, uint64_t t0) {
        assert(f->n < BENCH_DEPTH_MAX);
        f->t0[(f->head + f->n++) % BENCH_DEPTH_MAX] = t0;
}

static inline uint64_t in_flight_pop(InFlight *f) {
        uint64_t t0;

        assert(f->n > 0);
        t0 = f->t0[f->head];
        f->head = (f->head + 1) % BENCH_DEPTH_MAX;
        f->n--;
        return t0;
}
