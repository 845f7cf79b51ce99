/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The platform router (daemon/tsm-platform.c) over emulated devices with configured faults:
 * a device takes one exchange at a time, in order; a device that never answers fails its
 * request with -ETIMEDOUT after the request timeout (not before, and without the device
 * having acted on it, nor on what waited behind it), a device slower than the timeout
 * likewise, a device removed meanwhile fails it at once with -ENODEV, a cancelled or freed
 * request never calls back, and a reload switches a listed device's fault on and off in place;
 * the emulated TSM keeps the nonce of the LOCK it made at a bind and starts the TDI with it when
 * the guest accepts the device, and takes guest requests only for a TDI the host has bound (else
 * ENXIO, as the kernel's pci_tsm_guest_req()), a bind made before a request counting for it, and
 * in the debug scopes only when configured to (else EINVAL, as mainline kernels); what the TSM
 * refuses takes no exchange (no latency); a device's nonces do not repeat across restarts and
 * reloads.
 * Runs in: tests.
 */

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "emu-device.h"
#include "harness.h"
#include "log-capture.h"
#include "sha256.h"
#include "tdisp.h"
#include "tsm-platform.h"

#define DEV1 "0000:01:00.0"
#define DEV2 "0000:02:00.0"

#define MSEC 1000ULL
/* How late a timer may fire on a loaded machine before the test calls it wrong. */
#define SLACK_USEC (2000 * MSEC)
/* libevent measures timeouts from its cached loop time, which may lag the clock read here
 * when the request is made: a timer may seem to fire this much early. */
#define EARLY_USEC (5 * MSEC)

typedef struct Done {
        bool called;
        int result;
        uint64_t at; /* usec since the request was made */
        uint64_t start;
        uint8_t type; /* the response's message type */
        uint8_t resp[64]; /* its first bytes */
        size_t len;
} Done;

static void on_done(TsmRequest *r, int result, void *userdata) {
        Done *d = userdata;
        const uint8_t *resp;
        size_t len;

        ASSERT_FALSE(d->called);
        d->called = true;
        d->result = result;
        d->at = now_monotonic_usec() - d->start;
        if (result >= 0) {
                resp = tsm_request_get_response(r, &len);
                ASSERT_GE(len, sizeof(TdispHeader));
                d->type = resp[1];
                d->len = len;
                memcpy(d->resp, resp, MIN(len, sizeof(d->resp)));
        }
}

typedef struct Router {
        struct event_base *base;
        TsmPlatform *p;
} Router;

static void router_new_full(Router *r, const char *devices, uint64_t latency_usec, uint64_t timeout_usec,
                            bool debug_scopes) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_EMULATED,
                .iommu_device = (char *) "/nonexistent/tsmd-test-iommu",
                .emulated_devices = (char *) devices,
                .emulated_latency_usec = latency_usec,
                .request_timeout_usec = timeout_usec,
                .emulated_debug_scopes = debug_scopes,
        };

        r->base = event_base_new();
        ASSERT_NOT_NULL(r->base);
        ASSERT_OK(tsm_platform_new(r->base, &config, &r->p));
}

static void router_new(Router *r, const char *devices, uint64_t latency_usec, uint64_t timeout_usec) {
        router_new_full(r, devices, latency_usec, timeout_usec, false);
}

static void router_free(Router *r) {
        r->p = tsm_platform_free(r->p);
        event_base_free(r->base);
}

/* A request of this type (no body) to address, in the scope its type belongs to. */
static TsmRequest *submit(Router *r, const char *address, uint8_t type, Done *d) {
        EmuDevice *dev = emu_platform_find_device(tsm_platform_get_emulated(r->p), address);
        const char *scope = type == TDISP_MSG_GET_VERSION ? "info" : "state-change";
        TsmTarget t = { .pci_address = address, .iommufd = -EBADF };
        uint8_t msg[64], body[sizeof(TdispLockInterfaceParams)] = {};
        size_t len, body_len = type == TDISP_MSG_LOCK_INTERFACE_REQ ? sizeof(body) : 0;
        TsmRequest *req = NULL;

        ASSERT_NOT_NULL(dev);
        ASSERT_OK(tdisp_build_request(type, emu_device_get_function_id(dev), body, body_len, msg, sizeof(msg), &len));
        *d = (Done) { .start = now_monotonic_usec() };
        ASSERT_OK(tsm_platform_request(r->p, &t, scope, msg, len, 4096, on_done, d, &req));
        ASSERT_NOT_NULL(req);
        ASSERT_FALSE(d->called); /* never from inside the call */
        return req;
}

/* A message (any bytes) to address in scope. */
static void submit_msg(Router *r, const char *address, const char *scope, const void *msg, size_t len, Done *d) {
        TsmTarget t = { .pci_address = address, .iommufd = -EBADF };

        *d = (Done) { .start = now_monotonic_usec() };
        ASSERT_OK(tsm_platform_request(r->p, &t, scope, msg, len, 4096, on_done, d, NULL));
        ASSERT_FALSE(d->called);
}

/* A request of this type with this body, in scope state-change. */
static void submit_state_change(Router *r, const char *address, uint8_t type, const void *body, size_t body_len,
                                Done *d) {
        EmuDevice *dev = emu_platform_find_device(tsm_platform_get_emulated(r->p), address);
        uint8_t msg[64];
        size_t len;

        ASSERT_NOT_NULL(dev);
        ASSERT_OK(tdisp_build_request(type, emu_device_get_function_id(dev), body, body_len, msg, sizeof(msg), &len));
        submit_msg(r, address, "state-change", msg, len, d);
}

/* Runs the loop until *flag or for at most usec. */
static void run_until(Router *r, const bool *flag, uint64_t usec) {
        uint64_t deadline = now_monotonic_usec() + usec;

        while ((!flag || !*flag) && now_monotonic_usec() < deadline) {
                struct timeval tv = { .tv_usec = 1000 };

                ASSERT_OK(event_base_loopexit(r->base, &tv));
                ASSERT_OK(event_base_loop(r->base, 0));
        }
}

static TdispState state_of(Router *r, const char *address) {
        return emu_device_get_state(emu_platform_find_device(tsm_platform_get_emulated(r->p), address));
}

static void on_bound(TsmRequest *req, int result, void *userdata) {
        Done *d = userdata;

        ASSERT_FALSE(d->called);
        d->called = true;
        d->result = result;
        d->at = now_monotonic_usec() - d->start;
}

/* The host binds (bind) or unbinds the TDI at address, as a VMM must before its guest's
 * requests: done when this returns. */
