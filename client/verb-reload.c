/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl reload: reread tsmd.conf and the policy (as SIGHUP); a bad file is named, the old
 * configuration stays in force; settings tsmd reads only as it starts are named if they changed. */

#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"
#include "varlink-errors.h"

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        json_object *reply, *pending;
        int r;

        r = tsmctl_fetch(o, &c, "io.tsmd.Service.Reload", NULL, &reply);
        if (r > 0) {
                /* Refused before it ran: its answer (up to three paths) may not fit the socket's
                 * MaxMessageSize=. The reload is not lost: a signal asks for it without an answer. */
                if (c && streq(strempty(tsm_client_get_error_name(c)), VARLINK_ERROR_REPLY_MAY_NOT_FIT))
                        fprintf(stderr, "tsmd did not reload: its answer might not fit the admin socket's "
                                "MaxMessageSize= ([Varlink] in tsmd.conf). Raise it, or reload without an "
                                "answer: systemctl kill --signal=SIGHUP --kill-whom=main tsmd, and see tsmctl status.\n");
                return r;
        }
        if (o->json) {
                tsmctl_print_json(reply);
                return 0;
        }
        puts("Configuration and policy reloaded.");
        pending = json_get_array(reply, "pendingRestart");
        if (pending && json_object_array_length(pending) > 0) {
                fputs("Not applied by this reload, taking effect when tsmd restarts: ", stdout);
                tsmctl_print_settings(pending, stdout);
                putchar('\n');
        }
        return 0;
}

const TsmctlVerb verb_reload = {
        .name = "reload",
        .usage = "",
        .summary = "Reread tsmd.conf and the policy; a bad file keeps the old ones and is named",
        .max_args = 0,
        .run = run,
};
