/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io.tsmd.Guest.GuestRequest: a request in a scope the policy grants, passed to the device's
 * TSM through the monitor, its response offered no more room than the caller's reply has.
 * Runs in: worker.
 */

#include <sys/queue.h>

#include "backend.h"
#include "base64.h"
#include "guest-internal.h"
#include "guest-op.h"
#include "json-escape.h"
#include "json-util.h"
#include "policy.h"
#include "priv-call.h"
#include "tsm-platform.h"
#include "varlink-message.h"

/* field: "request" or "maxResponseSize". */
static int reply_payload_too_large(VarlinkCall *call, const char *field, size_t limit) {
        guest_op_set_refused(call);
        return varlink_call_error_kv(call, GUEST_ERROR("PayloadTooLarge"), "field", json_object_new_string(field),
                                     "limit", json_object_new_int64((int64_t) limit), NULL);
}

void guest_pending_free(PendingRequest *pr) {
        TAILQ_REMOVE(&pr->client->pending, pr, entry);
        varlink_call_unref(pr->call);
        free(pr->pci_address);
        free(pr);
}

static void on_request_done(int result, const void *resp, size_t len, void *userdata) {
        PendingRequest *pr = userdata;
        GuestClient *c = pr->client;
        VarlinkCall *call = pr->call;
        _cleanup_free_ char *b64 = NULL;
        json_object *reply;
        int r;

        guest_op_take_kept(call, pr->request);
        if (result < 0) {
                /* Dropped by the monitor before it started, as a reload asked: what the policy
                 * in force says, recorded so, the rule that let it in no longer one. */
                if (pr->revoked && result == -ECANCELED && priv_request_monitor_own(pr->request)) {
                        guest_op_set_rule(call, NULL, NULL);
                        r = guest_send_denied(call, pr->revoked);
                        goto finish;
                }
                /* The monitor's gate refused it: no rule let it through. */
                if (result == -EPERM && priv_request_monitor_own(pr->request))
                        guest_op_set_rule(call, NULL, NULL);
                if (result == -ENOBUFS && priv_request_answered(pr->request))
                        /* The response did not fit what the caller (or the scope) allows. */
                        r = reply_payload_too_large(call, "maxResponseSize", pr->response_size);
                else
                        r = guest_reply_tsm_error(call, pr->request, result, pr->pci_address,
                                            GUEST_REASON_SCOPE_NOT_GRANTED);
                goto finish;
        }

        /* A TSM offered no response buffer may take part of the request: result is the bytes it
         * left (the kernel's residue), said in the record and the reply, not dropped as if all
         * were taken. */
        guest_op_set_response_size(call, len);
        guest_op_set_request_unconsumed(call, (uint64_t) result);
        r = base64_encode(resp, len, &b64);
        if (r < 0)
                goto finish;
        reply = json_object_new_object();
        if (!reply || json_object_add_literal(reply, "response", json_object_new_string_fast(b64, strlen(b64))) < 0 ||
            json_object_add_literal(reply, "scopeNumber", json_object_new_int64(pr->scope_number)) < 0 ||
            (result > 0 && json_object_add_literal(reply, "requestUnconsumed", json_object_new_int64(result)) < 0)) {
                json_object_put(reply);
                r = -ENOMEM;
                goto finish;
        }
        r = varlink_call_reply(call, reply);

finish:
        if (r < 0 && !varlink_call_is_answered(call))
                (void) varlink_call_error_errno(call, r);
        guest_pending_free(pr);
        guest_states_flush(c);
}

/* The largest response whose reply still fits the caller's MaxMessageSize=, which the server
 * measures as the plain JSON plus its NUL (call_send() in varlink-server-call.c). The reply is
 * {"parameters":{"response":"<base64>","scopeNumber":N,"auditSequence":S}}: the base64 of n bytes
 * takes 4 * ceil(n / 3) characters, and S, added once the record is committed (guest-op.c), counts
 * as the longest int64 as it is not known yet. -ENOBUFS if not even an empty response fits. */
static int reply_max_response(size_t max_message_size, uint32_t scope_number, size_t *ret) {
        char number[DECIMAL_U64_MAX];
        size_t envelope;

        /* sizeof() counts the NUL too. */
        envelope = sizeof("{\"parameters\":{\"response\":\"\",\"scopeNumber\":,\"auditSequence\":}}") +
                   strlen(format_u64(scope_number, number)) + strlen("-9223372036854775808");
        if (envelope > max_message_size)
                return -ENOBUFS;
        *ret = (max_message_size - envelope) / 4 * 3;
        return 0;
}

