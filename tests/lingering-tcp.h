/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A TCP socket whose close() lingers: connected over loopback to a listener that never accepts
 * nor reads, its send queue full of data the peer has no room for, with SO_LINGER { 1, secs }:
 * the close of its last reference waits (sk_stream_wait_close()) until the data is gone or secs
 * have passed, uninterruptibly for the closer's purposes. What a hostile client passes tsmd to
 * hold whoever closes it. The listener must stay open while it lingers (a listener closed
 * resets the connection): the caller closes it after the socket.
 * Runs in: tests.
 */
#pragma once

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

/* The socket (nonblocking, close-on-exec) in *ret_sock and its listener in *ret_listener: 0, or
 * -errno (no loopback here: a SKIP). */
static inline int lingering_tcp(int secs, int *ret_sock, int *ret_listener) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t alen = sizeof(a);
        struct linger lg = { .l_onoff = 1, .l_linger = secs };
        static char buf[64 * 1024];
        int small = 2048, l, s, r = 0;

        l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (l < 0)
                return -errno;
        s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s < 0) {
                r = -errno;
                close(l);
                return r;
        }
        /* Small buffers both sides: the send queue is full after a few hundred KiB. */
        if (setsockopt(l, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) < 0 ||
            bind(l, (struct sockaddr *) &a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
            getsockname(l, (struct sockaddr *) &a, &alen) < 0 ||
            setsockopt(s, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) < 0 ||
            (connect(s, (struct sockaddr *) &a, sizeof(a)) < 0 && errno != EINPROGRESS) ||
            poll(&(struct pollfd){ .fd = s, .events = POLLOUT }, 1, 5000) != 1)
                r = errno > 0 ? -errno : -EIO;
        /* Until the peer's window is shut and the queue full: sends that find no room, a while. */
        for (unsigned full = 0; r == 0 && full < 10;) {
                if (send(s, buf, sizeof(buf), MSG_NOSIGNAL) > 0)
                        full = 0;
                else if (errno == EAGAIN) {
                        full++;
                        (void) poll(NULL, 0, 20);
                } else
                        r = -errno;
        }
        if (r == 0 && setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
                r = -errno;
        if (r < 0) {
                close(s);
                close(l);
                return r;
        }
        *ret_sock = s;
        *ret_listener = l;
        return 0;
}
