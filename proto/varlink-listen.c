/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Varlink server's listeners: accepting connections, the spare fds kept for the admin
 * listeners, and the pause in accepting while the process is out of fds, or while the fds
 * closed off its loop wait past their share. Runs in: worker. */

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "fd-closer.h"
#include "log.h"
#include "ratelimit.h"
#include "varlink-server-internal.h"

/* Connections accepted per wake-up of a listener. */
#define ACCEPT_BATCH 64

void varlink_server_spare_fds_refill(VarlinkServer *s) {
        while (s->want_spare_fds && s->n_spare_fds < SPARE_FDS) {
                int fd = open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY);

                /* Without a /dev/null, a duplicate holds a slot too (but no file of its own). */
                if (fd < 0 && errno != EMFILE && errno != ENFILE && s->n_listeners > 0)
                        fd = fcntl(s->listeners[0]->fd, F_DUPFD_CLOEXEC, 3);
                if (fd < 0)
                        return;
                s->spare_fds[s->n_spare_fds++] = fd;
        }
}

void varlink_server_spare_fds_release(VarlinkServer *s) {
        while (s->n_spare_fds > 0)
                safe_close(s->spare_fds[--s->n_spare_fds]);
}

/* Out of fds: stop accepting for a while (delay) instead of spinning on a readable socket. The
 * admin listeners carry on while there are spare fds (all: one failed without any). */
static void accept_pause(VarlinkServer *s, bool all, const struct timeval *delay) {
        for (size_t i = 0; i < s->n_listeners; i++)
                if (all || !s->listeners[i]->admin)
                        (void) event_del(s->listeners[i]->event);
        s->accept_paused = true;
        (void) event_add(s->accept_resume, delay);
}

/* How often a pause for the closer's queue looks whether it drained. */
static const struct timeval closer_recheck = { .tv_usec = 250 * 1000 };

/* The pause below, and its end, in the log: it may come and go with every quarter of the
 * closer's queue while a slow close drains it. */
static RateLimit log_pause_limit = RATELIMIT(30U * 1000000U, 2), log_resume_limit = RATELIMIT(30U * 1000000U, 2);

/* SECURITY: the fds queued on a refused connection whose close may wait (and the socket itself,
 * past the bounds on receiving them) are closed off the loop (fd-closer.h), and while a close a
 * file system holds keeps the closer's thread waiting, each stays in our table: a flood of them
 * (any local user may connect, and send before we accept) would fill it, and then nobody could
 * connect, nor get an fd passed. (Ordinary fds, /dev/null or a memfd, close at once: they do not
 * count here.) Past the closer's share of everybody's (a quarter of RLIMIT_NOFILE) the guest
 * listeners accept no more, the admin listeners past twice that: new connections wait in the
 * kernel's backlog (connect() fails once it is full), existing ones are served as ever.
 * Accepting resumes once the queue is down to half its share (varlink_server_accept_resume()).
 * Checked before each accept(): a batch goes past by one connection's at most (its socket, or
 * the fds on it that may wait, up to the bound fd_closer_close_socket_for() keeps). What is held
 * there is whoever holds the close's doing, whatever the uids of the fds queued (a user's
 * subordinate uids could each send its share): the log names the uid with the most waiting. */
static bool accept_closer_congested(VarlinkServer *s, bool admin) {
        size_t n = fd_closer_n_waiting_all(), share = fd_closer_share(), n_top;
        uid_t top;

        if (n <= (admin ? 2 * share : share))
                return false;
        top = fd_closer_top_peer(&n_top);
        log_full_ratelimited(&log_pause_limit, LOG_WARNING,
                             "Accepting no %sconnections while %zu fds wait to be closed (more than %zu) behind a close "
                             "some file system holds; uid %i has the most of them (%zu).",
                             admin ? "" : "guest ", n, admin ? 2 * share : share,
                             top == FD_CLOSER_PEER_NONE ? -1 : (int) top, n_top);
        s->closer_paused = true;
        accept_pause(s, admin, &closer_recheck);
        return true;
}

