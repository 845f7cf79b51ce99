/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl metrics: counters and latency histograms in the Prometheus text format, and gauges of
 * what monitoring alerts on (configuration stale, audit log not writable). */

#include <ctype.h>
#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"

/* Label values: backslash, double quote and newline must be escaped. Other controls and
 * bytes that are no UTF-8 (which the format does not allow) are shown as the terminal
 * escapes them first (escape.h), their backslash escaped in turn: the text "\x1b". */
static void print_label(const char *s) {
        _cleanup_free_ char *safe = NULL;

        if (!terminal_is_safe(s, ESCAPE_KEEP_NEWLINE)) {
                if (terminal_escape(s, ESCAPE_KEEP_NEWLINE, &safe) < 0) {
                        putchar('?');
                        return;
                }
                s = safe;
        }
        for (; s && *s; s++) {
                if (*s == '\\' || *s == '"')
                        putchar('\\');
                if (*s == '\n') {
                        fputs("\\n", stdout);
                        continue;
                }
                putchar(*s);
        }
}

/* A label name as Prometheus takes it ([a-zA-Z_][a-zA-Z0-9_]*): tsmd's dimensions are; a
 * counter with any other is not printed, rather than printed as a line of someone's choosing. */
static bool is_label_name(const char *s) {
        if (!s || !(isalpha((unsigned char) *s) || *s == '_'))
                return false;
        for (; *s; s++)
                if (!(isalnum((unsigned char) *s) || *s == '_'))
                        return false;
        return true;
}

/* One value of GetCounters' reply (key, of type: a boolean as 0 or 1) as a metric of its own, if
 * tsmd sent it (an older one does not). */
static void print_single(json_object *reply, const char *key, json_type type, const char *name, const char *kind,
                         const char *help) {
        json_object *v = json_object_object_get(reply, key);

        if (!v || !json_object_is_type(v, type))
                return;
        printf("# HELP %s %s\n# TYPE %s %s\n%s %lld\n", name, help, name, kind, name,
               type == json_type_boolean ? (long long) json_object_get_boolean(v) : (long long) json_object_get_int64(v));
}

/* tsmd counts every call once in each dimension (uid, backend, scope, result): one metric per
 * dimension, each of one label, so that a sum over a metric counts each call once, as
 * Prometheus expects of a metric's series (four label sets on one name counted it four times).
 * Each dimension's keys are bounded by tsmd (audit-counters.h), so is the number of series. */
#define METRICS_DIMENSIONS_MAX 16

static void print_by_dimension(json_object *list, const char *field, const char *prefix, const char *help) {
        const char *dimensions[METRICS_DIMENSIONS_MAX];
        size_t n = 0, len = json_object_array_length(list);

        /* The dimensions, in the order tsmd sent them; more than tsmd has are not printed. */
        for (size_t i = 0; i < len; i++) {
                const char *d = json_get_string(json_object_array_get_idx(list, i), "dimension");
                size_t k = 0;

                if (!is_label_name(d))
                        continue;
                while (k < n && !streq(dimensions[k], d))
                        k++;
                if (k == n && n < ELEMENTSOF(dimensions))
                        dimensions[n++] = d;
        }

        for (size_t k = 0; k < n; k++) {
                const char *d = dimensions[k];

                printf("# HELP %s%s_total %s, by %s.\n# TYPE %s%s_total counter\n", prefix, d, help, d, prefix, d);
                for (size_t i = 0; i < len; i++) {
                        json_object *x = json_object_array_get_idx(list, i);

                        if (!streq(json_get_string(x, "dimension") ?: "", d))
                                continue;
                        printf("%s%s_total{%s=\"", prefix, d, d);
                        print_label(json_get_string(x, "key"));
                        printf("\"} %lld\n", (long long) json_object_get_int64(json_object_object_get(x, field)));
                }
        }
}

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        json_object *reply, *list;
        int r;

        r = tsmctl_fetch(o, &c, "io.tsmd.Admin.GetCounters", NULL, &reply);
        if (r > 0)
                return r;
        if (o->json) {
                tsmctl_print_json(reply);
                return 0;
        }

        r = tsmctl_reply_array(reply, "io.tsmd.Admin.GetCounters", "counters", &list);
        if (r > 0)
                return r;
        print_single(reply, "configurationStale", json_type_boolean, "tsmd_configuration_stale", "gauge",
                     "1 while the files on disk do not load and an older configuration and policy are in force.");
        print_single(reply, "auditWritable", json_type_boolean, "tsmd_audit_writable", "gauge",
                     "1 while the audit log takes records; 0 while it is full or failed and the calls that need a "
                     "record are refused.");
        print_single(reply, "auditRefusedCalls", json_type_int, "tsmd_audit_refused_calls_total", "counter",
                     "Calls refused because the audit log could not take their record (in no record).");
        print_single(reply, "auditJournalDropped", json_type_int, "tsmd_audit_journal_dropped_total", "counter",
                     "Audit records the journal mirror dropped (journald behind: MaxJournalBacklog= waiting; or no "
                     "memory); the audit log has them.");
        print_single(reply, "auditRefusalsUnwritten", json_type_int, "tsmd_audit_refusals_unwritten", "gauge",
                     "Refusals counted whose summary record is not in the audit log yet.");
        print_single(reply, "auditRefusalShareFull", json_type_boolean, "tsmd_audit_refusal_share_full", "gauge",
                     "1 while the current audit file's share of refusals is used and refusals are only counted.");
        print_by_dimension(list, "calls", "tsmd_calls_by_", "Audited calls");
        print_by_dimension(list, "errors", "tsmd_call_errors_by_", "Audited calls that failed");
        puts("# HELP tsmd_call_latency_seconds Latency of audited calls, per scope.\n"
             "# TYPE tsmd_call_latency_seconds histogram");
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                json_object *x = json_object_array_get_idx(list, i), *b = json_get_array(x, "latencyBuckets");
                long long cumulative = 0;

                if (!b || !streq(json_get_string(x, "dimension") ?: "", "scope"))
                        continue;
                for (size_t k = 0, n = json_object_array_length(b); k < n; k++) {
                        cumulative += json_object_get_int64(json_object_array_get_idx(b, k));
                        /* Bucket k holds latencies below 2^k µs, the last all others; any past
                         * 2^63 (tsmd has far fewer) counts in the last alone. */
                        if (k + 1 == n || k >= 63)
                                continue;
                        printf("tsmd_call_latency_seconds_bucket{scope=\"");
                        print_label(json_get_string(x, "key"));
                        printf("\",le=\"%.6f\"} %lld\n", (double) (1ULL << k) / 1e6, cumulative);
                }
                printf("tsmd_call_latency_seconds_bucket{scope=\"");
                print_label(json_get_string(x, "key"));
                printf("\",le=\"+Inf\"} %lld\n", cumulative);
                printf("tsmd_call_latency_seconds_sum{scope=\"");
                print_label(json_get_string(x, "key"));
                printf("\"} %.6f\n", (double) json_object_get_int64(json_object_object_get(x, "latencySumUsec")) / 1e6);
                printf("tsmd_call_latency_seconds_count{scope=\"");
                print_label(json_get_string(x, "key"));
                printf("\"} %lld\n", cumulative);
        }
        return 0;
}

const TsmctlVerb verb_metrics = {
        .name = "metrics",
        .usage = "",
        .summary = "Print counters and latency histograms (Prometheus text format)",
        .max_args = 0,
        .run = run,
};
