/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Audit query: line reader and filter. Runs in: worker, tests. */

#include <sys/stat.h>

#include "audit-query.h"
#include "audit-result.h"
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

/* event "reload" is every reload: by SIGHUP (the record's event "reload") and by a call of
 * io.tsmd.Service.Reload (`tsmctl reload`, `systemctl reload`: the method is the event), which an
 * administrator asking for reloads means as well. The method's own name finds only the calls. */
static bool event_matches(json_object *record, const char *want) {
        const char *have;

        if (!want)
                return true;
        have = json_get_string(record, "event");
        if (!have)
                return false;
        return streq(have, want) ||
               (streq(want, audit_event_to_string(AUDIT_EVENT_RELOAD)) && streq(have, "io.tsmd.Service.Reload"));
}

int audit_query_params_parse(json_object *params, size_t max_records, AuditQueryFilter *ret_filter,
                             size_t *ret_limit, bool *ret_capped, const char **ret_invalid) {
        AuditQueryFilter f = AUDIT_QUERY_FILTER_INIT;
        size_t limit = max_records;
        bool capped = true;
        json_object *v;

        assert(params);
        assert(max_records > 0);
        assert(ret_filter);
        assert(ret_limit);
        assert(ret_invalid);

        /* No record has a negative seq, nor seq 0 (the sequence starts at 1): a range that holds
         * none would answer "none" for a mistake. */
        if (json_object_object_get_ex(params, "fromSeq", &v) && v) {
                if (json_object_get_int64(v) < 0) {
                        *ret_invalid = "fromSeq";
                        return -EINVAL;
                }
                f.seq_from = (uint64_t) json_object_get_int64(v);
        }
        if (json_object_object_get_ex(params, "toSeq", &v) && v) {
                if (json_object_get_int64(v) < 1 || (uint64_t) json_object_get_int64(v) < f.seq_from) {
                        *ret_invalid = "toSeq";
                        return -EINVAL;
                }
                f.seq_to = (uint64_t) json_object_get_int64(v);
        }
        if (json_object_object_get_ex(params, "uid", &v) && v) {
                int64_t uid = json_object_get_int64(v);

                if (uid < 0 || uid >= (int64_t) AUDIT_UID_INVALID) {
                        *ret_invalid = "uid";
                        return -EINVAL;
                }
                f.uid = (uid_t) uid;
        }
        f.pci = json_get_string(params, "pciAddress");
        f.scope = json_get_string(params, "scope");
        f.result = json_get_string(params, "result");
        if (f.result) {
                int r = audit_result_is_known(f.result);

                if (r < 0)
                        return r;
                if (r == 0) {
                        *ret_invalid = "result";
                        return -EINVAL;
                }
        }
        f.event = json_get_string(params, "event");
        if (f.event) {
                int r = audit_event_is_known(f.event);

                if (r < 0)
                        return r;
                if (r == 0) {
                        *ret_invalid = "event";
                        return -EINVAL;
                }
        }
        if (json_object_object_get_ex(params, "sinceUsec", &v) && v) {
                if (json_object_get_int64(v) < 0) {
                        *ret_invalid = "sinceUsec";
                        return -EINVAL;
                }
                f.since_usec = (uint64_t) json_object_get_int64(v);
        }
        if (json_object_object_get_ex(params, "untilUsec", &v) && v) {
                /* An empty window (until == since) is a question with an answer: none. */
                if (json_object_get_int64(v) < 0 || (uint64_t) json_object_get_int64(v) < f.since_usec) {
                        *ret_invalid = "untilUsec";
                        return -EINVAL;
                }
                f.until_usec = (uint64_t) json_object_get_int64(v);
        }
        if (json_object_object_get_ex(params, "limit", &v) && v) {
                /* None at all is no question; more than the most, the most (pages follow). */
                if (json_object_get_int64(v) < 1) {
                        *ret_invalid = "limit";
                        return -EINVAL;
                }
                capped = (uint64_t) json_object_get_int64(v) > max_records;
                if (!capped)
                        limit = (size_t) json_object_get_int64(v);
        }

        *ret_filter = f;
        *ret_limit = limit;
        if (ret_capped)
                *ret_capped = capped;
        return 0;
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
        if (!string_matches(record, "pci", f->pci) || !string_matches(record, "scope", f->scope) ||
            !string_matches(record, "result", f->result) || !event_matches(record, f->event))
                return false;
        if (f->since_usec > 0 || f->until_usec != UINT64_MAX) {
                const char *time = json_get_string(record, "time");
                uint64_t t;

                /* A record whose time does not read is in no window. */
                if (!time || audit_parse_time(time, &t) < 0 || t < f->since_usec || t >= f->until_usec)
                        return false;
        }
        return true;
}

