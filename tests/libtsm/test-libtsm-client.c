/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libtsm's client object against a scripted peer instead of tsmd: a full listen backlog, a
 * call that times out, freeing the client from callbacks, the error state after local
 * failures, replies and WatchEvents streams that do not match the interface, and reclaim
 * tokens. The peer is a plain Unix socket driven by the test (or a thread of it), so the
 * exact replies and their timing are under control. Links the static libtsm to reach the
 * internal Varlink client. Runs in: tests.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "base64.h"
#include "harness.h"
#include "json-strict.h"
#include "libtsm-internal.h"

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

static void sleep_msec(unsigned msec) {
        struct timespec ts = { .tv_sec = msec / 1000, .tv_nsec = (long) (msec % 1000) * 1000000L };

        nanosleep(&ts, NULL);
}

/* A listening socket at a fresh path; the path goes to path (of size PATH_MAX-ish). */
static int listen_at(char *path, size_t size, int backlog) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        static unsigned n;
        int fd;

        snprintf(path, size, "/tmp/test-libtsm-client.%d.%u", (int) getpid(), n++);
        ASSERT_TRUE(strlen(path) < sizeof(sa.sun_path));
        strcpy(sa.sun_path, path);
        (void) unlink(path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof(sa)));
        ASSERT_OK(listen(fd, backlog));
        return fd;
}

static int connect_raw(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        strcpy(sa.sun_path, path);
        ASSERT_OK(connect(fd, (struct sockaddr *) &sa, sizeof(sa)));
        return fd;
}

/* Reads one NUL-terminated message from fd (blocking); false at EOF. */
static bool read_message(int fd, char *buf, size_t size) {
        size_t n = 0;

        for (;;) {
                ssize_t k = read(fd, buf + n, 1);

                if (k <= 0)
                        return false;
                if (buf[n] == 0)
                        return true;
                if (++n >= size)
                        TEST_FAIL("message too long");
        }
}

/* Writes text and its NUL. */
static void write_message(int fd, const char *text) {
        ASSERT_EQ(write(fd, text, strlen(text) + 1), (ssize_t) strlen(text) + 1);
}

/* Whether the peer of fd hung up within a second (after whatever it had sent). */
static bool sees_hangup(int fd) {
        char buf[4096];

        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };

                if (poll(&p, 1, 1000) <= 0)
                        return false;
                if (read(fd, buf, sizeof(buf)) <= 0)
                        return true;
        }
}

/* Waits (at most a second) until the client's connection has something for it to read. */
static void wait_readable(TsmClient *c) {
        struct pollfd p = { .fd = tsm_client_get_fd(c), .events = POLLIN };

        ASSERT_EQ(poll(&p, 1, 1000), 1);
}

/* The connection is lost, and its fd number still the client's (tsm.h): open until a
 * reconnect or free, so that a loop still watching it never watches an fd opened since. */
static bool connection_lost(TsmClient *c) {
        int fd = tsm_client_get_fd(c);

        return c->vc && !varlink_client_is_connected(c->vc) && fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}

/* A client connected to a fresh socket, and the server's end of that connection. */
static TsmClient *connect_pair(char *path, size_t size, int *ret_listen_fd, int *ret_server_fd) {
        TsmClient *c = NULL;

        *ret_listen_fd = listen_at(path, size, 4);
        ASSERT_OK(tsm_client_connect(path, &c));
        *ret_server_fd = accept4(*ret_listen_fd, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(*ret_server_fd >= 0);
        return c;
}

static void pair_done(TsmClient *c, const char *path, int listen_fd, int server_fd) {
        tsm_client_free(c);
        close(server_fd);
        close(listen_fd);
        unlink(path);
}

/* The server's end of a pair whose client freed itself sees it hang up; then the rest goes. */
static void freed_pair_done(const char *path, int listen_fd, int server_fd) {
        ASSERT_TRUE(sees_hangup(server_fd));
        pair_done(NULL, path, listen_fd, server_fd);
}

/* c closes context ctx, answered by the peer at server_fd, which reads that CloseContext as the
 * first message it gets: nothing went out before it. */
static void expect_close_context_is_next(TsmClient *c, int server_fd, uint64_t ctx) {
        char buf[4096];

        write_message(server_fd, "{\"parameters\":{}}");
        ASSERT_OK(tsm_context_close(c, ctx));
        ASSERT_TRUE(read_message(server_fd, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "CloseContext"));
}

typedef struct Acceptor {
        int listen_fd;
        unsigned delay_msec;
        unsigned n;
        int fds[4];
} Acceptor;

static void *acceptor_thread(void *userdata) {
        Acceptor *a = userdata;

        sleep_msec(a->delay_msec);
        for (unsigned i = 0; i < a->n; i++)
                a->fds[i] = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        return NULL;
}

/* tsm_client_connect(NULL): $TSMD_GUEST_SOCKET when set and not empty; empty is unset, the
 * default /run/tsmd/io.tsmd.Guest (in a mount namespace of the test's own, with a tmpfs on
 * /run: a tsmd of the host's is not reached). An empty address itself is malformed. */
TEST(connect_default_address) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = "/run/tsmd/io.tsmd.Guest" };
        static const char *const values[] = { NULL, "" };
        TsmClient *c = NULL;
        int l;

        if (geteuid() != 0)
                SKIP("needs root (a mount namespace)");
        if (unshare(CLONE_NEWNS) < 0)
                SKIP("cannot create a mount namespace: %s", strerror(errno));
        ASSERT_OK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
        ASSERT_OK(mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"));
        ASSERT_OK(mkdir("/run/tsmd", 0755));
        l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(l >= 0);
        ASSERT_OK(bind(l, (struct sockaddr *) &sa, sizeof(sa)));
        ASSERT_OK(listen(l, 4));

        for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                struct sockaddr_un peer = {};
                socklen_t len = sizeof(peer);
                int s;

                if (values[i])
                        ASSERT_OK(setenv("TSMD_GUEST_SOCKET", values[i], 1));
                else
                        ASSERT_OK(unsetenv("TSMD_GUEST_SOCKET"));
                ASSERT_OK(tsm_client_connect(NULL, &c));
                ASSERT_OK(getpeername(tsm_client_get_fd(c), (struct sockaddr *) &peer, &len));
                ASSERT_STREQ(peer.sun_path, sa.sun_path);
                s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
                ASSERT_TRUE(s >= 0);
                c = tsm_client_free(c);
                close(s);
        }
        ASSERT_ERRNO(tsm_client_connect("", &c), EINVAL);
        ASSERT_NULL(c);
        close(l);
}

/* tsmd's backlog is full: connecting waits until tsmd accepts, and then is connected. */
TEST(connect_waits_for_full_backlog) {
        char path[108];
        Acceptor a = { .delay_msec = 300, .n = 2 };
        pthread_t thread;
        struct sockaddr_un peer;
        socklen_t len = sizeof(peer);
        TsmClient *c = NULL;
        uint64_t start;
        int first;

        a.listen_fd = listen_at(path, sizeof(path), 0);
        first = connect_raw(path); /* fills a backlog of 0 */
        ASSERT_EQ(pthread_create(&thread, NULL, acceptor_thread, &a), 0);

        start = now_usec();
        ASSERT_OK(tsm_client_connect(path, &c));
        ASSERT_GE(now_usec() - start, 200 * 1000ULL);
        ASSERT_OK(getpeername(tsm_client_get_fd(c), (struct sockaddr *) &peer, &len));

        ASSERT_EQ(pthread_join(thread, NULL), 0);
        ASSERT_TRUE(a.fds[0] >= 0 && a.fds[1] >= 0);
        /* The server's end is this client's connection: it sees what the client sends. */
        ASSERT_OK(tsm_client_watch_events(c, (TsmEventFunc) abort, NULL, NULL));
        {
                char buf[4096];

                ASSERT_TRUE(read_message(a.fds[1], buf, sizeof(buf)));
                ASSERT_NOT_NULL(strstr(buf, "io.tsmd.Guest.WatchEvents"));
        }
        tsm_client_free(c);
        close(first);
        close(a.fds[0]);
        close(a.fds[1]);
        close(a.listen_fd);
        unlink(path);
}

/* A backlog that stays full: -ETIMEDOUT after the connect timeout, not a dead socket. */
TEST(connect_full_backlog_times_out) {
        VarlinkClient *vc = NULL;
        char path[108];
        uint64_t start;
        int l, first;

        l = listen_at(path, sizeof(path), 0);
        first = connect_raw(path);

        start = now_usec();
        ASSERT_ERRNO(varlink_client_connect_full(path, 200 * 1000ULL, &vc), ETIMEDOUT);
        ASSERT_GE(now_usec() - start, 200 * 1000ULL);
        ASSERT_LE(now_usec() - start, 2 * 1000000ULL);
        ASSERT_NULL(vc);

        close(first);
        close(l);
        unlink(path);
}

/* tsm_client_reconnect() waits out a full backlog for the client's timeout, as its calls do
 * (tsm.h: the timeout is kept across a reconnect), not for the default 45 s. */
TEST(reconnect_waits_for_the_clients_timeout) {
        char path[108];
        TsmClient *c = NULL;
        uint64_t start;
        int l, s, first;

        l = listen_at(path, sizeof(path), 0);
        ASSERT_OK(tsm_client_connect(path, &c));
        s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(s >= 0);
        first = connect_raw(path); /* fills the backlog of 0, never accepted */

        ASSERT_OK(tsm_client_set_timeout(c, 200 * 1000ULL));
        start = now_usec();
        ASSERT_ERRNO(tsm_client_reconnect(c), ETIMEDOUT);
        ASSERT_GE(now_usec() - start, 200 * 1000ULL);
        ASSERT_LE(now_usec() - start, 10 * 1000000ULL); /* 50 times the timeout; the default is 45 s */
        ASSERT_ERRNO(tsm_client_get_fd(c), ENOTCONN);

        close(first);
        pair_done(c, path, l, s);
}

typedef struct LateReply {
        int fd;
        unsigned delay_msec;
} LateReply;

static void *late_reply_thread(void *userdata) {
        LateReply *r = userdata;
        char buf[4096];

        if (read_message(r->fd, buf, sizeof(buf))) {
                sleep_msec(r->delay_msec);
                write_message(r->fd, "{\"parameters\":{}}");
        }
        return NULL;
}

static uint64_t cpu_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

/* Timeouts too long to add to the clock or to pass to poll() in milliseconds mean "long": the
 * call waits for its reply, neither timing out at once (a wrapped deadline) nor spinning (a
 * poll() timeout wrapped to 0) nor failing. */
TEST(huge_timeouts_wait) {
        static const uint64_t timeouts[] = {
                UINT64_MAX, UINT64_MAX - 1, INT64_MAX, (1ULL << 32) * 1000ULL, (1ULL << 31) * 1000ULL,
        };

        for (size_t i = 0; i < ELEMENTSOF(timeouts); i++) {
                char path[108];
                int l, s;
                TsmClient *c = connect_pair(path, sizeof(path), &l, &s);
                LateReply r = { .fd = s, .delay_msec = 300 };
                pthread_t thread;
                uint64_t cpu;

                ASSERT_OK(tsm_client_set_timeout(c, timeouts[i]));
                ASSERT_EQ(pthread_create(&thread, NULL, late_reply_thread, &r), 0);
                cpu = cpu_usec();
                if (tsm_context_close(c, 1) < 0)
                        TEST_FAIL("timeout %" PRIu64 ": %s", timeouts[i], tsm_client_get_error_name(c));
                /* A spin burns the whole 300 ms. */
                ASSERT_LE(cpu_usec() - cpu, 150 * 1000ULL);
                ASSERT_EQ(pthread_join(thread, NULL), 0);
                ASSERT_TRUE(tsm_client_get_fd(c) >= 0);
                pair_done(c, path, l, s);
        }
}

/* The same after tsmd violated the protocol. */
TEST(protocol_error_closes_connection) {
        char path[108], *reply = NULL;
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        write_message(s, "this is not JSON");
        ASSERT_ERRNO(tsm_client_call_json(c, "io.tsmd.Guest.OpenContext", NULL, &reply), EPROTO);
        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Protocol");
        ASSERT_TRUE(connection_lost(c));
        ASSERT_TRUE(sees_hangup(s));
        /* From now on every entry point says -ENOTCONN, and names it as tsm.h's table does:
         * the loop's, too, whose name was the earlier failure's. */
        ASSERT_ERRNO(tsm_client_process(c), ENOTCONN);
        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Disconnected");
        pair_done(c, path, l, s);
}

typedef struct AsyncResult {
        unsigned n;
        int error;
        char *name;
} AsyncResult;

static void on_response_record(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        AsyncResult *r = userdata;

        r->n++;
        r->error = error;
        free(r->name);
        r->name = tsm_client_get_error_name(c) ? strdup(tsm_client_get_error_name(c)) : NULL;
}

/* No error tsmd sends maps to what libtsm reserves for a lost connection (-ECONNRESET,
 * -ENOTCONN, -ETIMEDOUT, -EPROTO) or a freed client (-ECANCELED): only a lost connection
 * gives those, and tsm_client_get_fd() fails exactly then. */
TEST(peer_errors_never_look_local) {
        static const struct {
                const char *reply;
                int error;
        } cases[] = {
                { "{\"error\":\"io.tsmd.Guest.BackendError\",\"parameters\":{\"name\":\"EPROTO\",\"errno\":71}}", EIO },
                { "{\"error\":\"io.tsmd.Guest.BackendError\",\"parameters\":{\"name\":\"ECONNRESET\",\"errno\":104}}", EIO },
                { "{\"error\":\"io.tsmd.Guest.BackendError\",\"parameters\":{\"name\":\"EDEADLK\",\"errno\":35}}", EIO },
                { "{\"error\":\"io.tsmd.System\",\"parameters\":{\"errno\":125}}", EIO },
                { "{\"error\":\"io.tsmd.System\",\"parameters\":{\"errno\":107}}", EIO },
                { "{\"error\":\"io.tsmd.System\",\"parameters\":{\"errno\":110}}", EIO },
                { "{\"error\":\"io.tsmd.Guest.BackendError\",\"parameters\":{\"name\":\"EALREADY\",\"errno\":114}}", EALREADY },
                { "{\"error\":\"io.tsmd.Guest.Timeout\",\"parameters\":{\"pciAddress\":\"0000:01:00.0\"}}", ETIME },
                { "{\"error\":\"org.varlink.service.ExpectedMore\"}", EBADE },
                { "{\"error\":\"io.tsmd.Disconnected\"}", EBADR },
                { "{\"error\":\"io.tsmd.TimedOut\"}", EBADR },
                { "{\"error\":\"io.tsmd.Protocol\"}", EBADR },
        };
        char path[108];
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                AsyncResult a = {};
                char buf[4096];

                /* A blocking call. */
                write_message(s, cases[i].reply);
                if (tsm_context_close(c, 1) != -cases[i].error)
                        TEST_FAIL("%s: not -%d", cases[i].reply, cases[i].error);
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                ASSERT_TRUE(tsm_client_get_fd(c) >= 0);

                /* An asynchronous one. */
                ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_record, &a, NULL));
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                write_message(s, cases[i].reply);
                while (a.n == 0) {
                        wait_readable(c);
                        ASSERT_GE(tsm_client_process(c), 0);
                }
                if (a.error != -cases[i].error)
                        TEST_FAIL("%s: async %d, not -%d", cases[i].reply, a.error, cases[i].error);
                ASSERT_TRUE(tsm_client_get_fd(c) >= 0);
                free(a.name);
        }

        /* A connection really lost still says so, by name, to an asynchronous call too. */
        {
                AsyncResult a = {};

                ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_record, &a, NULL));
                shutdown(s, SHUT_RDWR);
                while (a.n == 0) {
                        wait_readable(c);
                        (void) tsm_client_process(c);
                }
                ASSERT_ERRNO(a.error, ECONNRESET);
                ASSERT_STREQ(a.name, "io.tsmd.Disconnected");
                ASSERT_TRUE(connection_lost(c));
                free(a.name);
        }
        pair_done(c, path, l, s);
}

/* SECURITY: an error name reaches the VMM's logs and tsmctl's output
 * (tsm_client_get_error_name()): one that is not a Varlink error name (an interface name, '.',
 * [A-Z][A-Za-z0-9]*) is a broken peer, -EPROTO with the connection closed, not an answer whose
 * escape sequences or newlines the VMM prints. Names the grammar allows still pass. */
TEST(malformed_error_names_are_protocol_errors) {
        static const char *const bad[] = {
                "\\u001b[2J\\u001b[31mio.tsmd.Guest.Denied",
                "io.tsmd.Guest.Denied\\u001b[0m",
                "io.tsmd.Guest.Den\\nied",
                "io.tsmd.Guest.Denied\\u0000junk",
                "io.tsmd.Guest.denied",
                "io.tsmd.Guest.",
                "io.tsmd.Guest.Den-ied",
                "io.tsmd.Guest.Dé",
                "Denied",
                "io.Denied",
                ".io.tsmd.Denied",
                "io..tsmd.Denied",
                "io.-tsmd.Denied",
                "io.tsmd-.Denied",
                "1o.tsmd.Denied",
                "io tsmd.Denied",
        };
        static const char *const good[] = {
                "io.systemd.UserDatabase.NoRecordFound",
                "com.example-1.x--y.E2",
        };
        /* "io.tsmd.AAA...": as long as a name may be, then one byte longer. */
        char longest[VARLINK_METHOD_NAME_MAX + 2];

        memset(longest, 'A', VARLINK_METHOD_NAME_MAX);
        memcpy(longest, "io.tsmd.", strlen("io.tsmd."));
        longest[VARLINK_METHOD_NAME_MAX] = 0;

        for (size_t i = 0; i < ELEMENTSOF(bad) + 2; i++) {
                char path[108], reply[512 + sizeof(longest)];
                const char *name;
                AsyncResult a = {};
                int l, s;
                TsmClient *c = connect_pair(path, sizeof(path), &l, &s);
                bool async = i == ELEMENTSOF(bad) + 1;

                if (i < ELEMENTSOF(bad))
                        name = bad[i];
                else {
                        /* One byte over the longest name; and an asynchronous call. */
                        name = async ? "io.tsmd.Guest.Den\\u007fied" : strcat(longest, "A");
                }
                snprintf(reply, sizeof(reply), "{\"error\":\"%s\",\"parameters\":{}}", name);
                write_message(s, reply);
                if (async) {
                        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_record, &a, NULL));
                        while (a.n == 0) {
                                wait_readable(c);
                                (void) tsm_client_process(c);
                        }
                        ASSERT_ERRNO(a.error, EPROTO);
                        ASSERT_STREQ(a.name, "io.tsmd.Protocol");
                        free(a.name);
                } else if (tsm_context_close(c, 1) != -EPROTO)
                        TEST_FAIL("%s: taken for an answer", name);
                else
                        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Protocol");
                ASSERT_TRUE(connection_lost(c));
                ASSERT_TRUE(sees_hangup(s));
                pair_done(c, path, l, s);
        }

        longest[VARLINK_METHOD_NAME_MAX] = 0;
        for (size_t i = 0; i <= ELEMENTSOF(good); i++) {
                char path[108], reply[512 + sizeof(longest)], buf[4096];
                const char *name = i < ELEMENTSOF(good) ? good[i] : longest;
                int l, s;
                TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

                snprintf(reply, sizeof(reply), "{\"error\":\"%s\",\"parameters\":{}}", name);
                write_message(s, reply);
                ASSERT_ERRNO(tsm_context_close(c, 1), EBADR);
                ASSERT_STREQ(tsm_client_get_error_name(c), name);
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                ASSERT_TRUE(tsm_client_get_fd(c) >= 0);
                pair_done(c, path, l, s);
        }
}

static void noop_response(TsmClient *c, int error, const void *response, size_t len, void *userdata);

/* Reads one message with recvmsg(), byte by byte, and says how many fds came with it. */
static bool read_message_fds(int fd, char *buf, size_t size, unsigned *ret_n_fds) {
        size_t n = 0;

        *ret_n_fds = 0;
        for (;;) {
                union {
                        struct cmsghdr cmsg;
                        uint8_t buf[CMSG_SPACE(sizeof(int) * 8)];
                } control;
                struct iovec iov = { .iov_base = buf + n, .iov_len = 1 };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                                     .msg_controllen = sizeof(control) };

                if (recvmsg(fd, &mh, MSG_CMSG_CLOEXEC) <= 0)
                        return false;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

                                for (size_t i = 0; i < k; i++) {
                                        int f;

                                        memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                                        close(f);
                                }
                                *ret_n_fds += (unsigned) k;
                        }
                if (buf[n] == 0)
                        return true;
                if (++n >= size)
                        TEST_FAIL("message too long");
        }
}

/* A blocking call with an fd that cannot be queued (the output queue is full) fails with -ENOBUFS and leaves the connection as it was: pending calls are answered
 * later, and the fd is neither leaked nor sent with a later call. */
TEST(full_output_queue_keeps_connection) {
        VarlinkLimits limits = VARLINK_LIMITS_DEFAULT;
        char path[108], buf[16384], big[2900];
        AsyncResult first = {};
        unsigned n_calls = 0, n_fds, fds_before, n_replied = 0;
        int l, s, one;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        memset(big, 'x', sizeof(big));

        /* Output waits in the queue (held there, beyond the calls libtsm has at tsmd at a
         * time); then the queue is full. */
        ASSERT_OK(tsm_client_set_max_pending_requests(c, 1000));
        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_record, &first, NULL));
        n_calls++;
        while (n_calls < 100) {
                ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", big, sizeof(big), 64, noop_response, NULL, NULL));
                n_calls++;
        }
        ASSERT_TRUE(varlink_client_get_n_held(c->vc) > 0);
        limits.max_output_size = 1;
        ASSERT_OK(varlink_client_set_limits(c->vc, &limits));
        ASSERT_ERRNO(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, noop_response, NULL, NULL), ENOBUFS);

        one = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(one >= 0);
        fds_before = test_count_fds();
        ASSERT_ERRNO(tsm_device_attach(c, 1, 1, "0000:01:00.0", one, NULL), ENOBUFS);
        ASSERT_NULL(tsm_client_get_error_name(c));
        ASSERT_EQ(test_count_fds(), fds_before); /* its duplicate was closed */
        ASSERT_TRUE(tsm_client_get_fd(c) >= 0);
        ASSERT_EQ(first.n, 0U);
        limits.max_output_size = VARLINK_LIMITS_DEFAULT.max_output_size;
        ASSERT_OK(varlink_client_set_limits(c->vc, &limits));

        /* tsmd reads again: every queued call arrives without an fd, and is answered. */
        while (n_replied < n_calls) {
                struct pollfd p = { .fd = s, .events = POLLIN };

                if (poll(&p, 1, 0) == 1) {
                        ASSERT_TRUE(read_message_fds(s, buf, sizeof(buf), &n_fds));
                        ASSERT_EQ(n_fds, 0U);
                        write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}");
                        n_replied++;
                        continue;
                }
                p = (struct pollfd) { .fd = tsm_client_get_fd(c), .events = (short) tsm_client_get_events(c) };
                ASSERT_EQ(poll(&p, 1, 1000), 1);
                ASSERT_GE(tsm_client_process(c), 0);
        }
        ASSERT_OK(tsm_client_set_timeout(c, 5 * 1000000ULL));
        write_message(s, "{\"parameters\":{}}");
        ASSERT_OK(tsm_context_close(c, 1)); /* runs the callbacks of the replies read with it */
        ASSERT_EQ(first.n, 1U);
        ASSERT_OK(first.error);
        ASSERT_TRUE(read_message_fds(s, buf, sizeof(buf), &n_fds));
        ASSERT_NOT_NULL(strstr(buf, "CloseContext"));
        ASSERT_EQ(n_fds, 0U);
        close(one);
        pair_done(c, path, l, s);
}

typedef struct BigWriter {
        int fd;
        char *text;
        size_t len;
} BigWriter;

/* Writes text and its NUL after the call arrived, until done or the reader hung up. */
static void *big_writer_thread(void *userdata) {
        BigWriter *w = userdata;
        char buf[4096];
        size_t done = 0;

        if (!read_message(w->fd, buf, sizeof(buf)))
                return NULL;
        while (done < w->len + 1) {
                ssize_t n = send(w->fd, w->text + done, w->len + 1 - done, MSG_NOSIGNAL);

                if (n <= 0)
                        break;
                done += (size_t) n;
        }
        return NULL;
}

/* A blocking call on a fresh client gets text as its reply; returns the call's result. */
static int call_with_reply(char *text, bool tool, char **ret_json) {
        char path[108];
        int l, s, r;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);
        BigWriter w = { .fd = s, .text = text, .len = strlen(text) };
        pthread_t thread;

        ASSERT_OK(tsm_client_set_timeout(c, 10 * 1000000ULL));
        ASSERT_EQ(pthread_create(&thread, NULL, big_writer_thread, &w), 0);
        if (tool)
                r = tsm_client_call_json(c, "io.tsmd.Admin.ListDevices", NULL, ret_json);
        else
                r = tsm_context_close(c, 1);
        if (r == -EPROTO)
                ASSERT_TRUE(connection_lost(c));
        shutdown(s, SHUT_RDWR);
        ASSERT_EQ(pthread_join(thread, NULL), 0);
        pair_done(c, path, l, s);
        return r;
}

/* "{"parameters":{"x":[E,...]}}" with n elements E in it ("[]", "0"): n + 3 values. */
static char *array_reply(const char *element, size_t n) {
        static const char head[] = "{\"parameters\":{\"x\":[", tail[] = "]}}";
        char *t = malloc(sizeof(head) + n * (strlen(element) + 1) + sizeof(tail)), *p;

        ASSERT_NOT_NULL(t);
        p = stpcpy(t, head);
        for (size_t i = 0; i < n; i++)
                p = stpcpy(i > 0 ? stpcpy(p, ",") : p, element);
        strcpy(p, tail);
        return t;
}

/* "{"parameters":{"x":[[...1...]]}}": depth levels in all. */
static char *deep_reply(unsigned depth) {
        char *t = malloc(64 + 2 * depth), *p;

        ASSERT_NOT_NULL(t);
        ASSERT_GE(depth, 3U);
        p = stpcpy(t, "{\"parameters\":{\"x\":");
        for (unsigned i = 2; i < depth; i++)
                *p++ = '[';
        *p++ = '1';
        for (unsigned i = 2; i < depth; i++)
                *p++ = ']';
        strcpy(p, "}}");
        return t;
}

/* SECURITY: a reply larger or deeper than any io.tsmd.Guest reply is a protocol violation: a
 * compromised worker cannot make a VMM parse 16 MiB of nested arrays (some 800 MiB of json-c
 * objects). A tool calling another interface gets Varlink's defaults, but for the values a
 * reply may hold. */
TEST(reply_limits) {
        char *text, *json = NULL;

        /* 1 MiB of empty arrays (16 MiB would do the same, only slower without the limit). */
        text = array_reply("[]", 1U << 19);
        ASSERT_ERRNO(call_with_reply(text, false, NULL), EPROTO);
        ASSERT_OK(call_with_reply(text, true, &json));
        ASSERT_EQ(strlen(json), strlen(text) - strlen("{\"parameters\":}"));
        free(json);
        free(text);

        /* A tool's reply holds at most TSM_REPLY_JSON_VALUES_MAX values, whatever its size: 2 MiB
         * of zeros one over was parsed into some 150 MiB of json-c objects (16 MiB, 1.2 GiB). */
        text = array_reply("0", TSM_REPLY_JSON_VALUES_MAX - 2);
        ASSERT_ERRNO(call_with_reply(text, true, &json), EPROTO);
        free(text);
        text = array_reply("0", TSM_REPLY_JSON_VALUES_MAX - 3);
        ASSERT_OK(call_with_reply(text, true, &json));
        free(json);
        free(text);

        /* Deeper than any reply of the interface, and as deep as it allows. */
        text = deep_reply(TSM_GUEST_DEPTH_MAX + 1);
        ASSERT_ERRNO(call_with_reply(text, false, NULL), EPROTO);
        ASSERT_OK(call_with_reply(text, true, &json));
        free(json);
        free(text);
        text = deep_reply(TSM_GUEST_DEPTH_MAX);
        ASSERT_OK(call_with_reply(text, false, NULL));
        free(text);
}

