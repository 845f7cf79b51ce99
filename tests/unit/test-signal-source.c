/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The signal source (proto/signal-source.h): a signal read from a signalfd in the loop, with the
 * sender the kernel names (a child's kill(), our own raise()), none for the kernel's own; read
 * even where it was ignored when the source was made (nohup(1)), and still blocked once the source
 * is freed, so that one coming then is harmless. Runs in: tests.
 */

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "signal-source.h"

typedef struct Got {
        unsigned n;
        int sig;
        SignalSender sender;
        struct event_base *base;
} Got;

static void on_signal(int sig, const SignalSender *sender, void *userdata) {
        Got *g = userdata;

        g->n++;
        g->sig = sig;
        g->sender = *sender;
        (void) event_base_loopbreak(g->base);
}

/* Runs the loop until the callback ran, or a second passed. */
static void run(Got *g) {
        struct timeval tv = { .tv_sec = 1 };

        ASSERT_OK(event_base_loopexit(g->base, &tv));
        ASSERT_OK(event_base_dispatch(g->base));
}

static pid_t kill_from_child(pid_t target, int sig) {
        int status;
        pid_t pid;

        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0)
                _exit(kill(target, sig) < 0 ? 1 : 0);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        return pid;
}

TEST(sender_is_the_process_that_sent_it) {
        Got g = { .base = event_base_new() };
        SignalSource *s = NULL;
        sigset_t blocked;
        pid_t child;

        ASSERT_NOT_NULL(g.base);
        /* Ignored as we start, as nohup(1) leaves SIGHUP: read all the same. */
        ASSERT_TRUE(signal(SIGUSR1, SIG_IGN) != SIG_ERR);
        ASSERT_OK(signal_source_new(g.base, SIGUSR1, on_signal, &g, &s));

        /* Another process's kill(): its pid (it exited since: the pid is a hint) and real uid. */
        child = kill_from_child(getpid(), SIGUSR1);
        run(&g);
        ASSERT_EQ(g.n, 1u);
        ASSERT_EQ(g.sig, SIGUSR1);
        ASSERT_EQ(g.sender.pid, child);
        ASSERT_EQ(g.sender.uid, getuid());

        /* Our own (tgkill()). */
        ASSERT_OK(raise(SIGUSR1));
        run(&g);
        ASSERT_EQ(g.n, 2u);
        ASSERT_EQ(g.sender.pid, getpid());
        ASSERT_EQ(g.sender.uid, getuid());

        /* A forged sigqueue (rt_sigqueueinfo(2) writes si_pid and si_uid as its caller says:
         * init's and root's here): no sender. */
        {
                siginfo_t si = { .si_signo = SIGUSR1, .si_code = SI_QUEUE };

                si.si_pid = 1;
                si.si_uid = 0;
                ASSERT_OK(syscall(SYS_rt_sigqueueinfo, getpid(), SIGUSR1, &si));
        }
        run(&g);
        ASSERT_EQ(g.n, 3u);
        ASSERT_EQ(g.sender.pid, 0);
        ASSERT_EQ(g.sender.uid, (uid_t) -1);

        /* Freed: still blocked, so one that comes now waits (and is not fatal). */
        s = signal_source_free(s);
        ASSERT_OK(raise(SIGUSR1));
        ASSERT_OK(sigpending(&blocked));
        ASSERT_TRUE(sigismember(&blocked, SIGUSR1));
        event_base_free(g.base);
}

/* Only a process's kill() or tgkill() has a sender; the kernel's own (a terminal's
 * hangup, SI_KERNEL) leaves si_pid and si_uid zero, which must not read as root's. */
