/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The monitor's notifications to the service manager that may be lost: WATCHDOG=1 and STATUS=,
 * each replaced by the next. libsystemd's sd_notify() blocks while the service manager's socket
 * has its queue full (net.unix.max_dgram_qlen datagrams, shared by every service), and with it
 * the monitor's loop and every VM's request; these are sent without blocking, and dropped then.
 * READY=1, RELOADING=1, STOPPING=1 and the fd store's go through sd_notify() still, blocking:
 * they must arrive, in order, and the fd store's before the monitor goes on (fdstore.h: a crash
 * right after one must find the fd stored); they are few, and the service manager reads them
 * as its main job.
 * Runs in: monitor.
 */
#pragma once

/* Sends state to $NOTIFY_SOCKET without blocking. Returns 1 if sent, 0 without $NOTIFY_SOCKET,
 * -EAGAIN if the socket's queue is full (state dropped), or another -errno. An address that
 * is no AF_UNIX path or abstract name goes to sd_notify(). */
int monitor_notify_droppable(const char *state);
