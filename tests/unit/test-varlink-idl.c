/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for proto/varlink-idl.c: IDL parsing (valid, invalid with positions, limits) and
 * validation of JSON parameters against methods and errors. */

#include <math.h>
#include <stdio.h>

#include "harness.h"
#include "json-raw.h"
#include "varlink-idl.h"

DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(json_object *, json_object_put, NULL);
#define _cleanup_json_ _cleanup_(json_object_putp)

/* Parses JSON text, failing the test if it is not valid JSON ("null" gives NULL). */
static json_object *json(const char *text) {
        enum json_tokener_error e;
        json_object *j = json_tokener_parse_verbose(text, &e);

        if (e != json_tokener_success)
                TEST_FAIL("bad JSON in test: %s", text);
        return j;
}

static VarlinkInterface *parse_ok(const char *text) {
        VarlinkInterface *i = NULL;
        unsigned line = 0, column = 0;
        int r;

        r = varlink_interface_parse(text, &i, &line, &column);
        if (r < 0)
                TEST_FAIL("parse failed at %u:%u (%s):\n%s", line, column, strerror(-r), text);
        return i;
}

/* Expects -EBADMSG at line:column, and that *ret is left alone. */
static void parse_fails_at(const char *text, unsigned line, unsigned column) {
        VarlinkInterface *i = (VarlinkInterface *) 0x1;
        unsigned l = 0, c = 0;
        int r;

        r = varlink_interface_parse(text, &i, &l, &c);
        if (r != -EBADMSG)
                TEST_FAIL("expected -EBADMSG at %u:%u, got %d for:\n%s", line, column, r, text);
        if (l != line || c != column)
                TEST_FAIL("expected error at %u:%u, got %u:%u for:\n%s", line, column, l, c, text);
        ASSERT_TRUE(i == (VarlinkInterface *) 0x1);
}

static const char *builtin_find(const char *name) {
        for (size_t k = 0; varlink_builtin_idl[k]; k++) {
                _cleanup_(varlink_interface_freep) VarlinkInterface *i = parse_ok(varlink_builtin_idl[k]);

                if (streq(varlink_interface_get_name(i), name))
                        return varlink_builtin_idl[k];
        }
        return NULL;
}

TEST(builtin_idl_parses) {
        size_t n = 0;

        for (size_t k = 0; varlink_builtin_idl[k]; k++, n++) {
                _cleanup_(varlink_interface_freep) VarlinkInterface *i = parse_ok(varlink_builtin_idl[k]);

                ASSERT_NOT_NULL(varlink_interface_get_name(i));
                /* The text is kept verbatim (a copy), for GetInterfaceDescription. */
                ASSERT_STREQ(varlink_interface_get_text(i), varlink_builtin_idl[k]);
                ASSERT_TRUE(varlink_interface_get_text(i) != varlink_builtin_idl[k]);
                for (size_t m = 0; m < varlink_interface_get_n_methods(i); m++) {
                        const VarlinkSymbol *s = varlink_interface_get_method_by_index(i, m);

                        ASSERT_NOT_NULL(s);
                        ASSERT_TRUE(varlink_interface_find_method(i, varlink_symbol_get_name(s)) == s);
                }
        }
        ASSERT_GE(n, 1);
        ASSERT_NOT_NULL(builtin_find("org.varlink.service"));
}

TEST(builtin_org_varlink_service) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = parse_ok(builtin_find("org.varlink.service"));
        _cleanup_json_ json_object *info = NULL, *bad = NULL;
        _cleanup_free_ char *field = NULL;
        const VarlinkSymbol *m, *e;

        ASSERT_STREQ(varlink_interface_get_name(i), "org.varlink.service");
        ASSERT_EQ(varlink_interface_get_n_methods(i), 2);
        ASSERT_STREQ(varlink_symbol_get_name(varlink_interface_get_method_by_index(i, 0)), "GetInfo");
        ASSERT_STREQ(varlink_symbol_get_name(varlink_interface_get_method_by_index(i, 1)), "GetInterfaceDescription");
        ASSERT_NULL(varlink_interface_get_method_by_index(i, 2));

        m = varlink_interface_find_method(i, "GetInfo");
        ASSERT_NOT_NULL(m);
        ASSERT_FALSE(varlink_method_requires_more(m));
        ASSERT_NULL(varlink_interface_find_method(i, "org.varlink.service.GetInfo"));
        ASSERT_NULL(varlink_interface_find_method(i, "getinfo"));
        ASSERT_NULL(varlink_interface_find_method(i, "InterfaceNotFound")); /* an error, not a method */

        e = varlink_interface_find_error(i, "InvalidParameter");
        ASSERT_NOT_NULL(e);
        ASSERT_STREQ(varlink_symbol_get_name(e), "InvalidParameter");
        ASSERT_NULL(varlink_interface_find_error(i, "GetInfo"));
        ASSERT_NOT_NULL(varlink_interface_find_error(i, "MethodNotFound"));
        ASSERT_NOT_NULL(varlink_interface_find_error(i, "MethodNotImplemented"));
        ASSERT_NOT_NULL(varlink_interface_find_error(i, "InterfaceNotFound"));

        /* GetInfo takes nothing; its reply has five mandatory fields. */
        ASSERT_OK(varlink_method_validate_input(m, NULL, NULL));
        info = json("{\"vendor\":\"v\",\"product\":\"p\",\"version\":\"1\",\"url\":\"u\",\"interfaces\":[\"a.b\"]}");
        ASSERT_OK(varlink_method_validate_output(m, info, NULL));
        bad = json("{\"vendor\":\"v\",\"product\":\"p\",\"version\":\"1\",\"url\":\"u\",\"interfaces\":[\"a.b\", 7]}");
        ASSERT_ERRNO(varlink_method_validate_output(m, bad, &field), EINVAL);
        ASSERT_STREQ(field, "interfaces[1]");
}

