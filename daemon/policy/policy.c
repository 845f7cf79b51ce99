/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Policy objects: reference counting, the authorisation decisions and --dump-config. The
 * decision functions are pure (no I/O, no NSS: names were resolved when the files were
 * loaded), so they are cheap enough to run for every request. Runs in: monitor and
 * worker.
 */

#include <fnmatch.h>
#include <inttypes.h>
#include <stdarg.h>

#include "backend.h"
#include "ini.h"
#include "log.h"
#include "policy-internal.h"
#include "tsm-priv.h"

static const char *const policy_key_table[_POLICY_KEY_MAX] = {
        [POLICY_KEY_USERS] = "Users",
        [POLICY_KEY_GROUPS] = "Groups",
        [POLICY_KEY_UNITS] = "Units",
        [POLICY_KEY_DEVICES] = "Devices",
        [POLICY_KEY_BACKENDS] = "Backends",
        [POLICY_KEY_SCOPES] = "Scopes",
        [POLICY_KEY_MAX_CONTEXTS] = "MaxContexts",
        [POLICY_KEY_MAX_VDEVICES] = "MaxVDevices",
};
DEFINE_STRING_TABLE_LOOKUP(policy_key, PolicyKey);

void id_list_done(IdList *l) {
        l->ids = mfree(l->ids);
        l->text = mfree(l->text);
        l->n = 0;
}

void str_list_done(StrList *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->items[i]);
        l->items = mfree(l->items);
        l->n = 0;
}

bool str_list_contains(const StrList *l, const char *s) {
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->items[i], s))
                        return true;
        return false;
}

static void append_ids(gid_t *gids, size_t *n, const IdList *l) {
        for (size_t i = 0; i < l->n; i++)
                gids[(*n)++] = l->ids[i];
}

int policy_collect_groups_of_interest(Policy *p) {
        _cleanup_free_ gid_t *gids = NULL;
        size_t n = p->admin_groups.n, k = 0;

        for (size_t i = 0; i < p->n_rules; i++)
                n += p->rules[i]->groups.n;
        if (n > 0) {
                gids = new(gid_t, n);
                if (!gids)
                        return -ENOMEM;
                append_ids(gids, &k, &p->admin_groups);
                for (size_t i = 0; i < p->n_rules; i++)
                        append_ids(gids, &k, &p->rules[i]->groups);
                qsort(gids, n, sizeof(gid_t), cmp_gid);
                /* Each once. */
                k = 0;
                for (size_t i = 0; i < n; i++)
                        if (k == 0 || gids[k - 1] != gids[i])
                                gids[k++] = gids[i];
        }

        free(p->groups_of_interest.gids);
        p->groups_of_interest = (GidSet){ .gids = TAKE_PTR(gids), .n = k };
        return 0;
}

const GidSet *policy_groups_of_interest(const Policy *p) {
        return p ? &p->groups_of_interest : NULL;
}

static bool id_list_contains(const IdList *l, uint32_t id) {
        for (size_t i = 0; i < l->n; i++)
                if (l->ids[i] == id)
                        return true;
        return false;
}

bool scope_name_is_known(const char *name) {
        for (TsmBackendType t = 0; t < _TSM_BACKEND_TYPE_MAX; t++)
                if (tsm_backend_find_scope(tsm_backend_desc(t), name))
                        return true;
        return false;
}

/* A scope may be granted by [Defaults] only if no backend requires an explicit opt-in for
 * it. The registry, not a list here, says which scopes those are (debug-read/-write today). */
bool scope_name_is_default_capable(const char *name) {
        bool found = false;

        for (TsmBackendType t = 0; t < _TSM_BACKEND_TYPE_MAX; t++) {
                const TsmScopeDesc *s = tsm_backend_find_scope(tsm_backend_desc(t), name);

                if (!s)
                        continue;
                if (!s->default_allowed)
                        return false;
                found = true;
        }

        /* SECURITY: belt and braces for the two scopes the kernel calls debug. */
        if (streq(name, TSM_SCOPE_DEBUG_READ) || streq(name, TSM_SCOPE_DEBUG_WRITE))
                return false;
        return found;
}

