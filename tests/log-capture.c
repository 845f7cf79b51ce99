/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Captures stderr in a memory file (see log-capture.h). Runs in: tests. */

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "log-capture.h"

static int capture_fd = -1;

int log_capture_begin(void) {
        int saved;

        fflush(stderr);
        saved = dup(STDERR_FILENO);
        ASSERT_GE(saved, 0);
        capture_fd = memfd_create("log-capture", MFD_CLOEXEC);
        ASSERT_GE(capture_fd, 0);
        ASSERT_GE(dup2(capture_fd, STDERR_FILENO), 0);
        return saved;
}

char *log_capture_end(int saved) {
        off_t size;
        char *text;

        fflush(stderr);
        ASSERT_GE(dup2(saved, STDERR_FILENO), 0);
        close(saved);
        size = lseek(capture_fd, 0, SEEK_END);
        ASSERT_GE(size, 0);
        text = calloc(1, (size_t) size + 1);
        ASSERT_NOT_NULL(text);
        ASSERT_EQ(pread(capture_fd, text, (size_t) size, 0), size);
        close(capture_fd);
        capture_fd = -1;
        return text;
}

size_t count_occurrences(const char *text, const char *needle) {
        size_t n = 0;

        for (const char *p = text; (p = strstr(p, needle)); p++)
                n++;
        return n;
}
