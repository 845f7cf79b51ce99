/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The files the monitor loads and what it takes of them: tsmd.conf and the policy (the scope
 * gate follows it), the set that loaded last (kept for new workers and the fd store), reloads,
 * and the directories the worker is given. Runs in: monitor. */

#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "dir-lock.h"
#include "fdstore.h"
#include "last-good.h"
#include "log.h"
#include "monitor-internal.h"
#include "worker-spawn.h"

void loaded_files_done(LoadedFiles *f) {
        daemon_config_done(&f->config);
        policy_unref(f->policy);
        safe_close(f->fd);
        last_good_reads_done(&f->reads);
        *f = (LoadedFiles) { .fd = -EBADF };
}

/* ---- the monitor's scope gate ------------------------------------------------------------ */

/*
 * SECURITY: DESIGN.md has the monitor check that a request's scope is allowed. Who the client
 * is, the monitor only knows from the worker (the uid it names), so it cannot apply the policy
 * as the worker does; what it can apply without trusting the worker is the policy with the
 * identities left out: a scope may go to a device only if some rule lists the device, allows
 * its backend and grants the scope, by its own Scopes= or by [Defaults] Scopes= (policy.h). A
 * scope that backends keep off by default (debug-read, debug-write: the device's memory, and
 * the kernel's debug-write is what the monitor holds CAP_SYS_RAWIO for) is granted only by a
 * rule's own Scopes=: with no such rule (the shipped policy), a compromised worker reaches no
 * debug scope at all; with one, only the devices that rule opens. Nor does it reach a device no
 * rule lists, or a default scope the policy narrowed away. The monitor loads the files (it is
 * root) at start, for each new worker and at each RELOAD, and the worker serves the very bytes
 * it loaded; a policy that fails to load leaves the last one in force, and before any loaded
 * every scope is refused.
 *
 * CAP_SYS_RAWIO stays even when no rule grants debug-write: dropping it is for good, and a
 * reload that grants debug-write later would then fail in the kernel until tsmd restarts;
 * nor can capability.c's helpers drop one capability of the minimum.
 */
bool scope_granted(const char *pci_address, TsmBackendType backend, const char *scope, void *userdata) {
        Monitor *m = userdata;

        return policy_any_rule_grants_scope(m->policy, pci_address, backend, scope);
}

/* SECURITY: the same bound on attaching and binding: a device no rule lists (for its backend) is
 * never attached to a client's context or locked, nor connected to or disconnected from a TSM
 * (of that backend), whatever the worker says. What the kernel kept
 * bound through a restart is recorded all the same (dispatch_priv_attach_vdevice(),
 * monitor-dispatch-attach.c), so that it is unbound when its context ends. */
bool device_listed(const char *pci_address, TsmBackendType backend, void *userdata) {
        Monitor *m = userdata;

        return policy_any_rule_lists_device(m->policy, pci_address, backend);
}

/* SECURITY: the files the worker trusts, no more: a gate that read what the worker may write
 * would be no gate. Nor one read in the middle of an edit in place (file-settle.h): a reload,
 * SIGHUP or a worker's start may come during one, and half a rule may allow more. */
static PolicyFileTrust policy_trust(Monitor *m) {
        return (PolicyFileTrust) { .owner = 0, .worker_gid = m->worker_gid, .wait_settled = true };
}

static void policy_failed(Monitor *m, int error, const char *message) {
        log_warning_errno(error, "Failed to load the policy for the monitor's scope checks (%s), %s: %m",
                          strna(message),
                          m->policy ? "keeping the last one" : "refusing every scope, attach, bind and connect");
}

static void policy_set(Monitor *m, Policy *p, const char *path) {
        policy_unref(m->policy);
        m->policy = p;
        log_info("Scope checks follow the policy in '%s' (%zu rules).", strna(path), policy_n_rules(p));
}

/* Without a configuration file (no worker's files to keep): the policy for the gate only. */
static int policy_load_logged(Monitor *m, const DaemonConfig *config) {
        PolicyFileTrust trust = policy_trust(m);
        _cleanup_free_ char *error = NULL;
        Policy *p;
        int r;

        r = policy_load_full(config->policy_file, config->policy_dropin_dir, &trust, &p, &error);
        if (r < 0) {
                policy_failed(m, r, error);
                return r;
        }
        policy_set(m, p, config->policy_file);
        return 0;
}

