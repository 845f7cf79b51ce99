/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The inventory model: sorted pointer arrays (bsearch lookups, memmove inserts; a few
 * thousand devices at most), deep copies in, change events out.
 *
 * Runs in: monitor and worker.
 */

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "inventory.h"
#include "macro.h"

typedef struct TsmEntry {
        InventoryTsm tsm;
        uint64_t generation;
} TsmEntry;

typedef struct DeviceEntry {
        InventoryDevice device;
        uint64_t generation;
} DeviceEntry;

typedef struct Watch {
        inventory_watch_cb_t cb;
        void *userdata;
        inventory_destroy_cb_t destroy;
} Watch;

struct Inventory {
        TsmEntry **tsms;
        size_t n_tsms, allocated_tsms;
        DeviceEntry **devices;
        size_t n_devices, allocated_devices;
        Watch *watches;
        size_t n_watches, allocated_watches;
        uint64_t generation;
};

static const char *const inventory_event_type_table[_INVENTORY_EVENT_TYPE_MAX] = {
        [INVENTORY_TSM_ADDED] = "tsm-added",
        [INVENTORY_TSM_REMOVED] = "tsm-removed",
        [INVENTORY_TSM_CHANGED] = "tsm-changed",
        [INVENTORY_DEVICE_ADDED] = "device-added",
        [INVENTORY_DEVICE_REMOVED] = "device-removed",
        [INVENTORY_DEVICE_CHANGED] = "device-changed",
};
DEFINE_STRING_TABLE_LOOKUP(inventory_event_type, InventoryEventType);

static bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return streq(a, b);
}

static int strdup_or_null(const char *s, char **ret) {
        char *c = NULL;

        if (s) {
                c = strdup(s);
                if (!c)
                        return -ENOMEM;
        }
        *ret = c;
        return 0;
}

void inventory_tsm_done(InventoryTsm *t) {
        if (!t)
                return;
        free(t->name);
        free(t->syspath);
        free(t->parent_syspath);
        free(t->parent_subsystem);
        free(t->parent_driver);
        free(t->parent_sysname);
        free(t->pci_mode);
        *t = (InventoryTsm) { .type = _TSM_BACKEND_TYPE_INVALID };
}

void inventory_device_done(InventoryDevice *d) {
        if (!d)
                return;
        free(d->address);
        free(d->syspath);
        free(d->driver);
        free(d->dsm_address);
        free(d->connected_tsm);
        *d = (InventoryDevice) { .authenticated = -1, .bound = -1 };
}

static int tsm_copy(const InventoryTsm *src, InventoryTsm *ret) {
        InventoryTsm t = { .type = src->type };

        if (strdup_or_null(src->name, &t.name) < 0 || strdup_or_null(src->syspath, &t.syspath) < 0 ||
            strdup_or_null(src->parent_syspath, &t.parent_syspath) < 0 ||
            strdup_or_null(src->parent_subsystem, &t.parent_subsystem) < 0 ||
            strdup_or_null(src->parent_driver, &t.parent_driver) < 0 ||
            strdup_or_null(src->parent_sysname, &t.parent_sysname) < 0 ||
            strdup_or_null(src->pci_mode, &t.pci_mode) < 0) {
                inventory_tsm_done(&t);
                return -ENOMEM;
        }

        *ret = t;
        return 0;
}

static int device_copy(const InventoryDevice *src, InventoryDevice *ret) {
        InventoryDevice d = {
                .vendor_id = src->vendor_id,
                .device_id = src->device_id,
                .class_code = src->class_code,
                .tdisp_capable = src->tdisp_capable,
                .authenticated = src->authenticated,
                .bound = src->bound,
                .instance = src->instance,
        };

        if (strdup_or_null(src->address, &d.address) < 0 ||
            strdup_or_null(src->syspath, &d.syspath) < 0 ||
            strdup_or_null(src->driver, &d.driver) < 0 ||
            strdup_or_null(src->dsm_address, &d.dsm_address) < 0 ||
            strdup_or_null(src->connected_tsm, &d.connected_tsm) < 0) {
                inventory_device_done(&d);
                return -ENOMEM;
        }

        *ret = d;
        return 0;
}

