/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The largest answer of each io.tsmd.Guest method that acts, declared to the server so that a
 * call whose answer might not fit its connection is refused before it acts (ReplyMayNotFit),
 * not told ReplyTooLarge about a context made or a device attached. Runs in: worker.
 */

#include <limits.h>

#include "guest-internal.h"
#include "iommufd-transport.h"
#include "policy.h"
#include "reply-bound.h"
#include "tsm-types.h"
#include "varlink-errors.h"

/* Every error a Guest method that acts may give, each at its longest. One bound for all of
 * them: they are short beside AttachDevice's reply, and a list per method would have to be
 * kept in step with each handler. An error that echoes the caller's own text (NoSuchDevice's
 * address, NoSuchScope's scope) counts with the longest text tsmd knows: a longer one answers
 * a call refused before it did anything, and is shorter than that call was. */
static int guest_errors_bound(size_t *max) {
        static const char *const limits[] = { "contexts", "vdevices", "contexts-uid", "contexts-total", NULL };
        static const char *const fd_fields[] = { "fileDescriptor", "vfioFileDescriptor", NULL };
        static const char *const fd_reasons[] = { GUEST_REASON_NO_FD, GUEST_REASON_NOT_IOMMUFD, GUEST_REASON_NOT_RDWR,
                                                  GUEST_REASON_NOT_CHAR, GUEST_REASON_NOT_VFIO,
                                                  GUEST_REASON_OTHER_DEVICE, GUEST_REASON_MISSING, NULL };
        static const char *const fields[] = { "request", "maxResponseSize", "vdeviceId", NULL };
        static const char *const address_errors[] = { GUEST_ERROR("NoSuchDevice"), GUEST_ERROR("DeviceGone"),
                                                      GUEST_ERROR("DeviceBusy"), GUEST_ERROR("Timeout"), NULL };
        static const char *const context_errors[] = { GUEST_ERROR("NoSuchVDevice"), GUEST_ERROR("VDeviceExists"),
                                                      NULL };
        size_t denied, reclaim, backend_name = 0, scope = 0, backend = 0, uapi = sizeof("emulated") - 1;
        int r = 0;

        denied = MAX(MAX(policy_reason_max_length(), strlen(GUEST_REASON_NO_CLIENT_RULE)),
                     MAX(strlen(GUEST_REASON_DEVICE_NOT_LISTED), strlen(GUEST_REASON_SCOPE_NOT_GRANTED)));
        for (int e = 1; e < 4096; e++)
                backend_name = MAX(backend_name, strlen(iommufd_tsm_error_name(-e)));
        for (TsmBackendType b = 0; b < _TSM_BACKEND_TYPE_MAX; b++) {
                const TsmBackendDesc *d = tsm_backend_desc(b);

                backend = MAX(backend, strlen(tsm_backend_type_to_string(b)));
                for (size_t i = 0; d && i < d->n_scopes; i++)
                        scope = MAX(scope, strlen(d->scopes[i].name));
        }
        for (TsmUapiVersion v = 0; v < _TSM_UAPI_VERSION_MAX; v++)
                uapi = MAX(uapi, strlen(tsm_uapi_version_to_string(v)));

        for (const char *const *e = address_errors; *e && r >= 0; e++)
                r = reply_bound_error(*e, "pciAddress", reply_bound_string(POLICY_PCI_ADDRESS_MAX), NULL, NULL, max);
        for (const char *const *e = context_errors; *e && r >= 0; e++)
                r = reply_bound_error(*e, "context", reply_bound_int(), "vdeviceId", reply_bound_int(), max);
        if (r >= 0)
                r = reply_bound_error(GUEST_ERROR("NoSuchContext"), "context", reply_bound_int(), NULL, NULL, max);
        if (r >= 0)
                r = reply_bound_error(GUEST_ERROR("Denied"), "reason", reply_bound_string(denied), NULL, NULL, max);
        if (r >= 0)
                r = reply_bound_error(GUEST_ERROR("LimitReached"), "limit", reply_bound_longest(limits), "max",
                                      reply_bound_int(), max);
        if (r >= 0)
                r = reply_bound_error(GUEST_ERROR("BadFileDescriptor"), "field", reply_bound_longest(fd_fields),
                                      "reason", reply_bound_longest(fd_reasons), max);
        if (r >= 0)
                r = reply_bound_error(GUEST_ERROR("InvalidState"), "state", reply_bound_longest(guest_tdi_states()),
                                      NULL, NULL, max);
        if (r >= 0)
                r = reply_bound_error(GUEST_ERROR("BackendError"), "name", reply_bound_string(backend_name), "errno",
                                      reply_bound_int(), max);
        if (r >= 0)
                r = reply_bound_error(GUEST_ERROR("AuditFailed"), "errno", reply_bound_int(), NULL, NULL, max);
        if (r >= 0)
                r = reply_bound_error(GUEST_ERROR("StateNotSaved"), "errno", reply_bound_int(), NULL, NULL, max);
        reclaim = MAX((size_t) GUEST_RECLAIM_REASON_MAX, strlen(GUEST_REASON_NO_RECLAIM));
        if (r >= 0)
                r = reply_bound_error(GUEST_ERROR("ReclaimRefused"), "reason", reply_bound_string(reclaim), NULL, NULL,
                                      max);
        if (r >= 0)
                r = reply_bound_error(GUEST_ERROR("PayloadTooLarge"), "field", reply_bound_longest(fields), "limit",
                                      reply_bound_int(), max);
        if (r >= 0)
                r = reply_bound_error(GUEST_ERROR("NoSuchScope"), "scope", reply_bound_string(scope), "backend",
                                      reply_bound_string(backend), max);
        if (r >= 0)
                r = reply_bound_error(GUEST_ERROR("ScopeUnavailable"), "scope", reply_bound_string(scope), "uapi",
                                      reply_bound_string(uapi), max);
        if (r >= 0)
                r = reply_bound_error(VARLINK_ERROR_INVALID_PARAMETER, "parameter", reply_bound_longest(fields), NULL,
                                      NULL, max);
        if (r >= 0)
                r = reply_bound_common(max);
        return r;
}

