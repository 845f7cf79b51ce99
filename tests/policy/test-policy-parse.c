/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Loading the policy: good files, drop-ins that add rules and override keys, every error the
 * loader knows with its exact "file:line: message", unsafe files refused, and the
 * --dump-config round trip. Runs in: tests (a few cases need root and SKIP without it).
 */

#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <stdarg.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "acl-xattr.h"
#include "file-trust.h"
#include "harness.h"
#include "ini.h"
#include "log-capture.h"
#include "macro.h"
#include "policy.h"

typedef struct ErrorCase {
        const char *text;
        int error;
        const char *message;
} ErrorCase;

static const ErrorCase error_cases[] = {
        /* Syntax, as diagnosed on top of ini_parse(). */
        { "[Defaults]\nScopes\n", EBADMSG, "t.conf:2: expected Key=Value, a [Section] header or a comment" },
        { "[Defaults\nScopes=info\n", EBADMSG, "t.conf:1: section header without closing ']'" },
        { "[Client \"vm-web1\"]\nUsers=0\n", EBADMSG,
          "t.conf:1: invalid section header [Client \"vm-web1\"]: use [Defaults], [Admin] or "
          "[Client:NAME], NAME made of letters, digits and - _ . : @" },
        { "# comment\nUsers=0\n[Admin]\n", EBADMSG,
          "t.conf:2: assignment before the first [Section] header" },
        { "[Admin]\nUs ers=0\n", EBADMSG, "t.conf:2: invalid key name 'Us ers'" },

        /* Sections. */
        { "[Foo]\nUsers=0\n", EINVAL,
          "t.conf:1: unknown section [Foo]; expected [Defaults], [Admin] or [Client:NAME] (names are "
          "case-sensitive)" },
        { "[Admin]\n\n[Foo]\n", EINVAL,
          "t.conf:3: unknown section [Foo]; expected [Defaults], [Admin] or [Client:NAME] (names are "
          "case-sensitive)" },
        { "[client:x]\nUsers=0\n", EINVAL,
          "t.conf:1: unknown section [client:x]; expected [Defaults], [Admin] or [Client:NAME] (names "
          "are case-sensitive)" },
        { "[Client:]\nUsers=0\n", EINVAL, "t.conf:1: rule name missing: write [Client:NAME]" },

        /* Keys. */
        { "[Defaults]\nDevices=*\n", EINVAL,
          "t.conf:2: unknown key 'Devices' in [Defaults] (valid: Scopes, MaxContexts, MaxVDevices)" },
        { "[Admin]\nUnits=a.service\n", EINVAL,
          "t.conf:2: unknown key 'Units' in [Admin] (valid: Users, Groups)" },
        { "[Client:a]\nUsers=0\nUser=0\n", EINVAL,
          "t.conf:3: unknown key 'User' in [Client:a] (valid: Users, Groups, Units, Devices, Backends, "
          "Scopes, MaxContexts, MaxVDevices)" },
        { "[Client:a]\nusers=0\n", EINVAL,
          "t.conf:2: unknown key 'users' in [Client:a] (valid: Users, Groups, Units, Devices, Backends, "
          "Scopes, MaxContexts, MaxVDevices)" },

        /* Users= and Groups=. */
        { "[Client:a]\nUsers=tsmd-no-such-user\n", ENOENT, "t.conf:2: unknown user 'tsmd-no-such-user'" },
        { "[Admin]\nGroups=tsmd-no-such-group\n", ENOENT, "t.conf:2: unknown group 'tsmd-no-such-group'" },
        { "[Client:a]\nUsers=4294967295\n", EINVAL, "t.conf:2: '4294967295' is not a valid user ID" },
        { "[Client:a]\nUsers=65535\n", EINVAL, "t.conf:2: '65535' is not a valid user ID" },
        { "[Client:a]\nUsers=99999999999\n", EINVAL, "t.conf:2: '99999999999' is not a valid user ID" },
        { "[Client:a]\nGroups=4294967295\n", EINVAL, "t.conf:2: '4294967295' is not a valid group ID" },
        { "[Client:a]\nUsers=-1\n", EINVAL, "t.conf:2: '-1' is not a valid user name or ID" },
        { "[Client:a]\nUsers=0 a/b\n", EINVAL, "t.conf:2: 'a/b' is not a valid user name or ID" },

        /* Units=. */
        { "[Client:a]\nUnits=vm-web1\n", EINVAL,
          "t.conf:2: 'vm-web1' is not a unit name (expected NAME.service or NAME.scope, or a glob "
          "such as machine-*.scope)" },
        { "[Client:a]\nUnits=vm-web1.slice\n", EINVAL,
          "t.conf:2: 'vm-web1.slice' is not a unit name (expected NAME.service or NAME.scope, or a "
          "glob such as machine-*.scope)" },
        { "[Client:a]\nUnits=vm[.service\n", EINVAL,
          "t.conf:2: malformed unit glob 'vm[.service': '[' without matching ']'" },
        { "[Client:a]\nUnits=vm/x.service\n", EINVAL,
          "t.conf:2: malformed unit glob 'vm/x.service': invalid character" },

        /* Devices=. */
        { "[Client:a]\nUsers=0\nDevices=0000:1:00.0\n", EINVAL,
          "t.conf:3: '0000:1:00.0' is not a PCI address (expected DDDD:BB:DD.F, e.g. 0000:01:00.0, or "
          "a glob such as 0000:02:*)" },
        { "[Client:a]\nUsers=0\nDevices=0000:01:20.0\n", EINVAL,
          "t.conf:3: '0000:01:20.0' is not a PCI address (expected DDDD:BB:DD.F, e.g. 0000:01:00.0, or "
          "a glob such as 0000:02:*)" },
        /* An 8-digit domain is the kernel's, which tsmd does not serve (SYSFS.md). */
        { "[Client:a]\nUsers=0\nDevices=ffffffff:01:00.0\n", EINVAL,
          "t.conf:3: 'ffffffff:01:00.0' is not a PCI address (expected DDDD:BB:DD.F, e.g. 0000:01:00.0, or "
          "a glob such as 0000:02:*)" },
        { "[Client:a]\nUsers=0\nDevices=0000:0[1\n", EINVAL,
          "t.conf:3: malformed device glob '0000:0[1': '[' without matching ']'" },
        { "[Client:a]\nUsers=0\nDevices=0000:01:00.[]\n", EINVAL,
          "t.conf:3: malformed device glob '0000:01:00.[]': empty '[]'" },
        { "[Client:a]\nUsers=0\nDevices=0000:01:00.0]\n", EINVAL,
          "t.conf:3: malformed device glob '0000:01:00.0]': ']' without '['" },
        { "[Client:a]\nUsers=0\nDevices=0000:01:0[0/]*\n", EINVAL,
          "t.conf:3: malformed device glob '0000:01:0[0/]*': invalid character in '[...]'" },
        { "[Client:a]\nUsers=0\nDevices=0000:01:00.0/x\n", EINVAL,
          "t.conf:3: malformed device glob '0000:01:00.0/x': invalid character" },

        /* Backends= and Scopes=. */
        { "[Client:a]\nUsers=0\nBackends=emulated sgx\n", EINVAL,
          "t.conf:3: unknown backend 'sgx' (known: tdx-connect sev-tio arm-cca devsec-sample emulated)" },
        { "[Client:a]\nUsers=0\nScopes=info debug\n", EINVAL,
          "t.conf:3: unknown scope 'debug' (known: info state-change debug-read debug-write)" },
        { "[Client:a]\nUsers=0\nScopes=INFO\n", EINVAL,
          "t.conf:3: unknown scope 'INFO' (known: info state-change debug-read debug-write)" },
        { "[Defaults]\nScopes=info debug-read\n", EINVAL,
          "t.conf:2: scope 'debug-read' cannot be granted by [Defaults]; name it in the Scopes= of a "
          "[Client:NAME] rule" },
        { "[Defaults]\nScopes=debug-write\n", EINVAL,
          "t.conf:2: scope 'debug-write' cannot be granted by [Defaults]; name it in the Scopes= of a "
          "[Client:NAME] rule" },

        /* Limits. */
        { "[Defaults]\nMaxContexts=0\n", EINVAL,
          "t.conf:2: MaxContexts= must be an integer from 1 to 65536, not '0'" },
        { "[Defaults]\nMaxVDevices=65537\n", EINVAL,
          "t.conf:2: MaxVDevices= must be an integer from 1 to 65536, not '65537'" },
        { "[Client:a]\nUsers=0\nMaxContexts=-1\n", EINVAL,
          "t.conf:3: MaxContexts= must be an integer from 1 to 65536, not '-1'" },
        { "[Client:a]\nUsers=0\nMaxContexts=2 3\n", EINVAL,
          "t.conf:3: MaxContexts= must be an integer from 1 to 65536, not '2 3'" },
        { "[Client:a]\nUsers=0\nMaxContexts=0x10\n", EINVAL,
          "t.conf:3: MaxContexts= must be an integer from 1 to 65536, not '0x10'" },

        /* Trailing comments are a classic; say what is wrong. */
        { "[Client:a]\nUsers=107              # user names or numeric uids\n", EINVAL,
          "t.conf:2: comments must be on a line of their own; '#' is not allowed in a value" },
        { "[Defaults]\nMaxContexts=4 ; four\n", EINVAL,
          "t.conf:2: comments must be on a line of their own; ';' is not allowed in a value" },

        /* The same key twice in one file, also across two occurrences of a section. */
        { "[Client:a]\nUsers=0\nDevices=0000:01:00.0\nDevices=0000:02:00.0\n", EINVAL,
          "t.conf:4: Devices= is already set on line 3 of this file; put all values into one assignment" },
        { "[Client:a]\nUsers=0\n[Client:b]\nUsers=1\n[Client:a]\nUsers=2\n", EINVAL,
          "t.conf:6: Users= is already set on line 2 of this file; put all values into one assignment" },
        { "[Defaults]\nMaxContexts=1\n[Admin]\n[Defaults]\nMaxContexts=2\n", EINVAL,
          "t.conf:5: MaxContexts= is already set on line 2 of this file; put all values into one "
          "assignment" },

        /* Rules that would match everybody. */
        { "[Client:a]\nDevices=*\n", EINVAL,
          "t.conf:1: rule 'a' sets none of Users=, Groups=, Units=, so it would match every client" },
        { "[Defaults]\nMaxContexts=1\n\n[Client:empty]\n", EINVAL,
          "t.conf:4: rule 'empty' sets none of Users=, Groups=, Units=, so it would match every client" },
        { "[Client:a]\nUsers=\nGroups=\nUnits=\nDevices=*\n", EINVAL,
          "t.conf:1: rule 'a' sets none of Users=, Groups=, Units=, so it would match every client" },
        /* Every login process is in a session-N.scope, every user manager in user@UID.service:
         * a unit glob alone may match every local user. */
        { "[Client:all]\nUnits=*\nDevices=*\nScopes=debug-write\n", EINVAL,
          "t.conf:1: rule 'all' matches Units=* without Users= or Groups=: a unit glob may match any "
          "user's login session (session-N.scope) or user manager (user@UID.service); add Users= or "
          "Groups=, or name the units exactly" },
        { "[Client:s]\nUnits=vm-a.service session-*.scope\nDevices=*\n", EINVAL,
          "t.conf:1: rule 's' matches Units=session-*.scope without Users= or Groups=: a unit glob may "
          "match any user's login session (session-N.scope) or user manager (user@UID.service); add "
          "Users= or Groups=, or name the units exactly" },
        { "[Client:u]\nUnits=user@100?.service\nDevices=*\n", EINVAL,
          "t.conf:1: rule 'u' matches Units=user@100?.service without Users= or Groups=: a unit glob may "
          "match any user's login session (session-N.scope) or user manager (user@UID.service); add "
          "Users= or Groups=, or name the units exactly" },
        { "[Client:b]\nUnits=[a-z]m.scope\nDevices=*\n", EINVAL,
          "t.conf:1: rule 'b' matches Units=[a-z]m.scope without Users= or Groups=: a unit glob may "
          "match any user's login session (session-N.scope) or user manager (user@UID.service); add "
          "Users= or Groups=, or name the units exactly" },
};

