/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker's end of the channel to the privileged monitor (proto/tsm-priv.h): one function per
 * privileged operation, priv_call_<op>(). Most operations are answered at once by the monitor,
 * so those calls wait for their reply (a local round trip). Guest requests, binds, unbinds,
 * connects and disconnects are SPDM exchanges with the device and may take as long as the
 * device does, so they complete from the event loop. Replies that arrive while a call waits are kept and delivered
 * afterwards, in order.
 * Runs in: worker.
 */
#pragma once

#include <event2/event.h>

#include "macro.h"
#include "tsm-priv.h"
#include "tsm-types.h"

typedef struct PrivChannel PrivChannel;

/* What the monitor said at start (HELLO), with the sockets it passed. */
typedef struct PrivHello {
        int32_t uapi;   /* TsmUapiVersion, or -errno */
        bool emulated;
        bool fdstore;
        TsmPrivWorkerEnd previous_end; /* how the worker before this one ended */
        uint32_t previous_status;
        uint32_t max_contexts; /* the most the monitor holds, orphans included */
        uint64_t started_usec; /* CLOCK_MONOTONIC at the monitor's start */
        char *start_settings;  /* the settings read at start, tsmd.conf syntax (HELLO's payload); NULL: none */
        int last_good_fd;      /* LAST_GOOD's sealed memfd (last-good.h); -EBADF: none came */
        bool last_good_stale;  /* the files on disk did not load: these are older */
        /* Why not, in the monitor's words (checked: tsm_priv_check_reason()); "": it gave none. */
        char last_good_reason[TSM_PRIV_REASON_MAX + 1];
        int *socket_fds;
        TsmPrivSocketKind *socket_kinds;
        size_t n_sockets;
        struct tsm_priv_restored_context *restored;
        size_t n_restored;
        /* Every restored context's RESTORED_VDEVICE messages, in the order of the contexts
         * (restored[i].n_vdevices of them each). */
        struct tsm_priv_restored_vdevice *restored_vdevices;
        size_t n_restored_vdevices;
} PrivHello;

void priv_hello_done(PrivHello *h);

/* Takes the channel fd. on_gone runs (from the loop) when the monitor hangs up or breaks the
 * rules: the worker cannot do anything useful without it. */
int priv_channel_new(struct event_base *base, int fd, void (*on_gone)(void *userdata), void *userdata,
                     PrivChannel **ret);
