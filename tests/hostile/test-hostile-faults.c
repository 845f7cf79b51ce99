/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Backend and audit faults against the real tsmd on its emulated platform. A VMM uses a
 * device that misbehaves (an emulated device with "fault=" in EmulatedDevices=, see
 * daemon/emu/emu-config.h), or the audit log's file system misbehaves, while a well-behaved
 * VMM keeps working on another device (a context with DEV2 attached, TDISP GET_VERSION in
 * scope "info"). For each fault the test checks that tsmd stays up (the monitor, and the same
 * worker process), that the good client's requests keep succeeding within a bound, that
 * tsmd's fd count is back to exactly its baseline and its RSS near it afterwards, that every
 * refusal is a named io.tsmd.Guest error, and that it is audited (io.tsmd.Admin.QueryAudit).
 * At the end tsmd stops with its worker exiting cleanly and no sanitizer report in its log.
 *
 *   busy, gone, tdisp-error  the device answers busy / as absent / with TDISP ERROR messages
 *   hang                     the device never answers: the platform router fails the request
 *                            after RequestTimeoutUSec (short here) with Timeout
 *   hang, monitor full       more hanging requests than the monitor holds at once: others
 *                            wait, but no longer than the timeout (a limitation, see there)
 *   removed mid-request      a device with latency is unlisted by a reload while requests
 *                            are in flight: they fail with DeviceGone, before their answer
 *   audit ENOSPC             a tiny tmpfs over the audit directory fills up
 *   audit slow disk          the audit directory on ext4 on a loop device whose writes the
 *                            kernel's block-layer throttle (a blkio/io cgroup holding the
 *                            worker) limits to a few per second: every fdatasync really waits
 *                            for the worker's data writes (the journal's own commits, by the
 *                            jbd2 thread outside the cgroup, are not slowed)
 *   audit EIO                the same file system shut down (EXT4_IOC_SHUTDOWN, what xfstests
 *                            use to simulate a dead disk): every write and sync fails with EIO
 *   audit EIO, client gone   the disk dies under the record of a VMM that already hung up
 *   audit stuck, reload      the file system frozen (FIFREEZE) under a record being written,
 *                            and a reload asked for meanwhile: its reopen waits in the audit
 *                            thread, not in the worker's loop
 *
 * The audit faults cannot keep "the other client succeeding": tsmd fails closed, so while no
 * record can be written every audited call of every client is refused (AuditFailed, with the
 * errno); what must stay up is everything else (Ping is answered at once), the same worker,
 * and, once there is room again and tsmd reloaded, service for all. While the disk is full,
 * failed or stuck, the good client's thread asks Ping and GetStatus throughout instead (each
 * within its bound, GetStatus telling the log's state), as it makes GuestRequests throughout
 * the slow disk and the hanging devices. The refused calls have no
 * record (there was no room for one): what is checked is that tsmd's own log (the journal) names
 * each, and that every answered call has a record, in an unbroken sequence.
 *
 * After the EIO, a reload alone does not help (the file system is dead) and tsmd keeps
 * refusing by name; once a working file system is mounted in its place, a reload moves the log
 * there and every client is served again, the sequence continuing.
 *
 * Not covered: a slow or failing disk under the context state directory rather than the audit
 * log; a real device's latency profile (the throttle delays each write evenly).
 *
 * Runs in: tests. The audit faults need root (a private mount namespace; loop devices and a
 * cgroup for the slow disk) and SKIP without; the slow disk and EIO cases SKIP without loop
 * devices, mkfs.ext4 or a block-I/O throttle.
 */

#include <fcntl.h>
#include <linux/loop.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include "good-client.h"
#include "guest-calls.h"
#include "repeat-check.h"
#include "tdisp.h"
#include "tsmd-fixture.h"
#include "varlink-errors.h"

#define G "io.tsmd.Guest."
#define E_GUEST(name) "io.tsmd.Guest." name

#define DEV1 "0000:01:00.0" /* the misbehaving device */
#define DEV2 "0000:02:00.0" /* the good client's */

/* A device list and further [Platform] keys. */
#define CONF(devices, extra) \
        strf("[Platform]\nMode=emulated\nIommuDevice=/dev/zero\nEmulatedDevices=%s\n%s", (devices), (extra))

/* RSS may grow this much over the baseline (allocator caches, audit buffers). */
#define RSS_SLACK_KIB 4096UL
/* A call tsmd does not audit must be answered this fast whatever the disk does. */
#define PING_MAX_USEC (500 * USEC_PER_MSEC)
/* How late a timeout may fire on a loaded machine. */
#define LATE_USEC (2 * USEC_PER_SEC)

/* ---- calls ---------------------------------------------------------------------------------- */

/* GuestRequest parameters: a TDISP GET_VERSION to address in scope "info". */
static const char *version_params(int64_t ctx, int64_t vdev, const char *address) {
        uint8_t msg[64];
        size_t len;
        _cleanup_free_ char *enc = NULL;

        ASSERT_OK(tdisp_build_request(TDISP_MSG_GET_VERSION, guest_function_id(address), NULL, 0, msg, sizeof(msg), &len));
        enc = b64(msg, len);
        return strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%" PRIi64 ",\"scope\":\"info\",\"request\":\"%s\","
                    "\"maxResponseSize\":4096}",
                    ctx, vdev, enc);
}

/* The TDISP response type of a successful GuestRequest reply; the error code if ERROR. */
static uint8_t response_type(json_object *reply, uint32_t *ret_error_code) {
        _cleanup_free_ uint8_t *resp = NULL;
        size_t len;

        resp = unb64(JSTR(reply, "response"), &len);
        ASSERT_GE(len, sizeof(TdispHeader));
        if (resp[1] == TDISP_MSG_ERROR && ret_error_code)
                ASSERT_OK(tdisp_error_decode(resp, len, ret_error_code, NULL));
        return resp[1];
}

static uint64_t usec_since(uint64_t start) {
        return now_usec() - start;
}

/* A call that tsmd does not audit answers promptly: its event loop is not blocked. Returns
 * how long it took. */
static uint64_t expect_ping_fast(Tsmd *t) {
        VarlinkClient *c = tsmd_connect(t);
        uint64_t start = now_usec(), took;

        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        took = usec_since(start);
        varlink_client_free(c);
        if (took > PING_MAX_USEC)
                TEST_FAIL("Ping took %llu ms", (unsigned long long) (took / USEC_PER_MSEC));
        return took;
}

/* ---- the audit log, through io.tsmd.Admin.QueryAudit ---------------------------------------- */

/* Records after seq `after` for address whose event and result are as given. */
static size_t audit_count(Tsmd *t, int64_t after, const char *address, const char *event, const char *result) {
        return tsmd_audit_count_where(t, after, strf("\"pciAddress\":\"%s\"", address), event, result);
}

#define expect_audited(t, after, address, event, result, n)                                                 \
        do {                                                                                                \
                size_t _have = audit_count((t), (after), (address), (event), (result));                     \
                if (_have != (size_t) (n))                                                                  \
                        TEST_FAIL("%zu audit records of %s %s -> %s, expected %zu", _have, (address), (event), \
                                  (result), (size_t) (n));                                                  \
        } while (false)

/* Every record after seq `after` (the guest requests among them counted into *ret_requests),
 * numbered without a gap. */
static void expect_unbroken_log(Tsmd *t, int64_t after, size_t *ret_requests, size_t *ret_failed) {
        json_object *records = tsmd_audit_query(t, strf("{\"fromSeq\":%" PRIi64 "}", after + 1));
        size_t n = json_object_array_length(records), requests = 0, failed = 0;

        for (size_t i = 0; i < n; i++) {
                json_object *rec = json_object_array_get_idx(records, i), *e, *res;

                if (JINT(rec, "seq") != after + 1 + (int64_t) i)
                        TEST_FAIL("audit record %zu after %" PRIi64 " has seq %" PRIi64, i, after, JINT(rec, "seq"));
                if (json_object_object_get_ex(rec, "event", &e) && streq(json_object_get_string(e), "guest-request")) {
                        requests++;
                        if (!json_object_object_get_ex(rec, "result", &res) || !streq(json_object_get_string(res), "ok"))
                                failed++;
                }
        }
        json_object_put(records);
        *ret_requests = requests;
        *ret_failed = failed;
}

/* ---- baseline and the checks after each fault ----------------------------------------------- */

typedef struct Baseline {
        unsigned fds;      /* with the good client (and its context) connected, idle */
        unsigned long rss; /* KiB */
        pid_t worker;
        int64_t seq;       /* the last audit record before the fault */
        unsigned n_good;   /* the good client's requests before it */
} Baseline;

static Baseline baseline_take(Tsmd *t, Good *g) {
        Baseline b;

        /* Warm up (every path the faults touch has run once, so the allocator has its arenas)
         * and time the good client as the machine runs it now. */
        good_measure_baseline(g);
        b.n_good = g->n_ok;
        b.fds = tsmd_settled_fds(t, 1);
        b.rss = tsmd_rss_kib(t);
        b.worker = tsmd_worker_pid(t);
        ASSERT_TRUE(b.worker > 0);
        b.seq = tsmd_audit_last_seq(t);
        return b;
}

static void expect_recovered(Tsmd *t, Good *g, const Baseline *b) {
        unsigned fds;
        unsigned long rss;

        ASSERT_TRUE(tsmd_is_running(t));
        ASSERT_EQ(tsmd_worker_pid(t), b->worker);
        good_check(g);
        fds = tsmd_wait_fds(t, b->fds, TSMD_WAIT_USEC);
        if (fds != b->fds) {
                tsmd_print_fds(t);
                TEST_FAIL("tsmd holds %u fds after the fault, %u before", fds, b->fds);
        }
        rss = tsmd_rss_kib(t);
        fprintf(stderr, "# good client: %u requests, slowest %llu ms (bound %llu ms); fds %u; RSS %lu -> %lu KiB\n",
                g->n_ok, (unsigned long long) (g->max_usec / USEC_PER_MSEC),
                (unsigned long long) (g->bound_usec / USEC_PER_MSEC), fds, b->rss, rss);
#if !TSMD_SANITIZED
        /* Under valgrind, RSS is valgrind's; its leak check speaks instead. */
        if (rss > b->rss + RSS_SLACK_KIB && !tsmd_under_valgrind())
                TEST_FAIL("tsmd's RSS grew from %lu to %lu KiB", b->rss, rss);
#endif
        ASSERT_TRUE(tsmd_is_running(t));
        ASSERT_EQ(tsmd_worker_pid(t), b->worker);
}

