/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Lookups over the per-backend descriptors in backend-*.c. Every scope number comes out of
 * the table of the backend that was asked: there is no shared table to fall back to.
 *
 * Runs in: monitor and worker.
 */

#include <errno.h>

#include "backend.h"
#include "macro.h"

static const TsmBackendDesc *const backend_table[_TSM_BACKEND_TYPE_MAX] = {
        [TSM_BACKEND_TDX_CONNECT] = &tsm_backend_tdx_connect,
        [TSM_BACKEND_SEV_TIO] = &tsm_backend_sev_tio,
        [TSM_BACKEND_ARM_CCA] = &tsm_backend_arm_cca,
        [TSM_BACKEND_DEVSEC_SAMPLE] = &tsm_backend_devsec_sample,
        [TSM_BACKEND_EMULATED] = &tsm_backend_emulated,
};

const TsmBackendDesc *tsm_backend_desc(TsmBackendType t) {
        if (t < 0 || t >= _TSM_BACKEND_TYPE_MAX)
                return NULL;
        return backend_table[t];
}

const TsmScopeDesc *tsm_backend_find_scope(const TsmBackendDesc *b, const char *scope_name) {
        if (!b || !scope_name)
                return NULL;

        for (size_t i = 0; i < b->n_scopes; i++)
                if (streq(b->scopes[i].name, scope_name))
                        return &b->scopes[i];

        return NULL;
}

int tsm_backend_scope_number(const TsmBackendDesc *b, const char *scope_name, TsmUapiVersion v,
                             uint32_t *ret) {
        const TsmScopeDesc *s;
        int64_t n;

        assert_return(b, -EINVAL);
        assert_return(scope_name, -EINVAL);
        assert_return(v >= 0 && v < _TSM_UAPI_VERSION_MAX, -EINVAL);

        s = tsm_backend_find_scope(b, scope_name);
        if (!s)
                return -ENOENT;

        n = s->number[v];
        if (n < 0)
                return -EOPNOTSUPP;
        /* The UAPI field is a u32; a larger value is a table bug, not something to truncate. */
        if (n > (int64_t) UINT32_MAX)
                return -ERANGE;

        if (ret)
                *ret = (uint32_t) n;
        return 0;
}

static bool match_field(const char *want, const char *have) {
        if (!want)
                return true;
        return have && streq(want, have);
}

TsmBackendType tsm_backend_type_from_parent(const char *subsystem, const char *driver,
                                            const char *sysname) {
        for (TsmBackendType t = 0; t < _TSM_BACKEND_TYPE_MAX; t++) {
                const TsmBackendDesc *b = backend_table[t];

                for (size_t i = 0; i < b->n_parent_matches; i++) {
                        const TsmParentMatch *m = &b->parent_matches[i];

                        if (match_field(m->subsystem, subsystem) && match_field(m->driver, driver) &&
                            match_field(m->sysname, sysname))
                                return t;
                }
        }

        return _TSM_BACKEND_TYPE_INVALID;
}

TsmBackendType tsm_backend_type_from_parent_driver(const char *driver) {
        if (!driver)
                return _TSM_BACKEND_TYPE_INVALID;

        /* Only rules that need nothing but the driver name may answer here: a faux_driver
         * parent could be tdx_host or devsec_link_tsm, and guessing would mislabel the TSM. */
        for (TsmBackendType t = 0; t < _TSM_BACKEND_TYPE_MAX; t++) {
                const TsmBackendDesc *b = backend_table[t];

                for (size_t i = 0; i < b->n_parent_matches; i++) {
                        const TsmParentMatch *m = &b->parent_matches[i];

                        if (m->driver && !m->sysname && streq(m->driver, driver))
                                return t;
                }
        }

        return _TSM_BACKEND_TYPE_INVALID;
}

static bool is_debug_scope(const char *name) {
        return streq(name, TSM_SCOPE_DEBUG_READ) || streq(name, TSM_SCOPE_DEBUG_WRITE);
}

int tsm_backend_desc_verify(const TsmBackendDesc *b) {
        assert_return(b, -EINVAL);

        if (!b->description || !b->scopes || b->n_scopes == 0)
                return -EINVAL;
        if (b->n_parent_matches > 0 && !b->parent_matches)
                return -EINVAL;

        for (size_t i = 0; i < b->n_scopes; i++) {
                const TsmScopeDesc *s = &b->scopes[i];

                if (isempty(s->name) || !s->description)
                        return -EINVAL;
                if (s->max_request == 0 || s->max_response == 0)
                        return -EINVAL;
                /* SECURITY: debug scopes leave the TDISP model; they must be opted into. */
                if (is_debug_scope(s->name) && s->default_allowed)
                        return -EINVAL;

                for (size_t v = 0; v < _TSM_UAPI_VERSION_MAX; v++)
                        if (s->number[v] < TSM_SCOPE_NUMBER_NONE || s->number[v] > (int64_t) UINT32_MAX)
                                return -EINVAL;

                for (size_t j = i + 1; j < b->n_scopes; j++) {
                        const TsmScopeDesc *o = &b->scopes[j];

                        if (streq(s->name, o->name))
                                return -EINVAL;

                        /* Two names for one number would make the audit log ambiguous. */
                        for (size_t v = 0; v < _TSM_UAPI_VERSION_MAX; v++)
                                if (s->number[v] >= 0 && s->number[v] == o->number[v])
                                        return -EINVAL;
                }
        }

        return 0;
}
