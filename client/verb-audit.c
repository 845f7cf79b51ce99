/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl audit [--from=SEQ] [--to=SEQ] [--uid=UID] [--device=PCI] [--scope=S] [--result=R] [--limit=N] */

#include <getopt.h>
#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"

static const struct option options[] = {
        { "from", required_argument, NULL, 'f' },  { "to", required_argument, NULL, 't' },
        { "uid", required_argument, NULL, 'u' },   { "device", required_argument, NULL, 'd' },
        { "scope", required_argument, NULL, 's' }, { "result", required_argument, NULL, 'r' },
        { "limit", required_argument, NULL, 'l' }, {},
};

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        json_object *params = json_object_new_object(), *reply, *list;
        int r, opt;

        optind = 0;
        while ((opt = getopt_long(argc + 1, argv - 1, "", options, NULL)) >= 0) {
                const char *key = opt == 'f' ? "fromSeq" : opt == 't' ? "toSeq" : opt == 'u' ? "uid" :
                                  opt == 'd' ? "pciAddress" : opt == 's' ? "scope" : opt == 'r' ? "result" :
                                  opt == 'l' ? "limit" : NULL;
                char *end;
                long long v;

                if (!key) {
                        json_object_put(params);
                        return EXIT_USAGE;
                }
                if (strchr("ftul", opt)) {
                        v = strtoll(optarg, &end, 10);
                        if (*end || end == optarg || v < 0) {
                                fprintf(stderr, "Not a number: %s\n", optarg);
                                json_object_put(params);
                                return EXIT_USAGE;
                        }
                        json_object_add(params, key, json_object_new_int64(v));
                } else
                        json_object_add(params, key, json_object_new_string(optarg));
        }

        r = tsmctl_fetch(o, &c, "io.tsmd.Admin.QueryAudit", params, &reply);
        if (r > 0)
                return r;
        if (o->json) {
                tsmctl_print_json(reply);
                return 0;
        }
        tsmctl_print_audit_header();
        list = json_object_object_get(reply, "records");
        for (size_t i = 0; i < json_object_array_length(list); i++)
                tsmctl_print_audit_row(json_object_array_get_idx(list, i));
        return 0;
}

const TsmctlVerb verb_audit = {
        .name = "audit",
        .usage = "[--from=SEQ] [--to=SEQ] [--uid=UID] [--device=PCI] [--scope=S] [--result=R] [--limit=N]",
        .summary = "Query the audit log",
        .max_args = 0,
        .options = options,
        .run = run,
};
