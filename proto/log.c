/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Logging backend: stderr, with journald priority prefixes when run under systemd. */

#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "escape.h"
#include "log.h"

static int max_level = LOG_INFO;
static const char *ident = NULL;

void log_set_max_level(int level) {
        max_level = CLAMP(level, LOG_EMERG, LOG_DEBUG);
}

int log_get_max_level(void) {
        return max_level;
}

void log_set_ident(const char *s) {
        ident = s;
}

static const char *const log_level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit",
        [LOG_ERR] = "err",     [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
};

int log_parse_level(const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(log_level_names); i++)
                if (streq(log_level_names[i], s))
                        return (int) i;
        return -EINVAL;
}

const char *log_level_to_string(int level) {
        if (level < 0 || (size_t) level >= ELEMENTSOF(log_level_names))
                return NULL;
        return log_level_names[level];
}

/* Whether stderr is the journal's stream: JOURNAL_STREAM names its device and inode, and a
 * shell or a child the service started inherits the variable with a stderr of its own
 * (systemd.exec(5) says to compare). */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        int n = 0;

        if (!e || sscanf(e, "%llu:%llu%n", &dev, &ino, &n) != 2 || e[n] != 0)
                return false;
        return fstat(STDERR_FILENO, &st) >= 0 && st.st_dev == (dev_t) dev && st.st_ino == (ino_t) ino;
}

int log_internal(int level, int error, const char *file _unused_, int line _unused_,
                 const char *func _unused_, const char *format, ...) {
        char buf[2048], escaped[2048];
        const char *msg = buf;
        va_list ap;
        int saved = errno;

        /* %m must print the error we were given, not whatever errno happens to be. */
        errno = error;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

        /* SECURITY: messages carry strings others chose (a client's key, a file's line). On a
         * console their controls would rewrite the screen, and a newline would start a line
         * of the sender's own: under journald one with a "<N>" priority of its choosing. */
        if (!terminal_is_safe(buf, 0)) {
                (void) terminal_escape_buf(buf, 0, escaped, sizeof(escaped));
                msg = escaped;
        }

        if (stderr_is_journal())
                fprintf(stderr, "<%i>%s\n", level, msg);
        else if (ident)
                fprintf(stderr, "%s: %s\n", ident, msg);
        else
                fprintf(stderr, "%s\n", msg);

        errno = saved;
        return -error;
}
