/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Preloaded into tsmd by test-restart (LD_PRELOAD): a crash between two of tsmd's notifications
 * to the service manager, where the test wants it. Notifications pass on to libsystemd as they
 * were; each that changes the fd store (FDSTORE=1, FDSTOREREMOVE=1) counts down the number in
 * the file $TSMD_TEST_CRASH_FILE, if it holds one, and the one that brings it to 0 is the last
 * tsmd sends: the file is emptied (the next tsmd runs on) and tsmd kills itself with SIGKILL,
 * as a crash there would. Runs in: tsmd's processes, under test only.
 */

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* libsystemd's, interposed: exported in spite of -fvisibility=hidden. This library does not
 * link libsystemd; the real ones are the next definitions (RTLD_NEXT). */
#define _interposed_ __attribute__((visibility("default")))
_interposed_ int sd_notify(int unset_environment, const char *state);
_interposed_ __attribute__((format(printf, 2, 3))) int sd_notifyf(int unset_environment, const char *format, ...);
_interposed_ int sd_pid_notify_with_fds(pid_t pid, int unset_environment, const char *state, const int *fds,
                                        unsigned n_fds);

/* Whether the notification state, now sent, is the last before the crash; counts it down. */
static bool crash_after(const char *state) {
        const char *path = getenv("TSMD_TEST_CRASH_FILE");
        char buf[32] = "";
        long left;
        ssize_t n;
        int fd;

        if (!path || !state || (!strstr(state, "FDSTORE=1") && !strstr(state, "FDSTOREREMOVE=1")))
                return false;
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return false;
        n = pread(fd, buf, sizeof(buf) - 1, 0);
        left = n > 0 ? strtol(buf, NULL, 10) : 0;
        if (left <= 0) {
                close(fd);
                return false;
        }
        left--;
        n = snprintf(buf, sizeof(buf), "%ld", left);
        if (ftruncate(fd, 0) < 0 || (left > 0 && pwrite(fd, buf, (size_t) n, 0) != n))
                left = 0; /* crash rather than run on uncounted */
        close(fd);
        return left == 0;
}

static void crash(void) {
        (void) kill(getpid(), SIGKILL);
        pause();
}

int sd_pid_notify_with_fds(pid_t pid, int unset_environment, const char *state, const int *fds, unsigned n_fds) {
        int (*real)(pid_t, int, const char *, const int *, unsigned) = dlsym(RTLD_NEXT, "sd_pid_notify_with_fds");
        int r;

        if (!real)
                abort();
        r = real(pid, unset_environment, state, fds, n_fds);
        if (crash_after(state))
                crash();
        return r;
}

int sd_notify(int unset_environment, const char *state) {
        int (*real)(int, const char *) = dlsym(RTLD_NEXT, "sd_notify");
        int r;

        if (!real)
                abort();
        r = real(unset_environment, state);
        if (crash_after(state))
                crash();
        return r;
}

int sd_notifyf(int unset_environment, const char *format, ...) {
        char *state = NULL;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&state, format, ap);
        va_end(ap);
        if (r < 0)
                return -12; /* -ENOMEM */
        r = sd_notify(unset_environment, state);
        free(state);
        return r;
}
