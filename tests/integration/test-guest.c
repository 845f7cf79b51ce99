/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io.tsmd.Guest end to end: the real tsmd on its emulated TDISP platform, driven over its
 * socket the way a VMM would: contexts (and the fds behind them), vDevices, binding (which guest
 * requests need, as on a kernel TSM), guest requests in each scope carrying real TDISP messages, per-connection ownership, limits,
 * clients that die or leave mid-request, hot removal of emulated devices on reload with
 * WatchEvents, and shutdown with clients connected.
 *
 * Runs in: tests. Parts that need a second uid SKIP without root.
 */

#include <endian.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#include "config.h"
#include "emu-config.h"
#include "emu-device.h"
#include "tdisp.h"
#include "guest-calls.h"
#include "json-util.h"
#include "tsmd-fixture.h"
#include "varlink-errors.h"

#define G "io.tsmd.Guest."
#define E_GUEST(name) "io.tsmd.Guest." name
/* A message the scope it was sent in does not carry, as the emulated TSM refuses it: the kernel's
 * TSMs' EINVAL, by the same name as from them (test-kernel.c,
 * a_request_the_kernel_refuses_is_named_as_on_the_emulator). */
#define E_SCOPE_REFUSED E_GUEST("BackendError")
#define SCOPE_REFUSED "{\"name\":\"InvalidScopeOrArgument\",\"errno\":22}"

#define DEV1 "0000:01:00.0"
#define DEV2 "0000:02:00.0"
#define DEV3 "0000:03:00.0"

#define NOBODY 65534

#define CONF_EMU(iommu, devices, extra)                                                            \
        "[Platform]\nMode=emulated\nIommuDevice=" iommu "\nEmulatedDevices=" devices "\n" extra
/* The emulated platform with /dev/zero standing in for the IOMMU device... */
#define CONF_ZERO(extra) CONF_EMU("/dev/zero", DEV1 "," DEV2, extra)
/* ... and with no IOMMU device at all: tsmd hands out its memfd stand-in. */
#define CONF_MEMFD(extra) CONF_EMU("/nonexistent/tsmd-test/iommu", DEV1 "," DEV2, extra)

#define MEMFD_STANDIN "/memfd:tsmd-emulated-iommufd (deleted)"

/* ---- helpers ------------------------------------------------------------------------------ */

static void expect_dev_zero(int fd) {
        struct stat st, want;

        ASSERT_OK(fstat(fd, &st));
        ASSERT_OK(stat("/dev/zero", &want));
        ASSERT_TRUE(S_ISCHR(st.st_mode));
        ASSERT_EQ(st.st_rdev, want.st_rdev);
}

static void expect_memfd_standin(int fd) {
        char target[256];
        ssize_t n = readlink(strf("/proc/self/fd/%d", fd), target, sizeof(target) - 1);
        struct stat st;

        ASSERT_TRUE(n > 0);
        target[n] = 0;
        ASSERT_STREQ(target, MEMFD_STANDIN);
        /* Usable as an fd: it stats, and tsmd sealed it. */
        ASSERT_OK(fstat(fd, &st));
        ASSERT_TRUE(S_ISREG(st.st_mode));
        ASSERT_TRUE(fcntl(fd, F_GET_SEALS) & F_SEAL_SEAL);
}

/* OpenContext; returns the handle and (if ret_fd) the fd that came with the reply. */
static int64_t open_context(VarlinkClient *c, int *ret_fd) {
        json_object *r = CALL_OK(c, G "OpenContext", NULL);
        int64_t handle = JINT(r, "context");
        int fd = varlink_client_take_fd(c, (size_t) JINT(r, "fileDescriptor"));

        ASSERT_TRUE(handle > 0);
        ASSERT_TRUE(fd >= 0);
        if (ret_fd)
                *ret_fd = fd;
        else
                close(fd);
        return handle;
}

/* AdoptContext with fd attached (ownership passes); returns the error or NULL and the handle. */
static const char *adopt_context(VarlinkClient *c, int fd, int64_t *ret_handle, json_object **ret) {
        json_object *r = NULL;
        const char *error;
        int idx = varlink_client_push_fd(c, fd);

        ASSERT_EQ(idx, 0);
        error = tsmd_call(c, G "AdoptContext", "{\"fileDescriptor\":0}", &r);
        if (!error && ret_handle)
                *ret_handle = JINT(r, "context");
        if (ret)
                *ret = r;
        return error;
}

static json_object *attach(VarlinkClient *c, int64_t ctx, int64_t vdev, const char *address) {
        return CALL_OK(c, G "AttachDevice",
                       strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%" PRIi64 ",\"pciAddress\":\"%s\"}",
                            ctx, vdev, address));
}

static const char *state_of(VarlinkClient *c, int64_t ctx, int64_t vdev, bool *ret_bound) {
        json_object *r = CALL_OK(c, G "GetDeviceState", guest_vdev_params(ctx, vdev));

        if (ret_bound)
                *ret_bound = JBOOL(r, "bound");
        return JSTR(r, "state");
}

static void bind_device(VarlinkClient *c, int64_t ctx, int64_t vdev) {
        json_object *r = CALL_OK(c, G "Bind", guest_vdev_params(ctx, vdev));
        ASSERT_STREQ(JSTR(r, "state"), "config_locked");
}

typedef struct Msg {
        uint8_t buf[2048];
        size_t len;
} Msg;

static Msg tdisp_msg(uint8_t type, const char *address, const void *body, size_t body_len) {
        Msg m = {};

        ASSERT_OK(tdisp_build_request(type, guest_function_id(address), body, body_len, m.buf, sizeof(m.buf), &m.len));
        return m;
}

static const char *request_params(int64_t ctx, int64_t vdev, const char *scope, const Msg *m,
                                  size_t max_response) {
        _cleanup_free_ char *enc = b64(m->buf, m->len);

        return strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%" PRIi64 ",\"scope\":\"%s\",\"request\":\"%s\","
                    "\"maxResponseSize\":%zu}",
                    ctx, vdev, scope, enc, max_response);
}

/* A GuestRequest; returns the error name (NULL: *ret holds the TDISP response). */
static const char *guest_request(VarlinkClient *c, int64_t ctx, int64_t vdev, const char *scope,
                                 const Msg *m, Msg *ret, json_object **ret_params) {
        json_object *r = NULL;
        const char *error = tsmd_call(c, G "GuestRequest", request_params(ctx, vdev, scope, m, 4096), &r);

        if (ret_params)
                *ret_params = r;
        if (!error && ret) {
                size_t len;
                _cleanup_free_ void *p = unb64(JSTR(r, "response"), &len);

                ASSERT_LE(len, sizeof(ret->buf));
                memcpy(ret->buf, p, len);
                ret->len = len;
        }
        return error;
}

/* Sends a TDISP request that must succeed at the Varlink level; returns the response. */
static Msg guest_ok(VarlinkClient *c, int64_t ctx, int64_t vdev, const char *scope, const Msg *m,
                    int64_t expected_scope_number) {
        json_object *p = NULL;
        Msg resp = {};
        const char *error = guest_request(c, ctx, vdev, scope, m, &resp, &p);

        if (error)
                TEST_FAIL("GuestRequest(%s, type 0x%02x) failed: %s %s", scope, m->buf[1], error,
                          json_object_to_json_string(p));
        ASSERT_EQ(JINT(p, "scopeNumber"), expected_scope_number);
        ASSERT_GE(resp.len, sizeof(TdispHeader));
        ASSERT_EQ(resp.buf[0], TDISP_VERSION_1_0);
        return resp;
}

/* The TDI state as the guest sees it: GET_DEVICE_INTERFACE_STATE in scope info. */
static uint8_t guest_tdi_state(VarlinkClient *c, int64_t ctx, int64_t vdev, const char *address) {
        Msg m = tdisp_msg(TDISP_MSG_GET_DEVICE_INTERFACE_STATE, address, NULL, 0);
        Msg r = guest_ok(c, ctx, vdev, "info", &m, 0);

        ASSERT_EQ(r.buf[1], TDISP_MSG_DEVICE_INTERFACE_STATE);
        ASSERT_EQ(r.len, sizeof(TdispDeviceInterfaceStateResponse));
        return r.buf[sizeof(TdispHeader)];
}

static uint32_t tdisp_error_of(const Msg *r) {
        uint32_t code = 0;

        ASSERT_OK(tdisp_error_decode(r->buf, r->len, &code, NULL));
        return code;
}

/* The whole guest-side TDISP flow on one bound vDevice. */
static void exercise_guest_scopes(VarlinkClient *c, int64_t ctx, int64_t vdev, const char *address) {
        TdispLockInterfaceParams lock = { .flags = htole16(TDISP_LOCK_FLAG_NO_FW_UPDATE) };
        uint16_t portion[2] = { htole16(0), htole16(64) }; /* OFFSET, LENGTH */
        uint8_t zero_nonce[TDISP_NONCE_SIZE] = {};
        Msg m, r;

        /* info: GET_TDISP_VERSION -> TDISP_VERSION 1.0, addressed to this function. */
        m = tdisp_msg(TDISP_MSG_GET_VERSION, address, NULL, 0);
        r = guest_ok(c, ctx, vdev, "info", &m, 0);
        ASSERT_EQ(r.buf[1], TDISP_MSG_VERSION);
        ASSERT_EQ(r.len, sizeof(TdispVersionResponse) + 1);
        ASSERT_EQ(r.buf[sizeof(TdispHeader)], 1); /* VERSION_NUM_COUNT */
        ASSERT_EQ(r.buf[sizeof(TdispHeader) + 1], TDISP_VERSION_1_0);
        ASSERT_EQ(le32toh(((TdispHeader *) r.buf)->interface_id.function_id), guest_function_id(address));

        /* After the host's Bind the TDI is CONFIG_LOCKED. */
        ASSERT_EQ(guest_tdi_state(c, ctx, vdev, address), TDISP_STATE_CONFIG_LOCKED);

        /* state-change carries the transition to RUN only: LOCK and STOP are the host's (the
         * TSM's, at Bind and Unbind), refused in any scope before the device sees them, as a
         * kernel TSM refuses them. */
        m = tdisp_msg(TDISP_MSG_LOCK_INTERFACE_REQ, address, &lock, sizeof(lock));
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, vdev, "state-change", &m, 4096), E_SCOPE_REFUSED, SCOPE_REFUSED);
        m = tdisp_msg(TDISP_MSG_STOP_INTERFACE_REQ, address, NULL, 0);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, vdev, "state-change", &m, 4096), E_SCOPE_REFUSED, SCOPE_REFUSED);
        ASSERT_EQ(guest_tdi_state(c, ctx, vdev, address), TDISP_STATE_CONFIG_LOCKED);

        /* The guest accepts the device as with a real TSM: it reads the interface report and
         * sends START; it knows no nonce (the TSM locked the TDI at Bind and holds it), so
         * whatever it puts there, the emulated TSM completes the START with its own. */
        m = tdisp_msg(TDISP_MSG_GET_DEVICE_INTERFACE_REPORT, address, portion, sizeof(portion));
        r = guest_ok(c, ctx, vdev, "info", &m, 0);
        ASSERT_EQ(r.buf[1], TDISP_MSG_DEVICE_INTERFACE_REPORT);
        m = tdisp_msg(TDISP_MSG_START_INTERFACE_REQ, address, zero_nonce, sizeof(zero_nonce));
        r = guest_ok(c, ctx, vdev, "state-change", &m, 1);
        ASSERT_EQ(r.buf[1], TDISP_MSG_START_INTERFACE_RSP);
        ASSERT_EQ(guest_tdi_state(c, ctx, vdev, address), TDISP_STATE_RUN);
        ASSERT_STREQ(state_of(c, ctx, vdev, NULL), "run");
        /* The nonce was good for one START. */
        r = guest_ok(c, ctx, vdev, "state-change", &m, 1);
        ASSERT_EQ(tdisp_error_of(&r), TDISP_ERROR_INVALID_INTERFACE_STATE);

        /* Neither can STOP take the TDI out of RUN, nor a second Bind change it: the TDI is
         * bound already, and the Bind answers at once, as the kernel's pci_tsm_bind() does. */
        m = tdisp_msg(TDISP_MSG_STOP_INTERFACE_REQ, address, NULL, 0);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, vdev, "state-change", &m, 4096), E_SCOPE_REFUSED, SCOPE_REFUSED);
        ASSERT_EQ(guest_tdi_state(c, ctx, vdev, address), TDISP_STATE_RUN);
        json_object *b = CALL_OK(c, G "Bind", guest_vdev_params(ctx, vdev));
        ASSERT_STREQ(JSTR(b, "state"), "run");

        /* A message sent in the wrong scope is refused before the device sees it, and so is
         * one no scope carries: a request the device does not implement, an unknown code. */
        m = tdisp_msg(TDISP_MSG_BIND_P2P_STREAM_REQ, address, NULL, 0);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, vdev, "info", &m, 4096), E_SCOPE_REFUSED, SCOPE_REFUSED);
        m = tdisp_msg(TDISP_MSG_SET_MMIO_ATTRIBUTE_REQ, address, NULL, 0);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, vdev, "info", &m, 4096), E_SCOPE_REFUSED, SCOPE_REFUSED);
        m = tdisp_msg(0xf0, address, NULL, 0);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, vdev, "state-change", &m, 4096), E_SCOPE_REFUSED, SCOPE_REFUSED);
        m = tdisp_msg(TDISP_MSG_GET_VERSION, address, NULL, 0);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, vdev, "state-change", &m, 4096), E_SCOPE_REFUSED, SCOPE_REFUSED);
        m = tdisp_msg(TDISP_MSG_STOP_INTERFACE_REQ, address, NULL, 0);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, vdev, "info", &m, 4096), E_SCOPE_REFUSED, SCOPE_REFUSED);
        ASSERT_EQ(guest_tdi_state(c, ctx, vdev, address), TDISP_STATE_RUN);

        /* Debug scopes exist on the emulated backend but are not granted. */
        m = tdisp_msg(TDISP_MSG_GET_VERSION, address, NULL, 0);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, vdev, "debug-read", &m, 4096), E_GUEST("Denied"),
                   "{\"reason\":\"scope 'debug-read' not granted\"}");
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, vdev, "debug-write", &m, 4096), E_GUEST("Denied"),
                   "{\"reason\":\"scope 'debug-write' not granted\"}");

        /* Back to CONFIG_LOCKED for the caller: the host unbinds and binds again. */
        json_object *u = CALL_OK(c, G "Unbind", guest_vdev_params(ctx, vdev));
        ASSERT_STREQ(JSTR(u, "state"), "config_unlocked");
        bind_device(c, ctx, vdev);
}

/* The AttachDevice answer for an emulated device: its scopes, the debug ones only where the
 * emulated TSM serves them (EmulatedDebugScopes=yes), each allowed as debug_allowed says. */
static void expect_emulated_attach_full(json_object *r, bool debug_scopes, bool debug_allowed) {
        const struct {
                const char *name;
                int64_t number;
                bool allowed;
        } want[] = {
                { "info", 0, true },
                { "state-change", 1, true },
                { "debug-read", 2, debug_allowed },
                { "debug-write", 3, debug_allowed },
        };
        size_t n = debug_scopes ? ELEMENTSOF(want) : 2;
        json_object *scopes;

        ASSERT_STREQ(JSTR(r, "backend"), "emulated");
        ASSERT_STREQ(JSTR(r, "tsm"), "emu0");
        ASSERT_STREQ(JSTR(r, "uapi"), "emulated");
        ASSERT_TRUE(json_object_object_get_ex(r, "scopes", &scopes));
        if (json_object_array_length(scopes) != n)
                TEST_FAIL("AttachDevice lists %zu scopes, not %zu: %s", json_object_array_length(scopes), n,
                          json_object_to_json_string(scopes));
        for (size_t i = 0; i < n; i++) {
                json_object *s = json_object_array_get_idx(scopes, i);

                ASSERT_STREQ(JSTR(s, "name"), want[i].name);
                ASSERT_EQ(JINT(s, "number"), want[i].number);
                ASSERT_EQ(JBOOL(s, "allowed"), want[i].allowed);
                ASSERT_TRUE(JINT(s, "maxRequestSize") > 0);
                ASSERT_TRUE(JINT(s, "maxResponseSize") > 0);
                ASSERT_TRUE(strlen(JSTR(s, "description")) > 0);
                /* What is listed is served: no description says otherwise. */
                ASSERT_NULL(strstr(JSTR(s, "description"), "refused"));
        }
}

/* As tsmd.conf has it by default: no debug scopes, which the default policy does not grant. */
static void expect_emulated_attach(json_object *r) {
        expect_emulated_attach_full(r, false, false);
}

/* One client's whole life on one device: context, attach, bind, every scope. */
static void client_flow(VarlinkClient *c, const char *address, bool memfd) {
        int fd = -1;
        int64_t ctx = open_context(c, &fd);

        if (memfd)
                expect_memfd_standin(fd);
        else
                expect_dev_zero(fd);
        /* The fd is really usable: /dev/zero reads zeros. */
        if (!memfd) {
                char buf[8] = { 1 };
                ASSERT_EQ(read(fd, buf, sizeof(buf)), (ssize_t) sizeof(buf));
                ASSERT_EQ(buf[0], 0);
        }
        close(fd);

        expect_emulated_attach(attach(c, ctx, 42, address));
        bool bound = true;
        ASSERT_STREQ(state_of(c, ctx, 42, &bound), "config_unlocked");
        ASSERT_FALSE(bound);
        bind_device(c, ctx, 42);
        ASSERT_STREQ(state_of(c, ctx, 42, &bound), "config_locked");
        ASSERT_TRUE(bound);

        exercise_guest_scopes(c, ctx, 42, address);

        CALL_OK(c, G "DetachDevice", guest_vdev_params(ctx, 42));
        CALL_ERROR(c, G "GetDeviceState", guest_vdev_params(ctx, 42), E_GUEST("NoSuchVDevice"), NULL);
        CALL_OK(c, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx));
        CALL_ERROR(c, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx), E_GUEST("NoSuchContext"),
                   strf("{\"context\":%" PRIi64 "}", ctx));
}

static void ping(VarlinkClient *c) {
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
}

/* Attaches address in a new context of c, retrying (bounded) while tsmd still has it busy
 * from a client that just went away. Returns the context. */
