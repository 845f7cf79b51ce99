/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reads the monitor/worker channel a message at a time, as its receivers do: a datagram
 * without fds may carry several (tsm-priv.h), which a test taking a datagram for a message
 * would miss. Runs in: tests, benchmarks, fuzzers.
 */
#pragma once

#include <stdbool.h>
#include <string.h>

#include "tsm-priv.h"

typedef struct PrivReader {
        _Alignas(TSM_PRIV_PACK_ALIGN) uint8_t datagram[TSM_PRIV_DATAGRAM_MAX];
        TsmPrivSpan spans[TSM_PRIV_PACK_MAX];
        size_t n, next; /* messages of the datagram, and the next one to hand out */
} PrivReader;

/* tsm_priv_receive() for the next message, copied into buf (TSM_PRIV_DATAGRAM_MAX bytes):
 * its length, 0 on end of file, -EAGAIN or the receive's errors. */
static inline ssize_t priv_reader_receive(PrivReader *r, int fd, void *buf, int *ret_fds, size_t max_fds,
                                          size_t *ret_n_fds) {
        ssize_t n;

        if (r->next == r->n) {
                r->n = r->next = 0;
                n = tsm_priv_receive(fd, r->datagram, ret_fds, max_fds, ret_n_fds);
                if (n <= 0 || *ret_n_fds > 0) {
                        if (n > 0)
                                memcpy(buf, r->datagram, (size_t) n);
                        return n;
                }
                r->n = tsm_priv_unpack(r->datagram, (size_t) n, r->spans);
        }

        TsmPrivSpan s = r->spans[r->next++];
        memcpy(buf, r->datagram + s.offset, s.len);
        *ret_n_fds = 0;
        return (ssize_t) s.len;
}

/* Whether a message of the last datagram is still to be handed out (the socket may be empty). */
static inline bool priv_reader_has_message(const PrivReader *r) {
        return r->next < r->n;
}
