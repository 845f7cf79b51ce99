/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the policy loader and decisions. Runs in: tests (fuzzing builds only).
 *
 * Input: up to 8 policy files separated by NUL bytes, merged in order as main file and
 * drop-ins. Beyond "no crash, no leak", every input checks invariants:
 *   - a failed load returns no Policy and a "fN.conf..." message without control characters;
 *   - a loaded policy never lets anyone in without a rule: every allowed request has a
 *     deciding rule, every rule sets an identity key, a scope implies the device, and a debug
 *     scope is allowed only by a rule that names it;
 *   - --dump-config output loads again, dumps to the same settings, and decides the same.
 */

#include <stdio.h>

#include "fuzz.h"
#include "policy-internal.h"


#define MAX_FILES 8
#define FUZZ_INPUT_MAX (64U * 1024U)

static gid_t groups_a[] = { 100, 2001 };

static const PeerIdentity identities[] = {
        { .uid = 0, .gid = 0, .pid = 1 },
        { .uid = 0, .gid = 0, .pid = 2, .unit = (char *) "vm-web1.service" },
        { .uid = 1, .gid = 1, .pid = 3, .groups = groups_a, .n_groups = 2 },
        { .uid = 107, .gid = 107, .pid = 4, .unit = (char *) "machine-qemu\\x2d1\\x2dvm.scope" },
        { .uid = 1000, .gid = 1000, .pid = 5, .unit = (char *) "vm-web1.service" },
        { .uid = 1000, .gid = 100, .pid = 6 },
        { .uid = 65534, .gid = 65534, .pid = 7, .user_unit = (char *) "vm-web1.service" },
        { .uid = UID_INVALID, .gid = GID_INVALID, .pid = 0 },
};

static const char *const devices[] = { "0000:00:00.0", "0000:01:00.0", "0000:02:1f.7", "0000:0a:00.3",
                                       "10000:00:01.0" };
static const char *const scopes[] = { "info", "state-change", "debug-read", "debug-write" };

static char *dump(const Policy *p) {
        char *text = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&text, &n);

        CHECK(f);
        CHECK(policy_dump(p, f) == 0);
        CHECK(fclose(f) == 0);
        return text;
}

static char *settings_only(const char *text) {
        char *out = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&out, &n);

        CHECK(f);
        for (const char *p = text; *p;) {
                size_t len = strcspn(p, "\n");

                if (p[0] != '#')
                        fprintf(f, "%.*s\n", (int) len, p);
                p += len + (p[len] == '\n');
        }
        CHECK(fclose(f) == 0);
        return out;
}

static const PolicyRule *find_rule(const Policy *p, const char *name) {
        for (size_t i = 0; i < p->n_rules; i++)
                if (streq(p->rules[i]->name, name))
                        return p->rules[i];
        return NULL;
}

