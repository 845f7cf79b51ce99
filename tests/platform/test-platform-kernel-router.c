/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The router's kernel path (daemon/tsm-platform.c, over daemon/kernel-lanes.c) on the two-TSM
 * fixture, with a fake v5 kernel in the transport's syscall seam (fake-tsm-kernel.h) that can
 * hold a device's call the way slow firmware does: a request reaches the kernel with the
 * serving backend's scope number and is answered on the loop; while one device's call is
 * held, the other device's requests are answered, and the held one fails with -ETIMEDOUT at
 * the request timeout (its late answer dropped); a bind waits on the same lane, past that
 * timeout, and holds no other device; a device that disconnects meanwhile fails its request
 * at once with -ENODEV. Runs in: tests (root, a private mount namespace; SKIPs otherwise).
 */

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include "backend.h"
#include "emu-device.h"
#include "emu-platform.h"
#include "fake-tsm-kernel.h"
#include "harness.h"
#include "iommufd-uapi.h"
#include "platform-test-util.h"
#include "sysfs-fixture.h"
#include "tsm-platform.h"
#include "uevent-sender.h"

#define NIC "0000:01:00.0" /* on tsm0, SEV-TIO */
#define GPU "0000:02:00.0" /* on tsm1, TDX Connect */
#define NIC_FN1 "0000:01:00.1" /* no tsm/: served through the NIC, its DSM */
#define NVME "0000:03:00.0" /* a DSM not connected */
#define NIC_DEVPATH "/devices/pci0000:00/0000:00:01.1/0000:01:00.0"
#define NIC_CONNECT "devices/pci0000:00/0000:00:01.1/0000:01:00.0/tsm/connect"
#define NIC_FN1_DEVPATH "/devices/pci0000:00/0000:00:01.1/0000:01:00.1"
#define VDEV_NIC 11
#define VDEV_GPU 22
#define TIMEOUT_USEC 300000ULL

/* The last bind or unbind (op) or request the fake kernel saw. */
static FakeKernelCall last_call(bool op) {
        FakeKernelCall calls[FAKE_KERNEL_CALLS_MAX];
        size_t n = fake_kernel_calls(calls, ELEMENTSOF(calls));

        ASSERT_LE(n, ELEMENTSOF(calls));
        for (size_t i = n; i > 0; i--)
                if (calls[i - 1].op == op)
                        return calls[i - 1];
        TEST_FAIL("the kernel saw no %s", op ? "bind or unbind" : "request");
}

typedef struct Done {
        unsigned n;
        int result;
        size_t response_len;
        char response[64];
        uint64_t start, at;
} Done;

static void on_done(TsmRequest *r, int result, void *userdata) {
        Done *d = userdata;

        d->n++;
        d->result = result;
        d->at = now_monotonic_usec() - d->start;
        if (result >= 0) {
                const void *resp = tsm_request_get_response(r, &d->response_len);

                ASSERT_LE(d->response_len, sizeof(d->response));
                if (d->response_len > 0) /* a bind has none: resp may be NULL */
                        memcpy(d->response, resp, d->response_len);
        }
}

typedef struct Router {
        const char *sysfs;
        struct event_base *base;
        TsmPlatform *platform;
        int iommufd; /* stands for the VMM's */
} Router;

static void router_setup_full(Router *t, bool with_uevents) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_KERNEL,
                .iommu_device = (char *) "/dev/iommu",
                .request_timeout_usec = TIMEOUT_USEC,
        };
        TsmUapiVersion v;

        if (with_uevents && !platform_test_udev_monitor_possible())
                SKIP("sd-device disables udev monitors without /run/udev/control or a devtmpfs /dev");
        platform_test_sandbox(with_uevents);
        if (with_uevents) {
                ASSERT_TRUE(platform_test_netns_is_private());
                ASSERT_EQ(uevent_in_private_netns(), 1);
        }
        t->sysfs = platform_test_fixture("two-tsms", NULL);
        fake_kernel_install(VDEV_NIC);
        ASSERT_NOT_NULL(t->base = event_base_new());
        ASSERT_OK(tsm_platform_new(t->base, &config, &t->platform));
        ASSERT_OK(tsm_platform_get_uapi(t->platform, &v));
        ASSERT_EQ(v, TSM_UAPI_V5);
        ASSERT_OK(t->iommufd = open("/dev/null", O_RDWR | O_CLOEXEC));
}

static void run_until(Router *t, Done *d, unsigned n);

/* As the VMM binds it before its guest's requests: the kernel answers those of a TDI not bound
 * ENXIO (pci_tsm_guest_req()). */
static void bind_vdevice(Router *t, const char *device, uint32_t vdevice) {
        TsmTarget target = { .pci_address = device, .iommufd = t->iommufd, .vdevice_id = vdevice };
        Done d = {};

        ASSERT_OK(tsm_platform_bind(t->platform, &target, on_done, &d, NULL));
        run_until(t, &d, 1);
        ASSERT_EQ(d.result, 0);
}

/* The NIC and the GPU bound. */
static void router_setup(Router *t) {
        router_setup_full(t, false);
        bind_vdevice(t, NIC, VDEV_NIC);
        bind_vdevice(t, GPU, VDEV_GPU);
}

static void router_teardown(Router *t) {
        safe_close(t->iommufd);
        tsm_platform_free(t->platform);
        event_base_free(t->base);
        fake_kernel_uninstall();
}

static void request(Router *t, const char *device, uint32_t vdevice, const char *scope, Done *d) {
        TsmTarget target = { .pci_address = device, .iommufd = t->iommufd, .vdevice_id = vdevice };

        d->start = now_monotonic_usec();
        ASSERT_OK(tsm_platform_request(t->platform, &target, scope, "ping", 4, 64, on_done, d, NULL));
}

/* The devices the platform said were gone, one letter each: 'n' (NIC), 'f' (its function 1),
 * 'g' (GPU), '?'. */
static void on_gone(TsmPlatform *p, const char *pci_address, void *userdata) {
        char *gone = userdata;
        size_t n = strlen(gone);

        ASSERT_LE(n, 14u);
        gone[n] = streq(pci_address, NIC) ? 'n' : streq(pci_address, NIC_FN1) ? 'f' : streq(pci_address, GPU) ? 'g' : '?';
}

