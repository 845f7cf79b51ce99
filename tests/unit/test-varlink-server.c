/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Varlink server and client against each other over a real socket: the server runs its
 * libevent loop in a thread, the test drives it with the blocking/async client and with raw
 * bytes. Covers every standard error, parameter validation, ordering of pipelined and
 * deferred replies, oneway, more, fd passing and each client-controlled limit, including the
 * message and idle timeouts.
 */

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "fd-closer.h"
#include "fuse-hold.h"
#include "harness.h"
#include "json-util.h"
#include "log-capture.h"
#include "log.h"
#include "varlink-client.h"
#include "varlink-errors.h"
#include "varlink-message.h"
#include "varlink-server.h"

static const char test_idl[] =
        "# A test interface.\n"
        "interface io.tsmd.Test\n"
        "type Kind (a, b)\n"
        "type Inner (value: int, label: ?string)\n"
        "method Echo(text: string, number: ?int, list: ?[]string, map: ?[string]int,\n"
        "            kind: ?Kind, inner: ?Inner) -> (text: string, number: ?int)\n"
        "method Fail(errnoValue: int) -> ()\n"
        "method NotBound() -> ()\n"
        "method Denied() -> ()\n"
        "# [Requires 'more' flag]\n"
        "method Count(n: int, intercept: ?bool) -> (i: int)\n"
        "method Defer(id: int) -> (id: int)\n"
        "method Release(id: int) -> (released: int)\n"
        "method Pending() -> (calls: int)\n"
        "method Record(text: string) -> ()\n"
        "method Recorded() -> (count: int)\n"
        "method PassFd(fd: int, copies: ?int) -> (fd: int)\n"
        "method Held(id: int, notify: ?int) -> (id: int)\n"
        "method Unhold(id: int) -> ()\n"
        "# [Requires 'more' flag]\n"
        "method Stream(id: int) -> (id: int)\n"
        "# [Requires 'more' flag]\n"
        "method Flood(size: int) -> (text: string)\n"
        "method Big(size: int, intercept: ?bool) -> (text: string)\n"
        "method Fill(extra: int) -> (text: string)\n"
        "method Round(pad: ?string) -> (round: int)\n"
        "method Sleep(ms: int) -> ()\n"
        "method Reload() -> ()\n"
        "method Later(id: int, size: int, reserve: ?bool) -> (text: string, fd: int)\n"
        "method Sent(size: int, fail: ?bool) -> (text: string)\n"
        "method SentLog() -> (log: string)\n"
        "method Postpone(id: int, fd: int) -> (fd: int)\n"
        "method Resume(id: int, refuse: ?bool) -> (result: int)\n"
        "method Latin1() -> (text: string)\n"
        "error Nothing ()\n";

typedef struct TestServer {
        struct event_base *base;
        VarlinkServer *server;
        pthread_t thread;
        char dir[64];
        char path[128];
        char admin_path[128]; /* with admin_listener: a VARLINK_LISTEN_ADMIN socket too */
        bool admin_listener;
        int stop_pipe[2];
        struct event *stop_event;
        int asleep_pipe[2]; /* Sleep writes a byte here as it starts sleeping */
        int wake_pipe[2];   /* and ends its sleep early on a byte here */

        VarlinkCall *deferred[64];
        VarlinkCall *postponed[64]; /* Postpone's, run (or refused) by Resume */
        VarlinkCall *held[64];
        json_object *held_answer[64];
        unsigned recorded;
        unsigned n_disconnects;
        size_t disconnected_max_message_size; /* what the last disconnected one said it was */
        int flood_result;            /* what the notification that failed returned */
        int held_notify_result;      /* what Held's last notification returned */
        unsigned flood_sent;         /* notifications it queued before that */
        VarlinkLimits reload_limits; /* what Reload sets, as the daemon's reload does */
        size_t later_size[64];       /* a deferred Later's text, answered by Release */
        unsigned flood_disconnects;  /* n_disconnects right after it returned */
        uint64_t n_timed_out; /* the server's count, taken in server_stop() */
        char refusals[4096];  /* "error method [reason]\n" for each refusal, in order */
        unsigned n_refused;   /* refusals, however many refusals holds (counted after last_refusal) */
        char last_refusal[256];
        char intercepted[128]; /* what Big's interceptor was given: an error's name, or "ok" */
        unsigned n_echoed;
        size_t echo_bound;     /* given to varlink_server_set_reply_bound() for Echo, if set */
        unsigned echo_bound_fds;
        char sent_log[256];   /* what the sent callbacks of Sent's calls got, in order: "0 -107 " */
        bool count_rounds;    /* set before server_start(): rounds counts the loop's rounds */
        bool with_holds;      /* set before server_start(): the server asks on_holds() */
        bool conn_holds;      /* what on_holds() says of every connection */
        bool with_administers; /* set before server_start(): the server asks on_administers() */
        bool with_named;      /* set before server_start(): the server asks on_named() */
        struct event *round_event;
        unsigned rounds;
} TestServer;

static TestServer ts;

/* How long the test waits for what the server's thread does: the clock bounds it, not a count of
 * tries, as each try takes longer on a busy machine (CI runs four tests at a time on two cores,
 * and the sanitizer build is several times slower). */
#define WAIT_USEC (10 * 1000000ULL)

/* Whether cond holds within WAIT_USEC, looked at every 5 ms. */
#define WAIT_FOR(cond)                                                                             \
        ({                                                                                         \
                uint64_t _deadline_ = now_monotonic_usec() + WAIT_USEC;                            \
                bool _done_;                                                                       \
                while (!(_done_ = (cond)) && now_monotonic_usec() < _deadline_)                    \
                        usleep(5000);                                                              \
                _done_;                                                                            \
        })

/* A formatted string in one of a few rotating static buffers. */
static const char *strf(const char *format, ...) _printf_(1, 2);
static const char *strf(const char *format, ...) {
        static char bufs[4][256];
        static unsigned next;
        char *b = bufs[next++ % ELEMENTSOF(bufs)];
        va_list ap;

        va_start(ap, format);
        (void) vsnprintf(b, sizeof(bufs[0]), format, ap);
        va_end(ap);
        return b;
}

static int m_echo(VarlinkCall *call, json_object *p, void *userdata) {
        json_object *reply = json_object_new_object(), *v;

        __atomic_add_fetch(&ts.n_echoed, 1, __ATOMIC_RELEASE);
        json_object_add(reply, "text", json_object_get(json_object_object_get(p, "text")));
        if (json_object_object_get_ex(p, "number", &v) && v)
                json_object_add(reply, "number", json_object_get(v));
        return varlink_call_reply(call, reply);
}

/* A reply quoting a file that is not UTF-8, as the server must not send one. */
static int m_latin1(VarlinkCall *call, json_object *p, void *userdata) {
        json_object *reply = json_object_new_object();

        json_object_add(reply, "text", json_object_new_string("jos\xe9"));
        return varlink_call_reply(call, reply);
}

static int m_fail(VarlinkCall *call, json_object *p, void *userdata) {
        return -(int) json_object_get_int(json_object_object_get(p, "errnoValue"));
}

static int m_denied(VarlinkCall *call, json_object *p, void *userdata) {
        return varlink_call_error(call, VARLINK_ERROR_PERMISSION_DENIED, NULL);
}

static void on_big_answer(VarlinkCall *call, json_object *message, void *userdata);

static int m_count(VarlinkCall *call, json_object *p, void *userdata) {
        int64_t n = json_object_get_int64(json_object_object_get(p, "n"));
        json_object *o;

        if (json_object_get_boolean(json_object_object_get(p, "intercept")))
                varlink_call_set_interceptor(call, on_big_answer, NULL);
        for (int64_t i = 0; i < n - 1; i++) {
                o = json_object_new_object();
                json_object_add(o, "i", json_object_new_int64(i));
                if (varlink_call_notify(call, o) < 0)
                        return 0;
        }
        o = json_object_new_object();
        json_object_add(o, "i", json_object_new_int64(n - 1));
        return varlink_call_reply(call, o);
}

static int m_defer(VarlinkCall *call, json_object *p, void *userdata) {
        int64_t id = json_object_get_int64(json_object_object_get(p, "id"));

        if (id < 0 || id >= 64 || ts.deferred[id])
                return varlink_call_error_invalid_parameter(call, "id");
        ts.deferred[id] = varlink_call_ref(call);
        return 0;
}

/* Stream: a "more" call that notifies once and waits, as a subscription; Release ends it. */
static int m_stream(VarlinkCall *call, json_object *p, void *userdata) {
        json_object *o = json_object_new_object();

        json_object_add(o, "id", json_object_new_int64(-1));
        ASSERT_OK(varlink_call_notify(call, o));
        return m_defer(call, p, userdata);
}

/* Answers the deferred call; released is its id, or the negative errno of that answer. */
static int m_release(VarlinkCall *call, json_object *p, void *userdata) {
        int64_t id = json_object_get_int64(json_object_object_get(p, "id"));
        VarlinkCall *d;
        json_object *o;
        int r;

        if (id < 0 || id >= 64 || !ts.deferred[id])
                return varlink_call_error_invalid_parameter(call, "id");
        d = ts.deferred[id];
        ts.deferred[id] = NULL;
        o = json_object_new_object();
        if (ts.later_size[id] > 0) {
                _cleanup_free_ char *text = malloc(ts.later_size[id] + 1);

                ASSERT_NOT_NULL(text);
                memset(text, 'x', ts.later_size[id]);
                text[ts.later_size[id]] = 0;
                json_object_add(o, "text", json_object_new_string(text));
                json_object_add(o, "fd", json_object_new_int(varlink_call_push_fd(d, open("/dev/null", O_RDONLY | O_CLOEXEC))));
                ts.later_size[id] = 0;
        } else
                json_object_add(o, "id", json_object_new_int64(id));
        r = varlink_call_reply(d, o);
        varlink_call_unref(d);

        o = json_object_new_object();
        json_object_add(o, "released", json_object_new_int64(r < 0 ? r : id));
        return varlink_call_reply(call, o);
}

/* Flood: notifies until the connection's output is full, as an event source does to a
 * subscriber that stopped reading. */
static int m_flood(VarlinkCall *call, json_object *p, void *userdata) {
        int64_t size = json_object_get_int64(json_object_object_get(p, "size"));
        _cleanup_free_ char *text = malloc((size_t) size + 1);
        int r;

        ASSERT_NOT_NULL(text);
        memset(text, 'x', (size_t) size);
        text[size] = 0;
        for (;;) {
                json_object *o = json_object_new_object();

                json_object_add(o, "text", json_object_new_string(text));
                r = varlink_call_notify(call, o);
                if (r < 0)
                        break;
                ts.flood_sent++;
        }
        ts.flood_result = r;
        ts.flood_disconnects = ts.n_disconnects;
        return 0;
}

/* Big: one reply of size bytes of text. */
/* Big's interceptor, as the daemon's audit record: notes the answer it is given, releases it. */
static void on_big_answer(VarlinkCall *call, json_object *message, void *userdata) {
        json_object *e = json_object_object_get(message, "error");

        snprintf(ts.intercepted, sizeof(ts.intercepted), "%s", e ? json_object_get_string(e) : "ok");
        (void) varlink_call_release(call, message);
}

static int m_big(VarlinkCall *call, json_object *p, void *userdata) {
        int64_t size = json_object_get_int64(json_object_object_get(p, "size"));
        _cleanup_free_ char *text = malloc((size_t) size + 1);
        json_object *o = json_object_new_object();

        ASSERT_NOT_NULL(text);
        if (json_object_get_boolean(json_object_object_get(p, "intercept")))
                varlink_call_set_interceptor(call, on_big_answer, NULL);
        memset(text, 'x', (size_t) size);
        text[size] = 0;
        json_object_add(o, "text", json_object_new_string(text));
        return varlink_call_reply(call, o);
}

/* Round: which round of the server's loop handles the call (see on_round()). */
/* Reload: the limits in ts.reload_limits, from a handler on the server's thread, as the
 * daemon's io.tsmd.Service.Reload does. */
static int m_reload(VarlinkCall *call, json_object *p, void *userdata) {
        int r = varlink_server_set_limits(ts.server, &ts.reload_limits);

        return r < 0 ? r : varlink_call_reply(call, NULL);
}

/* Later: a call that acts, answered by Release with size bytes of text and an fd: within its
 * bound, or (reserve) within the room it reserves. */
static int m_later(VarlinkCall *call, json_object *p, void *userdata) {
        int64_t id = json_object_get_int64(json_object_object_get(p, "id"));
        int64_t size = json_object_get_int64(json_object_object_get(p, "size"));

        json_object *reserve = json_object_object_get(p, "reserve");

        if (id < 0 || id >= 64 || ts.deferred[id] || size <= 0 || size > 8000 ||
            (size > 4000 && !json_object_get_boolean(reserve)) ||
            (json_object_get_boolean(reserve) && (size_t) size + 64 > varlink_call_reserve_reply_room(call)))
                return varlink_call_error_invalid_parameter(call, "id");
        ts.later_size[id] = (size_t) size;
        ts.deferred[id] = varlink_call_ref(call);
        return 0;
}

static int m_round(VarlinkCall *call, json_object *p, void *userdata) {
        json_object *o = json_object_new_object();

        json_object_add(o, "round", json_object_new_int64(ts.rounds));
        return varlink_call_reply(call, o);
}

/* Sleep: blocks the server's loop, so that what clients send meanwhile is all ready at once; it
 * says when it starts (server_sleep() waits for that) and ends at a byte on wake_pipe. */
static int m_sleep(VarlinkCall *call, json_object *p, void *userdata) {
        struct pollfd w = { .fd = ts.wake_pipe[0], .events = POLLIN };
        char c;

        ASSERT_EQ(write(ts.asleep_pipe[1], "z", 1), 1);
        if (poll(&w, 1, (int) json_object_get_int64(json_object_object_get(p, "ms"))) == 1)
                ASSERT_EQ(read(ts.wake_pipe[0], &c, 1), 1);
        return varlink_call_reply(call, NULL);
}

/* A zero timer armed anew each time it fires fires once per round of the loop (and keeps the
 * loop from sleeping: only for the tests that count rounds). */
static void on_round(evutil_socket_t fd, short what, void *userdata) {
        static const struct timeval zero = {};

        ts.rounds++;
        evtimer_add(ts.round_event, &zero);
}

/* Fill: the longest text whose reply fits the connection's MaxMessageSize=, and extra bytes more:
 * {"parameters":{"text":"..."}} and its NUL take 27 bytes besides the text. */
static int m_fill(VarlinkCall *call, json_object *p, void *userdata) {
        int64_t extra = json_object_get_int64(json_object_object_get(p, "extra"));
        size_t size = varlink_conn_get_max_message_size(varlink_call_get_conn(call)) - 27 + (size_t) extra;
        _cleanup_free_ char *text = malloc(size + 1);
        json_object *o = json_object_new_object();

        ASSERT_NOT_NULL(text);
        memset(text, 'x', size);
        text[size] = 0;
        json_object_add(o, "text", json_object_new_string(text));
        return varlink_call_reply(call, o);
}

static void on_sent(int result, void *userdata) {
        size_t n = strlen(ts.sent_log);

        ASSERT_TRUE(userdata == &ts);
        snprintf(ts.sent_log + n, sizeof(ts.sent_log) - n, "%d ", result);
}

/* Sent: answers size bytes of text (an error with fail), and logs what became of the answer. */
static int m_sent(VarlinkCall *call, json_object *p, void *userdata) {
        json_object *fail;

        varlink_call_set_sent_callback(call, on_sent, &ts);
        if (json_object_object_get_ex(p, "fail", &fail) && json_object_get_boolean(fail))
                return varlink_call_error(call, "io.tsmd.Test.Nothing", NULL);
        return m_big(call, p, userdata);
}

static int m_sent_log(VarlinkCall *call, json_object *p, void *userdata) {
        json_object *o = json_object_new_object();

        json_object_add(o, "log", json_object_new_string(ts.sent_log));
        return varlink_call_reply(call, o);
}

static void on_disconnect(VarlinkServer *s, VarlinkConn *c, void *userdata) {
        ts.disconnected_max_message_size = varlink_conn_get_max_message_size(c);
        __atomic_add_fetch(&ts.n_disconnects, 1, __ATOMIC_RELEASE);
}

static int m_pending(VarlinkCall *call, json_object *p, void *userdata) {
        json_object *o = json_object_new_object();
        int n = 0;

        for (unsigned i = 0; i < 64; i++)
                n += !!ts.deferred[i] + !!ts.postponed[i];
        json_object_add(o, "calls", json_object_new_int(n));
        return varlink_call_reply(call, o);
}

static int m_record(VarlinkCall *call, json_object *p, void *userdata) {
        ts.recorded++;
        return varlink_call_reply(call, NULL);
}

static int m_recorded(VarlinkCall *call, json_object *p, void *userdata) {
        json_object *o = json_object_new_object();

        json_object_add(o, "count", json_object_new_int((int) ts.recorded));
        return varlink_call_reply(call, o);
}

static int m_pass_fd(VarlinkCall *call, json_object *p, void *userdata) {
        json_object *o;
        int fd, copy, idx, r;

        fd = varlink_call_get_fd_parameter(call, p, "fd");
        if (fd == -EMFILE)
                return fd; /* ours, not the client's: io.tsmd.System */
        if (fd < 0)
                return varlink_call_error_invalid_parameter(call, "fd");
        copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                return -errno;
        idx = varlink_call_push_fd(call, copy);
        if (idx < 0)
                return idx;
        /* With copies: that many of it in all. */
        for (int64_t i = 1; i < json_object_get_int64(json_object_object_get(p, "copies")); i++) {
                copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (copy < 0)
                        return -errno;
                r = varlink_call_push_fd(call, copy);
                if (r < 0)
                        return r;
        }
        o = json_object_new_object();
        json_object_add(o, "fd", json_object_new_int(idx));
        return varlink_call_reply(call, o);
}

/* Postpone: PassFd, run later by Resume (as the daemon runs a call that waits for room in its
 * audit log), or refused by it. */
static int m_postpone(VarlinkCall *call, json_object *p, void *userdata) {
        int64_t id = json_object_get_int64(json_object_object_get(p, "id"));

        if (id < 0 || id >= 64 || ts.postponed[id])
                return varlink_call_error_invalid_parameter(call, "id");
        ASSERT_TRUE(!varlink_call_is_postponed(call));
        ASSERT_OK(varlink_call_postpone(call));
        ASSERT_TRUE(varlink_call_is_postponed(call));
        ts.postponed[id] = varlink_call_ref(call);
        return 0;
}

static int m_resume(VarlinkCall *call, json_object *p, void *userdata) {
        int64_t id = json_object_get_int64(json_object_object_get(p, "id"));
        json_object *refuse, *o;
        VarlinkCall *d;
        int r;

        if (id < 0 || id >= 64 || !ts.postponed[id])
                return varlink_call_error_invalid_parameter(call, "id");
        d = TAKE_PTR(ts.postponed[id]);
        if (json_object_object_get_ex(p, "refuse", &refuse) && json_object_get_boolean(refuse))
                r = varlink_call_error(d, "io.tsmd.Test.Nothing", NULL);
        else
                r = varlink_call_run(d, m_pass_fd, NULL);
        ASSERT_FALSE(varlink_call_is_postponed(d));
        varlink_call_unref(d);
        o = json_object_new_object();
        json_object_add(o, "result", json_object_new_int(r));
        return varlink_call_reply(call, o);
}

/* Held: answers at once, but its answer is intercepted and released only by Unhold, as the
 * daemon does while an audit record is written. */
static void on_held_answer(VarlinkCall *call, json_object *message, void *userdata) {
        intptr_t id = (intptr_t) userdata;

        ts.held_answer[id] = message;
        __atomic_store_n(&ts.held[id], varlink_call_ref(call), __ATOMIC_RELEASE);
}

static int m_held(VarlinkCall *call, json_object *p, void *userdata) {
        int64_t id = json_object_get_int64(json_object_object_get(p, "id"));
        json_object *o = json_object_new_object();

        if (id < 0 || id >= 64)
                return varlink_call_error_invalid_parameter(call, "id");
        varlink_call_set_interceptor(call, on_held_answer, (void *) (intptr_t) id);
        /* With notify (a "more" call): that many notifications first, and its answer's fate logged. */
        if (json_object_object_get(p, "notify")) {
                varlink_call_set_sent_callback(call, on_sent, &ts);
                for (int64_t i = json_object_get_int64(json_object_object_get(p, "notify")); i > 0; i--)
                        ts.held_notify_result = varlink_call_notify(call, json_object_new_object());
        }
        json_object_add(o, "id", json_object_new_int64(id));
        return varlink_call_reply(call, o);
}

static int m_unhold(VarlinkCall *call, json_object *p, void *userdata) {
        int64_t id = json_object_get_int64(json_object_object_get(p, "id"));

        if (id < 0 || id >= 64 || !ts.held[id])
                return varlink_call_error_invalid_parameter(call, "id");
        (void) varlink_call_release(ts.held[id], TAKE_PTR(ts.held_answer[id]));
        ts.held[id] = varlink_call_unref(ts.held[id]);
        return varlink_call_reply(call, NULL);
}

/* Waits for the server to hold the answer of Held id: Unhold of it before that is refused. */
static void wait_held(unsigned id) {
        ASSERT_TRUE(WAIT_FOR(__atomic_load_n(&ts.held[id], __ATOMIC_ACQUIRE)));
}

/* The refusal callback may take over the answer: shown by replacing the one of a made-up method. */
static void on_intercepted_refusal(VarlinkCall *call, json_object *message, void *userdata) {
        json_object *m = NULL;

        json_object_put(message);
        ASSERT_OK(varlink_message_new_error("io.tsmd.Test.Nothing", NULL, &m));
        (void) varlink_call_release(call, m);
}

static void on_refusal(VarlinkServer *s, const struct ucred *peer, VarlinkConn *c, VarlinkCall *call,
                       const char *error, const char *reason, void *userdata) {
        size_t n = strlen(ts.refusals);

        ASSERT_TRUE(!call || varlink_call_get_conn(call) == c);
        snprintf(ts.last_refusal, sizeof(ts.last_refusal), "%s %s%s%s%s%s\n", error,
                 call ? varlink_call_get_method(call) : c ? "-" : "(not accepted)",
                 peer->uid == geteuid() && peer->pid == getpid() ? "" : " (another peer)",
                 reason ? " [" : "", strempty(reason), reason ? "]" : "");
        snprintf(ts.refusals + n, sizeof(ts.refusals) - n, "%s", ts.last_refusal);
        __atomic_add_fetch(&ts.n_refused, 1, __ATOMIC_RELEASE);
        if (call && streq(varlink_call_get_method(call), "io.tsmd.Test.Intercepted"))
                varlink_call_set_interceptor(call, on_intercepted_refusal, NULL);
}

static bool on_holds(VarlinkConn *c, void *userdata) {
        return __atomic_load_n(&ts.conn_holds, __ATOMIC_ACQUIRE);
}

/* Who administers, in these tests: a peer whose socket is bound to an abstract name starting
 * "admin-" (admin_connect()), which needs no second uid. */
static bool on_administers(VarlinkServer *s, const struct ucred *peer, int fd, void *userdata) {
        struct sockaddr_un sa = {};
        socklen_t sl = sizeof(sa);

        return getpeername(fd, (struct sockaddr *) &sa, &sl) >= 0 &&
               sl > offsetof(struct sockaddr_un, sun_path) + strlen("admin-") && sa.sun_path[0] == 0 &&
               strneq(sa.sun_path + 1, "admin-", strlen("admin-"));
}

/* Whom the server's user names, in these tests: a peer whose socket is bound to an abstract name
 * starting "named-" (named_connect()). */
static bool on_named(VarlinkConn *c, void *userdata) {
        struct sockaddr_un sa = {};
        socklen_t sl = sizeof(sa);

        return getpeername(varlink_conn_get_fd(c), (struct sockaddr *) &sa, &sl) >= 0 &&
               sl > offsetof(struct sockaddr_un, sun_path) + strlen("named-") && sa.sun_path[0] == 0 &&
               strneq(sa.sun_path + 1, "named-", strlen("named-"));
}

static void on_stop(evutil_socket_t fd, short what, void *userdata) {
        event_base_loopbreak(ts.base);
}

static void *server_thread(void *arg) {
        event_base_dispatch(ts.base);
        return NULL;
}