static int64_t attach_when_free(VarlinkClient *c, int64_t vdev, const char *address) {
        int64_t ctx = open_context(c, NULL);
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;
        const char *params = strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%" PRIi64 ",\"pciAddress\":\"%s\"}",
                                  ctx, vdev, address);
        char saved[256];

        snprintf(saved, sizeof(saved), "%s", params);
        for (;;) {
                json_object *r = NULL;
                const char *error = tsmd_call(c, G "AttachDevice", saved, &r);

                if (!error)
                        return ctx;
                if (!streq(error, E_GUEST("DeviceBusy")))
                        TEST_FAIL("AttachDevice(%s): %s %s", address, error, json_object_to_json_string(r));
                if (now_usec() > deadline)
                        TEST_FAIL("%s still busy %llu ms after its owner went away", address,
                                  (unsigned long long) (TSMD_WAIT_USEC / USEC_PER_MSEC));
                sleep_usec(5 * USEC_PER_MSEC);
        }
}

/* ---- contexts and their fds ----------------------------------------------------------------- */

/* The JSON text of what DescribeConnection answers c (nonce: its parameters' member, or ""). */
static const char *describe(VarlinkClient *c, const char *nonce) {
        json_object *r = CALL_OK(c, G "DescribeConnection", strf("{%s}", nonce));

        return strf("%s", json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
}

/* DescribeConnection names what the calling connection holds, and nothing of another's, of the
 * same process (and uid) or not; it echoes its nonce, is audited, and a nonce that is no int
 * is InvalidParameter. */
TEST(describe_connection_names_its_own_only) {
        Tsmd t;
        VarlinkClient *a, *b, *o;
        int64_t ca1, ca2, cb;

        tsmd_start_config(&t, CONF_ZERO());
        a = tsmd_connect(&t);
        b = tsmd_connect(&t);
        o = tsmd_can_switch_uid() ? tsmd_connect_as(&t, NOBODY, NOBODY) : tsmd_connect(&t);

        ASSERT_STREQ(describe(a, "\"nonce\":-5"), "{\"nonce\":-5,\"contexts\":[]}");
        ca1 = open_context(a, NULL);
        attach(a, ca1, 7, DEV1);
        bind_device(a, ca1, 7);
        ca2 = open_context(a, NULL);
        cb = open_context(b, NULL);
        attach(b, cb, 9, DEV2);
        ASSERT_EQ(cb, ca1); /* the same handle, of another connection */

        ASSERT_STREQ(describe(a, "\"nonce\":9223372036854775807"),
                     strf("{\"nonce\":9223372036854775807,\"contexts\":[{\"context\":%" PRIi64 ",\"vdevices\":"
                          "[{\"vdeviceId\":7,\"pciAddress\":\"" DEV1 "\",\"bound\":true,\"changing\":false,"
                          "\"gone\":false}]},{\"context\":%" PRIi64 ",\"vdevices\":[]}]}",
                          ca1, ca2));
        ASSERT_STREQ(describe(b, ""),
                     strf("{\"contexts\":[{\"context\":%" PRIi64 ",\"vdevices\":[{\"vdeviceId\":9,\"pciAddress\":\""
                          DEV2 "\",\"bound\":false,\"changing\":false,\"gone\":false}]}]}", cb));
        ASSERT_STREQ(describe(b, "\"nonce\":null"), describe(b, ""));
        ASSERT_STREQ(describe(o, ""), "{\"contexts\":[]}");
        CALL_ERROR(a, G "DescribeConnection", "{\"nonce\":\"x\"}", VARLINK_ERROR_INVALID_PARAMETER,
                   "{\"parameter\":\"nonce\"}");

        /* Those of the test's uid (o's is another's where the test can switch uids). */
        tsmd_expect_audit(&t, 0, "describe-connection", "ok", tsmd_can_switch_uid() ? 5 : 6);
        varlink_client_free(o);
        varlink_client_free(b);
        varlink_client_free(a);
        tsmd_teardown(&t);
}

TEST(open_and_adopt_context_dev_zero) {
        Tsmd t;
        VarlinkClient *c;
        int64_t h1, h2 = 0, h3 = 0;
        int fd, pipefd[2];
        json_object *r;

        tsmd_start_config(&t, CONF_ZERO());
        c = tsmd_connect(&t);

        h1 = open_context(c, &fd);
        expect_dev_zero(fd);

        /* The fd OpenContext returned, and a /dev/zero the client opened itself, are both the
         * right kind of object. */
        ASSERT_NULL(adopt_context(c, fd, &h2, NULL));
        ASSERT_NULL(adopt_context(c, open("/dev/zero", O_RDWR | O_CLOEXEC), &h3, NULL));
        ASSERT_TRUE(h2 > 0 && h3 > 0);
        ASSERT_TRUE(h1 != h2 && h2 != h3 && h1 != h3);
        /* Adopted contexts work like opened ones. */
        expect_emulated_attach(attach(c, h3, 1, DEV1));
        bind_device(c, h3, 1);

        /* A pipe, another character device, a memfd: refused by name. */
        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        ASSERT_STREQ(adopt_context(c, pipefd[0], NULL, &r), E_GUEST("BadFileDescriptor"));
        ASSERT_TRUE(json_matches(r, "{\"field\":\"fileDescriptor\",\"reason\":\"not an iommufd\"}"));
        close(pipefd[1]);
        ASSERT_STREQ(adopt_context(c, open("/dev/null", O_RDWR | O_CLOEXEC), NULL, &r), E_GUEST("BadFileDescriptor"));
        ASSERT_TRUE(json_matches(r, "{\"field\":\"fileDescriptor\"}"));
        ASSERT_STREQ(adopt_context(c, memfd_create("tsmd-emulated-iommufd", MFD_CLOEXEC), NULL, &r),
                     E_GUEST("BadFileDescriptor"));
        /* SECURITY: the IOMMU device itself, but not open for reading and writing: an O_PATH fd
         * is what it is by fstat(), yet no iommufd the monitor could use or hand on. */
        ASSERT_STREQ(adopt_context(c, open("/dev/zero", O_PATH | O_CLOEXEC), NULL, &r), E_GUEST("BadFileDescriptor"));
        ASSERT_TRUE(json_matches(r, "{\"field\":\"fileDescriptor\",\"reason\":\"not open for reading and writing\"}"));
        ASSERT_STREQ(adopt_context(c, open("/dev/zero", O_RDONLY | O_CLOEXEC), NULL, &r), E_GUEST("BadFileDescriptor"));
        ASSERT_TRUE(json_matches(r, "{\"field\":\"fileDescriptor\",\"reason\":\"not open for reading and writing\"}"));

        /* Several fds attached: tsmd keeps the one named and closes the others. */
        unsigned before = tsmd_settled_fds(&t, 1);
        int sp[2];
        ASSERT_OK(pipe2(sp, O_CLOEXEC));
        ASSERT_EQ(varlink_client_push_fd(c, open("/dev/null", O_RDWR | O_CLOEXEC)), 0);
        ASSERT_EQ(varlink_client_push_fd(c, open("/dev/zero", O_RDWR | O_CLOEXEC)), 1);
        ASSERT_EQ(varlink_client_push_fd(c, sp[0]), 2);
        ASSERT_EQ(varlink_client_push_fd(c, sp[1]), 3);
        CALL_OK(c, G "AdoptContext", "{\"fileDescriptor\":1}");
        ASSERT_EQ(tsmd_wait_fds(&t, before + 1, TSMD_WAIT_USEC), before + 1);

        /* No fd attached at all. */
        CALL_ERROR(c, G "AdoptContext", "{\"fileDescriptor\":0}", E_GUEST("BadFileDescriptor"),
                   "{\"field\":\"fileDescriptor\",\"reason\":\"no fd attached at that index\"}");
        /* An index beyond the fds attached. */
        ASSERT_EQ(varlink_client_push_fd(c, open("/dev/zero", O_RDWR | O_CLOEXEC)), 0);
        CALL_ERROR(c, G "AdoptContext", "{\"fileDescriptor\":1}", E_GUEST("BadFileDescriptor"),
                   "{\"field\":\"fileDescriptor\"}");

        varlink_client_free(c);
        tsmd_teardown(&t);
}

TEST(open_and_adopt_context_memfd_standin) {
        Tsmd t;
        VarlinkClient *c;
        int64_t h1, h2 = 0;
        int fd, pipefd[2];

        tsmd_start_config(&t, CONF_MEMFD());
        c = tsmd_connect(&t);

        h1 = open_context(c, &fd);
        expect_memfd_standin(fd);
        ASSERT_NULL(adopt_context(c, fd, &h2, NULL));
        ASSERT_TRUE(h2 > 0 && h2 != h1);
        expect_emulated_attach(attach(c, h2, 3, DEV2));
        bind_device(c, h2, 3);

        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        CALL_ERROR(c, G "CloseContext", strf("{\"context\":%" PRIi64 "}", h1 + h2 + 100), E_GUEST("NoSuchContext"), NULL);
        ASSERT_STREQ(adopt_context(c, pipefd[0], NULL, NULL), E_GUEST("BadFileDescriptor"));
        close(pipefd[1]);
        /* Without an IOMMU device, /dev/zero is not an iommufd either; nor is another memfd. */
        ASSERT_STREQ(adopt_context(c, open("/dev/zero", O_RDWR | O_CLOEXEC), NULL, NULL), E_GUEST("BadFileDescriptor"));
        ASSERT_STREQ(adopt_context(c, memfd_create("something-else", MFD_CLOEXEC), NULL, NULL),
                     E_GUEST("BadFileDescriptor"));

        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* IommuDevice= naming something that is not the IOMMU device: the host's fault, io.tsmd.System,
 * not a BadFileDescriptor about an fd the VMM never passed. A tsmd.conf that names one from the
 * start does not load (test-daemon.c); here nothing was there then (the emulated stand-in), and a
 * regular file is by the time a VMM asks. */
TEST(open_context_without_the_iommu_device_is_a_system_error) {
        _cleanup_free_ char *path = NULL;
        Tsmd t;
        VarlinkClient *c;
        json_object *e;
        int fd;

        ASSERT_OK(asprintf(&path, "/tmp/test-guest-iommu-%d", (int) getpid()));
        (void) unlink(path);
        tsmd_start_config(&t, strf("[Platform]\nMode=emulated\nIommuDevice=%s\nEmulatedDevices=" DEV1 "\n", path));
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ASSERT_OK(fd);
        close(fd);
        c = tsmd_connect(&t);
        e = CALL_ERROR(c, G "OpenContext", NULL, VARLINK_ERROR_SYSTEM, NULL);
        ASSERT_EQ(JINT(e, "errno"), ENODEV);

        varlink_client_free(c);
        tsmd_teardown(&t);
        ASSERT_OK(unlink(path));
}

/* ---- two clients, two users, the whole flow ------------------------------------------------- */

static void two_clients(const char *config, bool memfd) {
        Tsmd t;
        VarlinkClient *a, *b;

        tsmd_start_config(&t, config);
        a = tsmd_connect(&t);
        client_flow(a, DEV1, memfd);

        if (!tsmd_can_switch_uid()) {
                varlink_client_free(a);
                tsmd_teardown(&t);
                SKIP("the second client needs another uid (root only); the first passed");
        }
        b = tsmd_connect_as(&t, NOBODY, NOBODY);
        client_flow(b, DEV2, memfd);
        /* Same methods, different rights: only root changes tsmd's log level. */
        CALL_ERROR(b, "io.tsmd.Service.SetLogLevel", "{\"level\":\"debug\"}", VARLINK_ERROR_PERMISSION_DENIED, NULL);
        CALL_OK(a, "io.tsmd.Service.SetLogLevel", "{\"level\":\"debug\"}");

        /* Both at once: each on its own device, interleaved. */
        int64_t ca = open_context(a, NULL), cb = open_context(b, NULL);
        attach(a, ca, 1, DEV1);
        attach(b, cb, 1, DEV2);
        bind_device(a, ca, 1);
        bind_device(b, cb, 1);
        ASSERT_EQ(guest_tdi_state(a, ca, 1, DEV1), TDISP_STATE_CONFIG_LOCKED);
        ASSERT_EQ(guest_tdi_state(b, cb, 1, DEV2), TDISP_STATE_CONFIG_LOCKED);

        varlink_client_free(a);
        varlink_client_free(b);
        tsmd_teardown(&t);
}

TEST(two_users_full_flow_dev_zero) {
        two_clients(CONF_ZERO(), false);
}

TEST(two_users_full_flow_memfd_standin) {
        two_clients(CONF_MEMFD(), true);
}

/* ---- named errors ------------------------------------------------------------------------- */

TEST(foreign_handles_and_named_errors) {
        Tsmd t;
        VarlinkClient *a, *b;
        int64_t ca, cb;
        Msg m;

        tsmd_start_config(&t, CONF_ZERO());
        a = tsmd_connect(&t);
        b = tsmd_can_switch_uid() ? tsmd_connect_as(&t, NOBODY, NOBODY) : tsmd_connect(&t);

        ca = open_context(a, NULL);
        attach(a, ca, 7, DEV1);
        bind_device(a, ca, 7);

        /* B has no context yet: A's handle names nothing on B's connection. */
        const char *ctx_only = strf("{\"context\":%" PRIi64 "}", ca);
        CALL_ERROR(b, G "CloseContext", ctx_only, E_GUEST("NoSuchContext"), ctx_only);
        CALL_ERROR(b, G "GetDeviceState", guest_vdev_params(ca, 7), E_GUEST("NoSuchContext"), ctx_only);
        CALL_ERROR(b, G "AttachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":8,\"pciAddress\":\"" DEV2 "\"}", ca),
                   E_GUEST("NoSuchContext"), ctx_only);

        /* B's own first context has the same number as A's; A's vDevice is still not B's. */
        cb = open_context(b, NULL);
        ASSERT_EQ(cb, ca);
        const char *nsv = strf("{\"context\":%" PRIi64 ",\"vdeviceId\":7}", cb);
        CALL_ERROR(b, G "GetDeviceState", guest_vdev_params(cb, 7), E_GUEST("NoSuchVDevice"), nsv);
        CALL_ERROR(b, G "Bind", guest_vdev_params(cb, 7), E_GUEST("NoSuchVDevice"), nsv);
        CALL_ERROR(b, G "Unbind", guest_vdev_params(cb, 7), E_GUEST("NoSuchVDevice"), nsv);
        CALL_ERROR(b, G "DetachDevice", guest_vdev_params(cb, 7), E_GUEST("NoSuchVDevice"), nsv);
        m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0);
        CALL_ERROR(b, G "GuestRequest", request_params(cb, 7, "info", &m, 4096), E_GUEST("NoSuchVDevice"), nsv);
        /* ...and A's device stayed bound through all that. */
        bool bound = false;
        ASSERT_STREQ(state_of(a, ca, 7, &bound), "config_locked");
        ASSERT_TRUE(bound);

        /* One physical device, one guest: B cannot attach A's device, nor can A twice. */
        CALL_ERROR(b, G "AttachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":7,\"pciAddress\":\"" DEV1 "\"}", cb),
                   E_GUEST("DeviceBusy"), "{\"pciAddress\":\"" DEV1 "\"}");
        CALL_ERROR(a, G "AttachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":9,\"pciAddress\":\"" DEV1 "\"}", ca),
                   E_GUEST("DeviceBusy"), "{\"pciAddress\":\"" DEV1 "\"}");
        /* A vDevice id already used in the context. */
        CALL_ERROR(a, G "AttachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":7,\"pciAddress\":\"" DEV2 "\"}", ca),
                   E_GUEST("VDeviceExists"), strf("{\"context\":%" PRIi64 ",\"vdeviceId\":7}", ca));
        /* Addresses tsmd does not serve. */
        CALL_ERROR(a, G "AttachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":8,\"pciAddress\":\"0000:09:00.0\"}", ca),
                   E_GUEST("NoSuchDevice"), "{\"pciAddress\":\"0000:09:00.0\"}");
        CALL_ERROR(a, G "AttachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":8,\"pciAddress\":\"not-an-address\"}", ca),
                   E_GUEST("NoSuchDevice"), "{\"pciAddress\":\"not-an-address\"}");
        /* A VFIO device fd must prove the device: anything else is refused by name. */
        const char *with_vfio = strf("{\"context\":%" PRIi64 ",\"vdeviceId\":8,\"pciAddress\":\"" DEV2 "\","
                                     "\"vfioFileDescriptor\":0}", ca);
        char vfio_params[256];
        int vp[2];
        snprintf(vfio_params, sizeof(vfio_params), "%s", with_vfio);
        ASSERT_EQ(varlink_client_push_fd(a, open("/dev/zero", O_RDWR | O_CLOEXEC)), 0);
        CALL_ERROR(a, G "AttachDevice", vfio_params, E_GUEST("BadFileDescriptor"),
                   "{\"field\":\"vfioFileDescriptor\",\"reason\":\"not a VFIO device\"}");
        ASSERT_OK(pipe2(vp, O_CLOEXEC));
        ASSERT_EQ(varlink_client_push_fd(a, vp[0]), 0);
        CALL_ERROR(a, G "AttachDevice", vfio_params, E_GUEST("BadFileDescriptor"),
                   "{\"field\":\"vfioFileDescriptor\",\"reason\":\"not a character device\"}");
        close(vp[1]);
        CALL_ERROR(a, G "AttachDevice", vfio_params, E_GUEST("BadFileDescriptor"),
                   "{\"field\":\"vfioFileDescriptor\",\"reason\":\"no fd attached at that index\"}");
        /* Each refusal is recorded with the device it was for. */
        ASSERT_EQ(tsmd_audit_count_where(&t, 0, "\"pciAddress\":\"" DEV2 "\"", "attach", E_GUEST("BadFileDescriptor")),
                  3u);
        /* None of that attached DEV2. */
        CALL_ERROR(a, G "GetDeviceState", guest_vdev_params(ca, 8), E_GUEST("NoSuchVDevice"), NULL);
        /* iommufd object ids start at 1. */
        CALL_ERROR(a, G "AttachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":0,\"pciAddress\":\"" DEV2 "\"}", ca),
                   VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"vdeviceId\"}");

        /* Scopes by name only, and only the backend's. */
        m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0);
        CALL_ERROR(a, G "GuestRequest", request_params(ca, 7, "bogus", &m, 4096), E_GUEST("NoSuchScope"),
                   "{\"scope\":\"bogus\",\"backend\":\"emulated\"}");
        CALL_ERROR(a, G "GuestRequest", request_params(ca, 7, "0", &m, 4096), E_GUEST("NoSuchScope"),
                   "{\"scope\":\"0\"}");

        /* Bad base64 in a request small enough to pass the size check. */
        const char *bad_b64[] = { "!!!!", "AAA", "AAAA=", "A===", "QUJD\\n" };
        for (size_t i = 0; i < ELEMENTSOF(bad_b64); i++)
                CALL_ERROR(a, G "GuestRequest",
                           strf("{\"context\":%" PRIi64 ",\"vdeviceId\":7,\"scope\":\"info\",\"request\":\"%s\",\"maxResponseSize\":64}",
                                ca, bad_b64[i]),
                           VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"request\"}");

        /* A request larger than the scope takes: info takes 20 bytes (GET_DEVICE_INTERFACE_REPORT),
         * state-change 48 (START_INTERFACE). */
        Msg big = { .len = 21 };
        big.buf[0] = TDISP_VERSION_1_0;
        big.buf[1] = TDISP_MSG_GET_VERSION;
        CALL_ERROR(a, G "GuestRequest", request_params(ca, 7, "info", &big, 4096), E_GUEST("PayloadTooLarge"),
                   "{\"field\":\"request\",\"limit\":20}");
        big.len = 49;
        CALL_ERROR(a, G "GuestRequest", request_params(ca, 7, "state-change", &big, 4096), E_GUEST("PayloadTooLarge"),
                   "{\"field\":\"request\",\"limit\":48}");
        big.len = 1U << 10;
        CALL_ERROR(a, G "GuestRequest", request_params(ca, 7, "info", &big, 4096), E_GUEST("PayloadTooLarge"),
                   "{\"field\":\"request\",\"limit\":20}");
        /* A response buffer too small for the answer. */
        m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0);
        CALL_ERROR(a, G "GuestRequest", request_params(ca, 7, "info", &m, 8), E_GUEST("PayloadTooLarge"),
                   "{\"field\":\"maxResponseSize\"}");
        CALL_ERROR(a, G "GuestRequest",
                   strf("{\"context\":%" PRIi64 ",\"vdeviceId\":7,\"scope\":\"info\",\"request\":\"\",\"maxResponseSize\":-1}", ca),
                   VARLINK_ERROR_INVALID_PARAMETER, "{\"parameter\":\"maxResponseSize\"}");

        /* After all these, both connections work and A's device is as it was. */
        ASSERT_EQ(guest_tdi_state(a, ca, 7, DEV1), TDISP_STATE_CONFIG_LOCKED);
        ping(b);

        varlink_client_free(a);
        varlink_client_free(b);
        tsmd_teardown(&t);
}