/* ---- a VMM on the misbehaving device -------------------------------------------------------- */

typedef struct Vmm {
        VarlinkClient *c;
        int64_t ctx;
} Vmm;

static void vmm_attach(Tsmd *t, Vmm *v, const char *address) {
        v->c = tsmd_connect_guest(t);
        v->ctx = guest_open_context(v->c);
        CALL_OK(v->c, G "AttachDevice", guest_attach_params(v->ctx, 1, address));
}

/* The same for a VMM that is a process of its own (of root, as the test is): what the policy's
 * limits count is a process's, and the test's own connections are one. */
static void vmm_attach_own_process(Tsmd *t, Vmm *v, const char *address) {
        v->c = tsmd_connect_to_as(t, t->guest_socket, 0, 0);
        v->ctx = guest_open_context(v->c);
        CALL_OK(v->c, G "AttachDevice", guest_attach_params(v->ctx, 1, address));
}

/* The VMM binds its vDevice 1, as its guest's requests need (else DeviceNotBound); then, with
 * faulty (not NULL), tsmd is reloaded with that configuration: a device that refuses or never
 * answers is bound while it still works, and its fault armed after. */
static void vmm_bind(Tsmd *t, Vmm *v, const char *faulty) {
        CALL_OK(v->c, G "Bind", guest_vdev_params(v->ctx, 1));
        if (!faulty)
                return;
        ASSERT_TRUE(tsmd_reload(t, faulty));
        /* An audited call, answered once its record is durable, so after the reload's own
         * record, which may still hold a record's room in flight when the log line tsmd_reload()
         * waits for comes: what the case counts starts after. */
        CALL_OK(v->c, G "GetDeviceState", guest_vdev_params(v->ctx, 1));
}

/* A GuestRequest on the VMM's vDevice 1 that must be refused with error and pciAddress DEV1. */
static void vmm_refused(Vmm *v, const char *error) {
        CALL_ERROR(v->c, G "GuestRequest", version_params(v->ctx, 1, DEV1), error, "{\"pciAddress\":\"" DEV1 "\"}");
}

/* n requests in flight at once; each reply is checked by check(). Returns when all came. With g,
 * the good client's request goes between. */
static void vmm_burst(Vmm *v, Good *g, unsigned n, uint64_t timeout_usec, void (*check)(AsyncCall *a)) {
        AsyncCall calls[64] = {};

        ASSERT_TRUE(n <= ELEMENTSOF(calls));
        for (unsigned i = 0; i < n; i++)
                tsmd_call_async(v->c, G "GuestRequest", version_params(v->ctx, 1, DEV1), 0, &calls[i]);
        /* The good client is served meanwhile (unless its thread is at it). */
        if (g)
                good_check(g);
        for (unsigned i = 0; i < n; i++) {
                if (!tsmd_async_wait(v->c, &calls[i], 1, timeout_usec))
                        TEST_FAIL("request %u of a burst of %u not answered", i, n);
                check(&calls[i]);
                async_call_done(&calls[i]);
        }
}

static const char *expected_error;

static void check_expected_error(AsyncCall *a) {
        if (!a->errors[0] || !streq(a->errors[0], expected_error))
                TEST_FAIL("expected %s, got %s %s", expected_error, a->errors[0] ?: "success",
                          json_object_to_json_string(a->params[0]));
        ASSERT_TRUE(json_matches(a->params[0], "{\"pciAddress\":\"" DEV1 "\"}"));
}

static void check_tdisp_error(AsyncCall *a) {
        uint32_t code;

        if (a->errors[0])
                TEST_FAIL("expected a TDISP ERROR response, got %s", a->errors[0]);
        ASSERT_EQ(response_type(a->params[0], &code), TDISP_MSG_ERROR);
        ASSERT_EQ(code, TDISP_ERROR_UNSPECIFIED);
}

/* ---- busy, gone, TDISP ERROR ---------------------------------------------------------------- */

#define N_SEQUENTIAL 20
#define N_BURST 16

typedef struct QuickFault {
        const char *fault;
        const char *request_error; /* NULL: answered, with a TDISP ERROR message */
        const char *bind_error;
} QuickFault;

typedef struct Burst {
        Vmm *v;
        void (*check)(AsyncCall *a);
} Burst;

static void burst_refused(Tsmd *t, void *userdata) {
        Burst *b = userdata;

        vmm_burst(b->v, NULL, N_BURST, TSMD_WAIT_USEC, b->check);
}

/* Bursts of requests the device refuses, by the thousand, the good client served throughout:
 * what each one cost tsmd is given back (a few dozen cannot show a small leak in the RSS, even
 * one valgrind does not count as an error as it stays reachable). Returns how many requests it
 * made. */
static unsigned churn(Tsmd *t, Vmm *v, Good *g, void (*check)(AsyncCall *a)) {
        Burst b = { v, check };

        return N_BURST * expect_no_growth(t, "a burst of requests to the device", 2, N_BURST, burst_refused, &b, g);
}

/*
 * The device answers at once, but wrongly, for as long as the fault is armed: a bind is refused,
 * and (bound while the fault was off) every request of its VMM is refused by name (or answered
 * with the device's ERROR), one at a time and in bursts; the good client does not notice. Then a
 * reload clears the fault and the same vDevice works again, no re-attach needed.
 */
