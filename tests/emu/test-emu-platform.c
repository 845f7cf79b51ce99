/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of the emulated platform: PCI address and config-string parsing (valid, invalid,
 * limits, faults), the default device set, hotplug, device lifetime, devices created with a
 * configured fault, and the nonce salt of each device instance. Runs in: tests.
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

/* "0000:01:00.0:fault=<name of f>" (static storage). */
static const char *strf_fault(EmuFault f) {
        static char buf[64];

        snprintf(buf, sizeof(buf), "0000:01:00.0:fault=%s", emu_fault_to_string(f));
        return buf;
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
                "0000:01:00.0;ranges=1",               /* options follow a ':' only */
                "0000:01:00.0:ranges=001",             /* two digits at most */
                "0000:01:00.0:vendor=808G",            /* 'G' follows 'F' */
                "0000:0G:00.0",
                "0000:01:00.0:vendor=8086:vendor=1af4",
                "0000:01:00.0:device=0001:device=0002",
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

TEST(config_faults) {
        static const struct {
                const char *entry;
                EmuFault fault;
        } good[] = {
                { "0000:01:00.0", _EMU_FAULT_INVALID },
                { "0000:01:00.0:fault=busy", EMU_FAULT_BUSY },
                { "0000:01:00.0:fault=timeout", EMU_FAULT_TIMEOUT },
                { "0000:01:00.0:fault=gone", EMU_FAULT_GONE },
                { "0000:01:00.0:fault=tdisp-error", EMU_FAULT_TDISP_ERROR },
                { "0000:01:00.0:ranges=2:fault=gone:vendor=8086", EMU_FAULT_GONE },
        };
        static const char *const bad[] = {
                "0000:01:00.0:fault=",
                "0000:01:00.0:fault",
                "0000:01:00.0:fault=Busy",
                "0000:01:00.0:fault=BUSY",
                "0000:01:00.0:fault=bus",
                "0000:01:00.0:fault=busyy",
                "0000:01:00.0:fault=busy ",
                "0000:01:00.0:fault= busy",
                "0000:01:00.0:fault=hang",
                "0000:01:00.0:fault=error",
                "0000:01:00.0:fault=tdisp",
                "0000:01:00.0:fault=tdisp-error-1",
                "0000:01:00.0:fault=0",
                "0000:01:00.0:fault=busy:fault=busy",  /* option twice, even the same */
                "0000:01:00.0:fault=busy:fault=gone",
                "0000:01:00.0:fault=busy,gone",
                "0000:01:00.0:faults=busy",
                "0000:01:00.0:Fault=busy",
                "0000:01:00.0fault=busy",
        };
        _cleanup_free_ EmuDeviceConfig *devices = NULL;
        EmuDeviceConfig c;
        size_t n = 4242;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                if (emu_device_config_parse(good[i].entry, &c) < 0)
                        TEST_FAIL("'%s' did not parse", good[i].entry);
                ASSERT_EQ(c.fault, good[i].fault);
        }
        /* The names are the fault table's, both ways. */
        for (EmuFault f = 0; f < _EMU_FAULT_MAX; f++) {
                ASSERT_OK(emu_device_config_parse(strf_fault(f), &c));
                ASSERT_EQ(c.fault, f);
                ASSERT_EQ(emu_fault_from_string(emu_fault_to_string(f)), f);
        }
        ASSERT_NULL(emu_fault_to_string(_EMU_FAULT_INVALID));
        ASSERT_NULL(emu_fault_to_string(_EMU_FAULT_MAX));
        ASSERT_ERRNO(emu_fault_from_string("hang"), EINVAL);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                if (emu_device_config_parse(bad[i], &c) != -EINVAL)
                        TEST_FAIL("'%s' parsed", bad[i]);
                if (emu_config_parse(bad[i], &devices, &n) != -EINVAL)
                        TEST_FAIL("'%s' parsed as a list", bad[i]);
                ASSERT_NULL(devices);
                ASSERT_EQ(n, 4242);
        }

        /* Per device: each entry has its own, or none. */
        ASSERT_OK(emu_config_parse("0000:01:00.0:fault=busy,0000:02:00.0,0000:03:00.0:fault=tdisp-error", &devices, &n));
        ASSERT_EQ(n, 3);
        ASSERT_EQ(devices[0].fault, EMU_FAULT_BUSY);
        ASSERT_EQ(devices[1].fault, _EMU_FAULT_INVALID);
        ASSERT_EQ(devices[2].fault, EMU_FAULT_TDISP_ERROR);
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

        /* Lookups take the address as sysfs spells it (lower case) and nothing else. */
        ASSERT_TRUE(emu_platform_find_device(p, "0000:01:00.0") == emu_platform_get_device(p, 0));
        ASSERT_NULL(emu_platform_find_device(p, "0000:01:00.1"));
        ASSERT_NULL(emu_platform_find_device(p, "bogus"));
        ASSERT_OK(emu_platform_add_device(p, "0000:0A:00.0", &d2));
        ASSERT_TRUE(emu_platform_find_device(p, "0000:0a:00.0") == d2);
        ASSERT_NULL(emu_platform_find_device(p, "0000:0A:00.0"));

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