static unsigned tsm_diff(const InventoryTsm *a, const InventoryTsm *b) {
        unsigned c = 0;

        if (!streq_ptr(a->syspath, b->syspath))
                c |= INVENTORY_CHANGE_SYSPATH;
        if (a->type != b->type || !streq_ptr(a->parent_syspath, b->parent_syspath) ||
            !streq_ptr(a->parent_subsystem, b->parent_subsystem) ||
            !streq_ptr(a->parent_driver, b->parent_driver) ||
            !streq_ptr(a->parent_sysname, b->parent_sysname))
                c |= INVENTORY_CHANGE_TYPE;
        if (!streq_ptr(a->pci_mode, b->pci_mode))
                c |= INVENTORY_CHANGE_PCI_MODE;
        return c;
}

static unsigned device_diff(const InventoryDevice *a, const InventoryDevice *b) {
        unsigned c = 0;

        if (!streq_ptr(a->syspath, b->syspath))
                c |= INVENTORY_CHANGE_SYSPATH;
        if (a->vendor_id != b->vendor_id || a->device_id != b->device_id ||
            a->class_code != b->class_code)
                c |= INVENTORY_CHANGE_IDS;
        if (!streq_ptr(a->driver, b->driver))
                c |= INVENTORY_CHANGE_DRIVER;
        if (a->tdisp_capable != b->tdisp_capable)
                c |= INVENTORY_CHANGE_TDISP;
        if (!streq_ptr(a->dsm_address, b->dsm_address))
                c |= INVENTORY_CHANGE_DSM;
        if (!streq_ptr(a->connected_tsm, b->connected_tsm))
                c |= INVENTORY_CHANGE_CONNECT;
        if (a->authenticated != b->authenticated)
                c |= INVENTORY_CHANGE_AUTH;
        if (a->bound != b->bound)
                c |= INVENTORY_CHANGE_BOUND;
        return c;
}

int inventory_new(Inventory **ret) {
        Inventory *inv;

        assert_return(ret, -EINVAL);

        inv = new0(Inventory, 1);
        if (!inv)
                return -ENOMEM;

        *ret = inv;
        return 0;
}

static TsmEntry *tsm_entry_free(TsmEntry *e) {
        if (!e)
                return NULL;
        inventory_tsm_done(&e->tsm);
        return mfree(e);
}

static DeviceEntry *device_entry_free(DeviceEntry *e) {
        if (!e)
                return NULL;
        inventory_device_done(&e->device);
        return mfree(e);
}

Inventory *inventory_free(Inventory *inv) {
        if (!inv)
                return NULL;

        for (size_t i = 0; i < inv->n_watches; i++)
                if (inv->watches[i].destroy)
                        inv->watches[i].destroy(inv->watches[i].userdata);
        free(inv->watches);

        for (size_t i = 0; i < inv->n_tsms; i++)
                tsm_entry_free(inv->tsms[i]);
        free(inv->tsms);

        for (size_t i = 0; i < inv->n_devices; i++)
                device_entry_free(inv->devices[i]);
        free(inv->devices);

        return mfree(inv);
}

int inventory_add_watch(Inventory *inv, inventory_watch_cb_t cb, void *userdata, inventory_destroy_cb_t destroy) {
        assert_return(inv, -EINVAL);
        assert_return(cb, -EINVAL);

        if (!GREEDY_REALLOC(inv->watches, inv->allocated_watches, inv->n_watches + 1))
                return -ENOMEM;

        inv->watches[inv->n_watches++] = (Watch) {
                .cb = cb,
                .userdata = userdata,
                .destroy = destroy,
        };
        return 0;
}

static void emit_changed(Inventory *inv, InventoryEventType type, const InventoryTsm *t,
                         const InventoryDevice *d, const InventoryDevice *old_d, unsigned changes) {
        const InventoryEvent ev = {
                .type = type,
                .tsm = t,
                .device = d,
                .old_device = old_d,
                .changes = changes,
        };

        for (size_t i = 0; i < inv->n_watches; i++)
                inv->watches[i].cb(inv, &ev, inv->watches[i].userdata);
}

static void emit(Inventory *inv, InventoryEventType type, const InventoryTsm *t, const InventoryDevice *d,
                 unsigned changes) {
        emit_changed(inv, type, t, d, NULL, changes);
}

size_t inventory_n_tsms(const Inventory *inv) {
        return inv ? inv->n_tsms : 0;
}

size_t inventory_n_devices(const Inventory *inv) {
        return inv ? inv->n_devices : 0;
}

