/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io.tsmd.Guest's binding and device state: Bind and Unbind, which the TSM answers once the
 * device has, and GetDeviceState, which waits for the calls of its vDevice made before it.
 * Runs in: worker.
 */

#include <sys/queue.h>

#include "guest-internal.h"
#include "guest-op.h"
#include "json-util.h"
#include "log.h"
#include "policy.h"
#include "priv-call.h"
#include "tdisp.h"
#include "tsm-platform.h"

/* The IDL's TdiState: the TDISP names in lower case, as Varlink enums are. */
static const char *const tdi_state_table[_TDISP_STATE_MAX + 1] = {
        [TDISP_STATE_CONFIG_UNLOCKED] = "config_unlocked",
        [TDISP_STATE_CONFIG_LOCKED] = "config_locked",
        [TDISP_STATE_RUN] = "run",
        [TDISP_STATE_ERROR] = "error",
};

const char *const *guest_tdi_states(void) {
        return tdi_state_table;
}

const char *guest_tdi_state_to_string(int state) {
        return state >= 0 && state < _TDISP_STATE_MAX ? tdi_state_table[state] : NULL;
}

/* NULL where the state is unknown (the kernel's TSMs keep it from the host): a null "state". */
static const char *vdevice_state_name(Manager *m, const GuestContext *ctx, const GuestVDevice *v) {
        int state;

        if (priv_call_get_vdevice_state(m->channel, ctx->slot, ctx->id, v->id, &state) < 0)
                return NULL;
        return guest_tdi_state_to_string(state);
}

static int reply_state(VarlinkCall *call, Manager *m, GuestContext *ctx, GuestVDevice *v, bool with_bound) {
        json_object *reply = json_object_new_object();

        if (!reply || json_object_add_string_or_null(reply, "state", vdevice_state_name(m, ctx, v)) < 0 ||
            (with_bound && json_object_add(reply, "bound", json_object_new_boolean(v->bound)) < 0)) {
                json_object_put(reply);
                return -ENOMEM;
        }
        return varlink_call_reply(call, reply);
}

PendingChange *guest_change_free(PendingChange *pc) {
        if (!pc)
                return NULL;
        LIST_REMOVE(pc, entry);
        varlink_call_unref(pc->call);
        return mfree(pc);
}

/* Whether a GuestRequest, Bind or Unbind of c on vDevice v of ctx made before serial is
 * unanswered. Not a restore's change, which no call of c's made (and a kernel's bind may take
 * long): GetDeviceState answers meanwhile, bound false until it settles. */
static bool vdevice_has_earlier(GuestClient *c, const GuestContext *ctx, const GuestVDevice *v, uint64_t serial) {
        const PendingRequest *pr;
        const PendingChange *pc;

        TAILQ_FOREACH(pr, &c->pending, entry)
                if (pr->serial < serial && pr->context == ctx->handle && pr->vdevice == v->id)
                        return true;
        LIST_FOREACH(pc, &c->changes, entry)
                if (pc->serial < serial && pc->context == ctx->handle && pc->vdevice == v->id)
                        return true;
        return false;
}

static int answer_state(VarlinkCall *call, Manager *m, GuestContext *ctx, GuestVDevice *v) {
        TsmDeviceInfo info;

        if (v->gone || tsm_platform_get_device(m->platform, v->pci_address, &info) < 0)
                return guest_reply_backend_error(call, -ENODEV, v->pci_address);
        return reply_state(call, m, ctx, v, true);
}

PendingState *guest_state_free(PendingState *ps) {
        LIST_REMOVE(ps, entry);
        varlink_call_unref(ps->call);
        return mfree(ps);
}

/* Answers the GetDeviceState calls of c that wait for nothing any more: one whose vDevice went
 * meanwhile (a DetachDevice or CloseContext after it) as a call made now would be. */
