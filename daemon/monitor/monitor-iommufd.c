/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Opening and recognising iommufds. Runs in: monitor. */

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "iommufd-transport.h"
#include "log.h"
#include "monitor-iommufd.h"
#include "tsm-platform.h"

#define EMULATED_IOMMUFD_NAME "tsmd-emulated-iommufd"
#define EMULATED_IOMMUFD_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)

int monitor_iommufd_open(TsmPlatform *p, int *ret_fd) {
        static bool logged_stand_in = false;
        const char *path = tsm_platform_get_iommu_device(p);
        int fd;

        assert(p);
        assert(ret_fd);

        fd = iommufd_open(path);
        if (fd == -ENODEV) {
                static bool logged = false;

                /* Once: every OPEN_CONTEXT would say it again. */
                if (!logged)
                        log_error("IommuDevice=%s is not the IOMMU's character device (nor /dev/null or /dev/zero): "
                                  "refusing to open it for VMMs.", strna(path));
                logged = true;
        }
        if (fd >= 0 || fd != -ENOENT || !tsm_platform_is_emulated(p)) {
                if (fd < 0)
                        return fd;
                *ret_fd = fd;
                return 0;
        }

        /* Once, as above: a typo in IommuDevice= must not go unnoticed. */
        if (!logged_stand_in)
                log_notice("IommuDevice=%s does not exist: contexts get an inert stand-in for an iommufd (the "
                           "emulated platform).", strna(path));
        logged_stand_in = true;

        /* Sealed, so it stays an empty, inert object whoever holds it; verify checks the seals. */
        fd = memfd_create(EMULATED_IOMMUFD_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return negative_errno();
        (void) fcntl(fd, F_ADD_SEALS, EMULATED_IOMMUFD_SEALS);
        *ret_fd = fd;
        return 0;
}

/* SECURITY: what it is is not all: an O_PATH fd (or one opened read-only) of /dev/iommu looks
 * like the device, yet is no iommufd, and would be handed to others as one. */
static int flags_check_rdwr(int flags) {
        if ((flags & O_PATH) || (flags & O_ACCMODE) != O_RDWR)
                return -EACCES;
        return 0;
}

/* SECURITY: an adopted fd must be what it claims: the same kind of object that
 * monitor_iommufd_open() hands out. The monitor later issues ioctls on it as root. Nothing
 * here calls into the fd's file system, which may be the client's (FUSE, with a server that
 * never answers): its flags, the attributes the kernel has cached, the /proc link and the
 * seals are all the kernel's own. */
int monitor_iommufd_verify(TsmPlatform *p, int fd) {
        const char *path = tsm_platform_get_iommu_device(p);
        char link[64], target[128];
        struct stat st, want;
        int flags;
        ssize_t n;

        assert(p);

        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return negative_errno();
        /* What cannot be looked at (a FUSE mount's attributes, without allow_other) is none. */
        if (fstat_cached(fd, &st) < 0)
                return -EBADF;
        if (stat(path, &want) >= 0)
                return S_ISCHR(st.st_mode) && st.st_rdev == want.st_rdev ? flags_check_rdwr(flags) : -EBADF;
        if (!tsm_platform_is_emulated(p))
                return -ENODEV;

        /* memfd names show in the /proc link as "/memfd:<name> (deleted)". */
        snprintf(link, sizeof(link), "/proc/self/fd/%i", fd);
        n = readlink(link, target, sizeof(target) - 1);
        if (n < 0)
                return negative_errno();
        target[n] = 0;
        if (!strneq(target, "/memfd:" EMULATED_IOMMUFD_NAME, strlen("/memfd:" EMULATED_IOMMUFD_NAME)) ||
            fcntl(fd, F_GET_SEALS) != EMULATED_IOMMUFD_SEALS)
                return -EBADF;
        return flags_check_rdwr(flags);
}