/* tsmd (config) with json-int-fail-preload.c failing what fail ("VARIABLE=VALUE") says. */
static void start_failing(Tsmd *t, const char *config, const char *fail) {
        const char *env[] = { "LD_PRELOAD=" JSON_INT_FAIL_PRELOAD, fail, tsmd_preload_asan_env(), NULL };

        if (tsmd_under_valgrind())
                SKIP("valgrind and a preloaded library");
        tsmd_start(t, &(TsmdOptions) { .config = config, .env = env });
}

/* Memory runs out building NoSuchContext or NoSuchVDevice, json-int-fail-preload.c failing the
 * number they name as fail ("VARIABLE=NUMBER") says: the call is answered all the same,
 * io.tsmd.System with ENOMEM, and the connection's next calls are answered, not held behind one
 * that never will be. */
static void named_number_out_of_memory(const char *fail) {
        const char *enomem = "{\"errnoName\":\"ENOMEM\"}";
        VarlinkClient *c;
        int64_t ctx;
        Tsmd t;

        start_failing(&t, CONF_ZERO(), fail);
        c = tsmd_connect(&t);
        ctx = open_context(c, NULL);
        attach(c, ctx, 7, DEV1);
        bind_device(c, ctx, 7);

        CALL_ERROR(c, G "CloseContext", "{\"context\":4242424242}", VARLINK_ERROR_SYSTEM, enomem);
        CALL_ERROR(c, G "GetDeviceState", guest_vdev_params(ctx, 4242424242), VARLINK_ERROR_SYSTEM, enomem);
        CALL_ERROR(c, G "Bind", guest_vdev_params(ctx, 4242424242), VARLINK_ERROR_SYSTEM, enomem);
        /* The numbers that do not fail get their named errors, and the context is as it was. */
        CALL_ERROR(c, G "CloseContext", "{\"context\":4242}", E_GUEST("NoSuchContext"), "{\"context\":4242}");
        ASSERT_EQ(guest_tdi_state(c, ctx, 7, DEV1), TDISP_STATE_CONFIG_LOCKED);

        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* Adding the number to the error's parameters fails. */
TEST(no_such_context_reply_out_of_memory_still_answers) {
        named_number_out_of_memory("TSMD_TEST_FAIL_INT64=4242424242");
}

/* Making the number fails: not sent as null (NoSuchContext {"context": null}). */
TEST(no_such_context_value_out_of_memory_is_no_null) {
        named_number_out_of_memory("TSMD_TEST_FAIL_NEW_INT64=4242424242");
}

/* An event one of two watchers cannot be told for lack of memory (the preload fails the second
 * vDevice id 4242 the worker's loop makes: the first is AttachDevice's; the audit thread's, which
 * reads the attach record again when the reload reopens the log, do not count) ends that
 * watcher's call with io.tsmd.System, so that it knows it missed one; the other gets the event
 * all the same. */
TEST(an_event_out_of_memory_ends_its_watch_and_no_other) {
        VarlinkClient *a, *w[2];
        AsyncCall we[2] = {};
        unsigned failed = 0;
        int64_t ctx;
        Tsmd t;

        start_failing(&t, CONF_ZERO(), "TSMD_TEST_FAIL_NEW_INT64=4242");
        a = tsmd_connect(&t);
        ctx = open_context(a, NULL);
        attach(a, ctx, 4242, DEV2);
        for (unsigned i = 0; i < 2; i++) {
                w[i] = tsmd_connect(&t);
                tsmd_call_async(w[i], G "WatchEvents", NULL, VARLINK_CALL_MORE, &we[i]);
                ASSERT_TRUE(tsmd_async_wait(w[i], &we[i], 1, TSMD_WAIT_USEC)); /* {"event": null} */
        }

        /* DEV2 leaves the emulated platform. */
        ASSERT_TRUE(tsmd_reload(&t, CONF_EMU("/dev/zero", DEV1, "")));
        for (unsigned i = 0; i < 2; i++) {
                ASSERT_TRUE(tsmd_async_wait(w[i], &we[i], 2, TSMD_WAIT_USEC));
                if (we[i].errors[1]) {
                        ASSERT_STREQ(we[i].errors[1], VARLINK_ERROR_SYSTEM);
                        ASSERT_TRUE(json_matches(we[i].params[1], "{\"errnoName\":\"ENOMEM\"}"));
                        ASSERT_TRUE(we[i].done);
                        failed++;
                } else {
                        json_object *ev;

                        ASSERT_TRUE(json_object_object_get_ex(we[i].params[1], "event", &ev));
                        ASSERT_TRUE(json_matches(ev, strf("{\"kind\":\"device-removed\",\"context\":%" PRIi64
                                                          ",\"vdeviceId\":4242}", ctx)));
                        ASSERT_FALSE(we[i].done);
                }
        }
        ASSERT_EQ(failed, 1U);

        for (unsigned i = 0; i < 2; i++) {
                async_call_done(&we[i]);
                varlink_client_free(w[i]);
        }
        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* Likewise an audit record a FollowAudit subscriber cannot be sent (the preload fails the parse
 * of the attach record's line): its call ends with io.tsmd.System, where the record was skipped
 * without a sign. */
TEST(an_audit_record_out_of_memory_ends_its_follow) {
        VarlinkClient *a, *adm;
        AsyncCall f = {};
        int64_t ctx;
        Tsmd t;

        start_failing(&t, CONF_ZERO(), "TSMD_TEST_FAIL_PARSE_MATCH=\"event\":\"attach\"");
        adm = tsmd_connect(&t);
        tsmd_call_async(adm, "io.tsmd.Admin.FollowAudit", NULL, VARLINK_CALL_MORE, &f);
        ASSERT_TRUE(tsmd_async_wait(adm, &f, 1, TSMD_WAIT_USEC)); /* {"record": null} */
        a = tsmd_connect(&t);
        ctx = open_context(a, NULL);
        attach(a, ctx, 1, DEV2);

        /* The FollowAudit and OpenContext records, then the end, not the attach's. */
        ASSERT_TRUE(tsmd_async_wait(adm, &f, 4, TSMD_WAIT_USEC));
        ASSERT_NULL(f.errors[2]);
        ASSERT_STREQ(f.errors[3], VARLINK_ERROR_SYSTEM);
        ASSERT_TRUE(json_matches(f.params[3], "{\"errnoName\":\"ENOMEM\"}"));
        ASSERT_TRUE(f.done);
        ASSERT_EQ(tsmd_audit_count(&t, 0, "attach", "ok"), 1u); /* recorded all the same */

        async_call_done(&f);
        varlink_client_free(a);
        varlink_client_free(adm);
        tsmd_teardown(&t);
}

/* And a change of status one of two GetStatus subscribers cannot be told (the preload fails every
 * second version string made, each status having one): its call ends with io.tsmd.System, the
 * other is told. */
TEST(a_status_out_of_memory_ends_its_subscription_and_no_other) {
        VarlinkClient *s[2], *x, *c;
        AsyncCall st[2] = {};
        unsigned failed = 0;
        Tsmd t;

        start_failing(&t, CONF_ZERO(), "TSMD_TEST_FAIL_NEW_STRING=" PACKAGE_VERSION);
        /* Connected before anyone subscribes: no status is made for their coming. */
        s[0] = tsmd_connect(&t);
        s[1] = tsmd_connect(&t);
        x = tsmd_connect(&t);
        ping(x);
        tsmd_call_async(s[0], "io.tsmd.Service.GetStatus", NULL, VARLINK_CALL_MORE, &st[0]); /* 1st: made */
        ASSERT_TRUE(tsmd_async_wait(s[0], &st[0], 1, TSMD_WAIT_USEC));
        CALL_ERROR(x, "io.tsmd.Service.GetStatus", NULL, VARLINK_ERROR_SYSTEM, "{\"errnoName\":\"ENOMEM\"}"); /* 2nd */
        tsmd_call_async(s[1], "io.tsmd.Service.GetStatus", NULL, VARLINK_CALL_MORE, &st[1]); /* 3rd: made */
        ASSERT_TRUE(tsmd_async_wait(s[1], &st[1], 1, TSMD_WAIT_USEC));
        ASSERT_NULL(st[0].errors[0]);
        ASSERT_NULL(st[1].errors[0]);

        c = tsmd_connect(&t); /* a change: one more connection */
        ping(c);
        for (unsigned i = 0; i < 2; i++) {
                ASSERT_TRUE(tsmd_async_wait(s[i], &st[i], 2, TSMD_WAIT_USEC));
                if (st[i].errors[1]) {
                        ASSERT_STREQ(st[i].errors[1], VARLINK_ERROR_SYSTEM);
                        ASSERT_TRUE(st[i].done);
                        failed++;
                } else
                        ASSERT_EQ(JINT(st[i].params[1], "connections"), 4);
        }
        ASSERT_EQ(failed, 1U);

        for (unsigned i = 0; i < 2; i++) {
                async_call_done(&st[i]);
                varlink_client_free(s[i]);
        }
        varlink_client_free(x);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* ---- limits ------------------------------------------------------------------------------- */

TEST(limit_contexts_per_client) {
        Tsmd t;
        VarlinkClient *a, *b;
        int64_t c1, c2;
        unsigned fds;

        tsmd_start_config(&t, CONF_ZERO("\n[Guest]\nMaxContextsPerClient=2\n"));
        a = tsmd_connect(&t);
        b = tsmd_connect(&t);

        c1 = open_context(a, NULL);
        c2 = open_context(a, NULL);
        ASSERT_NE(c1, c2);
        CALL_ERROR(a, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts\",\"max\":2}");
        ASSERT_STREQ(adopt_context(a, open("/dev/zero", O_RDWR | O_CLOEXEC), NULL, NULL), E_GUEST("LimitReached"));

        /* Refusals leak nothing: neither tsmd's fd nor the one it would have returned. */
        fds = tsmd_settled_fds(&t, 2);
        for (unsigned i = 0; i < 20; i++) {
                CALL_ERROR(a, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts\",\"max\":2}");
                ASSERT_STREQ(adopt_context(a, open("/dev/zero", O_RDWR | O_CLOEXEC), NULL, NULL), E_GUEST("LimitReached"));
                ASSERT_ERRNO(varlink_client_take_fd(a, 0), ENXIO); /* no fd came with the error */
        }
        ASSERT_EQ(tsmd_settled_fds(&t, 2), fds);

        /* The limit is per client. */
        open_context(b, NULL);
        open_context(b, NULL);
        CALL_ERROR(b, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts\",\"max\":2}");

        /* Closing one makes room again. */
        CALL_OK(a, G "CloseContext", strf("{\"context\":%" PRIi64 "}", c1));
        open_context(a, NULL);

        varlink_client_free(a);
        varlink_client_free(b);
        tsmd_teardown(&t);
}

/* MaxContexts= counts every client's contexts: past it a new one is refused LimitReached naming
 * "contexts-total" (a client at its own limit hears of that one first), recorded as the
 * per-client refusals are, leaking nothing; a context closed by anyone makes room. */
TEST(limit_contexts_total) {
        Tsmd t;
        VarlinkClient *a, *b;
        json_object *records, *total, *own;
        int64_t a1, seq;
        unsigned fds;

        tsmd_start_config(&t, CONF_ZERO("\n[Guest]\nMaxContexts=3\nMaxContextsPerClient=2\n"));
        a = tsmd_connect(&t);
        b = tsmd_connect(&t);

        a1 = open_context(a, NULL);
        open_context(a, NULL);
        open_context(b, NULL);
        seq = tsmd_audit_last_seq(&t);
        /* The fourth, by a client with room of its own. */
        CALL_ERROR(b, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts-total\",\"max\":3}");
        ASSERT_STREQ(adopt_context(b, open("/dev/zero", O_RDWR | O_CLOEXEC), NULL, NULL), E_GUEST("LimitReached"));
        ASSERT_ERRNO(varlink_client_take_fd(b, 0), ENXIO); /* no fd came with the error */
        CALL_ERROR(a, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts\",\"max\":2}");

        /* Recorded as the per-client refusal is: the call, its caller, its error, no context. */
        tsmd_expect_audit(&t, seq, "open-context", E_GUEST("LimitReached"), 2);
        tsmd_expect_audit(&t, seq, "adopt-context", E_GUEST("LimitReached"), 1);
        records = tsmd_audit_query(&t, strf("{\"fromSeq\":%" PRIi64 ",\"result\":\"" E_GUEST("LimitReached") "\"}", seq + 1));
        ASSERT_EQ(json_object_array_length(records), 3U);
        total = json_object_array_get_idx(records, 0);
        own = json_object_array_get_idx(records, 2);
        ASSERT_EQ(json_object_object_length(total), json_object_object_length(own));
        json_object_object_foreach(own, key, value) {
                json_object *v;

                if (streq(key, "seq") || streq(key, "time") || streq(key, "monotonicUsec") || streq(key, "latencyUsec"))
                        continue;
                if (!json_object_object_get_ex(total, key, &v) || !json_object_equal(v, value))
                        TEST_FAIL("the records of the refusals differ in %s: %s, %s", key,
                                  json_object_to_json_string(total), json_object_to_json_string(own));
        }
        json_object_put(records);

        /* Refusals leak nothing. */
        fds = tsmd_settled_fds(&t, 2);
        for (unsigned i = 0; i < 20; i++) {
                CALL_ERROR(b, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts-total\",\"max\":3}");
                ASSERT_STREQ(adopt_context(b, open("/dev/zero", O_RDWR | O_CLOEXEC), NULL, NULL), E_GUEST("LimitReached"));
        }
        ASSERT_EQ(tsmd_settled_fds(&t, 2), fds);

        /* Another client's close makes room; the file descriptor limit had nothing to say. */
        CALL_OK(a, G "CloseContext", strf("{\"context\":%" PRIi64 "}", a1));
        open_context(b, NULL);
        CALL_ERROR(a, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts-total\",\"max\":3}");
        ASSERT_FALSE(tsmd_log_contains(&t, "RLIMIT_NOFILE of")); /* not its raising at the start */
        /* The worker counted for itself: the monitor, which would refuse too, was not asked. */
        ASSERT_FALSE(tsmd_log_contains(&t, "Refusing a new context"));

        varlink_client_free(a);
        varlink_client_free(b);
        tsmd_teardown(&t);
}

/* Contexts waiting to be reclaimed after a restart of the worker count: the monitor holds their
 * fds. Reclaiming one takes no more room; releasing one unreclaimed frees its room. */
TEST(limit_contexts_total_counts_orphans) {
        char token[64];
        VarlinkClient *a, *b;
        json_object *r;
        Tsmd t;

        tsmd_start_config(&t, CONF_ZERO("\n[Guest]\nMaxContexts=2\nReclaimTimeoutSec=2\n"));
        a = tsmd_connect(&t);
        r = CALL_OK(a, G "OpenContext", NULL);
        snprintf(token, sizeof(token), "%s", JSTR(r, "reclaimToken"));
        safe_close(varlink_client_take_fd(a, (size_t) JINT(r, "fileDescriptor")));
        open_context(a, NULL);
        tsmd_kill_worker(&t);
        varlink_client_free(a);

        b = tsmd_connect(&t);
        CALL_ERROR(b, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts-total\",\"max\":2}");
        r = CALL_OK(b, G "ReclaimContext", strf("{\"reclaimToken\":\"%s\"}", token));
        safe_close(varlink_client_take_fd(b, (size_t) JINT(r, "fileDescriptor")));
        CALL_ERROR(b, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts-total\",\"max\":2}");

        ASSERT_TRUE(tsmd_wait_log(&t, "was not reclaimed in time, releasing it.", 1, 7 * USEC_PER_SEC));
        open_context(b, NULL);
        CALL_ERROR(b, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts-total\",\"max\":2}");
        /* The worker counted the orphans itself: the monitor was not asked. */
        ASSERT_FALSE(tsmd_log_contains(&t, "Refusing a new context"));

        varlink_client_free(b);
        tsmd_teardown(&t);
}

#define PER_UID_LIMIT(max) "{\"limit\":\"contexts-uid\",\"max\":" #max "}"

/* MaxContextsPerUid= counts the contexts of all a uid's connections and processes, each within
 * its own limits, its orphans too: past it a new one is refused LimitReached "contexts-uid",
 * audited; another uid keeps its share; a reclaim takes no more; a reload applies it. */
TEST(limit_contexts_per_uid) {
        const char *conf = CONF_ZERO("\n[Guest]\nMaxContextsPerClient=2\nMaxContextsPerUid=3\nReclaimTimeoutSec=2\n");
        VarlinkClient *a, *b, *d, *e;
        char token[64];
        json_object *r;
        int64_t seq, d1, e1;
        Tsmd t;

        tsmd_start_config(&t, conf);
        a = tsmd_connect(&t);
        b = tsmd_connect(&t);
        r = CALL_OK(a, G "OpenContext", NULL);
        snprintf(token, sizeof(token), "%s", JSTR(r, "reclaimToken"));
        safe_close(varlink_client_take_fd(a, (size_t) JINT(r, "fileDescriptor")));
        open_context(a, NULL);
        open_context(b, NULL);

        /* b has room of its own (MaxContextsPerClient=), and the process (the rule's 4). */
        seq = tsmd_audit_last_seq(&t);
        CALL_ERROR(b, G "OpenContext", NULL, E_GUEST("LimitReached"), PER_UID_LIMIT(3));
        ASSERT_STREQ(adopt_context(b, open("/dev/zero", O_RDWR | O_CLOEXEC), NULL, NULL), E_GUEST("LimitReached"));
        ASSERT_ERRNO(varlink_client_take_fd(b, 0), ENXIO); /* no fd came with the error */
        tsmd_expect_audit(&t, seq, "open-context", E_GUEST("LimitReached"), 1);
        tsmd_expect_audit(&t, seq, "adopt-context", E_GUEST("LimitReached"), 1);

        if (tsmd_can_switch_uid()) {
                /* Another process of the uid, with the rule's MaxContexts= untouched: the uid's
                 * bound is what stops a VMM that forks. Another uid has a share of its own. */
                VarlinkClient *p = tsmd_connect_as(&t, getuid(), getgid()),
                              *o = tsmd_connect_as(&t, NOBODY, NOBODY);

                CALL_ERROR(p, G "OpenContext", NULL, E_GUEST("LimitReached"), PER_UID_LIMIT(3));
                open_context(o, NULL);
                varlink_client_free(p);
                varlink_client_free(o);
        }

        /* Orphans count against their uid's share, as against MaxContexts=: taking one back
         * takes no more of it. */
        tsmd_kill_worker(&t);
        varlink_client_free(a);
        varlink_client_free(b);
        d = tsmd_connect(&t);
        CALL_ERROR(d, G "OpenContext", NULL, E_GUEST("LimitReached"), PER_UID_LIMIT(3));
        r = CALL_OK(d, G "ReclaimContext", strf("{\"reclaimToken\":\"%s\"}", token));
        d1 = JINT(r, "context");
        safe_close(varlink_client_take_fd(d, (size_t) JINT(r, "fileDescriptor")));
        CALL_ERROR(d, G "OpenContext", NULL, E_GUEST("LimitReached"), PER_UID_LIMIT(3));
        ASSERT_TRUE(tsmd_wait_log(&t, strf("Context of uid %u was not reclaimed in time", (unsigned) getuid()), 2,
                                  10 * USEC_PER_SEC));
        open_context(d, NULL);
        e = tsmd_connect(&t);
        e1 = open_context(e, NULL);
        CALL_ERROR(e, G "OpenContext", NULL, E_GUEST("LimitReached"), PER_UID_LIMIT(3));

        /* A reload applies it: lowered, it refuses new contexts and takes none away. */
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO("\n[Guest]\nMaxContextsPerClient=2\nMaxContextsPerUid=2\n")));
        CALL_ERROR(e, G "OpenContext", NULL, E_GUEST("LimitReached"), PER_UID_LIMIT(2));
        CALL_OK(d, G "CloseContext", strf("{\"context\":%" PRIi64 "}", d1));
        CALL_OK(e, G "CloseContext", strf("{\"context\":%" PRIi64 "}", e1));
        open_context(e, NULL);
        CALL_ERROR(e, G "OpenContext", NULL, E_GUEST("LimitReached"), PER_UID_LIMIT(2));

        varlink_client_free(d);
        varlink_client_free(e);
        tsmd_teardown(&t);
}

/* The emulated platform has no VFIO devices: its devices are attached without the fd that a
 * kernel TSM's need (RequireVfioFileDescriptor=yes, the default, written out here). */
TEST(an_emulated_device_needs_no_vfio_fd) {
        Tsmd t;
        VarlinkClient *a;
        json_object *r;
        int64_t ctx;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\nIommuDevice=/dev/zero\nEmulatedDevices=" DEV1 "\n"
                              "[Guest]\nRequireVfioFileDescriptor=yes\n");
        a = tsmd_connect(&t);
        ctx = open_context(a, NULL);
        r = CALL_OK(a, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        ASSERT_STREQ(JSTR(r, "backend"), "emulated");
        ASSERT_EQ(tsmd_audit_count_where(&t, 0, "\"pciAddress\":\"" DEV1 "\"", "attach", "ok"), 1u);

        varlink_client_free(a);
        tsmd_teardown(&t);
}

TEST(limit_vdevices_per_client) {
        Tsmd t;
        VarlinkClient *a, *b;
        int64_t c1, c2, cb;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\nIommuDevice=/dev/zero\n"
                              "EmulatedDevices=" DEV1 "," DEV2 "," DEV3 ",0000:04:00.0\n"
                              "[Guest]\nMaxVDevicesPerClient=2\n");
        a = tsmd_connect(&t);
        b = tsmd_connect(&t);

        /* Two vDevices in two contexts: the limit counts all of a client's contexts. */
        c1 = open_context(a, NULL);
        c2 = open_context(a, NULL);
        attach(a, c1, 1, DEV1);
        attach(a, c2, 1, DEV2);
        CALL_ERROR(a, G "AttachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":2,\"pciAddress\":\"" DEV3 "\"}", c1),
                   E_GUEST("LimitReached"), "{\"limit\":\"vdevices\",\"max\":2}");
        /* The refused attach did not take the device. */
        cb = open_context(b, NULL);
        attach(b, cb, 1, DEV3);
        attach(b, cb, 2, "0000:04:00.0");

        /* Detaching makes room again. */
        CALL_OK(a, G "DetachDevice", guest_vdev_params(c2, 1));
        attach(a, c1, 2, DEV2);

        varlink_client_free(a);
        varlink_client_free(b);
        tsmd_teardown(&t);
}

