/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io.tsmd.Guest.DescribeConnection: what the calling connection holds, its contexts and their
 * vDevices. A process that took the connection over from another (a VMM's live update handing
 * its socket on: libtsm's tsm_client_new_from_fd()) learns from it what it adopted, and that its
 * stream is at a message boundary (the nonce comes back). Runs in: worker.
 */

#include "guest-internal.h"
#include "guest-op.h"
#include "json-util.h"

static int vdevice_json_new(const GuestVDevice *v, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();

        if (!o || json_object_add_literal(o, "vdeviceId", json_object_new_int64(v->id)) < 0 ||
            json_object_add_literal(o, "pciAddress", json_object_new_string(v->pci_address)) < 0 ||
            json_object_add_literal(o, "bound", json_object_new_boolean(v->bound)) < 0 ||
            json_object_add_literal(o, "changing", json_object_new_boolean(v->changing)) < 0 ||
            json_object_add_literal(o, "gone", json_object_new_boolean(v->gone)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

static int context_json_new(const GuestContext *ctx, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object(), *vdevices = json_object_new_array();

        if (!o || !vdevices)
                return -ENOMEM;
        for (size_t i = 0; i < ctx->n_vdevices; i++) {
                json_object *v;
                int r;

                r = vdevice_json_new(&ctx->vdevices[i], &v);
                if (r < 0)
                        return r;
                if (json_array_append(vdevices, v) < 0)
                        return -ENOMEM;
        }
        if (json_object_add_literal(o, "context", json_object_new_int64((int64_t) ctx->handle)) < 0 ||
            json_object_add_literal(o, "vdevices", TAKE_PTR(vdevices)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

int guest_describe_reply_new(const GuestClient *c, json_object *nonce, json_object **ret) {
        _cleanup_(json_object_putp) json_object *reply = json_object_new_object(),
                                                *contexts = json_object_new_array();

        if (!reply || !contexts)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_contexts; i++) {
                json_object *o;
                int r;

                r = context_json_new(c->contexts[i], &o);
                if (r < 0)
                        return r;
                if (json_array_append(contexts, o) < 0)
                        return -ENOMEM;
        }
        if (nonce && json_object_add_literal(reply, "nonce", json_object_get(nonce)) < 0)
                return -ENOMEM;
        if (json_object_add_literal(reply, "contexts", TAKE_PTR(contexts)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(reply);
        return 0;
}

/* SECURITY: the calling connection's own contexts only (c's, found through the call's
 * connection): what any other connection holds, of the same process or uid too, is never
 * named. Answered whatever the policy in force says, as CloseContext and DetachDevice are: it
 * tells a client what it holds, which it may give up whatever a reload took away, and nothing
 * of any device it does not hold. Reads only: no reply bound (guest-reply-bound.c) is declared,
 * so one past the connection's MaxMessageSize= is ReplyTooLarge, nothing having changed. */
int guest_vl_describe_connection(VarlinkCall *call, json_object *p, void *userdata) {
        json_object *nonce = NULL, *reply;
        int r;

        /* The IDL admits an int or null: null is no nonce. */
        if (json_object_object_get_ex(p, "nonce", &nonce) && !json_object_is_type(nonce, json_type_int))
                nonce = NULL;
        r = guest_describe_reply_new(guest_client_of(call), nonce, &reply);
        if (r < 0)
                return r;
        return varlink_call_reply(call, reply);
}
