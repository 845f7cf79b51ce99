/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a VMM does with tsmd, start to finish, on libtsm: open an iommufd context, attach the
 * vDevice it assigned to its guest, learn the backend and its named scopes, bind (TDISP lock),
 * forward the guest's TDISP requests (its accept of the device: the interface report, then a
 * START the TSM completes with the nonce it kept at the bind; then several at once through the
 * event loop), unbind, detach, close. Runs against the emulated platform out of the box. The same flow on
 * the raw Varlink client is ../examples/vmm-example.c.
 *
 *   vmm-libtsm [--socket=PATH] [PCI-ADDRESS]
 *
 * Only the TDISP message builder comes from tsmd's tree (tdisp.h); everything else is the
 * public API of <tsm.h>.
 */

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "emu-config.h"
#include "tdisp.h"
#include "tsm.h"

#define VDEVICE_ID 1

static uint32_t function_id;

/* c is still valid here whatever r is: this program never frees the client from a callback,
 * the one case where a call returns -ECANCELED with the client gone (see tsm.h). */
static void die(TsmClient *c, const char *what, int r) {
        fprintf(stderr, "%s: %s", what, strerror(-r));
        if (tsm_client_get_error_name(c))
                fprintf(stderr, " (%s: %s)", tsm_client_get_error_name(c), tsm_client_get_error_message(c));
        fputc('\n', stderr);
        exit(EXIT_FAILURE);
}

static size_t build(uint8_t type, const void *body, size_t body_len, uint8_t *msg, size_t size) {
        size_t len;

        if (tdisp_build_request(type, function_id, body, body_len, msg, size, &len) < 0)
                exit(EXIT_FAILURE);
        return len;
}

static void print_response(const char *scope, uint8_t type, const uint8_t *resp, size_t len) {
        printf("  %-13s %-32s -> %zu bytes, %s\n", scope, tdisp_message_type_to_string(type), len,
               len >= 2 ? tdisp_message_type_to_string(resp[1]) : "?");
}

/* Sends one TDISP request in a scope and waits for the response. */
static void guest_request(TsmClient *c, uint64_t ctx, const char *scope, uint8_t type, const void *body,
                          size_t body_len) {
        uint8_t msg[256], resp[4096];
        size_t len = build(type, body, body_len, msg, sizeof(msg)), resp_len;
        int r;

        r = tsm_guest_request(c, ctx, VDEVICE_ID, scope, msg, len, resp, sizeof(resp), &resp_len);
        if (r < 0)
                die(c, "GuestRequest", r);
        print_response(scope, type, resp, resp_len);
}

/* Asynchronous requests: what a VMM does when several vCPUs forward requests at once. */
typedef struct Inflight {
        uint8_t type;
        unsigned *n_done;
} Inflight;

static void on_response(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        Inflight *f = userdata;

        if (error < 0)
                die(c, "GuestRequest (async)", error);
        print_response("info (async)", f->type, response, len);
}

static void on_destroy(void *userdata) {
        Inflight *f = userdata;

        (*f->n_done)++;
}

static void run_async(TsmClient *c, uint64_t ctx) {
        static const uint8_t types[] = { TDISP_MSG_GET_VERSION, TDISP_MSG_GET_DEVICE_INTERFACE_STATE };
        Inflight inflight[ELEMENTSOF(types)];
        unsigned n_done = 0;
        uint8_t msg[64];
        int r;

        for (size_t i = 0; i < ELEMENTSOF(types); i++) {
                size_t len = build(types[i], NULL, 0, msg, sizeof(msg));

                inflight[i] = (Inflight){ .type = types[i], .n_done = &n_done };
                r = tsm_guest_request_async(c, ctx, VDEVICE_ID, "info", msg, len, 4096, on_response,
                                            &inflight[i], on_destroy);
                if (r < 0)
                        die(c, "GuestRequest (async)", r);
        }

        /* The caller's event loop: here a plain poll() on libtsm's fd. */
        while (n_done < ELEMENTSOF(types)) {
                struct pollfd p = { .fd = tsm_client_get_fd(c), .events = (short) tsm_client_get_events(c) };

                if (poll(&p, 1, 5000) <= 0) {
                        fprintf(stderr, "No response from tsmd.\n");
                        exit(EXIT_FAILURE);
                }
                r = tsm_client_process(c);
                if (r < 0)
                        die(c, "process", r);
        }
}

