/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a v5 kernel's iommufd TSM ioctls answer, without the waiting, in the order the kernel
 * checks (iommufd_fops_ioctl() and copy_struct_from_user(), the v5 handlers of
 * drivers/iommu/iommufd/tsm.c, pci_tsm_bind() and pci_tsm_guest_req() of drivers/pci/tsm.c;
 * daemon/kernel/UAPI.md): the struct's size and must-be-zero fields, the vDevice lookup (the
 * probe's vDevice 0 is never found), the VM association and op type of a TSM_OP, the PCI TSM
 * core's refusal of the debug scopes and of a TDI not bound, then a TSM that binds, unbinds
 * and answers every guest request with "pong". Every vDevice but 0 exists, its vIOMMU has a
 * VM unless the caller says otherwise, and the vDevices bound are the caller's to keep (see
 * FakeKernelState): the in-process fake (fake-tsm-kernel.c, in the transport's syscall seam)
 * keeps them in memory, the one preloaded into the whole daemon (fake-tsm-kernel-preload.c) in
 * files, as the kernel keeps them across restarts of tsmd. A binding belongs to its vDevice id
 * alone: the fake does not see a context closed or a vDevice destroyed. Runs in: tests.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define FAKE_KERNEL_RESPONSE "pong"
/* Offered no response buffer, the TSM consumes at most this much of the request (a TDISP
 * message header) and answers the rest as its residue. */
#define FAKE_KERNEL_CONSUMED 16U

typedef struct FakeKernelCall {
        bool op;        /* TSM_OP; else TSM_REQ */
        uint32_t vdevice;
        uint32_t value; /* the op's v5 type, or the request's scope */
} FakeKernelCall;

/* The kernel's state of each vDevice, kept by the caller. */
typedef struct FakeKernelState {
        bool (*is_bound)(void *userdata, uint32_t vdevice);
        void (*set_bound)(void *userdata, uint32_t vdevice, bool bound);
        /* Whether the vDevice's vIOMMU has a KVM VM (NULL: every one has). */
        bool (*has_vm)(void *userdata, uint32_t vdevice);
        void *userdata;
} FakeKernelState;

/*
 * The iommufd core's checks and the handler's up to the vDevice lookup. Returns 1 and the call
 * for a TSM call that found its vDevice; 0 for the UAPI probe (made on vDevice 0, which no VMM
 * has), with the kernel's answer, a negative errno, in *ret_probe_answer; -ENOTTY for a request
 * number a v5 kernel does not have; -EINVAL, -E2BIG or -EOPNOTSUPP for a struct the kernel
 * refuses before the lookup (size shorter than the struct, non-zero bytes past it, non-zero
 * flags or __reserved, a scope outside the four). arg holds the struct, and as many bytes past
 * it as its size says.
 */
int fake_kernel_v5_decode(unsigned long request, const void *arg, FakeKernelCall *ret_call,
                          int *ret_probe_answer);

/* The checks past the lookup, before the TSM works: a TSM_OP's vIOMMU without a VM (-ENODEV),
 * its unknown type (-EINVAL); a request's debug scope (-EINVAL) or a TDI not bound (-ENXIO).
 * Returns 0 if the call reaches the TSM. */
int fake_kernel_v5_check(const FakeKernelCall *call, const FakeKernelState *state);

/* The TSM's answer to a checked call: a bind or unbind sets the state and returns 0 (a bind of
 * a bound vDevice, its VM the same, too: pci_tsm_bind(); an unbind of one not bound does
 * nothing: pci_tsm_unbind()); a request has "pong" written through resp_uptr and the residue
 * returned, -ENOSPC if a response buffer cannot hold it, or, without a response buffer, the
 * residue of the request past FAKE_KERNEL_CONSUMED bytes. */
int fake_kernel_v5_answer(unsigned long request, void *arg, const FakeKernelCall *call,
                          const FakeKernelState *state);
