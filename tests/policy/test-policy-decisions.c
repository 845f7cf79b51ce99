/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Authorisation decisions, table-driven: identities (uid, primary and supplementary groups,
 * unit) x devices (exact and globbed) x backends x scopes, including debug scopes refused by
 * default and granted only when a rule names them, the "closest miss" reason, limits, the
 * deciding rule's name, and admin rules; the gids the policy asks about, and that an identity
 * keeping only those gets the same decisions. Numeric ids only, so no NSS entry is needed.
 *
 * Runs in: tests (no privileges needed).
 */

#include "harness.h"
#include "macro.h"
#include "policy-internal.h"
#include "policy.h"

static const char policy_text[] =
        "[Defaults]\n"
        "Scopes=info state-change\n"
        "MaxContexts=4\n"
        "MaxVDevices=16\n"
        "\n"
        "[Admin]\n"
        "Users=1\n"
        "Groups=4\n"
        "\n"
        "[Client:web]\n"
        "Users=1000\n"
        "Devices=0000:01:00.0 0000:02:*\n"
        "Backends=emulated sev-tio\n"
        "MaxContexts=2\n"
        "\n"
        "# uid AND group must both match\n"
        "[Client:dbg]\n"
        "Users=1001\n"
        "Groups=2001\n"
        "Devices=0000:03:00.[0-3]\n"
        "Scopes=info debug-read\n"
        "\n"
        "[Client:grp]\n"
        "Groups=2002\n"
        "Devices=0000:04:00.0\n"
        "Scopes=info state-change debug-read debug-write\n"
        "MaxVDevices=8\n"
        "\n"
        "# A unit glob needs Users= or Groups= (a login session's unit is a scope too).\n"
        "[Client:units]\n"
        "Users=1600 1601 1602 1603\n"
        "Units=machine-*.scope vm-web1.service\n"
        "Devices=*\n"
        "Backends=emulated\n"
        "\n"
        "[Client:root-vm]\n"
        "Users=0\n"
        "Units=vm-root.service\n"
        "Devices=0000:05:00.0\n"
        "\n"
        "# A second rule for uid 1000: only reached when 'web' does not allow the request.\n"
        "[Client:web-tdx]\n"
        "Users=1000\n"
        "Devices=0000:01:00.0\n"
        "Backends=tdx-connect\n"
        "Scopes=info\n"
        "\n"
        "# systemd escapes '-' in instance names as \\x2d; a backslash is literal here.\n"
        "[Client:escaped]\n"
        "Units=vm\\x2dtest.service\n"
        "Devices=0000:06:00.0\n"
        "\n"
        "# Hex digits in either case, in the rule or the request.\n"
        "[Client:hexcase]\n"
        "Users=1800\n"
        "Devices=0000:0A:00.0 0000:0b:00.0\n";

enum {
        ID_U1000,
        ID_U1001_G2001,
        ID_U1001,
        ID_SUPP_2002,
        ID_PRIMARY_2002,
        ID_UNIT_MACHINE,
        ID_UNIT_WEB1,
        ID_UNIT_WEB2,
        ID_UNIT_NONE,
        ID_ROOT,
        ID_ROOT_UNIT,
        ID_NOBODY,
        ID_ADMIN_GROUP,
        ID_UNIT_ESCAPED,
        ID_UNIT_UNESCAPED,
        ID_U1800,
        _ID_MAX,
};

static gid_t groups_2001[] = { 100, 2001 };
static gid_t groups_2002[] = { 10, 2002 };
static gid_t groups_adm[] = { 4 };

static const PeerIdentity identities[_ID_MAX] = {
        [ID_U1000] = { .uid = 1000, .gid = 1000, .pid = 10 },
        [ID_U1001_G2001] = { .uid = 1001, .gid = 1001, .pid = 11, .groups = groups_2001, .n_groups = 2 },
        [ID_U1001] = { .uid = 1001, .gid = 1001, .pid = 12 },
        [ID_SUPP_2002] = { .uid = 1500, .gid = 1500, .pid = 13, .groups = groups_2002, .n_groups = 2 },
        [ID_PRIMARY_2002] = { .uid = 1501, .gid = 2002, .pid = 14 },
        [ID_UNIT_MACHINE] = { .uid = 1600, .gid = 1600, .pid = 15,
                              .unit = (char *) "machine-qemu\\x2d1\\x2dvm1.scope" },
        [ID_UNIT_WEB1] = { .uid = 1601, .gid = 1601, .pid = 16, .unit = (char *) "vm-web1.service" },
        [ID_UNIT_WEB2] = { .uid = 1602, .gid = 1602, .pid = 17, .unit = (char *) "vm-web2.service",
                           .user_unit = (char *) "vm-web1.service" },
        [ID_UNIT_NONE] = { .uid = 1603, .gid = 1603, .pid = 18 },
        [ID_ROOT] = { .uid = 0, .gid = 0, .pid = 1 },
        [ID_ROOT_UNIT] = { .uid = 0, .gid = 0, .pid = 19, .unit = (char *) "vm-root.service" },
        [ID_NOBODY] = { .uid = 65534, .gid = 65534, .pid = 20 },
        [ID_ADMIN_GROUP] = { .uid = 1700, .gid = 1700, .pid = 21, .groups = groups_adm, .n_groups = 1 },
        [ID_UNIT_ESCAPED] = { .uid = 1900, .gid = 1900, .pid = 22, .unit = (char *) "vm\\x2dtest.service" },
        [ID_UNIT_UNESCAPED] = { .uid = 1901, .gid = 1901, .pid = 23, .unit = (char *) "vmx2dtest.service" },
        [ID_U1800] = { .uid = 1800, .gid = 1800, .pid = 24 },
};

