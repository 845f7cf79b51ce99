/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of the emulated TDI: TDISP wire format (golden bytes), the state machine (every
 * state x message), interface report portions, malformed input, scope enforcement, fault
 * injection, -ENOBUFS, host bind/unbind, the debug protocol (registers and device memory) and
 * determinism.
 * Runs in: tests.
 */

#include <endian.h>

#include "emu-device.h"
#include "emu-platform.h"
#include "harness.h"
#include "tdisp.h"

#define ADDR1 "0000:01:00.0"
#define FID1 0x0100u /* bus 1, device 0, function 0 */

static EmuDevice *device_new(const char *entry) {
        EmuDeviceConfig c;
        EmuDevice *d;

        ASSERT_OK(emu_device_config_parse(entry, &c));
        ASSERT_OK(emu_device_new(&c, &d));
        return d;
}

/* Builds a request for function fid into msg and returns its length. */
static size_t build(uint8_t type, uint32_t fid, const void *body, size_t body_len, uint8_t *msg,
                    size_t size) {
        size_t len;

        ASSERT_OK(tdisp_build_request(type, fid, body, body_len, msg, size, &len));
        return len;
}

/* Not a scope: the TSM's own channel (emu_device_host_request()), which LOCK and STOP take. */
#define SCOPE_HOST ((EmuScope) 100)

static int request_sized(EmuDevice *d, EmuScope scope, const void *msg, size_t msg_len, uint8_t *resp,
                         size_t resp_size, size_t *ret_len) {
        if (scope == SCOPE_HOST)
                return emu_device_host_request(d, msg, msg_len, resp, resp_size, ret_len);
        return emu_device_request(d, scope, msg, msg_len, resp, resp_size, ret_len);
}

/* Sends raw bytes, with room for any response. */
static int request(EmuDevice *d, EmuScope scope, const void *msg, size_t msg_len,
                   uint8_t resp[static EMU_RESPONSE_MAX], size_t *ret_len) {
        return request_sized(d, scope, msg, msg_len, resp, EMU_RESPONSE_MAX, ret_len);
}

/* Sends type+body to d in scope and returns the response length; the request must produce
 * a TDISP message. */
static size_t send_scoped(EmuDevice *d, EmuScope scope, uint8_t type, const void *body,
                          size_t body_len, uint8_t resp[static EMU_RESPONSE_MAX]) {
        uint8_t req[256];
        size_t req_len, resp_len = SIZE_MAX;

        req_len = build(type, emu_device_get_function_id(d), body, body_len, req, sizeof(req));
        ASSERT_OK(request(d, scope, req, req_len, resp, &resp_len));
        ASSERT_GE(resp_len, sizeof(TdispHeader));
        ASSERT_LE(resp_len, EMU_RESPONSE_MAX);
        return resp_len;
}

/* The scope a guest sends type in, or the TSM's own channel for LOCK and STOP. */
static EmuScope scope_of(uint8_t type) {
        switch (type) {
        case TDISP_MSG_LOCK_INTERFACE_REQ:
        case TDISP_MSG_STOP_INTERFACE_REQ:
                return SCOPE_HOST;
        case TDISP_MSG_START_INTERFACE_REQ:
                return EMU_SCOPE_STATE_CHANGE;
        default:
                return EMU_SCOPE_INFO;
        }
}

static size_t send_msg(EmuDevice *d, uint8_t type, const void *body, size_t body_len,
                       uint8_t resp[static EMU_RESPONSE_MAX]) {
        return send_scoped(d, scope_of(type), type, body, body_len, resp);
}

/* Asserts resp is a TDISP 1.0 message of the given type and length for function fid. */
static void assert_message(const uint8_t *resp, size_t len, uint8_t type, size_t expected_len,
                           uint32_t fid) {
        TdispHeader h;

        ASSERT_OK(tdisp_header_decode(resp, len, &h));
        ASSERT_EQ(h.version, TDISP_VERSION_1_0);
        ASSERT_EQ(h.message_type, type);
        ASSERT_EQ(h.reserved[0], 0);
        ASSERT_EQ(h.reserved[1], 0);
        ASSERT_EQ(h.interface_id.function_id, fid);
        ASSERT_EQ(h.interface_id.reserved, 0);
        ASSERT_EQ(len, expected_len);
}

/* Asserts resp is a TDISP ERROR and returns its code. */
static uint32_t error_code_of(const uint8_t *resp, size_t len, uint32_t fid) {
        uint32_t code, data;

        assert_message(resp, len, TDISP_MSG_ERROR, sizeof(TdispErrorResponse), fid);
        ASSERT_OK(tdisp_error_decode(resp, len, &code, &data));
        return code;
}

/* What a TSM typically asks for: no firmware update while locked. */
#define LOCK_DEFAULT ((TdispLockInterfaceParams) { .flags = htole16(TDISP_LOCK_FLAG_NO_FW_UPDATE) })

static void do_lock_params(EmuDevice *d, const TdispLockInterfaceParams *p,
                           uint8_t nonce[static TDISP_NONCE_SIZE]) {
        uint8_t resp[EMU_RESPONSE_MAX];
        size_t len;

        len = send_msg(d, TDISP_MSG_LOCK_INTERFACE_REQ, p, sizeof(*p), resp);
        assert_message(resp, len, TDISP_MSG_LOCK_INTERFACE_RSP, sizeof(TdispLockInterfaceResponse),
                       emu_device_get_function_id(d));
        memcpy(nonce, resp + sizeof(TdispHeader), TDISP_NONCE_SIZE);
}

static void do_lock(EmuDevice *d, uint8_t nonce[static TDISP_NONCE_SIZE]) {
        do_lock_params(d, &LOCK_DEFAULT, nonce);
}

static void do_start(EmuDevice *d, const uint8_t nonce[static TDISP_NONCE_SIZE]) {
        uint8_t resp[EMU_RESPONSE_MAX];
        size_t len;

        len = send_msg(d, TDISP_MSG_START_INTERFACE_REQ, nonce, TDISP_NONCE_SIZE, resp);
        assert_message(resp, len, TDISP_MSG_START_INTERFACE_RSP, sizeof(TdispHeader),
                       emu_device_get_function_id(d));
}

/* The state as the device reports it on the wire (and as the API reports it). */
static TdispState wire_state(EmuDevice *d) {
        uint8_t resp[EMU_RESPONSE_MAX];
        size_t len;

        len = send_msg(d, TDISP_MSG_GET_DEVICE_INTERFACE_STATE, NULL, 0, resp);
        assert_message(resp, len, TDISP_MSG_DEVICE_INTERFACE_STATE,
                       sizeof(TdispDeviceInterfaceStateResponse), emu_device_get_function_id(d));
        ASSERT_EQ(resp[sizeof(TdispHeader)], emu_device_get_state(d));
        return (TdispState) resp[sizeof(TdispHeader)];
}

static void drive_to(EmuDevice *d, TdispState s, uint8_t nonce[static TDISP_NONCE_SIZE]) {
        memset(nonce, 0, TDISP_NONCE_SIZE);
        if (s == TDISP_STATE_CONFIG_UNLOCKED)
                return;

        do_lock(d, nonce);
        if (s == TDISP_STATE_RUN)
                do_start(d, nonce);
        if (s == TDISP_STATE_ERROR)
                ASSERT_EQ(emu_device_trigger_tdi_error(d), 1);
        ASSERT_EQ(wire_state(d), s);
}

/* Reads the whole interface report in portions of at most chunk bytes. */
static size_t read_report(EmuDevice *d, uint16_t chunk, uint8_t *buf, size_t size) {
        size_t total = 0;

        for (;;) {
                TdispGetDeviceInterfaceReportRequest q = {
                        .offset = htole16((uint16_t) total),
                        .length = htole16(chunk),
                };
                uint8_t resp[EMU_RESPONSE_MAX];
                uint16_t portion, remainder;
                size_t len;

                len = send_msg(d, TDISP_MSG_GET_DEVICE_INTERFACE_REPORT,
                               (uint8_t *) &q + sizeof(TdispHeader), 4, resp);
                ASSERT_GE(len, sizeof(TdispDeviceInterfaceReportResponse));
                ASSERT_EQ(resp[1], TDISP_MSG_DEVICE_INTERFACE_REPORT);
                memcpy(&portion, resp + 16, 2);
                memcpy(&remainder, resp + 18, 2);
                portion = le16toh(portion);
                remainder = le16toh(remainder);

                ASSERT_EQ(len, sizeof(TdispDeviceInterfaceReportResponse) + portion);
                ASSERT_GE(portion, 1);
                ASSERT_LE(portion, chunk);
                ASSERT_LE(total + portion + remainder, size);
                memcpy(buf + total, resp + 20, portion);
                total += portion;
                if (remainder == 0)
                        return total;
        }
}

TEST(wire_helpers) {
        size_t n;
        uint32_t fid;

        ASSERT_OK(tdisp_request_body_size(TDISP_MSG_GET_VERSION, &n));
        ASSERT_EQ(n, 0);
        ASSERT_OK(tdisp_request_body_size(TDISP_MSG_GET_CAPABILITIES, &n));
        ASSERT_EQ(n, 4);
        ASSERT_OK(tdisp_request_body_size(TDISP_MSG_LOCK_INTERFACE_REQ, &n));
        ASSERT_EQ(n, 20);
        ASSERT_OK(tdisp_request_body_size(TDISP_MSG_GET_DEVICE_INTERFACE_REPORT, &n));
        ASSERT_EQ(n, 4);
        ASSERT_OK(tdisp_request_body_size(TDISP_MSG_START_INTERFACE_REQ, &n));
        ASSERT_EQ(n, 32);
        ASSERT_ERRNO(tdisp_request_body_size(TDISP_MSG_VDM_REQ, &n), EOPNOTSUPP);
        ASSERT_ERRNO(tdisp_request_body_size(0x42, &n), EOPNOTSUPP);

        ASSERT_OK(tdisp_function_id_from_pci(0, 0x01, 0x00, &fid));
        ASSERT_EQ(fid, 0x0100);
        ASSERT_OK(tdisp_function_id_from_pci(0x0001, 0x02, 3 << 3 | 4, &fid));
        ASSERT_EQ(fid, 0x0101021c);
        ASSERT_ERRNO(tdisp_function_id_from_pci(0x0100, 0, 0, &fid), ERANGE);

        ASSERT_STREQ(tdisp_message_type_to_string(0x81), "GET_TDISP_VERSION");
        ASSERT_STREQ(tdisp_message_type_to_string(0x7f), "TDISP_ERROR");
        ASSERT_NULL(tdisp_message_type_to_string(0x42));
        ASSERT_STREQ(tdisp_error_code_to_string(0x102), "INVALID_NONCE");
        ASSERT_STREQ(tdisp_state_to_string(TDISP_STATE_CONFIG_LOCKED), "CONFIG_LOCKED");
        ASSERT_EQ(tdisp_state_from_string("RUN"), TDISP_STATE_RUN);
        ASSERT_STREQ(emu_scope_to_string(EMU_SCOPE_DEBUG_WRITE), "debug-write");

        /* Decoding never reads past the end. */
        ASSERT_ERRNO(tdisp_header_decode("\x10\x81", 2, &(TdispHeader) {}), EBADMSG);
        ASSERT_ERRNO(tdisp_error_decode("\x10\x7f", 2, NULL, NULL), EBADMSG);
        ASSERT_ERRNO(tdisp_build_request(0x81, 0, NULL, 0, (uint8_t[15]) {}, 15, &n), ENOBUFS);
}

TEST(get_version_golden) {
        static const uint8_t req[] = {
                0x10, 0x81, 0x00, 0x00,                        /* version, GET_TDISP_VERSION */
                0x00, 0x01, 0x00, 0x00,                        /* function id 0x100 */
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        };
        static const uint8_t expected[] = {
                0x10, 0x01, 0x00, 0x00,                        /* version, TDISP_VERSION */
                0x00, 0x01, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x01, 0x10,                                    /* one version: 1.0 */
        };
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
        uint8_t resp[EMU_RESPONSE_MAX], built[sizeof(req)];
        size_t len;

        ASSERT_OK(tdisp_build_request(TDISP_MSG_GET_VERSION, FID1, NULL, 0, built, sizeof(built), &len));
        ASSERT_EQ(len, sizeof(req));
        ASSERT_MEMEQ(built, req, sizeof(req));

        ASSERT_OK(request(d, EMU_SCOPE_INFO, req, sizeof(req), resp, &len));
        ASSERT_EQ(len, sizeof(expected));
        ASSERT_MEMEQ(resp, expected, sizeof(expected));
}

