/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The channel read a message at a time, into the test's own buffer: a datagram without fds may
 * carry several (tsm-priv.h), which a test taking a datagram for a message would miss. Runs
 * in: tests, benchmarks, fuzzers.
 */
#pragma once

#include <string.h>

#include "tsm-priv.h"

/* tsm_priv_reader_receive(), the message copied into buf (TSM_PRIV_DATAGRAM_MAX bytes). */
static inline ssize_t priv_reader_receive(TsmPrivReader *r, int fd, void *buf, int *ret_fds, size_t max_fds,
                                          size_t *ret_n_fds) {
        const uint8_t *msg;
        ssize_t n = tsm_priv_reader_receive(r, fd, &msg, ret_fds, max_fds, ret_n_fds);

        if (n > 0)
                memcpy(buf, msg, (size_t) n);
        return n;
}
