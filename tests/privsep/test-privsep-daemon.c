/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The monitor against a compromised worker, end to end: the real tsmd runs worker-proxy in the
 * worker's seat (tsmd --worker=), which relays to a real tsmd-worker and, on SIGUSR1, sends the
 * monitor one datagram no worker may send: short, long, with reserved bits or flags, of an
 * unknown type or direction, naming another slot's or no context, a scope the device lacks, a
 * payload beyond the scope's limit, a stray fd, a second READY. Each must get the worker
 * killed (logged as compromised, with the type and reason) and replaced, while a client's
 * context survives: its owner reclaims the same kernel object on a new connection, still bound
 * and locked, guest requests work, and the monitor holds no more fds than before. Likewise a
 * worker that stops speaking, and a worker left behind by its killed proxy, which must end by
 * itself.
 *
 * The test process is a child subreaper: the real worker behind a killed proxy becomes its
 * child, so its end can be waited for and its status read.
 *
 * Runs in: tests. Needs root (the monitor drops to the tsmd user); SKIPs otherwise.
 */

#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "emu-device.h"
#include "guest-calls.h"
#include "tdisp.h"
#include "tsmd-fixture.h"

#ifndef TSMD_WORKER_PATH
#error "TSMD_WORKER_PATH must be defined (the real tsmd-worker)"
#endif
#ifndef WORKER_PROXY_PATH
#error "WORKER_PROXY_PATH must be defined (worker-proxy)"
#endif

#define G "io.tsmd.Guest."
#define DEV1 "0000:01:00.0"
#define DEV2 "0000:02:00.0"
#define VDEV 1

/* No IOMMU device: the monitor hands out memfds, each its own inode, so "the same kernel
 * object" can be told from "another open of the same device". */
/* The debug scopes served (as mainline kernels do not): the cases' large payloads are MEM_READs,
 * and the policy decides which of them are refused. */
#define CONFIG                                                                                     \
        "[Platform]\nMode=emulated\nIommuDevice=/nonexistent/tsmd-test/iommu\nEmulatedDevices=" DEV1 "\n" \
        "EmulatedDebugScopes=yes\n"                                                               \
        "[Guest]\nContextStateDirectory=%s/state\n"

/* The monitor's send timeout (monitor-dispatch.h, 5 s), the emulated device's time for the
 * requests before it, and room to spare: well inside systemd's WatchdogSec=30s. */
#define STALL_KILL_USEC (10 * USEC_PER_SEC)

/* The limits the cases below set, [Worker] WatchdogSec= and StartTimeoutSec= (15 s each by
 * default), so as not to wait those out: long enough that a worker under load (ASan, four tests
 * on two cores) is not taken for a wedged one before the test makes it one. */
#define WATCHDOG_SEC 4
#define START_TIMEOUT_SEC 5
/* Either limit and the monitor's once-a-second check, with room to spare; less than the default
 * limits, so that only the setting meets it. */
#define WEDGED_KILL_USEC (12 * USEC_PER_SEC)

typedef struct Setup {
        Tsmd t;
        char control[300];
        VarlinkClient *client;
        int context_fd;
        char token[64];
        dev_t dev;
        ino_t ino;
        pid_t proxy, worker;
        unsigned fds, monitor_fds;
        int64_t context;
        const char *scratch;
} Setup;

/* ---- processes ------------------------------------------------------------------------- */

/* The proxy's only child: the real worker. */
static pid_t child_of(pid_t pid) {
        char buf[64] = {};
        _cleanup_close_ int fd = open(strf("/proc/%d/task/%d/children", (int) pid, (int) pid), O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                TEST_FAIL("open /proc/%d/task/%d/children: %s", (int) pid, (int) pid, strerror(errno));
        if (read(fd, buf, sizeof(buf) - 1) < 0)
                TEST_FAIL("read /proc/%d/task/%d/children: %s", (int) pid, (int) pid, strerror(errno));
        return (pid_t) strtol(buf, NULL, 10);
}

/* Monitor, proxy and the real worker behind it. */
static unsigned count_fds(Tsmd *t) {
        pid_t proxy = tsmd_worker_pid(t), worker = proxy > 0 ? child_of(proxy) : 0;

        return tsmd_count_fds(t) + (worker > 0 ? tsmd_count_fds_of(worker) : 0);
}

/* Waits (bounded) until all of tsmd, and the monitor alone, hold what they held at the start. */
static void expect_fds(Setup *s) {
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;

        for (;;) {
                unsigned n = count_fds(&s->t), m = tsmd_count_fds_of(s->t.pid);

                if (n == s->fds && m == s->monitor_fds)
                        return;
                if (now_usec() > deadline)
                        TEST_FAIL("tsmd holds %u fds (the monitor %u), %u (%u) before the worker was replaced", n, m,
                                  s->fds, s->monitor_fds);
                sleep_usec(10 * USEC_PER_MSEC);
        }
}

/* Waits (bounded) for a child of ours to end; returns its wait status. */
static int wait_child(pid_t pid, uint64_t timeout_usec) {
        uint64_t deadline = now_usec() + timeout_usec;
        int status;

        for (;;) {
                pid_t p = waitpid(pid, &status, WNOHANG);

                if (p == pid)
                        return status;
                if (p < 0)
                        TEST_FAIL("waitpid %d: %s (not handed to us as subreaper?)", (int) pid, strerror(errno));
                if (now_usec() > deadline)
                        TEST_FAIL("process %d did not end within %llu ms", (int) pid,
                                  (unsigned long long) (timeout_usec / USEC_PER_MSEC));
                sleep_usec(5 * USEC_PER_MSEC);
        }
}

static bool wait_gone(pid_t pid, uint64_t timeout_usec) {
        uint64_t deadline = now_usec() + timeout_usec;

        while (kill(pid, 0) == 0 || errno != ESRCH) {
                if (now_usec() > deadline)
                        return false;
                sleep_usec(5 * USEC_PER_MSEC);
        }
        return true;
}

/* A stopped process outlives everything (end of file on its channel does not wake it): if the
 * test dies, this kills it. Write "D" and close fd to dismiss it. */
static int guard_stopped(pid_t victim) {
        int p[2];
        pid_t pid;

        ASSERT_OK(pipe2(p, O_CLOEXEC));
        fflush(NULL);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                char c = 0;

                (void) dup2(p[0], 3);
                (void) syscall(SYS_close_range, 4U, ~0U, 0U);
                while (read(3, &c, 1) < 0 && errno == EINTR)
                        ;
                if (c != 'D')
                        (void) kill(victim, SIGKILL);
                _exit(0);
        }
        close(p[0]);
        return p[1];
}

