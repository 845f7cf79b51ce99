/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Hotplug end to end: the real sd_device_monitor, driven from a libevent loop, receives
 * udev-format events that this test sends to the udev netlink group, while the fixture tree
 * under /sys is edited the way the kernel would change sysfs. Runs in private mount and
 * network namespaces, so the fake events never reach the host's listeners (netlink multicast
 * does not cross network namespaces).
 *
 * Runs in: tests; needs root (SKIPs otherwise).
 */

#include <event2/event.h>
#include <limits.h>
#include <sys/stat.h>

#include "backend.h"
#include "discovery.h"
#include "harness.h"
#include "inventory.h"
#include "macro.h"
#include "platform-test-util.h"
#include "sysfs-fixture.h"
#include "uevent-sender.h"

#define MAX_LOG 128

#define NIC "/devices/pci0000:00/0000:00:01.1/0000:01:00.0"
#define VIRTIO "/devices/pci0000:00/0000:00:04.0" /* two-tsms: function 0 of no DSM */
#define NVME "/devices/pci0000:00/0000:00:03.1/0000:03:00.0"
#define GPU "/devices/pci0000:00/0000:00:02.1/0000:02:00.0"
#define TSM1 "/devices/faux/tdx_host/tsm/tsm1"
#define DEVSEC_VIRTIO "/devices/pci0000:00/0000:00:01.0" /* devsec-sample: function 0 of no DSM */
#define NEW_PORT "/devices/pci0000:00/0000:00:05.1"

typedef struct Ctx {
        struct event_base *base;
        Inventory *inv;
        Discovery *d;
        const char *root;
        uint64_t seqnum;
        InventoryEventType type[MAX_LOG];
        char key[MAX_LOG][32];
        unsigned changes[MAX_LOG];
        size_t n;
} Ctx;

static void record(Inventory *inv, const InventoryEvent *ev, void *userdata) {
        Ctx *c = userdata;

        if (c->n >= MAX_LOG)
                return;
        c->type[c->n] = ev->type;
        snprintf(c->key[c->n], sizeof(c->key[0]), "%s",
                 ev->tsm ? ev->tsm->name : ev->device->address);
        c->changes[c->n] = ev->changes;
        c->n++;
}

/* The fixture's tree under a discovery that scanned it once, no monitor started. */
static void scanned(Ctx *c, const char *fixture) {
        c->root = platform_test_fixture(fixture, NULL);
        c->base = event_base_new();
        ASSERT_NOT_NULL(c->base);
        ASSERT_OK(inventory_new(&c->inv));
        ASSERT_OK(discovery_new(c->inv, c->base, &c->d));
        ASSERT_OK(discovery_scan(c->d));
}

static void setup(Ctx *c, const char *fixture) {
        int r;

        *c = (Ctx) {};
        if (!platform_test_udev_monitor_possible())
                SKIP("sd-device disables udev monitors without /run/udev/control or a devtmpfs /dev");
        platform_test_sandbox(true);
        platform_test_fake_udevd(true);

        /* SECURITY: fake uevents must never be sent in the host's network namespace. */
        ASSERT_TRUE(platform_test_netns_is_private());
        r = uevent_in_private_netns();
        ASSERT_OK(r);
        ASSERT_EQ(r, 1);

        scanned(c, fixture);
        ASSERT_OK(inventory_add_watch(c->inv, record, c, NULL));
        ASSERT_OK(discovery_start_monitor(c->d));
        ASSERT_ERRNO(discovery_start_monitor(c->d), EBUSY);
        ASSERT_EQ(discovery_get_resync_interval(c->d), DISCOVERY_RESYNC_USEC);
}

static void teardown(Ctx *c) {
        discovery_free(c->d);
        inventory_free(c->inv);
        event_base_free(c->base);
}

static void send_event_extra(Ctx *c, const char *action, const char *devpath, const char *subsystem,
                             char *const *extra) {
        int r = uevent_send(action, devpath, subsystem, extra, ++c->seqnum);

        if (r < 0)
                TEST_FAIL("uevent_send %s %s: %s", action, devpath, strerror(-r));
}

static void send_event(Ctx *c, const char *action, const char *devpath, const char *subsystem) {
        send_event_extra(c, action, devpath, subsystem, NULL);
}