/* A unit glob with Users= or Groups=, or units named exactly, are fine. */
TEST(unit_globs_with_an_identity) {
        static const char *const good[] = {
                "[Client:a]\nUsers=107\nUnits=machine-*.scope\nDevices=*\n",
                "[Client:a]\nGroups=36\nUnits=*\nDevices=*\n",
                "[Client:a]\nUnits=vm-web1.service machine-qemu\\x2d1\\x2dweb1.scope\nDevices=*\n",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_(policy_unrefp) Policy *p = NULL;
                _cleanup_free_ char *error = NULL;
                const PolicySource src = { "t.conf", good[i] };

                if (policy_load_from_text(&src, 1, &p, &error) < 0)
                        TEST_FAIL("case %zu refused: %s", i, strna(error));
        }

        /* Checked once the files are merged: a drop-in's empty Users= takes the identity away. */
        {
                const PolicySource sources[] = {
                        { "main.conf", "[Client:m]\nUsers=1\nUnits=machine-*.scope\nDevices=*\n" },
                        { "10-drop.conf", "[Client:m]\nUsers=\n" },
                };
                _cleanup_free_ char *error = NULL;
                Policy *p = NULL;

                ASSERT_ERRNO(policy_load_from_text(sources, ELEMENTSOF(sources), &p, &error), EINVAL);
                ASSERT_STREQ(error, "main.conf:1: rule 'm' matches Units=machine-*.scope without Users= or "
                                    "Groups=: a unit glob may match any user's login session (session-N.scope) "
                                    "or user manager (user@UID.service); add Users= or Groups=, or name the "
                                    "units exactly");
                ASSERT_NULL(p);
        }
}

TEST(error_messages) {
        for (size_t i = 0; i < ELEMENTSOF(error_cases); i++) {
                const ErrorCase *c = &error_cases[i];
                const PolicySource src = { "t.conf", c->text };
                _cleanup_free_ char *error = NULL;
                Policy *p = NULL;
                int r;

                r = policy_load_from_text(&src, 1, &p, &error);
                if (r != -c->error || !error || !streq(error, c->message))
                        TEST_FAIL("case %zu: got %d '%s',\n  expected %d '%s'", i, r, strna(error),
                                  -c->error, c->message);
                ASSERT_NULL(p);
        }
}

TEST(long_line_and_long_names) {
        _cleanup_free_ char *text = NULL, *error = NULL;
        char name[200];
        Policy *p = NULL;
        PolicySource src = { "t.conf", NULL };

        text = malloc(INI_LINE_MAX + 1000 + 32);
        ASSERT_NOT_NULL(text);
        strcpy(text, "[Admin]\nUsers=");
        memset(text + strlen(text), 'x', INI_LINE_MAX + 1000);
        strcpy(text + 14 + INI_LINE_MAX + 1000, "\n");
        src.text = text;
        ASSERT_ERRNO(policy_load_from_text(&src, 1, &p, &error), EBADMSG);
        {
                char want[96];

                snprintf(want, sizeof(want), "t.conf:2: line too long (more than %u bytes)", INI_LINE_MAX);
                ASSERT_STREQ(error, want);
        }
        error = mfree(error);

        /* A comment says nothing: any length (tsmd --dump-config makes each line a comment two
         * bytes longer). */
        strcpy(text, "[Admin]\n# ");
        memset(text + strlen(text), 'x', INI_LINE_MAX + 1000);
        strcpy(text + 10 + INI_LINE_MAX + 1000, "\nUsers=0\n");
        ASSERT_OK(policy_load_from_text(&src, 1, &p, &error));
        p = policy_unref(p);

        memset(name, 'n', sizeof(name));
        snprintf(text, 5000, "[Client:%.*s]\nUsers=0\n", (int) POLICY_RULE_NAME_MAX + 1, name);
        ASSERT_ERRNO(policy_load_from_text(&src, 1, &p, &error), EINVAL);
        ASSERT_STREQ(error, "t.conf:1: rule name too long (max 128 characters)");
        error = mfree(error);

        /* Exactly the maximum is fine. */
        snprintf(text, 5000, "[Client:%.*s]\nUsers=0\n", (int) POLICY_RULE_NAME_MAX, name);
        ASSERT_OK(policy_load_from_text(&src, 1, &p, &error));
        p = policy_unref(p);
}

TEST(too_many_rules) {
        _cleanup_free_ char *text = NULL, *error = NULL, *expected = NULL;
        size_t size = 0;
        Policy *p = NULL;
        FILE *f;

        f = open_memstream(&text, &size);
        ASSERT_NOT_NULL(f);
        for (unsigned i = 0; i <= POLICY_RULES_MAX; i++)
                fprintf(f, "[Client:r%u]\nUsers=%u\n", i, i + 1);
        ASSERT_EQ(fclose(f), 0);

        const PolicySource src = { "t.conf", text };
        ASSERT_ERRNO(policy_load_from_text(&src, 1, &p, &error), E2BIG);
        ASSERT_TRUE(asprintf(&expected, "t.conf:%u: too many [Client:NAME] rules (at most %u)",
                             2 * POLICY_RULES_MAX + 1, POLICY_RULES_MAX) > 0);
        ASSERT_STREQ(error, expected);
}

TEST(list_limit) {
        _cleanup_free_ char *text = NULL, *error = NULL;
        size_t size = 0;
        Policy *p = NULL;
        FILE *f;

        f = open_memstream(&text, &size);
        ASSERT_NOT_NULL(f);
        fputs("[Client:a]\nUsers=", f);
        for (unsigned i = 0; i <= POLICY_LIST_MAX; i++)
                fprintf(f, "%u ", i);
        fputs("\n", f);
        ASSERT_EQ(fclose(f), 0);

        const PolicySource src = { "t.conf", text };
        ASSERT_ERRNO(policy_load_from_text(&src, 1, &p, &error), E2BIG);
        ASSERT_STREQ(error, "t.conf:2: too many values for Users= (at most 256)");
}

#define EMU TSM_BACKEND_EMULATED
#define SEV TSM_BACKEND_SEV_TIO

TEST(good_file_and_names) {
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL;
        const PolicySource src = {
                "good.conf",
                "# The brief's example, with names that exist on every Debian system.\n"
                "[Defaults]\n"
                "# comment lines and blank lines are fine anywhere\n"
                "\n"
                "  Scopes = info state-change  \n"
                "MaxContexts=4\n"
                "MaxVDevices=16\n"
                "; semicolon comment\n"
                "[Admin]\n"
                "Users=root\n"
                "Groups=adm\n"
                "\n"
                "[Client:vm-web1]\n"
                "Users=daemon 107\n"
                "Groups=root\n"
                "Units=vm-web1.service machine-*.scope\n"
                "Devices=0000:01:00.0 0000:02:*\n"
                "Backends=emulated sev-tio\n"
                "Scopes=info state-change debug-read\n"
                "MaxContexts=2\n"
                "MaxVDevices=8\n",
        };
        PeerIdentity daemon_in_unit = { .uid = 1, .gid = 0, .unit = (char *) "vm-web1.service" },
                     daemon_no_unit = { .uid = 1, .gid = 0 }, adm = { .uid = 1234, .gid = 1234 };
        struct group *g;
        gid_t adm_gid;
        unsigned c, v;

        g = getgrnam("adm");
        if (!g)
                SKIP("no group 'adm' here");
        adm_gid = g->gr_gid;
        adm.gid = adm_gid;

        ASSERT_OK(policy_load_from_text(&src, 1, &p, &error));
        ASSERT_NULL(error);
        ASSERT_EQ(policy_n_rules(p), 1);

        ASSERT_OK(policy_check_scope(p, &daemon_in_unit, "0000:02:03.1", SEV, "debug-read", NULL));
        ASSERT_ERRNO(policy_check_scope(p, &daemon_in_unit, "0000:02:03.1", SEV, "debug-write", NULL),
                     EPERM);
        ASSERT_ERRNO(policy_check_device(p, &daemon_no_unit, "0000:01:00.0", EMU, NULL), EPERM);
        policy_get_limits(p, &daemon_in_unit, &c, &v);
        ASSERT_EQ(c, 2);
        ASSERT_EQ(v, 8);

        ASSERT_TRUE(policy_is_admin(p, &adm));
        ASSERT_FALSE(policy_is_admin(p, &daemon_in_unit));
}

TEST(example_file_loads) {
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL;
        PeerIdentity u = { .uid = 1000, .gid = 1000 };
        int r;

        r = policy_load(POLICY_EXAMPLE_FILE, NULL, &p, &error);
        if (r < 0)
                TEST_FAIL("%s", strna(error));
        /* Safe default: nobody is a client. */
        ASSERT_EQ(policy_n_rules(p), 0);
        ASSERT_FALSE(policy_is_client(p, &u));
}