/* ---- the scene ---------------------------------------------------------------------------- */

static void write_file_bytes(const char *path, const void *data, size_t len) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        ASSERT_OK(fd);
        ASSERT_EQ(write(fd, data, len), (ssize_t) len);
}

/* tsmd with the proxy as its worker, and a client with a context holding DEV1, bound. */
/* Copies src to dst (created with mode). */
static void copy_file(const char *src, const char *dst, mode_t mode) {
        _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC), out = -EBADF;
        char b[65536];
        ssize_t n;

        ASSERT_OK(in);
        out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        ASSERT_OK(out);
        while ((n = read(in, b, sizeof(b))) > 0)
                ASSERT_EQ(write(out, b, (size_t) n), n);
        ASSERT_OK(n);
        ASSERT_OK(fchmod(out, mode));
}

/* guest_extra: more of tsmd.conf's [Guest] section (and sections after it); nofile: tsmd's
 * RLIMIT_NOFILE, NULL: ours. */
static void setup_full(Setup *s, const TsmdFile *files, size_t n_files, const char *guest_extra,
                       const struct rlimit *nofile) {
        static const char *const args[] = { "--worker=" WORKER_PROXY_PATH, NULL };
        const char *scratch;
        json_object *r;
        int64_t context;
        struct stat st;

        if (geteuid() != 0)
                SKIP("the monitor starts its worker as another user: needs root");
        if (!getpwnam("tsmd"))
                SKIP("no user 'tsmd' for the worker");
        *s = (Setup) { .context_fd = -EBADF };

        /* The real worker behind a killed proxy lands here, to be waited for. */
        ASSERT_OK(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0));

        /* The proxy and the worker run as tsmd: they read the control file and keep the
         * contexts' state here. */
        scratch = s->scratch = scratch_dir();
        ASSERT_OK(chmod(scratch, 0755));
        snprintf(s->control, sizeof(s->control), "%s/attack", scratch);
        write_file(s->control, "");
        /* The proxy runs as tsmd and starts the real worker by its path: a copy here, as the
         * build tree may lie below a directory tsmd cannot search (the monitor itself runs
         * its worker from an fd and does not care). */
        copy_file(TSMD_WORKER_PATH, strf("%s/tsmd-worker", scratch), 0755);
        ASSERT_OK(setenv("TSMD_PROXY_WORKER", strf("%s/tsmd-worker", scratch), 1));
        ASSERT_OK(setenv("TSMD_PROXY_CONTROL", s->control, 1));

        tsmd_start(&s->t, &(TsmdOptions) { .config = strf("%s%s", strf(CONFIG, scratch), strempty(guest_extra)),
                                           .args = args, .files = files, .n_files = n_files,
                                           .nofile = nofile });
        s->proxy = tsmd_worker_pid(&s->t);
        ASSERT_TRUE(s->proxy > 0);
        s->worker = child_of(s->proxy);
        ASSERT_TRUE(s->worker > 0);

        s->client = tsmd_connect_guest(&s->t);
        r = CALL_OK(s->client, G "OpenContext", NULL);
        snprintf(s->token, sizeof(s->token), "%s", JSTR(r, "reclaimToken"));
        s->context_fd = varlink_client_take_fd(s->client, (size_t) JINT(r, "fileDescriptor"));
        ASSERT_TRUE(s->context_fd >= 0);
        /* A stand-in, said so: a typo in IommuDevice= shows. */
        ASSERT_TRUE(tsmd_log_contains(&s->t, "IommuDevice=/nonexistent/tsmd-test/iommu does not exist: contexts get "
                                             "an inert stand-in"));
        ASSERT_OK(fstat(s->context_fd, &st));
        s->dev = st.st_dev;
        s->ino = st.st_ino;
        context = s->context = JINT(r, "context");
        CALL_OK(s->client, G "AttachDevice", guest_attach_params(context, VDEV, DEV1));
        r = CALL_OK(s->client, G "Bind", guest_vdev_params(context, VDEV));
        ASSERT_STREQ(JSTR(r, "state"), "config_locked");
        /* The worker says the Bind recorded, through the proxy (else its kept answer goes late
         * to the next worker, and a proxy killed before reading it resets the channel). */
        ASSERT_TRUE(tsmd_wait_log(&s->t, "relayed a RECORDED", 1, TSMD_WAIT_USEC));

        s->fds = count_fds(&s->t);
        s->monitor_fds = tsmd_count_fds_of(s->t.pid);
}

static void setup_with(Setup *s, const TsmdFile *files, size_t n_files) {
        setup_full(s, files, n_files, NULL, NULL);
}

static void setup(Setup *s) {
        setup_with(s, NULL, 0);
}

static void teardown(Setup *s) {
        varlink_client_free(s->client);
        safe_close(s->context_fd);
        tsmd_teardown(&s->t);
}

/*
 * The worker in the proxy's seat was let go of: the proxy is gone, the real worker behind it
 * ended by itself (end of file on its channel, not a signal), the old client was hung up on,
 * and a new worker serves.
 */
static void expect_replaced(Setup *s) {
        int status;
        pid_t p;

        if (!wait_gone(s->proxy, TSMD_WAIT_USEC))
                TEST_FAIL("the worker in the proxy's seat (pid %d) is still there", (int) s->proxy);
        status = wait_child(s->worker, TSMD_WAIT_USEC);
        if (!WIFEXITED(status))
                TEST_FAIL("the real worker %d did not exit by itself (wait status 0x%x)", (int) s->worker, status);
        ASSERT_TRUE(tsmd_wait_hangup(s->client, TSMD_WAIT_USEC));

        ASSERT_TRUE(tsmd_wait_log(&s->t, "serving again.", 1, TSMD_WAIT_USEC));
        p = tsmd_worker_pid(&s->t);
        ASSERT_TRUE(p > 0);
        ASSERT_NE(p, s->proxy);
        if (!tsmd_log_contains(&s->t, strf("Worker %d serving again.", (int) p)))
                TEST_FAIL("the monitor did not log worker %d serving again", (int) p);
        ASSERT_TRUE(child_of(p) > 0);
        ASSERT_TRUE(tsmd_is_running(&s->t));
}

/* The client's context came through: same kernel object, bound, locked, serving, and the
 * monitor and worker hold what they held before. */
