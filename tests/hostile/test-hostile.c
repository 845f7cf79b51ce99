/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Hostile clients against the real tsmd on its emulated platform. Every case runs an attack
 * over the guest socket while a well-behaved VMM (a context with DEV2 attached, TDISP
 * GET_VERSION in scope "info", good-client.h) keeps working, between the attack's steps or
 * throughout it from a thread of its own, and checks that its requests stayed within a bound
 * relative to their time before the attack, that tsmd is still up with the same worker, that
 * tsmd's fd count is back to exactly its baseline and its RSS near it, and that refusals were
 * named errors where the protocol allows an answer. Every refusal is in the audit log under its
 * name: a call's with the method as event, one that ends its connection with event
 * "connection". At the end tsmd stops with its worker exiting cleanly and no sanitizer report
 * in its log (tsmd_expect_clean_exit()). A handful of refusals cannot show a small leak in the
 * RSS: the refusal floods are repeated until they number thousands (repeat-check.h), and
 * refusals_leave_nothing_behind repeats one of each kind.
 *
 * Runs in: tests. The second-uid parts of the connection flood need root (SKIP otherwise).
 */

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/magic.h>

#include "emu-config.h"
#include <sys/un.h>

#include "fuse-hold.h"
#include "good-client.h"
#include "lingering-tcp.h"
#include "repeat-check.h"
#include "tdisp.h"
#include "guest-calls.h"
#include "json-util.h"
#include "tsmd-fixture.h"
#include "varlink-errors.h"

#define G "io.tsmd.Guest."
#define E_GUEST(name) "io.tsmd.Guest." name

#define DEV1 "0000:01:00.0"
#define DEV2 "0000:02:00.0"
#define NOBODY 65534

#define CONF(extra)                                                                                \
        "[Platform]\nMode=emulated\nIommuDevice=/dev/zero\nEmulatedDevices=" DEV1 "," DEV2 "\n" extra

/* RSS may grow this much over the baseline (allocator caches, audit buffers). */
#define RSS_SLACK_KIB 4096UL
/* The most the worker may take to give memory back after an attack (its heap trim is rate limited
 * to once a second). */
#define RSS_SETTLE_USEC (3 * USEC_PER_SEC)

/* GuestRequest parameters for one TDISP request (body: zeros of body_len). */
static const char *request_params(int64_t ctx, int64_t vdev, const char *address, uint8_t type,
                                  size_t body_len) {
        uint8_t msg[256], body[16] = {};
        size_t len;
        _cleanup_free_ char *enc = NULL;

        ASSERT_OK(tdisp_build_request(type, guest_function_id(address), body, body_len, msg, sizeof(msg), &len));
        enc = b64(msg, len);
        return strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%" PRIi64 ",\"scope\":\"info\",\"request\":\"%s\","
                    "\"maxResponseSize\":4096}",
                    ctx, vdev, enc);
}

/* ---- baseline and the checks after each attack ---------------------------------------------- */

typedef struct Baseline {
        unsigned fds;      /* with the good client (and its context) connected, idle */
        unsigned long rss; /* KiB */
        pid_t worker;
        int64_t seq;       /* the last audit record before the attack */
} Baseline;

static Baseline baseline_take(Tsmd *t, Good *g) {
        Baseline b;

        /* Warm up (every path the attacks touch has run once, so the allocator has its arenas)
         * and time the good client as the machine runs it now. */
        good_measure_baseline(g);
        b.worker = tsmd_worker_pid(t);
        ASSERT_TRUE(b.worker > 0);
        /* Before the fds settle: the admin connection that asks is gone when they have. */
        b.seq = tsmd_audit_last_seq(t);
        b.fds = tsmd_settled_fds(t, 1);
        b.rss = tsmd_rss_kib(t);
        return b;
}

static void expect_recovered(Tsmd *t, Good *g, const Baseline *b) {
        unsigned fds;
        unsigned long rss;

        ASSERT_TRUE(tsmd_is_running(t));
        /* The same worker: a crash the monitor made good for is no recovery. */
        ASSERT_EQ(tsmd_worker_pid(t), b->worker);
        good_check(g);
        fds = tsmd_wait_fds(t, b->fds, TSMD_WAIT_USEC);
        if (fds != b->fds) {
                tsmd_print_fds(t);
                TEST_FAIL("tsmd holds %u fds after the attack, %u before", fds, b->fds);
        }
        /* The worker trims its heap after connections that buffered much, at most once a
         * second (varlink-server-conn.c): give it that long. */
        rss = tsmd_rss_kib(t);
        for (uint64_t deadline = now_usec() + RSS_SETTLE_USEC; rss > b->rss + RSS_SLACK_KIB && now_usec() < deadline;
             rss = tsmd_rss_kib(t))
                sleep_usec(50 * USEC_PER_MSEC);
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

/* ---- raw sockets, for what no client library would send ------------------------------------- */

static int raw_open(Tsmd *t) {
        int fd = tsmd_raw_connect(t->guest_socket);

        if (fd < 0)
                TEST_FAIL("connecting to %s: %s", t->guest_socket, strerror(-fd));
        return fd;
}

static bool raw_call(int fd, const char *s) {
        return tsmd_raw_send(fd, s, strlen(s) + 1);
}

/* True if tsmd hangs up within the timeout, without sending anything first. */
static bool raw_closed_silently(int fd, uint64_t timeout_usec) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        char c;
        ssize_t k;

        if (poll(&p, 1, (int) (timeout_usec / USEC_PER_MSEC)) != 1)
                return false;
        k = recv(fd, &c, 1, 0);
        return k == 0 || (k < 0 && errno == ECONNRESET);
}

/* True if tsmd tells a refusal that ends the connection by name within the timeout, with these
 * parameters (JSON text, exactly as tsmd writes them), then hangs up. */
static bool raw_told(int fd, const char *error, const char *parameters, uint64_t timeout_usec) {
        _cleanup_free_ char *m = tsmd_raw_recv(fd, timeout_usec);

        if (m && !streq(m, strf("{\"error\":\"%s\",\"parameters\":%s}", error, parameters)))
                fprintf(stderr, "# expected %s %s, got %s\n", error, parameters, m);
        return m && streq(m, strf("{\"error\":\"%s\",\"parameters\":%s}", error, parameters)) &&
               raw_closed_silently(fd, timeout_usec);
}

/* True if tsmd refuses the connection by name within the timeout: the error (of a connection
 * limit) as the answer to its first call, then the hang-up. */
static bool raw_refused(int fd, const char *error, uint64_t timeout_usec) {
        return raw_told(fd, error, "{}", timeout_usec);
}

/* Whether tsmd sent something or hung up, without waiting (nothing is read). */
static bool raw_readable(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        return poll(&p, 1, 0) == 1;
}

/* The refusals that ended connections since seq after, by name. */
#define expect_hangups_audited(t, after, refusal, n) tsmd_expect_audit((t), (after), "connection", (refusal), (n))

/* The same records, of any uid (owned): each a "connection" refusal. */
static json_object *refused_connections(Tsmd *t, int64_t after, const char *refusal) {
        json_object *records = tsmd_audit_query(t, strf("{\"fromSeq\":%" PRIi64 ",\"result\":\"%s\"}", after + 1, refusal));

        for (size_t i = 0; i < json_object_array_length(records); i++)
                ASSERT_STREQ(JSTR(json_object_array_get_idx(records, i), "event"), "connection");
        return records;
}

/* refused_connections() since the start, waited for until there are at least n: each refusal's
 * record is written as it comes, and the last may still be on its way. */
static json_object *refused_connections_at_least(Tsmd *t, const char *refusal, size_t n) {
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;; sleep_usec(5 * USEC_PER_MSEC)) {
                json_object *records = refused_connections(t, 0, refusal);

                if (json_object_array_length(records) >= n || now_usec() > deadline)
                        return records;
                json_object_put(records);
        }
}

/* The refusals of calls naming no declared method since seq after: event "unknown-method", the
 * name as sent (cut short) in "method". Those of this name and result, summaries not included. */
static size_t unknown_method_refusals(Tsmd *t, int64_t after, const char *method, const char *result) {
        json_object *records = tsmd_audit_query(t, strf("{\"fromSeq\":%" PRIi64 ",\"result\":\"%s\"}", after + 1, result));
        size_t n = 0;

        for (size_t i = 0; i < json_object_array_length(records); i++) {
                json_object *rec = json_object_array_get_idx(records, i), *m;

                if (streq(JSTR(rec, "event"), "unknown-method") && json_object_object_get_ex(rec, "method", &m) &&
                    streq(json_object_get_string(m), method))
                        n++;
        }
        json_object_put(records);
        return n;
}

/* Expects exactly this reply (compared as JSON; params NULL: any parameters). */
static void raw_expect_reply(int fd, const char *error, const char *params) {
        _cleanup_free_ char *m = tsmd_raw_recv(fd, TSMD_WAIT_USEC);
        json_object *o, *want;

        if (!m)
                TEST_FAIL("tsmd hung up instead of answering %s %s", error, params ?: "");
        o = json_tokener_parse(m);
        ASSERT_NOT_NULL(o);
        want = json_tokener_parse(strf("{\"error\":\"%s\",\"parameters\":%s}", error, params ?: "{}"));
        ASSERT_NOT_NULL(want);
        if (!json_object_equal(o, want) && !(params == NULL && json_matches(o, strf("{\"error\":\"%s\"}", error))))
                TEST_FAIL("expected %s %s, got %s", error, params ?: "", m);
        json_object_put(o);
        json_object_put(want);
}

/* The connection still works: a call gets its (error) answer. */
static void raw_expect_alive(int fd) {
        ASSERT_TRUE(raw_call(fd, "{\"method\":\"io.tsmd.Guest.CloseContext\",\"parameters\":{\"context\":987654321}}"));
        raw_expect_reply(fd, E_GUEST("NoSuchContext"), "{\"context\":987654321}");
}

/* Sends msg (with its NUL) with n_fds fds attached, each a dup of fd_src (or /dev/null). */
static bool send_with_fds(int sock, const char *msg, size_t len, unsigned n_fds, int fd_src) {
        char control[CMSG_SPACE(sizeof(int) * 253)] = {};
        struct iovec iov = { .iov_base = (void *) msg, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        int fds[253];
        ssize_t k;

        ASSERT_TRUE(n_fds <= 253);
        for (unsigned i = 0; i < n_fds; i++) {
                fds[i] = fd_src >= 0 ? fcntl(fd_src, F_DUPFD_CLOEXEC, 3) : open("/dev/null", O_RDONLY | O_CLOEXEC);
                ASSERT_TRUE(fds[i] >= 0);
        }
        if (n_fds > 0) {
                struct cmsghdr *c;

                mh.msg_control = control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }
        k = sendmsg(sock, &mh, MSG_NOSIGNAL);
        for (unsigned i = 0; i < n_fds; i++)
                close(fds[i]);
        if (k < 0 && (errno == EPIPE || errno == ECONNRESET))
                return false;
        ASSERT_EQ(k, (ssize_t) len);
        return true;
}

/* Every hostile case's end: tsmd recovered (expect_recovered()), the good client done, a clean
 * exit and its checks (tsmd_expect_clean_exit(), tsmd_teardown()). */
static void expect_recovered_and_stop(Tsmd *t, Good *g, const Baseline *b) {
        expect_recovered(t, g, b);
        good_done(g);
        tsmd_expect_clean_exit(t);
        tsmd_teardown(t);
}

/* ---- oversize messages ---------------------------------------------------------------------- */

TEST(oversize_message_and_endless_bytes) {
        Tsmd t;
        Good g;
        Baseline b;
        char *big;
        int fd, bystander;
        size_t sent = 0;
        bool closed = false;

        tsmd_start_config(&t, CONF("[Varlink]\nMaxMessageSize=4096\n"));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        /* A raw client that behaves, open through all of it: only the offenders are closed. */
        bystander = raw_open(&t);
        raw_expect_alive(bystander);
        good_during_start(&g);

        /* A complete, valid-looking message of 5000 bytes. */
        big = malloc(1 << 16);
        ASSERT_NOT_NULL(big);
        fd = raw_open(&t);
        {
                int n = snprintf(big, 1 << 16, "{\"method\":\"io.tsmd.Guest.CloseContext\",\"parameters\":{\"context\":1,\"pad\":\"");
                memset(big + n, 'a', 5000 - (size_t) n - 3);
                memcpy(big + 5000 - 3, "\"}}", 3);
                big[5000] = 0;
        }
        (void) tsmd_raw_send(fd, big, 5001);
        ASSERT_TRUE(raw_told(fd, VARLINK_REFUSED_MESSAGE_TOO_LARGE, "{\"maxMessageSize\":4096}", TSMD_WAIT_USEC));
        close(fd);
        expect_hangups_audited(&t, b.seq, VARLINK_REFUSED_MESSAGE_TOO_LARGE, 1);

        /* Endless bytes without a NUL, 64 KiB at a time: tsmd must hang up, long before 64 MiB. */
        fd = raw_open(&t);
        memset(big, ' ', 1 << 16);
        big[0] = '{';
        while (sent < (64u << 20)) {
                struct pollfd p = { .fd = fd, .events = POLLIN };

                if (!tsmd_raw_send(fd, big, 1 << 16)) {
                        closed = true;
                        break;
                }
                sent += 1 << 16;
                if (poll(&p, 1, 0) == 1) {
                        closed = true;
                        break;
                }
                big[0] = ' ';
        }
        ASSERT_TRUE(closed);
        ASSERT_TRUE(raw_told(fd, VARLINK_REFUSED_MESSAGE_TOO_LARGE, "{\"maxMessageSize\":4096}", TSMD_WAIT_USEC));
        fprintf(stderr, "# endless stream: hung up after %zu KiB\n", sent / 1024);
        close(fd);
        expect_hangups_audited(&t, b.seq, VARLINK_REFUSED_MESSAGE_TOO_LARGE, 2);

        /* The same with a valid message first: it is answered, then the flood closes. */
        fd = raw_open(&t);
        raw_expect_alive(fd);
        memset(big, 'x', 1 << 16);
        (void) tsmd_raw_send(fd, big, 8192);
        ASSERT_TRUE(raw_told(fd, VARLINK_REFUSED_MESSAGE_TOO_LARGE, "{\"maxMessageSize\":4096}", TSMD_WAIT_USEC));
        close(fd);
        expect_hangups_audited(&t, b.seq, VARLINK_REFUSED_MESSAGE_TOO_LARGE, 3);
        good_during_stop(&g, "messages past MaxMessageSize=");

        /* A reply beyond MaxMessageSize= (a listing of more clients than it holds):
         * ReplyTooLarge in its place, on a connection that goes on; audited as the call's own
         * result. A query answers what fits instead, and where to go on. */
        {
                VarlinkClient *admin = tsmd_connect(&t), *others[64];
                json_object *r = NULL;

                for (unsigned i = 0; i < 20; i++)
                        good_check(&g);
                for (size_t i = 0; i < ELEMENTSOF(others); i++)
                        others[i] = tsmd_connect_guest(&t);
                for (size_t i = 0; i < ELEMENTSOF(others); i++)
                        CALL_OK(others[i], "io.tsmd.Service.Ping", NULL);
                ASSERT_STREQ(tsmd_call(admin, "io.tsmd.Admin.ListClients", NULL, &r), VARLINK_ERROR_REPLY_TOO_LARGE);
                ASSERT_EQ(JINT(r, "maxMessageSize"), 4096);
                ASSERT_TRUE(JINT(r, "size") > 4096);
                for (size_t i = 0; i < ELEMENTSOF(others); i++)
                        varlink_client_free(others[i]);
                r = CALL_OK(admin, "io.tsmd.Admin.QueryAudit", "{}");
                ASSERT_TRUE(json_object_object_get(r, "nextSeq") != NULL);
                tsmd_expect_audit(&t, b.seq, "io.tsmd.Admin.ListClients", VARLINK_ERROR_REPLY_TOO_LARGE, 1);
                varlink_client_free(admin);
        }

        raw_expect_alive(bystander);
        close(bystander);
        free(big);
        expect_recovered_and_stop(&t, &g, &b);
}

/* A client that calls and never reads: tsmd either stops reading from it (MaxPendingCalls)
 * or closes it when its queued replies pass MaxOutputSize; either way its memory is bounded. */
TEST(never_reading_client) {
        static const char call[] = "{\"method\":\"io.tsmd.Guest.CloseContext\",\"parameters\":{\"context\":987654321}}";
        Tsmd t;
        Good g;
        Baseline b;
        int fd;
        size_t sent = 0;
        bool closed = false;
        uint64_t idle_since = 0, deadline;
        unsigned long rss;

        /* Its refusals spend its uid's refusal budget: the hangup's record may be in a summary,
         * written at the end of a short interval. */
        tsmd_start_config(&t, CONF("[Varlink]\nMaxMessageSize=65536\nMaxOutputSize=65536\n[Audit]\nRefusalIntervalSec=1\n"));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);

        fd = raw_open(&t);
        ASSERT_OK(fcntl(fd, F_SETFL, O_NONBLOCK));
        deadline = now_usec() + 5 * USEC_PER_SEC;
        /* Up to 32 MiB of calls (about 400000 replies), until tsmd hangs up or stops reading
         * for 500 ms. */
        while (sent < (32u << 20) && now_usec() < deadline) {
                ssize_t k = send(fd, call, sizeof(call), MSG_NOSIGNAL);

                if (k < 0 && (errno == EPIPE || errno == ECONNRESET)) {
                        closed = true;
                        break;
                }
                if (k < 0 && errno == EAGAIN) {
                        if (!idle_since)
                                idle_since = now_usec();
                        else if (now_usec() - idle_since > 500 * USEC_PER_MSEC)
                                break;
                        sleep_usec(USEC_PER_MSEC);
                        continue;
                }
                ASSERT_EQ(k, (ssize_t) sizeof(call)); /* AF_UNIX stream: no partial sends of this size */
                idle_since = 0;
                sent += (size_t) k;
                if ((sent / sizeof(call)) % 2000 == 0)
                        good_check(&g);
        }
        rss = tsmd_rss_kib(&t);
        good_check(&g);
        fprintf(stderr, "# never-reading client: %zu calls sent, %s; RSS %lu KiB\n", sent / sizeof(call),
                closed ? "tsmd hung up" : "tsmd stopped reading", rss);
        /* Not both open and still taking calls: that would be unbounded. */
        ASSERT_TRUE(closed || idle_since != 0);
        expect_hangups_audited(&t, b.seq, VARLINK_REFUSED_REPLIES_NOT_READ, closed ? 1 : 0);
#if !TSMD_SANITIZED
        if (!tsmd_under_valgrind()) /* valgrind's RSS; its leak check speaks instead */
                ASSERT_LE(rss, b.rss + RSS_SLACK_KIB);
#endif
        close(fd);
        expect_recovered_and_stop(&t, &g, &b);
}

/* ---- slowloris -------------------------------------------------------------------------------- */

#define SLOW_CONNS 20

static const char slow_head[] = "{\"method\":\"io.tsmd.Guest.GuestRequest\",\"parameters\":{\"scope\":\"";

/* SLOW_CONNS connections writing one byte every 50 ms of a message that never ends, for
 * duration_usec (less than the default MessageTimeoutSec=10), the good client working
 * throughout from its thread; then they go away. */
static void slowloris_round(Tsmd *t, Good *g, const Baseline *b, uint64_t duration_usec) {
        int fds[SLOW_CONNS];
        uint64_t end;
        unsigned ticks = 0;

        for (unsigned i = 0; i < SLOW_CONNS; i++) {
                fds[i] = raw_open(t);
                ASSERT_TRUE(tsmd_raw_send(fds[i], slow_head, 1));
        }
        good_during_start(g);
        end = now_usec() + duration_usec;
        for (size_t pos = 1; now_usec() < end; pos++, ticks++) {
                for (unsigned i = 0; i < SLOW_CONNS; i++)
                        ASSERT_TRUE(tsmd_raw_send(fds[i], pos < sizeof(slow_head) - 1 ? &slow_head[pos] : "a", 1));
                sleep_usec(50 * USEC_PER_MSEC);
        }
        good_during_stop(g, "slowloris writers");
        ASSERT_GE(ticks, duration_usec / (100 * USEC_PER_MSEC));
        /* Unfinished, not yet late: still connected, each costing tsmd one fd. */
        ASSERT_EQ(tsmd_count_fds(t), b->fds + SLOW_CONNS);
        for (unsigned i = 0; i < SLOW_CONNS; i++)
                close(fds[i]);
        ASSERT_EQ(tsmd_wait_fds(t, b->fds, TSMD_WAIT_USEC), b->fds);
}

TEST(slowloris) {
        Tsmd t;
        Good g;
        Baseline b;
        unsigned long rss1, rss2;

        tsmd_start_config(&t, CONF(""));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);

        slowloris_round(&t, &g, &b, 3 * USEC_PER_SEC);
        rss1 = tsmd_rss_kib(&t);
        /* Again: what the first round cost is reused, not leaked per connection. */
        slowloris_round(&t, &g, &b, 1 * USEC_PER_SEC);
        rss2 = tsmd_rss_kib(&t);
        fprintf(stderr, "# slowloris: RSS %lu -> %lu -> %lu KiB\n", b.rss, rss1, rss2);
#if !TSMD_SANITIZED
        ASSERT_LE(rss2, rss1 + 512);
#endif
        expect_recovered_and_stop(&t, &g, &b);
}

/* With MessageTimeoutSec=1, tsmd hangs up on 1-byte-per-second writers itself, about a
 * second after each started its message, and with IdleTimeoutSec=2 on a connection that
 * never sent anything; a connection idle between messages stays. The good client works
 * throughout, and tsmd's fd count is back at its baseline while the attackers still hold
 * their ends open. */
