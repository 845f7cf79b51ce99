/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One emulated TDISP device interface (TDI): the TDISP 1.0 state machine (CONFIG_UNLOCKED,
 * CONFIG_LOCKED, RUN, ERROR), a request processor that answers with real TDISP responses or
 * TDISP ERROR messages, the scope check a TSM backend applies to guest requests, a small
 * debug protocol, and fault injection for tests. Deterministic: the MMIO layout, interface
 * report and nonces derive from the device's configuration (and for nonces a per-device counter
 * and the caller's salt, emu_device_set_nonce_salt()) through a seeded PRNG, so the same
 * configuration, salt and call sequence give the same bytes.
 * Pure library: no I/O, no threads, no clock. Runs in: monitor (emulated backend), tests.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "emu-config.h"
#include "macro.h"
#include "tdisp.h"

typedef struct EmuDevice EmuDevice;

/* The kernel's PCI TSM request scopes, with the values of IOMMU_VDEVICE_TSM_REQ_SCOPE_PCI_*
 * (iommufd TSM series v5): a guest's request is processed only in the scope its message belongs
 * to. LOCK_INTERFACE and STOP_INTERFACE belong to none: the TSM sends them at the host's bind
 * and unbind (emu_device_bind(), emu_device_host_request()), nor do the requests the device does
 * not implement (BIND_P2P_STREAM, UNBIND_P2P_STREAM, SET_MMIO_ATTRIBUTE, SET_TDISP_CONFIG),
 * response codes, unknown codes, and messages too short to have a code. */
typedef enum EmuScope {
        EMU_SCOPE_INFO = 0,         /* GET_TDISP_VERSION, GET_TDISP_CAPABILITIES,
                                     * GET_DEVICE_INTERFACE_REPORT, GET_DEVICE_INTERFACE_STATE */
        EMU_SCOPE_STATE_CHANGE = 1, /* START_INTERFACE (CONFIG_LOCKED->RUN) */
        EMU_SCOPE_DEBUG_READ = 2,   /* debug VDM, read */
        EMU_SCOPE_DEBUG_WRITE = 3,  /* debug VDM, write */
        _EMU_SCOPE_MAX,
        _EMU_SCOPE_INVALID = -EINVAL,
} EmuScope;

const char *emu_scope_to_string(EmuScope s);
EmuScope emu_scope_from_string(const char *s);

/* Whether scope carries the guest message req (any bytes): the check emu_device_request() makes
 * before the device sees it (-EPERM), which a TSM makes before any exchange with the device. */
bool emu_scope_carries(EmuScope scope, const void *req, size_t req_len);

/* The emulator's debug protocol, carried in TDISP VDM_REQUEST/VDM_RESPONSE with registry id
 * PCI-SIG and the device's own vendor id (2 bytes). The vendor data is one EmuDebugPayload:
 * READ returns a register, WRITE sets one and returns the new value. Registers 0-3 are read
 * only; 4-7 are configuration registers: writing one while the TDI is CONFIG_LOCKED or RUN
 * is a change to locked configuration and moves the TDI to ERROR, as TDISP requires; 8-15
 * are scratch; both keep what was written until a reset (fault GONE) or a release restores their
 * power-on values. Nothing secret (the nonce) is readable. A READ needs scope DEBUG_READ, a
 * WRITE scope DEBUG_WRITE. Errors: bad op, register, reserved bytes or length, or writing a
 * read-only register: ERROR(INVALID_REQUEST); another registry or vendor:
 * ERROR(UNSUPPORTED_REQUEST).
 *
 * MEM_READ and MEM_WRITE move bulk data: they access a window of EMU_DEBUG_MEM_SIZE bytes of
 * the device's own memory (a debug aperture onto its RAM), with reg the length in bytes and
 * value the offset into the window. A MEM_READ response is the echoed message followed by the
 * length bytes read; a MEM_WRITE request is followed by the length bytes to store, and its
 * response is the echoed message. A transfer is 1..EMU_DEBUG_MEM_XFER_MAX bytes inside the
 * window (so no debug VDM exceeds EMU_DEBUG_MSG_MAX), otherwise ERROR(INVALID_REQUEST). The
 * memory reads as zeros until written. It is scrubbed (zeros again) by a reset (fault GONE) and
 * when the TDI goes back to CONFIG_UNLOCKED from CONFIG_LOCKED, RUN or ERROR, so that data the
 * TDI held while assigned to a guest is not readable by the host afterwards. Memory is data,
 * not configuration: writing it never moves the TDI to ERROR. */
