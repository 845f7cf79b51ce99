/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libtsm's errors: the one table from Varlink error names to errno values (documented in
 * tsm.h, part of the ABI), and the client's "last error" state with a short human rendering of
 * the error's parameters. Runs in: the VMM process.
 */

#include <inttypes.h>
#include <stdio.h>

#include "escape.h"
#include "libtsm-internal.h"
#include "varlink-errors.h"

#define GUEST "io.tsmd.Guest."

static const struct {
        const char *name;
        int error;
} error_table[] = {
        { GUEST "NoSuchContext", ENOENT },
        { GUEST "NoSuchVDevice", ENOENT },
        { GUEST "NoSuchDevice", ENOENT },
        { GUEST "VDeviceExists", EEXIST },
        { GUEST "NoSuchScope", EOPNOTSUPP },
        { GUEST "ScopeUnavailable", EOPNOTSUPP },
        { GUEST "Denied", EACCES },
        { VARLINK_ERROR_PERMISSION_DENIED, EACCES },
        { GUEST "BadFileDescriptor", EBADF },
        { GUEST "PayloadTooLarge", E2BIG },
        { GUEST "DeviceGone", ENODEV },
        { GUEST "DeviceBusy", EBUSY },
        /* Not ETIMEDOUT: that says the connection is gone (tsm.h), and this one goes on. */
        { GUEST "Timeout", ETIME },
        { GUEST "InvalidState", EBADFD },
        { GUEST "AuditFailed", EIO },
        { GUEST "StateNotSaved", EIO },
        { GUEST "LimitReached", EUSERS },
        { GUEST "ReclaimRefused", ENOENT },
        { VARLINK_ERROR_INVALID_PARAMETER, EINVAL },
        { VARLINK_ERROR_INTERFACE_NOT_FOUND, EOPNOTSUPP },
        { VARLINK_ERROR_METHOD_NOT_FOUND, EOPNOTSUPP },
        { VARLINK_ERROR_METHOD_NOT_IMPLEMENTED, EOPNOTSUPP },
        { VARLINK_ERROR_EXPECTED_MORE, EBADE }, /* as varlink-errors.c has it; EPROTO is local */
        { VARLINK_ERROR_REPLY_TOO_LARGE, EMSGSIZE },
        { VARLINK_ERROR_REPLY_MAY_NOT_FIT, E2BIG },
        /* tsmd refused the connection (its answer to the first call, then it closed it): not
         * ECONNRESET, or a VMM would take it for a restart and reconnect, to be refused again. */
        { VARLINK_REFUSED_TOO_MANY_CONNECTIONS, EUSERS },
        { VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID, EUSERS },
        /* tsmd refused the call's message as a whole (the answer to it, then it closed the
         * connection): as libtsm refuses such a call itself before sending it (EINVAL, E2BIG). */
        { VARLINK_REFUSED_MALFORMED_MESSAGE, EINVAL },
        { VARLINK_REFUSED_NESTING_TOO_DEEP, EINVAL },
        { VARLINK_REFUSED_TOO_MANY_JSON_VALUES, EINVAL },
        { VARLINK_REFUSED_MESSAGE_TOO_LARGE, E2BIG },
        { VARLINK_REFUSED_FILE_DESCRIPTORS, E2BIG },
        /* tsmd closed the connection as too slow to call: not ETIMEDOUT, after which it goes on
         * (tsm.h), nor ECONNRESET, which a peer's error never is; the connection is gone all
         * the same, and a new one is served. */
        { VARLINK_REFUSED_MESSAGE_TIMEOUT, ECONNABORTED },
        { VARLINK_REFUSED_IDLE_TIMEOUT, ECONNABORTED },
        /* io.tsmd.Disconnected, io.tsmd.TimedOut and io.tsmd.Protocol are not here: they name
         * local failures (ltsm_error_set_varlink()), and tsmd sending one is any other error. */
};

/* What libtsm's own failures mean (tsm.h): a peer must not be able to make a VMM believe its
 * connection, or the client itself, is gone, or that a call was not sent (EINPROGRESS), by
 * sending one of them as a backend's errno. */
