/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One audit record: what tsmd knows about one guest request or lifecycle call, and its
 * serialization as one JSON line. Strings in a record are client-influenced (unit names, PCI
 * addresses from requests, scope names), so every string is bounded, made valid UTF-8 and
 * escaped as json-c escapes, and what a terminal would act on or not show (utf8_is_deceptive():
 * C1 controls, bidirectional and invisible characters, line separators) as \u escapes too
 * (audit-record.c): a serialized record is at most AUDIT_RECORD_MAX bytes including its
 * terminating '\n' and contains no other '\n'. Runs in: worker (audit writer), tests.
 */
#pragma once

#include <json-c/json.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit-event.h"
#include "macro.h"

/* Upper bound of one serialized record, '\n' included. Reservations are made in these units. */
#define AUDIT_RECORD_MAX 4096u
/* Upper bound of one string field after JSON escaping (quotes not included). Ten string
 * fields of this size plus every number at its widest stay below AUDIT_RECORD_MAX; the
 * serializer checks the total anyway. */
#define AUDIT_FIELD_MAX 256u
/* Appended to a string cut to fit AUDIT_FIELD_MAX (counted within the bound). */
#define AUDIT_TRUNCATED_MARKER "...(truncated)"

/* "Not applicable" values: serialized as JSON null. */
#define AUDIT_UID_INVALID ((uid_t) -1)
#define AUDIT_GID_INVALID ((gid_t) -1)
#define AUDIT_U64_NONE UINT64_MAX
#define AUDIT_SCOPE_NUMBER_NONE INT64_C(-1)

/* "2024-05-06T07:08:09.123456Z" plus NUL. */
#define AUDIT_TIME_STRLEN 28u

typedef struct AuditRecord {
        /* Set by the caller. Strings may be NULL (→ null), except event. */
        const char *event;  /* audit_event_to_string(), or a declared method's name (audit-event.h) */
        /* The client; in what tsmd does on a client's behalf without a call ("release",
         * "restore-unbind", "restore-bind"), the context's owner as it was when it opened (or reclaimed) the
         * context, also across restarts: the process may have exited by then. */
        uid_t uid;          /* AUDIT_UID_INVALID: no client */
        gid_t gid;          /* AUDIT_GID_INVALID */
        pid_t pid;          /* 0: unknown */
        const char *unit;   /* systemd unit of the client, if any */
        uint64_t context_id; /* AUDIT_U64_NONE */
        uint64_t vdevice_id; /* AUDIT_U64_NONE */
        const char *pci;     /* "0000:01:00.0" */
        const char *backend; /* tsm_backend_type_to_string() */
        const char *scope;   /* the backend's scope name, or (scope_unknown) the client's */
        bool scope_unknown;  /* scope is a name no backend of the device declares: the client's
                              * text, recorded but no key of the counters (audit-counters.h) */
        int64_t scope_number; /* AUDIT_SCOPE_NUMBER_NONE */
        uint64_t request_size;  /* AUDIT_U64_NONE */
        uint64_t response_size; /* AUDIT_U64_NONE */
        /* A guest request whose TSM, offered no response buffer, consumed only part of it: the
         * bytes it left (the kernel's residue); 0: field omitted, all of it taken. */
        uint64_t request_unconsumed;
        const char *result;     /* "ok" or an error name; NULL: not known */
        uint64_t latency_usec;  /* AUDIT_U64_NONE */
        /* A call refused for naming no method tsmd serves (event "unknown-method"): the name as
         * sent, cut short by the caller; NULL: field omitted. */
        const char *method;
        /* The policy rule ([Client:NAME]) that allowed a guest call its device or scope: which
         * grant was used; of a call the policy refused (Denied), the client's rule whose grant was
         * missing; NULL: field omitted (no rule was asked, or none matches the client). */
        const char *rule;
        /* Why: a Denied's reason, a failed reload's message (file:line), or why a connection
         * was closed where its result alone would mislead (one closed to make room for an
         * administrator); tsmd's own words, bounded as every string; NULL: field omitted. */
        const char *reason;
        /* A reload by SIGHUP (event "reload"): which of tsmd's processes the signal was sent to,
         * "tsmd" (the monitor, which passes it on) or "tsmd-worker"; uid and pid are then the
         * sender's as the kernel named it (a pid is a hint: the sender may have exited, and its pid
         * been reused), unit that pid's unit; NULL: field omitted. */
        const char *signalled;
        /* A summary (audit-budget.h): the number of calls of this uid, event and result it
         * stands for, not recorded one by one; 0: field omitted, the record is one call. */
        uint64_t count;
        /* A late answer of the kernel ("guest-request-late", ...): the seq of the record of the
         * call it answers, when the worker that wrote that record writes this one; 0: omitted. */
        uint64_t original_seq;
        /* A late answer of the kernel: the monitor's id of it (LATE), by which the next worker
         * tells whether the record at the seq a worker before said it wrote it under is this
         * one (guest-late.c); 0: omitted. */
        uint64_t late_id;
        /* Not written: the record is of a call refused, or a summary of such calls (audit-budget.h),
         * and takes from its file's share of refusals (audit_log_refusal_room()). */
        bool refusal;

        /* Set by the audit log when the record is committed; callers leave them zero. */
        uint64_t seq;
        uint64_t realtime_usec;
        uint64_t monotonic_usec;
        uint64_t repaired_bytes; /* 0: field omitted */
        /* A record owed while the log could not take it, written later (audit_log_record_owed_kept()):
         * CLOCK_REALTIME when it was owed, "owedSince"; 0: field omitted, written when owed. */
        uint64_t owed_since_usec;
} AuditRecord;

