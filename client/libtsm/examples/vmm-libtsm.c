/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a VMM does with tsmd on libtsm, start to finish: open an iommufd context and keep its
 * reclaim token, watch events on a second connection, attach the vDevice it assigned to its
 * guest, learn the backend and its named scopes, bind (TDISP lock: guest requests need it),
 * forward the guest's TDISP requests (its accept of the device: the interface report, then a START the TSM completes
 * with the nonce it kept at the bind; then several at once through an event loop), unbind,
 * detach, close. A guest request that finds the connection lost reconnects and reclaims the
 * context (what a VMM does when tsmd's worker restarts). Runs against the emulated platform
 * out of the box; the core of it (steps to the unbind) on the raw protocol is
 * ../../examples/vmm-example.c.
 *
 *   vmm-libtsm [--socket=PATH] [--vfio=PATH] [--pause] [PCI-ADDRESS]
 *
 * --vfio=PATH opens the device's VFIO cdev (/dev/vfio/devices/vfioN) and attaches with it: the
 * proof that this VMM holds the device, which a kernel TSM's device needs (a real VMM passes
 * the fd it already has); the emulated platform's devices need none.
 * --pause waits for a line on stdin after the bind: kill tsmd's worker meanwhile, and the next
 * guest request finds the connection lost and takes the context back.
 *
 * Self-contained: <tsm.h> and the C library only (the small TDISP request builder below is
 * the guest's side, which a VMM only forwards), so it can be copied out of the tree and built
 * against an installed libtsm with
 *
 *   cc -std=c11 -o vmm-libtsm vmm-libtsm.c $(pkg-config --cflags --libs libtsmd)
 *
 * (tests/docs builds it as strict C11 with nothing but tsm.h on the include path). It makes
 * every call from one thread, and blocks in each: a VMM keeps the blocking ones off its vCPU
 * threads and main loop (tsm.h's overview says how).
 */

#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tsm.h>

#define VDEVICE_ID 1

/* ---- the guest's TDISP 1.0 requests (not libtsm's business: it forwards bytes) ---------- */

enum {
        TDISP_VERSION_1_0 = 0x10,
        TDISP_HEADER_SIZE = 16, /* version, type, 2 reserved, INTERFACE_ID (function id, 8 reserved) */
        TDISP_NONCE_SIZE = 32,
        TDISP_GET_VERSION = 0x81, /* a response's code is its request's & 0x7f */
        TDISP_GET_CAPABILITIES = 0x82,
        TDISP_GET_DEVICE_INTERFACE_REPORT = 0x84,
        TDISP_GET_DEVICE_INTERFACE_STATE = 0x85,
        TDISP_START_INTERFACE_REQUEST = 0x86,
        TDISP_ERROR = 0x7f,
};

static const char *tdisp_name(unsigned type) {
        switch (type) {
        case TDISP_GET_VERSION: return "GET_TDISP_VERSION";
        case TDISP_GET_VERSION & 0x7f: return "TDISP_VERSION";
        case TDISP_GET_CAPABILITIES: return "GET_TDISP_CAPABILITIES";
        case TDISP_GET_CAPABILITIES & 0x7f: return "TDISP_CAPABILITIES";
        case TDISP_GET_DEVICE_INTERFACE_REPORT: return "GET_DEVICE_INTERFACE_REPORT";
        case TDISP_GET_DEVICE_INTERFACE_REPORT & 0x7f: return "DEVICE_INTERFACE_REPORT";
        case TDISP_GET_DEVICE_INTERFACE_STATE: return "GET_DEVICE_INTERFACE_STATE";
        case TDISP_GET_DEVICE_INTERFACE_STATE & 0x7f: return "DEVICE_INTERFACE_STATE";
        case TDISP_START_INTERFACE_REQUEST: return "START_INTERFACE_REQUEST";
        case TDISP_START_INTERFACE_REQUEST & 0x7f: return "START_INTERFACE_RESPONSE";
        case TDISP_ERROR: return "TDISP_ERROR";
        default: return "?";
        }
}

/* TDISP's FUNCTION_ID of the function at "DDDD:BB:DD.F": its requester id, and the segment
 * (8 bits) with its valid bit where the domain is not 0. */
static int function_id_of(const char *pci, uint32_t *ret) {
        static const char pattern[] = "xxxx:xx:xx.x";
        unsigned domain, bus, dev, fn;

        if (strlen(pci) != strlen(pattern))
                return -EINVAL;
        for (size_t i = 0; pattern[i]; i++)
                if (pattern[i] == 'x' ? !isxdigit((unsigned char) pci[i]) : pci[i] != pattern[i])
                        return -EINVAL;
        if (sscanf(pci, "%4x:%2x:%2x.%1x", &domain, &bus, &dev, &fn) != 4 || dev > 31 || fn > 7 || domain > 0xff)
                return -EINVAL;
        *ret = bus << 8 | dev << 3 | fn;
        if (domain != 0)
                *ret |= domain << 16 | 1u << 24;
        return 0;
}

/* A request's bytes: the header, then body_len bytes of body; its length. */
static size_t tdisp_request(uint32_t function_id, uint8_t type, const void *body, size_t body_len, uint8_t *buf,
                            size_t size) {
        if (size < TDISP_HEADER_SIZE || body_len > size - TDISP_HEADER_SIZE) {
                fprintf(stderr, "TDISP request too large.\n");
                exit(EXIT_FAILURE);
        }
        memset(buf, 0, TDISP_HEADER_SIZE);
        buf[0] = TDISP_VERSION_1_0;
        buf[1] = type;
        for (int i = 0; i < 4; i++) /* little-endian */
                buf[4 + i] = (uint8_t) (function_id >> 8 * i);
        if (body_len > 0)
                memcpy(buf + TDISP_HEADER_SIZE, body, body_len);
        return TDISP_HEADER_SIZE + body_len;
}

/* ---- the VMM's side ----------------------------------------------------------------------- */

typedef struct Vmm {
        TsmClient *c;       /* contexts, devices, requests */
        TsmClient *watch;   /* the WatchEvents stream: a connection of its own */
        const char *pci_address;
        uint32_t function_id;
        uint64_t ctx;       /* a handle valid on c's connection only */
        int iommufd;
        char *token;        /* the context's reclaim token (a secret: never logged) */
        unsigned subscribed;
        unsigned removed;
} Vmm;

static const char *state_name(TsmTdiState s) {
        const char *n = tsm_tdi_state_to_string(s);

        return n ? n : "(not visible)";
}

/* c is still valid here whatever r is: this program never frees a client from a callback, the
 * one case where a call returns -ECANCELED with the client gone (see tsm.h). */
static void die(TsmClient *c, const char *what, int r) {
        fprintf(stderr, "%s: %s", what, strerror(-r));
        /* The errno alone does not always tell which error it was (BackendError and
         * io.tsmd.System pass theirs through): the name does. */
        if (tsm_client_get_error_name(c))
                fprintf(stderr, " (%s: %s)", tsm_client_get_error_name(c), tsm_client_get_error_message(c));
        fputc('\n', stderr);
        exit(EXIT_FAILURE);
}

/* Runs the client's part of an event loop (here a plain poll() on its fd) until *counter
 * reaches n. */
static void pump(TsmClient *c, const unsigned *counter, unsigned n) {
        while (*counter < n) {
                struct pollfd p = { .fd = tsm_client_get_fd(c), .events = (short) tsm_client_get_events(c) };
                int r;

                if (p.fd < 0 || poll(&p, 1, 5000) <= 0) {
                        fprintf(stderr, "No answer from tsmd.\n");
                        exit(EXIT_FAILURE);
                }
                r = tsm_client_process(c);
                if (r < 0)
                        die(c, "process", r);
        }
}

/* The token is taken after every open and every reclaim (a reclaim voids the old one). A tsmd
 * that cannot keep contexts across its restarts gives none. */
static void keep_token(Vmm *v) {
        int r;

        free(v->token);
        v->token = NULL;
        r = tsm_context_get_reclaim_token(v->c, v->ctx, &v->token);
        if (r < 0 && r != -ENOENT)
                die(v->c, "reclaim token", r);
        printf("context %" PRIu64 ": %s\n", v->ctx,
               v->token ? "reclaim token kept" : "no reclaim token (it will not outlive a restart of tsmd)");
}

/* The connection was lost (-ECONNRESET). If tsmd's worker restarted, the context waits to be
 * taken back with its vDevice and binding. (Had this process restarted instead, they would be
 * gone: the token only outlives tsmd.) */
static int recover(Vmm *v) {
        int r;

        if (!v->token)
                return -ENOENT;
        r = tsm_client_reconnect(v->c);
        if (r < 0)
                return r;
        /* The process keeps its own iommufd: the duplicate that comes back is not needed. */
        r = tsm_context_reclaim(v->c, v->token, &v->ctx, NULL);
        if (r < 0)
                return r;
        keep_token(v);
        return 0;
}

/* Forwards one guest request and waits for the response; returns its length, 0 if it failed
 * (the guest would get an error). */
static size_t guest_request(Vmm *v, const char *scope, uint8_t type, const void *body, size_t body_len,
                            uint8_t *resp, size_t resp_size) {
        uint8_t msg[256];
        size_t len = tdisp_request(v->function_id, type, body, body_len, msg, sizeof(msg)), resp_len;
        int r;

        r = tsm_guest_request(v->c, v->ctx, VDEVICE_ID, scope, msg, len, resp, resp_size, &resp_len);
        if (r == -ECONNRESET) {
                /* It may or may not have run: not retried, the guest asks again if it wants. */
                r = recover(v);
                if (r < 0)
                        die(v->c, "reconnect and reclaim", r);
                printf("  %-13s %-32s -> connection lost, context reclaimed\n", scope, tdisp_name(type));
                return 0;
        }
        if (r < 0)
                die(v->c, "GuestRequest", r);
        printf("  %-13s %-32s -> %zu bytes, %s\n", scope, tdisp_name(type), resp_len,
               resp_len >= 2 ? tdisp_name(resp[1]) : "?");
        return resp_len;
}

/* Asynchronous requests: what a VMM does when several vCPUs forward requests at once. */
typedef struct Inflight {
        uint8_t type;
        unsigned *n_done;
} Inflight;

static void on_response(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        Inflight *f = userdata;
        const uint8_t *resp = response;

        if (error < 0)
                die(c, "GuestRequest (async)", error);
        printf("  %-13s %-32s -> %zu bytes, %s\n", "info (async)", tdisp_name(f->type), len,
               len >= 2 ? tdisp_name(resp[1]) : "?");
}

static void on_done(void *userdata) {
        Inflight *f = userdata;

        (*f->n_done)++;
}

static void run_async(Vmm *v) {
        static const uint8_t types[] = { TDISP_GET_VERSION, TDISP_GET_DEVICE_INTERFACE_STATE };
        Inflight inflight[sizeof(types)];
        unsigned n_done = 0;
        uint8_t msg[64];

        for (size_t i = 0; i < sizeof(types); i++) {
                size_t len = tdisp_request(v->function_id, types[i], NULL, 0, msg, sizeof(msg));
                int r;

                inflight[i] = (Inflight){ .type = types[i], .n_done = &n_done };
                r = tsm_guest_request_async(v->c, v->ctx, VDEVICE_ID, "info", msg, len, 4096, on_response,
                                            &inflight[i], on_done);
                /* -EAGAIN: the guest has as many requests outstanding as the client takes
                 * (tsm_client_set_max_pending_requests()); a VMM completes this one with a busy
                 * status of its transport, and the guest retries. */
                if (r < 0)
                        die(v->c, "GuestRequest (async)", r);
        }
        pump(v->c, &n_done, sizeof(types));
}

/* Events name the context and vDevice by the handles of the connection that made them, which
 * the watching connection does not share: the PCI address says which device it is. */
static void on_event(TsmClient *c, int error, const TsmEvent *e, void *userdata) {
        Vmm *v = userdata;

        if (error < 0) {
                /* Ended: the connection was lost, or tsmd could not tell an event (watch again
                 * and read the devices' state anew). */
                fprintf(stderr, "Event stream ended: %s (%s)\n", strerror(-error),
                        tsm_client_get_error_name(c) ? tsm_client_get_error_name(c) : "no error name");
                return;
        }
        if (!e) {
                v->subscribed++;
                return;
        }
        /* Of the kinds tsmd sends so far, only "device-removed" ends the device's use; neither
         * has a known state. */
        if (tsm_event_get_kind(e) == TSM_EVENT_DEVICE_REMOVED &&
            strcmp(tsm_event_get_pci_address(e), v->pci_address) == 0) {
                printf("device %s removed: only a detach is left to do\n", v->pci_address);
                v->removed++;
        }
}

int main(int argc, char *argv[]) {
        Vmm v = { .pci_address = "0000:01:00.0", .iommufd = -1 };
        const char *sock_path = NULL, *vfio_path = NULL;
        bool paused = false;
        int vfio_fd = -1;
        TsmDeviceInfo *info = NULL;
        const TsmScope *start;
        TsmTdiState state;
        bool emulated, may_start;
        uint8_t resp[4096];
        int r;

        for (int i = 1; i < argc; i++) {
                if (strncmp(argv[i], "--socket=", 9) == 0)
                        sock_path = argv[i] + 9;
                else if (strncmp(argv[i], "--vfio=", 7) == 0)
                        vfio_path = argv[i] + 7;
                else if (strcmp(argv[i], "--pause") == 0)
                        paused = true;
                else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                        printf("Usage: vmm-libtsm [--socket=PATH] [--vfio=PATH] [--pause] [PCI-ADDRESS]\n\n"
                               "A VMM's flow on libtsm against tsmd's io.tsmd.Guest socket (default:\n"
                               "$TSMD_GUEST_SOCKET or /run/tsmd/io.tsmd.Guest) for PCI-ADDRESS (default\n"
                               "0000:01:00.0). --vfio attaches it with its VFIO device cdev opened\n"
                               "(/dev/vfio/devices/vfioN: a kernel TSM's device needs it). --pause waits\n"
                               "for a line on stdin after the bind.\n");
                        return EXIT_SUCCESS;
                } else if (argv[i][0] == '-') {
                        fprintf(stderr, "Unknown option '%s'. See vmm-libtsm --help.\n", argv[i]);
                        return EXIT_FAILURE;
                } else
                        v.pci_address = argv[i];
        }
        if (function_id_of(v.pci_address, &v.function_id) < 0) {
                fprintf(stderr, "Not a PCI address: %s\n", v.pci_address);
                return EXIT_FAILURE;
        }

        /* NULL: $TSMD_GUEST_SOCKET, else /run/tsmd/io.tsmd.Guest. */
        r = tsm_client_connect(sock_path, &v.c);
        if (r >= 0)
                r = tsm_client_connect(sock_path, &v.watch);
        if (r < 0) {
                fprintf(stderr, "Cannot connect to tsmd: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }

        r = tsm_context_open(v.c, &v.ctx, &v.iommufd);
        if (r < 0)
                die(v.c, "OpenContext", r);
        printf("context %" PRIu64 ": iommufd %i\n", v.ctx, v.iommufd);
        keep_token(&v);

        /* Events about every context of this process, whichever connection holds it. */
        r = tsm_client_watch_events(v.watch, on_event, &v, NULL);
        if (r < 0)
                die(v.watch, "WatchEvents", r);
        pump(v.watch, &v.subscribed, 1);
        printf("watching events\n");

        /* The VFIO device fd proves which device this VMM holds: tsmd requires it for a kernel
         * TSM's device (BadFileDescriptor "missing" without it). libtsm sends a duplicate. */
        if (vfio_path) {
                vfio_fd = open(vfio_path, O_RDWR | O_CLOEXEC);
                if (vfio_fd < 0) {
                        perror(vfio_path);
                        return EXIT_FAILURE;
                }
        }
        r = tsm_device_attach(v.c, v.ctx, VDEVICE_ID, v.pci_address, vfio_fd, &info);
        if (vfio_fd >= 0)
                close(vfio_fd);
        if (r < 0)
                die(v.c, "AttachDevice", r);
        printf("vDevice %u = %s: backend %s, TSM %s, UAPI %s\n", VDEVICE_ID, v.pci_address,
               tsm_device_info_get_backend(info), tsm_device_info_get_tsm(info), tsm_device_info_get_uapi(info));
        emulated = strcmp(tsm_device_info_get_backend(info), "emulated") == 0;
        for (size_t i = 0; i < tsm_device_info_get_n_scopes(info); i++) {
                const TsmScope *s = tsm_device_info_get_scope(info, i);

                printf("  scope %-13s number %" PRIu32 ", %s\n", tsm_scope_get_name(s), tsm_scope_get_number(s),
                       tsm_scope_is_allowed(s) ? "allowed" : "not granted");
        }
        start = tsm_device_info_find_scope(info, "state-change");
        may_start = start && tsm_scope_is_allowed(start);
        info = tsm_device_info_free(info);

        /* Bound first: a TSM takes guest requests for a bound TDI only (else -ENXIO,
         * BackendError DeviceNotBound), the emulated one as the kernel's. */
        r = tsm_device_bind(v.c, v.ctx, VDEVICE_ID, &state);
        if (r < 0)
                die(v.c, "Bind", r);
        printf("bound: TDI state %s\n", state_name(state));
        if (paused) {
                printf("paused: press Enter to go on\n");
                fflush(stdout);
                for (int ch = 0; ch != '\n' && ch != EOF;)
                        ch = getchar();
        }

        printf("guest requests:\n");
        guest_request(&v, "info", TDISP_GET_VERSION, NULL, 0, resp, sizeof(resp));
        guest_request(&v, "info", TDISP_GET_CAPABILITIES, (const uint8_t[4]){ 0 }, 4, resp, sizeof(resp));

        /* The guest accepts the device (raw TDISP: the emulated backend's payloads; a kernel
         * TSM's guest speaks its own format): it reads the interface report, then sends START.
         * The TSM locked the TDI at the bind and kept the nonce, so the guest sends none (zeros):
         * the TSM completes the START with it. */
        if (emulated) {
                static const uint8_t report[4] = { 0x00, 0x00, 0x00, 0x04 }; /* OFFSET 0, LENGTH 1024 */
                static const uint8_t no_nonce[TDISP_NONCE_SIZE] = { 0 };

                guest_request(&v, "info", TDISP_GET_DEVICE_INTERFACE_REPORT, report, sizeof(report), resp,
                              sizeof(resp));
                if (may_start) {
                        guest_request(&v, "state-change", TDISP_START_INTERFACE_REQUEST, no_nonce, sizeof(no_nonce),
                                      resp, sizeof(resp));
                        r = tsm_device_get_state(v.c, v.ctx, VDEVICE_ID, &state, NULL);
                        if (r < 0)
                                die(v.c, "GetDeviceState", r);
                        printf("accepted: TDI state %s\n", state_name(state));
                } else
                        /* guest_request() would end the program with the Denied error. */
                        printf("  (the policy does not grant scope state-change: the guest cannot accept the "
                               "device, START left out)\n");
        }

        guest_request(&v, "info", TDISP_GET_DEVICE_INTERFACE_STATE, NULL, 0, resp, sizeof(resp));
        run_async(&v);

        /* An unplug: the guest's requests not sent yet are taken back (their callbacks get
         * -ECANCELED), so that the Unbind does not wait behind them (none are left here). */
        r = tsm_device_cancel_requests(v.c, v.ctx, VDEVICE_ID);
        if (r < 0)
                die(v.c, "cancelling the guest's requests", r);
        r = tsm_device_unbind(v.c, v.ctx, VDEVICE_ID, &state);
        if (r < 0)
                die(v.c, "Unbind", r);
        printf("unbound: TDI state %s\n", state_name(state));

        r = tsm_device_detach(v.c, v.ctx, VDEVICE_ID);
        if (r < 0)
                die(v.c, "DetachDevice", r);
        r = tsm_context_close(v.c, v.ctx);
        if (r < 0)
                die(v.c, "CloseContext", r);

        tsm_client_free(v.watch);
        tsm_client_free(v.c);
        close(v.iommufd);
        free(v.token);
        return EXIT_SUCCESS;
}