static void set_bound(Router *r, const char *address, bool bind) {
        TsmTarget t = { .pci_address = address, .iommufd = -EBADF };
        Done d = { .start = now_monotonic_usec() };

        ASSERT_OK(bind ? tsm_platform_bind(r->p, &t, on_bound, &d, NULL)
                       : tsm_platform_unbind(r->p, &t, on_bound, &d, NULL));
        run_until(r, &d.called, 2 * SLACK_USEC);
        ASSERT_TRUE(d.called);
        ASSERT_OK(d.result);
}

/* A router over devices (no faults), each bound, with faults switched on afterwards as a reload
 * does (NULL: none). */
static void router_new_bound(Router *r, const char *devices, const char *faulty, uint64_t latency_usec,
                             uint64_t timeout_usec) {
        EmuPlatform *emu;

        router_new(r, devices, latency_usec, timeout_usec);
        emu = tsm_platform_get_emulated(r->p);
        for (size_t i = 0; i < emu_platform_get_n_devices(emu); i++)
                set_bound(r, emu_device_get_address(emu_platform_get_device(emu, i)), true);
        if (faulty)
                ASSERT_OK(tsm_platform_set_emulated_devices(r->p, faulty));
}

/* One spelling per device, sysfs's: an address the admin wrote in upper case is served in lower
 * case, and no other spelling finds it (a real device at the lower-case address comes first,
 * so another spelling must not reach the emulated one it shadows). */
TEST(devices_are_found_only_as_sysfs_spells_them) {
        static const char *const other[] = { "0000:3B:00.0", "0000:3b:00.00", "000:3b:00.0", "0000:3b:0.0",
                                             " 0000:3b:00.0", "0000:3b:00.0 ", "00000:3b:00.0" };
        Router r;
        TsmDeviceInfo info;

        router_new(&r, "0000:3B:00.0," DEV1, 0, 0);
        ASSERT_OK(tsm_platform_get_device(r.p, "0000:3b:00.0", &info));
        ASSERT_TRUE(info.emulated);
        ASSERT_STREQ(info.pci_address, "0000:3b:00.0");
        ASSERT_NOT_NULL(emu_platform_find_device(tsm_platform_get_emulated(r.p), "0000:3b:00.0"));
        for (size_t i = 0; i < ELEMENTSOF(other); i++) {
                ASSERT_ERRNO(tsm_platform_get_device(r.p, other[i], &info), ENODEV);
                ASSERT_NULL(emu_platform_find_device(tsm_platform_get_emulated(r.p), other[i]));
        }
        router_free(&r);
}

TEST(hanging_device_times_out) {
        uint8_t zero[TDISP_NONCE_SIZE] = {};
        Router r;
        Done hung, fine, start;

        router_new_bound(&r, DEV1 "," DEV2, DEV1 ":fault=timeout," DEV2, 20 * MSEC, 300 * MSEC);
        (void) submit(&r, DEV1, TDISP_MSG_GET_VERSION, &hung);
        (void) submit(&r, DEV2, TDISP_MSG_GET_VERSION, &fine);
        /* The guest's START, which the TSM completes with its nonce: the TDI would run. */
        submit_state_change(&r, DEV1, TDISP_MSG_START_INTERFACE_REQ, zero, sizeof(zero), &start);

        /* The healthy device answers after its latency, meanwhile. */
        run_until(&r, &fine.called, SLACK_USEC);
        ASSERT_TRUE(fine.called);
        ASSERT_EQ(fine.result, 0);
        ASSERT_EQ(fine.type, TDISP_MSG_VERSION);
        ASSERT_GE(fine.at + EARLY_USEC, 20 * MSEC);
        ASSERT_FALSE(hung.called);

        /* The one behind it in the device's mailbox waits with it, until its own deadline. */
        run_until(&r, &hung.called, 300 * MSEC + SLACK_USEC);
        run_until(&r, &start.called, SLACK_USEC);
        ASSERT_TRUE(hung.called && start.called);
        ASSERT_ERRNO(hung.result, ETIMEDOUT);
        ASSERT_ERRNO(start.result, ETIMEDOUT);
        /* At the deadline: not at the answer's due time, not long after. */
        ASSERT_GE(hung.at + EARLY_USEC, 300 * MSEC);
        ASSERT_LE(hung.at, 300 * MSEC + SLACK_USEC);
        /* The device never acted on what it did not answer. */
        ASSERT_EQ(state_of(&r, DEV1), TDISP_STATE_CONFIG_LOCKED);
        router_free(&r);
}

/* Like a DOE mailbox, a device takes one exchange at a time, binds included, in the order they
 * came, each after its latency; another device works meanwhile. */
/* A VMM whose device hangs gets Timeout for every request, but the log a burst's worth. */
TEST(timeouts_are_logged_a_burst_at_a_time) {
        Router r;
        Done d[3 * TSM_TIMEOUT_LOG_BURST];
        _cleanup_free_ char *text = NULL;
        int saved;

        router_new_bound(&r, DEV1, DEV1 ":fault=timeout", 0, 50 * MSEC);
        saved = log_capture_begin();
        for (size_t i = 0; i < ELEMENTSOF(d); i++)
                (void) submit(&r, DEV1, TDISP_MSG_GET_VERSION, &d[i]);
        for (size_t i = 0; i < ELEMENTSOF(d); i++) {
                run_until(&r, &d[i].called, 50 * MSEC + SLACK_USEC);
                ASSERT_TRUE(d[i].called);
                ASSERT_ERRNO(d[i].result, ETIMEDOUT);
        }
        text = log_capture_end(saved);
        ASSERT_EQ(count_occurrences(text, "not answered within"), TSM_TIMEOUT_LOG_BURST);
        router_free(&r);
}

