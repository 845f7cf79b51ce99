/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Batched sending and receiving on the channel (proto/tsm-priv-batch.h): order across batch
 * boundaries, payloads, messages packed into datagrams and unpacked (tsm_priv_unpack()'s rules),
 * fds taken or closed, or not opened past a limit, every receive error per datagram, the
 * failure callback (which may queue more), and that a receive with datagram slots to spare
 * means the socket was empty. Runs in: tests.
 */

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "harness.h"
#include "macro.h"
#include "tsm-priv-batch.h"

/* Lets the test make the next allocation of a given size fail: glibc's allocator underneath,
 * so not where AddressSanitizer owns malloc and free. */
static size_t fail_malloc_of_size;
#ifndef HAVE_ASAN
extern void *__libc_malloc(size_t size);

void *malloc(size_t size) {
        if (size != 0 && size == fail_malloc_of_size) {
                fail_malloc_of_size = 0;
                errno = ENOMEM;
                return NULL;
        }
        return __libc_malloc(size);
}
#endif

static void channel(int sv[2]) {
        ASSERT_OK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
}

static struct tsm_priv_reply reply_msg(uint32_t cookie, uint32_t payload_len) {
        struct tsm_priv_reply m;

        tsm_priv_init(&m, TSM_PRIV_REPLY, cookie, payload_len);
        m.value = cookie * 3;
        return m;
}

static size_t n_open_fds(void) {
        size_t n = 0;

        for (int fd = 0; fd < 1024; fd++)
                n += fcntl(fd, F_GETFD) >= 0;
        return n;
}

/* Receives everything there and checks cookies first..first+n-1 with their payloads. */
static void receive_all(TsmPrivInbox *in, int fd, uint32_t first, size_t n) {
        size_t got = 0;
        int k;

        do {
                k = tsm_priv_inbox_receive(in, fd);
                if (k == -EAGAIN)
                        break;
                ASSERT_GE(k, 1);
                ASSERT_LE((size_t) k, TSM_PRIV_BATCH_MAX * TSM_PRIV_PACK_MAX);
                for (size_t i = 0; i < (size_t) k; i++, got++) {
                        TsmPrivReceived *d = tsm_priv_inbox_get(in, i);
                        struct tsm_priv_reply r;
                        const void *payload;
                        const char *reason;
                        uint32_t cookie = first + (uint32_t) got;

                        ASSERT_GE(d->len, 1);
                        ASSERT_OK(tsm_priv_check(d->buf, (size_t) d->len, d->n_fds, TSM_PRIV_FROM_MONITOR, &r,
                                                 sizeof(r), &payload, &reason));
                        ASSERT_EQ(r.hdr.cookie, cookie);
                        ASSERT_EQ(r.value, cookie * 3);
                        ASSERT_EQ(r.hdr.payload_len, cookie % 100);
                        for (size_t b = 0; b < r.hdr.payload_len; b++)
                                ASSERT_EQ(((const uint8_t *) payload)[b], (uint8_t) (cookie + b));
                }
        } while (tsm_priv_inbox_more(in));
        ASSERT_EQ(got, n);
        ASSERT_ERRNO(tsm_priv_inbox_receive(in, fd), EAGAIN);
}

static void never_fails(int error, void *userdata) {
        TEST_FAIL("unexpected send failure: %s", strerror(-error));
}

TEST(order_across_batches) {
        _cleanup_(tsm_priv_outbox_freep) TsmPrivOutbox *o = NULL;
        _cleanup_(tsm_priv_inbox_freep) TsmPrivInbox *in = NULL;
        int sv[2];

        channel(sv);
        ASSERT_OK(tsm_priv_outbox_new(never_fails, &o));
        ASSERT_OK(tsm_priv_inbox_new(&in));
        ASSERT_ERRNO(tsm_priv_inbox_receive(in, sv[1]), EAGAIN);

        /* More than two batches: the outbox flushes itself when full, and keeps the order. */
        for (uint32_t c = 1; c <= 2 * TSM_PRIV_BATCH_MAX + 5; c++) {
                struct tsm_priv_reply m = reply_msg(c, c % 100);
                uint8_t payload[100];

                for (size_t b = 0; b < sizeof(payload); b++)
                        payload[b] = (uint8_t) (c + b);
                ASSERT_OK(tsm_priv_outbox_add(o, sv[0], &m, payload, c % 100, NULL));
                /* A copy was taken: the caller's buffers may change at once. */
                memset(payload, 0xee, sizeof(payload));
                ASSERT_LE(tsm_priv_outbox_size(o), TSM_PRIV_BATCH_MAX);
        }
        ASSERT_EQ(tsm_priv_outbox_size(o), 5);
        tsm_priv_outbox_flush(o, sv[0]);
        ASSERT_EQ(tsm_priv_outbox_size(o), 0);
        receive_all(in, sv[1], 1, 2 * TSM_PRIV_BATCH_MAX + 5);

        /* A full batch of datagrams: the receiver cannot know the socket is empty, asks once
         * more. Fewer: it knows. */
        for (uint32_t c = 1; c <= TSM_PRIV_BATCH_MAX; c++) {
                struct tsm_priv_reply m = reply_msg(c, 0);
                ASSERT_OK(tsm_priv_send(sv[0], &m, NULL, 0, -EBADF));
        }
        ASSERT_EQ(tsm_priv_inbox_receive(in, sv[1]), (int) TSM_PRIV_BATCH_MAX);
        ASSERT_TRUE(tsm_priv_inbox_more(in));
        ASSERT_ERRNO(tsm_priv_inbox_receive(in, sv[1]), EAGAIN);
        for (uint32_t c = 1; c <= TSM_PRIV_BATCH_MAX; c++) {
                struct tsm_priv_reply m = reply_msg(c, 0);
                ASSERT_OK(tsm_priv_outbox_add(o, sv[0], &m, NULL, 0, NULL));
        }
        tsm_priv_outbox_flush(o, sv[0]);
        ASSERT_EQ(tsm_priv_inbox_receive(in, sv[1]), (int) TSM_PRIV_BATCH_MAX);
        ASSERT_FALSE(tsm_priv_inbox_more(in));
        ASSERT_ERRNO(tsm_priv_inbox_receive(in, sv[1]), EAGAIN);

        /* A payload that does not match the header is refused before it is queued. */
        {
                struct tsm_priv_reply m = reply_msg(1, 10);
                ASSERT_ERRNO(tsm_priv_outbox_add(o, sv[0], &m, "x", 1, NULL), EINVAL);
                ASSERT_EQ(tsm_priv_outbox_size(o), 0);
        }
        safe_close(sv[0]);
        safe_close(sv[1]);
}

/* The lengths of the datagrams waiting on fd, read raw (and dropped); returns how many. */
static size_t raw_datagrams(int fd, size_t *lens, size_t max) {
        _cleanup_free_ uint8_t *buf = malloc(TSM_PRIV_DATAGRAM_MAX);
        size_t n = 0;
        ssize_t k;

        ASSERT_NOT_NULL(buf);
        while ((k = recv(fd, buf, TSM_PRIV_DATAGRAM_MAX, MSG_DONTWAIT | MSG_TRUNC)) >= 0) {
                ASSERT_TRUE(n < max);
                lens[n++] = (size_t) k;
        }
        ASSERT_EQ(errno, EAGAIN);
        return n;
}

static size_t aligned(size_t n) {
        return DIV_ROUND_UP(n, TSM_PRIV_PACK_ALIGN) * TSM_PRIV_PACK_ALIGN;
}

TEST(queued_messages_leave_packed) {
        _cleanup_(tsm_priv_outbox_freep) TsmPrivOutbox *o = NULL;
        _cleanup_(tsm_priv_inbox_freep) TsmPrivInbox *in = NULL;
        _cleanup_free_ uint8_t *buf = malloc(TSM_PRIV_DATAGRAM_MAX);
        size_t lens[TSM_PRIV_BATCH_MAX], end = 0;
        int sv[2];

        ASSERT_NOT_NULL(buf);
        channel(sv);
        ASSERT_OK(tsm_priv_outbox_new(never_fails, &o));
        ASSERT_OK(tsm_priv_inbox_new(&in));

        /* A full outbox of small messages is one datagram: each message at an aligned offset,
         * zeros between (payloads of 0..3 bytes). */
        for (uint32_t c = 1; c <= TSM_PRIV_BATCH_MAX; c++) {
                struct tsm_priv_reply m = reply_msg(c, c % 4);
                uint8_t payload[3] = { (uint8_t) c, (uint8_t) (c + 1), (uint8_t) (c + 2) };

                ASSERT_OK(tsm_priv_outbox_add(o, sv[0], &m, payload, m.hdr.payload_len, NULL));
                end = aligned(end) + sizeof(m) + c % 4;
        }
        tsm_priv_outbox_flush(o, sv[0]);
        ASSERT_EQ(recv(sv[1], buf, TSM_PRIV_DATAGRAM_MAX, MSG_DONTWAIT | MSG_PEEK), (ssize_t) end);
        for (size_t at = 0, c = 1; at < end; at = aligned(at + sizeof(struct tsm_priv_reply) + c % 4), c++) {
                struct tsm_priv_hdr h;

                memcpy(&h, buf + at, sizeof(h));
                ASSERT_EQ(h.cookie, (uint32_t) c);
                for (size_t z = at + sizeof(struct tsm_priv_reply) + c % 4; z < MIN(aligned(z), end); z++)
                        ASSERT_EQ(buf[z], 0);
        }
        ASSERT_EQ(tsm_priv_inbox_receive(in, sv[1]), (int) TSM_PRIV_BATCH_MAX);
        ASSERT_FALSE(tsm_priv_inbox_more(in));
        for (size_t i = 0; i < TSM_PRIV_BATCH_MAX; i++) {
                TsmPrivReceived *d = tsm_priv_inbox_get(in, i);
                struct tsm_priv_reply r;
                const uint8_t *payload;
                const char *reason;

                ASSERT_EQ((uintptr_t) d->buf % TSM_PRIV_PACK_ALIGN, 0u);
                ASSERT_OK(tsm_priv_check(d->buf, (size_t) d->len, d->n_fds, TSM_PRIV_FROM_MONITOR, &r, sizeof(r),
                                         (const void **) &payload, &reason));
                ASSERT_EQ(r.hdr.cookie, (uint32_t) i + 1);
                for (size_t b = 0; b < r.hdr.payload_len; b++)
                        ASSERT_EQ(payload[b], (uint8_t) (i + 1 + b));
        }
        ASSERT_ERRNO(tsm_priv_inbox_receive(in, sv[1]), EAGAIN);

        /* Large ones fill datagrams up to the most a receiver takes, in order. */
        {
                _cleanup_free_ uint8_t *payload = calloc(1, TSM_PRIV_BATCH_PAYLOAD_MAX);
                const size_t each = sizeof(struct tsm_priv_reply) + TSM_PRIV_BATCH_PAYLOAD_MAX;
                const size_t per_datagram = TSM_PRIV_DATAGRAM_MAX / each;

                ASSERT_NOT_NULL(payload);
                for (uint32_t c = 1; c <= 20; c++) {
                        struct tsm_priv_reply m = reply_msg(c, TSM_PRIV_BATCH_PAYLOAD_MAX);
                        ASSERT_OK(tsm_priv_outbox_add(o, sv[0], &m, payload, m.hdr.payload_len, NULL));
                }
                tsm_priv_outbox_flush(o, sv[0]);
                ASSERT_EQ(raw_datagrams(sv[1], lens, ELEMENTSOF(lens)), 2u);
                ASSERT_EQ(lens[0], per_datagram * each);
                ASSERT_EQ(lens[1], (20 - per_datagram) * each);
        }
        safe_close(sv[0]);
        safe_close(sv[1]);
}

TEST(owned_messages_are_queued_as_they_are) {
        _cleanup_(tsm_priv_outbox_freep) TsmPrivOutbox *o = NULL;
        _cleanup_(tsm_priv_inbox_freep) TsmPrivInbox *in = NULL;
        struct tsm_priv_reply *m;
        const size_t big = TSM_PRIV_BATCH_PAYLOAD_MAX + 1;
        int sv[2];

        channel(sv);
        ASSERT_OK(tsm_priv_outbox_new(never_fails, &o));
        ASSERT_OK(tsm_priv_inbox_new(&in));

        /* Queued, not copied: what the block says at the flush goes out; the outbox frees it. */
        ASSERT_NOT_NULL(m = malloc(sizeof(*m) + 3));
        *m = reply_msg(1, 3);
        memcpy(m + 1, "abc", 3);
        ASSERT_OK(tsm_priv_outbox_add_owned(o, sv[0], m, NULL));
        m->value = 77;
        tsm_priv_outbox_flush(o, sv[0]);
        ASSERT_EQ(tsm_priv_inbox_receive(in, sv[1]), 1);
        {
                struct tsm_priv_reply r;
                const void *payload;
                const char *reason;

                ASSERT_OK(tsm_priv_check(tsm_priv_inbox_get(in, 0)->buf, (size_t) tsm_priv_inbox_get(in, 0)->len, 0,
                                         TSM_PRIV_FROM_MONITOR, &r, sizeof(r), &payload, &reason));
                ASSERT_EQ(r.value, 77u);
                ASSERT_MEMEQ(payload, "abc", 3);
        }

        /* Too large to batch: sent at once, and freed; refused, it stays the caller's. */
        ASSERT_NOT_NULL(m = calloc(1, sizeof(*m) + big));
        *m = reply_msg(2, big);
        ASSERT_OK(tsm_priv_outbox_add_owned(o, sv[0], m, NULL));
        ASSERT_EQ(tsm_priv_inbox_receive(in, sv[1]), 1);
        ASSERT_EQ((size_t) tsm_priv_inbox_get(in, 0)->len, sizeof(*m) + big);
        safe_close(sv[1]);
        ASSERT_NOT_NULL(m = calloc(1, sizeof(*m) + big));
        *m = reply_msg(3, big);
        ASSERT_ERRNO(tsm_priv_outbox_add_owned(o, sv[0], m, NULL), EPIPE);
        free(m);
        safe_close(sv[0]);
}

/* n messages of type REPLY, payload_len bytes each, packed into buf as an outbox would. */
static size_t pack(uint8_t *buf, size_t n, uint32_t payload_len) {
        size_t end = 0;

        for (size_t i = 0; i < n; i++) {
                struct tsm_priv_reply m = reply_msg((uint32_t) i + 1, payload_len);

                memset(buf + end, 0, aligned(end) - end);
                end = aligned(end);
                memcpy(buf + end, &m, sizeof(m));
                memset(buf + end + sizeof(m), 0xaa, payload_len);
                end += sizeof(m) + payload_len;
        }
        return end;
}

static bool message_ok(const uint8_t *buf, TsmPrivSpan s) {
        struct tsm_priv_reply r;
        const char *reason;

        return tsm_priv_check(buf + s.offset, s.len, 0, TSM_PRIV_FROM_MONITOR, &r, sizeof(r), NULL, &reason) >= 0;
}

TEST(unpack_splits_only_what_the_rules_allow) {
        _Alignas(8) uint8_t buf[64 * sizeof(struct tsm_priv_reply)];
        TsmPrivSpan spans[TSM_PRIV_PACK_MAX];
        size_t len;

        /* Two messages of 35 bytes: the second at 40, after five zeros. */
        len = pack(buf, 2, 3);
        ASSERT_EQ(len, 75u);
        ASSERT_EQ(tsm_priv_unpack(buf, len, spans), 2u);
        ASSERT_EQ(spans[0].offset, 0u);
        ASSERT_EQ(spans[0].len, 35u);
        ASSERT_EQ(spans[1].offset, 40u);
        ASSERT_EQ(spans[1].len, 35u);
        ASSERT_TRUE(message_ok(buf, spans[0]) && message_ok(buf, spans[1]));

        /* Anything but zeros between them: one message, the whole datagram, refused. */
        buf[37] = 1;
        ASSERT_EQ(tsm_priv_unpack(buf, len, spans), 1u);
        ASSERT_EQ(spans[0].len, len);
        ASSERT_FALSE(message_ok(buf, spans[0]));

        /* Zeros and no header after them: the same. */
        len = pack(buf, 1, 3);
        memset(buf + len, 0, 5 + sizeof(struct tsm_priv_hdr) - 1);
        ASSERT_EQ(tsm_priv_unpack(buf, len + 5, spans), 1u);
        ASSERT_EQ(spans[0].len, len + 5);
        ASSERT_FALSE(message_ok(buf, spans[0]));
        ASSERT_EQ(tsm_priv_unpack(buf, len + 5 + sizeof(struct tsm_priv_hdr) - 1, spans), 1u);
        ASSERT_FALSE(message_ok(buf, spans[0]));

        /* A message cut short at the end is refused for itself. */
        len = pack(buf, 2, 0);
        ASSERT_EQ(tsm_priv_unpack(buf, len - 1, spans), 2u);
        ASSERT_TRUE(message_ok(buf, spans[0]));
        ASSERT_FALSE(message_ok(buf, spans[1]));

        /* A header whose length lies outside the datagram, or is shorter than a header. */
        len = pack(buf, 2, 0);
        buf[offsetof(struct tsm_priv_hdr, payload_len)] = 200;
        ASSERT_EQ(tsm_priv_unpack(buf, len, spans), 1u);
        ASSERT_FALSE(message_ok(buf, spans[0]));
        len = pack(buf, 2, 0);
        memset(buf, 0, sizeof(struct tsm_priv_hdr));
        buf[0] = 8;
        ASSERT_EQ(tsm_priv_unpack(buf, len, spans), 1u);
        ASSERT_FALSE(message_ok(buf, spans[0]));

        /* The last slot takes the rest: one message more than allowed makes it two. */
        len = pack(buf, TSM_PRIV_PACK_MAX, 0);
        ASSERT_EQ(tsm_priv_unpack(buf, len, spans), (size_t) TSM_PRIV_PACK_MAX);
        ASSERT_TRUE(message_ok(buf, spans[TSM_PRIV_PACK_MAX - 1]));
        len = pack(buf, TSM_PRIV_PACK_MAX + 1, 0);
        ASSERT_EQ(tsm_priv_unpack(buf, len, spans), (size_t) TSM_PRIV_PACK_MAX);
        ASSERT_EQ(spans[TSM_PRIV_PACK_MAX - 1].len, 2 * sizeof(struct tsm_priv_reply));
        ASSERT_FALSE(message_ok(buf, spans[TSM_PRIV_PACK_MAX - 1]));
}

TEST(a_datagram_with_an_fd_is_one_message) {
        _cleanup_(tsm_priv_inbox_freep) TsmPrivInbox *in = NULL;
        _Alignas(8) uint8_t buf[2 * sizeof(struct tsm_priv_reply)];
        union {
                struct cmsghdr c;
                uint8_t b[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof(control.b) };
        int sv[2], devnull;

        channel(sv);
        ASSERT_OK(tsm_priv_inbox_new(&in));
        ASSERT_OK(devnull = open("/dev/null", O_RDONLY | O_CLOEXEC));
        ASSERT_EQ(pack(buf, 2, 0), sizeof(buf));
        control.c.cmsg_level = SOL_SOCKET;
        control.c.cmsg_type = SCM_RIGHTS;
        control.c.cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(&control.c), &devnull, sizeof(int));
        ASSERT_EQ(sendmsg(sv[0], &mh, 0), (ssize_t) sizeof(buf));
        safe_close(devnull);

        /* Two packed messages, but with an fd: which one it belongs to would be a guess. */
        ASSERT_EQ(tsm_priv_inbox_receive(in, sv[1]), 1);
        ASSERT_EQ(tsm_priv_inbox_get(in, 0)->len, (ssize_t) sizeof(buf));
        ASSERT_EQ(tsm_priv_inbox_get(in, 0)->n_fds, 1u);
        ASSERT_FALSE(message_ok(tsm_priv_inbox_get(in, 0)->buf, (TsmPrivSpan) { 0, sizeof(buf) }));
        safe_close(sv[0]);
        safe_close(sv[1]);
}

typedef struct Failures {
        TsmPrivOutbox *o;
        int fd;
        size_t n;
        uintptr_t last;
        int error;
        bool queue_more;
} Failures;

static Failures failures;

static void on_failed(int error, void *userdata) {
        /* Called in queue order, after the outbox is empty again. */
        ASSERT_EQ((uintptr_t) userdata, failures.last + 1);
        ASSERT_EQ(tsm_priv_outbox_size(failures.o), failures.queue_more ? failures.n : 0);
        failures.last = (uintptr_t) userdata;
        failures.error = error;
        failures.n++;
        if (failures.queue_more) {
                struct tsm_priv_reply m = reply_msg(1, 0);
                ASSERT_OK(tsm_priv_outbox_add(failures.o, failures.fd, &m, NULL, 0, (void *) (uintptr_t) 1000));
        }
}

TEST(failures_reach_the_callback) {
        _cleanup_(tsm_priv_outbox_freep) TsmPrivOutbox *o = NULL;
        int sv[2];

        channel(sv);
        ASSERT_OK(tsm_priv_outbox_new(on_failed, &o));
        failures = (Failures) { .o = o, .fd = sv[0], .queue_more = true };
        safe_close(sv[1]);

        /* The peer is gone: every message fails on its own, each once, in order; the callback
         * can queue more (which wait for the next flush). */
        for (uintptr_t i = 1; i <= 5; i++) {
                struct tsm_priv_reply m = reply_msg((uint32_t) i, 0);
                ASSERT_OK(tsm_priv_outbox_add(o, sv[0], &m, NULL, 0, (void *) i));
        }
        tsm_priv_outbox_flush(o, sv[0]);
        ASSERT_EQ(failures.n, 5);
        ASSERT_EQ(failures.error, -EPIPE);
        ASSERT_EQ(tsm_priv_outbox_size(o), 5);

        /* The rest of a socket error fails at once: the callback saw all five in one flush
         * above. Clearing drops what the callback queued without calling anyone. */
        tsm_priv_outbox_clear(o);
        ASSERT_EQ(tsm_priv_outbox_size(o), 0);
        tsm_priv_outbox_flush(o, sv[0]);
        ASSERT_EQ(failures.n, 5);
        safe_close(sv[0]);
}

TEST(only_a_message_too_long_fails_alone) {
        _cleanup_(tsm_priv_outbox_freep) TsmPrivOutbox *o = NULL;
        _cleanup_(tsm_priv_inbox_freep) TsmPrivInbox *in = NULL;
        _cleanup_free_ uint8_t *big = calloc(1, TSM_PRIV_PAYLOAD_MAX);
        int sv[2], small = 4096;

        ASSERT_NOT_NULL(big);
        channel(sv);
        /* A datagram longer than the send buffer can ever hold is EMSGSIZE, for it alone. */
        ASSERT_OK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)));
        ASSERT_OK(tsm_priv_outbox_new(never_fails, &o));
        ASSERT_OK(tsm_priv_inbox_new(&in));

        for (uint32_t i = 1; i <= 3; i++) {
                struct tsm_priv_reply m = reply_msg(i, i == 2 ? TSM_PRIV_PAYLOAD_MAX : 0);
                int r = tsm_priv_outbox_add(o, sv[0], &m, i == 2 ? big : NULL, m.hdr.payload_len, NULL);

                /* Too large to batch, so sent (and refused) at once. */
                if (i == 2)
                        ASSERT_ERRNO(r, EMSGSIZE);
                else
                        ASSERT_OK(r);
        }
        tsm_priv_outbox_flush(o, sv[0]);
        ASSERT_EQ(tsm_priv_inbox_receive(in, sv[1]), 2);
        for (size_t i = 0; i < 2; i++) {
                struct tsm_priv_hdr h;

                memcpy(&h, tsm_priv_inbox_get(in, i)->buf, sizeof(h));
                ASSERT_EQ(h.cookie, i == 0 ? 1u : 3u);
        }
        safe_close(sv[0]);
        safe_close(sv[1]);
}

