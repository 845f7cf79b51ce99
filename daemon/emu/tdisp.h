/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * TDISP wire format: the PCIe TEE Device Interface Security Protocol 1.0 messages that a TSM
 * and a device exchange (inside SPDM vendor-defined messages, protocol id 0x01), as laid out
 * in DMTF libspdm include/industry_standard/pci_tdisp.h and the PCIe TDISP ECN. Pure data
 * and bounds-checked helpers, no I/O. Runs in: monitor and worker (emulated platform), VMM
 * examples, tests.
 *
 * Every struct below is the exact wire layout: packed, no implicit padding, and every
 * multi-byte field is little-endian on the wire. Convert with htole16()/le32toh()... when
 * reading or writing fields; never cast an unchecked buffer to one of these structs, copy
 * out of it after checking its length (tdisp_header_decode() and friends do that).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define TDISP_PROTOCOL_ID 0x01
#define TDISP_VERSION_1_0 0x10
#define TDISP_NONCE_SIZE 32

/* Message codes: requests have bit 7 set, the matching response is the request code & 0x7f. */
typedef enum TdispMessageType {
        TDISP_MSG_VERSION = 0x01,
        TDISP_MSG_CAPABILITIES = 0x02,
        TDISP_MSG_LOCK_INTERFACE_RSP = 0x03,
        TDISP_MSG_DEVICE_INTERFACE_REPORT = 0x04,
        TDISP_MSG_DEVICE_INTERFACE_STATE = 0x05,
        TDISP_MSG_START_INTERFACE_RSP = 0x06,
        TDISP_MSG_STOP_INTERFACE_RSP = 0x07,
        TDISP_MSG_BIND_P2P_STREAM_RSP = 0x08,
        TDISP_MSG_UNBIND_P2P_STREAM_RSP = 0x09,
        TDISP_MSG_SET_MMIO_ATTRIBUTE_RSP = 0x0A,
        TDISP_MSG_VDM_RSP = 0x0B,
        TDISP_MSG_SET_TDISP_CONFIG_RSP = 0x0C, /* later ECN (XT mode), not TDISP 1.0 */
        TDISP_MSG_ERROR = 0x7F,

        TDISP_MSG_GET_VERSION = 0x81,
        TDISP_MSG_GET_CAPABILITIES = 0x82,
        TDISP_MSG_LOCK_INTERFACE_REQ = 0x83,
        TDISP_MSG_GET_DEVICE_INTERFACE_REPORT = 0x84,
        TDISP_MSG_GET_DEVICE_INTERFACE_STATE = 0x85,
        TDISP_MSG_START_INTERFACE_REQ = 0x86,
        TDISP_MSG_STOP_INTERFACE_REQ = 0x87,
        TDISP_MSG_BIND_P2P_STREAM_REQ = 0x88,
        TDISP_MSG_UNBIND_P2P_STREAM_REQ = 0x89,
        TDISP_MSG_SET_MMIO_ATTRIBUTE_REQ = 0x8A,
        TDISP_MSG_VDM_REQ = 0x8B,
        TDISP_MSG_SET_TDISP_CONFIG_REQ = 0x8C, /* later ECN (XT mode), not TDISP 1.0 */
} TdispMessageType;

/* Bit n of CAPABILITIES.req_msgs_supported stands for request code 0x80 + n (PCIe 6.1 11.3.7:
 * "the message code ... minus 80h"): bit 0 is no request. */
#define TDISP_REQ_MSGS_SUPPORTED_BASE 0x80u

/* ERROR.error_code values. */
typedef enum TdispErrorCode {
        TDISP_ERROR_INVALID_REQUEST = 0x0001,
        TDISP_ERROR_BUSY = 0x0003,
        TDISP_ERROR_INVALID_INTERFACE_STATE = 0x0004,
        TDISP_ERROR_UNSPECIFIED = 0x0005,
        TDISP_ERROR_UNSUPPORTED_REQUEST = 0x0007,
        TDISP_ERROR_VERSION_MISMATCH = 0x0041,
        TDISP_ERROR_VENDOR_SPECIFIC_ERROR = 0x00FF,
        TDISP_ERROR_INVALID_INTERFACE = 0x0101,
        TDISP_ERROR_INVALID_NONCE = 0x0102,
        TDISP_ERROR_INSUFFICIENT_ENTROPY = 0x0103,
        TDISP_ERROR_INVALID_DEVICE_CONFIGURATION = 0x0104,
} TdispErrorCode;