TEST(slowloris_timeout) {
        Tsmd t;
        Good g;
        Baseline b;
        int slow[SLOW_CONNS], silent, bystander;
        uint64_t start, last_byte = 0, closed_at[SLOW_CONNS] = {}, silent_closed_at = 0, first = UINT64_MAX, last = 0;
        unsigned n_closed = 0;
        size_t pos = 0;

        tsmd_start_config(&t, CONF("[Varlink]\nMessageTimeoutSec=1\nIdleTimeoutSec=2\n"));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        bystander = raw_open(&t);
        raw_expect_alive(bystander);

        good_during_start(&g);
        start = now_usec();
        silent = raw_open(&t);
        for (unsigned i = 0; i < SLOW_CONNS; i++)
                slow[i] = raw_open(&t);
        while (n_closed < SLOW_CONNS + 1 && now_usec() - start < 4 * USEC_PER_SEC) {
                uint64_t now = now_usec();
                bool send_byte = now - last_byte >= USEC_PER_SEC;

                for (unsigned i = 0; i < SLOW_CONNS; i++) {
                        if (closed_at[i] > 0)
                                continue;
                        if (raw_readable(slow[i]) || (send_byte && !tsmd_raw_send(slow[i], &slow_head[pos], 1))) {
                                closed_at[i] = now - start;
                                n_closed++;
                        }
                }
                if (send_byte) {
                        last_byte = now;
                        pos++;
                }
                if (silent_closed_at == 0 && raw_readable(silent)) {
                        silent_closed_at = now - start;
                        n_closed++;
                }
                sleep_usec(100 * USEC_PER_MSEC);
        }
        good_during_stop(&g, "slowloris writers and a silent connection timed out");
        if (n_closed < SLOW_CONNS + 1)
                TEST_FAIL("after 4 s, tsmd still serves %u of the slow and silent connections", SLOW_CONNS + 1 - n_closed);
        for (unsigned i = 0; i < SLOW_CONNS; i++) {
                first = MIN(first, closed_at[i]);
                last = MAX(last, closed_at[i]);
        }
        ASSERT_GE(first, 900 * USEC_PER_MSEC);
        ASSERT_LE(last, 2500 * USEC_PER_MSEC);
        ASSERT_GE(silent_closed_at, 1800 * USEC_PER_MSEC);
        fprintf(stderr, "# slowloris with MessageTimeoutSec=1: closed after %llu..%llu ms; silent after %llu ms\n",
                (unsigned long long) (first / USEC_PER_MSEC), (unsigned long long) (last / USEC_PER_MSEC),
                (unsigned long long) (silent_closed_at / USEC_PER_MSEC));

        /* tsmd let go of them on its own (our ends are still open), saying why, to them too. */
        for (unsigned i = 0; i < SLOW_CONNS; i++)
                ASSERT_TRUE(raw_told(slow[i], VARLINK_REFUSED_MESSAGE_TIMEOUT, "{\"messageTimeoutSec\":1}", TSMD_WAIT_USEC));
        ASSERT_TRUE(raw_told(silent, VARLINK_REFUSED_IDLE_TIMEOUT, "{\"idleTimeoutSec\":2}", TSMD_WAIT_USEC));
        ASSERT_EQ(tsmd_wait_fds(&t, b.fds + 1, TSMD_WAIT_USEC), b.fds + 1);
        ASSERT_EQ(tsmd_log_count(&t, "did not complete its message within 1s"), SLOW_CONNS);
        ASSERT_EQ(tsmd_log_count(&t, "sent no complete message within 2s of connecting"), 1U);
        expect_hangups_audited(&t, b.seq, VARLINK_REFUSED_MESSAGE_TIMEOUT, SLOW_CONNS);
        expect_hangups_audited(&t, b.seq, VARLINK_REFUSED_IDLE_TIMEOUT, 1);

        /* Idle for over 2 s, but between messages: still served. */
        raw_expect_alive(bystander);
        for (unsigned i = 0; i < SLOW_CONNS; i++)
                close(slow[i]);
        close(silent);
        close(bystander);
        expect_recovered_and_stop(&t, &g, &b);
}

/* ---- malformed and mistyped JSON ----------------------------------------------------------------- */

/* A message that must close its connection, the refusal told by that name (with these
 * parameters) and on record under it. */
static void expect_told_close(Tsmd *t, const char *what, const void *msg, size_t len, const char *refusal,
                              const char *parameters) {
        int64_t seq = tsmd_audit_last_seq(t);
        int fd = raw_open(t);

        (void) tsmd_raw_send(fd, msg, len);
        if (!raw_told(fd, refusal, parameters, TSMD_WAIT_USEC))
                TEST_FAIL("%s: tsmd did not tell %s %s, then close the connection", what, refusal, parameters);
        close(fd);
        expect_hangups_audited(t, seq, refusal, 1);
}

/* A call whose parameters must be refused with InvalidParameter naming param; the connection
 * stays usable. */
static void expect_invalid_param(Tsmd *t, const char *method, const char *params, const char *param) {
        int64_t seq = tsmd_audit_last_seq(t);
        int fd = raw_open(t);

        ASSERT_TRUE(raw_call(fd, strf("{\"method\":\"%s\",\"parameters\":%s}", method, params)));
        raw_expect_reply(fd, VARLINK_ERROR_INVALID_PARAMETER, strf("{\"parameter\":\"%s\"}", param));
        raw_expect_alive(fd);
        close(fd);
        tsmd_expect_audit(t, seq, method, VARLINK_ERROR_INVALID_PARAMETER, 1);
}

static char *nesting_bomb(size_t depth, size_t *ret_len) {
        static const char pre[] = "{\"method\":\"io.tsmd.Guest.CloseContext\",\"parameters\":{\"context\":";
        size_t n = strlen(pre);
        char *s = malloc(n + 2 * depth + 8);

        ASSERT_NOT_NULL(s);
        memcpy(s, pre, n);
        memset(s + n, '[', depth);
        memset(s + n + depth, ']', depth);
        n += 2 * depth;
        memcpy(s + n, "}}", 3);
        *ret_len = n + 3;
        return s;
}

TEST(malformed_json) {
        Tsmd t;
        Good g;
        Baseline b;
        size_t len;
        char *s;

        /* Each refusal is checked for a record of its own: more of them than root's refusal budget
         * (what is past it is summarized, see test-audit's refusal_flood_keeps_history_and_is_summarized). */
        tsmd_start_config(&t, CONF("[Varlink]\nMaxJsonDepth=16\n[Audit]\nRefusalRecordsPerUid=100000\n"));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        good_during_start(&g);

        /* Nesting past MaxJsonDepth, a little and a lot (1 MB of brackets), and unterminated. */
        s = nesting_bomb(20, &len);
        expect_told_close(&t, "nesting 20", s, len, VARLINK_REFUSED_NESTING_TOO_DEEP, "{\"maxJsonDepth\":16}");
        free(s);
        s = nesting_bomb(500000, &len);
        expect_told_close(&t, "nesting 500000", s, len, VARLINK_REFUSED_NESTING_TOO_DEEP, "{\"maxJsonDepth\":16}");
        free(s);
        /* Just within the limit, but the wrong type: a named refusal. */
        expect_invalid_param(&t, G "CloseContext", "{\"context\":[[[[1]]]]}", "context");

#define M(x) ("{\"method\":\"io.tsmd.Guest.CloseContext\",\"parameters\":" x "}")
#define SILENT(what, x) expect_told_close(&t, what, M(x), sizeof(M(x)), VARLINK_REFUSED_MALFORMED_MESSAGE, "{}")
        /* Invalid UTF-8: a stray continuation byte, an overlong '/', a truncated sequence, a
         * UTF-16 surrogate encoded in UTF-8, and a code point beyond U+10FFFF. */
        SILENT("bad utf-8 0xff", "{\"context\":1,\"x\":\"\xff\"}");
        SILENT("overlong utf-8", "{\"context\":1,\"x\":\"\xc0\xaf\"}");
        SILENT("truncated utf-8", "{\"context\":1,\"x\":\"\xe2\x82\"}");
        SILENT("utf-8 surrogate", "{\"context\":1,\"x\":\"\xed\xa0\x80\"}");
        SILENT("beyond U+10FFFF", "{\"context\":1,\"x\":\"\xf4\x90\x80\x80\"}");
        SILENT("bad utf-8 in a key", "{\"cont\xff\":1}");
        /* Lone surrogates, NaN, single quotes, a raw control character, trailing garbage,
         * duplicate keys (in the parameters and at the top level). */
        SILENT("lone surrogate", "{\"context\":1,\"x\":\"\\ud800\"}");
        SILENT("NaN", "{\"context\":NaN}");
        SILENT("single quotes", "{'context':1}");
        SILENT("raw control character", "{\"context\":1,\"x\":\"\x01\"}");
        SILENT("leading zero", "{\"context\":01}");
        SILENT("duplicate key", "{\"context\":1,\"context\":2}");
        expect_told_close(&t, "duplicate method",
                            "{\"method\":\"io.tsmd.Guest.CloseContext\",\"method\":\"io.tsmd.Guest.OpenContext\",\"parameters\":{\"context\":1}}",
                            sizeof("{\"method\":\"io.tsmd.Guest.CloseContext\",\"method\":\"io.tsmd.Guest.OpenContext\",\"parameters\":{\"context\":1}}"),
                          VARLINK_REFUSED_MALFORMED_MESSAGE, "{}");
        expect_told_close(&t, "not an object", "[1]", 4, VARLINK_REFUSED_MALFORMED_MESSAGE, "{}");
        expect_told_close(&t, "empty message", "", 1, VARLINK_REFUSED_MALFORMED_MESSAGE, "{}");
        expect_told_close(&t, "trailing garbage", "{}x", 4, VARLINK_REFUSED_MALFORMED_MESSAGE, "{}");
#undef SILENT
#undef M

        /* Well-formed JSON, wrong values: named refusals, and the connection stays usable. */
        expect_invalid_param(&t, G "CloseContext", "{\"context\":1e400}", "context");
        expect_invalid_param(&t, G "CloseContext", "{\"context\":-1e400}", "context");
        expect_invalid_param(&t, G "CloseContext", "{\"context\":1180591620717411303424}", "context"); /* 2^70 */
        expect_invalid_param(&t, G "CloseContext", "{\"context\":9223372036854775808}", "context");    /* 2^63 */
        expect_invalid_param(&t, G "CloseContext", "{\"context\":1.5}", "context");
        expect_invalid_param(&t, G "CloseContext", "{\"context\":\"1\"}", "context");
        expect_invalid_param(&t, G "CloseContext", "{\"context\":true}", "context");
        expect_invalid_param(&t, G "CloseContext", "{\"context\":null}", "context");
        expect_invalid_param(&t, G "CloseContext", "{\"context\":{}}", "context");
        expect_invalid_param(&t, G "CloseContext", "{}", "context");
        expect_invalid_param(&t, G "CloseContext", "{\"context\":1,\"extra\":1}", "extra");
        expect_invalid_param(&t, G "GuestRequest",
                             "{\"context\":1,\"vdeviceId\":1,\"scope\":7,\"request\":\"\",\"maxResponseSize\":1}", "scope");
        expect_invalid_param(&t, G "GuestRequest",
                             "{\"context\":1,\"vdeviceId\":1,\"scope\":\"info\",\"request\":[],\"maxResponseSize\":1}", "request");
        expect_invalid_param(&t, G "GuestRequest",
                             "{\"context\":1,\"vdeviceId\":1,\"scope\":\"in\\u0000fo\",\"request\":\"\",\"maxResponseSize\":1}", "scope");
        expect_invalid_param(&t, G "GuestRequest",
                             "{\"context\":1,\"vdeviceId\":1,\"scope\":\"info\",\"request\":\"\",\"maxResponseSize\":1e400}",
                             "maxResponseSize");

        /* Not a valid call: named, then closed; recorded as a "call" (it is none). */
        {
                int64_t seq = tsmd_audit_last_seq(&t);
                int fd = raw_open(&t);
                ASSERT_TRUE(raw_call(fd, "{\"method\":\"io.tsmd.Guest.CloseContext\",\"parameters\":{\"context\":1},\"bogus\":1}"));
                raw_expect_reply(fd, VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"bogus\"}");
                ASSERT_TRUE(raw_closed_silently(fd, TSMD_WAIT_USEC));
                close(fd);
                tsmd_expect_audit(&t, seq, "call", VARLINK_ERROR_INVALID_PARAMETER, 1);
        }
        good_during_stop(&g, "malformed and mistyped JSON");

        expect_recovered_and_stop(&t, &g, &b);
}

/*
 * An int field below INT64_MIN must be refused as one above INT64_MAX is, never acted on:
 * json-c clamps -9223372036854775809 to INT64_MIN silently, so tsmd would answer NoSuchContext
 * {"context": -9223372036854775808} for a number the client never sent. tsmd's reader
 * (proto/json-build.c) keeps an integer past int64 and uint64 as the double it is, which an
 * int field refuses by name; this guards it.
 */
TEST(int_below_int64_min_is_refused) {
        Tsmd t;
        Good g;
        Baseline b;

        tsmd_start_config(&t, CONF(""));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        good_during_start(&g);
        /* The control: one above INT64_MAX is refused by name. */
        expect_invalid_param(&t, G "CloseContext", "{\"context\":9223372036854775808}", "context");
        /* One below INT64_MIN must be refused the same way. */
        expect_invalid_param(&t, G "CloseContext", "{\"context\":-9223372036854775809}", "context");
        expect_invalid_param(&t, G "GuestRequest",
                                      "{\"context\":1,\"vdeviceId\":-99999999999999999999,\"scope\":\"info\",\"request\":\"\","
                                      "\"maxResponseSize\":1}", "vdeviceId");
        good_during_stop(&g, "integers past int64");
        expect_recovered_and_stop(&t, &g, &b);
}

/* ---- what clients chose, in tsmd's log --------------------------------------------------- */

/* A call object's unknown key is logged by name: escaped, so that it cannot rewrite the console
 * tsmd logs to, nor start a line of its own (under journald one with a "<N>" priority). */
TEST(log_escapes_what_clients_chose) {
        static const char needle[] =
                "Invalid call object (key 'x\\x1b]0;pwned\\a\\x1b\\xc2\\x9b\\n<0>tsmd: forged\\xc2\\x9b')";
        _cleanup_free_ char *log = NULL;
        Tsmd t;
        int fd;

        tsmd_start_config(&t, CONF(""));
        fd = raw_open(&t);
        ASSERT_TRUE(raw_call(fd, "{\"method\":\"io.tsmd.Guest.OpenContext\",\"parameters\":{},"
                                 "\"x\\u001b]0;pwned\\u0007\\u001b\\u009b\\n<0>tsmd: forged\\u009b\":1}"));
        free(tsmd_raw_recv(fd, TSMD_WAIT_USEC)); /* InvalidParameter, then it hangs up */
        close(fd);
        if (!tsmd_wait_log(&t, "Invalid call object (key 'x", 1, TSMD_WAIT_USEC))
                TEST_FAIL("the refused call object was not logged");
        log = tsmd_read_log(&t);
        if (!strstr(log, needle))
                TEST_FAIL("not escaped as expected:\n%s", log);
        ASSERT_NULL(strchr(log, '\x1b'));
        ASSERT_NULL(strchr(log, '\a'));
        ASSERT_NULL(strstr(log, "\xc2\x9b"));
        ASSERT_NULL(strstr(log, "\n<0>tsmd: forged"));
        tsmd_teardown(&t);
}

/* ---- unknown methods, other clients' handles, released handles ------------------------------ */

TEST(unknown_methods_and_foreign_handles) {
        Tsmd t;
        Good g;
        Baseline b;
        VarlinkClient *a, *other;
        json_object *r;
        int64_t mine, gone;

        tsmd_start_config(&t, CONF(""));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        a = tsmd_connect_guest(&t);

        CALL_ERROR(a, G "Nope", NULL, VARLINK_ERROR_METHOD_NOT_FOUND, NULL);
        CALL_ERROR(a, "io.tsmd.Nope.Call", NULL, VARLINK_ERROR_INTERFACE_NOT_FOUND, NULL);
        CALL_ERROR(a, "io.tsmd.guest.OpenContext", NULL, VARLINK_ERROR_INTERFACE_NOT_FOUND, NULL);
        /* Not a valid method name at all: the call object is refused by name, then closed. */
        {
                int fd = raw_open(&t);
                ASSERT_TRUE(raw_call(fd, "{\"method\":\"io.tsmd.Guest.openContext\",\"parameters\":{}}"));
                raw_expect_reply(fd, VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"method\"}");
                ASSERT_TRUE(raw_closed_silently(fd, TSMD_WAIT_USEC));
                close(fd);
        }
        /* The guest socket serves no io.tsmd.Admin. */
        CALL_ERROR(a, "io.tsmd.Admin.GetClients", NULL, VARLINK_ERROR_INTERFACE_NOT_FOUND, NULL);
        /* WatchEvents without more. */
        CALL_ERROR(a, G "WatchEvents", NULL, VARLINK_ERROR_EXPECTED_MORE, NULL);
        good_check(&g);
        /* Refused before any method ran, each is on record as the call it was: one naming no
         * declared method as "unknown-method", with the name it sent. */
        tsmd_expect_audit(&t, b.seq, "unknown-method", VARLINK_ERROR_METHOD_NOT_FOUND, 1);
        tsmd_expect_audit(&t, b.seq, "unknown-method", VARLINK_ERROR_INTERFACE_NOT_FOUND, 3);
        ASSERT_EQ(unknown_method_refusals(&t, b.seq, G "Nope", VARLINK_ERROR_METHOD_NOT_FOUND), 1U);
        ASSERT_EQ(unknown_method_refusals(&t, b.seq, "io.tsmd.Nope.Call", VARLINK_ERROR_INTERFACE_NOT_FOUND), 1U);
        ASSERT_EQ(unknown_method_refusals(&t, b.seq, "io.tsmd.guest.OpenContext", VARLINK_ERROR_INTERFACE_NOT_FOUND), 1U);
        ASSERT_EQ(unknown_method_refusals(&t, b.seq, "io.tsmd.Admin.GetClients", VARLINK_ERROR_INTERFACE_NOT_FOUND), 1U);
        tsmd_expect_audit(&t, b.seq, "call", VARLINK_ERROR_INVALID_PARAMETER, 1);
        tsmd_expect_audit(&t, b.seq, G "WatchEvents", VARLINK_ERROR_EXPECTED_MORE, 1);

        /* The good client's context, named from another connection of the same uid, and from
         * another uid: as if it did not exist, and each attempt on record under who made it. */
        int64_t foreign_seq = tsmd_audit_last_seq(&t);
        size_t guessed_no_such = 0, guessed_invalid = 0;
        const char *p_ctx = strf("{\"context\":%" PRIi64 "}", g.ctx);
        char ctx_params[64], err_params[64];
        snprintf(ctx_params, sizeof(ctx_params), "%s", p_ctx);
        snprintf(err_params, sizeof(err_params), "%s", p_ctx);
        CALL_ERROR(a, G "CloseContext", ctx_params, E_GUEST("NoSuchContext"), err_params);
        CALL_ERROR(a, G "GuestRequest", g.params, E_GUEST("NoSuchContext"), err_params);
        CALL_ERROR(a, G "Bind", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1}", g.ctx), E_GUEST("NoSuchContext"), err_params);
        {
                /* On record with the context it probed. */
                _cleanup_json_ json_object *recs = tsmd_audit_query(&t, strf("{\"fromSeq\":%" PRIi64 "}", foreign_seq + 1));
                size_t n = 0;

                for (size_t i = 0; i < json_object_array_length(recs); i++) {
                        json_object *rec = json_object_array_get_idx(recs, i);

                        if (!streq(JSTR(rec, "event"), "bind"))
                                continue;
                        ASSERT_STREQ(JSTR(rec, "result"), E_GUEST("NoSuchContext"));
                        ASSERT_EQ(JINT(rec, "contextId"), g.ctx);
                        n++;
                }
                ASSERT_EQ(n, 1U);
        }
        CALL_ERROR(a, G "DetachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1}", g.ctx), E_GUEST("NoSuchContext"), err_params);
        CALL_ERROR(a, G "AttachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":2,\"pciAddress\":\"" DEV1 "\"}", g.ctx),
                   E_GUEST("NoSuchContext"), err_params);
        /* What a connection holds is told to that connection only: the good client's context is
         * named to no other, of its uid (and process) or another's. */
        ASSERT_STREQ(json_object_to_json_string_ext(CALL_OK(a, G "DescribeConnection", "{\"nonce\":1}"),
                                                    JSON_C_TO_STRING_PLAIN),
                     "{\"nonce\":1,\"contexts\":[]}");
        tsmd_expect_audit(&t, foreign_seq, "describe-connection", "ok", 1);
        if (tsmd_can_switch_uid()) {
                other = tsmd_connect_as(&t, NOBODY, NOBODY);
                ASSERT_STREQ(json_object_to_json_string_ext(CALL_OK(other, G "DescribeConnection", NULL),
                                                            JSON_C_TO_STRING_PLAIN),
                             "{\"contexts\":[]}");
                CALL_ERROR(other, G "GuestRequest", g.params, E_GUEST("NoSuchContext"), err_params);
                CALL_ERROR(other, G "CloseContext", ctx_params, E_GUEST("NoSuchContext"), err_params);
                varlink_client_free(other);
                /* On record as the other uid's. */
                ASSERT_EQ(tsmd_audit_count_where(&t, foreign_seq, strf("\"uid\":%u", NOBODY), "guest-request",
                                                 E_GUEST("NoSuchContext")),
                          1U);
                ASSERT_EQ(tsmd_audit_count_where(&t, foreign_seq, strf("\"uid\":%u", NOBODY), "close-context",
                                                 E_GUEST("NoSuchContext")),
                          1U);
        }
        /* Guessing: neighbours, zero, negatives, the extremes. */
        const int64_t guesses[] = { g.ctx - 1, g.ctx + 1, 0, 1, 2, -1, INT64_MAX, INT64_MIN };
        for (size_t i = 0; i < ELEMENTSOF(guesses); i++) {
                const char *e = tsmd_call(a, G "GuestRequest", request_params(guesses[i], 1, DEV2, TDISP_MSG_GET_VERSION, 0), &r);
                ASSERT_NOT_NULL(e);
                if (streq(e, E_GUEST("NoSuchContext")))
                        guessed_no_such++;
                else if (streq(e, VARLINK_ERROR_INVALID_PARAMETER))
                        guessed_invalid++;
                else
                        TEST_FAIL("GuestRequest on guessed context %" PRIi64 ": %s", guesses[i], e);
        }
        good_check(&g);
        tsmd_expect_audit(&t, foreign_seq, "close-context", E_GUEST("NoSuchContext"), 1);
        tsmd_expect_audit(&t, foreign_seq, "guest-request", E_GUEST("NoSuchContext"), 1 + guessed_no_such);
        tsmd_expect_audit(&t, foreign_seq, G "GuestRequest", VARLINK_ERROR_INVALID_PARAMETER, guessed_invalid);
        tsmd_expect_audit(&t, foreign_seq, "bind", E_GUEST("NoSuchContext"), 1);

        tsmd_expect_audit(&t, foreign_seq, "detach", E_GUEST("NoSuchContext"), 1);
        tsmd_expect_audit(&t, foreign_seq, "attach", E_GUEST("NoSuchContext"), 1);

        /* Replay of released handles. */
        int64_t replay_seq = tsmd_audit_last_seq(&t);
        r = CALL_OK(a, G "OpenContext", NULL);
        mine = JINT(r, "context");
        close(varlink_client_take_fd(a, (size_t) JINT(r, "fileDescriptor")));
        CALL_OK(a, G "AttachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":5,\"pciAddress\":\"" DEV1 "\"}", mine));
        CALL_OK(a, G "Bind", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":5}", mine));
        CALL_OK(a, G "GuestRequest", request_params(mine, 5, DEV1, TDISP_MSG_GET_VERSION, 0));
        gone = mine;
        CALL_OK(a, G "CloseContext", strf("{\"context\":%" PRIi64 "}", gone));
        snprintf(err_params, sizeof(err_params), "{\"context\":%" PRIi64 "}", gone);
        CALL_ERROR(a, G "GuestRequest", request_params(gone, 5, DEV1, TDISP_MSG_GET_VERSION, 0), E_GUEST("NoSuchContext"), err_params);
        CALL_ERROR(a, G "CloseContext", err_params, E_GUEST("NoSuchContext"), err_params);
        CALL_ERROR(a, G "GetDeviceState", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":5}", gone), E_GUEST("NoSuchContext"), err_params);
        /* A new context does not reuse the released handle. */
        r = CALL_OK(a, G "OpenContext", NULL);
        close(varlink_client_take_fd(a, (size_t) JINT(r, "fileDescriptor")));
        mine = JINT(r, "context");
        ASSERT_NE(mine, gone);
        CALL_ERROR(a, G "GuestRequest", request_params(gone, 5, DEV1, TDISP_MSG_GET_VERSION, 0), E_GUEST("NoSuchContext"), err_params);
        /* Detached vDevice of a live context. */
        CALL_OK(a, G "AttachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":6,\"pciAddress\":\"" DEV1 "\"}", mine));
        CALL_OK(a, G "DetachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":6}", mine));
        snprintf(err_params, sizeof(err_params), "{\"context\":%" PRIi64 ",\"vdeviceId\":6}", mine);
        CALL_ERROR(a, G "GuestRequest", request_params(mine, 6, DEV1, TDISP_MSG_GET_VERSION, 0), E_GUEST("NoSuchVDevice"), err_params);
        tsmd_expect_audit(&t, replay_seq, "guest-request", E_GUEST("NoSuchContext"), 2);
        tsmd_expect_audit(&t, replay_seq, "close-context", E_GUEST("NoSuchContext"), 1);
        tsmd_expect_audit(&t, replay_seq, "get-state", E_GUEST("NoSuchContext"), 1);
        tsmd_expect_audit(&t, replay_seq, "guest-request", E_GUEST("NoSuchVDevice"), 1);

        /* The good client's context survived all of it. */
        good_check(&g);
        varlink_client_free(a);
        expect_recovered_and_stop(&t, &g, &b);
}