TEST(large_payloads_go_at_once_in_order) {
        _cleanup_(tsm_priv_outbox_freep) TsmPrivOutbox *o = NULL;
        _cleanup_(tsm_priv_inbox_freep) TsmPrivInbox *in = NULL;
        _cleanup_free_ uint8_t *big = calloc(1, TSM_PRIV_BATCH_PAYLOAD_MAX + 1);
        struct tsm_priv_reply m;
        int sv[2];

        ASSERT_NOT_NULL(big);
        channel(sv);
        ASSERT_OK(tsm_priv_outbox_new(never_fails, &o));
        ASSERT_OK(tsm_priv_inbox_new(&in));

        /* Queued, queued, then one too large to copy: it leaves at once, after the two. */
        for (uint32_t c = 1; c <= 2; c++) {
                m = reply_msg(c, 0);
                ASSERT_OK(tsm_priv_outbox_add(o, sv[0], &m, NULL, 0, NULL));
        }
        ASSERT_ERRNO(tsm_priv_inbox_receive(in, sv[1]), EAGAIN);
        m = reply_msg(3, TSM_PRIV_BATCH_PAYLOAD_MAX + 1);
        ASSERT_OK(tsm_priv_outbox_add(o, sv[0], &m, big, m.hdr.payload_len, NULL));
        ASSERT_EQ(tsm_priv_outbox_size(o), 0);
        ASSERT_EQ(tsm_priv_inbox_receive(in, sv[1]), 3);
        for (size_t i = 0; i < 3; i++) {
                struct tsm_priv_hdr h;

                memcpy(&h, tsm_priv_inbox_get(in, i)->buf, sizeof(h));
                ASSERT_EQ(h.cookie, (uint32_t) i + 1);
                ASSERT_EQ((size_t) tsm_priv_inbox_get(in, i)->len, sizeof(m) + (i == 2 ? TSM_PRIV_BATCH_PAYLOAD_MAX + 1 : 0));
        }

        /* Its send error is the caller's, at once. */
        safe_close(sv[1]);
        ASSERT_ERRNO(tsm_priv_outbox_add(o, sv[0], &m, big, m.hdr.payload_len, NULL), EPIPE);
        safe_close(sv[0]);
}

