/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Kernel-side discovery through the daemon ("TSM platform"): the real tsmd in Mode=kernel on
 * a fixture sysfs tree (--sysfs-root), inside private mount and network namespaces so the
 * fake udev events this test sends reach that tsmd and nothing on the host. Checks which
 * backend and TSM serve each device and with which scope numbers, hot removal (NoSuchDevice,
 * device-removed events), a TSM and a device appearing later, and that requests to kernel
 * backends fail with named errors on a kernel without the TSM ioctls.
 *
 * Runs in: tests; needs root (SKIPs otherwise).
 */

#include <sys/mount.h>
#include <sys/stat.h>

#include "backend.h"
#include "platform-test-util.h"
#include "sysfs-fixture.h"
#include "tsm-types.h"
#include "guest-calls.h"
#include "json-util.h"
#include "tsmd-fixture.h"
#include "uevent-sender.h"
#include "varlink-errors.h"

#define G "io.tsmd.Guest."
#define E_GUEST(name) "io.tsmd.Guest." name

/* two-tsms.sysfs */
#define NIC "/devices/pci0000:00/0000:00:01.1/0000:01:00.0"  /* connected to tsm0 (SEV-TIO) */
#define NIC_ADDR "0000:01:00.0"
#define GPU "/devices/pci0000:00/0000:00:02.1/0000:02:00.0"  /* connected to tsm1 (TDX Connect) */
#define GPU_ADDR "0000:02:00.0"
#define NVME_ADDR "0000:03:00.0"                               /* TDISP capable, not connected */
#define NIC_FN1_ADDR "0000:01:00.1"                            /* no tsm/: the NIC is its DSM */
#define TSM1 "/devices/faux/tdx_host/tsm/tsm1"
#define NEW_PORT "/devices/pci0000:00/0000:00:05.1"
#define NEW_DEV NEW_PORT "/0000:05:00.0"
#define NEW_ADDR "0000:05:00.0"
#define NEW_TSM "/devices/faux/devsec_link_tsm/tsm/tsm2"
/* devsec-sample.sysfs */
#define DEVSEC_FN0 "/devices/faux/devsec_bus/pci10000:00/10000:00:00.0/10000:01:00.0"
#define DEVSEC_ADDR "10000:01:00.0"

/* About discovery: the devices are attached without their VFIO device fds (test-kernel.c has
 * those). */
#define KERNEL_CONF "[Platform]\nMode=kernel\nIommuDevice=/dev/zero\n[Guest]\nRequireVfioFileDescriptor=no\n"

typedef struct Env {
        Tsmd tsmd;
        char root[128];
        uint64_t seqnum;
} Env;

