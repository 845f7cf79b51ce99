/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* json-c objects from checked JSON text, without json-c's tokener. Runs in: worker, clients. */

#include <locale.h>
#include <stdlib.h>

#include "json-build.h"
#include "json-run.h"
#include "json-strict.h"
#include "json-util.h"

typedef struct Builder {
        const unsigned char *p, *end;
        char *buf; /* unescaped strings and number texts */
        size_t buf_size;
        const char *key; /* the member being read: a known key (constant), or key_buf */
        bool key_is_known;
        char *key_buf; /* any other key, NUL-terminated (json-c copies it) */
        size_t key_buf_size;
        locale_t c_locale; /* for doubles: made at the first, freed with the builder */
        const JsonStringHints *hints; /* the check's, or NULL */
        size_t next_hint;
} Builder;

/* The member names of every Varlink message and of io.tsmd.Guest (the interface of the many
 * calls), by length: a key that is one of them goes to json-c as this constant, which json-c keeps
 * instead of a copy (it compares keys by their text, so lookups do not care). Any other key is
 * copied as before; the rarer interfaces' names are not worth the table. Kept by hand, against the
 * IDL by test-json-allocs. */
static const char *const known_keys[][9] = {
        [3] = { "max", "tsm" },
        [4] = { "gone", "kind", "more", "name", "uapi" },
        [5] = { "bound", "errno", "error", "event", "field", "limit", "nonce", "scope", "state" },
        [6] = { "method", "number", "oneway", "reason", "scopes" },
        [7] = { "allowed", "backend", "context", "request", "upgrade" },
        [8] = { "changing", "contexts", "response", "vdevices" },
        [9] = { "continues", "vdeviceId" },
        [10] = { "parameters", "pciAddress" },
        [11] = { "description", "scopeNumber" },
        [12] = { "reclaimToken" },
        [13] = { "auditSequence" },
        [14] = { "fileDescriptor", "maxRequestSize" },
        [15] = { "maxResponseSize" },
        [17] = { "requestUnconsumed" },
        [18] = { "vfioFileDescriptor" },
};

static const char *known_key(const char *s, size_t n) {
        if (n >= ELEMENTSOF(known_keys))
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(known_keys[n]) && known_keys[n][i]; i++)
                if (memcmp(known_keys[n][i], s, n) == 0)
                        return known_keys[n][i];
        return NULL;
}

static void skip_ws(Builder *b) {
        while (b->p < b->end && (*b->p == ' ' || *b->p == '\t' || *b->p == '\n' || *b->p == '\r'))
                b->p++;
}

static int reserve_in(char **buf, size_t *buf_size, size_t need) {
        char *n;
        size_t size;

        if (need <= *buf_size)
                return 0;
        size = MAX(need, MAX(*buf_size * 2, (size_t) 256));
        n = realloc(*buf, size);
        if (!n)
                return -ENOMEM;
        *buf = n;
        *buf_size = size;
        return 0;
}

static int reserve(Builder *b, size_t need) {
        return reserve_in(&b->buf, &b->buf_size, need);
}

static size_t put_utf8(char *o, unsigned cp) {
        if (cp < 0x80) {
                o[0] = (char) cp;
                return 1;
        }
        if (cp < 0x800) {
                o[0] = (char) (0xC0 | cp >> 6);
                o[1] = (char) (0x80 | (cp & 0x3F));
                return 2;
        }
        if (cp < 0x10000) {
                o[0] = (char) (0xE0 | cp >> 12);
                o[1] = (char) (0x80 | (cp >> 6 & 0x3F));
                o[2] = (char) (0x80 | (cp & 0x3F));
                return 3;
        }
        o[0] = (char) (0xF0 | cp >> 18);
        o[1] = (char) (0x80 | (cp >> 12 & 0x3F));
        o[2] = (char) (0x80 | (cp >> 6 & 0x3F));
        o[3] = (char) (0x80 | (cp & 0x3F));
        return 4;
}

/* The string's end from p (in it, on plain text or an escape): its closing quote, or a
 * control character or end if it has none. */