static void server_start(const VarlinkLimits *limits) {
        static const struct {
                const char *name;
                VarlinkMethodFunc func;
        } methods[] = {
                { "io.tsmd.Test.Echo", m_echo },         { "io.tsmd.Test.Fail", m_fail },
                { "io.tsmd.Test.Denied", m_denied },     { "io.tsmd.Test.Count", m_count },
                { "io.tsmd.Test.Defer", m_defer },       { "io.tsmd.Test.Release", m_release },
                { "io.tsmd.Test.Pending", m_pending },   { "io.tsmd.Test.Record", m_record },
                { "io.tsmd.Test.Recorded", m_recorded }, { "io.tsmd.Test.PassFd", m_pass_fd },
                { "io.tsmd.Test.Held", m_held },         { "io.tsmd.Test.Unhold", m_unhold },
                { "io.tsmd.Test.Stream", m_stream },     { "io.tsmd.Test.Flood", m_flood },
                { "io.tsmd.Test.Big", m_big },           { "io.tsmd.Test.Fill", m_fill },
                { "io.tsmd.Test.Round", m_round },       { "io.tsmd.Test.Sleep", m_sleep },
                { "io.tsmd.Test.Reload", m_reload },     { "io.tsmd.Test.Later", m_later },
                { "io.tsmd.Test.Sent", m_sent },         { "io.tsmd.Test.SentLog", m_sent_log },
                { "io.tsmd.Test.Postpone", m_postpone }, { "io.tsmd.Test.Resume", m_resume },
                { "io.tsmd.Test.Latin1", m_latin1 },
        };

        strcpy(ts.dir, "/tmp/test-varlink-XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(ts.dir));
        ASSERT_OK(chmod(ts.dir, 0755));
        snprintf(ts.path, sizeof(ts.path), "%s/sock", ts.dir);

        ts.base = event_base_new();
        ASSERT_NOT_NULL(ts.base);
        ASSERT_OK(varlink_server_new(ts.base, &ts.server));
        ASSERT_OK(varlink_server_set_info(ts.server, "Test Vendor", "test-product", "1.2.3", "https://example.org/"));
        if (limits)
                ASSERT_OK(varlink_server_set_limits(ts.server, limits));
        ASSERT_OK(varlink_server_add_interface(ts.server, test_idl));
        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                ASSERT_OK(varlink_server_bind_method(ts.server, methods[i].name, methods[i].func));
        if (ts.echo_bound > 0 || ts.echo_bound_fds > 0)
                ASSERT_OK(varlink_server_set_reply_bound(ts.server, "io.tsmd.Test.Echo", ts.echo_bound,
                                                         ts.echo_bound_fds));
        ASSERT_OK(varlink_server_set_reply_bound(ts.server, "io.tsmd.Test.Later", 4096, 1));
        ASSERT_ERRNO(varlink_server_set_reply_bound(ts.server, "io.tsmd.Test.Nope", 1, 0), ENOENT);
        ASSERT_ERRNO(varlink_server_bind_method(ts.server, "io.tsmd.Test.Nope", m_echo), ENOENT);
        ASSERT_ERRNO(varlink_server_bind_method(ts.server, "io.tsmd.Test.Echo", m_echo), EEXIST);
        ASSERT_OK(varlink_server_listen_path_full(ts.server, ts.path, 0666, NULL, 0));
        if (ts.admin_listener) {
                snprintf(ts.admin_path, sizeof(ts.admin_path), "%s/admin", ts.dir);
                ASSERT_OK(varlink_server_listen_path_full(ts.server, ts.admin_path, 0600, NULL, VARLINK_LISTEN_ADMIN));
        }
        ts.refusals[0] = 0;
        ts.n_refused = 0;
        ts.sent_log[0] = 0;
        ts.n_disconnects = 0;
        varlink_server_set_refusal_callback(ts.server, on_refusal);
        varlink_server_set_connection_callbacks(ts.server, NULL, on_disconnect);
        if (ts.with_holds)
                varlink_server_set_holds_callback(ts.server, on_holds);
        if (ts.with_administers)
                varlink_server_set_administers_callback(ts.server, on_administers);
        if (ts.with_named)
                varlink_server_set_named_callback(ts.server, on_named);

        ASSERT_OK(pipe2(ts.stop_pipe, O_CLOEXEC));
        ASSERT_OK(pipe2(ts.asleep_pipe, O_CLOEXEC));
        ASSERT_OK(pipe2(ts.wake_pipe, O_CLOEXEC));
        ts.stop_event = event_new(ts.base, ts.stop_pipe[0], EV_READ, on_stop, NULL);
        event_add(ts.stop_event, NULL);
        ts.rounds = 0;
        if (ts.count_rounds) {
                ts.round_event = evtimer_new(ts.base, on_round, NULL);
                ASSERT_NOT_NULL(ts.round_event);
                on_round(-1, 0, NULL);
        }
        ASSERT_EQ(pthread_create(&ts.thread, NULL, server_thread, NULL), 0);
}

static void server_stop(void) {
        ASSERT_EQ(write(ts.stop_pipe[1], "x", 1), 1);
        pthread_join(ts.thread, NULL);
        for (unsigned i = 0; i < 2; i++) {
                close(ts.stop_pipe[i]);
                close(ts.asleep_pipe[i]);
                close(ts.wake_pipe[i]);
        }
        for (unsigned i = 0; i < 64; i++) {
                ts.deferred[i] = varlink_call_unref(ts.deferred[i]);
                ts.held[i] = varlink_call_unref(ts.held[i]);
                ts.held_answer[i] = (json_object_put(ts.held_answer[i]), NULL);
        }
        ts.n_timed_out = varlink_server_get_n_timed_out(ts.server);
        varlink_server_free(ts.server);
        event_free(ts.stop_event);
        if (ts.round_event) {
                event_free(ts.round_event);
                ts.round_event = NULL;
        }
        ts.count_rounds = false;
        /* Run the deferred frees the shutdown scheduled, then make sure nothing is left. */
        event_base_loop(ts.base, EVLOOP_NONBLOCK);
        event_base_free(ts.base);
        unlink(ts.path);
        if (ts.admin_listener)
                unlink(ts.admin_path);
        ts.admin_listener = false;
        ts.with_holds = ts.conn_holds = false;
        ts.with_administers = false;
        ts.with_named = false;
        rmdir(ts.dir);
}

static VarlinkClient *client_new(void) {
        VarlinkClient *c;

        ASSERT_OK(varlink_client_connect(ts.path, &c));
        varlink_client_set_timeout(c, 10 * 1000000ULL);
        return c;
}

static json_object *parse(const char *s) {
        json_object *o = json_tokener_parse(s);
        ASSERT_NOT_NULL(o);
        return o;
}

/* Calls a method expecting an error; returns the error's parameters as a JSON string. */
static void expect_error(VarlinkClient *c, const char *method, const char *params,
                         const char *error, const char *error_params) {
        json_object *reply = NULL;
        const char *e = NULL;

        ASSERT_OK(varlink_client_call(c, method, params ? parse(params) : NULL, &reply, &e));
        ASSERT_STREQ(e, error);
        if (error_params)
                ASSERT_STREQ(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN), error_params);
}

/* Raw socket helpers for what the client library would never send. */
static void connect_to(int fd, const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        strcpy(sa.sun_path, path);
        ASSERT_OK(connect(fd, (struct sockaddr *) &sa, sizeof(sa)));
}

static int raw_connect(void) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        connect_to(fd, ts.path);
        return fd;
}

static void raw_send(int fd, const void *p, size_t n) {
        ASSERT_EQ(send(fd, p, n, MSG_NOSIGNAL), (ssize_t) n);
}

/* Sends a message with its terminating NUL. */
static void raw_call(int fd, const char *s) {
        raw_send(fd, s, strlen(s) + 1);
}

/* Reads one NUL-terminated reply; returns NULL on EOF (the server hung up). */
static char *raw_recv(int fd) {
        static char buf[1 << 16];
        size_t n = 0;

        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t k;

                ASSERT_EQ(poll(&p, 1, 10000), 1);
                k = read(fd, buf + n, 1);
                if (k == 0)
                        return NULL;
                if (k < 0 && errno == ECONNRESET)
                        return NULL;
                ASSERT_EQ(k, 1);
                if (buf[n] == 0)
                        return buf;
                n++;
                ASSERT_TRUE(n < sizeof(buf) - 1);
        }
}

static bool raw_is_closed(int fd) {
        char c;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        ssize_t k;

        if (poll(&p, 1, 10000) != 1)
                return false;
        k = read(fd, &c, 1);
        return k == 0 || (k < 0 && errno == ECONNRESET);
}

/* Whether the server closed fd within 200 ms (false: still open, nothing to read). For "still
 * open" only: that it closes is waited for by raw_is_closed(). */
static bool raw_closed_soon(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        char c;

        if (poll(&p, 1, 200) != 1)
                return false;
        return read(fd, &c, 1) <= 0;
}

/* Expects the server to close fd, within 10 s, or (!closed) to keep it open for 200 ms: only
 * "still open" is decided on a short wait. */
static void raw_expect_closed(int fd, bool closed) {
        if (closed)
                ASSERT_TRUE(raw_is_closed(fd));
        else
                ASSERT_FALSE(raw_closed_soon(fd));
}

/* Expects the server's refusal of a connection past a limit: the error, by name, as the answer to
 * a call the peer has not made yet, and the end of the stream. */
static void raw_expect_refused(int fd, const char *error) {
        ASSERT_STREQ(raw_recv(fd), strf("{\"error\":\"%s\",\"parameters\":{}}", error));
        ASSERT_NULL(raw_recv(fd));
}

/* Expects the server's refusal of what the peer sent, told by name (error, with parameters as
 * JSON text) before it hangs up, and the end of the stream. */
static void raw_expect_told(int fd, const char *error, const char *parameters) {
        ASSERT_STREQ(raw_recv(fd), strf("{\"error\":\"%s\",\"parameters\":%s}", error, parameters));
        ASSERT_NULL(raw_recv(fd));
}

/* Whether the server hung up on fd within 10 s, leaving data to read (nothing is read). */
static bool raw_closed_soon_after_data(int fd) {
        uint64_t deadline = now_monotonic_usec() + WAIT_USEC;
        struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };

        /* Bounded by time, not by tries: with data there before the hang-up, poll() returns at
         * once. */
        while (now_monotonic_usec() < deadline) {
                if (poll(&p, 1, 10) == 1 && (p.revents & POLLRDHUP))
                        return p.revents & POLLIN;
                if (p.revents & POLLIN)
                        usleep(1000);
        }
        return false;
}

/* Puts the server's loop to sleep in a Sleep call on fd and returns once it sleeps, so that what
 * the test sends until server_wake() is all there when the loop looks next. */
static void server_sleep(int fd) {
        struct pollfd p = { .fd = ts.asleep_pipe[0], .events = POLLIN };
        char c;

        raw_call(fd, "{\"method\":\"io.tsmd.Test.Sleep\",\"parameters\":{\"ms\":10000}}");
        ASSERT_EQ(poll(&p, 1, 10000), 1);
        ASSERT_EQ(read(ts.asleep_pipe[0], &c, 1), 1);
}

static void server_wake(void) {
        ASSERT_EQ(write(ts.wake_pipe[1], "w", 1), 1);
}

/* Sends n bytes on a new connection and expects the refusal that ends it (raw_expect_told()). */
static void raw_expect_refusal_of(const void *p, size_t n, const char *error, const char *parameters) {
        int fd = raw_connect();

        raw_send(fd, p, n);
        raw_expect_told(fd, error, parameters);
        close(fd);
}

TEST(get_info) {
        VarlinkClient *c;
        json_object *reply, *ifaces;
        const char *e = NULL;
        bool found = false;

        server_start(NULL);
        c = client_new();
        ASSERT_OK(varlink_client_call(c, "org.varlink.service.GetInfo", NULL, &reply, &e));
        ASSERT_NULL(e);
        ASSERT_STREQ(json_get_string(reply, "vendor"), "Test Vendor");
        ASSERT_STREQ(json_get_string(reply, "product"), "test-product");
        ASSERT_STREQ(json_get_string(reply, "version"), "1.2.3");
        ASSERT_STREQ(json_get_string(reply, "url"), "https://example.org/");
        ASSERT_TRUE(json_object_object_get_ex(reply, "interfaces", &ifaces));
        for (size_t i = 0; i < json_object_array_length(ifaces); i++)
                if (streq(json_object_get_string(json_object_array_get_idx(ifaces, i)), "io.tsmd.Test"))
                        found = true;
        ASSERT_TRUE(found);

        /* GetInfo takes no parameters. */
        expect_error(c, "org.varlink.service.GetInfo", "{\"x\":1}", VARLINK_ERROR_INVALID_PARAMETER,
                     "{\"parameter\":\"x\"}");
        varlink_client_free(c);
        server_stop();
}

TEST(get_interface_description) {
        VarlinkClient *c;
        json_object *reply;
        const char *e = NULL;

        server_start(NULL);
        c = client_new();
        ASSERT_OK(varlink_client_call(c, "org.varlink.service.GetInterfaceDescription",
                                      parse("{\"interface\":\"io.tsmd.Test\"}"), &reply, &e));
        ASSERT_NULL(e);
        ASSERT_STREQ(json_get_string(reply, "description"), test_idl);

        expect_error(c, "org.varlink.service.GetInterfaceDescription", "{\"interface\":\"com.example.nothing\"}",
                     VARLINK_ERROR_INTERFACE_NOT_FOUND, "{\"interface\":\"com.example.nothing\"}");
        expect_error(c, "org.varlink.service.GetInterfaceDescription", "{}",
                     VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"interface\"}");
        varlink_client_free(c);
        server_stop();
}

TEST(standard_errors) {
        VarlinkClient *c;

        server_start(NULL);
        c = client_new();
        expect_error(c, "io.tsmd.Test.Nope", NULL, VARLINK_ERROR_METHOD_NOT_FOUND,
                     "{\"method\":\"io.tsmd.Test.Nope\"}");
        expect_error(c, "com.example.Foo.Bar", NULL, VARLINK_ERROR_INTERFACE_NOT_FOUND,
                     "{\"interface\":\"com.example.Foo\"}");
        expect_error(c, "io.tsmd.Test.NotBound", NULL, VARLINK_ERROR_METHOD_NOT_IMPLEMENTED,
                     "{\"method\":\"io.tsmd.Test.NotBound\"}");
        expect_error(c, "io.tsmd.Test.Denied", NULL, VARLINK_ERROR_PERMISSION_DENIED, "{}");
        expect_error(c, "io.tsmd.Test.Count", "{\"n\":1}", VARLINK_ERROR_EXPECTED_MORE, "{}");
        expect_error(c, "io.tsmd.Test.Fail", "{\"errnoValue\":5}", VARLINK_ERROR_SYSTEM,
                     "{\"errno\":5,\"errnoName\":\"EIO\"}");
        /* The connection survives all of them. */
        expect_error(c, "io.tsmd.Test.Echo", "{}", VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"text\"}");
        varlink_client_free(c);
        server_stop();
}

TEST(parameter_validation) {
        VarlinkClient *c;
        json_object *reply;
        const char *e = NULL;

        server_start(NULL);
        c = client_new();
        expect_error(c, "io.tsmd.Test.Echo", "{\"text\":1}", VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"text\"}");
        expect_error(c, "io.tsmd.Test.Echo", "{\"text\":null}", VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"text\"}");
        expect_error(c, "io.tsmd.Test.Echo", "{\"text\":\"a\",\"bogus\":true}", VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"bogus\"}");
        expect_error(c, "io.tsmd.Test.Echo", "{\"text\":\"a\",\"number\":1.5}", VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"number\"}");
        expect_error(c, "io.tsmd.Test.Echo", "{\"text\":\"a\",\"kind\":\"c\"}", VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"kind\"}");
        expect_error(c, "io.tsmd.Test.Echo", "{\"text\":\"a\",\"list\":[\"x\",2]}", VARLINK_ERROR_INVALID_PARAMETER, NULL);
        expect_error(c, "io.tsmd.Test.Echo", "{\"text\":\"a\",\"map\":{\"k\":\"v\"}}", VARLINK_ERROR_INVALID_PARAMETER, NULL);
        expect_error(c, "io.tsmd.Test.Echo", "{\"text\":\"a\",\"inner\":{\"label\":\"x\"}}", VARLINK_ERROR_INVALID_PARAMETER, NULL);
        expect_error(c, "io.tsmd.Test.Echo", "{\"text\":\"a\",\"number\":9223372036854775808}", VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"number\"}");

        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Echo",
                                      parse("{\"text\":\"a\",\"number\":9223372036854775807,\"list\":[\"x\"],"
                                            "\"map\":{\"k\":1},\"kind\":\"b\",\"inner\":{\"value\":-1}}"),
                                      &reply, &e));
        ASSERT_NULL(e);
        ASSERT_EQ(json_object_get_int64(json_object_object_get(reply, "number")), INT64_MAX);
        varlink_client_free(c);
        server_stop();
}

TEST(nul_inside_strings) {
        VarlinkClient *c;
        json_object *reply;
        const char *e = NULL;
        char *raw;
        int fd;

        server_start(NULL);
        c = client_new();
        /* An escaped NUL is data, not a frame boundary: the message arrives whole, and the
         * IDL validation refuses it by name, since C code would truncate such a string. */
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Echo", parse("{\"text\":\"a\\u0000b\"}"), &reply, &e));
        ASSERT_STREQ(e, VARLINK_ERROR_INVALID_PARAMETER);
        ASSERT_STREQ(json_get_string(reply, "parameter"), "text");
        varlink_client_free(c);

        fd = raw_connect();
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\\u0000y\"}}");
        raw = raw_recv(fd);
        ASSERT_NOT_NULL(raw);
        ASSERT_STREQ(raw, "{\"error\":\"org.varlink.service.InvalidParameter\",\"parameters\":{\"parameter\":\"text\"}}");
        /* The frame after it is intact. */
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"\\u00e9\"}}");
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"text\":\"\xc3\xa9\"}}");
        close(fd);
        server_stop();
}

TEST(split_and_batched_messages) {
        static const char call[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"hi\"}}";
        char batch[4 * sizeof(call)];
        size_t n = 0;
        int fd;

        server_start(NULL);
        fd = raw_connect();

        /* One byte at a time, with pauses so the server really sees partial reads. */
        for (size_t i = 0; i < sizeof(call); i++) {
                raw_send(fd, call + i, 1);
                if (i % 16 == 0)
                        usleep(1000);
        }
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"text\":\"hi\"}}");

        /* Several calls in one write are answered one by one, in order. */
        for (unsigned i = 0; i < 4; i++) {
                memcpy(batch + n, call, sizeof(call)); /* includes the NUL */
                n += sizeof(call);
        }
        raw_send(fd, batch, n);
        for (unsigned i = 0; i < 4; i++)
                ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"text\":\"hi\"}}");
        close(fd);
        server_stop();
}

typedef struct Collected {
        char replies[16][128];
        unsigned n;
} Collected;

static int collect(VarlinkClient *c, json_object *p, const char *error, bool continues, void *userdata) {
        Collected *col = userdata;

        ASSERT_TRUE(col->n < 16);
        snprintf(col->replies[col->n++], 128, "%s%s%s", error ?: "",
                 p ? json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN) : "null",
                 continues ? "+" : "");
        return 0;
}

static int pending_calls(VarlinkClient *c) {
        json_object *reply;
        const char *e = NULL;

        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Pending", NULL, &reply, &e));
        ASSERT_NULL(e);
        return json_object_get_int(json_object_object_get(reply, "calls"));
}

static bool wait_pending_calls(VarlinkClient *c, int n) {
        return WAIT_FOR(pending_calls(c) == n);
}

/* Sends n Defer calls (ids 0..n-1) on c, all written out; their answers go to col. */
static void send_deferred(VarlinkClient *c, int n, Collected *col) {
        for (int i = 0; i < n; i++) {
                char p[32];

                snprintf(p, sizeof(p), "{\"id\":%d}", i);
                ASSERT_OK(varlink_client_call_async(c, "io.tsmd.Test.Defer", parse(p), 0, collect, col));
        }
        while (varlink_client_process(c) > 0)
                ;
}

static int64_t release(VarlinkClient *c, int id) {
        json_object *reply;
        const char *e = NULL;
        char p[32];

        snprintf(p, sizeof(p), "{\"id\":%d}", id);
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Release", parse(p), &reply, &e));
        ASSERT_NULL(e);
        return json_object_get_int64(json_object_object_get(reply, "released"));
}

static int recorded_count(VarlinkClient *c) {
        json_object *reply;
        const char *e = NULL;

        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Recorded", NULL, &reply, &e));
        ASSERT_NULL(e);
        return json_object_get_int(json_object_object_get(reply, "count"));
}

TEST(more) {
        VarlinkClient *c;
        Collected col = {};

        server_start(NULL);
        c = client_new();
        ASSERT_OK(varlink_client_call_more(c, "io.tsmd.Test.Count", parse("{\"n\":3}"), collect, &col));
        ASSERT_EQ(col.n, 3);
        ASSERT_STREQ(col.replies[0], "{\"i\":0}+");
        ASSERT_STREQ(col.replies[1], "{\"i\":1}+");
        ASSERT_STREQ(col.replies[2], "{\"i\":2}");

        /* An interceptor is given the final answer only: the notifications go as they are. */
        col.n = 0;
        ts.intercepted[0] = 0;
        ASSERT_OK(varlink_client_call_more(c, "io.tsmd.Test.Count", parse("{\"n\":3,\"intercept\":true}"), collect,
                                           &col));
        ASSERT_EQ(col.n, 3);
        ASSERT_STREQ(col.replies[1], "{\"i\":1}+");
        ASSERT_STREQ(col.replies[2], "{\"i\":2}");
        ASSERT_STREQ(ts.intercepted, "ok");

        /* "more" on a method that answers once is a plain call. */
        col.n = 0;
        ASSERT_OK(varlink_client_call_more(c, "io.tsmd.Test.Echo", parse("{\"text\":\"x\"}"), collect, &col));
        ASSERT_EQ(col.n, 1);
        ASSERT_STREQ(col.replies[0], "{\"text\":\"x\"}");
        varlink_client_free(c);
        server_stop();
}

TEST(oneway) {
        VarlinkClient *c;

        server_start(NULL);
        c = client_new();
        for (unsigned i = 0; i < 3; i++)
                ASSERT_OK(varlink_client_send_oneway(c, "io.tsmd.Test.Record", parse("{\"text\":\"x\"}")));
        /* The next reply on the wire must be this call's: nothing was sent for the oneways. */
        ASSERT_EQ(recorded_count(c), 3);
        varlink_client_free(c);
        server_stop();
}

/* The sent callbacks so far, as the server's loop has them; waits (bounded) for want if set. */
static const char *sent_log(VarlinkClient *c, const char *want) {
        uint64_t deadline = now_monotonic_usec() + WAIT_USEC;
        static char log[256];

        for (;;) {
                json_object *reply = NULL;

                ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.SentLog", NULL, &reply, NULL));
                snprintf(log, sizeof(log), "%s", json_get_string(reply, "log"));
                if (!want || streq(log, want) || now_monotonic_usec() >= deadline)
                        break;
                usleep(10000);
        }
        return log;
}

/* A call's sent callback hears 0 once its reply is entirely in the socket, not before (here
 * megabytes the peer has not read); -ECANCELED for an error answer; -ENOTCONN when the peer left
 * before all of it was written; and waits for the calls before it, as the reply does. */
