/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Preloaded into tsmd by test-policy (LD_PRELOAD): a client's supplementary groups cannot be read
 * (SO_PEERGROUPS fails with ENOMEM, as the read's allocation would) for a client of the uid
 * $TSMD_TEST_PEERGROUPS_FAIL_UID; every other getsockopt() is libc's. Runs in: tsmd's processes,
 * under test only.
 */

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

/* libc's, interposed: exported in spite of -fvisibility=hidden; the real one is the next
 * definition (RTLD_NEXT). */
__attribute__((visibility("default"))) int getsockopt(int fd, int level, int name, void *value, socklen_t *len);

int getsockopt(int fd, int level, int name, void *value, socklen_t *len) {
        int (*real)(int, int, int, void *, socklen_t *) = dlsym(RTLD_NEXT, "getsockopt");
        const char *fail_uid = getenv("TSMD_TEST_PEERGROUPS_FAIL_UID");
        struct ucred peer;
        socklen_t peer_len = sizeof(peer);

        if (!real)
                abort();
        if (level == SOL_SOCKET && name == SO_PEERGROUPS && fail_uid &&
            real(fd, SOL_SOCKET, SO_PEERCRED, &peer, &peer_len) >= 0 && peer.uid == (uid_t) atol(fail_uid)) {
                errno = ENOMEM;
                return -1;
        }
        return real(fd, level, name, value, len);
}
