/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel path through the whole daemon: the real tsmd in Mode=kernel on the two-TSM
 * fixture sysfs tree, with a fake v5 kernel preloaded into it (fake-tsm-kernel-preload.c)
 * that answers the iommufd TSM ioctls on IommuDevice=/dev/null. A VMM's Bind, GuestRequest
 * and Unbind reach "the kernel" with the vDevice and the scope number of the named scope, the
 * answers come back through monitor and worker and are audited with the device's backend; a
 * device held inside the kernel holds only its own calls (another client's device is served,
 * its own request times out by name, its Unbind waits its turn); a hangup unbinds through the
 * kernel and is audited; an admin's connect of a device to its TSM, which the kernel does inside
 * the write to tsm/connect (seconds), holds neither process, and holds its audit record's room
 * until it is answered.
 *
 * Runs in: tests; needs root (SKIPs otherwise): a private mount namespace for the fixture.
 */

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "platform-test-util.h"
#include "sysfs-fixture.h"
#include "uevent-sender.h"
#include "guest-calls.h"
#include "tsmd-fixture.h"

#define G "io.tsmd.Guest."
#define E_GUEST(name) "io.tsmd.Guest." name

/* two-tsms.sysfs */
#define NIC_ADDR "0000:01:00.0" /* connected to tsm0 (SEV-TIO) */
#define NIC_FN1_ADDR "0000:01:00.1" /* no tsm/: the NIC is its DSM */
#define GPU_ADDR "0000:02:00.0" /* connected to tsm1 (TDX Connect) */
#define NVME_ADDR "0000:03:00.0" /* TDISP capable, not connected */
#define NVME_PATH "/devices/pci0000:00/0000:00:03.1/0000:03:00.0"
#define NIC_PATH "/devices/pci0000:00/0000:00:01.1/0000:01:00.0"
#define NIC_FN1_PATH "/devices/pci0000:00/0000:00:01.1/0000:01:00.1"
#define GPU_PATH "/devices/pci0000:00/0000:00:02.1/0000:02:00.0"

#define IOMMU_DEVICE "/dev/null"
/* GET_TDISP_VERSION, header only (16 bytes). */
#define TDISP_VERSION_REQUEST "EIEAAAAAAAAAAAAAAAAAAA=="

typedef struct Env {
        Tsmd tsmd;
        char root[128];
        char kernel_dir[128]; /* the fake kernel's calls log and hold files */
        uint64_t seqnum;      /* of the last fake uevent */
} Env;

/* The fixture of the test running (setup_env_full()), where attach_params() makes the VFIO
 * device nodes it needs. */
static Env *current_env;

/* Private mount namespace, the fixture on a private tmpfs, and tsmd with the fake kernel; extra
 * is appended to its tsmd.conf. hotplug: a network namespace of its own too, for fake uevents.
 * nic_bound: if not NULL, the NIC has mainline's tsm/bound, reading nic_bound ("tsm0": a TDI of it
 * bound; "": none) at tsmd's first scan in both processes. */
static void setup_env_full(Env *e, uint64_t request_timeout_usec, const char *extra, bool hotplug,
                           const char *policy, const char *nic_bound) {
        static char dir_env[256];
        const char *env[] = {
                "LD_PRELOAD=" FAKE_KERNEL_PRELOAD,
                "TSMD_FAKE_KERNEL_DEVICE=" IOMMU_DEVICE,
                dir_env,
                tsmd_preload_asan_env(),
                NULL,
        };
        const char *scratch;
        int r;

        *e = (Env) {};
        current_env = e;
        if (geteuid() != 0)
                SKIP("needs root (a mount namespace, a fixture bound over /sys)");
        if (hotplug && !platform_test_udev_monitor_possible())
                SKIP("sd-device disables udev monitors without /run/udev/control or a devtmpfs /dev");
        scratch = scratch_dir();
        snprintf(e->root, sizeof(e->root), "%s/sysfs", scratch);
        snprintf(e->kernel_dir, sizeof(e->kernel_dir), "%s/kernel", scratch);
        if (mkdir(e->root, 0755) < 0 || mkdir(e->kernel_dir, 0755) < 0)
                TEST_FAIL("mkdir in %s: %s", scratch, strerror(errno));
        /* The worker's user reaches the fake kernel's files too (hold-sync). */
        if (chmod(scratch, 0711) < 0)
                TEST_FAIL("chmod %s: %s", scratch, strerror(errno));
        platform_test_sandbox(hotplug);
        if (hotplug) {
                /* SECURITY: fake uevents must never be sent in the host's network namespace. */
                ASSERT_TRUE(platform_test_netns_is_private());
                ASSERT_EQ(uevent_in_private_netns(), 1);
        }
        if (mount("tmpfs", e->root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
                TEST_FAIL("tmpfs on %s: %s", e->root, strerror(errno));
        r = sysfs_fixture_apply_file(e->root, PLATFORM_FIXTURE_DIR "/two-tsms.sysfs");
        if (r < 0)
                TEST_FAIL("building fixture two-tsms: %s", strerror(-r));
        if (nic_bound)
                ASSERT_OK(sysfs_fixture_write_attr(e->root, NIC_PATH, "tsm/bound", nic_bound));

        snprintf(dir_env, sizeof(dir_env), "TSMD_FAKE_KERNEL_DIR=%s", e->kernel_dir);
        tsmd_start(&e->tsmd, &(TsmdOptions) {
                .config = strf("[Platform]\nMode=kernel\nIommuDevice=" IOMMU_DEVICE "\nRequestTimeoutUSec=%" PRIu64 "\n%s",
                               request_timeout_usec, extra),
                .files = policy ? &(TsmdFile){ "policy.conf", policy } : NULL,
                .n_files = policy ? 1 : 0,
                .sysfs_root = e->root,
                .env = env,
        });
        ASSERT_TRUE(tsmd_log_contains(&e->tsmd, "Kernel speaks the v5 iommufd TSM UAPI."));
}

static void setup_env(Env *e, uint64_t request_timeout_usec, const char *extra, bool hotplug) {
        setup_env_full(e, request_timeout_usec, extra, hotplug, NULL, NULL);
}

static void setup_full(Env *e, uint64_t request_timeout_usec, const char *extra) {
        setup_env(e, request_timeout_usec, extra, false);
}

static void setup(Env *e, uint64_t request_timeout_usec) {
        setup_full(e, request_timeout_usec, "");
}

/* With policy as policy.conf, where the test daemon's default grants no debug scope. */
static void setup_policy(Env *e, const char *policy) {
        setup_env_full(e, 5 * USEC_PER_SEC, "", false, policy, NULL);
}

static void teardown(Env *e) {
        current_env = NULL;
        tsmd_teardown(&e->tsmd);
        (void) umount2(e->root, MNT_DETACH);
}

/* ---- the fake kernel's side -------------------------------------------------------------- */

/* Every call the kernel saw so far, one "op|req VDEVICE VALUE" line each (malloc'd). */
static char *kernel_calls(Env *e) {
        return read_file(strf("%s/calls", e->kernel_dir)) ?: strdup("");
}

/* Waits (bounded) until the kernel's calls are exactly want. */
static void expect_kernel_calls(Env *e, const char *want) {
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;

        for (;;) {
                _cleanup_free_ char *calls = kernel_calls(e);

                if (streq(calls, want))
                        return;
                if (now_usec() > deadline)
                        TEST_FAIL("the kernel saw\n%swhere it should have seen\n%s", calls, want);
                sleep_usec(5 * USEC_PER_MSEC);
        }
}

static void hold(Env *e, uint32_t vdevice, bool on) {
        const char *path = strf("%s/hold-%u", e->kernel_dir, vdevice);

        if (on)
                write_file(path, "");
        else
                ASSERT_OK(unlink(path));
}

/* ---- VFIO device nodes of the fixture -------------------------------------------------------- */

static void mkdir_p(const char *path) {
        char buf[512];

        snprintf(buf, sizeof(buf), "%s", path);
        for (char *p = buf + 1; *p; p++)
                if (*p == '/') {
                        *p = 0;
                        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                                TEST_FAIL("mkdir %s: %s", buf, strerror(errno));
                        *p = '/';
                }
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                TEST_FAIL("mkdir %s: %s", buf, strerror(errno));
}

/* The character device node rdev of the PCI function at device (a path under the fixture's
 * sysfs), as the kernel shows one: <device>/<subsystem>/<name> with its device and subsystem
 * links, and dev/char/MAJ:MIN pointing there. The links are absolute in /sys, where tsmd has
 * the fixture. */
static void fake_char_node(Env *e, const char *device, const char *subsystem, const char *name, dev_t rdev) {
        char node[256], path[512], target[512];

        /* Not in strf()'s ring: attach_params() calls this, its callers may hold strf()s. */
        snprintf(node, sizeof(node), "%s/%s/%s", device, subsystem, name);
        snprintf(path, sizeof(path), "%s%s", e->root, node);
        mkdir_p(path);
        snprintf(path, sizeof(path), "%s/class/%s", e->root, subsystem);
        mkdir_p(path);
        snprintf(path, sizeof(path), "%s/dev/char", e->root);
        mkdir_p(path);
        snprintf(target, sizeof(target), "/sys%s", device);
        snprintf(path, sizeof(path), "%s%s/device", e->root, node);
        ASSERT_OK(symlink(target, path));
        snprintf(target, sizeof(target), "/sys/class/%s", subsystem);
        snprintf(path, sizeof(path), "%s%s/subsystem", e->root, node);
        ASSERT_OK(symlink(target, path));
        snprintf(target, sizeof(target), "/sys%s", node);
        snprintf(path, sizeof(path), "%s/dev/char/%u:%u", e->root, major(rdev), minor(rdev));
        ASSERT_OK(symlink(target, path));
}

static dev_t rdev_of(const char *path) {
        struct stat st;

        ASSERT_OK(stat(path, &st));
        ASSERT_TRUE(S_ISCHR(st.st_mode));
        return st.st_rdev;
}

/* The VFIO device cdev each device of the fixture has, as a real character device of the test's
 * /dev standing in for /dev/vfio/devices/vfioN: tsmd's proof is its rdev's sysfs node. */
static const struct {
        const char *address, *path, *node, *dev;
} vfio_devices[] = {
        { NIC_ADDR, NIC_PATH, "vfio0", "/dev/zero" },
        { GPU_ADDR, GPU_PATH, "vfio1", "/dev/urandom" },
        { NVME_ADDR, NVME_PATH, "vfio2", "/dev/random" },
        { NIC_FN1_ADDR, NIC_FN1_PATH, "vfio3", "/dev/ptmx" },
};

/* Makes address's VFIO device node in e's fixture, once; returns the /dev node standing for it. */
static const char *vfio_node(Env *e, const char *address) {
        for (size_t i = 0; i < ELEMENTSOF(vfio_devices); i++) {
                char node[512];

                if (!streq(vfio_devices[i].address, address))
                        continue;
                snprintf(node, sizeof(node), "%s%s/vfio-dev/%s", e->root, vfio_devices[i].path, vfio_devices[i].node);
                if (access(node, F_OK) < 0)
                        fake_char_node(e, vfio_devices[i].path, "vfio-dev", vfio_devices[i].node,
                                       rdev_of(vfio_devices[i].dev));
                return vfio_devices[i].dev;
        }
        TEST_FAIL("no VFIO device for %s in the fixture", address);
}

/* AttachDevice's parameters for address as vDevice vdev of ctx (one strf(), as
 * guest_attach_params()), with the VFIO device fd of address (a kernel TSM's device needs it)
 * attached to c's next call. */
static const char *attach_params(VarlinkClient *c, int64_t ctx, int64_t vdev, const char *address) {
        ASSERT_NOT_NULL(current_env);
        ASSERT_EQ(varlink_client_push_fd(c, open(vfio_node(current_env, address), O_RDONLY | O_CLOEXEC)), 0);
        return strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%" PRIi64 ",\"pciAddress\":\"%s\","
                    "\"vfioFileDescriptor\":0}", ctx, vdev, address);
}

/* ---- the VMM's side ---------------------------------------------------------------------- */

/* OpenContext: the iommufd that comes back is IommuDevice's. Its reclaim token in
 * ret_token (optional, RECLAIM_TOKEN_MAX bytes). */
#define RECLAIM_TOKEN_MAX 128
static int64_t open_context_full(VarlinkClient *c, char *ret_token) {
        json_object *r = CALL_OK(c, G "OpenContext", NULL);
        int fd = varlink_client_take_fd(c, (size_t) JINT(r, "fileDescriptor"));
        struct stat st, want;

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(fstat(fd, &st));
        ASSERT_OK(stat(IOMMU_DEVICE, &want));
        ASSERT_EQ(st.st_rdev, want.st_rdev);
        close(fd);
        if (ret_token)
                snprintf(ret_token, RECLAIM_TOKEN_MAX, "%s", JSTR(r, "reclaimToken"));
        return JINT(r, "context");
}

static int64_t open_context(VarlinkClient *c) {
        return open_context_full(c, NULL);
}

static void attach(VarlinkClient *c, int64_t ctx, int64_t vdev, const char *address, const char *backend) {
        json_object *r = CALL_OK(c, G "AttachDevice", attach_params(c, ctx, vdev, address));

        ASSERT_STREQ(JSTR(r, "backend"), backend);
        ASSERT_STREQ(JSTR(r, "uapi"), "v5");
}

/* A context with the NIC attached as vDevice 11; its reclaim token in token (optional). */
static int64_t nic_context(VarlinkClient *c, char *token) {
        int64_t ctx = open_context_full(c, token);

        attach(c, ctx, 11, NIC_ADDR, "sev-tio");
        return ctx;
}

/* Bind or Unbind: the kernel keeps the TDI state between TSM and guest, so tsmd shows none. */
static void change(VarlinkClient *c, const char *method, int64_t ctx, int64_t vdev) {
        json_object *r = CALL_OK(c, method, guest_vdev_params(ctx, vdev)), *state;

        ASSERT_TRUE(json_object_object_get_ex(r, "state", &state));
        ASSERT_NULL(state);
}

/* nic_context() with vDevice 11 bound: the kernel answers a guest request for a TDI not bound
 * ENXIO (pci_tsm_guest_req()), before it reaches the TSM. */
static int64_t bound_nic_context(VarlinkClient *c, char *token) {
        int64_t ctx = nic_context(c, token);

        change(c, G "Bind", ctx, 11);
        return ctx;
}

static const char *request_params(int64_t ctx, int64_t vdev, const char *scope) {
        return strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%" PRIi64 ",\"scope\":\"%s\",\"request\":\"" TDISP_VERSION_REQUEST
                    "\",\"maxResponseSize\":64}",
                    ctx, vdev, scope);
}

/* A state change on the NIC's vDevice 11 that the kernel holds past the request timeout (the
 * kernel still has it when this returns: hold(e, 11, false) lets it answer, late). */
static void state_change_times_out(Env *e, VarlinkClient *c, int64_t ctx) {
        AsyncCall held = {};

        hold(e, 11, true);
        tsmd_call_async(c, G "GuestRequest", request_params(ctx, 11, "state-change"), 0, &held);
        ASSERT_TRUE(tsmd_async_wait(c, &held, 1, TSMD_WAIT_USEC));
        ASSERT_STREQ(held.errors[0], E_GUEST("Timeout"));
        async_call_done(&held);
}

/* A guest request the kernel answers: its response, the scope number it went with. */
static void request_ok(VarlinkClient *c, int64_t ctx, int64_t vdev, const char *scope, int64_t number) {
        json_object *r = CALL_OK(c, G "GuestRequest", request_params(ctx, vdev, scope));
        _cleanup_free_ char *response = NULL;
        size_t len;

        response = unb64(JSTR(r, "response"), &len);
        ASSERT_EQ(len, strlen("pong"));
        ASSERT_TRUE(memcmp(response, "pong", len) == 0);
        ASSERT_EQ(JINT(r, "scopeNumber"), number);
        ASSERT_TRUE(JINT(r, "auditSequence") > 0);
}

/* The audit records of a device, oldest first (a new reference). */
static json_object *audit_of(Tsmd *t, const char *address) {
        _cleanup_(varlink_client_freep) VarlinkClient *admin = tsmd_connect(t);
        json_object *r = CALL_OK(admin, "io.tsmd.Admin.QueryAudit", strf("{\"pciAddress\":\"%s\"}", address)), *records;

        ASSERT_TRUE(json_object_object_get_ex(r, "records", &records));
        return json_object_get(records);
}