/* Private namespaces, a fixture tree on a private tmpfs, and tsmd in kernel mode on it. */
static void setup(Env *e, const char *fixture, void (*edit)(const char *root)) {
        int r;

        *e = (Env) {};
        if (geteuid() != 0)
                SKIP("needs root (namespaces, a fixture bound over /sys)");
        if (!platform_test_udev_monitor_possible())
                SKIP("sd-device disables udev monitors without /run/udev/control or a devtmpfs /dev");
        /* Made (with its cleanup) before entering the namespaces, where the host's view of
         * the fixture directory is an empty directory that the cleanup can remove. */
        snprintf(e->root, sizeof(e->root), "%s/sysfs", scratch_dir());
        if (mkdir(e->root, 0755) < 0)
                TEST_FAIL("mkdir %s: %s", e->root, strerror(errno));
        platform_test_sandbox(true);
        /* SECURITY: fake uevents must never be sent in the host's network namespace. */
        ASSERT_TRUE(platform_test_netns_is_private());
        r = uevent_in_private_netns();
        ASSERT_OK(r);
        ASSERT_EQ(r, 1);

        /* Vanishes with the mount namespace; only the empty directory needs removing. */
        if (mount("tmpfs", e->root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
                TEST_FAIL("tmpfs on %s: %s", e->root, strerror(errno));
        r = sysfs_fixture_apply_file(e->root, strf("%s/%s.sysfs", PLATFORM_FIXTURE_DIR, fixture));
        if (r < 0)
                TEST_FAIL("building fixture %s: %s", fixture, strerror(-r));
        if (edit)
                edit(e->root);

        tsmd_start(&e->tsmd, &(TsmdOptions) { .config = KERNEL_CONF, .sysfs_root = e->root });
        /* Discovery ran before tsmd listened; the monitor too. */
        ASSERT_FALSE(tsmd_log_contains(&e->tsmd, "Cannot follow device hotplug"));
}

static void teardown(Env *e) {
        tsmd_teardown(&e->tsmd);
        (void) umount2(e->root, MNT_DETACH);
}

static void send_event(Env *e, const char *action, const char *devpath, const char *subsystem) {
        int r = uevent_send(action, devpath, subsystem, NULL, ++e->seqnum);

        if (r < 0)
                TEST_FAIL("uevent_send %s %s: %s", action, devpath, strerror(-r));
}

static int64_t open_context(VarlinkClient *c) {
        json_object *r = CALL_OK(c, G "OpenContext", NULL);
        int fd = varlink_client_take_fd(c, (size_t) JINT(r, "fileDescriptor"));
        struct stat st, zero;

        /* IommuDevice=/dev/zero: that is what comes back. */
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(fstat(fd, &st));
        ASSERT_OK(stat("/dev/zero", &zero));
        ASSERT_EQ(st.st_rdev, zero.st_rdev);
        close(fd);
        return JINT(r, "context");
}

/* Attaches, retrying while tsmd answers NoSuchDevice (it may not have seen the device yet). */
static json_object *attach_eventually(VarlinkClient *c, int64_t ctx, int64_t vdev, const char *address) {
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;
        char params[256];

        snprintf(params, sizeof(params), "%s", guest_attach_params(ctx, vdev, address));
        for (;;) {
                json_object *r = NULL;
                const char *error = tsmd_call(c, G "AttachDevice", params, &r);

                if (!error)
                        return r;
                if (!streq(error, E_GUEST("NoSuchDevice")))
                        TEST_FAIL("AttachDevice(%s): %s %s", address, error, json_object_to_json_string(r));
                if (now_usec() > deadline)
                        TEST_FAIL("%s did not become attachable within %llu ms", address,
                                  (unsigned long long) (TSMD_WAIT_USEC / USEC_PER_MSEC));
                sleep_usec(10 * USEC_PER_MSEC);
        }
}

/* Waits until AttachDevice of address says NoSuchDevice (in a scratch vDevice id). */
static void wait_no_such_device(VarlinkClient *c, int64_t ctx, const char *address) {
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;
        char params[256];

        snprintf(params, sizeof(params), "%s", guest_attach_params(ctx, 999, address));
        for (;;) {
                json_object *r = NULL;
                const char *error = tsmd_call(c, G "AttachDevice", params, &r);

                if (error && streq(error, E_GUEST("NoSuchDevice"))) {
                        ASSERT_TRUE(json_matches(r, strf("{\"pciAddress\":\"%s\"}", address)));
                        return;
                }
                if (!error) /* still there: undo and retry */
                        CALL_OK(c, G "DetachDevice", strf("{\"context\":%" PRIi64 ",\"vdeviceId\":999}", ctx));
                else if (!streq(error, E_GUEST("DeviceBusy")))
                        TEST_FAIL("AttachDevice(%s): %s %s", address, error, json_object_to_json_string(r));
                if (now_usec() > deadline)
                        TEST_FAIL("%s still attachable %llu ms after its removal", address,
                                  (unsigned long long) (TSMD_WAIT_USEC / USEC_PER_MSEC));
                sleep_usec(10 * USEC_PER_MSEC);
        }
}

/*
 * The AttachDevice answer: backend and TSM as expected, and every scope reported with the
 * number the registry gives for that backend in the UAPI tsmd reports. Scopes the UAPI
 * cannot carry are not offered; without the kernel's TSM ioctls none can be.
 */
static void expect_kernel_attach(json_object *r, TsmBackendType type, const char *tsm) {
        const TsmBackendDesc *b = tsm_backend_desc(type);
        TsmUapiVersion v = tsm_uapi_version_from_string(JSTR(r, "uapi"));
        json_object *scopes;

        printf("# AttachDevice -> %s\n", json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
        ASSERT_NOT_NULL(b);
        ASSERT_STREQ(JSTR(r, "backend"), tsm_backend_type_to_string(type));
        ASSERT_STREQ(JSTR(r, "tsm"), tsm);
        ASSERT_TRUE(json_object_object_get_ex(r, "scopes", &scopes));
        if (v < 0)
                ASSERT_EQ(json_object_array_length(scopes), 0);
        for (size_t i = 0; i < json_object_array_length(scopes); i++) {
                json_object *s = json_object_array_get_idx(scopes, i);
                const TsmScopeDesc *d = tsm_backend_find_scope(b, JSTR(s, "name"));
                uint32_t n;

                ASSERT_NOT_NULL(d);
                ASSERT_OK(tsm_backend_scope_number(b, JSTR(s, "name"), v, &n));
                ASSERT_EQ(JINT(s, "number"), n);
                ASSERT_EQ(JINT(s, "maxRequestSize"), d->max_request);
                ASSERT_EQ(JINT(s, "maxResponseSize"), d->max_response);
                ASSERT_EQ(JBOOL(s, "allowed"), d->default_allowed);
        }
}

/* A guest request to a kernel backend on this kernel: a named error, never a crash. */
static void expect_kernel_request_refused(VarlinkClient *c, int64_t ctx, int64_t vdev, const char *backend) {
        static const char *const acceptable[] = {
                E_GUEST("BackendError"),
                E_GUEST("ScopeUnavailable"),
        };
        json_object *r = NULL;
        const char *error;
        bool ok = false;

        /* GET_TDISP_VERSION, header only; the bytes do not matter here. */
        error = tsmd_call(c, G "GuestRequest",
                          strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%" PRIi64 ",\"scope\":\"info\","
                               "\"request\":\"EIEAAAAAAAAAAAAAAAAAAA==\",\"maxResponseSize\":4096}", ctx, vdev),
                          &r);
        ASSERT_NOT_NULL(error);
        for (size_t i = 0; i < ELEMENTSOF(acceptable); i++)
                if (streq(error, acceptable[i]))
                        ok = true;
        if (!ok)
                TEST_FAIL("GuestRequest on a %s device: unexpected %s %s", backend, error, json_object_to_json_string(r));

        /* A scope the backend does not have is named as that backend's. */
        CALL_ERROR(c, G "GuestRequest",
                   strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%" PRIi64 ",\"scope\":\"bogus\","
                        "\"request\":\"\",\"maxResponseSize\":16}", ctx, vdev),
                   E_GUEST("NoSuchScope"), strf("{\"scope\":\"bogus\",\"backend\":\"%s\"}", backend));
}

TEST(two_tsms_each_device_its_backend) {
        Env e;
        VarlinkClient *c;
        json_object *nic, *gpu, *r;
        int64_t ctx;
        bool bound = true;

        setup(&e, "two-tsms", NULL);
        c = tsmd_connect(&e.tsmd);
        ctx = open_context(c);

        nic = attach_eventually(c, ctx, 1, NIC_ADDR);
        expect_kernel_attach(nic, TSM_BACKEND_SEV_TIO, "tsm0");
        gpu = CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 2, GPU_ADDR));
        expect_kernel_attach(gpu, TSM_BACKEND_TDX_CONNECT, "tsm1");
        /* The two devices really are served by different backends. */
        ASSERT_NE(tsm_backend_desc(TSM_BACKEND_SEV_TIO), tsm_backend_desc(TSM_BACKEND_TDX_CONNECT));

        /* TDISP capable but connected to no TSM; a plain device; nothing. */
        CALL_ERROR(c, G "AttachDevice", guest_attach_params(ctx, 3, NVME_ADDR), E_GUEST("NoSuchDevice"), NULL);
        CALL_ERROR(c, G "AttachDevice", guest_attach_params(ctx, 3, "0000:00:04.0"), E_GUEST("NoSuchDevice"), NULL);
        CALL_ERROR(c, G "AttachDevice", guest_attach_params(ctx, 3, "0000:42:00.0"), E_GUEST("NoSuchDevice"), NULL);
        /* The NIC's function 1 has no tsm/ (only a DSM has): its function 0's TSM serves it. */
        expect_kernel_attach(CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 4, NIC_FN1_ADDR)),
                             TSM_BACKEND_SEV_TIO, "tsm0");
        CALL_OK(c, G "DetachDevice", guest_vdev_params(ctx, 4));
        /* The administrator sees which DSM speaks for it, and none for a DSM. */
        {
                json_object *devices;
                unsigned seen = 0;

                ASSERT_TRUE(json_object_object_get_ex(CALL_OK(c, "io.tsmd.Admin.ListDevices", NULL), "devices", &devices));
                for (size_t i = 0; i < json_object_array_length(devices); i++) {
                        json_object *d = json_object_array_get_idx(devices, i);

                        if (streq(JSTR(d, "pciAddress"), NIC_FN1_ADDR)) {
                                ASSERT_TRUE(json_matches(d, "{\"pciAddress\":\"" NIC_FN1_ADDR "\",\"dsm\":\"" NIC_ADDR
                                                            "\",\"tsm\":\"tsm0\",\"backend\":\"sev-tio\",\"state\":null,"
                                                            "\"owner\":null}"));
                                seen++;
                        } else if (streq(JSTR(d, "pciAddress"), NIC_ADDR)) {
                                ASSERT_TRUE(json_matches(d, "{\"dsm\":null}"));
                                seen++;
                        }
                }
                ASSERT_EQ(seen, 2u);
        }

        /* No TSM ioctls on this kernel: binding and requests fail with named errors. */
        expect_kernel_request_refused(c, ctx, 1, "sev-tio");
        expect_kernel_request_refused(c, ctx, 2, "tdx-connect");
        /* Each refusal is recorded with the scope it asked for, whichever error it was. */
        ASSERT_EQ(tsmd_audit_count_where(&e.tsmd, 0, "\"scope\":\"info\",\"pciAddress\":\"" NIC_ADDR "\"",
                                         "guest-request", E_GUEST("ScopeUnavailable")) +
                          tsmd_audit_count_where(&e.tsmd, 0, "\"scope\":\"info\",\"pciAddress\":\"" NIC_ADDR "\"",
                                                 "guest-request", E_GUEST("BackendError")),
                  1u);
        CALL_ERROR(c, G "Bind", "{\"context\":1,\"vdeviceId\":1}", E_GUEST("BackendError"), NULL);
        /* The kernel keeps the TDI state between TSM and guest: tsmd reports none. */
        r = CALL_OK(c, G "GetDeviceState", "{\"context\":1,\"vdeviceId\":2}");
        json_object *state = NULL;
        ASSERT_TRUE(!json_object_object_get_ex(r, "state", &state) || state == NULL);
        bound = JBOOL(r, "bound");
        ASSERT_FALSE(bound);

        /* Still alive and well. */
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        CALL_OK(c, G "DetachDevice", "{\"context\":1,\"vdeviceId\":1}");
        varlink_client_free(c);
        teardown(&e);
}