void varlink_server_accept_resume(VarlinkServer *s) {
        if (!s->accept_paused || s->stopped_listening)
                return;
        if (s->closer_paused) {
                /* Hysteresis: not at every close the thread finishes, but once it caught up. */
                if (fd_closer_n_waiting_all() > fd_closer_share() / 2) {
                        if (!evtimer_pending(s->accept_resume, NULL))
                                (void) event_add(s->accept_resume, &closer_recheck);
                        return;
                }
                log_full_ratelimited(&log_resume_limit, LOG_INFO,
                                     "Fds waiting to be closed down to %zu, accepting connections again.",
                                     fd_closer_n_waiting_all());
                s->closer_paused = false;
        }
        varlink_server_spare_fds_refill(s);
        s->accept_paused = false;
        (void) event_del(s->accept_resume);
        for (size_t i = 0; i < s->n_listeners; i++)
                (void) event_add(s->listeners[i]->event, NULL);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *userdata) {
        varlink_server_accept_resume(userdata);
}

static void on_listener(evutil_socket_t fd, short what, void *userdata) {
        Listener *l = userdata;
        VarlinkServer *s = l->server;

        for (unsigned i = 0; i < ACCEPT_BATCH; i++) {
                bool spent = false;
                int cfd, error;

                /* SECURITY: clients can take every fd the process may have (connections, fds
                 * parked within the budget, contexts), and an admin must still be able to
                 * connect and see or stop that: the spares make room for the connection and for
                 * what setting it up opens (the daemon refuses a peer it cannot identify), then
                 * take back what is left. Nobody else ever gets them. Admin connections are
                 * few: the system calls this costs each do not matter. */
                if (accept_closer_congested(s, l->admin))
                        return;
                if (l->admin && s->n_spare_fds > 0) {
                        varlink_server_spare_fds_release(s);
                        spent = true;
                }
                cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                error = errno;
                if (cfd >= 0)
                        (void) conn_new(s, cfd, (const char *const *) l->interfaces, l->admin);
                if (spent)
                        varlink_server_spare_fds_refill(s);
                if (cfd < 0) {
                        if (error == EMFILE || error == ENFILE) {
                                log_warning_errno(-error, "Cannot accept connections: %m");
                                accept_pause(s, l->admin, &(const struct timeval){ .tv_sec = 1 });
                        } else if (error != EAGAIN && error != EINTR && error != ECONNABORTED)
                                log_warning_errno(-error, "accept4() failed: %m");
                        return;
                }
        }
}

int varlink_server_listen_fd_full(VarlinkServer *s, int fd, char **interfaces, unsigned flags) {
        _cleanup_(strv_freep) char **owned = interfaces;
        Listener *l;

        assert_return(s, -EINVAL);
        if (fd < 0)
                return -EBADF;

        if (!s->accept_resume) {
                s->accept_resume = evtimer_new(s->base, on_accept_resume, s);
                if (!s->accept_resume)
                        return -ENOMEM;
        }

        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
                return negative_errno();

        l = new0(Listener, 1);
        if (!l)
                return -ENOMEM;
        l->server = s;
        l->fd = fd;
        l->admin = flags & VARLINK_LISTEN_ADMIN;
        l->event = event_new(s->base, fd, EV_READ | EV_PERSIST, on_listener, l);
        if (!l->event || !GREEDY_REALLOC(s->listeners, s->allocated_listeners, s->n_listeners + 1) ||
            (!s->accept_paused && event_add(l->event, NULL) < 0)) {
                if (l->event)
                        event_free(l->event);
                free(l);
                return -ENOMEM;
        }
        l->interfaces = TAKE_PTR(owned);
        s->listeners[s->n_listeners++] = l;
        if (l->admin) {
                s->want_spare_fds = true;
                varlink_server_spare_fds_refill(s);
        }
        return 0;
}

int varlink_server_listen_path_full(VarlinkServer *s, const char *path, mode_t mode, char **interfaces,
                                    unsigned flags) {
        _cleanup_(strv_freep) char **owned = interfaces;
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        mode_t old_umask;
        int r;

        assert_return(s, -EINVAL);
        assert_return(path, -EINVAL);

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();

        (void) unlink(path);
        /* Create the socket node with its final mode, so no client can race a chmod(). */
        old_umask = umask(~mode & 0777);
        r = bind(fd, (struct sockaddr *) &sa, sizeof(sa));
        umask(old_umask);
        if (r < 0 || listen(fd, SOMAXCONN) < 0)
                return negative_errno();

        r = varlink_server_listen_fd_full(s, fd, TAKE_PTR(owned), flags);
        if (r < 0)
                return r;
        TAKE_FD(fd);
        return 0;
}

void varlink_server_stop_listening(VarlinkServer *s) {
        for (size_t i = 0; i < s->n_listeners; i++)
                (void) event_del(s->listeners[i]->event);
        s->accept_paused = s->closer_paused = false;
        if (s->accept_resume)
                (void) event_del(s->accept_resume);
        s->stopped_listening = true;
}
