/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What every libFuzzer target here shares: its entry point's prototype and CHECK(), an invariant
 * whose breach stops the run as a crash does (libFuzzer keeps the input), naming the check.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(expr)                                                                                \
        do {                                                                                       \
                if (!(expr)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr);   \
                        abort();                                                                   \
                }                                                                                  \
        } while (false)