#define EMU_DEBUG_OP_READ 0x01u
#define EMU_DEBUG_OP_WRITE 0x02u
#define EMU_DEBUG_OP_MEM_READ 0x03u
#define EMU_DEBUG_OP_MEM_WRITE 0x04u

enum {
        EMU_DEBUG_REG_ID = 0,         /* RO: vendor id | device id << 16 | function id << 32 */
        EMU_DEBUG_REG_TDI_STATE = 1,  /* RO: TdispState */
        EMU_DEBUG_REG_LOCK_COUNT = 2, /* RO: successful LOCK_INTERFACE requests so far */
        EMU_DEBUG_REG_RESERVED = 3,   /* RO: 0 */
        EMU_DEBUG_REG_CONFIG_FIRST = 4,
        EMU_DEBUG_REG_CONFIG_LAST = 7,
        EMU_DEBUG_REG_SCRATCH_FIRST = 8,
        EMU_DEBUG_N_REGS = 16,
};

typedef struct _packed_ EmuDebugPayload {
        uint8_t op;
        uint8_t reserved[3];
        uint32_t reg;   /* little-endian; MEM_*: the length in bytes */
        uint64_t value; /* little-endian; 0 in a READ request; MEM_*: the offset */
} EmuDebugPayload;

typedef struct _packed_ EmuDebugMessage {
        TdispVdmHeader vdm;       /* registry_id PCI-SIG, vendor_id_len 2 */
        uint16_t vendor_id;       /* little-endian */
        EmuDebugPayload payload;
} EmuDebugMessage;

_Static_assert(sizeof(EmuDebugPayload) == 16, "debug payload");
_Static_assert(sizeof(EmuDebugMessage) == 36, "debug VDM");
_Static_assert(offsetof(EmuDebugMessage, payload) == 20, "debug payload offset");

/* The largest debug VDM, request or response: 64 KiB, the most a guest request or response may
 * carry through any TSM backend of tsmd (TSM_PRIV_PAYLOAD_MAX). */
#define EMU_DEBUG_MSG_MAX (64u * 1024u)
#define EMU_DEBUG_MEM_XFER_MAX (EMU_DEBUG_MSG_MAX - sizeof(EmuDebugMessage))
#define EMU_DEBUG_MEM_SIZE (64u * 1024u)

#define EMU_REPORT_PORTION_MAX 1024u
/* The largest response the device produces: a MEM_READ of EMU_DEBUG_MEM_XFER_MAX bytes. */
#define EMU_RESPONSE_MAX EMU_DEBUG_MSG_MAX
_Static_assert(sizeof(TdispDeviceInterfaceReportResponse) + EMU_REPORT_PORTION_MAX <= EMU_RESPONSE_MAX,
               "a full report portion fits");

/* What the emulated device advertises in TDISP_CAPABILITIES. */
#define EMU_LOCK_FLAGS_SUPPORTED                                                                   \
        (TDISP_LOCK_FLAG_NO_FW_UPDATE | TDISP_LOCK_FLAG_SYSTEM_CACHE_LINE_SIZE |                   \
         TDISP_LOCK_FLAG_LOCK_MSIX | TDISP_LOCK_FLAG_ALL_REQUEST_REDIRECT)
#define EMU_DEV_ADDR_WIDTH 52u

