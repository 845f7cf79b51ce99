/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Backends, devices and request routing. Runs in: monitor and worker (see tsm-platform.h). */

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sys/queue.h>

#include "backend.h"
#include "discovery.h"
#include "emu-config.h"
#include "emu-state.h"
#include "emu-tsm.h"
#include "event-util.h"
#include "iommufd-transport.h"
#include "kernel-lanes.h"
#include "log.h"
#include "ratelimit.h"
#include "tsm-platform.h"

/* What a TsmRequest asks of the TSM. */
typedef enum TsmOp {
        TSM_OP_REQUEST,
        TSM_OP_BIND,
        TSM_OP_UNBIND,
        TSM_OP_RELEASE, /* an unbind that also leaves an emulated device clean for the next guest */
        TSM_OP_CONNECT, /* a PCI TSM sysfs write: kernel devices only */
        TSM_OP_DISCONNECT,
} TsmOp;

struct TsmRequest {
        TsmPlatform *platform;
        TsmOp op;
        char *pci_address;
        EmuDevice *emu;   /* emulated backend: the device, referenced */
        KernelCall *call; /* kernel backend: the ioctl, on the device's lane, then its answer
                           * until the callback (kept: given up on first, it answers late) */
        EmuScope emu_scope;
        uint8_t *request;
        size_t request_len;
        uint8_t *response;
        size_t response_size, response_len;
        size_t request_unconsumed; /* kernel: the TSM's residue, offered no response buffer */
        int result;
        bool completed; /* result is final; only the callback is left */
        bool answers_late; /* its kernel call was given up on in the kernel: the late callback has it */
        /* Emulated: the device works on it (it is the device's exchange). Like a DOE mailbox, it
         * takes one exchange at a time and the others wait their turn, in order. */
        bool serving;
        bool waiting; /* in the platform's emu_waiting */
        bool answer_due; /* the timer is the emulated device's answer, not the deadline */
        int refusal; /* emulated: what its TSM refuses it with, unasked, when its turn comes (0: none) */
        uint64_t deadline_usec; /* CLOCK_MONOTONIC; UINT64_MAX for none (bind, unbind, connect) */
        struct event *timer;
        TsmRequestCallback callback;
        void *userdata;
        const void *late_tag; /* the caller's (tsm_request_set_late_tag()) */
        size_t late_tag_size;
        TAILQ_ENTRY(TsmRequest) entry;
        TAILQ_ENTRY(TsmRequest) waiting_entry;
};

struct TsmPlatform {
        struct event_base *base;
        TsmPlatformConfig config;
        Inventory *inventory;
        Discovery *discovery;
        EmuPlatform *emu;
        EmuTsm *emu_tsm; /* the emulated TSM's own state (its nonces); the monitor's only */
        bool emu_loaded; /* devices came back from a snapshot, and the restore is not done yet */
        KernelLanes *lanes; /* made at the first kernel request */
        int uapi; /* TsmUapiVersion, or negative errno from probing */
        bool view; /* the worker's: no operations of its own */
        RateLimit timeout_log; /* a VMM whose device hangs times out as often as it asks */

        TsmPlatformDeviceGone gone_callback;
        void *gone_userdata;
        TsmPlatformDeviceUnbound unbound_callback;
        void *unbound_userdata;
        TsmPlatformLate late_callback;
        void *late_userdata;

        TAILQ_HEAD(, TsmRequest) requests;
        /* Calls to emulated devices busy with another, oldest first: few, as most devices are
         * idle when called. */
        TAILQ_HEAD(, TsmRequest) emu_waiting;
};

static const char *const tsm_platform_mode_table[_TSM_PLATFORM_MODE_MAX] = {
        [TSM_PLATFORM_AUTO] = "auto",
        [TSM_PLATFORM_KERNEL] = "kernel",
        [TSM_PLATFORM_EMULATED] = "emulated",
};
DEFINE_STRING_TABLE_LOOKUP(tsm_platform_mode, TsmPlatformMode);

/* Its kernel call, if it has one, goes on without it: should the kernel be running it, or have
 * answered it already, its late answer is reported with the caller's tag. */
static void request_abandon_call(TsmRequest *r) {
        if (kernel_call_abandon_tagged(TAKE_PTR(r->call), r->late_tag, r->late_tag_size))
                r->answers_late = true;
}

static void request_free(TsmRequest *r) {
        /* The device may outlive it (a reference elsewhere): it must not point here. */
        if (emu_device_get_exchange(r->emu) == r)
                emu_device_set_exchange(r->emu, NULL);
        request_abandon_call(r);
        if (r->timer)
                event_free(r->timer);
        emu_device_unref(r->emu);
        free(r->pci_address);
        free(r->request);
        free(r->response);
        free(r);
}

/* Runs the request's timer from the event loop after delay_usec. */
static void request_schedule(TsmRequest *r, uint64_t delay_usec) {
        struct timeval tv = timeval_from_usec(delay_usec);

        (void) evtimer_add(r->timer, &tv);
}

static uint64_t usec_until(uint64_t deadline_usec) {
        uint64_t now = now_monotonic_usec();

        return deadline_usec > now ? deadline_usec - now : 0;
}

/* What the emulated TSM refuses a guest request with unasked, as a kernel TSM refuses before it
 * talks to the device (emu_tsm_check_request(): a debug scope it does not serve, a TDI not bound,
 * a message its scope does not carry). Judged when the device takes r up: only binds and unbinds,
 * which wait in the same line, change the binding, so the calls made before r count and those
 * after it do not, as on a kernel lane. */
static int emu_refusal(const TsmRequest *r) {
        if (r->op != TSM_OP_REQUEST)
                return 0;
        return emu_tsm_check_request(r->platform->emu_tsm, r->emu, r->emu_scope, r->request, r->request_len);
}

/* The emulated device takes r up now: it answers after its latency (at once for a request its
 * TSM refuses: no exchange), unless r's deadline comes first. */
static void emu_serve(TsmRequest *r) {
        uint64_t latency, left = usec_until(r->deadline_usec);

        r->refusal = emu_refusal(r);
        latency = r->refusal < 0 ? 0 : r->platform->config.emulated_latency_usec;

        if (r->waiting) {
                TAILQ_REMOVE(&r->platform->emu_waiting, r, waiting_entry);
                r->waiting = false;
        }
        r->serving = true;
        emu_device_set_exchange(r->emu, r);
        r->answer_due = latency < left;
        (void) evtimer_del(r->timer);
        request_schedule(r, MIN(latency, left));
}

