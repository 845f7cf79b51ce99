/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The results of audit records (proto/audit-result.h): QueryAudit's check of a result filter
 * knows every error of every interface built in, the ones tsmd records that none declares, ok
 * and errno names, and nothing else; tsmctl's expansion of a short name finds each of them.
 * Runs in: tests.
 */

#include <stdlib.h>

#include "audit-result.h"
#include "harness.h"
#include "macro.h"
#include "varlink-idl.h"

static void strv_free_all(char **l) {
        for (char **p = l; p && *p; p++)
                free(*p);
        free(l);
}

TEST(every_declared_error_is_a_result) {
        size_t n = 0;

        for (size_t i = 0; varlink_builtin_idl[i]; i++) {
                _cleanup_(varlink_interface_freep) VarlinkInterface *iface = NULL;
                const char *interface;

                ASSERT_OK(varlink_interface_parse(varlink_builtin_idl[i], &iface, NULL, NULL));
                interface = varlink_interface_get_name(iface);
                /* Each error name of the IDL text: "error Name (". */
                for (const char *p = varlink_builtin_idl[i]; (p = strstr(p, "\nerror ")); p++) {
                        _cleanup_free_ char *full = NULL, *name = NULL;
                        char **expanded = NULL;
                        bool found = false;
                        int k;

                        name = strndup(p + 7, strcspn(p + 7, " ("));
                        ASSERT_NOT_NULL(name);
                        ASSERT_TRUE(asprintf(&full, "%s.%s", interface, name) > 0);
                        if (audit_result_is_known(full) != 1)
                                TEST_FAIL("'%s' is not known", full);
                        k = audit_result_expand(name, &expanded);
                        ASSERT_GE(k, 1);
                        for (int j = 0; j < k; j++)
                                found = found || streq(expanded[j], full);
                        ASSERT_NULL(expanded[k]);
                        if (!found)
                                TEST_FAIL("'%s' does not expand to '%s'", name, full);
                        strv_free_all(expanded);
                        n++;
                }
        }
        ASSERT_GE(n, 30u);
}

TEST(what_else_is_a_result) {
        static const char *const good[] = {
                "ok", "EIO", "ENOSPC", "errno-4095", "io.tsmd.Disconnected", "io.tsmd.TimedOut",
                "io.tsmd.Protocol", "io.tsmd.WorkerExited", "io.tsmd.WorkerCrashed", "io.tsmd.WorkerCompromised",
                "io.tsmd.WorkerUnresponsive", "io.tsmd.Guest.Denied", "org.varlink.service.InvalidParameter",
        };
        static const char *const bad[] = {
                "", "OK", "Denied", "denied", "E", "Eio", "errno-", "errno-x", "io.tsmd.Guest.Deniedd",
                "io.tsmd.Guest.", "io.tsmd.Guest", "io.tsmd.Nothing.Denied", "io.tsmd.Guest.OpenContext",
                "io.tsmd.Guest.Denied ", "bogus",
                /* What errno_to_name() never writes: a typo of a name, a number it has a name for. */
                "EFOO", "EIOO", "EZZZZZZZZZZZZZZZ", "errno-5", "errno-05", "errno-0", "errno-99999999999",
        };
        char **l = NULL;

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                if (audit_result_is_known(good[i]) != 1)
                        TEST_FAIL("'%s' is not known", good[i]);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (audit_result_is_known(bad[i]) != 0)
                        TEST_FAIL("'%s' is known", bad[i]);
        ASSERT_EQ(audit_result_is_known(NULL), 0);

        ASSERT_EQ(audit_result_expand("WorkerCrashed", &l), 1);
        ASSERT_STREQ(l[0], "io.tsmd.WorkerCrashed");
        strv_free_all(l);
        ASSERT_EQ(audit_result_expand("NoSuchDevice", &l), 2);
        strv_free_all(l);
        ASSERT_EQ(audit_result_expand("Bogus", &l), 0);
        ASSERT_NULL(l[0]);
        strv_free_all(l);
}

TEST_MAIN();
