/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Probes the running kernel's real /dev/iommu with the libc syscalls. The oracle is a raw
 * IOMMU_VDEVICE_TSM_OP issued here directly: if the kernel answers ENOTTY, it has no TSM
 * series and the probe must say -EOPNOTSUPP. Skipped where /dev/iommu does not exist (no
 * CONFIG_IOMMUFD) or cannot be opened (not privileged). Runs in: test.
 */

#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>

#include "harness.h"
#include "iommufd-transport.h"
#include "iommufd-uapi.h"

TEST(probe_real_kernel) {
        struct tsmd_iommu_vdevice_tsm_op_v5 cmd = { .size = sizeof(cmd) }; /* type 0, vdevice 0 */
        TsmUapiVersion v = _TSM_UAPI_VERSION_INVALID;
        int fd, raw, r;

        if (access(IOMMUFD_DEFAULT_PATH, F_OK) < 0)
                SKIP("%s does not exist (kernel without CONFIG_IOMMUFD)", IOMMUFD_DEFAULT_PATH);

        fd = open(IOMMUFD_DEFAULT_PATH, O_RDWR | O_CLOEXEC);
        if (fd < 0 && (errno == EACCES || errno == EPERM))
                SKIP("cannot open %s: %s", IOMMUFD_DEFAULT_PATH, strerror(errno));
        ASSERT_TRUE(fd >= 0);
        raw = ioctl(fd, TSMD_IOMMU_VDEVICE_TSM_OP_V5, &cmd) < 0 ? -errno : 0;
        close(fd);

        r = iommufd_probe_uapi(NULL, &v);
        printf("# raw TSM_OP answer: %d, probe: %d (%s)\n", raw, r,
               r < 0 ? iommufd_tsm_error_name(r) : tsm_uapi_version_to_string(v));

        if (raw == -ENOTTY) {
                ASSERT_ERRNO(r, EOPNOTSUPP);
                ASSERT_EQ(v, _TSM_UAPI_VERSION_INVALID);
        } else {
                /* A kernel carrying some TSM series: the answer must be a version or a
                 * reasoned refusal, never a random failure. */
                ASSERT_TRUE(r == 0 || r == -EOPNOTSUPP || r == -EPROTO);
                if (r == 0)
                        ASSERT_TRUE(v == TSM_UAPI_V4 || v == TSM_UAPI_V5);
        }
}

TEST_MAIN()
