/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * In-memory counters over committed audit records, per client uid, backend type, scope name
 * and result: requests, errors, total latency and a log2 latency histogram. Feeds
 * `tsmctl metrics` and the Prometheus text export. Keys come from clients (uids, scope names
 * in requests), so each dimension holds at most AUDIT_COUNTERS_KEYS_MAX keys; records beyond
 * that are counted under the key "other", and so are those of uids a filter turns away
 * (audit_counters_set_uid_filter()). A scope name no backend declares (a refused request's,
 * recorded as sent) is no key: such records count under "none". Runs in: worker (event loop thread), tests.
 */
#pragma once

#include <stdint.h>

#include "audit-record.h"
#include "macro.h"

#define AUDIT_COUNTERS_KEYS_MAX 1024u
#define AUDIT_COUNTERS_OTHER "other"
#define AUDIT_COUNTERS_NULL "none" /* key for records without the field */

/* Bucket 0 counts 0 µs; bucket i (1..N-2) counts [2^(i-1), 2^i) µs; the last bucket counts
 * everything from 2^(N-2) µs (about 18 minutes) up. */
#define AUDIT_LATENCY_BUCKETS 32u

typedef enum AuditCounterDimension {
        AUDIT_COUNTER_UID,
        AUDIT_COUNTER_BACKEND,
        AUDIT_COUNTER_SCOPE,
        AUDIT_COUNTER_RESULT,
        _AUDIT_COUNTER_DIMENSION_MAX,
        _AUDIT_COUNTER_DIMENSION_INVALID = -EINVAL,
} AuditCounterDimension;

const char *audit_counter_dimension_to_string(AuditCounterDimension d);
AuditCounterDimension audit_counter_dimension_from_string(const char *s);

typedef struct AuditCounterStats {
        uint64_t n_requests;
        uint64_t n_errors;         /* result set and not "ok" */
        uint64_t latency_usec_sum; /* over records that carry a latency */
        uint64_t n_latency;        /* records that carry a latency */
        uint64_t latency_buckets[AUDIT_LATENCY_BUCKETS];
} AuditCounterStats;

typedef struct AuditCounters AuditCounters;

int audit_counters_new(AuditCounters **ret);
AuditCounters *audit_counters_free(AuditCounters *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(AuditCounters *, audit_counters_free);

/* Whether a uid that has no key yet may get one of its own; else its records count under
 * "other". A key once made stays. Without it, every uid may (within AUDIT_COUNTERS_KEYS_MAX). */
typedef bool (*AuditCounterUidFunc)(uid_t uid, void *userdata);
void audit_counters_set_uid_filter(AuditCounters *c, AuditCounterUidFunc f, void *userdata);

/* Counts one record in every dimension. Only fails with -ENOMEM. */
int audit_counters_add(AuditCounters *c, const AuditRecord *r);

/* Latency bucket of a value, and the exclusive upper bound of a bucket in µs
 * (UINT64_MAX for the last one). */
unsigned audit_latency_bucket(uint64_t usec);
uint64_t audit_latency_bucket_upper(unsigned bucket);

/* Calls cb for every key of a dimension, in key order (uids numerically, strings by byte
 * value). A negative return from cb stops the walk and is returned. */
typedef int (*AuditCounterCallback)(AuditCounterDimension d, const char *key,
                                    const AuditCounterStats *stats, void *userdata);
int audit_counters_foreach(AuditCounters *c, AuditCounterDimension d, AuditCounterCallback cb,
                           void *userdata);

/* Looks one key up; -ENOENT if it was never counted. */
int audit_counters_get(AuditCounters *c, AuditCounterDimension d, const char *key,
                       AuditCounterStats *ret);