/* Everything the grammar offers, with comments in every place a comment can go. */
static const char valid_idl[] =
        "# Interface doc\n"
        "  # indented comment\n"
        "interface org.example.test-1.x9 # trailing comment\n"
        "\n"
        "# A type used before it is defined.\n"
        "type Outer (\n"
        "        # field doc\n"
        "        inner: Inner, # after a field\n"
        "        list: []Inner,\n"
        "        maybe: ?Inner,\n"
        "        maybe_list: ?[]?Inner,\n"
        "        map: [string]Inner,\n"
        "        set: [string](),\n"
        "        maybe_map: ?[string][]int,\n"
        "        anything: object,\n"
        "        mode: (one, two, three),\n"
        "        nested: (a: (b: (c: ?bool)), e: ()),\n"
        "        Upper_case1: float\n"
        ")\n"
        "\n"
        "type Inner(x: int, y: string)\n"
        "type Color ( red , green,blue )\n"
        "type Empty ()\n"
        "type Recursive (next: ?Recursive, items: []Recursive)\n"
        "\n"
        "# Streams updates.\n"
        "# [Requires 'more' flag]\n"
        "method Watch(filter: ?string) -> (outer: Outer, color: Color)\n"
        "method Simple()->()\n"
        "method\n"
        "  Spread\n"
        "  (\n"
        "    a # comment between name and colon\n"
        "    :\n"
        "    int\n"
        "  )\n"
        "  ->\n"
        "  (\n"
        "    b: Empty\n"
        "  )\n"
        "error NotFound (what: string, where: ?Recursive)\n"
        "error Plain()\n"
        "# final comment without newline";

TEST(parse_valid_everything) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = parse_ok(valid_idl);

        ASSERT_STREQ(varlink_interface_get_name(i), "org.example.test-1.x9");
        ASSERT_STREQ(varlink_interface_get_text(i), valid_idl);
        ASSERT_EQ(varlink_interface_get_n_methods(i), 3);
        ASSERT_STREQ(varlink_symbol_get_name(varlink_interface_get_method_by_index(i, 0)), "Watch");
        ASSERT_STREQ(varlink_symbol_get_name(varlink_interface_get_method_by_index(i, 1)), "Simple");
        ASSERT_STREQ(varlink_symbol_get_name(varlink_interface_get_method_by_index(i, 2)), "Spread");
        ASSERT_TRUE(varlink_method_requires_more(varlink_interface_find_method(i, "Watch")));
        ASSERT_FALSE(varlink_method_requires_more(varlink_interface_find_method(i, "Simple")));
        ASSERT_FALSE(varlink_method_requires_more(varlink_interface_find_method(i, "Spread")));
        ASSERT_NOT_NULL(varlink_interface_find_error(i, "NotFound"));
        ASSERT_NOT_NULL(varlink_interface_find_error(i, "Plain"));
        /* Types are neither methods nor errors. */
        ASSERT_NULL(varlink_interface_find_method(i, "Outer"));
        ASSERT_NULL(varlink_interface_find_error(i, "Outer"));
        ASSERT_NULL(varlink_interface_find_method(i, "Nope"));
        ASSERT_NULL(varlink_interface_find_method(i, NULL));
}

TEST(parse_crlf) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = NULL;
        _cleanup_free_ char *crlf = NULL;
        size_t n = 0;

        /* Same text with every "\n" turned into "\r\n". */
        crlf = malloc(2 * sizeof(valid_idl));
        ASSERT_NOT_NULL(crlf);
        for (const char *p = valid_idl; *p; p++) {
                if (*p == '\n')
                        crlf[n++] = '\r';
                crlf[n++] = *p;
        }
        crlf[n] = 0;

        i = parse_ok(crlf);
        ASSERT_STREQ(varlink_interface_get_text(i), crlf);
        ASSERT_EQ(varlink_interface_get_n_methods(i), 3);
        ASSERT_TRUE(varlink_method_requires_more(varlink_interface_find_method(i, "Watch")));

        /* Positions still count lines by "\n": the error is on line 3, column 13. */
        parse_fails_at("interface a.b\r\n\r\nmethod F(a: Nope) -> ()\r\n", 3, 13);
}

