/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* systemd's fd store for iommufd contexts. Runs in: daemon. */

#include <stdio.h>
#include <sys/random.h>

#include <systemd/sd-daemon.h>

#include "fdstore.h"
#include "log.h"

bool fdstore_available(void) {
        return !isempty(getenv("NOTIFY_SOCKET"));
}

int fdstore_put(int fd, uid_t uid, const char *token) {
        char msg[128];
        int r;

        if (!fdstore_available())
                return -EOPNOTSUPP;
        snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=" FDSTORE_PREFIX "%u.%s", (unsigned) uid, token);
        r = sd_pid_notify_with_fds(0, false, msg, &fd, 1);
        if (r < 0)
                return r;
        return r == 0 ? -EOPNOTSUPP : 0;
}

int fdstore_remove(uid_t uid, const char *token) {
        if (!fdstore_available())
                return -EOPNOTSUPP;
        return sd_notifyf(false, "FDSTOREREMOVE=1\nFDNAME=" FDSTORE_PREFIX "%u.%s", (unsigned) uid, token);
}

int fdstore_parse_name(const char *name, uid_t *ret_uid, char ret_token[RECLAIM_TOKEN_LEN + 1]) {
        unsigned long uid;
        const char *dot;
        char *end;

        if (!name || !strneq(name, FDSTORE_PREFIX, strlen(FDSTORE_PREFIX)))
                return -EINVAL;
        name += strlen(FDSTORE_PREFIX);
        errno = 0;
        uid = strtoul(name, &end, 10);
        if (errno != 0 || end == name || *end != '.' || uid >= UINT32_MAX)
                return -EINVAL;
        dot = end + 1;
        if (strlen(dot) != RECLAIM_TOKEN_LEN || strspn(dot, "0123456789abcdef") != RECLAIM_TOKEN_LEN)
                return -EINVAL;

        *ret_uid = (uid_t) uid;
        memcpy(ret_token, dot, RECLAIM_TOKEN_LEN + 1);
        return 0;
}

int reclaim_token_new(char ret[RECLAIM_TOKEN_LEN + 1]) {
        uint8_t b[RECLAIM_TOKEN_LEN / 2];
        ssize_t n;

        n = getrandom(b, sizeof(b), 0);
        if (n < 0)
                return negative_errno();
        if ((size_t) n != sizeof(b))
                return -EIO;
        for (size_t i = 0; i < sizeof(b); i++)
                snprintf(ret + 2 * i, 3, "%02x", b[i]);
        return 0;
}