/* TDI states, with their DEVICE_INTERFACE_STATE.tdi_state wire values. */
typedef enum TdispState {
        TDISP_STATE_CONFIG_UNLOCKED = 0,
        TDISP_STATE_CONFIG_LOCKED = 1,
        TDISP_STATE_RUN = 2,
        TDISP_STATE_ERROR = 3,
        _TDISP_STATE_MAX,
        _TDISP_STATE_INVALID = -EINVAL,
} TdispState;

/* INTERFACE_ID.function_id: requester id (bus/dev/fn), segment, and whether the segment counts. */
#define TDISP_FUNCTION_ID_REQUESTER_ID_MASK 0x0000FFFFu
#define TDISP_FUNCTION_ID_SEGMENT_MASK 0x00FF0000u
#define TDISP_FUNCTION_ID_SEGMENT_SHIFT 16
#define TDISP_FUNCTION_ID_SEGMENT_VALID 0x01000000u

/* CAPABILITIES.dsm_caps */
#define TDISP_DSM_CAPS_XT_MODE_SUPPORTED 0x1u /* later ECN; a TDISP 1.0 device reports 0 */

/* LOCK_INTERFACE_REQUEST.flags */
#define TDISP_LOCK_FLAG_NO_FW_UPDATE 0x01u
#define TDISP_LOCK_FLAG_SYSTEM_CACHE_LINE_SIZE 0x02u
#define TDISP_LOCK_FLAG_LOCK_MSIX 0x04u
#define TDISP_LOCK_FLAG_BIND_P2P 0x08u
#define TDISP_LOCK_FLAG_ALL_REQUEST_REDIRECT 0x10u
#define TDISP_LOCK_FLAGS_ALL 0x1Fu

/* DEVICE_INTERFACE_REPORT.interface_info */
#define TDISP_INTERFACE_INFO_NO_UPDATE_AFTER_LOCK 0x01u
#define TDISP_INTERFACE_INFO_DMA_WITHOUT_PASID 0x02u
#define TDISP_INTERFACE_INFO_DMA_WITH_PASID 0x04u
#define TDISP_INTERFACE_INFO_ATS_SUPPORTED 0x08u
#define TDISP_INTERFACE_INFO_PRS_SUPPORTED 0x10u

/* MMIO_RANGE.range_attributes */
#define TDISP_MMIO_RANGE_MSIX_TABLE 0x01u
#define TDISP_MMIO_RANGE_MSIX_PBA 0x02u
#define TDISP_MMIO_RANGE_IS_NON_TEE_MEM 0x04u
#define TDISP_MMIO_RANGE_IS_MEM_ATTR_UPDATABLE 0x08u

/* MMIO_RANGE.first_page and number_of_pages count 4 KiB pages: the byte address is
 * first_page * TDISP_PAGE_SIZE (the kernel prints first_page << PAGE_SHIFT). */
#define TDISP_PAGE_SIZE 4096u

/* VDM registry ids */
#define TDISP_REGISTRY_ID_PCISIG 0x00
#define TDISP_REGISTRY_ID_CXL 0x01

typedef struct _packed_ TdispInterfaceId {
        uint32_t function_id;
        uint64_t reserved;
} TdispInterfaceId;

typedef struct _packed_ TdispHeader {
        uint8_t version;
        uint8_t message_type;
        uint8_t reserved[2];
        TdispInterfaceId interface_id;
} TdispHeader;

/* GET_TDISP_VERSION, GET_DEVICE_INTERFACE_STATE, STOP_INTERFACE_REQUEST and the
 * START/STOP_INTERFACE_RESPONSEs are a bare TdispHeader. */