/* Runs the libevent loop until the monitor has applied n events in total (5 s at most). */
static void run_until_events(Ctx *c, uint64_t n) {
        const struct timeval slice = { .tv_sec = 0, .tv_usec = 20 * 1000 };

        for (unsigned i = 0; i < 250 && discovery_n_events(c->d) < n; i++) {
                ASSERT_OK(event_base_loopexit(c->base, &slice));
                ASSERT_OK(event_base_dispatch(c->base));
        }
        if (discovery_n_events(c->d) < n)
                TEST_FAIL("only %llu of %llu device events arrived",
                          (unsigned long long) discovery_n_events(c->d), (unsigned long long) n);
}

/* Keeps the loop running a little longer to catch events that should not arrive. */
static void run_idle(Ctx *c) {
        const struct timeval t = { .tv_sec = 0, .tv_usec = 200 * 1000 };

        ASSERT_OK(event_base_loopexit(c->base, &t));
        ASSERT_OK(event_base_dispatch(c->base));
}

static ssize_t find_event(Ctx *c, size_t from, InventoryEventType type, const char *key) {
        for (size_t i = from; i < c->n; i++)
                if (c->type[i] == type && streq(c->key[i], key))
                        return (ssize_t) i;
        return -1;
}

TEST(tsm_appears_then_disappears) {
        Ctx c;
        ssize_t i;

        setup(&c, "devsec-sample");
        ASSERT_EQ(inventory_n_tsms(c.inv), 1);

        /* tsm_register(): device_add() -> "add" for the class device... */
        ASSERT_OK(sysfs_fixture_apply_text(c.root,
                                           "faux /devices/faux/tdx_host\n"
                                           "tsm /devices/faux/tdx_host/tsm/tsm1 pci_mode=link\n"));
        send_event(&c, "add", TSM1, "tsm");
        run_until_events(&c, 1);
        ASSERT_EQ(inventory_n_tsms(c.inv), 2);
        ASSERT_EQ(inventory_get_tsm(c.inv, "tsm1")->type, TSM_BACKEND_TDX_CONNECT);
        ASSERT_TRUE(find_event(&c, 0, INVENTORY_TSM_ADDED, "tsm1") >= 0);

        /* ...then pci_tsm_register() shows tsm/ on capable functions (no uevent for them) and
         * tsm-core sends KOBJ_CHANGE: the rescan it triggers must notice the new tsm/ dir. */
        ASSERT_OK(sysfs_fixture_write_attr(c.root, DEVSEC_VIRTIO, "tsm/connect", ""));
        send_event(&c, "change", TSM1, "tsm");
        run_until_events(&c, 2);
        ASSERT_TRUE(inventory_get_device(c.inv, "0000:00:01.0")->tdisp_capable);
        i = find_event(&c, 0, INVENTORY_DEVICE_CHANGED, "0000:00:01.0");
        ASSERT_TRUE(i >= 0);
        ASSERT_EQ(c.changes[i], INVENTORY_CHANGE_TDISP);

        /* tsm_unregister(): the kernel hides tsm/ again and removes the class device. */
        ASSERT_OK(sysfs_fixture_remove(c.root, DEVSEC_VIRTIO "/tsm"));
        ASSERT_OK(sysfs_fixture_remove(c.root, "/devices/faux/tdx_host"));
        send_event(&c, "remove", TSM1, "tsm");
        run_until_events(&c, 3);
        ASSERT_EQ(inventory_n_tsms(c.inv), 1);
        ASSERT_NULL(inventory_get_tsm(c.inv, "tsm1"));
        ASSERT_TRUE(find_event(&c, 0, INVENTORY_TSM_REMOVED, "tsm1") >= 0);
        ASSERT_FALSE(inventory_get_device(c.inv, "0000:00:01.0")->tdisp_capable);

        /* The original TSM is untouched. */
        ASSERT_EQ(inventory_get_tsm(c.inv, "tsm0")->type, TSM_BACKEND_DEVSEC_SAMPLE);
        teardown(&c);
}

