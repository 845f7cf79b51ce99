/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Integration test fixture: starts the real tsmd binary (TSMD_PATH, set by meson) in a fresh
 * temporary directory with a given tsmd.conf (and any further files, such as a policy), waits
 * until its socket accepts connections, and stops it with SIGTERM expecting exit status 0.
 * tsmd's stderr goes to <dir>/tsmd.log. A guard process watches the test: if the test dies
 * before tsmd_teardown() (a failed ASSERT_* is an _exit(1)), the guard kills tsmd, prints its
 * log to stderr and removes the directory. tsmd also gets PR_SET_PDEATHSIG, so nothing
 * outlives a test.
 *
 * Plus helpers to connect clients (also as another uid/gid), to call methods and assert on
 * their errors and error parameters, to wait for asynchronous replies with a bound, base64,
 * and to read tsmd's fd count, RSS and CPU time for leak checks.
 *
 * Every wait is bounded. Everything fails through TEST_FAIL()/SKIP() of tests/harness.h.
 * Runs in: tests only.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "harness.h"
#include "varlink-client.h"

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)

/* How long tsmd may take to start listening, and to exit after SIGTERM. */
/* Bound on a start: 10 s, four times that under valgrind (as TSMD_WAIT_USEC, below: a loaded
 * machine took a valgrind worker past 10 s to serve). */
#define TSMD_START_TIMEOUT_USEC tsmd_start_timeout_usec()
uint64_t tsmd_start_timeout_usec(void);
/* Bound on an exit: 5 s, four times that under valgrind (a loaded machine took a callgrind
 * worker past 5 s to close a benchmark's 512 contexts, and the SIGKILL lost its counts). */
#define TSMD_STOP_TIMEOUT_USEC TSMD_WAIT_USEC
/* Default bound for a wait on something tsmd should do promptly: 5 s, four times that with tsmd
 * under valgrind, which runs it tens of times slower (a worker's restart takes seconds there,
 * more beside other suites). A bound on waiting only: no test waits it out to see nothing. */
#define TSMD_WAIT_USEC tsmd_wait_usec()
uint64_t tsmd_wait_usec(void);

/* An extra file written into tsmd's directory before it starts (a policy, say). */
typedef struct TsmdFile {
        const char *name; /* relative to the directory, no slashes */
        const char *text;
} TsmdFile;

typedef struct TsmdOptions {
        /* Contents of <dir>/tsmd.conf, passed as --config=. NULL: an empty file. */
        const char *config;
        /* No --config=: tsmd reads its built-in default file, and what it names (the test
         * arranges what is there, in a mount namespace of its own). */
        bool default_config;
        const TsmdFile *files;
        size_t n_files;
        /* --sysfs-root=; NULL: none. */
        const char *sysfs_root;
        /* Program (and its arguments, NULL-terminated) that runs tsmd, e.g. systemd-socket-
         * activate -l @SOCKET@: an argument "@SOCKET@" is replaced by the socket's path. With
         * a wrapper, tsmd gets no --socket= nor --guest-socket=. The wrapper must exec tsmd in
         * place (same pid). */
        const char *const *wrapper;
        /* Further tsmd arguments, NULL-terminated; NULL: none. */
        const char *const *args;
        /* --log-level=; NULL: debug. */
        const char *log_level;
        /* Further environment, "NAME=value", NULL-terminated; NULL: none. */
        const char *const *env;
        /* tsmd in a PID namespace of its own (as in a container; root only): the test and the
         * processes it forks are ones tsmd cannot see, which SO_PEERCRED gives pid 0. */
        bool pid_namespace;
        /* RLIMIT_NOFILE for tsmd (a hard limit below the test's cannot be raised back without
         * CAP_SYS_RESOURCE); NULL: the test's. */
        const struct rlimit *nofile;
} TsmdOptions;

#define TSMD_MAX_HELPERS 16

typedef struct Tsmd {
        pid_t pid;         /* tsmd; 0 once it was reaped */
        bool sigterm_sent;
        int exit_status;   /* wait status, once reaped */
        pid_t guard_pid;
        int guard_fd;
        char dir[256];
        char socket[300];       /* --socket=: every interface, mode 0660 */
        char guest_socket[300]; /* --guest-socket=: io.tsmd.Guest (and Service), mode 0666 */
        char config_path[300];
        char log_path[300];
        /* Processes holding connections made as another user (see tsmd_connect_as()). */
        pid_t helpers[TSMD_MAX_HELPERS];
        int helper_fds[TSMD_MAX_HELPERS];
        size_t n_helpers;
        unsigned running_before; /* the monitor's "running." lines in the log before this start */
} Tsmd;

/* ---- lifecycle ------------------------------------------------------------------------- */

