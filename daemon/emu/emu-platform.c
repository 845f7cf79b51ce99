/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The set of emulated devices: construction from a config string, lookup by PCI address,
 * hotplug. At most EMU_DEVICES_MAX devices, so lookups stay linear scans. Runs in: worker,
 * tests.
 */

#include "emu-platform.h"

struct EmuPlatform {
        EmuDevice **devices; /* one reference each */
        size_t n_devices;
        size_t n_allocated;
};

static ssize_t platform_find_index(const EmuPlatform *p, const EmuPciAddress *a) {
        for (size_t i = 0; i < p->n_devices; i++)
                if (emu_pci_address_equal(&emu_device_get_config(p->devices[i])->address, a))
                        return (ssize_t) i;
        return -ENOENT;
}

int emu_platform_add_device_config(EmuPlatform *p, const EmuDeviceConfig *c, EmuDevice **ret) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = NULL;
        int r;

        assert_return(p, -EINVAL);
        assert_return(c, -EINVAL);

        if (platform_find_index(p, &c->address) >= 0)
                return -EEXIST;
        if (p->n_devices >= EMU_DEVICES_MAX)
                return -E2BIG;

        r = emu_device_new(c, &d);
        if (r < 0)
                return r;

        if (!GREEDY_REALLOC(p->devices, p->n_allocated, p->n_devices + 1))
                return -ENOMEM;

        p->devices[p->n_devices++] = d;
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
        ssize_t i;

        assert_return(p, -EINVAL);
        assert_return(pci_address, -EINVAL);

        if (emu_pci_address_parse(pci_address, &a) < 0)
                return -EINVAL;

        i = platform_find_index(p, &a);
        if (i < 0)
                return (int) i;

        d = p->devices[i];
        memmove(p->devices + i, p->devices + i + 1, (p->n_devices - (size_t) i - 1) * sizeof(EmuDevice *));
        p->n_devices--;

        emu_device_mark_removed(d);
        emu_device_unref(d);
        return 0;
}

EmuDevice *emu_platform_find_device(EmuPlatform *p, const char *pci_address) {
        EmuPciAddress a;
        ssize_t i;

        if (!p || !pci_address || emu_pci_address_parse(pci_address, &a) < 0)
                return NULL;

        i = platform_find_index(p, &a);
        return i < 0 ? NULL : p->devices[i];
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