#define NVME_PATH "/devices/pci0000:00/0000:00:03.1/0000:03:00.0"
#define NVME_FN1_ADDR "0000:03:00.1"

/* The NVMe drive gets a function 1, without tsm/: the drive's function 0 is its DSM. */
static void add_nvme_fn1(const char *root) {
        ASSERT_OK(sysfs_fixture_apply_line(root, "pci /devices/pci0000:00/0000:00:03.1/0000:03:00.1 vendor=0x144d "
                                                 "device=0xa80a class=0x010802 driver=vfio-pci"));
}

/* io.tsmd.Admin.ConnectDevice/DisconnectDevice write the PCI TSM sysfs ABI (here: the fixture's
 * files, which the kernel would act on) and refresh the device. */
TEST(connect_and_disconnect_through_admin) {
        _cleanup_free_ char *written = NULL;
        Env e;
        VarlinkClient *c;
        json_object *r;
        int64_t ctx;
        FILE *f;
        char buf[64] = "";

        setup(&e, "two-tsms", add_nvme_fn1);
        c = tsmd_connect(&e.tsmd);
        ctx = open_context(c);

        /* Only a DSM is connected or disconnected; a function of one is told which it is. */
        CALL_ERROR(c, "io.tsmd.Admin.ConnectDevice", "{\"pciAddress\":\"" NVME_FN1_ADDR "\",\"tsm\":\"tsm1\"}",
                   "io.tsmd.Admin.NotDsm", "{\"pciAddress\":\"" NVME_FN1_ADDR "\",\"dsm\":\"" NVME_ADDR "\"}");
        CALL_ERROR(c, "io.tsmd.Admin.DisconnectDevice", "{\"pciAddress\":\"" NIC_FN1_ADDR "\"}",
                   "io.tsmd.Admin.NotDsm", "{\"pciAddress\":\"" NIC_FN1_ADDR "\",\"dsm\":\"" NIC_ADDR "\"}");
        CALL_ERROR(c, "io.tsmd.Admin.ConnectDevice", "{\"pciAddress\":\"" NVME_ADDR "\",\"tsm\":\"tsm9\"}",
                   "io.tsmd.Admin.NoSuchTsm", "{\"tsm\":\"tsm9\"}");
        CALL_ERROR(c, "io.tsmd.Admin.ConnectDevice", "{\"pciAddress\":\"0000:00:04.0\",\"tsm\":\"tsm1\"}",
                   "io.tsmd.Admin.NoSuchDevice", NULL);
        /* The NIC is tsm0's: not taken over silently. */
        (void) attach_eventually(c, ctx, 1, NIC_ADDR);
        CALL_ERROR(c, "io.tsmd.Admin.ConnectDevice", "{\"pciAddress\":\"" NIC_ADDR "\",\"tsm\":\"tsm1\"}",
                   "io.tsmd.Admin.DeviceBusy", NULL);

        /* Not attachable while unconnected, nor its function 1; connected to tsm1, both are TDX
         * Connect's at once (the kernel sends no uevent for either). */
        CALL_ERROR(c, G "AttachDevice", guest_attach_params(ctx, 3, NVME_ADDR), E_GUEST("NoSuchDevice"), NULL);
        CALL_ERROR(c, G "AttachDevice", guest_attach_params(ctx, 4, NVME_FN1_ADDR), E_GUEST("NoSuchDevice"), NULL);
        CALL_OK(c, "io.tsmd.Admin.ConnectDevice", "{\"pciAddress\":\"" NVME_ADDR "\",\"tsm\":\"tsm1\"}");
        r = CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 3, NVME_ADDR));
        expect_kernel_attach(r, TSM_BACKEND_TDX_CONNECT, "tsm1");
        r = CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 4, NVME_FN1_ADDR));
        expect_kernel_attach(r, TSM_BACKEND_TDX_CONNECT, "tsm1");

        /* A guest holds it, or its function 1: no disconnect from under either. */
        CALL_ERROR(c, "io.tsmd.Admin.DisconnectDevice", "{\"pciAddress\":\"" NVME_ADDR "\"}",
                   "io.tsmd.Admin.DeviceBusy", NULL);
        CALL_OK(c, G "DetachDevice", guest_vdev_params(ctx, 3));
        CALL_ERROR(c, "io.tsmd.Admin.DisconnectDevice", "{\"pciAddress\":\"" NVME_ADDR "\"}",
                   "io.tsmd.Admin.DeviceBusy", NULL);
        CALL_OK(c, G "DetachDevice", guest_vdev_params(ctx, 4));
        ASSERT_OK(sysfs_fixture_write_attr(e.root, NVME_PATH, "tsm/disconnect", ""));
        CALL_OK(c, "io.tsmd.Admin.DisconnectDevice", "{\"pciAddress\":\"" NVME_ADDR "\"}");
        /* What the kernel was told: the TSM to disconnect from. */
        written = strdup(strf("%s%s/tsm/disconnect", e.root, NVME_PATH));
        f = fopen(written, "re");
        ASSERT_NOT_NULL(f);
        ASSERT_NOT_NULL(fgets(buf, sizeof(buf), f));
        fclose(f);
        ASSERT_STREQ(buf, "tsm1");

        /* Each on record with the answer it got, refusals by name. */
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "io.tsmd.Admin.NoSuchTsm", 1);
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "io.tsmd.Admin.NoSuchDevice", 1);
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "io.tsmd.Admin.DeviceBusy", 1);
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "ok", 1);
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "io.tsmd.Admin.NotDsm", 1);
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.DisconnectDevice", "io.tsmd.Admin.NotDsm", 1);
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.DisconnectDevice", "io.tsmd.Admin.DeviceBusy", 2);
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.DisconnectDevice", "ok", 1);
        /* And what changed: the device, and the backend of the TSM it was connected to. */
        {
                _cleanup_(json_object_putp) json_object *records =
                        tsmd_audit_query(&e.tsmd, "{\"pciAddress\":\"" NVME_ADDR "\",\"result\":\"ok\"}");
                size_t n = 0;

                for (size_t i = 0; i < json_object_array_length(records); i++) {
                        json_object *rec = json_object_array_get_idx(records, i);
                        const char *event = json_get_string(rec, "event");

                        if (!streq(event, "io.tsmd.Admin.ConnectDevice") &&
                            !streq(event, "io.tsmd.Admin.DisconnectDevice"))
                                continue;
                        ASSERT_STREQ(json_get_string(rec, "backend"), "tdx-connect");
                        n++;
                }
                ASSERT_EQ(n, 2U);
        }

        varlink_client_free(c);
        teardown(&e);
}

