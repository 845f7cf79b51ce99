/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The monitor's end of the channel to the worker (proto/tsm-priv.h): one table, indexed by
 * message type, of the requests the worker may make, each with its permit flags and its
 * handler dispatch_priv_<op>() (monitor-dispatch-<concept>.c). tsm_priv_check() decides the
 * shape; the handler then re-validates the meaning against the monitor's own state
 * (MonitorContexts, the platform): who holds which context, which vDevice is attached where,
 * which scopes the serving backend has. A worker that breaks a rule is not answered: the caller
 * kills it and starts a fresh one.
 *
 * Replies (struct tsm_priv_reply, the request's cookie echoed): result 0 or -errno as in
 * tsm-priv.h (OPEN_CONTEXT and ADOPT_CONTEXT: -EMFILE once the table holds its maximum, see
 * monitor_contexts_set_max(); ADOPT_CONTEXT: -ENOBUFS when the monitor did not take its fd,
 * MONITOR_WORKER_FDS_CLOSING_MAX); value: OPEN_CONTEXT and ADOPT_CONTEXT the new context's id,
 * GET_VDEVICE_STATE and GET_DEVICE_STATE the TdispState, SETTLE_VDEVICE 1 if bound, else 0.
 * OPEN_CONTEXT and RECLAIM_CONTEXT replies carry a duplicate of the context's fd when they
 * succeed; GUEST_REQUEST replies carry the response as payload, and come from the event loop,
 * when the device has answered. READY, STATUS and LATE_ACK get no reply.
 * Runs in: monitor.
 */
#pragma once

#include <stddef.h>

#include <event2/event.h>

#include "monitor-contexts.h"
#include "tsm-priv.h"
#include "tsm-types.h"

typedef struct TsmPlatform TsmPlatform;
typedef struct MonitorDispatch MonitorDispatch;

/* Guest requests in flight at once: beyond this the monitor answers -EBUSY rather than hold
 * more buffers (each up to a request and a response of TSM_PRIV_PAYLOAD_MAX). The worker
 * queues what is beyond it, so a correct worker never sees that answer. */
#define MONITOR_REQUESTS_MAX TSM_PRIV_REQUESTS_MAX

/* Binds and unbinds on their way for one vDevice at once: beyond this the monitor answers
 * -EBUSY rather than queue more (each holds memory, and on the kernel's TSMs a copy of the
 * iommufd, until the TSM answers; they outlive the worker). A correct worker has one on its
 * way per vDevice, two with the release's unbind behind it, three when a restarted worker's
 * unbind joins its predecessor's: it never sees that answer. Likewise one SETTLE_VDEVICE per
 * vDevice waits at a time (a worker sends one per vDevice it restores). */
#define MONITOR_CHANGES_PER_VDEVICE_MAX 4U

/* What the monitor logs as often as a worker makes it, its refusals of a scope or device no rule
 * grants or lists and of contexts past its cap, and the late answers it could not keep, is
 * logged at most this often (each kind): a worker may cause them (its policy can be newer than
 * the monitor's for a moment, it may not know every context the monitor holds), so they are
 * answers, not violations, and a compromised one could cause them without end. */
#define MONITOR_LOG_RATELIMIT_BURST 10U
#define MONITOR_LOG_RATELIMIT_INTERVAL_USEC (10 * 1000 * 1000ULL)

/* Late answers of the kernel (LATE) the monitor keeps until a worker acknowledges them recorded
 * (LATE_ACK durable): those sent to the worker served, those a worker that ended did not
 * acknowledge, and those that came while none ran (between a worker's end and its successor's
 * start, 100 ms to 30 s), which the next worker gets after its start sequence. Past this many,
 * a late answer is dropped (the oldest are kept: they may be in the audit log already) and
 * counted; the count goes to the worker as one LATE of op LOST (kept the same way), and each
 * drop is logged (rate limited). */
#define MONITOR_LATE_KEPT_MAX 256U

/* Answers of binds, unbinds and guest requests the device ran that the monitor keeps until the
 * worker says their records are durable (RECORDED; a worker that ends first leaves them to the
 * next as LATEs, which MONITOR_LATE_KEPT_MAX bounds then). As many as the worker's records in
 * flight by default (MaxRecordsInFlight=); past it an answer goes out unkept, logged (rate
 * limited). */
#define MONITOR_ANSWERS_KEPT_MAX 4096U

/* The longest any send to the worker may block (SO_SNDTIMEO, set by monitor_dispatch_start()).
 * A reply not taken by then ends the worker: the stalled callback. */
#define MONITOR_SEND_TIMEOUT_USEC (5 * 1000 * 1000ULL)

/* SECURITY: messages one monitor_dispatch_process() handles at most. A worker that keeps the
 * channel full (threads sending STATUS, each an sd_notify() here), or packs each datagram full,
 * must not keep the loop from its watchdog ping, signals, timers and the kernel lanes'
 * completions: the rest waits for the next round. */
#define MONITOR_MESSAGES_PER_WAKEUP 128U

/* SECURITY: the fds a worker passed that the monitor holds to close, at most. The monitor closes
 * those whose close may wait on a FUSE server on a thread of its own (fd-closer.h), one after
 * another: one close a client's server never answers holds every fd queued after it open, past
 * the worker's life. A correct worker passes none such (ADOPT_CONTEXT's fd is a character device
 * or a memfd, or the worker is killed), but a compromised one may, and its successors again; so
 * the monitor takes an fd from the channel only while fewer than this wait to be closed, and a
 * message whose fd it did not take is answered -ENOBUFS, the monitor's own failure
 * (TSM_PRIV_REPLY_MONITOR_OWN), as is one whose fd it had no room for (RLIMIT_NOFILE). Not taken
 * is still received and closed, never left to the kernel to drop: the kernel releases a file it
 * drops on the receiving thread, and with the FUSE writeback cache that release waits on the
 * server (fuse_release() writes the inode back). So past this the monitor receives one datagram
 * at a time, and one whose fd may wait ends the worker. A batch of datagrams is received at
 * once: with nothing waiting, each may carry its fd (every datagram has room for the most a
 * datagram carries, SCM_MAX_FD: the extras of one are closed, a violation). */
#define MONITOR_WORKER_FDS_CLOSING_MAX 32U

/* Run from monitor_dispatch_process() (stalled: from the event loop's callbacks too); they must
 * not stop or free the dispatch. */
typedef struct MonitorDispatchCallbacks {
        void (*ready)(void *userdata);                                  /* worker sent READY */
        void (*status)(const struct tsm_priv_status *s, void *userdata); /* worker sent STATUS */
        /* Worker sent RELOAD (tsm-priv.h). A load (commit false): the monitor loads its files,
         * applying nothing, and returns 0 with *ret_fd the sealed memfd of their bytes (borrowed
         * until the next call: the worker gets a copy), or -errno, with why in *ret_reason (a
         * new string, which the dispatch frees; may stay NULL) and whether the policy failed
         * (tsmd.conf loaded) in *ret_policy_failed. A commit (ret_fd, ret_reason and
         * ret_policy_failed NULL), only ever after a load that returned 0: it applies what that
         * load loaded. The result goes in the reply (NULL: -EOPNOTSUPP). */
        int (*reload)(void *userdata, bool commit, int *ret_fd, char **ret_reason, bool *ret_policy_failed);
        void (*stalled)(int error, void *userdata); /* a reply could not be sent (error: -EAGAIN
                                                      * when the worker left it unread for
                                                      * MONITOR_SEND_TIMEOUT_USEC): nothing more
                                                      * goes to this worker and
                                                      * monitor_dispatch_process() says -EPIPE;
                                                      * the caller kills it. Once per worker. */
        /* SECURITY: may requests in scope go to pci_address, served by backend, at all? Asked
         * for every scope, those backends allow by default too (a policy may narrow them); NULL
         * refuses them all. The worker decides for its clients; this is the monitor's own bound
         * on what a compromised worker can reach. A refusal is -EPERM, not a violation: monitor
         * and worker apply a reloaded policy one after the other. */
        bool (*scope_granted)(const char *pci_address, TsmBackendType backend, const char *scope,
                              void *userdata);
        /* SECURITY: may pci_address, served by backend, be attached to a context or bound at
         * all? Asked for every ATTACH_VDEVICE of a client's and every BIND_VDEVICE (not for an
         * unbind, which gives a device up, nor for a restore's attach, which records what the
         * kernel kept: see dispatch_priv_attach_vdevice(), monitor-dispatch-attach.c); and may it
         * be connected to (disconnected from) a TSM of backend? Asked for every CONNECT_DEVICE
         * and DISCONNECT_DEVICE that would write to sysfs. NULL refuses them all. The same bound
         * as scope_granted, and a refusal is -EPERM too. */
        bool (*device_listed)(const char *pci_address, TsmBackendType backend, void *userdata);
} MonitorDispatchCallbacks;

/* platform and contexts are borrowed and must outlive the dispatch; cb is copied (may be NULL).
 * The dispatch installs the platform's device-gone and device-unbound callbacks (to mark vDevices
 * gone, or unbound); a caller that needs one too calls monitor_contexts_device_gone() or
 * monitor_contexts_device_unbound() from its own. */
int monitor_dispatch_new(struct event_base *base, TsmPlatform *platform, MonitorContexts *contexts,
                         const MonitorDispatchCallbacks *cb, void *userdata, MonitorDispatch **ret);
/* Stops (see below) and frees; accepts NULL. */
MonitorDispatch *monitor_dispatch_free(MonitorDispatch *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(MonitorDispatch *, monitor_dispatch_free);

typedef struct MonitorListenSocket {
        int fd;
        TsmPrivSocketKind kind;
} MonitorListenSocket;

/*
 * A new worker on channel (borrowed: the caller closes it after monitor_dispatch_stop()).
 * Sends HELLO (version, the UAPI or its -errno, emulated, fd store, the counts, the most
 * contexts the table holds, and as its payload the settings set by
 * monitor_dispatch_set_start_settings(), if any), one LISTEN_SOCKET with its fd per socket (borrowed: the worker
 * gets a copy), LAST_GOOD with the fd set by monitor_dispatch_set_last_good() if any, then RESTORED_CONTEXT for every context, all of them at slot 0 by then, each
 * followed by a RESTORED_VDEVICE per vDevice it has, then the LATEs kept for it (with no cookie
 * of its own) and a LOST if late answers were dropped. Sets the channel's send timeout
 * (MONITOR_SEND_TIMEOUT_USEC). Returns 0, -EBUSY if a worker is served already, -EINVAL for an
 * invalid socket, or the send error (the caller then kills the worker and tries again with a
 * fresh one).
 */
int monitor_dispatch_start(MonitorDispatch *d, int channel, const MonitorListenSocket *sockets,
                           size_t n_sockets);
/* The sealed memfd (last-good.h) the next workers get in LAST_GOOD, borrowed until set again
 * (-EBADF: none), and whether the files on disk failed to load at the last try (stale), and why
 * (reason: copied, cut as tsm-priv.h says; NULL: unknown). */
void monitor_dispatch_set_last_good(MonitorDispatch *d, int fd, bool stale, const char *reason);
/* The settings read at start (daemon_config_format_start_only()) every next HELLO carries,
 * borrowed for the dispatch's life (NULL: none). -E2BIG if they do not fit a payload. */
int monitor_dispatch_set_start_settings(MonitorDispatch *d, const char *text);
/* Passes a SIGHUP on to the worker served (SIGNAL_RELOAD, tsm-priv.h): pid and uid of its sender
 * (0 and (uid_t) -1: none), unit: the sender's, or NULL. -ENOTCONN if no worker is served; a send
 * that fails ends the worker as a reply's does. */
int monitor_dispatch_signal_reload(MonitorDispatch *d, pid_t pid, uid_t uid, const char *unit);
/* Tells the worker served which files of the set in force differ on disk (FILES_CHANGED,
 * tsm-priv.h): n_changed, named in paths (size bytes of NUL-terminated paths; as many whole
 * ones as fit are sent, a path too long for the channel is not). -ENOTCONN if no worker is
 * served, -ENOMEM; a send that fails ends the worker as a reply's does. */
int monitor_dispatch_files_changed(MonitorDispatch *d, uint32_t n_changed, const char *paths, size_t size);
/* What the next HELLO says of the worker before (TSM_PRIV_WORKER_FIRST until set). */
void monitor_dispatch_set_previous_worker(MonitorDispatch *d, TsmPrivWorkerEnd end, uint32_t status);

/*
 * Reads and handles the messages available on the channel (non-blocking, until -EAGAIN or
 * MONITOR_MESSAGES_PER_WAKEUP messages), answering each request. Returns:
 *   0          drained, or the round's share taken (more may wait: call again when readable);
 *   1          the round's share taken with messages already read still to handle: call again
 *              after the loop's next round, readable or not;
 *   -EPIPE     end of file: the worker exited, or shut its end of the channel (the caller
 *              kills it all the same, unless it stops as asked);
 *   a negative errno with a static description in *ret_reason: the worker broke the rules
 *              (malformed or empty, unknown, wrong direction, unpermitted or out-of-state).
 *              The caller kills it, logs "compromised worker: <type>: <reason>" with the type
 *              from monitor_dispatch_get_violation_type(), and starts a new one;
 *   any other negative errno with *ret_reason NULL: the channel failed (receiving or sending
 *              a reply); the caller kills the worker and starts a new one.
 */
int monitor_dispatch_process(MonitorDispatch *d, const char **ret_reason);

/* The name of the message type ("OPEN_CONTEXT") of the last violation, or "unknown" when the
 * datagram did not name a known type. */
const char *monitor_dispatch_get_violation_type(const MonitorDispatch *d);

/* The worker is gone: forgets the channel, cancels the guest requests in flight (their
 * replies are dropped) and orphans every context (slot 0), for the next worker to reclaim.
 * The once-only permits (READY) start afresh. The LATE_ACKs still unread on the channel are
 * taken first, unless the worker broke a rule: what it acknowledged counts; the LATEs it did not
 * acknowledge go to the next worker. */
void monitor_dispatch_stop(MonitorDispatch *d);

/* Guest requests in flight. */
size_t monitor_dispatch_n_requests(const MonitorDispatch *d);

/* Late answers kept (MONITOR_LATE_KEPT_MAX at most), and those dropped and not yet acknowledged
 * in a LOST (for tests and counters). */
size_t monitor_dispatch_n_late_kept(const MonitorDispatch *d);
/* Answers kept until the worker records them (MONITOR_ANSWERS_KEPT_MAX at most). */
size_t monitor_dispatch_n_answers_kept(const MonitorDispatch *d);
uint64_t monitor_dispatch_n_late_lost(const MonitorDispatch *d);