/* Busy while its exchange is not answered (a completed one only waits for its callback). */
static bool emu_busy(const EmuDevice *d) {
        const TsmRequest *r = emu_device_get_exchange(d);

        return r && !r->completed;
}

/* If the device is idle, it takes the first call waiting for it. */
static void emu_serve_next(TsmPlatform *p, EmuDevice *d) {
        TsmRequest *r;

        if (emu_busy(d))
                return;
        TAILQ_FOREACH(r, &p->emu_waiting, waiting_entry)
                if (r->emu == d && !r->completed) {
                        emu_serve(r);
                        return;
                }
}

/* A call to an emulated device: served at once if the device is idle, else it waits, its
 * deadline running. */
static void emu_submit(TsmRequest *r, EmuDevice *d) {
        TsmPlatform *p = r->platform;

        r->emu = emu_device_ref(d);
        if (!emu_busy(d)) {
                emu_serve(r);
                return;
        }
        TAILQ_INSERT_TAIL(&p->emu_waiting, r, waiting_entry);
        r->waiting = true;
        if (r->deadline_usec != UINT64_MAX)
                request_schedule(r, usec_until(r->deadline_usec));
}

/* The emulated device answers now, after its latency: if it was unplugged meanwhile, it says so
 * itself (-ENODEV). Returns false if it does not answer at all. The emulated TSM (emu-tsm.h)
 * makes the exchange, as a kernel TSM would: it keeps the nonce of a LOCK and starts the TDI
 * with it when the guest accepts the device, and takes guest requests for a bound TDI only. */
static bool emu_answer(TsmRequest *r) {
        EmuTsm *t = r->platform->emu_tsm;
        int k;

        switch (r->op) {
        case TSM_OP_REQUEST:
                if (r->refusal < 0) {
                        k = r->refusal;
                        break;
                }
                k = emu_tsm_request(t, r->emu, r->emu_scope, r->request, r->request_len, r->response,
                                    r->response_size, &r->response_len);
                if (k == -ETIMEDOUT)
                        return false;
                break;
        case TSM_OP_BIND:
                k = emu_tsm_bind(t, r->emu);
                break;
        case TSM_OP_UNBIND:
                /* As the kernel's pci_tsm_unbind(), which is void: done once the binding is
                 * dropped, whatever the device made of the STOP. */
                k = emu_tsm_unbind(t, r->emu);
                if (k < 0)
                        log_warning_errno(k, "Emulated device %s did not take the unbind's STOP, unbound all the same: %m",
                                          r->pci_address);
                k = 0;
                break;
        case TSM_OP_RELEASE:
                k = emu_tsm_release(t, r->emu);
                break;
        default:
                k = -EINVAL;
        }
        r->result = k;
        r->completed = true;
        return true;
}

/* Takes r off the list; the emulated device it held takes its next call, ahead of any call
 * r's callback may make. */
static void request_unlink(TsmRequest *r) {
        TAILQ_REMOVE(&r->platform->requests, r, entry);
        if (r->waiting) {
                TAILQ_REMOVE(&r->platform->emu_waiting, r, waiting_entry);
                r->waiting = false;
        }
        if (!r->serving)
                return;
        if (emu_device_get_exchange(r->emu) == r)
                emu_device_set_exchange(r->emu, NULL);
        emu_serve_next(r->platform, r->emu);
}

static void on_request_timer(evutil_socket_t fd, short what, void *userdata) {
        TsmRequest *r = userdata;
        TsmPlatform *p = r->platform;

        if (!r->completed && r->answer_due) {
                r->answer_due = false;
                if (!emu_answer(r)) {
                        /* A device that does not answer holds its mailbox until the deadline. */
                        request_schedule(r, usec_until(r->deadline_usec));
                        return;
                }
        } else if (!r->completed) {
                /* libevent's clock is CLOCK_MONOTONIC_COARSE (a tick behind), cached for a round
                 * of the loop: its timer may come a few ms before the deadline. Not yet, then. */
                if (usec_until(r->deadline_usec) > 0) {
                        request_schedule(r, usec_until(r->deadline_usec));
                        return;
                }
                log_full_ratelimited(&p->timeout_log, LOG_WARNING,
                                     "Guest request to %s not answered within %" PRIu64 " ms, failing it.",
                                     r->pci_address, p->config.request_timeout_usec / 1000);
                r->result = -ETIMEDOUT;
                r->completed = true;
                /* While its caller, whose tag it is, still exists. */
                request_abandon_call(r);
        }

        request_unlink(r);
        /* The kernel's answer, if it is one, reaches the caller now. */
        kernel_call_delivered(TAKE_PTR(r->call));
        /* Connecting emits no uevent: look at the device again, so that whoever hears the answer
         * finds it as the kernel left it. */
        if ((r->op == TSM_OP_CONNECT || r->op == TSM_OP_DISCONNECT) && r->result >= 0)
                r->result = discovery_refresh_device(p->discovery, r->pci_address);
        r->callback(r, r->result, r->userdata);
        /* After the callback: its vDevice reads what the TSM answered, so that what the look
         * shows is judged against it (tsm_platform_refresh_binding()). */
        if ((r->op == TSM_OP_BIND || r->op == TSM_OP_UNBIND || r->op == TSM_OP_RELEASE) && r->result >= 0 && !r->emu)
                tsm_platform_refresh_binding(p, r->pci_address, r->op == TSM_OP_BIND);
        request_free(r);
}

/* The result is known now; only the callback is left to run. */
static void request_finish(TsmRequest *r, int result) {
        r->result = result;
        r->completed = true;
        request_schedule(r, 0);
}

/* Everything in flight to a device that is gone fails with -ENODEV. What the backend answered
 * already keeps its answer (its callback is due): the device acted before it went, and a
 * kernel call it answered will not answer late. A connect or disconnect of a device that is
 * still there (removed false) goes on: it is what changed the device, seen by a look before
 * the kernel's write returned; it looks again when it ends, and until then the device's
 * connection is busy. */
