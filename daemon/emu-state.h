/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The emulated devices' state across a restart of tsmd: a real TSM's devices keep their TDIs
 * (RUN stays RUN) and their memory while tsmd restarts, and the emulated ones, which live in the
 * monitor, would come back fresh. At a stop the monitor writes what they hold into a sealed
 * memfd kept in systemd's fd store (FDSTORE_EMU_STATE_NAME, fdstore.h), and reads it back at
 * its next start, before the worker restores the contexts.
 *
 * Per device that a vDevice holds and that has state (a TDI not CONFIG_UNLOCKED, memory or
 * registers written, a nonce held by the TSM): its address and configured identity (vendor,
 * device, MMIO ranges), its EmuDeviceSaved (TDI state, lock count, the device's nonce, the lock
 * parameters, registers, the 64 KiB memory window if written), the emulated TSM's nonce and
 * whether the host had bound it. Little-endian, after a header ("tsmdemu1", version, count)
 * and followed by a SHA-256 of everything before it: a damaged, truncated or foreign snapshot
 * is refused whole. Bounded: EMU_DEVICES_MAX records of at most 64 KiB and a few hundred bytes.
 *
 * What the snapshot cannot carry (a device it has no record of, a record not loaded, a run after
 * a crash or a stop), a random salt per run makes up for as far as nonces go: each run's differ
 * from every earlier run's (emu_state_salt_nonces()).
 *
 * SECURITY: the snapshot holds the TSM's nonces: it goes nowhere but into the monitor's own fd
 * store (the service's, readable by root only: DumpFileDescriptorStore lists names, not
 * contents), never to the worker, and the buffers that held a nonce are zeroed.
 * Runs in: monitor.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "emu-platform.h"
#include "emu-tsm.h"

#define EMU_STATE_VERSION 1U

/* Salts p's nonces with a random value (getrandom(), emu_platform_set_nonce_salt()), before any
 * device locks: a lock counter starts at 0 again in a new run, when its device was not in the
 * snapshot (clean, not held, no snapshot at all) or its record was not loaded (configured
 * otherwise), and the salt keeps that run's nonces apart from every earlier run's. A negative
 * errno if no random bytes could be had. */
int emu_state_salt_nonces(EmuPlatform *p);

/* Whether a vDevice holds the device at pci_address, and (*ret_bound) whether the host bound it. */
typedef bool (*EmuStateHeld)(const char *pci_address, bool *ret_bound, void *userdata);

/* Writes the state of p's devices that held says are held and that have any into a new sealed
 * memfd: 0 and the fd (and the number of devices in it) if there is any, 0 and -EBADF if none
 * has state; else a negative errno. */
int emu_state_save(EmuPlatform *p, const EmuTsm *t, EmuStateHeld held, void *userdata, int *ret_fd,
                   size_t *ret_n);

/* Puts the devices of the snapshot in fd back into their state, those p has at the same address
 * with the same identity; the others start fresh, with a log line each. -EBADMSG (nothing
 * loaded) for a damaged snapshot, -EPROTONOSUPPORT for another version, -EFBIG beyond the bound.
 * *ret_n: the devices loaded. */
int emu_state_load(EmuPlatform *p, EmuTsm *t, int fd, size_t *ret_n);
