/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Discovery with the real sd-device code against fixture trees bound over /sys in a private
 * mount namespace: TSM count and backend type, PCI devices with TDISP capability, connection
 * and authentication state, rescans and single-device refreshes.
 *
 * Runs in: tests; needs root for the namespace (SKIPs otherwise), except where noted.
 */

#include <fcntl.h>
#include <limits.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "discovery.h"
#include "harness.h"
#include "inventory.h"
#include "log-capture.h"
#include "macro.h"
#include "platform-test-util.h"
#include "sysfs-fixture.h"

#define MAX_LOG 256

#define NIC "/devices/pci0000:00/0000:00:01.1/0000:01:00.0"
#define NVME "/devices/pci0000:00/0000:00:03.1/0000:03:00.0"
#define GPU "/devices/pci0000:00/0000:00:02.1/0000:02:00.0"

typedef struct EventLog {
        InventoryEventType type[MAX_LOG];
        char key[MAX_LOG][32];
        unsigned changes[MAX_LOG];
        size_t n;
} EventLog;

static void record(Inventory *inv, const InventoryEvent *ev, void *userdata) {
        EventLog *log = userdata;

        if (log->n >= MAX_LOG)
                return;
        log->type[log->n] = ev->type;
        snprintf(log->key[log->n], sizeof(log->key[0]), "%s",
                 ev->tsm ? ev->tsm->name : ev->device->address);
        log->changes[log->n] = ev->changes;
        log->n++;
}

static Inventory *scan(Discovery **ret_d) {
        Inventory *inv;
        Discovery *d;

        ASSERT_OK(inventory_new(&inv));
        ASSERT_OK(discovery_new(inv, NULL, &d));
        ASSERT_OK(discovery_scan(d));
        *ret_d = d;
        return inv;
}

/* The two-TSM fixture scanned, every later event of its inventory recorded in log. */
static Inventory *scan_watched_two_tsms(const char **ret_root, Discovery **ret_d, EventLog *log) {
        Inventory *inv;

        platform_test_sandbox(false);
        *ret_root = platform_test_fixture("two-tsms", NULL);
        inv = scan(ret_d);
        ASSERT_OK(inventory_add_watch(inv, record, log, NULL));
        return inv;
}

static const InventoryDevice *device(Inventory *inv, const char *address) {
        const InventoryDevice *d = inventory_get_device(inv, address);

        if (!d)
                TEST_FAIL("device %s not discovered", address);
        return d;
}

TEST(enter_sysfs_root_argument_checks) {
        /* These paths return before touching namespaces: no privileges needed. */
        int fd;

        ASSERT_EQ(discovery_enter_sysfs_root(NULL), 0);
        ASSERT_EQ(discovery_enter_sysfs_root("/sys"), 0);
        ASSERT_EQ(discovery_enter_sysfs_root("/sys/"), 0);
        ASSERT_ERRNO(discovery_enter_sysfs_root("/nonexistent-tsmd-root"), ENOENT);
        ASSERT_ERRNO(discovery_enter_sysfs_root("/sys/class"), EINVAL);

        char file[] = "/tmp/tsmd-notadir-XXXXXX";
        fd = mkstemp(file);
        ASSERT_TRUE(fd >= 0);
        close(fd);
        ASSERT_ERRNO(discovery_enter_sysfs_root(file), ENOTDIR);
        unlink(file);
}

TEST(no_tsm) {
        Discovery *d;
        Inventory *inv;

        platform_test_sandbox(false);
        platform_test_fixture("no-tsm", NULL);
        inv = scan(&d);

        ASSERT_EQ(inventory_n_tsms(inv), 0);
        ASSERT_EQ(inventory_n_devices(inv), 3);
        for (size_t i = 0; i < inventory_n_devices(inv); i++) {
                const InventoryDevice *dv = inventory_device_at(inv, i);

                ASSERT_FALSE(dv->tdisp_capable);
                ASSERT_NULL(dv->connected_tsm);
                ASSERT_EQ(dv->authenticated, -1);
        }

        const InventoryDevice *v = device(inv, "0000:00:01.0");
        ASSERT_STREQ(v->syspath, "/sys/devices/pci0000:00/0000:00:01.0");
        ASSERT_STREQ(v->driver, "virtio-pci");
        ASSERT_EQ(v->vendor_id, 0x1af4);
        ASSERT_EQ(v->device_id, 0x1045);
        ASSERT_EQ(v->class_code, 0xffff00);
        ASSERT_NULL(device(inv, "0000:00:00.0")->driver);

        discovery_free(d);
        inventory_free(inv);
}