static void fail_requests_for(TsmPlatform *p, const char *pci_address, bool removed) {
        TsmRequest *r;

        TAILQ_FOREACH(r, &p->requests, entry)
                if (!r->completed && (!pci_address || streq(r->pci_address, pci_address)) &&
                    (removed || (r->op != TSM_OP_CONNECT && r->op != TSM_OP_DISCONNECT))) {
                        (void) evtimer_del(r->timer);
                        request_abandon_call(r);
                        request_finish(r, -ENODEV);
                }
}

/* Whether a TSM of a kind tsmd knows serves d, so that its address routes to the kernel. */
static bool served_by_kernel(Inventory *inv, const InventoryDevice *d) {
        const InventoryTsm *t;

        if (!d || !d->tdisp_capable)
                return false;
        t = inventory_device_get_tsm(inv, d);
        return t && t->type >= 0;
}

static bool emulated_at(TsmPlatform *p, const char *pci_address) {
        return p->emu && emu_platform_find_device(p->emu, pci_address);
}

static int kernel_device(TsmPlatform *p, const char *pci_address, TsmDeviceInfo *ret) {
        const InventoryDevice *d;
        const InventoryTsm *t;

        d = inventory_get_device(p->inventory, pci_address);
        if (!d || !d->tdisp_capable)
                return -ENODEV;
        t = inventory_device_get_tsm(p->inventory, d);
        if (!t || t->type < 0)
                return -ENXIO;

        *ret = (TsmDeviceInfo){
                .pci_address = d->address,
                .tsm = t->name,
                .backend = t->type,
                .uapi = p->uapi >= 0 ? (TsmUapiVersion) p->uapi : _TSM_UAPI_VERSION_INVALID,
        };
        return 0;
}

/* What was attached to the device is gone (the device, removed, or the backend that served it):
 * its requests fail, the callback marks its vDevices gone. */
static void device_gone(TsmPlatform *p, const char *pci_address, bool removed, const char *why) {
        TsmDeviceInfo info;
        EmuDevice *e;

        log_info("Device %s %s.", pci_address, why);
        fail_requests_for(p, pci_address, removed);
        if (p->gone_callback)
                p->gone_callback(p, pci_address, p->gone_userdata);

        /* An emulated device a real one shadows from now on: its release would go to the
         * kernel, so leave it clean now (TDI stopped, memory scrubbed) for whenever the address
         * is emulated again. Its requests were failed above: nothing is exchanging. */
        e = p->emu && !p->view ? emu_platform_find_device(p->emu, pci_address) : NULL;
        if (e && kernel_device(p, pci_address, &info) >= 0 && !emu_device_is_clean(e)) {
                int r = emu_tsm_release(p->emu_tsm, e);
                if (r < 0)
                        log_warning_errno(r, "Failed to clean up the emulated device %s: %m", pci_address);
        }
}

static void on_inventory_event(Inventory *inv, const InventoryEvent *ev, void *userdata) {
        TsmPlatform *p = userdata;
        TsmDeviceInfo info;

        /* The default emulated addresses are common real ones: a real device there that no TSM
         * serves (a plain NIC coming and going, say) is not what serves the address, and what
         * was attached to the emulated device stays. */
        switch (ev->type) {
        case INVENTORY_DEVICE_REMOVED:
                if (served_by_kernel(inv, ev->device) || !emulated_at(p, ev->device->address))
                        device_gone(p, ev->device->address, /* removed= */ true, "is gone");
                break;
        case INVENTORY_DEVICE_ADDED:
                /* A real device a TSM serves, at an address the emulator also has: it is served
                 * by that TSM from now on, and what was attached to the emulated one is gone. */
                if (emulated_at(p, ev->device->address) && kernel_device(p, ev->device->address, &info) >= 0)
                        device_gone(p, ev->device->address, /* removed= */ false,
                                    "is served by its TSM now, not emulated");
                break;
        case INVENTORY_DEVICE_CHANGED:
                /* Disconnected, connected to another TSM (or to one, where it was emulated),
                 * no longer TDISP capable, another DSM speaking for it (another SPDM session),
                 * another function at its address: what was attached is not what serves it now.
                 * (connect and disconnect send no uevent: a switch from one TSM to another may
                 * show in one rescan.) */
                if ((ev->changes & (INVENTORY_CHANGE_CONNECT | INVENTORY_CHANGE_TDISP | INVENTORY_CHANGE_DSM |
                                    INVENTORY_CHANGE_IDS | INVENTORY_CHANGE_SYSPATH)) &&
                    (served_by_kernel(inv, ev->old_device) || served_by_kernel(inv, ev->device) ||
                     !emulated_at(p, ev->device->address)))
                        device_gone(p, ev->device->address, /* removed= */ false,
                                    "changed its TSM, identity or TDISP support");
                /* The kernel ends a binding without a word: a disconnect unbinds every TDI of the
                 * DSM first, and a disconnect and reconnect to the same TSM by another tool leaves
                 * tsm/connect as it was. tsm/bound tells (SYSFS.md). Not while a bind, unbind,
                 * release, connect or disconnect of tsmd's own is on its way on the device: what
                 * the rescan saw may be its doing (the callbacks skip vDevices with a change of
                 * theirs on its way, and one tsmd unbound is not bound any more; a gone one, as
                 * above, is neither). Emulated devices are not in sysfs: none of theirs ends so.
                 * tsmd looks at the device after its own bind (tsm_platform_refresh_binding()):
                 * else a binding that ended before a rescan read it bound would read 0 -> 0. */
                if ((ev->changes & INVENTORY_CHANGE_BOUND) && ev->old_device->bound == 1 && ev->device->bound == 0 &&
                    served_by_kernel(inv, ev->device) && !tsm_platform_is_changing(p, ev->device->address) &&
                    p->unbound_callback)
                        p->unbound_callback(p, ev->device->address, p->unbound_userdata);
                break;
        case INVENTORY_TSM_CHANGED:
                /* A TSM of another kind under the same name (a driver swapped): its devices'
                 * backend changed under their vDevices. */
                if (ev->changes & INVENTORY_CHANGE_TYPE)
                        for (size_t i = 0; i < inventory_n_devices(inv); i++) {
                                const InventoryDevice *d = inventory_device_at(inv, i);

                                if (d->connected_tsm && streq(d->connected_tsm, ev->tsm->name))
                                        device_gone(p, d->address, /* removed= */ false,
                                                    "is served by a TSM of another kind now");
                        }
                break;
        case INVENTORY_TSM_REMOVED:
                log_info("TSM %s is gone.", ev->tsm->name);
                /* The kernel disconnects its devices first, and the scan that saw the TSM go
                 * reported them already. One whose sysfs still names the TSM (a racing scan, a
                 * driver that left the link) lost its binding and SPDM session all the same:
                 * else a TSM registered again under the name would take over its vDevices. */
                for (size_t i = 0; i < inventory_n_devices(inv); i++) {
                        const InventoryDevice *d = inventory_device_at(inv, i);

                        if (d->connected_tsm && streq(d->connected_tsm, ev->tsm->name) &&
                            ((d->tdisp_capable && ev->tsm->type >= 0) || !emulated_at(p, d->address)))
                                device_gone(p, d->address, /* removed= */ false, "lost its TSM");
                }
                break;
        case INVENTORY_TSM_ADDED:
                log_info("TSM %s (%s) appeared.", ev->tsm->name,
                         strna(tsm_backend_type_to_string(ev->tsm->type)));
                if (p->emu && !p->view)
                        log_notice("Devices connected to %s are served by it from now on, also where an "
                                   "emulated device has the same address.", ev->tsm->name);
                /* Devices that named it before it was seen (a scan between their link and its
                 * registration) change hands now, with no change of their own to show it. */
                for (size_t i = 0; i < inventory_n_devices(inv); i++) {
                        const InventoryDevice *d = inventory_device_at(inv, i);

                        if (d->connected_tsm && streq(d->connected_tsm, ev->tsm->name) &&
                            emulated_at(p, d->address) && served_by_kernel(inv, d))
                                device_gone(p, d->address, /* removed= */ false,
                                            "is served by its TSM now, not emulated");
                }
                break;
        default:
                break;
        }
}

