/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Varlink server's connections: setting one up, reading and parsing its messages (with
 * backpressure and a fair share of the loop), writing its replies, its timeouts and hang-up,
 * closing and freeing it. The socket's side, apart from the calls it carries
 * (varlink-server-call.c). Runs in: worker. */

#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>

#include "event-util.h"
#include "fd-closer.h"
#include "log.h"
#include "varlink-errors.h"
#include "varlink-server-internal.h"

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

static void conn_free_events(VarlinkConn *c);
static void conn_update_timeout(VarlinkConn *c);
static void conn_watch_hangup(VarlinkConn *c);
static void conn_unwatch_hangup(VarlinkConn *c);
static void conn_end_of_input(VarlinkConn *c);
static void conn_close_after_answers(VarlinkConn *c);
static bool fd_hung_up(int fd);

/* Reads nothing more from a connection that is going: its socket may stay readable until
 * the last reply is out, and a level-triggered read event would spin. */
void conn_set_closing(VarlinkConn *c) {
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

void conn_on_write_flush(void *userdata) {
        VarlinkServer *s = userdata;
        VarlinkConn *c;

        while ((c = TAILQ_FIRST(&s->write_queue))) {
                TAILQ_REMOVE(&s->write_queue, c, write_entry);
                c->write_queued = false;
                conn_write_now(c);
                varlink_conn_unref(c);
        }
}

void conn_want_write(VarlinkConn *c) {
        VarlinkServer *s = c->server;

        if (!c->connected || c->failing || c->write_queued)
                return;
        c->write_queued = true;
        varlink_conn_ref(c); /* not inside TAILQ_INSERT_TAIL(), which uses its arguments twice */
        TAILQ_INSERT_TAIL(&s->write_queue, c, write_entry);
        idle_flush_schedule(s->write_flush);
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

/* The parameter of each refusal told by name (conn_refuse_by_name()): the limit the peer broke,
 * as io.tsmd declares it; NULL: none (MalformedMessage breaks no limit). */
static const char *refusal_parameter(const char *error) {
        static const struct {
                const char *error, *parameter;
        } table[] = {
                { VARLINK_REFUSED_MESSAGE_TOO_LARGE, "maxMessageSize" },
                { VARLINK_REFUSED_NESTING_TOO_DEEP, "maxJsonDepth" },
                { VARLINK_REFUSED_TOO_MANY_JSON_VALUES, "maxJsonValues" },
                { VARLINK_REFUSED_FILE_DESCRIPTORS, "maxFdsPerMessage" },
                { VARLINK_REFUSED_MESSAGE_TIMEOUT, "messageTimeoutSec" },
                { VARLINK_REFUSED_IDLE_TIMEOUT, "idleTimeoutSec" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (streq(table[i].error, error))
                        return table[i].parameter;
        return NULL;
}

/* A refusal that ends the connection, on record (one record, as any refusal's), and told the
 * peer by name as the connection goes (conn_tell_refusal()): limit is what the parameter names.
 * Only for refusals where the stream is intact up to what was refused (the message's NUL, or
 * the bytes that broke MaxMessageSize=, or a timeout): the peer can tell that answer from the
 * rest. Not for the refusals of what a client holds rather than sends (RepliesNotRead, the
 * buffered and fd budgets): one that does not read would not read this either, more output is
 * what is refused, and the connection dropped may not be the one whose read crossed the budget;
 * a bare close is all it gets. */
static void conn_refuse_by_name(VarlinkConn *c, const char *error, uint64_t limit) {
        varlink_server_refused(c->server, &c->peer, c, NULL, error);
        c->refusal = error;
        c->refusal_limit = limit;
}

/* SECURITY: told as connection_refuse() tells its refusals: one nonblocking send() of a short
 * message right before the close, nothing queued, no timer, so a flood of refusals costs no
 * more than bare closes, and the output queue's bounds stay what they were. Only once all that
 * was queued for the connection is written, as the error cannot go in the middle of a reply:
 * a refused message's calls before it are answered first, in order (conn_close_after_answers()),
 * and the refusal is the answer to that message; a timeout's or an eviction's to the message
 * under way or the next, or to the oldest subscription the close ends. Not while a call that is
 * no subscription is unanswered (below), when it is dropped for something else meanwhile
 * (failing), nor if the socket does not take it at once (a client that does not read): then the
 * close is bare.
 * AF_UNIX hands the peer what is queued before the end of the stream, and before the ECONNRESET
 * of a close that left its bytes unread. */
static void conn_tell_refusal(VarlinkConn *c) {
        VarlinkCall *call;

        if (!c->refusal || c->failing || varlink_stream_get_output_size(c->stream) > 0)
                return;
        /* Not as the answer to a call that runs, or ran and waits for its answer: a request
         * forwarded to the TSM would read as refused when the device may have acted on it. That
         * one's outcome is unknown, as a bare close says. A subscription ends with it. */
        TAILQ_FOREACH(call, &c->calls, entry)
                if (!call_only_subscribes(call))
                        return;
        varlink_refusal_send(varlink_stream_get_fd(c->stream), c->refusal, refusal_parameter(c->refusal),
                             c->refusal_limit);
}

void varlink_refusal_send(int fd, const char *error, const char *parameter, uint64_t value) {
        char text[160];
        int n;

        if (parameter)
                n = snprintf(text, sizeof(text), "{\"error\":\"%s\",\"parameters\":{\"%s\":%" PRIu64 "}}", error,
                             parameter, value);
        else
                n = snprintf(text, sizeof(text), "{\"error\":\"%s\",\"parameters\":{}}", error);
        if (n > 0 && (size_t) n < sizeof(text))
                (void) send(fd, text, (size_t) n + 1, MSG_DONTWAIT | MSG_NOSIGNAL);
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

/* SECURITY: fds wait behind a close a file system holds, and more come: taking them would fill
 * our table, letting the kernel drop them would release them on this thread
 * (varlink_stream_read()). The connection goes, its socket (with them) closed off the loop, as
 * for the fd budgets; named for whose fds wait: its uid's past MaxFdsPerUid=, or, its uid within
 * that, everybody's past the closer's share, which is not this uid's doing. */
static void conn_refuse_closer_congested(VarlinkConn *c) {
        VarlinkServer *s = c->server;
        uid_t top;
        size_t n_top;
        char reason[160];

        if (fd_closer_peer_congested(c->peer.uid, s->limits.max_fds_per_uid)) {
                log_debug("Dropping client connection (%s): fds of uid %u wait to be closed.",
                          VARLINK_REFUSED_TOO_MANY_FDS_PER_UID, c->peer.uid);
                varlink_server_refused(s, &c->peer, c, NULL, VARLINK_REFUSED_TOO_MANY_FDS_PER_UID);
        } else {
                int k = snprintf(reason, sizeof(reason), "more than %zu fds of all clients wait to be closed",
                                 fd_closer_share());

                top = fd_closer_top_peer(&n_top);
                if (top != FD_CLOSER_PEER_NONE && k > 0 && (size_t) k < sizeof(reason))
                        (void) snprintf(reason + k, sizeof(reason) - (size_t) k, ", uid %u holding the most (%zu)",
                                        (unsigned) top, n_top);
                log_debug("Dropping client connection (%s) of uid %u: %s.", VARLINK_REFUSED_TOO_MANY_FDS,
                          c->peer.uid, reason);
                varlink_server_refused_because(s, &c->peer, c, VARLINK_REFUSED_TOO_MANY_FDS, reason);
        }
        conn_disconnect(c);
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
                if (r == -EDQUOT) {
                        conn_refuse_closer_congested(c);
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
                        conn_refuse_by_name(c, error, varlink_stream_get_refused_limit(c->stream));
                        /* The calls before it were valid and are answered (sd-varlink writes a
                         * reply before it parses the next message); nothing after it is read. */
                        conn_close_after_answers(c);
                        break;
                }
                if (r == 0) {
                        if (c->read_paused) {
                                c->read_paused = false;
                                conn_unwatch_hangup(c);
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
                conn_dispatch_message(c, message, size, fds, n_fds);
                (void) conn_account(c);
        }
        conn_update_timeout(c);
        varlink_conn_unref(c);
}

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

/* Reading again: the read sees a hang-up now. The copy of the socket goes, not kept for the
 * connection's life: a connection that was paused once would hold two fds to the end (every VMM
 * whose call waited for a reload), and tsmd's fds would count its past, not what it serves. Not
 * from ev_hangup's own callback (on_conn_hangup() only disconnects). */
static void conn_unwatch_hangup(VarlinkConn *c) {
        if (c->ev_hangup) {
                event_free(c->ev_hangup);
                c->ev_hangup = NULL;
        }
        c->hangup_fd = safe_close(c->hangup_fd);
}

/* SECURITY: the rest of a connection's work waits for the next round of the loop, not the end of
 * this one. libevent runs an event activated now in this very round, after the others, and
 * never polls until the round is empty: a client that keeps its socket full would keep the
 * round going and nobody else's readiness would be seen. A zero timer fires after the next
 * poll, so every connection ready by then goes first. */
void conn_schedule(VarlinkConn *c) {
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
        conn_refuse_by_name(c, VARLINK_REFUSED_MESSAGE_TIMEOUT, s->limits.message_timeout_sec);
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
        conn_refuse_by_name(c, VARLINK_REFUSED_IDLE_TIMEOUT, s->limits.idle_timeout_sec);
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
        s->n_unnamed_conns -= c->unnamed;
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

        /* Close the socket now so the peer sees the hang-up at once, after the refusal it is
         * told, if any. */
        conn_tell_refusal(c);
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
        /* SECURITY: refused, the peer may have queued fds on it already (fd-closer.h): they wait
         * to be closed under its uid, once known, as those of a connection it got would. */
        _cleanup_close_client_socket_ ClientSocket owned = { .fd = fd, .peer = FD_CLOSER_PEER_NONE };
        struct ucred peer = {};
        socklen_t sl = sizeof(peer);
        bool room_owed;
        VarlinkConn *c;
        int r;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &sl) < 0)
                return negative_errno();
        owned.peer = peer.uid;

        r = conn_admit(s, fd, &peer, admin, &room_owed);
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

        r = varlink_stream_new(TAKE_FD(owned.fd), &s->limits, &c->stream);
        if (r < 0)
                goto fail_conn;
        varlink_stream_set_allow_fds(c->stream, true, true);
        varlink_stream_set_peer_uid(c->stream, peer.uid);
        varlink_stream_set_read_spare(c->stream, &s->read_spare);

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
        /* After on_connect, which identified the peer for its user to name it. */
        r = conn_classify(c, room_owed);
        if (r < 0) {
                conn_disconnect(c);
                return r;
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
