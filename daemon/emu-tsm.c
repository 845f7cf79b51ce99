/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The emulated TSM's START_INTERFACE nonces. Runs in: monitor, tests. */

#include <string.h>

#include "emu-tsm.h"

#define NONCE_OFFSET offsetof(TdispStartInterfaceRequest, start_interface_nonce)
_Static_assert(offsetof(TdispLockInterfaceResponse, start_interface_nonce) == NONCE_OFFSET,
               "LOCK_INTERFACE_RESPONSE and START_INTERFACE_REQUEST carry the nonce at one offset");

/* What the TSM holds for one device: one entry per locked TDI, as many as guests with a device
 * (512 in bench-guest-request), and every guest request looks its device's up twice. */
typedef struct Held {
        EmuDevice *device; /* referenced: the pointer never names another device */
        bool has_nonce;
        uint8_t nonce[TDISP_NONCE_SIZE];
        /* Bound by the host (emu_tsm_bind(), or before a restart of tsmd), with the TDI still
         * locked: what a restore brings back. bound_kept: the binding came back with
         * emu_tsm_restore() and waits for the restore's bind. */
        bool bound;
        bool bound_kept;
        /* The TDI's binding as the kernel keeps it (pdev->tsm->tdi), which guest requests need:
         * from a bind that succeeded (or a restore of one whose lock held) to the unbind, the
         * release or the device's removal; a bind finds it done, as the kernel's
         * pci_tsm_bind() answers 0 for a TDI bound already. The TDI leaving the lock (a reset,
         * ERROR) ends bound, not this; a bind that fails leaves it as it was, as the monitor's
         * and the worker's records of the vDevice stay. */
        bool binding;
} Held;

struct EmuTsm {
        /* Sorted by the device's address, found by a binary search that only compares it: a
         * device asked about may be gone (each entry references its own, so an address held
         * names no other device). */
        Held **held;
        size_t n_held, allocated_held;
        bool debug_scopes; /* serves DEBUG_READ and DEBUG_WRITE, as no mainline kernel does */
};

int emu_tsm_new(EmuTsm **ret) {
        EmuTsm *t;

        assert(ret);

        t = new0(EmuTsm, 1);
        if (!t)
                return -ENOMEM;
        *ret = t;
        return 0;
}

