/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Datagrams of the monitor/worker channel as the fuzzers send them (fuzz-priv to the monitor,
 * fuzz-priv-worker to the worker): the input's bytes with the header made to fit, so that what
 * is fuzzed is the message behind the framing, and fds attached as SCM_RIGHTS.
 */
#pragma once

#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "tsm-priv.h"

/* Makes the header fit the type and the datagram's length. */
static inline void priv_datagram_frame(uint8_t *dgram, size_t len) {
        struct tsm_priv_hdr h;
        const TsmPrivTypeDesc *d;

        if (len < sizeof(h))
                return;
        memcpy(&h, dgram, sizeof(h));
        d = tsm_priv_type_desc(h.type);
        if (!d || len < d->size)
                return;
        h.size = d->size;
        h.payload_len = (uint32_t) (len - d->size);
        h.flags = 0;
        h.__reserved = 0;
        memcpy(dgram, &h, sizeof(h));
}

/* Sends it with n_fds (at most 2) of fds, never blocking: a full buffer drops it, as the
 * fuzzers' peers read after each message anyway. */
static inline void priv_datagram_send(int sock, const void *dgram, size_t len, const int *fds, size_t n_fds) {
        union {
                struct cmsghdr cmsg;
                uint8_t b[CMSG_SPACE(2 * sizeof(int))];
        } control = {};
        struct iovec iov = { .iov_base = (void *) dgram, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

        if (n_fds > 0) {
                mh.msg_control = &control;
                mh.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
                control.cmsg.cmsg_level = SOL_SOCKET;
                control.cmsg.cmsg_type = SCM_RIGHTS;
                control.cmsg.cmsg_len = CMSG_LEN(n_fds * sizeof(int));
                memcpy(CMSG_DATA(&control.cmsg), fds, n_fds * sizeof(int));
        }
        (void) sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}