Policy *policy_new_empty(void) {
        Policy *p;

        p = new0(Policy, 1);
        if (!p)
                return NULL;

        p->n_ref = 1;
        p->default_max_contexts = POLICY_DEFAULT_MAX_CONTEXTS;
        p->default_max_vdevices = POLICY_DEFAULT_MAX_VDEVICES;
        return p;
}

PolicyRule *policy_rule_free(PolicyRule *r) {
        if (!r)
                return NULL;

        free(r->name);
        id_list_done(&r->users);
        id_list_done(&r->groups);
        str_list_done(&r->units);
        str_list_done(&r->devices);
        str_list_done(&r->scopes);
        return mfree(r);
}

static Policy *policy_free(Policy *p) {
        for (size_t i = 0; i < p->n_rules; i++)
                policy_rule_free(p->rules[i]);
        free(p->rules);

        for (size_t i = 0; i < p->n_sources; i++)
                free(p->sources[i]);
        free(p->sources);

        str_list_done(&p->default_scopes);
        id_list_done(&p->admin_users);
        id_list_done(&p->admin_groups);
        free(p->groups_of_interest.gids);
        free(p->resolved_names);
        return mfree(p);
}

Policy *policy_ref(Policy *p) {
        if (!p)
                return NULL;

        assert(p->n_ref > 0);
        p->n_ref++;
        return p;
}

Policy *policy_unref(Policy *p) {
        if (!p)
                return NULL;

        assert(p->n_ref > 0);
        if (--p->n_ref > 0)
                return NULL;
        return policy_free(p);
}

const char *policy_resolved_names(const Policy *p) {
        return p ? strempty(p->resolved_names) : "";
}

size_t policy_n_rules(const Policy *p) {
        return p ? p->n_rules : 0;
}

int policy_unit_only_rules(const Policy *p, char **ret) {
        _cleanup_free_ char *names = NULL;
        int n = 0;

        assert_return(ret, -EINVAL);

        for (size_t i = 0; p && i < p->n_rules; i++) {
                const PolicyRule *r = p->rules[i];
                char *joined;

                if (r->units.n == 0 || r->users.n > 0 || r->groups.n > 0)
                        continue;
                if (asprintf(&joined, "%s%s%s", strempty(names), names ? ", " : "", r->name) < 0)
                        return -ENOMEM;
                free(names);
                names = joined;
                n++;
        }
        *ret = TAKE_PTR(names);
        return n;
}

void policy_warn_unit_only_rules(const Policy *p) {
        _cleanup_free_ char *names = NULL;
        int r;

        if (peer_identity_kernel_has_peerpidfd() > 0)
                return;
        r = policy_unit_only_rules(p, &names);
        if (r < 0)
                log_oom();
        if (r <= 0)
                return;
        log_warning("This kernel does not name a client by pidfd (SO_PEERPIDFD, Linux 6.5): its unit is read by "
                    "pid, and a client that exits before tsmd accepts its connection leaves that pid to the next "
                    "process of its uid to take it, whatever that process's unit. Client rules that match on Units= "
                    "alone, with neither Users= nor Groups=: %s. Pair them with Users= naming the uids their VMMs "
                    "run as (tsmd-policy.conf(5)).", names);
}

