/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tsmd: the TSM broker daemon, privileged half (the monitor). Command line, configuration, the
 * capability drop, then the monitor's loop, which starts tsmd-worker for everything that
 * faces clients. This program never parses JSON: it does not link json-c or the Varlink code
 * (tests/privsep checks the binary). Runs in: monitor.
 */

#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sysexits.h>

#include "capability.h"
#include "config.h"
#include "daemon-config.h"
#include "discovery.h"
#include "fd-closer.h"
#include "daemon-config-trusted.h"
#include "fdstore.h"
#include "file-trust.h"
#include "last-good.h"
#include "log.h"
#include "monitor.h"
#include "policy.h"
#include "worker-spawn.h"

static const char *arg_socket = NULL;
static const char *arg_guest_socket = NULL;
static const char *arg_config = NULL;
static const char *arg_sysfs_root = NULL;
static bool arg_keep_capabilities = false;
static bool arg_check_config = false;
static bool arg_dump_config = false;
static const char *arg_worker = NULL;
static const char *arg_worker_user = TSMD_WORKER_USER;

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
               "     --worker=PATH      Run PATH as the worker (default: " TSMD_WORKER_PATH ",\n"
               "                        or tsmd-worker next to tsmd in a build tree)\n"
               "     --worker-user=USER Run the worker as USER (default: " TSMD_WORKER_USER ")\n"
               "     --check-config     Check the configuration and exit\n"
               "     --dump-config      Print the configuration the files give and exit\n");
}

/* SECURITY: a socket's file mode is its first gate (the admin socket's 0660). "@NAME", an
 * abstract socket to tsmctl and libtsm, has none: any local user of the network namespace could
 * connect, so tsmd serves none, rather than take it as a relative path that reads the same in the
 * log. A relative path would depend on the directory tsmd starts in. NULL: not given. */
static int socket_path_check(const char *option, const char *path) {
        if (!path)
                return 0;
        if (path[0] == '@')
                return log_error_errno(-EINVAL, "--%s=%s: abstract sockets (@NAME) are not served: they have no file "
                                                "permissions, so any local user could connect. Give an absolute path.",
                                       option, path);
        if (path[0] != '/')
                return log_error_errno(-EINVAL, "--%s=%s: not an absolute path.", option, path);
        return 0;
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_SOCKET, ARG_GUEST_SOCKET, ARG_CONFIG, ARG_LOG_LEVEL, ARG_CHECK, ARG_DUMP, ARG_SYSFS_ROOT, ARG_KEEP_CAPS,
               ARG_WORKER, ARG_WORKER_USER };
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
                { "worker", required_argument, NULL, ARG_WORKER },
                { "worker-user", required_argument, NULL, ARG_WORKER_USER },
                {},
        };
        int c, l, r;

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
                case ARG_WORKER:
                        arg_worker = optarg;
                        break;
                case ARG_WORKER_USER:
                        arg_worker_user = optarg;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        return -EINVAL;
                }

        if (optind < argc)
                return log_error_errno(-EINVAL, "This program takes no positional arguments.");
        r = socket_path_check("socket", arg_socket);
        if (r >= 0)
                r = socket_path_check("guest-socket", arg_guest_socket);
        if (r < 0)
                return r;
        return 1;
}

/* The worker next to this tsmd (a build tree, whose tsmd must not run the worker of another
 * version installed on the host), else the installed one (/usr/sbin has no tsmd-worker). */
static int find_worker(char **ret) {
        char self[PATH_MAX], *path = NULL;
        ssize_t n;

        if (arg_worker)
                path = strdup(arg_worker);
        else {
                n = readlink("/proc/self/exe", self, sizeof(self) - 1);
                if (n >= 0) {
                        self[n] = 0;
                        if (asprintf(&path, "%s/tsmd-worker", dirname(self)) < 0)
                                return -ENOMEM;
                        if (access(path, X_OK) < 0)
                                path = mfree(path);
                }
                if (!path)
                        path = strdup(TSMD_WORKER_PATH);
        }
        if (!path)
                return -ENOMEM;
        *ret = path;
        return 0;
}

/* The soft RLIMIT_NOFILE of 1024 that shells and service managers hand out is there for
 * programs that use select(); tsmd uses epoll, and every context the monitor keeps and every
 * connection the worker serves is an fd. So it takes what the hard limit allows, as systemd
 * advises such programs to do; the worker inherits it. */
static void raise_nofile_limit(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
                return;
        log_debug("Raising the RLIMIT_NOFILE soft limit from %llu to the hard limit, %llu.",
                  (unsigned long long) rl.rlim_cur, (unsigned long long) rl.rlim_max);
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                log_warning_errno(-errno, "Failed to raise the RLIMIT_NOFILE soft limit, keeping it: %m");
}