static bool errno_is_reserved(int e) {
        return e == ECONNRESET || e == ENOTCONN || e == ETIMEDOUT || e == EPROTO || e == ECANCELED ||
               e == EDEADLK || e == EINPROGRESS;
}

/* Errors carrying the errno they stand for. */
static int errno_parameter(json_object *parameters) {
        json_object *v;
        int64_t e;

        if (!json_object_object_get_ex(parameters, "errno", &v) || !json_object_is_type(v, json_type_int))
                return EIO;
        e = json_object_get_int64(v);
        if (e < 1 || e > 4095 || errno_is_reserved((int) e))
                return EIO; /* the error message still names it ("errno=71") */
        return (int) e;
}

int ltsm_error_to_errno(const char *name, json_object *parameters) {
        if (!name)
                return 0;
        if (streq(name, GUEST "BackendError") || streq(name, VARLINK_ERROR_SYSTEM))
                return errno_parameter(parameters);
        for (size_t i = 0; i < ELEMENTSOF(error_table); i++)
                if (streq(error_table[i].name, name))
                        return error_table[i].error;
        return EBADR;
}

/* Appends text to buf (of size TSM_ERROR_MESSAGE_MAX) at *pos, "..." when it does not fit.
 * Returns false once full. The message is printed to terminals: controls (C0, DEL, C1),
 * characters that show as other than they are (utf8_is_deceptive()) and bytes that are no
 * UTF-8 become '?', and
 * it is cut between characters, never inside one. */
static bool append(char *buf, size_t *pos, const char *text) {
        const size_t room = TSM_ERROR_MESSAGE_MAX - 4; /* "..." and NUL */

        for (const unsigned char *t = (const unsigned char *) text; *t;) {
                size_t n = utf8_sequence_len(t);
                bool control = n == 0 || (n == 1 && (*t < 0x20 || *t == 0x7f)) || utf8_is_deceptive(t, n);

                if (*pos + (control ? 1 : n) > room) {
                        memcpy(buf + *pos, "...", 4);
                        return false;
                }
                if (control)
                        buf[(*pos)++] = '?';
                else {
                        memcpy(buf + *pos, t, n);
                        *pos += n;
                }
                t += n ?: 1;
        }
        buf[*pos] = 0;
        return true;
}

/* "key=value, key=value": strings as they are, anything else as JSON. */
static char *format_parameters(json_object *parameters) {
        char *buf = malloc(TSM_ERROR_MESSAGE_MAX);
        size_t pos = 0;
        bool first = true;

        if (!buf)
                return NULL;
        buf[0] = 0;
        if (!json_object_is_type(parameters, json_type_object))
                return buf;

        json_object_object_foreach(parameters, key, value) {
                const char *text = json_object_is_type(value, json_type_string) ?
                                           json_object_get_string(value) :
                                           json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN);

                if ((!first && !append(buf, &pos, ", ")) || !append(buf, &pos, key) ||
                    !append(buf, &pos, "=") || !append(buf, &pos, text ?: "?"))
                        break;
                first = false;
        }
        return buf;
}

static void error_set(TsmClient *c, const char *name, char *message) {
        free(c->error_name);
        free(c->error_message);
        c->error_name = name ? strdup(name) : NULL;
        c->error_message = message;
        /* Out of memory: no error state rather than a name without a message. */
        if (!c->error_name || !c->error_message) {
                c->error_name = mfree(c->error_name);
                c->error_message = mfree(c->error_message);
        }
}

void ltsm_error_clear(TsmClient *c) {
        error_set(c, NULL, NULL);
}

/* The refusals of a connection say what they mean by name, but for the share of the callers the
 * policy does not name, which gives its limit. */
