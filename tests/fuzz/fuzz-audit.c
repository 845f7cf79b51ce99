/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for reading the audit log back: the files as a crash, a full disk or damage
 * may leave them, resumed at start-up (audit_files_resume(): finds the highest record, cuts
 * torn tails) and queried (audit_query_fds(), with the filter of io.tsmd.Admin.QueryAudit's
 * parameters: audit_query_params_parse()). Checks what must hold, not only the absence of
 * crashes:
 *   - resume fails only by refusing a tail it cannot tell from damage (-EBADMSG: a window of
 *     garbage, or a complete line after the last record that holds no NUL and is no record);
 *   - resume cuts nothing a query returns: a query of everything answers the same records
 *     before and after, and a second resume finds the same last record and cuts nothing;
 *   - a query answers records in the order of their seqs, each above the one before, whatever
 *     the files hold (a record whose seq does not fit the sequence is damage, passed over);
 *   - a filtered query answers only records that match, at most the limit; and where the
 *     sequence numbers of every line grow through the files (as tsmd writes them), exactly
 *     those of the whole log that match, although it skips files and bisects to fromSeq
 *     (the time window as well, whose times need not grow);
 *   - a record's time reads (audit_parse_time()) exactly when it is as the log writes it, to
 *     the same microsecond.
 *
 * Input: sections separated by 0x1e bytes (ASCII RS). The first is QueryAudit's parameters as
 * JSON (anything that is not an object the IDL accepts queries with {}); each further one is a
 * file, oldest first (at most MAX_FILES; the last is audit.log). In a file, a line "+N"
 * (1..GEN_MAX) stands for N well-formed records numbered on from the last line that had a
 * number, so that inputs can make files large enough for the tail window and the bisection.
 * Runs in: tests (fuzzing builds only).
 */

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit-files.h"
#include "audit-defaults.h"
#include "audit-query.h"
#include "fuzz.h"
#include "json-util.h"
#include "log.h"
#include "varlink-idl.h"

#define INPUT_MAX (64U * 1024U)
#define MAX_FILES 6U
#define GEN_MAX 200U
/* Generated records per input at most, over all "+N" lines (some 600 bytes each: 200 make a
 * file larger than the query's read buffer and the tail window). */
#define GEN_TOTAL_MAX 500U
#define SEPARATOR 0x1e

/* tmpfs: every input writes its files anew ("/tmp/////" without /dev/shm). */
static char dir[] = "/dev/shm/fuzz-audit-XXXXXX";
static const VarlinkSymbol *query_method;
static VarlinkInterface *admin;

static void dir_clean(void) {
        for (unsigned i = 0; i < MAX_FILES; i++) {
                char name[sizeof(AUDIT_FILE_NAME) + 12], path[sizeof(dir) + sizeof(name) + 1];

                audit_file_name(i, name);
                snprintf(path, sizeof(path), "%s/%s", dir, name);
                (void) unlink(path);
        }
}

static void dir_remove(void) {
        dir_clean();
        (void) rmdir(dir);
        varlink_interface_free(admin);
}

static void setup(void) {
        if (access("/dev/shm", W_OK) < 0)
                memcpy(dir, "/tmp/////", strlen("/dev/shm/"));
        CHECK(mkdtemp(dir));
        CHECK(atexit(dir_remove) == 0);
        /* Resume warns about every damaged line: not what a fuzzer should print. */
        log_set_max_level(LOG_CRIT);
        for (const char *const *text = varlink_builtin_idl; *text; text++) {
                VarlinkInterface *i = NULL;

                CHECK(varlink_interface_parse(*text, &i, NULL, NULL) >= 0);
                if (streq(varlink_interface_get_name(i), "io.tsmd.Admin")) {
                        admin = i;
                        query_method = varlink_interface_find_method(i, "QueryAudit");
                } else
                        varlink_interface_free(i);
        }
        CHECK(query_method);
}

/* ---- the files ------------------------------------------------------------------------- */