TEST(devsec_sample) {
        Discovery *d;
        Inventory *inv;
        const InventoryTsm *t;

        platform_test_sandbox(false);
        platform_test_fixture("devsec-sample", NULL);
        inv = scan(&d);

        ASSERT_EQ(inventory_n_tsms(inv), 1);
        t = inventory_get_tsm(inv, "tsm0");
        ASSERT_NOT_NULL(t);
        ASSERT_EQ(t->type, TSM_BACKEND_DEVSEC_SAMPLE);
        ASSERT_STREQ(t->syspath, "/sys/devices/faux/devsec_link_tsm/tsm/tsm0");
        ASSERT_STREQ(t->parent_syspath, "/sys/devices/faux/devsec_link_tsm");
        ASSERT_STREQ(t->parent_subsystem, "faux");
        ASSERT_STREQ(t->parent_driver, "faux_driver");
        ASSERT_STREQ(t->parent_sysname, "devsec_link_tsm");
        ASSERT_STREQ(t->pci_mode, "link");

        /* 2 host functions, 2 emulated root ports, 2 x 2 emulated endpoint functions. */
        ASSERT_EQ(inventory_n_devices(inv), 8);

        const char *dsm[] = { "10000:01:00.0", "10001:03:00.0" };
        const char *fn1[] = { "10000:01:00.1", "10001:03:00.1" };
        for (size_t i = 0; i < 2; i++) {
                const InventoryDevice *a = device(inv, dsm[i]), *b = device(inv, fn1[i]);

                ASSERT_TRUE(a->tdisp_capable);
                ASSERT_NULL(a->connected_tsm); /* the sample's connect() always fails */
                ASSERT_EQ(a->authenticated, 0);
                ASSERT_EQ(a->vendor_id, 0x8086);
                ASSERT_EQ(a->device_id, 0xffff);
                ASSERT_EQ(a->class_code, 0x120000);
                ASSERT_NULL(a->dsm_address);
                /* Function 1 has no tsm/: its function 0 is its DSM, not connected. */
                ASSERT_TRUE(b->tdisp_capable);
                ASSERT_STREQ(b->dsm_address, dsm[i]);
                ASSERT_NULL(b->connected_tsm);
                ASSERT_EQ(b->authenticated, -1);
        }
        ASSERT_STREQ(device(inv, "10000:01:00.0")->syspath,
                     "/sys/devices/faux/devsec_bus/pci10000:00/10000:00:00.0/10000:01:00.0");
        ASSERT_FALSE(device(inv, "10001:02:00.0")->tdisp_capable);

        discovery_free(d);
        inventory_free(inv);
}

TEST(two_tsms) {
        Discovery *d;
        Inventory *inv;
        const InventoryTsm *t0, *t1;
        uint32_t n;

        platform_test_sandbox(false);
        platform_test_fixture("two-tsms", NULL);
        inv = scan(&d);

        ASSERT_EQ(inventory_n_tsms(inv), 2);
        t0 = inventory_get_tsm(inv, "tsm0");
        t1 = inventory_get_tsm(inv, "tsm1");
        ASSERT_EQ(t0->type, TSM_BACKEND_SEV_TIO);
        ASSERT_STREQ(t0->parent_subsystem, "pci");
        ASSERT_STREQ(t0->parent_driver, "ccp");
        ASSERT_STREQ(t0->parent_sysname, "0000:00:18.2");
        ASSERT_NULL(t0->pci_mode); /* torvalds' ABI has no pci_mode */
        ASSERT_EQ(t1->type, TSM_BACKEND_TDX_CONNECT);
        ASSERT_STREQ(t1->parent_sysname, "tdx_host");
        ASSERT_STREQ(t1->parent_syspath, "/sys/devices/faux/tdx_host");

        ASSERT_EQ(inventory_n_devices(inv), 10);

        const InventoryDevice *nic = device(inv, "0000:01:00.0");
        const InventoryDevice *gpu = device(inv, "0000:02:00.0");
        const InventoryDevice *nvme = device(inv, "0000:03:00.0");
        const InventoryDevice *fn1 = device(inv, "0000:01:00.1");
        ASSERT_TRUE(nic->tdisp_capable);
        ASSERT_STREQ(nic->connected_tsm, "tsm0");
        ASSERT_EQ(nic->authenticated, 1);
        ASSERT_STREQ(nic->driver, "vfio-pci");
        ASSERT_EQ(inventory_device_get_tsm(inv, nic)->type, TSM_BACKEND_SEV_TIO);
        ASSERT_STREQ(gpu->connected_tsm, "tsm1");
        ASSERT_EQ(inventory_device_get_tsm(inv, gpu)->type, TSM_BACKEND_TDX_CONNECT);
        ASSERT_TRUE(nvme->tdisp_capable);
        ASSERT_NULL(nvme->connected_tsm);
        ASSERT_EQ(nvme->authenticated, 0);
        ASSERT_NULL(nic->dsm_address);
        /* The NIC's function 1 has no tsm/: it is connected through function 0, its DSM. */
        ASSERT_TRUE(fn1->tdisp_capable);
        ASSERT_STREQ(fn1->dsm_address, "0000:01:00.0");
        ASSERT_STREQ(fn1->connected_tsm, "tsm0");
        ASSERT_EQ(inventory_device_get_tsm(inv, fn1)->type, TSM_BACKEND_SEV_TIO);
        ASSERT_EQ(fn1->authenticated, -1);
        ASSERT_NULL(device(inv, "0000:00:04.0")->dsm_address);
        ASSERT_FALSE(device(inv, "0000:00:04.0")->tdisp_capable);
        ASSERT_FALSE(device(inv, "0000:00:18.2")->tdisp_capable);

        /* Scope numbers follow each device's own TSM. */
        ASSERT_OK(inventory_device_scope_number(inv, "0000:01:00.0", TSM_SCOPE_DEBUG_READ,
                                                TSM_UAPI_V5, &n));
        ASSERT_EQ(n, 2);
        ASSERT_ERRNO(inventory_device_scope_number(inv, "0000:02:00.0", TSM_SCOPE_DEBUG_READ,
                                                   TSM_UAPI_V4, &n),
                     EOPNOTSUPP);
        ASSERT_ERRNO(inventory_device_scope_number(inv, "0000:03:00.0", TSM_SCOPE_INFO,
                                                   TSM_UAPI_V4, &n),
                     ENOTCONN);

        discovery_free(d);
        inventory_free(inv);
}

