/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Runs in: monitor. */

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>

#include "dir-lock.h"
#include "macro.h"

/* A change of the file system uid clears the parent-death signal (prctl(2)): whoever started us
 * with one (a test's fixture, a supervisor) would lose it, and with it us at its end. */
static void pdeathsig_restore(int sig, pid_t parent) {
        if (sig <= 0)
                return;
        (void) prctl(PR_SET_PDEATHSIG, sig);
        /* It died while the signal was off: as if it had been on. */
        if (getppid() != parent)
                (void) raise(sig);
}

int dir_lock_as(const char *dir, uid_t uid, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        pid_t parent = getppid();
        int r = 0, pdeathsig = 0;
        uid_t old;

        (void) prctl(PR_GET_PDEATHSIG, &pdeathsig);
        /* setfsuid() says nothing of a failure but by not changing: asked twice, it answers the
         * uid in force. Back at 0, the capabilities a non-zero fsuid took out of the effective
         * set come back from the permitted one. */
        old = (uid_t) setfsuid(uid);
        if ((uid_t) setfsuid(uid) != uid) {
                (void) setfsuid(old);
                pdeathsig_restore(pdeathsig, parent);
                return -EPERM;
        }
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                r = negative_errno();
        (void) setfsuid(old);
        pdeathsig_restore(pdeathsig, parent);
        if ((uid_t) setfsuid(old) != old)
                return -EPERM;
        if (r < 0)
                return r;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EBUSY : negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}