/* Records with the fields a query filters on, padded: few objects to parse per byte of file. */
static void generate(FILE *f, uint64_t *next, unsigned n) {
        static const char *const pcis[] = { "0000:01:00.0", "0000:02:00.0", "10000:00:01.7" };
        static const char *const scopes[] = { "info", "state-change", "debug-read" };

        for (unsigned k = 0; k < n; k++, (*next)++) {
                uint64_t s = *next;

                fprintf(f,
                        "{\"seq\":%" PRIu64 ",\"event\":\"%s\",\"uid\":%u,\"pci\":\"%s\",\"scope\":\"%s\","
                        "\"result\":\"%s\",\"unit\":\"%0*u\"}\n",
                        s, s % 11 == 0 ? "open-context" : "guest-request", (unsigned) (s % 3) * 1000, pcis[s % 3],
                        scopes[s % 5 == 0 ? 2 : s % 2], s % 7 == 0 ? "io.tsmd.Guest.Denied" : "ok", 480, (unsigned) s);
        }
}

/* Writes one section as a file, "+N" lines expanded. */
static void write_file(unsigned index, const char *text, size_t len, uint64_t *next, unsigned *generated) {
        char name[sizeof(AUDIT_FILE_NAME) + 12], path[sizeof(dir) + sizeof(name) + 1];
        FILE *f;

        audit_file_name(index, name);
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "we");
        CHECK(f);
        for (size_t pos = 0; pos < len;) {
                const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
                size_t n = nl ? (size_t) (nl - line) : len - pos;
                unsigned count = 0;
                uint64_t seq;

                if (n >= 2 && n <= 5 && line[0] == '+') {
                        for (size_t i = 1; i < n; i++)
                                count = line[i] >= '0' && line[i] <= '9' ? count * 10 + (unsigned) (line[i] - '0')
                                                                         : GEN_MAX + 1;
                        if (count >= 1 && count <= GEN_MAX && *generated + count <= GEN_TOTAL_MAX) {
                                generate(f, next, count);
                                *generated += count;
                                pos += n + (nl ? 1 : 0);
                                continue;
                        }
                }
                if (audit_line_peek_seq(line, n, &seq))
                        *next = seq + 1;
                CHECK(fwrite(line, 1, n + (nl ? 1 : 0), f) == n + (nl ? 1 : 0));
                pos += n + (nl ? 1 : 0);
        }
        CHECK(fclose(f) == 0);
}

/* Whether the seq of every complete line that has one (as a probe or a parse reads it) grows
 * through the files, oldest first: what tsmd writes, and what the query's skipping relies on. */
static bool seqs_grow(const int *fds, size_t n) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        bool have = false;
        uint64_t last = 0;

        CHECK(json_tokener_new_strict(1, &tok) >= 0);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *buf = NULL;
                struct stat st;

                if (fds[i] < 0)
                        continue;
                CHECK(fstat(fds[i], &st) >= 0);
                buf = malloc((size_t) st.st_size + 1);
                CHECK(buf);
                CHECK(pread(fds[i], buf, (size_t) st.st_size, 0) == st.st_size);
                for (size_t pos = 0; pos < (size_t) st.st_size;) {
                        char *nl = memchr(buf + pos, '\n', (size_t) st.st_size - pos);
                        size_t len;
                        uint64_t seq;

                        if (!nl)
                                break;
                        len = (size_t) (nl - (buf + pos));
                        if (audit_line_peek_seq(buf + pos, len, &seq) ||
                            audit_line_parse(tok, buf + pos, len, NULL, &seq) >= 0) {
                                if (have && seq <= last)
                                        return false;
                                have = true;
                                last = seq;
                        }
                        pos += len + 1;
                }
        }
        return true;
}

/* ---- queries --------------------------------------------------------------------------- */

typedef struct Found {
        json_object *records; /* array */
        size_t limit;
} Found;

static int on_record(json_object *record, uint64_t seq, void *userdata) {
        Found *found = userdata;
        json_object *s;

        CHECK(json_object_object_get_ex(record, "seq", &s) && json_object_get_uint64(s) == seq);
        if (json_object_array_length(found->records) >= found->limit)
                return 1;
        CHECK(json_object_array_add(found->records, json_object_get(record)) >= 0);
        return 0;
}