/* The kernel shows tsm/ only on a DSM (SYSFS.md): a virtual function is served through its
 * PF's device's function 0, found through its physfn link, whatever its own address says; a
 * function behind a switch whose upstream port is the DSM, through that port. */
TEST(virtual_functions_and_endpoints_behind_a_switch_find_their_dsm) {
        Discovery *d;
        Inventory *inv;

        platform_test_sandbox(false);
        platform_test_fixture(
                NULL,
                "device /devices/pci0000:00\n"
                "pci /devices/pci0000:00/0000:00:18.2 vendor=0x1022 device=0x14ca class=0x108000 driver=ccp\n"
                "tsm /devices/pci0000:00/0000:00:18.2/tsm/tsm0\n"
                "pci /devices/pci0000:00/0000:00:01.1 class=0x060400 driver=pcieport\n"
                "pci /devices/pci0000:00/0000:00:01.1/0000:01:00.0 class=0x020000 tsm=tsm0\n"
                "pci /devices/pci0000:00/0000:00:01.1/0000:01:00.1 class=0x020000\n"
                /* A VF of function 0, and one of function 1: each in a slot of VFs only. */
                "pci /devices/pci0000:00/0000:00:01.1/0000:01:02.1 class=0x020000 "
                "physfn=/devices/pci0000:00/0000:00:01.1/0000:01:00.0\n"
                "pci /devices/pci0000:00/0000:00:01.1/0000:01:04.0 class=0x020000 "
                "physfn=/devices/pci0000:00/0000:00:01.1/0000:01:00.1\n"
                /* A PF whose function 0 has no tsm/, and its VF: no DSM. */
                "pci /devices/pci0000:00/0000:00:02.1 class=0x060400 driver=pcieport\n"
                "pci /devices/pci0000:00/0000:00:02.1/0000:02:00.0 class=0x020000\n"
                "pci /devices/pci0000:00/0000:00:02.1/0000:02:00.4 class=0x020000\n"
                "pci /devices/pci0000:00/0000:00:02.1/0000:02:01.0 class=0x020000 "
                "physfn=/devices/pci0000:00/0000:00:02.1/0000:02:00.4\n"
                /* A switch whose upstream port is the DSM of the endpoints below it. */
                "pci /devices/pci0000:00/0000:00:03.1 class=0x060400 driver=pcieport\n"
                "pci /devices/pci0000:00/0000:00:03.1/0000:03:00.0 class=0x060400 driver=pcieport tsm=\n"
                "pci /devices/pci0000:00/0000:00:03.1/0000:03:00.0/0000:04:01.0 class=0x060400 driver=pcieport\n"
                "pci /devices/pci0000:00/0000:00:03.1/0000:03:00.0/0000:04:01.0/0000:05:00.0 class=0x010802\n");
        inv = scan(&d);

        ASSERT_TRUE(device(inv, "0000:01:00.0")->tdisp_capable);
        ASSERT_NULL(device(inv, "0000:01:00.0")->dsm_address);
        ASSERT_TRUE(inventory_device_is_dsm(device(inv, "0000:01:00.0")));
        static const char *const served[] = { "0000:01:00.1", "0000:01:02.1", "0000:01:04.0" };
        static const char *const unserved[] = { "0000:02:00.0", "0000:02:00.4", "0000:02:01.0" };
        for (size_t i = 0; i < ELEMENTSOF(served); i++) {
                const InventoryDevice *f = device(inv, served[i]);

                ASSERT_TRUE(f->tdisp_capable);
                ASSERT_FALSE(inventory_device_is_dsm(f));
                ASSERT_STREQ(f->dsm_address, "0000:01:00.0");
                ASSERT_STREQ(f->connected_tsm, "tsm0");
                ASSERT_EQ(inventory_device_get_tsm(inv, f)->type, TSM_BACKEND_SEV_TIO);
        }
        for (size_t i = 0; i < ELEMENTSOF(unserved); i++) {
                const InventoryDevice *f = device(inv, unserved[i]);

                ASSERT_FALSE(f->tdisp_capable);
                ASSERT_NULL(f->dsm_address);
                ASSERT_NULL(f->connected_tsm);
        }
        /* The upstream port speaks for the endpoint two levels below it, not connected yet. */
        ASSERT_TRUE(inventory_device_is_dsm(device(inv, "0000:03:00.0")));
        ASSERT_TRUE(device(inv, "0000:05:00.0")->tdisp_capable);
        ASSERT_STREQ(device(inv, "0000:05:00.0")->dsm_address, "0000:03:00.0");
        ASSERT_NULL(device(inv, "0000:05:00.0")->connected_tsm);

        discovery_free(d);
        inventory_free(inv);
}

/* Mainline kernels show tsm/ on every function a connected DSM manages too, with tsm/dsm naming
 * the DSM and tsm/bound, but no connect (managed-functions.sysfs): such a function is served
 * through its DSM, connected with it, and is no DSM itself. */