static bool is_hex(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned hex_value(char c) {
        if (c >= '0' && c <= '9')
                return (unsigned) (c - '0');
        if (c >= 'a' && c <= 'f')
                return (unsigned) (c - 'a' + 10);
        return (unsigned) (c - 'A' + 10);
}

bool policy_pci_address_is_valid(const char *s) {
        size_t n = 0;

        if (!s)
                return false;

        /* Domain: sysfs prints at least 4 digits; VMD domains use 5 (10000 and up). tsmd serves
         * up to 7 (discovery skips a device of 8): a rule naming one would never match. */
        while (is_hex(s[n]))
                n++;
        if (n < 4 || n > TSM_PRIV_PCI_DOMAIN_DIGITS_MAX || s[n] != ':')
                return false;
        s += n + 1;

        if (!is_hex(s[0]) || !is_hex(s[1]) || s[2] != ':')
                return false;
        s += 3;

        if (!is_hex(s[0]) || !is_hex(s[1]) || s[2] != '.')
                return false;
        if (hex_value(s[0]) * 16 + hex_value(s[1]) > 0x1f)
                return false;
        s += 3;

        return s[0] >= '0' && s[0] <= '7' && s[1] == 0;
}

static bool rule_matches_identity(const PolicyRule *r, const PeerIdentity *id) {
        /* SECURITY: a rule without identity keys would match everybody. The loader refuses
         * such rules; this keeps a future loader bug from turning into an open door. */
        if (r->users.n == 0 && r->groups.n == 0 && r->units.n == 0)
                return false;

        if (r->users.n > 0 && (id->uid == UID_INVALID || !id_list_contains(&r->users, id->uid)))
                return false;

        if (r->groups.n > 0) {
                bool found = false;

                for (size_t i = 0; i < r->groups.n && !found; i++)
                        found = peer_identity_in_group(id, r->groups.ids[i]);
                if (!found)
                        return false;
        }

        if (r->units.n > 0) {
                bool found = false;

                /* An unverified or absent unit matches no Units= glob, not even "*". */
                if (!id->unit)
                        return false;
                for (size_t i = 0; i < r->units.n && !found; i++)
                        found = fnmatch(r->units.items[i], id->unit, FNM_NOESCAPE) == 0;
                if (!found)
                        return false;
        }

        return true;
}

static bool rule_lists_device(const PolicyRule *r, const char *pci_address) {
        /* Hex digits are case-insensitive; sysfs writes them in lower case. The address was
         * validated, so '*' cannot stretch over anything but hex digits, ':' and '.'. */
        for (size_t i = 0; i < r->devices.n; i++)
                if (fnmatch(r->devices.items[i], pci_address, FNM_NOESCAPE | FNM_CASEFOLD) == 0)
                        return true;
        return false;
}

static bool rule_allows_backend(const PolicyRule *r, TsmBackendType backend) {
        return r->backends == 0 || (r->backends & (UINT32_C(1) << backend));
}

typedef enum Verdict {
        VERDICT_NO_RULE,
        VERDICT_NO_DEVICE,
        VERDICT_NO_BACKEND,
        VERDICT_NO_SCOPE,
        VERDICT_SCOPE_NOT_DEFAULT,
        VERDICT_ALLOWED,
} Verdict;

/* The verdict of one rule for one request, whoever asks: how far the request got. */
static Verdict rule_verdict_for_device(const Policy *p, const PolicyRule *r, const char *pci_address,
                                       TsmBackendType backend, const TsmScopeDesc *scope) {
        if (!rule_lists_device(r, pci_address))
                return VERDICT_NO_DEVICE;
        if (!rule_allows_backend(r, backend))
                return VERDICT_NO_BACKEND;
        if (!scope)
                return VERDICT_ALLOWED;

        if (r->scopes.n > 0)
                return str_list_contains(&r->scopes, scope->name) ? VERDICT_ALLOWED :
                                                                     VERDICT_NO_SCOPE;

        /* SECURITY: scopes that need an opt-in (debug-read, debug-write) are never granted by
         * [Defaults], whatever it lists; the loader already refuses to let it list them. */
        if (!scope->default_allowed || !scope_name_is_default_capable(scope->name))
                return VERDICT_SCOPE_NOT_DEFAULT;
        return str_list_contains(&p->default_scopes, scope->name) ? VERDICT_ALLOWED :
                                                                    VERDICT_NO_SCOPE;
}

/* The same, for the peer id. */
static Verdict rule_verdict(const Policy *p, const PolicyRule *r, const PeerIdentity *id,
                            const char *pci_address, TsmBackendType backend,
                            const TsmScopeDesc *scope) {
        if (!rule_matches_identity(r, id))
                return VERDICT_NO_RULE;
        return rule_verdict_for_device(p, r, pci_address, backend, scope);
}

bool policy_any_rule_grants_scope(const Policy *p, const char *pci_address, TsmBackendType backend,
                                  const char *scope_name) {
        const TsmScopeDesc *scope;

        if (!p || !pci_address || !scope_name || backend < 0 || backend >= _TSM_BACKEND_TYPE_MAX ||
            !policy_pci_address_is_valid(pci_address))
                return false;
        scope = tsm_backend_find_scope(tsm_backend_desc(backend), scope_name);
        if (!scope)
                return false;
        for (size_t i = 0; i < p->n_rules; i++)
                if (rule_verdict_for_device(p, p->rules[i], pci_address, backend, scope) == VERDICT_ALLOWED)
                        return true;
        return false;
}

bool policy_any_rule_lists_device(const Policy *p, const char *pci_address, TsmBackendType backend) {
        if (!p || !pci_address || backend < 0 || backend >= _TSM_BACKEND_TYPE_MAX ||
            !policy_pci_address_is_valid(pci_address))
                return false;
        for (size_t i = 0; i < p->n_rules; i++)
                if (rule_verdict_for_device(p, p->rules[i], pci_address, backend, NULL) == VERDICT_ALLOWED)
                        return true;
        return false;
}

/* Static reasons, so callers can keep the pointer without caring about lifetimes. */
static const struct {
        const char *scope;
        const char *not_granted;
        const char *not_default;
} scope_reasons[] = {
        { TSM_SCOPE_INFO, "scope 'info' not granted", "scope 'info' must be named in the rule's Scopes=" },
        { TSM_SCOPE_STATE_CHANGE, "scope 'state-change' not granted",
          "scope 'state-change' must be named in the rule's Scopes=" },
        { TSM_SCOPE_DEBUG_READ, "scope 'debug-read' not granted",
          "scope 'debug-read' not granted: debug scopes must be named in the rule's Scopes=" },
        { TSM_SCOPE_DEBUG_WRITE, "scope 'debug-write' not granted",
          "scope 'debug-write' not granted: debug scopes must be named in the rule's Scopes=" },
};

static const char *verdict_reason(Verdict v, const char *scope_name) {
        switch (v) {
        case VERDICT_NO_RULE:
                return "no policy rule matches the client";
        case VERDICT_NO_DEVICE:
                return "device not in any rule matching the client";
        case VERDICT_NO_BACKEND:
                return "backend not allowed by the rules listing the device";
        case VERDICT_NO_SCOPE:
        case VERDICT_SCOPE_NOT_DEFAULT:
                for (size_t i = 0; i < ELEMENTSOF(scope_reasons); i++)
                        if (scope_name && streq(scope_reasons[i].scope, scope_name))
                                return v == VERDICT_NO_SCOPE ? scope_reasons[i].not_granted :
                                                               scope_reasons[i].not_default;
                return v == VERDICT_NO_SCOPE ? "scope not granted" :
                                               "scope must be named in the rule's Scopes=";
        case VERDICT_ALLOWED:
                return "allowed";
        }
        return "denied";
}

/*
 * The first rule allowing the request, or NULL with *ret_verdict saying how far the best rule
 * got, so the reason names the closest miss ("scope not granted" beats "no rule matches"), and
 * *ret_closest the first rule that got that far: the client's rule whose grant was missing (NULL
 * when no rule matches the client).
 */
static const PolicyRule *evaluate(const Policy *p, const PeerIdentity *id, const char *pci_address,
                                  TsmBackendType backend, const TsmScopeDesc *scope,
                                  Verdict *ret_verdict, const PolicyRule **ret_closest) {
        const PolicyRule *closest = NULL;
        Verdict best = VERDICT_NO_RULE;

        for (size_t i = 0; i < p->n_rules; i++) {
                Verdict v = rule_verdict(p, p->rules[i], id, pci_address, backend, scope);

                if (v == VERDICT_ALLOWED) {
                        *ret_verdict = v;
                        *ret_closest = p->rules[i];
                        return p->rules[i];
                }
                if (v > best) {
                        best = v;
                        closest = p->rules[i];
                }
        }

        *ret_verdict = best;
        *ret_closest = closest;
        return NULL;
}

/* Reasons of refusals before any rule is asked. */
static const char reason_invalid_arguments[] = "invalid arguments";
static const char reason_malformed_address[] = "malformed PCI address";
static const char reason_no_such_scope[] = "no such scope on the device's backend";

/* ret_rule: the rule that allowed it; ret_closest: that rule, or the one of the client's whose
 * grant was missing (NULL when none matches the client, or the request was refused before any
 * rule was asked). */
static int check(const Policy *p, const PeerIdentity *id, const char *pci_address,
                 TsmBackendType backend, bool want_scope, const char *scope_name,
                 const char **ret_reason, const PolicyRule **ret_rule, const PolicyRule **ret_closest) {
        const TsmScopeDesc *scope = NULL;
        const PolicyRule *rule, *closest;
        const char *reason;
        Verdict v;

        if (!p || !id || !pci_address || backend < 0 || backend >= _TSM_BACKEND_TYPE_MAX ||
            (want_scope && !scope_name)) {
                reason = reason_invalid_arguments;
                goto invalid;
        }
        /* SECURITY: globs are matched against well-formed addresses only; a '*' must never get
         * the chance to match "0000:01:00.0/../whatever". */
        if (!policy_pci_address_is_valid(pci_address)) {
                reason = reason_malformed_address;
                goto invalid;
        }

        if (want_scope) {
                scope = tsm_backend_find_scope(tsm_backend_desc(backend), scope_name);
                if (!scope) {
                        if (ret_reason)
                                *ret_reason = reason_no_such_scope;
                        return -EPERM;
                }
        }

        rule = evaluate(p, id, pci_address, backend, scope, &v, &closest);
        if (ret_reason)
                *ret_reason = verdict_reason(v, scope ? scope->name : NULL);
        if (ret_rule)
                *ret_rule = rule;
        if (ret_closest)
                *ret_closest = closest;
        return rule ? 0 : -EPERM;

invalid:
        if (ret_reason)
                *ret_reason = reason;
        return -EINVAL;
}

size_t policy_reason_max_length(void) {
        static const char *const invalid[] = { reason_invalid_arguments, reason_malformed_address,
                                               reason_no_such_scope };
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(invalid); i++)
                n = MAX(n, strlen(invalid[i]));
        for (Verdict v = VERDICT_NO_RULE; v <= VERDICT_ALLOWED; v++) {
                n = MAX(n, strlen(verdict_reason(v, NULL)));
                for (size_t i = 0; i < ELEMENTSOF(scope_reasons); i++)
                        n = MAX(n, strlen(verdict_reason(v, scope_reasons[i].scope)));
        }
        return n;
}

