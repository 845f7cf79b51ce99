/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Configuration of the emulated TDISP platform: PCI addresses and the device-list string
 * (from tsmd's configuration or a test), parsed into plain structs. The string may come from
 * a client, so the parser is strict, bounded and fuzzed. Runs in: monitor and worker, VMM examples.
 *
 * Syntax (no whitespace anywhere):
 *
 *     config  = "" | device *( "," device )
 *     device  = address *( ":" option )
 *     address = DDDD ":" BB ":" DD "." F      hex; device <= 1f, function <= 7
 *     option  = "ranges=" N                   MMIO ranges in the interface report, 0..32
 *             | "vendor=" HHHH                PCI vendor id (4 hex digits, not ffff)
 *             | "device=" HHHH                PCI device id (4 hex digits)
 *             | "fault=" fault                a fault armed from the start, until cleared
 *     fault   = "busy" | "timeout" | "gone" | "tdisp-error"
 *
 * e.g. "0000:01:00.0,0000:02:00.0:ranges=3:vendor=8086:device=0b25,0000:03:00.0:fault=busy".
 * Each option may be given once per device, each address once per config, and the domain
 * must be <= 00ff because TDISP's FUNCTION_ID has an 8-bit segment field.
 *
 * Faults make an emulated device misbehave for every guest request, bind and unbind, so that
 * tests and demonstrations can show what tsmd does then (emu-device.h has the details):
 *     busy         the device answers busy: -EBUSY (tsmd: io.tsmd.Guest.DeviceBusy)
 *     timeout      the device never answers: -ETIMEDOUT (tsmd holds a guest request until its
 *                  [Platform] RequestTimeoutUSec passes, then io.tsmd.Guest.Timeout)
 *     gone         the device has dropped off the bus: -ENODEV, and its TDI is reset (tsmd:
 *                  io.tsmd.Guest.DeviceGone) while it stays listed
 *     tdisp-error  the device answers every message with a TDISP ERROR (UNSPECIFIED): a guest
 *                  gets that ERROR message as its response; a host bind fails with -EIO
 * On a reload of tsmd's configuration, a device that stays listed gets the fault the new list
 * names, or none: faults can be switched on and off without unplugging the device.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* A platform holds at most this many devices: the config is client-controlled. Enough for a
 * host of 1,024 emulated guests (one device each; the benchmarks run 512). */
#define EMU_DEVICES_MAX 1024u
#define EMU_MMIO_RANGES_MAX 32u
#define EMU_MMIO_RANGES_DEFAULT 4u
/* Placeholder identity: the vendor id QEMU uses for its own virtual devices. */
#define EMU_VENDOR_ID_DEFAULT 0x1b36u
#define EMU_DEVICE_ID_DEFAULT 0x7e50u

/* What tsmd emulates when nothing is configured. */
#define EMU_CONFIG_DEFAULT "0000:01:00.0,0000:02:00.0"

/* "DDDD:BB:DD.F" */
#define EMU_PCI_ADDRESS_STRLEN 12u

typedef struct EmuPciAddress {
        uint16_t domain;
        uint8_t bus;
        uint8_t device;   /* 0..31 */
        uint8_t function; /* 0..7 */
} EmuPciAddress;

/* Injectable faults; what each does is described in emu-device.h. */
typedef enum EmuFault {
        EMU_FAULT_BUSY,
        EMU_FAULT_TIMEOUT,
        EMU_FAULT_GONE,
        EMU_FAULT_TDISP_ERROR,
        _EMU_FAULT_MAX,
        _EMU_FAULT_INVALID = -EINVAL,
} EmuFault;

/* "busy", "timeout", "gone", "tdisp-error": the names of the config syntax. */
const char *emu_fault_to_string(EmuFault f);
EmuFault emu_fault_from_string(const char *s);

typedef struct EmuDeviceConfig {
        EmuPciAddress address;
        uint16_t vendor_id;
        uint16_t device_id;
        unsigned n_mmio_ranges;
        EmuFault fault; /* armed when the device is created; _EMU_FAULT_INVALID: none */
} EmuDeviceConfig;

/* Parses exactly "DDDD:BB:DD.F" (either hex case); -EINVAL otherwise. */
int emu_pci_address_parse(const char *s, EmuPciAddress *ret);
/* Formats as lower-case "DDDD:BB:DD.F"; buf must hold EMU_PCI_ADDRESS_STRLEN + 1 bytes. */
char *emu_pci_address_format(const EmuPciAddress *a, char *buf);
bool emu_pci_address_equal(const EmuPciAddress *a, const EmuPciAddress *b);
static inline uint8_t emu_pci_address_devfn(const EmuPciAddress *a) {
        return (uint8_t) (a->device << 3 | a->function);
}

/* A device at address a with the default identity and range count, and no fault. */
void emu_device_config_init(EmuDeviceConfig *c, const EmuPciAddress *a);

/* Parses one "device" production of the syntax above. */
int emu_device_config_parse(const char *s, EmuDeviceConfig *ret);

/* Parses a whole config string into a newly allocated array (NULL when it lists no device).
 * -EINVAL for any syntax error, bad value, duplicate address or more than EMU_DEVICES_MAX
 * devices; -ENOMEM. */
int emu_config_parse(const char *s, EmuDeviceConfig **ret_devices, size_t *ret_n_devices);
