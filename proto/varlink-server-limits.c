/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Varlink server's limits: who may connect, what each client and uid may hold. Runs in: worker. */

#include <inttypes.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "log.h"
#include "varlink-errors.h"
#include "varlink-server-internal.h"

/* SECURITY: a received fd is in our table before we see its message, and a peer may park up
 * to 253 on a message it never ends. What all peers park together must leave room for
 * accept(), the connections' own fds and the contexts' (which the monitor's table bounds, not
 * ours): never more than half the table, a quarter unless configured otherwise. */
size_t varlink_fd_budget(const VarlinkLimits *limits) {
        struct rlimit rl;
        size_t nofile = 1024;

        if (getrlimit(RLIMIT_NOFILE, &rl) >= 0)
                nofile = rl.rlim_cur == RLIM_INFINITY ? SIZE_MAX / 2 : (size_t) rl.rlim_cur;
        return limits->max_fds > 0 ? MIN((size_t) limits->max_fds, nofile / 2) : nofile / 4;
}

void varlink_server_update_fd_budget(VarlinkServer *s) {
        s->fd_budget = varlink_fd_budget(&s->limits);
}

size_t varlink_server_get_fd_budget(const VarlinkServer *s) {
        return s->fd_budget;
}

UidCount *varlink_server_uid_count(VarlinkServer *s, uid_t uid) {
        for (size_t i = 0; i < s->n_uids; i++)
                if (s->uids[i].uid == uid)
                        return &s->uids[i];
        return NULL;
}

/* What a connection or a uid holds: bytes, or fds. */
static size_t conn_held(const VarlinkConn *c, bool fds) {
        return fds ? c->n_fds : c->buffered;
}

static size_t uid_held(const UidCount *u, bool fds) {
        return fds ? u->n_fds : u->buffered;
}

/* The connection to drop when all clients together hold too much: one of the uid that holds the
 * most (on a tie, c's), c itself if it is that uid's (its read or reply crossed the limit), else
 * that uid's largest. */
static VarlinkConn *server_largest_holder(VarlinkServer *s, VarlinkConn *c, bool fds) {
        const UidCount *top = varlink_server_uid_count(s, c->peer.uid);
        VarlinkConn *best = NULL, *i;

        for (size_t k = 0; k < s->n_uids; k++)
                if (uid_held(&s->uids[k], fds) > uid_held(top, fds))
                        top = &s->uids[k];
        if (top->uid == c->peer.uid)
                return c;
        TAILQ_FOREACH(i, &s->conns, entry)
                if (i->peer.uid == top->uid && !i->failing && (!best || conn_held(i, fds) > conn_held(best, fds)))
                        best = i;
        return best;
}

/* SECURITY: past MaxBuffered= (fds: the fd budget), the connections that hold the most go, not
 * whichever read crossed the limit: else a few uids parking unfinished messages near their own
 * limits would make every other client's next call its last. Each one dropped is refused by name
 * under its own uid. -ENOSPC (-ENFILE) if c itself is the one to go: its caller refuses it. */
static int server_make_room(VarlinkServer *s, VarlinkConn *c, bool fds) {
        const char *error = fds ? VARLINK_REFUSED_TOO_MANY_FDS : VARLINK_REFUSED_TOO_MUCH_BUFFERED;

        while (fds ? s->n_fds > s->fd_budget : s->buffered > s->limits.max_buffered) {
                VarlinkConn *v = server_largest_holder(s, c, fds);

                if (!v || v == c)
                        return fds ? -ENFILE : -ENOSPC;
                log_debug("Dropping client connection (%s) of uid %u, holding the most (%zu bytes, %zu fds; its uid "
                          "%zu and %zu), to make room for uid %u.",
                          error, v->peer.uid, v->buffered, v->n_fds,
                          varlink_server_uid_count(s, v->peer.uid)->buffered,
                          varlink_server_uid_count(s, v->peer.uid)->n_fds, c->peer.uid);
                varlink_server_refused(s, &v->peer, v, NULL, error);
                conn_disconnect_soon(v);
        }
        return 0;
}

