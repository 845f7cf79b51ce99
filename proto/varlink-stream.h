/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Varlink transport, independent of any event loop: NUL-terminated JSON messages on a
 * non-blocking AF_UNIX stream socket, with file descriptors attached to the first byte of
 * the message they belong to (SCM_RIGHTS), as systemd does. The server drives it from
 * libevent, the client from poll() or the caller's own loop. Runs in: worker, clients.
 *
 * Input is consumed one message at a time and only read from the socket when no complete
 * message is buffered, so a connection buffers at most one maximum-size message plus one
 * read chunk, and at most one read's worth of received fds: that is what bounds a peer.
 */
#pragma once

#include <json-c/json.h>

#include <sys/types.h>

#include "macro.h"

typedef struct VarlinkLimits {
        size_t max_message_size;      /* bytes, including the terminating NUL */
        size_t max_output_size;       /* bytes queued for a slow reader before giving up */
        unsigned max_depth;           /* JSON nesting */
        unsigned max_json_values;     /* JSON values (containers and scalars) per received message; 0: none */
        unsigned max_fds_per_message; /* received and sent */
        unsigned max_pending_calls;   /* per connection, server side */
        unsigned max_connections;     /* per server, but those of VARLINK_LISTEN_ADMIN listeners */
        unsigned max_connections_per_uid;
        /* of max_connections, those of peers the server's user does not name (see
         * varlink_server_set_named_callback()); meant to be below max_connections */
        unsigned max_unnamed_connections;
        unsigned max_admin_connections; /* those of VARLINK_LISTEN_ADMIN listeners, counted apart */
        unsigned max_admin_connections_per_uid; /* of those, one uid's; administrators are not bound */
        size_t max_buffered_per_uid;  /* bytes in and out over a uid's connections, server side */
        size_t max_buffered;          /* the same over all connections, server side */
        unsigned max_fds_per_uid;     /* server side: received fds of messages not complete yet, per uid */
        unsigned max_fds;             /* the same over all connections; 0: a quarter of RLIMIT_NOFILE */
        unsigned message_timeout_sec; /* server side: first byte of a message to its NUL; 0: none */
        unsigned idle_timeout_sec;    /* server side: connect to the first complete message; 0: none */
} VarlinkLimits;

/* The smallest MaxMessageSize= a server takes: room for the answers it gives on its own
 * (io.tsmd.ReplyTooLarge, io.tsmd.ReplyMayNotFit) at their longest. */
#define VARLINK_MAX_MESSAGE_SIZE_MIN 256U

/* SCM_MAX_FD: the most fds the kernel passes in one message. */
#define VARLINK_FDS_PER_MESSAGE_MAX 253U

/* 16 MiB messages, 4096/1024 connections and 253 fds match systemd's sd-varlink. JSON depth
 * is 64: our interfaces nest at most five levels, and systemd's 2048 only buys attack surface.
 * The size stays at 16 MiB because replies share it (a QueryAudit page of 10000 records is
 * several MiB); what makes a large message cheap is the bound on its JSON values: our calls
 * carry a dozen, their bulk in one base64 string, while json-c spends ~80 bytes and a malloc()
 * per value, so 16 MiB of "0," would be 8 million objects and seconds of the loop.
 * Our clients write a message in one go, so 10 s to complete one only hurts a trickling peer
 * (slowloris). A connection must send its first call within a minute (VMMs connect when they
 * start using tsmd; one that has called may then stay idle for days): connections that never
 * call would otherwise hold MaxConnections= slots for good. Those per-connection bounds times
 * 1024 connections would let one user make tsmd buffer 32 GiB: what a uid's connections
 * buffer together, unfinished messages in and unread replies out, is bounded on its own, to
 * room for a few largest messages, and what all uids buffer together too. The same holds for
 * fds received with messages not complete yet (253 each): a uid may park 1024, everybody
 * together a quarter of the worker's RLIMIT_NOFILE, so that accept() and the contexts' fds
 * always find room. Peers the server's user does not name (anyone may connect to the guest
 * socket, and one user presents many uids) share a sixteenth of the connections, so that those
 * it names always find the rest. The admin socket's connections have a budget of their own, so
 * that clients of the guest socket filling theirs do not lock the administrator out, and a uid there that
 * does not administer (an audit reader) may hold a quarter of it, so that one such uid does not
 * keep the others from reading the status and the log. */