typedef struct Replier {
        int fd;
        const char *text;
} Replier;

static void *replier_thread(void *userdata) {
        Replier *r = userdata;
        char buf[4096];

        if (read_message(r->fd, buf, sizeof(buf)))
                ASSERT_EQ(send(r->fd, r->text, strlen(r->text) + 1, MSG_NOSIGNAL), (ssize_t) strlen(r->text) + 1);
        return NULL;
}

/* The largest legitimate replies pass: a response of TSM_PRIV_PAYLOAD_MAX bytes, and a device
 * with many scopes. */
TEST(largest_replies_pass) {
        size_t n = TSM_PRIV_PAYLOAD_MAX, len = 0;
        uint8_t *data = malloc(n), *resp = malloc(n);
        char path[108], *b64 = NULL, *text;
        TsmDeviceInfo *info = NULL;
        pthread_t thread;
        Replier rp;
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_NOT_NULL(data);
        ASSERT_NOT_NULL(resp);
        for (size_t i = 0; i < n; i++)
                data[i] = (uint8_t) (i * 7 + 3);
        ASSERT_OK(base64_encode(data, n, &b64));
        ASSERT_GE(asprintf(&text, "{\"parameters\":{\"response\":\"%s\",\"scopeNumber\":1,"
                                  "\"auditSequence\":9007199254740991}}", b64), 0);
        rp = (Replier) { .fd = s, .text = text };
        ASSERT_EQ(pthread_create(&thread, NULL, replier_thread, &rp), 0);
        ASSERT_OK(tsm_guest_request(c, 1, 1, "info", "x", 1, resp, n, &len));
        ASSERT_EQ(pthread_join(thread, NULL), 0);
        ASSERT_EQ(len, n);
        ASSERT_MEMEQ(resp, data, n);
        free(text);

        /* 64 scopes with 200-byte descriptions. */
        {
                size_t size = 64 * 512 + 256, pos;
                char desc[201];

                memset(desc, 'd', 200);
                desc[200] = 0;
                text = malloc(size);
                ASSERT_NOT_NULL(text);
                pos = (size_t) snprintf(text, size, "{\"parameters\":{\"backend\":\"emulated\",\"tsm\":\"emu0\","
                                                    "\"uapi\":\"emulated\",\"scopes\":[");
                for (unsigned i = 0; i < 64; i++)
                        pos += (size_t) snprintf(text + pos, size - pos,
                                                 "%s{\"name\":\"scope-%u\",\"description\":\"%s\",\"number\":%u,"
                                                 "\"maxRequestSize\":65536,\"maxResponseSize\":65536,\"allowed\":true}",
                                                 i > 0 ? "," : "", i, desc, i);
                ASSERT_LE(pos + 4, size);
                strcpy(text + pos, "]}}");
        }
        rp = (Replier) { .fd = s, .text = text };
        ASSERT_EQ(pthread_create(&thread, NULL, replier_thread, &rp), 0);
        ASSERT_OK(tsm_device_attach(c, 1, 1, "0000:01:00.0", -1, &info));
        ASSERT_EQ(pthread_join(thread, NULL), 0);
        ASSERT_EQ(tsm_device_info_get_n_scopes(info), 64U);
        ASSERT_EQ(strlen(tsm_scope_get_description(tsm_device_info_find_scope(info, "scope-63"))), 200U);
        tsm_device_info_free(info);
        free(text);
        free(b64);
        free(data);
        free(resp);
        pair_done(c, path, l, s);
}

/* Lowers RLIMIT_NOFILE to the lowest free fd: no fd can be opened or received until it is set
 * back to the limit it had, in *ret_saved. */
static void fill_fd_table(struct rlimit *ret_saved) {
        struct rlimit l;
        int lowest = fcntl(0, F_DUPFD_CLOEXEC, 0);

        ASSERT_TRUE(lowest >= 0);
        close(lowest);
        ASSERT_OK(getrlimit(RLIMIT_NOFILE, ret_saved));
        l = *ret_saved;
        l.rlim_cur = (rlim_t) lowest;
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &l));
}

/* Sends text and its NUL with fd attached. */
static void write_message_fd(int sock, const char *text, int fd) {
        char control[CMSG_SPACE(sizeof(int))] = {};
        struct iovec iov = { .iov_base = (void *) text, .iov_len = strlen(text) + 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                             .msg_controllen = sizeof(control) };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
        ASSERT_EQ(sendmsg(sock, &mh, MSG_NOSIGNAL), (ssize_t) strlen(text) + 1);
}

/* The VMM's fd table is full (RLIMIT_NOFILE) when tsmd sends it a context's iommufd: the call
 * fails with -EMFILE, libtsm closes the context it cannot hand out, and the connection (with
 * every other context) goes on; before, the lost fd was taken for tsmd's protocol violation. */
TEST(emfile_fails_the_call_only) {
        char path[108], buf[4096];
        struct rlimit saved;
        uint64_t ctx = 0;
        int iommufd = -1, sock, r;
        int ls, s;
        TsmClient *c = connect_pair(path, sizeof(path), &ls, &s);

        sock = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(sock >= 0);
        write_message_fd(s, "{\"parameters\":{\"context\":5,\"fileDescriptor\":0,\"reclaimToken\":null}}", sock);
        write_message(s, "{\"parameters\":{}}"); /* CloseContext's */
        close(sock);

        fill_fd_table(&saved);
        r = tsm_context_open(c, &ctx, &iommufd);
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
        ASSERT_ERRNO(r, EMFILE);
        ASSERT_EQ(ctx, 0U);
        ASSERT_EQ(iommufd, -1);
        ASSERT_NULL(tsm_client_get_error_name(c));
        ASSERT_TRUE(tsm_client_get_fd(c) >= 0);

        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "OpenContext"));
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "CloseContext"));
        ASSERT_NOT_NULL(strstr(buf, "\"context\":5"));

        /* The connection goes on. */
        write_message(s, "{\"parameters\":{}}");
        ASSERT_OK(tsm_context_close(c, 6));
        pair_done(c, path, ls, s);
}

/* The same, but the connection is lost while libtsm closes the context it cannot hand out:
 * the call says so (-ECONNRESET, io.tsmd.Disconnected), not -EMFILE, after which tsm.h
 * promises the connection goes on. */
TEST(emfile_then_connection_lost) {
        char path[108];
        struct rlimit saved;
        uint64_t ctx = 0;
        int iommufd = -1, sock, r;
        int ls, s;
        TsmClient *c = connect_pair(path, sizeof(path), &ls, &s);

        sock = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(sock >= 0);
        write_message_fd(s, "{\"parameters\":{\"context\":5,\"fileDescriptor\":0,\"reclaimToken\":null}}", sock);
        close(sock);
        ASSERT_OK(shutdown(s, SHUT_WR)); /* no answer to CloseContext: tsmd went away */

        fill_fd_table(&saved);
        r = tsm_context_open(c, &ctx, &iommufd);
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
        ASSERT_ERRNO(r, ECONNRESET);
        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Disconnected");
        ASSERT_TRUE(connection_lost(c));
        ASSERT_EQ(ctx, 0U);
        ASSERT_EQ(iommufd, -1);
        pair_done(c, path, ls, s);
}

/* Whether the last write end of the pipe whose read end is fd was closed. */
static bool pipe_widowed(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        return poll(&p, 1, 0) == 1 && (p.revents & POLLHUP);
}

/* SECURITY: fds tsmd sends with a reply that names none (or more than it names) are closed as
 * soon as the call is done, not kept in the VMM until its next call, which may be hours away
 * (a write end keeping a pipe alive, a file pinning a mount). Blocking and asynchronous. */
TEST(unexpected_fds_closed) {
        char path[108], buf[4096];
        AsyncResult a = {};
        int ls, s, p[2];
        TsmClient *c = connect_pair(path, sizeof(path), &ls, &s);

        ASSERT_OK(pipe2(p, O_CLOEXEC));
        write_message_fd(s, "{\"parameters\":{}}", p[1]);
        close(p[1]);
        ASSERT_OK(tsm_context_close(c, 1));
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_TRUE(pipe_widowed(p[0]));
        close(p[0]);

        ASSERT_OK(pipe2(p, O_CLOEXEC));
        write_message_fd(s, "{\"error\":\"io.tsmd.Guest.NoSuchContext\",\"parameters\":{\"context\":1}}", p[1]);
        close(p[1]);
        ASSERT_ERRNO(tsm_context_close(c, 1), ENOENT);
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_TRUE(pipe_widowed(p[0]));
        close(p[0]);

        ASSERT_OK(pipe2(p, O_CLOEXEC));
        write_message_fd(s, "{\"parameters\":{\"response\":\"eA==\"}}", p[1]);
        close(p[1]);
        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_record, &a, NULL));
        for (unsigned i = 0; i < 100 && a.n == 0; i++) {
                struct pollfd pf = { .fd = tsm_client_get_fd(c), .events = (short) tsm_client_get_events(c) };

                (void) poll(&pf, 1, 100);
                ASSERT_GE(tsm_client_process(c), 0);
        }
        ASSERT_EQ(a.n, 1U);
        ASSERT_OK(a.error);
        ASSERT_TRUE(pipe_widowed(p[0]));
        close(p[0]);
        free(a.name);
        pair_done(c, path, ls, s);
}

static int on_more_noop(TsmClient *c, const char *reply, bool continues, void *userdata) {
        return 0;
}

/* The same for tsm_client_call_more_json(), whose replies name no fd: one with its last reply
 * stayed open until the next call, and one with an error too. */
TEST(more_call_fds_closed) {
        static const char *const last[] = {
                "{\"parameters\":{}}",
                "{\"error\":\"io.tsmd.Guest.NoSuchVDevice\",\"parameters\":{}}",
        };

        for (size_t i = 0; i < ELEMENTSOF(last); i++) {
                char path[108], buf[4096];
                int ls, s, p[2];
                TsmClient *c = connect_pair(path, sizeof(path), &ls, &s);
                int r;

                ASSERT_OK(pipe2(p, O_CLOEXEC));
                write_message(s, "{\"continues\":true,\"parameters\":{}}");
                write_message_fd(s, last[i], p[1]);
                close(p[1]);
                r = tsm_client_call_more_json(c, "io.tsmd.Admin.FollowAudit", NULL, on_more_noop, NULL);
                ASSERT_EQ(r, i == 0 ? 0 : -ENOENT);
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                if (!pipe_widowed(p[0]))
                        TEST_FAIL("%s: its fd still held by the client", last[i]);
                close(p[0]);
                pair_done(c, path, ls, s);
        }
}

typedef struct StreamFdPeer {
        int fd, pipe_read;
        bool widowed; /* the client closed the fd before the stream's next reply */
} StreamFdPeer;

/* Sends a reply of the stream with a pipe's write end, waits (up to 5 s) for the client to
 * close it, then ends the stream. */
static void *stream_fd_peer_thread(void *userdata) {
        StreamFdPeer *peer = userdata;
        struct pollfd p = { .events = POLLIN };
        char buf[4096];
        int w[2];

        ASSERT_TRUE(read_message(peer->fd, buf, sizeof(buf)));
        ASSERT_OK(pipe2(w, O_CLOEXEC));
        p.fd = peer->pipe_read = w[0];
        write_message_fd(peer->fd, "{\"continues\":true,\"parameters\":{}}", w[1]);
        close(w[1]);
        peer->widowed = poll(&p, 1, 5000) == 1 && (p.revents & POLLHUP);
        write_message(peer->fd, "{\"parameters\":{}}");
        return NULL;
}

/* And one with a reply before the last is closed once its callback ran, not when the next
 * reply comes, which on a stream may be hours away. */
TEST(more_call_fd_closed_in_stream) {
        char path[108];
        pthread_t thread;
        int ls, s;
        TsmClient *c = connect_pair(path, sizeof(path), &ls, &s);
        StreamFdPeer peer = { .fd = s };

        ASSERT_EQ(pthread_create(&thread, NULL, stream_fd_peer_thread, &peer), 0);
        ASSERT_OK(tsm_client_call_more_json(c, "io.tsmd.Admin.FollowAudit", NULL, on_more_noop, NULL));
        ASSERT_EQ(pthread_join(thread, NULL), 0);
        ASSERT_TRUE(peer.widowed);
        close(peer.pipe_read);
        pair_done(c, path, ls, s);
}

typedef struct MoreThenRequest {
        AsyncResult request;
        unsigned n_replies;
} MoreThenRequest;

/* Makes an asynchronous call from the first reply of a call with "more". */
static int on_more_request(TsmClient *c, const char *reply, bool continues, void *userdata) {
        MoreThenRequest *m = userdata;

        if (m->n_replies++ == 0)
                ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_record, &m->request,
                                                  NULL));
        return 0;
}

/* tsm_client_call_more_json() delivers, as other blocking calls do, the replies to asynchronous
 * calls its callback made that were read together with its last reply: they are out of the
 * socket, and nothing would wake the VMM's loop for them. An error it ends with stays its
 * error state, whatever those callbacks did to it. */
TEST(replies_read_with_more_call) {
        static const char *const last[] = {
                "{\"parameters\":{}}",
                "{\"error\":\"io.tsmd.Guest.NoSuchVDevice\",\"parameters\":{}}",
        };

        for (size_t i = 0; i < ELEMENTSOF(last); i++) {
                char path[108], answers[512];
                MoreThenRequest m = {};
                int ls, s, n;
                TsmClient *c = connect_pair(path, sizeof(path), &ls, &s);

                /* The stream's first reply, its last, and the request's answer, in one read.
                 * After an error, the request's is one too. */
                n = snprintf(answers, sizeof(answers), "{\"continues\":true,\"parameters\":{}}%c%s%c%s", 0,
                             last[i], 0,
                             i == 0 ? "{\"parameters\":{\"response\":\"eA==\"}}" :
                                      "{\"error\":\"io.tsmd.Guest.NoSuchContext\",\"parameters\":{\"context\":1}}");
                ASSERT_EQ(send(s, answers, (size_t) n + 1, MSG_NOSIGNAL), (ssize_t) n + 1);
                ASSERT_EQ(tsm_client_call_more_json(c, "io.tsmd.Admin.FollowAudit", NULL, on_more_request, &m),
                          i == 0 ? 0 : -ENOENT);
                ASSERT_EQ(m.n_replies, i == 0 ? 2U : 1U);
                ASSERT_EQ(m.request.n, 1U);
                ASSERT_EQ(m.request.error, i == 0 ? 0 : -ENOENT);
                if (i == 0)
                        ASSERT_NULL(tsm_client_get_error_name(c));
                else
                        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Guest.NoSuchVDevice");
                free(m.request.name);
                pair_done(c, path, ls, s);
        }
}

/* Sends text with n fds attached. */
static void write_message_fds(int sock, const char *text, const int *fds, size_t n) {
        union {
                struct cmsghdr cmsg;
                char buf[CMSG_SPACE(sizeof(int) * 16)];
        } control = {};
        struct iovec iov = { .iov_base = (void *) text, .iov_len = strlen(text) + 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = CMSG_SPACE(sizeof(int) * n) };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

        ASSERT_LE(n, 16U);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
        ASSERT_EQ(sendmsg(sock, &mh, MSG_NOSIGNAL), (ssize_t) strlen(text) + 1);
}

/* SECURITY: no message of tsmd's carries more than one fd (OpenContext's iommufd), so more is
 * a protocol violation: a compromised worker must not make the VMM hold up to 253 fds per
 * message. The fds are closed at once, the call fails with -EPROTO, and the connection is
 * closed. Two fds (within the control buffer) and sixteen (beyond it: MSG_CTRUNC). */
TEST(too_many_fds_refused) {
        static const size_t counts[] = { 2, 16 };

        for (size_t i = 0; i < ELEMENTSOF(counts); i++) {
                char path[108];
                int ls, s, rd[16], wr[16];
                uint64_t ctx = 0;
                int iommufd = -1;
                TsmClient *c = connect_pair(path, sizeof(path), &ls, &s);

                for (size_t j = 0; j < counts[i]; j++) {
                        int p[2];

                        ASSERT_OK(pipe2(p, O_CLOEXEC));
                        rd[j] = p[0];
                        wr[j] = p[1];
                }
                /* A reply OpenContext would take, but with more fds than it names. */
                write_message_fds(s, "{\"parameters\":{\"context\":5,\"fileDescriptor\":0,\"reclaimToken\":null}}",
                                  wr, counts[i]);
                for (size_t j = 0; j < counts[i]; j++)
                        close(wr[j]);

                ASSERT_ERRNO(tsm_context_open(c, &ctx, &iommufd), EPROTO);
                ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Protocol");
                ASSERT_EQ(iommufd, -1);
                ASSERT_TRUE(connection_lost(c));
                /* Closed by now, not at tsm_client_free(). */
                for (size_t j = 0; j < counts[i]; j++) {
                        if (!pipe_widowed(rd[j]))
                                TEST_FAIL("%zu fds: fd %zu still held by the client", counts[i], j);
                        close(rd[j]);
                }
                pair_done(c, path, ls, s);
        }
}

/* n pipes: read ends in rd, write ends in wr. */
static void make_pipes(int *rd, int *wr, size_t n) {
        for (size_t j = 0; j < n; j++) {
                int p[2];

                ASSERT_OK(pipe2(p, O_CLOEXEC));
                rd[j] = p[0];
                wr[j] = p[1];
        }
}

/* The same where the message with too many fds comes behind replies tsmd sent before it, all
 * in one read (the kernel glues the bytes of earlier writes to the read that takes a write's
 * fds): those replies are valid and are delivered, and only the calls from the violating
 * message on fail with -EPROTO, the connection closed and the fds with the read. Before, the
 * read failed as a whole and the earlier replies were lost with the connection. First an
 * asynchronous call's reply, then a blocking call's own. */
TEST(replies_before_too_many_fds_delivered) {
        static const char open_reply[] = "{\"parameters\":{\"context\":5,\"fileDescriptor\":0,\"reclaimToken\":null}}";
        char path[108];
        AsyncResult a = {}, b = {};
        int ls, s, rd[2], wr[2];
        uint64_t ctx = 0;
        int iommufd = -1;
        TsmClient *c = connect_pair(path, sizeof(path), &ls, &s);

        make_pipes(rd, wr, 2);
        write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}");
        write_message_fds(s, open_reply, wr, 2);
        close(wr[0]);
        close(wr[1]);
        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_record, &a, NULL));
        ASSERT_ERRNO(tsm_context_open(c, &ctx, &iommufd), EPROTO);
        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Protocol");
        ASSERT_EQ(iommufd, -1);
        ASSERT_TRUE(connection_lost(c));
        ASSERT_EQ(a.n, 1U);
        ASSERT_OK(a.error);
        for (size_t j = 0; j < 2; j++) {
                ASSERT_TRUE(pipe_widowed(rd[j]));
                close(rd[j]);
        }
        free(a.name);
        pair_done(c, path, ls, s);

        /* The blocking call's reply, then the violation, which fails the asynchronous call
         * made from the loop afterwards. */
        c = connect_pair(path, sizeof(path), &ls, &s);
        make_pipes(rd, wr, 2);
        write_message(s, "{\"parameters\":{}}");
        write_message_fds(s, open_reply, wr, 2);
        close(wr[0]);
        close(wr[1]);
        ASSERT_OK(tsm_context_close(c, 1));
        ASSERT_NULL(tsm_client_get_error_name(c));
        for (size_t j = 0; j < 2; j++) {
                ASSERT_TRUE(pipe_widowed(rd[j]));
                close(rd[j]);
        }
        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_record, &b, NULL));
        ASSERT_ERRNO(tsm_client_process(c), EPROTO);
        ASSERT_EQ(b.n, 1U);
        ASSERT_ERRNO(b.error, EPROTO);
        ASSERT_STREQ(b.name, "io.tsmd.Protocol");
        ASSERT_TRUE(connection_lost(c));
        free(b.name);
        pair_done(c, path, ls, s);
}

typedef struct Chained {
        TsmClient *client;
        AsyncResult first, second;
} Chained;

static void on_second(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        on_response_record(c, error, response, len, &((Chained *) userdata)->second);
}

static void on_first(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        Chained *ch = userdata;

        on_response_record(c, error, response, len, &ch->first);
        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "y", 1, 64, on_second, ch, NULL));
}

/* A blocking call whose answer is an error delivers, as one with a reply does, the replies
 * to asynchronous calls made during its wait that were read together with its answer: they
 * are out of the socket, and nothing would wake the VMM's loop for them. */
TEST(replies_read_with_blocking_error) {
        char path[108];
        Chained ch = {};
        int ls, s;
        TsmClient *c = connect_pair(path, sizeof(path), &ls, &s);
        struct pollfd p;

        /* All three answers in one read: the first request's, the blocking call's (an error),
         * and that of the request the first one's callback makes. */
        static const char answers[] = "{\"parameters\":{\"response\":\"eA==\"}}\0"
                                      "{\"error\":\"io.tsmd.Guest.NoSuchContext\",\"parameters\":{\"context\":1}}\0"
                                      "{\"parameters\":{\"response\":\"eQ==\"}}";

        ASSERT_EQ(send(s, answers, sizeof(answers), MSG_NOSIGNAL), (ssize_t) sizeof(answers));
        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_first, &ch, NULL));
        ASSERT_ERRNO(tsm_context_close(c, 1), ENOENT);
        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Guest.NoSuchContext");
        ASSERT_EQ(ch.first.n, 1U);

        /* Delivered by now, or at least the loop is woken for it. */
        p = (struct pollfd){ .fd = tsm_client_get_fd(c), .events = (short) tsm_client_get_events(c) };
        if (ch.second.n == 0 && poll(&p, 1, 500) == 1)
                ASSERT_GE(tsm_client_process(c), 0);
        ASSERT_EQ(ch.second.n, 1U);
        ASSERT_OK(ch.second.error);
        free(ch.first.name);
        free(ch.second.name);
        pair_done(c, path, ls, s);
}

/* A connection that dies of an error other than a timeout or protocol violation (here the
 * socket stops being one: sendmsg() fails with ENOTSOCK) is reported as lost, -ECONNRESET:
 * no other errno may mean that the connection is gone (tsm.h). */
TEST(any_death_is_connection_lost) {
        char path[108];
        AsyncResult a = {};
        int l, s, p[2];
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_record, &a, NULL));
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        ASSERT_TRUE(dup3(p[0], tsm_client_get_fd(c), O_CLOEXEC) >= 0);
        ASSERT_ERRNO(tsm_context_close(c, 1), ECONNRESET);
        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Disconnected");
        ASSERT_TRUE(connection_lost(c));
        ASSERT_EQ(a.n, 1U);
        ASSERT_ERRNO(a.error, ECONNRESET);
        free(a.name);
        close(p[0]);
        close(p[1]);
        pair_done(c, path, l, s);
}

typedef struct Flood {
        int fd;
        volatile bool stop;
} Flood;

/* A peer that answers WatchEvents with events as fast as it can write them. */
static void *flood_thread(void *userdata) {
        static const char first[] = "{\"continues\":true,\"parameters\":{}}";
        static const char event[] = "{\"continues\":true,\"parameters\":{\"event\":{\"kind\":\"state-changed\","
                                    "\"context\":1,\"vdeviceId\":1,\"pciAddress\":\"0000:01:00.0\",\"state\":\"run\"}}}";
        Flood *f = userdata;
        char buf[4096], batch[64 * sizeof(event)];

        for (size_t i = 0; i < 64; i++)
                memcpy(batch + i * sizeof(event), event, sizeof(event));
        if (!read_message(f->fd, buf, sizeof(buf)) || send(f->fd, first, sizeof(first), MSG_NOSIGNAL) < 0)
                return NULL;
        while (!f->stop)
                if (send(f->fd, batch, sizeof(batch), MSG_NOSIGNAL) < 0)
                        break;
        return NULL;
}

/* Takes its time over each event, as a VMM's handler may: the peer is always ahead. */
static void on_flood_event(TsmClient *c, int error, const TsmEvent *event, void *userdata) {
        (*(unsigned *) userdata)++;
        sleep_msec(1);
}

/* A peer that never stops sending (a compromised worker, a stream of events faster than the
 * VMM takes them) must not hold tsm_client_process() forever: it is the VMM's event loop, and
 * "without blocking" (tsm.h). It does a bounded amount of work and returns; the fd stays
 * readable for the rest. */
TEST(process_returns_under_a_flood) {
        char path[108];
        unsigned n = 0;
        pthread_t thread;
        uint64_t start, took;
        struct pollfd p;
        int l, s, r;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);
        Flood f = { .fd = s };

        ASSERT_EQ(pthread_create(&thread, NULL, flood_thread, &f), 0);
        ASSERT_OK(tsm_client_watch_events(c, on_flood_event, &n, NULL));
        p = (struct pollfd){ .fd = tsm_client_get_fd(c), .events = POLLIN };
        ASSERT_EQ(poll(&p, 1, 5000), 1);
        sleep_msec(100); /* the socket's buffer fills */

        alarm(20); /* a process() that never returns ends the test (SIGALRM) */
        start = now_usec();
        r = tsm_client_process(c);
        took = now_usec() - start;
        alarm(0);
        f.stop = true;
        ASSERT_EQ(r, 1);
        ASSERT_GE(n, 2U);
        /* Bounded by what it reads (some 64 KiB, each event ~150 bytes), not by time, which a
         * loaded machine stretches: a process() that never stops would not have returned. */
        if (n > 1000U)
                TEST_FAIL("tsm_client_process() handled %u events in one call (%" PRIu64 " ms)", n, took / 1000);

        tsm_client_free(c); /* the flood's send() fails now */
        ASSERT_EQ(pthread_join(thread, NULL), 0);
        close(s);
        close(l);
        unlink(path);
}

/* A peer that keeps the socket topped up but never full, so that every read is short: each
 * event's callback has it send another batch while less than PACED_LOW bytes wait, until
 * `total` bytes were sent. Short reads are what the bound has to hold under: a loop that goes
 * round again after one reads as much again, for as long as the peer keeps up. */
#define PACED_EVENT                                                                                \
        "{\"continues\":true,\"parameters\":{\"event\":{\"kind\":\"state-changed\",\"context\":1,"   \
        "\"vdeviceId\":1,\"pciAddress\":\"0000:01:00.0\",\"state\":\"run\"}}}"
#define PACED_BATCH_EVENTS (4096U / sizeof(PACED_EVENT))
#define PACED_LOW 5000
/* What tsm.h says one tsm_client_process() reads at most, plus the partial message an
 * earlier read may have left (its callback runs now). */
#define PROCESS_BOUND_BYTES (64U * 1024U + sizeof(PACED_EVENT))

typedef struct Paced {
        int server_fd;
        size_t sent, total; /* bytes */
        unsigned n;         /* events delivered */
} Paced;

static unsigned socket_unread(int fd) {
        int n;

        ASSERT_OK(ioctl(fd, FIONREAD, &n));
        return (unsigned) n;
}