int policy_check_device(const Policy *p, const PeerIdentity *id, const char *pci_address,
                        TsmBackendType backend, const char **ret_reason) {
        return check(p, id, pci_address, backend, false, NULL, ret_reason, NULL, NULL);
}

int policy_check_scope(const Policy *p, const PeerIdentity *id, const char *pci_address,
                       TsmBackendType backend, const char *scope_name, const char **ret_reason) {
        return check(p, id, pci_address, backend, true, scope_name, ret_reason, NULL, NULL);
}

static int check_named(const Policy *p, const PeerIdentity *id, const char *pci_address, TsmBackendType backend,
                       bool want_scope, const char *scope_name, const char **ret_reason, const char **ret_rule) {
        const PolicyRule *closest = NULL;
        int r;

        r = check(p, id, pci_address, backend, want_scope, scope_name, ret_reason, NULL, &closest);
        if (ret_rule)
                *ret_rule = closest ? closest->name : NULL;
        return r;
}

int policy_check_device_full(const Policy *p, const PeerIdentity *id, const char *pci_address,
                             TsmBackendType backend, const char **ret_reason, const char **ret_rule) {
        return check_named(p, id, pci_address, backend, false, NULL, ret_reason, ret_rule);
}

int policy_check_scope_full(const Policy *p, const PeerIdentity *id, const char *pci_address,
                            TsmBackendType backend, const char *scope_name, const char **ret_reason,
                            const char **ret_rule) {
        return check_named(p, id, pci_address, backend, true, scope_name, ret_reason, ret_rule);
}