static char *refusal_message(const char *name, json_object *parameters) {
        json_object *unnamed;
        char *m;

        if (!name)
                return NULL;
        if (streq(name, VARLINK_REFUSED_TOO_MANY_CONNECTIONS) && parameters &&
            json_object_object_get_ex(parameters, "maxUnnamedConnections", &unnamed)) {
                if (asprintf(&m, "tsmd refused the connection: the callers its policy does not name have all "
                                 "they may open (MaxUnnamedConnections=%" PRIi64 "); it is closed",
                             json_object_get_int64(unnamed)) < 0)
                        return NULL;
                return m;
        }
        if (streq(name, VARLINK_REFUSED_TOO_MANY_CONNECTIONS))
                return strdup("tsmd refused the connection: it has all it takes open "
                              "(MaxConnections=, MaxAdminConnections=); it is closed");
        if (streq(name, VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID))
                return strdup("tsmd refused the connection: this uid has all it may open "
                              "(MaxConnectionsPerUid=, MaxAdminConnectionsPerUid=); it is closed");
        return NULL;
}

/* The refusals that end a connection for its call, in words, before their parameters (the
 * limit broken): a VMM's log must say the connection is gone. */
static char *refused_call_message(const char *name, json_object *parameters) {
        static const struct {
                const char *name, *text;
        } texts[] = {
                { VARLINK_REFUSED_MALFORMED_MESSAGE, "tsmd refused the call as no valid JSON object" },
                { VARLINK_REFUSED_NESTING_TOO_DEEP, "tsmd refused the call as nested too deep" },
                { VARLINK_REFUSED_TOO_MANY_JSON_VALUES, "tsmd refused the call as of too many JSON values" },
                { VARLINK_REFUSED_MESSAGE_TOO_LARGE, "tsmd refused the call as too large" },
                { VARLINK_REFUSED_FILE_DESCRIPTORS, "tsmd refused the fds sent with the call" },
                { VARLINK_REFUSED_MESSAGE_TIMEOUT, "tsmd did not receive the whole call in time" },
                { VARLINK_REFUSED_IDLE_TIMEOUT, "tsmd found the connection idle too long" },
        };
        _cleanup_free_ char *limit = NULL;
        char *m;

        if (!name)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                if (!streq(texts[i].name, name))
                        continue;
                limit = format_parameters(parameters);
                if (!limit)
                        return NULL;
                if (asprintf(&m, "%s%s%s%s; it closed the connection", texts[i].text, *limit ? " (" : "", limit,
                             *limit ? ")" : "") < 0)
                        return NULL;
                return m;
        }
        return NULL;
}

int ltsm_error_set_reply(TsmClient *c, const char *name, json_object *parameters) {
        char *message = refusal_message(name, parameters) ?: refused_call_message(name, parameters);

        error_set(c, name, message ?: format_parameters(parameters));
        return -ltsm_error_to_errno(name, parameters);
}

int ltsm_error_set_varlink(TsmClient *c, VarlinkClient *vc, const char *name, json_object *parameters) {
        /* The Varlink client reports its own failures by these names, and only once it is dead
         * (after it closed the connection): while it lives, the name came from the peer. */
        if (!varlink_client_is_connected(vc)) {
                if (streq(name, VARLINK_ERROR_TIMEOUT))
                        return ltsm_error_set_local(c, -ETIMEDOUT);
                if (streq(name, VARLINK_ERROR_PROTOCOL))
                        return ltsm_error_set_local(c, -EPROTO);
                return ltsm_error_set_local(c, -ECONNRESET);
        }
        return ltsm_error_set_reply(c, name, parameters);
}

int ltsm_error_set_local(TsmClient *c, int r) {
        const char *name, *message;

        switch (r) {
        case -ECONNRESET:
                name = VARLINK_ERROR_DISCONNECTED;
                message = "the connection to tsmd was lost";
                break;
        case -ENOTCONN:
                name = VARLINK_ERROR_DISCONNECTED;
                message = "not connected to tsmd (tsm_client_reconnect() makes a new connection)";
                break;
        case -ETIMEDOUT:
                name = VARLINK_ERROR_TIMEOUT;
                message = "tsmd did not answer in time; the call was abandoned, the connection goes on";
                break;
        case -EPROTO:
                name = VARLINK_ERROR_PROTOCOL;
                message = "tsmd violated the Varlink protocol; the connection was closed";
                break;
        default:
                ltsm_error_clear(c);
                return r;
        }
        error_set(c, name, strdup(message));
        return r;
}