static json_object *query(AuditFiles *files, const AuditQueryFilter *filter, size_t limit) {
        int fds[MAX_FILES];
        Found found = { .records = json_object_new_array(), .limit = limit };

        CHECK(found.records);
        CHECK(audit_files_snapshot(files, fds) >= 0);
        CHECK(audit_query_fds(fds, files->n_files, filter, NULL, NULL, on_record, &found, NULL) >= 0);
        close_many(fds, files->n_files);
        return found.records;
}

static uint64_t seq_of(json_object *record) {
        json_object *s;

        CHECK(json_object_object_get_ex(record, "seq", &s));
        return json_object_get_uint64(s);
}

static bool string_is(json_object *record, const char *key, const char *want) {
        json_object *v;

        return !want || (json_object_object_get_ex(record, key, &v) && json_object_is_type(v, json_type_string) &&
                         streq(json_object_get_string(v), want));
}

/* A record's time as the log writes it, read without audit_parse_time(): strptime() and
 * timegm(), kept only where formatting it back gives the same text (which rules out what
 * strptime() lets by: one-digit fields, Feb 30, a sign). */
static bool time_of(json_object *record, uint64_t *ret) {
        const char *s = json_get_string(record, "time"), *end;
        char back[AUDIT_TIME_STRLEN];
        struct tm tm = {};
        unsigned usec;
        uint64_t t;

        if (!s)
                return false;
        end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!end || sscanf(end, ".%6uZ", &usec) != 1 || timegm(&tm) < 0)
                return false;
        t = (uint64_t) timegm(&tm) * 1000000u + usec;
        if (audit_format_time(t, back) < 0 || !streq(back, s))
                return false;
        *ret = t;
        return true;
}

/* The filter's meaning, written out again rather than calling audit_query_match(). */
static bool matches(const AuditQueryFilter *f, json_object *record) {
        uint64_t t;
        uint64_t seq = seq_of(record);
        json_object *v;

        if (seq < f->seq_from || seq > f->seq_to)
                return false;
        if (f->uid != AUDIT_UID_INVALID &&
            !(json_object_object_get_ex(record, "uid", &v) && json_object_is_type(v, json_type_int) &&
              json_object_get_int64(v) == (int64_t) f->uid))
                return false;
        if ((f->since_usec > 0 || f->until_usec != UINT64_MAX) &&
            !(time_of(record, &t) && t >= f->since_usec && t < f->until_usec))
                return false;
        return string_is(record, "pci", f->pci) && string_is(record, "scope", f->scope) &&
               string_is(record, "result", f->result) && string_is(record, "event", f->event);
}

/* Whether the records' seqs grow: a query answers records in the order of the sequence, what
 * ever damage the files hold (a record whose seq does not fit is passed over). */
static bool seqs_increase(json_object *a) {
        for (size_t i = 1; i < json_object_array_length(a); i++)
                if (seq_of(json_object_array_get_idx(a, i)) <= seq_of(json_object_array_get_idx(a, i - 1)))
                        return false;
        return true;
}

static bool same_seqs(json_object *a, json_object *b) {
        if (json_object_array_length(a) != json_object_array_length(b))
                return false;
        for (size_t i = 0; i < json_object_array_length(a); i++)
                if (seq_of(json_object_array_get_idx(a, i)) != seq_of(json_object_array_get_idx(b, i)))
                        return false;
        return true;
}

