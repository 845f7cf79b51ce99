/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Capability drop and verification with libcap. Runs in: monitor and worker. */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>

#include "capability.h"
#include "log.h"

/* The minimum the monitor keeps, and what each is for: also what fails without it. */
static const struct {
        cap_value_t cap;
        const char *needed_for;
} tsmd_capabilities[] = {
        { CAP_SYS_RAWIO,    "the debug-write scope (the kernel requires it)" },
        { CAP_SYS_RESOURCE, "iommufd's RLIMIT_MEMLOCK accounting mode" },
        { CAP_SETUID,       "starting a worker as its own user" },
        { CAP_SETGID,       "starting a worker as its own user" },
        { CAP_SETPCAP,      "dropping capabilities from the bounding set, tsmd's and a worker's" },
        { CAP_KILL,         "stopping a worker, which runs as another user" },
};

bool capability_is_minimum(cap_value_t c) {
        for (size_t i = 0; i < ELEMENTSOF(tsmd_capabilities); i++)
                if (tsmd_capabilities[i].cap == c)
                        return true;
        return false;
}

/* The last capability the kernel knows by PR_CAPBSET_READ, which answers EINVAL past it. Any
 * other failure (a seccomp filter) says nothing of where that is: then all that a capability
 * set can hold, so that a drop or a check covers every one the kernel may know. */
static cap_value_t probe_last_cap(void) {
        cap_value_t c = CAP_LAST_CAP;

        if (prctl(PR_CAPBSET_READ, (unsigned long) c, 0, 0, 0) >= 0) {
                for (; c < CAPABILITY_LAST_POSSIBLE; c++)
                        if (prctl(PR_CAPBSET_READ, (unsigned long) c + 1, 0, 0, 0) < 0)
                                return errno == EINVAL ? c : CAPABILITY_LAST_POSSIBLE;
                return c;
        }
        while (errno == EINVAL && c > 0) {
                c--;
                if (prctl(PR_CAPBSET_READ, (unsigned long) c, 0, 0, 0) >= 0)
                        return c;
        }
        return CAPABILITY_LAST_POSSIBLE;
}

cap_value_t capability_last_cap(void) {
        static cap_value_t saved = -1;
        _cleanup_close_ int fd = -EBADF;
        char buf[16] = "";
        char *end;
        long v;

        if (saved >= 0)
                return saved;
        fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && read(fd, buf, sizeof(buf) - 1) > 0) {
                errno = 0;
                v = strtol(buf, &end, 10);
                if (errno == 0 && end != buf && (*end == '\n' || *end == 0) && v >= 0 &&
                    v <= CAPABILITY_LAST_POSSIBLE) {
                        saved = (cap_value_t) v;
                        return saved;
                }
        }
        /* No /proc (or not as expected). */
        saved = probe_last_cap();
        return saved;
}

/* Whether c is in the bounding (or ambient) set: 1, 0, or -errno if that cannot be read. One
 * the kernel does not know (past its last, when that could not be found) is in no set: EINVAL. */
static int bounding_has(cap_value_t c) {
        int k = prctl(PR_CAPBSET_READ, (unsigned long) c, 0, 0, 0);

        return k >= 0 ? k : errno == EINVAL ? 0 : -errno;
}

static int ambient_has(cap_value_t c) {
        int k = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, (unsigned long) c, 0, 0);

        return k >= 0 ? k : errno == EINVAL ? 0 : -errno;
}

