/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The set of emulated devices: construction from a config string, lookup by PCI address,
 * hotplug. Devices keep the order they were configured in; an index sorted by address finds
 * one in O(log n), as every call to a device looks it up. Runs in: monitor and worker, tests.
 */

#include "emu-platform.h"

struct EmuPlatform {
        EmuDevice **devices;    /* one reference each, in configuration order */
        EmuDevice **by_address; /* the same, sorted by address */
        size_t n_devices;
        size_t n_allocated, n_allocated_index;
        /* Device instances get nonce_salt + the number added before them as their salt: a device
         * removed and added again is another instance, whose nonces differ from the first's. */
        uint64_t nonce_salt;
        uint64_t n_added;
};

static int address_compare(const EmuPciAddress *a, const EmuPciAddress *b) {
        if (a->domain != b->domain)
                return a->domain < b->domain ? -1 : 1;
        if (a->bus != b->bus)
                return a->bus < b->bus ? -1 : 1;
        if (a->device != b->device)
                return a->device < b->device ? -1 : 1;
        if (a->function != b->function)
                return a->function < b->function ? -1 : 1;
        return 0;
}

/* Where a is in the index, or would go: the first device not below it. */
static size_t index_position(const EmuPlatform *p, const EmuPciAddress *a) {
        size_t lo = 0, hi = p->n_devices;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (address_compare(&emu_device_get_config(p->by_address[mid])->address, a) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static EmuDevice *platform_find(const EmuPlatform *p, const EmuPciAddress *a) {
        size_t i = index_position(p, a);

        if (i < p->n_devices && address_compare(&emu_device_get_config(p->by_address[i])->address, a) == 0)
                return p->by_address[i];
        return NULL;
}

int emu_platform_add_device_config(EmuPlatform *p, const EmuDeviceConfig *c, EmuDevice **ret) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = NULL;
        size_t pos;
        int r;

        assert_return(p, -EINVAL);
        assert_return(c, -EINVAL);

        if (platform_find(p, &c->address))
                return -EEXIST;
        if (p->n_devices >= EMU_DEVICES_MAX)
                return -E2BIG;

        r = emu_device_new(c, &d);
        if (r < 0)
                return r;
        emu_device_set_nonce_salt(d, p->nonce_salt + p->n_added);

        if (!GREEDY_REALLOC(p->devices, p->n_allocated, p->n_devices + 1) ||
            !GREEDY_REALLOC(p->by_address, p->n_allocated_index, p->n_devices + 1))
                return -ENOMEM;

        pos = index_position(p, &c->address);
        memmove(p->by_address + pos + 1, p->by_address + pos, (p->n_devices - pos) * sizeof(EmuDevice *));
        p->by_address[pos] = d;
        p->devices[p->n_devices++] = d;
        p->n_added++;
        if (ret)
                *ret = d;
        TAKE_PTR(d);
        return 0;
}

int emu_platform_add_device(EmuPlatform *p, const char *device, EmuDevice **ret) {
        EmuDeviceConfig c;
        int r;

        assert_return(p, -EINVAL);
        assert_return(device, -EINVAL);

        r = emu_device_config_parse(device, &c);
        if (r < 0)
                return r;

        return emu_platform_add_device_config(p, &c, ret);
}

int emu_platform_remove_device(EmuPlatform *p, const char *pci_address) {
        EmuPciAddress a;
        EmuDevice *d;
        size_t i;

        assert_return(p, -EINVAL);
        assert_return(pci_address, -EINVAL);

        if (emu_pci_address_parse(pci_address, &a) < 0)
                return -EINVAL;

        d = platform_find(p, &a);
        if (!d)
                return -ENOENT;

        i = index_position(p, &a);
        memmove(p->by_address + i, p->by_address + i + 1, (p->n_devices - i - 1) * sizeof(EmuDevice *));
        for (i = 0; p->devices[i] != d; i++)
                ;
        memmove(p->devices + i, p->devices + i + 1, (p->n_devices - i - 1) * sizeof(EmuDevice *));
        p->n_devices--;

        emu_device_mark_removed(d);
        emu_device_unref(d);
        return 0;
}

void emu_platform_set_nonce_salt(EmuPlatform *p, uint64_t salt) {
        if (!p)
                return;
        p->nonce_salt = salt;
        p->n_added = 0;
        for (size_t i = 0; i < p->n_devices; i++)
                emu_device_set_nonce_salt(p->devices[i], p->nonce_salt + p->n_added++);
}

EmuDevice *emu_platform_find_device(EmuPlatform *p, const char *pci_address) {
        EmuPciAddress a;
        EmuDevice *d;

        if (!p || !pci_address || emu_pci_address_parse(pci_address, &a) < 0)
                return NULL;
        /* SECURITY: only as sysfs spells it (lower case), as the real devices are looked up:
         * "0000:3B:00.0" must not find the emulated device a real 0000:3b:00.0 shadows. */
        d = platform_find(p, &a);
        return d && streq(emu_device_get_address(d), pci_address) ? d : NULL;
}

size_t emu_platform_get_n_devices(const EmuPlatform *p) {
        return p ? p->n_devices : 0;
}

EmuDevice *emu_platform_get_device(EmuPlatform *p, size_t idx) {
        if (!p || idx >= p->n_devices)
                return NULL;
        return p->devices[idx];
}

EmuPlatform *emu_platform_free(EmuPlatform *p) {
        if (!p)
                return NULL;

        /* Devices somebody else still references must not look alive without a platform. */
        for (size_t i = 0; i < p->n_devices; i++) {
                emu_device_mark_removed(p->devices[i]);
                emu_device_unref(p->devices[i]);
        }
        free(p->devices);
        free(p->by_address);
        return mfree(p);
}

int emu_platform_new_from_config(const char *config, EmuPlatform **ret) {
        _cleanup_(emu_platform_freep) EmuPlatform *p = NULL;
        _cleanup_free_ EmuDeviceConfig *devices = NULL;
        size_t n_devices;
        int r;

        assert_return(ret, -EINVAL);

        r = emu_config_parse(config ?: EMU_CONFIG_DEFAULT, &devices, &n_devices);
        if (r < 0)
                return r;

        p = new0(EmuPlatform, 1);
        if (!p)
                return -ENOMEM;

        for (size_t i = 0; i < n_devices; i++) {
                r = emu_platform_add_device_config(p, devices + i, NULL);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) /* the parser already rejected duplicates and bad values */
                        return -EINVAL;
        }

        *ret = TAKE_PTR(p);
        return 0;
}

int emu_platform_new(EmuPlatform **ret) {
        return emu_platform_new_from_config(NULL, ret);
}
