/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The iommufd TSM transport against a fake kernel installed in its syscall seam: the exact
 * request numbers and bytes it hands over per UAPI version, how it reads the kernel's
 * answers, its size and argument checks, UAPI probing against models of each kernel, and
 * the errno → name table; and which character device the libc open takes for the IOMMU's (its
 * sysfs uevent, replaced by a bind mount where the test runs as root). Runs in: test.
 */

#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "harness.h"
#include "iommufd-transport.h"
#include "macro.h"

#define FAKE_FD 42
#define MAX_CALLS 16

typedef struct FakeCall {
        int fd;
        unsigned long request;
        uint32_t size;
        uint8_t bytes[64];
} FakeCall;

/* A kernel model answers one ioctl from its number and the struct bytes it was given. */
typedef int (*KernelModel)(unsigned long request, const uint8_t *arg, uint32_t size);

static struct {
        FakeCall calls[MAX_CALLS];
        unsigned n_calls;
        int ret;
        KernelModel model;
        const void *fill;
        size_t fill_len;
        char open_path[256];
        int open_flags;
        int open_ret;
        unsigned n_open;
        unsigned n_close;
        int last_closed;
} fake;

static uint32_t get_le32(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p) {
        return (uint64_t) get_le32(p) | (uint64_t) get_le32(p + 4) << 32;
}

static void put_le32(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t) (v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t) (v >> (8 * i));
}

static int fake_open(void *userdata, const char *path, int flags) {
        ASSERT_TRUE(userdata == &fake);
        fake.n_open++;
        snprintf(fake.open_path, sizeof(fake.open_path), "%s", path);
        fake.open_flags = flags;
        return fake.open_ret;
}

static int fake_ioctl(void *userdata, int fd, unsigned long request, void *arg) {
        FakeCall *c;
        uint32_t size;

        ASSERT_TRUE(userdata == &fake);
        ASSERT_LE(fake.n_calls + 1, MAX_CALLS);
        c = &fake.calls[fake.n_calls++];

        /* Like the kernel: the first u32 says how many bytes the struct has. */
        memcpy(&size, arg, sizeof(size));
        ASSERT_LE(size, sizeof(c->bytes));
        c->fd = fd;
        c->request = request;
        c->size = size;
        memcpy(c->bytes, arg, size);

        /* Like a TSM writing its response through resp_uptr (offset 32 in v4 and v5). */
        if (fake.fill) {
                uint64_t uptr = get_le64(c->bytes + 32);
                ASSERT_NE(uptr, 0);
                ASSERT_LE(fake.fill_len, get_le32(c->bytes + 16));
                memcpy((void *) (uintptr_t) uptr, fake.fill, fake.fill_len);
        }

        return fake.model ? fake.model(request, c->bytes, size) : fake.ret;
}

static int fake_close(void *userdata, int fd) {
        ASSERT_TRUE(userdata == &fake);
        fake.n_close++;
        fake.last_closed = fd;
        return 0;
}

static const IommufdSyscalls fake_syscalls = {
        .open = fake_open,
        .ioctl = fake_ioctl,
        .close = fake_close,
        .userdata = &fake,
};

static void fake_install(void) {
        const IommufdSyscalls *old;

        memset(&fake, 0, sizeof(fake));
        fake.open_ret = FAKE_FD;
        fake.last_closed = -1;
        old = iommufd_set_syscalls(&fake_syscalls);
        ASSERT_TRUE(!old || old == &fake_syscalls);
}

/* ---- Exact bytes handed to the kernel -------------------------------------------------- */

/* 40-byte request image: six little-endian u32 then two u64 pointers. */
static void request_image(uint8_t out[40], uint32_t vdevice_id, uint32_t scope, uint32_t req_len,
                          uint32_t resp_len, const void *req, const void *resp) {
        put_le32(out + 0, 40);
        put_le32(out + 4, vdevice_id);
        put_le32(out + 8, scope);
        put_le32(out + 12, req_len);
        put_le32(out + 16, resp_len);
        put_le32(out + 20, 0);
        put_le64(out + 24, (uint64_t) (uintptr_t) req);
        put_le64(out + 32, (uint64_t) (uintptr_t) resp);
}