/* Counts what the connection buffers now (unparsed input, messages its calls hold, queued
 * output, replies waiting behind an earlier call) and the fds parked on its unfinished
 * message or held by its postponed calls into its uid's totals and the server's; one being
 * dropped (failing) holds nothing any more. Returns -ENOBUFS if its uid's bytes are past the
 * limit, -EMFILE if its uid's fds are; past everybody's, -ENOSPC (bytes) or -ENFILE (fds) if
 * it is the connection to drop (server_make_room()). */
int conn_account(VarlinkConn *c) {
        VarlinkServer *s = c->server;
        UidCount *u = varlink_server_uid_count(s, c->peer.uid);
        size_t now = 0, n_fds = 0;
        int r;

        if (!u)
                return 0;
        if (c->stream && !c->failing) {
                now = varlink_stream_get_input_size(c->stream) + varlink_stream_get_output_size(c->stream) +
                      c->held_output + c->held_input;
                n_fds = varlink_stream_get_input_n_fds(c->stream) + c->held_fds;
        }
        u->buffered = u->buffered - c->buffered + now;
        s->buffered = s->buffered - c->buffered + now;
        c->buffered = now;
        c->buffered_peak = MAX(c->buffered_peak, now);
        u->n_fds = u->n_fds - c->n_fds + n_fds;
        s->n_fds = s->n_fds - c->n_fds + n_fds;
        c->n_fds = n_fds;
        if (c->failing)
                return 0;

        if (u->buffered > s->limits.max_buffered_per_uid)
                return -ENOBUFS;
        if (u->n_fds > s->limits.max_fds_per_uid)
                return -EMFILE;
        r = server_make_room(s, c, false);
        if (r < 0)
                return r;
        return server_make_room(s, c, true);
}

/* The refusal that conn_account()'s error names. */
const char *conn_account_refusal(int error) {
        switch (error) {
        case -ENOSPC:
                return VARLINK_REFUSED_TOO_MUCH_BUFFERED;
        case -EMFILE:
                return VARLINK_REFUSED_TOO_MANY_FDS_PER_UID;
        case -ENFILE:
                return VARLINK_REFUSED_TOO_MANY_FDS;
        default:
                return VARLINK_REFUSED_TOO_MUCH_BUFFERED_PER_UID;
        }
}

/* Whether c is idle for IdleTimeoutSec= and would lose nothing: no message from its client for
 * that long, none arriving, no fds parked, no call in flight but subscriptions, nothing whose
 * delivery its server's user waits for, nothing that user keeps for it. SECURITY: subscriptions
 * and what the client leaves unread do not count: any local user may subscribe (GetStatus) and
 * stop reading, and a connection that would otherwise never be idle keeps its slot for good.
 * What a VMM holds (its contexts, and the watch of a process holding contexts) is its server's
 * user's to keep (holds()). */
static bool conn_is_idle_and_empty(VarlinkConn *c, uint64_t now) {
        VarlinkServer *s = c->server;
        VarlinkCall *call;

        if (c->admin || !c->connected || c->failing || c->closing || c->n_fds > 0 ||
            varlink_stream_get_input_size(c->stream) > 0 || !STAILQ_EMPTY(&c->sent_waiters) ||
            now - c->idle_since < s->limits.idle_timeout_sec * 1000000ULL)
                return false;
        TAILQ_FOREACH(call, &c->calls, entry)
                if (!call_only_subscribes(call))
                        return false;
        return !s->holds(c, s->userdata);
}

static int uid_count_cmp(const void *a, const void *b) {
        uid_t x = ((const UidCount *) a)->uid, y = ((const UidCount *) b)->uid;

        return x < y ? -1 : x > y;
}

/* SECURITY: clients that connected, called once and stay (as VMMs do: no timeout closes those)
 * could hold every MaxConnections= slot, a few uids (a rootless container's subordinate ones)
 * enough for all. Full, the server closes for a newcomer one such connection that is idle for
 * IdleTimeoutSec= and would lose nothing: of all of them, one of the uid holding the most
 * connections, the one idle longest. Not only that uid's: one uid keeping its own busy must not
 * shield the idle ones of others. */
