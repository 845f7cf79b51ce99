/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The blocking calls of io.tsmd.Guest: contexts, vDevices, binding, guest requests. Each one
 * checks its arguments, builds the parameters, makes one call and copies what the caller gets
 * out of the reply. Documented in tsm.h. Runs in: the VMM process.
 */

#include <fcntl.h>

#include "base64.h"
#include "json-escape.h"
#include "json-util.h"
#include "libtsm-internal.h"

#define METHOD(name) "io.tsmd.Guest." name

/* Handles and ids travel as JSON integers (int64). */
#define CONTEXT_VALID(ctx) ((ctx) <= (uint64_t) INT64_MAX)
#define VDEVICE_VALID(id) ((id) > 0)

/* {"context": ctx, "vdeviceId": id} (the latter only if id > 0). */
static json_object *params_new(uint64_t context, uint32_t vdevice_id) {
        _cleanup_(json_object_putp) json_object *p = json_object_new_object();

        if (!p || json_object_add(p, "context", json_object_new_int64((int64_t) context)) < 0)
                return NULL;
        if (vdevice_id > 0 && json_object_add(p, "vdeviceId", json_object_new_int64(vdevice_id)) < 0)
                return NULL;
        return TAKE_PTR(p);
}

/* For parameters that could not be built: the error state says "no Varlink error". */
static int oom(TsmClient *c) {
        ltsm_error_clear(c);
        return -ENOMEM;
}

/* A reply that does not match the interface. */
static int bad_reply(TsmClient *c, int r) {
        ltsm_error_clear(c);
        return ltsm_client_call_done(c, r);
}

/* The context and iommufd of an OpenContext or ReclaimContext reply (the current one of vc);
 * the fd is taken out of the reply in any case, so it is never left behind open. */
static int reply_context_fd(VarlinkClient *vc, json_object *reply, uint64_t *ret_context, int *ret_iommufd) {
        int64_t context, index;
        int r, fd;

        r = ltsm_reply_get_int(reply, "context", 0, INT64_MAX, &context);
        if (r >= 0)
                r = ltsm_reply_get_int(reply, "fileDescriptor", 0, INT32_MAX, &index);
        if (r < 0)
                return r;
        *ret_context = (uint64_t) context; /* also for -EMFILE: tsm_context_open() needs it */
        fd = varlink_client_take_fd(vc, (size_t) index);
        if (fd == -EMFILE)
                return fd; /* tsmd sent it, but our fd table is full */
        if (fd < 0)
                return -EBADMSG;
        *ret_iommufd = fd;
        return 0;
}

/* Hands the context's fd out (or closes it) once the call is done; closes it if the call
 * failed after all (a callback freed the client: tsmd releases the context with it). */
static int context_fd_done(TsmClient *c, uint64_t context, int fd, uint64_t *ret_context, int *ret_iommufd) {
        int r = ltsm_client_call_done(c, 0);

        if (r < 0) {
                safe_close(fd);
                return r;
        }
        *ret_context = context;
        if (ret_iommufd)
                *ret_iommufd = fd;
        else
                safe_close(fd);
        return 0;
}

/* Keeps the reply's reclaimToken for tsm_context_get_reclaim_token(); tsmd gives none where it
 * cannot keep contexts. Out of memory, the context is not failed for it: it just has none. */
static void remember_token(TsmClient *c, json_object *reply, uint64_t context) {
        const char *token;

        if (ltsm_reply_get_string(reply, "reclaimToken", &token) >= 0)
                (void) ltsm_tokens_remember(c, context, token);
}

/* The late reply of an abandoned OpenContext or AdoptContext: the context it made is the
 * connection's, unknown to the VMM, and counts against the limits (MaxContexts= ...) until the
 * connection ends. It is closed, oneway, as nobody waits for the answer; its iommufd goes with
 * the reply. Not a ReclaimContext's (on_abandoned_reclaim()). */
static int on_abandoned_context(VarlinkClient *vc, json_object *parameters, const char *error, bool continues,
                                void *userdata) {
        json_object *p;
        int64_t context;

        if (error || ltsm_reply_get_int(parameters, "context", 0, INT64_MAX, &context) < 0)
                return 0;
        p = params_new((uint64_t) context, 0);
        if (p)
                (void) varlink_client_queue_oneway(vc, METHOD("CloseContext"), p);
        return 0;
}

/* A ReclaimContext's success, its iommufd taken or -EMFILE: tsmd renewed the token reclaimed
 * with, which is void now, and only the reply has the new one, which must not be lost, the
 * context being this connection's even without its fd. A tsmd that does not renew tokens
 * answers none: the one given stays the context's. */
