/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Audit record serialization. The escaping cost model below is json-c's json_escape_str()
 * with JSON_C_TO_STRING_NOSLASHESCAPE, which the line writer reproduces, and the \uXXXX escapes
 * it adds for the characters a terminal acts on (terminal_unsafe()), so a string bounded here is
 * never longer than its budget once escaped. Runs in: worker, tests.
 */

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "audit-record.h"
#include "escape.h"
#include "json-run.h"
#include "json-util.h"

#define REPLACEMENT_CHAR "\xef\xbf\xbd" /* U+FFFD */

bool audit_record_is_error(const AuditRecord *r) {
        return r->result && !streq(r->result, "ok");
}

/* Bytes json-c emits for one input byte < 0x80. */
static size_t ascii_escaped_len(unsigned char c) {
        switch (c) {
        case '\b':
        case '\f':
        case '\n':
        case '\r':
        case '\t':
        case '"':
        case '\\':
                return 2;
        default:
                return c < 0x20 ? 6 : 1; /* \u00XX */
        }
}

/* SECURITY: administrators read the files with `tail -f` and `less` on a terminal, and json-c
 * writes valid multi-byte UTF-8 as it is: a client's C1 control (U+0080..U+009F; U+009B is CSI
 * to a terminal that honours C1, U+0085 a newline to some), bidirectional formatting character
 * (U+202E and its kin), character that shows as nothing (U+200B) or line separator (U+2028) in a
 * string would rewrite, reorder or hide what the reader sees (utf8_is_deceptive()). Such a
 * character is written as a \uXXXX escape (a surrogate pair past U+FFFF): the same string to
 * every JSON reader. Only multi-byte characters are looked at. */
static bool terminal_unsafe(const unsigned char *s, size_t n) {
        return utf8_is_deceptive(s, n);
}

/* The bytes of a character's \u escape: two, a surrogate pair, past U+FFFF. */
static size_t unicode_escape_len(size_t n) {
        return n == 4 ? 12 : 6;
}

/* Walks s as sanitized characters: *ret_in is the input length, *ret_out the output bytes
 * (U+FFFD for an invalid byte), *ret_cost the escaped bytes. Returns false at the end. */
static bool next_char(const char *s, size_t *ret_in, size_t *ret_out, size_t *ret_cost) {
        size_t n;

        if (!*s)
                return false;
        n = utf8_sequence_len((const unsigned char *) s);
        if (n == 0) {
                *ret_in = 1;
                *ret_out = *ret_cost = strlen(REPLACEMENT_CHAR);
        } else if (n == 1) {
                *ret_in = *ret_out = 1;
                *ret_cost = ascii_escaped_len((unsigned char) *s);
        } else {
                *ret_in = *ret_out = n;
                *ret_cost = terminal_unsafe((const unsigned char *) s, n) ? unicode_escape_len(n) : n;
        }
        return true;
}

/* Whether s is within budget and all bytes 0x20-0x7f but '"' and '\\' (*ret_len bytes): it is then
 * its own bounded and escaped form, as every string of a guest request's record is, and needs
 * no walk a character at a time. */
static bool is_plain(const char *s, size_t budget, size_t *ret_len) {
        const unsigned char *u = (const unsigned char *) s;
        size_t n = strnlen(s, budget + 1);

        if (n > budget || json_run_ascii(u, u + n) != u + n)
                return false;
        *ret_len = n;
        return true;
}

/* Writes s bounded as audit_string_bound() says at p, which has room for budget + 1 bytes (output
 * bytes never exceed escaped bytes); returns the end of what it wrote, its NUL. */
static char *string_bound_put(char *p, const char *s, size_t budget) {
        size_t in, out, cost, total = 0, keep, used = 0, marker = strlen(AUDIT_TRUNCATED_MARKER), n;
        bool truncate;

        if (is_plain(s, budget, &n)) {
                p = mempcpy(p, s, n);
                *p = 0;
                return p;
        }
        for (const char *q = s; next_char(q, &in, &out, &cost); q += in)
                total += cost;
        truncate = total > budget;
        keep = truncate ? budget - marker : budget;

        for (const char *q = s; next_char(q, &in, &out, &cost); q += in) {
                if (used + cost > keep)
                        break;
                if (in == 1 && out != 1)
                        p = mempcpy(p, REPLACEMENT_CHAR, out);
                else
                        p = mempcpy(p, q, out);
                used += cost;
        }
        if (truncate)
                p = mempcpy(p, AUDIT_TRUNCATED_MARKER, marker);
        *p = 0;
        return p;
}

int audit_string_bound(const char *s, size_t budget, char **ret) {
        char *buf;

        assert(ret);
        assert(budget > strlen(AUDIT_TRUNCATED_MARKER));

        if (!s) {
                *ret = NULL;
                return 0;
        }
        buf = malloc(budget + 1);
        if (!buf)
                return -ENOMEM;
        string_bound_put(buf, s, budget);
        *ret = buf;
        return 0;
}

