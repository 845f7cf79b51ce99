/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel's iommufd TSM UAPI, one struct per published layout, written the way the
 * kernel writes UAPI (fixed-width __u32/__aligned_u64 fields, explicit reserved fields, no
 * implicit padding) and pinned with _Static_assert on every size and every field offset.
 * This is the only header in tsmd that knows ioctl numbers; daemon/kernel/UAPI.md says
 * where each fact comes from. Runs in: monitor (included by the transport only).
 *
 * The TSM ioctls are not in a released kernel and the system's <linux/iommufd.h> (Debian 12
 * ships none at all) must not be used: every name here carries a tsmd_/TSMD_ prefix and a
 * version suffix so a v4 struct cannot be handed to a v5 ioctl by accident.
 */
#pragma once

#include <linux/ioctl.h>
#include <linux/types.h>
#include <stddef.h>

/* include/uapi/linux/iommufd.h: every iommufd ioctl is _IO(';', IOMMUFD_CMD_BASE + n). */
#define TSMD_IOMMUFD_TYPE (';')
#define TSMD_IOMMUFD_CMD_BASE 0x80

/* Command numbers that are merged upstream (torvalds/linux, include/uapi/linux/iommufd.h). */
#define TSMD_IOMMUFD_CMD_DESTROY 0x80
#define TSMD_IOMMUFD_CMD_OPTION 0x87
#define TSMD_IOMMUFD_CMD_VDEVICE_ALLOC 0x91
#define TSMD_IOMMUFD_CMD_HW_QUEUE_ALLOC 0x94 /* the last merged command at the time of writing */

/* Command numbers of the TSM series (v2 2026-03, v4 2026-04, v5 2026-05: unchanged). */
#define TSMD_IOMMUFD_CMD_VDEVICE_TSM_OP 0x95
#define TSMD_IOMMUFD_CMD_VDEVICE_TSM_GUEST_REQUEST_V4 0x96
#define TSMD_IOMMUFD_CMD_VDEVICE_TSM_REQ_V5 0x96

/* ---- Merged ioctls, kept for reference and for static agreement checks ---------------- */

/* IOMMU_DESTROY: destroy any object of the context by id. */
struct tsmd_iommu_destroy {
        __u32 size;
        __u32 id;
};
#define TSMD_IOMMU_DESTROY _IO(TSMD_IOMMUFD_TYPE, TSMD_IOMMUFD_CMD_DESTROY)

/* IOMMU_OPTION: get/set a context or IOAS option. */
struct tsmd_iommu_option {
        __u32 size;
        __u32 option_id;
        __u16 op;
        __u16 __reserved;
        __u32 object_id;
        __aligned_u64 val64;
};
#define TSMD_IOMMU_OPTION _IO(TSMD_IOMMUFD_TYPE, TSMD_IOMMUFD_CMD_OPTION)

/* IOMMU_VDEVICE_ALLOC: virt_id is the guest-visible id that the TSM bind hands to the TSM. */
struct tsmd_iommu_vdevice_alloc {
        __u32 size;
        __u32 viommu_id;
        __u32 dev_id;
        __u32 out_vdevice_id;
        __aligned_u64 virt_id;
};
#define TSMD_IOMMU_VDEVICE_ALLOC _IO(TSMD_IOMMUFD_TYPE, TSMD_IOMMUFD_CMD_VDEVICE_ALLOC)

/* ---- v4: "[PATCH v4 3/4,4/4]" (2026-04-27) ------------------------------------------- */

/*
 * IOMMU_VDEVICE_TSM_OP as in v2 (2026-03-09, field named "op") and v5 (field named "type"):
 * the same 16 bytes in both, so v4 (between them) is taken to be identical. Bind/unbind of
 * the vDevice's TDI; the kernel checks flags, then looks the vDevice up, then the op.
 */
struct tsmd_iommu_vdevice_tsm_op_v4 {
        __u32 size;
        __u32 op;
        __u32 flags;
        __u32 vdevice_id;
};
#define TSMD_IOMMU_VDEVICE_TSM_OP_V4 _IO(TSMD_IOMMUFD_TYPE, TSMD_IOMMUFD_CMD_VDEVICE_TSM_OP)
#define TSMD_IOMMU_VDEVICE_TSM_BIND_V4 0x1
#define TSMD_IOMMU_VDEVICE_TSM_UNBIND_V4 0x2