TEST(request_v5_bytes) {
        static const uint8_t golden_head[24] = {
                0x28, 0x00, 0x00, 0x00, /* size = 40 */
                0x07, 0x00, 0x00, 0x00, /* vdevice_id = 7 */
                0x01, 0x00, 0x00, 0x00, /* scope = PCI_STATE_CHANGE */
                0x05, 0x00, 0x00, 0x00, /* req_len = 5 */
                0x40, 0x00, 0x00, 0x00, /* resp_len = 64 */
                0x00, 0x00, 0x00, 0x00, /* __reserved */
        };
        const uint8_t req[5] = { 0x10, 0x84, 0, 0, 0 };
        const char answer[] = "interface report bytes";
        uint8_t resp[64] = {}, expect[40];
        size_t resp_len = 9999;

        fake_install();
        fake.fill = answer;
        fake.fill_len = sizeof(answer);
        fake.ret = (int) (sizeof(resp) - sizeof(answer)); /* residue */

        ASSERT_OK(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 7, 1, req, sizeof(req), resp, sizeof(resp),
                                      &resp_len, NULL));
        ASSERT_EQ(fake.n_calls, 1);
        ASSERT_EQ(fake.calls[0].fd, FAKE_FD);
        ASSERT_EQ(fake.calls[0].request, 0x3b96UL);
        ASSERT_EQ(fake.calls[0].size, 40);
        ASSERT_MEMEQ(fake.calls[0].bytes, golden_head, sizeof(golden_head));
        ASSERT_EQ(get_le64(fake.calls[0].bytes + 24), (uint64_t) (uintptr_t) req);
        ASSERT_EQ(get_le64(fake.calls[0].bytes + 32), (uint64_t) (uintptr_t) resp);
        request_image(expect, 7, 1, 5, 64, req, resp);
        ASSERT_MEMEQ(fake.calls[0].bytes, expect, sizeof(expect));

        ASSERT_EQ(resp_len, sizeof(answer));
        ASSERT_MEMEQ(resp, answer, sizeof(answer));
}

TEST(request_v4_bytes) {
        static const uint8_t golden_head[24] = {
                0x28, 0x00, 0x00, 0x00, /* size = 40 */
                0x04, 0x03, 0x02, 0x01, /* vdevice_id */
                0xef, 0xbe, 0xad, 0xde, /* scope: backend-defined, passed through as is */
                0x03, 0x00, 0x00, 0x00, /* req_len */
                0x00, 0x01, 0x00, 0x00, /* resp_len = 256 */
                0x00, 0x00, 0x00, 0x00, /* __reserved */
        };
        const uint8_t req[3] = { 1, 2, 3 };
        uint8_t resp[256], expect[40];
        size_t resp_len = 0;

        fake_install();
        fake.ret = 200;

        ASSERT_OK(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V4, 0x01020304, 0xdeadbeef, req, sizeof(req), resp,
                                      sizeof(resp), &resp_len, NULL));
        ASSERT_EQ(fake.n_calls, 1);
        ASSERT_EQ(fake.calls[0].request, 0x3b96UL);
        ASSERT_EQ(fake.calls[0].size, 40);
        ASSERT_MEMEQ(fake.calls[0].bytes, golden_head, sizeof(golden_head));
        request_image(expect, 0x01020304, 0xdeadbeef, 3, 256, req, resp);
        ASSERT_MEMEQ(fake.calls[0].bytes, expect, sizeof(expect));
        ASSERT_EQ(resp_len, 56);
}

static void check_op_bytes(int (*f)(int, TsmUapiVersion, uint32_t), TsmUapiVersion v, uint8_t type) {
        const uint8_t golden[16] = {
                0x10, 0x00, 0x00, 0x00, /* size = 16 */
                type, 0x00, 0x00, 0x00, /* op/type */
                0x00, 0x00, 0x00, 0x00, /* flags */
                0x2a, 0x00, 0x00, 0x80, /* vdevice_id = 0x8000002a */
        };

        fake_install();
        ASSERT_OK(f(FAKE_FD, v, 0x8000002a));
        ASSERT_EQ(fake.n_calls, 1);
        ASSERT_EQ(fake.calls[0].fd, FAKE_FD);
        ASSERT_EQ(fake.calls[0].request, 0x3b95UL);
        ASSERT_EQ(fake.calls[0].size, 16);
        ASSERT_MEMEQ(fake.calls[0].bytes, golden, sizeof(golden));
}

TEST(bind_unbind_bytes) {
        check_op_bytes(iommufd_tsm_bind, TSM_UAPI_V5, 1);
        check_op_bytes(iommufd_tsm_unbind, TSM_UAPI_V5, 2);
        check_op_bytes(iommufd_tsm_bind, TSM_UAPI_V4, 1);
        check_op_bytes(iommufd_tsm_unbind, TSM_UAPI_V4, 2);
}

TEST(zero_length_buffers_are_null) {
        uint8_t req[8] = {}, resp[8] = {}, expect[40];
        size_t resp_len = 1234;

        /* Non-NULL buffers with length 0 must not leak their address to the kernel. */
        fake_install();
        ASSERT_OK(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 1, 0, req, 0, resp, 0, &resp_len, NULL));
        request_image(expect, 1, 0, 0, 0, NULL, NULL);
        ASSERT_MEMEQ(fake.calls[0].bytes, expect, sizeof(expect));
        ASSERT_EQ(resp_len, 0);

        /* NULL with length 0 is fine, and so is not wanting the length back. */
        fake_install();
        ASSERT_OK(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 1, 0, NULL, 0, NULL, 0, NULL, NULL));
        ASSERT_EQ(fake.n_calls, 1);
}