/* Whether there is a record of event with result at index from or later, and its index. */
static bool has_record(json_object *records, size_t from, const char *event, const char *result, size_t *ret) {
        for (size_t i = from; i < json_object_array_length(records); i++) {
                json_object *rec = json_object_array_get_idx(records, i);

                if (streq(JSTR(rec, "event"), event) && streq(JSTR(rec, "result"), result)) {
                        *ret = i;
                        return true;
                }
        }
        return false;
}

static size_t find_record(json_object *records, size_t from, const char *event, const char *result) {
        size_t i;

        if (!has_record(records, from, event, result, &i))
                TEST_FAIL("no %s record with result %s from %zu on: %s", event, result, from,
                          json_object_to_json_string(records));
        return i;
}

/* Waits (bounded) for a device's record that is written when the kernel answers. */
static void wait_record(Tsmd *t, const char *address, const char *event, const char *result) {
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;; sleep_usec(5 * USEC_PER_MSEC)) {
                json_object *records = audit_of(t, address);
                size_t i;
                bool found = has_record(records, 0, event, result, &i);

                json_object_put(records);
                if (found)
                        return;
                if (now_usec() > deadline)
                        TEST_FAIL("no %s record with result %s for %s", event, result, address);
        }
}

TEST(requests_binds_and_unbinds_reach_the_kernel) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        json_object *records, *rec;
        Env e;
        int64_t ctx;
        size_t i;

        setup(&e, 5 * USEC_PER_SEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);

        change(c, G "Bind", ctx, 11);
        request_ok(c, ctx, 11, "info", 0);
        request_ok(c, ctx, 11, "state-change", 1);
        change(c, G "Unbind", ctx, 11);
        /* What the kernel was handed: vDevice 11, bind (1), the two scopes' v5 numbers, unbind (2). */
        expect_kernel_calls(&e, "op 11 1\nreq 11 0\nreq 11 1\nop 11 2\n");

        /* A scope the policy does not allow never reaches the kernel. */
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 11, "debug-read"), E_GUEST("Denied"), NULL);
        expect_kernel_calls(&e, "op 11 1\nreq 11 0\nreq 11 1\nop 11 2\n");

        records = audit_of(&e.tsmd, NIC_ADDR);
        i = find_record(records, 0, "guest-request", "ok");
        rec = json_object_array_get_idx(records, i);
        ASSERT_STREQ(JSTR(rec, "backend"), "sev-tio");
        ASSERT_STREQ(JSTR(rec, "scope"), "info");
        ASSERT_EQ(JINT(rec, "scopeNumber"), 0);
        ASSERT_EQ(JINT(rec, "responseSize"), strlen("pong"));
        rec = json_object_array_get_idx(records, find_record(records, i + 1, "guest-request", "ok"));
        ASSERT_STREQ(JSTR(rec, "scope"), "state-change");
        ASSERT_EQ(JINT(rec, "scopeNumber"), 1);
        json_object_put(records);

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/*
 * SECURITY: [Guest] MaxResponseSize=0 lets no request have a response. One whose caller wants one
 * (maxResponseSize 64) is refused with PayloadTooLarge, limit 0, before the kernel: a kernel TSM
 * offered no response buffer takes it for a request that wants no response, and acts on it. A
 * request that wants none is the kernel's to answer.
 */
TEST(max_response_size_zero_keeps_requests_that_want_a_response_from_the_kernel) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        json_object *r = NULL;
        Env e;
        int64_t ctx;

        setup_full(&e, 5 * USEC_PER_SEC, "[Guest]\nMaxResponseSize=0\n");
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);
        change(c, G "Bind", ctx, 11);

        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 11, "state-change"), E_GUEST("PayloadTooLarge"),
                   "{\"field\":\"maxResponseSize\",\"limit\":0}");
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 11, "info"), E_GUEST("PayloadTooLarge"),
                   "{\"field\":\"maxResponseSize\",\"limit\":0}");
        expect_kernel_calls(&e, "op 11 1\n");

        /* Wanting none, it reaches the kernel (whose TSM takes it whole, offered no buffer). */
        (void) tsmd_call(c, G "GuestRequest",
                         strf("{\"context\":%" PRIi64 ",\"vdeviceId\":11,\"scope\":\"state-change\",\"request\":\""
                              TDISP_VERSION_REQUEST "\",\"maxResponseSize\":0}", ctx),
                         &r);
        expect_kernel_calls(&e, "op 11 1\nreq 11 1\n");

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* Offered no response buffer (maxResponseSize 0), a kernel TSM may consume only part of the
 * request, and the kernel's answer, its residue, is the bytes it left: the reply says so
 * (requestUnconsumed), and so does the request's audit record; for a request taken whole,
 * neither has the field. The fake's TSM takes FAKE_KERNEL_CONSUMED (16) bytes. */
TEST(a_request_the_tsm_consumed_in_part_says_what_it_left) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        json_object *r, *records, *rec, *v;
        int64_t ctx, seq;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = bound_nic_context(c, NULL);

        /* GET_TDISP_VERSION's header and 4 bytes more. */
        r = CALL_OK(c, G "GuestRequest",
                    strf("{\"context\":%" PRIi64 ",\"vdeviceId\":11,\"scope\":\"state-change\","
                         "\"request\":\"EIEAAAAAAAAAAAAAAAAAAAAAAAA=\",\"maxResponseSize\":0}", ctx));
        ASSERT_STREQ(JSTR(r, "response"), "");
        ASSERT_EQ(JINT(r, "requestUnconsumed"), 4);
        seq = JINT(r, "auditSequence");
        r = CALL_OK(c, G "GuestRequest",
                    strf("{\"context\":%" PRIi64 ",\"vdeviceId\":11,\"scope\":\"state-change\","
                         "\"request\":\"" TDISP_VERSION_REQUEST "\",\"maxResponseSize\":0}", ctx));
        ASSERT_FALSE(json_object_object_get_ex(r, "requestUnconsumed", NULL));
        expect_kernel_calls(&e, "op 11 1\nreq 11 1\nreq 11 1\n");

        records = audit_of(&e.tsmd, NIC_ADDR);
        rec = json_object_array_get_idx(records, find_record(records, 0, "guest-request", "ok"));
        ASSERT_EQ(JINT(rec, "seq"), seq);
        ASSERT_EQ(JINT(rec, "requestSize"), 20);
        ASSERT_EQ(JINT(rec, "responseSize"), 0);
        ASSERT_EQ(JINT(rec, "requestUnconsumed"), 4);
        rec = json_object_array_get_idx(records, find_record(records, find_record(records, 0, "guest-request", "ok") + 1,
                                                             "guest-request", "ok"));
        ASSERT_FALSE(json_object_object_get_ex(rec, "requestUnconsumed", &v));
        json_object_put(records);

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* Makes the kernel fail calls for vDevice vdevice with errno e (0: no more). */
static void fail_calls(Env *e, uint32_t vdevice, int errnum) {
        const char *path = strf("%s/fail-%u", e->kernel_dir, vdevice);

        if (errnum > 0)
                write_file(path, strf("%d\n", errnum));
        else
                ASSERT_OK(unlink(path));
}

/* A Bind the kernel fails: the TDI's state is the kernel's, which tsmd cannot see, so the VMM
 * gets the kernel's error (BackendError with its name and errno), not an InvalidState naming a
 * state nobody read; the vDevice stays unbound, and a Bind after it works. */
TEST(a_bind_the_kernel_fails_is_a_backend_error) {
        static const struct {
                int errnum;
                const char *name;
        } cases[] = {
                { EIO, "TsmFailure" },
                { EINVAL, "InvalidScopeOrArgument" },
                { EALREADY, "UnexpectedError" },
        };
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        json_object *r;
        int64_t ctx, seq;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);
        seq = tsmd_audit_last_seq(&e.tsmd);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                fail_calls(&e, 11, cases[i].errnum);
                CALL_ERROR(c, G "Bind", guest_vdev_params(ctx, 11), E_GUEST("BackendError"),
                           strf("{\"name\":\"%s\",\"errno\":%d}", cases[i].name, cases[i].errnum));
                r = CALL_OK(c, G "GetDeviceState", guest_vdev_params(ctx, 11));
                ASSERT_FALSE(JBOOL(r, "bound"));
        }
        tsmd_expect_audit(&e.tsmd, seq, "bind", E_GUEST("BackendError"), ELEMENTSOF(cases));
        ASSERT_EQ(tsmd_audit_count(&e.tsmd, seq, "bind", E_GUEST("InvalidState")), 0U);

        fail_calls(&e, 11, 0);
        change(c, G "Bind", ctx, 11);
        r = CALL_OK(c, G "GetDeviceState", guest_vdev_params(ctx, 11));
        ASSERT_TRUE(JBOOL(r, "bound"));

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* The kernel fails vDevice 11's Bind with error, then (bound) its guest request in scope: both
 * answered BackendError with detail. The kernel still fails its calls on return. */
static void kernel_fails_bind_and_request(Env *e, VarlinkClient *c, int64_t ctx, int error, const char *detail,
                                          const char *scope) {
        fail_calls(e, 11, error);
        CALL_ERROR(c, G "Bind", guest_vdev_params(ctx, 11), E_GUEST("BackendError"), detail);
        fail_calls(e, 11, 0);
        change(c, G "Bind", ctx, 11);
        fail_calls(e, 11, error);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 11, scope), E_GUEST("BackendError"), detail);
}

/* A kernel that refuses a call EPERM says its caller, tsmd's monitor, lacks a privilege (the v5
 * UAPI: DEBUG_WRITE "requires CAP_SYS_RAW_IO"), not that a policy rule refuses: BackendError
 * PermissionDenied, errno 1, recorded so, not the policy's Denied, whose reason names a rule.
 * (The monitor's own gate, which tells its refusal apart with TSM_PRIV_REPLY_MONITOR_OWN, stays
 * Denied: test-privsep-daemon.c.) */
TEST(a_call_the_kernel_refuses_for_want_of_a_privilege_is_a_backend_error) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        const char *eperm = "{\"name\":\"PermissionDenied\",\"errno\":1}";
        int64_t ctx, seq;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);
        seq = tsmd_audit_last_seq(&e.tsmd);

        kernel_fails_bind_and_request(&e, c, ctx, EPERM, eperm, "state-change");
        fail_calls(&e, 11, 0);

        tsmd_expect_audit(&e.tsmd, seq, "bind", E_GUEST("BackendError"), 1);
        tsmd_expect_audit(&e.tsmd, seq, "guest-request", E_GUEST("BackendError"), 1);
        ASSERT_EQ(tsmd_audit_count(&e.tsmd, seq, "bind", E_GUEST("Denied")), 0U);
        ASSERT_EQ(tsmd_audit_count(&e.tsmd, seq, "guest-request", E_GUEST("Denied")), 0U);

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* The kernel out of memory is the backend's failure, told as such (BackendError OutOfMemory,
 * 12), not tsmd's own (io.tsmd.System), for a Bind, a guest request and an Unbind. */
TEST(the_kernel_out_of_memory_is_a_backend_error) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        const char *oom = "{\"name\":\"OutOfMemory\",\"errno\":12}";
        int64_t ctx, seq;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);
        seq = tsmd_audit_last_seq(&e.tsmd);

        kernel_fails_bind_and_request(&e, c, ctx, ENOMEM, oom, "info");
        CALL_ERROR(c, G "Unbind", guest_vdev_params(ctx, 11), E_GUEST("BackendError"), oom);
        fail_calls(&e, 11, 0);
        change(c, G "Unbind", ctx, 11);

        tsmd_expect_audit(&e.tsmd, seq, "bind", E_GUEST("BackendError"), 1);
        tsmd_expect_audit(&e.tsmd, seq, "guest-request", E_GUEST("BackendError"), 1);
        tsmd_expect_audit(&e.tsmd, seq, "unbind", E_GUEST("BackendError"), 1);
        ASSERT_TRUE(tsmd_is_running(&e.tsmd));

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* A guest request the kernel refuses gets the very answer the emulated platform gives for the
 * same cause (test-guest.c), recorded so: a TDI it finds not bound (pci_tsm_guest_req()'s
 * ENXIO; guest_request_needs_a_bound_vdevice) is BackendError DeviceNotBound, errno 6; a
 * message invalid in its scope (EINVAL: a TSM driver's answer to a message its scope does not
 * carry; E_SCOPE_REFUSED) is BackendError InvalidScopeOrArgument, errno 22, not the policy's
 * Denied. */
TEST(a_request_the_kernel_refuses_is_named_as_on_the_emulator) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        int64_t ctx, seq;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);

        /* Never bound: the kernel's own answer, before any TSM. */
        seq = tsmd_audit_last_seq(&e.tsmd);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 11, "info"), E_GUEST("BackendError"),
                   "{\"name\":\"DeviceNotBound\",\"errno\":6}");
        tsmd_expect_audit(&e.tsmd, seq, "guest-request", E_GUEST("BackendError"), 1);
        expect_kernel_calls(&e, "req 11 0\n");

        change(c, G "Bind", ctx, 11);
        seq = tsmd_audit_last_seq(&e.tsmd);
        fail_calls(&e, 11, EINVAL);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 11, "info"), E_GUEST("BackendError"),
                   "{\"name\":\"InvalidScopeOrArgument\",\"errno\":22}");
        fail_calls(&e, 11, 0);
        tsmd_expect_audit(&e.tsmd, seq, "guest-request", E_GUEST("BackendError"), 1);

        /* Unbound again: refused as before the Bind. */
        change(c, G "Unbind", ctx, 11);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 11, "info"), E_GUEST("BackendError"),
                   "{\"name\":\"DeviceNotBound\",\"errno\":6}");
        expect_kernel_calls(&e, "req 11 0\nop 11 1\nreq 11 0\nop 11 2\nreq 11 0\n");

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* The kernel's PCI TSM core refuses both debug scopes (pci_tsm_guest_req(): EINVAL for every scope
 * past STATE_CHANGE), of a TDI bound, whatever the policy grants: a VMM granted them gets
 * BackendError InvalidScopeOrArgument, errno 22, each request having reached the kernel with its
 * scope's number, recorded so. */
TEST(a_debug_scope_the_kernel_refuses_is_a_backend_error) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        int64_t ctx, seq;
        Env e;

        setup_policy(&e, "[Client:tests]\nUsers=root\nDevices=*\nScopes=info state-change debug-read debug-write\n");
        c = tsmd_connect_guest(&e.tsmd);
        ctx = bound_nic_context(c, NULL);
        seq = tsmd_audit_last_seq(&e.tsmd);

        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 11, "debug-read"), E_GUEST("BackendError"),
                   "{\"name\":\"InvalidScopeOrArgument\",\"errno\":22}");
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 11, "debug-write"), E_GUEST("BackendError"),
                   "{\"name\":\"InvalidScopeOrArgument\",\"errno\":22}");
        expect_kernel_calls(&e, "op 11 1\nreq 11 2\nreq 11 3\n");
        tsmd_expect_audit(&e.tsmd, seq, "guest-request", E_GUEST("BackendError"), 2);
        /* The scopes the kernel takes are served all the same. */
        request_ok(c, ctx, 11, "state-change", 1);

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* ENODEV means "no VM" from the kernel's TSM_OP alone (v5 checks the vIOMMU's KVM file there, and
 * there only): a Bind on a vDevice whose vIOMMU has none is BackendError NoVmAssociated (ENOLINK),
 * not DeviceGone. A guest request's ENODEV (a TSM driver's) is BackendError NoDevice (ENOMEDIUM):
 * it claims no VM. */