TEST(one_exchange_at_a_time) {
        TsmTarget t = { .pci_address = DEV1, .iommufd = -EBADF };
        Router r;
        Done first, second, bind, third, other;

        router_new(&r, DEV1 "," DEV2, 50 * MSEC, 5000 * MSEC);
        set_bound(&r, DEV2, true);
        /* DEV1 is not bound yet: its TSM refuses at once what comes before the bind, and takes
         * what comes after it, before the bind is answered. */
        (void) submit(&r, DEV1, TDISP_MSG_GET_VERSION, &first);
        (void) submit(&r, DEV1, TDISP_MSG_GET_VERSION, &second);
        bind = (Done){ .start = now_monotonic_usec() };
        ASSERT_OK(tsm_platform_bind(r.p, &t, on_bound, &bind, NULL));
        (void) submit(&r, DEV1, TDISP_MSG_GET_VERSION, &third);
        (void) submit(&r, DEV2, TDISP_MSG_GET_VERSION, &other);

        run_until(&r, &second.called, SLACK_USEC);
        ASSERT_TRUE(first.called);
        ASSERT_ERRNO(first.result, ENXIO);
        ASSERT_ERRNO(second.result, ENXIO);
        ASSERT_FALSE(bind.called || third.called || other.called);
        ASSERT_LE(second.at, 50 * MSEC); /* no exchange with the device */
        ASSERT_EQ(state_of(&r, DEV1), TDISP_STATE_CONFIG_UNLOCKED); /* the bind's turn is next */
        run_until(&r, &bind.called, SLACK_USEC);
        ASSERT_TRUE(other.called); /* DEV2's, at the same time as DEV1's bind */
        ASSERT_OK(bind.result);
        ASSERT_EQ(state_of(&r, DEV1), TDISP_STATE_CONFIG_LOCKED);
        ASSERT_FALSE(third.called);
        run_until(&r, &third.called, SLACK_USEC);
        ASSERT_OK(third.result);
        ASSERT_EQ(third.type, TDISP_MSG_VERSION);
        ASSERT_GE(bind.at + EARLY_USEC, 50 * MSEC);
        ASSERT_GE(third.at + EARLY_USEC, 100 * MSEC);
        ASSERT_LE(other.at, 50 * MSEC + SLACK_USEC);

        /* Bound: each exchange in turn, after its latency. */
        (void) submit(&r, DEV1, TDISP_MSG_GET_VERSION, &first);
        (void) submit(&r, DEV1, TDISP_MSG_GET_VERSION, &second);
        run_until(&r, &first.called, SLACK_USEC);
        ASSERT_FALSE(second.called);
        run_until(&r, &second.called, SLACK_USEC);
        ASSERT_OK(first.result);
        ASSERT_OK(second.result);
        ASSERT_GE(first.at + EARLY_USEC, 50 * MSEC);
        ASSERT_GE(second.at + EARLY_USEC, 100 * MSEC);
        router_free(&r);
}

/* A waiting call whose caller left leaves the queue, unrun: the next one takes its turn. */
TEST(cancelled_while_waiting) {
        TsmTarget t = { .pci_address = DEV1, .iommufd = -EBADF };
        Router r;
        Done first, unbind = {}, third;
        TsmRequest *req = NULL;

        router_new_bound(&r, DEV1, NULL, 100 * MSEC, 5000 * MSEC);
        (void) submit(&r, DEV1, TDISP_MSG_GET_VERSION, &first);
        ASSERT_OK(tsm_platform_unbind(r.p, &t, on_bound, &unbind, &req));
        (void) submit(&r, DEV1, TDISP_MSG_GET_VERSION, &third);
        run_until(&r, NULL, 20 * MSEC);
        tsm_request_cancel(req);
        run_until(&r, &first.called, SLACK_USEC);
        ASSERT_FALSE(third.called);
        run_until(&r, &third.called, SLACK_USEC);
        ASSERT_OK(first.result);
        ASSERT_OK(third.result);
        ASSERT_GE(third.at + EARLY_USEC, 200 * MSEC);
        ASSERT_FALSE(unbind.called);
        ASSERT_EQ(state_of(&r, DEV1), TDISP_STATE_CONFIG_LOCKED); /* the unbind never ran */
        router_free(&r);
}

/* Slower than the deadline is as good as never: the request fails before the device acts. */
TEST(slow_device_times_out) {
        uint8_t zero[TDISP_NONCE_SIZE] = {};
        Router r;
        Done start;

        router_new_bound(&r, DEV1, NULL, 400 * MSEC, 100 * MSEC);
        submit_state_change(&r, DEV1, TDISP_MSG_START_INTERFACE_REQ, zero, sizeof(zero), &start);
        run_until(&r, &start.called, 100 * MSEC + SLACK_USEC);
        ASSERT_TRUE(start.called);
        ASSERT_ERRNO(start.result, ETIMEDOUT);
        ASSERT_GE(start.at + EARLY_USEC, 100 * MSEC);
        ASSERT_TRUE(start.at < 400 * MSEC);
        /* Past the time the device would have answered: it was never asked. */
        run_until(&r, NULL, 400 * MSEC);
        ASSERT_EQ(state_of(&r, DEV1), TDISP_STATE_CONFIG_LOCKED);
        router_free(&r);
}

TEST(removed_while_hanging) {
        Router r;
        Done hung;

        router_new_bound(&r, DEV1 "," DEV2, DEV1 ":fault=timeout," DEV2, 0, 5000 * MSEC);
        (void) submit(&r, DEV1, TDISP_MSG_GET_VERSION, &hung);
        run_until(&r, NULL, 50 * MSEC); /* the answer was due, and did not come */
        ASSERT_FALSE(hung.called);

        ASSERT_OK(tsm_platform_set_emulated_devices(r.p, DEV2));
        run_until(&r, &hung.called, SLACK_USEC);
        ASSERT_TRUE(hung.called);
        ASSERT_ERRNO(hung.result, ENODEV);
        ASSERT_LE(hung.at, SLACK_USEC);
        router_free(&r);
}

/* A request whose caller left never calls back, before or after its deadline; nor does one
 * still in flight when the platform goes (ASan checks that nothing leaks). */
TEST(cancelled_and_freed_while_hanging) {
        Router r;
        Done cancelled, left;
        TsmRequest *req;
        bool answered;

        router_new_bound(&r, DEV1, DEV1 ":fault=timeout", 0, 100 * MSEC);
        req = submit(&r, DEV1, TDISP_MSG_GET_VERSION, &cancelled);
        (void) submit(&r, DEV1, TDISP_MSG_GET_VERSION, &left);
        run_until(&r, NULL, 20 * MSEC);
        tsm_request_cancel(req);
        run_until(&r, &left.called, 100 * MSEC + SLACK_USEC);
        ASSERT_TRUE(left.called);
        ASSERT_ERRNO(left.result, ETIMEDOUT);
        run_until(&r, NULL, 50 * MSEC);
        ASSERT_FALSE(cancelled.called);

        (void) submit(&r, DEV1, TDISP_MSG_GET_VERSION, &left);
        run_until(&r, NULL, 10 * MSEC);
        /* Freed with it hanging: the free answers nothing. (A test stalled past the 100 ms
         * timeout, on a loaded machine, saw it answered ETIMEDOUT first; on_done() refuses a
         * second answer.) */
        answered = left.called;
        router_free(&r);
        ASSERT_EQ(left.called, answered);
}