int audit_record_copy_bounded(const AuditRecord *src, AuditRecord *ret, char **ret_storage) {
        const char *const *in[] = { &src->event,  &src->unit,   &src->pci,  &src->backend, &src->scope,
                                    &src->result, &src->method, &src->rule, &src->reason, &src->signalled };
        /* Bounded here first, then one block of their size: a queued record is two allocations
         * (this and its JSON line), and a string costs none of its own on the way. */
        char buf[ELEMENTSOF(in) * (AUDIT_FIELD_MAX + 1)], *p = buf, *storage;
        size_t offset[ELEMENTSOF(in)] = {};
        AuditRecord copy = *src;
        const char **out[] = { &copy.event,  &copy.unit,   &copy.pci,  &copy.backend, &copy.scope,
                               &copy.result, &copy.method, &copy.rule, &copy.reason, &copy.signalled };

        assert(src);
        assert(ret);
        assert(ret_storage);

        for (size_t i = 0; i < ELEMENTSOF(in); i++) {
                if (!*in[i])
                        continue;
                offset[i] = (size_t) (p - buf);
                p = string_bound_put(p, *in[i], AUDIT_FIELD_MAX) + 1;
        }

        storage = malloc(MAX((size_t) (p - buf), (size_t) 1));
        if (!storage)
                return -ENOMEM;
        memcpy(storage, buf, (size_t) (p - buf));
        for (size_t i = 0; i < ELEMENTSOF(in); i++)
                *out[i] = *in[i] ? storage + offset[i] : NULL;

        *ret = copy;
        *ret_storage = storage;
        return 0;
}

int audit_format_time(uint64_t realtime_usec, char buf[static AUDIT_TIME_STRLEN]) {
        time_t sec = (time_t) (realtime_usec / 1000000u);
        struct tm tm;
        int n;

        if (!gmtime_r(&sec, &tm))
                return -EOVERFLOW;
        n = snprintf(buf, AUDIT_TIME_STRLEN, "%04d-%02d-%02dT%02d:%02d:%02d.%06" PRIu64 "Z",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, realtime_usec % 1000000u);
        if (n < 0 || (size_t) n >= AUDIT_TIME_STRLEN)
                return -EOVERFLOW; /* years past 9999 */
        return 0;
}

/* Reads n digits at s; -1 if one is not a digit. */
static int digits(const char *s, size_t n) {
        int v = 0;

        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                v = v * 10 + (s[i] - '0');
        }
        return v;
}

int audit_parse_time(const char *s, uint64_t *ret) {
        /* "2024-05-06T07:08:09.123456Z": the separators' places, then the numbers'. */
        static const struct {
                size_t at;
                char c;
        } seps[] = { { 4, '-' }, { 7, '-' }, { 10, 'T' }, { 13, ':' }, { 16, ':' }, { 19, '.' }, { 26, 'Z' } };
        int year, mon, day, hour, min, sec, usec;
        struct tm tm;
        time_t t;

        assert(ret);

        if (!s || strlen(s) != AUDIT_TIME_STRLEN - 1)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(seps); i++)
                if (s[seps[i].at] != seps[i].c)
                        return -EINVAL;
        year = digits(s, 4);
        mon = digits(s + 5, 2);
        day = digits(s + 8, 2);
        hour = digits(s + 11, 2);
        min = digits(s + 14, 2);
        sec = digits(s + 17, 2);
        usec = digits(s + 20, 6);
        if (year < 1970 || mon < 1 || mon > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 || min < 0 ||
            min > 59 || sec < 0 || sec > 59 || usec < 0)
                return -EINVAL;

        tm = (struct tm){ .tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day,
                          .tm_hour = hour, .tm_min = min, .tm_sec = sec };
        t = timegm(&tm);
        /* timegm() moves a day past its month's end into the next: not a time of ours. */
        if (t < 0 || tm.tm_mday != day)
                return -EINVAL;
        *ret = (uint64_t) t * 1000000u + (uint64_t) usec;
        return 0;
}

/* ---- the line writer ----------------------------------------------------------------------
 *
 * Writes a record straight into one buffer: building json-c objects for a flat record of
 * eighteen fields and serializing them was a fifth of the worker's CPU per guest request. The
 * output is byte for byte what json-c makes of the same object with JSON_C_TO_STRING_PLAIN |
 * JSON_C_TO_STRING_NOSLASHESCAPE, but for the characters terminal_unsafe() escapes (the golden
 * tests hold both to it, and parse every line back with json-c). */

typedef struct LineWriter {
        char *p, *end;
        bool overflow;
} LineWriter;