TEST(the_kernels_enodev_is_named_by_its_call) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        const char *novm;
        int64_t ctx;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);

        novm = strf("%s/novm-11", e.kernel_dir);
        write_file(novm, "");
        CALL_ERROR(c, G "Bind", guest_vdev_params(ctx, 11), E_GUEST("BackendError"),
                   strf("{\"name\":\"NoVmAssociated\",\"errno\":%d}", ENOLINK));
        ASSERT_OK(unlink(novm));
        change(c, G "Bind", ctx, 11);

        fail_calls(&e, 11, ENODEV);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 11, "info"), E_GUEST("BackendError"),
                   strf("{\"name\":\"NoDevice\",\"errno\":%d}", ENOMEDIUM));
        fail_calls(&e, 11, 0);
        request_ok(c, ctx, 11, "info", 0);
        expect_kernel_calls(&e, "op 11 1\nop 11 1\nreq 11 0\nreq 11 0\n");

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* tsmd's own out of memory is not the kernel's: a guest request the worker cannot send to the
 * monitor (its channel's ENOMEM, after the request was queued) is io.tsmd.System ENOMEM, as
 * README's error list has it, not BackendError OutOfMemory, and recorded so. It reached no
 * kernel; the next one does. */
TEST(tsmds_own_out_of_memory_is_no_backend_error) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        const char *path;
        int64_t ctx, seq;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);
        change(c, G "Bind", ctx, 11);
        seq = tsmd_audit_last_seq(&e.tsmd);

        path = strf("%s/fail-send", e.kernel_dir);
        write_file(path, strf("%d\n", ENOMEM));
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 11, "info"), "io.tsmd.System",
                   "{\"errno\":12,\"errnoName\":\"ENOMEM\"}");
        tsmd_expect_audit(&e.tsmd, seq, "guest-request", "io.tsmd.System", 1);
        {
                _cleanup_free_ char *calls = kernel_calls(&e);

                ASSERT_NULL(strstr(calls, "req 11 "));
        }
        ASSERT_OK(unlink(path));
        CALL_OK(c, G "GuestRequest", request_params(ctx, 11, "info"));
        ASSERT_TRUE(tsmd_is_running(&e.tsmd));

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* So is any failure of the worker's channel to carry a request the monitor never answered
 * (sendmmsg()'s EAGAIN after its send timeout, ENOBUFS, EMSGSIZE): io.tsmd.System with its
 * errno, not BackendError, nor PayloadTooLarge for ENOBUFS (a response larger than the caller
 * takes, which only the monitor's answer can say). */
TEST(channel_send_failures_are_tsmds_own) {
        static const struct {
                int error;
                const char *name;
        } errors[] = { { EAGAIN, "EAGAIN" }, { ENOBUFS, "ENOBUFS" }, { EMSGSIZE, "EMSGSIZE" } };
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        const char *path;
        int64_t ctx, seq;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);
        change(c, G "Bind", ctx, 11);
        seq = tsmd_audit_last_seq(&e.tsmd);

        path = strdupa(strf("%s/fail-send", e.kernel_dir)); /* strf()'s buffers are reused below */
        for (size_t i = 0; i < ELEMENTSOF(errors); i++) {
                write_file(path, strf("%d\n", errors[i].error));
                CALL_ERROR(c, G "GuestRequest", request_params(ctx, 11, "info"), "io.tsmd.System",
                           strf("{\"errno\":%d,\"errnoName\":\"%s\"}", errors[i].error, errors[i].name));
        }
        tsmd_expect_audit(&e.tsmd, seq, "guest-request", "io.tsmd.System", ELEMENTSOF(errors));
        ASSERT_OK(unlink(path));
        CALL_OK(c, G "GuestRequest", request_params(ctx, 11, "info"));
        ASSERT_TRUE(tsmd_is_running(&e.tsmd));

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* A TSM that gives up itself (its SPDM or DOE timeout: the kernel answers ETIMEDOUT) has answered:
 * the VMM gets the backend's error (BackendError Timeout), not the Timeout of a call tsmd gave up
 * on within RequestTimeoutUSec= (which a Bind never gets), whose late answer is still to come. */
TEST(the_kernel_timing_out_is_a_backend_error) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        const char *timeout = "{\"name\":\"Timeout\",\"errno\":62}";
        int64_t ctx, seq;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);
        seq = tsmd_audit_last_seq(&e.tsmd);

        kernel_fails_bind_and_request(&e, c, ctx, ETIMEDOUT, timeout, "state-change");
        fail_calls(&e, 11, 0);

        tsmd_expect_audit(&e.tsmd, seq, "bind", E_GUEST("BackendError"), 1);
        tsmd_expect_audit(&e.tsmd, seq, "guest-request", E_GUEST("BackendError"), 1);
        ASSERT_EQ(tsmd_audit_count(&e.tsmd, seq, "guest-request", E_GUEST("Timeout")), 0U);

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* ---- VFIO device fds ----------------------------------------------------------------------- */

/* AttachDevice of the NIC as vDevice id with the character device at path, opened with flags,
 * as its VFIO fd. */
static const char *attach_with_vfio_flags(VarlinkClient *c, int64_t ctx, int64_t id, const char *path, int flags,
                                          json_object **ret) {
        ASSERT_EQ(varlink_client_push_fd(c, open(path, flags | O_CLOEXEC)), 0);
        return tsmd_call(c, G "AttachDevice",
                         strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%" PRIi64 ",\"pciAddress\":\"" NIC_ADDR "\","
                              "\"vfioFileDescriptor\":0}", ctx, id), ret);
}

static const char *attach_with_vfio(VarlinkClient *c, int64_t ctx, int64_t id, const char *path, json_object **ret) {
        return attach_with_vfio_flags(c, ctx, id, path, O_RDONLY, ret);
}

/* SECURITY: a VFIO fd proves the device only if it is the VFIO device cdev of that very
 * function (under its vfio-dev/, subsystem vfio-dev): another character device of the same
 * function (a DRM render node, say) is no proof, nor is the VFIO cdev of another function, nor
 * the right one opened O_PATH. */
TEST(a_vfio_fd_must_be_the_vfio_cdev_of_the_device) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        json_object *r = NULL;
        int64_t ctx;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        ASSERT_STREQ(vfio_node(&e, NIC_ADDR), "/dev/zero");
        fake_char_node(&e, NIC_PATH, "drm", "renderD128", rdev_of("/dev/full"));
        ASSERT_STREQ(vfio_node(&e, GPU_ADDR), "/dev/urandom");
        c = tsmd_connect_guest(&e.tsmd);
        ctx = open_context(c);

        ASSERT_STREQ(attach_with_vfio(c, ctx, 11, "/dev/full", &r), E_GUEST("BadFileDescriptor"));
        ASSERT_TRUE(json_matches(r, "{\"field\":\"vfioFileDescriptor\",\"reason\":\"not a VFIO device\"}"));
        ASSERT_STREQ(attach_with_vfio(c, ctx, 11, "/dev/urandom", &r), E_GUEST("BadFileDescriptor"));
        ASSERT_TRUE(json_matches(r, "{\"field\":\"vfioFileDescriptor\",\"reason\":\"the VFIO device is another PCI device\"}"));
        /* A character device the fixture does not have (the NVMe's VFIO device, not made here). */
        ASSERT_STREQ(attach_with_vfio(c, ctx, 11, "/dev/random", &r), E_GUEST("BadFileDescriptor"));
        ASSERT_TRUE(json_matches(r, "{\"field\":\"vfioFileDescriptor\",\"reason\":\"not a VFIO device\"}"));
        /* The right node, opened O_PATH: which needs no right to it at all, so proves nothing. */
        ASSERT_STREQ(attach_with_vfio_flags(c, ctx, 11, "/dev/zero", O_PATH, &r), E_GUEST("BadFileDescriptor"));
        ASSERT_TRUE(json_matches(r, "{\"field\":\"vfioFileDescriptor\",\"reason\":\"not a VFIO device\"}"));
        tsmd_expect_audit(&e.tsmd, 0, "attach", E_GUEST("BadFileDescriptor"), 4);

        ASSERT_NULL(attach_with_vfio(c, ctx, 11, "/dev/zero", &r));
        ASSERT_STREQ(JSTR(r, "backend"), "sev-tio");

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* SECURITY: a kernel TSM's device is attached only with the VFIO device fd proving the VMM holds
 * it (RequireVfioFileDescriptor=yes, the default): the address alone is the VMM's word. Refused
 * by name before anything is done, and audited with the device it was for. */
TEST(a_kernel_device_needs_its_vfio_fd) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        const char *missing = "{\"field\":\"vfioFileDescriptor\",\"reason\":\"missing\"}";
        int64_t ctx;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = open_context(c);

        CALL_ERROR(c, G "AttachDevice", guest_attach_params(ctx, 11, NIC_ADDR), E_GUEST("BadFileDescriptor"), missing);
        CALL_ERROR(c, G "AttachDevice", guest_attach_params(ctx, 12, GPU_ADDR), E_GUEST("BadFileDescriptor"), missing);
        /* null is no fd either. */
        CALL_ERROR(c, G "AttachDevice",
                   strf("{\"context\":%" PRIi64 ",\"vdeviceId\":11,\"pciAddress\":\"" NIC_ADDR "\","
                        "\"vfioFileDescriptor\":null}", ctx),
                   E_GUEST("BadFileDescriptor"), missing);
        ASSERT_EQ(tsmd_audit_count_where(&e.tsmd, 0, "\"pciAddress\":\"" NIC_ADDR "\"", "attach",
                                         E_GUEST("BadFileDescriptor")), 2u);
        ASSERT_EQ(tsmd_audit_count_where(&e.tsmd, 0, "\"pciAddress\":\"" GPU_ADDR "\"", "attach",
                                         E_GUEST("BadFileDescriptor")), 1u);
        /* Nothing was attached, nor sent to the kernel. */
        CALL_ERROR(c, G "GetDeviceState", guest_vdev_params(ctx, 11), E_GUEST("NoSuchVDevice"), NULL);
        expect_kernel_calls(&e, "");

        /* With it, the same call attaches. */
        attach(c, ctx, 11, NIC_ADDR, "sev-tio");

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* A host whose VMMs cannot pass the fd says so: the policy alone decides then. A reload applies
 * it, either way, to the next AttachDevice. */
TEST(require_vfio_fd_no_lets_the_policy_decide) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        const char *no = "[Platform]\nMode=kernel\nIommuDevice=" IOMMU_DEVICE "\n[Guest]\nRequireVfioFileDescriptor=no\n";
        json_object *r;
        int64_t ctx;
        Env e;

        setup_full(&e, 5 * USEC_PER_SEC, "[Guest]\nRequireVfioFileDescriptor=no\n");
        c = tsmd_connect_guest(&e.tsmd);
        ctx = open_context(c);

        r = CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 11, NIC_ADDR));
        ASSERT_STREQ(JSTR(r, "backend"), "sev-tio");
        /* A fd given is checked all the same. */
        ASSERT_EQ(varlink_client_push_fd(c, open("/dev/full", O_RDONLY | O_CLOEXEC)), 0);
        CALL_ERROR(c, G "AttachDevice",
                   strf("{\"context\":%" PRIi64 ",\"vdeviceId\":12,\"pciAddress\":\"" GPU_ADDR "\","
                        "\"vfioFileDescriptor\":0}", ctx),
                   E_GUEST("BadFileDescriptor"), "{\"field\":\"vfioFileDescriptor\",\"reason\":\"not a VFIO device\"}");

        /* Required again by a reload. */
        ASSERT_TRUE(tsmd_reload(&e.tsmd, "[Platform]\nMode=kernel\nIommuDevice=" IOMMU_DEVICE "\n"));
        CALL_ERROR(c, G "AttachDevice", guest_attach_params(ctx, 12, GPU_ADDR), E_GUEST("BadFileDescriptor"),
                   "{\"field\":\"vfioFileDescriptor\",\"reason\":\"missing\"}");
        ASSERT_TRUE(tsmd_reload(&e.tsmd, no));
        r = CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 12, GPU_ADDR));
        ASSERT_STREQ(JSTR(r, "backend"), "tdx-connect");

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* SECURITY: under a rule that grants a pool of devices to several VMMs, one cannot attach, and
 * so lock, a device another holds: without the device's VFIO fd it gets nothing, and the VMM
 * holding it attaches it. */
TEST(a_pool_rule_vmm_cannot_take_another_vmms_device) {
        _cleanup_(varlink_client_freep) VarlinkClient *holder = NULL, *squatter = NULL;
        int64_t ctx_holder, ctx_squatter;
        Env e;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as another uid");
        setup_policy(&e, "[Client:vmms]\nUsers=root 65534\nDevices=*\nScopes=info state-change\n");
        holder = tsmd_connect_guest(&e.tsmd);
        squatter = tsmd_connect_as(&e.tsmd, 65534, 65534);
        ctx_holder = open_context(holder);
        ctx_squatter = open_context(squatter);

        /* The squatter names the NIC, which it does not hold. */
        CALL_ERROR(squatter, G "AttachDevice", guest_attach_params(ctx_squatter, 21, NIC_ADDR),
                   E_GUEST("BadFileDescriptor"), "{\"field\":\"vfioFileDescriptor\",\"reason\":\"missing\"}");
        ASSERT_EQ(tsmd_audit_count_where(&e.tsmd, 0, "\"uid\":65534,\"pciAddress\":\"" NIC_ADDR "\"", "attach",
                                         E_GUEST("BadFileDescriptor")), 1u);
        /* The NIC is its holder's. */
        attach(holder, ctx_holder, 11, NIC_ADDR, "sev-tio");
        change(holder, G "Bind", ctx_holder, 11);
        ASSERT_EQ(tsmd_audit_count_where(&e.tsmd, 0, "\"uid\":0,\"pciAddress\":\"" NIC_ADDR "\"", "attach", "ok"), 1u);
        ASSERT_EQ(tsmd_audit_count_where(&e.tsmd, 0, "\"uid\":65534", "attach", "ok"), 0u);

        varlink_client_free(TAKE_PTR(squatter));
        varlink_client_free(TAKE_PTR(holder));
        teardown(&e);
}

/* Runs an example VMM (args after its path and socket) to its end; whether its output had want. */
static bool example_says(Env *e, const char *program, const char *args, const char *want) {
        char cmd[1024], line[512];
        bool found = false;
        FILE *f;

        snprintf(cmd, sizeof(cmd), "'%s' --socket='%s' %s 2>&1", program, e->tsmd.guest_socket, args);
        f = popen(cmd, "re");
        ASSERT_NOT_NULL(f);
        while (fgets(line, sizeof(line), f)) {
                fputs(line, stderr);
                if (strstr(line, want))
                        found = true;
        }
        ASSERT_EQ(pclose(f) == 0, !strstr(want, "BadFileDescriptor"));
        return found;
}

/* The example VMMs attach a kernel TSM's device with its VFIO device fd (--vfio), as a VMM must,
 * and without it are told which fd is missing. */
TEST(the_example_vmms_pass_the_vfio_fd) {
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        vfio_node(&e, NIC_ADDR);
        vfio_node(&e, GPU_ADDR);

        ASSERT_TRUE(example_says(&e, VMM_EXAMPLE_PATH, "--vfio=/dev/zero " NIC_ADDR,
                                 "backend sev-tio, TSM tsm0, UAPI v5"));
        ASSERT_TRUE(example_says(&e, VMM_LIBTSM_PATH, "--vfio=/dev/urandom " GPU_ADDR,
                                 "backend tdx-connect, TSM tsm1, UAPI v5"));
        ASSERT_TRUE(example_says(&e, VMM_LIBTSM_PATH, GPU_ADDR, "BadFileDescriptor"));
        tsmd_expect_audit(&e.tsmd, 0, "attach", "ok", 2);
        tsmd_expect_audit(&e.tsmd, 0, "attach", E_GUEST("BadFileDescriptor"), 1);

        teardown(&e);
}

