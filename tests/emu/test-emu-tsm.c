/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The emulated TSM as TDISP requester (daemon/emu-tsm.c): it keeps the nonce of the LOCK it
 * made at a bind (a guest can neither LOCK nor STOP), completes the guest's START_INTERFACE_REQUEST with
 * it whatever nonce bytes the guest sent, never hands it to the guest, and drops it once used or
 * once the TDI is no longer CONFIG_LOCKED, so that a START it holds no nonce for fails at the
 * device (INVALID_NONCE, or INVALID_INTERFACE_STATE if the TDI is not locked); it holds the
 * TDI's binding from the host's bind to its unbind, as the kernel does, for the router to refuse
 * guest requests without one; it serves the debug scopes only when told to (EINVAL, as mainline
 * kernels, otherwise).
 * Runs in: tests.
 */

#include "emu-platform.h"
#include "emu-tsm.h"
#include "harness.h"
#include "tdisp.h"

#define DEV1 "0000:01:00.0"

typedef struct Fixture {
        EmuPlatform *platform;
        EmuDevice *d; /* borrowed */
        EmuTsm *tsm;
} Fixture;

static void fixture_new(Fixture *f) {
        ASSERT_OK(emu_platform_new_from_config(DEV1, &f->platform));
        f->d = emu_platform_find_device(f->platform, DEV1);
        ASSERT_NOT_NULL(f->d);
        ASSERT_OK(emu_tsm_new(&f->tsm));
}

static void fixture_free(Fixture *f) {
        f->tsm = emu_tsm_free(f->tsm);
        f->platform = emu_platform_free(f->platform);
}

typedef struct Answer {
        int result;
        uint8_t buf[EMU_RESPONSE_MAX];
        size_t len;
} Answer;

/* A guest's request through the TSM. */
static Answer guest(Fixture *f, EmuScope scope, uint8_t type, const void *body, size_t body_len) {
        uint8_t msg[128];
        size_t len;
        Answer a = {};

        ASSERT_OK(tdisp_build_request(type, emu_device_get_function_id(f->d), body, body_len, msg, sizeof(msg),
                                      &len));
        a.result = emu_tsm_request(f->tsm, f->d, scope, msg, len, a.buf, sizeof(a.buf), &a.len);
        return a;
}

/* A guest's START carrying nonce (what it thinks the nonce is): the type of the answer, or with
 * ret_error the TDISP error code. */
static uint8_t guest_start(Fixture *f, const uint8_t nonce[static TDISP_NONCE_SIZE], uint32_t *ret_error) {
        Answer a = guest(f, EMU_SCOPE_STATE_CHANGE, TDISP_MSG_START_INTERFACE_REQ, nonce, TDISP_NONCE_SIZE);

        ASSERT_OK(a.result);
        ASSERT_GE(a.len, sizeof(TdispHeader));
        if (ret_error) {
                *ret_error = 0;
                (void) tdisp_error_decode(a.buf, a.len, ret_error, NULL);
        }
        return a.buf[1];
}

static const uint8_t zero[TDISP_NONCE_SIZE] = {};

/* The realistic accept: the host binds (the TSM locks the TDI), the guest reads the report and
 * sends START, knowing no nonce; the TSM starts the TDI with its own. Once. */
TEST(bind_then_guest_start_reaches_run) {
        uint8_t junk[TDISP_NONCE_SIZE];
        uint32_t error;
        Fixture f;

        fixture_new(&f);
        ASSERT_FALSE(emu_tsm_holds_nonce(f.tsm, f.d));
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_CONFIG_LOCKED);
        ASSERT_TRUE(emu_tsm_holds_nonce(f.tsm, f.d));

        Answer report = guest(&f, EMU_SCOPE_INFO, TDISP_MSG_GET_DEVICE_INTERFACE_REPORT,
                              (const uint16_t[2]){ 0, htole16(64) }, 4);
        ASSERT_OK(report.result);
        ASSERT_EQ(report.buf[1], TDISP_MSG_DEVICE_INTERFACE_REPORT);
        ASSERT_TRUE(emu_tsm_holds_nonce(f.tsm, f.d));

        /* Whatever the guest put where the nonce goes. */
        memset(junk, 0xa5, sizeof(junk));
        ASSERT_EQ(guest_start(&f, junk, NULL), TDISP_MSG_START_INTERFACE_RSP);
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_RUN);
        ASSERT_FALSE(emu_tsm_holds_nonce(f.tsm, f.d)); /* used */

        ASSERT_EQ(guest_start(&f, zero, &error), TDISP_MSG_ERROR);
        ASSERT_EQ(error, TDISP_ERROR_INVALID_INTERFACE_STATE);
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_RUN);
        fixture_free(&f);
}