static void run_until(Router *t, Done *d, unsigned n) {
        const struct timeval slice = { .tv_sec = 0, .tv_usec = 5000 };

        for (unsigned i = 0; d->n < n; i++) {
                ASSERT_LE(i, 2000u); /* 10 s */
                ASSERT_OK(event_base_loopexit(t->base, &slice));
                ASSERT_OK(event_base_dispatch(t->base));
        }
}

/* Runs the loop for 50 ms: what is due in that time is done. */
static void run_for_a_while(Router *t) {
        const struct timeval slice = { .tv_sec = 0, .tv_usec = 50000 };

        ASSERT_OK(event_base_loopexit(t->base, &slice));
        ASSERT_OK(event_base_dispatch(t->base));
}

TEST(request_reaches_the_kernel_and_is_answered) {
        Router t;
        Done d = {};

        router_setup(&t);
        request(&t, GPU, VDEV_GPU, TSM_SCOPE_STATE_CHANGE, &d);
        run_until(&t, &d, 1);
        ASSERT_EQ(d.result, 0);
        ASSERT_EQ(d.response_len, 4u);
        ASSERT_MEMEQ(d.response, "pong", 4);
        ASSERT_EQ(last_call(false).value, 1u); /* v5 PCI_STATE_CHANGE */
        router_teardown(&t);
}

/* The kernel takes a debug scope's number, and the PCI TSM core refuses it (pci_tsm_guest_req():
 * EINVAL for every scope past STATE_CHANGE); a TDI not bound it refuses ENXIO. */
TEST(request_the_kernel_refuses_is_its_answer) {
        Router t;
        Done d = {};

        router_setup(&t);
        request(&t, GPU, VDEV_GPU, TSM_SCOPE_DEBUG_READ, &d);
        run_until(&t, &d, 1);
        ASSERT_EQ(d.result, -EINVAL);
        ASSERT_EQ(last_call(false).value, 2u); /* v5 PCI_DEBUG_READ */
        request(&t, GPU, VDEV_GPU, TSM_SCOPE_DEBUG_WRITE, &d);
        run_until(&t, &d, 2);
        ASSERT_EQ(d.result, -EINVAL);
        ASSERT_EQ(last_call(false).value, 3u); /* v5 PCI_DEBUG_WRITE */

        request(&t, GPU, VDEV_GPU + 1, TSM_SCOPE_INFO, &d);
        run_until(&t, &d, 3);
        ASSERT_EQ(d.result, -ENXIO);
        router_teardown(&t);
}

/* No TSM UAPI to be had (here: no iommufd device at all): every kernel call of the platform says
 * so by one name, EOPNOTSUPP, not by whatever the probe met (ENOENT would read "no such
 * vDevice" to a VMM, EPROTO "the connection is gone"). */
TEST(no_uapi_is_not_supported_whatever_the_probe_met) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_KERNEL,
                .iommu_device = (char *) "/nonexistent/iommu",
                .request_timeout_usec = TIMEOUT_USEC,
        };
        struct event_base *base;
        TsmPlatform *p;
        TsmTarget target = { .pci_address = NIC, .iommufd = -EBADF, .vdevice_id = VDEV_NIC };
        TsmUapiVersion v;
        Done d = {};

        platform_test_sandbox(false);
        (void) platform_test_fixture("two-tsms", NULL);
        ASSERT_NOT_NULL(base = event_base_new());
        ASSERT_OK(tsm_platform_new(base, &config, &p));
        ASSERT_ERRNO(tsm_platform_get_uapi(p, &v), ENOENT); /* what the probe met, for the log */
        ASSERT_ERRNO(tsm_platform_bind(p, &target, on_done, &d, NULL), EOPNOTSUPP);
        ASSERT_ERRNO(tsm_platform_unbind(p, &target, on_done, &d, NULL), EOPNOTSUPP);
        ASSERT_ERRNO(tsm_platform_request(p, &target, TSM_SCOPE_INFO, "ping", 4, 64, on_done, &d, NULL), EOPNOTSUPP);
        tsm_platform_free(p);
        event_base_free(base);
}

TEST(held_device_times_out_and_others_go_on) {
        Router t;
        Done held = {}, other = {};

        router_setup(&t);
        fake_kernel_hold(true);
        request(&t, NIC, VDEV_NIC, TSM_SCOPE_INFO, &held);

        /* The loop is free: the other device's requests are answered meanwhile. */
        for (unsigned i = 1; i <= 10; i++) {
                request(&t, GPU, VDEV_GPU, TSM_SCOPE_INFO, &other);
                run_until(&t, &other, i);
                ASSERT_EQ(other.result, 0);
        }
        ASSERT_EQ(held.n, 0u);
        ASSERT_EQ(fake_kernel_n_inside(), 1u);

        run_until(&t, &held, 1);
        ASSERT_EQ(held.result, -ETIMEDOUT);
        ASSERT_GE(held.at, TIMEOUT_USEC - 5000);

        /* The kernel lets go later: the answer goes nowhere, and the lane serves the next. */
        fake_kernel_hold(false);
        request(&t, NIC, VDEV_NIC, TSM_SCOPE_INFO, &held);
        run_until(&t, &held, 2);
        ASSERT_EQ(held.result, 0);
        router_teardown(&t);
}

/* A bind is an SPDM exchange too: it waits on its device's lane, holds no other device, and
 * has no deadline (what the TDI is afterwards must be known), while a request queued behind it
 * keeps its own. */
TEST(held_bind_waits_on_its_lane_alone) {
        TsmTarget nic = { .pci_address = NIC, .iommufd = -EBADF, .vdevice_id = VDEV_NIC };
        Router t;
        Done bind = {}, behind = {}, other = {}, unbind = {};

        router_setup(&t);
        nic.iommufd = t.iommufd;
        fake_kernel_hold(true);
        bind.start = now_monotonic_usec();
        ASSERT_OK(tsm_platform_bind(t.platform, &nic, on_done, &bind, NULL));
        request(&t, NIC, VDEV_NIC, TSM_SCOPE_INFO, &behind);

        for (unsigned i = 1; i <= 10; i++) {
                request(&t, GPU, VDEV_GPU, TSM_SCOPE_INFO, &other);
                run_until(&t, &other, i);
                ASSERT_EQ(other.result, 0);
        }
        run_until(&t, &behind, 1);
        ASSERT_EQ(behind.result, -ETIMEDOUT);
        ASSERT_EQ(bind.n, 0u); /* past the request timeout, still waiting for the kernel */
        ASSERT_EQ(fake_kernel_n_inside(), 1u);

        fake_kernel_hold(false);
        run_until(&t, &bind, 1);
        ASSERT_EQ(bind.result, 0);
        ASSERT_EQ(last_call(true).value, TSMD_IOMMU_VDEVICE_TSM_BIND_V5);

        unbind.start = now_monotonic_usec();
        ASSERT_OK(tsm_platform_unbind(t.platform, &nic, on_done, &unbind, NULL));
        ASSERT_EQ(unbind.n, 0u); /* never from inside the call */
        run_until(&t, &unbind, 1);
        ASSERT_EQ(unbind.result, 0);
        ASSERT_EQ(last_call(true).value, TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5);
        router_teardown(&t);
}

