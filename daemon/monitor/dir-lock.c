/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Runs in: monitor. */

#include <fcntl.h>
#include <sys/file.h>
#include <sys/fsuid.h>

#include "dir-lock.h"
#include "macro.h"

int dir_lock_as(const char *dir, uid_t uid, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        uid_t old;
        int r = 0;

        /* setfsuid() says nothing of a failure but by not changing: asked twice, it answers the
         * uid in force. Back at 0, the capabilities a non-zero fsuid took out of the effective
         * set come back from the permitted one. */
        old = (uid_t) setfsuid(uid);
        if ((uid_t) setfsuid(uid) != uid) {
                (void) setfsuid(old);
                return -EPERM;
        }
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                r = negative_errno();
        (void) setfsuid(old);
        if ((uid_t) setfsuid(old) != old)
                return -EPERM;
        if (r < 0)
                return r;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EBUSY : negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}
