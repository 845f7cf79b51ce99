/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The platform inventory: which TSMs exist (/sys/class/tsm/tsmN and their backend type) and
 * which PCI devices exist with their TDISP capability and TSM connection. Discovery fills it;
 * the rest of tsmd reads it and registers watchers to react to changes (for example to fail
 * in-flight requests to a device that vanished). Objects are kept sorted by key, so
 * iteration order is stable and lookups are O(log n).
 *
 * Runs in: monitor and worker, next to discovery.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsm-priv.h"
#include "tsm-types.h"

typedef struct Inventory Inventory;

typedef struct InventoryTsm {
        char *name;             /* sysfs name, "tsm0" */
        char *syspath;          /* /sys/devices/.../tsm/tsm0 */
        TsmBackendType type;    /* _TSM_BACKEND_TYPE_INVALID if the parent is not recognised */
        char *parent_syspath;   /* platform device the TSM hangs off; NULL if none */
        char *parent_subsystem; /* "pci", "faux", ...; NULL if unknown */
        char *parent_driver;    /* "ccp", "faux_driver", ...; NULL if unbound */
        char *parent_sysname;   /* "0000:00:18.2", "tdx_host", ... */
        char *pci_mode;         /* "link" / "devsec"; NULL when the attribute is absent */
} InventoryTsm;

typedef struct InventoryDevice {
        char *address;       /* PCI address "DDDD:BB:DD.F" (domain may have 5+ hex digits) */
        char *syspath;
        char *driver;        /* bound driver or NULL */
        uint16_t vendor_id;
        uint16_t device_id;
        uint32_t class_code; /* 24-bit class/subclass/prog-if */
        /* A TDI tsmd can route: it has a tsm/ directory (it is a DSM, or one manages it), or its
         * DSM does. */
        bool tdisp_capable;
        /* The DSM that speaks for it when that is another function (its tsm/dsm where the kernel
         * shows one; else function 0 of its slot, for a VF its PF's, or the switch upstream port
         * above it: SYSFS.md), NULL if it is its own DSM or has none. Only a DSM is connected or
         * disconnected. */
        char *dsm_address;
        /* Its DSM's tsm/connect contents (its own, for a DSM): NULL when empty or tsm/ absent. */
        char *connected_tsm;
        /* Its own attribute: -1 absent (older kernels show it on a DSM only), 0 no, 1 yes. */
        int authenticated;
        /* Its tsm/bound (the TSM name while a TDI of it is bound, else empty): -1 absent (older
         * kernels; a DSM without TEE, or a function no DSM manages), 0 empty, 1 bound. */
        int bound;
        /* The inode of its sysfs directory, the kernel's object for this pci_dev (0 unknown):
         * a device removed and another added at its address has another, however alike. */
        uint64_t instance;
} InventoryDevice;

typedef enum InventoryEventType {
        INVENTORY_TSM_ADDED,
        INVENTORY_TSM_REMOVED,
        INVENTORY_TSM_CHANGED,
        INVENTORY_DEVICE_ADDED,
        INVENTORY_DEVICE_REMOVED,
        INVENTORY_DEVICE_CHANGED,
        _INVENTORY_EVENT_TYPE_MAX,
        _INVENTORY_EVENT_TYPE_INVALID = -EINVAL,
} InventoryEventType;

const char *inventory_event_type_to_string(InventoryEventType t);
InventoryEventType inventory_event_type_from_string(const char *s);

/* What differs in a *_CHANGED event (bit mask). */
enum {
        INVENTORY_CHANGE_SYSPATH = 1U << 0,
        INVENTORY_CHANGE_TYPE = 1U << 1,       /* TSM backend type / parent */
        INVENTORY_CHANGE_PCI_MODE = 1U << 2,
        INVENTORY_CHANGE_IDS = 1U << 3,        /* vendor/device/class */
        INVENTORY_CHANGE_DRIVER = 1U << 4,
        INVENTORY_CHANGE_TDISP = 1U << 5,      /* tsm/ appeared or vanished */
        INVENTORY_CHANGE_CONNECT = 1U << 6,    /* tsm/connect */
        INVENTORY_CHANGE_AUTH = 1U << 7,       /* authenticated */
        INVENTORY_CHANGE_DSM = 1U << 8,        /* another DSM speaks for it */
        INVENTORY_CHANGE_BOUND = 1U << 9,      /* tsm/bound */
};

typedef struct InventoryEvent {
        InventoryEventType type;
        const InventoryTsm *tsm;       /* set for TSM events */
        const InventoryDevice *device; /* set for device events */
        const InventoryDevice *old_device; /* DEVICE_CHANGED: the device as it was */
        unsigned changes;              /* INVENTORY_CHANGE_* for *_CHANGED, else 0 */
} InventoryEvent;