TEST(managed_functions_are_served_through_the_dsm_their_tsm_dsm_names) {
        static const struct {
                const char *address, *dsm, *tsm;
                TsmBackendType type;
        } managed[] = {
                { "0000:01:00.1", "0000:01:00.0", "tsm0", TSM_BACKEND_SEV_TIO },
                { "0000:01:02.0", "0000:01:00.0", "tsm0", TSM_BACKEND_SEV_TIO }, /* a VF */
                /* Function 0 of an endpoint whose switch is its DSM. */
                { "0000:04:00.0", "0000:02:00.0", "tsm1", TSM_BACKEND_TDX_CONNECT },
                { "0000:04:00.1", "0000:02:00.0", "tsm1", TSM_BACKEND_TDX_CONNECT },
        };
        Discovery *d;
        Inventory *inv;
        uint32_t n;

        platform_test_sandbox(false);
        platform_test_fixture("managed-functions", NULL);
        inv = scan(&d);

        for (size_t i = 0; i < ELEMENTSOF(managed); i++) {
                const InventoryDevice *f = device(inv, managed[i].address);

                ASSERT_TRUE(f->tdisp_capable);
                ASSERT_FALSE(inventory_device_is_dsm(f));
                ASSERT_STREQ(f->dsm_address, managed[i].dsm);
                ASSERT_STREQ(f->connected_tsm, managed[i].tsm);
                ASSERT_EQ(inventory_device_get_tsm(inv, f)->type, managed[i].type);
                ASSERT_EQ(f->authenticated, 1);
                ASSERT_EQ(f->bound, 0);
                /* A guest request's scope is its DSM's TSM's. */
                ASSERT_OK(inventory_device_scope_number(inv, managed[i].address, TSM_SCOPE_STATE_CHANGE,
                                                        TSM_UAPI_V5, &n));
                ASSERT_EQ(n, 1);
        }
        ASSERT_ERRNO(inventory_device_scope_number(inv, "0000:04:00.1", TSM_SCOPE_DEBUG_READ, TSM_UAPI_V4, &n),
                     EOPNOTSUPP); /* TDX Connect's v4 table, not SEV-TIO's */

        /* The DSMs: their own, tsm/bound read as the kernel has it. */
        ASSERT_TRUE(inventory_device_is_dsm(device(inv, "0000:01:00.0")));
        ASSERT_STREQ(device(inv, "0000:01:00.0")->connected_tsm, "tsm0");
        ASSERT_EQ(device(inv, "0000:01:00.0")->bound, 1);
        ASSERT_TRUE(inventory_device_is_dsm(device(inv, "0000:02:00.0")));
        ASSERT_EQ(device(inv, "0000:02:00.0")->bound, 0);
        ASSERT_TRUE(inventory_device_is_dsm(device(inv, "0000:05:00.0")));
        ASSERT_NULL(device(inv, "0000:05:00.0")->connected_tsm);
        ASSERT_STREQ(device(inv, "0000:05:00.1")->dsm_address, "0000:05:00.0");
        ASSERT_NULL(device(inv, "0000:05:00.1")->connected_tsm);
        ASSERT_EQ(device(inv, "0000:05:00.1")->bound, -1);

        discovery_free(d);
        inventory_free(inv);
}

/* tsm/dsm is the kernel's own answer (the pci_tsm's dsm_dev): believed over what the topology
 * suggests (here function 0 of the slot, connected as well), which is guesswork for kernels
 * that show no tsm/dsm. */
TEST(tsm_dsm_is_believed_over_the_topology) {
        Discovery *d;
        Inventory *inv;

        platform_test_sandbox(false);
        platform_test_fixture(
                NULL,
                "device /devices/pci0000:00\n"
                "pci /devices/pci0000:00/0000:00:18.2 vendor=0x1022 device=0x14ca class=0x108000 driver=ccp\n"
                "tsm /devices/pci0000:00/0000:00:18.2/tsm/tsm0\n"
                "device /devices/faux\n"
                "faux /devices/faux/tdx_host\n"
                "tsm /devices/faux/tdx_host/tsm/tsm1\n"
                "pci /devices/pci0000:00/0000:00:01.1 class=0x060400 driver=pcieport\n"
                "pci /devices/pci0000:00/0000:00:01.1/0000:01:00.0 class=0x020000 tsm=tsm0\n"
                "pci /devices/pci0000:00/0000:00:01.1/0000:01:00.1 class=0x020000 dsm=0000:03:00.0 auth=tsm1\n"
                "pci /devices/pci0000:00/0000:00:03.1 class=0x060400 driver=pcieport\n"
                "pci /devices/pci0000:00/0000:00:03.1/0000:03:00.0 class=0x020000 tsm=tsm1\n"
                /* Names no other function: the topology decides. */
                "pci /devices/pci0000:00/0000:00:01.1/0000:01:00.2 class=0x020000 dsm=0000:01:00.2 auth=tsm0\n");
        inv = scan(&d);

        ASSERT_STREQ(device(inv, "0000:01:00.1")->dsm_address, "0000:03:00.0");
        ASSERT_STREQ(device(inv, "0000:01:00.1")->connected_tsm, "tsm1");
        ASSERT_STREQ(device(inv, "0000:01:00.2")->dsm_address, "0000:01:00.0");
        ASSERT_STREQ(device(inv, "0000:01:00.2")->connected_tsm, "tsm0");
        ASSERT_EQ(device(inv, "0000:01:00.2")->bound, -1);

        discovery_free(d);
        inventory_free(inv);
}

