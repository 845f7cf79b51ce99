/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading the audit files back: records with seq in [from, to], optionally only those of one
 * uid, PCI device, scope, result or event, or of a time window, oldest first. Used by `tsmctl audit query`.
 * Lines that do not parse (damage inside a file) are skipped and counted. Reads the files
 * synchronously, through the AuditFileOps seam: the worker runs it in a query thread
 * (audit-query-runner.h), never in its event loop.
 * Runs in: worker (query threads), tests.
 */
#pragma once

#include <json-c/json.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit-ops.h"
#include "audit-record.h"
#include "macro.h"

typedef struct AuditQueryFilter {
        uint64_t seq_from;  /* inclusive */
        uint64_t seq_to;    /* inclusive; UINT64_MAX: no bound */
        /* The last seq the log committed (UINT64_MAX: not known): a record above the one after it
         * (the next being written) is damage. */
        uint64_t seq_last;
        uid_t uid;          /* AUDIT_UID_INVALID: any */
        const char *pci;    /* NULL: any */
        const char *scope;  /* NULL: any */
        const char *result; /* NULL: any */
        const char *event;  /* NULL: any */
        /* CLOCK_REALTIME microseconds of the record's "time". Unlike seq, time may go back in the
         * log (the clock is set back): each record is judged on its own, nothing skipped for it. */
        uint64_t since_usec; /* inclusive; 0: no bound */
        uint64_t until_usec; /* exclusive; UINT64_MAX: no bound */
        /* Not a filter: the bytes the query may read (UINT64_MAX: no bound). Once past them, it
         * ends after the read that took it there, at the first record after fromSeq that lets
         * it name where to go on (AuditQueryStats.next_seq): a log may hold terabytes, which no
         * query should hold a thread and a MaxQueries= slot for (hours). */
        uint64_t max_scan_bytes;
        /* Not a filter either, and only for the query runner (audit-query-runner.h): the bytes of
         * record text an answer may hold (UINT64_MAX: no bound), the first record whatever its
         * size. Past them it stops, at the record that did not fit (AuditQueryStats.next_seq):
         * the answer must fit its caller's MaxMessageSize=, and the worker hold no more. */
        uint64_t max_text_bytes;
} AuditQueryFilter;

#define AUDIT_QUERY_FILTER_INIT                                                                    \
        ((AuditQueryFilter){ .seq_to = UINT64_MAX, .seq_last = UINT64_MAX, .uid = AUDIT_UID_INVALID, \
                             .until_usec = UINT64_MAX, .max_scan_bytes = UINT64_MAX,          \
                             .max_text_bytes = UINT64_MAX })

/* Called for each matching record (the object is borrowed: json_object_get() to keep it).
 * Return 0 to go on, > 0 to stop the query (it then returns 0), < 0 to abort with that error. */
typedef int (*AuditQueryCallback)(json_object *record, uint64_t seq, void *userdata);

typedef struct AuditQueryStats {
        uint64_t n_matched;
        uint64_t n_scanned;
        uint64_t n_parsed;  /* scanned lines parsed whole (those outside the seq range are not) */
        /* Lines skipped as damaged: those that do not parse or are too long, and records whose
         * seq does not fit the sequence around them (audit_query_fds()). */
        uint64_t n_damaged;
        uint64_t n_bytes_read;    /* everything read, the probes for seq_from included */
        unsigned n_files_skipped; /* whole files passed over: all their records before seq_from */
        /* Where the query stopped at max_scan_bytes: the seq after the last record it judged
         * (above seq_from), from which the same query goes on; or at max_text_bytes: the seq of
         * the record that did not fit. 0: it did not stop so. */
        uint64_t next_seq;
        /* Filled by the query runner (audit-query-runner.h), which stops one matching record
         * past its limit: that record's seq, the first not among the records. 0: none past it. */
        uint64_t seq_past_limit;
} AuditQueryStats;

/* The filter and limit io.tsmd.Admin.QueryAudit's parameters ask for; params has been checked
 * against the IDL (each field absent, null or of its type). Strings are borrowed from params.
 * The limit is at most max_records ([Audit] MaxQueryRecords=), and that when none is given;
 * *ret_capped (may be NULL) says the limit is max_records rather than the caller's (none given,
 * or more asked): where more records match, the caller is told where to go on (nextSeq).
 * -EINVAL with the parameter's name in *ret_invalid for a value no record can have, which would
 * match nothing or be taken for another: a negative fromSeq, a toSeq below 1 or below fromSeq, a
 * uid outside 0..4294967294 ((uid_t) -1 is "any"), a result no record has
 * (audit_result_is_known()), an event tsmd never writes (audit_event_is_known()), a negative
 * time, untilUsec before sinceUsec, or a limit below 1. */
int audit_query_params_parse(json_object *params, size_t max_records, AuditQueryFilter *ret_filter,
                             size_t *ret_limit, bool *ret_capped, const char **ret_invalid);

bool audit_query_match(const AuditQueryFilter *f, json_object *record, uint64_t seq);
/* The seq of a line as audit_record_serialize() writes it ({"seq":N,... first), without a
 * parse; false for anything else, which the full parse then judges. */
bool audit_line_peek_seq(const char *line, size_t len, uint64_t *ret);

/* Runs a query over fds[0..n) (oldest first; negative entries are skipped), reading each to
 * EOF. A partial last line (being written) is ignored. What lies before seq_from is not read
 * where it can be told from a few probes (seqs only grow through the files): files whose next
 * file starts at or before it are skipped whole, and the file where it lies is bisected by
 * offset; the records before it that are read are passed over unparsed. A record whose seq
 * does not fit the sequence (not above the record before it, above the one after seq_last, or
 * jumping ahead of the record after it) is damage, skipped and counted as a line that does not
 * parse is, and so is a probe whose seq the line after it contradicts. The query ends at the
 * first plausible record after seq_to, or at f->max_scan_bytes (stats' next_seq says where it
 * stopped). ops NULL: the real system calls. cancel (may be NULL) is checked
 * at every read: once set, the query ends with -ECANCELED. ret_stats may be NULL. */
int audit_query_fds(const int *fds, size_t n, const AuditQueryFilter *f, const AuditFileOps *ops,
                    const atomic_bool *cancel, AuditQueryCallback cb, void *userdata,
                    AuditQueryStats *ret_stats);