/* The first nonce the device at address gives (it is bound, then unbound). */
static void first_nonce(EmuPlatform *p, const char *address, uint8_t nonce[static TDISP_NONCE_SIZE]) {
        EmuDevice *d = emu_platform_find_device(p, address);

        ASSERT_NOT_NULL(d);
        ASSERT_OK(emu_device_bind(d, nonce));
        ASSERT_OK(emu_device_unbind(d));
}

/* A device removed and added again is another instance, and its lock counter starts again:
 * its nonces are still not its earlier instance's. Platforms with the same salt and history
 * give the same nonces, platforms with another salt others. */
TEST(platform_nonces_per_instance) {
        _cleanup_(emu_platform_freep) EmuPlatform *p = NULL, *twin = NULL, *salted = NULL, *salted_twin = NULL;
        uint8_t n1[TDISP_NONCE_SIZE], n2[TDISP_NONCE_SIZE], t1[TDISP_NONCE_SIZE], t2[TDISP_NONCE_SIZE],
                s1[TDISP_NONCE_SIZE], s2[TDISP_NONCE_SIZE];

        ASSERT_OK(emu_platform_new_from_config("0000:01:00.0,0000:02:00.0", &p));
        ASSERT_OK(emu_platform_new_from_config("0000:01:00.0,0000:02:00.0", &twin));
        first_nonce(p, "0000:01:00.0", n1);
        first_nonce(twin, "0000:01:00.0", t1);
        ASSERT_MEMEQ(n1, t1, sizeof(n1));

        ASSERT_OK(emu_platform_remove_device(p, "0000:01:00.0"));
        ASSERT_OK(emu_platform_add_device(p, "0000:01:00.0", NULL));
        first_nonce(p, "0000:01:00.0", n2);
        ASSERT_FALSE(memcmp(n1, n2, sizeof(n1)) == 0);
        ASSERT_OK(emu_platform_remove_device(twin, "0000:01:00.0"));
        ASSERT_OK(emu_platform_add_device(twin, "0000:01:00.0", NULL));
        first_nonce(twin, "0000:01:00.0", t2);
        ASSERT_MEMEQ(n2, t2, sizeof(n2));

        /* Salted after creation: the listed devices take it, and with another salt the same
         * history gives other nonces. */
        ASSERT_OK(emu_platform_new_from_config("0000:01:00.0,0000:02:00.0", &salted));
        ASSERT_OK(emu_platform_new_from_config("0000:01:00.0,0000:02:00.0", &salted_twin));
        emu_platform_set_nonce_salt(salted, UINT64_C(0x1234567890abcdef));
        emu_platform_set_nonce_salt(salted_twin, UINT64_C(0x1234567890abcdef));
        first_nonce(salted, "0000:01:00.0", s1);
        first_nonce(salted_twin, "0000:01:00.0", s2);
        ASSERT_MEMEQ(s1, s2, sizeof(s1));
        ASSERT_FALSE(memcmp(s1, n1, sizeof(s1)) == 0);
        first_nonce(salted, "0000:02:00.0", s2);
        ASSERT_FALSE(memcmp(s1, s2, sizeof(s1)) == 0);
        ASSERT_OK(emu_platform_remove_device(salted, "0000:01:00.0"));
        ASSERT_OK(emu_platform_add_device(salted, "0000:01:00.0", NULL));
        first_nonce(salted, "0000:01:00.0", s2);
        ASSERT_FALSE(memcmp(s1, s2, sizeof(s1)) == 0);
        ASSERT_FALSE(memcmp(n2, s2, sizeof(n2)) == 0);
}

/* Every nonce of every instance of a device differs from every other, whatever the instance's
 * place in the platform's history and its lock count: the salt and the count do not trade off
 * (instance 1 at its second lock against instance 2 at its first, say). */