TEST(tsm_removal_disconnects_devices) {
        Ctx c;
        ssize_t i;

        setup(&c, "two-tsms");
        ASSERT_STREQ(inventory_get_device(c.inv, "0000:02:00.0")->connected_tsm, "tsm1");

        /* pci_tsm_unregister() disconnects the GPU silently, then the class device goes. */
        ASSERT_OK(sysfs_fixture_write_attr(c.root, GPU, "tsm/connect", ""));
        ASSERT_OK(sysfs_fixture_write_attr(c.root, GPU, "authenticated", ""));
        ASSERT_OK(sysfs_fixture_remove(c.root, TSM1));
        send_event(&c, "remove", TSM1, "tsm");
        run_until_events(&c, 1);

        ASSERT_NULL(inventory_get_tsm(c.inv, "tsm1"));
        i = find_event(&c, 0, INVENTORY_DEVICE_CHANGED, "0000:02:00.0");
        ASSERT_TRUE(i >= 0);
        ASSERT_EQ(c.changes[i], INVENTORY_CHANGE_CONNECT | INVENTORY_CHANGE_AUTH);
        ASSERT_NULL(inventory_get_device(c.inv, "0000:02:00.0")->connected_tsm);
        /* The other TSM's device keeps its connection. */
        ASSERT_STREQ(inventory_get_device(c.inv, "0000:01:00.0")->connected_tsm, "tsm0");
        teardown(&c);
}

TEST(device_appears_then_disappears) {
        Ctx c;

        setup(&c, "two-tsms");
        ASSERT_EQ(inventory_n_devices(c.inv), 10);

        ASSERT_OK(sysfs_fixture_apply_line(c.root, "pci " NEW_PORT " class=0x060400 driver=pcieport"));
        ASSERT_OK(sysfs_fixture_apply_line(c.root, "pci " NEW_PORT "/0000:05:00.0 vendor=0x8086 "
                                                   "device=0x0d58 class=0x120000 tsm="));
        send_event(&c, "add", NEW_PORT, "pci");
        send_event(&c, "add", NEW_PORT "/0000:05:00.0", "pci");
        run_until_events(&c, 2);

        ASSERT_EQ(inventory_n_devices(c.inv), 12);
        const InventoryDevice *dv = inventory_get_device(c.inv, "0000:05:00.0");
        ASSERT_NOT_NULL(dv);
        ASSERT_TRUE(dv->tdisp_capable);
        ASSERT_NULL(dv->connected_tsm);
        ASSERT_EQ(dv->vendor_id, 0x8086);
        ASSERT_TRUE(find_event(&c, 0, INVENTORY_DEVICE_ADDED, "0000:05:00.0") >= 0);

        /* Hot-unplug: the directory is gone by the time the event is read. */
        ASSERT_OK(sysfs_fixture_remove(c.root, NEW_PORT));
        send_event(&c, "remove", NEW_PORT "/0000:05:00.0", "pci");
        send_event(&c, "remove", NEW_PORT, "pci");
        run_until_events(&c, 4);
        ASSERT_EQ(inventory_n_devices(c.inv), 10);
        ASSERT_NULL(inventory_get_device(c.inv, "0000:05:00.0"));
        ASSERT_TRUE(find_event(&c, 0, INVENTORY_DEVICE_REMOVED, "0000:05:00.0") >= 0);
        ASSERT_TRUE(find_event(&c, 0, INVENTORY_DEVICE_REMOVED, "0000:00:05.1") >= 0);

        /* A device that vanished before its "change" was read is removed, not an error. */
        ASSERT_OK(sysfs_fixture_remove(c.root, NVME));
        send_event(&c, "change", NVME, "pci");
        run_until_events(&c, 5);
        ASSERT_NULL(inventory_get_device(c.inv, "0000:03:00.0"));
        teardown(&c);
}

/* udevd may announce a device's function 1 before its function 0, the DSM: function 1, read
 * first, has no DSM yet, and gets no uevent of its own when function 0 comes. The DSM's takes it
 * along; and so does its removal (function 0 removed alone, by "echo 1 > remove"). */