/* A bind of a TDI bound already is done without asking the device, as the kernel's
 * pci_tsm_bind() answers 0 for a TDI bound already: in CONFIG_LOCKED (the nonce held stays the
 * one the guest's START gets), in RUN, and in ERROR (the host unbinds to recover, as on a kernel
 * TSM). An unbind ends the binding: the next bind locks the TDI again. */
TEST(bind_of_a_bound_tdi_asks_nothing) {
        uint8_t first[TDISP_NONCE_SIZE], again[TDISP_NONCE_SIZE];
        EmuDeviceSaved saved;
        Fixture f;

        fixture_new(&f);
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        ASSERT_TRUE(emu_tsm_get_nonce(f.tsm, f.d, first));
        emu_device_save(f.d, &saved);
        ASSERT_EQ(saved.n_locks, 1u);
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        ASSERT_TRUE(emu_tsm_get_nonce(f.tsm, f.d, again));
        ASSERT_MEMEQ(first, again, sizeof(first));
        emu_device_save(f.d, &saved);
        ASSERT_EQ(saved.n_locks, 1u); /* not asked */
        ASSERT_EQ(guest_start(&f, zero, NULL), TDISP_MSG_START_INTERFACE_RSP);
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_RUN);

        ASSERT_EQ(emu_device_trigger_tdi_error(f.d), 1);
        ASSERT_OK(emu_device_inject_fault(f.d, EMU_FAULT_BUSY, 1)); /* would fail a bind that asks */
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_ERROR);
        emu_device_clear_fault(f.d);
        emu_device_save(f.d, &saved);
        ASSERT_EQ(saved.n_locks, 1u);

        ASSERT_OK(emu_tsm_unbind(f.tsm, f.d));
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        emu_device_save(f.d, &saved);
        ASSERT_EQ(saved.n_locks, 2u);
        ASSERT_OK(emu_tsm_unbind(f.tsm, f.d));
        fixture_free(&f);
}

/* A guest cannot take the TDI from the host: LOCK and STOP are the TSM's (a kernel TSM takes only
 * the transition to RUN from a guest), refused in every scope, unseen by the device. So a guest
 * cannot STOP the TDI the host bound and LOCK it again with parameters of its own (MSI-X locked,
 * another reporting offset): the TDI keeps the host's lock, the host's bind still finds it
 * bound, and the guest's START uses the host's nonce. */
TEST(guest_cannot_stop_or_lock) {
        TdispLockInterfaceParams lock = {
                .flags = htole16(TDISP_LOCK_FLAG_NO_FW_UPDATE | TDISP_LOCK_FLAG_LOCK_MSIX),
                .mmio_reporting_offset = htole64(UINT64_C(0x10000000)),
        };
        EmuDeviceSaved saved;
        Answer a;
        Fixture f;

        fixture_new(&f);
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        for (EmuScope s = 0; s < _EMU_SCOPE_MAX; s++) {
                a = guest(&f, s, TDISP_MSG_STOP_INTERFACE_REQ, NULL, 0);
                ASSERT_ERRNO(a.result, EINVAL); /* as the kernel's TSMs answer it */
                a = guest(&f, s, TDISP_MSG_LOCK_INTERFACE_REQ, &lock, sizeof(lock));
                ASSERT_ERRNO(a.result, EINVAL);
        }
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_CONFIG_LOCKED);
        emu_device_save(f.d, &saved);
        ASSERT_EQ(saved.n_locks, 1u);
        ASSERT_EQ(saved.lock.flags, TDISP_LOCK_FLAG_NO_FW_UPDATE);
        ASSERT_EQ(saved.lock.mmio_reporting_offset, 0u);
        ASSERT_TRUE(emu_tsm_holds_nonce(f.tsm, f.d));

        /* A START in another scope is refused unseen and uses nothing. */
        a = guest(&f, EMU_SCOPE_INFO, TDISP_MSG_START_INTERFACE_REQ, zero, sizeof(zero));
        ASSERT_ERRNO(a.result, EINVAL);
        /* One of the wrong size is malformed: the device refuses it before any nonce. */
        a = guest(&f, EMU_SCOPE_STATE_CHANGE, TDISP_MSG_START_INTERFACE_REQ, zero, sizeof(zero) - 1);
        ASSERT_OK(a.result);
        ASSERT_EQ(a.buf[1], TDISP_MSG_ERROR);
        ASSERT_TRUE(emu_tsm_holds_nonce(f.tsm, f.d));

        ASSERT_EQ(guest_start(&f, zero, NULL), TDISP_MSG_START_INTERFACE_RSP);
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_RUN);
        a = guest(&f, EMU_SCOPE_STATE_CHANGE, TDISP_MSG_STOP_INTERFACE_REQ, NULL, 0);
        ASSERT_ERRNO(a.result, EINVAL);
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_RUN);
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        fixture_free(&f);
}

