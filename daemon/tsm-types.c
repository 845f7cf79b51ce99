/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Names for the shared platform enums; these strings appear in the API and in audit records. */

#include "macro.h"
#include "tsm-types.h"

static const char *const tsm_backend_type_table[_TSM_BACKEND_TYPE_MAX] = {
        [TSM_BACKEND_TDX_CONNECT] = "tdx-connect",
        [TSM_BACKEND_SEV_TIO] = "sev-tio",
        [TSM_BACKEND_ARM_CCA] = "arm-cca",
        [TSM_BACKEND_DEVSEC_SAMPLE] = "devsec-sample",
        [TSM_BACKEND_EMULATED] = "emulated",
};
DEFINE_STRING_TABLE_LOOKUP(tsm_backend_type, TsmBackendType);

static const char *const tsm_uapi_version_table[_TSM_UAPI_VERSION_MAX] = {
        [TSM_UAPI_V4] = "v4",
        [TSM_UAPI_V5] = "v5",
};
DEFINE_STRING_TABLE_LOOKUP(tsm_uapi_version, TsmUapiVersion);