/* Returns the audit directory's error: without it the worker cannot start. */
int worker_dirs_prepare(Monitor *m, const DaemonConfig *config) {
        const char *state = config->context_state_dir;
        int r;

        /* What the worker writes must be the worker's. */
        r = worker_dir_prepare(state, /* private_dir= */ true, m->worker_uid, m->worker_gid);
        if (r == -ENOTEMPTY)
                log_warning("Not giving the context state directory '%s' to the worker: it is not empty and not "
                            "the worker's (a shared directory?); the worker keeps no state then. Name a "
                            "directory of tsmd's own in ContextStateDirectory=.", state);
        else if (r < 0)
                log_warning_errno(r, "Cannot give the context state directory '%s' to the worker, it keeps no "
                                     "state then: %m", state);
        if (!config->audit_dir)
                return 0;
        r = worker_dir_prepare(config->audit_dir, /* private_dir= */ false, m->worker_uid, m->worker_gid);
        if (r == -ENOTEMPTY)
                return log_error_errno(r, "Refusing to give the audit directory '%s' to the worker: it is not empty "
                                          "and not the worker's (a shared directory, /var/log rather than "
                                          "/var/log/tsmd?). Name a directory of tsmd's own in [Audit] Directory=, "
                                          "or make this one the worker's.", config->audit_dir);
        if (r < 0)
                return log_error_errno(r, "Cannot give the audit directory '%s' to the worker: %m", config->audit_dir);
        return 0;
}

/* One context state directory per tsmd (dir-lock.h); it is read at start only. One that cannot be
 * opened as the worker (not its own: worker_dirs_prepare() warned) is one its worker cannot use
 * either. The audit directory's lock we hold for our life too, and each worker takes it through
 * our fd (WORKER_AUDIT_DIR_FD; a flock() is the open file's, not the process's): so a worker
 * killed and held in the kernel (on_kill_timeout()) does not keep the next from the audit log,
 * while another tsmd's workers stay out. Held by another tsmd's worker, ours would fail and be
 * restarted for ever, never ready. The last tsmd's worker, killed with it (PR_SET_PDEATHSIG)
 * when it crashed, may still be exiting, started right after (as systemd does not: it waits for
 * the unit's cgroup to empty): it has a second. */
int worker_dirs_lock(Monitor *m) {
        const char *state_path = m->config.context_state_dir;
        struct stat audit, state;
        int r;

        r = dir_lock_as(state_path, m->worker_uid, &m->state_dir_lock);
        if (r == -EBUSY)
                return log_error_errno(r, "Refusing to start: another tsmd uses the context state directory '%s' "
                                          "(our worker would remove its contexts' state). Give each tsmd a "
                                          "ContextStateDirectory= of its own.", state_path);
        if (r < 0)
                log_debug_errno(r, "Cannot lock the context state directory '%s': %m", state_path);

        if (!m->config.audit_dir)
                return 0;
        /* The same directory under two names (a link, a bind mount): our own lock, not another
         * tsmd's, would refuse it below. */
        if (stat(m->config.audit_dir, &audit) >= 0 && stat(state_path, &state) >= 0 && audit.st_dev == state.st_dev &&
            audit.st_ino == state.st_ino)
                return log_error_errno(-EINVAL, "Refusing to start: the audit directory '%s' is the context state "
                                                "directory '%s'. Give each its own ([Audit] Directory=, [Guest] "
                                                "ContextStateDirectory=).", m->config.audit_dir, state_path);
        for (unsigned i = 0; i < 100; i++) {
                r = dir_lock_as(m->config.audit_dir, m->worker_uid, &m->audit_dir_lock);
                if (r != -EBUSY)
                        break;
                if (i == 0)
                        log_info("The audit directory '%s' is locked: waiting up to a second for its holder "
                                 "(the worker of a tsmd that just ended?) to exit.", m->config.audit_dir);
                (void) usleep(10 * 1000);
        }
        if (r == -EBUSY)
                return log_error_errno(r, "Refusing to start: another tsmd writes its audit log in '%s'. Give "
                                          "each tsmd an [Audit] Directory= of its own.", m->config.audit_dir);
        if (r < 0)
                log_debug_errno(r, "Cannot lock the audit directory '%s': %m", m->config.audit_dir);
        return 0;
}