static void check_decisions(const Policy *p, const Policy *q) {
        const GidSet *interest = policy_groups_of_interest(p);

        /* Every gid a decision asks about is one a client's identity keeps, each once, in order. */
        for (size_t r = 0; r < p->n_rules; r++) {
                const PolicyRule *rule = p->rules[r];
                CHECK(rule->users.n > 0 || rule->groups.n > 0 || rule->units.n > 0);
                for (size_t i = 0; i < rule->groups.n; i++)
                        CHECK(gid_set_contains(interest, rule->groups.ids[i]));
        }
        for (size_t i = 0; i < p->admin_groups.n; i++)
                CHECK(gid_set_contains(interest, p->admin_groups.ids[i]));
        for (size_t i = 1; i < interest->n; i++)
                CHECK(interest->gids[i - 1] < interest->gids[i]);
        CHECK(gid_set_is_subset(interest, policy_groups_of_interest(q)) &&
              gid_set_is_subset(policy_groups_of_interest(q), interest));
        for (size_t i = 0; i < p->default_scopes.n; i++)
                CHECK(scope_name_is_default_capable(p->default_scopes.items[i]));

        for (size_t i = 0; i < ELEMENTSOF(identities); i++) {
                const PeerIdentity *id = &identities[i];
                unsigned c1, v1, c2, v2;

                CHECK(policy_is_admin(p, id) == policy_is_admin(q, id));
                policy_get_limits(p, id, &c1, &v1);
                policy_get_limits(q, id, &c2, &v2);
                CHECK(c1 == c2 && v1 == v2);
                CHECK(c1 >= 1 && c1 <= POLICY_LIMIT_MAX && v1 >= 1 && v1 <= POLICY_LIMIT_MAX);
                if (id->uid == UID_INVALID)
                        CHECK(!policy_is_client(p, id));

                for (size_t d = 0; d < ELEMENTSOF(devices); d++)
                        for (TsmBackendType b = 0; b < _TSM_BACKEND_TYPE_MAX; b++) {
                                const char *reason = NULL;
                                int dev = policy_check_device(p, id, devices[d], b, &reason);

                                CHECK(reason);
                                CHECK(dev == 0 || dev == -EPERM);
                                CHECK(dev == policy_check_device(q, id, devices[d], b, NULL));
                                CHECK((dev == 0) == !!policy_get_rule_name(p, id, devices[d], b, NULL));

                                for (size_t s = 0; s < ELEMENTSOF(scopes); s++) {
                                        int sc = policy_check_scope(p, id, devices[d], b, scopes[s],
                                                                    &reason);
                                        const char *name;

                                        CHECK(reason);
                                        CHECK(sc == policy_check_scope(q, id, devices[d], b, scopes[s],
                                                                       NULL));
                                        if (sc != 0) {
                                                CHECK(sc == -EPERM);
                                                continue;
                                        }
                                        CHECK(dev == 0);
                                        name = policy_get_rule_name(p, id, devices[d], b, scopes[s]);
                                        CHECK(name);
                                        /* SECURITY: debug scopes only by name, in the deciding rule. */
                                        if (s >= 2)
                                                CHECK(str_list_contains(&find_rule(p, name)->scopes,
                                                                        scopes[s]));
                                }
                        }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        PolicySource sources[MAX_FILES];
        char names[MAX_FILES][16];
        _cleanup_free_ char *buf = NULL, *error = NULL, *d1 = NULL, *d2 = NULL, *s1 = NULL, *s2 = NULL;
        _cleanup_(policy_unrefp) Policy *p = NULL, *q = NULL;
        size_t n = 0;
        int r;

        if (size > FUZZ_INPUT_MAX)
                return 0;

        buf = malloc(size + 1);
        CHECK(buf);
        memcpy(buf, data, size);
        buf[size] = 0;

        for (char *s = buf; n < MAX_FILES;) {
                snprintf(names[n], sizeof(names[n]), "f%zu.conf", n);
                sources[n] = (PolicySource){ names[n], s };
                n++;
                s += strlen(s);
                if (s == buf + size)
                        break;
                s++;
        }

        r = policy_load_from_text(sources, n, &p, &error);
        if (r < 0) {
                CHECK(!p);
                if (r != -ENOMEM) {
                        CHECK(error);
                        const char *after_line;

                        CHECK(error[0] == 'f' && strstr(error, ".conf"));
                        /* "fN.conf:LINE: assignment outside of a section" is only reachable if
                         * the header pre-scan and ini.c disagree about sections. */
                        after_line = strchr(error, ':');
                        if (after_line && after_line[1] >= '0' && after_line[1] <= '9') {
                                after_line += 1 + strspn(after_line + 1, "0123456789");
                                CHECK(!streq(after_line, ": assignment outside of a section"));
                        }
                        for (const char *c = error; *c; c++)
                                CHECK((unsigned char) *c >= 0x20 && *c != 0x7f);
                }
                return 0;
        }
        CHECK(p);
        CHECK(!error);

        d1 = dump(p);
        {
                const PolicySource again = { "dump", d1 };
                r = policy_load_from_text(&again, 1, &q, &error);
                if (r < 0)
                        fprintf(stderr, "dump does not load: %s\n%s\n", error, d1);
                CHECK(r == 0);
        }
        d2 = dump(q);
        s1 = settings_only(d1);
        s2 = settings_only(d2);
        CHECK(streq(s1, s2));

        check_decisions(p, q);
        return 0;
}
