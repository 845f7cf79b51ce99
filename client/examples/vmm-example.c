/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a VMM does with tsmd, start to finish: open an iommufd context, attach the vDevice it
 * assigned to its guest, learn the backend and its named scopes, bind (TDISP lock: guest
 * requests need it), forward the guest's TDISP requests as the guest accepts the device (it reads the interface report
 * and starts the TDI, which the TSM completes with the nonce it kept at the bind), unbind.
 * Runs against the emulated platform out of the box.
 *
 *   vmm-example [--socket=PATH] [--vfio=PATH] [PCI-ADDRESS]
 *
 * --vfio=PATH attaches the device with its VFIO cdev (/dev/vfio/devices/vfioN) opened: the proof
 * that this VMM holds it, which a kernel TSM's device needs; the emulated platform's need none.
 *
 * A guest request the policy refuses (a scope it does not grant) is shown as the VMM gets it,
 * the named error and its reason, and the flow goes on without it.
 *
 * The raw protocol: each step the io.tsmd.Guest call it is, on this tree's internal Varlink
 * client (varlink-client.h, json-c) and its TDISP and PCI-address helpers. Neither is a public
 * API, so this file builds only inside the tree: a VMM in C links libtsm instead (the same
 * flow, self-contained, is ../libtsm/examples/vmm-libtsm.c); one in another language speaks
 * the protocol with any Varlink client.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>

#include "base64.h"
#include "emu-config.h"
#include "json-util.h"
#include "tdisp.h"
#include "varlink-client.h"

#define DEFAULT_SOCKET "/run/tsmd/io.tsmd.Guest"
#define DEFAULT_ADDRESS "0000:01:00.0"

static VarlinkClient *client;
static uint32_t function_id;

/* Makes a call; a connection failure ends the program, an error reply is left to the caller:
 * its name in *ret_error, its parameters as the reply. */
static json_object *call_full(const char *method, json_object *params, const char **ret_error) {
        json_object *reply = NULL;
        int r;

        *ret_error = NULL;
        r = varlink_client_call(client, method, params, &reply, ret_error);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", method, strerror(-r));
                exit(EXIT_FAILURE);
        }
        return reply;
}

/* Makes a call; any error ends the program. */
static json_object *call(const char *method, json_object *params) {
        const char *error;
        json_object *reply = call_full(method, params, &error);

        if (error) {
                fprintf(stderr, "%s: %s %s\n", method, error, json_object_to_json_string(reply));
                exit(EXIT_FAILURE);
        }
        return reply;
}

/* A call's parameters from JSON text (its strings need no escaping here: scope names, a parsed
 * PCI address, base64); exits if they cannot be made. */
static json_object *params(const char *format, ...) _printf_(1, 2);
static json_object *params(const char *format, ...) {
        _cleanup_free_ char *text = NULL;
        json_object *p;
        va_list ap;
        int n;

        va_start(ap, format);
        n = vasprintf(&text, format, ap);
        va_end(ap);
        p = n < 0 ? NULL : json_tokener_parse(text);
        if (!p) {
                fprintf(stderr, "Cannot make a call's parameters: out of memory.\n");
                exit(EXIT_FAILURE);
        }
        return p;
}

/* Sends one TDISP request in a scope and returns the response bytes; 0 if tsmd refused it with
 * a named error (the policy's Denied, say), which is shown as the VMM gets it. */
static size_t guest_request(int64_t ctx, const char *scope, uint8_t type, const void *body, size_t body_len,
                            uint8_t *resp, size_t resp_size) {
        uint8_t msg[256];
        size_t len;
        _cleanup_free_ char *b64 = NULL;
        _cleanup_free_ void *out = NULL;
        json_object *reply;
        const char *error;
        size_t out_len;

        if (tdisp_build_request(type, function_id, body, body_len, msg, sizeof(msg), &len) < 0 ||
            base64_encode(msg, len, &b64) < 0)
                exit(EXIT_FAILURE);
        reply = call_full("io.tsmd.Guest.GuestRequest",
                          params("{\"context\":%" PRIi64 ",\"vdeviceId\":1,\"scope\":\"%s\",\"request\":\"%s\","
                                 "\"maxResponseSize\":%zu}", ctx, scope, b64, resp_size),
                          &error);
        if (error) {
                printf("  %-13s %-32s -> %s %s\n", scope, tdisp_message_type_to_string(type), error,
                       json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN));
                return 0;
        }
        if (base64_decode(json_get_string(reply, "response"), strlen(json_get_string(reply, "response")), &out, &out_len) < 0 ||
            out_len > resp_size)
                exit(EXIT_FAILURE);
        memcpy(resp, out, out_len);
        printf("  %-13s %-32s -> %zu bytes, %s\n", scope, tdisp_message_type_to_string(type), out_len,
               out_len >= 2 ? tdisp_message_type_to_string(resp[1]) : "?");
        return out_len;
}

