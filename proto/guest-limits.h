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
 * last (tests/unit/test-reply-bound.c checks all three, and the values below, against tsmd's
 * replies). */
#define GUEST_DESCRIBE_CONTEXT_BYTES 64U
#define GUEST_DESCRIBE_VDEVICE_BYTES 128U
#define GUEST_DESCRIBE_ENVELOPE_BYTES 4096U
#define GUEST_DESCRIBE_REPLY_MAX                                                                   \
        ((size_t) GUEST_CONTEXTS_PER_CLIENT_MAX * GUEST_DESCRIBE_CONTEXT_BYTES +                   \
         (size_t) GUEST_VDEVICES_PER_CLIENT_MAX * GUEST_DESCRIBE_VDEVICE_BYTES + GUEST_DESCRIBE_ENVELOPE_BYTES)

/* And its JSON values (containers and scalars, as Varlink counts them): each context's entry is 3
 * (its object, handle and vDevice array), each vDevice's 6 (its object and five fields), the
 * envelope 4 (the message, its parameters, nonce and context array); one more for a context and
 * two for a vDevice leave a newer tsmd room, as the bytes above do. SECURITY: the values, not the
 * bytes, are what a reply costs the VMM in json-c objects: an empty object, 3 bytes of text,
 * takes some 800 bytes; Varlink's count for any reply (TSM_REPLY_JSON_VALUES_MAX, 1 Mi) would let
 * a DescribeConnection reply cost 800 MiB, where the largest tsmd sends costs some 75: these
 * bound it to some 400 MiB, every value an empty object. */
#define GUEST_DESCRIBE_CONTEXT_VALUES 4U
#define GUEST_DESCRIBE_VDEVICE_VALUES 8U
#define GUEST_DESCRIBE_ENVELOPE_VALUES 16U
#define GUEST_DESCRIBE_REPLY_VALUES_MAX                                                            \
        (GUEST_CONTEXTS_PER_CLIENT_MAX * GUEST_DESCRIBE_CONTEXT_VALUES +                           \
         GUEST_VDEVICES_PER_CLIENT_MAX * GUEST_DESCRIBE_VDEVICE_VALUES + GUEST_DESCRIBE_ENVELOPE_VALUES)