/*
 * IOMMU_VDEVICE_TSM_GUEST_REQUEST: @scope is a number whose meaning the TSM backend defines.
 * v2 had an unnamed 4-byte hole at offset 20; later revisions name it __reserved. Either way
 * the bytes are identical as long as it is zero, which is all tsmd ever sends.
 */
struct tsmd_iommu_vdevice_tsm_guest_request_v4 {
        __u32 size;
        __u32 vdevice_id;
        __u32 scope;
        __u32 req_len;
        __u32 resp_len;
        __u32 __reserved;
        __aligned_u64 req_uptr;
        __aligned_u64 resp_uptr;
};
#define TSMD_IOMMU_VDEVICE_TSM_GUEST_REQUEST_V4                                                   \
        _IO(TSMD_IOMMUFD_TYPE, TSMD_IOMMUFD_CMD_VDEVICE_TSM_GUEST_REQUEST_V4)

/* ---- v5: "Add iommufd ioctls to support TSM operations" (2026-05-25) ----------------- */

/* IOMMU_VDEVICE_TSM_OP: flags != 0 → EOPNOTSUPP; unknown type → EINVAL (after the lookup). */
struct tsmd_iommu_vdevice_tsm_op_v5 {
        __u32 size;
        __u32 type;
        __u32 flags;
        __u32 vdevice_id;
};
#define TSMD_IOMMU_VDEVICE_TSM_OP_V5 _IO(TSMD_IOMMUFD_TYPE, TSMD_IOMMUFD_CMD_VDEVICE_TSM_OP)
#define TSMD_IOMMU_VDEVICE_TSM_BIND_V5 0x1
#define TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5 0x2

/* enum iommu_vdevice_tsm_req_scope: allocated globally by iommufd, one range per bus. */
#define TSMD_IOMMU_VDEVICE_TSM_REQ_SCOPE_PCI_BASE_V5 0
#define TSMD_IOMMU_VDEVICE_TSM_REQ_PCI_INFO_V5 0
#define TSMD_IOMMU_VDEVICE_TSM_REQ_PCI_STATE_CHANGE_V5 1
#define TSMD_IOMMU_VDEVICE_TSM_REQ_PCI_DEBUG_READ_V5 2
#define TSMD_IOMMU_VDEVICE_TSM_REQ_PCI_DEBUG_WRITE_V5 3
#define TSMD_IOMMU_VDEVICE_TSM_REQ_SCOPE_PCI_LAST_V5 3

/*
 * IOMMU_VDEVICE_TSM_REQ: __reserved != 0 → EOPNOTSUPP, then scope outside the enum →
 * EINVAL, both before the vDevice lookup. Returns -errno, or the residue: bytes of the
 * response buffer not used (with no response buffer: request bytes not consumed).
 */
struct tsmd_iommu_vdevice_tsm_req_v5 {
        __u32 size;
        __u32 vdevice_id;
        __u32 scope;
        __u32 req_len;
        __u32 resp_len;
        __u32 __reserved;
        __aligned_u64 req_uptr;
        __aligned_u64 resp_uptr;
};
#define TSMD_IOMMU_VDEVICE_TSM_REQ_V5 _IO(TSMD_IOMMUFD_TYPE, TSMD_IOMMUFD_CMD_VDEVICE_TSM_REQ_V5)

/* ---- Layout pins: a changed field, size or number fails the build --------------------- */