/* A reload that keeps a device switches its fault in place: same device, same TDI state. */
TEST(reload_switches_faults) {
        static const struct {
                const char *devices;
                int result;
                uint8_t type;
        } steps[] = {
                { DEV1 ":fault=busy", -EBUSY, 0 },
                { DEV1 ":fault=gone", -ENODEV, 0 },
                { DEV1, 0, TDISP_MSG_VERSION },
                { DEV1 ":fault=tdisp-error", 0, TDISP_MSG_ERROR },
                { DEV1 ":fault=tdisp-error:ranges=7", 0, TDISP_MSG_ERROR }, /* hardware options stay */
                { DEV1 ":fault=busy", -EBUSY, 0 },
                { DEV1, 0, TDISP_MSG_VERSION },
        };
        Router r;
        EmuDevice *dev;

        router_new_bound(&r, DEV1, NULL, 0, 1000 * MSEC);
        dev = emu_platform_find_device(tsm_platform_get_emulated(r.p), DEV1);

        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                Done d;

                ASSERT_OK(tsm_platform_set_emulated_devices(r.p, steps[i].devices));
                ASSERT_TRUE(emu_platform_find_device(tsm_platform_get_emulated(r.p), DEV1) == dev);
                (void) submit(&r, DEV1, TDISP_MSG_GET_VERSION, &d);
                run_until(&r, &d.called, SLACK_USEC);
                ASSERT_TRUE(d.called);
                if (d.result != steps[i].result || (d.result >= 0 && d.type != steps[i].type))
                        TEST_FAIL("after '%s': result %d type 0x%02x, expected %d 0x%02x", steps[i].devices, d.result,
                                  d.type, steps[i].result, steps[i].type);
                /* Busy and ERROR answers leave the TDI as it was; "gone" resets it, which ends
                 * its lock, not its binding (a bind finds it bound): the host unbinds and binds
                 * again to lock it. */
                ASSERT_EQ(emu_device_get_state(dev), i == 1 || i == 2 ? TDISP_STATE_CONFIG_UNLOCKED
                                                                      : TDISP_STATE_CONFIG_LOCKED);
                if (i == 2) {
                        set_bound(&r, DEV1, true);
                        ASSERT_EQ(emu_device_get_state(dev), TDISP_STATE_CONFIG_UNLOCKED);
                        set_bound(&r, DEV1, false);
                        set_bound(&r, DEV1, true);
                }
        }
        ASSERT_EQ(emu_device_get_config(dev)->n_mmio_ranges, EMU_MMIO_RANGES_DEFAULT);
        /* A bad list changes nothing. */
        ASSERT_ERRNO(tsm_platform_set_emulated_devices(r.p, DEV1 ":fault=hang"), EINVAL);
        ASSERT_EQ(emu_device_get_fault(dev), _EMU_FAULT_INVALID);
        router_free(&r);
}

static uint32_t error_of(const Done *d) {
        uint32_t code = 0;

        ASSERT_OK(tdisp_error_decode(d->resp, d->len, &code, NULL));
        return code;
}

/* As with a kernel TSM: the host binds (the TSM locks the TDI and keeps the nonce), the guest
 * accepts the device with a START that carries no nonce it knows, and the TSM starts the TDI
 * with its own; once. */
TEST(guest_start_after_bind_runs_with_the_tsm_nonce) {
        TsmTarget t = { .pci_address = DEV1, .iommufd = -EBADF };
        uint8_t guess[TDISP_NONCE_SIZE] = {};
        Router r;
        Done bind, start, again;

        router_new(&r, DEV1, 0, 5000 * MSEC);
        bind = (Done){ .start = now_monotonic_usec() };
        ASSERT_OK(tsm_platform_bind(r.p, &t, on_bound, &bind, NULL));
        run_until(&r, &bind.called, SLACK_USEC);
        ASSERT_OK(bind.result);
        ASSERT_EQ(state_of(&r, DEV1), TDISP_STATE_CONFIG_LOCKED);

        submit_state_change(&r, DEV1, TDISP_MSG_START_INTERFACE_REQ, guess, sizeof(guess), &start);
        run_until(&r, &start.called, SLACK_USEC);
        ASSERT_OK(start.result);
        ASSERT_EQ(start.type, TDISP_MSG_START_INTERFACE_RSP);
        ASSERT_EQ(state_of(&r, DEV1), TDISP_STATE_RUN);

        submit_state_change(&r, DEV1, TDISP_MSG_START_INTERFACE_REQ, guess, sizeof(guess), &again);
        run_until(&r, &again.called, SLACK_USEC);
        ASSERT_EQ(again.type, TDISP_MSG_ERROR);
        ASSERT_EQ(error_of(&again), TDISP_ERROR_INVALID_INTERFACE_STATE);

        /* Unlocked (as by a reset), still bound: no LOCK, no START. */
        ASSERT_OK(emu_device_unbind(emu_platform_find_device(tsm_platform_get_emulated(r.p), DEV1)));
        submit_state_change(&r, DEV1, TDISP_MSG_START_INTERFACE_REQ, guess, sizeof(guess), &again);
        run_until(&r, &again.called, SLACK_USEC);
        ASSERT_EQ(error_of(&again), TDISP_ERROR_INVALID_INTERFACE_STATE);
        ASSERT_EQ(state_of(&r, DEV1), TDISP_STATE_CONFIG_UNLOCKED);
        router_free(&r);
}

/* A guest can neither STOP the TDI the host bound nor LOCK it with parameters of its own: the
 * emulated TSM refuses both in scope state-change, as a kernel TSM takes only the transition to
 * RUN from a guest, and the host's lock and nonce stay. A TDI locked where the router did not
 * see it (here: behind its back) has no nonce held, and even the right one from the guest does
 * not start it. */