TEST(a_dsm_announced_after_its_function_takes_it_along) {
        Ctx c;
        ssize_t i;

        setup(&c, "two-tsms");
        ASSERT_OK(sysfs_fixture_apply_line(c.root, "pci " NEW_PORT " class=0x060400 driver=pcieport"));
        ASSERT_OK(sysfs_fixture_apply_line(c.root, "pci " NEW_PORT "/0000:05:00.1 class=0x120000"));
        send_event(&c, "add", NEW_PORT, "pci");
        send_event(&c, "add", NEW_PORT "/0000:05:00.1", "pci");
        run_until_events(&c, 2);
        ASSERT_FALSE(inventory_get_device(c.inv, "0000:05:00.1")->tdisp_capable);

        ASSERT_OK(sysfs_fixture_apply_line(c.root, "pci " NEW_PORT "/0000:05:00.0 class=0x120000 tsm=tsm0"));
        send_event(&c, "add", NEW_PORT "/0000:05:00.0", "pci");
        run_until_events(&c, 3);
        ASSERT_TRUE(inventory_get_device(c.inv, "0000:05:00.1")->tdisp_capable);
        ASSERT_STREQ(inventory_get_device(c.inv, "0000:05:00.1")->dsm_address, "0000:05:00.0");
        ASSERT_STREQ(inventory_get_device(c.inv, "0000:05:00.1")->connected_tsm, "tsm0");
        i = find_event(&c, 0, INVENTORY_DEVICE_CHANGED, "0000:05:00.1");
        ASSERT_TRUE(i >= 0);
        ASSERT_EQ(c.changes[i], INVENTORY_CHANGE_TDISP | INVENTORY_CHANGE_DSM | INVENTORY_CHANGE_CONNECT);

        ASSERT_OK(sysfs_fixture_remove(c.root, NEW_PORT "/0000:05:00.0"));
        send_event(&c, "remove", NEW_PORT "/0000:05:00.0", "pci");
        run_until_events(&c, 4);
        ASSERT_NULL(inventory_get_device(c.inv, "0000:05:00.0"));
        ASSERT_FALSE(inventory_get_device(c.inv, "0000:05:00.1")->tdisp_capable);
        ASSERT_NULL(inventory_get_device(c.inv, "0000:05:00.1")->connected_tsm);
        teardown(&c);
}

TEST(device_connect_state_changes) {
        Ctx c;
        ssize_t i;
        uint32_t n;

        setup(&c, "two-tsms");
        ASSERT_ERRNO(inventory_device_scope_number(c.inv, "0000:03:00.0", TSM_SCOPE_INFO,
                                                   TSM_UAPI_V5, &n),
                     ENOTCONN);

        /* Connect the NVMe drive to tsm1 and announce it (as "udevadm trigger" would). */
        ASSERT_OK(sysfs_fixture_write_attr(c.root, NVME, "tsm/connect", "tsm1"));
        ASSERT_OK(sysfs_fixture_write_attr(c.root, NVME, "authenticated", "tsm1"));
        send_event(&c, "change", NVME, "pci");
        run_until_events(&c, 1);

        i = find_event(&c, 0, INVENTORY_DEVICE_CHANGED, "0000:03:00.0");
        ASSERT_TRUE(i >= 0);
        ASSERT_EQ(c.changes[i], INVENTORY_CHANGE_CONNECT | INVENTORY_CHANGE_AUTH);
        ASSERT_STREQ(inventory_get_device(c.inv, "0000:03:00.0")->connected_tsm, "tsm1");
        ASSERT_EQ(inventory_device_get_tsm(c.inv, inventory_get_device(c.inv, "0000:03:00.0"))->type,
                  TSM_BACKEND_TDX_CONNECT);
        ASSERT_OK(inventory_device_scope_number(c.inv, "0000:03:00.0", TSM_SCOPE_INFO,
                                                TSM_UAPI_V5, &n));
        ASSERT_EQ(n, 0);

        /* Disconnect the NIC from tsm0. */
        ASSERT_OK(sysfs_fixture_write_attr(c.root, NIC, "tsm/connect", ""));
        ASSERT_OK(sysfs_fixture_write_attr(c.root, NIC, "authenticated", ""));
        send_event(&c, "change", NIC, "pci");
        run_until_events(&c, 2);
        ASSERT_NULL(inventory_get_device(c.inv, "0000:01:00.0")->connected_tsm);
        ASSERT_EQ(inventory_get_device(c.inv, "0000:01:00.0")->authenticated, 0);

        /* A change event with nothing changed is applied but emits nothing. */
        size_t before = c.n;
        send_event(&c, "change", NIC, "pci");
        run_until_events(&c, 3);
        ASSERT_EQ(c.n, before);
        teardown(&c);
}