TEST(out_of_memory_sends_at_once_in_order) {
        _cleanup_(tsm_priv_outbox_freep) TsmPrivOutbox *o = NULL;
        _cleanup_(tsm_priv_inbox_freep) TsmPrivInbox *in = NULL;
        struct tsm_priv_reply m;
        int sv[2];

#ifdef HAVE_ASAN
        SKIP("AddressSanitizer's malloc cannot be made to fail");
#endif
        channel(sv);
        ASSERT_OK(tsm_priv_outbox_new(never_fails, &o));
        ASSERT_OK(tsm_priv_inbox_new(&in));

        /* Queued, queued, then one whose copy cannot be made: it is sent, not failed (the
         * monitor would take a failed reply for a wedged worker), after the two. */
        for (uint32_t c = 1; c <= 2; c++) {
                m = reply_msg(c, c % 100);
                ASSERT_OK(tsm_priv_outbox_add(o, sv[0], &m, (uint8_t[]) { c, c + 1 }, c, NULL));
        }
        m = reply_msg(3, 3);
        fail_malloc_of_size = sizeof(m) + 3;
        ASSERT_OK(tsm_priv_outbox_add(o, sv[0], &m, (uint8_t[]) { 3, 4, 5 }, 3, NULL));
        ASSERT_EQ(fail_malloc_of_size, 0u); /* it was asked for, and refused */
        ASSERT_EQ(tsm_priv_outbox_size(o), 0);
        receive_all(in, sv[1], 1, 3);
        safe_close(sv[0]);
        safe_close(sv[1]);
}

