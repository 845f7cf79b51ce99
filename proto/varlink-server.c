/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Varlink server: connections, dispatch and in-order replies; its listeners are
 * varlink-listen.c's. Runs in: worker. */

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/queue.h>

#include "escape.h"
#include "event-util.h"
#include "fd-closer.h"
#include "idle-flush.h"
#include "json-run.h"
#include "json-util.h"
#include "json-write.h"
#include "log.h"
#include "varlink-errors.h"
#include "varlink-idl.h"
#include "varlink-server-internal.h"
#include "varlink-service.h"

/* Messages handled per wake-up of one connection, so a client pipelining thousands of calls
 * cannot starve the others. */
#define PROCESS_BATCH 32
/* ... and bytes: a wake-up that parsed this much ends there (a 16 MiB message is tens of ms of
 * parsing), and the connection's next message waits for the next round of the loop. */
#define PROCESS_BYTES (256U * 1024U)
/* ... and over all connections, a round of the loop parses no large message (PROCESS_BYTES or
 * more buffered) once it parsed this much: every ready connection could hold one of 16 MiB,
 * json-c takes a good part of a second for each on a busy machine, and the monitor deems a
 * worker silent for 15 s dead. Small messages go on. */
#define ROUND_BYTES (4U * 1024U * 1024U)

/* What the buffer replies are serialized into keeps between replies: every guest request's fits,
 * and what a rare large one (an audit page) grew it to is freed at the next reply. */
#define REPLY_TEXT_KEEP (64U * 1024U)

struct Interface {
        VarlinkInterface *idl;
};

struct Method {
        char *name; /* "interface.Method" */
        const VarlinkSymbol *symbol;
        VarlinkMethodFunc func;
        size_t max_reply_size; /* see varlink_server_set_reply_bound(); 0: not bounded */
        unsigned max_reply_fds;
};

typedef struct Output {
        char *text;
        size_t len;
        bool error; /* a final answer that is an error */
        int *fds;
        size_t n_fds;
        STAILQ_ENTRY(Output) entry;
} Output;

/* A final reply queued on the stream, waiting to be written in full (varlink_call_set_sent_callback()). */
typedef struct SentWaiter {
        uint64_t mark; /* the stream's output offset at the end of the reply */
        int result;    /* what f gets once mark is reached */
        VarlinkSentFunc f;
        void *userdata;
        STAILQ_ENTRY(SentWaiter) entry;
} SentWaiter;

struct VarlinkCall {
        unsigned n_ref;
        VarlinkConn *conn;
        json_object *message; /* NULL once answered and its handler returned */
        size_t message_size;  /* its bytes, counted in conn->held_input while it is held */
        json_object *method_name; /* holds method alive without the message */
        const char *method;
        json_object *parameters; /* borrowed from message */
        unsigned flags;
        const VarlinkSymbol *symbol;
        /* The reply bound it was let run with: its answer keeps that room should the limits
         * be lowered meanwhile (see varlink_server_set_reply_bound()). */
        size_t reply_room;
        unsigned reply_room_fds;

        int *fds;
        size_t n_fds;
        int *out_fds;
        size_t n_out_fds, allocated_out_fds;

        STAILQ_HEAD(, Output) outputs; /* replies waiting for earlier calls to finish */
        VarlinkReplyInterceptor interceptor;
        void *interceptor_userdata;
        void *userdata;
        VarlinkSentFunc sent;
        void *sent_userdata;
        bool answered;
        bool intercepted; /* answered, but the interceptor has not released it yet */
        bool queued;
        bool in_handler;
        bool answering_failure; /* call_answer_failed() tries io.tsmd.System */
        bool answer_failed;     /* in its handler: answered io.tsmd.System when it returns */
        bool streaming; /* a "more" call not finished yet: nothing after it is read */
        /* Its handler runs later (varlink_call_postpone()): its fds wait with it, counted in
         * conn->held_fds as held_fds of them. */
        bool postponed;
        size_t held_fds;
        TAILQ_ENTRY(VarlinkCall) entry;
};

static void conn_apply_limits(VarlinkConn *c);
static void conn_free_events(VarlinkConn *c);
static void conn_schedule(VarlinkConn *c);
static void conn_update_timeout(VarlinkConn *c);
static void conn_watch_hangup(VarlinkConn *c);
static void conn_end_of_input(VarlinkConn *c);
static void conn_close_after_answers(VarlinkConn *c);
static bool fd_hung_up(int fd);
static int call_flush_outputs(VarlinkCall *call);
static void server_update_timeouts(VarlinkServer *s);
static void on_write_flush(void *userdata);

/* ---- server ---------------------------------------------------------------------------- */

int varlink_server_new(struct event_base *base, VarlinkServer **ret) {
        _cleanup_(varlink_server_freep) VarlinkServer *s = NULL;
        int r;

        assert(base);
        assert(ret);

        s = new0(VarlinkServer, 1);
        if (!s)
                return -ENOMEM;
        s->base = base;
        s->limits = VARLINK_LIMITS_DEFAULT;
        server_update_timeouts(s);
        varlink_server_update_fd_budget(s);
        TAILQ_INIT(&s->conns);
        TAILQ_INIT(&s->write_queue);
        r = idle_flush_new(base, on_write_flush, s, &s->write_flush);
        if (r < 0)
                return r;

        r = varlink_server_set_info(s, "tsmd", "tsmd", "0", "");
        if (r < 0)
                return r;

        r = varlink_service_register(s);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(s);
        return 0;
}

VarlinkServer *varlink_server_free(VarlinkServer *s) {
        if (!s)
                return NULL;

        varlink_server_shutdown(s);

        for (size_t i = 0; i < s->n_methods; i++)
                free(s->methods[i].name);
        free(s->methods);
        for (size_t i = 0; i < s->n_interfaces; i++)
                varlink_interface_free(s->interfaces[i].idl);
        free(s->interfaces);
        free(s->listeners);
        free(s->uids);
        if (s->accept_resume)
                event_free(s->accept_resume);
        if (s->trim)
                event_free(s->trim);
        idle_flush_free(s->write_flush);
        json_text_done(&s->reply_text);
        free(s->vendor);
        free(s->product);
        free(s->version);
        free(s->url);
        return mfree(s);
}

static int strdup_replace(char **p, const char *s) {
        char *t = strdup(s ?: "");
        if (!t)
                return -ENOMEM;
        free(*p);
        *p = t;
        return 0;
}

int varlink_server_set_info(VarlinkServer *s, const char *vendor, const char *product,
                            const char *version, const char *url) {
        assert_return(s, -EINVAL);

        if (strdup_replace(&s->vendor, vendor) < 0 || strdup_replace(&s->product, product) < 0 ||
            strdup_replace(&s->version, version) < 0 || strdup_replace(&s->url, url) < 0)
                return -ENOMEM;
        return 0;
}

void varlink_server_get_info(const VarlinkServer *s, const char **vendor, const char **product,
                             const char **version, const char **url) {
        *vendor = s->vendor;
        *product = s->product;
        *version = s->version;
        *url = s->url;
}

int varlink_server_set_limits(VarlinkServer *s, const VarlinkLimits *l) {
        VarlinkConn *c;

        assert_return(s, -EINVAL);
        assert_return(l, -EINVAL);

        /* Each limit must allow at least the smallest useful value. */
        if (l->max_message_size < VARLINK_MAX_MESSAGE_SIZE_MIN || l->max_output_size < l->max_message_size ||
            l->max_depth < 2 || l->max_fds_per_message > VARLINK_FDS_PER_MESSAGE_MAX || l->max_pending_calls < 1 ||
            l->max_connections < 1 || l->max_connections_per_uid < 1 || l->max_admin_connections < 1 ||
            l->max_buffered_per_uid < MAX(l->max_message_size, l->max_output_size) ||
            l->max_buffered < MAX(l->max_message_size, l->max_output_size) ||
            l->max_fds_per_uid < l->max_fds_per_message || (l->max_fds > 0 && l->max_fds < l->max_fds_per_message))
                return -EINVAL;

        s->limits = *l;
        server_update_timeouts(s);
        varlink_server_update_fd_budget(s);

        /* An admin who lowers a limit to stop a client means every client, not the next ones. */
        TAILQ_FOREACH(c, &s->conns, entry)
                conn_apply_limits(c);
        return 0;
}

/* A connection's own copies of the limits: its stream's (see varlink_stream_set_limits(): the
 * message under way finishes under the old size and JSON limits) and its idle timer. The rest
 * it reads from the server's each time. */
static void conn_apply_limits(VarlinkConn *c) {
        VarlinkServer *s = c->server;
        int r;

        if (!c->connected || c->failing)
                return;
        r = varlink_stream_set_limits(c->stream, &s->limits);
        if (r < 0) {
                /* Rather than let it go on under limits the admin just replaced. */
                log_warning_errno(r, "Cannot apply the new limits to a connection of uid %u, dropping it: %m",
                                  c->peer.uid);
                conn_disconnect_soon(c);
                return;
        }
        /* One that has not called yet gets the new IdleTimeoutSec=, counted from now. */
        if (!c->called && !c->closing) {
                if (s->idle_timeout)
                        (void) event_add(c->ev_idle, s->idle_timeout);
                else
                        (void) event_del(c->ev_idle);
        }
        /* A raised MaxPendingCalls= frees slots for one paused at the old one. */
        if (c->read_paused && c->n_calls < s->limits.max_pending_calls && c->n_streaming == 0 &&
            c->n_postponed == 0)
                conn_schedule(c);
}

