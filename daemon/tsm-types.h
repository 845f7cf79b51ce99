/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Vocabulary shared by the platform layer: which kind of TSM backend serves a device, and
 * which version of the kernel's iommufd TSM UAPI the running kernel speaks. Runs in: monitor
 * and worker.
 */
#pragma once

#include <errno.h>

/* The kinds of TEE Security Manager tsmd can tell apart. */
typedef enum TsmBackendType {
        TSM_BACKEND_TDX_CONNECT,    /* Intel TDX Connect (TDX host module) */
        TSM_BACKEND_SEV_TIO,        /* AMD SEV-TIO (CCP/PSP firmware) */
        TSM_BACKEND_ARM_CCA,        /* Arm CCA device assignment (RMM) */
        TSM_BACKEND_DEVSEC_SAMPLE,  /* the kernel's sample TSM (samples/devsec) */
        TSM_BACKEND_EMULATED,       /* tsmd's built-in emulated TDISP platform */
        _TSM_BACKEND_TYPE_MAX,
        _TSM_BACKEND_TYPE_INVALID = -EINVAL,
} TsmBackendType;

const char *tsm_backend_type_to_string(TsmBackendType t);
TsmBackendType tsm_backend_type_from_string(const char *s);

/* Published layouts of the iommufd TSM ioctls (see daemon/kernel/iommufd-uapi.h). */
typedef enum TsmUapiVersion {
        TSM_UAPI_V4, /* IOMMU_VDEVICE_TSM_OP + IOMMU_VDEVICE_TSM_GUEST_REQUEST, per-backend scopes */
        TSM_UAPI_V5, /* IOMMU_VDEVICE_TSM_OP + IOMMU_VDEVICE_TSM_REQ, scopes global per bus */
        _TSM_UAPI_VERSION_MAX,
        _TSM_UAPI_VERSION_INVALID = -EINVAL,
} TsmUapiVersion;

const char *tsm_uapi_version_to_string(TsmUapiVersion v);
TsmUapiVersion tsm_uapi_version_from_string(const char *s);