/* managed-functions.sysfs: a mainline kernel shows tsm/ (dsm, bound; no connect) on the functions a
 * connected DSM manages. Each is served through its DSM and is no DSM to Admin: its connect or
 * disconnect is refused, naming the DSM. */
TEST(a_function_a_dsm_manages_is_connected_through_it) {
        Env e;
        VarlinkClient *c;
        json_object *r;
        int64_t ctx;

        setup(&e, "managed-functions", NULL);
        c = tsmd_connect(&e.tsmd);
        ctx = open_context(c);

        r = attach_eventually(c, ctx, 1, NIC_FN1_ADDR);
        expect_kernel_attach(r, TSM_BACKEND_SEV_TIO, "tsm0");
        r = CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 2, "0000:04:00.0"));
        expect_kernel_attach(r, TSM_BACKEND_TDX_CONNECT, "tsm1");

        CALL_ERROR(c, "io.tsmd.Admin.ConnectDevice", "{\"pciAddress\":\"" NIC_FN1_ADDR "\",\"tsm\":\"tsm1\"}",
                   "io.tsmd.Admin.NotDsm", "{\"pciAddress\":\"" NIC_FN1_ADDR "\",\"dsm\":\"" NIC_ADDR "\"}");
        CALL_ERROR(c, "io.tsmd.Admin.DisconnectDevice", "{\"pciAddress\":\"0000:04:00.1\"}",
                   "io.tsmd.Admin.NotDsm", "{\"pciAddress\":\"0000:04:00.1\",\"dsm\":\"0000:02:00.0\"}");
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "io.tsmd.Admin.NotDsm", 1);
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.DisconnectDevice", "io.tsmd.Admin.NotDsm", 1);

        varlink_client_free(c);
        teardown(&e);
}