static void paced_top_up(Paced *p, int client_fd) {
        char batch[PACED_BATCH_EVENTS * sizeof(PACED_EVENT)];

        if (p->sent >= p->total || socket_unread(client_fd) >= PACED_LOW)
                return;
        for (size_t i = 0; i < PACED_BATCH_EVENTS; i++)
                memcpy(batch + i * sizeof(PACED_EVENT), PACED_EVENT, sizeof(PACED_EVENT));
        ASSERT_EQ(send(p->server_fd, batch, sizeof(batch), MSG_NOSIGNAL), (ssize_t) sizeof(batch));
        p->sent += sizeof(batch);
}

static void on_paced_event(TsmClient *c, int error, const TsmEvent *event, void *userdata) {
        Paced *p = userdata;

        ASSERT_OK(error);
        if (!event)
                return; /* subscribed */
        p->n++;
        paced_top_up(p, tsm_client_get_fd(c));
}

/* Runs tsm_client_process() until every event the peer sent arrived, each call within the
 * bound. */
static void paced_process_rest(TsmClient *c, Paced *p) {
        while (p->n < p->total / sizeof(PACED_EVENT)) {
                struct pollfd pf = { .fd = tsm_client_get_fd(c), .events = POLLIN };
                unsigned before = p->n;

                ASSERT_EQ(poll(&pf, 1, 5000), 1);
                ASSERT_EQ(tsm_client_process(c), 1);
                ASSERT_GE(p->n, before + 1);
                ASSERT_LE((p->n - before) * sizeof(PACED_EVENT), PROCESS_BOUND_BYTES);
        }
        ASSERT_EQ(p->sent, p->total);
        ASSERT_EQ(socket_unread(tsm_client_get_fd(c)), 0U);
}

/* tsm_client_process() reads at most 64 KiB per call (tsm.h), also when every read is short:
 * after one it went round again, with a fresh count of reads, for as long as the peer kept
 * the socket topped up (a test peer that did got 9.8 MB of events delivered by one call). The
 * rest stays in the socket, and later calls deliver it. */
TEST(process_reads_at_most_64k) {
        char path[108], buf[4096];
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);
        Paced p = { .server_fd = s, .total = 128 * PACED_BATCH_EVENTS * sizeof(PACED_EVENT) };
        struct pollfd pf = { .fd = tsm_client_get_fd(c), .events = POLLIN };

        ASSERT_OK(tsm_client_watch_events(c, on_paced_event, &p, NULL));
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "WatchEvents"));
        write_message(s, "{\"continues\":true,\"parameters\":{}}");
        paced_top_up(&p, tsm_client_get_fd(c));
        ASSERT_EQ(poll(&pf, 1, 5000), 1);

        ASSERT_EQ(tsm_client_process(c), 1);
        ASSERT_GE(p.n, 1U);
        ASSERT_LE(p.n * sizeof(PACED_EVENT), PROCESS_BOUND_BYTES);
        ASSERT_GE(socket_unread(tsm_client_get_fd(c)), 1U);

        paced_process_rest(c, &p);
        pair_done(c, path, l, s);
}

typedef struct PacedAfterCall {
        Paced paced;
        AsyncResult request;
} PacedAfterCall;

/* Starts a watch from the callback of a request answered during a blocking call, and has the
 * peer answer it: its stream follows the blocking call's reply. */
static void on_request_start_watch(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        PacedAfterCall *a = userdata;

        on_response_record(c, error, response, len, &a->request);
        ASSERT_OK(tsm_client_watch_events(c, on_paced_event, &a->paced, NULL));
        write_message(a->paced.server_fd, "{\"continues\":true,\"parameters\":{}}");
        paced_top_up(&a->paced, tsm_client_get_fd(c));
}

/* A blocking call gets its reply while a stream that follows it keeps coming, and then
 * delivers no more than one tsm_client_process() would (tsm.h): the replies it read after its
 * own were delivered in a loop that went round again after every short read, for as long as
 * the peer kept up. The rest is for the caller's loop. */
TEST(blocking_call_returns_under_a_stream) {
        char path[108];
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);
        PacedAfterCall a = {
                .paced = { .server_fd = s, .total = 128 * PACED_BATCH_EVENTS * sizeof(PACED_EVENT) },
        };
        /* The request's answer and the blocking call's, in one read. */
        static const char answers[] = "{\"parameters\":{\"response\":\"eA==\"}}\0"
                                      "{\"parameters\":{}}";

        ASSERT_EQ(send(s, answers, sizeof(answers), MSG_NOSIGNAL), (ssize_t) sizeof(answers));
        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_request_start_watch, &a, NULL));
        alarm(20); /* a call that never returns ends the test (SIGALRM) */
        ASSERT_OK(tsm_context_close(c, 1));
        alarm(0);
        ASSERT_EQ(a.request.n, 1U);
        ASSERT_OK(a.request.error);
        ASSERT_LE(a.paced.n * sizeof(PACED_EVENT), PROCESS_BOUND_BYTES);
        ASSERT_GE(socket_unread(tsm_client_get_fd(c)), 1U);

        paced_process_rest(c, &a.paced);
        free(a.request.name);
        pair_done(c, path, l, s);
}

static int on_more_count(TsmClient *c, const char *reply, bool continues, void *userdata) {
        (*(unsigned *) userdata)++;
        return 0;
}

/* The same for tsm_client_call_more_json(): a death of the connection is -ECONNRESET there
 * too, not whatever errno killed it. */
TEST(any_death_is_connection_lost_more) {
        char path[108];
        unsigned n = 0;
        int l, s, p[2];
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_OK(pipe2(p, O_CLOEXEC));
        ASSERT_TRUE(dup3(p[0], tsm_client_get_fd(c), O_CLOEXEC) >= 0);
        ASSERT_ERRNO(tsm_client_call_more_json(c, "io.tsmd.Admin.FollowAudit", NULL, on_more_count, &n),
                     ECONNRESET);
        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Disconnected");
        ASSERT_TRUE(connection_lost(c));
        ASSERT_EQ(n, 0U);
        close(p[0]);
        close(p[1]);
        pair_done(c, path, l, s);
}

static int on_more_free(TsmClient *c, const char *reply, bool continues, void *userdata) {
        unsigned *n = userdata;

        (*n)++;
        tsm_client_free(c);
        return 0;
}

/* tsm_client_free() from a tsm_client_call_more_json() callback ends the stream: no further
 * callback, though more replies were already read; the call returns -ECANCELED. */
TEST(free_from_more_callback) {
        char path[108];
        unsigned n = 0;
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        for (unsigned i = 0; i < 3; i++)
                write_message(s, "{\"parameters\":{},\"continues\":true}");
        ASSERT_OK(tsm_client_set_timeout(c, 500 * 1000));
        ASSERT_ERRNO(tsm_client_call_more_json(c, "io.tsmd.Admin.FollowAudit", NULL, on_more_free, &n), ECANCELED);
        ASSERT_EQ(n, 1);
        freed_pair_done(path, l, s);
}

typedef struct Freer {
        unsigned n_callbacks, n_destroys;
} Freer;

static void on_response_free(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        Freer *f = userdata;

        f->n_callbacks++;
        tsm_client_free(c);
}

static void on_destroy_count(void *userdata) {
        Freer *f = userdata;

        f->n_destroys++;
}

/* An asynchronous callback that frees the client while a blocking call waits: the blocking
 * call returns -ECANCELED (and the client is gone; nothing may touch it). */
TEST(free_during_blocking_call) {
        char path[108], buf[4096];
        Freer f = {};
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_free, &f, on_destroy_count));
        write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}"); /* the request's */
        write_message(s, "{\"parameters\":{}}");                           /* CloseContext's */
        ASSERT_ERRNO(tsm_context_close(c, 1), ECANCELED);
        ASSERT_EQ(f.n_callbacks, 1);
        ASSERT_EQ(f.n_destroys, 1);
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        freed_pair_done(path, l, s);
}

static void on_response_chain(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        Freer *f = userdata;

        f->n_callbacks++;
        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_free, f, on_destroy_count));
}

/* A reply read together with the blocking call's own, to an asynchronous call made while it
 * waited, is delivered before the call returns; if its callback frees the client, the call
 * returns -ECANCELED too, not success with the client gone, and writes no output. */
TEST(free_after_blocking_reply) {
        char path[108];
        Freer f = {};
        bool bound = false;
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_chain, &f, on_destroy_count));
        write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}");          /* the first request's */
        write_message(s, "{\"parameters\":{\"bound\":true,\"state\":null}}");  /* GetDeviceState's */
        write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}");          /* the second's */
        ASSERT_ERRNO(tsm_device_get_state(c, 1, 1, NULL, &bound), ECANCELED);
        ASSERT_FALSE(bound);
        ASSERT_EQ(f.n_callbacks, 2);
        ASSERT_EQ(f.n_destroys, 2);
        pair_done(NULL, path, l, s);
}

/* The same from tsm_client_process(): it says 1 (progress). */
TEST(free_during_process) {
        char path[108];
        Freer f = {};
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_free, &f, on_destroy_count));
        write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}");
        wait_readable(c);
        ASSERT_EQ(tsm_client_process(c), 1);
        ASSERT_EQ(f.n_callbacks, 1);
        ASSERT_EQ(f.n_destroys, 1);
        freed_pair_done(path, l, s);
}

typedef struct NestedFree {
        TsmClient *client;
        unsigned n_destroys;
        int reconnect, process, call, async;
} NestedFree;

static void noop_response(TsmClient *c, int error, const void *response, size_t len, void *userdata);

/* A destroy run by tsm_client_free() itself that uses the client: the client is released once,
 * after the last destroy, and what would nest is refused. */
static void on_destroy_nested(void *userdata) {
        NestedFree *f = userdata;

        if (f->n_destroys++ == 1) {
                f->reconnect = tsm_client_reconnect(f->client);
                f->process = tsm_client_process(f->client);
                f->call = tsm_context_close(f->client, 1);
                f->async = tsm_guest_request_async(f->client, 1, 1, "info", "x", 1, 64, noop_response,
                                                   NULL, NULL);
                tsm_client_free(f->client);
        }
}

TEST(free_from_destroy_of_free) {
        char path[108];
        NestedFree f = {};
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        f.client = c;
        for (unsigned i = 0; i < 3; i++)
                ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, noop_response, &f,
                                                  on_destroy_nested));
        tsm_client_free(c);
        ASSERT_EQ(f.n_destroys, 3);
        ASSERT_ERRNO(f.reconnect, EDEADLK);
        ASSERT_ERRNO(f.process, EDEADLK);
        ASSERT_ERRNO(f.call, EDEADLK);
        ASSERT_ERRNO(f.async, ENOTCONN);
        freed_pair_done(path, l, s);
}

/* The same when the free was deferred: a callback freed the client during tsm_client_process(),
 * and the remaining destroys run on its way out. */
static void on_response_free_nested(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        tsm_client_free(c);
}

TEST(free_from_destroy_of_deferred_free) {
        char path[108];
        NestedFree f = {};
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        f.client = c;
        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_free_nested, &f,
                                          on_destroy_nested));
        for (unsigned i = 0; i < 3; i++)
                ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, noop_response, &f,
                                                  on_destroy_nested));
        write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}");
        wait_readable(c);
        ASSERT_EQ(tsm_client_process(c), 1);
        ASSERT_EQ(f.n_destroys, 4);
        ASSERT_ERRNO(f.reconnect, EDEADLK);
        ASSERT_ERRNO(f.call, EDEADLK);
        freed_pair_done(path, l, s);
}

/* {"a":[[...[0,0,...]...]]}: n_arrays nested arrays, the innermost holding n_zeros zeros. */
static char *parameters_of_shape(unsigned n_arrays, size_t n_zeros) {
        char *text = malloc(16 + 2 * n_arrays + 2 * n_zeros), *p = text;

        ASSERT_NOT_NULL(text);
        p = stpcpy(p, "{\"a\":");
        for (unsigned i = 0; i < n_arrays; i++)
                *p++ = '[';
        for (size_t i = 0; i < n_zeros; i++)
                p = stpcpy(p, i > 0 ? ",0" : "0");
        for (unsigned i = 0; i < n_arrays; i++)
                *p++ = ']';
        strcpy(p, "}");
        return text;
}

/* What libtsm sends fits tsmd's default MaxJsonDepth= and MaxJsonValues= exactly, as tsmd's
 * end counts them, with "more" set; one level or one value more is -EINVAL and not sent. */
TEST(call_json_parameters_fit_tsmd_default_limits) {
        const VarlinkLimits lim = VARLINK_LIMITS_DEFAULT;
        const struct {
                unsigned n_arrays;
                size_t n_zeros;
                bool deeper; /* over the depth limit by one level, else by one value */
        } edge[] = {
                { 1, lim.max_json_values - 5, false }, /* call, "method", "more", parameters, array */
                { lim.max_depth - 2, 1, true },        /* below the call and its parameters */
        };
        char path[108], *reply = NULL;
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        for (size_t i = 0; i < ELEMENTSOF(edge); i++) {
                _cleanup_free_ char *fits = parameters_of_shape(edge[i].n_arrays, edge[i].n_zeros),
                                    *over = parameters_of_shape(edge[i].n_arrays + edge[i].deeper,
                                                                edge[i].n_zeros + !edge[i].deeper),
                                    *buf = malloc(64 * 1024);
                size_t n_members;

                ASSERT_NOT_NULL(buf);
                ASSERT_ERRNO(tsm_client_call_json(c, "io.tsmd.Guest.OpenContext", over, &reply), EINVAL);
                ASSERT_ERRNO(tsm_client_call_more_json(c, "io.tsmd.Guest.OpenContext", over, on_more_noop, NULL),
                             EINVAL);
                write_message(s, "{\"parameters\":{}}");
                ASSERT_OK(tsm_client_call_more_json(c, "io.tsmd.Guest.OpenContext", fits, on_more_noop, NULL));
                ASSERT_TRUE(read_message(s, buf, 64 * 1024)); /* the first message sent: over was not */
                ASSERT_NOT_NULL(strstr(buf, "\"more\":true"));
                ASSERT_OK(json_strict_check(buf, strlen(buf), lim.max_depth, lim.max_json_values, &n_members));
                ASSERT_ERRNO(json_strict_check(buf, strlen(buf), lim.max_depth - edge[i].deeper,
                                               lim.max_json_values - !edge[i].deeper, &n_members),
                             edge[i].deeper ? ELOOP : E2BIG);
        }
        pair_done(c, path, l, s);
}

static int noop_json(TsmClient *c, const char *reply, bool continues, void *userdata) {
        return 0;
}

static void noop_response(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
}

/* tsm_client_call_json() and tsm_client_call_more_json() read the parameters as tsmd will, and
 * check the method name: what tsmd would hang up on (taking the caller's contexts with the
 * connection) is -EINVAL, and nothing is sent; the connection goes on. */
TEST(call_json_refuses_what_tsmd_would_hang_up_on) {
        static const struct {
                const char *method, *parameters;
        } bad[] = {
                { "io.tsmd.Guest.OpenContext", "{} trailing garbage" },
                { "io.tsmd.Guest.OpenContext", "{}{}" },
                { "io.tsmd.Guest.OpenContext", "{/*c*/}" },
                { "io.tsmd.Guest.OpenContext", "{'x':1}" },
                { "io.tsmd.Guest.OpenContext", "{\"x\":NaN}" },
                { "io.tsmd.Guest.OpenContext", "{\"x\":\"\xff\"}" },
                { "io.tsmd.Guest.OpenContext", "{\"x\":1,\"x\":2}" },
                { "io.tsmd.Guest.OpenContext", "{\"x\":\"\\ud800\"}" },
                { "io.tsmd.Guest.OpenContext", "[]" },
                { "io.tsmd.Guest.OpenContext", "null" },
                { "io.tsmd.Guest.OpenContext", "" },
                { "io.tsmd.Guest.OpenContext\xff", NULL },
                { "io.tsmd.Guest.List\"Scopes", NULL },
                { "io.tsmd.Guest.openContext", NULL },
                { "OpenContext", NULL },
                { "", NULL },
        };
        char path[108], buf[512], *reply = NULL;
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = tsm_client_call_json(c, bad[i].method, bad[i].parameters, &reply);

                if (r != -EINVAL)
                        TEST_FAIL("call_json(%s, %s): %d, expected -EINVAL", bad[i].method,
                                  strna(bad[i].parameters), r);
                r = tsm_client_call_more_json(c, bad[i].method, bad[i].parameters, on_more_noop, NULL);
                if (r != -EINVAL)
                        TEST_FAIL("call_more_json(%s, %s): %d, expected -EINVAL", bad[i].method,
                                  strna(bad[i].parameters), r);
        }

        /* Nothing went out: the first message tsmd's end reads is the good call's. */
        write_message(s, "{\"parameters\":{\"context\":1}}");
        ASSERT_OK(tsm_client_call_json(c, "io.tsmd.Guest.OpenContext", " {\"x\": [1, 2.5, \"\\u00e9\"]}\n", &reply));
        ASSERT_STREQ(reply, "{\"context\":1}");
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_STREQ(buf, "{\"method\":\"io.tsmd.Guest.OpenContext\",\"parameters\":{\"x\":[1,2.5,\"é\"]}}");
        free(reply);
        pair_done(c, path, l, s);
}

/* Local failures clear the error state: the name of an earlier call's error is never taken for
 * theirs (tsm.h). Each case starts from a client whose last call got io.tsmd.Guest.Denied. */
TEST(local_failures_clear_error_name) {
        char path[108], *text = NULL;
        uint64_t ctx;
        uint8_t buf[8];
        int l, s, r;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

#define CHECK_CLEARS(call, e)                                                                      \
        do {                                                                                       \
                ASSERT_EQ(ltsm_error_set_reply(c, "io.tsmd.Guest.Denied", NULL), -EACCES);         \
                ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Guest.Denied");                \
                r = (call);                                                                        \
                ASSERT_ERRNO(r, e);                                                                \
                if (tsm_client_get_error_name(c))                                                  \
                        TEST_FAIL("%s: error name %s left over", #call, tsm_client_get_error_name(c)); \
        } while (0)

        CHECK_CLEARS(tsm_context_open(c, NULL, NULL), EINVAL);
        CHECK_CLEARS(tsm_context_adopt(c, -1, &ctx), EBADF);
        CHECK_CLEARS(tsm_context_adopt(c, 1000, &ctx), EBADF); /* not open */
        CHECK_CLEARS(tsm_context_adopt(c, 0, NULL), EINVAL);
        CHECK_CLEARS(tsm_context_reclaim(c, "", &ctx, NULL), EINVAL);
        CHECK_CLEARS(tsm_context_close(c, UINT64_MAX), EINVAL);
        CHECK_CLEARS(tsm_device_attach(c, 1, 0, "0000:01:00.0", -1, NULL), EINVAL);
        CHECK_CLEARS(tsm_device_attach(c, 1, 1, "0000:01:00.0", 1000, NULL), EBADF);
        CHECK_CLEARS(tsm_device_detach(c, 1, 0), EINVAL);
        CHECK_CLEARS(tsm_device_bind(c, 1, 0, NULL), EINVAL);
        CHECK_CLEARS(tsm_device_unbind(c, UINT64_MAX, 1, NULL), EINVAL);
        CHECK_CLEARS(tsm_device_get_state(c, 1, 0, NULL, NULL), EINVAL);
        CHECK_CLEARS(tsm_guest_request(c, 1, 1, NULL, "x", 1, buf, sizeof(buf), NULL), EINVAL);
        CHECK_CLEARS(tsm_guest_request(c, 1, 1, "info", "x", 1, NULL, 8, NULL), EINVAL);
        CHECK_CLEARS(tsm_guest_request_async(c, 1, 1, NULL, "x", 1, 8, noop_response, NULL, NULL), EINVAL);
        CHECK_CLEARS(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 8, NULL, NULL, NULL), EINVAL);
        CHECK_CLEARS(tsm_client_watch_events(c, NULL, NULL, NULL), EINVAL);
        CHECK_CLEARS(tsm_client_call_json(c, "io.tsmd.Guest.OpenContext", "[1]", &text), EINVAL);
        CHECK_CLEARS(tsm_client_call_json(c, NULL, NULL, &text), EINVAL);
        CHECK_CLEARS(tsm_client_call_more_json(c, "io.tsmd.Admin.FollowAudit", "nope", noop_json, NULL), EINVAL);
        CHECK_CLEARS(tsm_context_get_reclaim_token(c, 1, &text), ENOENT);
#undef CHECK_CLEARS
        pair_done(c, path, l, s);
}

typedef enum MalformedCall {
        CALL_OPEN,
        CALL_ADOPT,
        CALL_RECLAIM,
        CALL_ATTACH,
        CALL_BIND,
        CALL_GET_STATE,
        CALL_REQUEST,
} MalformedCall;

/* A reply that does not match io.tsmd.Guest (a field missing, mistyped or out of range, an fd
 * missing or not the one it names, a response larger than asked for) fails the call with
 * -EBADMSG (-ENOBUFS for the response), without an error name: no output is written, an fd
 * that came with it is closed, and the connection goes on (tsm.h: "a reply that does not match
 * the interface"). */
TEST(malformed_replies_fail_the_call_only) {
        static const struct {
                MalformedCall call;
                const char *reply;
                bool with_fd;
                int error;
        } cases[] = {
                { CALL_OPEN, "{\"parameters\":{\"fileDescriptor\":0}}", true, EBADMSG },
                { CALL_OPEN, "{\"parameters\":{\"context\":-1,\"fileDescriptor\":0}}", true, EBADMSG },
                { CALL_OPEN, "{\"parameters\":{\"context\":\"5\",\"fileDescriptor\":0}}", true, EBADMSG },
                { CALL_OPEN, "{\"parameters\":{\"context\":5}}", true, EBADMSG },
                { CALL_OPEN, "{\"parameters\":{\"context\":5,\"fileDescriptor\":0}}", false, EBADMSG },
                { CALL_OPEN, "{\"parameters\":{\"context\":5,\"fileDescriptor\":1}}", true, EBADMSG },
                { CALL_OPEN, "{\"parameters\":{\"context\":5,\"fileDescriptor\":-1}}", true, EBADMSG },
                { CALL_ADOPT, "{\"parameters\":{}}", false, EBADMSG },
                { CALL_ADOPT, "{\"parameters\":{\"context\":1.5}}", true, EBADMSG },
                { CALL_RECLAIM, "{\"parameters\":{\"context\":5,\"reclaimToken\":\"t2\"}}", false, EBADMSG },
                { CALL_RECLAIM, "{\"parameters\":{\"context\":5,\"fileDescriptor\":0}}", false, EBADMSG },
                { CALL_ATTACH, "{\"parameters\":{\"tsm\":\"emu0\",\"uapi\":\"emulated\",\"scopes\":[]}}", false, EBADMSG },
                { CALL_ATTACH, "{\"parameters\":{\"backend\":\"emulated\",\"tsm\":\"emu0\",\"uapi\":\"emulated\"}}", false, EBADMSG },
                { CALL_ATTACH, "{\"parameters\":{\"backend\":\"emulated\",\"tsm\":\"emu0\",\"uapi\":\"emulated\",\"scopes\":{}}}", false, EBADMSG },
                { CALL_ATTACH, "{\"parameters\":{\"backend\":\"emulated\",\"tsm\":\"emu0\",\"uapi\":\"emulated\",\"scopes\":[1]}}", true, EBADMSG },
                { CALL_ATTACH, "{\"parameters\":{\"backend\":\"emulated\",\"tsm\":\"emu0\",\"uapi\":\"emulated\",\"scopes\":["
                               "{\"name\":\"info\",\"description\":\"d\",\"number\":0,\"maxRequestSize\":1,\"maxResponseSize\":1,\"allowed\":true},"
                               "{\"name\":\"x\",\"description\":\"d\",\"number\":4294967296,\"maxRequestSize\":1,\"maxResponseSize\":1,\"allowed\":true}]}}",
                  false, EBADMSG },
                { CALL_ATTACH, "{\"parameters\":{\"backend\":\"emulated\",\"tsm\":\"emu0\",\"uapi\":\"emulated\",\"scopes\":["
                               "{\"name\":\"info\",\"number\":0,\"maxRequestSize\":1,\"maxResponseSize\":1,\"allowed\":\"yes\"}]}}",
                  false, EBADMSG },
                { CALL_ATTACH, "{\"parameters\":{\"backend\":\"emulated\",\"tsm\":\"emu0\",\"uapi\":\"emulated\",\"scopes\":["
                               "{\"name\":\"info\",\"number\":0,\"maxRequestSize\":1,\"maxResponseSize\":1,\"allowed\":true}]}}",
                  false, EBADMSG },
                { CALL_GET_STATE, "{\"parameters\":{\"state\":\"run\"}}", false, EBADMSG },
                { CALL_GET_STATE, "{\"parameters\":{\"bound\":1,\"state\":\"run\"}}", true, EBADMSG },
                { CALL_REQUEST, "{\"parameters\":{}}", false, EBADMSG },
                { CALL_REQUEST, "{\"parameters\":{\"response\":12}}", true, EBADMSG },
                { CALL_REQUEST, "{\"parameters\":{\"response\":\"e!==\"}}", false, EBADMSG },
                { CALL_REQUEST, "{\"parameters\":{\"response\":\"MTIzNDU2Nzg5\"}}", false, ENOBUFS }, /* 9 bytes */
        };
        char path[108], buf[4096];
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                TsmDeviceInfo *info = NULL;
                TsmTdiState state = TSM_TDI_STATE_RUN;
                char *token = NULL;
                uint64_t ctx = 77;
                uint8_t resp[8] = {};
                size_t len = 99;
                bool bound = true;
                int p[2], fd = -1, dev, r = 0;

                ASSERT_OK(pipe2(p, O_CLOEXEC));
                if (cases[i].with_fd)
                        write_message_fd(s, cases[i].reply, p[1]);
                else
                        write_message(s, cases[i].reply);
                close(p[1]);
                dev = open("/dev/null", O_RDONLY | O_CLOEXEC);
                ASSERT_TRUE(dev >= 0);
                /* The error name of an earlier call does not stay. */
                ASSERT_EQ(ltsm_error_set_reply(c, "io.tsmd.Guest.Denied", NULL), -EACCES);

                switch (cases[i].call) {
                case CALL_OPEN:
                        r = tsm_context_open(c, &ctx, &fd);
                        break;
                case CALL_ADOPT:
                        r = tsm_context_adopt(c, dev, &ctx);
                        break;
                case CALL_RECLAIM:
                        r = tsm_context_reclaim(c, "t1", &ctx, &fd);
                        break;
                case CALL_ATTACH:
                        r = tsm_device_attach(c, 1, 1, "0000:01:00.0", -1, &info);
                        break;
                case CALL_BIND:
                        r = tsm_device_bind(c, 1, 1, &state);
                        break;
                case CALL_GET_STATE:
                        r = tsm_device_get_state(c, 1, 1, &state, &bound);
                        break;
                case CALL_REQUEST:
                        r = tsm_guest_request(c, 1, 1, "info", "x", 1, resp, sizeof(resp), &len);
                        break;
                }
                if (r != -cases[i].error)
                        TEST_FAIL("%s: %d, expected -%d", cases[i].reply, r, cases[i].error);
                ASSERT_NULL(tsm_client_get_error_name(c));
                /* No output written. */
                ASSERT_EQ(ctx, 77U);
                ASSERT_EQ(fd, -1);
                ASSERT_NULL(info);
                ASSERT_EQ(state, TSM_TDI_STATE_RUN);
                ASSERT_TRUE(bound);
                ASSERT_EQ(len, 99U);
                ASSERT_EQ(resp[0], 0);
                /* An fd that came with it is closed, the token of a context not had is not kept,
                 * and the connection goes on. */
                if (!pipe_widowed(p[0]))
                        TEST_FAIL("%s: its fd still held by the client", cases[i].reply);
                ASSERT_ERRNO(tsm_context_get_reclaim_token(c, 5, &token), ENOENT);
                ASSERT_TRUE(tsm_client_get_fd(c) >= 0);
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                close(p[0]);
                close(dev);
        }

        /* A TdiState of a newer tsmd, or mistyped, is not known: the call still succeeds. */
        {
                static const char *const replies[] = {
                        "{\"parameters\":{\"state\":\"config_frozen\"}}",
                        "{\"parameters\":{\"state\":2}}",
                        "{\"parameters\":{}}",
                };
                for (size_t i = 0; i < ELEMENTSOF(replies); i++) {
                        TsmTdiState state = TSM_TDI_STATE_RUN;

                        write_message(s, replies[i]);
                        ASSERT_OK(tsm_device_bind(c, 1, 1, &state));
                        ASSERT_EQ(state, _TSM_TDI_STATE_INVALID);
                        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                }
        }
        pair_done(c, path, l, s);
}