typedef struct _packed_ TdispVersionResponse {
        TdispHeader header;
        uint8_t version_num_count;
        /* uint8_t version_num_entry[version_num_count]; */
} TdispVersionResponse;

typedef struct _packed_ TdispGetCapabilitiesRequest {
        TdispHeader header;
        uint32_t tsm_caps;
} TdispGetCapabilitiesRequest;

typedef struct _packed_ TdispCapabilities {
        uint32_t dsm_caps;
        uint8_t req_msgs_supported[16];
        uint16_t lock_interface_flags_supported;
        uint8_t reserved[3];
        uint8_t dev_addr_width;
        uint8_t num_req_this;
        uint8_t num_req_all;
} TdispCapabilities;

typedef struct _packed_ TdispCapabilitiesResponse {
        TdispHeader header;
        TdispCapabilities caps;
} TdispCapabilitiesResponse;

typedef struct _packed_ TdispLockInterfaceParams {
        uint16_t flags;
        uint8_t default_stream_id;
        uint8_t reserved;
        uint64_t mmio_reporting_offset;
        uint64_t bind_p2p_address_mask;
} TdispLockInterfaceParams;

typedef struct _packed_ TdispLockInterfaceRequest {
        TdispHeader header;
        TdispLockInterfaceParams params;
} TdispLockInterfaceRequest;

typedef struct _packed_ TdispLockInterfaceResponse {
        TdispHeader header;
        uint8_t start_interface_nonce[TDISP_NONCE_SIZE];
} TdispLockInterfaceResponse;

typedef struct _packed_ TdispGetDeviceInterfaceReportRequest {
        TdispHeader header;
        uint16_t offset;
        uint16_t length;
} TdispGetDeviceInterfaceReportRequest;

typedef struct _packed_ TdispDeviceInterfaceReportResponse {
        TdispHeader header;
        uint16_t portion_length;
        uint16_t remainder_length;
        /* uint8_t report[portion_length]; */
} TdispDeviceInterfaceReportResponse;

/* The interface report, which the requester reassembles from the portions. */
typedef struct _packed_ TdispInterfaceReport {
        uint16_t interface_info;
        uint16_t reserved;
        uint16_t msi_x_message_control;
        uint16_t lnr_control;
        uint32_t tph_control;
        uint32_t mmio_range_count;
        /* TdispMmioRange mmio_range[mmio_range_count];
         * uint32_t device_specific_info_len;
         * uint8_t device_specific_info[device_specific_info_len]; */
} TdispInterfaceReport;

typedef struct _packed_ TdispMmioRange {
        uint64_t first_page;
        uint32_t number_of_pages;
        uint16_t range_attributes;
        uint16_t range_id;
} TdispMmioRange;

typedef struct _packed_ TdispDeviceInterfaceStateResponse {
        TdispHeader header;
        uint8_t tdi_state;
} TdispDeviceInterfaceStateResponse;

typedef struct _packed_ TdispStartInterfaceRequest {
        TdispHeader header;
        uint8_t start_interface_nonce[TDISP_NONCE_SIZE];
} TdispStartInterfaceRequest;

/* VDM_REQUEST and VDM_RESPONSE share this prefix. */
typedef struct _packed_ TdispVdmHeader {
        TdispHeader header;
        uint8_t registry_id;
        uint8_t vendor_id_len;
        /* uint8_t vendor_id[vendor_id_len];
         * uint8_t vendor_data[]; */
} TdispVdmHeader;

typedef struct _packed_ TdispErrorResponse {
        TdispHeader header;
        uint32_t error_code;
        uint32_t error_data;
        /* uint8_t extended_error_data[]; (VENDOR_SPECIFIC_ERROR only) */
} TdispErrorResponse;

