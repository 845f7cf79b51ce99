/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl status: the daemon's version, uptime, connections, limits, whether its audit log takes
 * records (first, when it does not), where its configuration in force came from, which of its
 * settings wait for a restart, and (to administrators) which of its files changed on disk since
 * and the contexts whose state is not saved. */

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "json-util.h"
#include "tsmctl.h"

/* -1 for a field missing (an older tsmd) or null (told to administrators only). */
static int64_t get_int(json_object *o, const char *key) {
        json_object *v;

        return json_object_object_get_ex(o, key, &v) && v ? json_object_get_int64(v) : -1;
}

/* A timeout in seconds, 0 meaning none (missing from an older tsmd: unknown). */
static const char *format_timeout(int64_t sec, char *buf, size_t size) {
        if (sec < 0)
                return "unknown";
        if (sec == 0)
                return "none";
        (void) snprintf(buf, size, "%" PRIi64 " s", sec);
        return buf;
}

/* CLOCK_REALTIME usec as local time. */
static const char *format_time(int64_t usec, char *buf, size_t size) {
        time_t sec = (time_t) (usec / 1000000);
        struct tm tm;

        if (usec <= 0 || !localtime_r(&sec, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
                return "an unknown time";
        return buf;
}

/* The files of the set in force edited, added or removed on disk since it loaded (told to
 * administrators only), as systemctl says a unit file changed on disk: with what applies them. */
static void print_changed_on_disk(json_object *c) {
        json_object *changed = json_get_array(c, "changedOnDisk");
        int64_t count = get_int(c, "changedOnDiskCount");
        size_t n = changed ? json_object_array_length(changed) : 0;

        if (n == 0 && count <= 0)
                return;
        printf("      Changed: on disk since the load, not in force until 'tsmctl reload':\n");
        for (size_t i = 0; i < n; i++) {
                _cleanup_(tsmctl_escapes_done) TsmctlEscapes e = {};
                const char *path = tsmctl_esc(&e, json_object_get_string(json_object_array_get_idx(changed, i)));

                printf("               %s\n", strna(path));
        }
        if (count > (int64_t) n)
                printf("               and %" PRIi64 " more\n", count - (int64_t) n);
}

/* Whether tsmd serves the files on disk and, if not, since when and why (the details are told
 * to administrators only). */
static void print_configuration(json_object *c) {
        _cleanup_(tsmctl_escapes_done) TsmctlEscapes e = {};
        json_object *pending;
        /* The error quotes the files, and the paths are what tsmd was given: escaped as all. */
        const char *source = tsmctl_esc(&e, json_get_string(c, "source")),
                   *error = tsmctl_esc(&e, json_get_string(c, "error")),
                   *config = tsmctl_esc(&e, json_get_string(c, "configFile")),
                   *policy = tsmctl_esc(&e, json_get_string(c, "policyFile")),
                   *dropins = tsmctl_esc(&e, json_get_string(c, "policyDropInDirectory"));
        char loaded[64], failed[64];

        if (!source) {
                printf("Configuration: unknown\n");
                return;
        }
        format_time(get_int(c, "loadedUsec"), loaded, sizeof(loaded));
        if (streq(source, "last_good")) {
                if (get_int(c, "failedUsec") > 0)
                        printf("Configuration: last good (files on disk do not load since %s: %s)\n",
                               format_time(get_int(c, "failedUsec"), failed, sizeof(failed)),
                               error ?: "see tsmd's log");
                else
                        printf("Configuration: last good (files on disk do not load)\n");
                if (get_int(c, "loadedUsec") > 0)
                        printf("               in force since %s\n", loaded);
        } else if (streq(source, "disk")) {
                if (get_int(c, "loadedUsec") > 0)
                        printf("Configuration: files on disk, loaded %s\n", loaded);
                else
                        printf("Configuration: files on disk\n");
        } else
                printf("Configuration: %s\n", source);
        if (config || policy)
                printf("               from %s, policy %s%s%s\n", strna(config), strna(policy),
                       dropins ? ", drop-ins in " : "", strempty(dropins));
        pending = json_get_array(c, "pendingRestart");
        if (pending && json_object_array_length(pending) > 0) {
                fputs("               not applied until tsmd restarts: ", stdout);
                tsmctl_print_settings(pending, stdout);
                putchar('\n');
        }
        print_changed_on_disk(c);
}

/* Whether the audit log takes records; if not, every call that needs one is refused: said
 * first, with since when and why (told to administrators only) and what makes it take them
 * again. */
static void print_audit(json_object *a) {
        _cleanup_(tsmctl_escapes_done) TsmctlEscapes e = {};
        const char *state = tsmctl_esc(&e, json_get_string(a, "state"));
        int64_t error = get_int(a, "errno");
        char since[64];

        if (!state) {
                printf("    Audit log: unknown\n");
                return;
        }
        if (streq(state, "ok")) {
                printf("    Audit log: ok\n");
                return;
        }
        printf("    Audit log: %s", streq(state, "full") ? "FULL" : streq(state, "failed") ? "FAILED" : state);
        if (get_int(a, "sinceUsec") > 0)
                printf(" since %s", format_time(get_int(a, "sinceUsec"), since, sizeof(since)));
        if (error > 0 && error < INT_MAX)
                printf(": %s (errno %" PRIi64 ")", strerror((int) error), error);
        putchar('\n');
        if (streq(state, "full"))
                printf("               calls that need a record are refused (AuditFailed) until its file system "
                       "has room\n");
        else if (streq(state, "failed"))
                printf("               calls that need a record are refused (AuditFailed) until a reload reopens "
                       "it (tsmctl reload)\n");
}

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsmctl_escapes_done) TsmctlEscapes e = {};
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        json_object *reply, *limits = NULL, *configuration = NULL, *audit = NULL;
        char message_timeout[32], idle_timeout[32];
        bool audit_first;
        int64_t up, owing, closing;
        int r;

        r = tsmctl_fetch(o, &c, "io.tsmd.Service.GetStatus", NULL, &reply);
        if (r > 0)
                return r;
        if (o->json) {
                tsmctl_print_json(reply);
                return 0;
        }

        /* Not ok: the first thing to see. */
        (void) json_object_object_get_ex(reply, "audit", &audit);
        audit_first = json_get_string(audit, "state") && !streq(json_get_string(audit, "state"), "ok");
        if (audit_first)
                print_audit(audit);

        up = get_int(reply, "uptimeUsec") / 1000000;
        printf("      Version: %s\n       Uptime: %" PRIi64 "d %02" PRIi64 ":%02" PRIi64 ":%02" PRIi64 "\n",
               strna(tsmctl_esc(&e, json_get_string(reply, "version"))), up / 86400, up / 3600 % 24, up / 60 % 60,
               up % 60);
        if (get_int(reply, "connections") >= 0)
                printf("  Connections: %" PRIi64 "\n", get_int(reply, "connections"));
        if (!audit_first)
                print_audit(audit);
        (void) json_object_object_get_ex(reply, "limits", &limits);
        printf("       Limits: message %" PRIi64 " bytes, unread replies %" PRIi64 " bytes,\n"
               "               depth %" PRIi64 ", %" PRIi64 " JSON values, %" PRIi64 " fds/message,\n"
               "               %" PRIi64 " pending calls, %" PRIi64 " connections (%" PRIi64 " per uid,\n"
               "               %" PRIi64 " of callers the policy does not name),\n"
               "               %" PRIi64 " admin connections (%" PRIi64 " per uid),\n"
               "               %" PRIi64 " bytes buffered (%" PRIi64 " per uid),\n"
               "               %" PRIi64 " fds on unfinished messages (%" PRIi64 " per uid),\n"
               "               message timeout %s, idle timeout %s\n",
               get_int(limits, "maxMessageSize"), get_int(limits, "maxOutputSize"), get_int(limits, "maxDepth"),
               get_int(limits, "maxJsonValues"), get_int(limits, "maxFdsPerMessage"), get_int(limits, "maxPendingCalls"),
               get_int(limits, "maxConnections"), get_int(limits, "maxConnectionsPerUid"),
               get_int(limits, "maxUnnamedConnections"),
               get_int(limits, "maxAdminConnections"), get_int(limits, "maxAdminConnectionsPerUid"),
               get_int(limits, "maxBuffered"), get_int(limits, "maxBufferedPerUid"),
               get_int(limits, "maxFds"), get_int(limits, "maxFdsPerUid"),
               format_timeout(get_int(limits, "messageTimeoutSec"), message_timeout, sizeof(message_timeout)),
               format_timeout(get_int(limits, "idleTimeoutSec"), idle_timeout, sizeof(idle_timeout)));
        (void) json_object_object_get_ex(reply, "configuration", &configuration);
        print_configuration(configuration);
        /* Told to administrators only, and by a tsmd that counts them. */
        owing = get_int(reply, "contextsOwingSave");
        if (owing >= 0)
                printf("Unsaved state: %" PRIi64 " contexts%s\n", owing,
                       owing > 0 ? " (a save after a change failed; tsmd tries again)" : "");
        closing = get_int(reply, "fdsClosing");
        if (closing >= 0)
                printf("  Fds closing: %" PRIi64 "%s\n", closing,
                       closing > 0 ? " (a client's fds whose close waits; tsmd's log names whose)" : "");
        return 0;
}

const TsmctlVerb verb_status = {
        .name = "status",
        .usage = "",
        .summary = "Show the daemon's status: the files in force, and those changed on disk since",
        .min_args = 0,
        .max_args = 0,
        .run = run,
};
