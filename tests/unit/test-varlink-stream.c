/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The framing layer on its own: partial reads, batches, escaping, limits, fd attachment. */

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "fd-closer.h"
#include "fuse-hold.h"
#include "harness.h"
#include "json-util.h"
#include "varlink-stream.h"

static VarlinkStream *stream_pair(const VarlinkLimits *l, int *ret_peer) {
        VarlinkStream *s;
        int sv[2];

        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv));
        ASSERT_OK(varlink_stream_new(sv[0], l ?: &VARLINK_LIMITS_DEFAULT, &s));
        varlink_stream_set_allow_fds(s, true, true);
        *ret_peer = sv[1];
        return s;
}

static void put(int fd, const void *p, size_t n) {
        ASSERT_EQ(send(fd, p, n, MSG_NOSIGNAL), (ssize_t) n);
}

/* Reads until a message is complete or the stream fails; returns next()'s result. */
static int pump(VarlinkStream *s, json_object **ret) {
        int r;

        for (;;) {
                r = varlink_stream_next(s, ret, NULL, NULL);
                if (r != 0)
                        return r;
                r = varlink_stream_read(s);
                if (r < 0)
                        return r;
                if (r == 0)
                        return 0;
        }
}

static const char *str(json_object *o) {
        return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
}

TEST(split_reads) {
        static const char m[] = "{\"method\":\"a.b.C\"}";
        json_object *o = NULL;
        int peer;
        VarlinkStream *s = stream_pair(NULL, &peer);

        for (size_t i = 0; i < sizeof(m) - 1; i++) {
                put(peer, m + i, 1);
                ASSERT_EQ(pump(s, &o), 0);
        }
        put(peer, "", 1);
        ASSERT_EQ(pump(s, &o), 1);
        ASSERT_STREQ(str(o), m);
        json_object_put(o);
        varlink_stream_free(s);
        close(peer);
}

TEST(short_read_means_empty) {
        _cleanup_free_ char *big = malloc(64 * 1024 + 100);
        int peer, r;
        VarlinkStream *s = stream_pair(NULL, &peer);

        /* Fewer bytes than a read takes: the socket is empty now, and read says so (2), so
         * callers do not ask again only to get EAGAIN. */
        put(peer, "{\"a\":", 5);
        ASSERT_EQ(varlink_stream_read(s), 2);
        ASSERT_EQ(varlink_stream_read(s), 0);

        /* More than one read takes (and not a multiple of it): it cannot know, and says 1
         * until the short one. */
        ASSERT_NOT_NULL(big);
        memset(big, ' ', 64 * 1024 + 100);
        put(peer, big, 64 * 1024 + 100);
        ASSERT_EQ(varlink_stream_read(s), 1);
        do
                r = varlink_stream_read(s);
        while (r == 1);
        ASSERT_EQ(r, 2);
        varlink_stream_free(s);
        close(peer);
}

TEST(several_messages_in_one_read) {
        static const char m[] = "{\"a\":1}\0{\"a\":2}\0{\"a\":3}";
        json_object *o;
        int peer;
        VarlinkStream *s = stream_pair(NULL, &peer);

        put(peer, m, sizeof(m)); /* three messages, the last one's NUL included */
        for (int i = 1; i <= 3; i++) {
                char want[16];

                ASSERT_EQ(pump(s, &o), 1);
                snprintf(want, sizeof(want), "{\"a\":%d}", i);
                ASSERT_STREQ(str(o), want);
                json_object_put(o);
        }
        ASSERT_EQ(pump(s, &o), 0);
        varlink_stream_free(s);
        close(peer);
}

/* A string value of n bytes in a message, {"s":"xxx..."}, NUL-terminated (sizeof: the text
 * and its NUL). */
static char *long_message(size_t n, char fill, size_t *ret_size) {
        char *m = malloc(n + 16);

        ASSERT_NOT_NULL(m);
        memcpy(m, "{\"s\":\"", 6);
        memset(m + 6, fill, n);
        memcpy(m + 6 + n, "\"}", 3); /* and the NUL */
        *ret_size = n + 9;
        return m;
}

/* The start of a long message behind a short one in one read, the rest of it in reads of
 * their own: what is left of the input goes to the front of the buffer, which grows to the
 * message, and the message is read whole. */
TEST(long_message_behind_a_short_one) {
        static const char first[] = "{\"a\":1}";
        _cleanup_free_ char *m = NULL;
        json_object *o, *v;
        size_t size;
        int peer;
        VarlinkStream *s = stream_pair(NULL, &peer);

        m = long_message(100 * 1024, 'Q', &size);
        put(peer, first, sizeof(first));
        put(peer, m, 10000);
        ASSERT_EQ(pump(s, &o), 1);
        ASSERT_STREQ(str(o), first);
        json_object_put(o);
        ASSERT_EQ(pump(s, &o), 0);
        for (size_t at = 10000; at < size; at += 7000) {
                ASSERT_EQ(pump(s, &o), 0);
                put(peer, m + at, MIN((size_t) 7000, size - at));
        }
        ASSERT_EQ(pump(s, &o), 1);
        ASSERT_TRUE(json_object_object_get_ex(o, "s", &v));
        ASSERT_EQ(json_object_get_string_len(v), 100 * 1024);
        ASSERT_MEMEQ(json_object_get_string(v), m + 6, 100 * 1024);
        json_object_put(o);
        ASSERT_EQ(varlink_stream_get_input_size(s), (size_t) 0);
        varlink_stream_free(s);
        close(peer);
}

/* Once its messages are taken and its output written, a stream holds no buffer: an idle
 * connection costs none, whatever it sent and was sent before (mallinfo2(): the heap's bytes in
 * use). */
TEST(idle_stream_holds_no_buffers) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        _cleanup_free_ char *m = NULL;
        json_object *o;
        size_t size, before;
        int peer;
        VarlinkStream *s = stream_pair(NULL, &peer);

        /* A first message, for what the first one makes once (json-c's, the stream's own). */
        put(peer, "{\"a\":1}", 8);
        ASSERT_EQ(pump(s, &o), 1);
        json_object_put(o);
        ASSERT_EQ(pump(s, &o), 0);

        m = long_message(40 * 1024, 'Q', &size);
        before = mallinfo2().uordblks;
        put(peer, m, size);
        ASSERT_EQ(pump(s, &o), 1);
        json_object_put(o);
        ASSERT_EQ(pump(s, &o), 0);
        ASSERT_OK(varlink_stream_enqueue_text(s, m, size - 1, NULL, 0));
        ASSERT_EQ(varlink_stream_write(s), 1);
        ASSERT_EQ(varlink_stream_get_output_size(s), (size_t) 0);
        /* A read's buffer takes 16 KiB at least, the reply's 40; a few small blocks glibc keeps
         * cached per thread count as in use. */
        ASSERT_LE(mallinfo2().uordblks, before + 4096);
        varlink_stream_free(s);
        close(peer);
}