TEST(unrecognised_parent_is_listed_without_a_type) {
        Discovery *d;
        Inventory *inv;
        const InventoryTsm *t;

        platform_test_sandbox(false);
        platform_test_fixture(NULL,
                              "device /devices/platform\n"
                              "busdev /devices/platform/MYST0001:00 bus=platform driver=mystery_tsm\n"
                              "tsm /devices/platform/MYST0001:00/tsm/tsm3 pci_mode=link\n"
                              "busdev /devices/platform/arm-rmi-dev bus=arm_smccc driver=arm_cca_host\n"
                              "tsm /devices/platform/arm-rmi-dev/tsm/tsm4\n");
        inv = scan(&d);

        ASSERT_EQ(inventory_n_tsms(inv), 2);
        t = inventory_get_tsm(inv, "tsm3");
        ASSERT_EQ(t->type, _TSM_BACKEND_TYPE_INVALID);
        ASSERT_STREQ(t->parent_subsystem, "platform");
        ASSERT_STREQ(t->parent_driver, "mystery_tsm");
        ASSERT_EQ(inventory_get_tsm(inv, "tsm4")->type, TSM_BACKEND_ARM_CCA);
        ASSERT_EQ(inventory_n_devices(inv), 0);

        discovery_free(d);
        inventory_free(inv);
}

/* A device whose PCI domain is longer than the monitor's channel carries (the kernel prints up to
 * 8 digits, tsmd serves 7) is skipped, and said so, rather than listed and then failing at its
 * first call; its neighbours are discovered. */
TEST(device_whose_address_is_too_long_is_skipped) {
        _cleanup_free_ char *text = NULL;
        Discovery *d;
        Inventory *inv;
        int saved;

        platform_test_sandbox(false);
        platform_test_fixture(NULL,
                              "device /devices/pci0000:00\n"
                              "pci /devices/pci0000:00/0000:00:01.0 vendor=0x1af4 device=0x1041\n"
                              "device /devices/pcifffffff:00\n"
                              "pci /devices/pcifffffff:00/fffffff:00:00.0 vendor=0x1af4 device=0x1041\n"
                              "device /devices/pciffffffff:00\n"
                              "pci /devices/pciffffffff:00/ffffffff:00:00.0 vendor=0x1af4 device=0x1041\n");
        saved = log_capture_begin();
        inv = scan(&d);
        text = log_capture_end(saved);

        ASSERT_EQ(inventory_n_devices(inv), 2);
        device(inv, "0000:00:01.0");
        device(inv, "fffffff:00:00.0");
        ASSERT_NULL(inventory_get_device(inv, "ffffffff:00:00.0"));
        ASSERT_NOT_NULL(strstr(text, "Skipping pci device /sys/devices/pciffffffff:00/ffffffff:00:00.0: its address is "
                                     "longer than the 15 characters tsmd serves"));

        discovery_free(d);
        inventory_free(inv);
}

static void check_scaled(unsigned n_devices) {
        _cleanup_free_ char *text = sysfs_fixture_generate_scaled(n_devices);
        SysfsFixtureCounts want;
        unsigned dsm = 0, tdisp = 0, connected = 0;
        Discovery *d;
        Inventory *inv;

        ASSERT_NOT_NULL(text);
        sysfs_fixture_scaled_counts(n_devices, &want);
        platform_test_sandbox(false);
        platform_test_fixture(NULL, text);
        inv = scan(&d);

        ASSERT_EQ(inventory_n_tsms(inv), 2);
        ASSERT_EQ(inventory_n_devices(inv), want.n_pci);
        for (size_t i = 0; i < inventory_n_devices(inv); i++) {
                const InventoryDevice *dv = inventory_device_at(inv, i);

                tdisp += dv->tdisp_capable;
                dsm += inventory_device_is_dsm(dv);
                if (dv->connected_tsm) {
                        connected++;
                        ASSERT_NOT_NULL(inventory_device_get_tsm(inv, dv));
                }
        }
        ASSERT_EQ(dsm, want.n_dsm);
        ASSERT_EQ(tdisp, want.n_tdisp);
        ASSERT_EQ(connected, want.n_connected);

        discovery_free(d);
        inventory_free(inv);
}

TEST(scaled_100) {
        check_scaled(100);
}

TEST(scaled_1000) {
        check_scaled(1000);
}

TEST(rescan_reconciles_changes) {
        const char *root;
        Discovery *d;
        Inventory *inv;
        EventLog log = {};

        inv = scan_watched_two_tsms(&root, &d, &log);

        /* Behind sd-device's back: disconnect the NIC, remove the GPU, drop tsm1. */
        ASSERT_OK(sysfs_fixture_write_attr(root, NIC, "tsm/connect", ""));
        ASSERT_OK(sysfs_fixture_write_attr(root, NIC, "authenticated", ""));
        ASSERT_OK(sysfs_fixture_remove(root, "/devices/pci0000:00/0000:00:02.1/0000:02:00.0"));
        ASSERT_OK(sysfs_fixture_remove(root, "/devices/faux/tdx_host/tsm/tsm1"));
        ASSERT_OK(discovery_scan(d));

        ASSERT_EQ(inventory_n_tsms(inv), 1);
        ASSERT_EQ(inventory_n_devices(inv), 9);
        ASSERT_NULL(device(inv, "0000:01:00.0")->connected_tsm);
        ASSERT_NULL(device(inv, "0000:01:00.1")->connected_tsm);
        ASSERT_EQ(log.n, 4);
        ASSERT_EQ(log.type[0], INVENTORY_DEVICE_CHANGED);
        ASSERT_STREQ(log.key[0], "0000:01:00.0");
        ASSERT_EQ(log.changes[0], INVENTORY_CHANGE_CONNECT | INVENTORY_CHANGE_AUTH);
        /* Its function 1 with it. */
        ASSERT_EQ(log.type[1], INVENTORY_DEVICE_CHANGED);
        ASSERT_STREQ(log.key[1], "0000:01:00.1");
        ASSERT_EQ(log.changes[1], INVENTORY_CHANGE_CONNECT);
        ASSERT_EQ(log.type[2], INVENTORY_TSM_REMOVED);
        ASSERT_STREQ(log.key[2], "tsm1");
        ASSERT_EQ(log.type[3], INVENTORY_DEVICE_REMOVED);
        ASSERT_STREQ(log.key[3], "0000:02:00.0");

        /* A scan with nothing changed emits nothing. */
        ASSERT_OK(discovery_scan(d));
        ASSERT_EQ(log.n, 4);

        discovery_free(d);
        inventory_free(inv);
}

