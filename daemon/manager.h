/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The worker's top-level object: event loop, Varlink server, configuration, the channel to
 * the monitor. Runs in: worker. */
#pragma once

#include <sys/queue.h>

#include <event2/event.h>

#include "audit-budget.h"
#include "audit-log.h"
#include "daemon-config.h"
#include "policy.h"
#include "priv-call.h"
#include "priv-slots.h"
#include "ratelimit.h"
#include "signal-source.h"
#include "tsm-platform.h"
#include "varlink-server.h"

typedef struct GuestClient GuestClient;
typedef struct GuestContext GuestContext;
typedef struct AdminFollower AdminFollower;
typedef struct AdminQuery AdminQuery;

/* Guest calls refused unrecorded: logged at most this often (guest-op.c). */
#define UNRECORDED_REFUSAL_LOG_BURST 50U
#define UNRECORDED_REFUSAL_LOG_INTERVAL_USEC (10 * 1000 * 1000ULL)

/* Where the configuration and policy in force came from (io.tsmd.Service.GetStatus). */
typedef struct ConfigState {
        /* The files on disk did not load at the last attempt (a reload, or the monitor's read
         * as it started this worker): an older set, the last that loaded whole, is in force. */
        bool stale;
        uint64_t loaded_usec;    /* CLOCK_REALTIME of the load of the set in force */
        char *policy_file;       /* the policy of the set in force */
        char *policy_dropin_dir;
        uint64_t failed_usec;    /* while stale: CLOCK_REALTIME of the last failed attempt */
        char *error;             /* while stale: why, "file:line: reason" (whole); NULL: unknown */
        /* The files of the set in force that differ on disk from what its load read, as the
         * monitor, which reads them, last said (FILES_CHANGED): n_changed_on_disk of them, the
         * first named in changed_on_disk (changed_on_disk_size bytes of NUL-terminated paths). */
        uint32_t n_changed_on_disk;
        char *changed_on_disk;
        size_t changed_on_disk_size;
} ConfigState;

/* A call of this worker's that failed, and the seq of its record. */
typedef struct LateOrigin {
        uint32_t cookie;
        uint64_t seq;
} LateOrigin;
#define MANAGER_LATE_ORIGINS 256U

typedef struct LateUnrecorded LateUnrecorded;
typedef struct LateCheck LateCheck;
typedef struct SignalledReload SignalledReload;

typedef struct Manager {
        struct event_base *base;
        VarlinkServer *server;
        DaemonConfig config;
        char *config_path; /* reloaded on SIGHUP; NULL: defaults only */
        bool config_optional; /* a missing config_path is the built-in defaults (no --config=) */
        uint64_t start_usec; /* CLOCK_MONOTONIC at the monitor's start (HELLO): tsmd's uptime */
        TsmPlatform *platform; /* a view: operations go to the monitor through channel */
        PrivChannel *channel;
        PrivHello hello;
        PrivSlotCounter slots; /* the client slots handed out */
        Policy *policy;  /* replaced whole on reload */
        ConfigState config_state;
        /* The settings read at start that the files in force give other values than those tsmd
         * started with, waiting for a restart of tsmd: "Audit.SyncMode", in --dump-config's order
         * (io.tsmd.Service.GetStatus, Reload's answer). */
        char **pending_restart;
        size_t n_pending_restart;
        AuditLog *audit;
        /* Refusals recorded one by one per uid, the rest summarized (audit-budget.h). */
        AuditBudget *refusal_budget;
        /* The kernel's late answers (guest-late.c), the same way, on a budget of their own. */
        AuditBudget *late_budget;
        /* The records of this worker's calls that failed, by the cookie they went to the monitor
         * with, so that a late answer names its call's record (guest-late.c): the latest only. */
        LateOrigin late_origins[MANAGER_LATE_ORIGINS];
        size_t next_late_origin;
        /* The last seq in the audit files when this worker opened them, before it wrote any: a
         * late answer an earlier worker was writing under a seq up to this is on the disk. */
        uint64_t audit_seq_at_open;
        /* Late answers whose records the log did not take yet, oldest first (guest-late.c). */
        LateUnrecorded *late_unrecorded;
        size_t n_late_unrecorded;
        /* Late answers a worker before said it wrote under a seq up to audit_seq_at_open, oldest
         * first, whose record at that seq is read back (guest-late.c): the oldest's, then the next. */
        LateCheck *late_checks;
        struct event *late_check_retry;

        /* One per connection: what that VMM owns (guest.c). */
        LIST_HEAD(, GuestClient) guest_clients;
        /* Contexts restored after a restart, until their owners reclaim them. */
        GuestContext **orphans;
        size_t n_orphans, allocated_orphans;
        struct event *orphan_timeout;
        /* Exiting to be restarted: keep stored contexts as they are (see fdstore.h). */
        bool preserve_contexts;

        struct event *sigterm, *sigint;
        SignalSource *sighup; /* a SIGHUP sent to the worker itself, with its sender */
        /* SIGHUPs the monitor passed on (SIGNAL_RELOAD), oldest first, each reloaded from the
         * loop by signal_reload_next: a reload calls the monitor, which is not done from inside
         * the channel's own read. */
        STAILQ_HEAD(, SignalledReload) signalled_reloads;
        struct event *signal_reload_next;
        struct event *heartbeat, *drain_timeout;
        bool draining;       /* SIGTERM: no new connections, finishing what is in flight */
        uint64_t stop_usec;  /* when it came (now_monotonic_usec()), 0 before */
        unsigned n_pending_requests;

        /* io.tsmd.Admin.QueryAudit calls whose query runs, until it ends or their connection
         * goes (admin.c). */
        LIST_HEAD(, AdminQuery) admin_queries;

        /* Administrators' records the log could not take at once (full, failed, reopening),
         * kept until it can (admin.c): at most ADMIN_KEPT_MAX. */
        unsigned n_admin_kept;

        /* io.tsmd.Admin.FollowAudit callers, until their connection goes (admin.c). */
        AdminFollower **followers;
        size_t n_followers, allocated_followers;

        /* io.tsmd.Service.GetStatus callers with "more", told about changes. */
        VarlinkCall **status_subscribers;
        size_t n_status_subscribers, allocated_status_subscribers;
        struct event *status_notify; /* see service_status_changed() */
        bool status_changed_for_all;   /* since the last notification: not for administrators only */

        /* Guest calls refused because the audit log cannot take their record are logged in
         * its place, but a client must not flood the journal with them (guest-op.c). */
        RateLimit unrecorded_refusal_log;
} Manager;