/* [Guest] MaxRequestSize= and MaxResponseSize= cap every scope's own limits, and a reload moves
 * the caps. GET_VERSION is a 16-byte request with an 18-byte answer (one version). */
TEST(limit_request_and_response_size) {
        Tsmd t;
        VarlinkClient *a;
        Msg m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0), big = m, resp;
        int64_t ctx;

        tsmd_start_config(&t, CONF_ZERO("\n[Guest]\nMaxRequestSize=15\nMaxResponseSize=17\n"));
        a = tsmd_connect(&t);
        ctx = open_context(a, NULL);
        attach(a, ctx, 1, DEV1);
        bind_device(a, ctx, 1);

        /* Within the scope's 20 bytes, beyond the cap. */
        CALL_ERROR(a, G "GuestRequest", request_params(ctx, 1, "info", &m, 4096), E_GUEST("PayloadTooLarge"),
                   "{\"field\":\"request\",\"limit\":15}");
        /* Refused by its length, before its text is read: not decoded, so not InvalidParameter. */
        CALL_ERROR(a, G "GuestRequest",
                   strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1,\"scope\":\"info\",\"request\":\"%s\","
                        "\"maxResponseSize\":4096}", ctx, "!!!!!!!!!!!!!!!!!!!!!!!!"),
                   E_GUEST("PayloadTooLarge"), "{\"field\":\"request\",\"limit\":15}");
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO("\n[Guest]\nMaxRequestSize=16\nMaxResponseSize=17\n")));
        /* The request fits now; the answer does not, however much room the caller offers. */
        CALL_ERROR(a, G "GuestRequest", request_params(ctx, 1, "info", &m, 4096), E_GUEST("PayloadTooLarge"),
                   "{\"field\":\"maxResponseSize\",\"limit\":17}");
        big.len = 17;
        CALL_ERROR(a, G "GuestRequest", request_params(ctx, 1, "info", &big, 4096), E_GUEST("PayloadTooLarge"),
                   "{\"field\":\"request\",\"limit\":16}");
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO("\n[Guest]\nMaxRequestSize=16\nMaxResponseSize=18\n")));
        ASSERT_NULL(guest_request(a, ctx, 1, "info", &m, &resp, NULL));
        ASSERT_EQ(resp.len, 18U);
        ASSERT_EQ(resp.buf[1], TDISP_MSG_VERSION);

        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* A reply must fit the caller's MaxMessageSize=: the backend is offered no larger a response than
 * the reply can carry, so a larger one is refused with PayloadTooLarge naming what the caller can
 * have, rather than produced and then replaced by ReplyTooLarge. At 64 KiB the reply of scope
 * debug-read, {"parameters":{"response":"<base64>","scopeNumber":2,"auditSequence":S}} with S
 * counted at its longest (20 characters) and the NUL, leaves 65536 - 84 = 65452 characters of
 * base64 for 49089 bytes. */
#define REPLY_MESSAGE_MAX 65536
#define REPLY_RESPONSE_MAX 49089

/* A MEM_READ of the emulated device's debug memory: a 36-byte request, answered with the
 * message echoed and length bytes. */
static Msg mem_read(const char *address, uint32_t length) {
        Msg m = {};

        ASSERT_OK(emu_debug_build_mem_request(guest_function_id(address), EMU_VENDOR_ID_DEFAULT,
                                              EMU_DEBUG_OP_MEM_READ, 0, length, NULL, m.buf, sizeof(m.buf), &m.len));
        return m;
}

/* The size a reply with these parameters takes as tsmd measures it (plain JSON and its NUL), had
 * its auditSequence the longest an int64 can have. */
static size_t reply_size_at_most(json_object *params) {
        _cleanup_(json_object_putp) json_object *reply = json_object_new_object();
        size_t len;

        ASSERT_NOT_NULL(reply);
        ASSERT_OK(json_object_object_add(reply, "parameters", json_object_get(params)));
        ASSERT_NOT_NULL(json_object_to_json_string_length(reply, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                                          &len));
        return len + 1 - strlen(strf("%" PRIi64, JINT(params, "auditSequence"))) + strlen("-9223372036854775808");
}

TEST(response_capped_to_what_the_reply_can_carry) {
        static const TsmdFile policy = { "policy.conf",
                                         "[Client:tests]\nUsers=root\nDevices=*\nScopes=info state-change debug-read\n" };
        uint8_t zero_nonce[TDISP_NONCE_SIZE] = {};
        _cleanup_(json_object_putp) json_object *records = NULL;
        _cleanup_free_ void *resp = NULL;
        json_object *r = NULL, *rec, *v;
        int64_t ctx, seq;
        VarlinkClient *c;
        size_t len;
        Msg m;
        Tsmd t;

        tsmd_start(&t, &(TsmdOptions){ .config = CONF_ZERO("EmulatedDebugScopes=yes\n[Varlink]\nMaxMessageSize=64K\n"),
                                       .files = &policy, .n_files = 1 });
        c = tsmd_connect(&t);
        ctx = open_context(c, NULL);
        attach(c, ctx, 1, DEV1);
        bind_device(c, ctx, 1);
        seq = tsmd_audit_last_seq(&t);

        /* A response of exactly the bound: its reply fits however long its auditSequence, and the
         * next 4 characters of base64 would not. */
        m = mem_read(DEV1, REPLY_RESPONSE_MAX - sizeof(EmuDebugMessage));
        ASSERT_NULL(tsmd_call(c, G "GuestRequest", request_params(ctx, 1, "debug-read", &m, 65536), &r));
        resp = unb64(JSTR(r, "response"), &len);
        ASSERT_EQ(len, (size_t) REPLY_RESPONSE_MAX);
        ASSERT_EQ(reply_size_at_most(r), (size_t) REPLY_MESSAGE_MAX);

        /* The most the device answers (64 KiB, whose reply the connection cannot carry), and a
         * byte more than the bound: refused, naming the bound, where the device used to answer
         * and the caller got ReplyTooLarge (or, a byte over, a reply that fit only for its short
         * auditSequence). */
        m = mem_read(DEV1, EMU_DEBUG_MEM_XFER_MAX);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 1, "debug-read", &m, 65536), E_GUEST("PayloadTooLarge"),
                   strf("{\"field\":\"maxResponseSize\",\"limit\":%u}", REPLY_RESPONSE_MAX));
        m = mem_read(DEV1, REPLY_RESPONSE_MAX - sizeof(EmuDebugMessage) + 1);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 1, "debug-read", &m, 65536), E_GUEST("PayloadTooLarge"),
                   strf("{\"field\":\"maxResponseSize\",\"limit\":%u}", REPLY_RESPONSE_MAX));
        /* The caller's own smaller limit is the one named. */
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 1, "debug-read", &m, 100), E_GUEST("PayloadTooLarge"),
                   "{\"field\":\"maxResponseSize\",\"limit\":100}");
        /* All four reached the device: the refusals are its own, the bound the room it was offered. */
        ASSERT_EQ(tsmd_log_count(&t, "Guest request (scope debug-read, 36 bytes)"), 4U);

        /* Recorded as refused by the size limit, with no response; no reply was too large. */
        tsmd_expect_audit(&t, seq, "guest-request", "ok", 1);
        tsmd_expect_audit(&t, seq, "guest-request", E_GUEST("PayloadTooLarge"), 3);
        ASSERT_EQ(tsmd_audit_count(&t, seq, "connection", VARLINK_ERROR_REPLY_TOO_LARGE), 0U);
        records = tsmd_audit_query(&t, strf("{\"fromSeq\":%" PRIi64 ",\"result\":\"" E_GUEST("PayloadTooLarge") "\","
                                            "\"limit\":1}", seq + 1));
        ASSERT_EQ(json_object_array_length(records), 1U);
        rec = json_object_array_get_idx(records, 0);
        ASSERT_STREQ(JSTR(rec, "scope"), "debug-read");
        ASSERT_EQ(JINT(rec, "scopeNumber"), 2);
        ASSERT_EQ(JINT(rec, "requestSize"), (int64_t) sizeof(EmuDebugMessage));
        ASSERT_TRUE(json_object_object_get_ex(rec, "responseSize", &v));
        ASSERT_NULL(v);

        /* What keeps the device from acting on a request refused so: offered less room than its
         * response, the emulated device refuses before it changes anything. A START_INTERFACE (a
         * 16-byte answer) offered 15 bytes leaves the TDI the Bind locked CONFIG_LOCKED. (No
         * request that changes the device's state answers more than its own message's size plus
         * the reply's envelope, so none can be refused by the connection's bound itself.) */
        m = tdisp_msg(TDISP_MSG_START_INTERFACE_REQ, DEV1, zero_nonce, sizeof(zero_nonce));
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 1, "state-change", &m, sizeof(TdispHeader) - 1),
                   E_GUEST("PayloadTooLarge"), "{\"field\":\"maxResponseSize\",\"limit\":15}");
        ASSERT_STREQ(state_of(c, ctx, 1, NULL), "config_locked");

        /* A oneway caller gets no reply, so nothing is capped: the device answers in full. */
        seq = tsmd_audit_last_seq(&t);
        m = mem_read(DEV1, EMU_DEBUG_MEM_XFER_MAX);
        ASSERT_OK(varlink_client_send_oneway(c, G "GuestRequest",
                                             json_tokener_parse(request_params(ctx, 1, "debug-read", &m, 65536))));
        tsmd_expect_audit(&t, seq, "guest-request", "ok", 1);
        json_object_put(records);
        records = tsmd_audit_query(&t, strf("{\"fromSeq\":%" PRIi64 ",\"scope\":\"debug-read\",\"limit\":1}", seq + 1));
        ASSERT_EQ(JINT(json_object_array_get_idx(records, 0), "responseSize"), (int64_t) EMU_RESPONSE_MAX);

        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* ---- clients that go away ---------------------------------------------------------------- */

