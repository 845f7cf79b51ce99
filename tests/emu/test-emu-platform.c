/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of the emulated platform: PCI address and config-string parsing (valid, invalid,
 * limits), the default device set, hotplug and device lifetime. Runs in: tests.
 */

#include <stdio.h>

#include "emu-config.h"
#include "emu-platform.h"
#include "harness.h"

TEST(pci_address) {
        char buf[EMU_PCI_ADDRESS_STRLEN + 1];
        EmuPciAddress a;

        ASSERT_OK(emu_pci_address_parse("0000:01:00.0", &a));
        ASSERT_EQ(a.domain, 0);
        ASSERT_EQ(a.bus, 1);
        ASSERT_EQ(a.device, 0);
        ASSERT_EQ(a.function, 0);

        ASSERT_OK(emu_pci_address_parse("ABCD:eF:1f.7", &a));
        ASSERT_EQ(a.domain, 0xabcd);
        ASSERT_EQ(a.bus, 0xef);
        ASSERT_EQ(a.device, 0x1f);
        ASSERT_EQ(a.function, 7);
        ASSERT_STREQ(emu_pci_address_format(&a, buf), "abcd:ef:1f.7");

        static const char *const bad[] = {
                "", "0000:01:00", "0000:01:00.", "000:01:00.0", "00000:01:00.0", "0000:01:00.00",
                "0000:1:00.0", "0000:01:0.0", "0000:01:20.0", "0000:01:00.8", "0000-01:00.0",
                "0000:01-00.0", "0000:01:00:0", "g000:01:00.0", "0000:0x:00.0", "0000:01:00.0 ",
                " 0000:01:00.0", "0000:01:00.0,",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (emu_pci_address_parse(bad[i], &a) != -EINVAL)
                        TEST_FAIL("'%s' parsed", bad[i]);
}

TEST(config_valid) {
        _cleanup_free_ EmuDeviceConfig *devices = NULL;
        size_t n;

        ASSERT_OK(emu_config_parse("", &devices, &n));
        ASSERT_EQ(n, 0);
        ASSERT_NULL(devices);

        ASSERT_OK(emu_config_parse(EMU_CONFIG_DEFAULT, &devices, &n));
        ASSERT_EQ(n, 2);
        ASSERT_EQ(devices[0].address.bus, 1);
        ASSERT_EQ(devices[1].address.bus, 2);
        ASSERT_EQ(devices[0].vendor_id, EMU_VENDOR_ID_DEFAULT);
        ASSERT_EQ(devices[0].device_id, EMU_DEVICE_ID_DEFAULT);
        ASSERT_EQ(devices[0].n_mmio_ranges, EMU_MMIO_RANGES_DEFAULT);
        devices = mfree(devices);

        ASSERT_OK(emu_config_parse("00ff:80:1f.7:ranges=0,0000:02:00.0:device=0b25:ranges=32:vendor=8086,"
                                   "0000:03:00.1:ranges=3",
                                   &devices, &n));
        ASSERT_EQ(n, 3);
        ASSERT_EQ(devices[0].address.domain, 0xff);
        ASSERT_EQ(devices[0].address.bus, 0x80);
        ASSERT_EQ(devices[0].address.device, 0x1f);
        ASSERT_EQ(devices[0].address.function, 7);
        ASSERT_EQ(devices[0].n_mmio_ranges, 0);
        ASSERT_EQ(devices[1].vendor_id, 0x8086);
        ASSERT_EQ(devices[1].device_id, 0x0b25);
        ASSERT_EQ(devices[1].n_mmio_ranges, 32);
        ASSERT_EQ(devices[2].address.function, 1);
        ASSERT_EQ(devices[2].n_mmio_ranges, 3);
        ASSERT_EQ(devices[2].vendor_id, EMU_VENDOR_ID_DEFAULT);
}

TEST(config_invalid) {
        static const char *const bad[] = {
                ",",
                "0000:01:00.0,",
                ",0000:01:00.0",
                "0000:01:00.0,,0000:02:00.0",
                "0000:01:00.0 ,0000:02:00.0",
                "0000:01:00.0;0000:02:00.0",
                "0000:01:00.0:",                       /* empty option */
                "0000:01:00.0::ranges=1",
                "0000:01:00.0:ranges",
                "0000:01:00.0:ranges=",
                "0000:01:00.0:ranges=33",
                "0000:01:00.0:ranges=100",
                "0000:01:00.0:ranges=-1",
                "0000:01:00.0:ranges=1a",
                "0000:01:00.0:ranges=1:ranges=2",      /* option twice */
                "0000:01:00.0:vendor=ffff",            /* "no device" */
                "0000:01:00.0:vendor=123",
                "0000:01:00.0:vendor=12345",
                "0000:01:00.0:vendor=0x12",
                "0000:01:00.0:device=xyz1",
                "0000:01:00.0:device=1:vendor=1234",
                "0000:01:00.0:colour=blue",
                "0000:01:00.0:Ranges=1",
                "0000:01:00.0ranges=1",
                "0100:01:00.0",                        /* segment does not fit FUNCTION_ID */
                "ffff:01:00.0",
                "0000:01:00.0,0000:01:00.0",           /* duplicate */
                "0000:0a:00.0,0000:0A:00.0",           /* duplicate, other case */
                "0000:01:00.0:ranges=1,0000:01:00.0:ranges=2",
        };
        _cleanup_free_ EmuDeviceConfig *devices = NULL;
        size_t n = 4242;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                if (emu_config_parse(bad[i], &devices, &n) != -EINVAL)
                        TEST_FAIL("'%s' parsed", bad[i]);
                ASSERT_NULL(devices); /* outputs untouched on failure */
                ASSERT_EQ(n, 4242);
        }
}

