/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl call METHOD [JSON]: any Varlink call, like varlinkctl call. */

#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"
#include "varlink-message.h"
#include "varlink-stream.h"

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsmctl_escapes_done) TsmctlEscapes e = {};
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        json_object *params = NULL, *reply;
        int r;

        /* As tsmd reads a call: what it would hang up on is a usage error, and nothing is sent. */
        if (!varlink_method_name_valid(argv[0], NULL)) {
                fprintf(stderr, "Not a Varlink method name (interface.Method): %s\n", tsmctl_esc(&e, argv[0]));
                return EXIT_USAGE;
        }
        if (argc > 1) {
                r = varlink_parameters_parse(argv[1], &params);
                if (r == -ENOMEM) {
                        fprintf(stderr, "Out of memory.\n");
                        return EXIT_GENERIC;
                }
                /* A limit's refusal does not echo what can be megabytes of parameters. */
                if (r == -ELOOP)
                        fprintf(stderr, "Parameters nest deeper than a call may with tsmd's default MaxJsonDepth=: at most %u levels.\n",
                                VARLINK_LIMITS_DEFAULT.max_depth - 1);
                else if (r == -E2BIG)
                        fprintf(stderr, "Parameters hold more JSON values than a call may with tsmd's default MaxJsonValues=: at most %u.\n",
                                VARLINK_LIMITS_DEFAULT.max_json_values - 3);
                else if (r < 0)
                        fprintf(stderr, "Parameters must be a JSON object (strict JSON): %s\n", tsmctl_esc(&e, argv[1]));
                if (r < 0)
                        return EXIT_USAGE;
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