/* tsmctl's output for argv (exit status 0 expected), as a JSON object. */
static json_object *tsmctl_json(Env *e, const char *verb, const char *a1, const char *a2) {
        const char *argv[] = { TSMCTL_PATH, "--json", strf("--socket=%s", e->tsmd.socket), verb, a1, a2, NULL };
        _cleanup_free_ char *out = NULL, *err = NULL;
        json_object *o;
        int status;

        status = run_capture(argv, &out, &err, TSMD_WAIT_USEC);
        if (status != 0)
                TEST_FAIL("tsmctl %s: exit %d: %s", verb, status, strna(err));
        o = json_tokener_parse(out);
        if (!o)
                TEST_FAIL("tsmctl --json %s printed no JSON: %s", verb, out);
        return o;
}

/* The backend of name in tsmctl --json backends. */
static json_object *backend_named(json_object *backends, const char *name) {
        json_object *a = json_object_object_get(backends, "backends");

        for (size_t i = 0; i < json_object_array_length(a); i++) {
                json_object *b = json_object_array_get_idx(a, i);

                if (streq(json_object_get_string(json_object_object_get(b, "tsm")), name))
                        return b;
        }
        TEST_FAIL("no backend %s in %s", name, json_object_to_json_string(backends));
}

/* tsmctl backends, connect and disconnect against kernel TSMs: each TSM with its type, its
 * parent's driver and the devices connected to it, counted anew after a connect; the kernel is
 * told the disconnect (the fixture's tsm/connect stays as it was: no kernel clears it); a refusal
 * is exit 1 naming the error. */
TEST(tsmctl_backends_connect_and_disconnect) {
        const char *refused[] = { TSMCTL_PATH, NULL, "connect", NVME_ADDR, "tsm9", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL, *written = NULL;
        json_object *b;
        int status;
        Env e;

        setup(&e, "two-tsms", NULL);
        b = tsmctl_json(&e, "backends", NULL, NULL);
        ASSERT_STREQ(json_object_get_string(json_object_object_get(b, "platform")), "kernel");
        ASSERT_EQ(json_object_array_length(json_object_object_get(b, "backends")), 2u);
        /* The NIC and its function 1, which it speaks for. */
        ASSERT_STREQ(JSTR(backend_named(b, "tsm0"), "type"), "sev-tio");
        ASSERT_STREQ(JSTR(backend_named(b, "tsm0"), "parentDriver"), "ccp");
        ASSERT_EQ(JINT(backend_named(b, "tsm0"), "devices"), 2);
        ASSERT_STREQ(JSTR(backend_named(b, "tsm1"), "type"), "tdx-connect");
        ASSERT_EQ(JINT(backend_named(b, "tsm1"), "devices"), 1);
        json_object_put(b);

        json_object_put(tsmctl_json(&e, "connect", NVME_ADDR, "tsm1"));
        b = tsmctl_json(&e, "backends", NULL, NULL);
        ASSERT_EQ(JINT(backend_named(b, "tsm1"), "devices"), 2);
        json_object_put(b);

        refused[1] = strf("--socket=%s", e.tsmd.socket);
        status = run_capture(refused, &out, &err, TSMD_WAIT_USEC);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1);
        ASSERT_NOT_NULL(strstr(err, "io.tsmd.Admin.NoSuchTsm"));

        ASSERT_OK(sysfs_fixture_write_attr(e.root, NVME_PATH, "tsm/disconnect", ""));
        json_object_put(tsmctl_json(&e, "disconnect", NVME_ADDR, NULL));
        written = read_file(strf("%s%s/tsm/disconnect", e.root, NVME_PATH));
        ASSERT_STREQ(written, "tsm1");

        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "ok", 1);
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "io.tsmd.Admin.NoSuchTsm", 1);
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.DisconnectDevice", "ok", 1);
        teardown(&e);
}

