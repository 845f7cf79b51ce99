/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A Varlink client on the same transport code as the server. Blocking calls for tools,
 * and an asynchronous mode for event loops that are not ours: the caller polls
 * varlink_client_get_fd() for varlink_client_get_events() and calls varlink_client_process()
 * when it is ready; callbacks run from inside varlink_client_process(). Never logs above
 * debug level. Runs in: clients (tsmctl, libtsm, tests).
 */
#pragma once

#include <json-c/json.h>

#include "macro.h"
#include "varlink-message.h"
#include "varlink-stream.h"

typedef struct VarlinkClient VarlinkClient;

/* One reply of an asynchronous or streamed call. `error` is NULL on success; local errors
 * (the connection broke, a timeout) are reported as io.tsmd.Disconnected / io.tsmd.TimedOut /
 * io.tsmd.Protocol. `parameters` is borrowed for the duration of the callback. Return < 0 to
 * drop the connection. */
typedef int (*VarlinkReplyFunc)(VarlinkClient *c, json_object *parameters, const char *error,
                                bool continues, void *userdata);

/* address: "unix:/path", "unix:@abstract" or a plain absolute or ./relative path. While the
 * server's listen backlog is full, retries for up to timeout_usec (-ETIMEDOUT after that). */
int varlink_client_connect_full(const char *address, uint64_t timeout_usec, VarlinkClient **ret);
/* The same, waiting up to 45 s for a full backlog. */
int varlink_client_connect(const char *address, VarlinkClient **ret);
/* Takes ownership of a connected stream socket (closed even on failure). */
int varlink_client_new_from_fd(int fd, VarlinkClient **ret);
VarlinkClient *varlink_client_free(VarlinkClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(VarlinkClient *, varlink_client_free);

int varlink_client_set_limits(VarlinkClient *c, const VarlinkLimits *limits);
/* Timeout for blocking calls, in microseconds; 0 waits forever. Default 45 s, as sd-varlink. */
void varlink_client_set_timeout(VarlinkClient *c, uint64_t usec);

typedef enum VarlinkClientFlags {
        /* A blocking call that times out is abandoned, not the connection: it returns
         * -ETIMEDOUT, and its reply, which still comes in its turn (replies come in call
         * order), is read and dropped, its fds closed; later calls wait behind it. While
         * VARLINK_CLIENT_ABANDONED_MAX abandoned ones are still unanswered (once what came
         * was read), a blocking call is refused, not made (-EINPROGRESS, the connection as it
         * was), so that they stay bounded; asynchronous calls are not. Without the flag a
         * timeout closes the connection (-ETIMEDOUT). */
        VARLINK_CLIENT_ABANDON_TIMED_OUT = 1U << 0,
        /* A connection that died keeps its fd number until varlink_client_free(): the socket
         * is shut down where it is (the peer sees the hang-up; what it sent and we did not
         * read is dropped, fds closed: varlink_stream_shutdown()), so that an event loop still
         * watching the number never watches an fd opened later under it, and finds it still in
         * its epoll set, reporting POLLHUP. varlink_client_get_fd() keeps returning it. */
        VARLINK_CLIENT_KEEP_FD = 1U << 1,
} VarlinkClientFlags;
#define VARLINK_CLIENT_ABANDONED_MAX 8U

/* VarlinkClientFlags; none by default. */
void varlink_client_set_flags(VarlinkClient *c, unsigned flags);

/* Attaches an fd (ownership passes) to the next call; returns its index in that call. A call
 * that fails closes the fds pushed for it, whether it failed before queueing (-ENOBUFS with
 * the output queue full, -E2BIG, -ENOMEM) or not. */
int varlink_client_push_fd(VarlinkClient *c, int fd);
/* Closes the fds pushed for the next call. */
void varlink_client_drop_fds(VarlinkClient *c);
/* Takes the index-th fd that came with the current reply (-ENXIO if none; -EMFILE if it was
 * sent but our RLIMIT_NOFILE left no room for it). The current reply is the one being
 * delivered to a callback, or the last reply of a blocking call. */
int varlink_client_take_fd(VarlinkClient *c, size_t index);
/* Closes the fds of the current reply that were not taken: once its caller took what the
 * reply names, the rest are the peer's to push on us, not to be kept until the next reply. */
void varlink_client_close_reply_fds(VarlinkClient *c);

/* Blocking call. Returns 0 when a reply arrived: *ret_parameters (borrowed, valid until the
 * next call on this client) and *ret_error (NULL on success, borrowed likewise). Negative
 * errno for local failures: -ETIMEDOUT, -ECONNRESET, -EPROTO with the connection closed;
 * -ENOBUFS (output queue full), -E2BIG (call too large), -EINPROGRESS (too many abandoned
 * calls unanswered, VARLINK_CLIENT_ABANDON_TIMED_OUT), -ENOMEM with the call not made and the
 * connection as it was. Takes ownership of parameters. */
int varlink_client_call(VarlinkClient *c, const char *method, json_object *parameters,
                        json_object **ret_parameters, const char **ret_error);

/* Blocking call with "more": callback for every reply until the final one. */
int varlink_client_call_more(VarlinkClient *c, const char *method, json_object *parameters,
                             VarlinkReplyFunc callback, void *userdata);

/* For the next blocking call only: should it be abandoned, its final reply goes to callback
 * (continues false) before it is dropped, from wherever replies are read; the reply's fds can
 * be taken there (varlink_client_take_fd()), the rest are closed after it. For a call whose
 * success leaves something the caller must undo. The callback makes no blocking call. */
void varlink_client_on_abandoned_reply(VarlinkClient *c, VarlinkReplyFunc callback, void *userdata);

/* Sends a call with "oneway" (no reply) and flushes it. */
int varlink_client_send_oneway(VarlinkClient *c, const char *method, json_object *parameters);

/* Queues a call with "oneway" and sends it at once if the socket takes it, else from
 * varlink_client_process(): never blocks (from a callback too). */
int varlink_client_queue_oneway(VarlinkClient *c, const char *method, json_object *parameters);

/* Sends a call, at once if the socket takes it, else from varlink_client_process(); the
 * callback runs from varlink_client_process() (or while a later blocking call waits), never
 * from here. flags: VARLINK_CALL_MORE. */
int varlink_client_call_async(VarlinkClient *c, const char *method, json_object *parameters,
                              unsigned flags, VarlinkReplyFunc callback, void *userdata);

/* The socket; -ENOTCONN once the connection died (it is closed then), unless
 * VARLINK_CLIENT_KEEP_FD. */
int varlink_client_get_fd(const VarlinkClient *c);
/* poll(2) events to wait for: POLLIN while replies are expected, POLLOUT while output waits. */
short varlink_client_get_events(const VarlinkClient *c);
/* Non-blocking step: writes what is queued, dispatches every complete reply buffered or read
 * (a blocking call's wait stops at that call's reply) and reads at most 4 times, 16 KiB each
 * (64 KiB). A caller that calls it once per readiness keeps that bound; calling it again at
 * once reads as much again. Returns 1 if progress was made, 0 if there was nothing to do, 2 if
 * it stopped after its last read with more to read (the fd stays readable for it),
 * negative errno when the connection is unusable (after closing it and failing every pending
 * callback). */
int varlink_client_process(VarlinkClient *c);
size_t varlink_client_get_n_pending(const VarlinkClient *c);

/* Bounds the calls in flight: sent (or being sent) and not answered, abandoned ones included.
 * Calls beyond it are held: queued (they count against the output queue's size, and a call
 * that fails to queue fails as always), in call order, but not written, so that they can be
 * taken back whole (varlink_client_cancel_held()); each goes when a reply makes room. Oneway
 * calls are not counted, but go in their turn behind held ones. 0 (the default): no bound.
 * A server answering in call order makes a call wait behind those in flight only: a bound
 * is what bounds that wait for a call made after the others were taken back. */
void varlink_client_set_max_in_flight(VarlinkClient *c, unsigned n);
/* Calls held now. */
size_t varlink_client_get_n_held(const VarlinkClient *c);

typedef bool (*VarlinkCallMatchFunc)(void *userdata, void *arg);
/* Takes back the held asynchronous calls whose userdata match(userdata, arg) accepts: their
 * messages leave the output queue whole (their fds closed), never one partly written; the
 * calls in flight, and blocking calls, stay. Their callbacks are not run: *ret_userdata (to
 * free()) gets their userdata, in call order, for the caller to tell them. Returns how many
 * (0: none held, or the connection died: its calls failed already); -ENOMEM (nothing taken).
 * Safe from a callback: a call being answered is in flight, never held. */
int varlink_client_cancel_held(VarlinkClient *c, VarlinkCallMatchFunc match, void *arg, void ***ret_userdata,
                               size_t *ret_n);
bool varlink_client_is_connected(const VarlinkClient *c);
/* Takes the socket out of the client, to hand the connection on (to another process, say):
 * only with nothing under way, so that the next owner's first message is read and written whole
 * and no reply it reads answers a call of ours. -EBUSY (nothing changed) while a call awaits its
 * reply (an abandoned one included) or the stream is not at a message boundary (see
 * varlink_stream_detach_fd()), or fds are pushed for the next call; -ENOTCONN once the
 * connection died. On success the client is dead, with no fd: free it. */
int varlink_client_detach_fd(VarlinkClient *c, int *ret_fd);
/* Moves the socket to fd number fd (varlink_stream_move_fd()); -ENOTCONN once it died without
 * VARLINK_CLIENT_KEEP_FD or was detached. */
int varlink_client_move_fd(VarlinkClient *c, int fd);