static int platform_new(struct event_base *base, const TsmPlatformConfig *config, bool view, bool emulated,
                        int uapi, TsmPlatform **ret) {
        _cleanup_(tsm_platform_freep) TsmPlatform *p = NULL;
        int r;

        assert(base);
        assert(config);
        assert(ret);

        p = new0(TsmPlatform, 1);
        if (!p)
                return -ENOMEM;
        p->base = base;
        p->uapi = view ? uapi : -EOPNOTSUPP;
        p->view = view;
        p->timeout_log = RATELIMIT(TSM_TIMEOUT_LOG_INTERVAL_USEC, TSM_TIMEOUT_LOG_BURST);
        TAILQ_INIT(&p->requests);
        TAILQ_INIT(&p->emu_waiting);
        p->config.mode = config->mode;
        p->config.emulated_latency_usec = config->emulated_latency_usec;
        p->config.emulated_debug_scopes = config->emulated_debug_scopes;
        p->config.request_timeout_usec = config->request_timeout_usec ?: TSM_REQUEST_TIMEOUT_USEC_DEFAULT;
        p->config.iommu_device = strdup(config->iommu_device ?: "/dev/iommu");
        if (!p->config.iommu_device)
                return -ENOMEM;

        r = inventory_new(&p->inventory);
        if (r < 0)
                return r;
        r = inventory_add_watch(p->inventory, on_inventory_event, p, NULL);
        if (r < 0)
                return r;

        if (config->mode != TSM_PLATFORM_EMULATED) {
                r = discovery_new(p->inventory, base, &p->discovery);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up device discovery: %m");
                /* Listening first: a change during the scan is heard, and applied after it. */
                r = discovery_start_monitor(p->discovery);
                if (r < 0)
                        log_warning_errno(r, "Cannot follow device hotplug, continuing without: %m");
                r = discovery_scan(p->discovery);
                if (r < 0)
                        return log_error_errno(r, "Failed to enumerate TSMs and PCI devices: %m");
        }

        if (config->mode != TSM_PLATFORM_EMULATED && !view) {
                TsmUapiVersion v;

                r = iommufd_probe_uapi(p->config.iommu_device, &v);
                p->uapi = r < 0 ? r : (int) v;
                if (r < 0) {
                        log_info_errno(r, "Kernel TSM requests unavailable through %s: %m",
                                       p->config.iommu_device);
                } else
                        log_info("Kernel speaks the %s iommufd TSM UAPI.",
                                 tsm_uapi_version_to_string(p->uapi));
        }

        /* The worker follows the monitor's choice: their scans may race a hotplug. */
        if (view ? emulated
                 : config->mode == TSM_PLATFORM_EMULATED ||
                           (config->mode == TSM_PLATFORM_AUTO && inventory_n_tsms(p->inventory) == 0)) {
                r = emu_platform_new_from_config(config->emulated_devices, &p->emu);
                if (r < 0)
                        return log_error_errno(r, "Invalid emulated device list '%s': %m",
                                               strna(config->emulated_devices));
                if (!view) {
                        r = emu_tsm_new(&p->emu_tsm);
                        if (r < 0)
                                return r;
                        emu_tsm_set_debug_scopes(p->emu_tsm, config->emulated_debug_scopes);
                        r = emu_state_salt_nonces(p->emu);
                        if (r < 0)
                                return log_error_errno(r, "Failed to salt the emulated nonces: %m");
                        log_info("No TSM found, serving the emulated TDISP platform with %zu devices.",
                                 emu_platform_get_n_devices(p->emu));
                }
        }

        *ret = TAKE_PTR(p);
        return 0;
}

int tsm_platform_new(struct event_base *base, const TsmPlatformConfig *config, TsmPlatform **ret) {
        return platform_new(base, config, false, false, 0, ret);
}

int tsm_platform_new_view(struct event_base *base, const TsmPlatformConfig *config, bool emulated, int uapi,
                          TsmPlatform **ret) {
        return platform_new(base, config, true, emulated, uapi, ret);
}

TsmPlatform *tsm_platform_free(TsmPlatform *p) {
        TsmRequest *r;

        if (!p)
                return NULL;

        /* Stopping: nothing is told late, an answer its request kept no more than one the
         * kernel has yet to give (the lanes, freed below, deliver nothing). */
        p->late_callback = NULL;
        while ((r = TAILQ_FIRST(&p->requests))) {
                TAILQ_REMOVE(&p->requests, r, entry);
                request_free(r);
        }
        kernel_lanes_free(p->lanes);
        discovery_free(p->discovery);
        inventory_free(p->inventory);
        emu_tsm_free(p->emu_tsm);
        emu_platform_free(p->emu);
        free(p->config.iommu_device);
        return mfree(p);
}