/* A TDI locked behind the TSM's back: the TSM holds no nonce for it, and the guest's bytes, even
 * the right nonce, never reach the device: INVALID_NONCE, the TDI stays CONFIG_LOCKED. */
TEST(start_the_tsm_holds_no_nonce_for_fails) {
        uint8_t nonce[TDISP_NONCE_SIZE];
        uint32_t error;
        Fixture f;

        fixture_new(&f);
        ASSERT_OK(emu_device_bind(f.d, nonce));
        ASSERT_FALSE(emu_tsm_holds_nonce(f.tsm, f.d));
        ASSERT_EQ(guest_start(&f, nonce, &error), TDISP_MSG_ERROR);
        ASSERT_EQ(error, TDISP_ERROR_INVALID_NONCE);
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_CONFIG_LOCKED);

        /* The bind's LOCK is refused (locked already); the TSM still has nothing to start with. */
        ASSERT_ERRNO(emu_tsm_bind(f.tsm, f.d), EALREADY);
        ASSERT_FALSE(emu_tsm_holds_nonce(f.tsm, f.d));
        ASSERT_EQ(guest_start(&f, nonce, &error), TDISP_MSG_ERROR);
        ASSERT_EQ(error, TDISP_ERROR_INVALID_NONCE);
        fixture_free(&f);
}

typedef enum Unlock {
        UNLOCK_UNBIND,
        UNLOCK_RELEASE,
        UNLOCK_RESET,     /* fault gone */
        UNLOCK_TDI_ERROR, /* locked configuration changed */
        UNLOCK_REMOVED,   /* the device left the platform */
        _UNLOCK_MAX,
} Unlock;

