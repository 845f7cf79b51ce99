/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Loading the policy: policy.conf plus the *.conf drop-ins through the INI parser, name service
 * lookups for Users=/Groups=, validation of every value against the backend registry, and
 * "file:line: message" errors that tell the admin exactly what to fix. Everything is built
 * into a fresh Policy, so a failed reload leaves the running policy alone.
 *
 * Runs in: monitor and worker, each loading the files (root-owned input, but still treated as
 * untrusted text: fuzzed by tests/fuzz/fuzz-policy.c).
 */

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "backend.h"
#include "file-acl.h"
#include "file-settle.h"
#include "file-trust.h"
#include "ini.h"
#include "log.h"
#include "path-trust.h"
#include "policy-internal.h"

/* Longest quoted value in a message: enough to recognise it, short enough for a log line. */
#define MSG_VALUE_MAX 80
#define UNIT_NAME_MAX 255U
#define DEVICE_GLOB_MAX 64U
#define USER_NAME_MAX 256U

typedef enum SectionKind {
        SECTION_DEFAULTS,
        SECTION_ADMIN,
        SECTION_CLIENT,
} SectionKind;

typedef struct Section {
        SectionKind kind;
        PolicyRule *rule; /* SECTION_CLIENT only */
} Section;

/* A "[...]" line seen by the pre-scan, so rules know the line they start on. */
typedef struct Header {
        unsigned line;
        char *name;
} Header;

/* A Users=/Groups= name as the load resolved it. */
typedef struct ResolvedName {
        char *name;
        bool group;
        uint32_t id;
} ResolvedName;

typedef struct Loader {
        Policy *policy;

        /* Every name resolved so far, each once, so one load resolves a name one way. With
         * names_fixed, only these: the names a load resolved before (policy_load_resolved()). */
        ResolvedName *names;
        size_t n_names, n_names_allocated;
        bool names_fixed;
        /* The set a tsmd before kept (last-good), with that tsmd's meanings: see
         * policy_load_resolved(). */
        bool kept_before;

        /* The file being parsed. */
        const char *file;
        size_t source; /* its index in policy->sources */
        const char *text;
        Header *headers;
        size_t n_headers, n_headers_allocated;
        size_t next_header; /* headers before this one are resolved */
        Section section;    /* the section of headers[next_header - 1] */

        char *error; /* "file:line: message" */

        PolicyFileTrust trust;

        PolicyFileFunc on_file; /* NULL: none */
        void *userdata;
} Loader;

static const uint32_t section_keys[] = {
        [SECTION_DEFAULTS] = (1U << POLICY_KEY_SCOPES) | (1U << POLICY_KEY_MAX_CONTEXTS) |
                             (1U << POLICY_KEY_MAX_VDEVICES),
        [SECTION_ADMIN] = (1U << POLICY_KEY_USERS) | (1U << POLICY_KEY_GROUPS),
        [SECTION_CLIENT] = (1U << _POLICY_KEY_MAX) - 1,
};

static const char *const builtin_default_scopes[] = { TSM_SCOPE_INFO, TSM_SCOPE_STATE_CHANGE };

/* How many bytes of s a message quotes: at most MSG_VALUE_MAX, and not the first bytes of a
 * character whose last ones would be cut off (the message is sent as a JSON string). */
static int quoted_len(const char *s) {
        size_t n = strnlen(s, MSG_VALUE_MAX + 1);

        if (n > MSG_VALUE_MAX)
                for (n = MSG_VALUE_MAX; n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80; n--)
                        ;
        return (int) n;
}

_printf_(4, 5) static int loader_error(Loader *l, unsigned line, int r, const char *format, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int k;

        /* The first error wins: it is the one the admin has to fix first. */
        if (l->error)
                return r;

        /* %m prints r, as with log_*_errno(). */
        errno = abs(r);
        va_start(ap, format);
        k = vasprintf(&msg, format, ap);
        va_end(ap);
        if (k < 0)
                return r;

        if (line > 0)
                k = asprintf(&l->error, "%s:%u: %s", l->file, line, msg);
        else
                k = asprintf(&l->error, "%s: %s", l->file, msg);
        if (k < 0) {
                l->error = NULL;
                return r;
        }

        /* Values are quoted into the message; keep control characters out of logs/terminals. */
        for (char *c = l->error; *c; c++)
                if ((unsigned char) *c < 0x20 || *c == 0x7f)
                        *c = '?';
        return r;
}

/* ---- small list helpers ---- */

static int str_list_add(StrList *l, const char *s) {
        char **items, *copy;

        if (str_list_contains(l, s))
                return 0;

        copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        items = reallocarray(l->items, l->n + 1, sizeof(char *));
        if (!items) {
                free(copy);
                return -ENOMEM;
        }
        l->items = items;
        l->items[l->n++] = copy;
        return 0;
}

static int id_list_add(IdList *l, uint32_t id) {
        uint32_t *ids;

        for (size_t i = 0; i < l->n; i++)
                if (l->ids[i] == id)
                        return 0;

        ids = reallocarray(l->ids, l->n + 1, sizeof(uint32_t));
        if (!ids)
                return -ENOMEM;
        l->ids = ids;
        l->ids[l->n++] = id;
        return 0;
}

