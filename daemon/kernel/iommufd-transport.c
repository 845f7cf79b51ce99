/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The iommufd TSM transport: fills the versioned UAPI structs of iommufd-uapi.h, issues
 * the ioctls through the syscall seam, interprets the kernel's answers, and names its
 * errors. Nothing else in tsmd issues a TSM ioctl. libc only (the monitor links it).
 * Runs in: monitor.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "iommufd-transport.h"
#include "iommufd-uapi.h"
#include "log.h"
#include "macro.h"

_Static_assert(IOMMUFD_TSM_PAYLOAD_MAX <= UINT32_MAX, "lengths must fit the u32 UAPI fields");
_Static_assert(IOMMUFD_TSM_PAYLOAD_MAX <= INT32_MAX, "the residue must fit ioctl()'s int");

/* ---- The syscall seam ------------------------------------------------------------------ */

bool iommufd_uevent_names_iommu(const char *uevent) {
        /* A whole line: not DEVNAME=iommu0 nor DEVNAME=iommufoo, nor another key ending in
         * DEVNAME. The kernel ends every line of a uevent file with a newline (uevent_show()). */
        return strneq(uevent, "DEVNAME=iommu\n", strlen("DEVNAME=iommu\n")) || strstr(uevent, "\nDEVNAME=iommu\n");
}

/* SECURITY: root opens IommuDevice= read-write and hands the fd to VMMs. Only the IOMMU's own
 * character device (that of /dev/iommu, or one sysfs names "iommu") qualifies, or the null and
 * zero devices, which hold nothing (stand-ins where there is no IOMMU: emulation, tests): not a
 * regular file (/etc/shadow), a directory, a FIFO, a socket, nor any other device (/dev/mem). */
static bool iommu_device_ok(const struct stat *st) {
        char path[64], buf[512];
        struct stat iommu;
        ssize_t n;
        int fd;

        if (!S_ISCHR(st->st_mode))
                return false;
        if (st->st_rdev == makedev(1, 3) || st->st_rdev == makedev(1, 5))
                return true;
        if (stat(IOMMUFD_DEFAULT_PATH, &iommu) >= 0 && S_ISCHR(iommu.st_mode) && iommu.st_rdev == st->st_rdev)
                return true;
        snprintf(path, sizeof(path), "/sys/dev/char/%u:%u/uevent", major(st->st_rdev), minor(st->st_rdev));
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return false;
        n = read(fd, buf, sizeof(buf) - 1);
        (void) close(fd);
        if (n <= 0)
                return false;
        buf[n] = 0;
        return iommufd_uevent_names_iommu(buf);
}

int iommufd_device_check(const char *path) {
        struct stat st;

        assert_return(path && path[0] != 0, -EINVAL);

        if (stat(path, &st) < 0)
                return negative_errno();
        return iommu_device_ok(&st) ? 0 : -ENODEV;
}

/* The real open of the IOMMU device: looked at before it is opened for writing (opening some
 * files does things), and what was opened checked again, whatever the path named a moment
 * before. */
static int libc_open(void *userdata _unused_, const char *path, int flags) {
        struct stat st;
        int fd, r;

        r = iommufd_device_check(path);
        if (r < 0)
                return r;
        fd = open(path, flags);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0 || !iommu_device_ok(&st)) {
                (void) close(fd);
                return -ENODEV;
        }
        return fd;
}

static int libc_ioctl(void *userdata _unused_, int fd, unsigned long request, void *arg) {
        return RET_NERRNO(ioctl(fd, request, arg));
}

static int libc_close(void *userdata _unused_, int fd) {
        return RET_NERRNO(close(fd));
}

static const IommufdSyscalls libc_syscalls = {
        .open = libc_open,
        .ioctl = libc_ioctl,
        .close = libc_close,
};

static const IommufdSyscalls *syscalls = &libc_syscalls;

const IommufdSyscalls *iommufd_set_syscalls(const IommufdSyscalls *ops) {
        const IommufdSyscalls *old = syscalls;

        syscalls = ops ?: &libc_syscalls;
        return old == &libc_syscalls ? NULL : old;
}

static int sys_ioctl(int fd, unsigned long request, void *arg) {
        return syscalls->ioctl(syscalls->userdata, fd, request, arg);
}

int iommufd_open(const char *path) {
        int fd;

        if (!path)
                path = IOMMUFD_DEFAULT_PATH;
        assert_return(path[0] != '\0', -EINVAL);

        /* SECURITY: the libc open refuses anything but the IOMMU device (iommu_device_ok()). */
        fd = syscalls->open(syscalls->userdata, path, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd == -ENODEV)
                return log_debug_errno(fd, "Refusing '%s': not the IOMMU device.", path);
        if (fd < 0)
                return log_debug_errno(fd, "Failed to open '%s': %m", path);
        return fd;
}