TEST(client_killed_mid_request) {
        Tsmd t;
        VarlinkClient *c;
        unsigned baseline, fds;
        int notify[2];
        char byte = 0;
        pid_t pid;
        int status;

        tsmd_start_config(&t, CONF_ZERO("EmulatedLatencyUSec=500000\n"));
        baseline = tsmd_idle_fds(&t);

        ASSERT_OK(pipe2(notify, O_CLOEXEC));
        fflush(NULL);
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                /* The victim: a VMM with a bound device and a guest request in flight. */
                AsyncCall gr;
                Msg m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0);

                close(notify[0]);
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                c = tsmd_connect(&t);
                int64_t ctx = open_context(c, NULL);
                attach(c, ctx, 1, DEV1);
                bind_device(c, ctx, 1);
                tsmd_call_async(c, G "GuestRequest", request_params(ctx, 1, "info", &m, 4096), 0, &gr);
                ASSERT_EQ(varlink_client_get_events(c) & POLLOUT, 0); /* all of it was sent */
                ASSERT_EQ(write(notify[1], "S", 1), 1);
                for (;;)
                        pause();
        }
        close(notify[1]);
        struct pollfd p = { .fd = notify[0], .events = POLLIN };
        ASSERT_EQ(poll(&p, 1, 5000), 1);
        if (read(notify[0], &byte, 1) != 1 || byte != 'S') {
                (void) waitpid(pid, &status, 0);
                TEST_FAIL("the victim client failed before sending its request (status 0x%x)", status);
        }
        close(notify[0]);
        /* Let tsmd read the request (the reply is due 500 ms after it). */
        sleep_usec(100 * USEC_PER_MSEC);
        fds = tsmd_count_fds(&t);
        ASSERT_GE(fds, baseline + 2); /* the connection and the context's fd */
        uint64_t killed_at = now_usec();
        ASSERT_OK(kill(pid, SIGKILL));
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        /* Nothing left behind: every fd closed... */
        ASSERT_EQ(tsmd_wait_fds(&t, baseline, TSMD_WAIT_USEC), baseline);
        /* ...and the cancelled request's completion time passes without incident. */
        sleep_usec(killed_at + 700 * USEC_PER_MSEC > now_usec() ? killed_at + 700 * USEC_PER_MSEC - now_usec() : 0);
        ASSERT_TRUE(tsmd_is_running(&t));

        /* The device was unbound and released: another client attaches and binds it. */
        c = tsmd_connect(&t);
        ping(c);
        int64_t ctx = attach_when_free(c, 1, DEV1);
        bool bound = true;
        ASSERT_STREQ(state_of(c, ctx, 1, &bound), "config_unlocked");
        ASSERT_FALSE(bound);
        bind_device(c, ctx, 1);
        ASSERT_EQ(guest_tdi_state(c, ctx, 1, DEV1), TDISP_STATE_CONFIG_LOCKED);
        varlink_client_free(c);
        ASSERT_EQ(tsmd_wait_fds(&t, baseline, TSMD_WAIT_USEC), baseline);

        /* And tsmd is idle again, not spinning on a dead connection. */
        unsigned long long ticks = tsmd_cpu_ticks(&t);
        sleep_usec(500 * USEC_PER_MSEC);
        ASSERT_LE(tsmd_cpu_ticks(&t) - ticks, (unsigned long long) sysconf(_SC_CLK_TCK) / 10);

        tsmd_teardown(&t);
}

/* The next guest of a released device: it gets it (once the release is done) unlocked and
 * unbound, and can bind it. */
static void expect_guest_gets_it_unlocked(VarlinkClient *b, const char *address) {
        int64_t cb = attach_when_free(b, 1, address);
        bool bound = true;

        ASSERT_STREQ(state_of(b, cb, 1, &bound), "config_unlocked");
        ASSERT_FALSE(bound);
        bind_device(b, cb, 1);
}

static void expect_next_guest_gets_it_unlocked(Tsmd *t, const char *address) {
        VarlinkClient *b = tsmd_connect(t);

        expect_guest_gets_it_unlocked(b, address);
        varlink_client_free(b);
}

/* A guest that started its TDI (scope state-change, after the host's Bind) and left: the next
 * guest gets the device unlocked, and can bind it. */
TEST(release_unlocks_what_the_guest_started) {
        uint8_t nonce[TDISP_NONCE_SIZE] = {};
        VarlinkClient *a;
        int64_t ca;
        Msg m, r;
        Tsmd t;

        tsmd_start_config(&t, CONF_MEMFD());
        a = tsmd_connect(&t);
        ca = open_context(a, NULL);
        attach(a, ca, 5, DEV2);
        bind_device(a, ca, 5);
        m = tdisp_msg(TDISP_MSG_START_INTERFACE_REQ, DEV2, nonce, sizeof(nonce));
        r = guest_ok(a, ca, 5, "state-change", &m, 1);
        ASSERT_EQ(r.buf[1], TDISP_MSG_START_INTERFACE_RSP);
        ASSERT_EQ(guest_tdi_state(a, ca, 5, DEV2), TDISP_STATE_RUN);
        varlink_client_free(a);

        expect_next_guest_gets_it_unlocked(&t, DEV2);
        tsmd_teardown(&t);
}

/* A debug register of the emulated device through tsmd: READ or WRITE (scope debug-read or
 * debug-write); returns the value the device answers with. */
static uint64_t guest_debug_reg(VarlinkClient *c, int64_t ctx, int64_t vdev, const char *address, uint8_t op,
                                uint32_t reg, uint64_t value) {
        bool write = op == EMU_DEBUG_OP_WRITE;
        EmuDebugMessage answer;
        Msg m = {}, r;

        ASSERT_OK(emu_debug_build_request(guest_function_id(address), EMU_VENDOR_ID_DEFAULT, op, reg, value, m.buf,
                                          sizeof(m.buf), &m.len));
        r = guest_ok(c, ctx, vdev, write ? "debug-write" : "debug-read", &m, write ? 3 : 2);
        ASSERT_EQ(r.buf[1], TDISP_MSG_VDM_RSP);
        ASSERT_EQ(r.len, sizeof(answer));
        memcpy(&answer, r.buf, sizeof(answer));
        ASSERT_EQ(le32toh(answer.payload.reg), reg);
        return le64toh(answer.payload.value);
}

/* A guest that wrote the emulated device's debug registers (configuration and scratch) and
 * left, its VMM having unbound the device: the next guest, of another uid where the test may
 * switch, reads their power-on values. */
TEST(release_resets_what_the_guest_wrote_to_registers) {
        const TsmdFile policy = {
                "policy.conf", strf("[Client:tests]\nUsers=%u %u\nDevices=*\nScopes=info state-change debug-read debug-write\n",
                                    (unsigned) getuid(), (unsigned) NOBODY) };
        const uint32_t config_reg = EMU_DEBUG_REG_CONFIG_FIRST + 1, scratch_reg = EMU_DEBUG_REG_SCRATCH_FIRST;
        uint64_t config_value, scratch_value;
        VarlinkClient *a, *b;
        int64_t ca, cb;
        Tsmd t;

        tsmd_start(&t, &(TsmdOptions){ .config = CONF_ZERO("EmulatedDebugScopes=yes\n"), .files = &policy, .n_files = 1 });
        a = tsmd_connect(&t);
        ca = open_context(a, NULL);
        attach(a, ca, 1, DEV1);
        bind_device(a, ca, 1);
        config_value = guest_debug_reg(a, ca, 1, DEV1, EMU_DEBUG_OP_READ, config_reg, 0);
        scratch_value = guest_debug_reg(a, ca, 1, DEV1, EMU_DEBUG_OP_READ, scratch_reg, 0);
        ASSERT_EQ(guest_debug_reg(a, ca, 1, DEV1, EMU_DEBUG_OP_WRITE, config_reg, ~config_value), ~config_value);
        ASSERT_EQ(guest_debug_reg(a, ca, 1, DEV1, EMU_DEBUG_OP_WRITE, scratch_reg, 0x5ec2e75ec2e7), 0x5ec2e75ec2e7);
        ASSERT_STREQ(JSTR(CALL_OK(a, G "Unbind", guest_vdev_params(ca, 1)), "state"), "config_unlocked");
        varlink_client_free(a);

        b = tsmd_can_switch_uid() ? tsmd_connect_as(&t, NOBODY, NOBODY) : tsmd_connect_guest(&t);
        cb = attach_when_free(b, 1, DEV1);
        bind_device(b, cb, 1);
        ASSERT_EQ(guest_debug_reg(b, cb, 1, DEV1, EMU_DEBUG_OP_READ, config_reg, 0), config_value);
        ASSERT_EQ(guest_debug_reg(b, cb, 1, DEV1, EMU_DEBUG_OP_READ, scratch_reg, 0), scratch_value);
        varlink_client_free(b);
        tsmd_teardown(&t);
}

/* How long each exchange with the emulated device takes below: far more than a refusal may. */
#define DEBUG_REFUSAL_LATENCY_USEC 2000000

/* Mainline kernels refuse the debug scopes (pci_tsm_guest_req(): EINVAL past state-change,
 * before a TSM driver or the device sees them), and so does the emulated platform unless
 * [Platform] EmulatedDebugScopes=yes, whatever the policy grants: BackendError
 * InvalidScopeOrArgument, recorded like any failed request, answered at once (no exchange with
 * the device, so no EmulatedLatencyUSec), on a TDI not bound too (the scope is refused first). */
TEST(debug_scopes_refused_unless_the_emulated_tsm_serves_them) {
        const TsmdFile policy = {
                "policy.conf", strf("[Client:tests]\nUsers=%u\nDevices=*\nScopes=info state-change debug-read debug-write\n",
                                    (unsigned) getuid()) };
        VarlinkClient *c;
        int64_t ctx, seq;
        Tsmd t;

        tsmd_start(&t, &(TsmdOptions){ .config = CONF_ZERO("EmulatedLatencyUSec=" STRINGIFY(DEBUG_REFUSAL_LATENCY_USEC) "\n"),
                                       .files = &policy, .n_files = 1 });
        c = tsmd_connect(&t);
        ctx = open_context(c, NULL);
        attach(c, ctx, 1, DEV1);
        seq = tsmd_audit_last_seq(&t);
        for (int bound = 0; bound < 2; bound++) {
                if (bound)
                        bind_device(c, ctx, 1); /* an exchange: the latency */
                for (int write = 0; write < 2; write++) {
                        uint64_t t0;
                        Msg m = {};

                        ASSERT_OK(emu_debug_build_request(guest_function_id(DEV1), EMU_VENDOR_ID_DEFAULT,
                                                          write ? EMU_DEBUG_OP_WRITE : EMU_DEBUG_OP_READ,
                                                          EMU_DEBUG_REG_SCRATCH_FIRST, write ? 0x5ec2e7 : 0, m.buf,
                                                          sizeof(m.buf), &m.len));
                        t0 = now_usec();
                        CALL_ERROR(c, G "GuestRequest",
                                   request_params(ctx, 1, write ? "debug-write" : "debug-read", &m, 4096),
                                   E_SCOPE_REFUSED, SCOPE_REFUSED);
                        if (now_usec() - t0 >= DEBUG_REFUSAL_LATENCY_USEC / 2)
                                TEST_FAIL("a debug request refused by the TSM took %.1f s, as an exchange would",
                                          (double) (now_usec() - t0) / USEC_PER_SEC);
                }
        }
        tsmd_expect_audit(&t, seq, "guest-request", E_SCOPE_REFUSED, 4);
        ASSERT_EQ(tsmd_audit_count_where(&t, seq, "\"scope\":\"debug-write\"", "guest-request", E_SCOPE_REFUSED), 2U);
        /* Unbound, the device has nothing to release (the refused write wrote nothing): the stop
         * waits for no exchange. */
        ASSERT_STREQ(JSTR(CALL_OK(c, G "Unbind", guest_vdev_params(ctx, 1)), "state"), "config_unlocked");
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* AttachDevice lists the scopes this tsmd serves: the emulated platform's debug scopes only with
 * EmulatedDebugScopes=yes, whatever the policy grants (it grants them here); with no, a VMM
 * that looks for them finds none, as its GuestRequest in one would be refused by the TSM. */
TEST(attach_lists_the_debug_scopes_only_where_the_emulated_tsm_serves_them) {
        for (int serve = 0; serve < 2; serve++) {
                const TsmdFile policy = {
                        "policy.conf", strf("[Client:tests]\nUsers=%u\nDevices=*\nScopes=info state-change debug-read "
                                            "debug-write\n", (unsigned) getuid()) };
                VarlinkClient *c;
                Tsmd t;

                tsmd_start(&t, &(TsmdOptions){ .config = strf(CONF_ZERO("EmulatedDebugScopes=%s\n"), serve ? "yes" : "no"),
                                               .files = &policy, .n_files = 1 });
                c = tsmd_connect(&t);
                expect_emulated_attach_full(attach(c, open_context(c, NULL), 1, DEV1), serve, true);
                varlink_client_free(c);
                tsmd_teardown(&t);
        }
}

TEST(disconnect_unbinds_and_releases) {
        Tsmd t;
        VarlinkClient *a;
        int64_t ca;
        unsigned baseline;

        tsmd_start_config(&t, CONF_MEMFD());
        baseline = tsmd_idle_fds(&t);
        a = tsmd_connect(&t);
        ca = open_context(a, NULL);
        open_context(a, NULL); /* a second, empty context */
        attach(a, ca, 5, DEV2);
        bind_device(a, ca, 5);
        ASSERT_EQ(guest_tdi_state(a, ca, 5, DEV2), TDISP_STATE_CONFIG_LOCKED);
        varlink_client_free(a);

        expect_next_guest_gets_it_unlocked(&t, DEV2);
        ASSERT_EQ(tsmd_wait_fds(&t, baseline, TSMD_WAIT_USEC), baseline);

        tsmd_teardown(&t);
}

TEST(no_leaks_over_many_sessions) {
        Tsmd t;
        unsigned baseline_fds;
        unsigned long rss_before, rss_after;

        /* Info level: debug logs a line per OpenContext here. */
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_MEMFD(), .log_level = "info" });
        /* Warm up allocator and caches first. */
        for (unsigned round = 0; round < 2; round++) {
                for (unsigned i = 0; i < 100; i++) {
                        VarlinkClient *c = tsmd_connect(&t);
                        int64_t ctx = open_context(c, NULL);
                        int fd;

                        attach(c, ctx, 1, (i & 1) ? DEV1 : DEV2);
                        bind_device(c, ctx, 1);
                        guest_tdi_state(c, ctx, 1, (i & 1) ? DEV1 : DEV2);
                        ASSERT_EQ(varlink_client_push_fd(c, open("/dev/zero", O_RDONLY | O_CLOEXEC)), 0);
                        CALL_ERROR(c, G "AdoptContext", "{\"fileDescriptor\":0}", E_GUEST("BadFileDescriptor"), NULL);
                        open_context(c, &fd);
                        ASSERT_NULL(adopt_context(c, fd, NULL, NULL));
                        if (i % 3 == 0)
                                CALL_OK(c, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx));
                        varlink_client_free(c);
                }
                if (round == 0) {
                        baseline_fds = tsmd_idle_fds(&t);
                        rss_before = tsmd_rss_kib(&t);
                }
        }
        ASSERT_EQ(tsmd_wait_fds(&t, baseline_fds, TSMD_WAIT_USEC), baseline_fds);
        rss_after = tsmd_rss_kib(&t);
        printf("# RSS %lu KiB after the warm-up, %lu KiB after 100 more sessions\n", rss_before, rss_after);
#if TSMD_SANITIZED
        /* ASan keeps freed memory in quarantine: RSS says nothing here (LeakSanitizer, at
         * tsmd's exit, does the checking instead). */
#else
        /* 100 more sessions after the warm-up may not grow tsmd by more than 512 KiB. */
        if (rss_after > rss_before + 512)
                TEST_FAIL("RSS grew from %lu to %lu KiB over 100 sessions", rss_before, rss_after);
#endif
        tsmd_teardown(&t);
}

/* ---- hot removal of emulated devices -------------------------------------------------------- */

TEST(watch_events_hot_removal) {
        Tsmd t;
        VarlinkClient *a, *c;
        AsyncCall gr, we;
        int64_t ctx;
        Msg m;

        tsmd_start_config(&t, CONF_ZERO("EmulatedLatencyUSec=2000000\n"));
        a = tsmd_connect(&t);
        ctx = open_context(a, NULL);
        attach(a, ctx, 1, DEV1);
        attach(a, ctx, 2, DEV2);
        bind_device(a, ctx, 2);

        /* A slow request to DEV2 in flight, and a subscription (replies leave in call order:
         * the subscription's come after the request's answer). */
        m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV2, NULL, 0);
        tsmd_call_async(a, G "GuestRequest", request_params(ctx, 2, "info", &m, 4096), 0, &gr);
        tsmd_call_async(a, G "WatchEvents", NULL, VARLINK_CALL_MORE, &we);
        tsmd_pump(a, 100 * USEC_PER_MSEC);
        ASSERT_EQ(gr.n, 0);

        /* DEV2 leaves the emulated platform. */
        uint64_t t0 = now_usec();
        ASSERT_TRUE(tsmd_reload(&t, CONF_EMU("/dev/zero", DEV1, "EmulatedLatencyUSec=2000000\n")));
        ASSERT_TRUE(tsmd_async_wait(a, &gr, 1, TSMD_WAIT_USEC));
        uint64_t took = now_usec() - t0;
        ASSERT_STREQ(gr.errors[0], E_GUEST("DeviceGone"));
        ASSERT_TRUE(json_matches(gr.params[0], "{\"pciAddress\":\"" DEV2 "\"}"));
        /* Failed because the device went, long before its 2 s latency would have run out. */
        ASSERT_LE(took, 1 * USEC_PER_SEC);

        ASSERT_TRUE(tsmd_async_wait(a, &we, 2, TSMD_WAIT_USEC));
        ASSERT_NULL(we.errors[0]);
        ASSERT_TRUE(json_matches(we.params[0], "{\"event\":null}"));
        ASSERT_NULL(we.errors[1]);
        json_object *ev;
        ASSERT_TRUE(json_object_object_get_ex(we.params[1], "event", &ev));
        ASSERT_TRUE(json_matches(ev, strf("{\"kind\":\"device-removed\",\"context\":%" PRIi64 ",\"vdeviceId\":2,"
                                          "\"pciAddress\":\"" DEV2 "\"}", ctx)));
        /* Nothing about DEV1, which stayed. */
        tsmd_pump(a, 200 * USEC_PER_MSEC);
        ASSERT_EQ(we.n, 2);
        ASSERT_FALSE(we.done);

        /* Nobody can attach what is gone. */
        c = tsmd_connect(&t);
        int64_t cc = open_context(c, NULL);
        CALL_ERROR(c, G "AttachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1,\"pciAddress\":\"" DEV2 "\"}", cc),
                   E_GUEST("NoSuchDevice"), "{\"pciAddress\":\"" DEV2 "\"}");

        /* Back on the next reload: attachable (once its old owner let go) and fresh. */
        varlink_client_free(a);
        async_call_done(&gr);
        async_call_done(&we);
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO("EmulatedLatencyUSec=2000000\n")));
        expect_guest_gets_it_unlocked(c, DEV2);

        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* Whether this kernel gives every process a pidfs inode of its own (Linux 6.9, 64-bit), which
 * tells tsmd which process a connection is when its pid cannot. */
static bool have_pidfs(void) {
        int fd = (int) syscall(SYS_pidfd_open, getpid(), 0);
        struct statfs sfs;
        bool ok = sizeof(long) >= sizeof(uint64_t) && fd >= 0 && fstatfs(fd, &sfs) >= 0 && sfs.f_type == 0x50494446;

        if (fd >= 0)
                close(fd);
        return ok;
}

