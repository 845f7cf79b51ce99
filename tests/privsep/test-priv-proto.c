/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The channel's wire rules (proto/tsm-priv.h), with boundary cases generated for every message
 * type from the type table itself, as iommufd's selftest does for each ioctl (cmd_length):
 * min_size - 1, exact, size + 1 with a non-zero and with a zero extra byte, and every header,
 * payload, length and fd rule. Also: every backend's scope limits fit the channel.
 * Runs in: tests.
 */

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "backend.h"
#include "macro.h"
#include "harness.h"
#include "tsm-priv.h"

#define BUF_SIZE (TSM_PRIV_DATAGRAM_MAX + 64)

static _Alignas(8) uint8_t buf[BUF_SIZE];

/* The sender a type has, and one it does not. */
static TsmPrivSender sender_of(const TsmPrivTypeDesc *d) {
        return d->sender & TSM_PRIV_FROM_WORKER ? TSM_PRIV_FROM_WORKER : TSM_PRIV_FROM_MONITOR;
}

static TsmPrivSender other_sender(const TsmPrivTypeDesc *d) {
        return d->sender & TSM_PRIV_FROM_WORKER ? TSM_PRIV_FROM_MONITOR : TSM_PRIV_FROM_WORKER;
}

/* A datagram of type with a fixed part of size bytes (the header says so) and payload_len
 * bytes of payload. The type's own fields and the payload carry a pattern, so copies can be
 * compared (tsm_priv_check() leaves the meaning of fields to the receiver); bytes past the
 * type's size, a newer sender's extension, are zero. */
static size_t build(uint32_t type, uint32_t size, uint32_t payload_len) {
        const TsmPrivTypeDesc *d = tsm_priv_type_desc(type);
        struct tsm_priv_hdr h = { .size = size, .type = type, .payload_len = payload_len };
        size_t known = MIN((size_t) size, d ? (size_t) d->size : sizeof(h));

        assert((size_t) size + payload_len <= sizeof(buf));
        memset(buf, 0, sizeof(buf));
        for (size_t i = sizeof(h); i < known; i++)
                buf[i] = (uint8_t) (i * 7 + 1);
        for (size_t i = size; i < (size_t) size + payload_len; i++)
                buf[i] = (uint8_t) (i * 13 + 5);
        memcpy(buf, &h, sizeof(h));
        return (size_t) size + payload_len;
}

static void set_hdr(size_t offset, uint32_t value) {
        memcpy(buf + offset, &value, sizeof(value));
}

static int check(size_t len, size_t n_fds, TsmPrivSender sender, void *ret, size_t ret_size,
                 const void **ret_payload) {
        const char *reason = NULL;
        int r;

        r = tsm_priv_check(buf, len, n_fds, sender, ret, ret_size, ret_payload, &reason);
        if (r < 0 && !reason)
                TEST_FAIL("refused (%s) without a reason", strerror(-r));
        return r;
}

/* As the type's own sender would send it, with the fds it needs. */
static int check_type(const TsmPrivTypeDesc *d, size_t len, void *ret, const void **ret_payload) {
        return check(len, d->n_fds, sender_of(d), ret, d->size, ret_payload);
}

#define FOREACH_TYPE(t, d)                                                                         \
        for (uint32_t t = 1; t < _TSM_PRIV_TYPE_MAX; t++)                                          \
                for (const TsmPrivTypeDesc *d = tsm_priv_type_desc(t); d; d = NULL)

#define EXPECT(t, expr, e)                                                                         \
        do {                                                                                       \
                int _r_ = (expr);                                                                  \
                if (_r_ != (e))                                                                    \
                        TEST_FAIL("%s: %s: expected %d, got %d", tsm_priv_type_to_string(t), #expr, \
                                  (int) (e), _r_);                                                 \
        } while (0)

