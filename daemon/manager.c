/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The worker's set-up, its sockets, signals and the main loop. Runs in: worker. */

#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "admin.h"
#include "config.h"
#include "context-store.h"
#include "daemon-config-trusted.h"
#include "event-util.h"
#include "guest.h"
#include "idle-flush.h"
#include "last-good.h"
#include "log.h"
#include "manager.h"
#include "refusals.h"
#include "varlink-service.h"

/* A graceful stop waits [Worker] DrainTimeoutSec= for guest requests in flight. At exit, the
 * monitor may stay silent this long between the answers to the last releases' unbinds; the
 * wait ends FINISH_SPARE_USEC before StopTimeoutSec= from the stop is up (the monitor kills us
 * then), whatever the answers, leaving that second for closing the audit log. */
#define FINISH_TIMEOUT_USEC (5ULL * 1000000ULL)
#define FINISH_SPARE_USEC (1ULL * 1000000ULL)
/* The worker says it is alive from its event loop three times per [Worker] WatchdogSec=: a
 * wedged loop goes quiet, and the monitor kills it after WatchdogSec= and starts another (the
 * service manager's watchdog is the monitor's own: it holds the VMs' contexts, and a worker it
 * replaces is no reason to stop). The beat is also the only periodic STATUS, so at least every
 * HEARTBEAT_MAX_USEC. */
#define HEARTBEATS_PER_WATCHDOG 3
#define HEARTBEAT_MAX_USEC (5ULL * 1000000ULL)

/* The audit log's state as STATUS says it (tsm-priv.h). */
static uint32_t status_audit(Manager *m) {
        AuditLogStatus s;

        if (!m->audit || audit_log_get_status(m->audit, &s) < 0)
                return TSM_PRIV_AUDIT_OK;
        switch (s.health.state) {
        case AUDIT_HEALTH_FULL:
                return TSM_PRIV_AUDIT_FULL;
        case AUDIT_HEALTH_FAILED:
                return TSM_PRIV_AUDIT_FAILED;
        default:
                return TSM_PRIV_AUDIT_OK;
        }
}

/* The monitor turns it into the service manager's STATUS= (and takes it as a sign of life:
 * see HEARTBEATS_PER_WATCHDOG). */
void manager_update_status(Manager *m) {
        /* The log's health may change while the worker starts, before its server is there. */
        if (!m->server)
                return;
        (void) priv_send_status(m->channel, varlink_server_get_n_connections(m->server),
                                m->n_pending_requests, m->draining, status_audit(m));
}

void manager_request_finished(Manager *m) {
        if (m->draining && m->n_pending_requests == 0) {
                log_info("All requests in flight finished, exiting.");
                (void) event_base_loopexit(m->base, NULL);
        }
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;

        log_warning("%u requests still in flight after %us, exiting anyway.", m->n_pending_requests,
                    m->config.worker_drain_timeout_sec);
        (void) event_base_loopexit(m->base, NULL);
}

static void on_exit_signal(evutil_socket_t sig, short what, void *userdata) {
        Manager *m = userdata;
        struct timeval tv = { .tv_sec = m->config.worker_drain_timeout_sec };

        if (m->draining)
                return;
        m->draining = true;
        m->stop_usec = now_monotonic_usec();
        /* With a service manager keeping the monitor's fds, exiting means being restarted or
         * stopped: either way the kernel objects are the fd store's to keep or drop. */
        m->preserve_contexts = m->hello.fdstore;
        log_info("Received %s, finishing %u requests in flight, then exiting.",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT", m->n_pending_requests);
        manager_update_status(m);

        /* No new clients; those connected get their answers (and audit records) first. */
        varlink_server_stop_listening(m->server);
        if (m->n_pending_requests == 0) {
                (void) event_base_loopexit(m->base, NULL);
                return;
        }
        (void) evtimer_add(m->drain_timeout, &tv);
}

static void on_heartbeat(evutil_socket_t fd, short what, void *userdata) {
        manager_update_status(userdata);
}

/* The monitor is gone (it exited, or it killed us and this is what is left): nothing
 * privileged can happen any more, so stop at once. */
static void on_late(const struct tsm_priv_late *late, void *userdata) {
        guest_audit_late(userdata, late);
}

static void on_monitor_gone(void *userdata) {
        Manager *m = userdata;

        m->preserve_contexts = true; /* the monitor decides what becomes of them */
        (void) event_base_loopexit(m->base, NULL);
}

/* What this process trusts in the files it reads: root's, never its own (its group's). Root
 * only: the monitor is root (tsmd starts no other way), and a file this process could write is
 * one a VMM that took it over could have written. */
#define WORKER_TRUST ((const PolicyFileTrust) { .owner = 0, .worker_gid = getegid() })

/* SECURITY: on a kernel without SO_PEERPIDFD a client's unit is read by pid, which a client that
 * exits before its accept may hand on (peer-identity.c): rules that trust Units= alone are named
 * at each load, the start's and each reload's. */
static void log_policy_loaded(const Policy *p) {
        log_info("Policy loaded: %zu client rules.", policy_n_rules(p));
        policy_warn_unit_only_rules(p);
}

/* Loads the policy named by the configuration; on failure *ret_message says why. */
static int load_policy(const DaemonConfig *c, Policy **ret, char **ret_message) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = policy_load_full(c->policy_file, c->policy_dropin_dir, &WORKER_TRUST, ret, &error);
        if (r < 0) {
                if (ret_message)
                        *ret_message = TAKE_PTR(error);
                return r;
        }
        log_policy_loaded(*ret);
        return 0;
}

/* The set in force loaded at loaded_usec, from the files config names: the disk's state from now. */
static void config_state_loaded(Manager *m, const DaemonConfig *config, uint64_t loaded_usec) {
        ConfigState *s = &m->config_state;
        char *file = config->policy_file ? strdup(config->policy_file) : NULL,
             *dir = config->policy_dropin_dir ? strdup(config->policy_dropin_dir) : NULL;

        if ((config->policy_file && !file) || (config->policy_dropin_dir && !dir))
                log_oom(); /* GetStatus then names no such path: nothing else depends on them */
        free(s->policy_file);
        s->policy_file = file;
        free(s->policy_dropin_dir);
        s->policy_dropin_dir = dir;
        s->loaded_usec = loaded_usec;
        s->stale = false;
        s->failed_usec = 0;
        s->error = mfree(s->error);
}