int capability_drop_to_minimum(bool allow_more) {
        cap_value_t last = capability_last_cap();
        _cleanup_(cap_freep) cap_t have = NULL, want = NULL, now = NULL;
        cap_flag_value_t v;
        int r;

        have = cap_get_proc();
        want = cap_init(); /* all clear */
        if (!have || !want)
                return -ENOMEM;

        /* Keep the minimum where we have it; never add what we lack, but say what it costs: a
         * bounding set without one (a container's, a unit's) is the admin's to widen. */
        for (size_t i = 0; i < ELEMENTSOF(tsmd_capabilities); i++) {
                cap_value_t c = tsmd_capabilities[i].cap;

                if (cap_get_flag(have, c, CAP_PERMITTED, &v) >= 0 && v == CAP_SET) {
                        (void) cap_set_flag(want, CAP_PERMITTED, 1, &c, CAP_SET);
                        (void) cap_set_flag(want, CAP_EFFECTIVE, 1, &c, CAP_SET);
                } else {
                        _cleanup_(cap_name_freep) char *name = cap_to_name(c);

                        log_warning("Capability %s is not ours to keep (not in the bounding set tsmd was started "
                                    "with?): %s will fail.", strna(name), tsmd_capabilities[i].needed_for);
                }
        }

        /* The bounding set first (needs CAP_SETPCAP, which is still effective now). */
        for (cap_value_t c = 0; c <= last; c++) {
                if (capability_is_minimum(c))
                        continue;
                /* In the set, or unreadable: dropped (and checked below) all the same. */
                if (bounding_has(c) != 0 && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EPERM &&
                    errno != EINVAL) {
                        _cleanup_(cap_name_freep) char *name = cap_to_name(c);

                        return log_error_errno(-errno, "Failed to drop capability %s from the bounding set: %m",
                                               strna(name));
                }
        }
        (void) prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);

        if (cap_set_proc(want) < 0)
                return log_error_errno(-errno, "Failed to drop capabilities: %m");

        /* SECURITY: verify, do not assume. */
        now = cap_get_proc();
        if (!now)
                return -ENOMEM;
        r = 0;
        for (cap_value_t c = 0; c <= last; c++) {
                if (capability_is_minimum(c))
                        continue;
                if ((cap_get_flag(now, c, CAP_EFFECTIVE, &v) >= 0 && v == CAP_SET) ||
                    (cap_get_flag(now, c, CAP_PERMITTED, &v) >= 0 && v == CAP_SET) || bounding_has(c) != 0) {
                        _cleanup_(cap_name_freep) char *name = cap_to_name(c);

                        log_full(allow_more ? LOG_WARNING : LOG_ERR, "Capability %s could not be dropped.",
                                 strna(name));
                        r = -EPERM;
                }
        }
        return allow_more ? 0 : r;
}

void capability_log_effective(void) {
        _cleanup_(cap_freep) cap_t now = cap_get_proc();
        char buf[512] = "";
        size_t n = 0;

        for (cap_value_t c = 0; now && c <= capability_last_cap(); c++) {
                cap_flag_value_t v;
                char *name;

                if (cap_get_flag(now, c, CAP_EFFECTIVE, &v) < 0 || v != CAP_SET)
                        continue;
                name = cap_to_name(c);
                n += (size_t) snprintf(buf + n, sizeof(buf) - MIN(n, sizeof(buf)), "%s%s", n ? "," : "", strna(name));
                cap_free(name);
                if (n >= sizeof(buf))
                        break;
        }
        log_info("Effective capabilities: %s", n ? buf : "(none)");
}

int capability_verify_none(void) {
        _cleanup_(cap_freep) cap_t now = cap_get_proc(), none = cap_init();
        int r = 0;

        if (!now || !none)
                return -ENOMEM;
        if (cap_compare(now, none) != 0) {
                log_error("Capabilities remain in the effective, permitted or inheritable set.");
                r = -EPERM;
        }
        for (cap_value_t c = 0; c <= capability_last_cap(); c++) {
                if (bounding_has(c) != 0 || ambient_has(c) != 0) {
                        _cleanup_(cap_name_freep) char *name = cap_to_name(c);

                        log_error("Capability %s remains in the bounding or ambient set.", strna(name));
                        r = -EPERM;
                }
        }
        if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
                log_error("No-new-privileges is not set.");
                r = -EPERM;
        }
        return r;
}
