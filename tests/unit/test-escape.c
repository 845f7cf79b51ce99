/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Text made safe for a terminal (proto/escape.h): controls, C1 and invalid UTF-8 escaped,
 * printable UTF-8 left alone, a short buffer cut at a whole escape; and tsmd's log lines
 * (proto/log.c), which carry strings clients choose, escaped so; text quoted from a file made
 * valid UTF-8 for a JSON string (string_shorten_printable()). Runs in: tests.
 */

#include <sys/stat.h>
#include <unistd.h>

#include "escape.h"
#include "harness.h"
#include "log-capture.h"
#include "log.h"
#include "macro.h"

static void check(const char *in, EscapeFlags flags, const char *want) {
        char buf[256];
        _cleanup_free_ char *heap = NULL;
        size_t len = terminal_escape_buf(in, flags, buf, sizeof(buf));

        if (!streq(buf, want))
                TEST_FAIL("escaping '%s': got '%s', expected '%s'", in, buf, want);
        ASSERT_EQ(len, strlen(want));
        ASSERT_OK(terminal_escape(in, flags, &heap));
        ASSERT_STREQ(heap, want);
        ASSERT_EQ(terminal_is_safe(in, flags), streq(in, want));
}

TEST(controls_c1_and_invalid_utf8_are_escaped) {
        /* Printable ASCII and UTF-8 as they are, the backslash too. */
        check("", 0, "");
        check("plain text, 0000:01:00.0 \\x1b", 0, "plain text, 0000:01:00.0 \\x1b");
        check("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc2\xa0", 0, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc2\xa0");
        /* C0 and DEL. */
        check("\x1b]0;pwned\x07", 0, "\\x1b]0;pwned\\a");
        check("a\x1b[2J\x1b[1A\rb", 0, "a\\x1b[2J\\x1b[1A\\rb");
        check("\t\n\v\f\b\x01\x1f\x7f", 0, "\\t\\n\\v\\f\\b\\x01\\x1f\\x7f");
        check("one\ntwo\t", ESCAPE_KEEP_NEWLINE, "one\ntwo\\t");
        /* C1 as UTF-8 (U+0080, U+009B CSI, U+009F), and the first character past it. */
        check("\xc2\x80\xc2\x9b" "31m\xc2\x9f\xc2\xa1", 0, "\\xc2\\x80\\xc2\\x9b" "31m\\xc2\\x9f\xc2\xa1");
        /* Raw C1 bytes and other invalid UTF-8: each byte; what follows is read afresh. */
        check("\x9b" "31m", 0, "\\x9b" "31m");
        check("\xff\xfe", 0, "\\xff\\xfe");
        check("\xc3\xc3\xa9", 0, "\\xc3\xc3\xa9");                  /* a lead byte, then a valid é */
        check("\xc0\x80", 0, "\\xc0\\x80");                         /* overlong NUL */
        check("\xe0\x80\x9b", 0, "\\xe0\\x80\\x9b");                /* overlong CSI */
        check("\xed\xa0\x80", 0, "\\xed\\xa0\\x80");                /* a surrogate */
        check("\xf4\x90\x80\x80", 0, "\\xf4\\x90\\x80\\x80");       /* past U+10FFFF */
        check("x\xe2\x82", 0, "x\\xe2\\x82");                       /* cut short at the end */
}

/* A table cell's text (ESCAPE_SPACE): a space, and every other Unicode space a terminal shows
 * blank, escaped, so that a value others chose reads as one cell; their neighbours stay
 * (U+2027, U+2030, U+205E, U+3001, U+1681, U+00A1). Without the flag they are left alone, but
 * for the line separators U+2028 and U+2029 (invisible_characters_are_escaped). */
TEST(spaces_are_escaped_in_cells) {
        check("debug read", ESCAPE_SPACE, "debug\\x20read");
        check("debug read", 0, "debug read");
        check("a\tb c", ESCAPE_SPACE, "a\\tb\\x20c");
        check("\xc2\xa0|\xe1\x9a\x80|\xe2\x80\x80|\xe2\x80\x8a|\xe2\x80\xa8|\xe2\x80\xa9|\xe2\x80\xaf|"
              "\xe2\x81\x9f|\xe3\x80\x80",
              ESCAPE_SPACE,
              "\\xc2\\xa0|\\xe1\\x9a\\x80|\\xe2\\x80\\x80|\\xe2\\x80\\x8a|\\xe2\\x80\\xa8|\\xe2\\x80\\xa9|"
              "\\xe2\\x80\\xaf|\\xe2\\x81\\x9f|\\xe3\\x80\\x80");
        check("\xc2\xa0\xe3\x80\x80", 0, "\xc2\xa0\xe3\x80\x80");
        check("\xe2\x80\xa7\xe2\x80\xb0\xe2\x81\x9e\xe3\x80\x81\xe1\x9a\x81\xc2\xa1", ESCAPE_SPACE,
              "\xe2\x80\xa7\xe2\x80\xb0\xe2\x81\x9e\xe3\x80\x81\xe1\x9a\x81\xc2\xa1");
        check("info", ESCAPE_SPACE, "info");
}

/* The bidirectional formatting characters, which a terminal that does bidi obeys: "\u202e"
 * before "cod.exe" shows "exe.doc". Escaped byte by byte as C1 is; their neighbours in the
 * same blocks (U+2010, U+202F, U+061B) stay. */
TEST(bidirectional_controls_are_escaped) {
        check("a\xe2\x80\xae" "cod.exe", 0, "a\\xe2\\x80\\xae" "cod.exe");  /* U+202E RLO */
        check("\xe2\x80\xaa\xe2\x80\xab\xe2\x80\xac\xe2\x80\xad", 0,     /* U+202A..U+202D */
              "\\xe2\\x80\\xaa\\xe2\\x80\\xab\\xe2\\x80\\xac\\xe2\\x80\\xad");
        check("\xe2\x80\x8e\xe2\x80\x8f", 0, "\\xe2\\x80\\x8e\\xe2\\x80\\x8f"); /* LRM, RLM */
        check("\xe2\x81\xa6x\xe2\x81\xa9", 0, "\\xe2\\x81\\xa6x\\xe2\\x81\\xa9"); /* LRI, PDI */
        check("\xe2\x81\xa7\xe2\x81\xa8", 0, "\\xe2\\x81\\xa7\\xe2\\x81\\xa8"); /* RLI, FSI */
        check("\xd8\x9c", 0, "\\xd8\\x9c");                                  /* U+061C ALM */
        check("\xe2\x80\x90\xe2\x80\xaf\xd8\x9b", 0, "\xe2\x80\x90\xe2\x80\xaf\xd8\x9b");
}

/* What shows as nothing (Default_Ignorable_Code_Point) reads as the text without it: a scope
 * "info" + U+200B looks like "info". Escaped everywhere, as C1 is, and the line and paragraph
 * separators, which some terminals break a line at; their neighbours stay (U+00AC, U+034E,
 * U+200A is a space, U+2070, U+FE10, U+FEFE, U+E1000, U+1D172). */
TEST(invisible_characters_are_escaped) {
        check("info\xe2\x80\x8b", 0, "info\\xe2\\x80\\x8b");                           /* U+200B */
        check("\xc2\xad\xcd\x8f\xe2\x80\x8c\xe2\x80\x8d", 0,                          /* U+00AD, U+034F, ZWNJ, ZWJ */
              "\\xc2\\xad\\xcd\\x8f\\xe2\\x80\\x8c\\xe2\\x80\\x8d");
        check("\xe2\x81\xa0\xe2\x81\xa4\xef\xbb\xbf", 0,                              /* U+2060, U+2064, BOM */
              "\\xe2\\x81\\xa0\\xe2\\x81\\xa4\\xef\\xbb\\xbf");
        check("\xef\xb8\x80\xef\xb8\x8f\xe1\x85\x9f\xe3\x85\xa4", 0,               /* VS1, VS16, U+115F, U+3164 */
              "\\xef\\xb8\\x80\\xef\\xb8\\x8f\\xe1\\x85\\x9f\\xe3\\x85\\xa4");
        check("\xf3\xa0\x80\x81\xf3\xa0\x84\x80\xf0\x9d\x85\xb3", 0,               /* tags, VS17, U+1D173 */
              "\\xf3\\xa0\\x80\\x81\\xf3\\xa0\\x84\\x80\\xf0\\x9d\\x85\\xb3");
        check("a\xe2\x80\xa8" "b\xe2\x80\xa9", 0, "a\\xe2\\x80\\xa8" "b\\xe2\\x80\\xa9");    /* LS, PS */
        check("\xc2\xac\xcd\x8e\xe2\x80\x8a\xe2\x81\xb0\xef\xb8\x90\xef\xbb\xbe\xf3\xa1\x80\x80\xf0\x9d\x85\xb2", 0,
              "\xc2\xac\xcd\x8e\xe2\x80\x8a\xe2\x81\xb0\xef\xb8\x90\xef\xbb\xbe\xf3\xa1\x80\x80\xf0\x9d\x85\xb2");
}

TEST(null_is_empty_and_safe) {
        char buf[4] = "zzz";
        _cleanup_free_ char *heap = NULL;

        ASSERT_TRUE(terminal_is_safe(NULL, 0));
        ASSERT_EQ(terminal_escape_buf(NULL, 0, buf, sizeof(buf)), 0u);
        ASSERT_STREQ(buf, "");
        ASSERT_OK(terminal_escape(NULL, 0, &heap));
        ASSERT_STREQ(heap, "");
}

/* A short buffer holds whole escapes and whole characters only, NUL-terminated. */
TEST(short_buffer_cut_at_a_whole_escape) {
        char buf[8];

        ASSERT_EQ(terminal_escape_buf("ab\x1b" "cd", 0, buf, 5), 8u);
        ASSERT_STREQ(buf, "ab");
        ASSERT_EQ(terminal_escape_buf("ab\x1b" "cd", 0, buf, 7), 8u);
        ASSERT_STREQ(buf, "ab\\x1b");
        ASSERT_EQ(terminal_escape_buf("a\xe2\x82\xac", 0, buf, 4), 4u);
        ASSERT_STREQ(buf, "a");
        ASSERT_EQ(terminal_escape_buf("abc", 0, buf, 0), 3u);
        ASSERT_EQ(terminal_escape_buf("abc", 0, buf, 1), 3u);
        ASSERT_STREQ(buf, "");
}

/* A string a client chose, logged: one line whatever it holds, no control character in it;
 * under journald a newline would have started a line of its own with its own priority. */
TEST(log_lines_escape_what_they_quote) {
        static const char key[] = "x\x1b]0;pwned\x07\n<0>tsmd: forged\r\x9b";
        _cleanup_free_ char *out = NULL, *journal = NULL;
        char stream[64];
        struct stat st;
        int saved;

        log_set_ident("tsmd");
        saved = log_capture_begin();
        log_warning("Invalid call object (key '%s').", key);
        log_info("Plain \xc3\xa9 line.");
        out = log_capture_end(saved);
        ASSERT_STREQ(out, "tsmd: Invalid call object (key 'x\\x1b]0;pwned\\a\\n<0>tsmd: forged\\r\\x9b').\n"
                          "tsmd: Plain \xc3\xa9 line.\n");

        saved = log_capture_begin();
        ASSERT_OK(fstat(STDERR_FILENO, &st));
        snprintf(stream, sizeof(stream), "%llu:%llu", (unsigned long long) st.st_dev, (unsigned long long) st.st_ino);
        ASSERT_OK(setenv("JOURNAL_STREAM", stream, 1));
        log_error("key '%s'", key);
        /* Another stream's (a shell that inherited the variable): not the journal. */
        snprintf(stream, sizeof(stream), "%llu:%llu", (unsigned long long) st.st_dev,
                 (unsigned long long) st.st_ino + 1);
        ASSERT_OK(setenv("JOURNAL_STREAM", stream, 1));
        log_error("not journal");
        ASSERT_OK(setenv("JOURNAL_STREAM", "8:1234", 1));
        log_error("nor here");
        journal = log_capture_end(saved);
        ASSERT_OK(unsetenv("JOURNAL_STREAM"));
        ASSERT_STREQ(journal, "<3>key 'x\\x1b]0;pwned\\a\\n<0>tsmd: forged\\r\\x9b'\n"
                              "tsmd: not journal\ntsmd: nor here\n");
}

/* Text quoted from a file into a JSON string (string_shorten_printable()): a byte that begins
 * no valid UTF-8 sequence is a '?' as a control is, valid characters stay, and the cut never
 * falls inside a character nor, after a run of stray continuation bytes, eats the whole text. */
static void check_shorten(const char *in, size_t max, const char *want) {
        _cleanup_free_ char *s = strdup(in);

        ASSERT_NOT_NULL(s);
        string_shorten_printable(s, max);
        if (!streq(s, want))
                TEST_FAIL("shortening '%s' to %zu: got '%s', expected '%s'", in, max, s, want);
}

TEST(shorten_printable_makes_utf8) {
        check_shorten("jos\xe9", 80, "jos?");
        check_shorten("a\tb\x7f" "c", 80, "a?b?c");
        check_shorten("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 80, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
        check_shorten("\xc3(\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80", 80, "?(?????????");
        check_shorten("ab\xc3", 80, "ab?");
        check_shorten("abcdefg\xc3\xa9", 8, "abcde...");
        check_shorten("abcd\xc3\xa9" "fgh", 8, "abcd...");
        check_shorten("\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80", 8, "?????...");
}

TEST_MAIN();
