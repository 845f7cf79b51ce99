/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A fake v5 kernel behind the iommufd transport's syscall seam (iommufd_set_syscalls()), for
 * tests of the kernel path above it: open() gives a real fd (of /dev/null, so that it can be
 * duplicated and closed like an iommufd); the UAPI probe, made on vDevice 0, is answered as a
 * kernel with the v5 TSM ioctls answers it; IOMMU_VDEVICE_TSM_OP (bind, unbind) succeeds, and
 * IOMMU_VDEVICE_TSM_REQ answers "pong". Calls for the held vDevice wait inside "the kernel",
 * like a device whose firmware takes its time, until released. Every call is logged in the
 * order the kernel saw it. Thread-safe: lane threads make the calls. Runs in: tests.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fake-tsm-kernel-v5.h"

#define FAKE_KERNEL_CALLS_MAX 64

/* Installs it, with nothing held and an empty log. */
void fake_kernel_install(uint32_t held_vdevice);
void fake_kernel_uninstall(void);

/* While held, calls for the held vDevice stay inside. */
void fake_kernel_hold(bool hold);
unsigned fake_kernel_n_inside(void);
/* Waits (at most 5 s, else fails the test) until n calls are inside. */
void fake_kernel_wait_inside(unsigned n);

/* The calls made so far (the first max of them, in order); returns how many were made. */
size_t fake_kernel_calls(FakeKernelCall *ret, size_t max);
