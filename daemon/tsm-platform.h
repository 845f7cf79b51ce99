/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The TSM platform as the rest of tsmd sees it: which backends exist (discovered in sysfs,
 * or the built-in emulated platform when there is no TSM), which devices they serve, and the
 * router that sends a guest request to the right backend with the scope number of *that*
 * backend. Runs in: monitor (everything) and worker (a view: discovery and the device
 * catalogue only; every operation goes to the monitor, see priv-call.h).
 */
#pragma once

#include <event2/event.h>

#include "emu-platform.h"
#include "emu-state.h"
#include "inventory.h"
#include "kernel-lanes.h"
#include "tsm-types.h"

typedef enum TsmPlatformMode {
        TSM_PLATFORM_AUTO,     /* the kernel's TSMs if any, else the emulated platform */
        TSM_PLATFORM_KERNEL,   /* only what sysfs shows */
        TSM_PLATFORM_EMULATED, /* only the emulated platform */
        _TSM_PLATFORM_MODE_MAX,
        _TSM_PLATFORM_MODE_INVALID = -EINVAL,
} TsmPlatformMode;

const char *tsm_platform_mode_to_string(TsmPlatformMode m);
TsmPlatformMode tsm_platform_mode_from_string(const char *s);

#define EMULATED_TSM_NAME "emu0"

/* How long a guest request may wait for its backend's answer, unless configured. */
#define TSM_REQUEST_TIMEOUT_USEC_DEFAULT (30ULL * 1000000ULL)
/* Requests that time out are logged at most this often (the VMM gets Timeout for each). */
#define TSM_TIMEOUT_LOG_BURST 10U
#define TSM_TIMEOUT_LOG_INTERVAL_USEC (10ULL * 1000000ULL)

typedef struct TsmPlatformConfig {
        TsmPlatformMode mode;
        char *iommu_device;      /* /dev/iommu */
        char *emulated_devices;  /* emu-config syntax; NULL: the default set */
        uint64_t emulated_latency_usec; /* how long an emulated TDISP exchange takes; a device
                                         * takes one at a time, in order */
        /* The emulated TSM serves guest requests in the debug scopes, which mainline kernels
         * refuse (EINVAL): for the emulator's debug protocol and the large-payload benchmarks. */
        bool emulated_debug_scopes;
        /* A backend that never answers must not hold a VMM's call forever: a request still
         * unanswered after this long fails with -ETIMEDOUT. 0: the default. */
        uint64_t request_timeout_usec;
} TsmPlatformConfig;

typedef struct TsmPlatform TsmPlatform;

/* Where a request goes: the physical device and, for the kernel, the VMM's iommufd + vDevice. */
typedef struct TsmTarget {
        const char *pci_address;
        int iommufd;
        uint32_t vdevice_id;
} TsmTarget;

/* What tsmd knows about one device it can route to. Pointers are valid until the next
 * change of the platform (the caller copies what it keeps). */
typedef struct TsmDeviceInfo {
        const char *pci_address;
        const char *tsm;        /* "tsm0", "emu0" */
        TsmBackendType backend;
        bool emulated;
        TsmUapiVersion uapi;    /* for kernel backends */
} TsmDeviceInfo;

/* Device and backend changes, for the Guest layer (events, failing in-flight requests). */
typedef void (*TsmPlatformDeviceGone)(TsmPlatform *p, const char *pci_address, void *userdata);

int tsm_platform_new(struct event_base *base, const TsmPlatformConfig *config, TsmPlatform **ret);
/* The worker's view of the monitor's platform: the same discovery, and the emulated devices as
 * a catalogue if the monitor serves them; no kernel probing (uapi is what the monitor found, or
 * its -errno) and no operations (bind, unbind, state, requests, connect: -EPERM). */
int tsm_platform_new_view(struct event_base *base, const TsmPlatformConfig *config, bool emulated, int uapi,
                          TsmPlatform **ret);
