/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Audit record serialization: golden lines, bounded strings, escaping, parsing. Runs in: tests. */

#include "audit-counters.h"
#include "audit-journal.h"
#include "audit-record.h"
#include "audit-test-util.h"
#include "counting-allocator.h"
#include "harness.h"
#include "json-util.h"
#include "log-capture.h"

static char *serialize(const AuditRecord *r) {
        char *line;
        size_t len;

        ASSERT_OK(audit_record_serialize(r, &line, &len));
        ASSERT_EQ(strlen(line), len);
        /* Exactly one newline, at the end. */
        ASSERT_TRUE(len > 0 && line[len - 1] == '\n');
        ASSERT_NULL(memchr(line, '\n', len - 1));
        ASSERT_LE(len, AUDIT_RECORD_MAX);
        return line;
}

static json_object *parse(const char *line) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        json_object *o;
        uint64_t seq;

        ASSERT_OK(json_tokener_new_strict(1, &tok));
        ASSERT_OK(audit_line_parse(tok, line, strlen(line) - 1, &o, &seq));
        return o;
}

TEST(golden_full) {
        AuditRecord r = sample_record();
        _cleanup_free_ char *line = NULL;

        r.seq = 42;
        r.realtime_usec = UINT64_C(1700000000123456);
        r.monotonic_usec = 987654321;
        line = serialize(&r);
        ASSERT_STREQ(line,
                     "{\"seq\":42,\"time\":\"2023-11-14T22:13:20.123456Z\",\"monotonicUsec\":987654321,"
                     "\"event\":\"guest-request\",\"uid\":107,\"gid\":107,\"pid\":4242,"
                     "\"unit\":\"qemu-vm1.scope\",\"contextId\":3,\"vdeviceId\":17,"
                     "\"pci\":\"0000:01:00.0\",\"backend\":\"emulated\",\"scope\":\"info\","
                     "\"scopeNumber\":0,\"requestSize\":16,\"responseSize\":32,\"result\":\"ok\","
                     "\"latencyUsec\":120}\n");
}

/* A guest call a policy rule allowed: "rule" after the outcome, only then. */
TEST(golden_rule) {
        AuditRecord r = sample_record();
        _cleanup_free_ char *line = NULL;

        r.seq = 42;
        r.realtime_usec = UINT64_C(1700000000123456);
        r.monotonic_usec = 987654321;
        r.rule = "vm-web1";
        line = serialize(&r);
        ASSERT_STREQ(line,
                     "{\"seq\":42,\"time\":\"2023-11-14T22:13:20.123456Z\",\"monotonicUsec\":987654321,"
                     "\"event\":\"guest-request\",\"uid\":107,\"gid\":107,\"pid\":4242,"
                     "\"unit\":\"qemu-vm1.scope\",\"contextId\":3,\"vdeviceId\":17,"
                     "\"pci\":\"0000:01:00.0\",\"backend\":\"emulated\",\"scope\":\"info\","
                     "\"scopeNumber\":0,\"requestSize\":16,\"responseSize\":32,\"result\":\"ok\","
                     "\"latencyUsec\":120,\"rule\":\"vm-web1\"}\n");
}

/* A guest request the device did not read whole: "requestUnconsumed" after the sizes, from 1
 * byte on; none when it read all of it. */
TEST(golden_request_unconsumed) {
        AuditRecord r = sample_record();
        _cleanup_free_ char *line = NULL, *none = NULL;

        r.seq = 42;
        r.realtime_usec = UINT64_C(1700000000123456);
        r.monotonic_usec = 987654321;
        r.request_unconsumed = 1;
        line = serialize(&r);
        ASSERT_STREQ(line,
                     "{\"seq\":42,\"time\":\"2023-11-14T22:13:20.123456Z\",\"monotonicUsec\":987654321,"
                     "\"event\":\"guest-request\",\"uid\":107,\"gid\":107,\"pid\":4242,"
                     "\"unit\":\"qemu-vm1.scope\",\"contextId\":3,\"vdeviceId\":17,"
                     "\"pci\":\"0000:01:00.0\",\"backend\":\"emulated\",\"scope\":\"info\","
                     "\"scopeNumber\":0,\"requestSize\":16,\"responseSize\":32,\"requestUnconsumed\":1,"
                     "\"result\":\"ok\",\"latencyUsec\":120}\n");

        r.request_unconsumed = 0;
        none = serialize(&r);
        ASSERT_STREQ(none,
                     "{\"seq\":42,\"time\":\"2023-11-14T22:13:20.123456Z\",\"monotonicUsec\":987654321,"
                     "\"event\":\"guest-request\",\"uid\":107,\"gid\":107,\"pid\":4242,"
                     "\"unit\":\"qemu-vm1.scope\",\"contextId\":3,\"vdeviceId\":17,"
                     "\"pci\":\"0000:01:00.0\",\"backend\":\"emulated\",\"scope\":\"info\","
                     "\"scopeNumber\":0,\"requestSize\":16,\"responseSize\":32,\"result\":\"ok\","
                     "\"latencyUsec\":120}\n");
}

/* A call the policy refused: the client's rule whose grant was missing, then why ("reason"),
 * only then; and a failed reload's message, quoting a file, cut and made UTF-8 as every string. */
