/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* systemd's fd store for iommufd contexts. Runs in: monitor and worker (see fdstore.h). */

#include <stdio.h>
#include <sys/random.h>
#include <sys/socket.h>

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

int fdstore_put_name(int fd, const char *name) {
        char msg[128];
        int r;

        if (!fdstore_available())
                return -EOPNOTSUPP;
        snprintf(msg, sizeof(msg), "FDSTORE=1\nFDPOLL=0\nFDNAME=%s", name);
        r = sd_pid_notify_with_fds(0, false, msg, &fd, 1);
        if (r < 0)
                return r;
        return r == 0 ? -EOPNOTSUPP : 0;
}

int fdstore_remove_name(const char *name) {
        if (!fdstore_available())
                return -EOPNOTSUPP;
        return sd_notifyf(false, "FDSTOREREMOVE=1\nFDNAME=%s", name);
}

int fdstore_passed_fd(const char *name) {
        char **names = NULL;
        int n, fd = -ENOENT;

        n = sd_listen_fds_with_names(false, &names);
        if (n < 0)
                return n;
        for (int i = 0; i < n; i++) {
                if (fd < 0 && names && streq(names[i], name))
                        fd = SD_LISTEN_FDS_START + i;
                if (names)
                        free(names[i]);
        }
        free(names);
        return fd;
}

/* The carrier of a rename (fdstore.h): fd in flight on a datagram socket of its own, a file
 * description systemd has not seen. */
static int carrier_new(int fd, int *ret_carrier) {
        union {
                struct cmsghdr cmsg;
                uint8_t buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct iovec iov = { .iov_base = (char[]) { 'c' }, .iov_len = 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof(control.buf) };
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0)
                return negative_errno();
        control.cmsg.cmsg_level = SOL_SOCKET;
        control.cmsg.cmsg_type = SCM_RIGHTS;
        control.cmsg.cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(&control.cmsg), &fd, sizeof(int));
        if (sendmsg(sv[0], &mh, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) {
                int r = errno > 0 ? -errno : -EIO;

                safe_close(sv[0]);
                safe_close(sv[1]);
                return r;
        }
        safe_close(sv[0]);
        *ret_carrier = sv[1];
        return 0;
}

/* Stores a carrier of fd under name. */
static int put_carrier(int fd, const char *name) {
        _cleanup_close_ int carrier = -EBADF;
        char msg[192];
        int r;

        if (!fdstore_available())
                return -EOPNOTSUPP;
        r = carrier_new(fd, &carrier);
        if (r < 0)
                return r;
        /* Not polled: systemd would drop a socket that reports a hangup. */
        snprintf(msg, sizeof(msg), "FDSTORE=1\nFDPOLL=0\nFDNAME=%s", name);
        r = sd_pid_notify_with_fds(0, false, msg, &carrier, 1);
        if (r < 0)
                return r;
        return r == 0 ? -EOPNOTSUPP : 0;
}

int fdstore_put_moving(int fd, uid_t uid, const char *new_id, const char *old_id) {
        char name[128];

        snprintf(name, sizeof(name), FDSTORE_PREFIX "%u.%s.%s", (unsigned) uid, new_id, old_id);
        return put_carrier(fd, name);
}

int fdstore_remove_moving(uid_t uid, const char *new_id, const char *old_id) {
        if (!fdstore_available())
                return -EOPNOTSUPP;
        return sd_notifyf(false, "FDSTOREREMOVE=1\nFDNAME=" FDSTORE_PREFIX "%u.%s.%s", (unsigned) uid, new_id, old_id);
}

/* "ctxid.<uid>.<reclaim id>[.<from>].shared" (fdstore.h). */
static void shared_name(uid_t uid, const char *reclaim_id, const char *from, char ret[static 128]) {
        snprintf(ret, 128, FDSTORE_PREFIX "%u.%s%s%s" FDSTORE_SHARED_SUFFIX, (unsigned) uid, reclaim_id,
                 isempty(from) ? "" : ".", strempty(from));
}

int fdstore_put_shared(int fd, uid_t uid, const char *reclaim_id, const char *from) {
        char name[128];

        shared_name(uid, reclaim_id, from, name);
        return put_carrier(fd, name);
}

int fdstore_remove_shared(uid_t uid, const char *reclaim_id, const char *from) {
        char name[128];

        shared_name(uid, reclaim_id, from, name);
        return fdstore_remove_name(name);
}