TEST(requires_more_doc_comment) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = parse_ok(
                "interface a.b\n"
                "# [Requires 'more' flag]\n"
                "# More text below the marker.\n"
                "method A() -> ()\n"
                "# [Requires 'more' flag]\n"
                "\n"
                "method B() -> ()\n" /* blank line: not directly above */
                "method C() -> () # [Requires 'more' flag]\n"
                "method D() -> ()\n" /* the comment above is on C's line */
                "# [Requires 'more' flag]\n"
                "type T (a: int)\n"
                "method E() -> ()\n" /* the marker documented T */
                "\t  # [Requires 'more' flag] indented\n"
                "method F() -> ()\n"
                "# [Supports 'more' flag]\n"
                "method G() -> ()\n");

        ASSERT_TRUE(varlink_method_requires_more(varlink_interface_find_method(i, "A")));
        ASSERT_FALSE(varlink_method_requires_more(varlink_interface_find_method(i, "B")));
        ASSERT_FALSE(varlink_method_requires_more(varlink_interface_find_method(i, "C")));
        ASSERT_FALSE(varlink_method_requires_more(varlink_interface_find_method(i, "D")));
        ASSERT_FALSE(varlink_method_requires_more(varlink_interface_find_method(i, "E")));
        ASSERT_TRUE(varlink_method_requires_more(varlink_interface_find_method(i, "F")));
        ASSERT_FALSE(varlink_method_requires_more(varlink_interface_find_method(i, "G")));
        ASSERT_FALSE(varlink_method_requires_more(NULL));
}

TEST(parse_arguments) {
        VarlinkInterface *i = (VarlinkInterface *) 0x1;
        unsigned line = 4711, column = 4711;

        ASSERT_ERRNO(varlink_interface_parse(NULL, &i, &line, &column), EINVAL);
        ASSERT_TRUE(i == (VarlinkInterface *) 0x1);

        /* Check-only mode, and positions are not written on success. */
        ASSERT_OK(varlink_interface_parse("interface a.b\nerror E ()\n", NULL, &line, &column));
        ASSERT_EQ(line, 4711);
        ASSERT_EQ(column, 4711);

        /* Position pointers are optional on failure too. */
        ASSERT_ERRNO(varlink_interface_parse("interface a\n", NULL, NULL, NULL), EBADMSG);

        ASSERT_NULL(varlink_interface_free(NULL));
        ASSERT_NULL(varlink_interface_get_name(NULL));
        ASSERT_EQ(varlink_interface_get_n_methods(NULL), 0);
        ASSERT_NULL(varlink_interface_get_method_by_index(NULL, 0));
        ASSERT_NULL(varlink_symbol_get_name(NULL));
}

TEST(parse_names) {
        static const char *const good[] = {
                "interface a.b\nerror E ()\n",
                "interface a1.b-c.d--e.0\nerror E ()\n",
                "interface org.varlink.service\nerror E ()\n",
                /* Uppercase is allowed since varlink.github.io#19 (systemd relies on it). */
                "interface io.systemd.UserDatabase\nerror E ()\n",
                "interface Org.Example.A-B.9\nerror E ()\n",
                "interface a.b\nerror E9z (x: int, X: int, a_b_c: int, a1_2: int)\n",
        };
        for (size_t k = 0; k < ELEMENTSOF(good); k++) {
                _cleanup_(varlink_interface_freep) VarlinkInterface *i = parse_ok(good[k]);
                ASSERT_NOT_NULL(i);
        }
}