TEST(platform_nonces_all_distinct) {
        _cleanup_(emu_platform_freep) EmuPlatform *p = NULL;
        uint8_t nonces[4 * 4][TDISP_NONCE_SIZE];
        size_t n = 0;

        ASSERT_OK(emu_platform_new_from_config("0000:01:00.0", &p));
        for (unsigned instance = 0; instance < 4; instance++) {
                if (instance > 0) {
                        ASSERT_OK(emu_platform_remove_device(p, "0000:01:00.0"));
                        ASSERT_OK(emu_platform_add_device(p, "0000:01:00.0", NULL));
                }
                for (unsigned lock = 0; lock < 4; lock++)
                        first_nonce(p, "0000:01:00.0", nonces[n++]);
        }
        for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++)
                        if (memcmp(nonces[i], nonces[j], TDISP_NONCE_SIZE) == 0)
                                TEST_FAIL("nonces %zu and %zu are the same", i, j);
}

/* The address of device k of 200: domain, bus, device and function each vary. */
static const char *address_of(unsigned k, char buf[static 32]) {
        snprintf(buf, 32, "%04x:%02x:%02x.%x", k % 3, (k / 3) % 5, (k / 15) % 4, k / 60);
        return buf;
}

/* Devices added and removed in an order unlike their addresses' (domain, bus, device and
 * function each deciding): every one is found, the absent ones are not, and the configuration
 * order is kept. */