static const struct timeval *common_timeout(VarlinkServer *s, unsigned sec, struct timeval *tv) {
        const struct timeval *common;

        if (sec == 0)
                return NULL;
        *tv = (struct timeval){ .tv_sec = sec };
        /* libevent has 256 slots per base (reloads with ever new values could use them up);
         * without one, the timers go into the heap: slower, still correct. */
        common = event_base_init_common_timeout(s->base, tv);
        return common ?: tv;
}

static void server_update_timeouts(VarlinkServer *s) {
        s->message_timeout = common_timeout(s, s->limits.message_timeout_sec, &s->message_tv);
        s->idle_timeout = common_timeout(s, s->limits.idle_timeout_sec, &s->idle_tv);
}

const VarlinkLimits *varlink_server_get_limits(const VarlinkServer *s) {
        return &s->limits;
}

uint64_t varlink_server_get_n_timed_out(const VarlinkServer *s) {
        return s->n_timed_out;
}

void varlink_server_set_userdata(VarlinkServer *s, void *userdata) {
        s->userdata = userdata;
}

void *varlink_server_get_userdata(const VarlinkServer *s) {
        return s->userdata;
}

void varlink_server_set_connection_callbacks(VarlinkServer *s, VarlinkConnectFunc on_connect,
                                             VarlinkDisconnectFunc on_disconnect) {
        s->on_connect = on_connect;
        s->on_disconnect = on_disconnect;
}

void varlink_server_set_refusal_callback(VarlinkServer *s, VarlinkRefusalFunc on_refusal) {
        s->on_refusal = on_refusal;
}

void varlink_server_set_holds_callback(VarlinkServer *s, VarlinkConnHoldsFunc holds) {
        s->holds = holds;
}

void varlink_server_refused(VarlinkServer *s, const struct ucred *peer, VarlinkConn *c, VarlinkCall *call,
                            const char *error) {
        if (s->on_refusal)
                s->on_refusal(s, peer, c, call, error, s->userdata);
}

/* Before the answer is sent, so that the callback can hold it back. */
static void call_refused(VarlinkCall *call, const char *error) {
        varlink_server_refused(call->conn->server, &call->conn->peer, call->conn, call, error);
}

unsigned varlink_server_get_n_connections(const VarlinkServer *s) {
        return s->n_conns;
}

size_t varlink_server_get_n_interfaces(const VarlinkServer *s) {
        return s->n_interfaces;
}

const VarlinkInterface *varlink_server_get_interface(const VarlinkServer *s, size_t i) {
        return i < s->n_interfaces ? s->interfaces[i].idl : NULL;
}

static const VarlinkInterface *find_interface(const VarlinkServer *s, const char *name, size_t len) {
        for (size_t i = 0; i < s->n_interfaces; i++) {
                const char *n = varlink_interface_get_name(s->interfaces[i].idl);

                if (strlen(n) == len && strneq(n, name, len))
                        return s->interfaces[i].idl;
        }
        return NULL;
}

const VarlinkInterface *varlink_server_find_interface(const VarlinkServer *s, const char *name) {
        return find_interface(s, name, strlen(name));
}

int varlink_server_add_interface(VarlinkServer *s, const char *idl) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = NULL;
        unsigned line = 0, column = 0;
        int r;

        assert_return(s, -EINVAL);
        assert_return(idl, -EINVAL);

        r = varlink_interface_parse(idl, &i, &line, &column);
        if (r < 0)
                return log_debug_errno(r, "Failed to parse interface description at %u:%u: %m",
                                       line, column);

        if (varlink_server_find_interface(s, varlink_interface_get_name(i)))
                return -EEXIST;

        if (!GREEDY_REALLOC(s->interfaces, s->allocated_interfaces, s->n_interfaces + 1))
                return -ENOMEM;
        s->interfaces[s->n_interfaces++] = (Interface){ .idl = TAKE_PTR(i) };
        return 0;
}

static Method *find_method(const VarlinkServer *s, const char *name) {
        for (size_t i = 0; i < s->n_methods; i++)
                if (streq(s->methods[i].name, name))
                        return &s->methods[i];
        return NULL;
}

int varlink_server_bind_method(VarlinkServer *s, const char *method, VarlinkMethodFunc func) {
        const VarlinkInterface *iface;
        const VarlinkSymbol *symbol;
        const char *dot;
        char *name;

        assert_return(s, -EINVAL);
        assert_return(func, -EINVAL);

        if (!varlink_method_name_valid(method, &dot))
                return -EINVAL;
        iface = find_interface(s, method, (size_t) (dot - method));
        if (!iface)
                return -ENOENT;
        symbol = varlink_interface_find_method(iface, dot + 1);
        if (!symbol)
                return -ENOENT;
        if (find_method(s, method))
                return -EEXIST;

        name = strdup(method);
        if (!name)
                return -ENOMEM;
        if (!GREEDY_REALLOC(s->methods, s->allocated_methods, s->n_methods + 1)) {
                free(name);
                return -ENOMEM;
        }
        s->methods[s->n_methods++] = (Method){ .name = name, .symbol = symbol, .func = func };
        return 0;
}

int varlink_server_set_reply_bound(VarlinkServer *s, const char *method, size_t max_reply_size,
                                   unsigned max_reply_fds) {
        Method *m;

        assert_return(s, -EINVAL);
        assert_return(method, -EINVAL);

        m = find_method(s, method);
        if (!m)
                return -ENOENT;
        m->max_reply_size = max_reply_size;
        m->max_reply_fds = max_reply_fds;
        return 0;
}

const char *varlink_server_find_unfit_method(const VarlinkServer *s, const VarlinkLimits *l) {
        const Method *unfit = NULL;

        for (size_t i = 0; i < s->n_methods; i++) {
                const Method *m = &s->methods[i];

                if ((m->max_reply_size > l->max_message_size || m->max_reply_fds > l->max_fds_per_message) &&
                    (!unfit || m->max_reply_size < unfit->max_reply_size))
                        unfit = m;
        }
        return unfit ? unfit->name : NULL;
}

int varlink_server_check_complete(VarlinkServer *s, const char **ret_missing) {
        static char missing[256];

        for (size_t i = 0; i < s->n_interfaces; i++) {
                const VarlinkInterface *iface = s->interfaces[i].idl;

                for (size_t m = 0; m < varlink_interface_get_n_methods(iface); m++) {
                        const VarlinkSymbol *sym = varlink_interface_get_method_by_index(iface, m);

                        (void) snprintf(missing, sizeof(missing), "%s.%s",
                                        varlink_interface_get_name(iface),
                                        varlink_symbol_get_name(sym));
                        if (!find_method(s, missing)) {
                                if (ret_missing)
                                        *ret_missing = missing;
                                return -ENOENT;
                        }
                }
        }
        return 0;
}

/* ---- calls ----------------------------------------------------------------------------- */

static void output_free(Output *o) {
        close_many(o->fds, o->n_fds);
        free(o->fds);
        free(o->text);
        free(o);
}

static void call_sent_done(VarlinkCall *call, int result) {
        VarlinkSentFunc f = call->sent;

        call->sent = NULL;
        if (f)
                f(result, call->sent_userdata);
}

/* The final answer of call was queued on the stream just now (its last byte is the stream's
 * last): its sent callback waits for the stream to get there. */
static void call_sent_queued(VarlinkCall *call, bool error) {
        VarlinkConn *c = call->conn;
        SentWaiter *w;

        if (!call->sent)
                return;
        if (error) {
                call_sent_done(call, -ECANCELED);
                return;
        }
        w = new0(SentWaiter, 1);
        if (!w) {
                /* It would never be told otherwise; the reply may still reach the peer. */
                call_sent_done(call, -ENOTCONN);
                return;
        }
        *w = (SentWaiter){ .mark = varlink_stream_get_output_offset(c->stream) + varlink_stream_get_output_size(c->stream),
                           .f = TAKE_PTR(call->sent), .userdata = call->sent_userdata };
        STAILQ_INSERT_TAIL(&c->sent_waiters, w, entry);
}

/* After a write: tells the waiters whose replies are out. */
static void conn_sent_progress(VarlinkConn *c) {
        SentWaiter *w;

        while (c->connected && c->stream && (w = STAILQ_FIRST(&c->sent_waiters)) &&
               w->mark <= varlink_stream_get_output_offset(c->stream)) {
                STAILQ_REMOVE_HEAD(&c->sent_waiters, entry);
                w->f(w->result, w->userdata);
                free(w);
        }
}

static void conn_sent_fail_all(VarlinkConn *c) {
        SentWaiter *w;

        while ((w = STAILQ_FIRST(&c->sent_waiters))) {
                STAILQ_REMOVE_HEAD(&c->sent_waiters, entry);
                w->f(-ENOTCONN, w->userdata);
                free(w);
        }
}

void varlink_call_set_sent_callback(VarlinkCall *call, VarlinkSentFunc f, void *userdata) {
        call->sent = f;
        call->sent_userdata = userdata;
}

VarlinkCall *varlink_call_ref(VarlinkCall *call) {
        if (call)
                call->n_ref++;
        return call;
}

/* The call's handler is not to run any more: its fds are no longer counted as held, and the
 * calls its client sent after it may be dispatched (from the next round: a postponed call
 * that runs now runs first). */