/* AttachDevice's reply: the backend with the most (and longest) scopes, all offered, each with
 * the longest number, through a TSM of the longest name sysfs has (NAME_MAX) and the longest
 * UAPI name. */
static int attach_reply_bound(size_t *max) {
        const char *uapi = "emulated"; /* longer than "none" */
        int r;

        for (TsmUapiVersion v = 0; v < _TSM_UAPI_VERSION_MAX; v++)
                if (strlen(tsm_uapi_version_to_string(v)) > strlen(uapi))
                        uapi = tsm_uapi_version_to_string(v);

        for (TsmBackendType b = 0; b < _TSM_BACKEND_TYPE_MAX; b++) {
                const TsmBackendDesc *d = tsm_backend_desc(b);
                _cleanup_(json_object_putp) json_object *scopes = json_object_new_array(), *tsm = NULL;
                json_object *reply;

                if (!scopes || !d)
                        return -ENOMEM;
                for (size_t i = 0; i < d->n_scopes; i++) {
                        json_object *o;

                        r = guest_scope_json_new(&d->scopes[i], INT64_MIN, false, &o);
                        if (r < 0)
                                return r;
                        if (json_object_array_add(scopes, o) < 0) {
                                json_object_put(o);
                                return -ENOMEM;
                        }
                }
                tsm = reply_bound_string(NAME_MAX);
                if (!tsm)
                        return -ENOMEM;
                r = guest_attach_reply_new(tsm_backend_type_to_string(b), json_object_get_string(tsm), uapi,
                                           TAKE_PTR(scopes), &reply);
                if (r < 0)
                        return r;
                r = reply_bound_reply(reply, max);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* What each method that acts replies when it succeeds, at its longest. GuestRequest sizes the
 * response it asks the backend for by the room its reply has (reply_max_response() in
 * guest-request.c); bounded here is its reply without a response, which may say the request
 * bytes a TSM offered no response buffer left (requestUnconsumed). */
static int success_bound(const char *method, size_t *max, unsigned *ret_fds) {
        char token[RECLAIM_TOKEN_LEN + 1];
        json_object *reply;
        int r;

        memset(token, 'x', RECLAIM_TOKEN_LEN);
        token[RECLAIM_TOKEN_LEN] = 0;
        *ret_fds = 0;

        if (streq(method, "OpenContext") || streq(method, "AdoptContext") || streq(method, "ReclaimContext")) {
                bool fd = !streq(method, "AdoptContext");

                *ret_fds = fd;
                r = guest_context_reply_new(INT64_MIN, fd ? INT64_MAX : -1, token, &reply);
                if (r < 0)
                        return r;
                return reply_bound_reply(reply, max);
        }
        if (streq(method, "AttachDevice"))
                return attach_reply_bound(max);
        if (streq(method, "Bind") || streq(method, "Unbind")) {
                reply = json_object_new_object();
                if (!reply || json_object_add(reply, "state", reply_bound_longest(guest_tdi_states())) < 0) {
                        json_object_put(reply);
                        return -ENOMEM;
                }
                return reply_bound_reply(reply, max);
        }
        if (streq(method, "GuestRequest")) {
                reply = json_object_new_object();
                if (!reply || json_object_add(reply, "response", json_object_new_string("")) < 0 ||
                    json_object_add(reply, "scopeNumber", reply_bound_int()) < 0 ||
                    json_object_add(reply, "requestUnconsumed", reply_bound_int()) < 0 ||
                    json_object_add(reply, "auditSequence", reply_bound_int()) < 0) {
                        json_object_put(reply);
                        return -ENOMEM;
                }
                return reply_bound_reply(reply, max);
        }
        if (streq(method, "CloseContext") || streq(method, "DetachDevice"))
                return reply_bound_reply(NULL, max);
        return -ENOENT;
}

int guest_reply_bound(const char *method, size_t *ret_size, unsigned *ret_fds) {
        static const char prefix[] = "io.tsmd.Guest.";
        static size_t errors = 0;
        size_t max = 0;
        unsigned fds;
        int r;

        if (!strneq(method, prefix, strlen(prefix)))
                return -ENOENT;
        r = success_bound(method + strlen(prefix), &max, &fds);
        if (r < 0)
                return r;
        /* The same for every method, and for the life of the process: made once. */
        if (errors == 0) {
                r = guest_errors_bound(&errors);
                if (r < 0)
                        return r;
        }
        *ret_size = MAX(max, errors);
        *ret_fds = fds;
        return 0;
}