TEST(type_table) {
        size_t n = 0;

        ASSERT_NULL(tsm_priv_type_desc(0));
        ASSERT_NULL(tsm_priv_type_desc(_TSM_PRIV_TYPE_MAX));
        ASSERT_NULL(tsm_priv_type_desc(UINT32_MAX));
        ASSERT_NULL(tsm_priv_type_to_string(0));
        FOREACH_TYPE(t, d) {
                n++;
                ASSERT_STREQ(tsm_priv_type_to_string(t), d->name);
                ASSERT_GE(d->size, sizeof(struct tsm_priv_hdr));
                ASSERT_LE(d->min_size, d->size);
                ASSERT_GE(d->min_size, sizeof(struct tsm_priv_hdr));
                ASSERT_LE(d->size, TSM_PRIV_FIXED_MAX);
                ASSERT_EQ(d->size % 8, 0); /* 64-bit aligned, no tail padding surprises */
                ASSERT_LE(d->max_payload, TSM_PRIV_PAYLOAD_MAX);
                ASSERT_LE(d->n_fds, 1);
                ASSERT_TRUE(d->sender == TSM_PRIV_FROM_MONITOR || d->sender == TSM_PRIV_FROM_WORKER);
        }
        /* Every value of the enum has an entry: no holes. */
        ASSERT_EQ(n, _TSM_PRIV_TYPE_MAX - 1);
}

TEST(exact_size_accepted) {
        FOREACH_TYPE(t, d) {
                _Alignas(8) uint8_t ret[TSM_PRIV_FIXED_MAX];
                const void *payload = (const void *) 1;
                size_t len = build(t, d->size, 0);

                EXPECT(t, check_type(d, len, ret, &payload), 0);
                ASSERT_MEMEQ(ret, buf, d->size);
                ASSERT_NULL(payload);
                /* ret_payload is optional. */
                EXPECT(t, check_type(d, len, ret, NULL), 0);
        }
}

TEST(min_size_minus_one) {
        FOREACH_TYPE(t, d) {
                _Alignas(8) uint8_t ret[TSM_PRIV_FIXED_MAX];

                EXPECT(t, check_type(d, build(t, d->min_size - 1, 0), ret, NULL), -EBADMSG);
        }
}

TEST(size_plus_one) {
        FOREACH_TYPE(t, d) {
                _Alignas(8) uint8_t exact[TSM_PRIV_FIXED_MAX], longer[TSM_PRIV_FIXED_MAX];
                size_t len;

                /* A newer sender's extension we do not know, set: refused. */
                len = build(t, d->size + 1, 0);
                buf[d->size] = 0x01;
                EXPECT(t, check_type(d, len, longer, NULL), -E2BIG);

                /* The same extension, zero: accepted, and equal to the exact message except for the
                 * size the header states. */
                EXPECT(t, check_type(d, build(t, d->size, 0), exact, NULL), 0);
                len = build(t, d->size + 1, 0);
                buf[d->size] = 0;
                EXPECT(t, check_type(d, len, longer, NULL), 0);
                ASSERT_EQ(((struct tsm_priv_hdr *) longer)->size, d->size + 1);
                ((struct tsm_priv_hdr *) longer)->size = d->size;
                ASSERT_MEMEQ(exact, longer, d->size);

                /* The longest fixed part any message may have, zero-extended: still fine. */
                EXPECT(t, check_type(d, build(t, TSM_PRIV_FIXED_MAX, 0), longer, NULL), 0);
                len = build(t, TSM_PRIV_FIXED_MAX, 0);
                buf[TSM_PRIV_FIXED_MAX - 1] = 0x80;
                EXPECT(t, check_type(d, len, longer, NULL), -E2BIG);
                /* Beyond it, refused whatever it holds. */
                EXPECT(t, check_type(d, build(t, TSM_PRIV_FIXED_MAX + 1, 0), longer, NULL),
                       -EBADMSG);
        }
}

