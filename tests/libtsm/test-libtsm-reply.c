/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libtsm's typed access to reply fields (client/libtsm/tsm-reply.c): the base64 response
 * against its maximum, at the edges and at SIZE_MAX. Links the static libtsm to reach the
 * internal functions. Runs in: tests.
 */

#include <stdint.h>
#include <stdlib.h>

#include "json-util.h"
#include "libtsm-internal.h"
#include "harness.h"

/* ltsm_reply_get_base64() of {"response": text} with max; the decoded length, or -errno. */
static ssize_t decode(const char *text, size_t max) {
        json_object *o = json_object_new_object();
        void *data = NULL;
        size_t len = 0;
        int r;

        ASSERT_NOT_NULL(o);
        ASSERT_OK(json_object_object_add(o, "response", json_object_new_string(text)));
        r = ltsm_reply_get_base64(o, "response", max, &data, &len);
        json_object_put(o);
        if (r < 0) {
                ASSERT_NULL(data);
                return r;
        }
        free(data);
        return (ssize_t) len;
}

/* "max + 2" wrapped for a max of SIZE_MAX - 1 or more: every response of 4 or more base64
 * characters was -ENOBUFS. Reachable through tsm_guest_request() on a 32-bit build, where
 * SIZE_MAX passes its INT64_MAX check; the arithmetic is the same at every width. */
TEST(base64_max_size_max) {
        static const size_t maxes[] = { SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 2, SIZE_MAX / 2 };

        for (size_t i = 0; i < ELEMENTSOF(maxes); i++) {
                ASSERT_EQ(decode("eA==", maxes[i]), 1);
                ASSERT_EQ(decode("eHl6", maxes[i]), 3);
                ASSERT_EQ(decode("AAECAwQFBgcICQoLDA0ODw==", maxes[i]), 16);
                ASSERT_EQ(decode("", maxes[i]), 0);
        }
}

/* The bound at the edges: exactly max fits, one more does not, padding counted right. */
TEST(base64_max_edges) {
        ASSERT_EQ(decode("eHl6", 3), 3);
        ASSERT_EQ(decode("eHl6", 2), -ENOBUFS);
        ASSERT_EQ(decode("eA==", 1), 1);
        ASSERT_EQ(decode("eA==", 0), -ENOBUFS);
        ASSERT_EQ(decode("eHk=", 2), 2);
        ASSERT_EQ(decode("eHk=", 1), -ENOBUFS);
        ASSERT_EQ(decode("", 0), 0);
        ASSERT_EQ(decode("AAECAwQFBgcICQoLDA0ODw==", 16), 16);
        ASSERT_EQ(decode("AAECAwQFBgcICQoLDA0ODw==", 15), -ENOBUFS);
        /* Not base64 is a reply that does not match the interface. */
        ASSERT_EQ(decode("e!==", 16), -EBADMSG);
}

TEST_MAIN();