static void expect_context_intact(Setup *s) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = tsmd_connect_guest(&s->t);
        _cleanup_free_ void *response = NULL;
        _cleanup_free_ char *request = NULL;
        _cleanup_close_ int fd = -EBADF;
        uint8_t msg[64];
        size_t len;
        int64_t ctx;
        json_object *r;
        struct stat st;

        r = CALL_OK(c, G "ReclaimContext", strf("{\"reclaimToken\":\"%s\"}", s->token));
        ctx = JINT(r, "context");
        fd = varlink_client_take_fd(c, (size_t) JINT(r, "fileDescriptor"));
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(fstat(fd, &st));
        ASSERT_EQ(st.st_dev, s->dev);
        ASSERT_EQ(st.st_ino, s->ino);

        r = CALL_OK(c, G "GetDeviceState", guest_vdev_params(ctx, VDEV));
        ASSERT_TRUE(JBOOL(r, "bound"));
        ASSERT_STREQ(JSTR(r, "state"), "config_locked");

        /* info: GET_VERSION -> VERSION, through the new worker and the monitor. */
        ASSERT_OK(tdisp_build_request(TDISP_MSG_GET_VERSION, guest_function_id(DEV1), NULL, 0, msg, sizeof(msg), &len));
        request = b64(msg, len);
        r = CALL_OK(c, G "GuestRequest",
                    strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%d,\"scope\":\"info\",\"request\":\"%s\","
                         "\"maxResponseSize\":4096}",
                         ctx, VDEV, request));
        ASSERT_EQ(JINT(r, "scopeNumber"), 0);
        response = unb64(JSTR(r, "response"), &len);
        ASSERT_GE(len, sizeof(TdispHeader));
        ASSERT_EQ(((uint8_t *) response)[1], TDISP_MSG_VERSION);

        /* One client with one context, as before: nothing left over in the monitor. */
        expect_fds(s);
}

/* The new worker's audit log says how the one before it ended: exactly once, as result. */
static void expect_worker_end_audited(Setup *s, const char *result) {
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;

        for (;; sleep_usec(5 * USEC_PER_MSEC)) {
                json_object *records = tsmd_audit_query(&s->t, NULL);
                size_t n = 0, n_result = 0;

                for (size_t i = 0; i < json_object_array_length(records); i++) {
                        json_object *rec = json_object_array_get_idx(records, i);

                        if (!streq(JSTR(rec, "event"), "worker-restart"))
                                continue;
                        n++;
                        n_result += streq(JSTR(rec, "result"), result);
                }
                json_object_put(records);
                if (n == 1 && n_result == 1)
                        return;
                if (n > 1 || now_usec() > deadline)
                        TEST_FAIL("%zu worker-restart records, %zu of them %s; expected one", n, n_result, result);
        }
}

/* The records of event after seq: one, Denied, naming no rule (the worker's, which let the call
 * through, is not the one that decided). */
static void expect_one_denied_naming_no_rule(Setup *s, int64_t after, const char *event) {
        json_object *records = tsmd_audit_query(&s->t, strf("{\"fromSeq\":%" PRIi64 ",\"event\":\"%s\"}", after + 1, event));
        json_object *rec;

        ASSERT_EQ(json_object_array_length(records), 1u);
        rec = json_object_array_get_idx(records, 0);
        ASSERT_STREQ(JSTR(rec, "result"), G "Denied");
        if (json_object_object_get_ex(rec, "rule", NULL))
                TEST_FAIL("the %s record names a rule: %s", event, json_object_to_json_string(rec));
        json_object_put(records);
}

/* ---- a worker that breaks the rules ------------------------------------------------------- */

static void run_attack(const char *attack, const char *type, const char *reason) {
        Setup s;

        setup(&s);
        write_file(s.control, attack);
        ASSERT_OK(kill(s.proxy, SIGUSR1));

        if (!tsmd_wait_log(&s.t, strf("Compromised worker (pid %d): %s: %s. Killing it.", (int) s.proxy, type, reason),
                           1, TSMD_WAIT_USEC))
                TEST_FAIL("no \"Compromised worker (pid %d): %s: %s.\" for '%s'", (int) s.proxy, type, reason, attack);
        expect_replaced(&s);
        expect_worker_end_audited(&s, "io.tsmd.WorkerCompromised");
        expect_context_intact(&s);
        /* The new worker was not taken for a compromised one too. */
        ASSERT_EQ(tsmd_log_count(&s.t, "Compromised worker"), 1);
        teardown(&s);
}

/* attack (the proxy's name for it), then what the monitor logs: the type and the reason. */
#define ATTACK(id, attack, type, reason) TEST(attack_##id) { run_attack(attack, type, reason); }

ATTACK(short, "short", "unknown", "shorter than a header")
ATTACK(long, "long", "BIND_VDEVICE", "non-zero bytes past the known fixed part")
ATTACK(reserved, "reserved", "BIND_VDEVICE", "flags or reserved header field not zero")
ATTACK(flags, "flags", "BIND_VDEVICE", "flags or reserved header field not zero")
ATTACK(unknown_type, "unknown", "unknown", "unknown message type")
ATTACK(direction, "direction", "REPLY", "message type not sent in this direction")
ATTACK(foreign_slot, "foreign-slot", "BIND_VDEVICE", "context held by another slot")
ATTACK(no_context, "no-context", "BIND_VDEVICE", "unknown context")
ATTACK(bad_scope, "bad-scope", "GUEST_REQUEST", "no such scope for the device's backend")
ATTACK(oversize_payload, "oversize-payload", "GUEST_REQUEST", "request larger than the scope allows")
ATTACK(stray_fd, "stray-fd", "STATUS", "unexpected file descriptors")
ATTACK(ready_twice, "ready-twice", "READY", "permitted once per worker, sent again")
/* A datagram of no bytes, which reads like end of file: the proxy stays, the real worker behind
 * it serving the sockets. Before, the monitor took it for the worker's end and stopped reading,
 * and killed it only when it fell silent for 15 s (and never before READY). */
ATTACK(empty, "empty", "unknown", "empty datagram")

/* A worker that shuts its end of the channel and stays is not heard again, and is not left to
 * serve the sockets either: killed at once (not after 15 s of silence), as it ends nothing
 * the monitor could tell from an exit, not as compromised. */
TEST(worker_hangs_up_and_stays) {
        uint64_t start;
        Setup s;

        setup(&s);
        write_file(s.control, "hangup");
        start = now_usec();
        ASSERT_OK(kill(s.proxy, SIGUSR1));
        if (!tsmd_wait_log(&s.t, strf("Worker %d was killed by signal KILL.", (int) s.proxy), 1, TSMD_WAIT_USEC))
                TEST_FAIL("a worker that shut its channel was not killed within %llu s",
                          (unsigned long long) (TSMD_WAIT_USEC / USEC_PER_SEC));
        fprintf(stderr, "# worker that hung up killed after %.1f s\n", (double) (now_usec() - start) / USEC_PER_SEC);
        ASSERT_TRUE(tsmd_log_contains(&s.t, "injecting 'hangup'"));
        expect_replaced(&s);
        expect_worker_end_audited(&s, "io.tsmd.WorkerCrashed");
        expect_context_intact(&s);
        ASSERT_FALSE(tsmd_log_contains(&s.t, "Compromised worker"));
        teardown(&s);
}