/* QueryAudit's parameters from the first section: {} unless the IDL accepts them. */
static json_object *parse_params(const uint8_t *data, size_t len) {
        _cleanup_free_ char *text = strndup((const char *) data, len);
        json_object *p;
        char *bad = NULL;

        CHECK(text);
        p = json_tokener_parse(text);
        if (p && varlink_method_validate_input(query_method, p, &bad) >= 0)
                return p;
        free(bad);
        json_object_put(p);
        return json_object_new_object();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(audit_files_freep) AuditFiles *files = NULL;
        _cleanup_json_ json_object *params = NULL, *before = NULL, *after = NULL, *filtered = NULL;
        AuditQueryFilter all = AUDIT_QUERY_FILTER_INIT, filter;
        const uint8_t *sections[MAX_FILES + 1];
        size_t lens[MAX_FILES + 1], n = 0, limit;
        unsigned generated = 0;
        AuditResumeInfo info, again;
        const char *invalid = NULL;
        uint64_t next = 1;
        int fds[MAX_FILES], r;
        bool grow;

        if (size > INPUT_MAX)
                return 0;
        if (!query_method)
                setup();

        for (size_t pos = 0; n < MAX_FILES + 1;) {
                const uint8_t *sep = memchr(data + pos, SEPARATOR, size - pos);

                sections[n] = data + pos;
                lens[n++] = sep ? (size_t) (sep - (data + pos)) : size - pos;
                if (!sep)
                        break;
                pos = (size_t) (sep - data) + 1;
        }

        dir_clean();
        for (size_t i = 1; i < n; i++)
                write_file((unsigned) (n - 1 - i), (const char *) sections[i], lens[i], &next, &generated);
        CHECK(audit_files_new(dir, -EBADF, (unsigned) MAX(n - 1, (size_t) 2), UINT64_C(1) << 30, &audit_file_ops_default,
                              &files) >= 0);

        /* Everything the log answers, before and after a resume. */
        before = query(files, &all, SIZE_MAX);
        CHECK(seqs_increase(before));
        r = audit_files_resume(files, &info);
        CHECK(r >= 0 || r == -EBADMSG);
        if (r >= 0) {
                after = query(files, &all, SIZE_MAX);
                CHECK(same_seqs(before, after));
                CHECK(audit_files_resume(files, &again) >= 0);
                CHECK(again.repaired_bytes == 0 && again.last_seq == info.last_seq);
        }

        /* Times read as the log writes them, and only those. */
        for (size_t i = 0; i < json_object_array_length(after ?: before); i++) {
                json_object *rec = json_object_array_get_idx(after ?: before, i);
                const char *time = json_get_string(rec, "time");
                uint64_t mine = 0, oracle = 0;
                bool ok = time && audit_parse_time(time, &mine) >= 0;

                CHECK(ok == time_of(rec, &oracle) && mine == oracle);
        }

        /* The parameters' filter. */
        params = parse_params(sections[0], lens[0]);
        r = audit_query_params_parse(params, AUDIT_MAX_QUERY_RECORDS_DEFAULT, &filter, &limit, NULL, &invalid);
        if (r < 0) {
                CHECK(r == -EINVAL && (streq(invalid, "fromSeq") || streq(invalid, "toSeq") ||
                                       streq(invalid, "uid") || streq(invalid, "result") || streq(invalid, "event") ||
                                       streq(invalid, "sinceUsec") || streq(invalid, "untilUsec") ||
                                       streq(invalid, "limit")));
                return 0;
        }
        CHECK(limit >= 1 && limit <= AUDIT_MAX_QUERY_RECORDS_DEFAULT);
        filtered = query(files, &filter, limit);
        CHECK(json_object_array_length(filtered) <= limit);
        CHECK(seqs_increase(filtered));
        for (size_t i = 0; i < json_object_array_length(filtered); i++)
                CHECK(matches(&filter, json_object_array_get_idx(filtered, i)));

        CHECK(audit_files_snapshot(files, fds) >= 0);
        grow = seqs_grow(fds, files->n_files);
        close_many(fds, files->n_files);
        if (grow) {
                _cleanup_json_ json_object *expected = json_object_new_array();
                json_object *everything = after ?: before;

                CHECK(expected);
                for (size_t i = 0;
                     i < json_object_array_length(everything) && json_object_array_length(expected) < limit; i++) {
                        json_object *rec = json_object_array_get_idx(everything, i);

                        if (matches(&filter, rec))
                                CHECK(json_object_array_add(expected, json_object_get(rec)) >= 0);
                }
                CHECK(same_seqs(filtered, expected));
        }
        return 0;
}
