/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * AMD SEV-TIO: the TSM is registered by the CCP/PSP driver ("ccp") on the PSP's own PCI
 * function (drivers/crypto/ccp/sev-dev-tsm.c). Scope numbers are this backend's own table;
 * they coincide with the other PCI backends today (see SYSFS.md) but are never shared.
 *
 * Runs in: monitor and worker.
 */

#include "backend.h"
#include "macro.h"

/* SNP guest messages are page-sized and "on AMD, the request and response sizes are fixed"
 * (A. Kardashevskiy on linux-coco); one 4 KiB page bounds both directions. */
#define SEV_TIO_PAGE 4096U

static const TsmParentMatch sev_tio_parents[] = {
        { .subsystem = "pci", .driver = "ccp" },
};

static const TsmScopeDesc sev_tio_scopes[] = {
        {
                .name = TSM_SCOPE_INFO,
                .number = { [TSM_UAPI_V4] = 0, [TSM_UAPI_V5] = 0 },
                .max_request = SEV_TIO_PAGE,
                .max_response = SEV_TIO_PAGE,
                .default_allowed = true,
                .description = "Read-only TDISP collateral (interface report), no secrets, no state change",
        },
        {
                .name = TSM_SCOPE_STATE_CHANGE,
                .number = { [TSM_UAPI_V4] = 1, [TSM_UAPI_V5] = 1 },
                .max_request = SEV_TIO_PAGE,
                .max_response = SEV_TIO_PAGE,
                .default_allowed = true,
                .description = "TDISP UNLOCKED->LOCKED->RUN and the SEV-TIO steps supporting them",
        },
        {
                /* v4: pci_tsm_guest_req() refused scopes above STATE_CHANGE; no number existed. */
                .name = TSM_SCOPE_DEBUG_READ,
                .number = { [TSM_UAPI_V4] = TSM_SCOPE_NUMBER_NONE, [TSM_UAPI_V5] = 2 },
                .max_request = SEV_TIO_PAGE,
                .max_response = SEV_TIO_PAGE,
                .default_allowed = false,
                .description = "Read-only debug information outside the TDISP model",
        },
        {
                .name = TSM_SCOPE_DEBUG_WRITE,
                .number = { [TSM_UAPI_V4] = TSM_SCOPE_NUMBER_NONE, [TSM_UAPI_V5] = 3 },
                .max_request = SEV_TIO_PAGE,
                .max_response = SEV_TIO_PAGE,
                .default_allowed = false,
                .description = "Debug state changes outside the TDISP model (CAP_SYS_RAWIO, taints the kernel)",
        },
};

const TsmBackendDesc tsm_backend_sev_tio = {
        .type = TSM_BACKEND_SEV_TIO,
        .description = "AMD SEV-TIO (PSP firmware via the ccp driver)",
        .parent_matches = sev_tio_parents,
        .n_parent_matches = ELEMENTSOF(sev_tio_parents),
        .scopes = sev_tio_scopes,
        .n_scopes = ELEMENTSOF(sev_tio_scopes),
};