/* Writes "0000:BB:DD.F,..." for n distinct devices into buf. */
static char *config_many(size_t n) {
        char *buf = malloc(n * 13 + 1), *p = buf;

        ASSERT_NOT_NULL(buf);
        *p = '\0';
        for (size_t i = 0; i < n; i++)
                p += sprintf(p, "%s0000:%02zx:%02zx.%zx", i > 0 ? "," : "", i / 256, (i / 8) % 32, i % 8);
        return buf;
}

TEST(config_limit) {
        _cleanup_free_ EmuDeviceConfig *devices = NULL;
        _cleanup_free_ char *max = config_many(EMU_DEVICES_MAX), *over = config_many(EMU_DEVICES_MAX + 1);
        size_t n;

        ASSERT_OK(emu_config_parse(max, &devices, &n));
        ASSERT_EQ(n, EMU_DEVICES_MAX);
        devices = mfree(devices);

        /* A client-controlled list: one more is refused, not allocated. */
        ASSERT_ERRNO(emu_config_parse(over, &devices, &n), EINVAL);
        ASSERT_NULL(devices);
}

TEST(platform_default) {
        _cleanup_(emu_platform_freep) EmuPlatform *p = NULL, *q = NULL, *e = NULL;

        ASSERT_OK(emu_platform_new(&p));
        ASSERT_EQ(emu_platform_get_n_devices(p), 2);
        ASSERT_STREQ(emu_device_get_address(emu_platform_get_device(p, 0)), "0000:01:00.0");
        ASSERT_STREQ(emu_device_get_address(emu_platform_get_device(p, 1)), "0000:02:00.0");
        ASSERT_NULL(emu_platform_get_device(p, 2));
        ASSERT_EQ(emu_device_get_state(emu_platform_get_device(p, 0)), TDISP_STATE_CONFIG_UNLOCKED);

        ASSERT_OK(emu_platform_new_from_config(NULL, &q));
        ASSERT_EQ(emu_platform_get_n_devices(q), 2);

        ASSERT_OK(emu_platform_new_from_config("", &e));
        ASSERT_EQ(emu_platform_get_n_devices(e), 0);
        ASSERT_NULL(emu_platform_get_device(e, 0));
}

TEST(platform_bad_config) {
        EmuPlatform *p = (EmuPlatform *) 0x1;

        ASSERT_ERRNO(emu_platform_new_from_config("0000:01:00.0,0000:01:00.0", &p), EINVAL);
        ASSERT_ERRNO(emu_platform_new_from_config("nonsense", &p), EINVAL);
        ASSERT_TRUE(p == (EmuPlatform *) 0x1);
}