static void call_unpostpone(VarlinkCall *call) {
        VarlinkConn *c = call->conn;

        if (!call->postponed)
                return;
        call->postponed = false;
        c->held_fds -= call->held_fds;
        call->held_fds = 0;
        assert(c->n_postponed > 0);
        /* A call may outlive its connection (and that the server). */
        if (--c->n_postponed == 0 && c->connected && c->read_paused && c->n_streaming == 0 &&
            c->n_calls < c->server->limits.max_pending_calls)
                conn_schedule(c);
}

/* Drops the message, and its bytes from what the connection is counted for. */
static void call_put_message(VarlinkCall *call) {
        VarlinkConn *c = call->conn;

        call->message = (json_object_put(call->message), NULL);
        if (call->message_size == 0)
                return;
        c->held_input -= call->message_size;
        call->message_size = 0;
        /* A call may outlive its connection (and that the server): nothing is counted then. */
        if (c->connected)
                (void) conn_account(c);
}

VarlinkCall *varlink_call_unref(VarlinkCall *call) {
        Output *o;

        if (!call)
                return NULL;
        assert(call->n_ref > 0);
        if (--call->n_ref > 0)
                return NULL;

        while ((o = STAILQ_FIRST(&call->outputs))) {
                STAILQ_REMOVE_HEAD(&call->outputs, entry);
                call->conn->held_output -= o->len + 1;
                output_free(o);
        }
        call_sent_done(call, -ENOTCONN);
        call_unpostpone(call);
        fd_closer_close_many_for(call->fds, call->n_fds, call->conn->peer.uid);
        free(call->fds);
        close_many(call->out_fds, call->n_out_fds);
        free(call->out_fds);
        call_put_message(call);
        json_object_put(call->method_name);
        varlink_conn_unref(call->conn);
        return mfree(call);
}

VarlinkConn *varlink_call_get_conn(const VarlinkCall *call) {
        return call->conn;
}

const char *varlink_call_get_method(const VarlinkCall *call) {
        return call->method;
}

bool varlink_call_method_is_declared(const VarlinkCall *call) {
        return call->symbol;
}

unsigned varlink_call_get_flags(const VarlinkCall *call) {
        return call->flags;
}

bool varlink_call_is_answered(const VarlinkCall *call) {
        return call->answered;
}

/* What came with a call is its handler's while it runs, which takes the fds it keeps; once the
 * call is answered, its message goes too. A call may wait in the queue long after that,
 * behind a slow one, and must not hold a client's fds or a large message meanwhile. */
static void call_drop_input(VarlinkCall *call) {
        if (call->in_handler || call->postponed)
                return;
        /* SECURITY: a client's fd may be of a file system it serves, whose close waits on it
         * (fd-closer.h). */
        fd_closer_close_many_for(call->fds, call->n_fds, call->conn->peer.uid);
        call->n_fds = 0;
        if (call->answered && !call->intercepted)
                call_put_message(call);
}

static bool call_is_head(const VarlinkCall *call) {
        return call->queued && TAILQ_FIRST(&call->conn->calls) == call;
}

/* Pops answered calls off the head of the queue; their successors may now send. */
static void conn_complete_calls(VarlinkConn *c) {
        VarlinkCall *call;
        int r;

        while ((call = TAILQ_FIRST(&c->calls)) && call->answered && !call->intercepted && STAILQ_EMPTY(&call->outputs)) {
                TAILQ_REMOVE(&c->calls, call, entry);
                call->queued = false;
                c->n_calls--;
                varlink_call_unref(call);

                call = TAILQ_FIRST(&c->calls);
                r = call ? call_flush_outputs(call) : 0;
                if (r < 0) {
                        log_debug_errno(r, "Failed to queue held replies, disconnecting: %m");
                        conn_disconnect_soon(c);
                        return;
                }
        }

        if (TAILQ_EMPTY(&c->calls))
                c->idle_since = now_monotonic_usec();

        /* A connection marked for closing goes once its last reply has left. */
        if (c->closing && TAILQ_EMPTY(&c->calls)) {
                if (varlink_stream_get_output_size(c->stream) == 0)
                        conn_disconnect_soon(c);
                return;
        }

        /* A slot for another call is free: take in what the client queued meanwhile. */
        if (c->read_paused && c->n_calls < c->server->limits.max_pending_calls && c->n_streaming == 0 &&
            c->n_postponed == 0)
                conn_schedule(c);
}

/* Reads nothing more from a connection that is going: its socket may stay readable until
 * the last reply is out, and a level-triggered read event would spin. */
static void conn_set_closing(VarlinkConn *c) {
        c->closing = true;
        (void) event_del(c->ev_read);
        conn_update_timeout(c);
}

static void conn_write_now(VarlinkConn *c) {
        int r;

        if (!c->connected || c->failing)
                return;

        /* Most replies fit into the socket buffer and leave without waiting for POLLOUT. */
        r = varlink_stream_write(c->stream);
        (void) conn_account(c);
        if (r < 0) {
                log_debug_errno(r, "Failed to write to client: %m");
                conn_disconnect(c);
                return;
        }
        conn_sent_progress(c);
        if (!c->connected || c->failing)
                return;
        if (varlink_stream_get_output_size(c->stream) > 0)
                (void) event_add(c->ev_write, NULL);
        else if (c->closing && TAILQ_EMPTY(&c->calls))
                conn_disconnect(c);
}

static void on_write_flush(void *userdata) {
        VarlinkServer *s = userdata;
        VarlinkConn *c;

        while ((c = TAILQ_FIRST(&s->write_queue))) {
                TAILQ_REMOVE(&s->write_queue, c, write_entry);
                c->write_queued = false;
                conn_write_now(c);
                varlink_conn_unref(c);
        }
}

static void conn_want_write(VarlinkConn *c) {
        VarlinkServer *s = c->server;

        if (!c->connected || c->failing || c->write_queued)
                return;
        c->write_queued = true;
        varlink_conn_ref(c); /* not inside TAILQ_INSERT_TAIL(), which uses its arguments twice */
        TAILQ_INSERT_TAIL(&s->write_queue, c, write_entry);
        idle_flush_schedule(s->write_flush);
}

static int call_flush_outputs(VarlinkCall *call) {
        VarlinkConn *c = call->conn;
        Output *o;
        bool any = false, error = false;
        int r;

        while ((o = STAILQ_FIRST(&call->outputs))) {
                STAILQ_REMOVE_HEAD(&call->outputs, entry);
                c->held_output -= o->len + 1;
                error = o->error;
                /* Admitted against MaxOutputSize=, MaxMessageSize= and MaxFdsPerMessage= when it
                 * was held (call_send()): what queued meanwhile ahead of it (the earlier call's
                 * answer) or a reload does not take it back from a client that reads. */
                r = varlink_stream_enqueue_text_full(c->stream, o->text, o->len, TAKE_PTR(o->fds), o->n_fds,
                                                     SIZE_MAX, UINT_MAX);
                o->n_fds = 0;
                output_free(o);
                if (r < 0)
                        return r;
                any = true;
        }
        /* The last output of an answered call is its final answer. */
        if (any && call->answered && !call->intercepted)
                call_sent_queued(call, error);
        if (any)
                conn_want_write(c);
        return 0;
}

#if VARLINK_VALIDATE_REPLIES
static void validate_reply(VarlinkCall *call, const char *error, json_object *parameters) {
        _cleanup_free_ char *bad = NULL;
        int r;

        /* Nothing reaches a departed caller; and a call may outlive its server, whose
         * interfaces its symbol points into. */
        if (!call->conn->connected)
                return;
        if (!error)
                r = varlink_method_validate_output(call->symbol, parameters, &bad);
        else {
                const char *dot = strrchr(error, '.');
                const VarlinkInterface *iface;
                const VarlinkSymbol *e;

                if (!dot)
                        return;
                iface = find_interface(call->conn->server, error, (size_t) (dot - error));
                e = iface ? varlink_interface_find_error(iface, dot + 1) : NULL;
                if (!e) {
                        log_error("Reply to %s " VARLINK_REPLY_MISMATCH ": no registered interface declares error %s.",
                                  call->method, error);
                        return;
                }
                r = varlink_error_validate(e, parameters, &bad);
        }
        if (r < 0)
                log_error("Reply to %s " VARLINK_REPLY_MISMATCH ": field '%s'.", call->method, strna(bad));
}

/* Whether text[0..len), a message as json-c wrote it, is UTF-8, as JSON must be: json-c writes
 * a string's bytes as they are, and a strict peer refuses the whole message (string types in
 * the IDL are JSON strings). */
static bool text_is_utf8(const char *text, size_t len) {
        const unsigned char *p = (const unsigned char *) text, *end = p + len;

        for (;;) {
                size_t n;

                p = json_run_ascii(p, end);
                if (p >= end)
                        return true;
                n = utf8_sequence_len(p);
                if (n == 0)
                        return false;
                p += n;
        }
}
#endif

/* No more input for this call: it is answered. */
static void call_stop_reading(VarlinkCall *call) {
        call_unpostpone(call);
        call_drop_input(call);
        if (call->streaming) {
                call->streaming = false;
                call->conn->n_streaming--;
        }
}

/* A reply beyond the connection's MaxMessageSize=: nothing of it was written, so the stream is
 * intact, and the caller learns why in its place rather than losing its connection (the call
 * itself ran, and its record says how it ended). Recorded as a refusal. */
