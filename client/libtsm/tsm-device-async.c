/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The device calls a VMM makes at hot-plug and unplug without waiting: AttachDevice,
 * DetachDevice, Bind, Unbind and GetDeviceState as TsmOps (tsm-async.c delivers their replies
 * here), so that an event loop never blocks for a TSM's TDISP exchange; and CloseContext, whose
 * unbinding of the context's devices takes as long, at a VM's teardown. Their arguments and
 * replies are the blocking calls' (tsm-guest.c). Documented in tsm.h. Runs in: the VMM process.
 */

#include "json-util.h"
#include "libtsm-internal.h"

#define METHOD(name) "io.tsmd.Guest." name

static void device_callback(TsmOp *op, int error, TsmDeviceInfo *info, TsmTdiState state, bool bound) {
        TsmClient *c = op->client;

        ltsm_error_clear_for(c, error);
        c->n_dispatching++;
        if (op->type == TSM_OP_ATTACH)
                op->attach_callback(c, error, info, op->userdata);
        else if (op->type == TSM_OP_DETACH || op->type == TSM_OP_CLOSE)
                op->done_callback(c, error, op->userdata);
        else /* Bind, Unbind, GetDeviceState */
                op->state_callback(c, error, state, bound, op->userdata);
        c->n_dispatching--;
}

void ltsm_device_op_fail(TsmOp *op, int error) {
        device_callback(op, error, NULL, _TSM_TDI_STATE_INVALID, false);
}

void ltsm_device_op_reply(TsmOp *op, VarlinkClient *vc, json_object *parameters, const char *error) {
        TsmDeviceInfo *info = NULL;
        TsmTdiState state = _TSM_TDI_STATE_INVALID;
        bool bound = false;
        int r = 0;

        if (error) {
                ltsm_device_op_fail(op, ltsm_error_set_varlink(op->client, vc, error, parameters));
                return;
        }
        switch (op->type) {
        case TSM_OP_ATTACH:
                r = ltsm_device_info_from_reply(parameters, &info);
                break;
        case TSM_OP_BIND:
                r = ltsm_state_reply(parameters, &state, NULL);
                bound = true;
                break;
        case TSM_OP_UNBIND:
                r = ltsm_state_reply(parameters, &state, NULL);
                break;
        case TSM_OP_GET_STATE:
                r = ltsm_state_reply(parameters, &state, &bound);
                break;
        case TSM_OP_CLOSE:
                /* As tsm_context_close(): no reclaim, nor a retry of one, may name it now. */
                ltsm_tokens_forget(op->client, op->context);
                ltsm_late_reclaims_forget_context(op->client, op->context);
                break;
        default:
                break;
        }
        if (r < 0) {
                /* A reply that does not match the interface: no error name (tsm.h). */
                ltsm_error_clear(op->client);
                ltsm_device_op_fail(op, r);
                return;
        }
        /* The info is the callback's to keep (TsmAttachFunc). */
        device_callback(op, 0, info, state, bound);
}

/* Registers op for method with params (taken), a duplicate of fd going along if fd >= 0. */
static int device_call(TsmClient *c, const char *method, json_object *params, int fd, const TsmOp *init) {
        TsmOp *op;
        int r;

        op = ltsm_op_new(init);
        if (!op) {
                json_object_put(params);
                return ltsm_error_set_local(c, -ENOMEM);
        }
        /* Not counted in n_requests: the guest's bound is not the VMM's (tsm.h). */
        r = ltsm_client_call_async(c, method, params, 0, fd, op);
        if (r < 0) {
                free(op);
                return r;
        }
        return 0;
}

/* Bind, Unbind, GetDeviceState and DetachDevice: {context, vdeviceId}. */
static int device_call_simple(TsmClient *c, const char *method, uint64_t context, uint32_t vdevice_id,
                              const TsmOp *init) {
        json_object *p;
        int r;

        r = ltsm_device_params(context, vdevice_id, &p);
        if (r < 0)
                return ltsm_error_set_local(c, r);
        return device_call(c, method, p, -EBADF, init);
}