/* ---- a worker that asks for what no policy grants ------------------------------------------ */

/* The monitor's own scope gate: the fixture's policy grants no debug scope, so a debug request
 * (which the worker, checking the policy first, never sends) is refused by the monitor, without
 * reaching the device. Refused, not killed: a reload reaches worker and monitor one after the
 * other. */
static void run_debug_scope(const char *scope) {
        Setup s;

        setup(&s);
        write_file(s.control, scope);
        ASSERT_OK(kill(s.proxy, SIGUSR1));
        if (!tsmd_wait_log(&s.t, strf("Refusing a guest request in scope %s to " DEV1 ": no policy rule grants it", scope), 1,
                           TSMD_WAIT_USEC))
                TEST_FAIL("the monitor did not refuse a %s request no policy grants", scope);
        ASSERT_FALSE(tsmd_log_contains(&s.t, "Compromised worker"));
        ASSERT_EQ(tsmd_worker_pid(&s.t), s.proxy);
        /* The worker in place serves on, the context as it was. */
        ASSERT_STREQ(JSTR(CALL_OK(s.client, G "GetDeviceState", guest_vdev_params(s.context, VDEV)), "state"),
                     "config_locked");
        teardown(&s);
}

TEST(debug_read_not_granted) { run_debug_scope("debug-read"); }

/* A reload that grants the scope reaches the monitor's gate too. */
TEST(debug_read_granted_by_reload) {
        Setup s;

        setup(&s);
        write_file(strf("%s/policy.conf", s.t.dir),
                   "[Client:tests]\nUsers=root 65534\nDevices=" DEV1 "\nScopes=info state-change debug-read\n");
        ASSERT_TRUE(tsmd_reload(&s.t, strf(CONFIG, s.scratch)));
        if (!tsmd_wait_log(&s.t, "Scope checks follow the policy in", 2, TSMD_WAIT_USEC))
                TEST_FAIL("the monitor did not reload its policy");
        write_file(s.control, "debug-read");
        ASSERT_OK(kill(s.proxy, SIGUSR1));
        /* Answered by the device (the worker drops the reply to a cookie it never used). */
        if (!tsmd_wait_log(&s.t, "injecting 'debug-read'", 1, TSMD_WAIT_USEC))
                TEST_FAIL("the proxy did not inject");
        sleep_usec(200 * USEC_PER_MSEC);
        ASSERT_FALSE(tsmd_log_contains(&s.t, "Refusing a guest request"));
        ASSERT_FALSE(tsmd_log_contains(&s.t, "Compromised worker"));
        ASSERT_EQ(tsmd_worker_pid(&s.t), s.proxy);
        teardown(&s);
}
TEST(debug_write_not_granted) { run_debug_scope("debug-write"); }

/* The monitor's own scope gate, as the VMM hears of it: a scope the monitor finds no rule grants
 * (here the proxy names debug-read in place of the info the worker checked, as a reload that
 * reached the monitor first would leave it) is refused Denied naming what was refused, not in
 * the words of a backend's refusal of the message, and recorded Denied. */
TEST(request_in_a_scope_no_rule_grants_is_denied_as_such) {
        json_object *e;
        int64_t seq;
        Setup s;

        setup(&s);
        write_file(s.control, "request-debug-read");
        ASSERT_OK(chown(s.control, getpwnam("tsmd")->pw_uid, getpwnam("tsmd")->pw_gid)); /* the proxy empties it */
        seq = tsmd_audit_last_seq(&s.t);
        e = CALL_ERROR(s.client, G "GuestRequest",
                       strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%d,\"scope\":\"info\",\"request\":\"AAAA\","
                            "\"maxResponseSize\":4096}",
                            s.context, VDEV),
                       G "Denied", NULL);
        ASSERT_STREQ(JSTR(e, "reason"), "no policy rule grants the scope for the device");
        ASSERT_TRUE(tsmd_log_contains(&s.t, "Refusing a guest request in scope debug-read to " DEV1));
        tsmd_expect_audit(&s.t, seq, "guest-request", G "Denied", 1);
        expect_one_denied_naming_no_rule(&s, seq, "guest-request");
        ASSERT_FALSE(tsmd_log_contains(&s.t, "Compromised worker"));
        ASSERT_EQ(tsmd_worker_pid(&s.t), s.proxy);
        teardown(&s);
}

/* The monitor's own gate on binding: once a reload took the device out of every rule, a bind of
 * it (which the worker, checking the policy first, never sends) is refused by the monitor, not
 * sent to the device. Refused, not killed. */
TEST(bind_of_a_device_no_rule_lists) {
        Setup s;

        setup(&s);
        write_file(strf("%s/policy.conf", s.t.dir), "[Client:tests]\nUsers=root 65534\nDevices=" DEV2 "\n");
        ASSERT_TRUE(tsmd_reload(&s.t, strf(CONFIG, s.scratch)));
        if (!tsmd_wait_log(&s.t, "Scope checks follow the policy in", 2, TSMD_WAIT_USEC))
                TEST_FAIL("the monitor did not reload its policy");
        write_file(s.control, "bind");
        ASSERT_OK(kill(s.proxy, SIGUSR1));
        if (!tsmd_wait_log(&s.t, "Refusing to bind " DEV1 ": no policy rule lists the device for its backend emulated", 1,
                           TSMD_WAIT_USEC))
                TEST_FAIL("the monitor did not refuse a bind of a device no policy rule lists");
        ASSERT_FALSE(tsmd_log_contains(&s.t, "Compromised worker"));
        ASSERT_EQ(tsmd_worker_pid(&s.t), s.proxy);
        teardown(&s);
}

/* The monitor's own gate on attaching, as the VMM hears of it: a device the monitor finds in no
 * rule (here the proxy names another device than the one the worker checked, as a reload that
 * reached the monitor first would leave it) is refused Denied naming what was refused, the
 * device, not in the words of a backend's refusal of a message in a scope. */
