/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Logging with the systemd error idiom: log_*_errno(r, ...) logs with errno = -r (so %m
 * works) and returns r, so `return log_error_errno(r, "Failed to ...: %m");` is one line.
 * Messages go to stderr; under systemd (JOURNAL_STREAM naming stderr) each line carries a "<N>"
 * priority prefix that journald understands. Library code (proto/, client/) logs at debug
 * level only, and the default level hides debug output.
 */
#pragma once

#include <syslog.h>

#include "macro.h"

void log_set_max_level(int level);
int log_get_max_level(void);
int log_parse_level(const char *s);
const char *log_level_to_string(int level);

/* Sets the program name shown in front of every line ("tsmd", "tsmctl"). */
void log_set_ident(const char *ident);

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) _printf_(6, 7);

#define log_full_errno(level, error, ...)                                                          \
        ({                                                                                         \
                int _level_ = (level), _e_ = (error);                                              \
                _e_ = _e_ < 0 ? -_e_ : _e_;                                                        \
                _level_ <= log_get_max_level()                                                     \
                        ? log_internal(_level_, _e_, __FILE__, __LINE__, __func__, __VA_ARGS__)    \
                        : -_e_;                                                                    \
        })

#define log_full(level, ...) ((void) log_full_errno((level), 0, __VA_ARGS__))

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(error, ...) log_full_errno(LOG_DEBUG, (error), __VA_ARGS__)
#define log_info_errno(error, ...) log_full_errno(LOG_INFO, (error), __VA_ARGS__)
#define log_notice_errno(error, ...) log_full_errno(LOG_NOTICE, (error), __VA_ARGS__)
#define log_warning_errno(error, ...) log_full_errno(LOG_WARNING, (error), __VA_ARGS__)
#define log_error_errno(error, ...) log_full_errno(LOG_ERR, (error), __VA_ARGS__)

#define log_oom() log_error_errno(-ENOMEM, "Out of memory.")