PrivChannel *priv_channel_free(PrivChannel *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(PrivChannel *, priv_channel_free);

/* Reads the start sequence (HELLO, LISTEN_SOCKET..., LAST_GOOD, RESTORED_CONTEXT and its RESTORED_VDEVICE...),
 * blocking. */
int priv_channel_read_hello(PrivChannel *c, PrivHello *ret);

/* A kernel call given up on that the kernel answered after all (LATE, checked): for the audit
 * log. Runs from the loop, never inside another priv_call. */
typedef void (*PrivLateCallback)(const struct tsm_priv_late *late, void *userdata);
void priv_channel_set_late_callback(PrivChannel *c, PrivLateCallback cb, void *userdata);

/* The monitor got SIGHUP (SIGNAL_RELOAD, checked): reload, on record as its sender's. Runs from
 * the loop, never inside another priv_call. */
typedef void (*PrivSignalReloadCallback)(const struct tsm_priv_signal_reload *reload, void *userdata);
void priv_channel_set_signal_reload_callback(PrivChannel *c, PrivSignalReloadCallback cb, void *userdata);

/* The files of the set in force that differ on disk (FILES_CHANGED, checked): n_changed of them,
 * named in paths, or some of them (paths_size bytes of NUL-terminated paths, valid during the
 * call; NULL when none are named). Runs as the message is read, also while a call waits for its reply:
 * these come in the monitor's order and the last is the truth, so the callback may only keep
 * what it is given (and schedule work), never call the monitor. */
typedef void (*PrivFilesChangedCallback)(uint32_t n_changed, const char *paths, size_t paths_size, void *userdata);
void priv_channel_set_files_changed_callback(PrivChannel *c, PrivFilesChangedCallback cb, void *userdata);

/* Tells the monitor the worker has LATE id (LATE_ACK): not durable, its record is being written
 * under seq (sent at once, before the record can reach the disk); durable, it is recorded (or
 * counted in a summary, or never will be), and the monitor forgets it (sent with what goes out
 * next). */
int priv_send_late_ack(PrivChannel *c, uint64_t id, uint64_t seq, bool durable);

/* The previous reclaim id a partial context's state file names (RESTORED_PREVIOUS), before READY. */
int priv_send_restored_previous(PrivChannel *c, uint32_t context, const char *previous_reclaim_id);

int priv_send_ready(PrivChannel *c);
int priv_send_status(PrivChannel *c, unsigned n_clients, unsigned n_pending, bool draining, uint32_t audit);

/* reclaim_id names the context in the fd store (fdstore.h): never the token. -EMFILE: the
 * monitor holds as many contexts as it may. */
/* Whether the channel to the monitor is lost (the worker exits then): a call that failed so may
 * or may not have been carried out. */
bool priv_channel_is_gone(const PrivChannel *c);

/* Whether the monitor holds requests of slot, or some wait here to go. */
bool priv_call_slot_busy(PrivChannel *c, uint32_t slot);

int priv_call_open_context(PrivChannel *c, uint32_t slot, uid_t uid, const char *reclaim_id, uint32_t *ret_context,
                           int *ret_fd);
/* fd is not taken. -EBADF: not an iommufd; -ENODEV: no IOMMU on this host; -EMFILE as above. */
int priv_call_adopt_context(PrivChannel *c, uint32_t slot, uid_t uid, const char *reclaim_id, int fd,
                            uint32_t *ret_context);
/* Also renames the context to reclaim_id, its new token's (the old name is void then), keeping
 * presented_id, the id of the token reclaimed with, as its previous. -EIO if the monitor could
 * not take the old name out of the fd store: nothing changed. */
int priv_call_reclaim_context(PrivChannel *c, uint32_t slot, uint32_t context, const char *reclaim_id,
                              const char *presented_id, int *ret_fd);
/* The guest requests of the context (for a detach: of the vDevice) still waiting in the worker
 * fail first, -ENODEV, from within the call, as those the monitor holds fail when it is done;
 * a bind or unbind that waited behind them (a release's unbind) goes before the call. */
int priv_call_close_context(PrivChannel *c, uint32_t slot, uint32_t context);
/* A vDevice the monitor does not have (it told of those it has at the start). bound: a
 * restore's attach of one the kernel kept bound through a restart of tsmd (tsm-priv.h). */
int priv_call_attach_vdevice(PrivChannel *c, uint32_t slot, uint32_t context, uint32_t vdevice,
                             const char *pci_address, bool bound);
/* See priv_call_close_context(). */
int priv_call_detach_vdevice(PrivChannel *c, uint32_t slot, uint32_t context, uint32_t vdevice);
int priv_call_get_vdevice_state(PrivChannel *c, uint32_t slot, uint32_t context, uint32_t vdevice, int *ret_state);
int priv_call_get_device_state(PrivChannel *c, const char *pci_address, int *ret_state);
/* A reload in two steps (RELOAD, tsm-priv.h): the monitor loads tsmd.conf and the policy and
 * hands over the sealed memfd of the bytes it parsed (last-good.h) in *ret_fd, applying nothing
 * yet; then, once the worker took those bytes, the commit has the monitor apply them too. If
 * the monitor did not load them: its -errno, with its reason in *ret_reason (a new string,
 * checked as tsm-priv.h says: bounded, no control characters; NULL if it gave none, or out of
 * memory) and whether the policy failed (tsmd.conf loaded) in *ret_policy_failed. A reply that
 * breaks the rules ends the channel (-ECONNRESET, priv_channel_is_gone()). */
int priv_call_reload(PrivChannel *c, int *ret_fd, char **ret_reason, bool *ret_policy_failed);
int priv_call_reload_commit(PrivChannel *c);

/* One guest request in flight. The callback runs once with the result (a negative errno, or the
 * reply's value: the request bytes the TSM did not consume, tsm-priv.h) and the response (valid during the callback
 * only, and only until it makes another priv_call), unless cancelled first: from the event loop,
 * or, for a request the kernel refused to take, inside whatever priv_call_*() flushed the
 * outbox. Beyond TSM_PRIV_REQUESTS_MAX in flight, or an eighth of that for
 * one client slot, requests wait in the worker and go, each slot's in order, as answers make
 * room; a request also waits behind a bind, unbind or settle of its slot that waits
 * (priv_call_set_bound()). */
typedef struct PrivRequest PrivRequest;
typedef void (*PrivRequestCallback)(int result, const void *response, size_t response_len, void *userdata);

/* A guest request's payload, made in the block its message to the monitor is sent in, so that
 * the caller writes it there (the worker decodes the base64 straight into it: no copy of up to
 * 64 KiB): size bytes at priv_payload_data(). NULL if out of memory. */
typedef struct PrivPayload PrivPayload;
PrivPayload *priv_payload_new(size_t size);
void *priv_payload_data(PrivPayload *p);
PrivPayload *priv_payload_free(PrivPayload *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(PrivPayload *, priv_payload_free);

/* Sends the first request_len bytes of payload (at most the size it was made with; -E2BIG past
 * TSM_PRIV_PAYLOAD_MAX), which it takes, also on failure. */
int priv_call_guest_request(PrivChannel *c, uint32_t slot, uint32_t context, uint32_t vdevice,
                            TsmBackendType backend, const char *scope, PrivPayload *payload,
                            size_t request_len, size_t max_response, PrivRequestCallback cb, void *userdata,
                            PrivRequest **ret);
/* Binds or unbinds a vDevice, completing like a guest request (with no response). Outside the
 * request quota, but in order with the slot's guest requests of the vDevice: sent at once,
 * unless some of those wait in the worker (see priv_call_guest_request()); then it waits
 * behind them, and goes as soon as the last of them went (or failed, at a detach or close), so
 * that the device's lane has the vDevice's calls in the order they were made. */
int priv_call_set_bound(PrivChannel *c, uint32_t slot, uint32_t context, uint32_t vdevice, bool bind,
                        PrivRequestCallback cb, void *userdata, PrivRequest **ret);
/* Completes, with 1 if bound or 0, once no bind or unbind of the vDevice is on its way (a new
 * worker's restore of a vDevice whose change its predecessor did not see answered). Sent like
 * priv_call_set_bound(). */
int priv_call_settle_vdevice(PrivChannel *c, uint32_t slot, uint32_t context, uint32_t vdevice,
                             PrivRequestCallback cb, void *userdata, PrivRequest **ret);
/* Connects a device to a TSM or disconnects it, completing like a bind: the kernel's connect is
 * an SPDM session and IDE key setup, seconds, which the monitor runs on the device's lane. Sent
 * like priv_call_set_bound() (the monitor takes one per device at a time: -EBUSY). -ENODEV or
 * -ENXIO at once for an address or TSM name no device or TSM can have. */
int priv_call_connect_device(PrivChannel *c, const char *pci_address, const char *tsm, PrivRequestCallback cb,
                             void *userdata, PrivRequest **ret);
int priv_call_disconnect_device(PrivChannel *c, const char *pci_address, PrivRequestCallback cb, void *userdata,
                                PrivRequest **ret);
void priv_request_cancel(PrivRequest *r);
/* Asks the monitor to drop guest request or bind r, sent already (not waiting here), if nothing
 * started it yet (CANCEL_REQUEST): then r's callback gets -ECANCELED, its result the monitor's own
 * (priv_request_monitor_own()); else r ends as it would have. Goes with what is sent next. */
int priv_request_cancel_sent(PrivRequest *r);
/* Whether r still waits in the worker (priv_call_guest_request()): cancelled now, it never
 * reaches the monitor. */
bool priv_request_is_waiting(const PrivRequest *r);
/* The cookie r goes (or went) to the monitor with: a LATE names it (request_cookie). */
uint32_t priv_request_get_cookie(const PrivRequest *r);
/* During r's callback: whether its result is the monitor's answer (the TSM's word, or the
 * monitor's), rather than the worker's own failure to send it (an -ENOMEM of its channel is
 * tsmd's, not the TSM's) or the end of the channel. */
bool priv_request_answered(const PrivRequest *r);
/* During r's callback: whether the monitor answered a failure of its own, the backend not asked
 * (its policy gate's -EPERM, its own -ENOMEM: TSM_PRIV_REPLY_MONITOR_OWN), where a kernel TSM
 * may answer the same errno. */
bool priv_request_monitor_own(const PrivRequest *r);
/* During r's callback: if the monitor keeps r's answer until the worker's record of it is
 * durable (TSM_PRIV_REPLY_KEPT: a bind, unbind or guest request the device ran), its cookie, which
 * the caller then owes priv_answer_recorded(); else 0. An answer not taken so is said recorded
 * once the callback returns (its caller records nothing of it), and one that comes for a
 * cancelled request is said unrecorded (late: its caller left, recorded so). */
uint32_t priv_request_take_kept(PrivRequest *r);
/* Tells the monitor, with what goes out next (one RECORDED for all since the last), that the
 * record of the kept answer cookie is durable (late false: it forgets it), or that nobody records
 * it (late true: it sends it back as a LATE, recorded as a call given up on). */
void priv_answer_recorded(PrivChannel *c, uint32_t cookie, bool late);


/* At exit, with the loop stopped: waits for the answers someone still waits for (the unbinds of
 * the last releases) until the monitor stays silent for timeout_usec or the clock
 * (now_monotonic_usec()) reaches deadline_usec, whichever comes first, then fails the rest
 * (-ETIMEDOUT, or -ECONNRESET without a monitor): every callback runs before its owner goes. */
void priv_channel_finish(PrivChannel *c, uint64_t timeout_usec, uint64_t deadline_usec);