static bool server_close_an_idle_connection(VarlinkServer *s) {
        _cleanup_free_ UidCount *by_uid = NULL;
        VarlinkConn *victim = NULL, *c;
        unsigned victim_n = 0;
        uint64_t now;

        if (!s->holds || s->limits.idle_timeout_sec == 0 || s->n_uids == 0)
                return false;
        /* Each candidate's uid looked up in a sorted copy: one pass, not one scan per connection. */
        by_uid = new(UidCount, s->n_uids);
        if (!by_uid)
                return false;
        memcpy(by_uid, s->uids, s->n_uids * sizeof(UidCount));
        qsort(by_uid, s->n_uids, sizeof(UidCount), uid_count_cmp);

        now = now_monotonic_usec();
        TAILQ_FOREACH(c, &s->conns, entry) {
                const UidCount key = { .uid = c->peer.uid }, *u;
                unsigned n;

                if (!conn_is_idle_and_empty(c, now))
                        continue;
                u = bsearch(&key, by_uid, s->n_uids, sizeof(UidCount), uid_count_cmp);
                n = u ? u->n - u->n_admin : 0;
                if (!victim || n > victim_n || (n == victim_n && c->idle_since < victim->idle_since)) {
                        victim = c;
                        victim_n = n;
                }
        }
        if (!victim)
                return false;
        log_debug("Connection limit (%u) reached: closing a connection of uid %u (holding %u) idle for %" PRIu64 " s.",
                  s->limits.max_connections, victim->peer.uid, victim_n,
                  (uint64_t) ((now - victim->idle_since) / 1000000U));
        s->n_timed_out++;
        varlink_server_refused(s, &victim->peer, victim, NULL, VARLINK_REFUSED_IDLE_TIMEOUT);
        /* Told as it goes (conn_tell_refusal()): a subscriber's is the answer to its subscription. */
        victim->refusal = VARLINK_REFUSED_IDLE_TIMEOUT;
        victim->refusal_limit = s->limits.idle_timeout_sec;
        conn_disconnect(victim);
        return true;
}

/* A peer turned away at a connection limit: on record, and told why by name, as the answer to
 * its first call. The error goes into the fresh socket before anything of the peer is read, and
 * the caller closes it. SECURITY: a flood costs no more than a silent close: nothing buffered,
 * no timer, no slot held (so unlike a call's answer it does not wait for the refusal's audit
 * record). */
static void connection_refuse(VarlinkServer *s, int fd, const struct ucred *peer, const char *error) {
        varlink_server_refused(s, peer, NULL, NULL, error);
        varlink_refusal_send(fd, error, NULL, 0);
}

void varlink_server_set_administers_callback(VarlinkServer *s, VarlinkAdministersFunc administers) {
        s->administers = administers;
}

/* SECURITY: everyone the admin socket's mode lets in who does not administer (by the shipped
 * default, every member of its group but root: the audit readers) could hold every
 * MaxAdminConnections= slot, and no timeout closes a connection that has called: that would
 * lock the administrators out, Reload included. So an administrator arriving at a full admin
 * socket takes the place of one of those: of the uid holding the most connections there, the
 * one idle longest. They lose little: such a client may read the status and the log, nothing
 * more. Not so one that holds what its server's user keeps for it (the admin socket serves
 * io.tsmd.Guest too: a VMM of its group, its contexts), which is never closed for this; an
 * administrator is refused only when administrators, or such holders, take every slot. Asked
 * of all connections there, but only when an administrator finds them full. The one closed is
 * on record with the reason, and told by name as a refused newcomer is (connection_refuse()):
 * as the answer to its oldest call in flight, or its next. Not where part of a reply is still
 * queued for it (the error cannot go in the middle of that): it sees the hang-up alone. */