/* The files on disk did not load (message: why; NULL if unknown): what was in force stays. */
static void config_state_failed(Manager *m, const char *message) {
        ConfigState *s = &m->config_state;

        s->stale = true;
        s->failed_usec = now_realtime_usec();
        free(s->error);
        s->error = message ? strdup(message) : NULL;
}

static void config_state_done(ConfigState *s) {
        free(s->policy_file);
        free(s->policy_dropin_dir);
        free(s->error);
        free(s->changed_on_disk);
        *s = (ConfigState) {};
}

/* When the monitor loaded the set it passed: it wrote the memfd then, and sealed it. */
static uint64_t last_good_loaded_usec(int fd) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return now_realtime_usec();
        return (uint64_t) st.st_mtim.tv_sec * 1000000u + (uint64_t) st.st_mtim.tv_nsec / 1000u;
}

/* The monitor's word on the files in force that differ on disk (FILES_CHANGED; its log says
 * it): kept, for GetStatus, whose subscribers that administer are told (the paths are theirs
 * only). Runs as the message is read, maybe inside a call to the monitor (priv-call.h): it
 * keeps, nothing more. */
static void on_files_changed(uint32_t n_changed, const char *paths, size_t paths_size, void *userdata) {
        Manager *m = userdata;
        ConfigState *s = &m->config_state;
        char *copy = NULL;

        if (paths_size > 0) {
                copy = malloc(paths_size);
                if (copy)
                        memcpy(copy, paths, paths_size);
                else {
                        /* The count stays true; the paths that were are no longer the list. */
                        log_oom();
                        paths_size = 0;
                }
        }
        if (s->n_changed_on_disk == n_changed && s->changed_on_disk_size == paths_size &&
            (paths_size == 0 || memcmp(s->changed_on_disk, copy, paths_size) == 0)) {
                free(copy);
                return;
        }
        free(s->changed_on_disk);
        s->changed_on_disk = copy;
        s->changed_on_disk_size = paths_size;
        s->n_changed_on_disk = n_changed;
        service_status_changed_for_admins(m);
}

/* The monitor did not load the files on disk as it started us: GetStatus says why, in the
 * monitor's words (its log has them whole). The worker reads nothing itself: it may not be able
 * to read the files, nor make the monitor's checks, and they may have changed since. */
static void config_state_stale_at_start(Manager *m) {
        config_state_failed(m, m->hello.last_good_reason[0] ? m->hello.last_good_reason
                                                             : "the files on disk did not load as tsmd started this "
                                                               "worker (its log says why)");
}

/* Settings read at start that differ between two configurations: their names for GetStatus
 * ("Audit.SyncMode") and their list for the log ("[Audit] SyncMode=, ..."). */
typedef struct StartOnly {
        char **names;
        size_t n, allocated;
        char *text;
} StartOnly;