/* Makes the fixture's tmpfs full: limited to 1 MiB, and that taken by <root>/filler. */
static void fill_fixture(Env *e) {
        _cleanup_close_ int fd = -EBADF;
        char block[4096] = {};

        if (mount(NULL, e->root, NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, "size=1m") < 0)
                TEST_FAIL("remount %s with size=1m: %s", e->root, strerror(errno));
        fd = open(strf("%s/filler", e->root), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ASSERT_TRUE(fd >= 0);
        while (write(fd, block, sizeof(block)) == (ssize_t) sizeof(block))
                ;
        ASSERT_EQ(errno, ENOSPC);
}

/* A connect the kernel refuses is ConnectFailed with its errno, on record, and changes nothing.
 * Here the write fails as tsm/connect became a directory after discovery (EISDIR), as a
 * failed SPDM session or IDE setup fails it; and a disconnect whose write fails (ENOSPC). */
TEST(a_connect_the_kernel_refuses_is_connect_failed) {
        Env e;
        VarlinkClient *c;
        int64_t ctx;

        setup(&e, "two-tsms", NULL);
        ASSERT_OK(unlink(strf("%s" NVME_PATH "/tsm/connect", e.root)));
        ASSERT_OK(mkdir(strf("%s" NVME_PATH "/tsm/connect", e.root), 0755));
        c = tsmd_connect(&e.tsmd);
        CALL_ERROR(c, "io.tsmd.Admin.ConnectDevice", "{\"pciAddress\":\"" NVME_ADDR "\",\"tsm\":\"tsm1\"}",
                   "io.tsmd.Admin.ConnectFailed", strf("{\"errno\":%d}", EISDIR));
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "io.tsmd.Admin.ConnectFailed", 1);
        ctx = open_context(c);
        CALL_ERROR(c, G "AttachDevice", guest_attach_params(ctx, 3, NVME_ADDR), E_GUEST("NoSuchDevice"), NULL);
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);

        /* The write itself fails (the kernel's store() returns an error): here the fixture's
         * file system is full (its size is the superblock's, which tsmd's mount namespace
         * shares). The device stays connected, and attachable. */
        fill_fixture(&e);
        CALL_ERROR(c, "io.tsmd.Admin.DisconnectDevice", "{\"pciAddress\":\"" NIC_ADDR "\"}",
                   "io.tsmd.Admin.ConnectFailed", strf("{\"errno\":%d}", ENOSPC));
        ASSERT_OK(unlink(strf("%s/filler", e.root)));
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.DisconnectDevice", "io.tsmd.Admin.ConnectFailed", 1);
        (void) attach_eventually(c, ctx, 1, NIC_ADDR);

        varlink_client_free(c);
        teardown(&e);
}

static void connect_devsec_fn0(const char *root) {
        /* The sample TSM's connect() fails in the kernel; pretend it worked. */
        ASSERT_OK(sysfs_fixture_write_attr(root, DEVSEC_FN0, "tsm/connect", "tsm0"));
        ASSERT_OK(sysfs_fixture_write_attr(root, DEVSEC_FN0, "authenticated", "tsm0"));
}

TEST(devsec_sample_backend) {
        Env e;
        VarlinkClient *c;
        int64_t ctx;

        setup(&e, "devsec-sample", connect_devsec_fn0);
        c = tsmd_connect(&e.tsmd);
        ctx = open_context(c);
        expect_kernel_attach(attach_eventually(c, ctx, 1, DEVSEC_ADDR), TSM_BACKEND_DEVSEC_SAMPLE, "tsm0");
        /* Its second function has no tsm/ and is served through it; the other host bridge's
         * device is not connected, nor then its second function. */
        expect_kernel_attach(CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 2, "10000:01:00.1")),
                             TSM_BACKEND_DEVSEC_SAMPLE, "tsm0");
        CALL_ERROR(c, G "AttachDevice", guest_attach_params(ctx, 3, "10001:03:00.0"), E_GUEST("NoSuchDevice"), NULL);
        CALL_ERROR(c, G "AttachDevice", guest_attach_params(ctx, 3, "10001:03:00.1"), E_GUEST("NoSuchDevice"), NULL);
        expect_kernel_request_refused(c, ctx, 1, "devsec-sample");
        varlink_client_free(c);
        teardown(&e);
}

