/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libtsm's client object: connecting, reconnecting, freeing (also from callbacks), the
 * caller's event loop (fd, events, process) and the blocking and asynchronous call helpers
 * the other files use. Public functions are documented in tsm.h. Runs in: the VMM process.
 */

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "json-util.h"
#include "libtsm-internal.h"

static void client_free_now(TsmClient *c) {
        TsmOp *op;

        /* The destroys below are callbacks like any other: a tsm_client_free() from one only
         * notes what is under way, and blocking calls, tsm_client_process() and
         * tsm_client_reconnect() fail with -EDEADLK (asynchronous calls with -ENOTCONN, the
         * connection being gone). Without the guards raised a nested free would release c
         * under this loop, and a nested reconnect would leak the connection it makes. */
        c->free_requested = true;
        c->n_busy++;
        c->n_dispatching++;

        /* Pending calls are dropped without their callbacks running. */
        c->vc = varlink_client_free(c->vc);
        c->watch = NULL;
        while ((op = LIST_FIRST(&c->ops))) {
                LIST_REMOVE(op, entry);
                if (op->destroy)
                        op->destroy(op->userdata);
                free(op);
        }
        ltsm_tokens_free(c);
        free(c->address);
        free(c->error_name);
        free(c->error_message);
        free(c);
}

/* Leaves an entry point that may have run callbacks. Returns true if the client is gone. */
bool ltsm_client_leave(TsmClient *c) {
        assert(c->n_busy > 0);
        if (--c->n_busy > 0 || !c->free_requested)
                return false;
        client_free_now(c);
        return true;
}

/* A value takes two bytes at least ("0,"): no reply within the usual size holds more than
 * DescribeConnection's may. */
_Static_assert(TSM_GUEST_MESSAGE_MAX / 2 < GUEST_DESCRIBE_REPLY_VALUES_MAX,
               "replies read while a DescribeConnection is under way fit its count of values");

/* A new connection gets the client's limits and timeout. */
static int client_setup_connection(TsmClient *c) {
        VarlinkLimits limits = VARLINK_LIMITS_DEFAULT;

        /* Not the default 4096: an admin's QueryAudit page holds 10000 records by default. */
        limits.max_json_values = TSM_REPLY_JSON_VALUES_MAX;
        /* Wide or not: tools calling other interfaces get no fds either. */
        limits.max_fds_per_message = TSM_MESSAGE_FDS_MAX;
        if (!c->wide_limits) {
                limits.max_depth = TSM_GUEST_DEPTH_MAX;
                limits.max_message_size = TSM_GUEST_MESSAGE_MAX;
                if (c->n_describing > 0) {
                        /* As large as DescribeConnection's reply, and no more values than it
                         * holds (guest-limits.h): every other reply of io.tsmd.Guest holds fewer
                         * by its size alone. */
                        limits.max_message_size = MAX(GUEST_DESCRIBE_REPLY_MAX, TSM_GUEST_MESSAGE_MAX);
                        limits.max_json_values = GUEST_DESCRIBE_REPLY_VALUES_MAX;
                }
        }
        varlink_client_set_timeout(c->vc, c->timeout_usec);
        varlink_client_set_max_in_flight(c->vc, c->max_in_flight);
        /* A timeout must not hang up: tsmd would release every context of the connection,
         * unbinding the VM's devices for one slow Bind. And the fd number stays the caller's
         * loop's until it reconnects or frees the client, lost connection or not (tsm.h); but
         * while adopting, where keeping it may hang up (tsm_client_new_from_fd()). */
        varlink_client_set_flags(c->vc, VARLINK_CLIENT_ABANDON_TIMED_OUT | (c->adopting ? 0 : VARLINK_CLIENT_KEEP_FD));
        return varlink_client_set_limits(c->vc, &limits);
}

int ltsm_client_widen_limits(TsmClient *c, const char *method) {
        if (c->wide_limits || strneq(method, "io.tsmd.Guest.", strlen("io.tsmd.Guest.")))
                return 0;
        c->wide_limits = true;
        /* Raising them between two messages is safe: the stream only ever checks the
         * message it is reading against them. */
        return c->vc ? client_setup_connection(c) : 0;
}

int ltsm_client_describing_begin(TsmClient *c) {
        int r;

        if (c->n_describing++ > 0 || !c->vc)
                return 0;
        r = client_setup_connection(c);
        if (r < 0)
                ltsm_client_describing_end(c);
        return r;
}

void ltsm_client_describing_end(TsmClient *c) {
        assert(c->n_describing > 0);
        if (--c->n_describing == 0 && c->vc)
                (void) client_setup_connection(c);
}

