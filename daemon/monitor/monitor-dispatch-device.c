/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Physical devices: the monitor's gate on which devices a worker may reach at all (some policy
 * rule lists them), CONNECT_DEVICE and DISCONNECT_DEVICE (SPDM and IDE, on the device's lane),
 * GET_DEVICE_STATE without a vDevice, and a device that went or was unbound outside tsmd.
 * Runs in: monitor.
 */

#include <string.h>

#include "backend.h"
#include "log.h"
#include "monitor-dispatch-internal.h"

/* SECURITY: the worker checked the client against the policy; the monitor checks the device
 * against it too, as it checks a guest request's scope, without trusting the worker's word on
 * who the client is: only a device some rule lists for the backend serving it may be attached
 * to a client's context or bound, or connected or disconnected (connection_listed())
 * (MonitorDispatchCallbacks). */
bool dispatch_device_listed(MonitorDispatch *d, const TsmDeviceInfo *info, const char *what) {
        if (d->cb.device_listed && d->cb.device_listed(info->pci_address, info->backend, d->userdata))
                return true;
        log_full_ratelimited(&d->device_refusal_log, LOG_WARNING,
                             "Refusing to %s %s: no policy rule lists the device for its backend %s.", what,
                             info->pci_address, strna(tsm_backend_type_to_string(info->backend)));
        return false;
}

static int check_device(const struct tsm_priv_device *dev, bool with_tsm, const char **ret_reason) {
        if (!tsm_priv_check_string(dev->pci_address, sizeof(dev->pci_address)))
                return dispatch_violation(-EBADMSG, "PCI address not a NUL-terminated string", ret_reason);
        if (!tsm_priv_check_string(dev->tsm, sizeof(dev->tsm)))
                return dispatch_violation(-EBADMSG, "TSM name not a NUL-terminated string", ret_reason);
        if (!with_tsm && dev->tsm[0] != 0)
                return dispatch_violation(-EBADMSG, "TSM name where none belongs", ret_reason);
        return 0;
}

int dispatch_priv_get_device_state(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                   const char **ret_reason) {
        TsmTarget t = { .pci_address = m->device.pci_address, .iommufd = -EBADF };
        int r, state = 0;

        r = check_device(&m->device, false, ret_reason);
        if (r < 0)
                return r;

        /* Only the emulated TSM lets the host see a TDI's state without a vDevice, and only
         * where it serves the address (not under a real device that shadows it). */
        r = tsm_platform_get_state(d->platform, &t, &state);
        return dispatch_reply(d, m, r < 0 ? -ENODEV : 0, r < 0 ? 0 : (uint32_t) state, -EBADF);
}

MonitorConnect *dispatch_connect_free(MonitorConnect *mc) {
        if (!mc)
                return NULL;
        LIST_REMOVE(mc, entry);
        return mfree(mc);
}

static void on_connect_done(TsmRequest *req, int result, void *userdata) {
        MonitorConnect *mc = userdata;
        MonitorDispatch *d = mc->dispatch;
        bool connect = mc->tsm[0] != 0;

        if (result < 0)
                log_debug_errno(result, "Failed to %s '%s'%s%s: %m", connect ? "connect" : "disconnect",
                                mc->pci_address, connect ? " to " : "", mc->tsm);
        else if (connect)
                log_info("Connected %s to %s.", mc->pci_address, mc->tsm);
        else
                log_info("Disconnected %s from its TSM.", mc->pci_address);
        /* The worker that asked died meanwhile, and its record of the call with it: the journal
         * keeps what happened. */
        if (mc->cookie == 0) {
                /* That worker recorded it as failed (ETIMEDOUT) at its end: the audit log hears
                 * how it ended after all, from whichever worker runs; once, from the kernel's
                 * answer itself when it was given up on in the kernel (its device went). */
                log_notice("The %s of %s was answered after the worker that asked for it ended: %s.",
                           connect ? "connect" : "disconnect", mc->pci_address,
                           result < 0 ? strerror(-result) : "done");
                dispatch_late_orphan(d, req, KERNEL_OP_WRITE, mc->pci_address, 0, result, mc->start_usec, &mc->tag);
        } else if (d->channel >= 0)
                (void) dispatch_reply_full(d, mc->cookie, result < 0 ? result : 0, 0, NULL, 0, -EBADF);
        dispatch_connect_free(mc);
}

/* Answered from the platform's callback: a kernel TSM connect is an SPDM session and IDE key
 * setup, and runs on the device's lane while the monitor serves everyone else. */
static int set_connected(MonitorDispatch *d, const PrivMessage *m, bool connect) {
        const struct tsm_priv_device *dev = &m->device;
        MonitorConnect *mc;
        int r;

        /* Our own -ENOMEM is said so: the kernel's write may fail ENOMEM too, which the worker
         * answers ConnectFailed, where ours is tsmd's failure (io.tsmd.System). */
        mc = new0(MonitorConnect, 1);
        if (!mc)
                return dispatch_reply_own(d, m, -ENOMEM);
        *mc = (MonitorConnect){ .dispatch = d, .cookie = dev->hdr.cookie, .start_usec = now_monotonic_usec(),
                                .tag = dispatch_late_tag(d, connect ? TSM_PRIV_LATE_CONNECT : TSM_PRIV_LATE_DISCONNECT,
                                                         dev->hdr.cookie, NULL, 0, dev->pci_address) };
        memcpy(mc->pci_address, dev->pci_address, sizeof(mc->pci_address));
        memcpy(mc->tsm, dev->tsm, sizeof(mc->tsm));
        memcpy(mc->tag.tsm, dev->tsm, sizeof(mc->tag.tsm));
        LIST_INSERT_HEAD(&d->connects, mc, entry);

        /* SECURITY: the sysfs path is made from an address the inventory knows (tsm-platform.c),
         * and the platform takes one connect or disconnect per device at a time (-EBUSY): the
         * worker cannot make the monitor hold more of them than there are devices. */
        r = connect ? tsm_platform_connect(d->platform, dev->pci_address, dev->tsm, on_connect_done, mc, &mc->request)
                    : tsm_platform_disconnect(d->platform, dev->pci_address, on_connect_done, mc, &mc->request);
        if (r < 0) {
                dispatch_connect_free(mc);
                log_debug_errno(r, "Failed to %s '%s': %m", connect ? "connect" : "disconnect", dev->pci_address);
                return dispatch_reply_not_started(d, m, r);
        }
        tsm_request_set_late_tag(mc->request, &mc->tag, sizeof(mc->tag));
        return 0;
}

/* SECURITY: the worker checked that an administrator asked and that some rule lists the device;
 * the monitor checks the latter too, as for an attach or bind: SPDM and IDE are started or torn
 * down only on a device some rule lists for the backend of the TSM the connection is with (the
 * TSM named, or the one the device is connected to; one of a kind tsmd does not recognise no rule
 * lists), never on another device of the host's, whatever the worker says. Where nothing would
 * be written (no such device or TSM, a function, a device connected to nothing disconnected), the
 * platform answers as it does. */
static bool connection_listed(MonitorDispatch *d, const struct tsm_priv_device *dev, bool connect) {
        TsmDeviceInfo info;

        if (tsm_platform_get_connection(d->platform, dev->pci_address, connect ? dev->tsm : NULL, &info) < 0)
                return true;
        return dispatch_device_listed(d, &info, connect ? "connect" : "disconnect");
}

int dispatch_priv_connect_device(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                 const char **ret_reason) {
        int r;

        r = check_device(&m->device, true, ret_reason);
        if (r < 0)
                return r;
        if (!connection_listed(d, &m->device, true))
                return dispatch_reply_own(d, m, -EPERM);
        return set_connected(d, m, true);
}

/* Whether a guest holds the kernel device at address, or a bind, unbind or connect of it is on
 * its way. */
static bool kernel_device_in_use(MonitorDispatch *d, const char *address) {
        TsmDeviceInfo info;

        return tsm_platform_get_device(d->platform, address, &info) >= 0 && !info.emulated &&
               (monitor_contexts_find_device(d->contexts, info.pci_address, NULL) ||
                tsm_platform_is_changing(d->platform, info.pci_address));
}

int dispatch_priv_disconnect_device(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                    const char **ret_reason) {
        const struct tsm_priv_device *dev = &m->device;
        Inventory *inv = tsm_platform_get_inventory(d->platform);
        int r;

        r = check_device(dev, false, ret_reason);
        if (r < 0)
                return r;
        if (!connection_listed(d, dev, false))
                return dispatch_reply_own(d, m, -EPERM);

        /* SECURITY: not from under a guest, not even one whose VMM has yet to reclaim its
         * context after a restart (which only the monitor sees), nor while a release's unbind
         * is on its way; nor from under the guest of a function the DSM speaks for, which
         * loses its link with it. Not a violation: the worker may not have seen it yet. */
        if (kernel_device_in_use(d, dev->pci_address))
                return dispatch_reply(d, m, -EBUSY, 0, -EBADF);
        for (size_t i = 0; i < inventory_n_devices(inv); i++) {
                const InventoryDevice *f = inventory_device_at(inv, i);

                if (f->dsm_address && streq(f->dsm_address, dev->pci_address) && kernel_device_in_use(d, f->address))
                        return dispatch_reply(d, m, -EBUSY, 0, -EBADF);
        }

        return set_connected(d, m, false);
}

void dispatch_on_device_gone(TsmPlatform *p, const char *pci_address, void *userdata) {
        MonitorDispatch *d = userdata;

        /* Its requests in flight fail by themselves (the platform answers them -ENODEV). */
        monitor_contexts_device_gone(d->contexts, pci_address);
}

void dispatch_on_device_unbound(TsmPlatform *p, const char *pci_address, void *userdata) {
        MonitorDispatch *d = userdata;

        monitor_contexts_device_unbound(d->contexts, pci_address);
}