int fdstore_carried_fd(int carrier, int *ret_fd) {
        union {
                struct cmsghdr cmsg;
                uint8_t buf[CMSG_SPACE(sizeof(int))];
        } control;
        char byte;
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof(control.buf) };
        struct cmsghdr *c;
        int fd;

        /* Peeked, not taken: the fd stays in the carrier, which systemd holds too, until the
         * context is stored under its new name. The kernel gives a peek its own copy. */
        if (recvmsg(carrier, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0)
                return negative_errno();
        c = CMSG_FIRSTHDR(&mh);
        if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int))) {
                /* Whatever came (more fds than one cannot: the buffer holds one), it is closed. */
                for (; c; c = CMSG_NXTHDR(&mh, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                                for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                                        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                                        safe_close(fd);
                                }
                return -EBADMSG;
        }
        if (mh.msg_flags & MSG_CTRUNC) {
                memcpy(&fd, CMSG_DATA(c), sizeof(int));
                safe_close(fd);
                return -EBADMSG;
        }
        memcpy(ret_fd, CMSG_DATA(c), sizeof(int));
        return 0;
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

/* "<uid>.<rest>" after a prefix: the uid, and where the rest starts. */
static int parse_uid(const char *s, uid_t *ret_uid, const char **ret_rest) {
        unsigned long uid;
        char *end;

        if (s[0] < '0' || s[0] > '9')
                return -EINVAL;
        errno = 0;
        uid = strtoul(s, &end, 10);
        if (errno != 0 || end == s || *end != '.' || uid >= UINT32_MAX)
                return -EINVAL;
        *ret_uid = (uid_t) uid;
        *ret_rest = end + 1;
        return 0;
}

int fdstore_parse_moving_name(const char *name, uid_t *ret_uid, char ret_new_id[static RECLAIM_ID_LEN + 1],
                              char ret_old_id[static RECLAIM_ID_LEN + 1]) {
        const char *rest;
        uid_t uid;

        if (!name || !has_prefix(name, FDSTORE_PREFIX))
                return -EINVAL;
        if (parse_uid(name + strlen(FDSTORE_PREFIX), &uid, &rest) < 0)
                return -EINVAL;
        if (strlen(rest) != 2 * RECLAIM_ID_LEN + 1 || rest[RECLAIM_ID_LEN] != '.' ||
            strspn(rest, "0123456789abcdef") != RECLAIM_ID_LEN ||
            !reclaim_hex_is_valid(rest + RECLAIM_ID_LEN + 1))
                return -EINVAL;
        *ret_uid = uid;
        memcpy(ret_new_id, rest, RECLAIM_ID_LEN);
        ret_new_id[RECLAIM_ID_LEN] = 0;
        memcpy(ret_old_id, rest + RECLAIM_ID_LEN + 1, RECLAIM_ID_LEN + 1);
        return 0;
}

int fdstore_parse_shared_name(const char *name, uid_t *ret_uid, char ret_reclaim_id[static RECLAIM_ID_LEN + 1],
                              char ret_from[static RECLAIM_ID_LEN + 1]) {
        const size_t suffix_len = strlen(FDSTORE_SHARED_SUFFIX);
        const char *rest;
        size_t n;
        uid_t uid;

        if (!name || !has_prefix(name, FDSTORE_PREFIX))
                return -EINVAL;
        if (parse_uid(name + strlen(FDSTORE_PREFIX), &uid, &rest) < 0)
                return -EINVAL;
        /* "<id>.shared" or "<id>.<from>.shared" */
        n = strlen(rest);
        if (n <= suffix_len || !streq(rest + n - suffix_len, FDSTORE_SHARED_SUFFIX))
                return -EINVAL;
        n -= suffix_len;
        if (n != RECLAIM_ID_LEN && (n != 2 * RECLAIM_ID_LEN + 1 || rest[RECLAIM_ID_LEN] != '.'))
                return -EINVAL;
        if (strspn(rest, "0123456789abcdef") != RECLAIM_ID_LEN ||
            (n > RECLAIM_ID_LEN && strspn(rest + RECLAIM_ID_LEN + 1, "0123456789abcdef") != RECLAIM_ID_LEN))
                return -EINVAL;
        *ret_uid = uid;
        memcpy(ret_reclaim_id, rest, RECLAIM_ID_LEN);
        ret_reclaim_id[RECLAIM_ID_LEN] = 0;
        if (n > RECLAIM_ID_LEN)
                memcpy(ret_from, rest + RECLAIM_ID_LEN + 1, RECLAIM_ID_LEN);
        ret_from[n > RECLAIM_ID_LEN ? RECLAIM_ID_LEN : 0] = 0;
        return 0;
}

int fdstore_parse_name(const char *name, uid_t *ret_uid, char ret_reclaim_id[static RECLAIM_ID_LEN + 1],
                       bool *ret_legacy) {
        const char *dot;
        bool legacy;
        uid_t uid;

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
        if (parse_uid(name, &uid, &dot) < 0)
                return -EINVAL;
        /* A token and a reclaim id look alike: 32 lowercase hex digits either way. */
        if (!reclaim_hex_is_valid(dot))
                return -EINVAL;

        *ret_uid = uid;
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
