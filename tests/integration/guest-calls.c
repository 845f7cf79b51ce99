/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small io.tsmd.Guest (and io.tsmd.Admin) helpers shared by the daemon-level tests. */

#include <inttypes.h>

#include "emu-config.h"
#include "guest-calls.h"
#include "harness.h"
#include "tdisp.h"
#include "tsmd-fixture.h"

int64_t guest_open_context(VarlinkClient *c) {
        json_object *r = CALL_OK(c, "io.tsmd.Guest.OpenContext", NULL);
        int64_t handle = JINT(r, "context");
        int fd = varlink_client_take_fd(c, (size_t) JINT(r, "fileDescriptor"));

        ASSERT_TRUE(handle > 0);
        ASSERT_TRUE(fd >= 0);
        close(fd);
        return handle;
}

const char *guest_attach_params(int64_t ctx, int64_t vdev, const char *address) {
        return strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%" PRIi64 ",\"pciAddress\":\"%s\"}", ctx, vdev,
                    address);
}

const char *guest_vdev_params(int64_t ctx, int64_t vdev) {
        return strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%" PRIi64 "}", ctx, vdev);
}

uint32_t guest_function_id(const char *address) {
        EmuPciAddress a;
        uint32_t id;

        ASSERT_OK(emu_pci_address_parse(address, &a));
        ASSERT_OK(tdisp_function_id_from_pci(a.domain, a.bus, emu_pci_address_devfn(&a), &id));
        return id;
}

json_object *admin_device_owner(VarlinkClient *admin, const char *address) {
        json_object *devices, *owner = NULL;

        ASSERT_TRUE(json_object_object_get_ex(CALL_OK(admin, "io.tsmd.Admin.ListDevices", NULL), "devices", &devices));
        for (size_t i = 0; i < json_object_array_length(devices); i++) {
                json_object *d = json_object_array_get_idx(devices, i);

                if (streq(JSTR(d, "pciAddress"), address) && json_object_object_get_ex(d, "owner", &owner))
                        return json_object_get(owner);
        }
        return NULL;
}
