/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A Varlink server on libevent: listening sockets, connections with peer credentials and
 * per-UID accounting, a method table checked against the IDL, in-order replies for
 * pipelined and deferred calls, streamed replies ("more"), fd passing, and the
 * org.varlink.service interface. Runs in: worker.
 *
 * A method handler gets a VarlinkCall. It replies at once or keeps a reference and replies
 * later (varlink_call_ref()); replies leave in the order the calls arrived, whatever order
 * the handlers finish in. A handler that returns a negative errno without replying gets
 * io.tsmd.System{errno, errnoName} sent for it.
 */
#pragma once

#include <sys/socket.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "macro.h"
#include "varlink-message.h"
#include "varlink-stream.h"

typedef struct VarlinkServer VarlinkServer;
typedef struct VarlinkConn VarlinkConn;
typedef struct VarlinkCall VarlinkCall;

typedef int (*VarlinkMethodFunc)(VarlinkCall *call, json_object *parameters, void *userdata);
/* Debug builds check every reply against the IDL and log an error containing this for one
 * that does not match; the tests fail on it. */
#define VARLINK_REPLY_MISMATCH "does not match the IDL"

/* Called after a connection is accepted (return < 0 to refuse it) and when it goes away. */
typedef int (*VarlinkConnectFunc)(VarlinkServer *s, VarlinkConn *c, void *userdata);
typedef void (*VarlinkDisconnectFunc)(VarlinkServer *s, VarlinkConn *c, void *userdata);

/* The server refused something on its own: a connection past a limit (c NULL), a message or a
 * timeout that ends its connection (call NULL), a reply too large to send, answered with
 * ReplyTooLarge in its place (call NULL: the call's own answer was given), or, before any
 * method ran, a call it answers with a standard error (call set, its answer not given yet: the
 * callback may intercept it). error names the refusal (varlink-errors.h); peer is who it
 * refused; reason, where the name alone would mislead, says why in the server's words (a
 * connection closed to make room for an administrator), else NULL. */
typedef void (*VarlinkRefusalFunc)(VarlinkServer *s, const struct ucred *peer, VarlinkConn *c, VarlinkCall *call,
                                   const char *error, const char *reason, void *userdata);
/* Whether the server's user keeps anything for the connection that its close would lose (what
 * it made, a subscription worth keeping): asked of one that is idle and holds nothing in the
 * server but subscriptions, to close it for a new one when MaxConnections= is reached, and of
 * an admin listener's, to close it for an administrator. */
typedef bool (*VarlinkConnHoldsFunc)(VarlinkConn *c, void *userdata);