TEST(guest_cannot_stop_or_lock_the_tdi) {
        TdispLockInterfaceParams lock = {
                .flags = htole16(TDISP_LOCK_FLAG_NO_FW_UPDATE | TDISP_LOCK_FLAG_LOCK_MSIX),
                .mmio_reporting_offset = htole64(UINT64_C(0x10000000)),
        };
        uint8_t zero[TDISP_NONCE_SIZE] = {}, nonce[TDISP_NONCE_SIZE];
        EmuDevice *dev;
        EmuDeviceSaved saved;
        Router r;
        Done locked, start, stop;

        router_new_bound(&r, DEV1, NULL, 0, 5000 * MSEC);
        dev = emu_platform_find_device(tsm_platform_get_emulated(r.p), DEV1);
        submit_state_change(&r, DEV1, TDISP_MSG_STOP_INTERFACE_REQ, NULL, 0, &stop);
        run_until(&r, &stop.called, SLACK_USEC);
        ASSERT_ERRNO(stop.result, EINVAL); /* as the kernel's TSMs answer it */
        submit_state_change(&r, DEV1, TDISP_MSG_LOCK_INTERFACE_REQ, &lock, sizeof(lock), &locked);
        run_until(&r, &locked.called, SLACK_USEC);
        ASSERT_ERRNO(locked.result, EINVAL);
        emu_device_save(dev, &saved);
        ASSERT_EQ(saved.lock.flags, TDISP_LOCK_FLAG_NO_FW_UPDATE); /* the host's */
        ASSERT_EQ(saved.lock.mmio_reporting_offset, 0u);
        submit_state_change(&r, DEV1, TDISP_MSG_START_INTERFACE_REQ, zero, sizeof(zero), &start);
        run_until(&r, &start.called, SLACK_USEC);
        ASSERT_EQ(start.type, TDISP_MSG_START_INTERFACE_RSP);
        ASSERT_EQ(state_of(&r, DEV1), TDISP_STATE_RUN);
        set_bound(&r, DEV1, true); /* bound already: 0, as the kernel's pci_tsm_bind() */
        ASSERT_EQ(state_of(&r, DEV1), TDISP_STATE_RUN);

        ASSERT_OK(emu_device_unbind(dev));
        ASSERT_OK(emu_device_bind(dev, nonce));
        submit_state_change(&r, DEV1, TDISP_MSG_START_INTERFACE_REQ, nonce, sizeof(nonce), &start);
        run_until(&r, &start.called, SLACK_USEC);
        ASSERT_EQ(start.type, TDISP_MSG_ERROR);
        ASSERT_EQ(error_of(&start), TDISP_ERROR_INVALID_NONCE);
        ASSERT_EQ(state_of(&r, DEV1), TDISP_STATE_CONFIG_LOCKED);
        router_free(&r);
}

/* The result of a GET_VERSION to address (0: answered). */
static int version_result(Router *r, const char *address) {
        Done d;

        (void) submit(r, address, TDISP_MSG_GET_VERSION, &d);
        run_until(r, &d.called, SLACK_USEC);
        ASSERT_TRUE(d.called);
        if (d.result >= 0)
                ASSERT_EQ(d.type, TDISP_MSG_VERSION);
        return d.result;
}

/* An unbind cannot fail, as the kernel's pci_tsm_unbind() is void: whatever fault the device has,
 * the unbind is done and the binding dropped (guest requests refused: not bound). A device that
 * did not take the STOP keeps its TDI as it was; an unbind once it answers again unlocks it. */
TEST(unbind_succeeds_whatever_the_device_answers) {
        static const char *const faulty[] = {
                DEV1 ":fault=busy", DEV1 ":fault=timeout", DEV1 ":fault=tdisp-error", DEV1 ":fault=gone",
        };

        for (size_t i = 0; i < ELEMENTSOF(faulty); i++) {
                EmuDevice *dev;
                Router r;

                router_new_bound(&r, DEV1, faulty[i], 0, 1000 * MSEC);
                dev = emu_platform_find_device(tsm_platform_get_emulated(r.p), DEV1);
                set_bound(&r, DEV1, false);
                ASSERT_OK(tsm_platform_set_emulated_devices(r.p, DEV1));
                ASSERT_ERRNO(version_result(&r, DEV1), ENXIO);
                set_bound(&r, DEV1, false);
                ASSERT_EQ(emu_device_get_state(dev), TDISP_STATE_CONFIG_UNLOCKED);
                set_bound(&r, DEV1, true);
                ASSERT_EQ(emu_device_get_state(dev), TDISP_STATE_CONFIG_LOCKED);
                router_free(&r);
        }
}

/* As the kernel's pci_tsm_guest_req() answers ENXIO for a TDI not bound, the emulated TSM takes
 * guest requests only from the host's bind to its unbind, without asking the device otherwise:
 * a guest cannot even ask a TDI nobody bound. The binding outlasts the TDI's lock (a reset), as
 * the kernel's does, but not an unbind, nor the device leaving the platform. */
