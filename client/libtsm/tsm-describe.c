/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io.tsmd.Guest.DescribeConnection: what a connection holds (tsm_client_describe()), and the
 * TsmConnectionInfo it answers. tsm_client_new_from_fd() (libtsm.c) makes this call first on a
 * connection it adopts: its nonce proves the reply read answers it, not a call of the
 * connection's previous owner. Documented in tsm.h. Runs in: the VMM process.
 */

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "json-util.h"
#include "libtsm-internal.h"

struct TsmHeldVDevice {
        uint64_t context;
        uint32_t id;
        char *pci_address;
        bool bound;
        bool changing;
        bool gone;
};

struct TsmConnectionInfo {
        uint64_t *contexts;
        size_t n_contexts;
        TsmHeldVDevice *vdevices; /* in the order of their contexts */
        size_t n_vdevices;
};

/* Not a secret: only tells this call's reply from a stale one, so any value a previous owner
 * did not use will do; the clock where the kernel's random pool is not ready yet. */
static int64_t nonce_new(void) {
        uint64_t n;

        if (getrandom(&n, sizeof(n), GRND_NONBLOCK) != (ssize_t) sizeof(n)) {
                struct timespec ts;

                clock_gettime(CLOCK_MONOTONIC, &ts);
                n = ((uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec) ^ ((uint64_t) getpid() << 40);
        }
        return (int64_t) (n & (uint64_t) INT64_MAX);
}

static int vdevice_from_json(json_object *o, uint64_t context, TsmHeldVDevice *ret) {
        const char *address;
        int64_t id;
        bool bound, changing, gone;
        int r;

        r = ltsm_reply_get_int(o, "vdeviceId", 1, UINT32_MAX, &id);
        if (r >= 0)
                r = ltsm_reply_get_string(o, "pciAddress", &address);
        if (r >= 0)
                r = ltsm_reply_get_bool(o, "bound", &bound);
        if (r >= 0)
                r = ltsm_reply_get_bool(o, "changing", &changing);
        if (r >= 0)
                r = ltsm_reply_get_bool(o, "gone", &gone);
        if (r < 0)
                return r;
        *ret = (TsmHeldVDevice){ .context = context, .id = (uint32_t) id, .bound = bound, .changing = changing,
                                 .gone = gone, .pci_address = strdup(address) };
        return ret->pci_address ? 0 : -ENOMEM;
}

static int info_from_reply(json_object *reply, TsmConnectionInfo **ret) {
        _cleanup_(tsm_connection_info_freep) TsmConnectionInfo *info = NULL;
        json_object *contexts;
        size_t n, n_vdevices = 0;

        if (!json_object_object_get_ex(reply, "contexts", &contexts) ||
            !json_object_is_type(contexts, json_type_array))
                return -EBADMSG;
        n = json_object_array_length(contexts);
        for (size_t i = 0; i < n; i++) {
                json_object *v;

                if (!json_object_object_get_ex(json_object_array_get_idx(contexts, i), "vdevices", &v) ||
                    !json_object_is_type(v, json_type_array))
                        return -EBADMSG;
                n_vdevices += json_object_array_length(v);
        }

        info = new0(TsmConnectionInfo, 1);
        if (!info)
                return -ENOMEM;
        info->contexts = new0(uint64_t, MAX(n, (size_t) 1));
        info->vdevices = new0(TsmHeldVDevice, MAX(n_vdevices, (size_t) 1));
        if (!info->contexts || !info->vdevices)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *o = json_object_array_get_idx(contexts, i), *v;
                int64_t context;
                int r;

                r = ltsm_reply_get_int(o, "context", 0, INT64_MAX, &context);
                if (r < 0)
                        return r;
                info->contexts[info->n_contexts++] = (uint64_t) context;
                (void) json_object_object_get_ex(o, "vdevices", &v);
                for (size_t j = 0; j < json_object_array_length(v); j++) {
                        r = vdevice_from_json(json_object_array_get_idx(v, j), (uint64_t) context,
                                              &info->vdevices[info->n_vdevices]);
                        if (r < 0)
                                return r;
                        info->n_vdevices++;
                }
        }
        *ret = TAKE_PTR(info);
        return 0;
}

int ltsm_describe_params(int64_t *ret_nonce, json_object **ret) {
        int64_t nonce = nonce_new();
        json_object *params = json_object_new_object();

        if (!params || json_object_add(params, "nonce", json_object_new_int64(nonce)) < 0) {
                json_object_put(params);
                return -ENOMEM;
        }
        *ret_nonce = nonce;
        *ret = params;
        return 0;
}

int ltsm_describe_reply_parse(json_object *reply, int64_t nonce, TsmConnectionInfo **ret) {
        int64_t echoed;
        int r;

        /* SECURITY: a reply with another nonce answers a call of someone else's: a previous
         * owner of the connection left one unanswered, and the stream is out of step. */
        r = ltsm_reply_get_int(reply, "nonce", INT64_MIN, INT64_MAX, &echoed);
        if (r < 0)
                return r;
        if (echoed != nonce)
                return -EBADMSG;
        return info_from_reply(reply, ret);
}

/* A blocking DescribeConnection abandoned (timed out): its late reply came, and with it the
 * last message that may be that large for it. */
