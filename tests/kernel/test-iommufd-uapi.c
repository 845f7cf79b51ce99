/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The iommufd TSM UAPI structs and ioctl numbers, checked against values written down
 * independently here (hex constants derived by hand from _IO(';', nr), little-endian byte
 * images of each struct), and against the system's <linux/iommufd.h> where it has them.
 * Runs in: test.
 */

#include <stdint.h>

#include "harness.h"
#include "iommufd-uapi.h"
#include "tsm-types.h"

#if __has_include(<linux/iommufd.h>)
#include <linux/iommufd.h>
#define HAVE_SYSTEM_IOMMUFD_H 1
#endif

/* The asm-generic ioctl encoding: dir(2) | size(14) | type(8) | nr(8), _IOC_NONE == 0.
 * _IO(';', 0x96) = 0x3b << 8 | 0x96 = 0x3b96. */
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__arm__) ||     \
        defined(__riscv) || defined(__s390x__) || defined(__loongarch__)
#define GENERIC_IOCTL_LAYOUT 1
#endif

TEST(ioctl_numbers) {
#ifndef GENERIC_IOCTL_LAYOUT
        SKIP("hex constants below assume the asm-generic ioctl encoding");
#else
        ASSERT_EQ(TSMD_IOMMU_DESTROY, 0x3b80UL);
        ASSERT_EQ(TSMD_IOMMU_OPTION, 0x3b87UL);
        ASSERT_EQ(TSMD_IOMMU_VDEVICE_ALLOC, 0x3b91UL);
        ASSERT_EQ(TSMD_IOMMU_VDEVICE_TSM_OP_V4, 0x3b95UL);
        ASSERT_EQ(TSMD_IOMMU_VDEVICE_TSM_GUEST_REQUEST_V4, 0x3b96UL);
        ASSERT_EQ(TSMD_IOMMU_VDEVICE_TSM_OP_V5, 0x3b95UL);
        ASSERT_EQ(TSMD_IOMMU_VDEVICE_TSM_REQ_V5, 0x3b96UL);
#endif
}

TEST(ioctl_fields) {
        /* Encoding-independent: type ';', no size or direction bits, the command number. */
        ASSERT_EQ(_IOC_TYPE(TSMD_IOMMU_VDEVICE_TSM_OP_V5), 0x3b);
        ASSERT_EQ(_IOC_NR(TSMD_IOMMU_VDEVICE_TSM_OP_V5), 0x95);
        ASSERT_EQ(_IOC_NR(TSMD_IOMMU_VDEVICE_TSM_REQ_V5), 0x96);
        ASSERT_EQ(_IOC_NR(TSMD_IOMMU_VDEVICE_TSM_GUEST_REQUEST_V4), 0x96);
        ASSERT_EQ(_IOC_SIZE(TSMD_IOMMU_VDEVICE_TSM_REQ_V5), 0);
        ASSERT_EQ(_IOC_DIR(TSMD_IOMMU_VDEVICE_TSM_REQ_V5), _IOC_NONE);
        ASSERT_EQ(TSMD_IOMMUFD_CMD_BASE, 0x80);
}

static void put_le32(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t) (v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t) (v >> (8 * i));
}

TEST(tsm_req_v5_layout) {
        struct tsmd_iommu_vdevice_tsm_req_v5 s = {
                .size = 0x11111111,
                .vdevice_id = 0x22222222,
                .scope = 0x33333333,
                .req_len = 0x44444444,
                .resp_len = 0x55555555,
                .__reserved = 0x66666666,
                .req_uptr = 0x7777777777777777ULL,
                .resp_uptr = 0x8888888888888888ULL,
        };
        uint8_t expect[40];

        ASSERT_EQ(sizeof(s), 40);
        put_le32(expect + 0, 0x11111111);
        put_le32(expect + 4, 0x22222222);
        put_le32(expect + 8, 0x33333333);
        put_le32(expect + 12, 0x44444444);
        put_le32(expect + 16, 0x55555555);
        put_le32(expect + 20, 0x66666666);
        put_le64(expect + 24, 0x7777777777777777ULL);
        put_le64(expect + 32, 0x8888888888888888ULL);
        ASSERT_MEMEQ(&s, expect, sizeof(expect));
}

TEST(guest_request_v4_layout) {
        struct tsmd_iommu_vdevice_tsm_guest_request_v4 s = {
                .size = 40,
                .vdevice_id = 0x01020304,
                .scope = 0x05060708,
                .req_len = 0x090a0b0c,
                .resp_len = 0x0d0e0f10,
                .__reserved = 0,
                .req_uptr = 0x1112131415161718ULL,
                .resp_uptr = 0x191a1b1c1d1e1f20ULL,
        };
        static const uint8_t expect[40] = {
                0x28, 0x00, 0x00, 0x00, 0x04, 0x03, 0x02, 0x01, 0x08, 0x07, 0x06, 0x05,
                0x0c, 0x0b, 0x0a, 0x09, 0x10, 0x0f, 0x0e, 0x0d, 0x00, 0x00, 0x00, 0x00,
                0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,
                0x20, 0x1f, 0x1e, 0x1d, 0x1c, 0x1b, 0x1a, 0x19,
        };

        ASSERT_EQ(sizeof(s), sizeof(expect));
        ASSERT_MEMEQ(&s, expect, sizeof(expect));
}