/* A device that cannot be read in one rescan (an attribute read failing with something other
 * than "gone", e.g. interrupted on a real kernel) is kept as it was, not removed: the worker and
 * the monitor rescan on their own, and one of them would take it for gone. */
TEST(unreadable_device_is_kept) {
        char path[PATH_MAX];
        const char *root;
        Discovery *d;
        Inventory *inv;
        EventLog log = {};

        inv = scan_watched_two_tsms(&root, &d, &log);
        ASSERT_STREQ(device(inv, "0000:01:00.0")->connected_tsm, "tsm0");

        /* Reading it fails with EISDIR from now on. */
        snprintf(path, sizeof(path), "%s%s/authenticated", root, NIC);
        ASSERT_OK(unlink(path));
        ASSERT_OK(mkdir(path, 0755));
        ASSERT_OK(discovery_scan(d));
        ASSERT_EQ(log.n, 0u);
        ASSERT_STREQ(device(inv, "0000:01:00.0")->connected_tsm, "tsm0");

        /* Another's IDs, read first: not another device with IDs 0. */
        snprintf(path, sizeof(path), "%s%s/vendor", root, GPU);
        ASSERT_OK(unlink(path));
        ASSERT_OK(mkdir(path, 0755));
        ASSERT_OK(discovery_scan(d));
        ASSERT_EQ(log.n, 0u);
        ASSERT_EQ(device(inv, "0000:02:00.0")->vendor_id, 0x10de);

        /* Gone for real: removed, and its function 1 has no DSM any more. */
        ASSERT_OK(sysfs_fixture_remove(root, NIC));
        ASSERT_OK(discovery_scan(d));
        ASSERT_EQ(log.n, 2u);
        ASSERT_EQ(log.type[0], INVENTORY_DEVICE_CHANGED);
        ASSERT_STREQ(log.key[0], "0000:01:00.1");
        ASSERT_EQ(log.changes[0], INVENTORY_CHANGE_TDISP | INVENTORY_CHANGE_DSM | INVENTORY_CHANGE_CONNECT);
        ASSERT_EQ(log.type[1], INVENTORY_DEVICE_REMOVED);
        ASSERT_STREQ(log.key[1], "0000:01:00.0");

        discovery_free(d);
        inventory_free(inv);
}

/* What the kernel names is text a reply carries (ListDevices' "tsm", ListBackends'
 * "parentDriver"), which must be UTF-8: a connection that reads as no TSM name is none, a
 * driver name that is not printable ASCII is unknown. */
TEST(kernel_names_that_are_no_names_are_left_out) {
        char path[PATH_MAX];
        const char *root;
        Discovery *d;
        Inventory *inv;
        EventLog log = {};

        inv = scan_watched_two_tsms(&root, &d, &log);
        ASSERT_STREQ(inventory_get_tsm(inv, "tsm0")->parent_driver, "ccp");

        ASSERT_OK(sysfs_fixture_write_attr(root, NIC, "tsm/connect", "tsm0\xff"));
        snprintf(path, sizeof(path), "%s/devices/pci0000:00/0000:00:18.2/driver", root);
        ASSERT_OK(unlink(path));
        ASSERT_OK(symlink("../../../bus/pci/drivers/cc\x1b[2Jp", path));
        ASSERT_OK(discovery_scan(d));
        ASSERT_NULL(device(inv, "0000:01:00.0")->connected_tsm);
        ASSERT_NULL(inventory_get_tsm(inv, "tsm0")->parent_driver);

        ASSERT_OK(sysfs_fixture_write_attr(root, NIC, "tsm/connect", "tsm0"));
        ASSERT_OK(discovery_scan(d));
        ASSERT_STREQ(device(inv, "0000:01:00.0")->connected_tsm, "tsm0");

        discovery_free(d);
        inventory_free(inv);
}

/* The same for a TSM: its parent unreadable in one rescan, it stays, and with it what routes to
 * it (before, it was removed from this process's inventory until the next rescan). */
TEST(unreadable_tsm_is_kept) {
        char path[PATH_MAX];
        const char *root;
        Discovery *d;
        Inventory *inv;
        EventLog log = {};

        inv = scan_watched_two_tsms(&root, &d, &log);
        ASSERT_NOT_NULL(inventory_get_tsm(inv, "tsm0"));

        /* Reading its pci_mode fails with EISDIR from now on. */
        snprintf(path, sizeof(path), "%s/devices/pci0000:00/0000:00:18.2/tsm/tsm0/pci_mode", root);
        ASSERT_OK(mkdir(path, 0755));
        ASSERT_OK(discovery_scan(d));
        ASSERT_EQ(log.n, 0u);
        ASSERT_NOT_NULL(inventory_get_tsm(inv, "tsm0"));

        /* Gone for real: removed. */
        ASSERT_OK(rmdir(path));
        ASSERT_OK(sysfs_fixture_remove(root, "/devices/pci0000:00/0000:00:18.2/tsm/tsm0"));
        ASSERT_OK(discovery_scan(d));
        ASSERT_NULL(inventory_get_tsm(inv, "tsm0"));

        discovery_free(d);
        inventory_free(inv);
}