TEST(hot_removal_and_late_arrival) {
        Env e;
        VarlinkClient *a, *b;
        AsyncCall we;
        int64_t ca, cb;
        json_object *ev;

        setup(&e, "two-tsms", NULL);
        a = tsmd_connect(&e.tsmd);
        b = tsmd_connect_guest(&e.tsmd);
        ca = open_context(a);
        cb = open_context(b);
        attach_eventually(a, ca, 1, NIC_ADDR);
        CALL_OK(a, G "AttachDevice", guest_attach_params(ca, 2, GPU_ADDR));
        tsmd_call_async(a, G "WatchEvents", NULL, VARLINK_CALL_MORE, &we);
        ASSERT_TRUE(tsmd_async_wait(a, &we, 1, TSMD_WAIT_USEC));
        ASSERT_TRUE(json_matches(we.params[0], "{\"event\":null}"));

        /* Hot-unplug of the NIC: the directory goes, then udev's "remove". */
        ASSERT_OK(sysfs_fixture_remove(e.root, NIC));
        send_event(&e, "remove", NIC, "pci");
        ASSERT_TRUE(tsmd_async_wait(a, &we, 2, TSMD_WAIT_USEC));
        ASSERT_NULL(we.errors[1]);
        ASSERT_TRUE(json_object_object_get_ex(we.params[1], "event", &ev));
        ASSERT_TRUE(json_matches(ev, strf("{\"kind\":\"device-removed\",\"context\":%" PRIi64 ",\"vdeviceId\":1,"
                                          "\"pciAddress\":\"" NIC_ADDR "\",\"state\":null}", ca)));
        wait_no_such_device(b, cb, NIC_ADDR);
        /* Only the NIC went. */
        tsmd_pump(a, 100 * USEC_PER_MSEC);
        ASSERT_EQ(we.n, 2);

        /* The TDX Connect TSM goes: the GPU loses its connection, which is gone too. */
        ASSERT_OK(sysfs_fixture_write_attr(e.root, GPU, "tsm/connect", ""));
        ASSERT_OK(sysfs_fixture_write_attr(e.root, GPU, "authenticated", ""));
        ASSERT_OK(sysfs_fixture_remove(e.root, TSM1));
        send_event(&e, "remove", TSM1, "tsm");
        ASSERT_TRUE(tsmd_async_wait(a, &we, 3, TSMD_WAIT_USEC));
        ASSERT_TRUE(json_object_object_get_ex(we.params[2], "event", &ev));
        ASSERT_TRUE(json_matches(ev, strf("{\"kind\":\"device-removed\",\"context\":%" PRIi64 ",\"vdeviceId\":2,"
                                          "\"pciAddress\":\"" GPU_ADDR "\"}", ca)));
        wait_no_such_device(b, cb, GPU_ADDR);
        /* A lets go of its dead vDevices (see gone_vdevice_does_not_block_readded_device in
         * test-guest.c for what happens if it does not). */
        async_call_done(&we);
        varlink_client_free(a);

        /* Later a TSM of a third kind registers, and a device connected to it is plugged in. */
        ASSERT_OK(sysfs_fixture_apply_text(e.root, "faux /devices/faux/devsec_link_tsm\n"
                                                   "tsm " NEW_TSM " pci_mode=link\n"));
        send_event(&e, "add", NEW_TSM, "tsm");
        ASSERT_OK(sysfs_fixture_apply_line(e.root, "pci " NEW_PORT " class=0x060400 driver=pcieport"));
        ASSERT_OK(sysfs_fixture_apply_line(e.root, "pci " NEW_DEV " vendor=0x8086 device=0x0d58 class=0x120000 tsm=tsm2"));
        send_event(&e, "add", NEW_PORT, "pci");
        send_event(&e, "add", NEW_DEV, "pci");
        expect_kernel_attach(attach_eventually(b, cb, 1, NEW_ADDR), TSM_BACKEND_DEVSEC_SAMPLE, "tsm2");
        expect_kernel_request_refused(b, cb, 1, "devsec-sample");

        /* And the NIC comes back: attachable again, by a client that never had it. */
        ASSERT_OK(sysfs_fixture_apply_line(e.root, "pci " NIC " vendor=0x15b3 device=0x1021 class=0x020000 "
                                                   "driver=vfio-pci tsm=tsm0"));
        send_event(&e, "add", NIC, "pci");
        expect_kernel_attach(attach_eventually(b, cb, 2, NIC_ADDR), TSM_BACKEND_SEV_TIO, "tsm0");

        varlink_client_free(b);
        teardown(&e);
}

/* A device unplugged while its context waits to be reclaimed (after a restart of the worker) is
 * gone for that context too: when it comes back it is another device, owned by nobody and free
 * to disconnect, and the reclaiming VMM finds its vDevice gone. */
