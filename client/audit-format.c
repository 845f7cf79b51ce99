/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Audit records as table rows, shared by the audit and monitor verbs. */

#include <stdio.h>
#include <time.h>

#include "audit-event.h"
#include "json-util.h"
#include "tsmctl.h"
#include "varlink-idl.h"

#define N_CELLS 8

/* The cells of the header: SEQ ... LATENCY, then RESULT, the last, unpadded. */
static const char *const header[N_CELLS] = { "SEQ", "TIME", "EVENT", "UID", "DEVICE", "SCOPE", "LATENCY", "RESULT" };

/* Display columns of SEQ ... LATENCY, with the space after each, for rows that come one at a
 * time (monitor): a sequence number of 7 digits, a time as format_time() writes it, then the
 * longest event tsmd can record (set by tsmctl_print_audit_header()), a uid of 6 digits, a PCI
 * address of domain 0000, the longest scope (state-change), a latency of 7 digits. */
static size_t stream_widths[N_CELLS - 1] = { 8, 26, 0, 7, 13, 13, 10 };

/* One row's cells; e holds what escaping them took. */
typedef struct Row {
        const char *cells[N_CELLS];
        char seq[24], time[48], uid[24], latency[32];
        TsmctlEscapes e;
} Row;

static void row_done(Row *row) {
        tsmctl_escapes_done(&row->e);
}

/* The digits of s at [from, from + n), or -1. */
static int digits(const char *s, size_t from, size_t n) {
        int v = 0;

        for (size_t i = from; i < from + n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                v = v * 10 + (s[i] - '0');
        }
        return v;
}

/* A record's "time", UTC as tsmd writes it ("2024-05-06T07:08:09.123456Z"), in local time with
 * its offset from UTC, to the second: "2024-05-06T09:08:09+02:00" (RFC 3339; the date and time
 * are what --since=/--until= take, the T for a space). NULL if s is not a time of that form. */
