/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The answers of a fake v5 kernel's TSM ioctls. Runs in: tests. */

#include <errno.h>
#include <string.h>

#include "fake-tsm-kernel-v5.h"
#include "iommufd-uapi.h"

/* iommufd_fops_ioctl(): a size below the struct's is EINVAL; copy_struct_from_user() takes a
 * longer one whose bytes past the struct are all zero, and refuses it with E2BIG otherwise. */
static int copy_struct(void *dst, size_t size, const void *arg) {
        const uint8_t *p = arg;
        uint32_t user_size;

        memcpy(&user_size, arg, sizeof(user_size));
        if (user_size < size)
                return -EINVAL;
        for (size_t i = size; i < user_size; i++)
                if (p[i] != 0)
                        return -E2BIG;
        memcpy(dst, arg, size);
        return 0;
}

int fake_kernel_v5_decode(unsigned long request, const void *arg, FakeKernelCall *ret_call,
                          int *ret_probe_answer) {
        int r;

        if (request == TSMD_IOMMU_VDEVICE_TSM_OP_V5) {
                struct tsmd_iommu_vdevice_tsm_op_v5 op;

                r = copy_struct(&op, sizeof(op), arg);
                if (r < 0)
                        return r;
                if (op.flags != 0)
                        return -EOPNOTSUPP;
                /* The lookup, before the VM and the type. */
                if (op.vdevice_id == 0) {
                        *ret_probe_answer = -ENOENT;
                        return 0;
                }
                *ret_call = (FakeKernelCall){ .op = true, .vdevice = op.vdevice_id, .value = op.type };
                return 1;
        }
        if (request == TSMD_IOMMU_VDEVICE_TSM_REQ_V5) {
                struct tsmd_iommu_vdevice_tsm_req_v5 req;

                r = copy_struct(&req, sizeof(req), arg);
                if (r < 0)
                        return r;
                if (req.__reserved != 0)
                        return -EOPNOTSUPP;
                /* The scope is checked before the vDevice: that is what the probe tells by. */
                if (req.scope > TSMD_IOMMU_VDEVICE_TSM_REQ_SCOPE_PCI_LAST_V5) {
                        if (req.vdevice_id != 0)
                                return -EINVAL;
                        *ret_probe_answer = -EINVAL;
                        return 0;
                }
                if (req.vdevice_id == 0) {
                        *ret_probe_answer = -ENOENT;
                        return 0;
                }
                *ret_call = (FakeKernelCall){ .vdevice = req.vdevice_id, .value = req.scope };
                return 1;
        }
        return -ENOTTY;
}

int fake_kernel_v5_check(const FakeKernelCall *call, const FakeKernelState *state) {
        if (call->op) {
                if (state->has_vm && !state->has_vm(state->userdata, call->vdevice))
                        return -ENODEV;
                if (call->value != TSMD_IOMMU_VDEVICE_TSM_BIND_V5 && call->value != TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5)
                        return -EINVAL;
                return 0;
        }
        /* pci_tsm_guest_req(): requests not directly related to TDISP operations are forbidden. */
        if (call->value > TSMD_IOMMU_VDEVICE_TSM_REQ_PCI_STATE_CHANGE_V5)
                return -EINVAL;
        if (!state->is_bound(state->userdata, call->vdevice))
                return -ENXIO;
        return 0;
}

int fake_kernel_v5_answer(unsigned long request, void *arg, const FakeKernelCall *call,
                          const FakeKernelState *state) {
        struct tsmd_iommu_vdevice_tsm_req_v5 req;
        size_t len = strlen(FAKE_KERNEL_RESPONSE);

        if (request == TSMD_IOMMU_VDEVICE_TSM_OP_V5) {
                state->set_bound(state->userdata, call->vdevice, call->value == TSMD_IOMMU_VDEVICE_TSM_BIND_V5);
                return 0;
        }
        memcpy(&req, arg, sizeof(req));
        /* The residue is what the TSM did not fill, or, given nowhere to answer, what it did not
         * consume. */
        if (req.resp_len == 0)
                return req.req_len > FAKE_KERNEL_CONSUMED ? (int) (req.req_len - FAKE_KERNEL_CONSUMED) : 0;
        if (req.resp_len < len)
                return -ENOSPC;
        memcpy((void *) (uintptr_t) req.resp_uptr, FAKE_KERNEL_RESPONSE, len);
        return (int) (req.resp_len - len);
}