/* Runs the loop (poll, tsm_client_process()) until *n reaches want, for at most 5 s. */
static void process_until(TsmClient *c, const unsigned *n, unsigned want) {
        for (unsigned i = 0; i < 50 && *n < want; i++) {
                struct pollfd p = { .fd = tsm_client_get_fd(c), .events = (short) tsm_client_get_events(c) };

                ASSERT_TRUE(p.fd >= 0);
                (void) poll(&p, 1, 100);
                ASSERT_GE(tsm_client_process(c), 0);
        }
        ASSERT_EQ(*n, want);
}

typedef struct ResponseSeen {
        unsigned n;
        int error;
        bool named;   /* an error name was set during the callback */
        bool null;    /* the response pointer was NULL */
        size_t len;
} ResponseSeen;

static void on_response_seen(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        ResponseSeen *r = userdata;

        r->n++;
        r->error = error;
        r->named = tsm_client_get_error_name(c) != NULL;
        r->null = !response;
        r->len = len;
}

/* The same for an asynchronous guest request: its callback gets -EBADMSG (-ENOBUFS for a
 * response over max_response_size) with no error name and no response, and the connection
 * goes on. An empty response is a response: a non-NULL pointer, length 0. */
TEST(malformed_async_replies_fail_the_request_only) {
        static const struct {
                const char *reply;
                int error;
        } cases[] = {
                { "{\"parameters\":{}}", EBADMSG },
                { "{\"parameters\":{\"response\":null}}", EBADMSG },
                { "{\"parameters\":{\"response\":\"e!==\"}}", EBADMSG },
                { "{\"parameters\":{\"response\":\"MTIzNDU2Nzg5\"}}", ENOBUFS }, /* 9 bytes */
                { "{\"parameters\":{\"response\":\"\"}}", 0 },
        };
        char path[108], buf[4096];
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                ResponseSeen r = {};

                ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 8, on_response_seen, &r, NULL));
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                write_message(s, cases[i].reply);
                ASSERT_EQ(ltsm_error_set_reply(c, "io.tsmd.Guest.Denied", NULL), -EACCES);
                process_until(c, &r.n, 1);
                if (r.error != -cases[i].error)
                        TEST_FAIL("%s: %d, expected -%d", cases[i].reply, r.error, cases[i].error);
                /* A local failure clears the name of an earlier call's error (a success leaves it:
                 * it names the most recent failed call, tsm.h). */
                if (cases[i].error != 0 && r.named)
                        TEST_FAIL("%s: an error name left over", cases[i].reply);
                ASSERT_EQ(r.null, cases[i].error != 0);
                ASSERT_EQ(r.len, 0U);
                ASSERT_TRUE(tsm_client_get_fd(c) >= 0);
        }
        pair_done(c, path, l, s);
}

#define UNCONSUMED_REPLY(n) "{\"parameters\":{\"response\":\"\",\"scopeNumber\":1,\"requestUnconsumed\":" n "}}"

typedef struct UnconsumedSeen {
        unsigned n;
        int error;
        size_t unconsumed;
} UnconsumedSeen;

static void on_response_unconsumed(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        UnconsumedSeen *u = userdata;

        u->n++;
        u->error = error;
        u->unconsumed = tsm_client_get_request_unconsumed(c);
}

/* A request a kernel TSM offered no response buffer consumed in part: the reply's
 * requestUnconsumed reaches the VMM, after tsm_guest_request() and in an asynchronous
 * request's callback; 0 when the reply has none (or null), when the request failed, and after
 * a reply that claims more than the request had (-EBADMSG: a VMM may index its request with
 * it). Callbacks that run inside tsm_guest_request() do not replace its own. */
TEST(request_unconsumed_reaches_the_vmm) {
        static const struct {
                const char *reply;
                int error;
                size_t unconsumed;
        } cases[] = {
                { UNCONSUMED_REPLY("4"), 0, 4 },
                { "{\"parameters\":{\"response\":\"\",\"scopeNumber\":1}}", 0, 0 },
                { UNCONSUMED_REPLY("8"), 0, 8 },
                { UNCONSUMED_REPLY("null"), 0, 0 },
                { UNCONSUMED_REPLY("9"), EBADMSG, 0 },
                { UNCONSUMED_REPLY("-1"), EBADMSG, 0 },
                { UNCONSUMED_REPLY("\"4\""), EBADMSG, 0 },
                { "{\"error\":\"io.tsmd.Guest.DeviceBusy\",\"parameters\":{}}", EBUSY, 0 },
        };
        char path[108], buf[4096];
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_EQ(tsm_client_get_request_unconsumed(NULL), 0U);
        ASSERT_EQ(tsm_client_get_request_unconsumed(c), 0U);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                UnconsumedSeen u = { .unconsumed = 77 };
                int r;

                /* Blocking, after a request that left something: never that one's. */
                write_message(s, UNCONSUMED_REPLY("3"));
                ASSERT_OK(tsm_guest_request(c, 1, 1, "state-change", "abcdefgh", 8, NULL, 0, NULL));
                ASSERT_EQ(tsm_client_get_request_unconsumed(c), 3U);
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                write_message(s, cases[i].reply);
                r = tsm_guest_request(c, 1, 1, "state-change", "abcdefgh", 8, NULL, 0, NULL);
                if (r != -cases[i].error || tsm_client_get_request_unconsumed(c) != cases[i].unconsumed)
                        TEST_FAIL("%s: %d, %zu unconsumed", cases[i].reply, r, tsm_client_get_request_unconsumed(c));
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));

                /* Asynchronous, in the callback. */
                ASSERT_OK(tsm_guest_request_async(c, 1, 1, "state-change", "abcdefgh", 8, 0, on_response_unconsumed,
                                                  &u, NULL));
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                write_message(s, cases[i].reply);
                process_until(c, &u.n, 1);
                if (u.error != -cases[i].error || u.unconsumed != cases[i].unconsumed)
                        TEST_FAIL("%s: async %d, %zu unconsumed", cases[i].reply, u.error, u.unconsumed);
                ASSERT_TRUE(tsm_client_get_fd(c) >= 0);
        }

        /* An asynchronous request answered inside a blocking one: its callback sees its own, the
         * blocking call returns with its own. */
        {
                UnconsumedSeen u = {};

                ASSERT_OK(tsm_guest_request_async(c, 1, 1, "state-change", "abcdefgh", 8, 0, on_response_unconsumed,
                                                  &u, NULL));
                write_message(s, UNCONSUMED_REPLY("2"));
                write_message(s, UNCONSUMED_REPLY("5"));
                ASSERT_OK(tsm_guest_request(c, 1, 1, "state-change", "abcdefgh", 8, NULL, 0, NULL));
                ASSERT_EQ(u.n, 1U);
                ASSERT_EQ(u.unconsumed, 2U);
                ASSERT_EQ(tsm_client_get_request_unconsumed(c), 5U);
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        }
        pair_done(c, path, l, s);
}

#define EVENT(fields) "{\"continues\":true,\"parameters\":{\"event\":" fields "}}"

typedef struct EventsSeen {
        TsmClient *client;
        unsigned n, n_destroys, free_at; /* free_at: the callback that frees the client (1-based) */
        int errors[8];
        bool with_event[8];
        int kinds[8], states[8];
        char kind_strings[8][32], pci_addresses[8][16], error_names[8][64];
        uint64_t contexts[8];
        uint32_t vdevice_ids[8];
} EventsSeen;

static void on_event_seen(TsmClient *c, int error, const TsmEvent *event, void *userdata) {
        EventsSeen *e = userdata;
        unsigned i = e->n++;

        ASSERT_LE(e->n, ELEMENTSOF(e->errors));
        e->errors[i] = error;
        e->with_event[i] = event;
        snprintf(e->error_names[i], sizeof(e->error_names[i]), "%s", strna(tsm_client_get_error_name(c)));
        if (event) {
                e->kinds[i] = tsm_event_get_kind(event);
                e->states[i] = tsm_event_get_state(event);
                e->contexts[i] = tsm_event_get_context(event);
                e->vdevice_ids[i] = tsm_event_get_vdevice_id(event);
                snprintf(e->kind_strings[i], sizeof(e->kind_strings[i]), "%s", tsm_event_get_kind_string(event));
                snprintf(e->pci_addresses[i], sizeof(e->pci_addresses[i]), "%s", tsm_event_get_pci_address(event));
        }
        if (e->n == e->free_at)
                tsm_client_free(c);
}

static void on_events_destroy(void *userdata) {
        ((EventsSeen *) userdata)->n_destroys++;
}

/* A WatchEvents stream: every call but the stream's is refused with -EDEADLK while it is open;
 * a malformed event (not an object, a field missing, mistyped or out of range) is skipped, the
 * stream goes on; an event of a kind this libtsm does not know is delivered as
 * _TSM_EVENT_KIND_INVALID with tsmd's name; when tsmd ends the stream the callback gets
 * -ENODATA, destroy runs once, and the client takes calls again. */
TEST(watch_skips_malformed_events_and_ends) {
        static const char *const replies[] = {
                "{\"continues\":true,\"parameters\":{}}",
                EVENT("1"),
                EVENT("{\"context\":1,\"vdeviceId\":1,\"pciAddress\":\"0000:01:00.0\"}"),
                EVENT("{\"kind\":\"state-changed\",\"context\":-1,\"vdeviceId\":1,\"pciAddress\":\"0000:01:00.0\"}"),
                EVENT("{\"kind\":\"state-changed\",\"context\":1,\"vdeviceId\":4294967296,\"pciAddress\":\"0000:01:00.0\"}"),
                EVENT("{\"kind\":\"state-changed\",\"context\":1,\"vdeviceId\":1,\"pciAddress\":5}"),
                EVENT("{\"kind\":\"state-changed\",\"context\":3,\"vdeviceId\":2,\"pciAddress\":\"0000:01:00.0\","
                      "\"state\":\"config_locked\"}"),
                EVENT("{\"kind\":\"device-exploded\",\"context\":3,\"vdeviceId\":4294967295,\"pciAddress\":\"0000:02:00.0\"}"),
                "{\"parameters\":{}}",
        };
        char path[108], buf[4096], *text = NULL;
        EventsSeen e = {};
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_OK(tsm_client_watch_events(c, on_event_seen, &e, on_events_destroy));
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "io.tsmd.Guest.WatchEvents"));

        /* Nothing after the stream could be answered. */
        ASSERT_ERRNO(tsm_context_close(c, 1), EDEADLK);
        ASSERT_ERRNO(tsm_client_call_json(c, "io.tsmd.Admin.ListDevices", NULL, &text), EDEADLK);
        ASSERT_ERRNO(tsm_client_call_more_json(c, "io.tsmd.Admin.FollowAudit", NULL, on_more_noop, NULL), EDEADLK);
        ASSERT_ERRNO(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 8, noop_response, NULL, NULL), EDEADLK);
        ASSERT_ERRNO(tsm_client_watch_events(c, on_event_seen, &e, on_events_destroy), EDEADLK);

        for (size_t i = 0; i < ELEMENTSOF(replies); i++)
                write_message(s, replies[i]);
        process_until(c, &e.n, 4);
        ASSERT_EQ(e.n_destroys, 1U);

        ASSERT_OK(e.errors[0]); /* subscribed */
        ASSERT_FALSE(e.with_event[0]);

        ASSERT_OK(e.errors[1]);
        ASSERT_TRUE(e.with_event[1]);
        ASSERT_EQ(e.kinds[1], TSM_EVENT_STATE_CHANGED);
        ASSERT_STREQ(e.kind_strings[1], "state-changed");
        ASSERT_EQ(e.contexts[1], 3U);
        ASSERT_EQ(e.vdevice_ids[1], 2U);
        ASSERT_STREQ(e.pci_addresses[1], "0000:01:00.0");
        ASSERT_EQ(e.states[1], TSM_TDI_STATE_CONFIG_LOCKED);

        ASSERT_OK(e.errors[2]);
        ASSERT_EQ(e.kinds[2], _TSM_EVENT_KIND_INVALID);
        ASSERT_STREQ(e.kind_strings[2], "device-exploded");
        ASSERT_EQ(e.vdevice_ids[2], UINT32_MAX);
        ASSERT_EQ(e.states[2], _TSM_TDI_STATE_INVALID);

        ASSERT_ERRNO(e.errors[3], ENODATA); /* tsmd ended it */
        ASSERT_FALSE(e.with_event[3]);

        /* Calls go through again. */
        expect_close_context_is_next(c, s, 1);

        /* An event's accessors take NULL. */
        ASSERT_EQ(tsm_event_get_kind(NULL), _TSM_EVENT_KIND_INVALID);
        ASSERT_NULL(tsm_event_get_kind_string(NULL));
        ASSERT_EQ(tsm_event_get_context(NULL), 0U);
        ASSERT_EQ(tsm_event_get_vdevice_id(NULL), 0U);
        ASSERT_NULL(tsm_event_get_pci_address(NULL));
        ASSERT_EQ(tsm_event_get_state(NULL), _TSM_TDI_STATE_INVALID);
        ASSERT_NULL(tsm_event_kind_to_string(_TSM_EVENT_KIND_MAX));
        ASSERT_NULL(tsm_event_kind_to_string(_TSM_EVENT_KIND_INVALID));
        pair_done(c, path, l, s);
}

/* Fds on a WatchEvents stream, where no reply names one: one with an event is closed once its
 * callback ran, not when the next event comes (hours later, maybe), and the stream goes on; two
 * are a protocol violation that ends the stream (-EPROTO), closes them and the connection. An
 * error tsmd ends the stream with is the callback's last, mapped and named, and the client
 * takes calls again. */
TEST(watch_stream_fds_and_errors) {
        char path[108], buf[4096];
        EventsSeen e = {};
        int l, s, p[2], q[2], wr[2];
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_OK(tsm_client_watch_events(c, on_event_seen, &e, on_events_destroy));
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        write_message(s, "{\"continues\":true,\"parameters\":{}}");
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        write_message_fd(s, EVENT("{\"kind\":\"device-changed\",\"context\":1,\"vdeviceId\":1,"
                                  "\"pciAddress\":\"0000:01:00.0\"}"), p[1]);
        close(p[1]);
        process_until(c, &e.n, 2);
        ASSERT_TRUE(e.with_event[1]);
        ASSERT_TRUE(pipe_widowed(p[0]));
        close(p[0]);

        write_message(s, "{\"error\":\"io.tsmd.Guest.Denied\",\"parameters\":{\"reason\":\"revoked\"}}");
        process_until(c, &e.n, 3);
        ASSERT_ERRNO(e.errors[2], EACCES);
        ASSERT_STREQ(e.error_names[2], "io.tsmd.Guest.Denied");
        ASSERT_EQ(e.n_destroys, 1U);
        ASSERT_TRUE(tsm_client_get_fd(c) >= 0);
        write_message(s, "{\"parameters\":{}}");
        ASSERT_OK(tsm_context_close(c, 1));
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));

        /* Two fds with an event. */
        e = (EventsSeen) {};
        ASSERT_OK(tsm_client_watch_events(c, on_event_seen, &e, on_events_destroy));
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        write_message(s, "{\"continues\":true,\"parameters\":{}}");
        process_until(c, &e.n, 1);
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        ASSERT_OK(pipe2(q, O_CLOEXEC));
        wr[0] = p[1];
        wr[1] = q[1];
        write_message_fds(s, EVENT("{\"kind\":\"device-changed\",\"context\":1,\"vdeviceId\":1,"
                                   "\"pciAddress\":\"0000:01:00.0\"}"), wr, 2);
        close(p[1]);
        close(q[1]);
        wait_readable(c);
        ASSERT_ERRNO(tsm_client_process(c), EPROTO);
        ASSERT_EQ(e.n, 2U);
        ASSERT_ERRNO(e.errors[1], EPROTO);
        ASSERT_STREQ(e.error_names[1], "io.tsmd.Protocol");
        ASSERT_FALSE(e.with_event[1]);
        ASSERT_EQ(e.n_destroys, 1U);
        ASSERT_TRUE(pipe_widowed(p[0]));
        ASSERT_TRUE(pipe_widowed(q[0]));
        ASSERT_TRUE(connection_lost(c));
        ASSERT_TRUE(sees_hangup(s));
        close(p[0]);
        close(q[0]);
        pair_done(c, path, l, s);
}

/* tsm_client_free() from a WatchEvents callback: no callback runs after it, though the same
 * read brought more (an event in the subscription's own reply, further events, the stream's
 * end), destroy runs once, and the connection is closed. On the subscription, and on an event
 * of the stream's last reply (no -ENODATA after it). */
TEST(free_from_watch_callback) {
        static const struct {
                const char *replies;
                unsigned free_at;
        } cases[] = {
                { "{\"continues\":true,\"parameters\":{\"event\":{\"kind\":\"device-removed\",\"context\":1,"
                  "\"vdeviceId\":1,\"pciAddress\":\"0000:01:00.0\"}}}\0"
                  EVENT("{\"kind\":\"device-removed\",\"context\":1,\"vdeviceId\":1,\"pciAddress\":\"0000:01:00.0\"}"),
                  1 },
                { "{\"continues\":true,\"parameters\":{}}\0"
                  "{\"parameters\":{\"event\":{\"kind\":\"backend-removed\",\"context\":1,\"vdeviceId\":1,"
                  "\"pciAddress\":\"0000:01:00.0\"}}}",
                  2 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char path[108], buf[4096];
                EventsSeen e = { .free_at = cases[i].free_at };
                size_t len = strlen(cases[i].replies) + 1;
                int l, s;
                TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

                len += strlen(cases[i].replies + len) + 1;
                ASSERT_OK(tsm_client_watch_events(c, on_event_seen, &e, on_events_destroy));
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                ASSERT_EQ(send(s, cases[i].replies, len, MSG_NOSIGNAL), (ssize_t) len);
                wait_readable(c);
                ASSERT_EQ(tsm_client_process(c), 1); /* c is gone */
                ASSERT_EQ(e.n, cases[i].free_at);
                ASSERT_EQ(e.n_destroys, 1U);
                for (unsigned j = 0; j < e.n; j++)
                        ASSERT_OK(e.errors[j]);
                freed_pair_done(path, l, s);
        }
}

/* tsm_client_free() from a callback tsm_client_reconnect() runs (-ECANCELED for a call of the
 * old connection): the reconnect returns -ECANCELED, the other pending calls get their destroy
 * but not their callback, and the new connection is closed with the client. */
TEST(free_from_reconnect_callback) {
        char path[108];
        Freer f = {};
        int l, s, s2;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        for (unsigned i = 0; i < 3; i++)
                ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_free, &f,
                                                  on_destroy_count));
        ASSERT_ERRNO(tsm_client_reconnect(c), ECANCELED);
        ASSERT_EQ(f.n_callbacks, 1U);
        ASSERT_EQ(f.n_destroys, 3U);
        ASSERT_TRUE(sees_hangup(s));
        s2 = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(s2 >= 0);
        ASSERT_TRUE(sees_hangup(s2));
        close(s2);
        pair_done(NULL, path, l, s);
}

/* tsm_context_reclaim() keeps the token the reply renews, or the one given when tsmd renews
 * none (an older tsmd). With -EMFILE (the VMM's fd table full) the context is this
 * connection's without its fd: @ret_context is set, the renewed token kept, and the context is
 * not closed. */
TEST(reclaim_keeps_the_right_token) {
        char path[108], buf[4096], *token = NULL;
        struct rlimit saved;
        uint64_t ctx = 0;
        int ls, s, p[2], fd = -1, r;
        TsmClient *c = connect_pair(path, sizeof(path), &ls, &s);

        /* No token in the reply: the one given stays the context's. */
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        write_message_fd(s, "{\"parameters\":{\"context\":7,\"fileDescriptor\":0}}", p[1]);
        close(p[1]);
        ASSERT_OK(tsm_context_reclaim(c, "t1", &ctx, &fd));
        ASSERT_EQ(ctx, 7U);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(tsm_context_get_reclaim_token(c, 7, &token));
        ASSERT_STREQ(token, "t1");
        token = mfree(token);
        close(fd);
        fd = -1;
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "\"reclaimToken\":\"t1\""));

        /* A renewed one replaces it; without ret_iommufd the fd is closed at once. */
        write_message_fd(s, "{\"parameters\":{\"context\":7,\"fileDescriptor\":0,\"reclaimToken\":\"t2\"}}", p[0]);
        ASSERT_OK(tsm_context_reclaim(c, "t1", &ctx, NULL));
        ASSERT_OK(tsm_context_get_reclaim_token(c, 7, &token));
        ASSERT_STREQ(token, "t2");
        token = mfree(token);
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));

        /* -EMFILE. */
        write_message_fd(s, "{\"parameters\":{\"context\":9,\"fileDescriptor\":0,\"reclaimToken\":\"t3\"}}", p[0]);
        close(p[0]);
        ctx = 0;
        fill_fd_table(&saved);
        r = tsm_context_reclaim(c, "t0", &ctx, &fd);
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
        ASSERT_ERRNO(r, EMFILE);
        ASSERT_EQ(ctx, 9U);
        ASSERT_EQ(fd, -1);
        ASSERT_NULL(tsm_client_get_error_name(c));
        ASSERT_OK(tsm_context_get_reclaim_token(c, 9, &token));
        ASSERT_STREQ(token, "t3");
        token = mfree(token);
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "ReclaimContext"));

        /* Nothing else was sent (no CloseContext); the connection goes on. */
        write_message(s, "{\"parameters\":{}}");
        ASSERT_OK(tsm_context_close(c, 9));
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "CloseContext"));
        ASSERT_NOT_NULL(strstr(buf, "\"context\":9"));
        ASSERT_ERRNO(tsm_context_get_reclaim_token(c, 9, &token), ENOENT);
        pair_done(c, path, ls, s);
}

typedef enum OutputCall {
        OUTPUT_OPEN,
        OUTPUT_ATTACH,
        OUTPUT_CALL_JSON,
        OUTPUT_ERROR,
} OutputCall;

/* A blocking call whose reply came, but a callback run after it (a reply read with it) freed
 * the client: -ECANCELED, no output written, and what the reply carried released: the iommufd
 * closed (not left in the VMM), the device info and JSON text freed (LeakSanitizer, valgrind),
 * the error name too. */
TEST(free_after_blocking_reply_releases_outputs) {
        static const char *const replies[] = {
                [OUTPUT_OPEN] = "{\"parameters\":{\"context\":5,\"fileDescriptor\":0,\"reclaimToken\":\"t\"}}",
                [OUTPUT_ATTACH] = "{\"parameters\":{\"backend\":\"emulated\",\"tsm\":\"emu0\",\"uapi\":\"emulated\",\"scopes\":["
                                  "{\"name\":\"info\",\"description\":\"d\",\"number\":0,\"maxRequestSize\":1,"
                                  "\"maxResponseSize\":1,\"allowed\":true}]}}",
                [OUTPUT_CALL_JSON] = "{\"parameters\":{\"devices\":[]}}",
                [OUTPUT_ERROR] = "{\"error\":\"io.tsmd.Guest.Denied\",\"parameters\":{\"reason\":\"no\"}}",
        };

        for (size_t i = 0; i < ELEMENTSOF(replies); i++) {
                char path[108], *text = NULL;
                TsmDeviceInfo *info = NULL;
                uint64_t ctx = 77;
                Freer f = {};
                int l, s, p[2], fd = -1, r = 0;
                TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

                ASSERT_OK(pipe2(p, O_CLOEXEC));
                ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_chain, &f,
                                                  on_destroy_count));
                write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}"); /* the first request's */
                if (i == OUTPUT_OPEN)
                        write_message_fd(s, replies[i], p[1]);
                else
                        write_message(s, replies[i]);
                write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}"); /* the second's: frees */
                close(p[1]);

                switch (i) {
                case OUTPUT_OPEN:
                        r = tsm_context_open(c, &ctx, &fd);
                        break;
                case OUTPUT_ATTACH:
                        r = tsm_device_attach(c, 1, 1, "0000:01:00.0", -1, &info);
                        break;
                case OUTPUT_CALL_JSON:
                        r = tsm_client_call_json(c, "io.tsmd.Admin.ListDevices", NULL, &text);
                        break;
                case OUTPUT_ERROR:
                        r = tsm_context_close(c, 1);
                        break;
                }
                if (r != -ECANCELED)
                        TEST_FAIL("%s: %d, expected -ECANCELED", replies[i], r);
                ASSERT_EQ(f.n_callbacks, 2U);
                ASSERT_EQ(f.n_destroys, 2U);
                ASSERT_EQ(ctx, 77U);
                ASSERT_EQ(fd, -1);
                ASSERT_NULL(info);
                ASSERT_NULL(text);
                ASSERT_TRUE(pipe_widowed(p[0]));
                close(p[0]);
                freed_pair_done(path, l, s);
        }
}

/* A call larger than a message may be (a guest request of 200 KiB, where no scope takes more
 * than 64 KiB) is not sent: -E2BIG without an error name, blocking or not, and the connection
 * (with what it holds) goes on. A failed registration runs neither callback nor destroy. */
TEST(oversized_call_not_sent) {
        size_t n = 200 * 1024;
        char path[108], *big = malloc(n);
        uint8_t resp[8];
        Freer f = {};
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_NOT_NULL(big);
        memset(big, 'x', n);
        ASSERT_EQ(ltsm_error_set_reply(c, "io.tsmd.Guest.Denied", NULL), -EACCES);
        ASSERT_ERRNO(tsm_guest_request(c, 1, 1, "info", big, n, resp, sizeof(resp), NULL), E2BIG);
        ASSERT_NULL(tsm_client_get_error_name(c));
        ASSERT_EQ(ltsm_error_set_reply(c, "io.tsmd.Guest.Denied", NULL), -EACCES);
        ASSERT_ERRNO(tsm_guest_request_async(c, 1, 1, "info", big, n, 64, on_response_free, &f, on_destroy_count),
                     E2BIG);
        ASSERT_NULL(tsm_client_get_error_name(c));
        ASSERT_EQ(f.n_callbacks, 0U);
        ASSERT_EQ(f.n_destroys, 0U);
        ASSERT_TRUE(tsm_client_get_fd(c) >= 0);
        ASSERT_EQ(tsm_client_get_events(c), 0);

        /* Nothing went out: the first message the peer reads is the next call's. */
        expect_close_context_is_next(c, s, 1);
        free(big);
        pair_done(c, path, l, s);
}

/* The VMM's fd table is full when a call would send an fd (AttachDevice's VFIO fd,
 * AdoptContext's iommufd): libtsm cannot duplicate it, and the call fails with -EMFILE,
 * unnamed, before anything is sent; the connection goes on. */