/* The guest reads the interface report (the MMIO ranges it is about to trust), portion by
 * portion; returns its size. */
static size_t read_report(int64_t ctx, uint8_t *resp, size_t resp_size) {
        size_t total = 0;
        uint16_t offset = 0;

        for (;;) {
                uint16_t body[2] = { htole16(offset), htole16(1024) }; /* OFFSET, LENGTH */
                size_t n = guest_request(ctx, "info", TDISP_MSG_GET_DEVICE_INTERFACE_REPORT, body, sizeof(body),
                                         resp, resp_size);
                uint16_t portion, remainder;

                if (n < sizeof(TdispDeviceInterfaceReportResponse) || resp[1] != TDISP_MSG_DEVICE_INTERFACE_REPORT)
                        return total;
                portion = (uint16_t) (resp[16] | resp[17] << 8);
                remainder = (uint16_t) (resp[18] | resp[19] << 8);
                total += portion;
                offset = (uint16_t) (offset + portion);
                if (portion == 0 || remainder == 0)
                        return total;
        }
}

static void help(void) {
        printf("Usage: vmm-example [--socket=PATH] [--vfio=PATH] [PCI-ADDRESS]\n\n"
               "Runs a VMM's guest flow against tsmd: opens a context, attaches PCI-ADDRESS\n"
               "(default " DEFAULT_ADDRESS ") as vDevice 1, binds it, forwards the guest's TDISP\n"
               "requests as it accepts the device, unbinds.\n\n"
               "  -h --help        Show this help\n"
               "     --socket=PATH tsmd's io.tsmd.Guest socket (default: $TSMD_GUEST_SOCKET or\n"
               "                   " DEFAULT_SOCKET ")\n"
               "     --vfio=PATH   The device's VFIO cdev (/dev/vfio/devices/vfioN), sent with\n"
               "                   AttachDevice: a kernel TSM's device needs it\n");
}