int varlink_server_new(struct event_base *base, VarlinkServer **ret);
VarlinkServer *varlink_server_free(VarlinkServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(VarlinkServer *, varlink_server_free);

int varlink_server_set_info(VarlinkServer *s, const char *vendor, const char *product,
                            const char *version, const char *url);
/* New limits, for every connection: the connection limits to those accepted afterwards (none is
 * dropped for them), the others from the next message on. A message under way (some of it
 * received) finishes under the MaxMessageSize=, MaxJsonDepth=, MaxJsonValues= and
 * MessageTimeoutSec= it started with; what is sent from now on obeys the new ones; a connection
 * that has not called yet gets the new IdleTimeoutSec= counted from now. -EINVAL for nonsensical
 * values. */
int varlink_server_set_limits(VarlinkServer *s, const VarlinkLimits *limits);
const VarlinkLimits *varlink_server_get_limits(const VarlinkServer *s);
/* Connections closed by the message or idle timeout so far. */
uint64_t varlink_server_get_n_timed_out(const VarlinkServer *s);
/* How many received fds all clients may park on unfinished messages: MaxFds=, or a quarter of
 * RLIMIT_NOFILE as of the last varlink_server_set_limits(), never more than half. */
size_t varlink_server_get_fd_budget(const VarlinkServer *s);
/* The same for limits, with RLIMIT_NOFILE as it is now. */
size_t varlink_fd_budget(const VarlinkLimits *limits);
void varlink_server_set_userdata(VarlinkServer *s, void *userdata);
void *varlink_server_get_userdata(const VarlinkServer *s);
/* A connection on_connect fails is refused (ConnectionSetupFailed, to the refusal callback) and
 * closed. */
void varlink_server_set_connection_callbacks(VarlinkServer *s, VarlinkConnectFunc on_connect,
                                             VarlinkDisconnectFunc on_disconnect);
void varlink_server_set_refusal_callback(VarlinkServer *s, VarlinkRefusalFunc on_refusal);
/* With it, a connection past MaxConnections= (not an admin listener's) makes room: the uid that
 * holds the most connections loses the one idle longest, if one has been idle (no complete
 * message, no call in flight) for IdleTimeoutSec= or more, has no call in flight but
 * subscriptions (a "more" call whose handler is done, waiting to notify), nothing arriving, no
 * fds parked, no reply whose delivery is waited for, and holds nothing by holds(): refused as
 * io.tsmd.IdleTimeout. What its client did not read does not keep it. Without it (or with
 * IdleTimeoutSec=0), the new connection is refused. */
void varlink_server_set_holds_callback(VarlinkServer *s, VarlinkConnHoldsFunc holds);
/* Whether the server's user names the peer of a connection (knows it: a caller its policy has a
 * rule for, say). With it, the connections of peers it does not name, of listeners other than
 * the admin ones, may number max_unnamed_connections together: past that, a new one is refused
 * as io.tsmd.TooManyConnections {maxUnnamedConnections} (on record, with the reason), and those
 * it names are bound by max_connections and max_connections_per_uid alone. Asked once of each
 * such connection, right after on_connect (which may identify the peer); the connection keeps
 * the class it got then until it goes, whatever the user names later. Without it, every peer
 * counts as named. */
typedef bool (*VarlinkConnNamedFunc)(VarlinkConn *c, void *userdata);
void varlink_server_set_named_callback(VarlinkServer *s, VarlinkConnNamedFunc named);
/* Whether the peer of an admin listener's connection (its socket: fd, for SO_PEERGROUPS)
 * administers. With it, an administrator connecting past max_admin_connections takes the place
 * of someone else's connection there (refused as io.tsmd.TooManyConnections): of the uid that
 * holds the most, the one idle longest. Asked only then, of the newcomer and of the connections
 * there, and of a newcomer whose uid holds max_admin_connections_per_uid there already: an
 * administrator is not bound by that. Without it, the newcomer is refused. */
typedef bool (*VarlinkAdministersFunc)(VarlinkServer *s, const struct ucred *peer, int fd, void *userdata);
void varlink_server_set_administers_callback(VarlinkServer *s, VarlinkAdministersFunc administers);

/* Registers an interface from its IDL text (which must outlive the server). */
int varlink_server_add_interface(VarlinkServer *s, const char *idl);
/* Binds "interface.Method" to a handler; the method must exist in a registered interface. */
int varlink_server_bind_method(VarlinkServer *s, const char *method, VarlinkMethodFunc func);
/* Declares that a bound method acts (changes state) and the most its final answer, reply or
 * any error, can take: max_reply_size bytes (with the NUL, as sent) and max_reply_fds fds. A
 * call of it on a connection whose MaxMessageSize= (or the server's MaxFdsPerMessage=) is
 * smaller is refused before its handler runs, with io.tsmd.ReplyMayNotFit, instead of running
 * and having its answer replaced by io.tsmd.ReplyTooLarge. Methods that only read need none:
 * their answers may be replaced harmlessly. -ENOENT for a method not bound. */
int varlink_server_set_reply_bound(VarlinkServer *s, const char *method, size_t max_reply_size,
                                   unsigned max_reply_fds);
/* The method with the smallest bound that limits l could not carry (a call of it would be
 * refused), or NULL if they carry every one. */
const char *varlink_server_find_unfit_method(const VarlinkServer *s, const VarlinkLimits *l);
/* Every method of every registered interface (except org.varlink.service) has a handler? If
 * not, -ENOENT and its name in *ret_missing (valid until the next call on this thread). */
int varlink_server_check_complete(VarlinkServer *s, const char **ret_missing);

/* Administration: the server keeps a few spare fds that only connections accepted here may use
 * (for themselves and for what on_connect opens), so that with every other fd of the process
 * taken an admin can still connect, to see and fix what took them. Its connections count
 * against max_admin_connections and, per uid, max_admin_connections_per_uid, not max_connections
 * or max_connections_per_uid (and see varlink_server_set_administers_callback()). Out of fds (EMFILE,
 * ENFILE), the other listeners wait (a second at a time, or until a connection goes). */
#define VARLINK_LISTEN_ADMIN (1U << 0)

/* Adopts a listening socket (from socket activation, or varlink_server_listen_path_full()).
 * Connections accepted there may only use the listed interfaces (a NULL-terminated malloc'd
 * list, owned from now on; NULL: all), plus org.varlink.service. Others are InterfaceNotFound
 * for them, and GetInfo does not list them. flags: VARLINK_LISTEN_*. */
int varlink_server_listen_fd_full(VarlinkServer *s, int fd, char **interfaces, unsigned flags);
/* Creates, binds and adopts a socket at path with the given mode, as
 * varlink_server_listen_fd_full(); an existing socket at path is replaced. */
int varlink_server_listen_path_full(VarlinkServer *s, const char *path, mode_t mode, char **interfaces,
                                    unsigned flags);

/* Adopts an already connected socket (ownership passes, closed on failure), e.g. from
 * socket activation with Accept=yes, or a socketpair in tests and fuzzers. */
int varlink_server_add_connection(VarlinkServer *s, int fd);

unsigned varlink_server_get_n_connections(const VarlinkServer *s);
/* Stops accepting new connections; existing ones carry on (graceful shutdown). */
void varlink_server_stop_listening(VarlinkServer *s);
/* Closes every connection and listener (used on shutdown). */
void varlink_server_shutdown(VarlinkServer *s);

/* Connections */
VarlinkConn *varlink_conn_ref(VarlinkConn *c);
VarlinkConn *varlink_conn_unref(VarlinkConn *c);
const struct ucred *varlink_conn_get_peer(const VarlinkConn *c);
/* Whether the socket this connection came through serves that interface. */
bool varlink_conn_allows_interface(const VarlinkConn *c, const char *interface);
/* The socket, for further peer queries (SO_PEERGROUPS, SO_PEERPIDFD); not for I/O. */
int varlink_conn_get_fd(const VarlinkConn *c);
void varlink_conn_set_userdata(VarlinkConn *c, void *userdata);
void *varlink_conn_get_userdata(const VarlinkConn *c);
VarlinkServer *varlink_conn_get_server(const VarlinkConn *c);
/* Its MaxMessageSize= (bytes, with the NUL), the server's current one: a reply longer is answered
 * io.tsmd.ReplyTooLarge in its place. 0 once disconnected: nothing reaches the peer any more. */
size_t varlink_conn_get_max_message_size(const VarlinkConn *c);
bool varlink_conn_is_connected(const VarlinkConn *c);
/* The same for a call that sizes its answer by it (0: none reaches the peer), which keeps that
 * room until it answers, should a reload lower the limit meanwhile. */
size_t varlink_call_reserve_reply_room(VarlinkCall *call);
/* Drops the connection after flushing what is queued. */
void varlink_conn_close(VarlinkConn *c);

/* Calls */
VarlinkCall *varlink_call_ref(VarlinkCall *call);
VarlinkCall *varlink_call_unref(VarlinkCall *call);
DEFINE_TRIVIAL_CLEANUP_FUNC(VarlinkCall *, varlink_call_unref);
VarlinkConn *varlink_call_get_conn(const VarlinkCall *call);
const char *varlink_call_get_method(const VarlinkCall *call);
/* Whether the method is one that an interface served on the connection declares (false for a call
 * refused as naming no such interface or method, or before its method was looked up): only
 * then is its name not the client's choice. */
bool varlink_call_method_is_declared(const VarlinkCall *call);
unsigned varlink_call_get_flags(const VarlinkCall *call);
bool varlink_call_is_answered(const VarlinkCall *call);

/* Final reply; takes ownership of parameters (NULL means {}). -ENOTCONN if the peer left,
 * -EALREADY if answered. An answer (by any of these) that cannot be built for lack of memory
 * fails; the call is answered io.tsmd.System (ending a "more" call) when its handler returns,
 * whatever that returns, or at once if the handler is gone, or, if that cannot be built either,
 * the connection goes: its client must not wait for it for ever. */
int varlink_call_reply(VarlinkCall *call, json_object *parameters);
/* Intermediate reply of a "more" call (continues: true). -EBADE without "more"; -EMSGSIZE if it
 * was larger than the connection's MaxMessageSize=: the call is over then, ended with
 * io.tsmd.ReplyTooLarge, and whoever keeps it for more notifications should let it go. */
int varlink_call_notify(VarlinkCall *call, json_object *parameters);
int varlink_call_error(VarlinkCall *call, const char *error, json_object *parameters);
/* The same with the parameters given as key, value, ..., NULL: each value (a json_object) is
 * taken, also on failure. A NULL value (a json_object_new_*() that failed) or a failure to put
 * them together is -ENOMEM, and nothing is sent then. */
int varlink_call_error_kv(VarlinkCall *call, const char *error, ...) _sentinel_;
int varlink_call_error_invalid_parameter(VarlinkCall *call, const char *parameter);
int varlink_call_error_errno(VarlinkCall *call, int error);

/* From its handler: the call's method is to run later, from varlink_call_run(), say once
 * something it needs is known. Meanwhile the call waits unanswered as a deferred one does, and
 * what came with it (its parameters, its fds) waits with it: the fds count against its uid's
 * MaxFdsPerUid= as fds in its input do. Nothing its client sent after it is read or run until
 * it has run or is answered (the next round of the loop at the earliest). Answering it instead (a refusal) drops them. -EINVAL
 * outside its handler or once answered. */
int varlink_call_postpone(VarlinkCall *call);
bool varlink_call_is_postponed(const VarlinkCall *call);
/* Runs a postponed call's method now: func(call, parameters, userdata) as its handler, with
 * the call's parameters and fds; a negative return without an answer is answered as a
 * handler's is. What came with the call goes afterwards. -ENOTCONN without running it when
 * its client is gone or being dropped (the call stays unanswered: its owner lets it go). */
int varlink_call_run(VarlinkCall *call, VarlinkMethodFunc func, void *userdata);

/* Intercepting the final answer: the interceptor gets the message (reply or error, owned)
 * instead of the client, and passes it, or another, on with varlink_call_release() when it
 * is ready (NULL: the one to pass on could not be built; the connection is dropped).
 * Intermediate replies of "more" calls are not intercepted. */
typedef void (*VarlinkReplyInterceptor)(VarlinkCall *call, json_object *message, void *userdata);
void varlink_call_set_interceptor(VarlinkCall *call, VarlinkReplyInterceptor f, void *userdata);
int varlink_call_release(VarlinkCall *call, json_object *message);

/* Told once what became of the final answer of a call: 0 when it was a reply (not an error)
 * and has been written to the socket in full, so the peer reads it even if this process dies
 * now; -ECANCELED when it was an error; -ENOTCONN when it was not, and will not be, written
 * entirely (the peer left, a oneway call, the server shut down: a reply may have reached the
 * peer all the same). Called from the loop, or from inside the call's unref or its connection's
 * disconnect: on failure, touch nothing but userdata. Setting it again replaces it uncalled. */
typedef void (*VarlinkSentFunc)(int result, void *userdata);
void varlink_call_set_sent_callback(VarlinkCall *call, VarlinkSentFunc f, void *userdata);

void varlink_call_set_userdata(VarlinkCall *call, void *userdata);
void *varlink_call_get_userdata(const VarlinkCall *call);

/* fd passing. push_fd takes ownership and returns the index the fd will have in the next
 * reply of this call. peek_fd returns the index-th fd that came with the call (owned by the
 * call): -ENXIO for an index out of range, -EMFILE for one the client sent that we could not
 * receive: our RLIMIT_NOFILE was reached. */
int varlink_call_push_fd(VarlinkCall *call, int fd);
int varlink_call_peek_fd(VarlinkCall *call, size_t index);
size_t varlink_call_get_n_fds(const VarlinkCall *call);

/* Validates a fd index field in parameters ("…FileDescriptor": int) and returns the fd: -EINVAL
 * if the field is not an int, else as varlink_call_peek_fd(). */
int varlink_call_get_fd_parameter(VarlinkCall *call, json_object *parameters, const char *field);

/* Introspection, for org.varlink.service and for tests. */
void varlink_server_get_info(const VarlinkServer *s, const char **vendor, const char **product,
                             const char **version, const char **url);
size_t varlink_server_get_n_interfaces(const VarlinkServer *s);
const struct VarlinkInterface *varlink_server_get_interface(const VarlinkServer *s, size_t i);
const struct VarlinkInterface *varlink_server_find_interface(const VarlinkServer *s, const char *name);
