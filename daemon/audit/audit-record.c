/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Audit record serialization. The escaping cost model below mirrors json-c's
 * json_escape_str() with JSON_C_TO_STRING_NOSLASHESCAPE, so a string bounded here is never
 * longer than its budget once json-c has escaped it. Runs in: worker, tests.
 */

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "audit-record.h"
#include "json-util.h"

#define REPLACEMENT_CHAR "\xef\xbf\xbd" /* U+FFFD */
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

bool audit_record_is_error(const AuditRecord *r) {
        return r->result && !streq(r->result, "ok");
}

/* Length of the valid UTF-8 sequence at s, or 0 if s does not start one (RFC 3629 table:
 * no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_sequence_len(const unsigned char *s) {
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

        if (s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if (s[i] < 0x80 || s[i] > 0xbf)
                        return 0;
        return n;
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
        } else
                *ret_in = *ret_out = *ret_cost = n;
        return true;
}

int audit_string_bound(const char *s, size_t budget, char **ret) {
        size_t in, out, cost, total = 0, keep, used = 0, marker = strlen(AUDIT_TRUNCATED_MARKER);
        bool truncate;
        char *buf, *p;

        assert(ret);
        assert(budget > marker);

        if (!s) {
                *ret = NULL;
                return 0;
        }

        for (const char *q = s; next_char(q, &in, &out, &cost); q += in)
                total += cost;
        truncate = total > budget;
        keep = truncate ? budget - marker : budget;

        /* Output bytes never exceed escaped bytes, so budget + 1 is always enough. */
        buf = p = malloc(budget + 1);
        if (!buf)
                return -ENOMEM;

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

        *ret = buf;
        return 0;
}

int audit_record_copy_bounded(const AuditRecord *src, AuditRecord *ret, char **ret_storage) {
        const char *const *in[] = { &src->event, &src->unit,  &src->pci,   &src->backend,
                                    &src->scope, &src->result };
        _cleanup_free_ char *storage = NULL;
        char *bounded[ELEMENTSOF(in)] = {};
        size_t size = 0, n = ELEMENTSOF(in);
        AuditRecord copy = *src;
        const char **out[] = { &copy.event, &copy.unit,  &copy.pci,   &copy.backend,
                               &copy.scope, &copy.result };
        char *p;
        int r = 0;

        assert(src);
        assert(ret);
        assert(ret_storage);

        for (size_t i = 0; i < n; i++) {
                r = audit_string_bound(*in[i], AUDIT_FIELD_MAX, &bounded[i]);
                if (r < 0)
                        goto finish;
                if (bounded[i])
                        size += strlen(bounded[i]) + 1;
        }

        /* One block, so a queued record is two allocations (this and its JSON line). */
        storage = p = malloc(size ?: 1);
        if (!storage) {
                r = -ENOMEM;
                goto finish;
        }
        for (size_t i = 0; i < n; i++) {
                if (!bounded[i]) {
                        *out[i] = NULL;
                        continue;
                }
                *out[i] = p;
                p = stpcpy(p, bounded[i]) + 1;
        }

        *ret = copy;
        *ret_storage = TAKE_PTR(storage);
finish:
        for (size_t i = 0; i < n; i++)
                free(bounded[i]);
        return r;
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

static int add_string(json_object *o, const char *key, const char *value) {
        _cleanup_free_ char *b = NULL;
        json_object *v = NULL;
        int r;

        r = audit_string_bound(value, AUDIT_FIELD_MAX, &b);
        if (r < 0)
                return r;
        if (b) {
                v = json_object_new_string(b);
                if (!v)
                        return -ENOMEM;
        }
        return json_object_add(o, key, v);
}

static int add_u64(json_object *o, const char *key, uint64_t value, bool is_null) {
        json_object *v = NULL;

        if (!is_null) {
                v = json_object_new_uint64(value);
                if (!v)
                        return -ENOMEM;
        }
        return json_object_add(o, key, v);
}

static int add_i64(json_object *o, const char *key, int64_t value, bool is_null) {
        json_object *v = NULL;

        if (!is_null) {
                v = json_object_new_int64(value);
                if (!v)
                        return -ENOMEM;
        }
        return json_object_add(o, key, v);
}

int audit_record_to_json(const AuditRecord *rec, json_object **ret) {
        _cleanup_json_ json_object *o = NULL;
        char ts[AUDIT_TIME_STRLEN];
        int r;

        assert(rec);
        assert(ret);

        if (!rec->event)
                return -EINVAL;
        r = audit_format_time(rec->realtime_usec, ts);
        if (r < 0)
                return r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        /* The key order is part of the format (golden test): identity first, then what was
         * done to which object, then the outcome. */
        if ((r = add_u64(o, "seq", rec->seq, false)) < 0 ||
            (r = add_string(o, "time", ts)) < 0 ||
            (r = add_u64(o, "monotonicUsec", rec->monotonic_usec, false)) < 0 ||
            (r = add_string(o, "event", rec->event)) < 0 ||
            (r = add_u64(o, "uid", rec->uid, rec->uid == AUDIT_UID_INVALID)) < 0 ||
            (r = add_u64(o, "gid", rec->gid, rec->gid == AUDIT_GID_INVALID)) < 0 ||
            (r = add_i64(o, "pid", rec->pid, rec->pid <= 0)) < 0 ||
            (r = add_string(o, "unit", rec->unit)) < 0 ||
            (r = add_u64(o, "contextId", rec->context_id, rec->context_id == AUDIT_U64_NONE)) < 0 ||
            (r = add_u64(o, "vdeviceId", rec->vdevice_id, rec->vdevice_id == AUDIT_U64_NONE)) < 0 ||
            (r = add_string(o, "pci", rec->pci)) < 0 ||
            (r = add_string(o, "backend", rec->backend)) < 0 ||
            (r = add_string(o, "scope", rec->scope)) < 0 ||
            (r = add_i64(o, "scopeNumber", rec->scope_number, rec->scope_number < 0)) < 0 ||
            (r = add_u64(o, "requestSize", rec->request_size, rec->request_size == AUDIT_U64_NONE)) < 0 ||
            (r = add_u64(o, "responseSize", rec->response_size, rec->response_size == AUDIT_U64_NONE)) < 0 ||
            (r = add_string(o, "result", rec->result)) < 0 ||
            (r = add_u64(o, "latencyUsec", rec->latency_usec, rec->latency_usec == AUDIT_U64_NONE)) < 0)
                return r;
        if (rec->repaired_bytes > 0) {
                r = add_u64(o, "repairedBytes", rec->repaired_bytes, false);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(o);
        return 0;
}

int audit_record_serialize(const AuditRecord *rec, char **ret_line, size_t *ret_len) {
        _cleanup_json_ json_object *o = NULL;
        const char *s;
        size_t len;
        char *line;
        int r;

        assert(rec);
        assert(ret_line);
        assert(ret_len);

        r = audit_record_to_json(rec, &o);
        if (r < 0)
                return r;

        s = json_object_to_json_string_length(o, JSON_FLAGS, &len);
        if (!s)
                return -ENOMEM;
        /* SECURITY: a record must never span lines, or a client could forge the next one. */
        if (len + 1 > AUDIT_RECORD_MAX || memchr(s, '\n', len))
                return -E2BIG;

        /* NUL-terminated as well, so listeners may treat it as a string. */
        line = malloc(len + 2);
        if (!line)
                return -ENOMEM;
        memcpy(line, s, len);
        line[len] = '\n';
        line[len + 1] = 0;

        *ret_line = line;
        *ret_len = len + 1;
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
        r = json_parse_strict(tok, 1, line, len, &o);
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
