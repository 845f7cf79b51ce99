/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Kernel TSM calls (guest requests, bind, unbind, and the PCI TSM sysfs writes that connect a
 * device to its TSM or disconnect it), off the event loop. Each is an SPDM exchange with the
 * device through its DOE mailbox and the TSM's firmware (a connect also sets up IDE keys):
 * milliseconds to seconds, in an ioctl or write() that cannot be interrupted. Issued from the monitor's loop, one slow device would
 * hold every other VM's calls, and the request timeout could not even fire. So each device
 * gets a lane: a thread that runs that device's calls one after the other, in the order they
 * came (the kernel serialises a device's TSM calls anyway, and a request sent after a bind
 * must find the TDI locked), and waits a little for the next one before it ends. A device that
 * hangs holds only its own lane.
 *
 * A call owns everything its thread touches: a duplicate of the VMM's iommufd (the context may
 * be closed meanwhile), the request and the response buffer. Abandoning a call (its deadline
 * passed, its device went, its requester went away) only drops the callback; an ioctl already
 * running is left to finish, and its late answer is logged (at a bounded rate) and handed to the
 * lanes' late callback, with the tag its abandoner gave (tsmd's audit log records it there).
 * But a bind changes the device, and its requester records it as not done: one abandoned once
 * the kernel had it is undone, should it succeed, by an unbind that the abandonment queues on
 * the lane. It thus comes after every call queued before and ahead of every call after, a new
 * bind of the device included. Requests need no undo; an unbind's undo would be a bind that
 * nobody asked for.
 *
 * Runs in: monitor (the loop's thread, plus one thread per device with calls in flight).
 */
#pragma once

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "tsm-types.h"

/* How long a lane's thread waits for its device's next call before it ends. */
#define KERNEL_LANE_LINGER_USEC (2ULL * 1000000ULL)

/* Late answers are logged at most this many per interval: a hung TSM answers every request late. */
#define KERNEL_LATE_LOG_BURST 10U
#define KERNEL_LATE_LOG_INTERVAL_USEC (10ULL * 1000000ULL)

typedef struct KernelLanes KernelLanes;
typedef struct KernelCall KernelCall;

/* Runs on the loop's thread with the ioctl's result (iommufd-transport.h); the call is freed
 * when this returns, unless kept (kernel_call_keep()). */
typedef void (*KernelCallDone)(KernelCall *c, int result, void *userdata);

typedef enum KernelOp {
        KERNEL_OP_REQUEST, /* iommufd_tsm_request() */
        KERNEL_OP_BIND,    /* iommufd_tsm_bind() */
        KERNEL_OP_UNBIND,  /* iommufd_tsm_unbind() */
        KERNEL_OP_WRITE,   /* request written to the file at path (tsm/connect, tsm/disconnect) */
        _KERNEL_OP_MAX,
} KernelOp;

typedef struct KernelCallArgs {
        KernelOp op;
        int iommufd;            /* the VMM's; duplicated, the caller keeps its own (not for a write) */
        TsmUapiVersion version;
        uint32_t vdevice_id;
        /* KERNEL_OP_REQUEST only: */
        uint32_t scope_number;  /* the UAPI number, from the serving backend's table */
        /* KERNEL_OP_REQUEST, and KERNEL_OP_WRITE for what it writes: */
        const void *request;    /* copied */
        size_t request_len;
        size_t response_size;
        /* KERNEL_OP_WRITE only: the file, opened (O_NOFOLLOW) on the lane's thread, as opening
         * may wait too (a FIFO does); copied. */
        const char *path;
} KernelCallArgs;

/* linger_usec: KERNEL_LANE_LINGER_USEC outside tests. */
int kernel_lanes_new(struct event_base *base, uint64_t linger_usec, KernelLanes **ret);
/* Drops queued calls without their callbacks, undos included (a context cut off by a stop is
 * unbound by the next tsmd, or by the kernel as its iommufd closes), then waits for calls inside
 * the kernel to return: an ioctl cannot be cancelled, and its thread uses the lanes until it
 * ends. Kept calls are their owners' to deliver or abandon first. */
KernelLanes *kernel_lanes_free(KernelLanes *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(KernelLanes *, kernel_lanes_free);

/* A call abandoned while the kernel ran it, as the kernel answered it after all: what the device
 * did behind its requester's back. Also the unbind that undoes an abandoned bind the kernel did
 * (undo), when it returns. */
typedef struct KernelLate {
        KernelOp op;
        bool undo;              /* the undo of an abandoned bind (op KERNEL_OP_UNBIND) */
        const char *lane;       /* the device */
        uint32_t vdevice_id, scope_number;
        int result;             /* the kernel's: 0 or -errno */
        size_t response_len;    /* a request's, when it succeeded */
        size_t request_unconsumed; /* a request's, when it succeeded offered no response buffer */
        uint64_t latency_usec;  /* from the call's submission (an undo: its bind's) to the kernel's answer */
        const void *tag;        /* what kernel_call_abandon_tagged() was given (NULL, 0: nothing) */
        size_t tag_size;
} KernelLate;

/* Runs on the loop's thread; late and its tag are valid during the call only. */
typedef void (*KernelLateCallback)(const KernelLate *late, void *userdata);
void kernel_lanes_set_late_callback(KernelLanes *l, KernelLateCallback cb, void *userdata);

/* Queues a call on the lane named @lane (the device's PCI address), after the calls queued
 * there before it. Returns 0 and the call, or -EBADF (iommufd), -EINVAL (op, or a write
 * without a path), -ENOMEM, -EAGAIN (no thread could be started). A write's result is 0 when
 * all of request was written, -EIO when less was, else the open's or write's -errno. */
int kernel_lanes_submit(KernelLanes *l, const char *lane, const KernelCallArgs *args, KernelCallDone cb,
                        void *userdata, KernelCall **ret);

/* The callback never comes, and the call frees itself: at once if it has not started yet (the
 * kernel never sees it), else when the kernel returns. A bind that has started is undone if it
 * succeeds (see above). Call from the loop's thread only. */
void kernel_call_abandon(KernelCall *c);
/* The same, and should the kernel be running the call, its late answer is handed to the late
 * callback with a copy of tag (tag_size bytes, at most KERNEL_LATE_TAG_MAX; an abandoned bind's
 * undo gets one too). Only a call abandoned in the kernel copies anything. Returns whether a
 * late answer comes (the kernel has, or had, the call), false for NULL. */
#define KERNEL_LATE_TAG_MAX 256U
bool kernel_call_abandon_tagged(KernelCall *c, const void *tag, size_t tag_size);
/* Drops c if its lane has not started it yet (the kernel never sees it): true then, c freed, its
 * callback never run. False leaves c as it was: the kernel has (or had) it. Loop's thread only. */
bool kernel_call_cancel_queued(KernelCall *c);

/* In the callback: the call is not freed when the callback returns, but kept, answered, until
 * its owner has passed the answer on (kernel_call_delivered()) or gives up on it first
 * (kernel_call_abandon_tagged(), which then hands the answer to the late callback at once, with
 * tag as given, and returns true): the lanes report what the kernel did however late the
 * requester goes. Abandoning a kept bind undoes nothing: its owner had the result. */
void kernel_call_keep(KernelCall *c);
/* A kept call whose answer reached its requester: freed, nothing is late. NULL: nothing. */
void kernel_call_delivered(KernelCall *c);

/* In the callback: the response buffer (response_size bytes, of which the kernel wrote
 * *ret_len), now the caller's to free. */
void *kernel_call_take_response(KernelCall *c, size_t *ret_len);
/* In the callback: a request's bytes the TSM did not consume, offered no response buffer (the
 * kernel's residue then); 0 for any other call. */
size_t kernel_call_get_request_unconsumed(const KernelCall *c);

/* Threads running or waiting for work (for tests and counters). */
unsigned kernel_lanes_n_threads(KernelLanes *l);