void guest_states_flush(GuestClient *c) {
        PendingState *ps, *next;

        for (ps = LIST_FIRST(&c->states); ps; ps = next) {
                _cleanup_(varlink_call_unrefp) VarlinkCall *call = NULL;
                int64_t handle = (int64_t) ps->context, id = ps->vdevice;
                GuestContext *ctx = guest_find_context(c, handle);
                GuestVDevice *v = ctx ? guest_find_vdevice(ctx, id) : NULL;
                int r;

                next = LIST_NEXT(ps, entry);
                if (v && vdevice_has_earlier(c, ctx, v, ps->serial))
                        continue;
                call = varlink_call_ref(ps->call);
                guest_state_free(ps);
                r = !ctx ? guest_reply_no_such_context(call, handle) :
                    !v   ? guest_reply_no_such_vdevice(call, handle, id) :
                           answer_state(call, c->manager, ctx, v);
                if (r < 0 && !varlink_call_is_answered(call))
                        (void) varlink_call_error_errno(call, r);
        }
}

static void on_bound(int result, const void *response, size_t len, void *userdata) {
        PendingChange *pc = userdata;
        GuestClient *c = pc->client;
        VarlinkCall *call = pc->call;
        Manager *m = c->manager;
        GuestContext *ctx = guest_find_context(c, (int64_t) pc->context);
        GuestVDevice *v = ctx ? guest_find_vdevice(ctx, pc->vdevice) : NULL;
        char address[PCI_ADDRESS_LEN_MAX + 1];
        bool bind = pc->bind;
        const char *state;
        int r;

        guest_op_take_kept(call, pc->request);
        /* Neither can go while it changes: Detach and CloseContext wait, a disconnect cancels. */
        if (!v) {
                log_error("Bind or Unbind answered for a vDevice that is gone from its client, dropping it.");
                (void) varlink_call_error_errno(call, -ENODEV);
                guest_change_free(pc);
                guest_states_flush(c);
                return;
        }
        v->changing = false;
        if (result >= 0 && v->gone) /* unplugged as the answer came: it holds no TDI now */
                result = -ENODEV;
        if (result >= 0)
                v->bound = pc->bind;
        /* Before the answer: a restart after it must not find the change still on its way. Not
         * saved (owed until it is, guest-save.c), it is stored as changing, which the next tsmd
         * takes for a change cut off: it unbinds a kernel TSM's vDevice, an emulated one comes
         * back unbound, and the VMM sees it unbound either way (guest_restore_context()). */
        if (guest_context_persist(m, ctx) < 0)
                log_notice("The end of a %s of %s is not saved yet: a restart of tsmd before it is unbinds it.",
                           pc->bind ? "Bind" : "Unbind", v->pci_address);
        /* InvalidState only where the state is known (the emulated platform): the kernel's TSMs
         * keep it from the host (-EOPNOTSUPP), and their error is the VMM's only clue. */
        state = pc->bind && (result == -EIO || result == -EINVAL || result == -EALREADY) ?
                vdevice_state_name(m, ctx, v) : NULL;
        if (pc->revoked && result == -ECANCELED && priv_request_monitor_own(pc->request)) {
                /* Dropped by the monitor before the TSM had it, as a reload asked. */
                guest_op_set_rule(call, NULL, NULL);
                r = guest_send_denied(call, pc->revoked);
        } else if (state)
                r = varlink_call_error_kv(call, GUEST_ERROR("InvalidState"),
                                          "state", json_object_new_string(state), NULL);
        else if (result < 0) {
                /* The monitor's gate refused it: no rule let it through. */
                if (result == -EPERM && priv_request_monitor_own(pc->request))
                        guest_op_set_rule(call, NULL, NULL);
                /* Only a bind passes the monitor's gate, which looks at the device. */
                r = guest_reply_tsm_error(call, pc->request, result, v->pci_address, GUEST_REASON_DEVICE_NOT_LISTED);
        }
        else
                r = reply_state(call, m, ctx, v, false);
        if (r < 0 && !varlink_call_is_answered(call))
                (void) varlink_call_error_errno(call, r);
        snprintf(address, sizeof(address), "%s", v->pci_address);
        guest_change_free(pc);
        guest_states_flush(c);
        /* After the answer: should the look find the binding ended already, the VMM hears
         * device-unbound after its Bind's answer. */
        if (result >= 0)
                tsm_platform_refresh_binding(m->platform, address, bind);
}

/* The vDevice a call names, present (not gone). With granted, one the policy in force still lets
 * the client use, on a backend: a reload may have taken the grant away since AttachDevice. 1 if
 * so; else the call is answered (NoSuchContext, ..., BackendError ENODEV, Denied) or failed. */
