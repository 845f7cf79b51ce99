/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A guest request's payload for priv_call_guest_request() from bytes the test has (tsmd decodes
 * its base64 into the payload instead). Aborts if out of memory. Runs in: tests, fuzzers. */
#pragma once

#include <stdlib.h>
#include <string.h>

#include "priv-call.h"

static inline PrivPayload *priv_payload_of(const void *data, size_t len) {
        PrivPayload *p = priv_payload_new(len);

        if (!p)
                abort();
        if (len > 0)
                memcpy(priv_payload_data(p), data, len);
        return p;
}