static const struct {
        const char *what, *text;
        unsigned line, column;
} invalid[] = {
        { "empty text", "", 1, 1 },
        { "only comments", "# nothing\n  \n", 3, 1 },
        { "missing interface", "method F() -> ()\n", 1, 1 },
        { "type before interface", "# doc\ntype T (a: int)\ninterface a.b\n", 2, 1 },
        { "interface without name", "interface\n", 2, 1 },
        { "single-label interface name", "interface example\nerror E ()\n", 1, 11 },
        { "empty label", "interface a..b\nerror E ()\n", 1, 11 },
        { "dash before dot", "interface a-.b\nerror E ()\n", 1, 11 },
        { "trailing dash", "interface a.b-\nerror E ()\n", 1, 11 },
        { "trailing dot", "interface a.b.\nerror E ()\n", 1, 11 },
        { "digit first", "interface 1a.b\nerror E ()\n", 1, 11 },
        { "dash first", "interface -a.b\nerror E ()\n", 1, 11 },
        { "dash after dot", "interface a.-b\nerror E ()\n", 1, 11 },
        { "underscore in interface", "interface a_b.c\nerror E ()\n", 1, 11 },
        { "no members", "interface a.b\n\n", 3, 1 },
        { "member on the interface line", "interface a.b method F() -> ()\n", 1, 15 },
        { "two members on one line", "interface a.b\nerror A () error B ()\n", 2, 12 },
        { "lowercase type name", "interface a.b\ntype foo (a: int)\n", 2, 6 },
        { "lowercase method name", "interface a.b\nmethod getInfo() -> ()\n", 2, 8 },
        { "underscore in error name", "interface a.b\nerror Not_Found ()\n", 2, 7 },
        { "unknown keyword", "interface a.b\nfunction F() -> ()\n", 2, 1 },
        { "duplicate method", "interface a.b\nmethod F() -> ()\nmethod F() -> ()\n", 3, 8 },
        { "duplicate across kinds", "interface a.b\ntype F (a: int)\nerror E ()\nerror F ()\n", 4, 7 },
        { "duplicate field", "interface a.b\nmethod F(a: int, b: int, a: string) -> ()\n", 2, 26 },
        { "duplicate output field", "interface a.b\nmethod F(a: int) -> (a: int, a: int)\n", 2, 30 },
        { "duplicate nested field", "interface a.b\ntype T (s: (x: int, x: int))\n", 2, 21 },
        { "duplicate enum value", "interface a.b\ntype E (one, two, one)\n", 2, 19 },
        { "undefined type", "interface a.b\nmethod F(a: Foo) -> ()\n", 2, 13 },
        { "undefined type deep", "interface a.b\ntype T (a: ?[][string](b: Nope))\n", 2, 27 },
        { "method used as type", "interface a.b\nmethod F(a: G) -> ()\nmethod G() -> ()\n", 2, 13 },
        { "error used as type", "interface a.b\nerror G ()\nmethod F() -> (a: G)\n", 3, 19 },
        { "earliest semantic error wins", "interface a.b\nerror A ()\nerror A ()\nmethod F(a: Nope) -> ()\n", 3, 7 },
        { "unknown builtin", "interface a.b\nmethod F(a: integer) -> ()\n", 2, 13 },
        { "trailing comma", "interface a.b\nmethod F(a: int,) -> ()\n", 2, 17 },
        { "trailing comma enum", "interface a.b\ntype E (a, b,)\n", 2, 14 },
        { "leading comma", "interface a.b\ntype E (, a)\n", 2, 9 },
        { "double nullable", "interface a.b\nmethod F(a: ??int) -> ()\n", 2, 14 },
        { "double nullable after array", "interface a.b\nmethod F(a: []??int) -> ()\n", 2, 16 },
        { "space after ?", "interface a.b\nmethod F(a: ? int) -> ()\n", 2, 15 },
        { "space after []", "interface a.b\nmethod F(a: [] int) -> ()\n", 2, 16 },
        { "broken map", "interface a.b\nmethod F(a: [int]int) -> ()\n", 2, 13 },
        { "space in []", "interface a.b\nmethod F(a: [ ]int) -> ()\n", 2, 13 },
        { "dangling ?", "interface a.b\nmethod F(a: ?) -> ()\n", 2, 14 },
        { "unterminated paren", "interface a.b\nmethod F(a: int\n", 3, 1 },
        { "unterminated output", "interface a.b\nmethod F() -> (", 2, 16 },
        { "missing arrow", "interface a.b\nmethod F() (a: int)\n", 2, 12 },
        { "missing output", "interface a.b\nmethod F()\n", 3, 1 },
        { "garbage after end", "interface a.b\nmethod F() -> ()\n}\n", 3, 1 },
        { "stray paren after end", "interface a.b\nmethod F() -> () )\n", 2, 18 },
        { "stray word after end", "interface a.b\nerror E ()\nbogus\n", 3, 1 },
        { "enum as method input", "interface a.b\nmethod F(a, b) -> ()\n", 2, 11 },
        { "enum as error fields", "interface a.b\nerror E (a)\n", 2, 11 },
        { "enum then struct field", "interface a.b\ntype T (a, b: int)\n", 2, 13 },
        { "struct then enum value", "interface a.b\ntype T (a: int, b)\n", 2, 18 },
        { "field name with leading underscore", "interface a.b\nerror E (_a: int)\n", 2, 10 },
        { "field name with trailing underscore", "interface a.b\nerror E (a_: int)\n", 2, 10 },
        { "field name with double underscore", "interface a.b\nerror E (a__b: int)\n", 2, 10 },
        { "field name with digit first", "interface a.b\nerror E (1a: int)\n", 2, 10 },
        { "missing type", "interface a.b\nerror E (a:)\n", 2, 12 },
        { "type alias to a builtin", "interface a.b\ntype T int\n", 2, 8 },
        { "invalid UTF-8 in comment", "interface a.b\n# ok \xc3\xa9 bad \xff\nerror E ()\n", 2, 13 },
        { "overlong UTF-8 in comment", "interface a.b\n#\xc0\xaf\nerror E ()\n", 2, 2 },
        { "non-ASCII outside comment", "interface a.b\nerror E\xc3\xa9 ()\n", 2, 8 },
        { "control character", "interface a.b\nerror E (\x01)\n", 2, 10 },
        { "unicode whitespace", "interface a.b\nerror\xc2\xa0" "E ()\n", 2, 6 },
};

TEST(parse_invalid) {
        for (size_t k = 0; k < ELEMENTSOF(invalid); k++) {
                VarlinkInterface *i = (VarlinkInterface *) 0x1;
                unsigned l = 0, c = 0;
                int r;

                r = varlink_interface_parse(invalid[k].text, &i, &l, &c);
                if (r != -EBADMSG || l != invalid[k].line || c != invalid[k].column)
                        TEST_FAIL("%s: expected -EBADMSG at %u:%u, got %d at %u:%u", invalid[k].what,
                                  invalid[k].line, invalid[k].column, r, l, c);
                ASSERT_TRUE(i == (VarlinkInterface *) 0x1);
        }
}

