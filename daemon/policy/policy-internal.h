/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The in-memory form of a Policy, shared by the loader (policy-parse.c) and the decision and
 * dump code (policy.c). Nothing outside daemon/policy/ includes this. Runs in: monitor and worker.
 */
#pragma once

#include <stdint.h>

#include "policy.h"

/* uids or gids; both are 32-bit on Linux. text is the value as written, for --dump-config. */
typedef struct IdList {
        uint32_t *ids;
        size_t n;
        char *text;
} IdList;

typedef struct StrList {
        char **items;
        size_t n;
} StrList;

typedef enum PolicyKey {
        POLICY_KEY_USERS,
        POLICY_KEY_GROUPS,
        POLICY_KEY_UNITS,
        POLICY_KEY_DEVICES,
        POLICY_KEY_BACKENDS,
        POLICY_KEY_SCOPES,
        POLICY_KEY_MAX_CONTEXTS,
        POLICY_KEY_MAX_VDEVICES,
        _POLICY_KEY_MAX,
        _POLICY_KEY_INVALID = -EINVAL,
} PolicyKey;

const char *policy_key_to_string(PolicyKey k);
PolicyKey policy_key_from_string(const char *s);

/* Where a key was last assigned while loading: one file must not assign it twice. */
typedef struct KeyOrigin {
        size_t source; /* index into Policy.sources, + 1; 0 = never assigned */
        unsigned line;
} KeyOrigin;

typedef struct PolicyRule {
        char *name;
        size_t source; /* where it first appeared (index into Policy.sources) */
        unsigned line;

        IdList users;
        IdList groups;
        StrList units;    /* fnmatch globs (FNM_NOESCAPE) */
        StrList devices;  /* fnmatch globs (FNM_NOESCAPE | FNM_CASEFOLD) */
        uint32_t backends; /* bit (1 << TsmBackendType); 0 = any backend */
        StrList scopes;   /* empty = [Defaults] Scopes= */
        unsigned max_contexts; /* 0 = from [Defaults] */
        unsigned max_vdevices; /* 0 = from [Defaults] */

        KeyOrigin origin[_POLICY_KEY_MAX];
} PolicyRule;

struct Policy {
        unsigned n_ref;

        /* [Defaults] */
        StrList default_scopes;
        unsigned default_max_contexts;
        unsigned default_max_vdevices;
        KeyOrigin default_origin[_POLICY_KEY_MAX];

        /* [Admin] */
        IdList admin_users;
        IdList admin_groups;
        KeyOrigin admin_origin[_POLICY_KEY_MAX];

        PolicyRule **rules;
        size_t n_rules;

        char **sources; /* file names in load order */
        size_t n_sources;

        /* Every gid of the rules' and [Admin]'s Groups=: what a client's groups are asked about. */
        GidSet groups_of_interest;

        /* The Users=/Groups= names the load resolved (policy_resolved_names()). */
        char *resolved_names;
};

PolicyRule *policy_rule_free(PolicyRule *r);
Policy *policy_new_empty(void);

void id_list_done(IdList *l);
/* Fills p->groups_of_interest from its rules and [Admin], once they are all loaded. */
int policy_collect_groups_of_interest(Policy *p);
void str_list_done(StrList *l);
bool str_list_contains(const StrList *l, const char *s);

/* Validation shared by the loader and the decision code (scope_name_is_known(): policy.h). */
bool scope_name_is_default_capable(const char *name);
