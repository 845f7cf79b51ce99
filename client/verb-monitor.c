/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl monitor: follow the audit log live (io.tsmd.Admin.FollowAudit, with "more"). */

#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"
#include "varlink-errors.h"

typedef struct Monitor {
        const TsmctlOptions *options;
        int write_error; /* errno of the write to stdout that failed */
} Monitor;

static int on_reply(TsmClient *c, const char *reply, bool continues, void *userdata) {
        Monitor *m = userdata;
        const TsmctlOptions *o = m->options;
        _cleanup_(json_object_putp) json_object *p = json_tokener_parse(reply);
        json_object *record;

        if (!p)
                return -EBADMSG;
        record = json_object_object_get(p, "record");
        if (!record) {
                /* The first reply: we are following now, and the table can begin. */
                if (!o->json)
                        tsmctl_print_audit_header();
                return 0;
        }
        if (o->json)
                tsmctl_print_json_ext(record, JSON_C_TO_STRING_PLAIN);
        else
                tsmctl_print_audit_row(record);
        /* Following on into a full disk would never end: stop, and say why (not as a failure of
         * the connection, which EPIPE would be taken for). */
        if (fflush(stdout) != 0 || ferror(stdout)) {
                m->write_error = errno > 0 ? errno : EIO;
                return -EIO; /* not -ECANCELED: libtsm says that when the client is gone */
        }
        return 0;
}

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsmctl_escapes_done) TsmctlEscapes e = {};
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        Monitor m = { .options = o };
        int r;

        r = tsmctl_connect(o, &c);
        if (r > 0)
                return r;
        tsm_client_set_timeout(c, 0); /* until interrupted */
        r = tsm_client_call_more_json(c, "io.tsmd.Admin.FollowAudit", NULL, on_reply, &m);
        if (m.write_error > 0) {
                fprintf(stderr, "Failed to write the output: %s\n", strerror(m.write_error));
                return EXIT_GENERIC;
        }
        if (r == -EPROTO)
                return tsmctl_protocol_error("io.tsmd.Admin.FollowAudit");
        if (r < 0 && !tsm_client_get_error_name(c)) {
                fprintf(stderr, "Following the audit log failed: %s\n", strerror(-r));
                return EXIT_GENERIC;
        }
        /* A record tsmd cannot send within the connection's MaxMessageSize= ends the follow: say
         * which knob, as audit does, rather than the bare error. */
        if (r < 0 && streq(strempty(tsm_client_get_error_name(c)), VARLINK_ERROR_REPLY_TOO_LARGE)) {
                const char *message = strempty(tsm_client_get_error_message(c));

                fprintf(stderr, "Stopped following: a record takes %llu bytes, more than tsmd's MaxMessageSize=%llu "
                        "([Varlink] in tsmd.conf) lets one message have; raise it to follow on.\n",
                        tsmctl_error_number(message, "size"), tsmctl_error_number(message, "maxMessageSize"));
                return EXIT_GENERIC;
        }
        /* An error reply (io.tsmd.System too) is tsmd's answer, not a lost connection. */
        if (r < 0 && !tsmctl_is_connection_error(r)) {
                fprintf(stderr, "Following the audit log failed: %s %s\n", tsmctl_esc(&e, tsm_client_get_error_name(c)),
                        strempty(tsmctl_esc(&e, tsm_client_get_error_message(c))));
                tsmctl_explain_access(c, "io.tsmd.Admin.FollowAudit", tsm_client_get_error_name(c));
                return tsmctl_exit_code_for_error(tsm_client_get_error_name(c));
        }
        if (r < 0) {
                fprintf(stderr, "Connection to tsmd lost: %s\n", strerror(-r));
                return EXIT_NOT_RUNNING;
        }
        return 0;
}

const TsmctlVerb verb_monitor = {
        .name = "monitor",
        .usage = "",
        .summary = "Follow the audit log live",
        .max_args = 0,
        .run = run,
};
