/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One audit record as a table row, shared by the audit and monitor verbs. */

#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"

/* Display columns of SEQ ... LATENCY, with the space after each; RESULT last. */
static const size_t widths[] = { 8, 28, 17, 7, 15, 13, 10 };

static void print_row(const char *const cells[static 8]) {
        for (size_t i = 0; i < ELEMENTSOF(widths); i++)
                tsmctl_print_padded(stdout, cells[i], widths[i]);
        printf("%s\n", cells[ELEMENTSOF(widths)]);
}

void tsmctl_print_audit_header(void) {
        print_row((const char *[]) { "SEQ", "TIME", "EVENT", "UID", "DEVICE", "SCOPE", "LATENCY", "RESULT" });
}

void tsmctl_print_audit_row(json_object *r) {
        _cleanup_(tsmctl_escapes_done) TsmctlEscapes e = {};
        json_object *lat = json_object_object_get(r, "latencyUsec"), *u = json_object_object_get(r, "uid");
        char seq[24], uid[24] = "-", latency[32] = "-";

        if (lat)
                snprintf(latency, sizeof(latency), "%lldus", (long long) json_object_get_int64(lat));
        snprintf(seq, sizeof(seq), "%lld", (long long) json_object_get_int64(json_object_object_get(r, "seq")));
        /* A reload by SIGHUP, a worker's restart: nobody's, not root's. */
        if (u)
                snprintf(uid, sizeof(uid), "%lld", (long long) json_object_get_int64(u));
        print_row((const char *[]) { seq, tsmctl_esc(&e, json_get_string(r, "time")) ?: "-",
                                     tsmctl_esc(&e, json_get_string(r, "event")) ?: "-", uid,
                                     tsmctl_esc(&e, json_get_string(r, "pci")) ?: "-",
                                     tsmctl_esc(&e, json_get_string(r, "scope")) ?: "-", latency,
                                     tsmctl_esc(&e, json_get_string(r, "result")) ?: "-" });
}