/* The worker's group, whose writes no file root acts on may carry (GID_INVALID: no such user
 * here, e.g. a check on another machine). */
static gid_t config_worker_gid(void) {
        uid_t uid;
        gid_t gid = GID_INVALID;

        (void) worker_user_lookup(arg_worker_user, &uid, &gid);
        return gid;
}

/* --check-config and --dump-config: the policy the configuration names, as the worker loads it
 * (a bad one keeps the worker from starting). The dump goes out as comments, so that the whole
 * of --dump-config stays a valid tsmd.conf; without the "# " it is a valid policy file. */
static int check_policy(const DaemonConfig *c, bool dump) {
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL, *text = NULL;
        size_t size = 0;
        PolicyFileTrust trust = { .owner = geteuid(), .worker_gid = GID_INVALID };
        uid_t worker_uid;
        FILE *f;
        int r;

        /* As the worker will: refusing what its group may write (its user exists where tsmd
         * is installed; elsewhere, e.g. a check as another user, there is no such group). */
        (void) worker_user_lookup(arg_worker_user, &worker_uid, &trust.worker_gid);
        r = policy_load_full(c->policy_file, c->policy_dropin_dir, &trust, &p, &error);
        if (r < 0 && error)
                return log_error_errno(r, "%s.", error);
        if (r < 0)
                return log_error_errno(r, "Failed to load the policy: %m");
        policy_warn_unit_only_rules(p);
        if (!dump)
                return 0;

        f = open_memstream(&text, &size);
        if (!f)
                return log_oom();
        r = policy_dump(p, f);
        if (fclose(f) != 0 && r >= 0)
                r = -errno;
        if (r < 0)
                return log_error_errno(r, "Failed to write the policy: %m");

        printf("\n# The policy from '%s' and '%s/*.conf', merged:\n#\n", strna(c->policy_file),
               strna(c->policy_dropin_dir));
        for (const char *l = text; *l;) {
                size_t n = strcspn(l, "\n");

                printf("#%s%.*s\n", n > 0 ? " " : "", (int) n, l);
                l += n + (l[n] == '\n');
        }
        return 0;
}

/* Whether the policy c names loads, as the monitor loads it next (and says why not). */
static bool policy_loads(const DaemonConfig *c, const PolicyFileTrust *trust) {
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL;

        return policy_load_full(c->policy_file, c->policy_dropin_dir, trust, &p, &error) >= 0;
}

/* The configuration in force before a restart of tsmd, if the service manager kept it
 * (last-good.h). The monitor says it serves it, once it has loaded the files again and taken the
 * policy kept with it (monitor-files.c, files_at_start()). */
static int config_kept_before_restart(DaemonConfig *ret) {
        _cleanup_(policy_unrefp) Policy *policy = NULL;
        _cleanup_free_ char *names = NULL;
        int fd;

        fd = fdstore_passed_fd(FDSTORE_LAST_GOOD_NAME);
        if (fd < 0)
                return fd;
        return last_good_restore(fd, ret, &policy, &names, NULL);
}

