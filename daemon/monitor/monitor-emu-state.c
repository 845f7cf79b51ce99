/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The emulated devices' state across a restart of tsmd (emu-state.h): saved into the fd store at
 * a stop, loaded at the next start. Runs in: monitor. */

#include "fdstore.h"
#include "log.h"
#include "monitor-internal.h"

/* Stopping with a service manager that keeps the contexts: the emulated devices' state goes with
 * them, as a real device keeps its TDI (emu-state.h). Only at a stop: a crash loses it. */
void emulated_state_save(Monitor *m) {
        _cleanup_close_ int fd = -EBADF;
        size_t n = 0;
        int r;

        if (!m->platform || !m->contexts || !tsm_platform_is_emulated(m->platform) || !fdstore_available())
                return;
        r = tsm_platform_save_emulated(m->platform, monitor_contexts_holds_device, m->contexts, &fd, &n);
        /* One snapshot in the store: one a failed removal left at the start would be taken
         * first, as likely as this one. */
        if (r >= 0 && fd >= 0)
                (void) fdstore_remove_name(FDSTORE_EMU_STATE_NAME);
        if (r >= 0 && fd >= 0)
                r = fdstore_put_name(fd, FDSTORE_EMU_STATE_NAME);
        if (r < 0)
                log_warning_errno(r, "Failed to keep the emulated devices' state for the next start, they will "
                                  "start fresh: %m");
        else if (n > 0)
                log_info("Kept the state of %zu emulated devices for the next start.", n);
}

/* The snapshot a stop kept (emu-state.h), once the contexts are in: read, and taken out of the
 * fd store, so that a crash from now on does not bring back what the devices held at that stop. */
void emulated_state_load(Monitor *m, int fd) {
        size_t n = 0;
        int r;

        r = tsm_platform_load_emulated(m->platform, fd, &n);
        if (r == -EOPNOTSUPP)
                log_notice("Ignoring the emulated devices' saved state: the platform is not emulated now.");
        else if (r == -EBADMSG)
                log_warning("Ignoring the emulated devices' saved state: it is damaged. They start fresh.");
        else if (r == -EPROTONOSUPPORT)
                log_warning("Ignoring the emulated devices' saved state: it is of another version. They start fresh.");
        else if (r < 0)
                log_warning_errno(r, "Ignoring the emulated devices' saved state, they start fresh: %m");
        else
                log_info("Restored the state of %zu emulated devices from before the restart.", n);
        r = fdstore_remove_name(FDSTORE_EMU_STATE_NAME);
        if (r < 0)
                log_warning_errno(r, "Failed to remove the emulated devices' saved state from the fd store: %m");
}