/* In place of the entry sysfs lists for a device (a link to its directory), a link to itself:
 * opening it fails with ELOOP. */
static void loop_entry(const char *root, const char *list, const char *name) {
        char path[PATH_MAX];

        snprintf(path, sizeof(path), "%s/%s/%s", root, list, name);
        ASSERT_TRUE(unlink(path) >= 0 || errno == ENOENT);
        ASSERT_OK(symlink(name, path));
}

static size_t n_removals(const EventLog *log) {
        size_t n = 0;

        for (size_t i = 0; i < log->n; i++)
                n += log->type[i] == INVENTORY_DEVICE_REMOVED || log->type[i] == INVENTORY_TSM_REMOVED;
        return n;
}

/* sd-device's enumerator (252) lists nothing at all once any entry fails to open, which a rescan
 * took for "no devices": every device and TSM was removed. An entry that cannot be opened (a link
 * loop: ELOOP; EACCES alike) is skipped, said so, and what it was stays; the other entries are
 * read as ever, and what is gone is still removed. */
TEST(an_entry_that_cannot_be_opened_removes_nothing) {
        _cleanup_free_ char *text = NULL;
        char path[PATH_MAX];
        const char *root;
        Discovery *d;
        Inventory *inv;
        EventLog log = {};
        int saved, r;

        inv = scan_watched_two_tsms(&root, &d, &log);
        ASSERT_EQ(inventory_n_devices(inv), 10u);

        /* An entry no device was known at, and the NVMe drive's and tsm0's own. */
        loop_entry(root, "bus/pci/devices", "0000:0f:00.0");
        loop_entry(root, "bus/pci/devices", "0000:03:00.0");
        loop_entry(root, "class/tsm", "tsm0");
        ASSERT_OK(sysfs_fixture_write_attr(root, NIC, "tsm/connect", ""));
        ASSERT_OK(sysfs_fixture_write_attr(root, NIC, "authenticated", ""));
        saved = log_capture_begin();
        r = discovery_scan(d);
        text = log_capture_end(saved);
        ASSERT_OK(r);
        ASSERT_EQ(inventory_n_devices(inv), 10u);
        ASSERT_EQ(inventory_n_tsms(inv), 2u);
        ASSERT_EQ(n_removals(&log), 0u);
        ASSERT_NOT_NULL(inventory_get_tsm(inv, "tsm0"));
        ASSERT_NULL(device(inv, "0000:03:00.0")->connected_tsm);
        ASSERT_TRUE(device(inv, "0000:03:00.0")->tdisp_capable);
        /* Read all the same: the NIC's disconnect shows. */
        ASSERT_NULL(device(inv, "0000:01:00.0")->connected_tsm);
        ASSERT_EQ(count_occurrences(text, "Failed to open pci device /sys/bus/pci/devices/0000:0f:00.0, keeping it as "
                                          "it was: Too many levels of symbolic links"),
                  1u);
        ASSERT_EQ(count_occurrences(text, "Failed to open pci device /sys/bus/pci/devices/0000:03:00.0"), 1u);
        ASSERT_EQ(count_occurrences(text, "Failed to open tsm device /sys/class/tsm/tsm0"), 1u);

        /* Gone for real, with entries that cannot be opened beside them: removed. */
        ASSERT_OK(sysfs_fixture_remove(root, GPU));
        ASSERT_OK(sysfs_fixture_remove(root, "/devices/faux/tdx_host/tsm/tsm1"));
        log.n = 0;
        ASSERT_OK(discovery_scan(d));
        ASSERT_EQ(log.n, 2u);
        ASSERT_EQ(log.type[0], INVENTORY_TSM_REMOVED);
        ASSERT_STREQ(log.key[0], "tsm1");
        ASSERT_EQ(log.type[1], INVENTORY_DEVICE_REMOVED);
        ASSERT_STREQ(log.key[1], "0000:02:00.0");

        /* No longer listed at all: removed. */
        snprintf(path, sizeof(path), "%s/bus/pci/devices/0000:03:00.0", root);
        ASSERT_OK(unlink(path));
        ASSERT_OK(discovery_scan(d));
        ASSERT_NULL(inventory_get_device(inv, "0000:03:00.0"));
        ASSERT_EQ(inventory_n_devices(inv), 8u);
        ASSERT_NOT_NULL(inventory_get_tsm(inv, "tsm0"));

        discovery_free(d);
        inventory_free(inv);
}

/* Descriptors run out (RLIMIT_NOFILE reached, by tsmd or its guests' many connections): sd-device
 * could then list nothing, and a rescan removed every device and TSM. A list that cannot be read
 * now fails the scan, which removes nothing; entries that cannot be opened are kept. From none
 * free (the list cannot be opened) to a few (entries cannot, or can all). */