static int reply_too_large(VarlinkCall *call, size_t size, json_object **m) {
        VarlinkConn *c = call->conn;
        json_object *p = json_object_new_object(), *e;
        int r;

        log_debug("Reply to %s of %zu bytes exceeds MaxMessageSize=%zu, answering %s instead.", call->method,
                  size, varlink_stream_get_max_message_size(c->stream), VARLINK_ERROR_REPLY_TOO_LARGE);
        if (!p || json_object_add(p, "size", json_object_new_int64((int64_t) size)) < 0 ||
            json_object_add(p, "maxMessageSize",
                            json_object_new_int64((int64_t) varlink_stream_get_max_message_size(c->stream))) < 0) {
                json_object_put(p);
                return -ENOMEM;
        }
        r = varlink_message_new_error(VARLINK_ERROR_REPLY_TOO_LARGE, p, &e);
        if (r < 0)
                return r;
        json_object_put(*m);
        *m = e;
        varlink_server_refused(c->server, &c->peer, c, NULL, VARLINK_ERROR_REPLY_TOO_LARGE);
        return 0;
}

/* Nothing of a reply could be built or queued (out of memory): its client would wait for it for
 * ever, or, a final answer being given, take the next call's for it. It loses its connection
 * instead. */
static int call_send_failed(VarlinkCall *call, int error) {
        log_warning_errno(error, "Cannot build or queue a reply to %s, dropping the connection: %m", call->method);
        conn_disconnect_soon(call->conn);
        return error;
}

/* No answer to call could be built (out of memory). In its handler, io.tsmd.System answers it
 * when the handler returns, whatever it returns (one that answers through a callback may not
 * pass the failure on). Answered later, io.tsmd.System is tried at once, the smallest answer (it
 * ends a "more" call); only if that cannot be built either does the connection go, as for an
 * answer that cannot be queued: its client must not wait for ever, nor lose everything its
 * connection holds to one failed allocation. */
static int call_answer_failed(VarlinkCall *call, int error) {
        int r;

        if (!call || call->answered || call->answering_failure)
                return error;
        if (call->in_handler) {
                call->answer_failed = true;
                return error;
        }
        call->answering_failure = true;
        r = varlink_call_error_errno(call, error);
        call->answering_failure = false;
        if (r < 0 && !call->answered && !call->conn->failing)
                return call_send_failed(call, error);
        return error;
}

/* A reply behind an earlier call's answer: held with its call until that answer lets it go
 * (call_flush_outputs()). Takes fds, closed on failure; error: a final answer that is an error. */
static int call_enqueue_held(VarlinkCall *call, const char *text, size_t len, int *fds, size_t n_fds, bool error) {
        _cleanup_free_ int *owned_fds = fds;
        VarlinkConn *c = call->conn;
        Output *o;
        int r;

        /* Waiting for an earlier call counts against what a slow reader may have queued,
         * with what is queued already: admitted here, it is not checked again when the
         * earlier call's answer lets it go (call_flush_outputs()). */
        if (varlink_stream_get_output_size(c->stream) + c->held_output + len + 1 >
            MAX(c->server->limits.max_output_size, call->reply_room)) {
                log_debug("Dropping client connection (%s): a reply of %zu bytes to %s would wait "
                          "behind %zu queued and %zu held.",
                          VARLINK_REFUSED_REPLIES_NOT_READ, len + 1, call->method,
                          varlink_stream_get_output_size(c->stream), c->held_output);
                close_many(fds, n_fds);
                varlink_server_refused(c->server, &c->peer, c, NULL, VARLINK_REFUSED_REPLIES_NOT_READ);
                conn_disconnect_soon(c);
                return -ENOBUFS;
        }
        o = new0(Output, 1);
        if (!o || !(o->text = strndup(text, len))) {
                free(o);
                close_many(fds, n_fds);
                return call_send_failed(call, -ENOMEM);
        }
        o->len = len;
        o->error = error;
        o->fds = TAKE_PTR(owned_fds);
        o->n_fds = n_fds;
        STAILQ_INSERT_TAIL(&call->outputs, o, entry);
        c->held_output += len + 1;
        r = conn_account(c);
        if (r < 0) {
                varlink_server_refused(c->server, &c->peer, c, NULL, conn_account_refusal(r));
                conn_disconnect_soon(c);
                return -ENOBUFS;
        }
        return 0;
}

static int call_send(VarlinkCall *call, json_object *message, bool final) {
        _cleanup_(json_object_putp) json_object *m = message;
        _cleanup_free_ int *fds = NULL;
        VarlinkConn *c = call->conn;
        size_t n_fds = 0;
        const char *text;
        size_t len;
        int r;

        if (final)
                call->answered = true;

        /* The final answer goes to the interceptor first, which releases it (or another one)
         * when it is done with it (the daemon writes its audit record there). */
        if (final && call->interceptor) {
                VarlinkReplyInterceptor f = call->interceptor;

                call->interceptor = NULL;
                call->intercepted = true;
                f(call, TAKE_PTR(m), call->interceptor_userdata);
                return 0;
        }
        if (final)
                call_stop_reading(call);

        /* A oneway caller asked for silence; a departed one cannot hear. */
        if ((call->flags & VARLINK_CALL_ONEWAY) || !c->connected || c->failing) {
                close_many(call->out_fds, call->n_out_fds);
                call->n_out_fds = 0;
                if (final)
                        call_sent_done(call, -ENOTCONN);
                if (final && c->connected && !c->failing)
                        conn_complete_calls(c);
                return c->connected && !c->failing ? 0 : -ENOTCONN;
        }

        fds = TAKE_PTR(call->out_fds);
        n_fds = call->n_out_fds;
        call->n_out_fds = call->allocated_out_fds = 0;

        /* Whatever a large reply before this one left beyond the kept size goes first. */
        json_text_trim(&c->server->reply_text, REPLY_TEXT_KEEP);
        /* No message: one varlink_call_release() was to pass on could not be built. */
        r = m ? json_write(m, &c->server->reply_text) : -ENOMEM;
        if (r < 0) {
                close_many(fds, n_fds);
                return call_send_failed(call, r);
        }
        text = c->server->reply_text.data;
        len = c->server->reply_text.len;
#if VARLINK_VALIDATE_REPLIES
        if (!text_is_utf8(text, len))
                log_error("Reply to %s " VARLINK_REPLY_MISMATCH ": not UTF-8.", call->method);
#endif
        if (len + 1 > MAX(varlink_stream_get_max_message_size(c->stream), call->reply_room)) {
                close_many(fds, n_fds);
                fds = mfree(fds);
                n_fds = 0;
                r = reply_too_large(call, len + 1, &m);
                if (r < 0)
                        return call_send_failed(call, r);
                /* A notification so replaced ends its call as a final answer would (through the
                 * interceptor, if any), and its sender learns that the call is over. */
                if (!final) {
                        r = call_send(call, TAKE_PTR(m), true);
                        return r < 0 ? r : -EMSGSIZE;
                }
                r = json_write(m, &c->server->reply_text);
                if (r < 0)
                        return call_send_failed(call, r);
                text = c->server->reply_text.data;
                len = c->server->reply_text.len;
        }

        if (call_is_head(call)) {
                r = varlink_stream_enqueue_text_full(c->stream, text, len, TAKE_PTR(fds), n_fds, call->reply_room,
                                                     call->reply_room_fds);
                if (r < 0) {
                        /* A client that does not read its replies loses its connection. */
                        log_debug_errno(r, "Failed to queue reply: %m");
                        if (r == -ENOBUFS)
                                varlink_server_refused(c->server, &c->peer, c, NULL, VARLINK_REFUSED_REPLIES_NOT_READ);
                        conn_disconnect_soon(c);
                        return r;
                }
                if (final)
                        call_sent_queued(call, json_object_object_get_ex(m, "error", NULL));
                conn_want_write(c);
                r = conn_account(c);
                if (r < 0) {
                        varlink_server_refused(c->server, &c->peer, c, NULL, conn_account_refusal(r));
                        conn_disconnect_soon(c);
                        return -ENOBUFS;
                }
        } else {
                r = call_enqueue_held(call, text, len, TAKE_PTR(fds), n_fds,
                                      final && json_object_object_get_ex(m, "error", NULL));
                if (r < 0)
                        return r;
        }

        if (final && c->connected)
                conn_complete_calls(c);
        return 0;
}

int varlink_call_postpone(VarlinkCall *call) {
        assert_return(call, -EINVAL);
        assert_return(call->in_handler && !call->answered && !call->postponed, -EINVAL);

        call->postponed = true;
        call->held_fds = call->n_fds;
        call->conn->held_fds += call->held_fds;
        call->conn->n_postponed++;
        return 0;
}

bool varlink_call_is_postponed(const VarlinkCall *call) {
        return call && call->postponed;
}

int varlink_call_run(VarlinkCall *call, VarlinkMethodFunc func, void *userdata) {
        _cleanup_(varlink_call_unrefp) VarlinkCall *ref = NULL;
        VarlinkConn *c;
        int r;

        assert_return(call, -EINVAL);
        assert_return(func, -EINVAL);
        assert_return(call->postponed && !call->answered && !call->in_handler, -EINVAL);

        ref = varlink_call_ref(call);
        c = call->conn;
        call_unpostpone(call);
        /* As for the calls behind one that failed: nothing runs for a client being dropped. */
        if (!c->connected || c->failing) {
                call_drop_input(call);
                return -ENOTCONN;
        }

        call->in_handler = true;
        r = func(call, call->parameters, userdata);
        call->in_handler = false;
        if ((r < 0 || call->answer_failed) && !call->answered) {
                log_debug_errno(r, "Method %s failed: %m", call->method);
                (void) varlink_call_error_errno(call, r < 0 ? r : -ENOMEM);
        }
        call_drop_input(call);
        if (c->connected)
                (void) conn_account(c);
        return 0;
}