/* A client with no connection yet, to reconnect to address (NULL: the default). */
static int client_new(const char *address, TsmClient **ret) {
        TsmClient *c;

        /* An empty variable is unset; an empty address is malformed, not a request for the
         * default (a caller's "--socket=" must not reach a socket it did not name). */
        if (!address) {
                address = secure_getenv("TSMD_GUEST_SOCKET");
                if (isempty(address))
                        address = TSM_GUEST_SOCKET_DEFAULT;
        }

        c = new0(TsmClient, 1);
        if (!c)
                return -ENOMEM;
        LIST_INIT(&c->ops);
        TAILQ_INIT(&c->late_reclaims);
        c->timeout_usec = TSM_TIMEOUT_DEFAULT_USEC;
        c->max_requests = TSM_PENDING_REQUESTS_DEFAULT;
        c->max_in_flight = TSM_CALLS_IN_FLIGHT_MAX;
        c->address = strdup(address);
        if (!c->address) {
                free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

/* A full listen backlog is waited out for as long as a call waits (tsm_client_set_timeout():
 * 0 is forever). */
static int client_connect(TsmClient *c, VarlinkClient **ret) {
        return varlink_client_connect_full(c->address, c->timeout_usec > 0 ? c->timeout_usec : UINT64_MAX, ret);
}

/* tsm_client_connect(): see tsm.h. */
_public_ int tsm_client_connect(const char *address, TsmClient **ret) {
        TsmClient *c;
        int r;

        assert_return(ret, -EINVAL);

        r = client_new(address, &c);
        if (r < 0)
                return r;

        r = client_connect(c, &c->vc);
        if (r >= 0)
                r = client_setup_connection(c);
        if (r < 0) {
                client_free_now(c);
                return r;
        }

        *ret = c;
        return 0;
}

/* tsm_client_detach_fd(): see tsm.h. */
_public_ int tsm_client_detach_fd(TsmClient *c, int *ret_fd) {
        int fd, r;

        assert_return(c, -EINVAL);
        assert_return_client(c, ret_fd, -EINVAL);
        if (c->n_busy > 0)
                return ltsm_error_set_local(c, -EDEADLK);
        if (!c->vc || !varlink_client_is_connected(c->vc))
                return ltsm_error_set_local(c, -ENOTCONN);
        /* SECURITY: a call whose reply is to come (an asynchronous one, an open watch, a blocking
         * one abandoned after its timeout), a call not entirely written, a reply partly read:
         * the next owner would read or write from the middle of a message, or take a reply of
         * ours for its own. varlink_client_detach_fd() checks the stream. */
        if (!LIST_EMPTY(&c->ops) || c->watch)
                return ltsm_error_set_local(c, -EBUSY);
        r = varlink_client_detach_fd(c->vc, &fd);
        if (r < 0)
                return ltsm_error_set_local(c, r);
        /* What is libtsm's own goes: tokens (wiped), late reclaims (their iommufds closed), the
         * error state. The connection, and all it holds at tsmd, is the fd's. */
        client_free_now(c);
        *ret_fd = fd;
        return 0;
}

/* Whether fd is what a TsmClient speaks over: a connected AF_UNIX stream socket. */
static int check_connected_stream(int fd) {
        int domain, type, listening;
        socklen_t len = sizeof(int);
        struct sockaddr_un sa;
        struct stat st;

        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISSOCK(st.st_mode))
                return -ENOTSOCK;
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
                return negative_errno();
        len = sizeof(int);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
                return negative_errno();
        len = sizeof(int);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0)
                return negative_errno();
        if (domain != AF_UNIX || type != SOCK_STREAM || listening)
                return -EINVAL;
        len = sizeof(sa);
        /* Connected: it has a peer (a socket never connected, or whose peer went, has none). */
        if (getpeername(fd, (struct sockaddr *) &sa, &len) < 0)
                return errno == ENOTCONN ? -EINVAL : negative_errno();
        return 0;
}

/* The address tsmd's socket, fd's peer, is bound to, for reconnects: a path or an abstract name;
 * NULL (the default, as tsm_client_connect(NULL)) for one that is neither, or not printable. */
static int peer_address(int fd, char **ret) {
        struct sockaddr_un sa = {};
        socklen_t len = sizeof(sa);
        size_t n;
        char *a;

        *ret = NULL;
        if (getpeername(fd, (struct sockaddr *) &sa, &len) < 0 || len <= offsetof(struct sockaddr_un, sun_path))
                return 0;
        n = len - offsetof(struct sockaddr_un, sun_path);
        if (sa.sun_path[0] == '/')
                n = strnlen(sa.sun_path, n);
        else if (sa.sun_path[0] != 0 || n < 2)
                return 0;
        for (size_t i = 1; i < n; i++)
                if (sa.sun_path[i] <= ' ' || sa.sun_path[i] >= 127)
                        return 0;
        a = strndup(sa.sun_path, n);
        if (!a)
                return -ENOMEM;
        a[0] = a[0] ?: '@';
        *ret = a;
        return 0;
}