#define EMU TSM_BACKEND_EMULATED
#define SEV TSM_BACKEND_SEV_TIO
#define TDX TSM_BACKEND_TDX_CONNECT
#define CCA TSM_BACKEND_ARM_CCA

static const char *const R_NO_RULE = "no policy rule matches the client";
static const char *const R_NO_DEVICE = "device not in any rule matching the client";
static const char *const R_NO_BACKEND = "backend not allowed by the rules listing the device";

typedef struct Case {
        int id;
        const char *device;
        TsmBackendType backend;
        const char *scope; /* NULL: policy_check_device() */
        int expect;        /* 0 or -EPERM or -EINVAL */
        const char *reason;
        const char *rule; /* deciding rule when allowed */
} Case;

static const Case cases[] = {
        /* Users=, exact and globbed devices, Backends= restriction, Defaults scopes. */
        { ID_U1000, "0000:01:00.0", EMU, NULL, 0, "allowed", "web" },
        { ID_U1000, "0000:01:00.0", EMU, "info", 0, "allowed", "web" },
        { ID_U1000, "0000:01:00.0", SEV, "state-change", 0, "allowed", "web" },
        { ID_U1000, "0000:02:1f.7", SEV, "info", 0, "allowed", "web" },
        { ID_U1000, "0000:02:00.0", EMU, NULL, 0, "allowed", "web" },
        { ID_U1000, "0000:01:00.1", EMU, NULL, -EPERM, R_NO_DEVICE, NULL },
        { ID_U1000, "0001:02:00.0", EMU, NULL, -EPERM, R_NO_DEVICE, NULL },
        { ID_U1000, "0000:02:00.0", TDX, NULL, -EPERM, R_NO_BACKEND, NULL },
        { ID_U1000, "0000:02:00.0", CCA, "info", -EPERM, R_NO_BACKEND, NULL },
        /* The second rule for uid 1000 grants TDX on 01:00.0, info only. */
        { ID_U1000, "0000:01:00.0", TDX, "info", 0, "allowed", "web-tdx" },
        { ID_U1000, "0000:01:00.0", TDX, "state-change", -EPERM, "scope 'state-change' not granted", NULL },
        /* Debug scopes are never granted by [Defaults]. */
        { ID_U1000, "0000:01:00.0", EMU, "debug-read", -EPERM,
          "scope 'debug-read' not granted: debug scopes must be named in the rule's Scopes=", NULL },
        { ID_U1000, "0000:01:00.0", EMU, "debug-write", -EPERM,
          "scope 'debug-write' not granted: debug scopes must be named in the rule's Scopes=", NULL },
        /* Case-insensitive hex. */
        { ID_U1000, "0000:02:0A.0", EMU, NULL, 0, "allowed", "web" },
        /* The same with literals, no glob: upper-case rule and lower-case request, and the reverse. */
        { ID_U1800, "0000:0a:00.0", EMU, NULL, 0, "allowed", "hexcase" },
        { ID_U1800, "0000:0A:00.0", EMU, NULL, 0, "allowed", "hexcase" },
        { ID_U1800, "0000:0B:00.0", EMU, "info", 0, "allowed", "hexcase" },
        { ID_U1800, "0000:0c:00.0", EMU, NULL, -EPERM, R_NO_DEVICE, NULL },

        /* Users= AND Groups=: the supplementary group is required. */
        { ID_U1001_G2001, "0000:03:00.3", TDX, "info", 0, "allowed", "dbg" },
        { ID_U1001_G2001, "0000:03:00.2", EMU, "debug-read", 0, "allowed", "dbg" },
        { ID_U1001_G2001, "0000:03:00.2", EMU, "debug-write", -EPERM, "scope 'debug-write' not granted",
          NULL },
        /* Scopes= replaces the defaults: state-change is not listed in 'dbg'. */
        { ID_U1001_G2001, "0000:03:00.2", EMU, "state-change", -EPERM,
          "scope 'state-change' not granted", NULL },
        { ID_U1001_G2001, "0000:03:00.4", EMU, NULL, -EPERM, R_NO_DEVICE, NULL },
        { ID_U1001, "0000:03:00.0", EMU, "info", -EPERM, R_NO_RULE, NULL },

        /* Groups= via a supplementary group and via the primary gid. */
        { ID_SUPP_2002, "0000:04:00.0", CCA, "debug-write", 0, "allowed", "grp" },
        { ID_SUPP_2002, "0000:04:00.0", CCA, "debug-read", 0, "allowed", "grp" },
        { ID_PRIMARY_2002, "0000:04:00.0", TDX, "debug-write", 0, "allowed", "grp" },
        { ID_PRIMARY_2002, "0000:04:00.1", TDX, NULL, -EPERM, R_NO_DEVICE, NULL },

        /* Units= globs; no unit and the user unit never match. */
        { ID_UNIT_MACHINE, "0000:42:00.0", EMU, "info", 0, "allowed", "units" },
        { ID_UNIT_MACHINE, "0000:42:00.0", SEV, "info", -EPERM, R_NO_BACKEND, NULL },
        { ID_UNIT_WEB1, "0000:99:1f.7", EMU, "state-change", 0, "allowed", "units" },
        { ID_UNIT_WEB1, "0000:99:1f.7", EMU, "debug-read", -EPERM,
          "scope 'debug-read' not granted: debug scopes must be named in the rule's Scopes=", NULL },
        { ID_UNIT_WEB2, "0000:42:00.0", EMU, NULL, -EPERM, R_NO_RULE, NULL },
        { ID_UNIT_NONE, "0000:42:00.0", EMU, NULL, -EPERM, R_NO_RULE, NULL },

        /* A literal unit name with systemd's escapes; "\\x" must not degrade to "x". */
        { ID_UNIT_ESCAPED, "0000:06:00.0", TDX, "info", 0, "allowed", "escaped" },
        { ID_UNIT_UNESCAPED, "0000:06:00.0", TDX, NULL, -EPERM, R_NO_RULE, NULL },

        /* Root is not a client by default, only through a rule naming it. */
        { ID_ROOT, "0000:05:00.0", EMU, NULL, -EPERM, R_NO_RULE, NULL },
        { ID_ROOT, "0000:01:00.0", EMU, "info", -EPERM, R_NO_RULE, NULL },
        { ID_ROOT_UNIT, "0000:05:00.0", EMU, "info", 0, "allowed", "root-vm" },
        { ID_ROOT_UNIT, "0000:05:00.0", EMU, "debug-read", -EPERM,
          "scope 'debug-read' not granted: debug scopes must be named in the rule's Scopes=", NULL },
        { ID_NOBODY, "0000:01:00.0", EMU, "info", -EPERM, R_NO_RULE, NULL },
        /* An admin is not a client either. */
        { ID_ADMIN_GROUP, "0000:01:00.0", EMU, NULL, -EPERM, R_NO_RULE, NULL },

        /* Malformed requests. */
        { ID_U1000, "0000:01:00.0/../x", EMU, NULL, -EINVAL, "malformed PCI address", NULL },
        { ID_U1000, "0000:02:00.0 ", EMU, NULL, -EINVAL, "malformed PCI address", NULL },
        { ID_U1000, "0000:02:20.0", EMU, NULL, -EINVAL, "malformed PCI address", NULL },
        { ID_U1000, "0000:02:00.8", EMU, NULL, -EINVAL, "malformed PCI address", NULL },
        { ID_U1000, "", EMU, NULL, -EINVAL, "malformed PCI address", NULL },
        { ID_U1000, "0000:01:00.0", (TsmBackendType) 99, NULL, -EINVAL, "invalid arguments", NULL },
        { ID_U1000, "0000:01:00.0", _TSM_BACKEND_TYPE_INVALID, NULL, -EINVAL, "invalid arguments", NULL },
        { ID_U1000, "0000:01:00.0", EMU, "INFO", -EPERM, "no such scope on the device's backend", NULL },
        { ID_U1000, "0000:01:00.0", EMU, "0", -EPERM, "no such scope on the device's backend", NULL },
};

