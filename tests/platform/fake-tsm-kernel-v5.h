/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a v5 kernel's iommufd TSM ioctls answer, without the waiting: the checks the kernel
 * makes on a call, its answer to tsmd's UAPI probe, and a TSM that binds, unbinds and answers
 * every guest request with "pong". Shared by the in-process fake (fake-tsm-kernel.c, in the
 * transport's syscall seam) and the one preloaded into the whole daemon
 * (fake-tsm-kernel-preload.c). Stateless. Runs in: tests.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define FAKE_KERNEL_RESPONSE "pong"

typedef struct FakeKernelCall {
        bool op;        /* TSM_OP; else TSM_REQ */
        uint32_t vdevice;
        uint32_t value; /* the op's v5 type, or the request's scope */
} FakeKernelCall;

/*
 * Decodes one ioctl. Returns 1 and the call for a well-formed TSM call on a vDevice; 0 for
 * the UAPI probe (made on vDevice 0, which no VMM has), with the kernel's answer, a negative
 * errno, in *ret_probe_answer; -ENOTTY for a request number a v5 kernel does not have; -EINVAL
 * or -EOPNOTSUPP for a call the kernel would refuse (wrong size, flags or reserved bits).
 */
int fake_kernel_v5_decode(unsigned long request, const void *arg, FakeKernelCall *ret_call,
                          int *ret_probe_answer);

/* The TSM's answer to a decoded call: 0 for an op; for a request "pong" written through
 * resp_uptr and the residue returned, or -ENOSPC if the response buffer cannot hold it. */
int fake_kernel_v5_answer(unsigned long request, void *arg);