/* tsm_client_new_from_fd(): see tsm.h. */
_public_ int tsm_client_new_from_fd(int fd, TsmConnectionInfo **ret_info, TsmClient **ret) {
        _cleanup_(tsm_connection_info_freep) TsmConnectionInfo *info = NULL;
        _cleanup_free_ char *address = NULL;
        TsmClient *c;
        int copy, r;

        assert_return(ret, -EINVAL);
        if (fd < 0)
                return -EBADF;
        r = check_connected_stream(fd);
        if (r < 0)
                return r;
        r = peer_address(fd, &address);
        if (r < 0)
                return r;
        r = client_new(address, &c);
        if (r < 0)
                return r;

        /* SECURITY: until the connection proved good, it is a duplicate's: should anything fail,
         * closing the duplicate is no hang-up (fd holds the connection open), and fd, with all
         * the connection holds, is still the caller's. */
        copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0) {
                client_free_now(c);
                return negative_errno();
        }
        /* Nor may a failure hang up: a dead connection keeps its fd number with a shutdown(),
         * which would end the connection for fd too. Set on each setup of the connection until
         * it proved good (DescribeConnection's widening of the limits makes one). */
        c->adopting = true;
        r = varlink_client_new_from_fd(copy, &c->vc);
        if (r >= 0)
                r = client_setup_connection(c);
        if (r >= 0)
                r = ltsm_describe(c, &info);
        if (r < 0) {
                client_free_now(c);
                return r;
        }
        c->adopting = false;
        /* The connection proved good: the socket becomes fd itself, the number the caller (QEMU's
         * CPR, which keeps fds by name and number) knows it by; the duplicate goes (no hang-up:
         * it is the same socket). Last: a failure before it closes the duplicate only. */
        r = client_setup_connection(c);
        if (r >= 0)
                r = varlink_client_move_fd(c->vc, fd);
        if (r < 0) {
                client_free_now(c);
                return r;
        }

        ltsm_error_clear(c);
        if (ret_info)
                *ret_info = TAKE_PTR(info);
        *ret = c;
        return 0;
}

/* tsm_client_free(): see tsm.h. */
_public_ TsmClient *tsm_client_free(TsmClient *c) {
        if (!c)
                return NULL;
        if (c->n_busy > 0) {
                /* From a callback: the entry point that runs it frees the client on its way out. */
                c->free_requested = true;
                return NULL;
        }
        client_free_now(c);
        return NULL;
}

/* tsm_client_set_timeout(): see tsm.h. */
_public_ int tsm_client_set_timeout(TsmClient *c, uint64_t usec) {
        assert_return(c, -EINVAL);

        c->timeout_usec = usec;
        if (c->vc)
                varlink_client_set_timeout(c->vc, usec);
        return 0;
}

/* tsm_client_set_max_pending_requests(): see tsm.h. */
_public_ int tsm_client_set_max_pending_requests(TsmClient *c, unsigned n) {
        assert_return(c, -EINVAL);
        assert_return_client(c, n > 0, -EINVAL);

        c->max_requests = n;
        return 0;
}

/* tsm_client_set_max_calls_in_flight(): see tsm.h. */
_public_ int tsm_client_set_max_calls_in_flight(TsmClient *c, unsigned n) {
        assert_return(c, -EINVAL);
        assert_return_client(c, n > 0 && n <= TSM_CALLS_IN_FLIGHT_LIMIT, -EINVAL);

        c->max_in_flight = n;
        /* Raised, the calls held that now fit go at once; lowered, those at tsmd stay. */
        if (c->vc)
                varlink_client_set_max_in_flight(c->vc, n);
        return 0;
}