TEST(attach_of_a_device_no_rule_lists_is_denied_as_such) {
        json_object *e;
        Setup s;

        setup(&s);
        write_file(strf("%s/policy.conf", s.t.dir),
                   "[Client:tests]\nUsers=root 65534\nDevices=" DEV1 " " DEV2 "\n");
        ASSERT_TRUE(tsmd_reload(&s.t, strf("[Platform]\nMode=emulated\nIommuDevice=/nonexistent/tsmd-test/iommu\n"
                                           "EmulatedDevices=" DEV1 "," DEV2 ",0000:03:00.0\n"
                                           "[Guest]\nContextStateDirectory=%s/state\n",
                                           s.scratch)));
        write_file(s.control, "attach-unlisted");
        ASSERT_OK(chown(s.control, getpwnam("tsmd")->pw_uid, getpwnam("tsmd")->pw_gid)); /* the proxy empties it */
        e = CALL_ERROR(s.client, G "AttachDevice", guest_attach_params(s.context, 2, DEV2), G "Denied", NULL);
        ASSERT_STREQ(JSTR(e, "reason"), "no policy rule lists the device for its backend");
        ASSERT_TRUE(tsmd_log_contains(&s.t, "Refusing to attach 0000:03:00.0: no policy rule lists the device"));
        ASSERT_FALSE(tsmd_log_contains(&s.t, "Compromised worker"));
        ASSERT_EQ(tsmd_worker_pid(&s.t), s.proxy);
        teardown(&s);
}

/* The monitor's own gate on binding, as the VMM hears of it: a device the monitor finds in no
 * rule (here the proxy names vDevice 2, whose device a reload took out of every rule, in place
 * of vDevice 1, which the worker checked) is refused Denied naming the device, not in the words
 * of a backend's refusal, and recorded Denied; a kernel TSM's own -EPERM stays the backend's
 * (test-kernel). */
TEST(bind_of_a_device_no_rule_lists_is_denied_as_such) {
        static const char config[] = "[Platform]\nMode=emulated\nIommuDevice=/nonexistent/tsmd-test/iommu\n"
                                     "EmulatedDevices=" DEV1 "," DEV2 "\n[Guest]\nContextStateDirectory=%s/state\n";
        json_object *e;
        int64_t seq;
        Setup s;

        setup(&s);
        write_file(strf("%s/policy.conf", s.t.dir), "[Client:tests]\nUsers=root 65534\nDevices=" DEV1 " " DEV2 "\n");
        ASSERT_TRUE(tsmd_reload(&s.t, strf(config, s.scratch)));
        CALL_OK(s.client, G "AttachDevice", guest_attach_params(s.context, 2, DEV2));
        write_file(strf("%s/policy.conf", s.t.dir), "[Client:tests]\nUsers=root 65534\nDevices=" DEV1 "\n");
        ASSERT_TRUE(tsmd_reload(&s.t, strf(config, s.scratch)));
        write_file(s.control, "bind-vdevice-2");
        ASSERT_OK(chown(s.control, getpwnam("tsmd")->pw_uid, getpwnam("tsmd")->pw_gid)); /* the proxy empties it */
        seq = tsmd_audit_last_seq(&s.t);
        e = CALL_ERROR(s.client, G "Bind", guest_vdev_params(s.context, VDEV), G "Denied", NULL);
        ASSERT_STREQ(JSTR(e, "reason"), "no policy rule lists the device for its backend");
        ASSERT_TRUE(tsmd_log_contains(&s.t, "binding vDevice 2 in place of 1"));
        ASSERT_TRUE(tsmd_log_contains(&s.t, "Refusing to bind " DEV2 ": no policy rule lists the device"));
        tsmd_expect_audit(&s.t, seq, "bind", G "Denied", 1);
        expect_one_denied_naming_no_rule(&s, seq, "bind");
        ASSERT_FALSE(tsmd_log_contains(&s.t, "Compromised worker"));
        ASSERT_EQ(tsmd_worker_pid(&s.t), s.proxy);
        teardown(&s);
}

/* The monitor out of memory as it takes a Bind (here the proxy answers in its place, as it
 * would, TSM_PRIV_REPLY_MONITOR_OWN) is tsmd's own failure, answered and recorded as the
 * worker's own is (io.tsmd.System ENOMEM), not the backend's BackendError OutOfMemory; a kernel
 * TSM's out of memory stays the backend's (test-kernel). */
TEST(the_monitors_own_out_of_memory_is_no_backend_error) {
        int64_t seq;
        Setup s;

        setup(&s);
        CALL_OK(s.client, G "Unbind", guest_vdev_params(s.context, VDEV));
        write_file(s.control, "bind-own-enomem");
        ASSERT_OK(chown(s.control, getpwnam("tsmd")->pw_uid, getpwnam("tsmd")->pw_gid)); /* the proxy empties it */
        seq = tsmd_audit_last_seq(&s.t);
        CALL_ERROR(s.client, G "Bind", guest_vdev_params(s.context, VDEV), "io.tsmd.System",
                   "{\"errno\":12,\"errnoName\":\"ENOMEM\"}");
        ASSERT_TRUE(tsmd_log_contains(&s.t, "answering the bind of vDevice 1 as a monitor out of memory"));
        tsmd_expect_audit(&s.t, seq, "bind", "io.tsmd.System", 1);
        /* It reached no device: the next Bind does. */
        ASSERT_STREQ(JSTR(CALL_OK(s.client, G "Bind", guest_vdev_params(s.context, VDEV)), "state"), "config_locked");
        ASSERT_FALSE(tsmd_log_contains(&s.t, "Compromised worker"));
        ASSERT_EQ(tsmd_worker_pid(&s.t), s.proxy);
        teardown(&s);
}

/* A ConnectDevice the proxy answers in the monitor's place as WORD tells it: answered ERROR
 * (PARAMETERS), which tsmd's log explains with LOG_LINE, and on record so; the next one reaches
 * the monitor, which has no such device to connect. (Not an emulated device: the worker answers
 * EmulatedDevice for those without asking the monitor.) */
static void connect_answered_for_the_monitor(const char *word, const char *error, const char *parameters,
                                             const char *log_line) {
        const char *params = "{\"pciAddress\":\"0000:09:00.0\",\"tsm\":\"tsm0\"}";
        _cleanup_(varlink_client_freep) VarlinkClient *admin = NULL;
        int64_t seq;
        Setup s;

        setup(&s);
        admin = tsmd_connect(&s.t);
        write_file(s.control, word);
        ASSERT_OK(chown(s.control, getpwnam("tsmd")->pw_uid, getpwnam("tsmd")->pw_gid)); /* the proxy empties it */
        seq = tsmd_audit_last_seq(&s.t);
        CALL_ERROR(admin, "io.tsmd.Admin.ConnectDevice", params, error, parameters);
        ASSERT_TRUE(tsmd_log_contains(&s.t, log_line));
        tsmd_expect_audit(&s.t, seq, "io.tsmd.Admin.ConnectDevice", error, 1);
        CALL_ERROR(admin, "io.tsmd.Admin.ConnectDevice", params, "io.tsmd.Admin.NoSuchDevice", NULL);
        ASSERT_FALSE(tsmd_log_contains(&s.t, "Compromised worker"));
        ASSERT_EQ(tsmd_worker_pid(&s.t), s.proxy);
        varlink_client_free(TAKE_PTR(admin));
        teardown(&s);
}