static Policy *load(void) {
        const PolicySource src = { "decisions.conf", policy_text };
        _cleanup_free_ char *error = NULL;
        Policy *p = NULL;
        int r;

        r = policy_load_from_text(&src, 1, &p, &error);
        if (r < 0)
                TEST_FAIL("policy_load_from_text: %s", error ?: strerror(-r));
        return p;
}

TEST(matrix) {
        _cleanup_(policy_unrefp) Policy *p = load();

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const Case *c = &cases[i];
                const PeerIdentity *id = &identities[c->id];
                const char *reason = NULL, *rule;
                int r;

                if (c->scope)
                        r = policy_check_scope(p, id, c->device, c->backend, c->scope, &reason);
                else
                        r = policy_check_device(p, id, c->device, c->backend, &reason);

                if (r != c->expect || !reason || !streq(reason, c->reason))
                        TEST_FAIL("case %zu (uid %u, %s, %s, %s): got %d '%s', expected %d '%s'", i,
                                  (unsigned) id->uid, c->device,
                                  strna(tsm_backend_type_to_string(c->backend)), strna(c->scope), r,
                                  strna(reason), c->expect, c->reason);

                rule = policy_get_rule_name(p, id, c->device, c->backend, c->scope);
                if (c->rule ? !rule || !streq(rule, c->rule) : rule != NULL)
                        TEST_FAIL("case %zu: deciding rule '%s', expected '%s'", i, strna(rule),
                                  strna(c->rule));
        }
}

/* The audit record of a refusal names the client's rule whose grant was missing: the first that
 * got furthest, as the reason speaks of it; none when no rule matches the client, or when the
 * request was refused before any rule was asked. */