static void pending_restart_free(char **names, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

static void start_only_done(StartOnly *s) {
        pending_restart_free(s->names, s->n);
        free(s->text);
        *s = (StartOnly) {};
}

static int start_only_add(const char *section, const char *key, void *userdata) {
        StartOnly *s = userdata;
        char *name, *text;

        if (!GREEDY_REALLOC(s->names, s->allocated, s->n + 1) || asprintf(&name, "%s.%s", section, key) < 0)
                return -ENOMEM;
        s->names[s->n++] = name;
        if (asprintf(&text, "%s%s[%s] %s=", strempty(s->text), s->text ? ", " : "", section, key) < 0)
                return -ENOMEM;
        free(s->text);
        s->text = text;
        return 0;
}

/* The settings read at start that new gives other values than running has, which tsmd keeps until
 * it restarts: what GetStatus names as waiting for it from now on. Returns their list for the log
 * (NULL if none); out of memory, what was named stays. */
static char *pending_restart_update(Manager *m, const DaemonConfig *running, const DaemonConfig *new) {
        _cleanup_(start_only_done) StartOnly later = {};

        if (daemon_config_foreach_start_only(running, new, start_only_add, &later) < 0) {
                log_oom();
                return NULL;
        }
        pending_restart_free(m->pending_restart, m->n_pending_restart);
        m->pending_restart = TAKE_PTR(later.names);
        m->n_pending_restart = later.n;
        later.n = 0;
        return TAKE_PTR(later.text);
}

/* The settings read at start as tsmd started with them (HELLO), over those of the files: a reload
 * since then named them as not applied until tsmd restarts, and the directories are those the
 * monitor gave the worker and locked at its start, which it could not give another one now. */
static int keep_start_settings(Manager *m) {
        const char *message = NULL;
        DaemonConfig start;
        unsigned line = 0;
        int r;

        if (!m->hello.start_settings)
                return 0;
        /* Those the files give other values wait for a restart of tsmd, as the reload that loaded
         * them said: still, for this worker's GetStatus. */
        r = daemon_config_init(&start);
        if (r < 0)
                return log_oom();
        r = daemon_config_load_text(&start, m->hello.start_settings, &line, &message);
        if (r >= 0)
                free(pending_restart_update(m, &start, &m->config));
        daemon_config_done(&start);
        if (r >= 0)
                r = daemon_config_load_text(&m->config, m->hello.start_settings, &line, &message);
        if (r < 0)
                return log_error_errno(r, "The settings read at start that tsmd passed do not load (line %u: %s): %m",
                                       line, strna(message));
        m->hello.start_settings = mfree(m->hello.start_settings);
        return 0;
}

/* The files this worker starts from: those the monitor loaded (as root, with the same trust
 * checks) when it started us, so that we serve the policy its scope gate follows; or, if the
 * files on disk did not load then, the last that did (last-good.h), which beats serving nobody
 * until an administrator fixes them. Only with neither (no load succeeded yet, as at a first
 * start with broken files) from the disk, which then fails as the monitor's load did. Either
 * way with the settings read at start as tsmd started (keep_start_settings()). */
static int load_files(Manager *m, bool config_optional) {
        _cleanup_free_ char *error = NULL, *names = NULL;
        DaemonConfig config;
        int r;

        if (m->hello.last_good_fd < 0) {
                r = daemon_config_load_trusted_logged(&m->config, m->config_path, config_optional, &WORKER_TRUST);
                if (r < 0)
                        return r;
                r = load_policy(&m->config, &m->policy, &error);
                if (r < 0)
                        return log_error_errno(r, "%s", strna(error));
                config_state_loaded(m, &m->config, now_realtime_usec());
                return keep_start_settings(m);
        }

        r = last_good_restore(m->hello.last_good_fd, &config, &m->policy, &names, &error);
        if (r < 0)
                return log_error_errno(r, "Failed to load the configuration and policy the monitor passed%s%s: %m",
                                       error ? ": " : "", strempty(error));
        daemon_config_done(&m->config);
        m->config = config;
        config_state_loaded(m, &m->config, last_good_loaded_usec(m->hello.last_good_fd));
        m->hello.last_good_fd = safe_close(m->hello.last_good_fd);
        if (m->hello.last_good_stale) {
                config_state_stale_at_start(m);
                log_error("The configuration or policy files on disk do not load (tsmd said why above): serving "
                          "with the last configuration and policy that loaded, as tsmd read them when they did: %s. "
                          "Fix the files and reload.", strna(names));
        } else
                log_debug("Started from the files tsmd loaded: %s.", strna(names));
        log_policy_loaded(m->policy);
        return keep_start_settings(m);
}

AuditPool manager_audit_pool(Manager *m, const PeerIdentity *id) {
        if (id && (policy_is_client(m->policy, id) || policy_is_admin(m->policy, id)))
                return AUDIT_POOL_NAMED;
        return AUDIT_POOL_UNNAMED;
}

uint64_t manager_audit_wait_usec(Manager *m) {
        return m->config.platform.request_timeout_usec ?: TSM_REQUEST_TIMEOUT_USEC_DEFAULT;
}

static void on_audit_health(AuditLog *a, const AuditHealth *health, void *userdata) {
        service_status_changed(userdata);
        /* And systemctl status, where an administrator looks first. */
        manager_update_status(userdata);
}

/* Whether a uid gets a metrics key of its own (audit_counters_set_uid_filter()): one the policy
 * names, by uid (root, Users=) or, for Groups=, by a connection of it that the policy names
 * (its calls are counted while it is there, and keep the key it got). Anyone else, however
 * many uids they call from, counts under "other". */
static bool on_counter_uid(uid_t uid, void *userdata) {
        Manager *m = userdata;
        const GidSet *groups = policy_groups_of_interest(m->policy);

        if (policy_names_uid(m->policy, uid))
                return true;
        if (!groups || groups->n == 0)
                return false;
        for (GuestClient *c = guest_client_next(m, NULL); c; c = guest_client_next(m, c)) {
                const PeerIdentity *id = guest_client_get_identity(c);

                /* Not in a group the policy names (its groups are those of interest only), it
                 * is named by no Groups=: no need to ask the rules. */
                if (id->uid != uid || (id->n_groups == 0 && !gid_set_contains(groups, id->gid)))
                        continue;
                if (manager_audit_pool(m, id) == AUDIT_POOL_NAMED)
                        return true;
        }
        return false;
}

static int open_audit(Manager *m, int audit_dir_fd) {
        AuditLogStatus status;
        AuditConfig ac;
        int r;

        audit_config_init(&ac);
        ac.directory = m->config.audit_dir;
        ac.directory_fd = audit_dir_fd;
        ac.max_file_size = m->config.audit_max_file_size;
        ac.n_files = m->config.audit_files;
        ac.sync_mode = m->config.audit_sync_mode;
        ac.journal = m->config.audit_journal;
        ac.journal_max_queued = m->config.audit_journal_backlog;
        ac.max_in_flight = m->config.audit_max_in_flight;
        ac.max_in_flight_per_uid = m->config.audit_max_in_flight_per_uid;
        ac.max_in_flight_unnamed = m->config.audit_max_in_flight_unnamed;
        ac.refusal_share_percent = m->config.audit_refusal_share_percent;
        ac.max_queries = m->config.audit_max_queries;

        /* systemd's LogsDirectory= makes it; by hand, we do (its parent must exist). */
        if (m->config.audit_dir && mkdir(m->config.audit_dir, 0750) < 0 && errno != EEXIST)
                log_debug_errno(-errno, "Cannot create '%s': %m", m->config.audit_dir);

        r = audit_log_open(m->base, &ac, &m->audit);
        if (r < 0)
                return log_error_errno(r, "Cannot open the audit log in '%s', refusing to serve unaudited: %m",
                                       strna(m->config.audit_dir));
        /* GetStatus subscribers hear when the log fails, fills or takes records again. */
        audit_log_set_health_callback(m->audit, on_audit_health, m);
        audit_counters_set_uid_filter(audit_log_get_counters(m->audit), on_counter_uid, m);
        /* What the workers before wrote (guest-late.c), before this one writes anything. */
        if (audit_log_get_status(m->audit, &status) >= 0)
                m->audit_seq_at_open = status.last_committed_seq;
        r = audit_budget_new(m->audit, m->base, m->config.audit_refusals_per_uid,
                             (uint64_t) m->config.audit_refusal_interval_sec * 1000000u, /* refusals= */ true,
                             &m->refusal_budget);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the audit log's refusal budget: %m");
        r = audit_budget_new(m->audit, m->base, m->config.audit_refusals_per_uid,
                             (uint64_t) m->config.audit_refusal_interval_sec * 1000000u, /* refusals= */ false,
                             &m->late_budget);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the audit log's budget of late answers: %m");
        return 0;
}

/* SECURITY: the state files are named by reclaim ids, but those a tsmd before them left are
 * named by reclaim tokens until restored (context_store_adopt_legacy()), so their directory is
 * ours alone. The monitor makes it so when it gives it to us, but cannot change the mode of one
 * that is ours already (that takes CAP_FOWNER): as the owner, we can. One we cannot make private
 * keeps no state (context_store_save() refuses it): where the service manager keeps contexts
 * across restarts of tsmd, which would bring them back without their vDevices, nothing is
 * attached or bound then (guest.c, guest_persist_before_change()). */
static void prepare_state_dir(Manager *m) {
        const char *dir = guest_state_dir(m);
        const char *what = m->hello.fdstore ? "AttachDevice, Bind and Unbind are refused (StateNotSaved)" :
                                              "contexts survive restarts of the worker only";
        mode_t old;
        int r;

        r = context_store_prepare(dir, &old);
        if (r == -EPERM)
                log_error("The context state directory '%s' is not owned by uid %u, refusing to keep contexts "
                          "there: %s.", dir, (unsigned) geteuid(), what);
        else if (r < 0)
                log_error_errno(r, "Cannot make the context state directory '%s' mode 0700, refusing to keep "
                                   "contexts there: %s: %m", dir, what);
        else if (old != 0700)
                log_notice("The context state directory '%s' was mode %04o, made it 0700.", dir, (unsigned) old);
}

static void on_worker_end_recorded(AuditLog *a, uint64_t seq, int error, void *userdata) {
        if (error < 0)
                log_error_errno(error, "Audit record of the previous worker's end failed: %m");
}

/* A worker restarted under the VMs: the audit log says why the one before it ended, the
 * monitor's kill of a compromised one first of all. */
static void audit_previous_worker(Manager *m) {
        static const char *const results[_TSM_PRIV_WORKER_END_MAX] = {
                [TSM_PRIV_WORKER_EXITED] = "io.tsmd.WorkerExited",
                [TSM_PRIV_WORKER_CRASHED] = "io.tsmd.WorkerCrashed",
                [TSM_PRIV_WORKER_COMPROMISED] = "io.tsmd.WorkerCompromised",
                [TSM_PRIV_WORKER_UNRESPONSIVE] = "io.tsmd.WorkerUnresponsive",
        };
        AuditRecord rec = AUDIT_RECORD_INIT;
        int r;

        if (m->hello.previous_end == TSM_PRIV_WORKER_FIRST)
                return;
        rec.event = audit_event_to_string(AUDIT_EVENT_WORKER_RESTART);
        rec.result = results[m->hello.previous_end];
        /* Kept if the log cannot take it now (full, failed), written once it can: no worker after
         * this one knows of it. */
        r = audit_log_record_owed_kept(m->audit, &rec, on_worker_end_recorded, NULL, NULL, NULL);
        if (r < 0)
                on_worker_end_recorded(m->audit, 0, r, NULL);
}

/* Limits that refuse calls outright are a mistake an administrator should hear of at once,
 * not from a VMM whose every AttachDevice is refused. */
static void warn_unfit_limits(Manager *m) {
        const char *method = varlink_server_find_unfit_method(m->server, &m->config.limits);

        if (method)
                log_warning("[Varlink] MaxMessageSize=%zu or MaxFdsPerMessage=%u cannot carry every answer of %s, "
                            "which is refused (io.tsmd.ReplyMayNotFit), as are the calls whose answers may be longer.",
                            m->config.limits.max_message_size, m->config.limits.max_fds_per_message, method);
}

/* The configuration's check that the fd budget holds a connection's two messages' fds (a complete
 * one waiting its turn, the start of the next) sees only an explicit MaxFds=: 0 is a quarter of
 * RLIMIT_NOFILE, and more than half is never allowed. Where that leaves less, MaxFdsPerMessage=
 * is lowered to fit, as MaxContexts= is to the monitor's RLIMIT_NOFILE: a message with more fds
 * is refused by that limit, where it would have cost its connection for the budget's. */
static void fit_fds_per_message(VarlinkLimits *limits) {
        size_t budget = varlink_fd_budget(limits);

        if (budget >= 2 * (size_t) limits->max_fds_per_message)
                return;
        log_warning("The worker's fd budget of %zu (MaxFds=%u; 0: a quarter of RLIMIT_NOFILE, at most half of it) "
                    "is less than twice MaxFdsPerMessage=%u: taking at most %zu fds per message.",
                    budget, limits->max_fds, limits->max_fds_per_message, budget / 2);
        limits->max_fds_per_message = (unsigned) (budget / 2);
}

/* SECURITY: MaxUnnamedConnections= at MaxConnections= or above would let the callers the policy
 * does not name fill every slot again: lowered to leave one at least to those it names. */
/* 0, the default: a sixteenth of MaxConnections= (256 of 4096), one at least, so that a host that
 * lowers MaxConnections= keeps the named callers their fifteen sixteenths without a warning. */
static void fit_unnamed_connections(VarlinkLimits *limits) {
        if (limits->max_unnamed_connections == 0) {
                limits->max_unnamed_connections = MIN(MAX(limits->max_connections / 16, 1U), limits->max_connections - 1);
                return;
        }
        if (limits->max_unnamed_connections < limits->max_connections)
                return;
        log_warning("MaxUnnamedConnections=%u is not below MaxConnections=%u: taking %u.",
                    limits->max_unnamed_connections, limits->max_connections, limits->max_connections - 1);
        limits->max_unnamed_connections = limits->max_connections - 1;
}

/* The limits of the configuration as the server takes them, where they leave it no room. */
static void fit_limits(VarlinkLimits *limits) {
        fit_fds_per_message(limits);
        fit_unnamed_connections(limits);
}

/* Who sent the SIGHUP a reload is for, as the kernel said it to the process that got it. */
typedef struct ReloadSender {
        const char *signalled; /* "tsmd" (the monitor, which passed it on) or "tsmd-worker" */
        pid_t pid;             /* 0: none known */
        uid_t uid;             /* UID_INVALID: the kernel sent it */
        char *unit;            /* NULL: none known */
} ReloadSender;

/* A reload waiting for the audit log's reopen to finish. */
typedef struct Reload {
        Manager *manager;
        int error; /* the configuration's: 0, or why it was refused (message) */
        char *message;
        ManagerReloadCallback done;
        void *userdata;
        ReloadSender sender; /* a reload by SIGHUP's (done NULL) */
} Reload;

static void on_reload_recorded(AuditLog *a, uint64_t seq, int error, void *userdata) {
        if (error < 0)
                log_error_errno(error, "Audit record of a reload by signal failed: %m");
}

/* SECURITY: a reload changes who may use which device. One asked for by io.tsmd.Service.Reload
 * is that call's record, as its caller's; one by SIGHUP (sent to the monitor, which passes it on,
 * or to the worker) is on record as its sender's, as the kernel named it to the process that got
 * it (its pid a hint: tsm-priv.h, SIGNAL_RELOAD), into the reopened log. */
static void audit_signalled_reload(Manager *m, const ReloadSender *sender, int error, const char *message) {
        AuditRecord rec = AUDIT_RECORD_INIT;
        int r;

        rec.event = audit_event_to_string(AUDIT_EVENT_RELOAD);
        rec.uid = sender->uid;
        rec.pid = sender->pid;
        rec.unit = sender->unit;
        rec.signalled = sender->signalled;
        rec.result = error >= 0 ? "ok" : error == -ESHUTDOWN ? "io.tsmd.Service.Stopping" : "io.tsmd.Service.ReloadFailed";
        /* What `tsmctl status` says of it (file:line), cut to the record's bound. */
        if (error < 0 && error != -ESHUTDOWN)
                rec.reason = message;
        /* Made already: kept if the reopened log cannot take it (full, failed), written once it can. */
        r = audit_log_record_owed_kept(m->audit, &rec, on_reload_recorded, NULL, NULL, NULL);
        if (r < 0)
                on_reload_recorded(m->audit, 0, r, NULL);
}

static void on_audit_reopened(AuditLog *a, int error, void *userdata) {
        Reload *rl = userdata;

        if (error < 0)
                log_error_errno(error, "The audit log is still failing, guest requests stay refused: %m");
        else
                guest_late_retry(rl->manager);
        if (!rl->done)
                audit_signalled_reload(rl->manager, &rl->sender, rl->error, rl->message);
        if (rl->error >= 0)
                log_info("Configuration reloaded from %s.", rl->manager->config_path);
        if (rl->done)
                rl->done(rl->manager, rl->error, rl->message, rl->userdata);
        free(rl->message);
        free(rl->sender.unit);
        free(rl);
}

/* A reload that changed nothing, in the worker or the monitor (message: why; NULL if out of
 * memory): the set in force stays, and GetStatus says the files on disk do not load. */
static int reload_refused(Manager *m, int error, const char *kept, char *message, char **ret_message) {
        config_state_failed(m, message);
        service_status_changed(m);
        log_error_errno(error, "%s; keeping the %s in force.", message ?: "Failed to load the files", kept);
        if (ret_message)
                *ret_message = message;
        else
                free(message);
        return error;
}

/* The monitor did not load the files (reason: why, in its words, taken; NULL if it gave none):
 * that is the answer, its log has it whole. The worker reads nothing itself, as above. */
static int reload_refused_by_monitor(Manager *m, int error, char *reason, bool policy_failed, char **ret_message) {
        if (priv_channel_is_gone(m->channel)) {
                free(reason);
                return reload_refused(m, error, "configuration", strdup("tsmd is gone"), ret_message);
        }
        if (!reason && asprintf(&reason, "tsmd did not load %s and the policy it names (%s, its log says why)",
                                m->config_path, strerror(-error)) < 0)
                reason = NULL;
        return reload_refused(m, error, policy_failed ? "policy" : "configuration", reason, ret_message);
}

/* Takes and applies the files the monitor loaded (fd, last-good.h). */
static int reload_apply(Manager *m, int fd, char **ret_message) {
        _cleanup_free_ char *names = NULL, *error = NULL;
        char *message = NULL;
        DaemonConfig config;
        Policy *p = NULL, *old;
        int r;

        r = last_good_restore(fd, &config, &p, &names, &error);
        if (r < 0) {
                if (asprintf(&message, "Cannot take the files tsmd loaded%s%s: %s", error ? ": " : "",
                             strempty(error), strerror(-r)) < 0)
                        message = NULL;
                return reload_refused(m, r, "configuration", message, ret_message);
        }
        r = priv_call_reload_commit(m->channel);
        if (r < 0) {
                daemon_config_done(&config);
                policy_unref(p);
                if (r == -ESHUTDOWN)
                        return log_notice_errno(r, "Not reloading: tsmd is stopping.");
                if (asprintf(&message, "tsmd did not apply the files it loaded: %s", strerror(-r)) < 0)
                        message = NULL;
                return reload_refused(m, r, "configuration", message, ret_message);
        }
        log_debug("Reloaded the files as tsmd read them: %s.", strna(names));

        /* The policy is replaced whole or not at all, and the clients' groups are those it asks
         * about before anything asks it about a client. */
        old = m->policy;
        m->policy = p;
        log_policy_loaded(p);
        guest_policy_changed(m, old);
        policy_unref(old);
        admin_recheck_followers(m);
        config_state_loaded(m, &config, now_realtime_usec());
        service_status_changed(m);

        /* What changes at run time: the emulated device set, and the limits, for every connection
         * (varlink_server_set_limits() says from when). */
        if (tsm_platform_is_emulated(m->platform)) {
                r = tsm_platform_set_emulated_devices(m->platform, config.platform.emulated_devices);
                if (r < 0)
                        log_error_errno(r, "Failed to apply the emulated device list: %m");
        }
        fit_limits(&config.limits);
        (void) varlink_server_set_limits(m->server, &config.limits);
        m->config.limits = config.limits;
        m->config.max_contexts_per_client = config.max_contexts_per_client;
        m->config.max_contexts_per_uid = config.max_contexts_per_uid;
        m->config.max_vdevices_per_client = config.max_vdevices_per_client;
        m->config.max_request_size = config.max_request_size;
        m->config.max_response_size = config.max_response_size;
        m->config.require_vfio_fd = config.require_vfio_fd;
        m->config.audit_max_followers = config.audit_max_followers;
        m->config.audit_max_query_scan = config.audit_max_query_scan;
        m->config.audit_max_query_records = config.audit_max_query_records;
        warn_unfit_limits(m);

        /* The rest is read at start: say so rather than seem to have applied it (and GetStatus
         * and the Reload call's answer name them). */
        {
                _cleanup_free_ char *later = pending_restart_update(m, &m->config, &config);

                if (later)
                        log_notice("Not applied by this reload, taking effect when tsmd restarts: %s", later);
        }
        daemon_config_done(&config);
        return 0;
}

/* The reload's answer when tsmd stops, at once: nothing changed. */
static void reload_stopping(Manager *m, ManagerReloadCallback done, void *userdata, const ReloadSender *sender) {
        log_notice("Not reloading: tsmd is stopping.");
        if (done)
                done(m, -ESHUTDOWN, NULL, userdata);
        else
                audit_signalled_reload(m, sender, -ESHUTDOWN, NULL);
}

/* Asks the monitor for the files, and unless it stops, reopens the audit log for rl's end
 * (on_audit_reopened()). -ESHUTDOWN or -ENOMEM: neither happened, rl is the caller's still. */
static int reload_config(Reload *rl) {
        _cleanup_close_ int fd = -EBADF;
        Manager *m = rl->manager;
        bool policy_failed = false;
        char *reason = NULL;
        int r, k;

        /* SECURITY: the monitor (root) reads the files and hands over the very bytes it parsed,
         * sealed: this worker applies those, never a read of its own, so that it serves what the
         * monitor's scope gate and device list follow, and what the next worker starts from
         * (last-good.h). The monitor applies nothing until we took them, and nothing at all if
         * it refused them: either both change to the new set, or both keep the one in force. */
        r = priv_call_reload(m->channel, &fd, &reason, &policy_failed);
        if (r == -ESHUTDOWN) {
                /* The monitor stops (our SIGTERM is on its way): the files were not at fault,
                 * and the audit log stays as it is. */
                free(reason);
                return r;
        }

        /* An audit log that failed (EIO, a full disk) gets another chance, whatever the files
         * say: a reload is how an administrator repairs it. Its disk may be slow or stuck, so
         * the loop does not wait for it: the reload is over (its log line, the answer to a
         * Reload call, whose record goes to the reopened log) when the reopen is. Started
         * before the new configuration applies (the monitor's call above runs nothing of the
         * loop's), so that every request it lets through waits for it and lands in the
         * reopened log; the configuration applies at once, a policy taking a device away does
         * not wait for the disk. A load not committed (out of memory here) changes nothing. */
        k = audit_log_reopen_full(m->audit, on_audit_reopened, rl);
        if (k < 0) {
                free(reason);
                return log_oom();
        }
        if (r < 0)
                rl->error = reload_refused_by_monitor(m, r, reason, policy_failed, &rl->message);
        else
                rl->error = reload_apply(m, fd, &rl->message);
        return 0;
}

/* A reload by a call (done set), or by SIGHUP (done NULL, sender: who sent it; its unit is taken
 * whatever the return). */
static int reload_start(Manager *m, ManagerReloadCallback done, void *userdata, ReloadSender *sender) {
        _cleanup_free_ char *unit = sender ? TAKE_PTR(sender->unit) : NULL;
        ReloadSender s = sender ? *sender : (ReloadSender) { .uid = UID_INVALID };
        Reload *rl;
        int r;

        s.unit = unit;
        /* Stopping: nothing changes any more (nor is the audit log reopened), and the caller
         * hears why (io.tsmd.Service.Stopping). */
        if (m->draining) {
                reload_stopping(m, done, userdata, &s);
                return 0;
        }
        if (!m->config_path) {
                if (done)
                        done(m, 0, NULL, userdata);
                return 0;
        }

        rl = new0(Reload, 1);
        if (!rl)
                return log_oom();
        *rl = (Reload) { .manager = m, .done = done, .userdata = userdata, .sender = s };

        r = reload_config(rl);
        if (r < 0)
                free(rl);
        else
                unit = NULL; /* rl's, freed at its end */
        if (r == -ESHUTDOWN) {
                /* The monitor's STOPPING=1 came before our SIGTERM. */
                reload_stopping(m, done, userdata, &s);
                return 0;
        }
        return r;
}

int manager_reload(Manager *m, ManagerReloadCallback done, void *userdata) {
        return reload_start(m, done, userdata, NULL);
}

/* SIGHUP sent to the worker itself (kill -HUP of tsmd-worker's pid: root, or its own user), not
 * passed on by the monitor, which never signals it so: on record as its sender's all the same,
 * looked up here as the monitor does its own (peer_identity_from_signal()). */
static void on_reload_signal(int sig, const SignalSender *sender, void *userdata) {
        _cleanup_(peer_identity_done) PeerIdentity id = PEER_IDENTITY_NULL;
        ReloadSender s = { .signalled = "tsmd-worker", .pid = sender->pid, .uid = sender->uid };

        peer_identity_of_sighup_sender(sender->pid, sender->uid, ".", &id);
        s.unit = TAKE_PTR(id.unit);
        (void) reload_start(userdata, NULL, NULL, &s);
}

/* A SIGHUP the monitor passed on, waiting for the loop. */
struct SignalledReload {
        STAILQ_ENTRY(SignalledReload) entry;
        ReloadSender sender;
};

static void on_signal_reload_next(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;
        SignalledReload *sr = STAILQ_FIRST(&m->signalled_reloads);

        if (!sr)
                return;
        STAILQ_REMOVE_HEAD(&m->signalled_reloads, entry);
        if (!STAILQ_EMPTY(&m->signalled_reloads))
                event_active(m->signal_reload_next, EV_TIMEOUT, 0);
        (void) reload_start(m, NULL, NULL, &sr->sender); /* takes its unit */
        free(sr);
}

/* SIGHUP sent to the monitor, passed on (SIGNAL_RELOAD, checked by the channel): reloaded from
 * the loop, not from inside the channel's read that brought it. The monitor sends one per SIGHUP
 * it reads, and the kernel merges those sent together, so the queue stays short. */
static void on_signal_reload(const struct tsm_priv_signal_reload *msg, void *userdata) {
        Manager *m = userdata;
        SignalledReload *sr;

        sr = new0(SignalledReload, 1);
        if (!sr) {
                log_oom();
                log_error("A SIGHUP the monitor passed on (from pid %" PRIu32 ") is lost: out of memory. "
                          "Nothing was reloaded.", msg->pid);
                return;
        }
        sr->sender = (ReloadSender) { .signalled = "tsmd", .pid = (pid_t) msg->pid,
                                      .uid = msg->uid == TSM_PRIV_LATE_NONE ? UID_INVALID : (uid_t) msg->uid };
        if (msg->unit[0]) {
                sr->sender.unit = strdup(msg->unit);
                if (!sr->sender.unit)
                        log_oom(); /* recorded without it */
        }
        STAILQ_INSERT_TAIL(&m->signalled_reloads, sr, entry);
        event_active(m->signal_reload_next, EV_TIMEOUT, 0);
}

static void on_device_gone(TsmPlatform *p, const char *pci_address, void *userdata) {
        guest_device_gone(userdata, pci_address);
}

static void on_device_unbound(TsmPlatform *p, const char *pci_address, void *userdata) {
        guest_device_unbound(userdata, pci_address);
}

static int on_connect(VarlinkServer *s, VarlinkConn *c, void *userdata) {
        Manager *m = userdata;
        GuestClient *g;
        int r;

        r = guest_client_new(m, c, &g);
        if (r < 0)
                return r;
        varlink_conn_set_userdata(c, g);
        service_status_changed_for_admins(m);
        manager_update_status(m);
        return 0;
}

static void on_disconnect(VarlinkServer *s, VarlinkConn *c, void *userdata) {
        Manager *m = userdata;

        /* Recorded as the client's, while its identity is there. */
        admin_forget_queries(m, c);
        /* Everything the client created dies with its connection. */
        guest_client_free(varlink_conn_get_userdata(c));
        varlink_conn_set_userdata(c, NULL);
        admin_forget_followers(m, c);
        service_forget_connection(m, c);
        service_status_changed_for_admins(m);
        manager_update_status(m);
}

/* Whether an idle connection may be closed for a new one when MaxConnections= is reached: not
 * if that would end what the client made (its contexts die with its connection). */
static bool on_holds(VarlinkConn *c, void *userdata) {
        const GuestClient *g = varlink_conn_get_userdata(c);

        return !g || guest_client_holds_state(g);
}

/* Whether the policy in force names a guest socket connection's peer, as it names the callers
 * whose audit records take MaxRecordsInFlight= (manager_audit_pool()): a rule matches it, or
 * [Admin] does. Those it does not name share MaxUnnamedConnections=. */
static bool on_named(VarlinkConn *c, void *userdata) {
        const GuestClient *g = varlink_conn_get_userdata(c);

        return g && manager_audit_pool(userdata, guest_client_get_identity(g)) == AUDIT_POOL_NAMED;
}

/* Whether the peer of an admin socket's connection administers by the policy in force, as its
 * calls are judged (policy_is_admin()), from what the kernel recorded at its connect(): uid, gid
 * and, only when those do not settle it, the supplementary groups. An administrator finding the
 * admin socket full takes the place of someone who is not one. */
static bool on_administers(VarlinkServer *s, const struct ucred *peer, int fd, void *userdata) {
        Manager *m = userdata;
        _cleanup_(peer_identity_done) PeerIdentity id = { .uid = peer->uid, .gid = peer->gid, .pid = peer->pid };

        if (policy_is_admin(m->policy, &id))
                return true;
        if (peer_identity_reread_groups(&id, fd, policy_groups_of_interest(m->policy)) < 0)
                return false;
        return policy_is_admin(m->policy, &id);
}

int manager_new(const char *config_path, bool config_optional, int channel, int audit_dir_fd, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        const char *missing = NULL;
        int r;

        assert(config_path);

        m = new0(Manager, 1);
        if (!m)
                return -ENOMEM;
        m->hello.last_good_fd = -EBADF; /* before any return: manager_free() closes it */
        STAILQ_INIT(&m->signalled_reloads);
        r = daemon_config_init(&m->config);
        if (r < 0)
                return r;
        m->config_optional = config_optional;
        m->unrecorded_refusal_log = RATELIMIT(UNRECORDED_REFUSAL_LOG_INTERVAL_USEC, UNRECORDED_REFUSAL_LOG_BURST);
        if (config_path && !(m->config_path = strdup(config_path)))
                return -ENOMEM;

        m->base = event_base_new_prioritized();
        if (!m->base) {
                safe_close(channel);
                return -ENOMEM;
        }

        r = priv_channel_new(m->base, channel, on_monitor_gone, m, &m->channel);
        if (r < 0) {
                safe_close(channel);
                return r;
        }
        priv_channel_set_late_callback(m->channel, on_late, m);
        m->signal_reload_next = event_new(m->base, -1, 0, on_signal_reload_next, m);
        if (!m->signal_reload_next)
                return -ENOMEM;
        priv_channel_set_signal_reload_callback(m->channel, on_signal_reload, m);
        priv_channel_set_files_changed_callback(m->channel, on_files_changed, m);
        r = priv_channel_read_hello(m->channel, &m->hello);
        m->start_usec = m->hello.started_usec;
        if (r < 0)
                return log_error_errno(r, "No start sequence from the monitor: %m");
        r = load_files(m, config_optional);
        if (r < 0)
                return r;

        r = tsm_platform_new_view(m->base, &m->config.platform, m->hello.emulated, m->hello.uapi, &m->platform);
        if (r < 0)
                return r;

        r = open_audit(m, audit_dir_fd);
        if (r < 0)
                return r;
        audit_previous_worker(m);
        prepare_state_dir(m);
        tsm_platform_set_device_gone_callback(m->platform, on_device_gone, m);
        tsm_platform_set_device_unbound_callback(m->platform, on_device_unbound, m);

        r = varlink_server_new(m->base, &m->server);
        if (r < 0)
                return r;
        r = varlink_server_set_info(m->server, "tsmd", "tsmd", PACKAGE_VERSION, PACKAGE_URL);
        if (r < 0)
                return r;
        fit_limits(&m->config.limits);
        r = varlink_server_set_limits(m->server, &m->config.limits);
        if (r < 0)
                return r;
        varlink_server_set_userdata(m->server, m);
        varlink_server_set_connection_callbacks(m->server, on_connect, on_disconnect);
        varlink_server_set_holds_callback(m->server, on_holds);
        varlink_server_set_administers_callback(m->server, on_administers);
        varlink_server_set_named_callback(m->server, on_named);
        refusals_setup(m);

        r = service_methods_register(m);
        if (r < 0)
                return r;
        r = guest_methods_register(m);
        if (r < 0)
                return r;
        r = admin_methods_register(m);
        if (r < 0)
                return r;
        r = guest_setup(m);
        if (r < 0)
                return r;
        /* Every method the IDL declares must have a handler. */
        r = varlink_server_check_complete(m->server, &missing);
        if (r < 0)
                return log_error_errno(r, "No handler for %s.", missing);
        warn_unfit_limits(m);

        m->sigterm = evsignal_new(m->base, SIGTERM, on_exit_signal, m);
        m->sigint = evsignal_new(m->base, SIGINT, on_exit_signal, m);
        r = signal_source_new(m->base, SIGHUP, on_reload_signal, m, &m->sighup);
        if (r < 0)
                return log_error_errno(r, "Failed to read SIGHUP from a signalfd: %m");
        m->drain_timeout = evtimer_new(m->base, on_drain_timeout, m);
        if (!m->sigterm || !m->sigint || !m->drain_timeout || event_add(m->sigterm, NULL) < 0 ||
            event_add(m->sigint, NULL) < 0)
                return -ENOMEM;

        {
                struct timeval tv = timeval_from_usec(MIN(m->config.worker_watchdog_sec * 1000000ULL /
                                                              HEARTBEATS_PER_WATCHDOG,
                                                          HEARTBEAT_MAX_USEC));

                m->heartbeat = event_new(m->base, -1, EV_PERSIST, on_heartbeat, m);
                if (!m->heartbeat || event_add(m->heartbeat, &tv) < 0)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(m);
        return 0;
}

/* The end of the wait for the last unbinds: StopTimeoutSec= from the stop (from now, for an
 * exit no signal asked for), less the spare for the audit log's close (the configuration
 * leaves StopTimeoutSec= at least 3 s). */
static uint64_t finish_deadline(const Manager *m) {
        uint64_t stop = (uint64_t) m->config.worker_stop_timeout_sec * 1000000ULL;

        return (m->stop_usec > 0 ? m->stop_usec : now_monotonic_usec()) + stop - MIN(stop, FINISH_SPARE_USEC);
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        /* Before anything is freed: a reload's reopen of the log still pending ends now, and
         * the reload with it (its log line, the Reload call's answer and record, the records
         * held for it numbered), while the caller's connection, the server's interfaces and the
         * refusal budgets are there. Calls waiting for it to act are refused. */
        audit_log_stop(m->audit);
        if (m->audit)
                audit_log_set_health_callback(m->audit, NULL, NULL);

        for (size_t i = 0; i < m->n_status_subscribers; i++)
                varlink_call_unref(m->status_subscribers[i]);
        free(m->status_subscribers);
        m->n_status_subscribers = 0;
        if (m->status_notify)
                event_free(m->status_notify);

        /* Connections first: their owners unbind and close through the platform. */
        m->server = varlink_server_free(m->server);
        guest_orphans_free(m);
        if (m->orphan_timeout)
                event_free(m->orphan_timeout);
        /* The unbinds of those releases complete in the monitor; their records are written
         * when they do, and must be before the log closes. */
        if (m->channel)
                priv_channel_finish(m->channel, FINISH_TIMEOUT_USEC, finish_deadline(m));
        /* After every client: their last records (releases) must reach the disk. */
        admin_forget_followers(m, NULL);
        admin_forget_queries(m, NULL);
        /* Its summaries of what the clients had refused, then the log. */
        m->refusal_budget = audit_budget_free(m->refusal_budget);
        m->late_budget = audit_budget_free(m->late_budget);
        guest_late_free_unrecorded(m);
        m->audit = audit_log_free(m->audit);
        policy_unref(m->policy);
        tsm_platform_free(m->platform);
        priv_channel_free(m->channel);
        priv_hello_done(&m->hello);
        free(m->config_path);
        if (m->sigterm)
                event_free(m->sigterm);
        if (m->sigint)
                event_free(m->sigint);
        signal_source_free(m->sighup);
        if (m->signal_reload_next)
                event_free(m->signal_reload_next);
        for (SignalledReload *sr; (sr = STAILQ_FIRST(&m->signalled_reloads));) {
                STAILQ_REMOVE_HEAD(&m->signalled_reloads, entry);
                free(sr->sender.unit);
                free(sr);
        }
        if (m->heartbeat)
                event_free(m->heartbeat);
        if (m->drain_timeout)
                event_free(m->drain_timeout);
        if (m->base)
                event_base_free(m->base);
        daemon_config_done(&m->config);
        pending_restart_free(m->pending_restart, m->n_pending_restart);
        config_state_done(&m->config_state);
        return mfree(m);
}

/* A socket of kind TSM_PRIV_SOCKET_GUEST serves VMMs only (plus io.tsmd.Service); one of
 * kind TSM_PRIV_SOCKET_ALL serves everything, and its file mode decides who may connect. */
static int interfaces_for_kind(TsmPrivSocketKind kind, char ***ret) {
        char **l = NULL;

        if (kind == TSM_PRIV_SOCKET_GUEST) {
                l = new0(char *, 3);
                if (!l || !(l[0] = strdup("io.tsmd.Guest")) || !(l[1] = strdup("io.tsmd.Service"))) {
                        if (l) {
                                free(l[0]);
                                free(l);
                        }
                        return -ENOMEM;
                }
        }
        *ret = l;
        return 0;
}

int manager_listen(Manager *m) {
        PrivHello *h = &m->hello;
        int r;

        for (size_t i = 0; i < h->n_sockets; i++) {
                char **interfaces;

                /* SECURITY: what the monitor passed must be what it says it is. */
                r = sd_is_socket_unix(h->socket_fds[i], SOCK_STREAM, 1, NULL, 0);
                if (r <= 0)
                        return log_error_errno(r < 0 ? r : -EINVAL, "Monitor passed something other than a listening AF_UNIX stream socket.");
                r = interfaces_for_kind(h->socket_kinds[i], &interfaces);
                if (r < 0)
                        return log_oom();
                /* The socket serving everything is the administration's: it is served even
                 * when clients took every fd the worker may have. */
                r = varlink_server_listen_fd_full(m->server, h->socket_fds[i], interfaces,
                                                  h->socket_kinds[i] == TSM_PRIV_SOCKET_ALL ? VARLINK_LISTEN_ADMIN : 0);
                if (r < 0)
                        return log_error_errno(r, "Failed to serve a passed socket: %m");
                h->socket_fds[i] = -EBADF; /* the server has it */
        }

        for (size_t i = 0, v = 0; i < h->n_restored; v += h->restored[i++].n_vdevices)
                (void) guest_restore_context(m, &h->restored[i],
                                             h->restored[i].n_vdevices > 0 ? &h->restored_vdevices[v] : NULL);
        guest_restore_done(m);
        return 0;
}

int manager_run(Manager *m) {
        int r;

        /* Discovery ran in manager_new() and the sockets are adopted: now we serve. */
        r = priv_send_ready(m->channel);
        if (r < 0)
                return log_error_errno(r, "Cannot tell the monitor we are ready: %m");
        manager_update_status(m);

        if (event_base_dispatch(m->base) < 0)
                return log_error_errno(-EIO, "Event loop failed.");

        /* Freeing the signal events restores the default actions; a second SIGTERM during
         * the final clean-up must not kill us halfway. */
        (void) signal(SIGTERM, SIG_IGN);
        (void) signal(SIGINT, SIG_IGN);
        return 0;
}