TEST(get_capabilities_golden) {
        static const uint8_t expected[] = {
                0x10, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, /* TDISP_CAPABILITIES */
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00,                         /* DSM_CAPS */
                0xfe, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* REQ_MSGS_SUPPORTED, bit = code - 0x80: */
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /*   0x81-0x87, 0x8b (VDM) */
                0x17, 0x00,                                     /* LOCK flags: all but BIND_P2P */
                0x00, 0x00, 0x00,                               /* reserved */
                0x34,                                           /* DEV_ADDR_WIDTH 52 */
                0x01, 0x01,                                     /* NUM_REQ_THIS, NUM_REQ_ALL */
        };
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
        uint8_t resp[EMU_RESPONSE_MAX];
        uint32_t tsm_caps;
        size_t len;

        /* TSM_CAPS has no bits in 1.0 and does not change the answer. */
        for (unsigned i = 0; i < 2; i++) {
                tsm_caps = htole32(i == 0 ? 0 : 0xffffffff);
                len = send_msg(d, TDISP_MSG_GET_CAPABILITIES, &tsm_caps, sizeof(tsm_caps), resp);
                ASSERT_EQ(len, sizeof(expected));
                ASSERT_MEMEQ(resp, expected, sizeof(expected));
        }
}

TEST(legal_transitions) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
        uint8_t nonce[TDISP_NONCE_SIZE], zero[TDISP_NONCE_SIZE] = {}, resp[EMU_RESPONSE_MAX];
        size_t len;

        ASSERT_EQ(wire_state(d), TDISP_STATE_CONFIG_UNLOCKED);

        do_lock(d, nonce);
        ASSERT_FALSE(memcmp(nonce, zero, sizeof(nonce)) == 0);
        ASSERT_EQ(wire_state(d), TDISP_STATE_CONFIG_LOCKED);

        do_start(d, nonce);
        ASSERT_EQ(wire_state(d), TDISP_STATE_RUN);

        len = send_msg(d, TDISP_MSG_STOP_INTERFACE_REQ, NULL, 0, resp);
        assert_message(resp, len, TDISP_MSG_STOP_INTERFACE_RSP, sizeof(TdispHeader), FID1);
        ASSERT_EQ(wire_state(d), TDISP_STATE_CONFIG_UNLOCKED);

        /* Locking again yields a fresh nonce, and the old one is worthless. */
        {
                uint8_t nonce2[TDISP_NONCE_SIZE];

                do_lock(d, nonce2);
                ASSERT_FALSE(memcmp(nonce, nonce2, sizeof(nonce)) == 0);
                len = send_msg(d, TDISP_MSG_START_INTERFACE_REQ, nonce, sizeof(nonce), resp);
                ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INVALID_NONCE);
                do_start(d, nonce2);
                ASSERT_EQ(wire_state(d), TDISP_STATE_RUN);
        }
}

/* Every message in every state: what it answers and where the TDI ends up. */
TEST(state_message_matrix) {
        enum { OK = 0 };
        static const uint8_t messages[] = {
                TDISP_MSG_GET_VERSION,
                TDISP_MSG_GET_CAPABILITIES,
                TDISP_MSG_LOCK_INTERFACE_REQ,
                TDISP_MSG_GET_DEVICE_INTERFACE_REPORT,
                TDISP_MSG_GET_DEVICE_INTERFACE_STATE,
                TDISP_MSG_START_INTERFACE_REQ,
                TDISP_MSG_STOP_INTERFACE_REQ,
        };
        static const struct {
                uint32_t error; /* OK or the TDISP error code */
                TdispState next;
        } expect[4][7] = {
                [TDISP_STATE_CONFIG_UNLOCKED] = {
                        { OK, TDISP_STATE_CONFIG_UNLOCKED },
                        { OK, TDISP_STATE_CONFIG_UNLOCKED },
                        { OK, TDISP_STATE_CONFIG_LOCKED },
                        { TDISP_ERROR_INVALID_INTERFACE_STATE, TDISP_STATE_CONFIG_UNLOCKED },
                        { OK, TDISP_STATE_CONFIG_UNLOCKED },
                        { TDISP_ERROR_INVALID_INTERFACE_STATE, TDISP_STATE_CONFIG_UNLOCKED },
                        { OK, TDISP_STATE_CONFIG_UNLOCKED },
                },
                [TDISP_STATE_CONFIG_LOCKED] = {
                        { OK, TDISP_STATE_CONFIG_LOCKED },
                        { OK, TDISP_STATE_CONFIG_LOCKED },
                        { TDISP_ERROR_INVALID_INTERFACE_STATE, TDISP_STATE_CONFIG_LOCKED },
                        { OK, TDISP_STATE_CONFIG_LOCKED },
                        { OK, TDISP_STATE_CONFIG_LOCKED },
                        { OK, TDISP_STATE_RUN },
                        { OK, TDISP_STATE_CONFIG_UNLOCKED },
                },
                [TDISP_STATE_RUN] = {
                        { OK, TDISP_STATE_RUN },
                        { OK, TDISP_STATE_RUN },
                        { TDISP_ERROR_INVALID_INTERFACE_STATE, TDISP_STATE_RUN },
                        { OK, TDISP_STATE_RUN },
                        { OK, TDISP_STATE_RUN },
                        { TDISP_ERROR_INVALID_INTERFACE_STATE, TDISP_STATE_RUN },
                        { OK, TDISP_STATE_CONFIG_UNLOCKED },
                },
                [TDISP_STATE_ERROR] = {
                        { OK, TDISP_STATE_ERROR },
                        { OK, TDISP_STATE_ERROR },
                        { TDISP_ERROR_INVALID_INTERFACE_STATE, TDISP_STATE_ERROR },
                        { TDISP_ERROR_INVALID_INTERFACE_STATE, TDISP_STATE_ERROR },
                        { OK, TDISP_STATE_ERROR },
                        { TDISP_ERROR_INVALID_INTERFACE_STATE, TDISP_STATE_ERROR },
                        { OK, TDISP_STATE_CONFIG_UNLOCKED },
                },
        };
        static const uint8_t response_of[] = {
                [TDISP_MSG_GET_VERSION & 0x7f] = TDISP_MSG_VERSION,
                [TDISP_MSG_GET_CAPABILITIES & 0x7f] = TDISP_MSG_CAPABILITIES,
                [TDISP_MSG_LOCK_INTERFACE_REQ & 0x7f] = TDISP_MSG_LOCK_INTERFACE_RSP,
                [TDISP_MSG_GET_DEVICE_INTERFACE_REPORT & 0x7f] = TDISP_MSG_DEVICE_INTERFACE_REPORT,
                [TDISP_MSG_GET_DEVICE_INTERFACE_STATE & 0x7f] = TDISP_MSG_DEVICE_INTERFACE_STATE,
                [TDISP_MSG_START_INTERFACE_REQ & 0x7f] = TDISP_MSG_START_INTERFACE_RSP,
                [TDISP_MSG_STOP_INTERFACE_REQ & 0x7f] = TDISP_MSG_STOP_INTERFACE_RSP,
        };

        for (TdispState s = 0; s < _TDISP_STATE_MAX; s++)
                for (size_t m = 0; m < ELEMENTSOF(messages); m++) {
                        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
                        uint8_t nonce[TDISP_NONCE_SIZE], body[64] = {}, resp[EMU_RESPONSE_MAX];
                        size_t body_len = 0, len;

                        drive_to(d, s, nonce);

                        switch (messages[m]) {
                        case TDISP_MSG_GET_CAPABILITIES:
                                body_len = 4;
                                break;
                        case TDISP_MSG_LOCK_INTERFACE_REQ:
                                memcpy(body, &LOCK_DEFAULT, sizeof(LOCK_DEFAULT));
                                body_len = sizeof(LOCK_DEFAULT);
                                break;
                        case TDISP_MSG_GET_DEVICE_INTERFACE_REPORT:
                                body[2] = 0xff; /* offset 0, length 0x00ff */
                                body_len = 4;
                                break;
                        case TDISP_MSG_START_INTERFACE_REQ:
                                memcpy(body, nonce, sizeof(nonce)); /* the right one, if any */
                                body_len = sizeof(nonce);
                                break;
                        }

                        len = send_msg(d, messages[m], body, body_len, resp);
                        if (expect[s][m].error == OK) {
                                ASSERT_EQ(resp[1], response_of[messages[m] & 0x7f]);
                                if (messages[m] == TDISP_MSG_GET_DEVICE_INTERFACE_STATE)
                                        ASSERT_EQ(resp[16], s);
                        } else if (error_code_of(resp, len, FID1) != expect[s][m].error)
                                TEST_FAIL("%s in %s: got error 0x%x",
                                          tdisp_message_type_to_string(messages[m]),
                                          tdisp_state_to_string(s),
                                          (unsigned) error_code_of(resp, len, FID1));

                        if (wire_state(d) != expect[s][m].next)
                                TEST_FAIL("%s in %s: ended in %s", tdisp_message_type_to_string(messages[m]),
                                          tdisp_state_to_string(s), tdisp_state_to_string(wire_state(d)));
                }
}

TEST(start_wrong_nonce) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
        uint8_t nonce[TDISP_NONCE_SIZE], bad[TDISP_NONCE_SIZE], resp[EMU_RESPONSE_MAX];
        size_t len;

        do_lock(d, nonce);

        /* A difference anywhere is caught, and the TDI stays CONFIG_LOCKED (TEE-IO
         * validator case 6.2), so the right nonce still works afterwards. */
        for (size_t i = 0; i < TDISP_NONCE_SIZE; i++) {
                memcpy(bad, nonce, sizeof(bad));
                bad[i] ^= 0x01;
                len = send_msg(d, TDISP_MSG_START_INTERFACE_REQ, bad, sizeof(bad), resp);
                ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INVALID_NONCE);
                ASSERT_EQ(wire_state(d), TDISP_STATE_CONFIG_LOCKED);
        }

        do_start(d, nonce);
        ASSERT_EQ(wire_state(d), TDISP_STATE_RUN);
}

TEST(error_state) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
        uint8_t nonce[TDISP_NONCE_SIZE], resp[EMU_RESPONSE_MAX];
        size_t len;

        /* No ERROR transition from CONFIG_UNLOCKED: configuration may change there. */
        ASSERT_EQ(emu_device_trigger_tdi_error(d), 0);
        ASSERT_EQ(wire_state(d), TDISP_STATE_CONFIG_UNLOCKED);

        do_lock(d, nonce);
        ASSERT_EQ(emu_device_trigger_tdi_error(d), 1);
        ASSERT_EQ(emu_device_trigger_tdi_error(d), 0);
        ASSERT_EQ(wire_state(d), TDISP_STATE_ERROR);

        /* Only STOP leaves ERROR, and the nonce issued before the error is gone. */
        len = send_msg(d, TDISP_MSG_STOP_INTERFACE_REQ, NULL, 0, resp);
        ASSERT_EQ(resp[1], TDISP_MSG_STOP_INTERFACE_RSP);
        len = send_msg(d, TDISP_MSG_START_INTERFACE_REQ, nonce, sizeof(nonce), resp);
        ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INVALID_INTERFACE_STATE);
        ASSERT_EQ(wire_state(d), TDISP_STATE_CONFIG_UNLOCKED);

        /* RUN -> ERROR too. */
        drive_to(d, TDISP_STATE_RUN, nonce);
        ASSERT_EQ(emu_device_trigger_tdi_error(d), 1);
        ASSERT_EQ(wire_state(d), TDISP_STATE_ERROR);
}