TEST(emfile_sending_an_fd) {
        char path[108];
        struct rlimit saved;
        uint64_t ctx = 77;
        int l, s, dev, r_attach, r_adopt;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        dev = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(dev >= 0);
        fill_fd_table(&saved);
        ASSERT_EQ(ltsm_error_set_reply(c, "io.tsmd.Guest.Denied", NULL), -EACCES);
        r_attach = tsm_device_attach(c, 1, 1, "0000:01:00.0", dev, NULL);
        ASSERT_NULL(tsm_client_get_error_name(c));
        ASSERT_EQ(ltsm_error_set_reply(c, "io.tsmd.Guest.Denied", NULL), -EACCES);
        r_adopt = tsm_context_adopt(c, dev, &ctx);
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
        ASSERT_ERRNO(r_attach, EMFILE);
        ASSERT_ERRNO(r_adopt, EMFILE);
        ASSERT_NULL(tsm_client_get_error_name(c));
        ASSERT_EQ(ctx, 77U);
        ASSERT_TRUE(tsm_client_get_fd(c) >= 0);

        /* Nothing went out: the first message the peer reads is the next call's. */
        expect_close_context_is_next(c, s, 1);
        close(dev);
        pair_done(c, path, l, s);
}

/* The reclaim tokens a client keeps: none for a context tsmd gave none (where it cannot keep
 * contexts), the context's after OpenContext, forgotten by CloseContext, and all of them by a
 * reconnect (the old handles mean nothing on the new connection). */
TEST(reclaim_tokens_kept_and_forgotten) {
        char path[108], buf[4096], *token = NULL;
        uint64_t ctx = 0;
        int l, s, s2, p[2];
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_OK(pipe2(p, O_CLOEXEC));
        write_message_fd(s, "{\"parameters\":{\"context\":5,\"fileDescriptor\":0,\"reclaimToken\":null}}", p[1]);
        ASSERT_OK(tsm_context_open(c, &ctx, NULL));
        ASSERT_EQ(ctx, 5U);
        ASSERT_ERRNO(tsm_context_get_reclaim_token(c, 5, &token), ENOENT);
        ASSERT_NULL(tsm_client_get_error_name(c));

        write_message_fd(s, "{\"parameters\":{\"context\":6,\"fileDescriptor\":0,\"reclaimToken\":\"t6\"}}", p[1]);
        write_message_fd(s, "{\"parameters\":{\"context\":7,\"fileDescriptor\":0,\"reclaimToken\":\"t7\"}}", p[1]);
        close(p[1]);
        ASSERT_OK(tsm_context_open(c, &ctx, NULL));
        ASSERT_OK(tsm_context_open(c, &ctx, NULL));
        ASSERT_OK(tsm_context_get_reclaim_token(c, 6, &token));
        ASSERT_STREQ(token, "t6");
        token = mfree(token);

        write_message(s, "{\"parameters\":{}}");
        ASSERT_OK(tsm_context_close(c, 6));
        ASSERT_ERRNO(tsm_context_get_reclaim_token(c, 6, &token), ENOENT);
        ASSERT_OK(tsm_context_get_reclaim_token(c, 7, &token));
        ASSERT_STREQ(token, "t7");
        token = mfree(token);

        ASSERT_OK(tsm_client_reconnect(c));
        ASSERT_ERRNO(tsm_context_get_reclaim_token(c, 7, &token), ENOENT);
        ASSERT_TRUE(pipe_widowed(p[0])); /* every iommufd closed, none asked for */
        close(p[0]);
        for (unsigned i = 0; i < 4; i++)
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        s2 = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(s2 >= 0);
        close(s2);
        pair_done(c, path, l, s);
}

/* A blocking call that times out is abandoned, not its connection: closing it would make tsmd
 * release every context on it, unbinding the VM's devices for one slow Bind. The call returns
 * -ETIMEDOUT; an asynchronous call made before it still gets its answer; the late answer (an
 * error here, with an fd) is dropped when it comes, its fd closed, and the next call gets its
 * own answer. */
TEST(timeout_abandons_the_call_only) {
        char path[108], buf[4096];
        AsyncResult a = {};
        int l, s, p[2];
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_record, &a, NULL));
        ASSERT_OK(tsm_client_set_timeout(c, 100 * 1000));
        ASSERT_ERRNO(tsm_context_close(c, 1), ETIMEDOUT);
        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.TimedOut");
        ASSERT_EQ(a.n, 0U);
        ASSERT_TRUE(tsm_client_get_fd(c) >= 0);
        ASSERT_TRUE(varlink_client_is_connected(c->vc));
        ASSERT_TRUE(read_message(s, buf, sizeof(buf))); /* the request */
        ASSERT_TRUE(read_message(s, buf, sizeof(buf))); /* CloseContext 1 */
        ASSERT_FALSE(sees_hangup(s));

        write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}");
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        write_message_fd(s, "{\"error\":\"io.tsmd.Guest.NoSuchContext\",\"parameters\":{\"context\":1}}", p[1]);
        close(p[1]);
        write_message(s, "{\"parameters\":{}}");
        ASSERT_OK(tsm_context_close(c, 2));
        ASSERT_NULL(tsm_client_get_error_name(c));
        ASSERT_EQ(a.n, 1U);
        ASSERT_OK(a.error);
        ASSERT_TRUE(pipe_widowed(p[0]));
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "\"context\":2"));
        ASSERT_FALSE(sees_hangup(s));
        close(p[0]);
        free(a.name);
        pair_done(c, path, l, s);
}

/* Abandoned calls are bounded without hanging up: tsmd answers in call order, so behind one
 * call it holds (a guest request to a device that does not answer, up to its
 * RequestTimeoutUSec=) every later call times out too, and a hang-up would make it release
 * every context of the connection. With VARLINK_CLIENT_ABANDONED_MAX unanswered, a blocking
 * call is refused, not sent (-EINPROGRESS, no error name): the connection and its pending
 * asynchronous calls stay. A reply to an abandoned call that came meanwhile makes room (the
 * refused call reads it first, with no loop to do it); once they are all answered, calls work. */
TEST(abandoned_calls_bounded_without_hanging_up) {
        char path[108], buf[4096];
        AsyncResult a = {};
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_OK(tsm_client_set_timeout(c, 10 * 1000));
        for (unsigned i = 0; i < VARLINK_CLIENT_ABANDONED_MAX; i++)
                ASSERT_ERRNO(tsm_context_close(c, 1), ETIMEDOUT);
        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_record, &a, NULL));
        for (unsigned i = 0; i < 3; i++) {
                ASSERT_EQ(ltsm_error_set_reply(c, "io.tsmd.Guest.Denied", NULL), -EACCES);
                ASSERT_ERRNO(tsm_context_close(c, 1), EINPROGRESS);
                ASSERT_NULL(tsm_client_get_error_name(c));
        }
        ASSERT_TRUE(varlink_client_is_connected(c->vc));
        ASSERT_EQ(a.n, 0U);
        /* Sent: the abandoned calls, not the refused ones; the request waits in libtsm, as
         * many calls as it sends at a time (TSM_CALLS_IN_FLIGHT_MAX) being unanswered. */
        ASSERT_EQ(VARLINK_CLIENT_ABANDONED_MAX, TSM_CALLS_IN_FLIGHT_MAX);
        for (unsigned i = 0; i < VARLINK_CLIENT_ABANDONED_MAX; i++) {
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                ASSERT_NOT_NULL(strstr(buf, "CloseContext"));
        }
        ASSERT_EQ(varlink_client_get_n_held(c->vc), 1U);
        ASSERT_EQ(poll(&(struct pollfd) { .fd = s, .events = POLLIN }, 1, 100), 0);

        /* One answered: the request goes, and one more call, which waits behind it and times
         * out in its turn. */
        write_message(s, "{\"parameters\":{}}");
        ASSERT_ERRNO(tsm_context_close(c, 1), ETIMEDOUT);
        ASSERT_ERRNO(tsm_context_close(c, 1), EINPROGRESS);
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "GuestRequest"));

        /* All answered (the request's in its turn): the next call gets its own answer. */
        for (unsigned i = 0; i < VARLINK_CLIENT_ABANDONED_MAX - 1; i++)
                write_message(s, "{\"parameters\":{}}");
        write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}");
        write_message(s, "{\"parameters\":{}}");
        while (varlink_client_get_n_pending(c->vc) > 0) {
                wait_readable(c);
                ASSERT_OK(tsm_client_process(c));
        }
        ASSERT_EQ(a.n, 1U);
        ASSERT_OK(a.error);
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "CloseContext"));
        write_message(s, "{\"parameters\":{}}");
        ASSERT_OK(tsm_client_set_timeout(c, 10 * 1000000ULL));
        ASSERT_OK(tsm_context_close(c, 2));
        ASSERT_EQ(varlink_client_get_n_pending(c->vc), 0U);
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "\"context\":2"));
        ASSERT_FALSE(sees_hangup(s));
        free(a.name);
        pair_done(c, path, l, s);
}

/* The late success of an abandoned OpenContext or AdoptContext made a context the VMM does not
 * know of, which counted against its limits until the connection closed: libtsm closes it (a
 * oneway CloseContext, sent before anything else) and the iommufd that came with it. Not one a
 * ReclaimContext took back: it holds a running guest's vDevices and bindings (the context stays,
 * its iommufd and renewed token kept for a retry: abandoned_reclaim_late_success_*). A late
 * error leaves nothing to close. */
TEST(abandoned_context_calls_release_their_context) {
        for (unsigned i = 0; i < 4; i++) {
                char path[108], buf[4096], reply[256], named[64], *token = NULL;
                uint64_t ctx;
                int l, s, p[2], fd = -1;
                TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

                ASSERT_OK(tsm_client_set_timeout(c, 10 * 1000));
                if (i == 0 || i == 3)
                        ASSERT_ERRNO(tsm_context_open(c, &ctx, &fd), ETIMEDOUT);
                else if (i == 1)
                        ASSERT_ERRNO(tsm_context_adopt(c, STDERR_FILENO, &ctx), ETIMEDOUT);
                else
                        ASSERT_ERRNO(tsm_context_reclaim(c, "token", &ctx, &fd), ETIMEDOUT);
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));

                ASSERT_OK(pipe2(p, O_CLOEXEC));
                if (i == 3)
                        write_message_fd(s, "{\"error\":\"io.tsmd.Guest.LimitReached\",\"parameters\":{}}", p[1]);
                else {
                        snprintf(reply, sizeof(reply),
                                 "{\"parameters\":{\"context\":%u,\"fileDescriptor\":0,\"reclaimToken\":\"t\"}}", 7 + i);
                        write_message_fd(s, reply, p[1]);
                }
                close(p[1]);
                wait_readable(c);
                ASSERT_OK(tsm_client_process(c));
                if (i == 2) {
                        ASSERT_FALSE(pipe_widowed(p[0]));
                        ASSERT_OK(tsm_context_get_reclaim_token(c, 9, &token));
                        ASSERT_STREQ(token, "t");
                        token = mfree(token);
                } else {
                        ASSERT_TRUE(pipe_widowed(p[0]));
                        ASSERT_ERRNO(tsm_context_get_reclaim_token(c, 7 + i, &token), ENOENT);
                }
                close(p[0]);

                write_message(s, "{\"parameters\":{}}");
                ASSERT_OK(tsm_client_set_timeout(c, 10 * 1000000ULL));
                ASSERT_OK(tsm_context_close(c, 99));
                if (i < 2) {
                        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                        ASSERT_NOT_NULL(strstr(buf, "CloseContext"));
                        snprintf(named, sizeof(named), "\"context\":%u", 7 + i);
                        ASSERT_NOT_NULL(strstr(buf, named));
                        ASSERT_NOT_NULL(strstr(buf, "\"oneway\":true"));
                }
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                ASSERT_NOT_NULL(strstr(buf, "\"context\":99"));
                ASSERT_EQ(varlink_client_get_n_pending(c->vc), 0U);
                ASSERT_TRUE(varlink_client_is_connected(c->vc));
                pair_done(c, path, l, s);
        }
}

/* Times out a reclaim with token (the peer at s reads it): abandoned, the connection goes on. */
static void reclaim_times_out(TsmClient *c, int s, const char *token) {
        char buf[4096], named[128];
        uint64_t ctx = 0;
        int fd = -1;

        ASSERT_OK(tsm_client_set_timeout(c, 10 * 1000));
        ASSERT_ERRNO(tsm_context_reclaim(c, token, &ctx, &fd), ETIMEDOUT);
        ASSERT_EQ(ctx, 0U);
        ASSERT_EQ(fd, -1);
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "ReclaimContext"));
        snprintf(named, sizeof(named), "\"reclaimToken\":\"%s\"", token);
        ASSERT_NOT_NULL(strstr(buf, named));
        ASSERT_OK(tsm_client_set_timeout(c, 10 * 1000000ULL));
}

/* The peer at s answers a reclaim late: context ctx, fd (may be -1: none attached), token. */
static void reclaim_answered_late(TsmClient *c, int s, uint64_t ctx, int fd, const char *token) {
        char reply[256];

        snprintf(reply, sizeof(reply),
                 "{\"parameters\":{\"context\":%" PRIu64 ",\"fileDescriptor\":0,\"reclaimToken\":\"%s\"}}", ctx, token);
        if (fd >= 0)
                write_message_fd(s, reply, fd);
        else
                write_message(s, reply);
        wait_readable(c);
        ASSERT_OK(tsm_client_process(c));
        ASSERT_EQ(varlink_client_get_n_pending(c->vc), 0U);
}

/* The next message the peer at s reads is a call of method naming what (nothing was sent
 * before it). */
static void expect_next_call(int s, const char *method, const char *what) {
        char buf[4096];

        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, method));
        ASSERT_NOT_NULL(strstr(buf, what));
}

/* A reclaim that timed out but succeeded late took back a context that holds a running guest's
 * vDevices and bindings, and renewed its token: the VMM's retry with the same token got -ENOENT
 * from tsmd, and its only way out was a reconnect, which released the context and unbound the
 * devices. The retry now gets that context from libtsm, as the call would have (its id, its
 * iommufd, O_CLOEXEC, kept open until then), without asking tsmd; once. Its renewed token is the
 * context's. With -EMFILE (the VMM's fd table full when the late reply came) the retry is
 * -EMFILE with the context set, as the call's would have been. */
TEST(abandoned_reclaim_late_success_answers_the_retry) {
        char path[108], *token = NULL, x;
        uint64_t ctx = 0;
        int l, s, p[2], fd = -1, flags;
        struct rlimit saved;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        reclaim_times_out(c, s, "t1");
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        reclaim_answered_late(c, s, 7, p[1], "t2");
        close(p[1]);
        ASSERT_FALSE(pipe_widowed(p[0])); /* libtsm keeps its iommufd for the retry */
        ASSERT_OK(tsm_context_get_reclaim_token(c, 7, &token));
        ASSERT_STREQ(token, "t2");
        token = mfree(token);

        ASSERT_EQ(ltsm_error_set_reply(c, "io.tsmd.Guest.Denied", NULL), -EACCES); /* cleared */
        ASSERT_OK(tsm_context_reclaim(c, "t1", &ctx, &fd));
        ASSERT_NULL(tsm_client_get_error_name(c));
        ASSERT_EQ(ctx, 7U);
        ASSERT_TRUE(fd >= 0);
        flags = fcntl(fd, F_GETFD);
        ASSERT_TRUE(flags >= 0 && (flags & FD_CLOEXEC));
        ASSERT_EQ(write(fd, "x", 1), 1); /* the fd the late reply carried */
        ASSERT_EQ(read(p[0], &x, 1), 1);
        close(fd);
        ASSERT_TRUE(pipe_widowed(p[0]));
        close(p[0]);
        ASSERT_OK(tsm_context_get_reclaim_token(c, 7, &token));
        ASSERT_STREQ(token, "t2");
        token = mfree(token);

        /* Once: the next retry goes to tsmd, which refuses the token; and the first one was not
         * sent (the peer's next message is this one). */
        write_message(s, "{\"error\":\"io.tsmd.Guest.ReclaimRefused\",\"parameters\":{}}");
        ASSERT_ERRNO(tsm_context_reclaim(c, "t1", &ctx, NULL), ENOENT);
        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Guest.ReclaimRefused");
        expect_next_call(s, "ReclaimContext", "\"reclaimToken\":\"t1\"");

        /* Without ret_iommufd the fd is closed at once. */
        reclaim_times_out(c, s, "t2");
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        reclaim_answered_late(c, s, 7, p[1], "t3");
        close(p[1]);
        ctx = 0;
        ASSERT_OK(tsm_context_reclaim(c, "t2", &ctx, NULL));
        ASSERT_EQ(ctx, 7U);
        ASSERT_TRUE(pipe_widowed(p[0]));
        close(p[0]);

        /* -EMFILE. */
        reclaim_times_out(c, s, "t3");
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        fill_fd_table(&saved);
        reclaim_answered_late(c, s, 9, p[1], "t4");
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
        close(p[1]);
        ASSERT_TRUE(pipe_widowed(p[0]));
        close(p[0]);
        ctx = 0;
        fd = -1;
        ASSERT_ERRNO(tsm_context_reclaim(c, "t3", &ctx, &fd), EMFILE);
        ASSERT_NULL(tsm_client_get_error_name(c));
        ASSERT_EQ(ctx, 9U);
        ASSERT_EQ(fd, -1);
        ASSERT_OK(tsm_context_get_reclaim_token(c, 9, &token));
        ASSERT_STREQ(token, "t4");
        token = mfree(token);

        /* Nothing was closed, nothing else sent; the connection goes on. */
        expect_close_context_is_next(c, s, 99);
        ASSERT_EQ(varlink_client_get_n_pending(c->vc), 0U);
        pair_done(c, path, l, s);
}

/* The same when the VMM retried before the late success came: tsmd answers the retry after it
 * (call order), refusing the token it renewed; the retry gets the context all the same. */
TEST(abandoned_reclaim_late_success_answers_a_retry_sent_before_it) {
        char path[108];
        uint64_t ctx = 0;
        int l, s, p[2], fd = -1;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        reclaim_times_out(c, s, "t1");
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        write_message_fd(s, "{\"parameters\":{\"context\":7,\"fileDescriptor\":0,\"reclaimToken\":\"t2\"}}", p[1]);
        close(p[1]);
        write_message(s, "{\"error\":\"io.tsmd.Guest.ReclaimRefused\",\"parameters\":{}}");
        ASSERT_OK(tsm_context_reclaim(c, "t1", &ctx, &fd));
        ASSERT_NULL(tsm_client_get_error_name(c));
        ASSERT_EQ(ctx, 7U);
        ASSERT_TRUE(fd >= 0);
        expect_next_call(s, "ReclaimContext", "\"reclaimToken\":\"t1\"");
        close(fd);
        ASSERT_TRUE(pipe_widowed(p[0]));
        close(p[0]);
        expect_close_context_is_next(c, s, 99);
        pair_done(c, path, l, s);
}

/* A late error took nothing back: a retry with the same token goes to tsmd, as any reclaim (here
 * it succeeds), and so does one after a late reply that does not match the interface (no
 * fileDescriptor), as the call would have failed with it. Before the late reply came too. */
TEST(abandoned_reclaim_late_error_retries_at_tsmd) {
        static const char *const late[] = {
                "{\"error\":\"io.tsmd.Guest.DeviceBusy\",\"parameters\":{}}",
                "{\"parameters\":{\"context\":5,\"reclaimToken\":\"t9\"}}",
        };

        for (unsigned i = 0; i < 2 * ELEMENTSOF(late); i++) {
                char path[108], *token = NULL;
                uint64_t ctx = 0;
                int l, s, p[2], fd = -1;
                TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

                reclaim_times_out(c, s, "t1");
                write_message(s, late[i % ELEMENTSOF(late)]);
                if (i < ELEMENTSOF(late)) {
                        wait_readable(c);
                        ASSERT_OK(tsm_client_process(c));
                        ASSERT_EQ(varlink_client_get_n_pending(c->vc), 0U);
                }
                ASSERT_ERRNO(tsm_context_get_reclaim_token(c, 5, &token), ENOENT);

                ASSERT_OK(pipe2(p, O_CLOEXEC));
                write_message_fd(s, "{\"parameters\":{\"context\":8,\"fileDescriptor\":0,\"reclaimToken\":\"t2\"}}", p[1]);
                close(p[1]);
                ASSERT_OK(tsm_context_reclaim(c, "t1", &ctx, &fd));
                ASSERT_EQ(ctx, 8U);
                expect_next_call(s, "ReclaimContext", "\"reclaimToken\":\"t1\"");
                close(fd);
                ASSERT_TRUE(pipe_widowed(p[0]));
                close(p[0]);
                ASSERT_OK(tsm_context_get_reclaim_token(c, 8, &token));
                ASSERT_STREQ(token, "t2");
                token = mfree(token);
                ASSERT_EQ(varlink_client_get_n_pending(c->vc), 0U);
                pair_done(c, path, l, s);
        }
}

/* What libtsm keeps for retries is bounded: each holds an iommufd. Beyond TSM_LATE_RECLAIMS_MAX
 * the oldest is forgotten (its fd closed; its context stays, its token too); so is one whose
 * context the VMM closed, and every one at a reconnect (the context went with the connection). */
TEST(abandoned_reclaim_late_successes_bounded_and_forgotten) {
        char path[108], token[16];
        int l, s, s2, p[TSM_LATE_RECLAIMS_MAX + 1][2];
        uint64_t ctx = 0;
        char *renewed = NULL;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        for (unsigned i = 0; i <= TSM_LATE_RECLAIMS_MAX; i++) {
                snprintf(token, sizeof(token), "a%u", i);
                reclaim_times_out(c, s, token);
                ASSERT_OK(pipe2(p[i], O_CLOEXEC));
                snprintf(token, sizeof(token), "b%u", i);
                reclaim_answered_late(c, s, 10 + i, p[i][1], token);
                close(p[i][1]);
        }
        ASSERT_TRUE(pipe_widowed(p[0][0]));
        for (unsigned i = 1; i <= TSM_LATE_RECLAIMS_MAX; i++)
                ASSERT_FALSE(pipe_widowed(p[i][0]));
        ASSERT_OK(tsm_context_get_reclaim_token(c, 10, &renewed));
        ASSERT_STREQ(renewed, "b0");
        renewed = mfree(renewed);
        write_message(s, "{\"error\":\"io.tsmd.Guest.ReclaimRefused\",\"parameters\":{}}");
        ASSERT_ERRNO(tsm_context_reclaim(c, "a0", &ctx, NULL), ENOENT);
        expect_next_call(s, "ReclaimContext", "\"reclaimToken\":\"a0\"");

        /* Closed: forgotten with its token. */
        expect_close_context_is_next(c, s, 12);
        ASSERT_TRUE(pipe_widowed(p[2][0]));
        write_message(s, "{\"error\":\"io.tsmd.Guest.ReclaimRefused\",\"parameters\":{}}");
        ASSERT_ERRNO(tsm_context_reclaim(c, "a2", &ctx, NULL), ENOENT);
        expect_next_call(s, "ReclaimContext", "\"reclaimToken\":\"a2\"");

        ASSERT_OK(tsm_context_reclaim(c, "a1", &ctx, NULL));
        ASSERT_EQ(ctx, 11U);
        ASSERT_TRUE(pipe_widowed(p[1][0]));

        /* A reconnect: the contexts and their fds went with the connection; a retry sends the
         * renewed token in the given one's place (abandoned_reclaim_late_success_moved_by_a_reconnect),
         * until tsmd answers for it. */
        ASSERT_OK(tsm_client_reconnect(c));
        s2 = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(s2 >= 0);
        for (unsigned i = 0; i <= TSM_LATE_RECLAIMS_MAX; i++) {
                ASSERT_TRUE(pipe_widowed(p[i][0]));
                close(p[i][0]);
        }
        write_message(s2, "{\"error\":\"io.tsmd.Guest.ReclaimRefused\",\"parameters\":{}}");
        ASSERT_ERRNO(tsm_context_reclaim(c, "a3", &ctx, NULL), ENOENT);
        expect_next_call(s2, "ReclaimContext", "\"reclaimToken\":\"b3\"");
        write_message(s2, "{\"error\":\"io.tsmd.Guest.ReclaimRefused\",\"parameters\":{}}");
        ASSERT_ERRNO(tsm_context_reclaim(c, "a3", &ctx, NULL), ENOENT);
        expect_next_call(s2, "ReclaimContext", "\"reclaimToken\":\"a3\"");
        close(s2);
        pair_done(c, path, l, s);
}

/* A reclaim that succeeded late, then the connection lost before the VMM retried (tsmd
 * restarting, say): the context went with the connection, and tsmd knows it by the renewed token
 * only, which the VMM never learned (a reconnect forgets the tokens). The retry with the given
 * token sends the renewed one, and gets the context back; a connection lost again keeps it for
 * the next retry. */
TEST(abandoned_reclaim_late_success_moved_by_a_reconnect) {
        char path[108], *token = NULL;
        uint64_t ctx = 0;
        int l, s, s2, p[2], fd = -1;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        reclaim_times_out(c, s, "old");
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        reclaim_answered_late(c, s, 7, p[1], "renewed");
        close(p[1]);
        ASSERT_OK(tsm_client_reconnect(c));
        ASSERT_TRUE(pipe_widowed(p[0])); /* its iommufd went with the connection */
        close(p[0]);

        /* Lost again before tsmd answered: kept. */
        s2 = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(s2 >= 0);
        close(s2);
        ASSERT_ERRNO(tsm_context_reclaim(c, "old", &ctx, &fd), ECONNRESET);
        ASSERT_OK(tsm_client_reconnect(c));
        s2 = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(s2 >= 0);

        ASSERT_OK(pipe2(p, O_CLOEXEC));
        write_message_fd(s2, "{\"parameters\":{\"context\":3,\"fileDescriptor\":0,\"reclaimToken\":\"newer\"}}", p[1]);
        close(p[1]);
        ASSERT_OK(tsm_context_reclaim(c, "old", &ctx, &fd));
        expect_next_call(s2, "ReclaimContext", "\"reclaimToken\":\"renewed\"");
        ASSERT_EQ(ctx, 3U);
        ASSERT_TRUE(fd >= 0);
        close(fd);
        ASSERT_TRUE(pipe_widowed(p[0]));
        close(p[0]);
        ASSERT_OK(tsm_context_get_reclaim_token(c, 3, &token));
        ASSERT_STREQ(token, "newer");
        token = mfree(token);

        /* Taken: the given token goes to tsmd as it is from now on. */
        write_message(s2, "{\"error\":\"io.tsmd.Guest.ReclaimRefused\",\"parameters\":{}}");
        ASSERT_ERRNO(tsm_context_reclaim(c, "old", &ctx, NULL), ENOENT);
        expect_next_call(s2, "ReclaimContext", "\"reclaimToken\":\"old\"");
        close(s2);
        pair_done(c, path, l, s);
}

/* A guest request larger than any scope takes (TSM_PRIV_PAYLOAD_MAX) is refused before it is
 * encoded: -E2BIG at once, without reading it (a 1 GiB request cost 1.8 GiB and many seconds to
 * be refused by its message's size), blocking or not. The request here is unreadable memory. */