/* While a NIC request is held in the kernel, the NIC's tsm/connect becomes connect ("" for
 * none) and the platform looks again: the request fails at once with -ENODEV. */
static void reconnect_nic_under_a_held_request(Router *t, const char *connect) {
        Done held = {};
        char path[PATH_MAX];
        FILE *f;

        fake_kernel_hold(true);
        request(t, NIC, VDEV_NIC, TSM_SCOPE_INFO, &held);
        fake_kernel_wait_inside(1);

        snprintf(path, sizeof(path), "%s/%s", t->sysfs, NIC_CONNECT);
        ASSERT_NOT_NULL(f = fopen(path, "we"));
        ASSERT_OK(fprintf(f, "%s\n", connect) >= 0 ? 0 : -EIO);
        ASSERT_OK(fclose(f));
        ASSERT_OK(tsm_platform_refresh_device(t->platform, NIC));
        run_until(t, &held, 1);
        ASSERT_EQ(held.result, -ENODEV);
        ASSERT_LE(held.at, TIMEOUT_USEC);
        fake_kernel_hold(false);
}

TEST(disconnected_device_fails_its_request_at_once) {
        Router t;

        router_setup(&t);
        reconnect_nic_under_a_held_request(&t, "");
        router_teardown(&t);
}

/* Connect and disconnect send no uevent: a device moved from one TSM to another may show as one
 * change. Its vDevices were the old TSM's (their binding, their SPDM session): gone. */
TEST(device_moved_to_another_tsm_is_gone) {
        Router t;
        char gone[16] = {};
        TsmDeviceInfo info;

        router_setup(&t);
        tsm_platform_set_device_gone_callback(t.platform, on_gone, gone);
        ASSERT_OK(tsm_platform_get_device(t.platform, NIC, &info));
        ASSERT_EQ(info.backend, TSM_BACKEND_SEV_TIO);
        reconnect_nic_under_a_held_request(&t, "tsm1");
        /* Its function 1 with it: the NIC is its DSM. */
        ASSERT_STREQ(gone, "nf");
        ASSERT_OK(tsm_platform_get_device(t.platform, NIC, &info));
        ASSERT_EQ(info.backend, TSM_BACKEND_TDX_CONNECT);
        ASSERT_STREQ(info.tsm, "tsm1");
        ASSERT_OK(tsm_platform_get_device(t.platform, NIC_FN1, &info));
        ASSERT_STREQ(info.tsm, "tsm1");
        router_teardown(&t);
}

/* A disconnect of the NIC whose kernel write waits on the NIC's lane, behind a request the kernel
 * holds. */
static void disconnect_held(Router *t, Done *held, Done *disconnect) {
        fake_kernel_hold(true);
        request(t, NIC, VDEV_NIC, TSM_SCOPE_INFO, held);
        fake_kernel_wait_inside(1);
        ASSERT_OK(tsm_platform_disconnect(t->platform, NIC, on_done, disconnect, NULL));
}

/* The kernel's disconnect shows in sysfs before its write returns: a look meanwhile (a rescan, a
 * TSM's uevent) sees the NIC disconnected, and what was attached to it is gone, its request too.
 * The disconnect itself goes on, answered by the kernel (not NoSuchDevice for a disconnect that
 * was made), and until then the NIC's connection is busy: no second change races it. */
TEST(a_disconnect_seen_before_its_write_returns_goes_on) {
        Router t;
        Done held = {}, disconnect = {}, other = {};
        char gone[16] = {};

        router_setup(&t);
        tsm_platform_set_device_gone_callback(t.platform, on_gone, gone);
        disconnect_held(&t, &held, &disconnect);

        ASSERT_OK(sysfs_fixture_write_attr(t.sysfs, NIC_DEVPATH, "tsm/connect", ""));
        ASSERT_OK(tsm_platform_refresh_device(t.platform, NIC));
        ASSERT_STREQ(gone, "nf");
        run_until(&t, &held, 1);
        ASSERT_EQ(held.result, -ENODEV);
        run_for_a_while(&t);
        ASSERT_EQ(disconnect.n, 0u);
        ASSERT_ERRNO(tsm_platform_disconnect(t.platform, NIC, on_done, &other, NULL), EBUSY);
        ASSERT_ERRNO(tsm_platform_connect(t.platform, NIC, "tsm1", on_done, &other, NULL), EBUSY);

        fake_kernel_hold(false);
        run_until(&t, &disconnect, 1);
        ASSERT_EQ(disconnect.result, 0);
        ASSERT_EQ(other.n, 0u);
        ASSERT_STREQ(gone, "nf");
        router_teardown(&t);
}

/* A device removed takes its disconnect along: there is nothing left to disconnect. */
TEST(a_removed_device_fails_its_disconnect) {
        Router t;
        Done held = {}, disconnect = {};
        char gone[16] = {};

        router_setup(&t);
        tsm_platform_set_device_gone_callback(t.platform, on_gone, gone);
        disconnect_held(&t, &held, &disconnect);

        ASSERT_OK(sysfs_fixture_remove(t.sysfs, NIC_DEVPATH));
        ASSERT_OK(tsm_platform_refresh_device(t.platform, NIC));
        run_until(&t, &disconnect, 1);
        ASSERT_EQ(disconnect.result, -ENODEV);
        run_until(&t, &held, 1);
        ASSERT_EQ(held.result, -ENODEV);
        ASSERT_EQ(gone[0], 'n');
        fake_kernel_hold(false);
        router_teardown(&t);
}

/* The NIC's function 1, a TDI its function 0 speaks for: its requests go to the NIC's TSM, in
 * that TSM's numbering, and it is no DSM to connect or disconnect. */