/* Whether tsmd recorded a pid for the OpenContext of this test's uid (root): none for a peer in a
 * PID namespace it cannot see. */
static bool audit_has_pid_of_root(Tsmd *t) {
        _cleanup_(json_object_putp) json_object *records = tsmd_audit_query(t, "{\"fromSeq\":1,\"uid\":0,\"limit\":64}");
        bool found = false;

        for (size_t i = 0; i < json_object_array_length(records); i++) {
                json_object *rec = json_object_array_get_idx(records, i), *ev, *pid;

                if (!json_object_object_get_ex(rec, "event", &ev) || !streq(json_object_get_string(ev), "open-context"))
                        continue;
                found = found || (json_object_object_get_ex(rec, "pid", &pid) && pid);
        }
        return found;
}

/*
 * Whose device events a subscription gets: those of the process that subscribed, on any of its
 * connections, never those of another process of the same uid. With tsmd in a PID namespace of
 * its own (in a container), every client is pid 0 to it: the test's two connections are then
 * one process only as far as pidfs tells (else only each connection's own events reach it),
 * and the two helper processes of uid 65534 are never one.
 */
static void run_watch_events_routing(bool pid_namespace) {
        AsyncCall we_o = {}, we_s = {}, we_a = {}, we_w = {};
        VarlinkClient *o, *s, *a, *w;
        bool same_process_known;
        int64_t ctx_o, ctx_a;
        json_object *ev;
        Tsmd t;

        if (!tsmd_can_switch_uid())
                SKIP("a second process of another uid%s needs root", pid_namespace ? ", and a PID namespace," : "");
        tsmd_start(&t, &(TsmdOptions){ .config = CONF_ZERO(""), .pid_namespace = pid_namespace });
        same_process_known = !pid_namespace || have_pidfs();

        /* This process: a context on o, which also subscribes, and a subscription on s. */
        o = tsmd_connect(&t);
        ctx_o = open_context(o, NULL);
        attach(o, ctx_o, 1, DEV1);
        s = tsmd_connect(&t);
        /* Two processes of uid 65534: a context on a, which also subscribes; w subscribes. */
        a = tsmd_connect_as(&t, NOBODY, NOBODY);
        ctx_a = open_context(a, NULL);
        attach(a, ctx_a, 1, DEV2);
        w = tsmd_connect_as(&t, NOBODY, NOBODY);
        ASSERT_EQ(audit_has_pid_of_root(&t), !pid_namespace);

        tsmd_call_async(o, G "WatchEvents", NULL, VARLINK_CALL_MORE, &we_o);
        tsmd_call_async(s, G "WatchEvents", NULL, VARLINK_CALL_MORE, &we_s);
        tsmd_call_async(a, G "WatchEvents", NULL, VARLINK_CALL_MORE, &we_a);
        tsmd_call_async(w, G "WatchEvents", NULL, VARLINK_CALL_MORE, &we_w);
        ASSERT_TRUE(tsmd_async_wait(o, &we_o, 1, TSMD_WAIT_USEC));
        ASSERT_TRUE(tsmd_async_wait(s, &we_s, 1, TSMD_WAIT_USEC));
        ASSERT_TRUE(tsmd_async_wait(a, &we_a, 1, TSMD_WAIT_USEC));
        ASSERT_TRUE(tsmd_async_wait(w, &we_w, 1, TSMD_WAIT_USEC));

        /* Both devices leave the platform: each owner's own connection hears of its device... */
        ASSERT_TRUE(tsmd_reload(&t, CONF_EMU("/dev/zero", DEV3, "")));
        ASSERT_TRUE(tsmd_async_wait(o, &we_o, 2, TSMD_WAIT_USEC));
        ASSERT_TRUE(json_object_object_get_ex(we_o.params[1], "event", &ev));
        ASSERT_TRUE(json_matches(ev, strf("{\"kind\":\"device-removed\",\"context\":%" PRIi64 ",\"vdeviceId\":1,"
                                          "\"pciAddress\":\"" DEV1 "\"}", ctx_o)));
        ASSERT_TRUE(tsmd_async_wait(a, &we_a, 2, TSMD_WAIT_USEC));
        ASSERT_TRUE(json_object_object_get_ex(we_a.params[1], "event", &ev));
        ASSERT_TRUE(json_matches(ev, strf("{\"kind\":\"device-removed\",\"context\":%" PRIi64 ",\"vdeviceId\":1,"
                                          "\"pciAddress\":\"" DEV2 "\"}", ctx_a)));

        /* ...the owner's other connection too where tsmd can tell it is the same process... */
        tsmd_pump(s, 200 * USEC_PER_MSEC);
        ASSERT_EQ(we_s.n, same_process_known ? 2U : 1U);
        if (same_process_known) {
                ASSERT_TRUE(json_object_object_get_ex(we_s.params[1], "event", &ev));
                ASSERT_TRUE(json_matches(ev, strf("{\"kind\":\"device-removed\",\"context\":%" PRIi64 ",\"vdeviceId\":1,"
                                                  "\"pciAddress\":\"" DEV1 "\"}", ctx_o)));
        }
        /* ...and another process of the same uid never. */
        tsmd_pump(w, 200 * USEC_PER_MSEC);
        if (we_w.n != 1)
                TEST_FAIL("another process of the owner's uid got %s", json_object_to_json_string(we_w.params[1]));

        async_call_done(&we_o);
        async_call_done(&we_s);
        async_call_done(&we_a);
        async_call_done(&we_w);
        varlink_client_free(o);
        varlink_client_free(s);
        varlink_client_free(a);
        varlink_client_free(w);
        tsmd_teardown(&t);
}

TEST(watch_events_reach_the_owning_process_only) {
        run_watch_events_routing(false);
}

TEST(watch_events_with_peers_in_a_pid_namespace_tsmd_cannot_see) {
        run_watch_events_routing(true);
}

TEST(requests_on_removed_device_fail_device_gone) {
        Tsmd t;
        VarlinkClient *a;
        int64_t ctx;
        Msg m;

        tsmd_start_config(&t, CONF_ZERO());
        a = tsmd_connect(&t);
        ctx = open_context(a, NULL);
        attach(a, ctx, 1, DEV1);
        attach(a, ctx, 2, DEV2);
        bind_device(a, ctx, 2);

        ASSERT_TRUE(tsmd_reload(&t, CONF_EMU("/dev/zero", DEV1, "")));

        const char *gone = "{\"pciAddress\":\"" DEV2 "\"}";
        m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV2, NULL, 0);
        CALL_ERROR(a, G "GuestRequest", request_params(ctx, 2, "info", &m, 4096), E_GUEST("DeviceGone"), gone);
        CALL_ERROR(a, G "GetDeviceState", guest_vdev_params(ctx, 2), E_GUEST("DeviceGone"), gone);
        CALL_ERROR(a, G "Bind", guest_vdev_params(ctx, 2), E_GUEST("DeviceGone"), gone);
        CALL_ERROR(a, G "Unbind", guest_vdev_params(ctx, 2), E_GUEST("DeviceGone"), gone);
        /* The device that stayed is unaffected. */
        bind_device(a, ctx, 1);
        ASSERT_EQ(guest_tdi_state(a, ctx, 1, DEV1), TDISP_STATE_CONFIG_LOCKED);
        /* The stale vDevice can be detached, and its id reused. */
        CALL_OK(a, G "DetachDevice", guest_vdev_params(ctx, 2));
        CALL_ERROR(a, G "GetDeviceState", guest_vdev_params(ctx, 2), E_GUEST("NoSuchVDevice"), NULL);

        /* Re-added: the same client attaches it again, as a fresh device. */
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO()));
        attach(a, ctx, 2, DEV2);
        ASSERT_STREQ(state_of(a, ctx, 2, NULL), "config_unlocked");
        bind_device(a, ctx, 2);

        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* A device removed while its Bind is on its way (an SPDM exchange, 2 s here: a reload under load
 * takes its time): the Bind
 * answers DeviceGone, whatever the TSM said, as the vDevice holds no TDI now; and bound it is
 * not. */
/* tsmd whose emulated devices take latency (a tsmd.conf value) to answer, and a client of it
 * (*ret) whose Bind of address as vDevice vdev, in the context returned, is on its way (bind). */
static int64_t bind_on_its_way(Tsmd *t, const char *latency, int64_t vdev, const char *address, VarlinkClient **ret,
                               AsyncCall *bind) {
        int64_t ctx;

        tsmd_start_config(t, strf("%sEmulatedLatencyUSec=%s\n", CONF_ZERO(""), latency));
        *ret = tsmd_connect(t);
        ctx = open_context(*ret, NULL);
        attach(*ret, ctx, vdev, address);
        tsmd_call_async(*ret, G "Bind", guest_vdev_params(ctx, vdev), 0, bind);
        return ctx;
}

TEST(bind_of_a_device_removed_on_its_way_is_device_gone) {
        AsyncCall bind = {};
        Tsmd t;
        VarlinkClient *a;
        int64_t ctx;

        ctx = bind_on_its_way(&t, "2000000", 2, DEV2, &a, &bind);
        tsmd_pump(a, 20 * USEC_PER_MSEC);
        ASSERT_TRUE(tsmd_reload(&t, CONF_EMU("/dev/zero", DEV1, "EmulatedLatencyUSec=2000000\n")));
        ASSERT_TRUE(tsmd_async_wait(a, &bind, 1, TSMD_WAIT_USEC));
        if (!bind.errors[0] || !streq(bind.errors[0], E_GUEST("DeviceGone")) ||
            !json_matches(bind.params[0], "{\"pciAddress\":\"" DEV2 "\"}"))
                TEST_FAIL("Bind of a device removed on its way: %s %s", bind.errors[0] ?: "answered",
                          json_object_to_json_string(bind.params[0]));
        async_call_done(&bind);
        CALL_ERROR(a, G "GetDeviceState", guest_vdev_params(ctx, 2), E_GUEST("DeviceGone"), NULL);
        CALL_OK(a, G "DetachDevice", guest_vdev_params(ctx, 2));

        varlink_client_free(a);
        tsmd_teardown(&t);
}

/*
 * Guest requests beyond what the monitor holds for one client (an eighth of
 * TSM_PRIV_REQUESTS_MAX: 32) wait in the worker. A DetachDevice or CloseContext must take those
 * of its vDevice (or context) with it, answered DeviceGone as the monitor's own are: sent after
 * the detach, they named a vDevice the monitor no longer had (it took that for a compromised
 * worker and killed it, and every VMM with it), or, the id attached again meanwhile, ran on the
 * other device with the old one's policy check, reply and record.
 */
#define HANG_DEV "0000:10:00.0"
#define QUEUED_REQUESTS 34 /* 32 held by the monitor, 2 waiting in the worker */
#define QUEUED_TIMEOUT "3000000"
#define QUEUED_TIMEOUT_USEC (3 * USEC_PER_SEC)

typedef enum { GOING_DETACH, GOING_DETACH_REATTACH, GOING_CLOSE } Going;

static void queued_requests_round(Going going) {
        static AsyncCall calls[QUEUED_REQUESTS], after[2];
        Tsmd t;
        VarlinkClient *c;
        int64_t ctx, seq;
        pid_t worker;
        Msg m = tdisp_msg(TDISP_MSG_GET_VERSION, HANG_DEV, NULL, 0);
        const char *hang = "\"pciAddress\":\"" HANG_DEV "\"";
        size_t n_after = 0;

        tsmd_start_config(&t, CONF_EMU("/dev/zero", DEV2 "," HANG_DEV, "RequestTimeoutUSec=" QUEUED_TIMEOUT "\n"));
        worker = tsmd_worker_pid(&t);
        ASSERT_TRUE(worker > 0);
        c = tsmd_connect(&t);
        ctx = open_context(c, NULL);
        attach(c, ctx, 1, HANG_DEV);
        /* Bound, then hanging: a device that never answers never binds either. */
        bind_device(c, ctx, 1);
        ASSERT_TRUE(tsmd_reload(&t, CONF_EMU("/dev/zero", DEV2 "," HANG_DEV ":fault=timeout",
                                             "RequestTimeoutUSec=" QUEUED_TIMEOUT "\n")));
        seq = tsmd_audit_last_seq(&t);

        for (size_t i = 0; i < QUEUED_REQUESTS; i++)
                tsmd_call_async(c, G "GuestRequest", request_params(ctx, 1, "info", &m, 4096), 0, &calls[i]);
        tsmd_pump(c, 200 * USEC_PER_MSEC); /* all read: the monitor holds 32, the worker the rest */
        for (size_t i = 0; i < QUEUED_REQUESTS; i++)
                ASSERT_EQ(calls[i].n, 0U);
        if (going == GOING_CLOSE)
                tsmd_call_async(c, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx), 0, &after[n_after++]);
        else
                tsmd_call_async(c, G "DetachDevice", guest_vdev_params(ctx, 1), 0, &after[n_after++]);
        /* Right behind it, before the answers of the monitor's failed ones free its room. */
        if (going == GOING_DETACH_REATTACH)
                tsmd_call_async(c, G "AttachDevice", guest_attach_params(ctx, 1, DEV2), 0, &after[n_after++]);

        /* Every request fails DeviceGone, at once (not at its timeout), in order. */
        for (size_t i = 0; i < QUEUED_REQUESTS; i++) {
                if (!tsmd_async_wait(c, &calls[i], 1, QUEUED_TIMEOUT_USEC / 2))
                        TEST_FAIL("request %zu not answered at the detach", i);
                if (!calls[i].errors[0] || !streq(calls[i].errors[0], E_GUEST("DeviceGone")))
                        TEST_FAIL("request %zu: %s", i, calls[i].errors[0] ?: "answered ok");
                ASSERT_TRUE(json_matches(calls[i].params[0], "{" "\"pciAddress\":\"" HANG_DEV "\"}"));
        }
        for (size_t i = 0; i < n_after; i++) {
                ASSERT_TRUE(tsmd_async_wait(c, &after[i], 1, TSMD_WAIT_USEC));
                if (after[i].errors[0])
                        TEST_FAIL("call %zu after the requests: %s", i, after[i].errors[0]);
        }
        /* The same worker: the monitor saw nothing amiss. */
        ASSERT_TRUE(tsmd_is_running(&t));
        ASSERT_EQ(tsmd_worker_pid(&t), worker);
        ASSERT_FALSE(tsmd_log_contains(&t, "not attached to the context"));
        ASSERT_FALSE(tsmd_log_contains(&t, "unknown context"));

        /* Each on record as it was answered, on the device it was checked against. */
        tsmd_expect_audit(&t, seq, "guest-request", E_GUEST("DeviceGone"), QUEUED_REQUESTS);
        ASSERT_EQ(tsmd_audit_count_where(&t, seq, hang, "guest-request", E_GUEST("DeviceGone")),
                  (size_t) QUEUED_REQUESTS);
        ASSERT_EQ(tsmd_audit_count(&t, seq, "guest-request", "ok"), 0U);
        tsmd_expect_audit(&t, seq, going == GOING_CLOSE ? "close-context" : "detach", "ok", 1);

        if (going == GOING_DETACH_REATTACH) {
                /* The new attachment works, and only what is sent to it runs there. */
                Msg m2 = tdisp_msg(TDISP_MSG_GET_VERSION, DEV2, NULL, 0);

                bind_device(c, ctx, 1);
                CALL_OK(c, G "GuestRequest", request_params(ctx, 1, "info", &m2, 4096));
                tsmd_expect_audit(&t, seq, "guest-request", "ok", 1);
                ASSERT_EQ(tsmd_audit_count_where(&t, seq, hang, "guest-request", "ok"), 0U);
        }
        /* Nothing is still due: past the timeout, no answer and no record more. */
        tsmd_pump(c, QUEUED_TIMEOUT_USEC + 500 * USEC_PER_MSEC);
        ASSERT_EQ(tsmd_audit_count(&t, seq, "guest-request", E_GUEST("Timeout")), 0U);
        ASSERT_EQ(tsmd_worker_pid(&t), worker);
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);

        for (size_t i = 0; i < QUEUED_REQUESTS; i++)
                async_call_done(&calls[i]);
        for (size_t i = 0; i < n_after; i++)
                async_call_done(&after[i]);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

TEST(detach_fails_requests_queued_in_tsmd) {
        queued_requests_round(GOING_DETACH);
}

TEST(detach_and_reattach_fails_requests_queued_in_tsmd) {
        queued_requests_round(GOING_DETACH_REATTACH);
}

TEST(close_context_fails_requests_queued_in_tsmd) {
        queued_requests_round(GOING_CLOSE);
}

/*
 * A Bind or Unbind pipelined behind more guest requests of its vDevice than the monitor holds
 * for one client: the device gets the calls in the order they were made, so each request runs
 * in the state it was sent in, and one sent after the change in the state the change left (before
 * a Bind and after an Unbind, refused: the TDI is not bound).
 * (The change went to the monitor at once, past the requests tsmd queued, and those ran in the
 * state it produced, their answers still in order.)
 */
#define PIPELINED_REQUESTS 40 /* 32 held by the monitor, 8 waiting in the worker */

/* The TDI state a GET_DEVICE_INTERFACE_STATE answered with, from its async reply. */
static uint8_t async_tdi_state(const AsyncCall *a, size_t i) {
        _cleanup_free_ uint8_t *r = NULL;
        size_t len;

        if (a->errors[0])
                TEST_FAIL("request %zu: %s", i, a->errors[0]);
        r = unb64(JSTR(a->params[0], "response"), &len);
        ASSERT_EQ(len, sizeof(TdispDeviceInterfaceStateResponse));
        ASSERT_EQ(r[1], TDISP_MSG_DEVICE_INTERFACE_STATE);
        return r[sizeof(TdispHeader)];
}

/* tsmd with a 10 ms emulated latency, and a client with DEV1 attached as vDevice 1 of a new context. */
static VarlinkClient *start_slow_with_dev1(Tsmd *t, pid_t *ret_worker, int64_t *ret_ctx) {
        VarlinkClient *c;

        tsmd_start_config(t, CONF_ZERO("EmulatedLatencyUSec=10000\n"));
        *ret_worker = tsmd_worker_pid(t);
        c = tsmd_connect(t);
        *ret_ctx = open_context(c, NULL);
        attach(c, *ret_ctx, 1, DEV1);
        return c;
}

