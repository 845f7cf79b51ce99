/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Audit counters: one sorted array per dimension, binary search. Runs in: worker, tests. */

#include <inttypes.h>
#include <stdio.h>

#include "audit-counters.h"

static const char *const audit_counter_dimension_table[_AUDIT_COUNTER_DIMENSION_MAX] = {
        [AUDIT_COUNTER_UID] = "uid",
        [AUDIT_COUNTER_BACKEND] = "backend",
        [AUDIT_COUNTER_SCOPE] = "scope",
        [AUDIT_COUNTER_RESULT] = "result",
};
DEFINE_STRING_TABLE_LOOKUP(audit_counter_dimension, AuditCounterDimension);

typedef struct CounterEntry {
        char *key;
        uint64_t number; /* sort key for uids */
        AuditCounterStats stats;
} CounterEntry;

typedef struct CounterTable {
        CounterEntry *entries;
        size_t n, allocated;
} CounterTable;

struct AuditCounters {
        CounterTable tables[_AUDIT_COUNTER_DIMENSION_MAX];
        AuditCounterUidFunc uid_filter;
        void *uid_filter_userdata;
};

int audit_counters_new(AuditCounters **ret) {
        AuditCounters *c;

        assert(ret);

        c = new0(AuditCounters, 1);
        if (!c)
                return -ENOMEM;
        *ret = c;
        return 0;
}

AuditCounters *audit_counters_free(AuditCounters *c) {
        if (!c)
                return NULL;
        for (size_t d = 0; d < ELEMENTSOF(c->tables); d++) {
                for (size_t i = 0; i < c->tables[d].n; i++)
                        free(c->tables[d].entries[i].key);
                free(c->tables[d].entries);
        }
        return mfree(c);
}

unsigned audit_latency_bucket(uint64_t usec) {
        unsigned b;

        if (usec == 0)
                return 0;
        b = 64u - (unsigned) __builtin_clzll(usec); /* 1 → 1, 2..3 → 2, 4..7 → 3 */
        return MIN(b, AUDIT_LATENCY_BUCKETS - 1);
}

uint64_t audit_latency_bucket_upper(unsigned bucket) {
        if (bucket >= AUDIT_LATENCY_BUCKETS - 1)
                return UINT64_MAX;
        return UINT64_C(1) << bucket;
}

/* Orders uids numerically ("other" and "none" after every number), strings by bytes. */
static int entry_compare(AuditCounterDimension d, const CounterEntry *e, const char *key,
                         uint64_t number) {
        if (d == AUDIT_COUNTER_UID && e->number != number)
                return e->number < number ? -1 : 1;
        return strcmp(e->key, key);
}

