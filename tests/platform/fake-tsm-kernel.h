/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A fake v5 kernel behind the iommufd transport's syscall seam (iommufd_set_syscalls()), for
 * tests of the kernel path above it: open() gives a real fd (of /dev/null, so that it can be
 * duplicated and closed like an iommufd); the UAPI probe, made on vDevice 0, is answered as a
 * kernel with the v5 TSM ioctls answers it; the rest as fake-tsm-kernel-v5.h says, the vDevices
 * bound kept in memory (none at install): IOMMU_VDEVICE_TSM_OP binds and unbinds, and
 * IOMMU_VDEVICE_TSM_REQ answers "pong" for a vDevice bound, in the scopes the PCI TSM core
 * takes. Calls for the held vDevice that reach the TSM wait inside "the kernel", like a device
 * whose firmware takes its time, until released. Every call that finds its vDevice is logged in
 * the order the kernel saw it, refused ones too. Thread-safe: lane threads make the calls.
 * Runs in: tests.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fake-tsm-kernel-v5.h"

#define FAKE_KERNEL_CALLS_MAX 64
#define FAKE_KERNEL_BOUND_MAX 64

/* Installs it, with nothing held or bound and an empty log. */
void fake_kernel_install(uint32_t held_vdevice);
void fake_kernel_uninstall(void);

/* The kernel has vdevice bound, as after a bind that was not made through the seam (by a tsmd
 * before this one, whose context the fd store kept). */
void fake_kernel_set_bound(uint32_t vdevice);

/* While held, calls for the held vDevice stay inside. */
void fake_kernel_hold(bool hold);
unsigned fake_kernel_n_inside(void);
/* Waits (at most 5 s, else fails the test) until n calls are inside. */
void fake_kernel_wait_inside(unsigned n);

/* The calls made so far (the first max of them, in order); returns how many were made. */
size_t fake_kernel_calls(FakeKernelCall *ret, size_t max);