TEST(fds_and_errors_per_datagram) {
        _cleanup_(tsm_priv_inbox_freep) TsmPrivInbox *in = NULL;
        struct tsm_priv_reply m = reply_msg(7, 0);
        size_t fds_before = n_open_fds();
        _cleanup_free_ uint8_t *big = malloc(TSM_PRIV_DATAGRAM_MAX + 1);
        int sv[2], devnull, taken;
        TsmPrivReceived *d;

        ASSERT_NOT_NULL(big);
        channel(sv);
        ASSERT_OK(tsm_priv_inbox_new(&in));
        ASSERT_OK(devnull = open("/dev/null", O_RDONLY | O_CLOEXEC));

        /* An fd taken, an fd left (closed by the next receive), a datagram too long, more fds
         * than any message carries, and end of file: one batch, each judged on its own. */
        ASSERT_OK(tsm_priv_send(sv[0], &m, NULL, 0, devnull));
        ASSERT_OK(tsm_priv_send(sv[0], &m, NULL, 0, devnull));
        memset(big, 0, TSM_PRIV_DATAGRAM_MAX + 1);
        ASSERT_EQ(send(sv[0], big, TSM_PRIV_DATAGRAM_MAX + 1, 0), (ssize_t) TSM_PRIV_DATAGRAM_MAX + 1);
        {
                int fds[5] = { devnull, devnull, devnull, devnull, devnull };
                union {
                        struct cmsghdr c;
                        uint8_t b[CMSG_SPACE(sizeof(fds))];
                } control = {};
                struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                                     .msg_controllen = sizeof(control.b) };

                control.c.cmsg_level = SOL_SOCKET;
                control.c.cmsg_type = SCM_RIGHTS;
                control.c.cmsg_len = CMSG_LEN(sizeof(fds));
                memcpy(CMSG_DATA(&control.c), fds, sizeof(fds));
                ASSERT_EQ(sendmsg(sv[0], &mh, 0), (ssize_t) sizeof(m));
        }
        safe_close(devnull);
        safe_close(sv[0]);

        ASSERT_GE(tsm_priv_inbox_receive(in, sv[1]), 5);
        d = tsm_priv_inbox_get(in, 0);
        ASSERT_EQ(d->len, (ssize_t) sizeof(m));
        ASSERT_EQ(d->n_fds, 1);
        taken = TAKE_FD(d->fds[0]);
        ASSERT_EQ(tsm_priv_inbox_get(in, 1)->n_fds, 1);
        ASSERT_ERRNO(tsm_priv_inbox_get(in, 2)->len, EMSGSIZE);
        ASSERT_ERRNO(tsm_priv_inbox_get(in, 3)->len, EPROTO);
        ASSERT_EQ(tsm_priv_inbox_get(in, 3)->n_fds, 0); /* all five closed already */
        ASSERT_EQ(tsm_priv_inbox_get(in, 4)->len, 0);

        /* The next receive closes the fd left in the last batch; the taken one is ours. */
        (void) tsm_priv_inbox_receive(in, sv[1]);
        tsm_priv_inbox_clear(in);
        ASSERT_EQ(n_open_fds(), fds_before + 2); /* sv[1] and the taken fd */
        safe_close(taken);
        safe_close(sv[1]);
        ASSERT_EQ(n_open_fds(), fds_before);
}

