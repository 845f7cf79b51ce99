/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What code under test logs, captured: stderr goes to a memory file between begin and end.
 * For tests of how often something is logged. Runs in: tests.
 */
#pragma once

#include <stddef.h>

/* Returns the saved stderr, for log_capture_end(). */
int log_capture_begin(void);
/* Restores stderr and returns what was written meanwhile (malloc'd, NUL-terminated). */
char *log_capture_end(int saved);

/* How many times needle occurs in text. */
size_t count_occurrences(const char *text, const char *needle);
