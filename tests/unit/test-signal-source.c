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