const InventoryTsm *inventory_tsm_at(const Inventory *inv, size_t i) {
        if (!inv || i >= inv->n_tsms)
                return NULL;
        return &inv->tsms[i]->tsm;
}

const InventoryDevice *inventory_device_at(const Inventory *inv, size_t i) {
        if (!inv || i >= inv->n_devices)
                return NULL;
        return &inv->devices[i]->device;
}

/*
 * TSM names sort naturally ("tsm2" before "tsm10") and PCI addresses by (domain, bus, dev,
 * fn), so listings come out in the order an administrator expects: runs of hex digits compare
 * by value (decimal digits are hex digits, so "tsm9" < "tsm10" holds too). Keys that are
 * numerically equal but spelled differently ("0000:" vs "00000:") fall back to strcmp(), so
 * the order stays total and only identical strings compare equal.
 */
static int natural_compare(const char *a0, const char *b0) {
        const char *a = a0, *b = b0;

        while (*a && *b) {
                if (isxdigit((unsigned char) *a) && isxdigit((unsigned char) *b)) {
                        const char *ea = a, *eb = b;

                        while (isxdigit((unsigned char) *ea))
                                ea++;
                        while (isxdigit((unsigned char) *eb))
                                eb++;
                        while (a < ea - 1 && *a == '0')
                                a++;
                        while (b < eb - 1 && *b == '0')
                                b++;
                        if (ea - a != eb - b)
                                return ea - a < eb - b ? -1 : 1;
                        for (; a < ea; a++, b++) {
                                int ca = tolower((unsigned char) *a), cb = tolower((unsigned char) *b);

                                if (ca != cb)
                                        return ca < cb ? -1 : 1;
                        }
                        continue;
                }
                if (*a != *b)
                        return (unsigned char) *a < (unsigned char) *b ? -1 : 1;
                a++;
                b++;
        }
        if (*a || *b)
                return *a ? 1 : -1;
        return strcmp(a0, b0);
}

/* Binary search; returns true and the index if found, else false and the insert position. */
#define DEFINE_BSEARCH(fname, entry_type, array, count, key_expr)                                  \
        static bool fname(const Inventory *inv, const char *key, size_t *ret_idx) {                \
                size_t lo = 0, hi = inv->count;                                                    \
                while (lo < hi) {                                                                  \
                        size_t mid = lo + (hi - lo) / 2;                                           \
                        const entry_type *e = inv->array[mid];                                     \
                        int c = natural_compare(key, key_expr);                                    \
                        if (c == 0) {                                                              \
                                *ret_idx = mid;                                                    \
                                return true;                                                       \
                        }                                                                          \
                        if (c < 0)                                                                 \
                                hi = mid;                                                          \
                        else                                                                       \
                                lo = mid + 1;                                                      \
                }                                                                                  \
                *ret_idx = lo;                                                                     \
                return false;                                                                      \
        }

DEFINE_BSEARCH(find_tsm, TsmEntry, tsms, n_tsms, e->tsm.name)
DEFINE_BSEARCH(find_device, DeviceEntry, devices, n_devices, e->device.address)

const InventoryTsm *inventory_get_tsm(const Inventory *inv, const char *name) {
        size_t i;

        if (!inv || !name || !find_tsm(inv, name, &i))
                return NULL;
        return &inv->tsms[i]->tsm;
}

const InventoryDevice *inventory_get_device(const Inventory *inv, const char *address) {
        size_t i;

        if (!inv || !address || !find_device(inv, address, &i))
                return NULL;
        return &inv->devices[i]->device;
}

bool inventory_device_is_dsm(const InventoryDevice *d) {
        return d && d->tdisp_capable && !d->dsm_address;
}

const InventoryTsm *inventory_device_get_tsm(const Inventory *inv, const InventoryDevice *d) {
        if (!d || !d->connected_tsm)
                return NULL;
        return inventory_get_tsm(inv, d->connected_tsm);
}

int inventory_device_scope_number(const Inventory *inv, const char *address,
                                  const char *scope_name, TsmUapiVersion v, uint32_t *ret) {
        const InventoryDevice *d;
        const InventoryTsm *t;
        const TsmBackendDesc *b;

        assert_return(inv, -EINVAL);
        assert_return(address, -EINVAL);
        assert_return(scope_name, -EINVAL);

        d = inventory_get_device(inv, address);
        if (!d)
                return -ENODEV;
        if (!d->connected_tsm)
                return -ENOTCONN;

        /* SECURITY: the table is chosen by the TSM this device is connected to, never by a
         * caller-supplied backend, so a number can only mean what that TSM understands. */
        t = inventory_get_tsm(inv, d->connected_tsm);
        if (!t)
                return -ENXIO;
        b = tsm_backend_desc(t->type);
        if (!b)
                return -ENXIO;

        return tsm_backend_scope_number(b, scope_name, v, ret);
}

