/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The monitor's process: sockets, the worker's life, signals, the service manager. Runs in: monitor. */

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "config.h"
#include "event-util.h"
#include "fd-closer.h"
#include "fdstore.h"
#include "idle-flush.h"
#include "log.h"
#include "monitor-internal.h"
#include "monitor-notify.h"
#include "monitor.h"
#include "peer-identity.h"
#include "tsm-platform.h"
#include "worker-spawn.h"

/* Restarting a worker that keeps dying: from 100 ms, doubling, up to 30 s; a worker that ran
 * for a minute starts the count afresh. */
#define BACKOFF_MIN_USEC (100 * 1000ULL)
#define BACKOFF_MAX_USEC (30 * 1000 * 1000ULL)
#define BACKOFF_RESET_USEC (60 * 1000 * 1000ULL)
/* The worker's limits are [Worker]'s, read at start (tsmd.conf(5)). It says it is alive three
 * times per WatchdogSec= (manager.c): three missed beats and it is wedged. It has StartTimeoutSec=
 * to say READY after it starts (it loads its files, opens the audit log and reclaims the contexts
 * first): one that does not is wedged too, and holds the sockets. A stopping one has
 * StopTimeoutSec= (its own drain, DrainTimeoutSec=, is shorter), and then KillTimeoutSec= to exit
 * once killed. */
#define SEC_TO_USEC(s) ((uint64_t) (s) * 1000 * 1000ULL)
/* Killed workers left to the kernel at once (each keeps its memory and fds until it goes): past
 * that, the next worker waits for the current one to exit, as all did before. */
#define LINGERING_MAX 8
/* STATUS= at most this often; a sooner one waits (notify_status()). */
#define STATUS_INTERVAL_USEC (1000 * 1000ULL)

/* STATUS=, dropped while the service manager's queue is full (monitor-notify.h): the next
 * replaces it. At most one per STATUS_INTERVAL_USEC: the worker reports at every connect and
 * disconnect, and a client connecting in a loop would have the service manager parse, store and
 * announce on D-Bus as many. One that comes sooner waits for its turn, replaced by any later
 * one, so the last state arrives (at a stop, before STOPPING=1). */
static void status_send_waiting(Monitor *m) {
        if (!m->status_waiting[0])
                return;
        m->status_sent_usec = now_monotonic_usec();
        (void) monitor_notify_droppable(m->status_waiting);
        m->status_waiting[0] = 0;
}

static void on_status_timer(evutil_socket_t fd, short what, void *userdata) {
        status_send_waiting(userdata);
}

_printf_(2, 3) static void notify_status(Monitor *m, const char *format, ...) {
        uint64_t now = now_monotonic_usec();
        struct timeval tv;
        va_list ap;

        strcpy(m->status_waiting, "STATUS=");
        va_start(ap, format);
        (void) vsnprintf(m->status_waiting + strlen("STATUS="), sizeof(m->status_waiting) - strlen("STATUS="),
                         format, ap);
        va_end(ap);
        if (m->status_sent_usec == 0 || now - m->status_sent_usec >= STATUS_INTERVAL_USEC) {
                status_send_waiting(m);
                return;
        }
        if (evtimer_pending(m->status_timer, NULL))
                return;
        tv = timeval_from_usec(m->status_sent_usec + STATUS_INTERVAL_USEC - now);
        if (evtimer_add(m->status_timer, &tv) < 0)
                status_send_waiting(m); /* better early than never */
}

/* ---- the worker's life ----------------------------------------------------------------- */

static void worker_kill(Monitor *m, int sig) {
        struct timeval tv = { .tv_sec = m->config.worker_kill_timeout_sec };

        if (m->worker_pid <= 0)
                return;
        (void) kill(m->worker_pid, sig);
        /* One that does not go in time is given up on (on_kill_timeout()); a stop has its own. */
        if (sig == SIGKILL && !m->stopping && m->kill_timer && !evtimer_pending(m->kill_timer, NULL))
                (void) evtimer_add(m->kill_timer, &tv);
}

static void channel_close(Monitor *m) {
        if (m->ev_channel) {
                event_free(m->ev_channel);
                m->ev_channel = NULL;
        }
        if (m->ev_channel_again) {
                event_free(m->ev_channel_again);
                m->ev_channel_again = NULL;
        }
        /* SECURITY: what the worker left queued on it goes with it, fds too: not on the loop. */
        m->channel = fd_closer_close_socket(m->channel);
}

static void on_channel(evutil_socket_t fd, short what, void *userdata) {
        Monitor *m = userdata;
        const char *reason = NULL;
        int r;

        r = monitor_dispatch_process(m->dispatch, &reason);
        if (r >= 0) {
                m->last_sign_of_life_usec = now_monotonic_usec();
                /* After the loop's next round, as a readable channel would be (the timers and
                 * other events come first), whether or not more is readable. */
                if (r > 0)
                        (void) evtimer_add(m->ev_channel_again, &(struct timeval) {});
                return;
        }
        /* SECURITY: a worker that broke a rule never gets another message through: killed,
         * not argued with. */
        if (reason) {
                log_error("Compromised worker (pid %d): %s: %s. Killing it.", (int) m->worker_pid,
                          monitor_dispatch_get_violation_type(m->dispatch), reason);
                m->worker_killed_for = TSM_PRIV_WORKER_COMPROMISED;
        } else if (r == -EPIPE)
                log_debug("Worker %d let go of its channel.", (int) m->worker_pid);
        else
                log_warning_errno(r, "Channel to the worker failed, killing it: %m");
        /* SECURITY: nor does one the monitor stops listening to go on serving the sockets, for
         * whatever reason: one that exits is past signals by then (its channel closes as it
         * ends, tsmd-worker.c), and only one stopping as asked is left to the stop timer. */
        if (r != -EPIPE || !m->stopping)
                worker_kill(m, SIGKILL);
        /* Either way the worker is done: what is left happens when it is reaped. */
        monitor_dispatch_stop(m->dispatch);
        channel_close(m);
}