/* Reads and parses tsmd.conf and the policy it names, applying nothing. All or nothing: a
 * configuration that loads with a policy that does not (or the reverse) is no set at all. On
 * failure (logged), why in *ret_error (if non-NULL; NULL if out of memory) and whether it was
 * the policy in *ret_policy_failed (if non-NULL), as last_good_load() says them. */
static int load_files(Monitor *m, LoadedFiles *ret, char **ret_error, bool *ret_policy_failed) {
        PolicyFileTrust trust = policy_trust(m);
        _cleanup_free_ char *error = NULL;
        LoadedFiles f = { .fd = -EBADF };
        bool policy = false;
        int r;

        r = last_good_load(m->config_path, m->config_optional, &trust, &f.config, &f.policy, &f.fd, &f.reads,
                           &error, &policy);
        if (r < 0) {
                if (policy)
                        policy_failed(m, r, error);
                if (ret_error)
                        *ret_error = TAKE_PTR(error);
                if (ret_policy_failed)
                        *ret_policy_failed = policy;
                return r;
        }
        *ret = f;
        return 0;
}

/* The set in force into the service manager's fd store too, in place of the one before, so that
 * a start of tsmd with the files broken on disk serves it (files_at_start()), as a new worker
 * does. Two notifications (systemd removes by name, and every fd of the name): a death between
 * them leaves none, and that start fails as a first one does. */
static void last_good_keep(Monitor *m) {
        int r;

        if (!fdstore_available())
                return;
        r = fdstore_remove_name(FDSTORE_LAST_GOOD_NAME);
        if (r >= 0)
                r = fdstore_put_name(m->last_good, FDSTORE_LAST_GOOD_NAME);
        if (r < 0)
                log_warning_errno(r, "Failed to keep the configuration in force in the fd store, a restart of tsmd "
                                     "with the files broken on disk will not start: %m");
}

/* What the monitor takes of a set of files (taken), at a reload and whenever a worker starts
 * (which starts from what we load): the emulated devices it serves, the policy for its scope
 * gate, and the bytes of all the files for the next worker, so that what the monitor and a new
 * worker follow is always one set that loaded whole. The rest (the policy's decisions, limits,
 * audit) is the worker's. Not the set's keys read at start: the worker keeps ours (HELLO), and
 * its directories are those of our start, made ready again here (whatever the set says: a new
 * one we could not give it, without CAP_CHOWN since the start). keep: into the fd store too. */
static void apply_loaded(Monitor *m, LoadedFiles *f, bool keep) {
        int r;

        if (tsm_platform_is_emulated(m->platform)) {
                r = tsm_platform_set_emulated_devices(m->platform, f->config.platform.emulated_devices);
                if (r < 0)
                        log_error_errno(r, "Failed to apply the emulated device list: %m");
        }
        (void) worker_dirs_prepare(m, &m->config);
        policy_set(m, TAKE_PTR(f->policy), f->config.policy_file);
        safe_close(m->last_good);
        m->last_good = TAKE_FD(f->fd);
        monitor_dispatch_set_last_good(m->dispatch, m->last_good, false, NULL);
        if (keep)
                last_good_keep(m);
        /* Before a reload's REPLY: the worker has the list of the set it applies with it. The
         * load's reads count as the first check's: no file is read again for it. */
        disk_changes_loaded(m, m->last_good, &f->config, &f->reads);
        loaded_files_done(f);
}

/* On failure, why in *ret_error as load_files() says it (NULL without a configuration file:
 * there are no files to keep then). */
int apply_files(Monitor *m, char **ret_error) {
        LoadedFiles f;
        int r;

        if (!m->config_path)
                return policy_load_logged(m, &m->config);
        r = load_files(m, &f, ret_error, NULL);
        if (r < 0)
                return r;
        apply_loaded(m, &f, /* keep= */ true);
        return 0;
}

/* The files the first worker starts from: those on disk; if they do not load, the set in force
 * before a restart of tsmd (the fd store's, last_good_keep()), as a worker restarted with them
 * broken serves the last that loaded. With neither (a first start, or no service manager), tsmd
 * does not start: the service manager's start fails at once and the log names the file, where
 * workers that cannot load it would restart until the start times out. */
