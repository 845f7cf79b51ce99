/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl status: the daemon's version, uptime, connections and limits. */

#include <inttypes.h>
#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"

static int64_t get_int(json_object *o, const char *key) {
        json_object *v;

        return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : -1;
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

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        json_object *reply, *limits = NULL;
        char message_timeout[32], idle_timeout[32];
        int64_t up;
        int r;

        r = tsmctl_fetch(o, &c, "io.tsmd.Service.GetStatus", NULL, &reply);
        if (r > 0)
                return r;
        if (o->json) {
                tsmctl_print_json(reply);
                return 0;
        }

        up = get_int(reply, "uptimeUsec") / 1000000;
        printf("     Version: %s\n      Uptime: %" PRIi64 "d %02" PRIi64 ":%02" PRIi64 ":%02" PRIi64 "\n"
               " Connections: %" PRIi64 "\n",
               strna(json_get_string(reply, "version")), up / 86400, up / 3600 % 24, up / 60 % 60, up % 60,
               get_int(reply, "connections"));
        (void) json_object_object_get_ex(reply, "limits", &limits);
        printf("      Limits: message %" PRIi64 " bytes, depth %" PRIi64 ", %" PRIi64 " JSON values, %" PRIi64
               " fds/message,\n"
               "              %" PRIi64 " pending calls, %" PRIi64 " connections (%" PRIi64 " per uid),\n"
               "              %" PRIi64 " bytes buffered (%" PRIi64 " per uid),\n"
               "              %" PRIi64 " fds on unfinished messages (%" PRIi64 " per uid),\n"
               "              message timeout %s, idle timeout %s\n",
               get_int(limits, "maxMessageSize"), get_int(limits, "maxDepth"), get_int(limits, "maxJsonValues"),
               get_int(limits, "maxFdsPerMessage"), get_int(limits, "maxPendingCalls"),
               get_int(limits, "maxConnections"), get_int(limits, "maxConnectionsPerUid"),
               get_int(limits, "maxBuffered"), get_int(limits, "maxBufferedPerUid"),
               get_int(limits, "maxFds"), get_int(limits, "maxFdsPerUid"),
               format_timeout(get_int(limits, "messageTimeoutSec"), message_timeout, sizeof(message_timeout)),
               format_timeout(get_int(limits, "idleTimeoutSec"), idle_timeout, sizeof(idle_timeout)));
        return 0;
}

const TsmctlVerb verb_status = {
        .name = "status",
        .usage = "",
        .summary = "Show the daemon's status",
        .min_args = 0,
        .max_args = 0,
        .run = run,
};