static void put(LineWriter *w, const char *s, size_t n) {
        if (w->overflow || (size_t) (w->end - w->p) < n) {
                w->overflow = true;
                return;
        }
        w->p = mempcpy(w->p, s, n);
}

static void put_str(LineWriter *w, const char *s) {
        put(w, s, strlen(s));
}

static void put_key(LineWriter *w, const char *key) {
        put(w, w->p[-1] == '{' ? "\"" : ",\"", w->p[-1] == '{' ? 1 : 2);
        put_str(w, key);
        put(w, "\":", 2);
}

static void put_u64(LineWriter *w, const char *key, uint64_t v, bool is_null) {
        char buf[DECIMAL_U64_MAX];
        const char *q;

        put_key(w, key);
        if (is_null) {
                put(w, "null", 4);
                return;
        }
        q = format_u64(v, buf);
        put(w, q, (size_t) (buf + sizeof(buf) - 1 - q));
}

/* \uXXXX, in lower case as json-c writes its escapes. */
static void put_unicode_escape(LineWriter *w, uint32_t cp) {
        static const char hex[] = "0123456789abcdef";
        char e[6] = { '\\', 'u' };

        if (cp > 0xffff) { /* JSON's \u is UTF-16 */
                put_unicode_escape(w, 0xd800 + ((cp - 0x10000) >> 10));
                cp = 0xdc00 + ((cp - 0x10000) & 0x3ff);
        }
        e[2] = hex[(cp >> 12) & 0xf];
        e[3] = hex[(cp >> 8) & 0xf];
        e[4] = hex[(cp >> 4) & 0xf];
        e[5] = hex[cp & 0xf];
        put(w, e, sizeof(e));
}

/* One sanitized character, escaped as json-c escapes it with JSON_C_TO_STRING_NOSLASHESCAPE,
 * and a character a terminal acts on as \uXXXX (terminal_unsafe()). */
static void put_escaped(LineWriter *w, const char *q, size_t in, size_t out) {
        const unsigned char *u = (const unsigned char *) q;
        unsigned char c = *u;
        const char *short_escape;

        if (in == 1 && out != 1) {
                put(w, REPLACEMENT_CHAR, out);
                return;
        }
        if (out > 1) {
                if (terminal_unsafe(u, out))
                        put_unicode_escape(w, utf8_code_point(u, out));
                else
                        put(w, q, out);
                return;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
                put(w, q, out);
                return;
        }
        short_escape = c == '\b' ? "\\b" : c == '\f' ? "\\f" : c == '\n' ? "\\n" : c == '\r' ? "\\r" :
                       c == '\t' ? "\\t" : c == '"'  ? "\\\"" : c == '\\' ? "\\\\" : NULL;
        if (short_escape) {
                put(w, short_escape, 2);
                return;
        }
        put_unicode_escape(w, c);
}

/* s bounded as audit_string_bound() bounds it, escaped, in quotes; null for NULL. */
static void put_string(LineWriter *w, const char *key, const char *s) {
        size_t in, out, cost, total = 0, keep, used = 0, marker = strlen(AUDIT_TRUNCATED_MARKER), n;

        put_key(w, key);
        if (!s) {
                put(w, "null", 4);
                return;
        }
        if (is_plain(s, AUDIT_FIELD_MAX, &n)) {
                put(w, "\"", 1);
                put(w, s, n);
                put(w, "\"", 1);
                return;
        }
        for (const char *q = s; next_char(q, &in, &out, &cost); q += in)
                total += cost;
        keep = total > AUDIT_FIELD_MAX ? AUDIT_FIELD_MAX - marker : AUDIT_FIELD_MAX;

        put(w, "\"", 1);
        for (const char *q = s; next_char(q, &in, &out, &cost) && used + cost <= keep; q += in) {
                put_escaped(w, q, in, out);
                used += cost;
        }
        if (total > AUDIT_FIELD_MAX)
                put(w, AUDIT_TRUNCATED_MARKER, marker);
        put(w, "\"", 1);
}

/* Records come many per second: the date and time down to the second are formatted once per
 * second (per thread), the microseconds every time. */
static int put_time(LineWriter *w, const char *key, uint64_t realtime_usec) {
        static _Thread_local uint64_t cached_sec = UINT64_MAX;
        static _Thread_local char cached[AUDIT_TIME_STRLEN];
        uint64_t sec = realtime_usec / 1000000u, us = realtime_usec % 1000000u;
        char frac[8] = ".000000Z";

        if (sec != cached_sec) {
                int r = audit_format_time(sec * 1000000u, cached);
                if (r < 0)
                        return r;
                cached_sec = sec;
        }
        for (size_t i = 6; i > 0; i--, us /= 10)
                frac[i] = (char) ('0' + us % 10);

        put_key(w, key);
        put(w, "\"", 1);
        put(w, cached, strlen(cached) - strlen(".000000Z"));
        put(w, frac, sizeof(frac));
        put(w, "\"", 1);
        return 0;
}