TEST(guest_requests_need_a_bound_tdi) {
        uint8_t zero[TDISP_NONCE_SIZE] = {};
        Router r;
        Done d;

        router_new(&r, DEV1 "," DEV2, 0, 5000 * MSEC);
        ASSERT_ERRNO(version_result(&r, DEV1), ENXIO);
        submit_state_change(&r, DEV1, TDISP_MSG_START_INTERFACE_REQ, zero, sizeof(zero), &d);
        run_until(&r, &d.called, SLACK_USEC);
        ASSERT_ERRNO(d.result, ENXIO);
        ASSERT_EQ(state_of(&r, DEV1), TDISP_STATE_CONFIG_UNLOCKED); /* never asked */

        set_bound(&r, DEV1, true);
        ASSERT_OK(version_result(&r, DEV1));
        ASSERT_ERRNO(version_result(&r, DEV2), ENXIO); /* bound is per device */
        ASSERT_OK(tsm_platform_set_emulated_devices(r.p, DEV1 ":fault=gone," DEV2));
        ASSERT_ERRNO(version_result(&r, DEV1), ENODEV); /* a reset */
        ASSERT_OK(tsm_platform_set_emulated_devices(r.p, DEV1 "," DEV2));
        ASSERT_EQ(state_of(&r, DEV1), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_OK(version_result(&r, DEV1));

        set_bound(&r, DEV1, false);
        ASSERT_ERRNO(version_result(&r, DEV1), ENXIO);

        /* Removed bound and added back: another device, which nobody bound. */
        set_bound(&r, DEV1, true);
        ASSERT_OK(tsm_platform_set_emulated_devices(r.p, DEV2));
        ASSERT_OK(tsm_platform_set_emulated_devices(r.p, DEV1 "," DEV2));
        ASSERT_ERRNO(version_result(&r, DEV1), ENXIO);
        router_free(&r);
}

/* A debug READ or WRITE of a scratch register of address's device, in scope. */
static void submit_debug(Router *r, const char *address, const char *scope, uint8_t op, uint64_t value, Done *d) {
        EmuDevice *dev = emu_platform_find_device(tsm_platform_get_emulated(r->p), address);
        uint8_t msg[sizeof(EmuDebugMessage)];
        size_t len;

        ASSERT_NOT_NULL(dev);
        ASSERT_OK(emu_debug_build_request(emu_device_get_function_id(dev), EMU_VENDOR_ID_DEFAULT, op,
                                          EMU_DEBUG_REG_SCRATCH_FIRST, value, msg, sizeof(msg), &len));
        submit_msg(r, address, scope, msg, len, d);
}

/* The scratch register a debug WRITE would change, as the device holds it. */
static uint64_t scratch_of(Router *r, const char *address) {
        EmuDeviceSaved saved;

        emu_device_save(emu_platform_find_device(tsm_platform_get_emulated(r->p), address), &saved);
        return saved.regs[EMU_DEBUG_REG_SCRATCH_FIRST];
}

/* Far more than a refusal may take: a refusal answered after it was an exchange. */
#define LONG_LATENCY_USEC (30000 * MSEC)

/* As mainline kernels' pci_tsm_guest_req() refuses every scope past state-change (EINVAL) before
 * a TSM driver sees it, the emulated TSM refuses the debug scopes unless configured to serve
 * them: before it looks at the binding (EINVAL on a TDI not bound too), the device never asked. */
TEST(debug_scopes_refused_unless_served) {
        static const char *const scopes[] = { "debug-read", "debug-write" };
        TsmDeviceInfo info;
        Router r;
        Done d;

        router_new(&r, DEV1 "," DEV2, 0, 5000 * MSEC);
        set_bound(&r, DEV1, true);
        /* Nor listed among its scopes (AttachDevice), other scopes are. */
        ASSERT_OK(tsm_platform_get_device(r.p, DEV1, &info));
        ASSERT_FALSE(tsm_platform_serves_scope(r.p, &info, "debug-read"));
        ASSERT_FALSE(tsm_platform_serves_scope(r.p, &info, "debug-write"));
        ASSERT_TRUE(tsm_platform_serves_scope(r.p, &info, "info"));
        for (size_t i = 0; i < ELEMENTSOF(scopes); i++) {
                uint8_t op = i == 0 ? EMU_DEBUG_OP_READ : EMU_DEBUG_OP_WRITE;

                submit_debug(&r, DEV1, scopes[i], op, 0x5ec2e7, &d);
                run_until(&r, &d.called, SLACK_USEC);
                ASSERT_TRUE(d.called);
                ASSERT_ERRNO(d.result, EINVAL);
                submit_debug(&r, DEV2, scopes[i], op, 0x5ec2e7, &d);
                run_until(&r, &d.called, SLACK_USEC);
                ASSERT_ERRNO(d.result, EINVAL); /* not ENXIO: the scope is refused first */
        }
        ASSERT_EQ(scratch_of(&r, DEV1), 0u);
        ASSERT_OK(version_result(&r, DEV1)); /* the other scopes are served */
        router_free(&r);
}

/* Configured to serve them, the TSM takes the debug scopes like any other: each an exchange with
 * the device, after its latency, in the scope its operation belongs to. */
TEST(debug_scopes_served_when_configured) {
        TsmDeviceInfo info;
        Router r;
        Done d;

        router_new_full(&r, DEV1, 20 * MSEC, 5000 * MSEC, true);
        set_bound(&r, DEV1, true);
        ASSERT_OK(tsm_platform_get_device(r.p, DEV1, &info));
        ASSERT_TRUE(tsm_platform_serves_scope(r.p, &info, "debug-read"));
        ASSERT_TRUE(tsm_platform_serves_scope(r.p, &info, "debug-write"));
        submit_debug(&r, DEV1, "debug-write", EMU_DEBUG_OP_WRITE, 0x5ec2e7, &d);
        run_until(&r, &d.called, SLACK_USEC);
        ASSERT_OK(d.result);
        ASSERT_EQ(d.type, TDISP_MSG_VDM_RSP);
        ASSERT_GE(d.at + EARLY_USEC, 20 * MSEC);
        ASSERT_EQ(scratch_of(&r, DEV1), 0x5ec2e7u);
        submit_debug(&r, DEV1, "debug-read", EMU_DEBUG_OP_READ, 0, &d);
        run_until(&r, &d.called, SLACK_USEC);
        ASSERT_OK(d.result);
        ASSERT_EQ(d.type, TDISP_MSG_VDM_RSP);
        /* A WRITE is not a read's business. */
        submit_debug(&r, DEV1, "debug-read", EMU_DEBUG_OP_WRITE, 1, &d);
        run_until(&r, &d.called, SLACK_USEC);
        ASSERT_ERRNO(d.result, EINVAL);
        ASSERT_EQ(scratch_of(&r, DEV1), 0x5ec2e7u);
        router_free(&r);
}

static bool held_bound(const char *pci_address, bool *ret_bound, void *userdata) {
        *ret_bound = true;
        return true;
}

static bool held_none(const char *pci_address, bool *ret_bound, void *userdata) {
        return false;
}

/* Across a restart of tsmd (emu-state.h): a bound device in RUN saved by one platform comes back
 * in RUN in the next, bound (its guest's requests served): the restore's bind finds it so, and
 * an unbind ends it. A stop before the restore is done
 * (nothing holds the device yet) keeps it as it came; once done, a device nothing holds is
 * released, and a stop keeps nothing. */
TEST(emulated_state_across_restarts) {
        TsmTarget t = { .pci_address = DEV1, .iommufd = -EBADF };
        uint8_t guess[TDISP_NONCE_SIZE] = {};
        int fd = -EBADF, fd2 = -EBADF, none = -EBADF;
        Router a, b, c;
        Done bind, start;
        size_t n;

        router_new(&a, DEV1 "," DEV2, 0, 5000 * MSEC);
        bind = (Done){ .start = now_monotonic_usec() };
        ASSERT_OK(tsm_platform_bind(a.p, &t, on_bound, &bind, NULL));
        run_until(&a, &bind.called, SLACK_USEC);
        ASSERT_OK(bind.result);
        submit_state_change(&a, DEV1, TDISP_MSG_START_INTERFACE_REQ, guess, sizeof(guess), &start);
        run_until(&a, &start.called, SLACK_USEC);
        ASSERT_EQ(state_of(&a, DEV1), TDISP_STATE_RUN);
        ASSERT_OK(tsm_platform_save_emulated(a.p, held_bound, NULL, &fd, &n));
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(n, 1u); /* DEV2 has nothing */
        router_free(&a);

        router_new(&b, DEV1 "," DEV2, 0, 5000 * MSEC);
        ASSERT_OK(tsm_platform_load_emulated(b.p, fd, &n));
        ASSERT_EQ(n, 1u);
        ASSERT_EQ(state_of(&b, DEV1), TDISP_STATE_RUN);
        ASSERT_OK(tsm_platform_save_emulated(b.p, held_none, NULL, &fd2, &n));
        ASSERT_TRUE(fd2 >= 0);
        ASSERT_EQ(n, 1u);
        ASSERT_OK(version_result(&b, DEV1)); /* the binding came back with the TDI */
        tsm_platform_emulated_restored(b.p, held_none, NULL);
        ASSERT_EQ(state_of(&b, DEV1), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_ERRNO(version_result(&b, DEV1), ENXIO); /* released: unbound */
        ASSERT_OK(tsm_platform_save_emulated(b.p, held_none, NULL, &none, &n));
        ASSERT_EQ(none, -EBADF);
        ASSERT_EQ(n, 0u);
        router_free(&b);

        router_new(&c, DEV1, 0, 5000 * MSEC);
        ASSERT_OK(tsm_platform_load_emulated(c.p, fd2, &n));
        ASSERT_EQ(state_of(&c, DEV1), TDISP_STATE_RUN);
        bind = (Done){ .start = now_monotonic_usec() };
        ASSERT_OK(tsm_platform_bind(c.p, &t, on_bound, &bind, NULL));
        run_until(&c, &bind.called, SLACK_USEC);
        ASSERT_OK(bind.result);
        ASSERT_EQ(state_of(&c, DEV1), TDISP_STATE_RUN);
        ASSERT_OK(version_result(&c, DEV1));
        set_bound(&c, DEV1, false);
        ASSERT_ERRNO(version_result(&c, DEV1), ENXIO);
        router_free(&c);
        safe_close(fd);
        safe_close(fd2);
}

/* A router over DEV1, bound (CONFIG_LOCKED), and DEV2, whose devices take latency_usec per
 * exchange: DEV1 bound by a router of no latency and brought over as across a restart of tsmd,
 * so that the bind's latency is not waited out. */
static void router_new_bound_slow(Router *r, uint64_t latency_usec) {
        int fd = -EBADF;
        Router a;
        size_t n;

        router_new(&a, DEV1 "," DEV2, 0, 5000 * MSEC);
        set_bound(&a, DEV1, true);
        ASSERT_OK(tsm_platform_save_emulated(a.p, held_bound, NULL, &fd, &n));
        ASSERT_EQ(n, 1u);
        router_free(&a);
        router_new(r, DEV1 "," DEV2, latency_usec, 2 * latency_usec);
        ASSERT_OK(tsm_platform_load_emulated(r->p, fd, &n));
        ASSERT_EQ(n, 1u);
        safe_close(fd);
}

/* What the TSM refuses it refuses before any exchange with the device, as a kernel TSM does: no
 * EmulatedLatencyUSec for a debug scope it does not serve, a message its scope does not carry
 * (the guest's STOP or LOCK, GET_TDISP_VERSION in state-change, a message too short to have a
 * code), nor a TDI not bound. What it serves takes the latency. */
TEST(tsm_refusals_take_no_exchange) {
        uint8_t version[sizeof(TdispHeader)], stop[sizeof(TdispHeader)], junk = 0x10;
        const struct {
                const char *address, *scope;
                const void *msg;
                size_t len;
                int result;
        } refused[] = {
                { DEV1, "state-change", stop, sizeof(stop), -EINVAL },
                { DEV1, "state-change", version, sizeof(version), -EINVAL },
                { DEV1, "info", &junk, 1, -EINVAL },
                { DEV2, "info", version, sizeof(version), -ENXIO },
        };
        EmuDevice *dev;
        Router r;
        Done d, served;
        size_t len;

        router_new_bound_slow(&r, LONG_LATENCY_USEC);
        dev = emu_platform_find_device(tsm_platform_get_emulated(r.p), DEV1);
        ASSERT_OK(tdisp_build_request(TDISP_MSG_GET_VERSION, emu_device_get_function_id(dev), NULL, 0, version,
                                      sizeof(version), &len));
        ASSERT_OK(tdisp_build_request(TDISP_MSG_STOP_INTERFACE_REQ, emu_device_get_function_id(dev), NULL, 0, stop,
                                      sizeof(stop), &len));

        for (size_t i = 0; i < ELEMENTSOF(refused); i++) {
                submit_msg(&r, refused[i].address, refused[i].scope, refused[i].msg, refused[i].len, &d);
                run_until(&r, &d.called, SLACK_USEC);
                ASSERT_TRUE(d.called);
                ASSERT_EQ(d.result, refused[i].result);
                ASSERT_TRUE(d.at < SLACK_USEC);
        }
        submit_debug(&r, DEV1, "debug-read", EMU_DEBUG_OP_READ, 0, &d);
        run_until(&r, &d.called, SLACK_USEC);
        ASSERT_TRUE(d.called);
        ASSERT_ERRNO(d.result, EINVAL);

        /* Served: the device takes its time. */
        submit_msg(&r, DEV1, "info", version, sizeof(version), &served);
        run_until(&r, &served.called, SLACK_USEC);
        ASSERT_FALSE(served.called);
        ASSERT_EQ(state_of(&r, DEV1), TDISP_STATE_CONFIG_LOCKED);
        router_free(&r);
}

/* The nonce of a LOCK the host's bind makes on the emulated device at address, which is then
 * unbound: clean again, as a fresh device. */
static void bind_nonce(Router *r, const char *address, uint8_t nonce[static TDISP_NONCE_SIZE]) {
        EmuDevice *d = emu_platform_find_device(tsm_platform_get_emulated(r->p), address);

        ASSERT_NOT_NULL(d);
        ASSERT_OK(emu_device_bind(d, nonce));
        ASSERT_OK(emu_device_unbind(d));
        ASSERT_TRUE(emu_device_is_clean(d));
}

/* A nonce never repeats one an earlier run of tsmd issued for the address, though the lock count
 * starts again where the snapshot has no record of the device (it was clean) or its record is
 * not loaded (the device is configured otherwise): each run salts its nonces anew. */
TEST(nonces_never_repeat_across_restarts) {
        uint8_t first[TDISP_NONCE_SIZE], nonce[TDISP_NONCE_SIZE], again[TDISP_NONCE_SIZE];
        int fd = -EBADF;
        Router a, b, c, d;
        size_t n;

        router_new(&a, DEV1, 0, 5000 * MSEC);
        bind_nonce(&a, DEV1, first);
        ASSERT_OK(tsm_platform_save_emulated(a.p, held_bound, NULL, &fd, &n));
        ASSERT_EQ(fd, -EBADF);
        ASSERT_EQ(n, 0u);
        router_free(&a);

        router_new(&b, DEV1, 0, 5000 * MSEC);
        bind_nonce(&b, DEV1, nonce);
        ASSERT_FALSE(memcmp(first, nonce, sizeof(first)) == 0);
        /* Locked at the stop: saved, but the next run emulates another device there. */
        ASSERT_OK(emu_device_bind(emu_platform_find_device(tsm_platform_get_emulated(b.p), DEV1), NULL));
        ASSERT_OK(tsm_platform_save_emulated(b.p, held_bound, NULL, &fd, &n));
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(n, 1u);
        router_free(&b);

        router_new(&c, DEV1 ":vendor=8086", 0, 5000 * MSEC);
        ASSERT_OK(tsm_platform_load_emulated(c.p, fd, &n));
        ASSERT_EQ(n, 0u);
        fd = safe_close(fd);
        ASSERT_OK(tsm_platform_save_emulated(c.p, held_bound, NULL, &fd, &n));
        ASSERT_EQ(fd, -EBADF);
        router_free(&c);

        /* Back to the first run's device, its lock count at 0 again. */
        router_new(&d, DEV1, 0, 5000 * MSEC);
        bind_nonce(&d, DEV1, again);
        ASSERT_FALSE(memcmp(first, again, sizeof(first)) == 0);
        ASSERT_FALSE(memcmp(nonce, again, sizeof(nonce)) == 0);
        router_free(&d);
}

/* A reload that drops an emulated device and one that adds it back: the device starts fresh,
 * its lock count at 0, but not its nonces. */
TEST(nonces_never_repeat_across_reloads) {
        uint8_t first[TDISP_NONCE_SIZE], nonce[TDISP_NONCE_SIZE];
        Router r;

        router_new(&r, DEV1 "," DEV2, 0, 5000 * MSEC);
        bind_nonce(&r, DEV1, first);
        ASSERT_OK(tsm_platform_set_emulated_devices(r.p, DEV2));
        ASSERT_OK(tsm_platform_set_emulated_devices(r.p, DEV1 "," DEV2));
        bind_nonce(&r, DEV1, nonce);
        ASSERT_FALSE(memcmp(first, nonce, sizeof(first)) == 0);
        router_free(&r);
}

/* fd's snapshot with its records' text cut by one byte (change -1), one byte added after them
 * (+1) or unchanged (0), and its checksum made again: whole to the checksum. A new memfd with
 * the given seals. */
static int snapshot_copy(int fd, int change, unsigned seals) {
        uint8_t buf[4096], digest[SHA256_DIGEST_SIZE];
        ssize_t k = pread(fd, buf, sizeof(buf), 0);
        size_t n;
        int out;

        ASSERT_TRUE(k > (ssize_t) SHA256_DIGEST_SIZE && k < (ssize_t) sizeof(buf));
        n = (size_t) k - SHA256_DIGEST_SIZE;
        if (change < 0)
                n--;
        else if (change > 0)
                buf[n++] = 0;
        sha256(buf, n, digest);
        memcpy(buf + n, digest, sizeof(digest));
        out = memfd_create("copy", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        ASSERT_TRUE(out >= 0);
        ASSERT_EQ(write(out, buf, n + sizeof(digest)), (ssize_t) (n + sizeof(digest)));
        ASSERT_OK(fcntl(out, F_ADD_SEALS, seals));
        return out;
}

/* A snapshot damaged after its first record (the second cut short, or bytes after the last) is
 * refused whole: the first device is not restored either. */
TEST(emulated_state_damaged_after_a_record_loads_none) {
        TsmTarget t1 = { .pci_address = DEV1, .iommufd = -EBADF }, t2 = { .pci_address = DEV2, .iommufd = -EBADF };
        _cleanup_close_ int fd = -EBADF;
        Done bind1, bind2;
        Router a;
        size_t n;

        router_new(&a, DEV1 "," DEV2, 0, 5000 * MSEC);
        bind1 = (Done){ .start = now_monotonic_usec() };
        bind2 = (Done){ .start = now_monotonic_usec() };
        ASSERT_OK(tsm_platform_bind(a.p, &t1, on_bound, &bind1, NULL));
        ASSERT_OK(tsm_platform_bind(a.p, &t2, on_bound, &bind2, NULL));
        run_until(&a, &bind1.called, SLACK_USEC);
        run_until(&a, &bind2.called, SLACK_USEC);
        ASSERT_OK(bind1.result);
        ASSERT_OK(bind2.result);
        ASSERT_EQ(state_of(&a, DEV1), TDISP_STATE_CONFIG_LOCKED);
        ASSERT_OK(tsm_platform_save_emulated(a.p, held_bound, NULL, &fd, &n));
        ASSERT_EQ(n, 2u);
        router_free(&a);

        for (int change = -1; change <= 1; change += 2) {
                _cleanup_close_ int damaged = snapshot_copy(fd, change, F_SEAL_WRITE | F_SEAL_SHRINK);
                Router b;

                router_new(&b, DEV1 "," DEV2, 0, 5000 * MSEC);
                n = 7;
                ASSERT_ERRNO(tsm_platform_load_emulated(b.p, damaged, &n), EBADMSG);
                ASSERT_EQ(n, 0u);
                ASSERT_EQ(state_of(&b, DEV1), TDISP_STATE_CONFIG_UNLOCKED);
                ASSERT_EQ(state_of(&b, DEV2), TDISP_STATE_CONFIG_UNLOCKED);
                router_free(&b);
        }

        /* Whole, but it could shrink under the monitor's reads (SIGBUS): refused. */
        {
                _cleanup_close_ int shrinkable = snapshot_copy(fd, 0, F_SEAL_WRITE);
                Router b;

                router_new(&b, DEV1 "," DEV2, 0, 5000 * MSEC);
                ASSERT_ERRNO(tsm_platform_load_emulated(b.p, shrinkable, &n), EBADMSG);
                ASSERT_EQ(state_of(&b, DEV1), TDISP_STATE_CONFIG_UNLOCKED);
                router_free(&b);
        }
}

/* A snapshot not sealed against writes and shrinking, or not one at all, is refused whole. */
TEST(emulated_state_refused_unless_sealed_and_whole) {
        _cleanup_close_ int fd = memfd_create("not-sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        char junk[256] = "tsmdemu1";
        Router r;
        size_t n;

        router_new(&r, DEV1, 0, 5000 * MSEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, junk, sizeof(junk)), (ssize_t) sizeof(junk));
        ASSERT_ERRNO(tsm_platform_load_emulated(r.p, fd, &n), EBADMSG);
        ASSERT_OK(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE));
        ASSERT_ERRNO(tsm_platform_load_emulated(r.p, fd, &n), EBADMSG); /* may shrink */
        ASSERT_OK(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK));
        ASSERT_ERRNO(tsm_platform_load_emulated(r.p, fd, &n), EBADMSG); /* no checksum */
        ASSERT_EQ(state_of(&r, DEV1), TDISP_STATE_CONFIG_UNLOCKED);
        router_free(&r);
}

TEST_MAIN();