/* tsm_client_reconnect(): see tsm.h. */
_public_ int tsm_client_reconnect(TsmClient *c) {
        struct TsmOpList old;
        VarlinkClient *vc = NULL;
        TsmOp *op;
        int r;

        assert_return(c, -EINVAL);
        if (c->n_dispatching > 0)
                return ltsm_error_set_local(c, -EDEADLK);

        /* Close the old connection first, so tsmd releases what it held. Its pending calls
         * are taken aside: callbacks they run below may already use the new connection. */
        LIST_INIT(&old);
        while ((op = LIST_FIRST(&c->ops))) {
                LIST_REMOVE(op, entry);
                LIST_INSERT_HEAD(&old, op, entry);
        }
        c->watch = NULL;
        c->vc = varlink_client_free(c->vc);
        ltsm_tokens_clear(c);
        /* The late replies of abandoned DescribeConnections went with it (the asynchronous ones
         * end below, each with its op). */
        c->n_describing -= c->n_describing_abandoned;
        c->n_describing_abandoned = 0;

        r = client_connect(c, &vc);
        if (r >= 0) {
                c->vc = vc;
                r = client_setup_connection(c);
                if (r < 0)
                        c->vc = varlink_client_free(c->vc);
        }
        if (r >= 0)
                ltsm_error_clear(c);
        else
                (void) ltsm_error_set_local(c, -ENOTCONN);

        c->n_busy++;
        while ((op = LIST_FIRST(&old))) {
                LIST_REMOVE(op, entry);
                LIST_INSERT_HEAD(&c->ops, op, entry); /* so ltsm_op_finish() finds it */
                if (!c->free_requested)
                        ltsm_op_fail(op, -ECANCELED);
                ltsm_op_finish(op);
        }
        if (ltsm_client_leave(c))
                return -ECANCELED;
        return r;
}

/* tsm_client_get_error_name(): see tsm.h. */
_public_ const char *tsm_client_get_error_name(const TsmClient *c) {
        return c ? c->error_name : NULL;
}

/* tsm_client_get_error_message(): see tsm.h. */
_public_ const char *tsm_client_get_error_message(const TsmClient *c) {
        return c && c->error_name ? c->error_message : NULL;
}

/* tsm_client_get_fd(): see tsm.h. */
_public_ int tsm_client_get_fd(const TsmClient *c) {
        assert_return(c, -EINVAL);
        /* A lost connection's too: its number stays taken until a reconnect (tsm.h). */
        if (!c->vc)
                return -ENOTCONN;
        return varlink_client_get_fd(c->vc);
}

/* tsm_client_get_events(): see tsm.h. */
_public_ int tsm_client_get_events(const TsmClient *c) {
        assert_return(c, -EINVAL);
        if (!c->vc)
                return 0;
        return varlink_client_get_events(c->vc);
}

/* tsm_client_process(): see tsm.h. */
_public_ int tsm_client_process(TsmClient *c) {
        int r;

        assert_return(c, -EINVAL);
        if (c->n_dispatching > 0)
                return ltsm_error_set_local(c, -EDEADLK);
        if (!c->vc || !varlink_client_is_connected(c->vc))
                return ltsm_error_set_local(c, -ENOTCONN);

        /* Once: it dispatches every complete reply it read (a blocking call's stops at that
         * call's, but ltsm_client_call_done() dispatched the rest), so what is left is in the
         * socket, which stays readable for it. Going round again after a short read read as
         * much again each time, without end for a peer that keeps the socket topped up: the
         * bound tsm.h gives is that of one varlink_client_process(). */
        c->n_busy++;
        r = varlink_client_process(c->vc);
        if (ltsm_client_leave(c))
                return 1; /* a callback freed the client */
        if (r < 0)
                return ltsm_error_set_failed(c, r);
        return r > 0;
}

/* ---- call helpers ------------------------------------------------------------------------ */

int ltsm_error_set_failed(TsmClient *c, int r) {
        if (r == -EPIPE)
                r = -ECONNRESET;
        /* A connection that died of anything else (out of memory while reading, a poll()
         * failure) is lost all the same: tsm.h promises that only these errors mean that. */
        if (c->vc && !varlink_client_is_connected(c->vc) && r != -ETIMEDOUT && r != -EPROTO &&
            r != -ENOTCONN)
                r = -ECONNRESET;
        return ltsm_error_set_local(c, r);
}

int ltsm_client_check_callable(TsmClient *c, bool blocking) {
        /* A blocking call from a callback would nest inside the wait or dispatch that runs it. */
        if (blocking && c->n_dispatching > 0)
                return ltsm_error_set_local(c, -EDEADLK);
        if (!c->vc || !varlink_client_is_connected(c->vc))
                return ltsm_error_set_local(c, -ENOTCONN);
        /* tsmd answers in call order and WatchEvents never finishes: nothing after it could
         * ever be answered. */
        if (c->watch) {
                ltsm_error_clear(c);
                return -EDEADLK;
        }
        return 0;
}