int audit_record_serialize(const AuditRecord *rec, char **ret_line, size_t *ret_len) {
        char buf[AUDIT_RECORD_MAX];
        LineWriter w = { .p = buf, .end = buf + sizeof(buf) };
        size_t len;
        char *line;
        int r;

        assert(rec);
        assert(ret_line);
        assert(ret_len);

        if (!rec->event)
                return -EINVAL;

        /* The key order is part of the format (golden test): identity first, then what was
         * done to which object, then the outcome. */
        put(&w, "{", 1);
        put_u64(&w, "seq", rec->seq, false);
        r = put_time(&w, "time", rec->realtime_usec);
        if (r < 0)
                return r;
        put_u64(&w, "monotonicUsec", rec->monotonic_usec, false);
        put_string(&w, "event", rec->event);
        put_u64(&w, "uid", rec->uid, rec->uid == AUDIT_UID_INVALID);
        put_u64(&w, "gid", rec->gid, rec->gid == AUDIT_GID_INVALID);
        put_u64(&w, "pid", (uint64_t) rec->pid, rec->pid <= 0);
        put_string(&w, "unit", rec->unit);
        put_u64(&w, "contextId", rec->context_id, rec->context_id == AUDIT_U64_NONE);
        put_u64(&w, "vdeviceId", rec->vdevice_id, rec->vdevice_id == AUDIT_U64_NONE);
        put_string(&w, "pci", rec->pci);
        put_string(&w, "backend", rec->backend);
        put_string(&w, "scope", rec->scope);
        put_u64(&w, "scopeNumber", (uint64_t) rec->scope_number, rec->scope_number < 0);
        put_u64(&w, "requestSize", rec->request_size, rec->request_size == AUDIT_U64_NONE);
        put_u64(&w, "responseSize", rec->response_size, rec->response_size == AUDIT_U64_NONE);
        if (rec->request_unconsumed > 0)
                put_u64(&w, "requestUnconsumed", rec->request_unconsumed, false);
        put_string(&w, "result", rec->result);
        put_u64(&w, "latencyUsec", rec->latency_usec, rec->latency_usec == AUDIT_U64_NONE);
        if (rec->method)
                put_string(&w, "method", rec->method);
        if (rec->rule)
                put_string(&w, "rule", rec->rule);
        if (rec->reason)
                put_string(&w, "reason", rec->reason);
        if (rec->signalled)
                put_string(&w, "signalled", rec->signalled);
        if (rec->count > 0)
                put_u64(&w, "count", rec->count, false);
        if (rec->original_seq > 0)
                put_u64(&w, "originalSeq", rec->original_seq, false);
        if (rec->late_id > 0)
                put_u64(&w, "lateId", rec->late_id, false);
        if (rec->repaired_bytes > 0)
                put_u64(&w, "repairedBytes", rec->repaired_bytes, false);
        if (rec->owed_since_usec > 0) {
                r = put_time(&w, "owedSince", rec->owed_since_usec);
                if (r < 0)
                        return r;
        }
        put(&w, "}\n", 2);

        /* SECURITY: a record must never span lines, or a client could forge the next one. The
         * escaping above guarantees it; checked here so the invariant lives in one place. */
        len = (size_t) (w.p - buf);
        if (w.overflow || memchr(buf, '\n', len - 1))
                return -E2BIG;

        /* NUL-terminated as well, so listeners may treat it as a string. */
        line = malloc(len + 1);
        if (!line)
                return -ENOMEM;
        memcpy(line, buf, len);
        line[len] = 0;

        *ret_line = line;
        *ret_len = len;
        return 0;
}

int audit_line_parse(json_tokener *tok, const char *line, size_t len, json_object **ret_obj,
                     uint64_t *ret_seq) {
        _cleanup_json_ json_object *o = NULL;
        json_object *seq;
        int r;

        assert(tok);
        assert(line || len == 0);

        if (len == 0 || len >= AUDIT_RECORD_MAX)
                return -EBADMSG;
        /* Records are flat objects: depth 1 leaves no room for anything nested. */
        r = json_parse_strict(tok, 1, SIZE_MAX, line, len, &o);
        if (r == -ENOMEM)
                return r; /* not damage: the caller cannot tell a good record from a bad one now */
        if (r < 0)
                return -EBADMSG;
        if (!json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, "seq", &seq) || !json_object_is_type(seq, json_type_int) ||
            json_object_get_int64(seq) < 0)
                return -EBADMSG;

        if (ret_seq)
                *ret_seq = json_object_get_uint64(seq);
        if (ret_obj)
                *ret_obj = TAKE_PTR(o);
        return 0;
}