TEST(tsm_op_layouts) {
        struct tsmd_iommu_vdevice_tsm_op_v5 v5 = { .size = 16, .type = 1, .flags = 0, .vdevice_id = 0xabcdef01 };
        struct tsmd_iommu_vdevice_tsm_op_v4 v4 = { .size = 16, .op = 2, .flags = 0, .vdevice_id = 0xabcdef01 };
        static const uint8_t expect_v5[16] = {
                0x10, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xef, 0xcd, 0xab,
        };
        static const uint8_t expect_v4[16] = {
                0x10, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xef, 0xcd, 0xab,
        };

        ASSERT_EQ(sizeof(v5), 16);
        ASSERT_EQ(sizeof(v4), 16);
        ASSERT_MEMEQ(&v5, expect_v5, 16);
        ASSERT_MEMEQ(&v4, expect_v4, 16);
        ASSERT_EQ(TSMD_IOMMU_VDEVICE_TSM_BIND_V5, 1);
        ASSERT_EQ(TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5, 2);
        ASSERT_EQ(TSMD_IOMMU_VDEVICE_TSM_BIND_V4, 1);
        ASSERT_EQ(TSMD_IOMMU_VDEVICE_TSM_UNBIND_V4, 2);
}

TEST(v5_scope_numbers) {
        ASSERT_EQ(TSMD_IOMMU_VDEVICE_TSM_REQ_PCI_INFO_V5, 0);
        ASSERT_EQ(TSMD_IOMMU_VDEVICE_TSM_REQ_PCI_STATE_CHANGE_V5, 1);
        ASSERT_EQ(TSMD_IOMMU_VDEVICE_TSM_REQ_PCI_DEBUG_READ_V5, 2);
        ASSERT_EQ(TSMD_IOMMU_VDEVICE_TSM_REQ_PCI_DEBUG_WRITE_V5, 3);
        ASSERT_EQ(TSMD_IOMMU_VDEVICE_TSM_REQ_SCOPE_PCI_LAST_V5, 3);
}

TEST(merged_struct_layouts) {
        struct tsmd_iommu_destroy d = { .size = 8, .id = 0x0a0b0c0d };
        struct tsmd_iommu_vdevice_alloc a = {
                .size = 24, .viommu_id = 1, .dev_id = 2, .out_vdevice_id = 3, .virt_id = 0x0102030405060708ULL,
        };
        struct tsmd_iommu_option o = {
                .size = 24, .option_id = 1, .op = 1, .__reserved = 0, .object_id = 9, .val64 = 5,
        };
        static const uint8_t expect_d[8] = { 8, 0, 0, 0, 0x0d, 0x0c, 0x0b, 0x0a };
        static const uint8_t expect_a[24] = {
                24, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1,
        };
        static const uint8_t expect_o[24] = {
                24, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0,
        };

        ASSERT_EQ(sizeof(d), sizeof(expect_d));
        ASSERT_EQ(sizeof(a), sizeof(expect_a));
        ASSERT_EQ(sizeof(o), sizeof(expect_o));
        ASSERT_MEMEQ(&d, expect_d, sizeof(expect_d));
        ASSERT_MEMEQ(&a, expect_a, sizeof(expect_a));
        ASSERT_MEMEQ(&o, expect_o, sizeof(expect_o));
}

TEST(system_header_agreement) {
#ifndef HAVE_SYSTEM_IOMMUFD_H
        SKIP("no <linux/iommufd.h> on this system (Debian 12's linux-libc-dev 6.1 has none)");
#else
        ASSERT_EQ(IOMMUFD_TYPE, TSMD_IOMMUFD_TYPE);
        ASSERT_EQ(IOMMU_DESTROY, TSMD_IOMMU_DESTROY);
        ASSERT_EQ(sizeof(struct iommu_destroy), sizeof(struct tsmd_iommu_destroy));
        ASSERT_EQ(IOMMU_OPTION, TSMD_IOMMU_OPTION);
        ASSERT_EQ(sizeof(struct iommu_option), sizeof(struct tsmd_iommu_option));
#ifdef IOMMU_VDEVICE_ALLOC
        ASSERT_EQ(IOMMU_VDEVICE_ALLOC, TSMD_IOMMU_VDEVICE_ALLOC);
        ASSERT_EQ(sizeof(struct iommu_vdevice_alloc), sizeof(struct tsmd_iommu_vdevice_alloc));
#endif
#ifdef IOMMU_VDEVICE_TSM_OP
        ASSERT_EQ(IOMMU_VDEVICE_TSM_OP, TSMD_IOMMU_VDEVICE_TSM_OP_V5);
        ASSERT_EQ(sizeof(struct iommu_vdevice_tsm_op), sizeof(struct tsmd_iommu_vdevice_tsm_op_v5));
#endif
#ifdef IOMMU_VDEVICE_TSM_REQ
        ASSERT_EQ(IOMMU_VDEVICE_TSM_REQ, TSMD_IOMMU_VDEVICE_TSM_REQ_V5);
        ASSERT_EQ(sizeof(struct iommu_vdevice_tsm_req), sizeof(struct tsmd_iommu_vdevice_tsm_req_v5));
#endif
#endif
}

TEST(uapi_version_strings) {
        ASSERT_STREQ(tsm_uapi_version_to_string(TSM_UAPI_V4), "v4");
        ASSERT_STREQ(tsm_uapi_version_to_string(TSM_UAPI_V5), "v5");
        ASSERT_NULL(tsm_uapi_version_to_string(_TSM_UAPI_VERSION_MAX));
        ASSERT_EQ(tsm_uapi_version_from_string("v4"), TSM_UAPI_V4);
        ASSERT_EQ(tsm_uapi_version_from_string("v5"), TSM_UAPI_V5);
        ASSERT_EQ(tsm_uapi_version_from_string("v6"), -EINVAL);
        ASSERT_EQ(_TSM_UAPI_VERSION_MAX, 2);
}

TEST_MAIN()