TEST(platform_lookup_index) {
        _cleanup_(emu_platform_freep) EmuPlatform *p = NULL;
        char addr[32];
        unsigned key[200];
        const size_t n = ELEMENTSOF(key);

        ASSERT_OK(emu_platform_new_from_config("0001:00:00.0", &p));
        ASSERT_OK(emu_platform_remove_device(p, "0001:00:00.0"));
        for (size_t i = 0; i < n; i++) {
                key[i] = (unsigned) ((i * 71) % n); /* a permutation: 71 and 200 are coprime */
                ASSERT_OK(emu_platform_add_device(p, address_of(key[i], addr), NULL));
        }
        for (size_t i = 0; i < n; i++)
                ASSERT_TRUE(emu_platform_find_device(p, address_of(key[i], addr)) == emu_platform_get_device(p, i));
        ASSERT_NULL(emu_platform_find_device(p, "0003:00:00.0"));
        ASSERT_NULL(emu_platform_find_device(p, "0000:05:00.0"));
        ASSERT_NULL(emu_platform_find_device(p, "0000:00:04.0"));
        ASSERT_NULL(emu_platform_find_device(p, "0000:00:00.4"));

        /* Every other one goes; the rest keep their order and are still found. */
        for (size_t i = 0; i < n; i += 2) {
                ASSERT_OK(emu_platform_remove_device(p, address_of(key[i], addr)));
                ASSERT_NULL(emu_platform_find_device(p, addr));
        }
        ASSERT_EQ(emu_platform_get_n_devices(p), n / 2);
        for (size_t i = 1; i < n; i += 2)
                ASSERT_TRUE(emu_platform_find_device(p, address_of(key[i], addr)) ==
                            emu_platform_get_device(p, i / 2));
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

/* A device from a config with a fault: armed from the start, for requests, bind and unbind
 * alike, and for good (until cleared); the identity and bytes are those of the same device
 * without the fault. */
TEST(platform_config_faults) {
        _cleanup_(emu_platform_freep) EmuPlatform *p = NULL;
        uint8_t resp[EMU_RESPONSE_MAX], msg[16], plain[EMU_RESPONSE_MAX];
        size_t len, plain_len, msg_len;
        EmuDevice *busy, *timeout, *gone, *tdisp, *fine;
        uint32_t code;

        ASSERT_OK(emu_platform_new_from_config("0000:01:00.0:fault=busy,0000:02:00.0:fault=timeout,"
                                               "0000:03:00.0:fault=gone,0000:04:00.0:fault=tdisp-error,"
                                               "0000:05:00.0",
                                               &p));
        busy = emu_platform_find_device(p, "0000:01:00.0");
        timeout = emu_platform_find_device(p, "0000:02:00.0");
        gone = emu_platform_find_device(p, "0000:03:00.0");
        tdisp = emu_platform_find_device(p, "0000:04:00.0");
        fine = emu_platform_find_device(p, "0000:05:00.0");
        ASSERT_EQ(emu_device_get_fault(busy), EMU_FAULT_BUSY);
        ASSERT_EQ(emu_device_get_fault(timeout), EMU_FAULT_TIMEOUT);
        ASSERT_EQ(emu_device_get_fault(gone), EMU_FAULT_GONE);
        ASSERT_EQ(emu_device_get_fault(tdisp), EMU_FAULT_TDISP_ERROR);
        ASSERT_EQ(emu_device_get_fault(fine), _EMU_FAULT_INVALID);
        ASSERT_EQ(emu_device_get_config(busy)->fault, EMU_FAULT_BUSY);

        for (unsigned i = 0; i < 3; i++) {
                ASSERT_OK(tdisp_build_request(TDISP_MSG_GET_VERSION, emu_device_get_function_id(busy), NULL, 0, msg,
                                              sizeof(msg), &msg_len));
                ASSERT_ERRNO(emu_device_request(busy, EMU_SCOPE_INFO, msg, msg_len, resp, sizeof(resp), &len), EBUSY);
                ASSERT_OK(tdisp_build_request(TDISP_MSG_GET_VERSION, emu_device_get_function_id(timeout), NULL, 0, msg,
                                              sizeof(msg), &msg_len));
                ASSERT_ERRNO(emu_device_request(timeout, EMU_SCOPE_INFO, msg, msg_len, resp, sizeof(resp), &len),
                             ETIMEDOUT);
                ASSERT_OK(tdisp_build_request(TDISP_MSG_GET_VERSION, emu_device_get_function_id(gone), NULL, 0, msg,
                                              sizeof(msg), &msg_len));
                ASSERT_ERRNO(emu_device_request(gone, EMU_SCOPE_INFO, msg, msg_len, resp, sizeof(resp), &len), ENODEV);
                ASSERT_OK(tdisp_build_request(TDISP_MSG_GET_VERSION, emu_device_get_function_id(tdisp), NULL, 0, msg,
                                              sizeof(msg), &msg_len));
                ASSERT_OK(emu_device_request(tdisp, EMU_SCOPE_INFO, msg, msg_len, resp, sizeof(resp), &len));
                ASSERT_OK(tdisp_error_decode(resp, len, &code, NULL));
                ASSERT_EQ(code, TDISP_ERROR_UNSPECIFIED);
        }
        ASSERT_ERRNO(emu_device_bind(busy, NULL), EBUSY);
        ASSERT_ERRNO(emu_device_bind(timeout, NULL), ETIMEDOUT);
        ASSERT_ERRNO(emu_device_bind(gone, NULL), ENODEV);
        ASSERT_ERRNO(emu_device_bind(tdisp, NULL), EIO);
        ASSERT_ERRNO(emu_device_unbind(tdisp), EIO);
        ASSERT_EQ(emu_device_get_state(tdisp), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_OK(emu_device_bind(fine, NULL));

        /* "gone" is not removal: the device stays listed and comes back once cleared. */
        ASSERT_FALSE(emu_device_is_removed(gone));
        emu_device_clear_fault(gone);
        ASSERT_EQ(emu_device_get_fault(gone), _EMU_FAULT_INVALID);
        ASSERT_OK(emu_device_bind(gone, NULL));

        /* Cleared, the device answers like one that never had a fault. */
        emu_device_clear_fault(tdisp);
        ASSERT_OK(tdisp_build_request(TDISP_MSG_GET_VERSION, emu_device_get_function_id(tdisp), NULL, 0, msg,
                                      sizeof(msg), &msg_len));
        ASSERT_OK(emu_device_request(tdisp, EMU_SCOPE_INFO, msg, msg_len, resp, sizeof(resp), &len));
        ASSERT_EQ(resp[1], TDISP_MSG_VERSION);
        {
                _cleanup_(emu_platform_freep) EmuPlatform *q = NULL;

                /* The same devices without faults (a device's nonce salt is its place in its
                 * platform's history, emu_platform_set_nonce_salt()). */
                ASSERT_OK(emu_platform_new_from_config("0000:01:00.0,0000:02:00.0,0000:03:00.0,0000:04:00.0,"
                                                       "0000:05:00.0",
                                                       &q));
                ASSERT_OK(emu_device_request(emu_platform_get_device(q, 3), EMU_SCOPE_INFO, msg, msg_len, plain,
                                             sizeof(plain), &plain_len));
                ASSERT_EQ(len, plain_len);
                ASSERT_MEMEQ(resp, plain, len);
                /* Same seed: the fault is behaviour, not identity. */
                ASSERT_OK(emu_device_bind(tdisp, resp));
                ASSERT_OK(emu_device_bind(emu_platform_get_device(q, 3), plain));
                ASSERT_MEMEQ(resp, plain, TDISP_NONCE_SIZE);
        }

        /* A hand-built config with a fault out of range is refused, not armed. */
        {
                EmuDeviceConfig c;
                EmuDevice *d = NULL;

                ASSERT_OK(emu_device_config_parse("0000:06:00.0", &c));
                c.fault = _EMU_FAULT_MAX;
                ASSERT_ERRNO(emu_device_new(&c, &d), EINVAL);
                ASSERT_NULL(d);
        }
}

TEST_MAIN();