/* ---- Reading the kernel's answer ------------------------------------------------------- */

TEST(residue_rules) {
        uint8_t req[16] = {}, resp[100];
        size_t resp_len;

        /* 0: the whole buffer was used. */
        fake_install();
        fake.ret = 0;
        resp_len = 7;
        ASSERT_OK(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 1, 0, req, sizeof(req), resp, sizeof(resp),
                                      &resp_len, NULL));
        ASSERT_EQ(resp_len, 100);

        /* residue == buffer: nothing was written. */
        fake_install();
        fake.ret = 100;
        ASSERT_OK(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 1, 0, req, sizeof(req), resp, sizeof(resp),
                                      &resp_len, NULL));
        ASSERT_EQ(resp_len, 0);

        /* residue > buffer: a kernel bug; refuse it and leave the output alone. */
        fake_install();
        fake.ret = 101;
        resp_len = 4242;
        ASSERT_ERRNO(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 1, 0, req, sizeof(req), resp, sizeof(resp),
                                         &resp_len, NULL),
                     EIO);
        ASSERT_EQ(resp_len, 4242);

        fake_install();
        fake.ret = 101;
        ASSERT_ERRNO(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V4, 1, 0, req, sizeof(req), resp, sizeof(resp),
                                         &resp_len, NULL),
                     EIO);
        ASSERT_EQ(resp_len, 4242);
}

TEST(residue_without_response_buffer) {
        uint8_t req[16] = {};
        size_t resp_len = 77;

        /* Without a response buffer the residue counts unconsumed request bytes. */
        fake_install();
        fake.ret = 16;
        ASSERT_OK(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 3, 0, req, sizeof(req), NULL, 0, &resp_len,
                                      NULL));
        ASSERT_EQ(resp_len, 0);
        ASSERT_EQ(get_le32(fake.calls[0].bytes + 16), 0);
        ASSERT_EQ(get_le64(fake.calls[0].bytes + 32), 0);

        fake_install();
        fake.ret = 17;
        resp_len = 77;
        ASSERT_ERRNO(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 3, 0, req, sizeof(req), NULL, 0, &resp_len,
                                         NULL), EIO);
        ASSERT_EQ(resp_len, 77);
}

/* The request bytes the TSM did not consume are the caller's to know: the residue without a
 * response buffer; with one, the residue counts the response, and every request byte was
 * taken. */
TEST(request_unconsumed) {
        uint8_t req[16] = {}, resp[8];
        size_t resp_len = 77, unconsumed = 77;

        fake_install();
        fake.ret = 5;
        ASSERT_OK(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 3, 0, req, sizeof(req), NULL, 0, &resp_len,
                                      &unconsumed));
        ASSERT_EQ(resp_len, 0);
        ASSERT_EQ(unconsumed, 5);

        fake_install();
        fake.ret = 0;
        ASSERT_OK(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 3, 0, req, sizeof(req), NULL, 0, &resp_len,
                                      &unconsumed));
        ASSERT_EQ(unconsumed, 0);

        fake_install();
        fake.ret = 5;
        unconsumed = 77;
        ASSERT_OK(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 3, 0, req, sizeof(req), resp, sizeof(resp),
                                           &resp_len, &unconsumed));
        ASSERT_EQ(resp_len, 3);
        ASSERT_EQ(unconsumed, 0);

        /* Impossible residues leave both alone. */
        fake_install();
        fake.ret = 17;
        resp_len = unconsumed = 77;
        ASSERT_ERRNO(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 3, 0, req, sizeof(req), NULL, 0, &resp_len,
                                              &unconsumed),
                     EIO);
        ASSERT_EQ(resp_len, 77);
        ASSERT_EQ(unconsumed, 77);
}

TEST(errno_passthrough) {
        static const int errnos[] = { ENOENT, EINVAL, EOPNOTSUPP, ENXIO, ENODEV, EBUSY, EFAULT,
                                      EIO, ETIMEDOUT, EINTR, E2BIG, ENOTTY, EPERM };
        uint8_t req[4] = {}, resp[4];
        size_t resp_len;

        for (size_t i = 0; i < ELEMENTSOF(errnos); i++) {
                /* All as the kernel said, but ENODEV, which above means a device gone (from
                 * TSM_OP: no VM, NoVmAssociated; from a request, which v5 makes no VM check for:
                 * NoDevice), and ETIMEDOUT, which above means tsmd gave up on a call still in
                 * the kernel. */
                int expected = errnos[i] == ETIMEDOUT ? -ETIME : -errnos[i];
                int expected_op = errnos[i] == ENODEV ? -ENOLINK : expected;
                int expected_request = errnos[i] == ENODEV ? -ENOMEDIUM : expected;

                fake_install();
                fake.ret = -errnos[i];
                resp_len = 555;
                ASSERT_EQ(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 1, 0, req, sizeof(req), resp, sizeof(resp),
                                              &resp_len, NULL),
                          expected_request);
                ASSERT_EQ(resp_len, 555);
                ASSERT_EQ(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V4, 1, 0, req, sizeof(req), resp, sizeof(resp),
                                              &resp_len, NULL),
                          expected_request);
                ASSERT_EQ(iommufd_tsm_bind(FAKE_FD, TSM_UAPI_V5, 1), expected_op);
                ASSERT_EQ(iommufd_tsm_unbind(FAKE_FD, TSM_UAPI_V4, 1), expected_op);
                ASSERT_EQ(fake.n_calls, 4);
        }
}