TEST(platform_hotplug) {
        _cleanup_(emu_platform_freep) EmuPlatform *p = NULL;
        EmuDevice *d = NULL, *d2 = NULL;

        ASSERT_OK(emu_platform_new_from_config("0000:01:00.0", &p));

        ASSERT_OK(emu_platform_add_device(p, "0000:03:00.0:ranges=2:vendor=8086", &d));
        ASSERT_NOT_NULL(d);
        ASSERT_EQ(emu_platform_get_n_devices(p), 2);
        ASSERT_TRUE(emu_platform_find_device(p, "0000:03:00.0") == d);
        ASSERT_TRUE(emu_platform_find_device(p, "0000:03:00.0") == emu_platform_get_device(p, 1));
        ASSERT_EQ(emu_device_get_config(d)->n_mmio_ranges, 2);
        ASSERT_EQ(emu_device_get_config(d)->vendor_id, 0x8086);
        ASSERT_EQ(emu_device_get_function_id(d), 0x0300);

        ASSERT_ERRNO(emu_platform_add_device(p, "0000:03:00.0", NULL), EEXIST);
        ASSERT_ERRNO(emu_platform_add_device(p, "0000:03:00.0:ranges=99", NULL), EINVAL);
        ASSERT_ERRNO(emu_platform_add_device(p, "0000:03:00.0,0000:04:00.0", NULL), EINVAL);
        ASSERT_ERRNO(emu_platform_add_device(p, "0100:03:00.0", NULL), EINVAL);
        ASSERT_EQ(emu_platform_get_n_devices(p), 2);

        /* Lookups take either hex case and reject what is not an address. */
        ASSERT_TRUE(emu_platform_find_device(p, "0000:01:00.0") == emu_platform_get_device(p, 0));
        ASSERT_NULL(emu_platform_find_device(p, "0000:01:00.1"));
        ASSERT_NULL(emu_platform_find_device(p, "bogus"));
        ASSERT_OK(emu_platform_add_device(p, "0000:0a:00.0", &d2));
        ASSERT_TRUE(emu_platform_find_device(p, "0000:0A:00.0") == d2);

        /* Removal keeps the order of the others. */
        ASSERT_OK(emu_platform_remove_device(p, "0000:03:00.0"));
        ASSERT_ERRNO(emu_platform_remove_device(p, "0000:03:00.0"), ENOENT);
        ASSERT_ERRNO(emu_platform_remove_device(p, "bogus"), EINVAL);
        ASSERT_NULL(emu_platform_find_device(p, "0000:03:00.0"));
        ASSERT_EQ(emu_platform_get_n_devices(p), 2);
        ASSERT_STREQ(emu_device_get_address(emu_platform_get_device(p, 0)), "0000:01:00.0");
        ASSERT_STREQ(emu_device_get_address(emu_platform_get_device(p, 1)), "0000:0a:00.0");

        /* Added back, it is a new device: fresh state, no memory of the old one. */
        ASSERT_OK(emu_device_bind(emu_platform_get_device(p, 1), NULL));
        ASSERT_OK(emu_platform_remove_device(p, "0000:0a:00.0"));
        ASSERT_OK(emu_platform_add_device(p, "0000:0a:00.0", &d2));
        ASSERT_EQ(emu_device_get_state(d2), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_FALSE(emu_device_is_removed(d2));
}

TEST(platform_removed_reference) {
        _cleanup_(emu_platform_freep) EmuPlatform *p = NULL;
        _cleanup_(emu_device_unrefp) EmuDevice *kept = NULL, *orphan = NULL;
        uint8_t resp[EMU_RESPONSE_MAX], msg[16];
        size_t len, msg_len;

        ASSERT_OK(emu_platform_new(&p));
        kept = emu_device_ref(emu_platform_find_device(p, "0000:01:00.0"));
        orphan = emu_device_ref(emu_platform_find_device(p, "0000:02:00.0"));
        ASSERT_OK(tdisp_build_request(TDISP_MSG_GET_VERSION, emu_device_get_function_id(kept), NULL, 0, msg,
                                      sizeof(msg), &msg_len));
        ASSERT_OK(emu_device_request(kept, EMU_SCOPE_INFO, msg, msg_len, resp, sizeof(resp), &len));

        /* A holder of a reference sees the removal as -ENODEV, not as freed memory. */
        ASSERT_OK(emu_platform_remove_device(p, "0000:01:00.0"));
        ASSERT_ERRNO(emu_device_request(kept, EMU_SCOPE_INFO, msg, msg_len, resp, sizeof(resp), &len),
                     ENODEV);
        ASSERT_STREQ(emu_device_get_address(kept), "0000:01:00.0");

        /* Freeing the platform removes the devices it still listed. */
        p = emu_platform_free(p);
        ASSERT_TRUE(emu_device_is_removed(orphan));
        ASSERT_ERRNO(emu_device_unbind(orphan), ENODEV);
}

TEST(platform_limit) {
        _cleanup_(emu_platform_freep) EmuPlatform *p = NULL;
        _cleanup_free_ char *max = config_many(EMU_DEVICES_MAX);

        ASSERT_OK(emu_platform_new_from_config(max, &p));
        ASSERT_EQ(emu_platform_get_n_devices(p), EMU_DEVICES_MAX);
        ASSERT_ERRNO(emu_platform_add_device(p, "0001:00:00.0", NULL), E2BIG);

        /* Every device answers, each with its own function id. */
        for (size_t i = 0; i < EMU_DEVICES_MAX; i++) {
                EmuDevice *d = emu_platform_get_device(p, i);

                ASSERT_EQ(emu_device_get_function_id(d), (uint32_t) ((i / 256) << 8 | i % 256));
                ASSERT_OK(emu_device_bind(d, NULL));
        }

        ASSERT_OK(emu_platform_remove_device(p, "0000:00:00.0"));
        ASSERT_OK(emu_platform_add_device(p, "0001:00:00.0", NULL));
        ASSERT_EQ(emu_device_get_function_id(emu_platform_find_device(p, "0001:00:00.0")), 0x01010000);
}

TEST_MAIN();