static void quick_fault(const QuickFault *f) {
        Tsmd t;
        Good g;
        Baseline b;
        Vmm v;
        json_object *r;
        unsigned n_churn;

        tsmd_start_config(&t, CONF(strf(DEV1 ":fault=%s," DEV2, f->fault), ""));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        vmm_attach(&t, &v, DEV1);
        CALL_ERROR(v.c, G "Bind", guest_vdev_params(v.ctx, 1), f->bind_error, NULL);
        ASSERT_TRUE(tsmd_reload(&t, CONF(DEV1 "," DEV2, "")));
        vmm_bind(&t, &v, CONF(strf(DEV1 ":fault=%s," DEV2, f->fault), ""));

        for (unsigned i = 0; i < N_SEQUENTIAL; i++) {
                if (f->request_error)
                        vmm_refused(&v, f->request_error);
                else {
                        uint32_t code;

                        r = CALL_OK(v.c, G "GuestRequest", version_params(v.ctx, 1, DEV1));
                        ASSERT_EQ(response_type(r, &code), TDISP_MSG_ERROR);
                        ASSERT_EQ(code, TDISP_ERROR_UNSPECIFIED);
                }
                if (i % 4 == 0)
                        good_check(&g);
        }
        expected_error = f->request_error;
        vmm_burst(&v, &g, N_BURST, TSMD_WAIT_USEC, f->request_error ? check_expected_error : check_tdisp_error);
        n_churn = churn(&t, &v, &g, f->request_error ? check_expected_error : check_tdisp_error);
        good_check(&g);

        /* Each refusal (or ERROR answer) has its record, under the device's address. */
        expect_audited(&t, b.seq, DEV1, "guest-request", f->request_error ?: "ok", N_SEQUENTIAL + N_BURST + n_churn);
        expect_audited(&t, b.seq, DEV1, "bind", f->bind_error, 1);
        expect_audited(&t, b.seq, DEV2, "guest-request", "ok", g.n_ok - b.n_good);

        /* The fault cleared by a reload: the same vDevice works again. */
        ASSERT_TRUE(tsmd_reload(&t, CONF(DEV1 "," DEV2, "")));
        ASSERT_EQ(response_type(CALL_OK(v.c, G "GuestRequest", version_params(v.ctx, 1, DEV1)), NULL), TDISP_MSG_VERSION);
        /* Still bound (a Bind would answer 0, whatever a reset by "gone" left), so the VMM
         * unbinds for its Bind to lock the TDI again, as on a kernel TSM. */
        CALL_OK(v.c, G "Unbind", guest_vdev_params(v.ctx, 1));
        r = CALL_OK(v.c, G "Bind", guest_vdev_params(v.ctx, 1));
        ASSERT_STREQ(JSTR(r, "state"), "config_locked");
        expect_audited(&t, b.seq, DEV1, "bind", "ok", 2);

        varlink_client_free(v.c);
        expect_recovered(&t, &g, &b);
        good_done(&g);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

TEST(backend_busy) {
        quick_fault(&(QuickFault) { "busy", E_GUEST("DeviceBusy"), E_GUEST("DeviceBusy") });
}

TEST(backend_gone) {
        quick_fault(&(QuickFault) { "gone", E_GUEST("DeviceGone"), E_GUEST("DeviceGone") });
}

/* A device answering TDISP ERROR is not a refusal by tsmd: the guest gets the device's answer
 * (that is the protocol); only the host-side bind, which needs a LOCK_INTERFACE response, is
 * refused. */
TEST(backend_tdisp_error) {
        quick_fault(&(QuickFault) { "tdisp-error", NULL, E_GUEST("InvalidState") });
}

/* ---- a device that never answers ------------------------------------------------------------ */

#define HANG_TIMEOUT_USEC (300 * USEC_PER_MSEC)
/* libevent measures timeouts from its cached loop time: a timer may seem a little early. */
#define EARLY_USEC (5 * USEC_PER_MSEC)
#define N_HANGING 32
#define N_ABANDONED 8

TEST(backend_hang) {
        Tsmd t;
        Good g;
        Baseline b;
        Vmm v;
        AsyncCall calls[N_HANGING] = {};
        uint64_t start, took;
        unsigned early = 0;

        tsmd_start_config(&t, CONF(DEV1 ":fault=timeout," DEV2, strf("RequestTimeoutUSec=%llu\n",
                                                                   (unsigned long long) HANG_TIMEOUT_USEC)));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        vmm_attach(&t, &v, DEV1);

        /* Bind and unbind have no deadline to wait for: a device that does not answer fails them
         * as soon as it takes them up, the TSM having given up (BackendError Timeout: not tsmd's
         * Timeout, which says the call may still complete). */
        CALL_ERROR(v.c, G "Bind", guest_vdev_params(v.ctx, 1), E_GUEST("BackendError"),
                   "{\"name\":\"Timeout\",\"errno\":" STRINGIFY(ETIME) "}");
        ASSERT_TRUE(tsmd_reload(&t, CONF(DEV1 "," DEV2, strf("RequestTimeoutUSec=%llu\n",
                                                            (unsigned long long) HANG_TIMEOUT_USEC))));
        vmm_bind(&t, &v, CONF(DEV1 ":fault=timeout," DEV2, strf("RequestTimeoutUSec=%llu\n",
                                                              (unsigned long long) HANG_TIMEOUT_USEC)));

        /* One request: refused by name at the deadline, not before and not much after. The good
         * client works throughout the hanging, from its thread. */
        good_during_start(&g);
        start = now_usec();
        vmm_refused(&v, E_GUEST("Timeout"));
        took = usec_since(start);
        ASSERT_GE(took + EARLY_USEC, HANG_TIMEOUT_USEC);
        ASSERT_LE(took, HANG_TIMEOUT_USEC + LATE_USEC);

        /* Many at once: they hold their calls (and the monitor's request slots) until the
         * deadline, while the good client is served as fast as ever. */
        start = now_usec();
        for (unsigned i = 0; i < N_HANGING; i++)
                tsmd_call_async(v.c, G "GuestRequest", version_params(v.ctx, 1, DEV1), 0, &calls[i]);
        while (usec_since(start) < HANG_TIMEOUT_USEC / 2)
                expect_ping_fast(&t);
        tsmd_pump(v.c, 0);
        if (usec_since(start) + EARLY_USEC < HANG_TIMEOUT_USEC)
                for (unsigned i = 0; i < N_HANGING; i++)
                        early += calls[i].n;
        ASSERT_EQ(early, 0);
        expected_error = E_GUEST("Timeout");
        for (unsigned i = 0; i < N_HANGING; i++) {
                if (!tsmd_async_wait(v.c, &calls[i], 1, HANG_TIMEOUT_USEC + LATE_USEC))
                        TEST_FAIL("hanging request %u not refused in time", i);
                check_expected_error(&calls[i]);
                async_call_done(&calls[i]);
        }
        took = usec_since(start);
        ASSERT_GE(took + EARLY_USEC, HANG_TIMEOUT_USEC);
        fprintf(stderr, "# %u hanging requests refused with Timeout after %llu ms\n", N_HANGING,
                (unsigned long long) (took / USEC_PER_MSEC));
        good_during_stop(&g, "requests hanging on a device until their timeout");
        good_check(&g);

        /* Every timeout has its record. */
        expect_audited(&t, b.seq, DEV1, "guest-request", E_GUEST("Timeout"), 1 + N_HANGING);
        expect_audited(&t, b.seq, DEV1, "bind", E_GUEST("BackendError"), 1);

        /* The fault cleared by a reload: the vDevice answers again. */
        ASSERT_TRUE(tsmd_reload(&t, CONF(DEV1 "," DEV2, strf("RequestTimeoutUSec=%llu\n",
                                                            (unsigned long long) HANG_TIMEOUT_USEC))));
        ASSERT_EQ(response_type(CALL_OK(v.c, G "GuestRequest", version_params(v.ctx, 1, DEV1)), NULL), TDISP_MSG_VERSION);
        ASSERT_TRUE(tsmd_reload(&t, CONF(DEV1 ":fault=timeout," DEV2, strf("RequestTimeoutUSec=%llu\n",
                                                                          (unsigned long long) HANG_TIMEOUT_USEC))));

        /* A VMM that gives up (hangs up) with requests hanging: nothing stays behind once their
         * deadline passed. */
        good_during_start(&g);
        for (unsigned i = 0; i < N_ABANDONED; i++)
                tsmd_call_async(v.c, G "GuestRequest", version_params(v.ctx, 1, DEV1), 0, &calls[i]);
        tsmd_pump(v.c, 20 * USEC_PER_MSEC);
        for (unsigned i = 0; i < N_ABANDONED; i++) {
                ASSERT_EQ(calls[i].n, 0);
                async_call_done(&calls[i]);
        }
        varlink_client_free(v.c);
        sleep_usec(HANG_TIMEOUT_USEC + 100 * USEC_PER_MSEC);
        good_during_stop(&g, "requests hanging on a device after their VMM hung up");
        good_check(&g);
        /* Recorded when their caller left; nothing more came of them. */
        expect_audited(&t, b.seq, DEV1, "guest-request", "io.tsmd.Disconnected", N_ABANDONED);
        expect_audited(&t, b.seq, DEV1, "guest-request", E_GUEST("Timeout"), 1 + N_HANGING);
        expect_recovered(&t, &g, &b);
        good_done(&g);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/*
 * More requests hanging at once than the monitor holds (TSM_PRIV_REQUESTS_MAX, 256) must not
 * delay other clients: the worker gives each client slot at most an eighth of the monitor's
 * room (daemon/priv-channel.c), so five VMMs (one uid, within the default limits) keeping 300
 * requests hanging on five devices fill 160 slots, and a good client's request on a healthy
 * device goes straight through. Every hanging request is still refused by name at its deadline.
 */
#define STARVE_TIMEOUT_USEC (1 * USEC_PER_SEC)
#define STARVE_CONNS 5
#define STARVE_PER_CONN 60

TEST(hanging_clients_do_not_starve_others) {
        static AsyncCall calls[STARVE_CONNS][STARVE_PER_CONN];
        Tsmd t;
        Good g;
        Baseline b;
        Vmm v[STARVE_CONNS];
        uint64_t took;
        char devices[256], working[256];

        snprintf(devices, sizeof(devices), DEV2);
        snprintf(working, sizeof(working), DEV2);
        for (unsigned i = 0; i < STARVE_CONNS; i++) {
                snprintf(devices + strlen(devices), sizeof(devices) - strlen(devices), ",0000:%02x:00.0:fault=timeout", 0x10 + i);
                snprintf(working + strlen(working), sizeof(working) - strlen(working), ",0000:%02x:00.0", 0x10 + i);
        }
        /* The devices work until their VMMs have bound them. */
        tsmd_start_config(&t, CONF(working, strf("RequestTimeoutUSec=%llu\n", (unsigned long long) STARVE_TIMEOUT_USEC)));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        for (unsigned i = 0; i < STARVE_CONNS; i++) {
                char address[16];

                snprintf(address, sizeof(address), "0000:%02x:00.0", 0x10 + i);
                vmm_attach_own_process(&t, &v[i], address);
                vmm_bind(&t, &v[i], NULL);
        }
        ASSERT_TRUE(tsmd_reload(&t, CONF(devices, strf("RequestTimeoutUSec=%llu\n", (unsigned long long) STARVE_TIMEOUT_USEC))));
        for (unsigned i = 0; i < STARVE_CONNS; i++) {
                char address[16], params[512];

                snprintf(address, sizeof(address), "0000:%02x:00.0", 0x10 + i);
                snprintf(params, sizeof(params), "%s", version_params(v[i].ctx, 1, address));
                for (unsigned j = 0; j < STARVE_PER_CONN; j++)
                        tsmd_call_async(v[i].c, G "GuestRequest", params, 0, &calls[i][j]);
                tsmd_pump(v[i].c, 10 * USEC_PER_MSEC);
        }

        /* Well within the timeout: nothing of the good client's waits behind the hanging. */
        g.bound_usec = MIN(g.base_bound_usec, STARVE_TIMEOUT_USEC / 4);
        took = good_check(&g);
        fprintf(stderr, "# the good client's request, behind %u hanging ones: %llu ms (timeout %llu ms)\n",
                STARVE_CONNS * STARVE_PER_CONN, (unsigned long long) (took / USEC_PER_MSEC),
                (unsigned long long) (STARVE_TIMEOUT_USEC / USEC_PER_MSEC));
        expect_ping_fast(&t);

        /* And from its thread until every hanging request was refused, their timeouts firing
         * all at once included. */
        g.bound_usec = g.base_bound_usec;
        good_during_start(&g);
        expected_error = E_GUEST("Timeout");
        for (unsigned i = 0; i < STARVE_CONNS; i++) {
                for (unsigned j = 0; j < STARVE_PER_CONN; j++) {
                        if (!tsmd_async_wait(v[i].c, &calls[i][j], 1, 2 * STARVE_TIMEOUT_USEC + LATE_USEC))
                                TEST_FAIL("hanging request %u/%u not refused in time", i, j);
                        if (!calls[i][j].errors[0] || !streq(calls[i][j].errors[0], E_GUEST("Timeout")))
                                TEST_FAIL("hanging request %u/%u: %s", i, j, calls[i][j].errors[0] ?: "success");
                        async_call_done(&calls[i][j]);
                }
                varlink_client_free(v[i].c);
        }
        good_during_stop(&g, "requests hanging on five devices until their timeout");
        for (unsigned i = 0; i < STARVE_CONNS; i++)
                expect_audited(&t, b.seq, strf("0000:%02x:00.0", 0x10 + i), "guest-request", E_GUEST("Timeout"),
                               STARVE_PER_CONN);
        g.bound_usec = g.base_bound_usec;
        expect_recovered(&t, &g, &b);
        good_done(&g);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/*
 * MaxPendingCalls= stops tsmd reading a client, not just answering it: with four requests of
 * one connection hanging on a device and MaxPendingCalls=4, the call sent behind them is not
 * even run (no record of it) until one times out; with room for five it runs at once (its
 * answer waits its turn either way). The good client is served throughout.
 */
#define PENDING_TIMEOUT_USEC (1 * USEC_PER_SEC)
#define PENDING_HANGING 4
#define HANGING_DEV "0000:10:00.0"
/* Named by the fixture's policy, as root is. */
#define NOBODY 65534

static void pending_calls_round(unsigned max_pending_calls) {
        static const char bogus[] = "{\"context\":987654321}";
        AsyncCall calls[PENDING_HANGING + 1] = {};
        bool held = max_pending_calls <= PENDING_HANGING;
        Tsmd t;
        Good g;
        Baseline b;
        Vmm v;

        tsmd_start_config(&t, CONF(DEV2 "," HANGING_DEV,
                                   strf("RequestTimeoutUSec=%llu\n[Varlink]\nMaxPendingCalls=%u\n",
                                        (unsigned long long) PENDING_TIMEOUT_USEC, max_pending_calls)));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        vmm_attach(&t, &v, HANGING_DEV);
        vmm_bind(&t, &v, CONF(DEV2 "," HANGING_DEV ":fault=timeout",
                              strf("RequestTimeoutUSec=%llu\n[Varlink]\nMaxPendingCalls=%u\n",
                                   (unsigned long long) PENDING_TIMEOUT_USEC, max_pending_calls)));

        /* The good client is served from its thread throughout, until the last of the VMM's
         * calls is answered. */
        good_during_start(&g);
        for (unsigned i = 0; i < PENDING_HANGING; i++)
                tsmd_call_async(v.c, G "GuestRequest", version_params(v.ctx, 1, HANGING_DEV), 0, &calls[i]);
        tsmd_call_async(v.c, G "CloseContext", bogus, 0, &calls[PENDING_HANGING]);
        tsmd_pump(v.c, 300 * USEC_PER_MSEC);
        if (held)
                ASSERT_EQ(tsmd_audit_count(&t, b.seq, "close-context", E_GUEST("NoSuchContext")), 0U);
        else
                tsmd_expect_audit(&t, b.seq, "close-context", E_GUEST("NoSuchContext"), 1);
        ASSERT_EQ(calls[PENDING_HANGING].n, 0U);

        /* In call order: the hanging ones by their deadline, then the one behind them. */
        for (unsigned i = 0; i <= PENDING_HANGING; i++) {
                if (!tsmd_async_wait(v.c, &calls[i], 1, PENDING_TIMEOUT_USEC + LATE_USEC))
                        TEST_FAIL("call %u of the VMM not answered in time", i);
                ASSERT_STREQ(calls[i].errors[0], i < PENDING_HANGING ? E_GUEST("Timeout") : E_GUEST("NoSuchContext"));
                async_call_done(&calls[i]);
        }
        good_during_stop(&g, held ? "MaxPendingCalls= reached by calls hanging on a device"
                                  : "calls hanging on a device, with room for one more");
        good_check(&g);
        tsmd_expect_audit(&t, b.seq, "close-context", E_GUEST("NoSuchContext"), 1);
        varlink_client_free(v.c);
        expect_recovered(&t, &g, &b);
        good_done(&g);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

TEST(max_pending_calls_stops_reading) {
        pending_calls_round(PENDING_HANGING);
        pending_calls_round(PENDING_HANGING + 1);
}

/*
 * A oneway call is an audited call like any other: each of a VMM's oneway GuestRequests gets
 * its own record when it is done (not "Disconnected" once the VMM leaves), and gives its room
 * in the audit queue back then: round after round of them, with room for 8 records, the VMM's
 * and other clients' calls keep being taken.
 */
TEST(oneway_calls_are_recorded) {
        Tsmd t;
        Good g;
        Baseline b;
        Vmm v;

        tsmd_start_config(&t, CONF(DEV1 "," DEV2, "[Audit]\nMaxRecordsInFlight=8\n"));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        vmm_attach(&t, &v, DEV1);
        CALL_OK(v.c, G "Bind", guest_vdev_params(v.ctx, 1));
        for (unsigned round = 1; round <= 4; round++) {
                for (unsigned i = 0; i < 6; i++)
                        ASSERT_OK(varlink_client_send_oneway(v.c, G "GuestRequest",
                                                             json_tokener_parse(version_params(v.ctx, 1, DEV1))));
                tsmd_pump(v.c, 10 * USEC_PER_MSEC);
                for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;
                     audit_count(&t, b.seq, DEV1, "guest-request", "ok") < 6 * round; sleep_usec(5 * USEC_PER_MSEC))
                        if (now_usec() > deadline)
                                TEST_FAIL("round %u of oneway requests not on record", round);
                expect_audited(&t, b.seq, DEV1, "guest-request", "ok", 6 * round);
                good_check(&g);
        }
        varlink_client_free(v.c);
        expect_audited(&t, b.seq, DEV1, "guest-request", VARLINK_ERROR_DISCONNECTED, 0);
        expect_recovered(&t, &g, &b);
        good_done(&g);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/*
 * [Audit] MaxRecordsInFlight= bounds the audited calls in progress over all clients: with two
 * requests hanging on a device and room for two, the next call is refused AuditFailed (ENOBUFS)
 * and nothing happens. What tsmd owes for what it did on its own is recorded all the same: a VMM
 * leaving with a bound device gets its unbind and its release record while the queue is full.
 */
#define QUEUE_TIMEOUT_USEC (3 * USEC_PER_SEC)

TEST(a_full_audit_queue_refuses_calls_but_records_releases) {
        AsyncCall hanging[2] = {};
        Tsmd t;
        Good g;
        Baseline b;
        Vmm hang, leaving;

        tsmd_start_config(&t, CONF(DEV1 "," DEV2 "," HANGING_DEV,
                                   strf("RequestTimeoutUSec=%llu\n[Audit]\nMaxRecordsInFlight=2\nRefusalIntervalSec=1\n",
                                        (unsigned long long) QUEUE_TIMEOUT_USEC)));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        vmm_attach(&t, &leaving, DEV1);
        CALL_OK(leaving.c, G "Bind", guest_vdev_params(leaving.ctx, 1));
        vmm_attach(&t, &hang, HANGING_DEV);
        vmm_bind(&t, &hang, CONF(DEV1 "," DEV2 "," HANGING_DEV ":fault=timeout",
                                 strf("RequestTimeoutUSec=%llu\n[Audit]\nMaxRecordsInFlight=2\nRefusalIntervalSec=1\n",
                                      (unsigned long long) QUEUE_TIMEOUT_USEC)));

        for (unsigned i = 0; i < ELEMENTSOF(hanging); i++)
                tsmd_call_async(hang.c, G "GuestRequest", version_params(hang.ctx, 1, HANGING_DEV), 0, &hanging[i]);
        tsmd_pump(hang.c, 100 * USEC_PER_MSEC);
        CALL_ERROR(g.c, G "GuestRequest", g.params, E_GUEST("AuditFailed"), "{\"errno\":105}"); /* ENOBUFS */
        /* An administrator's device change is not load: it is tried (and refused here only for
         * what it asks: there is no such device). */
        {
                VarlinkClient *admin = tsmd_connect(&t);

                CALL_ERROR(admin, "io.tsmd.Admin.DisconnectDevice", "{\"pciAddress\":\"0000:0f:00.0\"}",
                           "io.tsmd.Admin.NoSuchDevice", NULL);
                varlink_client_free(admin);
        }

        /* The VMM leaves: tsmd unbinds its device and owes the record of that. */
        varlink_client_free(leaving.c);
        for (uint64_t deadline = now_usec() + QUEUE_TIMEOUT_USEC / 2; audit_count(&t, b.seq, DEV1, "release", "ok") == 0;
             sleep_usec(5 * USEC_PER_MSEC))
                if (now_usec() > deadline)
                        TEST_FAIL("no release record while the audit queue was full");
        ASSERT_EQ(hanging[0].n, 0U); /* all of it while the queue was full */

        for (unsigned i = 0; i < ELEMENTSOF(hanging); i++) {
                ASSERT_TRUE(tsmd_async_wait(hang.c, &hanging[i], 1, QUEUE_TIMEOUT_USEC + LATE_USEC));
                ASSERT_STREQ(hanging[i].errors[0], E_GUEST("Timeout"));
                async_call_done(&hanging[i]);
        }
        varlink_client_free(hang.c);
        expect_audited(&t, b.seq, DEV1, "release", "ok", 1);
        /* The refusal had no room for a record of its own: it is counted, and on record in its
         * interval's summary once there is room again. */
        tsmd_expect_audit(&t, b.seq, "guest-request", E_GUEST("AuditFailed"), 1);
        expect_recovered(&t, &g, &b);
        good_done(&g);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/*
 * [Audit] MaxRecordsInFlightPerUid= bounds what one uid has in flight: root with two requests
 * hanging on a device and a share of two is refused AuditFailed (ENOBUFS) for its next call, and
 * nothing happens; another uid the policy names still gets its calls through, and root gets room
 * again once its requests end.
 */
TEST(one_uid_cannot_take_all_the_room_in_flight) {
        AsyncCall hanging[2] = {};
        VarlinkClient *other;
        Tsmd t;
        Vmm hang;
        int64_t ctx;
        unsigned fds0;
        unsigned long rss0;
        pid_t worker;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as a second uid");
        tsmd_start_config(&t, CONF(DEV1 "," DEV2 "," HANGING_DEV,
                                   strf("RequestTimeoutUSec=%llu\n[Audit]\nMaxRecordsInFlightPerUid=2\n"
                                        "RefusalIntervalSec=1\n",
                                        (unsigned long long) QUEUE_TIMEOUT_USEC)));
        /* Root's own calls are what is refused here: the clients served meanwhile are nobody's,
         * and the baseline is tsmd's with no client connected. */
        fds0 = tsmd_idle_fds(&t);
        rss0 = tsmd_rss_kib(&t);
        worker = tsmd_worker_pid(&t);
        vmm_attach(&t, &hang, HANGING_DEV);
        vmm_bind(&t, &hang, CONF(DEV1 "," DEV2 "," HANGING_DEV ":fault=timeout",
                                 strf("RequestTimeoutUSec=%llu\n[Audit]\nMaxRecordsInFlightPerUid=2\n"
                                      "RefusalIntervalSec=1\n",
                                      (unsigned long long) QUEUE_TIMEOUT_USEC)));
        for (unsigned i = 0; i < ELEMENTSOF(hanging); i++)
                tsmd_call_async(hang.c, G "GuestRequest", version_params(hang.ctx, 1, HANGING_DEV), 0, &hanging[i]);
        tsmd_pump(hang.c, 100 * USEC_PER_MSEC);

        /* Root's share is taken, on any of its connections. */
        {
                VarlinkClient *mine = tsmd_connect_guest(&t);

                CALL_ERROR(mine, G "OpenContext", NULL, E_GUEST("AuditFailed"), "{\"errno\":105}"); /* ENOBUFS */
                varlink_client_free(mine);
        }
        /* Another uid's calls are taken. */
        other = tsmd_connect_as(&t, NOBODY, NOBODY);
        ctx = guest_open_context(other);
        CALL_OK(other, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        CALL_OK(other, G "Bind", guest_vdev_params(ctx, 1));
        CALL_OK(other, G "GuestRequest", version_params(ctx, 1, DEV1));
        ASSERT_EQ(hanging[0].n, 0U); /* all of it while root's requests hung */

        for (unsigned i = 0; i < ELEMENTSOF(hanging); i++) {
                ASSERT_TRUE(tsmd_async_wait(hang.c, &hanging[i], 1, QUEUE_TIMEOUT_USEC + LATE_USEC));
                ASSERT_STREQ(hanging[i].errors[0], E_GUEST("Timeout"));
                async_call_done(&hanging[i]);
        }
        /* Given back: root's calls are taken again. */
        CALL_OK(hang.c, G "CloseContext", strf("{\"context\":%" PRIi64 "}", hang.ctx));
        /* The refused call is counted into its interval's summary, the only record of it. */
        tsmd_expect_audit(&t, 0, "open-context", E_GUEST("AuditFailed"), 1);
        varlink_client_free(other);
        varlink_client_free(hang.c);
        ASSERT_EQ(tsmd_worker_pid(&t), worker);
        ASSERT_EQ(tsmd_wait_fds(&t, fds0, TSMD_WAIT_USEC), fds0);
        fprintf(stderr, "# RSS %lu -> %lu KiB\n", rss0, tsmd_rss_kib(&t));
#if !TSMD_SANITIZED
        if (!tsmd_under_valgrind())
                ASSERT_LE(tsmd_rss_kib(&t), rss0 + RSS_SLACK_KIB);
#endif
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/* ---- a device removed while requests to it are in flight ------------------------------------ */

/* Longer than a reload takes tsmd: four times under valgrind, where one took 1.36 s on a loaded
 * machine (beside four builds). */
#define REMOVE_LATENCY_USEC ((tsmd_under_valgrind() ? 4 : 1) * 600 * USEC_PER_MSEC)
#define N_IN_FLIGHT 6

TEST(device_removed_mid_request) {
        const char *latency = strf("EmulatedLatencyUSec=%llu\n", (unsigned long long) REMOVE_LATENCY_USEC);
        char extra[64];
        Tsmd t;
        Good g;
        Baseline b;
        Vmm v;
        AsyncCall calls[N_IN_FLIGHT] = {};
        uint64_t start, took, deadline;
        json_object *r;
        const char *e;

        snprintf(extra, sizeof(extra), "%s", latency);
        tsmd_start_config(&t, CONF(DEV1 "," DEV2, extra));
        good_connect(&t, &g, REMOVE_LATENCY_USEC);
        b = baseline_take(&t, &g);
        vmm_attach(&t, &v, DEV1);
        CALL_OK(v.c, G "Bind", guest_vdev_params(v.ctx, 1));

        /* In flight, then the device is unlisted: each fails by name, and before the device
         * would have answered. */
        good_during_start(&g);
        start = now_usec();
        for (unsigned i = 0; i < N_IN_FLIGHT; i++)
                tsmd_call_async(v.c, G "GuestRequest", version_params(v.ctx, 1, DEV1), 0, &calls[i]);
        tsmd_pump(v.c, 20 * USEC_PER_MSEC);
        ASSERT_TRUE(tsmd_reload(&t, CONF(DEV2, extra)));
        expected_error = E_GUEST("DeviceGone");
        for (unsigned i = 0; i < N_IN_FLIGHT; i++) {
                ASSERT_TRUE(tsmd_async_wait(v.c, &calls[i], 1, TSMD_WAIT_USEC));
                check_expected_error(&calls[i]);
                async_call_done(&calls[i]);
        }
        took = usec_since(start);
        fprintf(stderr, "# %u requests in flight refused with DeviceGone after %llu ms (latency %llu ms)\n",
                N_IN_FLIGHT, (unsigned long long) (took / USEC_PER_MSEC),
                (unsigned long long) (REMOVE_LATENCY_USEC / USEC_PER_MSEC));
        /* Failed when the device went, not when it would have answered (the first after one
         * latency, the others one after another behind it). */
        if (took >= REMOVE_LATENCY_USEC)
                TEST_FAIL("requests in flight on a removed device were refused only after %llu ms",
                          (unsigned long long) (took / USEC_PER_MSEC));
        good_during_stop(&g, "a reload that removed a device with requests in flight");

        /* Gone for good: everything on the vDevice is refused the same way. */
        vmm_refused(&v, E_GUEST("DeviceGone"));
        CALL_ERROR(v.c, G "Bind", guest_vdev_params(v.ctx, 1), E_GUEST("DeviceGone"), "{\"pciAddress\":\"" DEV1 "\"}");
        CALL_ERROR(v.c, G "GetDeviceState", guest_vdev_params(v.ctx, 1), E_GUEST("DeviceGone"),
                   "{\"pciAddress\":\"" DEV1 "\"}");
        expect_audited(&t, b.seq, DEV1, "guest-request", E_GUEST("DeviceGone"), N_IN_FLIGHT + 1);
        expect_audited(&t, b.seq, DEV1, "bind", E_GUEST("DeviceGone"), 1);
        expect_audited(&t, b.seq, DEV1, "get-state", E_GUEST("DeviceGone"), 1);
        good_check(&g);

        /* Back: a fresh device for a fresh attach (once tsmd has released the old binding). */
        ASSERT_TRUE(tsmd_reload(&t, CONF(DEV1 "," DEV2, extra)));
        CALL_OK(v.c, G "DetachDevice", guest_vdev_params(v.ctx, 1));
        deadline = now_usec() + TSMD_WAIT_USEC;
        while ((e = tsmd_call(v.c, G "AttachDevice", guest_attach_params(v.ctx, 2, DEV1), &r))) {
                if (!streq(e, E_GUEST("DeviceBusy")) || now_usec() > deadline)
                        TEST_FAIL("AttachDevice(" DEV1 ") after it came back: %s", e);
                sleep_usec(5 * USEC_PER_MSEC);
        }
        CALL_OK(v.c, G "Bind", guest_vdev_params(v.ctx, 2));
        ASSERT_EQ(response_type(CALL_OK(v.c, G "GuestRequest", version_params(v.ctx, 2, DEV1)), NULL), TDISP_MSG_VERSION);

        varlink_client_free(v.c);
        expect_recovered(&t, &g, &b);
        good_done(&g);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/* ---- audit faults: the file system under the audit directory -------------------------------- */

static const char *audit_dir(Tsmd *t) {
        return strf("%s/audit", t->dir);
}

/*
 * The worker opens its audit directory when it starts. To put it on another file system,
 * mount that over the directory and let the monitor start a fresh worker (as after a crash):
 * it opens the directory anew, on what is mounted there now, and continues with an empty log.
 */
static void worker_restart(Tsmd *t) {
        VarlinkClient *c;

        tsmd_kill_worker(t);
        c = tsmd_connect(t);
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        varlink_client_free(c);
}

static void worker_ids(Tsmd *t, uid_t *ret_uid, gid_t *ret_gid) {
        struct stat st;

        ASSERT_OK(stat(strf("/proc/%d", (int) tsmd_worker_pid(t)), &st));
        *ret_uid = st.st_uid;
        *ret_gid = st.st_gid;
}

static void unmount_audit(Tsmd *t) {
        tsmd_stop(t);
        (void) umount2(audit_dir(t), MNT_DETACH);
}

#define N_FULL_REFUSALS 5

/* What tsmd logs for a call it refuses because the audit log cannot take its record. */
#define REFUSED_UNRECORDED(event, error) ("Refusing " event ", the audit log cannot take a record: " error)

/*
 * A full disk: room for the audit record is reserved before a call runs, so once there is none
 * the call is refused (AuditFailed, errno ENOSPC) and nothing runs. Refused and accepted may
 * alternate for a while as the log uses up blocks it already has (see test-audit.c), so the
 * disk counts as full after N_FULL_REFUSALS refusals in a row.
 */
TEST(audit_full_disk) {
        Tsmd t;
        Good g;
        Baseline b;
        VarlinkClient *d;
        json_object *r;
        const char *error;
        char filler[400];
        size_t answered = 0, requests, failed;
        unsigned refused = 0, attempts = 0, logged;
        uid_t uid;
        gid_t gid;

        tsmd_private_mount_namespace("mounting over the audit directory");
        tsmd_start_config(&t, CONF(DEV1 "," DEV2, ""));
        worker_ids(&t, &uid, &gid);
        if (mount("tsmd-test-audit", audit_dir(&t), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  strf("size=64k,mode=0750,uid=%u,gid=%u", (unsigned) uid, (unsigned) gid)) < 0)
                TEST_FAIL("mounting a tmpfs on %s: %s", audit_dir(&t), strerror(errno));
        /* Part of it taken by a file the test removes later, to make room again. */
        snprintf(filler, sizeof(filler), "%s/filler", audit_dir(&t));
        {
                char block[16384];
                _cleanup_close_ int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

                memset(block, 'x', sizeof(block));
                ASSERT_OK(fd);
                ASSERT_EQ(write(fd, block, sizeof(block)), (ssize_t) sizeof(block));
        }
        worker_restart(&t);

        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);

        /* Fill it up with the good client's own requests. */
        while (refused < N_FULL_REFUSALS) {
                if (++attempts > 3000)
                        TEST_FAIL("3000 requests did not fill a 64 KiB file system");
                error = tsmd_call(g.c, G "GuestRequest", g.params, &r);
                if (error) {
                        ASSERT_STREQ(error, E_GUEST("AuditFailed"));
                        ASSERT_TRUE(json_matches(r, "{\"errno\":28}")); /* ENOSPC */
                        refused++;
                        sleep_usec(20 * USEC_PER_MSEC);
                        continue;
                }
                refused = 0;
                answered++;
        }
        fprintf(stderr, "# %zu requests answered before the audit file system was full\n", answered);
        ASSERT_TRUE(answered > 0);

        /* Full: every client's audited calls are refused by name, nothing else is affected: what
         * is not audited is answered throughout, telling every client the log is full. */
        good_during_start_unaudited(&g, "full");
        logged = tsmd_log_count(&t, REFUSED_UNRECORDED("guest-request", "No space left on device"));
        d = tsmd_connect_guest(&t);
        for (unsigned i = 0; i < 10; i++) {
                CALL_ERROR(g.c, G "GuestRequest", g.params, E_GUEST("AuditFailed"), "{\"errno\":28}");
                CALL_ERROR(d, G "OpenContext", NULL, E_GUEST("AuditFailed"), "{\"errno\":28}");
                expect_ping_fast(&t);
        }
        varlink_client_free(d);
        /* The log has no room for their records: each is in tsmd's own log instead. */
        ASSERT_EQ(tsmd_log_count(&t, REFUSED_UNRECORDED("guest-request", "No space left on device")), logged + 10);
        ASSERT_EQ(tsmd_log_count(&t, REFUSED_UNRECORDED("open-context", "No space left on device")), 10U);
        good_during_stop(&g, "a full audit disk");
        ASSERT_TRUE(tsmd_is_running(&t));
        ASSERT_EQ(tsmd_worker_pid(&t), b.worker);

        /* Room again, and a reload (which reopens a failed log): served again. */
        write_file(filler, "");
        ASSERT_TRUE(tsmd_reload(&t, CONF(DEV1 "," DEV2, "")));
        good_check(&g);

        /* Every answered request has its record, in an unbroken sequence; no refused one has. */
        expect_unbroken_log(&t, b.seq, &requests, &failed);
        ASSERT_EQ(requests, answered + 1);
        ASSERT_EQ(failed, 0);

        expect_recovered(&t, &g, &b);
        good_done(&g);
        unmount_audit(&t);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/* ---- a loop device: a block device the test controls ---------------------------------------- */

#ifndef EXT4_IOC_SHUTDOWN
#define EXT4_IOC_SHUTDOWN _IOR('X', 125, uint32_t)
#endif
#ifndef EXT4_GOING_FLAGS_NOLOGFLUSH
#define EXT4_GOING_FLAGS_NOLOGFLUSH 0x2
#endif

static const char *find_mkfs(void) {
        static const char *const paths[] = { "/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4" };

        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                if (access(paths[i], X_OK) == 0)
                        return paths[i];
        return NULL;
}

/* Attaches a new loop device over image (LOOP_CONFIGURE, or the older two-step way), set to
 * detach itself once nothing uses it. Returns its fd; SKIPs if there is no loop device to be
 * had. */
static int loop_attach(int image, char path[static 32]) {
        _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);

        if (ctl < 0)
                SKIP("no /dev/loop-control: %s", strerror(errno));
        for (unsigned attempt = 0; attempt < 10; attempt++) {
                struct loop_config lc = { .fd = (uint32_t) image, .info.lo_flags = LO_FLAGS_AUTOCLEAR };
                struct loop_info64 info = { .lo_flags = LO_FLAGS_AUTOCLEAR };
                int n = ioctl(ctl, LOOP_CTL_GET_FREE), fd;

                if (n < 0)
                        SKIP("LOOP_CTL_GET_FREE: %s", strerror(errno));
                snprintf(path, 32, "/dev/loop%d", n);
                fd = open(path, O_RDWR | O_CLOEXEC);
                if (fd < 0)
                        SKIP("%s: %s (no device node for a new loop device here)", path, strerror(errno));
                if (ioctl(fd, LOOP_CONFIGURE, &lc) == 0)
                        return fd;
                if (errno == EINVAL || errno == ENOTTY) {
                        if (ioctl(fd, LOOP_SET_FD, image) == 0) {
                                if (ioctl(fd, LOOP_SET_STATUS64, &info) == 0)
                                        return fd;
                                (void) ioctl(fd, LOOP_CLR_FD, 0);
                        }
                }
                /* EBUSY: someone else took it meanwhile; try the next free one. */
                close(fd);
        }
        SKIP("no free loop device");
}

/* A fresh ext4 on a loop device over a sparse file, mounted on the audit directory and given
 * to the worker's user. The loop device goes away with the mount. Returns its device number. */
static dev_t mount_loop_ext4(Tsmd *t) {
        const char *mkfs = find_mkfs(), *image_path;
        _cleanup_close_ int image = -EBADF, loop = -EBADF;
        _cleanup_free_ char *err = NULL;
        char dev[32];
        struct stat st;
        uid_t uid;
        gid_t gid;
        int status;

        if (!mkfs)
                SKIP("no mkfs.ext4");
        image_path = strf("%s/audit-%d.img", scratch_dir(), (int) getpid());
        image = open(image_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ASSERT_OK(image);
        ASSERT_OK(ftruncate(image, 32 << 20));
        loop = loop_attach(image, dev);
        status = run_capture((const char *const[]) { mkfs, "-q", "-F", "-E", "nodiscard", dev, NULL }, NULL, &err,
                             30 * USEC_PER_SEC);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                TEST_FAIL("mkfs.ext4 %s: %s", dev, strna(err));
        if (mount(dev, audit_dir(t), "ext4", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                TEST_FAIL("mounting %s on %s: %s", dev, audit_dir(t), strerror(errno));
        worker_ids(t, &uid, &gid);
        ASSERT_OK(chown(audit_dir(t), uid, gid));
        ASSERT_OK(chmod(audit_dir(t), 0750));
        ASSERT_OK(fstat(loop, &st));
        return st.st_rdev;
}

/* ---- a slow disk: the kernel's block-I/O throttle -------------------------------------------- */

typedef struct Throttle {
        char dir[512];    /* the cgroup made for the worker */
        char home[512];   /* cgroup.procs of the one it came from */
        pid_t pid;
} Throttle;

static int write_text(const char *path, const char *text) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        size_t n = strlen(text);

        if (fd < 0)
                return -errno;
        if (write(fd, text, n) != (ssize_t) n)
                return -errno;
        return 0;
}

/* The cgroup path of pid in the hierarchy whose /proc/PID/cgroup line starts with prefix. */
static bool cgroup_of(pid_t pid, const char *prefix, char *buf, size_t size) {
        FILE *f = fopen(strf("/proc/%d/cgroup", (int) pid), "re");
        char line[1024];
        bool found = false;

        ASSERT_NOT_NULL(f);
        while (!found && fgets(line, sizeof(line), f)) {
                char *p = strstr(line, prefix);

                if (p && (p == line || p[-1] == ':')) {
                        p += strlen(prefix);
                        p[strcspn(p, "\n")] = 0;
                        snprintf(buf, size, "%s", p);
                        found = true;
                }
        }
        fclose(f);
        return found;
}

/*
 * Limits the writes of pid to the block device dev to iops per second, by moving pid into a
 * cgroup of its own with the block layer's throttle: cgroup v1 blkio
 * (blkio.throttle.write_iops_device) or cgroup v2 io (io.max, where the worker's cgroup may
 * have children with the io controller). Every fdatasync of the audit log really waits for
 * its writes to be let through. SKIPs where neither is available.
 */
static void throttle_start(Throttle *th, pid_t pid, dev_t dev, unsigned iops) {
        char path[256];
        int r;

        *th = (Throttle) { .pid = pid };
        if (access("/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device", F_OK) == 0 &&
            cgroup_of(pid, "blkio:", path, sizeof(path))) {
                snprintf(th->home, sizeof(th->home), "/sys/fs/cgroup/blkio%s/cgroup.procs", path);
                snprintf(th->dir, sizeof(th->dir), "/sys/fs/cgroup/blkio%s/tsmd-test-%d", streq(path, "/") ? "" : path,
                         (int) getpid());
                if (mkdir(th->dir, 0755) < 0)
                        SKIP("mkdir %s: %s", th->dir, strerror(errno));
                r = write_text(strf("%s/blkio.throttle.write_iops_device", th->dir),
                               strf("%u:%u %u", major(dev), minor(dev), iops));
        } else if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0 && cgroup_of(pid, "0::", path, sizeof(path))) {
                char parent[320];

                snprintf(parent, sizeof(parent), "/sys/fs/cgroup%s", streq(path, "/") ? "" : path);
                snprintf(th->home, sizeof(th->home), "%s/cgroup.procs", parent);
                if (write_text(strf("%s/cgroup.subtree_control", parent), "+io") < 0)
                        SKIP("cannot enable the io controller below %s: %s", parent, strerror(errno));
                snprintf(th->dir, sizeof(th->dir), "%s/tsmd-test-%d", parent, (int) getpid());
                if (mkdir(th->dir, 0755) < 0)
                        SKIP("mkdir %s: %s", th->dir, strerror(errno));
                r = write_text(strf("%s/io.max", th->dir), strf("%u:%u wiops=%u", major(dev), minor(dev), iops));
        } else
                SKIP("no block-I/O throttle (cgroup v1 blkio or v2 io) here");
        if (r < 0) {
                (void) rmdir(th->dir);
                SKIP("cannot throttle %u:%u: %s", major(dev), minor(dev), strerror(-r));
        }
        r = write_text(strf("%s/cgroup.procs", th->dir), strf("%d", (int) pid));
        if (r < 0) {
                (void) rmdir(th->dir);
                SKIP("cannot move the worker into %s: %s", th->dir, strerror(-r));
        }
}

static void throttle_stop(Throttle *th) {
        ASSERT_OK(write_text(th->home, strf("%d", (int) th->pid)));
        ASSERT_OK(rmdir(th->dir));
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

#define N_TIMED 9

/* The median of N_TIMED good requests. */
static uint64_t good_median(Good *g) {
        uint64_t t[N_TIMED];

        for (unsigned i = 0; i < N_TIMED; i++)
                t[i] = good_check(g);
        qsort(t, N_TIMED, sizeof(t[0]), cmp_u64);
        return t[N_TIMED / 2];
}

/* tsmd with its audit log on ext4 on a loop device (which the throttle slows and the shutdown
 * kills), the good client connected, and the baseline taken; then the good client's requests
 * are bounded by bound_usec if it is not 0. Returns the file system's device. */
static dev_t start_on_loop_disk(Tsmd *t, Good *g, Baseline *b, uint64_t bound_usec) {
        dev_t dev;

        tsmd_private_mount_namespace("mounting over the audit directory");
        tsmd_start_config(t, CONF(DEV1 "," DEV2, ""));
        dev = mount_loop_ext4(t);
        worker_restart(t);
        good_connect(t, g, 0);
        *b = baseline_take(t, g);
        if (bound_usec > 0)
                g->bound_usec = bound_usec;
        return dev;
}

/* What a slow disk may cost one request: a few throttled syncs. */
#define SLOW_BOUND_USEC (3 * USEC_PER_SEC)
#define SLOW_IOPS 5
/* How long the good client's thread runs on the slow disk at least. */
#define SLOW_DURING_USEC (1 * USEC_PER_SEC)

/*
 * A slow disk: every audited call waits for its record to be durable, so it takes as long as
 * the disk needs, but no longer (group commit shares one sync among the calls waiting), and
 * nothing else waits: calls tsmd does not audit are answered at once, as the sync runs in a
 * thread of its own. Concurrent VMMs all get through.
 */
TEST(audit_slow_disk) {
        Tsmd t;
        Good g;
        Baseline b;
        Vmm v;
        Throttle th;
        dev_t dev;
        uint64_t fast, slow, start, ping, took;
        size_t requests, failed;
        AsyncCall calls[8] = {};

        dev = start_on_loop_disk(&t, &g, &b, SLOW_BOUND_USEC);
        fast = good_median(&g);
        vmm_attach(&t, &v, DEV1);
        vmm_bind(&t, &v, NULL);

        throttle_start(&th, b.worker, dev, SLOW_IOPS);
        slow = good_median(&g);
        fprintf(stderr, "# audited request, median: %llu us on the disk, %llu us on the throttled disk (%u writes/s)\n",
                (unsigned long long) fast, (unsigned long long) slow, SLOW_IOPS);
        if (slow < 20 * USEC_PER_MSEC) {
                throttle_stop(&th);
                SKIP("the throttle did not slow the disk down (median %llu us): nothing to test",
                     (unsigned long long) slow);
        }

        /* Two VMMs at once, one with 8 requests in flight, the good client's from its thread: all
         * get through, none waits more than the disk makes it, and unaudited calls are answered
         * meanwhile: while those requests still wait for their records to be durable. */
        good_during_start(&g);
        start = now_usec();
        for (unsigned i = 0; i < ELEMENTSOF(calls); i++)
                tsmd_call_async(v.c, G "GuestRequest", version_params(v.ctx, 1, DEV1), 0, &calls[i]);
        tsmd_pump(v.c, 0);
        ping = expect_ping_fast(&t);
        tsmd_pump(v.c, 0);
        for (unsigned i = 0; i < ELEMENTSOF(calls); i++)
                if (calls[i].n > 0)
                        TEST_FAIL("an audited request was answered before Ping (%llu us) on the slow disk",
                                  (unsigned long long) ping);
        expect_ping_fast(&t);
        for (unsigned i = 0; i < ELEMENTSOF(calls); i++) {
                if (!tsmd_async_wait(v.c, &calls[i], 1, SLOW_BOUND_USEC))
                        TEST_FAIL("request %u of 8 not answered within %llu ms on the slow disk", i,
                                  (unsigned long long) (SLOW_BOUND_USEC / USEC_PER_MSEC));
                if (calls[i].errors[0])
                        TEST_FAIL("request %u of 8 on the slow disk: %s", i, calls[i].errors[0]);
                async_call_done(&calls[i]);
        }
        took = usec_since(start);
        fprintf(stderr, "# 8 concurrent requests on the slow disk answered within %llu ms\n",
                (unsigned long long) (took / USEC_PER_MSEC));
        /* The good client's requests go on a few syncs longer on the slow disk on their own. */
        sleep_usec(SLOW_DURING_USEC - MIN(SLOW_DURING_USEC, usec_since(start)));
        good_during_stop(&g, "a slow audit disk");
        good_check(&g);
        /* They shared syncs (group commit), rather than waiting for one each. */
        if (took > 5 * slow)
                TEST_FAIL("8 concurrent requests took %llu ms, a sync %llu ms", (unsigned long long) (took / USEC_PER_MSEC),
                          (unsigned long long) (slow / USEC_PER_MSEC));
        ASSERT_TRUE(tsmd_is_running(&t));
        ASSERT_EQ(tsmd_worker_pid(&t), b.worker);

        throttle_stop(&th);
        g.bound_usec = g.base_bound_usec;
        good_check(&g);

        /* Slow, not lost: every request has its record, in an unbroken sequence. */
        expect_unbroken_log(&t, b.seq, &requests, &failed);
        ASSERT_EQ(requests, g.n_ok - b.n_good + ELEMENTSOF(calls));
        ASSERT_EQ(failed, 0);

        varlink_client_free(v.c);
        expect_recovered(&t, &g, &b);
        good_done(&g);
        unmount_audit(&t);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/* The audit log's file system dies: every write and sync fails with EIO from now on. */
static void audit_fs_shut_down(Tsmd *t) {
        _cleanup_close_ int fd = open(audit_dir(t), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        uint32_t flags = EXT4_GOING_FLAGS_NOLOGFLUSH;

        ASSERT_OK(fd);
        if (ioctl(fd, EXT4_IOC_SHUTDOWN, &flags) < 0)
                SKIP("EXT4_IOC_SHUTDOWN: %s", strerror(errno));
}

/* The administrator's repair: a working file system mounted over the dead one, then a reload
 * (the caller unmounts it before unmount_audit()). */
static void audit_fs_replace(Tsmd *t) {
        uid_t uid;
        gid_t gid;

        worker_ids(t, &uid, &gid);
        if (mount("tsmd-test-audit-new", audit_dir(t), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  strf("size=1m,mode=0750,uid=%u,gid=%u", (unsigned) uid, (unsigned) gid)) < 0)
                TEST_FAIL("mounting a tmpfs on %s: %s", audit_dir(t), strerror(errno));
        ASSERT_TRUE(tsmd_reload(t, CONF(DEV1 "," DEV2, "")));
}

/* Refusals a client provokes once the audit log failed, more than tsmd logs. */
#define FLOOD_REFUSALS 300U

/*
 * A disk that fails: the file system under the audit log shuts down, so every write and sync
 * fails with EIO. The call whose record fails is answered AuditFailed (errno 5), and from
 * then on every audited call, of every client, is refused the same way; tsmd, the same worker,
 * and what it does not audit stay up. An administrator mounts a working file system in its
 * place and reloads: the same worker continues there.
 */
TEST(audit_io_error) {
        Tsmd t;
        Good g;
        Baseline b;
        VarlinkClient *d;
        json_object *r = NULL;
        const char *error;
        int64_t seq;

        (void) start_on_loop_disk(&t, &g, &b, 0);

        audit_fs_shut_down(&t);

        error = tsmd_call(g.c, G "GuestRequest", g.params, &r);
        ASSERT_STREQ(error, E_GUEST("AuditFailed"));
        ASSERT_TRUE(json_matches(r, "{\"errno\":5}")); /* EIO */
        /* Failed: what is not audited is answered throughout, telling every client so, until a
         * working file system is in place, a reload on the dead one included. */
        good_during_start_unaudited(&g, "failed");
        /* It ran, and its record is lost: tsmd's log says what it would have said. */
        ASSERT_EQ(tsmd_log_count(&t, "Audit log failed after guest-request ran, answering AuditFailed"), 1U);
        d = tsmd_connect_guest(&t);
        for (unsigned i = 0; i < 10; i++) {
                CALL_ERROR(g.c, G "GuestRequest", g.params, E_GUEST("AuditFailed"), NULL);
                CALL_ERROR(d, G "OpenContext", NULL, E_GUEST("AuditFailed"), NULL);
                expect_ping_fast(&t);
        }
        varlink_client_free(d);
        /* Refused before they ran, for a log that failed: each named in tsmd's log. */
        ASSERT_EQ(tsmd_log_count(&t, REFUSED_UNRECORDED("guest-request", "Input/output error")), 10U);
        ASSERT_EQ(tsmd_log_count(&t, REFUSED_UNRECORDED("open-context", "Input/output error")), 10U);
        /* But a client that keeps asking does not flood the journal with those lines: at most
         * UNRECORDED_REFUSAL_LOG_BURST of them in UNRECORDED_REFUSAL_LOG_INTERVAL_USEC. */
        {
                uint64_t start = now_usec(), intervals;
                unsigned logged;

                for (unsigned i = 0; i < FLOOD_REFUSALS; i++)
                        CALL_ERROR(g.c, G "GuestRequest", g.params, E_GUEST("AuditFailed"), NULL);
                intervals = (now_usec() - start) / (10 * USEC_PER_SEC) + 2; /* the 20 above: one more */
                logged = tsmd_log_count(&t, "the audit log cannot take a record");
                fprintf(stderr, "# %u refusals logged of %u\n", logged, 20 + FLOOD_REFUSALS);
                ASSERT_TRUE(logged <= intervals * 50);
                ASSERT_TRUE(logged < 20 + FLOOD_REFUSALS);
                expect_ping_fast(&t);
        }
        /* The admin still gets answers, unrecorded: it is who repairs the log. But nothing it
         * asks that changes the host is made unrecorded. */
        d = tsmd_connect(&t);
        CALL_OK(d, "io.tsmd.Admin.ListBackends", NULL);
        CALL_ERROR(d, "io.tsmd.Admin.ConnectDevice", "{\"pciAddress\":\"" DEV1 "\",\"tsm\":\"tsm0\"}",
                   "io.tsmd.Admin.AuditFailed", "{\"errno\":5}");
        CALL_ERROR(d, "io.tsmd.Admin.DisconnectDevice", "{\"pciAddress\":\"" DEV1 "\"}", "io.tsmd.Admin.AuditFailed",
                   "{\"errno\":5}");
        varlink_client_free(d);

        /* A reload tries the log again, and it is still dead: refused, still by name. */
        ASSERT_TRUE(tsmd_reload(&t, CONF(DEV1 "," DEV2, "")));
        CALL_ERROR(g.c, G "GuestRequest", g.params, E_GUEST("AuditFailed"), NULL);

        ASSERT_TRUE(tsmd_is_running(&t));
        ASSERT_EQ(tsmd_worker_pid(&t), b.worker);
        expect_ping_fast(&t);
        good_during_stop(&g, "a failed audit disk");

        audit_fs_replace(&t);
        r = CALL_OK(g.c, G "GuestRequest", g.params);
        seq = JINT(r, "auditSequence");
        ASSERT_TRUE(seq > b.seq);
        d = tsmd_connect_guest(&t);
        CALL_OK(d, G "OpenContext", NULL);
        varlink_client_free(d);
        ASSERT_EQ(tsmd_worker_pid(&t), b.worker);
        /* The new log holds them, numbered on from before the failure. */
        ASSERT_TRUE(tsmd_audit_last_seq(&t) > seq);

        /* The new log has the fds the old one had, and nothing else stayed behind. */
        expect_recovered(&t, &g, &b);
        good_done(&g);
        (void) umount2(audit_dir(&t), MNT_DETACH); /* the tmpfs; unmount_audit() the ext4 */
        unmount_audit(&t);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/* How long the test gives tsmd to run a request, and to see a hangup; the slow disk's pace. */
#define HANGUP_STEP_USEC (50 * USEC_PER_MSEC)
#define HANGUP_IOPS 2
#define HANGUP_ATTEMPTS 10

/*
 * A disk that fails under the record of a client that is gone: the VMM's request is answered
 * by its device while the audit thread waits in a slow sync for another record, the VMM hangs
 * up, and then the disk dies, so the record fails with nobody left to answer. tsmd logs what
 * the record would have said (with the VMM's identity, kept with the call) and carries on,
 * the same worker, refusing by name until the disk is replaced.
 */
TEST(audit_io_error_after_hangup) {
        Tsmd t;
        Good g;
        Baseline b;
        Vmm v;
        Throttle th;
        dev_t dev;
        AsyncCall busy = {}, late = {};
        _cleanup_free_ char *log = NULL;
        const char *line;

        dev = start_on_loop_disk(&t, &g, &b, SLOW_BOUND_USEC);
        vmm_attach(&t, &v, DEV1);
        vmm_bind(&t, &v, NULL);

        /* A record of the good client's stuck in a slow sync (the throttle lets a burst
         * through after a pause, so not every sync is slow). What is not audited is answered
         * throughout, the slow disk and its death (the log's state changes meanwhile). */
        throttle_start(&th, b.worker, dev, HANGUP_IOPS);
        good_during_start_unaudited(&g, NULL);
        for (unsigned i = 0;; i++) {
                if (i == HANGUP_ATTEMPTS) {
                        throttle_stop(&th);
                        SKIP("the throttle did not slow a sync down in %u attempts: nothing to test", i);
                }
                tsmd_call_async(g.c, G "GuestRequest", g.params, 0, &busy);
                tsmd_pump(g.c, HANGUP_STEP_USEC);
                if (busy.n == 0)
                        break;
                ASSERT_NULL(busy.errors[0]);
                async_call_done(&busy);
        }

        /* Meanwhile the VMM's request is answered by its device and its record waits behind. */
        tsmd_call_async(v.c, G "GuestRequest", version_params(v.ctx, 1, DEV1), 0, &late);
        tsmd_pump(v.c, HANGUP_STEP_USEC);
        ASSERT_EQ(late.n, 0u);
        async_call_done(&late);
        varlink_client_free(v.c);
        sleep_usec(HANGUP_STEP_USEC);
        audit_fs_shut_down(&t);
        throttle_stop(&th);

        /* The VMM's record is lost with nobody to answer, and said so with who it was. */
        ASSERT_TRUE(tsmd_wait_log(&t, "\"pci\":\"" DEV1 "\"", 1, TSMD_WAIT_USEC));
        log = tsmd_read_log(&t);
        line = strstr(log, "\"pci\":\"" DEV1 "\"");
        while (line > log && line[-1] != '\n')
                line--;
        fprintf(stderr, "# %.*s\n", (int) strcspn(line, "\n"), line);
        ASSERT_NOT_NULL(strstr(line, "Audit log failed after guest-request ran"));
        ASSERT_NOT_NULL(strstr(line, strf("\"uid\":%u", (unsigned) getuid())));
        ASSERT_NOT_NULL(strstr(line, strf("\"pid\":%d", (int) getpid())));

        ASSERT_TRUE(tsmd_async_wait(g.c, &busy, 1, SLOW_BOUND_USEC));
        async_call_done(&busy);
        ASSERT_TRUE(tsmd_is_running(&t));
        ASSERT_EQ(tsmd_worker_pid(&t), b.worker);
        expect_ping_fast(&t);
        CALL_ERROR(g.c, G "GuestRequest", g.params, E_GUEST("AuditFailed"), NULL);
        good_during_stop(&g, "a slow audit disk that died under a hung-up client's record");

        audit_fs_replace(&t);
        expect_recovered(&t, &g, &b);
        good_done(&g);
        (void) umount2(audit_dir(&t), MNT_DETACH);
        unmount_audit(&t);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/* <linux/fs.h>'s, which clashes with <sys/mount.h>. */
#ifndef FIFREEZE
#define FIFREEZE _IOWR('X', 119, int)
#define FITHAW _IOWR('X', 120, int)
#endif

/* Freezes the audit file system: writes to it wait until it is thawed, a disk that stopped
 * answering. A child thaws it after STUCK_MAX_USEC whatever happens, so that a worker whose
 * loop waits for the disk fails the test rather than hanging it. Returns the child. */
#define STUCK_MAX_USEC (4 * USEC_PER_SEC)

static int audit_fs_ioctl(Tsmd *t, unsigned long request) {
        _cleanup_close_ int fd = open(audit_dir(t), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0 || ioctl(fd, request, 0) < 0)
                return -errno;
        return 0;
}

static pid_t audit_fs_freeze(Tsmd *t) {
        pid_t pid;
        int r;

        r = audit_fs_ioctl(t, FIFREEZE);
        if (r < 0)
                SKIP("FIFREEZE: %s", strerror(-r));
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                sleep_usec(STUCK_MAX_USEC);
                (void) audit_fs_ioctl(t, FITHAW);
                _exit(0);
        }
        return pid;
}

static void audit_fs_thaw(Tsmd *t, pid_t safety) {
        int status;

        (void) audit_fs_ioctl(t, FITHAW); /* EINVAL if the child did already */
        (void) kill(safety, SIGKILL);
        ASSERT_EQ(waitpid(safety, &status, 0), safety);
}

/*
 * A disk that stops answering under a record (its file system frozen, so the audit thread's
 * write waits) and a reload meanwhile, by SIGHUP and by io.tsmd.Service.Reload: the audit log's
 * reopen waits behind the record in the audit thread, not in the worker's loop, so Ping is
 * answered at once, as before the reload. The Reload call is answered when the reopen is done,
 * after the disk is back; then the record, the reloads and the good client's requests go on,
 * the sequence unbroken, with the same worker.
 */
TEST(audit_reload_on_stuck_disk) {
        Tsmd t;
        Good g;
        Baseline b;
        AsyncCall busy = {}, reload = {};
        VarlinkClient *admin;
        unsigned reloads;
        size_t requests, failed;
        pid_t safety;

        (void) start_on_loop_disk(&t, &g, &b, 0);
        reloads = tsmd_log_count(&t, "Configuration reloaded from");
        admin = tsmd_connect(&t);

        safety = audit_fs_freeze(&t);
        /* Every audited call waits for the disk (the good client's own below): what does not
         * need it is answered throughout, the log's state still "ok" (stuck is not failed). */
        good_during_start_unaudited(&g, "ok");
        tsmd_call_async(g.c, G "GuestRequest", g.params, 0, &busy);
        tsmd_pump(g.c, 100 * USEC_PER_MSEC);
        ASSERT_EQ(busy.n, 0u); /* its record waits for the disk */

        tsmd_kill(&t, SIGHUP);
        tsmd_call_async(admin, "io.tsmd.Service.Reload", NULL, 0, &reload);
        tsmd_pump(admin, 100 * USEC_PER_MSEC);
        for (unsigned i = 0; i < 5; i++)
                expect_ping_fast(&t);
        tsmd_pump(admin, 0);
        ASSERT_EQ(reload.n, 0u); /* over when the reopen is */
        ASSERT_EQ(busy.n, 0u);
        ASSERT_EQ(tsmd_log_count(&t, "Configuration reloaded from"), reloads);
        good_during_stop(&g, "a stuck audit disk and reloads");

        audit_fs_thaw(&t, safety);
        ASSERT_TRUE(tsmd_async_wait(g.c, &busy, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(busy.errors[0]);
        ASSERT_TRUE(tsmd_async_wait(admin, &reload, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(reload.errors[0]);
        ASSERT_TRUE(tsmd_wait_log(&t, "Configuration reloaded from", reloads + 2, TSMD_WAIT_USEC));
        async_call_done(&busy);
        async_call_done(&reload);
        varlink_client_free(admin);

        good_check(&g);
        expect_unbroken_log(&t, b.seq, &requests, &failed);
        ASSERT_GE(requests, 2u);
        ASSERT_EQ(failed, 0u);
        expect_recovered(&t, &g, &b);
        good_done(&g);
        unmount_audit(&t);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

TEST_MAIN();