TEST(lock_parameters_checked) {
        const TdispLockInterfaceParams bad[] = {
                { .flags = htole16(TDISP_LOCK_FLAG_BIND_P2P) },         /* not advertised */
                { .flags = htole16(0x0020) },                           /* reserved flag */
                { .flags = htole16(0x8000) },
                { .reserved = 1 },
                { .bind_p2p_address_mask = htole64(0xfff) },            /* without BIND_P2P */
                { .mmio_reporting_offset = htole64(0x800) },            /* not page aligned */
                /* Two's complement offsets moving the ranges, which lie between 4 GiB and
                 * 4 GiB + 1 TiB, below 0 (no positive offset can move them past 2^64). */
                { .mmio_reporting_offset = htole64(-(UINT64_C(1) << 42)) },
                { .mmio_reporting_offset = htole64(UINT64_C(0x8000000000000000)) },
        };
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
        uint8_t resp[EMU_RESPONSE_MAX], nonce[TDISP_NONCE_SIZE];
        size_t len;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                len = send_msg(d, TDISP_MSG_LOCK_INTERFACE_REQ, bad + i, sizeof(bad[i]), resp);
                ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INVALID_REQUEST);
                ASSERT_EQ(wire_state(d), TDISP_STATE_CONFIG_UNLOCKED);
        }

        /* Every advertised flag together is fine, as is any stream id. */
        do_lock_params(d,
                       &(TdispLockInterfaceParams) {
                               .flags = htole16(EMU_LOCK_FLAGS_SUPPORTED),
                               .default_stream_id = 7,
                               .mmio_reporting_offset = htole64(0x1000),
                       },
                       nonce);
        ASSERT_EQ(wire_state(d), TDISP_STATE_CONFIG_LOCKED);
}

typedef struct ParsedReport {
        uint16_t interface_info;
        uint16_t msi_x_message_control;
        uint32_t n_ranges;
        TdispMmioRange ranges[EMU_MMIO_RANGES_MAX];
        uint32_t info_len;
        const uint8_t *info;
} ParsedReport;

static void parse_report(const uint8_t *buf, size_t len, ParsedReport *ret) {
        TdispInterfaceReport h;
        size_t off = sizeof(h);

        ASSERT_GE(len, sizeof(h));
        memcpy(&h, buf, sizeof(h));
        *ret = (ParsedReport) {
                .interface_info = le16toh(h.interface_info),
                .msi_x_message_control = le16toh(h.msi_x_message_control),
                .n_ranges = le32toh(h.mmio_range_count),
        };
        ASSERT_EQ(h.reserved, 0);
        ASSERT_EQ(h.lnr_control, 0);
        ASSERT_EQ(h.tph_control, 0);
        ASSERT_LE(ret->n_ranges, EMU_MMIO_RANGES_MAX);
        ASSERT_GE(len, off + ret->n_ranges * sizeof(TdispMmioRange) + 4);

        for (uint32_t i = 0; i < ret->n_ranges; i++) {
                TdispMmioRange *r = ret->ranges + i;

                memcpy(r, buf + off, sizeof(*r));
                r->first_page = le64toh(r->first_page);
                r->number_of_pages = le32toh(r->number_of_pages);
                r->range_attributes = le16toh(r->range_attributes);
                r->range_id = le16toh(r->range_id);
                off += sizeof(*r);
        }

        memcpy(&ret->info_len, buf + off, 4);
        ret->info_len = le32toh(ret->info_len);
        off += 4;
        ret->info = buf + off;
        /* TEE-IO validator 4.5.1: the report ends right after the device-specific info. */
        ASSERT_EQ(len, off + ret->info_len);
}

static void check_ranges_sane(const ParsedReport *p, uint64_t reporting_offset, bool msix_locked) {
        /* TEE-IO validator 4.5.2 and 4.5.3: no reserved bits. */
        ASSERT_EQ(p->interface_info & 0xffe0, 0);

        for (uint32_t i = 0; i < p->n_ranges; i++) {
                const TdispMmioRange *r = p->ranges + i;
                bool msix = r->range_attributes & (TDISP_MMIO_RANGE_MSIX_TABLE | TDISP_MMIO_RANGE_MSIX_PBA);
                uint64_t base = r->first_page * TDISP_PAGE_SIZE - reporting_offset;

                ASSERT_EQ(r->range_attributes & 0xfff0, 0);
                /* Updatable attributes would need SET_MMIO_ATTRIBUTE, which is unsupported. */
                ASSERT_EQ(r->range_attributes & TDISP_MMIO_RANGE_IS_MEM_ATTR_UPDATABLE, 0);
                /* A page number (the kernel shifts it by PAGE_SHIFT): the emulated BARs lie
                 * above the 32-bit MMIO window, within 1 TiB of it (emu-device.c). A byte
                 * address read as a page number lands 4096 times higher. */
                ASSERT_TRUE(base >= (UINT64_C(1) << 32) && base < (UINT64_C(1) << 32) + (UINT64_C(1) << 41));
                ASSERT_GE(r->number_of_pages, 1);
                /* RANGE_ID names the BAR (BEI 0, 2 or 4: three 64-bit BARs), each BAR's ranges
                 * together in address order, the MSI-X table and PBA in BAR 4. */
                ASSERT_TRUE(r->range_id == 0 || r->range_id == 2 || r->range_id == 4);
                ASSERT_EQ(r->range_id == 4, msix);
                if (i > 0)
                        ASSERT_GE(r->range_id, p->ranges[i - 1].range_id);
                ASSERT_TRUE(base + (uint64_t) r->number_of_pages * TDISP_PAGE_SIZE <=
                            (UINT64_C(1) << EMU_DEV_ADDR_WIDTH));
                if (i > 0) /* ascending, not overlapping */
                        ASSERT_TRUE(r->first_page >= p->ranges[i - 1].first_page + p->ranges[i - 1].number_of_pages);
                if (msix)
                        ASSERT_EQ(!!(r->range_attributes & TDISP_MMIO_RANGE_IS_NON_TEE_MEM), !msix_locked);
                else
                        ASSERT_EQ(r->range_attributes & TDISP_MMIO_RANGE_IS_NON_TEE_MEM, 0);
        }
}

TEST(report_content) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1 ":ranges=5:vendor=8086:device=0b25");
        uint8_t nonce[TDISP_NONCE_SIZE], report[2048], report2[2048], resp[EMU_RESPONSE_MAX];
        ParsedReport p, p2;
        size_t len, len2;

        do_lock(d, nonce);
        len = read_report(d, 0xffff, report, sizeof(report));
        ASSERT_EQ(len, 16 + 5 * 16 + 4 + 32);
        parse_report(report, len, &p);

        ASSERT_EQ(p.interface_info,
                  TDISP_INTERFACE_INFO_DMA_WITHOUT_PASID | TDISP_INTERFACE_INFO_NO_UPDATE_AFTER_LOCK);
        ASSERT_EQ(p.msi_x_message_control, 0); /* MSI-X not locked */
        ASSERT_EQ(p.n_ranges, 5);
        ASSERT_EQ(p.ranges[3].range_attributes,
                  TDISP_MMIO_RANGE_MSIX_TABLE | TDISP_MMIO_RANGE_IS_NON_TEE_MEM);
        ASSERT_EQ(p.ranges[4].range_attributes,
                  TDISP_MMIO_RANGE_MSIX_PBA | TDISP_MMIO_RANGE_IS_NON_TEE_MEM);
        check_ranges_sane(&p, 0, false);
        ASSERT_EQ(p.info_len, 32);
        ASSERT_MEMEQ(p.info, "tsmd-emu\x86\x80\x25\x0b\x00\x01\x00\x00", 16);

        /* The report is the same in RUN. */
        do_start(d, nonce);
        len2 = read_report(d, 0xffff, report2, sizeof(report2));
        ASSERT_EQ(len2, len);
        ASSERT_MEMEQ(report, report2, len);

        /* Locked with MSI-X locked, no firmware-update promise and a reporting offset: the
         * MSI-X pages become TEE memory, Message Control shows the table, and every range
         * moves by exactly the offset. */
        send_msg(d, TDISP_MSG_STOP_INTERFACE_REQ, NULL, 0, resp);
        do_lock_params(d,
                       &(TdispLockInterfaceParams) {
                               .flags = htole16(TDISP_LOCK_FLAG_LOCK_MSIX),
                               .mmio_reporting_offset = htole64(UINT64_C(0x10000000)),
                       },
                       nonce);
        len2 = read_report(d, 0xffff, report2, sizeof(report2));
        parse_report(report2, len2, &p2);
        ASSERT_EQ(p2.interface_info, TDISP_INTERFACE_INFO_DMA_WITHOUT_PASID);
        ASSERT_NE(p2.msi_x_message_control, 0);
        ASSERT_LE(p2.msi_x_message_control, 63);
        check_ranges_sane(&p2, 0x10000000, true);
        for (uint32_t i = 0; i < p.n_ranges; i++) {
                ASSERT_EQ(p2.ranges[i].first_page, p.ranges[i].first_page + 0x10000000 / TDISP_PAGE_SIZE);
                ASSERT_EQ(p2.ranges[i].number_of_pages, p.ranges[i].number_of_pages);
        }

        /* The offset is two's complement: -4 GiB moves every range down by as much. */
        send_msg(d, TDISP_MSG_STOP_INTERFACE_REQ, NULL, 0, resp);
        do_lock_params(d, &(TdispLockInterfaceParams) { .mmio_reporting_offset = htole64(-(UINT64_C(1) << 32)) },
                       nonce);
        len2 = read_report(d, 0xffff, report2, sizeof(report2));
        parse_report(report2, len2, &p2);
        for (uint32_t i = 0; i < p.n_ranges; i++)
                ASSERT_EQ(p2.ranges[i].first_page, p.ranges[i].first_page - (UINT64_C(1) << 32) / TDISP_PAGE_SIZE);
}

TEST(report_ranges_count) {
        for (unsigned n = 0; n <= EMU_MMIO_RANGES_MAX; n++) {
                _cleanup_(emu_device_unrefp) EmuDevice *d = NULL;
                uint8_t nonce[TDISP_NONCE_SIZE], report[2048];
                char entry[64];
                ParsedReport p;
                size_t len;

                snprintf(entry, sizeof(entry), "0000:05:1f.7:ranges=%u", n);
                d = device_new(entry);
                do_lock(d, nonce);
                len = read_report(d, 0xffff, report, sizeof(report));
                parse_report(report, len, &p);
                ASSERT_EQ(p.n_ranges, n);
                check_ranges_sane(&p, 0, false);
        }
}

/* A negative MMIO_REPORTING_OFFSET may move the lowest range down to page 0, not a page further. */
TEST(lock_reporting_offset_down_to_zero) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
        uint8_t resp[EMU_RESPONSE_MAX], nonce[TDISP_NONCE_SIZE], report[2048];
        TdispLockInterfaceParams p = {};
        ParsedReport pr;
        uint64_t lowest;
        size_t len;

        do_lock(d, nonce);
        parse_report(report, read_report(d, 0xffff, report, sizeof(report)), &pr);
        ASSERT_GE(pr.n_ranges, 1);
        lowest = pr.ranges[0].first_page * TDISP_PAGE_SIZE; /* ascending */
        send_msg(d, TDISP_MSG_STOP_INTERFACE_REQ, NULL, 0, resp);

        p.mmio_reporting_offset = htole64(-(lowest + TDISP_PAGE_SIZE));
        len = send_msg(d, TDISP_MSG_LOCK_INTERFACE_REQ, &p, sizeof(p), resp);
        ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INVALID_REQUEST);

        p.mmio_reporting_offset = htole64(-lowest);
        do_lock_params(d, &p, nonce);
        parse_report(report, read_report(d, 0xffff, report, sizeof(report)), &pr);
        ASSERT_EQ(pr.ranges[0].first_page, 0u);
}

TEST(report_portions) {
        static const uint16_t chunks[] = { 1, 3, 7, 16, 64, 100, 0xffff };
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1 ":ranges=32");
        uint8_t nonce[TDISP_NONCE_SIZE], whole[2048], parts[2048], resp[EMU_RESPONSE_MAX];
        size_t whole_len, len;

        do_lock(d, nonce);
        whole_len = read_report(d, 0xffff, whole, sizeof(whole));
        ASSERT_EQ(whole_len, 16 + 32 * 16 + 4 + 32);

        for (size_t i = 0; i < ELEMENTSOF(chunks); i++) {
                memset(parts, 0, sizeof(parts));
                ASSERT_EQ(read_report(d, chunks[i], parts, sizeof(parts)), whole_len);
                ASSERT_MEMEQ(parts, whole, whole_len);
        }

        /* LENGTH 0, OFFSET at or past the end (TEE-IO validator 4.3: 0xffff) are refused. */
        {
                static const uint16_t bad[][2] = { { 0, 0 }, { 0xffff, 1 }, { 0xffff, 0xffff } };

                for (size_t i = 0; i < ELEMENTSOF(bad) + 1; i++) {
                        uint16_t q[2];

                        if (i < ELEMENTSOF(bad)) {
                                q[0] = htole16(bad[i][0]);
                                q[1] = htole16(bad[i][1]);
                        } else {
                                q[0] = htole16((uint16_t) whole_len);
                                q[1] = htole16(1);
                        }
                        len = send_msg(d, TDISP_MSG_GET_DEVICE_INTERFACE_REPORT, q, sizeof(q), resp);
                        ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INVALID_REQUEST);
                        ASSERT_EQ(wire_state(d), TDISP_STATE_CONFIG_LOCKED);
                }
        }

        /* A huge LENGTH from the last byte returns one byte and no remainder. */
        {
                uint16_t q[2] = { htole16((uint16_t) (whole_len - 1)), htole16(0xffff) };

                len = send_msg(d, TDISP_MSG_GET_DEVICE_INTERFACE_REPORT, q, sizeof(q), resp);
                ASSERT_EQ(len, 21);
                ASSERT_EQ(resp[16], 1);
                ASSERT_EQ(resp[17], 0);
                ASSERT_EQ(resp[18], 0);
                ASSERT_EQ(resp[19], 0);
                ASSERT_EQ(resp[20], whole[whole_len - 1]);
        }
}