static int describe_abandoned_reply(VarlinkClient *vc, json_object *parameters, const char *error,
                                    bool continues, void *userdata) {
        TsmClient *c = userdata;

        assert(c->n_describing_abandoned > 0);
        c->n_describing_abandoned--;
        ltsm_client_describing_end(c);
        return 0;
}

int ltsm_describe(TsmClient *c, TsmConnectionInfo **ret) {
        _cleanup_(tsm_connection_info_freep) TsmConnectionInfo *info = NULL;
        json_object *params, *reply;
        int64_t nonce;
        int r;

        r = ltsm_describe_params(&nonce, &params);
        if (r < 0)
                return ltsm_error_set_local(c, r);
        /* Its reply may be larger than any other of io.tsmd.Guest's: taken for it alone. */
        r = ltsm_client_describing_begin(c);
        if (r < 0) {
                json_object_put(params);
                return ltsm_error_set_local(c, r);
        }
        /* Abandoned, its late reply may still be that large (the vc, and the callback with it,
         * go before c: c outlives every call of it). */
        r = ltsm_client_call_full(c, "io.tsmd.Guest.DescribeConnection", params, -1, describe_abandoned_reply, c,
                                  &reply);
        if (r == -ECANCELED)
                return r; /* c is gone */
        if (r == -ETIMEDOUT)
                c->n_describing_abandoned++;
        else
                /* The reply is read, or none comes: later ones are judged by the usual limits
                 * again. */
                ltsm_client_describing_end(c);
        if (r < 0)
                return r;

        r = ltsm_describe_reply_parse(reply, nonce, &info);
        if (r < 0) {
                ltsm_error_clear(c);
                return ltsm_client_call_done(c, r);
        }
        r = ltsm_client_call_done(c, 0);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(info);
        return 0;
}

/* tsm_client_describe(): see tsm.h. */
_public_ int tsm_client_describe(TsmClient *c, TsmConnectionInfo **ret) {
        assert_return(c, -EINVAL);
        assert_return_client(c, ret, -EINVAL);
        return ltsm_describe(c, ret);
}

/* tsm_client_describe_async(): see tsm.h. */
_public_ int tsm_client_describe_async(TsmClient *c, TsmDescribeFunc callback, void *userdata,
                                       TsmDestroyFunc destroy) {
        json_object *params;
        TsmOp *op;
        int r;

        assert_return(c, -EINVAL);
        assert_return_client(c, callback, -EINVAL);

        op = ltsm_op_new(&(TsmOp) {
                .type = TSM_OP_DESCRIBE,
                .describe_callback = callback,
                .userdata = userdata,
                .destroy = destroy,
        });
        if (!op)
                return ltsm_error_set_local(c, -ENOMEM);
        r = ltsm_describe_params(&op->nonce, &params);
        if (r < 0) {
                free(op);
                return ltsm_error_set_local(c, r);
        }
        /* Before the call: the reply may come with the next read. Ended by ltsm_op_finish(). */
        r = ltsm_client_describing_begin(c);
        if (r < 0) {
                json_object_put(params);
                free(op);
                return ltsm_error_set_local(c, r);
        }
        r = ltsm_client_call_async(c, "io.tsmd.Guest.DescribeConnection", params, 0, -EBADF, op);
        if (r < 0) {
                ltsm_client_describing_end(c);
                free(op);
                return r;
        }
        return 0;
}

/* tsm_connection_info_free(): see tsm.h. */
_public_ TsmConnectionInfo *tsm_connection_info_free(TsmConnectionInfo *info) {
        if (!info)
                return NULL;
        for (size_t i = 0; i < info->n_vdevices; i++)
                free(info->vdevices[i].pci_address);
        free(info->vdevices);
        free(info->contexts);
        return mfree(info);
}

/* The accessors: see tsm.h. */
_public_ size_t tsm_connection_info_get_n_contexts(const TsmConnectionInfo *info) {
        return info ? info->n_contexts : 0;
}

_public_ uint64_t tsm_connection_info_get_context(const TsmConnectionInfo *info, size_t index) {
        return info && index < info->n_contexts ? info->contexts[index] : 0;
}

_public_ size_t tsm_connection_info_get_n_vdevices(const TsmConnectionInfo *info) {
        return info ? info->n_vdevices : 0;
}

_public_ const TsmHeldVDevice *tsm_connection_info_get_vdevice(const TsmConnectionInfo *info, size_t index) {
        return info && index < info->n_vdevices ? &info->vdevices[index] : NULL;
}

_public_ uint64_t tsm_held_vdevice_get_context(const TsmHeldVDevice *v) {
        return v ? v->context : 0;
}

_public_ uint32_t tsm_held_vdevice_get_id(const TsmHeldVDevice *v) {
        return v ? v->id : 0;
}

_public_ const char *tsm_held_vdevice_get_pci_address(const TsmHeldVDevice *v) {
        return v ? v->pci_address : NULL;
}

_public_ bool tsm_held_vdevice_is_bound(const TsmHeldVDevice *v) {
        return v && v->bound;
}

_public_ bool tsm_held_vdevice_is_changing(const TsmHeldVDevice *v) {
        return v && v->changing;
}

_public_ bool tsm_held_vdevice_is_gone(const TsmHeldVDevice *v) {
        return v && v->gone;
}
