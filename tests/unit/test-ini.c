/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The INI reader tsmd.conf, the policy files and the context store go through (daemon/ini.c),
 * on its own: what a line may be (CRLF, its longest, the characters of names), the line an
 * error names, and what ini_read_fd() refuses (a directory, a FIFO, a file one byte too large, a
 * NUL byte). The loaders check some of this again; these are the parser's own promises.
 * Runs in: tests.
 */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "harness.h"
#include "ini.h"
#include "macro.h"

typedef struct Seen {
        unsigned n;
        char last[3][64]; /* section, key, value */
} Seen;

static int on_assignment(const char *section, const char *key, const char *value, unsigned line, void *userdata) {
        Seen *s = userdata;

        s->n++;
        snprintf(s->last[0], sizeof(s->last[0]), "%s", section);
        snprintf(s->last[1], sizeof(s->last[1]), "%s", key);
        snprintf(s->last[2], sizeof(s->last[2]), "%.60s", value);
        return 0;
}

static int refuse_section(const char *section, unsigned line, void *userdata) {
        return streq(section, "Bad") ? -EPROTO : 0;
}

/* CRLF line ends, as an editor on another system leaves them, are whitespace. */
TEST(crlf_lines) {
        Seen s = {};

        ASSERT_OK(ini_parse("\r[Sec]\r\n\rKey = value\r\n", on_assignment, &s, NULL));
        ASSERT_EQ(s.n, 1u);
        ASSERT_STREQ(s.last[0], "Sec");
        ASSERT_STREQ(s.last[1], "Key");
        ASSERT_STREQ(s.last[2], "value");
}

/* A line of INI_LINE_MAX bytes is read, one byte more is an error naming its line. */
TEST(longest_line) {
        _cleanup_free_ char *text = malloc(INI_LINE_MAX + 64);
        unsigned line = 0;
        Seen s = {};
        size_t head;

        ASSERT_NOT_NULL(text);
        head = (size_t) sprintf(text, "[Sec]\nKey=");
        memset(text + head, 'x', INI_LINE_MAX - 4);
        strcpy(text + head + INI_LINE_MAX - 4, "\n");
        ASSERT_EQ(ini_line_length(text, 2), (size_t) INI_LINE_MAX);
        ASSERT_OK(ini_parse(text, on_assignment, &s, &line));
        ASSERT_EQ(s.n, 1u);

        memset(text + head, 'x', INI_LINE_MAX - 3);
        strcpy(text + head + INI_LINE_MAX - 3, "\n");
        ASSERT_EQ(ini_line_length(text, 2), (size_t) INI_LINE_MAX + 1);
        ASSERT_ERRNO(ini_parse(text, on_assignment, &s, &line), EBADMSG);
        ASSERT_EQ(line, 2u);
}

TEST(line_length) {
        static const char text[] = "a\nbbb\n\ncccc";

        ASSERT_EQ(ini_line_length(text, 0), 0u);
        ASSERT_EQ(ini_line_length(text, 1), 1u);
        ASSERT_EQ(ini_line_length(text, 2), 3u);
        ASSERT_EQ(ini_line_length(text, 3), 0u);
        ASSERT_EQ(ini_line_length(text, 4), 4u);
        ASSERT_EQ(ini_line_length(text, 5), 0u);
}

/* Names are letters, digits and - _ . : @, nothing else; a header needs its ']'. */
TEST(names) {
        static const char *const good[] = { "[a-Z_0.9:x@y]\nK=v\n", "[S]\nk-Z_0.9:x@y=v\n" };
        static const struct {
                const char *text;
                unsigned line;
        } bad[] = {
                { "[a/b]\nK=v\n", 1 }, { "[a{b]\nK=v\n", 1 }, { "[a b]\nK=v\n", 1 }, { "[a[b]\nK=v\n", 1 },
                { "[`]\nK=v\n", 1 },   { "[Sec\nK=v\n", 1 },  { "[]\nK=v\n", 1 },    { "[S]\nk/=v\n", 2 },
                { "[S]\nk{=v\n", 2 },  { "[S]\n=v\n", 2 },    { "[S]\nk`=v\n", 2 },  { "[S]\nk\\=v\n", 2 },
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                Seen s = {};

                ASSERT_OK(ini_parse(good[i], on_assignment, &s, NULL));
                ASSERT_EQ(s.n, 1u);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                unsigned line = 0;
                Seen s = {};
                int r = ini_parse(bad[i].text, on_assignment, &s, &line);

                if (r != -EBADMSG || line != bad[i].line)
                        TEST_FAIL("'%s': %d at line %u, expected -EBADMSG at %u", bad[i].text, r, line, bad[i].line);
                ASSERT_EQ(s.n, 0u);
        }
}

/* A callback's error stops the parse with that error and its line, a header's too. */
TEST(callback_errors_name_their_line) {
        unsigned line = 0;
        Seen s = {};

        ASSERT_ERRNO(ini_parse_full("# c\n[Good]\nK=v\n\n[Bad]\nK=v\n", refuse_section, on_assignment, &s, &line),
                     EPROTO);
        ASSERT_EQ(line, 5u);
        ASSERT_EQ(s.n, 1u);
}

static char dir[] = "/tmp/test-ini-XXXXXX";

static const char *path_of(const char *name) {
        static char buf[256];

        snprintf(buf, sizeof(buf), "%s/%s", dir, name);
        return buf;
}

static void write_bytes(const char *name, const void *data, size_t n) {
        _cleanup_close_ int fd = open(path_of(name), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, data, n), (ssize_t) n);
}

/* What ini_read_file() refuses: a directory, a FIFO (without blocking on it), more than max_size
 * bytes, a NUL byte. Exactly max_size bytes are read. */
TEST(read_file) {
        _cleanup_free_ char *text = NULL, *big = NULL;

        ASSERT_NOT_NULL(mkdtemp(dir));

        ASSERT_ERRNO(ini_read_file(dir, 4096, &text), EISDIR);
        ASSERT_OK(mkfifo(path_of("fifo"), 0644));
        ASSERT_ERRNO(ini_read_file(path_of("fifo"), 4096, &text), EBADFD);
        ASSERT_ERRNO(ini_read_file("/dev/null", 4096, &text), EBADFD);
        ASSERT_NULL(text);

        big = malloc(101);
        ASSERT_NOT_NULL(big);
        memset(big, 'x', 101);
        write_bytes("big", big, 101);
        ASSERT_ERRNO(ini_read_file(path_of("big"), 100, &text), EFBIG);
        ASSERT_OK(ini_read_file(path_of("big"), 101, &text));
        ASSERT_EQ(strlen(text), 101u);
        text = mfree(text);

        write_bytes("nul", "[S]\nK=v\0w\n", 10);
        ASSERT_ERRNO(ini_read_file(path_of("nul"), 100, &text), EBADMSG);
        ASSERT_NULL(text);

        ASSERT_OK(unlink(path_of("fifo")));
        ASSERT_OK(unlink(path_of("big")));
        ASSERT_OK(unlink(path_of("nul")));
        ASSERT_OK(rmdir(dir));
}

TEST_MAIN();