/* Where d's entry is, or would go. */
static size_t held_position(const EmuTsm *t, const EmuDevice *d) {
        size_t lo = 0, hi = t->n_held;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if ((uintptr_t) t->held[mid]->device < (uintptr_t) d)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static void held_free(EmuTsm *t, Held *h) {
        size_t i = held_position(t, h->device);

        assert(i < t->n_held && t->held[i] == h);
        memmove(t->held + i, t->held + i + 1, (t->n_held - i - 1) * sizeof(Held *));
        t->n_held--;
        explicit_bzero(h->nonce, sizeof(h->nonce));
        emu_device_unref(h->device);
        free(h);
}

EmuTsm *emu_tsm_free(EmuTsm *t) {
        if (!t)
                return NULL;
        while (t->n_held > 0)
                held_free(t, t->held[t->n_held - 1]);
        free(t->held);
        return mfree(t);
}

static Held *held_find(const EmuTsm *t, const EmuDevice *d) {
        size_t i = held_position(t, d);

        return i < t->n_held && t->held[i]->device == d ? t->held[i] : NULL;
}

/* d's entry, made (with no nonce yet) if it has none: before the device is asked, so that a
 * nonce it hands out always has a place. */
static int held_get(EmuTsm *t, EmuDevice *d, Held **ret) {
        Held *h = held_find(t, d);

        if (!h) {
                size_t i = held_position(t, d);

                if (!GREEDY_REALLOC(t->held, t->allocated_held, t->n_held + 1))
                        return -ENOMEM;
                h = new0(Held, 1);
                if (!h)
                        return -ENOMEM;
                h->device = emu_device_ref(d);
                memmove(t->held + i + 1, t->held + i, (t->n_held - i) * sizeof(Held *));
                t->held[i] = h;
                t->n_held++;
        }
        *ret = h;
        return 0;
}

/* TDISP: the nonce is good for one START, in CONFIG_LOCKED. Once the TDI has left that state
 * (START done, an unbind, a reset, ERROR) or its device is gone, the TSM has nothing to
 * start it with. */
static void held_sync(EmuTsm *t, EmuDevice *d) {
        Held *h = held_find(t, d);
        TdispState s = emu_device_get_state(d);

        if (!h)
                return;
        if (h->has_nonce && s != TDISP_STATE_CONFIG_LOCKED) {
                explicit_bzero(h->nonce, sizeof(h->nonce));
                h->has_nonce = false;
        }
        /* The host's lock lasts while the TDI is locked: an unbind, a reset or ERROR end it
         * (bound), only the first the binding itself. */
        if (s != TDISP_STATE_CONFIG_LOCKED && s != TDISP_STATE_RUN)
                h->bound = h->bound_kept = false;
        if (emu_device_is_removed(d) || (!h->has_nonce && !h->bound && !h->binding))
                held_free(t, h);
}

static bool message_is(const void *msg, size_t len, uint8_t type) {
        return len > offsetof(TdispHeader, message_type) &&
               ((const uint8_t *) msg)[offsetof(TdispHeader, message_type)] == type;
}

void emu_tsm_set_debug_scopes(EmuTsm *t, bool serve) {
        assert(t);
        t->debug_scopes = serve;
}

/* The kernel's PCI TSM core forbids "requests that are not directly related to TDISP
 * operations" (pci_tsm_guest_req(): scope > PCI_TSM_REQ_STATE_CHANGE is -EINVAL), first of all. */
static bool scope_served(const EmuTsm *t, EmuScope scope) {
        return t->debug_scopes || (scope != EMU_SCOPE_DEBUG_READ && scope != EMU_SCOPE_DEBUG_WRITE);
}

int emu_tsm_check_request(const EmuTsm *t, const EmuDevice *d, EmuScope scope, const void *req, size_t req_len) {
        assert(t);
        assert(d);

        if (!scope_served(t, scope))
                return -EINVAL;
        if (!emu_tsm_is_bound(t, d))
                return -ENXIO;
        /* As the kernel's TSMs answer it (cca_tsm_guest_req(), as pci_tsm_guest_req() for the
         * scopes it forbids): BackendError InvalidScopeOrArgument above, not the EPERM that
         * tsmd's own policy refusal (Denied) is. */
        if (!emu_scope_carries(scope, req, req_len))
                return -EINVAL;
        return 0;
}

int emu_tsm_request(EmuTsm *t, EmuDevice *d, EmuScope scope, const void *req, size_t req_len, void *resp,
                    size_t resp_size, size_t *ret_resp_len) {
        uint8_t start[sizeof(TdispStartInterfaceRequest)];
        const void *msg = req;
        Held *h = NULL;
        int r;

        assert(t);
        assert(d);
        assert(ret_resp_len);

        if (!scope_served(t, scope))
                return -EINVAL;

        /* Only what the device would take as a START (scope STATE_CHANGE, of its exact size, the
         * only one it looks at the nonce of); in other scopes the device refuses it unseen, as it
         * refuses a guest's LOCK or STOP in any: those are the TSM's own. */
        if (scope == EMU_SCOPE_STATE_CHANGE && req_len == sizeof(start) &&
            message_is(req, req_len, TDISP_MSG_START_INTERFACE_REQ)) {
                /* SECURITY: the TSM completes the guest's START with the nonce it holds, in a
                 * copy that is zeroed below: the guest's bytes never count, and the nonce never
                 * lands in a buffer the caller keeps. */
                h = held_find(t, d);
                memcpy(start, req, NONCE_OFFSET);
                if (h && h->has_nonce)
                        memcpy(start + NONCE_OFFSET, h->nonce, TDISP_NONCE_SIZE);
                else
                        memset(start + NONCE_OFFSET, 0, TDISP_NONCE_SIZE);
                msg = start;
        }

        r = emu_device_request(d, scope, msg, req_len, resp, resp_size, ret_resp_len);
        explicit_bzero(start, sizeof(start));
        /* A message its scope does not carry, as emu_tsm_check_request() refuses it. */
        if (r == -EPERM)
                r = -EINVAL;

        /* SECURITY: never a nonce to the guest. The device answers no guest's LOCK; should it
         * ever, the TSM's secret is zeroed all the same. */
        if (r >= 0 && *ret_resp_len == sizeof(TdispLockInterfaceResponse) &&
            message_is(resp, *ret_resp_len, TDISP_MSG_LOCK_INTERFACE_RSP))
                explicit_bzero((uint8_t *) resp + NONCE_OFFSET, TDISP_NONCE_SIZE);
        held_sync(t, d);
        return r;
}

/* A device that never answers a bind, unbind or release: the emulated TSM gives up on it at
 * once, as a kernel TSM gives up after its own SPDM or DOE timeout: ETIME, BackendError
 * Timeout, not ETIMEDOUT, which above means tsmd gave up on a call that may still complete. */
static int tsm_gave_up(int r) {
        return r == -ETIMEDOUT ? -ETIME : r;
}

int emu_tsm_bind(EmuTsm *t, EmuDevice *d) {
        Held *h;
        int r;

        assert(t);
        assert(d);

        r = held_get(t, d, &h);
        if (r < 0)
                return r;
        /* Bound already (before tsmd restarted too): nothing to send, the TDI is where it is
         * (RUN stays RUN; ERROR or unlocked by a reset stays so until the host unbinds), as the
         * kernel's pci_tsm_bind() answers 0 for a TDI bound already. */
        if (h->bound || h->binding) {
                h->bound_kept = false;
                h->binding = true;
                held_sync(t, d);
                return 0;
        }
        /* Written only on success: a TDI locked already keeps the nonce held for it. */
        r = emu_device_bind(d, h->nonce);
        if (r >= 0)
                h->has_nonce = h->bound = h->binding = true;
        held_sync(t, d);
        return tsm_gave_up(r);
}

int emu_tsm_unbind(EmuTsm *t, EmuDevice *d) {
        Held *h;
        int r;

        assert(t);
        assert(d);

        /* The binding ends whatever the device answers, as the kernel's pci_tsm_unbind() (void)
         * ends it: the next bind asks the device. */
        h = held_find(t, d);
        if (h)
                h->bound = h->bound_kept = h->binding = false;
        r = emu_device_unbind(d);
        held_sync(t, d);
        return tsm_gave_up(r);
}

int emu_tsm_release(EmuTsm *t, EmuDevice *d) {
        int r;

        assert(t);
        assert(d);

        r = emu_device_release(d);
        emu_tsm_forget(t, d);
        return tsm_gave_up(r);
}

void emu_tsm_forget(EmuTsm *t, EmuDevice *d) {
        Held *h;

        if (!t)
                return;
        h = held_find(t, d);
        if (h)
                held_free(t, h);
}

void emu_tsm_forget_removed(EmuTsm *t) {
        if (!t)
                return;
        for (size_t i = t->n_held; i > 0; i--)
                if (emu_device_is_removed(t->held[i - 1]->device))
                        held_free(t, t->held[i - 1]);
}

bool emu_tsm_holds_nonce(const EmuTsm *t, const EmuDevice *d) {
        const Held *h = t ? held_find(t, d) : NULL;

        return h && h->has_nonce;
}

bool emu_tsm_get_nonce(const EmuTsm *t, const EmuDevice *d, uint8_t ret[static TDISP_NONCE_SIZE]) {
        const Held *h = t ? held_find(t, d) : NULL;

        if (!h || !h->has_nonce)
                return false;
        memcpy(ret, h->nonce, TDISP_NONCE_SIZE);
        return true;
}

int emu_tsm_restore(EmuTsm *t, EmuDevice *d, const uint8_t *nonce, bool bound) {
        Held *h;
        int r;

        assert(t);
        assert(d);

        r = held_get(t, d, &h);
        if (r < 0)
                return r;
        /* The saved state whole: a record without a nonce leaves none of an earlier one. */
        if (nonce)
                memcpy(h->nonce, nonce, TDISP_NONCE_SIZE);
        else
                explicit_bzero(h->nonce, TDISP_NONCE_SIZE);
        h->has_nonce = nonce;
        h->bound = h->bound_kept = bound;
        h->binding = false;
        /* What the TDI's state does not allow is dropped at once, as after any exchange. A
         * binding whose lock did not last comes back unbound: the restore's bind locks the TDI
         * again, and if it fails, the worker has the vDevice unbound too. */
        held_sync(t, d);
        h = held_find(t, d);
        if (h)
                h->binding = h->bound;
        return 0;
}

bool emu_tsm_is_bound(const EmuTsm *t, const EmuDevice *d) {
        const Held *h = t ? held_find(t, d) : NULL;

        return h && h->binding;
}

bool emu_tsm_holds_binding(const EmuTsm *t, const EmuDevice *d) {
        const Held *h = t ? held_find(t, d) : NULL;

        return h && h->bound_kept;
}
