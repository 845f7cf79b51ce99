/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Varlink server itself: making and freeing it, its settings, limits and callbacks. Its
 * connections are varlink-server-conn.c's, their calls varlink-server-call.c's, its method table
 * varlink-server-method.c's, its accounting varlink-server-limits.c's and its listeners
 * varlink-listen.c's. Runs in: worker. */

#include "log.h"
#include "varlink-idl.h"
#include "varlink-server-internal.h"
#include "varlink-service.h"

static void conn_apply_limits(VarlinkConn *c);
static void server_update_timeouts(VarlinkServer *s);

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
        r = idle_flush_new(base, conn_on_write_flush, s, &s->write_flush);
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
        free(s->read_spare);
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
            l->max_admin_connections_per_uid < 1 ||
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

void varlink_server_set_named_callback(VarlinkServer *s, VarlinkConnNamedFunc named) {
        s->named = named;
}

void varlink_server_refused(VarlinkServer *s, const struct ucred *peer, VarlinkConn *c, VarlinkCall *call,
                            const char *error) {
        if (s->on_refusal)
                s->on_refusal(s, peer, c, call, error, NULL, s->userdata);
}

void varlink_server_refused_because(VarlinkServer *s, const struct ucred *peer, VarlinkConn *c, const char *error,
                                    const char *reason) {
        if (s->on_refusal)
                s->on_refusal(s, peer, c, NULL, error, reason, s->userdata);
}

unsigned varlink_server_get_n_connections(const VarlinkServer *s) {
        return s->n_conns;
}
