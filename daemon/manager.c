/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Daemon set-up, socket adoption, signals and the main loop. Runs in: daemon. */

#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "config.h"
#include "log.h"
#include "manager.h"
#include "varlink-service.h"

uint64_t now_monotonic_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

static void on_exit_signal(evutil_socket_t sig, short what, void *userdata) {
        Manager *m = userdata;

        log_info("Received %s, exiting.", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        (void) sd_notify(false, "STOPPING=1");
        (void) event_base_loopexit(m->base, NULL);
}

static int on_connect(VarlinkServer *s, VarlinkConn *c, void *userdata) {
        service_status_changed(userdata);
        return 0;
}

static void on_disconnect(VarlinkServer *s, VarlinkConn *c, void *userdata) {
        Manager *m = userdata;

        service_forget_connection(m, c);
        service_status_changed(m);
}

int manager_new(const DaemonConfig *config, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = new0(Manager, 1);
        if (!m)
                return -ENOMEM;
        m->config = *config;
        m->start_usec = now_monotonic_usec();

        m->base = event_base_new();
        if (!m->base)
                return -ENOMEM;

        r = varlink_server_new(m->base, &m->server);
        if (r < 0)
                return r;
        r = varlink_server_set_info(m->server, "tsmd", "tsmd", PACKAGE_VERSION, PACKAGE_URL);
        if (r < 0)
                return r;
        r = varlink_server_set_limits(m->server, &m->config.limits);
        if (r < 0)
                return r;
        varlink_server_set_userdata(m->server, m);
        varlink_server_set_connection_callbacks(m->server, on_connect, on_disconnect);

        r = service_methods_register(m);
        if (r < 0)
                return r;

        m->sigterm = evsignal_new(m->base, SIGTERM, on_exit_signal, m);
        m->sigint = evsignal_new(m->base, SIGINT, on_exit_signal, m);
        if (!m->sigterm || !m->sigint || event_add(m->sigterm, NULL) < 0 ||
            event_add(m->sigint, NULL) < 0)
                return -ENOMEM;

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        for (size_t i = 0; i < m->n_status_subscribers; i++)
                varlink_call_unref(m->status_subscribers[i]);
        free(m->status_subscribers);
        m->n_status_subscribers = 0;

        varlink_server_free(m->server);
        if (m->sigterm)
                event_free(m->sigterm);
        if (m->sigint)
                event_free(m->sigint);
        if (m->sighup)
                event_free(m->sighup);
        if (m->base)
                event_base_free(m->base);
        daemon_config_done(&m->config);
        return mfree(m);
}

int manager_listen(Manager *m, const char *path) {
        int n, r;

        n = sd_listen_fds(true);
        if (n < 0)
                return log_error_errno(n, "Failed to read sockets passed by the service manager: %m");

        for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
                /* Only listening AF_UNIX stream sockets make sense for Varlink. */
                r = sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0);
                if (r <= 0)
                        return log_error_errno(r < 0 ? r : -EINVAL,
                                               "Passed fd %d is not a listening AF_UNIX stream socket.", fd);
                r = varlink_server_listen_fd(m->server, fd);
                if (r < 0)
                        return log_error_errno(r, "Failed to adopt passed socket: %m");
        }

        if (path) {
                r = varlink_server_listen_path(m->server, path, 0666);
                if (r < 0)
                        return log_error_errno(r, "Failed to listen on '%s': %m", path);
                log_info("Listening on unix:%s", path);
        } else if (n == 0)
                return log_error_errno(-EINVAL, "No socket passed by the service manager and no --socket= given.");

        return 0;
}

int manager_run(Manager *m) {
        (void) sd_notify(false, "READY=1\nSTATUS=Serving.");

        if (event_base_dispatch(m->base) < 0)
                return log_error_errno(-EIO, "Event loop failed.");
        return 0;
}
