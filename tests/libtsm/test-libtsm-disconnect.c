/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libtsm when tsmd goes away: SIGKILL while an asynchronous request is in flight, while a
 * blocking call waits (killed from a second thread), while idle, a blocking call timing out,
 * a WatchEvents stream ending; then tsmd restarted and tsm_client_reconnect(). Never a hang
 * or a crash: -ECONNRESET, then -ENOTCONN until a reconnect. A blocking call timing out keeps
 * the connection and what it holds. And a restart of tsmd's worker
 * alone, after which the context is reclaimed by its token (by a retry too, when the reclaim
 * timed out). Runs in: tests.
 */

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include "libtsm-test-util.h"
#include "tdisp.h"
#include "tsmd-instance.h"

#define WAIT_USEC (10 * 1000000ULL)
#define LATENCY "EmulatedLatencyUSec=500000\n"

typedef struct Result {
        unsigned n_callbacks, n_destroys;
        int error;
        char error_name[128];
} Result;

static void on_response(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        Result *r = userdata;

        r->n_callbacks++;
        r->error = error;
        snprintf(r->error_name, sizeof(r->error_name), "%s", tsm_client_get_error_name(c) ?: "");
}

static void on_destroy(void *userdata) {
        Result *r = userdata;

        r->n_destroys++;
}

/* After tsmd came back: a new connection works for the whole flow. */
static void check_works_after_reconnect(TsmdInstance *t, TsmClient *c) {
        uint8_t req[64], resp[256];
        size_t len = tdisp_request(DEV0, TDISP_MSG_GET_VERSION, NULL, 0, req, sizeof(req)), resp_len;
        uint64_t ctx;

        (void) t;
        ASSERT_OK(tsm_client_reconnect(c));
        ASSERT_NO_ERROR_NAME(c);
        ctx = setup_device(c, DEV0, 1, NULL);
        ASSERT_OK(tsm_guest_request(c, ctx, 1, "info", req, len, resp, sizeof(resp), &resp_len));
        ASSERT_EQ(tdisp_response_type(resp, resp_len), TDISP_MSG_VERSION);
}