TEST(a_held_device_holds_only_its_own_calls) {
        _cleanup_(varlink_client_freep) VarlinkClient *a = NULL, *b = NULL;
        AsyncCall held = {}, unbind = {};
        int64_t ctx_a, ctx_b;
        Env e;

        setup(&e, 3 * USEC_PER_SEC);
        a = tsmd_connect_guest(&e.tsmd);
        b = tsmd_connect_guest(&e.tsmd);
        ctx_a = open_context(a);
        ctx_b = open_context(b);
        attach(a, ctx_a, 11, NIC_ADDR, "sev-tio");
        attach(b, ctx_b, 12, GPU_ADDR, "tdx-connect");
        change(a, G "Bind", ctx_a, 11);
        change(b, G "Bind", ctx_b, 12);

        /* The NIC's firmware takes its time: its request stays inside the kernel. */
        hold(&e, 11, true);
        tsmd_call_async(a, G "GuestRequest", request_params(ctx_a, 11, "info"), 0, &held);
        expect_kernel_calls(&e, "op 11 1\nop 12 1\nreq 11 0\n");

        /* Another client's device on another TSM is served meanwhile, before the NIC's
         * request gives up. */
        request_ok(b, ctx_b, 12, "info", 0);
        tsmd_pump(a, 0);
        ASSERT_EQ(held.n, 0u);

        /* The NIC's request times out by name; the call is still inside the kernel. */
        ASSERT_TRUE(tsmd_async_wait(a, &held, 1, TSMD_WAIT_USEC));
        ASSERT_STREQ(held.errors[0], E_GUEST("Timeout"));

        /* Its Unbind waits its turn on the device behind that call, and others are served. */
        tsmd_call_async(a, G "Unbind", guest_vdev_params(ctx_a, 11), 0, &unbind);
        request_ok(b, ctx_b, 12, "info", 0);
        tsmd_pump(a, 100 * USEC_PER_MSEC);
        ASSERT_EQ(unbind.n, 0u);
        expect_kernel_calls(&e, "op 11 1\nop 12 1\nreq 11 0\nreq 12 0\nreq 12 0\n");

        hold(&e, 11, false);
        ASSERT_TRUE(tsmd_async_wait(a, &unbind, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(unbind.errors[0]);
        expect_kernel_calls(&e, "op 11 1\nop 12 1\nreq 11 0\nreq 12 0\nreq 12 0\nop 11 2\n");

        wait_record(&e.tsmd, NIC_ADDR, "guest-request", E_GUEST("Timeout"));

        async_call_done(&held);
        async_call_done(&unbind);
        varlink_client_free(TAKE_PTR(a));
        varlink_client_free(TAKE_PTR(b));
        teardown(&e);
}

TEST(hangup_unbinds_through_the_kernel) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        int64_t ctx;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);
        change(c, G "Bind", ctx, 11);
        varlink_client_free(TAKE_PTR(c));
        expect_kernel_calls(&e, "op 11 1\nop 11 2\n");

        /* Recorded once the kernel answered. */
        wait_record(&e.tsmd, NIC_ADDR, "release", "ok");

        /* The device is free for the next guest. */
        c = tsmd_connect_guest(&e.tsmd);
        ctx = open_context(c);
        attach(c, ctx, 21, NIC_ADDR, "sev-tio");
        change(c, G "Bind", ctx, 21);
        expect_kernel_calls(&e, "op 11 1\nop 11 2\nop 21 1\n");

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

static void fail(Env *e, uint32_t vdevice, int error) {
        const char *path = strf("%s/fail-%u", e->kernel_dir, vdevice);

        if (error > 0)
                write_file(path, strf("%d", error));
        else
                ASSERT_OK(unlink(path));
}

/* The device's record of event, waited for (bounded); a new reference. */
static json_object *wait_record_of(Tsmd *t, const char *address, const char *event) {
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;; sleep_usec(5 * USEC_PER_MSEC)) {
                json_object *records = audit_of(t, address);

                for (size_t i = 0; i < json_object_array_length(records); i++) {
                        json_object *rec = json_object_array_get_idx(records, i);

                        if (streq(JSTR(rec, "event"), event)) {
                                rec = json_object_get(rec);
                                json_object_put(records);
                                return rec;
                        }
                }
                json_object_put(records);
                if (now_usec() > deadline)
                        TEST_FAIL("no %s record for %s", event, address);
        }
}

static bool has_key(json_object *o, const char *key) {
        return json_object_object_get_ex(o, key, NULL);
}

/* How many records of event the device has, once no more come (a short wait without change). */
static size_t count_records_of(Tsmd *t, const char *address, const char *event) {
        size_t n = SIZE_MAX;

        for (;;) {
                json_object *records = audit_of(t, address);
                size_t k = 0;

                for (size_t i = 0; i < json_object_array_length(records); i++)
                        if (streq(JSTR(json_object_array_get_idx(records, i), "event"), event))
                                k++;
                json_object_put(records);
                if (k == n)
                        return n;
                n = k;
                sleep_usec(300 * USEC_PER_MSEC);
        }
}

static int64_t reclaim(VarlinkClient *c, const char *token) {
        return JINT(CALL_OK(c, G "ReclaimContext", strf("{\"reclaimToken\":\"%s\"}", token)), "context");
}

/* Whether the client bound the vDevice, as GetDeviceState says. */
static bool is_bound(VarlinkClient *c, int64_t ctx, int64_t vdev) {
        return JBOOL(CALL_OK(c, G "GetDeviceState", guest_vdev_params(ctx, vdev)), "bound");
}

/* The worker dies while the kernel holds the VMM's Bind. The next worker restores the context
 * with the vDevice busy (the bind is still on its way), and learns from the monitor where the
 * bind ended once the kernel answers: bound, so the reclaiming VMM can unbind it, and the audit
 * log says so (bind-late). */
TEST(a_bind_on_its_way_across_a_worker_restart) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        char token[RECLAIM_TOKEN_MAX];
        AsyncCall bind = {};
        json_object *late;
        uint64_t deadline;
        int64_t ctx;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, token);
        hold(&e, 11, true);
        tsmd_call_async(c, G "Bind", guest_vdev_params(ctx, 11), 0, &bind);
        expect_kernel_calls(&e, "op 11 1\n");
        tsmd_kill_worker(&e.tsmd);
        async_call_done(&bind);
        varlink_client_free(TAKE_PTR(c));

        c = tsmd_connect_guest(&e.tsmd);
        ctx = reclaim(c, token);
        ASSERT_FALSE(is_bound(c, ctx, 11));
        CALL_ERROR(c, G "Bind", guest_vdev_params(ctx, 11), E_GUEST("DeviceBusy"),
                   "{\"pciAddress\":\"" NIC_ADDR "\"}");
        CALL_ERROR(c, G "DetachDevice", guest_vdev_params(ctx, 11), E_GUEST("DeviceBusy"), NULL);

        hold(&e, 11, false);
        deadline = now_usec() + TSMD_WAIT_USEC;
        while (!is_bound(c, ctx, 11)) {
                if (now_usec() > deadline)
                        TEST_FAIL("the restored vDevice never showed the bind the kernel answered");
                sleep_usec(5 * USEC_PER_MSEC);
        }
        /* The dead worker's record of the Bind died with it (or says it failed): the audit log
         * says how it ended, once, naming no record of this worker's. */
        late = wait_record_of(&e.tsmd, NIC_ADDR, "bind-late");
        ASSERT_STREQ(JSTR(late, "result"), "ok");
        ASSERT_EQ(JINT(late, "contextId"), ctx);
        ASSERT_EQ(JINT(late, "vdeviceId"), 11);
        ASSERT_EQ(JINT(late, "uid"), (int64_t) getuid());
        ASSERT_STREQ(JSTR(late, "backend"), "sev-tio");
        ASSERT_FALSE(has_key(late, "originalSeq"));
        json_object_put(late);
        ASSERT_EQ(count_records_of(&e.tsmd, NIC_ADDR, "bind-late"), 1u);
        change(c, G "Unbind", ctx, 11);
        expect_kernel_calls(&e, "op 11 1\nop 11 2\n");
        CALL_OK(c, G "DetachDevice", guest_vdev_params(ctx, 11));

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* admin_device_owner() on an admin connection of its own. */
static json_object *owner_of(Tsmd *t, const char *address) {
        _cleanup_(varlink_client_freep) VarlinkClient *admin = tsmd_connect(t);

        return admin_device_owner(admin, address);
}

static void disconnect_refused(Tsmd *t, const char *address) {
        _cleanup_(varlink_client_freep) VarlinkClient *admin = tsmd_connect(t);

        CALL_ERROR(admin, "io.tsmd.Admin.DisconnectDevice", strf("{\"pciAddress\":\"%s\"}", address),
                   "io.tsmd.Admin.DeviceBusy", NULL);
}

/* After a restart of the worker, a bound device whose VMM has not reclaimed its context yet is
 * still the VMM's: the admin sees it so (tsmctl too) and cannot disconnect it from its TSM;
 * once reclaimed, unbound and detached, it can. */
TEST(a_context_waiting_to_be_reclaimed_keeps_its_device) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL, *admin = NULL;
        char token[RECLAIM_TOKEN_MAX];
        const char *argv[] = { TSMCTL_PATH, NULL, "devices", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL;
        json_object *owner;
        int64_t ctx;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, token);
        change(c, G "Bind", ctx, 11);
        disconnect_refused(&e.tsmd, NIC_ADDR);
        tsmd_kill_worker(&e.tsmd);
        varlink_client_free(TAKE_PTR(c));

        owner = owner_of(&e.tsmd, NIC_ADDR);
        ASSERT_NOT_NULL(owner);
        ASSERT_TRUE(JBOOL(owner, "reclaimable"));
        ASSERT_TRUE(JBOOL(owner, "bound"));
        ASSERT_EQ(JINT(owner, "uid"), (int64_t) getuid());
        ASSERT_EQ(JINT(owner, "vdeviceId"), 11);
        json_object_put(owner);
        argv[1] = strf("--socket=%s", e.tsmd.socket);
        ASSERT_EQ(run_capture(argv, &out, &err, TSMD_WAIT_USEC), 0);
        ASSERT_NOT_NULL(strstr(out, strf("uid %u to be reclaimed vdev 11 bound", (unsigned) getuid())));
        disconnect_refused(&e.tsmd, NIC_ADDR);

        c = tsmd_connect_guest(&e.tsmd);
        ctx = reclaim(c, token);
        owner = owner_of(&e.tsmd, NIC_ADDR);
        ASSERT_FALSE(JBOOL(owner, "reclaimable"));
        ASSERT_EQ(JINT(owner, "pid"), (int64_t) getpid());
        ASSERT_EQ(JINT(owner, "context"), ctx);
        json_object_put(owner);

        change(c, G "Unbind", ctx, 11);
        CALL_OK(c, G "DetachDevice", guest_vdev_params(ctx, 11));
        ASSERT_NULL(owner_of(&e.tsmd, NIC_ADDR));
        admin = tsmd_connect(&e.tsmd);
        CALL_OK(admin, "io.tsmd.Admin.DisconnectDevice", "{\"pciAddress\":\"" NIC_ADDR "\"}");

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* A function the NIC is the DSM of (its function 1, no tsm/ of its own) held by a guest keeps
 * the NIC connected: disconnecting the DSM would take the function's link from under its guest.
 * So while the guest has it, and while its context waits to be reclaimed after a restart of the
 * worker (which only the monitor sees). */
TEST(a_function_held_by_a_guest_keeps_its_dsm_connected) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL, *admin = NULL;
        const char *argv[] = { TSMCTL_PATH, NULL, "devices", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL;
        char token[RECLAIM_TOKEN_MAX];
        int64_t ctx;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = open_context_full(c, token);
        attach(c, ctx, 12, NIC_FN1_ADDR, "sev-tio");
        /* tsmctl devices names the function's DSM, and none for the DSM itself. */
        argv[1] = strf("--socket=%s", e.tsmd.socket);
        ASSERT_EQ(run_capture(argv, &out, &err, TSMD_WAIT_USEC), 0);
        if (!strstr(out, strf("\n%-15s%-15s", NIC_FN1_ADDR, NIC_ADDR)) || !strstr(out, strf("\n%-15s%-15s", NIC_ADDR, "-")))
                TEST_FAIL("no DSM column for %s:\n%s", NIC_FN1_ADDR, out);
        change(c, G "Bind", ctx, 12);
        disconnect_refused(&e.tsmd, NIC_ADDR);
        tsmd_kill_worker(&e.tsmd);
        varlink_client_free(TAKE_PTR(c));
        disconnect_refused(&e.tsmd, NIC_ADDR);

        c = tsmd_connect_guest(&e.tsmd);
        ctx = reclaim(c, token);
        change(c, G "Unbind", ctx, 12);
        CALL_OK(c, G "DetachDevice", guest_vdev_params(ctx, 12));
        admin = tsmd_connect(&e.tsmd);
        CALL_OK(admin, "io.tsmd.Admin.DisconnectDevice", "{\"pciAddress\":\"" NIC_ADDR "\"}");

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* A function a guest holds holds its DSM's connection too: the link and its IDE keys are the
 * DSM's, so an admin's disconnect of the DSM would pull them from under the guest. It is
 * DeviceBusy, on record, and the kernel is told nothing; once the guest detaches, it goes. (The
 * worker refuses it, check_in_use(), and so does the monitor: either alone passes this.) */
TEST(disconnect_of_the_dsm_of_a_held_function_is_refused) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL, *admin = NULL;
        _cleanup_free_ char *before = NULL, *after = NULL;
        const char *disconnect;
        int64_t ctx;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        ASSERT_OK(sysfs_fixture_write_attr(e.root, NIC_PATH, "tsm/disconnect", ""));
        disconnect = strf("%s" NIC_PATH "/tsm/disconnect", e.root);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = open_context(c);
        attach(c, ctx, 12, NIC_FN1_ADDR, "sev-tio");

        disconnect_refused(&e.tsmd, NIC_ADDR);
        before = read_file(disconnect);
        ASSERT_STREQ(before, "\n"); /* as the fixture made it */
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.DisconnectDevice", "io.tsmd.Admin.DeviceBusy", 1);

        CALL_OK(c, G "DetachDevice", guest_vdev_params(ctx, 12));
        admin = tsmd_connect(&e.tsmd);
        CALL_OK(admin, "io.tsmd.Admin.DisconnectDevice", "{\"pciAddress\":\"" NIC_ADDR "\"}");
        after = read_file(disconnect);
        ASSERT_STREQ(after, "tsm0");

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* ---- a connect the kernel takes its time over ------------------------------------------ */

/* A sysfs attribute whose writer waits inside write(), as the kernel's connect makes it wait: a
 * FIFO in its place whose pipe the test keeps full until connect_release(). */
typedef struct HeldWrite {
        char path[256];
        int rd, wr;
} HeldWrite;

static void connect_hold(Env *e, HeldWrite *h) {
        static char filler[4096];

        snprintf(h->path, sizeof(h->path), "%s" NVME_PATH "/tsm/connect", e->root);
        ASSERT_OK(unlink(h->path));
        ASSERT_OK(mkfifo(h->path, 0600));
        ASSERT_OK(h->rd = open(h->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC));
        ASSERT_OK(h->wr = open(h->path, O_WRONLY | O_NONBLOCK | O_CLOEXEC));
        while (write(h->wr, filler, sizeof(filler)) > 0)
                ;
        ASSERT_EQ(errno, EAGAIN);
}

/* Waits (bounded) until the monitor has the held file open: its write is on its way. */
static void connect_wait_writing(Env *e, HeldWrite *h) {
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;; sleep_usec(5 * USEC_PER_MSEC)) {
                DIR *d = opendir(strf("/proc/%d/fd", (int) e->tsmd.pid));
                struct dirent *de;
                struct stat fifo, st;
                bool found = false;

                /* By inode: tsmd sees the fixture where /sys is, in a mount namespace of its own. */
                ASSERT_OK(stat(h->path, &fifo));
                ASSERT_NOT_NULL(d);
                while (!found && (de = readdir(d)))
                        found = de->d_name[0] != '.' && fstatat(dirfd(d), de->d_name, &st, 0) >= 0 &&
                                st.st_dev == fifo.st_dev && st.st_ino == fifo.st_ino;
                closedir(d);
                if (found)
                        return;
                if (now_usec() > deadline)
                        TEST_FAIL("the monitor never opened %s", h->path);
        }
}

/* The kernel is done: the attribute reads as it does after a connect (tsm1), and the writer's
 * write completes. Returns what it wrote (malloc'd), once it closed the file. */
static char *connect_release(HeldWrite *h) {
        const char *tmp = strf("%s.new", h->path);
        char buf[4096], tail[16] = "";
        size_t n_tail = 0;

        write_file(tmp, "tsm1");
        ASSERT_OK(rename(tmp, h->path));
        h->wr = safe_close(h->wr);
        for (;;) {
                struct pollfd p = { .fd = h->rd, .events = POLLIN };
                ssize_t n;

                ASSERT_EQ(poll(&p, 1, (int) (TSMD_WAIT_USEC / USEC_PER_MSEC)), 1);
                n = read(h->rd, buf, sizeof(buf));
                if (n == 0)
                        break;
                if (n < 0 && errno == EAGAIN)
                        continue;
                ASSERT_TRUE(n > 0);
                /* What came last: the filler's zeros, then the writer's text. */
                for (ssize_t i = 0; i < n; i++)
                        if (buf[i] != 0 && n_tail < sizeof(tail) - 1)
                                tail[n_tail++] = buf[i];
        }
        h->rd = safe_close(h->rd);
        return strdup(tail);
}

#define CONNECT_NVME "{\"pciAddress\":\"" NVME_ADDR "\",\"tsm\":\"tsm1\"}"

/* An admin connection whose ConnectDevice of the NVMe (into *connect) the kernel holds in its
 * write to tsm/connect until connect_release(). */
