/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The emulated TDISP platform: the set of emulated devices tsmd serves when no TSM hardware
 * exists (and in every end-to-end test), keyed by PCI address "DDDD:BB:DD.F", with runtime
 * addition and removal (hotplug). Pure library, deterministic. Runs in: monitor and worker, tests.
 *
 * Devices are reference counted. The platform holds one reference to each device it lists;
 * pointers returned by the lookups are borrowed and stay valid while the device is listed.
 * A caller that must keep a device across a removal takes its own emu_device_ref(): once
 * removed, the device answers every request with -ENODEV.
 */
#pragma once

#include <stddef.h>

#include "emu-config.h"
#include "emu-device.h"
#include "macro.h"

typedef struct EmuPlatform EmuPlatform;

/* The default device set, EMU_CONFIG_DEFAULT. */
int emu_platform_new(EmuPlatform **ret);
/* Devices from a config string (syntax in emu-config.h); NULL means the default set, ""
 * none. -EINVAL for a bad config, -ENOMEM. */
int emu_platform_new_from_config(const char *config, EmuPlatform **ret);
EmuPlatform *emu_platform_free(EmuPlatform *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(EmuPlatform *, emu_platform_free);

/* Adds one device, given as one "device" entry of the config syntax ("0000:03:00.0" or
 * "0000:03:00.0:ranges=2:vendor=8086"), or as a struct. ret (borrowed) may be NULL.
 * -EINVAL for a bad entry, -EEXIST if the address is taken, -E2BIG beyond EMU_DEVICES_MAX,
 * -ERANGE for a struct whose domain does not fit TDISP's FUNCTION_ID, -ENOMEM. */
int emu_platform_add_device(EmuPlatform *p, const char *device, EmuDevice **ret);
int emu_platform_add_device_config(EmuPlatform *p, const EmuDeviceConfig *c, EmuDevice **ret);

/* Unlists the device, marks it removed and drops the platform's reference. -ENOENT if no
 * device has that address, -EINVAL if it is not an address. */
int emu_platform_remove_device(EmuPlatform *p, const char *pci_address);

/* Salts the nonces of the devices listed and of those added later (emu_device_set_nonce_salt()):
 * each device instance gets its own salt from salt, so that a device removed and added again
 * (its lock counter back at 0) does not repeat its earlier instance's nonces. Platforms with the
 * same salt and history give the same bytes; a platform starts with salt 0. Call it before any
 * device locks: the nonces already made are not told apart from the later ones. */
void emu_platform_set_nonce_salt(EmuPlatform *p, uint64_t salt);

/* Borrowed; NULL if absent or not an address. */
EmuDevice *emu_platform_find_device(EmuPlatform *p, const char *pci_address);
size_t emu_platform_get_n_devices(const EmuPlatform *p);
/* In order of addition; NULL if idx is out of range. */
EmuDevice *emu_platform_get_device(EmuPlatform *p, size_t idx);