/* Builds "interface a.b\ntype T " + `depth` levels of `open` + "int" + closing text. */
static char *nested_idl(unsigned depth, const char *open, const char *close) {
        size_t n = strlen("interface a.b\ntype T (x: ") + depth * (strlen(open) + strlen(close)) + 16;
        char *s = malloc(n), *p;

        ASSERT_NOT_NULL(s);
        p = stpcpy(s, "interface a.b\ntype T (x: ");
        for (unsigned k = 0; k < depth; k++)
                p = stpcpy(p, open);
        p = stpcpy(p, "int");
        for (unsigned k = 0; k < depth; k++)
                p = stpcpy(p, close);
        stpcpy(p, ")\n");
        return s;
}

TEST(parse_nesting_limit) {
        /* The type's own parentheses are level 1; each constructor inside adds one. */
        for (unsigned k = 0; k < 3; k++) {
                static const char *const opens[] = { "(a: ", "[]", "?[string]" };
                static const char *const closes[] = { ")", "", "" };
                unsigned max = VARLINK_IDL_NESTING_MAX - 1;
                _cleanup_free_ char *ok = nested_idl(max, opens[k], closes[k]);
                _cleanup_free_ char *bad = nested_idl(max + 1, opens[k], closes[k]);
                _cleanup_(varlink_interface_freep) VarlinkInterface *i = parse_ok(ok);
                /* "type T (x: " is 11 bytes; the offending constructor opens the last level. The
                 * "?" of "?[string]" is not counted: the error points at "[string]". */
                unsigned column = 12 + max * (unsigned) strlen(opens[k]) + (k == 2 ? 1 : 0);

                ASSERT_NOT_NULL(i);
                parse_fails_at(bad, 2, column);
        }

        /* Hostile depth far beyond the limit must fail cleanly, not overflow the stack. */
        {
                _cleanup_free_ char *deep = nested_idl(100000, "[]", "");
                parse_fails_at(deep, 2, 12 + 63 * 2);
        }
}

TEST(parse_many_fields_and_symbols) {
        /* Thousands of fields and symbols: duplicate detection must stay fast and exact. */
        size_t n = 5000, size = 64 + n * 64;
        _cleanup_free_ char *text = malloc(size);
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = NULL;
        char *p;

        ASSERT_NOT_NULL(text);
        p = stpcpy(text, "interface a.b\nmethod M(");
        for (size_t k = 0; k < n; k++)
                p += sprintf(p, "%sf%zu: int", k > 0 ? ", " : "", k);
        p = stpcpy(p, ") -> ()\n");
        for (size_t k = 0; k < n; k++)
                p += sprintf(p, "error E%zu ()\n", k);

        i = parse_ok(text);
        ASSERT_NOT_NULL(varlink_interface_find_error(i, "E0"));
        ASSERT_NOT_NULL(varlink_interface_find_error(i, "E4999"));
        ASSERT_NULL(varlink_interface_find_error(i, "E5000"));

        /* The same with one duplicate symbol at the very end. */
        stpcpy(p, "error E17 ()\n");
        parse_fails_at(text, 2 + n + 1, 7);
}

static const char validation_idl[] =
        "interface org.example.check\n"
        "type Range (start: int, end: int)\n"
        "type Color (red, green, blue)\n"
        "type Node (name: string, children: ?[]Node)\n"
        "method Check(\n"
        "        flag: bool,\n"
        "        count: int,\n"
        "        ratio: float,\n"
        "        label: string,\n"
        "        extra: object,\n"
        "        mode: (fast, slow),\n"
        "        color: Color,\n"
        "        ranges: []Range,\n"
        "        labels: [string]Range,\n"
        "        tags: [string](),\n"
        "        opt: ?string,\n"
        "        maybe: ?[]?int,\n"
        "        inner: (a: int, deep: (b: ?bool)),\n"
        "        tree: ?Node\n"
        ") -> (ok: bool, list: ?[]string)\n"
        "method Nothing() -> ()\n"
        "error Failed (reason: string, code: ?int)\n";

static const char valid_params[] =
        "{"
        "\"flag\": true,"
        "\"count\": -5,"
        "\"ratio\": 0.5,"
        "\"label\": \"x\","
        "\"extra\": {\"anything\": [1, null, {}]},"
        "\"mode\": \"slow\","
        "\"color\": \"green\","
        "\"ranges\": [{\"start\": 1, \"end\": 2}, {\"start\": 3, \"end\": 4}],"
        "\"labels\": {\"eth0\": {\"start\": 0, \"end\": 9}},"
        "\"tags\": {\"a\": {}, \"b\": {}},"
        "\"maybe\": [1, null, 3],"
        "\"inner\": {\"a\": 1, \"deep\": {\"b\": false}},"
        "\"tree\": {\"name\": \"root\", \"children\": [{\"name\": \"leaf\"}, {\"name\": \"l2\", \"children\": []}]}"
        "}";

/* Validates valid_params with `key` replaced by the JSON `value` (NULL: key removed). Expects
 * success if bad is NULL, else -EINVAL and that path. */
