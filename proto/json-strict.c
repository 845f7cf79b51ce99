/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Strict JSON syntax check (RFC 8259), iterative so hostile nesting cannot blow the stack.
 * Runs in: worker, clients. */

#include "json-run.h"
#include "json-strict.h"

typedef struct Scanner {
        const unsigned char *p, *end;
        JsonStringHints *hints; /* or NULL */
        JsonStrictFlags flags;
} Scanner;

static void skip_ws(Scanner *s) {
        while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
                s->p++;
}

/* One UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). */
static bool utf8_step(Scanner *s) {
        const unsigned char *p = s->p;
        size_t left = (size_t) (s->end - p);
        unsigned char c = p[0];

        if (c < 0x80) {
                s->p++;
                return true;
        }
        if (c >= 0xC2 && c <= 0xDF) {
                if (left < 2 || (p[1] & 0xC0) != 0x80)
                        return false;
                s->p += 2;
                return true;
        }
        if (c >= 0xE0 && c <= 0xEF) {
                if (left < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
                        return false;
                if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F))
                        return false;
                s->p += 3;
                return true;
        }
        if (c >= 0xF0 && c <= 0xF4) {
                if (left < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
                        return false;
                if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))
                        return false;
                s->p += 4;
                return true;
        }
        return false;
}

int json_unhex4(const unsigned char *p) {
        int v = 0;

        for (int i = 0; i < 4; i++) {
                unsigned char c = p[i];
                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= c - '0';
                else if (c >= 'a' && c <= 'f')
                        v |= c - 'a' + 10;
                else if (c >= 'A' && c <= 'F')
                        v |= c - 'A' + 10;
                else
                        return -1;
        }
        return v;
}

/* A key may not hold an escaped NUL: json-c keeps keys as C strings, so "a\u0000b" would be
 * the key "a" to it (a field the check did not see, where another reader sees an unknown one). */
static bool scan_string(Scanner *s, bool key) {
        const unsigned char *start = ++s->p; /* past the opening quote */
        bool escaped = false;

        while (s->p < s->end) {
                unsigned char c;

                /* Plain ASCII first, sixteen bytes at a step: a base64 payload is tens of
                 * kilobytes of nothing else. */
                s->p = json_run_ascii(s->p, s->end);
                if (s->p >= s->end)
                        break;
                c = *s->p;

                if (c == '"') {
                        if (!key && !escaped && s->hints && s->hints->n < JSON_STRING_HINTS_MAX &&
                            (size_t) (s->p - start) >= JSON_STRING_HINT_MIN)
                                s->hints->strings[s->hints->n++] = (JsonStringHint) {
                                        .start = (const char *) start,
                                        .len = (size_t) (s->p - start),
                                };
                        s->p++;
                        return true;
                }
                if (c < 0x20)
                        return false;
                if (c != '\\') {
                        if (!utf8_step(s))
                                return false;
                        continue;
                }
                escaped = true;
                if (s->end - s->p < 2)
                        return false;
                c = s->p[1];
                if (strchr("\"\\/bfnrt", c) && c) {
                        s->p += 2;
                        continue;
                }
                if (c != 'u' || s->end - s->p < 6)
                        return false;
                int u = json_unhex4(s->p + 2);
                if (u < 0)
                        return false;
                s->p += 6;
                if (u == 0 && key)
                        return false;
                if (u >= 0xDC00 && u <= 0xDFFF)
                        return false; /* a low surrogate without its high half */
                if (u >= 0xD800 && u <= 0xDBFF) {
                        int l;

                        if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u')
                                return false;
                        l = json_unhex4(s->p + 2);
                        if (l < 0xDC00 || l > 0xDFFF)
                                return false;
                        s->p += 6;
                }
        }
        return false;
}

static bool scan_digits(Scanner *s) {
        const unsigned char *start = s->p;

        while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
                s->p++;
        return s->p > start;
}

/* An integer literal json-c would not store faithfully: it clamps below INT64_MIN and
 * above UINT64_MAX, silently. */
static bool integer_out_of_range(const unsigned char *digits, size_t n, bool negative) {
        const char *limit = negative ? "9223372036854775808" : "18446744073709551615";
        size_t ln = strlen(limit);

        return n > ln || (n == ln && memcmp(digits, limit, n) > 0);
}

static bool scan_number(Scanner *s) {
        const unsigned char *digits;
        bool negative = false;

        if (*s->p == '-') {
                negative = true;
                s->p++;
        }
        if (s->p >= s->end)
                return false;
        digits = s->p;
        if (*s->p == '0')
                s->p++;
        else if (!scan_digits(s))
                return false;
        if (!(s->flags & JSON_STRICT_ANY_NUMBER) &&
            (s->p >= s->end || (*s->p != '.' && *s->p != 'e' && *s->p != 'E')) &&
            integer_out_of_range(digits, (size_t) (s->p - digits), negative))
                return false;
        if (s->p < s->end && *s->p == '.') {
                s->p++;
                if (!scan_digits(s))
                        return false;
        }
        if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
                s->p++;
                if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
                        s->p++;
                if (!scan_digits(s))
                        return false;
        }
        return true;
}