/* Starts a worker from the files set for it (monitor_dispatch_set_last_good()). */
static int worker_start(Monitor *m) {
        _cleanup_close_ int ours = -EBADF, theirs = -EBADF;
        int pair[2], size = (int) TSM_PRIV_DATAGRAM_MAX * 4, r;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
                return log_error_errno(-errno, "Failed to make the worker's channel: %m");
        ours = pair[0];
        theirs = pair[1];
        /* Room for a few full guest requests either way. A worker that stops reading must not
         * stall the monitor: the dispatch gives every send a timeout, and on_worker_stalled()
         * kills the worker at the first that expires. */
        (void) setsockopt(ours, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
        (void) setsockopt(ours, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
        (void) setsockopt(theirs, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
        (void) setsockopt(theirs, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));

        r = worker_spawn(m->worker_binary, m->worker_argv, theirs, m->audit_dir_lock, m->worker_uid, m->worker_gid,
                         &m->worker_pid);
        if (r < 0)
                return log_error_errno(r, "Failed to start the worker '%s': %m", m->worker_path);
        theirs = safe_close(theirs);
        m->worker_start_usec = m->last_sign_of_life_usec = now_monotonic_usec();
        m->worker_draining_usec = 0;
        m->worker_ready = false;
        log_info("Started worker %s as pid %d (uid %u).", m->worker_path, (int) m->worker_pid,
                 (unsigned) m->worker_uid);

        m->channel = TAKE_FD(ours);
        r = monitor_dispatch_start(m->dispatch, m->channel, m->sockets, m->n_sockets);
        if (r < 0) {
                log_error_errno(r, "Failed to hand the worker its start: %m");
                monitor_dispatch_stop(m->dispatch);
                channel_close(m);
                worker_kill(m, SIGKILL);
                return 0; /* reaped and retried like any dead worker */
        }
        m->ev_channel = event_new(m->base, m->channel, EV_READ | EV_PERSIST, on_channel, m);
        m->ev_channel_again = evtimer_new(m->base, on_channel, m);
        if (!m->ev_channel || !m->ev_channel_again || event_add(m->ev_channel, NULL) < 0)
                return log_oom();
        return 0;
}

/* A worker after the first starts from the files as we load them now (LAST_GOOD): the emulated
 * devices we serve and the policy our gate follows are its own; the settings read at start are
 * those tsmd started with (HELLO), the directories we gave it and locked among them.
 * Broken files keep what is in force, and the worker gets the last that loaded, and why the
 * files on disk did not load, in our words. */
static int worker_restart(Monitor *m) {
        _cleanup_free_ char *error = NULL;
        int r;

        loaded_files_done(&m->reload_files); /* the last worker's, never committed */
        r = apply_files(m, &error);
        monitor_dispatch_set_last_good(m->dispatch, m->last_good, r < 0, error);
        if (r < 0 && m->last_good >= 0)
                log_error("The configuration or policy files on disk do not load (see above): the new worker starts "
                          "with the last configuration and policy that loaded.");
        return worker_start(m);
}

static void on_restart_timer(evutil_socket_t fd, short what, void *userdata) {
        Monitor *m = userdata;

        if (m->stopping)
                return;
        if (worker_restart(m) < 0) {
                /* Could not even fork: try again later rather than leave the VMs alone. */
                struct timeval tv = timeval_from_usec(BACKOFF_MAX_USEC);
                (void) evtimer_add(m->restart_timer, &tv);
        }
}

/* The current worker is gone (exited, or given up on): the next starts after the backoff. */
static void worker_gone(Monitor *m) {
        uint64_t ran = now_monotonic_usec() - m->worker_start_usec;
        struct timeval tv;

        (void) evtimer_del(m->kill_timer);
        m->worker_killed_for = TSM_PRIV_WORKER_FIRST;
        m->worker_pid = 0;
        m->worker_ready = false;
        monitor_dispatch_stop(m->dispatch);
        channel_close(m);

        if (m->stopping) {
                (void) event_base_loopexit(m->base, NULL);
                return;
        }

        /* The contexts stay (orphaned, with the monitor); the next worker offers them back. */
        if (ran >= BACKOFF_RESET_USEC || m->backoff_usec == 0)
                m->backoff_usec = BACKOFF_MIN_USEC;
        else
                m->backoff_usec = MIN(m->backoff_usec * 2, BACKOFF_MAX_USEC);
        log_info("Restarting the worker in %" PRIu64 " ms; %zu contexts are kept.", m->backoff_usec / 1000,
                 monitor_contexts_size(m->contexts));
        notify_status(m, "Worker restarting, %zu contexts kept.", monitor_contexts_size(m->contexts));
        tv = timeval_from_usec(m->backoff_usec);
        (void) evtimer_add(m->restart_timer, &tv);
}

static void worker_exited(Monitor *m, int status) {
        if (WIFEXITED(status))
                log_full(WEXITSTATUS(status) == 0 ? LOG_INFO : LOG_WARNING, "Worker %d exited with status %d.",
                         (int) m->worker_pid, WEXITSTATUS(status));
        else
                log_warning("Worker %d was killed by signal %s.", (int) m->worker_pid,
                            strna(sigabbrev_np(WTERMSIG(status))));
        /* The next worker records it: the audit log is the worker's. */
        if (m->worker_killed_for != TSM_PRIV_WORKER_FIRST)
                monitor_dispatch_set_previous_worker(m->dispatch, m->worker_killed_for, 0);
        else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) {
                /* Its seccomp filter killed it: it tried a call no code of the worker makes (to
                 * start a process, enter a namespace, reach another process or the kernel's
                 * rarer corners, or another architecture's: worker-sandbox.c). */
                log_error("Compromised worker %d tried a forbidden system call.", (int) m->worker_pid);
                monitor_dispatch_set_previous_worker(m->dispatch, TSM_PRIV_WORKER_COMPROMISED, 0);
        } else if (WIFEXITED(status))
                monitor_dispatch_set_previous_worker(m->dispatch, TSM_PRIV_WORKER_EXITED, (uint32_t) WEXITSTATUS(status));
        else
                monitor_dispatch_set_previous_worker(m->dispatch, TSM_PRIV_WORKER_CRASHED, (uint32_t) WTERMSIG(status));
        worker_gone(m);
}

/* A worker killed while we run on (not stopping) has not exited in KillTimeoutSec=. A
 * killed process ends once each of its threads leaves the kernel, and one waiting there
 * uninterruptibly (the close of a client's fd that its FUSE server does not answer, fd-closer.h)
 * keeps it until then: the next worker starts meanwhile, or nobody is served for as long as the
 * FUSE server likes. The old one runs no code of its own again (a fatal signal ends each thread
 * on its way out of the kernel) and, its channel closed, asks us nothing; what it holds the next
 * one needs is shared: the listening sockets, which it accepts on no more, and the audit
 * directory's lock, which each worker takes through the fd we hold it by (worker_dirs_lock()).
 * (A write of the audit log it was inside the kernel for at the kill ends at the page it was
 * copying, the kernel's buffered writes stopping at a fatal signal: only a disk stalled for
 * all of KillTimeoutSec= could have that page land after the next worker read the log.) It stays our
 * child, reaped when it goes (on_sigchld()). */
static void on_kill_timeout(evutil_socket_t fd, short what, void *userdata) {
        Monitor *m = userdata;

        if (m->worker_pid <= 0 || m->stopping)
                return;
        if (m->n_lingering >= LINGERING_MAX) {
                log_error("Worker %d has not exited %us after SIGKILL, nor have %zu workers before it: the next "
                          "starts once it exits.", (int) m->worker_pid, m->config.worker_kill_timeout_sec, m->n_lingering);
                return;
        }
        if (!GREEDY_REALLOC(m->lingering, m->allocated_lingering, m->n_lingering + 1)) {
                log_oom();
                return; /* it is reaped as the current worker, and the next starts then */
        }
        m->lingering[m->n_lingering++] = m->worker_pid;
        log_error("Worker %d has not exited %us after SIGKILL (a thread of it waits in the kernel, such as on a close "
                  "a FUSE server does not answer): starting the next one; it is reaped when the kernel lets it go.",
                  (int) m->worker_pid, m->config.worker_kill_timeout_sec);
        monitor_dispatch_set_previous_worker(m->dispatch,
                                             m->worker_killed_for != TSM_PRIV_WORKER_FIRST ? m->worker_killed_for
                                                                                            : TSM_PRIV_WORKER_CRASHED,
                                             m->worker_killed_for != TSM_PRIV_WORKER_FIRST ? 0 : SIGKILL);
        worker_gone(m);
}

/* A worker given up on (on_kill_timeout()) exited: reaped, and nothing else. */
static void lingering_reaped(Monitor *m, pid_t pid) {
        for (size_t i = 0; i < m->n_lingering; i++)
                if (m->lingering[i] == pid) {
                        m->lingering[i] = m->lingering[--m->n_lingering];
                        log_info("Worker %d, killed and given up on before, has exited: reaped.", (int) pid);
                        return;
                }
}

/* SECURITY: a pid is not reused while its process is our child and not reaped: the current
 * worker's and those given up on differ for as long as we hold them, and waitpid() names which
 * one went. The exit of one given up on neither ends the current worker nor starts another. */
static void on_sigchld(evutil_socket_t sig, short what, void *userdata) {
        Monitor *m = userdata;
        int status;
        pid_t pid;

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
                if (pid == m->worker_pid)
                        worker_exited(m, status);
                else
                        lingering_reaped(m, pid);
}

/* ---- the worker's requests of the monitor itself ---------------------------------------- */

/* Gives up on a worker still starting past StartTimeoutSec=: wedged, it holds the sockets.
 * ready_late: its READY is what the monitor reads now. Returns whether it did. */
static bool worker_start_overdue(Monitor *m, uint64_t now, bool ready_late) {
        if (m->worker_ready || now - m->worker_start_usec <= SEC_TO_USEC(m->config.worker_start_timeout_sec))
                return false;
        log_error("Worker %d did not get ready in %u s%s, killing it.", (int) m->worker_pid,
                  m->config.worker_start_timeout_sec, ready_late ? " (its READY came after that)" : "");
        m->worker_killed_for = TSM_PRIV_WORKER_UNRESPONSIVE;
        worker_kill(m, SIGKILL);
        return true;
}

static void on_worker_ready(void *userdata) {
        Monitor *m = userdata;

        /* A worker given up on (killed, not reaped yet) serves nobody, whatever it queued before
         * its end: its READY, taken before the reap, is not one. */
        if (m->worker_killed_for != TSM_PRIV_WORKER_FIRST) {
                log_debug("Ignoring the READY of worker %d, which is being killed.", (int) m->worker_pid);
                return;
        }
        /* Nor is one read past the time for it (from its start, as on_tick() counts): after a
         * wait (the monitor stopped, starved of CPU) libevent runs what woke it before the
         * timers due then, so on_tick() may not have given up on the worker yet. */
        if (!m->stopping && worker_start_overdue(m, now_monotonic_usec(), true))
                return;
        m->worker_ready = true;
        /* Nor may anything say READY=1 after STOPPING=1: the service manager would take tsmd for
         * running again. */
        if (m->stopping)
                return;
        disk_changes_worker_ready(m);
        if (m->reload_pending) {
                /* It takes SIGNAL_RELOAD from READY on (before, it reads its start only). */
                m->reload_pending = false;
                (void) monitor_dispatch_signal_reload(m->dispatch, m->reload_sender_pid, m->reload_sender_uid,
                                                      m->reload_sender_unit);
                m->reload_sender_unit = mfree(m->reload_sender_unit);
        }
        if (m->ready_sent) {
                log_info("Worker %d serving again.", (int) m->worker_pid);
                return;
        }
        m->ready_sent = true;
        (void) sd_notify(false, "READY=1");
        log_info("tsmd %s running.", PACKAGE_VERSION);
}

static void on_worker_status(const struct tsm_priv_status *s, void *userdata) {
        static const char *const audit[_TSM_PRIV_AUDIT_MAX] = {
                [TSM_PRIV_AUDIT_OK] = "",
                [TSM_PRIV_AUDIT_FULL] = "Audit log full, refusing what it cannot record; ",
                [TSM_PRIV_AUDIT_FAILED] = "Audit log failed, refusing what it cannot record; ",
        };
        Monitor *m = userdata;

        /* A worker stopping by itself (SIGTERMed alone) beats no more once its loop ends: from
         * here it has StopTimeoutSec= to exit, not WatchdogSec= of silence (on_tick()). */
        if (s->draining && m->worker_draining_usec == 0)
                m->worker_draining_usec = now_monotonic_usec();
        /* The dispatch checked s->audit. */
        notify_status(m, "%s%s%u clients, %u requests in flight, %zu contexts, platform %s.",
                      s->draining ? "Stopping: " : "", audit[s->audit], s->n_clients, s->n_pending,
                      monitor_contexts_size(m->contexts), tsm_platform_is_emulated(m->platform) ? "emulated" : "kernel");
}

/* A reply the worker did not take in time (or could not be sent at all): it is wedged, or
 * compromised and trying to stall the monitor. Either way it is replaced, as a silent one is. */
static void on_worker_stalled(int error, void *userdata) {
        Monitor *m = userdata;

        if (m->worker_pid <= 0)
                return;
        log_error_errno(error, "Worker %d does not take its replies (%m), killing it.", (int) m->worker_pid);
        m->worker_ready = false;
        m->worker_killed_for = TSM_PRIV_WORKER_UNRESPONSIVE;
        worker_kill(m, SIGKILL);
}

/* ---- signals and the watchdog ---------------------------------------------------------- */

static void on_stop_timeout(evutil_socket_t fd, short what, void *userdata) {
        Monitor *m = userdata;
        struct timeval tv = { .tv_sec = m->config.worker_kill_timeout_sec };

        if (!m->stop_killed) {
                log_warning("Worker %d did not stop in %us, killing it.", (int) m->worker_pid,
                            m->config.worker_stop_timeout_sec);
                worker_kill(m, SIGKILL);
                m->stop_killed = true;
                (void) evtimer_add(m->stop_timer, &tv);
                return;
        }
        /* A killed process ends once each of its threads leaves the kernel: one waiting there
         * uninterruptibly (the close of a client's fd that its FUSE server does not answer,
         * fd-closer.h) keeps it until then, whatever signal comes. We do not wait with it: our
         * stop stays bounded, and the worker goes when the kernel lets it. */
        log_error("Worker %d has not exited %us after SIGKILL (a thread of it waits in the kernel, such as on a close "
                  "a FUSE server does not answer): exiting without it.",
                  (int) m->worker_pid, m->config.worker_kill_timeout_sec);
        (void) event_base_loopexit(m->base, NULL);
}

static void on_exit_signal(evutil_socket_t sig, short what, void *userdata) {
        Monitor *m = userdata;
        struct timeval tv = { .tv_sec = m->config.worker_stop_timeout_sec };

        if (m->stopping)
                return;
        m->stopping = true;
        log_info("Received %s, stopping the worker.", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        status_send_waiting(m);
        (void) sd_notify(false, "STOPPING=1");
        if (m->worker_pid <= 0) {
                (void) event_base_loopexit(m->base, NULL);
                return;
        }
        /* It finishes what is in flight (and records it) first. */
        worker_kill(m, SIGTERM);
        (void) evtimer_add(m->stop_timer, &tv);
}

static void on_sighup(int sig, const SignalSender *sender, void *userdata) {
        _cleanup_(peer_identity_done) PeerIdentity id = PEER_IDENTITY_NULL;
        Monitor *m = userdata;
        int r;

        /* Who asked, for the worker's audit record and our log: the kernel's word for pid and
         * uid; the unit only as sure as a pidfd makes it, and none for a sender already gone. */
        peer_identity_of_sighup_sender(sender->pid, sender->uid,
                                       m->stopping ? " while stopping, not reloading." : ".", &id);
        if (m->stopping)
                return;
        /* The worker reloads, and asks us for our part (RELOAD): one path for both. A worker
         * still starting reads its start sequence only: it gets SIGNAL_RELOAD at READY, naming
         * the last sender. It starts from the files as we load them when we start it, but our
         * part comes with its reload, so a request survives a worker that dies before READY. */
        if (m->worker_pid > 0 && m->worker_ready) {
                r = monitor_dispatch_signal_reload(m->dispatch, sender->pid, sender->uid, id.unit);
                if (r >= 0)
                        return;
                /* A channel stalled or gone: the worker goes, and the next one is told at its READY,
                 * not never. */
                log_warning_errno(r, "Cannot pass SIGHUP on to worker %d now, the next one reloads: %m",
                                  (int) m->worker_pid);
        }
        if (m->worker_pid > 0) {
                m->reload_pending = true;
                m->reload_sender_pid = sender->pid;
                m->reload_sender_uid = sender->uid;
                free(m->reload_sender_unit);
                m->reload_sender_unit = TAKE_PTR(id.unit);
        } else {
                /* Our part now; the next worker reads the files when it starts. No worker,
                 * no audit log: our log above names the sender. */
                m->reload_pending = false;
                m->reload_sender_unit = mfree(m->reload_sender_unit);
                reload_alone(m);
        }
}

/* Once a second (more often under a shorter watchdog): the monitor's own watchdog ping (it
 * holds the VMs' contexts, so it is what must stay up), and a check that a serving worker still
 * speaks, and that a starting one got to READY in time (counted from its start: messages
 * before READY do not extend it). */
static void on_tick(evutil_socket_t fd, short what, void *userdata) {
        Monitor *m = userdata;
        uint64_t now = now_monotonic_usec();

        (void) monitor_notify_droppable("WATCHDOG=1");
        if (m->worker_pid <= 0 || m->stopping || m->worker_killed_for != TSM_PRIV_WORKER_FIRST) /* being killed */
                return;
        if (worker_start_overdue(m, now, false))
                return;
        if (m->worker_draining_usec > 0) {
                if (now - m->worker_draining_usec <= SEC_TO_USEC(m->config.worker_stop_timeout_sec))
                        return;
                log_error("Worker %d did not exit in %u s after it began to stop, killing it.", (int) m->worker_pid,
                          m->config.worker_stop_timeout_sec);
                m->worker_ready = false;
                m->worker_killed_for = TSM_PRIV_WORKER_UNRESPONSIVE;
                worker_kill(m, SIGKILL);
                return;
        }
        if (!m->worker_ready || now - m->last_sign_of_life_usec <= SEC_TO_USEC(m->config.worker_watchdog_sec))
                return;
        log_error("Worker %d has not spoken for %u s, killing it.", (int) m->worker_pid,
                  m->config.worker_watchdog_sec);
        m->worker_ready = false;
        m->worker_killed_for = TSM_PRIV_WORKER_UNRESPONSIVE;
        worker_kill(m, SIGKILL);
}

/* ---- set-up ---------------------------------------------------------------------------- */

/* SECURITY: the contexts the monitor may hold: MaxContexts=, and never so many that the fds
 * they take leave it unable to start a worker (MONITOR_FDS_RESERVED). */
static size_t contexts_max(const DaemonConfig *config) {
        struct rlimit rl;
        size_t max;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
                log_warning_errno(-errno, "Failed to read RLIMIT_NOFILE, assuming the kernel's default of 1024: %m");
                rl.rlim_cur = 1024;
        }
        max = monitor_contexts_max_for_nofile(rl.rlim_cur, config->max_contexts);
        if (max < config->max_contexts)
                log_warning("RLIMIT_NOFILE of %llu leaves room for %zu contexts beside the %u fds the monitor "
                            "keeps for itself, fewer than MaxContexts=%u: holding at most %zu.",
                            (unsigned long long) rl.rlim_cur, max, MONITOR_FDS_RESERVED, config->max_contexts, max);
        return max;
}

int monitor_new(const MonitorOptions *o, DaemonConfig *config, Monitor **ret) {
        _cleanup_(monitor_freep) Monitor *m = NULL;
        static const MonitorDispatchCallbacks callbacks = {
                .ready = on_worker_ready,
                .status = on_worker_status,
                .reload = on_worker_reload,
                .stalled = on_worker_stalled,
                .scope_granted = scope_granted,
                .device_listed = device_listed,
        };
        struct timeval tick = { .tv_sec = 1 };
        size_t n_argv = 1;
        char log_level[32];
        uint64_t watchdog_usec;
        sigset_t handled;
        int r;

        m = new0(Monitor, 1);
        if (!m)
                return -ENOMEM;
        m->channel = m->worker_binary = m->last_good = m->stored_last_good = m->reload_files.fd = -EBADF;
        m->state_dir_lock = m->audit_dir_lock = m->disk_inotify = -EBADF;
        m->config = *config;
        *config = (DaemonConfig) {};
        m->config_optional = o->config_optional;
        if ((o->config_path && !(m->config_path = strdup(o->config_path))) ||
            (o->socket_path && !(m->socket_path = strdup(o->socket_path))) ||
            (o->guest_socket_path && !(m->guest_socket_path = strdup(o->guest_socket_path))) ||
            !(m->worker_path = strdup(o->worker_path)))
                return -ENOMEM;

        r = worker_binary_open(m->worker_path, &m->worker_binary);
        if (r < 0)
                return log_error_errno(r, "Cannot run '%s' as the worker (it must be a regular file owned by "
                                          "root, writable by root only, executable by others): %m",
                                       m->worker_path);
        r = worker_user_lookup(o->worker_user, &m->worker_uid, &m->worker_gid);
        if (r == -ESRCH)
                return log_error_errno(r, "There is no user '%s' for the worker; create it with "
                                          "systemd-sysusers (tsmd's sysusers.d file, tsmd.conf).", o->worker_user);
        if (r < 0)
                return log_error_errno(r, "Cannot use '%s' as the worker's user: %m", o->worker_user);

        r = worker_dirs_prepare(m, &m->config);
        if (r < 0)
                return r;
        r = worker_dirs_lock(m);
        if (r < 0)
                return r;
        r = daemon_config_format_start_only(&m->config, &m->start_settings);
        if (r < 0)
                return r;

        snprintf(log_level, sizeof(log_level), "--log-level=%s", strna(log_level_to_string(o->log_level)));
        m->worker_argv[0] = m->worker_path;
        m->worker_argv[n_argv] = strdup(log_level);
        if (!m->worker_argv[n_argv++])
                return -ENOMEM;
        /* Only a file the admin named: the worker then requires it as we did. Without
         * --config= it reads the same default file, where a missing one means the defaults. */
        if (m->config_path && !m->config_optional) {
                if (asprintf(&m->worker_argv[n_argv], "--config=%s", m->config_path) < 0) {
                        m->worker_argv[n_argv] = NULL;
                        return -ENOMEM;
                }
                n_argv++;
        }
        /* The audit directory's lock, which each worker takes through our fd (worker-spawn.h). */
        if (m->audit_dir_lock >= 0) {
                m->worker_argv[n_argv] = strdup("--audit-directory-fd=" STRINGIFY(WORKER_AUDIT_DIR_FD));
                if (!m->worker_argv[n_argv++])
                        return -ENOMEM;
        }

        m->base = event_base_new_prioritized();
        if (!m->base)
                return -ENOMEM;
        r = tsm_platform_new(m->base, &m->config.platform, &m->platform);
        if (r < 0)
                return r;
        r = monitor_contexts_new(&m->contexts);
        if (r < 0)
                return r;
        monitor_contexts_set_max(m->contexts, contexts_max(&m->config));
        r = monitor_dispatch_new(m->base, m->platform, m->contexts, &callbacks, m, &m->dispatch);
        if (r < 0)
                return r;
        r = monitor_dispatch_set_start_settings(m->dispatch, m->start_settings);
        if (r < 0)
                return log_error_errno(r, "The settings read at start are too long to pass to the worker.");

        m->sigterm = evsignal_new(m->base, SIGTERM, on_exit_signal, m);
        m->sigint = evsignal_new(m->base, SIGINT, on_exit_signal, m);
        r = signal_source_new(m->base, SIGHUP, on_sighup, m, &m->sighup);
        if (r < 0)
                return log_error_errno(r, "Failed to read SIGHUP from a signalfd: %m");
        m->sigchld = evsignal_new(m->base, SIGCHLD, on_sigchld, m);
        m->restart_timer = evtimer_new(m->base, on_restart_timer, m);
        m->stop_timer = evtimer_new(m->base, on_stop_timeout, m);
        m->kill_timer = evtimer_new(m->base, on_kill_timeout, m);
        m->tick = event_new(m->base, -1, EV_PERSIST, on_tick, m);
        m->status_timer = evtimer_new(m->base, on_status_timer, m);
        /* A service manager's watchdog shorter than two ticks is pinged at half its interval,
         * as sd_watchdog_enabled(3) advises: a ping a second would miss it. */
        if (sd_watchdog_enabled(false, &watchdog_usec) > 0 && watchdog_usec / 2 < 1000000)
                tick = timeval_from_usec(MAX(watchdog_usec / 2, 1000ULL));
        if (!m->sigterm || !m->sigint || !m->sighup || !m->sigchld || !m->restart_timer || !m->stop_timer ||
            !m->kill_timer || !m->tick || !m->status_timer || event_add(m->sigterm, NULL) < 0 ||
            event_add(m->sigint, NULL) < 0 || event_add(m->sigchld, NULL) < 0 ||
            event_add(m->tick, &tick) < 0)
                return -ENOMEM;
        /* A mask inherited from whoever started tsmd (a shell, a test, a wrapper that blocks
         * them) would keep the signals it handles from ever arriving, SIGTERM's stop included:
         * systemd starts services with none blocked, and so is tsmd then. SIGHUP stays blocked:
         * it is read from its signalfd (signal-source.h), and so it is in the worker, which
         * inherits the mask, from its first instruction: one sent to a worker still starting
         * waits for it to read it, rather than kill it. */
        sigemptyset(&handled);
        sigaddset(&handled, SIGTERM);
        sigaddset(&handled, SIGINT);
        sigaddset(&handled, SIGCHLD);
        (void) sigprocmask(SIG_UNBLOCK, &handled, NULL);

        *ret = TAKE_PTR(m);
        return 0;
}

Monitor *monitor_free(Monitor *m) {
        sigset_t handled;

        if (!m)
                return NULL;

        /* On the way out, the signals we handle stay harmless (tsmd(8) lists no death by them):
         * freeing their events puts the default actions back, so they wait, blocked, for the
         * exit, which drops them (SIGHUP is blocked all along). */
        sigemptyset(&handled);
        sigaddset(&handled, SIGTERM);
        sigaddset(&handled, SIGINT);
        sigaddset(&handled, SIGHUP);
        (void) sigprocmask(SIG_BLOCK, &handled, NULL);

        worker_kill(m, SIGKILL);
        emulated_state_save(m);
        monitor_dispatch_free(m->dispatch);
        channel_close(m);
        /* Stopping with a service manager that keeps the fds: the next tsmd takes them. */
        monitor_contexts_free(m->contexts, fdstore_available());
        tsm_platform_free(m->platform);
        for (size_t i = 0; i < m->n_sockets; i++)
                safe_close(m->sockets[i].fd);
        free(m->sockets);
        for (size_t i = 1; i < ELEMENTSOF(m->worker_argv); i++)
                free(m->worker_argv[i]);
        free(m->worker_path);
        safe_close(m->worker_binary);
        safe_close(m->state_dir_lock);
        safe_close(m->audit_dir_lock);
        free(m->lingering);
        free(m->start_settings);
        free(m->config_path);
        free(m->socket_path);
        free(m->guest_socket_path);
        if (m->sigterm)
                event_free(m->sigterm);
        if (m->sigint)
                event_free(m->sigint);
        signal_source_free(m->sighup);
        free(m->reload_sender_unit);
        if (m->sigchld)
                event_free(m->sigchld);
        if (m->restart_timer)
                event_free(m->restart_timer);
        if (m->stop_timer)
                event_free(m->stop_timer);
        if (m->kill_timer)
                event_free(m->kill_timer);
        if (m->tick)
                event_free(m->tick);
        if (m->status_timer)
                event_free(m->status_timer);
        disk_changes_done(m);
        if (m->base)
                event_base_free(m->base);
        daemon_config_done(&m->config);
        policy_unref(m->policy);
        safe_close(m->last_good);
        safe_close(m->stored_last_good);
        loaded_files_done(&m->reload_files);
        return mfree(m);
}

static int add_socket(Monitor *m, int fd, TsmPrivSocketKind kind) {
        if (!GREEDY_REALLOC(m->sockets, m->allocated_sockets, m->n_sockets + 1)) {
                safe_close(fd);
                return -ENOMEM;
        }
        m->sockets[m->n_sockets++] = (MonitorListenSocket){ .fd = fd, .kind = kind };
        return 0;
}

/* Whether something accepts connections at sa: a socket left by a tsmd that is gone refuses them
 * (ECONNREFUSED), as a path that is no socket does. A full backlog (EAGAIN) is somebody's. So is
 * a connection accepted, unless the process that listened is gone (SO_PEERCRED names it): then
 * only a worker the kernel is still killing for its monitor's death (PR_SET_PDEATHSIG) holds the
 * socket, and a tsmd started right after a SIGKILL of the last one takes it. */
static int socket_path_served(const struct sockaddr_un *sa) {
        _cleanup_close_ int fd = -EBADF;
        struct ucred listener = {};
        socklen_t len = sizeof(listener);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        if (connect(fd, (const struct sockaddr *) sa, sizeof(*sa)) < 0)
                return errno == EAGAIN || errno == EINPROGRESS;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &listener, &len) < 0 || listener.pid <= 0)
                return 1;
        return !(kill(listener.pid, 0) < 0 && errno == ESRCH);
}