TEST(sent_callback) {
        static const size_t big = 4 * 1024 * 1024;
        _cleanup_free_ char *buf = malloc(big + 64);
        VarlinkClient *c;
        json_object *reply = NULL;
        const char *e = NULL;
        size_t n = 0;
        int fd;

        ASSERT_NOT_NULL(buf);
        server_start(NULL);
        c = client_new();

        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Sent", parse("{\"size\":10}"), &reply, &e));
        ASSERT_NULL(e);
        ASSERT_STREQ(sent_log(c, "0 "), "0 ");
        expect_error(c, "io.tsmd.Test.Sent", "{\"size\":10,\"fail\":true}", "io.tsmd.Test.Nothing", NULL);
        ASSERT_STREQ(sent_log(c, "0 -125 "), "0 -125 ");

        /* Not read: not written entirely, not told; read to the end: told. */
        fd = raw_connect();
        raw_call(fd, strf("{\"method\":\"io.tsmd.Test.Sent\",\"parameters\":{\"size\":%zu}}", big));
        usleep(200 * 1000);
        ASSERT_STREQ(sent_log(c, NULL), "0 -125 ");
        while (n == 0 || buf[n - 1] != 0) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t k;

                ASSERT_EQ(poll(&p, 1, 10000), 1);
                k = read(fd, buf + n, big + 64 - n);
                ASSERT_TRUE(k > 0);
                n += (size_t) k;
        }
        ASSERT_STREQ(sent_log(c, "0 -125 0 "), "0 -125 0 ");

        /* Left before reading it: told so. */
        raw_call(fd, strf("{\"method\":\"io.tsmd.Test.Sent\",\"parameters\":{\"size\":%zu}}", big));
        usleep(200 * 1000);
        ASSERT_STREQ(sent_log(c, NULL), "0 -125 0 ");
        close(fd);
        ASSERT_STREQ(sent_log(c, "0 -125 0 -107 "), "0 -125 0 -107 ");

        /* Behind a call not answered yet: its reply waits, and so does the callback. */
        fd = raw_connect();
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":1}}");
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Sent\",\"parameters\":{\"size\":10}}");
        ASSERT_TRUE(wait_pending_calls(c, 1));
        usleep(100 * 1000);
        ASSERT_STREQ(sent_log(c, NULL), "0 -125 0 -107 ");
        ASSERT_EQ(release(c, 1), 1);
        ASSERT_NOT_NULL(raw_recv(fd));
        ASSERT_NOT_NULL(raw_recv(fd));
        ASSERT_STREQ(sent_log(c, "0 -125 0 -107 0 "), "0 -125 0 -107 0 ");

        /* Unanswered when its peer leaves: told so too. */
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":2}}");
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Sent\",\"parameters\":{\"size\":10}}");
        ASSERT_TRUE(wait_pending_calls(c, 1));
        close(fd);
        ASSERT_STREQ(sent_log(c, "0 -125 0 -107 0 -107 "), "0 -125 0 -107 0 -107 ");

        varlink_client_free(c);
        server_stop();
}

TEST(deferred_replies_keep_call_order) {
        VarlinkClient *c, *c2;
        Collected col = {};
        json_object *reply;
        const char *e = NULL;

        server_start(NULL);
        c = client_new();
        c2 = client_new();
        ASSERT_OK(varlink_client_call_async(c, "io.tsmd.Test.Defer", parse("{\"id\":1}"), 0, collect, &col));
        ASSERT_OK(varlink_client_call_async(c, "io.tsmd.Test.Defer", parse("{\"id\":2}"), 0, collect, &col));
        ASSERT_OK(varlink_client_call_async(c, "io.tsmd.Test.Echo", parse("{\"text\":\"third\"}"), 0, collect, &col));
        while (varlink_client_process(c) > 0)
                ;
        /* Wait until the server has both deferred calls. */
        ASSERT_TRUE(wait_pending_calls(c2, 2));
        ASSERT_EQ(col.n, 0); /* the Echo answer waits behind the deferred calls */

        /* Answer them in reverse order; replies still arrive in call order. */
        ASSERT_OK(varlink_client_call(c2, "io.tsmd.Test.Release", parse("{\"id\":2}"), &reply, &e));
        ASSERT_OK(varlink_client_call(c2, "io.tsmd.Test.Release", parse("{\"id\":1}"), &reply, &e));
        while (varlink_client_get_n_pending(c) > 0) {
                struct pollfd p = { .fd = varlink_client_get_fd(c), .events = varlink_client_get_events(c) };
                ASSERT_EQ(poll(&p, 1, 10000), 1);
                ASSERT_OK(varlink_client_process(c));
        }
        ASSERT_EQ(col.n, 3);
        ASSERT_STREQ(col.replies[0], "{\"id\":1}");
        ASSERT_STREQ(col.replies[1], "{\"id\":2}");
        ASSERT_STREQ(col.replies[2], "{\"text\":\"third\"}");
        varlink_client_free(c);
        varlink_client_free(c2);
        server_stop();
}

TEST(intercepted_answers_keep_call_order) {
        VarlinkClient *c, *c2;
        Collected col = {};
        json_object *reply;
        const char *e = NULL;

        server_start(NULL);
        c = client_new();
        c2 = client_new();
        /* Two answers held by the interceptor and a plain call behind them, pipelined. */
        ASSERT_OK(varlink_client_call_async(c, "io.tsmd.Test.Held", parse("{\"id\":1}"), 0, collect, &col));
        ASSERT_OK(varlink_client_call_async(c, "io.tsmd.Test.Held", parse("{\"id\":2}"), 0, collect, &col));
        ASSERT_OK(varlink_client_call_async(c, "io.tsmd.Test.Echo", parse("{\"text\":\"third\"}"), 0, collect, &col));
        while (varlink_client_process(c) > 0)
                ;
        wait_held(1);
        wait_held(2);
        ASSERT_EQ(col.n, 0);

        /* Released in call order, the first release must not take the second call with it. */
        ASSERT_OK(varlink_client_call(c2, "io.tsmd.Test.Unhold", parse("{\"id\":1}"), &reply, &e));
        ASSERT_NULL(e);
        usleep(100000);
        ASSERT_OK(varlink_client_call(c2, "io.tsmd.Test.Unhold", parse("{\"id\":2}"), &reply, &e));
        ASSERT_NULL(e);
        while (varlink_client_get_n_pending(c) > 0) {
                struct pollfd p = { .fd = varlink_client_get_fd(c), .events = varlink_client_get_events(c) };
                ASSERT_EQ(poll(&p, 1, 10000), 1);
                ASSERT_OK(varlink_client_process(c));
        }
        ASSERT_EQ(col.n, 3);
        ASSERT_STREQ(col.replies[0], "{\"id\":1}");
        ASSERT_STREQ(col.replies[1], "{\"id\":2}");
        ASSERT_STREQ(col.replies[2], "{\"text\":\"third\"}");
        varlink_client_free(c);
        varlink_client_free(c2);
        server_stop();
}

/* A call whose notifications wait behind an earlier call and whose answer an interceptor holds:
 * the notifications go once the earlier call is answered, but its sent callback waits for the
 * answer, which is not sent before the interceptor lets it go. */
TEST(held_notifications_of_an_intercepted_call_are_not_its_answer) {
        VarlinkClient *c2;
        json_object *reply;
        const char *e = NULL, *r;
        int fd;

        server_start(NULL);
        c2 = client_new();
        fd = raw_connect();
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":9}}");
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Held\",\"parameters\":{\"id\":5,\"notify\":2},\"more\":true}");
        wait_held(5);
        ASSERT_EQ(release(c2, 9), 9);
        for (unsigned i = 0; i < 3; i++) {
                r = raw_recv(fd);
                ASSERT_NOT_NULL(r);
                ASSERT_TRUE(i == 0 || strstr(r, "\"continues\":true"));
        }
        ASSERT_OK(varlink_client_call(c2, "io.tsmd.Test.SentLog", NULL, &reply, &e));
        ASSERT_NULL(e);
        ASSERT_STREQ(json_object_get_string(json_object_object_get(reply, "log")), "");
        ASSERT_OK(varlink_client_call(c2, "io.tsmd.Test.Unhold", parse("{\"id\":5}"), &reply, &e));
        ASSERT_NULL(e);
        r = raw_recv(fd);
        ASSERT_NOT_NULL(r);
        ASSERT_NOT_NULL(strstr(r, "\"id\":5"));
        ASSERT_NULL(strstr(r, "continues"));
        ASSERT_OK(varlink_client_call(c2, "io.tsmd.Test.SentLog", NULL, &reply, &e));
        ASSERT_NULL(e);
        ASSERT_STREQ(json_object_get_string(json_object_object_get(reply, "log")), "0 ");
        ASSERT_EQ(ts.held_notify_result, 0);

        /* Without "more", a notification is refused and nothing is sent: the answer comes first. */
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Held\",\"parameters\":{\"id\":6,\"notify\":1}}");
        wait_held(6);
        ASSERT_EQ(ts.held_notify_result, -EBADE);
        ASSERT_OK(varlink_client_call(c2, "io.tsmd.Test.Unhold", parse("{\"id\":6}"), &reply, &e));
        ASSERT_NULL(e);
        r = raw_recv(fd);
        ASSERT_NOT_NULL(r);
        ASSERT_NOT_NULL(strstr(r, "\"id\":6"));
        ASSERT_NULL(strstr(r, "continues"));
        close(fd);
        varlink_client_free(c2);
        server_stop();
}

TEST(fd_passing) {
        VarlinkClient *c;
        json_object *reply;
        const char *e = NULL;
        struct stat a, b;
        int p[2], idx, fd;

        server_start(NULL);
        c = client_new();
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        idx = varlink_client_push_fd(c, p[0]);
        ASSERT_EQ(idx, 0);
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.PassFd", parse("{\"fd\":0}"), &reply, &e));
        ASSERT_NULL(e);
        fd = varlink_client_take_fd(c, (size_t) json_object_get_int(json_object_object_get(reply, "fd")));
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(fstat(fd, &a));
        ASSERT_OK(fstat(p[1], &b));
        ASSERT_EQ(a.st_ino, b.st_ino); /* the same pipe came back */
        ASSERT_EQ(write(p[1], "z", 1), 1);
        char ch = 0;
        ASSERT_EQ(read(fd, &ch, 1), 1);
        ASSERT_EQ(ch, 'z');
        close(fd);

        /* An index without an fd attached is refused by name. */
        expect_error(c, "io.tsmd.Test.PassFd", "{\"fd\":0}", VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"fd\"}");
        ASSERT_ERRNO(varlink_client_take_fd(c, 0), ENXIO);
        close(p[1]);
        varlink_client_free(c);
        server_stop();
}

TEST(protocol_violations) {
        char *r;
        int fd;

        server_start(NULL);

        /* Unknown top-level key: named, then the connection is closed. */
        fd = raw_connect();
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"},\"bogus\":1}");
        r = raw_recv(fd);
        ASSERT_NOT_NULL(r);
        ASSERT_STREQ(r, "{\"error\":\"org.varlink.service.InvalidParameter\",\"parameters\":{\"parameter\":\"bogus\"}}");
        ASSERT_TRUE(raw_is_closed(fd));
        close(fd);

        /* Not JSON at all: refused by name, then a hang-up. */
        raw_expect_refusal_of("{\"method\":", sizeof("{\"method\":"), VARLINK_REFUSED_MALFORMED_MESSAGE, "{}");

        /* Not an object. */
        raw_expect_refusal_of("[1,2]", 6, VARLINK_REFUSED_MALFORMED_MESSAGE, "{}");

        /* Invalid UTF-8. */
        raw_expect_refusal_of("{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"\xff\xfe\"}}",
                              sizeof("{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"\xff\xfe\"}}"),
                              VARLINK_REFUSED_MALFORMED_MESSAGE, "{}");

        /* oneway together with more. */
        fd = raw_connect();
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Count\",\"parameters\":{\"n\":1},\"more\":true,\"oneway\":true}");
        r = raw_recv(fd);
        ASSERT_NOT_NULL(r);
        ASSERT_STREQ(r, "{\"error\":\"org.varlink.service.InvalidParameter\",\"parameters\":{\"parameter\":\"more\"}}");
        ASSERT_TRUE(raw_is_closed(fd));
        close(fd);

        /* A method name longer than any real one: its error could not echo it. */
        {
                char call[512];

                snprintf(call, sizeof(call), "{\"method\":\"io.tsmd.Test.E%0*d\"}", (int) VARLINK_METHOD_NAME_MAX, 0);
                fd = raw_connect();
                raw_call(fd, call);
                r = raw_recv(fd);
                ASSERT_NOT_NULL(r);
                ASSERT_STREQ(r, "{\"error\":\"org.varlink.service.InvalidParameter\",\"parameters\":{\"parameter\":\"method\"}}");
                ASSERT_TRUE(raw_is_closed(fd));
                close(fd);
        }

        /* A method name with an escaped NUL: not the method its first part names. */
        fd = raw_connect();
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Echo\\u0000junk\",\"parameters\":{\"text\":\"x\"}}");
        r = raw_recv(fd);
        ASSERT_NOT_NULL(r);
        ASSERT_STREQ(r, "{\"error\":\"org.varlink.service.InvalidParameter\",\"parameters\":{\"parameter\":\"method\"}}");
        ASSERT_TRUE(raw_is_closed(fd));
        close(fd);

        /* upgrade is refused cleanly and the connection stays usable. */
        fd = raw_connect();
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"},\"upgrade\":true}");
        r = raw_recv(fd);
        ASSERT_NOT_NULL(r);
        ASSERT_STREQ(r, "{\"error\":\"org.varlink.service.InvalidParameter\",\"parameters\":{\"parameter\":\"upgrade\"}}");
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"y\"}}");
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"text\":\"y\"}}");
        close(fd);

        server_stop();
}

/* The calls a client made before a message that ends its connection (malformed, too deep, ...)
 * were valid: they are answered, one answered later too, before the hang-up (sd-varlink writes a
 * reply before it parses the next message). Nothing after the bad message runs. */
TEST(calls_before_a_malformed_message_are_answered) {
        static const char msgs[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"a\"}}\0"
                                   "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":7}}\0"
                                   "{\"method\":01}\0"
                                   "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"b\"}}";
        VarlinkClient *c;
        int fd;

        server_start(NULL);
        fd = raw_connect();
        raw_send(fd, msgs, sizeof(msgs));
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"text\":\"a\"}}");
        ASSERT_FALSE(raw_closed_soon(fd)); /* the deferred call is owed its answer */
        c = client_new();
        ASSERT_EQ(release(c, 7), 7);
        /* The refusal comes after the answers it was behind, then the hang-up. */
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"id\":7}}");
        raw_expect_told(fd, VARLINK_REFUSED_MALFORMED_MESSAGE, "{}");
        close(fd);

        /* Nothing owed: the refusal and the hang-up are at once. */
        raw_expect_refusal_of("{\"method\":01}", sizeof("{\"method\":01}"), VARLINK_REFUSED_MALFORMED_MESSAGE, "{}");
        varlink_client_free(c);
        server_stop();
}

/* Debug builds check every reply: one that is not UTF-8, which no strict peer reads, is logged
 * as not matching the IDL, and the tests that read tsmd's log fail on it. */
TEST(reply_not_utf8_logged) {
#if VARLINK_VALIDATE_REPLIES
        _cleanup_free_ char *log = NULL;
        int fd, saved;

        server_start(NULL);
        fd = raw_connect();
        saved = log_capture_begin();
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"\\u00e9\\u0000\"}}");
        ASSERT_NOT_NULL(raw_recv(fd));
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Latin1\"}");
        ASSERT_NOT_NULL(raw_recv(fd));
        log = log_capture_end(saved);
        ASSERT_EQ(count_occurrences(log, VARLINK_REPLY_MISMATCH), 1U);
        ASSERT_NOT_NULL(strstr(log, "Reply to io.tsmd.Test.Latin1 " VARLINK_REPLY_MISMATCH ": not UTF-8."));
        close(fd);
        server_stop();
#else
        SKIP("replies are checked in debug builds only");
#endif
}

TEST(limit_message_size) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        VarlinkClient *c;
        char *big;
        int fd;

        l.max_message_size = 4096;
        l.max_output_size = 4096;
        server_start(&l);

        /* 5000 bytes without a NUL: the connection is dropped... */
        fd = raw_connect();
        big = malloc(5000);
        memset(big, ' ', 5000);
        big[0] = '{';
        raw_send(fd, big, 5000);
        raw_expect_told(fd, VARLINK_REFUSED_MESSAGE_TOO_LARGE, "{\"maxMessageSize\":4096}");
        close(fd);

        /* ...and so is a complete message over the limit (one write: the server may hang up
         * as soon as it has seen the limit go by). */
        fd = raw_connect();
        big[4999] = 0;
        raw_send(fd, big, 5000);
        raw_expect_told(fd, VARLINK_REFUSED_MESSAGE_TOO_LARGE, "{\"maxMessageSize\":4096}");
        close(fd);
        free(big);

        /* Others are unaffected. */
        c = client_new();
        expect_error(c, "io.tsmd.Test.Nope", NULL, VARLINK_ERROR_METHOD_NOT_FOUND, NULL);
        varlink_client_free(c);
        server_stop();
}

/* A reply beyond MaxMessageSize= is answered with ReplyTooLarge in its place: nothing of it
 * was written, so the connection goes on, and the refusal is reported. A continuation that is
 * too large ends its call the same way. */
TEST(reply_larger_than_the_message_size) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        json_object *reply = NULL;
        const char *e = NULL;
        VarlinkClient *c;
        Collected col = {};

        l.max_message_size = 4096;
        l.max_output_size = 4096;
        server_start(&l);
        c = client_new();

        /* {"parameters":{"text":"x...x"}} and its NUL: 23 + 5000 + 3 + 1 bytes. */
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Big", parse("{\"size\":5000}"), &reply, &e));
        ASSERT_STREQ(e, VARLINK_ERROR_REPLY_TOO_LARGE);
        ASSERT_STREQ(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN),
                     "{\"size\":5027,\"maxMessageSize\":4096}");
        expect_error(c, "io.tsmd.Test.Fail", "{\"errnoValue\":2}", VARLINK_ERROR_SYSTEM, NULL);
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Big", parse("{\"size\":4000}"), &reply, &e));
        ASSERT_NULL(e);

        ASSERT_OK(varlink_client_call_more(c, "io.tsmd.Test.Flood", parse("{\"size\":5000}"), collect, &col));
        ASSERT_EQ(col.n, 1u);
        /* The same with ,"continues":true (17 bytes). */
        ASSERT_STREQ(col.replies[0], VARLINK_ERROR_REPLY_TOO_LARGE "{\"size\":5044,\"maxMessageSize\":4096}");
        expect_error(c, "io.tsmd.Test.Fail", "{\"errnoValue\":2}", VARLINK_ERROR_SYSTEM, NULL);
        varlink_client_free(c);
        server_stop();

        ASSERT_EQ(ts.flood_result, -EMSGSIZE); /* the notification that ended it */
        ASSERT_EQ(ts.n_disconnects, 1u);       /* the client's own, at the end */
        ASSERT_STREQ(ts.refusals, VARLINK_ERROR_REPLY_TOO_LARGE " -\n" VARLINK_ERROR_REPLY_TOO_LARGE " -\n");
}

/* An intercepted answer too large for the connection reaches its interceptor (the daemon's audit
 * record) as the ReplyTooLarge its caller gets, not as the answer that was never sent, and is not
 * recorded a second time as a refusal; one that fits reaches it as it is. */
TEST(reply_too_large_is_what_the_interceptor_sees) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        json_object *reply = NULL;
        const char *e = NULL;
        VarlinkClient *c;

        l.max_message_size = 4096;
        server_start(&l);
        c = client_new();

        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Big", parse("{\"size\":5000,\"intercept\":true}"), &reply, &e));
        ASSERT_STREQ(e, VARLINK_ERROR_REPLY_TOO_LARGE);
        ASSERT_STREQ(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN),
                     "{\"size\":5027,\"maxMessageSize\":4096}");
        ASSERT_STREQ(ts.intercepted, VARLINK_ERROR_REPLY_TOO_LARGE);
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Big", parse("{\"size\":4000,\"intercept\":true}"), &reply, &e));
        ASSERT_NULL(e);
        ASSERT_STREQ(ts.intercepted, "ok");
        /* At the limit exactly (4069 + 27 bytes with the NUL): sent, and seen, as it is. */
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Big", parse("{\"size\":4069,\"intercept\":true}"), &reply, &e));
        ASSERT_NULL(e);
        ASSERT_STREQ(ts.intercepted, "ok");
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Big", parse("{\"size\":4070,\"intercept\":true}"), &reply, &e));
        ASSERT_STREQ(e, VARLINK_ERROR_REPLY_TOO_LARGE);
        ASSERT_STREQ(ts.intercepted, VARLINK_ERROR_REPLY_TOO_LARGE);
        varlink_client_free(c);
        server_stop();

        ASSERT_STREQ(ts.refusals, "");
}

/* A method can size its reply by its connection's MaxMessageSize=: a reply of exactly that size
 * (its NUL included) is sent, one a byte longer is ReplyTooLarge. A connection that is gone has
 * room for nothing. */
TEST(reply_sized_by_the_connection_limit) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        json_object *reply = NULL;
        const char *e = NULL;
        VarlinkClient *c;

        l.max_message_size = 4096;
        server_start(&l);
        ts.disconnected_max_message_size = SIZE_MAX;
        c = client_new();

        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Fill", parse("{\"extra\":0}"), &reply, &e));
        ASSERT_NULL(e);
        ASSERT_EQ(json_object_get_string_len(json_object_object_get(reply, "text")), 4096 - 27);
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Fill", parse("{\"extra\":1}"), &reply, &e));
        ASSERT_STREQ(e, VARLINK_ERROR_REPLY_TOO_LARGE);
        ASSERT_STREQ(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN),
                     "{\"size\":4097,\"maxMessageSize\":4096}");
        varlink_client_free(c);
        server_stop();

        ASSERT_EQ(ts.n_disconnects, 1u);
        ASSERT_EQ(ts.disconnected_max_message_size, 0u);
}

/* A method that acts declares the most its answer can take: called on a connection whose
 * MaxMessageSize= (or MaxFdsPerMessage=) is smaller, it does not run and the caller is told
 * ReplyMayNotFit, recorded as a refusal of the call; at the limit exactly it runs, and so does
 * a oneway call, which gets no answer to lose. */
TEST(reply_may_not_fit) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        json_object *reply = NULL;
        const char *e = NULL;
        VarlinkClient *c;

        l.max_message_size = 4096;
        l.max_fds_per_message = 2;
        ts.echo_bound = 4097;
        server_start(&l);
        ASSERT_STREQ(varlink_server_find_unfit_method(ts.server, &l), "io.tsmd.Test.Echo");
        ts.n_echoed = 0;
        c = client_new();
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Echo", parse("{\"text\":\"a\"}"), &reply, &e));
        ASSERT_STREQ(e, VARLINK_ERROR_REPLY_MAY_NOT_FIT);
        ASSERT_STREQ(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN),
                     "{\"limit\":\"MaxMessageSize\",\"needed\":4097,\"max\":4096}");
        ASSERT_OK(varlink_client_send_oneway(c, "io.tsmd.Test.Echo", parse("{\"text\":\"b\"}")));
        /* Pipelined after the oneway call, so it ran by the time this is answered. */
        expect_error(c, "io.tsmd.Test.Fail", "{\"errnoValue\":2}", VARLINK_ERROR_SYSTEM, NULL);
        varlink_client_free(c);
        server_stop();
        ASSERT_EQ(ts.n_echoed, 1u);
        ASSERT_STREQ(ts.refusals, VARLINK_ERROR_REPLY_MAY_NOT_FIT " io.tsmd.Test.Echo\n");

        ts.echo_bound = 4096;
        server_start(&l);
        ASSERT_NULL(varlink_server_find_unfit_method(ts.server, &l));
        ts.n_echoed = 0;
        c = client_new();
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Echo", parse("{\"text\":\"a\"}"), &reply, &e));
        ASSERT_NULL(e);
        varlink_client_free(c);
        server_stop();
        ASSERT_EQ(ts.n_echoed, 1u);

        ts.echo_bound = 0;
        ts.echo_bound_fds = 3;
        server_start(&l);
        ts.n_echoed = 0;
        c = client_new();
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Echo", parse("{\"text\":\"a\"}"), &reply, &e));
        ASSERT_STREQ(e, VARLINK_ERROR_REPLY_MAY_NOT_FIT);
        ASSERT_STREQ(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN),
                     "{\"limit\":\"MaxFdsPerMessage\",\"needed\":3,\"max\":2}");
        varlink_client_free(c);
        server_stop();
        ASSERT_EQ(ts.n_echoed, 0u);
        ts.echo_bound_fds = 0;
}

/* The answers the server gives on its own fit the smallest MaxMessageSize= it takes, at their
 * longest, and no smaller limit is taken. */
