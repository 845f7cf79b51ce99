/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl backends: the TSMs tsmd routes to, with their type and UAPI. */

#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"

/* Display columns of TSM, TYPE, DRIVER (the driver of the TSM's parent device, which
 * registered it) and UAPI, with the space after each; DEVICES last. */
static const size_t widths[] = { 9, 15, 17, 10 };

static void print_cells(const char *tsm, const char *type, const char *parent, const char *uapi) {
        const char *cells[] = { tsm, type, parent, uapi };

        for (size_t i = 0; i < ELEMENTSOF(cells); i++)
                tsmctl_print_padded(stdout, cells[i], widths[i]);
}

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        json_object *reply, *list;
        int r;

        r = tsmctl_fetch(o, &c, "io.tsmd.Admin.ListBackends", NULL, &reply);
        if (r > 0)
                return r;
        if (o->json) {
                tsmctl_print_json(reply);
                return 0;
        }

        r = tsmctl_reply_array(reply, "io.tsmd.Admin.ListBackends", "backends", &list);
        if (r > 0)
                return r;
        printf("Platform: ");
        tsmctl_fputs_escaped(strna(json_get_string(reply, "platform")), 0, stdout);
        printf("\n\n");
        print_cells("TSM", "TYPE", "DRIVER", "UAPI");
        printf("DEVICES\n");
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                _cleanup_(tsmctl_escapes_done) TsmctlEscapes e = {};
                json_object *b = json_object_array_get_idx(list, i);

                print_cells(strna(tsmctl_esc_cell(&e, json_get_string(b, "tsm"))),
                            tsmctl_esc_cell(&e, json_get_string(b, "type")) ?: "unknown",
                            tsmctl_esc_cell(&e, json_get_string(b, "parentDriver")) ?: "-",
                            strna(tsmctl_esc_cell(&e, json_get_string(b, "uapi"))));
                printf("%d\n", json_object_get_int(json_object_object_get(b, "devices")));
        }
        return 0;
}

const TsmctlVerb verb_backends = {
        .name = "backends",
        .usage = "",
        .summary = "List TSM backends: type, UAPI version, devices",
        .max_args = 0,
        .run = run,
};
