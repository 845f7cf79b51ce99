/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The iommufd contexts the monitor hands out and the ones it accepts: opening the IOMMU
 * device (or, on the emulated platform without one, a stand-in), and checking that an fd a
 * client passed in is really one of those. Runs in: monitor.
 */
#pragma once

typedef struct TsmPlatform TsmPlatform;

/* Opens the platform's IOMMU device O_RDWR|O_CLOEXEC. Without one (-ENOENT), the emulated
 * platform hands out a sealed memfd instead, so a VMM's fd handling works the same; the real
 * iommufd ioctls would not. Returns 0 and the fd, or the open()/memfd_create() error. */
int monitor_iommufd_open(TsmPlatform *p, int *ret_fd);

/* Returns 0 if fd is the same kind of object monitor_iommufd_open() hands out: the IOMMU
 * character device, or the emulated stand-in when there is no IOMMU device, open for reading
 * and writing. -EACCES if it is not open so (O_PATH, read-only), -EBADF if it is something
 * else (or what the kernel has not cached the attributes of), -ENODEV if this host has no
 * IOMMU device and the platform is not emulated, or the fcntl()/readlink() error. Never waits
 * on the fd's file system. */
int monitor_iommufd_verify(TsmPlatform *p, int fd);
