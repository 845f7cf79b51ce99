/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A signal read with who sent it, in a libevent loop. libevent's evsignal says only which signal
 * came; this reads the kernel's siginfo from a signalfd: the sending process's pid and real uid
 * (si_pid, si_uid), as the kernel saw them when the signal was sent. The signal is blocked from
 * signal_source_new() on, for good: blocked and read from the fd, never delivered, so it never
 * runs a handler, and one that comes while the process exits (after the source is freed) waits,
 * blocked, for the exit, which drops it. Every thread must have it blocked too: tsmd makes its
 * threads with all signals blocked. Runs in: monitor and worker.
 */
#pragma once

#include <event2/event.h>
#include <sys/types.h>

typedef struct SignalSource SignalSource;

/* Who sent a signal, as its siginfo says. A pid is a hint, not a proof: the sender may have
 * exited by the time it is read, and its pid been reused. */
typedef struct SignalSender {
        pid_t pid; /* 0: none known: the kernel sent it (SI_KERNEL, as for a terminal's hangup), a
                    * sigqueue() did (its sender writes si_pid itself), or a process in a PID
                    * namespace this one cannot see */
        uid_t uid; /* the sender's real uid; (uid_t) -1 where the kernel or a sigqueue() sent it */
} SignalSender;

typedef void (*SignalSourceCallback)(int sig, const SignalSender *sender, void *userdata);

/* Blocks sig, puts back its default action (an ignored signal inherited from whoever started us,
 * as nohup(1) leaves SIGHUP, is dropped by the kernel before it can be read), and calls cb from
 * base's loop once for each time it came (a standard signal that comes again before it is read
 * is one, with the first sender's siginfo). Returns 0 or -errno. */
int signal_source_new(struct event_base *base, int sig, SignalSourceCallback cb, void *userdata, SignalSource **ret);

/* Stops reading; the signal stays blocked (see above). NULL-safe; returns NULL. */
SignalSource *signal_source_free(SignalSource *s);

/* The sender a siginfo names (code: si_code, pid: si_pid, uid: si_uid): a process's kill() or
 * tgkill() only, the kernel's word; a sigqueue()'s are the sender's own, and it has none, as
 * the kernel's own signals. */
SignalSender signal_sender_from_siginfo(int code, pid_t pid, uid_t uid);