/* Takes over the channel to the monitor (read up to its HELLO and the sockets) and starts from
 * the configuration and policy it passes, or if none, from config_path (a missing file is the
 * built-in defaults if config_optional); config_path is reread on SIGHUP. audit_dir_fd
 * (borrowed; -EBADF: none): the audit directory as the monitor holds it locked for its workers
 * (AuditConfig.directory_fd). */
int manager_new(const char *config_path, bool config_optional, int channel, int audit_dir_fd, Manager **ret);
/* The end of a reload: error < 0 and message (NULL if none) if the files were refused and the
 * configuration in force was kept. */
typedef void (*ManagerReloadCallback)(Manager *m, int error, const char *message, void *userdata);

/* Reloads the configuration file and the policy as the monitor reads them (RELOAD, tsm-priv.h):
 * applies what can change at run time at once, in this worker and the monitor; if the monitor
 * refuses the files, keeps the old configuration in both and says why; reopens the audit log (see
 * audit_log_reopen_full()) without waiting for its disk. done (may be NULL) runs once all of that
 * finished: later, from the event loop; or at once when there is no configuration file, or when
 * tsmd stops (-ESHUTDOWN: nothing changed, the audit log was not reopened).
 * -ENOMEM (done never called), or 0. */
int manager_reload(Manager *m, ManagerReloadCallback done, void *userdata);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Serves the sockets the monitor passed, and takes in the contexts it kept. */
int manager_listen(Manager *m);
int manager_run(Manager *m);

/* Whose room in the audit log a caller's records take: the policy's clients and administrators
 * share MaxRecordsInFlight=, anyone else (id NULL: not identified) MaxRecordsInFlightUnnamed=. */
AuditPool manager_audit_pool(Manager *m, const PeerIdentity *id);
/* How long a call that acts waits for room in the audit log while a reload reopens it
 * (audit_log_reserve_to_act()): RequestTimeoutUSec=, as long as a request waits for its backend. */
uint64_t manager_audit_wait_usec(Manager *m);

/* Called when a guest request completes: a draining daemon exits after the last one. */
void manager_request_finished(Manager *m);
/* Tells the service manager what we are doing (STATUS=). */
void manager_update_status(Manager *m);

/* io.tsmd.Service (service-methods.c) */
int service_methods_register(Manager *m);
/* GetStatus subscribers are told of the change, within 100 ms: everyone, or administrators
 * only (a change of what only they are told: connections, contextsOwingSave). */
void service_status_changed(Manager *m);
void service_status_changed_for_admins(Manager *m);
void service_forget_connection(Manager *m, VarlinkConn *c);
