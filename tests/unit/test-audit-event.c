/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The events of audit records (proto/audit-event.h): every one named, once, in a form no method
 * name has; each known to QueryAudit's check, as is every method of every interface built in,
 * and nothing else. Runs in: tests.
 */

#include "audit-event.h"
#include "harness.h"
#include "macro.h"
#include "varlink-idl.h"

TEST(every_event_has_one_name) {
        for (AuditEvent e = 0; e < _AUDIT_EVENT_MAX; e++) {
                const char *name = audit_event_to_string(e);

                if (!name)
                        TEST_FAIL("event %d has no name", (int) e);
                /* Lowercase words and dashes: never "INTERFACE.Method", which is a method's. */
                ASSERT_TRUE(name[0] != 0 && strspn(name, "abcdefghijklmnopqrstuvwxyz-") == strlen(name));
                ASSERT_EQ((int) audit_event_from_string(name), (int) e);
                ASSERT_EQ(audit_event_is_known(name), 1);
                for (AuditEvent o = 0; o < e; o++)
                        if (streq(name, audit_event_to_string(o)))
                                TEST_FAIL("events %d and %d are both '%s'", (int) o, (int) e, name);
        }
        ASSERT_NULL(audit_event_to_string(_AUDIT_EVENT_MAX));
        ASSERT_NULL(audit_event_to_string(_AUDIT_EVENT_INVALID));
        ASSERT_EQ((int) audit_event_from_string("bogus"), -EINVAL);
        ASSERT_EQ((int) audit_event_from_string(NULL), -EINVAL);
}

/* A method's full name is an event (an administrator's call, a refused call), of every interface
 * tsmd serves: all of those built in. */
TEST(every_declared_method_is_an_event) {
        size_t n = 0;

        for (size_t i = 0; varlink_builtin_idl[i]; i++) {
                _cleanup_(varlink_interface_freep) VarlinkInterface *iface = NULL;

                ASSERT_OK(varlink_interface_parse(varlink_builtin_idl[i], &iface, NULL, NULL));
                for (size_t j = 0; j < varlink_interface_get_n_methods(iface); j++) {
                        const char *method = varlink_symbol_get_name(varlink_interface_get_method_by_index(iface, j));
                        _cleanup_free_ char *name = NULL;

                        ASSERT_TRUE(asprintf(&name, "%s.%s", varlink_interface_get_name(iface), method) > 0);
                        if (audit_event_is_known(name) != 1)
                                TEST_FAIL("'%s' is not known", name);
                        n++;
                }
        }
        ASSERT_GE(n, 20u);
        ASSERT_EQ(audit_event_is_known("io.tsmd.Admin.QueryAudit"), 1);
        ASSERT_EQ(audit_event_is_known("org.varlink.service.GetInfo"), 1);
}

TEST(nothing_else_is_an_event) {
        static const char *const bad[] = {
                "", "bogus", "Bind", "bind ", "guest_request", "ListDevices", ".ListDevices", "io.tsmd.Admin.",
                "io.tsmd.Admin", "io.tsmd.Admin.listDevices", "io.tsmd.Admin.Bogus", "io.tsmd.Nothing.ListDevices",
                "io.tsmd.Admin.ListDevices.", "io.tsmd.Admin.NoSuchDevice", "io.tsmd.Guest.open-context",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (audit_event_is_known(bad[i]) != 0)
                        TEST_FAIL("'%s' is known", bad[i]);
        ASSERT_EQ(audit_event_is_known(NULL), 0);
}

TEST_MAIN();
