/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * TDISP wire helpers: names for message types, error codes and TDI states, the fixed
 * request sizes, and bounds-checked encode/decode of the common header. Runs in: monitor and worker, VMM examples, tests.
 */

#include <endian.h>

#include "tdisp.h"

typedef struct TdispName {
        uint32_t value;
        const char *name;
} TdispName;

/* Names as the PCIe TDISP ECN spells them, so logs and audit records match the spec. */
static const TdispName tdisp_message_type_table[] = {
        { TDISP_MSG_VERSION, "TDISP_VERSION" },
        { TDISP_MSG_CAPABILITIES, "TDISP_CAPABILITIES" },
        { TDISP_MSG_LOCK_INTERFACE_RSP, "LOCK_INTERFACE_RESPONSE" },
        { TDISP_MSG_DEVICE_INTERFACE_REPORT, "DEVICE_INTERFACE_REPORT" },
        { TDISP_MSG_DEVICE_INTERFACE_STATE, "DEVICE_INTERFACE_STATE" },
        { TDISP_MSG_START_INTERFACE_RSP, "START_INTERFACE_RESPONSE" },
        { TDISP_MSG_STOP_INTERFACE_RSP, "STOP_INTERFACE_RESPONSE" },
        { TDISP_MSG_BIND_P2P_STREAM_RSP, "BIND_P2P_STREAM_RESPONSE" },
        { TDISP_MSG_UNBIND_P2P_STREAM_RSP, "UNBIND_P2P_STREAM_RESPONSE" },
        { TDISP_MSG_SET_MMIO_ATTRIBUTE_RSP, "SET_MMIO_ATTRIBUTE_RESPONSE" },
        { TDISP_MSG_VDM_RSP, "VDM_RESPONSE" },
        { TDISP_MSG_SET_TDISP_CONFIG_RSP, "SET_TDISP_CONFIG_RESPONSE" },
        { TDISP_MSG_ERROR, "TDISP_ERROR" },
        { TDISP_MSG_GET_VERSION, "GET_TDISP_VERSION" },
        { TDISP_MSG_GET_CAPABILITIES, "GET_TDISP_CAPABILITIES" },
        { TDISP_MSG_LOCK_INTERFACE_REQ, "LOCK_INTERFACE_REQUEST" },
        { TDISP_MSG_GET_DEVICE_INTERFACE_REPORT, "GET_DEVICE_INTERFACE_REPORT" },
        { TDISP_MSG_GET_DEVICE_INTERFACE_STATE, "GET_DEVICE_INTERFACE_STATE" },
        { TDISP_MSG_START_INTERFACE_REQ, "START_INTERFACE_REQUEST" },
        { TDISP_MSG_STOP_INTERFACE_REQ, "STOP_INTERFACE_REQUEST" },
        { TDISP_MSG_BIND_P2P_STREAM_REQ, "BIND_P2P_STREAM_REQUEST" },
        { TDISP_MSG_UNBIND_P2P_STREAM_REQ, "UNBIND_P2P_STREAM_REQUEST" },
        { TDISP_MSG_SET_MMIO_ATTRIBUTE_REQ, "SET_MMIO_ATTRIBUTE_REQUEST" },
        { TDISP_MSG_VDM_REQ, "VDM_REQUEST" },
        { TDISP_MSG_SET_TDISP_CONFIG_REQ, "SET_TDISP_CONFIG_REQUEST" },
};

static const TdispName tdisp_error_code_table[] = {
        { TDISP_ERROR_INVALID_REQUEST, "INVALID_REQUEST" },
        { TDISP_ERROR_BUSY, "BUSY" },
        { TDISP_ERROR_INVALID_INTERFACE_STATE, "INVALID_INTERFACE_STATE" },
        { TDISP_ERROR_UNSPECIFIED, "UNSPECIFIED" },
        { TDISP_ERROR_UNSUPPORTED_REQUEST, "UNSUPPORTED_REQUEST" },
        { TDISP_ERROR_VERSION_MISMATCH, "VERSION_MISMATCH" },
        { TDISP_ERROR_VENDOR_SPECIFIC_ERROR, "VENDOR_SPECIFIC_ERROR" },
        { TDISP_ERROR_INVALID_INTERFACE, "INVALID_INTERFACE" },
        { TDISP_ERROR_INVALID_NONCE, "INVALID_NONCE" },
        { TDISP_ERROR_INSUFFICIENT_ENTROPY, "INSUFFICIENT_ENTROPY" },
        { TDISP_ERROR_INVALID_DEVICE_CONFIGURATION, "INVALID_DEVICE_CONFIGURATION" },
};

static const char *name_lookup(const TdispName *table, size_t n, uint32_t value) {
        for (size_t i = 0; i < n; i++)
                if (table[i].value == value)
                        return table[i].name;
        return NULL;
}