void varlink_call_set_interceptor(VarlinkCall *call, VarlinkReplyInterceptor f, void *userdata) {
        call->interceptor = f;
        call->interceptor_userdata = userdata;
}

int varlink_call_release(VarlinkCall *call, json_object *message) {
        call->intercepted = false;
        if (json_object_object_get_ex(message, "error", NULL)) {
                /* Never send fds along with an error, as sd-varlink. */
                close_many(call->out_fds, call->n_out_fds);
                call->n_out_fds = 0;
        }
        return call_send(call, message, true);
}

void varlink_call_set_userdata(VarlinkCall *call, void *userdata) {
        call->userdata = userdata;
}

void *varlink_call_get_userdata(const VarlinkCall *call) {
        return call->userdata;
}

int varlink_call_reply(VarlinkCall *call, json_object *parameters) {
        json_object *m;
        int r;

        if (!call || call->answered) {
                json_object_put(parameters);
                return call ? -EALREADY : -EINVAL;
        }

#if VARLINK_VALIDATE_REPLIES
        validate_reply(call, NULL, parameters);
#endif
        r = varlink_message_new_reply(parameters, false, &m);
        if (r < 0)
                return call_answer_failed(call, r);
        return call_send(call, m, true);
}

int varlink_call_notify(VarlinkCall *call, json_object *parameters) {
        json_object *m;
        int r;

        if (!call || call->answered) {
                json_object_put(parameters);
                return call ? -EALREADY : -EINVAL;
        }
        if (!(call->flags & VARLINK_CALL_MORE)) {
                json_object_put(parameters);
                return -EBADE;
        }

#if VARLINK_VALIDATE_REPLIES
        validate_reply(call, NULL, parameters);
#endif
        r = varlink_message_new_reply(parameters, true, &m);
        if (r < 0)
                return call_answer_failed(call, r);
        return call_send(call, m, false);
}

int varlink_call_error(VarlinkCall *call, const char *error, json_object *parameters) {
        json_object *m;
        int r;

        if (!call || !error || call->answered) {
                json_object_put(parameters);
                return call && error ? -EALREADY : -EINVAL;
        }

        /* Never send fds along with an error, as sd-varlink. */
        close_many(call->out_fds, call->n_out_fds);
        call->n_out_fds = 0;

#if VARLINK_VALIDATE_REPLIES
        if (call->symbol)
                validate_reply(call, error, parameters);
#endif
        r = varlink_message_new_error(error, parameters, &m);
        if (r < 0)
                return call_answer_failed(call, r);
        return call_send(call, m, true);
}

int varlink_call_error_kv(VarlinkCall *call, const char *error, ...) {
        _cleanup_(json_object_putp) json_object *p = json_object_new_object();
        const char *key;
        va_list ap;
        int r = p ? 0 : -ENOMEM;

        va_start(ap, error);
        while ((key = va_arg(ap, const char *))) {
                json_object *value = va_arg(ap, json_object *);

                /* A NULL value is -ENOMEM (json_object_add()); the rest are taken all the same. */
                if (r < 0)
                        json_object_put(value);
                else
                        r = json_object_add(p, key, value);
        }
        va_end(ap);
        if (r < 0)
                return call_answer_failed(call, r);
        return varlink_call_error(call, error, TAKE_PTR(p));
}

/* The server's own error (io.tsmd, which the server's user need not have registered). */
static int call_error_reply_may_not_fit(VarlinkCall *call, const char *limit, size_t needed, size_t max) {
        json_object *p = json_object_new_object(), *m;
        int r;

        if (!p || json_object_add(p, "limit", json_object_new_string(limit)) < 0 ||
            json_object_add(p, "needed", json_object_new_int64((int64_t) needed)) < 0 ||
            json_object_add(p, "max", json_object_new_int64((int64_t) max)) < 0) {
                json_object_put(p);
                return call_answer_failed(call, -ENOMEM);
        }
        r = varlink_message_new_error(VARLINK_ERROR_REPLY_MAY_NOT_FIT, p, &m);
        if (r < 0)
                return call_answer_failed(call, r);
        return call_send(call, m, true);
}

int varlink_call_error_invalid_parameter(VarlinkCall *call, const char *parameter) {
        return varlink_call_error_kv(call, VARLINK_ERROR_INVALID_PARAMETER, "parameter",
                                     json_object_new_string(parameter), NULL);
}

int varlink_call_error_errno(VarlinkCall *call, int error) {
        json_object *p = json_object_new_object();
        const char *name;

        error = abs(error);
        name = errno_to_name(error);
        if (!p || json_object_add(p, "errno", json_object_new_int(error)) < 0 ||
            (name && json_object_add(p, "errnoName", json_object_new_string(name)) < 0)) {
                json_object_put(p);
                return call_answer_failed(call, -ENOMEM);
        }
        return varlink_call_error(call, VARLINK_ERROR_SYSTEM, p);
}

int varlink_call_push_fd(VarlinkCall *call, int fd) {
        size_t limit;

        if (!call || fd < 0) {
                safe_close(fd);
                return -EINVAL;
        }
        limit = call->conn->server ? call->conn->server->limits.max_fds_per_message : VARLINK_FDS_PER_MESSAGE_MAX;
        limit = MAX(limit, (size_t) call->reply_room_fds);
        if (call->n_out_fds >= limit) {
                safe_close(fd);
                return -ENOBUFS;
        }
        if (!GREEDY_REALLOC(call->out_fds, call->allocated_out_fds, call->n_out_fds + 1)) {
                safe_close(fd);
                return -ENOMEM;
        }
        call->out_fds[call->n_out_fds] = fd;
        return (int) call->n_out_fds++;
}

int varlink_call_peek_fd(VarlinkCall *call, size_t index) {
        if (!call)
                return -ENXIO;
        /* The fds from a trailing -EMFILE entry on were sent, but we had no room for them
         * (varlink_stream_next()): our failure, which the client must not be blamed for. */
        if (call->n_fds > 0 && call->fds[call->n_fds - 1] == -EMFILE && index >= call->n_fds - 1)
                return -EMFILE;
        if (index >= call->n_fds || call->fds[index] < 0)
                return -ENXIO;
        return call->fds[index];
}

size_t varlink_call_get_n_fds(const VarlinkCall *call) {
        return call->n_fds;
}

int varlink_call_get_fd_parameter(VarlinkCall *call, json_object *parameters, const char *field) {
        json_object *v;
        int64_t i;

        if (!json_object_object_get_ex(parameters, field, &v) ||
            !json_object_is_type(v, json_type_int))
                return -EINVAL;
        i = json_object_get_int64(v);
        if (i < 0)
                return -ENXIO;
        /* Any index past the fds is as good as the first one past them (and fits a size_t). */
        return varlink_call_peek_fd(call, (uint64_t) i > call->n_fds ? call->n_fds : (size_t) i);
}

/* ---- dispatch -------------------------------------------------------------------------- */