TEST(streams_take_turns_with_a_read_spare) {
        _cleanup_free_ char *m = NULL, *spare = NULL;
        json_object *o;
        const char *kept;
        size_t size;
        int pa, pb;
        VarlinkStream *a = stream_pair(NULL, &pa), *b = stream_pair(NULL, &pb);

        varlink_stream_set_read_spare(a, &spare);
        varlink_stream_set_read_spare(b, &spare);

        /* a's first read allocates; its input once empty leaves its buffer in the slot. */
        put(pa, "{\"a\":1}", 8);
        ASSERT_EQ(pump(a, &o), 1);
        ASSERT_STREQ(str(o), "{\"a\":1}");
        json_object_put(o);
        ASSERT_EQ(pump(a, &o), 0);
        ASSERT_NOT_NULL(spare);

        /* b reads into it, and it stays b's while b's input holds part of a message. */
        put(pb, "{\"b\":", 5);
        ASSERT_EQ(pump(b, &o), 0);
        ASSERT_NULL(spare);
        ASSERT_EQ(varlink_stream_get_input_size(b), (size_t) 5);
        put(pa, "{\"a\":2}", 8);
        ASSERT_EQ(pump(a, &o), 1); /* a meanwhile reads into a buffer of its own */
        ASSERT_STREQ(str(o), "{\"a\":2}");
        json_object_put(o);
        ASSERT_EQ(pump(a, &o), 0);
        ASSERT_NOT_NULL(spare);    /* and leaves that one */
        kept = spare;
        put(pb, "2}", 3);
        ASSERT_EQ(pump(b, &o), 1);
        ASSERT_STREQ(str(o), "{\"b\":2}");
        json_object_put(o);
        ASSERT_EQ(pump(b, &o), 0);
        ASSERT_TRUE(spare == kept); /* the slot was full: b's freed */

        /* A buffer grown for a large message is not kept: the slot keeps one read's size. */
        free(TAKE_PTR(spare));
        m = long_message(40 * 1024, 'Q', &size);
        put(pa, m, size);
        ASSERT_EQ(pump(a, &o), 1);
        json_object_put(o);
        ASSERT_EQ(varlink_stream_get_input_size(a), (size_t) 0);
        ASSERT_NULL(spare);

        varlink_stream_free(a);
        varlink_stream_free(b);
        close(pa);
        close(pb);
}

TEST(escaped_nul_round_trip) {
        json_object *o, *msg;
        char buf[128];
        ssize_t n;
        int peer;
        VarlinkStream *s = stream_pair(NULL, &peer);

        msg = json_object_new_object();
        json_object_add(msg, "s", json_object_new_string_len("x\0y", 3));
        ASSERT_OK(varlink_stream_enqueue(s, msg, NULL, 0));
        json_object_put(msg);
        ASSERT_EQ(varlink_stream_write(s), 1);
        n = read(peer, buf, sizeof(buf));
        /* Exactly one raw NUL on the wire: the terminator. */
        ASSERT_EQ(n, (ssize_t) strlen("{\"s\":\"x\\u0000y\"}") + 1);
        ASSERT_EQ(memchr(buf, 0, (size_t) n), buf + n - 1);

        put(peer, buf, (size_t) n);
        ASSERT_EQ(pump(s, &o), 1);
        ASSERT_EQ(json_object_get_string_len(json_object_object_get(o, "s")), 3);
        json_object_put(o);
        varlink_stream_free(s);
        close(peer);
}

TEST(malformed_messages) {
        static const struct {
                const char *text;
                int error;
        } cases[] = {
                { "{\"a\":", EBADMSG },       { "[1]", EBADMSG },         { "\"str\"", EBADMSG },
                { "{\"a\":1} x", EBADMSG },   { "{'a':1}", EBADMSG },     { "{\"a\":1,}", EBADMSG },
                { "{\"a\":\"\xc3\x28\"}", EBADMSG }, { "", EBADMSG },    { "{\"a\":NaN}", EBADMSG },
                { "{\"a\":1,\"a\":2}", EBADMSG },        /* duplicate key */
                { "{\"o\":{\"k\":1,\"k\":{}}}", EBADMSG }, /* duplicate key, nested */
                { "{\"a\":\"\\ud800\"}", EBADMSG },     /* lone surrogate */
                { "{\"a\":\"\\udc00\\ud800\"}", EBADMSG },
                { "{\"a\":\"x\ty\"}", EBADMSG },        /* raw control character */
                { "{\"a\":-Infinity}", EBADMSG }, { "{\"a\":0x10}", EBADMSG },
                { "{\"a\":01}", EBADMSG },         { "{\"a\":\"\xed\xa0\x80\"}", EBADMSG },
                { "{\"a\":\"\xc0\xaf\"}", EBADMSG }, /* overlong */
                { "{\"a\":1}{\"b\":2}", EBADMSG }, { "{\"a\" 1}", EBADMSG },
                { "{\"a\\u0000b\":1}", EBADMSG },        /* json-c would see "a" */
                { "{\"o\":{\"\\u0000\":1}}", EBADMSG },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                json_object *o = NULL;
                int peer;
                VarlinkStream *s = stream_pair(NULL, &peer);

                put(peer, cases[i].text, strlen(cases[i].text) + 1);
                ASSERT_ERRNO(pump(s, &o), cases[i].error);
                varlink_stream_free(s);
                close(peer);
        }
}

TEST(valid_json_accepted) {
        static const char *const ok[] = {
                "{}", " {\"a\" : [ 1, -0.5e+3, true, false, null, \"\\ud83d\\ude00\\n\" ] } ",
                "{\"min\":-9223372036854775808,\"max\":18446744073709551615,\"big\":1e30}",
                "{\"a\":{\"a\":{\"a\":1}}}", "{\"\xf0\x9f\x98\x80\":\"\xc3\xa9\"}",
        };

        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                json_object *o = NULL;
                int peer;
                VarlinkStream *s = stream_pair(NULL, &peer);

                put(peer, ok[i], strlen(ok[i]) + 1);
                ASSERT_EQ(pump(s, &o), 1);
                json_object_put(o);
                varlink_stream_free(s);
                close(peer);
        }
}

/* A number no int64, uint64 or finite double holds is still JSON: a double that keeps its text,
 * never clamped (json-c would make -9223372036854775809 INT64_MIN), for the IDL validation to
 * refuse by name in an int field. */
TEST(numbers_past_int64_are_doubles) {
        static const char *const numbers[] = {
                "-9223372036854775809", "18446744073709551616", "-18446744073709551616",
                "123456789012345678901234567890", "1e400", "-1e400",
        };

        for (size_t i = 0; i < ELEMENTSOF(numbers); i++) {
                char text[128];
                json_object *o = NULL, *a;
                int peer;
                VarlinkStream *s = stream_pair(NULL, &peer);

                snprintf(text, sizeof(text), "{\"a\":[%s]}", numbers[i]);
                put(peer, text, strlen(text) + 1);
                ASSERT_EQ(pump(s, &o), 1);
                a = json_object_array_get_idx(json_object_object_get(o, "a"), 0);
                ASSERT_TRUE(json_object_is_type(a, json_type_double));
                ASSERT_STREQ(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN), numbers[i]);
                ASSERT_EQ(json_object_get_double(a) < 0, numbers[i][0] == '-');
                json_object_put(o);
                varlink_stream_free(s);
                close(peer);
        }
}

TEST(depth_limit) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        json_object *o;
        int peer;
        VarlinkStream *s;

        l.max_depth = 4;
        s = stream_pair(&l, &peer);
        put(peer, "{\"a\":[[1]]}", 12); /* depth 3 */
        ASSERT_EQ(pump(s, &o), 1);
        json_object_put(o);

        put(peer, "{\"a\":[[[[[[1]]]]]]}", 20);
        ASSERT_ERRNO(pump(s, &o), ELOOP);
        varlink_stream_free(s);
        close(peer);
}

TEST(oversize) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        char buf[300];
        json_object *o;
        int peer;
        VarlinkStream *s;

        l.max_message_size = 128;
        l.max_output_size = 128;

        /* Endless bytes without a NUL. */
        s = stream_pair(&l, &peer);
        memset(buf, ' ', sizeof(buf));
        put(peer, buf, sizeof(buf));
        ASSERT_ERRNO(pump(s, &o), EMSGSIZE);
        varlink_stream_free(s);
        close(peer);

        /* A complete message just over the limit, and one just at it. */
        s = stream_pair(&l, &peer);
        memset(buf, ' ', 128);
        buf[0] = '{';
        buf[126] = '}';
        buf[127] = 0; /* 128 bytes with the NUL: allowed */
        put(peer, buf, 128);
        ASSERT_EQ(pump(s, &o), 1);
        json_object_put(o);
        buf[127] = '}';
        buf[126] = ' ';
        buf[128] = 0; /* 129 bytes */
        put(peer, buf, 129);
        ASSERT_ERRNO(pump(s, &o), EMSGSIZE);
        varlink_stream_free(s);
        close(peer);

        /* Output over the limit is refused before it is queued. */
        s = stream_pair(&l, &peer);
        o = json_object_new_object();
        memset(buf, 'x', 200);
        buf[200] = 0;
        json_object_add(o, "s", json_object_new_string(buf));
        ASSERT_ERRNO(varlink_stream_enqueue(s, o, NULL, 0), E2BIG);
        json_object_put(o);
        varlink_stream_free(s);
        close(peer);
}