bool audit_line_peek_seq(const char *line, size_t len, uint64_t *ret) {
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

typedef struct QueryRun {
        const AuditQueryFilter *filter;
        const AuditFileOps *ops;
        const atomic_bool *cancel;
        AuditQueryCallback callback;
        void *userdata;
        json_tokener *tok;
        char *bufs[2];
        AuditQueryStats stats;
        /* The sequence as read: the seq of the last record taken as plausible (have_prev), and a
         * record held back (have_held) until the one after it tells whether it is (take_seq()).
         * held is NULL for one before seq_from, which is not parsed. */
        uint64_t prev, held_seq;
        bool have_prev, have_held;
        bool budget_spent; /* stopped at filter->max_scan_bytes */
        json_object *held;
} QueryRun;

/* A record taken as part of the sequence: past seq_to it ends the query (1), else it is matched. */
static int accept_record(QueryRun *q, uint64_t seq, json_object *o) {
        q->prev = seq;
        q->have_prev = true;
        if (seq > q->filter->seq_to)
                return 1;
        if (!o || !audit_query_match(q->filter, o, seq))
                return 0;
        q->stats.n_matched++;
        return q->callback(o, seq, q->userdata);
}

static int release_held(QueryRun *q) {
        _cleanup_json_ json_object *o = TAKE_PTR(q->held);

        if (!q->have_held)
                return 0;
        q->have_held = false;
        return accept_record(q, q->held_seq, o);
}

/* Judges a record by its seq, against those around it: seqs grow by one from record to record
 * (a gap only where records were lost outside tsmd), and none is above the one after the last
 * the log committed (the records being written now follow it). A line that parses can still be
 * damaged in its seq, and trusting it would end the query early (a seq read too high looks past
 * seq_to) or leave records out: so a record whose seq is not above the last plausible one, or
 * above what was committed, is damage; and one that jumps ahead is held back until the next
 * record, which shows it damaged if it is not above it. Damage is skipped and counted. *o
 * (NULL for a record not parsed) is taken when the record is held. */
static int take_seq(QueryRun *q, uint64_t seq, json_object **o) {
        uint64_t last = q->filter->seq_last;
        int r;

        if ((q->have_prev && seq <= q->prev) || (last != UINT64_MAX && seq > last + 1)) {
                q->stats.n_damaged++;
                return 0;
        }
        if (q->have_held) {
                if (seq <= q->held_seq) {
                        /* The held one jumped ahead of the sequence this one continues (or to
                         * this one's seq: one damage explains both the gap and the repeat). */
                        json_object_put(TAKE_PTR(q->held));
                        q->have_held = false;
                        q->stats.n_damaged++;
                } else {
                        r = release_held(q);
                        if (r != 0)
                                return r;
                        if (seq == q->prev) {
                                q->stats.n_damaged++;
                                return 0;
                        }
                }
        }
        if (q->have_prev && seq == q->prev + 1)
                return accept_record(q, seq, *o);
        q->have_held = true;
        q->held_seq = seq;
        q->held = TAKE_PTR(*o);
        return 0;
}

/* Handles one line; returns the callback's verdict, or 1 past the range (the query ends). */
static int query_line(QueryRun *q, const char *line, size_t len) {
        _cleanup_json_ json_object *o = NULL;
        uint64_t seq;
        int r;

        q->stats.n_scanned++;
        /* What lies before the range need not be parsed: the seq leads every record. */
        if (audit_line_peek_seq(line, len, &seq) && seq < q->filter->seq_from)
                return take_seq(q, seq, &o);
        q->stats.n_parsed++;
        r = audit_line_parse(q->tok, line, len, &o, &seq);
        if (r == -ENOMEM)
                return r; /* the query fails, where skipping the record would leave it out unsaid */
        if (r < 0) {
                q->stats.n_damaged++;
                return 0;
        }
        return take_seq(q, seq, &o);
}

/* One pread (a short one is fine: callers read on, or take it as all there is). */
static int read_at(QueryRun *q, int fd, char *buf, size_t n, uint64_t offset, size_t *ret) {
        /* A query stops within one read of its cancellation: its client is gone. */
        if (q->cancel && atomic_load(q->cancel))
                return -ECANCELED;
        for (;;) {
                ssize_t k = q->ops->pread(fd, buf, n, (off_t) offset);

                if (k == -EINTR)
                        continue;
                if (k < 0)
                        return (int) k;
                q->stats.n_bytes_read += (uint64_t) k;
                *ret = (size_t) k;
                return 0;
        }
}

/* What a probe read: the first line that starts at or after where it looked, its seq, and the
 * seq of the line after it where the same read shows that one's start. */
typedef struct Probe {
        uint64_t offset, seq, next_seq;
        bool has_next;
} Probe;

/* Whether the probed record is at or before bound, as the line after it confirms: a seq damaged
 * to read lower than it is would let find_start() skip records of the range, and two adjacent
 * records damaged alike are not expected. Where the next line cannot tell, it is not trusted:
 * more is read rather than less. */
static bool probe_is_at_or_before(const Probe *p, uint64_t bound) {
        return p->seq <= bound && p->has_next && p->next_seq > p->seq &&
               (p->next_seq == p->seq + 1 || p->next_seq <= bound);
}

/* The first line that starts at or after `at`, from one read: 1 if that read holds one, 0 if not
 * (end of file, a line too long, a line that is not a record). */
static int probe(QueryRun *q, int fd, uint64_t at, Probe *ret) {
        /* From the byte before: `at` itself may be where a line starts. */
        uint64_t base = at > 0 ? at - 1 : 0, seq;
        char *buf = q->bufs[0], *nl;
        size_t n = 0, start = 0, next;
        int r;

        r = read_at(q, fd, buf, READ_BUFFER, base, &n);
        if (r < 0)
                return r;
        if (at > 0) {
                nl = memchr(buf, '\n', n);
                if (!nl)
                        return 0;
                start = (size_t) (nl - buf) + 1;
        }
        nl = memchr(buf + start, '\n', n - start);
        if (!nl || !audit_line_peek_seq(buf + start, (size_t) (nl - (buf + start)), &seq))
                return 0;
        *ret = (Probe){ .offset = base + start, .seq = seq };
        /* The next line's seq needs only its start, which may be all the read has of it. */
        next = (size_t) (nl - buf) + 1;
        ret->has_next = audit_line_peek_seq(buf + next, n - next, &ret->next_seq);
        return 1;
}

/* Where reading starts for seq_from: the newest file whose first record is not after it (every
 * older file holds only records before it), and in that file the last line bisection finds
 * whose record is before it. Everything skipped is before seq_from; where a probe cannot tell
 * (damage, which the line after the probed one shows), more is read rather than less. */
static int find_start(QueryRun *q, const int *fds, size_t n, size_t *ret_file, uint64_t *ret_offset) {
        uint64_t from = q->filter->seq_from, lo = 0, hi;
        size_t first = 0;
        struct stat st;
        int r;

        *ret_file = 0;
        *ret_offset = 0;
        if (from <= 1)
                return 0; /* everything */

        for (size_t i = n; i > 0; i--) {
                Probe p;

                if (fds[i - 1] < 0)
                        continue;
                r = probe(q, fds[i - 1], 0, &p);
                if (r < 0)
                        return r;
                if (r > 0 && probe_is_at_or_before(&p, from)) {
                        first = i - 1;
                        break;
                }
        }
        for (size_t i = 0; i < first; i++)
                if (fds[i] >= 0)
                        q->stats.n_files_skipped++;
        *ret_file = first;
        if (fds[first] < 0)
                return 0;

        /* MaxFileSize= may be as large as a TiB: no scanning to the range in one. */
        if (fstat(fds[first], &st) < 0)
                return -errno;
        hi = (uint64_t) st.st_size;
        while (hi - lo > READ_BUFFER) {
                uint64_t mid = lo + (hi - lo) / 2;
                Probe p;

                r = probe(q, fds[first], mid, &p);
                if (r < 0)
                        return r;
                if (r > 0 && p.offset < hi && probe_is_at_or_before(&p, from - 1))
                        lo = p.offset;
                else
                        hi = mid;
        }
        *ret_offset = lo;
        return 0;
}

/* Reads lines from offset with two buffers: the partial line at the end of one read is copied
 * to the start of the other, so nothing is ever moved within a buffer. */
static int query_fd(QueryRun *q, int fd, uint64_t offset) {
        unsigned cur = 0;
        size_t have = 0;
        bool skipping = false;

        for (;;) {
                char *buf = q->bufs[cur], *nl;
                size_t pos = 0, rest, n = 0;
                int r;

                r = read_at(q, fd, buf + have, READ_BUFFER - have, offset, &n);
                if (r < 0)
                        return r;
                if (n == 0)
                        return 0; /* a partial last line is a record being written */
                offset += n;
                have += n;

                while ((nl = memchr(buf + pos, '\n', have - pos))) {
                        size_t len = (size_t) (nl - (buf + pos));

                        if (skipping) {
                                /* The end of an overlong line. */
                                skipping = false;
                                q->stats.n_damaged++;
                        } else {
                                r = query_line(q, buf + pos, len);
                                if (r != 0)
                                        return r;
                        }
                        pos += len + 1;
                }

                /* Past its budget, the query stops once it can say where to go on: after a
                 * record at or above seq_from, so that going on is progress, and below seq_to,
                 * so that there is a range left to go on in. */
                if (q->stats.n_bytes_read >= q->filter->max_scan_bytes && q->have_prev &&
                    q->prev >= q->filter->seq_from && q->prev < q->filter->seq_to) {
                        q->budget_spent = true;
                        return 1;
                }

                rest = have - pos;
                if (skipping || rest >= AUDIT_RECORD_MAX) {
                        /* Longer than any record can be: not one of ours, skip to its end. */
                        skipping = true;
                        have = 0;
                        continue;
                }
                memcpy(q->bufs[!cur], buf + pos, rest);
                cur = !cur;
                have = rest;
        }
}

int audit_query_fds(const int *fds, size_t n, const AuditQueryFilter *f, const AuditFileOps *ops,
                    const atomic_bool *cancel, AuditQueryCallback cb, void *userdata,
                    AuditQueryStats *ret_stats) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_free_ char *buf0 = NULL, *buf1 = NULL;
        uint64_t offset = 0;
        size_t first = 0;
        QueryRun q;
        int r;

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
        q = (QueryRun){
                .filter = f,
                .ops = ops ?: &audit_file_ops_default,
                .cancel = cancel,
                .callback = cb,
                .userdata = userdata,
                .tok = tok,
                .bufs = { buf0, buf1 },
        };

        r = n > 0 ? find_start(&q, fds, n, &first, &offset) : 0;
        for (size_t i = n > 0 ? first : n; i < n && r == 0; i++)
                if (fds[i] >= 0) {
                        r = query_fd(&q, fds[i], offset);
                        offset = 0;
                }
        /* The last record read has none after it to tell: it stands. Not where the budget ends
         * the query: a record held is read again where it goes on, with the one after it. */
        if (r == 0)
                r = release_held(&q);
        else if (r > 0 && q.budget_spent)
                q.stats.next_seq = q.prev + 1;
        json_object_put(TAKE_PTR(q.held));

        if (ret_stats)
                *ret_stats = q.stats;
        return r < 0 ? r : 0;
}