static void call_dispatch(VarlinkCall *call) {
        _cleanup_free_ char *bad_field = NULL;
        VarlinkConn *c = call->conn;
        const VarlinkInterface *iface;
        VarlinkCallMessage m = {};
        const char *bad_key = NULL, *dot;
        Method *method;
        int r;

        r = varlink_message_parse_call(call->message, &m, &bad_key);
        if (r == -EBADMSG) {
                /* A well-formed object that is not a valid call: say which key is wrong, then
                 * hang up, as the rest of the stream cannot be trusted (sd-varlink hangs up
                 * without saying anything). */
                log_debug("Invalid call object (key '%s'), disconnecting.", strna(bad_key));
                call->method = "";
                conn_set_closing(c);
                call_refused(call, VARLINK_ERROR_INVALID_PARAMETER);
                (void) varlink_call_error_invalid_parameter(call, bad_key ?: "method");
                return;
        }
        if (r < 0) {
                conn_disconnect(c);
                return;
        }
        /* The method's name outlives the message, which goes once the call is answered. */
        if (json_object_object_get_ex(call->message, "method", &call->method_name))
                json_object_get(call->method_name);
        call->method = m.method;
        call->parameters = m.parameters;
        call->flags = m.flags;

        if (m.flags & VARLINK_CALL_UPGRADE) {
                /* No tsmd method hands its connection over to another protocol. */
                call_refused(call, VARLINK_ERROR_INVALID_PARAMETER);
                (void) varlink_call_error_invalid_parameter(call, "upgrade");
                return;
        }

        dot = strrchr(m.method, '.');
        iface = find_interface(c->server, m.method, (size_t) (dot - m.method));
        /* SECURITY: an interface this socket does not serve does not exist for its clients. */
        if (iface && !varlink_conn_allows_interface(c, varlink_interface_get_name(iface)))
                iface = NULL;
        if (!iface) {
                _cleanup_free_ char *name = strndup(m.method, (size_t) (dot - m.method));
                if (!name) {
                        conn_disconnect(c);
                        return;
                }
                call_refused(call, VARLINK_ERROR_INTERFACE_NOT_FOUND);
                (void) varlink_call_error_kv(call, VARLINK_ERROR_INTERFACE_NOT_FOUND, "interface",
                                             json_object_new_string(name), NULL);
                return;
        }
        call->symbol = varlink_interface_find_method(iface, dot + 1);
        if (!call->symbol) {
                call_refused(call, VARLINK_ERROR_METHOD_NOT_FOUND);
                (void) varlink_call_error_kv(call, VARLINK_ERROR_METHOD_NOT_FOUND, "method",
                                             json_object_new_string(m.method), NULL);
                return;
        }
        method = find_method(c->server, m.method);
        if (!method) {
                call_refused(call, VARLINK_ERROR_METHOD_NOT_IMPLEMENTED);
                (void) varlink_call_error_kv(call, VARLINK_ERROR_METHOD_NOT_IMPLEMENTED, "method",
                                             json_object_new_string(m.method), NULL);
                return;
        }
        if (varlink_method_requires_more(call->symbol) && !(m.flags & VARLINK_CALL_MORE)) {
                call_refused(call, VARLINK_ERROR_EXPECTED_MORE);
                (void) varlink_call_error(call, VARLINK_ERROR_EXPECTED_MORE, NULL);
                return;
        }
        r = varlink_method_validate_input(call->symbol, m.parameters, &bad_field);
        if (r < 0) {
                call_refused(call, VARLINK_ERROR_INVALID_PARAMETER);
                (void) varlink_call_error_invalid_parameter(call, bad_field ?: "parameters");
                return;
        }

        /* SECURITY: a method that acts must not run when its answer might not reach the caller:
         * a client would be told ReplyTooLarge about a call that took effect, or lose what it
         * made (a context, a vDevice). A oneway caller gets no answer to lose. */
        if (!(m.flags & VARLINK_CALL_ONEWAY)) {
                if (method->max_reply_size > varlink_stream_get_max_message_size(c->stream)) {
                        call_refused(call, VARLINK_ERROR_REPLY_MAY_NOT_FIT);
                        (void) call_error_reply_may_not_fit(call, "MaxMessageSize", method->max_reply_size,
                                                            varlink_stream_get_max_message_size(c->stream));
                        return;
                }
                if (method->max_reply_fds > c->server->limits.max_fds_per_message) {
                        call_refused(call, VARLINK_ERROR_REPLY_MAY_NOT_FIT);
                        (void) call_error_reply_may_not_fit(call, "MaxFdsPerMessage", method->max_reply_fds,
                                                            c->server->limits.max_fds_per_message);
                        return;
                }
                /* A reload may lower the limits before it answers. */
                call->reply_room = method->max_reply_size;
                call->reply_room_fds = method->max_reply_fds;
        }

        call->in_handler = true;
        r = method->func(call, m.parameters, c->server->userdata);
        call->in_handler = false;
        if ((r < 0 || call->answer_failed) && !call->answered) {
                log_debug_errno(r, "Method %s failed: %m", m.method);
                (void) varlink_call_error_errno(call, r < 0 ? r : -ENOMEM);
        }
        /* SECURITY: until it finishes, nothing after a "more" call is read (as sd-varlink): its
         * replies could not leave before it, so calls piling up behind it would only hold
         * memory and fds. A oneway call whose handler answers later stays queued like any
         * other, counted and recorded; only its answer is not sent. */
        if ((call->flags & VARLINK_CALL_MORE) && !call->answered) {
                call->streaming = true;
                c->n_streaming++;
        }
}

static void dispatch(VarlinkConn *c, json_object *message, size_t size, int *fds, size_t n_fds) {
        _cleanup_(varlink_call_unrefp) VarlinkCall *call = NULL;

        call = new0(VarlinkCall, 1);
        if (!call) {
                json_object_put(message);
                fd_closer_close_many_for(fds, n_fds, c->peer.uid);
                free(fds);
                conn_disconnect(c);
                return;
        }
        call->n_ref = 1;
        call->conn = varlink_conn_ref(c);
        call->message = message;
        call->fds = fds;
        call->n_fds = n_fds;
        STAILQ_INIT(&call->outputs);

        /* Queue first, so even an error answer keeps the order of replies. */
        /* The queue holds its own reference (TAILQ macros evaluate elm more than once). */
        varlink_call_ref(call);
        TAILQ_INSERT_TAIL(&c->calls, call, entry);
        call->queued = true;
        c->n_calls++;

        call_dispatch(call);
        call_drop_input(call);

        /* A message that outlives its dispatch (its call waits for an answer or for the
         * interceptor to release it: the daemon's audit record) counts as buffered until it
         * goes; json-c holds it as a tree several times its size. */
        if (call->message && c->connected) {
                call->message_size = size;
                c->held_input += size;
        }
}

/* What a read or parse error refuses, or NULL where the peer hung up or we failed. */
static const char *stream_refusal(int error) {
        switch (error) {
        case -EMSGSIZE:
                return VARLINK_REFUSED_MESSAGE_TOO_LARGE;
        case -EBADMSG:
                return VARLINK_REFUSED_MALFORMED_MESSAGE;
        case -ELOOP:
                return VARLINK_REFUSED_NESTING_TOO_DEEP;
        case -EPROTO:
                return VARLINK_REFUSED_FILE_DESCRIPTORS;
        case -E2BIG:
                return VARLINK_REFUSED_TOO_MANY_JSON_VALUES;
        default:
                return NULL;
        }
}

/* What this round of the loop parsed so far. libevent caches the time once per round: a new
 * value is a new round (or, with a coarse clock, a millisecond later). */
static size_t *server_round_parsed(VarlinkServer *s) {
        struct timeval now;

        if (event_base_gettimeofday_cached(s->base, &now) >= 0 &&
            (now.tv_sec != s->round.tv_sec || now.tv_usec != s->round.tv_usec)) {
                s->round = now;
                s->round_parsed = 0;
        }
        return &s->round_parsed;
}

static void conn_process(VarlinkConn *c) {
        unsigned budget = PROCESS_BATCH;
        size_t parsed = 0;
        bool drained = false;
        int r;

        varlink_conn_ref(c);
        if (c->failing)
                conn_disconnect(c);
        /* Failing: a reply or notification just failed, and the connection goes at the next
         * round; the calls behind it must not run for a client being dropped. */
        while (c->connected && !c->closing && !c->failing) {
                json_object *message = NULL;
                int *fds = NULL;
                size_t n_fds = 0;

                if (c->n_calls >= c->server->limits.max_pending_calls || c->n_streaming > 0 ||
                    c->n_postponed > 0) {
                        /* Backpressure: stop reading until a call finishes (or the stream
                         * ends), still watching for the peer to go, which otherwise only a
                         * write would notice. SECURITY: nothing a client sent after a
                         * postponed call runs before it (a read must not overtake the
                         * change it pipelined first), as after a "more" call. */
                        c->read_paused = true;
                        (void) event_del(c->ev_read);
                        conn_watch_hangup(c);
                        /* A peer that left right behind its calls is gone now, as the read
                         * that would have come next would have said: a postponed call must
                         * not run for it when its turn comes. */
                        if (fd_hung_up(varlink_stream_get_fd(c->stream))) {
                                log_debug("Client hung up while its calls were pending.");
                                conn_disconnect(c);
                        }
                        break;
                }
                if (budget-- == 0 || parsed >= PROCESS_BYTES ||
                    (varlink_stream_get_input_size(c->stream) >= PROCESS_BYTES &&
                     *server_round_parsed(c->server) >= ROUND_BYTES)) {
                        conn_schedule(c);
                        break;
                }

                uint64_t offset = varlink_stream_get_input_offset(c->stream);
                r = varlink_stream_next(c->stream, &message, &fds, &n_fds);
                if (r == 0 && !drained) {
                        r = varlink_stream_read(c->stream);
                        drained = r == 2;
                        if (r > 0) {
                                int k = conn_account(c);
                                if (k < 0) {
                                        const char *error = conn_account_refusal(k);

                                        log_debug("Dropping client connection (%s): buffered %zu bytes and "
                                                  "%zu fds, its uid %zu and %zu, all clients %zu and %zu.",
                                                  error, c->buffered, c->n_fds,
                                                  varlink_server_uid_count(c->server, c->peer.uid)->buffered,
                                                  varlink_server_uid_count(c->server, c->peer.uid)->n_fds,
                                                  c->server->buffered, c->server->n_fds);
                                        varlink_server_refused(c->server, &c->peer, c, NULL, error);
                                        conn_disconnect(c);
                                        break;
                                }
                                continue;
                        }
                }
                if (r == -ECONNRESET) {
                        conn_end_of_input(c);
                        break;
                }
                if (r < 0) {
                        const char *error = stream_refusal(r);

                        if (!error) {
                                log_debug_errno(r, "Dropping client connection: %m");
                                conn_disconnect(c);
                                break;
                        }
                        log_debug_errno(r, "Dropping client connection (%s): %m", error);
                        varlink_server_refused(c->server, &c->peer, c, NULL, error);
                        /* The calls before it were valid and are answered (sd-varlink writes a
                         * reply before it parses the next message); nothing after it is read. */
                        conn_close_after_answers(c);
                        break;
                }
                if (r == 0) {
                        if (c->read_paused) {
                                c->read_paused = false;
                                if (c->ev_hangup)
                                        (void) event_del(c->ev_hangup);
                                (void) event_add(c->ev_read, NULL);
                        }
                        break;
                }

                /* The message left the input (its size now held by its call) and its fds
                 * are the call's. */
                size_t size = (size_t) (varlink_stream_get_input_offset(c->stream) - offset);
                parsed += size;
                *server_round_parsed(c->server) += size;
                if (!c->called) {
                        c->called = true;
                        (void) event_del(c->ev_idle);
                }
                c->idle_since = now_monotonic_usec();
                dispatch(c, message, size, fds, n_fds);
                (void) conn_account(c);
        }
        conn_update_timeout(c);
        varlink_conn_unref(c);
}