TEST(removal_while_waiting_to_be_reclaimed) {
        Env e;
        VarlinkClient *c, *admin;
        json_object *r, *owner;
        char token[128];
        int64_t ctx;

        setup(&e, "two-tsms", NULL);
        c = tsmd_connect_guest(&e.tsmd);
        r = CALL_OK(c, G "OpenContext", NULL);
        ctx = JINT(r, "context");
        snprintf(token, sizeof(token), "%s", JSTR(r, "reclaimToken"));
        attach_eventually(c, ctx, 1, NIC_ADDR);
        tsmd_kill_worker(&e.tsmd);
        varlink_client_free(c);

        admin = tsmd_connect(&e.tsmd);
        owner = admin_device_owner(admin, NIC_ADDR);
        ASSERT_NOT_NULL(owner);
        ASSERT_TRUE(JBOOL(owner, "reclaimable"));
        json_object_put(owner);

        ASSERT_OK(sysfs_fixture_remove(e.root, NIC));
        send_event(&e, "remove", NIC, "pci");
        ASSERT_OK(sysfs_fixture_apply_line(e.root, "pci " NIC " vendor=0x15b3 device=0x1021 class=0x020000 "
                                                   "driver=vfio-pci tsm=tsm0"));
        send_event(&e, "add", NIC, "pci");
        /* Back, and nobody's: the admin may disconnect it (which the monitor allows too). */
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;; sleep_usec(10 * USEC_PER_MSEC)) {
                const char *error = tsmd_call(admin, "io.tsmd.Admin.DisconnectDevice",
                                              "{\"pciAddress\":\"" NIC_ADDR "\"}", &r);

                if (!error)
                        break;
                if (!streq(error, "io.tsmd.Admin.DeviceBusy") && !streq(error, "io.tsmd.Admin.NoSuchDevice"))
                        TEST_FAIL("DisconnectDevice: %s %s", error, json_object_to_json_string(r));
                if (now_usec() > deadline)
                        TEST_FAIL("the returned NIC is still held (%s)", error);
        }
        ASSERT_NULL(admin_device_owner(admin, NIC_ADDR));

        c = tsmd_connect_guest(&e.tsmd);
        ctx = JINT(CALL_OK(c, G "ReclaimContext", strf("{\"reclaimToken\":\"%s\"}", token)), "context");
        CALL_ERROR(c, G "GetDeviceState", guest_vdev_params(ctx, 1), E_GUEST("DeviceGone"), NULL);
        CALL_OK(c, G "DetachDevice", guest_vdev_params(ctx, 1));

        varlink_client_free(c);
        varlink_client_free(admin);
        teardown(&e);
}

/* udevd delivers the events of unrelated devpaths out of order: the TDX Connect TSM goes and the
 * sample TSM registers, getting id 1 again, and its "add" comes before the old tsm1's "remove".
 * That late remove does not take the new tsm1 along: its device stays attachable, served by it. */
TEST(a_late_remove_spares_a_tsm_registered_again_elsewhere) {
        Env e;
        VarlinkClient *c;
        int64_t ctx;

        setup(&e, "two-tsms", NULL);
        c = tsmd_connect(&e.tsmd);
        ctx = open_context(c);

        ASSERT_OK(sysfs_fixture_remove(e.root, "/devices/faux/tdx_host"));
        ASSERT_OK(sysfs_fixture_apply_text(e.root, "faux /devices/faux/devsec_link_tsm\n"
                                                   "tsm /devices/faux/devsec_link_tsm/tsm/tsm1 pci_mode=link\n"));
        send_event(&e, "add", "/devices/faux/devsec_link_tsm/tsm/tsm1", "tsm");
        send_event(&e, "remove", TSM1, "tsm");
        /* Behind them, a device both processes must see before it can be attached: then they
         * have applied the two events before it too. */
        ASSERT_OK(sysfs_fixture_apply_line(e.root, "pci " NEW_PORT " class=0x060400 driver=pcieport"));
        ASSERT_OK(sysfs_fixture_apply_line(e.root, "pci " NEW_DEV " vendor=0x8086 device=0x0d58 class=0x120000 tsm=tsm0"));
        send_event(&e, "add", NEW_PORT, "pci");
        send_event(&e, "add", NEW_DEV, "pci");
        expect_kernel_attach(attach_eventually(c, ctx, 1, NEW_ADDR), TSM_BACKEND_SEV_TIO, "tsm0");

        /* The GPU names tsm1 (connected to the new one, which sends no uevent). */
        expect_kernel_attach(CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 2, GPU_ADDR)),
                             TSM_BACKEND_DEVSEC_SAMPLE, "tsm1");

        varlink_client_free(c);
        teardown(&e);
}

TEST(scope_numbers_come_from_each_backends_table) {
        /* Without a tsmd: the registry itself, for every backend and UAPI, so that the
         * comparison in the tests above means something when a UAPI is present. */
        for (TsmBackendType t = 0; t < _TSM_BACKEND_TYPE_MAX; t++) {
                const TsmBackendDesc *b = tsm_backend_desc(t);

                ASSERT_NOT_NULL(b);
                ASSERT_OK(tsm_backend_desc_verify(b));
                for (size_t i = 0; i < b->n_scopes; i++)
                        for (TsmUapiVersion v = 0; v < _TSM_UAPI_VERSION_MAX; v++) {
                                uint32_t n;
                                int r = tsm_backend_scope_number(b, b->scopes[i].name, v, &n);

                                if (b->scopes[i].number[v] < 0)
                                        ASSERT_ERRNO(r, EOPNOTSUPP);
                                else {
                                        ASSERT_OK(r);
                                        ASSERT_EQ(n, b->scopes[i].number[v]);
                                }
                        }
        }
}

TEST_MAIN();