TEST(header_flags_and_reserved) {
        FOREACH_TYPE(t, d) {
                _Alignas(8) uint8_t ret[TSM_PRIV_FIXED_MAX];
                size_t len;

                for (unsigned bit = 0; bit < 32; bit += 31) {
                        /* REPLY's one flag: the monitor keeps the answer (TSM_PRIV_REPLY_KEPT). */
                        bool allowed = t == TSM_PRIV_REPLY && (UINT32_C(1) << bit) == TSM_PRIV_REPLY_KEPT;

                        len = build(t, d->size, 0);
                        set_hdr(offsetof(struct tsm_priv_hdr, flags), UINT32_C(1) << bit);
                        EXPECT(t, check_type(d, len, ret, NULL), allowed ? 0 : -EBADMSG);

                        len = build(t, d->size, 0);
                        set_hdr(offsetof(struct tsm_priv_hdr, __reserved), UINT32_C(1) << bit);
                        EXPECT(t, check_type(d, len, ret, NULL), -EBADMSG);
                }
                /* The cookie is the sender's to choose. */
                len = build(t, d->size, 0);
                set_hdr(offsetof(struct tsm_priv_hdr, cookie), UINT32_MAX);
                EXPECT(t, check_type(d, len, ret, NULL), 0);
                ASSERT_EQ(((struct tsm_priv_hdr *) ret)->cookie, UINT32_MAX);
        }
}

TEST(unknown_type) {
        static const uint32_t unknown[] = {
                0, _TSM_PRIV_TYPE_MAX, _TSM_PRIV_TYPE_MAX + 1, 0x100, UINT32_MAX,
        };
        uint8_t ret[TSM_PRIV_FIXED_MAX];

        for (size_t i = 0; i < ELEMENTSOF(unknown); i++)
                for (int s = TSM_PRIV_FROM_MONITOR; s <= TSM_PRIV_FROM_WORKER; s <<= 1) {
                        size_t len = build(unknown[i], sizeof(struct tsm_priv_hdr), 0);
                        if (check(len, 0, s, ret, sizeof(struct tsm_priv_hdr), NULL) != -EOPNOTSUPP)
                                TEST_FAIL("type %" PRIu32 " not refused as unknown", unknown[i]);
                }
}

TEST(wrong_direction) {
        FOREACH_TYPE(t, d) {
                _Alignas(8) uint8_t ret[TSM_PRIV_FIXED_MAX];

                size_t len = build(t, d->size, 0);

                EXPECT(t, check(len, d->n_fds, other_sender(d), ret, d->size, NULL), -EPROTO);
        }
}

TEST(payload) {
        FOREACH_TYPE(t, d) {
                _Alignas(8) uint8_t ret[TSM_PRIV_FIXED_MAX];
                const void *payload = NULL;

                if (d->max_payload == 0) {
                        /* No payload where none belongs, even one byte. */
                        EXPECT(t, check_type(d, build(t, d->size, 1), ret, NULL), -EPROTO);
                        continue;
                }
                EXPECT(t, check_type(d, build(t, d->size, d->max_payload), ret, &payload), 0);
                ASSERT_TRUE(payload == buf + d->size);
                ASSERT_EQ(((struct tsm_priv_hdr *) ret)->payload_len, d->max_payload);
                EXPECT(t, check_type(d, build(t, d->size, 1), ret, &payload), 0);
                ASSERT_TRUE(payload == buf + d->size);
                EXPECT(t, check_type(d, build(t, d->size, d->max_payload + 1), ret, NULL),
                       -EPROTO);
                /* A payload after a zero-extended fixed part starts where the sender says. */
                EXPECT(t, check_type(d, build(t, d->size + 8, 16), ret, &payload), 0);
                ASSERT_TRUE(payload == buf + d->size + 8);
        }
}

TEST(datagram_length_mismatch) {
        FOREACH_TYPE(t, d) {
                _Alignas(8) uint8_t ret[TSM_PRIV_FIXED_MAX];
                uint32_t pl = d->max_payload > 0 ? 4 : 0;
                size_t len = build(t, d->size, pl);

                EXPECT(t, check_type(d, len + 1, ret, NULL), -EBADMSG);
                EXPECT(t, check_type(d, len - 1, ret, NULL), -EBADMSG);
                /* The header says more payload than came. */
                len = build(t, d->size, pl);
                set_hdr(offsetof(struct tsm_priv_hdr, payload_len), pl + 1);
                EXPECT(t, check_type(d, len, ret, NULL), d->max_payload > 0 ? -EBADMSG : -EPROTO);
                /* Sizes that would wrap a 32-bit sum. */
                len = build(t, d->size, 0);
                set_hdr(offsetof(struct tsm_priv_hdr, size), UINT32_MAX);
                EXPECT(t, check_type(d, len, ret, NULL), -EBADMSG);
                /* Shorter than a header at all. */
                EXPECT(t, check_type(d, sizeof(struct tsm_priv_hdr) - 1, ret, NULL), -EBADMSG);
                EXPECT(t, check_type(d, 0, ret, NULL), -EBADMSG);
        }
}

