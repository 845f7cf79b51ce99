/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Many channel messages per system call, and per datagram. Under load the worker has several
 * guest requests for the monitor, and the monitor several replies, each time either side wakes
 * up; one sendmmsg() and one recvmmsg() for all of them instead of a sendmsg() and a recvmsg()
 * each (plus the recvmsg() that finds the socket empty) was most of the cost of the hop, and
 * what the kernel then spent was per datagram (a 4 KiB guest request cost the worker ~1 us to
 * send alone, ~0.4 us packed eight to a datagram; the monitor the same to receive). So the
 * messages queued together leave packed, as tsm-priv.h allows, and the inbox hands them out
 * one by one: the receivers see messages, whatever datagrams they came in.
 *
 * Runs in: monitor and worker.
 */
#pragma once

#include "macro.h"
#include "tsm-priv.h"

/* Messages queued in an outbox; datagrams per recvmmsg(). */
#define TSM_PRIV_BATCH_MAX 32U
/* The most fds one datagram carries (the kernel's SCM_MAX_FD): what a receive has room for. */
#define TSM_PRIV_SCM_MAX_FD 253U
/* Larger payloads are not copied into a batch but sent at once (after what is queued): the copy,
 * and the heap growing and shrinking under 64 KiB buffers, cost more than the call saved. */
#define TSM_PRIV_BATCH_PAYLOAD_MAX 4096U

/* ---- sending ---------------------------------------------------------------------------- */

/* A queued message the kernel refused (error: what sendmsg() said). */
typedef void (*TsmPrivSendFailed)(int error, void *userdata);

typedef struct TsmPrivOutbox TsmPrivOutbox;

int tsm_priv_outbox_new(TsmPrivSendFailed failed, TsmPrivOutbox **ret);
/* Both drop whatever is still queued, without calling anyone. */
void tsm_priv_outbox_clear(TsmPrivOutbox *o);
TsmPrivOutbox *tsm_priv_outbox_free(TsmPrivOutbox *o);
DEFINE_TRIVIAL_CLEANUP_FUNC(TsmPrivOutbox *, tsm_priv_outbox_free);

/* Queues a copy of one message without fd (msg and payload may be reused at once); a full
 * outbox is flushed to channel first. userdata goes to the failure callback if the send fails.
 * A payload over TSM_PRIV_BATCH_PAYLOAD_MAX is sent now, after the queue: then the send's error
 * is returned instead. */
int tsm_priv_outbox_add(TsmPrivOutbox *o, int channel, const void *msg, const void *payload,
                        size_t payload_len, void *userdata);
/* The same for a message whose payload follows its fixed part in one malloc() block, queued
 * (or sent) as it is rather than copied: once queued, the outbox frees it (sent, refused or
 * cleared); on failure the caller keeps it. A 4 KiB guest request was a 4 KiB allocation and
 * copy more. */
int tsm_priv_outbox_add_owned(TsmPrivOutbox *o, int channel, void *msg, void *userdata);
/* Sends what is queued, in order, packed into datagrams of up to TSM_PRIV_DATAGRAM_MAX bytes
 * (the channel's send buffer must hold one), in as few calls as the socket allows. Each
 * message the kernel refuses goes to the failure callback (after the outbox is empty again, so
 * the callback may queue more): the messages of a datagram too long alone, the rest still go
 * out; on any other error (the peer is gone, or a send timed out) everything not sent yet fails
 * with it. */
void tsm_priv_outbox_flush(TsmPrivOutbox *o, int channel);
size_t tsm_priv_outbox_size(const TsmPrivOutbox *o);

/* ---- receiving -------------------------------------------------------------------------- */

/* One message received, or what stood in its place. */
typedef struct TsmPrivReceived {
        const uint8_t *buf;
        ssize_t len;  /* as tsm_priv_receive() returns it: bytes, 0 for EOF, or -EMSGSIZE/-EPROTO */
        int fds[1];   /* a taker sets the entry to -EBADF; the rest are closed by the next receive */
        size_t n_fds;
        /* Fds came with it that were not taken (len: its bytes, n_fds 0): the receive took
         * none (fds_refused: tsm_priv_inbox_limit_fds()), or the process had no fd left (the
         * kernel dropped them unopened). */
        bool fds_lost;
        /* Not taken, as tsm_priv_inbox_limit_fds() asked: received and closed at once, or on the
         * closer's thread if their close may wait on a FUSE server (fds_refused_may_wait). */
        bool fds_refused, fds_refused_may_wait;
} TsmPrivReceived;

typedef struct TsmPrivInbox TsmPrivInbox;

int tsm_priv_inbox_new(TsmPrivInbox **ret);
TsmPrivInbox *tsm_priv_inbox_free(TsmPrivInbox *in);
DEFINE_TRIVIAL_CLEANUP_FUNC(TsmPrivInbox *, tsm_priv_inbox_free);

/* Receives what is there, up to TSM_PRIV_BATCH_MAX datagrams, without blocking. Returns how
 * many messages they held (then tsm_priv_inbox_get(0..n-1)), -EAGAIN if none, or the socket's
 * error. Closes the fds the last batch left. A datagram gets room for every fd it may carry
 * (TSM_PRIV_SCM_MAX_FD), so that the kernel drops none: one it drops is released on this thread
 * at the receive's return, which for a file of a FUSE file system may wait on its server
 * (fd-closer.h). A message carries one at most: more are -EPROTO, closed as below. */
int tsm_priv_inbox_receive(TsmPrivInbox *in, int channel);
/* The receives from now on take n fds at most, receiving n datagrams (at first:
 * TSM_PRIV_BATCH_MAX); with n 0, one datagram, whose fds are not taken: closed (fds_refused),
 * at once or through the closer, none left to the kernel. */
void tsm_priv_inbox_limit_fds(TsmPrivInbox *in, size_t n);
TsmPrivReceived *tsm_priv_inbox_get(TsmPrivInbox *in, size_t i);
/* Whether the last receive took as many datagrams as it could: the socket may hold more. If
 * not, it was empty then. */
bool tsm_priv_inbox_more(const TsmPrivInbox *in);
/* Closes every fd of the current batch not taken. */
void tsm_priv_inbox_clear(TsmPrivInbox *in);