static void expect_served_through_its_dsm(Router *t) {
        Done d = {};

        request(t, NIC_FN1, VDEV_NIC, TSM_SCOPE_STATE_CHANGE, &d);
        run_until(t, &d, 1);
        ASSERT_EQ(d.result, 0);
        ASSERT_EQ(last_call(false).value, 1u); /* v5 PCI_STATE_CHANGE */

        ASSERT_ERRNO(tsm_platform_connect(t->platform, NIC_FN1, "tsm1", on_done, &d, NULL), EXDEV);
        ASSERT_ERRNO(tsm_platform_disconnect(t->platform, NIC_FN1, on_done, &d, NULL), EXDEV);
}

/* The kernel shows tsm/ only on a DSM: the NIC's function 1 has none, and is served by the TSM
 * its function 0 is connected to, with that backend's scope numbers, bound through it; it is
 * connected and disconnected only through its DSM. */
TEST(a_function_of_a_connected_dsm_is_served_by_its_tsm) {
        TsmTarget fn1 = { .pci_address = NIC_FN1, .iommufd = -EBADF, .vdevice_id = VDEV_NIC };
        TsmDeviceInfo info;
        Router t;
        Done bind = {};

        router_setup(&t);
        fn1.iommufd = t.iommufd;
        ASSERT_OK(tsm_platform_get_device(t.platform, NIC_FN1, &info));
        ASSERT_STREQ(info.pci_address, NIC_FN1);
        ASSERT_STREQ(info.tsm, "tsm0");
        ASSERT_EQ(info.backend, TSM_BACKEND_SEV_TIO);
        ASSERT_FALSE(info.emulated);

        ASSERT_OK(tsm_platform_bind(t.platform, &fn1, on_done, &bind, NULL));
        run_until(&t, &bind, 1);
        ASSERT_EQ(bind.result, 0);
        ASSERT_EQ(last_call(true).vdevice, VDEV_NIC);
        expect_served_through_its_dsm(&t);
        router_teardown(&t);
}

/* Mainline kernels give the NIC's function 1 a tsm/ of its own once its DSM connects, with
 * tsm/dsm and tsm/bound but no connect (managed-functions.sysfs): it is served as before, through
 * its DSM, and is still no DSM to connect or disconnect. */
TEST(a_function_the_dsm_manages_is_served_by_its_tsm) {
        TsmDeviceInfo info;
        Router t;

        router_setup(&t);
        ASSERT_OK(sysfs_fixture_write_attr(t.sysfs, NIC_FN1_DEVPATH, "tsm/dsm", NIC));
        ASSERT_OK(sysfs_fixture_write_attr(t.sysfs, NIC_FN1_DEVPATH, "tsm/bound", ""));
        ASSERT_OK(sysfs_fixture_write_attr(t.sysfs, NIC_FN1_DEVPATH, "authenticated", "tsm0"));
        ASSERT_OK(tsm_platform_refresh_device(t.platform, NIC_FN1));
        ASSERT_OK(tsm_platform_get_device(t.platform, NIC_FN1, &info));
        ASSERT_STREQ(info.tsm, "tsm0");
        ASSERT_EQ(info.backend, TSM_BACKEND_SEV_TIO);

        expect_served_through_its_dsm(&t);
        router_teardown(&t);
}

typedef struct Unbound {
        unsigned n;
        char address[32];
        const Done *done; /* optional: its count when told in done_n */
        unsigned done_n;
} Unbound;

static void on_unbound(TsmPlatform *p, const char *pci_address, void *userdata) {
        Unbound *u = userdata;

        u->n++;
        u->done_n = u->done ? u->done->n : 0;
        snprintf(u->address, sizeof(u->address), "%s", pci_address);
}

/* A device's tsm/bound (mainline) is set to value, and the platform looks again. */
static void bound_reads(Router *t, const char *devpath, const char *address, const char *value) {
        ASSERT_OK(sysfs_fixture_write_attr(t->sysfs, devpath, "tsm/bound", value));
        ASSERT_OK(tsm_platform_refresh_device(t->platform, address));
        ASSERT_EQ(inventory_get_device(tsm_platform_get_inventory(t->platform), address)->bound, !isempty(value));
}

/* tsm/bound (mainline) empty where it named the TSM: the kernel ended the binding (a disconnect,
 * perhaps followed by a reconnect to the same TSM, which tsm/connect does not show), which no
 * uevent announces. Read, and told (the device-unbound callback), but not while a bind or unbind
 * of tsmd's is on its way on the device (what the scan saw may be its doing), nor for a device
 * no TSM serves. */
TEST(a_binding_the_kernel_ended_is_told) {
        TsmTarget nic = { .pci_address = NIC, .iommufd = -EBADF, .vdevice_id = VDEV_NIC };
        Unbound u = {};
        Done unbind = {};
        Router t;

        router_setup(&t);
        nic.iommufd = t.iommufd;
        tsm_platform_set_device_unbound_callback(t.platform, on_unbound, &u);
        ASSERT_EQ(inventory_get_device(tsm_platform_get_inventory(t.platform), NIC)->bound, -1);
        bound_reads(&t, NIC_DEVPATH, NIC, "tsm0");
        ASSERT_EQ(u.n, 0U);
        bound_reads(&t, NIC_DEVPATH, NIC, "");
        ASSERT_EQ(u.n, 1U);
        ASSERT_STREQ(u.address, NIC);

        bound_reads(&t, NIC_DEVPATH, NIC, "tsm0");
        fake_kernel_hold(true);
        ASSERT_OK(tsm_platform_unbind(t.platform, &nic, on_done, &unbind, NULL));
        fake_kernel_wait_inside(1);
        bound_reads(&t, NIC_DEVPATH, NIC, "");
        fake_kernel_hold(false);
        run_until(&t, &unbind, 1);
        ASSERT_EQ(unbind.result, 0);
        ASSERT_EQ(u.n, 1U);

        bound_reads(&t, "/devices/pci0000:00/0000:00:03.1/0000:03:00.0", NVME, "tsm1");
        bound_reads(&t, "/devices/pci0000:00/0000:00:03.1/0000:03:00.0", NVME, "");
        ASSERT_EQ(u.n, 1U);
        router_teardown(&t);
}

/* A bind, an unbind and the end of a binding send no uevent: once the callback of tsmd's own bind
 * or unbind returned, the platform looks at the device again, so that a rescan after it tells the
 * end of a binding no rescan read bound (tsm/bound, which the kernel sets as it binds, read
 * empty since the scan before the bind). Read empty still at that look, the binding ended
 * already: told then (after the bind's callback), as a rescan would have. */