TEST(fds) {
        FOREACH_TYPE(t, d) {
                _Alignas(8) uint8_t ret[TSM_PRIV_FIXED_MAX];
                size_t len = build(t, d->size, 0);

                if (d->n_fds > 0)
                        EXPECT(t, check(len, d->n_fds - 1, sender_of(d), ret, d->size, NULL), -EPROTO);
                EXPECT(t, check(len, d->n_fds + 1, sender_of(d), ret, d->size, NULL),
                       t == TSM_PRIV_REPLY ? 0 : -EPROTO); /* a reply's fd is optional */
                EXPECT(t, check(len, d->n_fds + 2, sender_of(d), ret, d->size, NULL), -EPROTO);
        }
}

TEST(receiver_struct_mismatch) {
        FOREACH_TYPE(t, d) {
                _Alignas(8) uint8_t ret[TSM_PRIV_FIXED_MAX];
                size_t len = build(t, d->size, 0);

                EXPECT(t, check(len, d->n_fds, sender_of(d), ret, d->size - 8, NULL), -EPROTO);
                EXPECT(t, check(len, d->n_fds, sender_of(d), ret, d->size + 8, NULL), -EPROTO);
        }
}

TEST(init) {
        FOREACH_TYPE(t, d) {
                _Alignas(8) uint8_t msg[TSM_PRIV_FIXED_MAX], ret[TSM_PRIV_FIXED_MAX];

                memset(msg, 0xaa, sizeof(msg));
                tsm_priv_init(msg, t, 42, 0);
                memcpy(buf, msg, d->size);
                EXPECT(t, check_type(d, d->size, ret, NULL), 0);
                ASSERT_EQ(((struct tsm_priv_hdr *) ret)->cookie, 42);
                for (size_t i = sizeof(struct tsm_priv_hdr); i < d->size; i++)
                        ASSERT_EQ(msg[i], 0);
        }
}

TEST(strings) {
        char f[8];

        memset(f, 0, sizeof(f));
        ASSERT_TRUE(tsm_priv_check_string(f, sizeof(f))); /* empty */
        memcpy(f, "abc", 3);
        ASSERT_TRUE(tsm_priv_check_string(f, sizeof(f)));
        memcpy(f, "abcdefg", 8);
        ASSERT_TRUE(tsm_priv_check_string(f, sizeof(f))); /* NUL in the last byte */
        memset(f, 'x', sizeof(f));
        ASSERT_FALSE(tsm_priv_check_string(f, sizeof(f))); /* no NUL */
        memset(f, 0, sizeof(f));
        f[0] = 'a';
        f[7] = 'z';
        ASSERT_FALSE(tsm_priv_check_string(f, sizeof(f))); /* junk after the NUL */
        memset(f, 0, sizeof(f));
        f[1] = 'a';
        ASSERT_FALSE(tsm_priv_check_string(f, sizeof(f))); /* empty, then junk */
}

/* Every guest request and response any backend allows fits through the channel. */
TEST(backend_scope_limits) {
        for (int t = 0; t < _TSM_BACKEND_TYPE_MAX; t++) {
                const TsmBackendDesc *b = tsm_backend_desc((TsmBackendType) t);

                ASSERT_NOT_NULL(b);
                ASSERT_GE(b->n_scopes, 1);
                for (size_t i = 0; i < b->n_scopes; i++) {
                        const TsmScopeDesc *s = &b->scopes[i];

                        /* The monitor receives the name in a fixed field. */
                        ASSERT_LE(strlen(s->name) + 1, TSM_PRIV_NAME_MAX);
                        if (s->max_request > TSM_PRIV_PAYLOAD_MAX || s->max_response > TSM_PRIV_PAYLOAD_MAX)
                                TEST_FAIL("%s scope %s: max_request %" PRIu32 ", max_response %" PRIu32
                                          " exceed TSM_PRIV_PAYLOAD_MAX %u",
                                          tsm_backend_type_to_string((TsmBackendType) t), s->name,
                                          s->max_request, s->max_response, TSM_PRIV_PAYLOAD_MAX);
                }
        }
        ASSERT_LE(TSM_PRIV_DATAGRAM_MAX, TSM_PRIV_FIXED_MAX + TSM_PRIV_PAYLOAD_MAX);
}

