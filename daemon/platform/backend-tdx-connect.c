/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Intel TDX Connect: the link TSM is registered by the tdx-host driver on its faux device
 * "tdx_host" (drivers/virt/coco/tdx-host/tdx-host.c, TDX Connect series). Scope numbers are
 * this backend's own table (see SYSFS.md for why they currently equal the other PCI backends').
 *
 * Runs in: monitor and worker.
 */

#include "backend.h"
#include "macro.h"

/* No TDX Connect guest-request code has been published yet; tsmd bounds both directions by
 * one 4 KiB page, like the other hardware backends, until the TDX module ABI says otherwise. */
#define TDX_CONNECT_PAGE 4096U

static const TsmParentMatch tdx_connect_parents[] = {
        /* Faux devices all use "faux_driver": the sysname is what identifies tdx_host. */
        { .subsystem = "faux", .sysname = "tdx_host" },
};

static const TsmScopeDesc tdx_connect_scopes[] = {
        {
                .name = TSM_SCOPE_INFO,
                .number = { [TSM_UAPI_V4] = 0, [TSM_UAPI_V5] = 0 },
                .max_request = TDX_CONNECT_PAGE,
                .max_response = TDX_CONNECT_PAGE,
                .default_allowed = true,
                .description = "Read-only TDISP collateral (interface report), no secrets, no state change",
        },
        {
                .name = TSM_SCOPE_STATE_CHANGE,
                .number = { [TSM_UAPI_V4] = 1, [TSM_UAPI_V5] = 1 },
                .max_request = TDX_CONNECT_PAGE,
                .max_response = TDX_CONNECT_PAGE,
                .default_allowed = true,
                .description = "TDISP UNLOCKED->LOCKED->RUN and the TDX module steps supporting them",
        },
        {
                /* v4: pci_tsm_guest_req() refused scopes above STATE_CHANGE; no number existed. */
                .name = TSM_SCOPE_DEBUG_READ,
                .number = { [TSM_UAPI_V4] = TSM_SCOPE_NUMBER_NONE, [TSM_UAPI_V5] = 2 },
                .max_request = TDX_CONNECT_PAGE,
                .max_response = TDX_CONNECT_PAGE,
                .default_allowed = false,
                .description = "Read-only debug information outside the TDISP model",
        },
        {
                .name = TSM_SCOPE_DEBUG_WRITE,
                .number = { [TSM_UAPI_V4] = TSM_SCOPE_NUMBER_NONE, [TSM_UAPI_V5] = 3 },
                .max_request = TDX_CONNECT_PAGE,
                .max_response = TDX_CONNECT_PAGE,
                .default_allowed = false,
                .description = "Debug state changes outside the TDISP model (CAP_SYS_RAWIO, taints the kernel)",
        },
};

const TsmBackendDesc tsm_backend_tdx_connect = {
        .type = TSM_BACKEND_TDX_CONNECT,
        .description = "Intel TDX Connect (TDX module via the tdx_host driver)",
        .parent_matches = tdx_connect_parents,
        .n_parent_matches = ELEMENTSOF(tdx_connect_parents),
        .scopes = tdx_connect_scopes,
        .n_scopes = ELEMENTSOF(tdx_connect_scopes),
};