/* A read takes no more than the message under way may still have: what a stream buffers of its
 * input never exceeds MaxMessageSize= (a uid's budget counts on that); the rest waits in the
 * socket. */
TEST(input_never_exceeds_the_message_size) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        char buf[6000];
        json_object *o;
        int peer;
        VarlinkStream *s;

        l.max_message_size = l.max_output_size = 1000;
        s = stream_pair(&l, &peer);
        /* A message of 900 bytes with its NUL, and 5,000 of one that never ends. */
        memset(buf, ' ', sizeof(buf));
        buf[0] = '{';
        buf[898] = '}';
        buf[899] = 0;
        put(peer, buf, 5900);
        ASSERT_EQ(varlink_stream_read(s), 1);
        ASSERT_EQ(varlink_stream_get_input_size(s), 1000U);
        ASSERT_EQ(varlink_stream_next(s, &o, NULL, NULL), 1);
        json_object_put(o);
        ASSERT_EQ(varlink_stream_get_input_size(s), 100U);
        ASSERT_EQ(varlink_stream_read(s), 1);
        ASSERT_EQ(varlink_stream_get_input_size(s), 1000U);
        ASSERT_ERRNO(varlink_stream_next(s, &o, NULL, NULL), EMSGSIZE);
        /* A read with no room left says so too: a read of nothing would look like a hang-up. */
        ASSERT_ERRNO(varlink_stream_read(s), EMSGSIZE);
        ASSERT_EQ(varlink_stream_get_input_size(s), 1000U);
        varlink_stream_free(s);
        close(peer);
}

/* Sends len bytes of data with the n fds given attached (none: a plain send). */
static void send_these_fds(int sock, const void *data, size_t len, const int *fds, unsigned n) {
        char control[CMSG_SPACE(sizeof(int) * 8)] = {};
        struct iovec iov = { .iov_base = (void *) data, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

        ASSERT_TRUE(n <= 8);
        if (n > 0) {
                struct cmsghdr *c;

                mh.msg_control = control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
        }
        ASSERT_EQ(sendmsg(sock, &mh, MSG_NOSIGNAL), (ssize_t) len);
}

/* Sends len bytes of data with n fds of /dev/null attached. */
static void send_fds(int sock, const void *data, size_t len, unsigned n) {
        int fds[8];

        ASSERT_TRUE(n <= 8);
        for (unsigned i = 0; i < n; i++)
                fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        send_these_fds(sock, data, len, fds, n);
        for (unsigned i = 0; i < n; i++)
                close(fds[i]);
}

static int next_with_fds(VarlinkStream *s, json_object **o, int **fds, size_t *n) {
        int r;

        for (;;) {
                r = varlink_stream_next(s, o, fds, n);
                if (r != 0)
                        return r;
                r = varlink_stream_read(s);
                if (r <= 0)
                        return r;
        }
}

TEST(fds_attach_to_their_message) {
        json_object *o;
        int *fds = NULL;
        size_t n = 0;
        int peer;
        VarlinkStream *s = stream_pair(NULL, &peer);

        /* A message without fds, then one with two: each gets its own. */
        send_fds(peer, "{\"a\":1}", 8, 0);
        send_fds(peer, "{\"a\":2}", 8, 2);
        ASSERT_EQ(next_with_fds(s, &o, &fds, &n), 1);
        ASSERT_STREQ(str(o), "{\"a\":1}");
        ASSERT_EQ(n, 0);
        json_object_put(o);
        free(fds);
        ASSERT_EQ(next_with_fds(s, &o, &fds, &n), 1);
        ASSERT_STREQ(str(o), "{\"a\":2}");
        ASSERT_EQ(n, 2);
        ASSERT_TRUE(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
        close(fds[0]);
        close(fds[1]);
        free(fds);
        json_object_put(o);
        varlink_stream_free(s);
        close(peer);
}

TEST(fds_in_the_middle_of_a_message) {
        json_object *o;
        int *fds = NULL;
        size_t n = 0;
        int peer;
        VarlinkStream *s = stream_pair(NULL, &peer);

        send_fds(peer, "{\"a\":", 5, 0);
        ASSERT_EQ(next_with_fds(s, &o, &fds, &n), 0);
        send_fds(peer, "1}", 3, 1);
        ASSERT_ERRNO(next_with_fds(s, &o, &fds, &n), EPROTO);
        varlink_stream_free(s);
        close(peer);
}

TEST(fds_over_limit_or_not_allowed) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        json_object *o;
        int *fds = NULL;
        size_t n = 0;
        int peer;
        VarlinkStream *s;

        l.max_fds_per_message = 2;
        s = stream_pair(&l, &peer);
        send_fds(peer, "{}", 3, 3);
        /* The read that brings them says so, and so does every call after it: the message is
         * never delivered without its fds. */
        ASSERT_ERRNO(varlink_stream_read(s), EPROTO);
        ASSERT_ERRNO(varlink_stream_read(s), EPROTO);
        ASSERT_ERRNO(varlink_stream_next(s, &o, &fds, &n), EPROTO);
        varlink_stream_free(s);
        close(peer);

        s = stream_pair(NULL, &peer);
        varlink_stream_set_allow_fds(s, false, false);
        send_fds(peer, "{}", 3, 1);
        ASSERT_ERRNO(next_with_fds(s, &o, &fds, &n), EPROTO);
        /* Nor may we send any. */
        ASSERT_OK(varlink_stream_enqueue_text(s, "{}", 2, NULL, 0));
        fds = malloc(sizeof(int));
        fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ASSERT_ERRNO(varlink_stream_enqueue_text(s, "{}", 2, fds, 1), EOPNOTSUPP);
        varlink_stream_free(s);
        close(peer);
}


/* n pipes: their read ends in rd, the write ends (sent, then closed) in wr. */
static void pipes(int *rd, int *wr, unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                int p[2];

                ASSERT_OK(pipe2(p, O_CLOEXEC));
                rd[i] = p[0];
                wr[i] = p[1];
        }
}