static void check(const VarlinkSymbol *m, const char *key, const char *value, const char *bad) {
        _cleanup_json_ json_object *p = json(valid_params);
        _cleanup_free_ char *field = NULL;
        int r;

        if (key && value)
                ASSERT_OK(json_object_object_add(p, key, json(value)));
        else if (key)
                json_object_object_del(p, key);

        r = varlink_method_validate_input(m, p, &field);
        if (!bad) {
                if (r != 0)
                        TEST_FAIL("%s=%s: expected valid, got %d at '%s'", strna(key), strna(value), r, field ?: "(null)");
                ASSERT_NULL(field);
                return;
        }
        if (r != -EINVAL)
                TEST_FAIL("%s=%s: expected -EINVAL at '%s', got %d", strna(key), strna(value), bad, r);
        if (!field || !streq(field, bad))
                TEST_FAIL("%s=%s: expected bad field '%s', got '%s'", strna(key), strna(value), bad, field ?: "(null)");
}

TEST(validate_input) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = parse_ok(validation_idl);
        const VarlinkSymbol *m = varlink_interface_find_method(i, "Check");

        ASSERT_NOT_NULL(m);

        /* The complex object as is, and accepted variations. */
        check(m, NULL, NULL, NULL);
        check(m, "opt", "null", NULL);
        check(m, "opt", NULL, NULL);
        check(m, "opt", "\"set\"", NULL);
        check(m, "maybe", NULL, NULL);
        check(m, "maybe", "[]", NULL);
        check(m, "tree", NULL, NULL);
        check(m, "ratio", "3", NULL);                       /* float accepts int */
        check(m, "ratio", "-1e300", NULL);
        check(m, "count", "9223372036854775807", NULL);     /* INT64_MAX */
        check(m, "count", "-9223372036854775808", NULL);    /* INT64_MIN */
        check(m, "extra", "{}", NULL);
        check(m, "ranges", "[]", NULL);
        check(m, "labels", "{}", NULL);
        check(m, "tags", "{}", NULL);
        check(m, "inner", "{\"a\": 1, \"deep\": {}}", NULL);
        check(m, "inner", "{\"a\": 1, \"deep\": {\"b\": null}}", NULL);

        /* Missing, null, unknown. Declared fields are checked before unknown keys. */
        check(m, "flag", NULL, "flag");
        check(m, "flag", "null", "flag");
        check(m, "tree", "{\"children\": []}", "tree.name");
        check(m, "bogus", "1", "bogus");
        check(m, "bogus", "null", "bogus");

        /* Wrong type for each kind. */
        check(m, "flag", "1", "flag");
        check(m, "flag", "\"true\"", "flag");
        check(m, "count", "1.5", "count");
        check(m, "count", "\"5\"", "count");
        check(m, "count", "true", "count");
        check(m, "count", "9223372036854775808", "count"); /* 2^63 */
        check(m, "count", "18446744073709551615", "count");
        check(m, "ratio", "\"0.5\"", "ratio");
        check(m, "ratio", "[]", "ratio");
        check(m, "label", "5", "label");
        check(m, "label", "{}", "label");
        check(m, "label", "\"a\\u0000b\"", "label");
        check(m, "extra", "[]", "extra");
        check(m, "extra", "\"{}\"", "extra");
        check(m, "mode", "\"medium\"", "mode");
        check(m, "mode", "\"Slow\"", "mode");
        check(m, "mode", "\"slow\\u0000x\"", "mode");
        check(m, "mode", "\"\"", "mode");                   /* not a prefix of every value */
        check(m, "mode", "\"sl\"", "mode");
        check(m, "mode", "\"fas\"", "mode");
        check(m, "mode", "\"slower\"", "mode");
        check(m, "mode", "1", "mode");
        check(m, "color", "\"pink\"", "color");
        check(m, "color", "{}", "color");
        check(m, "ranges", "{}", "ranges");
        check(m, "ranges", "[{\"start\": 1, \"end\": 2}, \"x\"]", "ranges[1]");
        check(m, "labels", "[]", "labels");
        check(m, "tags", "[\"a\"]", "tags");
        check(m, "inner", "[]", "inner");
        check(m, "tree", "\"root\"", "tree");

        /* Paths into nested structs, arrays and maps. */
        check(m, "inner", "{\"a\": 1, \"deep\": {\"b\": 3}}", "inner.deep.b");
        check(m, "inner", "{\"deep\": {}}", "inner.a");
        check(m, "inner", "{\"a\": 1, \"deep\": {}, \"zzz\": 1}", "inner.zzz");
        check(m, "inner", "{\"a\": 1, \"deep\": {\"c\": 1}}", "inner.deep.c");
        check(m, "ranges", "[{\"start\": 1, \"end\": 2}, {\"start\": 1}]", "ranges[1].end");
        check(m, "ranges", "[null]", "ranges[0]");
        check(m, "maybe", "[1, \"2\"]", "maybe[1]");
        check(m, "labels", "{\"x\": {\"start\": 1, \"end\": \"2\"}}", "labels[x].end");
        check(m, "labels", "{\"x\": null}", "labels[x]");
        check(m, "tags", "{\"a\": {}, \"b\": true}", "tags[b]");
        check(m, "tags", "{\"a\": {\"x\": 1}}", "tags[a].x");
        check(m, "tree", "{\"name\": \"r\", \"children\": [{\"name\": \"a\"}, {\"name\": \"b\", \"children\": [{}]}]}",
              "tree.children[1].children[0].name");

        /* Client-controlled names are escaped and cut. */
        check(m, "a.b[c]\\\n\xc3\xa9", "1", "a\\x2eb\\x5bc\\x5d\\x5c\\x0a\\xc3\\xa9");
        check(m, "labels", "{\"a.b]\": 1}", "labels[a.b\\x5d]");
        check(m, "del\x7f\x1f", "1", "del\\x7f\\x1f");      /* DEL is a control character too */
        check(m, "labels", "{\"\\u007f\": 1}", "labels[\\x7f]");
        {
                char key[101], expected[64 + 4];

                memset(key, 'k', 100);
                key[100] = 0;
                memset(expected, 'k', 64);
                strcpy(expected + 64, "...");
                check(m, key, "1", expected);
        }
}