/*
 * Called synchronously from the mutating call, after the change (for REMOVED: with the object
 * that is about to be freed; do not keep the pointer). Callbacks must not modify the
 * inventory.
 */
typedef void (*inventory_watch_cb_t)(Inventory *inv, const InventoryEvent *ev, void *userdata);
typedef void (*inventory_destroy_cb_t)(void *userdata);

int inventory_new(Inventory **ret);
/* Frees everything; watchers' destroy callbacks run once each. No events are emitted. */
Inventory *inventory_free(Inventory *inv);

/* Registers a watcher for the inventory's life; destroy (may be NULL) runs once, at
 * inventory_free(). */
int inventory_add_watch(Inventory *inv, inventory_watch_cb_t cb, void *userdata, inventory_destroy_cb_t destroy);

size_t inventory_n_tsms(const Inventory *inv);
size_t inventory_n_devices(const Inventory *inv);
/* Iteration in key order; NULL past the end. Pointers stay valid until the next mutation. */
const InventoryTsm *inventory_tsm_at(const Inventory *inv, size_t i);
const InventoryDevice *inventory_device_at(const Inventory *inv, size_t i);
/* Lookups; NULL if not present. */
const InventoryTsm *inventory_get_tsm(const Inventory *inv, const char *name);
const InventoryDevice *inventory_get_device(const Inventory *inv, const char *address);

/* The TSM a device is connected to (through its DSM), or NULL when not connected or that TSM is
 * unknown. */
const InventoryTsm *inventory_device_get_tsm(const Inventory *inv, const InventoryDevice *d);

/*
 * The number for an ioctl carrying a request in scope scope_name to the device at address:
 * device -> the TSM it is connected to -> that TSM's backend -> that backend's own table.
 * Returns 0 and writes *ret, or
 *   -ENODEV     no such device (Varlink: NoSuchDevice);
 *   -ENOTCONN   the device is not connected to any TSM;
 *   -ENXIO      the TSM it names is not known, or its backend was not recognised;
 *   otherwise the errors of tsm_backend_scope_number() (-ENOENT NoSuchScope, -EOPNOTSUPP).
 */
int inventory_device_scope_number(const Inventory *inv, const char *address,
                                  const char *scope_name, TsmUapiVersion v, uint32_t *ret);

/*
 * Insert or update from a caller-owned description (deep-copied). Emits *_ADDED, or
 * *_CHANGED with the differing fields; returns 1 if something was emitted, 0 if the stored
 * object was already identical. -EINVAL if the key (name/address) is missing or malformed.
 */
int inventory_put_tsm(Inventory *inv, const InventoryTsm *t);
int inventory_put_device(Inventory *inv, const InventoryDevice *d);

/* Remove and emit *_REMOVED. -ENOENT if not present. */
int inventory_remove_tsm(Inventory *inv, const char *name);
int inventory_remove_device(Inventory *inv, const char *address);

/*
 * Mark-and-sweep for full rescans: sync_begin starts a generation, every put marks its object
 * as seen, sync_end removes (with *_REMOVED events) the objects of the selected kinds that
 * were not put since sync_begin.
 */
enum {
        INVENTORY_SYNC_TSMS = 1U << 0,
        INVENTORY_SYNC_DEVICES = 1U << 1,
};
void inventory_sync_begin(Inventory *inv);
void inventory_sync_end(Inventory *inv, unsigned kinds);
/* Marks a device seen as it is (it could not be read this time, which is not proof that it is
 * gone). -ENOENT if not present. */
int inventory_keep_device(Inventory *inv, const char *address);
/* The same for a TSM. */
int inventory_keep_tsm(Inventory *inv, const char *name);

/* The longest PCI address tsmd serves, NUL not counted: as long as the monitor's channel carries
 * one (TSM_PRIV_PCI_ADDRESS_MAX), a domain of 7 hex digits at most. */
#define PCI_ADDRESS_LEN_MAX (TSM_PRIV_PCI_ADDRESS_MAX - 1U)

/* Whether d is a DSM: it has its own tsm/ directory, through which it is connected. */
bool inventory_device_is_dsm(const InventoryDevice *d);

/* Syntax check of a PCI address as the kernel names devices: "%04x:%02x:%02x.%d" (domain may be
 * longer than four digits, e.g. the devsec sample's 10000:). Lowercase hex only, and at most
 * PCI_ADDRESS_LEN_MAX characters. */
bool pci_address_is_valid(const char *s);
/* A TSM's name as the kernel gives it: "tsm" and a number. */
bool tsm_name_is_valid(const char *s);
/* Whether s is a PCI address as the kernel names devices (a domain of up to 8 digits) that is
 * longer than tsmd serves: discovery skips such a device, and says so. */
bool pci_address_is_too_long(const char *s);

void inventory_tsm_done(InventoryTsm *t);
void inventory_device_done(InventoryDevice *d);