void tsm_platform_set_device_gone_callback(TsmPlatform *p, TsmPlatformDeviceGone cb, void *userdata) {
        p->gone_callback = cb;
        p->gone_userdata = userdata;
}

void tsm_platform_set_device_unbound_callback(TsmPlatform *p, TsmPlatformDeviceUnbound cb, void *userdata) {
        p->unbound_callback = cb;
        p->unbound_userdata = userdata;
}

bool tsm_platform_is_emulated(const TsmPlatform *p) {
        return !!p->emu;
}

const char *tsm_platform_get_iommu_device(const TsmPlatform *p) {
        return p->config.iommu_device;
}

Inventory *tsm_platform_get_inventory(TsmPlatform *p) {
        return p->inventory;
}

EmuPlatform *tsm_platform_get_emulated(TsmPlatform *p) {
        return p->emu;
}

int tsm_platform_get_uapi(const TsmPlatform *p, TsmUapiVersion *ret) {
        if (p->uapi < 0)
                return p->uapi;
        *ret = p->uapi;
        return 0;
}

int tsm_platform_set_emulated_devices(TsmPlatform *p, const char *devices) {
        _cleanup_free_ EmuDeviceConfig *configs = NULL;
        size_t n = 0;
        int r;

        if (!p->emu)
                return -EOPNOTSUPP;

        /* Unset means what it means at start: the default set. */
        r = emu_config_parse(devices ?: EMU_CONFIG_DEFAULT, &configs, &n);
        if (r < 0)
                return r;

        /* Remove first (walking backwards, as removal shifts the list), then add. */
        for (size_t i = emu_platform_get_n_devices(p->emu); i > 0; i--) {
                EmuDevice *d = emu_platform_get_device(p->emu, i - 1);
                const EmuDeviceConfig *dc = emu_device_get_config(d);
                bool keep = false;

                for (size_t j = 0; j < n; j++)
                        if (emu_pci_address_equal(&dc->address, &configs[j].address))
                                keep = true;
                if (!keep) {
                        TsmDeviceInfo info;
                        char address[64];
                        /* A TSM serves the address now: the emulated device served nothing. */
                        bool served = kernel_device(p, emu_device_get_address(d), &info) < 0;

                        snprintf(address, sizeof(address), "%s", emu_device_get_address(d));
                        (void) emu_platform_remove_device(p->emu, address);
                        if (served)
                                device_gone(p, address, /* removed= */ false, "is no longer emulated");
                        else
                                log_info("Emulated device %s removed (its TSM serves the address).", address);
                }
        }
        /* What the emulated TSM held for them goes with them. */
        emu_tsm_forget_removed(p->emu_tsm);
        for (size_t j = 0; j < n; j++) {
                char address[64];
                EmuDevice *d;

                emu_pci_address_format(&configs[j].address, address);
                d = emu_platform_find_device(p->emu, address);
                if (d) {
                        /* Faults switch on and off in place; the rest of a listed device's
                         * configuration is its hardware and stays as it was. */
                        EmuFault f = configs[j].fault;

                        if (emu_device_get_fault(d) == f)
                                continue;
                        if (f < 0)
                                emu_device_clear_fault(d);
                        else
                                (void) emu_device_inject_fault(d, f, 0);
                        log_info("Emulated device %s: fault %s.", address, f < 0 ? "cleared" : emu_fault_to_string(f));
                        continue;
                }
                r = emu_platform_add_device_config(p->emu, &configs[j], NULL);
                if (r < 0)
                        return r;
                log_info("Emulated device %s added.", address);
        }
        return 0;
}

int tsm_platform_get_device(TsmPlatform *p, const char *pci_address, TsmDeviceInfo *ret) {
        EmuDevice *e;
        int r;

        assert(pci_address);
        assert(ret);

        /* SECURITY: one spelling per device, sysfs's, in both processes and for both kinds of
         * device; anything else names no device. */
        if (!pci_address_is_valid(pci_address))
                return -ENODEV;

        /* A device a real TSM serves comes first. In auto mode a TSM may appear after tsmd
         * started on the emulated platform (its driver loaded late), and the default emulated
         * addresses are common real ones: the emulator must not shadow its devices. */
        r = kernel_device(p, pci_address, ret);
        if (r >= 0 || !p->emu)
                return r;
        e = emu_platform_find_device(p->emu, pci_address);
        if (!e)
                return r;
        *ret = (TsmDeviceInfo){
                .pci_address = emu_device_get_address(e),
                .tsm = EMULATED_TSM_NAME,
                .backend = TSM_BACKEND_EMULATED,
                .emulated = true,
                .uapi = TSM_UAPI_V5,
        };
        return 0;
}

static int device_scope(TsmPlatform *p, const TsmDeviceInfo *info, const char *scope,
                        const TsmScopeDesc **ret_desc, uint32_t *ret_number) {
        const TsmBackendDesc *b = tsm_backend_desc(info->backend);
        TsmUapiVersion v;
        int r;

        if (!b)
                return -ENXIO;
        if (info->emulated)
                v = TSM_UAPI_V5; /* the emulated backend numbers its scopes like v5 */
        else if (p->uapi < 0)
                return -EOPNOTSUPP;
        else
                v = p->uapi;

        /* SECURITY: the number comes from the table of the backend serving this device. */
        r = tsm_backend_scope_number(b, scope, v, ret_number);
        if (r < 0)
                return r;
        if (ret_desc)
                *ret_desc = tsm_backend_find_scope(b, scope);
        return 0;
}

int tsm_platform_scope_number(TsmPlatform *p, const TsmDeviceInfo *device, const char *scope, uint32_t *ret) {
        return device_scope(p, device, scope, NULL, ret);
}

bool tsm_platform_serves_scope(TsmPlatform *p, const TsmDeviceInfo *device, const char *scope) {
        assert(p);
        assert(device);
        assert(scope);

        /* As the emulated TSM refuses them (emu_tsm_check_request()), which a view does not run:
         * from the configuration both read at start. */
        return !device->emulated || p->config.emulated_debug_scopes ||
               (!streq(scope, TSM_SCOPE_DEBUG_READ) && !streq(scope, TSM_SCOPE_DEBUG_WRITE));
}