/* Whether fd is the write end of the pipe whose read end is rd. */
static bool same_pipe(int fd, int rd) {
        struct stat a, b;

        ASSERT_OK(fstat(fd, &a));
        ASSERT_OK(fstat(rd, &b));
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* The next message is text, with the write end of the pipe whose read end is pipe_read as its
 * one fd (-EBADF: with none). */
static void expect_next(VarlinkStream *s, const char *text, int pipe_read) {
        json_object *o;
        int *fds = NULL;
        size_t n = 0;

        ASSERT_EQ(next_with_fds(s, &o, &fds, &n), 1);
        ASSERT_STREQ(str(o), text);
        ASSERT_EQ(n, pipe_read >= 0 ? 1U : 0U);
        if (pipe_read >= 0) {
                ASSERT_TRUE(same_pipe(fds[0], pipe_read));
                close(fds[0]);
        }
        free(fds);
        json_object_put(o);
}

/* Whether the last write end of the pipe whose read end is rd was closed. */
static bool pipe_widowed(int rd) {
        struct pollfd p = { .fd = rd, .events = POLLIN };

        return poll(&p, 1, 0) == 1 && (p.revents & POLLHUP);
}

/* "{\"l\":1" padded with spaces to n bytes, then "}" and the NUL: n + 2 bytes, a message longer
 * than a read takes when n is. */
static char *padded_message(size_t n, size_t *ret_size) {
        char *m = malloc(n + 2);

        ASSERT_NOT_NULL(m);
        memset(m, ' ', n);
        memcpy(m, "{\"l\":1", 6);
        m[n] = '}';
        m[n + 1] = '\0';
        *ret_size = n + 2;
        return m;
}

/* What the kernel delivers together (the rule at the top of varlink-stream.c): a read takes the
 * fds of one sendmsg() at most and ends with the buffer that carried them, whatever else is
 * queued, but glues earlier bytes before them: messages without fds, or the rest of one whose
 * fds came with an earlier read. So the fds of messages sent each with a sendmsg() of its own
 * never meet in a read, and each message gets its own, whenever the stream reads. */
TEST(fds_of_pipelined_messages_each_their_own) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        int rd[3], wr[3], peer;
        size_t size;
        char *big;
        VarlinkStream *s;

        l.max_fds_per_message = 1; /* libtsm's */
        s = stream_pair(&l, &peer);
        pipes(rd, wr, 3);
        send_these_fds(peer, "{\"a\":1}", 8, &wr[0], 1);
        send_these_fds(peer, "{\"b\":2}", 8, NULL, 0);
        send_these_fds(peer, "{\"c\":3}", 8, &wr[1], 1);
        send_these_fds(peer, "{\"d\":4}", 8, &wr[2], 1);

        /* All four queued: the read ends with the first one's fd. */
        ASSERT_EQ(varlink_stream_read(s), 2);
        ASSERT_EQ(varlink_stream_get_input_size(s), 8U);
        expect_next(s, "{\"a\":1}", rd[0]);

        /* The next takes "b" (no fds) with "c" and its fd: "c"'s, not "b"'s. */
        ASSERT_EQ(varlink_stream_read(s), 2);
        ASSERT_EQ(varlink_stream_get_input_size(s), 16U);
        expect_next(s, "{\"b\":2}", -EBADF);
        expect_next(s, "{\"c\":3}", rd[1]);
        expect_next(s, "{\"d\":4}", rd[2]);

        /* A message longer than a read, with its fd, then one with another: the second read
         * brings the first one's rest and the second one with its fd. */
        for (unsigned i = 0; i < 3; i++) {
                close(rd[i]);
                close(wr[i]);
        }
        pipes(rd, wr, 2);
        big = padded_message(20000, &size);
        send_these_fds(peer, big, size, &wr[0], 1);
        send_these_fds(peer, "{\"e\":5}", 8, &wr[1], 1);
        ASSERT_EQ(varlink_stream_read(s), 1);
        ASSERT_EQ(varlink_stream_get_input_n_fds(s), 1U);
        ASSERT_EQ(varlink_stream_read(s), 2);
        ASSERT_EQ(varlink_stream_get_input_n_fds(s), 2U);
        ASSERT_EQ(varlink_stream_get_input_size(s), size + 8);
        expect_next(s, "{\"l\":1}", rd[0]);
        expect_next(s, "{\"e\":5}", rd[1]);

        for (unsigned i = 0; i < 2; i++) {
                close(rd[i]);
                close(wr[i]);
        }
        free(big);
        varlink_stream_free(s);
        close(peer);
}

/* A message whose fds are refused (more than allowed, or any where none are), read together
 * with messages complete before it: those are the peer's and valid, and are delivered, each
 * with its own fds; the refusal, -EPROTO, comes in that message's place, whether it is complete
 * or not, and stays. Its fds are closed with the read that brought them. */
TEST(fds_refused_after_complete_messages) {
        static const struct {
                unsigned n_fds;
                bool allow;
                bool complete;
                bool behind_long; /* the message before it is one longer than a read, with an fd */
        } cases[] = {
                { 2, true, true, false },  /* within the control buffer (it takes 2) */
                { 3, true, true, false },  /* beyond it: MSG_CTRUNC */
                { 2, true, false, false }, /* refused before it is complete */
                { 1, false, true, false }, /* fds not allowed */
                { 2, true, true, true },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
                int rd[4], wr[4], *fds = NULL, peer;
                size_t n = 0, size = 0;
                json_object *o;
                char *big = NULL;
                VarlinkStream *s;

                l.max_fds_per_message = 1;
                s = stream_pair(&l, &peer);
                varlink_stream_set_allow_fds(s, cases[i].allow, true);
                pipes(rd, wr, cases[i].n_fds + 1);
                if (cases[i].behind_long) {
                        big = padded_message(20000, &size);
                        send_these_fds(peer, big, size, &wr[cases[i].n_fds], 1);
                        ASSERT_EQ(varlink_stream_read(s), 1);
                } else
                        send_these_fds(peer, "{\"a\":1}", 8, NULL, 0);
                if (cases[i].complete)
                        send_these_fds(peer, "{\"b\":2}", 8, wr, cases[i].n_fds);
                else
                        send_these_fds(peer, "{\"b\":", 5, wr, cases[i].n_fds);
                for (unsigned j = 0; j <= cases[i].n_fds; j++)
                        close(wr[j]);

                /* One read takes both (or the long one's rest and the other). */
                ASSERT_EQ(varlink_stream_read(s), 2);
                for (unsigned j = 0; j < cases[i].n_fds; j++)
                        if (!pipe_widowed(rd[j]))
                                TEST_FAIL("case %zu: fd %u kept", i, j);
                ASSERT_EQ(varlink_stream_get_input_n_fds(s), cases[i].behind_long ? 1U : 0U);

                ASSERT_EQ(varlink_stream_next(s, &o, &fds, &n), 1);
                ASSERT_STREQ(str(o), cases[i].behind_long ? "{\"l\":1}" : "{\"a\":1}");
                if (cases[i].behind_long) {
                        ASSERT_EQ(n, 1U);
                        ASSERT_TRUE(same_pipe(fds[0], rd[cases[i].n_fds]));
                        close(fds[0]);
                } else
                        ASSERT_EQ(n, 0U);
                free(fds);
                json_object_put(o);

                ASSERT_ERRNO(varlink_stream_next(s, &o, &fds, &n), EPROTO);
                ASSERT_ERRNO(varlink_stream_next(s, &o, &fds, &n), EPROTO);
                ASSERT_ERRNO(varlink_stream_read(s), EPROTO);

                for (unsigned j = 0; j <= cases[i].n_fds; j++)
                        close(rd[j]);
                free(big);
                varlink_stream_free(s);
                close(peer);
        }
}

/* Leaves room for exactly room more fds in our table (below the lowest free number); returns
 * the limit to restore. */
static struct rlimit limit_fds(unsigned room) {
        struct rlimit old, l;
        int lowest = fcntl(0, F_DUPFD_CLOEXEC, 0);

        ASSERT_TRUE(lowest >= 0);
        close(lowest);
        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &old));
        l = old;
        l.rlim_cur = (rlim_t) lowest + room;
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &l));
        return old;
}

/* Fds sent that our full fd table (RLIMIT_NOFILE) cannot take are our failure, not the peer's
 * violation: the message arrives with the fds that fit and a -EMFILE entry for the rest, and
 * the stream goes on. More fds than allowed are still refused, whatever the table says. */
TEST(fds_lost_to_emfile) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        struct rlimit saved;
        json_object *o;
        int *fds = NULL, peer;
        size_t n = 0;
        VarlinkStream *s;

        l.max_fds_per_message = 4;
        s = stream_pair(&l, &peer);
        send_fds(peer, "{\"a\":1}", 8, 3);
        send_fds(peer, "{\"b\":2}", 8, 0);
        saved = limit_fds(1);
        ASSERT_EQ(next_with_fds(s, &o, &fds, &n), 1);
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
        ASSERT_STREQ(str(o), "{\"a\":1}");
        ASSERT_EQ(n, 2);
        ASSERT_TRUE(fds[0] >= 0);
        ASSERT_EQ(fds[1], -EMFILE);
        close(fds[0]);
        free(fds);
        json_object_put(o);
        ASSERT_EQ(next_with_fds(s, &o, &fds, &n), 1);
        ASSERT_STREQ(str(o), "{\"b\":2}");
        ASSERT_EQ(n, 0);
        free(fds);
        json_object_put(o);

        /* None at all fits. */
        send_fds(peer, "{\"c\":3}", 8, 1);
        saved = limit_fds(0);
        ASSERT_EQ(next_with_fds(s, &o, &fds, &n), 1);
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
        ASSERT_EQ(n, 1);
        ASSERT_EQ(fds[0], -EMFILE);
        free(fds);
        json_object_put(o);
        varlink_stream_free(s);
        close(peer);

        /* SECURITY: over the limit is refused even with the table full from the limit on. */
        l.max_fds_per_message = 2;
        s = stream_pair(&l, &peer);
        send_fds(peer, "{}", 3, 4);
        saved = limit_fds(2);
        ASSERT_ERRNO(next_with_fds(s, &o, &fds, &n), EPROTO);
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
        varlink_stream_free(s);
        close(peer);

        /* And where fds are not allowed at all. */
        s = stream_pair(NULL, &peer);
        varlink_stream_set_allow_fds(s, false, false);
        send_fds(peer, "{}", 3, 1);
        saved = limit_fds(0);
        ASSERT_ERRNO(next_with_fds(s, &o, &fds, &n), EPROTO);
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
        varlink_stream_free(s);
        close(peer);
}