/* ---- connections ----------------------------------------------------------------------- */

/* The client sent its last byte (shutdown(SHUT_WR), as socat does when its input ends, or a
 * close seen by the read before the hang-up): what it called is answered, then the connection
 * goes. A message it left unfinished never completes and is dropped. */
static void conn_end_of_input(VarlinkConn *c) {
        size_t unfinished = varlink_stream_get_input_size(c->stream);

        if (unfinished > 0)
                log_debug("Client ended its input in the middle of a message (%zu bytes), dropping that.",
                          unfinished);
        conn_close_after_answers(c);
}

/* Reads no more from c, and closes it once what it called is answered. Until the answers are
 * out, a close of the peer's end is watched for, which ends the connection at once, as it
 * would have. */
static void conn_close_after_answers(VarlinkConn *c) {
        /* Nothing owed: gone now, its slot free for the next connection of its uid. */
        if (TAILQ_EMPTY(&c->calls) && varlink_stream_get_output_size(c->stream) == 0) {
                conn_disconnect(c);
                return;
        }
        conn_set_closing(c);
        conn_watch_hangup(c);
}

static void on_conn_readable(evutil_socket_t fd, short what, void *userdata) {
        conn_process(userdata);
}

static void on_conn_process(evutil_socket_t fd, short what, void *userdata) {
        conn_process(userdata);
}

/* Whether the peer is gone: POLLHUP once it closed its end (both directions shut). A peer that
 * only shut down its sending side (POLLRDHUP alone) still reads its answers. */
static bool fd_hung_up(int fd) {
        struct pollfd p = { .fd = fd };

        return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR));
}

static void on_conn_hangup(evutil_socket_t fd, short what, void *userdata) {
        /* New bytes (unread: they wait), or the peer gone. */
        if (!fd_hung_up(fd))
                return;
        log_debug("Client hung up while its calls were pending.");
        conn_disconnect(userdata);
}

/* While reading is paused, a hang-up must still be seen: else a client that subscribed and
 * left keeps its connection, and all it owns, until something is written to it. libevent
 * delivers EPOLLHUP only as readable (never as EV_CLOSED), which a level-triggered watch
 * would report forever while unread calls wait. So this watch is edge-triggered, on a
 * duplicate of the socket (all events on one fd must agree on that), and asks poll() what
 * happened when it fires. Without it (no fd left), the pause is as it was before. */
static void conn_watch_hangup(VarlinkConn *c) {
        int fd;

        if (!c->ev_hangup) {
                fd = fcntl(varlink_stream_get_fd(c->stream), F_DUPFD_CLOEXEC, 3);
                if (fd < 0) {
                        log_debug_errno(-errno, "Cannot watch a paused connection for its hang-up: %m");
                        return;
                }
                c->ev_hangup = event_new(c->server->base, fd, EV_READ | EV_ET | EV_PERSIST, on_conn_hangup, c);
                if (!c->ev_hangup) {
                        safe_close(fd);
                        return;
                }
                c->hangup_fd = fd;
        }
        (void) event_add(c->ev_hangup, NULL);
}

/* SECURITY: the rest of a connection's work waits for the next round of the loop, not the end of
 * this one. libevent runs an event activated now in this very round, after the others, and
 * never polls until the round is empty: a client that keeps its socket full would keep the
 * round going and nobody else's readiness would be seen. A zero timer fires after the next
 * poll, so every connection ready by then goes first. */
static void conn_schedule(VarlinkConn *c) {
        static const struct timeval next_round = {};

        if (c->connected)
                (void) evtimer_add(c->ev_process, &next_round);
}

/* SECURITY: a client must not hold a connection, and its per-uid slot, by trickling a message
 * a byte at a time (slowloris), nor (with IdleTimeoutSec=, see on_conn_idle_timeout()) by
 * never completing one. This timer is armed only while the client owes us bytes: from the
 * first byte of a message to its NUL. A connection idle between messages (how VMMs keep
 * theirs) has none armed, and neither has one whose next message we are not reading yet (a
 * complete one buffered, MaxPendingCalls reached, closing): that wait is ours. The timers are libevent common timeouts: those of one duration sit in a queue
 * ordered by deadline, O(1) to arm and disarm, where the heap costs O(log n). We prefer that
 * to a periodic sweep, which would wake the daemon even with nothing pending and walk every
 * connection, and is only as exact as its period. */
static void conn_update_timeout(VarlinkConn *c) {
        VarlinkServer *s = c->server;
        const struct timeval *tv = NULL;
        uint64_t mark = 0;

        if (!c->connected || c->failing)
                return;

        if (!c->closing && !c->read_paused && !varlink_stream_has_message(c->stream) &&
            varlink_stream_get_input_size(c->stream) > 0) {
                tv = s->message_timeout;
                mark = 1 + varlink_stream_get_input_offset(c->stream);
        }

        if (!tv) {
                (void) event_del(c->ev_timeout);
                return;
        }
        /* Armed for this very message (or still for the first byte): its deadline stands,
         * however many bytes of it trickle in meanwhile. */
        if (evtimer_pending(c->ev_timeout, NULL) && c->timeout_mark == mark)
                return;
        c->timeout_mark = mark;
        if (event_add(c->ev_timeout, tv) < 0) {
                log_debug("Failed to arm a connection timeout, disconnecting.");
                conn_disconnect(c);
        }
}

static void on_conn_timeout(evutil_socket_t fd, short what, void *userdata) {
        VarlinkConn *c = userdata;
        VarlinkServer *s = c->server;

        log_debug("Client (uid %u, pid %i) did not complete its message within %us (%zu bytes so far), "
                  "disconnecting.",
                  c->peer.uid, c->peer.pid, s->limits.message_timeout_sec, varlink_stream_get_input_size(c->stream));
        s->n_timed_out++;
        varlink_server_refused(s, &c->peer, c, NULL, VARLINK_REFUSED_MESSAGE_TIMEOUT);
        conn_disconnect(c);
}

/* SECURITY: a connection that never completes a call holds a MaxConnections= slot for
 * nothing; a few uids could hold them all. Armed at connect (with the IdleTimeoutSec= of
 * then), disarmed by the first complete message, whatever MessageTimeoutSec= says. */
static void on_conn_idle_timeout(evutil_socket_t fd, short what, void *userdata) {
        VarlinkConn *c = userdata;
        VarlinkServer *s = c->server;

        log_debug("Client (uid %u, pid %i) sent no complete message within %us of connecting (%zu bytes), "
                  "disconnecting.",
                  c->peer.uid, c->peer.pid, s->limits.idle_timeout_sec, varlink_stream_get_input_size(c->stream));
        s->n_timed_out++;
        varlink_server_refused(s, &c->peer, c, NULL, VARLINK_REFUSED_IDLE_TIMEOUT);
        conn_disconnect(c);
}

static void on_conn_writable(evutil_socket_t fd, short what, void *userdata) {
        VarlinkConn *c = userdata;
        int r;

        r = varlink_stream_write(c->stream);
        if (r < 0) {
                log_debug_errno(r, "Failed to write to client: %m");
                conn_disconnect(c);
                return;
        }
        (void) conn_account(c);
        conn_sent_progress(c);
        if (!c->connected || c->failing)
                return;
        if (varlink_stream_get_output_size(c->stream) == 0) {
                (void) event_del(c->ev_write);
                if (c->closing && TAILQ_EMPTY(&c->calls))
                        conn_disconnect(c);
        }
}

VarlinkConn *varlink_conn_ref(VarlinkConn *c) {
        if (c)
                c->n_ref++;
        return c;
}

VarlinkConn *varlink_conn_unref(VarlinkConn *c) {
        if (!c)
                return NULL;
        assert(c->n_ref > 0);
        if (--c->n_ref > 0)
                return NULL;

        assert(!c->connected);
        conn_free_events(c);
        varlink_stream_free(c->stream);
        return mfree(c);
}

static void on_deferred_unref(evutil_socket_t fd, short what, void *userdata) {
        varlink_conn_unref(userdata);
}

/* A connection that buffered this much leaves its heap to be given back to the system. */
#define TRIM_AFTER_BUFFERED (1024 * 1024)

#define TRIM_INTERVAL_USEC (1000 * 1000ULL)

static void on_trim(evutil_socket_t fd, short what, void *userdata) {
        VarlinkServer *s = userdata;

        (void) malloc_trim(0);
        s->last_trim_usec = now_monotonic_usec();
}

/* What a connection buffered (a client's messages of up to MaxMessageSize= arrive in many
 * small chunks) is freed with it, but glibc keeps freed heap that anything allocated later
 * pins, and an attack of large messages would leave the worker that much larger for good.
 * malloc_trim() returns the free pages inside the heap too: once the loop is done with what is
 * ready, and at most once a second however many connections ask. */
