/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Parser for the emulated platform's device-list string (syntax in emu-config.h). Works on
 * explicit lengths, never reads past the terminating NUL, and allocates at most
 * EMU_DEVICES_MAX entries whatever the input. Runs in: monitor and worker, VMM examples.
 */

#include <stdio.h>

#include "emu-config.h"

static const char *const emu_fault_table[_EMU_FAULT_MAX] = {
        [EMU_FAULT_BUSY] = "busy",
        [EMU_FAULT_TIMEOUT] = "timeout",
        [EMU_FAULT_GONE] = "gone",
        [EMU_FAULT_TDISP_ERROR] = "tdisp-error",
};
DEFINE_STRING_TABLE_LOOKUP(emu_fault, EmuFault);

static int hex_digit(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -EINVAL;
}

/* Exactly n (<= 8) hex digits. */
static int parse_hex_fixed(const char *s, size_t n, uint32_t *ret) {
        uint32_t v = 0;

        for (size_t i = 0; i < n; i++) {
                int d = hex_digit(s[i]);
                if (d < 0)
                        return d;
                v = v << 4 | (uint32_t) d;
        }

        *ret = v;
        return 0;
}

static int pci_address_parse_n(const char *s, size_t n, EmuPciAddress *ret) {
        uint32_t domain, bus, device, function;

        if (n != EMU_PCI_ADDRESS_STRLEN || s[4] != ':' || s[7] != ':' || s[10] != '.')
                return -EINVAL;

        if (parse_hex_fixed(s, 4, &domain) < 0 || parse_hex_fixed(s + 5, 2, &bus) < 0 ||
            parse_hex_fixed(s + 8, 2, &device) < 0 || parse_hex_fixed(s + 11, 1, &function) < 0)
                return -EINVAL;

        if (device > 0x1f || function > 7)
                return -EINVAL;

        *ret = (EmuPciAddress) {
                .domain = (uint16_t) domain,
                .bus = (uint8_t) bus,
                .device = (uint8_t) device,
                .function = (uint8_t) function,
        };
        return 0;
}

int emu_pci_address_parse(const char *s, EmuPciAddress *ret) {
        assert_return(s, -EINVAL);
        assert_return(ret, -EINVAL);

        return pci_address_parse_n(s, strnlen(s, EMU_PCI_ADDRESS_STRLEN + 1), ret);
}

char *emu_pci_address_format(const EmuPciAddress *a, char *buf) {
        (void) snprintf(buf, EMU_PCI_ADDRESS_STRLEN + 1, "%04x:%02x:%02x.%x",
                        (unsigned) a->domain, (unsigned) a->bus, (unsigned) a->device & 0x1fu,
                        (unsigned) a->function & 7u);
        return buf;
}

bool emu_pci_address_equal(const EmuPciAddress *a, const EmuPciAddress *b) {
        return a->domain == b->domain && a->bus == b->bus && a->device == b->device &&
               a->function == b->function;
}

void emu_device_config_init(EmuDeviceConfig *c, const EmuPciAddress *a) {
        *c = (EmuDeviceConfig) {
                .address = *a,
                .vendor_id = EMU_VENDOR_ID_DEFAULT,
                .device_id = EMU_DEVICE_ID_DEFAULT,
                .n_mmio_ranges = EMU_MMIO_RANGES_DEFAULT,
                .fault = _EMU_FAULT_INVALID,
        };
}

/* Does the option s[0..n) start with key? If so, returns what follows it. */
static bool option_key(const char *s, size_t n, const char *key, const char **ret_value,
                       size_t *ret_value_len) {
        size_t k = strlen(key);

        if (n < k || memcmp(s, key, k) != 0)
                return false;

        *ret_value = s + k;
        *ret_value_len = n - k;
        return true;
}

static int parse_ranges(const char *s, size_t n, unsigned *ret) {
        unsigned v = 0;

        /* One or two decimal digits is all 0..EMU_MMIO_RANGES_MAX needs, and it keeps the
         * accumulator far from overflowing. */
        if (n < 1 || n > 2)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned) (s[i] - '0');
        }
        if (v > EMU_MMIO_RANGES_MAX)
                return -EINVAL;

        *ret = v;
        return 0;
}