/* Hands the closer n copies of fd (of "f", whose FLUSH the server holds), peer's. */
static void closer_wait_for(int fd, unsigned n, uid_t peer) {
        for (unsigned i = 0; i < n; i++)
                ASSERT_EQ(fd_closer_close_for(fcntl(fd, F_DUPFD_CLOEXEC, 3), peer), -EBADF);
}

/* Sends a message with two fds, and expects them taken; or not read at all (-EDQUOT: the
 * connection is to go), when the stream is replaced by a new one of the same uid, on which a
 * message without fds is read. */
static void expect_fds_taken(VarlinkStream **s, int *peer, uid_t uid, bool taken) {
        VarlinkLimits limits = VARLINK_LIMITS_DEFAULT;
        json_object *o;
        int *fds = NULL;
        size_t n = 0;

        send_fds(*peer, "{\"a\":1}", 8, 2);
        if (!taken) {
                ASSERT_ERRNO(next_with_fds(*s, &o, &fds, &n), EDQUOT);
                ASSERT_EQ(varlink_stream_get_input_size(*s), 0);
                limits.max_fds_per_uid = 4;
                varlink_stream_free(*s);
                close(*peer);
                *s = stream_pair(&limits, peer);
                varlink_stream_set_peer_uid(*s, uid);
                put(*peer, "{\"b\":2}", 8);
                ASSERT_EQ(next_with_fds(*s, &o, &fds, &n), 1);
                ASSERT_STREQ(str(o), "{\"b\":2}");
                ASSERT_EQ(n, 0);
                free(fds);
                json_object_put(o);
                return;
        }
        ASSERT_EQ(next_with_fds(*s, &o, &fds, &n), 1);
        ASSERT_STREQ(str(o), "{\"a\":1}");
        ASSERT_EQ(n, 2);
        ASSERT_TRUE(fds[0] >= 0 && fds[1] >= 0);
        close(fds[0]);
        close(fds[1]);
        free(fds);
        json_object_put(o);
}

/* SECURITY: while more than MaxFdsPerUid= of a uid's fds wait in the closer (behind a close a
 * FUSE server holds, tests/fuse-hold.h; root, SKIP otherwise), no fds of that uid are taken,
 * nor dropped (the kernel would release them on the reader): the read that would bring them is
 * not made, and the connection is to go (-EDQUOT). A peer that passes fds of a file system it
 * serves cannot fill our fd table with closes that wait. Another uid's are taken meanwhile, until a quarter of what
 * the closer takes waits, everybody's together. Once the server is gone, fds are taken again.
 * This process plays the worker: the server holds its requests, so it closes its own copy once
 * the server is gone. */
TEST(no_fds_taken_from_a_uid_whose_closes_wait) {
        VarlinkLimits limits = VARLINK_LIMITS_DEFAULT;
        VarlinkStream *a, *b;
        struct rlimit l;
        int peer_a, peer_b, fuse, r;
        FuseHold h;

        /* Room for 64 fds in the closer's queue: congested for everybody past 16 waiting. */
        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &l));
        l.rlim_cur = 64;
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &l));
        ASSERT_OK(fd_closer_start());
        l.rlim_cur = l.rlim_max;
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &l));

        r = fuse_hold_start(&h, (pid_t[]) { getpid() }, 1, true, 10 * 1000000ULL);
        if (r < 0)
                SKIP("no FUSE mount here: %s", strerror(-r));
        fuse = fuse_hold_open(&h, O_RDWR);
        ASSERT_OK(fuse);
        limits.max_fds_per_uid = 4;
        a = stream_pair(&limits, &peer_a);
        b = stream_pair(&limits, &peer_b);
        varlink_stream_set_peer_uid(a, 1000);
        varlink_stream_set_peer_uid(b, 1001);

        /* The closer waits on the FLUSH of uid 1000's first fd, with four more of its behind:
         * five, past its four. 1001's are taken. */
        closer_wait_for(fuse, 4, 1000);
        ASSERT_FALSE(fd_closer_congested(1000, 4));
        expect_fds_taken(&a, &peer_a, 1000, true);
        closer_wait_for(fuse, 1, 1000);
        ASSERT_TRUE(fd_closer_congested(1000, 4));
        ASSERT_FALSE(fd_closer_congested(1001, 4));
        expect_fds_taken(&a, &peer_a, 1000, false);
        expect_fds_taken(&b, &peer_b, 1001, true);

        /* Everybody's past a quarter: 1001's are lost too. */
        closer_wait_for(fuse, 12, 1002);
        ASSERT_TRUE(fd_closer_congested(1001, 4));
        expect_fds_taken(&b, &peer_b, 1001, false);

        /* The server's death ends the FLUSH: the queue drains, and fds are taken again. */
        fuse_hold_stop(&h);
        close(fuse);
        ASSERT_OK(fd_closer_wait_idle(5 * 1000000ULL));
        ASSERT_FALSE(fd_closer_congested(1000, 4));
        expect_fds_taken(&a, &peer_a, 1000, true);
        expect_fds_taken(&b, &peer_b, 1001, true);
        varlink_stream_free(a);
        varlink_stream_free(b);
        close(peer_a);
        close(peer_b);
}

/* A file system with the kernel's writeback cache whose server holds every page written
 * (tests/fuse-hold.h), and the closer ready: a SKIP without FUSE. */
#define WRITEBACK_HOLD_USEC (30 * 1000000ULL)
#define WATCH_USEC (5 * 1000000ULL)

static void start_writeback(FuseHold *h) {
        int r;

        ASSERT_OK(fd_closer_start());
        r = fuse_hold_start_writeback(h, WRITEBACK_HOLD_USEC);
        if (r < 0)
                SKIP("no FUSE mount here: %s", strerror(-r));
}

/* Sends message with n_null fds of /dev/null and then the one reference to a file of "f"
 * (made dirty through *dirty after: whoever releases that reference waits on the server). */
static void send_dirty(FuseHold *h, int sock, const char *message, unsigned n_null, int *dirty) {
        static const uint8_t page[4096] = { 1 };
        int fds[8];

        ASSERT_TRUE(n_null < 8);
        for (unsigned i = 0; i < n_null; i++)
                ASSERT_OK(fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC));
        ASSERT_OK(fds[n_null] = fuse_hold_open(h, O_RDWR));
        if (*dirty < 0)
                ASSERT_OK(*dirty = fuse_hold_open(h, O_RDWR));
        send_these_fds(sock, message, strlen(message) + 1, fds, n_null + 1);
        for (unsigned i = 0; i <= n_null; i++)
                close(fds[i]);
        ASSERT_EQ(pwrite(*dirty, page, sizeof(page), 0), (ssize_t) sizeof(page));
}

/* Ends the watch, failing if this thread had to wait for the server's death (what). */
static void expect_not_held(FuseHoldWatch *w, const char *what) {
        if (fuse_hold_watch_end(w))
                TEST_FAIL("%s waited on the FUSE server", what);
}