/* Every way the TDI leaves CONFIG_LOCKED takes the TSM's nonce with it. */
TEST(nonce_dropped_when_the_tdi_is_unlocked) {
        for (Unlock u = 0; u < _UNLOCK_MAX; u++) {
                uint8_t nonce[TDISP_NONCE_SIZE];
                uint32_t error;
                Answer a;
                Fixture f;

                fixture_new(&f);
                ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
                ASSERT_TRUE(emu_tsm_holds_nonce(f.tsm, f.d));
                switch (u) {
                case UNLOCK_UNBIND:
                        ASSERT_OK(emu_tsm_unbind(f.tsm, f.d));
                        break;
                case UNLOCK_RELEASE:
                        ASSERT_OK(emu_tsm_release(f.tsm, f.d));
                        break;
                case UNLOCK_RESET:
                        ASSERT_OK(emu_device_inject_fault(f.d, EMU_FAULT_GONE, 1));
                        a = guest(&f, EMU_SCOPE_INFO, TDISP_MSG_GET_VERSION, NULL, 0);
                        ASSERT_ERRNO(a.result, ENODEV);
                        break;
                case UNLOCK_TDI_ERROR:
                        ASSERT_EQ(emu_device_trigger_tdi_error(f.d), 1);
                        /* The TSM learns it at its next exchange with the device. */
                        a = guest(&f, EMU_SCOPE_INFO, TDISP_MSG_GET_DEVICE_INTERFACE_STATE, NULL, 0);
                        ASSERT_OK(a.result);
                        ASSERT_EQ(a.buf[sizeof(TdispHeader)], TDISP_STATE_ERROR);
                        break;
                case UNLOCK_REMOVED:
                        ASSERT_OK(emu_platform_remove_device(f.platform, DEV1));
                        ASSERT_TRUE(emu_tsm_holds_nonce(f.tsm, f.d)); /* its reference keeps d */
                        emu_tsm_forget_removed(f.tsm);
                        ASSERT_FALSE(emu_tsm_holds_nonce(f.tsm, f.d));
                        fixture_free(&f);
                        continue;
                default:
                        TEST_FAIL("case %d", u);
                }
                if (emu_tsm_holds_nonce(f.tsm, f.d))
                        TEST_FAIL("case %d: the nonce outlived the lock", u);

                /* A START with no LOCK before it fails as TDISP has it: the TDI is not locked. */
                if (emu_device_get_state(f.d) == TDISP_STATE_CONFIG_UNLOCKED) {
                        ASSERT_EQ(guest_start(&f, zero, &error), TDISP_MSG_ERROR);
                        ASSERT_EQ(error, TDISP_ERROR_INVALID_INTERFACE_STATE);
                }
                /* Locked again behind the TSM's back: nothing held, the right nonce from the
                 * guest does not count. */
                if (emu_device_get_state(f.d) == TDISP_STATE_ERROR)
                        ASSERT_OK(emu_tsm_unbind(f.tsm, f.d));
                ASSERT_OK(emu_device_bind(f.d, nonce));
                ASSERT_EQ(guest_start(&f, nonce, &error), TDISP_MSG_ERROR);
                ASSERT_EQ(error, TDISP_ERROR_INVALID_NONCE);
                fixture_free(&f);
        }
}

/* A bind that fails keeps no nonce, and leaves the TDI as it was. */
TEST(failed_bind_holds_nothing) {
        Fixture f;

        fixture_new(&f);
        ASSERT_OK(emu_device_inject_fault(f.d, EMU_FAULT_BUSY, 1));
        ASSERT_ERRNO(emu_tsm_bind(f.tsm, f.d), EBUSY);
        ASSERT_FALSE(emu_tsm_holds_nonce(f.tsm, f.d));
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        ASSERT_TRUE(emu_tsm_holds_nonce(f.tsm, f.d));
        /* Freed with a nonce held (ASan: nothing leaks). */
        fixture_free(&f);
}

/* The TDI's binding, which guest requests need (the router refuses them without: ENXIO, as the
 * kernel's pci_tsm_guest_req()), is the kernel's: from a bind that succeeded to the unbind, the
 * release or the device's removal. The TDI leaving its lock (ERROR, a reset) does not end it (a
 * bind then asks nothing), and a bind that fails leaves it as it was. */
TEST(binding_lasts_from_bind_to_unbind) {
        Fixture f;

        fixture_new(&f);
        ASSERT_FALSE(emu_tsm_is_bound(f.tsm, f.d));
        ASSERT_OK(emu_device_inject_fault(f.d, EMU_FAULT_BUSY, 1));
        ASSERT_ERRNO(emu_tsm_bind(f.tsm, f.d), EBUSY);
        ASSERT_FALSE(emu_tsm_is_bound(f.tsm, f.d));

        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        ASSERT_TRUE(emu_tsm_is_bound(f.tsm, f.d));
        ASSERT_OK(emu_device_inject_fault(f.d, EMU_FAULT_GONE, 1)); /* a reset: the lock is gone */
        ASSERT_ERRNO(guest(&f, EMU_SCOPE_INFO, TDISP_MSG_GET_VERSION, NULL, 0).result, ENODEV);
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_TRUE(emu_tsm_is_bound(f.tsm, f.d));
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d)); /* bound already: not asked */
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_OK(emu_tsm_unbind(f.tsm, f.d));
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        ASSERT_EQ(emu_device_trigger_tdi_error(f.d), 1);
        ASSERT_OK(guest(&f, EMU_SCOPE_INFO, TDISP_MSG_GET_DEVICE_INTERFACE_STATE, NULL, 0).result);
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_ERROR);
        ASSERT_TRUE(emu_tsm_is_bound(f.tsm, f.d));
        ASSERT_OK(emu_tsm_unbind(f.tsm, f.d));
        ASSERT_FALSE(emu_tsm_is_bound(f.tsm, f.d));

        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        ASSERT_OK(emu_tsm_release(f.tsm, f.d));
        ASSERT_FALSE(emu_tsm_is_bound(f.tsm, f.d));

        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        ASSERT_OK(emu_platform_remove_device(f.platform, DEV1));
        emu_tsm_forget_removed(f.tsm);
        ASSERT_FALSE(emu_tsm_is_bound(f.tsm, f.d));
        fixture_free(&f);
}