TEST(own_answers_fit_the_smallest_limit) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        json_object *p = json_object_new_object(), *m;
        size_t len;

        ASSERT_OK(json_object_add(p, "size", json_object_new_int64(INT64_MIN)));
        ASSERT_OK(json_object_add(p, "maxMessageSize", json_object_new_int64(INT64_MIN)));
        ASSERT_OK(varlink_message_new_error(VARLINK_ERROR_REPLY_TOO_LARGE, p, &m));
        (void) json_object_to_json_string_length(m, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        ASSERT_LE(len + 1, (size_t) VARLINK_MAX_MESSAGE_SIZE_MIN);
        json_object_put(m);

        p = json_object_new_object();
        ASSERT_OK(json_object_add(p, "limit", json_object_new_string("MaxFdsPerMessage")));
        ASSERT_OK(json_object_add(p, "needed", json_object_new_int64(INT64_MIN)));
        ASSERT_OK(json_object_add(p, "max", json_object_new_int64(INT64_MIN)));
        ASSERT_OK(varlink_message_new_error(VARLINK_ERROR_REPLY_MAY_NOT_FIT, p, &m));
        (void) json_object_to_json_string_length(m, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        ASSERT_LE(len + 1, (size_t) VARLINK_MAX_MESSAGE_SIZE_MIN);
        json_object_put(m);

        ts.base = event_base_new();
        ASSERT_NOT_NULL(ts.base);
        ASSERT_OK(varlink_server_new(ts.base, &ts.server));
        l.max_message_size = VARLINK_MAX_MESSAGE_SIZE_MIN - 1;
        ASSERT_ERRNO(varlink_server_set_limits(ts.server, &l), EINVAL);
        l.max_message_size = VARLINK_MAX_MESSAGE_SIZE_MIN;
        ASSERT_OK(varlink_server_set_limits(ts.server, &l));
        ts.server = varlink_server_free(ts.server);
        event_base_free(ts.base);
        ts.base = NULL;
}

TEST(limit_json_depth) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        char bomb[1024];
        size_t n = 0;
        int fd;

        l.max_depth = 8;
        server_start(&l);

        fd = raw_connect();
        n += (size_t) sprintf(bomb, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\",\"inner\":");
        for (unsigned i = 0; i < 20; i++)
                bomb[n++] = '[';
        for (unsigned i = 0; i < 20; i++)
                bomb[n++] = ']';
        n += (size_t) sprintf(bomb + n, "}}");
        raw_send(fd, bomb, n + 1);
        raw_expect_told(fd, VARLINK_REFUSED_NESTING_TOO_DEEP, "{\"maxJsonDepth\":8}");
        close(fd);

        /* Within the limit, a nesting that is merely wrong gets a named error. */
        fd = raw_connect();
        n = (size_t) sprintf(bomb, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\",\"inner\":[[1]]}}");
        raw_send(fd, bomb, n + 1);
        ASSERT_STREQ(raw_recv(fd), "{\"error\":\"org.varlink.service.InvalidParameter\",\"parameters\":{\"parameter\":\"inner\"}}");
        close(fd);
        server_stop();
}

/* Sends len bytes of msg (a message's start, if it has no NUL) with n_fds fds attached. */
static void send_bytes_with_fds(int fd, const char *msg, size_t len, unsigned n_fds) {
        char control[CMSG_SPACE(sizeof(int) * 16)] = {};
        struct iovec iov = { .iov_base = (void *) msg, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        int fds[16];

        ASSERT_TRUE(n_fds <= 16);
        for (unsigned i = 0; i < n_fds; i++)
                fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
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
        ASSERT_EQ(sendmsg(fd, &mh, MSG_NOSIGNAL), (ssize_t) iov.iov_len);
        for (unsigned i = 0; i < n_fds; i++)
                close(fds[i]);
}

static void send_with_fds(int fd, const char *msg, unsigned n_fds) {
        send_bytes_with_fds(fd, msg, strlen(msg) + 1, n_fds);
}

TEST(limit_fds_per_message) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        unsigned before;
        int fd;

        l.max_fds_per_message = 2;
        server_start(&l);
        before = test_count_fds();

        fd = raw_connect();
        send_with_fds(fd, "{\"method\":\"io.tsmd.Test.PassFd\",\"parameters\":{\"fd\":1}}", 2);
        ASSERT_NOT_NULL(strstr(raw_recv(fd), "\"fd\":0"));
        /* Nor can a reply carry more: the one fd too many is refused when it is pushed. */
        send_with_fds(fd, "{\"method\":\"io.tsmd.Test.PassFd\",\"parameters\":{\"fd\":0,\"copies\":2}}", 1);
        ASSERT_NOT_NULL(strstr(raw_recv(fd), "\"fd\":0"));
        send_with_fds(fd, "{\"method\":\"io.tsmd.Test.PassFd\",\"parameters\":{\"fd\":0,\"copies\":3}}", 1);
        ASSERT_NOT_NULL(strstr(raw_recv(fd), "\"errno\":" STRINGIFY(ENOBUFS)));
        send_with_fds(fd, "{\"method\":\"io.tsmd.Test.PassFd\",\"parameters\":{\"fd\":0}}", 3);
        raw_expect_told(fd, VARLINK_REFUSED_FILE_DESCRIPTORS, "{\"maxFdsPerMessage\":2}");
        close(fd);

        /* Nothing the client sent is left open in the server. */
        ASSERT_TRUE(WAIT_FOR(test_count_fds() == before));
        server_stop();
}

TEST(limit_pending_calls) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        VarlinkClient *c, *c2;
        Collected col = {};
        json_object *reply;
        const char *e = NULL;

        l.max_pending_calls = 2;
        server_start(&l);
        c = client_new();
        c2 = client_new();
        send_deferred(c, 5, &col);
        /* The server took in only two of the five calls: it stopped reading (a third would have
         * come in by now). */
        ASSERT_TRUE(wait_pending_calls(c2, 2));
        usleep(200000);
        ASSERT_EQ(pending_calls(c2), 2);

        /* Releasing one lets the next in. */
        ASSERT_OK(varlink_client_call(c2, "io.tsmd.Test.Release", parse("{\"id\":0}"), &reply, &e));
        ASSERT_NULL(e);
        ASSERT_TRUE(WAIT_FOR(varlink_client_process(c) >= 0 && col.n == 1 && pending_calls(c2) == 2));
        ASSERT_STREQ(col.replies[0], "{\"id\":0}");
        varlink_client_free(c);
        varlink_client_free(c2);
        server_stop();
}

/* The server runs on its own thread: what it counts is read, not locked. */
static unsigned server_n_connections(void) {
        return __atomic_load_n(&ts.server, __ATOMIC_ACQUIRE) ? varlink_server_get_n_connections(ts.server) : 0;
}

/* The server counts a connection gone before it calls on_disconnect(), from its own thread. */
static unsigned wait_n_disconnects(unsigned n) {
        (void) WAIT_FOR(__atomic_load_n(&ts.n_disconnects, __ATOMIC_ACQUIRE) >= n);
        return __atomic_load_n(&ts.n_disconnects, __ATOMIC_ACQUIRE);
}

static bool wait_n_connections(unsigned n) {
        return WAIT_FOR(server_n_connections() == n);
}

static void wait_collected(VarlinkClient *c, Collected *col, unsigned n) {
        while (col->n < n) {
                struct pollfd p = { .fd = varlink_client_get_fd(c), .events = POLLIN };

                ASSERT_EQ(poll(&p, 1, 10000), 1);
                ASSERT_TRUE(varlink_client_process(c) >= 0);
        }
}

TEST(nothing_is_read_behind_a_stream) {
        VarlinkClient *c, *c2;
        Collected col = {};

        server_start(NULL);
        c = client_new();
        c2 = client_new();
        ASSERT_OK(varlink_client_call_async(c, "io.tsmd.Test.Stream", parse("{\"id\":5}"), VARLINK_CALL_MORE, collect,
                                            &col));
        for (unsigned i = 0; i < 3; i++)
                ASSERT_OK(varlink_client_call_async(c, "io.tsmd.Test.Record", parse("{\"text\":\"x\"}"), 0, collect,
                                                    &col));
        while (varlink_client_process(c) > 0)
                ;
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        usleep(100000);
        /* Their answers could not leave before the stream's end: they wait in the socket. */
        ASSERT_EQ(recorded_count(c2), 0);
        wait_collected(c, &col, 1);
        usleep(50000);
        ASSERT_TRUE(varlink_client_process(c) >= 0);
        ASSERT_EQ(col.n, 1);

        /* The stream ends: the rest is read and answered, in order. */
        ASSERT_EQ(release(c2, 5), 5);
        wait_collected(c, &col, 5);
        ASSERT_STREQ(col.replies[0], "{\"id\":-1}+");
        ASSERT_STREQ(col.replies[1], "{\"id\":5}");
        ASSERT_STREQ(col.replies[4], "{}");
        ASSERT_EQ(recorded_count(c2), 3);
        varlink_client_free(c);
        varlink_client_free(c2);
        server_stop();
}

TEST(hangup_while_reading_is_paused) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        VarlinkClient *c, *c2;
        Collected col = {};
        int fd;

        l.max_pending_calls = 2;
        server_start(&l);
        c2 = client_new();

        /* Paused behind a stream that never ends: the hang-up is seen all the same. */
        c = client_new();
        ASSERT_OK(varlink_client_call_async(c, "io.tsmd.Test.Stream", parse("{\"id\":6}"), VARLINK_CALL_MORE, collect,
                                            &col));
        while (varlink_client_process(c) > 0)
                ;
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        ASSERT_EQ(server_n_connections(), 2u);
        varlink_client_free(c);
        ASSERT_TRUE(wait_n_connections(1));
        ASSERT_EQ(release(c2, 6), -ENOTCONN);

        /* The same, leaving a notification unread (the kernel reports an error with the
         * hang-up then), and with more calls waiting unread in the socket. */
        fd = raw_connect();
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Stream\",\"parameters\":{\"id\":7},\"more\":true}");
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Record\",\"parameters\":{\"text\":\"x\"}}");
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        close(fd);
        ASSERT_TRUE(wait_n_connections(1));
        ASSERT_EQ(release(c2, 7), -ENOTCONN);

        /* Paused at MaxPendingCalls. */
        c = client_new();
        send_deferred(c, 4, &col);
        ASSERT_TRUE(wait_pending_calls(c2, 2));
        varlink_client_free(c);
        ASSERT_TRUE(wait_n_connections(1));
        ASSERT_EQ(wait_n_disconnects(3), 3u);
        varlink_client_free(c2);
        server_stop();
}

TEST(oneway_answered_later_is_counted) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        VarlinkClient *c, *c2;

        l.max_pending_calls = 2;
        server_start(&l);
        c = client_new();
        c2 = client_new();
        for (int i = 0; i < 5; i++) {
                char p[32];

                snprintf(p, sizeof(p), "{\"id\":%d}", i);
                ASSERT_OK(varlink_client_send_oneway(c, "io.tsmd.Test.Defer", parse(p)));
        }
        /* A oneway call is pending until its handler answers, like any other. */
        ASSERT_TRUE(wait_pending_calls(c2, 2));
        usleep(100000);
        ASSERT_EQ(pending_calls(c2), 2);
        /* Its answer goes through the server (where it would be intercepted), not to the client. */
        ASSERT_EQ(release(c2, 0), 0);
        ASSERT_TRUE(wait_pending_calls(c2, 2));
        ASSERT_EQ(release(c2, 1), 1);
        ASSERT_EQ(release(c2, 2), 2);
        ASSERT_TRUE(wait_pending_calls(c2, 2));
        ASSERT_EQ(release(c2, 3), 3);
        ASSERT_EQ(release(c2, 4), 4);
        varlink_client_free(c);
        varlink_client_free(c2);
        server_stop();
}

TEST(fds_go_when_the_handler_returns) {
        VarlinkClient *c2;
        unsigned before;
        int fd;

        server_start(NULL);
        c2 = client_new();
        fd = raw_connect();
        ASSERT_TRUE(wait_n_connections(2));
        before = test_count_fds();
        /* Calls that wait, with fds their handler did not take: the fds do not wait with them. */
        for (int i = 0; i < 3; i++) {
                char p[64];

                snprintf(p, sizeof(p), "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":%d}}", i);
                send_with_fds(fd, p, 16);
        }
        ASSERT_TRUE(wait_pending_calls(c2, 3));
        ASSERT_EQ(test_count_fds(), before);
        for (int i = 0; i < 3; i++)
                ASSERT_EQ(release(c2, i), i);
        close(fd);
        varlink_client_free(c2);
        server_stop();
}

TEST(replies_waiting_behind_a_call_are_bounded) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        _cleanup_free_ char *call = NULL;
        char text[4001];
        int fd;

        l.max_message_size = 16 * 1024;
        l.max_output_size = 64 * 1024;
        server_start(&l);
        memset(text, 'y', sizeof(text) - 1);
        text[sizeof(text) - 1] = 0;
        ASSERT_TRUE(asprintf(&call, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"%s\"}}", text) > 0);

        fd = raw_connect();
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":9}}");
        /* Answers that must wait for the deferred call pile up in the server, up to a point. */
        for (unsigned i = 0; i < 32; i++)
                if (send(fd, call, strlen(call) + 1, MSG_NOSIGNAL) < 0)
                        break;
        ASSERT_TRUE(raw_is_closed(fd));
        close(fd);
        ASSERT_NOT_NULL(strstr(ts.refusals, VARLINK_REFUSED_REPLIES_NOT_READ " -\n"));
        ASSERT_TRUE(wait_n_connections(0));
        server_stop();
}

/* An Echo call whose reply, {"parameters":{"text":"..."}} and its NUL, is 1041 bytes. */
static char *echo_call_1041(void) {
        char text[1015];
        char *call = NULL;

        memset(text, 'y', sizeof(text) - 1);
        text[sizeof(text) - 1] = 0;
        ASSERT_TRUE(asprintf(&call, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"%s\"}}", text) > 0);
        return call;
}

static void wait_n_echoed(unsigned n) {
        (void) WAIT_FOR(__atomic_load_n(&ts.n_echoed, __ATOMIC_ACQUIRE) >= n);
        ASSERT_EQ(__atomic_load_n(&ts.n_echoed, __ATOMIC_ACQUIRE), n);
}

/* Replies admitted to wait behind a call are not taken back when its answer goes ahead of them:
 * a client that reads gets them all, even past MaxOutputSize= for a moment. */
TEST(replies_admitted_behind_a_call_are_sent_after_its_answer) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        _cleanup_free_ char *call = echo_call_1041();
        VarlinkClient *c2;
        const char *reply;
        int fd;

        l.max_message_size = l.max_output_size = 16 * 1024;
        server_start(&l);
        c2 = client_new();
        ts.n_echoed = 0;

        fd = raw_connect();
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Later\",\"parameters\":{\"id\":9,\"size\":4000}}");
        /* 14 x 1041 bytes wait within 16 KiB; with the answer of 4 KiB ahead of them, they do not. */
        for (unsigned i = 0; i < 14; i++)
                raw_call(fd, call);
        wait_n_echoed(14);
        ASSERT_EQ(release(c2, 9), 9);
        reply = raw_recv(fd);
        ASSERT_NOT_NULL(reply);
        ASSERT_EQ(strlen(reply), 4033U);
        for (unsigned i = 0; i < 14; i++) {
                reply = raw_recv(fd);
                ASSERT_NOT_NULL(reply);
                ASSERT_EQ(strlen(reply) + 1, 1041U);
        }
        ASSERT_FALSE(raw_closed_soon(fd));
        ASSERT_STREQ(ts.refusals, "");
        close(fd);
        varlink_client_free(c2);
        server_stop();
}

/* What waits behind a call is bounded with the NULs that end its replies: the one that does not
 * fit is refused by name, before anything is sent, and not dropped silently once it is let go. */
TEST(replies_waiting_behind_a_call_count_their_nuls) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        _cleanup_free_ char *call = echo_call_1041(), *log = NULL;
        int fd, saved;

        l.max_message_size = 16 * 1024;
        l.max_output_size = 63 * 1041 - 1;
        server_start(&l);
        ts.n_echoed = 0;

        log_set_max_level(LOG_DEBUG);
        saved = log_capture_begin();
        fd = raw_connect();
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":9}}");
        /* 62 x 1041 bytes fit, 63 are one over (without the NULs of those held, or the NUL of
         * the one to come, they would fit). */
        for (unsigned i = 0; i < 63; i++)
                raw_call(fd, call);
        wait_n_echoed(63);
        ASSERT_TRUE(raw_is_closed(fd));
        close(fd);
        ASSERT_TRUE(wait_n_connections(0));
        log = log_capture_end(saved);
        log_set_max_level(LOG_INFO);
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_REPLIES_NOT_READ " -\n");
        ASSERT_NOT_NULL(strstr(log, "Dropping client connection (" VARLINK_REFUSED_REPLIES_NOT_READ "): a reply of 1041 "
                                    "bytes to io.tsmd.Test.Echo would wait behind 0 queued and 64542 held."));
        server_stop();
}

TEST(a_failed_notification_disconnects_later) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        int fd;

        l.max_message_size = 16 * 1024;
        l.max_output_size = 64 * 1024;
        server_start(&l);
        ts.flood_result = 0;
        fd = raw_connect();
        /* Never read: the notifications fill the socket and then the server's queue. */
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Flood\",\"parameters\":{\"size\":1000},\"more\":true}");
        ASSERT_TRUE(WAIT_FOR(__atomic_load_n(&ts.flood_result, __ATOMIC_ACQUIRE) != 0));
        ASSERT_TRUE(wait_n_connections(0));
        ASSERT_EQ(ts.flood_result, -ENOBUFS);
        /* The disconnect callback ran from the loop, not under the notification: its caller
         * may be walking what the callback frees. */
        ASSERT_EQ(ts.flood_disconnects, 0u);
        ASSERT_EQ(wait_n_disconnects(1), 1u);
        close(fd);
        server_stop();
}

TEST(limit_buffered_per_uid) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        char partial[3001], echo[3600];
        VarlinkClient *c;
        int fds[8];

        l.max_message_size = l.max_output_size = 4096;
        l.max_buffered_per_uid = 16384;
        server_start(&l);

        /* Unfinished messages: each within MaxMessageSize, five of them fit, the rest not. */
        memset(partial, ' ', sizeof(partial) - 1);
        memcpy(partial, "{\"method\":", 10);
        partial[sizeof(partial) - 1] = 0;
        for (unsigned i = 0; i < 8; i++) {
                fds[i] = raw_connect();
                raw_send(fds[i], partial, strlen(partial));
                usleep(20000);
        }
        for (unsigned i = 0; i < 8; i++) {
                raw_expect_closed(fds[i], i >= 5);
                close(fds[i]);
        }
        ASSERT_TRUE(wait_n_connections(0));
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MUCH_BUFFERED_PER_UID " -\n"
                                  VARLINK_REFUSED_TOO_MUCH_BUFFERED_PER_UID " -\n"
                                  VARLINK_REFUSED_TOO_MUCH_BUFFERED_PER_UID " -\n");
        ts.refusals[0] = 0;

        /* Replies that cannot leave yet (behind a deferred call) count the same way. */
        snprintf(echo, sizeof(echo), "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"%03000d\"}}", 0);
        for (unsigned i = 0; i < 6; i++) {
                char defer[64];

                fds[i] = raw_connect();
                snprintf(defer, sizeof(defer), "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":%u}}", i);
                raw_call(fds[i], defer);
                raw_call(fds[i], echo);
                usleep(20000);
        }
        for (unsigned i = 0; i < 6; i++)
                raw_expect_closed(fds[i], i >= 5);
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MUCH_BUFFERED_PER_UID " -\n");

        /* What went is no longer counted: a new client is served. */
        for (unsigned i = 0; i < 6; i++)
                close(fds[i]);
        ASSERT_TRUE(wait_n_connections(0));
        c = client_new();
        expect_error(c, "io.tsmd.Test.Nope", NULL, VARLINK_ERROR_METHOD_NOT_FOUND, NULL);
        varlink_client_free(c);
        server_stop();
}

/* A reply far larger than its call, held behind a deferred call on its connection, is what
 * takes the uid over MaxBufferedPerUid=: that connection goes when the reply is made, not at
 * some later read (tiny calls asking for big answers would pile them up otherwise); the others
 * keep theirs. */
static const char *raw_recv_some(int fd);

TEST(held_replies_larger_than_their_calls_count_against_the_uid) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        int fds[6];

        l.max_message_size = l.max_output_size = 4096;
        l.max_buffered_per_uid = 16384;
        server_start(&l);
        for (unsigned i = 0; i < ELEMENTSOF(fds); i++) {
                char defer[64];

                fds[i] = raw_connect();
                snprintf(defer, sizeof(defer), "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":%u}}", i);
                raw_call(fds[i], defer);
                raw_call(fds[i], "{\"method\":\"io.tsmd.Test.Big\",\"parameters\":{\"size\":3000}}");
                raw_expect_closed(fds[i], i >= 5);
        }
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MUCH_BUFFERED_PER_UID " -\n");

        /* The first's deferred call answered, its held reply follows it out. */
        {
                VarlinkClient *c = client_new();

                ASSERT_EQ(release(c, 0), 0);
                varlink_client_free(c);
        }
        ASSERT_STREQ(raw_recv_some(fds[0]), "{\"parameters\":{\"id\":0}}");
        ASSERT_NOT_NULL(strstr(raw_recv_some(fds[0]), "\"text\":\"xxx"));
        for (unsigned i = 0; i < ELEMENTSOF(fds); i++)
                close(fds[i]);
        ASSERT_TRUE(wait_n_connections(0));
        server_stop();
}

/* A message with more JSON values than MaxJsonValues= is refused before json-c builds
 * anything (a megabyte of "0," would be half a million objects), by its name. */
TEST(limit_json_values) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        /* 1 (the call) + 2 (method, parameters) + 1 (text) + 1 (list) + n strings */
        static const char head[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\",\"list\":[";
        char msg[256];
        size_t n;
        char *bomb;
        int fd;

        l.max_json_values = 16;
        server_start(&l);

        /* Exactly 16 values: served. */
        n = (size_t) snprintf(msg, sizeof(msg), "%s\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\"]}}", head);
        ASSERT_TRUE(n < sizeof(msg));
        fd = raw_connect();
        raw_call(fd, msg);
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"text\":\"x\"}}");

        /* One more: the refusal told by name, then the connection is closed. */
        n = (size_t) snprintf(msg, sizeof(msg), "%s\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\"]}}", head);
        ASSERT_TRUE(n < sizeof(msg));
        raw_call(fd, msg);
        raw_expect_told(fd, VARLINK_REFUSED_TOO_MANY_JSON_VALUES, "{\"maxJsonValues\":16}");
        close(fd);
        ASSERT_TRUE(wait_n_connections(0));
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MANY_JSON_VALUES " -\n");

        /* A megabyte of zeros in one array: the same, at once. */
        bomb = malloc(1 << 20);
        ASSERT_NOT_NULL(bomb);
        n = (size_t) snprintf(bomb, 1 << 20, "{\"method\":\"io.tsmd.Test.Nope\",\"parameters\":{\"a\":[0");
        for (; n + 6 < (1 << 20); n += 2)
                memcpy(bomb + n, ",0", 2);
        memcpy(bomb + n, "]}}", 4);
        raw_expect_refusal_of(bomb, n + 4, VARLINK_REFUSED_TOO_MANY_JSON_VALUES, "{\"maxJsonValues\":16}");
        free(bomb);
        ASSERT_TRUE(wait_n_connections(0));
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MANY_JSON_VALUES " -\n" VARLINK_REFUSED_TOO_MANY_JSON_VALUES " -\n");
        server_stop();
}

/* Fds parked on messages that never end count per uid (MaxFdsPerUid=) and over all clients
 * (MaxFds=): the read that goes past either closes its connection, named, and nothing of
 * what the client sent stays open in the server. */
static void fds_parked(unsigned max_fds_per_uid, unsigned max_fds, const char *refusal) {
        static const char start[] = "{\"method\":\"io.tsmd.Test.PassFd\",";
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        unsigned before;
        int fds[3], fd;

        l.max_fds_per_message = 4;
        l.max_fds_per_uid = max_fds_per_uid;
        l.max_fds = max_fds;
        server_start(&l);
        before = test_count_fds();

        for (unsigned i = 0; i < 3; i++) {
                fds[i] = raw_connect();
                send_bytes_with_fds(fds[i], start, sizeof(start) - 1, 4);
                usleep(20000);
        }
        for (unsigned i = 0; i < 3; i++)
                raw_expect_closed(fds[i], i >= 2);
        ASSERT_STREQ(ts.refusals, strf("%s -\n", refusal));

        /* Completed, a parked message's fds go to its call; the budget is back. */
        raw_send(fds[0], "\"parameters\":{\"fd\":3}}", sizeof("\"parameters\":{\"fd\":3}}"));
        ASSERT_NOT_NULL(strstr(raw_recv(fds[0]), "\"fd\":0"));
        fd = raw_connect();
        send_bytes_with_fds(fd, start, sizeof(start) - 1, 4);
        ASSERT_FALSE(raw_closed_soon(fd));
        for (unsigned i = 0; i < 3; i++)
                close(fds[i]);
        close(fd);
        ASSERT_TRUE(wait_n_connections(0));
        ASSERT_EQ(test_count_fds(), before);
        ASSERT_STREQ(ts.refusals, strf("%s -\n", refusal));
        server_stop();
}