TEST(op_positive_return_is_a_kernel_bug) {
        fake_install();
        fake.ret = 1;
        ASSERT_ERRNO(iommufd_tsm_bind(FAKE_FD, TSM_UAPI_V5, 1), EIO);
        ASSERT_ERRNO(iommufd_tsm_unbind(FAKE_FD, TSM_UAPI_V5, 1), EIO);
}

/* ---- Checks made before any ioctl ------------------------------------------------------ */

TEST(size_caps) {
        uint8_t buf[8] = {};
        size_t resp_len = 3;

        fake_install();
        ASSERT_ERRNO(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 1, 0, buf, (size_t) IOMMUFD_TSM_PAYLOAD_MAX + 1,
                                         buf, sizeof(buf), &resp_len, NULL),
                     E2BIG);
        ASSERT_ERRNO(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 1, 0, buf, sizeof(buf), buf,
                                         (size_t) IOMMUFD_TSM_PAYLOAD_MAX + 1, &resp_len, NULL),
                     E2BIG);
        ASSERT_ERRNO(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V4, 1, 0, buf, SIZE_MAX, buf, sizeof(buf),
                                         &resp_len, NULL),
                     E2BIG);
        ASSERT_ERRNO(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V4, 1, 0, buf, sizeof(buf), buf, (size_t) UINT32_MAX + 1,
                                         &resp_len, NULL),
                     E2BIG);
        ASSERT_EQ(fake.n_calls, 0);
        ASSERT_EQ(resp_len, 3);

        /* Exactly the cap is allowed, and the lengths reach the kernel unchanged. The fake
         * kernel never touches the buffers, so a small one stands in for a large one. */
        fake.ret = (int) IOMMUFD_TSM_PAYLOAD_MAX;
        ASSERT_OK(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 1, 0, buf, IOMMUFD_TSM_PAYLOAD_MAX, buf,
                                      IOMMUFD_TSM_PAYLOAD_MAX, &resp_len, NULL));
        ASSERT_EQ(fake.n_calls, 1);
        ASSERT_EQ(get_le32(fake.calls[0].bytes + 12), IOMMUFD_TSM_PAYLOAD_MAX);
        ASSERT_EQ(get_le32(fake.calls[0].bytes + 16), IOMMUFD_TSM_PAYLOAD_MAX);
        ASSERT_EQ(resp_len, 0);
}

TEST(argument_checks) {
        uint8_t buf[8] = {};
        size_t resp_len = 3;

        fake_install();
        ASSERT_ERRNO(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 1, 0, NULL, 4, buf, sizeof(buf), &resp_len,
                                         NULL), EINVAL);
        ASSERT_ERRNO(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 1, 0, buf, sizeof(buf), NULL, 4, &resp_len,
                                         NULL), EINVAL);
        ASSERT_ERRNO(iommufd_tsm_request(-1, TSM_UAPI_V5, 1, 0, buf, sizeof(buf), buf, sizeof(buf),
                                         &resp_len, NULL), EBADF);
        ASSERT_ERRNO(iommufd_tsm_request(FAKE_FD, _TSM_UAPI_VERSION_MAX, 1, 0, buf, sizeof(buf), buf, sizeof(buf),
                                         &resp_len, NULL),
                     EINVAL);
        ASSERT_ERRNO(iommufd_tsm_request(FAKE_FD, _TSM_UAPI_VERSION_INVALID, 1, 0, buf, sizeof(buf), buf,
                                         sizeof(buf), &resp_len, NULL),
                     EINVAL);
        ASSERT_ERRNO(iommufd_tsm_bind(-1, TSM_UAPI_V5, 1), EBADF);
        ASSERT_ERRNO(iommufd_tsm_bind(FAKE_FD, _TSM_UAPI_VERSION_MAX, 1), EINVAL);
        ASSERT_ERRNO(iommufd_tsm_unbind(FAKE_FD, (TsmUapiVersion) 7, 1), EINVAL);
        ASSERT_EQ(fake.n_calls, 0);
        ASSERT_EQ(resp_len, 3);
}

