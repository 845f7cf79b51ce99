/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmd: the TSM broker daemon. Command line, configuration, then the main loop. Runs in: daemon. */

#include <getopt.h>
#include <signal.h>
#include <stdio.h>

#include "capability.h"
#include "config.h"
#include "daemon-config.h"
#include "discovery.h"
#include "log.h"
#include "manager.h"

static const char *arg_socket = NULL;
static const char *arg_guest_socket = NULL;
static const char *arg_config = NULL;
static const char *arg_sysfs_root = NULL;
static bool arg_keep_capabilities = false;
static bool arg_check_config = false;
static bool arg_dump_config = false;

static void help(void) {
        printf("Usage: tsmd [OPTIONS]\n\n"
               "Brokers TSM/TDISP device-security requests between VMMs and the kernel.\n\n"
               "  -h --help             Show this help\n"
               "     --version          Show the version\n"
               "     --socket=PATH      Serve all interfaces on PATH (mode 0660), in addition to\n"
               "                        sockets passed by systemd\n"
               "     --guest-socket=PATH  Serve io.tsmd.Guest on PATH (mode 0666)\n"
               "     --config=FILE      Read FILE instead of " DAEMON_CONFIG_FILE_DEFAULT "\n"
               "     --log-level=LEVEL  emerg, alert, crit, err, warning, notice, info, debug\n"
               "     --sysfs-root=DIR   Discover TSMs and devices in DIR instead of /sys (enters a\n"
               "                        private mount namespace; for tests and diagnosis)\n"
               "     --keep-capabilities  Run even if capabilities beyond the minimum cannot be\n"
               "                        dropped (default: refuse)\n"
               "     --check-config     Check the configuration and exit\n"
               "     --dump-config      Print the effective configuration and exit\n");
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_SOCKET, ARG_GUEST_SOCKET, ARG_CONFIG, ARG_LOG_LEVEL, ARG_CHECK, ARG_DUMP, ARG_SYSFS_ROOT, ARG_KEEP_CAPS };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "guest-socket", required_argument, NULL, ARG_GUEST_SOCKET },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "check-config", no_argument, NULL, ARG_CHECK },
                { "dump-config", no_argument, NULL, ARG_DUMP },
                { "sysfs-root", required_argument, NULL, ARG_SYSFS_ROOT },
                { "keep-capabilities", no_argument, NULL, ARG_KEEP_CAPS },
                {},
        };
        int c, l;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("tsmd %s\n", PACKAGE_VERSION);
                        return 0;
                case ARG_SOCKET:
                        arg_socket = optarg;
                        break;
                case ARG_GUEST_SOCKET:
                        arg_guest_socket = optarg;
                        break;
                case ARG_CONFIG:
                        arg_config = optarg;
                        break;
                case ARG_LOG_LEVEL:
                        l = log_parse_level(optarg);
                        if (l < 0)
                                return log_error_errno(l, "Invalid log level '%s'.", optarg);
                        log_set_max_level(l);
                        break;
                case ARG_CHECK:
                        arg_check_config = true;
                        break;
                case ARG_DUMP:
                        arg_dump_config = true;
                        break;
                case ARG_SYSFS_ROOT:
                        arg_sysfs_root = optarg;
                        break;
                case ARG_KEEP_CAPS:
                        arg_keep_capabilities = true;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        return -EINVAL;
                }

        if (optind < argc)
                return log_error_errno(-EINVAL, "This program takes no positional arguments.");
        return 1;
}

static int load_config(DaemonConfig *config, const char **ret_path) {
        const char *path = arg_config ?: DAEMON_CONFIG_FILE_DEFAULT;
        const char *message = NULL;
        unsigned line = 0;
        int r;

        *ret_path = path;
        r = daemon_config_load(config, path, &line, &message);
        if (r == -ENOENT && !arg_config)
                return 0; /* no config file: built-in defaults (reload picks one up later) */
        if (r < 0 && line > 0)
                return log_error_errno(r, "%s:%u: %s.", path, line, message);
        if (r < 0)
                return log_error_errno(r, "Failed to load '%s': %s: %m", path, message);
        return 0;
}

int main(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        const char *config_path = NULL;
        DaemonConfig config;
        int r;

        log_set_ident("tsmd");

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        daemon_config_init(&config);
        r = load_config(&config, &config_path);
        if (r < 0) {
                daemon_config_done(&config);
                return EXIT_FAILURE;
        }
        if (arg_check_config || arg_dump_config) {
                if (arg_dump_config)
                        daemon_config_dump(&config, stdout);
                else
                        printf("configuration OK\n");
                daemon_config_done(&config);
                return EXIT_SUCCESS;
        }

        /* Before any thread or sd-device object exists: it changes the mount namespace. */
        if (arg_sysfs_root) {
                r = discovery_enter_sysfs_root(arg_sysfs_root);
                if (r < 0) {
                        daemon_config_done(&config);
                        return log_error_errno(r, "Cannot use '%s' as sysfs root: %m", arg_sysfs_root), EXIT_FAILURE;
                }
        }

        /* Everything needing more privilege (the mount namespace above) is done. */
        r = capability_drop_to_minimum(arg_keep_capabilities);
        if (r < 0) {
                daemon_config_done(&config);
                log_error("Refusing to run with more capabilities than needed (see --keep-capabilities).");
                return EXIT_FAILURE;
        }
        capability_log_effective();

        /* A client hanging up must not kill us; writes report EPIPE instead. Likewise a file
         * size limit: the audit log must see EFBIG and fail closed, not die. */
        (void) signal(SIGPIPE, SIG_IGN);
        (void) signal(SIGXFSZ, SIG_IGN);

        r = manager_new(&config, config_path, &m);
        daemon_config_done(&config);
        if (r < 0)
                return log_error_errno(r, "Failed to set up: %m"), EXIT_FAILURE;

        r = manager_listen(m, arg_socket, arg_guest_socket);
        if (r < 0)
                return EXIT_FAILURE;

        log_info("tsmd %s running.", PACKAGE_VERSION);
        r = manager_run(m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