/* ---- fd floods and fds of the wrong kind ------------------------------------------------------ */

TEST(fd_flood) {
        Tsmd t;
        Good g;
        Baseline b;
        VarlinkClient *a;
        int fd, sp[2], pp[2];
        const char *call = "{\"method\":\"io.tsmd.Guest.CloseContext\",\"parameters\":{\"context\":987654321}}";

        /* Past the uid's refusal budget, refusals are counted in summaries: written at the end of a
         * short interval here. */
        tsmd_start_config(&t, CONF("[Varlink]\nMaxFdsPerMessage=4\n[Audit]\nRefusalIntervalSec=1\n"));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);

        /* More fds than allowed on one message: the connection is closed, the fds with it. */
        good_during_start(&g);
        for (unsigned n = 5; n <= 253; n += 124) {
                fd = raw_open(&t);
                (void) send_with_fds(fd, call, strlen(call) + 1, n, -1);
                ASSERT_TRUE(raw_told(fd, VARLINK_REFUSED_FILE_DESCRIPTORS, "{\"maxFdsPerMessage\":4}", TSMD_WAIT_USEC));
                close(fd);
        }
        good_during_stop(&g, "messages with too many fds");
        expect_hangups_audited(&t, b.seq, VARLINK_REFUSED_FILE_DESCRIPTORS, 3);
        ASSERT_EQ(tsmd_wait_fds(&t, b.fds, TSMD_WAIT_USEC), b.fds);

        /* Within the limit but for a method that takes none, 200 times: answered, each refusal
         * on record (by itself or in a summary), and tsmd keeps none of the 800 fds. */
        int64_t unused_seq = tsmd_audit_last_seq(&t);
        fd = raw_open(&t);
        good_during_start(&g);
        for (unsigned i = 0; i < 200; i++) {
                ASSERT_TRUE(send_with_fds(fd, call, strlen(call) + 1, 4, -1));
                raw_expect_reply(fd, E_GUEST("NoSuchContext"), "{\"context\":987654321}");
        }
        good_during_stop(&g, "calls with fds they do not take");
        tsmd_expect_audit(&t, unused_seq, "close-context", E_GUEST("NoSuchContext"), 200);
        ASSERT_EQ(tsmd_settled_fds(&t, 2), b.fds + 1);
        /* Fds attached to a message that never ends, then a hangup. */
        ASSERT_TRUE(send_with_fds(fd, "{\"method\":", 10, 4, -1));
        close(fd);
        ASSERT_EQ(tsmd_wait_fds(&t, b.fds, TSMD_WAIT_USEC), b.fds);

        /* The wrong kind of fd to AdoptContext: named refusals, nothing kept. */
        int64_t adopt_seq = tsmd_audit_last_seq(&t);
        a = tsmd_connect_guest(&t);
        ASSERT_OK(pipe2(pp, O_CLOEXEC));
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
        const int wrong[] = { pp[0], pp[1], sp[0], ASSERT_OK(eventfd(0, EFD_CLOEXEC)), ASSERT_OK(open("/dev/null", O_RDWR | O_CLOEXEC)),
                              ASSERT_OK(open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)),
                              ASSERT_OK(dup(varlink_client_get_fd(a))) };
        for (size_t i = 0; i < ELEMENTSOF(wrong); i++) {
                ASSERT_EQ(varlink_client_push_fd(a, wrong[i]), 0);
                CALL_ERROR(a, G "AdoptContext", "{\"fileDescriptor\":0}", E_GUEST("BadFileDescriptor"),
                           "{\"field\":\"fileDescriptor\"}");
        }
        close(sp[1]);
        /* Indexes that name no fd, with and without fds attached. */
        CALL_ERROR(a, G "AdoptContext", "{\"fileDescriptor\":0}", E_GUEST("BadFileDescriptor"), "{\"field\":\"fileDescriptor\"}");
        ASSERT_EQ(varlink_client_push_fd(a, open("/dev/zero", O_RDWR | O_CLOEXEC)), 0);
        CALL_ERROR(a, G "AdoptContext", "{\"fileDescriptor\":4}", E_GUEST("BadFileDescriptor"), "{\"field\":\"fileDescriptor\"}");
        tsmd_expect_audit(&t, adopt_seq, "adopt-context", E_GUEST("BadFileDescriptor"), ELEMENTSOF(wrong) + 2);
        ASSERT_EQ(varlink_client_push_fd(a, open("/dev/zero", O_RDWR | O_CLOEXEC)), 0);
        {
                int64_t seq = tsmd_audit_last_seq(&t);
                json_object *r = NULL;
                const char *e = tsmd_call(a, G "AdoptContext", "{\"fileDescriptor\":-1}", &r);

                if (!e || (!streq(e, E_GUEST("BadFileDescriptor")) && !streq(e, VARLINK_ERROR_INVALID_PARAMETER)))
                        TEST_FAIL("AdoptContext(fileDescriptor -1): %s", e ?: "success");
                fprintf(stderr, "# AdoptContext(fileDescriptor -1): %s\n", e);
                /* On record as the refusal it was: of the call as made, or of its parameter. */
                if (streq(e, E_GUEST("BadFileDescriptor")))
                        tsmd_expect_audit(&t, seq, "adopt-context", e, 1);
                else
                        tsmd_expect_audit(&t, seq, G "AdoptContext", e, 1);
        }
        good_check(&g);
        /* The pipe, eventfd and sockets among them are closed on the closer's thread: awaited. */
        (void) tsmd_settled_fds(&t, 2);
        ASSERT_EQ(tsmd_wait_fds(&t, b.fds + 1, TSMD_WAIT_USEC), b.fds + 1);
        varlink_client_free(a);

        expect_recovered_and_stop(&t, &g, &b);
}

/* Attaches address as vDevice 1 of ctx once its last owner's release is done (a release, and a
 * bind or unbind it waits for, take the device's latency): until then it is DeviceBusy. */
static void attach_when_free(VarlinkClient *c, int64_t ctx, const char *address) {
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;

        for (;;) {
                const char *e = tsmd_call(c, G "AttachDevice",
                                          strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1,\"pciAddress\":\"%s\"}",
                                               ctx, address),
                                          NULL);
                if (!e)
                        return;
                if (!streq(e, E_GUEST("DeviceBusy")) || now_usec() > deadline)
                        TEST_FAIL("AttachDevice(%s): %s", address, e);
                sleep_usec(5 * USEC_PER_MSEC);
        }
}

/* ---- disconnects mid-request and mid-stream --------------------------------------------------- */

TEST(disconnect_mid_request_and_mid_stream) {
        Tsmd t;
        Good g;
        Baseline b;

        tsmd_start_config(&t, CONF("EmulatedLatencyUSec=300000\n"));
        good_connect(&t, &g, 300 * USEC_PER_MSEC);
        b = baseline_take(&t, &g);

        for (unsigned round = 0; round < 4; round++) {
                VarlinkClient *a = tsmd_connect_guest(&t);
                json_object *r = CALL_OK(a, G "OpenContext", NULL);
                int64_t ctx = JINT(r, "context");
                AsyncCall calls[3] = {};

                close(varlink_client_take_fd(a, (size_t) JINT(r, "fileDescriptor")));
                /* DEV1 is released asynchronously after the previous round's hangup. Bound, as
                 * guest requests need. */
                attach_when_free(a, ctx, DEV1);
                CALL_OK(a, G "Bind", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1}", ctx));
                /* Three requests in flight (300 ms each), then gone. */
                for (unsigned i = 0; i < 3; i++)
                        tsmd_call_async(a, G "GuestRequest", request_params(ctx, 1, DEV1, TDISP_MSG_GET_VERSION, 0), 0, &calls[i]);
                tsmd_pump(a, 20 * USEC_PER_MSEC);
                ASSERT_EQ(varlink_client_get_events(a) & POLLOUT, 0);
                for (unsigned i = 0; i < 3; i++) {
                        ASSERT_EQ(calls[i].n, 0);
                        async_call_done(&calls[i]);
                }
                varlink_client_free(a);
                good_check(&g);
        }
        /* Each abandoned request is on record as such, and each bound device's release. */
        tsmd_expect_audit(&t, b.seq, "guest-request", VARLINK_ERROR_DISCONNECTED, 4 * 3);
        tsmd_expect_audit(&t, b.seq, "release", "ok", 4);

        /* Half-close after a request (socat's way of saying it is done): tsmd answers, then lets
         * go of the connection. */
        {
                int fd = raw_open(&t);
                char *m;

                ASSERT_TRUE(raw_call(fd, "{\"method\":\"io.tsmd.Guest.OpenContext\",\"parameters\":{}}"));
                ASSERT_OK(shutdown(fd, SHUT_WR));
                m = tsmd_raw_recv(fd, TSMD_WAIT_USEC);
                ASSERT_NOT_NULL(m);
                ASSERT_NOT_NULL(strstr(m, "\"reclaimToken\""));
                free(m);
                ASSERT_NULL(tsmd_raw_recv(fd, TSMD_WAIT_USEC));
                close(fd);
                good_check(&g);
        }

        /* Mid-stream: subscribe, get the first reply, hang up; and one that never reads while
         * events are generated for it (a device of its process goes away and comes back). */
        int64_t watch_seq = tsmd_audit_last_seq(&t);
        for (unsigned i = 0; i < 5; i++) {
                VarlinkClient *w = tsmd_connect_guest(&t);
                AsyncCall we = {};

                tsmd_call_async(w, G "WatchEvents", NULL, VARLINK_CALL_MORE, &we);
                ASSERT_TRUE(tsmd_async_wait(w, &we, 1, TSMD_WAIT_USEC));
                async_call_done(&we);
                varlink_client_free(w);
        }
        {
                VarlinkClient *w = tsmd_connect_guest(&t), *a = tsmd_connect_guest(&t);
                AsyncCall we = {};
                json_object *r = CALL_OK(a, G "OpenContext", NULL);
                int64_t ctx = JINT(r, "context");

                close(varlink_client_take_fd(a, (size_t) JINT(r, "fileDescriptor")));
                attach_when_free(a, ctx, DEV1);
                tsmd_call_async(w, G "WatchEvents", NULL, VARLINK_CALL_MORE, &we);
                ASSERT_TRUE(tsmd_async_wait(w, &we, 1, TSMD_WAIT_USEC));
                /* The event is queued for w, which hangs up before reading it. */
                ASSERT_TRUE(tsmd_reload(&t, "[Platform]\nMode=emulated\nIommuDevice=/dev/zero\nEmulatedDevices=" DEV2
                                            "\nEmulatedLatencyUSec=300000\n"));
                good_check(&g);
                async_call_done(&we);
                varlink_client_free(w);
                varlink_client_free(a);
                ASSERT_TRUE(tsmd_reload(&t, CONF("EmulatedLatencyUSec=300000\n")));
        }
        /* Each subscription is on record, made when it was; a hang-up on one, its event read or
         * not, is no refusal. */
        {
                _cleanup_json_ json_object *records = tsmd_audit_query(&t, strf("{\"fromSeq\":%" PRIi64 "}", watch_seq + 1));
                size_t n_watch = 0;

                for (size_t i = 0; i < json_object_array_length(records); i++) {
                        json_object *rec = json_object_array_get_idx(records, i);

                        if (streq(JSTR(rec, "event"), "connection"))
                                TEST_FAIL("a hang-up mid-stream was refused: %s", json_object_to_json_string(rec));
                        if (streq(JSTR(rec, "event"), "watch-events")) {
                                ASSERT_STREQ(JSTR(rec, "result"), "ok");
                                n_watch++;
                        }
                }
                ASSERT_EQ(n_watch, 6U);
        }

        /* Past the cancelled requests' completion times. */
        sleep_usec(400 * USEC_PER_MSEC);
        expect_recovered_and_stop(&t, &g, &b);
}

/* Expects a successful reply whose parameters hold (at least) want; returns them (owned). */
static json_object *raw_expect_ok(int fd, const char *want) {
        _cleanup_free_ char *m = tsmd_raw_recv(fd, TSMD_WAIT_USEC);
        json_object *o, *params;

        if (!m)
                TEST_FAIL("tsmd hung up instead of answering");
        o = json_tokener_parse(m);
        ASSERT_NOT_NULL(o);
        if (json_object_object_get_ex(o, "error", NULL) || !json_object_object_get_ex(o, "parameters", &params) ||
            !json_matches(params, want))
                TEST_FAIL("expected parameters %s, got %s", want, m);
        json_object_get(params);
        json_object_put(o);
        return params;
}

/* Sends the calls in one write, so that tsmd reads them all before any answer can come. */
static void raw_send_together(int fd, const char *const *calls, size_t n) {
        char buf[2048];
        size_t len = 0;

        for (size_t i = 0; i < n; i++) {
                size_t k = strlen(calls[i]) + 1;

                ASSERT_LE(len + k, sizeof(buf));
                memcpy(buf + len, calls[i], k);
                len += k;
        }
        ASSERT_TRUE(tsmd_raw_send(fd, buf, len));
}

#define VDEV_CALL(method, ctx) \
        strf("{\"method\":\"" G method "\",\"parameters\":{\"context\":%" PRIi64 ",\"vdeviceId\":1}}", (ctx))

/*
 * A bind is an SPDM exchange the TSM answers when the device has: what a client sends after it
 * meanwhile must not tear the vDevice out from under it. Detach and CloseContext are refused
 * with DeviceBusy until the Bind is answered; a client that hangs up with its Bind in flight is
 * released after it, unbound. Every round starts by checking that the last one left DEV1
 * unlocked.
 */
TEST(lifecycle_calls_raced_against_a_bind) {
        const char *busy = "{\"pciAddress\":\"" DEV1 "\"}";
        Tsmd t;
        Good g;
        Baseline b;

        tsmd_start_config(&t, CONF(""));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);

        for (unsigned round = 0; round < 4; round++) {
                int fd = raw_open(&t);
                uint64_t deadline = now_usec() + TSMD_WAIT_USEC;
                json_object *r;
                int64_t ctx;
                char *m;

                ASSERT_TRUE(raw_call(fd, "{\"method\":\"" G "OpenContext\",\"parameters\":{}}"));
                r = raw_expect_ok(fd, "{}");
                ctx = JINT(r, "context");
                json_object_put(r);
                /* DEV1 is released asynchronously after the previous round. */
                for (;;) {
                        _cleanup_free_ char *reply = NULL;

                        ASSERT_TRUE(raw_call(fd, strf("{\"method\":\"" G "AttachDevice\",\"parameters\":{\"context\":%" PRIi64
                                                      ",\"vdeviceId\":1,\"pciAddress\":\"" DEV1 "\"}}", ctx)));
                        reply = tsmd_raw_recv(fd, TSMD_WAIT_USEC);
                        ASSERT_NOT_NULL(reply);
                        if (!strstr(reply, "\"error\""))
                                break;
                        if (!strstr(reply, E_GUEST("DeviceBusy")) || now_usec() > deadline)
                                TEST_FAIL("AttachDevice(" DEV1 ") in round %u: %s", round, reply);
                        sleep_usec(5 * USEC_PER_MSEC);
                }
                ASSERT_TRUE(raw_call(fd, VDEV_CALL("GetDeviceState", ctx)));
                json_object_put(raw_expect_ok(fd, "{\"state\":\"config_unlocked\",\"bound\":false}"));
                if (round == 3) { /* the check of the last round's hangup */
                        close(fd);
                        break;
                }

                if (round == 2) {
                        /* Gone with the Bind in flight: its release comes after it. */
                        raw_send_together(fd, (const char *[]){ VDEV_CALL("Bind", ctx) }, 1);
                        close(fd);
                        good_check(&g);
                        continue;
                }

                raw_send_together(fd, (const char *[]){ VDEV_CALL("Bind", ctx), VDEV_CALL("DetachDevice", ctx),
                                                        strf("{\"method\":\"" G "CloseContext\",\"parameters\":"
                                                             "{\"context\":%" PRIi64 "}}", ctx),
                                                        VDEV_CALL("Unbind", ctx) },
                                  4);
                json_object_put(raw_expect_ok(fd, "{\"state\":\"config_locked\"}"));
                raw_expect_reply(fd, E_GUEST("DeviceBusy"), busy);
                raw_expect_reply(fd, E_GUEST("DeviceBusy"), busy);
                raw_expect_reply(fd, E_GUEST("DeviceBusy"), busy);
                ASSERT_TRUE(raw_call(fd, VDEV_CALL("GetDeviceState", ctx)));
                json_object_put(raw_expect_ok(fd, "{\"state\":\"config_locked\",\"bound\":true}"));

                /* Answered: now they go through, and release the device unlocked. */
                if (round == 0)
                        ASSERT_TRUE(raw_call(fd, VDEV_CALL("DetachDevice", ctx)));
                else
                        ASSERT_TRUE(raw_call(fd, strf("{\"method\":\"" G "CloseContext\",\"parameters\":"
                                                      "{\"context\":%" PRIi64 "}}", ctx)));
                json_object_put(raw_expect_ok(fd, "{}"));
                ASSERT_TRUE(raw_call(fd, "{\"method\":\"" G "OpenContext\",\"parameters\":{}}"));
                m = tsmd_raw_recv(fd, TSMD_WAIT_USEC); /* still serving this connection */
                ASSERT_NOT_NULL(m);
                free(m);
                close(fd);
                good_check(&g);
        }
        /* Each refusal of rounds 0 and 1 is on record under its name. */
        tsmd_expect_audit(&t, b.seq, "detach", E_GUEST("DeviceBusy"), 2);
        tsmd_expect_audit(&t, b.seq, "close-context", E_GUEST("DeviceBusy"), 2);
        tsmd_expect_audit(&t, b.seq, "unbind", E_GUEST("DeviceBusy"), 2);

        expect_recovered_and_stop(&t, &g, &b);
}

/* ---- connection floods -------------------------------------------------------------------------- */

