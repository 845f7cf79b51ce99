/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Any Varlink call with JSON text in and out, for tools (tsmctl) that speak other interfaces
 * than io.tsmd.Guest on the same connection logic. */

#include "json-util.h"
#include "libtsm-internal.h"
#include "tsm.h"
#include "varlink-message.h"

/* What tsmd would refuse by hanging up (the caller's contexts gone with the connection) is
 * refused here, before anything is sent: a method that is no Varlink method name, parameters
 * that are not one strict JSON object. */
static int parse_call(const char *method, const char *parameters, json_object **ret) {
        int r;

        if (!varlink_method_name_valid(method, NULL))
                return -EINVAL;
        if (!parameters) {
                *ret = NULL;
                return 0;
        }
        r = varlink_parameters_parse(parameters, ret);
        return r == -ELOOP || r == -E2BIG ? -EINVAL : r; /* tsm.h: which limit is tsmctl's to tell */
}

static char *to_text(json_object *o) {
        return strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* tsm_client_call_json(): see tsm.h. */
_public_ int tsm_client_call_json(TsmClient *c, const char *method, const char *parameters, char **ret_reply) {
        json_object *p, *reply;
        char *text;
        int r;

        assert_return(c, -EINVAL);
        assert_return_client(c, method, -EINVAL);
        assert_return_client(c, ret_reply, -EINVAL);
        r = parse_call(method, parameters, &p);
        if (r < 0)
                return ltsm_error_set_local(c, r);
        r = ltsm_client_widen_limits(c, method);
        if (r < 0) {
                json_object_put(p);
                return ltsm_error_set_local(c, r);
        }

        r = ltsm_client_call(c, method, p, -EBADF, &reply);
        if (r < 0)
                return r;
        text = to_text(reply);
        r = ltsm_client_call_done(c, 0);
        if (r < 0) {
                free(text);
                return r; /* c may be gone */
        }
        if (!text)
                return ltsm_error_set_local(c, -ENOMEM);
        *ret_reply = text;
        return 0;
}

typedef struct MoreState {
        TsmClient *client;
        TsmJsonReplyFunc callback;
        void *userdata;
        int error;
        int stopped; /* what the callback returned to stop, < 0 */
} MoreState;

static int on_more_reply(VarlinkClient *vc, json_object *parameters, const char *error, bool continues,
                         void *userdata) {
        MoreState *s = userdata;
        _cleanup_free_ char *text = NULL;
        int r;

        /* Freed from a callback: no further callbacks. Failing ends the call (and closes the
         * connection) at once; tsm_client_call_more_json() then releases the client. */
        if (s->client->free_requested)
                return -ECANCELED;
        /* SECURITY: no reply of such a call names an fd (the callback gets none): one tsmd
         * sent with it must not stay in the VMM until the next call. */
        varlink_client_close_reply_fds(vc);
        if (error) {
                s->error = ltsm_error_set_varlink(s->client, vc, error, parameters);
                return 0;
        }
        text = to_text(parameters);
        if (!text)
                return -ENOMEM;
        s->client->n_dispatching++;
        r = s->callback(s->client, text, continues, s->userdata);
        s->client->n_dispatching--;
        if (s->client->free_requested)
                return -ECANCELED;
        if (r < 0)
                s->stopped = r;
        return r;
}

/* tsm_client_call_more_json(): see tsm.h. */
_public_ int tsm_client_call_more_json(TsmClient *c, const char *method, const char *parameters,
                                       TsmJsonReplyFunc callback, void *userdata) {
        MoreState s = { .client = c, .callback = callback, .userdata = userdata };
        json_object *p;
        int r;

        assert_return(c, -EINVAL);
        assert_return_client(c, method, -EINVAL);
        assert_return_client(c, callback, -EINVAL);
        r = parse_call(method, parameters, &p);
        if (r < 0)
                return ltsm_error_set_local(c, r);
        r = ltsm_client_check_callable(c, true);
        if (r < 0) {
                json_object_put(p);
                return r;
        }
        r = ltsm_client_widen_limits(c, method);
        if (r < 0) {
                json_object_put(p);
                return ltsm_error_set_local(c, r);
        }

        c->n_busy++;
        r = varlink_client_call_more(c->vc, method, p, on_more_reply, &s);
        if (ltsm_client_leave(c))
                return -ECANCELED;
        /* The callback's own error stops the call as it said; any other failure that killed
         * the connection is -ECONNRESET, as for every call (tsm.h). */
        if (r < 0 && s.stopped < 0)
                return ltsm_error_set_local(c, s.stopped);
        if (r < 0)
                return ltsm_error_set_failed(c, r);
        /* Replies to asynchronous calls the callback made may have come with the last one. */
        if (s.error < 0)
                return ltsm_client_call_done_error(c, s.error);
        ltsm_error_clear(c);
        return ltsm_client_call_done(c, 0); /* -ECANCELED: c is gone */
}