TEST(limit_fds_per_uid) {
        fds_parked(8, 0, VARLINK_REFUSED_TOO_MANY_FDS_PER_UID);
}

TEST(limit_fds_total) {
        fds_parked(1024, 8, VARLINK_REFUSED_TOO_MANY_FDS);
}

static int resume(VarlinkClient *c, int id, bool refuse) {
        json_object *reply;
        const char *e = NULL;

        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Resume",
                                      parse(strf("{\"id\":%d,\"refuse\":%s}", id, refuse ? "true" : "false")), &reply,
                                      &e));
        ASSERT_NULL(e);
        return json_object_get_int(json_object_object_get(reply, "result"));
}

/* A postponed call keeps its parameters and fds until its method runs, or until it is answered
 * instead; meanwhile they count against its uid's fds as fds in its input do. */
TEST(postponed_call_runs_later_with_its_fds) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        VarlinkClient *c2;
        unsigned before;
        char *r;
        int fd, fd2;

        l.max_fds_per_message = 4;
        l.max_fds_per_uid = 4;
        server_start(&l);
        c2 = client_new();
        fd = raw_connect();
        ASSERT_TRUE(wait_n_connections(2));
        before = test_count_fds();

        send_with_fds(fd, "{\"method\":\"io.tsmd.Test.Postpone\",\"parameters\":{\"id\":0,\"fd\":2}}", 3);
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        /* And one more: the connection, paused behind its postponed call, watches for its
         * hang-up on a copy of its socket, kept until it reads again. */
        ASSERT_EQ(test_count_fds(), before + 3 + 1);
        /* Run now: with its parameters and the fd at index 2, which PassFd sends back. */
        ASSERT_EQ(resume(c2, 0, false), 0);
        r = raw_recv(fd);
        ASSERT_NOT_NULL(r);
        ASSERT_STREQ(r, "{\"parameters\":{\"fd\":0}}");
        /* Reading again (from the server's next round): the copy is gone, not kept for the
         * connection's life (before, every connection that once waited held two fds). */
        ASSERT_TRUE(WAIT_FOR(test_count_fds() == before));

        /* The uid's 4 fds held by a postponed call: one more in its input is one too many. */
        send_with_fds(fd, "{\"method\":\"io.tsmd.Test.Postpone\",\"parameters\":{\"id\":1,\"fd\":0}}", 4);
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        fd2 = raw_connect();
        send_with_fds(fd2, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}", 1);
        ASSERT_TRUE(raw_is_closed(fd2));
        close(fd2);
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MANY_FDS_PER_UID " -\n");
        ASSERT_TRUE(wait_n_connections(2));

        /* Answered instead: its fds go, and the uid's room is back. */
        ASSERT_EQ(test_count_fds(), before + 4 + 1);
        ASSERT_EQ(resume(c2, 1, true), 0);
        r = raw_recv(fd);
        ASSERT_NOT_NULL(r);
        ASSERT_NOT_NULL(strstr(r, "io.tsmd.Test.Nothing"));
        ASSERT_TRUE(WAIT_FOR(test_count_fds() == before));
        send_with_fds(fd, "{\"method\":\"io.tsmd.Test.PassFd\",\"parameters\":{\"fd\":3}}", 4);
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"fd\":0}}");

        /* One whose client left before it ran does not run. */
        send_with_fds(fd, "{\"method\":\"io.tsmd.Test.Postpone\",\"parameters\":{\"id\":2,\"fd\":0}}", 1);
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        close(fd);
        ASSERT_TRUE(wait_n_connections(1));
        ASSERT_EQ(test_count_fds(), before - 2 + 1);
        ASSERT_EQ(resume(c2, 2, false), -ENOTCONN);
        ASSERT_EQ(test_count_fds(), before - 2);

        varlink_client_free(c2);
        server_stop();
}

/* Nothing a client pipelined after a postponed call runs before it (a VMM's GetDeviceState
 * must not overtake the ConnectDevice it sent first), whether it then runs or is refused; the
 * paused connection's hang-up is still seen. */
TEST(nothing_runs_before_a_postponed_call) {
        static const char postpone[] = "{\"method\":\"io.tsmd.Test.Postpone\",\"parameters\":{\"id\":0,\"fd\":0}}",
                          record[] = "{\"method\":\"io.tsmd.Test.Record\",\"parameters\":{\"text\":\"x\"}}",
                          two[] = "{\"method\":\"io.tsmd.Test.Postpone\",\"parameters\":{\"id\":0,\"fd\":0}}\0"
                                  "{\"method\":\"io.tsmd.Test.Record\",\"parameters\":{\"text\":\"x\"}}";
        char four[2 * sizeof(two)];
        VarlinkClient *c2;
        int fd;

        server_start(NULL);
        c2 = client_new();
        fd = raw_connect();
        ASSERT_TRUE(wait_n_connections(2));

        /* The fd goes in a write of its own, as clients send them. */
        send_with_fds(fd, postpone, 1);
        raw_call(fd, record);
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        usleep(100000);
        ASSERT_EQ(recorded_count(c2), 0);
        ASSERT_EQ(resume(c2, 0, false), 0);
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"fd\":0}}");
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{}}");
        ASSERT_EQ(recorded_count(c2), 1);

        /* Refused instead: what follows it runs then, up to the next postponed one (all in one
         * write, so the server has all four when it postpones the first). */
        memcpy(four, two, sizeof(two));
        memcpy(four + sizeof(two), two, sizeof(two));
        raw_send(fd, four, sizeof(four));
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        usleep(100000);
        ASSERT_EQ(recorded_count(c2), 1);
        ASSERT_EQ(resume(c2, 0, true), 0);
        ASSERT_NOT_NULL(strstr(raw_recv(fd), "io.tsmd.Test.Nothing"));
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{}}");
        /* The second pair: its Postpone waits, its Record behind it, until the client leaves. */
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        usleep(100000);
        ASSERT_EQ(recorded_count(c2), 2);
        close(fd);
        ASSERT_TRUE(wait_n_connections(1));
        ASSERT_EQ(resume(c2, 0, false), -ENOTCONN);
        ASSERT_EQ(recorded_count(c2), 2);

        varlink_client_free(c2);
        server_stop();
}

/* The fd a PassFd (or resumed Postpone) reply names, taken, into *userdata; -ENOENT for a reply
 * that names none. */
static int on_fd_reply(VarlinkClient *c, json_object *p, const char *error, bool continues, void *userdata) {
        json_object *idx;

        ASSERT_NULL(error);
        *(int *) userdata = json_object_object_get_ex(p, "fd", &idx) ?
                                    varlink_client_take_fd(c, (size_t) json_object_get_int(idx)) :
                                    -ENOENT;
        return 0;
}

/* Calls pipelined each with fds of its own never share a read (the kernel ends a read with the
 * write that carried fds, varlink-stream.c): each gets its own, whatever the server reads when,
 * and a call without fds ahead of one with them, read together, gets none. Here all wait in the
 * socket behind a postponed call, as a VMM's AttachDevice calls could behind a busy one. */
TEST(pipelined_calls_get_their_own_fds) {
        static const char *const methods[] = { "io.tsmd.Test.Postpone", "io.tsmd.Test.Record", "io.tsmd.Test.PassFd",
                                               "io.tsmd.Test.Record", "io.tsmd.Test.PassFd" };
        static const char *const params[] = { "{\"id\":0,\"fd\":0}", "{\"text\":\"x\"}", "{\"fd\":0}",
                                              "{\"text\":\"x\"}", "{\"fd\":0}" };
        int got[ELEMENTSOF(methods)], rd[ELEMENTSOF(methods)];
        VarlinkClient *c, *c2;

        server_start(NULL);
        c = client_new();
        c2 = client_new();
        for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                int p[2];

                got[i] = -EBADF;
                ASSERT_OK(pipe2(p, O_CLOEXEC));
                rd[i] = p[0];
                if (streq(methods[i], "io.tsmd.Test.Record"))
                        close(p[1]);
                else
                        ASSERT_EQ(varlink_client_push_fd(c, p[1]), 0);
                ASSERT_OK(varlink_client_call_async(c, methods[i], parse(params[i]), 0, on_fd_reply, &got[i]));
        }
        while (varlink_client_process(c) > 0)
                ;
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        ASSERT_EQ(resume(c2, 0, false), 0);
        while (varlink_client_get_n_pending(c) > 0) {
                struct pollfd p = { .fd = varlink_client_get_fd(c), .events = POLLIN };

                ASSERT_EQ(poll(&p, 1, 10000), 1);
                ASSERT_GE(varlink_client_process(c), 0);
        }
        ASSERT_EQ(recorded_count(c2), 2);

        for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                if (streq(methods[i], "io.tsmd.Test.Record"))
                        ASSERT_EQ(got[i], -ENOENT);
                else {
                        struct stat a, b;

                        ASSERT_TRUE(got[i] >= 0);
                        ASSERT_OK(fstat(got[i], &a));
                        ASSERT_OK(fstat(rd[i], &b));
                        if (a.st_ino != b.st_ino)
                                TEST_FAIL("call %zu (%s) got another call's fd", i, methods[i]);
                        close(got[i]);
                }
                close(rd[i]);
        }
        varlink_client_free(c);
        varlink_client_free(c2);
        server_stop();
}

/* A call pipelined ahead of one with more fds than allowed comes in the read that brings those
 * fds (the kernel glues the bytes of earlier writes to it): it runs, as one ahead of any other
 * violation does, and then the connection is refused for the fds. Before, the read failed as a
 * whole, and the valid call was dropped unrun. */
TEST(call_before_too_many_fds_runs) {
        static const char postpone[] = "{\"method\":\"io.tsmd.Test.Postpone\",\"parameters\":{\"id\":0,\"fd\":0}}",
                          record[] = "{\"method\":\"io.tsmd.Test.Record\",\"parameters\":{\"text\":\"x\"}}",
                          pass[] = "{\"method\":\"io.tsmd.Test.PassFd\",\"parameters\":{\"fd\":0}}";
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        VarlinkClient *c2;
        int fd;

        l.max_fds_per_message = 2;
        server_start(&l);
        c2 = client_new();
        fd = raw_connect();
        ASSERT_TRUE(wait_n_connections(2));

        /* The two behind the postponed call wait in the socket, to be read together. */
        send_with_fds(fd, postpone, 1);
        raw_call(fd, record);
        send_with_fds(fd, pass, 3);
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        ASSERT_EQ(recorded_count(c2), 0);
        ASSERT_EQ(resume(c2, 0, false), 0);
        while (raw_recv(fd))
                ;
        close(fd);
        ASSERT_EQ(recorded_count(c2), 1);
        ASSERT_TRUE(wait_n_connections(1));

        varlink_client_free(c2);
        server_stop();
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_FILE_DESCRIPTORS " -\n");
}

/* A new connection that sends msg and then shuts down its sending side. */
static int raw_call_then_shut(const char *msg) {
        int fd = raw_connect();

        raw_call(fd, msg);
        ASSERT_OK(shutdown(fd, SHUT_WR));
        return fd;
}

/* A client that shuts down its sending side after its calls (socat does when its input ends)
 * still gets every answer, a postponed call's and a stream's included; then the server hangs
 * up. A close of its end is still a hang-up that drops what it waited for. */
TEST(a_client_that_half_closes_gets_its_answers) {
        static const char echo[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}",
                          postpone[] = "{\"method\":\"io.tsmd.Test.Postpone\",\"parameters\":{\"id\":0,\"fd\":0}}",
                          record[] = "{\"method\":\"io.tsmd.Test.Record\",\"parameters\":{\"text\":\"x\"}}",
                          stream[] = "{\"method\":\"io.tsmd.Test.Stream\",\"parameters\":{\"id\":8},\"more\":true}",
                          defer[] = "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":9}}";
        VarlinkClient *c2;
        int fd;

        server_start(NULL);
        c2 = client_new();

        fd = raw_call_then_shut(echo);
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"text\":\"x\"}}");
        ASSERT_TRUE(raw_is_closed(fd));
        close(fd);
        ASSERT_TRUE(wait_n_connections(1));

        /* With a call unanswered when the end is read (nothing queued to write meanwhile): the
         * connection waits for its answer. */
        fd = raw_call_then_shut(defer);
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        usleep(100000);
        ASSERT_EQ(server_n_connections(), 2u);
        ASSERT_EQ(release(c2, 9), 9);
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"id\":9}}");
        ASSERT_TRUE(raw_is_closed(fd));
        close(fd);
        ASSERT_TRUE(wait_n_connections(1));

        /* Behind a postponed call: the connection waits, paused, for it to run. */
        fd = raw_connect();
        send_with_fds(fd, postpone, 1);
        raw_call(fd, record);
        ASSERT_OK(shutdown(fd, SHUT_WR));
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        usleep(100000);
        ASSERT_EQ(server_n_connections(), 2u);
        ASSERT_EQ(resume(c2, 0, false), 0);
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"fd\":0}}");
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{}}");
        ASSERT_EQ(recorded_count(c2), 1);
        ASSERT_TRUE(raw_is_closed(fd));
        close(fd);
        ASSERT_TRUE(wait_n_connections(1));

        /* A stream goes on until it ends... */
        fd = raw_call_then_shut(stream);
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"id\":-1},\"continues\":true}");
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        usleep(100000);
        ASSERT_EQ(server_n_connections(), 2u);
        ASSERT_EQ(release(c2, 8), 8);
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"id\":8}}");
        ASSERT_TRUE(raw_is_closed(fd));
        close(fd);
        ASSERT_TRUE(wait_n_connections(1));

        /* ...or its client closes its end. */
        fd = raw_call_then_shut(stream);
        ASSERT_NOT_NULL(raw_recv(fd));
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        close(fd);
        ASSERT_TRUE(wait_n_connections(1));
        ASSERT_EQ(release(c2, 8), -ENOTCONN);

        /* A message left unfinished is dropped, and the server hangs up. */
        fd = raw_connect();
        raw_call(fd, echo);
        raw_send(fd, echo, 10);
        ASSERT_OK(shutdown(fd, SHUT_WR));
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"text\":\"x\"}}");
        ASSERT_TRUE(raw_is_closed(fd));
        close(fd);
        ASSERT_TRUE(wait_n_connections(1));

        varlink_client_free(c2);
        server_stop();
}

/* Without MaxFds=, a quarter of RLIMIT_NOFILE; never more than half of it. */
TEST(fd_budget_follows_rlimit_nofile) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        struct rlimit rl;

        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &rl));
        server_start(NULL);
        ASSERT_EQ(varlink_server_get_fd_budget(ts.server), (size_t) rl.rlim_cur / 4);
        server_stop();
        l.max_fds = UINT_MAX;
        server_start(&l);
        ASSERT_EQ(varlink_server_get_fd_budget(ts.server), (size_t) rl.rlim_cur / 2);
        server_stop();
}

/* MaxBuffered= bounds what all clients buffer together, whatever each uid may. */
TEST(limit_buffered_total) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        char partial[3001];
        int fds[8];

        l.max_message_size = l.max_output_size = 4096;
        l.max_buffered_per_uid = 1 << 20;
        l.max_buffered = 16384;
        server_start(&l);

        memset(partial, ' ', sizeof(partial) - 1);
        memcpy(partial, "{\"method\":", 10);
        partial[sizeof(partial) - 1] = 0;
        for (unsigned i = 0; i < 8; i++) {
                fds[i] = raw_connect();
                raw_send(fds[i], partial, strlen(partial));
                usleep(20000);
        }
        for (unsigned i = 0; i < 8; i++) {
                raw_expect_closed(fds[i], i >= 5);
                close(fds[i]);
        }
        ASSERT_TRUE(wait_n_connections(0));
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MUCH_BUFFERED " -\n" VARLINK_REFUSED_TOO_MUCH_BUFFERED " -\n"
                                  VARLINK_REFUSED_TOO_MUCH_BUFFERED " -\n");
        server_stop();
}

/* A connection to the socket at path of another uid: a child connects as it (the peer
 * credentials are the connector's) and hands the socket over. */
static int raw_connect_to_as(const char *path, uid_t uid) {
        char control[CMSG_SPACE(sizeof(int))] = {}, byte;
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                             .msg_controllen = sizeof(control) };
        int pair[2], status, fd;
        pid_t pid;

        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair));
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

                if (setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
                        _exit(2);
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        _exit(4);
                connect_to(fd, path);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &fd, sizeof(int));
                _exit(sendmsg(pair[1], &mh, 0) == 1 ? 0 : 3);
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_EQ(recvmsg(pair[0], &mh, MSG_CMSG_CLOEXEC), 1);
        ASSERT_NOT_NULL(CMSG_FIRSTHDR(&mh));
        memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(int));
        close(pair[0]);
        close(pair[1]);
        return fd;
}

static int raw_connect_as(uid_t uid) {
        return raw_connect_to_as(ts.path, uid);
}

/* How many of fds the server closed: once one of them is readable (within 10 s; none has
 * anything else to read), those closed within 200 ms each. */
static unsigned raw_count_closed(const int *fds, unsigned n) {
        struct pollfd p[8];
        unsigned closed = 0;

        ASSERT_TRUE(n <= ELEMENTSOF(p));
        for (unsigned i = 0; i < n; i++)
                p[i] = (struct pollfd) { .fd = fds[i], .events = POLLIN };
        (void) poll(p, n, (int) (WAIT_USEC / 1000));
        for (unsigned i = 0; i < n; i++)
                closed += raw_closed_soon(fds[i]);
        return closed;
}

/* Exactly one of the n hogs (another uid than fd's) was dropped, for reason; then everybody hangs
 * up and the server stops. */
static void expect_one_hog_dropped_then_stop(int fd, int *hogs, unsigned n, const char *reason) {
        char refusal[256];

        snprintf(refusal, sizeof(refusal), "%s - (another peer)\n", reason);
        ASSERT_EQ(raw_count_closed(hogs, n), 1U);
        ASSERT_STREQ(ts.refusals, refusal);
        close(fd);
        for (unsigned i = 0; i < n; i++)
                close(hogs[i]);
        ASSERT_TRUE(wait_n_connections(0));
        server_stop();
}

/* Past MaxBuffered=, the uid that holds the most loses its largest connection, not whoever read
 * last: another uid parking unfinished messages near the limit cannot make the next small call of
 * everybody else its last. */
TEST(limit_buffered_total_drops_the_largest_holder) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        char partial[3001], echo[2000];
        int hogs[5], fd;

        if (geteuid() != 0)
                SKIP("needs root to connect as a second uid");
        l.max_message_size = l.max_output_size = 4096;
        l.max_buffered_per_uid = 1 << 20;
        l.max_buffered = 16384;
        server_start(&l);

        /* Each hog's partial message comes in one write behind a call: its answer says the server
         * read it. */
        memset(partial, ' ', sizeof(partial) - 1);
        partial[sizeof(partial) - 1] = 0;
        memcpy(partial, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}", 56);
        partial[56] = 0;
        memcpy(partial + 57, "{\"method\":", 10);
        for (unsigned i = 0; i < ELEMENTSOF(hogs); i++) {
                hogs[i] = raw_connect_as(65534);
                raw_send(hogs[i], partial, sizeof(partial) - 1);
                ASSERT_STREQ(raw_recv(hogs[i]), "{\"parameters\":{\"text\":\"x\"}}");
        }

        /* 5 x 2,943 bytes parked; this call of 2,000 goes past 16 KiB. */
        memset(echo, 'y', sizeof(echo) - 1);
        echo[sizeof(echo) - 1] = 0;
        memcpy(echo, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"", 52);
        memcpy(echo + sizeof(echo) - 4, "\"}}", 3);
        fd = raw_connect();
        raw_call(fd, echo);
        ASSERT_NOT_NULL(raw_recv(fd));
        expect_one_hog_dropped_then_stop(fd, hogs, ELEMENTSOF(hogs), VARLINK_REFUSED_TOO_MUCH_BUFFERED);
}

/* The same for the fds parked on unfinished messages past the fd budget (MaxFds=). */
TEST(limit_fds_total_drops_the_largest_holder) {
        static const char start[] = "{\"method\":\"io.tsmd.Test.PassFd\",";
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        const char *reply;
        unsigned before;
        int hogs[2], fd;

        if (geteuid() != 0)
                SKIP("needs root to connect as a second uid");
        l.max_fds_per_message = 4;
        l.max_fds = 8;
        server_start(&l);
        before = test_count_fds();

        for (unsigned i = 0; i < ELEMENTSOF(hogs); i++) {
                hogs[i] = raw_connect_as(65534);
                send_bytes_with_fds(hogs[i], start, sizeof(start) - 1, 4);
        }
        /* Our end and the server's of each, and the 4 fds each parked there. */
        (void) WAIT_FOR(test_count_fds() >= before + 2 * 2 + 8);
        ASSERT_EQ(test_count_fds(), before + 2 * 2 + 8);

        fd = raw_connect();
        send_with_fds(fd, "{\"method\":\"io.tsmd.Test.PassFd\",\"parameters\":{\"fd\":0}}", 1);
        reply = raw_recv(fd);
        ASSERT_NOT_NULL(reply);
        ASSERT_NOT_NULL(strstr(reply, "\"fd\":0"));
        expect_one_hog_dropped_then_stop(fd, hogs, ELEMENTSOF(hogs), VARLINK_REFUSED_TOO_MANY_FDS);
}

/* A call's message is held until its answer is released (the daemon's audit record): its bytes
 * count against MaxBufferedPerUid= meanwhile, and are given back with it. */
TEST(held_messages_count_as_buffered) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        char held[3001];
        VarlinkClient *c;
        json_object *reply;
        const char *e = NULL;
        int fd;

        l.max_message_size = l.max_output_size = 4096;
        l.max_buffered_per_uid = 16384;
        server_start(&l);
        c = client_new();

        fd = raw_connect();
        for (unsigned i = 0; i < 6; i++) {
                int n = snprintf(held, sizeof(held), "{\"method\":\"io.tsmd.Test.Held\",\"parameters\":{\"id\":%u}}", i);

                memset(held + n, ' ', sizeof(held) - 1 - (size_t) n);
                held[sizeof(held) - 1] = 0;
                raw_call(fd, held);
                usleep(20000);
        }
        /* Five held messages and the sixth's bytes: past 16 KiB. */
        ASSERT_TRUE(raw_is_closed(fd));
        close(fd);
        ASSERT_TRUE(wait_n_connections(1));
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MUCH_BUFFERED_PER_UID " -\n");

        /* Released, they count no more. */
        fd = raw_connect();
        for (unsigned i = 10; i < 16; i++) {
                int n = snprintf(held, sizeof(held), "{\"method\":\"io.tsmd.Test.Held\",\"parameters\":{\"id\":%u}}", i);

                memset(held + n, ' ', sizeof(held) - 1 - (size_t) n);
                held[sizeof(held) - 1] = 0;
                raw_call(fd, held);
                wait_held(i);
                ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Unhold", parse(strf("{\"id\":%u}", i)), &reply, &e));
                ASSERT_NULL(e);
                ASSERT_STREQ(raw_recv(fd), strf("{\"parameters\":{\"id\":%u}}", i));
        }
        close(fd);
        varlink_client_free(c);
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MUCH_BUFFERED_PER_UID " -\n");
        server_stop();
}

/* A call with a pad of 300 KiB (more than a wake-up of one connection parses), NUL included. */
static char *round_call(size_t *ret_len) {
        static const char head[] = "{\"method\":\"io.tsmd.Test.Round\",\"parameters\":{\"pad\":\"";
        size_t n = sizeof(head) - 1 + 300 * 1024 + 4;
        char *m = malloc(n);

        ASSERT_NOT_NULL(m);
        memcpy(m, head, sizeof(head) - 1);
        memset(m + sizeof(head) - 1, 'a', 300 * 1024);
        memcpy(m + n - 4, "\"}}", 4);
        *ret_len = n;
        return m;
}