#define AUDIT_RECORD_INIT                                                                          \
        ((AuditRecord){                                                                            \
                .uid = AUDIT_UID_INVALID,                                                          \
                .gid = AUDIT_GID_INVALID,                                                          \
                .context_id = AUDIT_U64_NONE,                                                      \
                .vdevice_id = AUDIT_U64_NONE,                                                      \
                .scope_number = AUDIT_SCOPE_NUMBER_NONE,                                           \
                .request_size = AUDIT_U64_NONE,                                                    \
                .response_size = AUDIT_U64_NONE,                                                   \
                .latency_usec = AUDIT_U64_NONE,                                                    \
        })

/* True when the record's result counts as an error (set and not "ok"). */
bool audit_record_is_error(const AuditRecord *r);

/* Copies s (NULL allowed) into a new string that is valid UTF-8 (invalid bytes become U+FFFD)
 * and whose JSON-escaped form is at most `budget` bytes, cutting at a character boundary and
 * appending AUDIT_TRUNCATED_MARKER if needed. budget must exceed the marker. */
int audit_string_bound(const char *s, size_t budget, char **ret);

/* Copies src into *ret with every string bounded as above; the strings live in one block
 * returned in *ret_storage (free it when done with *ret). */
int audit_record_copy_bounded(const AuditRecord *src, AuditRecord *ret, char **ret_storage);

/* Serializes r as one JSON line ending in '\n' (*ret_len bytes, then a NUL). -E2BIG if it
 * would exceed AUDIT_RECORD_MAX (cannot happen with bounded strings; checked so that the
 * invariant is enforced here). */
int audit_record_serialize(const AuditRecord *r, char **ret_line, size_t *ret_len);

/* Formats CLOCK_REALTIME microseconds as RFC 3339 UTC with microseconds. */
int audit_format_time(uint64_t realtime_usec, char buf[static AUDIT_TIME_STRLEN]);
/* Its inverse: CLOCK_REALTIME microseconds of a time exactly as audit_format_time() writes it;
 * -EINVAL for anything else. */
int audit_parse_time(const char *s, uint64_t *ret);

/* Parses one line (without its '\n') as a record: a JSON object with a non-negative integer
 * "seq". Returns -EBADMSG otherwise, and -ENOMEM for a line that could not be read for lack of
 * memory, which says nothing of the line. tok is reused (see json_tokener_new_strict()). ret_obj
 * may be NULL. */
int audit_line_parse(json_tokener *tok, const char *line, size_t len, json_object **ret_obj,
                     uint64_t *ret_seq);
