/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tsmd-worker: the half of tsmd that faces the VMMs. Started by tsmd (the monitor) only, with
 * its end of the channel on fd 3, as its own user, with no capabilities. It checks that before
 * anything else, then serves Varlink: authentication, policy, limits and audit. Everything
 * privileged it asks of the monitor (priv-call.h). Runs in: worker.
 */

#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <systemd/sd-daemon.h>

#include "capability.h"
#include "config.h"
#include "daemon-config.h"
#include "fd-closer.h"
#include "log.h"
#include "manager.h"
#include "tsm-priv.h"
#include "worker-sandbox.h"

/* glibc's initial M_MMAP_THRESHOLD, kept (see main()). */
#define MMAP_THRESHOLD (128 * 1024)

static const char *arg_config = NULL;
static int arg_audit_dir_fd = -EBADF;

static void help(void) {
        printf("Usage: tsmd-worker [OPTIONS]\n\n"
               "The unprivileged half of tsmd; started by tsmd, not by hand.\n\n"
               "  -h --help             Show this help\n"
               "     --version          Show the version\n"
               "     --config=FILE      Read FILE instead of " DAEMON_CONFIG_FILE_DEFAULT "\n"
               "     --log-level=LEVEL  emerg, alert, crit, err, warning, notice, info, debug\n"
               "     --audit-directory-fd=FD\n"
               "                        The audit directory, as tsmd holds it locked for its workers\n");
}

/* An fd we were started with that is open, and a directory (-ENOTDIR): not one of the channel's. */
static int audit_directory_fd_parse(const char *s, int *ret) {
        struct stat st;
        char *end;
        long fd;

        errno = 0;
        fd = strtol(s, &end, 10);
        if (errno != 0 || end == s || *end || fd <= TSM_PRIV_CHANNEL_FD + 1 || fd > INT_MAX)
                return -EINVAL;
        if (fstat((int) fd, &st) < 0)
                return negative_errno();
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        if (fcntl((int) fd, F_SETFD, FD_CLOEXEC) < 0)
                return negative_errno();
        *ret = (int) fd;
        return 0;
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_CONFIG, ARG_LOG_LEVEL, ARG_AUDIT_DIRECTORY_FD };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "audit-directory-fd", required_argument, NULL, ARG_AUDIT_DIRECTORY_FD },
                {},
        };
        int c, l, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("tsmd-worker %s\n", PACKAGE_VERSION);
                        return 0;
                case ARG_CONFIG:
                        arg_config = optarg;
                        break;
                case ARG_LOG_LEVEL:
                        l = log_parse_level(optarg);
                        if (l < 0)
                                return log_error_errno(l, "Invalid log level '%s'.", optarg);
                        log_set_max_level(l);
                        break;
                case ARG_AUDIT_DIRECTORY_FD:
                        r = audit_directory_fd_parse(optarg, &arg_audit_dir_fd);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --audit-directory-fd='%s': %m", optarg);
                        break;
                default:
                        return -EINVAL;
                }

        if (optind < argc)
                return log_error_errno(-EINVAL, "This program takes no positional arguments.");
        return 1;
}

int main(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        const char *config_path;
        int r;

        log_set_ident("tsmd-worker");

        /* Large blocks (an audit query's records, a large answer's text, megabytes each) are
         * mapped and unmapped on their own, always. glibc's default raises the threshold to the
         * size of the largest block freed so far, after which such blocks come from the heaps,
         * and a query thread's arena keeps their memory after they are freed (malloc_trim()
         * does not give back the top of a thread's arena): four queries of 10000 records left
         * the worker 25 MB larger for good. Setting it keeps glibc's initial 128 KiB. */
        if (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1)
                log_warning("Failed to fix malloc's mmap threshold, ignoring.");

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        config_path = arg_config ?: DAEMON_CONFIG_FILE_DEFAULT;

        if (sd_is_socket(TSM_PRIV_CHANNEL_FD, AF_UNIX, SOCK_SEQPACKET, -1) <= 0) {
                log_error("No channel to tsmd on fd %d: tsmd-worker is started by tsmd only.", TSM_PRIV_CHANNEL_FD);
                return EXIT_FAILURE;
        }
        /* Open until the process ends: the monitor kills a worker that lets go of its channel
         * and lives on, so the end of file must come from our exit itself, which no signal
         * changes any more (the exit status stays ours). */
        if (fcntl(TSM_PRIV_CHANNEL_FD, F_DUPFD_CLOEXEC, TSM_PRIV_CHANNEL_FD + 1) < 0) {
                log_error_errno(-errno, "Failed to keep the channel to tsmd: %m");
                return EXIT_FAILURE;
        }

        /* SECURITY: this process parses what VMMs send. Before it reads a byte of that, make
         * sure it could not do anything privileged even if it wanted to. */
        r = capability_verify_none();
        if (r < 0 || getuid() == 0 || geteuid() == 0) {
                log_full(LOG_EMERG, "Refusing to run with privileges left (uid %u, see above).", (unsigned) geteuid());
                abort();
        }
        /* SECURITY: and no process of its own that the monitor could not kill with it. Threads
         * (the audit writer, the request lanes) are still allowed, whenever they start. */
        r = worker_sandbox_apply();
        if (r < 0) {
                log_full_errno(LOG_EMERG, r, "Refusing to run without the process sandbox: %m");
                abort();
        }

        /* SECURITY: a client's fd may be of a file system the client serves (FUSE), whose close
         * waits on it for as long as it likes: they are closed by a thread of their own, never
         * by the loop (fd-closer.h). */
        r = fd_closer_start();
        if (r < 0)
                return log_error_errno(r, "Failed to set up closing clients' fds off the event loop: %m"), EXIT_FAILURE;

        /* A client hanging up must not kill us; writes report EPIPE instead. Likewise a file
         * size limit: the audit log must see EFBIG and fail closed, not die. */
        (void) signal(SIGPIPE, SIG_IGN);
        (void) signal(SIGXFSZ, SIG_IGN);

        /* The configuration and policy come with the monitor's start sequence (manager.c). */
        r = manager_new(config_path, !arg_config, TSM_PRIV_CHANNEL_FD, arg_audit_dir_fd, &m);
        /* The audit log holds the directory by a duplicate of its own (the lock is the open
         * file's, which the monitor keeps open anyway). */
        arg_audit_dir_fd = safe_close(arg_audit_dir_fd);
        if (r < 0)
                return log_error_errno(r, "Failed to set up: %m"), EXIT_FAILURE;

        r = manager_listen(m);
        if (r < 0)
                return EXIT_FAILURE;

        log_info("Worker serving as uid %u with no capabilities.", (unsigned) getuid());
        r = manager_run(m);
        /* The clients' fds it holds go to the closer too, which then ends: nothing of it is
         * left at a clean exit (unless a close waits on a file system, which the exit would
         * too). */
        m = manager_free(m);
        fd_closer_stop(FD_CLOSER_STOP_USEC);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