static const char *format_time(const char *s, char *buf, size_t size) {
        static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
        struct tm tm = {};
        long off;
        time_t t;

        if (!s || strlen(s) != strlen(shape))
                return NULL;
        for (size_t i = 0; shape[i]; i++)
                if (shape[i] == 'd' ? s[i] < '0' || s[i] > '9' : s[i] != shape[i])
                        return NULL;
        tm = (struct tm){ .tm_year = digits(s, 0, 4) - 1900, .tm_mon = digits(s, 5, 2) - 1, .tm_mday = digits(s, 8, 2),
                          .tm_hour = digits(s, 11, 2), .tm_min = digits(s, 14, 2), .tm_sec = digits(s, 17, 2) };
        t = timegm(&tm);
        if (t == (time_t) -1 || !localtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
                return NULL;
        off = tm.tm_gmtoff / 60;
        if (snprintf(buf + strlen(buf), size - strlen(buf), "%c%02ld:%02ld", off < 0 ? '-' : '+', labs(off) / 60,
                     labs(off) % 60) < 0)
                return NULL;
        return buf;
}

static void row_init(Row *row, json_object *r) {
        json_object *lat = json_object_object_get(r, "latencyUsec"), *u = json_object_object_get(r, "uid"),
                    *count = json_object_object_get(r, "count");
        const char *time = json_get_string(r, "time");

        *row = (Row){ .uid = "-", .latency = "-" };
        if (lat)
                snprintf(row->latency, sizeof(row->latency), "%lldus", (long long) json_object_get_int64(lat));
        snprintf(row->seq, sizeof(row->seq), "%lld",
                 (long long) json_object_get_int64(json_object_object_get(r, "seq")));
        /* A worker's restart, a SIGHUP the kernel sent: nobody's, not root's. (A reload by SIGHUP
         * has its sender's uid.) */
        if (u)
                snprintf(row->uid, sizeof(row->uid), "%lld", (long long) json_object_get_int64(u));
        row->cells[0] = row->seq;
        /* A time of another form (not tsmd's) is shown as it came. */
        row->cells[1] = format_time(time, row->time, sizeof(row->time)) ?: tsmctl_esc_cell(&row->e, time) ?: "-";
        row->cells[2] = tsmctl_esc_cell(&row->e, json_get_string(r, "event")) ?: "-";
        row->cells[3] = row->uid;
        row->cells[4] = tsmctl_esc_cell(&row->e, json_get_string(r, "pci")) ?: "-";
        row->cells[5] = tsmctl_esc_cell(&row->e, json_get_string(r, "scope")) ?: "-";
        row->cells[6] = row->latency;
        row->cells[7] = tsmctl_esc_cell(&row->e, json_get_string(r, "result")) ?: "-";
        /* A summary stands for count calls (or counts records lost): one row of 33 may be 2968
         * calls, which the row must say. Last, as RESULT is: no column moves for it. */
        if (json_object_is_type(count, json_type_int)) {
                char *s = NULL;

                if (row->e.n >= ELEMENTSOF(row->e.strings) ||
                    asprintf(&s, "%s x%lld", row->cells[7], (long long) json_object_get_int64(count)) < 0)
                        row->cells[7] = "?";
                else
                        row->cells[7] = row->e.strings[row->e.n++] = s;
        }
}

static void print_cells(const char *const cells[static N_CELLS], const size_t widths[static N_CELLS - 1]) {
        for (size_t i = 0; i < N_CELLS - 1; i++)
                tsmctl_print_padded(stdout, cells[i], widths[i]);
        printf("%s\n", cells[N_CELLS - 1]);
}

/* The display width of the longest event a record can have: one of tsmd's own, or a method's
 * full name (as verb-audit.c's --list-events lists them). */
static size_t longest_event(void) {
        size_t w = 0;

        for (AuditEvent e = 0; e < _AUDIT_EVENT_MAX; e++)
                w = MAX(w, strlen(audit_event_to_string(e)));
        for (size_t i = 0; varlink_builtin_idl[i]; i++) {
                _cleanup_(varlink_interface_freep) VarlinkInterface *iface = NULL;
                size_t prefix;

                if (varlink_interface_parse(varlink_builtin_idl[i], &iface, NULL, NULL) < 0)
                        continue; /* out of memory: compiled in, they parse otherwise */
                prefix = strlen(varlink_interface_get_name(iface)) + 1;
                for (size_t j = 0; j < varlink_interface_get_n_methods(iface); j++) {
                        const VarlinkSymbol *m = varlink_interface_get_method_by_index(iface, j);

                        w = MAX(w, prefix + strlen(varlink_symbol_get_name(m)));
                }
        }
        return w;
}

void tsmctl_print_audit_header(void) {
        if (stream_widths[2] == 0)
                stream_widths[2] = longest_event() + 1;
        print_cells(header, stream_widths);
}

void tsmctl_print_audit_row(json_object *r) {
        _cleanup_(row_done) Row row;

        if (stream_widths[2] == 0)
                stream_widths[2] = longest_event() + 1;
        row_init(&row, r);
        print_cells(row.cells, stream_widths);
}

void tsmctl_print_audit_table(json_object *records, size_t n) {
        size_t widths[N_CELLS - 1];

        /* Each column as wide as its widest cell, and a space. */
        for (size_t c = 0; c < N_CELLS - 1; c++)
                widths[c] = tsmctl_display_width(header[c]) + 1;
        for (size_t i = 0; i < n; i++) {
                _cleanup_(row_done) Row row;

                row_init(&row, json_object_array_get_idx(records, i));
                for (size_t c = 0; c < N_CELLS - 1; c++)
                        widths[c] = MAX(widths[c], tsmctl_display_width(row.cells[c]) + 1);
        }
        print_cells(header, widths);
        for (size_t i = 0; i < n; i++) {
                _cleanup_(row_done) Row row;

                row_init(&row, json_object_array_get_idx(records, i));
                print_cells(row.cells, widths);
        }
}
