/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl introspect [INTERFACE...]: print interface descriptions (IDL). */

#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"

static int print_interface(TsmClient *c, const TsmctlOptions *o, const char *name) {
        json_object *params = json_object_new_object(), *reply;
        int r;

        json_object_add(params, "interface", json_object_new_string(name));
        r = tsmctl_call(c, "org.varlink.service.GetInterfaceDescription", params, &reply);
        if (r > 0)
                return r;
        if (o->json)
                tsmctl_print_json(reply);
        else
                /* The IDL is lines of text: only its newlines are its own. */
                tsmctl_fputs_escaped(strna(json_get_string(reply, "description")), ESCAPE_KEEP_NEWLINE, stdout);
        return 0;
}

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        json_object *reply, *ifaces;
        int r;

        r = tsmctl_connect(o, &c);
        if (r > 0)
                return r;

        if (argc > 0) {
                for (int i = 0; i < argc; i++) {
                        r = print_interface(c, o, argv[i]);
                        if (r > 0)
                                return r;
                }
                return 0;
        }

        r = tsmctl_call(c, "org.varlink.service.GetInfo", NULL, &reply);
        if (r > 0)
                return r;
        json_object_get(reply); /* the next call replaces the client's current reply */
        ifaces = json_get_array(reply, "interfaces");
        if (ifaces)
                for (size_t i = 0; i < json_object_array_length(ifaces); i++) {
                        json_object *name = json_object_array_get_idx(ifaces, i);

                        if (!json_object_is_type(name, json_type_string))
                                continue;
                        r = print_interface(c, o, json_object_get_string(name));
                        if (r > 0)
                                break;
                        if (!o->json && i + 1 < json_object_array_length(ifaces))
                                putchar('\n');
                }
        json_object_put(reply);
        return r > 0 ? r : 0;
}

const TsmctlVerb verb_introspect = {
        .name = "introspect",
        .usage = "[INTERFACE...]",
        .summary = "Print the interface descriptions tsmd serves",
        .min_args = 0,
        .max_args = 64,
        .run = run,
};