TEST(tsmds_own_bind_and_unbind_are_looked_at_again) {
        TsmTarget nic = { .pci_address = NIC, .iommufd = -EBADF, .vdevice_id = VDEV_NIC };
        Unbound u = {};
        Done bind = {}, unbind = {};
        Router t;

        router_setup_full(&t, false);
        nic.iommufd = t.iommufd;
        u.done = &bind;
        tsm_platform_set_device_unbound_callback(t.platform, on_unbound, &u);
        bound_reads(&t, NIC_DEVPATH, NIC, "");

        fake_kernel_hold(true);
        ASSERT_OK(tsm_platform_bind(t.platform, &nic, on_done, &bind, NULL));
        fake_kernel_wait_inside(1);
        ASSERT_OK(sysfs_fixture_write_attr(t.sysfs, NIC_DEVPATH, "tsm/bound", "tsm0")); /* the kernel's, binding */
        fake_kernel_hold(false);
        run_until(&t, &bind, 1);
        ASSERT_EQ(bind.result, 0);
        ASSERT_EQ(inventory_get_device(tsm_platform_get_inventory(t.platform), NIC)->bound, 1);
        ASSERT_EQ(u.n, 0U);
        bound_reads(&t, NIC_DEVPATH, NIC, ""); /* ended outside tsmd, and a rescan */
        ASSERT_EQ(u.n, 1U);

        /* tsmd's own unbind: the look reads tsm/bound as the kernel left it. */
        bound_reads(&t, NIC_DEVPATH, NIC, "tsm0");
        fake_kernel_hold(true);
        ASSERT_OK(tsm_platform_unbind(t.platform, &nic, on_done, &unbind, NULL));
        fake_kernel_wait_inside(1);
        ASSERT_OK(sysfs_fixture_write_attr(t.sysfs, NIC_DEVPATH, "tsm/bound", ""));
        fake_kernel_hold(false);
        run_until(&t, &unbind, 1);
        ASSERT_EQ(unbind.result, 0);
        ASSERT_EQ(inventory_get_device(tsm_platform_get_inventory(t.platform), NIC)->bound, 0);

        /* Bound, and its binding ended before the look: tsm/bound reads empty still. */
        u.n = 0;
        bind = (Done){};
        ASSERT_OK(tsm_platform_bind(t.platform, &nic, on_done, &bind, NULL));
        ASSERT_EQ(u.n, 0U);
        run_until(&t, &bind, 1);
        ASSERT_EQ(bind.result, 0);
        ASSERT_EQ(u.n, 1U);
        ASSERT_STREQ(u.address, NIC);
        ASSERT_EQ(u.done_n, 1U);
        router_teardown(&t);
}

/* Connecting a DSM sends no uevent, for it nor for its functions: tsmd's own connect of the NVMe
 * drive's function 0 makes its function 1, unserved while the DSM was not connected, served by
 * the TSM it connected to. */
TEST(a_function_is_served_once_tsmd_connects_its_dsm) {
        TsmDeviceInfo info;
        Router t;
        Done d = {};

        router_setup(&t);
        ASSERT_OK(sysfs_fixture_apply_line(t.sysfs, "pci /devices/pci0000:00/0000:00:03.1/0000:03:00.1 vendor=0x144d "
                                                    "device=0xa80a class=0x010802 driver=vfio-pci"));
        ASSERT_OK(tsm_platform_refresh_device(t.platform, "0000:03:00.1"));
        ASSERT_ERRNO(tsm_platform_get_device(t.platform, "0000:03:00.1", &info), ENXIO);
        ASSERT_ERRNO(tsm_platform_connect(t.platform, "0000:03:00.1", "tsm1", on_done, &d, NULL), EXDEV);

        ASSERT_OK(tsm_platform_connect(t.platform, NVME, "tsm1", on_done, &d, NULL));
        run_until(&t, &d, 1);
        ASSERT_EQ(d.result, 0);
        ASSERT_OK(tsm_platform_get_device(t.platform, NVME, &info));
        ASSERT_STREQ(info.tsm, "tsm1");
        ASSERT_OK(tsm_platform_get_device(t.platform, "0000:03:00.1", &info));
        ASSERT_STREQ(info.tsm, "tsm1");
        ASSERT_EQ(info.backend, TSM_BACKEND_TDX_CONNECT);
        router_teardown(&t);
}

/* A function whose DSM changes, its TSM the same (its function 0 disconnected, the switch's
 * upstream port above it connected to that TSM as well): its link is another SPDM session now,
 * and what was attached to it is gone. */
TEST(a_function_whose_dsm_changes_is_gone) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_KERNEL,
                .iommu_device = (char *) "/dev/null",
        };
        struct event_base *base;
        TsmPlatform *p;
        TsmDeviceInfo info;
        const char *root;
        char gone[16] = {};

        platform_test_sandbox(false);
        root = platform_test_fixture(
                NULL, "device /devices/pci0000:00\n"
                      "pci /devices/pci0000:00/0000:00:18.2 vendor=0x1022 device=0x14ca class=0x108000 driver=ccp\n"
                      "tsm /devices/pci0000:00/0000:00:18.2/tsm/tsm0\n"
                      "pci /devices/pci0000:00/0000:00:01.1 class=0x060400 driver=pcieport\n"
                      "pci /devices/pci0000:00/0000:00:01.1/0000:02:00.0 class=0x060400 driver=pcieport tsm=tsm0\n"
                      "pci /devices/pci0000:00/0000:00:01.1/0000:02:00.0/0000:03:01.0 class=0x060400 "
                      "driver=pcieport\n"
                      "pci /devices/pci0000:00/0000:00:01.1/0000:02:00.0/0000:03:01.0/0000:01:00.0 class=0x020000 "
                      "tsm=tsm0\n"
                      "pci /devices/pci0000:00/0000:00:01.1/0000:02:00.0/0000:03:01.0/0000:01:00.1 class=0x020000\n");
        ASSERT_NOT_NULL(base = event_base_new());
        ASSERT_OK(tsm_platform_new(base, &config, &p));
        tsm_platform_set_device_gone_callback(p, on_gone, gone);
        ASSERT_STREQ(inventory_get_device(tsm_platform_get_inventory(p), NIC_FN1)->dsm_address, NIC);

        ASSERT_OK(sysfs_fixture_write_attr(root, "/devices/pci0000:00/0000:00:01.1/0000:02:00.0/0000:03:01.0/0000:01:00.0",
                                           "tsm/connect", ""));
        ASSERT_OK(tsm_platform_refresh_device(p, NIC));
        ASSERT_STREQ(inventory_get_device(tsm_platform_get_inventory(p), NIC_FN1)->dsm_address, "0000:02:00.0");
        ASSERT_OK(tsm_platform_get_device(p, NIC_FN1, &info));
        ASSERT_STREQ(info.tsm, "tsm0");
        /* The NIC disconnected, its function 1 moved to another DSM. */
        ASSERT_STREQ(gone, "nf");

        tsm_platform_free(p);
        event_base_free(base);
}

