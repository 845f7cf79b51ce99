/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel's sample TSM (samples/devsec): "devsec_link_tsm" registers a link-mode TSM and
 * "devsec_tsm" a devsec-mode TSM, both on faux devices of those names, in front of the
 * emulated host bridges made by "devsec_bus".
 *
 * Runs in: monitor and worker.
 */

#include "backend.h"
#include "macro.h"

/* The sample implements no guest_req at all; a page bounds what tsmd would forward. */
#define DEVSEC_SAMPLE_PAGE 4096U

static const TsmParentMatch devsec_sample_parents[] = {
        { .subsystem = "faux", .sysname = "devsec_link_tsm" },
        { .subsystem = "faux", .sysname = "devsec_tsm" },
};

static const TsmScopeDesc devsec_sample_scopes[] = {
        {
                .name = TSM_SCOPE_INFO,
                .number = { [TSM_UAPI_V4] = 0, [TSM_UAPI_V5] = 0 },
                .max_request = DEVSEC_SAMPLE_PAGE,
                .max_response = DEVSEC_SAMPLE_PAGE,
                .default_allowed = true,
                .description = "Read-only TDISP collateral, no secrets, no state change",
        },
        {
                .name = TSM_SCOPE_STATE_CHANGE,
                .number = { [TSM_UAPI_V4] = 1, [TSM_UAPI_V5] = 1 },
                .max_request = DEVSEC_SAMPLE_PAGE,
                .max_response = DEVSEC_SAMPLE_PAGE,
                .default_allowed = true,
                .description = "TDISP UNLOCKED->LOCKED->RUN",
        },
        {
                .name = TSM_SCOPE_DEBUG_READ,
                .number = { [TSM_UAPI_V4] = TSM_SCOPE_NUMBER_NONE, [TSM_UAPI_V5] = 2 },
                .max_request = DEVSEC_SAMPLE_PAGE,
                .max_response = DEVSEC_SAMPLE_PAGE,
                .default_allowed = false,
                .description = "Read-only debug information outside the TDISP model",
        },
        {
                .name = TSM_SCOPE_DEBUG_WRITE,
                .number = { [TSM_UAPI_V4] = TSM_SCOPE_NUMBER_NONE, [TSM_UAPI_V5] = 3 },
                .max_request = DEVSEC_SAMPLE_PAGE,
                .max_response = DEVSEC_SAMPLE_PAGE,
                .default_allowed = false,
                .description = "Debug state changes outside the TDISP model (CAP_SYS_RAWIO, taints the kernel)",
        },
};

const TsmBackendDesc tsm_backend_devsec_sample = {
        .type = TSM_BACKEND_DEVSEC_SAMPLE,
        .description = "Linux sample TSM (samples/devsec) with emulated TDISP devices",
        .parent_matches = devsec_sample_parents,
        .n_parent_matches = ELEMENTSOF(devsec_sample_parents),
        .scopes = devsec_sample_scopes,
        .n_scopes = ELEMENTSOF(devsec_sample_scopes),
};