/* Lets the server go, and the closes held with it; then the test's own fd of "f". */
static void stop_writeback(FuseHold *h, int dirty) {
        fuse_hold_stop(h);
        ASSERT_OK(fd_closer_wait_idle(WRITEBACK_HOLD_USEC));
        close(dirty);
}

/* SECURITY: the kernel releases an fd it drops from a message (no room for it in the control
 * buffer) on the receiving thread, and the release of the last reference to a dirty file of a
 * FUSE file system with the writeback cache waits on its server (fuse_release()). A peer's
 * fds past MaxFdsPerMessage= are received and refused, closed off the thread: the read returns
 * while the server holds. */
TEST(fds_past_the_limit_are_not_released_on_the_reader) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        FuseHoldWatch w;
        VarlinkStream *s;
        json_object *o;
        int *fds = NULL, peer, dirty = -EBADF;
        size_t n = 0;
        FuseHold h;

        start_writeback(&h);
        l.max_fds_per_message = 1;
        s = stream_pair(&l, &peer);
        send_dirty(&h, peer, "{}", 2, &dirty);
        fuse_hold_watch_start(&w, &h, WATCH_USEC);
        ASSERT_ERRNO(next_with_fds(s, &o, &fds, &n), EPROTO);
        expect_not_held(&w, "a read of more fds than allowed");
        varlink_stream_free(s);
        close(peer);
        stop_writeback(&h, dirty);
}

/* SECURITY: a congested uid's fds (fd_closer_congested()) are not dropped by the kernel either:
 * the read that would bring them is not made (-EDQUOT), and the stream's socket, with them
 * queued, closes off the thread. */
TEST(fds_of_a_congested_uid_are_not_released_on_the_reader) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        FuseHoldWatch w;
        VarlinkStream *s;
        json_object *o;
        int *fds = NULL, peer, dirty = -EBADF;
        size_t n = 0;
        FuseHold h;

        start_writeback(&h);
        l.max_fds_per_uid = 1;
        s = stream_pair(&l, &peer);
        varlink_stream_set_peer_uid(s, 1000);
        send_dirty(&h, peer, "{}", 0, &dirty);
        /* The closer waits on the first close of "f" (its FLUSH writes the page back), two
         * more of 1000's behind it. */
        closer_wait_for(dirty, 3, 1000);
        ASSERT_TRUE(fd_closer_congested(1000, 1));
        fuse_hold_watch_start(&w, &h, WATCH_USEC);
        ASSERT_ERRNO(next_with_fds(s, &o, &fds, &n), EDQUOT);
        varlink_stream_free(s);
        expect_not_held(&w, "a congested uid's read, or the close of its stream,");
        close(peer);
        stop_writeback(&h, dirty);
}

/* SECURITY: a stream freed with fds queued on its socket, never read (a connection dropped
 * for what came before them), has its socket closed off the thread: that close releases them. */
TEST(a_stream_freed_with_fds_queued_is_closed_off_the_thread) {
        FuseHoldWatch w;
        VarlinkStream *s;
        int peer, dirty = -EBADF;
        FuseHold h;

        start_writeback(&h);
        s = stream_pair(NULL, &peer);
        send_dirty(&h, peer, "{}", 0, &dirty);
        fuse_hold_watch_start(&w, &h, WATCH_USEC);
        varlink_stream_free(s);
        expect_not_held(&w, "the close of a stream with fds queued");
        close(peer);
        stop_writeback(&h, dirty);
}

/* A stream shut down keeps its fd (a lost libtsm connection keeps its number, and its place in
 * the caller's epoll set): the peer sees the end, and what it sent that was not consumed goes
 * as with a close, fds included: those read with a message not complete yet, and those still
 * queued on the socket. */
TEST(shutdown_keeps_the_fd_and_drops_what_came) {
        struct pollfd p;
        int peer, fd, read_end[2], queued[2];
        char b;
        VarlinkStream *s = stream_pair(NULL, &peer);

        ASSERT_OK(pipe2(read_end, O_CLOEXEC | O_NONBLOCK));
        ASSERT_OK(pipe2(queued, O_CLOEXEC | O_NONBLOCK));
        send_these_fds(peer, "{\"a\":", 5, &read_end[1], 1);
        ASSERT_EQ(varlink_stream_read(s), 2); /* the fd waits for the rest of its message */
        send_these_fds(peer, "1}", 3, &queued[1], 1);
        close(read_end[1]);
        close(queued[1]);

        fd = varlink_stream_get_fd(s);
        varlink_stream_shutdown(s);
        ASSERT_EQ(varlink_stream_get_fd(s), fd);
        ASSERT_TRUE(fcntl(fd, F_GETFD) >= 0);
        p = (struct pollfd){ .fd = fd };
        ASSERT_EQ(poll(&p, 1, 0), 1);
        ASSERT_TRUE(p.revents & POLLHUP);
        ASSERT_EQ(read(read_end[0], &b, 1), 0); /* closed, not EAGAIN */
        ASSERT_EQ(read(queued[0], &b, 1), 0);
        ASSERT_EQ(read(peer, &b, 1), 0);
        ASSERT_ERRNO(send(peer, "x", 1, MSG_NOSIGNAL) < 0 ? -errno : 0, EPIPE);

        varlink_stream_free(s);
        ASSERT_TRUE(fcntl(fd, F_GETFD) < 0);
        close(read_end[0]);
        close(queued[0]);
        close(peer);
}

/* The socket moves to a number chosen for it, O_CLOEXEC, the number it had closed. */
TEST(move_fd_renumbers_the_socket) {
        json_object *o = NULL;
        int peer, old, target;
        VarlinkStream *s = stream_pair(NULL, &peer);

        old = varlink_stream_get_fd(s);
        target = open("/dev/null", O_RDONLY); /* the number to take, open without O_CLOEXEC */
        ASSERT_TRUE(target >= 0);
        ASSERT_OK(varlink_stream_move_fd(s, target));
        ASSERT_EQ(varlink_stream_get_fd(s), target);
        ASSERT_EQ(fcntl(target, F_GETFD), FD_CLOEXEC);
        ASSERT_TRUE(fcntl(old, F_GETFD) < 0);
        ASSERT_OK(varlink_stream_move_fd(s, target)); /* where it is already */
        ASSERT_ERRNO(varlink_stream_move_fd(s, -1), EBADF);
        put(peer, "{}", 3);
        ASSERT_EQ(pump(s, &o), 1);
        json_object_put(o);
        varlink_stream_free(s);
        ASSERT_TRUE(fcntl(target, F_GETFD) < 0);
        close(peer);
}

TEST(fds_sent_with_their_message) {
        char buf[64], control[CMSG_SPACE(sizeof(int) * 4)];
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                             .msg_controllen = sizeof(control) };
        int *fds, peer;
        ssize_t k;
        VarlinkStream *s = stream_pair(NULL, &peer);

        fds = malloc(sizeof(int));
        fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ASSERT_OK(varlink_stream_enqueue_text(s, "{\"a\":1}", 7, NULL, 0));
        ASSERT_OK(varlink_stream_enqueue_text(s, "{\"b\":2}", 7, fds, 1));
        ASSERT_OK(varlink_stream_enqueue_text(s, "{\"c\":3}", 7, NULL, 0));
        ASSERT_EQ(varlink_stream_write(s), 1);
        ASSERT_EQ(varlink_stream_get_output_size(s), 0);

        /* The first read ends at the fd-carrying message: it went out on its own. */
        k = recvmsg(peer, &mh, MSG_CMSG_CLOEXEC);
        ASSERT_EQ(k, 16);
        ASSERT_MEMEQ(buf, "{\"a\":1}\0{\"b\":2}", 16);
        ASSERT_NOT_NULL(CMSG_FIRSTHDR(&mh));
        int received;
        memcpy(&received, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(int));
        close(received);
        k = read(peer, buf, sizeof(buf));
        ASSERT_EQ(k, 8);
        varlink_stream_free(s);
        close(peer);
}