static const PolicyRule *first_matching_rule(const Policy *p, const PeerIdentity *id) {
        if (!p || !id)
                return NULL;
        for (size_t i = 0; i < p->n_rules; i++)
                if (rule_matches_identity(p->rules[i], id))
                        return p->rules[i];
        return NULL;
}

bool policy_is_client(const Policy *p, const PeerIdentity *id) {
        return first_matching_rule(p, id) != NULL;
}

bool policy_names_uid(const Policy *p, uid_t uid) {
        if (uid == 0)
                return true;
        if (!p || uid == UID_INVALID)
                return false;
        if (id_list_contains(&p->admin_users, uid))
                return true;
        for (size_t i = 0; i < p->n_rules; i++)
                if (id_list_contains(&p->rules[i]->users, uid))
                        return true;
        return false;
}

bool policy_is_admin(const Policy *p, const PeerIdentity *id) {
        if (!id || id->uid == UID_INVALID)
                return false;
        /* Root can do everything the Admin interface offers anyway, by other means. */
        if (id->uid == 0)
                return true;
        if (!p)
                return false;

        if (id_list_contains(&p->admin_users, id->uid))
                return true;
        for (size_t i = 0; i < p->admin_groups.n; i++)
                if (peer_identity_in_group(id, p->admin_groups.ids[i]))
                        return true;
        return false;
}