int ltsm_client_push_fd(TsmClient *c, int fd) {
        int copy, r;

        copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                return ltsm_error_set_local(c, negative_errno());
        /* The queue of fds to send is empty between calls (a call takes its fds along,
         * failing or not), so this one is number 0. */
        r = varlink_client_push_fd(c->vc, copy);
        if (r < 0)
                return ltsm_error_set_local(c, r);
        if (r != 0) {
                /* Cannot happen; but never send an fd the call does not name. */
                varlink_client_drop_fds(c->vc);
                return ltsm_error_set_local(c, -EIO);
        }
        return 0;
}

int ltsm_client_call_full(TsmClient *c, const char *method, json_object *params, int fd,
                          VarlinkReplyFunc on_abandoned, void *userdata, json_object **ret_reply) {
        _cleanup_(json_object_putp) json_object *p = params;
        json_object *reply = NULL;
        const char *error = NULL;
        int r;

        r = ltsm_client_check_callable(c, true);
        if (r < 0)
                return r;

        if (fd >= 0) {
                r = ltsm_client_push_fd(c, fd);
                if (r < 0)
                        return r;
        }

        c->n_busy++;
        /* Set last: it is the next blocking call's, whichever that is. */
        if (on_abandoned)
                varlink_client_on_abandoned_reply(c->vc, on_abandoned, userdata);
        r = varlink_client_call(c->vc, method, TAKE_PTR(p), &reply, &error);
        if (ltsm_client_leave(c))
                return -ECANCELED;
        if (r < 0)
                /* Either the connection died (and every pending callback ran with that), or
                 * the call timed out (-ETIMEDOUT: abandoned, its late reply to be dropped) or
                 * was not made (-ENOBUFS, -E2BIG, -EINPROGRESS with too many abandoned calls
                 * unanswered, -ENOMEM; its fd closed with it) and the
                 * connection goes on: nothing it holds is lost for a local hiccup. */
                return ltsm_error_set_failed(c, r);
        if (error)
                /* Replies read together with this answer are delivered now, as after a reply. */
                return ltsm_client_call_done_error(c, ltsm_error_set_reply(c, error, reply));

        ltsm_error_clear(c);
        *ret_reply = reply;
        return 0;
}

int ltsm_client_call(TsmClient *c, const char *method, json_object *params, int fd,
                     json_object **ret_reply) {
        return ltsm_client_call_full(c, method, params, fd, NULL, NULL, ret_reply);
}

int ltsm_client_call_done(TsmClient *c, int r) {
        /* SECURITY: the caller took the fd its reply names, if any: others tsmd sent with it
         * must not stay in the VMM until its next call. */
        if (c->vc)
                varlink_client_close_reply_fds(c->vc);
        if (!c->vc || LIST_EMPTY(&c->ops))
                return r;

        /* Replies to asynchronous calls made during the wait (from callbacks) may have been
         * read together with this call's reply: deliver them now, as nothing would wake the
         * caller's loop for them. */
        c->n_busy++;
        /* Once, as tsm_client_process(): it dispatches every complete reply buffered before it
         * reads, and reads no more than tsm.h says. Going round again after a short read held
         * the blocking call here for as long as a peer kept the socket topped up (a WatchEvents
         * stream started from a callback during the wait follows the call's reply); the rest
         * keeps the fd readable for the caller's loop. */
        (void) varlink_client_process(c->vc);
        if (ltsm_client_leave(c))
                return -ECANCELED; /* as if it came while the call waited */
        /* The callbacks set the error state for themselves: the call's is its own (cleared
         * for success or a failure without a Varlink error, ltsm_client_call_done_error()
         * restores tsmd's). */
        ltsm_error_clear(c);
        return r;
}

int ltsm_client_call_done_error(TsmClient *c, int r) {
        char *name = TAKE_PTR(c->error_name), *message = TAKE_PTR(c->error_message);

        r = ltsm_client_call_done(c, r);
        if (r == -ECANCELED) {
                free(name);
                free(message);
                return r; /* c is gone */
        }
        free(c->error_name);
        free(c->error_message);
        c->error_name = name;
        c->error_message = message;
        return r;
}

TsmOp *ltsm_op_new(const TsmOp *init) {
        TsmOp *op = malloc(sizeof(*op));

        if (op)
                *op = *init;
        return op;
}

void ltsm_op_finish(TsmOp *op) {
        TsmClient *c = op->client;

        LIST_REMOVE(op, entry);
        if (op->type == TSM_OP_GUEST_REQUEST)
                c->n_requests--;
        if (c->watch == op)
                c->watch = NULL;
        if (op->type == TSM_OP_DESCRIBE)
                ltsm_client_describing_end(c);
        if (op->destroy) {
                c->n_dispatching++;
                op->destroy(op->userdata);
                c->n_dispatching--;
        }
        free(op);
}
