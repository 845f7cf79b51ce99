/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl clients: connected clients, who they are, what they hold. */

#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        json_object *reply, *list;
        int r;

        r = tsmctl_fetch(o, &c, "io.tsmd.Admin.ListClients", NULL, &reply);
        if (r > 0)
                return r;
        if (o->json) {
                tsmctl_print_json(reply);
                return 0;
        }

        r = tsmctl_reply_array(reply, "io.tsmd.Admin.ListClients", "clients", &list);
        if (r > 0)
                return r;
        printf("%-8s %-8s %-8s %-9s %-9s %-8s %s\n", "UID", "GID", "PID", "CONTEXTS", "VDEVICES", "CALLS", "UNIT");
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                _cleanup_(tsmctl_escapes_done) TsmctlEscapes e = {};
                json_object *x = json_object_array_get_idx(list, i);

#define I(k) json_object_get_int64(json_object_object_get(x, k))
                printf("%-8lld %-8lld %-8lld %-9lld %-9lld %-8lld %s\n", (long long) I("uid"), (long long) I("gid"),
                       (long long) I("pid"), (long long) I("contexts"), (long long) I("vdevices"),
                       (long long) I("calls"), tsmctl_esc_cell(&e, json_get_string(x, "unit")) ?: "-");
#undef I
        }
        return 0;
}

const TsmctlVerb verb_clients = {
        .name = "clients",
        .usage = "",
        .summary = "List connected clients: identity, contexts, vDevices, calls",
        .max_args = 0,
        .run = run,
};