/* A connection whose socket buffer takes several large messages while the server sleeps. */
static int raw_connect_roomy(void) {
        int fd = raw_connect(), size = 4 << 20;

        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0 &&
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) < 0)
                TEST_FAIL("cannot grow a socket buffer: %m");
        return fd;
}

static unsigned round_of(const char *reply) {
        const char *p = reply ? strstr(reply, "\"round\":") : NULL;

        if (!p)
                TEST_FAIL("not a Round reply: %s", strna(reply));
        return (unsigned) strtoul(p + strlen("\"round\":"), NULL, 10);
}

/* Large messages pipelined on one connection, all there at once: a wake-up of the connection
 * that parsed one leaves the next to a later round of the loop, where others get their turn. */
TEST(large_messages_yield_per_connection) {
        size_t len;
        _cleanup_free_ char *m = round_call(&len);
        unsigned r[3];
        int sleeper, fd;

        ts.count_rounds = true;
        server_start(NULL);
        sleeper = raw_connect();
        fd = raw_connect_roomy();
        server_sleep(sleeper);
        for (unsigned i = 0; i < 3; i++)
                raw_send(fd, m, len);
        server_wake();
        ASSERT_STREQ(raw_recv(sleeper), "{\"parameters\":{}}");
        for (unsigned i = 0; i < 3; i++)
                r[i] = round_of(raw_recv(fd));
        if (!(r[0] < r[1] && r[1] < r[2]))
                TEST_FAIL("three 300 KiB messages parsed in rounds %u, %u, %u", r[0], r[1], r[2]);
        close(sleeper);
        close(fd);
        server_stop();
}

/* Many connections completing large messages at once: a round of the loop parses some 4 MiB
 * of them and leaves the rest to the next rounds. */
TEST(large_messages_yield_per_round) {
        enum { N = 24 };
        size_t len;
        _cleanup_free_ char *m = round_call(&len);
        unsigned first = UINT_MAX, last = 0, in_first = 0, r[N];
        int sleeper, fds[N];

        ts.count_rounds = true;
        server_start(NULL);
        sleeper = raw_connect();
        for (unsigned i = 0; i < N; i++)
                fds[i] = raw_connect_roomy();
        server_sleep(sleeper);
        for (unsigned i = 0; i < N; i++)
                raw_send(fds[i], m, len);
        server_wake();
        ASSERT_STREQ(raw_recv(sleeper), "{\"parameters\":{}}");
        for (unsigned i = 0; i < N; i++) {
                r[i] = round_of(raw_recv(fds[i]));
                first = MIN(first, r[i]);
                last = MAX(last, r[i]);
        }
        for (unsigned i = 0; i < N; i++)
                in_first += r[i] == first;
        fprintf(stderr, "# %u messages of 300 KiB: %u in the first round, the last %u rounds later\n", N, in_first,
                last - first);
        /* 4 MiB, then one more that started below it. */
        ASSERT_LE(in_first, 4U * 1024 * 1024 / (300 * 1024) + 1);
        for (unsigned i = 0; i < N; i++)
                close(fds[i]);
        close(sleeper);
        server_stop();
}

/* Reads and drops everything the server sends on fd until want bytes came (10 s at most). */
static void raw_drain(int fd, size_t want) {
        static char buf[1 << 16];
        size_t got = 0;

        while (got < want) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t n;

                ASSERT_EQ(poll(&p, 1, 10000), 1);
                n = read(fd, buf, sizeof(buf));
                ASSERT_TRUE(n > 0);
                got += (size_t) n;
        }
}

/* What left through the socket once it was writable again counts no more: a uid whose
 * connections took their large replies has its whole budget back. */
TEST(buffered_per_uid_gives_back_what_was_written) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        _cleanup_free_ char *text = NULL, *call = NULL, *big = NULL, *big_call = NULL;
        const size_t len = 120 * 1024, big_len = 550 * 1024;
        int a, b;

        l.max_message_size = 600 * 1024;
        l.max_output_size = l.max_buffered_per_uid = 1024 * 1024;
        server_start(&l);
        ASSERT_NOT_NULL(text = malloc(len + 1));
        memset(text, 'a', len);
        text[len] = 0;
        ASSERT_TRUE(asprintf(&call, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"%s\"}}", text) > 0);

        /* Six replies of 120 KiB, more than the socket holds: the rest leaves when it can. */
        a = raw_connect();
        for (unsigned i = 0; i < 6; i++)
                raw_send(a, call, strlen(call) + 1);
        usleep(200000);
        raw_drain(a, 6 * (len + sizeof("{\"parameters\":{\"text\":\"\"}}")));

        /* 550 KiB for another connection of the uid: within the budget, a has nothing left. */
        ASSERT_NOT_NULL(big = malloc(big_len + 1));
        memset(big, 'b', big_len);
        big[big_len] = 0;
        ASSERT_TRUE(asprintf(&big_call, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"%s\"}}", big) > 0);
        b = raw_connect();
        raw_send(b, big_call, strlen(big_call) + 1);
        raw_drain(b, big_len + sizeof("{\"parameters\":{\"text\":\"\"}}"));
        ASSERT_STREQ(ts.refusals, "");
        close(a);
        close(b);
        server_stop();
}

/* A connection its server is dropping (a reply went past the uid's budget) runs none of the
 * calls that came after that reply's, even those already read. */
TEST(nothing_runs_on_a_connection_being_dropped) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        static const char echo[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}";
        char partial[sizeof(echo) + 3400], calls[1024];
        size_t n = 0;
        int x, y;

        l.max_message_size = l.max_output_size = l.max_buffered_per_uid = 4096;
        server_start(&l);
        ts.recorded = 0;
        /* The partial message comes in one write behind a call: its answer says the server read
         * it. */
        memcpy(partial, echo, sizeof(echo));
        memset(partial + sizeof(echo), ' ', 3400);
        memcpy(partial + sizeof(echo), "{\"method\":", 10);
        x = raw_connect(); /* holds 3,400 of the uid's 4,096 bytes */
        raw_send(x, partial, sizeof(partial));
        ASSERT_STREQ(raw_recv(x), "{\"parameters\":{\"text\":\"x\"}}");

        /* In one write: a call whose reply (over 1 KiB) tips the uid over, then three more. */
        y = raw_connect();
        n += (size_t) snprintf(calls + n, sizeof(calls) - n, "%s",
                               "{\"method\":\"org.varlink.service.GetInterfaceDescription\","
                               "\"parameters\":{\"interface\":\"io.tsmd.Test\"}}") + 1;
        for (unsigned i = 0; i < 3; i++)
                n += (size_t) snprintf(calls + n, sizeof(calls) - n, "%s",
                                       "{\"method\":\"io.tsmd.Test.Record\",\"parameters\":{\"text\":\"x\"}}") + 1;
        raw_send(y, calls, n);
        ASSERT_TRUE(raw_is_closed(y));
        ASSERT_NOT_NULL(strstr(ts.refusals, VARLINK_REFUSED_TOO_MUCH_BUFFERED_PER_UID));
        ASSERT_EQ(ts.recorded, 0u);
        close(x);
        close(y);
        server_stop();
}

TEST(limit_connections) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        VarlinkClient *c[3];
        int fd;

        l.max_connections = 3;
        server_start(&l);
        for (unsigned i = 0; i < 3; i++) {
                c[i] = client_new();
                expect_error(c[i], "io.tsmd.Test.Nope", NULL, VARLINK_ERROR_METHOD_NOT_FOUND, NULL);
        }
        fd = raw_connect();
        raw_expect_refused(fd, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
        close(fd);

        /* A slot frees up when a client leaves. */
        varlink_client_free(c[0]);
        ASSERT_TRUE(wait_n_connections(2));
        c[0] = client_new();
        expect_error(c[0], "io.tsmd.Test.Nope", NULL, VARLINK_ERROR_METHOD_NOT_FOUND, NULL);
        for (unsigned i = 0; i < 3; i++)
                varlink_client_free(c[i]);
        server_stop();
}

/* What the end of a refused connection reads after the refusal: 0 for the end of the stream,
 * else the errno (ECONNRESET: the server closed it with the peer's call unread). */
static int raw_end_of(int fd) {
        char c;

        if (recv(fd, &c, 1, 0) == 0)
                return 0;
        return errno;
}

/* The refusal of a connection past MaxConnections= is the answer to the peer's first call,
 * whether it wrote that before the server refused it (the server closes it unread: ECONNRESET,
 * but only after what was queued for the peer) or after (the write fails, the read does not). */
TEST(limit_refusal_answers_the_first_call) {
        static const char refusal[] = "{\"error\":\"" VARLINK_REFUSED_TOO_MANY_CONNECTIONS "\",\"parameters\":{}}";
        static const char call[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}";
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        json_object *reply = NULL;
        VarlinkClient *c;
        const char *e = NULL;
        int sleeper, fd;

        l.max_connections = 1;
        server_start(&l);
        sleeper = raw_connect();
        server_sleep(sleeper);
        /* Before: the server, asleep, accepts it only after the call is in. */
        fd = raw_connect();
        raw_call(fd, call);
        server_wake();
        ASSERT_STREQ(raw_recv(fd), refusal);
        ASSERT_EQ(raw_end_of(fd), ECONNRESET);
        close(fd);
        ASSERT_STREQ(raw_recv(sleeper), "{\"parameters\":{}}");

        /* After: the call is written once the server closed the connection. */
        fd = raw_connect();
        ASSERT_TRUE(raw_closed_soon_after_data(fd));
        ASSERT_EQ(send(fd, call, sizeof(call), MSG_NOSIGNAL), -1);
        ASSERT_EQ(errno, EPIPE);
        ASSERT_STREQ(raw_recv(fd), refusal);
        ASSERT_EQ(raw_end_of(fd), 0);
        close(fd);

        /* The client library takes it for the call's answer, then for the end it is. */
        ASSERT_OK(varlink_client_connect(ts.path, &c));
        varlink_client_set_timeout(c, 10 * 1000000ULL);
        ASSERT_TRUE(raw_closed_soon_after_data(varlink_client_get_fd(c)));
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Echo", parse("{\"text\":\"x\"}"), &reply, &e));
        ASSERT_STREQ(e, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
        ASSERT_ERRNO(varlink_client_call(c, "io.tsmd.Test.Echo", parse("{\"text\":\"x\"}"), &reply, &e),
                     ECONNRESET);
        varlink_client_free(c);

        close(sleeper);
        server_stop();
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MANY_CONNECTIONS " (not accepted)\n"
                                  VARLINK_REFUSED_TOO_MANY_CONNECTIONS " (not accepted)\n"
                                  VARLINK_REFUSED_TOO_MANY_CONNECTIONS " (not accepted)\n");
}

/* A server that reads no more (shut down its reading side) but keeps the connection: the
 * client's write fails, nothing comes to read, and the call fails at once as on a lost
 * connection, neither waiting for its timeout nor spinning. */
TEST(client_call_to_a_server_that_reads_no_more) {
        char dir[] = "/tmp/test-varlink-XXXXXX";
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        json_object *reply = NULL;
        const char *e = NULL;
        VarlinkClient *c;
        uint64_t start;
        int l, fd;

        ASSERT_NOT_NULL(mkdtemp(dir));
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", dir);
        l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(l >= 0);
        ASSERT_OK(bind(l, (struct sockaddr *) &sa, sizeof(sa)));
        ASSERT_OK(listen(l, 1));
        ASSERT_OK(varlink_client_connect(sa.sun_path, &c));
        varlink_client_set_timeout(c, 10 * 1000000ULL);
        fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(shutdown(fd, SHUT_RD));

        start = now_monotonic_usec();
        ASSERT_ERRNO(varlink_client_call(c, "io.tsmd.Test.Echo", parse("{\"text\":\"x\"}"), &reply, &e),
                     ECONNRESET);
        ASSERT_LE(now_monotonic_usec() - start, 2000000U);
        varlink_client_free(c);
        close(fd);
        close(l);
        unlink(sa.sun_path);
        rmdir(dir);
}

TEST(limit_connections_per_uid) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        VarlinkClient *c[2];
        int fd, status;
        pid_t pid;

        if (geteuid() != 0)
                SKIP("needs root to connect as a second uid");

        l.max_connections_per_uid = 2;
        server_start(&l);
        for (unsigned i = 0; i < 2; i++)
                c[i] = client_new();
        fd = raw_connect();
        raw_expect_refused(fd, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID);
        close(fd);

        /* Another uid still gets in. */
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                VarlinkClient *o;
                if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(2);
                o = client_new();
                expect_error(o, "io.tsmd.Test.Nope", NULL, VARLINK_ERROR_METHOD_NOT_FOUND, NULL);
                _exit(0);
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        for (unsigned i = 0; i < 2; i++)
                varlink_client_free(c[i]);
        server_stop();
}

static void expect_echo(VarlinkClient *c) {
        json_object *reply = NULL;
        const char *e = NULL;

        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Echo", parse("{\"text\":\"x\"}"), &reply, &e));
        ASSERT_NULL(e);
        ASSERT_STREQ(json_get_string(reply, "text"), "x");
}

/* SECURITY: a connection refused at accept (past MaxConnectionsPerUid=) may have fds queued
 * already, sent before the server accepted it (here: while its loop sleeps in a call); closing it releases them, and the release of the
 * last reference to a dirty file of a FUSE file system with writeback_cache waits on its server
 * (tests/fuse-hold.h; root, SKIP otherwise). The server's loop must not: closed off it, and
 * another connection's call is answered while the server holds (a watchdog kills it
 * otherwise, and the test fails). */
TEST(a_connection_refused_with_fds_queued_does_not_hold_the_loop) {
        static const uint8_t page[4096] = { 1 };
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        VarlinkClient *c;
        FuseHoldWatch w;
        FuseHold h;
        int dirty, fd, sleeper, r;

        ASSERT_OK(fd_closer_start());
        r = fuse_hold_start_writeback(&h, 30 * 1000000ULL);
        if (r < 0)
                SKIP("no FUSE mount here: %s", strerror(-r));
        l.max_connections_per_uid = 2;
        server_start(&l);
        c = client_new();
        expect_echo(c);
        ASSERT_OK(dirty = fuse_hold_open(&h, O_RDWR));

        /* Sent before the server accepts it: its loop sleeps meanwhile. */
        sleeper = raw_connect();
        server_sleep(sleeper);
        {
                union {
                        struct cmsghdr c;
                        uint8_t b[CMSG_SPACE(sizeof(int))];
                } control = {};
                struct iovec iov = { .iov_base = (void *) "{}", .iov_len = 3 };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                                     .msg_controllen = sizeof(control) };
                int f;

                fd = raw_connect();
                ASSERT_OK(f = fuse_hold_open(&h, O_RDWR));
                control.c.cmsg_level = SOL_SOCKET;
                control.c.cmsg_type = SCM_RIGHTS;
                control.c.cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(&control.c), &f, sizeof(int));
                ASSERT_EQ(sendmsg(fd, &mh, MSG_NOSIGNAL), 3);
                close(f);
        }
        /* The one reference to that file is queued on fd: dirty, its release waits. */
        ASSERT_EQ(pwrite(dirty, page, sizeof(page), 0), (ssize_t) sizeof(page));
        fuse_hold_watch_start(&w, &h, 5 * 1000000ULL);
        server_wake();
        ASSERT_STREQ(raw_recv(fd), strf("{\"error\":\"%s\",\"parameters\":{}}",
                                        VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID));
        expect_echo(c);
        if (fuse_hold_watch_end(&w))
                TEST_FAIL("a refused connection's queued fds held the server's loop");
        /* Waiting under its uid (known at the refusal: SO_PEERCRED), not under nobody's: what a
         * uid has waiting bounds what the server takes from it. */
        ASSERT_EQ(fd_closer_n_waiting(geteuid()), 1u);
        ASSERT_EQ(fd_closer_n_waiting(FD_CLOSER_PEER_NONE), 0u);

        fuse_hold_stop(&h);
        ASSERT_OK(fd_closer_wait_idle(30 * 1000000ULL));
        close(dirty);
        close(fd);
        close(sleeper);
        varlink_client_free(c);
        server_stop();
}

/* How many connections the floods below make: more than the closer's queue has room for (a
 * RLIMIT_NOFILE of FLOOD_NOFILE), all refused at accept. */
#define FLOOD_NOFILE 512
#define FLOOD_N 700

/* Calls Echo on fd, a raw connection, and expects the answer. */
static void raw_expect_echo(int fd) {
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}");
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"text\":\"x\"}}");
}

/* What each connection of the floods below sends before it is accepted. */
typedef enum Flood {
        FLOOD_BYTES,        /* a byte */
        FLOOD_ORDINARY_FDS, /* a byte and an fd whose close cannot wait: /dev/null or a memfd */
        FLOOD_WAITING_FDS,  /* a byte and an fd whose close may wait: a pipe's end */
} Flood;

/* SECURITY: a flood of connections refused at accept (past MaxConnectionsPerUid=), each of which
 * sent a byte before the server accepted it, and an fd too but for FLOOD_BYTES, while the closer's
 * thread is held (the first refused connection's queued FUSE file, as above): the server's fd
 * table must not fill with the sockets or fds waiting to be closed, and a connection of another
 * uid is served throughout. With bytes only, or fds whose close cannot wait, every socket (and
 * every fd on it) closes at once: nothing of the peer's that may wait goes with it, and the
 * server accepts on. With fds that may wait, the closer takes them up to its share (a quarter of
 * its room), and then the server accepts no more until the closer catches up: the rest wait in
 * the listener's backlog, and are refused once the FUSE server lets go. The process's fds are
 * counted (the test's own are few and made before). */
static void flood_of_refused_connections(Flood flood) {
        static const uint8_t page[4096] = { 1 };
        struct rlimit rl, small = { .rlim_cur = FLOOD_NOFILE };
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        const bool waits = flood == FLOOD_WAITING_FDS;
        int dirty, fd, f, null, memfd, pipe_fds[2], other, third, sleeper, r;
        const char *expected;
        unsigned n_refused;
        size_t before, share;
        VarlinkClient *c;
        FuseHold h;

        if (geteuid() != 0)
                SKIP("needs root to connect as a second uid");
        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &rl));
        small.rlim_max = rl.rlim_max;
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &small));
        ASSERT_OK(fd_closer_start()); /* room for FLOOD_NOFILE */
        share = fd_closer_share();
        ASSERT_EQ(share, FLOOD_NOFILE / 4u);
        r = fuse_hold_start_writeback(&h, 60 * 1000000ULL);
        if (r < 0)
                SKIP("no FUSE mount here: %s", strerror(-r));
        l.max_connections_per_uid = 2;
        server_start(&l);
        c = client_new();
        expect_echo(c);
        other = raw_connect_as(65534);
        raw_expect_echo(other);
        third = raw_connect_as(65533);
        raw_expect_echo(third);
        ASSERT_OK(dirty = fuse_hold_open(&h, O_RDWR));
        ASSERT_OK(null = open("/dev/null", O_RDONLY | O_CLOEXEC));
        ASSERT_OK(memfd = memfd_create("tsmd-test", MFD_CLOEXEC));
        ASSERT_OK(pipe2(pipe_fds, O_CLOEXEC));

        sleeper = raw_connect();
        server_sleep(sleeper);
        /* The first holds the closer: the one reference to a dirty file is queued on it. */
        fd = raw_connect();
        ASSERT_OK(f = fuse_hold_open(&h, O_RDWR));
        ASSERT_OK(fuse_hold_send_fd(fd, f, 0));
        close(f);
        close(fd);
        ASSERT_EQ(pwrite(dirty, page, sizeof(page), 0), (ssize_t) sizeof(page));
        before = test_count_fds();
        for (unsigned i = 0; i < FLOOD_N; i++) {
                fd = raw_connect();
                if (flood == FLOOD_ORDINARY_FDS)
                        ASSERT_OK(fuse_hold_send_fd(fd, i % 2 ? memfd : null, 0));
                else if (flood == FLOOD_WAITING_FDS)
                        ASSERT_OK(fuse_hold_send_fd(fd, pipe_fds[0], 0));
                else
                        raw_send(fd, "x", 1);
                close(fd);
        }
        server_wake();

        if (!waits) {
                /* Every one refused, none left waiting: the fd table as it was. */
                if (!WAIT_FOR(__atomic_load_n(&ts.n_refused, __ATOMIC_ACQUIRE) == FLOOD_N + 1))
                        TEST_FAIL("%u of %u connections refused, the server holding %zu more fds than before",
                                  __atomic_load_n(&ts.n_refused, __ATOMIC_ACQUIRE), FLOOD_N + 1,
                                  test_count_fds() - before);
                ASSERT_LE(test_count_fds(), before + 4);
                ASSERT_EQ(fd_closer_n_waiting_all(), 1u); /* the first, held */
        } else {
                /* The closer's share taken, then no more accepted while it is held. */
                ASSERT_TRUE(WAIT_FOR(fd_closer_n_waiting_all() > share));
                usleep(500 * 1000);
                if (test_count_fds() > before + share + 8)
                        TEST_FAIL("the server holds %zu more fds than before (%zu wait to be closed, the share %zu)",
                                  test_count_fds() - before, fd_closer_n_waiting_all(), share);
                ASSERT_TRUE(__atomic_load_n(&ts.n_refused, __ATOMIC_ACQUIRE) < FLOOD_N + 1u);

                /* A uid with nothing waiting that sends an fd now is refused it, with the
                 * connection (its fds are not taken, nor dropped on the loop), for what everybody
                 * has waiting: by that name, not as if its own were past MaxFdsPerUid=. */
                n_refused = __atomic_load_n(&ts.n_refused, __ATOMIC_ACQUIRE);
                ASSERT_OK(fuse_hold_send_fd(third, null, 0));
                ASSERT_TRUE(WAIT_FOR(__atomic_load_n(&ts.n_refused, __ATOMIC_ACQUIRE) == n_refused + 1));
                expected = strf("%s - (another peer) [more than %zu fds of all clients wait to be closed, uid %u "
                                "holding the most (",
                                VARLINK_REFUSED_TOO_MANY_FDS, share, (unsigned) geteuid());
                if (!strneq(ts.last_refusal, expected, strlen(expected)))
                        TEST_FAIL("refused as \"%s\", expected \"%s...\"", ts.last_refusal, expected);
                ASSERT_NULL(raw_recv(third));
        }
        /* Served meanwhile: the loop is not held, and had fds to spare. */
        raw_expect_echo(other);
        expect_echo(c);

        /* The server's death lets the closer go: the rest is accepted and refused (with fds, the
         * third uid's connection was too). */
        fuse_hold_stop(&h);
        ASSERT_TRUE(WAIT_FOR(__atomic_load_n(&ts.n_refused, __ATOMIC_ACQUIRE) == FLOOD_N + 1u + waits));
        ASSERT_OK(fd_closer_wait_idle(30 * 1000000ULL));
        ASSERT_LE(test_count_fds(), before);
        raw_expect_echo(other);

        close(dirty);
        close(null);
        close(memfd);
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        close(other);
        close(third);
        close(sleeper);
        varlink_client_free(c);
        server_stop();
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &rl));
}

TEST(a_flood_of_refused_connections_with_bytes_leaves_no_fds_waiting) {
        flood_of_refused_connections(FLOOD_BYTES);
}

/* The flood a local user makes who holds the closer with one FUSE file and sends /dev/null or a
 * memfd on each connection: it no longer stops the server accepting for everybody. */
TEST(a_flood_of_refused_connections_with_ordinary_fds_leaves_no_fds_waiting) {
        flood_of_refused_connections(FLOOD_ORDINARY_FDS);
}

TEST(a_flood_of_refused_connections_with_fds_that_may_wait_stops_at_the_closers_share) {
        flood_of_refused_connections(FLOOD_WAITING_FDS);
}

/* The admin listener's connections have a budget of their own (max_admin_connections): guest
 * clients holding every MaxConnections= and MaxConnectionsPerUid= slot, of root's uid even, do
 * not lock the administrator out, and the administrator's take none of theirs. */