/* tsm_device_attach_async(): see tsm.h. */
_public_ int tsm_device_attach_async(TsmClient *c, uint64_t context, uint32_t vdevice_id, const char *pci_address,
                                     int vfio_fd, TsmAttachFunc callback, void *userdata, TsmDestroyFunc destroy) {
        json_object *p;
        int r;

        assert_return(c, -EINVAL);
        assert_return_client(c, callback, -EINVAL);

        r = ltsm_attach_params(context, vdevice_id, pci_address, vfio_fd, &p);
        if (r < 0)
                return ltsm_error_set_local(c, r);
        return device_call(c, METHOD("AttachDevice"), p, vfio_fd,
                           &(TsmOp) {
                                   .type = TSM_OP_ATTACH,
                                   .attach_callback = callback,
                                   .userdata = userdata,
                                   .destroy = destroy,
                                   .context = context,
                                   .vdevice_id = vdevice_id,
                           });
}

/* tsm_device_detach_async(): see tsm.h. */
_public_ int tsm_device_detach_async(TsmClient *c, uint64_t context, uint32_t vdevice_id, TsmDoneFunc callback,
                                     void *userdata, TsmDestroyFunc destroy) {
        assert_return(c, -EINVAL);
        assert_return_client(c, callback, -EINVAL);

        return device_call_simple(c, METHOD("DetachDevice"), context, vdevice_id,
                                  &(TsmOp) {
                                          .type = TSM_OP_DETACH,
                                          .done_callback = callback,
                                          .userdata = userdata,
                                          .destroy = destroy,
                                          .context = context,
                                          .vdevice_id = vdevice_id,
                                  });
}

static int state_call(TsmClient *c, TsmOpType type, const char *method, uint64_t context, uint32_t vdevice_id,
                      TsmStateFunc callback, void *userdata, TsmDestroyFunc destroy) {
        assert_return(c, -EINVAL);
        assert_return_client(c, callback, -EINVAL);

        return device_call_simple(c, method, context, vdevice_id,
                                  &(TsmOp) {
                                          .type = type,
                                          .state_callback = callback,
                                          .userdata = userdata,
                                          .destroy = destroy,
                                          .context = context,
                                          .vdevice_id = vdevice_id,
                                  });
}

/* tsm_device_bind_async(): see tsm.h. */
_public_ int tsm_device_bind_async(TsmClient *c, uint64_t context, uint32_t vdevice_id, TsmStateFunc callback,
                                   void *userdata, TsmDestroyFunc destroy) {
        return state_call(c, TSM_OP_BIND, METHOD("Bind"), context, vdevice_id, callback, userdata, destroy);
}

/* tsm_device_unbind_async(): see tsm.h. */
_public_ int tsm_device_unbind_async(TsmClient *c, uint64_t context, uint32_t vdevice_id, TsmStateFunc callback,
                                     void *userdata, TsmDestroyFunc destroy) {
        return state_call(c, TSM_OP_UNBIND, METHOD("Unbind"), context, vdevice_id, callback, userdata, destroy);
}

/* tsm_device_get_state_async(): see tsm.h. */
_public_ int tsm_device_get_state_async(TsmClient *c, uint64_t context, uint32_t vdevice_id,
                                        TsmStateFunc callback, void *userdata, TsmDestroyFunc destroy) {
        return state_call(c, TSM_OP_GET_STATE, METHOD("GetDeviceState"), context, vdevice_id, callback, userdata,
                          destroy);
}

/* tsm_context_close_async(): see tsm.h. */
_public_ int tsm_context_close_async(TsmClient *c, uint64_t context, TsmDoneFunc callback, void *userdata,
                                     TsmDestroyFunc destroy) {
        json_object *p;
        int r;

        assert_return(c, -EINVAL);
        assert_return_client(c, callback, -EINVAL);

        r = ltsm_context_params(context, &p);
        if (r < 0)
                return ltsm_error_set_local(c, r);
        return device_call(c, METHOD("CloseContext"), p, -EBADF,
                           &(TsmOp) {
                                   .type = TSM_OP_CLOSE,
                                   .done_callback = callback,
                                   .userdata = userdata,
                                   .destroy = destroy,
                                   .context = context,
                           });
}