TEST(distinct_and_deterministic) {
        _cleanup_(emu_platform_freep) EmuPlatform *a = NULL, *b = NULL;
        uint8_t ra[2048], rb[2048], rc[2048], na[TDISP_NONCE_SIZE], nb[TDISP_NONCE_SIZE],
                nc[TDISP_NONCE_SIZE];
        size_t la, lb, lc;
        ParsedReport pa, pc;
        EmuDevice *da, *db, *dc;

        ASSERT_OK(emu_platform_new(&a));
        ASSERT_OK(emu_platform_new(&b));

        /* The same device on two platforms: the same nonce and the same report. */
        da = emu_platform_find_device(a, "0000:01:00.0");
        db = emu_platform_find_device(b, "0000:01:00.0");
        dc = emu_platform_find_device(a, "0000:02:00.0");
        ASSERT_NOT_NULL(da);
        ASSERT_NOT_NULL(db);
        ASSERT_NOT_NULL(dc);

        do_lock(da, na);
        do_lock(db, nb);
        do_lock(dc, nc);
        ASSERT_MEMEQ(na, nb, sizeof(na));
        ASSERT_FALSE(memcmp(na, nc, sizeof(na)) == 0);

        la = read_report(da, 0xffff, ra, sizeof(ra));
        lb = read_report(db, 0xffff, rb, sizeof(rb));
        lc = read_report(dc, 0xffff, rc, sizeof(rc));
        ASSERT_EQ(la, lb);
        ASSERT_MEMEQ(ra, rb, la);

        /* Another device: other addresses and other device-specific bytes. */
        ASSERT_EQ(la, lc);
        ASSERT_FALSE(memcmp(ra, rc, la) == 0);
        parse_report(ra, la, &pa);
        parse_report(rc, lc, &pc);
        for (uint32_t i = 0; i < pa.n_ranges; i++)
                ASSERT_NE(pa.ranges[i].first_page, pc.ranges[i].first_page);
        ASSERT_FALSE(memcmp(pa.info + 16, pc.info + 16, 16) == 0);

        /* The second nonce of a device differs from its first, identically on both. */
        {
                uint8_t na2[TDISP_NONCE_SIZE], nb2[TDISP_NONCE_SIZE], resp[EMU_RESPONSE_MAX];

                send_msg(da, TDISP_MSG_STOP_INTERFACE_REQ, NULL, 0, resp);
                send_msg(db, TDISP_MSG_STOP_INTERFACE_REQ, NULL, 0, resp);

                do_lock(da, na2);
                do_lock(db, nb2);
                ASSERT_MEMEQ(na2, nb2, sizeof(na2));
                ASSERT_FALSE(memcmp(na, na2, sizeof(na)) == 0);
        }
}

/* A request of every fixed type, valid for a CONFIG_LOCKED device, with its body size. */
/* A salt keeps the nonces of two instances of one device apart (a restart of whatever made the
 * first: both counters start at 0), and the same salt gives the same nonces. */
TEST(nonce_salt) {
        _cleanup_(emu_device_unrefp) EmuDevice *a = device_new(ADDR1), *b = device_new(ADDR1),
                                               *c = device_new(ADDR1), *unsalted = device_new(ADDR1);
        uint8_t na[TDISP_NONCE_SIZE], nb[TDISP_NONCE_SIZE], nc[TDISP_NONCE_SIZE], nu[TDISP_NONCE_SIZE],
                again[TDISP_NONCE_SIZE];

        emu_device_set_nonce_salt(a, 1);
        emu_device_set_nonce_salt(b, 1);
        emu_device_set_nonce_salt(c, 2);
        ASSERT_OK(emu_device_bind(a, na));
        ASSERT_OK(emu_device_bind(b, nb));
        ASSERT_OK(emu_device_bind(c, nc));
        ASSERT_OK(emu_device_bind(unsalted, nu));
        ASSERT_MEMEQ(na, nb, sizeof(na));
        ASSERT_FALSE(memcmp(na, nc, sizeof(na)) == 0);
        ASSERT_FALSE(memcmp(na, nu, sizeof(na)) == 0);
        ASSERT_FALSE(memcmp(nc, nu, sizeof(nc)) == 0);

        /* Salted while locked: the nonce issued still starts the TDI, the next one is salted. */
        emu_device_set_nonce_salt(unsalted, 1);
        do_start(unsalted, nu);
        ASSERT_EQ(emu_device_get_state(unsalted), TDISP_STATE_RUN);
        ASSERT_OK(emu_device_unbind(unsalted));
        ASSERT_OK(emu_device_unbind(a));
        ASSERT_OK(emu_device_bind(unsalted, nu));
        ASSERT_OK(emu_device_bind(a, again));
        ASSERT_MEMEQ(nu, again, sizeof(nu)); /* the same salt, config and count */
        ASSERT_FALSE(memcmp(na, again, sizeof(na)) == 0);
}

static size_t valid_body(uint8_t type, const uint8_t nonce[static TDISP_NONCE_SIZE], uint8_t *body) {
        size_t n;

        ASSERT_OK(tdisp_request_body_size(type, &n));
        memset(body, 0, n);
        if (type == TDISP_MSG_START_INTERFACE_REQ)
                memcpy(body, nonce, TDISP_NONCE_SIZE);
        if (type == TDISP_MSG_GET_DEVICE_INTERFACE_REPORT)
                body[2] = 0x10;
        return n;
}

TEST(malformed_lengths) {
        static const uint8_t types[] = {
                TDISP_MSG_GET_VERSION, TDISP_MSG_GET_CAPABILITIES, TDISP_MSG_LOCK_INTERFACE_REQ,
                TDISP_MSG_GET_DEVICE_INTERFACE_REPORT, TDISP_MSG_GET_DEVICE_INTERFACE_STATE,
                TDISP_MSG_START_INTERFACE_REQ, TDISP_MSG_STOP_INTERFACE_REQ,
        };
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
        uint8_t nonce[TDISP_NONCE_SIZE];

        drive_to(d, TDISP_STATE_CONFIG_LOCKED, nonce);

        for (size_t t = 0; t < ELEMENTSOF(types); t++) {
                uint8_t body[64], msg[128], resp[EMU_RESPONSE_MAX];
                size_t body_len = valid_body(types[t], nonce, body), full, len;

                ASSERT_OK(tdisp_build_request(types[t], FID1, body, body_len, msg, sizeof(msg), &full));
                msg[full] = 0; /* one byte too many, below */

                for (size_t n = 0; n <= full + 1; n++) {
                        /* Exact copies on the heap, so ASan/valgrind see any overread. */
                        _cleanup_free_ uint8_t *copy = NULL;
                        int r;

                        if (n == full)
                                continue;
                        copy = malloc(n ?: 1);
                        ASSERT_NOT_NULL(copy);
                        memcpy(copy, msg, n);

                        /* Too short to have a type: no guest scope carries it. */
                        r = request_sized(d, scope_of(types[t]), copy, n, resp, sizeof(resp), &len);
                        if (n < 2 && scope_of(types[t]) != SCOPE_HOST) {
                                ASSERT_ERRNO(r, EPERM);
                                continue;
                        }
                        ASSERT_OK(r);
                        ASSERT_EQ(error_code_of(resp, len, n >= sizeof(TdispHeader) ? FID1 : 0),
                                  TDISP_ERROR_INVALID_REQUEST);
                        ASSERT_EQ(emu_device_get_state(d), TDISP_STATE_CONFIG_LOCKED);
                }
        }

        /* The nonce survived all that: nothing was half-processed. */
        do_start(d, nonce);
}

TEST(malformed_header) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
        uint8_t msg[64], resp[EMU_RESPONSE_MAX];
        size_t msg_len, len;
        uint32_t code, data;

        /* Wrong version, whatever the message. The ERROR carries the request's version, as
         * spdm-emu's and QEMU's responders answer, and so does one to a message too short to
         * have a header. */
        static const uint8_t versions[] = { 0x00, 0x01, 0x11, 0x20, 0xff };
        for (size_t i = 0; i < ELEMENTSOF(versions); i++) {
                msg_len = build(TDISP_MSG_GET_VERSION, FID1, NULL, 0, msg, sizeof(msg));
                msg[0] = versions[i];
                ASSERT_OK(request(d, EMU_SCOPE_INFO, msg, msg_len, resp, &len));
                ASSERT_EQ(len, sizeof(TdispErrorResponse));
                ASSERT_EQ(resp[0], versions[i]);
                ASSERT_EQ(resp[1], TDISP_MSG_ERROR);
                ASSERT_OK(tdisp_error_decode(resp, len, &code, &data));
                ASSERT_EQ(code, TDISP_ERROR_VERSION_MISMATCH);

                ASSERT_OK(request(d, EMU_SCOPE_INFO, msg, sizeof(TdispHeader) - 1, resp, &len));
                ASSERT_EQ(len, sizeof(TdispErrorResponse));
                ASSERT_EQ(resp[0], versions[i]);
                ASSERT_EQ(resp[1], TDISP_MSG_ERROR);
                ASSERT_OK(tdisp_error_decode(resp, len, &code, &data));
                ASSERT_EQ(code, TDISP_ERROR_INVALID_REQUEST);
        }

        /* Types the device does not implement, including response codes: no guest scope
         * carries them (a TSM cannot tell what they would do), nor a message too short to have a
         * type; on the TSM's own channel, UNSUPPORTED_REQUEST with the code as error data. */
        static const uint8_t types[] = { 0x00, 0x01, 0x7f, 0x80, 0x88, 0x89, 0x8a, 0x8c, 0x8d, 0xff };
        for (size_t i = 0; i < ELEMENTSOF(types); i++) {
                msg_len = build(types[i], FID1, NULL, 0, msg, sizeof(msg));
                for (EmuScope s = 0; s < _EMU_SCOPE_MAX; s++) {
                        len = 0;
                        ASSERT_ERRNO(request(d, s, msg, msg_len, resp, &len), EPERM);
                        ASSERT_EQ(len, 0);
                }
                ASSERT_OK(request(d, SCOPE_HOST, msg, msg_len, resp, &len));
                ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_UNSUPPORTED_REQUEST);
                ASSERT_OK(tdisp_error_decode(resp, len, &code, &data));
                ASSERT_EQ(data, types[i]);
        }
        for (size_t n = 0; n < 2; n++)
                for (EmuScope s = 0; s < _EMU_SCOPE_MAX; s++)
                        ASSERT_ERRNO(request(d, s, "\x10\x81", n, resp, &len), EPERM);

        /* Another function, or the interface id's reserved bytes set: not this TDI. The
         * ERROR names the interface that was asked for. */
        msg_len = build(TDISP_MSG_GET_VERSION, 0x0200, NULL, 0, msg, sizeof(msg));
        ASSERT_OK(request(d, EMU_SCOPE_INFO, msg, msg_len, resp, &len));
        ASSERT_EQ(error_code_of(resp, len, 0x0200), TDISP_ERROR_INVALID_INTERFACE);

        for (size_t b = offsetof(TdispHeader, interface_id.reserved); b < sizeof(TdispHeader); b++) {
                msg_len = build(TDISP_MSG_GET_VERSION, FID1, NULL, 0, msg, sizeof(msg));
                msg[b] = 0x80;
                ASSERT_OK(request(d, EMU_SCOPE_INFO, msg, msg_len, resp, &len));
                ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INVALID_INTERFACE);
        }

        /* Reserved header bytes. */
        for (size_t b = 2; b < 4; b++) {
                msg_len = build(TDISP_MSG_STOP_INTERFACE_REQ, FID1, NULL, 0, msg, sizeof(msg));
                msg[b] = 1;
                ASSERT_OK(request(d, SCOPE_HOST, msg, msg_len, resp, &len));
                ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INVALID_REQUEST);
        }

        ASSERT_EQ(wire_state(d), TDISP_STATE_CONFIG_UNLOCKED);
}