static const char *remember_renewed_token(TsmClient *c, json_object *reply, uint64_t context, const char *given) {
        const char *renewed;

        if (ltsm_reply_get_string(reply, "reclaimToken", &renewed) < 0)
                renewed = given;
        (void) ltsm_tokens_remember(c, context, renewed);
        return renewed;
}

/* The late reply of an abandoned ReclaimContext (userdata its TsmLateReclaim). A success took
 * back a context that holds a running guest's vDevices and bindings, which a close would end
 * for a timeout of libtsm's: it stays, and a retry of tsm_context_reclaim() with the same
 * token, which tsmd now refuses (renewed), gets it from here, its iommufd kept open until then.
 * An error (or a reply that does not match the interface, as the call would have failed with
 * it) took nothing back: a retry goes to tsmd. */
static int on_abandoned_reclaim(VarlinkClient *vc, json_object *parameters, const char *error, bool continues,
                                void *userdata) {
        TsmLateReclaim *l = userdata;
        uint64_t context = 0;
        int r, fd = -EMFILE;

        r = error ? -EIO : reply_context_fd(vc, parameters, &context, &fd);
        if (r < 0 && r != -EMFILE) {
                ltsm_late_reclaim_free(l);
                return 0;
        }
        (void) ltsm_late_reclaim_answered(l, context, remember_renewed_token(l->client, parameters, context, l->token),
                                          fd);
        return 0;
}

/* A retried reclaim whose abandoned one succeeded late: the outputs that call would have had,
 * without asking tsmd (which refuses the token, renewed). The entry is forgotten. */
static int late_reclaim_take(TsmClient *c, TsmLateReclaim *l, uint64_t *ret_context, int *ret_iommufd) {
        uint64_t context = l->context;
        int fd = TAKE_FD(l->iommufd); /* or -EMFILE */

        ltsm_late_reclaim_free(l);
        ltsm_error_clear(c);
        *ret_context = context;
        if (fd < 0)
                return fd; /* -EMFILE: the context is the connection's all the same, as below */
        if (ret_iommufd)
                *ret_iommufd = fd;
        else
                safe_close(fd);
        return 0;
}

/* tsm_context_open(): see tsm.h. */
_public_ int tsm_context_open(TsmClient *c, uint64_t *ret_context, int *ret_iommufd) {
        json_object *reply;
        uint64_t context;
        int r, fd;

        assert_return(c, -EINVAL);
        assert_return_client(c, ret_context, -EINVAL);

        r = ltsm_client_call_full(c, METHOD("OpenContext"), NULL, -EBADF, on_abandoned_context, NULL, &reply);
        if (r < 0)
                return r;
        r = reply_context_fd(c->vc, reply, &context, &fd);
        if (r == -EMFILE) {
                /* Its iommufd never reached us: a context nobody can use would stay tsmd's
                 * until the connection ends. */
                r = bad_reply(c, r);
                if (r == -ECANCELED)
                        return r;
                r = tsm_context_close(c, context);
                if (r == -ECANCELED)
                        return r;
                /* Lost meanwhile: said as such, -EMFILE promising that the connection goes on. */
                if (r < 0 && (!c->vc || !varlink_client_is_connected(c->vc)))
                        return r;
                return ltsm_error_set_local(c, -EMFILE);
        }
        if (r < 0)
                return bad_reply(c, r);
        remember_token(c, reply, context);
        return context_fd_done(c, context, fd, ret_context, ret_iommufd);
}

/* tsm_context_adopt(): see tsm.h. */
_public_ int tsm_context_adopt(TsmClient *c, int iommufd, uint64_t *ret_context) {
        json_object *p, *reply;
        int64_t context;
        int r;

        assert_return(c, -EINVAL);
        assert_return_client(c, ret_context, -EINVAL);
        if (iommufd < 0 || fcntl(iommufd, F_GETFD) < 0)
                return ltsm_error_set_local(c, -EBADF);

        p = json_object_new_object();
        if (!p || json_object_add(p, "fileDescriptor", json_object_new_int(0)) < 0) {
                json_object_put(p);
                return oom(c);
        }
        r = ltsm_client_call_full(c, METHOD("AdoptContext"), p, iommufd, on_abandoned_context, NULL, &reply);
        if (r < 0)
                return r;
        r = ltsm_reply_get_int(reply, "context", 0, INT64_MAX, &context);
        if (r < 0)
                return bad_reply(c, r);
        remember_token(c, reply, (uint64_t) context);
        r = ltsm_client_call_done(c, 0);
        if (r < 0)
                return r;
        *ret_context = (uint64_t) context;
        return 0;
}