TEST(denied_names_closest_rule) {
        _cleanup_(policy_unrefp) Policy *p = load();
        static const struct {
                int id;
                const char *device;
                TsmBackendType backend;
                const char *scope;
                int expect;
                const char *reason, *rule;
        } denials[] = {
                { ID_U1000, "0000:01:00.0", EMU, "info", 0, "allowed", "web" },
                { ID_U1000, "0000:09:00.0", EMU, NULL, -EPERM, R_NO_DEVICE, "web" },
                { ID_U1000, "0000:01:00.0", CCA, NULL, -EPERM, R_NO_BACKEND, "web" },
                /* 'web' does not allow TDX, 'web-tdx' does but grants info only. */
                { ID_U1000, "0000:01:00.0", TDX, "state-change", -EPERM, "scope 'state-change' not granted", "web-tdx" },
                { ID_U1001_G2001, "0000:03:00.1", EMU, "debug-write", -EPERM,
                  "scope 'debug-write' not granted", "dbg" },
                { ID_NOBODY, "0000:01:00.0", EMU, NULL, -EPERM, R_NO_RULE, NULL },
                { ID_U1000, "0000:01:00.0", EMU, "nope", -EPERM, "no such scope on the device's backend", NULL },
                { ID_U1000, "0000:01:00.0/..", EMU, NULL, -EINVAL, "malformed PCI address", NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(denials); i++) {
                const char *reason = NULL, *rule = "unset";
                int r;

                if (denials[i].scope)
                        r = policy_check_scope_full(p, &identities[denials[i].id], denials[i].device,
                                                    denials[i].backend, denials[i].scope, &reason, &rule);
                else
                        r = policy_check_device_full(p, &identities[denials[i].id], denials[i].device,
                                                     denials[i].backend, &reason, &rule);
                if (r != denials[i].expect || !streq(strna(reason), denials[i].reason) ||
                    !streq(strna(rule), strna(denials[i].rule)))
                        TEST_FAIL("case %zu: got %d '%s' rule '%s', expected %d '%s' rule '%s'", i, r, strna(reason),
                                  strna(rule), denials[i].expect, denials[i].reason, strna(denials[i].rule));
        }
}

TEST(every_scope_implies_device) {
        _cleanup_(policy_unrefp) Policy *p = load();
        static const char *const scopes[] = { "info", "state-change", "debug-read", "debug-write" };
        static const char *const devices[] = { "0000:01:00.0", "0000:02:00.1", "0000:03:00.0",
                                               "0000:04:00.0", "0000:05:00.0", "0000:42:00.0" };

        /* Exhaustive over the whole identity x device x backend x scope space: a scope is never
         * granted for a device the same client may not use. */
        for (int i = 0; i < _ID_MAX; i++)
                for (size_t d = 0; d < ELEMENTSOF(devices); d++)
                        for (TsmBackendType b = 0; b < _TSM_BACKEND_TYPE_MAX; b++)
                                for (size_t s = 0; s < ELEMENTSOF(scopes); s++) {
                                        int r = policy_check_scope(p, &identities[i], devices[d], b,
                                                                   scopes[s], NULL);
                                        if (r == 0)
                                                ASSERT_OK(policy_check_device(p, &identities[i],
                                                                              devices[d], b, NULL));
                                        else
                                                ASSERT_EQ(r, -EPERM);
                                }
}

TEST(debug_scopes_need_explicit_rule_scopes) {
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL;
        const PolicySource src = {
                "debug.conf",
                "[Defaults]\nScopes=info state-change\n"
                "[Client:inherit]\nUsers=1000\nDevices=*\n"
                "[Client:explicit-read]\nUsers=1001\nDevices=*\nScopes=debug-read\n",
        };
        PeerIdentity u1000 = { .uid = 1000, .gid = 1000 }, u1001 = { .uid = 1001, .gid = 1001 };

        ASSERT_OK(policy_load_from_text(&src, 1, &p, &error));

        for (TsmBackendType b = 0; b < _TSM_BACKEND_TYPE_MAX; b++) {
                ASSERT_OK(policy_check_scope(p, &u1000, "0000:00:01.0", b, "info", NULL));
                ASSERT_ERRNO(policy_check_scope(p, &u1000, "0000:00:01.0", b, "debug-read", NULL), EPERM);
                ASSERT_ERRNO(policy_check_scope(p, &u1000, "0000:00:01.0", b, "debug-write", NULL), EPERM);

                /* Naming debug-read grants exactly that: not debug-write, and not the defaults. */
                ASSERT_OK(policy_check_scope(p, &u1001, "0000:00:01.0", b, "debug-read", NULL));
                ASSERT_ERRNO(policy_check_scope(p, &u1001, "0000:00:01.0", b, "debug-write", NULL), EPERM);
                ASSERT_ERRNO(policy_check_scope(p, &u1001, "0000:00:01.0", b, "info", NULL), EPERM);
        }
}

/* The monitor's question, whoever the client: does any rule grant the scope for the device and
 * backend, as it would to a client it matches? Debug scopes only through a rule's own Scopes=. */
TEST(any_rule_grants_scope) {
        _cleanup_(policy_unrefp) Policy *p = load();

        ASSERT_TRUE(policy_any_rule_grants_scope(p, "0000:03:00.2", TSM_BACKEND_EMULATED, "debug-read"));
        ASSERT_FALSE(policy_any_rule_grants_scope(p, "0000:03:00.4", TSM_BACKEND_EMULATED, "debug-read"));
        ASSERT_FALSE(policy_any_rule_grants_scope(p, "0000:03:00.2", TSM_BACKEND_EMULATED, "debug-write"));
        ASSERT_TRUE(policy_any_rule_grants_scope(p, "0000:04:00.0", TSM_BACKEND_TDX_CONNECT, "debug-write"));
        /* web names no scope: it has the defaults, which grant state-change but no debug scope. */
        ASSERT_TRUE(policy_any_rule_grants_scope(p, "0000:02:00.1", TSM_BACKEND_SEV_TIO, "state-change"));
        ASSERT_FALSE(policy_any_rule_grants_scope(p, "0000:02:00.1", TSM_BACKEND_SEV_TIO, "debug-read"));
        /* web-tdx names info, for tdx-connect only: not state-change, which its Scopes= leaves out. */
        ASSERT_TRUE(policy_any_rule_grants_scope(p, "0000:01:00.0", TSM_BACKEND_TDX_CONNECT, "info"));
        ASSERT_FALSE(policy_any_rule_grants_scope(p, "0000:01:00.0", TSM_BACKEND_TDX_CONNECT, "state-change"));
        /* dbg names info and debug-read: state-change is no rule's on its devices. */
        ASSERT_TRUE(policy_any_rule_grants_scope(p, "0000:03:00.2", TSM_BACKEND_SEV_TIO, "info"));
        ASSERT_FALSE(policy_any_rule_grants_scope(p, "0000:03:00.2", TSM_BACKEND_SEV_TIO, "state-change"));
        /* A device no rule lists gets no scope at all, not even the defaults. */
        ASSERT_FALSE(policy_any_rule_grants_scope(p, "0000:07:00.0", TSM_BACKEND_SEV_TIO, "info"));
        ASSERT_FALSE(policy_any_rule_grants_scope(p, "0000:01:00.0", TSM_BACKEND_SEV_TIO, "bogus"));
        ASSERT_FALSE(policy_any_rule_grants_scope(p, "0000:01:00.0/..", TSM_BACKEND_EMULATED, "info"));
        ASSERT_FALSE(policy_any_rule_grants_scope(NULL, "0000:04:00.0", TSM_BACKEND_EMULATED, "debug-read"));
        ASSERT_FALSE(policy_any_rule_grants_scope(p, "0000:04:00.0", _TSM_BACKEND_TYPE_INVALID, "debug-read"));
}

/* The monitor's bound on attaching and binding: some rule, whoever it is for, lists the device
 * and allows its backend. */
TEST(any_rule_lists_device) {
        _cleanup_(policy_unrefp) Policy *p = load();

        ASSERT_TRUE(policy_any_rule_lists_device(p, "0000:01:00.0", TSM_BACKEND_SEV_TIO));
        ASSERT_TRUE(policy_any_rule_lists_device(p, "0000:02:00.7", TSM_BACKEND_EMULATED));
        /* web-tdx lists 01:00.0 for tdx-connect; web lists 02:* for emulated and sev-tio only,
         * and units lists every device for emulated only. */
        ASSERT_TRUE(policy_any_rule_lists_device(p, "0000:01:00.0", TSM_BACKEND_TDX_CONNECT));
        ASSERT_FALSE(policy_any_rule_lists_device(p, "0000:02:00.1", TSM_BACKEND_TDX_CONNECT));
        ASSERT_TRUE(policy_any_rule_lists_device(p, "0000:07:00.0", TSM_BACKEND_EMULATED));
        ASSERT_FALSE(policy_any_rule_lists_device(p, "0000:07:00.0", TSM_BACKEND_SEV_TIO));
        /* A rule whose Scopes= grants no default scope still lists its devices. */
        ASSERT_TRUE(policy_any_rule_lists_device(p, "0000:03:00.3", TSM_BACKEND_SEV_TIO));
        ASSERT_FALSE(policy_any_rule_lists_device(p, "0000:03:00.4", TSM_BACKEND_SEV_TIO));
        ASSERT_FALSE(policy_any_rule_lists_device(p, "0000:01:00.0/..", TSM_BACKEND_EMULATED));
        ASSERT_FALSE(policy_any_rule_lists_device(p, NULL, TSM_BACKEND_EMULATED));
        ASSERT_FALSE(policy_any_rule_lists_device(NULL, "0000:01:00.0", TSM_BACKEND_EMULATED));
        ASSERT_FALSE(policy_any_rule_lists_device(p, "0000:01:00.0", _TSM_BACKEND_TYPE_INVALID));
        ASSERT_FALSE(policy_any_rule_lists_device(p, "0000:01:00.0", _TSM_BACKEND_TYPE_MAX));
}

/* [Defaults] Scopes= narrowed: a scope it leaves out is no rule's unless one names it. */
TEST(any_rule_grants_scope_follows_defaults) {
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL;
        const PolicySource src = {
                "narrow.conf",
                "[Defaults]\nScopes=info\n"
                "[Client:vm]\nUsers=1000\nDevices=0000:01:00.0\n"
                "[Client:lock]\nUsers=1001\nDevices=0000:02:00.0\nScopes=state-change\n",
        };

        ASSERT_OK(policy_load_from_text(&src, 1, &p, &error));
        ASSERT_TRUE(policy_any_rule_grants_scope(p, "0000:01:00.0", TSM_BACKEND_EMULATED, "info"));
        ASSERT_FALSE(policy_any_rule_grants_scope(p, "0000:01:00.0", TSM_BACKEND_EMULATED, "state-change"));
        ASSERT_TRUE(policy_any_rule_grants_scope(p, "0000:02:00.0", TSM_BACKEND_EMULATED, "state-change"));
        ASSERT_FALSE(policy_any_rule_grants_scope(p, "0000:02:00.0", TSM_BACKEND_EMULATED, "info"));
}

TEST(limits) {
        _cleanup_(policy_unrefp) Policy *p = load();
        unsigned c, v;

        /* First matching rule: 'web' sets MaxContexts only. */
        policy_get_limits(p, &identities[ID_U1000], &c, &v);
        ASSERT_EQ(c, 2);
        ASSERT_EQ(v, 16);
        policy_get_limits(p, &identities[ID_SUPP_2002], &c, &v);
        ASSERT_EQ(c, 4);
        ASSERT_EQ(v, 8);
        /* No rule: [Defaults]. */
        policy_get_limits(p, &identities[ID_NOBODY], &c, &v);
        ASSERT_EQ(c, 4);
        ASSERT_EQ(v, 16);
        /* NULL policy: built-in defaults; NULL outputs are fine. */
        policy_get_limits(NULL, &identities[ID_U1000], &c, NULL);
        ASSERT_EQ(c, POLICY_DEFAULT_MAX_CONTEXTS);

        ASSERT_STREQ(policy_get_rule_name(p, &identities[ID_U1000], NULL, EMU, NULL), "web");
        ASSERT_STREQ(policy_get_rule_name(p, &identities[ID_UNIT_WEB1], NULL, EMU, NULL), "units");
        ASSERT_NULL(policy_get_rule_name(p, &identities[ID_ROOT], NULL, EMU, NULL));
}

TEST(first_matching_rule_gives_limits) {
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL;
        const PolicySource src = {
                "limits.conf",
                "[Defaults]\nMaxContexts=3\nMaxVDevices=5\n"
                "[Client:a]\nGroups=50\nDevices=0000:01:00.0\nMaxVDevices=7\n"
                "[Client:b]\nUsers=1000\nDevices=0000:02:00.0\nMaxContexts=9\nMaxVDevices=9\n",
        };
        gid_t g50[] = { 50 };
        PeerIdentity both = { .uid = 1000, .gid = 1000, .groups = g50, .n_groups = 1 },
                     only_b = { .uid = 1000, .gid = 1000 };
        unsigned c, v;

        ASSERT_OK(policy_load_from_text(&src, 1, &p, &error));

        policy_get_limits(p, &both, &c, &v);
        ASSERT_EQ(c, 3); /* 'a' comes first and inherits MaxContexts from [Defaults] */
        ASSERT_EQ(v, 7);
        policy_get_limits(p, &only_b, &c, &v);
        ASSERT_EQ(c, 9);
        ASSERT_EQ(v, 9);

        /* Devices are the union over matching rules. */
        ASSERT_OK(policy_check_device(p, &both, "0000:01:00.0", EMU, NULL));
        ASSERT_OK(policy_check_device(p, &both, "0000:02:00.0", EMU, NULL));
        ASSERT_STREQ(policy_get_rule_name(p, &both, "0000:02:00.0", EMU, NULL), "b");
        ASSERT_ERRNO(policy_check_device(p, &only_b, "0000:01:00.0", EMU, NULL), EPERM);
}

TEST(admin) {
        _cleanup_(policy_unrefp) Policy *p = load(), *empty = NULL;
        _cleanup_free_ char *error = NULL;
        PeerIdentity bad = PEER_IDENTITY_NULL;

        ASSERT_TRUE(policy_is_admin(p, &identities[ID_ROOT]));
        ASSERT_TRUE(policy_is_admin(p, &identities[ID_ROOT_UNIT]));
        ASSERT_TRUE(policy_is_admin(p, &identities[ID_ADMIN_GROUP])); /* Groups=4, supplementary */
        ASSERT_FALSE(policy_is_admin(p, &identities[ID_U1000]));
        ASSERT_FALSE(policy_is_admin(p, &identities[ID_NOBODY]));
        ASSERT_FALSE(policy_is_admin(p, &bad));
        ASSERT_FALSE(policy_is_admin(p, NULL));

        {
                PeerIdentity u1 = { .uid = 1, .gid = 1 }, g4 = { .uid = 1800, .gid = 4 };

                ASSERT_TRUE(policy_is_admin(p, &u1)); /* Users=1 */
                ASSERT_TRUE(policy_is_admin(p, &g4)); /* Groups=4, primary: an OR with Users= */
        }

        /* The empty policy: root only; nobody is a client. */
        ASSERT_OK(policy_load(NULL, NULL, &empty, &error));
        ASSERT_TRUE(policy_is_admin(empty, &identities[ID_ROOT]));
        ASSERT_FALSE(policy_is_admin(empty, &identities[ID_ADMIN_GROUP]));
        for (int i = 0; i < _ID_MAX; i++) {
                ASSERT_FALSE(policy_is_client(empty, &identities[i]));
                ASSERT_ERRNO(policy_check_device(empty, &identities[i], "0000:01:00.0", EMU, NULL), EPERM);
        }
        ASSERT_EQ(policy_n_rules(empty), 0);
        ASSERT_EQ(policy_n_rules(p), 8);
}

TEST(is_client) {
        _cleanup_(policy_unrefp) Policy *p = load();

        ASSERT_TRUE(policy_is_client(p, &identities[ID_U1000]));
        ASSERT_TRUE(policy_is_client(p, &identities[ID_U1001_G2001]));
        ASSERT_FALSE(policy_is_client(p, &identities[ID_U1001]));
        ASSERT_TRUE(policy_is_client(p, &identities[ID_PRIMARY_2002]));
        ASSERT_TRUE(policy_is_client(p, &identities[ID_UNIT_MACHINE]));
        ASSERT_FALSE(policy_is_client(p, &identities[ID_UNIT_WEB2]));
        ASSERT_FALSE(policy_is_client(p, &identities[ID_ROOT]));
        ASSERT_TRUE(policy_is_client(p, &identities[ID_ROOT_UNIT]));
}

TEST(null_arguments) {
        _cleanup_(policy_unrefp) Policy *p = load();
        const char *reason = NULL;

        ASSERT_ERRNO(policy_check_device(NULL, &identities[ID_U1000], "0000:01:00.0", EMU, &reason), EINVAL);
        ASSERT_STREQ(reason, "invalid arguments");
        ASSERT_ERRNO(policy_check_device(p, NULL, "0000:01:00.0", EMU, NULL), EINVAL);
        ASSERT_ERRNO(policy_check_device(p, &identities[ID_U1000], NULL, EMU, NULL), EINVAL);
        ASSERT_ERRNO(policy_check_scope(p, &identities[ID_U1000], "0000:01:00.0", EMU, NULL, NULL), EINVAL);
        ASSERT_FALSE(policy_is_client(NULL, &identities[ID_U1000]));
        ASSERT_NULL(policy_get_rule_name(NULL, &identities[ID_U1000], "0000:01:00.0", EMU, NULL));
}

TEST(pci_address_validation) {
        static const char *const good[] = { "0000:00:00.0", "0000:ff:1f.7", "10000:00:01.0",
                                            "fffffff:00:00.0", "0000:0A:0b.3" };
        /* An 8-digit domain is the kernel's, not tsmd's: a device with one is never served. */
        static const char *const bad[] = { "0000:00:00", "000:00:00.0", "ffffffff:00:00.0", "000000000:00:00.0",
                                           "0000:00:20.0", "0000:00:00.8", "0000:0:00.0",
                                           "0000:00:00.0 ", " 0000:00:00.0", "0000-00-00.0",
                                           "0000:00:00.00", "g000:00:00.0", "" };

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                ASSERT_TRUE(policy_pci_address_is_valid(good[i]));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ASSERT_FALSE(policy_pci_address_is_valid(bad[i]));
        ASSERT_FALSE(policy_pci_address_is_valid(NULL));
}

TEST(ref_counting) {
        Policy *p = load(), *q;

        q = policy_ref(p);
        ASSERT_TRUE(p == q);
        ASSERT_NULL(policy_unref(p)); /* one reference left */
        ASSERT_OK(policy_check_device(q, &identities[ID_U1000], "0000:01:00.0", EMU, NULL));
        ASSERT_NULL(policy_unref(q));
        ASSERT_NULL(policy_unref(NULL));
        ASSERT_NULL(policy_ref(NULL));
}

/* The rules that trust a unit alone (tsmd names them where the kernel has no SO_PEERPIDFD): those
 * with Units= and neither Users= nor Groups=, in rule order, as the files merged leave them. */
TEST(unit_only_rules) {
        const PolicySource sources[] = {
                { "main.conf", "[Client:a]\nUnits=vm-a.service\nDevices=*\n"
                               "[Client:b]\nUnits=vm-b.service\nDevices=*\n"
                               "[Client:c]\nUsers=7\nUnits=vm-c.service\nDevices=*\n"
                               "[Client:d]\nUnits=vm-d.service\nDevices=*\n" },
                /* b gains a group, c loses its user. */
                { "10-drop.conf", "[Client:b]\nGroups=9\n[Client:c]\nUsers=\n" },
        };
        _cleanup_free_ char *names = NULL, *error = NULL, *none = NULL;
        _cleanup_(policy_unrefp) Policy *p = load(), *merged = NULL;

        ASSERT_EQ(policy_unit_only_rules(p, &names), 1);
        ASSERT_STREQ(names, "escaped");
        names = mfree(names);

        ASSERT_OK(policy_load_from_text(sources, ELEMENTSOF(sources), &merged, &error));
        ASSERT_EQ(policy_unit_only_rules(merged, &names), 3);
        ASSERT_STREQ(names, "a, c, d");

        ASSERT_EQ(policy_unit_only_rules(NULL, &none), 0);
        ASSERT_NULL(none);
        ASSERT_ERRNO(policy_unit_only_rules(merged, NULL), EINVAL);
}

/* What a client's groups are asked about: every Groups= of the rules and of [Admin], in order,
 * each once; what a later file's assignment replaced is not. */
TEST(groups_of_interest) {
        const PolicySource sources[] = {
                { "a.conf", "[Admin]\nGroups=7 4\n"
                            "[Client:x]\nGroups=30 2001\nDevices=*\n"
                            "[Client:y]\nUsers=5\nGroups=2001 9\nDevices=*\n"
                            "[Client:z]\nUsers=6\nGroups=4\nDevices=*\n" },
                { "b.conf", "[Client:x]\nGroups=31\n" },
        };
        static const gid_t want[] = { 4, 7, 9, 31, 2001 }, want_decisions[] = { 4, 2001, 2002 };
        _cleanup_(policy_unrefp) Policy *p = NULL, *decisions = load(), *empty = NULL;
        _cleanup_free_ char *error = NULL;
        const GidSet *set;

        ASSERT_OK(policy_load_from_text(sources, ELEMENTSOF(sources), &p, &error));
        set = policy_groups_of_interest(p);
        ASSERT_EQ(set->n, ELEMENTSOF(want));
        for (size_t i = 0; i < set->n; i++)
                ASSERT_EQ(set->gids[i], want[i]);

        set = policy_groups_of_interest(decisions);
        ASSERT_EQ(set->n, ELEMENTSOF(want_decisions));
        for (size_t i = 0; i < set->n; i++)
                ASSERT_EQ(set->gids[i], want_decisions[i]);

        ASSERT_OK(policy_load(NULL, NULL, &empty, &error));
        ASSERT_EQ(policy_groups_of_interest(empty)->n, 0);
        ASSERT_NULL(policy_groups_of_interest(NULL));
}

/* The uids the policy names, which get metrics keys of their own: root, [Admin] Users= and the
 * rules' Users=, not a uid only a group or unit admits. */
TEST(names_uid) {
        const PolicySource sources[] = {
                { "a.conf", "[Admin]\nUsers=7\nGroups=8\n"
                            "[Client:x]\nUsers=30 31\nDevices=*\n"
                            "[Client:y]\nGroups=40\nDevices=*\n" },
        };
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL;

        ASSERT_OK(policy_load_from_text(sources, ELEMENTSOF(sources), &p, &error));
        ASSERT_TRUE(policy_names_uid(p, 0));
        ASSERT_TRUE(policy_names_uid(NULL, 0));
        ASSERT_TRUE(policy_names_uid(p, 7));
        ASSERT_TRUE(policy_names_uid(p, 30));
        ASSERT_TRUE(policy_names_uid(p, 31));
        ASSERT_FALSE(policy_names_uid(p, 8));
        ASSERT_FALSE(policy_names_uid(p, 40));
        ASSERT_FALSE(policy_names_uid(p, 1000));
        ASSERT_FALSE(policy_names_uid(p, UID_INVALID));
        ASSERT_FALSE(policy_names_uid(NULL, 7));
}

/* An identity in many more groups, and the same narrowed to the policy's groups of interest (as
 * tsmd keeps a client's), get the same decisions: every case of the matrix with its reason and
 * deciding rule, whether a client or an administrator, and the limits. */
TEST(decisions_are_the_same_with_the_groups_of_interest_only) {
        _cleanup_(policy_unrefp) Policy *p = load();
        static const gid_t noise[] = { 0, 3, 5, 10, 100, 2000, 2003, 4242, 65534 };

        for (int i = 0; i < _ID_MAX; i++) {
                PeerIdentity all = identities[i], kept;
                gid_t groups[16];
                unsigned c[2], v[2];

                ASSERT_LE(all.n_groups + ELEMENTSOF(noise), ELEMENTSOF(groups));
                memcpy(groups, all.groups ?: noise, all.n_groups * sizeof(gid_t));
                memcpy(groups + all.n_groups, noise, sizeof(noise));
                all.groups = groups;
                all.n_groups += ELEMENTSOF(noise);

                kept = all;
                kept.groups = new(gid_t, all.n_groups);
                ASSERT_NOT_NULL(kept.groups);
                memcpy(kept.groups, groups, all.n_groups * sizeof(gid_t));
                peer_identity_narrow_groups(&kept, policy_groups_of_interest(p));
                ASSERT_LE(kept.n_groups, identities[i].n_groups);

                ASSERT_EQ(policy_is_client(p, &kept), policy_is_client(p, &all));
                ASSERT_EQ(policy_is_admin(p, &kept), policy_is_admin(p, &all));
                policy_get_limits(p, &all, &c[0], &v[0]);
                policy_get_limits(p, &kept, &c[1], &v[1]);
                ASSERT_EQ(c[0], c[1]);
                ASSERT_EQ(v[0], v[1]);
                ASSERT_TRUE(policy_get_rule_name(p, &kept, NULL, EMU, NULL) ==
                            policy_get_rule_name(p, &all, NULL, EMU, NULL));
                for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
                        const Case *cs = &cases[k];
                        const char *reason[2] = {};
                        int r[2];

                        for (int w = 0; w < 2; w++) {
                                const PeerIdentity *id = w ? &kept : &all;

                                r[w] = cs->scope ? policy_check_scope(p, id, cs->device, cs->backend, cs->scope,
                                                                      &reason[w])
                                                 : policy_check_device(p, id, cs->device, cs->backend, &reason[w]);
                        }
                        ASSERT_EQ(r[0], r[1]);
                        ASSERT_STREQ(reason[0], reason[1]);
                        ASSERT_TRUE(policy_get_rule_name(p, &kept, cs->device, cs->backend, cs->scope) ==
                                    policy_get_rule_name(p, &all, cs->device, cs->backend, cs->scope));
                }
                free(kept.groups);
        }
}