TEST(scope_enforcement) {
        static const uint8_t types[] = {
                TDISP_MSG_GET_VERSION, TDISP_MSG_GET_CAPABILITIES, TDISP_MSG_LOCK_INTERFACE_REQ,
                TDISP_MSG_GET_DEVICE_INTERFACE_REPORT, TDISP_MSG_GET_DEVICE_INTERFACE_STATE,
                TDISP_MSG_START_INTERFACE_REQ, TDISP_MSG_STOP_INTERFACE_REQ,
        };

        for (size_t t = 0; t < ELEMENTSOF(types); t++)
                for (EmuScope s = 0; s < _EMU_SCOPE_MAX; s++) {
                        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
                        uint8_t nonce[TDISP_NONCE_SIZE], body[64], msg[128], resp[EMU_RESPONSE_MAX];
                        /* A state in which the request would succeed. */
                        TdispState state = types[t] == TDISP_MSG_LOCK_INTERFACE_REQ ?
                                                   TDISP_STATE_CONFIG_UNLOCKED :
                                                   TDISP_STATE_CONFIG_LOCKED;
                        size_t body_len, msg_len, len = 0;
                        int r;

                        drive_to(d, state, nonce);
                        body_len = valid_body(types[t], nonce, body);
                        msg_len = build(types[t], FID1, body, body_len, msg, sizeof(msg));

                        /* LOCK and STOP are the TSM's own: refused in every guest scope. */
                        r = request(d, s, msg, msg_len, resp, &len);
                        if (s == scope_of(types[t])) {
                                ASSERT_OK(r);
                                ASSERT_NE(resp[1], TDISP_MSG_ERROR);
                        } else {
                                ASSERT_ERRNO(r, EPERM);
                                ASSERT_EQ(len, 0); /* not written on failure */
                                ASSERT_EQ(emu_device_get_state(d), state);
                        }
                }

        /* Debug: reads need DEBUG_READ, writes DEBUG_WRITE, nothing else will do. */
        {
                _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
                uint8_t rd[64], wr[64], resp[EMU_RESPONSE_MAX];
                size_t rd_len, wr_len, len;

                ASSERT_OK(emu_debug_build_request(FID1, EMU_VENDOR_ID_DEFAULT, EMU_DEBUG_OP_READ, 8, 0,
                                                  rd, sizeof(rd), &rd_len));
                ASSERT_OK(emu_debug_build_request(FID1, EMU_VENDOR_ID_DEFAULT, EMU_DEBUG_OP_WRITE, 8, 42,
                                                  wr, sizeof(wr), &wr_len));
                for (EmuScope s = 0; s < _EMU_SCOPE_MAX; s++) {
                        int r;

                        r = request(d, s, rd, rd_len, resp, &len);
                        if (s == EMU_SCOPE_DEBUG_READ)
                                ASSERT_OK(r);
                        else
                                ASSERT_ERRNO(r, EPERM);

                        r = request(d, s, wr, wr_len, resp, &len);
                        if (s == EMU_SCOPE_DEBUG_WRITE)
                                ASSERT_OK(r);
                        else
                                ASSERT_ERRNO(r, EPERM);
                }

                /* The same for device memory. */
                ASSERT_OK(emu_debug_build_mem_request(FID1, EMU_VENDOR_ID_DEFAULT, EMU_DEBUG_OP_MEM_READ, 0, 8,
                                                      NULL, rd, sizeof(rd), &rd_len));
                ASSERT_OK(emu_debug_build_mem_request(FID1, EMU_VENDOR_ID_DEFAULT, EMU_DEBUG_OP_MEM_WRITE, 0, 8,
                                                      "12345678", wr, sizeof(wr), &wr_len));
                for (EmuScope s = 0; s < _EMU_SCOPE_MAX; s++) {
                        int r;

                        r = request(d, s, rd, rd_len, resp, &len);
                        if (s == EMU_SCOPE_DEBUG_READ)
                                ASSERT_OK(r);
                        else
                                ASSERT_ERRNO(r, EPERM);

                        r = request(d, s, wr, wr_len, resp, &len);
                        if (s == EMU_SCOPE_DEBUG_WRITE)
                                ASSERT_OK(r);
                        else
                                ASSERT_ERRNO(r, EPERM);
                }
        }

        /* A VDM is the debug scopes' only, malformed or of an unknown op too. */
        {
                uint8_t msg[64];
                size_t msg_len;

                ASSERT_OK(emu_debug_build_request(FID1, EMU_VENDOR_ID_DEFAULT, 0x7f, 8, 0, msg, sizeof(msg),
                                                  &msg_len));
                for (EmuScope s = 0; s < _EMU_SCOPE_MAX; s++) {
                        bool debug = s == EMU_SCOPE_DEBUG_READ || s == EMU_SCOPE_DEBUG_WRITE;

                        ASSERT_EQ(emu_scope_carries(s, msg, msg_len), debug);
                        ASSERT_EQ(emu_scope_carries(s, msg, sizeof(TdispHeader)), debug);
                }
        }

        /* Bad arguments are programming errors. */
        {
                _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
                uint8_t resp[EMU_RESPONSE_MAX];
                size_t len;

                ASSERT_ERRNO(request(d, _EMU_SCOPE_MAX, "", 0, resp, &len), EINVAL);
                ASSERT_ERRNO(request(d, (EmuScope) -1, "", 0, resp, &len), EINVAL);
                ASSERT_ERRNO(request(NULL, EMU_SCOPE_INFO, "", 0, resp, &len), EINVAL);
                ASSERT_ERRNO(request(d, EMU_SCOPE_INFO, NULL, 5, resp, &len), EINVAL);
                ASSERT_ERRNO(emu_device_request(d, EMU_SCOPE_INFO, "", 0, resp, sizeof(resp), NULL), EINVAL);
        }
}

static int try_get_version(EmuDevice *d, uint8_t resp[static EMU_RESPONSE_MAX], size_t *ret_len) {
        uint8_t msg[16];
        size_t msg_len;

        msg_len = build(TDISP_MSG_GET_VERSION, emu_device_get_function_id(d), NULL, 0, msg, sizeof(msg));
        return request(d, EMU_SCOPE_INFO, msg, msg_len, resp, ret_len);
}

/* The START nonce is destroyed when the TDI leaves CONFIG_LOCKED for CONFIG_UNLOCKED (a STOP, a
 * reset) or ERROR: what a device saves then carries none, and loads again. */
TEST(nonce_destroyed_leaving_config_locked) {
        static const uint8_t zero[TDISP_NONCE_SIZE] = {};

        for (unsigned how = 0; how < 3; how++) {
                _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
                uint8_t resp[EMU_RESPONSE_MAX], nonce[TDISP_NONCE_SIZE];
                EmuDeviceSaved saved;
                size_t len;

                do_lock(d, nonce);
                if (how == 0)
                        send_msg(d, TDISP_MSG_STOP_INTERFACE_REQ, NULL, 0, resp);
                else if (how == 1)
                        ASSERT_EQ(emu_device_trigger_tdi_error(d), 1);
                else {
                        ASSERT_OK(emu_device_inject_fault(d, EMU_FAULT_GONE, 1));
                        ASSERT_ERRNO(try_get_version(d, resp, &len), ENODEV);
                }
                ASSERT_EQ(emu_device_get_state(d), how == 1 ? TDISP_STATE_ERROR : TDISP_STATE_CONFIG_UNLOCKED);
                emu_device_save(d, &saved);
                ASSERT_MEMEQ(saved.nonce, zero, sizeof(zero));
                ASSERT_OK(emu_device_load(d, &saved));
        }
}

TEST(fault_busy_timeout) {
        static const struct {
                EmuFault fault;
                int error;
        } faults[] = {
                { EMU_FAULT_BUSY, EBUSY },
                { EMU_FAULT_TIMEOUT, ETIMEDOUT },
        };

        for (size_t f = 0; f < ELEMENTSOF(faults); f++) {
                _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
                uint8_t resp[EMU_RESPONSE_MAX], msg[64], nonce[TDISP_NONCE_SIZE];
                size_t len, msg_len;

                /* Once. A failed LOCK changes nothing. */
                ASSERT_OK(emu_device_inject_fault(d, faults[f].fault, 1));
                msg_len = build(TDISP_MSG_LOCK_INTERFACE_REQ, FID1, &LOCK_DEFAULT,
                                              sizeof(LOCK_DEFAULT), msg, sizeof(msg));
                ASSERT_ERRNO(request(d, SCOPE_HOST, msg, msg_len, resp, &len),
                             faults[f].error);
                ASSERT_EQ(emu_device_get_state(d), TDISP_STATE_CONFIG_UNLOCKED);
                ASSERT_OK(try_get_version(d, resp, &len));

                /* N times. */
                ASSERT_OK(emu_device_inject_fault(d, faults[f].fault, 3));
                for (unsigned i = 0; i < 3; i++)
                        ASSERT_ERRNO(try_get_version(d, resp, &len), faults[f].error);
                ASSERT_OK(try_get_version(d, resp, &len));

                /* Forever, until cleared; host operations fail the same way. */
                ASSERT_OK(emu_device_inject_fault(d, faults[f].fault, 0));
                for (unsigned i = 0; i < 100; i++)
                        ASSERT_ERRNO(try_get_version(d, resp, &len), faults[f].error);
                ASSERT_ERRNO(emu_device_bind(d, nonce), faults[f].error);
                ASSERT_ERRNO(emu_device_unbind(d), faults[f].error);
                ASSERT_EQ(emu_device_get_state(d), TDISP_STATE_CONFIG_UNLOCKED);
                emu_device_clear_fault(d);
                ASSERT_OK(try_get_version(d, resp, &len));
                ASSERT_OK(emu_device_bind(d, nonce));
                do_start(d, nonce);
        }
}

TEST(fault_scope_first) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
        uint8_t resp[EMU_RESPONSE_MAX], msg[64];
        size_t len, msg_len;

        /* A request the scope refuses never reaches the device, so it uses up no fault. */
        ASSERT_OK(emu_device_inject_fault(d, EMU_FAULT_BUSY, 1));
        msg_len = build(TDISP_MSG_STOP_INTERFACE_REQ, FID1, NULL, 0, msg, sizeof(msg));
        ASSERT_ERRNO(request(d, EMU_SCOPE_INFO, msg, msg_len, resp, &len), EPERM);
        ASSERT_ERRNO(try_get_version(d, resp, &len), EBUSY);
        ASSERT_OK(try_get_version(d, resp, &len));
}

TEST(fault_gone) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
        uint8_t resp[EMU_RESPONSE_MAX], nonce[TDISP_NONCE_SIZE];
        size_t len;

        /* The device drops off the bus once: it comes back reset, CONFIG_UNLOCKED. */
        drive_to(d, TDISP_STATE_RUN, nonce);
        ASSERT_OK(emu_device_inject_fault(d, EMU_FAULT_GONE, 1));
        ASSERT_ERRNO(try_get_version(d, resp, &len), ENODEV);
        ASSERT_EQ(wire_state(d), TDISP_STATE_CONFIG_UNLOCKED);

        /* Gone for good until restored. */
        drive_to(d, TDISP_STATE_CONFIG_LOCKED, nonce);
        ASSERT_OK(emu_device_inject_fault(d, EMU_FAULT_GONE, 0));
        for (unsigned i = 0; i < 10; i++)
                ASSERT_ERRNO(try_get_version(d, resp, &len), ENODEV);
        ASSERT_ERRNO(emu_device_bind(d, NULL), ENODEV);
        emu_device_clear_fault(d);
        ASSERT_EQ(wire_state(d), TDISP_STATE_CONFIG_UNLOCKED);
        /* The nonce issued before the device vanished is dead. */
        do_lock(d, resp);
        ASSERT_FALSE(memcmp(resp, nonce, sizeof(nonce)) == 0);
}