TEST(v5_scope_range) {
        uint8_t buf[8] = {};

        fake_install();
        ASSERT_ERRNO(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 1, 4, buf, sizeof(buf), buf, sizeof(buf),
                                         NULL, NULL), EINVAL);
        ASSERT_ERRNO(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 1, UINT32_MAX, buf, sizeof(buf), buf,
                                         sizeof(buf), NULL, NULL),
                     EINVAL);
        ASSERT_EQ(fake.n_calls, 0);

        for (uint32_t scope = 0; scope <= 3; scope++)
                ASSERT_OK(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V5, 1, scope, buf, sizeof(buf), buf,
                                              sizeof(buf), NULL, NULL));
        ASSERT_EQ(fake.n_calls, 4);
        ASSERT_EQ(get_le32(fake.calls[3].bytes + 8), 3);

        /* v4 scopes belong to the backend: any number goes through. */
        ASSERT_OK(iommufd_tsm_request(FAKE_FD, TSM_UAPI_V4, 1, UINT32_MAX, buf, sizeof(buf), buf,
                                      sizeof(buf), NULL, NULL));
        ASSERT_EQ(fake.n_calls, 5);
}

/* ---- Open and close -------------------------------------------------------------------- */

TEST(open_and_close) {
        fake_install();
        ASSERT_EQ(iommufd_open(NULL), FAKE_FD);
        ASSERT_STREQ(fake.open_path, "/dev/iommu");
        ASSERT_EQ(fake.open_flags, O_RDWR | O_CLOEXEC | O_NOCTTY);

        ASSERT_EQ(iommufd_open("/tmp/fake-iommu"), FAKE_FD);
        ASSERT_STREQ(fake.open_path, "/tmp/fake-iommu");

        ASSERT_ERRNO(iommufd_open(""), EINVAL);
        ASSERT_EQ(fake.n_open, 2);

        fake.open_ret = -EACCES;
        ASSERT_ERRNO(iommufd_open(NULL), EACCES);

        ASSERT_ERRNO(iommufd_close(FAKE_FD), EBADF);
        ASSERT_EQ(fake.n_close, 1);
        ASSERT_EQ(fake.last_closed, FAKE_FD);
        ASSERT_ERRNO(iommufd_close(-EBADF), EBADF);
        ASSERT_EQ(fake.n_close, 1);
}

TEST(set_syscalls_returns_previous) {
        static const IommufdSyscalls other = { fake_open, fake_ioctl, fake_close, &fake };

        ASSERT_NULL(iommufd_set_syscalls(&fake_syscalls));
        ASSERT_TRUE(iommufd_set_syscalls(&other) == &fake_syscalls);
        ASSERT_TRUE(iommufd_set_syscalls(NULL) == &other);
        ASSERT_NULL(iommufd_set_syscalls(NULL));
}

/* ---- Probing --------------------------------------------------------------------------- */

/* Models of the kernel's dispatcher and handlers, from their sources (daemon/kernel/UAPI.md).
 * The probe's context is empty, so every vDevice lookup fails with ENOENT. */

static int dispatch_size(uint32_t size, uint32_t min_size, uint32_t ksize, const uint8_t *arg) {
        if (size < min_size)
                return -EINVAL;
        for (uint32_t i = ksize; i < size; i++) /* copy_struct_from_user() */
                if (arg[i] != 0)
                        return -E2BIG;
        return 0;
}

static int handler_tsm_op_v5(const uint8_t *arg, uint32_t size) {
        int r = dispatch_size(size, 16, 16, arg);
        if (r < 0)
                return r;
        if (get_le32(arg + 8) != 0) /* flags */
                return -EOPNOTSUPP;
        return -ENOENT; /* iommufd_get_vdevice() in an empty context */
}

static int handler_req_v5(const uint8_t *arg, uint32_t size) {
        int r = dispatch_size(size, 40, 40, arg);
        if (r < 0)
                return r;
        if (get_le32(arg + 20) != 0)
                return -EOPNOTSUPP;
        if (get_le32(arg + 8) > 3)
                return -EINVAL;
        return -ENOENT;
}

static int handler_req_v4(const uint8_t *arg, uint32_t size) {
        int r = dispatch_size(size, 40, 40, arg);
        if (r < 0)
                return r;
        return -ENOENT; /* scope is handed to the backend after the lookup */
}

static int model_no_series(unsigned long request, const uint8_t *arg, uint32_t size) {
        return -ENOTTY;
}

static int model_v5(unsigned long request, const uint8_t *arg, uint32_t size) {
        switch (request) {
        case 0x3b95:
                return handler_tsm_op_v5(arg, size);
        case 0x3b96:
                return handler_req_v5(arg, size);
        default:
                return -ENOTTY;
        }
}

static int model_v4(unsigned long request, const uint8_t *arg, uint32_t size) {
        switch (request) {
        case 0x3b95:
                return handler_tsm_op_v5(arg, size); /* same struct and checks in v2 and v5 */
        case 0x3b96:
                return handler_req_v4(arg, size);
        default:
                return -ENOTTY;
        }
}