static int set_builtin_default_scopes(StrList *l) {
        str_list_done(l);
        for (size_t i = 0; i < ELEMENTSOF(builtin_default_scopes); i++) {
                int r = str_list_add(l, builtin_default_scopes[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Splits a value at blanks. The words point into *ret_buf, which the caller frees. */
static int split_words(const char *value, char **ret_buf, char ***ret_words, size_t *ret_n) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_free_ char **words = NULL;
        size_t n = 0;
        char *save = NULL;

        buf = strdup(value);
        if (!buf)
                return -ENOMEM;

        /* At most one word per two bytes (word + separator), plus one. */
        words = new0(char *, strlen(buf) / 2 + 2);
        if (!words)
                return -ENOMEM;

        for (char *w = strtok_r(buf, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
                words[n++] = w;

        *ret_buf = TAKE_PTR(buf);
        *ret_words = TAKE_PTR(words);
        *ret_n = n;
        return 0;
}

/* ---- value parsers ---- */

static bool parse_uint32_strict(const char *s, uint32_t *ret) {
        uint64_t v = 0;
        size_t n = 0;

        for (; s[n]; n++) {
                if (s[n] < '0' || s[n] > '9' || n >= 10)
                        return false;
                v = v * 10 + (uint64_t) (s[n] - '0');
        }
        if (n == 0 || v > UINT32_MAX)
                return false;
        *ret = (uint32_t) v;
        return true;
}

static bool user_name_is_valid(const char *s) {
        size_t n = strlen(s);

        /* The POSIX portable set plus the '$' of machine accounts; no leading '-' or '.', so
         * nothing can look like an option or a path to an NSS module. */
        if (n == 0 || n > USER_NAME_MAX || s[0] == '-' || s[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-')
                        continue;
                if (c == '$' && i == n - 1)
                        continue;
                return false;
        }
        return true;
}

/* Looks a user or group name up in NSS. 0 found, -ENOENT unknown, other -errno on failure. */
static int lookup_name(const char *name, bool group, uint32_t *ret) {
        size_t size = 4096;

        for (;;) {
                _cleanup_free_ char *buf = NULL;
                struct passwd pw, *pwr = NULL;
                struct group gr, *grr = NULL;
                int e;

                buf = malloc(size);
                if (!buf)
                        return -ENOMEM;

                if (group)
                        e = getgrnam_r(name, &gr, buf, size, &grr);
                else
                        e = getpwnam_r(name, &pw, buf, size, &pwr);

                if (e == ERANGE && size < 1024 * 1024) {
                        size *= 2;
                        continue;
                }
                /* getpwnam_r(3): these all mean "no such entry" in some NSS module. */
                if (e == 0 || e == ENOENT || e == ESRCH || e == EBADF || e == EPERM) {
                        if (group ? !grr : !pwr)
                                return -ENOENT;
                        *ret = group ? (uint32_t) grr->gr_gid : (uint32_t) pwr->pw_uid;
                        return 0;
                }
                return e > 0 ? -e : -EIO;
        }
}

static int resolved_name_add(Loader *l, const char *name, bool group, uint32_t id) {
        char *copy;

        copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        if (!GREEDY_REALLOC(l->names, l->n_names_allocated, l->n_names + 1)) {
                free(copy);
                return -ENOMEM;
        }
        l->names[l->n_names++] = (ResolvedName) { .name = copy, .group = group, .id = id };
        return 0;
}

/* A name as this load resolves it: as it did already, else (unless names_fixed) through NSS. */
static int resolve_name(Loader *l, const char *name, bool group, uint32_t *ret) {
        uint32_t id;
        int r;

        for (size_t i = 0; i < l->n_names; i++)
                if (l->names[i].group == group && streq(l->names[i].name, name)) {
                        *ret = l->names[i].id;
                        return 0;
                }
        if (l->names_fixed)
                return -ENOENT;

        r = lookup_name(name, group, &id);
        if (r < 0)
                return r;
        r = resolved_name_add(l, name, group, id);
        if (r < 0)
                return r;
        *ret = id;
        return 0;
}

static bool id_is_valid(uint32_t id) {
        /* -1 means "no id" to the kernel; 65535 is the 16-bit -1. */
        return id != UINT32_MAX && id != UINT16_MAX;
}

static int parse_ids(Loader *l, unsigned line, PolicyKey key, char **words, size_t n, IdList *ret) {
        bool group = key == POLICY_KEY_GROUPS;
        const char *what = group ? "group" : "user";
        int r;

        for (size_t i = 0; i < n; i++) {
                const char *w = words[i];
                uint32_t id;

                if (w[strspn(w, "0123456789")] == 0) {
                        /* All digits is an id, never a name. */
                        if (!parse_uint32_strict(w, &id) || !id_is_valid(id))
                                return loader_error(l, line, -EINVAL, "'%.*s' is not a valid %s ID",
                                                    quoted_len(w), w, what);
                } else if (!user_name_is_valid(w))
                        return loader_error(l, line, -EINVAL, "'%.*s' is not a valid %s name or ID",
                                            quoted_len(w), w, what);
                else {
                        r = resolve_name(l, w, group, &id);
                        if (r == -ENOENT)
                                return loader_error(l, line, r, "unknown %s '%.*s'", what,
                                                    quoted_len(w), w);
                        if (r < 0)
                                return loader_error(l, line, r, "failed to look up %s '%.*s': %s",
                                                    what, quoted_len(w), w, strerror(-r));
                }

                r = id_list_add(ret, id);
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool unit_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr(":-_.\\@", c));
}

static bool device_char(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
               c == ':' || c == '.';
}

/*
 * Checks a glob for the fnmatch(FNM_NOESCAPE) dialect: '*', '?', and bracket expressions
 * whose members (and range ends) pass char_ok. Returns NULL if fine, else what is wrong.
 * fnmatch() itself accepts anything (a lone '[' is a literal), which would hide typos.
 */
static const char *glob_check(const char *g, bool (*char_ok)(char), bool *ret_is_glob) {
        bool is_glob = false;

        for (size_t i = 0; g[i]; i++) {
                char c = g[i];
                size_t start;

                if (c == '*' || c == '?') {
                        is_glob = true;
                        continue;
                }
                if (c == ']')
                        return "']' without '['";
                if (c != '[') {
                        if (!char_ok(c))
                                return "invalid character";
                        continue;
                }

                is_glob = true;
                i++;
                if (g[i] == '!' || g[i] == '^')
                        i++;
                start = i;
                for (; g[i] && g[i] != ']'; i++) {
                        if (g[i] == '-' && i > start && g[i + 1] && g[i + 1] != ']')
                                continue;
                        if (!char_ok(g[i]))
                                return "invalid character in '[...]'";
                }
                if (!g[i])
                        return "'[' without matching ']'";
                if (i == start)
                        return "empty '[]'";
        }

        *ret_is_glob = is_glob;
        return NULL;
}

static bool endswith(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && streq(s + a - b, suffix);
}

/* Whether a unit value (checked by glob_check() already) is a glob. */
static bool unit_is_glob(const char *u) {
        return u[strcspn(u, "*?[")] != 0;
}

static int parse_units(Loader *l, unsigned line, char **words, size_t n, StrList *ret) {
        int r;

        for (size_t i = 0; i < n; i++) {
                const char *w = words[i], *problem;
                bool is_glob;

                if (strlen(w) > UNIT_NAME_MAX)
                        return loader_error(l, line, -EINVAL, "unit name or glob too long (max %u)",
                                            UNIT_NAME_MAX);
                problem = glob_check(w, unit_char, &is_glob);
                if (problem)
                        return loader_error(l, line, -EINVAL, "malformed unit glob '%.*s': %s",
                                            quoted_len(w), w, problem);
                /* sd_pid_get_unit() only ever reports services and scopes. */
                if (!is_glob && (!(endswith(w, ".service") || endswith(w, ".scope")) ||
                                 w[0] == '.'))
                        return loader_error(l, line, -EINVAL,
                                            "'%.*s' is not a unit name (expected NAME.service or "
                                            "NAME.scope, or a glob such as machine-*.scope)",
                                            quoted_len(w), w);

                r = str_list_add(ret, w);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_devices(Loader *l, unsigned line, char **words, size_t n, StrList *ret) {
        int r;

        for (size_t i = 0; i < n; i++) {
                const char *w = words[i], *problem;
                bool is_glob;

                if (strlen(w) > DEVICE_GLOB_MAX)
                        return loader_error(l, line, -EINVAL, "device address or glob too long (max %u)",
                                            DEVICE_GLOB_MAX);
                problem = glob_check(w, device_char, &is_glob);
                if (problem)
                        return loader_error(l, line, -EINVAL, "malformed device glob '%.*s': %s",
                                            quoted_len(w), w, problem);
                if (!is_glob && !policy_pci_address_is_valid(w))
                        return loader_error(l, line, -EINVAL,
                                            "'%.*s' is not a PCI address (expected DDDD:BB:DD.F, "
                                            "e.g. 0000:01:00.0, or a glob such as 0000:02:*)",
                                            quoted_len(w), w);

                r = str_list_add(ret, w);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_backends(Loader *l, unsigned line, char **words, size_t n, uint32_t *ret) {
        uint32_t mask = 0;

        for (size_t i = 0; i < n; i++) {
                TsmBackendType t = tsm_backend_type_from_string(words[i]);

                if (t < 0)
                        return loader_error(l, line, -EINVAL,
                                            "unknown backend '%.*s' (known: tdx-connect sev-tio "
                                            "arm-cca devsec-sample emulated)",
                                            quoted_len(words[i]), words[i]);
                mask |= UINT32_C(1) << t;
        }

        *ret = mask;
        return 0;
}

static int parse_scopes(Loader *l, unsigned line, bool defaults, char **words, size_t n,
                        StrList *ret) {
        int r;

        for (size_t i = 0; i < n; i++) {
                const char *w = words[i];

                if (!scope_name_is_known(w))
                        return loader_error(l, line, -EINVAL,
                                            "unknown scope '%.*s' (known: info state-change "
                                            "debug-read debug-write)",
                                            quoted_len(w), w);
                /* SECURITY: opt-in scopes are granted per rule, by name, or not at all. */
                if (defaults && !scope_name_is_default_capable(w))
                        return loader_error(l, line, -EINVAL,
                                            "scope '%s' cannot be granted by [Defaults]; name it in "
                                            "the Scopes= of a [Client:NAME] rule",
                                            w);

                r = str_list_add(ret, w);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_limit(Loader *l, unsigned line, PolicyKey key, const char *value, unsigned *ret) {
        uint32_t v;

        if (!parse_uint32_strict(value, &v) || v < 1 || v > POLICY_LIMIT_MAX)
                return loader_error(l, line, -EINVAL, "%s= must be an integer from 1 to %u, not '%.*s'",
                                    policy_key_to_string(key), POLICY_LIMIT_MAX, quoted_len(value), value);
        *ret = v;
        return 0;
}

/* ---- sections ---- */

static int get_rule(Loader *l, const char *name, unsigned line, PolicyRule **ret) {
        Policy *p = l->policy;
        PolicyRule **rules, *r;

        for (size_t i = 0; i < p->n_rules; i++)
                if (streq(p->rules[i]->name, name)) {
                        *ret = p->rules[i];
                        return 0;
                }

        if (p->n_rules >= POLICY_RULES_MAX)
                return loader_error(l, line, -E2BIG, "too many [Client:NAME] rules (at most %u)",
                                    POLICY_RULES_MAX);

        rules = reallocarray(p->rules, p->n_rules + 1, sizeof(PolicyRule *));
        if (!rules)
                return -ENOMEM;
        p->rules = rules;

        r = new0(PolicyRule, 1);
        if (!r)
                return -ENOMEM;
        r->name = strdup(name);
        if (!r->name) {
                free(r);
                return -ENOMEM;
        }
        r->source = l->source;
        r->line = line;

        p->rules[p->n_rules++] = r;
        *ret = r;
        return 0;
}

static int resolve_section(Loader *l, const char *name, unsigned line, Section *ret) {
        const char *rule_name;
        int r;

        if (streq(name, "Defaults")) {
                *ret = (Section){ .kind = SECTION_DEFAULTS };
                return 0;
        }
        if (streq(name, "Admin")) {
                *ret = (Section){ .kind = SECTION_ADMIN };
                return 0;
        }
        if (!strneq(name, "Client:", strlen("Client:")))
                return loader_error(l, line, -EINVAL,
                                    "unknown section [%.*s]; expected [Defaults], [Admin] or "
                                    "[Client:NAME] (names are case-sensitive)",
                                    quoted_len(name), name);

        rule_name = name + strlen("Client:");
        if (isempty(rule_name))
                return loader_error(l, line, -EINVAL, "rule name missing: write [Client:NAME]");
        if (strlen(rule_name) > POLICY_RULE_NAME_MAX)
                return loader_error(l, line, -EINVAL, "rule name too long (max %u characters)",
                                    POLICY_RULE_NAME_MAX);

        *ret = (Section){ .kind = SECTION_CLIENT };
        r = get_rule(l, rule_name, line, &ret->rule);
        return r;
}

/* Resolves every header above line, in file order, so rules are created in that order. */
static int resolve_headers_until(Loader *l, unsigned line) {
        int r;

        while (l->next_header < l->n_headers && l->headers[l->next_header].line < line) {
                const Header *h = &l->headers[l->next_header];

                r = resolve_section(l, h->name, h->line, &l->section);
                if (r < 0)
                        return r;
                l->next_header++;
        }
        return 0;
}

/* The same line splitting as ini_parse(), but only to note "[...]" lines and their numbers. */
static int scan_headers(Loader *l, const char *text) {
        unsigned line = 0;

        for (const char *p = text; *p;) {
                size_t len = strcspn(p, "\n"), a = 0, b = len;

                line++;
                while (a < b && strchr(" \t\r", p[a]))
                        a++;
                while (b > a && strchr(" \t\r", p[b - 1]))
                        b--;

                if (len <= INI_LINE_MAX && b - a >= 3 && p[a] == '[' && p[b - 1] == ']') {
                        Header *h;
                        size_t x = a + 1, y = b - 1;

                        while (x < y && strchr(" \t\r", p[x]))
                                x++;
                        while (y > x && strchr(" \t\r", p[y - 1]))
                                y--;

                        if (!GREEDY_REALLOC(l->headers, l->n_headers_allocated, l->n_headers + 1))
                                return -ENOMEM;
                        h = &l->headers[l->n_headers];
                        h->line = line;
                        h->name = strndup(p + x, y - x);
                        if (!h->name)
                                return -ENOMEM;
                        l->n_headers++;
                }

                p += len;
                if (*p == '\n')
                        p++;
        }
        return 0;
}

static void headers_clear(Loader *l) {
        for (size_t i = 0; i < l->n_headers; i++)
                free(l->headers[i].name);
        l->headers = mfree(l->headers);
        l->n_headers = l->n_headers_allocated = l->next_header = 0;
}

/* ---- assignments ---- */

static int apply_key(Loader *l, unsigned line, const Section *sec, PolicyKey key, const char *value) {
        Policy *p = l->policy;
        PolicyRule *rule = sec->rule;
        _cleanup_free_ char *buf = NULL;
        _cleanup_free_ char **words = NULL;
        size_t n;
        int r;

        r = split_words(value, &buf, &words, &n);
        if (r < 0)
                return r;

        if (n > POLICY_LIST_MAX)
                return loader_error(l, line, -E2BIG, "too many values for %s= (at most %u)",
                                    policy_key_to_string(key), POLICY_LIST_MAX);

        /* ini.h has no trailing comments; say so rather than "unknown user '#'". */
        for (size_t i = 0; i < n; i++)
                if (words[i][0] == '#' || words[i][0] == ';')
                        return loader_error(l, line, -EINVAL,
                                            "comments must be on a line of their own; '%c' is not "
                                            "allowed in a value",
                                            words[i][0]);

        /* An empty assignment resets the key. Otherwise build the new value aside and only
         * then replace the old one, so a later file overrides an earlier one completely. */
        switch (key) {

        case POLICY_KEY_USERS:
        case POLICY_KEY_GROUPS: {
                _cleanup_(id_list_done) IdList ids = {};
                IdList *target = sec->kind == SECTION_ADMIN ?
                                         (key == POLICY_KEY_USERS ? &p->admin_users : &p->admin_groups) :
                                         (key == POLICY_KEY_USERS ? &rule->users : &rule->groups);

                r = parse_ids(l, line, key, words, n, &ids);
                if (r < 0)
                        return r;
                if (n > 0) {
                        ids.text = strdup(value);
                        if (!ids.text)
                                return -ENOMEM;
                }
                id_list_done(target);
                *target = ids;
                ids = (IdList){};
                return 0;
        }

        case POLICY_KEY_UNITS:
        case POLICY_KEY_DEVICES: {
                _cleanup_(str_list_done) StrList list = {};
                StrList *target = key == POLICY_KEY_UNITS ? &rule->units : &rule->devices;

                r = key == POLICY_KEY_UNITS ? parse_units(l, line, words, n, &list) :
                                              parse_devices(l, line, words, n, &list);
                if (r < 0)
                        return r;
                str_list_done(target);
                *target = list;
                list = (StrList){};
                return 0;
        }

        case POLICY_KEY_BACKENDS:
                return parse_backends(l, line, words, n, &rule->backends);

        case POLICY_KEY_SCOPES: {
                _cleanup_(str_list_done) StrList list = {};
                bool defaults = sec->kind == SECTION_DEFAULTS;
                StrList *target = defaults ? &p->default_scopes : &rule->scopes;

                /* Empty: in [Defaults], no scopes (as an empty assignment empties a list in
                 * systemd); in a rule, [Defaults]' scopes. */
                r = parse_scopes(l, line, defaults, words, n, &list);
                if (r >= 0 && defaults && n == 0 && l->kept_before)
                        /* Its meaning before: the built-in scopes. */
                        r = set_builtin_default_scopes(&list);
                else if (r >= 0 && defaults && n == 0)
                        /* Said, as it meant the built-in scopes before: an upgrade changes what
                         * the same file grants. */
                        log_notice("%s:%u: an empty [Defaults] Scopes= means no default scopes (before, it "
                                   "meant \"info state-change\"): rules without Scopes= grant none.",
                                   l->file, line);
                if (r < 0)
                        return r;
                str_list_done(target);
                *target = list;
                list = (StrList){};
                return 0;
        }

        case POLICY_KEY_MAX_CONTEXTS:
        case POLICY_KEY_MAX_VDEVICES: {
                bool defaults = sec->kind == SECTION_DEFAULTS;
                unsigned v = 0;

                if (n > 0) {
                        r = parse_limit(l, line, key, value, &v);
                        if (r < 0)
                                return r;
                } else if (defaults)
                        v = key == POLICY_KEY_MAX_CONTEXTS ? POLICY_DEFAULT_MAX_CONTEXTS :
                                                             POLICY_DEFAULT_MAX_VDEVICES;

                if (key == POLICY_KEY_MAX_CONTEXTS)
                        *(defaults ? &p->default_max_contexts : &rule->max_contexts) = v;
                else
                        *(defaults ? &p->default_max_vdevices : &rule->max_vdevices) = v;
                return 0;
        }

        default:
                return -EINVAL;
        }
}

static int on_assignment(const char *section, const char *key, const char *value, unsigned line,
                         void *userdata) {
        Loader *l = userdata;
        KeyOrigin *origin;
        PolicyKey k;
        int r;

        r = resolve_headers_until(l, line);
        if (r < 0)
                return r;
        /* Cannot happen (ini_parse() reports an assignment before any header as a syntax
         * error), but never apply a key to a section we did not resolve ourselves. */
        if (l->next_header == 0 || !streq(l->headers[l->next_header - 1].name, section))
                return loader_error(l, line, -EBADMSG, "assignment outside of a section");

        k = policy_key_from_string(key);
        if (k < 0 || !(section_keys[l->section.kind] & (1U << k))) {
                if (l->section.kind == SECTION_DEFAULTS)
                        return loader_error(l, line, -EINVAL,
                                            "unknown key '%.*s' in [Defaults] (valid: Scopes, "
                                            "MaxContexts, MaxVDevices)",
                                            quoted_len(key), key);
                if (l->section.kind == SECTION_ADMIN)
                        return loader_error(l, line, -EINVAL,
                                            "unknown key '%.*s' in [Admin] (valid: Users, Groups)",
                                            quoted_len(key), key);
                return loader_error(l, line, -EINVAL,
                                    "unknown key '%.*s' in [Client:%s] (valid: Users, Groups, "
                                    "Units, Devices, Backends, Scopes, MaxContexts, MaxVDevices)",
                                    quoted_len(key), key, l->section.rule->name);
        }

        origin = l->section.kind == SECTION_DEFAULTS ? &l->policy->default_origin[k] :
                 l->section.kind == SECTION_ADMIN    ? &l->policy->admin_origin[k] :
                                                       &l->section.rule->origin[k];
        if (origin->source == l->source + 1)
                return loader_error(l, line, -EINVAL,
                                    "%s= is already set on line %u of this file; put all values "
                                    "into one assignment",
                                    key, origin->line);

        r = apply_key(l, line, &l->section, k, value);
        if (r < 0)
                return r;

        *origin = (KeyOrigin){ .source = l->source + 1, .line = line };
        return 0;
}

/* ini_parse() says only "syntax error at line N"; look at the line to say what is wrong. */
static int diagnose_syntax_error(Loader *l, const char *text, unsigned line) {
        const char *p = text;
        char buf[INI_LINE_MAX + 1];
        size_t len, a, b;
        bool in_section = false;

        for (unsigned i = 1; i < line && *p; i++) {
                p += strcspn(p, "\n");
                if (*p == '\n')
                        p++;
        }
        len = strcspn(p, "\n");
        if (len > INI_LINE_MAX)
                return loader_error(l, line, -EBADMSG, "line too long (more than %u bytes)",
                                    INI_LINE_MAX);

        memcpy(buf, p, len);
        buf[len] = 0;
        for (a = 0; buf[a] && strchr(" \t\r", buf[a]); a++)
                ;
        for (b = len; b > a && strchr(" \t\r", buf[b - 1]); b--)
                ;
        buf[b] = 0;

        for (size_t i = 0; i < l->n_headers; i++)
                if (l->headers[i].line < line)
                        in_section = true;

        if (buf[a] == '[') {
                if (b - a < 2 || buf[b - 1] != ']')
                        return loader_error(l, line, -EBADMSG, "section header without closing ']'");
                return loader_error(l, line, -EBADMSG,
                                    "invalid section header %.*s: use [Defaults], [Admin] or "
                                    "[Client:NAME], NAME made of letters, digits and - _ . : @",
                                    quoted_len(buf + a), buf + a);
        }
        if (!strchr(buf + a, '='))
                return loader_error(l, line, -EBADMSG,
                                    "expected Key=Value, a [Section] header or a comment");
        if (!in_section)
                return loader_error(l, line, -EBADMSG, "assignment before the first [Section] header");

        *strchr(buf + a, '=') = 0;
        for (b = strlen(buf + a) + a; b > a && strchr(" \t\r", buf[b - 1]); b--)
                buf[b - 1] = 0;
        return loader_error(l, line, -EBADMSG, "invalid key name '%.*s'", quoted_len(buf + a), buf + a);
}

static int add_source(Loader *l, const char *name) {
        Policy *p = l->policy;
        char **sources, *copy;

        copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        sources = reallocarray(p->sources, p->n_sources + 1, sizeof(char *));
        if (!sources) {
                free(copy);
                return -ENOMEM;
        }
        p->sources = sources;
        l->source = p->n_sources;
        p->sources[p->n_sources++] = copy;
        return 0;
}

static int parse_text(Loader *l, const char *name, const char *text) {
        unsigned line = 0;
        int r;

        l->file = name;
        r = add_source(l, name);
        if (r < 0)
                return r;

        headers_clear(l);
        r = scan_headers(l, text);
        if (r < 0)
                return r;

        r = ini_parse(text, on_assignment, l, &line);
        if (r == -EBADMSG && !l->error)
                return diagnose_syntax_error(l, text, line);
        if (r < 0)
                return loader_error(l, line, r, "%s", strerror(-r));

        /* Sections without assignments still exist: validate them, create their rules. */
        return resolve_headers_until(l, UINT_MAX);
}

/* ---- files ---- */

/* SECURITY: only root (or the one other user the caller trusts: whoever runs --check-config or
 * a test) may write policy, and never the unprivileged worker, which a VMM could take over: a
 * policy it wrote would outlive it and reach the monitor's scope gate at the next reload.
 * A POSIX access ACL grants more than the mode shows: with one, the group bits are the mask,
 * and the owning group writes only if ACL_GROUP_OBJ and the mask both say so. A group the ACL
 * names with write (through the mask) is judged as the owning group is, refused if it is the
 * worker's; a user, unless it is root or the trusted owner; an ACL we cannot parse is refused.
 * (A default ACL only shapes new files, and those are checked in turn.) */
static int check_writers(Loader *l, int fd, const struct stat *st) {
        _cleanup_free_ char *reason = NULL;
        int r;

        r = file_trust_check_writers(fd, st, &l->trust, &reason);
        if (r < 0 && reason)
                return loader_error(l, 0, r, "%s", reason);
        return r;
}

/* SECURITY: opens path with every directory on the way checked (path-trust.h): a file is only
 * as safe as the directories that hold its name. */
static int open_trusted(Loader *l, int dir_fd, const char *dir_path, const char *path, PathTrustFlags flags,
                        const char *what, int *ret_fd) {
        _cleanup_free_ char *reason = NULL;
        int r;

        r = path_trust_open(dir_fd, dir_path, path, l->trust.owner, flags, ret_fd, &reason);
        if (r == -EBADFD) /* a device, FIFO or socket, left unopened */
                return loader_error(l, 0, -EINVAL, "not a regular file");
        if (r == -EPERM && reason)
                return loader_error(l, 0, r, "%s; refusing to use it", reason);
        if (r < 0 && reason)
                return loader_error(l, 0, r, "%s", reason);
        if (r < 0 && r != -ENOENT)
                return loader_error(l, 0, r, "cannot open%s: %m", what);
        return r;
}

/* One open and read of a policy file: 0 read (*ret_text; its fd in *ret_fd, and the fstat()s of
 * it before and after the read in *ret_before, *ret_after), 1 if there is no such file, 2 if it
 * is masked. */
static int read_text(Loader *l, int dir_fd, const char *dir_path, const char *path, int *ret_fd, char **ret_text,
                     struct stat *ret_before, struct stat *ret_after) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *text = NULL;
        size_t n = 0;
        char *nul;
        int r;

        /* A device, FIFO or socket named *.conf is refused unopened (path-trust.h); opened
         * with O_NONBLOCK all the same. */
        r = open_trusted(l, dir_fd, dir_path, path, 0, "", &fd);
        /* A missing file is an empty policy; a drop-in may vanish while we list. */
        if (r == -ENOENT)
                return 1;
        if (r < 0)
                return r;
        if (fstat(fd, ret_before) < 0)
                return loader_error(l, 0, negative_errno(), "cannot stat: %m");

        /* A symlink to /dev/null masks a drop-in, as in systemd. */
        if (S_ISCHR(ret_before->st_mode) && ret_before->st_rdev == makedev(1, 3))
                return 2;
        if (!S_ISREG(ret_before->st_mode))
                return loader_error(l, 0, -EINVAL, "not a regular file");

        /* SECURITY: the policy decides who may touch the devices. */
        r = check_writers(l, fd, ret_before);
        if (r < 0)
                return r;

        if (ret_before->st_size > (off_t) POLICY_FILE_MAX)
                return loader_error(l, 0, -E2BIG, "larger than %u bytes", POLICY_FILE_MAX);

        text = malloc(POLICY_FILE_MAX + 1);
        if (!text)
                return -ENOMEM;
        for (;;) {
                ssize_t k = read(fd, text + n, POLICY_FILE_MAX + 1 - n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return loader_error(l, 0, negative_errno(), "cannot read: %m");
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > POLICY_FILE_MAX)
                        return loader_error(l, 0, -E2BIG, "larger than %u bytes", POLICY_FILE_MAX);
        }
        text[n] = 0;
        if (fstat(fd, ret_after) < 0)
                return loader_error(l, 0, negative_errno(), "cannot stat: %m");

        nul = memchr(text, 0, n);
        if (nul) {
                unsigned line = 1;

                for (const char *c = text; c < nul; c++)
                        line += *c == '\n';
                return loader_error(l, line, -EBADMSG, "NUL byte in a text file");
        }
        *ret_fd = TAKE_FD(fd);
        *ret_text = TAKE_PTR(text);
        return 0;
}

/* 0 loaded, 1 if there is no such file (an empty policy). */
static int load_file(Loader *l, int dir_fd, const char *dir_path, const char *path, const char *display) {
        _cleanup_free_ char *text = NULL;
        FileSettle settle = {};
        struct stat st, after;
        int r;

        l->file = display;

        /* A read in the middle of a write in place may be a valid policy that allows more: read
         * again until whole (file-settle.h). */
        for (;;) {
                _cleanup_close_ int fd = -EBADF;

                text = mfree(text);
                r = read_text(l, dir_fd, dir_path, path, &fd, &text, &st, &after);
                if (r == 1)
                        return 1;
                if (r == 2)
                        return 0;
                if (r < 0)
                        return r;
                r = l->trust.wait_settled ? file_settle_read(&settle, fd, &st, &after) : 1;
                if (r == -EBUSY)
                        return loader_error(l, 0, r, "%s", FILE_SETTLE_ERROR);
                if (r > 0)
                        break;
        }

        if (l->on_file) {
                r = l->on_file(display, text, &st, l->userdata);
                if (r < 0)
                        return r;
        }
        return parse_text(l, display, text);
}

static int cmp_strp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

bool policy_dropin_name_is_valid(const char *name) {
        return name[0] != '.' && endswith(name, ".conf") && !streq(name, ".conf");
}

static int load_dropins(Loader *l, const char *dir) {
        _cleanup_close_ int dfd = -EBADF;
        _cleanup_free_ char **names = NULL;
        size_t n = 0, allocated = 0;
        DIR *d;
        struct dirent *de;
        int dup_fd, r = 0;

        l->file = dir;

        /* SECURITY: whoever can add, remove or rename an entry here chooses the policy (a
         * symlink to any root-owned file, a FIFO that fails every load), so the directory is
         * checked as the directories above it are, by the lookup (path-trust.h). */
        r = open_trusted(l, AT_FDCWD, NULL, dir, PATH_TRUST_DIRECTORY, " directory", &dfd);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;

        /* closedir() closes the directory's fd; dfd stays ours for openat(). */
        dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        if (dup_fd < 0)
                return loader_error(l, 0, negative_errno(), "cannot list directory: %m");
        d = fdopendir(dup_fd);
        if (!d) {
                r = negative_errno();
                safe_close(dup_fd);
                return loader_error(l, 0, r, "cannot list directory: %m");
        }

        errno = 0;
        while ((de = readdir(d))) {
                char *name;

                if (!policy_dropin_name_is_valid(de->d_name))
                        continue;
                if (n >= POLICY_DROPINS_MAX) {
                        r = loader_error(l, 0, -E2BIG, "more than %u drop-in files", POLICY_DROPINS_MAX);
                        goto out_closedir;
                }
                name = strdup(de->d_name);
                if (!name || !GREEDY_REALLOC(names, allocated, n + 1)) {
                        free(name);
                        r = -ENOMEM;
                        goto out_closedir;
                }
                names[n++] = name;
                errno = 0;
        }
        if (errno != 0)
                r = loader_error(l, 0, negative_errno(), "cannot list directory: %m");

        if (r >= 0 && n > 0) {
                /* strcmp, not strcoll: the order must not depend on the locale. */
                qsort(names, n, sizeof(char *), cmp_strp);

                for (size_t i = 0; i < n && r >= 0; i++) {
                        _cleanup_free_ char *display = NULL;

                        if (asprintf(&display, "%s/%s", dir, names[i]) < 0) {
                                r = -ENOMEM;
                                break;
                        }
                        r = load_file(l, dfd, dir, names[i], display);
                        if (r > 0)
                                r = 0; /* gone since it was listed */
                        /* Messages were formatted already; display dies here. */
                        l->file = dir;
                }
        }

out_closedir:
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        closedir(d);
        return r;
}

/* Checks that need every file: a rule's keys may come from several of them. */
static int validate(Loader *l) {
        Policy *p = l->policy;

        for (size_t i = 0; i < p->n_rules; i++) {
                const PolicyRule *r = p->rules[i];

                l->file = p->sources[r->source];
                /* SECURITY: a rule with no identity key would match every client. */
                if (r->users.n == 0 && r->groups.n == 0 && r->units.n == 0)
                        return loader_error(l, r->line, -EINVAL,
                                            "rule '%s' sets none of Users=, Groups=, Units=, so it "
                                            "would match every client",
                                            r->name);
                /* SECURITY: nor would a unit glob alone ("*", "session-*.scope", "*.service"):
                 * every login is in a session-N.scope, every user manager in user@UID.service. */
                const char *glob = NULL;
                if (r->users.n == 0 && r->groups.n == 0)
                        for (size_t j = 0; j < r->units.n && !glob; j++)
                                if (unit_is_glob(r->units.items[j]))
                                        glob = r->units.items[j];
                if (glob && !l->kept_before)
                        return loader_error(l, r->line, -EINVAL,
                                            "rule '%s' matches Units=%.*s without Users= or Groups=: a "
                                            "unit glob may match any user's login session "
                                            "(session-N.scope) or user manager (user@UID.service); "
                                            "add Users= or Groups=, or name the units exactly",
                                            r->name, quoted_len(glob), glob);
                if (glob) {
                        /* A set a tsmd before kept, which allowed it: refusing the set would stop
                         * the first start after an upgrade over files this refuses as well, and
                         * release every context in the fd store. The rule goes, failing closed. */
                        log_warning("%s:%u: rule '%s' matches Units=%.*s without Users= or Groups=, which this "
                                    "tsmd refuses: dropped from the configuration kept from before the "
                                    "upgrade, its clients denied until the policy is fixed.",
                                    l->file, r->line, r->name, quoted_len(glob), glob);
                        policy_rule_free(p->rules[i]);
                        memmove(p->rules + i, p->rules + i + 1, (p->n_rules - i - 1) * sizeof(PolicyRule *));
                        p->n_rules--;
                        i--;
                }
        }

        return 0;
}

static void loader_done(Loader *l) {
        headers_clear(l);
        for (size_t i = 0; i < l->n_names; i++)
                free(l->names[i].name);
        l->names = mfree(l->names);
        l->n_names = l->n_names_allocated = 0;
        l->policy = policy_unref(l->policy);
        l->error = mfree(l->error);
}

static int loader_init(Loader *l) {
        *l = (Loader){};
        l->policy = policy_new_empty();
        if (!l->policy)
                return -ENOMEM;
        return set_builtin_default_scopes(&l->policy->default_scopes);
}

/* The names resolved, one "user NAME ID" or "group NAME ID" a line, into the policy. */
static int format_resolved_names(Loader *l) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&text, &size);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < l->n_names; i++)
                fprintf(f, "%s %s %" PRIu32 "\n", l->names[i].group ? "group" : "user", l->names[i].name,
                        l->names[i].id);
        if (fclose(f) != 0)
                return -ENOMEM;
        free(l->policy->resolved_names);
        l->policy->resolved_names = TAKE_PTR(text);
        return 0;
}

static int loader_finish(Loader *l, int r, Policy **ret, char **ret_error) {
        if (r >= 0) {
                l->file = "(policy)";
                r = validate(l);
        }
        if (r >= 0)
                r = policy_collect_groups_of_interest(l->policy);
        if (r >= 0)
                r = format_resolved_names(l);
        headers_clear(l);

        if (r < 0) {
                if (ret_error) {
                        if (!l->error && r == -ENOMEM &&
                            asprintf(&l->error, "%s: out of memory", l->file ?: "(policy)") < 0)
                                l->error = NULL;
                        *ret_error = TAKE_PTR(l->error);
                }
                return r;
        }

        *ret = TAKE_PTR(l->policy);
        return 0;
}

int policy_load_full(const char *main_file, const char *dropin_dir, const PolicyFileTrust *trust,
                     Policy **ret, char **ret_error) {
        return policy_load_capture(main_file, dropin_dir, trust, NULL, NULL, ret, ret_error);
}

int policy_load_capture(const char *main_file, const char *dropin_dir, const PolicyFileTrust *trust,
                        PolicyFileFunc on_file, void *userdata, Policy **ret, char **ret_error) {
        _cleanup_(loader_done) Loader l = {};
        int r;

        assert_return(trust, -EINVAL);
        assert_return(ret, -EINVAL);

        r = loader_init(&l);
        l.trust = *trust;
        l.on_file = on_file;
        l.userdata = userdata;
        if (r >= 0 && main_file) {
                r = load_file(&l, AT_FDCWD, NULL, main_file, main_file);
                /* Documented as an empty policy, but a [Policy] File= with a typo would drop every
                 * rule and administrator silently. */
                if (r > 0)
                        log_warning("%s: no such file: no rules or administrators come from it.", main_file);
        }
        if (r >= 0 && dropin_dir)
                r = load_dropins(&l, dropin_dir);

        return loader_finish(&l, r, ret, ret_error);
}

int policy_load(const char *main_file, const char *dropin_dir, Policy **ret, char **ret_error) {
        return policy_load_full(main_file, dropin_dir,
                                &(const PolicyFileTrust) { .owner = geteuid(), .worker_gid = GID_INVALID },
                                ret, ret_error);
}

/* Takes the names of policy_resolved_names()'s text, strictly: what does not parse is not
 * what a load wrote. */
static int load_resolved_names(Loader *l, const char *text) {
        unsigned line = 0;
        int r;

        l->file = "(resolved names)";
        l->names_fixed = true;
        for (const char *p = text; *p;) {
                _cleanup_free_ char *text_line = NULL, *buf = NULL;
                _cleanup_free_ char **words = NULL;
                size_t len = strcspn(p, "\n"), n;
                uint32_t id;
                bool group;

                line++;
                if (p[len] != '\n')
                        return loader_error(l, line, -EBADMSG, "line not terminated");
                text_line = strndup(p, len);
                if (!text_line)
                        return -ENOMEM;
                p += len + 1;

                r = split_words(text_line, &buf, &words, &n);
                if (r < 0)
                        return r;
                if (n != 3 || !(streq(words[0], "user") || streq(words[0], "group")) ||
                    !user_name_is_valid(words[1]) || words[1][strspn(words[1], "0123456789")] == 0 ||
                    !parse_uint32_strict(words[2], &id) || !id_is_valid(id))
                        return loader_error(l, line, -EBADMSG, "expected \"user|group NAME ID\"");
                group = streq(words[0], "group");
                for (size_t i = 0; i < l->n_names; i++)
                        if (l->names[i].group == group && streq(l->names[i].name, words[1]))
                                return loader_error(l, line, -EBADMSG, "%s '%s' named twice", words[0],
                                                    words[1]);
                r = resolved_name_add(l, words[1], group, id);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int load_texts(const PolicySource *sources, size_t n_sources, const char *resolved_names,
                      bool kept_before, Policy **ret, char **ret_error) {
        _cleanup_(loader_done) Loader l = {};
        int r;

        assert_return(sources || n_sources == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        r = loader_init(&l);
        l.kept_before = kept_before;
        if (r >= 0 && resolved_names)
                r = load_resolved_names(&l, resolved_names);
        for (size_t i = 0; i < n_sources && r >= 0; i++) {
                assert_return(sources[i].name && sources[i].text, -EINVAL);
                r = parse_text(&l, sources[i].name, sources[i].text);
        }

        return loader_finish(&l, r, ret, ret_error);
}

int policy_load_from_text(const PolicySource *sources, size_t n_sources, Policy **ret,
                          char **ret_error) {
        return load_texts(sources, n_sources, NULL, /* kept_before= */ false, ret, ret_error);
}

int policy_load_resolved(const PolicySource *sources, size_t n_sources, const char *resolved_names,
                         Policy **ret, char **ret_error) {
        return load_texts(sources, n_sources, resolved_names, /* kept_before= */ !resolved_names, ret,
                          ret_error);
}