/* The layouts are the wire format: any change here is a protocol break. */
_Static_assert(sizeof(TdispInterfaceId) == 12, "INTERFACE_ID");
_Static_assert(sizeof(TdispHeader) == 16, "TDISP header");
_Static_assert(offsetof(TdispHeader, message_type) == 1, "message_type");
_Static_assert(offsetof(TdispHeader, interface_id) == 4, "interface_id");
_Static_assert(sizeof(TdispVersionResponse) == 17, "TDISP_VERSION");
_Static_assert(sizeof(TdispGetCapabilitiesRequest) == 20, "GET_TDISP_CAPABILITIES");
_Static_assert(sizeof(TdispCapabilities) == 28, "TDISP capabilities");
_Static_assert(offsetof(TdispCapabilities, lock_interface_flags_supported) == 20, "lock flags");
_Static_assert(offsetof(TdispCapabilities, dev_addr_width) == 25, "dev_addr_width");
_Static_assert(sizeof(TdispCapabilitiesResponse) == 44, "TDISP_CAPABILITIES");
_Static_assert(sizeof(TdispLockInterfaceParams) == 20, "lock interface parameters");
_Static_assert(offsetof(TdispLockInterfaceParams, mmio_reporting_offset) == 4, "mmio offset");
_Static_assert(offsetof(TdispLockInterfaceParams, bind_p2p_address_mask) == 12, "p2p mask");
_Static_assert(sizeof(TdispLockInterfaceRequest) == 36, "LOCK_INTERFACE_REQUEST");
_Static_assert(sizeof(TdispLockInterfaceResponse) == 48, "LOCK_INTERFACE_RESPONSE");
_Static_assert(sizeof(TdispGetDeviceInterfaceReportRequest) == 20, "GET_DEVICE_INTERFACE_REPORT");
_Static_assert(sizeof(TdispDeviceInterfaceReportResponse) == 20, "DEVICE_INTERFACE_REPORT");
_Static_assert(sizeof(TdispInterfaceReport) == 16, "interface report");
_Static_assert(offsetof(TdispInterfaceReport, tph_control) == 8, "tph_control");
_Static_assert(offsetof(TdispInterfaceReport, mmio_range_count) == 12, "mmio_range_count");
_Static_assert(sizeof(TdispMmioRange) == 16, "MMIO_RANGE");
_Static_assert(offsetof(TdispMmioRange, range_attributes) == 12, "range_attributes");
_Static_assert(sizeof(TdispDeviceInterfaceStateResponse) == 17, "DEVICE_INTERFACE_STATE");
_Static_assert(sizeof(TdispStartInterfaceRequest) == 48, "START_INTERFACE_REQUEST");
_Static_assert(sizeof(TdispVdmHeader) == 18, "VDM header");
_Static_assert(sizeof(TdispErrorResponse) == 24, "TDISP_ERROR");

/* Spec names ("GET_TDISP_VERSION", "INVALID_NONCE", "CONFIG_LOCKED"); NULL if unknown. */
const char *tdisp_message_type_to_string(int type);
const char *tdisp_error_code_to_string(uint32_t code);
const char *tdisp_state_to_string(TdispState s);
TdispState tdisp_state_from_string(const char *s);

/* Body length (after the header) of the fixed-size TDISP 1.0 requests: -EOPNOTSUPP for a
 * variable-length (VDM_REQUEST) or unknown request code. */
int tdisp_request_body_size(uint8_t type, size_t *ret);

/* The FUNCTION_ID of a PCI function; -ERANGE if the domain does not fit the 8-bit segment. */
int tdisp_function_id_from_pci(uint16_t domain, uint8_t bus, uint8_t devfn, uint32_t *ret);

/* Copies the header out of buf and converts it to host byte order; -EBADMSG if too short. */
int tdisp_header_decode(const void *buf, size_t len, TdispHeader *ret);

/* Writes a TDISP 1.0 request: header (version 0x10, reserved zero, interface id from
 * function_id) followed by body_len bytes of body. -ENOBUFS if it does not fit in size. */
int tdisp_build_request(
                uint8_t type,
                uint32_t function_id,
                const void *body,
                size_t body_len,
                void *buf,
                size_t size,
                size_t *ret_len);

/* Decodes an ERROR message: -EBADMSG unless msg is a well-formed TDISP_ERROR. */
int tdisp_error_decode(const void *msg, size_t len, uint32_t *ret_code, uint32_t *ret_data);