/* The kernel answered before the device went, and the answer waits for its turn on the loop
 * when the device goes: the answer is the kernel's, not DeviceGone. A state change (or a bind)
 * it reports did happen, and no late answer will say so if the caller is told it did not. */
TEST(an_answer_the_kernel_gave_before_the_device_went_is_kept) {
        Router t;
        Done d = {};
        char path[PATH_MAX];
        FILE *f;

        router_setup(&t);
        request(&t, NIC, VDEV_NIC, TSM_SCOPE_STATE_CHANGE, &d);
        /* One round of the loop: the lane's answer is taken in, its callback not run yet. */
        ASSERT_OK(event_base_loop(t.base, EVLOOP_ONCE));
        ASSERT_EQ(d.n, 0u);
        ASSERT_EQ(last_call(false).value, 1u); /* v5 PCI_STATE_CHANGE: the kernel has answered */

        snprintf(path, sizeof(path), "%s/%s", t.sysfs, NIC_CONNECT);
        ASSERT_NOT_NULL(f = fopen(path, "we"));
        ASSERT_OK(fprintf(f, "\n") >= 0 ? 0 : -EIO);
        ASSERT_OK(fclose(f));
        ASSERT_OK(tsm_platform_refresh_device(t.platform, NIC));
        run_until(&t, &d, 1);
        ASSERT_EQ(d.result, 0);
        ASSERT_EQ(d.response_len, 4u);
        ASSERT_MEMEQ(d.response, "pong", 4);
        router_teardown(&t);
}

typedef struct Late {
        unsigned n;
        KernelLate late;
        char tag[16];
} Late;

static void on_late(TsmPlatform *p, const KernelLate *k, void *userdata) {
        Late *l = userdata;

        l->n++;
        l->late = *k;
        l->late.lane = l->late.tag = NULL; /* valid during the call only */
        ASSERT_LE(k->tag_size, sizeof(l->tag));
        memcpy(l->tag, k->tag, k->tag_size);
}

/* The caller gives up on a request (its vDevice detached, its worker gone) once the kernel has
 * answered it, before the answer's turn on the loop: what the kernel did still reaches the late
 * callback (tsmd's audit log), as it does for a call given up on inside the kernel. */
TEST(a_request_cancelled_after_the_kernel_answered_answers_late) {
        TsmTarget nic = { .pci_address = NIC, .iommufd = -EBADF, .vdevice_id = VDEV_NIC };
        Router t;
        Done d = {};
        Late late = {};
        TsmRequest *r = NULL;

        router_setup(&t);
        nic.iommufd = t.iommufd;
        tsm_platform_set_late_callback(t.platform, on_late, &late);
        ASSERT_OK(tsm_platform_request(t.platform, &nic, TSM_SCOPE_STATE_CHANGE, "ping", 4, 64, on_done, &d, &r));
        tsm_request_set_late_tag(r, "who", 4);
        ASSERT_OK(event_base_loop(t.base, EVLOOP_ONCE));
        ASSERT_EQ(d.n, 0u);
        ASSERT_EQ(last_call(false).value, 1u); /* the kernel has answered */

        tsm_request_cancel(r);
        ASSERT_EQ(late.n, 1u);
        ASSERT_EQ(late.late.op, KERNEL_OP_REQUEST);
        ASSERT_EQ(late.late.result, 0);
        ASSERT_EQ(late.late.response_len, 4u);
        ASSERT_EQ(late.late.scope_number, 1u);
        ASSERT_EQ(late.late.vdevice_id, (uint32_t) VDEV_NIC);
        ASSERT_STREQ(late.tag, "who");
        run_for_a_while(&t);
        ASSERT_EQ(d.n, 0u);
        ASSERT_EQ(late.n, 1u);
        router_teardown(&t);
}

/* A TSM that goes takes its devices' bindings and SPDM sessions with it, also where a device's
 * sysfs still names it: what was attached to the device is gone, its request in the kernel fails
 * at once, and a TSM registered again under the name serves the device afresh. */
TEST(removed_tsm_takes_its_devices_along) {
        const struct timeval slice = { .tv_sec = 0, .tv_usec = 20000 };
        char gone[16] = {};
        Done held = {};
        TsmDeviceInfo info;
        Router t;

        router_setup_full(&t, true);
        bind_vdevice(&t, NIC, VDEV_NIC);
        tsm_platform_set_device_gone_callback(t.platform, on_gone, gone);
        fake_kernel_hold(true);
        request(&t, NIC, VDEV_NIC, TSM_SCOPE_INFO, &held);
        fake_kernel_wait_inside(1);

        /* tsm0's class device goes; the NIC's tsm/connect still says tsm0. */
        ASSERT_OK(sysfs_fixture_remove(t.sysfs, "/devices/pci0000:00/0000:00:18.2/tsm/tsm0"));
        ASSERT_OK(uevent_send("remove", "/devices/pci0000:00/0000:00:18.2/tsm/tsm0", "tsm", NULL, 1));
        for (unsigned i = 0; i < 250 && held.n == 0; i++) {
                ASSERT_OK(event_base_loopexit(t.base, &slice));
                ASSERT_OK(event_base_dispatch(t.base));
        }
        ASSERT_EQ(held.n, 1u);
        ASSERT_EQ(held.result, -ENODEV);
        ASSERT_STREQ(gone, "nf");
        ASSERT_ERRNO(tsm_platform_get_device(t.platform, NIC, &info), ENXIO);
        ASSERT_ERRNO(tsm_platform_get_device(t.platform, NIC_FN1, &info), ENXIO);
        /* The other TSM's device is untouched. */
        ASSERT_OK(tsm_platform_get_device(t.platform, GPU, &info));
        ASSERT_STREQ(info.tsm, "tsm1");
        fake_kernel_hold(false);
        router_teardown(&t);
}

