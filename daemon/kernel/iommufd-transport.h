/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel transport for TSM requests: opens /dev/iommu, probes which iommufd TSM UAPI
 * the running kernel speaks, and issues TSM bind/unbind/request ioctls with the struct of
 * that version. Every kernel call goes through one replaceable syscall table, so tests can
 * check the exact request number and bytes handed to the kernel. libc only.
 * Runs in: monitor.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsm-types.h"

#define IOMMUFD_DEFAULT_PATH "/dev/iommu"

/*
 * Largest request or response buffer handed to the kernel. It matches the kernel's own bound
 * for TSM blobs (TSM_REPORT_OUTBLOB_MAX, 16 MiB) and stays far below what fits the u32
 * length fields and the int returned by ioctl() (the residue must fit). Larger sizes are
 * refused with -E2BIG before any ioctl, so the monitor never has the kernel pin more.
 */
#define IOMMUFD_TSM_PAYLOAD_MAX (16U * 1024U * 1024U)

/*
 * The syscall seam. Each returns >= 0 on success and a negative errno on failure (not -1 +
 * errno): open returns the fd, ioctl the ioctl's non-negative return value, close 0.
 * userdata is passed back unchanged. Tests install a fake kernel here.
 */
typedef struct IommufdSyscalls {
        int (*open)(void *userdata, const char *path, int flags);
        int (*ioctl)(void *userdata, int fd, unsigned long request, void *arg);
        int (*close)(void *userdata, int fd);
        void *userdata;
} IommufdSyscalls;

/* Installs @ops (NULL: the libc calls) and returns the previous table. Not thread-safe:
 * meant for test set-up, before any other call. @ops must outlive its use. */
const IommufdSyscalls *iommufd_set_syscalls(const IommufdSyscalls *ops);

/* Whether @path names what iommufd_open() opens: 0 for the IOMMU's character device
 * (that of /dev/iommu, or the one sysfs names "iommu") or the inert null and zero devices,
 * -ENODEV for anything else there (a regular file, a directory, a FIFO, a socket, another
 * device), or stat()'s error (-ENOENT: nothing there). Opens nothing but sysfs. */
int iommufd_device_check(const char *path);

/* Whether @uevent, the text of a character device's /sys/dev/char/MAJ:MIN/uevent, names it
 * "iommu": a line DEVNAME=iommu, first or after another. What iommufd_device_check() asks of a
 * device that is not /dev/iommu's. */
bool iommufd_uevent_names_iommu(const char *uevent);

/* Opens @path (NULL: /dev/iommu) O_RDWR|O_CLOEXEC|O_NOCTTY. Returns the fd or a negative errno:
 * through libc, -ENODEV for anything but the IOMMU's character device (that of /dev/iommu, or
 * the one sysfs names "iommu") or the inert null and zero devices (a regular file, a directory,
 * a FIFO, a socket, another device), checked before it is opened and on the fd opened; a test's
 * IommufdSyscalls answers for itself. */
int iommufd_open(const char *path);

/* Closes @fd if >= 0 through the seam; always returns -EBADF (fd = iommufd_close(fd)). */
int iommufd_close(int fd);
static inline void iommufd_closep(int *fd) {
        *fd = iommufd_close(*fd);
}

/* Opens a private iommufd context at @path (NULL: /dev/iommu), asks it which TSM UAPI it
 * implements, and closes it. Returns 0 and the version, or -EOPNOTSUPP (no TSM ioctls, or
 * a kernel without CONFIG_TSM), -EPROTO (TSM ioctl numbers answer like no known layout),
 * or the open()/ioctl error. See the decision table in iommufd-transport.c. */
int iommufd_probe_uapi(const char *path, TsmUapiVersion *ret_version);

/* Binds/unbinds the TDI behind @vdevice_id (from IOMMU_VDEVICE_ALLOC) to/from the VM that
 * the VMM associated with the device. Returns 0 or a negative errno (see the error table). */
int iommufd_tsm_bind(int fd, TsmUapiVersion version, uint32_t vdevice_id);
int iommufd_tsm_unbind(int fd, TsmUapiVersion version, uint32_t vdevice_id);

/* Forwards one guest request to the TSM behind @vdevice_id. @scope_number is the raw UAPI
 * number: backend-defined in v4, one of the global PCI scopes (0..3) in v5. @req/@req_len
 * is the payload, @resp/@resp_size the response buffer (either may be NULL with length 0).
 * On success returns 0 and sets *ret_resp_len (optional) to the bytes the kernel wrote, and
 * *ret_req_unconsumed (optional) to the request bytes the TSM did not consume: the kernel's
 * residue where there is no response buffer (a partly consumed request), else 0. */
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
                size_t *ret_req_unconsumed);

/* Stable error name (a Varlink error name suffix, e.g. "NoSuchVDevice") and a one-line
 * meaning for a negative errno returned by the functions above. Unknown errnos give
 * "UnexpectedError"; non-negative input gives NULL. */
const char *iommufd_tsm_error_name(int negative_errno);
const char *iommufd_tsm_error_description(int negative_errno);
