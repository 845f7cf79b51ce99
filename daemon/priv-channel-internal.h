/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What priv-channel.c and priv-call.c share: the channel's and a request's state, and what the
 * typed calls build on. Internal to the two: everyone else includes priv-call.h.
 * Runs in: worker. */
#pragma once

#include <sys/queue.h>

#include "idle-flush.h"
#include "priv-call.h"
#include "priv-slots.h"
#include "tsm-priv-batch.h"

/* How long a RECORDED waits for other traffic to the monitor to go with. */
#define PRIV_RECORDED_LINGER_USEC (20U * 1000U)

struct PrivRequest {
        PrivChannel *channel;
        uint32_t cookie;
        uint32_t slot;
        PrivRequestCallback callback;
        void *userdata;
        /* Guest requests count against what the monitor holds; binds, unbinds and settles (at
         * most two per vDevice) do not, and wait only behind the guest requests of their vDevice
         * that wait here: the device's lane gets a vDevice's calls in the order they were made. */
        bool counted;
        /* The monitor answered: the result its callback gets is the monitor's (what the TSM
         * said), not the worker's own failure to send it or the channel's end. */
        bool answered;
        /* It answered a failure of its own (TSM_PRIV_REPLY_MONITOR_OWN), the backend not asked. */
        bool monitor_own;
        /* It keeps the answer until RECORDED names it (TSM_PRIV_REPLY_KEPT), and the callback did
         * not take that on (priv_request_take_kept()): said recorded once the callback returns. */
        bool kept;
        /* A guest request's, bind's, unbind's or settle's context and vDevice (0 for other
         * requests): a detach or close fails the guest requests still waiting here, and sends
         * what waits behind them (priv_channel_fail_waiting()). */
        uint32_t context, vdevice;
        /* Its message and payload in one block, until the outbox takes it: waiting while set. */
        struct tsm_priv_hdr *queued;
        TAILQ_ENTRY(PrivRequest) entry;
};

struct PrivChannel {
        struct event_base *base;
        int fd;
        struct event *ev_read, *ev_deferred;
        struct event *ev_recorded; /* sends the RECORDED an idle worker owes */
        /* Guest requests leave together once the loop is idle (or 1 ms from the first at the
         * latest: idle-flush.h); replies arrive by the batch. */
        IdleFlush *flush;
        TsmPrivOutbox *outbox;
        TsmPrivInbox *inbox;
        uint32_t next_cookie;
        TAILQ_HEAD(, PrivRequest) requests; /* sent, awaiting their reply */
        TAILQ_HEAD(, PrivRequest) waiting;  /* queued behind them, in order */
        size_t n_requests;                  /* counted ones sent */
        size_t n_waiting_uncounted;         /* binds, unbinds and settles among the waiting */
        PrivSlots *slots;                   /* counted ones sent, and all waiting ones, per slot */
        /* requests_flush() runs, and whether a callback ran under it (the lists changed). */
        bool flushing_requests, requests_changed;
        STAILQ_HEAD(, PrivQueued) queued;
        STAILQ_HEAD(, PrivLateQueued) late_queued; /* and SIGNAL_RELOADs, in order */
        PrivLateCallback on_late;
        void *late_userdata;
        PrivSignalReloadCallback on_signal_reload;
        void *signal_reload_userdata;
        PrivFilesChangedCallback on_files_changed;
        void *files_changed_userdata;
        void (*on_gone)(void *userdata);
        void *userdata;
        bool gone;
        /* Cookies of kept answers for the next RECORDED: [0] recorded, [1] nobody records. */
        uint32_t *recorded[2];
        size_t n_recorded[2], allocated_recorded[2];
        TsmPrivReader reader; /* for the calls that wait for their reply */
};

/* priv-channel.c */
void priv_channel_gone(PrivChannel *c, const char *why);
void priv_request_free(PrivRequest *r);
int priv_channel_send_now(PrivChannel *c, void *msg);
uint32_t priv_channel_next_cookie(PrivChannel *c);
int priv_channel_call(PrivChannel *c, void *msg, int fd, struct tsm_priv_reply *ret, int *ret_fd,
                      const void **ret_payload);
void priv_channel_fail_waiting(PrivChannel *c, uint32_t slot, uint32_t context, uint32_t vdevice);
int priv_channel_submit(PrivChannel *c, PrivRequest *r, PrivRequest **ret);