/* udevd runs the events of unrelated devpaths side by side and may deliver them out of order:
 * a name the kernel gave again at another path (a TSM id the IDA handed out again, a bus number
 * under another bridge) can be announced there before its old path's "remove" arrives. That late
 * "remove", or a late "change" of the old path, must not take the new one along. */
TEST(a_late_event_of_an_old_path_spares_the_name_living_elsewhere) {
        Ctx c;

        setup(&c, "two-tsms");
        ASSERT_EQ(inventory_get_tsm(c.inv, "tsm1")->type, TSM_BACKEND_TDX_CONNECT);

        /* tdx_host goes and the sample TSM registers, getting id 1 again: add first. */
        ASSERT_OK(sysfs_fixture_remove(c.root, "/devices/faux/tdx_host"));
        ASSERT_OK(sysfs_fixture_apply_text(c.root,
                                           "faux /devices/faux/devsec_link_tsm\n"
                                           "tsm /devices/faux/devsec_link_tsm/tsm/tsm1 pci_mode=link\n"));
        send_event(&c, "add", "/devices/faux/devsec_link_tsm/tsm/tsm1", "tsm");
        send_event(&c, "remove", TSM1, "tsm");
        send_event(&c, "change", TSM1, "tsm");
        run_until_events(&c, 3);
        ASSERT_NOT_NULL(inventory_get_tsm(c.inv, "tsm1"));
        ASSERT_EQ(inventory_get_tsm(c.inv, "tsm1")->type, TSM_BACKEND_DEVSEC_SAMPLE);

        /* The NVMe drive comes back behind another port with the same bus number. */
        ASSERT_OK(sysfs_fixture_remove(c.root, NVME));
        ASSERT_OK(sysfs_fixture_apply_line(c.root, "pci " NEW_PORT " class=0x060400 driver=pcieport"));
        ASSERT_OK(sysfs_fixture_apply_line(c.root, "pci " NEW_PORT "/0000:03:00.0 vendor=0x144d "
                                                   "device=0xa80a class=0x010802 driver=nvme tsm="));
        send_event(&c, "add", NEW_PORT, "pci");
        send_event(&c, "add", NEW_PORT "/0000:03:00.0", "pci");
        send_event(&c, "remove", NVME, "pci");
        send_event(&c, "change", NVME, "pci");
        run_until_events(&c, 7);
        ASSERT_NOT_NULL(inventory_get_device(c.inv, "0000:03:00.0"));
        ASSERT_STREQ(inventory_get_device(c.inv, "0000:03:00.0")->syspath, "/sys" NEW_PORT "/0000:03:00.0");

        /* A rescan agrees: nothing was stale. */
        size_t before = c.n;
        ASSERT_OK(discovery_scan(c.d));
        ASSERT_EQ(c.n, before);

        /* The remove of the path the name lives at still removes it. */
        ASSERT_OK(sysfs_fixture_remove(c.root, NEW_PORT));
        send_event(&c, "remove", NEW_PORT "/0000:03:00.0", "pci");
        run_until_events(&c, 8);
        ASSERT_NULL(inventory_get_device(c.inv, "0000:03:00.0"));
        teardown(&c);
}

/* A TSM's "change" (pci_tsm_register() done) is the only word that devices' tsm/ appeared: they
 * are read again even when the TSM itself cannot be read this time. */
TEST(tsm_change_rescans_devices_even_if_the_tsm_is_unreadable) {
        char path[PATH_MAX];
        Ctx c;
        ssize_t i;

        setup(&c, "two-tsms");
        ASSERT_FALSE(inventory_get_device(c.inv, "0000:00:04.0")->tdisp_capable);

        /* Reading tsm0's pci_mode fails with EISDIR from now on. */
        snprintf(path, sizeof(path), "%s/devices/pci0000:00/0000:00:18.2/tsm/tsm0/pci_mode", c.root);
        ASSERT_OK(mkdir(path, 0755));
        ASSERT_OK(sysfs_fixture_write_attr(c.root, VIRTIO, "tsm/connect", ""));
        send_event(&c, "change", "/devices/pci0000:00/0000:00:18.2/tsm/tsm0", "tsm");
        run_until_events(&c, 1);

        ASSERT_NOT_NULL(inventory_get_tsm(c.inv, "tsm0"));
        ASSERT_TRUE(inventory_get_device(c.inv, "0000:00:04.0")->tdisp_capable);
        i = find_event(&c, 0, INVENTORY_DEVICE_CHANGED, "0000:00:04.0");
        ASSERT_TRUE(i >= 0);
        ASSERT_EQ(c.changes[i], INVENTORY_CHANGE_TDISP);
        teardown(&c);
}

