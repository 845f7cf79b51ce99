/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl call METHOD [JSON]: any Varlink call, like varlinkctl call. */

#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        json_object *params = NULL, *reply;
        int r;

        if (argc > 1) {
                params = json_tokener_parse(argv[1]);
                if (!params || !json_object_is_type(params, json_type_object)) {
                        json_object_put(params);
                        fprintf(stderr, "Parameters must be a JSON object: %s\n", argv[1]);
                        return EXIT_USAGE;
                }
        }

        r = tsmctl_connect(o, &c);
        if (r > 0) {
                json_object_put(params);
                return r;
        }
        r = tsmctl_call(c, argv[0], params, &reply);
        if (r > 0)
                return r;
        tsmctl_print_json(reply);
        return 0;
}

const TsmctlVerb verb_call = {
        .name = "call",
        .usage = "METHOD [PARAMETERS]",
        .summary = "Call a Varlink method with a JSON object of parameters",
        .min_args = 1,
        .max_args = 2,
        .run = run,
};