/* So is the monitor's out of memory as it takes a ConnectDevice: io.tsmd.System ENOMEM, not
 * ConnectFailed, which says the kernel refused. */
TEST(the_monitors_own_out_of_memory_is_no_failed_connect) {
        connect_answered_for_the_monitor("connect-own-enomem", "io.tsmd.System", "{\"errno\":12,\"errnoName\":\"ENOMEM\"}",
                                         "answering the connect as a monitor out of memory");
}

/* The monitor's gate refusing a connect the worker let through (a reload reached the monitor
 * first; the proxy answers as the gate does: its own -EPERM) is DeviceNotListed, as the worker's
 * own refusal is, not ConnectFailed; on record so. (No backend: the worker knows no such
 * device.) */
TEST(the_monitors_gate_on_a_connect_is_device_not_listed) {
        connect_answered_for_the_monitor("connect-own-eperm", "io.tsmd.Admin.DeviceNotListed",
                                         "{\"pciAddress\":\"0000:09:00.0\"}", "answering the connect as the monitor's gate");
}

/* A worker restarted after the policy file changed (no reload) reads the new one; so does the
 * monitor's scope gate, or it would refuse what the worker now grants. */
TEST(debug_read_granted_to_a_restarted_worker) {
        _cleanup_free_ char *request = NULL;
        VarlinkClient *c;
        uint8_t msg[64];
        json_object *r;
        size_t len;
        int64_t ctx;
        Setup s;

        setup(&s);
        write_file(strf("%s/policy.conf", s.t.dir),
                   "[Client:tests]\nUsers=root 65534\nDevices=" DEV1 "\nScopes=info state-change debug-read\n");
        ASSERT_OK(kill(s.proxy, SIGKILL));
        expect_replaced(&s);

        c = tsmd_connect_guest(&s.t);
        r = CALL_OK(c, G "ReclaimContext", strf("{\"reclaimToken\":\"%s\"}", s.token));
        ctx = JINT(r, "context");
        safe_close(varlink_client_take_fd(c, (size_t) JINT(r, "fileDescriptor")));
        ASSERT_OK(emu_debug_build_mem_request(guest_function_id(DEV1), EMU_VENDOR_ID_DEFAULT, EMU_DEBUG_OP_MEM_READ, 0,
                                              16, NULL, msg, sizeof(msg), &len));
        request = b64(msg, len);
        CALL_OK(c, G "GuestRequest",
                strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%d,\"scope\":\"debug-read\",\"request\":\"%s\","
                     "\"maxResponseSize\":4096}",
                     ctx, VDEV, request));
        ASSERT_FALSE(tsmd_log_contains(&s.t, "Refusing a guest request"));
        varlink_client_free(c);
        teardown(&s);
}


/* The files edited without a reload, then the worker restarts and reads them: the monitor reads
 * them too, so both serve the same emulated devices (before, the worker listed one the monitor
 * did not have, and attaching it failed). */
TEST(emulated_devices_follow_a_restarted_worker) {
        VarlinkClient *c;
        json_object *r;
        Setup s;

        setup(&s);
        tsmd_write_config(&s.t, strf("[Platform]\nMode=emulated\nIommuDevice=/nonexistent/tsmd-test/iommu\n"
                                     "EmulatedDevices=" DEV1 "," DEV2 "\n"));
        ASSERT_OK(kill(s.proxy, SIGKILL));
        expect_replaced(&s);

        c = tsmd_connect_guest(&s.t);
        r = CALL_OK(c, G "OpenContext", NULL);
        safe_close(varlink_client_take_fd(c, (size_t) JINT(r, "fileDescriptor")));
        CALL_OK(c, G "AttachDevice", guest_attach_params(JINT(r, "context"), VDEV, DEV2));
        varlink_client_free(c);
        teardown(&s);
}

/* ---- a worker that takes every fd it can ---------------------------------------------------- */

/* The monitor's RLIMIT_NOFILE here: low enough for a flood to reach it in moments. */
#define FLOOD_NOFILE 512
#define FLOOD_RECLAIM_TIMEOUT_SEC 3

/* The number after prefix in the monitor's log; fails the test if there is none. */
static unsigned log_number_after(Tsmd *t, const char *prefix) {
        _cleanup_free_ char *log = tsmd_read_log(t);
        const char *p = strstr(log, prefix);

        if (!p)
                TEST_FAIL("no \"%s\" in the log", prefix);
        return (unsigned) strtoul(p + strlen(prefix), NULL, 10);
}

/*
 * SECURITY: a compromised worker opens contexts under fresh tokens until the monitor refuses
 * (each is an fd the monitor keeps), then dies. The monitor stopped at its maximum, below its
 * RLIMIT_NOFILE by the fds it keeps for itself: a new worker starts, serves, and releases the
 * contexts nobody reclaims, as after any restart. (Before, the monitor opened contexts until it
 * ran out of fds, and then could not start a worker, nor would anything free one, for good.)
 */