static bool server_make_room_for_administrator(VarlinkServer *s, int fd, const struct ucred *peer) {
        VarlinkConn *victim = NULL, *c;
        unsigned victim_n = 0;
        char reason[128];

        if (!s->administers || !s->administers(s, peer, fd, s->userdata))
                return false;
        TAILQ_FOREACH(c, &s->conns, entry) {
                const UidCount *u;

                if (!c->admin || c->failing || (s->holds && s->holds(c, s->userdata)) ||
                    s->administers(s, &c->peer, varlink_stream_get_fd(c->stream), s->userdata))
                        continue;
                u = varlink_server_uid_count(s, c->peer.uid);
                if (!u)
                        continue;
                if (!victim || u->n_admin > victim_n ||
                    (u->n_admin == victim_n && c->idle_since < victim->idle_since)) {
                        victim = c;
                        victim_n = u->n_admin;
                }
        }
        if (!victim)
                return false;
        log_debug("Admin connection limit (%u) reached: closing a connection of uid %u (holding %u there) for "
                  "administrator uid %u.",
                  s->limits.max_admin_connections, victim->peer.uid, victim_n, peer->uid);
        (void) snprintf(reason, sizeof(reason),
                        "closed to make room for administrator uid %u (admin connection limit %u reached)",
                        (unsigned) peer->uid, s->limits.max_admin_connections);
        varlink_server_refused_because(s, &victim->peer, victim, VARLINK_REFUSED_TOO_MANY_CONNECTIONS, reason);
        victim->refusal = VARLINK_REFUSED_TOO_MANY_CONNECTIONS; /* told as it goes (conn_tell_refusal()) */
        conn_disconnect(victim);
        return true;
}

static int conn_refuse_full(VarlinkServer *s, int fd, const struct ucred *peer);

/* SECURITY: admission control happens before any byte of the peer is read. The admin
 * listeners' connections have a budget of their own: anyone may connect to the guest socket,
 * and a few uids filling MaxConnections= (a rootless container's subordinate uids) must not
 * lock the administrator out; nor must an administrator's uid, root, be refused there for the
 * connections its VMMs hold; nor must those who may connect there without administering fill it
 * (server_make_room_for_administrator()). The peer's connection is fd. */