/* tsm_context_reclaim(): see tsm.h. */
_public_ int tsm_context_reclaim(TsmClient *c, const char *reclaim_token, uint64_t *ret_context, int *ret_iommufd) {
        _cleanup_(ltsm_token_freep) char *renewed = NULL;
        TsmLateReclaim *late;
        json_object *p, *reply;
        uint64_t context;
        int r, fd;

        assert_return(c, -EINVAL);
        assert_return_client(c, !isempty(reclaim_token), -EINVAL);
        assert_return_client(c, ret_context, -EINVAL);

        /* A retry of a reclaim that timed out, whose late success came: tsmd renewed the token,
         * and the context is this connection's already. As any call: not on a lost connection
         * (which took the context along), nor from a callback. */
        r = ltsm_client_check_callable(c, true);
        if (r < 0)
                return r;
        late = ltsm_late_reclaim_find(c, reclaim_token, false);
        if (late)
                return late_reclaim_take(c, late, ret_context, ret_iommufd);
        /* Its connection was lost since: tsmd knows the context by the renewed token only,
         * which is sent in its place, until tsmd answers for it. */
        late = ltsm_late_reclaim_find(c, reclaim_token, true);
        if (late) {
                renewed = strdup(late->renewed);
                if (!renewed)
                        return oom(c);
        }

        p = json_object_new_object();
        if (!p || json_object_add(p, "reclaimToken", json_object_new_string(renewed ?: reclaim_token)) < 0) {
                json_object_put(p);
                return oom(c);
        }
        r = ltsm_late_reclaim_new(c, reclaim_token, &late);
        if (r < 0) {
                json_object_put(p);
                return oom(c);
        }
        r = ltsm_client_call_full(c, METHOD("ReclaimContext"), p, -EBADF, on_abandoned_reclaim, late, &reply);
        if (r == -ECANCELED)
                return r; /* c is gone, late with it */
        /* Only an abandoned call's late reply comes to on_abandoned_reclaim(). */
        if (r != -ETIMEDOUT)
                ltsm_late_reclaim_free(late);
        /* tsmd refused the token as void: a reclaim with it that timed out before this one may
         * have succeeded, its late reply read while this one waited. */
        /* tsmd took the renewed token, or refused it: either way it is of no more use. Lost
         * again (tsmd restarting once more), the next try sends it again. */
        if (renewed && (r >= 0 || r == -ENOENT))
                ltsm_late_reclaim_free(ltsm_late_reclaim_find(c, reclaim_token, true));
        if (r == -ENOENT) {
                late = ltsm_late_reclaim_find(c, reclaim_token, false);
                if (late)
                        return late_reclaim_take(c, late, ret_context, ret_iommufd);
        }
        if (r < 0)
                return r;
        r = reply_context_fd(c->vc, reply, &context, &fd);
        if (r >= 0 || r == -EMFILE)
                (void) remember_renewed_token(c, reply, context, renewed ?: reclaim_token);
        if (r == -EMFILE)
                *ret_context = context; /* to take its token by */
        if (r < 0)
                return bad_reply(c, r);
        return context_fd_done(c, context, fd, ret_context, ret_iommufd);
}

/* tsm_context_close(): see tsm.h. */
_public_ int tsm_context_close(TsmClient *c, uint64_t context) {
        json_object *p, *reply;
        int r;

        assert_return(c, -EINVAL);
        r = ltsm_context_params(context, &p);
        if (r < 0)
                return ltsm_error_set_local(c, r);
        r = ltsm_client_call(c, METHOD("CloseContext"), p, -EBADF, &reply);
        if (r < 0)
                return r;
        ltsm_tokens_forget(c, context);
        ltsm_late_reclaims_forget_context(c, context);
        return ltsm_client_call_done(c, 0);
}

int ltsm_context_params(uint64_t context, json_object **ret) {
        if (!CONTEXT_VALID(context))
                return -EINVAL;
        *ret = params_new(context, 0);
        return *ret ? 0 : -ENOMEM;
}

int ltsm_device_params(uint64_t context, uint32_t vdevice_id, json_object **ret) {
        if (!CONTEXT_VALID(context) || !VDEVICE_VALID(vdevice_id))
                return -EINVAL;
        *ret = params_new(context, vdevice_id);
        return *ret ? 0 : -ENOMEM;
}

