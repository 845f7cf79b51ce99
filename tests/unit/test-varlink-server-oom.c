/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Varlink server when memory runs out while it answers: each allocation of a reply (building,
 * serialising, queueing it, at the head of the queue or waiting behind an earlier call) failing
 * in turn, the client gets its answers in its calls' order or loses its connection: never an
 * answer it waits for in vain while connected, nor one paired with the wrong call. The server
 * runs in the test's thread, whose allocations counting-allocator.h counts.
 * Runs in: tests.
 */

#include <sys/socket.h>

#include "counting-allocator.h"
#include "harness.h"
#include "json-util.h"
#include "varlink-server.h"

static const char idl[] =
        "interface io.tsmd.Test\n"
        "method Say(word: string) -> (word: string)\n"
        "method Swallow(word: string) -> (word: string)\n"
        "method Defer() -> ()\n"
        "method Postpone(word: string) -> (word: string)\n"
        "method Intercept() -> ()\n"
        "method Arm() -> ()\n"
        "method Disarm() -> ()\n"
        "method Absent() -> ()\n";

typedef struct Run {
        struct event_base *base;
        VarlinkServer *server;
        VarlinkCall *deferred;
        json_object *intercepted; /* the final answer Intercept()'s interceptor took */
        int client;
        struct event *client_event, *deadline;
        unsigned fail_at; /* the allocation of the reply to "fail" that fails */
        bool reached;     /* whether the reply took that many */
        bool said;        /* Say("fail") ran */
        unsigned window;  /* allocations between Arm() and Disarm() */
        char got[4096];   /* what the client received */
        size_t n_got;
        bool eof, timed_out;
} Run;

static Run run;

static int m_say(VarlinkCall *call, json_object *p, void *userdata) {
        const char *word = json_object_get_string(json_object_object_get(p, "word"));
        json_object *o = json_object_new_object();
        bool inject = streq(word, "fail");
        int r;

        ASSERT_OK(json_object_add(o, "word", json_object_new_string(word)));
        if (inject) {
                alloc_calls = 0;
                alloc_fail_at = run.fail_at;
        }
        r = varlink_call_reply(call, o);
        if (inject) {
                run.reached = alloc_calls >= run.fail_at;
                alloc_fail_at = 0;
                run.said = true;
        }
        return r;
}

/* Say() by a handler that answers through a callback and does not pass its failure on. */
static int m_swallow(VarlinkCall *call, json_object *p, void *userdata) {
        (void) m_say(call, p, userdata);
        return 0;
}

static int m_defer(VarlinkCall *call, json_object *p, void *userdata) {
        run.deferred = varlink_call_ref(call);
        return 0;
}

/* Its handler runs later, by varlink_call_run() (as the daemon's calls that wait for a reload). */
static int m_postpone(VarlinkCall *call, json_object *p, void *userdata) {
        run.deferred = varlink_call_ref(call);
        return varlink_call_postpone(call);
}

static void on_intercepted(VarlinkCall *call, json_object *message, void *userdata) {
        run.intercepted = message;
}

static int m_intercept(VarlinkCall *call, json_object *p, void *userdata) {
        run.deferred = varlink_call_ref(call);
        varlink_call_set_interceptor(call, on_intercepted, NULL);
        return varlink_call_reply(call, NULL);
}

/* The allocations after Arm()'s reply up to Disarm() count (their number in run.window), for
 * what the server answers in between without a method of ours. */
static int m_arm(VarlinkCall *call, json_object *p, void *userdata) {
        int r = varlink_call_reply(call, NULL);

        alloc_calls = 0;
        alloc_fail_at = run.fail_at;
        return r;
}

static int m_disarm(VarlinkCall *call, json_object *p, void *userdata) {
        run.window = alloc_calls;
        alloc_fail_at = 0;
        return varlink_call_reply(call, NULL);
}

static unsigned n_replies(void) {
        unsigned n = 0;

        for (size_t i = 0; i < run.n_got; i++)
                n += run.got[i] == 0;
        return n;
}

static void on_client(evutil_socket_t fd, short what, void *userdata) {
        ssize_t k = read(fd, run.got + run.n_got, sizeof(run.got) - 1 - run.n_got);

        if (k <= 0)
                run.eof = true;
        else
                run.n_got += (size_t) k;
}