int main(int argc, char *argv[]) {
        const char *socket = NULL, *address = "0000:01:00.0";
        TsmDeviceInfo *info = NULL;
        TsmClient *c = NULL;
        TsmTdiState state;
        bool emulated, may_start = false;
        EmuPciAddress pci;
        uint64_t ctx;
        int iommufd, r;
        char path[64], link[256];
        ssize_t n;

        for (int i = 1; i < argc; i++) {
                if (strneq(argv[i], "--socket=", 9))
                        socket = argv[i] + 9;
                else
                        address = argv[i];
        }

        r = emu_pci_address_parse(address, &pci);
        if (r >= 0)
                r = tdisp_function_id_from_pci(pci.domain, pci.bus, emu_pci_address_devfn(&pci), &function_id);
        if (r < 0) {
                fprintf(stderr, "Not a PCI address: %s\n", address);
                return EXIT_FAILURE;
        }

        /* NULL: $TSMD_GUEST_SOCKET, else /run/tsmd/io.tsmd.Guest. */
        r = tsm_client_connect(socket, &c);
        if (r < 0) {
                fprintf(stderr, "Cannot connect to tsmd: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }

        r = tsm_context_open(c, &ctx, &iommufd);
        if (r < 0)
                die(c, "OpenContext", r);
        snprintf(path, sizeof(path), "/proc/self/fd/%i", iommufd);
        n = readlink(path, link, sizeof(link) - 1);
        link[n > 0 ? n : 0] = 0;
        printf("context %" PRIu64 ": iommufd %i (%s)\n", ctx, iommufd, link);

        r = tsm_device_attach(c, ctx, VDEVICE_ID, address, -1, &info);
        if (r < 0)
                die(c, "AttachDevice", r);
        printf("vDevice %u = %s: backend %s, TSM %s, UAPI %s\n", VDEVICE_ID, address,
               tsm_device_info_get_backend(info), tsm_device_info_get_tsm(info), tsm_device_info_get_uapi(info));
        emulated = streq(tsm_device_info_get_backend(info), "emulated");
        for (size_t i = 0; i < tsm_device_info_get_n_scopes(info); i++) {
                const TsmScope *s = tsm_device_info_get_scope(info, i);

                if (streq(tsm_scope_get_name(s), "state-change"))
                        may_start = tsm_scope_is_allowed(s);

                printf("  scope %-13s number %" PRIu32 ", %s\n", tsm_scope_get_name(s), tsm_scope_get_number(s),
                       tsm_scope_is_allowed(s) ? "allowed" : "not granted");
        }
        info = tsm_device_info_free(info);

        printf("guest requests:\n");
        guest_request(c, ctx, "info", TDISP_MSG_GET_VERSION, NULL, 0);
        guest_request(c, ctx, "info", TDISP_MSG_GET_CAPABILITIES, (const uint8_t[4]){}, 4);

        r = tsm_device_bind(c, ctx, VDEVICE_ID, &state);
        if (r < 0)
                die(c, "Bind", r);
        printf("bound: TDI state %s\n", tsm_tdi_state_to_string(state) ?: "(not visible)");

        /* The guest accepts the device (raw TDISP: the emulated backend's payloads; a kernel
         * TSM's guest speaks its own format): it reads the interface report, then sends START.
         * The TSM locked the TDI at the bind and kept the nonce, so the guest sends none (zeros):
         * the TSM completes the START with it. */
        if (emulated) {
                static const uint8_t no_nonce[TDISP_NONCE_SIZE] = {};

                guest_request(c, ctx, "info", TDISP_MSG_GET_DEVICE_INTERFACE_REPORT,
                              (const uint16_t[2]){ htole16(0), htole16(1024) }, 2 * sizeof(uint16_t));
                if (may_start) {
                        guest_request(c, ctx, "state-change", TDISP_MSG_START_INTERFACE_REQ, no_nonce,
                                      sizeof(no_nonce));
                        r = tsm_device_get_state(c, ctx, VDEVICE_ID, &state, NULL);
                        if (r < 0)
                                die(c, "GetDeviceState", r);
                        printf("accepted: TDI state %s\n", tsm_tdi_state_to_string(state) ?: "(not visible)");
                }
        }

        guest_request(c, ctx, "info", TDISP_MSG_GET_DEVICE_INTERFACE_STATE, NULL, 0);
        run_async(c, ctx);

        r = tsm_device_unbind(c, ctx, VDEVICE_ID, &state);
        if (r < 0)
                die(c, "Unbind", r);
        printf("unbound: TDI state %s\n", tsm_tdi_state_to_string(state) ?: "(not visible)");

        r = tsm_device_detach(c, ctx, VDEVICE_ID);
        if (r >= 0)
                r = tsm_context_close(c, ctx);
        if (r < 0)
                die(c, "Detach/CloseContext", r);

        tsm_client_free(c);
        close(iommufd);
        return EXIT_SUCCESS;
}