static int model_v4_without_op(unsigned long request, const uint8_t *arg, uint32_t size) {
        return request == 0x3b96 ? handler_req_v4(arg, size) : -ENOTTY;
}

static int model_no_config_tsm(unsigned long request, const uint8_t *arg, uint32_t size) {
        return request == 0x3b95 || request == 0x3b96 ? -EOPNOTSUPP : -ENOTTY;
}

/* A development tree that put another ioctl (48-byte minimum) at 0x95 and TSM_OP at 0x96. */
static int model_moved_numbers(unsigned long request, const uint8_t *arg, uint32_t size) {
        switch (request) {
        case 0x3b95:
                return dispatch_size(size, 48, 48, arg) ?: -ENOENT;
        case 0x3b96:
                return handler_tsm_op_v5(arg, size);
        default:
                return -ENOTTY;
        }
}

static int model_v5_nomem(unsigned long request, const uint8_t *arg, uint32_t size) {
        return request == 0x3b96 ? -ENOMEM : model_v5(request, arg, size);
}

static int model_succeeds(unsigned long request, const uint8_t *arg, uint32_t size) {
        return request == 0x3b95 ? 0 : model_v5(request, arg, size);
}

static int run_probe(KernelModel model, TsmUapiVersion *ret) {
        int r;

        fake_install();
        fake.model = model;
        r = iommufd_probe_uapi("/tmp/probe-iommu", ret);

        /* Whatever the answer: a private context was opened, used, and closed. */
        ASSERT_EQ(fake.n_open, 1);
        ASSERT_STREQ(fake.open_path, "/tmp/probe-iommu");
        ASSERT_EQ(fake.open_flags, O_RDWR | O_CLOEXEC | O_NOCTTY);
        ASSERT_EQ(fake.n_close, 1);
        ASSERT_EQ(fake.last_closed, FAKE_FD);
        ASSERT_EQ(fake.n_calls, 3);

        /* Side-effect freedom: vdevice_id 0 everywhere, never BIND/UNBIND, no payload. */
        for (unsigned i = 0; i < fake.n_calls; i++) {
                const FakeCall *c = &fake.calls[i];

                ASSERT_EQ(c->fd, FAKE_FD);
                if (c->request == 0x3b95) {
                        ASSERT_EQ(c->size, 16);
                        ASSERT_EQ(get_le32(c->bytes + 4), 0);  /* type */
                        ASSERT_EQ(get_le32(c->bytes + 8), 0);  /* flags */
                        ASSERT_EQ(get_le32(c->bytes + 12), 0); /* vdevice_id */
                } else {
                        ASSERT_EQ(c->request, 0x3b96UL);
                        ASSERT_EQ(c->size, 40);
                        ASSERT_EQ(get_le32(c->bytes + 4), 0); /* vdevice_id */
                        for (unsigned o = 12; o < 40; o++)    /* lengths, reserved, pointers */
                                ASSERT_EQ(c->bytes[o], 0);
                }
        }
        return r;
}

TEST(probe_no_series) {
        TsmUapiVersion v = _TSM_UAPI_VERSION_INVALID;

        ASSERT_ERRNO(run_probe(model_no_series, &v), EOPNOTSUPP);
        ASSERT_EQ(v, _TSM_UAPI_VERSION_INVALID);
}

TEST(probe_v5) {
        TsmUapiVersion v = _TSM_UAPI_VERSION_INVALID;

        ASSERT_OK(run_probe(model_v5, &v));
        ASSERT_EQ(v, TSM_UAPI_V5);
}

TEST(probe_v4) {
        TsmUapiVersion v = _TSM_UAPI_VERSION_INVALID;

        ASSERT_OK(run_probe(model_v4, &v));
        ASSERT_EQ(v, TSM_UAPI_V4);

        v = _TSM_UAPI_VERSION_INVALID;
        ASSERT_OK(run_probe(model_v4_without_op, &v));
        ASSERT_EQ(v, TSM_UAPI_V4);
}

TEST(probe_no_config_tsm) {
        TsmUapiVersion v = _TSM_UAPI_VERSION_INVALID;

        ASSERT_ERRNO(run_probe(model_no_config_tsm, &v), EOPNOTSUPP);
        ASSERT_EQ(v, _TSM_UAPI_VERSION_INVALID);
}

TEST(probe_unknown_layouts) {
        TsmUapiVersion v = _TSM_UAPI_VERSION_INVALID;

        ASSERT_ERRNO(run_probe(model_moved_numbers, &v), EPROTO);
        ASSERT_ERRNO(run_probe(model_succeeds, &v), EPROTO);
        ASSERT_EQ(v, _TSM_UAPI_VERSION_INVALID);
}

TEST(probe_real_errors_pass_through) {
        TsmUapiVersion v = _TSM_UAPI_VERSION_INVALID;

        ASSERT_ERRNO(run_probe(model_v5_nomem, &v), ENOMEM);
        ASSERT_EQ(v, _TSM_UAPI_VERSION_INVALID);
}