/* A TSM's "change" rescans the devices: with an entry among them that cannot be opened (a link
 * loop), sd-device's enumerator listed nothing, and the rescan removed every device. Now that
 * entry is skipped and the rest read: what changed shows, nothing is removed. */
TEST(a_tsm_change_with_an_entry_that_cannot_be_opened_removes_nothing) {
        char path[PATH_MAX];
        Ctx c;
        ssize_t i;

        setup(&c, "two-tsms");
        ASSERT_EQ(inventory_n_devices(c.inv), 10u);
        snprintf(path, sizeof(path), "%s/bus/pci/devices/0000:0f:00.0", c.root);
        ASSERT_OK(symlink("0000:0f:00.0", path));
        ASSERT_OK(sysfs_fixture_write_attr(c.root, VIRTIO, "tsm/connect", ""));
        send_event(&c, "change", TSM1, "tsm");
        run_until_events(&c, 1);

        ASSERT_EQ(inventory_n_devices(c.inv), 10u);
        ASSERT_EQ(inventory_n_tsms(c.inv), 2u);
        for (size_t k = 0; k < c.n; k++)
                ASSERT_TRUE(c.type[k] != INVENTORY_DEVICE_REMOVED && c.type[k] != INVENTORY_TSM_REMOVED);
        i = find_event(&c, 0, INVENTORY_DEVICE_CHANGED, "0000:00:04.0");
        ASSERT_TRUE(i >= 0);
        ASSERT_EQ(c.changes[i], INVENTORY_CHANGE_TDISP);
        teardown(&c);
}

/* The NVMe drive pulled and another alike put in its slot: a new directory, a new kernfs object. */
static void replace_nvme(Ctx *c) {
        ASSERT_OK(sysfs_fixture_remove(c->root, NVME));
        ASSERT_OK(sysfs_fixture_apply_line(c->root, "pci " NVME " vendor=0x144d device=0xa80a class=0x010802 "
                                                    "driver=nvme tsm="));
}

/* A device removed and another added at its address is another device, however alike, what was
 * attached to the old one gone: its "remove" lost (a receive buffer overflowing, udevd
 * restarting) or never sent (no uevents: the rescan compares). Its sysfs directory tells, another
 * kernfs object. An "add" of the device known (replayed by udevadm trigger, SYNTH_UUID, or read
 * after a rescan saw the device first) is only a look. */
TEST(a_device_replaced_at_its_address_is_another_device) {
        char *replayed[] = { (char *) "SYNTH_UUID=0", NULL };
        Ctx c;

        setup(&c, "two-tsms");
        send_event_extra(&c, "add", NVME, "pci", replayed);
        send_event(&c, "add", NVME, "pci");
        run_until_events(&c, 2);
        ASSERT_EQ(c.n, 0u);

        /* Replaced, its "remove" lost. */
        replace_nvme(&c);
        send_event(&c, "add", NVME, "pci");
        run_until_events(&c, 3);
        ASSERT_EQ(c.n, 2u);
        ASSERT_EQ(c.type[0], INVENTORY_DEVICE_REMOVED);
        ASSERT_STREQ(c.key[0], "0000:03:00.0");
        ASSERT_EQ(c.type[1], INVENTORY_DEVICE_ADDED);
        ASSERT_STREQ(c.key[1], "0000:03:00.0");
        ASSERT_TRUE(inventory_get_device(c.inv, "0000:03:00.0")->tdisp_capable);

        /* Replaced again, no uevent at all: the rescan tells. */
        replace_nvme(&c);
        ASSERT_OK(discovery_scan(c.d));
        ASSERT_EQ(c.n, 4u);
        ASSERT_EQ(c.type[2], INVENTORY_DEVICE_REMOVED);
        ASSERT_EQ(c.type[3], INVENTORY_DEVICE_ADDED);
        ASSERT_OK(discovery_scan(c.d));
        ASSERT_EQ(c.n, 4u);

        /* Its replacement gone before the "add" was read: removed all the same. */
        ASSERT_OK(sysfs_fixture_remove(c.root, NVME));
        send_event(&c, "add", NVME, "pci");
        run_until_events(&c, 4);
        ASSERT_NULL(inventory_get_device(c.inv, "0000:03:00.0"));
        ASSERT_EQ(c.n, 5u);
        ASSERT_EQ(c.type[4], INVENTORY_DEVICE_REMOVED);
        teardown(&c);
}