int ltsm_attach_params(uint64_t context, uint32_t vdevice_id, const char *pci_address, int vfio_fd,
                       json_object **ret) {
        _cleanup_(json_object_putp) json_object *p = NULL;
        int r;

        if (!pci_address || vfio_fd < -1)
                return -EINVAL;
        r = ltsm_device_params(context, vdevice_id, &p);
        if (r < 0)
                return r;
        if (vfio_fd >= 0 && fcntl(vfio_fd, F_GETFD) < 0)
                return -EBADF;
        if (json_object_add(p, "pciAddress", json_object_new_string(pci_address)) < 0 ||
            (vfio_fd >= 0 && json_object_add(p, "vfioFileDescriptor", json_object_new_int(0)) < 0))
                return -ENOMEM;
        *ret = TAKE_PTR(p);
        return 0;
}

/* tsm_device_attach(): see tsm.h. */
_public_ int tsm_device_attach(TsmClient *c, uint64_t context, uint32_t vdevice_id, const char *pci_address,
                               int vfio_fd, TsmDeviceInfo **ret) {
        json_object *p, *reply;
        TsmDeviceInfo *info;
        int r;

        assert_return(c, -EINVAL);
        r = ltsm_attach_params(context, vdevice_id, pci_address, vfio_fd, &p);
        if (r < 0)
                return ltsm_error_set_local(c, r);
        r = ltsm_client_call(c, METHOD("AttachDevice"), p, vfio_fd, &reply);
        if (r < 0)
                return r;
        if (!ret)
                return ltsm_client_call_done(c, 0);
        r = ltsm_device_info_from_reply(reply, &info);
        if (r < 0)
                return bad_reply(c, r);
        r = ltsm_client_call_done(c, 0);
        if (r < 0) {
                tsm_device_info_free(info);
                return r;
        }
        *ret = info;
        return 0;
}

/* tsm_device_detach(): see tsm.h. */
_public_ int tsm_device_detach(TsmClient *c, uint64_t context, uint32_t vdevice_id) {
        json_object *p, *reply;
        int r;

        assert_return(c, -EINVAL);
        r = ltsm_device_params(context, vdevice_id, &p);
        if (r < 0)
                return ltsm_error_set_local(c, r);
        r = ltsm_client_call(c, METHOD("DetachDevice"), p, -EBADF, &reply);
        if (r < 0)
                return r;
        return ltsm_client_call_done(c, 0);
}

static int call_with_state(TsmClient *c, const char *method, uint64_t context, uint32_t vdevice_id,
                           json_object **ret_reply) {
        json_object *p;
        int r;

        assert_return(c, -EINVAL);
        r = ltsm_device_params(context, vdevice_id, &p);
        if (r < 0)
                return ltsm_error_set_local(c, r);
        return ltsm_client_call(c, method, p, -EBADF, ret_reply);
}

int ltsm_state_reply(json_object *reply, TsmTdiState *ret_state, bool *ret_bound) {
        if (ret_bound && ltsm_reply_get_bool(reply, "bound", ret_bound) < 0)
                return -EBADMSG;
        *ret_state = ltsm_reply_get_state(reply, "state");
        return 0;
}

/* tsm_device_bind(): see tsm.h. */
_public_ int tsm_device_bind(TsmClient *c, uint64_t context, uint32_t vdevice_id, TsmTdiState *ret_state) {
        json_object *reply;
        TsmTdiState state;
        int r;

        r = call_with_state(c, METHOD("Bind"), context, vdevice_id, &reply);
        if (r < 0)
                return r;
        (void) ltsm_state_reply(reply, &state, NULL);
        r = ltsm_client_call_done(c, 0);
        if (r < 0)
                return r;
        if (ret_state)
                *ret_state = state;
        return 0;
}

/* tsm_device_unbind(): see tsm.h. */
_public_ int tsm_device_unbind(TsmClient *c, uint64_t context, uint32_t vdevice_id, TsmTdiState *ret_state) {
        json_object *reply;
        TsmTdiState state;
        int r;

        r = call_with_state(c, METHOD("Unbind"), context, vdevice_id, &reply);
        if (r < 0)
                return r;
        (void) ltsm_state_reply(reply, &state, NULL);
        r = ltsm_client_call_done(c, 0);
        if (r < 0)
                return r;
        if (ret_state)
                *ret_state = state;
        return 0;
}

/* tsm_device_get_state(): see tsm.h. */
_public_ int tsm_device_get_state(TsmClient *c, uint64_t context, uint32_t vdevice_id, TsmTdiState *ret_state,
                                  bool *ret_bound) {
        json_object *reply;
        TsmTdiState state;
        bool bound;
        int r;

        r = call_with_state(c, METHOD("GetDeviceState"), context, vdevice_id, &reply);
        if (r < 0)
                return r;
        r = ltsm_state_reply(reply, &state, &bound);
        if (r < 0)
                return bad_reply(c, r);
        r = ltsm_client_call_done(c, 0);
        if (r < 0)
                return r;
        if (ret_state)
                *ret_state = state;
        if (ret_bound)
                *ret_bound = bound;
        return 0;
}