TEST(probe_open_failure) {
        TsmUapiVersion v = _TSM_UAPI_VERSION_INVALID;

        fake_install();
        fake.open_ret = -ENOENT;
        ASSERT_ERRNO(iommufd_probe_uapi(NULL, &v), ENOENT);
        ASSERT_STREQ(fake.open_path, "/dev/iommu");
        ASSERT_EQ(fake.n_calls, 0);
        ASSERT_EQ(fake.n_close, 0);
        ASSERT_ERRNO(iommufd_probe_uapi(NULL, NULL), EINVAL);
}

/* ---- Which character device is the IOMMU's --------------------------------------------- */

TEST(uevent_names_iommu) {
        /* A line of its own, first or after others, whatever follows. */
        ASSERT_TRUE(iommufd_uevent_names_iommu("DEVNAME=iommu\n"));
        ASSERT_TRUE(iommufd_uevent_names_iommu("DEVNAME=iommu\nMAJOR=10\n"));
        ASSERT_TRUE(iommufd_uevent_names_iommu("MAJOR=10\nMINOR=123\nDEVNAME=iommu\n"));
        ASSERT_TRUE(iommufd_uevent_names_iommu("MAJOR=10\nMINOR=123\nDEVNAME=iommu\nDEVMODE=0666\n"));

        /* Another device, or a name that only begins or ends like it. */
        ASSERT_FALSE(iommufd_uevent_names_iommu(""));
        ASSERT_FALSE(iommufd_uevent_names_iommu("\n"));
        ASSERT_FALSE(iommufd_uevent_names_iommu("MAJOR=1\nMINOR=7\nDEVNAME=full\nDEVMODE=0666\n"));
        ASSERT_FALSE(iommufd_uevent_names_iommu("DEVNAME=iommu0\n"));
        ASSERT_FALSE(iommufd_uevent_names_iommu("MAJOR=10\nDEVNAME=iommu0\n"));
        ASSERT_FALSE(iommufd_uevent_names_iommu("DEVNAME=iommufoo\n"));
        ASSERT_FALSE(iommufd_uevent_names_iommu("MAJOR=10\nDEVNAME=iommufoo\n"));
        ASSERT_FALSE(iommufd_uevent_names_iommu("DEVNAME=iommu/0\n"));
        ASSERT_FALSE(iommufd_uevent_names_iommu("DEVNAME=xiommu\n"));
        ASSERT_FALSE(iommufd_uevent_names_iommu("DEVNAME=\n"));
        ASSERT_FALSE(iommufd_uevent_names_iommu("DEVNAME=iomm\n"));
        ASSERT_FALSE(iommufd_uevent_names_iommu("DEVNAME"));

        /* Another key that ends in DEVNAME, or the name as a value. */
        ASSERT_FALSE(iommufd_uevent_names_iommu("XDEVNAME=iommu\n"));
        ASSERT_FALSE(iommufd_uevent_names_iommu("MAJOR=10\nOLD_DEVNAME=iommu\n"));
        ASSERT_FALSE(iommufd_uevent_names_iommu("MAJOR=10\nNOTE=DEVNAME=iommu\n"));

        /* Not a whole line: the kernel ends each with a newline, so a text without it was cut. */
        ASSERT_FALSE(iommufd_uevent_names_iommu("DEVNAME=iommu"));
        ASSERT_FALSE(iommufd_uevent_names_iommu("MAJOR=10\nDEVNAME=iommu"));
}

/* Bind-mounts a file holding @uevent over @sysfs_uevent, asks iommufd_device_check() and the libc
 * iommufd_open() about @dev, and unmounts it again. */
static void check_with_uevent(const char *dir, const char *sysfs_uevent, const char *dev, const char *uevent,
                              int expected) {
        char file[256];
        int fd;

        snprintf(file, sizeof(file), "%s/uevent", dir);
        fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT_OK(fd);
        ASSERT_EQ(write(fd, uevent, strlen(uevent)), (ssize_t) strlen(uevent));
        close(fd);
        if (mount(file, sysfs_uevent, NULL, MS_BIND, NULL) < 0)
                TEST_FAIL("bind-mounting %s over %s: %s", file, sysfs_uevent, strerror(errno));

        ASSERT_EQ(iommufd_device_check(dev), expected);
        ASSERT_NULL(iommufd_set_syscalls(NULL)); /* the real open, and its check of what it opened */
        fd = iommufd_open(dev);
        ASSERT_EQ(fd < 0 ? fd : 0, expected);
        if (fd >= 0)
                ASSERT_EQ(iommufd_close(fd), -EBADF);

        ASSERT_OK(umount2(sysfs_uevent, 0));
        ASSERT_OK(unlink(file));
}

/*
 * A character device that is neither /dev/iommu's nor null or zero qualifies when sysfs names it
 * "iommu", and only then: /dev/full (inert to open read-write) with its uevent file replaced by
 * a bind mount in a private mount namespace (this test's child only).
 */
