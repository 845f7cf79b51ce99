/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl info: what org.varlink.service.GetInfo says about the daemon. */

#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsmctl_escapes_done) TsmctlEscapes e = {};
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        json_object *reply, *ifaces;
        int r;

        r = tsmctl_fetch(o, &c, "org.varlink.service.GetInfo", NULL, &reply);
        if (r > 0)
                return r;
        if (o->json) {
                tsmctl_print_json(reply);
                return 0;
        }

        printf("    Vendor: %s\n   Product: %s\n   Version: %s\n       URL: %s\n",
               strna(tsmctl_esc(&e, json_get_string(reply, "vendor"))),
               strna(tsmctl_esc(&e, json_get_string(reply, "product"))),
               strna(tsmctl_esc(&e, json_get_string(reply, "version"))),
               strna(tsmctl_esc(&e, json_get_string(reply, "url"))));
        ifaces = json_get_array(reply, "interfaces");
        if (ifaces)
                for (size_t i = 0; i < json_object_array_length(ifaces); i++) {
                        printf("%s ", i == 0 ? "Interfaces:" : "           ");
                        tsmctl_fputs_escaped(json_object_get_string(json_object_array_get_idx(ifaces, i)), 0, stdout);
                        putchar('\n');
                }
        return 0;
}

const TsmctlVerb verb_info = {
        .name = "info",
        .usage = "",
        .summary = "Show vendor, version and interfaces of tsmd",
        .min_args = 0,
        .max_args = 0,
        .run = run,
};
