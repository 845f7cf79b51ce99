/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vDevices: ATTACH_VDEVICE (a client's new one, or a restore's of one the kernel kept) and
 * DETACH_VDEVICE; one physical device to one context at a time. Runs in: monitor.
 */

#include <inttypes.h>

#include "log.h"
#include "monitor-dispatch-internal.h"

int dispatch_priv_attach_vdevice(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                 const char **ret_reason) {
        const struct tsm_priv_attach_vdevice *a = &m->attach;
        MonitorContext *ctx;
        MonitorVDevice *v;
        TsmDeviceInfo info;
        int r;

        if (a->state & ~TSM_PRIV_VDEVICE_BOUND)
                return dispatch_violation(-EBADMSG, "unknown vDevice state", ret_reason);
        r = dispatch_lookup_context(d, a->slot, a->context, &ctx, ret_reason);
        if (r < 0)
                return r;
        if (a->vdevice == 0)
                return dispatch_violation(-EINVAL, "vDevice id 0", ret_reason); /* iommufd object ids start at 1 */
        if (!tsm_priv_check_string(a->pci_address, sizeof(a->pci_address)))
                return dispatch_violation(-EBADMSG, "PCI address not a NUL-terminated string", ret_reason);
        /* SECURITY: a worker hears of every vDevice the monitor has when it starts
         * (RESTORED_VDEVICE), whatever its state files say, and attaches new ones only. */
        if (monitor_context_find_vdevice(ctx, a->vdevice))
                return dispatch_violation(-EPERM, "vDevice attached already", ret_reason);
        /* SECURITY: a kept context gains vDevices from its state file only where the monitor knows
         * none (partial: the fd store handed it back), and only before READY: a file a worker
         * wrote must not reattach devices to another owner's context behind the reclaim. */
        if (ctx->slot == TSM_PRIV_SLOT_WORKER && !ctx->partial)
                return dispatch_violation(-EPERM, "vDevice attached to a kept context the monitor knows whole",
                                          ret_reason);
        /* A client's new vDevice is not bound: only a restore brings back one the kernel kept. */
        if ((a->state & TSM_PRIV_VDEVICE_BOUND) && ctx->slot != TSM_PRIV_SLOT_WORKER)
                return dispatch_violation(-EPERM, "a client's new vDevice said bound", ret_reason);

        /* Not a violation: the device may have gone since the worker looked (hotplug). */
        r = tsm_platform_get_device(d->platform, a->pci_address, &info);
        if (r < 0)
                return dispatch_reply(d, m, r, 0, -EBADF);
        /* Not asked of a restore's attach (slot 0, a context the fd store handed back, before
         * READY): that records a vDevice the kernel kept in the VMM's iommufd through a restart
         * of tsmd, bound perhaps, and perhaps under a policy narrowed since. Refused, it would
         * stay there, locked, with nobody to unbind it when its context ends; recorded, it gives
         * the worker no more than it had (binding it again is asked, set_bound()), and it is
         * unbound at the release when no client may reclaim it. */
        if (ctx->slot != TSM_PRIV_SLOT_WORKER && !dispatch_device_listed(d, &info, "attach"))
                return dispatch_reply_own(d, m, -EPERM);

        /* SECURITY: one physical device belongs to one context at a time. Only the monitor sees
         * every context, the orphans the worker knows nothing of included. A device released
         * with a bind or unbind still on its way stays busy until the TSM has answered: the next
         * guest gets it in the state the release left it in. */
        if (monitor_contexts_find_device(d->contexts, info.pci_address, NULL) ||
            tsm_platform_is_changing(d->platform, info.pci_address))
                return dispatch_reply(d, m, -EBUSY, 0, -EBADF);

        r = monitor_context_add_vdevice(ctx, a->vdevice, info.pci_address, &v);
        if (r < 0)
                return dispatch_reply_own(d, m, r);
        /* SECURITY: a restore's word, from a state file the worker wrote, that the kernel kept the
         * vDevice bound through a restart of tsmd: taken, as it only makes the vDevice unbound
         * when it goes (at a detach or release, monitor_contexts_remove()); no check looks at it.
         * Not for an emulated TSM's device: that TSM lives in this monitor, and bound nothing yet
         * (the worker binds it again, asking as for any bind). */
        if ((a->state & TSM_PRIV_VDEVICE_BOUND) && !info.emulated)
                v->bound = true;
        log_debug("Attached %s as vDevice %" PRIu32 " of context %" PRIu32 "%s.", info.pci_address, a->vdevice,
                  ctx->id, v->bound ? ", bound" : "");
        return dispatch_reply(d, m, 0, 0, -EBADF);
}

int dispatch_priv_detach_vdevice(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                 const char **ret_reason) {
        const struct tsm_priv_vdevice *q = &m->vdevice;
        MonitorContext *ctx;
        MonitorVDevice *v;
        int r;

        r = dispatch_lookup_vdevice_message(d, q, &ctx, &v, ret_reason);
        if (r < 0)
                return r;

        dispatch_fail_requests_of(d, ctx->id, v->id);
        monitor_context_remove_vdevice(ctx, d->platform, v);
        log_debug("Detached vDevice %" PRIu32 " of context %" PRIu32 ".", q->vdevice, ctx->id);
        return dispatch_reply(d, m, 0, 0, -EBADF);
}