static bool scan_literal(Scanner *s, const char *lit) {
        size_t n = strlen(lit);

        if ((size_t) (s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
                return false;
        s->p += n;
        return true;
}

int json_strict_check(const char *text, size_t len, unsigned max_depth, size_t max_values, size_t *ret_n_members) {
        return json_strict_check_full(text, len, max_depth, max_values, 0, ret_n_members, NULL);
}

int json_strict_check_full(const char *text, size_t len, unsigned max_depth, size_t max_values, JsonStrictFlags flags,
                           size_t *ret_n_members, JsonStringHints *ret_hints) {
        /* The container stack is a bit string: 1 = object, 0 = array. */
        uint64_t stack_small[64];
        _cleanup_free_ uint64_t *stack_big = NULL;
        uint64_t *stack = stack_small;
        Scanner s = { (const unsigned char *) text, (const unsigned char *) text + len, ret_hints, flags };
        size_t n_members = 0, n_values = 0;
        unsigned depth = 0;

        assert(text || len == 0);

        if (ret_hints)
                ret_hints->n = 0;
        if (max_depth > 64 * 64) {
                stack_big = new0(uint64_t, DIV_ROUND_UP(max_depth, 64U));
                if (!stack_big)
                        return -ENOMEM;
                stack = stack_big;
        }

#define IN_OBJECT() ((stack[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1)

        for (;;) {
                /* Expect a value. SECURITY: json-c makes an object of each, some 80 bytes and a
                 * malloc() apiece: a message of nothing but "0," would cost 40 times its size
                 * and its parse stall the loop. Counting them here costs nothing. */
                skip_ws(&s);
                if (s.p >= s.end)
                        return -EBADMSG;
                if (++n_values > max_values)
                        return -E2BIG;

                switch (*s.p) {
                case '{':
                case '[':
                        if (depth >= max_depth)
                                return -ELOOP;
                        if (*s.p == '{')
                                stack[depth / 64] |= UINT64_C(1) << (depth % 64);
                        else
                                stack[depth / 64] &= ~(UINT64_C(1) << (depth % 64));
                        depth++;
                        s.p++;
                        skip_ws(&s);
                        if (s.p < s.end && *s.p == (IN_OBJECT() ? '}' : ']')) {
                                s.p++;
                                depth--;
                                break; /* empty container is a complete value */
                        }
                        if (IN_OBJECT()) {
                                if (s.p >= s.end || *s.p != '"' || !scan_string(&s, true))
                                        return -EBADMSG;
                                n_members++;
                                skip_ws(&s);
                                if (s.p >= s.end || *s.p != ':')
                                        return -EBADMSG;
                                s.p++;
                        }
                        continue; /* now the first element's value */
                case '"':
                        if (!scan_string(&s, false))
                                return -EBADMSG;
                        break;
                case 't':
                        if (!scan_literal(&s, "true"))
                                return -EBADMSG;
                        break;
                case 'f':
                        if (!scan_literal(&s, "false"))
                                return -EBADMSG;
                        break;
                case 'n':
                        if (!scan_literal(&s, "null"))
                                return -EBADMSG;
                        break;
                default:
                        if (*s.p != '-' && (*s.p < '0' || *s.p > '9'))
                                return -EBADMSG;
                        if (!scan_number(&s))
                                return -EBADMSG;
                        break;
                }

                /* A value is complete: close containers or go on to the next element. */
                for (;;) {
                        skip_ws(&s);
                        if (depth == 0) {
                                if (s.p != s.end)
                                        return -EBADMSG;
                                if (ret_n_members)
                                        *ret_n_members = n_members;
                                return 0;
                        }
                        if (s.p >= s.end)
                                return -EBADMSG;
                        if (*s.p == (IN_OBJECT() ? '}' : ']')) {
                                s.p++;
                                depth--;
                                continue;
                        }
                        if (*s.p != ',')
                                return -EBADMSG;
                        s.p++;
                        if (IN_OBJECT()) {
                                skip_ws(&s);
                                if (s.p >= s.end || *s.p != '"' || !scan_string(&s, true))
                                        return -EBADMSG;
                                n_members++;
                                skip_ws(&s);
                                if (s.p >= s.end || *s.p != ':')
                                        return -EBADMSG;
                                s.p++;
                        }
                        break;
                }
        }
#undef IN_OBJECT
}
