/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What tsmctl prints of tsmd's replies (client/print-escape.c), on its own: the escaped copies
 * one row may hold are bounded, a character of no known width takes one column, JSON stays valid
 * UTF-8 with every C1 control and each invalid byte escaped or replaced, and settings' names are
 * escaped in each part. Runs in: tests.
 */

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"
#include "macro.h"
#include "tsmctl.h"

static void json_object_putp(json_object **o) {
        json_object_put(*o);
}

/* More strings that need escaping than a TsmctlEscapes holds: the rest are "?", never the
 * string itself, and nothing is written past the array. */
TEST(escapes_bounded) {
        TsmctlEscapes e = {};

        for (size_t i = 0; i < ELEMENTSOF(e.strings); i++)
                ASSERT_STREQ(tsmctl_esc(&e, "a\x1b[2Jb"), "a\\x1b[2Jb");
        ASSERT_EQ(e.n, ELEMENTSOF(e.strings));
        for (size_t i = 0; i < 3; i++)
                ASSERT_STREQ(tsmctl_esc(&e, "a\x1b[2Jb"), "?");
        ASSERT_EQ(e.n, ELEMENTSOF(e.strings));
        ASSERT_STREQ(tsmctl_esc(&e, "plain"), "plain"); /* needs no copy */
        tsmctl_escapes_done(&e);
        ASSERT_EQ(e.n, 0u);
}

/* wcwidth() knows no width for an unassigned code point (U+0378): one column, not (size_t) -1. */
TEST(width_of_the_unknown) {
        ASSERT_EQ(tsmctl_display_width("a\xcd\xb8z"), 3u);
        ASSERT_EQ(tsmctl_display_width(""), 0u);
        ASSERT_EQ(tsmctl_display_width(NULL), 0u);
}

/* Runs tsmctl_print_json_ext() on the JSON text json with stdout in a file; returns what it
 * printed. */
static char *print_json(const char *json) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        char tmpl[] = "/tmp/test-print-escape-XXXXXX", *out;
        int fd = mkstemp(tmpl), saved = dup(STDOUT_FILENO);
        long size;
        FILE *f;

        ASSERT_TRUE(fd >= 0 && saved >= 0);
        ASSERT_OK(unlink(tmpl));
        o = json_tokener_parse(json);
        ASSERT_NOT_NULL(o);
        fflush(stdout);
        ASSERT_TRUE(dup2(fd, STDOUT_FILENO) >= 0);
        tsmctl_print_json_ext(o, JSON_C_TO_STRING_PLAIN);
        fflush(stdout);
        ASSERT_TRUE(dup2(saved, STDOUT_FILENO) >= 0);
        close(saved);

        f = fdopen(fd, "r");
        ASSERT_NOT_NULL(f);
        ASSERT_OK(fseek(f, 0, SEEK_END));
        size = ftell(f);
        rewind(f);
        out = calloc(1, (size_t) size + 1);
        ASSERT_NOT_NULL(out);
        ASSERT_EQ(fread(out, 1, (size_t) size, f), (size_t) size);
        fclose(f);
        return out;
}

/* Every C1 control, U+009F the last of them too, is escaped; U+00A0 is not one. A byte that is no
 * UTF-8 becomes U+FFFD. */
TEST(json_safe) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "[\"a\xc2\x80z\"]", "[\"a\\u0080z\"]\n" },
                { "[\"a\xc2\x9fz\"]", "[\"a\\u009fz\"]\n" },
                { "[\"a\xc2\xa0z\"]", "[\"a\xc2\xa0z\"]\n" },
                { "[\"a\x7fz\"]", "[\"a\\u007fz\"]\n" },
                { "[\"a\xffz\"]", "[\"a\xef\xbf\xbdz\"]\n" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *got = print_json(cases[i].in);

                if (!streq(got, cases[i].out))
                        TEST_FAIL("case %zu: got '%s', expected '%s'", i, got, cases[i].out);
        }
}

/* A setting's name is tsmd's, and escaped all the same: section, key, or the whole of a name
 * without a dot. */
TEST(settings_escaped) {
        _cleanup_(json_object_putp) json_object *names = json_tokener_parse(
                        "[\"Audit.SyncMode\", \"A\\u001bB.k\", \"S.K\\u001bX\", \"nodot\\u001b\"]");
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        FILE *f;

        ASSERT_NOT_NULL(names);
        f = open_memstream(&buf, &size);
        ASSERT_NOT_NULL(f);
        tsmctl_print_settings(names, f);
        ASSERT_OK(fclose(f));
        ASSERT_STREQ(buf, "[Audit] SyncMode=, [A\\x1bB] k=, [S] K\\x1bX=, nodot\\x1b");
}

TEST_MAIN();