TsmPlatform *tsm_platform_free(TsmPlatform *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(TsmPlatform *, tsm_platform_free);

void tsm_platform_set_device_gone_callback(TsmPlatform *p, TsmPlatformDeviceGone cb, void *userdata);
/* The kernel no longer has a TDI of a device its TSM serves bound (its tsm/bound, set at the
 * last scan, is empty now, or empty still at the look after tsmd's own bind: SYSFS.md), and no bind, unbind, release, connect or disconnect of
 * tsmd's is on its way on it: ended outside tsmd (a disconnect by another tool, perhaps followed
 * by a connect), or tsmd's own unbind, done, that the scan only reflects. The callback tells by
 * its own record of what is bound. Not for emulated devices. */
typedef void (*TsmPlatformDeviceUnbound)(TsmPlatform *p, const char *pci_address, void *userdata);
void tsm_platform_set_device_unbound_callback(TsmPlatform *p, TsmPlatformDeviceUnbound cb, void *userdata);

/* Applies a new emulated device list (on reload): devices no longer listed vanish (their
 * in-flight requests fail with -ENODEV), new ones appear, and those that stay get the fault
 * the list names for them, or none (emu-config.h). */
int tsm_platform_set_emulated_devices(TsmPlatform *p, const char *devices);

bool tsm_platform_is_emulated(const TsmPlatform *p);
const char *tsm_platform_get_iommu_device(const TsmPlatform *p);
Inventory *tsm_platform_get_inventory(TsmPlatform *p);
EmuPlatform *tsm_platform_get_emulated(TsmPlatform *p);
/* The UAPI the kernel speaks, or -EOPNOTSUPP if it has no TSM ioctls. */
int tsm_platform_get_uapi(const TsmPlatform *p, TsmUapiVersion *ret);

/* -ENODEV if tsmd knows no TSM-served device at that address, -ENXIO if it is not connected
 * to a TSM tsmd recognises. */
int tsm_platform_get_device(TsmPlatform *p, const char *pci_address, TsmDeviceInfo *ret);

/* The number to put into the kernel request for scope on a device (as tsm_platform_get_device()
 * describes it): the only way a scope number is ever made. -ENOENT unknown scope for the
 * backend, -EOPNOTSUPP not in this UAPI. */
int tsm_platform_scope_number(TsmPlatform *p, const TsmDeviceInfo *device, const char *scope, uint32_t *ret);
/* Whether this tsmd has scope served on device at all: not the emulated platform's debug scopes
 * unless emulated_debug_scopes (its TSM refuses them, -EINVAL, as mainline kernels do). A kernel
 * TSM's scopes all are: which of them its kernel refuses, tsmd cannot tell (mainline's refuses
 * the debug scopes today). */
bool tsm_platform_serves_scope(TsmPlatform *p, const TsmDeviceInfo *device, const char *scope);


/* The TDI state, if the backend lets tsmd see it (-EOPNOTSUPP otherwise). */
int tsm_platform_get_state(TsmPlatform *p, const TsmTarget *t, int *ret_tdisp_state);

/* One guest request in flight. The callback runs exactly once from the event loop (never
 * from inside tsm_platform_request()), unless the request is cancelled first: with the
 * backend's result, or -ETIMEDOUT when the backend has not answered within the request
 * timeout (-ENODEV at once if the device goes away first). A device takes its calls one at a
 * time, in order, and the time a request waits for its turn counts: a kernel request runs on
 * its device's lane (kernel-lanes.h), where one that times out is left to finish, unanswered;
 * an emulated device works like its DOE mailbox would. A TDI the host has not bound (or has
 * unbound) is refused with -ENXIO, as the kernel's pci_tsm_guest_req() refuses it: by the
 * emulated TSM when the request's turn comes, so that a bind made before it counts, as on a
 * kernel lane; so are, with -EINVAL, a debug scope it does not serve (emulated_debug_scopes) and a
 * message its scope does not carry (emu_tsm_check_request()), all at once, taking no exchange
 * with the device (no emulated latency). */
typedef struct TsmRequest TsmRequest;
typedef void (*TsmRequestCallback)(TsmRequest *r, int result, void *userdata);

int tsm_platform_request(TsmPlatform *p, const TsmTarget *t, const char *scope, const void *req,
                         size_t req_len, size_t max_response, TsmRequestCallback cb, void *userdata,
                         TsmRequest **ret);
/* TDISP lifecycle: bind (lock the TDI, for the guest to accept it) or unbind (stop it), by the
 * kernel's TSM or the emulated one. The TSM keeps the START_INTERFACE nonce of its lock and
 * completes the guest's START with it (for the emulated TSM: emu-tsm.h). Asynchronous like a guest request, and for a kernel device
 * on the same lane, after the calls made to the device before: a bind is an SPDM exchange too.
 * The callback runs as for a request, with the result, or -ENODEV at once if the device goes
 * away first, but with no deadline: what the TDI is afterwards must be known, so the answer
 * is awaited however late (the kernel's own SPDM timeouts bound it). Cancelling drops the
 * callback; a call still queued for its device never runs, one the kernel has started still
 * takes effect. */
int tsm_platform_bind(TsmPlatform *p, const TsmTarget *t, TsmRequestCallback cb, void *userdata, TsmRequest **ret);
int tsm_platform_unbind(TsmPlatform *p, const TsmTarget *t, TsmRequestCallback cb, void *userdata,
                        TsmRequest **ret);
/* Its guest lets the device go: an unbind, as above, except that an emulated TDI also goes back
 * to CONFIG_UNLOCKED (its memory scrubbed, its debug registers reset) when tsmd never bound it,
 * as after the guest locked or started it itself (scope state-change): the next guest gets
 * nothing of this one's.
 * A kernel TSM keeps its own TDI state through vDevice destruction. */
int tsm_platform_release(TsmPlatform *p, const TsmTarget *t, TsmRequestCallback cb, void *userdata,
                         TsmRequest **ret);
/* tsmd's own bind (bind true), unbind or release of the kernel device at pci_address succeeded,
 * and the caller's record of its vDevice says so already: the kernel announces neither a binding
 * nor its end, so the device is looked at again (its tsm/bound, SYSFS.md), for the next rescan
 * to tell the end of this binding. Read empty still after the bind, the binding ended already,
 * outside tsmd: told then as a rescan tells it (TsmPlatformDeviceUnbound), on the same terms.
 * A platform runs it itself once the callback of its own bind, unbind or release returned; the
 * worker's view, which binds nothing, at the monitor's answer. Nothing for an emulated device
 * (not in sysfs); a look that fails is logged (debug) and the next rescan looks again. */
void tsm_platform_refresh_binding(TsmPlatform *p, const char *pci_address, bool bind);

/* Whether a bind, unbind, connect or disconnect of the device is still on its way (the TSM
 * has not answered). */
bool tsm_platform_is_changing(TsmPlatform *p, const char *pci_address);
/* Whether tsm_platform_release() of a device tsmd did not bind has anything to do: only for an
 * emulated device its guest locked, wrote to, or is exchanging messages with. */
bool tsm_platform_needs_release(TsmPlatform *p, const char *pci_address);

/* The emulated devices across a restart of tsmd (emu-state.h), in the monitor: their state into
 * a sealed memfd (0 and -EBADF if none held by a vDevice has any; held says which are held, and
 * bound); back from one at the next start, before the worker restores contexts (-EOPNOTSUPP if
 * the platform is not emulated, else as emu_state_load()); and once the restore is done (the
 * worker's READY), the devices that came back but no vDevice holds again (their context or
 * vDevice was not restored) are released, as their vDevice's end would have: nothing of their
 * guest is left for the next. Only after a load, once; a stop before that saves what came back
 * and nothing holds yet as it came. */
int tsm_platform_save_emulated(TsmPlatform *p, EmuStateHeld held, void *userdata, int *ret_fd, size_t *ret_n);
int tsm_platform_load_emulated(TsmPlatform *p, int fd, size_t *ret_n);
void tsm_platform_emulated_restored(TsmPlatform *p, EmuStateHeld held, void *userdata);

/* Connects a TDISP-capable device to a TSM or disconnects it, through the PCI TSM sysfs ABI
 * (tsm/connect, tsm/disconnect): a DSM, and with it the functions it speaks for (their
 * inventory entries are looked at again too). Kernel devices only. At once: -ENODEV unknown or
 * not TDISP capable, -EXDEV a function whose DSM is another (InventoryDevice.dsm_address), -ENXIO
 * unknown TSM, -EBUSY connected to another TSM, or a connect or disconnect of
 * the device on its way. The kernel does the work inside the write (an SPDM session and IDE
 * key setup through the device's DOE mailbox: seconds), so the write runs on the device's lane
 * (kernel-lanes.h), after the calls made to the device before, and completes like a bind: no
 * deadline, as which TSM a device is connected to must be known (the kernel's own SPDM
 * timeouts bound it), and the callback runs with 0 or the write's error, or -ENODEV at once if
 * the device goes away first. Before it does, the device is looked at again (connecting sends
 * no uevent). A device connected to that TSM already, or a disconnected one disconnected,
 * completes with 0 without a write. Meanwhile the device counts as changing. */
int tsm_platform_connect(TsmPlatform *p, const char *pci_address, const char *tsm, TsmRequestCallback cb,
                         void *userdata, TsmRequest **ret);
int tsm_platform_disconnect(TsmPlatform *p, const char *pci_address, TsmRequestCallback cb, void *userdata,
                            TsmRequest **ret);
/* The connection a connect to tsm (NULL: a disconnect) would change, for the policy's say on it:
 * the device (its pci_address as the inventory spells it) and the TSM the connection is with,
 * tsm or the one the device is connected to, with that TSM's backend (_TSM_BACKEND_TYPE_INVALID
 * for a TSM of a kind tsmd does not recognise, or gone from the inventory). Kernel devices only,
 * in the worker's view too. -ENODEV, -EXDEV and -ENXIO as tsm_platform_connect() refuses;
 * -ENOTCONN a disconnect of a device connected to no TSM, which writes nothing. */
int tsm_platform_get_connection(TsmPlatform *p, const char *pci_address, const char *tsm, TsmDeviceInfo *ret);
/* Looks at a device in sysfs again (after the monitor connected or disconnected it). */
int tsm_platform_refresh_device(TsmPlatform *p, const char *pci_address);

/* A kernel call whose request was given up on (timed out, its device gone, cancelled) while the
 * kernel ran it, as the kernel answered after all (kernel-lanes.h): late->tag is what the
 * request's caller set with tsm_request_set_late_tag(); also a call cancelled once the kernel
 * had answered it, its callback not run yet. Not for calls that never reached the kernel, nor
 * for those answered in time. */
typedef void (*TsmPlatformLate)(TsmPlatform *p, const KernelLate *late, void *userdata);
void tsm_platform_set_late_callback(TsmPlatform *p, TsmPlatformLate cb, void *userdata);
/* What names r's caller in a late answer: size bytes (at most KERNEL_LATE_TAG_MAX) at tag, the
 * caller's, read (and copied, only if r's kernel call is given up on in the kernel) until r's
 * callback runs or r is cancelled. */
void tsm_request_set_late_tag(TsmRequest *r, const void *tag, size_t size);
/* In r's callback: whether its kernel call was given up on while the kernel had it (its device
 * went, its deadline passed), so that what the kernel did comes to the late callback when it
 * returns, not in the callback's result. */
bool tsm_request_answers_late(const TsmRequest *r);

/* Drops a request whose caller went away; its callback will not run. One whose kernel call was
 * answered already (its callback due) hands that answer to the late callback, as a call given up
 * on in the kernel does: what the device did is told all the same. */
void tsm_request_cancel(TsmRequest *r);
/* Cancels r if nothing started it yet: an emulated device's call still waiting its turn, or a
 * kernel call still queued on its lane. True then (r freed, its callback never runs); false
 * leaves r as it was: started (it runs to its end) or answered (its callback due). */
bool tsm_request_cancel_unstarted(TsmRequest *r);
const void *tsm_request_get_response(const TsmRequest *r, size_t *ret_len);
/* In the callback of a request that succeeded: the request bytes the kernel's TSM did not
 * consume, offered no response buffer (its residue); 0 otherwise, and on the emulated platform,
 * whose device takes the whole message or refuses it. */
size_t tsm_request_get_request_unconsumed(const TsmRequest *r);
const char *tsm_request_get_pci_address(const TsmRequest *r);
