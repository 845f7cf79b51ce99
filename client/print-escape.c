/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What tsmctl prints of tsmd's replies, made safe for the admin's terminal. The strings in
 * them are not all tsmd's own: a VMM's call, the kernel's sysfs, a file, a compromised worker
 * (or whatever answers at the socket) chose some. Tables and text show them escaped
 * (escape.h); JSON stays JSON with the same values, see tsmctl_print_json_ext().
 */

#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <wchar.h>

#include "tsmctl.h"

void tsmctl_escapes_done(TsmctlEscapes *e) {
        for (size_t i = 0; i < e->n; i++)
                free(e->strings[i]);
        e->n = 0;
}

static const char *esc(TsmctlEscapes *e, const char *s, EscapeFlags flags) {
        char *copy;

        if (terminal_is_safe(s, flags))
                return s;
        /* Never the string itself, whatever fails. */
        if (e->n >= ELEMENTSOF(e->strings) || terminal_escape(s, flags, &copy) < 0)
                return "?";
        e->strings[e->n++] = copy;
        return copy;
}

const char *tsmctl_esc(TsmctlEscapes *e, const char *s) {
        return esc(e, s, 0);
}

const char *tsmctl_esc_cell(TsmctlEscapes *e, const char *s) {
        return esc(e, s, ESCAPE_SPACE);
}

static locale_t c_utf8;

static void c_utf8_init(void) {
        c_utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t) 0);
}

/* libc's character widths are the LC_CTYPE locale's, and tsmctl sets none from the
 * environment (its output does not change with it): C.UTF-8's, which every glibc since 2.35
 * has. NULL where it is missing. Made once, whichever thread asks first. */
static locale_t width_locale(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        (void) pthread_once(&once, c_utf8_init);
        return c_utf8;
}

/*
 * Display columns of text tsmctl_esc() returned: valid UTF-8 with no control character. An
 * East Asian wide character takes two columns, a combining mark none (wcwidth()); without
 * the C.UTF-8 locale, every code point one.
 */
size_t tsmctl_display_width(const char *s) {
        locale_t l = width_locale(), old = l ? uselocale(l) : (locale_t) 0;
        size_t w = 0;

        for (const unsigned char *p = (const unsigned char *) strempty(s); *p;) {
                size_t n = utf8_sequence_len(p);
                int cw = n > 0 && l ? wcwidth((wchar_t) utf8_code_point(p, n)) : 1;

                w += cw >= 0 ? (size_t) cw : 1; /* unprintable: not from tsmctl_esc() */
                p += MAX(n, (size_t) 1);        /* invalid: not from tsmctl_esc(), one byte on */
        }
        if (l)
                uselocale(old);
        return w;
}

void tsmctl_print_padded(FILE *f, const char *s, size_t width) {
        size_t w = tsmctl_display_width(s);

        fputs(strempty(s), f);
        do
                fputc(' ', f);
        while (++w < width);
}

void tsmctl_fputs_escaped(const char *s, EscapeFlags flags, FILE *f) {
        _cleanup_free_ char *copy = NULL;

        if (terminal_is_safe(s, flags))
                fputs(strempty(s), f);
        else if (terminal_escape(s, flags, &copy) >= 0)
                fputs(copy, f);
        else
                fputs("?", f);
}

void tsmctl_print_settings(json_object *names, FILE *f) {
        size_t n = json_object_is_type(names, json_type_array) ? json_object_array_length(names) : 0;

        for (size_t i = 0; i < n; i++) {
                const char *name = json_object_get_string(json_object_array_get_idx(names, i)),
                           *dot = name ? strchr(name, '.') : NULL;
                _cleanup_free_ char *section = dot ? strndup(name, dot - name) : NULL;

                if (i > 0)
                        fputs(", ", f);
                if (!section) {
                        tsmctl_fputs_escaped(name ?: "?", 0, f);
                        continue;
                }
                fputc('[', f);
                tsmctl_fputs_escaped(section, 0, f);
                fputs("] ", f);
                tsmctl_fputs_escaped(dot + 1, 0, f);
                fputc('=', f);
        }
}

/*
 * json-c escapes every C0 control in a string (\n, \t, ..., \u001b), but writes DEL, C1
 * controls, bidirectional formatting characters, the other characters that show as nothing,
 * the line separators (utf8_is_deceptive()) and bytes that are no UTF-8 as they came (a JSON
 * string from the parser can hold any byte). Here those become \u007f, \u0080..\u009f,
 * \u202e, \u200b and their kin (the same values, escaped; \ud834\udd73 for one past U+FFFF)
 * and U+FFFD for each invalid byte (JSON is
 * UTF-8: no JSON text can carry them, and a parser that checks replaces them so too). json-c's
 * own text outside strings is ASCII: its newlines stay.
 */
static void fputs_json_safe(const char *text, FILE *f) {
        for (const unsigned char *p = (const unsigned char *) text; *p;) {
                size_t n = utf8_sequence_len(p);

                if (n == 0) {
                        fputs("\xef\xbf\xbd", f);
                        p++;
                } else if (n == 1 && ((*p < 0x20 && *p != '\n') || *p == 0x7f)) {
                        fprintf(f, "\\u%04x", *p);
                        p++;
                } else if (utf8_is_deceptive(p, n)) {
                        uint32_t c = utf8_code_point(p, n);

                        if (c > 0xffff) /* JSON's \u is UTF-16: a surrogate pair */
                                fprintf(f, "\\u%04x\\u%04x", (unsigned) (0xd800 + ((c - 0x10000) >> 10)),
                                        (unsigned) (0xdc00 + ((c - 0x10000) & 0x3ff)));
                        else
                                fprintf(f, "\\u%04x", (unsigned) c);
                        p += n;
                } else {
                        fwrite(p, 1, n, f);
                        p += n;
                }
        }
        fputc('\n', f);
}

void tsmctl_print_json_ext(json_object *o, int flags) {
        fputs_json_safe(json_object_to_json_string_ext(o, flags), stdout);
}

void tsmctl_print_json(json_object *o) {
        tsmctl_print_json_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
}