bool tsm_name_is_valid(const char *s) {
        /* The kernel names them "tsm%d"; connect_store() parses exactly that. */
        if (!s || !strneq(s, "tsm", 3) || !isdigit((unsigned char) s[3]))
                return false;
        for (s += 3; *s; s++)
                if (!isdigit((unsigned char) *s))
                        return false;
        return true;
}

static bool hex_run(const char **p, size_t min, size_t max) {
        size_t n = 0;

        while (isxdigit((unsigned char) **p) && !isupper((unsigned char) **p)) {
                (*p)++;
                n++;
        }
        return n >= min && n <= max;
}

_Static_assert(TSM_PRIV_PCI_DOMAIN_DIGITS_MAX >= 5, "the devsec sample's domains (10000:) are served");

static bool pci_address_syntax(const char *s, size_t domain_digits_max) {
        if (!s)
                return false;
        /* Domain: at least 4 hex digits (emulated host bridges start at 0x10000, see SYSFS.md). */
        if (!hex_run(&s, 4, domain_digits_max) || *s++ != ':')
                return false;
        if (!hex_run(&s, 2, 2) || *s++ != ':')
                return false;
        if (!hex_run(&s, 2, 2) || *s++ != '.')
                return false;
        return *s >= '0' && *s <= '7' && s[1] == 0;
}

bool pci_address_is_valid(const char *s) {
        return pci_address_syntax(s, TSM_PRIV_PCI_DOMAIN_DIGITS_MAX);
}

bool pci_address_is_too_long(const char *s) {
        /* The kernel prints the domain, an int, in up to 8 digits. */
        return pci_address_syntax(s, 8) && !pci_address_is_valid(s);
}

int inventory_put_tsm(Inventory *inv, const InventoryTsm *t) {
        InventoryTsm copy;
        TsmEntry *e;
        unsigned changes;
        size_t i;
        int r;

        assert_return(inv, -EINVAL);
        assert_return(t, -EINVAL);
        assert_return(tsm_name_is_valid(t->name), -EINVAL);

        if (find_tsm(inv, t->name, &i)) {
                e = inv->tsms[i];
                e->generation = inv->generation;

                changes = tsm_diff(&e->tsm, t);
                if (changes == 0)
                        return 0;

                r = tsm_copy(t, &copy);
                if (r < 0)
                        return r;
                inventory_tsm_done(&e->tsm);
                e->tsm = copy;
                emit(inv, INVENTORY_TSM_CHANGED, &e->tsm, NULL, changes);
                return 1;
        }

        if (!GREEDY_REALLOC(inv->tsms, inv->allocated_tsms, inv->n_tsms + 1))
                return -ENOMEM;

        e = new0(TsmEntry, 1);
        if (!e)
                return -ENOMEM;
        r = tsm_copy(t, &e->tsm);
        if (r < 0) {
                free(e);
                return r;
        }
        e->generation = inv->generation;

        memmove(inv->tsms + i + 1, inv->tsms + i, (inv->n_tsms - i) * sizeof(TsmEntry *));
        inv->tsms[i] = e;
        inv->n_tsms++;

        emit(inv, INVENTORY_TSM_ADDED, &e->tsm, NULL, 0);
        return 1;
}

static void remove_device_at(Inventory *inv, size_t i);

static bool is_another_device(const InventoryDevice *known, const InventoryDevice *d) {
        return known->instance != 0 && d->instance != 0 && known->instance != d->instance;
}

