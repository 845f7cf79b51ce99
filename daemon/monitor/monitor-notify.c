/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Notifications the monitor may lose, sent without blocking (monitor-notify.h). Runs in: monitor. */

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <systemd/sd-daemon.h>

#include "macro.h"
#include "monitor-notify.h"

int monitor_notify_droppable(const char *state) {
        union {
                struct sockaddr sa;
                struct sockaddr_un un;
        } a = { .un.sun_family = AF_UNIX };
        const char *e = getenv("NOTIFY_SOCKET");
        _cleanup_close_ int fd = -EBADF;
        socklen_t len;
        size_t l;

        if (!e)
                return 0;
        l = strlen(e);
        /* A path with its NUL, or an abstract name ('@' for the leading NUL) without one, as
         * libsystemd takes them; anything else (vsock, too long) is libsystemd's. */
        if (l < 2 || (e[0] != '/' && e[0] != '@') || l + (e[0] == '/') > sizeof(a.un.sun_path))
                return sd_notify(false, state);
        memcpy(a.un.sun_path, e, l);
        if (e[0] == '@')
                a.un.sun_path[0] = 0;
        len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + l + (e[0] == '/'));

        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        if (sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT, &a.sa, len) < 0)
                return negative_errno();
        return 1;
}