static const unsigned char *string_end(const unsigned char *p, const unsigned char *end) {
        for (;;) {
                p = json_run_unescaped(p, end, true);
                if (p >= end || *p != '\\' || end - p < 2)
                        return p;
                p += 2; /* the escaped byte: \" does not end it; \u's digits are plain */
        }
}

/* The string at b->p (its opening quote), unescaped: straight from the text when it has no
 * escapes, else in b->buf. The check saw each escape complete and each surrogate paired. */
static int read_string(Builder *b, const char **ret, size_t *ret_len) {
        const unsigned char *start = ++b->p, *run, *end;
        size_t n = 0;
        int r;

        run = json_run_unescaped(b->p, b->end, true);
        if (run >= b->end)
                return -EBADMSG;
        if (*run == '"') {
                *ret = (const char *) start;
                *ret_len = (size_t) (run - start);
                b->p = run + 1;
                return 0;
        }

        /* Escapes: each of at most 12 bytes of text makes at most 4 bytes, so the string's text
         * up to its closing quote is room enough (not the rest of the message: one escape early
         * in a long one would take as much again). Read no further than that quote. */
        end = string_end(run, b->end);
        if (end >= b->end || *end != '"')
                return -EBADMSG;
        end++;
        r = reserve(b, (size_t) (end - start));
        if (r < 0)
                return r;
        for (;;) {
                unsigned cp;

                memcpy(b->buf + n, b->p, (size_t) (run - b->p));
                n += (size_t) (run - b->p);
                b->p = run;
                if (b->p >= end || *b->p < 0x20)
                        return -EBADMSG;
                if (*b->p == '"')
                        break;
                if (end - b->p < 2)
                        return -EBADMSG;
                switch (b->p[1]) {
                case '"': case '\\': case '/':
                        b->buf[n++] = (char) b->p[1];
                        break;
                case 'b': b->buf[n++] = '\b'; break;
                case 'f': b->buf[n++] = '\f'; break;
                case 'n': b->buf[n++] = '\n'; break;
                case 'r': b->buf[n++] = '\r'; break;
                case 't': b->buf[n++] = '\t'; break;
                case 'u': {
                        /* Checked, and again here where a code point is made of it: a text
                         * that never saw the check gets no bytes that are not UTF-8. */
                        int hi, lo;

                        if (end - b->p < 6 || (hi = json_unhex4(b->p + 2)) < 0 || (hi >= 0xDC00 && hi <= 0xDFFF))
                                return -EBADMSG;
                        cp = (unsigned) hi;
                        if (hi >= 0xD800 && hi <= 0xDBFF) {
                                if (end - b->p < 12 || b->p[6] != '\\' || b->p[7] != 'u' ||
                                    (lo = json_unhex4(b->p + 8)) < 0xDC00 || lo > 0xDFFF)
                                        return -EBADMSG;
                                cp = 0x10000 + ((unsigned) (hi - 0xD800) << 10) + (unsigned) (lo - 0xDC00);
                                b->p += 6;
                        }
                        n += put_utf8(b->buf + n, cp);
                        b->p += 4;
                        break;
                }
                default:
                        return -EBADMSG;
                }
                b->p += 2;
                run = json_run_unescaped(b->p, end, true);
        }
        b->p++;
        b->buf[n] = 0;
        *ret = b->buf;
        *ret_len = n;
        return 0;
}

/* The string value at b->p (its opening quote) if the check noted it (json-strict.h): its text
 * as it is, its end not looked for again. The notes are the check's of this very text; a note's
 * end is still looked at, a quote within the text, so that a wrong one reads nothing outside it
 * (a string without that quote is read as any other). */
static bool read_hinted_string(Builder *b, const char **ret, size_t *ret_len) {
        const char *start = (const char *) b->p + 1;
        const JsonStringHint *h;

        if (!b->hints)
                return false;
        while (b->next_hint < b->hints->n && b->hints->strings[b->next_hint].start < start)
                b->next_hint++;
        if (b->next_hint >= b->hints->n)
                return false;
        h = &b->hints->strings[b->next_hint];
        if (h->start != start || h->len >= (size_t) ((const char *) b->end - start) || start[h->len] != '"')
                return false;
        b->next_hint++;
        b->p = (const unsigned char *) start + h->len + 1;
        *ret = start;
        *ret_len = h->len;
        return true;
}

