/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The inventory model on its own: keyed lookups, stable natural ordering, change events with
 * precise change masks, watcher lifetime, and mark-and-sweep.
 *
 * Runs in: tests (no privileges needed).
 */

#include "harness.h"
#include "inventory.h"
#include "macro.h"

#define MAX_LOG 64

typedef struct EventLog {
        InventoryEventType type[MAX_LOG];
        char key[MAX_LOG][32];
        unsigned changes[MAX_LOG];
        size_t n;
        unsigned destroyed;
} EventLog;

static void record(Inventory *inv, const InventoryEvent *ev, void *userdata) {
        EventLog *log = userdata;
        const char *key = ev->tsm ? ev->tsm->name : ev->device->address;

        if (log->n >= MAX_LOG)
                return;
        log->type[log->n] = ev->type;
        snprintf(log->key[log->n], sizeof(log->key[0]), "%s", key);
        log->changes[log->n] = ev->changes;
        log->n++;

        /* REMOVED events already see the object gone from lookups. */
        if (ev->type == INVENTORY_TSM_REMOVED)
                ASSERT_NULL(inventory_get_tsm(inv, key));
        if (ev->type == INVENTORY_DEVICE_REMOVED)
                ASSERT_NULL(inventory_get_device(inv, key));
}

static void count_destroy(void *userdata) {
        ((EventLog *) userdata)->destroyed++;
}

static int put_tsm(Inventory *inv, const char *name, TsmBackendType type, const char *pci_mode) {
        InventoryTsm t = { .name = (char *) name, .type = type, .pci_mode = (char *) pci_mode };

        return inventory_put_tsm(inv, &t);
}

static InventoryDevice dev(const char *address, const char *tsm) {
        return (InventoryDevice) {
                .address = (char *) address,
                .syspath = (char *) "/sys/devices/x",
                .vendor_id = 0x8086,
                .device_id = 0xffff,
                .tdisp_capable = tsm != NULL,
                .connected_tsm = tsm && *tsm ? (char *) tsm : NULL,
                .authenticated = tsm ? (*tsm ? 1 : 0) : -1,
        };
}

TEST(pci_address_syntax) {
        ASSERT_TRUE(pci_address_is_valid("0000:00:00.0"));
        ASSERT_TRUE(pci_address_is_valid("0000:ff:1f.7"));
        ASSERT_TRUE(pci_address_is_valid("10000:01:00.1")); /* devsec sample's emulated domain */
        /* As long as the monitor's channel carries: a domain of 7 digits, not the kernel's 8. */
        ASSERT_TRUE(pci_address_is_valid("fffffff:ff:1f.7"));
        ASSERT_EQ(strlen("fffffff:ff:1f.7"), PCI_ADDRESS_LEN_MAX);
        ASSERT_TRUE(strlen("fffffff:ff:1f.7") < TSM_PRIV_PCI_ADDRESS_MAX);
        ASSERT_FALSE(pci_address_is_valid("ffffffff:00:00.0"));
        ASSERT_TRUE(pci_address_is_too_long("ffffffff:00:00.0"));
        ASSERT_FALSE(pci_address_is_too_long("fffffff:00:00.0"));
        ASSERT_FALSE(pci_address_is_too_long("fffffffff:00:00.0")); /* no kernel prints it */
        ASSERT_FALSE(pci_address_is_too_long("ffffffff:00:00.8"));
        ASSERT_FALSE(pci_address_is_too_long(NULL));
        ASSERT_FALSE(pci_address_is_valid("000:00:00.0"));
        ASSERT_FALSE(pci_address_is_valid("0000:00:00.8"));
        ASSERT_FALSE(pci_address_is_valid("0000:00:00"));
        ASSERT_FALSE(pci_address_is_valid("0000:0:00.0"));
        ASSERT_FALSE(pci_address_is_valid("0000:00:00.0 "));
        ASSERT_FALSE(pci_address_is_valid("0000:AB:00.0")); /* the kernel prints lowercase */
        ASSERT_FALSE(pci_address_is_valid("../../etc"));
        ASSERT_FALSE(pci_address_is_valid(""));
        ASSERT_FALSE(pci_address_is_valid(NULL));
}

