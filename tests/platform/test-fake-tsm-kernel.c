/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fake v5 kernel (fake-tsm-kernel-v5.h) answers as the real one does where tsmd's tests
 * depend on it, each case from the kernel source it follows (daemon/kernel/UAPI.md): the
 * struct's size by copy_struct_from_user()'s rules, the vDevice looked up before a TSM_OP's VM
 * and type, the PCI TSM core's refusal of the debug scopes and of a TDI not bound, bind and
 * unbind as pci_tsm_bind() and pci_tsm_unbind() leave the TDI, and a request's residue with and
 * without a response buffer. Runs in: tests.
 */

#include <errno.h>
#include <string.h>

#include "fake-tsm-kernel-v5.h"
#include "harness.h"
#include "iommufd-uapi.h"

static struct {
        bool bound[8];
        bool no_vm[8];
} kernel;

static bool is_bound(void *userdata, uint32_t vdevice) {
        return kernel.bound[vdevice];
}

static void set_bound(void *userdata, uint32_t vdevice, bool bound) {
        kernel.bound[vdevice] = bound;
}

static bool has_vm(void *userdata, uint32_t vdevice) {
        return !kernel.no_vm[vdevice];
}

static const FakeKernelState state = { .is_bound = is_bound, .set_bound = set_bound, .has_vm = has_vm };

/* The whole ioctl as the preloaded fake makes it, without waiting: decode, check, answer. */
static int call(unsigned long request, void *arg) {
        FakeKernelCall c;
        int r, probe;

        r = fake_kernel_v5_decode(request, arg, &c, &probe);
        if (r == 0)
                return probe;
        if (r < 0)
                return r;
        r = fake_kernel_v5_check(&c, &state);
        if (r < 0)
                return r;
        return fake_kernel_v5_answer(request, arg, &c, &state);
}

static int op(uint32_t vdevice, uint32_t type) {
        struct tsmd_iommu_vdevice_tsm_op_v5 cmd = { .size = sizeof(cmd), .type = type, .vdevice_id = vdevice };

        return call(TSMD_IOMMU_VDEVICE_TSM_OP_V5, &cmd);
}

static int request(uint32_t vdevice, uint32_t scope, uint32_t req_len, void *resp, uint32_t resp_len) {
        static uint8_t req[64];
        struct tsmd_iommu_vdevice_tsm_req_v5 cmd = {
                .size = sizeof(cmd),
                .vdevice_id = vdevice,
                .scope = scope,
                .req_len = req_len,
                .resp_len = resp_len,
                .req_uptr = (uintptr_t) req,
                .resp_uptr = (uintptr_t) resp,
        };

        return call(TSMD_IOMMU_VDEVICE_TSM_REQ_V5, &cmd);
}

static void reset(void) {
        memset(&kernel, 0, sizeof(kernel));
}

/* iommufd_fops_ioctl(): shorter than the struct is EINVAL; copy_struct_from_user(): longer is
 * taken where the bytes past it are zero, E2BIG where one is not. */
TEST(struct_size_rules) {
        struct {
                struct tsmd_iommu_vdevice_tsm_op_v5 cmd;
                uint8_t tail[8];
        } op_ext = { .cmd = { .size = sizeof(op_ext), .type = TSMD_IOMMU_VDEVICE_TSM_BIND_V5, .vdevice_id = 1 } };
        struct {
                struct tsmd_iommu_vdevice_tsm_req_v5 cmd;
                uint8_t tail[8];
        } req_ext = { .cmd = { .size = sizeof(req_ext), .vdevice_id = 1 } };

        reset();
        ASSERT_EQ(call(TSMD_IOMMU_VDEVICE_TSM_OP_V5, &op_ext), 0);
        ASSERT_TRUE(kernel.bound[1]);
        op_ext.tail[7] = 1;
        ASSERT_EQ(call(TSMD_IOMMU_VDEVICE_TSM_OP_V5, &op_ext), -E2BIG);
        op_ext.cmd.size = sizeof(op_ext.cmd) - 1;
        ASSERT_EQ(call(TSMD_IOMMU_VDEVICE_TSM_OP_V5, &op_ext), -EINVAL);

        ASSERT_EQ(call(TSMD_IOMMU_VDEVICE_TSM_REQ_V5, &req_ext), 0); /* no buffers: nothing left */
        req_ext.tail[0] = 1;
        ASSERT_EQ(call(TSMD_IOMMU_VDEVICE_TSM_REQ_V5, &req_ext), -E2BIG);
        req_ext.cmd.size = sizeof(req_ext.cmd) - 4;
        ASSERT_EQ(call(TSMD_IOMMU_VDEVICE_TSM_REQ_V5, &req_ext), -EINVAL);
}

