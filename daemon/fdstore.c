/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* systemd's fd store for iommufd contexts. Runs in: daemon. */

#include <stdio.h>
#include <sys/random.h>

#include <systemd/sd-daemon.h>

#include "fdstore.h"
#include "log.h"
#include "sha256.h"

static bool has_prefix(const char *s, const char *prefix) {
        return strneq(s, prefix, strlen(prefix));
}

bool fdstore_available(void) {
        return !isempty(getenv("NOTIFY_SOCKET"));
}

int fdstore_put(int fd, uid_t uid, const char *reclaim_id) {
        char msg[128];
        int r;

        if (!fdstore_available())
                return -EOPNOTSUPP;
        snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=" FDSTORE_PREFIX "%u.%s", (unsigned) uid, reclaim_id);
        r = sd_pid_notify_with_fds(0, false, msg, &fd, 1);
        if (r < 0)
                return r;
        return r == 0 ? -EOPNOTSUPP : 0;
}

int fdstore_remove(uid_t uid, const char *reclaim_id) {
        if (!fdstore_available())
                return -EOPNOTSUPP;
        return sd_notifyf(false, "FDSTOREREMOVE=1\nFDNAME=" FDSTORE_PREFIX "%u.%s", (unsigned) uid, reclaim_id);
}

int fdstore_remove_name(const char *name) {
        if (!fdstore_available())
                return -EOPNOTSUPP;
        return sd_notifyf(false, "FDSTOREREMOVE=1\nFDNAME=%s", name);
}

bool fdstore_name_is_ours(const char *name) {
        return name && (has_prefix(name, FDSTORE_PREFIX) || has_prefix(name, FDSTORE_PREFIX_LEGACY));
}

bool reclaim_hex_is_valid(const char *s) {
        return s && strlen(s) == RECLAIM_ID_LEN && strspn(s, "0123456789abcdef") == RECLAIM_ID_LEN;
}

static void hex_encode(const uint8_t *b, size_t n, char *ret) {
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                ret[2 * i] = digits[b[i] >> 4];
                ret[2 * i + 1] = digits[b[i] & 15];
        }
        ret[2 * n] = 0;
}

void reclaim_id_from_token(const char *token, char ret_reclaim_id[static RECLAIM_ID_LEN + 1]) {
        uint8_t d[SHA256_DIGEST_SIZE];

        sha256(token, strlen(token), d);
        hex_encode(d, RECLAIM_ID_LEN / 2, ret_reclaim_id);
        explicit_bzero(d, sizeof(d));
}

int fdstore_parse_name(const char *name, uid_t *ret_uid, char ret_reclaim_id[static RECLAIM_ID_LEN + 1],
                       bool *ret_legacy) {
        unsigned long uid;
        const char *dot;
        bool legacy;
        char *end;

        if (!name)
                return -EINVAL;
        if (has_prefix(name, FDSTORE_PREFIX)) {
                name += strlen(FDSTORE_PREFIX);
                legacy = false;
        } else if (has_prefix(name, FDSTORE_PREFIX_LEGACY)) {
                name += strlen(FDSTORE_PREFIX_LEGACY);
                legacy = true;
        } else
                return -EINVAL;
        if (name[0] < '0' || name[0] > '9')
                return -EINVAL;
        errno = 0;
        uid = strtoul(name, &end, 10);
        if (errno != 0 || end == name || *end != '.' || uid >= UINT32_MAX)
                return -EINVAL;
        dot = end + 1;
        /* A token and a reclaim id look alike: 32 lowercase hex digits either way. */
        if (!reclaim_hex_is_valid(dot))
                return -EINVAL;

        *ret_uid = (uid_t) uid;
        if (legacy)
                reclaim_id_from_token(dot, ret_reclaim_id);
        else
                memcpy(ret_reclaim_id, dot, RECLAIM_ID_LEN + 1);
        *ret_legacy = legacy;
        return 0;
}

int reclaim_token_new(char ret_token[static RECLAIM_TOKEN_LEN + 1], char ret_reclaim_id[static RECLAIM_ID_LEN + 1]) {
        uint8_t b[RECLAIM_TOKEN_LEN / 2];
        ssize_t n;

        n = getrandom(b, sizeof(b), 0);
        if (n < 0)
                return negative_errno();
        if ((size_t) n != sizeof(b))
                return -EIO;
        hex_encode(b, sizeof(b), ret_token);
        explicit_bzero(b, sizeof(b));
        reclaim_id_from_token(ret_token, ret_reclaim_id);
        return 0;
}