TEST(add_lookup_and_order) {
        Inventory *inv;

        ASSERT_OK(inventory_new(&inv));
        ASSERT_EQ(inventory_n_tsms(inv), 0);
        ASSERT_NULL(inventory_tsm_at(inv, 0));

        ASSERT_EQ(put_tsm(inv, "tsm10", TSM_BACKEND_SEV_TIO, NULL), 1);
        ASSERT_EQ(put_tsm(inv, "tsm2", TSM_BACKEND_TDX_CONNECT, NULL), 1);
        ASSERT_EQ(put_tsm(inv, "tsm0", _TSM_BACKEND_TYPE_INVALID, NULL), 1);
        ASSERT_ERRNO(put_tsm(inv, "foo", TSM_BACKEND_SEV_TIO, NULL), EINVAL);
        ASSERT_ERRNO(put_tsm(inv, "tsm", TSM_BACKEND_SEV_TIO, NULL), EINVAL);
        ASSERT_ERRNO(put_tsm(inv, NULL, TSM_BACKEND_SEV_TIO, NULL), EINVAL);

        ASSERT_EQ(inventory_n_tsms(inv), 3);
        ASSERT_STREQ(inventory_tsm_at(inv, 0)->name, "tsm0");
        ASSERT_STREQ(inventory_tsm_at(inv, 1)->name, "tsm2");
        ASSERT_STREQ(inventory_tsm_at(inv, 2)->name, "tsm10");
        ASSERT_EQ(inventory_get_tsm(inv, "tsm2")->type, TSM_BACKEND_TDX_CONNECT);
        ASSERT_NULL(inventory_get_tsm(inv, "tsm3"));

        const char *addrs[] = {
                "0000:00:1f.0", "10000:01:00.0", "0000:00:02.0", "0000:01:00.1", "0000:01:00.0",
        };
        for (size_t i = 0; i < ELEMENTSOF(addrs); i++) {
                InventoryDevice d = dev(addrs[i], NULL);
                ASSERT_EQ(inventory_put_device(inv, &d), 1);
        }
        InventoryDevice bad = dev("0000:00:00", NULL);
        ASSERT_ERRNO(inventory_put_device(inv, &bad), EINVAL);

        ASSERT_EQ(inventory_n_devices(inv), 5);
        ASSERT_STREQ(inventory_device_at(inv, 0)->address, "0000:00:02.0");
        ASSERT_STREQ(inventory_device_at(inv, 1)->address, "0000:00:1f.0");
        ASSERT_STREQ(inventory_device_at(inv, 2)->address, "0000:01:00.0");
        ASSERT_STREQ(inventory_device_at(inv, 3)->address, "0000:01:00.1");
        ASSERT_STREQ(inventory_device_at(inv, 4)->address, "10000:01:00.0");
        ASSERT_NOT_NULL(inventory_get_device(inv, "10000:01:00.0"));
        ASSERT_NULL(inventory_get_device(inv, "0000:01:00.2"));

        inventory_free(inv);
}