int tsm_platform_refresh_device(TsmPlatform *p, const char *pci_address) {
        if (!p->discovery)
                return -ENODEV;
        return discovery_refresh_device(p->discovery, pci_address);
}

void tsm_platform_refresh_binding(TsmPlatform *p, const char *pci_address, bool bind) {
        const InventoryDevice *d = inventory_get_device(p->inventory, pci_address);
        char address[PCI_ADDRESS_LEN_MAX + 1];
        int was, r;

        if (!p->discovery || !served_by_kernel(p->inventory, d))
                return;
        /* The look replaces the inventory's entry, whose address pci_address may be. */
        snprintf(address, sizeof(address), "%s", pci_address);
        was = d->bound;
        r = discovery_refresh_device(p->discovery, address);
        if (r < 0) {
                log_debug_errno(r, "Failed to look at %s again after tsmd's %s, ignoring: %m", address,
                                bind ? "bind" : "unbind");
                return;
        }
        /* Bound now (0 -> 1), as expected, or unbound after an unbind: the look's own events said
         * what changed, an end of a binding that read bound (1 -> 0) included. Empty still after
         * a bind (0 -> 0, no event): the kernel bound it and ended it before the look, as a rescan
         * between the two would have told. */
        d = inventory_get_device(p->inventory, address);
        if (bind && was == 0 && d && d->bound == 0 && served_by_kernel(p->inventory, d) &&
            !tsm_platform_is_changing(p, address) && p->unbound_callback)
                p->unbound_callback(p, address, p->unbound_userdata);
}

int tsm_platform_get_state(TsmPlatform *p, const TsmTarget *t, int *ret_tdisp_state) {
        TsmDeviceInfo info;
        int r;

        if (p->view)
                return -EPERM;

        r = tsm_platform_get_device(p, t->pci_address, &info);
        if (r < 0)
                return r;
        if (!info.emulated)
                return -EOPNOTSUPP; /* the kernel does not expose the TDI state to the host */
        *ret_tdisp_state = emu_device_get_state(emu_platform_find_device(p->emu, t->pci_address));
        return 0;
}

static void on_kernel_call_done(KernelCall *c, int result, void *userdata) {
        TsmRequest *r = userdata;

        /* Kept until the callback runs: a request cancelled before, the lanes report its
         * answer late. */
        kernel_call_keep(c);
        r->response = kernel_call_take_response(c, &r->response_len);
        r->request_unconsumed = kernel_call_get_request_unconsumed(c);
        (void) evtimer_del(r->timer); /* the deadline */
        request_finish(r, result);
}

/* A request in the platform's list, its callback not yet due. */
static int request_new(TsmPlatform *p, const char *pci_address, TsmRequestCallback cb, void *userdata,
                       TsmRequest **ret) {
        TsmRequest *r;

        r = new0(TsmRequest, 1);
        if (!r)
                return -ENOMEM;
        r->platform = p;
        r->callback = cb;
        r->userdata = userdata;
        r->pci_address = strdup(pci_address);
        r->timer = evtimer_new(p->base, on_request_timer, r);
        if (!r->pci_address || !r->timer) {
                request_free(r);
                return -ENOMEM;
        }
        TAILQ_INSERT_TAIL(&p->requests, r, entry);
        *ret = r;
        return 0;
}

static void on_kernel_late(const KernelLate *late, void *userdata) {
        TsmPlatform *p = userdata;

        if (p->late_callback)
                p->late_callback(p, late, p->late_userdata);
}

/* On the device's lane, so that a slow device holds only its own calls. */
static int request_submit(TsmRequest *r, const KernelCallArgs *args) {
        TsmPlatform *p = r->platform;
        int k;

        if (!p->lanes) {
                k = kernel_lanes_new(p->base, KERNEL_LANE_LINGER_USEC, &p->lanes);
                if (k < 0)
                        return k;
                kernel_lanes_set_late_callback(p->lanes, on_kernel_late, p);
        }
        return kernel_lanes_submit(p->lanes, r->pci_address, args, on_kernel_call_done, r, &r->call);
}

static int set_bound(TsmPlatform *p, const TsmTarget *t, TsmOp op, TsmRequestCallback cb, void *userdata,
                     TsmRequest **ret) {
        TsmDeviceInfo info;
        TsmRequest *r;
        int k;

        assert(p);
        assert(t);
        assert(cb);

        if (p->view)
                return -EPERM;
        k = tsm_platform_get_device(p, t->pci_address, &info);
        if (k < 0)
                return k;
        if (!info.emulated && p->uapi < 0)
                return -EOPNOTSUPP; /* as device_scope(): the probe's own error is in the log */
        k = request_new(p, info.pci_address, cb, userdata, &r);
        if (k < 0)
                return k;

        r->op = op;
        /* No deadline: what the TDI is after the call must be known, so its answer is awaited
         * however late; a kernel TSM's own SPDM timeouts bound it. */
        r->deadline_usec = UINT64_MAX;
        if (info.emulated)
                /* An exchange with the device like a request: in turn, after its latency. */
                emu_submit(r, emu_platform_find_device(p->emu, info.pci_address));
        else {
                KernelCallArgs args = {
                        .op = op == TSM_OP_BIND ? KERNEL_OP_BIND : KERNEL_OP_UNBIND,
                        .iommufd = t->iommufd,
                        .version = info.uapi,
                        .vdevice_id = t->vdevice_id,
                };

                k = request_submit(r, &args);
                if (k < 0) {
                        tsm_request_cancel(r);
                        return k;
                }
        }
        if (ret)
                *ret = r;
        return 0;
}

int tsm_platform_bind(TsmPlatform *p, const TsmTarget *t, TsmRequestCallback cb, void *userdata, TsmRequest **ret) {
        return set_bound(p, t, TSM_OP_BIND, cb, userdata, ret);
}

int tsm_platform_unbind(TsmPlatform *p, const TsmTarget *t, TsmRequestCallback cb, void *userdata,
                        TsmRequest **ret) {
        return set_bound(p, t, TSM_OP_UNBIND, cb, userdata, ret);
}