static VarlinkClient *connect_held(Env *e, HeldWrite *h, AsyncCall *connect) {
        VarlinkClient *admin;

        connect_hold(e, h);
        admin = tsmd_connect(&e->tsmd);
        tsmd_call_async(admin, "io.tsmd.Admin.ConnectDevice", CONNECT_NVME, 0, connect);
        connect_wait_writing(e, h);
        return admin;
}

/* The kernel's connect is an SPDM session and IDE key setup inside the write to tsm/connect:
 * seconds. Meanwhile neither process waits for it: another admin connection is answered, the
 * NIC's guest request goes through the kernel, and a second change of the device's connection
 * is DeviceBusy. The admin's answer comes after the write, and the device is TDX Connect's. */
TEST(a_slow_connect_holds_neither_process) {
        _cleanup_(varlink_client_freep) VarlinkClient *vmm = NULL, *admin = NULL, *other = NULL;
        _cleanup_free_ char *written = NULL;
        AsyncCall connect = {}, ping = {};
        HeldWrite h;
        int64_t ctx;
        json_object *r;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        vmm = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(vmm, NULL);
        change(vmm, G "Bind", ctx, 11);

        connect_hold(&e, &h);
        admin = tsmd_connect(&e.tsmd);
        other = tsmd_connect(&e.tsmd);
        tsmd_call_async(admin, "io.tsmd.Admin.ConnectDevice", CONNECT_NVME, 0, &connect);
        connect_wait_writing(&e, &h);

        tsmd_call_async(other, "io.tsmd.Service.Ping", NULL, 0, &ping);
        ASSERT_TRUE(tsmd_async_wait(other, &ping, 1, 1 * USEC_PER_SEC));
        ASSERT_NULL(ping.errors[0]);
        request_ok(vmm, ctx, 11, "info", 0);
        CALL_ERROR(other, "io.tsmd.Admin.ConnectDevice", CONNECT_NVME, "io.tsmd.Admin.DeviceBusy", NULL);
        CALL_ERROR(other, "io.tsmd.Admin.DisconnectDevice", "{\"pciAddress\":\"" NVME_ADDR "\"}",
                   "io.tsmd.Admin.DeviceBusy", NULL);
        tsmd_pump(admin, 100 * USEC_PER_MSEC);
        ASSERT_EQ(connect.n, 0u);

        written = connect_release(&h);
        ASSERT_STREQ(written, "tsm1");
        ASSERT_TRUE(tsmd_async_wait(admin, &connect, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(connect.errors[0]);
        r = CALL_OK(vmm, G "AttachDevice", attach_params(vmm, ctx, 13, NVME_ADDR));
        ASSERT_STREQ(JSTR(r, "backend"), "tdx-connect");
        ASSERT_STREQ(JSTR(r, "tsm"), "tsm1");

        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "ok", 1);
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "io.tsmd.Admin.DeviceBusy", 1);

        async_call_done(&connect);
        async_call_done(&ping);
        varlink_client_free(TAKE_PTR(vmm));
        teardown(&e);
}

/* The kernel's refusal of a connect is ConnectFailed with its errno, ENOMEM too (its store() had
 * no memory for the SPDM session): not io.tsmd.System ENOMEM, which says tsmd's own ran out. It
 * is on record and changed nothing: the next connect goes through. */
TEST(a_connect_the_kernel_refuses_for_memory_is_connect_failed) {
        _cleanup_(varlink_client_freep) VarlinkClient *admin = NULL;
        _cleanup_free_ char *written = NULL;
        const char *fail;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        admin = tsmd_connect(&e.tsmd);
        fail = strf("%s/fail-connect", e.kernel_dir);
        write_file(fail, strf("%d\n", ENOMEM));
        CALL_ERROR(admin, "io.tsmd.Admin.ConnectDevice", CONNECT_NVME, "io.tsmd.Admin.ConnectFailed",
                   strf("{\"errno\":%d}", ENOMEM));
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "io.tsmd.Admin.ConnectFailed", 1);
        ASSERT_TRUE(tsmd_is_running(&e.tsmd));

        ASSERT_OK(unlink(fail));
        CALL_OK(admin, "io.tsmd.Admin.ConnectDevice", CONNECT_NVME);
        written = read_file(strf("%s" NVME_PATH "/tsm/connect", e.root));
        ASSERT_STREQ(written, "tsm1");

        varlink_client_free(TAKE_PTR(admin));
        teardown(&e);
}

/* A device no policy rule lists for the backend of the TSM its connection is with is none of
 * tsmd's business: an administrator's connect or disconnect of it is refused DeviceNotListed,
 * naming that backend, by the worker before the monitor is asked (which would refuse it too), on
 * record as the other refusals are, and nothing is written to sysfs. tsmctl says how to list it.
 * Here the NVMe is in no rule, and the GPU only for SEV-TIO, not for its TSM's TDX Connect. */
TEST(a_device_no_rule_lists_is_neither_connected_nor_disconnected) {
        _cleanup_(varlink_client_freep) VarlinkClient *admin = NULL;
        _cleanup_free_ char *out = NULL, *err = NULL, *connect = NULL, *disconnect = NULL;
        const char *argv[] = { TSMCTL_PATH, NULL, "connect", NVME_ADDR, "tsm1", NULL };
        json_object *records;
        int status;
        Env e;

        setup_policy(&e, "[Client:tests]\nUsers=root\nDevices=" NIC_ADDR " " GPU_ADDR "\nBackends=sev-tio\n");
        ASSERT_OK(sysfs_fixture_write_attr(e.root, GPU_PATH, "tsm/disconnect", ""));
        admin = tsmd_connect(&e.tsmd);

        CALL_ERROR(admin, "io.tsmd.Admin.ConnectDevice", CONNECT_NVME, "io.tsmd.Admin.DeviceNotListed",
                   "{\"pciAddress\":\"" NVME_ADDR "\",\"backend\":\"tdx-connect\"}");
        CALL_ERROR(admin, "io.tsmd.Admin.DisconnectDevice", "{\"pciAddress\":\"" GPU_ADDR "\"}",
                   "io.tsmd.Admin.DeviceNotListed",
                   "{\"pciAddress\":\"" GPU_ADDR "\",\"backend\":\"tdx-connect\"}");
        /* The backend asked about is the named TSM's: the GPU is listed for tsm0's SEV-TIO (and
         * connected to tsm1, so the monitor refuses it for that). */
        CALL_ERROR(admin, "io.tsmd.Admin.ConnectDevice", "{\"pciAddress\":\"" GPU_ADDR "\",\"tsm\":\"tsm0\"}",
                   "io.tsmd.Admin.DeviceBusy", NULL);
        /* What no rule could list goes to the platform as before. */
        CALL_ERROR(admin, "io.tsmd.Admin.ConnectDevice", "{\"pciAddress\":\"" NVME_ADDR "\",\"tsm\":\"tsm9\"}",
                   "io.tsmd.Admin.NoSuchTsm", NULL);

        connect = read_file(strf("%s" NVME_PATH "/tsm/connect", e.root));
        disconnect = read_file(strf("%s" GPU_PATH "/tsm/disconnect", e.root));
        ASSERT_NULL(strstr(connect, "tsm"));
        ASSERT_NULL(strstr(disconnect, "tsm"));
        ASSERT_FALSE(tsmd_log_contains(&e.tsmd, "Refusing to connect"));
        ASSERT_FALSE(tsmd_log_contains(&e.tsmd, "Refusing to disconnect"));

        argv[1] = strf("--socket=%s", e.tsmd.socket);
        status = run_capture(argv, &out, &err, TSMD_WAIT_USEC);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1);
        ASSERT_NOT_NULL(strstr(err, "io.tsmd.Admin.DeviceNotListed"));
        ASSERT_NOT_NULL(strstr(err, "No rule of tsmd's policy lists " NVME_ADDR " for the backend of tsm1"));

        /* On record, with the device and the backend. */
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "io.tsmd.Admin.DeviceNotListed", 2);
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.DisconnectDevice", "io.tsmd.Admin.DeviceNotListed", 1);
        records = tsmd_audit_query(&e.tsmd, "{\"pciAddress\":\"" GPU_ADDR "\","
                                            "\"result\":\"io.tsmd.Admin.DeviceNotListed\"}");
        ASSERT_EQ(json_object_array_length(records), 1u);
        ASSERT_STREQ(JSTR(json_object_array_get_idx(records, 0), "backend"), "tdx-connect");
        json_object_put(records);

        /* Listed: connected, and disconnected. */
        tsmd_write_file(&e.tsmd, "policy.conf", "[Client:tests]\nUsers=root\nDevices=*\n");
        CALL_OK(admin, "io.tsmd.Service.Reload", NULL);
        CALL_OK(admin, "io.tsmd.Admin.ConnectDevice", CONNECT_NVME);
        CALL_OK(admin, "io.tsmd.Admin.DisconnectDevice", "{\"pciAddress\":\"" GPU_ADDR "\"}");
        free(disconnect);
        disconnect = read_file(strf("%s" GPU_PATH "/tsm/disconnect", e.root));
        ASSERT_STREQ(disconnect, "tsm1");

        varlink_client_free(TAKE_PTR(admin));
        teardown(&e);
}

/* An admin who leaves before the kernel is done does not stop the connect (the device changes
 * all the same): it is recorded with its outcome when it ends, under the admin's uid, which the
 * call kept as its connection went. */
TEST(a_connect_outlives_its_admin) {
        _cleanup_(varlink_client_freep) VarlinkClient *admin = NULL, *vmm = NULL;
        _cleanup_free_ char *written = NULL;
        AsyncCall connect = {};
        HeldWrite h;
        json_object *r;
        int64_t ctx;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        admin = connect_held(&e, &h, &connect);
        varlink_client_free(TAKE_PTR(admin));
        async_call_done(&connect);
        ASSERT_EQ(tsmd_audit_count(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "ok"), 0u);

        written = connect_release(&h);
        ASSERT_STREQ(written, "tsm1");
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "ok", 1);
        vmm = tsmd_connect_guest(&e.tsmd);
        ctx = open_context(vmm);
        r = CALL_OK(vmm, G "AttachDevice", attach_params(vmm, ctx, 13, NVME_ADDR));
        ASSERT_STREQ(JSTR(r, "backend"), "tdx-connect");

        varlink_client_free(TAKE_PTR(vmm));
        teardown(&e);
}

/* A connect is made only if its record can be: the room reserved for it before is held until
 * its answer is recorded, however long the kernel takes. With one record in flight at most, the
 * connect's is the one: a guest call meanwhile is refused for want of room, as it would be if
 * the disk had filled, and the connect's own record is still written. */