TEST(events_and_change_masks) {
        Inventory *inv;
        EventLog log = {};
        InventoryDevice d;

        ASSERT_OK(inventory_new(&inv));
        ASSERT_OK(inventory_add_watch(inv, record, &log, count_destroy));

        ASSERT_EQ(put_tsm(inv, "tsm0", TSM_BACKEND_SEV_TIO, NULL), 1);
        d = dev("0000:01:00.0", "");
        ASSERT_EQ(inventory_put_device(inv, &d), 1);
        /* Identical put: no event. */
        ASSERT_EQ(inventory_put_device(inv, &d), 0);
        ASSERT_EQ(log.n, 2);

        d = dev("0000:01:00.0", "tsm0");
        ASSERT_EQ(inventory_put_device(inv, &d), 1);
        ASSERT_EQ(log.type[2], INVENTORY_DEVICE_CHANGED);
        ASSERT_EQ(log.changes[2], INVENTORY_CHANGE_CONNECT | INVENTORY_CHANGE_AUTH);
        ASSERT_STREQ(inventory_device_get_tsm(inv, inventory_get_device(inv, "0000:01:00.0"))->name,
                     "tsm0");

        d = dev("0000:01:00.0", NULL);
        ASSERT_EQ(inventory_put_device(inv, &d), 1);
        ASSERT_EQ(log.changes[3],
                  INVENTORY_CHANGE_CONNECT | INVENTORY_CHANGE_AUTH | INVENTORY_CHANGE_TDISP);
        ASSERT_NULL(inventory_device_get_tsm(inv, inventory_get_device(inv, "0000:01:00.0")));

        ASSERT_EQ(put_tsm(inv, "tsm0", TSM_BACKEND_SEV_TIO, "link"), 1);
        ASSERT_EQ(log.type[4], INVENTORY_TSM_CHANGED);
        ASSERT_EQ(log.changes[4], INVENTORY_CHANGE_PCI_MODE);

        ASSERT_OK(inventory_remove_tsm(inv, "tsm0"));
        ASSERT_ERRNO(inventory_remove_tsm(inv, "tsm0"), ENOENT);
        ASSERT_OK(inventory_remove_device(inv, "0000:01:00.0"));
        ASSERT_ERRNO(inventory_remove_device(inv, "0000:01:00.0"), ENOENT);

        ASSERT_EQ(log.n, 7);
        ASSERT_EQ(log.type[0], INVENTORY_TSM_ADDED);
        ASSERT_EQ(log.type[1], INVENTORY_DEVICE_ADDED);
        ASSERT_EQ(log.type[5], INVENTORY_TSM_REMOVED);
        ASSERT_STREQ(log.key[5], "tsm0");
        ASSERT_EQ(log.type[6], INVENTORY_DEVICE_REMOVED);
        ASSERT_STREQ(log.key[6], "0000:01:00.0");

        ASSERT_EQ(log.destroyed, 0);
        inventory_free(inv);
        ASSERT_EQ(log.destroyed, 1);
}

/* Another function at the address (vendor, device or class ID) is a change of identity, which
 * ends what was attached (tsm-platform.c); another sysfs directory (its inode, "instance") is
 * another device: the known one removed, this one added; an instance of 0 (unknown) is neither. */
TEST(identity_changes_and_instances) {
        static const struct {
                uint16_t vendor_id, device_id;
                uint32_t class_code;
        } ids[] = {
                { 0x8086, 0xffff, 0x020000 },
                { 0x1022, 0xffff, 0x020000 },
                { 0x1022, 0x0001, 0x020000 },
                { 0x1022, 0x0001, 0x010802 },
        };
        Inventory *inv;
        EventLog log = {};
        InventoryDevice d;

        ASSERT_OK(inventory_new(&inv));
        ASSERT_OK(inventory_add_watch(inv, record, &log, count_destroy));
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                d = dev("0000:01:00.0", NULL);
                d.vendor_id = ids[i].vendor_id;
                d.device_id = ids[i].device_id;
                d.class_code = ids[i].class_code;
                ASSERT_EQ(inventory_put_device(inv, &d), 1);
                ASSERT_EQ(log.type[i], i == 0 ? INVENTORY_DEVICE_ADDED : INVENTORY_DEVICE_CHANGED);
                ASSERT_EQ(log.changes[i], i == 0 ? 0U : (unsigned) INVENTORY_CHANGE_IDS);
        }
        ASSERT_EQ(log.n, ELEMENTSOF(ids));
        ASSERT_OK(inventory_remove_device(inv, "0000:01:00.0"));

        log = (EventLog) {};
        d = dev("0000:01:00.0", NULL);
        d.instance = 5;
        ASSERT_EQ(inventory_put_device(inv, &d), 1);
        d.instance = 0;
        ASSERT_EQ(inventory_put_device(inv, &d), 0);
        d.instance = 5;
        ASSERT_EQ(inventory_put_device(inv, &d), 0);
        ASSERT_EQ(log.n, 1U);
        ASSERT_EQ(log.type[0], INVENTORY_DEVICE_ADDED);
        d.instance = 6;
        ASSERT_EQ(inventory_put_device(inv, &d), 1);
        ASSERT_EQ(log.n, 3U);
        ASSERT_EQ(log.type[1], INVENTORY_DEVICE_REMOVED);
        ASSERT_EQ(log.type[2], INVENTORY_DEVICE_ADDED);
        ASSERT_EQ(inventory_get_device(inv, "0000:01:00.0")->instance, 6U);

        inventory_free(inv);
}