TEST(golden_reason) {
        AuditRecord r = AUDIT_RECORD_INIT;
        _cleanup_free_ char *line = NULL, *quote = malloc(1001);
        _cleanup_json_ json_object *o = NULL;
        const char *reason;

        r.event = "guest-request";
        r.uid = 107;
        r.result = "io.tsmd.Guest.Denied";
        r.rule = "vm-web1";
        r.reason = "scope 'debug-read' not granted";
        r.seq = 9;
        line = serialize(&r);
        ASSERT_STREQ(line,
                     "{\"seq\":9,\"time\":\"1970-01-01T00:00:00.000000Z\",\"monotonicUsec\":0,"
                     "\"event\":\"guest-request\",\"uid\":107,\"gid\":null,\"pid\":null,\"unit\":null,"
                     "\"contextId\":null,\"vdeviceId\":null,\"pci\":null,\"backend\":null,"
                     "\"scope\":null,\"scopeNumber\":null,\"requestSize\":null,\"responseSize\":null,"
                     "\"result\":\"io.tsmd.Guest.Denied\",\"latencyUsec\":null,\"rule\":\"vm-web1\","
                     "\"reason\":\"scope 'debug-read' not granted\"}\n");

        free(line);
        memset(quote, 'q', 1000);
        memcpy(quote, "/etc/tsmd/policy.d/\xff.conf:3: \"\n", strlen("/etc/tsmd/policy.d/\xff.conf:3: \"\n"));
        quote[1000] = 0;
        r.rule = NULL;
        r.reason = quote;
        line = serialize(&r); /* one line, the quote's newline escaped */
        o = parse(line);
        reason = json_get_string(o, "reason");
        ASSERT_NOT_NULL(reason);
        ASSERT_LE(strlen(reason), AUDIT_FIELD_MAX);
        ASSERT_EQ(strncmp(reason, "/etc/tsmd/policy.d/\xef\xbf\xbd.conf:3: \"\nqq", 35), 0);
        ASSERT_STREQ(reason + strlen(reason) - strlen(AUDIT_TRUNCATED_MARKER), AUDIT_TRUNCATED_MARKER);
        ASSERT_NULL(json_object_object_get(o, "rule"));
}

/* A reload by SIGHUP: its sender as the kernel named it (uid, pid; no gid), the unit of that pid,
 * and "signalled", the process it was sent to, after the outcome; a record of anything else has
 * no "signalled". */
TEST(golden_signalled_reload) {
        AuditRecord r = AUDIT_RECORD_INIT;
        _cleanup_free_ char *line = NULL;

        r.event = "reload";
        r.uid = 0;
        r.pid = 1;
        r.unit = "init.scope";
        r.result = "ok";
        r.signalled = "tsmd";
        r.seq = 4;
        line = serialize(&r);
        ASSERT_STREQ(line,
                     "{\"seq\":4,\"time\":\"1970-01-01T00:00:00.000000Z\",\"monotonicUsec\":0,"
                     "\"event\":\"reload\",\"uid\":0,\"gid\":null,\"pid\":1,\"unit\":\"init.scope\","
                     "\"contextId\":null,\"vdeviceId\":null,\"pci\":null,\"backend\":null,"
                     "\"scope\":null,\"scopeNumber\":null,\"requestSize\":null,\"responseSize\":null,"
                     "\"result\":\"ok\",\"latencyUsec\":null,\"signalled\":\"tsmd\"}\n");
}

/* A summary of refusals: the fields a summary has, "count" after "method" and the outcome. */
TEST(golden_summary) {
        AuditRecord r = AUDIT_RECORD_INIT;
        _cleanup_free_ char *line = NULL;

        r.event = "unknown-method";
        r.uid = 65533;
        r.result = "org.varlink.service.MethodNotFound";
        r.method = "io.tsmd.Guest.Nope";
        r.count = 1234;
        r.seq = 7;
        line = serialize(&r);
        ASSERT_STREQ(line,
                     "{\"seq\":7,\"time\":\"1970-01-01T00:00:00.000000Z\",\"monotonicUsec\":0,"
                     "\"event\":\"unknown-method\",\"uid\":65533,\"gid\":null,\"pid\":null,\"unit\":null,"
                     "\"contextId\":null,\"vdeviceId\":null,\"pci\":null,\"backend\":null,"
                     "\"scope\":null,\"scopeNumber\":null,\"requestSize\":null,\"responseSize\":null,"
                     "\"result\":\"org.varlink.service.MethodNotFound\",\"latencyUsec\":null,"
                     "\"method\":\"io.tsmd.Guest.Nope\",\"count\":1234}\n");
}

/* A late answer of the kernel: the call's record and the monitor's id of the answer, after the
 * outcome. */
TEST(golden_late) {
        AuditRecord r = AUDIT_RECORD_INIT;
        _cleanup_free_ char *line = NULL;

        r.event = "bind-late";
        r.uid = 107;
        r.vdevice_id = 11;
        r.pci = "0000:01:00.0";
        r.result = "ok";
        r.latency_usec = 5000;
        r.original_seq = 40;
        r.late_id = 3;
        r.seq = 44;
        line = serialize(&r);
        ASSERT_STREQ(line,
                     "{\"seq\":44,\"time\":\"1970-01-01T00:00:00.000000Z\",\"monotonicUsec\":0,"
                     "\"event\":\"bind-late\",\"uid\":107,\"gid\":null,\"pid\":null,\"unit\":null,"
                     "\"contextId\":null,\"vdeviceId\":11,\"pci\":\"0000:01:00.0\",\"backend\":null,"
                     "\"scope\":null,\"scopeNumber\":null,\"requestSize\":null,\"responseSize\":null,"
                     "\"result\":\"ok\",\"latencyUsec\":5000,\"originalSeq\":40,\"lateId\":3}\n");
}

TEST(golden_nulls_and_repaired) {
        AuditRecord r = AUDIT_RECORD_INIT;
        _cleanup_free_ char *line = NULL;

        r.event = "open-context";
        r.seq = 1;
        r.repaired_bytes = 17;
        line = serialize(&r);
        ASSERT_STREQ(line,
                     "{\"seq\":1,\"time\":\"1970-01-01T00:00:00.000000Z\",\"monotonicUsec\":0,"
                     "\"event\":\"open-context\",\"uid\":null,\"gid\":null,\"pid\":null,\"unit\":null,"
                     "\"contextId\":null,\"vdeviceId\":null,\"pci\":null,\"backend\":null,"
                     "\"scope\":null,\"scopeNumber\":null,\"requestSize\":null,\"responseSize\":null,"
                     "\"result\":null,\"latencyUsec\":null,\"repairedBytes\":17}\n");
}

