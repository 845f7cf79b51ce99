/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmd.conf read as a file tsmd must trust (file-trust.h). Runs in: monitor and worker. */

#include "daemon-config-trusted.h"
#include "file-trust.h"
#include "log.h"

int daemon_config_load_trusted(DaemonConfig *c, const char *path, const PolicyFileTrust *trust, unsigned *ret_line,
                               const char **ret_message, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        int r;

        assert(c);
        assert(path);
        assert(ret_error);

        r = file_trust_read(path, trust, DAEMON_CONFIG_FILE_MAX, &text, NULL, ret_error);
        if (r < 0 && *ret_error)
                return r;
        if (r < 0) {
                if (ret_line)
                        *ret_line = 0;
                if (ret_message)
                        *ret_message = r == -EISDIR || r == -EBADFD ? "not a regular file"
                                       : r == -EBADMSG                ? "syntax error"
                                                                      : "cannot read file";
                return r;
        }
        return daemon_config_load_text(c, text, ret_line, ret_message);
}

int daemon_config_load_trusted_logged(DaemonConfig *c, const char *path, bool optional,
                                      const PolicyFileTrust *trust) {
        _cleanup_free_ char *error = NULL;
        const char *message = NULL;
        unsigned line = 0;
        int r;

        r = daemon_config_load_trusted(c, path, trust, &line, &message, &error);
        if (r == -ENOENT && optional)
                return 0; /* built-in defaults (a reload picks up a file that appears later) */
        if (r < 0 && error)
                return log_error_errno(r, "%s.", error);
        if (r < 0)
                return daemon_config_log_load_error(path, r, line, message);
        return 0;
}