int iommufd_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                /* Linux releases the descriptor even when close() fails: nothing to retry. */
                (void) syscalls->close(syscalls->userdata, fd);
                errno = saved;
        }
        return -EBADF;
}

/* ---- UAPI probing ---------------------------------------------------------------------- */

/*
 * Probing asks a private, freshly opened iommufd context three questions and compares the
 * answers with what each published version's handlers answer (read from their sources):
 *
 *   op   = IOMMU_VDEVICE_TSM_OP (0x95)  { size 16, type 0, flags 0, vdevice_id 0 }
 *   bad  = TSM request (0x96)           { size 40, vdevice_id 0, scope 0xffffffff, rest 0 }
 *   info = TSM request (0x96)           { size 40, vdevice_id 0, scope 0 (PCI_INFO), rest 0 }
 *
 *   op          bad          info         → result
 *   ENOTTY      ENOTTY       ENOTTY       → -EOPNOTSUPP  no TSM series in this kernel
 *   EOPNOTSUPP  EOPNOTSUPP   EOPNOTSUPP   → -EOPNOTSUPP  series present, CONFIG_TSM=n
 *   ENOENT      EINVAL       ENOENT       → TSM_UAPI_V5  scope validated before the lookup
 *   ENOENT      ENOENT       ENOENT       → TSM_UAPI_V4  scope is the backend's business
 *   ENOTTY      ENOENT       ENOENT       → TSM_UAPI_V4  (a v4 kernel without TSM_OP)
 *   any other combination of those four   → -EPROTO      a layout tsmd does not know
 *   any other errno                       → that errno   a real failure, not an answer
 *   any success (>= 0)                    → -EPROTO      never expected: no object exists
 *
 * ENOENT is the positive signature: the handler parsed our struct and failed to find the
 * vDevice. Development trees have moved these numbers (one puts another ioctl at 0x95 and
 * TSM_OP at 0x96); there the answers come out EINVAL / EOPNOTSUPP / ENOENT, which matches
 * no row, so such a kernel is reported as unknown rather than guessed at.
 *
 * Why this cannot have side effects:
 *  1. The context is private and empty: opened here, never given an object, closed on
 *     return. Every TSM handler resolves vdevice_id with iommufd_get_object() first and
 *     returns ENOENT before it touches a device, a TSM or a VM.
 *  2. vdevice_id 0 is never a valid id, even in a populated context: iommufd allocates ids
 *     from an XArray initialised with XA_FLAGS_ALLOC1, so the first id is 1.
 *  3. type 0 is neither BIND (1) nor UNBIND (2): past a lookup it would still be EINVAL.
 *  4. Requests carry no payload (lengths 0, NULL pointers): nothing to read or to write.
 *  5. If a number belongs to some other ioctl, our bytes are all zero except size and scope:
 *     zero ids never resolve, zero trailing bytes pass copy_struct_from_user(), and at worst
 *     a handler acts on the throwaway private context.
 */

#define PROBE_SCOPE_INVALID UINT32_MAX

static int probe_tsm_op(int fd) {
        struct tsmd_iommu_vdevice_tsm_op_v5 cmd = {
                .size = sizeof(cmd),
                .type = 0,
                .flags = 0,
                .vdevice_id = 0,
        };

        return sys_ioctl(fd, TSMD_IOMMU_VDEVICE_TSM_OP_V5, &cmd);
}

static int probe_tsm_req(int fd, uint32_t scope) {
        /* v4 and v5 requests are byte-identical here: both layouts put scope at offset 8. */
        struct tsmd_iommu_vdevice_tsm_req_v5 cmd = {
                .size = sizeof(cmd),
                .vdevice_id = 0,
                .scope = scope,
        };

        return sys_ioctl(fd, TSMD_IOMMU_VDEVICE_TSM_REQ_V5, &cmd);
}

static bool probe_answer_expected(int r) {
        return r == -ENOTTY || r == -ENOENT || r == -EINVAL || r == -EOPNOTSUPP;
}

