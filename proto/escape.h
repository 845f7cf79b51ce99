/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Text made safe for a terminal. Strings that others choose (a peer's reply, a client's call,
 * a file) must not reach a terminal as they are: an ESC sequence or another control character
 * rewrites what the reader sees (a line hidden, the title set, a fake prompt), and invalid
 * UTF-8 is taken apart by the terminal in ways of its own (a raw 0x9b is CSI to an 8-bit
 * one). As systemd's cescape(): C0 controls are shown as \a \b \t \n \v \f \r or \xNN, DEL
 * and C1 controls (U+0080..U+009F), the bidirectional formatting characters (U+202E and its
 * kin, which make a terminal that does bidi show text out of order), the other characters that
 * show as nothing and the line separators (utf8_is_deceptive()) and every byte of
 * invalid UTF-8 as \xNN (the bytes as they came, "\xc2\x9b" for U+009B); valid printable
 * UTF-8 is left as it is, the backslash too, so the text "\x1b" and an escaped ESC look alike
 * (--json tells them apart). libc only: the monitor's log uses it. Runs in: monitor, worker
 * and clients.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum EscapeFlags {
        /* Newline is shown as itself (multi-line text: an interface description). */
        ESCAPE_KEEP_NEWLINE = 1 << 0,
        /* Spaces are escaped too (a table cell: a space in a value would read as a column
         * boundary): the ASCII space as \x20, the other Unicode spaces (utf8_is_space()) byte by
         * byte as \xNN. */
        ESCAPE_SPACE = 1 << 1,
} EscapeFlags;

/* Length of the valid UTF-8 sequence at s, or 0 if s does not start one (RFC 3629: no
 * overlongs, no surrogates, nothing above U+10FFFF). Reads no further than a NUL. */
size_t utf8_sequence_len(const unsigned char *s);

/* The code point of the n-byte sequence at s, which utf8_sequence_len() found valid. */
uint32_t utf8_code_point(const unsigned char *s, size_t n);

/* Whether the n-byte UTF-8 character at s (n >= 2; false for ASCII) may show on a terminal as
 * other than it is: a C1 control (U+0080..U+009F), a character that shows as nothing (Unicode's
 * Default_Ignorable_Code_Point: U+00AD, U+200B and the joiners, U+2060, U+FEFF, variation
 * selectors, tags, ...: "info" followed by U+200B reads as the scope "info"; among them the
 * bidirectional controls U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069, which make a
 * terminal that does bidi (VTE, mlterm) reorder the text after one, "Trojan Source"), or a line or paragraph separator (U+2028, U+2029, where some terminals
 * and every JavaScript reader break the line). */
bool utf8_is_deceptive(const unsigned char *s, size_t n);

/* Whether the n-byte UTF-8 character at s is a space other than ASCII's, which a terminal shows
 * blank: U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 (Unicode's Zs,
 * Zl and Zp). */
bool utf8_is_space(const unsigned char *s, size_t n);

/* Whether s (NULL: yes) would be printed as it is. */
bool terminal_is_safe(const char *s, EscapeFlags flags);

/* Writes s escaped to buf, as much as fits in size bytes with a NUL (whole escapes only;
 * nothing if size is 0). Returns the length of the whole escaped text, as snprintf() does. */
size_t terminal_escape_buf(const char *s, EscapeFlags flags, char *buf, size_t size);

/* s escaped, newly allocated. -ENOMEM. */
int terminal_escape(const char *s, EscapeFlags flags, char **ret);