/* The v5 TSM_OP handler: flags, then the lookup (ENOENT), then the vIOMMU's VM (ENODEV), then
 * the type (EINVAL). */
TEST(op_check_order) {
        struct tsmd_iommu_vdevice_tsm_op_v5 cmd = { .size = sizeof(cmd), .flags = 1, .vdevice_id = 0 };

        reset();
        ASSERT_EQ(call(TSMD_IOMMU_VDEVICE_TSM_OP_V5, &cmd), -EOPNOTSUPP);
        ASSERT_EQ(op(0, 0), -ENOENT); /* the probe's: lookup before type */
        kernel.no_vm[2] = true;
        ASSERT_EQ(op(2, 0), -ENODEV); /* VM before type */
        ASSERT_EQ(op(2, TSMD_IOMMU_VDEVICE_TSM_BIND_V5), -ENODEV);
        ASSERT_FALSE(kernel.bound[2]);
        ASSERT_EQ(op(3, 0), -EINVAL);
        ASSERT_EQ(op(3, 3), -EINVAL);
}

/* pci_tsm_bind(): a TDI bound to the same VM binds again with 0; pci_tsm_unbind() is void, so
 * an unbind of one not bound succeeds and leaves it so. */
TEST(bind_and_unbind) {
        reset();
        ASSERT_EQ(op(1, TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5), 0);
        ASSERT_FALSE(kernel.bound[1]);
        ASSERT_EQ(op(1, TSMD_IOMMU_VDEVICE_TSM_BIND_V5), 0);
        ASSERT_TRUE(kernel.bound[1]);
        ASSERT_EQ(op(1, TSMD_IOMMU_VDEVICE_TSM_BIND_V5), 0);
        ASSERT_TRUE(kernel.bound[1]);
        ASSERT_EQ(op(1, TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5), 0);
        ASSERT_FALSE(kernel.bound[1]);
        ASSERT_EQ(op(1, TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5), 0);
}

/* The v5 request handler: __reserved, then the scope's range (before the lookup: the probe
 * tells v5 by it), then the lookup; pci_tsm_guest_req(): the debug scopes EINVAL, a TDI not
 * bound ENXIO. A request needs no VM association in v5. */
TEST(request_checks) {
        struct tsmd_iommu_vdevice_tsm_req_v5 cmd = { .size = sizeof(cmd), .vdevice_id = 1, .__reserved = 1 };
        char resp[8];

        reset();
        ASSERT_EQ(call(TSMD_IOMMU_VDEVICE_TSM_REQ_V5, &cmd), -EOPNOTSUPP);
        ASSERT_EQ(request(0, UINT32_MAX, 0, NULL, 0), -EINVAL);
        ASSERT_EQ(request(0, 0, 0, NULL, 0), -ENOENT);
        ASSERT_EQ(request(1, 4, 0, NULL, 0), -EINVAL);
        ASSERT_EQ(request(1, 0, 16, resp, sizeof(resp)), -ENXIO);
        ASSERT_EQ(request(1, 1, 16, resp, sizeof(resp)), -ENXIO);

        ASSERT_EQ(op(1, TSMD_IOMMU_VDEVICE_TSM_BIND_V5), 0);
        ASSERT_EQ(request(1, 2, 16, resp, sizeof(resp)), -EINVAL);
        ASSERT_EQ(request(1, 3, 16, resp, sizeof(resp)), -EINVAL);
        kernel.no_vm[1] = true;
        ASSERT_EQ(request(1, 1, 16, resp, sizeof(resp)), 4);
        ASSERT_EQ(memcmp(resp, FAKE_KERNEL_RESPONSE, 4), 0);
        ASSERT_EQ(op(1, TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5), -ENODEV);
        kernel.no_vm[1] = false;
        ASSERT_EQ(op(1, TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5), 0);
        ASSERT_EQ(request(1, 0, 16, resp, sizeof(resp)), -ENXIO);
}

/* The residue: the response buffer's bytes not used, or, offered none, the request's not
 * consumed (the TSM takes FAKE_KERNEL_CONSUMED of it). */
TEST(request_residue) {
        char resp[8];

        reset();
        ASSERT_EQ(op(1, TSMD_IOMMU_VDEVICE_TSM_BIND_V5), 0);
        ASSERT_EQ(request(1, 0, 16, resp, 4), 0);
        ASSERT_EQ(request(1, 0, 16, resp, 3), -ENOSPC);
        ASSERT_EQ(request(1, 0, 16, NULL, 0), 0);
        ASSERT_EQ(request(1, 0, 20, NULL, 0), 4);
        ASSERT_EQ(request(1, 1, FAKE_KERNEL_CONSUMED + 40, NULL, 0), 40);
        ASSERT_EQ(request(1, 0, 3, NULL, 0), 0);
}

TEST_MAIN();