int tsm_platform_release(TsmPlatform *p, const TsmTarget *t, TsmRequestCallback cb, void *userdata,
                         TsmRequest **ret) {
        return set_bound(p, t, TSM_OP_RELEASE, cb, userdata, ret);
}

/* Whether a connect or disconnect of the device is on its way, or answered and its callback
 * not yet run (it looks at the device again first). */
static bool is_connecting(TsmPlatform *p, const char *pci_address) {
        TsmRequest *r;

        TAILQ_FOREACH(r, &p->requests, entry)
                if ((r->op == TSM_OP_CONNECT || r->op == TSM_OP_DISCONNECT) && streq(r->pci_address, pci_address))
                        return true;
        return false;
}

/* Writes value (NULL: nothing to do) to the device's tsm/connect or tsm/disconnect, on its lane.
 * SECURITY: the path is built from an address the inventory knows, never from client text. */
static int set_connected(TsmPlatform *p, const InventoryDevice *d, TsmOp op, const char *value,
                         TsmRequestCallback cb, void *userdata, TsmRequest **ret) {
        char path[PATH_MAX];
        TsmRequest *r;
        int k;

        if ((size_t) snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/tsm/%s", d->address,
                              op == TSM_OP_CONNECT ? "connect" : "disconnect") >= sizeof(path))
                return -ENAMETOOLONG;
        k = request_new(p, d->address, cb, userdata, &r);
        if (k < 0)
                return k;
        r->op = op;
        /* No deadline: which TSM a device is connected to must be known, so the answer is
         * awaited however late; the kernel's own SPDM and DOE timeouts bound it. */
        r->deadline_usec = UINT64_MAX;
        if (!value)
                request_finish(r, 0);
        else {
                KernelCallArgs args = {
                        .op = KERNEL_OP_WRITE,
                        .iommufd = -EBADF,
                        .request = value,
                        .request_len = strlen(value),
                        .path = path,
                };

                k = request_submit(r, &args);
                if (k < 0) {
                        tsm_request_cancel(r);
                        return k;
                }
        }
        if (ret)
                *ret = r;
        return 0;
}

/* The device at pci_address, if its connection (to tsm, NULL: a disconnect) is the platform's to
 * change now. */
static int connectable_device(TsmPlatform *p, const char *pci_address, const char *tsm,
                              const InventoryDevice **ret) {
        const InventoryDevice *d;

        if (p->view)
                return -EPERM;
        d = inventory_get_device(p->inventory, pci_address);
        if (!d || !d->tdisp_capable || !p->discovery)
                return -ENODEV;
        /* The kernel connects the DSM, for all the functions it speaks for; they have no tsm/. */
        if (d->dsm_address)
                return -EXDEV;
        if (tsm && !inventory_get_tsm(p->inventory, tsm))
                return -ENXIO;
        /* One change of a device's connection at a time: the second would race the first in
         * the kernel, and could not tell what it changes. */
        if (is_connecting(p, d->address))
                return -EBUSY;
        *ret = d;
        return 0;
}

int tsm_platform_connect(TsmPlatform *p, const char *pci_address, const char *tsm, TsmRequestCallback cb,
                         void *userdata, TsmRequest **ret) {
        const InventoryDevice *d;
        int r;

        assert(p);
        assert(tsm);
        assert(cb);

        r = connectable_device(p, pci_address, tsm, &d);
        if (r < 0)
                return r;
        if (d->connected_tsm && !streq(d->connected_tsm, tsm))
                return -EBUSY;
        return set_connected(p, d, TSM_OP_CONNECT, d->connected_tsm ? NULL : tsm, cb, userdata, ret);
}

int tsm_platform_disconnect(TsmPlatform *p, const char *pci_address, TsmRequestCallback cb, void *userdata,
                            TsmRequest **ret) {
        const InventoryDevice *d;
        int r;

        assert(p);
        assert(cb);

        r = connectable_device(p, pci_address, NULL, &d);
        if (r < 0)
                return r;
        /* What the kernel is told: the TSM to disconnect from. */
        return set_connected(p, d, TSM_OP_DISCONNECT, d->connected_tsm, cb, userdata, ret);
}

int tsm_platform_get_connection(TsmPlatform *p, const char *pci_address, const char *tsm, TsmDeviceInfo *ret) {
        const InventoryDevice *d;
        const InventoryTsm *t;

        assert(p);
        assert(pci_address);
        assert(ret);

        d = inventory_get_device(p->inventory, pci_address);
        if (!d || !d->tdisp_capable)
                return -ENODEV;
        if (d->dsm_address)
                return -EXDEV;
        if (tsm) {
                t = inventory_get_tsm(p->inventory, tsm);
                if (!t)
                        return -ENXIO;
        } else {
                if (!d->connected_tsm)
                        return -ENOTCONN;
                t = inventory_get_tsm(p->inventory, d->connected_tsm);
        }

        *ret = (TsmDeviceInfo){
                .pci_address = d->address,
                .tsm = t ? t->name : d->connected_tsm,
                .backend = t ? t->type : _TSM_BACKEND_TYPE_INVALID,
                .uapi = p->uapi >= 0 ? (TsmUapiVersion) p->uapi : _TSM_UAPI_VERSION_INVALID,
        };
        return 0;
}

typedef struct SaveHeld {
        TsmPlatform *platform;
        EmuStateHeld held;
        void *userdata;
} SaveHeld;

/* Before the restore is done (stopped before the worker was ready), what came back from the last
 * snapshot and nothing holds yet is kept as it came: its vDevice may not be attached again yet. */
static bool save_held(const char *pci_address, bool *ret_bound, void *userdata) {
        SaveHeld *s = userdata;
        EmuDevice *d;

        if (s->held(pci_address, ret_bound, s->userdata))
                return true;
        if (!s->platform->emu_loaded)
                return false;
        d = emu_platform_find_device(s->platform->emu, pci_address);
        *ret_bound = d && emu_tsm_holds_binding(s->platform->emu_tsm, d);
        return true;
}

int tsm_platform_save_emulated(TsmPlatform *p, EmuStateHeld held, void *userdata, int *ret_fd, size_t *ret_n) {
        SaveHeld s = { .platform = p, .held = held, .userdata = userdata };

        if (!p->emu || p->view)
                return -EOPNOTSUPP;
        return emu_state_save(p->emu, p->emu_tsm, save_held, &s, ret_fd, ret_n);
}