TEST(example_rule_uncommented_loads) {
        _cleanup_free_ char *text = NULL, *error = NULL;
        _cleanup_(policy_unrefp) Policy *p = NULL;
        size_t size = 0;
        char line[4096];
        bool in_rule = false;
        FILE *in, *out;

        /* The commented example rule must be valid once uncommented (with ids in place of
         * names that may not exist on the test machine). */
        in = fopen(POLICY_EXAMPLE_FILE, "re");
        ASSERT_NOT_NULL(in);
        out = open_memstream(&text, &size);
        ASSERT_NOT_NULL(out);
        while (fgets(line, sizeof(line), in)) {
                if (strneq(line, "#[Client:", 9))
                        in_rule = true;
                else if (line[0] == '[')
                        in_rule = false;

                /* "#[Client:...]" and "#Key=..." lines of the example rule; prose stays. */
                bool key = line[1] >= 'A' && line[1] <= 'Z' && strcspn(line, "= ") < strcspn(line, " ");

                if (in_rule && line[0] == '#' && (line[1] == '[' || key))
                        fputs(line + 1, out);
                else
                        fputs(line, out);
        }
        fclose(in);
        ASSERT_EQ(fclose(out), 0);

        const PolicySource src = { "example-uncommented", text };
        ASSERT_OK(policy_load_from_text(&src, 1, &p, &error));
        ASSERT_GE(policy_n_rules(p), 1);
}

/* ---- files and drop-ins ---- */

static char tmpdir[] = "/tmp/test-policy-XXXXXX";