TEST(validate_values_json_c_builds) {
        /* Values that JSON text cannot express but json-c objects can. */
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = parse_ok(validation_idl);
        const VarlinkSymbol *m = varlink_interface_find_method(i, "Check");
        struct {
                const char *key;
                json_object *value;
                int valid;
        } cases[] = {
                { "ratio", json_object_new_double(NAN), false },
                { "ratio", json_object_new_double(INFINITY), false },
                { "ratio", json_object_new_uint64(UINT64_MAX), true },
                { "count", json_object_new_uint64((uint64_t) INT64_MAX), true },
                { "count", json_object_new_uint64((uint64_t) INT64_MAX + 1), false },
                { "count", json_object_new_int64(INT64_MIN), true },
                { "count", json_object_new_double(2.0), false },
        };

        for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
                _cleanup_json_ json_object *p = json(valid_params);
                _cleanup_free_ char *field = NULL;

                ASSERT_OK(json_object_object_add(p, cases[k].key, cases[k].value));
                if (cases[k].valid)
                        ASSERT_OK(varlink_method_validate_input(m, p, &field));
                else {
                        ASSERT_ERRNO(varlink_method_validate_input(m, p, &field), EINVAL);
                        ASSERT_STREQ(field, cases[k].key);
                }
        }
}

/* An array held as its elements' text (json-raw.h: an audit query's records) is checked as what it
 * holds, not as the empty array json-c sees: a record of the wrong shape went unnoticed. */
TEST(validate_raw_array) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = parse_ok(validation_idl);
        const VarlinkSymbol *check_m = varlink_interface_find_method(i, "Check");
        static const struct {
                const char *elements;
                bool valid;
        } cases[] = {
                { "\"a\",\"b\"", true },
                { "", true },
                { "\"a\",1", false },
                { "\"a\",{\"b\":1}", false },
        };

        for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
                _cleanup_json_ json_object *p = json("{\"ok\": false}");
                _cleanup_(json_text_done) JsonText text = {};
                json_object *list;

                ASSERT_OK(json_text_append(&text, cases[k].elements, strlen(cases[k].elements)));
                ASSERT_OK(json_raw_array_new(&text, 2, &list));
                ASSERT_OK(json_object_object_add(p, "list", list));
                if (cases[k].valid)
                        ASSERT_OK(varlink_method_validate_output(check_m, p, NULL));
                else
                        if (varlink_method_validate_output(check_m, p, NULL) >= 0)
                                TEST_FAIL("raw list [%s] passed", cases[k].elements);
        }
}

TEST(validate_top_level) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = parse_ok(validation_idl);
        const VarlinkSymbol *check_m = varlink_interface_find_method(i, "Check");
        const VarlinkSymbol *nothing = varlink_interface_find_method(i, "Nothing");
        const VarlinkSymbol *failed = varlink_interface_find_error(i, "Failed");
        _cleanup_json_ json_object *array = json("[]"), *empty = json("{}"), *extra = json("{\"x\": 1}");
        _cleanup_json_ json_object *ok = json("{\"ok\": true}"), *ok_list = json("{\"ok\": false, \"list\": [\"a\"]}");
        _cleanup_json_ json_object *reason = json("{\"reason\": \"r\", \"code\": null}"), *code = json("{\"code\": 1}");
        char *field = (char *) "untouched";

        /* NULL parameters are {}. */
        ASSERT_OK(varlink_method_validate_input(nothing, NULL, &field));
        ASSERT_OK(varlink_method_validate_input(nothing, empty, &field));
        ASSERT_STREQ(field, "untouched");
        ASSERT_ERRNO(varlink_method_validate_input(nothing, extra, NULL), EINVAL);

        {
                _cleanup_free_ char *f = NULL;
                ASSERT_ERRNO(varlink_method_validate_input(check_m, NULL, &f), EINVAL);
                ASSERT_STREQ(f, "flag"); /* the first declared field */
        }
        {
                _cleanup_free_ char *f = NULL;
                ASSERT_ERRNO(varlink_method_validate_input(check_m, array, &f), EINVAL);
                ASSERT_STREQ(f, "parameters");
        }

        /* Output: a separate struct from the input. */
        ASSERT_OK(varlink_method_validate_output(check_m, ok, NULL));
        ASSERT_OK(varlink_method_validate_output(check_m, ok_list, NULL));
        {
                _cleanup_free_ char *f = NULL;
                ASSERT_ERRNO(varlink_method_validate_output(check_m, empty, &f), EINVAL);
                ASSERT_STREQ(f, "ok");
        }
        ASSERT_OK(varlink_method_validate_output(nothing, NULL, NULL));

        /* Errors. */
        ASSERT_OK(varlink_error_validate(failed, reason, NULL));
        {
                _cleanup_free_ char *f = NULL;
                ASSERT_ERRNO(varlink_error_validate(failed, code, &f), EINVAL);
                ASSERT_STREQ(f, "reason");
        }

        /* Wrong symbol kinds and NULL are programming errors, not invalid parameters. */
        ASSERT_ERRNO(varlink_error_validate(nothing, empty, &field), EBADMSG);
        ASSERT_ERRNO(varlink_method_validate_input(failed, empty, &field), EBADMSG);
        ASSERT_ERRNO(varlink_method_validate_output(NULL, empty, &field), EBADMSG);
        ASSERT_STREQ(field, "untouched");
}