/* The reference: what the serializer did before it wrote lines itself (json-c objects with
 * bounded strings). The line writer must match it byte for byte. */
static void add_ref_string(json_object *o, const char *key, const char *value) {
        _cleanup_free_ char *b = NULL;

        ASSERT_OK(audit_string_bound(value, AUDIT_FIELD_MAX, &b));
        ASSERT_OK(json_object_add_string_or_null(o, key, b));
}

static void add_ref_u64(json_object *o, const char *key, uint64_t v, bool is_null) {
        ASSERT_OK(is_null ? json_object_add_null(o, key) : json_object_add(o, key, json_object_new_uint64(v)));
}

/* Whether a terminal acts on code point cp or shows it as nothing: a C1 control, a line or
 * paragraph separator, or one of Unicode 15's Default_Ignorable_Code_Point (the bidirectional
 * formatting characters among them) (the list written out here, from DerivedCoreProperties.txt,
 * not taken from the code under test). */
static bool is_terminal_control(uint32_t cp) {
        return (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 || cp == 0xad || cp == 0x34f ||
               cp == 0x61c || cp == 0x115f || cp == 0x1160 || cp == 0x17b4 || cp == 0x17b5 ||
               (cp >= 0x180b && cp <= 0x180f) || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x202a && cp <= 0x202e) ||
               (cp >= 0x2060 && cp <= 0x206f) || cp == 0x3164 || (cp >= 0xfe00 && cp <= 0xfe0f) || cp == 0xfeff ||
               cp == 0xffa0 || (cp >= 0xfff0 && cp <= 0xfff8) || (cp >= 0x1bca0 && cp <= 0x1bca3) ||
               (cp >= 0x1d173 && cp <= 0x1d17a) || (cp >= 0xe0000 && cp <= 0xe0fff);
}

/* json-c's line (valid UTF-8: its strings were bounded) with those characters as \uXXXX, as the
 * writer has them, and a newline. Decoded here on its own. */