/* With $TSMD_TEST_VALGRIND set, tsmd (monitor and worker) runs under valgrind's memcheck, and
 * tsmd_teardown() fails the test for any error it reported. With $TSMD_TEST_CALLGRIND set to a
 * directory, under callgrind instead, each thread counted apart, for a profile (BENCHMARKS.md). */
bool tsmd_under_valgrind(void);
/* The ASAN_OPTIONS= entry of a tsmd started with an LD_PRELOAD library (the test's own options
 * and verify_asan_link_order=0: under ASan the preloaded library comes before the sanitizer's
 * runtime, which is allowed). Static storage. */
const char *tsmd_preload_asan_env(void);

/* Starts tsmd; fails the test if it does not listen within TSMD_START_TIMEOUT_USEC. */
void tsmd_start(Tsmd *t, const TsmdOptions *o);
/* Shorthand: only a tsmd.conf. */
void tsmd_start_config(Tsmd *t, const char *config);
/* tsmd_start() in two halves, for a test with something to do while tsmd starts (what it logs
 * on the way: tsmd_wait_log()): starts tsmd and returns; then waits for it as tsmd_start() does
 * (from the call on). Not with a wrapper. */
void tsmd_start_nowait(Tsmd *t, const TsmdOptions *o);
void tsmd_wait_running(Tsmd *t);
/* Starts tsmd again after it stopped or died, on the same directory (configuration, sockets,
 * audit log, contexts, tsmd.log), with options o: those of tsmd_start() but for the files,
 * which are already there. */
void tsmd_restart(Tsmd *t, const TsmdOptions *o);

/* True while tsmd has not exited (reaps it if it has). */
bool tsmd_is_running(Tsmd *t);

/* SIGTERM (unless the test sent one already: a second one is not what is being tested), then
 * waits up to TSMD_STOP_TIMEOUT_USEC; SIGKILL and a test failure if it does not exit in time.
 * Returns the wait status (does not judge it). */
int tsmd_terminate(Tsmd *t);
/* tsmd_terminate() and fails the test unless tsmd exited with status 0. */
void tsmd_stop(Tsmd *t);
/* Stops tsmd if still running (expecting exit status 0), ends the helpers, removes the
 * directory and dismisses the guard. Call at the end of every test. Fails the test if tsmd's
 * log holds a sanitizer report (in sanitized builds UBSan reports and goes on, and leaks are
 * reported at exit, unsymbolized: the worker's seccomp filter would kill LeakSanitizer's
 * symbolizer, a program). */
void tsmd_teardown(Tsmd *t);
/* The same, and fails the test unless its last worker exited with status 0. The log must be at
 * level info or lower. */
void tsmd_expect_clean_exit(Tsmd *t);

/* Sends a signal to tsmd (and remembers a SIGTERM). */
void tsmd_kill(Tsmd *t, int sig);
/* SIGKILLs tsmd's worker, as a crash would; returns once the monitor's next one serves. Its
 * clients' connections are gone; their contexts wait to be reclaimed. */
void tsmd_kill_worker(Tsmd *t);

/* Replaces tsmd.conf (atomically) and sends SIGHUP; waits until tsmd logged that it reloaded
 * or kept its configuration (bounded). Returns true if it reloaded, false if it kept the old. */
bool tsmd_reload(Tsmd *t, const char *config);
/* Replaces tsmd.conf (atomically, with the fixture's own sections as at start), no reload. */
void tsmd_write_config(Tsmd *t, const char *config);
/* Rewrites a file in tsmd's directory (atomically). */
void tsmd_write_file(Tsmd *t, const char *name, const char *text);

/* tsmd's log so far (malloc'd, NUL-terminated), and whether it contains needle. */
char *tsmd_read_log(Tsmd *t);
bool tsmd_log_contains(Tsmd *t, const char *needle);
/* Number of occurrences of needle in the log. */
unsigned tsmd_log_count(Tsmd *t, const char *needle);
/* Waits (bounded) until the log holds at least n occurrences of needle. */
bool tsmd_wait_log(Tsmd *t, const char *needle, unsigned n, uint64_t timeout_usec);

/* ---- resource accounting --------------------------------------------------------------- */
/* tsmd is two processes, the monitor (t->pid) and its worker: counts are their sums. */

/* The worker's pid, or 0 while the monitor restarts it. */
pid_t tsmd_worker_pid(Tsmd *t);
/* Sets the worker's RLIMIT_FSIZE (soft; RLIM_INFINITY lifts it): writes past cur then fail
 * EFBIG (the worker ignores SIGXFSZ), a stand-in for an I/O error of the audit log's disk. */
