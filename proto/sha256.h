/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * SHA-256 (FIPS 180-4), for names that must not reveal the secret they are derived from (a
 * context's reclaim id, fdstore.h). Not for speed, and not constant time in the length of the
 * input; libsystemd 252 exports no digest, and a crypto library for one hash is not worth
 * linking into the monitor. Runs in: monitor and worker (libc only).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_SIZE 32U

typedef struct Sha256 {
        uint32_t state[8];
        uint64_t length; /* bytes hashed so far */
        uint8_t buffer[64];
        size_t n_buffer;
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t n);
/* Writes the digest and wipes s (init it again to reuse it). */
void sha256_finish(Sha256 *s, uint8_t ret[static SHA256_DIGEST_SIZE]);
/* The digest of n bytes at data, in one go. */
void sha256(const void *data, size_t n, uint8_t ret[static SHA256_DIGEST_SIZE]);
