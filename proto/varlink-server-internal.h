/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Varlink server's insides that its files share (varlink-server.c, varlink-server-conn.c,
 * varlink-server-call.c, varlink-server-method.c, varlink-server-limits.c, varlink-listen.c):
 * the server's, its listeners', its connections', its calls' and its method table's state.
 * Internal to proto/: not installed, not for daemon/ or client/. Runs in: worker. */
#pragma once

#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "idle-flush.h"
#include "json-write.h"
#include "macro.h"
#include "varlink-idl.h"
#include "varlink-server.h"

/* Fds kept open for VARLINK_LISTEN_ADMIN listeners (see on_listener()): given up for each
 * accept() there, for an admin's connection and what its setup opens for a moment (the daemon's
 * peer identity: a pidfd and a /proc file), then taken back as far as the process has fds: with
 * none left, each admin connection keeps one until it goes. */
#define SPARE_FDS 4

typedef struct Interface Interface;
typedef struct Method Method;
typedef struct Listener Listener;

typedef struct UidCount {
        uid_t uid;
        unsigned n;       /* connections, n_admin of them through VARLINK_LISTEN_ADMIN listeners */
        unsigned n_admin;
        size_t buffered; /* over its connections: see conn_account() */
        size_t n_fds;    /* received fds parked on unfinished messages, likewise */
} UidCount;

struct VarlinkConn {
        unsigned n_ref;
        VarlinkServer *server;
        VarlinkStream *stream;
        struct event *ev_read, *ev_write, *ev_process;
        struct event *ev_hangup;  /* see conn_watch_hangup() */
        int hangup_fd;
        struct event *ev_timeout; /* see conn_update_timeout() */
        struct event *ev_idle;    /* until the first complete message: IdleTimeoutSec= */
        uint64_t timeout_mark;    /* what ev_timeout waits for: 0 the first byte, else 1 + the
                                   * stream position of the message that must complete */
        struct ucred peer;
        void *userdata;
        const char *const *interfaces; /* from the listener; NULL: everything */
        bool connected;
        bool closing;
        bool failing; /* to be disconnected from the loop: see conn_disconnect_soon() */
        bool read_paused;
        bool write_queued; /* in the server's write_queue, holding a reference */
        bool called;       /* a complete message arrived: IdleTimeoutSec= is over */
        bool admin;        /* accepted by a VARLINK_LISTEN_ADMIN listener */
        bool unnamed;      /* counted in the server's n_unnamed_conns: see conn_classify() */
        /* The refusal it is told by name as it goes, and the limit that names (see
         * conn_refuse_by_name()); NULL: none, a bare close. */
        const char *refusal;
        uint64_t refusal_limit;
        uint64_t idle_since; /* monotonic µs: its last complete message, or its last call answered */

        TAILQ_HEAD(, VarlinkCall) calls;
        STAILQ_HEAD(, SentWaiter) sent_waiters; /* in stream order */
        unsigned n_calls;
        unsigned n_streaming;
        unsigned n_postponed; /* its calls postponed: nothing after them is dispatched */
        size_t held_output; /* bytes of replies waiting for earlier calls (calls' outputs), NULs included */
        size_t held_input;  /* bytes of messages its calls still hold (until answered) */
        size_t buffered;    /* what conn_account() last counted for it in its uid's total */
        size_t buffered_peak;
        size_t n_fds;       /* likewise, received fds parked on an unfinished message, and
                             * those of postponed calls */
        size_t held_fds;    /* fds of its postponed calls */
        TAILQ_ENTRY(VarlinkConn) entry;
        TAILQ_ENTRY(VarlinkConn) write_entry;
};

struct VarlinkServer {
        struct event_base *base;
        VarlinkLimits limits;
        char *vendor, *product, *version, *url;
        void *userdata;
        VarlinkConnectFunc on_connect;
        VarlinkDisconnectFunc on_disconnect;
        VarlinkRefusalFunc on_refusal;
        VarlinkConnHoldsFunc holds;
        VarlinkAdministersFunc administers;
        VarlinkConnNamedFunc named;

        Interface *interfaces;
        size_t n_interfaces, allocated_interfaces;
        Method *methods;
        size_t n_methods, allocated_methods;
        Listener **listeners;
        size_t n_listeners, allocated_listeners;
        struct event *accept_resume;
        int spare_fds[SPARE_FDS]; /* see SPARE_FDS */
        unsigned n_spare_fds;
        bool want_spare_fds;      /* an admin listener is there */
        struct event *trim; /* see heap_trim_soon() */
        uint64_t last_trim_usec;
        bool accept_paused;
        bool closer_paused; /* accept_paused for the fds waiting to be closed (varlink-listen.c) */
        bool stopped_listening;

