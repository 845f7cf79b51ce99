/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Audit record results. Runs in: worker, clients. */

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "audit-result.h"
#include "macro.h"
#include "varlink-errors.h"
#include "varlink-idl.h"
#include "varlink-service.h"

/* Results tsmd records that no interface declares: what a call ended with when its caller went,
 * or its connection broke (varlink-errors.h), and how the worker before a worker-restart ended
 * (manager.c). */
static const char *const undeclared_results[] = {
        VARLINK_ERROR_DISCONNECTED, VARLINK_ERROR_TIMEOUT,    VARLINK_ERROR_PROTOCOL,
        "io.tsmd.WorkerExited",     "io.tsmd.WorkerCrashed",  "io.tsmd.WorkerCompromised",
        "io.tsmd.WorkerUnresponsive",
};

/* Exactly what guest-late.c writes: errno_to_name()'s name, or "errno-N" for an N it has none
 * for, in the decimal snprintf() gives. Anything else (a typo of a name: "EIOO") no record has. */
bool audit_result_is_errno(const char *s) {
        char *end;
        long n;

        if (!s)
                return false;
        if (strneq(s, "errno-", strlen("errno-"))) {
                s += strlen("errno-");
                if (s[0] < '1' || s[0] > '9')
                        return false;
                errno = 0;
                n = strtol(s, &end, 10);
                return errno == 0 && *end == 0 && n <= INT_MAX && !errno_to_name((int) n);
        }
        return errno_from_name(s) > 0;
}

int audit_result_is_known(const char *name) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *iface = NULL;
        const char *error;
        int r;

        if (!name)
                return 0;
        if (streq(name, "ok") || audit_result_is_errno(name))
                return 1;
        for (size_t i = 0; i < ELEMENTSOF(undeclared_results); i++)
                if (streq(name, undeclared_results[i]))
                        return 1;
        r = varlink_builtin_interface_of(name, &iface, &error);
        if (r <= 0)
                return r;
        return !!varlink_interface_find_error(iface, error);
}

static int strv_push(char ***l, size_t *n, char *s) {
        char **m;

        if (!s)
                return -ENOMEM;
        m = reallocarray(*l, *n + 2, sizeof(char *));
        if (!m) {
                free(s);
                return -ENOMEM;
        }
        m[(*n)++] = s;
        m[*n] = NULL;
        *l = m;
        return 0;
}

static char **strv_free_n(char **l, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(l[i]);
        free(l);
        return NULL;
}

int audit_result_expand(const char *short_name, char ***ret) {
        char **l = NULL;
        size_t n = 0;
        int r = 0;

        assert_return(short_name, -EINVAL);
        assert_return(ret, -EINVAL);

        for (size_t i = 0; varlink_builtin_idl[i] && r == 0; i++) {
                _cleanup_(varlink_interface_freep) VarlinkInterface *iface = NULL;
                char *name;

                r = varlink_interface_parse(varlink_builtin_idl[i], &iface, NULL, NULL);
                if (r < 0)
                        break;
                if (!varlink_interface_find_error(iface, short_name))
                        continue;
                if (asprintf(&name, "%s.%s", varlink_interface_get_name(iface), short_name) < 0)
                        name = NULL;
                r = strv_push(&l, &n, name);
        }
        for (size_t i = 0; i < ELEMENTSOF(undeclared_results) && r == 0; i++)
                if (streq(strrchr(undeclared_results[i], '.') + 1, short_name))
                        r = strv_push(&l, &n, strdup(undeclared_results[i]));
        if (r < 0) {
                strv_free_n(l, n);
                return r;
        }
        if (!l) {
                l = new0(char *, 1);
                if (!l)
                        return -ENOMEM;
        }
        *ret = l;
        return (int) n;
}