/* A restore brings a binding back while its TDI is still locked; one whose lock did not last
 * (or none) comes back unbound, for the restore's bind to lock the TDI again. */
TEST(restore_brings_back_a_binding_still_locked) {
        uint8_t nonce[TDISP_NONCE_SIZE];
        Fixture f;

        fixture_new(&f);
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        ASSERT_TRUE(emu_tsm_get_nonce(f.tsm, f.d, nonce));
        ASSERT_OK(emu_tsm_restore(f.tsm, f.d, nonce, false));
        ASSERT_FALSE(emu_tsm_is_bound(f.tsm, f.d));
        ASSERT_OK(emu_tsm_restore(f.tsm, f.d, nonce, true));
        ASSERT_TRUE(emu_tsm_is_bound(f.tsm, f.d));
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d)); /* the restore's */
        ASSERT_TRUE(emu_tsm_is_bound(f.tsm, f.d));

        ASSERT_OK(emu_device_unbind(f.d)); /* the lock lost behind the TSM's back (as by a reset) */
        ASSERT_OK(emu_tsm_restore(f.tsm, f.d, NULL, true));
        ASSERT_FALSE(emu_tsm_is_bound(f.tsm, f.d));
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d)); /* locks it again */
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_CONFIG_LOCKED);
        ASSERT_TRUE(emu_tsm_is_bound(f.tsm, f.d));
        fixture_free(&f);
}

/* Across a restart of tsmd (daemon/emu-state.c): a device put back into the state saved from
 * another, and its TSM given the nonce and binding saved, go on as the first would have: the
 * guest's START reaches RUN with the TSM's nonce, the memory reads back, and the restore's bind
 * finds the TDI bound, as any bind does until an unbind. */
TEST(state_carried_across_a_restart) {
        uint8_t junk[TDISP_NONCE_SIZE], nonce[TDISP_NONCE_SIZE], msg[256], resp[EMU_RESPONSE_MAX];
        const uint8_t data[4] = { 1, 2, 3, 4 };
        EmuDeviceSaved saved;
        Fixture f, g;
        size_t len;

        fixture_new(&f);
        fixture_new(&g);
        emu_tsm_set_debug_scopes(f.tsm, true);
        emu_tsm_set_debug_scopes(g.tsm, true);
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        ASSERT_OK(emu_debug_build_mem_request(emu_device_get_function_id(f.d), EMU_VENDOR_ID_DEFAULT,
                                              EMU_DEBUG_OP_MEM_WRITE, 16, sizeof(data), data, msg, sizeof(msg), &len));
        ASSERT_OK(emu_tsm_request(f.tsm, f.d, EMU_SCOPE_DEBUG_WRITE, msg, len, resp, sizeof(resp), &len));
        ASSERT_EQ(resp[1], TDISP_MSG_VDM_RSP);

        emu_device_save(f.d, &saved);
        ASSERT_NOT_NULL(saved.mem);
        ASSERT_TRUE(emu_tsm_get_nonce(f.tsm, f.d, nonce));
        ASSERT_OK(emu_device_load(g.d, &saved));
        ASSERT_OK(emu_tsm_restore(g.tsm, g.d, nonce, true));
        fixture_free(&f); /* g's copy is its own */
        ASSERT_EQ(emu_device_get_state(g.d), TDISP_STATE_CONFIG_LOCKED);
        ASSERT_FALSE(emu_device_is_clean(g.d));

        ASSERT_OK(emu_tsm_bind(g.tsm, g.d)); /* the restore's: nothing sent */
        ASSERT_EQ(emu_device_get_state(g.d), TDISP_STATE_CONFIG_LOCKED);
        memset(junk, 0x5a, sizeof(junk));
        ASSERT_EQ(guest_start(&g, junk, NULL), TDISP_MSG_START_INTERFACE_RSP);
        ASSERT_EQ(emu_device_get_state(g.d), TDISP_STATE_RUN);
        ASSERT_OK(emu_tsm_bind(g.tsm, g.d));
        ASSERT_EQ(emu_device_get_state(g.d), TDISP_STATE_RUN);

        ASSERT_OK(emu_debug_build_mem_request(emu_device_get_function_id(g.d), EMU_VENDOR_ID_DEFAULT,
                                              EMU_DEBUG_OP_MEM_READ, 16, sizeof(data), NULL, msg, sizeof(msg), &len));
        ASSERT_OK(emu_tsm_request(g.tsm, g.d, EMU_SCOPE_DEBUG_READ, msg, len, resp, sizeof(resp), &len));
        ASSERT_MEMEQ(resp + len - sizeof(data), data, sizeof(data));
        fixture_free(&g);
}