TEST(every_watcher_sees_every_change_and_is_destroyed_once) {
        Inventory *inv;
        EventLog a = {}, b = {};

        ASSERT_OK(inventory_new(&inv));
        ASSERT_OK(inventory_add_watch(inv, record, &a, count_destroy));
        ASSERT_OK(inventory_add_watch(inv, record, &b, count_destroy));
        ASSERT_ERRNO(inventory_add_watch(inv, NULL, &a, NULL), EINVAL);

        ASSERT_OK(put_tsm(inv, "tsm1", TSM_BACKEND_SEV_TIO, NULL));
        ASSERT_OK(inventory_remove_tsm(inv, "tsm1"));

        ASSERT_EQ(a.n, 2);
        ASSERT_EQ(b.n, 2);
        ASSERT_EQ(a.destroyed, 0);
        inventory_free(inv);
        ASSERT_EQ(a.destroyed, 1);
        ASSERT_EQ(b.destroyed, 1);
}

TEST(sync_sweeps_only_unseen_objects_of_selected_kinds) {
        Inventory *inv;
        EventLog log = {};
        InventoryDevice d1 = dev("0000:01:00.0", NULL), d2 = dev("0000:02:00.0", NULL);

        ASSERT_OK(inventory_new(&inv));
        ASSERT_OK(put_tsm(inv, "tsm0", TSM_BACKEND_SEV_TIO, NULL));
        ASSERT_OK(put_tsm(inv, "tsm1", TSM_BACKEND_SEV_TIO, NULL));
        ASSERT_OK(inventory_put_device(inv, &d1));
        ASSERT_OK(inventory_put_device(inv, &d2));
        ASSERT_OK(inventory_add_watch(inv, record, &log, NULL));

        /* A device-only rescan that still sees d2 must not touch the TSMs. */
        inventory_sync_begin(inv);
        ASSERT_EQ(inventory_put_device(inv, &d2), 0);
        inventory_sync_end(inv, INVENTORY_SYNC_DEVICES);
        ASSERT_EQ(inventory_n_tsms(inv), 2);
        ASSERT_EQ(inventory_n_devices(inv), 1);
        ASSERT_EQ(log.n, 1);
        ASSERT_EQ(log.type[0], INVENTORY_DEVICE_REMOVED);
        ASSERT_STREQ(log.key[0], "0000:01:00.0");

        /* Full sync that sees only tsm1. */
        inventory_sync_begin(inv);
        ASSERT_OK(put_tsm(inv, "tsm1", TSM_BACKEND_SEV_TIO, NULL));
        inventory_sync_end(inv, INVENTORY_SYNC_TSMS | INVENTORY_SYNC_DEVICES);
        ASSERT_EQ(inventory_n_tsms(inv), 1);
        ASSERT_STREQ(inventory_tsm_at(inv, 0)->name, "tsm1");
        ASSERT_EQ(inventory_n_devices(inv), 0);
        ASSERT_EQ(log.n, 3);

        inventory_free(inv);
}

TEST(event_type_strings) {
        for (InventoryEventType t = 0; t < _INVENTORY_EVENT_TYPE_MAX; t++) {
                ASSERT_NOT_NULL(inventory_event_type_to_string(t));
                ASSERT_EQ(inventory_event_type_from_string(inventory_event_type_to_string(t)), t);
        }
        ASSERT_EQ(inventory_event_type_from_string("nope"), _INVENTORY_EVENT_TYPE_INVALID);
}

TEST_MAIN();