TEST(fault_tdisp_error) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
        uint8_t resp[EMU_RESPONSE_MAX], msg[64];
        size_t len, msg_len;

        ASSERT_OK(emu_device_inject_tdisp_error(d, TDISP_ERROR_BUSY, 2));
        for (unsigned i = 0; i < 2; i++) {
                ASSERT_OK(try_get_version(d, resp, &len));
                ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_BUSY);
        }
        ASSERT_OK(try_get_version(d, resp, &len));
        assert_message(resp, len, TDISP_MSG_VERSION, 18, FID1);

        /* An injected ERROR that does not fit is not used up. */
        ASSERT_OK(emu_device_inject_tdisp_error(d, TDISP_ERROR_INSUFFICIENT_ENTROPY, 1));
        msg_len = build(TDISP_MSG_GET_VERSION, FID1, NULL, 0, msg, sizeof(msg));
        ASSERT_ERRNO(emu_device_request(d, EMU_SCOPE_INFO, msg, msg_len, resp,
                                        sizeof(TdispErrorResponse) - 1, &len),
                     ENOBUFS);
        ASSERT_OK(try_get_version(d, resp, &len));
        ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INSUFFICIENT_ENTROPY);

        /* The plain TDISP_ERROR fault says UNSPECIFIED; it also answers garbage (no guest's:
         * a message too short to have a type reaches the device from the TSM only). */
        ASSERT_OK(emu_device_inject_fault(d, EMU_FAULT_TDISP_ERROR, 1));
        ASSERT_ERRNO(request(d, EMU_SCOPE_INFO, "\x10", 1, resp, &len), EPERM);
        ASSERT_OK(request(d, SCOPE_HOST, "\x10", 1, resp, &len));
        ASSERT_EQ(error_code_of(resp, len, 0), TDISP_ERROR_UNSPECIFIED);

        /* Host side: a busy device fails bind with -EBUSY, other errors with -EIO. */
        ASSERT_OK(emu_device_inject_tdisp_error(d, TDISP_ERROR_BUSY, 1));
        ASSERT_ERRNO(emu_device_bind(d, NULL), EBUSY);
        ASSERT_OK(emu_device_inject_tdisp_error(d, TDISP_ERROR_INVALID_DEVICE_CONFIGURATION, 1));
        ASSERT_ERRNO(emu_device_bind(d, NULL), EIO);
        ASSERT_EQ(emu_device_get_state(d), TDISP_STATE_CONFIG_UNLOCKED);

        ASSERT_ERRNO(emu_device_inject_tdisp_error(d, 0, 1), EINVAL);
        ASSERT_ERRNO(emu_device_inject_fault(d, _EMU_FAULT_MAX, 1), EINVAL);
}

TEST(removed_device) {
        _cleanup_(emu_platform_freep) EmuPlatform *p = NULL;
        _cleanup_(emu_device_unrefp) EmuDevice *d = NULL;
        uint8_t resp[EMU_RESPONSE_MAX], msg[64];
        size_t len = 0, msg_len;

        ASSERT_OK(emu_platform_new(&p));
        d = emu_device_ref(emu_platform_find_device(p, ADDR1));
        ASSERT_NOT_NULL(d);
        ASSERT_OK(emu_device_bind(d, NULL));

        ASSERT_OK(emu_platform_remove_device(p, ADDR1));
        ASSERT_TRUE(emu_device_is_removed(d));
        for (EmuScope s = 0; s < _EMU_SCOPE_MAX; s++) {
                /* Removed wins over the scope check: the device is not there to ask. */
                msg_len = build(TDISP_MSG_STOP_INTERFACE_REQ, FID1, NULL, 0, msg, sizeof(msg));
                ASSERT_ERRNO(request(d, s, msg, msg_len, resp, &len), ENODEV);
        }
        ASSERT_ERRNO(emu_device_host_request(d, msg, msg_len, resp, sizeof(resp), &len), ENODEV); /* the TSM's too */
        ASSERT_EQ(len, 0);
        ASSERT_ERRNO(emu_device_bind(d, NULL), ENODEV);
        ASSERT_ERRNO(emu_device_unbind(d), ENODEV);
        ASSERT_ERRNO(emu_device_trigger_tdi_error(d), ENODEV);
}

TEST(enobufs) {
        static const uint8_t types[] = {
                TDISP_MSG_GET_VERSION, TDISP_MSG_GET_CAPABILITIES, TDISP_MSG_LOCK_INTERFACE_REQ,
                TDISP_MSG_GET_DEVICE_INTERFACE_REPORT, TDISP_MSG_GET_DEVICE_INTERFACE_STATE,
                TDISP_MSG_START_INTERFACE_REQ, TDISP_MSG_STOP_INTERFACE_REQ,
        };

        for (size_t t = 0; t < ELEMENTSOF(types); t++) {
                _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1), *twin = device_new(ADDR1);
                uint8_t nonce[TDISP_NONCE_SIZE], twin_nonce[TDISP_NONCE_SIZE], body[64], msg[128],
                        resp[EMU_RESPONSE_MAX], expected[EMU_RESPONSE_MAX];
                TdispState before;
                size_t body_len, msg_len, expected_len, len;

                /* LOCK from CONFIG_UNLOCKED, everything else from CONFIG_LOCKED. */
                if (types[t] != TDISP_MSG_LOCK_INTERFACE_REQ) {
                        drive_to(d, TDISP_STATE_CONFIG_LOCKED, nonce);
                        drive_to(twin, TDISP_STATE_CONFIG_LOCKED, twin_nonce);
                } else
                        memset(nonce, 0, sizeof(nonce));
                before = emu_device_get_state(d);

                body_len = valid_body(types[t], nonce, body);
                msg_len = build(types[t], FID1, body, body_len, msg, sizeof(msg));

                /* What the twin answers with enough room... */
                ASSERT_OK(request_sized(twin, scope_of(types[t]), msg, msg_len, expected, sizeof(expected),
                                        &expected_len));
                ASSERT_NE(expected[1], TDISP_MSG_ERROR);

                /* ...does not fit one byte less (nor in nothing), and nothing happened: the
                 * state is the same, and a LOCK did not consume a nonce. */
                for (size_t size = 0; size < expected_len; size++) {
                        len = 0;
                        ASSERT_ERRNO(request_sized(d, scope_of(types[t]), msg, msg_len, resp, size, &len),
                                     ENOBUFS);
                        ASSERT_EQ(len, 0);
                        ASSERT_EQ(emu_device_get_state(d), before);
                }

                ASSERT_OK(request_sized(d, scope_of(types[t]), msg, msg_len, resp, expected_len, &len));
                ASSERT_EQ(len, expected_len);
                ASSERT_MEMEQ(resp, expected, len);
        }
}

TEST(bind_unbind) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
        uint8_t nonce[TDISP_NONCE_SIZE], again[TDISP_NONCE_SIZE], resp[EMU_RESPONSE_MAX];
        size_t len;

        ASSERT_OK(emu_device_bind(d, nonce));
        ASSERT_EQ(wire_state(d), TDISP_STATE_CONFIG_LOCKED);
        memcpy(again, nonce, sizeof(again));
        ASSERT_ERRNO(emu_device_bind(d, again), EALREADY);
        ASSERT_MEMEQ(again, nonce, sizeof(nonce)); /* not written on failure */

        /* The bind locked with NO_FW_UPDATE, and the guest can START with the nonce. */
        {
                uint16_t q[2] = { 0, htole16(2) };

                len = send_msg(d, TDISP_MSG_GET_DEVICE_INTERFACE_REPORT, q, sizeof(q), resp);
                ASSERT_EQ(len, 22);
                ASSERT_TRUE(resp[20] & TDISP_INTERFACE_INFO_NO_UPDATE_AFTER_LOCK);
        }
        do_start(d, nonce);
        ASSERT_ERRNO(emu_device_bind(d, NULL), EALREADY);

        ASSERT_OK(emu_device_unbind(d));
        ASSERT_EQ(wire_state(d), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_OK(emu_device_unbind(d));

        /* Unbind also recovers from ERROR. */
        ASSERT_OK(emu_device_bind(d, NULL));
        ASSERT_EQ(emu_device_trigger_tdi_error(d), 1);
        ASSERT_ERRNO(emu_device_bind(d, NULL), EALREADY);
        ASSERT_OK(emu_device_unbind(d));
        ASSERT_OK(emu_device_bind(d, NULL));
}

static uint64_t debug_op(EmuDevice *d, uint8_t op, uint32_t reg, uint64_t value, uint32_t *ret_error) {
        EmuScope scope = op == EMU_DEBUG_OP_WRITE ? EMU_SCOPE_DEBUG_WRITE : EMU_SCOPE_DEBUG_READ;
        uint8_t msg[64], resp[EMU_RESPONSE_MAX];
        size_t msg_len, len;
        EmuDebugMessage m;

        ASSERT_OK(emu_debug_build_request(FID1, emu_device_get_config(d)->vendor_id, op, reg, value, msg,
                                          sizeof(msg), &msg_len));
        ASSERT_EQ(msg_len, sizeof(EmuDebugMessage));
        ASSERT_OK(request(d, scope, msg, msg_len, resp, &len));

        *ret_error = 0;
        if (resp[1] == TDISP_MSG_ERROR) {
                *ret_error = error_code_of(resp, len, FID1);
                return 0;
        }

        assert_message(resp, len, TDISP_MSG_VDM_RSP, sizeof(EmuDebugMessage), FID1);
        memcpy(&m, resp, sizeof(m));
        ASSERT_EQ(m.vdm.registry_id, TDISP_REGISTRY_ID_PCISIG);
        ASSERT_EQ(m.vdm.vendor_id_len, 2);
        ASSERT_EQ(le16toh(m.vendor_id), emu_device_get_config(d)->vendor_id);
        ASSERT_EQ(m.payload.op, op);
        ASSERT_EQ(le32toh(m.payload.reg), reg);
        return le64toh(m.payload.value);
}