TEST(admin_connections_are_counted_apart) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        VarlinkClient *guest[2], *admin[2];
        int fd;

        l.max_connections = 2;
        l.max_connections_per_uid = 2;
        l.max_admin_connections = 2;
        ts.admin_listener = true;
        server_start(&l);
        for (unsigned i = 0; i < 2; i++) {
                guest[i] = client_new();
                expect_echo(guest[i]);
        }
        fd = raw_connect();
        raw_expect_refused(fd, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID);
        close(fd);
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID " (not accepted)\n");

        for (unsigned i = 0; i < 2; i++) {
                ASSERT_OK(varlink_client_connect(ts.admin_path, &admin[i]));
                varlink_client_set_timeout(admin[i], 10 * 1000000ULL);
                expect_echo(admin[i]);
        }
        /* Past its own budget, an admin connection is refused too; the guests' is untouched. */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        connect_to(fd, ts.admin_path);
        raw_expect_refused(fd, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
        close(fd);
        varlink_client_free(guest[0]);
        ASSERT_TRUE(wait_n_connections(3));
        guest[0] = client_new();
        expect_echo(guest[0]);
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID " (not accepted)\n"
                                  VARLINK_REFUSED_TOO_MANY_CONNECTIONS " (not accepted)\n");
        for (unsigned i = 0; i < 2; i++) {
                varlink_client_free(guest[i]);
                varlink_client_free(admin[i]);
        }
        server_stop();
}

/* A connection to the admin listener, of an administrator (on_administers()) or not, that has
 * called once. */
static int admin_connect(bool administers) {
        static unsigned n;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        if (administers) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                int len = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "admin-%d-%u", (int) getpid(), n++);

                ASSERT_OK(bind(fd, (struct sockaddr *) &sa, offsetof(struct sockaddr_un, sun_path) + 1 + len));
        }
        connect_to(fd, ts.admin_path);
        return fd;
}

/* A connection to the admin listener calls, and is answered: the server let it in. */
static void admin_expect_echo(int fd) {
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}");
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"text\":\"x\"}}");
}

/* Those who may connect to the admin listener without administering, holding all its
 * max_admin_connections slots idle after a call, do not lock an administrator out: it takes the
 * place of the one idle longest, which is told why by name (as the answer to its next call) and
 * on record with the reason. Only administrators holding every slot turn one away. */
TEST(administrator_takes_the_place_of_a_non_administrator) {
        static const char echo[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}";
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        int other[2], admin[2], fd;
        const char *closed_for;
        char want[512];

        l.max_admin_connections = 2;
        ts.admin_listener = true;
        ts.with_administers = true;
        server_start(&l);
        for (unsigned i = 0; i < 2; i++) {
                other[i] = admin_connect(false);
                raw_call(other[i], echo);
                ASSERT_NOT_NULL(raw_recv(other[i]));
        }
        fd = admin_connect(false);
        raw_expect_refused(fd, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
        close(fd);

        for (unsigned i = 0; i < 2; i++) {
                admin[i] = admin_connect(true);
                raw_call(admin[i], echo);
                ASSERT_NOT_NULL(raw_recv(admin[i]));
                raw_expect_refused(other[i], VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
        }
        fd = admin_connect(true);
        raw_expect_refused(fd, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
        close(fd);
        closed_for = strf(VARLINK_REFUSED_TOO_MANY_CONNECTIONS " - [closed to make room for administrator uid %u "
                          "(admin connection limit 2 reached)]\n",
                          (unsigned) geteuid());
        (void) snprintf(want, sizeof(want), VARLINK_REFUSED_TOO_MANY_CONNECTIONS " (not accepted)\n%s%s"
                        VARLINK_REFUSED_TOO_MANY_CONNECTIONS " (not accepted)\n", closed_for, closed_for);
        ASSERT_STREQ(ts.refusals, want);
        for (unsigned i = 0; i < 2; i++) {
                close(other[i]);
                close(admin[i]);
        }
        server_stop();
}

/* A non-administrator closed for an administrator while a call of its is in flight (a
 * subscription, as tsmctl monitor's FollowAudit) gets the error as that call's final answer,
 * after what it was sent, then the hang-up: not a bare hang-up in the middle of a stream. */
TEST(administrator_takes_the_place_of_a_follower) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        int follower, admin;

        l.max_admin_connections = 1;
        ts.admin_listener = true;
        ts.with_administers = true;
        server_start(&l);
        follower = admin_connect(false);
        raw_call(follower, "{\"method\":\"io.tsmd.Test.Stream\",\"parameters\":{\"id\":5},\"more\":true}");
        ASSERT_STREQ(raw_recv(follower), "{\"parameters\":{\"id\":-1},\"continues\":true}");
        admin = admin_connect(true);
        admin_expect_echo(admin);
        raw_expect_refused(follower, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
        close(follower);
        close(admin);
        server_stop();
}

/* A connection that holds what the server's user keeps for it (a VMM's contexts: the admin
 * socket serves io.tsmd.Guest too) is not closed for an administrator: it is turned away. */
TEST(administrator_does_not_take_the_place_of_a_holder) {
        static const char echo[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}";
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        int other, fd;

        l.max_admin_connections = 1;
        ts.admin_listener = true;
        ts.with_administers = true;
        ts.with_holds = true;
        __atomic_store_n(&ts.conn_holds, true, __ATOMIC_RELEASE);
        server_start(&l);
        other = admin_connect(false);
        raw_call(other, echo);
        ASSERT_NOT_NULL(raw_recv(other));
        fd = admin_connect(true);
        raw_expect_refused(fd, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
        close(fd);
        raw_call(other, echo);
        ASSERT_NOT_NULL(raw_recv(other));
        close(other);
        server_stop();
}

/* A connection to the (not admin) listener of a peer the server's user names (named) or not. */
static int named_connect(bool named) {
        static unsigned n;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        if (named) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                int len = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "named-%d-%u", (int) getpid(), n++);

                ASSERT_OK(bind(fd, (struct sockaddr *) &sa, offsetof(struct sockaddr_un, sun_path) + 1 + len));
        }
        connect_to(fd, ts.path);
        return fd;
}

/* Peers the server's user does not name share max_unnamed_connections: past it, a new one is
 * told TooManyConnections with that limit, on record with the reason, while named peers fill
 * max_connections; the admin listener's are not counted; a closed one's slot is free again. */
TEST(unnamed_peers_share_max_unnamed_connections) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        int unnamed[2], named[2], admin, fd;

        l.max_connections = 4;
        l.max_unnamed_connections = 2;
        ts.admin_listener = true;
        ts.with_named = true;
        server_start(&l);
        for (unsigned i = 0; i < 2; i++) {
                unnamed[i] = named_connect(false);
                admin_expect_echo(unnamed[i]);
        }
        fd = named_connect(false);
        raw_expect_told(fd, VARLINK_REFUSED_TOO_MANY_CONNECTIONS, "{\"maxUnnamedConnections\":2}");
        close(fd);
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MANY_CONNECTIONS
                     " - [the connections of unnamed callers are at their limit (2)]\n");
        for (unsigned i = 0; i < 2; i++) {
                named[i] = named_connect(true);
                admin_expect_echo(named[i]);
        }
        admin = admin_connect(false);
        admin_expect_echo(admin);

        close(unnamed[0]);
        ASSERT_TRUE(WAIT_FOR(__atomic_load_n(&ts.n_disconnects, __ATOMIC_ACQUIRE) == 2));
        unnamed[0] = named_connect(false);
        admin_expect_echo(unnamed[0]);
        for (unsigned i = 0; i < 2; i++) {
                close(unnamed[i]);
                close(named[i]);
        }
        close(admin);
        server_stop();
}

/* A full server whose unnamed share is full closes nobody's idle connection for a newcomer it
 * does not name, which it refuses (it closed a named peer's, then refused the newcomer: a peer at
 * its share could cost the named an idle connection a try); for one it names, it does, once
 * that one is identified. */
TEST(full_server_closes_no_idle_connection_for_an_unnamed_newcomer_it_refuses) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        int named[3], unnamed, fd;

        l.max_connections = 4;
        l.max_unnamed_connections = 1;
        l.idle_timeout_sec = 1;
        ts.with_holds = true;
        ts.with_named = true;
        server_start(&l);
        for (unsigned i = 0; i < 3; i++) {
                named[i] = named_connect(true);
                admin_expect_echo(named[i]);
        }
        unnamed = named_connect(false);
        admin_expect_echo(unnamed);

        /* None idle yet: a newcomer it names, once identified, finds no room and is refused. */
        fd = named_connect(true);
        raw_expect_refused(fd, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
        close(fd);
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MANY_CONNECTIONS " (not accepted)\n");
        ts.refusals[0] = 0;
        for (unsigned i = 0; i < 3; i++)
                admin_expect_echo(named[i]);
        admin_expect_echo(unnamed);
        usleep(1200 * 1000); /* all idle past IdleTimeoutSec= */

        fd = named_connect(false);
        raw_expect_told(fd, VARLINK_REFUSED_TOO_MANY_CONNECTIONS, "{\"maxUnnamedConnections\":1}");
        close(fd);
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MANY_CONNECTIONS
                     " - [the connections of unnamed callers are at their limit (1)]\n");
        for (unsigned i = 0; i < 3; i++)
                admin_expect_echo(named[i]);
        admin_expect_echo(unnamed);

        /* All idle again: one the server names gets an idle connection's place. */
        usleep(1200 * 1000);
        fd = named_connect(true);
        admin_expect_echo(fd);
        ASSERT_NOT_NULL(strstr(ts.refusals, VARLINK_REFUSED_IDLE_TIMEOUT));
        close(fd);
        for (unsigned i = 0; i < 3; i++)
                close(named[i]);
        close(unnamed);
        server_stop();
}

/* A uid that does not administer may hold max_admin_connections_per_uid connections to the
 * admin listener, and is refused TooManyConnectionsPerUid past it, with room left there;
 * administrators are not bound by it (an administrator of that same uid gets in, and takes the
 * place of nobody while there is room). */
TEST(admin_connections_per_uid) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        int other[2], admin[2], fd;

        l.max_admin_connections = 4;
        l.max_admin_connections_per_uid = 2;
        ts.admin_listener = true;
        ts.with_administers = true;
        server_start(&l);
        for (unsigned i = 0; i < 2; i++) {
                other[i] = admin_connect(false);
                admin_expect_echo(other[i]);
        }
        fd = admin_connect(false);
        raw_expect_refused(fd, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID);
        close(fd);
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID " (not accepted)\n");

        for (unsigned i = 0; i < 2; i++) {
                admin[i] = admin_connect(true);
                admin_expect_echo(admin[i]);
        }
        for (unsigned i = 0; i < 2; i++)
                admin_expect_echo(other[i]);
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID " (not accepted)\n");
        for (unsigned i = 0; i < 2; i++) {
                close(other[i]);
                close(admin[i]);
        }
        server_stop();
}

/* Without a way to tell administrators, everyone is bound by max_admin_connections_per_uid. */
TEST(admin_connections_per_uid_without_administers_callback) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        int fds[2], fd;

        l.max_admin_connections = 4;
        l.max_admin_connections_per_uid = 2;
        ts.admin_listener = true;
        server_start(&l);
        for (unsigned i = 0; i < 2; i++) {
                fds[i] = admin_connect(true);
                admin_expect_echo(fds[i]);
        }
        fd = admin_connect(true);
        raw_expect_refused(fd, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID);
        close(fd);
        for (unsigned i = 0; i < 2; i++)
                close(fds[i]);
        server_stop();
}

/* One uid that does not administer filling its share of the admin listener does not keep
 * another out: the admin listener had room for one uid's connections alone otherwise. The
 * limit applies from a new value on, for connections made after it. */
TEST(admin_connections_per_uid_leave_room_for_other_uids) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        int first[4], second[2];

        if (geteuid() != 0)
                SKIP("needs root to connect as other uids");
        l.max_admin_connections = 4;
        l.max_admin_connections_per_uid = 2;
        ts.admin_listener = true;
        server_start(&l);
        ASSERT_OK(chmod(ts.admin_path, 0666));
        for (unsigned i = 0; i < 4; i++) {
                first[i] = raw_connect_to_as(ts.admin_path, 65534);
                if (i < 2)
                        admin_expect_echo(first[i]);
                else
                        raw_expect_refused(first[i], VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID);
        }
        for (unsigned i = 0; i < 2; i++) {
                second[i] = raw_connect_to_as(ts.admin_path, 65533);
                admin_expect_echo(second[i]);
        }
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID " (not accepted) (another peer)\n"
                                  VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID " (not accepted) (another peer)\n");
        for (unsigned i = 0; i < 4; i++)
                close(first[i]);
        for (unsigned i = 0; i < 2; i++)
                close(second[i]);
        server_stop();
}

/* A server of MaxConnections=3 and IdleTimeoutSec=1, with the holds of its user (ts.conn_holds). */
static void server_start_idle_closing(void) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;

        l.max_connections = 3;
        l.idle_timeout_sec = 1;
        ts.with_holds = true;
        server_start(&l);
}

/* A connection that called once and stays idle is never timed out (VMMs hold theirs), but with
 * MaxConnections= reached, one idle for IdleTimeoutSec= that holds nothing (no call in flight,
 * nothing buffered, nothing its server's user keeps) is closed for a newcomer: the one idle
 * longest of the uid that holds the most. */
TEST(full_server_closes_an_idle_connection_for_a_new_one) {
        static const char echo[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}";
        int a, b, busy, fd;

        if (geteuid() != 0)
                SKIP("needs root to connect as a second uid");
        server_start_idle_closing();
        a = raw_connect_as(65534);
        raw_call(a, echo);
        ASSERT_NOT_NULL(raw_recv(a));
        b = raw_connect_as(65534);
        raw_call(b, echo);
        ASSERT_NOT_NULL(raw_recv(b));
        busy = raw_connect();
        raw_call(busy, "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":3}}");
        ASSERT_TRUE(wait_n_connections(3));
        /* Called again, a first and b second, after the forks above (slow under a sanitizer):
         * what follows takes far less than IdleTimeoutSec=. */
        raw_call(a, echo);
        ASSERT_NOT_NULL(raw_recv(a));
        raw_call(b, echo);
        ASSERT_NOT_NULL(raw_recv(b));

        /* Idle for less than IdleTimeoutSec=: the newcomer is refused. */
        fd = raw_connect();
        raw_expect_refused(fd, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
        close(fd);
        usleep(1100000);
        /* Idle for long enough, but holding something. */
        __atomic_store_n(&ts.conn_holds, true, __ATOMIC_RELEASE);
        fd = raw_connect();
        raw_expect_refused(fd, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
        close(fd);
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MANY_CONNECTIONS " (not accepted)\n"
                                  VARLINK_REFUSED_TOO_MANY_CONNECTIONS " (not accepted)\n");

        /* Holding nothing: nobody's connection idle longest goes (not root's, which has a call in
         * flight anyway), on record. */
        __atomic_store_n(&ts.conn_holds, false, __ATOMIC_RELEASE);
        fd = raw_connect();
        raw_call(fd, echo);
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"text\":\"x\"}}");
        raw_expect_told(a, VARLINK_REFUSED_IDLE_TIMEOUT, "{\"idleTimeoutSec\":1}"); /* told why, before the hang-up */
        ASSERT_FALSE(raw_closed_soon(b));
        ASSERT_FALSE(raw_closed_soon(busy));
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_TOO_MANY_CONNECTIONS " (not accepted)\n"
                                  VARLINK_REFUSED_TOO_MANY_CONNECTIONS " (not accepted)\n"
                                  VARLINK_REFUSED_IDLE_TIMEOUT " - (another peer)\n");
        close(a);
        close(b);
        close(busy);
        close(fd);
        server_stop();
        ASSERT_EQ(ts.n_timed_out, 1U);
}

/* The idle connections of any uid, not only those of the uid holding the most: that uid keeping
 * its own busy (a call in flight) shields nobody else's idle one, here root's. */
TEST(full_server_closes_an_idle_connection_of_any_uid) {
        static const char echo[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}";
        int busy1, busy2, idle, fd;

        if (geteuid() != 0)
                SKIP("needs root to connect as a second uid");
        server_start_idle_closing();
        busy1 = raw_connect_as(65534);
        raw_call(busy1, "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":1}}");
        busy2 = raw_connect_as(65534);
        raw_call(busy2, "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":2}}");
        idle = raw_connect();
        raw_call(idle, echo);
        ASSERT_NOT_NULL(raw_recv(idle));
        ASSERT_TRUE(wait_n_connections(3));
        usleep(1100000);

        fd = raw_connect_as(65533);
        raw_call(fd, echo);
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"text\":\"x\"}}");
        raw_expect_told(idle, VARLINK_REFUSED_IDLE_TIMEOUT, "{\"idleTimeoutSec\":1}");
        ASSERT_FALSE(raw_closed_soon(busy1));
        ASSERT_FALSE(raw_closed_soon(busy2));
        close(busy1);
        close(busy2);
        close(idle);
        close(fd);
        server_stop();
}

/* A subscription (a "more" call whose handler is done, waiting to notify) is no call in flight:
 * a connection whose only call it is, idle for IdleTimeoutSec=, is closed for a newcomer unless
 * its server's user keeps something for it. One with a call in flight before its subscription
 * is not. */
TEST(full_server_closes_an_idle_subscribed_connection_for_a_new_one) {
        static const char echo[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}";
        int sub[2], busy, fd[2];

        if (geteuid() != 0)
                SKIP("needs root to connect as other uids");
        server_start_idle_closing();
        for (unsigned i = 0; i < ELEMENTSOF(sub); i++) {
                sub[i] = raw_connect_as(65534 - i);
                raw_call(sub[i], strf("{\"method\":\"io.tsmd.Test.Stream\",\"parameters\":{\"id\":%u},\"more\":true}", i + 1));
                ASSERT_STREQ(raw_recv(sub[i]), "{\"parameters\":{\"id\":-1},\"continues\":true}");
        }
        busy = raw_connect();
        raw_call(busy, "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":3}}");
        raw_call(busy, "{\"method\":\"io.tsmd.Test.Stream\",\"parameters\":{\"id\":4},\"more\":true}");
        ASSERT_TRUE(wait_n_connections(3));
        usleep(1100000);

        /* Kept by the server's user. */
        __atomic_store_n(&ts.conn_holds, true, __ATOMIC_RELEASE);
        fd[0] = raw_connect();
        raw_expect_refused(fd[0], VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
        close(fd[0]);

        /* Not kept: the subscribed ones go, the one idle longest first; the busy one stays,
         * though of the uid holding the most for the second newcomer. */
        __atomic_store_n(&ts.conn_holds, false, __ATOMIC_RELEASE);
        for (unsigned i = 0; i < ELEMENTSOF(fd); i++) {
                fd[i] = raw_connect();
                raw_call(fd[i], echo);
                ASSERT_STREQ(raw_recv(fd[i]), "{\"parameters\":{\"text\":\"x\"}}");
                raw_expect_told(sub[i], VARLINK_REFUSED_IDLE_TIMEOUT, "{\"idleTimeoutSec\":1}"); /* its subscription's answer */
        }
        ASSERT_FALSE(raw_closed_soon(busy));
        for (unsigned i = 0; i < ELEMENTSOF(sub); i++)
                close(sub[i]);
        close(fd[0]);
        close(fd[1]);
        close(busy);
        server_stop();
        ASSERT_EQ(ts.n_timed_out, 2U);
}

/* What its client leaves unread does not keep an idle connection: else one that stops reading
 * (a subscriber's notifications pile up so) would keep its slot for good. */
TEST(full_server_closes_an_idle_connection_that_does_not_read) {
        static const char echo[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}";
        int unread, busy[2], fd;

        if (geteuid() != 0)
                SKIP("needs root to connect as other uids");
        server_start_idle_closing();
        /* A reply larger than the socket takes: the rest waits in the server. Idle from its
         * answer on: waited for, as making 4 MiB of it took a loaded ASan run past the wait. */
        unread = raw_connect_as(65534);
        raw_call(unread, "{\"method\":\"io.tsmd.Test.Big\",\"parameters\":{\"size\":4194304}}");
        ASSERT_EQ(poll(&(struct pollfd) { .fd = unread, .events = POLLIN }, 1, 10000), 1);
        for (unsigned i = 0; i < ELEMENTSOF(busy); i++) {
                busy[i] = raw_connect();
                raw_call(busy[i], strf("{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":%u}}", i + 1));
        }
        ASSERT_TRUE(wait_n_connections(3));
        usleep(1100000);

        fd = raw_connect_as(65533);
        raw_call(fd, echo);
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"text\":\"x\"}}");
        ASSERT_TRUE(raw_closed_soon_after_data(unread));
        for (unsigned i = 0; i < ELEMENTSOF(busy); i++) {
                ASSERT_FALSE(raw_closed_soon(busy[i]));
                close(busy[i]);
        }
        close(unread);
        close(fd);
        server_stop();
        ASSERT_EQ(ts.n_timed_out, 1U);
}

/* Whatever the server refuses on its own is reported by name, calls before their answer. */
TEST(refusals_are_reported) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        VarlinkClient *c, *full[3];
        static const char deep[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":[[[[[1]]]]]}}";
        char big[300];
        int fd;

        l.max_message_size = 256;
        l.max_output_size = 256;
        l.max_depth = 4;
        l.max_fds_per_message = 1;
        l.max_connections = 3;
        l.message_timeout_sec = 1;
        server_start(&l);

        c = client_new();
        expect_error(c, "io.tsmd.Test.Nope", NULL, VARLINK_ERROR_METHOD_NOT_FOUND, NULL);
        expect_error(c, "io.tsmd.Nope.Call", NULL, VARLINK_ERROR_INTERFACE_NOT_FOUND, NULL);
        expect_error(c, "io.tsmd.Test.Echo", "{}", VARLINK_ERROR_INVALID_PARAMETER, NULL);
        expect_error(c, "io.tsmd.Test.Count", "{\"n\":1}", VARLINK_ERROR_EXPECTED_MORE, NULL);
        expect_error(c, "io.tsmd.Test.NotBound", NULL, VARLINK_ERROR_METHOD_NOT_IMPLEMENTED, NULL);
        expect_error(c, "io.tsmd.Test.Intercepted", NULL, "io.tsmd.Test.Nothing", NULL);
        /* Answered by a method, even with an error: not the server's refusal. */
        expect_error(c, "io.tsmd.Test.Denied", NULL, VARLINK_ERROR_PERMISSION_DENIED, NULL);

        fd = raw_connect();
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"},\"upgrade\":true}");
        ASSERT_NOT_NULL(raw_recv(fd));
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"},\"bogus\":1}");
        ASSERT_NOT_NULL(raw_recv(fd));
        ASSERT_TRUE(raw_is_closed(fd));
        close(fd);

        raw_expect_refusal_of("{\"method\":", sizeof("{\"method\":"), VARLINK_REFUSED_MALFORMED_MESSAGE, "{}");
        memset(big, ' ', sizeof(big));
        raw_expect_refusal_of(big, sizeof(big), VARLINK_REFUSED_MESSAGE_TOO_LARGE, "{\"maxMessageSize\":256}");
        raw_expect_refusal_of(deep, sizeof(deep), VARLINK_REFUSED_NESTING_TOO_DEEP, "{\"maxJsonDepth\":4}");

        fd = raw_connect();
        send_with_fds(fd, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}", 2);
        raw_expect_told(fd, VARLINK_REFUSED_FILE_DESCRIPTORS, "{\"maxFdsPerMessage\":1}");
        close(fd);

        raw_expect_refusal_of("{", 1, VARLINK_REFUSED_MESSAGE_TIMEOUT, "{\"messageTimeoutSec\":1}");

        /* c and two more fill MaxConnections. */
        full[0] = client_new();
        expect_error(full[0], "io.tsmd.Test.Denied", NULL, VARLINK_ERROR_PERMISSION_DENIED, NULL);
        full[1] = client_new();
        expect_error(full[1], "io.tsmd.Test.Denied", NULL, VARLINK_ERROR_PERMISSION_DENIED, NULL);
        fd = raw_connect();
        raw_expect_refused(fd, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
        close(fd);

        for (unsigned i = 0; i < 2; i++)
                varlink_client_free(full[i]);
        varlink_client_free(c);
        server_stop();
        ASSERT_STREQ(ts.refusals,
                     VARLINK_ERROR_METHOD_NOT_FOUND " io.tsmd.Test.Nope\n"
                     VARLINK_ERROR_INTERFACE_NOT_FOUND " io.tsmd.Nope.Call\n"
                     VARLINK_ERROR_INVALID_PARAMETER " io.tsmd.Test.Echo\n"
                     VARLINK_ERROR_EXPECTED_MORE " io.tsmd.Test.Count\n"
                     VARLINK_ERROR_METHOD_NOT_IMPLEMENTED " io.tsmd.Test.NotBound\n"
                     VARLINK_ERROR_METHOD_NOT_FOUND " io.tsmd.Test.Intercepted\n"
                     VARLINK_ERROR_INVALID_PARAMETER " io.tsmd.Test.Echo\n"
                     VARLINK_ERROR_INVALID_PARAMETER " \n"
                     VARLINK_REFUSED_MALFORMED_MESSAGE " -\n"
                     VARLINK_REFUSED_MESSAGE_TOO_LARGE " -\n"
                     VARLINK_REFUSED_NESTING_TOO_DEEP " -\n"
                     VARLINK_REFUSED_FILE_DESCRIPTORS " -\n"
                     VARLINK_REFUSED_MESSAGE_TIMEOUT " -\n"
                     VARLINK_REFUSED_TOO_MANY_CONNECTIONS " (not accepted)\n");
        ASSERT_EQ(ts.n_timed_out, 1U);
}