TEST(a_connect_holds_its_record_until_answered) {
        _cleanup_(varlink_client_freep) VarlinkClient *vmm = NULL, *admin = NULL;
        _cleanup_free_ char *written = NULL;
        AsyncCall connect = {};
        HeldWrite h;
        Env e;

        setup_full(&e, 5 * USEC_PER_SEC, "[Audit]\nMaxRecordsInFlight=1\n");
        vmm = tsmd_connect_guest(&e.tsmd);
        (void) open_context(vmm);

        admin = connect_held(&e, &h, &connect);
        CALL_ERROR(vmm, G "OpenContext", NULL, E_GUEST("AuditFailed"), strf("{\"errno\":%d}", ENOBUFS));

        written = connect_release(&h);
        ASSERT_STREQ(written, "tsm1");
        ASSERT_TRUE(tsmd_async_wait(admin, &connect, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(connect.errors[0]);
        (void) open_context(vmm);
        tsmd_expect_audit(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "ok", 1);

        async_call_done(&connect);
        varlink_client_free(TAKE_PTR(vmm));
        teardown(&e);
}

/* A connect whose record fails after the kernel made it (the room was reserved: the write of
 * the record itself fails, EFBIG past the worker's RLIMIT_FSIZE, a stand-in for an I/O error)
 * is not answered as made: AuditFailed, as a guest request's would be, and the log refuses
 * everything until it is repaired and reloaded. The host did change: the device is connected. */
TEST(a_connect_whose_record_fails_is_answered_audit_failed) {
        _cleanup_(varlink_client_freep) VarlinkClient *admin = NULL, *vmm = NULL;
        _cleanup_free_ char *written = NULL;
        AsyncCall connect = {};
        HeldWrite h;
        struct stat st;
        json_object *r;
        int64_t ctx;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        admin = connect_held(&e, &h, &connect);
        /* Every answered record is on disk, the connect's room reserved: no write may grow the
         * file any more. */
        ASSERT_OK(stat(strf("%s/audit/audit.log", e.tsmd.dir), &st));
        tsmd_set_worker_fsize(&e.tsmd, (rlim_t) st.st_size);

        written = connect_release(&h);
        ASSERT_STREQ(written, "tsm1");
        ASSERT_TRUE(tsmd_async_wait(admin, &connect, 1, TSMD_WAIT_USEC));
        ASSERT_STREQ(connect.errors[0], "io.tsmd.Admin.AuditFailed");
        ASSERT_TRUE(json_matches(connect.params[0], strf("{\"errno\":%d}", EFBIG)));
        CALL_ERROR(admin, "io.tsmd.Admin.ConnectDevice", CONNECT_NVME, "io.tsmd.Admin.AuditFailed", NULL);

        tsmd_set_worker_fsize(&e.tsmd, RLIM_INFINITY);
        /* The reload reopens the log (the same tsmd.conf). */
        ASSERT_TRUE(tsmd_reload(&e.tsmd, strf("[Platform]\nMode=kernel\nIommuDevice=" IOMMU_DEVICE
                                              "\nRequestTimeoutUSec=%" PRIu64 "\n", 5 * USEC_PER_SEC)));
        ASSERT_EQ(tsmd_audit_count(&e.tsmd, 0, "io.tsmd.Admin.ConnectDevice", "ok"), 0u);
        vmm = tsmd_connect_guest(&e.tsmd);
        ctx = open_context(vmm);
        r = CALL_OK(vmm, G "AttachDevice", attach_params(vmm, ctx, 13, NVME_ADDR));
        ASSERT_STREQ(JSTR(r, "backend"), "tdx-connect");

        async_call_done(&connect);
        varlink_client_free(TAKE_PTR(vmm));
        teardown(&e);
}

/* ---- late answers of the kernel --------------------------------------------------------- */

/* A state-changing guest request the kernel holds past RequestTimeoutUSec=: the VMM is told
 * Timeout, and that is recorded. The kernel then does it after all: the TDI changed behind the
 * record, so the audit log says so, naming the request's record and who it was for. */
TEST(a_late_state_change_is_audited) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        json_object *records, *timeout, *late;
        int64_t ctx;
        Env e;

        setup(&e, 300 * USEC_PER_MSEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);
        change(c, G "Bind", ctx, 11);

        state_change_times_out(&e, c, ctx);
        wait_record(&e.tsmd, NIC_ADDR, "guest-request", E_GUEST("Timeout"));
        /* Nothing late yet: the kernel still has it. */
        records = audit_of(&e.tsmd, NIC_ADDR);
        timeout = json_object_array_get_idx(records, find_record(records, 0, "guest-request", E_GUEST("Timeout")));
        for (size_t i = 0; i < json_object_array_length(records); i++)
                ASSERT_FALSE(streq(JSTR(json_object_array_get_idx(records, i), "event"), "guest-request-late"));

        hold(&e, 11, false);
        late = wait_record_of(&e.tsmd, NIC_ADDR, "guest-request-late");
        ASSERT_STREQ(JSTR(late, "result"), "ok");
        ASSERT_EQ(JINT(late, "originalSeq"), JINT(timeout, "seq"));
        ASSERT_TRUE(JINT(late, "seq") > JINT(timeout, "seq"));
        ASSERT_EQ(JINT(late, "uid"), JINT(timeout, "uid"));
        ASSERT_EQ(JINT(late, "pid"), JINT(timeout, "pid"));
        ASSERT_EQ(JINT(late, "contextId"), ctx);
        ASSERT_EQ(JINT(late, "vdeviceId"), 11);
        ASSERT_STREQ(JSTR(late, "pci"), NIC_ADDR);
        ASSERT_STREQ(JSTR(late, "backend"), "sev-tio");
        ASSERT_STREQ(JSTR(late, "scope"), "state-change");
        ASSERT_EQ(JINT(late, "scopeNumber"), 1);
        ASSERT_EQ(JINT(late, "responseSize"), strlen("pong"));
        /* How late: from when the request went to the kernel, past its timeout. */
        ASSERT_TRUE(JINT(late, "latencyUsec") >= 300 * (int64_t) USEC_PER_MSEC);
        ASSERT_FALSE(has_key(late, "count"));
        json_object_put(late);
        json_object_put(records);

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* A late failure is recorded with the kernel's errno. */
TEST(a_late_failure_is_audited) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        AsyncCall held = {};
        json_object *late;
        int64_t ctx;
        Env e;

        setup(&e, 300 * USEC_PER_MSEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = bound_nic_context(c, NULL);
        hold(&e, 11, true);
        fail(&e, 11, EIO);
        tsmd_call_async(c, G "GuestRequest", request_params(ctx, 11, "info"), 0, &held);
        ASSERT_TRUE(tsmd_async_wait(c, &held, 1, TSMD_WAIT_USEC));
        ASSERT_STREQ(held.errors[0], E_GUEST("Timeout"));
        hold(&e, 11, false);
        late = wait_record_of(&e.tsmd, NIC_ADDR, "guest-request-late");
        ASSERT_STREQ(JSTR(late, "result"), "EIO");
        ASSERT_STREQ(JSTR(late, "scope"), "info");
        ASSERT_TRUE(json_object_is_type(json_object_object_get(late, "responseSize"), json_type_null));
        json_object_put(late);

        async_call_done(&held);
        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* A request of request (base64), offered no response buffer, that the kernel holds past the
 * request timeout (Timeout) and then answers: its late record, the nth of the device's. */
static json_object *late_record_of_request(Env *e, VarlinkClient *c, int64_t ctx, const char *request, size_t nth) {
        AsyncCall held = {};

        hold(e, 11, true);
        tsmd_call_async(c, G "GuestRequest",
                        strf("{\"context\":%" PRIi64 ",\"vdeviceId\":11,\"scope\":\"state-change\","
                             "\"request\":\"%s\",\"maxResponseSize\":0}", ctx, request),
                        0, &held);
        ASSERT_TRUE(tsmd_async_wait(c, &held, 1, TSMD_WAIT_USEC));
        ASSERT_STREQ(held.errors[0], E_GUEST("Timeout"));
        async_call_done(&held);
        hold(e, 11, false);
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;; sleep_usec(5 * USEC_PER_MSEC)) {
                json_object *records = audit_of(&e->tsmd, NIC_ADDR), *rec = NULL;
                size_t i = 0;

                for (size_t n = 0; has_record(records, i, "guest-request-late", "ok", &i); i++)
                        if (n++ == nth) {
                                rec = json_object_get(json_object_array_get_idx(records, i));
                                break;
                        }
                json_object_put(records);
                if (rec)
                        return rec;
                if (now_usec() > deadline)
                        TEST_FAIL("no guest-request-late record %zu for " NIC_ADDR, nth);
        }
}

/* A request its TSM, offered no response buffer, consumed in part, answered late: the late
 * record says what the TSM left (requestUnconsumed), as the record of one answered on time does
 * (a_request_the_tsm_consumed_in_part_says_what_it_left); that of one it took whole has no such
 * field. The fake's TSM takes FAKE_KERNEL_CONSUMED (16) bytes. */
TEST(a_late_answer_says_what_the_tsm_left_of_the_request) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        json_object *late;
        int64_t ctx;
        Env e;

        setup(&e, 300 * USEC_PER_MSEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = bound_nic_context(c, NULL);

        /* GET_TDISP_VERSION's header and 4 bytes more. */
        late = late_record_of_request(&e, c, ctx, "EIEAAAAAAAAAAAAAAAAAAAAAAAA=", 0);
        ASSERT_EQ(JINT(late, "responseSize"), 0);
        ASSERT_EQ(JINT(late, "requestUnconsumed"), 4);
        json_object_put(late);
        late = late_record_of_request(&e, c, ctx, TDISP_VERSION_REQUEST, 1);
        ASSERT_EQ(JINT(late, "responseSize"), 0);
        ASSERT_FALSE(has_key(late, "requestUnconsumed"));
        json_object_put(late);

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* An Unbind the kernel holds when its device is unplugged is answered DeviceGone at once, and
 * tsmd records the device unbound; the kernel then fails it: the device may still be bound,
 * and the audit log says so. */
TEST(a_late_failure_of_an_abandoned_unbind_is_audited) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        AsyncCall unbind = {};
        json_object *late;
        int64_t ctx;
        Env e;
        int r;

        setup_env(&e, 5 * USEC_PER_SEC, "", true);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);
        change(c, G "Bind", ctx, 11);

        hold(&e, 11, true);
        fail(&e, 11, EIO);
        tsmd_call_async(c, G "Unbind", guest_vdev_params(ctx, 11), 0, &unbind);
        expect_kernel_calls(&e, "op 11 1\nop 11 2\n");
        /* Hot-unplug of the NIC: the directory goes, then udev's "remove". */
        ASSERT_OK(sysfs_fixture_remove(e.root, "/devices/pci0000:00/0000:00:01.1/0000:01:00.0"));
        r = uevent_send("remove", "/devices/pci0000:00/0000:00:01.1/0000:01:00.0", "pci", NULL, ++e.seqnum);
        ASSERT_OK(r);
        ASSERT_TRUE(tsmd_async_wait(c, &unbind, 1, TSMD_WAIT_USEC));
        ASSERT_STREQ(unbind.errors[0], E_GUEST("DeviceGone"));

        hold(&e, 11, false);
        late = wait_record_of(&e.tsmd, NIC_ADDR, "unbind-late");
        ASSERT_STREQ(JSTR(late, "result"), "EIO");
        ASSERT_EQ(JINT(late, "contextId"), ctx);
        ASSERT_EQ(JINT(late, "vdeviceId"), 11);
        ASSERT_STREQ(JSTR(late, "backend"), "sev-tio");
        ASSERT_TRUE(JINT(late, "originalSeq") > 0);
        json_object_put(late);

        async_call_done(&unbind);
        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* A VMM hangs up with its device bound: the release's unbind is in the kernel when the device is
 * unplugged. The release is recorded DeviceGone (not done, as a Bind or Unbind whose device went
 * is), and when the kernel fails the unbind after all, its unbind-late names that record. */
TEST(a_release_whose_device_went_is_audited_device_gone) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        json_object *release, *late;
        int64_t ctx;
        Env e;
        int r;

        setup_env(&e, 5 * USEC_PER_SEC, "", true);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);
        change(c, G "Bind", ctx, 11);

        hold(&e, 11, true);
        fail(&e, 11, EIO);
        varlink_client_free(TAKE_PTR(c));
        expect_kernel_calls(&e, "op 11 1\nop 11 2\n");
        ASSERT_OK(sysfs_fixture_remove(e.root, "/devices/pci0000:00/0000:00:01.1/0000:01:00.0"));
        r = uevent_send("remove", "/devices/pci0000:00/0000:00:01.1/0000:01:00.0", "pci", NULL, ++e.seqnum);
        ASSERT_OK(r);
        release = wait_record_of(&e.tsmd, NIC_ADDR, "release");
        ASSERT_STREQ(JSTR(release, "result"), E_GUEST("DeviceGone"));
        ASSERT_EQ(JINT(release, "contextId"), ctx);

        hold(&e, 11, false);
        late = wait_record_of(&e.tsmd, NIC_ADDR, "unbind-late");
        ASSERT_STREQ(JSTR(late, "result"), "EIO");
        ASSERT_EQ(JINT(late, "originalSeq"), JINT(release, "seq"));
        json_object_put(late);
        json_object_put(release);
        teardown(&e);
}

/* Every audit record, oldest first (a new reference): summaries name no device. */
static json_object *audit_all(Tsmd *t) {
        _cleanup_(varlink_client_freep) VarlinkClient *admin = tsmd_connect(t);
        json_object *r = CALL_OK(admin, "io.tsmd.Admin.QueryAudit", "{}"), *records;

        ASSERT_TRUE(json_object_object_get_ex(r, "records", &records));
        return json_object_get(records);
}

/* A hung TSM answers every call late: RefusalRecordsPerUid= of them are recorded one by one in
 * each RefusalIntervalSec=, the rest counted in a summary at the interval's end; none is lost. */
TEST(a_flood_of_late_answers_is_bounded) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        const unsigned n = 6;
        size_t one_by_one = 0, summarized = 0;
        char calls[128] = "op 11 1\n";
        json_object *records;
        int64_t ctx;
        Env e;

        setup_full(&e, 100 * USEC_PER_MSEC, "[Audit]\nRefusalRecordsPerUid=2\nRefusalIntervalSec=2\n");
        c = tsmd_connect_guest(&e.tsmd);
        ctx = bound_nic_context(c, NULL);
        for (unsigned i = 0; i < n; i++) {
                AsyncCall held = {};

                hold(&e, 11, true);
                tsmd_call_async(c, G "GuestRequest", request_params(ctx, 11, "info"), 0, &held);
                ASSERT_TRUE(tsmd_async_wait(c, &held, 1, TSMD_WAIT_USEC));
                ASSERT_STREQ(held.errors[0], E_GUEST("Timeout"));
                strcat(calls, "req 11 0\n");
                expect_kernel_calls(&e, calls);
                hold(&e, 11, false);
                async_call_done(&held);
                /* Out of the kernel before the next is held (the journal's line is rate limited
                 * to 10 in 10 s: these are fewer). */
                ASSERT_TRUE(tsmd_wait_log(&e.tsmd, "Kernel TSM request of " NIC_ADDR " (vDevice 11) succeeded after",
                                          i + 1, TSMD_WAIT_USEC));
        }

        /* Every one accounted for, once the interval's summary is written. */
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;; sleep_usec(50 * USEC_PER_MSEC)) {
                one_by_one = summarized = 0;
                records = audit_all(&e.tsmd);
                for (size_t i = 0; i < json_object_array_length(records); i++) {
                        json_object *rec = json_object_array_get_idx(records, i);

                        if (!streq(JSTR(rec, "event"), "guest-request-late"))
                                continue;
                        ASSERT_STREQ(JSTR(rec, "result"), "ok");
                        if (has_key(rec, "count"))
                                summarized += (size_t) JINT(rec, "count");
                        else
                                one_by_one++;
                }
                json_object_put(records);
                if (one_by_one + summarized == n || now_usec() > deadline)
                        break;
        }
        ASSERT_EQ(one_by_one + summarized, (size_t) n);
        /* At most two intervals' worth one by one: the loop may straddle an interval's end. */
        ASSERT_TRUE(one_by_one >= 2 && one_by_one <= 4);
        ASSERT_TRUE(summarized > 0);

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* A connect whose worker dies before the kernel is done: its outcome is recorded by the next
 * worker, when the kernel answers, and that worker (which looked at the device while the
 * kernel was connecting it) sees the device connected from then on: a VMM attaches it. */
TEST(a_connect_answered_after_its_worker_died_is_audited) {
        _cleanup_(varlink_client_freep) VarlinkClient *admin = NULL, *vmm = NULL;
        _cleanup_free_ char *written = NULL;
        AsyncCall connect = {};
        json_object *late, *r;
        HeldWrite h;
        int64_t ctx;
        Env e;

        setup(&e, 5 * USEC_PER_SEC);
        admin = connect_held(&e, &h, &connect);
        tsmd_kill_worker(&e.tsmd);
        async_call_done(&connect);
        varlink_client_free(TAKE_PTR(admin));

        written = connect_release(&h);
        ASSERT_STREQ(written, "tsm1");
        late = wait_record_of(&e.tsmd, NVME_ADDR, "connect-device-late");
        ASSERT_STREQ(JSTR(late, "result"), "ok");
        ASSERT_FALSE(has_key(late, "originalSeq")); /* another worker's call */
        json_object_put(late);

        vmm = tsmd_connect_guest(&e.tsmd);
        ctx = open_context_full(vmm, NULL);
        r = CALL_OK(vmm, G "AttachDevice", attach_params(vmm, ctx, 13, NVME_ADDR));
        ASSERT_STREQ(JSTR(r, "backend"), "tdx-connect");
        ASSERT_STREQ(JSTR(r, "tsm"), "tsm1");

        teardown(&e);
}

/* A late answer the monitor sent a worker that ended before it read it goes to the next worker:
 * recorded once. (The worker is stopped, so that the LATE waits in its channel, then killed.) */
TEST(a_late_answer_its_worker_never_read_is_audited) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        json_object *late;
        pid_t worker;
        int64_t ctx;
        Env e;

        setup(&e, 300 * USEC_PER_MSEC);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = bound_nic_context(c, NULL);
        state_change_times_out(&e, c, ctx);

        worker = tsmd_worker_pid(&e.tsmd);
        ASSERT_TRUE(worker > 0);
        ASSERT_OK(kill(worker, SIGSTOP));
        hold(&e, 11, false);
        ASSERT_TRUE(tsmd_wait_log(&e.tsmd, "Kernel TSM request of " NIC_ADDR " (vDevice 11) succeeded after", 1,
                                  TSMD_WAIT_USEC));
        sleep_usec(100 * USEC_PER_MSEC); /* the monitor sends it on (within a millisecond) */
        tsmd_kill_worker(&e.tsmd);

        late = wait_record_of(&e.tsmd, NIC_ADDR, "guest-request-late");
        ASSERT_STREQ(JSTR(late, "result"), "ok");
        ASSERT_STREQ(JSTR(late, "scope"), "state-change");
        ASSERT_EQ(JINT(late, "vdeviceId"), 11); /* (no contextId: not reclaimed yet) */
        ASSERT_EQ(JINT(late, "uid"), (int64_t) getuid());
        ASSERT_FALSE(has_key(late, "originalSeq")); /* that worker's record went with it */
        json_object_put(late);
        ASSERT_EQ(count_records_of(&e.tsmd, NIC_ADDR, "guest-request-late"), 1u);

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* The worker (stopped or not) dies with a record's fdatasync held, the sync is let go, and the
 * next worker serves. */
static void kill_worker_holding_sync(Env *e) {
        unsigned serving = tsmd_log_count(&e->tsmd, "serving again.");
        pid_t worker = tsmd_worker_pid(&e->tsmd);

        ASSERT_TRUE(worker > 0);
        ASSERT_OK(kill(worker, SIGKILL));
        ASSERT_OK(unlink(strf("%s/hold-sync", e->kernel_dir)));
        ASSERT_TRUE(tsmd_wait_log(&e->tsmd, "serving again.", serving + 1, TSMD_WAIT_USEC));
}

/* A worker that ends while the record of a late answer is in the audit file but not yet known
 * durable (its disk is slow) has told the monitor the seq it wrote it under, before it wrote it:
 * the next worker finds that seq in the file, and does not record it again. */
static void late_answer_written_not_synced(Env *e, VarlinkClient *c) {
        int64_t ctx = bound_nic_context(c, NULL);

        state_change_times_out(e, c, ctx);
        wait_record(&e->tsmd, NIC_ADDR, "guest-request", E_GUEST("Timeout")); /* durable */

        write_file(strf("%s/hold-sync", e->kernel_dir), "");
        hold(e, 11, false);
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;; sleep_usec(5 * USEC_PER_MSEC)) {
                _cleanup_free_ char *log = read_file(strf("%s/audit/audit.log", e->tsmd.dir));

                if (log && strstr(log, "\"guest-request-late\""))
                        break;
                if (now_usec() > deadline)
                        TEST_FAIL("the worker never wrote the late answer's record");
        }
}

TEST(a_late_answer_its_worker_wrote_is_not_audited_twice) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        Env e;

        setup(&e, 300 * USEC_PER_MSEC);
        c = tsmd_connect_guest(&e.tsmd);
        late_answer_written_not_synced(&e, c);
        kill_worker_holding_sync(&e);
        /* The next worker had the LATE, read the record at its seq back and skipped it. */
        ASSERT_TRUE(tsmd_wait_log(&e.tsmd, "was recorded by the worker before", 1, TSMD_WAIT_USEC));
        ASSERT_EQ(count_records_of(&e.tsmd, NIC_ADDR, "guest-request-late"), 1u);

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* A worker said it was writing the record of a late answer under a seq and ended before it wrote
 * it; the next worker's first record (its worker-restart) took that seq, and that worker ended
 * before it recorded the answer. The one after finds another record at the seq, not the answer's
 * (its lateId), and records the answer. (The file is made so by hand: the answer's record
 * replaced by another at its seq while its worker is stopped, then that worker killed.) */