int main(int argc, char *argv[]) {
        _cleanup_(monitor_freep) Monitor *m = NULL;
        _cleanup_free_ char *worker = NULL;
        const char *config_path = arg_config;
        PolicyFileTrust trust;
        DaemonConfig config, kept;
        bool files_refused;
        int r, k;

        log_set_ident("tsmd");
        /* A SIGHUP before the monitor reads them (signal-source.h) waits for it, rather than end
         * tsmd at its default action while it loads its files and sockets (systemctl reload sends
         * none, a kill -HUP could). */
        {
                sigset_t hup;

                if (sigemptyset(&hup) < 0 || sigaddset(&hup, SIGHUP) < 0 || sigprocmask(SIG_BLOCK, &hup, NULL) < 0)
                        log_warning_errno(negative_errno(), "Cannot block SIGHUP: %m");
        }
        /* Every load of tsmd.conf here, --check-config's, the start's and each reload's, refuses an
         * IommuDevice= whose open would be refused at every OpenContext. */
        daemon_config_set_check_host(true);

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        config_path = arg_config ?: DAEMON_CONFIG_FILE_DEFAULT;

        r = daemon_config_init(&config);
        if (r < 0) {
                log_oom();
                return EXIT_FAILURE;
        }
        /* SECURITY: root acts on what it names: checked as the policy files are, by whoever
         * runs it (--check-config as another user trusts that user's files, as for the policy). */
        trust = (PolicyFileTrust) { .owner = geteuid(), .worker_gid = config_worker_gid() };
        r = daemon_config_load_trusted_logged(&config, config_path, !arg_config, &trust);
        /* A start over files that do not load serves the set in force before a restart of tsmd,
         * if one is kept, and whole: what the monitor reads at start only (the platform,
         * MaxContexts=, the worker's directories) is that set's too, not a tsmd.conf's whose
         * policy did not load. A policy that does not load with nothing kept: the monitor says
         * so, and does not start. */
        if (!arg_check_config && !arg_dump_config && (r < 0 || !policy_loads(&config, &trust))) {
                k = config_kept_before_restart(&kept);
                if (k >= 0) {
                        daemon_config_done(&config);
                        config = kept;
                        r = 0;
                } else if (r < 0 && k == -ENOENT)
                        log_error("%s does not load, and no configuration that loaded before is kept: not starting.",
                                  config_path);
                else if (r < 0)
                        log_error_errno(k, "%s does not load, nor does the configuration kept from before the restart "
                                           "(%m): not starting.", config_path);
        }
        /* Files only a person can fix: EX_CONFIG, which the unit's RestartPreventExitStatus=
         * does not restart into the same files (five starts in five seconds, and the start
         * limit would fail the sockets too). */
        if (r < 0) {
                daemon_config_done(&config);
                return arg_check_config || arg_dump_config || r == -ENOMEM ? EXIT_FAILURE : EX_CONFIG;
        }
        if (arg_check_config || arg_dump_config) {
                if (arg_dump_config)
                        daemon_config_dump(&config, stdout);
                r = check_policy(&config, arg_dump_config);
                if (r >= 0 && !arg_dump_config)
                        printf("configuration OK\n");
                daemon_config_done(&config);
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        }

        if (geteuid() != 0) {
                daemon_config_done(&config);
                log_error("tsmd must be started as root: it keeps the IOMMU and TSM access, and runs "
                          "everything that faces clients as '%s' without privileges.", arg_worker_user);
                return EXIT_FAILURE;
        }
        r = find_worker(&worker);
        if (r < 0) {
                daemon_config_done(&config);
                return EXIT_FAILURE;
        }

        /* Before any thread or sd-device object exists: it changes the mount namespace. */
        if (arg_sysfs_root) {
                r = discovery_enter_sysfs_root(arg_sysfs_root);
                if (r < 0) {
                        daemon_config_done(&config);
                        return log_error_errno(r, "Cannot use '%s' as sysfs root: %m", arg_sysfs_root), EXIT_FAILURE;
                }
        }

        /* Ignored, so that a worker that hangs up on us cannot kill us, nor a full log file. */
        (void) signal(SIGPIPE, SIG_IGN);
        (void) signal(SIGXFSZ, SIG_IGN);

        raise_nofile_limit();
        /* SECURITY: an fd from the worker may be a client's, of a file system the client serves
         * (FUSE), whose close waits on it for as long as it likes: those we refuse are closed
         * by a thread of their own, never by the loop (fd-closer.h). After the limit is
         * raised, which sizes its queue. */
        r = fd_closer_start();
        if (r < 0) {
                daemon_config_done(&config);
                return log_error_errno(r, "Failed to set up closing the worker's fds off the event loop: %m"), EXIT_FAILURE;
        }
        r = monitor_new(&(MonitorOptions){
                                .config_path = config_path,
                                .config_optional = !arg_config,
                                .socket_path = arg_socket,
                                .guest_socket_path = arg_guest_socket,
                                .worker_path = worker,
                                .worker_user = arg_worker_user,
                                .log_level = log_get_max_level(),
                        },
                        &config, &m);
        daemon_config_done(&config);
        if (r < 0)
                return log_error_errno(r, "Failed to set up: %m"), EXIT_FAILURE;
        r = monitor_listen(m);
        if (r < 0)
                return EXIT_FAILURE;

        /* Everything needing more privilege (the namespace, the worker's directories, binding
         * the sockets) is done. */
        r = capability_drop_to_minimum(arg_keep_capabilities);
        if (r < 0) {
                log_error("Refusing to run with more capabilities than needed (see --keep-capabilities).");
                return EXIT_FAILURE;
        }
        capability_log_effective();

        r = monitor_run(m);
        /* A policy that does not load, with nothing kept: the monitor said which file and why,
         * before it started a worker. */
        files_refused = monitor_refused_files(m);
        /* The fds it holds go to the closer too, which then ends: nothing of it is left at a
         * clean exit (unless a close waits on a file system, which the exit would too). */
        m = monitor_free(m);
        fd_closer_stop(FD_CLOSER_STOP_USEC);
        if (r < 0 && files_refused)
                return EX_CONFIG;
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
