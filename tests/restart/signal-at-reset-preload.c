/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Preloaded into tsmd by test-restart (LD_PRELOAD): the signal numbered $TSMD_TEST_SIGNAL_AT_RESET
 * arrives the moment the monitor (the process running as root) puts that signal's default action
 * back, as libevent does when tsmd frees the event that handled it: the worst moment for it to
 * come. Once, with a line on stderr saying so. Runs in: tsmd's processes, under test only.
 */

#include <dlfcn.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* libc's, interposed: exported in spite of -fvisibility=hidden; the real one is the next
 * definition (RTLD_NEXT). */
__attribute__((visibility("default"))) int sigaction(int sig, const struct sigaction *act, struct sigaction *old);

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
        int (*real)(int, const struct sigaction *, struct sigaction *) = dlsym(RTLD_NEXT, "sigaction");
        const char *want = getenv("TSMD_TEST_SIGNAL_AT_RESET");
        static bool raised = false;
        int r;

        if (!real)
                abort();
        r = real(sig, act, old);
        if (r >= 0 && !raised && want && atoi(want) == sig && act && !(act->sa_flags & SA_SIGINFO) &&
            act->sa_handler == SIG_DFL && geteuid() == 0) {
                raised = true;
                fprintf(stderr, "signal-at-reset-preload: raising %s as its default action is put back\n",
                        sigabbrev_np(sig));
                (void) raise(sig);
        }
        return r;
}
