/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A signal read from a signalfd in a libevent loop, with its sender (signal-source.h). Runs in:
 * monitor and worker. */

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "macro.h"
#include "signal-source.h"

struct SignalSource {
        int fd;
        int sig;
        struct event *event;
        SignalSourceCallback cb;
        void *userdata;
};

SignalSender signal_sender_from_siginfo(int code, pid_t pid, uid_t uid) {
        /* SECURITY: only these are a process's kill() or tgkill(), whose si_pid and si_uid the
         * kernel fills in. The kernel's own (SI_KERNEL) leave them zero, which must not read as
         * "root's pid 0"; a sigqueue()'s (SI_QUEUE, rt_sigqueueinfo(2), pidfd_send_signal(2) with
         * a siginfo) carry whatever its sender wrote there, init's pid and root's uid included. */
        if (code == SI_USER || code == SI_TKILL)
                return (SignalSender) { .pid = pid > 0 ? pid : 0, .uid = uid };
        return (SignalSender) { .pid = 0, .uid = (uid_t) -1 };
}

static void on_readable(evutil_socket_t fd, short what, void *userdata) {
        SignalSource *s = userdata;
        struct signalfd_siginfo si;
        ssize_t n;

        /* One a wake-up (a standard signal is pending once), and back to the loop: reading on
         * until none is pending would never return while they come faster than cb runs (a
         * SIGHUP storm, each a reload), starving the timers, the watchdog and the worker. The fd
         * stays readable for the next. */
        n = read(s->fd, &si, sizeof(si));
        if (n == (ssize_t) sizeof(si) && (int) si.ssi_signo == s->sig) {
                SignalSender sender = signal_sender_from_siginfo(si.ssi_code, (pid_t) si.ssi_pid, (uid_t) si.ssi_uid);

                s->cb(s->sig, &sender, s->userdata);
        }
}

int signal_source_new(struct event_base *base, int sig, SignalSourceCallback cb, void *userdata, SignalSource **ret) {
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        SignalSource *s;
        sigset_t mask;

        if (!base || sig <= 0 || sig >= NSIG || !cb || !ret)
                return -EINVAL;

        /* Blocked first: with its default action back, one that comes now is pending, not fatal. */
        if (sigemptyset(&mask) < 0 || sigaddset(&mask, sig) < 0 || sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ||
            sigaction(sig, &dfl, NULL) < 0)
                return negative_errno();

        s = new0(SignalSource, 1);
        if (!s)
                return -ENOMEM;
        *s = (SignalSource) { .sig = sig, .cb = cb, .userdata = userdata };
        s->fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (s->fd < 0) {
                int r = negative_errno();

                free(s);
                return r;
        }
        s->event = event_new(base, s->fd, EV_READ | EV_PERSIST, on_readable, s);
        if (!s->event || event_add(s->event, NULL) < 0) {
                signal_source_free(s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

SignalSource *signal_source_free(SignalSource *s) {
        if (!s)
                return NULL;
        if (s->event)
                event_free(s->event);
        safe_close(s->fd);
        free(s);
        return NULL;
}
