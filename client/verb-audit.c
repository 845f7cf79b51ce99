/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl audit [--from=SEQ] [--to=SEQ] [--uid=UID] [--device=PCI] [--scope=S] [--result=R] [--limit=N] */

#include <getopt.h>
#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"

/* tsmd's cap on the records of one QueryAudit (the IDL's "default and maximum"). */
#define QUERY_LIMIT_MAX 10000

static const struct option options[] = {
        { "from", required_argument, NULL, 'f' },  { "to", required_argument, NULL, 't' },
        { "uid", required_argument, NULL, 'u' },   { "device", required_argument, NULL, 'd' },
        { "scope", required_argument, NULL, 's' }, { "result", required_argument, NULL, 'r' },
        { "limit", required_argument, NULL, 'l' }, {},
};

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        json_object *params = json_object_new_object(), *reply, *list, *last;
        long long limit = QUERY_LIMIT_MAX;
        size_t n;
        int r, opt;

        if (!params) {
                fprintf(stderr, "Out of memory.\n");
                return EXIT_GENERIC;
        }
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
                        errno = 0;
                        v = strtoll(optarg, &end, 10);
                        /* ERANGE: strtoll() gave LLONG_MAX, which nobody asked for. */
                        if (errno != 0 || *end || end == optarg || v < 0) {
                                fprintf(stderr, "Not a number: %s\n", optarg);
                                json_object_put(params);
                                return EXIT_USAGE;
                        }
                        r = json_object_add(params, key, json_object_new_int64(v));
                        if (opt == 'l')
                                limit = MIN(v, (long long) QUERY_LIMIT_MAX);
                } else
                        r = json_object_add(params, key, json_object_new_string(optarg));
                if (r < 0) {
                        json_object_put(params);
                        fprintf(stderr, "Out of memory.\n");
                        return EXIT_GENERIC;
                }
        }

        r = tsmctl_fetch(o, &c, "io.tsmd.Admin.QueryAudit", params, &reply);
        if (r > 0)
                return r;
        r = tsmctl_reply_array(reply, "io.tsmd.Admin.QueryAudit", "records", &list);
        if (r > 0)
                return r;
        n = json_object_array_length(list);
        if (o->json)
                tsmctl_print_json(reply);
        else {
                tsmctl_print_audit_header();
                for (size_t i = 0; i < n; i++)
                        tsmctl_print_audit_row(json_object_array_get_idx(list, i));
        }

        /* The reply does not say whether more records matched: a full one may have been cut,
         * and nobody should take the oldest 10000 records for the whole log. */
        last = n > 0 ? json_object_array_get_idx(list, n - 1) : NULL;
        if (last && (long long) n >= limit) {
                fflush(stdout);
                fprintf(stderr,
                        "Only the first %zu matching records are shown; there may be more. "
                        "Continue with --from=%lld (and the same filters).\n",
                        n, (long long) json_object_get_int64(json_object_object_get(last, "seq")) + 1);
        }
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
