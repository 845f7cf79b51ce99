/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The new binary of a VMM's cpr-exec, for test-libtsm-handover: adopts the connection to tsmd
 * left open at the fd number argv[1] (FD_CLOEXEC cleared before the exec), checks that it holds
 * context 1 with the device argv[2] as vDevice 3, bound, and that a guest request to it is
 * answered. With a third argument "watch", then watches events on a connection of its own (made
 * after the exec: the same process, for tsmd), says "subscribed" on stdout, and waits (20 s at
 * most) to hear that argv[2] went away. Exit status 0 if so, else 1 with the reason on stderr.
 * Runs in: tests.
 */

#include <poll.h>
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

static unsigned n_subscribed, n_removed;
static const char *watched;

static void on_event(TsmClient *c, int error, const TsmEvent *event, void *userdata) {
        if (error < 0)
                return;
        if (!event)
                n_subscribed++;
        else if (tsm_event_get_kind(event) == TSM_EVENT_DEVICE_REMOVED &&
                 strcmp(tsm_event_get_pci_address(event), watched) == 0)
                n_removed++;
}

/* Runs w's events until *counter is at least 1, for 20 s at most. */
static int pump(TsmClient *w, const unsigned *counter) {
        for (unsigned i = 0; i < 200 && *counter == 0; i++) {
                struct pollfd p = { .fd = tsm_client_get_fd(w), .events = (short) tsm_client_get_events(w) };
                int r;

                if (poll(&p, 1, 100) > 0) {
                        r = tsm_client_process(w);
                        if (r < 0)
                                return r;
                }
        }
        return *counter > 0 ? 0 : -ETIMEDOUT;
}

int main(int argc, char *argv[]) {
        TsmConnectionInfo *info = NULL;
        const TsmHeldVDevice *v;
        uint8_t req[64], resp[4096];
        size_t len, resp_len = 0;
        TsmClient *c = NULL;
        int r;

        if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "watch") != 0))
                return fail("usage: FD PCI-ADDRESS [watch]", EINVAL);
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
        if (argc == 4) {
                TsmClient *w = NULL;

                watched = argv[2];
                r = tsm_client_connect(NULL, &w);
                if (r >= 0)
                        r = tsm_client_watch_events(w, on_event, NULL, NULL);
                if (r >= 0)
                        r = pump(w, &n_subscribed);
                if (r < 0)
                        return fail("watching", r);
                printf("subscribed\n");
                fflush(stdout);
                r = pump(w, &n_removed);
                if (r < 0)
                        return fail("hearing of the device's removal", r);
                tsm_client_free(w);
        }
        tsm_client_free(c);
        return 0;
}