/* Sends; false if the server has hung up already. */
static bool raw_try_send(int fd, const void *p, size_t n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

        if (k < 0 && (errno == EPIPE || errno == ECONNRESET))
                return false;
        ASSERT_EQ(k, (ssize_t) n);
        return true;
}

/* Whether the server sent something or hung up, without waiting: a refusal it tells comes
 * before the hang-up. */
static bool raw_readable(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        return poll(&p, 1, 0) == 1;
}

TEST(message_timeout) {
        static const char endless[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"";
        static const char slow[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"slow\"}}";
        static const char behind[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"behind\"}}";
        static const char defer[] = "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":1}}";
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        int trickler, slowpoke, silent, blocked, chained;
        uint64_t start, closed_after = 0;
        size_t pos = 0, slow_sent = 0;
        unsigned chain_step = 0;
        char buf[256];

        /* 2 s, not 1: each half of the chained client's messages has 0.8 s to spare, for a test
         * thread that a busy machine stalls. */
        l.message_timeout_sec = 2;
        l.max_pending_calls = 1;
        server_start(&l);
        trickler = raw_connect();
        slowpoke = raw_connect();
        silent = raw_connect();
        blocked = raw_connect();
        chained = raw_connect();

        /* A call the server holds, and in the same write the start of the next message. With
         * MaxPendingCalls=1 the server stops reading there: the wait is the server's, so the
         * timeout does not run. */
        memcpy(buf, defer, sizeof(defer));
        memcpy(buf + sizeof(defer), behind, 20);
        raw_send(blocked, buf, sizeof(defer) + 20);

        /* 2.6 s in 50 ms ticks (longer if the trickler is not gone or the chain not done, up to
         * 8 s): the trickler sends a byte of a message that never ends each tick; the slow
         * client sends a whole message in pieces over 400 ms, well within the timeout, then
         * idles for longer than the timeout. The chained client sends two messages 2.4 s
         * apart, each within 1.2 s; the second starts in the write that ends the first, and has
         * its own deadline. */
        start = now_monotonic_usec();
        for (;;) {
                uint64_t t = now_monotonic_usec() - start;

                if (t >= 8000000U || (t >= 2600000U && chain_step == 3 && closed_after != 0))
                        break;
                if (chain_step == 0) {
                        raw_send(chained, slow, 20);
                        chain_step++;
                } else if (chain_step == 1 && t >= 1200000U) {
                        memcpy(buf, slow + 20, sizeof(slow) - 20);
                        memcpy(buf + sizeof(slow) - 20, slow, 20);
                        raw_send(chained, buf, sizeof(slow));
                        chain_step++;
                } else if (chain_step == 2 && t >= 2400000U) {
                        raw_send(chained, slow + 20, sizeof(slow) - 20);
                        chain_step++;
                }

                if (closed_after == 0 &&
                    (raw_readable(trickler) ||
                     !raw_try_send(trickler, pos < sizeof(endless) - 1 ? &endless[pos] : "a", 1)))
                        closed_after = now_monotonic_usec() - start;
                pos++;
                if (slow_sent < sizeof(slow)) {
                        size_t n = MIN(sizeof(slow) - slow_sent, sizeof(slow) / 8 + 1);

                        raw_send(slowpoke, slow + slow_sent, n);
                        slow_sent += n;
                        if (slow_sent == sizeof(slow))
                                ASSERT_STREQ(raw_recv(slowpoke), "{\"parameters\":{\"text\":\"slow\"}}");
                }
                usleep(50000);
        }
        /* Closed once its message was two seconds old, not before, told why. */
        if (closed_after == 0)
                TEST_FAIL("the trickling client is still connected after 8 s");
        ASSERT_GE(closed_after, 1800000U);
        raw_expect_told(trickler, VARLINK_REFUSED_MESSAGE_TIMEOUT, "{\"messageTimeoutSec\":2}");
        close(trickler);

        /* Idle between messages, or never having sent anything: kept. */
        raw_call(slowpoke, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"again\"}}");
        ASSERT_STREQ(raw_recv(slowpoke), "{\"parameters\":{\"text\":\"again\"}}");
        raw_call(silent, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"late\"}}");
        ASSERT_STREQ(raw_recv(silent), "{\"parameters\":{\"text\":\"late\"}}");
        ASSERT_EQ(chain_step, 3U);
        for (unsigned i = 0; i < 2; i++)
                ASSERT_STREQ(raw_recv(chained), "{\"parameters\":{\"text\":\"slow\"}}");

        /* The held call is released: the server reads on, and the rest of the message that
         * waited 2.6 s in its buffer gets a fresh timeout. */
        raw_call(slowpoke, "{\"method\":\"io.tsmd.Test.Release\",\"parameters\":{\"id\":1}}");
        ASSERT_STREQ(raw_recv(slowpoke), "{\"parameters\":{\"released\":1}}");
        ASSERT_STREQ(raw_recv(blocked), "{\"parameters\":{\"id\":1}}");
        raw_send(blocked, behind + 20, sizeof(behind) - 20);
        ASSERT_STREQ(raw_recv(blocked), "{\"parameters\":{\"text\":\"behind\"}}");

        close(slowpoke);
        close(silent);
        close(blocked);
        close(chained);
        server_stop();
        ASSERT_EQ(ts.n_timed_out, 1U);
}

/* A message timing out behind a call the close leaves unanswered: a bare hang-up, the refusal
 * on record only. Told, it would read as that call's answer, which may have acted (a request
 * sent to the TSM). A refused message's calls before it are answered first
 * (calls_before_a_malformed_message_are_answered). */
TEST(timeout_behind_an_unanswered_call_is_a_bare_close) {
        static const char defer[] = "{\"method\":\"io.tsmd.Test.Defer\",\"parameters\":{\"id\":3}}";
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        int fd;

        l.message_timeout_sec = 1;
        server_start(&l);
        fd = raw_connect();
        raw_send(fd, defer, sizeof(defer));
        raw_send(fd, defer, 10);
        /* Not told as the deferred call's answer: that call ran, and its outcome is unknown. */
        ASSERT_NULL(raw_recv(fd));
        close(fd);
        server_stop();
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_MESSAGE_TIMEOUT " -\n");
}

/* IdleTimeoutSec= runs from connect to the first complete message: a connection that sends
 * nothing, or only the start of a message (even with no MessageTimeoutSec=), goes; one that
 * called stays, however long it idles. */
TEST(idle_timeout) {
        static const char call[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}";
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        int silent, talker, partial;
        uint64_t start, silent_after = 0, partial_after = 0;

        l.idle_timeout_sec = 1;
        l.message_timeout_sec = 0; /* none */
        server_start(&l);
        start = now_monotonic_usec();
        silent = raw_connect();
        talker = raw_connect();
        partial = raw_connect();
        raw_call(talker, call);
        ASSERT_STREQ(raw_recv(talker), "{\"parameters\":{\"text\":\"x\"}}");
        raw_send(partial, call, 10);

        /* The silent one and the one that never ended its message go after a second, told
         * why... */
        while (now_monotonic_usec() - start < 5000000U && (silent_after == 0 || partial_after == 0)) {
                if (silent_after == 0 && raw_readable(silent))
                        silent_after = now_monotonic_usec() - start;
                if (partial_after == 0 && raw_readable(partial))
                        partial_after = now_monotonic_usec() - start;
                usleep(20000);
        }
        if (silent_after == 0 || partial_after == 0)
                TEST_FAIL("a client that never completed a message is still connected after 5 s");
        ASSERT_GE(silent_after, 900000U);
        ASSERT_GE(partial_after, 900000U);
        raw_expect_told(silent, VARLINK_REFUSED_IDLE_TIMEOUT, "{\"idleTimeoutSec\":1}");
        raw_expect_told(partial, VARLINK_REFUSED_IDLE_TIMEOUT, "{\"idleTimeoutSec\":1}");
        close(silent);
        close(partial);
        ASSERT_STREQ(ts.refusals, VARLINK_REFUSED_IDLE_TIMEOUT " -\n" VARLINK_REFUSED_IDLE_TIMEOUT " -\n");

        /* ...one that called is kept while idle. */
        usleep(500000);
        raw_call(talker, call);
        ASSERT_STREQ(raw_recv(talker), "{\"parameters\":{\"text\":\"x\"}}");

        close(talker);
        server_stop();
        ASSERT_EQ(ts.n_timed_out, 2U);
}

/* The next reply on a raw connection, failing the test if the server hung up instead. */
static const char *raw_recv_some(int fd) {
        const char *r = raw_recv(fd);

        if (!r)
                TEST_FAIL("the server hung up instead of answering");
        return r;
}

/* Sets ts.reload_limits through a connection of its own, as the daemon's Reload does. */
static void reload_limits(const VarlinkLimits *l) {
        VarlinkClient *c = client_new();
        json_object *reply = NULL;
        const char *e = NULL;

        ts.reload_limits = *l;
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Reload", NULL, &reply, &e));
        ASSERT_NULL(e);
        varlink_client_free(c);
}

/* Limits changed at run time hold for connections accepted before, not only for new ones: what
 * they are sent (MaxMessageSize=, MaxOutputSize=, fds out), the fds they may send, lowered and
 * raised alike. */
TEST(reload_applies_to_connections_accepted_before) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        json_object *reply = NULL;
        const char *e = NULL;
        VarlinkClient *c, *sub;
        Collected col = {};
        int fd;

        l.max_fds_per_message = 0;
        server_start(&l);
        c = client_new();
        sub = client_new();
        fd = raw_connect();
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Big", parse("{\"size\":5000}"), &reply, &e));
        ASSERT_NULL(e);

        l.max_message_size = 4096;
        l.max_output_size = 8192;
        l.max_fds_per_message = 1;
        reload_limits(&l);

        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Big", parse("{\"size\":5000}"), &reply, &e));
        ASSERT_STREQ(e, VARLINK_ERROR_REPLY_TOO_LARGE);
        ASSERT_STREQ(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN),
                     "{\"size\":5027,\"maxMessageSize\":4096}");

        /* An fd each way, where none was allowed when it connected. */
        send_with_fds(fd, "{\"method\":\"io.tsmd.Test.PassFd\",\"parameters\":{\"fd\":0}}", 1);
        ASSERT_NOT_NULL(strstr(raw_recv_some(fd), "\"fd\":0"));

        /* A subscriber that does not read is dropped once 8 KiB wait for it: two notifications
         * of 3 KiB are queued, the third is one too many. */
        ts.flood_sent = 0;
        (void) varlink_client_call_more(sub, "io.tsmd.Test.Flood", parse("{\"size\":3000}"), collect, &col);
        ASSERT_EQ(ts.flood_result, -ENOBUFS);
        ASSERT_EQ(ts.flood_sent, 2u);
        varlink_client_free(sub);

        /* Lowered again: the fd is refused now. */
        l.max_fds_per_message = 0;
        reload_limits(&l);
        send_with_fds(fd, "{\"method\":\"io.tsmd.Test.PassFd\",\"parameters\":{\"fd\":0}}", 1);
        raw_expect_told(fd, VARLINK_REFUSED_FILE_DESCRIPTORS, "{\"maxFdsPerMessage\":0}");
        close(fd);

        expect_error(c, "io.tsmd.Test.Fail", "{\"errnoValue\":2}", VARLINK_ERROR_SYSTEM, NULL);
        varlink_client_free(c);
        server_stop();
        ASSERT_NOT_NULL(strstr(ts.refusals, VARLINK_REFUSED_REPLIES_NOT_READ));
        ASSERT_NOT_NULL(strstr(ts.refusals, VARLINK_REFUSED_FILE_DESCRIPTORS));
}

/* A message under way when MaxMessageSize= is lowered finishes under the size it started with;
 * its reply, and the next message, obey the new one. */
TEST(reload_lets_a_message_under_way_finish) {
        static const char first[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"a\"}}";
        static const char head[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"";
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        char buf[8192];
        size_t n;
        int fd;

        server_start(NULL);
        fd = raw_connect();
        /* One write: a call, then 3000 bytes of the next; the answer to the first says both
         * were read. */
        memcpy(buf, first, sizeof(first));
        n = sizeof(first);
        memcpy(buf + n, head, strlen(head));
        n += strlen(head);
        memset(buf + n, 'x', 3000);
        n += 3000;
        raw_send(fd, buf, n);
        ASSERT_STREQ(raw_recv(fd), "{\"parameters\":{\"text\":\"a\"}}");

        l.max_message_size = 1024;
        l.max_output_size = 1024;
        reload_limits(&l);

        raw_send(fd, "\"}}", 4); /* with the NUL */
        ASSERT_NOT_NULL(strstr(raw_recv_some(fd), VARLINK_ERROR_REPLY_TOO_LARGE));

        memcpy(buf, head, strlen(head));
        n = strlen(head);
        memset(buf + n, 'x', 2000);
        n += 2000;
        memcpy(buf + n, "\"}}", 4);
        n += 4;
        raw_send(fd, buf, n);
        raw_expect_told(fd, VARLINK_REFUSED_MESSAGE_TOO_LARGE, "{\"maxMessageSize\":1024}");
        close(fd);
        server_stop();
        ASSERT_NOT_NULL(strstr(ts.refusals, VARLINK_REFUSED_MESSAGE_TOO_LARGE));
}

/* A lowered IdleTimeoutSec= reaches a connection that has not called yet, counted from the
 * reload; one that called is kept. */
TEST(reload_shortens_the_idle_timeout) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        VarlinkClient *c;
        uint64_t start;
        int silent;

        server_start(NULL);
        silent = raw_connect();
        c = client_new();
        expect_error(c, "io.tsmd.Test.Fail", "{\"errnoValue\":2}", VARLINK_ERROR_SYSTEM, NULL);

        l.idle_timeout_sec = 1;
        reload_limits(&l);
        start = now_monotonic_usec();
        while (!raw_readable(silent)) {
                if (now_monotonic_usec() - start > 5000000U)
                        TEST_FAIL("a connection accepted before the reload kept its idle timeout of 60 s");
                usleep(20000);
        }
        ASSERT_GE(now_monotonic_usec() - start, 900000U);
        /* Told the timeout in force now. */
        raw_expect_told(silent, VARLINK_REFUSED_IDLE_TIMEOUT, "{\"idleTimeoutSec\":1}");
        close(silent);
        expect_error(c, "io.tsmd.Test.Fail", "{\"errnoValue\":2}", VARLINK_ERROR_SYSTEM, NULL);
        varlink_client_free(c);
        server_stop();
}

/* A call that acts, let run under the old limits, keeps the room its bound promised when a
 * reload lowers them before it answers: it is never told ReplyTooLarge after it acted. The next
 * call is refused before it runs. */
TEST(reload_keeps_the_room_of_a_call_that_acts) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        json_object *reply = NULL;
        const char *e = NULL;
        VarlinkClient *c, *c2, *c3;
        Collected col = {}, col2 = {};
        int fd;

        server_start(NULL);
        c = client_new();
        c2 = client_new();
        c3 = client_new();
        ASSERT_OK(varlink_client_call_async(c, "io.tsmd.Test.Later", parse("{\"id\":3,\"size\":3000}"), 0, collect,
                                            &col));
        ASSERT_OK(varlink_client_call_async(c2, "io.tsmd.Test.Later", parse("{\"id\":5,\"size\":6000,\"reserve\":true}"),
                                            0, collect, &col2));
        while (varlink_client_process(c) > 0 || varlink_client_process(c2) > 0)
                ;
        ASSERT_TRUE(wait_pending_calls(c3, 2));

        l.max_message_size = 1024;
        l.max_output_size = 1024;
        l.max_fds_per_message = 0;
        reload_limits(&l);
        ASSERT_EQ(release(c3, 3), 3);
        wait_collected(c, &col, 1);
        ASSERT_TRUE(col.replies[0][0] == '{'); /* not ReplyTooLarge */
        fd = varlink_client_take_fd(c, 0);
        ASSERT_TRUE(fd >= 0);
        close(fd);
        ASSERT_EQ(release(c3, 5), 5);
        wait_collected(c2, &col2, 1);
        ASSERT_TRUE(col2.replies[0][0] == '{');

        ASSERT_OK(varlink_client_call(c, "io.tsmd.Test.Later", parse("{\"id\":4,\"size\":3000}"), &reply, &e));
        ASSERT_STREQ(e, VARLINK_ERROR_REPLY_MAY_NOT_FIT);
        varlink_client_free(c);
        varlink_client_free(c2);
        varlink_client_free(c3);
        server_stop();
        ASSERT_NULL(strstr(ts.refusals, VARLINK_ERROR_REPLY_TOO_LARGE));
}

/* A raised MaxPendingCalls= reaches a connection already paused at the old one: it reads on at
 * once, not only after one of its calls is answered (which, for calls that wait on a device,
 * may be never). */
TEST(reload_raising_max_pending_calls_resumes_a_paused_connection) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        VarlinkClient *c, *c2;
        Collected col = {};

        l.max_pending_calls = 2;
        server_start(&l);
        c = client_new();
        c2 = client_new();
        send_deferred(c, 5, &col);
        ASSERT_TRUE(wait_pending_calls(c2, 2));

        l.max_pending_calls = 8;
        reload_limits(&l);
        if (!wait_pending_calls(c2, 5))
                TEST_FAIL("a connection paused at MaxPendingCalls=2 still reads nothing after it was raised to 8");
        ASSERT_EQ(col.n, 0u);
        varlink_client_free(c);
        varlink_client_free(c2);
        server_stop();
}

/* IdleTimeoutSec=0 set by a reload (no timeout) reaches a connection that has not called yet:
 * its timer of the old value is disarmed. Only waiting past that value shows it kept. */
TEST(reload_turning_the_idle_timeout_off_keeps_a_silent_connection) {
        static const char call[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}";
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        uint64_t start;
        int silent;

        l.idle_timeout_sec = 1;
        server_start(&l);
        silent = raw_connect();
        l.idle_timeout_sec = 0;
        reload_limits(&l);
        start = now_monotonic_usec();
        while (now_monotonic_usec() - start < 2000000U) {
                if (raw_readable(silent))
                        TEST_FAIL("a connection was dropped by the idle timeout a reload turned off");
                usleep(20000);
        }
        raw_call(silent, call);
        ASSERT_STREQ(raw_recv_some(silent), "{\"parameters\":{\"text\":\"x\"}}");
        close(silent);
        server_stop();
        ASSERT_EQ(ts.n_timed_out, 0U);
}

/* An unconnected socket now, connected to path later (when there may be no fd for a new one). */
static int socket_for_later(void) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        return fd;
}

static bool answered_within(int fd, int timeout_ms) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        return poll(&p, 1, timeout_ms) == 1;
}

/* With no fd left in the process, the other listeners wait while an admin listener accepts with
 * the server's spare fds, and the connection it accepted is served; the others are once fds are
 * free again. */
TEST(admin_listener_accepts_without_fds) {
        static const char call[] = "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}";
        struct rlimit saved, none;
        int vmm, admin, admin2, lowest;

        ts.admin_listener = true;
        server_start(NULL);
        vmm = socket_for_later();
        admin = socket_for_later();
        admin2 = socket_for_later();

        /* No fd left from here on: the lowest free one is the limit. */
        lowest = fcntl(0, F_DUPFD_CLOEXEC, 0);
        ASSERT_TRUE(lowest >= 0);
        close(lowest);
        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &saved));
        none = saved;
        none.rlim_cur = (rlim_t) lowest;
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &none));

        connect_to(vmm, ts.path);
        raw_call(vmm, call);
        connect_to(admin, ts.admin_path);
        raw_call(admin, call);
        if (!answered_within(admin, 3000)) {
                ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
                TEST_FAIL("the admin connection was not served with the fd table full");
        }
        ASSERT_STREQ(raw_recv(admin), "{\"parameters\":{\"text\":\"x\"}}");
        connect_to(admin2, ts.admin_path);
        raw_call(admin2, call);
        if (!answered_within(admin2, 3000)) {
                ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
                TEST_FAIL("a second admin connection was not served with the fd table full");
        }
        ASSERT_STREQ(raw_recv(admin2), "{\"parameters\":{\"text\":\"x\"}}");
        ASSERT_FALSE(answered_within(vmm, 300));
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));

        /* Fds again: the other listener resumes (within its pause of a second). */
        ASSERT_TRUE(answered_within(vmm, 3000));
        ASSERT_STREQ(raw_recv(vmm), "{\"parameters\":{\"text\":\"x\"}}");
        close(vmm);
        close(admin);
        close(admin2);
        server_stop();
}

/* Sends msg (with its NUL) with copies of the given fds attached. */
static void send_these_fds(int sock, const char *msg, const int *fds, unsigned n) {
        char control[CMSG_SPACE(sizeof(int) * 4)] = {};
        struct iovec iov = { .iov_base = (void *) msg, .iov_len = strlen(msg) + 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                             .msg_controllen = CMSG_SPACE(sizeof(int) * n) };
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

        ASSERT_TRUE(n >= 1 && n <= 4);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
        ASSERT_EQ(sendmsg(sock, &mh, MSG_NOSIGNAL), (ssize_t) iov.iov_len);
}

/* A fd the server had no room to receive is -EMFILE to the method, not a missing one: the
 * client is not at fault. The connection goes on. */
TEST(fd_lost_to_emfile_is_ours) {
        struct rlimit saved, l;
        int fd, fds[2], lowest;
        const char *reply;

        server_start(NULL);
        fd = raw_connect();
        fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        fds[1] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(fds[0] >= 0 && fds[1] >= 0);
        raw_call(fd, "{\"method\":\"io.tsmd.Test.Echo\",\"parameters\":{\"text\":\"x\"}}");
        ASSERT_NOT_NULL(raw_recv(fd)); /* accepted */

        lowest = fcntl(0, F_DUPFD_CLOEXEC, 0);
        ASSERT_TRUE(lowest >= 0);
        close(lowest);
        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &saved));
        l = saved;
        l.rlim_cur = (rlim_t) lowest + 1; /* room for one */
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &l));
        send_these_fds(fd, "{\"method\":\"io.tsmd.Test.PassFd\",\"parameters\":{\"fd\":1}}", fds, 2);
        reply = raw_recv(fd);
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
        ASSERT_NOT_NULL(reply);
        ASSERT_STREQ(reply, "{\"error\":\"io.tsmd.System\",\"parameters\":{\"errno\":24,\"errnoName\":\"EMFILE\"}}");
        /* The connection goes on, and with room both come. */
        send_these_fds(fd, "{\"method\":\"io.tsmd.Test.PassFd\",\"parameters\":{\"fd\":1}}", fds, 2);
        ASSERT_NOT_NULL(strstr(raw_recv_some(fd), "\"fd\":0"));
        close(fds[0]);
        close(fds[1]);
        close(fd);
        server_stop();
}

TEST(client_sees_disconnect) {
        VarlinkClient *c, *c2;
        Collected col = {};

        server_start(NULL);
        c = client_new();
        c2 = client_new();
        ASSERT_OK(varlink_client_call_async(c, "io.tsmd.Test.Defer", parse("{\"id\":7}"), 0, collect, &col));
        while (varlink_client_process(c) > 0)
                ;
        ASSERT_TRUE(wait_pending_calls(c2, 1));
        varlink_client_free(c2);
        server_stop();
        /* The pending call fails with a local, named error; the client does not hang. */
        while (varlink_client_get_n_pending(c) > 0) {
                struct pollfd p = { .fd = varlink_client_get_fd(c), .events = POLLIN };
                ASSERT_EQ(poll(&p, 1, 10000), 1);
                if (varlink_client_process(c) < 0)
                        break;
        }
        ASSERT_EQ(col.n, 1);
        ASSERT_STREQ(col.replies[0], VARLINK_ERROR_DISCONNECTED "null");
        ASSERT_FALSE(varlink_client_is_connected(c));
        varlink_client_free(c);
}

TEST_MAIN();