static int lookup_present(VarlinkCall *call, json_object *p, Manager *m, bool granted, GuestContext **ret_ctx,
                          GuestVDevice **ret_v) {
        GuestClient *c = guest_client_of(call);
        const char *reason, *rule;
        TsmDeviceInfo info;
        GuestVDevice *v;
        int r;

        r = guest_lookup_full(call, p, ret_ctx, &v, &info);
        if (r <= 0)
                return r;
        if (v->gone || (granted && info.backend == _TSM_BACKEND_TYPE_INVALID))
                return guest_reply_backend_error(call, -ENODEV, v->pci_address);
        if (granted) {
                r = policy_check_device_full(m->policy, &c->identity, v->pci_address, info.backend, &reason, &rule);
                guest_op_set_rule(call, m->policy, rule); /* allowed, or whose grant was missing */
                if (r < 0)
                        return guest_reply_denied(call, reason);
        }
        *ret_v = v;
        return 1;
}

/* Bind (TDISP lock) or unbind (stop) the TDI of a vDevice. The TSM answers when the device has
 * (an SPDM exchange): meanwhile the vDevice is busy for another Bind, Unbind or Detach, and
 * its context for CloseContext, which answer DeviceBusy. */
static int set_bound(VarlinkCall *call, json_object *p, Manager *m, bool bind) {
        GuestClient *c = guest_client_of(call);
        PendingChange *pc;
        GuestContext *ctx;
        GuestVDevice *v;
        int r;

        /* SECURITY: binding uses the device, which the policy in force must still let the client
         * do. Unbinding gives it up, which a client whose grant went must be able to do. */
        r = lookup_present(call, p, m, bind, &ctx, &v);
        if (r <= 0)
                return r;
        if (v->changing)
                return guest_reply_device_busy(call, v->pci_address);

        pc = new0(PendingChange, 1);
        if (!pc)
                return -ENOMEM;
        *pc = (PendingChange){ .client = c, .call = varlink_call_ref(call), .context = ctx->handle,
                               .vdevice = v->id, .bind = bind, .serial = c->next_serial++ };
        LIST_INSERT_HEAD(&c->changes, pc, entry);
        /* Stored as changing before the TSM hears of it: if tsmd stops before the answer, the
         * next one cannot know where the change ended, and unbinds (guest_restore_context()).
         * Refused if it cannot be stored: the next one would not know of the change at all. */
        v->changing = true;
        r = guest_persist_before_change(m, ctx);
        if (r < 0) {
                guest_change_free(pc);
                v->changing = false;
                return guest_reply_state_not_saved(call, r);
        }
        guest_op_set_forwarded(call);
        r = priv_call_set_bound(m->channel, ctx->slot, ctx->id, v->id, bind, on_bound, pc, &pc->request);
        if (r < 0) {
                guest_change_free(pc);
                v->changing = false;
                (void) guest_context_persist(m, ctx); /* owed if it fails: stored as changing meanwhile */
                return guest_reply_backend_error(call, r, v->pci_address);
        }
        guest_op_set_priv_cookie(call, priv_request_get_cookie(pc->request));
        return 0;
}

int guest_vl_bind(VarlinkCall *call, json_object *p, void *userdata) {
        return set_bound(call, p, userdata, true);
}

int guest_vl_unbind(VarlinkCall *call, json_object *p, void *userdata) {
        return set_bound(call, p, userdata, false);
}

int guest_vl_get_device_state(VarlinkCall *call, json_object *p, void *userdata) {
        Manager *m = userdata;
        GuestClient *c = guest_client_of(call);
        PendingState *ps;
        GuestContext *ctx;
        GuestVDevice *v;
        int r;

        /* SECURITY: the state is the device's, told only to a client the policy in force lets
         * use it (as for Bind). */
        r = lookup_present(call, p, m, true, &ctx, &v);
        if (r <= 0)
                return r;
        /* The state the client's calls before it left: answered now, its answer would go out
         * after theirs but tell the state from before them (a Bind's lock, a request's). */
        if (!vdevice_has_earlier(c, ctx, v, c->next_serial))
                return reply_state(call, m, ctx, v, true);
        ps = new(PendingState, 1);
        if (!ps)
                return -ENOMEM;
        *ps = (PendingState){ .call = varlink_call_ref(call), .context = ctx->handle, .vdevice = v->id,
                              .serial = c->next_serial++ };
        LIST_INSERT_HEAD(&c->states, ps, entry);
        return 0;
}
