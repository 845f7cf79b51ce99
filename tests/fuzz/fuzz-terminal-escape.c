/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for text made safe for a terminal and for a JSON string (proto/escape.c,
 * string_shorten_printable() in proto/util.c): the input, any bytes, up to its first NUL.
 * Each way (newlines kept or not, spaces escaped for a table cell or not), it aborts unless the
 * escaped text is safe to print as it is (and valid UTF-8), every shorter
 * buffer gets a NUL-terminated prefix of it made of whole escapes, the returned length is the
 * whole text's, and a shortened copy is valid UTF-8 without control characters, within its
 * bound.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "macro.h"

#define INPUT_MAX 4096U

static bool is_utf8(const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p;) {
                size_t n = utf8_sequence_len(p);

                if (n == 0)
                        return false;
                p += n;
        }
        return true;
}

static bool has_control(const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return true;
        return false;
}

static void check_escape(const char *s, EscapeFlags flags) {
        static const size_t sizes[] = { 0, 1, 2, 3, 4, 5, 7, 8, 16, 63 };
        _cleanup_free_ char *whole = NULL;
        size_t n;

        if (terminal_escape(s, flags, &whole) < 0)
                return; /* out of memory */
        n = strlen(whole);
        if (!terminal_is_safe(whole, flags) || !is_utf8(whole))
                abort();
        /* Text that is safe already is left alone. */
        if (terminal_is_safe(s, flags) && strcmp(s, whole) != 0)
                abort();
        /* A table cell's: no space of any kind, which would read as a column boundary. */
        if (flags & ESCAPE_SPACE)
                for (const unsigned char *p = (const unsigned char *) whole; *p; p += utf8_sequence_len(p))
                        if (*p == ' ' || utf8_is_space(p, utf8_sequence_len(p)))
                                abort();

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                char buf[64];

                memset(buf, 'X', sizeof(buf));
                if (terminal_escape_buf(s, flags, buf, sizes[i]) != n)
                        abort();
                if (sizes[i] == 0) {
                        if (buf[0] != 'X')
                                abort();
                        continue;
                }
                /* A prefix of the whole, NUL-terminated within the buffer, safe by itself. */
                if (!memchr(buf, 0, sizes[i]) || strncmp(buf, whole, strlen(buf)) != 0 ||
                    !terminal_is_safe(buf, flags) || !is_utf8(buf))
                        abort();
                if (n < sizes[i] && strcmp(buf, whole) != 0)
                        abort();
        }
}

static void check_shorten(const char *s, size_t max) {
        _cleanup_free_ char *copy = strdup(s);

        if (!copy)
                return;
        string_shorten_printable(copy, max);
        /* Bad bytes are replaced one for one; only a text over max is cut. */
        if ((strlen(s) <= max ? strlen(copy) != strlen(s) : strlen(copy) > max) || !is_utf8(copy) ||
            has_control(copy))
                abort();
        /* Nothing to change: nothing changed. */
        if (strlen(s) <= max && is_utf8(s) && !has_control(s) && strcmp(s, copy) != 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = NULL;

        if (size > INPUT_MAX)
                return 0;
        s = strndup((const char *) data, size);
        if (!s)
                return 0;

        check_escape(s, 0);
        check_escape(s, ESCAPE_KEEP_NEWLINE);
        check_escape(s, ESCAPE_SPACE);
        check_escape(s, ESCAPE_SPACE | ESCAPE_KEEP_NEWLINE);
        check_shorten(s, 3);
        check_shorten(s, 16);
        check_shorten(s, 80);
        check_shorten(s, INPUT_MAX);
        return 0;
}