TEST(context_flood_leaves_room_for_a_worker) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        /* The hard limit too: tsmd raises its soft limit to that. */
        const struct rlimit low = { .rlim_cur = FLOOD_NOFILE, .rlim_max = FLOOD_NOFILE };
        unsigned max, opened;
        Setup s;

        setup_full(&s, NULL, 0, strf("ReclaimTimeoutSec=%d\n", FLOOD_RECLAIM_TIMEOUT_SEC), &low);

        write_file(s.control, "flood-contexts");
        ASSERT_OK(kill(s.proxy, SIGUSR1));
        if (!tsmd_wait_log(&s.t, "flood: ", 1, 4 * TSMD_WAIT_USEC))
                TEST_FAIL("the flood did not end");
        /* Refused, not killed: an honest worker may ask for one too many. */
        ASSERT_FALSE(tsmd_log_contains(&s.t, "Compromised worker"));
        ASSERT_EQ(tsmd_worker_pid(&s.t), s.proxy);

        ASSERT_OK(kill(s.proxy, SIGKILL));
        expect_replaced(&s);

        /* It stopped at its maximum, said at the start, with the setup's context counted. */
        opened = log_number_after(&s.t, "flood: ");
        max = log_number_after(&s.t, strf("RLIMIT_NOFILE of %d leaves room for ", FLOOD_NOFILE));
        ASSERT_TRUE(tsmd_log_contains(&s.t, "fewer than MaxContexts=4096"));
        ASSERT_EQ(tsmd_log_count(&s.t, "RLIMIT_NOFILE of"), 1U); /* at the start, not per worker */
        ASSERT_TRUE(max > 0 && max < FLOOD_NOFILE);
        fprintf(stderr, "# the worker opened %u contexts, the monitor's maximum is %u\n", opened, max);
        ASSERT_EQ(opened + 1, max);
        ASSERT_TRUE(tsmd_log_contains(&s.t, "contexts opened, then refused: Too many open files"));
        ASSERT_TRUE(tsmd_log_contains(&s.t, strf("Refusing a new context: the monitor holds its maximum of %u.", max)));

        /* The new worker serves, and once the orphans are released there is room again. */
        c = tsmd_connect_guest(&s.t);
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        /* Until then the orphans hold the room, and the worker knows the monitor's maximum. */
        CALL_ERROR(c, G "OpenContext", NULL, G "LimitReached", strf("{\"limit\":\"contexts-total\",\"max\":%u}", max));
        if (!tsmd_wait_log(&s.t, "was not reclaimed in time, releasing it.", max,
                           (FLOOD_RECLAIM_TIMEOUT_SEC + 5) * USEC_PER_SEC))
                TEST_FAIL("the new worker did not release the %u orphans", max);
        safe_close(varlink_client_take_fd(c, (size_t) JINT(CALL_OK(c, G "OpenContext", NULL), "fileDescriptor")));
        /* One context again, as at the start: the monitor holds what it held then. */
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC; tsmd_count_fds_of(s.t.pid) != s.monitor_fds;
             sleep_usec(10 * USEC_PER_MSEC))
                if (now_usec() > deadline)
                        TEST_FAIL("the monitor holds %u fds, %u before the flood", tsmd_count_fds_of(s.t.pid),
                                  s.monitor_fds);
        teardown(&s);
}

/* ---- a worker that goes quiet, one whose proxy dies ---------------------------------------- */

TEST(wedged_worker) {
        uint64_t start;
        Setup s;
        int guard;

        setup_full(&s, NULL, 0, "[Worker]\nWatchdogSec=" STRINGIFY(WATCHDOG_SEC) "\n", NULL);
        guard = guard_stopped(s.worker);
        ASSERT_OK(kill(s.worker, SIGSTOP));
        start = now_usec();

        /* Its heartbeats stop; the monitor kills what sits in its seat and starts another. */
        if (!tsmd_wait_log(&s.t, strf("Worker %d has not spoken for " STRINGIFY(WATCHDOG_SEC) " s, killing it.",
                                      (int) s.proxy),
                           1, WEDGED_KILL_USEC))
                TEST_FAIL("a silent worker was not killed within %llu s",
                          (unsigned long long) (WEDGED_KILL_USEC / USEC_PER_SEC));
        fprintf(stderr, "# silent worker killed after %.1f s\n", (double) (now_usec() - start) / USEC_PER_SEC);
        /* Not at once: its last beat came at most a third of the limit before the stop, later
         * under load. */
        ASSERT_GE(now_usec() - start, USEC_PER_SEC);

        /* The monitor's SIGKILL hit the proxy only. Woken, the real worker finds its channel
         * closed and ends; until then it holds the audit log, and its successor cannot start. */
        ASSERT_OK(kill(s.worker, SIGCONT));
        expect_replaced(&s);
        ASSERT_EQ(write(guard, "D", 1), 1);
        close(guard);
        expect_worker_end_audited(&s, "io.tsmd.WorkerUnresponsive");

        expect_context_intact(&s);
        ASSERT_FALSE(tsmd_log_contains(&s.t, "Compromised worker"));
        teardown(&s);
}

/* The worker beats three times per WatchdogSec= (and at least every 5 s): at 3 s an idle one
 * is not taken for a silent one, which a beat at a fixed interval longer than that would be (a
 * beat a second: a loaded machine may hold the worker back a while). */
TEST(idle_worker_beats_within_a_short_watchdog) {
        Setup s;

        setup_full(&s, NULL, 0, "[Worker]\nWatchdogSec=3\n", NULL);
        sleep_usec(7 * USEC_PER_SEC);
        ASSERT_EQ(tsmd_worker_pid(&s.t), s.proxy);
        ASSERT_FALSE(tsmd_log_contains(&s.t, "has not spoken"));
        ASSERT_TRUE(tsmd_is_running(&s.t));
        teardown(&s);
}

/* A worker SIGTERMed alone (tsmd(8)) waits for its last unbind with its loop stopped, beating no
 * more: from its STATUS that says it drains, the monitor gives it StopTimeoutSec= (15 s by
 * default) to exit, not WatchdogSec= (3 s here) of silence. The unbind takes longer than that. */
TEST(worker_stopping_alone_is_not_taken_for_a_silent_one) {
        uint64_t start;
        Setup s;

        setup_full(&s, NULL, 0, "[Worker]\nWatchdogSec=3\n[Platform]\nEmulatedLatencyUSec=4500000\n", NULL);
        start = now_usec();
        ASSERT_OK(kill(s.worker, SIGTERM));
        /* Its proxy ends with it (and reaps it). */
        if (!tsmd_wait_log(&s.t, strf("Worker %d exited with status 0.", (int) s.proxy), 1, TSMD_WAIT_USEC))
                TEST_FAIL("the worker stopping alone did not exit by itself");
        fprintf(stderr, "# worker stopping alone exited after %.1f s\n", (double) (now_usec() - start) / USEC_PER_SEC);
        /* It did wait for the unbind, past the watchdog's limit. */
        ASSERT_GE(now_usec() - start, 4 * USEC_PER_SEC);
        ASSERT_TRUE(tsmd_log_contains(&s.t, "Unbound " DEV1));
        ASSERT_FALSE(tsmd_log_contains(&s.t, "has not spoken"));
        ASSERT_FALSE(tsmd_log_contains(&s.t, "killing it"));
        ASSERT_TRUE(tsmd_wait_log(&s.t, "serving again.", 1, TSMD_WAIT_USEC));
        teardown(&s);
}

/* A restarted worker that never says READY (its proxy holds it back, as a worker hanging in its
 * start would look to the monitor) is killed once the start limit (StartTimeoutSec= from its
 * start) is past, and replaced as an unresponsive one is: it must not keep the sockets forever. */
