/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A parser for the INI dialect of systemd unit files, which is what Linux admins expect of
 * a daemon's configuration: [Section] headers, Key=Value assignments, '#' and ';' comments,
 * whitespace around keys and values ignored. No continuation lines, no quoting. Runs in:
 * monitor and worker (trusted, root-owned input; still fuzzed).
 */
#pragma once

#include "macro.h"

/* Called for every assignment. Return < 0 to stop parsing with that error. */
typedef int (*IniAssignmentFunc)(const char *section, const char *key, const char *value,
                                 unsigned line, void *userdata);

/* Called for every [Section] header, before the assignments under it. Return < 0 to stop parsing
 * with that error. */
typedef int (*IniSectionFunc)(const char *section, unsigned line, void *userdata);

/* Long enough for an EmulatedDevices= line of EMU_DEVICES_MAX addresses (13 bytes each). */
#define INI_LINE_MAX 16384U

/* Parses text. On a syntax error returns -EBADMSG with the 1-based line in *ret_line;
 * a callback error is returned as is, also with the line. */
int ini_parse(const char *text, IniAssignmentFunc callback, void *userdata, unsigned *ret_line);
/* The same, also calling on_section (if not NULL) for each header: a section without
 * assignments is seen too. */
int ini_parse_full(const char *text, IniSectionFunc on_section, IniAssignmentFunc callback, void *userdata,
                   unsigned *ret_line);

/* The length of the 1-based line of text, without its newline (0 past the end). */
size_t ini_line_length(const char *text, unsigned line);

/* Reads a whole text file (at most max_size bytes, else -EFBIG; a NUL byte in it is -EBADMSG)
 * into *ret_text, NUL-terminated. Anything but a regular file is refused, without blocking:
 * -EISDIR for a directory, -EBADFD for the rest (a FIFO, a device). */
int ini_read_file(const char *path, size_t max_size, char **ret_text);
/* The same from an open fd (read from where it stands). */
int ini_read_fd(int fd, size_t max_size, char **ret_text);

/* Reads a whole file (at most max_size bytes) and parses it. Anything but a regular file is
 * refused, without blocking: -EISDIR for a directory, -EBADFD for the rest (a FIFO, a device). */
int ini_parse_file(const char *path, size_t max_size, IniAssignmentFunc callback, void *userdata,
                   unsigned *ret_line);
