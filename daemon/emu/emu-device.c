/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The emulated TDI: TDISP 1.0 request processing and state machine. Behaviour follows the
 * PCIe TDISP ECN as reflected in DMTF libspdm's pci_tdisp.h, the DMTF spdm-emu sample
 * responder and the assertions of Intel's TEE-IO device validator (TDISP test cases 1-7).
 * Runs in: monitor (emulated backend), tests.
 *
 * Every request goes through the same steps: removed? scope permitted? fault armed? then
 * header checks (length, version, message type, reserved bytes, body length, interface id)
 * and the handler, which validates its fields and the TDI state, reserves room for its
 * response (-ENOBUFS before anything changed) and only then commits the transition.
 */

#include <endian.h>

#include "emu-device.h"
#include "unaligned.h"

/* DEVICE_INTERFACE_REPORT device-specific info: "tsmd-emu", vendor id, device id,
 * function id, then 16 bytes that differ per device. */
#define EMU_DEVICE_INFO_LEN 32u
#define EMU_REPORT_MAX                                                                             \
        (sizeof(TdispInterfaceReport) + EMU_MMIO_RANGES_MAX * sizeof(TdispMmioRange) +              \
         sizeof(uint32_t) + EMU_DEVICE_INFO_LEN)
_Static_assert(EMU_REPORT_MAX <= UINT16_MAX, "report offsets are 16 bit");

/* Independent PRNG streams per purpose, so adding a register does not move the MMIO map. */
#define PRNG_TAG_LAYOUT UINT64_C(0x6c61796f75740000)
#define PRNG_TAG_NONCE UINT64_C(0x6e6f6e6365000000)
#define PRNG_TAG_INFO UINT64_C(0x696e666f00000000)
#define PRNG_TAG_REGS UINT64_C(0x7265677300000000)

typedef struct EmuMmioRange {
        uint64_t base; /* 4 KiB aligned */
        uint32_t pages;
        uint16_t attributes; /* MSIX_TABLE or MSIX_PBA; IS_NON_TEE_MEM is added when reporting */
        uint16_t bar;        /* RANGE_ID: the BAR (its BAR Equivalent Indicator) the range lies in */
} EmuMmioRange;

struct EmuDevice {
        unsigned n_ref;
        EmuDeviceConfig config;
        char address[EMU_PCI_ADDRESS_STRLEN + 1];
        uint32_t function_id;
        uint64_t seed;
        bool removed;

        /* The device's MMIO layout: fixed at creation, like its BARs. */
        EmuMmioRange ranges[EMU_MMIO_RANGES_MAX];
        unsigned msix_table_size; /* vectors; 0: no MSI-X capability */

        TdispState state;
        /* Successful locks so far. Survives resets so that this instance's nonces never repeat. */
        uint64_t n_locks;
        /* Mixed into every nonce, so that another instance of this device (after a restart or
         * a reload) does not repeat this one's: see emu_device_set_nonce_salt(). */
        uint64_t nonce_salt;
        /* The START_INTERFACE nonce: meaningful only in CONFIG_LOCKED, zeroed otherwise. */
        uint8_t nonce[TDISP_NONCE_SIZE];
        /* LOCK_INTERFACE parameters (host byte order), kept until the TDI is unlocked. */
        TdispLockInterfaceParams lock;
        /* Debug registers; the read-only ones are computed on read. */
        uint64_t regs[EMU_DEBUG_N_REGS];
        /* The debug memory window, EMU_DEBUG_MEM_SIZE bytes; NULL while it is all zeros (never
         * written since the last scrub), so idle devices cost no memory. */
        uint8_t *mem;

        void *exchange; /* the caller's, see emu_device_set_exchange() */
        EmuFault fault; /* _EMU_FAULT_INVALID: none armed */
        unsigned fault_left; /* 0: until cleared */
        uint32_t fault_error_code;
};

typedef struct Request {
        TdispHeader header; /* host byte order */
        const uint8_t *body;
        size_t body_len;
} Request;

typedef struct Reply {
        uint8_t *buf;
        size_t size;
        size_t len;
} Reply;

typedef struct Handler {
        uint8_t type;
        /* The guest scope that carries it, _EMU_SCOPE_INVALID for none (the TSM's own); for the
         * debug VDM the op decides between the two debug scopes. */
        EmuScope scope;
        int (*process)(EmuDevice *d, const Request *req, Reply *reply);
} Handler;

static const char *const emu_scope_table[_EMU_SCOPE_MAX] = {
        [EMU_SCOPE_INFO] = "info",
        [EMU_SCOPE_STATE_CHANGE] = "state-change",
        [EMU_SCOPE_DEBUG_READ] = "debug-read",
        [EMU_SCOPE_DEBUG_WRITE] = "debug-write",
};
DEFINE_STRING_TABLE_LOOKUP(emu_scope, EmuScope);