/* New limits: a message under way finishes under the JSON limits it started with, the next one
 * obeys the new ones; a deeper limit gets a tokener that deep, even for a message under way. */
TEST(set_limits_from_the_next_message) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        json_object *o = NULL;
        int peer;
        VarlinkStream *s;

        l.max_json_values = 8;
        l.max_depth = 3;
        s = stream_pair(&l, &peer);

        put(peer, "{\"a\":[1,2,", 10);
        ASSERT_EQ(pump(s, &o), 0);
        l.max_json_values = 3;
        ASSERT_OK(varlink_stream_set_limits(s, &l));
        put(peer, "3]}", 4);
        ASSERT_EQ(pump(s, &o), 1);
        ASSERT_STREQ(str(o), "{\"a\":[1,2,3]}");
        json_object_put(o);
        put(peer, "{\"a\":[1,2,3]}", 14);
        ASSERT_ERRNO(pump(s, &o), E2BIG);
        varlink_stream_free(s);
        close(peer);

        /* Nothing under way: at once. */
        l.max_json_values = 0;
        s = stream_pair(&l, &peer);
        put(peer, "{\"a\":[[[[1]]]]}", 16);
        ASSERT_ERRNO(pump(s, &o), ELOOP);
        varlink_stream_free(s);
        close(peer);
        s = stream_pair(&l, &peer);
        l.max_depth = 8;
        ASSERT_OK(varlink_stream_set_limits(s, &l));
        put(peer, "{\"a\":[[[[1]]]]}", 16);
        ASSERT_EQ(pump(s, &o), 1);
        json_object_put(o);

        /* Lowered with one under way: it is parsed at the old depth. */
        put(peer, "{\"a\":[[[", 8);
        ASSERT_EQ(pump(s, &o), 0);
        l.max_depth = 2;
        ASSERT_OK(varlink_stream_set_limits(s, &l));
        put(peer, "[1]]]]}", 8);
        ASSERT_EQ(pump(s, &o), 1);
        json_object_put(o);
        put(peer, "{\"a\":[[1]]}", 12);
        ASSERT_ERRNO(pump(s, &o), ELOOP);
        varlink_stream_free(s);
        close(peer);
}

/* A refusal names the limit the message was judged by: the one it started under, not one set
 * since, which consuming it puts in force. */
TEST(refused_limit_is_the_one_the_message_was_judged_by) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        json_object *o = NULL;
        char big[200];
        int peer;
        VarlinkStream *s;

        l.max_depth = 3;
        s = stream_pair(&l, &peer);
        put(peer, "{\"a\":[[", 7);
        ASSERT_EQ(pump(s, &o), 0);
        l.max_depth = 8;
        ASSERT_OK(varlink_stream_set_limits(s, &l));
        put(peer, "[1]]]}", 7);
        ASSERT_ERRNO(pump(s, &o), ELOOP);
        ASSERT_EQ(varlink_stream_get_refused_limit(s), 3U);
        varlink_stream_free(s);
        close(peer);

        l.max_json_values = 4;
        s = stream_pair(&l, &peer);
        put(peer, "{\"a\":[1,", 8);
        ASSERT_EQ(pump(s, &o), 0);
        l.max_json_values = 100;
        ASSERT_OK(varlink_stream_set_limits(s, &l));
        put(peer, "2,3,4]}", 8);
        ASSERT_ERRNO(pump(s, &o), E2BIG);
        ASSERT_EQ(varlink_stream_get_refused_limit(s), 4U);
        varlink_stream_free(s);
        close(peer);

        l.max_message_size = l.max_output_size = 128;
        s = stream_pair(&l, &peer);
        memset(big, ' ', sizeof(big));
        put(peer, big, sizeof(big));
        ASSERT_ERRNO(pump(s, &o), EMSGSIZE);
        ASSERT_EQ(varlink_stream_get_refused_limit(s), 128U);
        varlink_stream_free(s);
        close(peer);

        /* Malformed: no limit. */
        s = stream_pair(&l, &peer);
        put(peer, "[1]", 4);
        ASSERT_ERRNO(pump(s, &o), EBADMSG);
        ASSERT_EQ(varlink_stream_get_refused_limit(s), 0U);
        varlink_stream_free(s);
        close(peer);
}

/* A message read under a larger MaxMessageSize= before a reload lowered it is judged by the new
 * one once the message under way then is consumed: with its NUL, at most the new limit. Sends
 * the start of a message, lowers the limit to 128, then the rest of it with one of n bytes before
 * its NUL in one write (read in one read, under the old limit); returns what the second gives. */
static int second_message_under_lowered_limit(size_t n) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        char buf[300];
        json_object *o = NULL;
        int peer, r;
        VarlinkStream *s;

        assert(n >= 2 && n + 8 <= sizeof(buf));
        l.max_message_size = l.max_output_size = 1000;
        s = stream_pair(&l, &peer);
        put(peer, "{\"a\":", 5);
        ASSERT_EQ(pump(s, &o), 0);
        l.max_message_size = l.max_output_size = 128;
        ASSERT_OK(varlink_stream_set_limits(s, &l));

        memcpy(buf, "1}", 3); /* the first one's end, and its NUL */
        memset(buf + 3, ' ', n);
        buf[3] = '{';
        buf[3 + n - 1] = '}';
        buf[3 + n] = 0;
        put(peer, buf, 3 + n + 1);
        ASSERT_EQ(varlink_stream_read(s), 2);
        ASSERT_EQ(varlink_stream_get_input_size(s), 5 + 3 + n + 1);
        ASSERT_EQ(varlink_stream_next(s, &o, NULL, NULL), 1);
        ASSERT_STREQ(str(o), "{\"a\":1}");
        json_object_put(o);
        o = NULL;
        r = varlink_stream_next(s, &o, NULL, NULL);
        json_object_put(o);
        varlink_stream_free(s);
        close(peer);
        return r;
}

TEST(lowered_message_size_for_a_message_already_read) {
        ASSERT_EQ(second_message_under_lowered_limit(127), 1); /* 128 with its NUL */
        ASSERT_ERRNO(second_message_under_lowered_limit(128), EMSGSIZE);
}

/* Limits set while a whole message is buffered apply from the message after it: the one read
 * next, even though the input is exactly at the mark then (a message ends there). */
TEST(lowered_message_size_after_a_buffered_message) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        char buf[200];
        json_object *o = NULL;
        int peer;
        VarlinkStream *s;

        l.max_message_size = l.max_output_size = 1000;
        s = stream_pair(&l, &peer);
        put(peer, "{}", 3);
        ASSERT_EQ(varlink_stream_read(s), 2);
        l.max_message_size = l.max_output_size = 128;
        ASSERT_OK(varlink_stream_set_limits(s, &l));
        ASSERT_EQ(varlink_stream_next(s, &o, NULL, NULL), 1);
        json_object_put(o);
        memset(buf, ' ', sizeof(buf));
        buf[0] = '{';
        buf[sizeof(buf) - 2] = '}';
        buf[sizeof(buf) - 1] = 0;
        put(peer, buf, sizeof(buf));
        o = NULL;
        ASSERT_ERRNO(pump(s, &o), EMSGSIZE);
        varlink_stream_free(s);
        close(peer);
}

/* Output queued counts its NULs: what is queued and a new message with its NUL, at most
 * MaxOutputSize=. */
TEST(output_size_counts_the_nul) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        char text[100];
        int peer;
        VarlinkStream *s;

        l.max_message_size = 128;
        l.max_output_size = 200;
        s = stream_pair(&l, &peer);
        memset(text, ' ', sizeof(text));
        ASSERT_OK(varlink_stream_enqueue_text(s, text, 100, NULL, 0)); /* 101 queued */
        ASSERT_ERRNO(varlink_stream_enqueue_text(s, text, 99, NULL, 0), ENOBUFS); /* 201 */
        ASSERT_OK(varlink_stream_enqueue_text(s, text, 98, NULL, 0)); /* 200 */
        ASSERT_EQ(varlink_stream_get_output_size(s), 200U);
        varlink_stream_free(s);
        close(peer);
}