int files_at_start(Monitor *m) {
        _cleanup_close_ int stored = TAKE_FD(m->stored_last_good);
        _cleanup_free_ char *error = NULL, *names = NULL, *stored_error = NULL;
        PolicyFileTrust trust = policy_trust(m);
        LoadedFiles f = { .fd = -EBADF };
        int r, k;

        /* Without a configuration file, no files to keep: the policy for the gate, as ever. */
        if (!m->config_path) {
                (void) apply_files(m, NULL);
                return 0;
        }
        /* The policy's error is ours to log (last_good_load()): said once, below. */
        r = last_good_load(m->config_path, m->config_optional, &trust, &f.config, &f.policy, &f.fd, &f.reads,
                           &error, NULL);
        if (r >= 0) {
                apply_loaded(m, &f, /* keep= */ true);
                return 0;
        }
        if (!error)
                return log_oom();
        m->files_refused = r != -ENOMEM;
        if (stored < 0)
                return log_error_errno(r, "%s: the configuration or policy is broken, and no configuration that loaded "
                                          "before is kept: not starting. Fix it (tsmd --check-config checks it) and "
                                          "start tsmd again.", error);
        k = last_good_restore(stored, &f.config, &f.policy, &names, &stored_error);
        m->files_refused = m->files_refused && k != -ENOMEM;
        if (k < 0)
                return log_error_errno(k, "%s: the configuration or policy is broken, and the one kept from before the "
                                          "restart does not load either (%s%s%m): not starting. Fix it (tsmd "
                                          "--check-config checks it) and start tsmd again.",
                                       error, strempty(stored_error), stored_error ? ", " : "");
        m->files_refused = false;
        log_error("%s: the configuration or policy is broken, serving the configuration that last loaded, from "
                  "before the restart: %s. Fix it and reload.", error, strna(names));
        f.fd = TAKE_FD(stored);
        apply_loaded(m, &f, /* keep= */ false); /* it is the store's already */
        /* The first worker serves it, and says why (GetStatus: source last_good). */
        monitor_dispatch_set_last_good(m->dispatch, m->last_good, true, error);
        return 0;
}

/* RELOADING=1 and, after it, READY=1 again: only once a worker served. Before that, READY=1
 * would tell the service manager the start is done while nobody serves the sockets; after
 * STOPPING=1, that tsmd runs again. */
static void notify_reloading(Monitor *m, bool done) {
        if (m->ready_sent && !m->stopping)
                (void) sd_notify(false, done ? "READY=1" : "RELOADING=1");
}

/* The worker's RELOAD (tsm-priv.h): the worker applies the very bytes we loaded, and we apply
 * them once it has, so that a reload either leaves both on the new set or both on the one in
 * force. Nothing is applied here until the commit: a load the worker does not commit (it could
 * not take the bytes, or it died) changes nothing. A load we refuse goes back with our reason,
 * which the worker answers with: it may not be able to read the files, nor make our checks,
 * and they may have changed since. */
int on_worker_reload(void *userdata, bool commit, int *ret_fd, char **ret_reason, bool *ret_policy_failed) {
        Monitor *m = userdata;
        int r;

        /* Stopping: nothing is loaded or applied, and the worker answers that tsmd stops (its
         * own SIGTERM may be on its way still). */
        if (m->stopping)
                return -ESHUTDOWN;
        notify_reloading(m, false);
        if (commit) {
                /* The dispatch lets a commit through only after a load that succeeded. */
                r = m->reload_files.fd >= 0 ? 0 : -ESTALE;
                if (r >= 0)
                        apply_loaded(m, &m->reload_files, /* keep= */ true);
        } else {
                loaded_files_done(&m->reload_files);
                r = m->config_path ? load_files(m, &m->reload_files, ret_reason, ret_policy_failed) : -EOPNOTSUPP;
                if (r >= 0)
                        *ret_fd = m->reload_files.fd;
        }
        notify_reloading(m, true);
        return r;
}

/* A reload with no worker to take it: ours now, the next worker starts from what we load. */
void reload_alone(Monitor *m) {
        notify_reloading(m, false);
        loaded_files_done(&m->reload_files);
        (void) apply_files(m, NULL);
        notify_reloading(m, true);
}