void tsmd_set_worker_fsize(Tsmd *t, rlim_t cur);
/* The open fds of one process. */
unsigned tsmd_count_fds_of(pid_t pid);
/* The threads of pid (its /proc/<pid>/status). */
unsigned tsmd_threads_of(pid_t pid);

unsigned tsmd_count_fds(Tsmd *t);
/* Lists each open fd of tsmd's processes and what it is, on stderr as TAP comments: what a
 * test prints when a count did not come back, for the look at what was left. */
void tsmd_print_fds(Tsmd *t);
/* VmRSS in KiB. */
unsigned long tsmd_rss_kib(Tsmd *t);
/* RssAnon in KiB: the heap and stacks, not the pages of code and files first touched. */
unsigned long tsmd_anon_kib(Tsmd *t);
/* VmHWM in KiB: the most VmRSS was. */
unsigned long tsmd_hwm_kib(Tsmd *t);
/* utime + stime in clock ticks. */
unsigned long long tsmd_cpu_ticks(Tsmd *t);
/* tsmd's fd count with no client connected, measured deterministically: through a client
 * that waits until GetStatus counts only itself (so every earlier connection, including the
 * fixture's readiness probes, is fully closed), minus that client's connection. */
unsigned tsmd_idle_fds(Tsmd *t);
/* The same with n_clients of the test's connections open (they must be idle). */
unsigned tsmd_settled_fds(Tsmd *t, unsigned n_clients);
/* Waits (bounded) until tsmd has exactly n open fds; returns the last count seen. */
unsigned tsmd_wait_fds(Tsmd *t, unsigned n, uint64_t timeout_usec);

/* ---- clients --------------------------------------------------------------------------- */

/* A connection to the socket serving everything (as the test's own uid, root or not). */
VarlinkClient *tsmd_connect(Tsmd *t);
/* A connection to the guest socket (no wrapper: tsmd listens there too). */
VarlinkClient *tsmd_connect_guest(Tsmd *t);
/* A connection to the guest socket made by a process running as uid/gid (no supplementary
 * groups), handed over to this process with SCM_RIGHTS: tsmd sees that uid in SO_PEERCRED.
 * The process stays alive (so its pid stays valid) until tsmd_teardown(). SKIPs unless
 * running as root. */
VarlinkClient *tsmd_connect_as(Tsmd *t, uid_t uid, gid_t gid);
/* The same to another of tsmd's sockets (which uid must be allowed to open). */
VarlinkClient *tsmd_connect_to_as(Tsmd *t, const char *socket, uid_t uid, gid_t gid);
/* The same with n_groups supplementary groups. */
VarlinkClient *tsmd_connect_to_as_groups(Tsmd *t, const char *socket, uid_t uid, gid_t gid, const gid_t *groups,
                                         size_t n_groups);
bool tsmd_can_switch_uid(void);

/* A mount namespace of the test's own (/ private), which the tsmd it starts shares: what the
 * test mounts there tsmd sees, and it all goes away with them. SKIPs (saying why the test
 * needs it) unless root. */
void tsmd_private_mount_namespace(const char *why);

/* ---- the audit log, through io.tsmd.Admin.QueryAudit ----------------------------------------- */

/* The records QueryAudit returns for params (JSON text, NULL: all), a new reference. */
json_object *tsmd_audit_query(Tsmd *t, const char *params);
/* The seq of the last record, 0 if there is none. */
int64_t tsmd_audit_last_seq(Tsmd *t);
/* Records after seq `after` of this event with this result, made by the test's own uid; a
 * summary (a record with "count") counts as the calls it stands for. */
size_t tsmd_audit_count(Tsmd *t, int64_t after, const char *event, const char *result);
/* The same among the records QueryAudit selects by filter: its parameters as JSON members
 * ("\"uid\":0,\"pciAddress\":\"...\""; NULL: all records). */
size_t tsmd_audit_count_where(Tsmd *t, int64_t after, const char *filter, const char *event, const char *result);
/* Waits (bounded) for n such records; fails the test if there are more, or fewer by then. */
#define tsmd_expect_audit(t, after, event, result, n) \
        tsmd_expect_audit_at(__FILE__, __LINE__, (t), (after), (event), (result), (n))
void tsmd_expect_audit_at(const char *file, int line, Tsmd *t, int64_t after, const char *event, const char *result,
                          size_t n);

/* A connected AF_UNIX socket to tsmd, for raw-protocol use; -errno on failure. */
int tsmd_raw_connect(const char *path);
/* Sends all n bytes at p on a raw socket; false if tsmd is gone (EPIPE, ECONNRESET), any other
 * failure fails the test. */
