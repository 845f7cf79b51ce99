/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Names of libtsm's enums, as io.tsmd.Guest spells them, from one table each. Runs in: the VMM
 * process. */

#include "libtsm-internal.h"

static const char *const tdi_state_table[_TSM_TDI_STATE_MAX] = {
        [TSM_TDI_STATE_CONFIG_UNLOCKED] = "config_unlocked",
        [TSM_TDI_STATE_CONFIG_LOCKED] = "config_locked",
        [TSM_TDI_STATE_RUN] = "run",
        [TSM_TDI_STATE_ERROR] = "error",
};

static const char *const event_kind_table[_TSM_EVENT_KIND_MAX] = {
        [TSM_EVENT_DEVICE_REMOVED] = "device-removed",
        [TSM_EVENT_BACKEND_REMOVED] = "backend-removed",
        [TSM_EVENT_STATE_CHANGED] = "state-changed",
        [TSM_EVENT_DEVICE_CHANGED] = "device-changed",
        [TSM_EVENT_DEVICE_UNBOUND] = "device-unbound",
};

static int lookup(const char *const *table, size_t n, const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (table[i] && streq(table[i], s))
                        return (int) i;
        return -EINVAL;
}

/* tsm_tdi_state_to_string(): see tsm.h. */
_public_ const char *tsm_tdi_state_to_string(TsmTdiState s) {
        /* Not NULL: Bind and GetDeviceState give it on kernel TSMs, and callers print it. Not
         * in the table either: tsm_tdi_state_from_string("unknown") stays invalid. */
        if (s == _TSM_TDI_STATE_INVALID)
                return "unknown";
        return s >= 0 && s < _TSM_TDI_STATE_MAX ? tdi_state_table[s] : NULL;
}

/* tsm_tdi_state_from_string(): see tsm.h. */
_public_ TsmTdiState tsm_tdi_state_from_string(const char *s) {
        return (TsmTdiState) lookup(tdi_state_table, ELEMENTSOF(tdi_state_table), s);
}

/* tsm_event_kind_to_string(): see tsm.h. */
_public_ const char *tsm_event_kind_to_string(TsmEventKind k) {
        return k >= 0 && k < _TSM_EVENT_KIND_MAX ? event_kind_table[k] : NULL;
}

/* tsm_event_kind_from_string(): see tsm.h. */
_public_ TsmEventKind tsm_event_kind_from_string(const char *s) {
        return (TsmEventKind) lookup(event_kind_table, ELEMENTSOF(event_kind_table), s);
}