int inventory_put_device(Inventory *inv, const InventoryDevice *d) {
        InventoryDevice copy, old_device;
        DeviceEntry *e;
        unsigned changes;
        size_t i;
        int r;

        assert_return(inv, -EINVAL);
        assert_return(d, -EINVAL);
        assert_return(pci_address_is_valid(d->address), -EINVAL);
        assert_return(d->authenticated >= -1 && d->authenticated <= 1, -EINVAL);
        assert_return(d->bound >= -1 && d->bound <= 1, -EINVAL);

        if (find_device(inv, d->address, &i) && is_another_device(&inv->devices[i]->device, d))
                /* Its "remove" missed (lost, or between two rescans without uevents): the
                 * device known goes, with what was attached to it, and this one comes. */
                remove_device_at(inv, i);
        else if (find_device(inv, d->address, &i)) {
                e = inv->devices[i];
                e->generation = inv->generation;

                changes = device_diff(&e->device, d);
                if (changes == 0)
                        return 0;

                r = device_copy(d, &copy);
                if (r < 0)
                        return r;
                old_device = e->device;
                e->device = copy;
                /* Watchers may need what it was: which backend served it, say. */
                emit_changed(inv, INVENTORY_DEVICE_CHANGED, NULL, &e->device, &old_device, changes);
                inventory_device_done(&old_device);
                return 1;
        }

        if (!GREEDY_REALLOC(inv->devices, inv->allocated_devices, inv->n_devices + 1))
                return -ENOMEM;

        e = new0(DeviceEntry, 1);
        if (!e)
                return -ENOMEM;
        r = device_copy(d, &e->device);
        if (r < 0) {
                free(e);
                return r;
        }
        e->generation = inv->generation;

        memmove(inv->devices + i + 1, inv->devices + i,
                (inv->n_devices - i) * sizeof(DeviceEntry *));
        inv->devices[i] = e;
        inv->n_devices++;

        emit(inv, INVENTORY_DEVICE_ADDED, NULL, &e->device, 0);
        return 1;
}

static void remove_tsm_at(Inventory *inv, size_t i) {
        TsmEntry *e = inv->tsms[i];

        memmove(inv->tsms + i, inv->tsms + i + 1, (inv->n_tsms - i - 1) * sizeof(TsmEntry *));
        inv->n_tsms--;

        /* Emitted after unlinking, so watchers looking the name up already see it gone. */
        emit(inv, INVENTORY_TSM_REMOVED, &e->tsm, NULL, 0);
        tsm_entry_free(e);
}

static void remove_device_at(Inventory *inv, size_t i) {
        DeviceEntry *e = inv->devices[i];

        memmove(inv->devices + i, inv->devices + i + 1,
                (inv->n_devices - i - 1) * sizeof(DeviceEntry *));
        inv->n_devices--;

        emit(inv, INVENTORY_DEVICE_REMOVED, NULL, &e->device, 0);
        device_entry_free(e);
}

int inventory_remove_tsm(Inventory *inv, const char *name) {
        size_t i;

        assert_return(inv, -EINVAL);
        assert_return(name, -EINVAL);

        if (!find_tsm(inv, name, &i))
                return -ENOENT;

        remove_tsm_at(inv, i);
        return 0;
}

int inventory_remove_device(Inventory *inv, const char *address) {
        size_t i;

        assert_return(inv, -EINVAL);
        assert_return(address, -EINVAL);

        if (!find_device(inv, address, &i))
                return -ENOENT;

        remove_device_at(inv, i);
        return 0;
}

int inventory_keep_device(Inventory *inv, const char *address) {
        size_t i;

        assert_return(inv, -EINVAL);
        assert_return(address, -EINVAL);

        if (!find_device(inv, address, &i))
                return -ENOENT;
        inv->devices[i]->generation = inv->generation;
        return 0;
}

int inventory_keep_tsm(Inventory *inv, const char *name) {
        size_t i;

        assert_return(inv, -EINVAL);
        assert_return(name, -EINVAL);

        if (!find_tsm(inv, name, &i))
                return -ENOENT;
        inv->tsms[i]->generation = inv->generation;
        return 0;
}

void inventory_sync_begin(Inventory *inv) {
        if (inv)
                inv->generation++;
}

void inventory_sync_end(Inventory *inv, unsigned kinds) {
        if (!inv)
                return;

        if (kinds & INVENTORY_SYNC_TSMS)
                for (size_t i = inv->n_tsms; i > 0; i--)
                        if (inv->tsms[i - 1]->generation != inv->generation)
                                remove_tsm_at(inv, i - 1);

        if (kinds & INVENTORY_SYNC_DEVICES)
                for (size_t i = inv->n_devices; i > 0; i--)
                        if (inv->devices[i - 1]->generation != inv->generation)
                                remove_device_at(inv, i - 1);
}