static int listen_path(Monitor *m, const char *path, mode_t mode, TsmPrivSocketKind kind) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        mode_t old_umask;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(-ENAMETOOLONG, "Socket path '%s' is too long.", path);
        memcpy(sa.sun_path, path, strlen(path));
        /* What is there is replaced only if it is a socket: a mistyped path must not delete a file. */
        r = RET_NERRNO(lstat(path, &st));
        if (r >= 0 && !S_ISSOCK(st.st_mode))
                return log_error_errno(-EEXIST, "Refusing to start: '%s' exists and is not a socket. Remove it, or "
                                                "give tsmd another socket path.", path);
        if (r < 0 && r != -ENOENT)
                return log_error_errno(r, "Cannot check what is at '%s': %m", path);
        /* SECURITY: a second tsmd given a live tsmd's path (or another service's) must not take it
         * over: the clients of the first would be ours, or nobody's. A stale socket is replaced. */
        r = socket_path_served(&sa);
        if (r < 0)
                return log_error_errno(r, "Cannot check whether something serves '%s': %m", path);
        if (r > 0)
                return log_error_errno(-EADDRINUSE, "Refusing to start: something serves '%s' already (another "
                                                    "tsmd?). Stop it, or give this tsmd another socket path.", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        (void) unlink(path);
        /* SECURITY: the node is made with its mode, no chmod() by path after: in a directory others
         * may write, the socket could be swapped for a symlink in between (and 0666 land on its
         * target). */
        old_umask = umask(~mode & 0777);
        r = RET_NERRNO(bind(fd, (struct sockaddr *) &sa, sizeof(sa)));
        umask(old_umask);
        if (r < 0 || listen(fd, SOMAXCONN) < 0)
                return log_error_errno(r < 0 ? r : -errno, "Failed to listen on '%s': %m", path);
        log_info("Serving %s on unix:%s", kind == TSM_PRIV_SOCKET_GUEST ? "io.tsmd.Guest" : "all interfaces", path);
        return add_socket(m, TAKE_FD(fd), kind);
}

