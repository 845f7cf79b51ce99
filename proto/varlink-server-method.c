/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Varlink server's method table: the interfaces registered from their IDL and the handlers
 * bound to their methods, and each call checked against them and run (replies too, in debug
 * builds). Separate from the calls' plumbing (varlink-server-call.c): this is where the IDL
 * decides. Runs in: worker. */

#include "fd-closer.h"
#include "log.h"
#include "varlink-errors.h"
#include "varlink-idl.h"
#include "varlink-server-internal.h"

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
        /* The caller's until its next call on this thread. */
        static _Thread_local char missing[256];

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

#if VARLINK_VALIDATE_REPLIES
void call_validate_reply(VarlinkCall *call, const char *error, json_object *parameters) {
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
#endif

/* Before the answer is sent, so that the callback can hold it back. */
static void call_refused(VarlinkCall *call, const char *error) {
        varlink_server_refused(call->conn->server, &call->conn->peer, call->conn, call, error);
}

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

void conn_dispatch_message(VarlinkConn *c, json_object *message, size_t size, int *fds, size_t n_fds) {
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