/* A guest's debug READ or WRITE of register reg, through the TSM in scope. */
static Answer guest_debug(Fixture *f, EmuScope scope, uint8_t op, uint32_t reg, uint64_t value) {
        uint8_t msg[sizeof(EmuDebugMessage)];
        size_t len;
        Answer a = {};

        ASSERT_OK(emu_debug_build_request(emu_device_get_function_id(f->d), EMU_VENDOR_ID_DEFAULT, op, reg, value, msg,
                                          sizeof(msg), &len));
        a.result = emu_tsm_request(f->tsm, f->d, scope, msg, len, a.buf, sizeof(a.buf), &a.len);
        return a;
}

/* Mainline kernels' pci_tsm_guest_req() refuses every scope past STATE_CHANGE with EINVAL before a
 * TSM driver sees it: so does the emulated TSM, unless told to serve the debug scopes, first of
 * its checks (a TDI not bound too), the device never asked. */
TEST(debug_scopes_refused_unless_served) {
        const uint32_t reg = EMU_DEBUG_REG_SCRATCH_FIRST;
        uint8_t msg[sizeof(EmuDebugMessage)];
        EmuDeviceSaved saved;
        Fixture f;
        size_t len;

        fixture_new(&f);
        ASSERT_OK(emu_debug_build_request(emu_device_get_function_id(f.d), EMU_VENDOR_ID_DEFAULT, EMU_DEBUG_OP_READ, reg,
                                          0, msg, sizeof(msg), &len));
        ASSERT_ERRNO(emu_tsm_check_request(f.tsm, f.d, EMU_SCOPE_DEBUG_READ, msg, len), EINVAL); /* not ENXIO */
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d));
        ASSERT_ERRNO(emu_tsm_check_request(f.tsm, f.d, EMU_SCOPE_DEBUG_READ, msg, len), EINVAL);
        ASSERT_ERRNO(guest_debug(&f, EMU_SCOPE_DEBUG_READ, EMU_DEBUG_OP_READ, reg, 0).result, EINVAL);
        ASSERT_ERRNO(guest_debug(&f, EMU_SCOPE_DEBUG_WRITE, EMU_DEBUG_OP_WRITE, reg, 0x5ec2e7).result, EINVAL);
        emu_device_save(f.d, &saved);
        ASSERT_EQ(saved.regs[reg], 0u);
        ASSERT_OK(guest(&f, EMU_SCOPE_INFO, TDISP_MSG_GET_VERSION, NULL, 0).result);

        /* Served: the device's answers, in the scope of each operation only. */
        emu_tsm_set_debug_scopes(f.tsm, true);
        ASSERT_EQ(guest_debug(&f, EMU_SCOPE_DEBUG_WRITE, EMU_DEBUG_OP_WRITE, reg, 0x5ec2e7).buf[1], TDISP_MSG_VDM_RSP);
        ASSERT_EQ(guest_debug(&f, EMU_SCOPE_DEBUG_READ, EMU_DEBUG_OP_READ, reg, 0).buf[1], TDISP_MSG_VDM_RSP);
        ASSERT_ERRNO(guest_debug(&f, EMU_SCOPE_DEBUG_READ, EMU_DEBUG_OP_WRITE, reg, 1).result, EINVAL);
        emu_device_save(f.d, &saved);
        ASSERT_EQ(saved.regs[reg], 0x5ec2e7u);
        ASSERT_OK(emu_tsm_unbind(f.tsm, f.d));
        ASSERT_ERRNO(emu_tsm_check_request(f.tsm, f.d, EMU_SCOPE_DEBUG_READ, msg, len), ENXIO);
        fixture_free(&f);
}

