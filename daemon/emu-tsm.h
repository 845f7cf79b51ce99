/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The emulated TSM as TDISP requester: what a real TSM keeps of the TDIs it drives and the
 * emulated devices (emu/) must not. With a real TSM the TSM locks the TDI (at the host's bind)
 * and holds the START_INTERFACE nonce the device returned; when the guest accepts the device,
 * the TSM sends START_INTERFACE_REQUEST with that nonce, and the guest never sees it. Every
 * exchange of tsmd's router with an emulated device goes through here so that the emulated
 * platform does the same: per device, the nonce of the bind's LOCK, put into the guest's START,
 * dropped once used or once the TDI is no longer CONFIG_LOCKED. A guest cannot LOCK or STOP the
 * TDI itself: the device refuses those in every scope (emu-device.h), as a kernel TSM takes only
 * the transition to RUN from a guest and leaves locking and unlocking to the host. Nor does it
 * take the debug scopes unless told to, as mainline kernels refuse them.
 *
 * SECURITY: the nonces are the TSM's secrets: never logged, never in a guest's response (a
 * LOCK_INTERFACE_RESPONSE would reach the guest with its nonce zeroed) nor in any buffer that
 * leaves here but the monitor's own snapshot across a restart of tsmd (emu-state.h, which zeroes
 * its copies), zeroed (explicit_bzero) when dropped. Pure: no I/O, no clock.
 * Runs in: monitor (the router, tsm-platform.c), tests.
 */
#pragma once

#include <stddef.h>

#include "emu-device.h"

typedef struct EmuTsm EmuTsm;

int emu_tsm_new(EmuTsm **ret);
EmuTsm *emu_tsm_free(EmuTsm *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(EmuTsm *, emu_tsm_free);

/* Whether the TSM serves guest requests in the debug scopes (DEBUG_READ, DEBUG_WRITE): not
 * unless set, as mainline kernels' pci_tsm_guest_req() refuses every scope past STATE_CHANGE
 * (-EINVAL) before a TSM driver sees it ([Platform] EmulatedDebugScopes=). */
void emu_tsm_set_debug_scopes(EmuTsm *t, bool serve);

/* What the TSM refuses a guest's request with before any exchange with the device, in the
 * kernel's order: a debug scope it does not serve (-EINVAL, pci_tsm_guest_req()), a TDI the host
 * has not bound (-ENXIO, emu_tsm_is_bound(); likewise), a message its scope does not carry
 * (-EINVAL, the TSM driver's guest_req, as cca_tsm_guest_req()). 0: the device gets it. */
int emu_tsm_check_request(const EmuTsm *t, const EmuDevice *d, EmuScope scope, const void *req, size_t req_len);

/* A guest's request, as emu_device_request() takes it, refused as emu_tsm_check_request() does
 * but for the binding (the caller's to check, with the device's other exchanges in line). A
 * START_INTERFACE_REQUEST of the right size in scope STATE_CHANGE goes to the device with the
 * nonce held for it in place of the guest's bytes (zeros if none is held, which the device
 * refuses like any wrong nonce: a START needs the bind's LOCK before it). */
int emu_tsm_request(EmuTsm *t, EmuDevice *d, EmuScope scope, const void *req, size_t req_len, void *resp,
                    size_t resp_size, size_t *ret_resp_len);
/* The host's bind (LOCK_INTERFACE_REQUEST), unbind (STOP) and release, as emu_device_*() do
 * them; the bind's nonce is kept. An unbind cannot fail, as the kernel's pci_tsm_unbind() is
 * void: the binding ends whatever the device answers, and what emu_tsm_unbind() returns is the
 * device's answer to the STOP, for the caller to log, not to fail the unbind with. A bind of a TDI bound already (emu_tsm_is_bound(), or a
 * binding a restore kept) is 0 without asking the device, whatever the TDI's state, as the
 * kernel's pci_tsm_bind() is; an unbind ends the binding whatever the device answers. A release
 * forgets the device's nonce whatever the outcome: the device goes to another guest, which
 * must be bound anew. */
int emu_tsm_bind(EmuTsm *t, EmuDevice *d);
int emu_tsm_unbind(EmuTsm *t, EmuDevice *d);
int emu_tsm_release(EmuTsm *t, EmuDevice *d);

/* Forgets d's nonce (the device is no longer what serves its address). */
void emu_tsm_forget(EmuTsm *t, EmuDevice *d);
/* Forgets the nonces of devices removed from their platform. */
void emu_tsm_forget_removed(EmuTsm *t);
/* Whether a nonce is held for d (never what it is). */
bool emu_tsm_holds_nonce(const EmuTsm *t, const EmuDevice *d);

/* Across a restart of tsmd (emu-state.h), in the monitor only. SECURITY: the nonce is copied
 * into ret, which the caller zeroes once it has stored it; false if none is held. */
bool emu_tsm_get_nonce(const EmuTsm *t, const EmuDevice *d, uint8_t ret[static TDISP_NONCE_SIZE]);
/* Holds for d what was held before the restart: nonce (NULL: none), and whether the host had
 * bound d, which emu_tsm_bind() then finds done without asking the device while the TDI is
 * still CONFIG_LOCKED or RUN. What d's TDI state rules out is dropped. -ENOMEM. */
int emu_tsm_restore(EmuTsm *t, EmuDevice *d, const uint8_t *nonce, bool bound);
/* Whether the host's binding of d's TDI holds, as the kernel's pci_tsm_guest_req() needs it:
 * from a bind that succeeded (or a restore of a binding whose TDI is still locked) to the
 * unbind, release or forgetting of d, whatever the TDI's state meanwhile (a reset or ERROR end
 * its lock, not its binding). A failed bind leaves it as it was. */
bool emu_tsm_is_bound(const EmuTsm *t, const EmuDevice *d);
/* Whether a binding emu_tsm_restore() kept for d waits for its bind still. */
bool emu_tsm_holds_binding(const EmuTsm *t, const EmuDevice *d);
