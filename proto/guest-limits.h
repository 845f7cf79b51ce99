/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What one io.tsmd.Guest connection may hold at most, whatever tsmd.conf says (the ranges of
 * [Guest] MaxContextsPerClient= and MaxVDevicesPerClient=), and so the largest
 * DescribeConnection reply tsmd can send: libtsm takes replies that large for that call only.
 * Runs in: worker, clients.
 */
#pragma once

#define GUEST_CONTEXTS_PER_CLIENT_MAX 4096U
#define GUEST_VDEVICES_PER_CLIENT_MAX 65536U

/* A DescribeConnection reply's bytes: each context's entry and each vDevice's at their longest
 * (a handle of 19 digits, a vDevice id of 10, the longest PCI address, "false" for each flag)
 * fit these, with room for a newer tsmd's fields; the envelope, the nonce included, fits the
 * last (tests/unit/test-reply-bound.c checks all three against tsmd's replies). */
#define GUEST_DESCRIBE_CONTEXT_BYTES 64U
#define GUEST_DESCRIBE_VDEVICE_BYTES 128U
#define GUEST_DESCRIBE_ENVELOPE_BYTES 4096U
#define GUEST_DESCRIBE_REPLY_MAX                                                                   \
        ((size_t) GUEST_CONTEXTS_PER_CLIENT_MAX * GUEST_DESCRIBE_CONTEXT_BYTES +                   \
         (size_t) GUEST_VDEVICES_PER_CLIENT_MAX * GUEST_DESCRIBE_VDEVICE_BYTES + GUEST_DESCRIBE_ENVELOPE_BYTES)