TEST(oversized_request_refused_before_encoding) {
        size_t n = 1024UL * 1024UL * 1024UL;
        char path[108];
        uint8_t resp[8];
        void *req;
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        req = mmap(NULL, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        ASSERT_TRUE(req != MAP_FAILED);
        ASSERT_ERRNO(tsm_guest_request(c, 1, 1, "info", req, n, resp, sizeof(resp), NULL), E2BIG);
        ASSERT_NULL(tsm_client_get_error_name(c));
        ASSERT_ERRNO(tsm_guest_request_async(c, 1, 1, "info", req, n, 64, noop_response, NULL, NULL), E2BIG);
        ASSERT_ERRNO(tsm_guest_request(c, 1, 1, "info", req, TSM_PRIV_PAYLOAD_MAX + 1, resp, sizeof(resp), NULL),
                     E2BIG);
        ASSERT_TRUE(varlink_client_is_connected(c->vc));
        expect_close_context_is_next(c, s, 1);
        ASSERT_OK(munmap(req, n));
        pair_done(c, path, l, s);
}

/* A lost connection keeps its fd number until tsm_client_reconnect() or tsm_client_free():
 * an event loop still watching the number sees POLLHUP there, never an fd opened since (an
 * iommufd a later call returns, say). Whether the loss shows in tsm_client_process() or in a
 * blocking call, and when libtsm hangs up itself (a protocol violation): tsmd sees that. */
TEST(lost_connection_keeps_its_fd) {
        for (unsigned i = 0; i < 3; i++) {
                char path[108], *reply = NULL;
                struct pollfd pf;
                int l, s, fd, other;
                TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

                fd = tsm_client_get_fd(c);
                ASSERT_TRUE(fd >= 0);
                if (i == 0) {
                        ASSERT_OK(shutdown(s, SHUT_RDWR));
                        ASSERT_ERRNO(tsm_client_process(c), ECONNRESET);
                } else if (i == 1) {
                        ASSERT_OK(shutdown(s, SHUT_RDWR));
                        ASSERT_ERRNO(tsm_context_close(c, 1), ECONNRESET);
                } else {
                        write_message(s, "this is not JSON");
                        ASSERT_ERRNO(tsm_client_call_json(c, "io.tsmd.Guest.OpenContext", NULL, &reply), EPROTO);
                        ASSERT_TRUE(sees_hangup(s));
                }
                ASSERT_EQ(tsm_client_get_fd(c), fd);
                ASSERT_TRUE(connection_lost(c));
                other = open("/dev/null", O_RDONLY | O_CLOEXEC);
                ASSERT_TRUE(other >= 0);
                ASSERT_TRUE(other != fd);
                close(other);
                pf = (struct pollfd){ .fd = fd, .events = (short) tsm_client_get_events(c) };
                ASSERT_EQ(poll(&pf, 1, 0), 1);
                ASSERT_TRUE(pf.revents & POLLHUP);
                ASSERT_ERRNO(tsm_client_process(c), ENOTCONN);
                ASSERT_EQ(tsm_client_get_fd(c), fd);
                pair_done(c, path, l, s);
        }
}

/* The same for an event loop on epoll(7) (cloud-hypervisor's, QEMU's): the lost connection's
 * fd stays in the epoll set, where it reports the hang-up, and leaves it with EPOLL_CTL_DEL
 * (epoll registers the file: one put under the number instead would have left the set, and
 * EPOLL_CTL_MOD and _DEL fail with ENOENT, which such loops treat as fatal). What tsmd had
 * queued on the socket and the client never read goes as with a close: its fds are closed. */
TEST(lost_connection_stays_in_epoll_set) {
        for (unsigned i = 0; i < 2; i++) {
                char path[108], *reply = NULL, *garbage, b;
                struct epoll_event ev = { .events = EPOLLIN };
                int l, s, fd, ep, p[2];
                TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

                fd = tsm_client_get_fd(c);
                ASSERT_TRUE(fd >= 0);
                ep = epoll_create1(EPOLL_CLOEXEC);
                ASSERT_TRUE(ep >= 0);
                ev.data.fd = fd;
                ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
                ASSERT_OK(pipe2(p, O_CLOEXEC | O_NONBLOCK));

                if (i == 0) {
                        ASSERT_OK(shutdown(s, SHUT_RDWR));
                        ASSERT_ERRNO(tsm_client_process(c), ECONNRESET);
                } else {
                        /* A message no reply is, exactly one read long, then one with an fd
                         * (the write end of a pipe) the client never reads. */
                        garbage = malloc(16 * 1024);
                        ASSERT_NOT_NULL(garbage);
                        memset(garbage, 'x', 16 * 1024 - 1);
                        garbage[16 * 1024 - 1] = 0;
                        write_message(s, garbage);
                        free(garbage);
                        write_message_fd(s, "{\"parameters\":{}}", p[1]);
                        ASSERT_ERRNO(tsm_client_call_json(c, "io.tsmd.Guest.OpenContext", NULL, &reply), EPROTO);
                        ASSERT_TRUE(sees_hangup(s));
                }
                close(p[1]);
                ASSERT_TRUE(connection_lost(c));
                ASSERT_EQ(tsm_client_get_fd(c), fd);

                ev = (struct epoll_event){};
                ASSERT_EQ(epoll_wait(ep, &ev, 1, 1000), 1);
                ASSERT_EQ(ev.data.fd, fd);
                ASSERT_TRUE(ev.events & EPOLLHUP);
                ev.events = EPOLLIN | EPOLLOUT;
                ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev));
                ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL));
                /* The pipe's write end, queued unread, was closed: its reader sees the end (not
                 * EAGAIN). */
                ASSERT_EQ(read(p[0], &b, 1), 0);

                close(p[0]);
                close(ep);
                pair_done(c, path, l, s);
        }
}

/* Success clears the error state too, so that an earlier call's error name is never taken for
 * this one's (tsm.h): an asynchronous callback that succeeds, a blocking call that succeeds
 * while the failed answer of a request made during its wait came with its own, and
 * tsm_context_get_reclaim_token(). */
TEST(success_clears_error_name) {
        static const char answers[] = "{\"parameters\":{\"response\":\"eA==\"}}\0"
                                      "{\"parameters\":{}}\0"
                                      "{\"error\":\"io.tsmd.Guest.Denied\",\"parameters\":{}}";
        char path[108], *token = NULL;
        AsyncResult a = {};
        Chained ch = {};
        uint64_t ctx;
        int l, s, p[2];
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_response_record, &a, NULL));
        ASSERT_EQ(ltsm_error_set_reply(c, "io.tsmd.Guest.ReclaimRefused", NULL), -ENOENT);
        write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}");
        wait_readable(c);
        ASSERT_EQ(tsm_client_process(c), 1);
        ASSERT_EQ(a.n, 1U);
        ASSERT_OK(a.error);
        ASSERT_NULL(a.name);

        ASSERT_EQ(send(s, answers, sizeof(answers), MSG_NOSIGNAL), (ssize_t) sizeof(answers));
        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, on_first, &ch, NULL));
        ASSERT_OK(tsm_context_close(c, 1));
        ASSERT_EQ(ch.second.n, 1U);
        ASSERT_ERRNO(ch.second.error, EACCES);
        ASSERT_STREQ(ch.second.name, "io.tsmd.Guest.Denied");
        ASSERT_NULL(tsm_client_get_error_name(c));

        ASSERT_OK(pipe2(p, O_CLOEXEC));
        write_message_fd(s, "{\"parameters\":{\"context\":6,\"fileDescriptor\":0,\"reclaimToken\":\"t6\"}}", p[1]);
        close(p[1]);
        ASSERT_OK(tsm_context_open(c, &ctx, NULL));
        ASSERT_EQ(ltsm_error_set_reply(c, "io.tsmd.Guest.ReclaimRefused", NULL), -ENOENT);
        ASSERT_OK(tsm_context_get_reclaim_token(c, 6, &token));
        ASSERT_NULL(tsm_client_get_error_name(c));
        free(token);
        close(p[0]);
        free(a.name);
        free(ch.first.name);
        free(ch.second.name);
        pair_done(c, path, l, s);
}

#define TOKEN_64 "KKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKK"

static char *token_of(TsmClient *c, uint64_t context) {
        for (size_t i = 0; i < c->n_tokens; i++)
                if (c->tokens[i].context == context)
                        return c->tokens[i].token;
        TEST_FAIL("no token for context %" PRIu64, context);
}

/* Whether the freed token at p still shows: past its first 32 bytes, which the allocator may
 * take for its own bookkeeping. Reads freed memory, on purpose. */
__attribute__((no_sanitize("address", "thread"))) static bool token_still_there(const volatile char *p) {
        for (size_t i = 32; i < strlen(TOKEN_64); i++)
                if (p[i] == 'K')
                        return true;
        return false;
}

/* SECURITY: a reclaim token takes its context back: one libtsm lets go of (forgotten with its
 * context, replaced, dropped by a reconnect; or one an abandoned reclaim was made with) is wiped
 * before it is freed, not left for a core dump or the next allocation to show. */
TEST(reclaim_tokens_wiped) {
        char path[108];
        const char *t, *lt;
        TsmLateReclaim *late;
        int l, s, s2;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_OK(ltsm_tokens_remember(c, 1, TOKEN_64));
        t = token_of(c, 1);
        ltsm_tokens_forget(c, 1);
        ASSERT_FALSE(token_still_there(t));

        ASSERT_OK(ltsm_tokens_remember(c, 2, TOKEN_64));
        t = token_of(c, 2);
        ASSERT_OK(ltsm_tokens_remember(c, 2, "renewed"));
        ASSERT_FALSE(token_still_there(t));

        ASSERT_OK(ltsm_tokens_remember(c, 3, TOKEN_64));
        t = token_of(c, 3);
        /* The token a reclaim libtsm abandoned was made with: void at tsmd once it succeeded,
         * but the VMM's to store all the same. */
        ASSERT_OK(ltsm_late_reclaim_new(c, TOKEN_64, &late));
        lt = late->token;
        ltsm_late_reclaim_free(late);
        ASSERT_FALSE(token_still_there(lt));
        ASSERT_OK(ltsm_late_reclaim_new(c, TOKEN_64, &late));
        lt = late->token;
        ASSERT_OK(tsm_client_reconnect(c));
        ASSERT_FALSE(token_still_there(t));
        ASSERT_FALSE(token_still_there(lt));

        s2 = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(s2 >= 0);
        close(s2);
        pair_done(c, path, l, s);
}

/* ---- handing a connection on ----------------------------------------------------------- */

/* SECURITY: only at a message boundary: not while a call awaits its reply (the next owner would
 * read it as the answer to its own), not while output is unsent (it would write into the middle
 * of our call), not while a message tsmd sent is partly read (it would start reading in its
 * middle). Each refusal leaves the client as it was. */
TEST(detach_refused_unless_at_a_message_boundary) {
        char path[108], buf[4096];
        int l, s, fd = -1, sndbuf = 4096;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);
        json_object *big;
        char *filler;

        /* A call pending: its reply is to come. */
        ASSERT_OK(tsm_guest_request_async(c, 1, 1, "info", "x", 1, 64, noop_response, NULL, NULL));
        ASSERT_ERRNO(tsm_client_detach_fd(c, &fd), EBUSY);
        ASSERT_EQ(fd, -1);
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        write_message(s, "{\"parameters\":{\"response\":\"\",\"scopeNumber\":0}}");
        wait_readable(c);
        ASSERT_EQ(tsm_client_process(c), 1);

        /* A reply partly read (tsmd's half-written message, which the client read as far as it
         * came): the rest must be read by whoever read its start. */
        ASSERT_EQ(write(s, "{\"parameters\"", 13), 13);
        wait_readable(c);
        ASSERT_OK(varlink_client_process(c->vc));
        ASSERT_ERRNO(tsm_client_detach_fd(c, &fd), EBUSY);
        ASSERT_EQ(fd, -1);
        ASSERT_TRUE(varlink_client_is_connected(c->vc));
        pair_done(c, path, l, s);

        /* Output unsent: a oneway call larger than the socket takes, the peer not reading. */
        c = connect_pair(path, sizeof(path), &l, &s);
        ASSERT_OK(setsockopt(tsm_client_get_fd(c), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)));
        filler = malloc(120 * 1024);
        ASSERT_NOT_NULL(filler);
        memset(filler, 'a', 120 * 1024 - 1);
        filler[120 * 1024 - 1] = 0;
        big = json_object_new_object();
        ASSERT_OK(json_object_object_add(big, "filler", json_object_new_string(filler)));
        free(filler);
        ASSERT_OK(varlink_client_queue_oneway(c->vc, "io.tsmd.Guest.CloseContext", big));
        ASSERT_TRUE(tsm_client_get_events(c) & POLLOUT);
        ASSERT_ERRNO(tsm_client_detach_fd(c, &fd), EBUSY);
        ASSERT_EQ(fd, -1);
        pair_done(c, path, l, s);

        /* Nothing under way: the fd, open, the client gone (its socket not closed: the peer sees
         * no hang-up). */
        c = connect_pair(path, sizeof(path), &l, &s);
        ASSERT_OK(tsm_client_detach_fd(c, &fd));
        ASSERT_TRUE(fd >= 0);
        ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        ASSERT_FALSE(sees_hangup(s));
        close(fd);
        ASSERT_TRUE(sees_hangup(s));
        pair_done(NULL, path, l, s);
}

/* What tsm_client_new_from_fd() takes: a connected AF_UNIX stream socket, else refused with the
 * fd left open and the caller's. */
TEST(adopt_refuses_what_is_no_connection) {
        int pipefd[2], dgram[2], fd, l;
        char path[108];
        TsmClient *c = NULL;

        ASSERT_ERRNO(tsm_client_new_from_fd(-1, NULL, &c), EBADF);
        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        ASSERT_ERRNO(tsm_client_new_from_fd(pipefd[0], NULL, &c), ENOTSOCK);
        ASSERT_TRUE(fcntl(pipefd[0], F_GETFD) >= 0);
        close(pipefd[0]);
        close(pipefd[1]);
        ASSERT_ERRNO(tsm_client_new_from_fd(pipefd[0], NULL, &c), EBADF); /* closed now */

        ASSERT_OK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dgram));
        ASSERT_ERRNO(tsm_client_new_from_fd(dgram[0], NULL, &c), EINVAL);
        ASSERT_TRUE(fcntl(dgram[0], F_GETFD) >= 0);
        close(dgram[0]);
        close(dgram[1]);

        /* Unconnected, listening, another family. */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_ERRNO(tsm_client_new_from_fd(fd, NULL, &c), EINVAL);
        close(fd);
        l = listen_at(path, sizeof(path), 4);
        ASSERT_ERRNO(tsm_client_new_from_fd(l, NULL, &c), EINVAL);
        close(l);
        unlink(path);
        fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
                ASSERT_ERRNO(tsm_client_new_from_fd(fd, NULL, &c), EINVAL);
                close(fd);
        }
        ASSERT_NULL(c);
        ASSERT_ERRNO(tsm_client_new_from_fd(0, NULL, NULL), EINVAL);
}

typedef struct DescribePeer {
        int fd;
        bool wrong_nonce;
        char call[4096];
} DescribePeer;

/* Answers one DescribeConnection as tsmd would: context 4 with vDevice 9 bound, echoing the
 * call's nonce (or not). */
static void *describe_peer_thread(void *userdata) {
        DescribePeer *p = userdata;
        const char *n;
        char reply[512];
        long long nonce;

        if (!read_message(p->fd, p->call, sizeof(p->call)))
                return NULL;
        n = strstr(p->call, "\"nonce\":");
        nonce = n ? strtoll(n + 8, NULL, 10) : -1;
        snprintf(reply, sizeof(reply),
                 "{\"parameters\":{\"nonce\":%lld,\"contexts\":[{\"context\":4,\"vdevices\":[{\"vdeviceId\":9,"
                 "\"pciAddress\":\"0000:01:00.0\",\"bound\":true,\"changing\":false,\"gone\":false}]},"
                 "{\"context\":5,\"vdevices\":[]}]}}",
                 p->wrong_nonce ? nonce + 1 : nonce);
        write_message(p->fd, reply);
        return NULL;
}

/* Adopting: DescribeConnection (with a nonce) is the first thing sent, and what it answers is
 * what the connection holds; a reply with another nonce is refused, and the fd left as it was. */
TEST(adopt_resynchronises_with_describe) {
        char path[108], buf[4096];
        DescribePeer peer = {};
        TsmConnectionInfo *info = NULL;
        const TsmHeldVDevice *v;
        pthread_t th;
        TsmClient *c = NULL;
        int l, fd;

        l = listen_at(path, sizeof(path), 4);
        fd = connect_raw(path);
        peer.fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(peer.fd >= 0);

        /* Another nonce: the reply is not this call's. */
        peer.wrong_nonce = true;
        ASSERT_OK(pthread_create(&th, NULL, describe_peer_thread, &peer));
        ASSERT_ERRNO(tsm_client_new_from_fd(fd, &info, &c), EBADMSG);
        ASSERT_OK(pthread_join(th, NULL));
        ASSERT_NULL(c);
        ASSERT_NULL(info);
        ASSERT_TRUE(fcntl(fd, F_GETFD) >= 0); /* still the caller's, the connection open */
        ASSERT_FALSE(sees_hangup(peer.fd));
        ASSERT_NOT_NULL(strstr(peer.call, "\"method\":\"io.tsmd.Guest.DescribeConnection\""));

        peer.wrong_nonce = false;
        ASSERT_OK(pthread_create(&th, NULL, describe_peer_thread, &peer));
        ASSERT_OK(tsm_client_new_from_fd(fd, &info, &c));
        ASSERT_OK(pthread_join(th, NULL));
        ASSERT_EQ(tsm_client_get_fd(c), fd); /* taken: the client's socket is fd itself */
        ASSERT_NULL(tsm_client_get_error_name(c));
        ASSERT_EQ(tsm_connection_info_get_n_contexts(info), 2);
        ASSERT_EQ(tsm_connection_info_get_context(info, 0), 4);
        ASSERT_EQ(tsm_connection_info_get_context(info, 1), 5);
        ASSERT_EQ(tsm_connection_info_get_context(info, 2), 0);
        ASSERT_EQ(tsm_connection_info_get_n_vdevices(info), 1);
        v = tsm_connection_info_get_vdevice(info, 0);
        ASSERT_EQ(tsm_held_vdevice_get_context(v), 4);
        ASSERT_EQ(tsm_held_vdevice_get_id(v), 9);
        ASSERT_STREQ(tsm_held_vdevice_get_pci_address(v), "0000:01:00.0");
        ASSERT_TRUE(tsm_held_vdevice_is_bound(v));
        ASSERT_FALSE(tsm_held_vdevice_is_changing(v));
        ASSERT_FALSE(tsm_held_vdevice_is_gone(v));
        tsm_connection_info_free(info);

        /* It reconnects to where its peer listens. */
        ASSERT_STREQ(c->address, path);
        /* The adopted client goes on with the usual limits and flags, and calls work. */
        write_message(peer.fd, "{\"parameters\":{}}");
        ASSERT_OK(tsm_context_close(c, 4));
        ASSERT_TRUE(read_message(peer.fd, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "CloseContext"));
        tsm_client_free(c);
        ASSERT_TRUE(sees_hangup(peer.fd));
        close(peer.fd);
        close(l);
        unlink(path);
}

/* ---- DescribeConnection: asynchronous, and the bound of its reply ---------------------------- */

/* The nonce of a DescribeConnection call as libtsm sent it. */
static long long call_nonce(const char *call) {
        const char *n = strstr(call, "\"nonce\":");

        ASSERT_NOT_NULL(strstr(call, "\"method\":\"io.tsmd.Guest.DescribeConnection\""));
        ASSERT_NOT_NULL(n);
        return strtoll(n + strlen("\"nonce\":"), NULL, 10);
}

/* A DescribeConnection reply echoing nonce: {"parameters":{"nonce":N,REST}} made exactly size
 * bytes with its NUL (size 0: as it comes) by a "padding" string before REST, a member libtsm
 * ignores. */
static char *describe_reply_text(long long nonce, const char *rest, size_t size) {
        char *head, *text;
        size_t n;

        ASSERT_GE(asprintf(&head, "{\"parameters\":{\"nonce\":%lld,", nonce), 0);
        if (size == 0) {
                ASSERT_GE(asprintf(&text, "%s%s", head, rest), 0);
                free(head);
                return text;
        }
        n = strlen(head) + strlen("\"padding\":\"\",") + strlen(rest) + 1;
        ASSERT_LE(n, size);
        text = malloc(size);
        ASSERT_NOT_NULL(text);
        strcpy(text, head);
        strcat(text, "\"padding\":\"");
        memset(text + strlen(text), 'p', size - n);
        strcpy(text + strlen(head) + strlen("\"padding\":\"") + (size - n), "\",");
        strcat(text, rest);
        ASSERT_EQ(strlen(text) + 1, size);
        free(head);
        return text;
}

/* REST of the largest reply tsmd sends (test-reply-bound's describe_size(), from tsmd's own
 * code): GUEST_CONTEXTS_PER_CLIENT_MAX contexts holding GUEST_VDEVICES_PER_CLIENT_MAX vDevices,
 * every value at its longest. */
static char *largest_describe_rest(void) {
        const char *vdevice = "{\"vdeviceId\":4294967295,\"pciAddress\":\"fffffff:ff:1f.7\",\"bound\":false,"
                              "\"changing\":false,\"gone\":false}";
        size_t per = GUEST_VDEVICES_PER_CLIENT_MAX / GUEST_CONTEXTS_PER_CLIENT_MAX,
               size = (size_t) GUEST_CONTEXTS_PER_CLIENT_MAX * (64 + per * (strlen(vdevice) + 1)) + 64, pos;
        char *t = malloc(size);

        ASSERT_NOT_NULL(t);
        pos = (size_t) snprintf(t, size, "\"contexts\":[");
        for (size_t i = 0; i < GUEST_CONTEXTS_PER_CLIENT_MAX; i++) {
                pos += (size_t) snprintf(t + pos, size - pos, "%s{\"context\":9223372036854775807,\"vdevices\":[",
                                         i > 0 ? "," : "");
                for (size_t j = 0; j < per; j++)
                        pos += (size_t) snprintf(t + pos, size - pos, "%s%s", j > 0 ? "," : "", vdevice);
                pos += (size_t) snprintf(t + pos, size - pos, "]}");
        }
        ASSERT_LE(pos + 4, size);
        strcpy(t + pos, "]}}");
        return t;
}

/* REST of a reply of values JSON values in all (the message, its parameters, the nonce and the
 * empty context array, the rest in a "padding" array of zeros). */
static char *describe_rest_of_values(size_t values) {
        size_t n = values - 5, pos;
        char *t = malloc(2 * n + 64);

        ASSERT_NOT_NULL(t);
        pos = (size_t) sprintf(t, "\"contexts\":[],\"padding\":[");
        for (size_t i = 0; i < n; i++) {
                t[pos++] = '0';
                t[pos++] = ',';
        }
        strcpy(t + pos - 1, "]}}");
        return t;
}

/* A peer answering one DescribeConnection with REST after the call's own nonce (or another),
 * size bytes with its NUL (0: as it comes). */
typedef struct DescribeAnswer {
        int fd;
        const char *rest;
        size_t size;
        bool wrong_nonce;
} DescribeAnswer;

static void *describe_answer_thread(void *userdata) {
        DescribeAnswer *a = userdata;
        char call[4096], *text;
        long long nonce;

        if (!read_message(a->fd, call, sizeof(call)))
                return NULL;
        nonce = call_nonce(call);
        text = describe_reply_text(a->wrong_nonce ? nonce ^ 1 : nonce, a->rest, a->size);
        (void) send(a->fd, text, strlen(text) + 1, MSG_NOSIGNAL);
        free(text);
        return NULL;
}

/* tsm_client_describe() with the peer answering as a says. */
static int describe_answered(TsmClient *c, DescribeAnswer *a, TsmConnectionInfo **ret) {
        pthread_t th;
        int r;

        ASSERT_OK(pthread_create(&th, NULL, describe_answer_thread, a));
        r = tsm_client_describe(c, ret);
        ASSERT_OK(pthread_join(th, NULL));
        return r;
}

/* A guest request answered with a reply of size bytes (with its NUL): larger than any but
 * DescribeConnection's, past TSM_GUEST_MESSAGE_MAX. */
static int request_answered_with_size(TsmClient *c, int s, size_t size) {
        char resp[8], *text;
        size_t len;
        Replier rp;
        pthread_t th;
        int r;

        text = malloc(size);
        ASSERT_NOT_NULL(text);
        strcpy(text, "{\"parameters\":{\"response\":\"\",\"scopeNumber\":1,\"padding\":\"");
        memset(text + strlen(text), 'p', size - strlen(text) - 4);
        strcpy(text + size - 4, "\"}}");
        rp = (Replier) { .fd = s, .text = text };
        ASSERT_OK(pthread_create(&th, NULL, replier_thread, &rp));
        r = tsm_guest_request(c, 1, 1, "info", "x", 1, resp, sizeof(resp), &len);
        ASSERT_OK(pthread_join(th, NULL));
        free(text);
        return r;
}

/* SECURITY: a DescribeConnection reply is taken as large as the largest tsmd sends, with room
 * (GUEST_DESCRIBE_REPLY_MAX bytes, GUEST_DESCRIBE_REPLY_VALUES_MAX values), and no larger: one
 * byte or one value more is a protocol violation (-EPROTO, io.tsmd.Protocol: the connection
 * closed), as any message past the limits is. Before the fix the values were Varlink's count for
 * any reply, 1 Mi, which let 3 MiB of empty objects cost the VMM some 800 MiB. Nor does a
 * reply after it get the wider limits. */
TEST(describe_reply_bounded_by_what_tsmd_sends) {
        _cleanup_free_ char *largest = largest_describe_rest(), *at_values = NULL, *past_values = NULL;
        DescribeAnswer a = {};
        TsmConnectionInfo *info = NULL;
        char path[108];
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        /* The largest tsmd sends, every entry read. */
        a = (DescribeAnswer) { .fd = s, .rest = largest };
        ASSERT_OK(describe_answered(c, &a, &info));
        ASSERT_EQ(tsm_connection_info_get_n_contexts(info), GUEST_CONTEXTS_PER_CLIENT_MAX);
        ASSERT_EQ(tsm_connection_info_get_n_vdevices(info), GUEST_VDEVICES_PER_CLIENT_MAX);
        ASSERT_STREQ(tsm_held_vdevice_get_pci_address(
                             tsm_connection_info_get_vdevice(info, GUEST_VDEVICES_PER_CLIENT_MAX - 1)),
                     "fffffff:ff:1f.7");
        info = tsm_connection_info_free(info);

        /* As many bytes as the bound, then values. */
        a = (DescribeAnswer) { .fd = s, .rest = "\"contexts\":[]}}", .size = GUEST_DESCRIBE_REPLY_MAX };
        ASSERT_OK(describe_answered(c, &a, &info));
        info = tsm_connection_info_free(info);
        at_values = describe_rest_of_values(GUEST_DESCRIBE_REPLY_VALUES_MAX);
        a = (DescribeAnswer) { .fd = s, .rest = at_values };
        ASSERT_OK(describe_answered(c, &a, &info));
        info = tsm_connection_info_free(info);

        /* A reply after it is judged by the usual limits again. */
        ASSERT_ERRNO(request_answered_with_size(c, s, TSM_GUEST_MESSAGE_MAX + 1), EPROTO);
        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Protocol");
        pair_done(c, path, l, s);

        /* One byte more. */
        c = connect_pair(path, sizeof(path), &l, &s);
        a = (DescribeAnswer) { .fd = s, .rest = "\"contexts\":[]}}", .size = GUEST_DESCRIBE_REPLY_MAX + 1 };
        ASSERT_ERRNO(describe_answered(c, &a, &info), EPROTO);
        ASSERT_NULL(info);
        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Protocol");
        ASSERT_TRUE(connection_lost(c));
        ASSERT_TRUE(sees_hangup(s));
        pair_done(c, path, l, s);

        /* One value more. */
        c = connect_pair(path, sizeof(path), &l, &s);
        past_values = describe_rest_of_values(GUEST_DESCRIBE_REPLY_VALUES_MAX + 1);
        a = (DescribeAnswer) { .fd = s, .rest = past_values };
        ASSERT_ERRNO(describe_answered(c, &a, &info), EPROTO);
        ASSERT_NULL(info);
        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Protocol");
        ASSERT_TRUE(connection_lost(c));
        pair_done(c, path, l, s);
}

