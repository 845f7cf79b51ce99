/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl introspect [INTERFACE...]: print interface descriptions (IDL). */

#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"

/* Asks for the description of the interface name: printed as text, or with --json added to list
 * as {"interface": name, "description": IDL} (one document for them all, printed at the end). */
static int introspect_interface(TsmClient *c, const TsmctlOptions *o, const char *name, json_object *list) {
        json_object *params = json_object_new_object(), *reply, *entry, *description;
        int r;

        if (!params || json_object_add(params, "interface", json_object_new_string(name)) < 0) {
                json_object_put(params);
                fprintf(stderr, "Out of memory.\n");
                return EXIT_GENERIC;
        }
        r = tsmctl_call(c, "org.varlink.service.GetInterfaceDescription", params, &reply);
        if (r > 0)
                return r;
        if (!o->json) {
                /* The IDL is lines of text: only its newlines are its own. */
                tsmctl_fputs_escaped(strna(json_get_string(reply, "description")), ESCAPE_KEEP_NEWLINE, stdout);
                return 0;
        }
        /* The reply is the client's until the next call: the description is referenced. */
        description = json_object_object_get(reply, "description");
        entry = json_object_new_object();
        if (!entry || json_object_add(entry, "interface", json_object_new_string(name)) < 0 ||
            (description ? json_object_add(entry, "description", json_object_get(description)) :
                           json_object_add_null(entry, "description")) < 0 ||
            json_object_array_add(list, entry) < 0) {
                json_object_put(entry);
                fprintf(stderr, "Out of memory.\n");
                return EXIT_GENERIC;
        }
        return 0;
}

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        _cleanup_(json_object_putp) json_object *list = NULL, *info = NULL;
        json_object *ifaces;
        int r;

        r = tsmctl_connect(o, &c);
        if (r > 0)
                return r;
        if (o->json) {
                list = json_object_new_array();
                if (!list) {
                        fprintf(stderr, "Out of memory.\n");
                        return EXIT_GENERIC;
                }
        }

        if (argc > 0)
                for (int i = 0; i < argc; i++) {
                        r = introspect_interface(c, o, argv[i], list);
                        if (r > 0)
                                return r;
                }
        else {
                r = tsmctl_call(c, "org.varlink.service.GetInfo", NULL, &info);
                if (r > 0)
                        return r;
                json_object_get(info); /* the next call replaces the client's current reply */
                ifaces = json_get_array(info, "interfaces");
                for (size_t i = 0; ifaces && i < json_object_array_length(ifaces); i++) {
                        json_object *name = json_object_array_get_idx(ifaces, i);

                        if (!json_object_is_type(name, json_type_string))
                                continue;
                        r = introspect_interface(c, o, json_object_get_string(name), list);
                        if (r > 0)
                                return r;
                        if (!o->json && i + 1 < json_object_array_length(ifaces))
                                putchar('\n');
                }
        }

        /* One document, shaped as the other verbs' lists: an object with the array under the
         * name of what it lists. Nothing of it if any call failed. */
        if (o->json) {
                _cleanup_(json_object_putp) json_object *out = json_object_new_object();

                if (!out || json_object_add(out, "interfaces", json_object_get(list)) < 0) {
                        fprintf(stderr, "Out of memory.\n");
                        return EXIT_GENERIC;
                }
                tsmctl_print_json(out);
        }
        return 0;
}

const TsmctlVerb verb_introspect = {
        .name = "introspect",
        .usage = "[INTERFACE...]",
        .summary = "Print the interface descriptions tsmd serves",
        .min_args = 0,
        .max_args = 64,
        .run = run,
};
