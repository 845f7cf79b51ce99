/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A fixed pseudo-random sequence (xorshift64) for tests that want many varied inputs, the same in
 * every run: DEFINE_TEST_RND(seed) defines rnd(), each test file with a seed of its own. Runs in:
 * tests. */
#pragma once

#include <stdint.h>

#define DEFINE_TEST_RND(seed)                                                                      \
        static uint64_t rnd_state = (seed);                                                        \
                                                                                                   \
        static uint64_t rnd(void) {                                                                \
                rnd_state ^= rnd_state << 13;                                                      \
                rnd_state ^= rnd_state >> 7;                                                       \
                rnd_state ^= rnd_state << 17;                                                      \
                return rnd_state;                                                                  \
        }