TEST(worker_never_ready) {
        struct passwd *pw = getpwnam("tsmd");
        uint64_t start, deadline;
        unsigned n_unresponsive = 0;
        json_object *records;
        pid_t first;
        Setup s;

        setup_full(&s, NULL, 0, "[Worker]\nStartTimeoutSec=" STRINGIFY(START_TIMEOUT_SEC) "\n", NULL);
        ASSERT_NOT_NULL(pw);
        write_file(s.control, "hold-ready");
        ASSERT_OK(chown(s.control, pw->pw_uid, pw->pw_gid));
        first = s.proxy;
        ASSERT_OK(kill(first, SIGKILL));

        /* The next one starts, and its proxy holds READY back. */
        deadline = now_usec() + TSMD_WAIT_USEC;
        while ((s.proxy = tsmd_worker_pid(&s.t)) <= 0 || s.proxy == first) {
                if (now_usec() > deadline)
                        TEST_FAIL("no worker after the first");
                sleep_usec(5 * USEC_PER_MSEC);
        }
        start = now_usec();
        ASSERT_TRUE(tsmd_wait_log(&s.t, "holding the worker's READY back", 1, TSMD_WAIT_USEC));
        while ((s.worker = child_of(s.proxy)) <= 0) {
                if (now_usec() > start + TSMD_WAIT_USEC)
                        TEST_FAIL("the proxy %d started no worker", (int) s.proxy);
                sleep_usec(5 * USEC_PER_MSEC);
        }
        if (!tsmd_wait_log(&s.t,
                           strf("Worker %d did not get ready in " STRINGIFY(START_TIMEOUT_SEC) " s, killing it.",
                                (int) s.proxy),
                           1, WEDGED_KILL_USEC))
                TEST_FAIL("a worker that never got ready was not killed within %llu s",
                          (unsigned long long) (WEDGED_KILL_USEC / USEC_PER_SEC));
        fprintf(stderr, "# never-ready worker killed after %.1f s\n", (double) (now_usec() - start) / USEC_PER_SEC);
        /* start came after the worker's own start, and after polling for its pid (up to the
         * monitor's start of it and the fork, longer under load): the limit, less up to 2 s for
         * those. */
        ASSERT_GE(now_usec() - start, (START_TIMEOUT_SEC - 2) * USEC_PER_SEC);
        expect_replaced(&s);

        /* On record as unresponsive, by the worker after it. */
        for (deadline = now_usec() + TSMD_WAIT_USEC; n_unresponsive == 0; sleep_usec(5 * USEC_PER_MSEC)) {
                records = tsmd_audit_query(&s.t, NULL);
                for (size_t i = 0; i < json_object_array_length(records); i++) {
                        json_object *rec = json_object_array_get_idx(records, i);

                        n_unresponsive += streq(JSTR(rec, "event"), "worker-restart") &&
                                          streq(JSTR(rec, "result"), "io.tsmd.WorkerUnresponsive");
                }
                json_object_put(records);
                if (now_usec() > deadline)
                        TEST_FAIL("no worker-restart record says io.tsmd.WorkerUnresponsive");
        }
        ASSERT_EQ(n_unresponsive, 1U);
        expect_context_intact(&s);
        teardown(&s);
}

/* A worker that sends large requests and then reads no replies: the monitor's first send that
 * times out gets it killed (unresponsive), at once, not a send timeout per reply while the
 * monitor's loop (and its watchdog ping) stands still; the replies after it are not tried. */
TEST(worker_not_reading_replies) {
        static const TsmdFile debug_policy[] = { {
                "policy.conf", "[Client:tests]\nUsers=root 65534\nDevices=*\nScopes=info state-change debug-read\n",
        } };
        _cleanup_free_ uint8_t *req = malloc(EMU_DEBUG_MSG_MAX);
        uint64_t start, took;
        size_t len;
        Setup s;

        ASSERT_NOT_NULL(req);
        setup_with(&s, debug_policy, ELEMENTSOF(debug_policy));
        ASSERT_OK(emu_debug_build_mem_request(guest_function_id(DEV1), EMU_VENDOR_ID_DEFAULT, EMU_DEBUG_OP_MEM_READ, 0,
                                              EMU_DEBUG_MEM_XFER_MAX, NULL, req, EMU_DEBUG_MSG_MAX, &len));
        write_file_bytes(strf("%s.payload", s.control), req, len);
        write_file(s.control, "stall");
        start = now_usec();
        ASSERT_OK(kill(s.proxy, SIGUSR1));

        if (!tsmd_wait_log(&s.t, strf("Worker %d does not take its replies", (int) s.proxy), 1, STALL_KILL_USEC))
                TEST_FAIL("a worker that reads no replies was not killed within %llu s",
                          (unsigned long long) (STALL_KILL_USEC / USEC_PER_SEC));
        took = now_usec() - start;
        fprintf(stderr, "# worker not reading killed after %.1f s\n", (double) took / USEC_PER_SEC);
        expect_replaced(&s);
        expect_worker_end_audited(&s, "io.tsmd.WorkerUnresponsive");
        expect_context_intact(&s);
        /* Once: the replies after the first that timed out were not tried. */
        ASSERT_EQ(tsmd_log_count(&s.t, "does not take its replies"), 1);
        ASSERT_FALSE(tsmd_log_contains(&s.t, "Compromised worker"));
        teardown(&s);
}

/* A worker its seccomp filter killed (SIGSYS: it tried to start a process, which no code of
 * the worker does; worker-sandbox.c) is on record as compromised, not as crashed. The proxy in
 * the worker's seat stands in for it. */
TEST(worker_killed_by_its_sandbox) {
        Setup s;

        setup(&s);
        ASSERT_OK(kill(s.proxy, SIGSYS));
        if (!tsmd_wait_log(&s.t, strf("Compromised worker %d tried a forbidden system call.", (int) s.proxy), 1,
                           5 * USEC_PER_SEC))
                TEST_FAIL("the monitor did not take a SIGSYS as a compromised worker");
        expect_replaced(&s);
        expect_worker_end_audited(&s, "io.tsmd.WorkerCompromised");
        expect_context_intact(&s);
        teardown(&s);
}

TEST(worker_ends_with_its_proxy) {
        Setup s;

        setup(&s);
        /* Not the monitor's doing: nothing but the end of file tells the real worker. */
        ASSERT_OK(kill(s.proxy, SIGKILL));
        expect_replaced(&s);
        expect_worker_end_audited(&s, "io.tsmd.WorkerCrashed");
        ASSERT_TRUE(tsmd_log_contains(&s.t, "Lost the monitor: it hung up."));
        ASSERT_FALSE(tsmd_log_contains(&s.t, "Compromised worker"));
        expect_context_intact(&s);
        teardown(&s);
}

TEST_MAIN();