int monitor_listen(Monitor *m) {
        _cleanup_free_ char **names = NULL;
        _cleanup_close_ int emu_state = -EBADF;
        TsmPrivSocketKind kind;
        int n, r;

        n = sd_listen_fds_with_names(true, &names);
        if (n < 0)
                return log_error_errno(n, "Failed to read sockets passed by the service manager: %m");

        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *name = names ? names[i] : NULL;

                (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
                /* The emulated devices' state a stop kept for us (emu-state.h): read once the
                 * contexts are in. */
                if (name && streq(name, FDSTORE_EMU_STATE_NAME)) {
                        if (emu_state >= 0) {
                                log_warning("Ignoring a second saved state of the emulated devices (fd %d).", fd);
                                safe_close(fd);
                        } else
                                emu_state = fd;
                        continue;
                }
                /* The files in force before the restart (last-good.h): the start's, if the
                 * disk's do not load. */
                if (name && streq(name, FDSTORE_LAST_GOOD_NAME)) {
                        if (m->stored_last_good >= 0) {
                                log_warning("Ignoring a second kept configuration (fd %d).", fd);
                                safe_close(fd);
                        } else
                                m->stored_last_good = fd;
                        continue;
                }
                /* An iommufd kept for us across a restart (fdstore.h). */
                if (fdstore_name_is_ours(name)) {
                        uint32_t id;

                        /* SECURITY: not named in the log: an old-style name is a reclaim token. */
                        r = monitor_contexts_restore(m->contexts, fd, name, &id);
                        if (r == -EMFILE)
                                log_warning("Dropping kept context fd %d: the monitor holds its maximum of %zu "
                                            "contexts already.", fd, monitor_contexts_get_max(m->contexts));
                        else if (r < 0)
                                log_warning_errno(r, "Ignoring kept context fd %d: %m", fd);
                        continue;
                }
                r = sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0);
                if (r <= 0) {
                        r = log_error_errno(r < 0 ? r : -EINVAL,
                                            "Passed fd %d ('%s') is not a listening AF_UNIX stream socket.", fd, strna(name));
                        goto finish;
                }
                /* SECURITY: only a socket named after io.tsmd.Admin (tsmd-admin.socket's
                 * FileDescriptorName=) serves everything, its file mode deciding who may connect;
                 * any other serves VMMs only. A unit edited without its name fails closed, not
                 * with administration on the world-writable guest socket. */
                kind = name && streq(name, "io.tsmd.Admin") ? TSM_PRIV_SOCKET_ALL : TSM_PRIV_SOCKET_GUEST;
                r = add_socket(m, fd, kind);
                if (r < 0)
                        goto finish;
                if (kind == TSM_PRIV_SOCKET_ALL || (name && streq(name, "io.tsmd.Guest")))
                        log_info("Serving %s on passed socket '%s'.",
                                 kind == TSM_PRIV_SOCKET_ALL ? "all interfaces" : "io.tsmd.Guest", name);
                else
                        log_notice("Serving io.tsmd.Guest only on passed socket '%s' (FileDescriptorName=io.tsmd.Admin "
                                   "serves administration).", strna(name));
        }

        /* Every kept fd is in: a rename a restart cut off leaves one under one name. */
        monitor_contexts_restore_done(m->contexts);
        if (emu_state >= 0)
                emulated_state_load(m, emu_state);

        if (m->socket_path) {
                r = listen_path(m, m->socket_path, 0660, TSM_PRIV_SOCKET_ALL);
                if (r < 0)
                        goto finish;
        }
        if (m->guest_socket_path) {
                /* Everyone may connect; the policy decides what they may do. */
                r = listen_path(m, m->guest_socket_path, 0666, TSM_PRIV_SOCKET_GUEST);
                if (r < 0)
                        goto finish;
        }
        if (m->n_sockets == 0) {
                r = log_error_errno(-EINVAL, "No socket passed by the service manager, and neither --socket= nor --guest-socket= given.");
                goto finish;
        }
        if (!fdstore_available())
                log_info("No service manager to keep iommufds across restarts of tsmd: contexts survive "
                         "restarts of the worker only.");
        if (monitor_contexts_size(m->contexts) > 0)
                log_info("Kept %zu contexts from before the restart.", monitor_contexts_size(m->contexts));
        r = 0;
finish:
        for (int i = 0; names && i < n; i++)
                free(names[i]);
        return r;
}

bool monitor_refused_files(const Monitor *m) {
        return m->files_refused;
}

int monitor_run(Monitor *m) {
        int r;

        r = files_at_start(m);
        if (r < 0)
                return r;
        r = worker_start(m);
        if (r < 0)
                return r;
        if (event_base_dispatch(m->base) < 0)
                return log_error_errno(-EIO, "Event loop failed.");
        return 0;
}
