/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Text made safe for a terminal (escape.h). */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "macro.h"

size_t utf8_sequence_len(const unsigned char *s) {
        unsigned char c = s[0];
        unsigned char lo = 0x80, hi = 0xbf;
        size_t n;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                n = 2;
        else if (c >= 0xe0 && c <= 0xef) {
                n = 3;
                if (c == 0xe0)
                        lo = 0xa0;
                else if (c == 0xed)
                        hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
                n = 4;
                if (c == 0xf0)
                        lo = 0x90;
                else if (c == 0xf4)
                        hi = 0x8f;
        } else
                return 0;

        /* A NUL is out of every range: nothing past it is read. */
        if (s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if (s[i] < 0x80 || s[i] > 0xbf)
                        return 0;
        return n;
}

uint32_t utf8_code_point(const unsigned char *s, size_t n) {
        static const unsigned char lead_mask[] = { 0, 0x7f, 0x1f, 0x0f, 0x07 };
        uint32_t c = s[0] & lead_mask[n];

        for (size_t i = 1; i < n; i++)
                c = c << 6 | (s[i] & 0x3f);
        return c;
}

/* The escape of a byte shown as \X, or 0 if it is shown as \xNN. */
static char c_escape(unsigned char c) {
        switch (c) {
        case '\a':
                return 'a';
        case '\b':
                return 'b';
        case '\t':
                return 't';
        case '\n':
                return 'n';
        case '\v':
                return 'v';
        case '\f':
                return 'f';
        case '\r':
                return 'r';
        default:
                return 0;
        }
}

/* Unicode 15's Default_Ignorable_Code_Point, which includes the bidirectional controls. */
static bool code_point_is_default_ignorable(uint32_t c) {
        static const struct {
                uint32_t first, last;
        } ranges[] = {
                { 0x00ad, 0x00ad },   { 0x034f, 0x034f },   { 0x061c, 0x061c },   { 0x115f, 0x1160 },
                { 0x17b4, 0x17b5 },   { 0x180b, 0x180f },   { 0x200b, 0x200f },   { 0x202a, 0x202e },
                { 0x2060, 0x206f },   { 0x3164, 0x3164 },   { 0xfe00, 0xfe0f },   { 0xfeff, 0xfeff },
                { 0xffa0, 0xffa0 },   { 0xfff0, 0xfff8 },   { 0x1bca0, 0x1bca3 }, { 0x1d173, 0x1d17a },
                { 0xe0000, 0xe0fff },
        };

        for (size_t i = 0; i < ELEMENTSOF(ranges); i++)
                if (c >= ranges[i].first && c <= ranges[i].last)
                        return true;
        return false;
}

bool utf8_is_deceptive(const unsigned char *s, size_t n) {
        uint32_t c;

        if (n < 2)
                return false;
        c = utf8_code_point(s, n);
        return c <= 0x9f || c == 0x2028 || c == 0x2029 || code_point_is_default_ignorable(c);
}

bool utf8_is_space(const unsigned char *s, size_t n) {
        if (n == 2)
                return s[0] == 0xc2 && s[1] == 0xa0;
        if (n != 3)
                return false;
        if (s[0] == 0xe1)
                return s[1] == 0x9a && s[2] == 0x80;
        if (s[0] == 0xe3)
                return s[1] == 0x80 && s[2] == 0x80;
        return s[0] == 0xe2 && ((s[1] == 0x80 && (s[2] <= 0x8a || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf)) ||
                                (s[1] == 0x81 && s[2] == 0x9f));
}

/* How the character at s is shown: *ret_in bytes of s go as they are (*ret_raw true) or
 * escaped byte by byte. */
static void next_char(const unsigned char *s, EscapeFlags flags, size_t *ret_in, bool *ret_raw) {
        size_t n = utf8_sequence_len(s);

        if (n == 0) {
                *ret_in = 1; /* one byte at a time: what follows it may be fine */
                *ret_raw = false;
        } else if (n == 1) {
                *ret_in = 1;
                *ret_raw = ((s[0] > 0x20 || (s[0] == ' ' && !(flags & ESCAPE_SPACE))) && s[0] != 0x7f) ||
                           (s[0] == '\n' && (flags & ESCAPE_KEEP_NEWLINE));
        } else {
                *ret_in = n;
                *ret_raw = !utf8_is_deceptive(s, n) && !((flags & ESCAPE_SPACE) && utf8_is_space(s, n));
        }
}

bool terminal_is_safe(const char *s, EscapeFlags flags) {
        size_t in;
        bool raw;

        for (const unsigned char *p = (const unsigned char *) s; p && *p; p += in) {
                next_char(p, flags, &in, &raw);
                if (!raw)
                        return false;
        }
        return true;
}

/* Appends k bytes of e to buf if they fit with the NUL; once something did not, nothing more
 * is written (whole escapes and whole characters only: a cut one would leave half a sequence). */
static void put(char *buf, size_t size, size_t *written, bool *full, const void *e, size_t k) {
        if (*full || *written + k >= size) {
                *full = true;
                return;
        }
        memcpy(buf + *written, e, k);
        *written += k;
}

size_t terminal_escape_buf(const char *s, EscapeFlags flags, char *buf, size_t size) {
        static const char hex[] = "0123456789abcdef";
        size_t len = 0, written = 0, in;
        bool raw, full = false;

        for (const unsigned char *p = (const unsigned char *) s; p && *p; p += in) {
                next_char(p, flags, &in, &raw);
                if (raw) {
                        put(buf, size, &written, &full, p, in);
                        len += in;
                        continue;
                }
                for (size_t i = 0; i < in; i++) {
                        char e[4] = { '\\', c_escape(p[i]) };
                        size_t k = 2;

                        if (!e[1]) {
                                e[1] = 'x';
                                e[2] = hex[p[i] >> 4];
                                e[3] = hex[p[i] & 0xf];
                                k = 4;
                        }
                        put(buf, size, &written, &full, e, k);
                        len += k;
                }
        }
        if (size > 0)
                buf[written] = 0;
        return len;
}

int terminal_escape(const char *s, EscapeFlags flags, char **ret) {
        size_t len = terminal_escape_buf(s, flags, NULL, 0);
        char *buf = malloc(len + 1);

        if (!buf)
                return -ENOMEM;
        (void) terminal_escape_buf(s, flags, buf, len + 1);
        *ret = buf;
        return 0;
}
