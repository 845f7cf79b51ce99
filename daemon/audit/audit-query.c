/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Audit query: line reader and filter. Runs in: worker, tests. */

#include "audit-query.h"
#include "json-util.h"

#define READ_BUFFER (64u * 1024u)
_Static_assert(READ_BUFFER > AUDIT_RECORD_MAX, "a record must fit the line buffer");

static bool string_matches(json_object *record, const char *key, const char *want) {
        const char *have;

        if (!want)
                return true;
        have = json_get_string(record, key);
        return have && streq(have, want);
}

bool audit_query_match(const AuditQueryFilter *f, json_object *record, uint64_t seq) {
        assert(f);
        assert(record);

        if (seq < f->seq_from || seq > f->seq_to)
                return false;
        if (f->uid != AUDIT_UID_INVALID) {
                json_object *v;

                if (!json_object_object_get_ex(record, "uid", &v) ||
                    !json_object_is_type(v, json_type_int) ||
                    json_object_get_uint64(v) != (uint64_t) f->uid)
                        return false;
        }
        return string_matches(record, "pci", f->pci) && string_matches(record, "scope", f->scope) &&
               string_matches(record, "result", f->result) && string_matches(record, "event", f->event);
}

/* The seq of a line as audit_record_serialize() writes it ({"seq":N,... first), without a
 * parse; false for anything else, which the full parse then judges. */
static bool line_peek_seq(const char *line, size_t len, uint64_t *ret) {
        static const char prefix[] = "{\"seq\":";
        size_t i = sizeof(prefix) - 1;
        uint64_t seq = 0;

        if (len <= i || memcmp(line, prefix, i) != 0 || line[i] < '0' || line[i] > '9')
                return false;
        for (; i < len && line[i] >= '0' && line[i] <= '9'; i++) {
                if (seq > (UINT64_MAX - 9) / 10)
                        return false;
                seq = seq * 10 + (uint64_t) (line[i] - '0');
        }
        if (i >= len || line[i] != ',')
                return false;
        *ret = seq;
        return true;
}

/* Handles one line; returns the callback's verdict, or 1 past the range (the query ends). */
static int query_line(json_tokener *tok, const char *line, size_t len, const AuditQueryFilter *f,
                      AuditQueryCallback cb, void *userdata, AuditQueryStats *stats) {
        _cleanup_json_ json_object *o = NULL;
        uint64_t seq;

        stats->n_scanned++;
        /* A query for recent records must not parse the whole log (admins ask in the worker's
         * loop): the seq leads every record. */
        if (line_peek_seq(line, len, &seq) && seq < f->seq_from)
                return 0;
        stats->n_parsed++;
        if (audit_line_parse(tok, line, len, &o, &seq) < 0) {
                stats->n_damaged++;
                return 0;
        }
        /* Only a record read whole ends the query: a damaged line is passed over, as always. */
        if (seq > f->seq_to)
                return 1;
        if (!audit_query_match(f, o, seq))
                return 0;
        stats->n_matched++;
        return cb(o, seq, userdata);
}

/* Reads lines with two buffers: the partial line at the end of one read is copied to the
 * start of the other, so nothing is ever moved within a buffer. */
static int query_fd(int fd, json_tokener *tok, char *bufs[2], const AuditQueryFilter *f,
                    AuditQueryCallback cb, void *userdata, AuditQueryStats *stats) {
        unsigned cur = 0;
        size_t have = 0;
        bool skipping = false;

        for (;;) {
                char *buf = bufs[cur], *nl;
                size_t pos = 0, rest;
                ssize_t n;

                n = read(fd, buf + have, READ_BUFFER - have);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return 0; /* a partial last line is a record being written */
                have += (size_t) n;

                while ((nl = memchr(buf + pos, '\n', have - pos))) {
                        size_t len = (size_t) (nl - (buf + pos));

                        if (skipping) {
                                /* The end of an overlong line. */
                                skipping = false;
                                stats->n_damaged++;
                        } else {
                                int r = query_line(tok, buf + pos, len, f, cb, userdata, stats);
                                if (r != 0)
                                        return r;
                        }
                        pos += len + 1;
                }

                rest = have - pos;
                if (skipping || rest >= AUDIT_RECORD_MAX) {
                        /* Longer than any record can be: not one of ours, skip to its end. */
                        skipping = true;
                        have = 0;
                        continue;
                }
                memcpy(bufs[!cur], buf + pos, rest);
                cur = !cur;
                have = rest;
        }
}

int audit_query_fds(const int *fds, size_t n, const AuditQueryFilter *f, AuditQueryCallback cb,
                    void *userdata, AuditQueryStats *ret_stats) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_free_ char *buf0 = NULL, *buf1 = NULL;
        AuditQueryStats stats = {};
        int r = 0;

        assert(fds || n == 0);
        assert(f);
        assert(cb);

        r = json_tokener_new_strict(1, &tok);
        if (r < 0)
                return r;
        buf0 = malloc(READ_BUFFER);
        buf1 = malloc(READ_BUFFER);
        if (!buf0 || !buf1)
                return -ENOMEM;

        for (size_t i = 0; i < n && r == 0; i++)
                if (fds[i] >= 0)
                        r = query_fd(fds[i], tok, (char *[2]){ buf0, buf1 }, f, cb, userdata, &stats);

        if (ret_stats)
                *ret_stats = stats;
        return r < 0 ? r : 0;
}
