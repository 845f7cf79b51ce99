/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A tsmd of its own for each libtsm test: the real binary (TSMD_PATH, set by meson) on the
 * emulated platform, in a fresh temporary directory, with its Guest socket at <dir>/guest. It
 * can be killed and started again on the same sockets (for reconnect tests), reloaded with
 * another configuration (for events), and stopped with SIGTERM. tsmd gets PR_SET_PDEATHSIG, so
 * it never outlives a test that failed. Every wait is bounded; failures end the test through
 * tests/harness.h. Runs in: tests only.
 */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"

typedef struct TsmdInstance {
        pid_t pid; /* 0 when not running */
        char dir[PATH_MAX];
        char guest_socket[PATH_MAX];
        char admin_socket[PATH_MAX];
        char config_path[PATH_MAX];
        char log_path[PATH_MAX];
        char extra_config[1024]; /* appended to the [Platform] section */
        unsigned nofile;         /* tsmd's RLIMIT_NOFILE (soft and hard); 0: ours */
} TsmdInstance;

/* Starts tsmd; extra_config (may be NULL) is appended to "[Platform]\nMode=emulated\n", e.g.
 * "EmulatedLatencyUSec=500000\n". Fails the test unless the socket accepts within 10 s. */
void tsmd_instance_start(TsmdInstance *t, const char *extra_config);
/* The same, with RLIMIT_NOFILE nofile (soft and hard) for tsmd and its worker. */
void tsmd_instance_start_nofile(TsmdInstance *t, const char *extra_config, unsigned nofile);
/* tsmd's worker, 0 if it has none right now. */
pid_t tsmd_instance_worker_pid(TsmdInstance *t);
/* Starts it again with the same directory, sockets and configuration (after a kill). */
void tsmd_instance_restart(TsmdInstance *t);
/* Sends sig and reaps tsmd (bounded). */
void tsmd_instance_kill(TsmdInstance *t, int sig);
/* SIGKILLs tsmd's worker; returns once the monitor's next one serves (its contexts wait to be
 * reclaimed). */
void tsmd_instance_kill_worker(TsmdInstance *t);
/* SIGTERM, expecting a clean exit (status 0) within 5 s. */
void tsmd_instance_stop(TsmdInstance *t);
/* Rewrites the configuration (extra_config as for start) and sends SIGHUP; waits until tsmd
 * logged that it reloaded. */
void tsmd_instance_reload(TsmdInstance *t, const char *extra_config);
/* Stops tsmd if it runs and removes the directory. */
void tsmd_instance_done(TsmdInstance *t);

/* Prints tsmd's log to stderr (for failing tests). */
void tsmd_instance_dump_log(TsmdInstance *t);

uint64_t test_now_usec(void);
