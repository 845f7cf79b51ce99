/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Varlink server's calls: their lives, their replies (queued in the order the calls came,
 * held behind an earlier call's), deferred and postponed calls, interceptors, sent callbacks
 * and fd passing. What a method handler deals with, apart from the socket's side
 * (varlink-server-conn.c). Runs in: worker. */

#include <stdarg.h>

#include "escape.h"
#include "fd-closer.h"
#include "json-run.h"
#include "json-util.h"
#include "log.h"
#include "varlink-errors.h"
#include "varlink-server-internal.h"

/* What the buffer replies are serialized into keeps between replies: every guest request's fits,
 * and what a rare large one (an audit page) grew it to is freed at the next reply. */
#define REPLY_TEXT_KEEP (64U * 1024U)

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

static int call_flush_outputs(VarlinkCall *call);

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
void conn_sent_progress(VarlinkConn *c) {
        SentWaiter *w;

        while (c->connected && c->stream && (w = STAILQ_FIRST(&c->sent_waiters)) &&
               w->mark <= varlink_stream_get_output_offset(c->stream)) {
                STAILQ_REMOVE_HEAD(&c->sent_waiters, entry);
                w->f(w->result, w->userdata);
                free(w);
        }
}

void conn_sent_fail_all(VarlinkConn *c) {
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
void call_drop_input(VarlinkCall *call) {
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

bool call_only_subscribes(const VarlinkCall *call) {
        return call->streaming && !call->answered && !call->in_handler && !call->postponed &&
               !call->intercepted && STAILQ_EMPTY(&call->outputs);
}

/* A reply beyond the connection's MaxMessageSize=: nothing of it was written, so the stream is
 * intact, and the caller learns why in its place rather than losing its connection. Recorded as
 * a refusal, unless the call's own record says so (intercepted: call_check_unbounded_answer()). */
static int reply_too_large(VarlinkCall *call, size_t size, bool refusal, json_object **m) {
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
        if (refusal)
                varlink_server_refused(c->server, &c->peer, c, NULL, VARLINK_ERROR_REPLY_TOO_LARGE);
        return 0;
}

/* The interceptor records the answer its caller will get. A call that declared or reserved its
 * reply's room cannot outgrow it; one that did not (an administrator's listing) is measured here,
 * so that a listing too large is recorded as the ReplyTooLarge its caller gets, not as "ok". */
static void call_check_unbounded_answer(VarlinkCall *call, json_object **m) {
        VarlinkConn *c = call->conn;
        size_t size;

        if (call->reply_room > 0 || !*m || (call->flags & VARLINK_CALL_ONEWAY) || !c->connected || c->failing)
                return;
        json_text_trim(&c->server->reply_text, REPLY_TEXT_KEEP);
        /* Out of memory: the answer's own send fails the same way, after its record. */
        if (json_write(*m, &c->server->reply_text) < 0)
                return;
        size = c->server->reply_text.len + 1;
        if (size > varlink_stream_get_max_message_size(c->stream))
                (void) reply_too_large(call, size, false, m);
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

                call_check_unbounded_answer(call, &m);
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
                r = reply_too_large(call, len + 1, true, &m);
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
        call_validate_reply(call, NULL, parameters);
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
        call_validate_reply(call, NULL, parameters);
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
                call_validate_reply(call, error, parameters);
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
int call_error_reply_may_not_fit(VarlinkCall *call, const char *limit, size_t needed, size_t max) {
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
