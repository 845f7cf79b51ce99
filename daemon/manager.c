/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Daemon set-up, socket adoption, signals and the main loop. Runs in: daemon. */

#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "config.h"
#include "guest.h"
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

static void on_reload_signal(evutil_socket_t sig, short what, void *userdata) {
        (void) manager_reload(userdata, NULL);
}

int manager_reload(Manager *m, char **ret_message) {
        DaemonConfig config;
        const char *message = NULL;
        unsigned line = 0;
        int r;

        if (!m->config_path)
                return 0;

        (void) sd_notify(false, "RELOADING=1");
        daemon_config_init(&config);
        r = daemon_config_load(&config, m->config_path, &line, &message);
        if (r == -ENOENT)
                r = 0; /* no file: the built-in defaults */
        if (r < 0) {
                daemon_config_done(&config);
                (void) sd_notify(false, "READY=1");
                if (ret_message && asprintf(ret_message, "%s:%u: %s", m->config_path, line, message) < 0)
                        *ret_message = NULL;
                return log_error_errno(r, "%s:%u: %s; keeping the configuration in force.",
                                       m->config_path, line, message);
        }

        /* What changes at run time: the emulated device set. Limits apply to new connections. */
        if (tsm_platform_is_emulated(m->platform)) {
                r = tsm_platform_set_emulated_devices(m->platform, config.platform.emulated_devices);
                if (r < 0)
                        log_error_errno(r, "Failed to apply the emulated device list: %m");
        }
        (void) varlink_server_set_limits(m->server, &config.limits);
        m->config.limits = config.limits;
        m->config.max_contexts_per_client = config.max_contexts_per_client;
        m->config.max_vdevices_per_client = config.max_vdevices_per_client;
        m->config.max_request_size = config.max_request_size;
        m->config.max_response_size = config.max_response_size;
        daemon_config_done(&config);

        log_info("Configuration reloaded from %s.", m->config_path);
        (void) sd_notify(false, "READY=1");
        return 0;
}

static void on_device_gone(TsmPlatform *p, const char *pci_address, void *userdata) {
        guest_device_gone(userdata, pci_address);
}

static int on_connect(VarlinkServer *s, VarlinkConn *c, void *userdata) {
        Manager *m = userdata;
        GuestClient *g;
        int r;

        r = guest_client_new(m, c, &g);
        if (r < 0)
                return r;
        varlink_conn_set_userdata(c, g);
        service_status_changed(m);
        return 0;
}

static void on_disconnect(VarlinkServer *s, VarlinkConn *c, void *userdata) {
        Manager *m = userdata;

        /* Everything the client created dies with its connection. */
        guest_client_free(varlink_conn_get_userdata(c));
        varlink_conn_set_userdata(c, NULL);
        service_forget_connection(m, c);
        service_status_changed(m);
}

int manager_new(DaemonConfig *config, const char *config_path, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        const char *missing = NULL;
        int r;

        m = new0(Manager, 1);
        if (!m)
                return -ENOMEM;
        m->config = *config;
        *config = (DaemonConfig) {};
        m->start_usec = now_monotonic_usec();
        if (config_path && !(m->config_path = strdup(config_path)))
                return -ENOMEM;

        m->base = event_base_new();
        if (!m->base)
                return -ENOMEM;

        r = tsm_platform_new(m->base, &m->config.platform, &m->platform);
        if (r < 0)
                return r;
        tsm_platform_set_device_gone_callback(m->platform, on_device_gone, m);

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
        r = guest_methods_register(m);
        if (r < 0)
                return r;
        /* Every method the IDL declares must have a handler. */
        r = varlink_server_check_complete(m->server, &missing);
        if (r < 0)
                return log_error_errno(r, "No handler for %s.", missing);

        m->sigterm = evsignal_new(m->base, SIGTERM, on_exit_signal, m);
        m->sigint = evsignal_new(m->base, SIGINT, on_exit_signal, m);
        m->sighup = evsignal_new(m->base, SIGHUP, on_reload_signal, m);
        if (!m->sigterm || !m->sigint || !m->sighup || event_add(m->sigterm, NULL) < 0 ||
            event_add(m->sigint, NULL) < 0 || event_add(m->sighup, NULL) < 0)
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

        /* Connections first: their owners unbind and close through the platform. */
        varlink_server_free(m->server);
        tsm_platform_free(m->platform);
        free(m->config_path);
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