static void on_deadline(evutil_socket_t fd, short what, void *userdata) {
        run.timed_out = true;
}

/* Runs the loop until the client has n replies (0: until Say("fail") or a deferring method ran)
 * or is disconnected, or 5 s passed. */
static void run_until(unsigned n) {
        static const struct timeval five_seconds = { .tv_sec = 5 };

        ASSERT_OK(evtimer_add(run.deadline, &five_seconds));
        while (!run.eof && !run.timed_out && (n > 0 ? n_replies() < n : !run.said && !run.deferred))
                ASSERT_TRUE(event_base_loop(run.base, EVLOOP_ONCE) >= 0);
        (void) evtimer_del(run.deadline);
}

static void run_start(unsigned fail_at) {
        int pair[2];

        run = (Run){ .fail_at = fail_at };
        run.base = event_base_new();
        ASSERT_NOT_NULL(run.base);
        ASSERT_OK(varlink_server_new(run.base, &run.server));
        ASSERT_OK(varlink_server_add_interface(run.server, idl));
        ASSERT_OK(varlink_server_bind_method(run.server, "io.tsmd.Test.Say", m_say));
        ASSERT_OK(varlink_server_bind_method(run.server, "io.tsmd.Test.Swallow", m_swallow));
        ASSERT_OK(varlink_server_bind_method(run.server, "io.tsmd.Test.Defer", m_defer));
        ASSERT_OK(varlink_server_bind_method(run.server, "io.tsmd.Test.Postpone", m_postpone));
        ASSERT_OK(varlink_server_bind_method(run.server, "io.tsmd.Test.Intercept", m_intercept));
        ASSERT_OK(varlink_server_bind_method(run.server, "io.tsmd.Test.Arm", m_arm));
        ASSERT_OK(varlink_server_bind_method(run.server, "io.tsmd.Test.Disarm", m_disarm));
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair));
        ASSERT_OK(varlink_server_add_connection(run.server, pair[0]));
        run.client = pair[1];
        run.client_event = event_new(run.base, run.client, EV_READ | EV_PERSIST, on_client, NULL);
        run.deadline = evtimer_new(run.base, on_deadline, NULL);
        ASSERT_NOT_NULL(run.client_event);
        ASSERT_NOT_NULL(run.deadline);
        ASSERT_OK(event_add(run.client_event, NULL));
}

static void run_send(const char *calls, size_t len) {
        ASSERT_EQ(send(run.client, calls, len, MSG_NOSIGNAL), (ssize_t) len);
}

static void run_stop(void) {
        run.deferred = varlink_call_unref(run.deferred);
        json_object_put(run.intercepted);
        varlink_server_free(run.server);
        event_free(run.client_event);
        event_free(run.deadline);
        close(run.client);
        /* The deferred frees the server scheduled. */
        (void) event_base_loop(run.base, EVLOOP_NONBLOCK);
        event_base_free(run.base);
}

/* The client's replies are answers[0], answers[1], ... in order, each one of that call's
 * possible answers ("|" between them); all of them while it is connected, a prefix once it was
 * disconnected. */
static void expect_answers(const char *const *answers, unsigned n) {
        const char *p = run.got;
        unsigned i;

        run.got[run.n_got] = 0;
        for (i = 0; p < run.got + run.n_got && memchr(p, 0, (size_t) (run.got + run.n_got - p)); i++) {
                bool ok = false;

                ASSERT_TRUE(i < n);
                for (const char *a = answers[i]; *a;) {
                        size_t len = strcspn(a, "|");

                        ok = ok || (strlen(p) == len && strneq(p, a, len));
                        a += len + (a[len] == '|');
                }
                if (!ok)
                        TEST_FAIL("allocation %u failing: reply %u is %s", run.fail_at, i, p);
                p += strlen(p) + 1;
        }
        if (!run.eof && i < n)
                TEST_FAIL("allocation %u failing: %u replies of %u, and still connected", run.fail_at, i, n);
}