/* Sends PIPELINED_REQUESTS guest requests m on vDevice 1 of ctx, answers not waited for. */
static void queue_requests(VarlinkClient *c, int64_t ctx, const Msg *m, AsyncCall calls[]) {
        for (size_t i = 0; i < PIPELINED_REQUESTS; i++)
                tsmd_call_async(c, G "GuestRequest", request_params(ctx, 1, "info", m, 4096), 0, &calls[i]);
}

/* Frees the queued requests and the call sent behind them. */
static void queued_calls_done(AsyncCall calls[], AsyncCall *behind) {
        for (size_t i = 0; i < PIPELINED_REQUESTS; i++)
                async_call_done(&calls[i]);
        async_call_done(behind);
}

/* A request answered DeviceNotBound, the emulated TSM's (and the kernel's) answer for a TDI not
 * bound. */
static void expect_not_bound(const AsyncCall *a, size_t i) {
        if (!a->errors[0] || !streq(a->errors[0], E_GUEST("BackendError")) ||
            !json_matches(a->params[0], "{\"name\":\"DeviceNotBound\",\"errno\":6}"))
                TEST_FAIL("request %zu: %s, not DeviceNotBound", i, a->errors[0] ?: "answered");
}

static void change_behind_queued_requests(bool bind) {
        static AsyncCall calls[PIPELINED_REQUESTS], change, last;
        Msg m = tdisp_msg(TDISP_MSG_GET_DEVICE_INTERFACE_STATE, DEV1, NULL, 0);
        Tsmd t;
        VarlinkClient *c;
        int64_t ctx;
        pid_t worker;

        c = start_slow_with_dev1(&t, &worker, &ctx);
        /* Bound for an Unbind to change something; for a Bind to change the TDI state it must
         * not be (a Bind of a bound TDI changes nothing, as the kernel's pci_tsm_bind()), and
         * the requests before it are refused: not bound. */
        if (!bind)
                bind_device(c, ctx, 1);

        queue_requests(c, ctx, &m, calls);
        tsmd_call_async(c, bind ? G "Bind" : G "Unbind", guest_vdev_params(ctx, 1), 0, &change);
        tsmd_call_async(c, G "GuestRequest", request_params(ctx, 1, "info", &m, 4096), 0, &last);

        for (size_t i = 0; i < PIPELINED_REQUESTS; i++) {
                ASSERT_TRUE(tsmd_async_wait(c, &calls[i], 1, TSMD_WAIT_USEC));
                if (bind)
                        expect_not_bound(&calls[i], i);
                else if (async_tdi_state(&calls[i], i) != TDISP_STATE_CONFIG_LOCKED)
                        TEST_FAIL("request %zu, sent before the Unbind, ran after it", i);
        }
        ASSERT_TRUE(tsmd_async_wait(c, &change, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(change.errors[0]);
        ASSERT_STREQ(JSTR(change.params[0], "state"), bind ? "config_locked" : "config_unlocked");
        ASSERT_TRUE(tsmd_async_wait(c, &last, 1, TSMD_WAIT_USEC));
        if (bind)
                ASSERT_EQ(async_tdi_state(&last, PIPELINED_REQUESTS), TDISP_STATE_CONFIG_LOCKED);
        else
                expect_not_bound(&last, PIPELINED_REQUESTS); /* unbound, as a kernel TSM has it */
        ASSERT_EQ(tsmd_worker_pid(&t), worker);

        queued_calls_done(calls, &change);
        async_call_done(&last);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

TEST(bind_waits_for_requests_queued_in_tsmd) {
        change_behind_queued_requests(true);
}

TEST(unbind_waits_for_requests_queued_in_tsmd) {
        change_behind_queued_requests(false);
}

/* The client hangs up while its second Bind waits in tsmd behind its requests: that Bind never
 * goes (the monitor logs a Bind that went, one of a bound TDI too), the release unbinds what the
 * first bound, and the next guest gets the device unlocked. */
TEST(hangup_while_a_bind_waits_behind_queued_requests) {
        static AsyncCall calls[PIPELINED_REQUESTS], change;
        Msg m = tdisp_msg(TDISP_MSG_GET_DEVICE_INTERFACE_STATE, DEV1, NULL, 0);
        Tsmd t;
        VarlinkClient *c;
        int64_t ctx;
        pid_t worker;

        c = start_slow_with_dev1(&t, &worker, &ctx);
        bind_device(c, ctx, 1);
        queue_requests(c, ctx, &m, calls);
        tsmd_call_async(c, G "Bind", guest_vdev_params(ctx, 1), 0, &change);
        /* The first answer: tsmd read the calls sent with it, and the Bind waits (for 300 ms). */
        ASSERT_TRUE(tsmd_async_wait(c, &calls[0], 1, TSMD_WAIT_USEC));
        ASSERT_EQ(change.n, 0U);
        queued_calls_done(calls, &change);
        varlink_client_free(c);

        /* Attached once the release is done: the monitor logged any bind or unbind by then. */
        expect_next_guest_gets_it_unlocked(&t, DEV1);
        ASSERT_EQ(tsmd_log_count(&t, "Bound " DEV1 " (vDevice 1 of context 1)"), 1U); /* the first only */
        ASSERT_TRUE(tsmd_log_contains(&t, "Bound " DEV1 " (vDevice 1 of context 2)"));
        ASSERT_EQ(tsmd_worker_pid(&t), worker);
        ASSERT_FALSE(tsmd_log_contains(&t, "Compromised worker"));
        tsmd_teardown(&t);
}

/* A bound vDevice detached with guest requests of it waiting in tsmd: those fail, and its
 * release's unbind, which waited behind them, goes before the detach (after it, it would name
 * a vDevice the monitor no longer has: a violation). */
TEST(detach_of_a_bound_vdevice_with_requests_queued_in_tsmd) {
        static AsyncCall calls[PIPELINED_REQUESTS], detach;
        Msg m = tdisp_msg(TDISP_MSG_GET_DEVICE_INTERFACE_STATE, DEV1, NULL, 0);
        size_t n_gone = 0;
        Tsmd t;
        VarlinkClient *c;
        int64_t ctx, seq;
        pid_t worker;

        c = start_slow_with_dev1(&t, &worker, &ctx);
        bind_device(c, ctx, 1);
        seq = tsmd_audit_last_seq(&t);
        queue_requests(c, ctx, &m, calls);
        tsmd_call_async(c, G "DetachDevice", guest_vdev_params(ctx, 1), 0, &detach);

        for (size_t i = 0; i < PIPELINED_REQUESTS; i++) {
                ASSERT_TRUE(tsmd_async_wait(c, &calls[i], 1, TSMD_WAIT_USEC));
                if (!calls[i].errors[0])
                        ASSERT_EQ(async_tdi_state(&calls[i], i), TDISP_STATE_CONFIG_LOCKED);
                else if (streq(calls[i].errors[0], E_GUEST("DeviceGone")))
                        n_gone++;
                else
                        TEST_FAIL("request %zu: %s", i, calls[i].errors[0]);
        }
        ASSERT_GE(n_gone, (size_t) PIPELINED_REQUESTS - 32);
        ASSERT_TRUE(tsmd_async_wait(c, &detach, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(detach.errors[0]);

        expect_next_guest_gets_it_unlocked(&t, DEV1);
        tsmd_expect_audit(&t, seq, "release", "ok", 1);
        ASSERT_EQ(tsmd_worker_pid(&t), worker);
        ASSERT_FALSE(tsmd_log_contains(&t, "Compromised worker"));

        queued_calls_done(calls, &detach);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* A call on vDevice 1 of ctx with a GetDeviceState pipelined behind it, which must tell state
 * and bound. */
static void expect_state_after(VarlinkClient *c, int64_t ctx, const char *method, const char *params,
                               const char *state, bool bound) {
        AsyncCall call, st;

        tsmd_call_async(c, method, params, 0, &call);
        tsmd_call_async(c, G "GetDeviceState", guest_vdev_params(ctx, 1), 0, &st);
        ASSERT_TRUE(tsmd_async_wait(c, &call, 1, TSMD_WAIT_USEC));
        if (call.errors[0])
                TEST_FAIL("%s: %s", method, call.errors[0]);
        ASSERT_TRUE(tsmd_async_wait(c, &st, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(st.errors[0]);
        if (!streq(JSTR(st.params[0], "state"), state) || JBOOL(st.params[0], "bound") != bound)
                TEST_FAIL("GetDeviceState after %s: %s", method, json_object_to_json_string(st.params[0]));
        async_call_done(&call);
        async_call_done(&st);
}

/* GetDeviceState pipelined behind calls of its vDevice tells the state they left, as if called
 * after their answers; one whose vDevice a DetachDevice after it took answers as a call after. */
TEST(get_device_state_answers_after_the_calls_before_it) {
        uint8_t zero_nonce[TDISP_NONCE_SIZE] = {};
        Msg start = tdisp_msg(TDISP_MSG_START_INTERFACE_REQ, DEV1, zero_nonce, sizeof(zero_nonce));
        Msg get = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0);
        AsyncCall gr, st, detach;
        Tsmd t;
        VarlinkClient *c;
        int64_t ctx;

        tsmd_start_config(&t, CONF_ZERO("EmulatedLatencyUSec=100000\n"));
        c = tsmd_connect(&t);
        ctx = open_context(c, NULL);
        attach(c, ctx, 1, DEV1);

        expect_state_after(c, ctx, G "Bind", guest_vdev_params(ctx, 1), "config_locked", true);
        expect_state_after(c, ctx, G "GuestRequest", request_params(ctx, 1, "state-change", &start, 4096), "run", true);
        expect_state_after(c, ctx, G "Unbind", guest_vdev_params(ctx, 1), "config_unlocked", false);
        /* Bound again: the request below reaches the device, and takes its time. */
        expect_state_after(c, ctx, G "Bind", guest_vdev_params(ctx, 1), "config_locked", true);

        tsmd_call_async(c, G "GuestRequest", request_params(ctx, 1, "info", &get, 4096), 0, &gr);
        tsmd_call_async(c, G "GetDeviceState", guest_vdev_params(ctx, 1), 0, &st);
        tsmd_call_async(c, G "DetachDevice", guest_vdev_params(ctx, 1), 0, &detach);
        ASSERT_TRUE(tsmd_async_wait(c, &gr, 1, TSMD_WAIT_USEC));
        ASSERT_STREQ(gr.errors[0], E_GUEST("DeviceGone"));
        ASSERT_TRUE(tsmd_async_wait(c, &st, 1, TSMD_WAIT_USEC));
        ASSERT_STREQ(st.errors[0], E_GUEST("NoSuchVDevice"));
        ASSERT_TRUE(tsmd_async_wait(c, &detach, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(detach.errors[0]);
        async_call_done(&gr);
        async_call_done(&st);
        async_call_done(&detach);

        varlink_client_free(c);
        tsmd_teardown(&t);
}

TEST(reload_without_emulated_devices_restores_default_set) {
        Tsmd t;
        VarlinkClient *a;
        int64_t ctx;

        /* Only DEV1 at first; the default set is DEV1 and DEV2 (EMU_CONFIG_DEFAULT). */
        tsmd_start_config(&t, CONF_EMU("/dev/zero", DEV1, ""));
        a = tsmd_connect(&t);
        ctx = open_context(a, NULL);
        CALL_ERROR(a, G "AttachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":2,\"pciAddress\":\"" DEV2 "\"}", ctx),
                   E_GUEST("NoSuchDevice"), NULL);

        /* The key removed: what tsmd would serve if it started with this file. */
        ASSERT_TRUE(tsmd_reload(&t, "[Platform]\nMode=emulated\nIommuDevice=/dev/zero\n"));
        /* Unsetting EmulatedDevices= on reload means what it means at start: the default set. */
        ASSERT_FALSE(tsmd_log_contains(&t, "Failed to apply the emulated device list"));
        attach(a, ctx, 2, DEV2);

        varlink_client_free(a);
        tsmd_teardown(&t);
}

/*
 * A vDevice whose device went away is dead for good (every call on it says DeviceGone). When
 * a device with the same address comes back, another client must be able to attach it: the
 * dead vDevice no longer stands for a physical device anyone holds.
 */
TEST(gone_vdevice_does_not_block_readded_device) {
        Tsmd t;
        VarlinkClient *a, *b;
        int64_t ca, cb;

        tsmd_start_config(&t, CONF_ZERO());
        a = tsmd_connect(&t);
        b = tsmd_connect(&t);
        ca = open_context(a, NULL);
        cb = open_context(b, NULL);
        attach(a, ca, 2, DEV2);
        bind_device(a, ca, 2);

        ASSERT_TRUE(tsmd_reload(&t, CONF_EMU("/dev/zero", DEV1, "")));
        CALL_ERROR(a, G "GetDeviceState", guest_vdev_params(ca, 2), E_GUEST("DeviceGone"), NULL);
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO()));
        /* A's vDevice stays dead even though the address is back. */
        CALL_ERROR(a, G "GetDeviceState", guest_vdev_params(ca, 2), E_GUEST("DeviceGone"), NULL);

        /* A dead vDevice does not hold the device that came back under its address. */
        attach(b, cb, 1, DEV2);
        bind_device(b, cb, 1);

        varlink_client_free(a);
        varlink_client_free(b);
        tsmd_teardown(&t);
}

/* Binding a bound vDevice answers its state, as the kernel's pci_tsm_bind() answers 0 for a
 * TDI bound already (a VMM that lost a Bind's answer may ask again), the emulated TSM too:
 * nothing is sent to the device, the guest's START still gets the first bind's nonce. A guest
 * cannot unlock or lock its TDI itself to change that. */
TEST(bind_twice_answers_the_state) {
        TdispLockInterfaceParams lock = { .flags = htole16(TDISP_LOCK_FLAG_NO_FW_UPDATE) };
        uint8_t zero_nonce[TDISP_NONCE_SIZE] = {};
        Tsmd t;
        VarlinkClient *a;
        int64_t ctx;
        Msg m, r;

        tsmd_start_config(&t, CONF_ZERO());
        a = tsmd_connect(&t);
        ctx = open_context(a, NULL);
        attach(a, ctx, 1, DEV1);
        bind_device(a, ctx, 1);
        bind_device(a, ctx, 1);
        m = tdisp_msg(TDISP_MSG_START_INTERFACE_REQ, DEV1, zero_nonce, sizeof(zero_nonce));
        r = guest_ok(a, ctx, 1, "state-change", &m, 1);
        ASSERT_EQ(r.buf[1], TDISP_MSG_START_INTERFACE_RSP);
        ASSERT_STREQ(JSTR(CALL_OK(a, G "Bind", guest_vdev_params(ctx, 1)), "state"), "run");

        /* Its guest can neither STOP the TDI nor LOCK it again with parameters of its own (the
         * host's, as on a kernel TSM): the Bind's lock stays, and a Bind still finds it bound. */
        attach(a, ctx, 2, DEV2);
        bind_device(a, ctx, 2);
        m = tdisp_msg(TDISP_MSG_STOP_INTERFACE_REQ, DEV2, NULL, 0);
        CALL_ERROR(a, G "GuestRequest", request_params(ctx, 2, "state-change", &m, 4096), E_SCOPE_REFUSED, SCOPE_REFUSED);
        m = tdisp_msg(TDISP_MSG_LOCK_INTERFACE_REQ, DEV2, &lock, sizeof(lock));
        CALL_ERROR(a, G "GuestRequest", request_params(ctx, 2, "state-change", &m, 4096), E_SCOPE_REFUSED, SCOPE_REFUSED);
        ASSERT_STREQ(JSTR(CALL_OK(a, G "Bind", guest_vdev_params(ctx, 2)), "state"), "config_locked");

        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* While a Bind waits for the device (an SPDM exchange, 1 s here: the calls behind it must be read
 * before it ends, also on a loaded machine), the vDevice is busy: a
 * second Bind, an Unbind and a DetachDevice of it, and a CloseContext of its context, answer
 * DeviceBusy, and the Bind, whose answer is due first, answers as if they had not come. */
TEST(calls_on_a_vdevice_whose_bind_is_on_its_way_are_busy) {
        static const char *const methods[] = { G "Bind", G "Unbind", G "DetachDevice", G "CloseContext" };
        AsyncCall bind = {}, busy[ELEMENTSOF(methods)] = {};
        Tsmd t;
        VarlinkClient *a;
        int64_t ctx;

        ctx = bind_on_its_way(&t, "1000000", 1, DEV1, &a, &bind);
        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                tsmd_call_async(a, methods[i],
                                streq(methods[i], G "CloseContext") ? strf("{\"context\":%" PRIi64 "}", ctx) :
                                                                       guest_vdev_params(ctx, 1),
                                0, &busy[i]);
        ASSERT_TRUE(tsmd_async_wait(a, &bind, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(bind.errors[0]);
        ASSERT_STREQ(JSTR(bind.params[0], "state"), "config_locked");
        for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                ASSERT_TRUE(tsmd_async_wait(a, &busy[i], 1, TSMD_WAIT_USEC));
                if (!busy[i].errors[0] || !streq(busy[i].errors[0], E_GUEST("DeviceBusy")) ||
                    !json_matches(busy[i].params[0], "{\"pciAddress\":\"" DEV1 "\"}"))
                        TEST_FAIL("%s during a Bind: %s, not DeviceBusy", methods[i], busy[i].errors[0] ?: "answered");
                async_call_done(&busy[i]);
        }
        async_call_done(&bind);

        /* Nothing of it went: the vDevice is there, bound, and its context too. */
        bool bound = false;
        ASSERT_STREQ(state_of(a, ctx, 1, &bound), "config_locked");
        ASSERT_TRUE(bound);

        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* A device's "state" as io.tsmd.Admin.ListDevices gives it (until the next call). */
static const char *listed_state(VarlinkClient *admin, const char *address) {
        json_object *devices;

        ASSERT_TRUE(json_object_object_get_ex(CALL_OK(admin, "io.tsmd.Admin.ListDevices", NULL), "devices", &devices));
        for (size_t i = 0; i < json_object_array_length(devices); i++) {
                json_object *d = json_object_array_get_idx(devices, i);

                if (streq(JSTR(d, "pciAddress"), address))
                        return JSTR(d, "state");
        }
        TEST_FAIL("%s not listed", address);
}

/* The administrator reads a TDI's state spelt as its VMM is told it (TdiState, both IDLs). */
TEST(list_devices_spells_the_state_as_the_guest_interface_does) {
        Tsmd t;
        VarlinkClient *a;
        int64_t ctx;

        tsmd_start_config(&t, CONF_ZERO());
        a = tsmd_connect(&t);
        ctx = open_context(a, NULL);
        attach(a, ctx, 1, DEV1);
        ASSERT_STREQ(listed_state(a, DEV1), "config_unlocked");
        bind_device(a, ctx, 1);
        ASSERT_STREQ(listed_state(a, DEV1), "config_locked");
        ASSERT_STREQ(JSTR(CALL_OK(a, G "GetDeviceState", guest_vdev_params(ctx, 1)), "state"), "config_locked");

        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* As a kernel TSM's guest request path answers ENXIO for a TDI not bound (pci_tsm_guest_req()),
 * a GuestRequest on an emulated vDevice its VMM never bound, or unbound, fails BackendError
 * DeviceNotBound (errno 6), the kernel's name for it, without reaching the device, and is
 * recorded as any failed request. A Bind sent before the request counts for it though not
 * answered yet, as on a kernel device's lane, where the calls run in the order they were made. */
TEST(guest_request_needs_a_bound_vdevice) {
        static const char not_bound[] = "{\"name\":\"DeviceNotBound\",\"errno\":6}";
        TdispLockInterfaceParams lock = { .flags = htole16(TDISP_LOCK_FLAG_NO_FW_UPDATE) };
        Msg version = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0), m;
        _cleanup_(json_object_putp) json_object *records = NULL;
        static AsyncCall calls[3];
        json_object *rec, *v;
        VarlinkClient *c;
        int64_t ctx, seq;
        Tsmd t;

        tsmd_start_config(&t, CONF_ZERO());
        c = tsmd_connect(&t);
        ctx = open_context(c, NULL);
        attach(c, ctx, 1, DEV1);
        seq = tsmd_audit_last_seq(&t);

        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 1, "info", &version, 4096), E_GUEST("BackendError"),
                   not_bound);
        m = tdisp_msg(TDISP_MSG_LOCK_INTERFACE_REQ, DEV1, &lock, sizeof(lock));
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 1, "state-change", &m, 4096), E_GUEST("BackendError"),
                   not_bound);
        ASSERT_STREQ(state_of(c, ctx, 1, NULL), "config_unlocked"); /* the device never saw the LOCK */
        tsmd_expect_audit(&t, seq, "guest-request", E_GUEST("BackendError"), 2);
        records = tsmd_audit_query(&t, strf("{\"fromSeq\":%" PRIi64 ",\"scope\":\"info\",\"limit\":1}", seq + 1));
        ASSERT_EQ(json_object_array_length(records), 1U);
        rec = json_object_array_get_idx(records, 0);
        ASSERT_STREQ(JSTR(rec, "event"), "guest-request");
        ASSERT_STREQ(JSTR(rec, "result"), E_GUEST("BackendError"));
        ASSERT_STREQ(JSTR(rec, "pci"), DEV1);
        ASSERT_STREQ(JSTR(rec, "backend"), "emulated");
        ASSERT_EQ(JINT(rec, "scopeNumber"), 0);
        ASSERT_EQ(JINT(rec, "requestSize"), (int64_t) version.len);
        ASSERT_TRUE(json_object_object_get_ex(rec, "responseSize", &v));
        ASSERT_NULL(v);

        bind_device(c, ctx, 1);
        ASSERT_EQ(guest_ok(c, ctx, 1, "info", &version, 0).buf[1], TDISP_MSG_VERSION);
        CALL_OK(c, G "Unbind", guest_vdev_params(ctx, 1));
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 1, "info", &version, 4096), E_GUEST("BackendError"),
                   not_bound);

        /* Sent together, none answered before the next is sent: a request before the Bind
         * fails, the one after it is served. */
        tsmd_call_async(c, G "GuestRequest", request_params(ctx, 1, "info", &version, 4096), 0, &calls[0]);
        tsmd_call_async(c, G "Bind", guest_vdev_params(ctx, 1), 0, &calls[1]);
        tsmd_call_async(c, G "GuestRequest", request_params(ctx, 1, "info", &version, 4096), 0, &calls[2]);
        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                ASSERT_TRUE(tsmd_async_wait(c, &calls[i], 1, TSMD_WAIT_USEC));
        ASSERT_STREQ(calls[0].errors[0], E_GUEST("BackendError"));
        ASSERT_TRUE(json_matches(calls[0].params[0], not_bound));
        ASSERT_NULL(calls[1].errors[0]);
        ASSERT_NULL(calls[2].errors[0]);
        tsmd_expect_audit(&t, seq, "guest-request", E_GUEST("BackendError"), 4);
        tsmd_expect_audit(&t, seq, "guest-request", "ok", 2);

        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                async_call_done(&calls[i]);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/*
 * WatchEvents never sends its final reply, and Varlink answers calls in order ("with
 * continues, the connection is busy until the final reply"), so a call made after it on the
 * same connection is not answered while the subscription lasts. Since handles are per
 * connection, a subscribed client cannot act on its own vDevices any more (see the report on
 * the io.tsmd.Guest design); this pins the behaviour so a change to it is deliberate.
 */
TEST(watch_events_keeps_connection_busy) {
        Tsmd t;
        VarlinkClient *a;
        AsyncCall we, st;
        int64_t ctx;

        tsmd_start_config(&t, CONF_ZERO());
        a = tsmd_connect(&t);
        ctx = open_context(a, NULL);
        attach(a, ctx, 2, DEV2);
        tsmd_call_async(a, G "WatchEvents", NULL, VARLINK_CALL_MORE, &we);
        ASSERT_TRUE(tsmd_async_wait(a, &we, 1, TSMD_WAIT_USEC));
        ASSERT_TRUE(json_matches(we.params[0], "{\"event\":null}"));

        tsmd_call_async(a, G "GetDeviceState", guest_vdev_params(ctx, 2), 0, &st);
        ASSERT_FALSE(tsmd_async_wait(a, &st, 1, 300 * USEC_PER_MSEC));

        /* Events still arrive on the subscription; the call stays unanswered. */
        ASSERT_TRUE(tsmd_reload(&t, CONF_EMU("/dev/zero", DEV1, "")));
        ASSERT_TRUE(tsmd_async_wait(a, &we, 2, TSMD_WAIT_USEC));
        ASSERT_EQ(st.n, 0);

        async_call_done(&we);
        async_call_done(&st);
        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* ---- shutdown ------------------------------------------------------------------------------ */

/* A call that acts is refused before it acts when its answer might not fit the caller's
 * MaxMessageSize= (or its fd MaxFdsPerMessage=): ReplyMayNotFit, recorded, nothing made. Before,
 * AttachDevice attached and answered ReplyTooLarge, and OpenContext made a context the caller
 * could not name (one it was counted for). With room enough, the same calls work. */
TEST(acting_call_refused_when_its_answer_may_not_fit) {
        static const TsmdFile policy = { "policy.conf", "[Client:tests]\nUsers=root\nDevices=*\n" };
        json_object *r = NULL;
        VarlinkClient *c, *big;
        int64_t seq, ctx;
        Tsmd t;

        tsmd_start(&t, &(TsmdOptions){ .config = CONF_ZERO("[Varlink]\nMaxMessageSize=512\n"),
                                       .files = &policy, .n_files = 1 });
        /* The administrator hears of it at once. */
        ASSERT_TRUE(tsmd_log_contains(&t, "MaxMessageSize=512 or MaxFdsPerMessage=253 cannot carry every answer of"));
        seq = tsmd_audit_last_seq(&t);
        c = tsmd_connect(&t);
        ctx = open_context(c, NULL); /* its answer fits 512 bytes */
        r = CALL_ERROR(c, G "AttachDevice",
                       strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1,\"pciAddress\":\"" DEV1 "\"}", ctx),
                       "io.tsmd.ReplyMayNotFit", "{\"limit\":\"MaxMessageSize\",\"max\":512}");
        ASSERT_TRUE(JINT(r, "needed") > 512);
        /* Nothing attached: the vDevice is unknown, the device free for another context. */
        CALL_ERROR(c, G "DetachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1}", ctx),
                   E_GUEST("NoSuchVDevice"), NULL);

        /* The limit for connections from now on (this one keeps its 512). */
        ASSERT_TRUE(tsmd_reload(&t, "[Varlink]\nMaxMessageSize=64K\n"));
        tsmd_expect_audit(&t, seq, "io.tsmd.Guest.AttachDevice", "io.tsmd.ReplyMayNotFit", 1);
        ASSERT_EQ(tsmd_audit_count(&t, seq, "attach", "ok"), 0U);
        big = tsmd_connect(&t);
        attach(big, open_context(big, NULL), 1, DEV1);
        varlink_client_free(big);
        ASSERT_EQ(tsmd_audit_count(&t, seq, "attach", "ok"), 1U);

        /* Below what OpenContext can answer (ReclaimRefused's reason alone takes 255 bytes). */
        ASSERT_TRUE(tsmd_reload(&t, "[Varlink]\nMaxMessageSize=256\n"));
        varlink_client_free(c);
        c = tsmd_connect(&t);
        CALL_ERROR(c, G "OpenContext", "{}", "io.tsmd.ReplyMayNotFit", "{\"limit\":\"MaxMessageSize\",\"max\":256}");
        /* No context made: handle 1 names none (asked by a call that only reads). */
        CALL_ERROR(c, G "GetDeviceState", "{\"context\":1,\"vdeviceId\":1}", E_GUEST("NoSuchContext"), NULL);
        varlink_client_free(c);

        /* No fd may go with an answer: OpenContext, whose answer carries the iommufd, is refused. */
        ASSERT_TRUE(tsmd_reload(&t, "[Varlink]\nMaxFdsPerMessage=0\n"));
        c = tsmd_connect(&t);
        CALL_ERROR(c, G "OpenContext", "{}", "io.tsmd.ReplyMayNotFit",
                   "{\"limit\":\"MaxFdsPerMessage\",\"needed\":1,\"max\":0}");
        CALL_ERROR(c, G "CloseContext", "{\"context\":1}", E_GUEST("NoSuchContext"), NULL);
        varlink_client_free(c);
        tsmd_expect_audit(&t, seq, "io.tsmd.Guest.OpenContext", "io.tsmd.ReplyMayNotFit", 2);
        ASSERT_EQ(tsmd_audit_count(&t, seq, "open-context", "ok"), 2U); /* the two with room */

        tsmd_expect_clean_exit(&t);
        tsmd_teardown(&t);
}

/* Reads what tsmd sent on fd until the end of the stream (10 s at most): NULs kept. */
static size_t raw_read_to_end(int fd, char *buf, size_t size) {
        size_t n = 0;

        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t k;

                ASSERT_EQ(poll(&p, 1, 10000), 1);
                k = recv(fd, buf + n, size - n, 0);
                if (k == 0 || (k < 0 && errno == ECONNRESET))
                        return n;
                ASSERT_TRUE(k > 0);
                n += (size_t) k;
                ASSERT_TRUE(n < size);
        }
}

/* A VMM past MaxConnectionsPerUid= learns why: tsmd answers the connection's first call with the
 * refusal by name, and only then does the VMM see the hang-up, whether the call was written
 * before tsmd closed the connection or after. The audit record names the refusal as before. */
TEST(connection_past_max_connections_per_uid_refused_by_name) {
        static const char call[] = "{\"method\":\"io.tsmd.Guest.CloseContext\",\"parameters\":{\"context\":5}}";
        static const char refusal[] = "{\"error\":\"" VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID "\",\"parameters\":{}}";
        VarlinkClient *c[2];
        char buf[256];
        int64_t seq;
        Tsmd t;

        tsmd_start_config(&t, CONF_ZERO("[Varlink]\nMaxConnectionsPerUid=2\n"));
        seq = tsmd_audit_last_seq(&t);
        for (unsigned i = 0; i < 2; i++) {
                c[i] = tsmd_connect_guest(&t);
                CALL_ERROR(c[i], G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
        }
        for (unsigned i = 0; i < 2; i++) {
                int fd = tsmd_raw_connect(t.guest_socket);

                ASSERT_TRUE(fd >= 0);
                if (i == 1) {
                        /* After: the call finds the connection closed already. */
                        struct pollfd p = { .fd = fd, .events = POLLRDHUP };

                        ASSERT_EQ(poll(&p, 1, 10000), 1);
                }
                (void) send(fd, call, sizeof(call), MSG_NOSIGNAL);
                ASSERT_EQ(raw_read_to_end(fd, buf, sizeof(buf)), sizeof(refusal));
                ASSERT_STREQ(buf, refusal);
                close(fd);
        }
        /* The two served go on. */
        for (unsigned i = 0; i < 2; i++) {
                CALL_ERROR(c[i], G "CloseContext", "{\"context\":5}", E_GUEST("NoSuchContext"), NULL);
                varlink_client_free(c[i]);
        }
        tsmd_expect_audit(&t, seq, "connection", VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID, 2);
        tsmd_teardown(&t);
}

/* A stop that waits for nothing is over within this (an ASan tsmd's exit on a loaded machine
 * included), well before the 10 s a stop gives its clients to finish. */
#define STOP_PROMPT_MAX_USEC (4 * USEC_PER_SEC)

TEST(sigterm_with_clients_connected) {
        Tsmd t;
        VarlinkClient *idle, *watcher, *busy, *other;
        AsyncCall we, gr, st;
        int64_t ctx;
        Msg m;

        tsmd_start_config(&t, CONF_ZERO("EmulatedLatencyUSec=1000000\n"));
        idle = tsmd_connect(&t);
        ping(idle);
        watcher = tsmd_connect(&t);
        open_context(watcher, NULL);
        tsmd_call_async(watcher, G "WatchEvents", NULL, VARLINK_CALL_MORE, &we);
        ASSERT_TRUE(tsmd_async_wait(watcher, &we, 1, TSMD_WAIT_USEC));
        busy = tsmd_connect_guest(&t);
        ctx = open_context(busy, NULL);
        attach(busy, ctx, 1, DEV1);
        bind_device(busy, ctx, 1);
        m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0);
        tsmd_call_async(busy, G "GuestRequest", request_params(ctx, 1, "info", &m, 4096), 0, &gr);
        other = tsmd_can_switch_uid() ? tsmd_connect_as(&t, NOBODY, NOBODY) : tsmd_connect_guest(&t);
        int64_t co = open_context(other, NULL);
        attach(other, co, 1, DEV2);
        tsmd_call_async(other, "io.tsmd.Service.GetStatus", NULL, VARLINK_CALL_MORE, &st);
        ASSERT_TRUE(tsmd_async_wait(other, &st, 1, TSMD_WAIT_USEC));
        tsmd_pump(busy, 100 * USEC_PER_MSEC);
        ASSERT_EQ(gr.n, 0);

        /* SIGTERM: no new clients, the request in flight still gets its answer... */
        uint64_t t0 = now_usec();
        tsmd_kill(&t, SIGTERM);
        /* The worker's line (the monitor logs its own first, then passes SIGTERM on). */
        ASSERT_TRUE(tsmd_wait_log(&t, "Received SIGTERM, finishing", 1, TSMD_WAIT_USEC));
        /* A client arriving now is not served (the listening socket stays, as systemd keeps
         * it anyway, but nothing accepts), and learns so when tsmd is gone. */
        VarlinkClient *late = tsmd_connect(&t);
        AsyncCall lp;
        tsmd_call_async(late, "io.tsmd.Service.Ping", NULL, 0, &lp);
        ASSERT_TRUE(tsmd_async_wait(busy, &gr, 1, TSMD_WAIT_USEC));
        if (gr.errors[0])
                TEST_FAIL("the request in flight at SIGTERM failed: %s %s", gr.errors[0],
                          json_object_to_json_string(gr.params[0]));
        ASSERT_TRUE(strlen(JSTR(gr.params[0], "response")) > 0);

        /* ...then tsmd exits with status 0 (bounded) and every client sees the hang-up. */
        tsmd_stop(&t);
        ASSERT_LE(now_usec() - t0, 1 * USEC_PER_SEC + STOP_PROMPT_MAX_USEC); /* the answer's 1 s, then */

        ASSERT_TRUE(tsmd_wait_hangup(idle, TSMD_WAIT_USEC));
        ASSERT_TRUE(tsmd_async_wait(watcher, &we, 2, TSMD_WAIT_USEC));
        ASSERT_STREQ(we.errors[1], VARLINK_ERROR_DISCONNECTED);
        ASSERT_TRUE(tsmd_async_wait(other, &st, st.n + 1, TSMD_WAIT_USEC));
        ASSERT_STREQ(st.errors[st.n - 1], VARLINK_ERROR_DISCONNECTED);
        ASSERT_TRUE(tsmd_wait_hangup(busy, TSMD_WAIT_USEC));
        ASSERT_TRUE(tsmd_async_wait(late, &lp, 1, TSMD_WAIT_USEC));
        ASSERT_STREQ(lp.errors[0], VARLINK_ERROR_DISCONNECTED);
        async_call_done(&lp);
        varlink_client_free(late);

        async_call_done(&we);
        async_call_done(&gr);
        async_call_done(&st);
        varlink_client_free(idle);
        varlink_client_free(watcher);
        varlink_client_free(busy);
        varlink_client_free(other);
        tsmd_teardown(&t);
}

TEST(sigterm_when_idle_exits_at_once) {
        Tsmd t;
        VarlinkClient *c;

        tsmd_start_config(&t, CONF_ZERO());
        c = tsmd_connect(&t);
        int64_t ctx = open_context(c, NULL);
        attach(c, ctx, 1, DEV1);
        bind_device(c, ctx, 1);
        uint64_t t0 = now_usec();
        tsmd_stop(&t);
        ASSERT_LE(now_usec() - t0, STOP_PROMPT_MAX_USEC);
        ASSERT_TRUE(tsmd_wait_hangup(c, TSMD_WAIT_USEC));
        varlink_client_free(c);
        tsmd_teardown(&t);
}

TEST_MAIN();