const char *tdisp_message_type_to_string(int type) {
        if (type < 0)
                return NULL;
        return name_lookup(tdisp_message_type_table, ELEMENTSOF(tdisp_message_type_table),
                           (uint32_t) type);
}

const char *tdisp_error_code_to_string(uint32_t code) {
        return name_lookup(tdisp_error_code_table, ELEMENTSOF(tdisp_error_code_table), code);
}

static const char *const tdisp_state_table[_TDISP_STATE_MAX] = {
        [TDISP_STATE_CONFIG_UNLOCKED] = "CONFIG_UNLOCKED",
        [TDISP_STATE_CONFIG_LOCKED] = "CONFIG_LOCKED",
        [TDISP_STATE_RUN] = "RUN",
        [TDISP_STATE_ERROR] = "ERROR",
};
DEFINE_STRING_TABLE_LOOKUP(tdisp_state, TdispState);

int tdisp_request_body_size(uint8_t type, size_t *ret) {
        size_t n;

        assert_return(ret, -EINVAL);

        switch (type) {
        case TDISP_MSG_GET_VERSION:
        case TDISP_MSG_GET_DEVICE_INTERFACE_STATE:
        case TDISP_MSG_STOP_INTERFACE_REQ:
                n = 0;
                break;
        case TDISP_MSG_GET_CAPABILITIES:
                n = sizeof(TdispGetCapabilitiesRequest) - sizeof(TdispHeader);
                break;
        case TDISP_MSG_LOCK_INTERFACE_REQ:
                n = sizeof(TdispLockInterfaceRequest) - sizeof(TdispHeader);
                break;
        case TDISP_MSG_GET_DEVICE_INTERFACE_REPORT:
                n = sizeof(TdispGetDeviceInterfaceReportRequest) - sizeof(TdispHeader);
                break;
        case TDISP_MSG_START_INTERFACE_REQ:
                n = sizeof(TdispStartInterfaceRequest) - sizeof(TdispHeader);
                break;
        default:
                return -EOPNOTSUPP;
        }

        *ret = n;
        return 0;
}

int tdisp_function_id_from_pci(uint16_t domain, uint8_t bus, uint8_t devfn, uint32_t *ret) {
        uint32_t id;

        assert_return(ret, -EINVAL);

        /* FUNCTION_ID has room for an 8-bit segment only. Domain 0 leaves the "segment
         * valid" bit clear, so single-segment hosts see the plain requester id. */
        if (domain > 0xFF)
                return -ERANGE;

        id = ((uint32_t) bus << 8) | devfn;
        if (domain != 0)
                id |= ((uint32_t) domain << TDISP_FUNCTION_ID_SEGMENT_SHIFT) |
                      TDISP_FUNCTION_ID_SEGMENT_VALID;

        *ret = id;
        return 0;
}

int tdisp_header_decode(const void *buf, size_t len, TdispHeader *ret) {
        TdispHeader h;

        assert_return(buf || len == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        if (len < sizeof(h))
                return -EBADMSG;

        memcpy(&h, buf, sizeof(h));
        h.interface_id.function_id = le32toh(h.interface_id.function_id);
        h.interface_id.reserved = le64toh(h.interface_id.reserved);

        *ret = h;
        return 0;
}

int tdisp_build_request(
                uint8_t type,
                uint32_t function_id,
                const void *body,
                size_t body_len,
                void *buf,
                size_t size,
                size_t *ret_len) {

        TdispHeader h = {
                .version = TDISP_VERSION_1_0,
                .message_type = type,
                .interface_id.function_id = htole32(function_id),
        };

        assert_return(body || body_len == 0, -EINVAL);
        assert_return(buf || size == 0, -EINVAL);
        assert_return(ret_len, -EINVAL);

        if (body_len > SIZE_MAX - sizeof(h) || sizeof(h) + body_len > size)
                return -ENOBUFS;

        memcpy(buf, &h, sizeof(h));
        if (body_len > 0)
                memcpy((uint8_t *) buf + sizeof(h), body, body_len);

        *ret_len = sizeof(h) + body_len;
        return 0;
}

int tdisp_error_decode(const void *msg, size_t len, uint32_t *ret_code, uint32_t *ret_data) {
        TdispErrorResponse e;

        assert_return(msg || len == 0, -EINVAL);

        if (len < sizeof(e))
                return -EBADMSG;

        memcpy(&e, msg, sizeof(e));
        if (e.header.message_type != TDISP_MSG_ERROR)
                return -EBADMSG;

        if (ret_code)
                *ret_code = le32toh(e.error_code);
        if (ret_data)
                *ret_data = le32toh(e.error_data);
        return 0;
}