TEST(a_late_answer_whose_seq_another_record_took_is_audited) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        _cleanup_free_ char *log = NULL;
        const char *path, *line, *end;
        json_object *late;
        long long seq;
        pid_t worker;
        FILE *f;
        Env e;

        setup(&e, 300 * USEC_PER_MSEC);
        c = tsmd_connect_guest(&e.tsmd);
        late_answer_written_not_synced(&e, c);
        worker = tsmd_worker_pid(&e.tsmd);
        ASSERT_TRUE(worker > 0);
        ASSERT_OK(kill(worker, SIGSTOP));

        path = strf("%s/audit/audit.log", e.tsmd.dir);
        log = read_file(path);
        ASSERT_NOT_NULL(log);
        ASSERT_NOT_NULL(strstr(log, "\"lateId\":"));
        ASSERT_NOT_NULL(line = strstr(log, "\"guest-request-late\""));
        while (line > log && line[-1] != '\n')
                line--;
        ASSERT_EQ(sscanf(line, "{\"seq\":%lld,", &seq), 1);
        end = strchr(line, '\n') + 1;
        ASSERT_NOT_NULL(f = fopen(path, "we"));
        ASSERT_EQ(fwrite(log, 1, (size_t) (line - log), f), (size_t) (line - log));
        ASSERT_TRUE(fprintf(f,
                            "{\"seq\":%lld,\"time\":\"2024-01-01T00:00:00.000000Z\",\"monotonicUsec\":1,"
                            "\"event\":\"worker-restart\",\"result\":\"io.tsmd.WorkerCrashed\"}\n%s",
                            seq, end) > 0);
        ASSERT_OK(fclose(f));

        kill_worker_holding_sync(&e);

        late = wait_record_of(&e.tsmd, NIC_ADDR, "guest-request-late");
        ASSERT_STREQ(JSTR(late, "result"), "ok");
        ASSERT_TRUE(JINT(late, "seq") > seq);
        ASSERT_TRUE(JINT(late, "lateId") > 0);
        json_object_put(late);
        ASSERT_EQ(count_records_of(&e.tsmd, NIC_ADDR, "guest-request-late"), 1u);
        ASSERT_TRUE(tsmd_log_contains(&e.tsmd, "is another's"));

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* The records in the audit file (written, durable or not). */
static size_t audit_lines(Env *e) {
        _cleanup_free_ char *log = read_file(strf("%s/audit/audit.log", e->tsmd.dir));
        size_t n = 0;

        for (const char *p = log; p && (p = strchr(p, '\n')); p++)
                n++;
        return n;
}

/* While hold-sync holds them, lets one fdatasync() through, and waits (bounded) until one took it. */
static void pass_one_sync(Env *e) {
        const char *pass = strf("%s/pass-sync", e->kernel_dir);

        write_file(pass, "");
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC; access(pass, F_OK) >= 0; sleep_usec(5 * USEC_PER_MSEC))
                if (now_usec() > deadline)
                        TEST_FAIL("no fdatasync() took %s", pass);
}

/* The same as a_late_answer_its_worker_wrote_is_not_audited_twice, with a reopen of the log
 * pending when the late answer comes: its record is numbered only after the reopen, and the
 * worker tells the monitor the seq then, before writing it. (A refusal's record waits for a slow
 * disk, the reload's reopen behind it, the late answer's behind that; the disk then finishes that
 * sync and the reopen's own, of the file it resumes, and is slow on the next, the late answer's.) */
TEST(a_late_answer_recorded_after_a_reopen_is_not_audited_twice) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL, *d = NULL;
        const char *refused;
        size_t lines;
        int64_t ctx;
        Env e;

        setup(&e, 300 * USEC_PER_MSEC);
        /* The worker's user takes pass-sync away. */
        ASSERT_OK(chmod(e.kernel_dir, 0777));
        c = tsmd_connect_guest(&e.tsmd);
        d = tsmd_connect_guest(&e.tsmd);
        ctx = bound_nic_context(c, NULL);
        state_change_times_out(&e, c, ctx);
        wait_record(&e.tsmd, NIC_ADDR, "guest-request", E_GUEST("Timeout")); /* durable */

        write_file(strf("%s/hold-sync", e.kernel_dir), "");
        lines = audit_lines(&e);
        /* Answered once durable: not waited for. */
        refused = strf("{\"method\":\"" G "GuestRequest\",\"parameters\":%s}", request_params(ctx, 99, "info"));
        ASSERT_EQ(send(varlink_client_get_fd(d), refused, strlen(refused) + 1, MSG_NOSIGNAL),
                  (ssize_t) strlen(refused) + 1);
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC; audit_lines(&e) == lines; sleep_usec(5 * USEC_PER_MSEC))
                if (now_usec() > deadline)
                        TEST_FAIL("the worker never wrote the refusal's record");
        tsmd_write_config(&e.tsmd, "[Platform]\nMode=kernel\nIommuDevice=" IOMMU_DEVICE "\nRequestTimeoutUSec=300000\n");
        tsmd_kill(&e.tsmd, SIGHUP);
        /* The worker applied the files, and asks for the reopen right after (the same round). */
        ASSERT_TRUE(tsmd_wait_log(&e.tsmd, "Reloaded the files as tsmd read them", 1, TSMD_WAIT_USEC));
        ASSERT_FALSE(tsmd_log_contains(&e.tsmd, "Configuration reloaded")); /* pending */

        hold(&e, 11, false);
        ASSERT_TRUE(tsmd_wait_log(&e.tsmd, "Kernel TSM request of " NIC_ADDR " (vDevice 11) succeeded after", 1,
                                  TSMD_WAIT_USEC));
        sleep_usec(200 * USEC_PER_MSEC); /* the worker had the LATE, and holds its record */
        ASSERT_EQ(audit_lines(&e), lines + 1);

        pass_one_sync(&e); /* the refusal's record's */
        pass_one_sync(&e); /* the reopen's, of audit.log, before it resumes after its records */
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;; sleep_usec(5 * USEC_PER_MSEC)) {
                _cleanup_free_ char *log = read_file(strf("%s/audit/audit.log", e.tsmd.dir));

                if (log && strstr(log, "\"guest-request-late\""))
                        break;
                if (now_usec() > deadline)
                        TEST_FAIL("the worker never wrote the late answer's record");
        }
        kill_worker_holding_sync(&e);
        /* The next worker had the LATE, read the record at its seq back and skipped it. */
        ASSERT_TRUE(tsmd_wait_log(&e.tsmd, "was recorded by the worker before", 1, TSMD_WAIT_USEC));
        ASSERT_EQ(count_records_of(&e.tsmd, NIC_ADDR, "guest-request-late"), 1u);

        varlink_client_free(TAKE_PTR(d));
        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* A reload's reopen of the audit log held pending: a refusal's record (d's, answered once durable:
 * not waited for) waits for a slow disk, the reopen behind it. Records committed now are held,
 * numbered once it finished (reopen_let_go()). */
static void reopen_hold(Env *e, VarlinkClient *d, int64_t ctx) {
        const char *refused;
        size_t lines;

        write_file(strf("%s/hold-sync", e->kernel_dir), "");
        lines = audit_lines(e);
        refused = strf("{\"method\":\"" G "GuestRequest\",\"parameters\":%s}", request_params(ctx, 99, "info"));
        ASSERT_EQ(send(varlink_client_get_fd(d), refused, strlen(refused) + 1, MSG_NOSIGNAL),
                  (ssize_t) strlen(refused) + 1);
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC; audit_lines(e) == lines; sleep_usec(5 * USEC_PER_MSEC))
                if (now_usec() > deadline)
                        TEST_FAIL("the worker never wrote the refusal's record");
        tsmd_write_config(&e->tsmd, "[Platform]\nMode=kernel\nIommuDevice=" IOMMU_DEVICE "\nRequestTimeoutUSec=5000000\n");
        tsmd_kill(&e->tsmd, SIGHUP);
        ASSERT_TRUE(tsmd_wait_log(&e->tsmd, "Reloaded the files as tsmd read them", 1, TSMD_WAIT_USEC));
        ASSERT_FALSE(tsmd_log_contains(&e->tsmd, "Configuration reloaded")); /* pending */
}

static void reopen_let_go(Env *e) {
        ASSERT_OK(unlink(strf("%s/hold-sync", e->kernel_dir)));
        ASSERT_TRUE(tsmd_wait_log(&e->tsmd, "Configuration reloaded", 1, TSMD_WAIT_USEC));
}

/* Whether a context's state file has the NIC as vDevice vdevice changing (its Bind or Unbind on
 * its way), as the worker stores it right before it answers. */
static bool nic_changing(Env *e, uint32_t vdevice) {
        const char *dir = strf("%s/contexts", e->tsmd.dir), *line = strf("VDevice=%u " NIC_ADDR " changing\n", vdevice);
        DIR *d = opendir(dir);
        bool changing = false;
        struct dirent *de;

        ASSERT_NOT_NULL(d);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.') {
                        _cleanup_free_ char *text = read_file(strf("%s/%s", dir, de->d_name));

                        changing = changing || (text && strstr(text, line));
                }
        closedir(d);
        return changing;
}

/* The one record of event in the whole log (a new reference). */
static json_object *the_record_of(Tsmd *t, const char *event) {
        json_object *records = audit_all(t), *found = NULL;

        for (size_t i = 0; i < json_object_array_length(records); i++) {
                json_object *rec = json_object_array_get_idx(records, i);

                if (streq(JSTR(rec, "event"), event)) {
                        ASSERT_NULL(found);
                        found = json_object_get(rec);
                }
        }
        json_object_put(records);
        ASSERT_NOT_NULL(found);
        return found;
}

/* The late answer names the record of the failed call, numbered only once the reopen finished
 * (before the reload's own record): held when the call failed, it had no seq then. answered: the
 * kernel has given its late answer already. */
static void late_names_held_record(Env *e, const char *event, bool answered) {
        json_object *original, *reload, *late;

        original = wait_record_of(&e->tsmd, NIC_ADDR, event);
        ASSERT_STREQ(JSTR(original, "result"), E_GUEST("DeviceGone"));
        reload = the_record_of(&e->tsmd, "reload");
        ASSERT_TRUE(JINT(original, "seq") < JINT(reload, "seq"));

        if (!answered)
                hold(e, 11, false);
        late = wait_record_of(&e->tsmd, NIC_ADDR, "unbind-late");
        ASSERT_STREQ(JSTR(late, "result"), "EIO");
        ASSERT_EQ(JINT(late, "originalSeq"), JINT(original, "seq"));
        json_object_put(late);
        json_object_put(reload);
        json_object_put(original);
}

static void unplug_nic(Env *e) {
        ASSERT_OK(sysfs_fixture_remove(e->root, "/devices/pci0000:00/0000:00:01.1/0000:01:00.0"));
        ASSERT_OK(uevent_send("remove", "/devices/pci0000:00/0000:00:01.1/0000:01:00.0", "pci", NULL, ++e->seqnum));
}

/* An Unbind the kernel holds is answered DeviceGone when its device is unplugged, while a reload's
 * reopen of the audit log is pending: its record is numbered after the reopen, and the kernel's
 * late failure of the unbind still names it. late_during_reopen: that failure comes while the
 * reopen is still pending, and waits for the record it names to be numbered. */
static void late_answer_to_an_unbind_held_for_a_reopen(bool late_during_reopen) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL, *d = NULL;
        AsyncCall unbind = {};
        int64_t ctx;
        Env e;

        setup_env(&e, 5 * USEC_PER_SEC, "", true);
        c = tsmd_connect_guest(&e.tsmd);
        d = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);
        change(c, G "Bind", ctx, 11);

        hold(&e, 11, true);
        fail(&e, 11, EIO);
        tsmd_call_async(c, G "Unbind", guest_vdev_params(ctx, 11), 0, &unbind);
        expect_kernel_calls(&e, "op 11 1\nop 11 2\n");
        ASSERT_TRUE(nic_changing(&e, 11));
        reopen_hold(&e, d, ctx);

        unplug_nic(&e);
        /* Stored settled right before the answer, and its record, held. */
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC; nic_changing(&e, 11); sleep_usec(5 * USEC_PER_MSEC))
                if (now_usec() > deadline)
                        TEST_FAIL("the Unbind was never answered");
        if (late_during_reopen) {
                hold(&e, 11, false);
                ASSERT_TRUE(tsmd_wait_log(&e.tsmd, "late answers of the kernel wait for the audit log", 1,
                                          TSMD_WAIT_USEC));
        }
        reopen_let_go(&e);
        ASSERT_TRUE(tsmd_async_wait(c, &unbind, 1, TSMD_WAIT_USEC));
        ASSERT_STREQ(unbind.errors[0], E_GUEST("DeviceGone"));
        late_names_held_record(&e, "unbind", late_during_reopen);

        async_call_done(&unbind);
        varlink_client_free(TAKE_PTR(d));
        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

TEST(a_late_answer_names_a_record_held_for_a_reopen) {
        late_answer_to_an_unbind_held_for_a_reopen(false);
}

TEST(a_late_answer_during_the_reopen_waits_for_its_record) {
        late_answer_to_an_unbind_held_for_a_reopen(true);
}

/* The same for the unbind of a release (a VMM hung up with its device bound). */
TEST(a_late_answer_names_a_release_held_for_a_reopen) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL, *d = NULL;
        int64_t ctx;
        Env e;

        setup_env(&e, 5 * USEC_PER_SEC, "", true);
        c = tsmd_connect_guest(&e.tsmd);
        d = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);
        change(c, G "Bind", ctx, 11);

        hold(&e, 11, true);
        fail(&e, 11, EIO);
        reopen_hold(&e, d, ctx);
        varlink_client_free(TAKE_PTR(c));
        expect_kernel_calls(&e, "op 11 1\nop 11 2\n");

        unplug_nic(&e);
        /* Logged right before its record, held. */
        ASSERT_TRUE(tsmd_wait_log(&e.tsmd, "Failed to unbind " NIC_ADDR " while releasing it", 1, TSMD_WAIT_USEC));
        reopen_let_go(&e);
        late_names_held_record(&e, "release", false);

        varlink_client_free(TAKE_PTR(d));
        teardown(&e);
}

/* The audit log fails (its disk does), and then the kernel answers a timed-out request late:
 * the worker cannot queue the record, so it does not acknowledge the answer, and keeps it. */
static void late_answer_while_the_log_fails(Env *e, VarlinkClient *c) {
        int64_t ctx = bound_nic_context(c, NULL);

        state_change_times_out(e, c, ctx);
        wait_record(&e->tsmd, NIC_ADDR, "guest-request", E_GUEST("Timeout")); /* durable */

        write_file(strf("%s/fail-sync", e->kernel_dir), "5"); /* EIO */
        /* Any record now fails the log: that of a refusal. */
        ASSERT_NOT_NULL(tsmd_call(c, G "GuestRequest", request_params(ctx, 99, "info"), NULL));
        ASSERT_TRUE(tsmd_wait_log(&e->tsmd, "failed, refusing requests until it is reopened", 1, TSMD_WAIT_USEC));
        hold(e, 11, false);
        ASSERT_TRUE(tsmd_wait_log(&e->tsmd, "Kernel TSM request of " NIC_ADDR " (vDevice 11) succeeded after", 1,
                                  TSMD_WAIT_USEC));
        sleep_usec(200 * USEC_PER_MSEC); /* the worker had the LATE */
        ASSERT_OK(unlink(strf("%s/fail-sync", e->kernel_dir)));
}