static int rm_cb(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

/* The harness ends a test with _exit(), which skips atexit(): remove the directory when the
 * test's scope ends instead. (A failed ASSERT leaves it, for a look at what went wrong.) */
static void tmpdir_guard(const char **dir) {
        if (*dir)
                (void) nftw(*dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}
#define TMPDIR_GUARD _cleanup_(tmpdir_guard) _unused_ const char *_tmpdir_ = make_tmpdir()

static const char *make_tmpdir(void) {
        ASSERT_NOT_NULL(mkdtemp(tmpdir));
        ASSERT_OK(chmod(tmpdir, 0755));
        return tmpdir;
}

_printf_(1, 2) static char *path_of(const char *format, ...) {
        char *rel = NULL, *path = NULL;
        va_list ap;

        va_start(ap, format);
        ASSERT_TRUE(vasprintf(&rel, format, ap) >= 0);
        va_end(ap);
        ASSERT_TRUE(asprintf(&path, "%s/%s", tmpdir, rel) >= 0);
        free(rel);
        return path;
}

static void write_file(const char *path, mode_t mode, const char *text) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        ASSERT_OK(fchmod(fd, mode));
        close(fd);
}

TEST(missing_files_give_empty_policy) {
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL, *main_file = NULL, *dir = NULL, *logged = NULL;
        PeerIdentity root = { .uid = 0, .gid = 0 };
        int saved;

        TMPDIR_GUARD;
        main_file = path_of("policy.conf");
        dir = path_of("policy.d");

        saved = log_capture_begin();
        ASSERT_OK(policy_load(main_file, dir, &p, &error));
        logged = log_capture_end(saved);
        ASSERT_EQ(policy_n_rules(p), 0);
        ASSERT_TRUE(policy_is_admin(p, &root));
        ASSERT_FALSE(policy_is_client(p, &root));
        /* Said, though: a [Policy] File= with a typo drops every rule. A missing drop-in
         * directory is no mistake (most hosts have none). */
        ASSERT_NOT_NULL(strstr(logged, main_file));
        ASSERT_NOT_NULL(strstr(logged, "policy.conf: no such file: no rules or administrators come from it."));
        ASSERT_EQ(count_occurrences(logged, "no such file"), 1u);
}

TEST(dropins) {
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL, *main_file = NULL, *dir = NULL, *f = NULL;
        PeerIdentity u1000 = { .uid = 1000, .gid = 1000 }, u2000 = { .uid = 2000, .gid = 2000 };
        unsigned c, v;

        TMPDIR_GUARD;
        main_file = path_of("policy.conf");
        dir = path_of("policy.d");
        ASSERT_OK(mkdir(dir, 0755));

        write_file(main_file, 0644,
                   "[Defaults]\nMaxContexts=4\nMaxVDevices=16\n"
                   "[Client:a]\nUsers=1000\nDevices=0000:01:00.0\nScopes=info\n");
        /* Lexical order: 10-a before 20-b, whatever readdir() returns. */
        f = path_of("policy.d/20-b.conf");
        write_file(f, 0644,
                   "[Defaults]\nMaxVDevices=7\n"
                   "[Client:b]\nUsers=2000\nDevices=0000:02:00.0\nMaxContexts=8\n");
        free(f);
        f = path_of("policy.d/10-a.conf");
        write_file(f, 0644,
                   "# Replaces the main file's values: lists are not appended.\n"
                   "[Defaults]\nMaxContexts=6\nMaxVDevices=5\n"
                   "[Client:a]\nDevices=0000:03:00.0\nScopes=\n");
        free(f);
        /* Ignored: hidden, wrong suffix, masked. */
        f = path_of("policy.d/.hidden.conf");
        write_file(f, 0644, "garbage\n");
        free(f);
        f = path_of("policy.d/README");
        write_file(f, 0644, "garbage\n");
        free(f);
        f = path_of("policy.d/30-masked.conf");
        ASSERT_OK(symlink("/dev/null", f));

        ASSERT_OK(policy_load(main_file, dir, &p, &error));
        ASSERT_EQ(policy_n_rules(p), 2);

        /* Rule 'a': Devices= replaced by 10-a.conf, Scopes= reset to [Defaults]. */
        ASSERT_ERRNO(policy_check_device(p, &u1000, "0000:01:00.0", TSM_BACKEND_EMULATED, NULL), EPERM);
        ASSERT_OK(policy_check_scope(p, &u1000, "0000:03:00.0", TSM_BACKEND_EMULATED, "state-change", NULL));
        ASSERT_OK(policy_check_scope(p, &u2000, "0000:02:00.0", TSM_BACKEND_EMULATED, "info", NULL));

        /* [Defaults]: MaxContexts from 10-a, MaxVDevices from 20-b (later file wins). */
        policy_get_limits(p, &u1000, &c, &v);
        ASSERT_EQ(c, 6);
        ASSERT_EQ(v, 7);
        policy_get_limits(p, &u2000, &c, &v);
        ASSERT_EQ(c, 8);
        ASSERT_EQ(v, 7);
}

static char *dump(const Policy *p);

/* An empty [Defaults] Scopes= means no default scopes, as an empty assignment empties a list in
 * systemd: a rule without Scopes= of its own then grants none; and the dump says so again. */
TEST(empty_default_scopes) {
        const PolicySource src[] = {
                { "main.conf", "[Defaults]\nScopes=info\n[Client:a]\nUsers=1000\nDevices=*\n"
                               "[Client:b]\nUsers=2000\nDevices=*\nScopes=info\n" },
                { "10-none.conf", "[Defaults]\nScopes=\n" },
        };
        _cleanup_(policy_unrefp) Policy *p = NULL, *q = NULL;
        _cleanup_free_ char *error = NULL, *d = NULL;
        PeerIdentity u1000 = { .uid = 1000, .gid = 1000 }, u2000 = { .uid = 2000, .gid = 2000 };
        const char *reason = NULL;

        ASSERT_OK(policy_load_from_text(src, ELEMENTSOF(src), &p, &error));
        ASSERT_OK(policy_check_device(p, &u1000, "0000:01:00.0", TSM_BACKEND_EMULATED, NULL));
        ASSERT_ERRNO(policy_check_scope(p, &u1000, "0000:01:00.0", TSM_BACKEND_EMULATED, "info", &reason), EPERM);
        ASSERT_STREQ(reason, "scope 'info' not granted");
        ASSERT_ERRNO(policy_check_scope(p, &u1000, "0000:01:00.0", TSM_BACKEND_EMULATED, "state-change", NULL),
                     EPERM);
        ASSERT_OK(policy_check_scope(p, &u2000, "0000:01:00.0", TSM_BACKEND_EMULATED, "info", NULL));

        /* The dump's empty Scopes= loads as the same. */
        d = dump(p);
        ASSERT_NOT_NULL(strstr(d, "\n[Defaults]\nScopes=\n"));
        const PolicySource again = { "dump", d };
        ASSERT_OK(policy_load_from_text(&again, 1, &q, &error));
        ASSERT_ERRNO(policy_check_scope(q, &u1000, "0000:01:00.0", TSM_BACKEND_EMULATED, "info", NULL), EPERM);
}

TEST(dropin_only_and_cross_file_override_is_not_duplicate) {
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL;
        const PolicySource src[] = {
                { "main.conf", "[Client:a]\nUsers=1000\nDevices=0000:01:00.0\n" },
                { "10.conf", "[Client:a]\nUsers=1001\n" },
                { "20.conf", "[Client:a]\nUsers=1002\n" },
        };
        PeerIdentity u1000 = { .uid = 1000, .gid = 1000 }, u1002 = { .uid = 1002, .gid = 1002 };

        ASSERT_OK(policy_load_from_text(src, ELEMENTSOF(src), &p, &error));
        ASSERT_ERRNO(policy_check_device(p, &u1000, "0000:01:00.0", TSM_BACKEND_EMULATED, NULL), EPERM);
        ASSERT_OK(policy_check_device(p, &u1002, "0000:01:00.0", TSM_BACKEND_EMULATED, NULL));
}

TEST(dropin_that_empties_a_rule_is_refused) {
        _cleanup_free_ char *error = NULL;
        const PolicySource src[] = {
                { "main.conf", "\n[Client:a]\nUsers=1000\nDevices=*\n" },
                { "50-reset.conf", "[Client:a]\nUsers=\n" },
        };
        Policy *p = NULL;

        ASSERT_ERRNO(policy_load_from_text(src, ELEMENTSOF(src), &p, &error), EINVAL);
        ASSERT_STREQ(error, "main.conf:2: rule 'a' sets none of Users=, Groups=, Units=, so it would match "
                            "every client");
        ASSERT_NULL(p);
}

TEST(errors_name_the_dropin) {
        _cleanup_free_ char *error = NULL, *main_file = NULL, *dir = NULL, *f = NULL, *expected = NULL;
        Policy *p = NULL;

        TMPDIR_GUARD;
        main_file = path_of("policy.conf");
        dir = path_of("policy.d");
        ASSERT_OK(mkdir(dir, 0755));
        write_file(main_file, 0644, "[Client:a]\nUsers=0\n");
        f = path_of("policy.d/10-a.conf");
        write_file(f, 0644, "[Client:a]\n\nGroups=tsmd-no-such-group\n");

        ASSERT_ERRNO(policy_load(main_file, dir, &p, &error), ENOENT);
        ASSERT_TRUE(asprintf(&expected, "%s:3: unknown group 'tsmd-no-such-group'", f) > 0);
        ASSERT_STREQ(error, expected);
        ASSERT_NULL(p);
}

static void expect_file_error(const char *main_file, const char *dir, int e, const char *expected) {
        _cleanup_free_ char *error = NULL;
        Policy *p = (Policy *) 0x1; /* must stay untouched on failure */
        int r;

        r = policy_load(main_file, dir, &p, &error);
        if (r != -e || !error || !streq(error, expected))
                TEST_FAIL("got %d '%s', expected %d '%s'", r, strna(error), -e, expected);
        ASSERT_TRUE(p == (Policy *) 0x1);
}

TEST(unsafe_and_odd_files) {
        _cleanup_free_ char *main_file = NULL, *dir = NULL, *f = NULL, *expected = NULL;
        _cleanup_close_ int fd = -EBADF;

        TMPDIR_GUARD;
        main_file = path_of("policy.conf");
        dir = path_of("policy.d");
        ASSERT_OK(mkdir(dir, 0755));

        /* World-writable file. */
        write_file(main_file, 0666, "[Admin]\n");
        ASSERT_TRUE(asprintf(&expected, "%s: writable by every user; refusing to use it", main_file) > 0);
        expect_file_error(main_file, NULL, EPERM, expected);
        expected = mfree(expected);

        /* NUL byte, with its line. */
        {
                static const char text[] = "[Admin]\n\nUsers=0\0\n";
                fd = open(main_file, O_WRONLY | O_TRUNC | O_CLOEXEC);
                ASSERT_TRUE(fd >= 0);
                ASSERT_EQ(write(fd, text, sizeof(text) - 1), (ssize_t) sizeof(text) - 1);
                ASSERT_OK(fchmod(fd, 0644));
                fd = safe_close(fd);
        }
        ASSERT_TRUE(asprintf(&expected, "%s:3: NUL byte in a text file", main_file) > 0);
        expect_file_error(main_file, NULL, EBADMSG, expected);
        expected = mfree(expected);

        /* Too large (sparse). */
        fd = open(main_file, O_WRONLY | O_TRUNC | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(ftruncate(fd, POLICY_FILE_MAX + 1));
        fd = safe_close(fd);
        ASSERT_TRUE(asprintf(&expected, "%s: larger than 1048576 bytes", main_file) > 0);
        expect_file_error(main_file, NULL, E2BIG, expected);
        expected = mfree(expected);
        ASSERT_OK(unlink(main_file));

        /* A directory where a file is expected, in the drop-in directory and as main file. */
        f = path_of("policy.d/10-dir.conf");
        ASSERT_OK(mkdir(f, 0755));
        ASSERT_TRUE(asprintf(&expected, "%s: not a regular file", f) > 0);
        expect_file_error(NULL, dir, EINVAL, expected);
        expected = mfree(expected);
        ASSERT_TRUE(asprintf(&expected, "%s: not a regular file", dir) > 0);
        expect_file_error(dir, NULL, EINVAL, expected);
        expected = mfree(expected);
        ASSERT_OK(rmdir(f));
        f = mfree(f);

        /* A FIFO must not hang the loader. */
        f = path_of("policy.d/10-fifo.conf");
        ASSERT_OK(mkfifo(f, 0644));
        ASSERT_TRUE(asprintf(&expected, "%s: not a regular file", f) > 0);
        expect_file_error(NULL, dir, EINVAL, expected);
        expected = mfree(expected);
        ASSERT_OK(unlink(f));
        f = mfree(f);

        /* A world-writable drop-in directory, sticky or not: whoever adds an entry to it can
         * fail every load (a FIFO, above), sticky bit or not. */
        ASSERT_OK(chmod(dir, 0777));
        ASSERT_TRUE(asprintf(&expected, "%s: directory %s is writable by every user; refusing to use it", dir,
                             dir) > 0);
        expect_file_error(NULL, dir, EPERM, expected);
        ASSERT_OK(chmod(dir, 01777));
        expect_file_error(NULL, dir, EPERM, expected);
        expected = mfree(expected);
        ASSERT_OK(chmod(dir, 0755));

        /* The drop-in directory is a file. */
        f = path_of("notadir");
        write_file(f, 0644, "");
        ASSERT_TRUE(asprintf(&expected, "%s: cannot open directory: Not a directory", f) > 0);
        expect_file_error(NULL, f, ENOTDIR, expected);
}

/* Whether anything opened the file that watch (inotify_init1() fd) watches since the last call:
 * a lookup with O_PATH does not count. */
static bool opened_since(int watch) {
        char buf[4096];
        bool opened = false;
        ssize_t n;

        while ((n = read(watch, buf, sizeof(buf))) > 0)
                for (size_t at = 0; at < (size_t) n;) {
                        struct inotify_event e;

                        memcpy(&e, buf + at, sizeof(e));
                        opened = opened || (e.mask & IN_OPEN);
                        at += sizeof(e) + e.len;
                }
        ASSERT_TRUE(n < 0 && errno == EAGAIN);
        return opened;
}

/* SECURITY: a drop-in that is a symlink to a FIFO or a device (root's mistake, or the
 * --check-config user's): refused without being opened, for the opening of a device can act (a
 * watchdog reboots the host), and the loader may be root's tsmd --check-config. */
TEST(dropin_symlink_to_a_device_or_fifo_is_not_opened) {
        static const PolicyFileTrust root_only = { .owner = 0, .worker_gid = 4243 };
        _cleanup_free_ char *dir = NULL, *fifo = NULL, *device = NULL, *link = NULL, *expected = NULL;
        _cleanup_close_ int watch = -EBADF;

        if (geteuid() != 0)
                SKIP("needs root to make a device node and chown the directory");

        TMPDIR_GUARD;
        dir = path_of("policy.d");
        fifo = path_of("fifo");
        device = path_of("zero");
        link = path_of("policy.d/10-link.conf");
        ASSERT_OK(mkdir(dir, 0775));
        ASSERT_OK(chown(dir, 0, 4244));
        ASSERT_OK(mkfifo(fifo, 0644));
        ASSERT_OK(mknod(device, S_IFCHR | 0644, makedev(1, 5)));
        watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        ASSERT_TRUE(watch >= 0);
        ASSERT_TRUE(inotify_add_watch(watch, fifo, IN_OPEN) >= 0);
        ASSERT_TRUE(inotify_add_watch(watch, device, IN_OPEN) >= 0);
        ASSERT_TRUE(asprintf(&expected, "%s: not a regular file", link) > 0);

        ASSERT_OK(symlink(fifo, link));
        expect_file_error(NULL, dir, EINVAL, expected);
        if (opened_since(watch))
                TEST_FAIL("the loader opened the FIFO a drop-in links to");
        ASSERT_OK(unlink(link));

        ASSERT_OK(symlink(device, link));
        expect_file_error(NULL, dir, EINVAL, expected);
        if (opened_since(watch))
                TEST_FAIL("the loader opened the device a drop-in links to");

        /* As the main file, or read as tsmd.conf is, the same. */
        {
                _cleanup_free_ char *text = NULL, *error = NULL;

                ASSERT_ERRNO(file_trust_read(link, &root_only, 4096, &text, NULL, &error), EBADFD);
                ASSERT_NULL(error);
                /* A directory is told apart, as ini_read_fd() tells it. */
                {
                        _cleanup_free_ char *plain = path_of("plain.d");

                        ASSERT_OK(mkdir(plain, 0755));
                        ASSERT_ERRNO(file_trust_read(plain, &root_only, 4096, &text, NULL, &error), EISDIR);
                        ASSERT_NULL(error);
                }
                expected = mfree(expected);
                ASSERT_TRUE(asprintf(&expected, "%s: not a regular file", device) > 0);
                expect_file_error(device, NULL, EINVAL, expected);
        }
        if (opened_since(watch))
                TEST_FAIL("a device was opened");

        /* /dev/null still masks a drop-in. */
        ASSERT_OK(unlink(link));
        ASSERT_OK(symlink("/dev/null", link));
        {
                _cleanup_(policy_unrefp) Policy *p = NULL;
                _cleanup_free_ char *error = NULL;

                ASSERT_OK(policy_load_full(NULL, dir, &root_only, &p, &error));
                ASSERT_EQ(policy_n_rules(p), 0);
        }
}

TEST(foreign_owner_refused) {
        _cleanup_free_ char *main_file = NULL, *expected = NULL;

        if (geteuid() != 0)
                SKIP("needs root to chown a file to another user");

        TMPDIR_GUARD;
        main_file = path_of("policy.conf");
        write_file(main_file, 0644, "[Admin]\n");
        ASSERT_OK(chown(main_file, 4242, 4242));
        ASSERT_TRUE(asprintf(&expected,
                             "%s: owned by uid 4242, which is neither root nor the daemon's user; "
                             "refusing to use it",
                             main_file) > 0);
        expect_file_error(main_file, NULL, EPERM, expected);
}

static void expect_untrusted(const char *main_file, const char *dir, const PolicyFileTrust *trust,
                             const char *path, const char *message) {
        _cleanup_free_ char *error = NULL, *expected = NULL;
        Policy *p = (Policy *) 0x1;

        ASSERT_TRUE(asprintf(&expected, "%s: %s; refusing to use it", path, message) > 0);
        ASSERT_ERRNO(policy_load_full(main_file, dir, trust, &p, &error), EPERM);
        ASSERT_STREQ(error, expected);
        ASSERT_TRUE(p == (Policy *) 0x1);
}

static void expect_trusted(const char *main_file, const char *dir, const PolicyFileTrust *trust) {
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL;

        if (policy_load_full(main_file, dir, trust, &p, &error) < 0)
                TEST_FAIL("refused: %s", strna(error));
}

static void make_dir(const char *path, mode_t mode, uid_t uid, gid_t gid) {
        ASSERT_OK(mkdir(path, 0700));
        ASSERT_OK(chown(path, uid, gid));
        ASSERT_OK(chmod(path, mode)); /* after chown(), which clears S_ISVTX for nobody but
                                       * would clear set-id bits; and past the umask */
}

/* "path: directory dir is what; refusing to use it" */
static void expect_dir_refused(const char *main_file, const char *dir, const PolicyFileTrust *trust,
                               const char *path, const char *message) {
        _cleanup_free_ char *full = NULL;

        ASSERT_TRUE(asprintf(&full, "directory %s", message) > 0);
        expect_untrusted(main_file, dir, trust, path, full);
}

/* The same for the drop-in directory dir: "dir: directory dir what; refusing to use it" */
static void expect_dropin_dir_refused(const char *main_file, const char *dir, const PolicyFileTrust *trust,
                                      const char *what) {
        _cleanup_free_ char *message = NULL;

        ASSERT_TRUE(asprintf(&message, "%s %s", dir, what) > 0);
        expect_dir_refused(main_file, dir, trust, dir, message);
}

/* A policy file and a drop-in directory with one drop-in, root's, 0644 and 0755, in the
 * test's directory. */
static void make_policy_tree(char **ret_main_file, char **ret_dir, char **ret_dropin) {
        *ret_main_file = path_of("policy.conf");
        *ret_dir = path_of("policy.d");
        *ret_dropin = path_of("policy.d/10-a.conf");
        ASSERT_OK(mkdir(*ret_dir, 0755));
        write_file(*ret_main_file, 0644, "[Admin]\n");
        write_file(*ret_dropin, 0644, "[Admin]\n");
}

/* SECURITY: tsmd's processes trust root's files only, and never one the unprivileged worker
 * could write: not as its owner, nor through its group, file or drop-in directory. */
TEST(worker_writable_files_refused) {
        static const PolicyFileTrust root_only = { .owner = 0, .worker_gid = 4243 };
        static const char by_group[] = "writable by group 4243, the unprivileged worker's";
        _cleanup_free_ char *main_file = NULL, *dir = NULL, *dropin = NULL;

        if (geteuid() != 0)
                SKIP("needs root to chown files to other users");

        TMPDIR_GUARD;
        make_policy_tree(&main_file, &dir, &dropin);
        expect_trusted(main_file, dir, &root_only);

        /* Owned by the worker's (or any) user other than root. */
        ASSERT_OK(chown(main_file, 4242, 0));
        expect_untrusted(main_file, dir, &root_only, main_file,
                         "owned by uid 4242, which is neither root nor the daemon's user");
        ASSERT_OK(chown(main_file, 0, 0));

        /* Writable through the worker's group: the file, a drop-in, the directory. */
        ASSERT_OK(chown(main_file, 0, 4243));
        ASSERT_OK(chmod(main_file, 0664));
        expect_untrusted(main_file, dir, &root_only, main_file, by_group);
        ASSERT_OK(chmod(main_file, 0644)); /* readable by the group is fine */
        expect_trusted(main_file, dir, &root_only);

        ASSERT_OK(chown(dropin, 0, 4243));
        ASSERT_OK(chmod(dropin, 0664));
        expect_untrusted(main_file, dir, &root_only, dropin, by_group);
        ASSERT_OK(chmod(dropin, 0644));

        ASSERT_OK(chown(dir, 0, 4243));
        ASSERT_OK(chmod(dir, 0775));
        expect_dropin_dir_refused(main_file, dir, &root_only, "is writable by group 4243");
        ASSERT_OK(chmod(dir, 0755));

        /* Another group may write the files (an admins' group); policy_load() knows no worker. */
        ASSERT_OK(chown(main_file, 0, 4244));
        ASSERT_OK(chmod(main_file, 0664));
        ASSERT_OK(chown(dropin, 0, 4244));
        ASSERT_OK(chmod(dropin, 0664));
        expect_trusted(main_file, dir, &root_only);
        ASSERT_OK(chown(main_file, 0, 4243));
        ASSERT_OK(chown(dropin, 0, 4243));
        expect_trusted(main_file, dir, &(const PolicyFileTrust) { .owner = 0, .worker_gid = GID_INVALID });
}

/* SECURITY: the drop-in directory is held to the rules of the directories above it, not of the
 * files: a group that may write it, whichever group, cannot add a file of its own (refused: not
 * root's) but could link root's files in (a backup granting more), take drop-ins away, or plant
 * an entry that fails every load so that a revocation never takes effect. */
TEST(dropin_directory_writable_by_a_group_refused) {
        static const PolicyFileTrust root_only = { .owner = 0, .worker_gid = 4243 };
        static const PolicyFileTrust no_worker = { .owner = 0, .worker_gid = GID_INVALID };
        _cleanup_free_ char *dir = NULL, *backup = NULL, *link = NULL, *fifo = NULL, *msg = NULL;

        if (geteuid() != 0)
                SKIP("needs root to chown the directory to another group");

        TMPDIR_GUARD;
        dir = path_of("policy.d");
        backup = path_of("backup.conf");
        link = path_of("policy.d/20-backup.conf");
        fifo = path_of("policy.d/30-fifo.conf");
        make_dir(dir, 0755, 0, 4244);
        write_file(backup, 0644, "[Client:all]\nUsers=4242\nDevices=*\nScopes=info debug-write\n");
        expect_trusted(NULL, dir, &root_only);

        /* What a member of group 4244 could do with 0775: a symlink of its own to root's file. */
        ASSERT_OK(chmod(dir, 0775));
        ASSERT_OK(symlink(backup, link));
        ASSERT_OK(lchown(link, 4242, 4244));
        ASSERT_TRUE(asprintf(&msg, "%s is writable by group 4244", dir) > 0);
        expect_dir_refused(NULL, dir, &root_only, dir, msg);
        expect_dir_refused(NULL, dir, &no_worker, dir, msg);
        /* A FIFO of its own: refused for the directory, not for the FIFO it would fail at. */
        ASSERT_OK(unlink(link));
        ASSERT_OK(mkfifo(fifo, 0644));
        expect_dir_refused(NULL, dir, &root_only, dir, msg);
        ASSERT_OK(unlink(fifo));

        /* Through an ACL's owning group entry or a named group, the same. */
        ASSERT_OK(chmod(dir, 0755));
        expect_trusted(NULL, dir, &root_only);
        TACL_SET(dir, TA_USER_OBJ(7), TA_GROUP_OBJ(5), TA_GROUP(4245, 7), TA_MASK(7), TA_OTHER(5));
        msg = mfree(msg);
        ASSERT_TRUE(asprintf(&msg, "%s is writable by gid 4245 through an ACL", dir) > 0);
        expect_dir_refused(NULL, dir, &no_worker, dir, msg);
        /* A named group may not write a directory, not even root's group: only users are let
         * off, root and the trusted owner. */
        TACL_SET(dir, TA_USER_OBJ(7), TA_GROUP_OBJ(5), TA_GROUP(0, 7), TA_MASK(7), TA_OTHER(5));
        msg = mfree(msg);
        ASSERT_TRUE(asprintf(&msg, "%s is writable by gid 0 through an ACL", dir) > 0);
        expect_dir_refused(NULL, dir, &no_worker, dir, msg);
        tacl_remove(dir);

        /* Reached through a symlink, the directory it leads to is the one checked. */
        {
                _cleanup_free_ char *real = path_of("real.d"), *linked = path_of("linked.d");

                make_dir(real, 0775, 0, 4244);
                ASSERT_OK(symlink(real, linked));
                msg = mfree(msg);
                ASSERT_TRUE(asprintf(&msg, "%s is writable by group 4244", real) > 0);
                expect_dir_refused(NULL, linked, &no_worker, linked, msg);
        }
}

/* SECURITY: a POSIX ACL lets others write what the mode bits alone would not: every user it
 * names with write (through the mask) is refused but root and the trusted owner, and a group it
 * names is judged as the owning group is: refused if it is the worker's. The file, a drop-in,
 * the directory. */
TEST(acl_writers_refused) {
        static const PolicyFileTrust root_only = { .owner = 0, .worker_gid = 4243 };
        _cleanup_free_ char *main_file = NULL, *dir = NULL, *dropin = NULL;

        if (geteuid() != 0)
                SKIP("needs root to own the files it trusts");

        TMPDIR_GUARD;
        make_policy_tree(&main_file, &dir, &dropin);

        /* The mode says 0664 root:root, which the mode check alone takes. */
        TACL_SET(main_file, TA_USER_OBJ(6), TA_USER(4242, 6), TA_GROUP_OBJ(4), TA_MASK(6), TA_OTHER(4));
        expect_untrusted(main_file, dir, &root_only, main_file, "writable by uid 4242 through an ACL");
        /* The mask takes write away. */
        TACL_SET(main_file, TA_USER_OBJ(6), TA_USER(4242, 6), TA_GROUP_OBJ(4), TA_MASK(4), TA_OTHER(4));
        expect_trusted(main_file, dir, &root_only);
        /* Root and the trusted owner may write, by name too. */
        TACL_SET(main_file, TA_USER_OBJ(6), TA_USER(0, 6), TA_USER(4242, 6), TA_GROUP_OBJ(4), TA_MASK(6),
                 TA_OTHER(4));
        expect_trusted(main_file, dir, &(const PolicyFileTrust) { .owner = 4242, .worker_gid = 4243 });
        expect_untrusted(main_file, dir, &root_only, main_file, "writable by uid 4242 through an ACL");
        tacl_remove(main_file);

        /* A group by name, judged as the owning group is (chmod 664 to it): the worker's is
         * refused, another one (an admins' group) may write the files. */
        TACL_SET(dropin, TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_GROUP(4243, 6), TA_MASK(6), TA_OTHER(4));
        expect_untrusted(main_file, dir, &root_only, dropin,
                         "writable by gid 4243, the unprivileged worker's, through an ACL");
        TACL_SET(dropin, TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_GROUP(4245, 6), TA_MASK(6), TA_OTHER(4));
        expect_trusted(main_file, dir, &root_only);
        TACL_SET(main_file, TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_GROUP(4245, 6), TA_MASK(6), TA_OTHER(4));
        expect_trusted(main_file, dir, &root_only);
        tacl_remove(main_file);
        ASSERT_OK(chmod(main_file, 0644));
        tacl_remove(dropin);
        ASSERT_OK(chmod(dropin, 0644));
        /* The drop-in directory is not a file: no group may write it (dropin_directory_...). */
        TACL_SET(dir, TA_USER_OBJ(7), TA_GROUP_OBJ(5), TA_GROUP(4244, 7), TA_MASK(7), TA_OTHER(5));
        expect_dropin_dir_refused(main_file, dir, &root_only, "is writable by gid 4244 through an ACL");
        /* Read and search only. */
        TACL_SET(dir, TA_USER_OBJ(7), TA_GROUP_OBJ(5), TA_GROUP(4244, 5), TA_MASK(5), TA_OTHER(5));
        expect_trusted(main_file, dir, &root_only);
}

/* ---- the directories on the way (path-trust.h) ---- */

/* SECURITY: a directory above the policy that others can write lets them rename the policy
 * away and put another file (an older root-owned copy, a hard link) in its place. Refused
 * whatever group it is, the worker's or an admins' group, unlike the policy's own files. */
TEST(group_writable_parent_refused) {
        static const PolicyFileTrust root_only = { .owner = 0, .worker_gid = 4243 };
        static const PolicyFileTrust no_worker = { .owner = 0, .worker_gid = GID_INVALID };
        _cleanup_free_ char *etc = NULL, *main_file = NULL, *dir = NULL, *dropin = NULL, *msg = NULL;

        if (geteuid() != 0)
                SKIP("needs root to chown directories to other groups");

        TMPDIR_GUARD;
        etc = path_of("etc");
        main_file = path_of("etc/policy.conf");
        dir = path_of("etc/policy.d");
        dropin = path_of("etc/policy.d/10-a.conf");
        make_dir(etc, 0755, 0, 4244);
        make_dir(dir, 0755, 0, 0);
        write_file(main_file, 0644, "[Admin]\n");
        write_file(dropin, 0644, "[Admin]\n");
        expect_trusted(main_file, dir, &root_only);

        ASSERT_OK(chmod(etc, 0775));
        ASSERT_TRUE(asprintf(&msg, "%s is writable by group 4244", etc) > 0);
        expect_dir_refused(main_file, NULL, &root_only, main_file, msg);
        expect_dir_refused(main_file, NULL, &no_worker, main_file, msg);
        /* The drop-in directory's parent too, and so each drop-in's. */
        expect_dir_refused(NULL, dir, &no_worker, dir, msg);

        /* The worker's group. */
        ASSERT_OK(chown(etc, 0, 4243));
        ASSERT_OK(chmod(etc, 0775));
        msg = mfree(msg);
        ASSERT_TRUE(asprintf(&msg, "%s is writable by group 4243", etc) > 0);
        expect_dir_refused(main_file, dir, &root_only, main_file, msg);

        /* Readable and searchable by the group is fine. */
        ASSERT_OK(chmod(etc, 0750));
        expect_trusted(main_file, dir, &root_only);

        /* The owning group writes through an ACL entry of its own (the mode shows the mask). */
        TACL_SET(etc, TA_USER_OBJ(7), TA_GROUP_OBJ(7), TA_MASK(7), TA_OTHER(5));
        expect_dir_refused(main_file, NULL, &no_worker, main_file, msg);
        TACL_SET(etc, TA_USER_OBJ(7), TA_GROUP_OBJ(7), TA_MASK(5), TA_OTHER(5));
        expect_trusted(main_file, dir, &root_only);
}

TEST(other_writable_ancestor_refused) {
        static const PolicyFileTrust root_only = { .owner = 0, .worker_gid = 4243 };
        _cleanup_free_ char *a = NULL, *b = NULL, *main_file = NULL, *msg = NULL;

        if (geteuid() != 0)
                SKIP("needs root to own the files it trusts");

        TMPDIR_GUARD;
        a = path_of("a");
        b = path_of("a/b");
        main_file = path_of("a/b/policy.conf");
        make_dir(a, 0755, 0, 0);
        make_dir(b, 0755, 0, 0);
        write_file(main_file, 0644, "[Admin]\n");
        expect_trusted(main_file, NULL, &root_only);

        /* Two levels up, without the sticky bit. */
        ASSERT_OK(chmod(a, 0777));
        ASSERT_TRUE(asprintf(&msg, "%s is writable by every user", a) > 0);
        expect_dir_refused(main_file, NULL, &root_only, main_file, msg);
        ASSERT_OK(chmod(a, 0755));

        /* An ACL's other:: entry counts as the mode's bits do. */
        TACL_SET(b, TA_USER_OBJ(7), TA_GROUP_OBJ(5), TA_OTHER(7));
        msg = mfree(msg);
        ASSERT_TRUE(asprintf(&msg, "%s is writable by every user", b) > 0);
        expect_dir_refused(main_file, NULL, &root_only, main_file, msg);
}

TEST(ancestor_acl_writers_refused) {
        static const PolicyFileTrust root_only = { .owner = 0, .worker_gid = 4243 };
        _cleanup_free_ char *a = NULL, *b = NULL, *main_file = NULL, *msg = NULL;

        if (geteuid() != 0)
                SKIP("needs root to own the files it trusts");

        TMPDIR_GUARD;
        a = path_of("a");
        b = path_of("a/b");
        main_file = path_of("a/b/policy.conf");
        make_dir(a, 0755, 0, 0);
        make_dir(b, 0755, 0, 0);
        write_file(main_file, 0644, "[Admin]\n");

        /* A named user with write, two levels up: the mode says 0775 root:root. */
        TACL_SET(a, TA_USER_OBJ(7), TA_USER(4242, 7), TA_GROUP_OBJ(5), TA_MASK(7), TA_OTHER(5));
        ASSERT_TRUE(asprintf(&msg, "%s is writable by uid 4242 through an ACL", a) > 0);
        expect_dir_refused(main_file, NULL, &root_only, main_file, msg);
        /* The trusted owner may, by name. */
        expect_trusted(main_file, NULL, &(const PolicyFileTrust) { .owner = 4242, .worker_gid = 4243 });
        /* The mask takes write away. */
        TACL_SET(a, TA_USER_OBJ(7), TA_USER(4242, 7), TA_GROUP_OBJ(5), TA_MASK(5), TA_OTHER(5));
        expect_trusted(main_file, NULL, &root_only);
        /* Root by name. */
        TACL_SET(a, TA_USER_OBJ(7), TA_USER(0, 7), TA_GROUP_OBJ(5), TA_MASK(7), TA_OTHER(5));
        expect_trusted(main_file, NULL, &root_only);
        tacl_remove(a);
        ASSERT_OK(chmod(a, 0755));

        /* A named group, any group, on the parent. */
        TACL_SET(b, TA_USER_OBJ(7), TA_GROUP_OBJ(5), TA_GROUP(4244, 7), TA_MASK(7), TA_OTHER(5));
        msg = mfree(msg);
        ASSERT_TRUE(asprintf(&msg, "%s is writable by gid 4244 through an ACL", b) > 0);
        expect_dir_refused(main_file, NULL, &root_only, main_file, msg);
}

TEST(non_root_parent_refused) {
        static const PolicyFileTrust root_only = { .owner = 0, .worker_gid = 4243 };
        _cleanup_free_ char *a = NULL, *b = NULL, *main_file = NULL, *msg = NULL;

        if (geteuid() != 0)
                SKIP("needs root to chown directories to other users");

        TMPDIR_GUARD;
        a = path_of("a");
        b = path_of("a/b");
        main_file = path_of("a/b/policy.conf");
        make_dir(a, 0755, 0, 0);
        make_dir(b, 0755, 4242, 0); /* its owner can rename anything in it */
        write_file(main_file, 0644, "[Admin]\n");

        ASSERT_TRUE(asprintf(&msg, "%s is owned by uid 4242, which is neither root nor the daemon's user", b) > 0);
        expect_dir_refused(main_file, NULL, &root_only, main_file, msg);
        /* The user policy_load() trusts (tsmd --check-config run by them) may own it. */
        expect_trusted(main_file, NULL, &(const PolicyFileTrust) { .owner = 4242, .worker_gid = GID_INVALID });
}

/* /tmp: everybody may write it, but with the sticky bit only an entry's owner (and the
 * directory's, and root) can rename or remove that entry. So it is fine on the way if what we
 * take from it is root's (or the trusted owner's), even a symlink. */
TEST(sticky_world_writable_directory) {
        static const PolicyFileTrust root_only = { .owner = 0, .worker_gid = 4243 };
        static const PolicyFileTrust user_4242 = { .owner = 4242, .worker_gid = 4243 };
        _cleanup_free_ char *tmp = NULL, *main_file = NULL, *sub = NULL, *in_sub = NULL, *link = NULL,
                            *msg = NULL, *real = NULL;

        if (geteuid() != 0)
                SKIP("needs root to chown files to other users");

        TMPDIR_GUARD;
        tmp = path_of("tmp");
        main_file = path_of("tmp/policy.conf");
        sub = path_of("tmp/sub");
        in_sub = path_of("tmp/sub/policy.conf");
        link = path_of("tmp/link.conf");
        real = path_of("real.conf");
        make_dir(tmp, 01777, 0, 0);
        write_file(main_file, 0644, "[Admin]\n");
        write_file(real, 0644, "[Admin]\n");

        /* A root-owned file in it: accepted. */
        expect_trusted(main_file, NULL, &root_only);

        /* A file of another user: refused (as it would be anywhere, but here its owner could
         * also have put it there in place of root's). */
        ASSERT_OK(chown(main_file, 4242, 0));
        ASSERT_TRUE(asprintf(&msg, "%s is owned by uid 4242 in directory %s, which others may write to", main_file,
                             tmp) > 0);
        expect_untrusted(main_file, NULL, &root_only, main_file, msg);
        msg = mfree(msg);
        /* The trusted owner's own file: only they can rename it. */
        expect_trusted(main_file, NULL, &user_4242);
        ASSERT_OK(chown(main_file, 0, 0));

        /* A directory of another user in it, holding a root-owned file. */
        make_dir(sub, 0755, 4242, 0);
        write_file(in_sub, 0644, "[Admin]\n");
        ASSERT_TRUE(asprintf(&msg, "%s is owned by uid 4242 in directory %s, which others may write to", sub, tmp) > 0);
        expect_untrusted(in_sub, NULL, &root_only, in_sub, msg);

        /* A symlink another user made there, to a root-owned file in a safe directory: they
         * choose which file it is. */
        ASSERT_OK(symlink(real, link));
        expect_trusted(link, NULL, &root_only);
        ASSERT_OK(lchown(link, 4242, 0));
        msg = mfree(msg);
        ASSERT_TRUE(asprintf(&msg, "%s is owned by uid 4242 in directory %s, which others may write to", link, tmp) > 0);
        expect_untrusted(link, NULL, &root_only, link, msg);

        /* Without the sticky bit, or of another owner, it is like any other directory. */
        ASSERT_OK(chmod(tmp, 0777));
        msg = mfree(msg);
        ASSERT_TRUE(asprintf(&msg, "%s is writable by every user", tmp) > 0);
        expect_dir_refused(main_file, NULL, &root_only, main_file, msg);
        ASSERT_OK(chown(tmp, 4244, 0));
        ASSERT_OK(chmod(tmp, 01777));
        msg = mfree(msg);
        ASSERT_TRUE(asprintf(&msg, "%s is owned by uid 4244, which is neither root nor the daemon's user", tmp) > 0);
        expect_dir_refused(main_file, NULL, &root_only, main_file, msg);
}

/* Symlinks are followed (/etc/tsmd may be a link to /usr/share/tsmd, a drop-in a link to a
 * file elsewhere), one name at a time: the directory holding each link and every directory
 * its target leads through are checked. */
TEST(symlinked_directories) {
        static const PolicyFileTrust root_only = { .owner = 0, .worker_gid = 4243 };
        _cleanup_free_ char *etc = NULL, *share = NULL, *real = NULL, *link = NULL, *main_file = NULL,
                            *dir = NULL, *dropin = NULL, *other = NULL, *loop = NULL, *msg = NULL,
                            *real_file = NULL, *real_dir = NULL, *other_file = NULL;

        if (geteuid() != 0)
                SKIP("needs root to chown directories to other groups");

        TMPDIR_GUARD;
        etc = path_of("etc");
        share = path_of("share");
        real = path_of("share/tsmd");
        link = path_of("etc/tsmd");
        main_file = path_of("etc/tsmd/policy.conf");
        dir = path_of("etc/tsmd/policy.d");
        other = path_of("other");
        make_dir(etc, 0755, 0, 0);
        make_dir(share, 0755, 0, 0);
        make_dir(real, 0755, 0, 0);
        make_dir(other, 0755, 0, 0);
        real_file = path_of("share/tsmd/policy.conf");
        real_dir = path_of("share/tsmd/policy.d");
        other_file = path_of("other/10-a.conf");
        ASSERT_OK(symlink("../share/tsmd", link));
        write_file(real_file, 0644, "[Admin]\n");
        make_dir(real_dir, 0755, 0, 0);
        write_file(other_file, 0644, "[Admin]\nUsers=4242\n");
        dropin = path_of("etc/tsmd/policy.d/10-a.conf");
        ASSERT_OK(symlink(other_file, dropin));
        expect_trusted(main_file, dir, &root_only);

        /* The target's directories: by the name they really have. */
        ASSERT_OK(chown(share, 0, 4244));
        ASSERT_OK(chmod(share, 0775));
        ASSERT_TRUE(asprintf(&msg, "%s is writable by group 4244", share) > 0);
        expect_dir_refused(main_file, NULL, &root_only, main_file, msg);
        expect_dir_refused(NULL, dir, &root_only, dir, msg);
        ASSERT_OK(chmod(share, 0755));

        /* The link's own directory: whoever can write it can point the link elsewhere. */
        ASSERT_OK(chown(etc, 0, 4244));
        ASSERT_OK(chmod(etc, 0775));
        msg = mfree(msg);
        ASSERT_TRUE(asprintf(&msg, "%s is writable by group 4244", etc) > 0);
        expect_dir_refused(main_file, NULL, &root_only, main_file, msg);
        ASSERT_OK(chmod(etc, 0755));

        /* A drop-in linked to a file in a directory others can write. */
        ASSERT_OK(chmod(other, 0777));
        msg = mfree(msg);
        ASSERT_TRUE(asprintf(&msg, "%s is writable by every user", other) > 0);
        expect_dir_refused(NULL, dir, &root_only, dropin, msg);
        ASSERT_OK(chmod(other, 0755));
        expect_trusted(main_file, dir, &root_only);

        /* As many links on the way as the kernel follows in one lookup, 40, and not one more. */
        for (unsigned i = 0; i <= 40; i++) {
                _cleanup_free_ char *name = NULL, *target = NULL;

                ASSERT_TRUE(asprintf(&name, "%s/chain%u", etc, i) > 0);
                if (i < 40)
                        ASSERT_TRUE(asprintf(&target, "chain%u", i + 1) > 0);
                else
                        target = strdup(real_file); /* no link on its way */
                ASSERT_NOT_NULL(target);
                ASSERT_OK(symlink(target, name));
        }
        {
                _cleanup_free_ char *first = NULL, *second = NULL, *error = NULL;
                Policy *p = (Policy *) 0x1;

                ASSERT_TRUE(asprintf(&first, "%s/chain0", etc) > 0);
                ASSERT_TRUE(asprintf(&second, "%s/chain1", etc) > 0);
                expect_trusted(second, NULL, &root_only);
                ASSERT_ERRNO(policy_load_full(first, NULL, &root_only, &p, &error), ELOOP);
        }

        /* A loop ends. */
        loop = path_of("etc/loop");
        ASSERT_OK(symlink("loop", loop));
        {
                _cleanup_free_ char *error = NULL, *expected = NULL;
                Policy *p = (Policy *) 0x1;

                ASSERT_TRUE(asprintf(&expected, "%s: cannot open: %s", loop, strerror(ELOOP)) > 0);
                ASSERT_ERRNO(policy_load_full(loop, NULL, &root_only, &p, &error), ELOOP);
                ASSERT_STREQ(error, expected);
        }
}

/* The worker checks the files unprivileged: in a directory it may search but not read (0711)
 * it still sees the ACL, through the fd's /proc link. */
TEST(unprivileged_check_of_a_search_only_directory) {
        static const PolicyFileTrust root_only = { .owner = 0, .worker_gid = GID_INVALID };
        _cleanup_free_ char *priv = NULL, *main_file = NULL, *msg = NULL;

        if (geteuid() != 0)
                SKIP("needs root to become another user");

        TMPDIR_GUARD;
        priv = path_of("private");
        main_file = path_of("private/policy.conf");
        make_dir(priv, 0711, 0, 0);
        write_file(main_file, 0644, "[Admin]\n");
        ASSERT_TRUE(asprintf(&msg, "directory %s is writable by uid 4242 through an ACL", priv) > 0);

        for (int step = 0; step < 2; step++) {
                int status;
                pid_t pid;

                /* 0711 with the mode bits, then with an ACL giving 4242 write (mask -wx). */
                if (step == 1)
                        TACL_SET(priv, TA_USER_OBJ(7), TA_USER(4242, 3), TA_GROUP_OBJ(1), TA_MASK(3), TA_OTHER(1));
                pid = fork();
                ASSERT_TRUE(pid >= 0);
                if (pid == 0) {
                        _cleanup_(policy_unrefp) Policy *p = NULL;
                        _cleanup_free_ char *error = NULL;
                        int r;

                        if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
                            setresuid(65534, 65534, 65534) < 0)
                                _exit(3);
                        r = policy_load_full(main_file, NULL, &root_only, &p, &error);
                        if (step == 0 && r < 0)
                                fprintf(stderr, "# refused: %s\n", strna(error));
                        if (step == 1 && (r != -EPERM || !error || !strstr(error, msg)))
                                fprintf(stderr, "# expected '%s', got %d %s\n", msg, r, strna(error));
                        _exit(step == 0 ? r < 0 : r != -EPERM || !error || !strstr(error, msg));
                }
                ASSERT_EQ(waitpid(pid, &status, 0), pid);
                ASSERT_TRUE(WIFEXITED(status));
                ASSERT_EQ(WEXITSTATUS(status), 0);
        }
}

static mode_t mode_of(const char *path) {
        struct stat st;

        ASSERT_OK(stat(path, &st));
        return st.st_mode & 07777;
}

/* With an ACL, the mode's group bits show the mask: the owning group writes only if its own
 * entry (ACL_GROUP_OBJ) and the mask both let it. */
TEST(acl_owning_group_writes_through_its_entry) {
        static const PolicyFileTrust root_only = { .owner = 0, .worker_gid = 4243 };
        static const char by_group[] = "writable by group 4243, the unprivileged worker's";
        _cleanup_free_ char *main_file = NULL, *dir = NULL;

        if (geteuid() != 0)
                SKIP("needs root to chown files to other groups");

        TMPDIR_GUARD;
        main_file = path_of("policy.conf");
        dir = path_of("policy.d");
        ASSERT_OK(mkdir(dir, 0755));
        write_file(main_file, 0644, "[Admin]\n");
        ASSERT_OK(chown(main_file, 0, 4243));
        ASSERT_OK(chown(dir, 0, 4243));

        /* 0664, but only root (by name) writes: the worker's group reads. */
        TACL_SET(main_file, TA_USER_OBJ(6), TA_USER(0, 6), TA_GROUP_OBJ(4), TA_MASK(6), TA_OTHER(4));
        ASSERT_EQ(mode_of(main_file), 0664);
        expect_trusted(main_file, dir, &root_only);
        TACL_SET(dir, TA_USER_OBJ(7), TA_USER(0, 7), TA_GROUP_OBJ(5), TA_MASK(7), TA_OTHER(5));
        ASSERT_EQ(mode_of(dir), 0775);
        expect_trusted(main_file, dir, &root_only);

        /* 0644, the group's entry says write but the mask does not. */
        TACL_SET(main_file, TA_USER_OBJ(6), TA_GROUP_OBJ(6), TA_MASK(4), TA_OTHER(4));
        ASSERT_EQ(mode_of(main_file), 0644);
        expect_trusted(main_file, dir, &root_only);

        /* Both say write. */
        TACL_SET(main_file, TA_USER_OBJ(6), TA_GROUP_OBJ(6), TA_MASK(6), TA_OTHER(4));
        expect_untrusted(main_file, dir, &root_only, main_file, by_group);
        tacl_remove(main_file); /* which leaves the mask in the mode */
        ASSERT_OK(chmod(main_file, 0644));
        TACL_SET(dir, TA_USER_OBJ(7), TA_USER(0, 7), TA_GROUP_OBJ(7), TA_MASK(7), TA_OTHER(5));
        expect_dropin_dir_refused(main_file, dir, &root_only, "is writable by group 4243");
}

/* The kernel stores no malformed ACL, so this fgetxattr(), ahead of libc's in the link, hands
 * the loader one (or an error) when a test asks, for the test's own files: the directories
 * above them are checked too (path-trust.h), and keep their real ACLs. */
static const void *fake_acl;
static size_t fake_acl_size;
static int fake_acl_errno;

static bool in_tmpdir(int fd) {
        char proc[64], path[PATH_MAX];
        ssize_t n;

        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        n = readlink(proc, path, sizeof(path) - 1);
        if (n < 0)
                return false;
        path[n] = 0;
        return strneq(path, tmpdir, strlen(tmpdir)) && path[strlen(tmpdir)] == '/';
}

ssize_t fgetxattr(int fd, const char *name, void *value, size_t size) {
        if (!streq(name, "system.posix_acl_access") || (!fake_acl && fake_acl_errno == 0) || !in_tmpdir(fd))
                return syscall(SYS_fgetxattr, fd, name, value, size);
        if (fake_acl_errno != 0) {
                errno = fake_acl_errno;
                return -1;
        }
        if (size < fake_acl_size) {
                errno = ERANGE;
                return -1;
        }
        memcpy(value, fake_acl, fake_acl_size);
        return (ssize_t) fake_acl_size;
}

/* SECURITY: fail closed on an ACL we cannot understand or read, on files and directories. */
TEST(unparsable_acl_refused) {
        static const TaclEntry unmasked[] = { TA_USER_OBJ(6), TA_USER(4242, 6), TA_GROUP_OBJ(4),
                                              TA_OTHER(4) };
        static const TaclEntry minimal[] = { TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_OTHER(4) };
        const PolicyFileTrust mine = { .owner = geteuid(), .worker_gid = GID_INVALID };
        _cleanup_free_ char *main_file = NULL, *dir = NULL, *expected = NULL, *error = NULL;
        uint8_t blob[TACL_BLOB_MAX];
        Policy *p = (Policy *) 0x1;

        TMPDIR_GUARD;
        main_file = path_of("policy.conf");
        dir = path_of("policy.d");
        ASSERT_OK(mkdir(dir, 0755));
        write_file(main_file, 0644, "[Admin]\n");
        fake_acl = blob;

        fake_acl_size = tacl_blob(3, minimal, ELEMENTSOF(minimal), blob);
        expect_untrusted(main_file, NULL, &mine, main_file, "has a POSIX ACL of an unknown version");
        expect_dropin_dir_refused(NULL, dir, &mine, "has a POSIX ACL of an unknown version");
        fake_acl_size = tacl_blob(2, unmasked, ELEMENTSOF(unmasked), blob);
        expect_untrusted(main_file, NULL, &mine, main_file, "has a malformed POSIX ACL");
        expect_dropin_dir_refused(NULL, dir, &mine, "has a malformed POSIX ACL");
        fake_acl_size = tacl_blob(2, minimal, ELEMENTSOF(minimal), blob) - 1;
        expect_untrusted(main_file, NULL, &mine, main_file, "has a malformed POSIX ACL");

        fake_acl_size = tacl_blob(2, minimal, ELEMENTSOF(minimal), blob);
        expect_trusted(main_file, dir, &mine);

        fake_acl_errno = EIO;
        ASSERT_TRUE(asprintf(&expected, "%s: cannot read its POSIX ACL: %s", main_file, strerror(EIO)) > 0);
        ASSERT_ERRNO(policy_load_full(main_file, NULL, &mine, &p, &error), EIO);
        ASSERT_STREQ(error, expected);
        ASSERT_TRUE(p == (Policy *) 0x1);

        /* No ACL, or none on this file system. */
        fake_acl_errno = EOPNOTSUPP;
        expect_trusted(main_file, dir, &mine);
        fake_acl_errno = ENODATA;
        expect_trusted(main_file, dir, &mine);
}

/* SECURITY: the kernel keeps ACL_OTHER and the mode's other bits in step; should a file system
 * not, the ACL's word counts too. */
TEST(acl_other_write_refused) {
        static const TaclEntry other_writes[] = { TA_USER_OBJ(6), TA_GROUP_OBJ(4), TA_OTHER(6) };
        const PolicyFileTrust mine = { .owner = geteuid(), .worker_gid = GID_INVALID };
        _cleanup_free_ char *main_file = NULL;
        uint8_t blob[TACL_BLOB_MAX];

        TMPDIR_GUARD;
        main_file = path_of("policy.conf");
        write_file(main_file, 0644, "[Admin]\n");
        fake_acl = blob;
        fake_acl_size = tacl_blob(2, other_writes, ELEMENTSOF(other_writes), blob);
        expect_untrusted(main_file, NULL, &mine, main_file, "writable by every user");
}

TEST(failed_reload_keeps_old_policy) {
        _cleanup_(policy_unrefp) Policy *current = NULL;
        _cleanup_free_ char *error = NULL;
        const PolicySource good = { "p.conf", "[Client:a]\nUsers=1000\nDevices=*\n" };
        const PolicySource bad = { "p.conf", "[Client:a]\nUsers=1000\nDevices=*\nScopes=everything\n" };
        PeerIdentity u = { .uid = 1000, .gid = 1000 };
        Policy *next = NULL;

        ASSERT_OK(policy_load_from_text(&good, 1, &current, &error));
        ASSERT_ERRNO(policy_load_from_text(&bad, 1, &next, &error), EINVAL);
        ASSERT_STREQ(error, "p.conf:4: unknown scope 'everything' (known: info state-change debug-read "
                            "debug-write)");
        ASSERT_NULL(next);
        ASSERT_OK(policy_check_device(current, &u, "0000:01:00.0", TSM_BACKEND_EMULATED, NULL));

        /* ret_error is optional. */
        ASSERT_ERRNO(policy_load_from_text(&bad, 1, &next, NULL), EINVAL);
}

/* ---- --dump-config ---- */

static char *dump(const Policy *p) {
        char *text = NULL;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&text, &size);
        ASSERT_NOT_NULL(f);
        ASSERT_OK(policy_dump(p, f));
        ASSERT_EQ(fclose(f), 0);
        return text;
}

