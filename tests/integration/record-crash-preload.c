/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Preloaded into tsmd by test-integration-audit (LD_PRELOAD): the worker dies (SIGKILL, as an
 * OOM kill would) as it is about to write an audit record holding the text
 * $TSMD_TEST_CRASH_AT_RECORD, before any of it reaches the file: after the monitor answered the
 * call, before its record is durable. The monitor writes no audit records, so only the worker
 * meets it. Runs in: tsmd's processes, under test only.
 */

#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* libc's, interposed: exported in spite of -fvisibility=hidden; the real one is the next
 * definition (RTLD_NEXT). */
__attribute__((visibility("default"))) ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset);

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
        static ssize_t (*real)(int, const struct iovec *, int, off_t);
        const char *marker = getenv("TSMD_TEST_CRASH_AT_RECORD");

        if (!real)
                real = (ssize_t (*)(int, const struct iovec *, int, off_t)) dlsym(RTLD_NEXT, "pwritev");
        if (!real)
                abort();
        if (marker && *marker)
                for (int i = 0; i < iovcnt; i++)
                        if (memmem(iov[i].iov_base, iov[i].iov_len, marker, strlen(marker))) {
                                (void) kill(getpid(), SIGKILL);
                                pause();
                        }
        return real(fd, iov, iovcnt, offset);
}