int guest_vl_guest_request(VarlinkCall *call, json_object *p, void *userdata) {
        Manager *m = userdata;
        GuestClient *c = guest_client_of(call);
        const char *scope = json_get_string(p, "scope"), *b64 = json_get_string(p, "request"), *reason = NULL, *rule;
        size_t b64_len = strlen(b64); /* up to 88 KB: once */
        int64_t max_response = guest_get_int(p, "maxResponseSize", -1);
        _cleanup_(priv_payload_freep) PrivPayload *req = NULL;
        const TsmScopeDesc *desc;
        TsmDeviceInfo info;
        PendingRequest *pr;
        GuestContext *ctx;
        GuestVDevice *v;
        size_t req_len, max_request, claimed, response_size, fits;
        uint32_t number;
        int r, claimed_r;

        r = guest_lookup_full(call, p, &ctx, &v, &info);
        if (r <= 0)
                return r;
        if (v->gone || info.backend == _TSM_BACKEND_TYPE_INVALID)
                return guest_reply_backend_error(call, -ENODEV, v->pci_address);

        /* The scope, by name, for the backend serving this device; numbers are never taken. A
         * refusal from here on records the scope as asked for: a name the backend does not
         * declare as the client's text. */
        desc = tsm_backend_find_scope(tsm_backend_desc(info.backend), scope);
        if (desc)
                guest_op_set_scope(call, desc->name, AUDIT_SCOPE_NUMBER_NONE);
        else
                guest_op_set_unknown_scope(call, scope);
        if (max_response < 0)
                return guest_reply_invalid_parameter(call, "maxResponseSize");
        if (!desc) {
                guest_op_set_refused(call);
                return varlink_call_error_kv(call, GUEST_ERROR("NoSuchScope"), "scope", json_object_new_string(scope),
                                             "backend",
                                             json_object_new_string(tsm_backend_type_to_string(info.backend)), NULL);
        }
        r = tsm_platform_scope_number(m->platform, &info, scope, &number);
        /* The record names the scope asked for, also when the UAPI cannot carry it. */
        guest_op_set_scope(call, desc->name, r < 0 ? AUDIT_SCOPE_NUMBER_NONE : (int64_t) number);
        if (r < 0) {
                guest_op_set_refused(call);
                return varlink_call_error_kv(call, GUEST_ERROR("ScopeUnavailable"),
                                             "scope", json_object_new_string(scope),
                                             "uapi",
                                             json_object_new_string(tsm_uapi_version_to_string(info.uapi) ?: "none"),
                                             NULL);
        }
        /* The size the request claims, so that a refusal records it too: the payload is
         * decoded only for a client the policy lets through. */
        claimed_r = base64_decoded_size(b64, b64_len, &claimed);
        if (claimed_r >= 0)
                guest_op_set_request_size(call, claimed);
        /* SECURITY: per scope, per device, per client; debug scopes only where granted. */
        r = policy_check_scope_full(m->policy, &c->identity, v->pci_address, info.backend, scope, &reason, &rule);
        guest_op_set_rule(call, m->policy, rule); /* allowed, or whose grant was missing */
        if (r < 0)
                return guest_reply_denied(call, reason);

        /* The smaller of the backend's limit for the scope and the configured cap. */
        max_request = MIN((size_t) desc->max_request, m->config.max_request_size);
        if (b64_len > DIV_ROUND_UP(max_request, 3) * 4)
                return reply_payload_too_large(call, "request", max_request);
        if (claimed_r < 0)
                return guest_reply_invalid_parameter(call, "request");
        /* Decoded straight into the block that carries it to the monitor. */
        req = priv_payload_new(claimed);
        if (!req)
                return -ENOMEM;
        r = base64_decode_to(b64, b64_len, priv_payload_data(req), claimed, &req_len);
        if (r == -EINVAL)
                return guest_reply_invalid_parameter(call, "request");
        if (r < 0)
                return r;
        guest_op_set_request_size(call, req_len);
        if (req_len > max_request)
                return reply_payload_too_large(call, "request", max_request);
        response_size = MIN((size_t) MIN(max_response, (int64_t) m->config.max_response_size),
                            (size_t) desc->max_response);

        /* A reply too large for the caller's connection would be replaced by ReplyTooLarge after
         * the device acted: the backend is offered no more than the reply can carry, so that a
         * larger response is refused (PayloadTooLarge, with the limit the caller can have)
         * instead of being produced and lost. A oneway caller gets no reply to fit. */
        if (!(varlink_call_get_flags(call) & VARLINK_CALL_ONEWAY)) {
                if (reply_max_response(varlink_call_reserve_reply_room(call), number, &fits) < 0)
                        fits = 0;
                response_size = MIN(response_size, fits);
        }
        /* SECURITY: a kernel TSM offered no response buffer takes the request for one that wants
         * no response, and acts on it. A caller that wants one but may have none (MaxResponseSize=0;
         * not a byte of room in its reply, unreachable while a request is longer than its reply's
         * envelope) is refused instead. */
        if (response_size == 0 && max_response > 0)
                return reply_payload_too_large(call, "maxResponseSize", 0);

        pr = new0(PendingRequest, 1);
        if (!pr)
                return -ENOMEM;
        pr->client = c;
        pr->call = varlink_call_ref(call);
        pr->backend = info.backend;
        pr->scope = desc->name;
        pr->scope_number = number;
        pr->response_size = response_size;
        pr->pci_address = strdup(v->pci_address);
        pr->context = ctx->handle;
        pr->vdevice = v->id;
        pr->serial = c->next_serial++;
        TAILQ_INSERT_TAIL(&c->pending, pr, entry);
        if (!pr->pci_address) {
                guest_pending_free(pr);
                return -ENOMEM;
        }

        guest_op_set_forwarded(call);
        r = priv_call_guest_request(m->channel, ctx->slot, ctx->id, v->id, info.backend, scope, TAKE_PTR(req),
                                    req_len, pr->response_size, on_request_done, pr, &pr->request);
        if (r < 0) {
                guest_pending_free(pr);
                if (r == -E2BIG)
                        return reply_payload_too_large(call, "request", max_request);
                return guest_reply_backend_error(call, r, v->pci_address);
        }
        guest_op_set_priv_cookie(call, priv_request_get_cookie(pr->request));
        return 0;
}