TEST(kill_during_async_request) {
        TsmdInstance t;
        TsmClient *c;
        Result res = {};
        uint8_t req[64];
        size_t len;
        uint64_t ctx, start;
        int process = 0;

        tsmd_instance_start(&t, LATENCY);
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ctx = setup_device(c, DEV0, 1, NULL);
        len = tdisp_request(DEV0, TDISP_MSG_GET_VERSION, NULL, 0, req, sizeof(req));
        ASSERT_OK(tsm_guest_request_async(c, ctx, 1, "info", req, len, 256, on_response, &res, on_destroy));
        ASSERT_OK(tsm_client_process(c)); /* sent; the answer takes 500 ms */

        /* Wait until tsmd has the request in hand, then kill it. */
        {
                struct timespec ts = { .tv_nsec = 100 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        ASSERT_EQ(res.n_callbacks, 0);
        tsmd_instance_kill(&t, SIGKILL);

        start = test_now_usec();
        ASSERT_TRUE(pump_until(c, &res.n_destroys, 1, WAIT_USEC, &process));
        ASSERT_LE(test_now_usec() - start, 2 * 1000000ULL);
        ASSERT_ERRNO(process, ECONNRESET);
        ASSERT_EQ(res.n_callbacks, 1);
        ASSERT_EQ(res.n_destroys, 1);
        ASSERT_ERRNO(res.error, ECONNRESET);
        ASSERT_STREQ(res.error_name, "io.tsmd.Disconnected");

        /* From now on: not connected, and nothing to wait for. */
        ASSERT_ERRNO(tsm_client_process(c), ENOTCONN);
        ASSERT_EQ(tsm_client_get_events(c), 0);
        ASSERT_ERRNO(tsm_device_get_state(c, ctx, 1, NULL, NULL), ENOTCONN);
        ASSERT_ERROR_NAME(c, "io.tsmd.Disconnected");
        ASSERT_ERRNO(tsm_guest_request_async(c, ctx, 1, "info", req, len, 256, on_response, &res, on_destroy), ENOTCONN);
        ASSERT_EQ(res.n_destroys, 1);

        tsmd_instance_restart(&t);
        check_works_after_reconnect(&t, c);
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

typedef struct Killer {
        pid_t pid;
        unsigned delay_msec;
} Killer;

static void *killer_thread(void *userdata) {
        Killer *k = userdata;
        struct timespec ts = { .tv_sec = k->delay_msec / 1000, .tv_nsec = (long) (k->delay_msec % 1000) * 1000000L };

        nanosleep(&ts, NULL);
        (void) kill(k->pid, SIGKILL);
        return NULL;
}

TEST(kill_during_blocking_call) {
        TsmdInstance t;
        TsmClient *c;
        Killer k;
        pthread_t thread;
        uint8_t req[64], resp[256];
        size_t len;
        uint64_t ctx, start;

        tsmd_instance_start(&t, LATENCY);
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ctx = setup_device(c, DEV0, 1, NULL);
        len = tdisp_request(DEV0, TDISP_MSG_GET_VERSION, NULL, 0, req, sizeof(req));

        k = (Killer){ .pid = t.pid, .delay_msec = 150 };
        ASSERT_EQ(pthread_create(&thread, NULL, killer_thread, &k), 0);
        start = test_now_usec();
        ASSERT_ERRNO(tsm_guest_request(c, ctx, 1, "info", req, len, resp, sizeof(resp), NULL), ECONNRESET);
        ASSERT_LE(test_now_usec() - start, 2 * 1000000ULL);
        ASSERT_ERROR_NAME(c, "io.tsmd.Disconnected");
        ASSERT_EQ(pthread_join(thread, NULL), 0);
        ASSERT_ERRNO(tsm_device_get_state(c, ctx, 1, NULL, NULL), ENOTCONN);

        /* Reap the killed tsmd (already dead: SIGCONT does no harm), start a new one. */
        tsmd_instance_kill(&t, SIGCONT);
        tsmd_instance_restart(&t);
        check_works_after_reconnect(&t, c);
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

/* A blocking call that times out is abandoned, not the connection: hanging up would make tsmd
 * release the VM's contexts and unbind its devices for one call slower than the VMM's timeout
 * (a kernel TSM's Bind). The binding stays, and the late reply is dropped when it comes: the
 * next call gets its own. */
TEST(blocking_call_timeout) {
        TsmdInstance t;
        TsmClient *c;
        TsmTdiState state;
        uint8_t req[64], resp[256];
        size_t len;
        uint64_t ctx, start;
        bool bound = false;

        tsmd_instance_start(&t, LATENCY);
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ASSERT_OK(tsm_client_set_timeout(c, 5 * 1000000ULL));
        ctx = setup_device(c, DEV0, 1, NULL);
        ASSERT_OK(tsm_device_bind(c, ctx, 1, NULL));
        len = tdisp_request(DEV0, TDISP_MSG_GET_VERSION, NULL, 0, req, sizeof(req));

        ASSERT_OK(tsm_client_set_timeout(c, 100 * 1000));
        start = test_now_usec();
        ASSERT_ERRNO(tsm_guest_request(c, ctx, 1, "info", req, len, resp, sizeof(resp), NULL), ETIMEDOUT);
        ASSERT_LE(test_now_usec() - start, 400 * 1000ULL);
        ASSERT_ERROR_NAME(c, "io.tsmd.TimedOut");
        ASSERT_TRUE(tsm_client_get_fd(c) >= 0);

        /* Waiting longer this time: still bound; GetDeviceState's answer, not the request's. */
        ASSERT_OK(tsm_client_set_timeout(c, 5 * 1000000ULL));
        ASSERT_OK(tsm_device_get_state(c, ctx, 1, &state, &bound));
        ASSERT_NO_ERROR_NAME(c);
        ASSERT_TRUE(bound);
        ASSERT_EQ(state, TSM_TDI_STATE_CONFIG_LOCKED);
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

/* The VMM review's case: two devices bound on one connection, a guest request to the first
 * hangs in its device (fault=timeout: tsmd holds it for RequestTimeoutUSec=), and the calls
 * about the healthy second one wait behind it (replies come in call order) and time out too.
 * Once 8 are abandoned libtsm refuses further blocking calls (-EINPROGRESS) rather than hang
 * up, which made tsmd release both contexts and unbind both devices; when tsmd answers the
 * hung request, calls work again, both devices still bound. */
#define HUNG_CONFIG(fault) "EmulatedDevices=" DEV0 fault "," DEV1 "\nRequestTimeoutUSec=6000000\n"
TEST(abandoned_calls_behind_a_hung_request_keep_the_connection) {
        uint8_t req[64], resp[256];
        size_t len = tdisp_request(DEV0, TDISP_MSG_GET_VERSION, NULL, 0, req, sizeof(req));
        TsmdInstance t;
        TsmClient *c;
        uint64_t ctx0, ctx1, start;
        bool bound = false;
        unsigned n_refused = 0;
        int r;

        tsmd_instance_start(&t, HUNG_CONFIG(""));
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ASSERT_OK(tsm_client_set_timeout(c, WAIT_USEC));
        ctx0 = setup_device(c, DEV0, 1, NULL);
        ctx1 = setup_device(c, DEV1, 2, NULL);
        tsmd_instance_reload(&t, HUNG_CONFIG(":fault=timeout"));

        ASSERT_OK(tsm_client_set_timeout(c, 200 * 1000));
        ASSERT_ERRNO(tsm_guest_request(c, ctx0, 1, "info", req, len, resp, sizeof(resp), NULL), ETIMEDOUT);
        for (unsigned i = 1; i < 8; i++)
                ASSERT_ERRNO(tsm_device_get_state(c, ctx1, 2, NULL, &bound), ETIMEDOUT);
        ASSERT_ERRNO(tsm_device_get_state(c, ctx1, 2, NULL, &bound), EINPROGRESS);
        ASSERT_NO_ERROR_NAME(c);
        ASSERT_TRUE(tsm_client_get_fd(c) >= 0);

        /* tsmd answers the request (Timeout) after RequestTimeoutUSec=, then the others. */
        start = test_now_usec();
        for (;;) {
                r = tsm_device_get_state(c, ctx1, 2, NULL, &bound);
                if (r != -EINPROGRESS)
                        break;
                n_refused++;
                ASSERT_LE(test_now_usec() - start, WAIT_USEC);
                (void) poll(NULL, 0, 50);
        }
        ASSERT_OK(r);
        ASSERT_TRUE(n_refused > 0);
        ASSERT_TRUE(bound);
        ASSERT_OK(tsm_client_set_timeout(c, WAIT_USEC));
        ASSERT_OK(tsm_device_get_state(c, ctx0, 1, NULL, &bound));
        ASSERT_TRUE(bound);
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

/* An OpenContext libtsm abandoned (tsmd's worker stopped past the timeout) made a context the
 * VMM never learns of: libtsm closes it when the late answer comes, so that it does not hold
 * one of MaxContextsPerClient= (1 here) until the connection ends. */
TEST(abandoned_open_context_releases_its_context) {
        TsmdInstance t;
        TsmClient *c;
        uint64_t ctx, start;
        pid_t worker;
        int fd = -1, r;

        tsmd_instance_start(&t, "\n[Guest]\nMaxContextsPerClient=1\n");
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ASSERT_OK(tsm_client_set_timeout(c, WAIT_USEC));
        ASSERT_OK(tsm_context_open(c, &ctx, &fd)); /* connected and served */
        ASSERT_OK(tsm_context_close(c, ctx));
        close(fd);
        fd = -1;

        worker = tsmd_instance_worker_pid(&t);
        ASSERT_TRUE(worker > 0);
        ASSERT_OK(kill(worker, SIGSTOP));
        ASSERT_OK(tsm_client_set_timeout(c, 200 * 1000));
        ASSERT_ERRNO(tsm_context_open(c, &ctx, &fd), ETIMEDOUT);
        ASSERT_OK(kill(worker, SIGCONT));

        /* The late answer is read by the next call (or the loop): the context it made is
         * closed, after which a context of our own fits again. */
        ASSERT_OK(tsm_client_set_timeout(c, WAIT_USEC));
        start = test_now_usec();
        for (;;) {
                r = tsm_context_open(c, &ctx, &fd);
                if (r != -EUSERS)
                        break;
                ASSERT_ERROR_NAME(c, "io.tsmd.Guest.LimitReached");
                ASSERT_LE(test_now_usec() - start, WAIT_USEC);
                (void) poll(NULL, 0, 50);
        }
        ASSERT_OK(r);
        ASSERT_OK(tsm_context_close(c, ctx));
        close(fd);
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

/* A reclaim after a worker restart that libtsm abandoned (the new worker stopped past the
 * timeout) took the context back all the same, its vDevice bound, and renewed its token: the
 * VMM's retry with the token it has got -ENOENT, and its only way out was a reconnect, which
 * released the context and unbound the device. The retry gets the context (its iommufd the same),
 * bound and serving; once: a further retry is tsmd's to refuse. */
/* A reclaimed context is the one the VMM had: the same iommufd (fd2, which this closes), its
 * vDevice 1 still bound, a guest request served. */
static void assert_context_back(TsmClient *c, uint64_t ctx, int fd, int fd2) {
        uint8_t req[64], resp[256];
        size_t len = tdisp_request(DEV0, TDISP_MSG_GET_VERSION, NULL, 0, req, sizeof(req)), resp_len;
        TsmTdiState state;
        struct stat a, b;
        bool bound;

        ASSERT_OK(fstat(fd, &a));
        ASSERT_OK(fstat(fd2, &b));
        ASSERT_TRUE(a.st_dev == b.st_dev && a.st_ino == b.st_ino); /* the same iommufd */
        close(fd2);
        ASSERT_OK(tsm_device_get_state(c, ctx, 1, &state, &bound));
        ASSERT_TRUE(bound);
        ASSERT_EQ(state, TSM_TDI_STATE_CONFIG_LOCKED);
        ASSERT_OK(tsm_guest_request(c, ctx, 1, "info", req, len, resp, sizeof(resp), &resp_len));
        ASSERT_EQ(tdisp_response_type(resp, resp_len), TDISP_MSG_VERSION);
}

TEST(abandoned_reclaim_late_success_answers_the_retry) {
        _cleanup_free_ char *token = NULL, *renewed = NULL;
        TsmdInstance t;
        TsmClient *c;
        TsmTdiState state;
        uint64_t ctx, other;
        bool bound = false;
        pid_t worker;
        int fd, fd2 = -1;

        tsmd_instance_start(&t, NULL);
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ASSERT_OK(tsm_client_set_timeout(c, WAIT_USEC));
        ctx = setup_device(c, DEV0, 1, &fd);
        ASSERT_OK(tsm_context_get_reclaim_token(c, ctx, &token));
        tsmd_instance_kill_worker(&t);
        ASSERT_ERRNO(tsm_device_get_state(c, ctx, 1, &state, &bound), ECONNRESET);
        ASSERT_OK(tsm_client_reconnect(c));
        ASSERT_ERRNO(tsm_context_reclaim(c, "not-a-token", &other, NULL), ENOENT); /* served */

        worker = tsmd_instance_worker_pid(&t);
        ASSERT_TRUE(worker > 0);
        ASSERT_OK(kill(worker, SIGSTOP));
        ASSERT_OK(tsm_client_set_timeout(c, 200 * 1000));
        ctx = UINT64_MAX;
        ASSERT_ERRNO(tsm_context_reclaim(c, token, &ctx, &fd2), ETIMEDOUT);
        ASSERT_EQ(ctx, UINT64_MAX);
        ASSERT_EQ(fd2, -1);
        ASSERT_OK(kill(worker, SIGCONT));

        /* The late answer is read by the retry's wait, or before it (tsm_client_process()). */
        ASSERT_OK(tsm_client_set_timeout(c, WAIT_USEC));
        ASSERT_OK(tsm_context_reclaim(c, token, &ctx, &fd2));
        ASSERT_NO_ERROR_NAME(c);
        assert_context_back(c, ctx, fd, fd2);
        ASSERT_OK(tsm_context_get_reclaim_token(c, ctx, &renewed));
        ASSERT_FALSE(streq(renewed, token));

        ASSERT_ERRNO(tsm_context_reclaim(c, token, &other, NULL), ENOENT);
        ASSERT_ERROR_NAME(c, "io.tsmd.Guest.ReclaimRefused");
        ASSERT_OK(tsm_device_get_state(c, ctx, 1, &state, &bound));
        ASSERT_TRUE(bound);
        ASSERT_OK(tsm_context_close(c, ctx));
        close(fd);
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

TEST(kill_while_idle) {
        TsmdInstance t;
        TsmClient *c;
        uint64_t ctx;

        tsmd_instance_start(&t, NULL);
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ctx = setup_device(c, DEV0, 1, NULL);
        tsmd_instance_kill(&t, SIGKILL);

        /* Nothing pending: the loop has nothing to wait for, and the next call finds out. */
        ASSERT_EQ(tsm_client_get_events(c), 0);
        ASSERT_ERRNO(tsm_device_bind(c, ctx, 1, NULL), ECONNRESET);
        ASSERT_ERROR_NAME(c, "io.tsmd.Disconnected");
        ASSERT_ERRNO(tsm_device_bind(c, ctx, 1, NULL), ENOTCONN);

        /* No tsmd: the reconnect fails, and the client is left without a connection. */
        ASSERT_TRUE(tsm_client_reconnect(c) < 0);
        ASSERT_ERRNO(tsm_client_get_fd(c), ENOTCONN);
        ASSERT_EQ(tsm_client_get_events(c), 0);
        ASSERT_ERRNO(tsm_client_process(c), ENOTCONN);
        ASSERT_ERRNO(tsm_context_open(c, &ctx, NULL), ENOTCONN);
        ASSERT_ERROR_NAME(c, "io.tsmd.Disconnected");

        tsmd_instance_restart(&t);
        check_works_after_reconnect(&t, c);
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

/* A worker restart while the VMM is idle: the event loop still has the fd, poll() reports the
 * hang-up whatever events were asked for, and tsm_client_process() must say the connection is
 * lost, or the VMM learns it only at its next call (maybe after ReclaimTimeoutSec, its contexts
 * gone), and a level-triggered loop spins on the hang-up meanwhile. */
TEST(hangup_while_idle_seen_by_process) {
        TsmdInstance t;
        TsmClient *c;
        uint64_t ctx;
        _cleanup_free_ char *token = NULL;
        struct pollfd p;

        tsmd_instance_start(&t, NULL);
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ctx = setup_device(c, DEV0, 1, NULL);
        ASSERT_OK(tsm_context_get_reclaim_token(c, ctx, &token));
        tsmd_instance_kill_worker(&t);

        ASSERT_EQ(tsm_client_get_events(c), 0);
        p = (struct pollfd){ .fd = tsm_client_get_fd(c), .events = (short) tsm_client_get_events(c) };
        ASSERT_GE(p.fd, 0);
        ASSERT_EQ(poll(&p, 1, 5000), 1);
        ASSERT_TRUE(p.revents & POLLHUP);
        ASSERT_ERRNO(tsm_client_process(c), ECONNRESET);
        ASSERT_ERROR_NAME(c, "io.tsmd.Disconnected");
        /* The fd stays the loop's until the reconnect, hung up. */
        ASSERT_EQ(tsm_client_get_fd(c), p.fd);
        ASSERT_ERRNO(tsm_client_process(c), ENOTCONN);

        /* Noticed in time: the context comes back. */
        ASSERT_OK(tsm_client_reconnect(c));
        ASSERT_OK(tsm_context_reclaim(c, token, &ctx, NULL));
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

typedef struct Watch {
        unsigned n_subscribed, n_ended, n_destroys;
        int end_error;
} Watch;

static void on_event(TsmClient *c, int error, const TsmEvent *event, void *userdata) {
        Watch *w = userdata;

        if (error < 0) {
                w->n_ended++;
                w->end_error = error;
        } else if (!event)
                w->n_subscribed++;
}

static void on_watch_destroy(void *userdata) {
        Watch *w = userdata;

        w->n_destroys++;
}

/* A watch whose process holds no context keeps nothing: with tsmd full, it is closed for a
 * newcomer as idle, and the stream ends -ECONNABORTED, named IdleTimeout (its documents said a
 * bare close, -ECONNRESET, and only for connections holding no event stream). */
TEST(watch_holding_nothing_ends_aborted_when_tsmd_is_full) {
        TsmdInstance t;
        TsmClient *c, *other, *newcomer;
        Watch w = {};
        char *reply = NULL;

        tsmd_instance_start(&t, "[Varlink]\nMaxConnections=2\nIdleTimeoutSec=1\n");
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ASSERT_OK(tsm_client_watch_events(c, on_event, &w, on_watch_destroy));
        ASSERT_TRUE(pump_until(c, &w.n_subscribed, 1, WAIT_USEC, NULL));
        ASSERT_OK(tsm_client_connect(t.guest_socket, &other));
        ASSERT_OK(tsm_client_call_json(other, "io.tsmd.Service.Ping", NULL, &reply));
        free(reply);
        usleep(1300 * 1000); /* both idle past IdleTimeoutSec=; the watch longest */

        ASSERT_OK(tsm_client_connect(t.guest_socket, &newcomer));
        ASSERT_OK(tsm_client_call_json(newcomer, "io.tsmd.Service.Ping", NULL, &reply));
        free(reply);
        ASSERT_TRUE(pump_until(c, &w.n_destroys, 1, WAIT_USEC, NULL));
        ASSERT_EQ(w.n_ended, 1);
        ASSERT_ERRNO(w.end_error, ECONNABORTED);
        ASSERT_ERROR_NAME(c, "io.tsmd.IdleTimeout");
        tsm_client_free(newcomer);
        tsm_client_free(other);
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

TEST(kill_during_watch) {
        TsmdInstance t;
        TsmClient *c;
        Watch w = {};
        int process = 0;

        tsmd_instance_start(&t, NULL);
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ASSERT_OK(tsm_client_watch_events(c, on_event, &w, on_watch_destroy));
        ASSERT_TRUE(pump_until(c, &w.n_subscribed, 1, WAIT_USEC, NULL));

        tsmd_instance_kill(&t, SIGKILL);
        ASSERT_TRUE(pump_until(c, &w.n_destroys, 1, WAIT_USEC, &process));
        ASSERT_ERRNO(process, ECONNRESET);
        ASSERT_EQ(w.n_ended, 1);
        ASSERT_ERRNO(w.end_error, ECONNRESET);
        ASSERT_EQ(w.n_destroys, 1);

        tsmd_instance_restart(&t);
        check_works_after_reconnect(&t, c);
        tsm_client_free(c);
        ASSERT_EQ(w.n_destroys, 1);
        tsmd_instance_done(&t);
}

/* A VMM whose tsmd's worker restarts: the call finds the connection gone, the VMM reconnects and
 * takes its context back by its token, with the vDevice still bound and serving; the token
 * works once, for this context only: the reclaim renews it, and the next restart's reclaim
 * takes the new one and refuses the old as an unknown one. */
TEST(reclaim_after_worker_restart) {
        _cleanup_free_ char *token = NULL, *again = NULL;
        TsmdInstance t;
        TsmClient *c;
        TsmTdiState state;
        uint64_t ctx, other;
        bool bound;
        int fd, fd2;

        tsmd_instance_start(&t, NULL);
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ctx = setup_device(c, DEV0, 1, &fd);
        ASSERT_OK(tsm_device_bind(c, ctx, 1, NULL));
        ASSERT_OK(tsm_context_get_reclaim_token(c, ctx, &token));
        ASSERT_TRUE(strlen(token) > 0);
        ASSERT_ERRNO(tsm_context_get_reclaim_token(c, ctx + 1000, &again), ENOENT);

        tsmd_instance_kill_worker(&t);
        ASSERT_ERRNO(tsm_device_get_state(c, ctx, 1, &state, &bound), ECONNRESET);
        ASSERT_OK(tsm_client_reconnect(c));
        /* A new connection: the old handles and their tokens are void. */
        ASSERT_ERRNO(tsm_context_get_reclaim_token(c, ctx, &again), ENOENT);
        ASSERT_ERRNO(tsm_context_reclaim(c, "not-a-token", &other, NULL), ENOENT);
        ASSERT_ERROR_NAME(c, "io.tsmd.Guest.ReclaimRefused");

        ASSERT_OK(tsm_context_reclaim(c, token, &ctx, &fd2));
        assert_context_back(c, ctx, fd, fd2);

        /* Taken: not a second time. The token is renewed: a new one for the next restart. */
        ASSERT_ERRNO(tsm_context_reclaim(c, token, &other, NULL), ENOENT);
        ASSERT_OK(tsm_context_get_reclaim_token(c, ctx, &again));
        ASSERT_EQ(strlen(again), strlen(token));
        ASSERT_FALSE(streq(again, token));

        /* The next restart: the old token is refused as an unknown one, the new one reclaims
         * (and is renewed in turn). */
        tsmd_instance_kill_worker(&t);
        ASSERT_ERRNO(tsm_device_get_state(c, ctx, 1, &state, &bound), ECONNRESET);
        ASSERT_OK(tsm_client_reconnect(c));
        ASSERT_ERRNO(tsm_context_reclaim(c, token, &other, NULL), ENOENT);
        ASSERT_ERROR_NAME(c, "io.tsmd.Guest.ReclaimRefused");
        ASSERT_OK(tsm_context_reclaim(c, again, &ctx, NULL));
        ASSERT_OK(tsm_device_get_state(c, ctx, 1, &state, &bound));
        ASSERT_TRUE(bound);
        token = mfree(token);
        ASSERT_OK(tsm_context_get_reclaim_token(c, ctx, &token));
        ASSERT_FALSE(streq(again, token));
        again = mfree(again);
        ASSERT_OK(tsm_context_close(c, ctx));
        again = mfree(again);
        ASSERT_ERRNO(tsm_context_get_reclaim_token(c, ctx, &again), ENOENT);

        close(fd);
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

TEST_MAIN();