void policy_get_limits(const Policy *p, const PeerIdentity *id, unsigned *ret_max_contexts,
                       unsigned *ret_max_vdevices) {
        const PolicyRule *r = first_matching_rule(p, id);
        unsigned c = p ? p->default_max_contexts : POLICY_DEFAULT_MAX_CONTEXTS,
                 v = p ? p->default_max_vdevices : POLICY_DEFAULT_MAX_VDEVICES;

        if (r && r->max_contexts > 0)
                c = r->max_contexts;
        if (r && r->max_vdevices > 0)
                v = r->max_vdevices;

        if (ret_max_contexts)
                *ret_max_contexts = c;
        if (ret_max_vdevices)
                *ret_max_vdevices = v;
}

const char *policy_get_rule_name(const Policy *p, const PeerIdentity *id, const char *pci_address,
                                 TsmBackendType backend, const char *scope_name) {
        const PolicyRule *r = NULL;

        if (!pci_address)
                r = first_matching_rule(p, id);
        else if (check(p, id, pci_address, backend, !!scope_name, scope_name, NULL, &r, NULL) < 0)
                return NULL;

        return r ? r->name : NULL;
}

/* ---- --dump-config ---- */

/* A comment line that a reload accepts whatever goes into it: cut to the INI line limit,
 * control characters (a newline in a drop-in's file name!) replaced, so no text can turn
 * into a setting when the dump is loaded again. */
_printf_(2, 3) static void dump_comment(FILE *f, const char *format, ...) {
        char buf[INI_LINE_MAX - 1];
        va_list ap;

        va_start(ap, format);
        (void) vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

        for (char *c = buf; *c; c++)
                if ((unsigned char) *c < 0x20 || *c == 0x7f)
                        *c = '?';
        fprintf(f, "# %s\n", buf);
}

static void dump_items(FILE *f, const StrList *l) {
        for (size_t i = 0; i < l->n; i++)
                fprintf(f, "%s%s", i > 0 ? " " : "", l->items[i]);
        fputc('\n', f);
}

static void dump_str_list(FILE *f, const char *key, const StrList *l) {
        fprintf(f, "%s=", key);
        dump_items(f, l);
}