/* As json-c's tokener: an integer is an int64 if it fits, a uint64 above INT64_MAX; a number
 * with a fraction or an exponent, or an integer that fits neither, is a double that keeps its
 * text for serialization, read in the C locale (json-c switches to it while it parses). */
static int read_number(Builder *b, json_object **ret) {
        const unsigned char *start = b->p;
        char small[32], *text = small; /* every int64 and uint64 fits, most doubles */
        bool is_double = false;
        size_t n;
        int r;

        for (; b->p < b->end; b->p++)
                if (*b->p == '.' || *b->p == 'e' || *b->p == 'E')
                        is_double = true;
                else if (!(*b->p >= '0' && *b->p <= '9') && *b->p != '-' && *b->p != '+')
                        break;
        n = (size_t) (b->p - start);
        if (n >= sizeof(small)) {
                r = reserve(b, n + 1);
                if (r < 0)
                        return r;
                text = b->buf;
        }
        memcpy(text, start, n);
        text[n] = 0;

        if (!is_double) {
                bool negative = text[0] == '-';
                long long i = 0;
                unsigned long long u = 0;

                errno = 0;
                if (negative)
                        i = strtoll(text, NULL, 10);
                else
                        u = strtoull(text, NULL, 10);
                /* Past int64 and uint64 (json-c would clamp it to the nearest end, a number the
                 * peer never sent) it is still a JSON number: kept as the double it is, which an
                 * int field refuses by name. */
                if (errno != ERANGE) {
                        *ret = negative || u <= INT64_MAX ? json_object_new_int64(negative ? i : (int64_t) u) :
                                                            json_object_new_uint64(u);
                        return *ret ? 0 : -ENOMEM;
                }
        }

        if (!b->c_locale) {
                b->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t) 0);
                if (!b->c_locale)
                        return -ENOMEM;
        }
        *ret = json_object_new_double_s(strtod_l(text, NULL, b->c_locale), text);
        return *ret ? 0 : -ENOMEM;
}

static int read_literal(Builder *b, const char *lit, size_t n) {
        if ((size_t) (b->end - b->p) < n || memcmp(b->p, lit, n) != 0)
                return -EBADMSG;
        b->p += n;
        return 0;
}

/* The next value: containers empty (filled as the text goes on), null as NULL. */
static int read_value(Builder *b, json_object **ret) {
        const char *s;
        size_t n;
        int r;

        *ret = NULL;
        skip_ws(b);
        if (b->p >= b->end)
                return -EBADMSG;
        switch (*b->p) {
        case '{':
                b->p++;
                *ret = json_object_new_object();
                return *ret ? 0 : -ENOMEM;
        case '[':
                b->p++;
                *ret = json_object_new_array();
                return *ret ? 0 : -ENOMEM;
        case '"':
                r = read_hinted_string(b, &s, &n) ? 0 : read_string(b, &s, &n);
                if (r < 0)
                        return r;
                if (n > INT_MAX)
                        return -EBADMSG;
                *ret = json_object_new_string_len(s, (int) n);
                return *ret ? 0 : -ENOMEM;
        case 't':
                *ret = json_object_new_boolean(1);
                return read_literal(b, "true", 4) ?: (*ret ? 0 : -ENOMEM);
        case 'f':
                *ret = json_object_new_boolean(0);
                return read_literal(b, "false", 5) ?: (*ret ? 0 : -ENOMEM);
        case 'n':
                *ret = NULL;
                return read_literal(b, "null", 4);
        default:
                return read_number(b, ret);
        }
}

/* A member's key and its colon: b->key is a known key's constant or a copy in b->key_buf.
 * json-c keeps keys as C strings: one with a NUL would be cut short (the check refuses \u0000 in
 * keys; so does this, for unchecked text). */
static int read_key(Builder *b) {
        const char *s;
        size_t n;
        int r;

        skip_ws(b);
        if (b->p >= b->end || *b->p != '"')
                return -EBADMSG;
        r = read_string(b, &s, &n);
        if (r < 0)
                return r;
        if (memchr(s, 0, n))
                return -EBADMSG;
        b->key = known_key(s, n);
        b->key_is_known = b->key != NULL;
        if (!b->key_is_known) {
                r = reserve_in(&b->key_buf, &b->key_buf_size, n + 1);
                if (r < 0)
                        return r;
                memcpy(b->key_buf, s, n);
                b->key_buf[n] = 0;
                b->key = b->key_buf;
        }
        skip_ws(b);
        if (b->p >= b->end || *b->p != ':')
                return -EBADMSG;
        b->p++;
        return 0;
}