static int parse_id(const char *s, size_t n, uint16_t *ret) {
        uint32_t v;

        if (n != 4 || parse_hex_fixed(s, 4, &v) < 0)
                return -EINVAL;

        *ret = (uint16_t) v;
        return 0;
}

/* One of the fault names, exactly (the value is not NUL-terminated). */
static int parse_fault(const char *s, size_t n, EmuFault *ret) {
        for (size_t i = 0; i < ELEMENTSOF(emu_fault_table); i++)
                if (strlen(emu_fault_table[i]) == n && memcmp(emu_fault_table[i], s, n) == 0) {
                        *ret = (EmuFault) i;
                        return 0;
                }
        return -EINVAL;
}

static int device_config_parse_n(const char *s, size_t n, EmuDeviceConfig *ret) {
        bool have_ranges = false, have_vendor = false, have_device = false, have_fault = false;
        EmuDeviceConfig c;
        EmuPciAddress a;
        size_t pos;

        if (n < EMU_PCI_ADDRESS_STRLEN || pci_address_parse_n(s, EMU_PCI_ADDRESS_STRLEN, &a) < 0)
                return -EINVAL;
        if (a.domain > 0xff)
                return -EINVAL;

        emu_device_config_init(&c, &a);

        pos = EMU_PCI_ADDRESS_STRLEN;
        while (pos < n) {
                const char *opt, *end, *value;
                size_t opt_len, value_len;

                if (s[pos] != ':')
                        return -EINVAL;
                pos++;

                opt = s + pos;
                end = memchr(opt, ':', n - pos);
                opt_len = end ? (size_t) (end - opt) : n - pos;
                pos += opt_len;

                if (option_key(opt, opt_len, "ranges=", &value, &value_len)) {
                        if (have_ranges || parse_ranges(value, value_len, &c.n_mmio_ranges) < 0)
                                return -EINVAL;
                        have_ranges = true;
                } else if (option_key(opt, opt_len, "vendor=", &value, &value_len)) {
                        /* ffff is what config reads return for an absent function. */
                        if (have_vendor || parse_id(value, value_len, &c.vendor_id) < 0 ||
                            c.vendor_id == 0xffff)
                                return -EINVAL;
                        have_vendor = true;
                } else if (option_key(opt, opt_len, "device=", &value, &value_len)) {
                        if (have_device || parse_id(value, value_len, &c.device_id) < 0)
                                return -EINVAL;
                        have_device = true;
                } else if (option_key(opt, opt_len, "fault=", &value, &value_len)) {
                        if (have_fault || parse_fault(value, value_len, &c.fault) < 0)
                                return -EINVAL;
                        have_fault = true;
                } else
                        return -EINVAL;
        }

        *ret = c;
        return 0;
}

int emu_device_config_parse(const char *s, EmuDeviceConfig *ret) {
        assert_return(s, -EINVAL);
        assert_return(ret, -EINVAL);

        return device_config_parse_n(s, strlen(s), ret);
}

int emu_config_parse(const char *s, EmuDeviceConfig **ret_devices, size_t *ret_n_devices) {
        _cleanup_free_ EmuDeviceConfig *devices = NULL;
        size_t n_devices = 0, allocated = 0;

        assert_return(s, -EINVAL);
        assert_return(ret_devices, -EINVAL);
        assert_return(ret_n_devices, -EINVAL);

        /* "" lists no device: an empty platform, to which devices can be added later. */
        for (const char *p = s; *s != '\0';) {
                const char *comma = strchr(p, ',');
                size_t len = comma ? (size_t) (comma - p) : strlen(p);
                EmuDeviceConfig c;

                if (device_config_parse_n(p, len, &c) < 0)
                        return -EINVAL;

                for (size_t i = 0; i < n_devices; i++)
                        if (emu_pci_address_equal(&devices[i].address, &c.address))
                                return -EINVAL;

                if (n_devices >= EMU_DEVICES_MAX)
                        return -EINVAL;
                if (!GREEDY_REALLOC(devices, allocated, n_devices + 1))
                        return -ENOMEM;
                devices[n_devices++] = c;

                if (!comma)
                        break;
                p = comma + 1; /* a trailing "," leaves an empty device, rejected above */
        }

        *ret_devices = TAKE_PTR(devices);
        *ret_n_devices = n_devices;
        return 0;
}