static void dump_id_list(FILE *f, const char *key, const IdList *l) {
        _cleanup_free_ char *numeric = NULL;
        size_t size = 0;
        FILE *m;

        /* Numbers are what the decisions use; the names as written go into a comment, unless
         * they say the same thing. */
        m = open_memstream(&numeric, &size);
        if (m) {
                for (size_t i = 0; i < l->n; i++)
                        fprintf(m, "%s%" PRIu32, i > 0 ? " " : "", l->ids[i]);
                if (fclose(m) != 0)
                        numeric = mfree(numeric);
        }
        if (l->text && (!numeric || !streq(l->text, numeric)))
                dump_comment(f, "%s=%s", key, l->text);

        fprintf(f, "%s=", key);
        for (size_t i = 0; i < l->n; i++)
                fprintf(f, "%s%" PRIu32, i > 0 ? " " : "", l->ids[i]);
        fputc('\n', f);
}

static void dump_rule(FILE *f, const Policy *p, const PolicyRule *r) {
        fputc('\n', f);
        dump_comment(f, "First defined at %s:%u", p->sources[r->source], r->line);
        fprintf(f, "[Client:%s]\n", r->name);

        if (r->users.n > 0)
                dump_id_list(f, "Users", &r->users);
        if (r->groups.n > 0)
                dump_id_list(f, "Groups", &r->groups);
        if (r->units.n > 0)
                dump_str_list(f, "Units", &r->units);

        if (r->devices.n > 0)
                dump_str_list(f, "Devices", &r->devices);
        else
                fputs("# Devices= not set: this rule grants no device\n", f);

        if (r->backends != 0) {
                unsigned n = 0;

                fputs("Backends=", f);
                for (TsmBackendType t = 0; t < _TSM_BACKEND_TYPE_MAX; t++)
                        if (r->backends & (UINT32_C(1) << t))
                                fprintf(f, "%s%s", n++ > 0 ? " " : "", tsm_backend_type_to_string(t));
                fputc('\n', f);
        } else
                fputs("# Backends= not set: any backend\n", f);

        if (r->scopes.n > 0)
                dump_str_list(f, "Scopes", &r->scopes);
        else {
                fputs("# Scopes= not set, from [Defaults]: ", f);
                dump_items(f, &p->default_scopes);
        }

        if (r->max_contexts > 0)
                fprintf(f, "MaxContexts=%u\n", r->max_contexts);
        else
                fprintf(f, "# MaxContexts= not set, from [Defaults]: %u\n", p->default_max_contexts);
        if (r->max_vdevices > 0)
                fprintf(f, "MaxVDevices=%u\n", r->max_vdevices);
        else
                fprintf(f, "# MaxVDevices= not set, from [Defaults]: %u\n", p->default_max_vdevices);
}

int policy_dump(const Policy *p, FILE *f) {
        assert_return(p, -EINVAL);
        assert_return(f, -EINVAL);

        fputs("# Effective tsmd policy, loaded from:\n", f);
        if (p->n_sources == 0)
                fputs("#   (no files)\n", f);
        for (size_t i = 0; i < p->n_sources; i++)
                dump_comment(f, "  %s", p->sources[i]);

        fputs("\n[Defaults]\n", f);
        dump_str_list(f, "Scopes", &p->default_scopes);
        fprintf(f, "MaxContexts=%u\n", p->default_max_contexts);
        fprintf(f, "MaxVDevices=%u\n", p->default_max_vdevices);

        fputs("\n[Admin]\n# uid 0 (root) is always an administrator.\n", f);
        if (p->admin_users.n > 0)
                dump_id_list(f, "Users", &p->admin_users);
        if (p->admin_groups.n > 0)
                dump_id_list(f, "Groups", &p->admin_groups);

        if (p->n_rules == 0)
                fputs("\n# No [Client:NAME] rules: every client is denied.\n", f);
        for (size_t i = 0; i < p->n_rules; i++)
                dump_rule(f, p, p->rules[i]);

        if (fflush(f) != 0 || ferror(f))
                return -EIO;
        return 0;
}