int conn_admit(VarlinkServer *s, int fd, const struct ucred *peer, bool admin, bool *ret_room_owed) {
        const UidCount *u = varlink_server_uid_count(s, peer->uid);

        *ret_room_owed = false;

        if (admin) {
                /* SECURITY: a uid that does not administer (an audit reader) holding every slot
                 * would leave the administrators a way in (the place of one of its connections),
                 * but the other uids of the socket's group none. Administrators are not bound by
                 * it: they may hold every slot (and be asked only when their uid is at it). */
                if (u && u->n_admin >= s->limits.max_admin_connections_per_uid &&
                    !(s->administers && s->administers(s, peer, fd, s->userdata))) {
                        connection_refuse(s, fd, peer, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID);
                        return log_debug_errno(-EUSERS, "Per-uid admin connection limit (%u) reached, refusing uid %u.",
                                               s->limits.max_admin_connections_per_uid, peer->uid);
                }
                if (s->n_admin_conns < s->limits.max_admin_connections ||
                    server_make_room_for_administrator(s, fd, peer))
                        return 0;
                connection_refuse(s, fd, peer, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
                return log_debug_errno(-EUSERS, "Admin connection limit (%u) reached, refusing uid %u.",
                                       s->limits.max_admin_connections, peer->uid);
        }
        if (u && u->n - u->n_admin >= s->limits.max_connections_per_uid) {
                connection_refuse(s, fd, peer, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID);
                return log_debug_errno(-EUSERS, "Per-uid connection limit (%u) reached, refusing uid %u.",
                                       s->limits.max_connections_per_uid, peer->uid);
        }
        /* Last: closing an idle connection for it may move the uids' counts (u). */
        if (s->n_conns - s->n_admin_conns < s->limits.max_connections)
                return 0;
        /* SECURITY: with the unnamed callers' share full, a newcomer the user does not name is
         * refused once it is identified (conn_classify()): nobody's idle connection may be closed
         * for it first, so the room is made then, for one it names. Only then: otherwise a full
         * server refuses before anything of the peer is looked at, a flood's cheapest answer. */
        if (s->named && s->n_unnamed_conns >= s->limits.max_unnamed_connections) {
                *ret_room_owed = true;
                return 0;
        }
        if (!server_close_an_idle_connection(s))
                return conn_refuse_full(s, fd, peer);
        return 0;
}

static int conn_refuse_full(VarlinkServer *s, int fd, const struct ucred *peer) {
        connection_refuse(s, fd, peer, VARLINK_REFUSED_TOO_MANY_CONNECTIONS);
        return log_debug_errno(-EUSERS, "Connection limit (%u) reached, refusing uid %u.", s->limits.max_connections,
                               peer->uid);
}

/* SECURITY: anyone may connect to the guest socket, and one user may present many uids (its
 * subordinate ones, through newuidmap): peers the server's user does not name, each uid within
 * max_connections_per_uid and calling often enough never to be idle, could hold every
 * max_connections slot and keep out the VMMs it serves. Theirs is a share of its own,
 * max_unnamed_connections, meant to be below max_connections: those it names find the rest, and
 * are refused only by max_connections and max_connections_per_uid. A connection is classed once,
 * when it is set up (the peer identified by on_connect), and keeps its class until it goes: a
 * reload of what the user names moves no connection from one count to the other, nor closes
 * one. The admin listeners' are not classed: max_admin_connections_per_uid bounds each uid there
 * that does not administer, and an administrator takes the place of one of theirs. -EUSERS:
 * refused (on record with the reason, and told by name with the limit, as conn_admit()'s are),
 * for the caller to disconnect. */
int conn_classify(VarlinkConn *c, bool room_owed) {
        VarlinkServer *s = c->server;
        char reason[128];

        if (c->admin || !s->named)
                return 0;
        if (s->named(c, s->userdata)) {
                /* conn_admit() left it to make room for one it names (itself never idle yet). */
                if (room_owed && !server_close_an_idle_connection(s))
                        return conn_refuse_full(s, varlink_stream_get_fd(c->stream), &c->peer);
                return 0;
        }
        if (s->n_unnamed_conns >= s->limits.max_unnamed_connections) {
                (void) snprintf(reason, sizeof(reason),
                                "the connections of unnamed callers are at their limit (%u)",
                                s->limits.max_unnamed_connections);
                varlink_server_refused_because(s, &c->peer, c, VARLINK_REFUSED_TOO_MANY_CONNECTIONS, reason);
                /* Nothing of the peer read, nothing queued for it: told as a refused newcomer is. */
                varlink_refusal_send(varlink_stream_get_fd(c->stream), VARLINK_REFUSED_TOO_MANY_CONNECTIONS,
                                     "maxUnnamedConnections", s->limits.max_unnamed_connections);
                return log_debug_errno(-EUSERS, "Unnamed callers' connection limit (%u) reached, refusing uid %u.",
                                       s->limits.max_unnamed_connections, c->peer.uid);
        }
        c->unnamed = true;
        s->n_unnamed_conns++;
        return 0;
}

/* Counts a connection that conn_admit() let in under its uid, once it is set up: the uid's entry
 * is added should it have none (-ENOMEM). */
int conn_attach_uid(VarlinkConn *c) {
        VarlinkServer *s = c->server;
        UidCount *u = varlink_server_uid_count(s, c->peer.uid);

        if (!u) {
                if (!GREEDY_REALLOC(s->uids, s->allocated_uids, s->n_uids + 1))
                        return -ENOMEM;
                u = &s->uids[s->n_uids++];
                *u = (UidCount){ .uid = c->peer.uid };
        }
        u->n++;
        u->n_admin += c->admin;
        return 0;
}

/* A connection going away: what it held leaves its uid's totals and the server's, and its uid's
 * entry goes with the uid's last connection. */
void conn_detach_uid(VarlinkConn *c) {
        VarlinkServer *s = c->server;
        UidCount *u = varlink_server_uid_count(s, c->peer.uid);

        if (u) {
                u->buffered -= c->buffered;
                u->n_fds -= c->n_fds;
        }
        s->buffered -= c->buffered;
        s->n_fds -= c->n_fds;
        c->buffered = c->n_fds = 0;
        if (u)
                u->n_admin -= c->admin;
        if (u && --u->n == 0)
                *u = s->uids[--s->n_uids];
}