TEST(device_check_reads_sysfs_uevent) {
        char sysfs_uevent[64], dir[] = "/tmp/tsmd-test-uevent-XXXXXX";
        struct stat st, iommu;

        if (geteuid() != 0)
                SKIP("needs root to bind-mount over sysfs");
        if (stat("/dev/full", &st) < 0 || !S_ISCHR(st.st_mode))
                SKIP("no /dev/full character device here");
        if (stat(IOMMUFD_DEFAULT_PATH, &iommu) >= 0 && iommu.st_rdev == st.st_rdev)
                SKIP("/dev/full is /dev/iommu's device here");
        snprintf(sysfs_uevent, sizeof(sysfs_uevent), "/sys/dev/char/%u:%u/uevent", major(st.st_rdev),
                 minor(st.st_rdev));
        if (access(sysfs_uevent, R_OK) < 0)
                SKIP("no %s: %s", sysfs_uevent, strerror(errno));
        if (unshare(CLONE_NEWNS) < 0)
                SKIP("unshare(CLONE_NEWNS): %s", strerror(errno));
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                SKIP("making / private: %s", strerror(errno));
        ASSERT_NOT_NULL(mkdtemp(dir));
        test_remove_at_end(dir);

        /* As the kernel has it: full, not the IOMMU. */
        ASSERT_ERRNO(iommufd_device_check("/dev/full"), ENODEV);

        check_with_uevent(dir, sysfs_uevent, "/dev/full", "DEVNAME=iommu\nMAJOR=1\nMINOR=7\n", 0);
        check_with_uevent(dir, sysfs_uevent, "/dev/full", "MAJOR=1\nMINOR=7\nDEVNAME=iommu\nDEVMODE=0666\n", 0);
        check_with_uevent(dir, sysfs_uevent, "/dev/full", "MAJOR=1\nMINOR=7\nDEVNAME=iommu0\n", -ENODEV);
        check_with_uevent(dir, sysfs_uevent, "/dev/full", "MAJOR=1\nMINOR=7\nDEVNAME=iommufoo\n", -ENODEV);
        check_with_uevent(dir, sysfs_uevent, "/dev/full", "MAJOR=1\nMINOR=7\nDEVNAME=full\n", -ENODEV);
        check_with_uevent(dir, sysfs_uevent, "/dev/full", "", -ENODEV);

        /* Unmounted, the kernel's answer again. */
        ASSERT_ERRNO(iommufd_device_check("/dev/full"), ENODEV);
}

/* ---- Named errors ---------------------------------------------------------------------- */

TEST(error_names) {
        static const struct {
                int errnum;
                const char *name;
        } table[] = {
                { ENOTTY, "UapiNotSupported" },
                { ENOENT, "NoSuchVDevice" },
                { EINVAL, "InvalidScopeOrArgument" },
                { EOPNOTSUPP, "NotSupported" },
                { EPERM, "PermissionDenied" },
                { EACCES, "PermissionDenied" },
                { EBUSY, "DeviceBusy" },
                { ENOLINK, "NoVmAssociated" },
                { ENOMEDIUM, "NoDevice" },
                { ENXIO, "DeviceNotBound" },
                { E2BIG, "PayloadTooLarge" },
                { EFAULT, "BadBuffer" },
                { ETIMEDOUT, "Timeout" },
                { ETIME, "Timeout" },
                { EIO, "TsmFailure" },
                { EINTR, "Interrupted" },
                { ENOMEM, "OutOfMemory" },
                { EBADF, "BadDescriptor" },
                { EPROTO, "UnknownUapi" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const char *d = iommufd_tsm_error_description(-table[i].errnum);

                ASSERT_STREQ(iommufd_tsm_error_name(-table[i].errnum), table[i].name);
                ASSERT_NOT_NULL(d);
                ASSERT_TRUE(strlen(d) > 10);
                ASSERT_TRUE(strcmp(d, iommufd_tsm_error_description(-EHOSTDOWN)) != 0);
        }

        ASSERT_STREQ(iommufd_tsm_error_name(-EHOSTDOWN), "UnexpectedError");
        ASSERT_NOT_NULL(iommufd_tsm_error_description(-EHOSTDOWN));
        ASSERT_NULL(iommufd_tsm_error_name(0));
        ASSERT_NULL(iommufd_tsm_error_name(5));
        ASSERT_NULL(iommufd_tsm_error_description(0));

        /* Names are usable as Varlink error name suffixes: [A-Z][A-Za-z0-9]*. */
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const char *n = iommufd_tsm_error_name(-table[i].errnum);

                ASSERT_TRUE(n[0] >= 'A' && n[0] <= 'Z');
                for (const char *p = n; *p; p++)
                        ASSERT_TRUE((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                                    (*p >= '0' && *p <= '9'));
        }
}

TEST_MAIN()