static int probe_classify(int op, int bad, int info, TsmUapiVersion *ret_version) {
        static const struct {
                int op, bad, info;
                TsmUapiVersion version; /* or a negative errno */
        } table[] = {
                { -ENOTTY, -ENOTTY, -ENOTTY, -EOPNOTSUPP },
                { -EOPNOTSUPP, -EOPNOTSUPP, -EOPNOTSUPP, -EOPNOTSUPP },
                { -ENOENT, -EINVAL, -ENOENT, TSM_UAPI_V5 },
                { -ENOENT, -ENOENT, -ENOENT, TSM_UAPI_V4 },
                { -ENOTTY, -ENOENT, -ENOENT, TSM_UAPI_V4 },
        };
        const int answers[] = { op, bad, info };

        for (size_t i = 0; i < ELEMENTSOF(answers); i++)
                if (answers[i] < 0 && !probe_answer_expected(answers[i]))
                        return answers[i];
        for (size_t i = 0; i < ELEMENTSOF(answers); i++)
                if (answers[i] >= 0)
                        return -EPROTO;

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                if (table[i].op != op || table[i].bad != bad || table[i].info != info)
                        continue;
                if (table[i].version < 0)
                        return table[i].version;
                *ret_version = table[i].version;
                return 0;
        }
        return -EPROTO;
}

int iommufd_probe_uapi(const char *path, TsmUapiVersion *ret_version) {
        _cleanup_(iommufd_closep) int fd = -EBADF;
        TsmUapiVersion version = _TSM_UAPI_VERSION_INVALID;
        int op, bad, info, r;

        assert_return(ret_version, -EINVAL);

        fd = iommufd_open(path);
        if (fd < 0)
                return fd;

        op = probe_tsm_op(fd);
        bad = probe_tsm_req(fd, PROBE_SCOPE_INVALID);
        info = probe_tsm_req(fd, TSMD_IOMMU_VDEVICE_TSM_REQ_PCI_INFO_V5);

        r = probe_classify(op, bad, info, &version);
        log_debug("iommufd TSM probe: op=%d bad-scope=%d info-scope=%d -> %s", op, bad, info,
                  r < 0 ? strna(iommufd_tsm_error_name(r)) : tsm_uapi_version_to_string(version));
        if (r < 0)
                return r;

        *ret_version = version;
        return 0;
}

/* ---- Bind / unbind --------------------------------------------------------------------- */

/* Everything above the transport reads ENODEV as "the device is gone", and ETIMEDOUT as a call
 * tsmd gave up on (RequestTimeoutUSec=), whose answer is still to come. The kernel means neither:
 * its ETIMEDOUT is a TSM's own SPDM or DOE timeout, answered, and travels as ETIME, named
 * Timeout. Its ENODEV means one thing from TSM_OP: the vDevice's vIOMMU has no VM (v5 checks the
 * KVM file there, and there only), a VMM that forgot KVM_DEV_VFIO_FILE_ADD, which travels as
 * ENOLINK, named NoVmAssociated. From a request (no VM check in v5: a TSM driver's answer) it
 * travels as ENOMEDIUM, named NoDevice, which claims no VM it cannot know of. */
static int kernel_errno(int r, bool op) {
        if (r == -ENODEV)
                return op ? -ENOLINK : -ENOMEDIUM;
        return r == -ETIMEDOUT ? -ETIME : r;
}

static int tsm_op(int fd, TsmUapiVersion version, uint32_t vdevice_id, uint32_t op_type) {
        int r;

        assert_return(fd >= 0, -EBADF);

        switch (version) {
        case TSM_UAPI_V4: {
                struct tsmd_iommu_vdevice_tsm_op_v4 cmd = {
                        .size = sizeof(cmd),
                        .op = op_type,
                        .vdevice_id = vdevice_id,
                };
                /* SECURITY: never hand the kernel a struct with non-zero must-be-zero fields. */
                if (cmd.flags != 0 || cmd.size != sizeof(cmd))
                        return -EINVAL;
                r = sys_ioctl(fd, TSMD_IOMMU_VDEVICE_TSM_OP_V4, &cmd);
                break;
        }
        case TSM_UAPI_V5: {
                struct tsmd_iommu_vdevice_tsm_op_v5 cmd = {
                        .size = sizeof(cmd),
                        .type = op_type,
                        .vdevice_id = vdevice_id,
                };
                if (cmd.flags != 0 || cmd.size != sizeof(cmd))
                        return -EINVAL;
                r = sys_ioctl(fd, TSMD_IOMMU_VDEVICE_TSM_OP_V5, &cmd);
                break;
        }
        default:
                return -EINVAL;
        }
        if (r < 0)
                return kernel_errno(r, true);
        /* The handler returns 0 or -errno; anything else is a kernel we do not understand. */
        if (r > 0)
                return -EIO;
        return 0;
}