/* A host of a NIC (0000:01:00.0, vfio-pci) behind a root port, no TSM. */
#define NIC_HOST_FIXTURE                                                                            \
        "device /devices/pci0000:00\n"                                                              \
        "pci /devices/pci0000:00/0000:00:00.0 vendor=0x1022 device=0x14d8 class=0x060000\n"         \
        "pci /devices/pci0000:00/0000:00:01.1 vendor=0x1022 device=0x14db class=0x060400 driver=pcieport\n" \
        "pci /devices/pci0000:00/0000:00:01.1/0000:01:00.0 vendor=0x15b3 device=0x1021 class=0x020000 driver=vfio-pci\n"

/* Auto mode on a host with no TSM yet (fixture: its sysfs), the emulated platform serving
 * emulated, uevents watched in a private network namespace; what goes is written to gone. Returns
 * the fixture's root. */
static const char *emulated_until_a_tsm_comes(const char *emulated, const char *fixture, char *gone,
                                              struct event_base **ret_base, TsmPlatform **ret_p) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_AUTO,
                .iommu_device = (char *) "/dev/null",
                .emulated_devices = (char *) emulated,
        };
        const char *root;

        if (!platform_test_udev_monitor_possible())
                SKIP("sd-device disables udev monitors without /run/udev/control or a devtmpfs /dev");
        platform_test_sandbox(true);
        ASSERT_TRUE(platform_test_netns_is_private());
        ASSERT_EQ(uevent_in_private_netns(), 1);
        root = platform_test_fixture(NULL, fixture);
        ASSERT_NOT_NULL(*ret_base = event_base_new());
        ASSERT_OK(tsm_platform_new(*ret_base, &config, ret_p));
        ASSERT_TRUE(tsm_platform_is_emulated(*ret_p));
        tsm_platform_set_device_gone_callback(*ret_p, on_gone, gone);
        return root;
}

/* Runs the loop (bounded) until a TSM, not the emulator, serves address; its info in *ret_info. */
static void wait_served_by_a_tsm(struct event_base *base, TsmPlatform *p, const char *address,
                                 TsmDeviceInfo *ret_info) {
        const struct timeval slice = { .tv_sec = 0, .tv_usec = 20000 };

        for (unsigned i = 0; i < 250; i++) {
                if (tsm_platform_get_device(p, address, ret_info) >= 0 && !ret_info->emulated)
                        break;
                ASSERT_OK(event_base_loopexit(base, &slice));
                ASSERT_OK(event_base_dispatch(base));
        }
        ASSERT_OK(tsm_platform_get_device(p, address, ret_info));
        ASSERT_FALSE(ret_info->emulated);
}

/* The SEV-TIO module loads (the PSP with tsm0). */
static void sev_tio_loads(const char *root) {
        ASSERT_OK(sysfs_fixture_apply_text(root, "pci /devices/pci0000:00/0000:00:18.2 vendor=0x1022 device=0x14ca "
                                                 "class=0x108000 driver=ccp\n"
                                                 "tsm /devices/pci0000:00/0000:00:18.2/tsm/tsm0\n"));
}

/* The SEV-TIO module loads and the NIC's function 0, its DSM, connects to it; waits until
 * address (the NIC or one of its functions) is tsm0's, in *ret_info. */
static void sev_tio_loads_and_the_nic_connects(const char *root, struct event_base *base, TsmPlatform *p,
                                               const char *address, TsmDeviceInfo *ret_info) {
        sev_tio_loads(root);
        ASSERT_OK(sysfs_fixture_write_attr(root, "/devices/pci0000:00/0000:00:01.1/0000:01:00.0", "tsm/connect",
                                           "tsm0"));
        ASSERT_OK(uevent_send("add", "/devices/pci0000:00/0000:00:18.2/tsm/tsm0", "tsm", NULL, 1));
        wait_served_by_a_tsm(base, p, address, ret_info);
        ASSERT_STREQ(ret_info->tsm, "tsm0");
}

/* Auto mode, no TSM at start: the emulated platform, at its default addresses. A TSM appears
 * later (its driver loaded late) and a real device at one of those addresses connects to it:
 * that device is the TSM's from then on; the other emulated one stays. */
TEST(a_tsm_appearing_later_is_not_shadowed) {
        struct event_base *base;
        TsmPlatform *p;
        TsmDeviceInfo info;
        const char *root;
        char gone[16] = {};
        EmuDevice *nic;

        root = emulated_until_a_tsm_comes(NIC "," GPU, NIC_HOST_FIXTURE, gone, &base, &p);
        ASSERT_OK(tsm_platform_get_device(p, NIC, &info));
        ASSERT_TRUE(info.emulated);
        /* A guest has the emulated NIC locked. */
        nic = emu_platform_find_device(tsm_platform_get_emulated(p), NIC);
        ASSERT_OK(emu_device_bind(nic, NULL));
        ASSERT_FALSE(emu_device_is_clean(nic));

        /* The SEV-TIO module loads: the PSP with tsm0, and the NIC connects to it. */
        sev_tio_loads_and_the_nic_connects(root, base, p, NIC, &info);
        ASSERT_EQ(info.backend, TSM_BACKEND_SEV_TIO);
        ASSERT_OK(tsm_platform_get_device(p, GPU, &info));
        ASSERT_TRUE(info.emulated);
        /* What was attached to the emulated NIC is gone, and the emulated NIC was left clean
         * (its release would have gone to the kernel). */
        ASSERT_STREQ(gone, "n");
        ASSERT_TRUE(emu_device_is_clean(nic));
        ASSERT_EQ(emu_device_get_state(nic), TDISP_STATE_CONFIG_UNLOCKED);
        /* The host sees no emulated TDI state there any more (GET_DEVICE_STATE asks this); the
         * GPU's it still does. */
        {
                TsmTarget t = { .pci_address = NIC, .iommufd = -EBADF };
                int state;

                ASSERT_ERRNO(tsm_platform_get_state(p, &t, &state), EOPNOTSUPP);
                t.pci_address = GPU;
                ASSERT_OK(tsm_platform_get_state(p, &t, &state));
                ASSERT_EQ(state, TDISP_STATE_CONFIG_UNLOCKED);
        }

        /* The administrator drops the NIC from the emulated list (a reload): the emulated
         * device served nothing any more, and the real one, its TSM's, is not gone. */
        ASSERT_OK(tsm_platform_set_emulated_devices(p, GPU));
        ASSERT_STREQ(gone, "n");
        ASSERT_OK(tsm_platform_get_device(p, NIC, &info));
        ASSERT_FALSE(info.emulated);

        tsm_platform_free(p);
        event_base_free(base);
}