#define TSMD_ASSERT_FIELD(type, field, off)                                                       \
        _Static_assert(offsetof(struct type, field) == (off), #type "." #field " offset")
#define TSMD_ASSERT_IOCTL(req, nr)                                                                \
        _Static_assert(_IOC_TYPE(req) == ';' && _IOC_NR(req) == (nr) && _IOC_SIZE(req) == 0 &&   \
                               _IOC_DIR(req) == _IOC_NONE,                                        \
                       #req " encoding")

_Static_assert(sizeof(struct tsmd_iommu_destroy) == 8, "iommu_destroy size");
TSMD_ASSERT_FIELD(tsmd_iommu_destroy, size, 0);
TSMD_ASSERT_FIELD(tsmd_iommu_destroy, id, 4);
TSMD_ASSERT_IOCTL(TSMD_IOMMU_DESTROY, 0x80);

_Static_assert(sizeof(struct tsmd_iommu_option) == 24, "iommu_option size");
_Static_assert(_Alignof(struct tsmd_iommu_option) == 8, "iommu_option alignment");
TSMD_ASSERT_FIELD(tsmd_iommu_option, size, 0);
TSMD_ASSERT_FIELD(tsmd_iommu_option, option_id, 4);
TSMD_ASSERT_FIELD(tsmd_iommu_option, op, 8);
TSMD_ASSERT_FIELD(tsmd_iommu_option, __reserved, 10);
TSMD_ASSERT_FIELD(tsmd_iommu_option, object_id, 12);
TSMD_ASSERT_FIELD(tsmd_iommu_option, val64, 16);
TSMD_ASSERT_IOCTL(TSMD_IOMMU_OPTION, 0x87);

_Static_assert(sizeof(struct tsmd_iommu_vdevice_alloc) == 24, "iommu_vdevice_alloc size");
_Static_assert(_Alignof(struct tsmd_iommu_vdevice_alloc) == 8, "iommu_vdevice_alloc alignment");
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_alloc, size, 0);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_alloc, viommu_id, 4);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_alloc, dev_id, 8);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_alloc, out_vdevice_id, 12);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_alloc, virt_id, 16);
TSMD_ASSERT_IOCTL(TSMD_IOMMU_VDEVICE_ALLOC, 0x91);

_Static_assert(sizeof(struct tsmd_iommu_vdevice_tsm_op_v4) == 16, "tsm_op v4 size");
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_op_v4, size, 0);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_op_v4, op, 4);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_op_v4, flags, 8);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_op_v4, vdevice_id, 12);
TSMD_ASSERT_IOCTL(TSMD_IOMMU_VDEVICE_TSM_OP_V4, 0x95);

_Static_assert(sizeof(struct tsmd_iommu_vdevice_tsm_guest_request_v4) == 40, "guest_request v4 size");
_Static_assert(_Alignof(struct tsmd_iommu_vdevice_tsm_guest_request_v4) == 8, "guest_request v4 alignment");
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_guest_request_v4, size, 0);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_guest_request_v4, vdevice_id, 4);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_guest_request_v4, scope, 8);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_guest_request_v4, req_len, 12);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_guest_request_v4, resp_len, 16);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_guest_request_v4, __reserved, 20);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_guest_request_v4, req_uptr, 24);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_guest_request_v4, resp_uptr, 32);
TSMD_ASSERT_IOCTL(TSMD_IOMMU_VDEVICE_TSM_GUEST_REQUEST_V4, 0x96);

_Static_assert(sizeof(struct tsmd_iommu_vdevice_tsm_op_v5) == 16, "tsm_op v5 size");
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_op_v5, size, 0);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_op_v5, type, 4);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_op_v5, flags, 8);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_op_v5, vdevice_id, 12);
TSMD_ASSERT_IOCTL(TSMD_IOMMU_VDEVICE_TSM_OP_V5, 0x95);

_Static_assert(sizeof(struct tsmd_iommu_vdevice_tsm_req_v5) == 40, "tsm_req v5 size");
_Static_assert(_Alignof(struct tsmd_iommu_vdevice_tsm_req_v5) == 8, "tsm_req v5 alignment");
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_req_v5, size, 0);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_req_v5, vdevice_id, 4);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_req_v5, scope, 8);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_req_v5, req_len, 12);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_req_v5, resp_len, 16);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_req_v5, __reserved, 20);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_req_v5, req_uptr, 24);
TSMD_ASSERT_FIELD(tsmd_iommu_vdevice_tsm_req_v5, resp_uptr, 32);
TSMD_ASSERT_IOCTL(TSMD_IOMMU_VDEVICE_TSM_REQ_V5, 0x96);

#undef TSMD_ASSERT_FIELD
#undef TSMD_ASSERT_IOCTL