TEST(debug_protocol) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1 ":vendor=8086:device=0b25");
        uint8_t nonce[TDISP_NONCE_SIZE], msg[64] = {}, resp[EMU_RESPONSE_MAX];
        size_t msg_len, len;
        uint32_t err;
        uint64_t v;

        /* vendor | device << 16 | function id << 32 */
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_READ, EMU_DEBUG_REG_ID, 0, &err), UINT64_C(0x000001000b258086));
        ASSERT_EQ(err, 0);

        /* Scratch: written and read back, in any state. */
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_WRITE, 9, 0x1234567890abcdef, &err), 0x1234567890abcdef);
        ASSERT_EQ(err, 0);
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_READ, 9, 0, &err), 0x1234567890abcdef);

        /* Read-only registers (every one), register numbers past the end, a READ with a value. */
        for (uint32_t reg = 0; reg < EMU_DEBUG_REG_CONFIG_FIRST; reg++) {
                debug_op(d, EMU_DEBUG_OP_WRITE, reg, 2, &err);
                ASSERT_EQ(err, TDISP_ERROR_INVALID_REQUEST);
        }
        debug_op(d, EMU_DEBUG_OP_READ, EMU_DEBUG_N_REGS, 0, &err);
        ASSERT_EQ(err, TDISP_ERROR_INVALID_REQUEST);
        debug_op(d, EMU_DEBUG_OP_READ, 9, 1, &err);
        ASSERT_EQ(err, TDISP_ERROR_INVALID_REQUEST);

        /* Another vendor's VDM, another registry, a truncated or padded one. */
        ASSERT_OK(emu_debug_build_request(FID1, 0x1234, EMU_DEBUG_OP_READ, 9, 0, msg, sizeof(msg),
                                          &msg_len));
        ASSERT_OK(request(d, EMU_SCOPE_DEBUG_READ, msg, msg_len, resp, &len));
        ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_UNSUPPORTED_REQUEST);
        ASSERT_OK(emu_debug_build_request(FID1, 0x8086, EMU_DEBUG_OP_READ, 9, 0, msg, sizeof(msg),
                                          &msg_len));
        msg[16] = TDISP_REGISTRY_ID_CXL;
        ASSERT_OK(request(d, EMU_SCOPE_DEBUG_READ, msg, msg_len, resp, &len));
        ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_UNSUPPORTED_REQUEST);
        msg[16] = TDISP_REGISTRY_ID_PCISIG;
        for (size_t n = 16; n < msg_len + 2; n++) {
                if (n == msg_len)
                        continue;
                ASSERT_OK(request(d, EMU_SCOPE_DEBUG_READ, msg, n, resp, &len));
                ASSERT_EQ(error_code_of(resp, len, FID1),
                          n < 20 ? TDISP_ERROR_UNSUPPORTED_REQUEST : TDISP_ERROR_INVALID_REQUEST);
        }

        /* Each reserved byte of the payload must be zero. */
        for (size_t i = 0; i < sizeof(((EmuDebugPayload) {}).reserved); i++) {
                ASSERT_OK(emu_debug_build_request(FID1, 0x8086, EMU_DEBUG_OP_READ, 9, 0, msg, sizeof(msg),
                                                  &msg_len));
                msg[offsetof(EmuDebugMessage, payload) + offsetof(EmuDebugPayload, reserved) + i] = 1;
                ASSERT_OK(request(d, EMU_SCOPE_DEBUG_READ, msg, msg_len, resp, &len));
                ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INVALID_REQUEST);
        }

        /* Configuration registers: free while unlocked, and the state reads back. */
        v = debug_op(d, EMU_DEBUG_OP_READ, EMU_DEBUG_REG_CONFIG_FIRST, 0, &err);
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_WRITE, EMU_DEBUG_REG_CONFIG_FIRST, v + 1, &err), v + 1);
        ASSERT_EQ(wire_state(d), TDISP_STATE_CONFIG_UNLOCKED);

        drive_to(d, TDISP_STATE_RUN, nonce);
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_READ, EMU_DEBUG_REG_TDI_STATE, 0, &err), TDISP_STATE_RUN);
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_READ, EMU_DEBUG_REG_LOCK_COUNT, 0, &err), 1);
        debug_op(d, EMU_DEBUG_OP_WRITE, 10, 1, &err); /* scratch: harmless */
        ASSERT_EQ(wire_state(d), TDISP_STATE_RUN);

        /* ...but changing one while locked is what sends a TDI to ERROR. */
        debug_op(d, EMU_DEBUG_OP_WRITE, EMU_DEBUG_REG_CONFIG_LAST, 7, &err);
        ASSERT_EQ(err, 0);
        ASSERT_EQ(wire_state(d), TDISP_STATE_ERROR);
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_READ, EMU_DEBUG_REG_TDI_STATE, 0, &err), TDISP_STATE_ERROR);
        {
                uint16_t q[2] = { 0, htole16(16) };

                len = send_msg(d, TDISP_MSG_GET_DEVICE_INTERFACE_REPORT, q, sizeof(q), resp);
                ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INVALID_INTERFACE_STATE);
        }

        /* CONFIG_LOCKED is locked too: the configuration was reported, so a change sends the TDI to
         * ERROR before it ever runs. */
        send_msg(d, TDISP_MSG_STOP_INTERFACE_REQ, NULL, 0, resp);
        drive_to(d, TDISP_STATE_CONFIG_LOCKED, nonce);
        debug_op(d, EMU_DEBUG_OP_WRITE, EMU_DEBUG_REG_CONFIG_FIRST, 7, &err);
        ASSERT_EQ(err, 0);
        ASSERT_EQ(wire_state(d), TDISP_STATE_ERROR);
}

/* A MEM_WRITE of data at offset; returns the TDISP error code, 0 if it was done. */
static uint32_t mem_write(EmuDevice *d, uint64_t offset, uint32_t length, const void *data) {
        _cleanup_free_ uint8_t *msg = malloc(sizeof(EmuDebugMessage) + length);
        uint8_t resp[EMU_RESPONSE_MAX];
        EmuDebugMessage m;
        size_t msg_len, len;

        ASSERT_NOT_NULL(msg);
        ASSERT_OK(emu_debug_build_mem_request(emu_device_get_function_id(d), emu_device_get_config(d)->vendor_id,
                                              EMU_DEBUG_OP_MEM_WRITE, offset, length, data, msg,
                                              sizeof(EmuDebugMessage) + length, &msg_len));
        ASSERT_EQ(msg_len, sizeof(EmuDebugMessage) + length);
        ASSERT_OK(request(d, EMU_SCOPE_DEBUG_WRITE, msg, msg_len, resp, &len));
        if (resp[1] == TDISP_MSG_ERROR)
                return error_code_of(resp, len, emu_device_get_function_id(d));

        /* The answer echoes the request without its data. */
        assert_message(resp, len, TDISP_MSG_VDM_RSP, sizeof(EmuDebugMessage), emu_device_get_function_id(d));
        memcpy(&m, resp, sizeof(m));
        ASSERT_EQ(m.payload.op, EMU_DEBUG_OP_MEM_WRITE);
        ASSERT_EQ(le32toh(m.payload.reg), length);
        ASSERT_EQ(le64toh(m.payload.value), offset);
        ASSERT_MEMEQ(resp + sizeof(TdispHeader), msg + sizeof(TdispHeader), sizeof(m) - sizeof(TdispHeader));
        return 0;
}

/* A MEM_READ into buf; returns the TDISP error code, 0 if it was done. */
static uint32_t mem_read(EmuDevice *d, uint64_t offset, uint32_t length, uint8_t *buf) {
        _cleanup_free_ uint8_t *resp = malloc(EMU_RESPONSE_MAX);
        uint8_t msg[sizeof(EmuDebugMessage)];
        EmuDebugMessage m;
        size_t msg_len, len;

        ASSERT_NOT_NULL(resp);
        ASSERT_OK(emu_debug_build_mem_request(emu_device_get_function_id(d), emu_device_get_config(d)->vendor_id,
                                              EMU_DEBUG_OP_MEM_READ, offset, length, NULL, msg, sizeof(msg),
                                              &msg_len));
        ASSERT_EQ(msg_len, sizeof(msg));
        ASSERT_OK(request(d, EMU_SCOPE_DEBUG_READ, msg, msg_len, resp, &len));
        if (resp[1] == TDISP_MSG_ERROR)
                return error_code_of(resp, len, emu_device_get_function_id(d));

        assert_message(resp, len, TDISP_MSG_VDM_RSP, sizeof(EmuDebugMessage) + length,
                       emu_device_get_function_id(d));
        memcpy(&m, resp, sizeof(m));
        ASSERT_EQ(m.payload.op, EMU_DEBUG_OP_MEM_READ);
        ASSERT_EQ(le32toh(m.payload.reg), length);
        ASSERT_EQ(le64toh(m.payload.value), offset);
        memcpy(buf, resp + sizeof(m), length);
        return 0;
}

static void fill_pattern(uint8_t *buf, size_t n, unsigned seed) {
        for (size_t i = 0; i < n; i++)
                buf[i] = (uint8_t) (i * 131 + seed * 7 + (i >> 8));
}

TEST(debug_memory) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1 ":vendor=8086");
        _cleanup_(emu_device_unrefp) EmuDevice *other = device_new("0000:02:00.0:vendor=8086");
        _cleanup_free_ uint8_t *data = malloc(EMU_DEBUG_MEM_SIZE), *got = malloc(EMU_DEBUG_MEM_SIZE),
                               *zero = calloc(1, EMU_DEBUG_MEM_SIZE);
        uint8_t nonce[TDISP_NONCE_SIZE];

        ASSERT_NOT_NULL(data);
        ASSERT_NOT_NULL(got);
        ASSERT_NOT_NULL(zero);
        fill_pattern(data, EMU_DEBUG_MEM_SIZE, 1);

        /* Zeros until written; the largest transfer makes a message of exactly EMU_DEBUG_MSG_MAX. */
        ASSERT_EQ(sizeof(EmuDebugMessage) + EMU_DEBUG_MEM_XFER_MAX, EMU_DEBUG_MSG_MAX);
        ASSERT_EQ(mem_read(d, 0, EMU_DEBUG_MEM_XFER_MAX, got), 0);
        ASSERT_MEMEQ(got, zero, EMU_DEBUG_MEM_XFER_MAX);

        /* Written bytes read back, whole and in pieces, at any alignment. */
        ASSERT_EQ(mem_write(d, 0, EMU_DEBUG_MEM_XFER_MAX, data), 0);
        ASSERT_EQ(mem_write(d, EMU_DEBUG_MEM_XFER_MAX, EMU_DEBUG_MEM_SIZE - EMU_DEBUG_MEM_XFER_MAX,
                            data + EMU_DEBUG_MEM_XFER_MAX), 0);
        ASSERT_EQ(mem_read(d, 0, EMU_DEBUG_MEM_XFER_MAX, got), 0);
        ASSERT_MEMEQ(got, data, EMU_DEBUG_MEM_XFER_MAX);
        ASSERT_EQ(mem_read(d, EMU_DEBUG_MEM_SIZE - 4096, 4096, got), 0);
        ASSERT_MEMEQ(got, data + EMU_DEBUG_MEM_SIZE - 4096, 4096);
        ASSERT_EQ(mem_read(d, 12345, 1, got), 0);
        ASSERT_EQ(got[0], data[12345]);
        ASSERT_EQ(mem_write(d, 7, 3, "abc"), 0);
        ASSERT_EQ(mem_read(d, 6, 5, got), 0);
        ASSERT_MEMEQ(got, ((const uint8_t[]) { data[6], 'a', 'b', 'c', data[10] }), 5);

        /* Another device's memory is its own. */
        ASSERT_EQ(mem_read(other, 0, 4096, got), 0);
        ASSERT_MEMEQ(got, zero, 4096);

        /* Out of the window, empty, or more than one message may carry: refused, nothing written. */
        ASSERT_EQ(mem_read(d, 0, 0, got), TDISP_ERROR_INVALID_REQUEST);
        ASSERT_EQ(mem_write(d, 0, 0, data), TDISP_ERROR_INVALID_REQUEST);
        ASSERT_EQ(mem_read(d, 0, EMU_DEBUG_MEM_XFER_MAX + 1, got), TDISP_ERROR_INVALID_REQUEST);
        ASSERT_EQ(mem_read(d, EMU_DEBUG_MEM_SIZE - 1, 2, got), TDISP_ERROR_INVALID_REQUEST);
        ASSERT_EQ(mem_write(d, EMU_DEBUG_MEM_SIZE - 1, 2, "zz"), TDISP_ERROR_INVALID_REQUEST);
        ASSERT_EQ(mem_read(d, EMU_DEBUG_MEM_SIZE, 1, got), TDISP_ERROR_INVALID_REQUEST);
        ASSERT_EQ(mem_read(d, UINT64_MAX, 2, got), TDISP_ERROR_INVALID_REQUEST);
        ASSERT_EQ(mem_write(d, UINT64_MAX - 1, 2, "zz"), TDISP_ERROR_INVALID_REQUEST);
        ASSERT_EQ(mem_read(d, EMU_DEBUG_MEM_SIZE - 1, 1, got), 0);
        ASSERT_EQ(got[0], data[EMU_DEBUG_MEM_SIZE - 1]);

        /* A MEM_WRITE must carry exactly its length, a MEM_READ nothing; reserved bytes are zero. */
        {
                uint8_t msg[64], resp[EMU_RESPONSE_MAX];
                size_t msg_len, len;

                ASSERT_OK(emu_debug_build_mem_request(FID1, 0x8086, EMU_DEBUG_OP_MEM_WRITE, 0, 4, "wxyz", msg,
                                                      sizeof(msg), &msg_len));
                for (size_t n = sizeof(EmuDebugMessage); n <= msg_len + 1; n++) {
                        if (n == msg_len)
                                continue;
                        ASSERT_OK(request(d, EMU_SCOPE_DEBUG_WRITE, msg, n, resp, &len));
                        ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INVALID_REQUEST);
                }
                ASSERT_OK(emu_debug_build_mem_request(FID1, 0x8086, EMU_DEBUG_OP_MEM_READ, 0, 4, NULL, msg,
                                                      sizeof(msg), &msg_len));
                ASSERT_OK(request(d, EMU_SCOPE_DEBUG_READ, msg, msg_len + 1, resp, &len));
                ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INVALID_REQUEST);
                msg[offsetof(EmuDebugMessage, payload.reserved) + 1] = 1;
                ASSERT_OK(request(d, EMU_SCOPE_DEBUG_READ, msg, msg_len, resp, &len));
                ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INVALID_REQUEST);

                /* Unknown ops are refused in either debug scope. */
                ASSERT_OK(emu_debug_build_mem_request(FID1, 0x8086, EMU_DEBUG_OP_MEM_READ, 0, 4, NULL, msg,
                                                      sizeof(msg), &msg_len));
                msg[offsetof(EmuDebugMessage, payload.op)] = 0x05;
                ASSERT_OK(request(d, EMU_SCOPE_DEBUG_READ, msg, msg_len, resp, &len));
                ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INVALID_REQUEST);
                ASSERT_OK(request(d, EMU_SCOPE_DEBUG_WRITE, msg, msg_len, resp, &len));
                ASSERT_EQ(error_code_of(resp, len, FID1), TDISP_ERROR_INVALID_REQUEST);
        }
        ASSERT_EQ(mem_read(d, 0, 16, got), 0);
        ASSERT_MEMEQ(got, data, 7); /* none of the refused writes landed */

        /* Memory is data, not configuration: writing it while locked keeps the TDI running, and
         * what it holds survives until the TDI is unlocked, which scrubs it. */
        drive_to(d, TDISP_STATE_RUN, nonce);
        ASSERT_EQ(mem_write(d, 100, 4096, data), 0);
        ASSERT_EQ(wire_state(d), TDISP_STATE_RUN);
        ASSERT_EQ(mem_read(d, 100, 4096, got), 0);
        ASSERT_MEMEQ(got, data, 4096);
        ASSERT_OK(emu_device_unbind(d));
        ASSERT_EQ(mem_read(d, 0, EMU_DEBUG_MEM_XFER_MAX, got), 0);
        ASSERT_MEMEQ(got, zero, EMU_DEBUG_MEM_XFER_MAX);

        /* Also from ERROR. A STOP while already unlocked leaves the memory alone. */
        ASSERT_EQ(mem_write(d, 0, 8, "unlocked"), 0);
        ASSERT_OK(emu_device_unbind(d));
        ASSERT_EQ(mem_read(d, 0, 8, got), 0);
        ASSERT_MEMEQ(got, "unlocked", 8);
        drive_to(d, TDISP_STATE_ERROR, nonce);
        ASSERT_EQ(mem_read(d, 0, 8, got), 0);
        ASSERT_MEMEQ(got, "unlocked", 8);
        ASSERT_OK(emu_device_unbind(d));
        ASSERT_EQ(mem_read(d, 0, 8, got), 0);
        ASSERT_MEMEQ(got, zero, 8);

        /* A change of owner leaves nothing of the last one's, even written while unlocked; and
         * from RUN it unlocks as an unbind does. */
        ASSERT_EQ(mem_write(d, 0, 8, "previous"), 0);
        ASSERT_OK(emu_device_release(d));
        ASSERT_EQ(mem_read(d, 0, 8, got), 0);
        ASSERT_MEMEQ(got, zero, 8);
        drive_to(d, TDISP_STATE_RUN, nonce);
        ASSERT_EQ(mem_write(d, 0, 8, "running!"), 0);
        ASSERT_OK(emu_device_release(d));
        ASSERT_EQ(emu_device_get_state(d), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_EQ(mem_read(d, 0, 8, got), 0);
        ASSERT_MEMEQ(got, zero, 8);

        /* A device that drops off the bus comes back with its memory reset. */
        ASSERT_EQ(mem_write(d, 0, 8, "volatile"), 0);
        ASSERT_OK(emu_device_inject_fault(d, EMU_FAULT_GONE, 1));
        ASSERT_ERRNO(emu_device_unbind(d), ENODEV);
        ASSERT_EQ(mem_read(d, 0, 8, got), 0);
        ASSERT_MEMEQ(got, zero, 8);
}

