/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tsmd's configuration: built-in defaults, then /etc/tsmd/tsmd.conf (INI, systemd style),
 * then the command line. Every limit a client controls is a knob here. Runs in: monitor and worker.
 */
#pragma once

#include <stdio.h>

#include "audit-sync-mode.h"
#include "tsm-platform.h"
#include "varlink-stream.h"

#define DAEMON_CONFIG_FILE_DEFAULT SYSCONFDIR "/tsmd/tsmd.conf"
#define DAEMON_CONFIG_FILE_MAX (1024U * 1024U)

typedef struct DaemonConfig {
        VarlinkLimits limits;
        TsmPlatformConfig platform;
        unsigned max_contexts_per_client;
        unsigned max_contexts; /* over all clients, orphans included; read at start */
        unsigned max_contexts_per_uid; /* over one uid's clients, its orphans included */
        unsigned max_vdevices_per_client;
        size_t max_request_size;  /* caps every scope's own request limit */
        size_t max_response_size; /* caps every scope's own response limit */
        char *context_state_dir;  /* state of stored contexts, for restarts */
        uint64_t reclaim_timeout_sec;
        /* AttachDevice of a kernel TSM's device only with the VFIO device fd proving it */
        bool require_vfio_fd;

        char *policy_file;        /* who may do what (daemon/policy/POLICY.md) */
        char *policy_dropin_dir;

        char *audit_dir;
        uint64_t audit_max_file_size;
        unsigned audit_files;
        AuditSyncMode audit_sync_mode;
        bool audit_journal;
        unsigned audit_journal_backlog;       /* records waiting for journald; beyond: dropped, counted */
        unsigned audit_max_in_flight;         /* records in flight of the callers the policy names */
        unsigned audit_max_in_flight_per_uid; /* of one uid */
        unsigned audit_max_in_flight_unnamed; /* of the callers it does not name, together */
        unsigned audit_refusals_per_uid;      /* refusals recorded one by one per uid and interval */
        unsigned audit_refusal_interval_sec;  /* ...the rest summarized at its end */
        unsigned audit_refusal_share_percent; /* of each audit file refusals may take */
        unsigned audit_max_queries;           /* QueryAudit threads at once */
        unsigned audit_max_followers;         /* FollowAudit calls at once */
        uint64_t audit_max_query_scan;        /* bytes one QueryAudit call reads */
        unsigned audit_max_query_records;     /* records one QueryAudit call answers */

        /* The worker's life, as the monitor watches it; read at start. */
        unsigned worker_start_timeout_sec; /* from its start to READY */
        unsigned worker_watchdog_sec;      /* silence once serving; it beats 3 times as often, >= every 5 s */
        unsigned worker_stop_timeout_sec;  /* from SIGTERM to its exit, then SIGKILL */
        unsigned worker_kill_timeout_sec;  /* from SIGKILL to its exit, then given up on */
        unsigned worker_drain_timeout_sec; /* the worker's own wait on requests in flight at a stop */
} DaemonConfig;

/* [Worker]'s defaults. A stop's bound, StopTimeoutSec= plus KillTimeoutSec= at their maxima,
 * stays below tsmd.service's TimeoutStopSec=, which is systemd's kill of the whole unit; the
 * first worker's StartTimeoutSec= below its TimeoutStartSec= (both 90 s), with 10 s for the
 * monitor's own start and exit. */
#define WORKER_START_TIMEOUT_SEC_DEFAULT 15U
#define WORKER_WATCHDOG_SEC_DEFAULT 15U
#define WORKER_STOP_TIMEOUT_SEC_DEFAULT 15U
#define WORKER_KILL_TIMEOUT_SEC_DEFAULT 5U
#define WORKER_DRAIN_TIMEOUT_SEC_DEFAULT 10U
#define WORKER_START_TIMEOUT_SEC_MAX 80U
#define WORKER_STOP_TIMEOUT_SEC_MAX 60U
/* The stop's time a drain leaves: the last unbinds' wait, then the audit log's close. */
#define WORKER_STOP_SPARE_SEC 2U
#define WORKER_KILL_TIMEOUT_SEC_MAX 20U

/* Whether the loads of this process check what a value names on this host, as the monitor will
 * use it: IommuDevice= must not name anything but the IOMMU's device (iommufd_device_check()).
 * tsmd (the monitor, and --check-config) does; not the worker, whose sandbox shows another /dev,
 * nor a test of the parser. Off until set. */
void daemon_config_set_check_host(bool b);

/* The built-in defaults. -ENOMEM, with nothing left to free, if a default path cannot be copied. */
int daemon_config_init(DaemonConfig *c);
void daemon_config_done(DaemonConfig *c);

/* Loads a config file over the current values (which stay untouched on failure). A missing
 * file is -ENOENT; anything but a regular file -EISDIR or -EBADFD ("not a regular file"). Syntax or value errors are -EBADMSG/-EINVAL/-ERANGE with the line in
 * *ret_line and a description in *ret_message (static storage: valid until the next load in this
 * thread). */
int daemon_config_load(DaemonConfig *c, const char *path, unsigned *ret_line, const char **ret_message);

/* The same for the text of a file read already (ini_read_file()), whose name is in no message. */
int daemon_config_load_text(DaemonConfig *c, const char *text, unsigned *ret_line, const char **ret_message);
/* Logs a failed load of path as daemon_config_load_logged() does; returns error. */
int daemon_config_log_load_error(const char *path, int error, unsigned line, const char *message);
/* The same failure as text for a client, naming the file: "path:line: message", or "path:
 * message" of the file as a whole (with the errno's text where the message needs it). 0 or
 * -ENOMEM. */
int daemon_config_format_load_error(const char *path, int error, unsigned line, const char *message, char **ret);

/* daemon_config_load() for a program's start, logging what is wrong; a missing file is fine
 * (built-in defaults) if optional. */
int daemon_config_load_logged(DaemonConfig *c, const char *path, bool optional);

/* Writes the effective configuration in config-file syntax (tsmd --dump-config). */
void daemon_config_dump(const DaemonConfig *c, FILE *f);

/* The settings read at start (those a reload does not apply) in config-file syntax, as
 * daemon_config_load_text() takes them: the monitor's values, which every worker it starts keeps
 * over those of the files it starts from. 0 or -ENOMEM. */
int daemon_config_format_start_only(const DaemonConfig *c, char **ret);

/* Calls cb with the section and key ("Audit", "Directory") of each setting a reload does not apply
 * (read when tsmd starts) whose value differs between running and new, in the order of
 * --dump-config; with running NULL, of every one. Returns the number of calls, or the first
 * negative return of cb, which stops there. */
typedef int (*DaemonConfigSettingCallback)(const char *section, const char *key, void *userdata);
int daemon_config_foreach_start_only(const DaemonConfig *running, const DaemonConfig *new,
                                     DaemonConfigSettingCallback cb, void *userdata);

/* Parses "16M", "4096", "64K" into bytes (base 1024): -EINVAL if s is no size, -ERANGE if it is
 * one of more than 64 bits. */
int parse_size(const char *s, uint64_t *ret);
