/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small io.tsmd.Guest (and io.tsmd.Admin) helpers shared by the daemon-level tests. */
#pragma once

#include <stdint.h>

#include "varlink-client.h"

/* OpenContext; closes the returned iommufd and returns the context handle. */
int64_t guest_open_context(VarlinkClient *c);
/* Parameter objects (static storage, as strf() returns). */
const char *guest_attach_params(int64_t ctx, int64_t vdev, const char *address);
const char *guest_vdev_params(int64_t ctx, int64_t vdev);
/* The TDISP function id (requester id) of a PCI address. */
uint32_t guest_function_id(const char *address);
/* The owner io.tsmd.Admin.ListDevices reports for address, as a new reference; NULL if the
 * device has none (or is not listed). */
json_object *admin_device_owner(VarlinkClient *admin, const char *address);