TEST(debug_memory_enobufs) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
        _cleanup_free_ uint8_t *msg = malloc(EMU_DEBUG_MSG_MAX), *resp = malloc(EMU_RESPONSE_MAX),
                               *got = malloc(EMU_DEBUG_MEM_XFER_MAX);
        size_t msg_len, len = 0;

        ASSERT_NOT_NULL(msg);
        ASSERT_NOT_NULL(resp);
        ASSERT_NOT_NULL(got);

        /* A read that does not fit the caller's buffer fails as a whole... */
        ASSERT_OK(emu_debug_build_mem_request(FID1, EMU_VENDOR_ID_DEFAULT, EMU_DEBUG_OP_MEM_READ, 0,
                                              EMU_DEBUG_MEM_XFER_MAX, NULL, msg, EMU_DEBUG_MSG_MAX, &msg_len));
        ASSERT_ERRNO(emu_device_request(d, EMU_SCOPE_DEBUG_READ, msg, msg_len, resp, EMU_RESPONSE_MAX - 1, &len),
                     ENOBUFS);
        ASSERT_EQ(len, 0);
        ASSERT_OK(emu_device_request(d, EMU_SCOPE_DEBUG_READ, msg, msg_len, resp, EMU_RESPONSE_MAX, &len));
        ASSERT_EQ(len, EMU_RESPONSE_MAX);

        /* ...and so does a write, which then stored nothing. */
        memset(got, 0xaa, EMU_DEBUG_MEM_XFER_MAX);
        ASSERT_OK(emu_debug_build_mem_request(FID1, EMU_VENDOR_ID_DEFAULT, EMU_DEBUG_OP_MEM_WRITE, 0,
                                              EMU_DEBUG_MEM_XFER_MAX, got, msg, EMU_DEBUG_MSG_MAX, &msg_len));
        ASSERT_EQ(msg_len, EMU_DEBUG_MSG_MAX);
        len = 0;
        ASSERT_ERRNO(emu_device_request(d, EMU_SCOPE_DEBUG_WRITE, msg, msg_len, resp, sizeof(EmuDebugMessage) - 1,
                                        &len),
                     ENOBUFS);
        ASSERT_EQ(len, 0);
        /* Left as clean as it was: a release has nothing to scrub. */
        ASSERT_TRUE(emu_device_is_clean(d));
        ASSERT_EQ(mem_read(d, 0, 64, got), 0);
        for (size_t i = 0; i < 64; i++)
                ASSERT_EQ(got[i], 0);

        /* The builder: memory ops only, data for a write, and room for it. */
        ASSERT_ERRNO(emu_debug_build_mem_request(FID1, 1, EMU_DEBUG_OP_READ, 0, 4, NULL, msg, 64, &msg_len), EINVAL);
        ASSERT_ERRNO(emu_debug_build_mem_request(FID1, 1, EMU_DEBUG_OP_MEM_WRITE, 0, 4, NULL, msg, 64, &msg_len),
                     EINVAL);
        ASSERT_ERRNO(emu_debug_build_mem_request(FID1, 1, EMU_DEBUG_OP_MEM_WRITE, 0, 4, "abcd", msg,
                                                 sizeof(EmuDebugMessage) + 3, &msg_len),
                     ENOBUFS);
        ASSERT_ERRNO(emu_debug_build_mem_request(FID1, 1, EMU_DEBUG_OP_MEM_READ, 0, 4, NULL, msg,
                                                 sizeof(EmuDebugMessage) - 1, &msg_len),
                     ENOBUFS);
}

/* A change of owner leaves nothing of the last one's in the registers either: configuration and
 * scratch registers go back to their power-on values, and until they do the device is not clean. */
TEST(debug_registers_released) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = device_new(ADDR1);
        uint64_t power_on[EMU_DEBUG_N_REGS];
        uint8_t nonce[TDISP_NONCE_SIZE];
        uint32_t err;

        for (uint32_t reg = EMU_DEBUG_REG_CONFIG_FIRST; reg < EMU_DEBUG_N_REGS; reg++) {
                power_on[reg] = debug_op(d, EMU_DEBUG_OP_READ, reg, 0, &err);
                ASSERT_EQ(err, 0);
        }
        ASSERT_NE(power_on[EMU_DEBUG_REG_CONFIG_FIRST + 1], 0); /* or a reset to 0 would pass too */
        ASSERT_TRUE(emu_device_is_clean(d));

        /* Written while unlocked, as another guest's would be: each write alone makes the device
         * need a release, which restores every register. */
        for (uint32_t reg = EMU_DEBUG_REG_CONFIG_FIRST; reg < EMU_DEBUG_N_REGS; reg++) {
                ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_WRITE, reg, power_on[reg] ^ 0x5a5a, &err), power_on[reg] ^ 0x5a5a);
                ASSERT_EQ(err, 0);
                ASSERT_FALSE(emu_device_is_clean(d));
                ASSERT_OK(emu_device_release(d));
                ASSERT_TRUE(emu_device_is_clean(d));
        }
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_WRITE, EMU_DEBUG_REG_CONFIG_FIRST + 1, 0x5ec2e7, &err), 0x5ec2e7);
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_WRITE, EMU_DEBUG_REG_SCRATCH_FIRST, 0x5ec2e7, &err), 0x5ec2e7);
        ASSERT_OK(emu_device_release(d));
        for (uint32_t reg = EMU_DEBUG_REG_CONFIG_FIRST; reg < EMU_DEBUG_N_REGS; reg++)
                ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_READ, reg, 0, &err), power_on[reg]);

        /* Written back to the value it had: nothing to release. */
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_WRITE, EMU_DEBUG_REG_SCRATCH_FIRST, 0, &err), 0);
        ASSERT_TRUE(emu_device_is_clean(d));

        /* Device memory written while unlocked, the registers untouched: not clean either. */
        ASSERT_EQ(mem_write(d, 0, 4, "abcd"), 0u);
        ASSERT_FALSE(emu_device_is_clean(d));
        ASSERT_OK(emu_device_release(d));
        ASSERT_TRUE(emu_device_is_clean(d));

        /* From RUN, and from ERROR where a write to locked configuration sent it. */
        drive_to(d, TDISP_STATE_RUN, nonce);
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_WRITE, 15, 1, &err), 1);
        ASSERT_OK(emu_device_release(d));
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_READ, 15, 0, &err), 0);
        drive_to(d, TDISP_STATE_RUN, nonce);
        debug_op(d, EMU_DEBUG_OP_WRITE, EMU_DEBUG_REG_CONFIG_LAST, 7, &err);
        ASSERT_EQ(wire_state(d), TDISP_STATE_ERROR);
        ASSERT_OK(emu_device_release(d));
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_READ, EMU_DEBUG_REG_CONFIG_LAST, 0, &err), power_on[EMU_DEBUG_REG_CONFIG_LAST]);
        ASSERT_TRUE(emu_device_is_clean(d));

        /* Even a release whose unbind fails leaves nothing behind. */
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_WRITE, 12, 12, &err), 12);
        ASSERT_OK(emu_device_inject_fault(d, EMU_FAULT_BUSY, 1));
        ASSERT_ERRNO(emu_device_release(d), EBUSY);
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_READ, 12, 0, &err), 0);
        ASSERT_TRUE(emu_device_is_clean(d));

        /* A plain unbind is no change of owner: the registers stay. */
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_WRITE, 12, 12, &err), 12);
        ASSERT_OK(emu_device_unbind(d));
        ASSERT_EQ(debug_op(d, EMU_DEBUG_OP_READ, 12, 0, &err), 12);
        ASSERT_FALSE(emu_device_is_clean(d));
}

/* The same calls on two platforms give the same bytes, step by step. */
TEST(deterministic_sequence) {
        _cleanup_(emu_platform_freep) EmuPlatform *a = NULL, *b = NULL;
        static const char config[] = "0000:03:00.0:ranges=7,0000:04:01.2:vendor=1af4:device=1041";

        ASSERT_OK(emu_platform_new_from_config(config, &a));
        ASSERT_OK(emu_platform_new_from_config(config, &b));

        for (size_t i = 0; i < emu_platform_get_n_devices(a); i++) {
                EmuDevice *da = emu_platform_get_device(a, i), *db = emu_platform_get_device(b, i);

                for (unsigned round = 0; round < 3; round++) {
                        uint8_t na[TDISP_NONCE_SIZE], nb[TDISP_NONCE_SIZE], ra[2048], rb[2048];
                        size_t la, lb;

                        ASSERT_OK(emu_device_bind(da, na));
                        ASSERT_OK(emu_device_bind(db, nb));
                        ASSERT_MEMEQ(na, nb, sizeof(na));
                        la = read_report(da, 13, ra, sizeof(ra));
                        lb = read_report(db, 13, rb, sizeof(rb));
                        ASSERT_EQ(la, lb);
                        ASSERT_MEMEQ(ra, rb, la);
                        do_start(da, na);
                        do_start(db, nb);
                        ASSERT_OK(emu_device_unbind(da));
                        ASSERT_OK(emu_device_unbind(db));
                }
        }
}

TEST_MAIN();