/* The same where the emulated device's address is a function without tsm/ of a real device: it
 * is its TSM's once its DSM, function 0, is connected to that TSM. */
TEST(a_tsm_appearing_later_is_not_shadowed_at_a_function_of_its_dsm) {
        struct event_base *base;
        TsmPlatform *p;
        TsmDeviceInfo info;
        const char *root;
        char gone[16] = {};
        EmuDevice *fn1;

        root = emulated_until_a_tsm_comes(NIC_FN1 "," GPU,
                                          NIC_HOST_FIXTURE "pci /devices/pci0000:00/0000:00:01.1/0000:01:00.1 vendor=0x15b3 "
                                                           "device=0x1021 class=0x020000 driver=vfio-pci\n",
                                          gone, &base, &p);
        fn1 = emu_platform_find_device(tsm_platform_get_emulated(p), NIC_FN1);
        ASSERT_OK(emu_device_bind(fn1, NULL));

        /* The SEV-TIO module loads; tsm/ shows on function 0 only, which connects to tsm0. */
        sev_tio_loads_and_the_nic_connects(root, base, p, NIC_FN1, &info);
        /* The emulated function's attachments (and the real NIC's, none) are gone, and it was
         * left clean (its release would have gone to the kernel). */
        ASSERT_STREQ(gone, "nf");
        ASSERT_TRUE(emu_device_is_clean(fn1));
        ASSERT_OK(tsm_platform_get_device(p, GPU, &info));
        ASSERT_TRUE(info.emulated);

        tsm_platform_free(p);
        event_base_free(base);
}

/* A scan may see a device name its TSM before the TSM itself is seen (its link made before
 * tsm_register() finished). The emulated device serves the address until the TSM shows up; then
 * the TSM does, with no change of the device's own to say so, and what was attached to the
 * emulated device is gone. */
TEST(a_tsm_seen_after_its_device_takes_the_address) {
        struct event_base *base;
        TsmPlatform *p;
        TsmDeviceInfo info;
        const char *root;
        char gone[16] = {};

        root = emulated_until_a_tsm_comes(NIC "," GPU, NIC_HOST_FIXTURE, gone, &base, &p);

        /* The NIC names tsm0, which no scan has seen yet: still the emulator's. */
        ASSERT_OK(sysfs_fixture_write_attr(root, "/devices/pci0000:00/0000:00:01.1/0000:01:00.0", "tsm/connect",
                                           "tsm0"));
        ASSERT_OK(tsm_platform_refresh_device(p, NIC));
        ASSERT_OK(tsm_platform_get_device(p, NIC, &info));
        ASSERT_TRUE(info.emulated);
        ASSERT_STREQ(gone, "");

        /* tsm0 registers. */
        sev_tio_loads(root);
        ASSERT_OK(uevent_send("add", "/devices/pci0000:00/0000:00:18.2/tsm/tsm0", "tsm", NULL, 1));
        wait_served_by_a_tsm(base, p, NIC, &info);
        ASSERT_STREQ(gone, "n");

        tsm_platform_free(p);
        event_base_free(base);
}

/* Auto mode without a TSM: the emulated NIC serves 0000:01:00.0, where this host has a plain
 * NIC no TSM serves. That real NIC going (unplugged, or its identity changing) is not the
 * emulated one going: a request to it is answered, nothing attached is gone. */
TEST(a_plain_device_at_an_emulated_address_does_not_take_it_along) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_AUTO,
                .iommu_device = (char *) "/dev/null",
                .emulated_devices = (char *) NIC "," GPU,
                .emulated_latency_usec = 100000,
        };
        TsmTarget nic = { .pci_address = NIC, .iommufd = -EBADF, .vdevice_id = VDEV_NIC };
        const struct timeval slice = { .tv_sec = 0, .tv_usec = 5000 };
        struct event_base *base;
        char gone[16] = {};
        TsmDeviceInfo info;
        const char *root;
        Done d = {};
        TsmPlatform *p;

        platform_test_sandbox(false);
        root = platform_test_fixture(
                NULL, "device /devices/pci0000:00\n"
                      "pci /devices/pci0000:00/0000:00:00.0 vendor=0x1022 device=0x14d8 class=0x060000\n"
                      "pci /devices/pci0000:00/0000:00:01.1 vendor=0x1022 device=0x14db class=0x060400 driver=pcieport\n"
                      "pci /devices/pci0000:00/0000:00:01.1/0000:01:00.0 vendor=0x15b3 device=0x1021 class=0x020000 "
                      "driver=mlx5_core\n");
        ASSERT_NOT_NULL(base = event_base_new());
        ASSERT_OK(tsm_platform_new(base, &config, &p));
        ASSERT_TRUE(tsm_platform_is_emulated(p));
        tsm_platform_set_device_gone_callback(p, on_gone, gone);

        /* Bound, as guest requests need. */
        ASSERT_OK(tsm_platform_bind(p, &nic, on_done, &d, NULL));
        for (unsigned i = 0; d.n == 0; i++) {
                ASSERT_LE(i, 400u);
                ASSERT_OK(event_base_loopexit(base, &slice));
                ASSERT_OK(event_base_dispatch(base));
        }
        ASSERT_OK(d.result);

        d = (Done) { .start = now_monotonic_usec() };
        ASSERT_OK(tsm_platform_request(p, &nic, TSM_SCOPE_INFO, "\x10\x81\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16, 64,
                                       on_done, &d, NULL));
        ASSERT_OK(sysfs_fixture_remove(root, "/devices/pci0000:00/0000:00:01.1/0000:01:00.0"));
        ASSERT_OK(tsm_platform_refresh_device(p, NIC));
        for (unsigned i = 0; d.n == 0; i++) {
                ASSERT_LE(i, 400u);
                ASSERT_OK(event_base_loopexit(base, &slice));
                ASSERT_OK(event_base_dispatch(base));
        }
        ASSERT_EQ(d.result, 0);
        ASSERT_STREQ(gone, "");
        ASSERT_OK(tsm_platform_get_device(p, NIC, &info));
        ASSERT_TRUE(info.emulated);

        tsm_platform_free(p);
        event_base_free(base);
}

TEST_MAIN();