/* The parameters of GuestRequest; shared with tsm_guest_request_async(). */
int ltsm_guest_request_params(uint64_t context, uint32_t vdevice_id, const char *scope, const void *req,
                              size_t req_len, size_t max_response_size, json_object **ret) {
        _cleanup_(json_object_putp) json_object *p = NULL;
        _cleanup_free_ char *b64 = NULL;
        int r;

        if (!CONTEXT_VALID(context) || !VDEVICE_VALID(vdevice_id) || !scope || (!req && req_len > 0) ||
            max_response_size > (size_t) INT64_MAX)
                return -EINVAL;
        /* No scope of any backend takes more (tsmd's channel to its monitor carries no more):
         * refused before it costs a third more memory in base64 and the JSON around it, all
         * to be refused by the size of the message. */
        if (req_len > TSM_PRIV_PAYLOAD_MAX)
                return -E2BIG;

        r = base64_encode(req, req_len, &b64);
        if (r < 0)
                return r;
        p = params_new(context, vdevice_id);
        if (!p || json_object_add(p, "scope", json_object_new_string(scope)) < 0 ||
            json_object_add(p, "request", json_object_new_string_fast(b64, strlen(b64))) < 0 ||
            json_object_add(p, "maxResponseSize", json_object_new_int64((int64_t) max_response_size)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(p);
        return 0;
}

/* requestUnconsumed of a GuestRequest reply for a request of req_len bytes: 0 when absent or
 * null (the TSM took all of it). More than the request had is a reply that does not match, so
 * that a VMM may index its request with it. */
int ltsm_guest_request_unconsumed(json_object *reply, size_t req_len, size_t *ret) {
        int64_t n, max = (int64_t) MIN((uint64_t) req_len, (uint64_t) INT64_MAX);
        json_object *v;
        int r;

        if (!json_object_object_get_ex(reply, "requestUnconsumed", &v) || !v) {
                *ret = 0;
                return 0;
        }
        r = ltsm_reply_get_int(reply, "requestUnconsumed", 0, max, &n);
        if (r < 0)
                return r;
        *ret = (size_t) n;
        return 0;
}

static int guest_request(TsmClient *c, uint64_t context, uint32_t vdevice_id, const char *scope, const void *req,
                         size_t req_len, void *resp, size_t resp_size, size_t *ret_resp_len, size_t *ret_unconsumed) {
        _cleanup_free_ void *data = NULL;
        json_object *p, *reply;
        size_t len, unconsumed;
        int r;

        assert_return_client(c, resp || resp_size == 0, -EINVAL);

        r = ltsm_guest_request_params(context, vdevice_id, scope, req, req_len, resp_size, &p);
        if (r < 0)
                return ltsm_error_set_local(c, r);
        r = ltsm_client_call(c, METHOD("GuestRequest"), p, -EBADF, &reply);
        if (r < 0)
                return r;
        r = ltsm_reply_get_base64(reply, "response", resp_size, &data, &len);
        if (r >= 0)
                r = ltsm_guest_request_unconsumed(reply, req_len, &unconsumed);
        if (r < 0)
                return bad_reply(c, r);
        r = ltsm_client_call_done(c, 0);
        if (r < 0)
                return r;
        if (len > 0)
                memcpy(resp, data, len);
        if (ret_resp_len)
                *ret_resp_len = len;
        *ret_unconsumed = unconsumed;
        return 0;
}

/* tsm_guest_request(): see tsm.h. */
_public_ int tsm_guest_request(TsmClient *c, uint64_t context, uint32_t vdevice_id, const char *scope,
                               const void *req, size_t req_len, void *resp, size_t resp_size,
                               size_t *ret_resp_len) {
        size_t unconsumed = 0;
        int r;

        assert_return(c, -EINVAL);

        r = guest_request(c, context, vdevice_id, scope, req, req_len, resp, resp_size, ret_resp_len, &unconsumed);
        /* Set once the call is done, after the callbacks that ran meanwhile: a failed request's
         * is 0, never an earlier one's. -ECANCELED: c is gone. */
        if (r != -ECANCELED)
                c->request_unconsumed = unconsumed;
        return r;
}

/* tsm_client_get_request_unconsumed(): see tsm.h. */
_public_ size_t tsm_client_get_request_unconsumed(const TsmClient *c) {
        return c ? c->request_unconsumed : 0;
}