int tsm_platform_load_emulated(TsmPlatform *p, int fd, size_t *ret_n) {
        int r;

        if (!p->emu || p->view)
                return -EOPNOTSUPP;
        r = emu_state_load(p->emu, p->emu_tsm, fd, ret_n);
        if (r >= 0)
                p->emu_loaded = true;
        return r;
}

void tsm_platform_emulated_restored(TsmPlatform *p, EmuStateHeld held, void *userdata) {
        bool bound;

        if (!p->emu_loaded)
                return;
        p->emu_loaded = false;
        for (size_t i = 0; i < emu_platform_get_n_devices(p->emu); i++) {
                EmuDevice *d = emu_platform_get_device(p->emu, i);
                const char *address = emu_device_get_address(d);
                int r;

                /* SECURITY: what its guest left in it must not reach the next one. */
                if (held(address, &bound, userdata) || emu_device_get_exchange(d) ||
                    (emu_device_is_clean(d) && !emu_tsm_holds_nonce(p->emu_tsm, d)))
                        continue;
                log_notice("Emulated device %s came back with its state, but no vDevice holds it any more; "
                           "releasing it.", address);
                r = emu_tsm_release(p->emu_tsm, d);
                if (r < 0)
                        log_warning_errno(r, "Failed to release emulated device %s: %m", address);
        }
}

bool tsm_platform_needs_release(TsmPlatform *p, const char *pci_address) {
        EmuDevice *d = p->emu ? emu_platform_find_device(p->emu, pci_address) : NULL;
        const TsmRequest *r;

        if (!d)
                return false;
        if (!emu_device_is_clean(d))
                return true;
        /* The exchange under way still takes effect: it may lock the TDI or write its memory. */
        r = emu_device_get_exchange(d);
        return r && (r->op != TSM_OP_REQUEST || r->emu_scope == EMU_SCOPE_STATE_CHANGE ||
                     r->emu_scope == EMU_SCOPE_DEBUG_WRITE);
}

bool tsm_platform_is_changing(TsmPlatform *p, const char *pci_address) {
        TsmRequest *r;

        TAILQ_FOREACH(r, &p->requests, entry)
                if (r->op != TSM_OP_REQUEST && !r->completed && streq(r->pci_address, pci_address))
                        return true;
        return false;
}

int tsm_platform_request(TsmPlatform *p, const TsmTarget *t, const char *scope, const void *req,
                         size_t req_len, size_t max_response, TsmRequestCallback cb, void *userdata,
                         TsmRequest **ret) {
        const TsmScopeDesc *desc = NULL;
        TsmDeviceInfo info;
        TsmRequest *r;
        uint32_t number;
        int k;

        assert(p);
        assert(t);
        assert(cb);

        if (p->view)
                return -EPERM;
        k = tsm_platform_get_device(p, t->pci_address, &info);
        if (k < 0)
                return k;
        k = device_scope(p, &info, scope, &desc, &number);
        if (k < 0)
                return k;
        if (req_len > desc->max_request)
                return -E2BIG;

        k = request_new(p, info.pci_address, cb, userdata, &r);
        if (k < 0)
                return k;
        r->response_size = MIN(max_response, (size_t) desc->max_response);

        if (info.emulated) {
                /* The device answers later, from the timer: keep the request until then. */
                r->request = malloc(MAX(req_len, (size_t) 1));
                r->response = malloc(MAX(r->response_size, (size_t) 1));
                if (!r->request || !r->response) {
                        tsm_request_cancel(r);
                        return -ENOMEM;
                }
                memcpy(r->request, req, req_len);
                r->request_len = req_len;
                r->emu_scope = (EmuScope) number; /* v5 numbering equals EmuScope */
                /* Whichever comes first: the device's answer, or the deadline. */
                r->deadline_usec = now_monotonic_usec() + p->config.request_timeout_usec;
                emu_submit(r, emu_platform_find_device(p->emu, t->pci_address));
        } else {
                KernelCallArgs args = {
                        .op = KERNEL_OP_REQUEST,
                        .iommufd = t->iommufd,
                        .version = info.uapi,
                        .vdevice_id = t->vdevice_id,
                        .scope_number = number,
                        .request = req, /* the call keeps a copy, and the response buffer */
                        .request_len = req_len,
                        .response_size = r->response_size,
                };

                /* Whichever comes first: the kernel's answer, or the deadline. */
                r->deadline_usec = now_monotonic_usec() + p->config.request_timeout_usec;
                k = request_submit(r, &args);
                if (k < 0) {
                        tsm_request_cancel(r);
                        return k;
                }
                request_schedule(r, usec_until(r->deadline_usec));
        }

        if (ret)
                *ret = r;
        return 0;
}

void tsm_platform_set_late_callback(TsmPlatform *p, TsmPlatformLate cb, void *userdata) {
        p->late_callback = cb;
        p->late_userdata = userdata;
}

void tsm_request_set_late_tag(TsmRequest *r, const void *tag, size_t size) {
        assert(size <= KERNEL_LATE_TAG_MAX);
        r->late_tag = tag;
        r->late_tag_size = size;
}

bool tsm_request_answers_late(const TsmRequest *r) {
        return r->answers_late;
}

void tsm_request_cancel(TsmRequest *r) {
        if (!r)
                return;
        /* First, while r is listed still, as the answer goes on without it. */
        request_abandon_call(r);
        request_unlink(r);
        request_free(r);
}

bool tsm_request_cancel_unstarted(TsmRequest *r) {
        if (!r || r->completed || r->serving)
                return false;
        if (r->emu) {
                if (!r->waiting)
                        return false;
        } else if (!kernel_call_cancel_queued(r->call))
                return false;
        else
                r->call = NULL;
        request_unlink(r);
        request_free(r);
        return true;
}

const void *tsm_request_get_response(const TsmRequest *r, size_t *ret_len) {
        *ret_len = r->response_len;
        return r->response;
}

size_t tsm_request_get_request_unconsumed(const TsmRequest *r) {
        return r->request_unconsumed;
}

const char *tsm_request_get_pci_address(const TsmRequest *r) {
        return r->pci_address;
}