/* send and receive over a real socketpair: boundaries, fds, truncation, too many fds. */
TEST(send_receive) {
        _cleanup_free_ uint8_t *big = malloc(TSM_PRIV_DATAGRAM_MAX + 1);
        struct tsm_priv_reply rep, got;
        const void *payload;
        const char *reason;
        uint8_t data[100];
        struct stat a, b;
        int sv[2], fds[1], two[2];
        size_t n_fds;
        ssize_t n;

        ASSERT_NOT_NULL(big);
        ASSERT_OK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
        ASSERT_ERRNO(tsm_priv_receive(sv[1], buf, fds, 1, &n_fds), EAGAIN);

        memset(data, 0x5a, sizeof(data));
        tsm_priv_init(&rep, TSM_PRIV_REPLY, 7, sizeof(data));
        rep.result = -ENOENT;
        rep.value = 3;
        ASSERT_ERRNO(tsm_priv_send(sv[0], &rep, data, sizeof(data) - 1, -EBADF), EINVAL); /* len mismatch */
        ASSERT_OK(tsm_priv_send(sv[0], &rep, data, sizeof(data), sv[0]));
        n = tsm_priv_receive(sv[1], buf, fds, 1, &n_fds);
        ASSERT_EQ(n, sizeof(rep) + sizeof(data));
        ASSERT_EQ(n_fds, 1);
        ASSERT_OK(fstat(sv[0], &a));
        ASSERT_OK(fstat(fds[0], &b));
        ASSERT_EQ(a.st_ino, b.st_ino);
        ASSERT_TRUE(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
        close(fds[0]);
        ASSERT_OK(tsm_priv_check(buf, (size_t) n, 0, TSM_PRIV_FROM_MONITOR, &got, sizeof(got), &payload,
                                 &reason));
        ASSERT_EQ(got.result, -ENOENT);
        ASSERT_EQ(got.value, 3);
        ASSERT_EQ(got.hdr.cookie, 7);
        ASSERT_MEMEQ(payload, data, sizeof(data));

        /* Longer than any datagram: truncated, reported, fds closed. */
        memset(big, 0, TSM_PRIV_DATAGRAM_MAX + 1);
        ASSERT_EQ(send(sv[0], big, TSM_PRIV_DATAGRAM_MAX + 1, 0), TSM_PRIV_DATAGRAM_MAX + 1);
        ASSERT_ERRNO(tsm_priv_receive(sv[1], big, fds, 1, &n_fds), EMSGSIZE);
        ASSERT_EQ(n_fds, 0);

        /* Two fds where one is the most: refused, both closed. */
        two[0] = sv[0];
        two[1] = sv[0];
        {
                union {
                        struct cmsghdr cmsg;
                        uint8_t b[CMSG_SPACE(sizeof(two))];
                } control = {};
                struct iovec iov = { .iov_base = &rep, .iov_len = sizeof(rep) };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                                     .msg_controllen = sizeof(control.b) };

                tsm_priv_init(&rep, TSM_PRIV_REPLY, 0, 0);
                control.cmsg.cmsg_level = SOL_SOCKET;
                control.cmsg.cmsg_type = SCM_RIGHTS;
                control.cmsg.cmsg_len = CMSG_LEN(sizeof(two));
                memcpy(CMSG_DATA(&control.cmsg), two, sizeof(two));
                ASSERT_EQ(sendmsg(sv[0], &mh, 0), sizeof(rep));
        }
        ASSERT_ERRNO(tsm_priv_receive(sv[1], buf, fds, 1, &n_fds), EPROTO);
        ASSERT_EQ(n_fds, 0);

        /* End of file. */
        close(sv[0]);
        ASSERT_EQ(tsm_priv_receive(sv[1], buf, fds, 1, &n_fds), 0);
        close(sv[1]);
}

TEST_MAIN();
