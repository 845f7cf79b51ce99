/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Base64 (RFC 4648, standard alphabet, padded), for binary payloads inside JSON. Runs in:
 * worker, clients. */
#pragma once

#include "macro.h"

/* Encodes len bytes; returns a NUL-terminated malloc'd string. */
int base64_encode(const void *data, size_t len, char **ret);
/* Decodes strictly: padding required, no whitespace, no trailing garbage. -EINVAL if malformed. */
int base64_decode(const char *text, size_t text_len, void **ret, size_t *ret_len);
/* The same into out, size bytes the caller has, such as the block a payload is sent in (no
 * buffer of its own to copy from): -ENOBUFS if the text decodes to more (its length says so,
 * base64_decoded_size()). Writes nothing past the decoded size, also for malformed text. */
int base64_decode_to(const char *text, size_t text_len, void *out, size_t size, size_t *ret_len);
/* For tests: base64_encode(), base64_decode() and base64_decode_to() with the portable steps
 * alone, as on CPUs without SSSE3; and whether they take SSSE3's steps on this one. */
int base64_encode_portable(const void *data, size_t len, char **ret);
int base64_decode_portable(const char *text, size_t text_len, void **ret, size_t *ret_len);
int base64_decode_to_portable(const char *text, size_t text_len, void *out, size_t size, size_t *ret_len);
bool base64_uses_ssse3(void);
/* How many bytes a text of text_len characters decodes to, from its length and padding alone
 * (the characters are not checked): what a payload claims before anyone decodes it. -EINVAL if
 * text_len is not a multiple of 4. */
int base64_decoded_size(const char *text, size_t text_len, size_t *ret);