/* Sends m with n_fds copies of fd on it, in one datagram. */
static void send_with_fds_array(int channel, const struct tsm_priv_reply *m, const int *fds, size_t n_fds) {
        union {
                struct cmsghdr c;
                uint8_t b[CMSG_SPACE(sizeof(int) * TSM_PRIV_SCM_MAX_FD)];
        } control = {};
        struct iovec iov = { .iov_base = (void *) m, .iov_len = sizeof(*m) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = CMSG_SPACE(sizeof(int) * n_fds) };

        ASSERT_LE(n_fds, (size_t) TSM_PRIV_SCM_MAX_FD);
        control.c.cmsg_level = SOL_SOCKET;
        control.c.cmsg_type = SCM_RIGHTS;
        control.c.cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
        memcpy(CMSG_DATA(&control.c), fds, sizeof(int) * n_fds);
        ASSERT_EQ(sendmsg(channel, &mh, 0), (ssize_t) sizeof(*m));
}

static void send_with_fds(int channel, const struct tsm_priv_reply *m, int fd, size_t n_fds) {
        int fds[4] = { fd, fd, fd, fd };

        ASSERT_LE(n_fds, ELEMENTSOF(fds));
        send_with_fds_array(channel, m, fds, n_fds);
}

/* SECURITY: a receiver bounds the fds it takes (the monitor: those it must close that may wait
 * on a FUSE server), and never has the kernel drop one: the kernel releases a dropped file on
 * the receiving thread as the receive returns, which for a file of a FUSE file system may wait
 * on its server (tests/unit/test-fd-closer.c, an_fd_the_kernel_drops_waits_on_the_receiver).
 * Past tsm_priv_inbox_limit_fds() datagrams wait for the next receive; with no room at all, one
 * datagram comes, its fds closed (through the closer: fds_refused, and fds_refused_may_wait if
 * that close may wait) and its message whole, saying so (fds_lost), for the receiver to answer
 * as its own failure. A datagram's second fd is received and closed; its message is -EPROTO, the
 * sender's fault, as before. */
