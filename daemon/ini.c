/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* INI parser for tsmd.conf and the policy files. Runs in: monitor and worker. */

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "ini.h"

static char *strstrip(char *s) {
        char *e;

        s += strspn(s, " \t\r");
        e = s + strlen(s);
        while (e > s && strchr(" \t\r", e[-1]))
                *--e = 0;
        return s;
}

static bool section_name_valid(const char *s) {
        if (isempty(s))
                return false;
        for (; *s; s++)
                if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
                      (*s >= '0' && *s <= '9') || strchr("-_.:@", *s)))
                        return false;
        return true;
}

static bool key_valid(const char *s) {
        return section_name_valid(s);
}

int ini_parse_full(const char *text, IniSectionFunc on_section, IniAssignmentFunc callback, void *userdata,
                   unsigned *ret_line) {
        _cleanup_free_ char *section = NULL;
        unsigned line = 0;
        const char *p = text;
        int r;

        assert(text);
        assert(callback);

        while (*p) {
                char buf[INI_LINE_MAX + 1];
                size_t len = strcspn(p, "\n"), a;
                char *l, *eq;

                line++;
                /* A comment says nothing, so it may be of any length: tsmd --dump-config writes
                 * each line of the policy (at most INI_LINE_MAX) as one, two bytes longer. */
                a = strspn(p, " \t\r");
                if (a < len && (p[a] == '#' || p[a] == ';')) {
                        p += len;
                        if (*p == '\n')
                                p++;
                        continue;
                }
                if (len > INI_LINE_MAX)
                        goto fail;
                memcpy(buf, p, len);
                buf[len] = 0;
                p += len;
                if (*p == '\n')
                        p++;
                if (memchr(buf, 0, len))
                        goto fail;

                l = strstrip(buf);
                if (*l == 0 || *l == '#' || *l == ';')
                        continue;

                if (*l == '[') {
                        size_t n = strlen(l);
                        char *name;

                        if (n < 3 || l[n - 1] != ']')
                                goto fail;
                        l[n - 1] = 0;
                        name = strstrip(l + 1);
                        if (!section_name_valid(name))
                                goto fail;
                        free(section);
                        section = strdup(name);
                        if (!section)
                                return -ENOMEM;
                        r = on_section ? on_section(section, line, userdata) : 0;
                        if (r < 0) {
                                if (ret_line)
                                        *ret_line = line;
                                return r;
                        }
                        continue;
                }

                /* Assignments outside of a section have no meaning in our files. */
                eq = strchr(l, '=');
                if (!eq || !section)
                        goto fail;
                *eq = 0;
                l = strstrip(l);
                if (!key_valid(l))
                        goto fail;

                r = callback(section, l, strstrip(eq + 1), line, userdata);
                if (r < 0) {
                        if (ret_line)
                                *ret_line = line;
                        return r;
                }
        }
        return 0;

fail:
        if (ret_line)
                *ret_line = line;
        return -EBADMSG;
}

int ini_parse(const char *text, IniAssignmentFunc callback, void *userdata, unsigned *ret_line) {
        return ini_parse_full(text, NULL, callback, userdata, ret_line);
}

size_t ini_line_length(const char *text, unsigned line) {
        const char *p = text;

        assert(text);

        for (unsigned i = 1; i < line && *p; i++) {
                p += strcspn(p, "\n");
                if (*p == '\n')
                        p++;
        }
        return line > 0 ? strcspn(p, "\n") : 0;
}

int ini_read_fd(int fd, size_t max_size, char **ret_text) {
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t n = 0;

        assert(fd >= 0);
        assert(ret_text);

        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;

        buf = malloc(max_size + 1);
        if (!buf)
                return -ENOMEM;

        for (;;) {
                ssize_t k = read(fd, buf + n, max_size + 1 - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > max_size)
                        return -EFBIG;
        }
        buf[n] = 0;
        if (memchr(buf, 0, n))
                return -EBADMSG;

        *ret_text = TAKE_PTR(buf);
        return 0;
}

int ini_read_file(const char *path, size_t max_size, char **ret_text) {
        _cleanup_close_ int fd = -EBADF;

        assert(path);
        assert(ret_text);

        /* O_NONBLOCK: a FIFO must not hang the caller (the monitor's loop, on a reload) in
         * open() or read(); it is refused by ini_read_fd(). */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return negative_errno();
        return ini_read_fd(fd, max_size, ret_text);
}

int ini_parse_file(const char *path, size_t max_size, IniAssignmentFunc callback, void *userdata,
                   unsigned *ret_line) {
        _cleanup_free_ char *text = NULL;
        int r;

        r = ini_read_file(path, max_size, &text);
        if (r < 0)
                return r;
        return ini_parse(text, callback, userdata, ret_line);
}