/* The dump without comment lines: what a reload would see. */
static char *settings_only(const char *text) {
        char *out = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&out, &size);

        ASSERT_NOT_NULL(f);
        for (const char *p = text; *p;) {
                size_t n = strcspn(p, "\n");

                if (p[0] != '#')
                        fprintf(f, "%.*s\n", (int) n, p);
                p += n + (p[n] == '\n');
        }
        ASSERT_EQ(fclose(f), 0);
        return out;
}

TEST(dump_round_trip) {
        _cleanup_(policy_unrefp) Policy *p = NULL, *q = NULL;
        _cleanup_free_ char *error = NULL, *d1 = NULL, *d2 = NULL, *s1 = NULL, *s2 = NULL;
        const PolicySource src[] = {
                { "main.conf",
                  "[Defaults]\nScopes=info\nMaxVDevices=3\n"
                  "[Admin]\nUsers=root 1234\nGroups=root\n"
                  "[Client:vm-web1]\nUsers=daemon 107 daemon\nUnits=vm-web1.service machine-*.scope\n"
                  "Devices=0000:01:00.0 0000:02:*\nBackends=sev-tio emulated\n"
                  "Scopes=info state-change debug-read\nMaxContexts=2\n"
                  "[Client:g]\nGroups=100\nDevices=0000:0[0-3]:00.[!1]\n" },
                { "10-override.conf", "[Defaults]\nMaxContexts=9\n[Client:late]\nUsers=5\n" },
        };
        PeerIdentity ids[] = {
                { .uid = 1, .gid = 1, .unit = (char *) "vm-web1.service" },
                { .uid = 107, .gid = 107, .unit = (char *) "machine-x.scope" },
                { .uid = 107, .gid = 107 },
                { .uid = 5, .gid = 100 },
                { .uid = 1234, .gid = 1234 },
        };
        static const char *const devices[] = { "0000:01:00.0", "0000:02:00.0", "0000:03:00.0",
                                               "0000:03:00.1" };
        static const char *const scopes[] = { "info", "state-change", "debug-read", "debug-write" };

        ASSERT_OK(policy_load_from_text(src, ELEMENTSOF(src), &p, &error));
        d1 = dump(p);

        /* Spot checks of the format. */
        ASSERT_NOT_NULL(strstr(d1, "\n[Client:vm-web1]\n# Users=daemon 107 daemon\nUsers=1 107\n"));
        ASSERT_NOT_NULL(strstr(d1, "\nBackends=sev-tio emulated\n"));
        ASSERT_NOT_NULL(strstr(d1, "\n[Defaults]\nScopes=info\nMaxContexts=9\nMaxVDevices=3\n"));
        ASSERT_NOT_NULL(strstr(d1, "# First defined at 10-override.conf:3\n[Client:late]\n"));
        ASSERT_NOT_NULL(strstr(d1, "# Scopes= not set, from [Defaults]: info\n"));
        ASSERT_NOT_NULL(strstr(d1, "# Devices= not set: this rule grants no device\n"));

        const PolicySource again = { "dump", d1 };
        ASSERT_OK(policy_load_from_text(&again, 1, &q, &error));
        d2 = dump(q);
        s1 = settings_only(d1);
        s2 = settings_only(d2);
        ASSERT_STREQ(s1, s2);

        /* Same decisions, limits and admin status. */
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                unsigned c1, v1, c2, v2;

                ASSERT_EQ(policy_is_admin(p, &ids[i]), policy_is_admin(q, &ids[i]));
                policy_get_limits(p, &ids[i], &c1, &v1);
                policy_get_limits(q, &ids[i], &c2, &v2);
                ASSERT_EQ(c1, c2);
                ASSERT_EQ(v1, v2);
                for (size_t d = 0; d < ELEMENTSOF(devices); d++)
                        for (TsmBackendType b = 0; b < _TSM_BACKEND_TYPE_MAX; b++)
                                for (size_t s = 0; s < ELEMENTSOF(scopes); s++)
                                        ASSERT_EQ(policy_check_scope(p, &ids[i], devices[d], b,
                                                                     scopes[s], NULL),
                                                  policy_check_scope(q, &ids[i], devices[d], b,
                                                                     scopes[s], NULL));
        }
}