/* Creates a device in CONFIG_UNLOCKED with one reference, with the config's fault (if any)
 * armed until cleared; a TDISP_ERROR fault answers UNSPECIFIED. -ERANGE if the domain does
 * not fit TDISP's FUNCTION_ID, -EINVAL for a bad config, -ENOMEM. */
int emu_device_new(const EmuDeviceConfig *c, EmuDevice **ret);
EmuDevice *emu_device_ref(EmuDevice *d);
EmuDevice *emu_device_unref(EmuDevice *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(EmuDevice *, emu_device_unref);

/* Mixes salt into every nonce d makes from now on (0 at creation: none). The lock counter keeps
 * one instance's nonces apart; distinct salts keep apart those of two instances of the same
 * device (same configuration), e.g. before and after a restart of the software that made them,
 * whose counters both start at 0. Same salt, configuration and calls: same nonces. */
void emu_device_set_nonce_salt(EmuDevice *d, uint64_t salt);

/* Marks the device as removed from its platform: every later request, bind or unbind fails
 * with -ENODEV. Holders of a reference keep a valid object. */
void emu_device_mark_removed(EmuDevice *d);
bool emu_device_is_removed(const EmuDevice *d);

const char *emu_device_get_address(const EmuDevice *d);
const EmuDeviceConfig *emu_device_get_config(const EmuDevice *d);
uint32_t emu_device_get_function_id(const EmuDevice *d);
TdispState emu_device_get_state(const EmuDevice *d);

/* Processes one TDISP request (req/req_len, may be any bytes) sent in the given scope, and
 * writes a TDISP response or ERROR message to resp (must not overlap req). Returns 0 and sets
 * *ret_resp_len when a TDISP message was produced; -EPERM if the scope does not permit the
 * request; -EBUSY, -ETIMEDOUT, -ENODEV for injected faults or a removed device; -ENOBUFS if
 * the response does not fit in resp_size; -ENOMEM if the device memory could not be allocated
 * for a first MEM_WRITE; -EINVAL only for invalid arguments. Whenever it
 * fails, the device state is unchanged (except that GONE resets the TDI). */
int emu_device_request(
                EmuDevice *d,
                EmuScope scope,
                const void *req,
                size_t req_len,
                void *resp,
                size_t resp_size,
                size_t *ret_resp_len);

/* The TSM's own exchange with the device, as a TSM sends LOCK_INTERFACE (with the parameters it
 * chose) and STOP_INTERFACE on the host's behalf: any message, no scope check, otherwise as
 * emu_device_request() (never -EPERM). Tests and fuzzers drive the state machine through it. */
int emu_device_host_request(
                EmuDevice *d,
                const void *req,
                size_t req_len,
                void *resp,
                size_t resp_size,
                size_t *ret_resp_len);

/* The exchange the device's DOE mailbox works on, for the caller that queues exchanges on it
 * (tsmd's router: one at a time, as a mailbox takes them); NULL while idle. The device keeps no
 * queue and never looks at it. */
void *emu_device_get_exchange(const EmuDevice *d);
void emu_device_set_exchange(EmuDevice *d, void *exchange);

/* Host side, what the kernel's TSM bind/unbind does: bind sends LOCK_INTERFACE_REQUEST (no
 * firmware update, stream 0, no reporting offset) through the same state machine and
 * returns the start-interface nonce in ret_nonce (TDISP_NONCE_SIZE bytes, may be NULL);
 * -EALREADY unless the TDI was CONFIG_UNLOCKED. Unbind sends STOP_INTERFACE_REQUEST, which
 * returns the TDI to CONFIG_UNLOCKED from any state. Both fail like emu_device_request() on
 * faults, -EBUSY on an injected TDISP BUSY error and -EIO on any other TDISP error. */
int emu_device_bind(EmuDevice *d, uint8_t *ret_nonce);
int emu_device_unbind(EmuDevice *d);
/* The device goes to another guest: unbind, the debug memory scrubbed and the configuration and
 * scratch registers back to their power-on values, even if the TDI was never locked (what was
 * written while CONFIG_UNLOCKED survives an unlock, not a change of owner). */
int emu_device_release(EmuDevice *d);
/* Whether a release would change nothing: the TDI unlocked, no memory written, every register
 * at its power-on value. */
bool emu_device_is_clean(const EmuDevice *d);

/* What a device holds beyond its configuration: its TDI and its memory, as a real device keeps
 * them while the software that drives it restarts (tsmd saves them at a stop, emu-state.h). */
typedef struct EmuDeviceSaved {
        TdispState state;
        uint64_t n_locks;                /* the lock counter goes on after the restart */
        uint8_t nonce[TDISP_NONCE_SIZE]; /* CONFIG_LOCKED only; zeros otherwise */
        TdispLockInterfaceParams lock;   /* host byte order; zeros while CONFIG_UNLOCKED */
        uint64_t regs[EMU_DEBUG_N_REGS]; /* the read-only ones (0-3) zero */
        const uint8_t *mem;              /* EMU_DEBUG_MEM_SIZE bytes; NULL: all zeros */
} EmuDeviceSaved;

/* Fills ret with d's state; ret->mem is borrowed from d, valid until d's next change. */
void emu_device_save(const EmuDevice *d, EmuDeviceSaved *ret);
/* Puts d into the state s describes (a copy of s->mem is taken). -EINVAL, changing nothing,
 * for a state the device could not be in (a nonce outside CONFIG_LOCKED, lock parameters it
 * would refuse, ...); -ENOMEM. Faults are the configuration's, not part of it. */
int emu_device_load(EmuDevice *d, const EmuDeviceSaved *s);

/* Injectable faults (EmuFault, in emu-config.h so that a config can name one). BUSY, TIMEOUT
 * and GONE fail requests with -EBUSY, -ETIMEDOUT and -ENODEV before the device sees them;
 * GONE additionally resets the TDI (a device that dropped off the bus and comes back has lost
 * its state). TIMEOUT stands for a device that never answers: this library has no clock, so
 * the caller learns it at once, and a caller with a clock (tsmd's router) lets the answer
 * never come. TDISP_ERROR makes the device answer with a TDISP ERROR message carrying a
 * chosen code.
 *
 * Arms a fault for the next count requests, binds or unbinds (0: until cleared), replacing
 * any armed fault. EMU_FAULT_TDISP_ERROR answers with UNSPECIFIED; use
 * emu_device_inject_tdisp_error() to choose the code. */
int emu_device_inject_fault(EmuDevice *d, EmuFault fault, unsigned count);
int emu_device_inject_tdisp_error(EmuDevice *d, uint32_t error_code, unsigned count);
void emu_device_clear_fault(EmuDevice *d);
/* The armed fault, or _EMU_FAULT_INVALID. */
EmuFault emu_device_get_fault(const EmuDevice *d);

/* A security-relevant event outside the protocol (the host changed locked configuration, an
 * IDE stream failed): a CONFIG_LOCKED or RUN TDI moves to ERROR and forgets its nonce.
 * Returns 1 if the state changed, 0 if the TDI was CONFIG_UNLOCKED or already in ERROR. */
int emu_device_trigger_tdi_error(EmuDevice *d);

/* Builds a debug VDM_REQUEST (see above): READ or WRITE of a register. */
int emu_debug_build_request(
                uint32_t function_id,
                uint16_t vendor_id,
                uint8_t op,
                uint32_t reg,
                uint64_t value,
                void *buf,
                size_t size,
                size_t *ret_len);

/* Builds a MEM_READ (data NULL) or MEM_WRITE (the length bytes of data follow the message)
 * debug VDM_REQUEST. -EINVAL for another op or missing data, -ENOBUFS if it does not fit in
 * size. Offset and length are not checked: the device judges them. */
int emu_debug_build_mem_request(
                uint32_t function_id,
                uint16_t vendor_id,
                uint8_t op,
                uint64_t offset,
                uint32_t length,
                const void *data,
                void *buf,
                size_t size,
                size_t *ret_len);