TEST(a_scan_without_descriptors_removes_nothing) {
        int fds[512];
        struct rlimit saved, low;
        const char *root;
        Discovery *d;
        Inventory *inv;
        EventLog log = {};

        inv = scan_watched_two_tsms(&root, &d, &log);
        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &saved));
        low = saved;
        low.rlim_cur = MIN(saved.rlim_cur, (rlim_t) ELEMENTSOF(fds));

        for (unsigned n_free = 0; n_free <= 4; n_free++) {
                size_t n = 0;
                int r;

                ASSERT_OK(setrlimit(RLIMIT_NOFILE, &low));
                while (n < ELEMENTSOF(fds) && (fds[n] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
                        n++;
                ASSERT_EQ(errno, EMFILE);
                for (unsigned i = 0; i < n_free; i++)
                        safe_close(fds[--n]);
                r = discovery_scan(d);
                close_many(fds, n);
                ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));

                ASSERT_EQ(n_removals(&log), 0u);
                ASSERT_EQ(inventory_n_devices(inv), 10u);
                ASSERT_EQ(inventory_n_tsms(inv), 2u);
                ASSERT_STREQ(device(inv, "0000:02:00.0")->connected_tsm, "tsm1");
                /* The list itself could not be opened: said so. */
                if (n_free == 0 || r < 0)
                        ASSERT_ERRNO(r, EMFILE);
        }

        /* With descriptors again, a device gone is removed. */
        ASSERT_OK(sysfs_fixture_remove(root, GPU));
        ASSERT_OK(discovery_scan(d));
        ASSERT_EQ(n_removals(&log), 1u);
        ASSERT_NULL(inventory_get_device(inv, "0000:02:00.0"));

        discovery_free(d);
        inventory_free(inv);
}

/* A DSM's connect and disconnect send no uevent, for it nor for the functions it speaks for: a
 * look at the DSM (tsmd's own after writing its tsm/connect) takes its functions along. */
TEST(refreshing_a_dsm_refreshes_its_functions) {
        const char *root;
        Discovery *d;
        Inventory *inv;
        EventLog log = {};

        inv = scan_watched_two_tsms(&root, &d, &log);
        ASSERT_STREQ(device(inv, "0000:01:00.1")->connected_tsm, "tsm0");

        ASSERT_OK(sysfs_fixture_write_attr(root, NIC, "tsm/connect", ""));
        ASSERT_OK(sysfs_fixture_write_attr(root, NIC, "authenticated", ""));
        ASSERT_OK(discovery_refresh_device(d, "0000:01:00.0"));
        ASSERT_NULL(device(inv, "0000:01:00.0")->connected_tsm);
        ASSERT_NULL(device(inv, "0000:01:00.1")->connected_tsm);
        ASSERT_EQ(log.n, 2u);
        ASSERT_STREQ(log.key[1], "0000:01:00.1");
        ASSERT_EQ(log.changes[1], INVENTORY_CHANGE_CONNECT);

        ASSERT_OK(sysfs_fixture_write_attr(root, NIC, "tsm/connect", "tsm1"));
        ASSERT_OK(discovery_refresh_device(d, "0000:01:00.0"));
        ASSERT_STREQ(device(inv, "0000:01:00.1")->connected_tsm, "tsm1");
        ASSERT_EQ(inventory_device_get_tsm(inv, device(inv, "0000:01:00.1"))->type, TSM_BACKEND_TDX_CONNECT);

        /* A look at a function that is no DSM looks at nothing else. */
        log.n = 0;
        ASSERT_OK(discovery_refresh_device(d, "0000:01:00.1"));
        ASSERT_OK(discovery_refresh_device(d, "0000:00:04.0"));
        ASSERT_EQ(log.n, 0u);

        discovery_free(d);
        inventory_free(inv);
}

TEST(refresh_single_device) {
        const char *root;
        Discovery *d;
        Inventory *inv;
        EventLog log = {};

        inv = scan_watched_two_tsms(&root, &d, &log);

        /* What tsmd's own "echo tsm1 > tsm/connect" would do; the kernel sends no uevent. */
        ASSERT_OK(sysfs_fixture_write_attr(root, NVME, "tsm/connect", "tsm1"));
        ASSERT_OK(sysfs_fixture_write_attr(root, NVME, "authenticated", "tsm1"));
        ASSERT_OK(discovery_refresh_device(d, "0000:03:00.0"));
        ASSERT_STREQ(device(inv, "0000:03:00.0")->connected_tsm, "tsm1");
        ASSERT_EQ(device(inv, "0000:03:00.0")->authenticated, 1);
        ASSERT_EQ(log.n, 1);
        ASSERT_EQ(log.changes[0], INVENTORY_CHANGE_CONNECT | INVENTORY_CHANGE_AUTH);

        ASSERT_OK(sysfs_fixture_remove(root, NVME));
        ASSERT_OK(discovery_refresh_device(d, "0000:03:00.0"));
        ASSERT_NULL(inventory_get_device(inv, "0000:03:00.0"));
        ASSERT_EQ(log.type[1], INVENTORY_DEVICE_REMOVED);

        /* Unknown and already-gone devices are not errors; malformed addresses are. */
        ASSERT_OK(discovery_refresh_device(d, "0000:03:00.0"));
        ASSERT_ERRNO(discovery_refresh_device(d, "../../../etc"), EINVAL);
        ASSERT_ERRNO(discovery_refresh_device(d, "0000:03:00"), EINVAL);
        ASSERT_EQ(log.n, 2);

        /* Without an event base there is nothing to attach a monitor to. */
        ASSERT_ERRNO(discovery_start_monitor(d), EINVAL);

        discovery_free(d);
        inventory_free(inv);
}

TEST_MAIN();
