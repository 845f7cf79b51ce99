/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The answers of a fake v5 kernel's TSM ioctls. Runs in: tests. */

#include <errno.h>
#include <string.h>

#include "fake-tsm-kernel-v5.h"
#include "iommufd-uapi.h"

int fake_kernel_v5_decode(unsigned long request, const void *arg, FakeKernelCall *ret_call,
                          int *ret_probe_answer) {
        if (request == TSMD_IOMMU_VDEVICE_TSM_OP_V5) {
                struct tsmd_iommu_vdevice_tsm_op_v5 op;

                memcpy(&op, arg, sizeof(op));
                if (op.size != sizeof(op))
                        return -EINVAL;
                if (op.flags != 0)
                        return -EOPNOTSUPP;
                if (op.vdevice_id == 0) {
                        *ret_probe_answer = -ENOENT;
                        return 0;
                }
                if (op.type != TSMD_IOMMU_VDEVICE_TSM_BIND_V5 && op.type != TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5)
                        return -EINVAL;
                *ret_call = (FakeKernelCall){ .op = true, .vdevice = op.vdevice_id, .value = op.type };
                return 1;
        }
        if (request == TSMD_IOMMU_VDEVICE_TSM_REQ_V5) {
                struct tsmd_iommu_vdevice_tsm_req_v5 req;

                memcpy(&req, arg, sizeof(req));
                if (req.size != sizeof(req))
                        return -EINVAL;
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

int fake_kernel_v5_answer(unsigned long request, void *arg) {
        struct tsmd_iommu_vdevice_tsm_req_v5 req;
        size_t len = strlen(FAKE_KERNEL_RESPONSE);

        if (request == TSMD_IOMMU_VDEVICE_TSM_OP_V5)
                return 0;
        memcpy(&req, arg, sizeof(req));
        if (req.resp_len < len)
                return -ENOSPC;
        /* The residue is what the TSM did not fill. */
        memcpy((void *) (uintptr_t) req.resp_uptr, FAKE_KERNEL_RESPONSE, len);
        return (int) (req.resp_len - len);
}