TEST(fds_past_the_limit_are_closed_not_dropped) {
        _cleanup_(tsm_priv_inbox_freep) TsmPrivInbox *in = NULL;
        struct tsm_priv_reply m = reply_msg(7, 0);
        size_t fds_before = n_open_fds();
        int sv[2], devnull, file, tcp, fds[TSM_PRIV_SCM_MAX_FD];
        TsmPrivReceived *d;

        channel(sv);
        ASSERT_OK(tsm_priv_inbox_new(&in));
        ASSERT_OK(devnull = open("/dev/null", O_RDONLY | O_CLOEXEC));
        /* No mount table read (no closer here): a file whose close may wait, as far as we know. */
        ASSERT_OK(file = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
        for (unsigned i = 0; i < 3; i++)
                send_with_fds(sv[0], &m, devnull, 1);

        tsm_priv_inbox_limit_fds(in, 1);
        for (unsigned i = 0; i < 3; i++) {
                int taken;

                ASSERT_EQ(tsm_priv_inbox_receive(in, sv[1]), 1);
                d = tsm_priv_inbox_get(in, 0);
                ASSERT_EQ(d->len, (ssize_t) sizeof(m));
                ASSERT_EQ(d->n_fds, 1);
                ASSERT_FALSE(d->fds_lost);
                taken = TAKE_FD(d->fds[0]);
                ASSERT_EQ(n_open_fds(), fds_before + 5); /* the channel, /dev/null, the file, the fd taken */
                safe_close(taken);
        }
        ASSERT_ERRNO(tsm_priv_inbox_receive(in, sv[1]), EAGAIN);

        /* None at all: one datagram at a time, its fd closed at once, and said so. */
        tsm_priv_inbox_limit_fds(in, 0);
        send_with_fds(sv[0], &m, devnull, 1);
        send_with_fds(sv[0], &m, file, 1);
        for (unsigned i = 0; i < 2; i++) {
                ASSERT_EQ(tsm_priv_inbox_receive(in, sv[1]), 1);
                d = tsm_priv_inbox_get(in, 0);
                ASSERT_EQ(d->len, (ssize_t) sizeof(m));
                ASSERT_EQ(d->n_fds, 0);
                ASSERT_TRUE(d->fds_lost);
                ASSERT_TRUE(d->fds_refused);
                ASSERT_EQ(d->fds_refused_may_wait, i == 1);
                ASSERT_TRUE(memcmp(d->buf, &m, sizeof(m)) == 0);
                ASSERT_EQ(n_open_fds(), fds_before + 4);
        }
        /* SECURITY: nor a socket's, which may linger on its peer (SO_LINGER): no correct
         * worker's either. */
        ASSERT_OK(tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        send_with_fds(sv[0], &m, tcp, 1);
        safe_close(tcp);
        ASSERT_EQ(tsm_priv_inbox_receive(in, sv[1]), 1);
        d = tsm_priv_inbox_get(in, 0);
        ASSERT_TRUE(d->fds_refused);
        ASSERT_TRUE(d->fds_refused_may_wait);
        ASSERT_EQ(n_open_fds(), fds_before + 4);

        /* Every datagram's again; the most one carries are all received, none dropped, and
         * closed. */
        tsm_priv_inbox_limit_fds(in, TSM_PRIV_BATCH_MAX);
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                fds[i] = devnull;
        send_with_fds(sv[0], &m, devnull, 4);
        send_with_fds(sv[0], &m, devnull, 1);
        send_with_fds_array(sv[0], &m, fds, ELEMENTSOF(fds));
        ASSERT_EQ(tsm_priv_inbox_receive(in, sv[1]), 3);
        d = tsm_priv_inbox_get(in, 0);
        ASSERT_ERRNO(d->len, EPROTO);
        ASSERT_EQ(d->n_fds, 0);
        ASSERT_FALSE(d->fds_lost);
        d = tsm_priv_inbox_get(in, 1);
        ASSERT_EQ(d->n_fds, 1);
        ASSERT_FALSE(d->fds_lost);
        d = tsm_priv_inbox_get(in, 2);
        ASSERT_ERRNO(d->len, EPROTO);
        ASSERT_FALSE(d->fds_lost);
        ASSERT_EQ(n_open_fds(), fds_before + 5); /* the second datagram's one fd; the rest closed */
        tsm_priv_inbox_clear(in);
        ASSERT_EQ(n_open_fds(), fds_before + 4);

        safe_close(file);
        safe_close(devnull);
        safe_close(sv[0]);
        safe_close(sv[1]);
        ASSERT_EQ(n_open_fds(), fds_before);
}

/* SECURITY: a receive never takes more fds than half the fd table has room for (RLIMIT_NOFILE
 * when the inbox is made), each datagram counting for the most it may carry: past the table's
 * end the kernel would drop the rest, released on this thread. With the soft limit at 1024,
 * two datagrams a receive; the rest come with the next. */
TEST(a_receive_takes_no_more_fds_than_the_table_holds) {
        _cleanup_(tsm_priv_inbox_freep) TsmPrivInbox *in = NULL;
        struct tsm_priv_reply m = reply_msg(7, 0);
        struct rlimit saved, low;
        int sv[2];

        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &saved));
        if (saved.rlim_max < 1024)
                SKIP("RLIMIT_NOFILE hard limit below 1024");
        low = (struct rlimit){ .rlim_cur = 1024, .rlim_max = saved.rlim_max };
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &low));
        ASSERT_OK(tsm_priv_inbox_new(&in));
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));

        channel(sv);
        for (unsigned i = 0; i < 3; i++)
                ASSERT_EQ(send(sv[0], &m, sizeof(m), 0), (ssize_t) sizeof(m));
        ASSERT_EQ(tsm_priv_inbox_receive(in, sv[1]), 2);
        ASSERT_TRUE(tsm_priv_inbox_more(in));
        ASSERT_EQ(tsm_priv_inbox_receive(in, sv[1]), 1);
        safe_close(sv[0]);
        safe_close(sv[1]);
}

TEST_MAIN();