/* SECURITY backstops behind the loader, which never makes what they refuse: a rule without
 * identity keys (a loader bug) matches nobody rather than everybody, and a client whose uid is
 * unknown matches no Users=, not even one listing the invalid uid. */
TEST(identity_backstops_behind_the_loader) {
        const PolicySource src = { "backstop.conf", "[Client:x]\nUsers=1000\nDevices=*\n" };
        const PeerIdentity unknown = { .uid = UID_INVALID, .gid = 1000, .pid = 30 };
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL;
        const char *reason = NULL;

        ASSERT_OK(policy_load_from_text(&src, 1, &p, &error));
        ASSERT_OK(policy_check_device(p, &identities[ID_U1000], "0000:01:00.0", EMU, &reason));

        p->rules[0]->users.ids[0] = UID_INVALID;
        ASSERT_ERRNO(policy_check_device(p, &unknown, "0000:01:00.0", EMU, &reason), EPERM);
        ASSERT_STREQ(reason, R_NO_RULE);

        p->rules[0]->users.n = 0;
        ASSERT_ERRNO(policy_check_device(p, &identities[ID_U1000], "0000:01:00.0", EMU, &reason), EPERM);
        ASSERT_STREQ(reason, R_NO_RULE);
        ASSERT_ERRNO(policy_check_device(p, &identities[ID_NOBODY], "0000:01:00.0", EMU, &reason), EPERM);
}

TEST_MAIN();