TEST(sender_from_siginfo) {
        SignalSender s;

        s = signal_sender_from_siginfo(SI_USER, 42, 1000);
        ASSERT_EQ(s.pid, 42);
        ASSERT_EQ(s.uid, 1000u);
        /* rt_sigqueueinfo(2) lets its caller write both: not taken. */
        s = signal_sender_from_siginfo(SI_QUEUE, 1, 0);
        ASSERT_EQ(s.pid, 0);
        ASSERT_EQ(s.uid, (uid_t) -1);
        s = signal_sender_from_siginfo(SI_TKILL, 42, 0);
        ASSERT_EQ(s.pid, 42);
        /* A sender in a PID namespace we cannot see: no pid, its uid all the same. */
        s = signal_sender_from_siginfo(SI_USER, 0, 1000);
        ASSERT_EQ(s.pid, 0);
        ASSERT_EQ(s.uid, 1000u);
        s = signal_sender_from_siginfo(SI_KERNEL, 0, 0);
        ASSERT_EQ(s.pid, 0);
        ASSERT_EQ(s.uid, (uid_t) -1);
        s = signal_sender_from_siginfo(SI_TIMER, 7, 7);
        ASSERT_EQ(s.pid, 0);
        ASSERT_EQ(s.uid, (uid_t) -1);
}

typedef struct Storm {
        unsigned n, n_at_timer;
        bool timer_fired;
        struct event_base *base;
} Storm;

/* Each signal read brings the next, as a sender faster than the callback does. */
static void on_storm_signal(int sig, const SignalSender *sender, void *userdata) {
        Storm *st = userdata;

        if (++st->n < 1000)
                ASSERT_OK(raise(sig));
        else
                (void) event_base_loopbreak(st->base);
}

static void on_storm_timer(evutil_socket_t fd, short what, void *userdata) {
        Storm *st = userdata;

        st->timer_fired = true;
        st->n_at_timer = st->n;
        (void) event_base_loopbreak(st->base);
}

/* Signals that come faster than the callback runs leave the loop its other events: one is read a
 * wake-up. Read on until none was pending, the monitor's loop stayed in a SIGHUP storm's reloads,
 * its worker's restart timer and its watchdog starved (integration-daemon's
 * sighup_while_the_worker_starts, under ASan on a loaded machine). */
TEST(a_signal_storm_does_not_starve_the_loop) {
        Storm st = { .base = event_base_new() };
        struct timeval zero = {};
        struct event *timer;
        SignalSource *s = NULL;

        ASSERT_NOT_NULL(st.base);
        ASSERT_OK(signal_source_new(st.base, SIGUSR2, on_storm_signal, &st, &s));
        timer = evtimer_new(st.base, on_storm_timer, &st);
        ASSERT_NOT_NULL(timer);
        ASSERT_OK(raise(SIGUSR2));
        ASSERT_OK(evtimer_add(timer, &zero));
        ASSERT_OK(event_base_dispatch(st.base));
        ASSERT_TRUE(st.timer_fired);
        ASSERT_LE(st.n_at_timer, 9u);
        event_free(timer);
        s = signal_source_free(s);
        {
                /* The one the storm left pending, still blocked: gone with it. */
                siginfo_t si;
                sigset_t mask;

                ASSERT_OK(sigemptyset(&mask));
                ASSERT_OK(sigaddset(&mask, SIGUSR2));
                (void) sigtimedwait(&mask, &si, &(struct timespec) {});
        }
        event_base_free(st.base);
}

TEST(bad_arguments) {
        struct event_base *base = event_base_new();
        SignalSource *s = NULL;

        ASSERT_NOT_NULL(base);
        ASSERT_ERRNO(signal_source_new(NULL, SIGUSR2, on_signal, NULL, &s), EINVAL);
        ASSERT_ERRNO(signal_source_new(base, 0, on_signal, NULL, &s), EINVAL);
        ASSERT_ERRNO(signal_source_new(base, NSIG, on_signal, NULL, &s), EINVAL);
        ASSERT_ERRNO(signal_source_new(base, SIGUSR2, NULL, NULL, &s), EINVAL);
        ASSERT_NULL(s);
        ASSERT_NULL(signal_source_free(NULL));
        event_base_free(base);
}

TEST_MAIN();