/* {"name": "n", "children": [ … depth times … ]} */
static json_object *deep_tree(unsigned depth) {
        json_object *root = NULL;

        for (unsigned k = 0; k < depth; k++) {
                json_object *node = json_object_new_object(), *children = json_object_new_array();

                ASSERT_NOT_NULL(node);
                ASSERT_NOT_NULL(children);
                ASSERT_OK(json_object_object_add(node, "name", json_object_new_string("n")));
                if (root)
                        ASSERT_OK(json_object_array_add(children, root));
                ASSERT_OK(json_object_object_add(node, "children", children));
                root = node;
        }
        return root;
}

TEST(validate_depth_limit) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = parse_ok(
                "interface a.b\ntype Node (name: string, children: []Node)\nmethod M(tree: Node) -> ()\n");
        const VarlinkSymbol *m = varlink_interface_find_method(i, "M");
        char refused[1024];
        size_t n = 0;

        /* The refused field is the container at exactly VARLINK_IDL_VALIDATE_DEPTH_MAX components:
         * "tree", then ".children" and "[0]" in turn (769 bytes for 128). One component more would
         * have been written past the validator's path stack. */
        n += (size_t) sprintf(refused + n, "tree");
        for (unsigned k = 1; k < VARLINK_IDL_VALIDATE_DEPTH_MAX; k++)
                n += (size_t) sprintf(refused + n, k % 2 ? ".children" : "[0]");

        /* The innermost node's "name" sits at path depth 2 * depth: "tree", then "children" and an
         * index per level, then "name". */
        for (unsigned depth = 1; depth < 100; depth++) {
                _cleanup_json_ json_object *p = json_object_new_object();
                _cleanup_free_ char *field = NULL;
                unsigned path_depth = 2 * depth;
                int r;

                ASSERT_OK(json_object_object_add(p, "tree", deep_tree(depth)));
                r = varlink_method_validate_input(m, p, &field);
                if (path_depth <= VARLINK_IDL_VALIDATE_DEPTH_MAX)
                        ASSERT_OK(r);
                else {
                        ASSERT_ERRNO(r, EINVAL);
                        ASSERT_NOT_NULL(field);
                        ASSERT_STREQ(field, refused);
                }
        }

        /* Far deeper than any limit: refused, no stack overflow. */
        {
                _cleanup_json_ json_object *p = json_object_new_object();
                _cleanup_free_ char *field = NULL;

                ASSERT_OK(json_object_object_add(p, "tree", deep_tree(5000)));
                ASSERT_ERRNO(varlink_method_validate_input(m, p, &field), EINVAL);
        }
}

TEST(validate_string_set_and_empty_struct) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = parse_ok(
                "interface a.b\ntype Empty ()\nmethod M(set: [string](), e: Empty, o: ?()) -> ()\n");
        const VarlinkSymbol *m = varlink_interface_find_method(i, "M");
        _cleanup_json_ json_object *good = json("{\"set\": {\"x\": {}, \"y\": {}}, \"e\": {}, \"o\": null}");
        _cleanup_json_ json_object *bad_set = json("{\"set\": {\"x\": 1}, \"e\": {}}");
        _cleanup_json_ json_object *bad_e = json("{\"set\": {}, \"e\": {\"q\": 1}}");
        _cleanup_free_ char *f1 = NULL, *f2 = NULL;

        ASSERT_OK(varlink_method_validate_input(m, good, NULL));
        ASSERT_ERRNO(varlink_method_validate_input(m, bad_set, &f1), EINVAL);
        ASSERT_STREQ(f1, "set[x]");
        ASSERT_ERRNO(varlink_method_validate_input(m, bad_e, &f2), EINVAL);
        ASSERT_STREQ(f2, "e.q");
}

TEST_MAIN();