static void heap_trim_soon(VarlinkServer *s) {
        uint64_t now = now_monotonic_usec(), at = s->last_trim_usec + TRIM_INTERVAL_USEC;
        struct timeval delay = {};

        if (!s->trim)
                s->trim = evtimer_new(s->base, on_trim, s);
        if (!s->trim || evtimer_pending(s->trim, NULL))
                return;
        if (s->last_trim_usec > 0 && at > now)
                delay = timeval_from_usec(at - now);
        (void) evtimer_add(s->trim, &delay);
}

static void conn_disconnect_full(VarlinkConn *c, bool defer) {
        VarlinkServer *s = c->server;
        VarlinkCall *call;

        if (!c->connected)
                return;
        c->connected = false;

        TAILQ_REMOVE(&s->conns, c, entry);
        s->n_conns--;
        s->n_admin_conns -= c->admin;
        if (c->write_queued)
                TAILQ_REMOVE(&s->write_queue, c, write_entry);
        if (c->buffered_peak >= TRIM_AFTER_BUFFERED)
                heap_trim_soon(s);
        conn_detach_uid(c);

        /* Events are freed here, but never from inside their own callback: libevent allows
         * event_free() of a running event only as its last act, which we cannot promise. */
        event_del(c->ev_read);
        event_del(c->ev_write);
        event_del(c->ev_process);
        if (c->ev_hangup)
                event_del(c->ev_hangup);
        c->hangup_fd = safe_close(c->hangup_fd);
        event_del(c->ev_timeout);
        event_del(c->ev_idle);

        /* Close the socket now so the peer sees the hang-up at once. */
        varlink_stream_free(c->stream);
        c->stream = NULL;
        conn_sent_fail_all(c);

        while ((call = TAILQ_FIRST(&c->calls))) {
                TAILQ_REMOVE(&c->calls, call, entry);
                call->queued = false;
                varlink_call_unref(call);
        }
        c->n_calls = c->n_streaming = 0;

        if (s->on_disconnect)
                s->on_disconnect(s, c, s->userdata);

        /* The fd it freed goes to the spares first, should they be short. */
        if (s->n_spare_fds < SPARE_FDS)
                varlink_server_spare_fds_refill(s);
        varlink_server_accept_resume(s);

        /* Nothing is left to write: the queue's reference goes (the server's still holds). */
        if (c->write_queued) {
                c->write_queued = false;
                varlink_conn_unref(c);
        }

        /* Drop the server's reference later, outside of any callback of this connection. */
        if (!defer)
                varlink_conn_unref(c);
        else if (event_base_once(s->base, -1, EV_TIMEOUT, on_deferred_unref, c, NULL) < 0)
                log_error("Failed to schedule freeing a connection, leaking it.");
}

void conn_disconnect(VarlinkConn *c) {
        conn_disconnect_full(c, true);
}

/* Disconnects from the loop, not here: called from inside a reply, a notification or a
 * release, whose caller may be walking what the disconnect callback frees (a list of
 * subscribers, say). Nothing is read or written meanwhile. */
void conn_disconnect_soon(VarlinkConn *c) {
        if (!c->connected || c->failing)
                return;
        c->failing = true;
        /* What it holds goes with it: not counted against anyone meanwhile. */
        (void) conn_account(c);
        (void) event_del(c->ev_read);
        (void) event_del(c->ev_write);
        if (c->ev_hangup)
                (void) event_del(c->ev_hangup);
        (void) event_del(c->ev_timeout);
        (void) event_del(c->ev_idle);
        conn_schedule(c);
}

static void conn_free_events(VarlinkConn *c) {
        if (c->ev_read)
                event_free(c->ev_read);
        if (c->ev_write)
                event_free(c->ev_write);
        if (c->ev_process)
                event_free(c->ev_process);
        if (c->ev_hangup)
                event_free(c->ev_hangup);
        if (c->ev_timeout)
                event_free(c->ev_timeout);
        if (c->ev_idle)
                event_free(c->ev_idle);
        c->ev_read = c->ev_write = c->ev_process = c->ev_hangup = c->ev_timeout = c->ev_idle = NULL;
}

const struct ucred *varlink_conn_get_peer(const VarlinkConn *c) {
        return &c->peer;
}

int varlink_conn_get_fd(const VarlinkConn *c) {
        return c->connected ? varlink_stream_get_fd(c->stream) : -ENOTCONN;
}

void varlink_conn_set_userdata(VarlinkConn *c, void *userdata) {
        c->userdata = userdata;
}

void *varlink_conn_get_userdata(const VarlinkConn *c) {
        return c->userdata;
}

VarlinkServer *varlink_conn_get_server(const VarlinkConn *c) {
        return c->server;
}

size_t varlink_conn_get_max_message_size(const VarlinkConn *c) {
        return c->connected ? varlink_stream_get_max_message_size(c->stream) : 0;
}

size_t varlink_call_reserve_reply_room(VarlinkCall *call) {
        size_t room = varlink_conn_get_max_message_size(call->conn);

        call->reply_room = MAX(call->reply_room, room);
        return room;
}

bool varlink_conn_is_connected(const VarlinkConn *c) {
        return c->connected;
}

void varlink_conn_close(VarlinkConn *c) {
        if (!c->connected)
                return;
        conn_set_closing(c);
        if (varlink_stream_get_output_size(c->stream) == 0 && TAILQ_EMPTY(&c->calls))
                conn_disconnect_soon(c);
}

int conn_new(VarlinkServer *s, int fd, const char *const *interfaces, bool admin) {
        _cleanup_close_ int fd_owned = fd;
        struct ucred peer = {};
        socklen_t sl = sizeof(peer);
        VarlinkConn *c;
        int r;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &sl) < 0)
                return negative_errno();

        r = conn_admit(s, fd, &peer, admin);
        if (r < 0)
                return r;

        c = new0(VarlinkConn, 1);
        if (!c)
                return -ENOMEM;
        c->n_ref = 1;
        c->server = s;
        c->peer = peer;
        c->interfaces = interfaces;
        c->admin = admin;
        c->idle_since = now_monotonic_usec();
        c->hangup_fd = -EBADF;
        TAILQ_INIT(&c->calls);
        STAILQ_INIT(&c->sent_waiters);

        r = varlink_stream_new(TAKE_FD(fd_owned), &s->limits, &c->stream);
        if (r < 0)
                goto fail_conn;
        varlink_stream_set_allow_fds(c->stream, true, true);
        varlink_stream_set_peer_uid(c->stream, peer.uid);

        c->ev_read = event_new(s->base, fd, EV_READ | EV_PERSIST, on_conn_readable, c);
        c->ev_write = event_new(s->base, fd, EV_WRITE | EV_PERSIST, on_conn_writable, c);
        c->ev_process = evtimer_new(s->base, on_conn_process, c);
        c->ev_timeout = evtimer_new(s->base, on_conn_timeout, c);
        c->ev_idle = evtimer_new(s->base, on_conn_idle_timeout, c);
        if (!c->ev_read || !c->ev_write || !c->ev_process || !c->ev_timeout || !c->ev_idle ||
            event_add(c->ev_read, NULL) < 0 || (s->idle_timeout && event_add(c->ev_idle, s->idle_timeout) < 0)) {
                r = -ENOMEM;
                goto fail_conn;
        }
        r = conn_attach_uid(c);
        if (r < 0)
                goto fail_conn;

        c->connected = true;
        s->n_conns++;
        s->n_admin_conns += admin;
        TAILQ_INSERT_TAIL(&s->conns, c, entry);

        if (s->on_connect) {
                r = s->on_connect(s, c, s->userdata);
                if (r < 0) {
                        /* Turned away as any refusal is: on record, by name. */
                        varlink_server_refused(s, &c->peer, c, NULL, VARLINK_REFUSED_CONNECTION_SETUP_FAILED);
                        conn_disconnect(c);
                        return r;
                }
        }
        conn_update_timeout(c);
        return 0;

fail_conn:
        conn_free_events(c);
        varlink_stream_free(c->stream);
        free(c);
        return r;
}

int varlink_server_add_connection(VarlinkServer *s, int fd) {
        assert_return(s, -EINVAL);
        assert_return(fd >= 0, -EBADF);

        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
                safe_close(fd);
                return negative_errno();
        }
        return conn_new(s, fd, NULL, false);
}

void varlink_server_shutdown(VarlinkServer *s) {
        VarlinkConn *c;

        /* Replies given but not written yet (the loop stopped before it was idle) still go
         * out, as far as the sockets take them without waiting. */
        while ((c = TAILQ_FIRST(&s->write_queue))) {
                TAILQ_REMOVE(&s->write_queue, c, write_entry);
                c->write_queued = false;
                (void) varlink_stream_write(c->stream);
                varlink_conn_unref(c);
        }

        /* Connections first: they borrow their listener's interface list. */
        while ((c = TAILQ_FIRST(&s->conns)))
                conn_disconnect_full(c, false);

        for (size_t i = 0; i < s->n_listeners; i++) {
                event_free(s->listeners[i]->event);
                safe_close(s->listeners[i]->fd);
                strv_free(s->listeners[i]->interfaces);
                free(s->listeners[i]);
        }
        s->n_listeners = 0;
        s->want_spare_fds = false;
        varlink_server_spare_fds_release(s);
}

bool varlink_conn_allows_interface(const VarlinkConn *c, const char *interface) {
        /* Introspection and the shared errors are everybody's. */
        if (!c->interfaces || streq(interface, "org.varlink.service") || streq(interface, "io.tsmd"))
                return true;
        for (const char *const *i = c->interfaces; *i; i++)
                if (streq(*i, interface))
                        return true;
        return false;
}