int iommufd_tsm_bind(int fd, TsmUapiVersion version, uint32_t vdevice_id) {
        _Static_assert(TSMD_IOMMU_VDEVICE_TSM_BIND_V4 == TSMD_IOMMU_VDEVICE_TSM_BIND_V5, "bind");
        return tsm_op(fd, version, vdevice_id, TSMD_IOMMU_VDEVICE_TSM_BIND_V5);
}

int iommufd_tsm_unbind(int fd, TsmUapiVersion version, uint32_t vdevice_id) {
        _Static_assert(TSMD_IOMMU_VDEVICE_TSM_UNBIND_V4 == TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5, "unbind");
        return tsm_op(fd, version, vdevice_id, TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5);
}

/* ---- Guest requests -------------------------------------------------------------------- */

static uint64_t to_uptr(const void *p, size_t len) {
        /* A zero-length buffer is passed as NULL, so the kernel is never given a pointer
         * that the caller did not mean to share (and that may dangle). */
        return len > 0 ? (uint64_t) (uintptr_t) p : 0;
}

int iommufd_tsm_request(
                int fd,
                TsmUapiVersion version,
                uint32_t vdevice_id,
                uint32_t scope_number,
                const void *req,
                size_t req_len,
                void *resp,
                size_t resp_size,
                size_t *ret_resp_len,
                size_t *ret_req_unconsumed) {

        size_t residue;
        int r;

        assert_return(fd >= 0, -EBADF);
        assert_return(req || req_len == 0, -EINVAL);
        assert_return(resp || resp_size == 0, -EINVAL);
        /* SECURITY: bound what the monitor asks the kernel to copy or pin, before any call. */
        if (req_len > IOMMUFD_TSM_PAYLOAD_MAX || resp_size > IOMMUFD_TSM_PAYLOAD_MAX)
                return -E2BIG;

        switch (version) {
        case TSM_UAPI_V4: {
                struct tsmd_iommu_vdevice_tsm_guest_request_v4 cmd = {
                        .size = sizeof(cmd),
                        .vdevice_id = vdevice_id,
                        .scope = scope_number, /* backend-defined: not ours to judge */
                        .req_len = (uint32_t) req_len,
                        .resp_len = (uint32_t) resp_size,
                        .req_uptr = to_uptr(req, req_len),
                        .resp_uptr = to_uptr(resp, resp_size),
                };
                /* SECURITY: never hand the kernel a struct with non-zero must-be-zero fields. */
                if (cmd.__reserved != 0 || cmd.size != sizeof(cmd))
                        return -EINVAL;
                r = sys_ioctl(fd, TSMD_IOMMU_VDEVICE_TSM_GUEST_REQUEST_V4, &cmd);
                break;
        }
        case TSM_UAPI_V5: {
                struct tsmd_iommu_vdevice_tsm_req_v5 cmd = {
                        .size = sizeof(cmd),
                        .vdevice_id = vdevice_id,
                        .scope = scope_number,
                        .req_len = (uint32_t) req_len,
                        .resp_len = (uint32_t) resp_size,
                        .req_uptr = to_uptr(req, req_len),
                        .resp_uptr = to_uptr(resp, resp_size),
                };
                /* v5 scopes are a closed, global enum: the kernel refuses others with EINVAL,
                 * so do it here and keep unknown numbers away from the kernel altogether. */
                if (scope_number > TSMD_IOMMU_VDEVICE_TSM_REQ_SCOPE_PCI_LAST_V5)
                        return -EINVAL;
                if (cmd.__reserved != 0 || cmd.size != sizeof(cmd))
                        return -EINVAL;
                r = sys_ioctl(fd, TSMD_IOMMU_VDEVICE_TSM_REQ_V5, &cmd);
                break;
        }
        default:
                return -EINVAL;
        }
        if (r < 0)
                return kernel_errno(r, false);

        /*
         * A non-negative return is the residue: bytes of the response buffer the TSM left
         * unused, or, without a response buffer, request bytes it did not consume. A residue
         * larger than the buffer it counts cannot happen with a correct kernel; refuse it
         * rather than underflow the length we report.
         */
        residue = (size_t) r;
        if (resp_size > 0) {
                if (residue > resp_size)
                        return -EIO;
                if (ret_resp_len)
                        *ret_resp_len = resp_size - residue;
                if (ret_req_unconsumed)
                        *ret_req_unconsumed = 0;
        } else {
                if (residue > req_len)
                        return -EIO;
                if (ret_resp_len)
                        *ret_resp_len = 0;
                if (ret_req_unconsumed)
                        *ret_req_unconsumed = residue;
        }
        return 0;
}