int main(int argc, char *argv[]) {
        const char *socket = getenv("TSMD_GUEST_SOCKET") ?: DEFAULT_SOCKET;
        const char *address = DEFAULT_ADDRESS, *vfio_path = NULL;
        bool addressed = false;
        EmuPciAddress pci;
        json_object *reply, *scopes, *p;
        bool emulated, may_start = false;
        uint8_t resp[4096];
        int64_t ctx;
        int fd, r;
        struct stat st;
        char path[64], link[256];
        VarlinkLimits limits = VARLINK_LIMITS_DEFAULT;
        ssize_t n;

        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        help();
                        return EXIT_SUCCESS;
                }
                if (strneq(argv[i], "--socket=", 9))
                        socket = argv[i] + 9;
                else if (strneq(argv[i], "--vfio=", 7))
                        vfio_path = argv[i] + 7;
                else if (argv[i][0] == '-' || addressed) {
                        fprintf(stderr, "%s '%s'. See vmm-example --help.\n",
                                argv[i][0] == '-' ? "Unknown option" : "One PCI address only, not also", argv[i]);
                        return EXIT_FAILURE;
                } else {
                        address = argv[i];
                        addressed = true;
                }
        }

        r = emu_pci_address_parse(address, &pci);
        if (r >= 0)
                r = tdisp_function_id_from_pci((uint16_t) pci.domain, pci.bus, (uint8_t) (pci.device << 3 | pci.function), &function_id);
        if (r < 0) {
                fprintf(stderr, "Not a PCI address: %s\n", address);
                return EXIT_FAILURE;
        }

        r = varlink_client_connect(socket, &client);
        if (r < 0) {
                fprintf(stderr, "Cannot connect to %s: %s\n", socket, strerror(-r));
                return EXIT_FAILURE;
        }
        /* No reply of io.tsmd.Guest carries more than one fd: take no more (as libtsm does). */
        limits.max_json_values = 0; /* counted by size, as varlink_client_connect() has it */
        limits.max_fds_per_message = 1;
        r = varlink_client_set_limits(client, &limits);
        if (r < 0) {
                fprintf(stderr, "Cannot set the connection's limits: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }

        reply = call("io.tsmd.Guest.OpenContext", NULL);
        ctx = json_object_get_int64(json_object_object_get(reply, "context"));
        fd = varlink_client_take_fd(client, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor")));
        snprintf(path, sizeof(path), "/proc/self/fd/%i", fd);
        n = readlink(path, link, sizeof(link) - 1);
        link[n > 0 ? n : 0] = 0;
        if (fd < 0 || fstat(fd, &st) < 0) {
                fprintf(stderr, "No iommufd came with the reply.\n");
                return EXIT_FAILURE;
        }
        printf("context %" PRIi64 ": iommufd %i (%s)\n", ctx, fd, link);

        /* The VFIO device fd proves which device this VMM holds: a kernel TSM's device needs it
         * (BadFileDescriptor "missing" without it). Attached to the call, named by its index. */
        if (vfio_path) {
                int vfio = open(vfio_path, O_RDWR | O_CLOEXEC);

                if (vfio < 0) {
                        fprintf(stderr, "Cannot open %s: %m\n", vfio_path);
                        return EXIT_FAILURE;
                }
                r = varlink_client_push_fd(client, vfio); /* the call's first fd: index 0 */
                if (r < 0) {
                        fprintf(stderr, "Cannot attach %s to the call: %s\n", vfio_path, strerror(-r));
                        return EXIT_FAILURE;
                }
        }
        reply = call("io.tsmd.Guest.AttachDevice",
                     params(vfio_path ? "{\"context\":%" PRIi64 ",\"vdeviceId\":1,\"pciAddress\":\"%s\",\"vfioFileDescriptor\":0}"
                                      : "{\"context\":%" PRIi64 ",\"vdeviceId\":1,\"pciAddress\":\"%s\"}",
                            ctx, address));
        printf("vDevice 1 = %s: backend %s, TSM %s, UAPI %s\n", address, json_get_string(reply, "backend"),
               json_get_string(reply, "tsm"), json_get_string(reply, "uapi"));
        emulated = streq(json_get_string(reply, "backend"), "emulated");
        scopes = json_object_object_get(reply, "scopes");
        for (size_t i = 0; i < json_object_array_length(scopes); i++) {
                json_object *s = json_object_array_get_idx(scopes, i);

                if (streq(json_get_string(s, "name"), "state-change"))
                        may_start = json_object_get_boolean(json_object_object_get(s, "allowed"));
                printf("  scope %-13s number %" PRIi64 ", %s\n", json_get_string(s, "name"),
                       json_object_get_int64(json_object_object_get(s, "number")),
                       json_object_get_boolean(json_object_object_get(s, "allowed")) ? "allowed" : "not granted");
        }

        /* Bound first: a TSM takes guest requests for a bound TDI only (else BackendError
         * DeviceNotBound), the emulated one as the kernel's. */
        p = params("{\"context\":%" PRIi64 ",\"vdeviceId\":1}", ctx);
        reply = call("io.tsmd.Guest.Bind", json_object_get(p));
        printf("bound: TDI state %s\n", json_get_string(reply, "state") ?: "(not visible)");

        printf("guest requests:\n");
        guest_request(ctx, "info", TDISP_MSG_GET_VERSION, NULL, 0, resp, sizeof(resp));
        guest_request(ctx, "info", TDISP_MSG_GET_CAPABILITIES, (const uint8_t[4]){}, 4, resp, sizeof(resp));

        /* The guest accepts the device. The payloads here are the emulated backend's (raw
         * TDISP); a kernel TSM's guest speaks its own format. The TSM locked the TDI at the Bind
         * and kept the START_INTERFACE nonce: the guest sends none (zeros), the TSM completes the
         * START with it. No STOP/LOCK by the guest is needed, nor would a real TSM allow one. */
        if (emulated) {
                static const uint8_t no_nonce[TDISP_NONCE_SIZE] = {};
                size_t start_len;

                printf("  interface report: %zu bytes\n", read_report(ctx, resp, sizeof(resp)));
                /* Made even where the policy does not grant state-change, to show the error a
                 * VMM gets then. */
                start_len = guest_request(ctx, "state-change", TDISP_MSG_START_INTERFACE_REQ, no_nonce,
                                          sizeof(no_nonce), resp, sizeof(resp));
                if (start_len == 0 && !may_start)
                        printf("  (the policy does not grant scope state-change: the guest cannot accept the "
                               "device)\n");
                else {
                        reply = call("io.tsmd.Guest.GetDeviceState", json_object_get(p));
                        printf("accepted: TDI state %s\n", json_get_string(reply, "state") ?: "(not visible)");
                        if (start_len < 2 || resp[1] != TDISP_MSG_START_INTERFACE_RSP) {
                                fprintf(stderr, "The device did not start.\n");
                                return EXIT_FAILURE;
                        }
                }
        }

        guest_request(ctx, "info", TDISP_MSG_GET_DEVICE_INTERFACE_STATE, NULL, 0, resp, sizeof(resp));
        reply = call("io.tsmd.Guest.Unbind", p);
        printf("unbound: TDI state %s\n", json_get_string(reply, "state") ?: "(not visible)");

        varlink_client_free(client);
        close(fd);
        return EXIT_SUCCESS;
}