/* The check matched each bracket; so does this, for a text that never saw the check. */
static char closing_of(json_object *container) {
        return json_object_is_type(container, json_type_object) ? '}' : ']';
}

static void builder_done(Builder *b) {
        free(b->buf);
        free(b->key_buf);
        if (b->c_locale)
                freelocale(b->c_locale);
}

int json_build_checked(const char *text, size_t len, unsigned max_depth, json_object **ret) {
        return json_build_checked_full(text, len, max_depth, NULL, ret);
}

int json_build_checked_full(const char *text, size_t len, unsigned max_depth, const JsonStringHints *hints,
                            json_object **ret) {
        json_object *stack_small[64];
        _cleanup_free_ json_object **stack_big = NULL;
        json_object **stack = stack_small, *root = NULL;
        size_t stack_size = ELEMENTSOF(stack_small);
        Builder b = { (const unsigned char *) text, (const unsigned char *) text + len, .hints = hints };
        unsigned depth = 0;
        int r;

        assert(text || len == 0);
        assert(ret);

        for (;;) {
                json_object *v = NULL, *parent = depth > 0 ? stack[depth - 1] : NULL;
                bool container;

                r = read_value(&b, &v);
                if (r < 0) {
                        json_object_put(v);
                        goto fail;
                }
                container = json_object_is_type(v, json_type_object) || json_object_is_type(v, json_type_array);

                /* A container joins its parent before it is filled: the order of the parent's
                 * members is the same, as its later members come after it either way. */
                if (!parent)
                        root = v;
                else if (json_object_is_type(parent, json_type_object)) {
                        if (json_object_object_add_ex(parent, b.key, v,
                                                      b.key_is_known ? JSON_C_OBJECT_ADD_CONSTANT_KEY : 0) < 0) {
                                json_object_put(v);
                                r = -ENOMEM;
                                goto fail;
                        }
                } else if (json_object_array_add(parent, v) < 0) {
                        json_object_put(v);
                        r = -ENOMEM;
                        goto fail;
                }

                if (container) {
                        if (depth >= max_depth) {
                                r = -EBADMSG;
                                goto fail;
                        }
                        if (depth >= stack_size) {
                                json_object **n = reallocarray(stack_big, stack_size * 2, sizeof(*n));

                                if (!n) {
                                        r = -ENOMEM;
                                        goto fail;
                                }
                                if (!stack_big)
                                        memcpy(n, stack_small, sizeof(stack_small));
                                stack = stack_big = n;
                                stack_size *= 2;
                        }
                        stack[depth++] = v;
                        skip_ws(&b);
                        if (b.p >= b.end || *b.p != closing_of(v)) {
                                /* Not empty: on to its first member or element. */
                                if (json_object_is_type(v, json_type_object)) {
                                        r = read_key(&b);
                                        if (r < 0)
                                                goto fail;
                                }
                                continue;
                        }
                        b.p++;
                        depth--;
                }

                /* A value is complete: close containers or go on to the next element. */
                for (;;) {
                        skip_ws(&b);
                        if (depth == 0) {
                                if (b.p != b.end) {
                                        r = -EBADMSG;
                                        goto fail;
                                }
                                *ret = root;
                                builder_done(&b);
                                return 0;
                        }
                        if (b.p >= b.end) {
                                r = -EBADMSG;
                                goto fail;
                        }
                        if (*b.p == closing_of(stack[depth - 1])) {
                                b.p++;
                                depth--;
                                continue;
                        }
                        if (*b.p != ',') {
                                r = -EBADMSG;
                                goto fail;
                        }
                        b.p++;
                        if (json_object_is_type(stack[depth - 1], json_type_object)) {
                                r = read_key(&b);
                                if (r < 0)
                                        goto fail;
                        }
                        break;
                }
        }

fail:
        builder_done(&b);
        json_object_put(root);
        return r;
}