/* ---- Named errors ---------------------------------------------------------------------- */

/*
 * General format (include/uapi/linux/iommufd.h, "DOC: General ioctl format"): every
 * iommufd ioctl passes a struct whose first u32 is its size, and uses the common errnos
 *   ENOTTY      the ioctl number is not supported at all,
 *   E2BIG       the number is supported but the struct has non-zero bytes past what the
 *               kernel understands (copy_struct_from_user()),
 *   EOPNOTSUPP  the struct is understood but a known field has an unsupported value,
 *   EINVAL      everything was understood but a field is not correct (also: size shorter
 *               than the kernel's minimum),
 *   ENOENT      an ID provided does not exist,
 *   ENOMEM, EOVERFLOW as usual,
 * plus per-ioctl errnos. The table below is the single place where those errnos, the ones
 * the TSM handlers and the PCI TSM core add (drivers/iommu/iommufd/tsm.c of the series,
 * drivers/pci/tsm.c), and the ones tsmd's own checks return get a stable name. The lead
 * prefixes the name with the Varlink interface name; the names never change meaning.
 */
typedef struct IommufdTsmError {
        int errnum;
        const char *name;
        const char *description;
} IommufdTsmError;

static const IommufdTsmError iommufd_tsm_errors[] = {
        { ENOTTY, "UapiNotSupported",
          "The kernel does not implement this iommufd TSM ioctl (no TSM series, or another layout)." },
        { ENOENT, "NoSuchVDevice",
          "No vDevice with that id exists in this iommufd context." },
        { EINVAL, "InvalidScopeOrArgument",
          "A field is invalid: unknown scope or operation, short struct, device without a TSM, or a scope the PCI TSM core refuses." },
        { EOPNOTSUPP, "NotSupported",
          "A known field has an unsupported value (reserved or flags non-zero), or the kernel lacks CONFIG_TSM." },
        { EPERM, "PermissionDenied",
          "The caller lacks a privilege the operation needs (debug-write scopes need CAP_SYS_RAWIO)." },
        { EACCES, "PermissionDenied",
          "Access to the iommufd device node was denied." },
        { EBUSY, "DeviceBusy",
          "The TDI is already bound to another VM, or the object is in use." },
        { ENOLINK, "NoVmAssociated",
          "The vDevice's vIOMMU has no KVM VM associated (the VMM did not add the VFIO file to KVM; the kernel's TSM_OP says ENODEV)." },
        { ENOMEDIUM, "NoDevice",
          "The TSM found no device behind the vDevice (the kernel's TSM request says ENODEV)." },
        { ENXIO, "DeviceNotBound",
          "The device is not connected to a link TSM, or its TDI is not bound." },
        { E2BIG, "PayloadTooLarge",
          "The request or response exceeds tsmd's limit, or the kernel does not understand the struct's trailing fields." },
        { EFAULT, "BadBuffer",
          "The kernel could not read the request or write the response buffer; a state change may have completed." },
        { ETIMEDOUT, "Timeout",
          "The TSM or the device did not answer in time." },
        { ETIME, "Timeout",
          "The TSM or the device did not answer in time, and the TSM gave up (the kernel says ETIMEDOUT)." },
        { EIO, "TsmFailure",
          "The TSM or its firmware failed the request, or the kernel returned an impossible result." },
        { EINTR, "Interrupted",
          "The call was interrupted by a signal while waiting for the TSM; it may be retried." },
        { ENOMEM, "OutOfMemory",
          "The kernel ran out of memory." },
        { EBADF, "BadDescriptor",
          "The iommufd descriptor is not open." },
        { EPROTO, "UnknownUapi",
          "The kernel's TSM ioctls answer in a way that matches no UAPI version tsmd knows." },
};

static const IommufdTsmError *error_lookup(int negative_errno) {
        for (size_t i = 0; i < ELEMENTSOF(iommufd_tsm_errors); i++)
                if (-iommufd_tsm_errors[i].errnum == negative_errno)
                        return &iommufd_tsm_errors[i];
        return NULL;
}

const char *iommufd_tsm_error_name(int negative_errno) {
        const IommufdTsmError *e;

        if (negative_errno >= 0)
                return NULL;
        e = error_lookup(negative_errno);
        return e ? e->name : "UnexpectedError";
}

const char *iommufd_tsm_error_description(int negative_errno) {
        const IommufdTsmError *e;

        if (negative_errno >= 0)
                return NULL;
        e = error_lookup(negative_errno);
        return e ? e->description : "The kernel returned an error tsmd does not expect from a TSM ioctl.";
}