/* splitmix64 (Steele, Lea, Flood 2014): tiny, well mixed, and the same on every platform. */
static uint64_t mix64(uint64_t z) {
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static uint64_t splitmix64(uint64_t *state) {
        *state += UINT64_C(0x9e3779b97f4a7c15);
        return mix64(*state);
}

static uint64_t device_seed(const EmuDeviceConfig *c) {
        uint64_t s = UINT64_C(0x74736d642d656d75); /* "tsmd-emu" */

        /* Everything configurable goes in: same config, same bytes; another device, others. */
        s = mix64(s ^ ((uint64_t) c->address.domain << 16 | (uint64_t) c->address.bus << 8 |
                       emu_pci_address_devfn(&c->address)));
        s = mix64(s ^ ((uint64_t) c->vendor_id << 16 | c->device_id));
        return mix64(s ^ c->n_mmio_ranges);
}

static void device_init_layout(EmuDevice *d) {
        uint64_t st = d->seed ^ PRNG_TAG_LAYOUT, addr;
        unsigned n = d->config.n_mmio_ranges;
        /* With three or more ranges the last two are the MSI-X table and PBA pages. */
        bool msix = n >= 3;
        unsigned n_plain = msix ? n - 2 : n;

        /* 1 MiB aligned, above the 32-bit MMIO window and far below 2^EMU_DEV_ADDR_WIDTH. */
        addr = (UINT64_C(1) << 32) + (splitmix64(&st) % (UINT64_C(1) << 20)) * (UINT64_C(1) << 20);

        for (unsigned i = 0; i < n; i++) {
                EmuMmioRange *r = d->ranges + i;

                /* RANGE_ID is the BAR a range lies in, as guests read it (Linux maps it to the
                 * BAR's resource and wants the range inside it): three 64-bit BARs, each one
                 * window in address order, so BEIs 0, 2 and 4. The plain ranges fill BAR 0 and
                 * BAR 2, the MSI-X table and PBA share BAR 4. */
                if (msix && i == n - 2)
                        *r = (EmuMmioRange) { .pages = 1, .attributes = TDISP_MMIO_RANGE_MSIX_TABLE, .bar = 4 };
                else if (msix && i == n - 1)
                        *r = (EmuMmioRange) { .pages = 1, .attributes = TDISP_MMIO_RANGE_MSIX_PBA, .bar = 4 };
                else
                        /* Plain TEE memory. Never IS_MEM_ATTR_UPDATABLE: that invites
                         * SET_MMIO_ATTRIBUTE_REQUEST, which this device does not implement. */
                        *r = (EmuMmioRange) {
                                .pages = UINT32_C(1) << (splitmix64(&st) % 6),
                                .bar = i < (n_plain + 1) / 2 ? 0 : 2,
                        };

                r->base = addr;
                /* Ascending and never overlapping; a random gap keeps devices apart. */
                addr += ((uint64_t) r->pages + splitmix64(&st) % 16) * TDISP_PAGE_SIZE;
        }

        /* 1..64 vectors: the table (16 bytes per vector) fits its single page. */
        d->msix_table_size = msix ? 1 + (unsigned) (splitmix64(&st) % 64) : 0;
}

/* CONFIG_LOCKED and RUN: the TDI's configuration is locked and reported. */
static bool state_is_locked(TdispState s) {
        return s == TDISP_STATE_CONFIG_LOCKED || s == TDISP_STATE_RUN;
}

/* The debug memory back to zeros. Freed rather than cleared, so its pages go back too. */
static void device_scrub_memory(EmuDevice *d) {
        if (!d->mem)
                return;
        explicit_bzero(d->mem, EMU_DEBUG_MEM_SIZE);
        d->mem = mfree(d->mem);
}

/* Back to CONFIG_UNLOCKED, as after STOP_INTERFACE: the nonce and the lock parameters go, and
 * what the TDI held in memory while it was locked (or in ERROR) with them. */
static void device_unlock(EmuDevice *d) {
        if (d->state != TDISP_STATE_CONFIG_UNLOCKED)
                device_scrub_memory(d);
        d->state = TDISP_STATE_CONFIG_UNLOCKED;
        explicit_bzero(d->nonce, sizeof(d->nonce));
        d->lock = (TdispLockInterfaceParams) {};
}

/* The registers at power-on: configuration registers from the seed, scratch zero (the read-only
 * ones are computed on read). */
static void device_power_on_regs(const EmuDevice *d, uint64_t regs[static EMU_DEBUG_N_REGS]) {
        uint64_t st = d->seed ^ PRNG_TAG_REGS;

        memset(regs, 0, EMU_DEBUG_N_REGS * sizeof(uint64_t));
        for (unsigned i = EMU_DEBUG_REG_CONFIG_FIRST; i <= EMU_DEBUG_REG_CONFIG_LAST; i++)
                regs[i] = splitmix64(&st);
}

/* A conventional reset (the device dropped off the bus and came back, fault GONE): the TDI back to
 * CONFIG_UNLOCKED, as TDISP has it (a function level reset would send a locked TDI to ERROR
 * instead, which nothing here models), and the registers to their power-on values. */
static void device_reset(EmuDevice *d) {
        device_unlock(d);
        device_scrub_memory(d);
        device_power_on_regs(d, d->regs);
}

static void device_enter_error(EmuDevice *d) {
        /* TDISP: the nonce "must be destroyed when the TDI moves to CONFIG_UNLOCKED or
         * ERROR from CONFIG_LOCKED". The lock parameters stay until STOP_INTERFACE. */
        d->state = TDISP_STATE_ERROR;
        explicit_bzero(d->nonce, sizeof(d->nonce));
}

static void device_make_nonce(const EmuDevice *d, uint8_t nonce[static TDISP_NONCE_SIZE]) {
        /* The salt is mixed before it meets the count, so that salt s at count k and salt k at
         * count s do not meet; mix64(0) is 0, so an unsalted device gives the nonces it always
         * gave. */
        uint64_t st = d->seed ^ PRNG_TAG_NONCE ^ mix64(d->n_locks ^ mix64(d->nonce_salt));

        /* Deterministic for a given salt on purpose (reproducible tests), hence predictable:
         * the emulator models the protocol, it provides no security. */
        for (size_t i = 0; i < TDISP_NONCE_SIZE; i += sizeof(uint64_t)) {
                uint64_t v = htole64(splitmix64(&st));
                memcpy(nonce + i, &v, sizeof(v));
        }
}

/* A response carries the request's version, as spdm-emu's and QEMU's responders answer: only an
 * ERROR (VERSION_MISMATCH) can follow a request of another version than 1.0. */
static int reply_begin(Reply *reply, const TdispHeader *req, uint8_t type, size_t body_len,
                       uint8_t **ret_body) {
        TdispHeader h = {
                .version = req->version,
                .message_type = type,
                .interface_id.function_id = htole32(req->interface_id.function_id),
        };

        if (reply->size < sizeof(h) || body_len > reply->size - sizeof(h))
                return -ENOBUFS;

        memcpy(reply->buf, &h, sizeof(h));
        memset(reply->buf + sizeof(h), 0, body_len);
        reply->len = sizeof(h) + body_len;

        if (ret_body)
                *ret_body = reply->buf + sizeof(h);
        return 0;
}

/* error_data is 0 except for UNSUPPORTED_REQUEST, which carries the code. */
static int reply_error(Reply *reply, const TdispHeader *req, uint32_t code, uint32_t data) {
        uint8_t *body;
        int r;

        r = reply_begin(reply, req, TDISP_MSG_ERROR,
                        sizeof(TdispErrorResponse) - sizeof(TdispHeader), &body);
        if (r < 0)
                return r;

        unaligned_write_le32(body, code);
        unaligned_write_le32(body + sizeof(uint32_t), data);
        return 0;
}

/* For a request too short to have a header: the ERROR names function 0 and carries the
 * request's version byte, 1.0 if it has none. */
static int reply_error_short(Reply *reply, const uint8_t *msg, size_t len, uint32_t code) {
        TdispHeader h = { .version = len > 0 ? msg[0] : TDISP_VERSION_1_0 };

        return reply_error(reply, &h, code, 0);
}

static int handle_get_version(EmuDevice *d, const Request *req, Reply *reply) {
        uint8_t *body;
        int r;

        r = reply_begin(reply, &req->header, TDISP_MSG_VERSION, 2, &body);
        if (r < 0)
                return r;

        body[0] = 1; /* VERSION_NUM_COUNT */
        body[1] = TDISP_VERSION_1_0;
        return 0;
}

/* Derived from the handler table below. */
static void capabilities_fill_supported(uint8_t bitmap[static 16]);

static int handle_get_capabilities(EmuDevice *d, const Request *req, Reply *reply) {
        TdispCapabilities caps = {
                .dsm_caps = 0, /* TDISP 1.0: no XT mode */
                .lock_interface_flags_supported = htole16(EMU_LOCK_FLAGS_SUPPORTED),
                .dev_addr_width = EMU_DEV_ADDR_WIDTH,
                /* One request at a time, for this TDI and for the whole device. */
                .num_req_this = 1,
                .num_req_all = 1,
        };
        uint8_t *body;
        int r;

        /* TSM_CAPS defines no bits in TDISP 1.0; like the spdm-emu responder we accept any
         * value, so a newer TSM that advertises more still talks to a 1.0 device. */

        capabilities_fill_supported(caps.req_msgs_supported);

        r = reply_begin(reply, &req->header, TDISP_MSG_CAPABILITIES, sizeof(caps), &body);
        if (r < 0)
                return r;

        memcpy(body, &caps, sizeof(caps));
        return 0;
}

/* MMIO_REPORTING_OFFSET is a two's complement value added to every reported address; the TSM
 * must give one under which no range's addresses wrap past either end of the 64-bit space. A
 * device that reported wrapped page numbers would hide the TSM's error from the guest. */
static bool reporting_offset_is_valid(const EmuDevice *d, uint64_t offset) {
        if (offset % TDISP_PAGE_SIZE != 0)
                return false;
        for (unsigned i = 0; i < d->config.n_mmio_ranges; i++) {
                const EmuMmioRange *m = d->ranges + i;
                uint64_t last = m->base + (uint64_t) m->pages * TDISP_PAGE_SIZE - 1, moved;

                if ((int64_t) offset >= 0 ? __builtin_add_overflow(last, offset, &moved) :
                                            m->base < -offset)
                        return false;
        }
        return true;
}

static int handle_lock_interface(EmuDevice *d, const Request *req, Reply *reply) {
        TdispLockInterfaceParams p;
        uint8_t *body;
        int r;

        memcpy(&p, req->body, sizeof(p));
        p.flags = le16toh(p.flags);
        p.mmio_reporting_offset = le64toh(p.mmio_reporting_offset);
        p.bind_p2p_address_mask = le64toh(p.bind_p2p_address_mask);

        if (d->state != TDISP_STATE_CONFIG_UNLOCKED)
                return reply_error(reply, &req->header, TDISP_ERROR_INVALID_INTERFACE_STATE, 0);

        /* Flags we did not advertise (BIND_P2P, reserved bits), the reserved byte, a P2P
         * address mask without P2P, or a reporting offset that would make the reported
         * ranges not page aligned or wrap. Stream ids are not checked: IDE is not emulated. */
        if ((p.flags & ~EMU_LOCK_FLAGS_SUPPORTED) != 0 || p.reserved != 0 ||
            p.bind_p2p_address_mask != 0 || !reporting_offset_is_valid(d, p.mmio_reporting_offset))
                return reply_error(reply, &req->header, TDISP_ERROR_INVALID_REQUEST, 0);

        r = reply_begin(reply, &req->header, TDISP_MSG_LOCK_INTERFACE_RSP, TDISP_NONCE_SIZE, &body);
        if (r < 0)
                return r;

        d->n_locks++;
        device_make_nonce(d, d->nonce);
        memcpy(body, d->nonce, TDISP_NONCE_SIZE);
        d->lock = p;
        d->state = TDISP_STATE_CONFIG_LOCKED;
        return 0;
}

static size_t device_build_report(const EmuDevice *d, uint8_t buf[static EMU_REPORT_MAX]) {
        bool msix_locked = d->lock.flags & TDISP_LOCK_FLAG_LOCK_MSIX;
        uint64_t st = d->seed ^ PRNG_TAG_INFO;
        unsigned n = d->config.n_mmio_ranges;
        TdispInterfaceReport h = {
                .interface_info = htole16(
                                TDISP_INTERFACE_INFO_DMA_WITHOUT_PASID |
                                ((d->lock.flags & TDISP_LOCK_FLAG_NO_FW_UPDATE) ?
                                                 TDISP_INTERFACE_INFO_NO_UPDATE_AFTER_LOCK :
                                                 0)),
                /* The MSI-X Message Control register (table size - 1; not enabled yet)
                 * when the TSM had MSI-X locked, 0 otherwise. */
                .msi_x_message_control = htole16(msix_locked && d->msix_table_size > 0 ?
                                                         (uint16_t) (d->msix_table_size - 1) :
                                                         0),
                .lnr_control = 0, /* no LN requester capability */
                .tph_control = 0, /* no TPH requester capability */
                .mmio_range_count = htole32(n),
        };
        size_t off = 0;

        memcpy(buf, &h, sizeof(h));
        off += sizeof(h);

        for (unsigned i = 0; i < n; i++) {
                const EmuMmioRange *m = d->ranges + i;
                uint16_t attr = m->attributes;
                TdispMmioRange r;

                /* Unless locked, the MSI-X table and PBA stay host-owned, non-TEE memory. */
                if ((attr & (TDISP_MMIO_RANGE_MSIX_TABLE | TDISP_MMIO_RANGE_MSIX_PBA)) && !msix_locked)
                        attr |= TDISP_MMIO_RANGE_IS_NON_TEE_MEM;

                r = (TdispMmioRange) {
                        /* A page number, of the address shifted by the MMIO_REPORTING_OFFSET
                         * the TSM asked for (page aligned, checked at the lock). */
                        .first_page = htole64((m->base + d->lock.mmio_reporting_offset) / TDISP_PAGE_SIZE),
                        .number_of_pages = htole32(m->pages),
                        .range_attributes = htole16(attr),
                        .range_id = htole16(m->bar),
                };
                memcpy(buf + off, &r, sizeof(r));
                off += sizeof(r);
        }

        unaligned_write_le32(buf + off, EMU_DEVICE_INFO_LEN);
        off += sizeof(uint32_t);

        memcpy(buf + off, "tsmd-emu", 8);
        unaligned_write_le16(buf + off + 8, d->config.vendor_id);
        unaligned_write_le16(buf + off + 10, d->config.device_id);
        unaligned_write_le32(buf + off + 12, d->function_id);
        unaligned_write_le64(buf + off + 16, splitmix64(&st));
        unaligned_write_le64(buf + off + 24, splitmix64(&st));
        off += EMU_DEVICE_INFO_LEN;

        return off;
}

static int handle_get_device_interface_report(EmuDevice *d, const Request *req, Reply *reply) {
        uint8_t report[EMU_REPORT_MAX], *body;
        size_t size, portion;
        uint16_t offset, length;
        int r;

        offset = unaligned_read_le16(req->body);
        length = unaligned_read_le16(req->body + sizeof(uint16_t));

        /* The report describes the locked configuration: it exists only while locked. */
        if (!state_is_locked(d->state))
                return reply_error(reply, &req->header, TDISP_ERROR_INVALID_INTERFACE_STATE, 0);

        size = device_build_report(d, report);
        if (length == 0 || offset >= size)
                return reply_error(reply, &req->header, TDISP_ERROR_INVALID_REQUEST, 0);

        /* A longer LENGTH than is left (or than one response may carry) is not an error:
         * the device returns what it has, and REMAINDER_LENGTH says what is left. */
        portion = MIN(MIN((size_t) length, size - offset), (size_t) EMU_REPORT_PORTION_MAX);

        r = reply_begin(reply, &req->header, TDISP_MSG_DEVICE_INTERFACE_REPORT,
                        2 * sizeof(uint16_t) + portion, &body);
        if (r < 0)
                return r;

        unaligned_write_le16(body, (uint16_t) portion);
        unaligned_write_le16(body + sizeof(uint16_t), (uint16_t) (size - offset - portion));
        memcpy(body + 2 * sizeof(uint16_t), report + offset, portion);
        return 0;
}

static int handle_get_device_interface_state(EmuDevice *d, const Request *req, Reply *reply) {
        uint8_t *body;
        int r;

        r = reply_begin(reply, &req->header, TDISP_MSG_DEVICE_INTERFACE_STATE, 1, &body);
        if (r < 0)
                return r;

        body[0] = (uint8_t) d->state;
        return 0;
}

static int handle_start_interface(EmuDevice *d, const Request *req, Reply *reply) {
        int r;

        if (d->state != TDISP_STATE_CONFIG_LOCKED)
                return reply_error(reply, &req->header, TDISP_ERROR_INVALID_INTERFACE_STATE, 0);

        /* A wrong nonce is refused and the TDI stays CONFIG_LOCKED, so the TSM can retry
         * with the right one: TEE-IO validator case 6.2 asserts exactly that, as do the
         * spdm-emu and Cerberus responders. */
        if (!memeq_consttime(req->body, d->nonce, TDISP_NONCE_SIZE))
                return reply_error(reply, &req->header, TDISP_ERROR_INVALID_NONCE, 0);

        r = reply_begin(reply, &req->header, TDISP_MSG_START_INTERFACE_RSP, 0, NULL);
        if (r < 0)
                return r;

        /* Single use: the nonce authorised this one transition. */
        explicit_bzero(d->nonce, sizeof(d->nonce));
        d->state = TDISP_STATE_RUN;
        return 0;
}

static int handle_stop_interface(EmuDevice *d, const Request *req, Reply *reply) {
        int r;

        /* Legal in every state, including ERROR, which only STOP leaves. */
        r = reply_begin(reply, &req->header, TDISP_MSG_STOP_INTERFACE_RSP, 0, NULL);
        if (r < 0)
                return r;

        device_unlock(d);
        return 0;
}

static bool reg_is_config(uint32_t reg) {
        return reg >= EMU_DEBUG_REG_CONFIG_FIRST && reg <= EMU_DEBUG_REG_CONFIG_LAST;
}

static uint64_t device_reg_read(const EmuDevice *d, uint32_t reg) {
        switch (reg) {
        case EMU_DEBUG_REG_ID:
                return (uint64_t) d->config.vendor_id | (uint64_t) d->config.device_id << 16 |
                       (uint64_t) d->function_id << 32;
        case EMU_DEBUG_REG_TDI_STATE:
                return (uint64_t) d->state;
        case EMU_DEBUG_REG_LOCK_COUNT:
                return d->n_locks;
        case EMU_DEBUG_REG_RESERVED:
                return 0;
        default:
                return d->regs[reg];
        }
}

/* The vendor data of a debug VDM before its payload: registry id, vendor id length, vendor id. */
#define DEBUG_PREFIX (sizeof(EmuDebugMessage) - sizeof(TdispHeader) - sizeof(EmuDebugPayload))

/* Starts a debug VDM_RESPONSE that echoes op, reg and value, with room for data_len bytes
 * after it; returns where those go. */
static int reply_debug(EmuDevice *d, const Request *req, uint8_t op, uint32_t reg, uint64_t value,
                       size_t data_len, Reply *reply, uint8_t **ret_data) {
        uint8_t *body;
        int r;

        r = reply_begin(reply, &req->header, TDISP_MSG_VDM_RSP, DEBUG_PREFIX + sizeof(EmuDebugPayload) + data_len,
                        &body);
        if (r < 0)
                return r;

        body[0] = TDISP_REGISTRY_ID_PCISIG;
        body[1] = sizeof(uint16_t);
        unaligned_write_le16(body + 2, d->config.vendor_id);
        body[DEBUG_PREFIX] = op;
        unaligned_write_le32(body + DEBUG_PREFIX + offsetof(EmuDebugPayload, reg), reg);
        unaligned_write_le64(body + DEBUG_PREFIX + offsetof(EmuDebugPayload, value), value);
        if (ret_data)
                *ret_data = body + DEBUG_PREFIX + sizeof(EmuDebugPayload);
        return 0;
}

static int debug_register(EmuDevice *d, const Request *req, uint8_t op, uint32_t reg, uint64_t value,
                          Reply *reply) {
        int r;

        if (req->body_len != DEBUG_PREFIX + sizeof(EmuDebugPayload) || reg >= EMU_DEBUG_N_REGS ||
            (op == EMU_DEBUG_OP_READ && value != 0) ||
            (op == EMU_DEBUG_OP_WRITE && reg < EMU_DEBUG_REG_CONFIG_FIRST))
                return reply_error(reply, &req->header, TDISP_ERROR_INVALID_REQUEST, 0);

        /* The value is filled in below, once the write (if any) took effect. */
        r = reply_debug(d, req, op, reg, 0, 0, reply, NULL);
        if (r < 0)
                return r;

        if (op == EMU_DEBUG_OP_WRITE) {
                d->regs[reg] = value;
                /* Changing locked configuration is what TDISP moves a TDI to ERROR for. */
                if (reg_is_config(reg) && state_is_locked(d->state))
                        device_enter_error(d);
        }

        unaligned_write_le64(reply->buf + sizeof(TdispHeader) + DEBUG_PREFIX + offsetof(EmuDebugPayload, value),
                 device_reg_read(d, reg));
        return 0;
}

static int debug_memory(EmuDevice *d, const Request *req, uint8_t op, uint32_t length, uint64_t offset,
                        Reply *reply) {
        const uint8_t *data = req->body + DEBUG_PREFIX + sizeof(EmuDebugPayload);
        size_t data_len = req->body_len - DEBUG_PREFIX - sizeof(EmuDebugPayload);
        bool allocated = false;
        uint8_t *out;
        int r;

        /* Inside the window, at most one message's worth, and a MEM_WRITE carries exactly the
         * bytes it announces. */
        if (length == 0 || length > EMU_DEBUG_MEM_XFER_MAX || offset > EMU_DEBUG_MEM_SIZE ||
            length > EMU_DEBUG_MEM_SIZE - offset ||
            data_len != (op == EMU_DEBUG_OP_MEM_WRITE ? (size_t) length : 0))
                return reply_error(reply, &req->header, TDISP_ERROR_INVALID_REQUEST, 0);

        /* Allocated before anything is answered, so a failure changes nothing. */
        if (op == EMU_DEBUG_OP_MEM_WRITE && !d->mem) {
                d->mem = calloc(1, EMU_DEBUG_MEM_SIZE);
                if (!d->mem)
                        return -ENOMEM;
                allocated = true;
        }

        r = reply_debug(d, req, op, length, offset, op == EMU_DEBUG_OP_MEM_READ ? length : 0, reply, &out);
        if (r < 0) {
                /* Nothing was written: the device stays as clean as it was. */
                if (allocated)
                        d->mem = mfree(d->mem);
                return r;
        }

        if (op == EMU_DEBUG_OP_MEM_WRITE)
                memcpy(d->mem + offset, data, length);
        else if (d->mem)
                memcpy(out, d->mem + offset, length);
        /* else: never written, reads as the zeros reply_begin() left there. */
        return 0;
}

static int handle_vdm(EmuDevice *d, const Request *req, Reply *reply) {
        EmuDebugPayload p;

        /* Only our own vendor protocol: registry PCI-SIG and this device's vendor id. */
        if (req->body_len < DEBUG_PREFIX || req->body[0] != TDISP_REGISTRY_ID_PCISIG ||
            req->body[1] != sizeof(uint16_t) || unaligned_read_le16(req->body + 2) != d->config.vendor_id)
                return reply_error(reply, &req->header, TDISP_ERROR_UNSUPPORTED_REQUEST,
                                   TDISP_MSG_VDM_REQ);

        if (req->body_len < DEBUG_PREFIX + sizeof(p))
                return reply_error(reply, &req->header, TDISP_ERROR_INVALID_REQUEST, 0);

        memcpy(&p, req->body + DEBUG_PREFIX, sizeof(p));
        if (p.reserved[0] != 0 || p.reserved[1] != 0 || p.reserved[2] != 0)
                return reply_error(reply, &req->header, TDISP_ERROR_INVALID_REQUEST, 0);

        switch (p.op) {
        case EMU_DEBUG_OP_READ:
        case EMU_DEBUG_OP_WRITE:
                return debug_register(d, req, p.op, le32toh(p.reg), le64toh(p.value), reply);
        case EMU_DEBUG_OP_MEM_READ:
        case EMU_DEBUG_OP_MEM_WRITE:
                return debug_memory(d, req, p.op, le32toh(p.reg), le64toh(p.value), reply);
        default:
                return reply_error(reply, &req->header, TDISP_ERROR_INVALID_REQUEST, 0);
        }
}

/* The requests this device implements, and the guest scope each is carried in: what a kernel
 * TSM lets a guest send. include/linux/pci-tsm.h has STATE_CHANGE as "UNLOCKED->LOCKED,
 * LOCKED->RUN, or other architecture specific state changes to support those transitions", and
 * the Arm CCA host takes only the transition to RUN there, leaving locking and stopping to the
 * host: LOCK and STOP are the TSM's own, sent at the host's bind and unbind, and no guest scope
 * carries them (_EMU_SCOPE_INVALID). BIND_P2P_STREAM, UNBIND_P2P_STREAM and SET_MMIO_ATTRIBUTE
 * (optional in TDISP 1.0) and the later SET_TDISP_CONFIG, like any other code, are refused in
 * every guest scope, answered with UNSUPPORTED_REQUEST on the TSM's channel, and not advertised. */
static const Handler handlers[] = {
        { TDISP_MSG_GET_VERSION, EMU_SCOPE_INFO, handle_get_version },
        { TDISP_MSG_GET_CAPABILITIES, EMU_SCOPE_INFO, handle_get_capabilities },
        { TDISP_MSG_LOCK_INTERFACE_REQ, _EMU_SCOPE_INVALID, handle_lock_interface },
        { TDISP_MSG_GET_DEVICE_INTERFACE_REPORT, EMU_SCOPE_INFO, handle_get_device_interface_report },
        { TDISP_MSG_GET_DEVICE_INTERFACE_STATE, EMU_SCOPE_INFO, handle_get_device_interface_state },
        { TDISP_MSG_START_INTERFACE_REQ, EMU_SCOPE_STATE_CHANGE, handle_start_interface },
        { TDISP_MSG_STOP_INTERFACE_REQ, _EMU_SCOPE_INVALID, handle_stop_interface },
        { TDISP_MSG_VDM_REQ, EMU_SCOPE_DEBUG_READ, handle_vdm },
};

static const Handler *handler_find(uint8_t type) {
        for (size_t i = 0; i < ELEMENTSOF(handlers); i++)
                if (handlers[i].type == type)
                        return handlers + i;
        return NULL;
}

static void capabilities_fill_supported(uint8_t bitmap[static 16]) {
        /* REQ_MSGS_SUPPORTED: "the bit index corresponds to the message code defined in Table
         * 11-3 minus 80h" (PCIe 6.1 11.3.7), so GET_TDISP_VERSION (81h) is bit 1, and the
         * mandatory 81h-87h are 0xFE in the first byte (spdm-emu, TEE-IO validator case 2.1). */
        for (size_t i = 0; i < ELEMENTSOF(handlers); i++) {
                unsigned bit = handlers[i].type - TDISP_REQ_MSGS_SUPPORTED_BASE;
                bitmap[bit / 8] |= (uint8_t) (1u << (bit % 8));
        }
}

bool emu_scope_carries(EmuScope scope, const void *req, size_t req_len) {
        const uint8_t *msg = req;
        size_t len = req_len;
        const Handler *h;
        EmuDebugMessage m;

        /* SECURITY: this is the TSM backend's check of guest requests against the scope
         * they were sent in, done before the device sees the request. Every request code has
         * one guest scope or none; a message too short to have a code, or whose code no
         * scope carries (LOCK and STOP, the TSM's own; BIND_P2P_STREAM, UNBIND_P2P_STREAM,
         * SET_MMIO_ATTRIBUTE and SET_TDISP_CONFIG, the host's business, which this model has not;
         * response codes; unknown codes), is refused in every scope: a TSM cannot tell what
         * it would do. */
        if (len < offsetof(TdispHeader, message_type) + 1)
                return false;

        h = handler_find(msg[offsetof(TdispHeader, message_type)]);
        if (!h || h->scope < 0)
                return false;

        if (h->type != TDISP_MSG_VDM_REQ)
                return h->scope == scope;

        if (scope != EMU_SCOPE_DEBUG_READ && scope != EMU_SCOPE_DEBUG_WRITE)
                return false;

        /* A debug message is classified by its op; a malformed one gets an ERROR in either
         * debug scope. */
        if (len >= sizeof(m)) {
                memcpy(&m, msg, sizeof(m));
                if (m.payload.op == EMU_DEBUG_OP_WRITE || m.payload.op == EMU_DEBUG_OP_MEM_WRITE)
                        return scope == EMU_SCOPE_DEBUG_WRITE;
                if (m.payload.op == EMU_DEBUG_OP_READ || m.payload.op == EMU_DEBUG_OP_MEM_READ)
                        return scope == EMU_SCOPE_DEBUG_READ;
        }
        return true;
}

static int device_dispatch(EmuDevice *d, const uint8_t *msg, size_t len, Reply *reply) {
        const Handler *h;
        Request req;
        size_t body_size;

        if (tdisp_header_decode(msg, len, &req.header) < 0)
                return reply_error_short(reply, msg, len, TDISP_ERROR_INVALID_REQUEST);

        if (req.header.version != TDISP_VERSION_1_0)
                return reply_error(reply, &req.header, TDISP_ERROR_VERSION_MISMATCH, 0);

        h = handler_find(req.header.message_type);
        if (!h)
                return reply_error(reply, &req.header, TDISP_ERROR_UNSUPPORTED_REQUEST,
                                   req.header.message_type);

        req.body = msg + sizeof(TdispHeader);
        req.body_len = len - sizeof(TdispHeader);

        /* Fixed-size requests must be exactly their size; the reserved header bytes zero. */
        if (req.header.reserved[0] != 0 || req.header.reserved[1] != 0 ||
            (tdisp_request_body_size(h->type, &body_size) >= 0 && req.body_len != body_size))
                return reply_error(reply, &req.header, TDISP_ERROR_INVALID_REQUEST, 0);

        /* Not this TDI: another function, or an INTERFACE_ID with reserved bits set. */
        if (req.header.interface_id.function_id != d->function_id ||
            req.header.interface_id.reserved != 0)
                return reply_error(reply, &req.header, TDISP_ERROR_INVALID_INTERFACE, 0);

        return h->process(d, &req, reply);
}

static void fault_consume(EmuDevice *d) {
        if (d->fault_left == 0) /* armed until cleared */
                return;
        if (--d->fault_left == 0)
                d->fault = _EMU_FAULT_INVALID;
}

/* Everything after the scope check, shared by guest requests and host bind/unbind. */
static int device_process(EmuDevice *d, const uint8_t *msg, size_t len, Reply *reply) {
        TdispHeader h;
        int r;

        if (d->removed)
                return -ENODEV;

        switch (d->fault) {
        case EMU_FAULT_BUSY:
                fault_consume(d);
                return -EBUSY;
        case EMU_FAULT_TIMEOUT:
                fault_consume(d);
                return -ETIMEDOUT;
        case EMU_FAULT_GONE:
                device_reset(d);
                fault_consume(d);
                return -ENODEV;
        case EMU_FAULT_TDISP_ERROR:
                r = tdisp_header_decode(msg, len, &h) >= 0 ?
                                    reply_error(reply, &h, d->fault_error_code, 0) :
                                    reply_error_short(reply, msg, len, d->fault_error_code);
                if (r < 0)
                        return r; /* not consumed: the caller did not get to see it */
                fault_consume(d);
                return 0;
        default:
                return device_dispatch(d, msg, len, reply);
        }
}

/* One exchange with the device: a guest's in scope (checked), or the TSM's own (scope < 0). */
static int exchange(EmuDevice *d, int scope, const void *req, size_t req_len, void *resp, size_t resp_size,
                    size_t *ret_resp_len) {
        Reply reply = { .buf = resp, .size = resp_size };
        int r;

        assert_return(d, -EINVAL);
        assert_return(scope < _EMU_SCOPE_MAX, -EINVAL);
        assert_return(req || req_len == 0, -EINVAL);
        assert_return(resp || resp_size == 0, -EINVAL);
        assert_return(ret_resp_len, -EINVAL);

        if (d->removed)
                return -ENODEV;

        if (scope >= 0 && !emu_scope_carries((EmuScope) scope, req, req_len))
                return -EPERM;

        r = device_process(d, req, req_len, &reply);
        if (r < 0)
                return r;

        *ret_resp_len = reply.len;
        return 0;
}

int emu_device_request(
                EmuDevice *d,
                EmuScope scope,
                const void *req,
                size_t req_len,
                void *resp,
                size_t resp_size,
                size_t *ret_resp_len) {

        assert_return(scope >= 0, -EINVAL);
        return exchange(d, scope, req, req_len, resp, resp_size, ret_resp_len);
}

int emu_device_host_request(
                EmuDevice *d,
                const void *req,
                size_t req_len,
                void *resp,
                size_t resp_size,
                size_t *ret_resp_len) {

        return exchange(d, -1, req, req_len, resp, resp_size, ret_resp_len);
}

/* Sends a request on the host's behalf and turns the answer into an errno. */
static int device_host_request(EmuDevice *d, uint8_t type, const void *body, size_t body_len,
                               int invalid_state_errno, uint8_t *resp, size_t resp_size) {
        uint8_t req[sizeof(TdispLockInterfaceRequest)];
        Reply reply = { .buf = resp, .size = resp_size };
        uint32_t code;
        size_t len;
        int r;

        r = tdisp_build_request(type, d->function_id, body, body_len, req, sizeof(req), &len);
        if (r < 0)
                return r;

        r = device_process(d, req, len, &reply);
        if (r < 0)
                return r;

        if (tdisp_error_decode(reply.buf, reply.len, &code, NULL) >= 0)
                return code == TDISP_ERROR_BUSY                    ? -EBUSY :
                       code == TDISP_ERROR_INVALID_INTERFACE_STATE ? invalid_state_errno :
                                                                     -EIO;
        return 0;
}

int emu_device_bind(EmuDevice *d, uint8_t *ret_nonce) {
        /* What a TSM asks for by default: no firmware updates while the TDI is locked. */
        TdispLockInterfaceParams p = { .flags = htole16(TDISP_LOCK_FLAG_NO_FW_UPDATE) };
        uint8_t resp[sizeof(TdispLockInterfaceResponse)];
        int r;

        assert_return(d, -EINVAL);

        r = device_host_request(d, TDISP_MSG_LOCK_INTERFACE_REQ, &p, sizeof(p), -EALREADY,
                                resp, sizeof(resp));
        if (r >= 0 && ret_nonce)
                memcpy(ret_nonce, resp + offsetof(TdispLockInterfaceResponse, start_interface_nonce),
                       TDISP_NONCE_SIZE);
        /* The nonce is the TSM's secret (emu-tsm.h): not left on the stack. */
        explicit_bzero(resp, sizeof(resp));
        return r < 0 ? r : 0;
}

int emu_device_unbind(EmuDevice *d) {
        uint8_t resp[sizeof(TdispErrorResponse)];

        assert_return(d, -EINVAL);

        return device_host_request(d, TDISP_MSG_STOP_INTERFACE_REQ, NULL, 0, -EIO, resp,
                                   sizeof(resp));
}

int emu_device_release(EmuDevice *d) {
        int r;

        assert_return(d, -EINVAL);

        r = emu_device_unbind(d);
        /* SECURITY: the registers hold what the last guest wrote, as the memory does; neither
         * may outlive a change of owner, whether or not the unbind went through. */
        device_scrub_memory(d);
        device_power_on_regs(d, d->regs);
        return r;
}

bool emu_device_is_clean(const EmuDevice *d) {
        uint64_t regs[EMU_DEBUG_N_REGS];

        if (d->state != TDISP_STATE_CONFIG_UNLOCKED || d->mem)
                return false;
        device_power_on_regs(d, regs);
        return memcmp(regs, d->regs, sizeof(regs)) == 0;
}

void emu_device_save(const EmuDevice *d, EmuDeviceSaved *ret) {
        assert(d);
        assert(ret);

        *ret = (EmuDeviceSaved) { .state = d->state, .n_locks = d->n_locks, .lock = d->lock, .mem = d->mem };
        memcpy(ret->nonce, d->nonce, sizeof(ret->nonce));
        memcpy(ret->regs, d->regs, sizeof(ret->regs));
}

static bool saved_is_valid(const EmuDevice *d, const EmuDeviceSaved *s) {
        static const uint8_t zeros[MAX(TDISP_NONCE_SIZE, sizeof(TdispLockInterfaceParams))] = {};
        const TdispLockInterfaceParams *p = &s->lock;

        if (s->state < 0 || s->state >= _TDISP_STATE_MAX)
                return false;
        /* As handle_lock_interface() would have taken them, and none while unlocked. */
        if (s->state == TDISP_STATE_CONFIG_UNLOCKED ?
                            memcmp(p, zeros, sizeof(*p)) != 0 :
                            (p->flags & ~EMU_LOCK_FLAGS_SUPPORTED) != 0 || p->reserved != 0 ||
                                            p->bind_p2p_address_mask != 0 ||
                                            !reporting_offset_is_valid(d, p->mmio_reporting_offset))
                return false;
        /* A nonce exists while CONFIG_LOCKED, and only then: a lock made one (all zeros would
         * let a START carrying zeros, what the TSM sends when it holds none, start the TDI). */
        if ((s->state == TDISP_STATE_CONFIG_LOCKED) != (memcmp(s->nonce, zeros, TDISP_NONCE_SIZE) != 0))
                return false;
        if (s->state != TDISP_STATE_CONFIG_UNLOCKED && s->n_locks == 0)
                return false;
        for (unsigned i = 0; i < EMU_DEBUG_REG_CONFIG_FIRST; i++)
                if (s->regs[i] != 0)
                        return false;
        return true;
}

int emu_device_load(EmuDevice *d, const EmuDeviceSaved *s) {
        uint8_t *mem = NULL;

        assert_return(d, -EINVAL);
        assert_return(s, -EINVAL);

        if (!saved_is_valid(d, s))
                return -EINVAL;
        if (s->mem) {
                mem = malloc(EMU_DEBUG_MEM_SIZE);
                if (!mem)
                        return -ENOMEM;
                memcpy(mem, s->mem, EMU_DEBUG_MEM_SIZE);
        }

        device_scrub_memory(d);
        d->mem = mem;
        d->state = s->state;
        d->n_locks = s->n_locks;
        memcpy(d->nonce, s->nonce, sizeof(d->nonce));
        d->lock = s->lock;
        memcpy(d->regs, s->regs, sizeof(d->regs));
        return 0;
}

int emu_device_new(const EmuDeviceConfig *c, EmuDevice **ret) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = NULL;
        uint32_t function_id;
        int r;

        assert_return(c, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(c->address.device <= 0x1f && c->address.function <= 7, -EINVAL);
        assert_return(c->n_mmio_ranges <= EMU_MMIO_RANGES_MAX, -EINVAL);
        assert_return(c->fault == _EMU_FAULT_INVALID || (c->fault >= 0 && c->fault < _EMU_FAULT_MAX), -EINVAL);

        r = tdisp_function_id_from_pci(c->address.domain, c->address.bus,
                                       emu_pci_address_devfn(&c->address), &function_id);
        if (r < 0)
                return r;

        d = new0(EmuDevice, 1);
        if (!d)
                return -ENOMEM;

        d->n_ref = 1;
        d->config = *c;
        d->function_id = function_id;
        d->fault = c->fault;
        d->fault_error_code = c->fault == EMU_FAULT_TDISP_ERROR ? TDISP_ERROR_UNSPECIFIED : 0;
        emu_pci_address_format(&c->address, d->address);
        d->seed = device_seed(c);
        device_init_layout(d);
        device_reset(d);

        *ret = TAKE_PTR(d);
        return 0;
}

EmuDevice *emu_device_ref(EmuDevice *d) {
        if (!d)
                return NULL;

        assert(d->n_ref > 0);
        d->n_ref++;
        return d;
}

EmuDevice *emu_device_unref(EmuDevice *d) {
        if (!d)
                return NULL;

        assert(d->n_ref > 0);
        if (--d->n_ref > 0)
                return NULL;

        explicit_bzero(d->nonce, sizeof(d->nonce));
        device_scrub_memory(d);
        return mfree(d);
}

void emu_device_set_nonce_salt(EmuDevice *d, uint64_t salt) {
        if (d)
                d->nonce_salt = salt;
}

void emu_device_mark_removed(EmuDevice *d) {
        if (d)
                d->removed = true;
}

bool emu_device_is_removed(const EmuDevice *d) {
        return !d || d->removed;
}

void *emu_device_get_exchange(const EmuDevice *d) {
        return d ? d->exchange : NULL;
}

void emu_device_set_exchange(EmuDevice *d, void *exchange) {
        if (d)
                d->exchange = exchange;
}

const char *emu_device_get_address(const EmuDevice *d) {
        assert_return(d, NULL);
        return d->address;
}

const EmuDeviceConfig *emu_device_get_config(const EmuDevice *d) {
        assert_return(d, NULL);
        return &d->config;
}

uint32_t emu_device_get_function_id(const EmuDevice *d) {
        assert(d);
        return d->function_id;
}

TdispState emu_device_get_state(const EmuDevice *d) {
        assert_return(d, _TDISP_STATE_INVALID);
        return d->state;
}

int emu_device_inject_fault(EmuDevice *d, EmuFault fault, unsigned count) {
        if (fault == EMU_FAULT_TDISP_ERROR)
                return emu_device_inject_tdisp_error(d, TDISP_ERROR_UNSPECIFIED, count);

        assert_return(d, -EINVAL);
        assert_return(fault >= 0 && fault < _EMU_FAULT_MAX, -EINVAL);

        d->fault = fault;
        d->fault_left = count;
        d->fault_error_code = 0;
        return 0;
}

int emu_device_inject_tdisp_error(EmuDevice *d, uint32_t error_code, unsigned count) {
        assert_return(d, -EINVAL);
        assert_return(error_code != 0, -EINVAL);

        d->fault = EMU_FAULT_TDISP_ERROR;
        d->fault_left = count;
        d->fault_error_code = error_code;
        return 0;
}

void emu_device_clear_fault(EmuDevice *d) {
        if (!d)
                return;

        d->fault = _EMU_FAULT_INVALID;
        d->fault_left = 0;
        d->fault_error_code = 0;
}

EmuFault emu_device_get_fault(const EmuDevice *d) {
        assert_return(d, _EMU_FAULT_INVALID);
        return d->fault;
}

int emu_device_trigger_tdi_error(EmuDevice *d) {
        assert_return(d, -EINVAL);

        if (d->removed)
                return -ENODEV;
        if (!state_is_locked(d->state))
                return 0;

        device_enter_error(d);
        return 1;
}

int emu_debug_build_request(
                uint32_t function_id,
                uint16_t vendor_id,
                uint8_t op,
                uint32_t reg,
                uint64_t value,
                void *buf,
                size_t size,
                size_t *ret_len) {

        EmuDebugMessage m = {
                .vdm.registry_id = TDISP_REGISTRY_ID_PCISIG,
                .vdm.vendor_id_len = sizeof(uint16_t),
                .vendor_id = htole16(vendor_id),
                .payload.op = op,
                .payload.reg = htole32(reg),
                .payload.value = htole64(value),
        };

        return tdisp_build_request(TDISP_MSG_VDM_REQ, function_id,
                                   (const uint8_t *) &m + sizeof(TdispHeader),
                                   sizeof(m) - sizeof(TdispHeader), buf, size, ret_len);
}

int emu_debug_build_mem_request(
                uint32_t function_id,
                uint16_t vendor_id,
                uint8_t op,
                uint64_t offset,
                uint32_t length,
                const void *data,
                void *buf,
                size_t size,
                size_t *ret_len) {

        size_t data_len = op == EMU_DEBUG_OP_MEM_WRITE ? length : 0, len;
        int r;

        assert_return(op == EMU_DEBUG_OP_MEM_READ || op == EMU_DEBUG_OP_MEM_WRITE, -EINVAL);
        assert_return(data || data_len == 0, -EINVAL);
        assert_return(buf || size == 0, -EINVAL);
        assert_return(ret_len, -EINVAL);

        if (size < data_len)
                return -ENOBUFS;
        r = emu_debug_build_request(function_id, vendor_id, op, length, offset, buf, size - data_len, &len);
        if (r < 0)
                return r;

        if (data_len > 0)
                memcpy((uint8_t *) buf + len, data, data_len);
        *ret_len = len + data_len;
        return 0;
}
