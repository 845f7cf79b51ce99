/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The privileged monitor: holds the platform (the kernel's TSMs or the emulated one), the
 * iommufds and the listening sockets; starts the worker as its own user with no capabilities,
 * answers its requests through the dispatch table, and when the worker dies or breaks the
 * rules, starts a new one with backoff, keeping every fd. Speaks to the service manager
 * (READY, STATUS, STOPPING, the fd store) on the worker's behalf, and pings its watchdog for
 * itself.
 * Runs in: monitor.
 */
#pragma once

#include "daemon-config.h"
#include "macro.h"

typedef struct Monitor Monitor;

typedef struct MonitorOptions {
        const char *config_path;       /* reread on reload */
        bool config_optional;          /* a missing file means the defaults */
        const char *socket_path;       /* every interface, mode 0660 */
        const char *guest_socket_path; /* io.tsmd.Guest, mode 0666 */
        const char *worker_path;
        const char *worker_user;
        int log_level;
} MonitorOptions;

/* Takes over config (its strings). */
int monitor_new(const MonitorOptions *o, DaemonConfig *config, Monitor **ret);
Monitor *monitor_free(Monitor *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Monitor *, monitor_free);

/* Adopts the service manager's sockets and kept iommufds, and opens the sockets asked for. */
int monitor_listen(Monitor *m);
/* Starts the worker and runs until SIGTERM/SIGINT and the worker's exit. */
int monitor_run(Monitor *m);
/* Whether monitor_run() failed because the configuration or policy does not load and nothing
 * that loaded before is kept: files only a person can fix (out of memory is not that). */
bool monitor_refused_files(const Monitor *m);