bool tsmd_raw_send(int fd, const void *p, size_t n);
/* Reads one NUL-terminated message (malloc'd) from a raw socket, or NULL on a hang-up. Fails
 * the test when neither comes within timeout_usec, and on a hang-up within a message (tsmd
 * never sends half of one). A byte at a time: what follows the NUL is the next message's. */
char *tsmd_raw_recv(int fd, uint64_t timeout_usec);

/* printf into one of a ring of static buffers (for JSON parameters). */
const char *strf(const char *format, ...) _printf_(1, 2);

/* Calls method with parameters given as JSON text (NULL: {}). Returns the error name (NULL
 * on success) and the reply's parameters in *ret (borrowed: valid until the next call on c).
 * A local failure (disconnect, timeout) fails the test. */
const char *tsmd_call(VarlinkClient *c, const char *method, const char *params, json_object **ret);

/* Location-reporting assertions around tsmd_call(). */
json_object *tsmd_call_ok_at(const char *file, int line, VarlinkClient *c, const char *method,
                             const char *params);
/* Asserts the call fails with error, and that every key of expected_params (JSON object text,
 * may be NULL) is in the error's parameters with an equal value. Returns the parameters. */
json_object *tsmd_call_error_at(const char *file, int line, VarlinkClient *c, const char *method,
                                const char *params, const char *error, const char *expected_params);
#define CALL_OK(c, method, params) tsmd_call_ok_at(__FILE__, __LINE__, (c), (method), (params))
#define CALL_ERROR(c, method, params, error, expected)                                             \
        tsmd_call_error_at(__FILE__, __LINE__, (c), (method), (params), (error), (expected))

/* Typed getters that fail the test when the field is missing or mistyped. */
int64_t json_int_at(const char *file, int line, json_object *o, const char *key);
const char *json_str_at(const char *file, int line, json_object *o, const char *key);
bool json_bool_at(const char *file, int line, json_object *o, const char *key);
#define JINT(o, key) json_int_at(__FILE__, __LINE__, (o), (key))
#define JSTR(o, key) json_str_at(__FILE__, __LINE__, (o), (key))
#define JBOOL(o, key) json_bool_at(__FILE__, __LINE__, (o), (key))
/* True if every key of expected (JSON text) is in o with an equal value. */
bool json_matches(json_object *o, const char *expected);

/* ---- asynchronous calls ---------------------------------------------------------------- */

#define ASYNC_MAX_REPLIES 32

/* Collects every reply of one asynchronous (possibly "more") call. */
typedef struct AsyncCall {
        json_object *params[ASYNC_MAX_REPLIES]; /* owned references */
        char *errors[ASYNC_MAX_REPLIES];        /* NULL for a successful reply */
        size_t n;
        bool done; /* the final reply (continues: false) arrived */
} AsyncCall;

/* Sends a call without waiting (flags: 0 or VARLINK_CALL_MORE); replies land in *a. */
void tsmd_call_async(VarlinkClient *c, const char *method, const char *params, unsigned flags,
                     AsyncCall *a);
/* Processes c's input until *a holds at least n replies or the timeout passes. A local
 * failure of the connection is recorded by the client as an error reply (io.tsmd.Disconnected).
 * Returns true if the n replies arrived. */
bool tsmd_async_wait(VarlinkClient *c, AsyncCall *a, size_t n, uint64_t timeout_usec);
/* Processes whatever is readable on c for up to timeout_usec (to let replies arrive that
 * must not). */
void tsmd_pump(VarlinkClient *c, uint64_t timeout_usec);
void async_call_done(AsyncCall *a);

/* Waits (bounded) until the peer closed the connection: POLLHUP or EOF on the socket. */
bool tsmd_wait_hangup(VarlinkClient *c, uint64_t timeout_usec);

/* ---- misc ------------------------------------------------------------------------------ */

uint64_t now_usec(void);
void sleep_usec(uint64_t usec);
/* Base64 of len bytes (malloc'd) / decoding into a malloc'd buffer (fails the test if bad). */
char *b64(const void *data, size_t len);
void *unb64(const char *text, size_t *ret_len);
/* Writes text to path (creating or truncating it). */
void write_file(const char *path, const char *text);
/* The whole of path (malloc'd, NUL-terminated); NULL if it does not exist. */
char *read_file(const char *path);
/* Runs argv (argv[0] a path), with stdout and stderr captured (malloc'd); returns the wait
 * status. Bounded by timeout_usec (SIGKILL and a test failure after it). */
int run_capture(const char *const *argv, char **ret_stdout, char **ret_stderr, uint64_t timeout_usec);
/* Removes a directory tree. */
int rm_rf(const char *path);
/* A fresh directory under /tmp (static storage) that is removed when the test process ends,
 * however it ends. */
const char *scratch_dir(void);