/* Adopting a connection whose DescribeConnection reply is past the bound: refused (-EPROTO), the
 * fd still the caller's and open, the connection too (only the duplicate libtsm worked on is
 * closed), and no fd left behind. */
TEST(adopt_refuses_a_describe_reply_past_the_bound) {
        DescribeAnswer a = {};
        TsmClient *c = NULL;
        TsmConnectionInfo *info = NULL;
        char path[108];
        pthread_t th;
        int l, fd, lowest, after;

        l = listen_at(path, sizeof(path), 4);
        fd = connect_raw(path);
        a.fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(a.fd >= 0);
        lowest = fcntl(0, F_DUPFD_CLOEXEC, 0);
        close(lowest);

        a.rest = "\"contexts\":[]}}";
        a.size = GUEST_DESCRIBE_REPLY_MAX + 1;
        ASSERT_OK(pthread_create(&th, NULL, describe_answer_thread, &a));
        ASSERT_ERRNO(tsm_client_new_from_fd(fd, &info, &c), EPROTO);
        ASSERT_OK(pthread_join(th, NULL));
        ASSERT_NULL(c);
        ASSERT_NULL(info);
        ASSERT_TRUE(fcntl(fd, F_GETFD) >= 0);
        ASSERT_FALSE(sees_hangup(a.fd));
        after = fcntl(0, F_DUPFD_CLOEXEC, 0);
        close(after);
        ASSERT_EQ(after, lowest);
        close(fd);
        close(a.fd);
        close(l);
        unlink(path);
}

/* The same with one fd to spare, the duplicate's: the dead connection cannot keep its number
 * (no fd for that, VARLINK_CLIENT_KEEP_FD's socketpair), and its hang-up must not shutdown() the
 * socket, which would end the connection for the caller's fd too, tsmd releasing all it holds.
 * Before, DescribeConnection's widening of the limits set KEEP_FD again for the call. */
TEST(adopt_failure_never_hangs_up_without_a_spare_fd) {
        DescribeAnswer a = {};
        TsmClient *c = NULL;
        struct rlimit saved, one_more;
        char path[108];
        pthread_t th;
        int l, fd, r;

        l = listen_at(path, sizeof(path), 4);
        fd = connect_raw(path);
        a.fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(a.fd >= 0);
        a.rest = "\"contexts\":[]}}";
        a.size = GUEST_DESCRIBE_REPLY_MAX + 1;
        ASSERT_OK(pthread_create(&th, NULL, describe_answer_thread, &a));

        fill_fd_table(&saved);
        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &one_more));
        one_more.rlim_cur++;
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &one_more));
        r = tsm_client_new_from_fd(fd, NULL, &c);
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
        ASSERT_EQ(r, -EPROTO);
        ASSERT_OK(pthread_join(th, NULL));
        ASSERT_NULL(c);
        ASSERT_TRUE(fcntl(fd, F_GETFD) >= 0);
        ASSERT_FALSE(sees_hangup(a.fd));
        close(fd);
        ASSERT_TRUE(sees_hangup(a.fd));
        close(a.fd);
        close(l);
        unlink(path);
}

/* Sends late, then next, into fd (a reply too large for the socket to take at once). */
typedef struct LateSender {
        int fd;
        char *late;
        const char *next;
} LateSender;

static void *late_sender_thread(void *userdata) {
        LateSender *ls = userdata;

        ASSERT_EQ(send(ls->fd, ls->late, strlen(ls->late) + 1, MSG_NOSIGNAL), (ssize_t) strlen(ls->late) + 1);
        ASSERT_EQ(send(ls->fd, ls->next, strlen(ls->next) + 1, MSG_NOSIGNAL), (ssize_t) strlen(ls->next) + 1);
        return NULL;
}

/* A blocking DescribeConnection that timed out: its late reply may still be as large as the
 * bound, and costs the connection nothing; the one after it is judged by the usual limits.
 * Before, the limits were narrowed when the call returned, and a late reply past them closed
 * the connection (-EPROTO), every context with it. */
TEST(abandoned_describe_late_reply_may_be_large) {
        TsmConnectionInfo *info = NULL;
        char path[108], call[4096];
        LateSender ls;
        pthread_t th;
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_OK(tsm_client_set_timeout(c, 200 * 1000));
        ASSERT_ERRNO(tsm_client_describe(c, &info), ETIMEDOUT);
        ASSERT_TRUE(read_message(s, call, sizeof(call)));
        ASSERT_OK(tsm_client_set_timeout(c, 30 * 1000 * 1000));
        /* The late reply, as large as the bound, then the next call's. */
        ls = (LateSender) { .fd = s, .late = describe_reply_text(call_nonce(call), "\"contexts\":[]}}",
                                                                 GUEST_DESCRIBE_REPLY_MAX),
                            .next = "{\"parameters\":{}}" };
        ASSERT_OK(pthread_create(&th, NULL, late_sender_thread, &ls));
        ASSERT_OK(tsm_context_close(c, 1));
        ASSERT_OK(pthread_join(th, NULL));
        free(ls.late);
        ASSERT_TRUE(read_message(s, call, sizeof(call)));
        ASSERT_NOT_NULL(strstr(call, "CloseContext"));
        ASSERT_TRUE(varlink_client_is_connected(c->vc));
        ASSERT_EQ(c->n_describing, 0U);

        /* The late reply came: the usual limits again. */
        ASSERT_ERRNO(request_answered_with_size(c, s, TSM_GUEST_MESSAGE_MAX + 1), EPROTO);
        pair_done(c, path, l, s);

        /* A reconnect forgets an abandoned one: the new connection has the usual limits. */
        c = connect_pair(path, sizeof(path), &l, &s);
        ASSERT_OK(tsm_client_set_timeout(c, 200 * 1000));
        ASSERT_ERRNO(tsm_client_describe(c, &info), ETIMEDOUT);
        ASSERT_OK(tsm_client_set_timeout(c, 30 * 1000 * 1000));
        close(s);
        ASSERT_OK(tsm_client_reconnect(c));
        s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(s >= 0);
        ASSERT_EQ(c->n_describing, 0U);
        ASSERT_ERRNO(request_answered_with_size(c, s, TSM_GUEST_MESSAGE_MAX + 1), EPROTO);
        pair_done(c, path, l, s);
}

typedef struct DescribeSeen {
        unsigned n, n_destroys;
        int error;
        bool named;
        size_t n_contexts, n_vdevices;
        uint64_t context;
        uint32_t vdevice_id;
        bool bound;
        bool free_client;
} DescribeSeen;

static void on_describe_seen(TsmClient *c, int error, const TsmConnectionInfo *info, void *userdata) {
        DescribeSeen *d = userdata;

        d->n++;
        d->error = error;
        d->named = tsm_client_get_error_name(c) != NULL;
        ASSERT_EQ(!info, error < 0);
        if (info) {
                const TsmHeldVDevice *v = tsm_connection_info_get_vdevice(info, 0);

                d->n_contexts = tsm_connection_info_get_n_contexts(info);
                d->n_vdevices = tsm_connection_info_get_n_vdevices(info);
                d->context = tsm_connection_info_get_context(info, 0);
                d->vdevice_id = tsm_held_vdevice_get_id(v);
                d->bound = tsm_held_vdevice_is_bound(v);
        }
        if (d->free_client)
                tsm_client_free(c);
}

static void on_describe_destroy(void *userdata) {
        DescribeSeen *d = userdata;

        ASSERT_EQ(d->n_destroys, 0U);
        d->n_destroys++;
}

#define HELD_REST                                                                                  \
        "\"contexts\":[{\"context\":4,\"vdevices\":[{\"vdeviceId\":9,\"pciAddress\":\"0000:01:00.0\"," \
        "\"bound\":true,\"changing\":false,\"gone\":false}]},{\"context\":5,\"vdevices\":[]}]}}"

/* tsm_client_describe_async(): sent at once, answered in the loop, its reply checked as the
 * blocking call's (the nonce: -EBADMSG for another, no error name, the connection goes on), a
 * Varlink error mapped and named; the client is not handed on while it is under way (-EBUSY),
 * and its reply may be as large as the blocking call's, one after it not. */
TEST(describe_async_answers_in_the_loop) {
        char path[108], call[4096], *text;
        DescribeSeen d = {};
        DescribeAnswer a;
        pthread_t th;
        int l, s, fd = -1;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_ERRNO(tsm_client_describe_async(c, NULL, NULL, NULL), EINVAL);
        ASSERT_ERRNO(tsm_client_describe_async(NULL, on_describe_seen, &d, NULL), EINVAL);

        /* Success. */
        ASSERT_OK(tsm_client_describe_async(c, on_describe_seen, &d, on_describe_destroy));
        ASSERT_ERRNO(tsm_client_detach_fd(c, &fd), EBUSY);
        ASSERT_TRUE(read_message(s, call, sizeof(call)));
        text = describe_reply_text(call_nonce(call), HELD_REST, 0);
        write_message(s, text);
        free(text);
        ASSERT_EQ(d.n, 0U); /* never from the registration */
        ASSERT_EQ(ltsm_error_set_reply(c, "io.tsmd.Guest.Denied", NULL), -EACCES);
        process_until(c, &d.n, 1);
        ASSERT_EQ(d.error, 0);
        ASSERT_FALSE(d.named);
        ASSERT_EQ(d.n_destroys, 1U);
        ASSERT_EQ(d.n_contexts, 2U);
        ASSERT_EQ(d.n_vdevices, 1U);
        ASSERT_EQ(d.context, 4U);
        ASSERT_EQ(d.vdevice_id, 9U);
        ASSERT_TRUE(d.bound);

        /* Another nonce: not this call's reply. */
        d = (DescribeSeen) {};
        ASSERT_OK(tsm_client_describe_async(c, on_describe_seen, &d, on_describe_destroy));
        ASSERT_TRUE(read_message(s, call, sizeof(call)));
        text = describe_reply_text(call_nonce(call) ^ 1, HELD_REST, 0);
        write_message(s, text);
        free(text);
        process_until(c, &d.n, 1);
        ASSERT_EQ(d.error, -EBADMSG);
        ASSERT_FALSE(d.named);
        ASSERT_EQ(d.n_destroys, 1U);
        ASSERT_EQ(d.n_contexts, 0U);
        ASSERT_TRUE(varlink_client_is_connected(c->vc));

        /* A malformed reply (no nonce; a vDevice without its fields), and a Varlink error. */
        d = (DescribeSeen) {};
        ASSERT_OK(tsm_client_describe_async(c, on_describe_seen, &d, on_describe_destroy));
        ASSERT_TRUE(read_message(s, call, sizeof(call)));
        write_message(s, "{\"parameters\":{\"contexts\":[]}}");
        process_until(c, &d.n, 1);
        ASSERT_EQ(d.error, -EBADMSG);
        d = (DescribeSeen) {};
        ASSERT_OK(tsm_client_describe_async(c, on_describe_seen, &d, on_describe_destroy));
        ASSERT_TRUE(read_message(s, call, sizeof(call)));
        text = describe_reply_text(call_nonce(call), "\"contexts\":[{\"context\":4,\"vdevices\":[{}]}]}}", 0);
        write_message(s, text);
        free(text);
        process_until(c, &d.n, 1);
        ASSERT_EQ(d.error, -EBADMSG);
        d = (DescribeSeen) {};
        ASSERT_OK(tsm_client_describe_async(c, on_describe_seen, &d, on_describe_destroy));
        ASSERT_TRUE(read_message(s, call, sizeof(call)));
        write_message(s, "{\"error\":\"org.varlink.service.MethodNotFound\",\"parameters\":{\"method\":\"x\"}}");
        process_until(c, &d.n, 1);
        ASSERT_EQ(d.error, -EOPNOTSUPP);
        ASSERT_TRUE(d.named);
        ASSERT_EQ(d.n_destroys, 1U);

        /* As large as the bound, answered in the loop; then the usual limits again. */
        d = (DescribeSeen) {};
        a = (DescribeAnswer) { .fd = s, .rest = "\"contexts\":[]}}", .size = GUEST_DESCRIBE_REPLY_MAX };
        ASSERT_OK(tsm_client_describe_async(c, on_describe_seen, &d, on_describe_destroy));
        ASSERT_OK(pthread_create(&th, NULL, describe_answer_thread, &a));
        /* 64 KiB a tsm_client_process(): some 130 of them. */
        for (uint64_t end = now_usec() + 30 * 1000 * 1000; d.n == 0 && now_usec() < end;) {
                struct pollfd p = { .fd = tsm_client_get_fd(c), .events = (short) tsm_client_get_events(c) };

                (void) poll(&p, 1, 100);
                ASSERT_GE(tsm_client_process(c), 0);
        }
        ASSERT_OK(pthread_join(th, NULL));
        ASSERT_EQ(d.n, 1U);
        ASSERT_EQ(d.error, 0);
        ASSERT_EQ(c->n_describing, 0U);
        ASSERT_ERRNO(request_answered_with_size(c, s, TSM_GUEST_MESSAGE_MAX + 1), EPROTO);
        pair_done(c, path, l, s);
}

/* The connection lost while a tsm_client_describe_async() awaits its reply: the callback gets
 * -ECONNRESET, then destroy; a reconnect: -ECANCELED; freed with the call pending: destroy only;
 * freed from its own callback: the client goes once the callback returned. */
TEST(describe_async_lost_cancelled_or_freed) {
        char path[108], call[4096], *text;
        DescribeSeen d = {};
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        /* Lost mid-call: the peer read the call and hung up. */
        ASSERT_OK(tsm_client_describe_async(c, on_describe_seen, &d, on_describe_destroy));
        ASSERT_TRUE(read_message(s, call, sizeof(call)));
        close(s);
        wait_readable(c);
        ASSERT_ERRNO(tsm_client_process(c), ECONNRESET);
        ASSERT_EQ(d.n, 1U);
        ASSERT_EQ(d.error, -ECONNRESET);
        ASSERT_EQ(d.n_destroys, 1U);
        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Disconnected");
        ASSERT_EQ(c->n_describing, 0U);

        /* A reconnect cancels it. */
        ASSERT_OK(tsm_client_reconnect(c));
        s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(s >= 0);
        d = (DescribeSeen) {};
        ASSERT_OK(tsm_client_describe_async(c, on_describe_seen, &d, on_describe_destroy));
        ASSERT_OK(tsm_client_reconnect(c));
        ASSERT_EQ(d.n, 1U);
        ASSERT_EQ(d.error, -ECANCELED);
        ASSERT_EQ(d.n_destroys, 1U);
        ASSERT_EQ(c->n_describing, 0U);
        close(s);
        s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(s >= 0);

        /* Freed with the call pending: destroy, not the callback. */
        d = (DescribeSeen) {};
        ASSERT_OK(tsm_client_describe_async(c, on_describe_seen, &d, on_describe_destroy));
        tsm_client_free(c);
        ASSERT_EQ(d.n, 0U);
        ASSERT_EQ(d.n_destroys, 1U);
        freed_pair_done(path, l, s);

        /* Freed from its callback. */
        c = connect_pair(path, sizeof(path), &l, &s);
        d = (DescribeSeen) { .free_client = true };
        ASSERT_OK(tsm_client_describe_async(c, on_describe_seen, &d, on_describe_destroy));
        ASSERT_TRUE(read_message(s, call, sizeof(call)));
        text = describe_reply_text(call_nonce(call), HELD_REST, 0);
        write_message(s, text);
        free(text);
        wait_readable(c);
        ASSERT_EQ(tsm_client_process(c), 1);
        ASSERT_EQ(d.n, 1U);
        ASSERT_EQ(d.error, 0);
        ASSERT_EQ(d.n_destroys, 1U);
        freed_pair_done(path, l, s);
}

/* An adopted connection keeps the fd number it came under (QEMU's CPR keeps fds by name and
 * number): the client's socket is that fd, O_CLOEXEC (cpr-exec cleared it), with no duplicate
 * left behind, and tsm_client_free() closes it. */
TEST(adopted_connection_keeps_its_fd_number) {
        char path[108], buf[4096];
        DescribePeer peer = {};
        pthread_t th;
        TsmClient *c = NULL;
        int l, fd, lowest;

        l = listen_at(path, sizeof(path), 4);
        fd = connect_raw(path);
        peer.fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(peer.fd >= 0);
        ASSERT_OK(fcntl(fd, F_SETFD, 0)); /* as kept across cpr-exec */
        lowest = fcntl(0, F_DUPFD_CLOEXEC, 0);
        ASSERT_TRUE(lowest >= 0);
        close(lowest);

        ASSERT_OK(pthread_create(&th, NULL, describe_peer_thread, &peer));
        ASSERT_OK(tsm_client_new_from_fd(fd, NULL, &c));
        ASSERT_OK(pthread_join(th, NULL));
        ASSERT_EQ(tsm_client_get_fd(c), fd);
        ASSERT_EQ(fcntl(fd, F_GETFD), FD_CLOEXEC);
        /* The duplicate it worked on until tsmd answered is gone. */
        ASSERT_EQ(fcntl(0, F_DUPFD_CLOEXEC, 0), lowest);
        close(lowest);

        write_message(peer.fd, "{\"parameters\":{}}");
        ASSERT_OK(tsm_context_close(c, 4));
        ASSERT_TRUE(read_message(peer.fd, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "CloseContext"));

        tsm_client_free(c);
        ASSERT_TRUE(fcntl(fd, F_GETFD) < 0);
        ASSERT_TRUE(sees_hangup(peer.fd));
        close(peer.fd);
        close(l);
        unlink(path);
}

/* ---- the bound on asynchronous requests, and taking them back ---------------------------- */

typedef struct Req {
        TsmClient *c;
        unsigned n_callbacks, n_destroys;
        int error;
        int (*then)(struct Req *r); /* run from the callback */
        int then_result;
} Req;

static void on_req(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        Req *r = userdata;

        r->n_callbacks++;
        r->error = error;
        if (r->then)
                r->then_result = r->then(r);
}

static void on_req_destroy(void *userdata) {
        Req *r = userdata;

        r->n_destroys++;
}

static int request(TsmClient *c, uint32_t vdevice_id, Req *r) {
        r->c = c;
        return tsm_guest_request_async(c, 1, vdevice_id, "info", "x", 1, 64, on_req, r, on_req_destroy);
}

/* The peer: answers every call it reads until the client hangs up, counting guest requests
 * (those to vDevice 1 apart), and how many it got before a DetachDevice. */
typedef struct Answerer {
        int fd;
        unsigned n_requests, n_requests_vdev1;
        unsigned n_requests_before_detach;
        bool detached;
} Answerer;

static void *answerer_thread(void *userdata) {
        Answerer *a = userdata;
        char buf[4096];

        while (read_message(a->fd, buf, sizeof(buf))) {
                if (strstr(buf, "DetachDevice")) {
                        a->n_requests_before_detach = a->n_requests;
                        a->detached = true;
                        write_message(a->fd, "{\"parameters\":{}}");
                        continue;
                }
                ASSERT_NOT_NULL(strstr(buf, "GuestRequest"));
                a->n_requests++;
                if (strstr(buf, "\"vdeviceId\":1,") || strstr(buf, "\"vdeviceId\":1}"))
                        a->n_requests_vdev1++;
                write_message(a->fd, "{\"parameters\":{\"response\":\"eA==\"}}");
        }
        return NULL;
}

/* A guest that never stops cannot queue requests without end: past the bound (tsmd's default
 * MaxPendingCalls=, 64) a request is refused with -EAGAIN, nothing queued, no error name; the
 * VMM may set another bound, and an answer makes room. */
TEST(requests_past_the_bound_refused) {
        char path[108], buf[4096];
        Req reqs[80] = {}, *extra = &reqs[79];
        size_t pending, held;
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        for (unsigned i = 0; i < TSM_PENDING_REQUESTS_DEFAULT; i++)
                ASSERT_OK(request(c, 1, &reqs[i]));
        pending = varlink_client_get_n_pending(c->vc);
        held = varlink_client_get_n_held(c->vc);
        ASSERT_EQ(pending, (size_t) TSM_PENDING_REQUESTS_DEFAULT);
        ASSERT_EQ(ltsm_error_set_reply(c, "io.tsmd.Guest.Denied", NULL), -EACCES);
        ASSERT_ERRNO(request(c, 1, extra), EAGAIN);
        ASSERT_NULL(tsm_client_get_error_name(c));
        ASSERT_EQ(varlink_client_get_n_pending(c->vc), pending);
        ASSERT_EQ(varlink_client_get_n_held(c->vc), held);
        ASSERT_EQ(extra->n_callbacks + extra->n_destroys, 0U); /* a failed registration calls neither */

        /* The setter: 0 is no bound; one more, then refused again. */
        ASSERT_ERRNO(tsm_client_set_max_pending_requests(c, 0), EINVAL);
        ASSERT_ERRNO(tsm_client_set_max_pending_requests(NULL, 1), EINVAL);
        ASSERT_OK(tsm_client_set_max_pending_requests(c, TSM_PENDING_REQUESTS_DEFAULT + 1));
        ASSERT_OK(request(c, 2, &reqs[TSM_PENDING_REQUESTS_DEFAULT]));
        ASSERT_ERRNO(request(c, 2, extra), EAGAIN);
        /* Below what is outstanding: refused until enough were answered. */
        ASSERT_OK(tsm_client_set_max_pending_requests(c, TSM_CALLS_IN_FLIGHT_MAX));
        ASSERT_ERRNO(request(c, 2, extra), EAGAIN);

        /* Of them, the peer has only those libtsm sends at a time. */
        for (unsigned i = 0; i < TSM_CALLS_IN_FLIGHT_MAX; i++) {
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                ASSERT_NOT_NULL(strstr(buf, "GuestRequest"));
        }
        ASSERT_EQ(poll(&(struct pollfd) { .fd = s, .events = POLLIN }, 1, 100), 0);

        /* Taken back but for those at the peer, answered: room again. */
        ASSERT_EQ(tsm_client_cancel_requests(c), (int) (TSM_PENDING_REQUESTS_DEFAULT + 1 - TSM_CALLS_IN_FLIGHT_MAX));
        ASSERT_ERRNO(request(c, 2, extra), EAGAIN);
        for (unsigned i = 0; i < TSM_CALLS_IN_FLIGHT_MAX; i++)
                write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}");
        while (reqs[TSM_CALLS_IN_FLIGHT_MAX - 1].n_callbacks == 0) {
                wait_readable(c);
                ASSERT_GE(tsm_client_process(c), 0);
        }
        ASSERT_OK(request(c, 2, extra));
        pair_done(c, path, l, s);
        for (unsigned i = 0; i <= TSM_PENDING_REQUESTS_DEFAULT; i++) {
                ASSERT_EQ(reqs[i].n_callbacks, 1U);
                ASSERT_EQ(reqs[i].n_destroys, 1U);
                ASSERT_EQ(reqs[i].error, i < TSM_CALLS_IN_FLIGHT_MAX ? 0 : -ECANCELED);
        }
        ASSERT_EQ(extra->n_callbacks, 0U); /* freed with the client, unanswered */
        ASSERT_EQ(extra->n_destroys, 1U);
}

/* Hot-unplug: the guest queued n requests to vDevice 1 (then the VMM made some to vDevice 2).
 * tsm_device_cancel_requests() takes back those libtsm did not send (each callback once, with
 * -ECANCELED, then its destroy), not vDevice 2's: the Detach made next reaches tsmd behind the 8
 * calls at tsmd and vDevice 2's, however many were queued. */
TEST(cancel_bounds_the_wait_of_a_detach) {
        static const unsigned queued[] = { 20, 500 };
        const unsigned n_other = 4;

        for (size_t k = 0; k < ELEMENTSOF(queued); k++) {
                unsigned n = queued[k];
                Req *reqs = calloc(n + n_other, sizeof(Req));
                char path[108];
                Answerer a = {};
                pthread_t t;
                int l, s;
                TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

                ASSERT_NOT_NULL(reqs);
                ASSERT_OK(tsm_client_set_max_pending_requests(c, n + n_other));
                for (unsigned i = 0; i < n; i++)
                        ASSERT_OK(request(c, 1, &reqs[i]));
                for (unsigned i = n; i < n + n_other; i++)
                        ASSERT_OK(request(c, 2, &reqs[i]));

                ASSERT_EQ(tsm_device_cancel_requests(c, 1, 1), (int) (n - TSM_CALLS_IN_FLIGHT_MAX));
                for (unsigned i = 0; i < n + n_other; i++) {
                        bool cancelled = i >= TSM_CALLS_IN_FLIGHT_MAX && i < n;

                        ASSERT_EQ(reqs[i].n_callbacks, cancelled ? 1U : 0U);
                        ASSERT_EQ(reqs[i].n_destroys, cancelled ? 1U : 0U);
                        if (cancelled)
                                ASSERT_EQ(reqs[i].error, -ECANCELED);
                }
                ASSERT_NULL(tsm_client_get_error_name(c));
                ASSERT_EQ(tsm_device_cancel_requests(c, 1, 1), 0); /* nothing left of vDevice 1's */

                a.fd = s;
                ASSERT_OK(pthread_create(&t, NULL, answerer_thread, &a));
                ASSERT_OK(tsm_client_set_timeout(c, 30 * 1000000ULL));
                ASSERT_OK(tsm_device_detach(c, 1, 1));
                tsm_client_free(c);
                ASSERT_OK(pthread_join(t, NULL));
                ASSERT_TRUE(a.detached);
                ASSERT_EQ(a.n_requests_before_detach, TSM_CALLS_IN_FLIGHT_MAX + n_other);
                ASSERT_EQ(a.n_requests_vdev1, TSM_CALLS_IN_FLIGHT_MAX);
                /* Every one answered or taken back, once. */
                for (unsigned i = 0; i < n + n_other; i++) {
                        ASSERT_EQ(reqs[i].n_callbacks, 1U);
                        ASSERT_EQ(reqs[i].n_destroys, 1U);
                        ASSERT_EQ(reqs[i].error, i >= TSM_CALLS_IN_FLIGHT_MAX && i < n ? -ECANCELED : 0);
                }
                pair_done(NULL, path, l, s);
                free(reqs);
        }
}

/* Of the calls held, all but the Detach waiting behind them (a blocking call's caller waits
 * for it). */
static int then_cancel_all(Req *r) {
        size_t held = varlink_client_get_n_held(r->c->vc);
        int k = tsm_client_cancel_requests(r->c);

        return k == (int) held - 1 ? k : -EBADE;
}

static Req nested_request;

/* A cancelled request's callback: nothing more to take back, no blocking call, a new request
 * (which the cancel under way does not take back: it goes after the Detach waiting, in call
 * order). */
static int then_request_again(Req *r) {
        if (tsm_client_cancel_requests(r->c) != 0)
                return -EBADE;
        if (tsm_device_detach(r->c, 1, 1) != -EDEADLK)
                return -EBADE;
        return request(r->c, 2, &nested_request);
}

