/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Arm CCA device assignment: the link TSM is registered by the arm-cca-host driver on the
 * RMM's "arm-rmi-dev" device (arm_smccc bus; an auxiliary device in earlier revisions). The
 * series is an RFC; the driver name is inferred from the module name (see SYSFS.md).
 *
 * Runs in: monitor and worker.
 */

#include "backend.h"
#include "macro.h"

/* Guest requests are small fixed structs (RHI request types: set-TDI-state 8 bytes, MMIO
 * map a few u64s); 64 bytes covers all of them with room for one more field. */
#define ARM_CCA_SMALL_REQUEST 64U
/* Device objects are cached in MAX_CACHE_OBJ_SIZE (4096) buffers by the host driver. */
#define ARM_CCA_OBJECT_MAX 4096U

static const TsmParentMatch arm_cca_parents[] = {
        { .subsystem = "arm_smccc", .driver = "arm_cca_host" },
        { .subsystem = "auxiliary", .driver = "arm_cca_host" },
};

static const TsmScopeDesc arm_cca_scopes[] = {
        {
                .name = TSM_SCOPE_INFO,
                .number = { [TSM_UAPI_V4] = 0, [TSM_UAPI_V5] = 0 },
                .max_request = ARM_CCA_SMALL_REQUEST,
                .max_response = ARM_CCA_OBJECT_MAX,
                .default_allowed = true,
                .description = "Read cached device objects (interface report, measurements), no state change",
        },
        {
                .name = TSM_SCOPE_STATE_CHANGE,
                .number = { [TSM_UAPI_V4] = 1, [TSM_UAPI_V5] = 1 },
                .max_request = ARM_CCA_SMALL_REQUEST,
                .max_response = ARM_CCA_SMALL_REQUEST,
                .default_allowed = true,
                .description = "TDI state transitions and MMIO validation requested through RHI",
        },
        {
                /* cca_tsm_guest_req() only handles INFO and STATE_CHANGE; v4 had no number. */
                .name = TSM_SCOPE_DEBUG_READ,
                .number = { [TSM_UAPI_V4] = TSM_SCOPE_NUMBER_NONE, [TSM_UAPI_V5] = 2 },
                .max_request = ARM_CCA_SMALL_REQUEST,
                .max_response = ARM_CCA_OBJECT_MAX,
                .default_allowed = false,
                .description = "Read-only debug information outside the TDISP model",
        },
        {
                .name = TSM_SCOPE_DEBUG_WRITE,
                .number = { [TSM_UAPI_V4] = TSM_SCOPE_NUMBER_NONE, [TSM_UAPI_V5] = 3 },
                .max_request = ARM_CCA_SMALL_REQUEST,
                .max_response = ARM_CCA_SMALL_REQUEST,
                .default_allowed = false,
                .description = "Debug state changes outside the TDISP model (CAP_SYS_RAWIO, taints the kernel)",
        },
};

const TsmBackendDesc tsm_backend_arm_cca = {
        .type = TSM_BACKEND_ARM_CCA,
        .description = "Arm CCA device assignment (RMM via the arm_cca_host driver)",
        .parent_matches = arm_cca_parents,
        .n_parent_matches = ELEMENTSOF(arm_cca_parents),
        .scopes = arm_cca_scopes,
        .n_scopes = ELEMENTSOF(arm_cca_scopes),
};