        /* The durations of limits.message/idle_timeout_sec as libevent common timeouts (or
         * the plain values in message/idle_tv, should libevent have no slot left). */
        const struct timeval *message_timeout, *idle_timeout;
        struct timeval message_tv, idle_tv;
        uint64_t n_timed_out;

        TAILQ_HEAD(, VarlinkConn) conns;
        unsigned n_conns;
        unsigned n_admin_conns; /* of n_conns, those of VARLINK_LISTEN_ADMIN listeners */
        unsigned n_unnamed_conns; /* of n_conns, those of peers the user does not name (conn_classify()) */
        UidCount *uids;
        size_t n_uids, allocated_uids;
        size_t buffered;  /* over all connections: see conn_account() */
        size_t n_fds;     /* likewise */
        size_t fd_budget; /* limits.max_fds, or what RLIMIT_NOFILE leaves (varlink_server_update_fd_budget()) */
        struct timeval round; /* the loop's cached time when round_parsed started counting */
        size_t round_parsed;

        /* Connections with replies to write: written together once the loop is idle (or 1 ms
         * from the first at the latest), so a pipelining client gets a round's replies in one
         * write, and the loop finishes its round before it writes. */
        TAILQ_HEAD(, VarlinkConn) write_queue;
        IdleFlush *write_flush;

        JsonText reply_text; /* call_send()'s, reused (see REPLY_TEXT_KEEP) */
        char *read_spare; /* the connections' streams' (varlink_stream_set_read_spare()) */
};

struct Listener {
        VarlinkServer *server;
        int fd;
        struct event *event;
        char **interfaces; /* what connections from here may use; NULL: everything */
        bool admin;        /* VARLINK_LISTEN_ADMIN */
};

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

static inline char **strv_free(char **l) {
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free);

/* varlink-server.c */
void varlink_server_refused(VarlinkServer *s, const struct ucred *peer, VarlinkConn *c, VarlinkCall *call,
                            const char *error);
/* The same with the server's reason, for a refusal whose name alone does not say why. */
void varlink_server_refused_because(VarlinkServer *s, const struct ucred *peer, VarlinkConn *c, const char *error,
                                    const char *reason);

/* varlink-server-conn.c */
int conn_new(VarlinkServer *s, int fd, const char *const *interfaces, bool admin);
void conn_disconnect(VarlinkConn *c);
void conn_disconnect_soon(VarlinkConn *c);
void conn_schedule(VarlinkConn *c);
void conn_set_closing(VarlinkConn *c);
void conn_want_write(VarlinkConn *c);
void conn_on_write_flush(void *userdata);
/* A refusal's error ({parameter: value}, or no parameters with parameter NULL) into fd, a socket
 * about to be closed, as the answer to the peer's oldest call in flight or its next: AF_UNIX
 * hands the peer what is queued before the end of the stream, and before the ECONNRESET of a
 * close that left its call unread. SECURITY: one nonblocking send() of a short message, never
 * queued: a socket that does not take it at once is closed without it. */
void varlink_refusal_send(int fd, const char *error, const char *parameter, uint64_t value);

/* varlink-server-call.c */
/* A "more" call whose handler is done and that only waits to be told of changes (GetStatus,
 * WatchEvents): nothing of it runs, waits or is held back behind an earlier call. */
bool call_only_subscribes(const VarlinkCall *call);
void conn_sent_progress(VarlinkConn *c);
void conn_sent_fail_all(VarlinkConn *c);
void call_drop_input(VarlinkCall *call);
int call_error_reply_may_not_fit(VarlinkCall *call, const char *limit, size_t needed, size_t max);

/* varlink-server-method.c */
void conn_dispatch_message(VarlinkConn *c, json_object *message, size_t size, int *fds, size_t n_fds);
void call_validate_reply(VarlinkCall *call, const char *error, json_object *parameters); /* VARLINK_VALIDATE_REPLIES */

/* varlink-server-limits.c */
void varlink_server_update_fd_budget(VarlinkServer *s);
UidCount *varlink_server_uid_count(VarlinkServer *s, uid_t uid);
int conn_account(VarlinkConn *c);
const char *conn_account_refusal(int error);
/* *ret_room_owed: admitted on the condition that conn_classify() makes room for it. */
int conn_admit(VarlinkServer *s, int fd, const struct ucred *peer, bool admin, bool *ret_room_owed);
int conn_classify(VarlinkConn *c, bool room_owed);
int conn_attach_uid(VarlinkConn *c);
void conn_detach_uid(VarlinkConn *c);

/* varlink-listen.c */
void varlink_server_spare_fds_refill(VarlinkServer *s);
void varlink_server_spare_fds_release(VarlinkServer *s);
void varlink_server_accept_resume(VarlinkServer *s);
