/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by libtsm's tests (see libtsm-test-util.h). Runs in: tests only. */

#include <poll.h>

#include "emu-config.h"
#include "libtsm-test-util.h"
#include "tdisp.h"
#include "tsmd-instance.h"

size_t tdisp_request(const char *pci_address, uint8_t type, const void *body, size_t body_len, void *buf,
                     size_t size) {
        EmuPciAddress a;
        uint32_t function_id;
        size_t len;

        ASSERT_OK(emu_pci_address_parse(pci_address, &a));
        ASSERT_OK(tdisp_function_id_from_pci(a.domain, a.bus, emu_pci_address_devfn(&a), &function_id));
        ASSERT_OK(tdisp_build_request(type, function_id, body, body_len, buf, size, &len));
        return len;
}

int tdisp_response_type(const void *resp, size_t len) {
        return len >= 2 ? ((const uint8_t *) resp)[1] : -1;
}

bool pump_until(TsmClient *c, const unsigned *counter, unsigned n, uint64_t timeout_usec, int *ret_process) {
        uint64_t deadline = test_now_usec() + timeout_usec;

        while (*counter < n) {
                uint64_t now = test_now_usec();
                struct pollfd p;
                int r;

                if (now >= deadline)
                        return false;
                p = (struct pollfd){ .fd = tsm_client_get_fd(c), .events = (short) tsm_client_get_events(c) };
                ASSERT_TRUE(p.fd >= 0);
                r = poll(&p, 1, (int) ((deadline - now + 999) / 1000));
                if (r < 0 && errno != EINTR)
                        TEST_FAIL("poll: %s", strerror(errno));
                /* As a real event loop: process only when poll() says so. */
                if (r <= 0)
                        continue;
                r = tsm_client_process(c);
                if (r < 0) {
                        if (ret_process)
                                *ret_process = r;
                        return *counter >= n;
                }
        }
        return true;
}

uint64_t setup_device(TsmClient *c, const char *pci_address, uint32_t vdevice_id, int *ret_iommufd) {
        uint64_t ctx;
        int fd;

        ASSERT_OK(tsm_context_open(c, &ctx, &fd));
        ASSERT_OK(tsm_device_attach(c, ctx, vdevice_id, pci_address, -1, NULL));
        ASSERT_OK(tsm_device_bind(c, ctx, vdevice_id, NULL));
        if (ret_iommufd)
                *ret_iommufd = fd;
        else
                close(fd);
        return ctx;
}
