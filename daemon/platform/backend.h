/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The backend registry: for every kind of TEE Security Manager, how sysfs shows it and which
 * request scopes it serves, by name, with the number each published iommufd UAPI version
 * uses for that scope *on that backend*. The only way to obtain a number to put into an
 * ioctl is tsm_backend_scope_number(backend, name, version); no function takes a bare number,
 * because a number means nothing without the backend and version it belongs to.
 * Facts and their sources: daemon/platform/SYSFS.md.
 *
 * Runs in: monitor and worker (pure tables, no I/O).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsm-types.h"

/* The kernel's names for the PCI request scopes (enum pci_tsm_req_scope, PCI_TSM_REQ_*). */
#define TSM_SCOPE_INFO "info"                 /* PCI_TSM_REQ_INFO */
#define TSM_SCOPE_STATE_CHANGE "state-change" /* PCI_TSM_REQ_STATE_CHANGE */
#define TSM_SCOPE_DEBUG_READ "debug-read"     /* PCI_TSM_REQ_DEBUG_READ */
#define TSM_SCOPE_DEBUG_WRITE "debug-write"   /* PCI_TSM_REQ_DEBUG_WRITE */

/* A scope number of -1 means "this scope does not exist in that UAPI version". */
#define TSM_SCOPE_NUMBER_NONE INT64_C(-1)

typedef struct TsmScopeDesc {
        const char *name;                         /* one of TSM_SCOPE_* */
        int64_t number[_TSM_UAPI_VERSION_MAX];    /* per TsmUapiVersion; -1 = not available */
        uint32_t max_request;                     /* largest request payload tsmd forwards */
        uint32_t max_response;                    /* largest response buffer tsmd offers */
        bool default_allowed;                     /* policy default when not configured */
        const char *description;
} TsmScopeDesc;

/*
 * How the parent device of /sys/class/tsm/tsmN identifies a backend. NULL fields match
 * anything. A sysname is needed because several TSM drivers hang off faux devices, which
 * all share the driver "faux_driver" (see SYSFS.md).
 */
typedef struct TsmParentMatch {
        const char *subsystem;
        const char *driver;
        const char *sysname;
} TsmParentMatch;

typedef struct TsmBackendDesc {
        TsmBackendType type;
        const char *description;
        const TsmParentMatch *parent_matches; /* empty for backends never seen in sysfs */
        size_t n_parent_matches;
        const TsmScopeDesc *scopes;
        size_t n_scopes;
} TsmBackendDesc;

/* The descriptor of a backend type, or NULL for an invalid type. Never fails otherwise. */
const TsmBackendDesc *tsm_backend_desc(TsmBackendType t);

/* The scope called scope_name in b's own table, or NULL if b has no such scope. */
const TsmScopeDesc *tsm_backend_find_scope(const TsmBackendDesc *b, const char *scope_name);

/*
 * The number to put into the ioctl's scope field, looked up in b's own table only.
 * Returns 0 and writes *ret on success;
 *   -EINVAL      b or scope_name NULL, or v not a TsmUapiVersion;
 *   -ENOENT      b has no scope of that name (Varlink: io.tsmd.NoSuchScope);
 *   -EOPNOTSUPP  the scope exists but has no number in UAPI version v;
 *   -ERANGE      the table holds a number that does not fit the u32 field (table bug).
 */
int tsm_backend_scope_number(const TsmBackendDesc *b, const char *scope_name, TsmUapiVersion v,
                             uint32_t *ret);

/*
 * Recognises a backend from the parent device of a tsm class device. Any argument may be
 * NULL when unknown. Returns _TSM_BACKEND_TYPE_INVALID when nothing matches.
 */
TsmBackendType tsm_backend_type_from_parent(const char *subsystem, const char *driver,
                                            const char *sysname);

/*
 * Convenience for parents identified by driver alone ("ccp"). Returns
 * _TSM_BACKEND_TYPE_INVALID for drivers that do not identify a backend by themselves, such as
 * "faux_driver", which several backends share.
 */
TsmBackendType tsm_backend_type_from_parent_driver(const char *driver);

/*
 * Consistency check of a descriptor (the registry test runs it on every shipped one): scope
 * names present and unique, numbers -1 or within u32 and unique per version inside the table,
 * payload limits non-zero, debug scopes never allowed by default. -EINVAL on the first
 * violation.
 */
int tsm_backend_desc_verify(const TsmBackendDesc *b);

/* One descriptor per backend file. Use tsm_backend_desc() rather than these directly. */
extern const TsmBackendDesc tsm_backend_tdx_connect;
extern const TsmBackendDesc tsm_backend_sev_tio;
extern const TsmBackendDesc tsm_backend_arm_cca;
extern const TsmBackendDesc tsm_backend_devsec_sample;
extern const TsmBackendDesc tsm_backend_emulated;
