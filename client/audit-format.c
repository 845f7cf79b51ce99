/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One audit record as a table row, shared by the audit and monitor verbs. */

#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"

void tsmctl_print_audit_header(void) {
        printf("%-7s %-27s %-16s %-6s %-14s %-12s %-9s %s\n", "SEQ", "TIME", "EVENT", "UID", "DEVICE", "SCOPE",
               "LATENCY", "RESULT");
}

void tsmctl_print_audit_row(json_object *r) {
        _cleanup_(tsmctl_escapes_done) TsmctlEscapes e = {};
        json_object *lat = json_object_object_get(r, "latencyUsec");
        char latency[32] = "-";

        if (lat)
                snprintf(latency, sizeof(latency), "%lldus", (long long) json_object_get_int64(lat));
        printf("%-7lld %-27s %-16s %-6lld %-14s %-12s %-9s %s\n",
               (long long) json_object_get_int64(json_object_object_get(r, "seq")),
               tsmctl_esc(&e, json_get_string(r, "time")) ?: "-", tsmctl_esc(&e, json_get_string(r, "event")) ?: "-",
               (long long) json_object_get_int64(json_object_object_get(r, "uid")),
               tsmctl_esc(&e, json_get_string(r, "pci")) ?: "-", tsmctl_esc(&e, json_get_string(r, "scope")) ?: "-",
               latency, tsmctl_esc(&e, json_get_string(r, "result")) ?: "-");
}