static size_t table_find(AuditCounterDimension d, const CounterTable *t, const char *key,
                         uint64_t number, bool *ret_found) {
        size_t lo = 0, hi = t->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = entry_compare(d, &t->entries[mid], key, number);

                if (c == 0) {
                        *ret_found = true;
                        return mid;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_found = false;
        return lo;
}

static uint64_t key_number(AuditCounterDimension d, const char *key) {
        char *end;
        unsigned long long v;

        if (d != AUDIT_COUNTER_UID)
                return 0;
        errno = 0;
        v = strtoull(key, &end, 10);
        if (errno != 0 || *end || end == key)
                return UINT64_MAX; /* "other", "none" */
        return v;
}

static int table_lookup(AuditCounters *c, AuditCounterDimension d, const char *key,
                        CounterEntry **ret) {
        CounterTable *t = &c->tables[d];
        uint64_t number = key_number(d, key);
        bool found;
        size_t idx;

        idx = table_find(d, t, key, number, &found);
        if (!found) {
                /* SECURITY: keys come from clients; bound the memory they can make us use. */
                if (t->n >= AUDIT_COUNTERS_KEYS_MAX - 1 && !streq(key, AUDIT_COUNTERS_OTHER))
                        return table_lookup(c, d, AUDIT_COUNTERS_OTHER, ret);
                if (!GREEDY_REALLOC(t->entries, t->allocated, t->n + 1))
                        return -ENOMEM;
                char *k = strdup(key);
                if (!k)
                        return -ENOMEM;
                memmove(t->entries + idx + 1, t->entries + idx, (t->n - idx) * sizeof(CounterEntry));
                t->entries[idx] = (CounterEntry){ .key = k, .number = number };
                t->n++;
        }
        *ret = &t->entries[idx];
        return 0;
}

static void stats_add(AuditCounterStats *s, const AuditRecord *r) {
        /* A summary stands for count calls, none of them timed. */
        uint64_t n = r->count ?: 1;

        s->n_requests += n;
        if (audit_record_is_error(r))
                s->n_errors += n;
        if (r->latency_usec != AUDIT_U64_NONE) {
                s->n_latency++;
                s->latency_usec_sum += r->latency_usec;
                s->latency_buckets[audit_latency_bucket(r->latency_usec)]++;
        }
}

void audit_counters_set_uid_filter(AuditCounters *c, AuditCounterUidFunc f, void *userdata) {
        c->uid_filter = f;
        c->uid_filter_userdata = userdata;
}

/* SECURITY: anyone may call (the guest socket is 0666) and be refused on record, from as many
 * uids as user namespaces give: left to them, the first 1024 uids to call would keep their keys
 * for tsmd's life and put every later one, the VMMs' too, under "other". A uid the filter does
 * not admit (one the policy does not name) counts under "other" from the start. */
static const char *uid_key(AuditCounters *c, uid_t uid, char buf[static DECIMAL_U64_MAX]) {
        const char *key = format_u64((uint32_t) uid, buf);
        bool found;

        if (!c->uid_filter)
                return key;
        (void) table_find(AUDIT_COUNTER_UID, &c->tables[AUDIT_COUNTER_UID], key, uid, &found);
        return found || c->uid_filter(uid, c->uid_filter_userdata) ? key : AUDIT_COUNTERS_OTHER;
}

int audit_counters_add(AuditCounters *c, const AuditRecord *r) {
        char uid[DECIMAL_U64_MAX];
        const char *keys[_AUDIT_COUNTER_DIMENSION_MAX];

        assert(c);
        assert(r);

        if (r->uid == AUDIT_UID_INVALID)
                keys[AUDIT_COUNTER_UID] = AUDIT_COUNTERS_NULL;
        else
                keys[AUDIT_COUNTER_UID] = uid_key(c, (uid_t) r->uid, uid);
        keys[AUDIT_COUNTER_BACKEND] = r->backend ?: AUDIT_COUNTERS_NULL;
        /* A name no backend declares is any text a client sends: it would crowd out the real
         * scopes' keys. */
        keys[AUDIT_COUNTER_SCOPE] = r->scope && !r->scope_unknown ? r->scope : AUDIT_COUNTERS_NULL;
        keys[AUDIT_COUNTER_RESULT] = r->result ?: AUDIT_COUNTERS_NULL;

        for (AuditCounterDimension d = 0; d < _AUDIT_COUNTER_DIMENSION_MAX; d++) {
                CounterEntry *e;
                int k = table_lookup(c, d, keys[d], &e);
                if (k < 0)
                        return k;
                stats_add(&e->stats, r);
        }
        return 0;
}

int audit_counters_foreach(AuditCounters *c, AuditCounterDimension d, AuditCounterCallback cb,
                           void *userdata) {
        assert(c);
        assert(cb);

        if (d < 0 || d >= _AUDIT_COUNTER_DIMENSION_MAX)
                return -EINVAL;
        for (size_t i = 0; i < c->tables[d].n; i++) {
                const CounterEntry *e = &c->tables[d].entries[i];
                int r = cb(d, e->key, &e->stats, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

int audit_counters_get(AuditCounters *c, AuditCounterDimension d, const char *key,
                       AuditCounterStats *ret) {
        const CounterTable *t;
        bool found;
        size_t idx;

        assert(c);
        assert(key);
        assert(ret);

        if (d < 0 || d >= _AUDIT_COUNTER_DIMENSION_MAX)
                return -EINVAL;
        t = &c->tables[d];
        idx = table_find(d, t, key, key_number(d, key), &found);
        if (!found)
                return -ENOENT;
        *ret = t->entries[idx].stats;
        return 0;
}