TEST(end_of_stream) {
        json_object *o;
        int peer;
        VarlinkStream *s = stream_pair(NULL, &peer);

        put(peer, "{\"a\":", 5);
        close(peer);
        ASSERT_ERRNO(pump(s, &o), ECONNRESET);
        varlink_stream_free(s);
}

/* Output held back is not written, and whole messages of it can be taken back: their fds closed,
 * the messages after them (and their fds) sent as if the dropped ones had never been queued.
 * Never a message partly written, nor part of one: refused, nothing changed. */
TEST(held_output_taken_back_whole) {
        static const char *const texts[] = { "{\"m\":0}", "{\"m\":1}", "{\"m\":2}", "{\"m\":3}", "{\"m\":4}" };
        static const bool with_fd[] = { true, false, true, false, true };
        VarlinkOutputRange at[ELEMENTSOF(texts)];
        int rd[ELEMENTSOF(texts)], wr[ELEMENTSOF(texts)], peer;
        VarlinkStream *reader, *s = stream_pair(NULL, &peer);
        size_t size;

        ASSERT_OK(varlink_stream_new(peer, &VARLINK_LIMITS_DEFAULT, &reader));
        varlink_stream_set_allow_fds(reader, true, false);
        pipes(rd, wr, ELEMENTSOF(texts));
        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                int *fds = NULL;

                if (i == 1) {
                        /* The first is written; what comes next is held back. */
                        ASSERT_EQ(varlink_stream_write(s), 1);
                        varlink_stream_hold_output(s, varlink_stream_get_output_offset(s));
                }
                if (with_fd[i]) {
                        fds = malloc(sizeof(int));
                        ASSERT_NOT_NULL(fds);
                        fds[0] = wr[i];
                }
                at[i].start = varlink_stream_get_output_offset(s) + varlink_stream_get_output_size(s);
                ASSERT_OK(varlink_stream_enqueue_text(s, texts[i], strlen(texts[i]), fds, with_fd[i] ? 1 : 0));
                at[i].end = varlink_stream_get_output_offset(s) + varlink_stream_get_output_size(s);
        }
        ASSERT_EQ(varlink_stream_write(s), 0);
        ASSERT_EQ(varlink_stream_get_writable_size(s), 0U);
        size = varlink_stream_get_output_size(s);
        ASSERT_EQ(size, (size_t) (at[4].end - at[1].start));

        /* Refused: written, part of a message, across a message's end, out of order. */
        ASSERT_ERRNO(varlink_stream_drop_output(s, &at[0], 1), EINVAL);
        ASSERT_ERRNO(varlink_stream_drop_output(s, &(VarlinkOutputRange) { at[1].start, at[1].end - 1 }, 1), EINVAL);
        ASSERT_ERRNO(varlink_stream_drop_output(s, &(VarlinkOutputRange) { at[1].start + 1, at[1].end }, 1), EINVAL);
        ASSERT_ERRNO(varlink_stream_drop_output(s, &(VarlinkOutputRange) { at[1].start, at[4].end + 1 }, 1), EINVAL);
        ASSERT_ERRNO(varlink_stream_drop_output(s, (VarlinkOutputRange[]) { at[2], at[1] }, 2), EINVAL);
        ASSERT_ERRNO(varlink_stream_drop_output(s, (VarlinkOutputRange[]) { at[1], at[3], { at[2].start, at[2].end - 1 } }, 3),
                     EINVAL);
        ASSERT_EQ(varlink_stream_get_output_size(s), size);
        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                ASSERT_FALSE(pipe_widowed(rd[i]));

        /* 1 and 2 (and 2's fd) taken back; 3 and 4 go, 4 with its fd. */
        ASSERT_OK(varlink_stream_drop_output(s, &(VarlinkOutputRange) { at[1].start, at[2].end }, 1));
        ASSERT_TRUE(pipe_widowed(rd[2]));
        ASSERT_EQ(varlink_stream_get_output_size(s), (size_t) (at[4].end - at[3].start));
        varlink_stream_hold_output(s, UINT64_MAX);
        ASSERT_EQ(varlink_stream_write(s), 1);
        ASSERT_EQ(varlink_stream_get_output_size(s), 0U);
        expect_next(reader, texts[0], rd[0]);
        expect_next(reader, texts[3], -EBADF);
        expect_next(reader, texts[4], rd[4]);

        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                close(rd[i]);
        close(wr[1]);
        close(wr[3]);
        varlink_stream_free(s);
        varlink_stream_free(reader);
}

/* Ranges taken back at once, with messages to keep between them: those keep their order and
 * their fds. */
TEST(held_output_taken_back_between_kept_messages) {
        VarlinkOutputRange at[6];
        int rd[6], wr[6], peer;
        VarlinkStream *reader, *s = stream_pair(NULL, &peer);
        char text[32];

        ASSERT_OK(varlink_stream_new(peer, &VARLINK_LIMITS_DEFAULT, &reader));
        varlink_stream_set_allow_fds(reader, true, false);
        pipes(rd, wr, ELEMENTSOF(at));
        varlink_stream_hold_output(s, 0);
        for (size_t i = 0; i < ELEMENTSOF(at); i++) {
                int *fds = malloc(sizeof(int));

                ASSERT_NOT_NULL(fds);
                fds[0] = wr[i];
                snprintf(text, sizeof(text), "{\"m\":%zu}", i);
                at[i].start = varlink_stream_get_output_offset(s) + varlink_stream_get_output_size(s);
                ASSERT_OK(varlink_stream_enqueue_text(s, text, strlen(text), fds, 1));
                at[i].end = varlink_stream_get_output_offset(s) + varlink_stream_get_output_size(s);
        }
        ASSERT_OK(varlink_stream_drop_output(s, (VarlinkOutputRange[]) { at[0], at[2], at[3], at[5] }, 4));
        for (size_t i = 0; i < ELEMENTSOF(at); i++)
                ASSERT_EQ(pipe_widowed(rd[i]), i != 1 && i != 4);
        varlink_stream_hold_output(s, UINT64_MAX);
        ASSERT_EQ(varlink_stream_write(s), 1);
        expect_next(reader, "{\"m\":1}", rd[1]);
        expect_next(reader, "{\"m\":4}", rd[4]);
        for (size_t i = 0; i < ELEMENTSOF(at); i++)
                close(rd[i]);
        varlink_stream_free(s);
        varlink_stream_free(reader);
}

/* What lies before the hold goes, not a byte more, an fd message held behind a message without
 * one too (the write stops at the hold, not at the next message with fds). */
TEST(held_output_stops_at_the_hold) {
        char buf[64];
        int rd, wr, peer, *fds = malloc(sizeof(int));
        VarlinkStream *s = stream_pair(NULL, &peer);

        ASSERT_NOT_NULL(fds);
        pipes(&rd, &wr, 1);
        fds[0] = wr;
        ASSERT_OK(varlink_stream_enqueue_text(s, "{\"a\":1}", 7, NULL, 0));
        varlink_stream_hold_output(s, 8);
        ASSERT_OK(varlink_stream_enqueue_text(s, "{\"b\":2}", 7, NULL, 0));
        ASSERT_OK(varlink_stream_enqueue_text(s, "{\"c\":3}", 7, fds, 1));
        ASSERT_EQ(varlink_stream_get_writable_size(s), 8U);
        ASSERT_EQ(varlink_stream_write(s), 1);
        ASSERT_EQ(varlink_stream_get_output_size(s), 16U);
        ASSERT_EQ(varlink_stream_get_writable_size(s), 0U);
        ASSERT_EQ(read(peer, buf, sizeof(buf)), 8);
        ASSERT_EQ(read(peer, buf, sizeof(buf)), -1);
        varlink_stream_hold_output(s, UINT64_MAX);
        ASSERT_EQ(varlink_stream_write(s), 1);
        ASSERT_EQ(varlink_stream_get_output_size(s), 0U);
        close(rd);
        varlink_stream_free(s);
        close(peer);
}

TEST_MAIN();