#define SAY(w) "{\"method\":\"io.tsmd.Test.Say\",\"parameters\":{\"word\":\"" w "\"}}"
#define SAID(w) "{\"parameters\":{\"word\":\"" w "\"}}"
#define FAILED "{\"error\":\"io.tsmd.System\",\"parameters\":{\"errno\":12,\"errnoName\":\"ENOMEM\"}}"

/* Sends calls (a word "fail" and then "next") once for each allocation of the "fail" reply, that
 * one failing, until the reply takes fewer; the answers must be answers[0..1]. With
 * first_keeps_connection, the first allocation's failure (the reply's own) leaves the connection. */
static void each_reply_allocation_failing(const char *calls, size_t size, const char *const answers[2],
                                          bool first_keeps_connection) {
        unsigned k;

        for (k = 1;; k++) {
                run_start(k);
                run_send(calls, size);
                run_until(2);
                expect_answers(answers, 2);
                if (k == 1 && first_keeps_connection)
                        ASSERT_FALSE(run.eof);
                run_stop();
                if (!run.reached)
                        break;
        }
        ASSERT_GE(k, 3U);
}

/* A reply at the head of the queue, sent at once. */
TEST(reply_at_the_head) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        static const char calls[] = SAY("fail") "\0" SAY("next");
        static const char *const answers[] = { SAID("fail") "|" FAILED, SAID("next") };

        each_reply_allocation_failing(calls, sizeof(calls), answers, false);
}

/* A reply waiting behind a deferred call, sent once that is answered. */
TEST(reply_waiting_behind_a_call) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        static const char calls[] = "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{}}\0" SAY("fail") "\0" SAY("next");
        static const char *const answers[] = { "{\"parameters\":{}}", SAID("fail") "|" FAILED, SAID("next") };
        unsigned k;

        for (k = 1;; k++) {
                run_start(k);
                run_send(calls, sizeof(calls));
                run_until(0);
                if (run.deferred)
                        (void) varlink_call_reply(run.deferred, NULL);
                run_until(3);
                expect_answers(answers, 3);
                run_stop();
                if (!run.reached)
                        break;
        }
        ASSERT_GE(k, 3U);
}

/* A handler whose answer could not be built but which returns success all the same (one answering
 * through a callback that does not pass the failure on): io.tsmd.System answers its call once
 * it returns, where the call stayed unanswered and the next call's answer waited behind it. */
TEST(answer_failed_in_a_handler_that_returns_success) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        static const char calls[] = "{\"method\":\"io.tsmd.Test.Swallow\",\"parameters\":{\"word\":\"fail\"}}\0" SAY("next");
        static const char *const answers[] = { SAID("fail") "|" FAILED, SAID("next") };

        /* io.tsmd.System answers the reply's own failure, and the connection stays. */
        each_reply_allocation_failing(calls, sizeof(calls), answers, true);
}

/* Sends calls (one deferring its answer, then Say("next")) once for each allocation of the
 * deferred call's answer, which answer() makes with allocation k failing, until the answer takes
 * fewer; the answers must be answers[0..1], the first allocation's failure leaving the connection. */
static void each_deferred_answer_allocation_failing(const char *calls, size_t size, const char *const answers[2],
                                                    void (*answer)(unsigned k)) {
        unsigned k;

        for (k = 1;; k++) {
                run_start(k);
                run_send(calls, size);
                run_until(0);
                ASSERT_NOT_NULL(run.deferred);
                answer(k);
                run_until(2);
                expect_answers(answers, 2);
                /* The first allocation is the reply's own: io.tsmd.System then answers it, and the
                 * connection stays. */
                if (k == 1)
                        ASSERT_FALSE(run.eof);
                run_stop();
                if (!run.reached)
                        break;
        }
        ASSERT_GE(k, 3U);
}

static void answer_deferred(unsigned k) {
        alloc_calls = 0;
        alloc_fail_at = k;
        (void) varlink_call_reply(run.deferred, NULL);
        run.reached = alloc_calls >= k;
        alloc_fail_at = 0;
}

/* The answer to a deferred call (its handler returned without one), built once the handler is long
 * gone: if that fails, its client must not wait for ever. It gets io.tsmd.System, or, if even
 * that cannot be built or queued, loses its connection; the next call's answer is never taken
 * for this one's. */