#define VARLINK_LIMITS_DEFAULT                                                                     \
        ((const VarlinkLimits){                                                                    \
                .max_message_size = 16U * 1024U * 1024U,                                           \
                .max_output_size = 16U * 1024U * 1024U,                                            \
                .max_depth = 64,                                                                   \
                .max_json_values = 4096,                                                           \
                .max_fds_per_message = VARLINK_FDS_PER_MESSAGE_MAX,                                \
                .max_pending_calls = 64,                                                           \
                .max_connections = 4096,                                                           \
                .max_connections_per_uid = 1024,                                                   \
                .max_unnamed_connections = 256,                                                    \
                .max_admin_connections = 64,                                                       \
                .max_admin_connections_per_uid = 16,                                               \
                .max_buffered_per_uid = 64U * 1024U * 1024U,                                       \
                .max_buffered = 512U * 1024U * 1024U,                                              \
                .max_fds_per_uid = 1024,                                                           \
                .max_fds = 0,                                                                      \
                .message_timeout_sec = 10,                                                         \
                .idle_timeout_sec = 60,                                                            \
        })

typedef struct VarlinkStream VarlinkStream;

/* Takes ownership of fd (closed by varlink_stream_free(), even if this fails). */
int varlink_stream_new(int fd, const VarlinkLimits *limits, VarlinkStream **ret);
VarlinkStream *varlink_stream_free(VarlinkStream *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(VarlinkStream *, varlink_stream_free);

/* New limits. What is queued and sent from now on obeys them, and so do fds received from now on
 * (they come with the first byte of a message that starts now); the message under way, if any
 * of it is buffered, is still bounded and parsed by the size, depth and JSON value limits it
 * started with, and the messages after it by these. -EINVAL, -ENOMEM: nothing changed. */
int varlink_stream_set_limits(VarlinkStream *s, const VarlinkLimits *limits);
int varlink_stream_get_fd(const VarlinkStream *s);
/* Hands the socket on at a message boundary: returns it, the stream keeping no fd (its
 * varlink_stream_free() closes nothing), if nothing is half-done on it: no input received and
 * not consumed (a partial message, a complete one unread, fds waiting for their message), no
 * output queued. -EBUSY otherwise (nothing changed): whoever reads or writes the socket next
 * would start in the middle of a message. */
int varlink_stream_detach_fd(VarlinkStream *s);
/* Moves the socket to fd number fd, O_CLOEXEC (dup3(2): what fd was is closed, in the same
 * step; the number the socket had is closed). For a socket that must keep a number someone else
 * chose. -EBADF (no socket, fd < 0); dup3()'s errors, nothing changed. */
int varlink_stream_move_fd(VarlinkStream *s, int fd);
/* Ends the connection where it is, keeping the fd: the socket is shut down both ways (the peer
 * sees the hang-up; poll(2) reports POLLHUP|POLLIN on it, and it stays registered in any epoll
 * set), and what the peer sent that was not consumed, queued in the socket or received here, is
 * dropped, its fds closed, as a close of the socket would. For a stream that is to be freed:
 * nothing is read or written on it any more. */
void varlink_stream_shutdown(VarlinkStream *s);
/* Its MaxMessageSize=, as when it was created or last given limits (bytes, with the NUL): what
 * it sends may be that large. */
size_t varlink_stream_get_max_message_size(const VarlinkStream *s);
void varlink_stream_set_allow_fds(VarlinkStream *s, bool input, bool output);
/* Whose the fds it receives are (server side: the client's uid). The fds it closes of theirs
 * are counted under it by the closer, and while more than its MaxFdsPerUid= wait there, it
 * takes none (fd-closer.h). Unset: FD_CLOSER_PEER_NONE. */
void varlink_stream_set_peer_uid(VarlinkStream *s, uid_t uid);
/* A read buffer the streams of one loop take turns with: a stream whose input is empty reads into
 * *spare (if it holds one) and puts its buffer there once its input is empty again (if the slot
 * is free and the buffer of the size a read takes), instead of allocating and freeing one for
 * every read. Its owner frees *spare, and outlives the streams' reads (not their freeing, which
 * frees their own buffers). Unset (NULL), or on another thread: every read allocates its own. */
void varlink_stream_set_read_spare(VarlinkStream *s, char **spare);

/* Reads once. Returns 1 if bytes arrived, 2 if they did and the read was short: the socket is
 * empty, so reading again before it polls readable would only cost an EAGAIN (callers are
 * level-triggered, so stopping early loses nothing); 0 if the socket had nothing (EAGAIN), -ECONNRESET
 * at end of stream, -EMSGSIZE if the buffered message grew beyond the limit, -EPROTO on fds
 * that arrive in the middle of a message, more fds than allowed, or fds when not allowed
 * (closed at once). Where messages before the one they came with are complete in the same
 * read, the read succeeds: those are delivered first, and -EPROTO comes in that message's
 * place (from varlink_stream_next(), and from this function from then on). Fds that the
 * kernel could not install (EMFILE) fail no read: see varlink_stream_next(). -EDQUOT: the peer's
 * uid is congested (fd_closer_congested()) and the read would bring fds; nothing is read: the
 * connection is to go (its socket, with those fds, closes off the loop at
 * varlink_stream_free()). Every fd the kernel passes is received (none dropped, which would
 * release it on this thread): those not kept close through the closer. */
int varlink_stream_read(VarlinkStream *s);

/* Extracts the next complete message. Returns 1 and the message (a JSON object) plus the
 * fds that came with it (ownership passes to the caller), 0 if no complete message is
 * buffered, -EBADMSG if it is not valid JSON or not an object, -ELOOP if too deeply nested,
 * -E2BIG if it has more JSON values than allowed, -EPROTO if its fds were refused (see
 * varlink_stream_read(); again on each call, complete or not). Where fds were sent that
 * could not be received (our RLIMIT_NOFILE was reached), the last entry is -EMFILE, standing
 * for them: the fds before it are the first ones sent. */
int varlink_stream_next(VarlinkStream *s, json_object **ret_msg, int **ret_fds, size_t *ret_n_fds);

/* The limit the refusal varlink_stream_read() or varlink_stream_next() last returned broke, as
 * it was in force for that message: MaxMessageSize= (bytes, with the NUL) for -EMSGSIZE,
 * MaxJsonDepth= for -ELOOP, MaxJsonValues= for -E2BIG, MaxFdsPerMessage= for -EPROTO; 0 for
 * -EBADMSG. What a server tells the peer it refuses. */
uint64_t varlink_stream_get_refused_limit(const VarlinkStream *s);

/* True if a complete message is buffered (so the caller should not read more yet). */
bool varlink_stream_has_message(VarlinkStream *s);
/* Input received but not consumed yet, and the stream position of its first byte (where the
 * next message starts; 0 and 0: nothing received since the stream was created). */
size_t varlink_stream_get_input_size(const VarlinkStream *s);
/* Fds received with input not consumed yet (they wait for their message to complete). */
size_t varlink_stream_get_input_n_fds(const VarlinkStream *s);
uint64_t varlink_stream_get_input_offset(const VarlinkStream *s);

/* Queues a message. Takes ownership of fds in all cases. -ENOBUFS if the output queue would
 * exceed its limit, -E2BIG if the message alone exceeds the maximum message size. */
int varlink_stream_enqueue(VarlinkStream *s, json_object *msg, int *fds, size_t n_fds);
/* Same, with already serialised JSON (without the NUL). */
int varlink_stream_enqueue_text(VarlinkStream *s, const char *text, size_t len, int *fds,
                                size_t n_fds);
/* Same, where room bytes (and room_fds fds) were promised to the message when the limits were
 * larger: it may be that large, and queued, whatever they are now. */
int varlink_stream_enqueue_text_full(VarlinkStream *s, const char *text, size_t len, int *fds, size_t n_fds,
                                     size_t room, unsigned room_fds);

/* Writes as much queued output as the socket takes. Returns 1 if something was written, 0 if
 * nothing could be, negative errno (-EPIPE, -ECONNRESET) if the peer is gone. */
int varlink_stream_write(VarlinkStream *s);
size_t varlink_stream_get_output_size(const VarlinkStream *s);
/* Of that, what varlink_stream_write() may write now: what lies before the held-back part. */
size_t varlink_stream_get_writable_size(const VarlinkStream *s);
/* Holds back the output from stream position from on (UINT64_MAX: none): varlink_stream_write()
 * writes nothing at or after it, so that what is queued there stays whole and unwritten, and
 * can be taken back (varlink_stream_drop_output()). Set it at a message boundary at or after
 * what is written already (get_output_offset()); messages queued later go behind it. A client
 * bounding its calls in flight holds back those beyond the bound (varlink-client.h). */
void varlink_stream_hold_output(VarlinkStream *s, uint64_t from);

/* A message's stream positions: start is where its first byte is (get_output_offset() +
 * get_output_size() before it was queued), end that past its NUL. */
typedef struct VarlinkOutputRange {
        uint64_t start;
        uint64_t end;
} VarlinkOutputRange;
/* Takes queued messages back: each range whole messages in the held-back output, in ascending
 * order, not overlapping. Their fds are closed; what was queued after them moves down over
 * them (its positions less the bytes dropped before it). -EINVAL (nothing changed) for a range
 * that is not that: never a message partly written, nor part of one. */
int varlink_stream_drop_output(VarlinkStream *s, const VarlinkOutputRange *ranges, size_t n);
/* Bytes written to the socket since the stream was created: a message queued when
 * varlink_stream_get_output_offset() + varlink_stream_get_output_size() was n has been written
 * in full once this reaches n. */
uint64_t varlink_stream_get_output_offset(const VarlinkStream *s);