TEST(connection_flood) {
        Tsmd t;
        Good g;
        Baseline b;
        int mine[3], extra;
        VarlinkClient *nb[3];
        uint64_t start;
        unsigned n_waited = 0;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as a second uid");
        /* 4 per uid, 6 in all; the good client (root) is one of them. */
        tsmd_start_config(&t, CONF("[Varlink]\nMaxConnections=6\nMaxConnectionsPerUid=4\n"));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        good_during_start(&g);

        /* Root fills its share: 3 more are served. */
        for (unsigned i = 0; i < 3; i++) {
                mine[i] = raw_open(&t);
                raw_expect_alive(mine[i]);
        }
        /* Past MaxConnectionsPerUid: each extra one is refused by name and closed at once. */
        for (unsigned i = 0; i < 20; i++) {
                extra = raw_open(&t);
                start = now_usec();
                (void) raw_call(extra, "{\"method\":\"io.tsmd.Guest.OpenContext\",\"parameters\":{}}");
                if (!raw_refused(extra, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID, g.bound_usec))
                        TEST_FAIL("connection %u past MaxConnectionsPerUid was not refused", i);
                ASSERT_LE(now_usec() - start, g.bound_usec);
                close(extra);
        }
        /* Another uid gets the 2 slots left in all... */
        for (unsigned i = 0; i < 2; i++) {
                nb[i] = tsmd_connect_as(&t, NOBODY, NOBODY);
                CALL_ERROR(nb[i], G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        }
        /* ...and no more: past MaxConnections. */
        nb[2] = tsmd_connect_as(&t, NOBODY, NOBODY);
        ASSERT_TRUE(tsmd_wait_hangup(nb[2], g.bound_usec));
        varlink_client_free(nb[2]);
        nb[2] = tsmd_connect_as(&t, NOBODY - 1, NOBODY - 1);
        ASSERT_TRUE(tsmd_wait_hangup(nb[2], g.bound_usec));
        varlink_client_free(nb[2]);

        /* A root flooder leaves: its slot is free for the other uid. */
        close(mine[0]);
        {
                uint64_t deadline = now_usec() + TSMD_WAIT_USEC;
                for (;;) {
                        nb[2] = tsmd_connect_as(&t, NOBODY, NOBODY);
                        if (!tsmd_wait_hangup(nb[2], 100 * USEC_PER_MSEC))
                                break;
                        n_waited++;
                        varlink_client_free(nb[2]);
                        if (now_usec() > deadline)
                                TEST_FAIL("the slot of a closed connection did not free up");
                }
                CALL_ERROR(nb[2], G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        }
        good_during_stop(&g, "connections past MaxConnectionsPerUid= and MaxConnections=");

        /* Everyone leaves but the good client: root may open its 3 again. */
        close(mine[1]);
        close(mine[2]);
        for (unsigned i = 0; i < 3; i++)
                varlink_client_free(nb[i]);
        ASSERT_EQ(tsmd_wait_fds(&t, b.fds, TSMD_WAIT_USEC), b.fds);

        /* Every refused connection is on record, under its uid and the limit it hit. */
        tsmd_expect_audit(&t, b.seq, "connection", VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID, 20);
        {
                json_object *records = refused_connections(&t, b.seq, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
                size_t n = json_object_array_length(records);

                /* Two past MaxConnections, and each the wait for a free slot met. */
                ASSERT_EQ(n, 2U + n_waited);
                for (size_t i = 0; i < n; i++) {
                        int64_t uid = JINT(json_object_array_get_idx(records, i), "uid");
                        ASSERT_TRUE(uid == NOBODY || uid == NOBODY - 1);
                }
                json_object_put(records);
        }
        for (unsigned i = 0; i < 3; i++) {
                mine[i] = raw_open(&t);
                raw_expect_alive(mine[i]);
        }
        for (unsigned i = 0; i < 3; i++)
                close(mine[i]);

        expect_recovered_and_stop(&t, &g, &b);
}

/*
 * SECURITY: anyone may connect to the guest socket, and one user may present many uids (its
 * subordinate ones, through newuidmap). Uids the policy names no rule for, each within
 * MaxConnectionsPerUid= and having called (so none is idle for a newcomer), share
 * MaxUnnamedConnections=: past it their new connections are refused by name with that limit,
 * on record with the reason, and a VMM of a uid the policy names (65534, by the fixture's
 * policy) still connects and opens a context. A share's slot freed is an unnamed caller's again.
 */
#define UNNAMED_SHARE 4
#define UNNAMED_UIDS 4 /* of 2 connections each: 8, what MaxConnections= leaves the good client */

/* The connections tsmd has open, as GetStatus counts them (the asking one included). */
static int64_t status_connections(VarlinkClient *admin) {
        return JINT(CALL_OK(admin, "io.tsmd.Service.GetStatus", NULL), "connections");
}

TEST(unnamed_uids_leave_room_for_named_callers) {
        VarlinkClient *unnamed[UNNAMED_UIDS][2] = {}, *named, *again, *admin;
        json_object *records;
        size_t n_admitted = 0, n_refused = 0;
        int64_t ctx, n_open;
        Good g;
        Baseline b;
        Tsmd t;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as other uids");
        tsmd_start_config(&t, CONF("[Varlink]\nMaxConnections=9\nMaxConnectionsPerUid=2\n"
                                   "MaxUnnamedConnections=" STRINGIFY(UNNAMED_SHARE) "\n"));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        good_during_start(&g);

        /* Uids 65530 to 65533 each open two connections and call: the first four are served,
         * then every one is refused, whatever its uid, with the limit. */
        for (unsigned u = 0; u < UNNAMED_UIDS; u++)
                for (unsigned i = 0; i < 2; i++) {
                        VarlinkClient *c = tsmd_connect_as(&t, NOBODY - 1 - u, NOBODY - 1 - u);

                        unnamed[u][i] = c;
                        if (n_admitted < UNNAMED_SHARE) {
                                CALL_OK(c, "io.tsmd.Service.Ping", NULL);
                                n_admitted++;
                                continue;
                        }
                        CALL_ERROR(c, "io.tsmd.Service.Ping", NULL, VARLINK_REFUSED_TOO_MANY_CONNECTIONS,
                                   "{\"maxUnnamedConnections\":" STRINGIFY(UNNAMED_SHARE) "}");
                        ASSERT_TRUE(tsmd_wait_hangup(c, TSMD_WAIT_USEC));
                        n_refused++;
                }

        /* A VMM of a uid the policy names is refused by MaxConnections= alone: it gets in. */
        named = tsmd_connect_as(&t, NOBODY, NOBODY);
        ctx = guest_open_context(named);
        ASSERT_TRUE(ctx > 0);
        good_during_stop(&g, "uids the policy does not name at their share of connections");

        /* An unnamed caller's slot freed, once tsmd saw the close, is another's. */
        admin = tsmd_connect(&t);
        n_open = status_connections(admin);
        varlink_client_free(unnamed[0][0]);
        unnamed[0][0] = NULL;
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC; status_connections(admin) != n_open - 1;
             sleep_usec(10 * USEC_PER_MSEC))
                if (now_usec() > deadline)
                        TEST_FAIL("tsmd did not see an unnamed caller's connection close");
        again = tsmd_connect_as(&t, NOBODY - 1 - UNNAMED_UIDS, NOBODY - 1 - UNNAMED_UIDS);
        CALL_OK(again, "io.tsmd.Service.Ping", NULL);
        varlink_client_free(admin);

        /* Every refusal on record under its uid, with the reason. */
        records = refused_connections_at_least(&t, VARLINK_REFUSED_TOO_MANY_CONNECTIONS, n_refused);
        ASSERT_EQ(json_object_array_length(records), n_refused);
        for (size_t i = 0; i < n_refused; i++) {
                json_object *rec = json_object_array_get_idx(records, i);
                int64_t uid = JINT(rec, "uid");

                /* The two uids past the share's four connections. */
                ASSERT_TRUE(uid == NOBODY - 3 || uid == NOBODY - 4);
                ASSERT_NOT_NULL(strstr(JSTR(rec, "reason"), "unnamed callers"));
        }
        json_object_put(records);

        CALL_OK(named, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx));
        varlink_client_free(named);
        varlink_client_free(again);
        for (unsigned u = 0; u < UNNAMED_UIDS; u++)
                for (unsigned i = 0; i < 2; i++)
                        varlink_client_free(unnamed[u][i]);
        expect_recovered_and_stop(&t, &g, &b);
}

/*
 * SECURITY: anyone may have connections refused as fast as it connects. Past
 * RefusalRecordsPerUid= in a refusal interval, a uid's are counted in a summary record (its
 * "count" the connections it stands for), not written one by one: every one is on record, and
 * the flood writes a few records, not one each.
 */
#define REFUSED_CONNS 30U
#define REFUSAL_BUDGET 4
#define REFUSAL_INTERVAL_SEC 2

TEST(connection_refusals_past_the_budget_are_summarized) {
        size_t individual = 0, summarized = 0, n_summaries = 0;
        uint64_t start, intervals;
        json_object *records;
        int mine[2], extra;
        Tsmd t;

        tsmd_start_config(&t, CONF("[Varlink]\nMaxConnectionsPerUid=2\n[Audit]\nRefusalRecordsPerUid=" STRINGIFY(REFUSAL_BUDGET)
                                   "\nRefusalIntervalSec=" STRINGIFY(REFUSAL_INTERVAL_SEC) "\n"));
        for (unsigned i = 0; i < ELEMENTSOF(mine); i++) {
                mine[i] = raw_open(&t);
                raw_expect_alive(mine[i]);
        }
        start = now_usec();
        for (unsigned i = 0; i < REFUSED_CONNS; i++) {
                extra = raw_open(&t);
                (void) raw_call(extra, "{\"method\":\"io.tsmd.Guest.OpenContext\",\"parameters\":{}}");
                if (!raw_refused(extra, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID, TSMD_WAIT_USEC))
                        TEST_FAIL("connection %u past MaxConnectionsPerUid was not refused", i);
                close(extra);
        }
        /* The interval starts with the first refusal: one, unless the flood outlasted it. */
        intervals = (now_usec() - start) / (REFUSAL_INTERVAL_SEC * USEC_PER_SEC) + 1;
        for (unsigned i = 0; i < ELEMENTSOF(mine); i++)
                close(mine[i]);

        /* Every one on record, once the interval's summary is written... */
        tsmd_expect_audit(&t, 0, "connection", VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID, REFUSED_CONNS);
        /* ...most of them in it. */
        records = refused_connections(&t, 0, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID);
        for (size_t i = 0; i < json_object_array_length(records); i++) {
                json_object *rec = json_object_array_get_idx(records, i), *count;

                ASSERT_EQ(JINT(rec, "uid"), (int64_t) getuid());
                if (json_object_object_get_ex(rec, "count", &count)) {
                        summarized += (size_t) json_object_get_int64(count);
                        n_summaries++;
                } else
                        individual++;
        }
        json_object_put(records);
        fprintf(stderr, "# %u refused connections in %" PRIu64 " interval(s): %zu recorded one by one, %zu in %zu summaries\n",
                REFUSED_CONNS, intervals, individual, summarized, n_summaries);
        ASSERT_LE(individual, (size_t) (REFUSAL_BUDGET * intervals));
        ASSERT_EQ(individual + summarized, (size_t) REFUSED_CONNS);
        ASSERT_GE(n_summaries, 1U);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/* The cgroup2 hierarchy's root, where nothing manages cgroups (the test sits in the root
 * cgroup) and the test may make its own; NULL elsewhere. */
static const char *unmanaged_cgroup2_root(void) {
        static const char *const candidates[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        bool in_root = false;
        struct statfs fs;
        FILE *f;

        if (geteuid() != 0)
                return NULL;
        f = fopen("/proc/self/cgroup", "re");
        if (!f)
                return NULL;
        while (getline(&line, &size, f) > 0)
                in_root = in_root || streq(line, "0::/\n");
        fclose(f);
        if (!in_root)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(candidates); i++)
                if (statfs(candidates[i], &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC)
                        return candidates[i];
        return NULL;
}

/* The record of a connection refused for what it sent (here invalid UTF-8) names the unit of
 * the process that made it, as the records of its calls would: one of a cgroup made for the
 * test. (One refused at admission, past a connection limit, has none: no byte of it was read,
 * nor its identity.) */
TEST(refused_connection_record_names_its_unit) {
        static const char bad_utf8[] = "{\"method\":\"io.tsmd.Guest.CloseContext\",\"parameters\":{\"context\":1,\"x\":\"\xc0\xaf\"}}";
        const char *root = unmanaged_cgroup2_root();
        char slice[256], service[512], procs[600], unit[64];
        json_object *records;
        int status;
        pid_t pid;
        Tsmd t;

        if (!root)
                SKIP("needs root in the root cgroup of a cgroup2 hierarchy, to put a client in a unit");
        /* tsmd reports a unit only where a pidfd proves it is the peer's (valgrind 3.19 knows
         * no pidfd_open()). */
        if (tsmd_under_valgrind())
                SKIP("under valgrind tsmd cannot prove a peer's unit");
        {
                int pidfd = (int) syscall(SYS_pidfd_open, getpid(), 0);

                if (pidfd < 0)
                        SKIP("no pidfd_open(): tsmd reports no unit");
                close(pidfd);
        }
        snprintf(unit, sizeof(unit), "vm-refused-%d.service", (int) getpid());
        snprintf(slice, sizeof(slice), "%s/tsmd-test-%d.slice", root, (int) getpid());
        snprintf(service, sizeof(service), "%s/%s", slice, unit);
        snprintf(procs, sizeof(procs), "%s/cgroup.procs", service);
        if (mkdir(slice, 0755) < 0)
                SKIP("cannot create cgroup %s: %m", slice);
        if (mkdir(service, 0755) < 0) {
                (void) rmdir(slice);
                SKIP("cannot create cgroup %s: %m", service);
        }

        tsmd_start_config(&t, CONF(""));
        fflush(NULL);
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                /* In the unit until tsmd hung up: it read the unit by its pid. */
                char self[32];
                int fd = open(procs, O_WRONLY | O_CLOEXEC), n = snprintf(self, sizeof(self), "%d", (int) getpid());

                if (fd < 0 || write(fd, self, (size_t) n) != n)
                        _exit(2);
                close(fd);
                fd = tsmd_raw_connect(t.guest_socket);
                if (fd < 0)
                        _exit(3);
                (void) tsmd_raw_send(fd, bad_utf8, sizeof(bad_utf8));
                _exit(raw_told(fd, VARLINK_REFUSED_MALFORMED_MESSAGE, "{}", TSMD_WAIT_USEC) ? 0 : 1);
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        (void) rmdir(service);
        (void) rmdir(slice);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        tsmd_expect_audit(&t, 0, "connection", VARLINK_REFUSED_MALFORMED_MESSAGE, 1);
        records = refused_connections(&t, 0, VARLINK_REFUSED_MALFORMED_MESSAGE);
        ASSERT_EQ(json_object_array_length(records), 1U);
        ASSERT_EQ(JINT(json_object_array_get_idx(records, 0), "pid"), pid);
        ASSERT_STREQ(JSTR(json_object_array_get_idx(records, 0), "unit"), unit);
        json_object_put(records);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/*
 * A client in 65536 supplementary groups (NGROUPS_MAX: a rootless container's subordinate gids
 * make that many) holding GROUP_CONNS connections: each keeps of its groups those the policy
 * names, not 256 KiB for as long as it lasts. The worker's memory grows with the connections as
 * much as for a client in no group, where it took 50 MiB more.
 */
#define GROUP_CONNS 200U
#define GROUP_BASE 100000U
/* What the connections of the client in 65536 groups may cost more than those of one in none:
 * 20 KiB each (the groups took 256 KiB). */
#define GROUP_SLACK_KIB (GROUP_CONNS * 20UL)

static gid_t many_groups[65536];

/* How much tsmd's anonymous memory grew while a client of uid nobody in groups[] held
 * GROUP_CONNS connections, each served a call. */
static unsigned long groups_round(Tsmd *t, const Baseline *b, const gid_t *groups, size_t n_groups) {
        unsigned long before, held;
        int ready[2], stop[2], status;
        char byte;
        pid_t pid;

        ASSERT_OK(pipe2(ready, O_CLOEXEC));
        ASSERT_OK(pipe2(stop, O_CLOEXEC));
        before = tsmd_anon_kib(t);
        fflush(NULL);
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                int fds[GROUP_CONNS];

                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(ready[0]);
                close(stop[1]);
                if (setgroups(n_groups, groups) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
                    setresuid(NOBODY, NOBODY, NOBODY) < 0)
                        _exit(2);
                for (unsigned i = 0; i < GROUP_CONNS; i++) {
                        _cleanup_free_ char *reply = NULL;

                        fds[i] = raw_open(t);
                        if (!raw_call(fds[i], "{\"method\":\"org.varlink.service.GetInfo\"}"))
                                _exit(3);
                        reply = tsmd_raw_recv(fds[i], TSMD_WAIT_USEC);
                        if (!reply || !strstr(reply, "\"parameters\""))
                                _exit(4);
                }
                if (write(ready[1], "R", 1) != 1)
                        _exit(5);
                while (read(stop[0], &byte, 1) < 0 && errno == EINTR)
                        ;
                _exit(0);
        }
        close(ready[1]);
        close(stop[0]);
        if (read(ready[0], &byte, 1) != 1) {
                ASSERT_EQ(waitpid(pid, &status, 0), pid);
                TEST_FAIL("the client in %zu groups failed (status 0x%x)", n_groups, status);
        }
        held = tsmd_anon_kib(t);
        close(stop[1]);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        close(ready[0]);
        ASSERT_EQ(tsmd_wait_fds(t, b->fds, TSMD_WAIT_USEC), b->fds);
        return held > before ? held - before : 0;
}

TEST(connections_of_a_client_in_65536_groups) {
        /* A rule naming one of its groups: they are read, and one kept. */
        static const TsmdFile files[] = {
                { "policy.conf", "[Client:tests]\nUsers=root 65534\nDevices=*\nScopes=info state-change\n"
                                 "[Client:grouped]\nGroups=100005\nDevices=" DEV1 "\n" },
        };
        unsigned long none, many;
        Tsmd t;
        Good g;
        Baseline b;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as a client in 65536 groups");
        if (sysconf(_SC_NGROUPS_MAX) < (long) ELEMENTSOF(many_groups))
                SKIP("NGROUPS_MAX is %ld", sysconf(_SC_NGROUPS_MAX));
        tsmd_start(&t, &(TsmdOptions) { .config = CONF(""), .files = files, .n_files = ELEMENTSOF(files) });
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);

        for (size_t i = 0; i < ELEMENTSOF(many_groups); i++)
                many_groups[i] = GROUP_BASE + (gid_t) i;
        none = groups_round(&t, &b, NULL, 0);
        good_check(&g);
        many = groups_round(&t, &b, many_groups, ELEMENTSOF(many_groups));
        good_check(&g);
        fprintf(stderr, "# %u connections held: +%lu KiB in no group, +%lu KiB in 65536\n", GROUP_CONNS, none, many);
#if !TSMD_SANITIZED
        /* Under valgrind, RSS is valgrind's; its leak check speaks instead. ASan holds what was
         * freed (the groups read at connect time) in its quarantine. */
        if (!tsmd_under_valgrind())
                ASSERT_LE(many, none + GROUP_SLACK_KIB);
#endif
        expect_recovered_and_stop(&t, &g, &b);
}

/*
 * One uid's unfinished messages are bounded together (MaxBufferedPerUid=), and everybody's
 * (MaxBuffered=), not only each connection's: nobody's connections each hold a partial message
 * within MaxMessageSize until their sum passes the budget; each one past it is closed and
 * audited under nobody's uid. Root's good client is not affected, and what was held is given
 * back.
 */
static void buffered_round(const char *limits, const char *refusal) {
        static char partial[60000];
        VarlinkClient *nb[12];
        unsigned closed = 0;
        Tsmd t;
        Good g;
        Baseline b;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as a second uid");
        tsmd_start_config(&t, strf("%s[Varlink]\nMaxMessageSize=64K\nMaxOutputSize=64K\n%s", CONF(""), limits));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        good_during_start(&g);

        memset(partial, ' ', sizeof(partial));
        partial[0] = '{';
        for (unsigned i = 0; i < ELEMENTSOF(nb); i++) {
                nb[i] = tsmd_connect_as(&t, NOBODY, NOBODY);
                ASSERT_EQ(send(varlink_client_get_fd(nb[i]), partial, sizeof(partial), MSG_NOSIGNAL),
                          (ssize_t) sizeof(partial));
                sleep_usec(20 * USEC_PER_MSEC);
        }
        /* 8 x 60,000 bytes fit into 512 KiB, a ninth does not. */
        for (unsigned i = 0; i < ELEMENTSOF(nb); i++)
                if (tsmd_wait_hangup(nb[i], 200 * USEC_PER_MSEC)) {
                        ASSERT_GE(i, 8U);
                        closed++;
                }
        ASSERT_EQ(closed, ELEMENTSOF(nb) - 8);
        good_during_stop(&g, refusal);
        {
                json_object *records = refused_connections(&t, b.seq, refusal);

                ASSERT_EQ(json_object_array_length(records), ELEMENTSOF(nb) - 8);
                for (size_t i = 0; i < json_object_array_length(records); i++)
                        ASSERT_EQ(JINT(json_object_array_get_idx(records, i), "uid"), (int64_t) NOBODY);
                json_object_put(records);
        }
        for (unsigned i = 0; i < ELEMENTSOF(nb); i++)
                varlink_client_free(nb[i]);
        expect_recovered_and_stop(&t, &g, &b);
}

TEST(buffered_per_uid_flood) {
        buffered_round("MaxBufferedPerUid=512K\n", VARLINK_REFUSED_TOO_MUCH_BUFFERED_PER_UID);
}

/* The same past everybody's budget, each uid's far from its own. */
TEST(buffered_total_flood) {
        buffered_round("MaxBufferedPerUid=16M\nMaxBuffered=512K\n", VARLINK_REFUSED_TOO_MUCH_BUFFERED);
}

/* The worker's peak RSS (VmHWM), KiB. */
static unsigned long worker_hwm_kib(Tsmd *t) {
        _cleanup_free_ char *s = read_file(strf("/proc/%d/status", (int) tsmd_worker_pid(t)));
        const char *p = s ? strstr(s, "VmHWM:") : NULL;

        if (!p)
                TEST_FAIL("no VmHWM for tsmd's worker");
        return strtoul(p + strlen("VmHWM:"), NULL, 10);
}

/* A connection as nobody if we can switch uids (a user with no policy rule at all), else ours;
 * its fd, owned by *ret_client (NULL: the fd is ours to close). */
static int bomb_open(Tsmd *t, VarlinkClient **ret_client) {
        *ret_client = NULL;
        if (!tsmd_can_switch_uid())
                return raw_open(t);
        *ret_client = tsmd_connect_as(t, NOBODY, NOBODY);
        return varlink_client_get_fd(*ret_client);
}

#define BOMBS 4
#define BOMB_SIZE (8U << 20)

/* Messages of nothing but JSON values ("[0,0,0,...]"), from any local user, policy or not: json-c
 * would make an object of each, ~40 times the message in memory and seconds of the worker's
 * loop per message (four of 16 MiB at once got the worker killed as unresponsive). They are
 * refused by MaxJsonValues= before json-c sees them, all arriving in the same round of the
 * loop, while the good client is served in time and the worker's peak memory stays near
 * what the messages themselves take. */
TEST(json_value_bomb) {
        VarlinkClient *owners[BOMBS];
        int fds[BOMBS];
        unsigned long hwm0, hwm1;
        char *bomb;
        size_t n;
        Tsmd t;
        Good g;
        Baseline b;

        /* This test measures memory a worker gives back; MALLOC_PERTURB_ (meson sets one at
         * random) has malloc() write every byte it hands out, so pages a worker never touches
         * would count. */
        tsmd_start(&t, &(TsmdOptions) { .config = CONF(""), .env = (const char *const[]){ "MALLOC_PERTURB_=0", NULL } });
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        hwm0 = worker_hwm_kib(&t);

        bomb = malloc(BOMB_SIZE);
        ASSERT_NOT_NULL(bomb);
        n = (size_t) snprintf(bomb, BOMB_SIZE, "{\"method\":\"io.tsmd.Guest.Nope\",\"parameters\":{\"a\":[0");
        for (; n + 6 < BOMB_SIZE; n += 2)
                memcpy(bomb + n, ",0", 2);
        memcpy(bomb + n, "]}}", 4);
        n += 4;

        /* All but the NULs first, then the NULs back to back: the worker completes them
         * together. */
        good_during_start(&g);
        for (unsigned i = 0; i < BOMBS; i++) {
                fds[i] = bomb_open(&t, &owners[i]);
                ASSERT_TRUE(tsmd_raw_send(fds[i], bomb, n - 1));
        }
        for (unsigned i = 0; i < BOMBS; i++)
                ASSERT_TRUE(tsmd_raw_send(fds[i], "", 1));
        for (unsigned i = 0; i < BOMBS; i++) {
                ASSERT_TRUE(raw_told(fds[i], VARLINK_REFUSED_TOO_MANY_JSON_VALUES, "{\"maxJsonValues\":4096}", TSMD_WAIT_USEC));
                if (owners[i])
                        varlink_client_free(owners[i]);
                else
                        close(fds[i]);
        }
        free(bomb);
        good_during_stop(&g, "JSON value bombs");
        hwm1 = worker_hwm_kib(&t);
        fprintf(stderr, "# %u value bombs of %u MiB: worker VmHWM %lu -> %lu KiB\n", BOMBS, BOMB_SIZE >> 20, hwm0, hwm1);
        if (tsmd_can_switch_uid()) {
                uint64_t deadline = now_usec() + TSMD_WAIT_USEC;
                json_object *records;

                /* Written after the hang-up: nothing waits for them. */
                for (;;) {
                        records = refused_connections(&t, b.seq, VARLINK_REFUSED_TOO_MANY_JSON_VALUES);
                        if (json_object_array_length(records) >= BOMBS || now_usec() > deadline)
                                break;
                        json_object_put(records);
                        sleep_usec(10 * USEC_PER_MSEC);
                }
                ASSERT_EQ(json_object_array_length(records), BOMBS);
                for (size_t i = 0; i < BOMBS; i++)
                        ASSERT_EQ(JINT(json_object_array_get_idx(records, i), "uid"), (int64_t) NOBODY);
                json_object_put(records);
        } else
                expect_hangups_audited(&t, b.seq, VARLINK_REFUSED_TOO_MANY_JSON_VALUES, BOMBS);
#if !TSMD_SANITIZED
        /* The messages are buffered (and each made contiguous once to be checked): about twice
         * their size. Parsed, one alone would be hundreds of MiB. */
        if (!tsmd_under_valgrind())
                ASSERT_LE(hwm1, hwm0 + 3 * BOMBS * (BOMB_SIZE >> 10));
#endif
        expect_recovered_and_stop(&t, &g, &b);
}

#define PARKERS 6

/* Fds sent with the start of a message that never ends are parked in the worker's fd table for
 * MessageTimeoutSec=: 79 such connections of one uid once filled a table of 20000 and the
 * worker could accept nobody. Per uid (MaxFdsPerUid=, 1024 by default: four messages of 253)
 * and over all clients (MaxFds=), the read that goes past is refused by name and its connection
 * closed with its fds; the others' stay parked until they go, and the good client and new
 * connections are served throughout. */
static void fds_parked_round(const char *config, unsigned n_kept, const char *refusal) {
        static const char start[] = "{\"method\":\"io.tsmd.Guest.CloseContext\",\"parameters\":";
        int fds[PARKERS], probe;
        unsigned n_closed = 0;
        Tsmd t;
        Good g;
        Baseline b;

        tsmd_start_config(&t, config);
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        good_during_start(&g);

        for (unsigned i = 0; i < PARKERS; i++) {
                fds[i] = raw_open(&t);
                (void) send_with_fds(fds[i], start, sizeof(start) - 1, 253, -1);
                sleep_usec(20 * USEC_PER_MSEC);
        }
        for (unsigned i = 0; i < PARKERS; i++)
                if (raw_closed_silently(fds[i], 200 * USEC_PER_MSEC)) {
                        ASSERT_GE(i, n_kept);
                        n_closed++;
                }
        ASSERT_EQ(n_closed, PARKERS - n_kept);
        good_during_stop(&g, refusal);
        expect_hangups_audited(&t, b.seq, refusal, PARKERS - n_kept);
        /* What is parked is the kept connections' and their fds, nothing of the refused. */
        ASSERT_EQ(tsmd_wait_fds(&t, b.fds + n_kept * 254, TSMD_WAIT_USEC), b.fds + n_kept * 254);

        /* New connections are accepted and served meanwhile. */
        probe = raw_open(&t);
        raw_expect_alive(probe);
        close(probe);
        good_check(&g);

        for (unsigned i = 0; i < PARKERS; i++)
                close(fds[i]);
        expect_recovered_and_stop(&t, &g, &b);
}

TEST(fds_parked_per_uid) {
        fds_parked_round(CONF(""), 4, VARLINK_REFUSED_TOO_MANY_FDS_PER_UID);
}

TEST(fds_parked_total) {
        fds_parked_round(CONF("[Varlink]\nMaxFds=600\n"), 2, VARLINK_REFUSED_TOO_MANY_FDS);
}

/* Unprivileged uids holding every MaxConnections= slot (connections idle after a call, which no
 * timeout closes: VMMs hold theirs so) do not lock the administrator out: the admin socket's
 * connections count against MaxAdminConnections= alone, and take none of the guests'. */
TEST(connection_flood_leaves_the_admin_socket) {
        VarlinkClient *nb[4], *admin[2], *extra;
        Tsmd t;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as a second uid");
        tsmd_start_config(&t, CONF("[Varlink]\nMaxConnections=4\nMaxConnectionsPerUid=2\nMaxAdminConnections=2\nMaxUnnamedConnections=3\n"));
        for (unsigned i = 0; i < ELEMENTSOF(nb); i++) {
                nb[i] = tsmd_connect_as(&t, NOBODY - i / 2, NOBODY - i / 2);
                CALL_ERROR(nb[i], G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        }
        extra = tsmd_connect_guest(&t);
        ASSERT_TRUE(tsmd_wait_hangup(extra, TSMD_WAIT_USEC));
        varlink_client_free(extra);

        for (unsigned i = 0; i < ELEMENTSOF(admin); i++) {
                admin[i] = tsmd_connect(&t);
                CALL_OK(admin[i], "io.tsmd.Service.Ping", NULL);
        }
        /* The admin socket's refusal is named as the guest socket's is. */
        extra = tsmd_connect(&t);
        CALL_ERROR(extra, "io.tsmd.Service.Ping", NULL, VARLINK_REFUSED_TOO_MANY_CONNECTIONS, NULL);
        ASSERT_TRUE(tsmd_wait_hangup(extra, TSMD_WAIT_USEC));
        varlink_client_free(extra);
        for (unsigned i = 0; i < ELEMENTSOF(nb); i++)
                CALL_ERROR(nb[i], G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);

        for (unsigned i = 0; i < ELEMENTSOF(admin); i++)
                varlink_client_free(admin[i]);
        for (unsigned i = 0; i < ELEMENTSOF(nb); i++)
                varlink_client_free(nb[i]);
        tsmd_expect_audit(&t, 0, "connection", VARLINK_REFUSED_TOO_MANY_CONNECTIONS, 2);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/* Those the admin socket's mode lets in who do not administer (the audit readers of its group)
 * holding every MaxAdminConnections= slot, idle after a call, do not lock an administrator out:
 * root, a uid [Admin] Users= names, a member of a group [Admin] Groups= names each take the place
 * of one of theirs (the one idle longest), which is told so by name (its next call's answer) and
 * on record with the reason. Only administrators holding every slot turn one away. */
TEST(admin_socket_full_of_non_administrators_lets_administrators_in) {
        static const TsmdFile files[] = {
                { "policy.conf", "[Client:tests]\nUsers=root 65534\nDevices=*\n"
                                 "[Admin]\nUsers=65533\nGroups=100007\n" },
        };
        static const gid_t admin_group[] = { 100007 };
        VarlinkClient *nb[3], *admin[3], *extra;
        json_object *records;
        Tsmd t;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as other uids");
        tsmd_start(&t, &(TsmdOptions) { .config = CONF("[Varlink]\nMaxAdminConnections=3\n"), .files = files,
                                        .n_files = ELEMENTSOF(files) });
        /* gid 0: the group the test's admin socket belongs to, as tsm-admin is the shipped one's. */
        for (unsigned i = 0; i < ELEMENTSOF(nb); i++) {
                nb[i] = tsmd_connect_to_as(&t, t.socket, NOBODY, 0);
                CALL_OK(nb[i], "io.tsmd.Service.Ping", NULL);
        }
        extra = tsmd_connect_to_as(&t, t.socket, NOBODY, 0);
        CALL_ERROR(extra, "io.tsmd.Service.Ping", NULL, VARLINK_REFUSED_TOO_MANY_CONNECTIONS, NULL);
        varlink_client_free(extra);

        admin[0] = tsmd_connect(&t);
        CALL_OK(admin[0], "io.tsmd.Admin.ListClients", NULL);
        CALL_ERROR(nb[0], "io.tsmd.Service.Ping", NULL, VARLINK_REFUSED_TOO_MANY_CONNECTIONS, NULL);
        ASSERT_TRUE(tsmd_wait_hangup(nb[0], TSMD_WAIT_USEC));
        admin[1] = tsmd_connect_to_as(&t, t.socket, 65533, 0);
        CALL_OK(admin[1], "io.tsmd.Admin.ListClients", NULL);
        CALL_ERROR(nb[1], "io.tsmd.Service.Ping", NULL, VARLINK_REFUSED_TOO_MANY_CONNECTIONS, NULL);
        ASSERT_TRUE(tsmd_wait_hangup(nb[1], TSMD_WAIT_USEC));
        admin[2] = tsmd_connect_to_as_groups(&t, t.socket, 65532, 0, admin_group, ELEMENTSOF(admin_group));
        CALL_OK(admin[2], "io.tsmd.Admin.ListClients", NULL);
        CALL_ERROR(nb[2], "io.tsmd.Service.Ping", NULL, VARLINK_REFUSED_TOO_MANY_CONNECTIONS, NULL);
        ASSERT_TRUE(tsmd_wait_hangup(nb[2], TSMD_WAIT_USEC));

        /* Administrators hold every slot: nobody takes one of theirs, not even root. */
        extra = tsmd_connect(&t);
        CALL_ERROR(extra, "io.tsmd.Service.Ping", NULL, VARLINK_REFUSED_TOO_MANY_CONNECTIONS, NULL);
        varlink_client_free(extra);
        extra = tsmd_connect_to_as(&t, t.socket, NOBODY, 0);
        CALL_ERROR(extra, "io.tsmd.Service.Ping", NULL, VARLINK_REFUSED_TOO_MANY_CONNECTIONS, NULL);
        varlink_client_free(extra);
        for (unsigned i = 0; i < ELEMENTSOF(admin); i++)
                CALL_OK(admin[i], "io.tsmd.Service.Ping", NULL);

        for (unsigned i = 0; i < ELEMENTSOF(admin); i++)
                varlink_client_free(admin[i]);
        for (unsigned i = 0; i < ELEMENTSOF(nb); i++)
                varlink_client_free(nb[i]);
        /* The three closed for administrators are on record under their uid, as the refused are. */
        records = refused_connections_at_least(&t, VARLINK_REFUSED_TOO_MANY_CONNECTIONS, 6);
        ASSERT_EQ(json_object_array_length(records), 6U);
        for (size_t i = 0; i < 6; i++) {
                json_object *rec = json_object_array_get_idx(records, i), *reason = NULL;
                static const uid_t for_whom[] = { 0, 65533, 65532 };

                ASSERT_EQ(JINT(rec, "uid"), i == 4 ? 0 : (int64_t) NOBODY);
                /* Those closed for an administrator say so, naming whom; the refused do not. */
                if (i >= 1 && i <= 3)
                        ASSERT_STREQ(JSTR(rec, "reason"),
                                     strf("closed to make room for administrator uid %u (admin connection limit 3 "
                                          "reached)",
                                          (unsigned) for_whom[i - 1]));
                else
                        ASSERT_FALSE(json_object_object_get_ex(rec, "reason", &reason));
        }
        json_object_put(records);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/* One uid that may connect to the admin socket without administering (an audit reader of its
 * group) cannot keep the others from GetStatus and QueryAudit: past MaxAdminConnectionsPerUid=
 * it is refused TooManyConnectionsPerUid (on record under its uid, as on the guest socket), and
 * another such uid still gets in. Administrators are not bound by it: root holds more, and,
 * the socket full, takes a non-administrator's place. A reload's lower value applies to the
 * next connections. */
TEST(admin_socket_per_uid_limit_leaves_room_for_other_readers) {
        VarlinkClient *nb[2], *other[2], *root[3], *extra;
        json_object *records;
        Tsmd t;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as other uids");
        tsmd_start_config(&t, CONF("[Varlink]\nMaxAdminConnections=6\nMaxAdminConnectionsPerUid=2\n"));
        /* gid 0: the group the test's admin socket belongs to, as tsm-admin is the shipped one's. */
        for (unsigned i = 0; i < ELEMENTSOF(nb); i++) {
                nb[i] = tsmd_connect_to_as(&t, t.socket, NOBODY, 0);
                CALL_OK(nb[i], "io.tsmd.Service.GetStatus", NULL);
        }
        for (unsigned i = 0; i < 2; i++) {
                extra = tsmd_connect_to_as(&t, t.socket, NOBODY, 0);
                CALL_ERROR(extra, "io.tsmd.Service.GetStatus", NULL, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID, NULL);
                ASSERT_TRUE(tsmd_wait_hangup(extra, TSMD_WAIT_USEC));
                varlink_client_free(extra);
        }
        for (unsigned i = 0; i < ELEMENTSOF(other); i++) {
                other[i] = tsmd_connect_to_as(&t, t.socket, NOBODY - 3, 0);
                CALL_OK(other[i], "io.tsmd.Service.GetStatus", NULL);
        }

        /* Root is not bound by it: two fill the socket, the third takes the place of the
         * connection idle longest of a uid holding the most (nobody's first). */
        for (unsigned i = 0; i < ELEMENTSOF(root); i++) {
                root[i] = tsmd_connect(&t);
                CALL_OK(root[i], "io.tsmd.Admin.ListClients", NULL);
        }
        CALL_ERROR(nb[0], "io.tsmd.Service.Ping", NULL, VARLINK_REFUSED_TOO_MANY_CONNECTIONS, NULL);
        CALL_OK(nb[1], "io.tsmd.Service.Ping", NULL);
        for (unsigned i = 0; i < ELEMENTSOF(other); i++)
                CALL_OK(other[i], "io.tsmd.Service.Ping", NULL);

        /* Lowered by a reload: the uid holding one already may open no more. */
        ASSERT_TRUE(tsmd_reload(&t, CONF("[Varlink]\nMaxAdminConnections=6\nMaxAdminConnectionsPerUid=1\n")));
        extra = tsmd_connect_to_as(&t, t.socket, NOBODY, 0);
        CALL_ERROR(extra, "io.tsmd.Service.Ping", NULL, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID, NULL);
        varlink_client_free(extra);
        CALL_OK(nb[1], "io.tsmd.Service.Ping", NULL);

        for (unsigned i = 0; i < ELEMENTSOF(root); i++)
                varlink_client_free(root[i]);
        for (unsigned i = 0; i < ELEMENTSOF(other); i++)
                varlink_client_free(other[i]);
        for (unsigned i = 0; i < ELEMENTSOF(nb); i++)
                varlink_client_free(nb[i]);
        records = refused_connections_at_least(&t, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID, 3);
        ASSERT_EQ(json_object_array_length(records), 3U);
        for (size_t i = 0; i < 3; i++)
                ASSERT_EQ(JINT(json_object_array_get_idx(records, i), "uid"), (int64_t) NOBODY);
        json_object_put(records);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/* The same with each non-administrator's connection holding a WatchEvents: a watch whose
 * process holds no context can hear of nothing, and keeps nothing worth an administrator's
 * place (the admin socket serves io.tsmd.Guest, and a subscription is no call in flight). */
TEST(admin_socket_full_of_watching_non_administrators_lets_administrators_in) {
        static const TsmdFile files[] = {
                { "policy.conf", "[Client:tests]\nUsers=root 65534\nDevices=*\n" },
        };
        VarlinkClient *nb[3], *admin, *extra;
        AsyncCall we[ELEMENTSOF(nb)] = {};
        Tsmd t;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as other uids");
        tsmd_start(&t, &(TsmdOptions) { .config = CONF("[Varlink]\nMaxAdminConnections=3\n"), .files = files,
                                        .n_files = ELEMENTSOF(files) });
        for (unsigned i = 0; i < ELEMENTSOF(nb); i++) {
                nb[i] = tsmd_connect_to_as(&t, t.socket, NOBODY, 0);
                tsmd_call_async(nb[i], G "WatchEvents", NULL, VARLINK_CALL_MORE, &we[i]);
                ASSERT_TRUE(tsmd_async_wait(nb[i], &we[i], 1, TSMD_WAIT_USEC));
                ASSERT_NULL(we[i].errors[0]);
        }
        extra = tsmd_connect_to_as(&t, t.socket, NOBODY, 0);
        CALL_ERROR(extra, "io.tsmd.Service.Ping", NULL, VARLINK_REFUSED_TOO_MANY_CONNECTIONS, NULL);
        varlink_client_free(extra);

        /* Root takes the place of the one idle longest, and can reload. */
        admin = tsmd_connect(&t);
        CALL_OK(admin, "io.tsmd.Service.Reload", NULL);
        ASSERT_TRUE(tsmd_wait_hangup(nb[0], TSMD_WAIT_USEC));
        for (unsigned i = 1; i < ELEMENTSOF(nb); i++) {
                tsmd_pump(nb[i], 100 * USEC_PER_MSEC);
                ASSERT_EQ(we[i].n, 1U);
        }

        varlink_client_free(admin);
        for (unsigned i = 0; i < ELEMENTSOF(nb); i++) {
                async_call_done(&we[i]);
                varlink_client_free(nb[i]);
        }
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/* MaxConnections= reached, a connection idle for IdleTimeoutSec= that holds nothing (no context,
 * no call in flight) is closed for a newcomer, of the uid holding the most: uids that called once
 * and stay cannot keep VMMs out for good. One holding a context is never closed so, though idle
 * longer. */
TEST(full_tsmd_closes_an_idle_connection_for_a_new_one) {
        VarlinkClient *holder, *idle, *nb, *extra, *newcomer;
        int64_t ctx;
        Tsmd t;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as a second uid");
        tsmd_start_config(&t, CONF("[Varlink]\nMaxConnections=3\nIdleTimeoutSec=1\n"));
        holder = tsmd_connect_guest(&t);
        ctx = guest_open_context(holder);
        idle = tsmd_connect_guest(&t);
        CALL_ERROR(idle, G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        nb = tsmd_connect_as(&t, NOBODY, NOBODY);
        CALL_ERROR(nb, G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        /* None idle for long enough yet. */
        extra = tsmd_connect_as(&t, NOBODY, NOBODY);
        ASSERT_TRUE(tsmd_wait_hangup(extra, TSMD_WAIT_USEC));
        varlink_client_free(extra);

        /* Root holds the most: its idle connection goes, not the one with a context. */
        sleep_usec(1200 * USEC_PER_MSEC);
        newcomer = tsmd_connect_as(&t, NOBODY, NOBODY);
        CALL_ERROR(newcomer, G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        ASSERT_TRUE(tsmd_wait_hangup(idle, TSMD_WAIT_USEC));
        CALL_ERROR(nb, G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        CALL_OK(holder, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx));

        varlink_client_free(newcomer);
        varlink_client_free(holder);
        varlink_client_free(idle);
        varlink_client_free(nb);
        tsmd_expect_audit(&t, 0, "connection", VARLINK_REFUSED_IDLE_TIMEOUT, 1);
        {
                json_object *records = refused_connections(&t, 0, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);

                ASSERT_EQ(json_object_array_length(records), 1U);
                ASSERT_EQ(JINT(json_object_array_get_idx(records, 0), "uid"), (int64_t) NOBODY);
                json_object_put(records);
        }
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/* A new guest connection of the test's process, watching events. */
static VarlinkClient *guest_watching(Tsmd *t, AsyncCall *we) {
        VarlinkClient *c = tsmd_connect_guest(t);

        tsmd_call_async(c, G "WatchEvents", NULL, VARLINK_CALL_MORE, we);
        ASSERT_TRUE(tsmd_async_wait(c, we, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(we->errors[0]);
        return c;
}

/* The same with the idle connections subscribed: a GetStatus with "more" (any local user may
 * make one) or a WatchEvents whose process holds no context is no call in flight, and keeps no
 * slot for good. The watches of a process that holds a context (a VMM's, on connections of their
 * own, made before or after it) are never closed so, though idle longest, of the uid holding the
 * most; once it holds none, they are as any other. */
TEST(full_tsmd_closes_an_idle_subscribed_connection_for_a_new_one) {
        VarlinkClient *holder, *watcher[2], *status, *watch, *extra, *newcomer[4];
        AsyncCall we[ELEMENTSOF(watcher)] = {}, st = {}, nwe = {};
        json_object *records;
        int64_t ctx;
        Tsmd t;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as other uids");
        tsmd_start_config(&t, CONF("[Varlink]\nMaxConnections=5\nIdleTimeoutSec=1\nMaxUnnamedConnections=4\n"));
        /* Root's three: contexts on one, the watches of its process on the others. */
        holder = tsmd_connect_guest(&t);
        watcher[0] = guest_watching(&t, &we[0]);
        ctx = guest_open_context(holder);
        watcher[1] = guest_watching(&t, &we[1]);
        (void) guest_open_context(holder);
        status = tsmd_connect_as(&t, NOBODY, NOBODY);
        tsmd_call_async(status, "io.tsmd.Service.GetStatus", NULL, VARLINK_CALL_MORE, &st);
        ASSERT_TRUE(tsmd_async_wait(status, &st, 1, TSMD_WAIT_USEC));
        watch = tsmd_connect_as(&t, NOBODY - 1, NOBODY - 1);
        tsmd_call_async(watch, G "WatchEvents", NULL, VARLINK_CALL_MORE, &nwe);
        ASSERT_TRUE(tsmd_async_wait(watch, &nwe, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(nwe.errors[0]);
        /* None idle for long enough yet. */
        extra = tsmd_connect_as(&t, NOBODY, NOBODY);
        ASSERT_TRUE(tsmd_wait_hangup(extra, TSMD_WAIT_USEC));
        varlink_client_free(extra);

        /* Of the two subscribed alone, one a uid, the one idle longest goes first, then the other. */
        sleep_usec(1200 * USEC_PER_MSEC);
        newcomer[0] = tsmd_connect_as(&t, NOBODY - 2, NOBODY - 2);
        CALL_ERROR(newcomer[0], G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        ASSERT_TRUE(tsmd_wait_hangup(status, TSMD_WAIT_USEC));
        newcomer[1] = tsmd_connect_as(&t, NOBODY - 2, NOBODY - 2);
        CALL_ERROR(newcomer[1], G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        ASSERT_TRUE(tsmd_wait_hangup(watch, TSMD_WAIT_USEC));
        for (unsigned i = 0; i < ELEMENTSOF(watcher); i++) {
                tsmd_pump(watcher[i], 100 * USEC_PER_MSEC);
                ASSERT_EQ(we[i].n, 1U);
        }

        /* Its contexts gone (one closed, one with its connection, whose slot a newcomer takes),
         * root's first watch (the one idle longest, of a uid holding as many as any) goes for the
         * next. */
        CALL_OK(holder, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx));
        varlink_client_free(holder);
        newcomer[2] = tsmd_connect_as(&t, NOBODY - 3, NOBODY - 3);
        CALL_ERROR(newcomer[2], G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        sleep_usec(1200 * USEC_PER_MSEC);
        newcomer[3] = tsmd_connect_as(&t, NOBODY - 3, NOBODY - 3);
        CALL_ERROR(newcomer[3], G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        ASSERT_TRUE(tsmd_wait_hangup(watcher[0], TSMD_WAIT_USEC));
        tsmd_pump(watcher[1], 100 * USEC_PER_MSEC);
        ASSERT_EQ(we[1].n, 1U);

        for (unsigned i = 0; i < ELEMENTSOF(watcher); i++) {
                async_call_done(&we[i]);
                varlink_client_free(watcher[i]);
        }
        async_call_done(&st);
        async_call_done(&nwe);
        for (unsigned i = 0; i < ELEMENTSOF(newcomer); i++)
                varlink_client_free(newcomer[i]);
        varlink_client_free(status);
        varlink_client_free(watch);
        /* Each closed one on record under its uid (written before the CloseContext after it). */
        records = refused_connections(&t, 0, VARLINK_REFUSED_IDLE_TIMEOUT);
        ASSERT_EQ(json_object_array_length(records), 3U);
        ASSERT_EQ(JINT(json_object_array_get_idx(records, 0), "uid"), (int64_t) NOBODY);
        ASSERT_EQ(JINT(json_object_array_get_idx(records, 1), "uid"), (int64_t) NOBODY - 1);
        ASSERT_EQ(JINT(json_object_array_get_idx(records, 2), "uid"), 0);
        json_object_put(records);
        records = refused_connections(&t, 0, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
        ASSERT_EQ(json_object_array_length(records), 1U);
        json_object_put(records);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/* Connections that never complete a message, silent or trickling the start of one without a
 * message timeout, hold MaxConnections= slots: IdleTimeoutSec= closes them, by name, while a
 * connection idle after its first call stays. */
TEST(connections_that_never_call_time_out) {
        static const char start[] = "{\"method\":\"io.tsmd.Guest.CloseContext\",";
        int silent, partial, bystander;
        uint64_t begin = now_usec(), silent_at = 0, partial_at = 0;
        Tsmd t;
        Good g;
        Baseline b;

        tsmd_start_config(&t, CONF("[Varlink]\nIdleTimeoutSec=1\nMessageTimeoutSec=0\n"));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        bystander = raw_open(&t);
        raw_expect_alive(bystander);

        begin = now_usec();
        silent = raw_open(&t);
        partial = raw_open(&t);
        ASSERT_TRUE(tsmd_raw_send(partial, start, sizeof(start) - 1));
        while ((silent_at == 0 || partial_at == 0) && now_usec() - begin < 10 * USEC_PER_SEC) {
                if (silent_at == 0 && raw_readable(silent))
                        silent_at = now_usec() - begin;
                if (partial_at == 0 && raw_readable(partial))
                        partial_at = now_usec() - begin;
                good_check(&g);
                sleep_usec(100 * USEC_PER_MSEC);
        }
        if (silent_at == 0 || partial_at == 0)
                TEST_FAIL("after 10 s, tsmd still serves a connection that never called");
        ASSERT_GE(silent_at, 900 * USEC_PER_MSEC);
        ASSERT_GE(partial_at, 900 * USEC_PER_MSEC);
        ASSERT_TRUE(raw_told(silent, VARLINK_REFUSED_IDLE_TIMEOUT, "{\"idleTimeoutSec\":1}", TSMD_WAIT_USEC));
        ASSERT_TRUE(raw_told(partial, VARLINK_REFUSED_IDLE_TIMEOUT, "{\"idleTimeoutSec\":1}", TSMD_WAIT_USEC));
        expect_hangups_audited(&t, b.seq, VARLINK_REFUSED_IDLE_TIMEOUT, 2);
        ASSERT_EQ(tsmd_log_count(&t, "sent no complete message within 1s of connecting"), 2U);

        /* Idle for over a second after its call: still served. */
        raw_expect_alive(bystander);
        close(silent);
        close(partial);
        close(bystander);
        expect_recovered_and_stop(&t, &g, &b);
}

/*
 * Any local user may subscribe to io.tsmd.Service.GetStatus and make connections come and go:
 * a subscriber is told the changes of a 100 ms window once, not once per connection event (a
 * thousand subscribers each told every event of a churning client was that client's to
 * multiply).
 */
TEST(status_changes_are_told_in_batches) {
        VarlinkClient *s;
        AsyncCall st = {};
        Tsmd t;
        Good g;
        Baseline b;

        tsmd_start_config(&t, CONF(""));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        s = tsmd_connect_guest(&t);
        tsmd_call_async(s, "io.tsmd.Service.GetStatus", NULL, VARLINK_CALL_MORE, &st);
        ASSERT_TRUE(tsmd_async_wait(s, &st, 1, TSMD_WAIT_USEC));

        for (unsigned i = 0; i < 40; i++)
                close(raw_open(&t)); /* 80 changes */
        tsmd_pump(s, 500 * USEC_PER_MSEC);
        fprintf(stderr, "# 40 connections opened and closed: %zu status notifications\n", st.n - 1);
        ASSERT_GE(st.n, 2U);
        ASSERT_LE(st.n, 1 + 10U);
        /* The last one tells where it ended: the good client and the subscriber. */
        ASSERT_EQ(JINT(st.params[st.n - 1], "connections"), 2);

        async_call_done(&st);
        varlink_client_free(s);
        expect_recovered_and_stop(&t, &g, &b);
}

/* ---- pending-call flood ------------------------------------------------------------------------- */

#define FLOOD_CALLS 1000

static int cmp_int64(const void *a, const void *b) {
        int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
        return x < y ? -1 : x > y;
}

TEST(pending_call_flood) {
        static const struct {
                uint8_t type;
                size_t body;
                uint8_t response;
        } kinds[] = {
                { TDISP_MSG_GET_VERSION, 0, TDISP_MSG_VERSION },
                { TDISP_MSG_GET_CAPABILITIES, 4, TDISP_MSG_CAPABILITIES },
                { TDISP_MSG_GET_DEVICE_INTERFACE_STATE, 0, TDISP_MSG_DEVICE_INTERFACE_STATE },
        };
        Tsmd t;
        Good g;
        Baseline b;
        int fd;
        char *m, *out = NULL;
        size_t out_len = 0, out_off = 0;
        int64_t ctx, seqs[FLOOD_CALLS];
        size_t n_seqs = 0;
        unsigned got = 0;
        uint64_t start, deadline;
        FILE *f;

        tsmd_start_config(&t, CONF("[Varlink]\nMaxPendingCalls=4\n"));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);

        /* The flooder sets up its own context on DEV1 (raw: the iommufd in the reply is
         * dropped by the kernel since nothing receives it). */
        fd = raw_open(&t);
        ASSERT_TRUE(raw_call(fd, "{\"method\":\"io.tsmd.Guest.OpenContext\",\"parameters\":{}}"));
        m = tsmd_raw_recv(fd, TSMD_WAIT_USEC);
        ASSERT_NOT_NULL(m);
        {
                json_object *o = json_tokener_parse(m), *p;
                ASSERT_NOT_NULL(o);
                ASSERT_TRUE(json_object_object_get_ex(o, "parameters", &p));
                ctx = JINT(p, "context");
                json_object_put(o);
        }
        free(m);
        ASSERT_TRUE(raw_call(fd, strf("{\"method\":\"io.tsmd.Guest.AttachDevice\",\"parameters\":{\"context\":%" PRIi64
                                      ",\"vdeviceId\":1,\"pciAddress\":\"" DEV1 "\"}}", ctx)));
        m = tsmd_raw_recv(fd, TSMD_WAIT_USEC);
        ASSERT_NOT_NULL(m);
        ASSERT_NULL(strstr(m, "\"error\""));
        free(m);
        ASSERT_TRUE(raw_call(fd, strf("{\"method\":\"io.tsmd.Guest.Bind\",\"parameters\":{\"context\":%" PRIi64
                                      ",\"vdeviceId\":1}}", ctx)));
        m = tsmd_raw_recv(fd, TSMD_WAIT_USEC);
        ASSERT_NOT_NULL(m);
        ASSERT_NULL(strstr(m, "\"error\""));
        free(m);

        /* 1000 calls in one buffer; every 7th names a context that does not exist, so the
         * order of the replies is visible. */
        f = open_memstream(&out, &out_len);
        ASSERT_NOT_NULL(f);
        for (unsigned i = 0; i < FLOOD_CALLS; i++) {
                const char *p = i % 7 == 3 ? strf("{\"context\":%u}", 1000000 + i)
                                           : request_params(ctx, 1, DEV1, kinds[i % 3].type, kinds[i % 3].body);
                fprintf(f, "{\"method\":\"io.tsmd.Guest.%s\",\"parameters\":%s}", i % 7 == 3 ? "CloseContext" : "GuestRequest", p);
                fputc(0, f);
        }
        ASSERT_EQ(fclose(f), 0);
        ASSERT_OK(fcntl(fd, F_SETFL, O_NONBLOCK));

        /* The good client works throughout, from its thread: while the flood is read and
         * answered, not only while the test reads the replies. */
        good_during_start(&g);
        start = now_usec();
        deadline = start + 60 * USEC_PER_SEC;
        {
                char buf[65536];
                size_t have = 0;

                while (got < FLOOD_CALLS) {
                        struct pollfd p = { .fd = fd, .events = POLLIN | (out_off < out_len ? POLLOUT : 0) };

                        if (now_usec() > deadline)
                                TEST_FAIL("only %u of %u replies within 60 s", got, FLOOD_CALLS);
                        ASSERT_OK(poll(&p, 1, 1000));
                        if (p.revents & POLLOUT) {
                                ssize_t k = send(fd, out + out_off, out_len - out_off, MSG_NOSIGNAL);
                                if (k < 0 && errno != EAGAIN)
                                        TEST_FAIL("send: %s", strerror(errno));
                                if (k > 0)
                                        out_off += (size_t) k;
                        }
                        if (p.revents & (POLLIN | POLLHUP)) {
                                ssize_t k = recv(fd, buf + have, sizeof(buf) - have, 0);
                                char *nul;

                                if (k == 0)
                                        TEST_FAIL("tsmd hung up after %u replies", got);
                                if (k < 0 && errno != EAGAIN)
                                        TEST_FAIL("recv: %s", strerror(errno));
                                if (k > 0)
                                        have += (size_t) k;
                                while ((nul = memchr(buf, 0, have))) {
                                        json_object *o = json_tokener_parse(buf), *par = NULL, *e = NULL;
                                        unsigned i = got;

                                        ASSERT_NOT_NULL(o);
                                        json_object_object_get_ex(o, "parameters", &par);
                                        json_object_object_get_ex(o, "error", &e);
                                        if (i % 7 == 3) {
                                                if (!e || !streq(json_object_get_string(e), E_GUEST("NoSuchContext")) ||
                                                    JINT(par, "context") != 1000000 + i)
                                                        TEST_FAIL("reply %u out of order: %s", i, buf);
                                        } else {
                                                size_t len;
                                                _cleanup_free_ uint8_t *r = NULL;
                                                int64_t seq;

                                                if (e)
                                                        TEST_FAIL("reply %u: %s", i, buf);
                                                r = unb64(JSTR(par, "response"), &len);
                                                if (len < 2 || r[1] != kinds[i % 3].response)
                                                        TEST_FAIL("reply %u out of order: response type 0x%02x, expected 0x%02x", i,
                                                                  len >= 2 ? r[1] : 0, kinds[i % 3].response);
                                                seq = JINT(par, "auditSequence");
                                                ASSERT_TRUE(seq > 0);
                                                ASSERT_TRUE(n_seqs < FLOOD_CALLS);
                                                seqs[n_seqs++] = seq;
                                        }
                                        json_object_put(o);
                                        got++;
                                        have -= (size_t) (nul + 1 - buf);
                                        memmove(buf, nul + 1, have);
                                }
                                ASSERT_TRUE(have < sizeof(buf));
                        }
                }
        }
        fprintf(stderr, "# %u pipelined calls answered in order in %llu ms\n", got,
                (unsigned long long) ((now_usec() - start) / USEC_PER_MSEC));
        good_during_stop(&g, "1000 pipelined calls");
        ASSERT_EQ(out_off, out_len);
        free(out);
        /* Every request has an audit record of its own (the records are numbered in the order
         * the requests completed, which need not be the order of the replies). */
        qsort(seqs, n_seqs, sizeof(seqs[0]), cmp_int64);
        for (size_t i = 1; i < n_seqs; i++)
                ASSERT_TRUE(seqs[i] > seqs[i - 1]);
        raw_expect_alive(fd);
        close(fd);

        expect_recovered_and_stop(&t, &g, &b);
}

/* One GetStatus subscription, ended at once: its first status is larger than MaxMessageSize=. */
static void subscribe_too_large(int fd) {
        _cleanup_free_ char *m = NULL;

        ASSERT_TRUE(raw_call(fd, "{\"method\":\"io.tsmd.Service.GetStatus\",\"more\":true}"));
        m = tsmd_raw_recv(fd, TSMD_WAIT_USEC);
        if (!m || !strstr(m, "\"error\":\"" VARLINK_ERROR_REPLY_TOO_LARGE "\""))
                TEST_FAIL("GetStatus: expected %s, got %s", VARLINK_ERROR_REPLY_TOO_LARGE, m ?: "a hangup");
}

/* A subscription that ReplyTooLarge ended is not kept for more: a client renewing one without
 * end on a connection that goes on gains nothing in tsmd (it kept ~300 bytes for each). */
TEST(subscriptions_ended_by_reply_too_large_are_not_kept) {
        unsigned long warm, rss;
        Tsmd t;
        int fd;

        /* Refusals past root's budget are counted into summaries: written each second here. */
        tsmd_start_config(&t, CONF("[Varlink]\nMaxMessageSize=256\n[Audit]\nRefusalIntervalSec=1\n"));
        fd = raw_open(&t);
        for (unsigned i = 0; i < 200; i++)
                subscribe_too_large(fd);
        warm = tsmd_rss_kib(&t);
        for (unsigned i = 0; i < 5000; i++)
                subscribe_too_large(fd);
        rss = tsmd_rss_kib(&t);
        fprintf(stderr, "# 5000 subscriptions ended by ReplyTooLarge: RSS %lu -> %lu KiB\n", warm, rss);
#if !TSMD_SANITIZED /* ASan's quarantine keeps freed memory: RSS says nothing there */
        if (rss > warm + 256 && !tsmd_under_valgrind())
                TEST_FAIL("tsmd grew by %lu KiB", rss - warm);
#endif
        /* Alive, asked with a call that only reads: one that acts (raw_expect_alive()'s
         * CloseContext) might answer more than 256 bytes, and is refused ReplyMayNotFit here. */
        ASSERT_TRUE(raw_call(fd, "{\"method\":\"io.tsmd.Guest.GetDeviceState\",\"parameters\":{\"context\":987654321,"
                                 "\"vdeviceId\":1}}"));
        raw_expect_reply(fd, E_GUEST("NoSuchContext"), "{\"context\":987654321}");
        close(fd);
        /* Each one on record: counted with room for the records (a reload's MaxMessageSize= is
         * for the connections after it). */
        ASSERT_TRUE(tsmd_reload(&t, CONF("[Varlink]\nMaxMessageSize=64K\n[Audit]\nRefusalIntervalSec=1\n")));
        tsmd_expect_audit(&t, 0, "connection", VARLINK_ERROR_REPLY_TOO_LARGE, 5200);
        tsmd_teardown(&t);
}

/* A client that never stops: pipelined calls as fast as tsmd takes them, replies drained, from
 * a process of its own, until killed. tsmd serves a connection a batch at a time and then lets
 * the others' turn come, so its flood must not hold anyone else back. */
static void flood_forever(int fd) {
        static const char ping[] = "{\"method\":\"io.tsmd.Service.Ping\"}";
        char out[64 * sizeof(ping)], in[65536];
        size_t out_off = sizeof(out);

        for (size_t i = 0; i < 64; i++)
                memcpy(out + i * sizeof(ping), ping, sizeof(ping));
        (void) fcntl(fd, F_SETFL, O_NONBLOCK);
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT };
                ssize_t k;

                if (poll(&p, 1, 1000) < 0 && errno != EINTR)
                        _exit(EXIT_FAILURE);
                if (p.revents & POLLOUT) {
                        if (out_off == sizeof(out))
                                out_off = 0;
                        k = send(fd, out + out_off, sizeof(out) - out_off, MSG_NOSIGNAL);
                        if (k > 0)
                                out_off += (size_t) k;
                }
                k = recv(fd, in, sizeof(in), MSG_DONTWAIT);
                if (k == 0 || (p.revents & (POLLHUP | POLLERR)))
                        _exit(EXIT_FAILURE); /* tsmd hung up on it: the parent sees it exited */
        }
}

/* How long the good client's thread runs with the flood. */
#define FLOOD_DURING_USEC (1 * USEC_PER_SEC)

TEST(sustained_pipelined_flood) {
        Tsmd t;
        Good g;
        Baseline b;
        pid_t flooder;
        int fd, status;

        tsmd_start_config(&t, CONF(""));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);

        fd = raw_open(&t);
        flooder = fork();
        ASSERT_OK(flooder);
        if (flooder == 0)
                flood_forever(fd);
        close(fd);

        /* From the flood's start, the good client gets every answer in time from its thread;
         * then, well into it, one request after another (good_check), while the flooder is
         * still at it. */
        good_during_start(&g);
        sleep_usec(FLOOD_DURING_USEC);
        ASSERT_EQ(waitpid(flooder, &status, WNOHANG), 0);
        good_during_stop(&g, "a sustained pipelined flood");
        for (unsigned i = 0; i < 20; i++)
                good_check(&g);
        ASSERT_EQ(waitpid(flooder, &status, WNOHANG), 0);
        ASSERT_OK(kill(flooder, SIGKILL));
        ASSERT_EQ(waitpid(flooder, &status, 0), flooder);

        expect_recovered_and_stop(&t, &g, &b);
}

/* ---- many refusals: nothing accumulates --------------------------------------------------------- */

/* Past MaxMessageSize=64K. */
#define CHURN_BIG ((size_t) (64 << 10) + 1)

/* What the refusals of refusals_leave_nothing_behind are made with. */
typedef struct Churn {
        VarlinkClient *a; /* root's: the refused calls */
        const char *foreign; /* GuestRequest parameters of the good client's context */
        char released[512];  /* ... of a context a closed */
        char *big, *bomb;
        size_t bomb_len;
        unsigned extra_refusals;
} Churn;

/* A connection that tsmd closes for its message msg, telling it why. */
static void churn_close(Tsmd *t, const void *msg, size_t len, const char *refusal, const char *parameters) {
        int fd = raw_open(t);

        (void) tsmd_raw_send(fd, msg, len);
        if (!raw_told(fd, refusal, parameters, TSMD_WAIT_USEC))
                TEST_FAIL("tsmd did not tell %s, then close a connection refused for its message", refusal);
        close(fd);
}

/* Past MaxConnectionsPerUid=4 (the good client, a, the filler and one more): tsmd closes every
 * connection it refuses itself, so the slot is free when the test sees the hangup. The fourth
 * is made sure of by a Ping, which tsmd does not audit; it is refused too while tsmd has yet to
 * see the test's last admin connection go (counted in extra_refusals). */
static void churn_past_per_uid(Tsmd *t, void *userdata) {
        Churn *c = userdata;
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;
        int fourth, extra;

        for (;;) {
                _cleanup_free_ char *m = NULL;

                fourth = raw_open(t);
                if (raw_call(fourth, "{\"method\":\"io.tsmd.Service.Ping\"}"))
                        m = tsmd_raw_recv(fourth, TSMD_WAIT_USEC);
                if (m && !strstr(m, "\"error\""))
                        break;
                if ((m && !strstr(m, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID)) || now_usec() > deadline)
                        TEST_FAIL("root's fourth connection was not served: %s", m ?: "hung up");
                close(fourth);
                c->extra_refusals++;
                sleep_usec(USEC_PER_MSEC);
        }
        extra = raw_open(t);
        if (!raw_refused(extra, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID, TSMD_WAIT_USEC))
                TEST_FAIL("a fifth connection of root was not refused");
        close(extra);
        close(fourth);
}

static void churn_too_large(Tsmd *t, void *userdata) {
        Churn *c = userdata;

        churn_close(t, c->big, CHURN_BIG, VARLINK_REFUSED_MESSAGE_TOO_LARGE, "{\"maxMessageSize\":65536}");
}

static void churn_bad_utf8(Tsmd *t, void *userdata) {
        static const char bad_utf8[] = "{\"method\":\"io.tsmd.Guest.CloseContext\",\"parameters\":{\"context\":1,\"x\":\"\xc0\xaf\"}}";

        churn_close(t, bad_utf8, sizeof(bad_utf8), VARLINK_REFUSED_MALFORMED_MESSAGE, "{}");
}

static void churn_too_deep(Tsmd *t, void *userdata) {
        Churn *c = userdata;

        churn_close(t, c->bomb, c->bomb_len, VARLINK_REFUSED_NESTING_TOO_DEEP, "{\"maxJsonDepth\":16}");
}

static void churn_too_many_fds(Tsmd *t, void *userdata) {
        static const char call[] = "{\"method\":\"io.tsmd.Guest.CloseContext\",\"parameters\":{\"context\":987654321}}";
        int fd = raw_open(t);

        (void) send_with_fds(fd, call, sizeof(call), 5, -1);
        if (!raw_told(fd, VARLINK_REFUSED_FILE_DESCRIPTORS, "{\"maxFdsPerMessage\":4}", TSMD_WAIT_USEC))
                TEST_FAIL("tsmd did not tell, then close a connection that sent 5 fds");
        close(fd);
}

/* Within MaxFdsPerMessage=, for a method that takes none: answered, the fds dropped. */
static void churn_unwanted_fds(Tsmd *t, void *userdata) {
        Churn *c = userdata;

        for (int i = 0; i < 4; i++)
                ASSERT_EQ(varlink_client_push_fd(c->a, ASSERT_OK(open("/dev/null", O_RDONLY | O_CLOEXEC))), i);
        CALL_ERROR(c->a, G "CloseContext", "{\"context\":987654321}", E_GUEST("NoSuchContext"), NULL);
}

static void churn_unknown_method(Tsmd *t, void *userdata) {
        Churn *c = userdata;

        CALL_ERROR(c->a, G "Nope", NULL, VARLINK_ERROR_METHOD_NOT_FOUND, NULL);
}

static void churn_unknown_interface(Tsmd *t, void *userdata) {
        Churn *c = userdata;

        CALL_ERROR(c->a, "io.tsmd.Nope.Call", NULL, VARLINK_ERROR_INTERFACE_NOT_FOUND, NULL);
}

static void churn_mistyped(Tsmd *t, void *userdata) {
        Churn *c = userdata;

        CALL_ERROR(c->a, G "CloseContext", "{\"context\":\"1\"}", VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"context\"}");
}

static void churn_not_its_context(Tsmd *t, void *userdata) {
        Churn *c = userdata;

        CALL_ERROR(c->a, G "GuestRequest", c->foreign, E_GUEST("NoSuchContext"), NULL);
        CALL_ERROR(c->a, G "GuestRequest", c->released, E_GUEST("NoSuchContext"), NULL);
}

static void churn_not_an_iommufd(Tsmd *t, void *userdata) {
        Churn *c = userdata;
        int pp[2];

        ASSERT_OK(pipe2(pp, O_CLOEXEC));
        close(pp[1]);
        ASSERT_EQ(varlink_client_push_fd(c->a, pp[0]), 0);
        CALL_ERROR(c->a, G "AdoptContext", "{\"fileDescriptor\":0}", E_GUEST("BadFileDescriptor"), NULL);
}

#define WORKER_NOFILE 512U

/* Whether a Ping on a new guest connection is answered within timeout_usec (false: it waits, or
 * tsmd hung up). */
static bool guest_ping_answered(Tsmd *t, uint64_t timeout_usec) {
        int fd = raw_open(t);
        struct pollfd p = { .fd = fd, .events = POLLIN };
        bool answered;

        /* Accepted and refused at once (no fd to identify the peer with): hung up. */
        if (!raw_call(fd, "{\"method\":\"io.tsmd.Service.Ping\"}")) {
                close(fd);
                return false;
        }
        answered = poll(&p, 1, (int) (timeout_usec / USEC_PER_MSEC)) == 1 && !raw_closed_silently(fd, 0);
        close(fd);
        return answered;
}

/* VMMs' connections take every fd the worker may have (its RLIMIT_NOFILE): the guest socket's
 * next connection is refused (ConnectionSetupFailed, audited) or waits, but an admin can still connect to the admin socket and
 * see what goes on (GetStatus), and a VMM connected before goes on being served in time. Once
 * fds are free, VMMs are served again, and tsmd holds the fds and memory it held before. */
TEST(admin_served_with_the_worker_out_of_fds) {
        struct rlimit ours, low = { .rlim_cur = WORKER_NOFILE, .rlim_max = WORKER_NOFILE };
        unsigned n, last = 0;
        int fill[WORKER_NOFILE];
        uint64_t deadline, stable_since = 0;
        VarlinkClient *admin;
        json_object *r;
        pid_t worker;
        Tsmd t;
        Good g;
        Baseline b;

        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &ours));
        if (ours.rlim_cur < 2 * WORKER_NOFILE)
                SKIP("our RLIMIT_NOFILE of %llu cannot hold the connections that fill the worker's",
                     (unsigned long long) ours.rlim_cur);
        /* Refusals past root's budget are counted into summaries: written each second here. */
        tsmd_start(&t, &(TsmdOptions) { .config = CONF("[Audit]\nRefusalIntervalSec=1\n"), .nofile = &low,
                                        .log_level = "info" });
        worker = tsmd_worker_pid(&t);
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);

        /* More connections than it has fds; it takes what it can. */
        for (unsigned i = 0; i < WORKER_NOFILE; i++)
                fill[i] = raw_open(&t);
        deadline = now_usec() + TSMD_WAIT_USEC;
        for (;;) {
                n = tsmd_count_fds_of(worker);
                if (n != last || n + 4 < WORKER_NOFILE)
                        stable_since = now_usec();
                else if (now_usec() - stable_since > 300 * USEC_PER_MSEC)
                        break;
                last = n;
                if (now_usec() > deadline)
                        TEST_FAIL("the worker holds %u fds of %u", n, WORKER_NOFILE);
                sleep_usec(10 * USEC_PER_MSEC);
        }
        ASSERT_FALSE(guest_ping_answered(&t, 300 * USEC_PER_MSEC));
        for (unsigned i = 0; i < 5; i++)
                good_check(&g);

        admin = tsmd_connect(&t);
        varlink_client_set_timeout(admin, 5 * USEC_PER_SEC);
        r = CALL_OK(admin, "io.tsmd.Service.GetStatus", NULL);
        ASSERT_GE(JINT(r, "connections"), (int64_t) WORKER_NOFILE / 2);
        ASSERT_FALSE(guest_ping_answered(&t, 300 * USEC_PER_MSEC));

        for (unsigned i = 0; i < WORKER_NOFILE; i++)
                close(fill[i]);
        deadline = now_usec() + TSMD_WAIT_USEC;
        while (!guest_ping_answered(&t, 500 * USEC_PER_MSEC))
                if (now_usec() > deadline)
                        TEST_FAIL("VMMs are not served again once the worker has fds");
        CALL_OK(admin, "io.tsmd.Service.GetStatus", NULL);
        varlink_client_free(admin);
        ASSERT_EQ(tsmd_worker_pid(&t), worker);
        /* Each connection it could not identify (no fd left for that) is refused by name, on
         * record as each refusal is. */
        n = tsmd_log_count(&t, "Cannot identify a client");
        fprintf(stderr, "# %u connections refused as unidentifiable\n", n);
        tsmd_expect_audit(&t, b.seq, "connection", VARLINK_REFUSED_CONNECTION_SETUP_FAILED, n);
        expect_recovered_and_stop(&t, &g, &b);
}

/*
 * Each kind of refusal thousands of times (expect_no_growth()): what each one cost tsmd is
 * given back, not kept, even a leak that stays reachable (a list that only grows), which
 * valgrind does not count as an error. The good client is served throughout, and each refusal
 * is on record.
 */
TEST(refusals_leave_nothing_behind) {
        static const struct {
                const char *what;
                RepeatAttack attack;
                unsigned refusals; /* a run's */
                const char *event, *result;
        } kinds[] = {
                { "a connection past MaxConnectionsPerUid=", churn_past_per_uid, 1, "connection",
                  VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID },
                { "a message past MaxMessageSize=", churn_too_large, 1, "connection", VARLINK_REFUSED_MESSAGE_TOO_LARGE },
                { "a message of invalid UTF-8", churn_bad_utf8, 1, "connection", VARLINK_REFUSED_MALFORMED_MESSAGE },
                { "a message nested past MaxJsonDepth=", churn_too_deep, 1, "connection", VARLINK_REFUSED_NESTING_TOO_DEEP },
                { "a message with fds past MaxFdsPerMessage=", churn_too_many_fds, 1, "connection",
                  VARLINK_REFUSED_FILE_DESCRIPTORS },
                { "a call with fds it does not take", churn_unwanted_fds, 1, "close-context", E_GUEST("NoSuchContext") },
                { "an unknown method", churn_unknown_method, 1, "unknown-method", VARLINK_ERROR_METHOD_NOT_FOUND },
                { "an unknown interface", churn_unknown_interface, 1, "unknown-method", VARLINK_ERROR_INTERFACE_NOT_FOUND },
                { "a mistyped parameter", churn_mistyped, 1, G "CloseContext", VARLINK_ERROR_INVALID_PARAMETER },
                { "another's context and a released one", churn_not_its_context, 2, "guest-request", E_GUEST("NoSuchContext") },
                { "a pipe for an iommufd", churn_not_an_iommufd, 1, "adopt-context", E_GUEST("BadFileDescriptor") },
        };
        Tsmd t;
        Good g;
        Baseline b;
        Churn c = {};
        json_object *r;
        int64_t ctx;
        int filler;

        /* Root's refusals pass its refusal budget at once: most are counted in summaries, written
         * each second here, and the counts below add them up. */
        tsmd_start_config(&t, CONF("[Varlink]\nMaxMessageSize=64K\nMaxFdsPerMessage=4\nMaxJsonDepth=16\n"
                                   "MaxConnectionsPerUid=4\n[Audit]\nRefusalIntervalSec=1\n"));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        c.big = malloc(CHURN_BIG);
        ASSERT_NOT_NULL(c.big);
        memset(c.big, ' ', CHURN_BIG);
        c.big[0] = '{';
        c.bomb = nesting_bomb(20, &c.bomb_len);
        c.foreign = g.params;
        c.a = tsmd_connect_guest(&t);
        r = CALL_OK(c.a, G "OpenContext", NULL);
        ctx = JINT(r, "context");
        close(varlink_client_take_fd(c.a, (size_t) JINT(r, "fileDescriptor")));
        CALL_OK(c.a, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx));
        snprintf(c.released, sizeof(c.released), "%s", request_params(ctx, 1, DEV2, TDISP_MSG_GET_VERSION, 0));
        filler = raw_open(&t);
        raw_expect_alive(filler);

        /* Each kind's records are its own (event and result): a summary of an interval that
         * began before the kind's seq counts nothing of another's. The admin connection that
         * counts fds or records takes root's fourth slot. */
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                int64_t seq = tsmd_audit_last_seq(&t);
                unsigned runs;

                c.extra_refusals = 0;
                runs = expect_no_growth(&t, kinds[i].what, 3, kinds[i].refusals, kinds[i].attack, &c, &g);
                tsmd_expect_audit(&t, seq, kinds[i].event, kinds[i].result, runs * kinds[i].refusals + c.extra_refusals);
        }

        free(c.bomb);
        free(c.big);
        close(filler);
        varlink_client_free(c.a);
        expect_recovered_and_stop(&t, &g, &b);
}

/* ---- fds of a file system that never answers ------------------------------------------------ */

/* The longest the FUSE server holds a request: what tsmd would hang for if it waited on one. */
#define FUSE_HOLD_USEC (30 * USEC_PER_SEC)

/* Sends call on sock with fd attached, which stays the test's (a close() of it would wait on
 * the FUSE server too). */
static void send_call_with_fd(int sock, const char *call, int fd) {
        union {
                struct cmsghdr c;
                uint8_t b[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct iovec iov = { .iov_base = (void *) call, .iov_len = strlen(call) + 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof(control.b) };

        control.c.cmsg_level = SOL_SOCKET;
        control.c.cmsg_type = SCM_RIGHTS;
        control.c.cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(&control.c), &fd, sizeof(int));
        ASSERT_EQ(sendmsg(sock, &mh, MSG_NOSIGNAL), (ssize_t) iov.iov_len);
}

/* SKIPs the test where no FUSE file system can be mounted. */
static void fuse_hold_needed(void) {
        FuseHold h;
        int r = fuse_hold_start(&h, NULL, 0, true, FUSE_HOLD_USEC);

        if (r < 0)
                SKIP("no FUSE mount here: %s", strerror(-r));
        fuse_hold_stop(&h);
}

/* A FUSE server that holds tsmd's requests (monitor and worker) and answers the test's: the test
 * closes its fds before tsmd's are let go. allow_other: tsmd may look at its files at all. */
static void fuse_hold_tsmd(FuseHold *h, Tsmd *t, const Baseline *b, bool allow_other) {
        const pid_t tsmd_pids[] = { t->pid, b->worker };

        ASSERT_OK(fuse_hold_start(h, tsmd_pids, ELEMENTSOF(tsmd_pids), allow_other, FUSE_HOLD_USEC));
}

/* SECURITY: a VMM passes fds of a FUSE file system it serves, and answers none of tsmd's
 * requests (tests/fuse-hold.h): an fstat() of such an fd waits for GETATTR's answer, its close()
 * for FLUSH's (uninterruptibly). Neither process of tsmd may: every call is answered by name,
 * as with any other wrong fd, while the good client keeps working; once the server is gone,
 * tsmd holds none of them. An unlisted uid's fd on a call that takes none, AdoptContext's fd,
 * AttachDevice's VFIO fd, and one of a mount the worker may not look at. And where the server
 * answers the worker but not the monitor, AdoptContext's fd never reaches the monitor, whose
 * closes would queue behind the one held (test-monitor-dispatch has the monitor's own part). */
TEST(fds_of_a_fuse_server_that_never_answers) {
        FuseHold h;
        Tsmd t;
        Good g;
        Baseline b;
        VarlinkClient *a, *nobody = NULL;
        int fd, sock;
        int64_t ctx;
        json_object *reply;

        fuse_hold_needed();
        tsmd_start_config(&t, CONF(""));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        fuse_hold_tsmd(&h, &t, &b, true);
        a = tsmd_connect_guest(&t);
        reply = CALL_OK(a, G "OpenContext", NULL);
        ctx = JINT(reply, "context");
        close(varlink_client_take_fd(a, (size_t) JINT(reply, "fileDescriptor")));
        sock = varlink_client_get_fd(a);
        if (tsmd_can_switch_uid())
                nobody = tsmd_connect_as(&t, NOBODY, NOBODY);
        fd = fuse_hold_open(&h, O_RDWR);
        ASSERT_OK(fd);

        good_during_start(&g);
        /* Any local user may attach fds to any call: the worker closes what the call does not
         * take. */
        if (nobody) {
                send_call_with_fd(varlink_client_get_fd(nobody), "{\"method\":\"io.tsmd.Guest.OpenContext\"}", fd);
                _cleanup_free_ char *m = tsmd_raw_recv(varlink_client_get_fd(nobody), TSMD_WAIT_USEC);
                if (!m)
                        TEST_FAIL("tsmd hung up on OpenContext with a FUSE fd attached");
                fprintf(stderr, "# OpenContext of uid %u with a FUSE fd attached: %s\n", NOBODY, m);
                /* Answered as it would be without the fd: here, no policy, a context. (Its
                 * iommufd came with the answer; recv() dropped it.) */
                json_object *o = json_tokener_parse(m), *params;
                ASSERT_FALSE(json_object_object_get_ex(o, "error", NULL));
                ASSERT_TRUE(json_object_object_get_ex(o, "parameters", &params));
                ASSERT_EQ(JINT(params, "fileDescriptor"), 0);
                json_object_put(o);
        }
        /* What cannot be an iommufd the worker refuses itself, as the monitor would. */
        send_call_with_fd(sock, "{\"method\":\"io.tsmd.Guest.AdoptContext\",\"parameters\":{\"fileDescriptor\":0}}", fd);
        raw_expect_reply(sock, E_GUEST("BadFileDescriptor"), "{\"field\":\"fileDescriptor\",\"reason\":\"not an iommufd\"}");
        /* The worker looks at a VFIO fd itself. */
        send_call_with_fd(sock,
                          strf("{\"method\":\"io.tsmd.Guest.AttachDevice\",\"parameters\":{\"context\":%" PRIi64
                               ",\"vdeviceId\":1,\"pciAddress\":\"" DEV1 "\",\"vfioFileDescriptor\":0}}",
                               ctx),
                          fd);
        raw_expect_reply(sock, E_GUEST("BadFileDescriptor"),
                         "{\"field\":\"vfioFileDescriptor\",\"reason\":\"not a character device\"}");
        /* And once more each, with the first closes still held. */
        send_call_with_fd(sock, "{\"method\":\"io.tsmd.Guest.AdoptContext\",\"parameters\":{\"fileDescriptor\":0}}", fd);
        raw_expect_reply(sock, E_GUEST("BadFileDescriptor"), "{\"field\":\"fileDescriptor\",\"reason\":\"not an iommufd\"}");
        raw_expect_alive(sock);
        /* An administrator sees them wait (GetStatus fdsClosing; 0 again once the server is
         * gone: the fixture's settled counts wait for it). */
        {
                _cleanup_(varlink_client_freep) VarlinkClient *adm = tsmd_connect(&t);

                ASSERT_TRUE(JINT(CALL_OK(adm, "io.tsmd.Service.GetStatus", NULL), "fdsClosing") >= 3);
        }
        close(fd);
        /* A FUSE mount the worker may not even look at (no allow_other): what it cannot see
         * proves no VFIO device either. */
        {
                FuseHold p;

                fuse_hold_tsmd(&p, &t, &b, false);
                fd = fuse_hold_open(&p, O_RDWR);
                ASSERT_OK(fd);
                send_call_with_fd(sock,
                                  strf("{\"method\":\"io.tsmd.Guest.AttachDevice\",\"parameters\":{\"context\":%" PRIi64
                                       ",\"vdeviceId\":1,\"pciAddress\":\"" DEV1 "\",\"vfioFileDescriptor\":0}}",
                                       ctx),
                                  fd);
                raw_expect_reply(sock, E_GUEST("BadFileDescriptor"),
                                 "{\"field\":\"vfioFileDescriptor\",\"reason\":\"not a VFIO device\"}");
                close(fd);
                fuse_hold_stop(&p);
        }
        /* A server that answers the worker's FLUSH but not the monitor's: none of its fds may
         * reach the monitor, whose closes would wait behind the first, each fd open meanwhile. */
        {
                unsigned before = tsmd_count_fds_of(t.pid);
                FuseHold p;

                ASSERT_OK(fuse_hold_start(&p, &t.pid, 1, true, FUSE_HOLD_USEC));
                fd = fuse_hold_open(&p, O_RDWR);
                ASSERT_OK(fd);
                for (unsigned i = 0; i < 3; i++) {
                        send_call_with_fd(sock, "{\"method\":\"io.tsmd.Guest.AdoptContext\",\"parameters\":{\"fileDescriptor\":0}}", fd);
                        raw_expect_reply(sock, E_GUEST("BadFileDescriptor"),
                                         "{\"field\":\"fileDescriptor\",\"reason\":\"not an iommufd\"}");
                }
                close(fd);
                ASSERT_EQ(tsmd_count_fds_of(t.pid), before);
                fuse_hold_stop(&p);
        }
        good_during_stop(&g, "calls with fds of a FUSE server that never answers");
        /* Other clients are answered meanwhile: a new one makes a context (the monitor's work). */
        {
                _cleanup_(varlink_client_freep) VarlinkClient *c = tsmd_connect_guest(&t);

                reply = CALL_OK(c, G "OpenContext", NULL);
                close(varlink_client_take_fd(c, (size_t) JINT(reply, "fileDescriptor")));
        }
        tsmd_expect_audit(&t, b.seq, "adopt-context", E_GUEST("BadFileDescriptor"), 5);
        tsmd_expect_audit(&t, b.seq, "attach", E_GUEST("BadFileDescriptor"), 2);

        /* The server's death ends the closes held: tsmd keeps none of those fds. */
        fuse_hold_stop(&h);
        varlink_client_free(a);
        varlink_client_free(nobody);
        expect_recovered_and_stop(&t, &g, &b);
}

/* Sends call with n copies of fd attached, and expects the reply. */
static void call_with_fds(int sock, const char *call, int fd, unsigned n, const char *error, const char *params) {
        ASSERT_TRUE(send_with_fds(sock, call, strlen(call) + 1, n, fd));
        raw_expect_reply(sock, error, params);
}

#define ADOPT_FD_0 "{\"method\":\"io.tsmd.Guest.AdoptContext\",\"parameters\":{\"fileDescriptor\":0}}"
#define NOT_IOMMUFD "{\"field\":\"fileDescriptor\",\"reason\":\"not an iommufd\"}"

/* AdoptContext with an fd of the IOMMU device (IommuDevice=/dev/zero): a context, or (lost)
 * io.tsmd.System EMFILE. */
static void adopt_iommufd(int sock, bool lost) {
        int fd = open("/dev/zero", O_RDWR | O_CLOEXEC);
        _cleanup_free_ char *m = NULL;

        ASSERT_OK(fd);
        ASSERT_TRUE(send_with_fds(sock, ADOPT_FD_0, strlen(ADOPT_FD_0) + 1, 1, fd));
        close(fd);
        if (lost) {
                raw_expect_reply(sock, "io.tsmd.System", "{\"errno\":24,\"errnoName\":\"EMFILE\"}");
                return;
        }
        m = tsmd_raw_recv(sock, TSMD_WAIT_USEC);
        if (!m || !strstr(m, "\"context\"") || strstr(m, "\"error\""))
                TEST_FAIL("AdoptContext with an iommufd: %s", m ?: "hung up");
}

/* Waits (bounded) until pid has at most n fds open. */
static void wait_fds_at_most(pid_t pid, unsigned n) {
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;

        while (tsmd_count_fds_of(pid) > n) {
                if (now_usec() > deadline)
                        TEST_FAIL("process %i still has %u fds open, expected at most %u", (int) pid,
                                  tsmd_count_fds_of(pid), n);
                sleep_usec(2 * USEC_PER_MSEC);
        }
}

/* AdoptContext with an iommufd from a uid whose fds wait in the closer: the connection goes
 * without an answer; *a is replaced by a new one, which a call without fds gets through. */
static void adopt_refused_for_fds(Tsmd *t, VarlinkClient **a, int *sock) {
        int fd = open("/dev/zero", O_RDWR | O_CLOEXEC);

        ASSERT_OK(fd);
        ASSERT_TRUE(send_with_fds(*sock, ADOPT_FD_0, strlen(ADOPT_FD_0) + 1, 1, fd));
        close(fd);
        if (!raw_closed_silently(*sock, TSMD_WAIT_USEC)) {
                _cleanup_free_ char *m = tsmd_raw_recv(*sock, TSMD_WAIT_USEC);
                TEST_FAIL("a congested uid's connection sending fds was not closed: %s", m ?: "-");
        }
        varlink_client_free(*a);
        *a = tsmd_connect_guest(t);
        *sock = varlink_client_get_fd(*a);
        (void) CALL_OK(*a, "io.tsmd.Service.Ping", NULL);
}

/* SECURITY: a local user who serves a FUSE file system holds the worker's closer with one FLUSH
 * it never answers (tests/fuse-hold.h), then floods fds. Ordinary ones (a regular file, a
 * character device) are closed at once, not queued behind it: its own calls with fds go on.
 * More FUSE fds than MaxFdsPerUid= queued behind it, and the worker takes no fds of its uid
 * (its calls naming one fail io.tsmd.System EMFILE), while another uid's AdoptContext and
 * AttachDevice get their fds and their answers. Once the server is gone, the flooder's are
 * taken again. */
TEST(a_uid_holding_the_closer_is_refused_fds_alone) {
        FuseHold h;
        Tsmd t;
        Good g;
        Baseline b;
        VarlinkClient *a, *nobody;
        int fuse, file, sock, nsock;
        json_object *reply;
        int64_t ctx;

        fuse_hold_needed();
        if (!tsmd_can_switch_uid())
                SKIP("cannot connect as another uid here");

        tsmd_start_config(&t, CONF("[Varlink]\nMaxFdsPerMessage=8\nMaxFdsPerUid=16\n"));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        fuse_hold_tsmd(&h, &t, &b, true);
        a = tsmd_connect_guest(&t);
        sock = varlink_client_get_fd(a);
        nobody = tsmd_connect_as(&t, NOBODY, NOBODY);
        nsock = varlink_client_get_fd(nobody);
        reply = CALL_OK(nobody, G "OpenContext", NULL);
        ctx = JINT(reply, "context");
        close(varlink_client_take_fd(nobody, (size_t) JINT(reply, "fileDescriptor")));
        ASSERT_OK(fuse = fuse_hold_open(&h, O_RDWR));
        ASSERT_OK(file = open("/proc/self/exe", O_RDONLY | O_CLOEXEC));

        good_during_start(&g);
        /* The worker's closer waits on this one's FLUSH. */
        call_with_fds(sock, ADOPT_FD_0, fuse, 1, E_GUEST("BadFileDescriptor"), NOT_IOMMUFD);
        /* Ordinary fds, four times MaxFdsPerUid=: closed at once, none waits behind it. */
        for (unsigned i = 0; i < 8; i++) {
                call_with_fds(sock, ADOPT_FD_0, file, 8, E_GUEST("BadFileDescriptor"), NOT_IOMMUFD);
                call_with_fds(sock, ADOPT_FD_0, -1, 8, E_GUEST("BadFileDescriptor"), NOT_IOMMUFD);
        }
        adopt_iommufd(sock, false);

        /* Its FUSE fds past its share wait: none of its fds are taken, nor dropped (their
         * release could wait on the server, on the worker's loop): a connection that sends more
         * goes, with them queued on it (closed off the loop), a call without fds goes on. */
        for (unsigned i = 0; i < 2; i++)
                call_with_fds(sock, ADOPT_FD_0, fuse, 8, E_GUEST("BadFileDescriptor"), NOT_IOMMUFD);
        adopt_refused_for_fds(&t, &a, &sock);
        /* Another uid's are, and answered as ever. */
        adopt_iommufd(nsock, false);
        call_with_fds(nsock,
                      strf("{\"method\":\"io.tsmd.Guest.AttachDevice\",\"parameters\":{\"context\":%" PRIi64
                           ",\"vdeviceId\":1,\"pciAddress\":\"" DEV1 "\",\"vfioFileDescriptor\":0}}",
                           ctx),
                      file, 1, E_GUEST("BadFileDescriptor"), "{\"field\":\"vfioFileDescriptor\",\"reason\":\"not a character device\"}");
        adopt_refused_for_fds(&t, &a, &sock);
        json_object_put(refused_connections_at_least(&t, VARLINK_REFUSED_TOO_MANY_FDS_PER_UID, 2));
        good_during_stop(&g, "a uid holding the closer behind a FUSE flush");

        /* The server's death ends the FLUSH, and the 16 closes queued behind it: the flooder's
         * fds are taken again. */
        unsigned held = tsmd_count_fds_of(b.worker);
        fuse_hold_stop(&h);
        wait_fds_at_most(b.worker, held - 16);
        adopt_iommufd(sock, false);
        close(fuse);
        close(file);
        varlink_client_free(a);
        varlink_client_free(nobody);
        expect_recovered_and_stop(&t, &g, &b);
}

/* Sends msg on sock with two fds of /dev/null and then the one reference to a file of "f" of a
 * writeback file system (fuse_hold_start_writeback()), made dirty after through *dirty: whoever
 * releases that reference waits on the server. */
static bool send_dirty_third_may_fail(FuseHold *h, int sock, const char *msg, int *dirty) {
        static const uint8_t page[4096] = { 1 };
        union {
                struct cmsghdr c;
                uint8_t b[CMSG_SPACE(sizeof(int) * 3)];
        } control = {};
        struct iovec iov = { .iov_base = (void *) msg, .iov_len = strlen(msg) + 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof(control) };
        int fds[3];

        ASSERT_OK(fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC));
        ASSERT_OK(fds[1] = open("/dev/null", O_RDONLY | O_CLOEXEC));
        ASSERT_OK(fds[2] = fuse_hold_open(h, O_RDWR));
        if (*dirty < 0)
                ASSERT_OK(*dirty = fuse_hold_open(h, O_RDWR));
        control.c.cmsg_level = SOL_SOCKET;
        control.c.cmsg_type = SCM_RIGHTS;
        control.c.cmsg_len = CMSG_LEN(sizeof(fds));
        memcpy(CMSG_DATA(&control.c), fds, sizeof(fds));
        if (sendmsg(sock, &mh, MSG_NOSIGNAL) != (ssize_t) iov.iov_len) {
                ASSERT_EQ(errno, EPIPE);
                for (unsigned i = 0; i < 3; i++)
                        close(fds[i]);
                return false;
        }
        for (unsigned i = 0; i < 3; i++)
                close(fds[i]);
        ASSERT_EQ(pwrite(*dirty, page, sizeof(page), 0), (ssize_t) sizeof(page));
        return true;
}

static void send_dirty_third(FuseHold *h, int sock, const char *msg, int *dirty) {
        ASSERT_TRUE(send_dirty_third_may_fail(h, sock, msg, dirty));
}

/* SECURITY (security review, accept-flood): a local user holds the worker's closer (a FLUSH its
 * FUSE server never answers), then floods connections past MaxConnectionsPerUid=, each with a
 * byte sent as it connects, as a rule before the worker accepts it. Each is refused at accept
 * and, with bytes but no fds queued, closed at once: nothing of the peer's goes with it, nor does
 * it wait behind the held close. The worker's fds stay as they were (each one waiting would have
 * held one, up to its RLIMIT_NOFILE), another uid's connection is served, and so is a new one
 * after the flood. */
TEST(a_flood_of_refused_connections_with_bytes_leaves_the_worker_its_fds) {
        FuseHold h;
        Tsmd t;
        Good g;
        Baseline b;
        VarlinkClient *a, *nobody, *late;
        unsigned held, queued = 0;
        int fuse, mine[2];

        fuse_hold_needed();
        if (!tsmd_can_switch_uid())
                SKIP("cannot connect as another uid here");

        tsmd_start_config(&t, CONF("[Varlink]\nMaxConnectionsPerUid=4\n"));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        fuse_hold_tsmd(&h, &t, &b, true);
        a = tsmd_connect_guest(&t);
        nobody = tsmd_connect_as(&t, NOBODY, NOBODY);
        CALL_ERROR(nobody, G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        ASSERT_OK(fuse = fuse_hold_open(&h, O_RDWR));

        good_during_start(&g);
        /* The worker's closer waits on this one's FLUSH. */
        call_with_fds(varlink_client_get_fd(a), ADOPT_FD_0, fuse, 1, E_GUEST("BadFileDescriptor"), NOT_IOMMUFD);
        /* Root's share full (the good client, a, and these). */
        for (unsigned i = 0; i < ELEMENTSOF(mine); i++) {
                mine[i] = raw_open(&t);
                raw_expect_alive(mine[i]);
        }
        held = tsmd_count_fds_of(b.worker);
        for (unsigned i = 0; i < 1000; i++) {
                int sock = tsmd_raw_connect(t.guest_socket);

                ASSERT_OK(sock);
                /* EPIPE: the worker was quicker, and closed it with nothing queued. */
                queued += send(sock, "x", 1, MSG_NOSIGNAL) == 1;
                close(sock);
        }
        printf("# %u of the flood's connections had a byte queued as the worker closed them\n", queued);
        /* Behind the flood in the backlog: answered once every one of it was accepted. */
        late = tsmd_connect_as(&t, NOBODY, NOBODY);
        CALL_ERROR(late, G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        CALL_ERROR(nobody, G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        if (tsmd_count_fds_of(b.worker) > held + 8)
                TEST_FAIL("the worker holds %u fds after the flood, %u before it", tsmd_count_fds_of(b.worker), held);
        good_during_stop(&g, "a flood of refused connections with bytes queued, the closer held");

        fuse_hold_stop(&h);
        close(fuse);
        for (unsigned i = 0; i < ELEMENTSOF(mine); i++)
                close(mine[i]);
        varlink_client_free(a);
        varlink_client_free(nobody);
        varlink_client_free(late);
        expect_recovered_and_stop(&t, &g, &b);
}

/* The worker's RLIMIT_NOFILE in the flood below: the closer's share of it, a quarter, is less
 * than the flood. */
#define FLOOD_NOFILE 1024U
#define FLOOD_N 1000U

/* SECURITY (the closer's pause): a local user holds the worker's closer (a FLUSH its FUSE server
 * never answers), then floods connections past MaxConnectionsPerUid=, each with a byte and an
 * ordinary fd (/dev/null, a memfd) sent as it connects: more of them than the closer's share (a
 * quarter of the worker's RLIMIT_NOFILE), past which the worker stops accepting until the queue
 * drains. Each is refused at accept, the fds on it received and closed at once, their close
 * cannot wait: nothing of it waits behind the held close, so the worker keeps accepting for
 * everybody (another uid's new connection, behind the flood in the backlog, is answered while the
 * FLUSH is still held) and its fds stay as they were. */
TEST(a_flood_of_refused_connections_with_ordinary_fds_leaves_the_worker_accepting) {
        struct rlimit ours, low = { .rlim_cur = FLOOD_NOFILE, .rlim_max = FLOOD_NOFILE };
        FuseHold h;
        Tsmd t;
        Good g;
        Baseline b;
        VarlinkClient *a, *nobody, *late;
        unsigned held, queued = 0;
        int fuse, null, memfd, mine[2];

        fuse_hold_needed();
        if (!tsmd_can_switch_uid())
                SKIP("cannot connect as another uid here");
        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &ours));
        if (ours.rlim_max < FLOOD_NOFILE)
                SKIP("our RLIMIT_NOFILE of %llu is below the worker's here", (unsigned long long) ours.rlim_max);

        tsmd_start(&t, &(TsmdOptions) { .config = CONF("[Varlink]\nMaxConnectionsPerUid=4\n"), .nofile = &low });
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        fuse_hold_tsmd(&h, &t, &b, true);
        a = tsmd_connect_guest(&t);
        nobody = tsmd_connect_as(&t, NOBODY, NOBODY);
        CALL_ERROR(nobody, G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        ASSERT_OK(fuse = fuse_hold_open(&h, O_RDWR));
        ASSERT_OK(null = open("/dev/null", O_RDONLY | O_CLOEXEC));
        ASSERT_OK(memfd = memfd_create("tsmd-test", MFD_CLOEXEC));

        good_during_start(&g);
        /* The worker's closer waits on this one's FLUSH. */
        call_with_fds(varlink_client_get_fd(a), ADOPT_FD_0, fuse, 1, E_GUEST("BadFileDescriptor"), NOT_IOMMUFD);
        /* Root's share full (the good client, a, and these). */
        for (unsigned i = 0; i < ELEMENTSOF(mine); i++) {
                mine[i] = raw_open(&t);
                raw_expect_alive(mine[i]);
        }
        held = tsmd_count_fds_of(b.worker);
        for (unsigned i = 0; i < FLOOD_N; i++) {
                int sock = tsmd_raw_connect(t.guest_socket);

                ASSERT_OK(sock);
                /* EPIPE: the worker was quicker, and closed it with nothing queued. */
                queued += send_with_fds(sock, "x", 1, 1, i % 2 ? memfd : null);
                close(sock);
        }
        printf("# %u of the flood's connections had an fd queued as the worker closed them\n", queued);
        /* Behind the flood in the backlog: answered once every one of it was accepted, while
         * the FLUSH is held (FUSE_HOLD_USEC, longer than the call's timeout). */
        late = tsmd_connect_as(&t, NOBODY, NOBODY);
        CALL_ERROR(late, G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        CALL_ERROR(nobody, G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        if (tsmd_count_fds_of(b.worker) > held + 8)
                TEST_FAIL("the worker holds %u fds after the flood, %u before it", tsmd_count_fds_of(b.worker), held);
        good_during_stop(&g, "a flood of refused connections with ordinary fds queued, the closer held");

        fuse_hold_stop(&h);
        close(fuse);
        close(null);
        close(memfd);
        for (unsigned i = 0; i < ELEMENTSOF(mine); i++)
                close(mine[i]);
        varlink_client_free(a);
        varlink_client_free(nobody);
        varlink_client_free(late);
        expect_recovered_and_stop(&t, &g, &b);
}

/* SECURITY: the kernel releases an fd it drops from a message (no room for it) on the thread
 * that receives, and those queued on a socket on the thread that closes it; the release of the
 * last reference to a dirty file of a FUSE file system with writeback_cache waits on its server
 * (fuse_release()), which any local user may mount and serve. A hostile client passes such a
 * file past MaxFdsPerMessage=, and on a connection it then has dropped (a malformed message
 * before it): the worker's loop waits on nobody, another client's Ping is answered while the
 * server holds (a watchdog kills it otherwise, and the test fails). */
TEST(a_writeback_fuse_file_cannot_hold_the_worker_loop) {
        FuseHold h;
        FuseHoldWatch w;
        Tsmd t;
        Good g;
        Baseline b;
        VarlinkClient *a, *other;
        int dirty = -EBADF, r;

        fuse_hold_needed();
        tsmd_start_config(&t, CONF("[Varlink]\nMaxFdsPerMessage=1\nMaxMessageSize=65536\n"));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        r = fuse_hold_start_writeback(&h, FUSE_HOLD_USEC);
        if (r < 0)
                SKIP("no FUSE mount with writeback here: %s", strerror(-r));
        other = tsmd_connect_guest(&t);

        good_during_start(&g);
        /* Past MaxFdsPerMessage=: refused by name, the connection closed. */
        a = tsmd_connect_guest(&t);
        send_dirty_third(&h, varlink_client_get_fd(a), "{\"method\":\"io.tsmd.Service.Ping\"}", &dirty);
        fuse_hold_watch_start(&w, &h, 10 * USEC_PER_SEC);
        (void) CALL_OK(other, "io.tsmd.Service.Ping", NULL);
        if (fuse_hold_watch_end(&w))
                TEST_FAIL("a client's fds past MaxFdsPerMessage= held the worker's loop");
        varlink_client_free(a);
        /* One dirty send per file system (fuse_hold_send_dirty()): a second one. */
        fuse_hold_stop(&h);
        close(dirty);
        dirty = -EBADF;
        ASSERT_OK(fuse_hold_start_writeback(&h, FUSE_HOLD_USEC));

        /* Left queued on a connection the worker drops, unread, for a message past
         * MaxMessageSize= before it (sent before the worker accepts it, as a rule: where the
         * worker was quicker, the send fails EPIPE, and it is tried again). */
        for (unsigned i = 0;; i++) {
                static char big[2 * 65536];
                int sock = tsmd_raw_connect(t.guest_socket);

                ASSERT_TRUE(i < 20);
                memset(big, 'a', sizeof(big));
                ASSERT_OK(sock);
                ASSERT_EQ(send(sock, big, sizeof(big), MSG_NOSIGNAL), (ssize_t) sizeof(big));
                if (send_dirty_third_may_fail(&h, sock, "{\"method\":\"io.tsmd.Service.Ping\"}", &dirty)) {
                        fuse_hold_watch_start(&w, &h, 10 * USEC_PER_SEC);
                        (void) raw_closed_silently(sock, TSMD_WAIT_USEC);
                        (void) CALL_OK(other, "io.tsmd.Service.Ping", NULL);
                        if (fuse_hold_watch_end(&w))
                                TEST_FAIL("fds queued on a dropped connection held the worker's loop");
                        close(sock);
                        break;
                }
                close(sock);
        }
        good_during_stop(&g, "fds of a writeback-cached FUSE file the worker does not keep");

        fuse_hold_stop(&h);
        close(dirty);
        varlink_client_free(other);
        expect_recovered_and_stop(&t, &g, &b);
}

/* SECURITY: the last close of a TCP socket with SO_LINGER waits as long as its owner set while
 * the peer takes none of what is unsent (tests/lingering-tcp.h). The worker closed such a socket
 * a client passed on its loop (only a Unix socket's close counted as one that may wait), and
 * every client waited out the linger; past 15 s the monitor killed the worker. A client passes
 * one (10 s) with AdoptContext and closes its own copy: its refusal and another client's Ping
 * are answered within the good client's bound, the good client is served throughout, and the
 * worker stays (the socket is closed, abortively, on the closer's thread). */
TEST(a_lingering_socket_cannot_hold_the_worker_loop) {
        int sock = -EBADF, listener = -EBADF;
        VarlinkClient *a, *other;
        uint64_t start, took;
        Baseline b;
        Tsmd t;
        Good g;

        tsmd_start_config(&t, CONF(""));
        good_connect(&t, &g, 0);
        b = baseline_take(&t, &g);
        if (lingering_tcp(10, &sock, &listener) < 0)
                SKIP("no loopback TCP here");
        other = tsmd_connect_guest(&t);
        a = tsmd_connect_guest(&t);

        good_during_start(&g);
        start = now_usec();
        ASSERT_TRUE(send_with_fds(varlink_client_get_fd(a), ADOPT_FD_0, strlen(ADOPT_FD_0) + 1, 1, sock));
        close(sock); /* the worker's is the last reference */
        raw_expect_reply(varlink_client_get_fd(a), E_GUEST("BadFileDescriptor"), NOT_IOMMUFD);
        (void) CALL_OK(other, "io.tsmd.Service.Ping", NULL);
        took = now_usec() - start;
        fprintf(stderr, "# the refusal and another client's Ping took %llu ms (bound %llu ms)\n",
                (unsigned long long) (took / USEC_PER_MSEC), (unsigned long long) (g.bound_usec / USEC_PER_MSEC));
        if (took > g.bound_usec)
                TEST_FAIL("a client's lingering socket held the worker's loop for %llu ms",
                          (unsigned long long) (took / USEC_PER_MSEC));
        good_during_stop(&g, "a lingering TCP socket a client passed");
        tsmd_expect_audit(&t, b.seq, "adopt-context", E_GUEST("BadFileDescriptor"), 1);

        varlink_client_free(a);
        varlink_client_free(other);
        close(listener);
        expect_recovered_and_stop(&t, &g, &b);
}

/* SECURITY: a worker whose closer waits on a FLUSH its FUSE server never answers cannot exit,
 * even killed (the kernel waits for the answer uninterruptibly). A stop of tsmd does not wait
 * with it: the monitor kills it after [Worker] StopTimeoutSec= (15 s by default, 3 here), waits
 * KillTimeoutSec= more (5 s, 2 here), and exits, saying why. */
TEST(a_stop_does_not_wait_for_a_worker_a_fuse_server_holds) {
        uint64_t start, deadline;
        VarlinkClient *a;
        FuseHold h;
        pid_t pids[2];
        int fd;
        Tsmd t;

        fuse_hold_needed();
        tsmd_start_config(&t, CONF("[Worker]\nStopTimeoutSec=3\nDrainTimeoutSec=1\nKillTimeoutSec=2\n"));
        pids[0] = t.pid;
        pids[1] = tsmd_worker_pid(&t);
        ASSERT_OK(fuse_hold_start(&h, pids, ELEMENTSOF(pids), true, 60 * USEC_PER_SEC));
        a = tsmd_connect_guest(&t);
        ASSERT_OK(fd = fuse_hold_open(&h, O_RDWR));
        /* The worker's closer now waits on this one's FLUSH. */
        call_with_fds(varlink_client_get_fd(a), ADOPT_FD_0, fd, 1, E_GUEST("BadFileDescriptor"), NOT_IOMMUFD);
        close(fd);

        /* Well within the defaults' 20 s: the settings are what count. */
        start = now_usec();
        deadline = start + 15 * USEC_PER_SEC;
        tsmd_kill(&t, SIGTERM);
        while (tsmd_is_running(&t)) {
                if (now_usec() > deadline)
                        TEST_FAIL("tsmd did not exit within 15 s of SIGTERM with its worker held");
                sleep_usec(10 * USEC_PER_MSEC);
        }
        fprintf(stderr, "# tsmd exited %.1f s after SIGTERM\n", (double) (now_usec() - start) / USEC_PER_SEC);
        ASSERT_GE(now_usec() - start, 4 * USEC_PER_SEC);
        ASSERT_TRUE(tsmd_log_contains(&t, strf("Worker %d did not stop in 3s, killing it.", (int) pids[1])));
        ASSERT_TRUE(tsmd_log_contains(&t, strf("Worker %d has not exited 2s after SIGKILL", (int) pids[1])));
        ASSERT_TRUE(tsmd_log_contains(&t, "exiting without it."));
        ASSERT_TRUE(WIFEXITED(tsmd_terminate(&t)));

        /* The server's death lets the worker go. */
        fuse_hold_stop(&h);
        deadline = now_usec() + TSMD_WAIT_USEC;
        while (kill(pids[1], 0) == 0 && fuse_hold_tgid(pids[1]) == pids[1]) {
                if (now_usec() > deadline)
                        TEST_FAIL("the worker did not exit once the FUSE server was gone");
                sleep_usec(10 * USEC_PER_MSEC);
        }
        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* The children of pid, up to n, from /proc: how many there are. */
static size_t children_of(pid_t pid, pid_t *ret, size_t n) {
        _cleanup_free_ char *s = read_file(strf("/proc/%d/task/%d/children", (int) pid, (int) pid));
        size_t k = 0;

        for (char *p = s, *end; p && *p; p = end) {
                long c = strtol(p, &end, 10);

                if (end == p)
                        break;
                if (k < n)
                        ret[k] = (pid_t) c;
                k++;
        }
        return k;
}

/* Waits (bounded) until tsmd has a worker other than old, and returns it. */
static pid_t wait_worker_other_than(Tsmd *t, pid_t old, uint64_t timeout_usec) {
        uint64_t deadline = now_usec() + timeout_usec;

        for (;;) {
                pid_t c[4];
                size_t n = children_of(t->pid, c, ELEMENTSOF(c));

                for (size_t i = 0; i < MIN(n, ELEMENTSOF(c)); i++)
                        if (c[i] != old)
                                return c[i];
                if (now_usec() > deadline)
                        TEST_FAIL("tsmd started no worker in place of %d within %.0f s", (int) old,
                                  (double) timeout_usec / USEC_PER_SEC);
                sleep_usec(50 * USEC_PER_MSEC);
        }
}

/* SECURITY: a worker whose closer waits on a FLUSH its FUSE server never answers cannot exit,
 * even killed. One killed while tsmd runs on (here by the test: silent, the monitor kills it
 * after [Worker] WatchdogSec=, 15 s by default, 4 here) is given up on KillTimeoutSec= (5 s, 2
 * here) after its SIGKILL: the next worker starts and serves (the audit
 * log included, whose directory's lock the old one still holds) while it lingers. Once the server
 * is gone it exits and is reaped, and nothing else happens: no restart, the new worker serves on. */
TEST(a_worker_a_fuse_server_holds_is_replaced_once_killed) {
        uint64_t start;
        VarlinkClient *a;
        FuseHold h;
        pid_t pids[2], old, next, c[4];
        int fd;
        Tsmd t;

        fuse_hold_needed();
        tsmd_start_config(&t, CONF("[Worker]\nWatchdogSec=4\nKillTimeoutSec=2\n"));
        pids[0] = t.pid;
        pids[1] = old = tsmd_worker_pid(&t);
        ASSERT_OK(fuse_hold_start(&h, pids, ELEMENTSOF(pids), true, 90 * USEC_PER_SEC));
        a = tsmd_connect_guest(&t);
        ASSERT_OK(fd = fuse_hold_open(&h, O_RDWR));
        /* The worker's closer now waits on this one's FLUSH. */
        call_with_fds(varlink_client_get_fd(a), ADOPT_FD_0, fd, 1, E_GUEST("BadFileDescriptor"), NOT_IOMMUFD);
        close(fd);

        start = now_usec();
        ASSERT_OK(kill(old, SIGKILL));
        /* Well within the defaults' 20 s: the settings are what count. */
        next = wait_worker_other_than(&t, old, 15 * USEC_PER_SEC);
        fprintf(stderr, "# worker %d started %.1f s after the SIGKILL of %d\n", (int) next,
                (double) (now_usec() - start) / USEC_PER_SEC, (int) old);
        ASSERT_TRUE(tsmd_log_contains(&t, strf("Worker %d has not spoken for 4 s, killing it.", (int) old)));
        ASSERT_TRUE(tsmd_log_contains(&t, strf("Worker %d has not exited 2s after SIGKILL", (int) old)));
        ASSERT_TRUE(tsmd_log_contains(&t, "starting the next one; it is reaped when the kernel lets it go."));
        /* The old one is still there, held: its pid is not the new one's. */
        ASSERT_EQ(fuse_hold_tgid(old), old);
        ASSERT_TRUE(next != old);
        ASSERT_TRUE(tsmd_wait_log(&t, strf("Worker %d serving again.", (int) next), 1, TSMD_WAIT_USEC));
        {
                _cleanup_(varlink_client_freep) VarlinkClient *g = tsmd_connect_guest(&t);
                json_object *reply = CALL_OK(g, G "OpenContext", NULL);

                close(varlink_client_take_fd(g, (size_t) JINT(reply, "fileDescriptor")));
        }
        tsmd_expect_audit(&t, 0, "open-context", "ok", 1);
        ASSERT_EQ(fuse_hold_tgid(old), old);

        /* The server's death lets the old one go: reaped (no zombie), and only that. */
        fuse_hold_stop(&h);
        ASSERT_TRUE(tsmd_wait_log(&t, strf("Worker %d, killed and given up on before, has exited: reaped.", (int) old), 1,
                                  TSMD_WAIT_USEC));
        ASSERT_TRUE(kill(old, 0) < 0 && errno == ESRCH);
        ASSERT_EQ(children_of(t.pid, c, ELEMENTSOF(c)), 1u);
        ASSERT_EQ(c[0], next);
        sleep_usec(500 * USEC_PER_MSEC);
        ASSERT_EQ(tsmd_log_count(&t, "Started worker"), 2u);
        ASSERT_EQ(tsmd_log_count(&t, "Restarting the worker"), 1u);
        ASSERT_EQ(tsmd_worker_pid(&t), next);
        {
                _cleanup_(varlink_client_freep) VarlinkClient *g = tsmd_connect_guest(&t);
                json_object *reply = CALL_OK(g, G "OpenContext", NULL);

                close(varlink_client_take_fd(g, (size_t) JINT(reply, "fileDescriptor")));
        }
        varlink_client_free(a);
        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

TEST_MAIN();