/* What changes between a first scan and the monitor listening sends uevents nobody hears: the
 * monitor looks again once it listens, instead of leaving it to the rescan ten minutes on. */
TEST(changes_before_the_monitor_listens_are_not_lost) {
        Ctx c = {};

        if (!platform_test_udev_monitor_possible())
                SKIP("sd-device disables udev monitors without /run/udev/control or a devtmpfs /dev");
        platform_test_sandbox(true);
        platform_test_fake_udevd(true);
        ASSERT_TRUE(platform_test_netns_is_private());
        scanned(&c, "two-tsms");
        ASSERT_NOT_NULL(inventory_get_device(c.inv, "0000:03:00.0"));

        /* The NVMe drive goes, and its "remove" is sent while nothing listens. */
        ASSERT_OK(sysfs_fixture_remove(c.root, NVME));
        send_event(&c, "remove", NVME, "pci");
        ASSERT_OK(discovery_start_monitor(c.d));
        run_idle(&c);
        ASSERT_NULL(inventory_get_device(c.inv, "0000:03:00.0"));
        ASSERT_EQ(discovery_n_events(c.d), 0u);
        teardown(&c);
}

TEST(other_subsystems_are_filtered_out) {
        Ctx c;

        setup(&c, "two-tsms");

        /* Filtered by the monitor's BPF program (MurmurHash2 of the subsystem) before
         * sd-device even parses them; only the pci event may arrive. */
        send_event(&c, "add", NIC "/net/eth9", "net");
        send_event(&c, "add", "/devices/virtual/usb/usb9", "usb");
        ASSERT_OK(sysfs_fixture_write_attr(c.root, NVME, "tsm/connect", "tsm0"));
        send_event(&c, "change", NVME, "pci");
        run_until_events(&c, 1);
        run_idle(&c);

        ASSERT_EQ(discovery_n_events(c.d), 1);
        ASSERT_STREQ(inventory_get_device(c.inv, "0000:03:00.0")->connected_tsm, "tsm0");
        teardown(&c);
}

/* A uevent lost (a receive buffer overflowing under a storm drops them silently), or a change
 * that sends none: the periodic rescan catches up. */
TEST(periodic_rescan_catches_lost_events) {
        Ctx c;
        ssize_t i;

        setup(&c, "two-tsms");
        discovery_set_resync_interval(c.d, 50 * 1000);
        ASSERT_NOT_NULL(inventory_get_device(c.inv, "0000:03:00.0"));

        ASSERT_OK(sysfs_fixture_remove(c.root, NVME));
        for (unsigned n = 0; n < 100 && inventory_get_device(c.inv, "0000:03:00.0"); n++)
                run_idle(&c);
        ASSERT_EQ(discovery_n_events(c.d), 0u); /* no uevent told it */
        ASSERT_NULL(inventory_get_device(c.inv, "0000:03:00.0"));
        i = find_event(&c, 0, INVENTORY_DEVICE_REMOVED, "0000:03:00.0");
        ASSERT_TRUE(i >= 0);
        teardown(&c);
}

/* A storm of uevents (more than one wakeup takes) may overflow the receive buffer, and sd-device
 * drops what did not fit without a word: a rescan follows once the storm has passed. */