TEST(dump_cannot_be_injected_through_file_names) {
        _cleanup_(policy_unrefp) Policy *p = NULL, *q = NULL;
        _cleanup_free_ char *error = NULL, *d = NULL;
        /* A drop-in's file name may contain a newline; it must stay inside its comment. */
        const PolicySource src[] = {
                { "a.conf", "[Client:a]\nUsers=1\nDevices=0000:01:00.0\n" },
                { "x\n[Client:evil]\nUsers=1000\nDevices=*\n.conf", "[Client:b]\nUsers=2\n" },
        };

        ASSERT_OK(policy_load_from_text(src, ELEMENTSOF(src), &p, &error));
        d = dump(p);
        ASSERT_NULL(strstr(d, "\n[Client:evil]"));
        const PolicySource again = { "dump", d };
        ASSERT_OK(policy_load_from_text(&again, 1, &q, &error));
        ASSERT_EQ(policy_n_rules(q), 2);
}

TEST(dump_empty_policy) {
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL, *d = NULL;

        ASSERT_OK(policy_load(NULL, NULL, &p, &error));
        d = dump(p);
        ASSERT_STREQ(d,
                     "# Effective tsmd policy, loaded from:\n"
                     "#   (no files)\n"
                     "\n"
                     "[Defaults]\n"
                     "Scopes=info state-change\n"
                     "MaxContexts=4\n"
                     "MaxVDevices=16\n"
                     "\n"
                     "[Admin]\n"
                     "# uid 0 (root) is always an administrator.\n"
                     "\n"
                     "# No [Client:NAME] rules: every client is denied.\n");
}

TEST_MAIN();
