/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Preloaded into tsmd by test-policy (LD_PRELOAD): the kernel of Debian 12 and of every Linux
 * before 6.5, which does not know SO_PEERPIDFD (getsockopt() fails with ENOPROTOOPT); every other
 * getsockopt() is libc's. Runs in: tsmd's processes, under test only.
 */

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

/* FIXME: remove once the build headers are Linux >= 6.5 (as peer-identity.c). */
#ifndef SO_PEERPIDFD
#if defined(__sparc__)
#define SO_PEERPIDFD 0x0056
#elif defined(__hppa__)
#define SO_PEERPIDFD 0x404B
#else
#define SO_PEERPIDFD 77
#endif
#endif

/* libc's, interposed: exported in spite of -fvisibility=hidden; the real one is the next
 * definition (RTLD_NEXT). */
__attribute__((visibility("default"))) int getsockopt(int fd, int level, int name, void *value, socklen_t *len);

int getsockopt(int fd, int level, int name, void *value, socklen_t *len) {
        int (*real)(int, int, int, void *, socklen_t *) = dlsym(RTLD_NEXT, "getsockopt");

        if (!real)
                abort();
        if (level == SOL_SOCKET && name == SO_PEERPIDFD) {
                errno = ENOPROTOOPT;
                return -1;
        }
        return real(fd, level, name, value, len);
}