/* A restore is the saved state whole: one without a nonce (a second record for the device)
 * leaves none of an earlier restore's. */
TEST(restore_without_a_nonce_holds_none) {
        uint8_t nonce[TDISP_NONCE_SIZE];
        Fixture f;

        fixture_new(&f);
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d)); /* CONFIG_LOCKED, the TSM holding the LOCK's nonce */
        ASSERT_TRUE(emu_tsm_holds_nonce(f.tsm, f.d));
        memset(nonce, 0x3c, sizeof(nonce));
        ASSERT_OK(emu_tsm_restore(f.tsm, f.d, nonce, true));
        ASSERT_TRUE(emu_tsm_holds_nonce(f.tsm, f.d));
        ASSERT_OK(emu_tsm_restore(f.tsm, f.d, NULL, true));
        ASSERT_FALSE(emu_tsm_holds_nonce(f.tsm, f.d));
        fixture_free(&f);
}

/* What a device cannot be in is refused whole, and changes nothing; a binding or nonce the TDI's
 * state rules out is not held. */
TEST(impossible_state_not_loaded) {
        EmuDeviceSaved s = { .state = TDISP_STATE_RUN, .n_locks = 1 };
        Fixture f;

        fixture_new(&f);
        s.nonce[0] = 1; /* a nonce outside CONFIG_LOCKED */
        ASSERT_ERRNO(emu_device_load(f.d, &s), EINVAL);
        s.nonce[0] = 0;
        s.lock.flags = 0x8000; /* not a supported lock flag */
        ASSERT_ERRNO(emu_device_load(f.d, &s), EINVAL);
        s.lock.flags = 0;
        s.lock.mmio_reporting_offset = UINT64_C(0x8000000000000000); /* moves ranges below 0 */
        ASSERT_ERRNO(emu_device_load(f.d, &s), EINVAL);
        s.lock.mmio_reporting_offset = 0;
        s.regs[EMU_DEBUG_REG_TDI_STATE] = 2; /* a read-only register */
        ASSERT_ERRNO(emu_device_load(f.d, &s), EINVAL);
        s.regs[EMU_DEBUG_REG_TDI_STATE] = 0;
        s.state = (TdispState) 7;
        ASSERT_ERRNO(emu_device_load(f.d, &s), EINVAL);
        s.state = _TDISP_STATE_MAX;
        ASSERT_ERRNO(emu_device_load(f.d, &s), EINVAL);
        s.state = TDISP_STATE_RUN;
        s.n_locks = 0; /* locked, but never by a LOCK */
        ASSERT_ERRNO(emu_device_load(f.d, &s), EINVAL);
        s.n_locks = 1;
        s.state = TDISP_STATE_CONFIG_UNLOCKED;
        s.lock.flags = htole16(TDISP_LOCK_FLAG_NO_FW_UPDATE); /* lock parameters while unlocked */
        ASSERT_ERRNO(emu_device_load(f.d, &s), EINVAL);
        s.lock.flags = 0;
        s.state = TDISP_STATE_CONFIG_LOCKED; /* locked, with no nonce to start it with */
        ASSERT_ERRNO(emu_device_load(f.d, &s), EINVAL);
        ASSERT_TRUE(emu_device_is_clean(f.d));

        ASSERT_OK(emu_tsm_restore(f.tsm, f.d, zero, true)); /* CONFIG_UNLOCKED: neither holds */
        ASSERT_FALSE(emu_tsm_holds_nonce(f.tsm, f.d));
        ASSERT_OK(emu_tsm_bind(f.tsm, f.d)); /* a real bind: it locks */
        ASSERT_EQ(emu_device_get_state(f.d), TDISP_STATE_CONFIG_LOCKED);
        ASSERT_TRUE(emu_tsm_holds_nonce(f.tsm, f.d));
        fixture_free(&f);
}

TEST_MAIN();