TEST(answer_to_a_deferred_call) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        static const char calls[] = "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{}}\0" SAY("next");
        static const char *const answers[] = { "{\"parameters\":{}}|" FAILED, SAID("next") };

        each_deferred_answer_allocation_failing(calls, sizeof(calls), answers, answer_deferred);
}

/* Runs the postponed call's handler: m_swallow(), which fails allocation run.fail_at. */
static void run_postponed(unsigned k) {
        ASSERT_OK(varlink_call_run(run.deferred, m_swallow, NULL));
}

/* The same for a postponed call's handler, run later by varlink_call_run(): its client is answered
 * io.tsmd.System, not left waiting for ever with the next call's answer behind. */
TEST(answer_failed_in_a_postponed_handler_that_returns_success) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        static const char calls[] = "{\"method\":\"io.tsmd.Test.Postpone\",\"parameters\":{\"word\":\"fail\"}}\0" SAY("next");
        static const char *const answers[] = { SAID("fail") "|" FAILED, SAID("next") };

        each_deferred_answer_allocation_failing(calls, sizeof(calls), answers, run_postponed);
}

/* An interceptor (the daemon's audit) that cannot build the answer it was to pass on (AuditFailed,
 * out of memory) passes none: the client loses its connection, and gets no answer made up. */
TEST(intercepted_answer_that_could_not_be_built) {
        static const char calls[] = "{\"method\":\"io.tsmd.Test.Intercept\",\"parameters\":{}}\0" SAY("next");

        run_start(0);
        run_send(calls, sizeof(calls));
        run_until(0);
        ASSERT_NOT_NULL(run.intercepted);
        (void) varlink_call_release(run.deferred, NULL);
        run_until(1);
        ASSERT_TRUE(run.eof);
        ASSERT_EQ(run.n_got, 0U);
        run_stop();
}

/* The server's own error replies with parameters (here MethodNotFound, MethodNotImplemented and
 * InvalidParameter, built by varlink_call_error_kv()): each names what it is about, or is
 * io.tsmd.System, or the connection goes; never an answer with the name missing (null), nor
 * none at all. */
TEST(error_replies_of_the_server) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        static const char calls[] = "{\"method\":\"io.tsmd.Test.Arm\",\"parameters\":{}}\0"
                                    "{\"method\":\"io.tsmd.Test.Nope\",\"parameters\":{}}\0"
                                    "{\"method\":\"io.tsmd.Test.Absent\",\"parameters\":{}}\0"
                                    "{\"method\":\"io.tsmd.Test.Say\",\"parameters\":{\"word\":1}}\0"
                                    "{\"method\":\"io.tsmd.Test.Disarm\",\"parameters\":{}}";
        static const char *const answers[] = {
                "{\"parameters\":{}}",
                /* Each, or io.tsmd.System where it could not be built. */
                "{\"error\":\"org.varlink.service.MethodNotFound\",\"parameters\":{\"method\":\"io.tsmd.Test.Nope\"}}|" FAILED,
                "{\"error\":\"org.varlink.service.MethodNotImplemented\",\"parameters\":{\"method\":"
                "\"io.tsmd.Test.Absent\"}}|" FAILED,
                /* Out of memory to name the field, the validator still knows the call is bad. */
                "{\"error\":\"org.varlink.service.InvalidParameter\",\"parameters\":{\"parameter\":\"word\"}}|"
                "{\"error\":\"org.varlink.service.InvalidParameter\",\"parameters\":{\"parameter\":\"parameters\"}}|" FAILED,
                "{\"parameters\":{}}|" FAILED,
        };
        unsigned n;

        /* Once with nothing failing, to count them. */
        run_start(0);
        run_send(calls, sizeof(calls));
        run_until(ELEMENTSOF(answers));
        expect_answers(answers, ELEMENTSOF(answers));
        n = run.window;
        run_stop();
        ASSERT_GE(n, 6U);

        for (unsigned k = 1; k <= n; k++) {
                run_start(k);
                run_send(calls, sizeof(calls));
                run_until(ELEMENTSOF(answers));
                expect_answers(answers, ELEMENTSOF(answers));
                run_stop();
        }
}

TEST_MAIN();