TEST(a_storm_is_followed_by_a_rescan) {
        Ctx c;
        uint64_t n = 0;

        setup(&c, "two-tsms");
        ASSERT_NOT_NULL(inventory_get_device(c.inv, "0000:03:00.0"));

        /* The NVMe goes, its remove event "lost" in a storm of others. */
        ASSERT_OK(sysfs_fixture_remove(c.root, NVME));
        for (; n < 200; n++)
                send_event(&c, "change", NIC, "pci");
        run_until_events(&c, n);
        for (unsigned i = 0; i < 25 && inventory_get_device(c.inv, "0000:03:00.0"); i++)
                run_idle(&c);
        ASSERT_NULL(inventory_get_device(c.inv, "0000:03:00.0"));
        ASSERT_TRUE(find_event(&c, 0, INVENTORY_DEVICE_REMOVED, "0000:03:00.0") >= 0);

        /* A few events are no storm: nothing rescans behind them. */
        ASSERT_OK(sysfs_fixture_remove(c.root, GPU));
        for (uint64_t k = n + 3; n < k; n++)
                send_event(&c, "change", NIC, "pci");
        run_until_events(&c, n);
        for (unsigned i = 0; i < 10; i++)
                run_idle(&c);
        ASSERT_NOT_NULL(inventory_get_device(c.inv, "0000:02:00.0"));
        teardown(&c);
}

/* The monitor starts, but no udevd runs to rebroadcast the kernel's uevents to it (sd-device
 * listens for those): discovery knows none will come and rescans as often as without uevents. */
TEST(without_udevd_rescans_as_without_uevents) {
        Ctx c = {};

        if (!platform_test_udev_monitor_possible())
                SKIP("sd-device disables udev monitors without /run/udev/control or a devtmpfs /dev");
        platform_test_sandbox(true);
        platform_test_fake_udevd(false);
        scanned(&c, "two-tsms");
        ASSERT_OK(discovery_start_monitor(c.d));
        ASSERT_EQ(discovery_get_resync_interval(c.d), DISCOVERY_RESYNC_NO_UEVENTS_USEC);
        teardown(&c);
}

/* No uevents at all (no netlink, as under RestrictAddressFamilies= or in some containers):
 * discovery still runs, on rescans alone and more often, and a device that goes is noticed. */
TEST(without_uevents_periodic_rescan_still_runs) {
        Ctx c = {};

        platform_test_sandbox(false);
        scanned(&c, "two-tsms");
        ASSERT_OK(inventory_add_watch(c.inv, record, &c, NULL));

        platform_test_deny_netlink();
        ASSERT_OK(discovery_start_monitor(c.d));
        ASSERT_ERRNO(discovery_start_monitor(c.d), EBUSY);
        ASSERT_EQ(discovery_get_resync_interval(c.d), DISCOVERY_RESYNC_NO_UEVENTS_USEC);
        ASSERT_TRUE(DISCOVERY_RESYNC_NO_UEVENTS_USEC < DISCOVERY_RESYNC_USEC);

        discovery_set_resync_interval(c.d, 50 * 1000);
        ASSERT_NOT_NULL(inventory_get_device(c.inv, "0000:03:00.0"));
        ASSERT_OK(sysfs_fixture_remove(c.root, NVME));
        for (unsigned n = 0; n < 100 && inventory_get_device(c.inv, "0000:03:00.0"); n++)
                run_idle(&c);
        ASSERT_NULL(inventory_get_device(c.inv, "0000:03:00.0"));
        ASSERT_TRUE(find_event(&c, 0, INVENTORY_DEVICE_REMOVED, "0000:03:00.0") >= 0);
        ASSERT_EQ(discovery_n_events(c.d), 0u);
        teardown(&c);
}

TEST(murmur_hash_basics) {
        /* Agreement with libsystemd's string_hash32() is proven end to end by the tests above
         * (a wrong hash makes the monitor's BPF filter drop every event); these only pin
         * properties a refactor must keep. */
        ASSERT_EQ(uevent_murmur_hash2("", 0, 0), 0);
        ASSERT_EQ(uevent_murmur_hash2("pci", 3, 0), uevent_murmur_hash2("pci", 3, 0));
        ASSERT_NE(uevent_murmur_hash2("pci", 3, 0), uevent_murmur_hash2("tsm", 3, 0));
        ASSERT_NE(uevent_murmur_hash2("pci", 3, 0), uevent_murmur_hash2("pci", 3, 1));
}

TEST_MAIN();