/* Cancelling from a callback: of an answered request, and, nested, of a cancelled one. */
TEST(cancel_from_a_callback) {
        Req reqs[20] = {};
        char path[108];
        Answerer a = {};
        pthread_t t;
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        reqs[0].then = then_cancel_all;
        for (unsigned i = 0; i < ELEMENTSOF(reqs); i++)
                ASSERT_OK(request(c, 1, &reqs[i]));
        /* The first held when the cancel comes (the first answer released one more). */
        reqs[TSM_CALLS_IN_FLIGHT_MAX + 1].then = then_request_again;

        a.fd = s;
        ASSERT_OK(pthread_create(&t, NULL, answerer_thread, &a));
        ASSERT_OK(tsm_client_set_timeout(c, 30 * 1000000ULL));
        ASSERT_OK(tsm_device_detach(c, 1, 1));
        while (nested_request.n_callbacks == 0) {
                wait_readable(c);
                ASSERT_GE(tsm_client_process(c), 0);
        }
        tsm_client_free(c);
        ASSERT_OK(pthread_join(t, NULL));

        ASSERT_EQ(reqs[0].then_result, (int) (ELEMENTSOF(reqs) - TSM_CALLS_IN_FLIGHT_MAX - 1));
        ASSERT_OK(reqs[TSM_CALLS_IN_FLIGHT_MAX + 1].then_result);
        for (unsigned i = 0; i < ELEMENTSOF(reqs); i++) {
                ASSERT_EQ(reqs[i].n_callbacks, 1U);
                ASSERT_EQ(reqs[i].n_destroys, 1U);
                ASSERT_EQ(reqs[i].error, i <= TSM_CALLS_IN_FLIGHT_MAX ? 0 : -ECANCELED);
        }
        /* Made from a cancelled callback, sent and answered after the Detach. */
        ASSERT_EQ(a.n_requests_before_detach, TSM_CALLS_IN_FLIGHT_MAX + 1);
        ASSERT_EQ(a.n_requests, TSM_CALLS_IN_FLIGHT_MAX + 2);
        ASSERT_EQ(nested_request.n_callbacks, 1U);
        ASSERT_OK(nested_request.error);
        ASSERT_EQ(nested_request.n_destroys, 1U);
        pair_done(NULL, path, l, s);
}

static int then_free(Req *r) {
        tsm_client_free(r->c);
        return 0;
}

/* A cancelled request's callback frees the client: no callback runs after it, every destroy
 * once (those taken back, and those in flight from the free), the cancel says the client is
 * gone. */
TEST(free_from_a_cancelled_callback) {
        Req reqs[20] = {};
        char path[108];
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        for (unsigned i = 0; i < ELEMENTSOF(reqs); i++)
                ASSERT_OK(request(c, 1, &reqs[i]));
        reqs[TSM_CALLS_IN_FLIGHT_MAX].then = then_free;
        ASSERT_ERRNO(tsm_client_cancel_requests(c), ECANCELED);
        for (unsigned i = 0; i < ELEMENTSOF(reqs); i++) {
                ASSERT_EQ(reqs[i].n_callbacks, i == TSM_CALLS_IN_FLIGHT_MAX ? 1U : 0U);
                ASSERT_EQ(reqs[i].n_destroys, 1U);
        }
        freed_pair_done(path, l, s);
}

/* A connection lost: its requests failed with it, nothing is left to take back. */
TEST(cancel_after_connection_lost) {
        Req reqs[12] = {};
        char path[108];
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        for (unsigned i = 0; i < ELEMENTSOF(reqs); i++)
                ASSERT_OK(request(c, 1, &reqs[i]));
        close(s);
        s = -EBADF;
        wait_readable(c);
        ASSERT_ERRNO(tsm_client_process(c), ECONNRESET);
        ASSERT_EQ(tsm_client_cancel_requests(c), 0);
        ASSERT_EQ(tsm_device_cancel_requests(c, 1, 1), 0);
        for (unsigned i = 0; i < ELEMENTSOF(reqs); i++) {
                ASSERT_EQ(reqs[i].n_callbacks, 1U);
                ASSERT_EQ(reqs[i].error, -ECONNRESET);
                ASSERT_EQ(reqs[i].n_destroys, 1U);
        }
        ASSERT_ERRNO(tsm_client_cancel_requests(NULL), EINVAL);
        tsm_client_free(c);
        close(l);
        unlink(path);
}

typedef struct ThreadPair {
        char path[108];
        int l, s;
        TsmClient *c;
        int r;
} ThreadPair;

/* One client's first call, on a thread of its own: its stream's first read. */
static void *client_thread(void *userdata) {
        ThreadPair *t = userdata;

        t->r = tsm_context_close(t->c, 1);
        return NULL;
}

/* Clients are independent (tsm.h: no global state): two threads each using their own at once.
 * What two streams share (how many fds a read has room for, worked out at the first read of the
 * process) must be made once, not lazily by both: ThreadSanitizer reported the race; without
 * it this test passes either way. */
TEST(clients_on_two_threads) {
        ThreadPair t[2] = {};
        pthread_t th[2];

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                t[i].c = connect_pair(t[i].path, sizeof(t[i].path), &t[i].l, &t[i].s);
                write_message(t[i].s, "{\"parameters\":{}}");
        }
        for (size_t i = 0; i < ELEMENTSOF(t); i++)
                ASSERT_OK(pthread_create(&th[i], NULL, client_thread, &t[i]));
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                ASSERT_OK(pthread_join(th[i], NULL));
                ASSERT_OK(t[i].r);
                pair_done(t[i].c, t[i].path, t[i].l, t[i].s);
        }
}

/* ---- the device calls without waiting ---------------------------------------------------- */

/* What one asynchronous device call got. */
typedef struct DevSeen {
        unsigned n, n_destroys;
        int error;
        char error_name[128];
        TsmTdiState state;
        bool bound;
        char backend[32];
        size_t n_scopes;
        bool free_client;
        bool callback_after_destroy;
        unsigned *order; /* callbacks of a sequence so far, if shared */
        unsigned seq;    /* this one's place in it */
} DevSeen;

static void dev_seen(TsmClient *c, DevSeen *d, int error) {
        if (d->n_destroys > 0)
                d->callback_after_destroy = true;
        d->n++;
        d->error = error;
        snprintf(d->error_name, sizeof(d->error_name), "%s", tsm_client_get_error_name(c) ?: "");
        if (d->order)
                d->seq = ++*d->order;
}

static void dev_seen_done(TsmClient *c, DevSeen *d) {
        if (d->free_client)
                tsm_client_free(c);
}

static void on_attached(TsmClient *c, int error, TsmDeviceInfo *info, void *userdata) {
        DevSeen *d = userdata;

        dev_seen(c, d, error);
        ASSERT_EQ(!info, error < 0);
        if (info) {
                snprintf(d->backend, sizeof(d->backend), "%s", tsm_device_info_get_backend(info));
                d->n_scopes = tsm_device_info_get_n_scopes(info);
                tsm_device_info_free(info); /* the callback's (tsm.h) */
        }
        dev_seen_done(c, d);
}

static void on_done(TsmClient *c, int error, void *userdata) {
        DevSeen *d = userdata;

        dev_seen(c, d, error);
        dev_seen_done(c, d);
}

static void on_state(TsmClient *c, int error, TsmTdiState state, bool bound, void *userdata) {
        DevSeen *d = userdata;

        dev_seen(c, d, error);
        d->state = state;
        d->bound = bound;
        if (error < 0) {
                ASSERT_EQ(state, _TSM_TDI_STATE_INVALID);
                ASSERT_FALSE(bound);
        }
        dev_seen_done(c, d);
}

static void on_dev_destroy(void *userdata) {
        DevSeen *d = userdata;

        d->n_destroys++;
}

typedef enum DevCall {
        DEV_ATTACH,
        DEV_DETACH,
        DEV_BIND,
        DEV_UNBIND,
        DEV_GET_STATE,
        DEV_CLOSE, /* the context's, tsm_context_close_async() */
        _DEV_CALL_MAX,
} DevCall;

static const char *const dev_method[_DEV_CALL_MAX] = {
        [DEV_ATTACH] = "io.tsmd.Guest.AttachDevice",   [DEV_DETACH] = "io.tsmd.Guest.DetachDevice",
        [DEV_BIND] = "io.tsmd.Guest.Bind",             [DEV_UNBIND] = "io.tsmd.Guest.Unbind",
        [DEV_GET_STATE] = "io.tsmd.Guest.GetDeviceState", [DEV_CLOSE] = "io.tsmd.Guest.CloseContext",
};

/* What tsmd answers each with. */
static const char *const dev_success[_DEV_CALL_MAX] = {
        [DEV_ATTACH] = "{\"parameters\":{\"backend\":\"emulated\",\"tsm\":\"emu0\",\"uapi\":\"emulated\",\"scopes\":["
                       "{\"name\":\"info\",\"description\":\"d\",\"number\":0,\"maxRequestSize\":64,"
                       "\"maxResponseSize\":64,\"allowed\":true}]}}",
        [DEV_DETACH] = "{\"parameters\":{}}",
        [DEV_BIND] = "{\"parameters\":{\"state\":\"config_locked\"}}",
        [DEV_UNBIND] = "{\"parameters\":{\"state\":\"config_unlocked\"}}",
        [DEV_GET_STATE] = "{\"parameters\":{\"state\":\"run\",\"bound\":true}}",
        [DEV_CLOSE] = "{\"parameters\":{}}",
};

static int dev_call(TsmClient *c, DevCall k, uint32_t vdevice_id, int vfio_fd, DevSeen *d) {
        switch (k) {
        case DEV_ATTACH:
                return tsm_device_attach_async(c, 1, vdevice_id, "0000:01:00.0", vfio_fd, on_attached, d,
                                               on_dev_destroy);
        case DEV_DETACH:
                return tsm_device_detach_async(c, 1, vdevice_id, on_done, d, on_dev_destroy);
        case DEV_BIND:
                return tsm_device_bind_async(c, 1, vdevice_id, on_state, d, on_dev_destroy);
        case DEV_UNBIND:
                return tsm_device_unbind_async(c, 1, vdevice_id, on_state, d, on_dev_destroy);
        case DEV_GET_STATE:
                return tsm_device_get_state_async(c, 1, vdevice_id, on_state, d, on_dev_destroy);
        case DEV_CLOSE: /* no vDevice: 0 stands for an invalid context */
                return tsm_context_close_async(c, vdevice_id == 0 ? (uint64_t) INT64_MAX + 1 : 1, on_done, d,
                                               on_dev_destroy);
        default:
                return -EINVAL;
        }
}

/* Each asynchronous device call: sent at once with its blocking form's parameters (Attach's VFIO
 * fd a duplicate, number 0), never answered from the registration, its callback run once from
 * the loop with the blocking form's outputs, then destroy; a named error mapped to its errno
 * with its name; a reply that does not match the interface -EBADMSG without one; invalid
 * arguments refused at once, neither callback nor destroy run. */
TEST(device_async_calls_answered_in_the_loop) {
        char path[108], buf[4096];
        int l, s, vfio;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        vfio = open("/dev/null", O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(vfio >= 0);
        for (DevCall k = 0; k < _DEV_CALL_MAX; k++) {
                DevSeen d = {};
                unsigned n_fds;

                /* Success. */
                ASSERT_OK(dev_call(c, k, 7, vfio, &d));
                ASSERT_TRUE(read_message_fds(s, buf, sizeof(buf), &n_fds));
                ASSERT_NOT_NULL(strstr(buf, dev_method[k]));
                ASSERT_NOT_NULL(strstr(buf, "\"context\":1"));
                if (k != DEV_CLOSE)
                        ASSERT_NOT_NULL(strstr(buf, "\"vdeviceId\":7"));
                if (k == DEV_ATTACH) {
                        ASSERT_NOT_NULL(strstr(buf, "\"pciAddress\":\"0000:01:00.0\""));
                        ASSERT_NOT_NULL(strstr(buf, "\"vfioFileDescriptor\":0"));
                        ASSERT_EQ(n_fds, 1U);
                } else
                        ASSERT_EQ(n_fds, 0U);
                write_message(s, dev_success[k]);
                ASSERT_EQ(d.n, 0U); /* never from the registration */
                ASSERT_EQ(ltsm_error_set_reply(c, "io.tsmd.Guest.Denied", NULL), -EACCES);
                process_until(c, &d.n, 1);
                ASSERT_OK(d.error);
                ASSERT_STREQ(d.error_name, ""); /* a success clears an earlier call's */
                ASSERT_EQ(d.n_destroys, 1U);
                ASSERT_FALSE(d.callback_after_destroy);
                if (k == DEV_ATTACH) {
                        ASSERT_STREQ(d.backend, "emulated");
                        ASSERT_EQ(d.n_scopes, 1U);
                }
                if (k == DEV_BIND)
                        ASSERT_EQ(d.state, TSM_TDI_STATE_CONFIG_LOCKED);
                if (k == DEV_UNBIND)
                        ASSERT_EQ(d.state, TSM_TDI_STATE_CONFIG_UNLOCKED);
                if (k == DEV_GET_STATE)
                        ASSERT_EQ(d.state, TSM_TDI_STATE_RUN);
                ASSERT_EQ(d.bound, k == DEV_BIND || k == DEV_GET_STATE);

                /* A named error, and its errno. */
                d = (DevSeen) {};
                ASSERT_OK(dev_call(c, k, 7, -1, &d));
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                write_message(s, "{\"error\":\"io.tsmd.Guest.NoSuchVDevice\",\"parameters\":{}}");
                process_until(c, &d.n, 1);
                ASSERT_ERRNO(d.error, ENOENT);
                ASSERT_STREQ(d.error_name, "io.tsmd.Guest.NoSuchVDevice");
                ASSERT_EQ(d.n_destroys, 1U);
                d = (DevSeen) {};
                ASSERT_OK(dev_call(c, k, 7, -1, &d));
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                write_message(s, "{\"error\":\"io.tsmd.Guest.InvalidState\",\"parameters\":{}}");
                process_until(c, &d.n, 1);
                ASSERT_ERRNO(d.error, EBADFD);
                ASSERT_STREQ(d.error_name, "io.tsmd.Guest.InvalidState");

                /* Invalid arguments: refused at once, nothing sent, neither function run. */
                d = (DevSeen) {};
                ASSERT_ERRNO(dev_call(c, k, 0, -1, &d), EINVAL);
                ASSERT_EQ(d.n + d.n_destroys, 0U);
        }
        ASSERT_ERRNO(tsm_device_bind_async(c, 1, 1, NULL, NULL, NULL), EINVAL);
        ASSERT_ERRNO(tsm_device_unbind_async(NULL, 1, 1, on_state, NULL, NULL), EINVAL);
        ASSERT_ERRNO(tsm_device_get_state_async(c, (uint64_t) INT64_MAX + 1, 1, on_state, NULL, NULL), EINVAL);
        ASSERT_ERRNO(tsm_device_detach_async(c, 1, 1, NULL, NULL, NULL), EINVAL);
        ASSERT_ERRNO(tsm_device_attach_async(c, 1, 1, NULL, -1, on_attached, NULL, NULL), EINVAL);
        ASSERT_ERRNO(tsm_device_attach_async(c, 1, 1, "0000:01:00.0", -2, on_attached, NULL, NULL), EINVAL);
        ASSERT_ERRNO(tsm_device_attach_async(c, 1, 1, "0000:01:00.0", 1000000, on_attached, NULL, NULL), EBADF);
        close(vfio);

        /* Replies that do not match the interface: -EBADMSG, no name, the connection goes on. */
        {
                static const struct {
                        DevCall k;
                        const char *reply;
                } bad[] = {
                        { DEV_ATTACH, "{\"parameters\":{\"tsm\":\"emu0\",\"uapi\":\"emulated\",\"scopes\":[]}}" },
                        { DEV_GET_STATE, "{\"parameters\":{\"state\":\"run\"}}" },
                        { DEV_GET_STATE, "{\"parameters\":{\"state\":\"run\",\"bound\":1}}" },
                };

                for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                        DevSeen d = {};

                        ASSERT_OK(dev_call(c, bad[i].k, 7, -1, &d));
                        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                        write_message(s, bad[i].reply);
                        process_until(c, &d.n, 1);
                        ASSERT_ERRNO(d.error, EBADMSG);
                        ASSERT_STREQ(d.error_name, "");
                        ASSERT_EQ(d.n_destroys, 1U);
                        ASSERT_TRUE(varlink_client_is_connected(c->vc));
                }
        }
        pair_done(c, path, l, s);
}

/* tsm_context_close_async() forgets the context's reclaim token once tsmd closed it, as the
 * blocking call does; not after an error. */
TEST(close_async_forgets_the_token) {
        char path[108], buf[4096], *token = NULL;
        DevSeen d = {};
        uint64_t ctx;
        int l, s, p[2];
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_OK(pipe2(p, O_CLOEXEC));
        write_message_fd(s, "{\"parameters\":{\"context\":6,\"fileDescriptor\":0,\"reclaimToken\":\"t6\"}}", p[1]);
        close(p[1]);
        ASSERT_OK(tsm_context_open(c, &ctx, NULL));
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));

        ASSERT_OK(tsm_context_close_async(c, 6, on_done, &d, on_dev_destroy));
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "\"context\":6"));
        write_message(s, "{\"error\":\"io.tsmd.Guest.DeviceBusy\",\"parameters\":{}}");
        process_until(c, &d.n, 1);
        ASSERT_ERRNO(d.error, EBUSY);
        ASSERT_OK(tsm_context_get_reclaim_token(c, 6, &token));
        token = mfree(token);

        d = (DevSeen) {};
        ASSERT_OK(tsm_context_close_async(c, 6, on_done, &d, on_dev_destroy));
        ASSERT_OK(tsm_context_get_reclaim_token(c, 6, &token)); /* until tsmd answered */
        token = mfree(token);
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        write_message(s, "{\"parameters\":{}}");
        process_until(c, &d.n, 1);
        ASSERT_OK(d.error);
        ASSERT_ERRNO(tsm_context_get_reclaim_token(c, 6, &token), ENOENT);
        close(p[0]);
        pair_done(c, path, l, s);
}

/* The connection lost with every device call pending: each callback once with -ECONNRESET, in
 * call order, then its destroy; a reconnect: -ECANCELED; freed with them pending: destroys only;
 * freed from the first one's callback: the client goes once it returned, the others get their
 * destroy only. */
TEST(device_async_lost_cancelled_or_freed) {
        char path[108], buf[4096];
        DevSeen d[_DEV_CALL_MAX];
        unsigned order = 0;
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        /* Lost: the peer read the calls and hung up. */
        for (DevCall k = 0; k < _DEV_CALL_MAX; k++) {
                d[k] = (DevSeen) { .order = &order };
                ASSERT_OK(dev_call(c, k, 1, -1, &d[k]));
        }
        for (DevCall k = 0; k < _DEV_CALL_MAX; k++)
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        close(s);
        wait_readable(c);
        ASSERT_ERRNO(tsm_client_process(c), ECONNRESET);
        for (DevCall k = 0; k < _DEV_CALL_MAX; k++) {
                ASSERT_EQ(d[k].n, 1U);
                ASSERT_ERRNO(d[k].error, ECONNRESET);
                ASSERT_STREQ(d[k].error_name, "io.tsmd.Disconnected");
                ASSERT_EQ(d[k].seq, (unsigned) k + 1);
                ASSERT_EQ(d[k].n_destroys, 1U);
                ASSERT_FALSE(d[k].callback_after_destroy);
        }
        /* On the lost connection: refused at once. */
        ASSERT_ERRNO(dev_call(c, DEV_UNBIND, 1, -1, &d[0]), ENOTCONN);

        /* A reconnect cancels them. */
        ASSERT_OK(tsm_client_reconnect(c));
        s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(s >= 0);
        for (DevCall k = 0; k < _DEV_CALL_MAX; k++) {
                d[k] = (DevSeen) {};
                ASSERT_OK(dev_call(c, k, 1, -1, &d[k]));
        }
        ASSERT_OK(tsm_client_reconnect(c));
        for (DevCall k = 0; k < _DEV_CALL_MAX; k++) {
                ASSERT_EQ(d[k].n, 1U);
                ASSERT_ERRNO(d[k].error, ECANCELED);
                ASSERT_EQ(d[k].n_destroys, 1U);
        }
        close(s);
        s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(s >= 0);

        /* Freed with them pending: destroys, no callback. */
        for (DevCall k = 0; k < _DEV_CALL_MAX; k++) {
                d[k] = (DevSeen) {};
                ASSERT_OK(dev_call(c, k, 1, -1, &d[k]));
        }
        tsm_client_free(c);
        for (DevCall k = 0; k < _DEV_CALL_MAX; k++) {
                ASSERT_EQ(d[k].n, 0U);
                ASSERT_EQ(d[k].n_destroys, 1U);
        }
        freed_pair_done(path, l, s);

        /* Freed from a callback, for each call: the others' replies came with it, unread. */
        for (DevCall first = 0; first < _DEV_CALL_MAX; first++) {
                c = connect_pair(path, sizeof(path), &l, &s);
                for (DevCall k = 0; k < _DEV_CALL_MAX; k++) {
                        DevCall m = (first + k) % _DEV_CALL_MAX;

                        d[m] = (DevSeen) { .free_client = k == 0 };
                        ASSERT_OK(dev_call(c, m, 1, -1, &d[m]));
                        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                        write_message(s, dev_success[m]);
                }
                wait_readable(c);
                ASSERT_EQ(tsm_client_process(c), 1);
                for (DevCall k = 0; k < _DEV_CALL_MAX; k++) {
                        ASSERT_EQ(d[k].n, k == first ? 1U : 0U);
                        ASSERT_EQ(d[k].n_destroys, 1U);
                        ASSERT_FALSE(d[k].callback_after_destroy);
                }
                ASSERT_OK(d[first].error);
                freed_pair_done(path, l, s);
        }
}

/* The guest's bound is not the VMM's: with the pending requests' bound full, a guest request is
 * refused (-EAGAIN), the Unbind and Detach of the unplug are not; taking the guest's requests back
 * leaves them queued, in call order behind those at tsmd. */
TEST(device_async_not_bounded_by_guest_requests) {
        char path[108], buf[4096];
        Req reqs[TSM_CALLS_IN_FLIGHT_MAX + 2] = {}, extra = {};
        DevSeen unbind = {}, detach = {};
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_OK(tsm_client_set_max_pending_requests(c, ELEMENTSOF(reqs)));
        for (unsigned i = 0; i < ELEMENTSOF(reqs); i++)
                ASSERT_OK(request(c, 1, &reqs[i]));
        ASSERT_ERRNO(request(c, 1, &extra), EAGAIN);
        ASSERT_OK(tsm_device_unbind_async(c, 1, 1, on_state, &unbind, on_dev_destroy));
        ASSERT_OK(tsm_device_detach_async(c, 1, 1, on_done, &detach, on_dev_destroy));
        ASSERT_ERRNO(request(c, 1, &extra), EAGAIN); /* and they took none of its room */

        /* The guest's requests not sent are taken back, the VMM's calls not. */
        ASSERT_EQ(tsm_device_cancel_requests(c, 1, 1), 2);
        ASSERT_EQ(varlink_client_get_n_held(c->vc), 2U);
        ASSERT_EQ(unbind.n + detach.n, 0U);
        for (unsigned i = 0; i < TSM_CALLS_IN_FLIGHT_MAX; i++) {
                ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
                ASSERT_NOT_NULL(strstr(buf, "GuestRequest"));
                write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}");
        }
        process_until(c, &reqs[TSM_CALLS_IN_FLIGHT_MAX - 1].n_callbacks, 1);
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "io.tsmd.Guest.Unbind"));
        write_message(s, dev_success[DEV_UNBIND]);
        ASSERT_TRUE(read_message(s, buf, sizeof(buf)));
        ASSERT_NOT_NULL(strstr(buf, "io.tsmd.Guest.DetachDevice"));
        write_message(s, dev_success[DEV_DETACH]);
        process_until(c, &detach.n, 1);
        ASSERT_OK(unbind.error);
        ASSERT_OK(detach.error);
        for (unsigned i = 0; i < ELEMENTSOF(reqs); i++)
                ASSERT_EQ(reqs[i].error, i < TSM_CALLS_IN_FLIGHT_MAX ? 0 : -ECANCELED);
        pair_done(c, path, l, s);
}

/* How many messages the peer at fd can read now (each read whole; none more within 100 ms). */
static unsigned read_all_sent(int fd, char (*methods)[64], size_t max) {
        char buf[4096];
        unsigned n = 0;

        while (poll(&(struct pollfd) { .fd = fd, .events = POLLIN }, 1, 100) > 0) {
                ASSERT_TRUE(read_message(fd, buf, sizeof(buf)));
                if (methods && n < max) {
                        const char *m = strstr(buf, "io.tsmd.Guest.");

                        snprintf(methods[n], sizeof(methods[n]), "%.*s", m ? (int) strcspn(m, "\"") : 0, m ?: "");
                }
                n++;
        }
        return n;
}

/* tsm_client_set_max_calls_in_flight(): the peer has at most that many calls at a time, guest
 * requests and device calls together, however many were made; an answer lets exactly one more
 * go; raised, the calls that now fit go at once; lowered, the next waits until fewer are at the
 * peer; kept across a reconnect. 1 to 1024. */
TEST(calls_in_flight_bounded_by_the_setter) {
        char path[108], methods[16][64];
        Req reqs[6] = {};
        DevSeen dev[6] = {};
        unsigned answered = 0;
        int l, s;
        TsmClient *c = connect_pair(path, sizeof(path), &l, &s);

        ASSERT_ERRNO(tsm_client_set_max_calls_in_flight(c, 0), EINVAL);
        ASSERT_ERRNO(tsm_client_set_max_calls_in_flight(c, TSM_CALLS_IN_FLIGHT_LIMIT + 1), EINVAL);
        ASSERT_ERRNO(tsm_client_set_max_calls_in_flight(NULL, 3), EINVAL);
        ASSERT_OK(tsm_client_set_max_calls_in_flight(c, TSM_CALLS_IN_FLIGHT_LIMIT));
        ASSERT_OK(tsm_client_set_max_calls_in_flight(c, 3));

        /* 12 calls, alternating: 3 at the peer. */
        for (unsigned i = 0; i < 6; i++) {
                ASSERT_OK(request(c, 1, &reqs[i]));
                ASSERT_OK(dev_call(c, DEV_BIND, 2, -1, &dev[i]));
        }
        ASSERT_EQ(read_all_sent(s, methods, ELEMENTSOF(methods)), 3U);
        ASSERT_STREQ(methods[0], "io.tsmd.Guest.GuestRequest");
        ASSERT_STREQ(methods[1], "io.tsmd.Guest.Bind");

        /* One answered: one more, no other. */
        write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}");
        process_until(c, &reqs[0].n_callbacks, 1);
        ASSERT_EQ(read_all_sent(s, NULL, 0), 1U);

        /* Raised to 6: 3 more at once, from the setter. */
        ASSERT_OK(tsm_client_set_max_calls_in_flight(c, 6));
        ASSERT_EQ(read_all_sent(s, NULL, 0), 3U);

        /* Lowered to 2 with 6 at the peer (in call order: Bind, request, ...): none goes
         * while 2 or more are left there, one once 1 is. */
        ASSERT_OK(tsm_client_set_max_calls_in_flight(c, 2));
        for (unsigned i = 0; i < 2; i++) {
                write_message(s, "{\"parameters\":{\"state\":\"config_locked\"}}");
                process_until(c, &dev[i].n, 1);
                ASSERT_EQ(read_all_sent(s, NULL, 0), 0U);
                write_message(s, "{\"parameters\":{\"response\":\"eA==\"}}");
                process_until(c, &reqs[i + 1].n_callbacks, 1);
                ASSERT_EQ(read_all_sent(s, NULL, 0), 0U);
                answered += 2;
        }
        write_message(s, "{\"parameters\":{\"state\":\"config_locked\"}}");
        process_until(c, &dev[2].n, 1);
        ASSERT_EQ(answered + 1, 5U); /* of the 7 sent: 2 left, then 1 */
        ASSERT_EQ(read_all_sent(s, NULL, 0), 1U);

        /* Kept across a reconnect. */
        ASSERT_OK(tsm_client_reconnect(c));
        close(s);
        s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(s >= 0);
        for (unsigned i = 0; i < 4; i++) {
                reqs[i] = (Req) {};
                ASSERT_OK(request(c, 1, &reqs[i]));
        }
        ASSERT_EQ(read_all_sent(s, NULL, 0), 2U);
        pair_done(c, path, l, s);
}

TEST_MAIN();
