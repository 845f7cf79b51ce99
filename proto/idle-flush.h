/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A flush that waits for the loop to be idle, within a bound. Sends that can go in one batch
 * (guest requests to the monitor, the monitor's replies, a connection's Varlink replies) wait
 * until the loop has nothing else to run, so a busy round's worth leaves in one system call and
 * wakes the other side once. A
 * loop that never runs idle (a client keeping it busy on purpose) would hold them forever, so a
 * timer flushes them anyway after IDLE_FLUSH_MAX_DELAY_USEC.
 *
 * The loop needs EVENT_PRIORITIES priorities (event_base_new_prioritized()): libevent runs an
 * event of the lowest one only when no other event is active. Runs in: monitor and worker.
 */
#pragma once

#include <event2/event.h>
#include <stdint.h>

#include "macro.h"

/* Every event gets the middle priority (libevent gives new events npriorities / 2); the
 * idle flush runs at the lowest. */
#define EVENT_PRIORITIES 3
#define IDLE_FLUSH_MAX_DELAY_USEC 1000u

struct event_base *event_base_new_prioritized(void);

typedef struct IdleFlush IdleFlush;
typedef void (*IdleFlushFunc)(void *userdata);

int idle_flush_new(struct event_base *base, IdleFlushFunc func, void *userdata, IdleFlush **ret);
IdleFlush *idle_flush_free(IdleFlush *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(IdleFlush *, idle_flush_free);

/* Runs func once, when the loop is idle or IDLE_FLUSH_MAX_DELAY_USEC from the first of
 * several schedules, whichever comes first. */
void idle_flush_schedule(IdleFlush *f);