static char *escape_terminal_controls(const char *json) {
        const unsigned char *p = (const unsigned char *) json;
        char *line = malloc(strlen(json) * 6 + 2), *q = line;

        ASSERT_NOT_NULL(line);
        while (*p) {
                size_t n = *p < 0x80 ? 1 : *p < 0xe0 ? 2 : *p < 0xf0 ? 3 : 4;
                uint32_t cp = n == 1 ? *p : *p & (0x7f >> n);

                for (size_t i = 1; i < n; i++)
                        cp = cp << 6 | (p[i] & 0x3f);
                if (is_terminal_control(cp) && cp > 0xffff)
                        q += sprintf(q, "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
                else if (is_terminal_control(cp))
                        q += sprintf(q, "\\u%04x", cp);
                else
                        q = mempcpy(q, p, n);
                p += n;
        }
        strcpy(q, "\n");
        return line;
}

static char *reference_line(const AuditRecord *r) {
        _cleanup_json_ json_object *o = json_object_new_object();
        char ts[AUDIT_TIME_STRLEN];

        ASSERT_OK(audit_format_time(r->realtime_usec, ts));
        add_ref_u64(o, "seq", r->seq, false);
        add_ref_string(o, "time", ts);
        add_ref_u64(o, "monotonicUsec", r->monotonic_usec, false);
        add_ref_string(o, "event", r->event);
        add_ref_u64(o, "uid", r->uid, r->uid == AUDIT_UID_INVALID);
        add_ref_u64(o, "gid", r->gid, r->gid == AUDIT_GID_INVALID);
        ASSERT_OK(r->pid <= 0 ? json_object_add_null(o, "pid") :
                                json_object_add(o, "pid", json_object_new_int64(r->pid)));
        add_ref_string(o, "unit", r->unit);
        add_ref_u64(o, "contextId", r->context_id, r->context_id == AUDIT_U64_NONE);
        add_ref_u64(o, "vdeviceId", r->vdevice_id, r->vdevice_id == AUDIT_U64_NONE);
        add_ref_string(o, "pci", r->pci);
        add_ref_string(o, "backend", r->backend);
        add_ref_string(o, "scope", r->scope);
        ASSERT_OK(r->scope_number < 0 ? json_object_add_null(o, "scopeNumber") :
                                        json_object_add(o, "scopeNumber", json_object_new_int64(r->scope_number)));
        add_ref_u64(o, "requestSize", r->request_size, r->request_size == AUDIT_U64_NONE);
        add_ref_u64(o, "responseSize", r->response_size, r->response_size == AUDIT_U64_NONE);
        if (r->request_unconsumed > 0)
                add_ref_u64(o, "requestUnconsumed", r->request_unconsumed, false);
        add_ref_string(o, "result", r->result);
        add_ref_u64(o, "latencyUsec", r->latency_usec, r->latency_usec == AUDIT_U64_NONE);
        if (r->method)
                add_ref_string(o, "method", r->method);
        if (r->count > 0)
                add_ref_u64(o, "count", r->count, false);
        if (r->original_seq > 0)
                add_ref_u64(o, "originalSeq", r->original_seq, false);
        if (r->late_id > 0)
                add_ref_u64(o, "lateId", r->late_id, false);
        if (r->repaired_bytes > 0)
                add_ref_u64(o, "repairedBytes", r->repaired_bytes, false);

        return escape_terminal_controls(
                json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

static void assert_matches_reference(const AuditRecord *r) {
        _cleanup_free_ char *line = serialize(r), *ref = reference_line(r);

        ASSERT_STREQ(line, ref);
}

TEST(writer_matches_json_c) {
        AuditRecord r = sample_record();
        char one[2] = {}, s[AUDIT_FIELD_MAX * 2 + 1];
        uint64_t x = 0x9e3779b97f4a7c15;

        /* Every byte on its own, in every string field. */
        for (unsigned c = 1; c < 256; c++) {
                one[0] = (char) c;
                r.unit = r.pci = r.backend = r.scope = r.result = r.method = one;
                assert_matches_reference(&r);
        }
        /* Every character of two bytes, and those of three that begin 0xe2 0x80 or 0x81 (the bidi
         * controls among them), alone and between text, in every string field. */
        for (uint32_t cp = 0x80; cp < 0x2080; cp = cp == 0x7ff ? 0x2000 : cp + 1) {
                char c[8] = {}, t[16];

                if (cp < 0x800) {
                        c[0] = (char) (0xc0 | cp >> 6);
                        c[1] = (char) (0x80 | (cp & 0x3f));
                } else {
                        c[0] = (char) (0xe0 | cp >> 12);
                        c[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
                        c[2] = (char) (0x80 | (cp & 0x3f));
                }
                snprintf(t, sizeof(t), "a%sb", c);
                r.unit = r.pci = r.backend = r.result = c;
                r.scope = r.method = t;
                assert_matches_reference(&r);
        }
        /* And the ranges of three and four bytes where others are (Hangul fillers, Mongolian
         * selectors, variation selectors, BOM, U+FFA0, U+FFF0..; U+1BCA0.., U+1D173.., tags), with
         * their neighbours, and an emoji. */
        static const uint32_t more[][2] = { { 0x115e, 0x1161 }, { 0x17b3, 0x17b6 }, { 0x180a, 0x1810 },
                                            { 0x3163, 0x3165 }, { 0xfdff, 0xfe10 }, { 0xfefe, 0xff00 },
                                            { 0xff9f, 0xffa1 }, { 0xffef, 0xfff9 }, { 0x1bc9f, 0x1bca4 },
                                            { 0x1d172, 0x1d17b }, { 0x1f600, 0x1f601 }, { 0xdffff, 0xe0002 },
                                            { 0xe0ffe, 0xe1001 } };
        for (size_t i = 0; i < ELEMENTSOF(more); i++)
                for (uint32_t cp = more[i][0]; cp <= more[i][1]; cp++) {
                        char c[8] = {}, t[16];

                        if (cp < 0x10000) {
                                c[0] = (char) (0xe0 | cp >> 12);
                                c[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
                                c[2] = (char) (0x80 | (cp & 0x3f));
                        } else {
                                c[0] = (char) (0xf0 | cp >> 18);
                                c[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
                                c[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
                                c[3] = (char) (0x80 | (cp & 0x3f));
                        }
                        snprintf(t, sizeof(t), "a%sb", c);
                        r.unit = r.pci = r.backend = r.result = c;
                        r.scope = r.method = t;
                        assert_matches_reference(&r);
                }
        r = sample_record();
        /* Plain text up to and past the bound, the length that is its own escaped form and the
         * one that is cut. */
        for (size_t n = AUDIT_FIELD_MAX - 17; n <= AUDIT_FIELD_MAX + 17; n++) {
                memset(s, 'p', n);
                s[n] = 0;
                r = sample_record();
                r.unit = r.scope = s;
                assert_matches_reference(&r);
        }
        /* Random bytes of random lengths around the bound (escapes and multibyte sequences
         * straddling the cut), numbers at their extremes, times across seconds. */
        for (unsigned i = 0; i < 2000; i++) {
                size_t n = (size_t) (x % sizeof(s));

                for (size_t k = 0; k < n; k++) {
                        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                        /* Mostly printable, some escapes, some high bytes. */
                        if (x % 4 == 0)
                                s[k] = (char) (1 + x % 255);
                        else if (x % 4 == 1)
                                s[k] = "\"\\\n\xc3\xa9\xe2\x82\xac"[x % 8];
                        else
                                s[k] = (char) ('a' + x % 26);
                }
                s[n] = 0;
                r = sample_record();
                r.unit = s;
                r.scope = i % 2 ? s + n / 2 : NULL;
                r.seq = i % 3 ? x : UINT64_MAX;
                r.realtime_usec = UINT64_C(1700000000000000) + x % (UINT64_C(86400) * 1000000);
                r.monotonic_usec = x >> 3;
                r.uid = i % 5 ? (uid_t) x : AUDIT_UID_INVALID;
                r.pid = (pid_t) (x % 5000000);
                r.scope_number = i % 7 ? (int64_t) (x >> 1) : AUDIT_SCOPE_NUMBER_NONE;
                r.latency_usec = x % 3 ? x : AUDIT_U64_NONE;
                r.repaired_bytes = i % 11 ? 0 : x;
                r.method = i % 13 ? NULL : s;
                r.count = i % 17 ? 0 : x;
                r.original_seq = i % 19 ? 0 : x;
                r.late_id = i % 23 ? 0 : x >> 2;
                r.request_unconsumed = i % 29 ? 0 : x >> 4;
                assert_matches_reference(&r);
        }
}

TEST(event_is_mandatory) {
        AuditRecord r = AUDIT_RECORD_INIT;
        char *line;
        size_t len;

        ASSERT_ERRNO(audit_record_serialize(&r, &line, &len), EINVAL);
}

TEST(escaping_cannot_forge_a_record) {
        AuditRecord r = sample_record();
        _cleanup_free_ char *line = NULL;
        _cleanup_json_ json_object *o = NULL;

        r.unit = "evil\n{\"seq\":999}\t\x01\x7f/x";
        line = serialize(&r);
        ASSERT_NOT_NULL(strstr(line, "\"unit\":\"evil\\n{\\\"seq\\\":999}\\t\\u0001\x7f/x\""));
        o = parse(line);
        ASSERT_STREQ(json_get_string(o, "unit"), "evil\n{\"seq\":999}\t\x01\x7f/x");
}

/* What a terminal acts on is written as a \u escape (tail -f audit.log shows it as text), and the
 * line reads back as the same string; other non-ASCII text stays as it is. */
TEST(terminal_controls_escaped) {
        static const struct {
                const char *utf8, *escaped;
        } unsafe[] = {
                { "\xc2\x80", "\\u0080" }, { "\xc2\x85", "\\u0085" }, { "\xc2\x9b", "\\u009b" },
                { "\xc2\x9f", "\\u009f" }, { "\xd8\x9c", "\\u061c" }, { "\xe2\x80\x8e", "\\u200e" },
                { "\xe2\x80\x8f", "\\u200f" }, { "\xe2\x80\xaa", "\\u202a" }, { "\xe2\x80\xab", "\\u202b" },
                { "\xe2\x80\xac", "\\u202c" }, { "\xe2\x80\xad", "\\u202d" }, { "\xe2\x80\xae", "\\u202e" },
                { "\xe2\x81\xa6", "\\u2066" }, { "\xe2\x81\xa7", "\\u2067" }, { "\xe2\x81\xa8", "\\u2068" },
                { "\xe2\x81\xa9", "\\u2069" }, { "\xe2\x80\x8b", "\\u200b" }, { "\xc2\xad", "\\u00ad" },
                { "\xef\xbb\xbf", "\\ufeff" }, { "\xe2\x80\xa8", "\\u2028" }, { "\xe2\x80\xa9", "\\u2029" },
                { "\xf3\xa0\x81\x81", "\\udb40\\udc41" },
        };
        /* Their neighbours, and text of other scripts: é, 中, U+00A0, U+061B, U+2010, U+202F, U+2070,
         * U+1F600. */
        static const char *const safe[] = { "\xc3\xa9",     "\xe4\xb8\xad", "\xc2\xa0",     "\xd8\x9b",
                                             "\xe2\x80\x90", "\xe2\x80\xaf", "\xe2\x81\xb0", "\xf0\x9f\x98\x80" };

        for (size_t i = 0; i < ELEMENTSOF(unsafe); i++) {
                _cleanup_free_ char *in = NULL, *want = NULL, *line = NULL;
                _cleanup_json_ json_object *o = NULL;
                AuditRecord r = sample_record();

                ASSERT_TRUE(asprintf(&in, "gnp%s.exe", unsafe[i].utf8) > 0);
                ASSERT_TRUE(asprintf(&want, "\"scope\":\"gnp%s.exe\"", unsafe[i].escaped) > 0);
                r.scope = in;
                line = serialize(&r);
                if (!strstr(line, want))
                        TEST_FAIL("U+%s not escaped: %s", unsafe[i].escaped + 2, line);
                ASSERT_NULL(strstr(line, unsafe[i].utf8));
                o = parse(line);
                ASSERT_STREQ(json_get_string(o, "scope"), in);
        }
        for (size_t i = 0; i < ELEMENTSOF(safe); i++) {
                _cleanup_free_ char *in = NULL, *want = NULL, *line = NULL;
                AuditRecord r = sample_record();

                ASSERT_TRUE(asprintf(&in, "x%sy", safe[i]) > 0);
                ASSERT_TRUE(asprintf(&want, "\"unit\":\"%s\"", in) > 0);
                r.unit = in;
                line = serialize(&r);
                if (!strstr(line, want))
                        TEST_FAIL("not kept as it is: %s", line);
        }
}

/* A \u escape costs six bytes of a field's budget, as json-c's \u00XX do: a bounded string still
 * fits its budget once written. */
TEST(truncation_counts_terminal_escapes) {
        _cleanup_free_ char *in = malloc(3 * 200 + 1), *out = NULL, *line = NULL;
        size_t keep = AUDIT_FIELD_MAX - strlen(AUDIT_TRUNCATED_MARKER);
        AuditRecord r = sample_record();
        const char *start, *end;

        for (size_t i = 0; i < 200; i++)
                memcpy(in + 3 * i, "\xe2\x80\xae", 3); /* U+202E */
        in[600] = 0;
        ASSERT_OK(audit_string_bound(in, AUDIT_FIELD_MAX, &out));
        ASSERT_EQ(strlen(out), keep / 6 * 3 + strlen(AUDIT_TRUNCATED_MARKER));
        r.scope = in;
        line = serialize(&r);
        start = strstr(line, "\"scope\":\"");
        ASSERT_NOT_NULL(start);
        start += strlen("\"scope\":\"");
        end = strchr(start, '"');
        ASSERT_NOT_NULL(end);
        ASSERT_LE((size_t) (end - start), AUDIT_FIELD_MAX);
        ASSERT_EQ((size_t) (end - start), keep / 6 * 6 + strlen(AUDIT_TRUNCATED_MARKER));
}

TEST(truncation_ascii) {
        _cleanup_free_ char *in = malloc(1001), *out = NULL, *expect = malloc(300);
        size_t keep = AUDIT_FIELD_MAX - strlen(AUDIT_TRUNCATED_MARKER);

        memset(in, 'a', 1000);
        in[1000] = 0;
        ASSERT_OK(audit_string_bound(in, AUDIT_FIELD_MAX, &out));
        memset(expect, 'a', keep);
        strcpy(expect + keep, AUDIT_TRUNCATED_MARKER);
        ASSERT_STREQ(out, expect);
        ASSERT_EQ(strlen(out), AUDIT_FIELD_MAX);

        /* Exactly at the budget: kept whole, no marker. */
        in[AUDIT_FIELD_MAX] = 0;
        free(out);
        ASSERT_OK(audit_string_bound(in, AUDIT_FIELD_MAX, &out));
        ASSERT_STREQ(out, in);

        /* Idempotent: bounding a bounded string changes nothing. */
        in[1000 - 1] = 0;
        memset(in, 'b', 999);
        free(out);
        ASSERT_OK(audit_string_bound(in, AUDIT_FIELD_MAX, &out));
        {
                _cleanup_free_ char *again = NULL;
                ASSERT_OK(audit_string_bound(out, AUDIT_FIELD_MAX, &again));
                ASSERT_STREQ(again, out);
        }
}

TEST(truncation_counts_escapes) {
        _cleanup_free_ char *in = malloc(301), *out = NULL;
        size_t keep = AUDIT_FIELD_MAX - strlen(AUDIT_TRUNCATED_MARKER);

        memset(in, '\n', 300);
        in[300] = 0;
        ASSERT_OK(audit_string_bound(in, AUDIT_FIELD_MAX, &out));
        /* "\n" escapes to 2 bytes, so half as many fit. */
        ASSERT_EQ(strlen(out), keep / 2 + strlen(AUDIT_TRUNCATED_MARKER));
        ASSERT_STREQ(out + keep / 2, AUDIT_TRUNCATED_MARKER);

        memset(in, '\x02', 300);
        free(out);
        ASSERT_OK(audit_string_bound(in, AUDIT_FIELD_MAX, &out));
        ASSERT_EQ(strlen(out), keep / 6 + strlen(AUDIT_TRUNCATED_MARKER));
}

TEST(truncation_keeps_utf8_whole) {
        _cleanup_free_ char *in = malloc(2 * 200 + 1), *out = NULL;
        size_t keep = AUDIT_FIELD_MAX - strlen(AUDIT_TRUNCATED_MARKER);

        for (size_t i = 0; i < 200; i++)
                memcpy(in + 2 * i, "\xc3\xa9", 2); /* é */
        in[400] = 0;
        ASSERT_OK(audit_string_bound(in, AUDIT_FIELD_MAX, &out));
        ASSERT_EQ(strlen(out), keep / 2 * 2 + strlen(AUDIT_TRUNCATED_MARKER));
        ASSERT_TRUE(memcmp(out + keep / 2 * 2 - 2, "\xc3\xa9", 2) == 0);
}

TEST(invalid_utf8_replaced) {
        AuditRecord r = sample_record();
        _cleanup_free_ char *out = NULL, *line = NULL;
        _cleanup_json_ json_object *o = NULL;

        ASSERT_OK(audit_string_bound("a\xff" "b\xc3(\xed\xa0\x80", 64, &out));
        ASSERT_STREQ(out, "a\xef\xbf\xbd" "b\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");

        /* The strict parser validates UTF-8: a record with client garbage still parses. */
        r.pci = "\xc0\xaf\xff";
        line = serialize(&r);
        o = parse(line);
        ASSERT_STREQ(json_get_string(o, "pci"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}

TEST(worst_case_fits) {
        _cleanup_free_ char *junk = malloc(10001), *line = NULL;
        AuditRecord r = AUDIT_RECORD_INIT;
        _cleanup_json_ json_object *o = NULL;

        memset(junk, '\x01', 10000);
        junk[10000] = 0;
        r.event = r.unit = r.pci = r.backend = r.scope = r.result = r.method = r.rule = r.reason = r.signalled =
                junk;
        r.uid = AUDIT_UID_INVALID - 1;
        r.gid = AUDIT_GID_INVALID - 1;
        r.pid = INT32_MAX;
        r.context_id = r.vdevice_id = r.request_size = r.response_size = r.latency_usec =
                UINT64_MAX - 1;
        r.scope_number = INT64_MAX;
        r.seq = r.monotonic_usec = r.repaired_bytes = r.count = r.original_seq = r.late_id = r.request_unconsumed =
                UINT64_MAX;
        r.realtime_usec = UINT64_C(253402300799999999); /* 9999-12-31T23:59:59.999999Z */
        line = serialize(&r);
        o = parse(line);
        ASSERT_NOT_NULL(strstr(line, "\"time\":\"9999-12-31T23:59:59.999999Z\""));
}

TEST(copy_bounded) {
        _cleanup_free_ char *storage = NULL, *long_unit = malloc(1001);
        AuditRecord in = sample_record(), out;

        memset(long_unit, 'u', 1000);
        long_unit[1000] = 0;
        in.unit = long_unit;
        in.result = NULL;
        in.method = "bad\xff";
        in.rule = "vm-web1";
        in.reason = long_unit;
        ASSERT_OK(audit_record_copy_bounded(&in, &out, &storage));
        ASSERT_STREQ(out.rule, "vm-web1");
        ASSERT_TRUE(out.rule != in.rule);
        ASSERT_EQ(strlen(out.reason), AUDIT_FIELD_MAX);
        ASSERT_TRUE(out.reason != in.reason);
        ASSERT_EQ(strlen(out.unit), AUDIT_FIELD_MAX);
        ASSERT_STREQ(out.unit + AUDIT_FIELD_MAX - strlen(AUDIT_TRUNCATED_MARKER), AUDIT_TRUNCATED_MARKER);
        ASSERT_NULL(out.result);
        ASSERT_STREQ(out.event, "guest-request");
        ASSERT_STREQ(out.pci, "0000:01:00.0");
        ASSERT_STREQ(out.backend, "emulated");
        ASSERT_STREQ(out.scope, "info");
        ASSERT_STREQ(out.method, "bad\xef\xbf\xbd");
        ASSERT_TRUE(out.pci != in.pci);
        ASSERT_EQ(out.context_id, 3);
}

/* A record is queued with its strings in one block, and bounding them takes no other: a guest
 * request's record costs one allocation here, not one per string as well. */
TEST(copy_bounded_allocates_once) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        AuditRecord in = sample_record(), out;
        _cleanup_free_ char *storage = NULL;

        in.method = "io.tsmd.Guest.Nothing";
        alloc_calls = 0;
        ASSERT_OK(audit_record_copy_bounded(&in, &out, &storage));
        ASSERT_EQ(alloc_calls, 1u);
        ASSERT_STREQ(out.method, "io.tsmd.Guest.Nothing");

        /* Out of memory for it: nothing copied, nothing left. */
        alloc_calls = 0;
        alloc_fail_at = 1;
        ASSERT_ERRNO(audit_record_copy_bounded(&in, &out, &storage), ENOMEM);
        alloc_fail_at = 0;
}

TEST(line_parse_rejects) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        static const char *const bad[] = {
                "", "[]", "{}", "{\"seq\":\"1\"}", "{\"seq\":-1}", "{\"seq\":1.5}",
                "{\"seq\":1,\"x\":{\"y\":1}}", "{\"seq\":1", "{\"seq\":1,\"seq\":2}", "garbage",
        };
        uint64_t seq;

        ASSERT_OK(json_tokener_new_strict(1, &tok));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (audit_line_parse(tok, bad[i], strlen(bad[i]), NULL, &seq) != -EBADMSG)
                        TEST_FAIL("accepted '%s'", bad[i]);
        ASSERT_OK(audit_line_parse(tok, "{\"seq\":18446744073709551615}", 28, NULL, &seq));
        ASSERT_EQ(seq == UINT64_MAX, 1);
}

/* A record that cannot be read for lack of memory is -ENOMEM, whichever allocation fails: not
 * -EBADMSG, which would have resume and queries take a good record for damage. */
TEST(line_parse_out_of_memory_is_no_bad_line) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_free_ char *line = NULL;
        AuditRecord r = sample_record();
        unsigned failing;

        r.seq = 4242;
        line = serialize(&r);
        ASSERT_OK(json_tokener_new_strict(1, &tok));
        for (failing = 1;; failing++) {
                _cleanup_json_ json_object *o = NULL;
                uint64_t seq;
                int k;

                alloc_calls = 0;
                alloc_fail_at = failing;
                k = audit_line_parse(tok, line, strlen(line) - 1, &o, &seq);
                alloc_fail_at = 0;
                if (k >= 0) {
                        ASSERT_EQ(seq, 4242u);
                        break;
                }
                if (k != -ENOMEM)
                        TEST_FAIL("allocation %u failing: %s", failing, strerror(-k));
        }
        ASSERT_GE(failing, 2u); /* some allocation did fail */
}

/* A record's time reads back to the microsecond it was written with (QueryAudit's time window),
 * and nothing but that form reads. */
TEST(time_parses_back) {
        static const uint64_t times[] = { 0, 1, 999999, 1000000, UINT64_C(1700000000123456),
                                          UINT64_C(951782400000000) /* 2000-02-29 */,
                                          UINT64_C(253402300799999999) /* 9999-12-31T23:59:59.999999Z */ };
        static const char *const bad[] = {
                "", "2024-05-06T07:08:09.123456", "2024-05-06T07:08:09.123456z", "2024-05-06 07:08:09.123456Z",
                "2024-05-06T07:08:09.12345Z", "2024-05-06T07:08:09.1234567Z", "2024-13-06T07:08:09.123456Z",
                "2024-00-06T07:08:09.123456Z", "2024-02-30T07:08:09.123456Z", "2023-02-29T07:08:09.123456Z",
                "2024-05-06T24:08:09.123456Z", "2024-05-06T07:60:09.123456Z", "2024-05-06T07:08:60.123456Z",
                "2024-05-06T07:08:09.12345xZ", "1969-12-31T23:59:59.999999Z", "+024-05-06T07:08:09.123456Z",
                "2024-05-06T07:08:09.123456Z ", "yesterday",
        };
        uint64_t t;

        for (size_t i = 0; i < ELEMENTSOF(times); i++) {
                char buf[AUDIT_TIME_STRLEN];

                ASSERT_OK(audit_format_time(times[i], buf));
                ASSERT_OK(audit_parse_time(buf, &t));
                ASSERT_EQ(t, times[i]);
        }
        ASSERT_OK(audit_parse_time("2024-02-29T00:00:00.000001Z", &t));
        ASSERT_EQ(t, UINT64_C(1709164800000001));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (audit_parse_time(bad[i], &t) != -EINVAL)
                        TEST_FAIL("read '%s'", bad[i]);
        ASSERT_ERRNO(audit_parse_time(NULL, &t), EINVAL);
}

/* journald behind (its mirror thread held in a send) and a flood past the backlog: every record
 * past it is dropped from the journal's copy, counted, and logged once per interval with the
 * count since the line before; no memory for one drops it the same way. */
TEST(journal_drops_are_counted_and_logged) {
        _cleanup_free_ char *log1 = NULL, *log2 = NULL, *log3 = NULL;
        AuditRecord r = sample_record();
        AuditJournal *j;
        int saved;

        slow_journald_reset();
        ASSERT_OK(audit_journal_new(4, slow_journald_send, &j));
        ASSERT_EQ(audit_journal_get_dropped(j), 0u);
        audit_journal_submit(j, &r);
        slow_journald_wait_called(1); /* the thread holds it: 4 more wait in the queue */

        saved = log_capture_begin();
        for (unsigned i = 0; i < 4 + 10; i++)
                audit_journal_submit(j, &r);
        log1 = log_capture_end(saved);
        ASSERT_EQ(audit_journal_get_dropped(j), 10u);
        /* The first drop logged at once, the nine after it held back by the rate limit. */
        ASSERT_EQ(count_occurrences(log1, "Audit journal mirror dropped"), 1u);
        if (!strstr(log1, "Audit journal mirror dropped 1 records since its last message about drops (1 since it "
                          "started; the last because journald is behind (MaxJournalBacklog= records wait for it)): "
                          "the audit log has them, the journal does not."))
                TEST_FAIL("not the line expected: %s", log1);

#ifndef HAVE_ASAN /* AddressSanitizer owns malloc() */
        alloc_fail_at = alloc_calls + 1;
        audit_journal_submit(j, &r);
        alloc_fail_at = 0;
        ASSERT_EQ(audit_journal_get_dropped(j), 11u);
#endif

        /* What the rate limit held back is told as the mirror stops, after sending what it
         * queued. */
        slow_journald_release();
        saved = log_capture_begin();
        j = audit_journal_free(j);
        log2 = log_capture_end(saved);
        ASSERT_EQ(slow_journald_sent(), 5u);
        ASSERT_EQ(count_occurrences(log2, "Audit journal mirror dropped"), 1u);
#ifndef HAVE_ASAN
        ASSERT_NOT_NULL(strstr(log2, "dropped 10 records since its last message about drops (11 since it started; "
                                     "the last because out of memory)"));
#else
        ASSERT_NOT_NULL(strstr(log2, "dropped 9 records since its last message about drops (10 since it started;"));
#endif

        /* A mirror that kept up says nothing. */
        ASSERT_OK(audit_journal_new(4, slow_journald_send, &j));
        saved = log_capture_begin();
        audit_journal_submit(j, &r);
        ASSERT_EQ(audit_journal_get_dropped(j), 0u);
        j = audit_journal_free(j);
        log3 = log_capture_end(saved);
        ASSERT_STREQ(log3, "");
}

TEST(journal_fields) {
        AuditRecord r = sample_record();
        char **fields;
        size_t n;
        bool seen_id = false, seen_scope = false, seen_msg = false;

        r.seq = 9;
        ASSERT_OK(audit_journal_format(&r, &fields, &n));
        for (size_t i = 0; i < n; i++) {
                if (streq(fields[i], "MESSAGE_ID=" AUDIT_JOURNAL_MESSAGE_ID))
                        seen_id = true;
                if (streq(fields[i], "TSMD_SCOPE=info"))
                        seen_scope = true;
                if (streq(fields[i], "MESSAGE=tsmd audit: seq=9 event=guest-request uid=107 "
                                     "pci=0000:01:00.0 scope=info result=ok"))
                        seen_msg = true;
                free(fields[i]);
        }
        free(fields);
        ASSERT_TRUE(seen_id && seen_scope && seen_msg);
        ASSERT_EQ(strlen(AUDIT_JOURNAL_MESSAGE_ID), 32);
}

/* The journal's copy is the whole record: a summary's count (in MESSAGE too: 3000 refusals read as
 * one), a Denied's rule and reason, a late answer's original seq, who signalled a reload, ... (the
 * mirror carried none of these). */
TEST(journal_carries_the_whole_record) {
        static const char *const expected[] = {
                "MESSAGE=tsmd audit: seq=9 event=guest-request uid=107 pci=0000:01:00.0 scope=info result=ok count=3000",
                "TSMD_METHOD=io.tsmd.Guest.Nope", "TSMD_RULE=vmm", "TSMD_REASON=scope not granted",
                "TSMD_SIGNALLED=tsmd", "TSMD_COUNT=3000", "TSMD_ORIGINAL_SEQ=7", "TSMD_LATE_ID=5",
                "TSMD_REPAIRED_BYTES=12", "TSMD_OWED_SINCE_USEC=1700000000000000",
        };
        AuditRecord r = sample_record();
        char **fields;
        size_t n;

        r.seq = 9;
        r.method = "io.tsmd.Guest.Nope";
        r.rule = "vmm";
        r.reason = "scope not granted";
        r.signalled = "tsmd";
        r.count = 3000;
        r.original_seq = 7;
        r.late_id = 5;
        r.repaired_bytes = 12;
        r.owed_since_usec = UINT64_C(1700000000000000);
        ASSERT_OK(audit_journal_format(&r, &fields, &n));
        for (size_t e = 0; e < ELEMENTSOF(expected); e++) {
                bool seen = false;

                for (size_t i = 0; i < n; i++)
                        seen = seen || streq(fields[i], expected[e]);
                if (!seen)
                        TEST_FAIL("no field %s in the journal's copy", expected[e]);
        }
        for (size_t i = 0; i < n; i++)
                free(fields[i]);
        free(fields);
}

/* A client's text (an unknown scope's name) cannot start a second, forged line in MESSAGE; its
 * own field keeps it as it came. */
TEST(journal_message_is_one_line) {
        static const char forged[] = "x\ntsmd audit: seq=8 event=bind uid=0 pci=0000:01:00.0 scope=none result=ok";
        AuditRecord r = sample_record();
        char **fields;
        size_t n;
        bool seen_scope = false, seen_msg = false;

        r.seq = 9;
        r.scope = forged;
        ASSERT_OK(audit_journal_format(&r, &fields, &n));
        for (size_t i = 0; i < n; i++) {
                if (strncmp(fields[i], "MESSAGE=", strlen("MESSAGE=")) == 0) {
                        ASSERT_NULL(strchr(fields[i], '\n'));
                        ASSERT_NOT_NULL(strstr(fields[i], " scope=x\\ntsmd audit: seq=8 "));
                        seen_msg = true;
                }
                if (strncmp(fields[i], "TSMD_SCOPE=", strlen("TSMD_SCOPE=")) == 0) {
                        ASSERT_STREQ(fields[i] + strlen("TSMD_SCOPE="), forged);
                        seen_scope = true;
                }
                free(fields[i]);
        }
        free(fields);
        ASSERT_TRUE(seen_scope && seen_msg);
}

TEST(latency_buckets) {
        ASSERT_EQ(audit_latency_bucket(0), 0);
        ASSERT_EQ(audit_latency_bucket(1), 1);
        ASSERT_EQ(audit_latency_bucket(2), 2);
        ASSERT_EQ(audit_latency_bucket(3), 2);
        ASSERT_EQ(audit_latency_bucket(4), 3);
        ASSERT_EQ(audit_latency_bucket(UINT64_MAX), AUDIT_LATENCY_BUCKETS - 1);
        /* The last bucket is open-ended, the one before it is not. */
        ASSERT_EQ(audit_latency_bucket_upper(AUDIT_LATENCY_BUCKETS - 1), UINT64_MAX);
        ASSERT_EQ(audit_latency_bucket_upper(AUDIT_LATENCY_BUCKETS - 2), UINT64_C(1) << (AUDIT_LATENCY_BUCKETS - 2));
        for (uint64_t v = 1; v < (UINT64_C(1) << 29); v = v * 3 + 1)
                ASSERT_TRUE(v < audit_latency_bucket_upper(audit_latency_bucket(v)) &&
                            v >= audit_latency_bucket_upper(audit_latency_bucket(v)) / 2);
}

TEST_MAIN();
