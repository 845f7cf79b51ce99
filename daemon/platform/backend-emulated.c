/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tsmd's built-in emulated TDISP platform. It never appears in sysfs, so it has no parent
 * match. Its requests never reach the kernel either; the numbers exist so the emulated
 * transport takes its scope exactly like the kernel transports do (by backend + name +
 * version), and it mirrors the kernel's pci_tsm_req_scope, including the debug scopes that a
 * software model can safely offer (still off by default: never granted by the policy unless a
 * rule names them, and refused by the emulated TSM, as by mainline kernels, unless [Platform]
 * EmulatedDebugScopes=yes; AttachDevice lists them only then, tsm_platform_serves_scope()).
 *
 * Runs in: monitor and worker.
 */

#include "backend.h"
#include "macro.h"
#include "tsm-priv.h"

/* PCIe TDISP message sizes (libspdm include/industry_standard/pci_tdisp.h, packed). */
#define TDISP_HEADER 16U                       /* version, type, reserved[2], interface_id */
#define TDISP_GET_REPORT_REQ (TDISP_HEADER + 4U) /* + offset u16, length u16: largest INFO req */
/* + portion/remainder u16, portion: up to 0xFFFF bytes in TDISP, but no request or response
 * crosses tsmd's monitor/worker channel beyond TSM_PRIV_PAYLOAD_MAX (the emulated device sends
 * portions of at most 1 KiB anyway). */
#define TDISP_REPORT_RSP_MAX MIN(TDISP_HEADER + 4U + 0xFFFFU, TSM_PRIV_PAYLOAD_MAX)
#define TDISP_START_REQ (TDISP_HEADER + 32U)   /* + start_interface_nonce[32] */
#define TDISP_LOCK_RSP (TDISP_HEADER + 32U)    /* + start_interface_nonce[32] */
/* VDM_REQ/RSP: header + registry_id + vendor_id_len + vendor_id[<=255] + vendor data, whose
 * length TDISP leaves open. The emulated device's debug VDMs move up to 64 KiB of device memory
 * per message (EMU_DEBUG_MSG_MAX in emu/emu-device.h), the most the channel carries. */
#define TDISP_VDM_MAX TSM_PRIV_PAYLOAD_MAX

_Static_assert(TDISP_REPORT_RSP_MAX <= TSM_PRIV_PAYLOAD_MAX, "INFO responses cross the channel");
_Static_assert(TDISP_START_REQ <= TSM_PRIV_PAYLOAD_MAX && TDISP_LOCK_RSP <= TSM_PRIV_PAYLOAD_MAX,
               "STATE_CHANGE messages cross the channel");

static const TsmScopeDesc emulated_scopes[] = {
        {
                .name = TSM_SCOPE_INFO,
                .number = { [TSM_UAPI_V4] = 0, [TSM_UAPI_V5] = 0 },
                .max_request = TDISP_GET_REPORT_REQ,
                .max_response = TDISP_REPORT_RSP_MAX,
                .default_allowed = true,
                .description = "GET_VERSION/CAPABILITIES/DEVICE_INTERFACE_REPORT/STATE",
        },
        {
                .name = TSM_SCOPE_STATE_CHANGE,
                .number = { [TSM_UAPI_V4] = 1, [TSM_UAPI_V5] = 1 },
                .max_request = TDISP_START_REQ,
                .max_response = TDISP_LOCK_RSP,
                .default_allowed = true,
                .description = "START_INTERFACE (config_locked -> run); LOCK and STOP are the host's Bind and Unbind",
        },
        {
                .name = TSM_SCOPE_DEBUG_READ,
                .number = { [TSM_UAPI_V4] = 2, [TSM_UAPI_V5] = 2 },
                .max_request = TDISP_VDM_MAX,
                .max_response = TDISP_VDM_MAX,
                .default_allowed = false,
                .description = "Read-only vendor-defined (VDM) debug queries of the emulated device "
                               "(served as EmulatedDebugScopes=yes has it; mainline kernels refuse it)",
        },
        {
                .name = TSM_SCOPE_DEBUG_WRITE,
                .number = { [TSM_UAPI_V4] = 3, [TSM_UAPI_V5] = 3 },
                .max_request = TDISP_VDM_MAX,
                .max_response = TDISP_VDM_MAX,
                .default_allowed = false,
                .description = "Vendor-defined (VDM) debug state changes of the emulated device "
                               "(served as EmulatedDebugScopes=yes has it; mainline kernels refuse it)",
        },
};

const TsmBackendDesc tsm_backend_emulated = {
        .type = TSM_BACKEND_EMULATED,
        .description = "tsmd built-in emulated TDISP platform (software device model)",
        .parent_matches = NULL,
        .n_parent_matches = 0,
        .scopes = emulated_scopes,
        .n_scopes = ELEMENTSOF(emulated_scopes),
};
