/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The new binary of a VMM's cpr-exec, for test-libtsm-handover: adopts the connection to tsmd
 * left open at the fd number argv[1] (FD_CLOEXEC cleared before the exec), checks that it holds
 * context 1 with the device argv[2] as vDevice 3, bound, and that a guest request to it is
 * answered. Exit status 0 if so, else 1 with the reason on stderr. Runs in: tests.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu-config.h"
#include "tdisp.h"
#include "tsm.h"

static int fail(const char *what, int r) {
        fprintf(stderr, "tsm-adopt-helper: %s: %s\n", what, strerror(r < 0 ? -r : r));
        return 1;
}

/* GET_TDISP_VERSION for the emulated device at pci_address; 0 on failure. */
static size_t get_version_request(const char *pci_address, uint8_t *buf, size_t size) {
        EmuPciAddress a;
        uint32_t function_id;
        size_t len;

        if (emu_pci_address_parse(pci_address, &a) < 0 ||
            tdisp_function_id_from_pci(a.domain, a.bus, emu_pci_address_devfn(&a), &function_id) < 0 ||
            tdisp_build_request(TDISP_MSG_GET_VERSION, function_id, NULL, 0, buf, size, &len) < 0)
                return 0;
        return len;
}

int main(int argc, char *argv[]) {
        TsmConnectionInfo *info = NULL;
        const TsmHeldVDevice *v;
        uint8_t req[64], resp[4096];
        size_t len, resp_len = 0;
        TsmClient *c = NULL;
        int r;

        if (argc != 3)
                return fail("usage: FD PCI-ADDRESS", EINVAL);
        r = tsm_client_new_from_fd(atoi(argv[1]), &info, &c);
        if (r < 0)
                return fail("tsm_client_new_from_fd", r);
        v = tsm_connection_info_get_vdevice(info, 0);
        if (tsm_connection_info_get_n_contexts(info) != 1 || tsm_connection_info_get_context(info, 0) != 1 ||
            tsm_connection_info_get_n_vdevices(info) != 1 || tsm_held_vdevice_get_id(v) != 3 ||
            strcmp(tsm_held_vdevice_get_pci_address(v), argv[2]) != 0 || !tsm_held_vdevice_is_bound(v))
                return fail("the connection does not hold what it should", EBADMSG);
        tsm_connection_info_free(info);

        len = get_version_request(argv[2], req, sizeof(req));
        if (len == 0)
                return fail("building the request", EINVAL);
        r = tsm_guest_request(c, 1, 3, "info", req, len, resp, sizeof(resp), &resp_len);
        if (r < 0)
                return fail("tsm_guest_request", r);
        if (resp_len < 2 || resp[1] != TDISP_MSG_VERSION)
                return fail("unexpected TDISP response", EBADMSG);
        tsm_client_free(c);
        return 0;
}