/* ... and records it once a reload reopened the log. */
TEST(a_late_answer_the_failed_log_refused_is_audited_after_a_reopen) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        json_object *late;
        Env e;

        setup(&e, 300 * USEC_PER_MSEC);
        c = tsmd_connect_guest(&e.tsmd);
        late_answer_while_the_log_fails(&e, c);
        ASSERT_EQ(count_records_of(&e.tsmd, NIC_ADDR, "guest-request-late"), 0u);

        ASSERT_TRUE(tsmd_reload(&e.tsmd, "[Platform]\nMode=kernel\nIommuDevice=" IOMMU_DEVICE
                                         "\nRequestTimeoutUSec=300000\n"));
        late = wait_record_of(&e.tsmd, NIC_ADDR, "guest-request-late");
        ASSERT_STREQ(JSTR(late, "result"), "ok");
        ASSERT_STREQ(JSTR(late, "scope"), "state-change");
        json_object_put(late);
        ASSERT_EQ(count_records_of(&e.tsmd, NIC_ADDR, "guest-request-late"), 1u);

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* ... or, should the worker end first, the monitor still has it for the next one. */
TEST(a_late_answer_the_failed_log_refused_goes_to_the_next_worker) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        json_object *late;
        Env e;

        setup(&e, 300 * USEC_PER_MSEC);
        c = tsmd_connect_guest(&e.tsmd);
        late_answer_while_the_log_fails(&e, c);

        tsmd_kill_worker(&e.tsmd);
        late = wait_record_of(&e.tsmd, NIC_ADDR, "guest-request-late");
        ASSERT_STREQ(JSTR(late, "result"), "ok");
        json_object_put(late);
        ASSERT_EQ(count_records_of(&e.tsmd, NIC_ADDR, "guest-request-late"), 1u);

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* The kernel answers a call late while no worker runs (between a worker's end and the next one's
 * start): the monitor keeps the answer, and the next worker records it, once. The restart
 * backoff doubles for a worker that dies young (100 ms, 200, 400, 800, then 1.6 s): a fifth
 * death leaves time for the kernel to answer meanwhile. */
TEST(a_late_answer_while_no_worker_runs_is_audited) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        char token[RECLAIM_TOKEN_MAX];
        json_object *late;
        unsigned started;
        pid_t worker;
        int64_t ctx;
        Env e;

        setup(&e, 300 * USEC_PER_MSEC);
        for (unsigned i = 0; i < 4; i++)
                tsmd_kill_worker(&e.tsmd);
        c = tsmd_connect_guest(&e.tsmd);
        ctx = bound_nic_context(c, token);
        state_change_times_out(&e, c, ctx);
        varlink_client_free(TAKE_PTR(c));

        started = tsmd_log_count(&e.tsmd, "Started worker");
        worker = tsmd_worker_pid(&e.tsmd);
        ASSERT_TRUE(worker > 0);
        ASSERT_OK(kill(worker, SIGKILL));
        ASSERT_TRUE(tsmd_wait_log(&e.tsmd, "Restarting the worker in 1600 ms", 1, TSMD_WAIT_USEC));
        hold(&e, 11, false);
        ASSERT_TRUE(tsmd_wait_log(&e.tsmd, "answered late while no worker runs: kept for the next one", 1,
                                  TSMD_WAIT_USEC));
        ASSERT_EQ(tsmd_log_count(&e.tsmd, "Started worker"), started);

        late = wait_record_of(&e.tsmd, NIC_ADDR, "guest-request-late");
        ASSERT_STREQ(JSTR(late, "result"), "ok");
        ASSERT_EQ(JINT(late, "vdeviceId"), 11); /* (no contextId: not reclaimed yet) */
        ASSERT_EQ(JINT(late, "uid"), (int64_t) getuid());
        ASSERT_EQ(JINT(late, "responseSize"), strlen("pong"));
        ASSERT_FALSE(has_key(late, "originalSeq"));
        json_object_put(late);
        ASSERT_EQ(count_records_of(&e.tsmd, NIC_ADDR, "guest-request-late"), 1u);

        teardown(&e);
}

/* A connect whose worker dies, and whose device then goes while the kernel still has it: the
 * kernel's answer is recorded, once (not also the DeviceGone the monitor saw). */
TEST(a_connect_whose_worker_died_and_device_went_is_audited_once) {
        _cleanup_(varlink_client_freep) VarlinkClient *admin = NULL;
        AsyncCall connect = {};
        json_object *late;
        HeldWrite h;
        char buf[4096];
        Env e;

        setup_env(&e, 5 * USEC_PER_SEC, "", true);
        admin = connect_held(&e, &h, &connect);
        tsmd_kill_worker(&e.tsmd);
        async_call_done(&connect);
        varlink_client_free(TAKE_PTR(admin));

        /* Hot-unplug of the NVMe device: the directory goes, then udev's "remove". */
        ASSERT_OK(sysfs_fixture_remove(e.root, NVME_PATH));
        ASSERT_OK(uevent_send("remove", NVME_PATH, "pci", NULL, ++e.seqnum));
        ASSERT_TRUE(tsmd_wait_log(&e.tsmd, "Device " NVME_ADDR " is gone.", 1, TSMD_WAIT_USEC));
        /* The kernel is done: the monitor's write completes. */
        h.wr = safe_close(h.wr);
        for (;;) {
                struct pollfd p = { .fd = h.rd, .events = POLLIN };
                ssize_t n;

                ASSERT_EQ(poll(&p, 1, (int) (TSMD_WAIT_USEC / USEC_PER_MSEC)), 1);
                n = read(h.rd, buf, sizeof(buf));
                if (n == 0)
                        break;
                ASSERT_TRUE(n > 0 || errno == EAGAIN);
        }
        h.rd = safe_close(h.rd);

        late = wait_record_of(&e.tsmd, NVME_ADDR, "connect-device-late");
        ASSERT_STREQ(JSTR(late, "result"), "ok");
        json_object_put(late);
        ASSERT_EQ(count_records_of(&e.tsmd, NVME_ADDR, "connect-device-late"), 1u);

        teardown(&e);
}

/* ---- a binding the kernel ends outside tsmd ------------------------------------------------ */

/* The kernel binds a TDI of the NIC: its tsm/bound names the TSM (no uevent says so). */
static void nic_bound_fills(Env *e) {
        ASSERT_OK(sysfs_fixture_write_attr(e->root, NIC_PATH, "tsm/bound", "tsm0"));
}

/* The NIC's tsm/bound empties and udev says it changed, for both processes to read it again. */
static void nic_bound_empties(Env *e) {
        ASSERT_OK(sysfs_fixture_write_attr(e->root, NIC_PATH, "tsm/bound", ""));
        ASSERT_OK(uevent_send("change", NIC_PATH, "pci", NULL, ++e->seqnum));
}

/* Both processes have handled the uevents sent so far (each handles its own in order): the NVMe
 * device, unplugged after them, is gone in both. */
static void both_processes_caught_up(Env *e) {
        ASSERT_OK(sysfs_fixture_remove(e->root, NVME_PATH));
        ASSERT_OK(uevent_send("remove", NVME_PATH, "pci", NULL, ++e->seqnum));
        ASSERT_TRUE(tsmd_wait_log(&e->tsmd, "Device " NVME_ADDR " is gone.", 2, TSMD_WAIT_USEC));
}

/* What tsmd does once it read vDevice 11's binding (the NIC's, of ctx) ended outside it: an
 * unbound-outside record naming its owner, GetDeviceState unbound, device-unbound to the watcher
 * w (we, its first notification had), a log line, and its guest request refused DeviceNotBound
 * without asking the kernel, whose only call was the bind. */
static void expect_told_unbound_outside(Env *e, VarlinkClient *c, VarlinkClient *w, AsyncCall *we, int64_t ctx) {
        json_object *rec, *ev;

        rec = wait_record_of(&e->tsmd, NIC_ADDR, "unbound-outside");
        ASSERT_STREQ(JSTR(rec, "result"), "ok");
        ASSERT_EQ(JINT(rec, "contextId"), ctx);
        ASSERT_EQ(JINT(rec, "vdeviceId"), 11);
        ASSERT_STREQ(JSTR(rec, "backend"), "sev-tio");
        ASSERT_EQ(JINT(rec, "uid"), (int64_t) getuid());
        json_object_put(rec);
        ASSERT_FALSE(is_bound(c, ctx, 11));
        ASSERT_TRUE(tsmd_async_wait(w, we, 2, TSMD_WAIT_USEC));
        ASSERT_NULL(we->errors[1]);
        ASSERT_TRUE(json_object_object_get_ex(we->params[1], "event", &ev));
        ASSERT_TRUE(json_matches(ev, strf("{\"kind\":\"device-unbound\",\"context\":%" PRIi64 ",\"vdeviceId\":11,"
                                          "\"pciAddress\":\"" NIC_ADDR "\",\"state\":null}", ctx)));

        ASSERT_TRUE(tsmd_wait_log(&e->tsmd, "lost its binding of " NIC_ADDR " outside tsmd", 1, TSMD_WAIT_USEC));
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 11, "info"), E_GUEST("BackendError"),
                   "{\"name\":\"DeviceNotBound\",\"errno\":6}");
        expect_kernel_calls(e, "op 11 1\n");
}

/* Another tool disconnects the NIC from its TSM and connects it again: the kernel unbinds the
 * TDI of vDevice 11 first, without a word, and tsm/connect reads as before; tsm/bound, read
 * bound at tsmd's first scan, is empty at the next. tsmd takes vDevice 11 as unbound: in the
 * worker (GetDeviceState; the VMM's WatchEvents hears device-unbound; an unbound-outside record
 * names its owner) and in the monitor, which logs it and refuses its guest request as the kernel
 * would, DeviceNotBound, without asking the kernel. An Unbind succeeds, and a Bind binds it again. */
TEST(a_binding_the_kernel_ended_outside_tsmd_reads_unbound) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL, *w = NULL;
        AsyncCall we = {};
        int64_t ctx;
        Env e;

        setup_env_full(&e, 5 * USEC_PER_SEC, "", true, NULL, "tsm0");
        c = tsmd_connect_guest(&e.tsmd);
        w = tsmd_connect_guest(&e.tsmd);
        ctx = bound_nic_context(c, NULL);
        tsmd_call_async(w, G "WatchEvents", NULL, VARLINK_CALL_MORE, &we);
        ASSERT_TRUE(tsmd_async_wait(w, &we, 1, TSMD_WAIT_USEC));

        ASSERT_OK(unlink(strf("%s/bound-11", e.kernel_dir))); /* the kernel's unbind */
        nic_bound_empties(&e);

        expect_told_unbound_outside(&e, c, w, &we, ctx);

        change(c, G "Unbind", ctx, 11);
        ASSERT_FALSE(is_bound(c, ctx, 11));
        nic_bound_fills(&e); /* as the kernel will at the bind */
        change(c, G "Bind", ctx, 11);
        ASSERT_TRUE(is_bound(c, ctx, 11));
        request_ok(c, ctx, 11, "info", 0);
        expect_kernel_calls(&e, "op 11 1\nop 11 2\nop 11 1\nreq 11 0\n");
        ASSERT_EQ(count_records_of(&e.tsmd, NIC_ADDR, "unbound-outside"), 1u);
        ASSERT_EQ(tsmd_log_count(&e.tsmd, "tsm/bound is empty"), 1u);

        async_call_done(&we);
        varlink_client_free(TAKE_PTR(w));
        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* tsmd's own Unbind, done, that a rescan then sees (tsm/bound empty): nothing ended outside
 * tsmd, nothing is logged or recorded so, and a Bind works as ever. */
TEST(an_unbind_of_tsmds_own_seen_by_a_rescan_is_not_taken_for_one_outside) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        int64_t ctx;
        Env e;

        setup_env_full(&e, 5 * USEC_PER_SEC, "", true, NULL, "tsm0");
        c = tsmd_connect_guest(&e.tsmd);
        ctx = bound_nic_context(c, NULL);
        change(c, G "Unbind", ctx, 11);
        nic_bound_empties(&e);
        both_processes_caught_up(&e);

        ASSERT_FALSE(tsmd_log_contains(&e.tsmd, "tsm/bound is empty"));
        ASSERT_EQ(count_records_of(&e.tsmd, NIC_ADDR, "unbound-outside"), 0u);
        nic_bound_fills(&e); /* as the kernel will at the bind */
        change(c, G "Bind", ctx, 11);
        ASSERT_TRUE(is_bound(c, ctx, 11));
        request_ok(c, ctx, 11, "info", 0);

        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* The same for an Unbind of tsmd's the kernel still has when the rescan sees tsm/bound empty
 * (its doing, perhaps): the vDevice is the Unbind's answer, not taken for one ended outside. */
TEST(an_unbind_of_tsmds_own_on_its_way_is_not_taken_for_one_outside) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        AsyncCall unbind = {};
        int64_t ctx;
        Env e;

        setup_env_full(&e, 5 * USEC_PER_SEC, "", true, NULL, "tsm0");
        c = tsmd_connect_guest(&e.tsmd);
        ctx = bound_nic_context(c, NULL);
        hold(&e, 11, true);
        tsmd_call_async(c, G "Unbind", guest_vdev_params(ctx, 11), 0, &unbind);
        expect_kernel_calls(&e, "op 11 1\nop 11 2\n");
        nic_bound_empties(&e);
        both_processes_caught_up(&e);
        hold(&e, 11, false);
        ASSERT_TRUE(tsmd_async_wait(c, &unbind, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(unbind.errors[0]);

        ASSERT_FALSE(tsmd_log_contains(&e.tsmd, "tsm/bound is empty"));
        ASSERT_EQ(count_records_of(&e.tsmd, NIC_ADDR, "unbound-outside"), 0u);
        ASSERT_FALSE(is_bound(c, ctx, 11));

        async_call_done(&unbind);
        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* The NIC's tsm/bound read empty at the scans before tsmd's own Bind, which the kernel sets as it
 * binds (no uevent); another tool ends the binding before any rescan: tsmd looked at the NIC
 * after its Bind, in both processes, so the rescan that sees tsm/bound empty tells the end of
 * the binding as ever: vDevice 11 reads unbound, recorded unbound-outside, its guest request
 * refused DeviceNotBound without asking the kernel. */
TEST(a_binding_of_tsmds_the_kernel_ended_before_a_rescan_read_it_reads_unbound) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        AsyncCall bind = {};
        json_object *rec;
        int64_t ctx;
        Env e;

        setup_env_full(&e, 5 * USEC_PER_SEC, "", true, NULL, "");
        c = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);
        hold(&e, 11, true);
        tsmd_call_async(c, G "Bind", guest_vdev_params(ctx, 11), 0, &bind);
        expect_kernel_calls(&e, "op 11 1\n");
        nic_bound_fills(&e);
        hold(&e, 11, false);
        ASSERT_TRUE(tsmd_async_wait(c, &bind, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(bind.errors[0]);
        ASSERT_TRUE(is_bound(c, ctx, 11));

        ASSERT_OK(unlink(strf("%s/bound-11", e.kernel_dir))); /* the kernel's unbind */
        nic_bound_empties(&e);

        rec = wait_record_of(&e.tsmd, NIC_ADDR, "unbound-outside");
        ASSERT_STREQ(JSTR(rec, "result"), "ok");
        ASSERT_EQ(JINT(rec, "contextId"), ctx);
        ASSERT_EQ(JINT(rec, "vdeviceId"), 11);
        json_object_put(rec);
        ASSERT_FALSE(is_bound(c, ctx, 11));
        ASSERT_TRUE(tsmd_wait_log(&e.tsmd, "lost its binding of " NIC_ADDR " outside tsmd", 1, TSMD_WAIT_USEC));
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 11, "info"), E_GUEST("BackendError"),
                   "{\"name\":\"DeviceNotBound\",\"errno\":6}");
        expect_kernel_calls(&e, "op 11 1\n");
        ASSERT_EQ(count_records_of(&e.tsmd, NIC_ADDR, "unbound-outside"), 1u);

        async_call_done(&bind);
        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

/* tsmd's own Bind succeeds, and tsm/bound reads empty still when tsmd looks at the NIC after it:
 * the kernel ended the binding already, outside tsmd. The VMM has its Bind answered, then hears
 * device-unbound; vDevice 11 reads unbound, recorded unbound-outside, and its guest request is
 * refused DeviceNotBound without asking the kernel. */
TEST(a_binding_of_tsmds_read_ended_at_its_bind_reads_unbound) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL, *w = NULL;
        AsyncCall we = {};
        int64_t ctx;
        Env e;

        setup_env_full(&e, 5 * USEC_PER_SEC, "", false, NULL, "");
        c = tsmd_connect_guest(&e.tsmd);
        w = tsmd_connect_guest(&e.tsmd);
        ctx = nic_context(c, NULL);
        tsmd_call_async(w, G "WatchEvents", NULL, VARLINK_CALL_MORE, &we);
        ASSERT_TRUE(tsmd_async_wait(w, &we, 1, TSMD_WAIT_USEC));
        change(c, G "Bind", ctx, 11);

        expect_told_unbound_outside(&e, c, w, &we, ctx);
        ASSERT_EQ(count_records_of(&e.tsmd, NIC_ADDR, "unbound-outside"), 1u);

        async_call_done(&we);
        varlink_client_free(TAKE_PTR(w));
        varlink_client_free(TAKE_PTR(c));
        teardown(&e);
}

TEST_MAIN()
